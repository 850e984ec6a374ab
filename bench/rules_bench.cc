// Regulations speed (issue 3): ingest of the generated stream with the
// default playbook against no rules, timers fired per second by Advance, and
// bytes per pending timer.
//
//   build/release/bench/rules_bench --benchmark_counters_tabular=true
//
// Targets: ingest with the playbook >= 50 % of the speed without rules;
// >= 1 000 000 timers fired per second; <= 64 bytes per pending timer.
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "google/protobuf/text_format.h"
#include "lib/lifecycle/apply.h"
#include "lib/rules/runtime.h"
#include "lib/state/config.h"
#include "lib/state/engine_state.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"

namespace rapport {
namespace {

constexpr size_t kBatch = 10000;
constexpr int64_t kDay = kMicrosPerDay;
constexpr int64_t kStart = 1735689600000000;  // 2025-01-01

int64_t EnvOr(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoll(v) : fallback;
}

const std::vector<v1::Event>& Stream() {
  static auto* events = [] {
    testing::GeneratorOptions o;
    o.max_events = EnvOr("RAPPORT_BENCH_EVENTS", 1000000);
    return new std::vector<v1::Event>(testing::GenerateStream(o));
  }();
  return *events;
}

// Ingest of the generated stream in batches: range(0) 0 = no rules, 1 = the
// default playbook (with an Advance to the last event, so its timers fire).
void BM_Ingest(benchmark::State& state) {
  const auto& events = Stream();
  v1::EngineConfig config;
  if (state.range(0) == 0) config.mutable_rule_set();  // present, empty: no rules
  int64_t actions = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto engine = *Engine::Create(config);
    state.ResumeTiming();
    for (size_t i = 0; i < events.size(); i += kBatch) {
      auto r = engine->IngestBatch(
          absl::MakeConstSpan(events).subspan(i, std::min(kBatch, events.size() - i)));
      if (!r.ok()) state.SkipWithError(std::string(r.status().message()).c_str());
      actions += r->actions_size();
    }
    auto adv = engine->Advance(events.back().occurred_at_us());
    if (!adv.ok()) state.SkipWithError("advance failed");
    actions += adv->actions_size();
    state.PauseTiming();
    engine.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(events.size()));
  state.counters["actions"] =
      benchmark::Counter(static_cast<double>(actions) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_Ingest)
    ->ArgName("playbook")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// An engine state with `accounts` accounts created evenly over 10 days, each
// with one pending timer 30 days after its creation (so a day holds a tenth
// of them). With `cancel`, every timer's condition fails when it fires.
std::unique_ptr<EngineState> TimerState(int64_t accounts, bool cancel) {
  v1::EngineConfig config;
  const std::string rule = absl::StrCat(
      "id: 'bench' version: 1 rules { id: 'follow_up' "
      "trigger { on_event { filter { type: EVENT_TYPE_ACCOUNT_UPSERTED } } } delay_us: ",
      30 * kDay, cancel ? " conditions { segment: 'nobody' } " : " ",
      "actions { kind: ACTION_KIND_CREATE_TASK assignee: ASSIGNEE_OWNER "
      "due_offset_us: 86400000000 template: 'follow_up' } }");
  if (!google::protobuf::TextFormat::ParseFromString(rule, config.mutable_rule_set())) std::abort();
  auto full = WithDefaults(config);
  auto s = std::make_unique<EngineState>();
  if (!full.ok() || !Configure(*full, s.get()).ok()) std::abort();
  v1::Event e;
  e.set_event_id("m");
  e.set_occurred_at_us(kStart);
  e.mutable_manager_upserted()->set_manager_id("m");
  ApplyEvent(e, 0, s.get());
  s->accounts.Reserve(static_cast<size_t>(accounts));
  for (int64_t i = 0; i < accounts; ++i) {
    e.Clear();
    e.set_event_id(absl::StrCat("a", i));
    e.set_occurred_at_us(kStart + i * (10 * kDay / accounts));
    auto* p = e.mutable_account_upserted();
    p->set_account_id(absl::StrCat("c", i));
    p->set_kind(v1::ACCOUNT_KIND_CLIENT);
    p->set_owner_id("m");
    ApplyEvent(e, static_cast<uint64_t>(i + 1), s.get());
  }
  return s;
}

// One Advance per iteration over the next day: a tenth of the pending timers
// fire. cancelled: 0 = each fires a task (the action is built, stored, put in
// the outbox and returned in an ActionList), 1 = each is cancelled by its
// condition. reuse: 0 = a new ActionList per Advance (Engine::Advance), 1 =
// one list cleared and refilled (Engine::AdvanceInto with a list the host
// keeps; both run AdvanceClock then TakeProduced, as here).
void BM_AdvanceDay(benchmark::State& state) {
  const int64_t accounts = EnvOr("RAPPORT_BENCH_TIMERS", 1000000);
  std::unique_ptr<EngineState> s = TimerState(accounts, state.range(0) == 1);
  const bool reuse = state.range(1) != 0;
  const size_t pending = s->rules.timers.size();
  state.counters["pending_timers"] = static_cast<double>(pending);
  state.counters["bytes_per_timer"] =
      static_cast<double>(rules::TimerBytes(s->rules)) / static_cast<double>(pending);
  int64_t day = 0;
  int64_t fired = 0;
  v1::ActionList kept;
  for (auto _ : state) {
    const size_t before = s->rules.timers.size();
    AdvanceClock(kStart + 30 * kDay + (++day) * kDay, s.get());
    v1::ActionList fresh;
    v1::ActionList& out = reuse ? kept : fresh;
    out.Clear();
    rules::TakeProduced(s.get(), out.mutable_actions());
    fired += static_cast<int64_t>(before - s->rules.timers.size());
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(fired);
  state.counters["timers_fired_per_s"] =
      benchmark::Counter(static_cast<double>(fired), benchmark::Counter::kIsRate);
  state.counters["fired_per_advance"] =
      static_cast<double>(fired) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_AdvanceDay)
    ->ArgNames({"cancelled", "reuse"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Iterations(9)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace rapport

BENCHMARK_MAIN();
