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
#include "lib/util/shared_mutex.h"
#include "lib/kpi/fact_store.h"
#include "lib/lifecycle/pipelines.h"
#include "lib/rules/action_store.h"
#include "lib/rules/runtime.h"
#include "lib/state/event_id_log.h"
#include "lib/state/table.h"
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
  // Accepted events; the next event's arrival sequence number.
  int64_t events_accepted = 0;
  int64_t clock_us = 0;
  std::priority_queue<ChurnDeadline, std::vector<ChurnDeadline>, std::greater<>>
      churn_deadlines;

  // The KPIs' fact store (lib/kpi/), kept by ApplyEvent.
  kpi::FactStore kpi;

  // Guards everything above: writers hold it exclusively, readers shared.
  mutable SharedMutex mu;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_STATE_ENGINE_STATE_H_
