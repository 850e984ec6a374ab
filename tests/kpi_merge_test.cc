// Mergeable partials: 4 engines holding disjoint accounts of one generated
// stream (late events included) merge into the single engine's report; and
// the fact store survives Snapshot/Restore byte for byte.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/snapshot.pb.h"
#include "test_util.h"

namespace rapport::test {
namespace {

// The account an event belongs to ("" for managers and teams).
std::string AccountOf(const v1::Event& e, const std::map<std::string, std::string>& deal_account,
                      const std::map<std::string, std::string>& other_account) {
  switch (e.payload_case()) {
    case v1::Event::kAccountUpserted:
      return e.account_upserted().account_id();
    case v1::Event::kLeadCreated:
      return e.lead_created().account_id();
    case v1::Event::kDealStageChanged:
      return deal_account.at(e.deal_stage_changed().deal_id());
    case v1::Event::kDealWon:
      return deal_account.at(e.deal_won().deal_id());
    case v1::Event::kDealLost:
      return deal_account.at(e.deal_lost().deal_id());
    case v1::Event::kPartnerAgreed:
      return e.partner_agreed().account_id();
    case v1::Event::kPartnerChurned:
      return e.partner_churned().account_id();
    case v1::Event::kAccountChurned:
      return e.account_churned().account_id();
    case v1::Event::kOrderPlaced:
      return e.order_placed().account_id();
    case v1::Event::kOrderDelayed:
      return other_account.at(e.order_delayed().order_id());
    case v1::Event::kOrderCompleted:
      return other_account.at(e.order_completed().order_id());
    case v1::Event::kInvoiceIssued:
      return e.invoice_issued().account_id();
    case v1::Event::kPaymentReceived:
      return e.payment_received().account_id();
    case v1::Event::kActivity:
      return e.activity().account_id();
    case v1::Event::kFeedbackReceived:
      return e.feedback_received().account_id();
    case v1::Event::kComplaintOpened:
      return e.complaint_opened().account_id();
    case v1::Event::kComplaintResolved:
      return other_account.at(e.complaint_resolved().complaint_id());
    case v1::Event::kCaseStudyPublished:
      return e.case_study_published().account_id();
    default:
      return "";
  }
}

int ShardOf(const std::string& account) {
  return static_cast<int>(std::hash<std::string>()(account) % 4);
}

TEST(KpiMerge, FourShardsMergeIntoTheSingleEngineReport) {
  testing::GeneratorOptions o;
  o.seed = 5;
  o.max_events = 20000;
  o.late_share = 0.05;
  std::vector<v1::Event> events = testing::GenerateStream(o);
  // References across shards (referrer, source partner) cannot validate in a
  // shard: keep only those within one shard, in every engine alike.
  std::map<std::string, std::string> deal_account, other_account;
  for (v1::Event& e : events) {
    if (e.has_account_upserted()) {
      auto* a = e.mutable_account_upserted();
      if (!a->referred_by().empty() && ShardOf(a->referred_by()) != ShardOf(a->account_id()))
        a->clear_referred_by();
      if (!a->source_partner_id().empty() &&
          ShardOf(a->source_partner_id()) != ShardOf(a->account_id())) {
        a->clear_source_partner_id();
      }
    }
    if (e.has_lead_created()) {
      auto* l = e.mutable_lead_created();
      if (!l->source_partner_id().empty() &&
          ShardOf(l->source_partner_id()) != ShardOf(l->account_id())) {
        l->clear_source_partner_id();
      }
      deal_account[l->deal_id()] = l->account_id();
    }
    if (e.has_order_placed())
      other_account[e.order_placed().order_id()] = e.order_placed().account_id();
    if (e.has_complaint_opened())
      other_account[e.complaint_opened().complaint_id()] = e.complaint_opened().account_id();
  }
  auto all = NewEngine();
  std::vector<std::unique_ptr<Engine>> shards;
  std::vector<std::vector<v1::Event>> parts(4);
  for (int i = 0; i < 4; ++i) shards.push_back(NewEngine());
  int64_t late = 0, last = 0;
  for (const v1::Event& e : events) {
    late += e.occurred_at_us() < last;
    last = std::max(last, e.occurred_at_us());
    const std::string account = AccountOf(e, deal_account, other_account);
    if (account.empty()) {
      for (auto& p : parts) p.push_back(e);
    } else {
      parts[static_cast<size_t>(ShardOf(account))].push_back(e);
    }
  }
  ASSERT_GT(late, 100);
  ASSERT_TRUE(all->IngestBatch(events).ok());
  for (int i = 0; i < 4; ++i) {
    auto r = shards[static_cast<size_t>(i)]->IngestBatch(parts[static_cast<size_t>(i)]);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  const int64_t start = events.front().occurred_at_us();
  for (v1::GroupBy g : {v1::GROUP_BY_NONE, v1::GROUP_BY_MANAGER, v1::GROUP_BY_TEAM,
                        v1::GROUP_BY_SOURCE_PARTNER, v1::GROUP_BY_ACCOUNT_KIND}) {
    v1::KpiQuery q;
    q.set_start_us(start);
    q.set_end_us(last + 1);
    q.set_as_of_us(last - 20 * kDay);
    q.set_bucket(v1::BUCKET_MONTH);
    q.set_time_zone("Europe/Berlin");
    q.set_group_by(g);
    q.set_include_health(g == v1::GROUP_BY_NONE);
    auto want = all->Kpis(q);
    ASSERT_TRUE(want.ok()) << want.status();
    std::vector<v1::KpiPartial> partials;
    for (auto& s : shards) {
      auto p = s->KpiPartial(q);
      ASSERT_TRUE(p.ok()) << p.status();
      partials.push_back(*std::move(p));
    }
    auto got = Engine::MergeKpiPartials(partials);
    ASSERT_TRUE(got.ok()) << got.status();
    std::string diff;
    google::protobuf::util::MessageDifferencer d;
    d.ReportDifferencesToString(&diff);
    EXPECT_TRUE(d.Compare(*got, *want)) << "group_by " << g << "\n" << diff.substr(0, 3000);
    EXPECT_GT(want->rows_size(), 5);
  }
  // Misuse: the same shard twice, or partials of different queries.
  v1::KpiQuery q;
  q.set_start_us(start);
  q.set_end_us(last + 1);
  q.set_include_health(true);
  auto p0 = shards[0]->KpiPartial(q);
  ASSERT_TRUE(p0.ok());
  std::vector<v1::KpiPartial> twice = {*p0, *p0};
  EXPECT_EQ(Engine::MergeKpiPartials(twice).status().code(), absl::StatusCode::kInvalidArgument);
  v1::KpiQuery other = q;
  other.set_group_by(v1::GROUP_BY_TEAM);
  std::vector<v1::KpiPartial> mixed = {*p0, *shards[1]->KpiPartial(other)};
  EXPECT_EQ(Engine::MergeKpiPartials(mixed).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Engine::MergeKpiPartials({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KpiSnapshot, FactStoreSurvivesRestoreExactly) {
  testing::GeneratorOptions o;
  o.seed = 9;
  o.max_events = 8000;
  o.late_share = 0.05;
  std::vector<v1::Event> events = testing::GenerateStream(o);
  auto a = NewEngine();
  ASSERT_TRUE(a->IngestBatch(events).ok());
  auto bytes = a->Snapshot();
  ASSERT_TRUE(bytes.ok());
  auto b = Engine::Restore(*bytes);
  ASSERT_TRUE(b.ok()) << b.status();
  auto again = (*b)->Snapshot();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again == *bytes);
  v1::KpiQuery q;
  q.set_start_us(events.front().occurred_at_us());
  q.set_end_us(events.back().occurred_at_us() + kDay);
  q.set_bucket(v1::BUCKET_WEEK);
  q.set_group_by(v1::GROUP_BY_MANAGER);
  q.set_include_health(true);
  auto ra = a->Kpis(q);
  auto rb = (*b)->Kpis(q);
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*ra, *rb));
  // Bad fact columns are rejected, not trusted.
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(*bytes));
  ASSERT_GT(snap.facts().account_size(), 10);
  v1::EngineSnapshot broken = snap;
  broken.mutable_facts()->set_account(3, 99999999);
  EXPECT_EQ(Engine::Restore(broken.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
  broken = snap;
  broken.mutable_facts()->mutable_kind_sizes()->RemoveLast();
  EXPECT_EQ(Engine::Restore(broken.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
  broken = snap;
  broken.mutable_facts()->set_occurred_at_delta_us(0, static_cast<uint64_t>(-5));
  EXPECT_EQ(Engine::Restore(broken.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
  broken = snap;
  broken.mutable_facts()->set_subject(1, 4000000000u);
  EXPECT_FALSE(Engine::Restore(broken.SerializeAsString()).ok());
}

}  // namespace
}  // namespace rapport::test
