// The scan: a partial computed from the fact columns in the period, plus the
// entity timelines for figures at instants (active partners, clients, stuck
// deals, receivables). Definitions follow SPEC §5 line by line; the comments
// name the row they implement.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "lib/kpi/accumulator.h"
#include "lib/kpi/cells.h"
#include "lib/kpi/health.h"
#include "lib/kpi/query.h"
#include "rapport/engine.h"

namespace rapport::kpi {
namespace {

constexpr int64_t kDay = kMicrosPerDay;

// Asks for every cache line of *p: an entity of the store spans two or three
// (a deque of them keeps a few per chunk, which the hardware prefetcher does
// not follow), and the scan's passes over entities wait on memory.
template <typename T>
void PrefetchAll(const T* p) {
  const char* c = reinterpret_cast<const char*>(p);
  for (size_t o = 0; o < sizeof(T); o += 64) __builtin_prefetch(c + o);
  __builtin_prefetch(c + sizeof(T) - 1);
}

// A deal's visits' address, for visiting the deals in memory order.
struct AddrRef {
  uintptr_t addr;
  uint32_t deal;
};

// Sorts `v` by the page of the address (within a page the order does not
// matter to the TLB): a stable LSD radix sort, 11 bits a digit, that skips
// the digits where every address agrees (the high bits of one heap), so a
// heap of a few GB takes two passes.
void SortByAddress(std::vector<AddrRef>* v) {
  const size_t n = v->size();
  if (n < 2) return;
  constexpr uintptr_t kPageBits = 12;
  uintptr_t varies = 0;
  const uintptr_t a0 = (*v)[0].addr;
  for (const AddrRef& r : *v) varies |= r.addr ^ a0;
  varies &= ~((uintptr_t{1} << kPageBits) - 1);
  if (varies == 0) return;
  constexpr int kBits = 11;
  constexpr size_t kRadix = size_t{1} << kBits;
  std::vector<AddrRef> tmp(n);
  AddrRef* src = v->data();
  AddrRef* dst = tmp.data();
  std::vector<size_t> count(kRadix);
  for (int shift = __builtin_ctzll(varies); shift < 64; shift += kBits) {
    if (((varies >> shift) & (kRadix - 1)) == 0) continue;
    std::fill(count.begin(), count.end(), 0);
    for (size_t i = 0; i < n; ++i) ++count[(src[i].addr >> shift) & (kRadix - 1)];
    size_t sum = 0;
    for (size_t& c : count) sum += std::exchange(c, sum);
    for (size_t i = 0; i < n; ++i) dst[count[(src[i].addr >> shift) & (kRadix - 1)]++] = src[i];
    std::swap(src, dst);
  }
  if (src != v->data()) std::copy(src, src + n, v->data());
}

class Scanner {
 public:
  Scanner(const EngineState& s, const Plan& p)
      : s_(s),
        st_(s.kpi),
        p_(p),
        by_(p.query.group_by()),
        as_of_(p.as_of),
        nb_(p.buckets()),
        rows_(static_cast<size_t>(nb_)),
        client_group_(static_cast<uint32_t>(st_.strings.size())),
        partner_group_(client_group_ + 1),
        slot_(st_.strings.size() + 2, -1) {
    if (by_ == v1::GROUP_BY_NONE) {
      for (int b = 0; b < nb_; ++b) At(b, 0).touched = true;
    }
  }

  absl::StatusOr<v1::KpiPartial> Run() {
    // The incremental path: whole UTC days come from the per-day cells
    // (lib/kpi/cells.h); partial days at the edges are scanned. A bucket of
    // whole UTC days takes every per-bucket figure from the cells; other
    // buckets scan the figures whose facts relate within the bucket (orders,
    // completions, stage entries).
    const int64_t churn_after = s_.config.client_churn_after_us();
    const bool cells = !ForceScan() &&
                       st_.cells->ForDays(st_, by_, churn_after, 0, 0, [](int64_t, const Cell&) {});
    // Without cells every fact of the period is scanned: resolve groups and
    // deal states into flat tables once, and walk stage entries by deal.
    bulk_ = !cells;
    // The deal pass fills the deal tables the fact passes read (leads,
    // wins): it comes first. Its counts do not depend on the order in which
    // groups take their slots (Emit sorts the rows by name).
    if (bulk_) {
      BuildTables();
      DealPass();
    }
    cell_lo_.assign(static_cast<size_t>(nb_), 0);
    cell_hi_.assign(static_cast<size_t>(nb_), 0);
    whole_.assign(static_cast<size_t>(nb_), false);
    for (int b = 0; b < nb_; ++b) {
      lo_ = p_.bounds[b];
      hi_ = p_.bounds[b + 1];
      b_ = b;
      const bool whole = cells && lo_ % kDay == 0 && hi_ % kDay == 0;
      whole_[static_cast<size_t>(b)] = whole;
      if (!whole) {
        if (!bulk_) Stages();
        Orders();
        Completions();
      }
      int64_t cs = 0, ce = 0;
      if (cells && WholeDays(lo_, hi_, &cs, &ce)) {
        PlainSums(lo_, cs);
        PlainSums(ce, hi_);
        AddCells(cs, ce, false, whole);
        cell_lo_[static_cast<size_t>(b)] = cs;
        cell_hi_[static_cast<size_t>(b)] = ce;
      } else {
        PlainSums(lo_, hi_);
      }
      // revenue_growth: the previous period of equal length.
      const int64_t plo = std::max<int64_t>(0, lo_ - (hi_ - lo_));
      if (cells && WholeDays(plo, lo_, &cs, &ce)) {
        Payments(plo, cs, true);
        Payments(ce, lo_, true);
        AddCells(cs, ce, true, false);
      } else {
        Payments(plo, lo_, true);
      }
    }
    bool bounds_whole = cells;
    for (int64_t x : p_.bounds) bounds_whole = bounds_whole && x % kDay == 0;
    // stuck_deals and receivables_overdue come from the cells at an as_of
    // after every fact and attribution change (then "at as_of" is "now").
    const bool at_now = cells && as_of_ % kDay == 0 && as_of_ > st_.cells->MaxTime();
    if (cells) {
      UnwinLateWins();
      CloseWindows();
      UnconvertLate();
      if (bounds_whole || at_now) Instants(bounds_whole, at_now);
    }
    // A bulk scan took these in its passes over the accounts and deals.
    if (!bounds_whole && !bulk_) {
      ActivePartners();
      ClientChurn();
    }
    if (!at_now || recv_scan_) {
      if (!at_now && !bulk_) StuckDeals();
      Receivables();
    }
    if (cells) {
      // Cells add without marking: a group is in a bucket's rows when the
      // scan would have counted a fact for it, i.e. when a figure is there.
      for (auto& row : rows_) {
        for (Acc& a : row) a.touched = a.touched || HasFigures(a);
      }
    }
    if (!error_.ok()) return error_;
    return Emit();
  }

 private:
  // ---- groups ------------------------------------------------------------

  static const AttrEntry* AttrAt(const AccountData& a, int64_t t) {
    if (a.attr.empty()) return nullptr;
    if (a.attr.size() == 1) return &a.attr.front();
    auto it = std::upper_bound(a.attr.begin(), a.attr.end(), t,
                               [](int64_t x, const AttrEntry& e) { return x < e.t(); });
    return it == a.attr.begin() ? &a.attr.front() : &*(it - 1);
  }

