// The incremental path (per-day cells, lib/kpi/cells.h) against the scan
// through the public API: an engine fed in chunks, queried between chunks so
// its cells are maintained on ingest (late events, late owner changes
// included), must answer every random query exactly as the forced scan does.
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "lib/kpi/cells.h"
#include "lib/kpi/report.h"
#include "rapport/testing/generator.h"
#include "test_util.h"

namespace rapport::test {
namespace {

// Restores the default (incremental) path however a test ends.
struct ScanSwitch {
  ~ScanSwitch() { kpi::SetForceScanForTesting(false); }
};

std::vector<v1::Event> Stream(uint64_t seed) {
  testing::GeneratorOptions o;
  o.seed = seed;
  o.max_events = 6000;
  o.late_share = 0.05;
  o.leads_per_day = 6;
  std::vector<v1::Event> s = testing::GenerateStream(o);
  // Late owner changes: copies of account upserts with another owner, dated
  // in the past, delivered further on (they re-attribute counted facts).
  std::mt19937_64 rng(seed);
  std::vector<std::string> managers;
  for (const v1::Event& e : s) {
    if (e.has_manager_upserted() && !e.manager_upserted().is_head())
      managers.push_back(e.manager_upserted().manager_id());
  }
  std::vector<v1::Event> out;
  std::vector<std::pair<size_t, v1::Event>> pending;
  for (size_t i = 0; i < s.size(); ++i) {
    out.push_back(s[i]);
    if (s[i].has_account_upserted() && rng() % 6 == 0) {
      v1::Event c = s[i];
      c.set_event_id(s[i].event_id() + "-owner");
      c.set_occurred_at_us(s[i].occurred_at_us() + static_cast<int64_t>(rng() % (40 * kDay)));
      c.mutable_account_upserted()->set_owner_id(managers[rng() % managers.size()]);
      pending.emplace_back(i + 200 + rng() % 2000, std::move(c));
    }
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->first <= i) {
        out.push_back(std::move(it->second));
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& p : pending) out.push_back(std::move(p.second));
  return out;
}

v1::KpiQuery RandomQuery(std::mt19937_64& rng, int64_t from, int64_t to) {
  static const char* zones[] = {"", "UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"};
  const int64_t span = std::max<int64_t>(to - from, kDay);
  v1::KpiQuery q;
  int64_t a =
      from - 10 * kDay + static_cast<int64_t>(rng() % static_cast<uint64_t>(span + 20 * kDay));
  // Mostly whole UTC days (the cells' case), sometimes not (edge scans).
  if (rng() % 4 != 0) a = a / kDay * kDay;
  int64_t len = kDay + static_cast<int64_t>(rng() % static_cast<uint64_t>(span));
  if (rng() % 4 != 0) len = len / kDay * kDay;
  q.set_start_us(std::max<int64_t>(0, a));
  q.set_end_us(q.start_us() + len);
  q.set_bucket(static_cast<v1::Bucket>(rng() % 6));
  q.set_time_zone(zones[rng() % 5]);
  q.set_group_by(static_cast<v1::GroupBy>(rng() % 6));
  switch (rng() % 6) {
    case 0:
      break;
    case 1:
      q.set_as_of_us(q.start_us() + static_cast<int64_t>(rng() % static_cast<uint64_t>(len)) + 1);
      break;
    case 2:
      q.set_as_of_us(to - static_cast<int64_t>(rng() % static_cast<uint64_t>(30 * kDay)));
      break;
    // On a UTC day boundary after every event (stuck deals and receivables
    // from the cells), or in the past (the cells' as_of corrections).
    case 3:
      q.set_as_of_us((to / kDay + 1 + static_cast<int64_t>(rng() % 40)) * kDay);
      break;
    case 4:
      q.set_as_of_us((to / kDay - static_cast<int64_t>(rng() % 60)) * kDay);
      break;
    default:
      q.set_as_of_us(to + kDay);
      break;
  }
  if (q.as_of_us() != 0 && q.as_of_us() < q.start_us()) q.set_as_of_us(q.end_us());
  return q;
}

// Whether `got` is `want`, byte for byte (presence of empty messages and
// optional fields included); a readable difference on failure.
::testing::AssertionResult SameReport(const v1::KpiReport& got, const v1::KpiReport& want) {
  if (got.SerializeAsString() == want.SerializeAsString()) return ::testing::AssertionSuccess();
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  d.Compare(got, want);
  return ::testing::AssertionFailure() << "reports differ in their bytes\n" << diff.substr(0, 3000);
}

// The events [at, at + n) of `events` (fewer at the end).
std::vector<v1::Event> Chunk(const std::vector<v1::Event>& events, size_t at, size_t n) {
  return std::vector<v1::Event>(
      events.begin() + static_cast<std::ptrdiff_t>(at),
      events.begin() + static_cast<std::ptrdiff_t>(std::min(events.size(), at + n)));
}

// A report by the forced scan (the reference the cells must equal).
absl::StatusOr<v1::KpiReport> ScanKpis(Engine& engine, const v1::KpiQuery& q) {
  kpi::SetForceScanForTesting(true);
  auto scan = engine.Kpis(q);
  kpi::SetForceScanForTesting(false);
  return scan;
}

// An engine fed a generated stream in one batch, and the dashboard query
// (whole UTC months by manager) over the `days` before the day after its
// last event.
struct FedEngine {
  std::vector<v1::Event> events;
  std::unique_ptr<Engine> engine;
  v1::KpiQuery dashboard;
  int64_t end = 0;
};
FedEngine Feed(uint64_t seed, int64_t events, double late_share, int64_t days) {
  testing::GeneratorOptions o;
  o.seed = seed;
  o.max_events = events;
  o.late_share = late_share;
  FedEngine f;
  f.events = testing::GenerateStream(o);
  f.engine = NewEngine();
  EXPECT_TRUE(f.engine->IngestBatch(f.events, {BatchMode::kBestEffort}).ok());
  f.end = f.events.back().occurred_at_us() / kDay * kDay + kDay;
  f.dashboard.set_end_us(f.end);
  f.dashboard.set_start_us(f.end - days * kDay);
  f.dashboard.set_bucket(v1::BUCKET_MONTH);
  f.dashboard.set_group_by(v1::GROUP_BY_MANAGER);
  return f;
}

class KpiIncrementalTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(KpiIncrementalTest, CellsAnswerLikeTheScanWhileIngesting) {
  ScanSwitch restore;
  const uint64_t seed = GetParam();
  const std::vector<v1::Event> events = Stream(seed);
  auto engine = NewEngine();
  std::mt19937_64 rng(seed * 31);
  int64_t from = INT64_MAX, to = 0;
  int queries = 0, nonempty = 0;
  const int64_t rebuilds_before = kpi::CellRebuildsForTesting();
  const size_t chunk = events.size() / 12 + 1;
  // One report kept across all queries (KpisInto reuses its rows and lines,
  // which grow and shrink between these random shapes).
  v1::KpiReport kept;
  for (size_t at = 0; at < events.size(); at += chunk) {
    const std::vector<v1::Event> part = Chunk(events, at, chunk);
    ASSERT_TRUE(engine->IngestBatch(part, {BatchMode::kBestEffort}).ok());
    for (const v1::Event& e : part) {
      from = std::min(from, e.occurred_at_us());
      to = std::max(to, e.occurred_at_us());
    }
    for (int i = 0; i < 4; ++i, ++queries) {
      const v1::KpiQuery q = RandomQuery(rng, from, to);
      auto fast = engine->Kpis(q);
      auto scan = ScanKpis(*engine, q);
      ASSERT_TRUE(fast.ok()) << fast.status() << " for " << q.ShortDebugString();
      ASSERT_TRUE(scan.ok()) << scan.status() << " for " << q.ShortDebugString();
      std::string diff;
      google::protobuf::util::MessageDifferencer d;
      d.ReportDifferencesToString(&diff);
      ASSERT_TRUE(d.Compare(*fast, *scan)) << "query: " << q.ShortDebugString() << "\n"
                                           << diff.substr(0, 3000);
      ASSERT_TRUE(SameReport(*fast, *scan)) << "query: " << q.ShortDebugString();
      ASSERT_TRUE(engine->KpisInto(q, &kept).ok());
      ASSERT_TRUE(SameReport(kept, *scan)) << "kept report, query: " << q.ShortDebugString();
      for (const auto& row : fast->rows())
        nonempty += row.values().leads() > 0 && row.values().nps_responses() > 0;
    }
  }
  EXPECT_GE(queries, 40);
  EXPECT_GT(nonempty, 10);  // the queries reached the data
  // The cells were kept on ingest, not rebuilt for every query.
  EXPECT_LT(kpi::CellRebuildsForTesting() - rebuilds_before, queries);
}

// The dashboard shape (24 months by manager) at the end of a stream: every
// plain-sum figure comes from cells and still equals the scan, and the cells
// follow a late event into a closed month without a rebuild.
TEST(KpiIncremental, DashboardFollowsLateEventsWithoutRebuild) {
  ScanSwitch restore;
  FedEngine f = Feed(77, 8000, 0.0, 730);
  Engine* engine = f.engine.get();
  const v1::KpiQuery q = f.dashboard;
  auto before = engine->Kpis(q);
  ASSERT_TRUE(before.ok()) << before.status();
  // A late payment into an old month, for an account with facts.
  std::string account;
  int64_t t = 0;
  for (const v1::Event& e : f.events) {
    if (e.has_payment_received()) {
      account = e.payment_received().account_id();
      t = e.occurred_at_us() + 1;
      break;
    }
  }
  ASSERT_FALSE(account.empty());
  v1::Event late;
  late.set_event_id("late-payment");
  late.set_occurred_at_us(t);
  auto* p = late.mutable_payment_received();
  p->set_account_id(account);
  p->mutable_amount()->set_amount_minor(12345);
  p->mutable_amount()->set_currency("EUR");
  const int64_t rebuilds = kpi::CellRebuildsForTesting();
  ASSERT_TRUE(engine->Ingest(late).ok());
  auto fast = engine->Kpis(q);
  auto scan = ScanKpis(*engine, q);
  ASSERT_TRUE(fast.ok() && scan.ok());
  EXPECT_EQ(kpi::CellRebuildsForTesting(), rebuilds);
  google::protobuf::util::MessageDifferencer d;
  std::string diff;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(*fast, *scan)) << diff.substr(0, 3000);
  EXPECT_FALSE(google::protobuf::util::MessageDifferencer::Equals(*fast, *before));
}

// A dashboard (24 whole UTC months, as_of the next day boundary) re-queried
// after every small batch of a stream with late events, late owner changes,
// referral and source-partner changes: every grouping equals the scan, with
// the cells kept (and whole months' sums dropped and summed again) on ingest.
TEST(KpiIncremental, DashboardAfterEveryBatchEqualsTheScan) {
  ScanSwitch restore;
  const std::vector<v1::Event> events = Stream(404);
  auto engine = NewEngine();
  int64_t to = 0;
  int queries = 0, stuck = 0, overdue = 0, churn = 0, stages = 0, repeat = 0;
  const int64_t rebuilds_before = kpi::CellRebuildsForTesting();
  const int64_t cell_reports_before = kpi::CellReportsForTesting();
  int now_queries = 0;
  v1::KpiReport kept[3];
  const size_t chunk = 250;
  for (size_t at = 0; at < events.size(); at += chunk) {
    const std::vector<v1::Event> part = Chunk(events, at, chunk);
    ASSERT_TRUE(engine->IngestBatch(part, {BatchMode::kBestEffort}).ok());
    for (const v1::Event& e : part) to = std::max(to, e.occurred_at_us());
    const int64_t end = (to / kDay + 1) * kDay;
    int k = 0;
    for (v1::GroupBy by :
         {v1::GROUP_BY_MANAGER, v1::GROUP_BY_SOURCE_PARTNER, v1::GROUP_BY_ACCOUNT_KIND}) {
      v1::KpiReport& into = kept[k++];
      v1::KpiQuery q;
      q.set_end_us(end);
      q.set_start_us(end - 730 * kDay);
      q.set_bucket(v1::BUCKET_MONTH);
      q.set_group_by(by);
      if (at % (4 * chunk) == 0) q.set_as_of_us(end - 20 * kDay);  // sometimes in the past
      now_queries += q.as_of_us() == 0 ? 2 : 0;
      auto fast = engine->Kpis(q);
      ASSERT_TRUE(engine->KpisInto(q, &into).ok());
      auto scan = ScanKpis(*engine, q);
      ++queries;
      ASSERT_TRUE(fast.ok() && scan.ok()) << q.ShortDebugString();
      std::string diff;
      google::protobuf::util::MessageDifferencer d;
      d.ReportDifferencesToString(&diff);
      ASSERT_TRUE(d.Compare(*fast, *scan))
          << "after " << at + part.size() << " events, query " << q.ShortDebugString() << "\n"
          << diff.substr(0, 3000);
      ASSERT_TRUE(SameReport(*fast, *scan)) << q.ShortDebugString();
      ASSERT_TRUE(SameReport(into, *scan)) << "kept report, " << q.ShortDebugString();
      for (const auto& row : fast->rows()) {
        stuck += row.values().stuck_deals() > 0;
        overdue += row.values().receivables_overdue_count() > 0;
        churn += row.values().client_churn_rate().denominator() > 0;
        stages += row.values().stage_conversion_size() > 0;
        repeat += row.values().repeat_customer_rate().numerator() > 0;
      }
    }
  }
  // The figures were there to compare.
  EXPECT_GT(stuck, 0);
  EXPECT_GT(overdue, 0);
  EXPECT_GT(churn, 0);
  EXPECT_GT(stages, 0);
  EXPECT_GT(repeat, 0);
  // Late owner changes rebuild the manager cells; nothing else does.
  EXPECT_LT(kpi::CellRebuildsForTesting() - rebuilds_before, queries / 2);
  // A dashboard of "now" (as_of after every fact) is answered from the cells
  // alone, both ways; one with as_of in the past is not (it scans).
  EXPECT_EQ(kpi::CellReportsForTesting() - cell_reports_before, now_queries);
}

// KpisInto with a bad query gives the error and leaves the kept report as
// it was; a kept report shrinks to a smaller answer exactly.
TEST(KpiIncremental, KeptReportErrorsAndShrinks) {
  ScanSwitch restore;
  FedEngine f = Feed(9, 4000, testing::GeneratorOptions().late_share, 400);
  Engine* engine = f.engine.get();
  const v1::KpiQuery q = f.dashboard;
  const int64_t end = f.end;
  v1::KpiReport kept;
  ASSERT_TRUE(engine->KpisInto(q, &kept).ok());
  ASSERT_GT(kept.rows_size(), 10);
  const std::string before = kept.SerializeAsString();
  v1::KpiQuery bad = q;
  bad.set_start_us(bad.end_us());
  const absl::Status st = engine->KpisInto(bad, &kept);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(kept.SerializeAsString(), before);
  // Fewer buckets and groups, then weeks (not whole months), then ungrouped.
  for (auto shape : {std::pair{v1::BUCKET_MONTH, v1::GROUP_BY_TEAM},
                     std::pair{v1::BUCKET_WEEK, v1::GROUP_BY_MANAGER},
                     std::pair{v1::BUCKET_YEAR, v1::GROUP_BY_NONE}}) {
    v1::KpiQuery small = q;
    small.set_start_us(end - 60 * kDay);
    small.set_bucket(shape.first);
    small.set_group_by(shape.second);
    ASSERT_TRUE(engine->KpisInto(small, &kept).ok());
    auto scan = ScanKpis(*engine, small);
    ASSERT_TRUE(scan.ok());
    EXPECT_TRUE(SameReport(kept, *scan)) << small.ShortDebugString();
  }
}

// The cells' ingest hooks take no lock of the index (the engine's writer
// lock keeps queries out): ingest on one thread while two others query the
// dashboard (building and summing cells under the index's own lock), then
// the cells still answer as the scan does. Run under the tsan preset, this
// checks the locking too.
TEST(KpiIncremental, QueriesDuringIngestStayExact) {
  ScanSwitch restore;
  const std::vector<v1::Event> events = Stream(808);
  auto engine = NewEngine();
  const int64_t to = events.back().occurred_at_us();
  v1::KpiQuery q;
  q.set_end_us((to / kDay + 40) * kDay);
  q.set_start_us(q.end_us() - 730 * kDay);
  q.set_bucket(v1::BUCKET_MONTH);
  std::atomic<bool> done{false};
  std::atomic<int> answered{0};
  auto query = [&](v1::GroupBy by) {
    v1::KpiQuery mine = q;
    mine.set_group_by(by);
    v1::KpiReport kept;
    while (!done.load()) {
      if (engine->Kpis(mine).ok() && engine->KpisInto(mine, &kept).ok()) ++answered;
    }
  };
  std::thread a(query, v1::GROUP_BY_MANAGER), b(query, v1::GROUP_BY_NONE);
  const size_t chunk = 200;
  for (size_t at = 0; at < events.size(); at += chunk) {
    const std::vector<v1::Event> part = Chunk(events, at, chunk);
    EXPECT_TRUE(engine->IngestBatch(part, {BatchMode::kBestEffort}).ok());
  }
  done = true;
  a.join();
  b.join();
  EXPECT_GT(answered.load(), 0);
  for (v1::GroupBy by : {v1::GROUP_BY_MANAGER, v1::GROUP_BY_NONE}) {
    v1::KpiQuery mine = q;
    mine.set_group_by(by);
    auto fast = engine->Kpis(mine);
    auto scan = ScanKpis(*engine, mine);
    ASSERT_TRUE(fast.ok() && scan.ok());
    EXPECT_TRUE(SameReport(*fast, *scan)) << mine.ShortDebugString();
  }
}

// An engine with no events yet answers the dashboard (from cells) as the
// scan does, in every grouping.
TEST(KpiIncremental, EmptyEngineAnswersLikeTheScan) {
  ScanSwitch restore;
  auto engine = NewEngine();
  v1::KpiQuery q;
  q.set_end_us(400 * kDay);
  q.set_start_us(q.end_us() - 365 * kDay);
  q.set_bucket(v1::BUCKET_MONTH);
  for (int by = 0; by < 6; ++by) {
    q.set_group_by(static_cast<v1::GroupBy>(by));
    auto fast = engine->Kpis(q);
    auto scan = ScanKpis(*engine, q);
    ASSERT_TRUE(fast.ok() && scan.ok());
    EXPECT_TRUE(SameReport(*fast, *scan)) << q.ShortDebugString();
  }
}

// 3 streams x 13 chunks x 4 queries: 156 random queries.
INSTANTIATE_TEST_SUITE_P(Streams, KpiIncrementalTest, ::testing::Values(101, 202, 303, 505, 606));

}  // namespace
}  // namespace rapport::test
