#include "lib/kpi/cells.h"

#include <algorithm>
#include <atomic>
#include <limits>

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
                             [](int64_t x, const AttrEntry& e) { return x < e.since.t; });
  return it == a.attr.begin() ? &a.attr.front() : &*(it - 1);
}

bool PartnerActiveAt(const AccountData& a, int64_t x) {
  auto it = std::lower_bound(a.status.begin(), a.status.end(), x,
                             [](const StatusEvent& e, int64_t v) { return e.at.t < v; });
  return it != a.status.begin() && (it - 1)->agreed;
}

bool SameAttr(const AttrEntry& x, const AttrEntry& y) {
  return x.since == y.since && x.owner == y.owner && x.team == y.team && x.segment == y.segment;
}

}  // namespace

void CellIndexDeleter::operator()(CellIndex* p) const { delete p; }
CellIndex* NewCellIndex() { return new CellIndex(); }

void SetForceScanForTesting(bool on) { g_force_scan.store(on); }
bool ForceScan() { return g_force_scan.load(std::memory_order_relaxed); }
int64_t CellRebuildsForTesting() { return g_rebuilds.load(); }

uint32_t GroupFor(const FactStore& st, v1::GroupBy by, uint32_t account, int64_t t) {
  const AccountData& a = st.accounts[account];
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
  std::vector<Cell>& day = modes_[mode].days[DayOf(t)];
  for (Cell& c : day) {
    if (c.group == group) return c;
  }
  Cell& c = day.emplace_back();
  c.group = group;
  return c;
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
      Cell& c = At(mode, t, by == v1::GROUP_BY_MANAGER ? f.subject : GroupFor(st, by, f.account, t));
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
    default:
      break;
  }
}

void CellIndex::MarkStale() {
  for (Mode& m : modes_) {
    m.built = false;
    m.days.clear();
  }
  overflow_ = false;
}

void CellIndex::OnFact(const FactStore& st, FactKind kind, int64_t t, const Fact& f, FirstChange first) {
  WriterLock lock(&mu_);
  if (last_t_.size() <= f.account) last_t_.resize(f.account + 1, std::numeric_limits<int64_t>::min());
  last_t_[f.account] = std::max(last_t_[f.account], t);
  bool any = false;
  for (const Mode& m : modes_) any = any || m.built;
  if (!any) return;
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
      if (first == FirstChange::kNone) return;
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
  for (int mode = 0; mode < kModes; ++mode) {
    if (!modes_[mode].built) continue;
    if (kind == FactKind::kWon) {
      // The deal's lead now counts as won (before any as_of after the win).
      const DealData& d = st.deals[f.subject];
      ++At(mode, d.created_at, DealGroupFor(st, static_cast<v1::GroupBy>(mode), f.subject, d.created_at))
            .c[kCellLeadsWon];
    }
    Contribute(st, mode, kind, t, f);
  }
}

void CellIndex::OnAccountChange(const FactStore& st, uint32_t account, const AccountData& before) {
  WriterLock lock(&mu_);
  if (account >= last_t_.size() || last_t_[account] == std::numeric_limits<int64_t>::min()) return;
  const AccountData& now = st.accounts[account];
  bool stale = now.kind != before.kind || now.source_partner != before.source_partner;
  if (!stale) {
    // Attribution is unchanged before the first entry that differs.
    const size_t n = std::min(now.attr.size(), before.attr.size());
    size_t i = 0;
    while (i < n && SameAttr(now.attr[i], before.attr[i])) ++i;
    if (i < now.attr.size() || i < before.attr.size()) {
      if (i == 0) {
        stale = true;
      } else {
        int64_t from = std::numeric_limits<int64_t>::max();
        if (i < now.attr.size()) from = std::min(from, now.attr[i].since.t);
        if (i < before.attr.size()) from = std::min(from, before.attr[i].since.t);
        stale = from <= last_t_[account];
      }
    }
  }
  if (stale) MarkStale();
}

void CellIndex::Rebuild(const FactStore& st, int mode) {
  g_rebuilds.fetch_add(1, std::memory_order_relaxed);
  Mode& m = modes_[mode];
  m.days.clear();
  for (FactKind k : {FactKind::kLead, FactKind::kPartnerAgreed, FactKind::kPartnerChurned,
                     FactKind::kPayment, FactKind::kActivity, FactKind::kFeedback}) {
    st.column(k).ForAll([&](int64_t t, const Fact& f) { Contribute(st, mode, k, t, f); });
  }
  st.column(FactKind::kWon).ForAll([&](int64_t t, const Fact& f) {
    if (st.deals[f.subject].won == Stamp{t, f.value}) Contribute(st, mode, FactKind::kWon, t, f);
  });
  st.column(FactKind::kLost).ForAll([&](int64_t t, const Fact& f) {
    if (st.deals[f.subject].lost == Stamp{t, f.value}) Contribute(st, mode, FactKind::kLost, t, f);
  });
  m.built = true;
}

bool CellIndex::ForDays(const FactStore& st, v1::GroupBy mode, int64_t from_day, int64_t to_day,
                        const std::function<void(const Cell&)>& fn) {
  WriterLock lock(&mu_);
  const int mi = static_cast<int>(mode);
  if (mi < 0 || mi >= kModes) return false;
  if (!modes_[mi].built) Rebuild(st, mi);
  if (overflow_) return false;
  const auto& days = modes_[mi].days;
  for (auto it = days.lower_bound(from_day); it != days.end() && it->first < to_day; ++it) {
    for (const Cell& c : it->second) fn(c);
  }
  return true;
}

size_t CellIndex::MemoryBytes() const {
  WriterLock lock(&mu_);
  size_t n = last_t_.capacity() * sizeof(int64_t);
  for (const Mode& m : modes_) {
    for (const auto& [day, cells] : m.days) {
      n += 48 + cells.capacity() * sizeof(Cell);
      for (const Cell& c : cells) {
        n += c.revenue.capacity() * sizeof(c.revenue[0]) + c.time_to_win.capacity() * sizeof(double);
      }
    }
  }
  return n;
}

}  // namespace rapport::kpi