  // SPEC §5 "Attribution": the account's owner/team/segment at `t`.
  uint32_t GroupOf(uint32_t account, int64_t t) const {
    const AccountData& a = st_.accounts[account];
    switch (by_) {
      case v1::GROUP_BY_MANAGER:
      case v1::GROUP_BY_TEAM:
      case v1::GROUP_BY_SEGMENT: {
        const AttrEntry* e = AttrAt(a, t);
        if (e == nullptr) return 0;
        return by_ == v1::GROUP_BY_MANAGER ? e->owner
               : by_ == v1::GROUP_BY_TEAM  ? e->team
                                           : e->segment;
      }
      case v1::GROUP_BY_SOURCE_PARTNER:
        return a.source_partner;
      case v1::GROUP_BY_ACCOUNT_KIND:
        return a.kind == v1::ACCOUNT_KIND_CLIENT    ? client_group_
               : a.kind == v1::ACCOUNT_KIND_PARTNER ? partner_group_
                                                    : 0;
      default:
        return 0;
    }
  }
  // ---- flat tables (bulk scans) -------------------------------------------

  static constexpr uint32_t kVaries = UINT32_MAX;
  // A customer-since time that marks a partner (whose status decides).
  static constexpr int64_t kPartner = std::numeric_limits<int64_t>::min();

  // Per account: its group when it does not depend on time (kVaries when
  // its attribution changed and the group mode follows attribution), and
  // since when it is a customer for hunter_share (its first order's time,
  // kNever without one, kPartner for a partner). Per deal: its first win
  // and loss, creation time and source partner (filled by DealPass). One
  // pass over the entities replaces a cache miss into them per fact.
  void BuildTables() {
    const size_t na = st_.accounts.size();
    acc_group_.resize(na);
    acc_cust_.resize(na);
    acc_orders_.resize(na);
    acc_outbound_.resize(na);
    acc_feedback_.resize(na);
    acc_referred_.resize(na);
    const bool attr =
        by_ == v1::GROUP_BY_MANAGER || by_ == v1::GROUP_BY_TEAM || by_ == v1::GROUP_BY_SEGMENT;
    const int64_t after = s_.config.client_churn_after_us();
    std::vector<ClientSpan> spans;
    for (uint32_t i = 0; i < na; ++i) {
      // The timelines are separate allocations: ask for them ahead.
      // The deque's blocks are separate allocations too: the entity itself
      // is asked for twice as far ahead.
      if (i + 2 * kAhead < na) PrefetchAll(&st_.accounts[i + 2 * kAhead]);
      if (i + kAhead < na) {
        const AccountData& next = st_.accounts[i + kAhead];
        __builtin_prefetch(next.orders.data());
        __builtin_prefetch(next.attr.data());
        __builtin_prefetch(next.status.data());
      }
      const AccountData& a = st_.accounts[i];
      acc_group_[i] = attr && a.attr.size() > 1 ? kVaries : GroupOf(i, 0);
      acc_orders_[i] = a.orders.data();
      acc_outbound_[i] = a.outbound.data();
      acc_feedback_[i] = a.feedback.data();
      acc_referred_[i] = a.referred;
      acc_cust_[i] = a.kind == v1::ACCOUNT_KIND_PARTNER ? kPartner
                     : a.orders.empty()                 ? kNever
                                                        : a.orders.front().at.t;
      ActivePartner(i, a);
      ClientChurnOf(i, a, after, &spans);
    }
  }

  // How many entities ahead a pass prefetches their timelines.
  static constexpr uint32_t kAhead = 16;
  // How many deals ahead the deal pass asks for their visits (their
  // addresses are in a flat table, so the distance costs no stall).
  static constexpr uint32_t kVisitsAhead = 32;

  // GroupOf through the tables.
  uint32_t Group(uint32_t account, int64_t t) const {
    if (by_ == v1::GROUP_BY_NONE) return 0;
    const uint32_t g = acc_group_[account];
    return g != kVaries ? g : GroupOf(account, t);
  }
  // DealGroup through the tables, for a fact of the deal's account.
  uint32_t DealGroupOf(uint32_t deal, uint32_t account, int64_t t) const {
    return by_ == v1::GROUP_BY_SOURCE_PARTNER ? deal_partner_[deal] : Group(account, t);
  }
  uint32_t AnyGroup(uint32_t account, int64_t t) const {
    return bulk_ ? Group(account, t) : GroupOf(account, t);
  }

  // Deal-level figures: by source partner, the deal's own.
  uint32_t DealGroup(uint32_t deal, int64_t t) const {
    const DealData& d = st_.deals[deal];
    return by_ == v1::GROUP_BY_SOURCE_PARTNER ? d.source_partner : GroupOf(d.account, t);
  }

  int32_t SlotOf(uint32_t group) {
    int32_t& slot = slot_[group];
    if (slot < 0) {
      slot = static_cast<int32_t>(groups_.size());
      groups_.push_back(group);
    }
    return slot;
  }
  // The accumulator without marking the group present (cells; see Run).
  // Inline when the group has its slot in the row (every fact but a
  // group's first in a bucket): the call was 15 % of a scan's instructions.
  Acc& Slot(int b, uint32_t group) {
    const int32_t slot = slot_[group];
    std::vector<Acc>& row = rows_[static_cast<size_t>(b)];
    if (__builtin_expect(slot >= 0 && static_cast<size_t>(slot) < row.size(), 1)) {
      return row[static_cast<size_t>(slot)];
    }
    return NewSlot(row, group);
  }
  __attribute__((noinline)) Acc& NewSlot(std::vector<Acc>& row, uint32_t group) {
    const int32_t slot = SlotOf(group);
    if (row.size() <= static_cast<size_t>(slot)) row.resize(static_cast<size_t>(slot) + 1);
    return row[static_cast<size_t>(slot)];
  }
  Acc& At(int b, uint32_t group) {
    Acc& acc = Slot(b, group);
    acc.touched = true;
    return acc;
  }

  void Overflow(absl::string_view kpi, uint32_t currency) {
    if (error_.ok()) {
      error_ = absl::OutOfRangeError(absl::StrCat("KPI '", kpi, "': the sum in currency '",
                                                  st_.strings.at(currency), "' overflows int64"));
    }
  }

  // ---- the incremental path ----------------------------------------------

  // [*cs, *ce) is the span of whole UTC days in [lo, hi); false if none.
  static bool WholeDays(int64_t lo, int64_t hi, int64_t* cs, int64_t* ce) {
    *cs = (lo + kDay - 1) / kDay * kDay;
    *ce = hi / kDay * kDay;
    return *cs < *ce;
  }

  // The figures the cells hold, by scan over [from, to) of the bucket.
  void PlainSums(int64_t from, int64_t to) {
    Leads(from, to);
    Wins(from, to);
    Partners(from, to);
    Payments(from, to, false);
    Activities(from, to);
    Feedback(from, to);
  }

  uint32_t CellGroup(uint32_t g) const {
    return g == kClientGroupId ? client_group_ : g == kPartnerGroupId ? partner_group_ : g;
  }

  // Adds the cells of the days in [cs, ce) to bucket b_: every figure, or
  // only revenue as the previous period's. `whole`: [cs, ce) is the bucket,
  // whose order, completion and stage figures come from the cells too.
  void AddCells(int64_t cs, int64_t ce, bool previous, bool whole) {
    if (whole && !previous && MonthCells(cs, ce)) return;
    const size_t stages =
        static_cast<size_t>(st_.stage_offset.empty() ? 0 : st_.stage_offset.back());
    st_.cells->ForDays(st_, by_, s_.config.client_churn_after_us(), cs / kDay, ce / kDay,
                       [&](int64_t, const Cell& cell) {
                         if (previous && cell.revenue.empty()) return;
                         Acc& a = Slot(b_, CellGroup(cell.group));
                         if (previous) {
                           for (const auto& [currency, amount] : cell.revenue) {
                             if (!Acc::AddMoney(a.revenue, currency, amount, true)) {
                               Overflow("revenue_growth", currency);
                             }
                           }
                           return;
                         }
                         const uint32_t bad =
                             AddCellTo(cell, cs / kDay, ce / kDay, whole, stages, a);
                         if (bad != UINT32_MAX) Overflow("revenue", bad);
                       });
  }

