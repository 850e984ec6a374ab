// The lifecycle of SPEC §3 through the public C++ API.
#include <string>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "lib/data/embedded.h"
#include "lib/lifecycle/pipelines.h"
#include "rapport/engine.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

TEST(Lifecycle, PartnerGoesProspectActiveChurnedAndBack) {
  auto engine = NewEngine();
  Seed(*engine);
  EXPECT_EQ(engine->GetAccount("p1")->status(), v1::ACCOUNT_STATUS_PROSPECT);
  MustIngest(*engine, Ev("a1", kT0 + kDay, "partner_agreed { account_id: 'p1' }"));
  EXPECT_EQ(engine->GetAccount("p1")->status(), v1::ACCOUNT_STATUS_ACTIVE);
  EXPECT_EQ(engine->GetAccount("p1")->status_since_us(), kT0 + kDay);
  MustIngest(*engine, Ev("a2", kT0 + 2 * kDay, "partner_churned { account_id: 'p1' }"));
  EXPECT_EQ(engine->GetAccount("p1")->status(), v1::ACCOUNT_STATUS_CHURNED);
  MustIngest(*engine, Ev("a3", kT0 + 3 * kDay, "partner_agreed { account_id: 'p1' }"));
  EXPECT_EQ(engine->GetAccount("p1")->status(), v1::ACCOUNT_STATUS_ACTIVE);
}

TEST(Lifecycle, ClientGoesLeadClientRepeatChurned) {
  auto engine = NewEngine();
  Seed(*engine);
  EXPECT_EQ(engine->GetAccount("c1")->status(), v1::ACCOUNT_STATUS_LEAD);
  MustIngest(*engine, Ev("o1", kT0 + kDay,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 100 currency: 'RUB' } }"));
  EXPECT_EQ(engine->GetAccount("c1")->status(), v1::ACCOUNT_STATUS_CLIENT);
  MustIngest(*engine, Ev("o2", kT0 + 2 * kDay,
                         "order_placed { order_id: 'o2' account_id: 'c1' "
                         "amount { amount_minor: 100 currency: 'RUB' } }"));
  auto c1 = engine->GetAccount("c1");
  EXPECT_EQ(c1->status(), v1::ACCOUNT_STATUS_REPEAT);
  EXPECT_EQ(c1->order_count(), 2);
  MustIngest(*engine,
             Ev("ch", kT0 + 3 * kDay, "account_churned { account_id: 'c1' reason: 'gone' }"));
  EXPECT_EQ(engine->GetAccount("c1")->status(), v1::ACCOUNT_STATUS_CHURNED);
}

TEST(Lifecycle, ClientChurnsAfterAYearWithoutOrders) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("o1", kT0,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 1 currency: 'RUB' } }"));
  ASSERT_TRUE(engine->Advance(kT0 + 365 * kDay - 1).ok());
  EXPECT_EQ(engine->GetAccount("c1")->status(), v1::ACCOUNT_STATUS_CLIENT);
  ASSERT_TRUE(engine->Advance(kT0 + 365 * kDay).ok());
  auto c1 = engine->GetAccount("c1");
  EXPECT_EQ(c1->status(), v1::ACCOUNT_STATUS_CHURNED);
  EXPECT_EQ(c1->status_since_us(), kT0 + 365 * kDay);
}

TEST(Lifecycle, ChurnTimeIsConfigurableAndAnOrderResetsIt) {
  v1::EngineConfig config;
  config.set_client_churn_after_us(30 * kDay);
  auto engine = NewEngine(config);
  Seed(*engine);
  MustIngest(*engine, Ev("o1", kT0,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 1 currency: 'RUB' } }"));
  MustIngest(*engine, Ev("o2", kT0 + 20 * kDay,
                         "order_placed { order_id: 'o2' account_id: 'c1' "
                         "amount { amount_minor: 1 currency: 'RUB' } }"));
  ASSERT_TRUE(engine->Advance(kT0 + 31 * kDay).ok());
  EXPECT_EQ(engine->GetAccount("c1")->status(), v1::ACCOUNT_STATUS_REPEAT);
  ASSERT_TRUE(engine->Advance(kT0 + 50 * kDay).ok());
  EXPECT_EQ(engine->GetAccount("c1")->status(), v1::ACCOUNT_STATUS_CHURNED);
}

