// KPI benchmarks (issue 4): every KPI over 1 M and 10 M generated events,
// ungrouped and by month x manager, (a) by Rapport's scan (the incremental
// cells forced off), (b) the incremental dashboard (all KPIs, the 24 whole UTC
// months before the data's end, by manager; cells on) and (c) by SQL in an
// in-process SQLite over the same fact rows (checked to agree with (a) on the
// figures SQL computes: leads, partners new/churned, revenue per currency,
// activities, NPS counts). Memory: bytes of the fact store per event, and of
// its parts (fact columns, account and deal timelines).
//
//   build/kpi/bench/kpi_bench --benchmark_counters_tabular=true
// RAPPORT_BENCH_EVENTS=N replaces the sizes with one of N events (CI smoke).
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "lib/ingest/validate.h"
#include "lib/kpi/cells.h"
#include "lib/kpi/query.h"
#include "lib/kpi/report.h"
#include "lib/lifecycle/apply.h"
#include "lib/state/config.h"
#include "lib/state/engine_state.h"
#include "rapport/testing/generator.h"

namespace rapport {
namespace {

using kpi::FactKind;

struct World {
  std::unique_ptr<EngineState> state;
  int64_t events = 0, start = 0, end = 0;
  sqlite3* db = nullptr;          // grp = ''
  sqlite3* db_manager = nullptr;  // grp = owner at t (activities: maker)
  std::vector<v1::Event> rest;    // not yet applied (ingest worlds)
  size_t next = 0;
  size_t batch = 0;  // events per batch of BM_DashboardAfterIngest
};

void Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    fprintf(stderr, "sqlite: %s\n", err);
    std::abort();
  }
}

