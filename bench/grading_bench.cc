// Grading at scale: 10 000 managers and 1 000 000 accounts evaluated at once
// (figures from the KPI engine over the trailing window, ABC tiers,
// violations with suggested owners).
//
//   build/release/bench/grading_bench --benchmark_counters_tabular=true
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "rapport/engine.h"

namespace rapport {
namespace {

constexpr int64_t kT0 = 1735689600000000;  // 2025-01-01

v1::Event Ev(int64_t& seq, int64_t at) {
  v1::Event e;
  e.set_event_id(absl::StrFormat("g-%d", seq++));
  e.set_occurred_at_us(at);
  return e;
}

// `managers` managers in teams of 10 (grades cycling through the default
// ladder), `accounts` clients spread over them, a payment for every tenth.
std::unique_ptr<Engine> Company(int managers, int accounts) {
  v1::EngineConfig config;
  config.mutable_rule_set();  // no regulations: this measures grading
  auto engine = *Engine::Create(config);
  std::vector<v1::Event> batch;
  int64_t seq = 0;
  auto flush = [&] {
    if (!engine->IngestBatch(batch).ok()) std::abort();
    batch.clear();
  };
  const char* grades[] = {"intern", "junior", "middle", "senior", "lead"};
  for (int t = 0; t < managers / 10; ++t) {
    auto e = Ev(seq, kT0);
    e.mutable_team_upserted()->set_team_id(absl::StrFormat("t%d", t));
    batch.push_back(e);
  }
  for (int m = 0; m < managers; ++m) {
    auto e = Ev(seq, kT0);
    auto* p = e.mutable_manager_upserted();
    p->set_manager_id(absl::StrFormat("m%05d", m));
    p->set_team_id(absl::StrFormat("t%d", m / 10));
    p->set_grade(grades[m % 5]);
    p->set_hired_at_us(kT0 - (m % 1500) * kMicrosPerDay);
    batch.push_back(e);
  }
  flush();
  for (int a = 0; a < accounts; ++a) {
    auto e = Ev(seq, kT0 + a);
    auto* p = e.mutable_account_upserted();
    p->set_account_id(absl::StrFormat("c%07d", a));
    p->set_kind(v1::ACCOUNT_KIND_CLIENT);
    p->set_owner_id(absl::StrFormat("m%05d", a % managers));
    batch.push_back(e);
    if (a % 10 == 0) {
      auto pay = Ev(seq, kT0 + 30 * kMicrosPerDay + a);
      auto* q = pay.mutable_payment_received();
      q->set_account_id(p->account_id());
      q->mutable_amount()->set_amount_minor(1000 + (a * 7919) % 100000);
      q->mutable_amount()->set_currency(a % 3 ? "RUB" : "USD");
      batch.push_back(pay);
    }
    if (batch.size() >= 100000) flush();
  }
  flush();
  return engine;
}

void BM_Grades(benchmark::State& state) {
  int managers = static_cast<int>(state.range(0));
  int accounts = static_cast<int>(state.range(1));
  // The CTest smoke run (RAPPORT_BENCH_EVENTS set) uses a small company.
  if (std::getenv("RAPPORT_BENCH_EVENTS") != nullptr) {
    managers = 100;
    accounts = 10000;
  }
  static std::unique_ptr<Engine> engine;
  static std::pair<int, int> built;
  if (!engine || built != std::make_pair(managers, accounts)) {
    engine = Company(managers, accounts);
    built = {managers, accounts};
  }
  int64_t violations = 0;
  for (auto _ : state) {
    auto eval = engine->Grades(kT0 + 60 * kMicrosPerDay);
    if (!eval.ok()) state.SkipWithError(std::string(eval.status().message()).c_str());
    violations = eval->violations_size();
    benchmark::DoNotOptimize(eval);
  }
  state.counters["managers"] = managers;
  state.counters["accounts"] = accounts;
  state.counters["violations"] = static_cast<double>(violations);
}
BENCHMARK(BM_Grades)
    ->Args({10000, 1000000})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

}  // namespace
}  // namespace rapport

BENCHMARK_MAIN();