  // A bucket that is one whole UTC month takes the month's sums, kept by the
  // cells between queries. False when it is not one or they are unusable.
  bool MonthCells(int64_t cs, int64_t ce) {
    const absl::CivilDay day = absl::CivilDay(1970, 1, 1) + cs / kDay;
    if (day.day() != 1) return false;
    const absl::CivilDay next(absl::CivilMonth(day) + 1);
    if (next - absl::CivilDay(1970, 1, 1) != ce / kDay) return false;
    // Nothing else is in the bucket's accumulators yet: sums fail whole.
    return st_.cells->ForMonth(st_, by_, s_.config.client_churn_after_us(), cs / kDay,
                               [&](uint32_t group, const Acc& sum) {
                                 uint32_t currency = 0;
                                 if (!AddAcc(sum, Slot(b_, CellGroup(group)), &currency)) {
                                   Overflow("revenue", currency);
                                 }
                               });
  }

  // The whole-day bucket holding `t`, or -1.
  int WholeBucket(int64_t t) const {
    if (t < p_.bounds.front() || t >= p_.bounds.back()) return -1;
    const int b = static_cast<int>(std::upper_bound(p_.bounds.begin(), p_.bounds.end(), t) -
                                   p_.bounds.begin()) -
                  1;
    return whole_[static_cast<size_t>(b)] ? b : -1;
  }

  // The cells count every order and completion in post_purchase_contact_rate
  // and feedback_coverage; those whose window has not closed by as_of are
  // taken back out.
  void CloseWindows() {
    const int64_t first = p_.bounds.front(), last = p_.bounds.back();
    if (as_of_ % kDay == 0) {
      // The windows open at as_of are those of whole days' cells.
      const int64_t from_day = std::max(first, as_of_ - 30 * kDay) / kDay,
                    ppc_day = (as_of_ - 7 * kDay) / kDay;
      st_.cells->ForDays(st_, by_, s_.config.client_churn_after_us(), from_day,
                         (last + kDay - 1) / kDay, [&](int64_t day, const Cell& cell) {
                           const int b = WholeBucket(day * kDay);
                           if (b < 0 || day * kDay < first) return;
                           TakeOutOpenWindows(cell, day, ppc_day, Slot(b, CellGroup(cell.group)));
                         });
      return;
    }
    st_.column(FactKind::kOrderPlaced)
        .ForRange(std::max(first, as_of_ - 7 * kDay), last, [&](int64_t t, const Fact& f) {
          const int b = WholeBucket(t);
          if (b < 0) return;
          Acc& a = Slot(b, GroupOf(f.account, t));
          --a.c[kPpcDen];
          const auto& ob = st_.accounts[f.account].outbound;
          auto o = std::upper_bound(ob.begin(), ob.end(), t);
          if (o != ob.end() && *o <= t + 7 * kDay) --a.c[kPpcNum];
        });
    st_.column(FactKind::kOrderCompleted)
        .ForRange(std::max(first, as_of_ - 30 * kDay), last, [&](int64_t t, const Fact& f) {
          const int b = WholeBucket(t);
          if (b < 0) return;
          Acc& a = Slot(b, GroupOf(f.account, t));
          --a.c[kFbDen];
          const auto& fb = st_.accounts[f.account].feedback;
          auto it = std::upper_bound(fb.begin(), fb.end(), t,
                                     [](int64_t x, const FeedbackRef& r) { return x < r.t; });
          if (it != fb.end() && it->t <= t + 30 * kDay) --a.c[kFbNum];
        });
  }

  // The cells count a stage entry as converted if a later stage was ever
  // entered after it; an entry whose first such later stage is at or after
  // as_of is taken back out (found from the entries at or after as_of).
  //
  // Entries with equal stamps (only a damaged snapshot has them) convert
  // together: the group is taken once, at the highest of its stages.
  void UnconvertLate() {
    absl::flat_hash_set<std::pair<uint32_t, int64_t>> groups_done;
    st_.column(FactKind::kStageEntry).ForRange(as_of_, kNever, [&](int64_t t, const Fact& f) {
      const DealData& d = st_.deals[f.subject];
      const auto& vs = d.visits;
      int32_t to = static_cast<int32_t>(f.aux);
      const Stamp me{t, f.value};
      size_t pos = static_cast<size_t>(
          std::lower_bound(vs.begin(), vs.end(), me,
                           [](const Visit& v, const Stamp& x) { return v.at() < x; }) -
          vs.begin());
      if (pos + 1 < vs.size() && vs[pos + 1].at() == me) {
        if (!groups_done.insert({f.subject, f.value}).second) return;
        for (size_t k = pos; k < vs.size() && vs[k].at() == me; ++k)
          to = std::max(to, vs[k].stage());
      }
      int32_t between = -1;  // the highest stage entered between an entry and this one
      for (size_t k = pos; k-- > 0;) {
        const Visit& e = vs[k];
        if (e.stage() < to && between <= e.stage()) Unconvert(f.subject, k);
        between = std::max(between, e.stage());
        if (between >= to) break;
      }
    });
  }

  void Unconvert(uint32_t deal, size_t k) {
    const DealData& d = st_.deals[deal];
    const Visit& e = d.visits[k];
    const int b = WholeBucket(e.t());
    if (b < 0) return;
    for (size_t j = k; j-- > 0;) {
      if (d.visits[j].at().t < p_.bounds[b]) break;
      if (d.visits[j].at() == e.at()) continue;      // neither before nor after (as Stages)
      if (d.visits[j].stage() == e.stage()) return;  // not the first in the bucket
    }
    Acc& a = Slot(b, DealGroup(deal, e.t()));
    const size_t flat =
        static_cast<size_t>(st_.stage_offset[static_cast<size_t>(d.pipeline)] + e.stage());
    if (a.stages.size() <= flat) a.stages.resize(static_cast<size_t>(st_.stage_offset.back()));
    --a.stages[flat].second;
  }

  // partners_active and client_churn_rate (bounds on UTC days), and
  // stuck_deals and receivables_overdue (at_now), from the instant cells.
  void Instants(bool bounds_whole, bool at_now) {
    std::vector<int64_t> bday;
    for (int64_t x : p_.bounds) bday.push_back(x / kDay);
    const int64_t as_of_day = as_of_ / kDay;
    std::vector<int64_t> partners, clients, stuck, overdue;
    std::vector<std::vector<std::pair<uint32_t, __int128>>> owed;
    auto grow = [&](size_t n) {
      if (partners.size() >= n) return;
      partners.resize(n);
      clients.resize(n);
      stuck.resize(n);
      overdue.resize(n);
      owed.resize(n);
    };
    size_t k = 0;
    // The counts at bound k: the changes of the days up to its day.
    auto snapshot = [&](size_t k) {
      for (size_t slot = 0; slot < partners.size(); ++slot) {
        const uint32_t g = groups_[slot];
        if (partners[slot] != 0) {
          if (k < static_cast<size_t>(nb_))
            Slot(static_cast<int>(k), g).c[kPartnersActiveStart] += partners[slot];
          if (k > 0) Slot(static_cast<int>(k) - 1, g).c[kPartnersActiveEnd] += partners[slot];
        }
        if (clients[slot] != 0 && k < static_cast<size_t>(nb_)) {
          Slot(static_cast<int>(k), g).c[kChurnDen] += clients[slot];
        }
      }
    };
    st_.cells->ForInstants(by_, [&](int64_t day, const InstCell& cell) {
      const uint32_t g = CellGroup(cell.group);
      const size_t slot = static_cast<size_t>(SlotOf(g));
      grow(slot + 1);
      if (bounds_whole) {
        while (k < bday.size() && bday[k] < day) snapshot(k++);
        partners[slot] += cell.partners;
        clients[slot] += cell.clients;
        if (cell.churned != 0 && day >= bday.front() && day < bday.back()) {
          const int b =
              static_cast<int>(std::upper_bound(bday.begin(), bday.end(), day) - bday.begin()) - 1;
          Slot(b, g).c[kChurnNum] += cell.churned;
        }
      }
      if (at_now && day < as_of_day) {
        stuck[slot] += cell.stuck;
        overdue[slot] += cell.overdue;
        for (const auto& [currency, amount] : cell.owed) {
          std::pair<uint32_t, __int128>* line = nullptr;
          for (auto& l : owed[slot]) {
            if (l.first == currency) line = &l;
          }
          if (line == nullptr) line = &owed[slot].emplace_back(currency, 0);
          line->second += amount;
        }
      }
    });
    if (bounds_whole) {
      while (k < bday.size()) snapshot(k++);
    }
    if (!at_now) return;
    // An owed sum beyond int64 is the scan's error to report.
    for (const auto& lines : owed) {
      for (const auto& l : lines) {
        if (l.second > std::numeric_limits<int64_t>::max()) recv_scan_ = true;
      }
    }
    for (size_t slot = 0; slot < stuck.size(); ++slot) {
      if (stuck[slot] == 0 && (recv_scan_ || overdue[slot] == 0)) continue;
      for (int b = 0; b < nb_; ++b) {
        Acc& a = Slot(b, groups_[slot]);
        a.c[kStuck] += stuck[slot];
        if (recv_scan_ || overdue[slot] == 0) continue;
        a.c[kReceivables] += overdue[slot];
        for (const auto& [currency, amount] : owed[slot]) {
          if (amount != 0)
            Acc::AddMoney(a.receivables, currency, static_cast<int64_t>(amount), false);
        }
      }
    }
  }

