// The default playbook of SPEC §4, one regulation at a time: each test drives
// events and the clock and asserts the exact actions (kind, assignee, due
// time, channel, template), then the negative cases of issue 3.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rapport/engine.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

// 2025-09-01T00:00:00Z: four months before New Year 2026 (C5).
constexpr int64_t kSep1 = kT0 + 243 * kDay;
// 2026-01-01T00:00:00Z: the default playbook (effective 2025-01-01) turns 12
// months old (R1).
constexpr int64_t kYearOn = kT0 + 365 * kDay;

std::vector<v1::Action> OfRule(const google::protobuf::RepeatedPtrField<v1::Action>& actions,
                               const std::string& rule) {
  std::vector<v1::Action> out;
  for (const v1::Action& a : actions) {
    if (a.rule_id() == rule) out.push_back(a);
  }
  return out;
}

v1::IngestResult In(Engine& e, const v1::Event& ev) {
  auto r = e.Ingest(ev);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : v1::IngestResult();
}

v1::ActionList Adv(Engine& e, int64_t now) {
  auto r = e.Advance(now);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : v1::ActionList();
}

std::string Call(const std::string& account, const std::string& dir = "DIRECTION_OUTBOUND",
                 const std::string& kind = "ACTIVITY_KIND_CALL") {
  return "activity { account_id: '" + account + "' manager_id: 'm1' kind: " + kind +
         " direction: " + dir + " }";
}

std::string Order(const std::string& order, const std::string& account) {
  return "order_placed { order_id: '" + order + "' account_id: '" + account +
         "' amount { amount_minor: 1000 currency: 'RUB' } }";
}

class PlaybookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = NewEngine();
    ASSERT_NE(engine_, nullptr);
    Seed(*engine_);
  }
  Engine& e() { return *engine_; }
  std::unique_ptr<Engine> engine_;
};

// P1: the first outbound call to a partner prospect -> a message through its
// preferred written channel, template after_first_call.
TEST_F(PlaybookTest, P1MessageAfterTheFirstOutboundCallOnly) {
  const int64_t t = kT0 + kHour;
  v1::IngestResult r = In(e(), Ev("call-1", t, Call("p1")));
  std::vector<v1::Action> p1 = OfRule(r.actions(), "P1");
  ASSERT_EQ(p1.size(), 1u);
  EXPECT_EQ(p1[0].kind(), v1::ACTION_KIND_SEND_MESSAGE);
  EXPECT_EQ(p1[0].account_id(), "p1");
  EXPECT_EQ(p1[0].assignee_role(), v1::ASSIGNEE_ACCOUNT);
  EXPECT_EQ(p1[0].assignee_id(), "p1");
  EXPECT_EQ(p1[0].channel(), v1::CHANNEL_MESSENGER);  // p1 prefers messenger
  EXPECT_EQ(p1[0].template_(), "after_first_call");
  EXPECT_EQ(p1[0].cause_event_id(), "call-1");
  EXPECT_EQ(p1[0].fired_at_us(), t);
  EXPECT_EQ(p1[0].due_at_us(), t);
  EXPECT_EQ(p1[0].rule_set_id(), "default_playbook");
  EXPECT_EQ(p1[0].state(), v1::ACTION_STATE_PENDING);

  // Only for the first call.
  EXPECT_TRUE(OfRule(In(e(), Ev("call-2", t + kDay, Call("p1"))).actions(), "P1").empty());
}

