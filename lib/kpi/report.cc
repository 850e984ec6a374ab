#include "lib/kpi/report.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/civil_time.h"
#include "lib/kpi/accumulator.h"
#include "lib/kpi/cells.h"
#include "rapport/engine.h"

namespace rapport::kpi {
namespace {

constexpr int64_t kDay = kMicrosPerDay;

std::atomic<int64_t> g_cell_reports{0};

// The figures of one bucket and group. `acc` holds every sum as the scan's
// accumulator would (Scanner in scan.cc, on its cell path); the median of
// time_to_win comes from the month's sums (has_median), or from
// acc.time_to_win for buckets that are not one whole month.
struct Row {
  Acc acc;
  bool has_median = false;
  double median = 0;

  void Reset() {
    acc.touched = false;
    std::fill(std::begin(acc.c), std::end(acc.c), 0);
    acc.revenue.clear();
    acc.receivables.clear();
    acc.stages.clear();
    acc.time_to_win.clear();
    has_median = false;
    median = 0;
  }
};

// Working memory of a report from the cells, kept per thread so that a
// repeated query allocates nothing once warm. Slots are dense indexes of the
// groups met, in the order met.
struct Scratch {
  std::vector<std::vector<Row>> rows;  // by bucket, then slot
  std::vector<int32_t> slot;           // by dense group index (Dense), -1: none
  std::vector<size_t> dense_used;      // the entries of `slot` set
  std::vector<uint32_t> groups;        // the cells' group id of each slot
  // Instant figures by slot.
  std::vector<int64_t> partners, clients, stuck, overdue;
  std::vector<std::vector<std::pair<uint32_t, __int128>>> owed;
  size_t instant_slots = 0;
  std::vector<int64_t> bday;
  std::vector<size_t> order;      // slots by group name
  std::vector<size_t> pipelines;  // pipeline indexes by id
  std::vector<MoneyLine> lines;
};

class FromCells {
 public:
  FromCells(const EngineState& s, const Plan& p, Scratch& x)
      : s_(s),
        st_(s.kpi),
        p_(p),
        x_(x),
        nb_(p.buckets()),
        as_of_(p.as_of),
        n_strings_(st_.strings.size()) {}

  // Computes every figure; false when the cells cannot answer the plan alone
  // (the caller scans). Writes nothing to a report.
  bool Compute() {
    const v1::GroupBy by = p_.query.group_by();
    if (ForceScan() || p_.query.include_health() || by < 0 || by >= CellIndex::kModes) return false;
    for (int64_t x : p_.bounds) {
      if (x % kDay != 0) return false;
    }
    if (as_of_ % kDay != 0) return false;
    // The scan takes out leads won and stage entries converted at or after
    // as_of; there are none when as_of is after every fact (checked below
    // against the cells' MaxTime; this guards the assumption).
    bool late = false;
    st_.column(FactKind::kWon).ForRange(as_of_, kNever, [&](int64_t, const Fact&) { late = true; });
    st_.column(FactKind::kStageEntry).ForRange(as_of_, kNever, [&](int64_t, const Fact&) {
      late = true;
    });
    if (late) return false;
    bool ok = false;
    const bool usable = st_.cells->WithView(st_, by, s_.config.client_churn_after_us(),
                                            [&](CellIndex::View& v) { ok = Sum(v); });
    return usable && ok;
  }

  // Writes the report (after Compute returned true), reusing what `out`
  // holds: every field of every row is set, and extra rows and lines are
  // dropped.
  void Write(v1::KpiReport* out) {
    out->mutable_query()->CopyFrom(p_.query);
    out->mutable_health()->Clear();
    // Rows by bucket, then group name (byte order), as the merge orders them.
    x_.order.clear();
    for (size_t slot = 0; slot < x_.groups.size(); ++slot) x_.order.push_back(slot);
    std::sort(x_.order.begin(), x_.order.end(), [&](size_t a, size_t b) {
      return GroupName(x_.groups[a]) < GroupName(x_.groups[b]);
    });
    const auto& pls = s_.pipelines.all();
    x_.pipelines.clear();
    for (size_t i = 0; i < pls.size(); ++i) x_.pipelines.push_back(i);
    std::sort(x_.pipelines.begin(), x_.pipelines.end(),
              [&](size_t a, size_t b) { return pls[a].pipeline.id() < pls[b].pipeline.id(); });
    int n = 0;
    for (int b = 0; b < nb_; ++b) {
      const std::vector<Row>& rows = x_.rows[static_cast<size_t>(b)];
      for (size_t slot : x_.order) {
        if (slot >= rows.size() || !rows[slot].acc.touched) continue;
        v1::KpiRow* row = n < out->rows_size() ? out->mutable_rows(n) : out->add_rows();
        ++n;
        row->set_bucket_start_us(p_.bounds[static_cast<size_t>(b)]);
        row->set_bucket_end_us(p_.bounds[static_cast<size_t>(b) + 1]);
        const std::string& name = GroupName(x_.groups[slot]);
        if (row->group() != name) row->set_group(name);
        Fill(rows[slot], row->mutable_values());
      }
    }
    while (out->rows_size() > n) out->mutable_rows()->RemoveLast();
  }

