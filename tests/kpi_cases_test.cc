// Hand-computed KPI cases for the edges of SPEC §5: zero denominators, events
// exactly at start and end, as_of before the period ends, DST in bucketing, a
// late event into a closed period, an owner change mid-period, overflow.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "kpi_reference.h"
#include "lib/ingest/validate.h"
#include "lib/kpi/accumulator.h"
#include "lib/kpi/cells.h"
#include "lib/kpi/fact_store.h"
#include "lib/kpi/ingest.h"
#include "lib/kpi/query.h"
#include "lib/kpi/report.h"
#include "lib/lifecycle/apply.h"
#include "lib/state/config.h"
#include "lib/storage/snapshot.h"
#include "rapport/testing/generator.h"
#include "test_util.h"

namespace rapport::test {
namespace {

v1::KpiQuery Q(int64_t start, int64_t end, int64_t as_of = 0) {
  v1::KpiQuery q;
  q.set_start_us(start);
  q.set_end_us(end);
  q.set_as_of_us(as_of);
  return q;
}

v1::KpiValues One(const Engine& e, const v1::KpiQuery& q) {
  auto r = e.Kpis(q);
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows_size(), 1);
  return r->rows_size() == 1 ? r->rows(0).values() : v1::KpiValues();
}

std::string Pay(const std::string& account, int64_t amount, const std::string& currency = "RUB",
                const std::string& invoice = "") {
  return absl::StrCat("payment_received { account_id: '", account,
                      "' amount { amount_minor: ", amount, " currency: '", currency,
                      "' } invoice_id: '", invoice, "' }");
}

TEST(KpiCases, ZeroDenominatorsAreNull) {
  auto e = NewEngine();
  Seed(*e);
  const v1::KpiValues v = One(*e, Q(kT0, kT0 + kDay));
  EXPECT_FALSE(v.lead_conversion().has_value());
  EXPECT_FALSE(v.partner_growth().has_value());
  EXPECT_FALSE(v.repeat_order_share().has_value());
  EXPECT_FALSE(v.repeat_customer_rate().has_value());
  EXPECT_FALSE(v.referral_rate().has_value());
  EXPECT_FALSE(v.post_purchase_contact_rate().has_value());
  EXPECT_FALSE(v.feedback_coverage().has_value());
  EXPECT_FALSE(v.has_nps());
  EXPECT_FALSE(v.win_rate().has_value());
  EXPECT_FALSE(v.has_time_to_win_days());
  EXPECT_FALSE(v.client_churn_rate().has_value());
  EXPECT_FALSE(v.hunter_share().has_value());
  EXPECT_EQ(v.revenue_size(), 0);
}

TEST(KpiCases, EventsAtStartCountAndAtEndDoNot) {
  auto e = NewEngine();
  Seed(*e);
  MustIngest(*e, Ev("l1", kT0 + kDay, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*e, Ev("l2", kT0 + 2 * kDay, "lead_created { deal_id: 'd2' account_id: 'c1' }"));
  MustIngest(*e, Ev("p1", kT0 + kDay, Pay("c1", 500)));
  MustIngest(*e, Ev("p2", kT0 + 2 * kDay, Pay("c1", 700)));
  const v1::KpiValues v = One(*e, Q(kT0 + kDay, kT0 + 2 * kDay));
  EXPECT_EQ(v.leads(), 1);
  ASSERT_EQ(v.revenue_size(), 1);
  EXPECT_EQ(v.revenue(0).amount_minor(), 500);
  EXPECT_EQ(v.revenue(0).previous_minor(), 0);  // [T0, T0+1d) had nothing
  EXPECT_FALSE(v.revenue(0).has_growth());
  const v1::KpiValues next = One(*e, Q(kT0 + 2 * kDay, kT0 + 3 * kDay));
  EXPECT_EQ(next.revenue(0).amount_minor(), 700);
  EXPECT_EQ(next.revenue(0).previous_minor(), 500);
  EXPECT_DOUBLE_EQ(next.revenue(0).growth(), 0.4);
}

TEST(KpiCases, AsOfBeforeThePeriodEnds) {
  auto e = NewEngine();
  Seed(*e);
  const int64_t t = kT0 + kDay;
  MustIngest(*e, Ev("l1", t, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*e, Ev("w1", t + 2 * kDay, "deal_won { deal_id: 'd1' }"));
  MustIngest(*e, Ev("o1", t,
                    "order_placed { order_id: 'o1' account_id: 'c1' amount { amount_minor: 100 "
                    "currency: 'RUB' } }"));
  // At placed_at: not in (placed, placed + 7d]; at placed + 7d: in.
  MustIngest(*e, Ev("a0", t,
                    "activity { account_id: 'c1' manager_id: 'm2' kind: ACTIVITY_KIND_CALL "
                    "direction: DIRECTION_OUTBOUND }"));
  MustIngest(*e, Ev("a1", t + 7 * kDay,
                    "activity { account_id: 'c1' manager_id: 'm2' kind: ACTIVITY_KIND_CALL "
                    "direction: DIRECTION_OUTBOUND }"));
  const int64_t end = t + 30 * kDay;
  v1::KpiValues v = One(*e, Q(t, end, t + kDay));
  EXPECT_EQ(v.lead_conversion().numerator(), 0);
  EXPECT_EQ(v.lead_conversion().denominator(), 1);
  EXPECT_EQ(v.post_purchase_contact_rate().denominator(), 0);  // window still open
  v = One(*e, Q(t, end, t + 7 * kDay));
  EXPECT_EQ(v.lead_conversion().numerator(), 1);
  EXPECT_EQ(v.post_purchase_contact_rate().denominator(), 0);  // placed + 7d == as_of: not closed
  v = One(*e, Q(t, end, t + 7 * kDay + 1));
  EXPECT_EQ(v.post_purchase_contact_rate().denominator(), 1);
  EXPECT_EQ(v.post_purchase_contact_rate().numerator(), 1);
  EXPECT_DOUBLE_EQ(v.post_purchase_contact_rate().value(), 1.0);
  // Time to win: 2 days; win rate 1/1.
  EXPECT_DOUBLE_EQ(v.time_to_win_days(), 2.0);
  EXPECT_DOUBLE_EQ(v.win_rate().value(), 1.0);
}

TEST(KpiCases, BerlinDaysAcrossDaylightSavingTime) {
  auto e = NewEngine();
  Seed(*e);
  // 2025-03-30 00:00 CET is 2025-03-29T23:00Z; clocks jump at 01:00Z.
  const int64_t mar30 = 1743289200000000;
  MustIngest(*e, Ev("p1", mar30 + 23 * kHour + kHour / 2, Pay("c1", 9)));  // 00:30 CEST Mar 31
  v1::KpiQuery q = Q(mar30, mar30 + 3 * kDay);
  q.set_bucket(v1::BUCKET_DAY);
  q.set_time_zone("Europe/Berlin");
  auto r = e->Kpis(q);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows_size(), 4);  // Mar 30 (23 h), Mar 31, Apr 1, and 1 h of Apr 2
  EXPECT_EQ(r->rows(0).bucket_end_us() - r->rows(0).bucket_start_us(), 23 * kHour);
  EXPECT_EQ(r->rows(1).bucket_end_us() - r->rows(1).bucket_start_us(), 24 * kHour);
  EXPECT_EQ(r->rows(0).values().revenue_size(), 0);
  ASSERT_EQ(r->rows(1).values().revenue_size(), 1);
  EXPECT_EQ(r->rows(1).values().revenue(0).amount_minor(), 9);
  // Autumn: 2025-10-26 has 25 hours (00:00 CEST = 2025-10-25T22:00Z).
  const int64_t oct26 = 1761429600000000;
  q = Q(oct26, oct26 + 2 * kDay);
  q.set_bucket(v1::BUCKET_DAY);
  q.set_time_zone("Europe/Berlin");
  r = e->Kpis(q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows(0).bucket_end_us() - r->rows(0).bucket_start_us(), 25 * kHour);
  // Months: April 2025 in Berlin starts at 2025-03-31T22:00Z.
  q = Q(mar30, mar30 + 40 * kDay);
  q.set_bucket(v1::BUCKET_MONTH);
  q.set_time_zone("Europe/Berlin");
  r = e->Kpis(q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows(1).bucket_start_us(), 1743458400000000);
}

TEST(KpiCases, LateEventIntoAClosedPeriod) {
  auto e = NewEngine();
  Seed(*e);
  MustIngest(*e, Ev("p1", kT0 + kDay, Pay("c1", 100)));
  MustIngest(*e, Ev("p2", kT0 + 40 * kDay, Pay("c1", 1)));
  const v1::KpiQuery jan = Q(kT0, kT0 + 31 * kDay);
  EXPECT_EQ(One(*e, jan).revenue(0).amount_minor(), 100);
  MustIngest(*e, Ev("late", kT0 + 3 * kDay, Pay("c1", 50)));  // arrives after February's payment
  EXPECT_EQ(One(*e, jan).revenue(0).amount_minor(), 150);
  EXPECT_EQ(One(*e, Q(kT0 + 31 * kDay, kT0 + 62 * kDay)).revenue(0).amount_minor(), 1);
}

TEST(KpiCases, OwnerChangeMidPeriodAndLateReattribution) {
  auto e = NewEngine();
  Seed(*e);  // c1 owned by m2
  const std::string up =
      "account_upserted { account_id: 'c1' kind: ACCOUNT_KIND_CLIENT owner_id: 'm1' segment: "
      "'retail' }";
  MustIngest(*e, Ev("p1", kT0 + kDay, Pay("c1", 10)));
  MustIngest(*e, Ev("up", kT0 + 5 * kDay, up));
  MustIngest(*e, Ev("p2", kT0 + 6 * kDay, Pay("c1", 20)));
  v1::KpiQuery q = Q(kT0, kT0 + 10 * kDay);
  q.set_group_by(v1::GROUP_BY_MANAGER);
  auto r = e->Kpis(q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->rows_size(), 2);
  EXPECT_EQ(r->rows(0).group(), "m1");
  EXPECT_EQ(r->rows(0).values().revenue(0).amount_minor(), 20);
  EXPECT_EQ(r->rows(1).group(), "m2");
  EXPECT_EQ(r->rows(1).values().revenue(0).amount_minor(), 10);
  // A late upsert dated before the first payment moves it to m0 as well.
  MustIngest(*e, Ev("up-late", kT0 + kDay / 2,
                    "account_upserted { account_id: 'c1' kind: ACCOUNT_KIND_CLIENT owner_id: 'm0' "
                    "segment: 'retail' }"));
  r = e->Kpis(q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->rows_size(), 2);
  EXPECT_EQ(r->rows(0).group(), "m0");
  EXPECT_EQ(r->rows(0).values().revenue(0).amount_minor(), 10);
  EXPECT_EQ(r->rows(1).group(), "m1");
}

TEST(KpiCases, PartnersActiveTiesAndDoubling) {
  auto e = NewEngine();
  Seed(*e);
  MustIngest(*e,
             Ev("p2", kT0,
                "account_upserted { account_id: 'p2' kind: ACCOUNT_KIND_PARTNER owner_id: 'm1' }"));
  MustIngest(*e, Ev("a1", kT0, "partner_agreed { account_id: 'p1' }"));
  // Churned and agreed at one instant: the later arrival (agreed) wins.
  MustIngest(*e, Ev("c1", kT0 + 5 * kDay, "partner_churned { account_id: 'p1' }"));
  MustIngest(*e, Ev("a2", kT0 + 5 * kDay, "partner_agreed { account_id: 'p1' }"));
  MustIngest(*e, Ev("a3", kT0 + 6 * kDay, "partner_agreed { account_id: 'p2' }"));
  const v1::KpiValues v = One(*e, Q(kT0 + 1, kT0 + 10 * kDay));
  EXPECT_EQ(v.partners_active_start(), 1);
  EXPECT_EQ(v.partners_active_end(), 2);
  EXPECT_DOUBLE_EQ(v.partner_growth().value(), 1.0);  // "we doubled our partners"
  EXPECT_EQ(v.partners_new(), 2);
  EXPECT_EQ(v.partners_churned(), 1);
  // The start instant itself: an agreement at `start` is not "before" it.
  EXPECT_EQ(One(*e, Q(kT0, kT0 + kDay)).partners_active_start(), 0);
}

TEST(KpiCases, NpsOrdersAndReferrals) {
  auto e = NewEngine();
  Seed(*e);
  MustIngest(*e, Ev("c2", kT0,
                    "account_upserted { account_id: 'c2' kind: ACCOUNT_KIND_CLIENT owner_id: 'm2' "
                    "referred_by: 'c1' }"));
  int i = 0;
  for (int score : {10, 9, 7, 6, 0, 10}) {
    MustIngest(*e, Ev(absl::StrCat("f", i++), kT0 + kDay,
                      absl::StrCat("feedback_received { account_id: 'c1' score: ", score, " }")));
  }
  auto order = [&](const std::string& id, const std::string& acc, int64_t at) {
    MustIngest(*e, Ev(id, at,
                      absl::StrCat("order_placed { order_id: '", id, "' account_id: '", acc,
                                   "' amount { amount_minor: 1 currency: 'RUB' } }")));
  };
  order("o1", "c1", kT0 + kDay);
  order("o2", "c1", kT0 + 2 * kDay);
  order("o3", "c2", kT0 + 3 * kDay);
  order("o0", "c2", kT0 - kDay);  // late: c2's first order was before the period
  const v1::KpiValues v = One(*e, Q(kT0, kT0 + 10 * kDay));
  EXPECT_EQ(v.nps_responses(), 6);
  EXPECT_DOUBLE_EQ(v.nps(), 100.0 * (3 - 2) / 6);
  EXPECT_EQ(v.clients_new(), 1);  // c1 only
  EXPECT_EQ(v.referral_rate().denominator(), 1);
  EXPECT_EQ(v.referral_rate().numerator(), 0);
  EXPECT_EQ(v.repeat_order_share().numerator(), 2);  // o2, o3
  EXPECT_EQ(v.repeat_order_share().denominator(), 3);
  EXPECT_EQ(v.repeat_customer_rate().numerator(), 2);
  EXPECT_EQ(v.repeat_customer_rate().denominator(), 2);
  // Before o2: c1 has one order before the end.
  const v1::KpiValues early = One(*e, Q(kT0, kT0 + 2 * kDay));
  EXPECT_EQ(early.repeat_customer_rate().numerator(), 0);
  EXPECT_EQ(early.repeat_customer_rate().denominator(), 1);
}

TEST(KpiCases, ChurnStuckReceivablesAndHealth) {
  auto e = NewEngine();
  Seed(*e);
  MustIngest(*e, Ev("o1", kT0,
                    "order_placed { order_id: 'o1' account_id: 'c1' amount { amount_minor: 1000 "
                    "currency: 'USD' } }"));
  MustIngest(*e, Ev("i1", kT0,
                    "invoice_issued { invoice_id: 'i1' account_id: 'c1' amount { amount_minor: "
                    "1000 currency: 'USD' } due_at_us: " +
                        std::to_string(kT0 + 10 * kDay) + " }"));
  MustIngest(*e, Ev("p1", kT0 + 5 * kDay, Pay("c1", 400, "USD", "i1")));
  MustIngest(*e, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'p1' }"));
  MustIngest(*e, Ev("f1", kT0 + 2 * kDay, "feedback_received { account_id: 'c1' score: 8 }"));
  MustIngest(*e, Ev("a1", kT0 + 8 * kDay,
                    "activity { account_id: 'c1' manager_id: 'm2' kind: ACTIVITY_KIND_EMAIL "
                    "direction: DIRECTION_OUTBOUND }"));
  // Stuck: the deal sits in "prospect" (SLA 3 days).
  EXPECT_EQ(One(*e, Q(kT0, kT0 + kDay, kT0 + 3 * kDay)).stuck_deals(), 0);
  EXPECT_EQ(One(*e, Q(kT0, kT0 + kDay, kT0 + 3 * kDay + 1)).stuck_deals(), 1);
  // Receivables at T+11d: 600 USD of 1000 outstanding.
  v1::KpiQuery q = Q(kT0, kT0 + kDay, kT0 + 11 * kDay);
  q.set_include_health(true);
  auto r = e->Kpis(q);
  ASSERT_TRUE(r.ok());
  const v1::KpiValues& v = r->rows(0).values();
  EXPECT_EQ(v.receivables_overdue_count(), 1);
  ASSERT_EQ(v.receivables_overdue_size(), 1);
  EXPECT_EQ(v.receivables_overdue(0).amount_minor(), 600);
  // Health of c1 at T+11d: contact 3 days ago 30, no complaints 20, feedback
  // 8 x 2 = 16, one order 11 days ago (usual interval 182.5 days) 20,
  // an overdue invoice 0: 86, green.
  ASSERT_EQ(r->health_size(), 2);
  const v1::AccountHealth& h = r->health(0);
  EXPECT_EQ(h.account_id(), "c1");
  EXPECT_EQ(h.owner_id(), "m2");
  EXPECT_DOUBLE_EQ(h.score(), 86);
  EXPECT_EQ(h.band(), "green");
  ASSERT_EQ(h.factors_size(), 5);
  EXPECT_EQ(h.factors(4).name(), "no_overdue_invoices");
  EXPECT_DOUBLE_EQ(h.factors(4).points(), 0);
  // Partner p1: never contacted 0, 20, 10, 10, 10 = 50, yellow.
  EXPECT_DOUBLE_EQ(r->health(1).score(), 50);
  EXPECT_EQ(r->health(1).band(), "yellow");
  // Churn by inactivity: 365 days after the only order.
  const int64_t deadline = kT0 + 365 * kDay;
  const v1::KpiValues c = One(*e, Q(deadline - kDay, deadline + kDay));
  EXPECT_EQ(c.client_churn_rate().denominator(), 1);
  EXPECT_EQ(c.client_churn_rate().numerator(), 1);
}

TEST(KpiCases, StageConversionCountsOnlyLaterEntries) {
  auto e = NewEngine();
  Seed(*e);
  MustIngest(*e, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*e,
             Ev("s1", kT0 + kHour, "deal_stage_changed { deal_id: 'd1' to_stage: 'qualified' }"));
  MustIngest(*e,
             Ev("s2", kT0 + 2 * kHour, "deal_stage_changed { deal_id: 'd1' to_stage: 'lead' }"));
  // Entered "lead" at T+2h (moved back): "qualified" came before, so no conversion.
  v1::KpiValues v = One(*e, Q(kT0 + 90 * 60 * 1000000LL, kT0 + 3 * kHour));
  ASSERT_EQ(v.stage_conversion_size(), 1);
  EXPECT_EQ(v.stage_conversion(0).stage(), "lead");
  EXPECT_EQ(v.stage_conversion(0).conversion().numerator(), 0);
  EXPECT_EQ(v.stage_conversion(0).conversion().denominator(), 1);
  // Over the whole day the deal counts once for "lead" (two entries) and converted.
  v = One(*e, Q(kT0, kT0 + kDay));
  ASSERT_EQ(v.stage_conversion_size(), 2);
  EXPECT_EQ(v.stage_conversion(0).conversion().denominator(), 1);
  EXPECT_EQ(v.stage_conversion(0).conversion().numerator(), 1);
  EXPECT_EQ(v.stage_conversion(1).stage(), "qualified");
  EXPECT_EQ(v.stage_conversion(1).conversion().numerator(), 0);
}

// ---- stage_conversion at re-entries ----------------------------------------
// SPEC §5: "of deals that entered the stage in the period, the share that
// entered a later stage of the same pipeline before as_of"; §3: moving back is
// allowed and every entry is kept. kpi.proto settles the rest: "later" is the
// pipeline's order, entered *after* the entry, and a deal counts once per
// bucket, from its first entry into the stage in the bucket. A deal that
// leaves a stage and comes back to it has not gone past it: re-entering the
// same stage is not a later stage. Generated streams never have that without
// a higher stage afterwards, so these hand cases pin it, on every path.

// Client pipeline: lead 0, qualified 1, proposal 2, prepaid 3 (won), ...
// One row's figures by stage id: (numerator, denominator).
using StageFigures = std::map<std::string, std::pair<int64_t, int64_t>>;

// The events Seed ingests that a client deal needs (the reference replays a list).
std::vector<v1::Event> ClientC1() {
  return {Ev("seed-t1", kT0, "team_upserted { team_id: 't1' segments: 'retail' }"),
          Ev("seed-m2", kT0, "manager_upserted { manager_id: 'm2' team_id: 't1' }"),
          Ev("seed-c1", kT0,
             "account_upserted { account_id: 'c1' kind: ACCOUNT_KIND_CLIENT owner_id: 'm2' "
             "segment: 'retail' }")};
}

// Deal d1 of c1: created at T0 (enters "lead"), then each move in `moves` at
// its time: a stage id, or "WON" for a deal-won event.
std::vector<v1::Event> DealD1(const std::vector<std::pair<int64_t, std::string>>& moves) {
  std::vector<v1::Event> ev = ClientC1();
  ev.push_back(Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  for (size_t i = 0; i < moves.size(); ++i) {
    const std::string payload = moves[i].second == "WON"
                                    ? std::string("deal_won { deal_id: 'd1' }")
                                    : absl::StrCat("deal_stage_changed { deal_id: 'd1' to_stage: '",
                                                   moves[i].second, "' }");
    ev.push_back(Ev(absl::StrCat("s", i), moves[i].first, payload));
  }
  return ev;
}

std::vector<StageFigures> FiguresOf(const v1::KpiReport& r) {
  std::vector<StageFigures> rows;
  for (const auto& row : r.rows()) {
    StageFigures& f = rows.emplace_back();
    for (const auto& sc : row.values().stage_conversion()) {
      EXPECT_EQ(sc.pipeline_id(), "client");
      f[sc.stage()] = {sc.conversion().numerator(), sc.conversion().denominator()};
    }
  }
  return rows;
}

// `events` answered three ways — the engine's normal path (cells), its forced
// scan, and the naive reference — each expected to give `want`, row by row.
void ExpectStages(const std::vector<v1::Event>& events, const v1::KpiQuery& q,
                  const std::vector<StageFigures>& want) {
  auto e = NewEngine();
  for (const v1::Event& ev : events) MustIngest(*e, ev);
  auto cells = e->Kpis(q);
  ASSERT_TRUE(cells.ok()) << cells.status();
  kpi::SetForceScanForTesting(true);
  auto scanned = e->Kpis(q);
  kpi::SetForceScanForTesting(false);
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  const v1::KpiReport reference = ReferenceKpis(events, e->config()).Report(q);
  EXPECT_EQ(FiguresOf(*cells), want) << "normal path (cells), query " << q.ShortDebugString();
  EXPECT_EQ(FiguresOf(*scanned), want) << "forced scan, query " << q.ShortDebugString();
  EXPECT_EQ(FiguresOf(reference), want) << "reference, query " << q.ShortDebugString();
}

TEST(KpiCases, StageReEnteredWithoutGoingHigherIsNotConverted) {
  // lead T0 -> qualified +1h -> lead +2h -> qualified +3h, and no further.
  const auto ev = DealD1(
      {{kT0 + kHour, "qualified"}, {kT0 + 2 * kHour, "lead"}, {kT0 + 3 * kHour, "qualified"}});
  // Over the day: "lead" first entered at T0, "qualified" (index 1 > 0) after
  // it: 1/1. "qualified" entered twice but one deal: denominator 1; after its
  // first entry (+1h) came only "lead" (0) and "qualified" again (1), neither
  // later than 1 in the pipeline: 0/1.
  ExpectStages(ev, Q(kT0, kT0 + kDay), {{{"lead", {1, 1}}, {"qualified", {0, 1}}}});
  // From +2.5h only the re-entry (+3h) is in the period, nothing after it: 0/1.
  ExpectStages(ev, Q(kT0 + 150 * 60 * 1000000LL, kT0 + kDay), {{{"qualified", {0, 1}}}});
  // From +0.5h (not a whole UTC day: the engine scans the stage entries
  // instead of reading its day cells): "lead" first entered in the period at
  // +2h, "qualified" after it: 1/1; "qualified" as over the day: 0/1.
  ExpectStages(ev, Q(kT0 + kHour / 2, kT0 + kDay), {{{"lead", {1, 1}}, {"qualified", {0, 1}}}});
}

TEST(KpiCases, StageReEnteredThenGoingHigherIsConverted) {
  // lead T0 -> qualified +1h -> lead +2h -> qualified +3h -> proposal +4h.
  const auto ev = DealD1({{kT0 + kHour, "qualified"},
                          {kT0 + 2 * kHour, "lead"},
                          {kT0 + 3 * kHour, "qualified"},
                          {kT0 + 4 * kHour, "proposal"}});
  // "qualified": "proposal" (2 > 1) entered at +4h, after the first entry
  // (+1h): 1/1. "proposal": nothing after it: 0/1.
  ExpectStages(ev, Q(kT0, kT0 + kDay),
               {{{"lead", {1, 1}}, {"qualified", {1, 1}}, {"proposal", {0, 1}}}});
  // as_of exactly at the "proposal" entry: not "before as_of" (§5: before t
  // means occurred_at < t), so "qualified" has only its own re-entry before
  // as_of: 0/1. The denominators are entries in the period, as_of aside, so
  // "proposal" still counts 0/1.
  ExpectStages(ev, Q(kT0, kT0 + kDay, kT0 + 4 * kHour),
               {{{"lead", {1, 1}}, {"qualified", {0, 1}}, {"proposal", {0, 1}}}});
  // The same from +0.5h (scanned, not from the day cells): "lead" first
  // entered in the period at +2h, "qualified" after it: 1/1.
  ExpectStages(ev, Q(kT0 + kHour / 2, kT0 + kDay, kT0 + 4 * kHour),
               {{{"lead", {1, 1}}, {"qualified", {0, 1}}, {"proposal", {0, 1}}}});
  // One microsecond later the "proposal" entry is before as_of: 1/1 again.
  ExpectStages(ev, Q(kT0, kT0 + kDay, kT0 + 4 * kHour + 1),
               {{{"lead", {1, 1}}, {"qualified", {1, 1}}, {"proposal", {0, 1}}}});
}

TEST(KpiCases, StageReEnteredThenWonIsConverted) {
  // lead T0 -> qualified +1h -> lead +2h -> qualified +3h -> deal won +4h.
  // event.proto: "A deal still before its won stage enters it", so the win is
  // an entry into "prepaid" (3 > 1): "qualified" 1/1, "prepaid" 0/1.
  const auto ev = DealD1({{kT0 + kHour, "qualified"},
                          {kT0 + 2 * kHour, "lead"},
                          {kT0 + 3 * kHour, "qualified"},
                          {kT0 + 4 * kHour, "WON"}});
  ExpectStages(ev, Q(kT0, kT0 + kDay),
               {{{"lead", {1, 1}}, {"qualified", {1, 1}}, {"prepaid", {0, 1}}}});
}

TEST(KpiCases, StageReEnteredFromAboveConvertsOnlyFromItsFirstEntry) {
  // lead T0 -> qualified +1h -> proposal +2h -> qualified +3h (moved back).
  const auto ev = DealD1(
      {{kT0 + kHour, "qualified"}, {kT0 + 2 * kHour, "proposal"}, {kT0 + 3 * kHour, "qualified"}});
  // Over the day the deal's first "qualified" entry is +1h and "proposal"
  // came after it: 1/1 (the later move back does not undo it). "proposal":
  // only a lower stage after it: 0/1.
  ExpectStages(ev, Q(kT0, kT0 + kDay),
               {{{"lead", {1, 1}}, {"qualified", {1, 1}}, {"proposal", {0, 1}}}});
  // From +2.5h the only entry is the move back (+3h); "proposal" was entered
  // before it, not after: 0/1.
  ExpectStages(ev, Q(kT0 + 150 * 60 * 1000000LL, kT0 + kDay), {{{"qualified", {0, 1}}}});
}

TEST(KpiCases, MovingToTheCurrentStageIsNoEntry) {
  // lead T0 -> qualified +1h -> qualified +2h (a change to where it already is).
  const auto ev = DealD1({{kT0 + kHour, "qualified"}, {kT0 + 2 * kHour, "qualified"}});
  ExpectStages(ev, Q(kT0, kT0 + kDay), {{{"lead", {1, 1}}, {"qualified", {0, 1}}}});
  // Nothing entered from +1.5h: the deal never left "qualified".
  ExpectStages(ev, Q(kT0 + 90 * 60 * 1000000LL, kT0 + kDay), {{}});
}

TEST(KpiCases, StageReEnteredInTheNextBucket) {
  // Daily buckets: lead T0 -> qualified +1h -> lead +2h, then qualified again
  // the next day at +1d+1h. Each bucket is a period of its own (§5).
  std::vector<std::pair<int64_t, std::string>> moves = {
      {kT0 + kHour, "qualified"}, {kT0 + 2 * kHour, "lead"}, {kT0 + kDay + kHour, "qualified"}};
  v1::KpiQuery q = Q(kT0, kT0 + 2 * kDay);
  q.set_bucket(v1::BUCKET_DAY);
  // Day 1: "qualified" entered at +1h; after it, "lead" and "qualified" again
  // (day 2, still before as_of), neither later: 0/1. Day 2: the re-entry, with
  // nothing after: 0/1.
  ExpectStages(DealD1(moves), q,
               {{{"lead", {1, 1}}, {"qualified", {0, 1}}}, {{"qualified", {0, 1}}}});
  // With "proposal" at +1d+2h both days' "qualified" convert: 1/1 and 1/1.
  moves.emplace_back(kT0 + kDay + 2 * kHour, "proposal");
  ExpectStages(
      DealD1(moves), q,
      {{{"lead", {1, 1}}, {"qualified", {1, 1}}}, {{"qualified", {1, 1}}, {"proposal", {0, 1}}}});
  // as_of at the end of day 1 for both buckets: the day-2 entries are not
  // before it, so day 1 "qualified" is 0/1.
  q.set_as_of_us(kT0 + kDay);
  ExpectStages(
      DealD1(moves), q,
      {{{"lead", {1, 1}}, {"qualified", {0, 1}}}, {{"qualified", {0, 1}}, {"proposal", {0, 1}}}});
}

TEST(KpiCases, ErrorsNameTheField) {
  auto e = NewEngine();
  Seed(*e);
  auto r = e->Kpis(Q(kT0, kT0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("start_us"), std::string::npos);
  v1::KpiQuery q = Q(kT0, kT0 + kDay);
  q.set_time_zone("Mars/Olympus");
  r = e->Kpis(q);
  EXPECT_NE(r.status().message().find("Mars/Olympus"), std::string::npos);
  q = Q(0, kMaxTimeUs);
  q.set_bucket(v1::BUCKET_DAY);
  r = e->Kpis(q);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("100000"), std::string::npos);
}

TEST(KpiCases, MoneyOverflowIsAnError) {
  auto e = NewEngine();
  Seed(*e);
  MustIngest(*e, Ev("p1", kT0, Pay("c1", INT64_MAX, "EUR")));
  MustIngest(*e, Ev("p2", kT0, Pay("c1", 1, "EUR")));
  auto r = e->Kpis(Q(kT0, kT0 + kDay));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(r.status().message().find("'revenue'"), std::string::npos);
  EXPECT_NE(r.status().message().find("EUR"), std::string::npos);
}

// The fact column against a stable sort by time: facts mostly in order with
// late ones (into full blocks, which grow, or past kMaxBlock
// split), fields that appear late (the column widens), and every range.
TEST(FactColumn, LateInsertsKeepTimeThenArrivalOrderAndEveryField) {
  std::mt19937_64 rng(7);
  kpi::FactColumn col;
  using Row = std::tuple<int64_t, int64_t, uint32_t, uint32_t, uint32_t>;
  std::vector<Row> want;
  int64_t now = 1000;
  for (int i = 0; i < 20000; ++i) {
    now += static_cast<int64_t>(rng() % 3);
    int64_t t = now;
    if (rng() % 10 == 0) t -= static_cast<int64_t>(rng() % 5000);  // late, often into a full block
    // Fields start at zero and turn non-zero one after another.
    const kpi::Fact f{i > 3000 ? static_cast<int64_t>(rng() % 100) - 50 : 0,
                      i > 100 ? static_cast<uint32_t>(rng()) : 0,
                      i > 7000 ? static_cast<uint32_t>(i) : 0,
                      i > 15000 ? static_cast<uint32_t>(rng() % 8) : 0};
    col.Insert(t, f);
    want.emplace_back(t, f.value, f.account, f.subject, f.aux);
  }
  std::stable_sort(want.begin(), want.end(),
                   [](const Row& a, const Row& b) { return std::get<0>(a) < std::get<0>(b); });
  ASSERT_EQ(col.size(), want.size());
  EXPECT_EQ(col.fields(),
            kpi::kFieldValue | kpi::kFieldAccount | kpi::kFieldSubject | kpi::kFieldAux);
  std::vector<Row> got;
  col.ForAll([&](int64_t t, const kpi::Fact& f) {
    got.emplace_back(t, f.value, f.account, f.subject, f.aux);
  });
  ASSERT_TRUE(got == want);
  for (int q = 0; q < 200; ++q) {
    const int64_t from = 900 + static_cast<int64_t>(rng() % 22000),
                  to = from + static_cast<int64_t>(rng() % 3000);
    std::vector<Row> in;
    col.ForRange(from, to, [&](int64_t t, const kpi::Fact& f) {
      in.emplace_back(t, f.value, f.account, f.subject, f.aux);
    });
    std::vector<Row> expect;
    for (const Row& r : want) {
      if (std::get<0>(r) >= from && std::get<0>(r) < to) expect.push_back(r);
    }
    ASSERT_TRUE(in == expect) << "range [" << from << ", " << to << ")";
  }
  // A late fact takes room from the next blocks or grows its full block
  // rather than splitting it: every block but the last is at least half of
  // kBlock full and has at most kGrow room, and the memory counted is that
  // of the slots the blocks have.
  size_t slack = 0, slots = 0;
  for (size_t b = 0; b < col.blocks().size(); ++b) {
    const kpi::FactColumn::Block& blk = *col.blocks()[b];
    ASSERT_LE(blk.n, blk.cap);
    ASSERT_LE(blk.cap, kpi::FactColumn::kMaxBlock);
    if (b + 1 < col.blocks().size()) {
      EXPECT_GE(blk.n, kpi::FactColumn::kBlock / 2) << "block " << b;
      EXPECT_LE(blk.cap - blk.n, kpi::FactColumn::kGrow) << "block " << b;
    }
    slack += static_cast<size_t>(blk.cap - blk.n);
    slots += static_cast<size_t>(blk.cap);
  }
  EXPECT_LT(slack, col.size() / 10) << col.blocks().size() << " blocks";
  EXPECT_EQ(col.MemoryBytes(), col.blocks().capacity() * sizeof(void*) +
                                   col.blocks().size() * sizeof(kpi::FactColumn::Block) +
                                   slots * col.BlockBytes() / kpi::FactColumn::kBlock);
}

// Late facts spread over more blocks than a shift reaches (a window of ~40
// full blocks behind the newest, as late activities at 10 M events) grow the
// blocks they land in, which stay nearly full, and splits past kMaxBlock keep
// every fact in order.
TEST(FactColumn, LateFactsFarBackLeaveLittleRoom) {
  std::mt19937_64 rng(29);
  kpi::FactColumn col;
  std::vector<std::pair<int64_t, uint32_t>> want;
  int64_t now = 1'000'000;
  constexpr int kWindow = 40 * kpi::FactColumn::kBlock;
  for (uint32_t i = 0; i < 400'000; ++i) {
    now += 1;
    int64_t t = now;
    if (rng() % 25 == 0) t -= static_cast<int64_t>(rng() % kWindow);
    // One stretch of time, before every other fact, takes many late facts:
    // its blocks grow to kMaxBlock and split.
    if (i >= 200'000 && i < 260'000 && rng() % 2 == 0) t = 500'000 + static_cast<int64_t>(i % 997);
    col.Insert(t, kpi::Fact{0, i + 1, 0, 0});
    want.emplace_back(t, i + 1);
  }
  std::stable_sort(want.begin(), want.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::pair<int64_t, uint32_t>> got;
  col.ForAll([&](int64_t t, const kpi::Fact& f) { got.emplace_back(t, f.account); });
  ASSERT_TRUE(got == want);
  size_t slack = 0;
  int crowded = 0, grown = 0;
  for (size_t b = 0; b + 1 < col.blocks().size(); ++b) {
    const kpi::FactColumn::Block& blk = *col.blocks()[b];
    slack += static_cast<size_t>(blk.cap - blk.n);
    EXPECT_LE(blk.cap - blk.n, kpi::FactColumn::kGrow) << "block " << b;
    EXPECT_GE(blk.n, kpi::FactColumn::kBlock / 2) << "block " << b;
    crowded += blk.t[0] < 1'000'000;
    grown += blk.cap > kpi::FactColumn::kBlock;
  }
  EXPECT_GT(grown, 100);
  // ~30 000 facts before every in-order one: the first block split many times.
  EXPECT_GT(crowded, 10);
  EXPECT_LT(slack, col.size() / 40);
}

// The aux field is stored in 8 bits until a value passes 255, then widens to
// 32 bits: every fact reads back as inserted (against a stable sort by time)
// before and after the widening, through late inserts that move facts between
// blocks, and SetAux past 255 widens a narrow column rather than truncating.
TEST(FactColumn, NarrowAuxWidensWithoutLosingAFact) {
  std::mt19937_64 rng(13);
  using Row = std::tuple<int64_t, int64_t, uint32_t, uint32_t, uint32_t>;
  for (const bool wide_late : {false, true}) {
    kpi::FactColumn col;
    std::vector<Row> want;
    int64_t now = 1000;
    for (int i = 0; i < 12000; ++i) {
      now += static_cast<int64_t>(rng() % 3);
      int64_t t = now;
      if (rng() % 10 == 0) t -= static_cast<int64_t>(rng() % 5000);
      // Narrow values (0..255, edges included) first; with wide_late, large
      // ones from fact 8000 on.
      uint32_t aux = static_cast<uint32_t>(rng() % 256);
      if (i % 97 == 0) aux = 255;
      if (wide_late && i >= 8000 && rng() % 3 == 0)
        aux = i % 2 ? 256 : static_cast<uint32_t>(rng());
      const kpi::Fact f{0, static_cast<uint32_t>(i + 1), static_cast<uint32_t>(i), aux};
      col.Insert(t, f);
      want.emplace_back(t, f.value, f.account, f.subject, f.aux);
      if (i == 7999) {
        EXPECT_EQ(col.fields() & kpi::kFieldAuxWide, 0);
        EXPECT_EQ(col.BlockBytes(), kpi::FactColumn::kBlock * (8 + 4 + 4 + 1));
      }
    }
    EXPECT_EQ((col.fields() & kpi::kFieldAuxWide) != 0, wide_late);
    EXPECT_EQ(col.BlockBytes(), kpi::FactColumn::kBlock * (8 + 4 + 4 + (wide_late ? 4 : 1)));
    std::stable_sort(want.begin(), want.end(),
                     [](const Row& a, const Row& b) { return std::get<0>(a) < std::get<0>(b); });
    std::vector<Row> got;
    col.ForAll([&](int64_t t, const kpi::Fact& f) {
      got.emplace_back(t, f.value, f.account, f.subject, f.aux);
    });
    ASSERT_TRUE(got == want) << "wide_late " << wide_late;
    // The raw view agrees with Fact (the scan's bulk loops read Aux(i)).
    size_t k = 0;
    for (const auto& b : col.blocks()) {
      EXPECT_TRUE((b->aux8 == nullptr) != (b->aux == nullptr));
      for (int i = 0; i < b->n; ++i) ASSERT_EQ(b->Aux(i), std::get<4>(want[k++]));
    }
    // SetAux to a value past 255 widens; the others keep theirs.
    auto& [t0, v0, a0, s0, x0] = want[want.size() / 2];
    col.SetAux(t0, s0, x0, 70000);
    x0 = 70000;
    EXPECT_NE(col.fields() & kpi::kFieldAuxWide, 0);
    got.clear();
    col.ForAll([&](int64_t t, const kpi::Fact& f) {
      got.emplace_back(t, f.value, f.account, f.subject, f.aux);
    });
    ASSERT_TRUE(got == want) << "after SetAux, wide_late " << wide_late;
  }
  // A column with no aux at all reads zeros, and a SetAux on it stores one.
  kpi::FactColumn none;
  none.Insert(5, kpi::Fact{0, 1, 2, 0});
  none.Insert(6, kpi::Fact{0, 1, 3, 0});
  EXPECT_EQ(none.fields() & kpi::kFieldAux, 0);
  none.SetAux(6, 3, 0, 9);
  std::vector<uint32_t> aux;
  none.ForAll([&](int64_t, const kpi::Fact& f) { aux.push_back(f.aux); });
  EXPECT_EQ(aux, (std::vector<uint32_t>{0, 9}));
  EXPECT_EQ(none.fields() & kpi::kFieldAuxWide, 0);
}

// The radix sort of time_to_win lists gives std::sort's sequence, bit for
// bit: negatives, duplicates, zero, infinities, denormals, the small-list
// path and lists whose values share their high digits (days of one month).
TEST(KpiSortDoubles, EqualsStdSort) {
  std::mt19937_64 rng(11);
  const double specials[] = {0.0,
                             -1.0,
                             1.0,
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(),
                             std::numeric_limits<double>::denorm_min(),
                             -std::numeric_limits<double>::denorm_min(),
                             std::numeric_limits<double>::max(),
                             std::numeric_limits<double>::lowest()};
  for (size_t n : {0, 1, 2, 255, 256, 257, 1000, 5000, 40000}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<double> v(n);
      for (double& x : v) {
        switch (kind) {
          case 0:  // time_to_win-like: whole microseconds over a day, few negative
            x = static_cast<double>(static_cast<int64_t>(rng() % 40000000000000) - 1000000000000) /
                86400e6;
            break;
          case 1:  // many duplicates
            x = static_cast<double>(static_cast<int>(rng() % 50) - 10) / 7.0;
            break;
          default:  // any bits but NaN and -0.0, and the specials
            if (rng() % 8 == 0) {
              x = specials[rng() % std::size(specials)];
            } else {
              const uint64_t bits = rng();
              std::memcpy(&x, &bits, sizeof x);
              if (std::isnan(x) || (x == 0 && std::signbit(x))) x = 0.5;
            }
        }
      }
      std::vector<double> want = v;
      std::sort(want.begin(), want.end());
      kpi::SortDoubles(v);
      ASSERT_EQ(v.size(), want.size());
      // memcmp: the bit patterns, not ==, which cannot tell 0.0 from -0.0
      // (an empty vector's data() may be null, which memcmp must not get).
      EXPECT_EQ(n == 0 ? 0 : std::memcmp(v.data(), want.data(), n * sizeof(double)), 0)
          << "n=" << n << " kind=" << kind;
    }
  }
}

// The entities' Timeline holds what a std::vector given the same sorted
// inserts holds, through growth, copies and moves.
TEST(KpiTimeline, SortedInsertsMatchAVector) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 50; ++round) {
    kpi::Timeline<kpi::Visit> t;
    std::vector<kpi::Visit> v;
    const int n = static_cast<int>(rng() % 40);
    auto less = [](const kpi::Visit& x, const kpi::Visit& y) { return x.at() < y.at(); };
    for (int i = 0; i < n; ++i) {
      const kpi::Visit x{kpi::Stamp{static_cast<int64_t>(rng() % 20), i},
                         static_cast<int32_t>(i % 64)};
      kpi::InsertSorted(t, x, less);
      kpi::InsertSorted(v, x, less);
    }
    const kpi::Timeline<kpi::Visit> copy = t;
    kpi::Timeline<kpi::Visit> moved = std::move(t);
    for (const kpi::Timeline<kpi::Visit>* got :
         {&copy, static_cast<const kpi::Timeline<kpi::Visit>*>(&moved)}) {
      ASSERT_EQ(got->size(), v.size());
      EXPECT_GE(got->capacity(), got->size());
      for (size_t i = 0; i < v.size(); ++i) {
        EXPECT_TRUE((*got)[i].at() == v[i].at() && (*got)[i].stage() == v[i].stage()) << i;
      }
    }
    // A shrink keeps the items and gives back the room; inserts go on.
    kpi::Timeline<kpi::Visit> shrunk = copy;
    shrunk.shrink_to_fit();
    ASSERT_EQ(shrunk.size(), v.size());
    EXPECT_EQ(shrunk.capacity(), v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      EXPECT_TRUE(shrunk[i].at() == v[i].at() && shrunk[i].stage() == v[i].stage()) << i;
    }
    const kpi::Visit late{kpi::Stamp{10, 1000}, 63};
    kpi::InsertSorted(shrunk, late, less);
    kpi::InsertSorted(v, late, less);
    ASSERT_EQ(shrunk.size(), v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      EXPECT_TRUE(shrunk[i].at() == v[i].at() && shrunk[i].stage() == v[i].stage()) << i;
    }
    moved.clear();
    EXPECT_TRUE(moved.empty());
    EXPECT_EQ(moved.begin(), moved.end());
    moved.shrink_to_fit();
    EXPECT_EQ(moved.capacity(), 0u);
    EXPECT_EQ(moved.data(), nullptr);
  }
}

// A state fed `events` the engine's way (validate, then apply).
std::unique_ptr<EngineState> StateOf(const std::vector<v1::Event>& events) {
  auto s = std::make_unique<EngineState>();
  EXPECT_TRUE(Configure(*WithDefaults({}), s.get()).ok());
  for (const v1::Event& e : events) {
    Verdict v;
    if (!ValidateEvent(e, EventFingerprint(e), *s, nullptr, &v).ok() || v != Verdict::kApply)
      continue;
    ApplyEvent(e, EventFingerprint(e), s.get());
  }
  return s;
}

std::vector<v1::Event> LateStream(uint64_t seed, int64_t n) {
  testing::GeneratorOptions o;
  o.seed = seed;
  o.max_events = n;
  o.late_share = 0.05;
  o.leads_per_day = 6;
  return testing::GenerateStream(o);
}

// The fact store takes the stage a deal entered from the event (first stage,
// to_stage, the won stage) and checks it against the deal's history by one
// compare; the stages it stored must be the ones hashing the history's stage
// ids gives, visit by visit, in the timelines and in the stage-entry column.
TEST(KpiIngest, StageEntriesAreTheHistorysStages) {
  const std::unique_ptr<EngineState> s = StateOf(LateStream(11, 30000));
  const kpi::FactStore& st = s->kpi;
  ASSERT_EQ(st.deals.size(), s->deals.size());
  std::vector<std::vector<std::pair<int64_t, int32_t>>> want(s->deals.size());
  size_t visits = 0, won = 0;
  for (uint32_t i = 0; i < s->deals.size(); ++i) {
    const v1::Deal& d = s->deals.at(i);
    const PipelineInfo* p = s->pipelines.Find(d.pipeline_id());
    ASSERT_NE(p, nullptr);
    for (const v1::StageVisit& h : d.history()) {
      want[i].emplace_back(h.entered_at_us(), p->StageIndex(h.stage()));
      won += p->stage(want[i].back().second).won();
    }
    // The history is in arrival order, the timeline in (time, arrival).
    std::stable_sort(want[i].begin(), want[i].end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    const kpi::DealData& dd = st.deals[i];
    ASSERT_EQ(dd.visits.size(), want[i].size()) << "deal " << i;
    for (size_t j = 0; j < want[i].size(); ++j) {
      EXPECT_EQ(dd.visits[j].at().t, want[i][j].first) << "deal " << i << " visit " << j;
      EXPECT_EQ(dd.visits[j].stage(), want[i][j].second) << "deal " << i << " visit " << j;
    }
    visits += want[i].size();
  }
  EXPECT_GT(visits, 2 * s->deals.size()) << "the stream moves deals on";
  EXPECT_GT(won, 0u) << "the stream wins deals";
  // The column holds the same (deal, time, stage) facts.
  std::vector<std::tuple<uint32_t, int64_t, int32_t>> got_facts, want_facts;
  st.column(kpi::FactKind::kStageEntry).ForAll([&](int64_t t, const kpi::Fact& f) {
    got_facts.emplace_back(f.subject, t, static_cast<int32_t>(f.aux));
  });
  for (uint32_t i = 0; i < want.size(); ++i) {
    for (const auto& [t, stage] : want[i]) want_facts.emplace_back(i, t, stage);
  }
  std::sort(got_facts.begin(), got_facts.end());
  std::sort(want_facts.begin(), want_facts.end());
  EXPECT_EQ(got_facts, want_facts);
  // The column points at the visits by index, and a late visit moves those
  // after it on: every visit must come out of the column exactly once, with
  // its arrival seq and the deal's account.
  std::vector<std::tuple<uint32_t, int64_t, int64_t, int32_t>> got_visits, want_visits;
  st.column(kpi::FactKind::kStageEntry).ForAll([&](int64_t t, const kpi::Fact& f) {
    got_visits.emplace_back(f.subject, t, f.value, static_cast<int32_t>(f.aux));
    EXPECT_EQ(f.account, st.deals[f.subject].account);
  });
  for (uint32_t i = 0; i < st.deals.size(); ++i) {
    const kpi::DealData& dd = st.deals[i];
    for (size_t j = 0; j < dd.visits.size(); ++j) {
      want_visits.emplace_back(i, dd.visits[j].at().t, dd.visits[j].at().seq, dd.visits[j].stage());
    }
  }
  std::sort(got_visits.begin(), got_visits.end());
  EXPECT_EQ(got_visits, want_visits);
}

// Stage entries arriving late, before visits the deal has (the generator's
// late events never are): the stage-entry column points at the visits by
// index, so the entries of the visits a late one lands before move on. The
// column must give back each visit once, in time order, and the figures
// must be the reference's, on every path.
TEST(KpiIngest, LateStageEntriesLandBeforeLaterVisits) {
  const auto ev = DealD1({{kT0 + 4 * kHour, "proposal"},
                          {kT0 + 2 * kHour, "qualified"},
                          {kT0 + kHour, "lead"},
                          {kT0 + 3 * kHour, "qualified"}});
  const std::unique_ptr<EngineState> s = StateOf(ev);
  ASSERT_EQ(s->kpi.deals.size(), 1u);
  const kpi::DealData& d = s->kpi.deals[0];
  ASSERT_EQ(d.visits.size(), 5u);
  const int32_t stages[] = {0, 0, 1, 1, 2};
  for (size_t j = 0; j < 5; ++j) {
    EXPECT_EQ(d.visits[j].at().t, kT0 + static_cast<int64_t>(j) * kHour) << j;
    EXPECT_EQ(d.visits[j].stage(), stages[j]) << j;
  }
  size_t j = 0;
  s->kpi.column(kpi::FactKind::kStageEntry).ForAll([&](int64_t t, const kpi::Fact& f) {
    ASSERT_LT(j, d.visits.size());
    EXPECT_EQ(t, d.visits[j].at().t) << j;
    EXPECT_EQ(f.value, d.visits[j].at().seq) << j;
    EXPECT_EQ(f.aux, static_cast<uint32_t>(d.visits[j].stage())) << j;
    EXPECT_EQ(f.account, d.account) << j;
    ++j;
  });
  EXPECT_EQ(j, 5u);
  // And so after a restore (in time order: no visit moves there).
  const std::string bytes = WriteSnapshot(*s);
  EngineState back;
  ASSERT_TRUE(ReadSnapshot(bytes, &back).ok());
  EXPECT_TRUE(WriteSnapshot(back) == bytes);
  // lead at 0 and 1h (qualified after both); qualified at 2h and 3h
  // (proposal after); proposal at 4h.
  ExpectStages(ev, Q(kT0, kT0 + kDay),
               {{{"lead", {1, 1}}, {"qualified", {1, 1}}, {"proposal", {0, 1}}}});
  ExpectStages(ev, Q(kT0 + kHour / 2, kT0 + kDay, kT0 + 4 * kHour),
               {{{"lead", {1, 1}}, {"qualified", {0, 1}}, {"proposal", {0, 1}}}});
}

// A visit keeps its arrival seq in 56 bits: facts claiming an engine of more
// events than that are refused, and the store is left empty.
TEST(KpiIngest, RestoreRefusesSeqsBeyondTheVisitsBits) {
  const std::unique_ptr<EngineState> s = StateOf(DealD1({{kT0 + kHour, "qualified"}}));
  v1::FactColumns facts;
  kpi::WriteFactColumns(*s, &facts);
  EngineState back;
  back.events_accepted = kpi::Visit::kSeqLimit + 1;
  const absl::Status st = kpi::ReadFactColumns(facts, &back);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("2^56"), std::string::npos) << st;
  EXPECT_EQ(back.kpi.facts(), 0u);
}

// Restore checks each fact against the tables (an order fact's account by
// comparing ids, the string pool by one Intern per string): a tampered fact
// column is refused with the offending entry named, and an untouched one
// restores to the same bytes.
TEST(KpiIngest, RestoreRefusesInconsistentFactColumns) {
  const std::unique_ptr<EngineState> s = StateOf(LateStream(12, 8000));
  const std::string bytes = WriteSnapshot(*s);
  {
    EngineState back;
    ASSERT_TRUE(ReadSnapshot(bytes, &back).ok());
    EXPECT_TRUE(WriteSnapshot(back) == bytes);
  }
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(bytes));
  ASSERT_GE(snap.facts().strings_size(), 3);
  auto refused = [](const v1::EngineSnapshot& bad, const std::string& needle) {
    EngineState back;
    const absl::Status st = ReadSnapshot(bad.SerializeAsString(), &back);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_NE(st.message().find(needle), std::string::npos) << st;
  };
  {
    v1::EngineSnapshot bad = snap;
    bad.mutable_facts()->set_strings(2, snap.facts().strings(1));
    refused(bad, "strings[2] is repeated");
    bad.mutable_facts()->set_strings(2, "");
    refused(bad, "strings[2] is repeated");
  }
  // The first order fact, given another account.
  const v1::FactColumns& f = snap.facts();
  int row = 0;
  for (int k = 0; k < static_cast<int>(kpi::FactKind::kOrderPlaced); ++k)
    row += static_cast<int>(f.kind_sizes(k));
  ASSERT_GT(f.kind_sizes(static_cast<int>(kpi::FactKind::kOrderPlaced)), 0u);
  ASSERT_GT(s->accounts.size(), 1u);
  {
    v1::EngineSnapshot bad = snap;
    const uint32_t other = (f.account(row) + 1) % static_cast<uint32_t>(s->accounts.size());
    bad.mutable_facts()->set_account(row, other);
    refused(bad, absl::StrCat("fact ", row, " (kind 7)"));
  }
  {
    v1::EngineSnapshot bad = snap;
    bad.mutable_facts()->set_subject(row, static_cast<uint32_t>(s->orders.size()));
    refused(bad, absl::StrCat("fact ", row, " (kind 7)"));
  }
}