TEST_F(PlaybookTest, P1NotForInboundCallsEmailsClientsOrActivePartners) {
  // A partner with no preferred channel gets email; inbound calls and
  // outbound emails are not "the first outbound call".
  MustIngest(e(),
             Ev("p2", kT0,
                "account_upserted { account_id: 'p2' kind: ACCOUNT_KIND_PARTNER owner_id: 'm2' }"));
  EXPECT_TRUE(In(e(), Ev("in", kT0 + 1, Call("p2", "DIRECTION_INBOUND"))).actions().empty());
  EXPECT_TRUE(In(e(), Ev("mail", kT0 + 2, Call("p2", "DIRECTION_OUTBOUND", "ACTIVITY_KIND_EMAIL")))
                  .actions()
                  .empty());
  std::vector<v1::Action> p1 = OfRule(In(e(), Ev("call", kT0 + 3, Call("p2"))).actions(), "P1");
  ASSERT_EQ(p1.size(), 1u);
  EXPECT_EQ(p1[0].channel(), v1::CHANNEL_EMAIL);

  // A client is not a partner prospect.
  EXPECT_TRUE(In(e(), Ev("call-c1", kT0 + 4, Call("c1"))).actions().empty());
  // An active partner's first call is not after-first-contact either.
  MustIngest(e(),
             Ev("p3", kT0,
                "account_upserted { account_id: 'p3' kind: ACCOUNT_KIND_PARTNER owner_id: 'm2' }"));
  MustIngest(e(), Ev("p3-agreed", kT0 + 5, "partner_agreed { account_id: 'p3' }"));
  EXPECT_TRUE(OfRule(In(e(), Ev("call-p3", kT0 + 6, Call("p3"))).actions(), "P1").empty());
}

// P2: a partner agrees -> task product_training for the owner, due in 7 days.
TEST_F(PlaybookTest, P2ProductTrainingTask) {
  const int64_t t = kT0 + 2 * kDay;
  std::vector<v1::Action> p2 =
      OfRule(In(e(), Ev("agreed", t, "partner_agreed { account_id: 'p1' }")).actions(), "P2");
  ASSERT_EQ(p2.size(), 1u);
  EXPECT_EQ(p2[0].kind(), v1::ACTION_KIND_CREATE_TASK);
  EXPECT_EQ(p2[0].assignee_role(), v1::ASSIGNEE_OWNER);
  EXPECT_EQ(p2[0].assignee_id(), "m1");
  EXPECT_EQ(p2[0].template_(), "product_training");
  EXPECT_EQ(p2[0].fired_at_us(), t);
  EXPECT_EQ(p2[0].due_at_us(), t + 7 * kDay);
  EXPECT_EQ(p2[0].channel(), v1::CHANNEL_UNSPECIFIED);
}