  // The cells count a lead as won if its deal is ever won; lead_conversion
  // wants a win before as_of, so leads from cells whose deal's first win is
  // at or after as_of are taken back out.
  void UnwinLateWins() {
    const int64_t first = p_.bounds.front(), last = p_.bounds.back();
    st_.column(FactKind::kWon).ForRange(as_of_, kNever, [&](int64_t t, const Fact& f) {
      const DealData& d = st_.deals[f.subject];
      if (!(d.won == Stamp{t, f.value})) return;
      const int64_t lt = d.created_at;
      if (lt < first || lt >= last) return;
      const size_t b = static_cast<size_t>(
          std::upper_bound(p_.bounds.begin(), p_.bounds.end(), lt) - p_.bounds.begin() - 1);
      if (lt < cell_lo_[b] || lt >= cell_hi_[b]) return;
      --At(static_cast<int>(b), DealGroup(f.subject, lt)).c[kLeadsWon];
    });
  }

  // ---- facts in the bucket -----------------------------------------------

  // leads; lead_conversion: of the leads, won before as_of.
  void Leads(int64_t from, int64_t to) {
    if (bulk_) {
      st_.column(FactKind::kLead)
          .ForSpans(from, to, [&](const FactColumn::Block& blk, int i0, int i1) {
            for (int i = i0; i < i1; ++i) {
              const uint32_t deal = blk.subject[i];
              Acc& a = At(b_, DealGroupOf(deal, deal_account_[deal], blk.t[i]));
              ++a.c[kLeads];
              a.c[kLeadsWon] += deal_won_[deal].t < as_of_;
            }
          });
      return;
    }
    st_.column(FactKind::kLead).ForRange(from, to, [&](int64_t t, const Fact& f) {
      Acc& a = At(b_, DealGroup(f.subject, t));
      ++a.c[kLeads];
      if (st_.deals[f.subject].won.t < as_of_) ++a.c[kLeadsWon];
    });
  }

  // stage_conversion: a deal counts once per bucket and stage, at its first
  // entry in the bucket; converted when it entered a later stage after that
  // entry and before as_of.
  void Stages() {
    st_.column(FactKind::kStageEntry).ForRange(lo_, hi_, [&](int64_t t, const Fact& f) {
      const DealData& d = st_.deals[f.subject];
      const Stamp me{t, f.value};
      const int32_t stage = static_cast<int32_t>(f.aux);
      // Visits are sorted by stamp: look back only within the bucket, and
      // forward only to the first later stage (a deal's whole history would
      // make this quadratic in its visits).
      const auto& vs = d.visits;
      const auto pos = std::lower_bound(vs.begin(), vs.end(), me,
                                        [](const Visit& v, const Stamp& x) { return v.at() < x; });
      for (auto it = pos; it != vs.begin();) {
        --it;
        if (it->t() < lo_) break;
        if (it->stage() == stage) return;  // not the first in the bucket
      }
      bool converted = false;
      for (auto it = pos; it != vs.end() && it->t() < as_of_; ++it) {
        if (it->stage() > stage && me < it->at()) {
          converted = true;
          break;
        }
      }
      Acc& a = At(b_, DealGroup(f.subject, t));
      const size_t flat =
          static_cast<size_t>(st_.stage_offset[static_cast<size_t>(d.pipeline)] + stage);
      if (a.stages.size() <= flat) a.stages.resize(static_cast<size_t>(st_.stage_offset.back()));
      ++a.stages[flat].first;
      if (converted) ++a.stages[flat].second;
    });
  }

