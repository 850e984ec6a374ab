// Pipelines indexed for the hot path: stage lookups by name, the first, won
// and last stages, and validation of a pipeline set.
#ifndef RAPPORT_LIB_LIFECYCLE_PIPELINES_H_
#define RAPPORT_LIB_LIFECYCLE_PIPELINES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/util/copy.h"
#include "rapport/v1/pipeline.pb.h"

namespace rapport {

struct PipelineInfo {
  v1::Pipeline pipeline;
  // Stage id -> index: the reference StageIndex agrees with (and Build's
  // check for repeated ids).
  absl::flat_hash_map<std::string, int> stage_index;
  // Per stage, in order: its id's length and first eight bytes (StageHead).
  // A pipeline has a few stages (at most 64): comparing these words finds a
  // stage faster than hashing its id, and StageIndex runs for every stage
  // change (validation) and on every restored deal.
  struct StageKey {
    uint64_t head;
    size_t size;
  };
  std::vector<StageKey> stage_keys;
  // The first stage flagged won, or -1.
  int won_stage = -1;

  // The first eight bytes of `id`, zero-padded: equal ids have equal heads.
  static uint64_t StageHead(absl::string_view id) {
    uint64_t head = 0;
    CopyShort(&head, id.data(), id.size() < 8 ? id.size() : 8);
    return head;
  }
  // The index of the stage with this id, or -1.
  int StageIndex(absl::string_view stage) const {
    const uint64_t head = StageHead(stage);
    for (size_t i = 0; i < stage_keys.size(); ++i) {
      // Ids up to eight bytes are equal when the heads and lengths are.
      if (stage_keys[i].head == head && stage_keys[i].size == stage.size() &&
          (stage.size() <= 8 || this->stage(static_cast<int>(i)).id() == stage)) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }
  const v1::Stage& stage(int i) const { return pipeline.stages(i); }
  int size() const { return pipeline.stages_size(); }
};

class Pipelines {
 public:
  // Validates the set: unique non-empty ids, 1..64 stages each with unique
  // ids, non-negative SLAs, no stage both won and lost, at most one default
  // pipeline per account kind.
  // Errors: INVALID_ARGUMENT naming the pipeline, stage and field.
  static absl::StatusOr<Pipelines> Build(const v1::PipelineSet& set);

  const PipelineInfo* Find(absl::string_view id) const;
  // The default pipeline for an account kind, or nullptr.
  const PipelineInfo* DefaultFor(v1::AccountKind kind) const;
  const std::vector<PipelineInfo>& all() const { return pipelines_; }

 private:
  std::vector<PipelineInfo> pipelines_;
  absl::flat_hash_map<std::string, int> by_id_;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_LIFECYCLE_PIPELINES_H_