// P3: a deal past its acquisition stage's 3-day SLA goes back a stage and the
// owner's team lead hears of it — once per stage entry.
TEST_F(PlaybookTest, P3MovesBackOnceAndNotifiesTheTeamLead) {
  MustIngest(e(), Ev("lead", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  const int64_t t1 = kT0 + kDay;
  MustIngest(e(),
             Ev("to-qualified", t1, "deal_stage_changed { deal_id: 'd1' to_stage: 'qualified' }"));
  // Exactly at the SLA the deal is not yet over it.
  EXPECT_TRUE(OfRule(Adv(e(), t1 + 3 * kDay).actions(), "P3").empty());
  std::vector<v1::Action> p3 = OfRule(Adv(e(), t1 + 3 * kDay + 1).actions(), "P3");
  ASSERT_EQ(p3.size(), 2u);
  EXPECT_EQ(p3[0].kind(), v1::ACTION_KIND_MOVE_STAGE);
  EXPECT_EQ(p3[0].deal_id(), "d1");
  EXPECT_EQ(p3[0].to_stage(), "lead");
  EXPECT_EQ(p3[0].assignee_id(), "m2");
  EXPECT_EQ(p3[0].cause_event_id(), "to-qualified");
  EXPECT_EQ(p3[0].fired_at_us(), t1 + 3 * kDay + 1);
  EXPECT_EQ(p3[1].kind(), v1::ACTION_KIND_NOTIFY);
  EXPECT_EQ(p3[1].assignee_role(), v1::ASSIGNEE_TEAM_LEAD);
  EXPECT_EQ(p3[1].assignee_id(), "m1");
  EXPECT_EQ(p3[1].template_(), "stage_sla_exceeded");
  EXPECT_EQ(p3[1].due_at_us(), t1 + 3 * kDay + 1);
  // Fires once, even though the host has not moved the deal yet.
  EXPECT_TRUE(OfRule(Adv(e(), t1 + 20 * kDay).actions(), "P3").empty());

  // The host moves it back: the first stage has its own SLA timer, but P3
  // never goes below the first stage.
  MustIngest(e(),
             Ev("back", t1 + 20 * kDay, "deal_stage_changed { deal_id: 'd1' to_stage: 'lead' }"));
  EXPECT_TRUE(OfRule(Adv(e(), t1 + 40 * kDay).actions(), "P3").empty());
}

TEST_F(PlaybookTest, P3NeverAtTheFirstStageNorAfterLeavingInTime) {
  MustIngest(e(), Ev("lead", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  EXPECT_TRUE(OfRule(Adv(e(), kT0 + 10 * kDay).actions(), "P3").empty());  // first stage

  const int64_t t = kT0 + 11 * kDay;
  MustIngest(e(), Ev("q", t, "deal_stage_changed { deal_id: 'd1' to_stage: 'qualified' }"));
  MustIngest(e(),
             Ev("p", t + 2 * kDay, "deal_stage_changed { deal_id: 'd1' to_stage: 'proposal' }"));
  // The qualified timer is void: the deal left in time.
  EXPECT_TRUE(OfRule(Adv(e(), t + 3 * kDay + 1).actions(), "P3").empty());
  std::vector<v1::Action> p3 = OfRule(Adv(e(), t + 5 * kDay + 1).actions(), "P3");
  ASSERT_EQ(p3.size(), 2u);
  EXPECT_EQ(p3[0].to_stage(), "qualified");
  EXPECT_EQ(p3[0].cause_event_id(), "p");

  // A lost deal is left alone.
  MustIngest(e(), Ev("lead2", t, "lead_created { deal_id: 'd2' account_id: 'c1' }"));
  MustIngest(e(), Ev("q2", t, "deal_stage_changed { deal_id: 'd2' to_stage: 'qualified' }"));
  MustIngest(e(), Ev("lost2", t + kDay, "deal_lost { deal_id: 'd2' }"));
  EXPECT_TRUE(OfRule(Adv(e(), t + 30 * kDay).actions(), "P3").empty());
}

TEST(PlaybookConfigTest, P3NeverInPostSaleStagesEvenWithAnSla) {
  // A post-sale stage with an SLA of its own: P3 watches acquisition stages
  // only.
  v1::EngineConfig config;
  *config.mutable_pipelines() = Engine::DefaultConfig().pipelines();
  for (v1::Pipeline& p : *config.mutable_pipelines()->mutable_pipelines()) {
    for (v1::Stage& s : *p.mutable_stages()) {
      if (s.phase() == v1::PHASE_POST_SALE) s.set_sla_us(kDay);
    }
  }
  auto engine = NewEngine(config);
  ASSERT_NE(engine, nullptr);
  Seed(*engine);
  MustIngest(*engine, Ev("lead", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*engine, Ev("won", kT0 + kHour, "deal_won { deal_id: 'd1' }"));
  MustIngest(*engine, Ev("work", kT0 + 2 * kHour,
                         "deal_stage_changed { deal_id: 'd1' to_stage: 'in_work' }"));
  EXPECT_EQ(engine->StuckDeals(kT0 + 10 * kDay).size(), 1u) << "the stage is over its SLA";
  EXPECT_TRUE(OfRule(Adv(*engine, kT0 + 10 * kDay).actions(), "P3").empty());
}

// C1: 14 days after completion, a survey by email or messenger.
TEST_F(PlaybookTest, C1SurveyFourteenDaysAfterCompletion) {
  MustIngest(e(), Ev("o1", kT0, Order("o1", "c1")));
  const int64_t done = kT0 + 2 * kDay;
  MustIngest(e(), Ev("o1-done", done, "order_completed { order_id: 'o1' }"));
  EXPECT_TRUE(OfRule(Adv(e(), done + 14 * kDay - 1).actions(), "C1").empty());
  std::vector<v1::Action> c1 = OfRule(Adv(e(), done + 14 * kDay).actions(), "C1");
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].kind(), v1::ACTION_KIND_SEND_SURVEY);
  EXPECT_EQ(c1[0].channel(), v1::CHANNEL_EMAIL);  // c1 names no channel
  EXPECT_EQ(c1[0].assignee_id(), "c1");
  EXPECT_EQ(c1[0].template_(), "feedback_survey");
  EXPECT_EQ(c1[0].cause_event_id(), "o1-done");
  EXPECT_EQ(c1[0].fired_at_us(), done + 14 * kDay);
  EXPECT_EQ(c1[0].due_at_us(), done + 14 * kDay);
}

TEST_F(PlaybookTest, C1ByMessengerWhenPreferredNeverByPhone) {
  MustIngest(e(), Ev("o1", kT0, Order("o1", "p1")));
  MustIngest(e(), Ev("o1-done", kT0, "order_completed { order_id: 'o1' }"));
  std::vector<v1::Action> c1 = OfRule(Adv(e(), kT0 + 14 * kDay).actions(), "C1");
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].channel(), v1::CHANNEL_MESSENGER);
}

TEST_F(PlaybookTest, C1SuppressedBySurveyInTheLast30Days) {
  MustIngest(e(), Ev("o1", kT0, Order("o1", "c1")));
  MustIngest(e(), Ev("o2", kT0, Order("o2", "c1")));
  MustIngest(e(), Ev("o1-done", kT0 + kDay, "order_completed { order_id: 'o1' }"));
  MustIngest(e(), Ev("o2-done", kT0 + 10 * kDay, "order_completed { order_id: 'o2' }"));
  v1::ActionList all = Adv(e(), kT0 + 60 * kDay);
  std::vector<v1::Action> c1 = OfRule(all.actions(), "C1");
  ASSERT_EQ(c1.size(), 1u) << "the second survey falls 9 days after the first";
  EXPECT_EQ(c1[0].cause_event_id(), "o1-done");

  // 30 days later a survey goes again.
  MustIngest(e(), Ev("o3", kT0 + 60 * kDay, Order("o3", "c1")));
  MustIngest(e(), Ev("o3-done", kT0 + 61 * kDay, "order_completed { order_id: 'o3' }"));
  EXPECT_EQ(OfRule(Adv(e(), kT0 + 90 * kDay).actions(), "C1").size(), 1u);
}

TEST_F(PlaybookTest, C1OpenComplaintTurnsTheSurveyIntoATask) {
  MustIngest(e(), Ev("o1", kT0, Order("o1", "c1")));
  MustIngest(e(), Ev("o1-done", kT0, "order_completed { order_id: 'o1' }"));
  MustIngest(e(),
             Ev("cmp", kT0 + 5 * kDay,
                "complaint_opened { complaint_id: 'k1' account_id: 'c1' severity: SEVERITY_LOW }"));
  std::vector<v1::Action> c1 = OfRule(Adv(e(), kT0 + 14 * kDay).actions(), "C1");
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].kind(), v1::ACTION_KIND_CREATE_TASK);
  EXPECT_EQ(c1[0].assignee_id(), "m2");
  EXPECT_EQ(c1[0].template_(), "resolve_complaint_first");
  EXPECT_EQ(c1[0].due_at_us(), kT0 + 15 * kDay);

  // Once resolved, the next completion gets its survey.
  MustIngest(e(), Ev("fix", kT0 + 15 * kDay, "complaint_resolved { complaint_id: 'k1' }"));
  MustIngest(e(), Ev("o2", kT0 + 15 * kDay, Order("o2", "c1")));
  MustIngest(e(), Ev("o2-done", kT0 + 16 * kDay, "order_completed { order_id: 'o2' }"));
  c1 = OfRule(Adv(e(), kT0 + 30 * kDay).actions(), "C1");
  ASSERT_EQ(c1.size(), 1u);
  EXPECT_EQ(c1[0].kind(), v1::ACTION_KIND_SEND_SURVEY);
}