  // Stages for every bucket at once, deal by deal: the same counts, but each
  // deal's visits are read once, in order, instead of searched per entry.
  // Per visit, `later` is the highest stage entered after it and before
  // as_of (-1: none); an entry is the first of its stage in its bucket when
  // the deal's previous entry of that stage is before the bucket. Visits
  // with equal stamps (only a damaged snapshot has them) see each other as
  // Stages does: neither before nor after.
  // With stuck_deals (as StuckDeals) and the deal tables (BuildTables) in
  // the same pass over the deals.
  void DealPass() {
    const int64_t first = p_.bounds.front(), last = p_.bounds.back();
    std::vector<int32_t> later;
    std::vector<int64_t> prev;  // by stage: the time of the deal's last entry of it
    const uint32_t nd = static_cast<uint32_t>(st_.deals.size());
    // `prev` is sized once for the longest pipeline and refilled per deal
    // (an assign per deal was 7 % of the pass's instructions).
    size_t max_stages = 0;
    for (size_t p = 0; p + 1 < st_.stage_offset.size(); ++p) {
      max_stages =
          std::max(max_stages, static_cast<size_t>(st_.stage_offset[p + 1] - st_.stage_offset[p]));
    }
    prev.resize(max_stages);
    const int64_t* bounds = p_.bounds.data();
    // (No stage numbering before the first event: then no deal either.)
    const size_t all_stages =
        st_.stage_offset.empty() ? 0 : static_cast<size_t>(st_.stage_offset.back());
    deal_won_.resize(nd);
    deal_lost_.resize(nd);
    deal_account_.resize(nd);
    deal_created_.resize(nd);
    deal_partner_.resize(nd);
    // Two passes. The first copies what the scan reads of each deal into
    // flat tables, in the deque's order (sequential reads the hardware
    // prefetches); the second reads the visits, each a separate allocation,
    // asking for them far ahead from the flat table of their addresses.
    // One pass did both, and the visits' prefetch had to wait for the
    // deal's own cache line first: it stalled there (64 % of the pass's
    // cycles at 10 M events in `perf record`).
    std::vector<const Visit*> visits(nd);
    std::vector<int32_t> pipeline(nd);
    // The deque keeps 8 deals per 512-byte chunk, each chunk an allocation
    // of its own that the hardware prefetcher does not follow: ask for the
    // deals ahead (a fifth of the pass's samples waited on them at 10 M).
    for (uint32_t i = 0; i < nd; ++i) {
      if (i + kAhead < nd) PrefetchAll(&st_.deals[i + kAhead]);
      const DealData& d = st_.deals[i];
      deal_won_[i] = d.won;
      deal_lost_[i] = d.lost;
      deal_account_[i] = d.account;
      deal_created_[i] = d.created_at;
      deal_partner_[i] = d.source_partner;
      visits[i] = d.visits.data();
      pipeline[i] = d.pipeline;
    }
    // The second pass takes the deals in the order of their visits'
    // addresses, not of the deals: each deal's visits are an allocation of
    // their own, placed by when ingest last grew them, all over a heap of GB
    // (3.4 GB at 10 M events). In deal order nearly every deal's visits were
    // on a page of their own, a TLB miss and a page walk whose tables were
    // not cached either; in address order the pages come one after another.
    // The pass's counts are sums, so the order changes none of them (and
    // Emit sorts the groups). The deals' flat tables are read out of order
    // instead: small, and asked for ahead with the visits.
    std::vector<AddrRef> order;
    order.reserve(nd);
    for (uint32_t i = 0; i < nd; ++i) {
      if (visits[i] != nullptr) order.push_back({reinterpret_cast<uintptr_t>(visits[i]), i});
    }
    SortByAddress(&order);
    const size_t no = order.size();
    for (size_t o = 0; o < no; ++o) {
      if (o + kVisitsAhead < no) {
        // The timeline's size is in front of its items.
        const AddrRef& next = order[o + kVisitsAhead];
        const char* c = reinterpret_cast<const char*>(next.addr);
        __builtin_prefetch(c - sizeof(uint64_t));
        __builtin_prefetch(c + 64 - sizeof(uint64_t));
        __builtin_prefetch(&deal_lost_[next.deal]);
        __builtin_prefetch(&deal_account_[next.deal]);
        __builtin_prefetch(&pipeline[next.deal]);
      }
      if (o + kVisitsAhead / 2 < no) {
        __builtin_prefetch(&acc_group_[deal_account_[order[o + kVisitsAhead / 2].deal]]);
      }
      const uint32_t i = order[o].deal;
      const Visit* const v = reinterpret_cast<const Visit*>(order[o].addr);
      const size_t n = Timeline<Visit>::SizeOf(v);
      const uint32_t account = deal_account_[i];
      const int32_t pl = pipeline[i];
      if (StuckAt(deal_lost_[i].t, v, n, pl)) CountStuck(DealGroupOf(i, account, as_of_));
      if (n == 0 || v[n - 1].t() < first || v[0].t() >= last) continue;
      // Locals for everything the loops read: the accumulators' stores
      // could alias members and the deal, and made the compiler reload the
      // visits' pointer and the bounds at every visit.
      const int64_t as_of = as_of_;
      if (later.size() < n) later.resize(n);
      int32_t* lat = later.data();
      // A deal's visits have distinct stamps (but in a damaged snapshot):
      // then each visit is a group of its own and the loops need no
      // grouping. The plain pass finds out whether they are.
      bool distinct = true;
      int32_t best = -1;
      for (size_t k = n; k-- > 0;) {
        const bool before = v[k].t() < as_of;
        lat[k] = before ? best : -1;
        if (before) best = std::max(best, v[k].stage());
        if (k > 0 && v[k - 1].at() == v[k].at()) distinct = false;
      }
      best = -1;
      for (size_t r1 = distinct ? 0 : n; r1 > 0;) {
        size_t r0 = r1 - 1;
        const Stamp at = v[r0].at();
        while (r0 > 0 && v[r0 - 1].at() == at) --r0;
        if (at.t < as_of) {
          for (size_t k = r0; k < r1; ++k) lat[k] = best;
          for (size_t k = r0; k < r1; ++k) best = std::max(best, v[k].stage());
        } else {
          for (size_t k = r0; k < r1; ++k) lat[k] = -1;
        }
        r1 = r0;
      }
      const size_t offset = static_cast<size_t>(st_.stage_offset[static_cast<size_t>(pl)]);
      const size_t stages =
          static_cast<size_t>(st_.stage_offset[static_cast<size_t>(pl) + 1]) - offset;
      int64_t* pv = prev.data();
      std::fill_n(pv, stages, std::numeric_limits<int64_t>::min());
      // The deal's group is the same at every visit unless its account's
      // attribution changed (and the grouping follows it): then one
      // accumulator per bucket serves all its visits there, and no other
      // group is added to a row meanwhile, so the pointer stays valid.
      const bool fixed = by_ == v1::GROUP_BY_NONE || by_ == v1::GROUP_BY_SOURCE_PARTNER ||
                         acc_group_[account] != kVaries;
      const uint32_t fixed_group = fixed ? DealGroupOf(i, account, 0) : 0;
      Acc* cached = nullptr;
      size_t cached_b = SIZE_MAX;
      size_t b = 0;
      // The visit's count in bucket b (its first entry of the stage there).
      auto count = [&](size_t k, int32_t stage, int64_t t) {
        if (!fixed) {
          cached = &At(static_cast<int>(b), DealGroupOf(i, account, t));
        } else if (cached_b != b) {
          cached = &At(static_cast<int>(b), fixed_group);
          cached_b = b;
        }
        std::vector<std::pair<int64_t, int64_t>>& sc = cached->stages;
        const size_t flat = offset + static_cast<size_t>(stage);
        if (sc.size() <= flat) sc.resize(all_stages);
        ++sc[flat].first;
        if (lat[k] > stage) ++sc[flat].second;
      };
      if (distinct) {
        for (size_t k = 0; k < n; ++k) {
          const int64_t t = v[k].t();
          if (t >= last) break;
          const int32_t stage = v[k].stage();
          if (t >= first) {
            while (bounds[b + 1] <= t) ++b;
            if (pv[stage] < bounds[b]) count(k, stage, t);  // the first in the bucket
          }
          pv[stage] = t;
        }
        continue;
      }
      for (size_t r0 = 0; r0 < n;) {
        const Stamp at = v[r0].at();
        size_t r1 = r0 + 1;
        while (r1 < n && v[r1].at() == at) ++r1;
        const int64_t t = at.t;
        if (t >= last) break;
        if (t >= first) {
          while (bounds[b + 1] <= t) ++b;
          const int64_t lo = bounds[b];
          for (size_t k = r0; k < r1; ++k) {
            const int32_t stage = v[k].stage();
            if (pv[stage] < lo) count(k, stage, t);  // the first in the bucket
          }
        }
        for (size_t k = r0; k < r1; ++k) pv[v[k].stage()] = t;
        r0 = r1;
      }
    }
  }

  // win_rate and time_to_win: each deal at its first win and its first loss.
  void Wins(int64_t from, int64_t to) {
    if (bulk_) {
      st_.column(FactKind::kWon)
          .ForSpans(from, to, [&](const FactColumn::Block& blk, int i0, int i1) {
            for (int i = i0; i < i1; ++i) {
              const uint32_t deal = blk.subject[i];
              const int64_t t = blk.t[i];
              if (!(deal_won_[deal] == Stamp{t, blk.value[i]})) continue;
              Acc& a = At(b_, DealGroupOf(deal, deal_account_[deal], t));
              ++a.c[kWon];
              a.time_to_win.push_back(static_cast<double>(t - deal_created_[deal]) /
                                      static_cast<double>(kDay));
            }
          });
      st_.column(FactKind::kLost)
          .ForSpans(from, to, [&](const FactColumn::Block& blk, int i0, int i1) {
            for (int i = i0; i < i1; ++i) {
              const uint32_t deal = blk.subject[i];
              const int64_t t = blk.t[i];
              if (!(deal_lost_[deal] == Stamp{t, blk.value[i]})) continue;
              ++At(b_, DealGroupOf(deal, deal_account_[deal], t)).c[kLost];
            }
          });
      return;
    }
    st_.column(FactKind::kWon).ForRange(from, to, [&](int64_t t, const Fact& f) {
      const DealData& d = st_.deals[f.subject];
      if (!(d.won == Stamp{t, f.value})) return;
      Acc& a = At(b_, DealGroup(f.subject, t));
      ++a.c[kWon];
      a.time_to_win.push_back(static_cast<double>(t - d.created_at) / static_cast<double>(kDay));
    });
    st_.column(FactKind::kLost).ForRange(from, to, [&](int64_t t, const Fact& f) {
      const DealData& d = st_.deals[f.subject];
      if (!(d.lost == Stamp{t, f.value})) return;
      ++At(b_, DealGroup(f.subject, t)).c[kLost];
    });
  }

