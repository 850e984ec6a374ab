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
#include "absl/synchronization/mutex.h"
#include "lib/lifecycle/pipelines.h"
#include "lib/state/table.h"
#include "rapport/v1/config.pb.h"
#include "rapport/v1/entities.pb.h"
#include "rapport/v1/rules.pb.h"
#include "rapport/v1/snapshot.pb.h"

namespace rapport {

// Accepted event ids with the fingerprint of their content, in arrival order.
class EventIdLog {
 public:
  // The fingerprint stored for `id`, or nullptr if the id is new.
  const uint64_t* Find(absl::string_view id) const {
    auto it = index_.find(id);
    return it == index_.end() ? nullptr : &fingerprints_[it->second];
  }
  void Add(absl::string_view id, uint64_t fingerprint) {
    // Keys view the strings in `ids_`, whose deque never moves them.
    const std::string& stored = ids_.emplace_back(id);
    fingerprints_.push_back(fingerprint);
    index_.emplace(stored, static_cast<uint32_t>(fingerprints_.size() - 1));
  }
  size_t size() const { return fingerprints_.size(); }
  const std::deque<std::string>& ids() const { return ids_; }
  const std::vector<uint64_t>& fingerprints() const { return fingerprints_; }
  void Reserve(size_t n) {
    index_.reserve(n);
    fingerprints_.reserve(n);
  }

 private:
  std::deque<std::string> ids_;
  std::vector<uint64_t> fingerprints_;
  absl::flat_hash_map<absl::string_view, uint32_t> index_;
};

// A client's churn deadline: (last order + churn time, account index). Stale
// entries (the client ordered again) are skipped when popped.
using ChurnDeadline = std::pair<int64_t, uint32_t>;

struct EngineState {
  // The configuration with every default filled in.
  v1::EngineConfig config;
  Pipelines pipelines;

  Table<v1::Account> accounts;
  Table<v1::Manager> managers;
  Table<v1::Team> teams;
  Table<v1::Deal> deals;
  Table<v1::Order> orders;
  Table<v1::Invoice> invoices;
  Table<v1::Complaint> complaints;
  // Owner/team/segment over occurred_at, per account index, ordered by
  // (since_us, seq); the KPIs attribute events with it.
  std::deque<std::vector<v1::Attribution>> attributions;
  // Actions the regulations produced; tasks among them stay open until a
  // task-completed event closes them.
  Table<v1::Action> actions;

  EventIdLog event_ids;
  // Accepted events; the next event's arrival sequence number.
  int64_t events_accepted = 0;
  int64_t clock_us = 0;
  std::priority_queue<ChurnDeadline, std::vector<ChurnDeadline>, std::greater<>>
      churn_deadlines;

  // Guards everything above: writers hold it exclusively, readers shared.
  mutable absl::Mutex mu;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_STATE_ENGINE_STATE_H_
