// Everything an engine knows, in one place. The Engine wraps it with a lock;
// ingest validates against it and lifecycle applies events to it; storage
// writes and reads it whole.
#ifndef RAPPORT_LIB_STATE_ENGINE_STATE_H_
#define RAPPORT_LIB_STATE_ENGINE_STATE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "lib/kpi/fact_store.h"
#include "lib/lifecycle/pipelines.h"
#include "lib/rules/action_store.h"
#include "lib/rules/runtime.h"
#include "lib/state/event_id_log.h"
#include "lib/state/event_refs.h"
#include "lib/state/table.h"
#include "lib/util/shared_mutex.h"
#include "rapport/v1/config.pb.h"
#include "rapport/v1/entities.pb.h"
#include "rapport/v1/rules.pb.h"
#include "rapport/v1/snapshot.pb.h"

namespace rapport {

// A client's churn deadline: (last order + churn time, account index). Stale
// entries (the client ordered again) are skipped when popped.
using ChurnDeadline = std::pair<int64_t, uint32_t>;

// Large arena blocks: an engine holds up to millions of rows, and protobuf's
// default (blocks of at most 8 KiB) would cost a malloc every few rows.
inline google::protobuf::ArenaOptions ArenaOptions() {
  google::protobuf::ArenaOptions o;
  o.start_block_size = 64 << 10;
  o.max_block_size = 4 << 20;
  return o;
}

struct EngineState {
  // The configuration with every default filled in.
  v1::EngineConfig config;
  Pipelines pipelines;

  // Owns every table row (and, after Restore, the parsed snapshot they came
  // from); declared before the tables so that it outlives them.
  google::protobuf::Arena arena{ArenaOptions()};
  Table<v1::Account> accounts{&arena};
  Table<v1::Manager> managers{&arena};
  Table<v1::Team> teams{&arena};
  Table<v1::Deal> deals{&arena};
  Table<v1::Order> orders{&arena};
  Table<v1::Invoice> invoices{&arena};
  Table<v1::Complaint> complaints{&arena};
  // Owner/team/segment over occurred_at, per account index, ordered by
  // (since_us, seq); the KPIs attribute events with it.
  std::deque<std::vector<v1::Attribution>> attributions;
  // Actions the regulations produced; tasks among them stay open until a
  // task-completed event closes them. Compact structs, not messages: an
  // Advance may store 100 000 of them (lib/rules/action_store.h).
  rules::ActionStore actions;
  // The regulations' rule set, timers, outbox and per-account memory
  // (lib/rules/runtime.h); its timers view ids in `event_ids`.
  rules::Runtime rules;

  EventIdLog event_ids;
  // Derived from the tables, so a snapshot does not hold them: per deal its
  // account and pipeline, per order its account and deal, per complaint its
  // account, by row index (and per account its kind). ApplyEvent appends a row's entry when it
  // creates the row, and first catches up with rows it has not seen (a restored state starts with
  // none); readers fall back to the tables beyond their end (LinkOfDeal and friends below).
  std::vector<DealLink> deal_links;
  std::vector<OrderLink> order_links;
  std::vector<uint32_t> complaint_accounts;
  // Per account its kind (a v1::AccountKind, which never changes), by row
  // index: most events' validation needs an account's kind, and this byte
  // array stays in cache where the account rows do not.
  std::vector<uint8_t> account_kinds;
  // Accepted events; the next event's arrival sequence number.
  int64_t events_accepted = 0;
  int64_t clock_us = 0;
  std::priority_queue<ChurnDeadline, std::vector<ChurnDeadline>, std::greater<>> churn_deadlines;

  // The KPIs' fact store (lib/kpi/), kept by ApplyEvent.
  kpi::FactStore kpi;

  // What ingest keeps per event of a batch between validating and applying
  // it (lib/engine.cc), kept from batch to batch: a stream of batches would
  // otherwise allocate, zero and free them for every batch. Only read where
  // the current batch wrote; not state.
  struct IngestScratch {
    // Batches up to this many events use the kept vectors; a larger one
    // uses its own, so that one huge batch does not pin its scratch.
    static constexpr size_t kKeptEvents = 1 << 16;
    std::vector<uint64_t> fingerprints;
    std::vector<Verdict> verdicts;
    std::vector<EventRefs> refs;
  };
  IngestScratch ingest_scratch;

  // Guards everything above: writers hold it exclusively, readers shared.
  mutable SharedMutex mu;
};

// The derived links of a stored row: from the vectors above when they reach
// it, else looked up in the tables (the same answer, by hashing the ids).
inline DealLink ComputeDealLink(const EngineState& s, uint32_t deal) {
  const v1::Deal& d = s.deals.at(deal);
  return DealLink{
      s.accounts.IndexOf(d.account_id()),
      static_cast<int32_t>(s.pipelines.Find(d.pipeline_id()) - s.pipelines.all().data())};
}
inline OrderLink ComputeOrderLink(const EngineState& s, uint32_t order) {
  const v1::Order& o = s.orders.at(order);
  return OrderLink{s.accounts.IndexOf(o.account_id()),
                   o.deal_id().empty() ? EventRefs::kNone : s.deals.IndexOf(o.deal_id())};
}
inline uint32_t ComputeComplaintAccount(const EngineState& s, uint32_t complaint) {
  return s.accounts.IndexOf(s.complaints.at(complaint).account_id());
}
inline DealLink LinkOfDeal(const EngineState& s, uint32_t deal) {
  return deal < s.deal_links.size() ? s.deal_links[deal] : ComputeDealLink(s, deal);
}
inline OrderLink LinkOfOrder(const EngineState& s, uint32_t order) {
  return order < s.order_links.size() ? s.order_links[order] : ComputeOrderLink(s, order);
}
inline v1::AccountKind KindOfAccount(const EngineState& s, uint32_t account) {
  return account < s.account_kinds.size() ? static_cast<v1::AccountKind>(s.account_kinds[account])
                                          : s.accounts.at(account).kind();
}
inline uint32_t AccountOfComplaint(const EngineState& s, uint32_t complaint) {
  return complaint < s.complaint_accounts.size() ? s.complaint_accounts[complaint]
                                                 : ComputeComplaintAccount(s, complaint);
}

}  // namespace rapport

#endif  // RAPPORT_LIB_STATE_ENGINE_STATE_H_