// C2: an order delayed -> the client is told at once, the owner gets a task.
TEST_F(PlaybookTest, C2DelayMessageAndTask) {
  MustIngest(e(), Ev("o1", kT0, Order("o1", "c1")));
  const int64_t t = kT0 + 3 * kDay;
  std::vector<v1::Action> c2 = OfRule(
      In(e(), Ev("late", t, "order_delayed { order_id: 'o1' new_due_at_us: 1738368000000000 }"))
          .actions(),
      "C2");
  ASSERT_EQ(c2.size(), 2u);
  EXPECT_EQ(c2[0].kind(), v1::ACTION_KIND_SEND_MESSAGE);
  EXPECT_EQ(c2[0].assignee_id(), "c1");
  EXPECT_EQ(c2[0].channel(), v1::CHANNEL_EMAIL);
  EXPECT_EQ(c2[0].template_(), "order_delayed");
  EXPECT_EQ(c2[0].due_at_us(), t);
  EXPECT_EQ(c2[1].kind(), v1::ACTION_KIND_CREATE_TASK);
  EXPECT_EQ(c2[1].assignee_id(), "m2");
  EXPECT_EQ(c2[1].template_(), "handle_order_delay");
  EXPECT_EQ(c2[1].due_at_us(), t + kDay);
}