// Two stage entries of one deal with equal stamps (time and arrival) exist
// only in a damaged snapshot, which restore takes as it is. The stamp orders
// "after" for stage_conversion, so neither entry is after the other: here
// "qualified" and "proposal" are both entered at +1h with one arrival, and the
// proposal does not convert the qualification. The three paths must agree:
// the forced scan (the deal pass's equal-stamps loop), the scan of a partial
// day (entry by entry) and the day cells.
//
// An exact copy (the same stage too) is no earlier entry of its stage either:
// each copy counts as the deal's first entry in the bucket, on every path.
void ExpectEqualStamps(uint32_t copy_stage, const std::vector<StageFigures>& want,
                       const std::vector<StageFigures>& want_at_1h) {
  const std::unique_ptr<EngineState> s = StateOf(DealD1({{kT0 + kHour, "qualified"}}));
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(WriteSnapshot(*s)));
  v1::FactColumns* f = snap.mutable_facts();
  const int kind = static_cast<int>(kpi::FactKind::kStageEntry);
  ASSERT_EQ(f->kind_sizes(kind), 2u) << "lead, qualified";
  int row = 0;
  for (int k = 0; k < kind; ++k) row += static_cast<int>(f->kind_sizes(k));
  ++row;  // the entry into "qualified" (index 1)
  ASSERT_EQ(f->aux(row), 1u);
  // A copy of it right after it (time difference 0, same arrival), into
  // "proposal" (index 2).
  auto dup = [&](auto* field, auto copy) {
    std::vector<std::decay_t<decltype(copy)>> v(field->begin(), field->end());
    v.insert(v.begin() + row + 1, copy);
    field->Clear();
    for (const auto& x : v) field->Add(x);
  };
  dup(f->mutable_account(), f->account(row));
  dup(f->mutable_subject(), f->subject(row));
  dup(f->mutable_aux(), copy_stage);
  dup(f->mutable_value(), f->value(row));
  dup(f->mutable_occurred_at_delta_us(), uint64_t{0});
  f->set_kind_sizes(kind, 3);
  EngineState back;
  ASSERT_TRUE(ReadSnapshot(snap.SerializeAsString(), &back).ok());
  ASSERT_EQ(back.kpi.deals.size(), 1u);
  const kpi::DealData& d = back.kpi.deals[0];
  ASSERT_EQ(d.visits.size(), 3u);
  ASSERT_TRUE(d.visits[1].at() == d.visits[2].at());
  EXPECT_EQ(d.visits[1].stage(), 1);
  EXPECT_EQ(d.visits[2].stage(), static_cast<int32_t>(copy_stage));
  auto figures = [&](const v1::KpiQuery& q, bool force) {
    kpi::SetForceScanForTesting(force);
    auto r = kpi::Report(back, *kpi::MakePlan(q));
    kpi::SetForceScanForTesting(false);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? FiguresOf(*r) : std::vector<StageFigures>();
  };
  for (const v1::KpiQuery& q : {Q(kT0, kT0 + kDay), Q(kT0 - kHour / 2, kT0 + kDay)}) {
    EXPECT_EQ(figures(q, true), want) << "forced scan, " << q.ShortDebugString();
    EXPECT_EQ(figures(q, false), want) << "normal path, " << q.ShortDebugString();
  }
  // as_of at the equal stamps: nothing converts before it (the cells take
  // late conversions back out).
  for (const v1::KpiQuery& q :
       {Q(kT0, kT0 + kDay, kT0 + kHour), Q(kT0 - kHour / 2, kT0 + kDay, kT0 + kHour)}) {
    EXPECT_EQ(figures(q, true), want_at_1h) << "forced scan, " << q.ShortDebugString();
    EXPECT_EQ(figures(q, false), want_at_1h) << "normal path, " << q.ShortDebugString();
  }
}

