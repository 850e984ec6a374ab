// Pipelines indexed for the hot path: stage lookups by name, the first, won
// and last stages, and validation of a pipeline set.
#ifndef RAPPORT_LIB_LIFECYCLE_PIPELINES_H_
#define RAPPORT_LIB_LIFECYCLE_PIPELINES_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rapport/v1/pipeline.pb.h"

namespace rapport {

struct PipelineInfo {
  v1::Pipeline pipeline;
  absl::flat_hash_map<std::string, int> stage_index;
  // The first stage flagged won, or -1.
  int won_stage = -1;

  int StageIndex(absl::string_view stage) const {
    auto it = stage_index.find(stage);
    return it == stage_index.end() ? -1 : it->second;
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
