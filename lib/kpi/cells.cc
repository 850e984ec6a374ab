#include "lib/kpi/cells.h"

#include <algorithm>
#include <atomic>
#include <limits>

#include "absl/time/civil_time.h"

#include "rapport/engine.h"

namespace rapport::kpi {
namespace {

std::atomic<bool> g_force_scan{false};
std::atomic<int64_t> g_rebuilds{0};

constexpr int64_t kDay = kMicrosPerDay;

int64_t DayOf(int64_t t) { return t >= 0 ? t / kDay : -((-t + kDay - 1) / kDay); }

const AttrEntry* AttrAt(const AccountData& a, int64_t t) {
  if (a.attr.empty()) return nullptr;
  if (a.attr.size() == 1) return &a.attr.front();
  auto it = std::upper_bound(a.attr.begin(), a.attr.end(), t,
                             [](int64_t x, const AttrEntry& e) { return x < e.t(); });
  return it == a.attr.begin() ? &a.attr.front() : &*(it - 1);
}

bool PartnerActiveAt(const AccountData& a, int64_t x) {
  auto it = std::lower_bound(a.status.begin(), a.status.end(), x,
                             [](const StatusEvent& e, int64_t v) { return e.at.t < v; });
  return it != a.status.begin() && (it - 1)->agreed;
}

int32_t Day32(int64_t t) { return static_cast<int32_t>(DayOf(t)); }

// The first day boundary D (instant D * kDay) at or after instant x.
int64_t BoundaryDayFrom(int64_t x) { return DayOf(x - 1) + 1; }

constexpr int32_t kNoDay = std::numeric_limits<int32_t>::min();

void SortedAdd(std::vector<int32_t>& v, int32_t x, int sign) {
  if (sign > 0) {
    v.insert(std::upper_bound(v.begin(), v.end(), x), x);
  } else {
    auto it = std::lower_bound(v.begin(), v.end(), x);
    if (it != v.end() && *it == x) v.erase(it);
  }
}

// Whether an element of sorted `v` lies in (from, from + len].
bool AnyIn(const Timeline<int64_t>& v, int64_t from, int64_t len) {
  auto it = std::upper_bound(v.begin(), v.end(), from);
  return it != v.end() && *it <= from + len;
}

bool SameAttr(const AttrEntry& x, const AttrEntry& y) {
  return x.since() == y.since() && x.owner == y.owner && x.team == y.team && x.segment == y.segment;
}

}  // namespace

void CellIndexDeleter::operator()(CellIndex* p) const { delete p; }
CellIndex* NewCellIndex() { return new CellIndex(); }

void SetForceScanForTesting(bool on) { g_force_scan.store(on); }
bool ForceScan() { return g_force_scan.load(std::memory_order_relaxed); }
int64_t CellRebuildsForTesting() { return g_rebuilds.load(); }

uint32_t GroupFor(const FactStore& st, v1::GroupBy by, uint32_t account, int64_t t) {
  return GroupOfData(st.accounts[account], by, t);
}

uint32_t GroupOfData(const AccountData& a, v1::GroupBy by, int64_t t) {
  switch (by) {
    case v1::GROUP_BY_MANAGER:
    case v1::GROUP_BY_TEAM:
    case v1::GROUP_BY_SEGMENT: {
      const AttrEntry* e = AttrAt(a, t);
      if (e == nullptr) return 0;
      return by == v1::GROUP_BY_MANAGER ? e->owner : by == v1::GROUP_BY_TEAM ? e->team : e->segment;
    }
    case v1::GROUP_BY_SOURCE_PARTNER:
      return a.source_partner;
    case v1::GROUP_BY_ACCOUNT_KIND:
      return a.kind == v1::ACCOUNT_KIND_CLIENT    ? kClientGroupId
             : a.kind == v1::ACCOUNT_KIND_PARTNER ? kPartnerGroupId
                                                  : 0;
    default:
      return 0;
  }
}

uint32_t DealGroupFor(const FactStore& st, v1::GroupBy by, uint32_t deal, int64_t t) {
  const DealData& d = st.deals[deal];
  return by == v1::GROUP_BY_SOURCE_PARTNER ? d.source_partner : GroupFor(st, by, d.account, t);
}

bool CustomerAt(const AccountData& a, int64_t t) {
  if (a.kind == v1::ACCOUNT_KIND_PARTNER) return PartnerActiveAt(a, t);
  return !a.orders.empty() && a.orders.front().at.t < t;
}

Cell& CellIndex::At(int mode, int64_t t, uint32_t group) {
  const int64_t d = DayOf(t);
  auto& months = modes_[mode].months;
  if (!months.empty()) {
    auto m = months.upper_bound(d);
    if (m != months.begin() && d < (--m)->second.end_day) months.erase(m);
  }
  std::vector<Cell>& day = modes_[mode].days[d];
  for (Cell& c : day) {
    if (c.group == group) return c;
  }
  Cell& c = day.emplace_back();
  c.group = group;
  return c;
}

InstCell& CellIndex::InstAt(int mode, int64_t d, uint32_t group) {
  // The caller changes the cell.
  modes_[mode].flat_ok = false;
  std::vector<InstCell>& day = modes_[mode].instants[d];
  for (InstCell& c : day) {
    if (c.group == group) return c;
  }
  InstCell& c = day.emplace_back();
  c.group = group;
  return c;
}

bool CellIndex::AnyBuilt() const {
  for (const Mode& m : modes_) {
    if (m.built) return true;
  }
  return false;
}

void CellIndex::Contribute(const FactStore& st, int mode, FactKind kind, int64_t t, const Fact& f) {
  const auto by = static_cast<v1::GroupBy>(mode);
  switch (kind) {
    case FactKind::kLead: {
      Cell& c = At(mode, t, DealGroupFor(st, by, f.subject, t));
      ++c.c[kCellLeads];
      if (st.deals[f.subject].won.t != kNever) ++c.c[kCellLeadsWon];
      break;
    }
    case FactKind::kPartnerAgreed:
      ++At(mode, t, GroupFor(st, by, f.account, t)).c[kCellPartnersNew];
      break;
    case FactKind::kPartnerChurned:
      ++At(mode, t, GroupFor(st, by, f.account, t)).c[kCellPartnersChurned];
      break;
    case FactKind::kPayment: {
      Cell& c = At(mode, t, GroupFor(st, by, f.account, t));
      std::pair<uint32_t, int64_t>* line = nullptr;
      for (auto& l : c.revenue) {
        if (l.first == f.aux) line = &l;
      }
      if (line == nullptr) line = &c.revenue.emplace_back(f.aux, 0);
      if (__builtin_add_overflow(line->second, f.value, &line->second)) overflow_ = true;
      break;
    }
    case FactKind::kActivity: {
      Cell& c =
          At(mode, t, by == v1::GROUP_BY_MANAGER ? f.subject : GroupFor(st, by, f.account, t));
      ++c.c[kCellActivity0 + f.aux];
      if (ActivityInbound(f.aux)) break;
      ++c.c[kCellHunterDen];
      if (!CustomerAt(st.accounts[f.account], t)) ++c.c[kCellHunterNum];
      break;
    }
    case FactKind::kWon:
    case FactKind::kLost: {
      // Only the deal's first win / loss counts (the caller checks).
      Cell& c = At(mode, t, DealGroupFor(st, by, f.subject, t));
      if (kind == FactKind::kLost) {
        ++c.c[kCellLost];
        break;
      }
      ++c.c[kCellWon];
      c.time_to_win.push_back(static_cast<double>(t - st.deals[f.subject].created_at) /
                              static_cast<double>(kDay));
      break;
    }
    case FactKind::kFeedback: {
      Cell& c = At(mode, t, GroupFor(st, by, f.account, t));
      ++c.c[kCellNpsResponses];
      if (f.value >= 9) ++c.c[kCellNpsPromoters];
      if (f.value <= 6) ++c.c[kCellNpsDetractors];
      break;
    }
    case FactKind::kOrderCompleted: {
      // feedback_coverage, as if every window had closed.
      Cell& c = At(mode, t, GroupFor(st, by, f.account, t));
      ++c.c[kCellFbDen];
      const auto& fb = st.accounts[f.account].feedback;
      auto it = std::upper_bound(fb.begin(), fb.end(), t,
                                 [](int64_t x, const FeedbackRef& r) { return x < r.t; });
      if (it != fb.end() && it->t <= t + 30 * kDay) ++c.c[kCellFbNum];
      break;
    }
    default:
      break;
  }
}

namespace {

// Grows a per-account or per-invoice list to n entries of `fill`. Capacity
// grows by an eighth, not doubled as std::vector would: these lists reach
// millions of entries, and doubling left up to half of them unused (about
// 0.2 B per stored event at 10 M); an eighth still amortises the copies.
template <typename T>
void GrowTo(std::vector<T>& v, size_t n, T fill) {
  if (v.size() >= n) return;
  if (v.capacity() < n) v.reserve(n + n / 8 + 16);
  v.resize(n, fill);
}

}  // namespace

// ---- orders: clients_new, referral, repeat orders, repeat_customer_rate ----

namespace {

// What an order at position j of an account's orders (with position `skip`
// left out, to see the orders as they were before an insert) adds.
struct OrderTerm {
  int64_t t;
  bool first;
  int32_t prev_day;    // kNoDay: none or on the same day
  int32_t second_day;  // first orders: the second order's day, INT32_MAX none
  friend bool operator==(const OrderTerm& a, const OrderTerm& b) {
    return a.t == b.t && a.first == b.first && a.prev_day == b.prev_day &&
           a.second_day == b.second_day;
  }
};

OrderTerm OrderTermAt(const AccountData& a, size_t j, size_t skip) {
  auto at = [&](size_t v) -> const OrderRef& { return a.orders[v < skip ? v : v + 1]; };
  const size_t n = a.orders.size() - (skip < a.orders.size() ? 1 : 0);
  OrderTerm x{at(j).at.t, j == 0, kNoDay, kNoDay};
  if (j > 0) {
    const int32_t pd = Day32(at(j - 1).at.t);
    if (pd < Day32(x.t)) x.prev_day = pd;
  } else {
    x.second_day = n >= 2 ? Day32(at(1).at.t) : std::numeric_limits<int32_t>::max();
  }
  return x;
}

}  // namespace

void CellIndex::OrderTerms(const FactStore& st, int mode, uint32_t account, size_t j, size_t skip,
                           int sign) {
  const AccountData& a = st.accounts[account];
  const OrderTerm x = OrderTermAt(a, j, skip);
  Cell& c = At(mode, x.t, GroupFor(st, static_cast<v1::GroupBy>(mode), account, x.t));
  c.c[kCellOrders] += sign;
  if (x.first) {
    c.c[kCellClientsNew] += sign;
    if (a.referred) c.c[kCellReferred] += sign;
    SortedAdd(c.rcr_second, x.second_day, sign);
  } else {
    c.c[kCellRepeatOrders] += sign;
    if (x.prev_day != kNoDay) SortedAdd(c.rcr_prev, x.prev_day, sign);
  }
}

void CellIndex::OrderPlaced(const FactStore& st, int mode, uint32_t account, uint32_t order) {
  const AccountData& a = st.accounts[account];
  const size_t n = a.orders.size();
  size_t i = n - 1;
  while (a.orders[i].order != order) --i;
  // The new order changes at most the first order's second, its own
  // successor's previous, and (when first) the old first's terms.
  size_t cand[4] = {0, 1, i, i + 1};
  std::sort(cand, cand + 4);
  for (int k = 0; k < 4; ++k) {
    const size_t r = cand[k];
    if (r >= n || r == i || (k > 0 && cand[k - 1] == r)) continue;
    const size_t v = r < i ? r : r - 1;
    if (OrderTermAt(a, v, i) == OrderTermAt(a, r, SIZE_MAX)) continue;
    OrderTerms(st, mode, account, v, i, -1);
    OrderTerms(st, mode, account, r, SIZE_MAX, 1);
  }
  OrderTerms(st, mode, account, i, SIZE_MAX, 1);
  // post_purchase_contact_rate, as if every window had closed.
  const int64_t t = a.orders[i].at.t;
  Cell& c = At(mode, t, GroupFor(st, static_cast<v1::GroupBy>(mode), account, t));
  ++c.c[kCellPpcDen];
  if (AnyIn(a.outbound, t, 7 * kDay)) ++c.c[kCellPpcNum];
}

// ---- stage_conversion ------------------------------------------------------

namespace {

struct StageTerm {
  int64_t t;
  uint32_t flat;
  int kind;  // 0: opens no bucket (the stage was entered earlier that day); 1: StageCount; 2:
             // StageRepeat
  int32_t prev_day;
  bool converted;
  friend bool operator==(const StageTerm& a, const StageTerm& b) {
    return a.t == b.t && a.flat == b.flat && a.kind == b.kind && a.prev_day == b.prev_day &&
           a.converted == b.converted;
  }
};

StageTerm StageTermAt(const FactStore& st, const DealData& d, size_t k, size_t skip) {
  auto at = [&](size_t v) -> Visit { return d.visits[v < skip ? v : v + 1]; };
  const size_t n = d.visits.size() - (skip < d.visits.size() ? 1 : 0);
  const Visit me = at(k);
  const Stamp me_at = me.at();
  const int32_t me_stage = me.stage();
  StageTerm x{me_at.t,
              static_cast<uint32_t>(st.stage_offset[static_cast<size_t>(d.pipeline)] + me_stage), 1,
              kNoDay, false};
  // Visits with equal stamps (only a damaged snapshot has them) are neither
  // before nor after each other, as in the scan: skipped both ways.
  for (size_t j = k; j-- > 0;) {
    const Visit v = at(j);
    if (v.at() == me_at) continue;
    if (v.stage() == me_stage) {
      x.prev_day = Day32(v.t());
      x.kind = x.prev_day < Day32(me_at.t) ? 2 : 0;
      break;
    }
  }
  for (size_t j = k + 1; j < n; ++j) {
    const Visit v = at(j);
    if (v.stage() > me_stage && me_at < v.at()) {
      x.converted = true;
      break;
    }
  }
  return x;
}

}  // namespace

void CellIndex::StageTerms(const FactStore& st, int mode, uint32_t deal, size_t k, size_t skip,
                           int sign) {
  const StageTerm x = StageTermAt(st, st.deals[deal], k, skip);
  if (x.kind == 0) return;
  Cell& c = At(mode, x.t, DealGroupFor(st, static_cast<v1::GroupBy>(mode), deal, x.t));
  if (x.kind == 1) {
    StageCount* sc = nullptr;
    for (StageCount& y : c.stages) {
      if (y.flat == x.flat) sc = &y;
    }
    if (sc == nullptr) sc = &c.stages.emplace_back(StageCount{x.flat, 0, 0});
    sc->entered += sign;
    if (x.converted) sc->converted += sign;
    return;
  }
  const StageRepeat r{x.flat, x.prev_day, x.converted};
  if (sign > 0) {
    c.stage_repeats.push_back(r);
    return;
  }
  for (StageRepeat& y : c.stage_repeats) {
    if (y == r) {
      y = c.stage_repeats.back();
      c.stage_repeats.pop_back();
      return;
    }
  }
}

void CellIndex::StageEntered(const FactStore& st, int mode, uint32_t deal, const Fact& f,
                             int64_t t) {
  const DealData& d = st.deals[deal];
  const size_t n = d.visits.size();
  size_t i = n - 1;
  while (!(d.visits[i].at() == Stamp{t, f.value})) --i;
  // A deal has few visits: every other visit's terms are compared.
  for (size_t r = 0; r < n; ++r) {
    if (r == i) continue;
    const size_t v = r < i ? r : r - 1;
    if (StageTermAt(st, d, v, i) == StageTermAt(st, d, r, SIZE_MAX)) continue;
    StageTerms(st, mode, deal, v, i, -1);
    StageTerms(st, mode, deal, r, SIZE_MAX, 1);
  }
  StageTerms(st, mode, deal, i, SIZE_MAX, 1);
}

// ---- figures at instants ---------------------------------------------------

void CellIndex::AccountInstants(const FactStore& st, int mode, uint32_t account,
                                const AccountData& a, int sign) {
  const auto by = static_cast<v1::GroupBy>(mode);
  std::vector<int64_t> days;
  for (const AttrEntry& e : a.attr) days.push_back(BoundaryDayFrom(e.t()));
  if (a.kind == v1::ACCOUNT_KIND_PARTNER) {
    // partners_active at a day boundary x: the status before x.
    if (a.status.empty()) return;
    for (const StatusEvent& e : a.status) days.push_back(BoundaryDayFrom(e.at.t + 1));
    std::sort(days.begin(), days.end());
    bool on = false;
    uint32_t g = 0;
    for (size_t k = 0; k < days.size(); ++k) {
      if (k > 0 && days[k] == days[k - 1]) continue;
      const int64_t x = days[k] * kDay;
      const bool now_on = PartnerActiveAt(a, x);
      const uint32_t now_g = now_on ? GroupOfData(a, by, x) : 0;
      if (now_on == on && now_g == g) continue;
      if (on) InstAt(mode, days[k], g).partners -= sign;
      if (now_on) InstAt(mode, days[k], now_g).partners += sign;
      on = now_on;
      g = now_g;
    }
    return;
  }
  if (a.orders.empty()) return;
  // client_churn_rate: the client spans, as the scan draws them.
  std::vector<ClientSpan> spans;
  ClientSpans(a, churn_after_, &spans);
  for (const ClientSpan& sp : spans) {
    InstAt(mode, DayOf(sp.to), GroupOfData(a, by, sp.to)).churned += sign;
    // A client at x when from < x <= to.
    days.push_back(BoundaryDayFrom(sp.from + 1));
    days.push_back(BoundaryDayFrom(sp.to + 1));
  }
  std::sort(days.begin(), days.end());
  bool on = false;
  uint32_t g = 0;
  size_t si = 0;
  for (size_t k = 0; k < days.size(); ++k) {
    if (k > 0 && days[k] == days[k - 1]) continue;
    const int64_t x = days[k] * kDay;
    while (si < spans.size() && spans[si].to < x) ++si;
    const bool now_on = si < spans.size() && spans[si].from < x;
    const uint32_t now_g = now_on ? GroupOfData(a, by, x) : 0;
    if (now_on == on && now_g == g) continue;
    if (on) InstAt(mode, days[k], g).clients -= sign;
    if (now_on) InstAt(mode, days[k], now_g).clients += sign;
    on = now_on;
    g = now_g;
  }
}

void CellIndex::DealInstants(const FactStore& st, int mode, uint32_t deal, const AccountData& a,
                             int sign) {
  // stuck_deals at an as_of after every fact: an open deal whose last stage
  // has an SLA is stuck from its entry + SLA + 1 us on.
  const DealData& d = st.deals[deal];
  if (d.lost.t != kNever || d.visits.empty()) return;
  const Visit cur = d.visits.back();
  const int64_t sla = st.stage_sla[static_cast<size_t>(
      st.stage_offset[static_cast<size_t>(d.pipeline)] + cur.stage())];
  // An SLA beyond the time range never elapses (and would overflow below).
  if (sla <= 0 || sla >= kMaxTimeUs) return;
  const auto by = static_cast<v1::GroupBy>(mode);
  const uint32_t g = by == v1::GROUP_BY_SOURCE_PARTNER
                         ? d.source_partner
                         : GroupOfData(a, by, std::numeric_limits<int64_t>::max());
  // Stuck at as_of = A days iff entry + SLA + 1 <= A * kDay.
  InstAt(mode, DayOf(cur.t() + sla), g).stuck += sign;
}

void CellIndex::InvoiceInstants(const FactStore& st, int mode, uint32_t invoice,
                                const AccountData& a, int sign) {
  // receivables_overdue at an as_of after every payment (OverdueAt's sum).
  const InvoiceData& inv = st.invoices[invoice];
  int64_t paid = 0;
  for (const Payment& p : st.invoice_payments[invoice]) {
    if (__builtin_add_overflow(paid, p.amount, &paid)) paid = INT64_MAX;
  }
  if (paid >= inv.amount) return;
  const auto by = static_cast<v1::GroupBy>(mode);
  InstCell& c = InstAt(mode, DayOf(std::max(inv.issued, inv.due)),
                       GroupOfData(a, by, std::numeric_limits<int64_t>::max()));
  c.overdue += sign;
  std::pair<uint32_t, __int128>* line = nullptr;
  for (auto& l : c.owed) {
    if (l.first == inv.currency) line = &l;
  }
  if (line == nullptr) line = &c.owed.emplace_back(inv.currency, 0);
  line->second += static_cast<__int128>(sign) * (inv.amount - paid);
}

// ---- upkeep ----------------------------------------------------------------

void CellIndex::MarkStale() {
  for (Mode& m : modes_) {
    m.built = false;
    m.days.clear();
    m.instants.clear();
    m.flat_ok = false;
    m.months.clear();
  }
  overflow_ = false;
}

namespace {

// The entity whose instant terms a fact changes.
enum class Entity { kNone, kAccount, kDeal, kInvoice };

Entity EntityOf(FactKind kind, const Fact& f) {
  switch (kind) {
    case FactKind::kPartnerAgreed:
    case FactKind::kPartnerChurned:
    case FactKind::kAccountChurned:
    case FactKind::kOrderPlaced:
      return Entity::kAccount;
    case FactKind::kStageEntry:
    case FactKind::kLost:
      return Entity::kDeal;
    case FactKind::kPayment:
      return f.subject != 0 ? Entity::kInvoice : Entity::kNone;
    default:
      return Entity::kNone;
  }
}

}  // namespace

void CellIndex::BeforeFact(const FactStore& st, FactKind kind, const Fact& f) {
  const Entity e = EntityOf(kind, f);
  if (e == Entity::kNone) return;
  for (int mode = 0; mode < kModes; ++mode) {
    if (!modes_[mode].built) continue;
    if (e == Entity::kAccount) AccountInstants(st, mode, f.account, st.accounts[f.account], -1);
    if (e == Entity::kDeal) DealInstants(st, mode, f.subject, st.accounts[f.account], -1);
    if (e == Entity::kInvoice) {
      InvoiceInstants(st, mode, f.subject - 1, st.accounts[st.invoices[f.subject - 1].account], -1);
    }
  }
}

void CellIndex::OnInvoice(const FactStore& st, uint32_t invoice) {
  const uint32_t account = st.invoices[invoice].account;
  GrowTo(first_invoice_, account + 1, kNoEntity);
  GrowTo(next_invoice_, invoice + 1, kNoEntity);
  next_invoice_[invoice] = first_invoice_[account];
  first_invoice_[account] = invoice;
  for (int mode = 0; mode < kModes; ++mode) {
    if (modes_[mode].built) InvoiceInstants(st, mode, invoice, st.accounts[account], 1);
  }
}

void CellIndex::OnFact(const FactStore& st, FactKind kind, int64_t t, const Fact& f,
                       FirstChange first) {
  GrowTo(last_t_, f.account + 1, std::numeric_limits<int64_t>::min());
  last_t_[f.account] = std::max(last_t_[f.account], t);
  max_t_ = std::max(max_t_, t);
  if (kind == FactKind::kLead) {
    GrowTo(first_deal_, f.account + 1, kNoEntity);
    st.deals[f.subject].next_of_account = first_deal_[f.account];
    first_deal_[f.account] = f.subject;
  }
  if (!AnyBuilt()) return;
  const AccountData& a = st.accounts[f.account];
  switch (kind) {
    case FactKind::kPartnerAgreed:
    case FactKind::kPartnerChurned:
      // Changes whether later outbound contacts with a partner were hunting.
      if (a.kind == v1::ACCOUNT_KIND_PARTNER && !a.outbound.empty() && a.outbound.back() > t) {
        MarkStale();
        return;
      }
      break;
    case FactKind::kWon:
    case FactKind::kLost:
      // A late first win or loss moves the deal's count to another day.
      if (first == FirstChange::kReplaced) {
        MarkStale();
        return;
      }
      break;
    case FactKind::kOrderPlaced:
      if (a.kind != v1::ACCOUNT_KIND_PARTNER && a.orders.front().order == f.subject &&
          !a.outbound.empty() && a.outbound.back() > t) {
        MarkStale();
        return;
      }
      break;
    default:
      break;
  }
  const Entity e = EntityOf(kind, f);
  for (int mode = 0; mode < kModes; ++mode) {
    if (!modes_[mode].built) continue;
    const auto by = static_cast<v1::GroupBy>(mode);
    if (e == Entity::kAccount) AccountInstants(st, mode, f.account, a, 1);
    if (e == Entity::kDeal) DealInstants(st, mode, f.subject, a, 1);
    if (e == Entity::kInvoice) {
      InvoiceInstants(st, mode, f.subject - 1, st.accounts[st.invoices[f.subject - 1].account], 1);
    }
    switch (kind) {
      case FactKind::kWon:
      case FactKind::kLost:
        if (first == FirstChange::kNone) continue;
        if (kind == FactKind::kWon) {
          // The deal's lead now counts as won (before any as_of after the win).
          const DealData& d = st.deals[f.subject];
          ++At(mode, d.created_at, DealGroupFor(st, by, f.subject, d.created_at)).c[kCellLeadsWon];
        }
        Contribute(st, mode, kind, t, f);
        break;
      case FactKind::kOrderPlaced:
        OrderPlaced(st, mode, f.account, f.subject);
        break;
      case FactKind::kStageEntry:
        StageEntered(st, mode, f.subject, f, t);
        break;
      case FactKind::kActivity:
        Contribute(st, mode, kind, t, f);
        if (!ActivityInbound(f.aux)) {
          // Orders in the 7 days before whose first contact this is.
          auto o = std::lower_bound(a.orders.begin(), a.orders.end(), t - 7 * kDay,
                                    [](const OrderRef& r, int64_t x) { return r.at.t < x; });
          for (; o != a.orders.end() && o->at.t < t; ++o) {
            const int64_t to = o->at.t;
            const auto from = std::upper_bound(a.outbound.begin(), a.outbound.end(), to);
            if (from != a.outbound.end() && from + 1 != a.outbound.end() &&
                *(from + 1) <= to + 7 * kDay)
              continue;
            ++At(mode, to, GroupFor(st, by, f.account, to)).c[kCellPpcNum];
          }
        }
        break;
      case FactKind::kFeedback: {
        Contribute(st, mode, kind, t, f);
        // Completions in the 30 days before whose first feedback this is.
        auto c = std::lower_bound(a.completed.begin(), a.completed.end(), t - 30 * kDay);
        for (; c != a.completed.end() && *c < t; ++c) {
          const int64_t tc = *c;
          auto from = std::upper_bound(a.feedback.begin(), a.feedback.end(), tc,
                                       [](int64_t x, const FeedbackRef& r) { return x < r.t; });
          if (from != a.feedback.end() && from + 1 != a.feedback.end() &&
              (from + 1)->t <= tc + 30 * kDay) {
            continue;
          }
          ++At(mode, tc, GroupFor(st, by, f.account, tc)).c[kCellFbNum];
        }
        break;
      }
      default:
        Contribute(st, mode, kind, t, f);
        break;
    }
  }
}

void CellIndex::OnFactsLoaded(const FactStore& st) {
  WriterLock lock(&mu_);
  if (AnyBuilt()) MarkStale();
  // As OnFact does for each fact before its `AnyBuilt` return, block by
  // block: the lists sized once for every account and deal (OnFact grows
  // them an entity at a time; the lookups treat an entry past the end and a
  // kNoEntity or minimum one alike), and a deal kind's account read from its
  // deal alone (Block::at reads a stage entry's visit too). This runs on the
  // restore's one thread after its two.
  constexpr int64_t kNone = std::numeric_limits<int64_t>::min();
  // Exactly the restored accounts: ingest grows them from there.
  last_t_.reserve(st.accounts.size());
  first_deal_.reserve(st.accounts.size());
  GrowTo(last_t_, st.accounts.size(), kNone);
  GrowTo(first_deal_, st.accounts.size(), kNoEntity);
  int64_t max_t = max_t_;
  for (int k = 0; k < kFactKinds; ++k) {
    const bool lead = static_cast<FactKind>(k) == FactKind::kLead;
    for (const auto& b : st.columns[k].blocks()) {
      const FactColumn::Block& blk = *b;
      if (blk.n == 0) continue;
      // Each block is in time order: its last time is its largest.
      max_t = std::max(max_t, blk.t[blk.n - 1]);
      for (int i = 0; i < blk.n; ++i) {
        const uint32_t account =
            blk.deals != nullptr ? (*blk.deals)[blk.subject[i]].account : blk.account[i];
        GrowTo(last_t_, account + 1, kNone);
        last_t_[account] = std::max(last_t_[account], blk.t[i]);
        if (lead) {
          const uint32_t deal = blk.subject[i];
          GrowTo(first_deal_, account + 1, kNoEntity);
          st.deals[deal].next_of_account = first_deal_[account];
          first_deal_[account] = deal;
        }
      }
    }
  }
  max_t_ = max_t;
}

void CellIndex::OnAccountChange(const FactStore& st, uint32_t account, const AccountData& before) {
  const AccountData& now = st.accounts[account];
  for (const AttrEntry& e : now.attr) max_t_ = std::max(max_t_, e.t());
  if (!AnyBuilt()) return;
  const bool facts =
      account < last_t_.size() && last_t_[account] != std::numeric_limits<int64_t>::min();
  // Which modes' cells the change reaches: their groups moved for counted
  // facts. Those are rebuilt by their next query; the others stay.
  bool stale[kModes] = {};
  if (facts) {
    if ((now.kind == v1::ACCOUNT_KIND_PARTNER) != (before.kind == v1::ACCOUNT_KIND_PARTNER)) {
      // Changes hunter_share and the instant figures everywhere.
      MarkStale();
      return;
    }
    stale[v1::GROUP_BY_ACCOUNT_KIND] = now.kind != before.kind;
    stale[v1::GROUP_BY_SOURCE_PARTNER] = now.source_partner != before.source_partner;
    // Attribution is unchanged before the first entry that differs.
    const size_t n = std::min(now.attr.size(), before.attr.size());
    size_t i = 0;
    while (i < n && SameAttr(now.attr[i], before.attr[i])) ++i;
    bool attr = false;
    if (i < now.attr.size() || i < before.attr.size()) {
      if (i == 0) {
        attr = true;
      } else {
        int64_t from = std::numeric_limits<int64_t>::max();
        if (i < now.attr.size()) from = std::min(from, now.attr[i].t());
        if (i < before.attr.size()) from = std::min(from, before.attr[i].t());
        attr = from <= last_t_[account];
      }
    }
    stale[v1::GROUP_BY_MANAGER] = stale[v1::GROUP_BY_TEAM] = stale[v1::GROUP_BY_SEGMENT] = attr;
  }
  for (int mode = 0; mode < kModes; ++mode) {
    if (!stale[mode] || !modes_[mode].built) continue;
    Mode& m = modes_[mode];
    m.built = false;
    m.days.clear();
    m.instants.clear();
    m.flat_ok = false;
    m.months.clear();
  }
  // referral_rate: the account's first order counts as referred or not.
  if (now.referred != before.referred && !now.orders.empty()) {
    const int64_t t = now.orders.front().at.t;
    for (int mode = 0; mode < kModes; ++mode) {
      if (!modes_[mode].built) continue;
      At(mode, t, GroupFor(st, static_cast<v1::GroupBy>(mode), account, t)).c[kCellReferred] +=
          now.referred ? 1 : -1;
    }
  }
  // The instant terms: the account's own, and its deals' and invoices' (by
  // the current attribution).
  for (int mode = 0; mode < kModes; ++mode) {
    if (!modes_[mode].built) continue;
    AccountInstants(st, mode, account, before, -1);
    AccountInstants(st, mode, account, now, 1);
    for (uint32_t d = account < first_deal_.size() ? first_deal_[account] : kNoEntity;
         d != kNoEntity; d = st.deals[d].next_of_account) {
      DealInstants(st, mode, d, before, -1);
      DealInstants(st, mode, d, now, 1);
    }
    for (uint32_t i = account < first_invoice_.size() ? first_invoice_[account] : kNoEntity;
         i != kNoEntity; i = next_invoice_[i]) {
      InvoiceInstants(st, mode, i, before, -1);
      InvoiceInstants(st, mode, i, now, 1);
    }
  }
}

void CellIndex::Rebuild(const FactStore& st, int mode) {
  g_rebuilds.fetch_add(1, std::memory_order_relaxed);
  Mode& m = modes_[mode];
  m.days.clear();
  m.instants.clear();
  m.flat_ok = false;
  m.months.clear();
  for (FactKind k :
       {FactKind::kLead, FactKind::kPartnerAgreed, FactKind::kPartnerChurned, FactKind::kPayment,
        FactKind::kActivity, FactKind::kFeedback, FactKind::kOrderCompleted}) {
    st.column(k).ForAll([&](int64_t t, const Fact& f) { Contribute(st, mode, k, t, f); });
  }
  st.column(FactKind::kWon).ForAll([&](int64_t t, const Fact& f) {
    if (st.deals[f.subject].won == Stamp{t, f.value}) Contribute(st, mode, FactKind::kWon, t, f);
  });
  st.column(FactKind::kLost).ForAll([&](int64_t t, const Fact& f) {
    if (st.deals[f.subject].lost == Stamp{t, f.value}) Contribute(st, mode, FactKind::kLost, t, f);
  });
  const auto by = static_cast<v1::GroupBy>(mode);
  for (uint32_t i = 0; i < st.accounts.size(); ++i) {
    const AccountData& a = st.accounts[i];
    for (const AttrEntry& e : a.attr) max_t_ = std::max(max_t_, e.t());
    for (size_t j = 0; j < a.orders.size(); ++j) {
      OrderTerms(st, mode, i, j, SIZE_MAX, 1);
      const int64_t t = a.orders[j].at.t;
      Cell& c = At(mode, t, GroupFor(st, by, i, t));
      ++c.c[kCellPpcDen];
      if (AnyIn(a.outbound, t, 7 * kDay)) ++c.c[kCellPpcNum];
    }
    AccountInstants(st, mode, i, a, 1);
  }
  for (uint32_t d = 0; d < st.deals.size(); ++d) {
    for (size_t k = 0; k < st.deals[d].visits.size(); ++k) StageTerms(st, mode, d, k, SIZE_MAX, 1);
    DealInstants(st, mode, d, st.accounts[st.deals[d].account], 1);
  }
  for (uint32_t i = 0; i < st.invoices.size(); ++i) {
    InvoiceInstants(st, mode, i, st.accounts[st.invoices[i].account], 1);
  }
  m.built = true;
}

CellIndex::Mode* CellIndex::Ready(const FactStore& st, v1::GroupBy mode, int64_t churn_after) {
  const int mi = static_cast<int>(mode);
  if (mi < 0 || mi >= kModes) return nullptr;
  if (churn_after != churn_after_) {
    MarkStale();
    churn_after_ = churn_after;
  }
  if (!modes_[mi].built) Rebuild(st, mi);
  return overflow_ ? nullptr : &modes_[mi];
}

bool CellIndex::ForDays(const FactStore& st, v1::GroupBy mode, int64_t churn_after,
                        int64_t from_day, int64_t to_day,
                        const std::function<void(int64_t, const Cell&)>& fn) {
  WriterLock lock(&mu_);
  Mode* m = Ready(st, mode, churn_after);
  if (m == nullptr) return false;
  const auto& days = m->days;
  for (auto it = days.lower_bound(from_day); it != days.end() && it->first < to_day; ++it) {
    for (const Cell& c : it->second) fn(it->first, c);
  }
  return true;
}

bool CellIndex::ForMonth(const FactStore& st, v1::GroupBy mode, int64_t churn_after,
                         int64_t month_day, const std::function<void(uint32_t, const Acc&)>& fn) {
  WriterLock lock(&mu_);
  Mode* m = Ready(st, mode, churn_after);
  if (m == nullptr) return false;
  const Month* month = MonthOf(st, *m, month_day, true);
  if (month == nullptr) return false;
  for (const MonthSum& x : month->sums) fn(x.group, x.acc);
  return true;
}

bool CellIndex::WithView(const FactStore& st, v1::GroupBy mode, int64_t churn_after,
                         const std::function<void(View&)>& fn) {
  WriterLock lock(&mu_);
  Mode* m = Ready(st, mode, churn_after);
  if (m == nullptr) return false;
  View view(this, &st, m);
  fn(view);
  return true;
}

const std::vector<CellIndex::MonthSum>* CellIndex::View::Month(int64_t month_day) {
  const CellIndex::Month* month = index_->MonthOf(*st_, *mode_, month_day, false);
  return month == nullptr ? nullptr : &month->sums;
}

const std::vector<CellIndex::FlatInstant>& CellIndex::FlatInstants(Mode& m) {
  if (m.flat_ok) return m.flat;
  m.flat.clear();
  for (const auto& [day, cells] : m.instants) {
    for (const InstCell& c : cells) {
      m.flat.push_back(FlatInstant{day, c.group, c.partners, c.clients, c.churned, c.stuck,
                                   c.overdue, c.owed.empty() ? nullptr : &c.owed});
    }
  }
  m.flat_ok = true;
  return m.flat;
}

CellIndex::Month* CellIndex::MonthOf(const FactStore& st, Mode& m, int64_t month_day, bool lists) {
  auto it = m.months.find(month_day);
  if (it != m.months.end() && (it->second.lists || !lists)) return &it->second;
  const absl::CivilDay first = absl::CivilDay(1970, 1, 1) + month_day;
  const int64_t end_day = absl::CivilDay(absl::CivilMonth(first) + 1) - absl::CivilDay(1970, 1, 1);
  Month month{end_day, lists, {}, {}};
  const size_t stages = static_cast<size_t>(st.stage_offset.empty() ? 0 : st.stage_offset.back());
  for (auto d = m.days.lower_bound(month_day); d != m.days.end() && d->first < end_day; ++d) {
    for (const Cell& c : d->second) {
      MonthSum* sum = nullptr;
      for (MonthSum& x : month.sums) {
        if (x.group == c.group) sum = &x;
      }
      if (sum == nullptr) {
        sum = &month.sums.emplace_back();
        sum->group = c.group;
      }
      if (AddCellTo(c, month_day, end_day, true, stages, sum->acc) != UINT32_MAX) return nullptr;
      for (const auto& [currency, amount] : c.revenue) {
        month.revenue.push_back(
            DayRevenue{static_cast<int32_t>(d->first), c.group, currency, amount});
      }
    }
  }
  for (MonthSum& x : month.sums) {
    std::vector<double>& v = x.acc.time_to_win;
    x.has_median = !v.empty();
    if (v.empty()) continue;
    // The median as the merge takes it from the sorted list (MergePartials):
    // the middle element, or the mean of the two middle ones.
    const size_t n = v.size();
    if (lists) {
      std::sort(v.begin(), v.end());
      x.median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
      continue;
    }
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n / 2), v.end());
    const double hi = v[n / 2];
    x.median =
        n % 2 == 1
            ? hi
            : (*std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n / 2)) + hi) /
                  2;
    std::vector<double>().swap(v);
  }
  if (it != m.months.end()) {
    it->second = std::move(month);
    return &it->second;
  }
  return &m.months.emplace(month_day, std::move(month)).first->second;
}