// C3: no outbound contact within 7 days after an order -> check_in.
TEST_F(PlaybookTest, C3CheckInWithoutContact) {
  const int64_t t = kT0 + kDay;
  MustIngest(e(), Ev("o1", t, Order("o1", "c1")));
  // An inbound contact does not count as reaching the client.
  MustIngest(e(), Ev("in", t + 2 * kDay, Call("c1", "DIRECTION_INBOUND")));
  EXPECT_TRUE(OfRule(Adv(e(), t + 7 * kDay - 1).actions(), "C3").empty());
  std::vector<v1::Action> c3 = OfRule(Adv(e(), t + 7 * kDay).actions(), "C3");
  ASSERT_EQ(c3.size(), 1u);
  EXPECT_EQ(c3[0].kind(), v1::ACTION_KIND_CREATE_TASK);
  EXPECT_EQ(c3[0].assignee_id(), "m2");
  EXPECT_EQ(c3[0].template_(), "check_in");
  EXPECT_EQ(c3[0].cause_event_id(), "o1");
  EXPECT_EQ(c3[0].due_at_us(), t + 8 * kDay);
}

TEST_F(PlaybookTest, C3CancelledByAContactOnDaySix) {
  const int64_t t = kT0 + kDay;
  MustIngest(e(), Ev("o1", t, Order("o1", "c1")));
  MustIngest(e(), Ev("call", t + 6 * kDay, Call("c1")));
  EXPECT_TRUE(OfRule(Adv(e(), t + 30 * kDay).actions(), "C3").empty());

  // Also when contacts arrive out of order, as long as they arrive before
  // the timer fires.
  MustIngest(e(), Ev("o2", t + 40 * kDay, Order("o2", "c1")));
  MustIngest(e(), Ev("o3", t + 50 * kDay, Order("o3", "c1")));
  MustIngest(
      e(), Ev("call3", t + 51 * kDay, Call("c1", "DIRECTION_OUTBOUND", "ACTIVITY_KIND_MESSENGER")));
  MustIngest(e(),
             Ev("call2", t + 46 * kDay, Call("c1", "DIRECTION_OUTBOUND", "ACTIVITY_KIND_EMAIL")));
  EXPECT_TRUE(OfRule(Adv(e(), t + 80 * kDay).actions(), "C3").empty());
}

