// Per-UTC-day partial aggregates of the KPIs (the incremental dashboard of
// issue 4).
//
// For every grouping mode that has been queried once, the index keeps one
// cell per (UTC day, group) with the counts of partners_new/churned, leads
// and leads ever won, activities and hunter_share, NPS, revenue per
// currency, orders (first-ever, referred, repeat; the days that decide
// repeat_customer_rate), completions and orders with their feedback/contact
// windows as if closed, and stage entries (first in any bucket, or the day
// of the deal's previous entry of the stage; ever converted). A query whose
// buckets span whole UTC days reads those cells and scans only partial days
// at its edges (a bucket that is not whole days scans its orders,
// completions and stage entries); the as_of-dependent parts are corrected:
// leads won at or after as_of and stage entries first converted at or after
// as_of by a scan of the facts from as_of on (none for a dashboard, whose
// as_of is now), windows still open at as_of from the cells of their days.
// Whole UTC months keep their sums between queries until a cell of the
// month changes.
//
// Figures at instants are kept as per-day changes (InstCell): the active
// partners and the clients at each day boundary (from every partner's and
// client's timeline and attribution), client churns per day, and, for an
// as_of after every fact, deals stuck and invoices overdue from a day on.
//
// Cells follow ingest exactly. Each fact's terms, and those of the facts and
// entities it changes (an order's neighbours in its account's orders, the
// other entries of its deal, the account's spans, the deal, the invoice),
// are computed before and after the fact and the difference applied. Where
// an event changes contributions that a fix-up cannot cheaply know (an
// attribution change reaching counted facts, a change of source partner or
// kind, a late order or partner status event that changes whether earlier
// outbound contacts were "hunting", a late first win or loss), the grouping
// modes it reaches are marked stale and rebuilt from the fact store by their
// next query (one pass; never an approximation).
//
// Thread-safety: ingest calls run under the engine's writer lock (and so take
// no lock of their own); queries run under its reader lock, possibly
// concurrently, so the index has its own mutex for the lazy build and the
// month sums.
#ifndef RAPPORT_LIB_KPI_CELLS_H_
#define RAPPORT_LIB_KPI_CELLS_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/time/civil_time.h"
#include "lib/kpi/accumulator.h"
#include "lib/kpi/fact_store.h"
#include "lib/util/shared_mutex.h"
#include "rapport/v1/kpi.pb.h"

namespace rapport::kpi {

// Groups of the account-kind mode, independent of the string pool's size.
inline constexpr uint32_t kClientGroupId = UINT32_MAX - 1;
inline constexpr uint32_t kPartnerGroupId = UINT32_MAX - 2;

enum CellField : int {
  kCellPartnersNew,
  kCellPartnersChurned,
  kCellLeads,
  kCellLeadsWon,  // leads whose deal is ever won (as_of corrects it)
  kCellActivity0,
  kCellHunterDen = kCellActivity0 + 8,
  kCellHunterNum,
  kCellNpsPromoters,
  kCellNpsDetractors,
  kCellNpsResponses,
  kCellWon,   // deals at their first win
  kCellLost,  // deals at their first loss
  kCellOrders,
  kCellClientsNew,    // the account's first-ever order
  kCellReferred,      // ... of a referred account
  kCellRepeatOrders,  // not the account's first-ever order
  kCellPpcDen,        // every order (as_of takes the unclosed windows out)
  kCellPpcNum,        // ... with an outbound contact in its 7 days
  kCellFbDen,         // every completion (as_of takes the unclosed out)
  kCellFbNum,         // ... with feedback in its 30 days
  kCellFields,
};

// Stage entries of a cell with no earlier entry of the same stage by the deal
// (they open every bucket they fall in).
struct StageCount {
  uint32_t flat;
  int32_t entered;
  int32_t converted;  // a later stage was ever entered after it
};
// Stage entries whose deal entered the stage before, on an earlier UTC day
// `prev_day`: they open a bucket only if it starts after that day. A
// multiset (equal entries are interchangeable).
struct StageRepeat {
  uint32_t flat;
  int32_t prev_day;
  bool converted;
  friend bool operator==(const StageRepeat& a, const StageRepeat& b) {
    return a.flat == b.flat && a.prev_day == b.prev_day && a.converted == b.converted;
  }
};

struct Cell {
  uint32_t group = 0;
  int64_t c[kCellFields] = {};
  // (currency id, sum).
  std::vector<std::pair<uint32_t, int64_t>> revenue;
  // time_to_win in days of the deals won here.
  std::vector<double> time_to_win;
  // repeat_customer_rate, sorted: for repeat orders whose account's previous
  // order is on an earlier UTC day, that day (the order opens a bucket that
  // starts after it); for first-ever orders, the day of the account's second
  // order (INT32_MAX: none), which must fall before the bucket's end.
  std::vector<int32_t> rcr_prev;
  std::vector<int32_t> rcr_second;
  std::vector<StageCount> stages;
  std::vector<StageRepeat> stage_repeats;
};

// Figures at instants (partners_active, client_churn_rate, stuck_deals,
// receivables_overdue), as changes keyed by UTC day. See CellIndex::ForInstants.
struct InstCell {
  uint32_t group = 0;
  // Changes of the active partners and of the clients counted at the day's
  // start (a count at day D is the sum of the changes of days <= D).
  int64_t partners = 0;
  int64_t clients = 0;
  // Clients whose client span ends on this day.
  int64_t churned = 0;
  // Deals that become stuck / invoices that become overdue at an as_of
  // after this day (given as_of is after every fact).
  int64_t stuck = 0;
  int64_t overdue = 0;
  // (currency id, owed); 128 bits so that no sum of int64 amounts wraps.
  std::vector<std::pair<uint32_t, __int128>> owed;
};

// What a won or lost fact did to its deal's first win or loss.
enum class FirstChange : uint8_t {
  kNone,      // not the deal's first (an earlier one stands)
  kFirst,     // the deal's first, where it had none
  kReplaced,  // a late fact before the deal's previous first
};

class CellIndex {
  struct Mode;