TEST(Lifecycle, DealMovesThroughStagesWithFullHistory) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*engine,
             Ev("s1", kT0 + kDay, "deal_stage_changed { deal_id: 'd1' to_stage: 'qualified' }"));
  MustIngest(*engine,
             Ev("s2", kT0 + 2 * kDay, "deal_stage_changed { deal_id: 'd1' to_stage: 'lead' }"));
  MustIngest(*engine,
             Ev("s3", kT0 + 3 * kDay, "deal_stage_changed { deal_id: 'd1' to_stage: 'proposal' }"));
  auto d = engine->GetDeal("d1");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->pipeline_id(), "client");
  EXPECT_EQ(d->stage(), "proposal");
  ASSERT_EQ(d->history_size(), 4);
  EXPECT_EQ(d->history(0).stage(), "lead");
  EXPECT_EQ(d->history(0).entered_at_us(), kT0);
  EXPECT_EQ(d->history(0).left_at_us(), kT0 + kDay);
  EXPECT_EQ(d->history(1).stage(), "qualified");
  EXPECT_EQ(d->history(2).stage(), "lead");  // moving back is recorded
  EXPECT_EQ(d->history(3).entered_at_us(), kT0 + 3 * kDay);
  EXPECT_EQ(d->history(3).left_at_us(), 0);
  EXPECT_EQ(d->status(), v1::DEAL_STATUS_OPEN);
}

TEST(Lifecycle, EnteringTheWonStageWinsTheDeal) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*engine,
             Ev("s1", kT0 + kDay, "deal_stage_changed { deal_id: 'd1' to_stage: 'prepaid' }"));
  auto d = engine->GetDeal("d1");
  EXPECT_EQ(d->status(), v1::DEAL_STATUS_WON);
  EXPECT_EQ(d->won_at_us(), kT0 + kDay);
  // A deal-won event that happened earlier (arriving late) moves won_at back:
  // won at the event or the stage entry, whichever comes first.
  MustIngest(*engine, Ev("w1", kT0 + kHour, "deal_won { deal_id: 'd1' }"));
  EXPECT_EQ(engine->GetDeal("d1")->won_at_us(), kT0 + kHour);
}

TEST(Lifecycle, DealWonEventEntersTheWonStage) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'p1' }"));
  MustIngest(*engine, Ev("w1", kT0 + kDay, "deal_won { deal_id: 'd1' }"));
  auto d = engine->GetDeal("d1");
  EXPECT_EQ(d->pipeline_id(), "partner");
  EXPECT_EQ(d->stage(), "agreed");
  EXPECT_EQ(d->status(), v1::DEAL_STATUS_WON);
  EXPECT_EQ(d->won_at_us(), kT0 + kDay);
}

TEST(Lifecycle, DealLost) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*engine, Ev("x1", kT0 + kDay, "deal_lost { deal_id: 'd1' reason: 'no budget' }"));
  auto d = engine->GetDeal("d1");
  EXPECT_EQ(d->status(), v1::DEAL_STATUS_LOST);
  EXPECT_EQ(d->lost_at_us(), kT0 + kDay);
  EXPECT_EQ(d->lost_reason(), "no budget");
}

TEST(Lifecycle, LeadTakesTheAccountsSourcePartner) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("c2", kT0,
                         "account_upserted { account_id: 'c2' kind: ACCOUNT_KIND_CLIENT "
                         "source_partner_id: 'p1' }"));
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c2' }"));
  EXPECT_EQ(engine->GetDeal("d1")->source_partner_id(), "p1");
}

TEST(Lifecycle, AccountTeamIsRoutedByOwnerThenSegmentThenDefault) {
  v1::EngineConfig config;
  config.set_default_team_id("t9");
  auto engine = NewEngine(config);
  Seed(*engine);
  EXPECT_EQ(engine->GetAccount("c1")->team_id(), "t1");  // the owner's team
  MustIngest(*engine, Ev("t9", kT0, "team_upserted { team_id: 't9' }"));
  MustIngest(*engine, Ev("c2", kT0,
                         "account_upserted { account_id: 'c2' kind: ACCOUNT_KIND_CLIENT "
                         "segment: 'retail' }"));
  EXPECT_EQ(engine->GetAccount("c2")->team_id(), "t1");  // by segment
  MustIngest(*engine, Ev("c3", kT0,
                         "account_upserted { account_id: 'c3' kind: ACCOUNT_KIND_CLIENT "
                         "segment: 'energy' }"));
  EXPECT_EQ(engine->GetAccount("c3")->team_id(), "t9");  // the default
}

