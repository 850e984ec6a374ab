// The additive figures of one bucket and group while a partial is built.
#ifndef RAPPORT_LIB_KPI_ACCUMULATOR_H_
#define RAPPORT_LIB_KPI_ACCUMULATOR_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "rapport/v1/kpi.pb.h"

namespace rapport::kpi {

enum Field : int {
  kPartnersActiveStart,
  kPartnersActiveEnd,
  kPartnersNew,
  kPartnersChurned,
  kLeads,
  kLeadsWon,
  kClientsNew,
  kReferred,
  kOrders,
  kRepeatOrders,
  kRcrDen,
  kRcrNum,
  kActivity0,  // eight activity counters, in ActivityCode order
  kPpcDen = kActivity0 + 8,
  kPpcNum,
  kFbDen,
  kFbNum,
  kNpsPromoters,
  kNpsDetractors,
  kNpsResponses,
  kWon,
  kLost,
  kChurnNum,
  kChurnDen,
  kStuck,
  kReceivables,
  kHunterDen,
  kHunterNum,
  kFields,
};

struct MoneyLine {
  uint32_t currency;
  int64_t amount;
  int64_t previous;
};

struct Acc {
  bool touched = false;
  int64_t c[kFields] = {};
  // By currency id, unsorted (few).
  std::vector<MoneyLine> revenue;
  std::vector<MoneyLine> receivables;
  // (entered, converted) by flat stage index; empty until a stage entry.
  std::vector<std::pair<int64_t, int64_t>> stages;
  std::vector<double> time_to_win;

  // Adds to a money line; false on overflow.
  static bool AddMoney(std::vector<MoneyLine>& lines, uint32_t currency, int64_t amount,
                       bool previous) {
    MoneyLine* line = nullptr;
    for (MoneyLine& l : lines) {
      if (l.currency == currency) line = &l;
    }
    if (line == nullptr) line = &lines.emplace_back(MoneyLine{currency, 0, 0});
    int64_t& sum = previous ? line->previous : line->amount;
    return !__builtin_add_overflow(sum, amount, &sum);
  }
};

// Sorts `v` ascending as std::sort does, in linear passes: an LSD radix
// sort on keys that order the doubles' bit patterns as `<` orders the
// values. A scan's time_to_win lists are tens of thousands of values per
// bucket, and std::sort on them was 6 % of an ungrouped scan's instructions
// (3 % after: six counting passes of 11 bits, skipping a digit all share).
// The only values whose order differs are NaN (none: not ordered by < either)
// and -0.0, put before +0.0 where std::sort leaves the two in some order;
// time_to_win never holds either (an integer difference over a positive
// day length is +0.0 when zero).
inline void SortDoubles(std::vector<double>& v) {
  const size_t n = v.size();
  if (n < 256) {
    std::sort(v.begin(), v.end());
    return;
  }
  constexpr uint64_t kSign = uint64_t{1} << 63;
  std::vector<uint64_t> a(n), b(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t x;
    std::memcpy(&x, &v[i], sizeof x);
    // Negatives: all bits flipped (a larger magnitude sorts first);
    // positives: above every negative.
    a[i] = (x & kSign) != 0 ? ~x : x | kSign;
  }
  constexpr int kBits = 11;
  constexpr size_t kDigits = size_t{1} << kBits;
  std::vector<size_t> pos(kDigits);
  for (int shift = 0; shift < 64; shift += kBits) {
    std::fill(pos.begin(), pos.end(), 0);
    for (uint64_t x : a) ++pos[(x >> shift) & (kDigits - 1)];
    if (pos[(a[0] >> shift) & (kDigits - 1)] == n) continue;  // one digit: order kept
    size_t sum = 0;
    for (size_t& p : pos) sum += std::exchange(p, sum);
    for (uint64_t x : a) b[pos[(x >> shift) & (kDigits - 1)]++] = x;
    a.swap(b);
  }
  for (size_t i = 0; i < n; ++i) {
    const uint64_t x = (a[i] & kSign) != 0 ? a[i] & ~kSign : ~a[i];
    std::memcpy(&v[i], &x, sizeof x);
  }
}

// Writes the figures that come straight from the counters `c` into `v`: the
// counts, their ratios, activities and NPS counts. The scan's partial sets a
// ratio's numerator and denominator only (the merge finishes it); a report
// built directly (`finish`) sets its value too, and clears a stale one, so
// the two paths give identical reports.
inline void SetCounterFigures(const int64_t* c, bool finish, v1::KpiValues* v) {
  const auto ratio = [finish](v1::Ratio* r, int64_t num, int64_t den) {
    r->set_numerator(num);
    r->set_denominator(den);
    if (!finish) return;
    if (den != 0) {
      r->set_value(static_cast<double>(num) / static_cast<double>(den));
    } else {
      r->clear_value();
    }
  };
  v->set_partners_active_start(c[kPartnersActiveStart]);
  v->set_partners_active_end(c[kPartnersActiveEnd]);
  v->set_partners_new(c[kPartnersNew]);
  v->set_partners_churned(c[kPartnersChurned]);
  ratio(v->mutable_partner_growth(), c[kPartnersActiveEnd] - c[kPartnersActiveStart],
        c[kPartnersActiveStart]);
  v->set_leads(c[kLeads]);
  ratio(v->mutable_lead_conversion(), c[kLeadsWon], c[kLeads]);
  v->set_clients_new(c[kClientsNew]);
  ratio(v->mutable_repeat_order_share(), c[kRepeatOrders], c[kOrders]);
  ratio(v->mutable_repeat_customer_rate(), c[kRcrNum], c[kRcrDen]);
  ratio(v->mutable_referral_rate(), c[kReferred], c[kClientsNew]);
  v1::ActivityCounts* act = v->mutable_activities();
  act->set_calls_outbound(c[kActivity0 + 0]);
  act->set_calls_inbound(c[kActivity0 + 1]);
  act->set_emails_outbound(c[kActivity0 + 2]);
  act->set_emails_inbound(c[kActivity0 + 3]);
  act->set_messengers_outbound(c[kActivity0 + 4]);
  act->set_messengers_inbound(c[kActivity0 + 5]);
  act->set_meetings_outbound(c[kActivity0 + 6]);
  act->set_meetings_inbound(c[kActivity0 + 7]);
  ratio(v->mutable_post_purchase_contact_rate(), c[kPpcNum], c[kPpcDen]);
  ratio(v->mutable_feedback_coverage(), c[kFbNum], c[kFbDen]);
  v->set_nps_promoters(c[kNpsPromoters]);
  v->set_nps_detractors(c[kNpsDetractors]);
  v->set_nps_responses(c[kNpsResponses]);
}

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_ACCUMULATOR_H_