 public:
  static constexpr int kModes = 6;  // v1::GroupBy values 0..5

  // The sum of one group's cells over a whole UTC month, as a bucket equal to
  // that month adds them (AddCellTo). acc.time_to_win is sorted when the
  // month's lists are kept and empty otherwise; `median` is its median
  // (has_median: it is not empty), computed either way.
  struct MonthSum {
    uint32_t group;
    Acc acc;
    bool has_median = false;
    double median = 0;
  };

  // A payment line of one cell of a month (the day's revenue in a currency),
  // in the order the cells are kept.
  struct DayRevenue {
    int32_t day;
    uint32_t group;
    uint32_t currency;
    int64_t amount;
  };
  // An instant cell in a flat list (View::ForInstants); `owed` is the
  // cell's lines, or nullptr when it has none.
  struct FlatInstant {
    int64_t day;
    uint32_t group;
    int64_t partners, clients, churned, stuck, overdue;
    const std::vector<std::pair<uint32_t, __int128>>* owed;
  };

  // The cells of one grouping mode while CellIndex::WithView holds the index's
  // lock (for the report path, lib/kpi/report.cc, which reads them many times
  // per query).
  class View {
   public:
    // The sums of the whole UTC month starting on `month_day` (without the
    // time_to_win lists), kept between queries until a cell of the month
    // changes; nullptr when a money sum overflows.
    const std::vector<MonthSum>* Month(int64_t month_day);
    // fn(day, cell) for every cell on UTC days [from_day, to_day).
    template <typename Fn>
    void ForDays(int64_t from_day, int64_t to_day, Fn&& fn) const;
    // fn(line) for every cell's payment line on UTC days [from_day, to_day),
    // in day order, from the months' kept lists. False (maybe after some
    // calls) when a month's sums cannot be kept (a money sum overflows).
    template <typename Fn>
    bool ForRevenue(int64_t from_day, int64_t to_day, Fn&& fn);
    // fn(instant) for every instant cell, in day order, from a flat copy
    // kept until an instant cell changes.
    template <typename Fn>
    void ForInstants(Fn&& fn);
    // As CellIndex::MaxTime.
    int64_t MaxTime() const { return index_->max_t_; }

   private:
    friend class CellIndex;
    View(CellIndex* index, const FactStore* st, Mode* mode) : index_(index), st_(st), mode_(mode) {}
    CellIndex* index_;
    const FactStore* st_;
    Mode* mode_;
  };
  // Calls fn(view) with the built cells of `mode` under the index's lock,
  // held until fn returns. False (fn not called) when the cells cannot be
  // used (a money sum in a cell overflowed).
  bool WithView(const FactStore& st, v1::GroupBy mode, int64_t churn_after,
                const std::function<void(View&)>& fn);