TEST(KpiIngest, EqualStampsSeeEachOtherAsNeitherBeforeNorAfter) {
  ExpectEqualStamps(2, {{{"lead", {1, 1}}, {"qualified", {0, 1}}, {"proposal", {0, 1}}}},
                    {{{"lead", {0, 1}}, {"qualified", {0, 1}}, {"proposal", {0, 1}}}});
}

TEST(KpiIngest, ExactCopiesOfAnEntryEachCountAsFirstInTheBucket) {
  ExpectEqualStamps(1, {{{"lead", {1, 1}}, {"qualified", {0, 2}}}},
                    {{{"lead", {0, 1}}, {"qualified", {0, 2}}}});
}

// An upsert re-syncs the account's attribution but interns only the entries
// it has not seen (the others are copied by stamp): with late owner changes
// landing between older entries, every account's entries must still name
// the history's owner, team and segment, in its order.
TEST(KpiIngest, AttributionsFollowTheHistoryThroughLateOwnerChanges) {
  std::vector<v1::Event> events = LateStream(13, 20000);
  std::mt19937_64 rng(13);
  std::vector<std::string> managers;
  for (const v1::Event& e : events) {
    if (e.has_manager_upserted()) managers.push_back(e.manager_upserted().manager_id());
  }
  ASSERT_FALSE(managers.empty());
  const int64_t end = events.back().occurred_at_us();
  std::vector<v1::Event> extra;
  for (const v1::Event& e : events) {
    if (!e.has_account_upserted() || rng() % 3 != 0) continue;
    for (int copy = 0; copy < 3; ++copy) {
      v1::Event c = e;
      c.set_event_id(absl::StrCat(e.event_id(), "-owner", copy));
      c.set_occurred_at_us(
          e.occurred_at_us() +
          static_cast<int64_t>(rng() % static_cast<uint64_t>(end - e.occurred_at_us() + 1)));
      c.mutable_account_upserted()->set_owner_id(managers[rng() % managers.size()]);
      if (copy == 1) c.mutable_account_upserted()->set_segment(absl::StrCat("seg", rng() % 4));
      extra.push_back(std::move(c));
    }
  }
  std::shuffle(extra.begin(), extra.end(), rng);
  events.insert(events.end(), extra.begin(), extra.end());
  const std::unique_ptr<EngineState> s = StateOf(events);
  const kpi::FactStore& st = s->kpi;
  size_t longest = 0;
  for (uint32_t i = 0; i < s->accounts.size(); ++i) {
    const auto& h = s->attributions[i];
    const kpi::AccountData& a = st.accounts[i];
    ASSERT_EQ(a.attr.size(), h.size()) << "account " << i;
    longest = std::max(longest, h.size());
    for (size_t j = 0; j < h.size(); ++j) {
      EXPECT_EQ(a.attr[j].since().t, h[j].since_us());
      EXPECT_EQ(a.attr[j].since().seq, h[j].seq());
      EXPECT_EQ(st.strings.at(a.attr[j].owner), h[j].owner_id()) << i << " " << j;
      EXPECT_EQ(st.strings.at(a.attr[j].team), h[j].team_id()) << i << " " << j;
      EXPECT_EQ(st.strings.at(a.attr[j].segment), h[j].segment()) << i << " " << j;
    }
  }
  EXPECT_GE(longest, 4u) << "some account changed owner several times";
}