TEST(Lifecycle, OrdersInvoicesPaymentsComplaintsFeedback) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("o1", kT0,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 500 currency: 'USD' } due_at_us: 1 }"));
  MustIngest(*engine, Ev("od", kT0 + kDay, "order_delayed { order_id: 'o1' new_due_at_us: 99 }"));
  auto o = engine->GetOrder("o1");
  EXPECT_EQ(o->status(), v1::ORDER_STATUS_DELAYED);
  EXPECT_EQ(o->due_at_us(), 99);
  EXPECT_EQ(o->delays(), 1);
  MustIngest(*engine, Ev("oc", kT0 + 2 * kDay, "order_completed { order_id: 'o1' }"));
  EXPECT_EQ(engine->GetOrder("o1")->status(), v1::ORDER_STATUS_COMPLETED);
  EXPECT_EQ(engine->GetOrder("o1")->completed_at_us(), kT0 + 2 * kDay);

  MustIngest(*engine, Ev("cp", kT0,
                         "complaint_opened { complaint_id: 'k1' account_id: 'c1' "
                         "severity: SEVERITY_HIGH }"));
  EXPECT_EQ(engine->GetAccount("c1")->open_complaints(), 1);
  MustIngest(*engine, Ev("cr", kT0, "complaint_resolved { complaint_id: 'k1' }"));
  MustIngest(*engine, Ev("cr2", kT0, "complaint_resolved { complaint_id: 'k1' }"));
  EXPECT_EQ(engine->GetAccount("c1")->open_complaints(), 0);

  MustIngest(*engine, Ev("f1", kT0 + 5 * kDay, "feedback_received { account_id: 'c1' score: 9 }"));
  MustIngest(*engine, Ev("f0", kT0 + 4 * kDay, "feedback_received { account_id: 'c1' score: 3 }"));
  EXPECT_EQ(engine->GetAccount("c1")->last_feedback_score(), 9);  // the latest by time

  MustIngest(*engine, Ev("ac", kT0 + 6 * kDay,
                         "activity { account_id: 'c1' manager_id: 'm2' "
                         "kind: ACTIVITY_KIND_CALL direction: DIRECTION_OUTBOUND }"));
  EXPECT_EQ(engine->GetAccount("c1")->last_outbound_at_us(), kT0 + 6 * kDay);
  MustIngest(*engine, Ev("cs", kT0, "case_study_published { account_id: 'c1' }"));
  EXPECT_EQ(engine->GetAccount("c1")->case_studies(), 1);
}

TEST(Lifecycle, ReadsByStatusStageAndStuck) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*engine, Ev("l2", kT0, "lead_created { deal_id: 'd2' account_id: 'p1' }"));
  MustIngest(*engine, Ev("s2", kT0 + kDay,
                         "deal_stage_changed { deal_id: 'd2' to_stage: 'first_contact' }"));
  MustIngest(*engine, Ev("l3", kT0, "lead_created { deal_id: 'd3' account_id: 'c1' }"));
  MustIngest(*engine, Ev("x3", kT0, "deal_lost { deal_id: 'd3' }"));

  auto leads = engine->AccountsByStatus(v1::ACCOUNT_STATUS_LEAD);
  ASSERT_EQ(leads.size(), 1u);
  EXPECT_EQ(leads[0].account_id(), "c1");
  EXPECT_EQ(engine->AccountStatusCounts()[v1::ACCOUNT_STATUS_PROSPECT], 1);

  auto by_stage = engine->DealsByStage();
  ASSERT_EQ(by_stage.size(), 17u);  // 7 partner + 10 client stages
  EXPECT_EQ(by_stage[1].stage(), "first_contact");
  EXPECT_EQ(by_stage[1].deals(), 1);
  EXPECT_EQ(by_stage[7].stage(), "lead");
  EXPECT_EQ(by_stage[7].deals(), 1);  // d3 is lost and not counted

  // SLA 3 days: d1 entered 'lead' at kT0, d2 entered 'first_contact' at kT0+1d.
  EXPECT_TRUE(engine->StuckDeals(kT0 + 3 * kDay).empty());
  auto stuck = engine->StuckDeals(kT0 + 3 * kDay + 1);
  ASSERT_EQ(stuck.size(), 1u);
  EXPECT_EQ(stuck[0].deal_id(), "d1");
  EXPECT_EQ(stuck[0].dwell_us(), 3 * kDay + 1);
  EXPECT_EQ(engine->StuckDeals(kT0 + 4 * kDay + 1).size(), 2u);
  // Post-sale stages have no SLA; lost deals are never stuck.
  MustIngest(*engine, Ev("s1", kT0, "deal_stage_changed { deal_id: 'd1' to_stage: 'in_work' }"));
  EXPECT_EQ(engine->StuckDeals(kT0 + 100 * kDay).size(), 1u);
}