  // Ingest hooks. They take no lock of the index: they run under the
  // engine's writer lock, which no query holds at the same time (queries run
  // under its reader lock, and the index's mutex orders only them among
  // themselves). A lock per hook, one or two per fact, cost ~5 % of ingest.
  // BeforeFact runs before the store's timelines take the fact, OnFact after;
  // `first` says, for won and lost facts, how the fact changed its deal's
  // first win or loss.
  void BeforeFact(const FactStore& st, FactKind kind, const Fact& f);
  void OnFact(const FactStore& st, FactKind kind, int64_t t, const Fact& f, FirstChange first);
  // Restore: the store took all of its facts at once (no BeforeFact/OnFact
  // each). Does OnFact's bookkeeping for every fact, in the store's order,
  // under one lock; cells already built (none on a restore) are marked
  // stale and so rebuilt from the facts by their next query.
  void OnFactsLoaded(const FactStore& st);
  // An account upsert changed `before` into the store's current data.
  void OnAccountChange(const FactStore& st, uint32_t account, const AccountData& before);
  // The store took a new invoice.
  void OnInvoice(const FactStore& st, uint32_t invoice);

  // Calls fn(cell) for every cell of `mode` on UTC days [from_day, to_day),
  // building the mode's cells first if needed (`churn_after` is the engine's
  // client_churn_after_us). False (fn not called) when the cells cannot be
  // used (a money sum in a cell overflowed).
  bool ForDays(const FactStore& st, v1::GroupBy mode, int64_t churn_after, int64_t from_day,
               int64_t to_day, const std::function<void(int64_t day, const Cell&)>& fn);
  // Calls fn(group, acc) with the sum of the cells of the UTC month starting
  // on `month_day`, as a bucket equal to that month adds them (AddCellTo),
  // kept between queries until a cell of the month changes. False (fn not
  // called) when the cells cannot be used or a money sum overflows.
  bool ForMonth(const FactStore& st, v1::GroupBy mode, int64_t churn_after, int64_t month_day,
                const std::function<void(uint32_t group, const Acc&)>& fn);
  // Calls fn(day, cell) for every instant cell of `mode` in day order (the
  // mode's cells must be built by ForDays).
  void ForInstants(v1::GroupBy mode, const std::function<void(int64_t, const InstCell&)>& fn) const;
  // The latest fact time or attribution change: stuck_deals and
  // receivables_overdue come from the instant cells only at an as_of after it.
  int64_t MaxTime() const;

  size_t MemoryBytes() const;

 private:
  struct Month {
    int64_t end_day;
    // Whether the sums' time_to_win lists are there (ForMonth wants them;
    // the report path needs only the medians).
    bool lists;
    std::vector<MonthSum> sums;
    // Every payment line of the month's cells, for previous periods
    // (revenue_growth) that are not whole months.
    std::vector<DayRevenue> revenue;
  };
  struct Mode {
    bool built = false;
    std::map<int64_t, std::vector<Cell>> days;
    std::map<int64_t, std::vector<InstCell>> instants;
    // Sums of whole UTC months by their first day; a change to a cell drops
    // its month's.
    std::map<int64_t, Month> months;
    // `instants` flattened for the report path; any change to an instant
    // cell drops it (flat_ok false).
    bool flat_ok = false;
    std::vector<FlatInstant> flat;
  };
  // The flat copy of the mode's instant cells, made if missing.
  const std::vector<FlatInstant>& FlatInstants(Mode& m);
  // The sums of a month (with the time_to_win lists when `lists`), computed
  // and kept if missing; nullptr when a money sum overflows.
  Month* MonthOf(const FactStore& st, Mode& m, int64_t month_day, bool lists);
  void Contribute(const FactStore& st, int mode, FactKind kind, int64_t t, const Fact& f);
  void Rebuild(const FactStore& st, int mode);
  // The built cells of `mode` under `churn_after` (mu_ held), or nullptr
  // when the mode is unknown or a sum overflowed (the caller scans).
  Mode* Ready(const FactStore& st, v1::GroupBy mode, int64_t churn_after);
  void MarkStale();
  Cell& At(int mode, int64_t t, uint32_t group);
  InstCell& InstAt(int mode, int64_t day, uint32_t group);
  // The orders, completions and stage entries of the cells.
  void OrderPlaced(const FactStore& st, int mode, uint32_t account, uint32_t order);
  void OrderTerms(const FactStore& st, int mode, uint32_t account, size_t j, size_t skip, int sign);
  void StageEntered(const FactStore& st, int mode, uint32_t deal, const Fact& f, int64_t t);
  void StageTerms(const FactStore& st, int mode, uint32_t deal, size_t skip, size_t only, int sign);
  // The instant cells' terms of an entity, added (sign 1) or taken out (-1).
  void AccountInstants(const FactStore& st, int mode, uint32_t account, const AccountData& a,
                       int sign);
  void DealInstants(const FactStore& st, int mode, uint32_t deal, const AccountData& a, int sign);
  void InvoiceInstants(const FactStore& st, int mode, uint32_t invoice, const AccountData& a,
                       int sign);
  bool AnyBuilt() const;