sqlite3* BuildDb(const World& w, bool by_manager) {
  sqlite3* db;
  sqlite3_open(":memory:", &db);
  Exec(db,
       "CREATE TABLE facts(kind INT, t INT, grp TEXT, currency TEXT, amount INT, score INT, code "
       "INT)");
  Exec(db, "BEGIN");
  sqlite3_stmt* ins;
  sqlite3_prepare_v2(db, "INSERT INTO facts VALUES(?,?,?,?,?,?,?)", -1, &ins, nullptr);
  const EngineState& s = *w.state;
  for (FactKind k : {FactKind::kLead, FactKind::kPartnerAgreed, FactKind::kPartnerChurned,
                     FactKind::kPayment, FactKind::kActivity, FactKind::kFeedback}) {
    s.kpi.column(k).ForAll([&](int64_t t, const kpi::Fact& f) {
      std::string grp;
      if (by_manager) {
        if (k == FactKind::kActivity) {
          grp = s.kpi.strings.at(f.subject);
        } else {
          const v1::Attribution* a = AttributionAt(s, f.account, t);
          grp = a ? a->owner_id() : "";
        }
      }
      sqlite3_bind_int(ins, 1, static_cast<int>(k));
      sqlite3_bind_int64(ins, 2, t);
      sqlite3_bind_text(ins, 3, grp.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(ins, 4, k == FactKind::kPayment ? s.kpi.strings.at(f.aux).c_str() : "", -1,
                        SQLITE_TRANSIENT);
      sqlite3_bind_int64(ins, 5, k == FactKind::kPayment ? f.value : 0);
      sqlite3_bind_int64(ins, 6, k == FactKind::kFeedback ? f.value : -1);
      sqlite3_bind_int64(ins, 7, k == FactKind::kActivity ? f.aux : -1);
      sqlite3_step(ins);
      sqlite3_reset(ins);
    });
  }
  sqlite3_finalize(ins);
  Exec(db, "COMMIT");
  Exec(db, "CREATE INDEX facts_t ON facts(t)");
  Exec(db, "CREATE TABLE bounds(i INT, lo INT, hi INT)");
  return db;
}

// Events held back from an ingest world, for batches between queries.
constexpr int64_t kHeldBack = 200000;
// Batches (iterations) of each BM_DashboardAfterIngest variant.
constexpr size_t kAfterIngestBatches = 100;

// `ingest`: a world of its own (no SQL) whose last kHeldBack events are not
// applied but kept in `rest`.
World* Get(int64_t n, bool ingest = false) {
  static std::map<std::pair<int64_t, bool>, World*> worlds;
  // One size for all (a smoke run): the four BM_DashboardAfterIngest
  // variants share one ingest world, not two.
  const bool one_size = std::getenv("RAPPORT_BENCH_EVENTS") != nullptr;
  if (one_size) n = std::atoll(std::getenv("RAPPORT_BENCH_EVENTS"));
  if (worlds.count({n, ingest})) return worlds[{n, ingest}];
  World* w = new World;
  w->state = std::make_unique<EngineState>();
  if (!Configure(*WithDefaults(v1::EngineConfig()), w->state.get()).ok()) std::abort();
  testing::GeneratorOptions o;
  o.max_events = n;
  testing::Generator g(o);
  v1::Event e;
  w->start = INT64_MAX;
  const int64_t keep = ingest ? std::min(kHeldBack, n / 2) : 0;
  while (g.Next(&e)) {
    if (g.produced() > n - keep) {
      w->rest.push_back(e);
      continue;
    }
    ApplyEvent(e, EventFingerprint(e), w->state.get());
    w->start = std::min(w->start, e.occurred_at_us());
    w->end = std::max(w->end, e.occurred_at_us() + 1);
    ++w->events;
  }
  // Batches of 1000 at full size (two variants of 100 batches use the
  // 200 000 held back); smaller for a smaller world, so that every variant
  // has its 100 batches.
  w->batch = std::max<size_t>(1, w->rest.size() / (kAfterIngestBatches * (one_size ? 4 : 2)));
  return worlds[{n, ingest}] = w;
}

// The SQLite copies of a world, built when BM_Sqlite first needs them (a run
// of BM_Scan alone then does not wait ~a minute for them at 10 M).
void NeedDb(World* w) {
  if (w->db != nullptr) return;
  w->db = BuildDb(*w, false);
  w->db_manager = BuildDb(*w, true);
}

v1::KpiQuery Query(const World& w, bool grouped) {
  v1::KpiQuery q;
  q.set_start_us(w.start);
  q.set_end_us(w.end);
  if (grouped) {
    q.set_bucket(v1::BUCKET_MONTH);
    q.set_group_by(v1::GROUP_BY_MANAGER);
  }
  return q;
}

v1::KpiReport Scan(const World& w, const v1::KpiQuery& q) {
  auto plan = kpi::MakePlan(q);
  auto partial = kpi::ScanPartial(*w.state, *plan);
  return *kpi::MergePartials(absl::MakeConstSpan(&*partial, 1));
}

// (bucket start, group, figure) -> value
using Figures = std::map<std::tuple<int64_t, std::string, std::string>, int64_t>;

Figures Sql(const World& w, const v1::KpiQuery& q) {
  sqlite3* db = q.group_by() == v1::GROUP_BY_MANAGER ? w.db_manager : w.db;
  auto plan = kpi::MakePlan(q);
  Exec(db, "DELETE FROM bounds");
  for (int b = 0; b < plan->buckets(); ++b) {
    Exec(db, absl::StrCat("INSERT INTO bounds VALUES(", b, ",", plan->bounds[b], ",",
                          plan->bounds[b + 1], ")")
                 .c_str());
  }
  sqlite3_stmt* st;
  sqlite3_prepare_v2(
      db,
      "SELECT b.lo, f.grp, f.kind, f.currency, f.code, count(*), sum(f.amount), "
      "sum(f.score >= 9), sum(f.score >= 0 AND f.score <= 6) "
      "FROM bounds b JOIN facts f ON f.t >= b.lo AND f.t < b.hi GROUP BY 1, 2, 3, 4, 5",
      -1, &st, nullptr);
  Figures out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const int64_t lo = sqlite3_column_int64(st, 0);
    const std::string grp = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
    const auto kind = static_cast<FactKind>(sqlite3_column_int(st, 2));
    const std::string cur = reinterpret_cast<const char*>(sqlite3_column_text(st, 3));
    const int64_t code = sqlite3_column_int64(st, 4), count = sqlite3_column_int64(st, 5);
    switch (kind) {
      case FactKind::kLead:
        out[{lo, grp, "leads"}] += count;
        break;
      case FactKind::kPartnerAgreed:
        out[{lo, grp, "partners_new"}] += count;
        break;
      case FactKind::kPartnerChurned:
        out[{lo, grp, "partners_churned"}] += count;
        break;
      case FactKind::kPayment:
        out[{lo, grp, "revenue " + cur}] += sqlite3_column_int64(st, 6);
        break;
      case FactKind::kActivity:
        out[{lo, grp, absl::StrCat("act", code)}] += count;
        break;
      case FactKind::kFeedback:
        out[{lo, grp, "nps_n"}] += count;
        out[{lo, grp, "nps_p"}] += sqlite3_column_int64(st, 7);
        out[{lo, grp, "nps_d"}] += sqlite3_column_int64(st, 8);
        break;
      default:
        break;
    }
  }
  sqlite3_finalize(st);
  return out;
}