  // partners_new, partners_churned: the events in the period.
  void Partners(int64_t from, int64_t to) {
    st_.column(FactKind::kPartnerAgreed).ForRange(from, to, [&](int64_t t, const Fact& f) {
      ++At(b_, AnyGroup(f.account, t)).c[kPartnersNew];
    });
    st_.column(FactKind::kPartnerChurned).ForRange(from, to, [&](int64_t t, const Fact& f) {
      ++At(b_, AnyGroup(f.account, t)).c[kPartnersChurned];
    });
  }

  // clients_new, referral_rate, repeat_order_share, repeat_customer_rate,
  // post_purchase_contact_rate.
  void Orders() {
    if (bulk_) {
      st_.column(FactKind::kOrderPlaced)
          .ForSpans(lo_, hi_, [&](const FactColumn::Block& blk, int i0, int i1) {
            for (int i = i0; i < i1; ++i) {
              // Each order reads its account's entries of the flat tables
              // and the timelines they point at: ask for the entries two
              // steps ahead, the timelines (their size in front) one step.
              if (i + 2 * static_cast<int>(kAhead) < i1) {
                const int j = i + 2 * static_cast<int>(kAhead);
                const uint32_t account = blk.account[j];
                __builtin_prefetch(&acc_orders_[account]);
                __builtin_prefetch(&acc_outbound_[account]);
                __builtin_prefetch(&acc_group_[account]);
                __builtin_prefetch(&st_.orders[blk.subject[j]]);
              }
              if (i + static_cast<int>(kAhead) < i1) {
                const uint32_t account = blk.account[i + kAhead];
                PrefetchItems(acc_orders_[account]);
                PrefetchItems(acc_outbound_[account]);
              }
              const uint32_t account = blk.account[i];
              const OrderRef* const ob = acc_orders_[account];
              const int64_t* const out = acc_outbound_[account];
              Order(blk.t[i], account, blk.subject[i], ob, Items(ob), out, Items(out),
                    acc_referred_[account] != 0);
            }
          });
      return;
    }
    st_.column(FactKind::kOrderPlaced)
        .ForSpans(lo_, hi_, [&](const FactColumn::Block& blk, int i0, int i1) {
          for (int i = i0; i < i1; ++i) {
            // Each order reads its account and the account's timelines: ask
            // for the account two steps ahead, its timelines one step.
            if (i + 2 * static_cast<int>(kAhead) < i1) {
              const int j = i + 2 * static_cast<int>(kAhead);
              PrefetchAll(&st_.accounts[blk.account[j]]);
              __builtin_prefetch(&st_.orders[blk.subject[j]]);
            }
            if (i + static_cast<int>(kAhead) < i1) {
              const AccountData& next = st_.accounts[blk.account[i + kAhead]];
              __builtin_prefetch(next.orders.data());
              __builtin_prefetch(next.outbound.data());
            }
            const AccountData& acc = st_.accounts[blk.account[i]];
            Order(blk.t[i], blk.account[i], blk.subject[i], acc.orders.data(), acc.orders.size(),
                  acc.outbound.data(), acc.outbound.size(), acc.referred);
          }
        });
  }
  // The count of a timeline's items from its data() (null: none).
  template <typename T>
  static size_t Items(const T* items) {
    return items == nullptr ? 0 : Timeline<T>::SizeOf(items);
  }
  // Asks for a timeline's first items and its size in front of them.
  template <typename T>
  static void PrefetchItems(const T* items) {
    if (items == nullptr) return;
    const char* c = reinterpret_cast<const char*>(items);
    __builtin_prefetch(c - sizeof(uint64_t));
    __builtin_prefetch(c + 64 - sizeof(uint64_t));
  }
  // The order's figures; [ob, ob + on) are its account's orders, [out, out +
  // outn) its outbound contacts.
  void Order(int64_t t, uint32_t account, uint32_t order, const OrderRef* ob, size_t on,
             const int64_t* out, size_t outn, bool referred) {
    Acc& a = At(b_, AnyGroup(account, t));
    ++a.c[kOrders];
    const Stamp me = st_.orders[order].placed;
    if (on > 0 && ob[0].order == order) {
      ++a.c[kClientsNew];
      if (referred) ++a.c[kReferred];
    } else {
      ++a.c[kRepeatOrders];
    }
    // The account's first order in the bucket stands for the account.
    const OrderRef* it = std::lower_bound(
        ob, ob + on, me, [](const OrderRef& o, const Stamp& x) { return o.at < x; });
    if (it == ob || (it - 1)->at.t < lo_) {
      ++a.c[kRcrDen];
      if (on >= 2 && ob[1].at.t < hi_) ++a.c[kRcrNum];
    }
    if (t + 7 * kDay < as_of_) {
      ++a.c[kPpcDen];
      const int64_t* o = std::upper_bound(out, out + outn, t);
      if (o != out + outn && *o <= t + 7 * kDay) ++a.c[kPpcNum];
    }
  }

  // feedback_coverage.
  void Completions() {
    st_.column(FactKind::kOrderCompleted)
        .ForSpans(lo_, hi_, [&](const FactColumn::Block& blk, int i0, int i1) {
          for (int i = i0; i < i1; ++i) {
            // As Orders: the account (or its flat table entry) two steps
            // ahead, its feedback one.
            if (i + 2 * static_cast<int>(kAhead) < i1) {
              const uint32_t account = blk.account[i + 2 * kAhead];
              if (bulk_) {
                __builtin_prefetch(&acc_feedback_[account]);
              } else {
                PrefetchAll(&st_.accounts[account]);
              }
            }
            if (i + static_cast<int>(kAhead) < i1) {
              const uint32_t account = blk.account[i + kAhead];
              PrefetchItems(bulk_ ? acc_feedback_[account] : st_.accounts[account].feedback.data());
            }
            const int64_t t = blk.t[i];
            if (!(t + 30 * kDay < as_of_)) continue;
            const uint32_t account = blk.account[i];
            Acc& a = At(b_, AnyGroup(account, t));
            ++a.c[kFbDen];
            const FeedbackRef* const fb =
                bulk_ ? acc_feedback_[account] : st_.accounts[account].feedback.data();
            const FeedbackRef* const fe = fb + Items(fb);
            const FeedbackRef* it = std::upper_bound(
                fb, fe, t, [](int64_t x, const FeedbackRef& r) { return x < r.t; });
            if (it != fe && it->t <= t + 30 * kDay) ++a.c[kFbNum];
          }
        });
  }

  // revenue, and the previous period of equal length for revenue_growth.
  void Payments(int64_t from, int64_t to, bool previous) {
    st_.column(FactKind::kPayment)
        .ForSpans(from, to, [&](const FactColumn::Block& blk, int i0, int i1) {
          WithAux(blk, [&](auto aux) {
            for (int i = i0; i < i1; ++i) {
              const uint32_t currency = aux[i];
              if (!Acc::AddMoney(At(b_, AnyGroup(blk.account[i], blk.t[i])).revenue, currency,
                                 blk.value[i], previous)) {
                Overflow(previous ? "revenue_growth" : "revenue", currency);
              }
            }
          });
        });
  }

