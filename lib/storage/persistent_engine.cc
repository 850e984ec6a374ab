// The persistent half of rapport::Engine: Open, Checkpoint and what a write
// does after the journal took it. The in-memory half is lib/engine.cc.
#include "lib/storage/persistent_engine.h"

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/state/engine_state.h"
#include "lib/storage/snapshot.h"
#include "lib/storage/store.h"
#include "lib/util/parallel.h"
#include "lib/util/prefetch.h"

namespace rapport {

absl::Status ReplayRecord(const journal::Record& record, Engine* engine) {
  switch (record.kind) {
    case journal::RecordKind::kEvents: {
      std::unique_ptr<journal::ParsedEvents> parsed;
      const v1::EventBatch* batch = record.events;
      if (batch == nullptr) {
        parsed = journal::ParseEvents(record.payload);
        batch = parsed->batch;
      }
      if (batch == nullptr) {
        return absl::DataLossError("the events do not parse as a rapport.v1.EventBatch");
      }
      if (batch->events_size() == 0) return absl::DataLossError("an events record with no events");
      // A record holds only events its write accepted, validated then
      // against the state plus the earlier events of the batch: the atomic
      // path validates them the same way, and a record that no longer fits
      // anywhere in it changes nothing, so that point-in-time recovery stops
      // at the last good record and keeps none of this one's events.
      IngestOptions options;
      options.mode = BatchMode::kAtomic;
      absl::StatusOr<v1::IngestResult> r = engine->IngestBatch(*batch, options);
      if (!r.ok()) return absl::DataLossError(r.status().message());
      if (r->accepted() != batch->events_size()) {
        return absl::DataLossError(absl::StrCat(batch->events_size() - r->accepted(), " of ",
                                                batch->events_size(),
                                                " events repeat earlier ones"));
      }
      return absl::OkStatus();
    }
    case journal::RecordKind::kAdvance: {
      absl::StatusOr<int64_t> now = journal::DecodeAdvance(record.payload);
      if (!now.ok()) return now.status();
      if (*now <= engine->clock_us()) {
        return absl::DataLossError(absl::StrCat("advance to ", *now, " is not after the clock (",
                                                engine->clock_us(), ")"));
      }
      absl::StatusOr<v1::ActionList> actions = engine->Advance(*now);
      if (!actions.ok()) return absl::DataLossError(actions.status().message());
      return absl::OkStatus();
    }
    case journal::RecordKind::kAcknowledge: {
      absl::StatusOr<std::vector<std::string>> ids = journal::DecodeAcknowledge(record.payload);
      if (!ids.ok()) return ids.status();
      if (absl::Status st = engine->Acknowledge(*ids); !st.ok()) {
        return absl::DataLossError(st.message());
      }
      return absl::OkStatus();
    }
  }
  return absl::DataLossError("unknown record kind");
}

void CatchUpDerivedLinks(EngineState* s, bool parallel) {
  // Each loop looks ids up in tables far larger than the caches: the row
  // kAhead places on is hashed and its slot prefetched meanwhile.
  constexpr size_t kAhead = 16;
  const size_t deals = s->deals.size();
  const size_t orders = s->orders.size();
  const size_t complaints = s->complaints.size();
  const size_t accounts = s->accounts.size();
  RunBoth(
      parallel,
      [&] {
        std::vector<OrderLink>& links = s->order_links;
        links.reserve(orders);
        const size_t first = links.size();
        // The bodies never fail.
        ForEachHashedAhead<kAhead>(
            orders > first ? orders - first : 0,
            [&](size_t j) -> size_t {
              const v1::Order& o = s->orders.at(static_cast<uint32_t>(first + j));
              s->accounts.Prefetch(o.account_id());
              if (!o.deal_id().empty()) s->deals.Prefetch(o.deal_id());
              return 0;
            },
            [&](size_t i, size_t) {
              links.push_back(ComputeOrderLink(*s, static_cast<uint32_t>(first + i)));
            })
            .IgnoreError();
        s->account_kinds.reserve(accounts);
        while (s->account_kinds.size() < accounts) {
          s->account_kinds.push_back(static_cast<uint8_t>(
              s->accounts.at(static_cast<uint32_t>(s->account_kinds.size())).kind()));
        }
      },
      [&] {
        std::vector<DealLink>& links = s->deal_links;
        links.reserve(deals);
        const size_t first = links.size();
        // The bodies never fail.
        ForEachHashedAhead<kAhead>(
            deals > first ? deals - first : 0,
            [&](size_t j) -> size_t {
              s->accounts.Prefetch(s->deals.at(static_cast<uint32_t>(first + j)).account_id());
              return 0;
            },
            [&](size_t i, size_t) {
              links.push_back(ComputeDealLink(*s, static_cast<uint32_t>(first + i)));
            })
            .IgnoreError();
        std::vector<uint32_t>& of_complaint = s->complaint_accounts;
        of_complaint.reserve(complaints);
        const size_t first_complaint = of_complaint.size();
        // The bodies never fail.
        ForEachHashedAhead<kAhead>(
            complaints > first_complaint ? complaints - first_complaint : 0,
            [&](size_t j) -> size_t {
              s->accounts.Prefetch(
                  s->complaints.at(static_cast<uint32_t>(first_complaint + j)).account_id());
              return 0;
            },
            [&](size_t i, size_t) {
              of_complaint.push_back(
                  ComputeComplaintAccount(*s, static_cast<uint32_t>(first_complaint + i)));
            })
            .IgnoreError();
      });
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const std::string& dir,
                                                     const OpenOptions& options) {
  std::unique_ptr<Engine> engine;
  Store::Hooks hooks;
  hooks.create = [&]() -> absl::Status {
    absl::StatusOr<std::unique_ptr<Engine>> e = Create(options.config);
    if (!e.ok()) return e.status();
    engine = *std::move(e);
    return absl::OkStatus();
  };
  hooks.load_snapshot = [&](absl::string_view payload) -> absl::Status {
    absl::StatusOr<std::unique_ptr<Engine>> e = Restore(payload);
    if (!e.ok()) return e.status();
    engine = *std::move(e);
    // A persistent engine is opened to take writes (the journal tail first).
    CatchUpDerivedLinks(engine->state_.get(), WorthParallel(payload.size()));
    return absl::OkStatus();
  };
  hooks.replay = [&](const journal::Record& r) { return ReplayRecord(r, engine.get()); };
  hooks.snapshot = [&]() { return engine->Snapshot(); };
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(dir, options, hooks);
  if (!store.ok()) return store.status();
  // Attached last: replay went through the public write path unjournaled.
  engine->store_ = *std::move(store);
  return engine;
}

absl::Status Engine::Checkpoint() {
  if (store_ == nullptr) {
    return absl::FailedPreconditionError(
        "checkpoint: this engine is not persistent (open one with Engine::Open)");
  }
  std::lock_guard<std::mutex> serial(*store_->checkpoint_mu());
  uint64_t seq;
  std::string bytes;
  {
    // Writers wait only for the capture; the file is written without the lock.
    WriterLock lock(&state_->mu);
    absl::StatusOr<uint64_t> covered = store_->BeginCheckpoint();
    if (!covered.ok()) return covered.status();
    seq = *covered;
    bytes = WriteSnapshot(*state_);
  }
  return store_->FinishCheckpoint(seq, bytes);
}

absl::Status Engine::FinishWrite(uint64_t seq) {
  if (absl::Status st = store_->AwaitDurable(seq); !st.ok()) return st;
  if (store_->WantsCheckpoint()) {
    // The write is durable in the journal already, so a failed snapshot costs
    // only disk space and replay time; the next write retries it.
    Checkpoint().IgnoreError();
  }
  return absl::OkStatus();
}

}  // namespace rapport