 private:
  // ---- sums ----------------------------------------------------------------

  size_t Dense(uint32_t g) const {
    return g == kClientGroupId ? n_strings_ : g == kPartnerGroupId ? n_strings_ + 1 : g;
  }
  const std::string& GroupName(uint32_t g) const {
    static const std::string kClient = "client", kPartner = "partner";
    return g == kClientGroupId ? kClient : g == kPartnerGroupId ? kPartner : st_.strings.at(g);
  }

  size_t SlotOf(uint32_t g) {
    int32_t& slot = x_.slot[Dense(g)];
    if (slot < 0) {
      slot = static_cast<int32_t>(x_.groups.size());
      x_.groups.push_back(g);
      x_.dense_used.push_back(Dense(g));
    }
    return static_cast<size_t>(slot);
  }
  Row& At(int b, uint32_t g) {
    const size_t slot = SlotOf(g);
    std::vector<Row>& rows = x_.rows[static_cast<size_t>(b)];
    if (rows.size() <= slot) rows.resize(slot + 1);
    return rows[slot];
  }

  void Reset() {
    for (size_t d : x_.dense_used) x_.slot[d] = -1;
    x_.dense_used.clear();
    if (x_.slot.size() < n_strings_ + 2) x_.slot.resize(n_strings_ + 2, -1);
    x_.groups.clear();
    if (x_.rows.size() < static_cast<size_t>(nb_)) x_.rows.resize(static_cast<size_t>(nb_));
    for (int b = 0; b < nb_; ++b) {
      for (Row& r : x_.rows[static_cast<size_t>(b)]) r.Reset();
    }
    x_.instant_slots = 0;
  }

  // Whether bucket [lo, hi) is one whole UTC month.
  static bool WholeMonth(int64_t lo, int64_t hi) {
    const absl::CivilDay day = absl::CivilDay(1970, 1, 1) + lo / kDay;
    if (day.day() != 1) return false;
    return absl::CivilDay(absl::CivilMonth(day) + 1) - absl::CivilDay(1970, 1, 1) == hi / kDay;
  }