uint32_t AddCellTo(const Cell& cell, int64_t first_day, int64_t end_day, bool whole, size_t stages,
                   Acc& a) {
  uint32_t overflow = UINT32_MAX;
  for (const auto& [currency, amount] : cell.revenue) {
    if (!Acc::AddMoney(a.revenue, currency, amount, false)) overflow = currency;
  }
  const int64_t* c = cell.c;
  a.c[kPartnersNew] += c[kCellPartnersNew];
  a.c[kPartnersChurned] += c[kCellPartnersChurned];
  a.c[kLeads] += c[kCellLeads];
  a.c[kLeadsWon] += c[kCellLeadsWon];
  for (int i = 0; i < 8; ++i) a.c[kActivity0 + i] += c[kCellActivity0 + i];
  a.c[kHunterDen] += c[kCellHunterDen];
  a.c[kHunterNum] += c[kCellHunterNum];
  a.c[kNpsPromoters] += c[kCellNpsPromoters];
  a.c[kNpsDetractors] += c[kCellNpsDetractors];
  a.c[kNpsResponses] += c[kCellNpsResponses];
  a.c[kWon] += c[kCellWon];
  a.c[kLost] += c[kCellLost];
  a.time_to_win.insert(a.time_to_win.end(), cell.time_to_win.begin(), cell.time_to_win.end());
  if (!whole) return overflow;
  a.c[kOrders] += c[kCellOrders];
  a.c[kClientsNew] += c[kCellClientsNew];
  a.c[kReferred] += c[kCellReferred];
  a.c[kRepeatOrders] += c[kCellRepeatOrders];
  a.c[kPpcDen] += c[kCellPpcDen];
  a.c[kPpcNum] += c[kCellPpcNum];
  a.c[kFbDen] += c[kCellFbDen];
  a.c[kFbNum] += c[kCellFbNum];
  // An order opens the bucket for its account when the account's previous
  // order is before the bucket; it counts as repeat when the account's
  // second order is before the bucket's end.
  const int64_t den = static_cast<int64_t>(cell.rcr_second.size()) +
                      (std::lower_bound(cell.rcr_prev.begin(), cell.rcr_prev.end(), first_day) -
                       cell.rcr_prev.begin());
  a.c[kRcrDen] += den;
  a.c[kRcrNum] += den - (cell.rcr_second.end() -
                         std::lower_bound(cell.rcr_second.begin(), cell.rcr_second.end(), end_day));
  if (cell.stages.empty() && cell.stage_repeats.empty()) return overflow;
  if (a.stages.size() < stages) a.stages.resize(stages);
  for (const StageCount& sc : cell.stages) {
    a.stages[sc.flat].first += sc.entered;
    a.stages[sc.flat].second += sc.converted;
  }
  for (const StageRepeat& r : cell.stage_repeats) {
    if (r.prev_day >= first_day) continue;
    ++a.stages[r.flat].first;
    if (r.converted) ++a.stages[r.flat].second;
  }
  return overflow;
}