// The pool's ids: "" is 0 without a lookup, a hinted Intern gives the
// unhinted id whether the hint is right, stale or out of range.
TEST(KpiIngest, StringPoolHintsGiveTheSameIds) {
  kpi::StringPool pool;
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_EQ(pool.Intern(""), 0u);
  EXPECT_EQ(pool.Find(""), 0u);
  const uint32_t rub = pool.Intern("RUB"), usd = pool.Intern("USD");
  EXPECT_EQ(rub, 1u);
  EXPECT_EQ(usd, 2u);
  uint32_t hint = 0;
  EXPECT_EQ(pool.Intern("RUB", &hint), rub);
  EXPECT_EQ(hint, rub);
  EXPECT_EQ(pool.Intern("RUB", &hint), rub);
  EXPECT_EQ(pool.Intern("USD", &hint), usd);
  EXPECT_EQ(pool.Intern("", &hint), 0u);
  EXPECT_EQ(pool.Intern("EUR", &hint), 3u);
  hint = 1000;
  EXPECT_EQ(pool.Intern("USD", &hint), usd);
  EXPECT_EQ(pool.size(), 4u);
}

// Payments in a currency whose string id passes 255 (every account its own
// segment first): the payment and order columns then hold aux in 32 bits,
// which the scan reads per block (Scanner::WithAux), not per fact. The
// forced scan must still give the reference's report, revenue included.
TEST(KpiScan, WideCurrencyIdsMatchTheReference) {
  std::vector<v1::Event> events = LateStream(14, 8000);
  int accounts = 0;
  for (v1::Event& e : events) {
    if (e.has_account_upserted()) {
      e.mutable_account_upserted()->set_segment(absl::StrCat("segment ", accounts++));
    }
    // After 300 segments, a currency not seen before.
    if (accounts < 300) continue;
    if (e.has_order_placed()) e.mutable_order_placed()->mutable_amount()->set_currency("XTS");
    if (e.has_payment_received()) {
      e.mutable_payment_received()->mutable_amount()->set_currency("XTS");
    }
    if (e.has_invoice_issued()) e.mutable_invoice_issued()->mutable_amount()->set_currency("XTS");
  }
  ASSERT_GE(accounts, 320) << "the stream must have accounts after the currency changes";
  auto s = std::make_unique<EngineState>();
  ASSERT_TRUE(Configure(*WithDefaults({}), s.get()).ok());
  std::vector<v1::Event> accepted;
  for (const v1::Event& e : events) {
    Verdict v;
    if (!ValidateEvent(e, EventFingerprint(e), *s, nullptr, &v).ok() || v != Verdict::kApply)
      continue;
    ApplyEvent(e, EventFingerprint(e), s.get());
    accepted.push_back(e);
  }
  const kpi::FactStore& st = s->kpi;
  ASSERT_NE(st.column(kpi::FactKind::kPayment).fields() & kpi::kFieldAuxWide, 0)
      << "the payments' currency id must need 32 bits";
  const ReferenceKpis ref(accepted, s->config);
  int64_t from = INT64_MAX, to = 0;
  for (const v1::Event& e : accepted) {
    from = std::min(from, e.occurred_at_us());
    to = std::max(to, e.occurred_at_us() + 1);
  }
  int xts = 0;
  for (const v1::GroupBy by : {v1::GROUP_BY_NONE, v1::GROUP_BY_MANAGER, v1::GROUP_BY_SEGMENT}) {
    for (const bool half : {false, true}) {
      v1::KpiQuery q;
      q.set_start_us(half ? from + (to - from) / 2 : from);
      q.set_end_us(to);
      q.set_bucket(v1::BUCKET_MONTH);
      q.set_group_by(by);
      kpi::SetForceScanForTesting(true);
      auto scanned = kpi::Report(*s, *kpi::MakePlan(q));
      kpi::SetForceScanForTesting(false);
      ASSERT_TRUE(scanned.ok()) << scanned.status();
      std::string diff;
      google::protobuf::util::MessageDifferencer d;
      d.ReportDifferencesToString(&diff);
      EXPECT_TRUE(d.Compare(*scanned, ref.Report(q))) << q.ShortDebugString() << "\n"
                                                      << diff.substr(0, 3000);
      for (const v1::KpiRow& row : scanned->rows()) {
        for (const auto& l : row.values().revenue())
          xts += l.currency() == "XTS" && l.amount_minor() > 0;
      }
    }
  }
  EXPECT_GT(xts, 0) << "revenue in the wide currency was counted";
}

}  // namespace
}  // namespace rapport::test