Figures FromReport(const v1::KpiReport& r) {
  Figures out;
  for (const v1::KpiRow& row : r.rows()) {
    const auto& v = row.values();
    auto put = [&](const std::string& name, int64_t x) {
      if (x != 0) out[{row.bucket_start_us(), row.group(), name}] = x;
    };
    put("leads", v.leads());
    put("partners_new", v.partners_new());
    put("partners_churned", v.partners_churned());
    for (const auto& l : v.revenue()) put("revenue " + l.currency(), l.amount_minor());
    const auto& a = v.activities();
    const int64_t acts[] = {a.calls_outbound(),    a.calls_inbound(),       a.emails_outbound(),
                            a.emails_inbound(),    a.messengers_outbound(), a.messengers_inbound(),
                            a.meetings_outbound(), a.meetings_inbound()};
    for (int i = 0; i < 8; ++i) put(absl::StrCat("act", i), acts[i]);
    put("nps_n", v.nps_responses());
    put("nps_p", v.nps_promoters());
    put("nps_d", v.nps_detractors());
  }
  return out;
}

void Counters(benchmark::State& state, const World& w) {
  state.counters["events"] = static_cast<double>(w.events);
  state.counters["events/s"] = benchmark::Counter(
      static_cast<double>(w.events) * state.iterations(), benchmark::Counter::kIsRate);
  const double n = static_cast<double>(w.events);
  state.counters["store_B/event"] = static_cast<double>(w.state->kpi.MemoryBytes()) / n;
  // The parts: the fact columns, and the timelines of accounts and deals.
  const kpi::FactStore::Memory m = w.state->kpi.MemoryUse();
  state.counters["facts_B/event"] = static_cast<double>(m.facts) / n;
  state.counters["accounts_B/event"] = static_cast<double>(m.accounts) / n;
  state.counters["deals_B/event"] = static_cast<double>(m.deals) / n;
  state.counters["slack_B/event"] = static_cast<double>(m.slack) / n;
}

void BM_Scan(benchmark::State& state) {
  World& w = *Get(state.range(0));
  const v1::KpiQuery q = Query(w, state.range(1) != 0);
  kpi::SetForceScanForTesting(true);
  for (auto _ : state) benchmark::DoNotOptimize(Scan(w, q));
  kpi::SetForceScanForTesting(false);
  Counters(state, w);
}

// The dashboard: 24 whole UTC months ending at the month after the data, by
// manager, as_of = end. Checked to equal the forced scan before timing; the
// first query (which builds the cells) is not timed.
v1::KpiQuery DashboardQuery(const World& w) {
  const absl::CivilMonth last =
      absl::CivilMonth(absl::ToCivilSecond(absl::FromUnixMicros(w.end - 1), absl::UTCTimeZone())) +
      1;
  v1::KpiQuery q;
  q.set_end_us(absl::ToUnixMicros(absl::FromCivil(last, absl::UTCTimeZone())));
  q.set_start_us(absl::ToUnixMicros(absl::FromCivil(last - 24, absl::UTCTimeZone())));
  q.set_bucket(v1::BUCKET_MONTH);
  q.set_group_by(v1::GROUP_BY_MANAGER);
  return q;
}

// A report as Engine::Kpis gives it (straight from the cells when they
// answer the query alone), or, `kept`, into a report kept between queries
// as Engine::KpisInto fills it.
v1::KpiReport Report(const World& w, const v1::KpiQuery& q) {
  return *kpi::Report(*w.state, *kpi::MakePlan(q));
}
void ReportInto(const World& w, const v1::KpiQuery& q, v1::KpiReport* kept) {
  if (!kpi::ReportInto(*w.state, *kpi::MakePlan(q), kept).ok()) std::abort();
}