  // Calls fn(aux) with the block's aux array, 8 or 32 bits wide (see
  // FactColumn): the width is decided once per block, not per fact by
  // Block::Aux.
  template <typename Fn>
  static void WithAux(const FactColumn::Block& blk, Fn&& fn) {
    if (blk.aux8 != nullptr) {
      fn(blk.aux8);
    } else {
      fn(blk.aux);
    }
  }

  // activities; hunter_share: outbound contacts with accounts that were not
  // customers at that moment (a partner not active, a client with no order).
  void Activities(int64_t from, int64_t to) {
    if (bulk_) {
      const bool by_maker = by_ == v1::GROUP_BY_MANAGER;
      st_.column(FactKind::kActivity)
          .ForSpans(from, to, [&](const FactColumn::Block& blk, int i0, int i1) {
            WithAux(blk, [&](auto aux) {
              for (int i = i0; i < i1; ++i) {
                const uint32_t account = blk.account[i], code = aux[i];
                const int64_t t = blk.t[i];
                Acc& a = At(b_, by_maker ? blk.subject[i] : Group(account, t));
                ++a.c[kActivity0 + code];
                if (ActivityInbound(code)) continue;
                ++a.c[kHunterDen];
                const int64_t since = acc_cust_[account];
                const bool customer =
                    since == kPartner ? PartnerActiveAt(st_.accounts[account], t) : since < t;
                a.c[kHunterNum] += !customer;
              }
            });
          });
      return;
    }
    st_.column(FactKind::kActivity).ForRange(from, to, [&](int64_t t, const Fact& f) {
      Acc& a = At(b_, by_ == v1::GROUP_BY_MANAGER ? f.subject : GroupOf(f.account, t));
      ++a.c[kActivity0 + f.aux];
      if (ActivityInbound(f.aux)) return;
      ++a.c[kHunterDen];
      const AccountData& acc = st_.accounts[f.account];
      bool customer;
      if (acc.kind == v1::ACCOUNT_KIND_PARTNER) {
        customer = PartnerActiveAt(acc, t);
      } else {
        customer = !acc.orders.empty() && acc.orders.front().at.t < t;
      }
      if (!customer) ++a.c[kHunterNum];
    });
  }

  // nps.
  void Feedback(int64_t from, int64_t to) {
    st_.column(FactKind::kFeedback)
        .ForSpans(from, to, [&](const FactColumn::Block& blk, int i0, int i1) {
          for (int i = i0; i < i1; ++i) {
            Acc& a = At(b_, AnyGroup(blk.account[i], blk.t[i]));
            const int64_t score = blk.value[i];
            ++a.c[kNpsResponses];
            a.c[kNpsPromoters] += score >= 9;
            a.c[kNpsDetractors] += score <= 6;
          }
        });
  }

  // ---- figures at instants ---------------------------------------------

  // The last agreed/churned event before `x` is "agreed" (ties: the later
  // arrival, which sorts last).
  static bool PartnerActiveAt(const AccountData& a, int64_t x) {
    auto it = std::lower_bound(a.status.begin(), a.status.end(), x,
                               [](const StatusEvent& e, int64_t v) { return e.at.t < v; });
    return it != a.status.begin() && (it - 1)->agreed;
  }

  // partners_active at each bucket's start and end.
  void ActivePartners() {
    for (uint32_t i = 0; i < st_.accounts.size(); ++i) ActivePartner(i, st_.accounts[i]);
  }
  // A bucket's end is the next one's start: each bound is looked at once,
  // and the bounds and the status events are both in time order, so one
  // walk through the events finds the last one before each bound (as
  // PartnerActiveAt: the events before x are those with t < x).
  void ActivePartner(uint32_t i, const AccountData& a) {
    if (a.kind != v1::ACCOUNT_KIND_PARTNER || a.status.empty()) return;
    const StatusEvent* const first = a.status.begin();
    const StatusEvent* const end = a.status.end();
    const StatusEvent* it = first;
    for (int k = 0; k <= nb_; ++k) {
      const int64_t x = p_.bounds[static_cast<size_t>(k)];
      while (it != end && it->at.t < x) ++it;
      if (it == first || !(it - 1)->agreed) continue;
      const uint32_t g = AnyGroup(i, x);
      if (k < nb_) ++At(k, g).c[kPartnersActiveStart];
      if (k > 0) ++At(k - 1, g).c[kPartnersActiveEnd];
    }
  }

  // client_churn_rate. A client is a client from its first order (after a
  // churn: its next order) until it churns: by an account-churned event, or
  // when the configured time passes with no order (an order exactly at the
  // deadline keeps it). It is a client at x when it became one before x and
  // had not churned before x.
  void ClientChurn() {
    const int64_t after = s_.config.client_churn_after_us();
    std::vector<ClientSpan> spans;
    for (uint32_t i = 0; i < st_.accounts.size(); ++i)
      ClientChurnOf(i, st_.accounts[i], after, &spans);
  }
  void ClientChurnOf(uint32_t i, const AccountData& a, int64_t after,
                     std::vector<ClientSpan>* spans) {
    if (a.kind == v1::ACCOUNT_KIND_PARTNER || a.orders.empty()) return;
    const int64_t first = p_.bounds.front(), last = p_.bounds.back();
    ClientSpans(a, after, spans);
    for (const ClientSpan& sp : *spans) {
      if (sp.to >= first && sp.to < last) {
        const int b = static_cast<int>(std::upper_bound(p_.bounds.begin(), p_.bounds.end(), sp.to) -
                                       p_.bounds.begin()) -
                      1;
        ++At(b, AnyGroup(i, sp.to)).c[kChurnNum];
      }
      if (sp.from >= last || sp.to < first) continue;
      // The bucket starts x with sp.from < x <= sp.to.
      const auto starts = p_.bounds.begin(), starts_end = p_.bounds.begin() + nb_;
      for (auto x = std::upper_bound(starts, starts_end, sp.from); x != starts_end && *x <= sp.to;
           ++x) {
        ++At(static_cast<int>(x - starts), AnyGroup(i, *x)).c[kChurnDen];
      }
    }
  }

  // stuck_deals at as_of, reported in every bucket.
  void StuckDeals() {
    for (uint32_t i = 0; i < st_.deals.size(); ++i) Stuck(i, st_.deals[i]);
  }
  void Stuck(uint32_t i, const DealData& d) {
    if (StuckAt(d.lost.t, d.visits.data(), d.visits.size(), d.pipeline)) {
      CountStuck(DealGroup(i, as_of_));
    }
  }
  // Whether a deal of that first loss, visits [v, v + n) and pipeline is
  // stuck at as_of: not lost, and in its stage at as_of past the stage's SLA.
  bool StuckAt(int64_t lost, const Visit* v, size_t n, int32_t pipeline) const {
    if (lost < as_of_) return false;
    const Visit* it =
        std::lower_bound(v, v + n, as_of_, [](const Visit& x, int64_t t) { return x.t() < t; });
    if (it == v) return false;
    const Visit& cur = *(it - 1);
    // 0: no SLA, or the pipeline's last stage.
    const int64_t sla = st_.stage_sla[static_cast<size_t>(
        st_.stage_offset[static_cast<size_t>(pipeline)] + cur.stage())];
    return sla != 0 && as_of_ - cur.t() > sla;
  }
  void CountStuck(uint32_t g) {
    for (int b = 0; b < nb_; ++b) ++At(b, g).c[kStuck];
  }

