// Per-UTC-day partial aggregates of the KPIs that are plain sums over facts
// (the incremental dashboard of issue 4).
//
// For every grouping mode that has been queried once, the index keeps one
// cell per (UTC day, group) with the counts of partners_new/churned, leads
// and leads ever won, activities and hunter_share, NPS, and revenue per
// currency. A query whose buckets span whole UTC days reads those cells and
// scans only the partial days at its edges; lead_conversion's "won before
// as_of" is corrected by a scan of the wins at or after as_of (few for a
// dashboard, whose as_of is now).
//
// Cells follow ingest exactly. A fact adds to its own cell; a deal's first
// win adds to its lead's cell. Where an event changes the contribution of
// facts already counted in ways a fix-up cannot cheaply know (an account
// upsert that re-attributes past facts, a late order or partner status
// event that changes whether earlier outbound contacts were "hunting"), the
// index is marked stale and rebuilt from the fact store by the next query
// (one pass; never an approximation).
//
// Thread-safety: ingest calls run under the engine's writer lock; queries run
// under its reader lock, possibly concurrently, so the index has its own
// mutex for the lazy build.
#ifndef RAPPORT_LIB_KPI_CELLS_H_
#define RAPPORT_LIB_KPI_CELLS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "lib/util/shared_mutex.h"
#include "lib/kpi/fact_store.h"
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
  kCellFields,
};

struct Cell {
  uint32_t group = 0;
  int64_t c[kCellFields] = {};
  // (currency id, sum).
  std::vector<std::pair<uint32_t, int64_t>> revenue;
  // time_to_win in days of the deals won here.
  std::vector<double> time_to_win;
};

// What a won or lost fact did to its deal's first win or loss.
enum class FirstChange : uint8_t {
  kNone,      // not the deal's first (an earlier one stands)
  kFirst,     // the deal's first, where it had none
  kReplaced,  // a late fact before the deal's previous first
};

class CellIndex {
 public:
  static constexpr int kModes = 6;  // v1::GroupBy values 0..5

  // Ingest hooks (writer lock held). `first` says, for won and lost facts,
  // how the fact changed its deal's first win or loss.
  void OnFact(const FactStore& st, FactKind kind, int64_t t, const Fact& f, FirstChange first);
  // An account upsert changed `before` into the store's current data.
  void OnAccountChange(const FactStore& st, uint32_t account, const AccountData& before);

  // Calls fn(cell) for every cell of `mode` on UTC days [from_day, to_day),
  // building the mode's cells first if needed. False (fn not called) when the
  // cells cannot be used (a money sum in a cell overflowed).
  bool ForDays(const FactStore& st, v1::GroupBy mode, int64_t from_day, int64_t to_day,
               const std::function<void(const Cell&)>& fn);

  size_t MemoryBytes() const;

 private:
  struct Mode {
    bool built = false;
    std::map<int64_t, std::vector<Cell>> days;
  };
  void Contribute(const FactStore& st, int mode, FactKind kind, int64_t t, const Fact& f);
  void Rebuild(const FactStore& st, int mode);
  void MarkStale();
  Cell& At(int mode, int64_t t, uint32_t group);

  mutable SharedMutex mu_;
  Mode modes_[kModes];
  bool overflow_ = false;
  // The latest fact time of each account (kMin: none), to tell whether an
  // attribution change reaches facts already counted.
  std::vector<int64_t> last_t_;
};

// The group of a fact of `account` at `t` (SPEC §5 attribution), with the
// account-kind groups as kClientGroupId / kPartnerGroupId.
uint32_t GroupFor(const FactStore& st, v1::GroupBy by, uint32_t account, int64_t t);
uint32_t DealGroupFor(const FactStore& st, v1::GroupBy by, uint32_t deal, int64_t t);
// Whether the account was a customer at `t` (hunter_share).
bool CustomerAt(const AccountData& a, int64_t t);

// Tests only: true makes every query scan (the incremental path is off).
void SetForceScanForTesting(bool on);
bool ForceScan();
// Tests only: how many times any engine's cells were built from the facts.
int64_t CellRebuildsForTesting();

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_CELLS_H_