// The watch of outbound contacts keeps a log per account, by account index:
// an account created after the log last grew, and the logs after a restore,
// each answer for their own account only.
TEST_F(PlaybookTest, C3WatchLogsPerAccountAcrossARestore) {
  const int64_t t = kT0 + kDay;
  MustIngest(e(), Ev("call0", t, Call("c1")));
  MustIngest(e(), Ev("c2", t,
                     "account_upserted { account_id: 'c2' kind: ACCOUNT_KIND_CLIENT "
                     "owner_id: 'm1' segment: 'retail' }"));
  MustIngest(e(), Ev("o1", t + kDay, Order("o1", "c1")));
  MustIngest(e(), Ev("o2", t + kDay, Order("o2", "c2")));
  MustIngest(e(), Ev("call1", t + 2 * kDay, Call("c1")));
  absl::StatusOr<std::string> snap = e().Snapshot();
  ASSERT_TRUE(snap.ok()) << snap.status();
  absl::StatusOr<std::unique_ptr<Engine>> restored = Engine::Restore(*snap);
  ASSERT_TRUE(restored.ok()) << restored.status();
  for (Engine* engine : {&e(), restored->get()}) {
    std::vector<v1::Action> c3 = OfRule(Adv(*engine, t + 30 * kDay).actions(), "C3");
    ASSERT_EQ(c3.size(), 1u);
    EXPECT_EQ(c3[0].account_id(), "c2");
    EXPECT_EQ(c3[0].cause_event_id(), "o2");
  }
}

// C4: a complaint -> resolve_complaint due the same day; critical -> the head.
TEST_F(PlaybookTest, C4ComplaintTaskSameDayCriticalToTheHead) {
  const int64_t t = kT0 + 10 * kHour;
  std::vector<v1::Action> c4 = OfRule(
      In(e(),
         Ev("k1", t,
            "complaint_opened { complaint_id: 'k1' account_id: 'c1' severity: SEVERITY_HIGH }"))
          .actions(),
      "C4");
  ASSERT_EQ(c4.size(), 1u);
  EXPECT_EQ(c4[0].kind(), v1::ACTION_KIND_CREATE_TASK);
  EXPECT_EQ(c4[0].assignee_id(), "m2");
  EXPECT_EQ(c4[0].template_(), "resolve_complaint");
  EXPECT_EQ(c4[0].due_at_us(), kT0 + kDay - 1) << "the last microsecond of the day";

  c4 = OfRule(In(e(), Ev("k2", t,
                         "complaint_opened { complaint_id: 'k2' account_id: 'c1' "
                         "severity: SEVERITY_CRITICAL }"))
                  .actions(),
              "C4");
  ASSERT_EQ(c4.size(), 2u);
  EXPECT_EQ(c4[1].kind(), v1::ACTION_KIND_NOTIFY);
  EXPECT_EQ(c4[1].assignee_role(), v1::ASSIGNEE_HEAD);
  EXPECT_EQ(c4[1].assignee_id(), "m0");
  EXPECT_EQ(c4[1].template_(), "critical_complaint");
}