  bool Sum(CellIndex::View& v) {
    // Then "at as_of" is "now": stuck deals and receivables are the cells'.
    if (!(as_of_ > v.MaxTime())) return false;
    Reset();
    if (p_.query.group_by() == v1::GROUP_BY_NONE) {
      for (int b = 0; b < nb_; ++b) At(b, 0).acc.touched = true;
    }
    const size_t stages =
        static_cast<size_t>(st_.stage_offset.empty() ? 0 : st_.stage_offset.back());
    bool overflow = false;
    for (int b = 0; b < nb_; ++b) {
      const int64_t lo = p_.bounds[static_cast<size_t>(b)],
                    hi = p_.bounds[static_cast<size_t>(b) + 1];
      if (WholeMonth(lo, hi)) {
        const std::vector<CellIndex::MonthSum>* sums = v.Month(lo / kDay);
        if (sums == nullptr) return false;
        for (const CellIndex::MonthSum& sum : *sums) {
          Row& r = At(b, sum.group);
          Acc& a = r.acc;
          for (const MoneyLine& l : sum.acc.revenue) {
            if (!Acc::AddMoney(a.revenue, l.currency, l.amount, false)) overflow = true;
          }
          for (int i = 0; i < kFields; ++i) a.c[i] += sum.acc.c[i];
          if (a.stages.size() < sum.acc.stages.size()) a.stages.resize(sum.acc.stages.size());
          for (size_t i = 0; i < sum.acc.stages.size(); ++i) {
            a.stages[i].first += sum.acc.stages[i].first;
            a.stages[i].second += sum.acc.stages[i].second;
          }
          r.has_median = sum.has_median;
          r.median = sum.median;
        }
      } else {
        v.ForDays(lo / kDay, hi / kDay, [&](int64_t, const Cell& cell) {
          if (AddCellTo(cell, lo / kDay, hi / kDay, true, stages, At(b, cell.group).acc) !=
              UINT32_MAX) {
            overflow = true;
          }
        });
      }
      // revenue_growth: the previous period of equal length.
      const int64_t plo = std::max<int64_t>(0, lo - (hi - lo));
      // (The cells' payment lines in the scan's order, so that an overflow
      // is met where the scan meets it.)
      const bool kept = v.ForRevenue(plo / kDay, lo / kDay, [&](const CellIndex::DayRevenue& r) {
        if (!Acc::AddMoney(At(b, r.group).acc.revenue, r.currency, r.amount, true)) overflow = true;
      });
      if (!kept) return false;
    }
    // An overflow is the scan's error to report.
    if (overflow) return false;
    CloseWindows(v);
    if (!Instants(v)) return false;
    for (int b = 0; b < nb_; ++b) {
      for (Row& r : x_.rows[static_cast<size_t>(b)]) {
        std::vector<double>& ttw = r.acc.time_to_win;
        if (!ttw.empty()) {
          // As the merge takes it from the sorted list.
          const size_t n = ttw.size();
          std::nth_element(ttw.begin(), ttw.begin() + static_cast<std::ptrdiff_t>(n / 2),
                           ttw.end());
          const double hi = ttw[n / 2];
          r.median = n % 2 == 1
                         ? hi
                         : (*std::max_element(ttw.begin(),
                                              ttw.begin() + static_cast<std::ptrdiff_t>(n / 2)) +
                            hi) /
                               2;
          r.has_median = true;
        }
        // A group is in a bucket's rows when a figure is there.
        r.acc.touched = r.acc.touched || r.has_median || HasFigures(r.acc);
      }
    }
    return true;
  }

  // The cells count every order and completion in post_purchase_contact_rate
  // and feedback_coverage; those whose window is still open at as_of (a UTC
  // day boundary) are those of the last 7 and 30 days, taken back out.
  void CloseWindows(CellIndex::View& v) {
    const int64_t first = p_.bounds.front(), last = p_.bounds.back();
    const int64_t from_day = std::max(first, as_of_ - 30 * kDay) / kDay,
                  ppc_day = (as_of_ - 7 * kDay) / kDay;
    v.ForDays(from_day, (last + kDay - 1) / kDay, [&](int64_t day, const Cell& cell) {
      const int64_t t = day * kDay;
      if (t < first || t >= last) return;
      TakeOutOpenWindows(cell, day, ppc_day, At(Bucket(t), cell.group).acc);
    });
  }

  int Bucket(int64_t t) const {
    return static_cast<int>(std::upper_bound(p_.bounds.begin(), p_.bounds.end(), t) -
                            p_.bounds.begin()) -
           1;
  }

  void GrowInstants(size_t n) {
    for (; x_.instant_slots < n; ++x_.instant_slots) {
      const size_t i = x_.instant_slots;
      for (auto* v : {&x_.partners, &x_.clients, &x_.stuck, &x_.overdue}) {
        if (v->size() <= i) v->resize(i + 1);
        (*v)[i] = 0;
      }
      if (x_.owed.size() <= i) x_.owed.resize(i + 1);
      x_.owed[i].clear();
    }
  }

