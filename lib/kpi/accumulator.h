// The additive figures of one bucket and group while a partial is built.
#ifndef RAPPORT_LIB_KPI_ACCUMULATOR_H_
#define RAPPORT_LIB_KPI_ACCUMULATOR_H_

#include <cstdint>
#include <utility>
#include <vector>

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

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_ACCUMULATOR_H_
