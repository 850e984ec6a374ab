// Grades through the public API: figures from the KPI engine, identical after
// Snapshot/Restore.
#include "gtest/gtest.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

v1::EngineConfig Config() {
  return Parse<v1::EngineConfig>(R"pb(
    grade_policy {
      window_us: 2592000000000  # 30 days
      grades { id: "intern" max_tier: TIER_C max_accounts: 10 }
      grades {
        id: "junior"
        max_tier: TIER_B
        requirements { metric: GRADE_METRIC_ACTIVE_PARTNERS_OWNED min: 1 }
        requirements { metric: GRADE_METRIC_LEADS_FROM_OWNED_PARTNERS min: 2 }
      }
      grades {
        id: "senior"
        max_tier: TIER_A
        requirements { metric: GRADE_METRIC_REVENUE min: 1000 currency: "RUB" }
      }
    })pb");
}

TEST(Grades, FiguresComeFromTheKpis) {
  auto engine = NewEngine(Config());
  Seed(*engine);  // m1 owns partner p1, m2 owns client c1
  MustIngest(*engine, Ev("g1", kT0 + kDay, "partner_agreed { account_id: 'p1' }"));
  MustIngest(*engine, Ev("g2", kT0 + kDay,
                         "account_upserted { account_id: 'c2' "
                         "kind: ACCOUNT_KIND_CLIENT owner_id: 'm2' }"));
  MustIngest(*engine, Ev("g3", kT0 + 2 * kDay,
                         "lead_created { deal_id: 'd1' account_id: 'c1' "
                         "source_partner_id: 'p1' }"));
  MustIngest(*engine, Ev("g4", kT0 + 2 * kDay,
                         "lead_created { deal_id: 'd2' account_id: 'c2' "
                         "source_partner_id: 'p1' }"));
  MustIngest(*engine, Ev("g5", kT0 + 3 * kDay,
                         "payment_received { account_id: 'c1' "
                         "amount { amount_minor: 1500 currency: 'RUB' } }"));

  auto eval = engine->Grades(kT0 + 10 * kDay);
  ASSERT_TRUE(eval.ok()) << eval.status();
  ASSERT_EQ(eval->managers_size(), 3);  // m0, m1, m2
  const auto& m1 = eval->managers(1);
  EXPECT_EQ(m1.manager_id(), "m1");
  EXPECT_EQ(m1.eligible_grade(), "junior");
  ASSERT_EQ(m1.unmet_size(), 1);
  EXPECT_EQ(m1.unmet(0).grade(), "senior");
  EXPECT_DOUBLE_EQ(m1.unmet(0).actual(), 0);

  const auto& m2 = eval->managers(2);
  EXPECT_EQ(m2.eligible_grade(), "intern");  // revenue alone cannot skip junior
  ASSERT_EQ(m2.unmet_size(), 2);
  EXPECT_EQ(m2.unmet(0).metric(), v1::GRADE_METRIC_ACTIVE_PARTNERS_OWNED);
  EXPECT_EQ(m2.unmet(1).metric(), v1::GRADE_METRIC_LEADS_FROM_OWNED_PARTNERS);
  EXPECT_EQ(m2.accounts_owned(), 2);

  // c1 made all the revenue: tier A, above what intern m2 may own.
  bool found = false;
  for (const auto& t : eval->tiers()) {
    if (t.account_id() == "c1") {
      EXPECT_EQ(t.tier(), v1::TIER_A);
      found = true;
    }
  }
  EXPECT_TRUE(found);
  ASSERT_GE(eval->violations_size(), 1);
  EXPECT_EQ(eval->violations(0).account_id(), "c1");
  EXPECT_EQ(eval->violations(0).suggested_owner_id(), "");  // nobody in t1 may own A

  // Outside the window the leads and revenue no longer count.
  auto later = engine->Grades(kT0 + 40 * kDay);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->managers(1).eligible_grade(), "intern");
  EXPECT_FALSE(engine->Grades(-1).ok());
}

TEST(Grades, IdenticalAfterSnapshotRestore) {
  testing::GeneratorOptions o;
  o.max_events = 40000;
  const auto events = testing::GenerateStream(o);
  auto engine = NewEngine();
  ASSERT_TRUE(engine->IngestBatch(events).ok());
  const int64_t as_of = events.back().occurred_at_us();
  auto before = engine->Grades(as_of);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->managers_size(), 13);
  auto restored = Engine::Restore(*engine->Snapshot());
  ASSERT_TRUE(restored.ok());
  auto after = (*restored)->Grades(as_of);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->SerializeAsString(), before->SerializeAsString());
  // The generated company has tiers of every kind.
  int counts[4] = {0, 0, 0, 0};
  for (const auto& t : before->tiers()) ++counts[t.tier()];
  EXPECT_GT(counts[v1::TIER_A], 0);
  EXPECT_GT(counts[v1::TIER_B], 0);
  EXPECT_GT(counts[v1::TIER_C], 0);
}

}  // namespace
}  // namespace rapport::test