// C5: four months before New Year, owners of active tier A/B clients and
// partners order gifts.
TEST_F(PlaybookTest, C5OrderGiftsForActiveTierAAndB) {
  auto acct = [&](const std::string& id, const std::string& kind, const std::string& tier) {
    MustIngest(e(), Ev("acct-" + id, kT0,
                       "account_upserted { account_id: '" + id + "' kind: " + kind +
                           " owner_id: 'm2' tier: " + tier + " }"));
  };
  MustIngest(e(), Ev("o-c1", kT0, Order("o-c1", "c1")));  // c1: tier A client
  acct("c2", "ACCOUNT_KIND_CLIENT", "TIER_C");            // tier C client
  MustIngest(e(), Ev("o-c2", kT0, Order("o-c2", "c2")));
  acct("c3", "ACCOUNT_KIND_CLIENT", "TIER_B");  // a lead, not a client yet
  acct("c4", "ACCOUNT_KIND_CLIENT", "TIER_B");  // repeat client
  MustIngest(e(), Ev("o-c4a", kT0, Order("o-c4a", "c4")));
  MustIngest(e(), Ev("o-c4b", kT0 + kDay, Order("o-c4b", "c4")));
  acct("p2", "ACCOUNT_KIND_PARTNER", "TIER_A");  // a prospect
  MustIngest(e(), Ev("p1-tier", kT0,
                     "account_upserted { account_id: 'p1' kind: ACCOUNT_KIND_PARTNER "
                     "owner_id: 'm1' tier: TIER_B }"));
  MustIngest(e(), Ev("p1-agreed", kT0 + kDay, "partner_agreed { account_id: 'p1' }"));
  EXPECT_TRUE(OfRule(Adv(e(), kSep1 - 1).actions(), "C5").empty());
  std::vector<v1::Action> c5 = OfRule(Adv(e(), kSep1).actions(), "C5");
  ASSERT_EQ(c5.size(), 3u);
  EXPECT_EQ(c5[0].account_id(), "p1");  // in account creation order
  EXPECT_EQ(c5[0].assignee_id(), "m1");
  EXPECT_EQ(c5[1].account_id(), "c1");
  EXPECT_EQ(c5[1].assignee_id(), "m2");
  EXPECT_EQ(c5[2].account_id(), "c4");
  for (const v1::Action& a : c5) {
    EXPECT_EQ(a.kind(), v1::ACTION_KIND_CREATE_TASK);
    EXPECT_EQ(a.template_(), "order_gifts");
    EXPECT_EQ(a.occasion(), "holiday:new_year:2026");
    EXPECT_EQ(a.fired_at_us(), kSep1);
    EXPECT_EQ(a.due_at_us(), kSep1 + 30 * kDay);
    EXPECT_TRUE(a.cause_event_id().empty());
  }
  // Once a year.
  EXPECT_TRUE(OfRule(Adv(e(), kSep1 + 100 * kDay).actions(), "C5").empty());
}

// C6: a client with exactly one order, 60 days after its completion.
TEST_F(PlaybookTest, C6OfferServiceAfterTheOnlyOrder) {
  MustIngest(e(), Ev("o1", kT0, Order("o1", "c1")));
  const int64_t done = kT0 + 5 * kDay;
  MustIngest(e(), Ev("o1-done", done, "order_completed { order_id: 'o1' }"));
  EXPECT_TRUE(OfRule(Adv(e(), done + 60 * kDay - 1).actions(), "C6").empty());
  std::vector<v1::Action> c6 = OfRule(Adv(e(), done + 60 * kDay).actions(), "C6");
  ASSERT_EQ(c6.size(), 1u);
  EXPECT_EQ(c6[0].kind(), v1::ACTION_KIND_CREATE_TASK);
  EXPECT_EQ(c6[0].assignee_id(), "m2");
  EXPECT_EQ(c6[0].template_(), "offer_service");
  EXPECT_EQ(c6[0].due_at_us(), done + 67 * kDay);
}

TEST_F(PlaybookTest, C6NotForAClientWhoOrderedAgain) {
  MustIngest(e(), Ev("o1", kT0, Order("o1", "c1")));
  MustIngest(e(), Ev("o1-done", kT0 + kDay, "order_completed { order_id: 'o1' }"));
  MustIngest(e(), Ev("o2", kT0 + 30 * kDay, Order("o2", "c1")));
  MustIngest(e(), Ev("o2-done", kT0 + 31 * kDay, "order_completed { order_id: 'o2' }"));
  EXPECT_TRUE(OfRule(Adv(e(), kT0 + 200 * kDay).actions(), "C6").empty());
  // Partners are not clients.
  MustIngest(e(), Ev("o3", kT0 + 200 * kDay, Order("o3", "p1")));
  MustIngest(e(), Ev("o3-done", kT0 + 200 * kDay, "order_completed { order_id: 'o3' }"));
  EXPECT_TRUE(OfRule(Adv(e(), kT0 + 300 * kDay).actions(), "C6").empty());
}

