// Validation of events against the state and the earlier events of the same
// batch (SPEC §2). A validated event can be applied without failing.
#ifndef RAPPORT_LIB_INGEST_VALIDATE_H_
#define RAPPORT_LIB_INGEST_VALIDATE_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "lib/state/engine_state.h"
#include "rapport/v1/event.pb.h"

namespace rapport {

// What the earlier events of an atomic batch create, so that later events of
// the same batch may refer to it before anything is applied. Keys and values
// view strings inside the batch's events, which outlive the overlay: nothing
// is copied on this hot path.
struct BatchOverlay {
  struct DealInfo {
    const PipelineInfo* pipeline;
    absl::string_view account_id;
  };
  absl::flat_hash_map<absl::string_view, v1::AccountKind> accounts;
  absl::flat_hash_set<absl::string_view> managers;
  absl::flat_hash_set<absl::string_view> teams;
  absl::flat_hash_map<absl::string_view, DealInfo> deals;
  absl::flat_hash_set<absl::string_view> orders;
  absl::flat_hash_map<absl::string_view, absl::string_view> invoices;  // -> currency
  absl::flat_hash_set<absl::string_view> complaints;
  absl::flat_hash_map<absl::string_view, uint64_t> event_ids;  // -> fingerprint

  void Clear();
};

enum class Verdict { kApply, kDuplicate };

// The fingerprint of an event's content (its deterministic serialization).
uint64_t EventFingerprint(const v1::Event& event);

// Checks `event` against `state` (and `overlay`, when given). On success
// returns whether it is new or a duplicate, and records what a new event
// creates in `overlay`. On failure the status message starts with
// "field '<path>'" and nothing is recorded.
absl::Status ValidateEvent(const v1::Event& event, uint64_t fingerprint,
                           const EngineState& state, BatchOverlay* overlay,
                           Verdict* verdict);

}  // namespace rapport

#endif  // RAPPORT_LIB_INGEST_VALIDATE_H_
