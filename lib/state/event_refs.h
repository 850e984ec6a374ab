// The table rows an event refers to, resolved once per event and handed on.
//
// Validation has to look every referenced id up anyway; it records the row
// indexes it found here, and apply, the KPI facts and the regulations read
// them instead of hashing the same ids again (before, an activity's account
// id was hashed five times on its way through ingest).
#ifndef RAPPORT_LIB_STATE_EVENT_REFS_H_
#define RAPPORT_LIB_STATE_EVENT_REFS_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace rapport {

struct EventRefs {
  static constexpr uint32_t kNone = UINT32_MAX;

  // EventIdLog::Hash(event_id).
  size_t id_hash = 0;
  // The account the event is about: its payload's account_id, else the
  // account of its deal, order or complaint. For an account upsert that
  // creates the account, the index it will get. kNone for events about no
  // account (managers, teams, tasks).
  uint32_t account = kNone;
  // The deal the event is about: its payload's deal_id (lead created: the
  // index the new deal will get; case study: kNone without one), else the
  // deal of its order (kNone when the order has none).
  uint32_t deal = kNone;
  // order_placed (the new order's index), order_delayed, order_completed.
  uint32_t order = kNone;
  // invoice_issued (the new invoice's index); payment_received's invoice_id
  // (kNone without one).
  uint32_t invoice = kNone;
  // complaint_opened (the new complaint's index), complaint_resolved.
  uint32_t complaint = kNone;
  // Lead created, deal events: the deal's pipeline, as an index into
  // Pipelines::all(); -1 otherwise.
  int32_t pipeline = -1;
  // deal_stage_changed: the index of to_stage in the pipeline; -1 otherwise.
  int32_t stage = -1;
  // activity: its manager's row index when validation found the manager
  // stored, else kNone (also for a manager the same batch creates). The KPI
  // facts intern the manager id by it instead of hashing the id again. A
  // hint, not a row the event is about, so not compared below.
  uint32_t manager = kNone;
  // The event id log's own copy of the event id when validation recorded it
  // there (BatchOverlay::record_ids), else empty. The regulations' timers
  // keep this view; without it they look the id up in the log, a cache miss
  // by the time the event is applied. Not a row, so not compared below.
  absl::string_view stored_id;

  friend bool operator==(const EventRefs& a, const EventRefs& b) {
    return a.id_hash == b.id_hash && a.account == b.account && a.deal == b.deal &&
           a.order == b.order && a.invoice == b.invoice && a.complaint == b.complaint &&
           a.pipeline == b.pipeline && a.stage == b.stage;
  }
  friend bool operator!=(const EventRefs& a, const EventRefs& b) { return !(a == b); }
};

// What validation says of an event it accepts: new (to apply) or a
// duplicate of an accepted one.
enum class Verdict { kApply, kDuplicate };

// Per deal: what validation needs to know about a stored deal without
// hashing its account and pipeline ids (EngineState::deal_links).
struct DealLink {
  uint32_t account;
  int32_t pipeline;
};

// Per order: its account and deal (kNone for none) (EngineState::order_links).
struct OrderLink {
  uint32_t account;
  uint32_t deal;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_STATE_EVENT_REFS_H_
