// The generated stream is realistic in the ways the issue asks, valid, and
// reproducible.
#include <set>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

TEST(Generator, StreamIsValidRealisticAndSeeded) {
  testing::GeneratorOptions o;
  o.seed = 3;
  o.max_events = 60000;
  testing::Generator gen(o);
  std::vector<v1::Event> events;
  v1::Event e;
  while (gen.Next(&e)) events.push_back(e);
  ASSERT_EQ(events.size(), 60000u);

  auto engine = NewEngine();
  auto r = engine->IngestBatch(events);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->accepted(), 60000);

  // About 2 % late: occurred before the latest event already delivered.
  int64_t late = 0, max_seen = 0;
  absl::flat_hash_map<int, int64_t> kinds;
  std::set<std::string> currencies;
  int64_t client_leads = 0, won = 0, lost = 0, referred = 0, owner_changes = 0;
  absl::flat_hash_set<std::string> seen_accounts;
  for (const v1::Event& ev : events) {
    if (ev.occurred_at_us() < max_seen) ++late;
    max_seen = std::max(max_seen, ev.occurred_at_us());
    ++kinds[ev.payload_case()];
    if (ev.has_payment_received()) currencies.insert(ev.payment_received().amount().currency());
    if (ev.has_lead_created() && ev.lead_created().deal_id().rfind("d-c-", 0) == 0) ++client_leads;
    if (ev.has_account_upserted()) {
      if (!seen_accounts.insert(ev.account_upserted().account_id()).second) ++owner_changes;
      if (!ev.account_upserted().referred_by().empty()) ++referred;
    }
    if (ev.has_activity()) ++kinds[1000 + ev.activity().kind() * 10 + ev.activity().direction()];
  }
  const double late_share = static_cast<double>(late) / events.size();
  EXPECT_GT(late_share, 0.01);
  EXPECT_LT(late_share, 0.03);
  EXPECT_EQ(currencies, (std::set<std::string>{"RUB", "USD"}));
  // Every event type but task completion (which answers the regulations).
  for (int k = v1::Event::kAccountUpserted; k <= v1::Event::kCaseStudyPublished; ++k) {
    EXPECT_GT(kinds[k], 0) << "no event of payload case " << k;
  }
  for (int kind = 1; kind <= 4; ++kind) {
    EXPECT_GT(kinds[1000 + kind * 10 + 1], 0) << "no outbound activity of kind " << kind;
    EXPECT_GT(kinds[1000 + kind * 10 + 2], 0) << "no inbound activity of kind " << kind;
  }
  EXPECT_GT(referred, 0);
  EXPECT_GT(owner_changes, 0);

  // 20-30 % of client leads won (by the time they are decided).
  for (const v1::Event& ev : events) {
    if (!ev.has_lead_created() || ev.lead_created().deal_id().rfind("d-c-", 0) != 0) continue;
    auto d = engine->GetDeal(ev.lead_created().deal_id());
    if (d->status() == v1::DEAL_STATUS_WON) ++won;
    if (d->status() == v1::DEAL_STATUS_LOST) ++lost;
  }
  ASSERT_GT(won + lost, 1000);
  const double win = static_cast<double>(won) / (won + lost);
  EXPECT_GT(win, 0.20);
  EXPECT_LT(win, 0.30);
  EXPECT_GT(client_leads, won + lost - 1);
  EXPECT_GT(engine->AccountStatusCounts()[v1::ACCOUNT_STATUS_REPEAT], 0);
  EXPECT_GT(engine->AccountStatusCounts()[v1::ACCOUNT_STATUS_ACTIVE], 0);

  // Seeded: same seed, same events; another seed, other events.
  auto a = testing::GenerateStream(o);
  ASSERT_EQ(a.size(), events.size());
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(a[i].SerializeAsString(), events[i].SerializeAsString());
  testing::GeneratorOptions o2 = o;
  o2.seed = 4;
  auto c = testing::GenerateStream(o2);
  bool differs = false;
  for (size_t i = 0; i < c.size(); ++i)
    differs |= c[i].SerializeAsString() != a[i].SerializeAsString();
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace rapport::test