// Whether the dashboard (both ways) equals the forced scan, byte for byte.
bool DashboardExact(const World& w, const v1::KpiQuery& q, v1::KpiReport* kept) {
  kpi::SetForceScanForTesting(true);
  const std::string want = Scan(w, q).SerializeAsString();
  kpi::SetForceScanForTesting(false);
  ReportInto(w, q, kept);
  return Report(w, q).SerializeAsString() == want && kept->SerializeAsString() == want;
}

// The dashboard, a new report per query (range(1) = 0) or one report kept
// (1). Checked to equal the forced scan before timing; the first query
// (which builds the cells) is not timed.
void BM_Dashboard(benchmark::State& state) {
  World& w = *Get(state.range(0));
  const v1::KpiQuery q = DashboardQuery(w);
  const bool kept = state.range(1) != 0;
  v1::KpiReport report;
  if (!DashboardExact(w, q, &report)) {
    state.SkipWithError("the incremental dashboard and the scan disagree");
    return;
  }
  for (auto _ : state) {
    if (kept) {
      ReportInto(w, q, &report);
      benchmark::DoNotOptimize(report);
    } else {
      benchmark::DoNotOptimize(Report(w, q));
    }
  }
  Counters(state, w);
}

// The dashboard re-queried after every batch of 1000 new events (fewer in a
// smoke run; the generator's, about 2 % of them late): the cells follow the
// batch, and only the months it touched are summed again. Only the query is
// timed (ingest and, every tenth batch, the check against the forced scan are
// not); `rebuilds` counts the cells rebuilt from the facts meanwhile.
// range(1): a new report per query (0) or one kept (1).
void BM_DashboardAfterIngest(benchmark::State& state) {
  World& w = *Get(state.range(0), true);
  const bool kept = state.range(1) != 0;
  v1::KpiQuery q = DashboardQuery(w);
  v1::KpiReport report;
  ReportInto(w, q, &report);  // builds the cells
  int64_t batches = 0;
  const int64_t rebuilds_before = kpi::CellRebuildsForTesting();
  for (auto _ : state) {
    state.PauseTiming();
    if (w.next + w.batch > w.rest.size()) {
      state.SkipWithError("out of held-back events");
      break;
    }
    for (size_t i = 0; i < w.batch; ++i, ++w.next) {
      const v1::Event& e = w.rest[w.next];
      ApplyEvent(e, EventFingerprint(e), w.state.get());
      w.end = std::max(w.end, e.occurred_at_us() + 1);
      ++w.events;
    }
    // The dashboard of "now": its 24 months follow the data.
    q = DashboardQuery(w);
    if (batches++ % 10 == 0) {
      if (!DashboardExact(w, q, &report)) {
        state.SkipWithError("the incremental dashboard and the scan disagree after ingest");
        break;
      }
    }
    state.ResumeTiming();
    if (kept) {
      ReportInto(w, q, &report);
      benchmark::DoNotOptimize(report);
    } else {
      benchmark::DoNotOptimize(Report(w, q));
    }
  }
  Counters(state, w);
  state.counters["rebuilds"] = static_cast<double>(kpi::CellRebuildsForTesting() - rebuilds_before);
}

void BM_Sqlite(benchmark::State& state) {
  World& w = *Get(state.range(0));
  NeedDb(&w);
  const v1::KpiQuery q = Query(w, state.range(1) != 0);
  Figures sql = Sql(w, q);
  // Zero figures are absent from the report's side.
  for (auto it = sql.begin(); it != sql.end();)
    it = it->second == 0 ? sql.erase(it) : std::next(it);
  if (sql != FromReport(Scan(w, q))) {
    state.SkipWithError("SQLite and the scan disagree");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(Sql(w, q));
  Counters(state, w);
}

BENCHMARK(BM_Scan)->ArgsProduct({{1000000, 10000000}, {0, 1}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Dashboard)->ArgsProduct({{1000000, 10000000}, {0, 1}})->Unit(benchmark::kMillisecond);
// Two variants of 100 batches each use the 200 000 held-back events.
BENCHMARK(BM_DashboardAfterIngest)
    ->ArgsProduct({{1000000, 10000000}, {0, 1}})
    ->Iterations(kAfterIngestBatches)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Sqlite)->ArgsProduct({{1000000, 10000000}, {0, 1}})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace rapport

BENCHMARK_MAIN();
