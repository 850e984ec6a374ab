// The engine's KPIs against the naive reference (tests/kpi_reference.h) on
// random queries over generated streams with late events and owner changes.
#include <random>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "kpi_reference.h"
#include "lib/kpi/cells.h"
#include "rapport/testing/generator.h"
#include "test_util.h"

namespace rapport::test {
namespace {

// A generated stream, plus late owner changes: copies of client upserts with
// another owner, dated between the account's creation and the stream's end
// but delivered at the end (so they re-attribute events already ingested).
std::vector<v1::Event> Stream(uint64_t seed, int64_t events) {
  testing::GeneratorOptions o;
  o.seed = seed;
  o.max_events = events;
  o.late_share = 0.05;
  o.leads_per_day = 6;
  std::vector<v1::Event> s = testing::GenerateStream(o);
  std::mt19937_64 rng(seed);
  std::vector<std::string> managers;
  for (const v1::Event& e : s) {
    if (e.has_manager_upserted() && !e.manager_upserted().is_head())
      managers.push_back(e.manager_upserted().manager_id());
  }
  const int64_t end = s.back().occurred_at_us();
  std::vector<v1::Event> extra;
  for (const v1::Event& e : s) {
    if (!e.has_account_upserted() || rng() % 8 != 0) continue;
    v1::Event c = e;
    c.set_event_id(e.event_id() + "-owner");
    c.set_occurred_at_us(
        e.occurred_at_us() +
        static_cast<int64_t>(rng() % static_cast<uint64_t>(end - e.occurred_at_us() + 1)));
    c.mutable_account_upserted()->set_owner_id(managers[rng() % managers.size()]);
    extra.push_back(std::move(c));
  }
  s.insert(s.end(), extra.begin(), extra.end());
  return s;
}

v1::KpiQuery RandomQuery(std::mt19937_64& rng, int64_t from, int64_t to) {
  static const char* zones[] = {"", "UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"};
  const int64_t span = to - from;
  v1::KpiQuery q;
  int64_t a =
      from - kDay * 10 + static_cast<int64_t>(rng() % static_cast<uint64_t>(span + 20 * kDay));
  int64_t len = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(span));
  const int bucket = static_cast<int>(rng() % 6);
  // Keep the bucket count small: the reference is slow on purpose.
  const int64_t unit[] = {span, kDay, 7 * kDay, 31 * kDay, 92 * kDay, 366 * kDay};
  len = std::min(len, unit[bucket] * 14);
  if (rng() % 5 == 0) a = (a / kDay) * kDay;  // sometimes on a UTC midnight
  q.set_start_us(std::max<int64_t>(0, a));
  q.set_end_us(q.start_us() + std::max<int64_t>(len, 1));
  q.set_bucket(static_cast<v1::Bucket>(bucket));
  q.set_time_zone(zones[rng() % 5]);
  q.set_group_by(static_cast<v1::GroupBy>(rng() % 6));
  switch (rng() % 4) {
    case 0:
      break;  // as_of = end
    case 1:
      q.set_as_of_us(q.start_us() + static_cast<int64_t>(rng() % static_cast<uint64_t>(len)) + 1);
      break;
    case 2:
      q.set_as_of_us(q.end_us() + static_cast<int64_t>(rng() % static_cast<uint64_t>(60 * kDay)));
      break;
    default:
      q.set_as_of_us(to + kDay);
      break;
  }
  return q;
}

void ExpectSame(const v1::KpiReport& got, const v1::KpiReport& want, const v1::KpiQuery& q) {
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(got, want)) << "query: " << q.ShortDebugString() << "\n"
                                    << diff.substr(0, 3000);
}

class KpiReferenceTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(KpiReferenceTest, RandomQueriesMatchTheReference) {
  const uint64_t seed = GetParam();
  std::vector<v1::Event> events = Stream(seed, 4000);
  auto engine = NewEngine();
  auto r = engine->IngestBatch(events, {BatchMode::kBestEffort});
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<v1::Event> accepted;
  std::vector<bool> rejected(events.size(), false);
  for (const auto& rej : r->rejected()) rejected[static_cast<size_t>(rej.index())] = true;
  for (size_t i = 0; i < events.size(); ++i)
    if (!rejected[i]) accepted.push_back(events[i]);
  ASSERT_GT(accepted.size(), events.size() * 9 / 10);
  ReferenceKpis ref(accepted, engine->config());

  int64_t from = INT64_MAX, to = 0;
  for (const v1::Event& e : accepted) {
    from = std::min(from, e.occurred_at_us());
    to = std::max(to, e.occurred_at_us());
  }
  std::mt19937_64 rng(seed * 7919);
  int nonempty = 0;
  for (int i = 0; i < 70; ++i) {
    const v1::KpiQuery q = RandomQuery(rng, from, to);
    auto got = engine->Kpis(q);
    ASSERT_TRUE(got.ok()) << got.status() << " for " << q.ShortDebugString();
    const v1::KpiReport want = ref.Report(q);
    ExpectSame(*got, want, q);
    // The forced scan (every fact of the period, through the scan's flat
    // tables and its pass by deal) against the reference too.
    kpi::SetForceScanForTesting(true);
    auto scanned = engine->Kpis(q);
    kpi::SetForceScanForTesting(false);
    ASSERT_TRUE(scanned.ok()) << scanned.status() << " for " << q.ShortDebugString();
    ExpectSame(*scanned, want, q);
    for (const auto& row : got->rows()) nonempty += row.values().leads() > 0;
    if (HasFailure()) return;
  }
  EXPECT_GT(nonempty, 10);  // the queries did reach the data
}

// 3 streams x 70 queries = 210 random queries.
INSTANTIATE_TEST_SUITE_P(Streams, KpiReferenceTest, ::testing::Values(11, 22, 33));

}  // namespace
}  // namespace rapport::test