// M1: a manager with more than 2 open planning tasks -> the team lead.
TEST_F(PlaybookTest, M1NotifiesTheLeadAtTheThirdOpenPlanningTask) {
  for (int i = 2; i <= 5; ++i) {
    MustIngest(e(), Ev("p" + std::to_string(i), kT0,
                       "account_upserted { account_id: 'p" + std::to_string(i) +
                           "' kind: ACCOUNT_KIND_PARTNER owner_id: 'm2' }"));
  }
  // Complaint tasks are not planning tasks.
  MustIngest(e(),
             Ev("k", kT0,
                "complaint_opened { complaint_id: 'k' account_id: 'c1' severity: SEVERITY_LOW }"));
  v1::IngestResult r2 = In(e(), Ev("a2", kT0 + 1, "partner_agreed { account_id: 'p2' }"));
  In(e(), Ev("a3", kT0 + 2, "partner_agreed { account_id: 'p3' }"));
  EXPECT_TRUE(OfRule(e().Outbox().actions(), "M1").empty()) << "two planning tasks are fine";
  v1::IngestResult r4 = In(e(), Ev("a4", kT0 + 3, "partner_agreed { account_id: 'p4' }"));
  std::vector<v1::Action> m1 = OfRule(r4.actions(), "M1");
  ASSERT_EQ(m1.size(), 1u);
  EXPECT_EQ(m1[0].kind(), v1::ACTION_KIND_NOTIFY);
  EXPECT_EQ(m1[0].assignee_role(), v1::ASSIGNEE_TEAM_LEAD);
  EXPECT_EQ(m1[0].assignee_id(), "m1");
  EXPECT_EQ(m1[0].template_(), "team_overload");
  EXPECT_EQ(m1[0].account_id(), "p4");
  EXPECT_EQ(m1[0].cause_event_id(), "a4");
  EXPECT_EQ(m1[0].fired_at_us(), kT0 + 3);

  // Closing one brings the count back to 2 (completing it twice changes
  // nothing more); the next task lifts it above 2 again: a new notice.
  const std::string task2 = OfRule(r2.actions(), "P2")[0].action_id();
  MustIngest(e(), Ev("done2", kT0 + 4, "task_completed { task_id: '" + task2 + "' }"));
  MustIngest(e(), Ev("done2-again", kT0 + 4, "task_completed { task_id: '" + task2 + "' }"));
  std::vector<v1::Action> again =
      OfRule(In(e(), Ev("a5", kT0 + 5, "partner_agreed { account_id: 'p5' }")).actions(), "M1");
  ASSERT_EQ(again.size(), 1u) << "completing a task twice must not count it twice";
  EXPECT_EQ(again[0].account_id(), "p5");
}

// R1: once the rule set is over 12 months old, a notice to review it.
TEST_F(PlaybookTest, R1ReviewNoticeOnceAfterTwelveMonths) {
  EXPECT_TRUE(OfRule(Adv(e(), kYearOn - 1).actions(), "R1").empty());
  std::vector<v1::Action> r1 = OfRule(Adv(e(), kYearOn).actions(), "R1");
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_EQ(r1[0].kind(), v1::ACTION_KIND_NOTIFY);
  EXPECT_EQ(r1[0].assignee_role(), v1::ASSIGNEE_HEAD);
  EXPECT_EQ(r1[0].assignee_id(), "m0");
  EXPECT_EQ(r1[0].template_(), "review_regulations");
  EXPECT_TRUE(r1[0].account_id().empty());
  EXPECT_EQ(r1[0].fired_at_us(), kYearOn);
  EXPECT_TRUE(OfRule(Adv(e(), kYearOn + 400 * kDay).actions(), "R1").empty());
}

}  // namespace
}  // namespace rapport::test