TEST(Lifecycle, HostReplacesPipelines) {
  v1::EngineConfig config = Parse<v1::EngineConfig>(R"pb(
    pipelines {
      pipelines {
        id: "simple"
        default_for: ACCOUNT_KIND_CLIENT
        stages { id: "open" phase: PHASE_ACQUISITION sla_us: 1000 }
        stages { id: "done" phase: PHASE_POST_SALE won: true }
      }
    })pb");
  auto engine = NewEngine(config);
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  EXPECT_EQ(engine->GetDeal("d1")->pipeline_id(), "simple");
  // Partners have no default pipeline here.
  auto r = engine->Ingest(Ev("l2", kT0, "lead_created { deal_id: 'd2' account_id: 'p1' }"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(Lifecycle, BadConfigIsRejectedNamingTheField) {
  auto bad = Engine::Create(Parse<v1::EngineConfig>(R"pb(pipelines {
                                                           pipelines {
                                                             id: "x"
                                                             stages { id: "a" }
                                                             stages { id: "a" }
                                                           }
                                                         })pb"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("stage 1 'a': field 'id' is repeated"), std::string::npos)
      << bad.status();
  auto neg = Engine::Create(Parse<v1::EngineConfig>("client_churn_after_us: -5"));
  EXPECT_NE(neg.status().message().find("client_churn_after_us"), std::string::npos);
}

// StageIndex compares a few words per stage instead of hashing the id: it
// must give what the id -> index map gives, for every stage id and for near
// misses (a prefix, one more byte, one byte changed, the same first eight
// bytes and length, an embedded NUL, empty), in the default pipelines and in
// one built to share heads.
TEST(Lifecycle, StageIndexAgreesWithTheIdMap) {
  v1::PipelineSet sets[2];
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(std::string(data::DefaultPipelines()),
                                                            &sets[0]));
  sets[1] = Parse<v1::PipelineSet>(R"pb(
    pipelines {
      id: "heads"
      stages { id: "a" }
      stages { id: "ab" }
      stages { id: "abcdefg" }
      stages { id: "abcdefgh" }
      stages { id: "abcdefghi" }
      stages { id: "abcdefghj" }
      stages { id: "abcdefgh_and_a_long_tail_1" }
      stages { id: "abcdefgh_and_a_long_tail_2" }
      stages { id: "b\000" }
    })pb");
  int checked = 0;
  for (const v1::PipelineSet& set : sets) {
    absl::StatusOr<Pipelines> pipelines = Pipelines::Build(set);
    ASSERT_TRUE(pipelines.ok()) << pipelines.status();
    for (const PipelineInfo& p : pipelines->all()) {
      std::vector<std::string> probes = {"", std::string("a\0", 2), std::string("b"),
                                         std::string("b\0\0", 3)};
      for (int i = 0; i < p.size(); ++i) {
        const std::string& id = p.stage(i).id();
        EXPECT_EQ(p.StageIndex(id), i) << id;
        probes.push_back(id + "x");
        for (size_t n = 0; n < id.size(); ++n) {
          probes.push_back(id.substr(0, n));
          std::string changed = id;
          changed[n] = static_cast<char>(changed[n] ^ 1);
          probes.push_back(changed);
        }
      }
      for (const std::string& probe : probes) {
        auto it = p.stage_index.find(probe);
        EXPECT_EQ(p.StageIndex(probe), it == p.stage_index.end() ? -1 : it->second)
            << p.pipeline.id() << " '" << probe << "'";
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 300);
}

}  // namespace
}  // namespace rapport::test
