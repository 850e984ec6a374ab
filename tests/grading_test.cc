// The grade ladder, ABC tiers, violations and drift, on hand-made figures.
#include <string>

#include "gtest/gtest.h"
#include "lib/grading/grading.h"
#include "lib/ingest/validate.h"
#include "lib/lifecycle/apply.h"
#include "lib/state/config.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

class Grading : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Configure(*WithDefaults({}), &state_).ok());
    policy_ = Parse<v1::GradePolicy>(R"pb(
      grades { id: "intern" max_tier: TIER_C bonus_multiplier: 0.5 max_accounts: 2 }
      grades {
        id: "junior"
        max_tier: TIER_B
        bonus_multiplier: 1
        max_accounts: 3
        requirements { metric: GRADE_METRIC_TENURE_DAYS min: 30 }
        requirements { metric: GRADE_METRIC_LEAD_CONVERSION min: 0.2 }
      }
      grades {
        id: "senior"
        max_tier: TIER_A
        bonus_multiplier: 2
        requirements { metric: GRADE_METRIC_REVENUE min: 1000 currency: "RUB" }
        requirements { metric: GRADE_METRIC_NPS min: 10 }
      }
    )pb");
    policy_ = *GradePolicyWithDefaults(policy_);
  }

  void Add(const v1::Event& e) {
    Verdict v;
    const uint64_t fp = EventFingerprint(e);
    ASSERT_TRUE(ValidateEvent(e, fp, state_, nullptr, &v).ok()) << e.DebugString();
    ApplyEvent(e, fp, &state_);
  }

  // Team t1 with managers a (intern), b (junior), c (senior); team t2 with d.
  void Company() {
    Add(Ev("t1", kT0, "team_upserted { team_id: 't1' }"));
    Add(Ev("t2", kT0, "team_upserted { team_id: 't2' }"));
    Add(Ev("ma", kT0, "manager_upserted { manager_id: 'a' team_id: 't1' grade: 'intern' }"));
    Add(Ev("mb", kT0, "manager_upserted { manager_id: 'b' team_id: 't1' grade: 'junior' }"));
    Add(Ev("mc", kT0, "manager_upserted { manager_id: 'c' team_id: 't1' grade: 'senior' }"));
    Add(Ev("md", kT0, "manager_upserted { manager_id: 'd' team_id: 't2' grade: 'senior' }"));
  }

  void Account(const std::string& id, const std::string& owner) {
    Add(Ev("acc-" + id, kT0,
           "account_upserted { account_id: '" + id + "' kind: ACCOUNT_KIND_CLIENT owner_id: '" +
               owner + "' }"));
  }

  EngineState state_;
  v1::GradePolicy policy_;
};

TEST_F(Grading, LadderNeverSkipsAGradeAndListsUnmetRequirements) {
  Company();
  GradingInputs in;
  // a: meets senior's requirements but not junior's conversion: stays intern.
  auto& a = in.managers["a"];
  a.metric[v1::GRADE_METRIC_LEAD_CONVERSION] = 0.1;
  a.metric[v1::GRADE_METRIC_NPS] = 50;
  a.revenue["RUB"] = 5000;
  // b: junior met; senior's revenue is in USD only.
  auto& b = in.managers["b"];
  b.metric[v1::GRADE_METRIC_LEAD_CONVERSION] = 0.25;
  b.metric[v1::GRADE_METRIC_NPS] = 20;
  b.revenue["USD"] = 5000;
  // c: everything; conversion undefined (null) fails junior.
  auto& c = in.managers["c"];
  c.metric[v1::GRADE_METRIC_NPS] = 20;
  c.revenue["RUB"] = 1000;
  const auto eval = EvaluateGrades(state_, policy_, kT0 + 40 * kDay, in);
  ASSERT_EQ(eval.managers_size(), 4);

  const auto& ga = eval.managers(0);
  EXPECT_EQ(ga.current_grade(), "intern");
  EXPECT_EQ(ga.eligible_grade(), "intern");
  ASSERT_EQ(ga.unmet_size(), 1);
  EXPECT_EQ(ga.unmet(0).grade(), "junior");
  EXPECT_EQ(ga.unmet(0).metric(), v1::GRADE_METRIC_LEAD_CONVERSION);
  EXPECT_DOUBLE_EQ(ga.unmet(0).actual(), 0.1);
  EXPECT_DOUBLE_EQ(ga.unmet(0).required(), 0.2);
  EXPECT_DOUBLE_EQ(ga.bonus_multiplier(), 0.5);

  const auto& gb = eval.managers(1);
  EXPECT_EQ(gb.eligible_grade(), "junior");
  ASSERT_EQ(gb.unmet_size(), 1);
  EXPECT_EQ(gb.unmet(0).metric(), v1::GRADE_METRIC_REVENUE);
  EXPECT_EQ(gb.unmet(0).currency(), "RUB");
  EXPECT_DOUBLE_EQ(gb.unmet(0).actual(), 0);

  // c holds senior but is eligible only for intern: unmet of junior and senior.
  const auto& gc = eval.managers(2);
  EXPECT_EQ(gc.current_grade(), "senior");
  EXPECT_EQ(gc.eligible_grade(), "intern");
  ASSERT_EQ(gc.unmet_size(), 1);
  EXPECT_EQ(gc.unmet(0).grade(), "junior");
  EXPECT_FALSE(gc.unmet(0).has_actual()) << "a null ratio has no actual value";
  EXPECT_DOUBLE_EQ(gc.bonus_multiplier(), 2);

  // Tenure: before 30 days, nobody is junior.
  const auto early = EvaluateGrades(state_, policy_, kT0 + 10 * kDay, in);
  EXPECT_EQ(early.managers(1).eligible_grade(), "intern");
  EXPECT_EQ(early.managers(1).unmet(0).metric(), v1::GRADE_METRIC_TENURE_DAYS);
  EXPECT_NEAR(early.managers(1).unmet(0).actual(), 10, 1e-9);
}