bool HasFigures(const Acc& a) {
  for (int64_t x : a.c) {
    if (x != 0) return true;
  }
  for (const auto& s : a.stages) {
    if (s.first != 0) return true;
  }
  return !a.revenue.empty() || !a.receivables.empty() || !a.time_to_win.empty();
}

void TakeOutOpenWindows(const Cell& cell, int64_t day, int64_t ppc_day, Acc& a) {
  a.c[kFbDen] -= cell.c[kCellFbDen];
  a.c[kFbNum] -= cell.c[kCellFbNum];
  if (day < ppc_day) return;
  a.c[kPpcDen] -= cell.c[kCellPpcDen];
  a.c[kPpcNum] -= cell.c[kCellPpcNum];
}

bool AddAcc(const Acc& from, Acc& a, uint32_t* currency) {
  bool ok = true;
  for (const MoneyLine& l : from.revenue) {
    if (!Acc::AddMoney(a.revenue, l.currency, l.amount, false) ||
        !Acc::AddMoney(a.revenue, l.currency, l.previous, true)) {
      *currency = l.currency;
      ok = false;
    }
  }
  for (const MoneyLine& l : from.receivables) {
    if (!Acc::AddMoney(a.receivables, l.currency, l.amount, false)) {
      *currency = l.currency;
      ok = false;
    }
  }
  for (int i = 0; i < kFields; ++i) a.c[i] += from.c[i];
  if (a.stages.size() < from.stages.size()) a.stages.resize(from.stages.size());
  for (size_t i = 0; i < from.stages.size(); ++i) {
    a.stages[i].first += from.stages[i].first;
    a.stages[i].second += from.stages[i].second;
  }
  if (a.time_to_win.empty()) {
    a.time_to_win = from.time_to_win;
  } else {
    a.time_to_win.insert(a.time_to_win.end(), from.time_to_win.begin(), from.time_to_win.end());
  }
  return ok;
}

