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
#include "lib/state/event_refs.h"
#include "rapport/v1/event.pb.h"

namespace rapport {

// What the earlier events of an atomic batch create, so that later events of
// the same batch may refer to it before anything is applied. Keys and values
// view strings inside the batch's events, which outlive the overlay: nothing
// is copied on this hot path. Rows the batch creates carry the index they will
// get when applied (the tables' sizes plus the rows created before them), so
// that EventRefs is complete for every event of the batch.
struct BatchOverlay {
  struct AccountInfo {
    v1::AccountKind kind;
    uint32_t index;
  };
  struct DealInfo {
    const PipelineInfo* pipeline;
    absl::string_view account_id;
    uint32_t index;
    uint32_t account;
  };
  struct OrderInfo {
    uint32_t index;
    OrderLink link;
  };
  struct InvoiceInfo {
    absl::string_view currency;
    uint32_t index;
  };
  struct ComplaintInfo {
    uint32_t index;
    uint32_t account;
  };
  // An id with its hash (EventIdLog::Hash for event ids, IdHash for row
  // ids: the same function), so the overlay does not hash it again.
  struct HashedId {
    absl::string_view id;
    size_t hash;
  };
  struct HashedIdHash {
    size_t operator()(const HashedId& k) const { return k.hash; }
  };
  struct HashedIdEq {
    bool operator()(const HashedId& a, const HashedId& b) const { return a.id == b.id; }
  };

  template <typename V>
  using Map = absl::flat_hash_map<HashedId, V, HashedIdHash, HashedIdEq>;
  using Set = absl::flat_hash_set<HashedId, HashedIdHash, HashedIdEq>;

  // Row ids keyed with their IdHash (the tables' hash): a lookup that misses
  // the state's table and tries here, and the insert of a new id, reuse the
  // hash of the table lookup.
  Map<AccountInfo> accounts;
  Set managers;
  Set teams;
  Map<DealInfo> deals;
  Map<OrderInfo> orders;
  Map<InvoiceInfo> invoices;
  Map<ComplaintInfo> complaints;
  Map<uint64_t> event_ids;  // -> fingerprint
  // When set (to the validated state's own log), a new event's id is recorded
  // there instead of in `event_ids`: its lookup has just brought the log's
  // slot into cache, where adding it at apply time, after the rest of the
  // batch was validated, misses it again. The caller then applies with
  // ApplyRecordedEvent, and takes the ids back (EventIdLog::Truncate) if the
  // batch fails.
  EventIdLog* record_ids = nullptr;
  // Rows the batch creates so far, per table.
  uint32_t new_accounts = 0;
  uint32_t new_deals = 0;
  uint32_t new_orders = 0;
  uint32_t new_invoices = 0;
  uint32_t new_complaints = 0;

  void Clear();
};

// The hash the state's tables (and the overlay) file a row id under.
inline size_t IdHash(absl::string_view id) { return Table<v1::Account>::Hash(id); }

// The fingerprint of an event's content (its deterministic serialization).
uint64_t EventFingerprint(const v1::Event& event);

// Checks `event` against `state` (and `overlay`, when given). On success
// returns whether it is new or a duplicate, records what a new event creates
// in `overlay`, and, for a new event, fills `refs` (when given) with the rows
// it refers to as they will be when it is applied: ApplyEvent takes them. On
// failure the status message starts with "field '<path>'" and nothing is
// recorded.
absl::Status ValidateEvent(const v1::Event& event, uint64_t fingerprint, const EngineState& state,
                           BatchOverlay* overlay, Verdict* verdict, EventRefs* refs = nullptr);

}  // namespace rapport

#endif  // RAPPORT_LIB_INGEST_VALIDATE_H_