TEST_F(Grading, AbcTiersWithTiesAndNoRevenue) {
  Company();
  for (const char* id : {"x1", "x2", "x3", "x4", "x5"}) Account(id, "c");
  GradingInputs in;
  // Total 1000: x1 500 (before 0% -> A), x2 300 (50% -> A), x3 150 (80% -> B),
  // x4 50 (95% -> C), x5 nothing (C).
  in.account_revenue[0]["RUB"] = 500;
  in.account_revenue[1]["RUB"] = 300;
  in.account_revenue[2]["RUB"] = 150;
  in.account_revenue[3]["RUB"] = 50;
  auto eval = EvaluateGrades(state_, policy_, kT0, in);
  ASSERT_EQ(eval.tiers_size(), 5);
  EXPECT_EQ(eval.tiers(0).tier(), v1::TIER_A);
  EXPECT_EQ(eval.tiers(1).tier(), v1::TIER_A);
  EXPECT_EQ(eval.tiers(2).tier(), v1::TIER_B);
  EXPECT_EQ(eval.tiers(3).tier(), v1::TIER_C);
  EXPECT_EQ(eval.tiers(4).tier(), v1::TIER_C);

  // Ties: equal revenue ranks the account created first higher.
  GradingInputs tie;
  tie.account_revenue[0]["RUB"] = 100;
  tie.account_revenue[1]["RUB"] = 100;
  tie.account_revenue[2]["RUB"] = 100;
  tie.account_revenue[3]["RUB"] = 100;
  tie.account_revenue[4]["RUB"] = 100;
  eval = EvaluateGrades(state_, policy_, kT0, tie);
  // Before-shares 0, .2, .4, .6, .8: A A A A B.
  EXPECT_EQ(eval.tiers(3).tier(), v1::TIER_A);
  EXPECT_EQ(eval.tiers(4).tier(), v1::TIER_B);

  // Currencies are ranked apart; an account takes its best tier.
  GradingInputs two;
  two.account_revenue[0]["RUB"] = 1000;
  two.account_revenue[1]["RUB"] = 1;
  two.account_revenue[1]["USD"] = 7;
  eval = EvaluateGrades(state_, policy_, kT0, two);
  EXPECT_EQ(eval.tiers(1).tier(), v1::TIER_A);

  // No revenue at all: everyone is C.
  eval = EvaluateGrades(state_, policy_, kT0, GradingInputs());
  for (const auto& t : eval.tiers()) EXPECT_EQ(t.tier(), v1::TIER_C);
}

TEST_F(Grading, ViolationsSuggestAnOwnerInTheSameTeam) {
  Company();
  Account("x1", "a");  // intern owns the A account
  Account("x2", "a");
  Account("x3", "a");  // intern over its limit of 2
  Account("x4", "c");
  GradingInputs in;
  in.account_revenue[0]["RUB"] = 1000;
  const auto eval = EvaluateGrades(state_, policy_, kT0, in);
  ASSERT_EQ(eval.violations_size(), 2);
  const auto& tier = eval.violations(0);
  EXPECT_EQ(tier.kind(), v1::Violation::KIND_TIER_ABOVE_GRADE);
  EXPECT_EQ(tier.account_id(), "x1");
  EXPECT_EQ(tier.manager_id(), "a");
  EXPECT_EQ(tier.tier(), v1::TIER_A);
  // b (junior) may own only up to B; c (senior) may own A; d is another team.
  EXPECT_EQ(tier.suggested_owner_id(), "c");
  const auto& over = eval.violations(1);
  EXPECT_EQ(over.kind(), v1::Violation::KIND_OVER_ACCOUNT_LIMIT);
  EXPECT_EQ(over.manager_id(), "a");
  // b has 0 accounts, c has 1: the fewest wins.
  EXPECT_EQ(over.suggested_owner_id(), "b");
  EXPECT_EQ(eval.managers(0).accounts_owned(), 3);
}

TEST_F(Grading, HunterDriftBelowTheFloor) {
  Company();
  GradingInputs in;
  in.managers["a"].hunter_share = 0.1;
  in.managers["b"].hunter_share = 0.2;
  const auto eval = EvaluateGrades(state_, policy_, kT0, in);
  EXPECT_TRUE(eval.managers(0).hunter_drift());
  EXPECT_FALSE(eval.managers(1).hunter_drift());  // at the floor is not below it
  EXPECT_FALSE(eval.managers(2).has_hunter_share());
  EXPECT_FALSE(eval.managers(2).hunter_drift());
}

TEST_F(Grading, BadPoliciesNameTheGradeAndField) {
  EXPECT_FALSE(GradePolicyWithDefaults(v1::GradePolicy()).ok());
  auto dup =
      GradePolicyWithDefaults(Parse<v1::GradePolicy>("grades { id: 'x' } grades { id: 'x' }"));
  EXPECT_NE(dup.status().message().find("grade 1 'x': field 'id' is repeated"), std::string::npos);
  auto rev = GradePolicyWithDefaults(Parse<v1::GradePolicy>(
      "grades { id: 'x' requirements { metric: GRADE_METRIC_REVENUE min: 1 } }"));
  EXPECT_NE(rev.status().message().find("field 'currency'"), std::string::npos) << rev.status();
  auto share = GradePolicyWithDefaults(
      Parse<v1::GradePolicy>("grades { id: 'x' } abc_a_share: 0.9 abc_ab_share: 0.5"));
  EXPECT_EQ(share.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rapport::test
