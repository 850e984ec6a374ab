#include "rapport/engine.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/grading/figures.h"
#include "lib/ingest/validate.h"
#include "lib/kpi/query.h"
#include "lib/kpi/report.h"
#include "lib/lifecycle/apply.h"
#include "lib/rules/runtime.h"
#include "lib/state/config.h"
#include "lib/state/engine_state.h"
#include "lib/storage/snapshot.h"
#include "lib/storage/store.h"

namespace rapport {
namespace {

// Prefixes a validation error with the event it is about.
absl::Status Annotate(const absl::Status& st, const v1::Event& e, int64_t index) {
  std::string where = absl::StrCat("event '", e.event_id(), "'");
  if (index >= 0) absl::StrAppend(&where, " (index ", index, ")");
  return absl::Status(st.code(), absl::StrCat(where, ": ", st.message()));
}

// A persistent engine whose per-batch fdatasync failed may hold a write its
// caller was told failed: it answers nothing until reopened (see
// Store::CheckUsable). Call with the state's lock held, so that the check
// and the read see the same write.
absl::Status StoreUsable(const Store* store) {
  return store == nullptr ? absl::OkStatus() : store->CheckUsable();
}

template <typename Row>
absl::StatusOr<Row> Lookup(const Table<Row>& table, absl::string_view kind, absl::string_view id) {
  const Row* row = table.Find(id);
  if (row == nullptr) return absl::NotFoundError(absl::StrCat("unknown ", kind, " '", id, "'"));
  return *row;
}

}  // namespace

Engine::Engine(std::unique_ptr<EngineState> state) : state_(std::move(state)) {}
Engine::~Engine() = default;

const v1::EngineConfig& Engine::DefaultConfig() {
  static const v1::EngineConfig* config = [] {
    auto full = WithDefaults(v1::EngineConfig());
    return new v1::EngineConfig(full.ok() ? *full : v1::EngineConfig());
  }();
  return *config;
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const v1::EngineConfig& config) {
  absl::StatusOr<v1::EngineConfig> full = WithDefaults(config);
  if (!full.ok()) return full.status();
  auto state = std::make_unique<EngineState>();
  if (absl::Status st = Configure(*full, state.get()); !st.ok()) return st;
  // Holidays and the rule set's age are timers from the start (a restored
  // engine reads them from its snapshot instead).
  rules::ScheduleClockTimers(state.get());
  return std::unique_ptr<Engine>(new Engine(std::move(state)));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Restore(absl::string_view snapshot_bytes) {
  auto state = std::make_unique<EngineState>();
  if (absl::Status st = ReadSnapshot(snapshot_bytes, state.get()); !st.ok()) return st;
  return std::unique_ptr<Engine>(new Engine(std::move(state)));
}

absl::StatusOr<v1::IngestResult> Engine::Ingest(const v1::Event& event) {
  EngineState& s = *state_;
  WriterLock lock(&s.mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  const uint64_t fp = EventFingerprint(event);
  Verdict verdict;
  EventRefs refs;
  if (absl::Status st = ValidateEvent(event, fp, s, nullptr, &verdict, &refs); !st.ok()) {
    return Annotate(st, event, -1);
  }
  v1::IngestResult result;
  uint64_t seq = 0;  // the journal record of a persistent engine
  if (verdict == Verdict::kDuplicate) {
    result.set_duplicates(1);
  } else {
    if (store_ != nullptr) {
      const v1::Event* one = &event;
      absl::StatusOr<uint64_t> journaled = store_->AppendEvents(absl::MakeConstSpan(&one, 1));
      if (!journaled.ok()) return journaled.status();
      seq = *journaled;
    }
    ApplyEvent(event, fp, refs, &s);
    result.set_accepted(1);
    rules::TakeProduced(&s, result.mutable_actions());
    // Per-batch mode: the journal's fdatasync ran during the apply; readers
    // must not see the event before it is durable.
    if (seq != 0) {
      if (absl::Status st = store_->SyncBeforeRelease(seq); !st.ok()) return st;
    }
  }
  lock.Release();
  if (seq != 0) {
    if (absl::Status st = FinishWrite(seq); !st.ok()) return st;
  }
  return result;
}

namespace {

// The batch logic over any random-access sequence of events; `at(i)` gives
// the i-th event.
template <typename At>
absl::StatusOr<v1::IngestResult> IngestEvents(EngineState& s, size_t n, At at,
                                              IngestOptions options, Store* store = nullptr,
                                              uint64_t* seq = nullptr) {
  if (n > kMaxBatchEvents) {
    return absl::ResourceExhaustedError(
        absl::StrCat("batch of ", n, " events exceeds the limit of ", kMaxBatchEvents));
  }
  WriterLock lock(&s.mu);
  if (absl::Status st = StoreUsable(store); !st.ok()) return st;
  v1::IngestResult result;
  int64_t accepted = 0;
  int64_t duplicates = 0;

  // A persistent engine journals what it accepts before applying anything,
  // so best effort validates the whole batch first too (below, with the
  // overlay standing in for the earlier events).
  if (options.mode == BatchMode::kBestEffort && store == nullptr) {
    for (size_t i = 0; i < n; ++i) {
      const v1::Event& e = at(i);
      const uint64_t fp = EventFingerprint(e);
      Verdict verdict;
      EventRefs refs;
      absl::Status st = ValidateEvent(e, fp, s, nullptr, &verdict, &refs);
      if (!st.ok()) {
        v1::Rejection* r = result.add_rejected();
        r->set_index(static_cast<int64_t>(i));
        r->set_event_id(e.event_id());
        r->set_code(static_cast<int32_t>(st.code()));
        r->set_message(std::string(Annotate(st, e, static_cast<int64_t>(i)).message()));
        continue;
      }
      if (verdict == Verdict::kDuplicate) {
        ++duplicates;
      } else {
        ApplyEvent(e, fp, refs, &s);
        ++accepted;
      }
    }
  } else {
    // Validate everything against the state plus what the batch creates, then
    // apply: a bad event anywhere leaves the state untouched.
    // Validation records the new ids in the state's log as it goes (see
    // BatchOverlay::record_ids); every failure below takes them back.
    BatchOverlay overlay;
    overlay.record_ids = &s.event_ids;
    const size_t ids_before = s.event_ids.size();
    EngineState::IngestScratch own;
    EngineState::IngestScratch& scratch =
        n <= EngineState::IngestScratch::kKeptEvents ? s.ingest_scratch : own;
    // Not cleared: every entry read below was written for this batch.
    scratch.fingerprints.resize(n);
    scratch.verdicts.resize(n);
    scratch.refs.resize(n);
    std::vector<uint64_t>& fps = scratch.fingerprints;
    std::vector<Verdict>& verdicts = scratch.verdicts;
    std::vector<EventRefs>& refs = scratch.refs;
    std::vector<bool> rejected;
    for (size_t i = 0; i < n; ++i) {
      fps[i] = EventFingerprint(at(i));
      absl::Status st = ValidateEvent(at(i), fps[i], s, &overlay, &verdicts[i], &refs[i]);
      if (!st.ok() && options.mode == BatchMode::kBestEffort) {
        v1::Rejection* r = result.add_rejected();
        r->set_index(static_cast<int64_t>(i));
        r->set_event_id(at(i).event_id());
        r->set_code(static_cast<int32_t>(st.code()));
        r->set_message(std::string(Annotate(st, at(i), static_cast<int64_t>(i)).message()));
        rejected.resize(n);
        rejected[i] = true;
        continue;
      }
      if (!st.ok()) {
        s.event_ids.Truncate(ids_before);
        return Annotate(st, at(i), static_cast<int64_t>(i));
      }
    }
    if (store != nullptr) {
      std::vector<const v1::Event*> fresh;
      fresh.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        if (verdicts[i] != Verdict::kDuplicate && (rejected.empty() || !rejected[i])) {
          fresh.push_back(&at(i));
        }
      }
      absl::StatusOr<uint64_t> journaled = store->AppendEvents(fresh);
      if (!journaled.ok()) {
        s.event_ids.Truncate(ids_before);
        return journaled.status();
      }
      *seq = *journaled;
    }
    for (size_t i = 0; i < n; ++i) {
      if (!rejected.empty() && rejected[i]) continue;
      if (verdicts[i] == Verdict::kDuplicate) {
        ++duplicates;
      } else {
        ApplyRecordedEvent(at(i), refs[i], &s);
        ++accepted;
      }
    }
  }
  result.set_accepted(accepted);
  result.set_duplicates(duplicates);
  rules::TakeProduced(&s, result.mutable_actions());
  // Per-batch mode: the journal's fdatasync ran while the batch was applied;
  // wait for it before the lock is released, so that no reader sees a batch
  // that is not durable yet. If it failed, the batch stays applied but the
  // store refuses every later call, reads included, until reopened.
  if (store != nullptr && *seq != 0) {
    if (absl::Status st = store->SyncBeforeRelease(*seq); !st.ok()) return st;
  }
  return result;
}

}  // namespace

absl::StatusOr<v1::IngestResult> Engine::IngestBatch(absl::Span<const v1::Event> events,
                                                     IngestOptions options) {
  uint64_t seq = 0;
  absl::StatusOr<v1::IngestResult> r = IngestEvents(
      *state_, events.size(), [&](size_t i) -> const v1::Event& { return events[i]; }, options,
      store_.get(), &seq);
  if (r.ok() && seq != 0) {
    if (absl::Status st = FinishWrite(seq); !st.ok()) return st;
  }
  return r;
}

absl::StatusOr<v1::IngestResult> Engine::IngestBatch(const v1::EventBatch& batch,
                                                     IngestOptions options) {
  uint64_t seq = 0;
  absl::StatusOr<v1::IngestResult> r = IngestEvents(
      *state_, static_cast<size_t>(batch.events_size()),
      [&](size_t i) -> const v1::Event& { return batch.events(static_cast<int>(i)); }, options,
      store_.get(), &seq);
  if (r.ok() && seq != 0) {
    if (absl::Status st = FinishWrite(seq); !st.ok()) return st;
  }
  return r;
}

absl::StatusOr<v1::ActionList> Engine::Advance(int64_t now_us) {
  v1::ActionList produced;
  if (absl::Status st = AdvanceInto(now_us, &produced); !st.ok()) return st;
  return produced;
}

absl::Status Engine::AdvanceInto(int64_t now_us, v1::ActionList* actions) {
  actions->Clear();
  if (now_us < kMinTimeUs || now_us >= kMaxTimeUs) {
    return absl::InvalidArgumentError(
        absl::StrCat("advance: ", now_us, " is outside years 1970..9999 (microseconds)"));
  }
  WriterLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  // A persistent engine journals the clock move (durably) before it happens,
  // so that replay fires the same timers at the same points.
  if (store_ != nullptr && now_us > state_->clock_us) {
    if (absl::Status st = store_->JournalAdvance(now_us); !st.ok()) return st;
  }
  AdvanceClock(now_us, state_.get());
  rules::TakeProduced(state_.get(), actions->mutable_actions());
  return absl::OkStatus();
}

absl::StatusOr<v1::Account> Engine::GetAccount(absl::string_view id) const {
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return Lookup(state_->accounts, "account", id);
}
absl::StatusOr<v1::Deal> Engine::GetDeal(absl::string_view id) const {
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return Lookup(state_->deals, "deal", id);
}
absl::StatusOr<v1::Order> Engine::GetOrder(absl::string_view id) const {
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return Lookup(state_->orders, "order", id);
}
absl::StatusOr<v1::Manager> Engine::GetManager(absl::string_view id) const {
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return Lookup(state_->managers, "manager", id);
}
absl::StatusOr<v1::Team> Engine::GetTeam(absl::string_view id) const {
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return Lookup(state_->teams, "team", id);
}

std::vector<v1::Account> Engine::AccountsByStatus(v1::AccountStatus status) const {
  ReaderLock lock(&state_->mu);
  // Reads that cannot return a status answer empty (see CheckUsable).
  if (!StoreUsable(store_.get()).ok()) return {};
  std::vector<v1::Account> out;
  for (const v1::Account& a : state_->accounts.rows()) {
    if (a.status() == status) out.push_back(a);
  }
  return out;
}

std::vector<int64_t> Engine::AccountStatusCounts() const {
  ReaderLock lock(&state_->mu);
  std::vector<int64_t> counts(v1::AccountStatus_ARRAYSIZE, 0);
  if (!StoreUsable(store_.get()).ok()) return counts;
  for (const v1::Account& a : state_->accounts.rows()) ++counts[a.status()];
  return counts;
}

std::vector<v1::StageCount> Engine::DealsByStage() const {
  ReaderLock lock(&state_->mu);
  if (!StoreUsable(store_.get()).ok()) return {};
  const Pipelines& pipelines = state_->pipelines;
  std::vector<std::vector<int64_t>> counts;
  for (const PipelineInfo& p : pipelines.all()) counts.emplace_back(p.size(), 0);
  for (const v1::Deal& d : state_->deals.rows()) {
    if (d.status() == v1::DEAL_STATUS_LOST) continue;
    const PipelineInfo* p = pipelines.Find(d.pipeline_id());
    ++counts[p - pipelines.all().data()][p->StageIndex(d.stage())];
  }
  std::vector<v1::StageCount> out;
  for (size_t i = 0; i < pipelines.all().size(); ++i) {
    const PipelineInfo& p = pipelines.all()[i];
    for (int j = 0; j < p.size(); ++j) {
      v1::StageCount& c = out.emplace_back();
      c.set_pipeline_id(p.pipeline.id());
      c.set_stage(p.stage(j).id());
      c.set_deals(counts[i][j]);
    }
  }
  return out;
}

std::vector<v1::StuckDeal> Engine::StuckDeals(int64_t at_us) const {
  ReaderLock lock(&state_->mu);
  if (!StoreUsable(store_.get()).ok()) return {};
  std::vector<v1::StuckDeal> out;
  for (const v1::Deal& d : state_->deals.rows()) {
    if (d.status() == v1::DEAL_STATUS_LOST || d.history_size() == 0) continue;
    const PipelineInfo* p = state_->pipelines.Find(d.pipeline_id());
    const int idx = p->StageIndex(d.stage());
    if (idx == p->size() - 1) continue;
    const int64_t sla = p->stage(idx).sla_us();
    const int64_t entered = d.history(d.history_size() - 1).entered_at_us();
    if (sla <= 0 || at_us - entered <= sla) continue;
    v1::StuckDeal& s = out.emplace_back();
    s.set_deal_id(d.deal_id());
    s.set_account_id(d.account_id());
    s.set_pipeline_id(d.pipeline_id());
    s.set_stage(d.stage());
    s.set_entered_at_us(entered);
    s.set_sla_us(sla);
    s.set_dwell_us(at_us - entered);
  }
  return out;
}

int64_t Engine::events_accepted() const {
  ReaderLock lock(&state_->mu);
  if (!StoreUsable(store_.get()).ok()) return 0;
  return state_->events_accepted;
}

int64_t Engine::clock_us() const {
  ReaderLock lock(&state_->mu);
  if (!StoreUsable(store_.get()).ok()) return 0;
  return state_->clock_us;
}

absl::Status Engine::Usable() const {
  ReaderLock lock(&state_->mu);
  return rapport::StoreUsable(store_.get());
}

v1::EngineConfig Engine::config() const {
  ReaderLock lock(&state_->mu);
  if (!StoreUsable(store_.get()).ok()) return v1::EngineConfig();
  return state_->config;
}

absl::StatusOr<v1::GradeEvaluation> Engine::Grades(int64_t as_of_us) const {
  if (as_of_us < kMinTimeUs || as_of_us >= kMaxTimeUs) {
    return absl::InvalidArgumentError(
        absl::StrCat("grades: as_of ", as_of_us, " is outside years 1970..9999 (microseconds)"));
  }
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  const v1::GradePolicy& policy = state_->config.grade_policy();
  absl::StatusOr<GradingInputs> inputs = ComputeGradingInputs(*state_, policy, as_of_us);
  if (!inputs.ok()) return inputs.status();
  return EvaluateGrades(*state_, policy, as_of_us, *inputs);
}

absl::StatusOr<v1::KpiPartial> Engine::KpiPartial(const v1::KpiQuery& query) const {
  absl::StatusOr<kpi::Plan> plan = kpi::MakePlan(query);
  if (!plan.ok()) return plan.status();
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return kpi::ScanPartial(*state_, *plan);
}

absl::StatusOr<v1::KpiReport> Engine::Kpis(const v1::KpiQuery& query) const {
  absl::StatusOr<kpi::Plan> plan = kpi::MakePlan(query);
  if (!plan.ok()) return plan.status();
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return kpi::Report(*state_, *plan);
}

absl::Status Engine::KpisInto(const v1::KpiQuery& query, v1::KpiReport* report) const {
  absl::StatusOr<kpi::Plan> plan = kpi::MakePlan(query);
  if (!plan.ok()) return plan.status();
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return kpi::ReportInto(*state_, *plan, report);
}

absl::StatusOr<v1::KpiReport> Engine::MergeKpiPartials(absl::Span<const v1::KpiPartial> partials) {
  return kpi::MergePartials(partials);
}

v1::ActionList Engine::Outbox() const {
  ReaderLock lock(&state_->mu);
  if (!StoreUsable(store_.get()).ok()) return v1::ActionList();
  return rules::Outbox(*state_);
}

absl::Status Engine::Acknowledge(absl::Span<const std::string> action_ids) {
  WriterLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  absl::StatusOr<std::vector<uint32_t>> pending = rules::PendingToAcknowledge(action_ids, *state_);
  if (!pending.ok()) return pending.status();
  // A persistent engine journals what changes (durably) before it changes,
  // as for events and clock moves, so a reopen does not deliver it again.
  if (store_ != nullptr && !pending->empty()) {
    std::vector<std::string> ids;
    ids.reserve(pending->size());
    for (uint32_t idx : *pending) ids.push_back(state_->actions.Id(idx));
    if (absl::Status st = store_->JournalAcknowledge(ids); !st.ok()) return st;
  }
  rules::MarkAcknowledged(*pending, state_.get());
  return absl::OkStatus();
}

absl::StatusOr<v1::RuleSet> Engine::LoadRuleSet(absl::string_view text,
                                                const v1::PipelineSet* pipelines) {
  absl::StatusOr<v1::RuleSet> set = rules::ParseRuleSet(text);
  if (!set.ok()) return set.status();
  absl::StatusOr<Pipelines> built =
      Pipelines::Build(pipelines != nullptr ? *pipelines : DefaultConfig().pipelines());
  if (!built.ok()) return built.status();
  absl::StatusOr<std::unique_ptr<const rules::CompiledRules>> compiled =
      rules::CompiledRules::Compile(*set, *built);
  if (!compiled.ok()) return compiled.status();
  return set;
}

absl::StatusOr<std::string> Engine::Snapshot() const {
  ReaderLock lock(&state_->mu);
  if (absl::Status st = StoreUsable(store_.get()); !st.ok()) return st;
  return WriteSnapshot(*state_);
}

}  // namespace rapport