  mutable SharedMutex mu_;
  Mode modes_[kModes];
  bool overflow_ = false;
  int64_t churn_after_ = -1;
  // The latest fact time of each account (kMin: none), to tell whether an
  // attribution change reaches facts already counted.
  std::vector<int64_t> last_t_;
  int64_t max_t_ = std::numeric_limits<int64_t>::min();
  // The deals and invoices of each account (an owner change moves their
  // instant terms), as lists threaded through the entities: the first of an
  // account, then the next of each (kNoEntity: end; a deal's next is its
  // DealData::next_of_account).
  static constexpr uint32_t kNoEntity = UINT32_MAX;
  std::vector<uint32_t> first_deal_, first_invoice_, next_invoice_;
};

template <typename Fn>
void CellIndex::View::ForDays(int64_t from_day, int64_t to_day, Fn&& fn) const {
  for (auto it = mode_->days.lower_bound(from_day); it != mode_->days.end() && it->first < to_day;
       ++it) {
    for (const Cell& c : it->second) fn(it->first, c);
  }
}

template <typename Fn>
bool CellIndex::View::ForRevenue(int64_t from_day, int64_t to_day, Fn&& fn) {
  const absl::CivilDay epoch(1970, 1, 1);
  int64_t from = from_day;
  while (from < to_day) {
    // The next month with cells (months without any are not kept).
    auto cell = mode_->days.lower_bound(from);
    if (cell == mode_->days.end() || cell->first >= to_day) break;
    const int64_t month_day = absl::CivilDay(absl::CivilMonth(epoch + cell->first)) - epoch;
    const CellIndex::Month* month = index_->MonthOf(*st_, *mode_, month_day, false);
    if (month == nullptr) return false;
    for (const DayRevenue& r : month->revenue) {
      if (r.day >= from_day && r.day < to_day) fn(r);
    }
    from = month->end_day;
  }
  return true;
}

template <typename Fn>
void CellIndex::View::ForInstants(Fn&& fn) {
  for (const FlatInstant& c : index_->FlatInstants(*mode_)) fn(c);
}

// The group of a fact of `account` at `t` (SPEC §5 attribution), with the
// account-kind groups as kClientGroupId / kPartnerGroupId.
uint32_t GroupFor(const FactStore& st, v1::GroupBy by, uint32_t account, int64_t t);
uint32_t GroupOfData(const AccountData& a, v1::GroupBy by, int64_t t);
uint32_t DealGroupFor(const FactStore& st, v1::GroupBy by, uint32_t deal, int64_t t);
// Whether the account was a customer at `t` (hunter_share).
bool CustomerAt(const AccountData& a, int64_t t);

// Adds a cell to the accumulator of a bucket whose cell span covers UTC days
// [first_day, end_day): every figure with `whole` (the span is the whole
// bucket), else the plain sums only. `stages` is the number of flat stages.
// Returns the currency whose revenue overflowed, or UINT32_MAX.
uint32_t AddCellTo(const Cell& cell, int64_t first_day, int64_t end_day, bool whole, size_t stages,
                   Acc& a);
// Adds `from` into `a` (money per currency; false on overflow, with the
// currency in *currency).
bool AddAcc(const Acc& from, Acc& a, uint32_t* currency);
// Whether `a` holds a figure (its group then has a row in the bucket: the
// scan would have counted a fact for it). The scan and the report path both
// ask it of accumulators the cells added to.
bool HasFigures(const Acc& a);
// Takes a whole day's cell of orders and completions whose
// post_purchase_contact_rate / feedback_coverage window is still open at
// as_of back out of `a`: feedback_coverage for every such day, the contact
// rate only from `ppc_day` (as_of's day - 7) on.
void TakeOutOpenWindows(const Cell& cell, int64_t day, int64_t ppc_day, Acc& a);

// Tests only: true makes every query scan (the incremental path is off).
void SetForceScanForTesting(bool on);
bool ForceScan();
// Tests only: how many times any engine's cells were built from the facts.
int64_t CellRebuildsForTesting();

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_CELLS_H_