  // partners_active and client_churn_rate at the bounds (UTC days), stuck
  // deals and receivables at as_of (now), from the instant cells: a count at
  // day D is the sum of the changes of days <= D. False when an owed sum
  // exceeds int64 (the scan reports it).
  bool Instants(CellIndex::View& v) {
    x_.bday.clear();
    for (int64_t x : p_.bounds) x_.bday.push_back(x / kDay);
    const std::vector<int64_t>& bday = x_.bday;
    const int64_t as_of_day = as_of_ / kDay;
    size_t k = 0;
    auto snapshot = [&](size_t k) {
      for (size_t slot = 0; slot < x_.instant_slots; ++slot) {
        const uint32_t g = x_.groups[slot];
        if (x_.partners[slot] != 0) {
          if (k < static_cast<size_t>(nb_))
            At(static_cast<int>(k), g).acc.c[kPartnersActiveStart] += x_.partners[slot];
          if (k > 0) At(static_cast<int>(k) - 1, g).acc.c[kPartnersActiveEnd] += x_.partners[slot];
        }
        if (x_.clients[slot] != 0 && k < static_cast<size_t>(nb_)) {
          At(static_cast<int>(k), g).acc.c[kChurnDen] += x_.clients[slot];
        }
      }
    };
    v.ForInstants([&](const CellIndex::FlatInstant& cell) {
      const int64_t day = cell.day;
      const size_t slot = SlotOf(cell.group);
      GrowInstants(slot + 1);
      while (k < bday.size() && bday[k] < day) snapshot(k++);
      x_.partners[slot] += cell.partners;
      x_.clients[slot] += cell.clients;
      if (cell.churned != 0 && day >= bday.front() && day < bday.back()) {
        const int b =
            static_cast<int>(std::upper_bound(bday.begin(), bday.end(), day) - bday.begin()) - 1;
        At(b, cell.group).acc.c[kChurnNum] += cell.churned;
      }
      if (day < as_of_day) {
        x_.stuck[slot] += cell.stuck;
        x_.overdue[slot] += cell.overdue;
        if (cell.owed == nullptr) return;
        for (const auto& [currency, amount] : *cell.owed) {
          std::pair<uint32_t, __int128>* line = nullptr;
          for (auto& l : x_.owed[slot]) {
            if (l.first == currency) line = &l;
          }
          if (line == nullptr) line = &x_.owed[slot].emplace_back(currency, 0);
          line->second += amount;
        }
      }
    });
    while (k < bday.size()) snapshot(k++);
    for (size_t slot = 0; slot < x_.instant_slots; ++slot) {
      for (const auto& l : x_.owed[slot]) {
        if (l.second > std::numeric_limits<int64_t>::max()) return false;
      }
    }
    for (size_t slot = 0; slot < x_.instant_slots; ++slot) {
      if (x_.stuck[slot] == 0 && x_.overdue[slot] == 0) continue;
      for (int b = 0; b < nb_; ++b) {
        Acc& a = At(b, x_.groups[slot]).acc;
        a.c[kStuck] += x_.stuck[slot];
        if (x_.overdue[slot] == 0) continue;
        a.c[kReceivables] += x_.overdue[slot];
        for (const auto& [currency, amount] : x_.owed[slot]) {
          if (amount != 0)
            Acc::AddMoney(a.receivables, currency, static_cast<int64_t>(amount), false);
        }
      }
    }
    return true;
  }

  // ---- output --------------------------------------------------------------

  // A ratio as the merge finishes it: the value only with a denominator.
  static void SetRatio(v1::Ratio* r, int64_t num, int64_t den) {
    r->set_numerator(num);
    r->set_denominator(den);
    if (den != 0) {
      r->set_value(static_cast<double>(num) / static_cast<double>(den));
    } else {
      r->clear_value();
    }
  }

  // Drops the elements of `field` from `n` on.
  template <typename T>
  static void Truncate(google::protobuf::RepeatedPtrField<T>* field, int n) {
    while (field->size() > n) field->RemoveLast();
  }

  void SortLines(const std::vector<MoneyLine>& from) {
    x_.lines.assign(from.begin(), from.end());
    std::sort(x_.lines.begin(), x_.lines.end(), [&](const MoneyLine& a, const MoneyLine& b) {
      return st_.strings.at(a.currency) < st_.strings.at(b.currency);
    });
  }