  // receivables_overdue at as_of, reported in every bucket.
  void Receivables() {
    const uint32_t ni = static_cast<uint32_t>(st_.invoices.size());
    for (uint32_t i = 0; i < ni; ++i) {
      // Each invoice's payments are an allocation of their own, read at
      // the stall of a cache miss per invoice (4 % of a scan's time):
      // ask for them ahead.
      if (i + kAhead < ni) __builtin_prefetch(st_.invoice_payments[i + kAhead].data());
      // The store's copy of the invoice's terms (interned, by index).
      const InvoiceData& inv = st_.invoices[i];
      if (inv.issued >= as_of_ || inv.due >= as_of_) continue;
      int64_t paid = 0;
      for (const Payment& p : st_.invoice_payments[i]) {
        if (p.t >= as_of_) break;
        if (__builtin_add_overflow(paid, p.amount, &paid)) paid = INT64_MAX;
      }
      if (paid >= inv.amount) continue;
      const int64_t owed = inv.amount - paid;
      const uint32_t cur = inv.currency;
      const uint32_t g = AnyGroup(inv.account, as_of_);
      for (int b = 0; b < nb_; ++b) {
        Acc& a = At(b, g);
        ++a.c[kReceivables];
        if (!Acc::AddMoney(a.receivables, cur, owed, false)) Overflow("receivables_overdue", cur);
      }
    }
  }

  // ---- output ------------------------------------------------------------

  const std::string& GroupName(uint32_t g) const {
    static const std::string kClient = "client", kPartner = "partner";
    return g == client_group_ ? kClient : g == partner_group_ ? kPartner : st_.strings.at(g);
  }

  static void SetRatio(v1::Ratio* r, int64_t num, int64_t den) {
    r->set_numerator(num);
    r->set_denominator(den);
  }

  void Fill(const Acc& a, v1::KpiValues* v, v1::KpiPartial::Row* row) const {
    const int64_t* c = a.c;
    SetCounterFigures(c, /*finish=*/false, v);
    std::vector<MoneyLine> revenue = a.revenue;
    std::sort(revenue.begin(), revenue.end(), [&](const MoneyLine& x, const MoneyLine& y) {
      return st_.strings.at(x.currency) < st_.strings.at(y.currency);
    });
    for (const MoneyLine& l : revenue) {
      v1::RevenueLine* r = v->add_revenue();
      r->set_currency(st_.strings.at(l.currency));
      r->set_amount_minor(l.amount);
      r->set_previous_minor(l.previous);
    }
    // Stages by pipeline id, then stage order.
    std::vector<size_t> order(s_.pipelines.all().size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) {
      return s_.pipelines.all()[x].pipeline.id() < s_.pipelines.all()[y].pipeline.id();
    });
    // (No stage counted: the store may not have its stage numbering yet,
    // before the first event.)
    if (a.stages.empty()) order.clear();
    for (size_t pi : order) {
      const PipelineInfo& pl = s_.pipelines.all()[pi];
      for (int j = 0; j < pl.size(); ++j) {
        const size_t flat = static_cast<size_t>(st_.stage_offset[pi] + j);
        if (flat >= a.stages.size() || a.stages[flat].first == 0) continue;
        v1::StageConversion* sc = v->add_stage_conversion();
        sc->set_pipeline_id(pl.pipeline.id());
        sc->set_stage(pl.stage(j).id());
        sc->set_stage_index(j);
        SetRatio(sc->mutable_conversion(), a.stages[flat].second, a.stages[flat].first);
      }
    }
    SetRatio(v->mutable_win_rate(), c[kWon], c[kWon] + c[kLost]);
    SetRatio(v->mutable_client_churn_rate(), c[kChurnNum], c[kChurnDen]);
    v->set_stuck_deals(c[kStuck]);
    v->set_receivables_overdue_count(c[kReceivables]);
    std::vector<MoneyLine> recv = a.receivables;
    std::sort(recv.begin(), recv.end(), [&](const MoneyLine& x, const MoneyLine& y) {
      return st_.strings.at(x.currency) < st_.strings.at(y.currency);
    });
    for (const MoneyLine& l : recv) {
      v1::Money* m = v->add_receivables_overdue();
      m->set_currency(st_.strings.at(l.currency));
      m->set_amount_minor(l.amount);
    }
    SetRatio(v->mutable_hunter_share(), c[kHunterNum], c[kHunterDen]);
    // Sums of whole months from the cells arrive sorted.
    if (std::is_sorted(a.time_to_win.begin(), a.time_to_win.end())) {
      row->mutable_time_to_win_days()->Add(a.time_to_win.begin(), a.time_to_win.end());
    } else {
      std::vector<double> ttw = a.time_to_win;
      SortDoubles(ttw);
      row->mutable_time_to_win_days()->Add(ttw.begin(), ttw.end());
    }
  }

  v1::KpiPartial Emit() const {
    v1::KpiPartial out;
    *out.mutable_query() = p_.query;
    std::vector<std::pair<const std::string*, size_t>> order;
    for (int b = 0; b < nb_; ++b) {
      const std::vector<Acc>& row = rows_[static_cast<size_t>(b)];
      order.clear();
      for (size_t slot = 0; slot < row.size(); ++slot) {
        if (row[slot].touched) order.emplace_back(&GroupName(groups_[slot]), slot);
      }
      std::sort(order.begin(), order.end(),
                [](const auto& x, const auto& y) { return *x.first < *y.first; });
      for (const auto& [name, slot] : order) {
        v1::KpiPartial::Row* r = out.add_rows();
        r->set_bucket_start_us(p_.bounds[b]);
        r->set_bucket_end_us(p_.bounds[b + 1]);
        r->set_group(*name);
        Fill(row[slot], r->mutable_values(), r);
      }
    }
    if (p_.query.include_health()) AppendHealth(s_, as_of_, out.mutable_health());
    return out;
  }

  const EngineState& s_;
  const FactStore& st_;
  const Plan& p_;
  const v1::GroupBy by_;
  const int64_t as_of_;
  const int nb_;
  // Accumulators by bucket, then dense group slot.
  std::vector<std::vector<Acc>> rows_;
  const uint32_t client_group_, partner_group_;
  // Dense slot of each group id (-1: none yet), and the group of each slot.
  std::vector<int32_t> slot_;
  std::vector<uint32_t> groups_;
  absl::Status error_;
  int b_ = 0;
  int64_t lo_ = 0, hi_ = 0;
  // Per bucket, the span its plain sums took from the cells (empty: none),
  // and whether it took every figure from them.
  std::vector<int64_t> cell_lo_, cell_hi_;
  std::vector<bool> whole_;
  // receivables_overdue is scanned (an owed sum in the cells exceeds int64).
  bool recv_scan_ = false;
  // Every fact of the period is scanned (no cells); the tables are built.
  bool bulk_ = false;
  std::vector<uint32_t> acc_group_;
  std::vector<int64_t> acc_cust_;
  // Per account: where its orders, outbound contacts and feedback are (null:
  // none; Timeline::SizeOf gives their count), and whether it was referred.
  // The fact passes read these instead of the account, a deque element
  // whose cache line had to arrive before its timelines could be asked for.
  std::vector<const OrderRef*> acc_orders_;
  std::vector<const int64_t*> acc_outbound_;
  std::vector<const FeedbackRef*> acc_feedback_;
  std::vector<uint8_t> acc_referred_;
  std::vector<Stamp> deal_won_, deal_lost_;
  std::vector<int64_t> deal_created_;
  std::vector<uint32_t> deal_partner_, deal_account_;
};

}  // namespace

bool OverdueAt(const v1::Invoice& inv, const Timeline<Payment>& payments, int64_t at,
               int64_t* owed) {
  if (inv.issued_at_us() >= at || inv.due_at_us() >= at) return false;
  int64_t paid = 0;
  for (const Payment& p : payments) {
    if (p.t >= at) break;
    if (__builtin_add_overflow(paid, p.amount, &paid)) paid = INT64_MAX;
  }
  if (paid >= inv.amount().amount_minor()) return false;
  *owed = inv.amount().amount_minor() - paid;
  return true;
}

absl::StatusOr<v1::KpiPartial> ScanPartial(const EngineState& state, const Plan& plan) {
  return Scanner(state, plan).Run();
}

}  // namespace rapport::kpi