void CellIndex::ForInstants(v1::GroupBy mode,
                            const std::function<void(int64_t, const InstCell&)>& fn) const {
  ReaderLock lock(&mu_);
  for (const auto& [day, cells] : modes_[static_cast<int>(mode)].instants) {
    for (const InstCell& c : cells) fn(day, c);
  }
}

int64_t CellIndex::MaxTime() const {
  ReaderLock lock(&mu_);
  return max_t_;
}

size_t CellIndex::MemoryBytes() const {
  WriterLock lock(&mu_);
  size_t n = last_t_.capacity() * sizeof(int64_t);
  for (const auto* list : {&first_deal_, &first_invoice_, &next_invoice_}) {
    n += list->capacity() * sizeof(uint32_t);
  }
  for (const Mode& m : modes_) {
    for (const auto& [day, cells] : m.days) {
      n += 48 + cells.capacity() * sizeof(Cell);
      for (const Cell& c : cells) {
        n += c.revenue.capacity() * sizeof(c.revenue[0]) +
             c.time_to_win.capacity() * sizeof(double) +
             (c.rcr_prev.capacity() + c.rcr_second.capacity()) * sizeof(int32_t) +
             c.stages.capacity() * sizeof(StageCount) +
             c.stage_repeats.capacity() * sizeof(StageRepeat);
      }
    }
    for (const auto& [day, cells] : m.instants) {
      n += 48 + cells.capacity() * sizeof(InstCell);
      for (const InstCell& c : cells) n += c.owed.capacity() * sizeof(c.owed[0]);
    }
    n += m.flat.capacity() * sizeof(FlatInstant);
    for (const auto& [day, month] : m.months) {
      n += 48 + month.sums.capacity() * sizeof(MonthSum) +
           month.revenue.capacity() * sizeof(DayRevenue);
      for (const MonthSum& x : month.sums) {
        n += x.acc.revenue.capacity() * sizeof(MoneyLine) +
             x.acc.time_to_win.capacity() * sizeof(double) +
             x.acc.stages.capacity() * sizeof(x.acc.stages[0]);
      }
    }
  }
  return n;
}

}  // namespace rapport::kpi