  // Every field of `v`, as Scanner::Fill then MergePartials (AddValues into
  // an empty row, Finalize) set them.
  void Fill(const Row& r, v1::KpiValues* v) {
    const Acc& a = r.acc;
    const int64_t* c = a.c;
    SetCounterFigures(c, /*finish=*/true, v);
    SortLines(a.revenue);
    int n = 0;
    for (const MoneyLine& l : x_.lines) {
      v1::RevenueLine* line = n < v->revenue_size() ? v->mutable_revenue(n) : v->add_revenue();
      ++n;
      if (line->currency() != st_.strings.at(l.currency))
        line->set_currency(st_.strings.at(l.currency));
      line->set_amount_minor(l.amount);
      line->set_previous_minor(l.previous);
      if (l.previous != 0) {
        const __int128 diff = static_cast<__int128>(l.amount) - l.previous;
        line->set_growth(static_cast<double>(diff) / static_cast<double>(l.previous));
      } else {
        line->clear_growth();
      }
    }
    Truncate(v->mutable_revenue(), n);
    if (c[kNpsResponses] != 0) {
      v->set_nps(100.0 * static_cast<double>(c[kNpsPromoters] - c[kNpsDetractors]) /
                 static_cast<double>(c[kNpsResponses]));
    } else {
      v->clear_nps();
    }
    // Stages by pipeline id, then stage order.
    n = 0;
    const auto& pls = s_.pipelines.all();
    // (No stage counted: the store may not have its stage numbering yet,
    // before the first event.)
    static const std::vector<size_t> kNone;
    for (size_t pi : a.stages.empty() ? kNone : x_.pipelines) {
      const PipelineInfo& pl = pls[pi];
      for (int j = 0; j < pl.size(); ++j) {
        const size_t flat = static_cast<size_t>(st_.stage_offset[pi] + j);
        if (flat >= a.stages.size() || a.stages[flat].first == 0) continue;
        v1::StageConversion* sc = n < v->stage_conversion_size() ? v->mutable_stage_conversion(n)
                                                                 : v->add_stage_conversion();
        ++n;
        if (sc->pipeline_id() != pl.pipeline.id()) sc->set_pipeline_id(pl.pipeline.id());
        if (sc->stage() != pl.stage(j).id()) sc->set_stage(pl.stage(j).id());
        sc->set_stage_index(j);
        SetRatio(sc->mutable_conversion(), a.stages[flat].second, a.stages[flat].first);
      }
    }
    Truncate(v->mutable_stage_conversion(), n);
    SetRatio(v->mutable_win_rate(), c[kWon], c[kWon] + c[kLost]);
    if (r.has_median) {
      v->set_time_to_win_days(r.median);
    } else {
      v->clear_time_to_win_days();
    }
    SetRatio(v->mutable_client_churn_rate(), c[kChurnNum], c[kChurnDen]);
    v->set_stuck_deals(c[kStuck]);
    v->set_receivables_overdue_count(c[kReceivables]);
    SortLines(a.receivables);
    n = 0;
    for (const MoneyLine& l : x_.lines) {
      v1::Money* m = n < v->receivables_overdue_size() ? v->mutable_receivables_overdue(n)
                                                       : v->add_receivables_overdue();
      ++n;
      if (m->currency() != st_.strings.at(l.currency)) m->set_currency(st_.strings.at(l.currency));
      m->set_amount_minor(l.amount);
    }
    Truncate(v->mutable_receivables_overdue(), n);
    SetRatio(v->mutable_hunter_share(), c[kHunterNum], c[kHunterDen]);
  }

  const EngineState& s_;
  const FactStore& st_;
  const Plan& p_;
  Scratch& x_;
  const int nb_;
  const int64_t as_of_;
  const size_t n_strings_;
};

}  // namespace

absl::Status ReportInto(const EngineState& state, const Plan& plan, v1::KpiReport* report) {
  thread_local Scratch scratch;
  FromCells cells(state, plan, scratch);
  if (cells.Compute()) {
    cells.Write(report);
    g_cell_reports.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  absl::StatusOr<v1::KpiPartial> partial = ScanPartial(state, plan);
  if (!partial.ok()) return partial.status();
  absl::StatusOr<v1::KpiReport> merged = MergePartials(absl::MakeConstSpan(&*partial, 1));
  if (!merged.ok()) return merged.status();
  *report = std::move(*merged);
  return absl::OkStatus();
}

int64_t CellReportsForTesting() { return g_cell_reports.load(); }

absl::StatusOr<v1::KpiReport> Report(const EngineState& state, const Plan& plan) {
  v1::KpiReport report;
  if (absl::Status st = ReportInto(state, plan, &report); !st.ok()) return st;
  return report;
}

}  // namespace rapport::kpi
