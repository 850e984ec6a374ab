// Account health (SPEC §5 `health`): a 0..100 score at an instant with the
// contribution of each factor, weighted by the configuration's HealthModel.
#ifndef RAPPORT_LIB_KPI_HEALTH_H_
#define RAPPORT_LIB_KPI_HEALTH_H_

#include <cstdint>
#include <vector>

#include "google/protobuf/repeated_ptr_field.h"
#include "lib/state/engine_state.h"
#include "rapport/v1/config.pb.h"
#include "rapport/v1/kpi.pb.h"

namespace rapport::kpi {

// SPEC §5's defaults: contact within 7/14/30/60 days 30/24/15/6 points;
// complaints none/one/more 20/8/0; feedback score x2 (10 if none); order
// recency up to 20 (10 if never ordered); no overdue invoice 10; red below
// 40, yellow below 70.
v1::HealthModel DefaultHealthModel();

// Appends the health at `as_of` of every account whose first upsert happened
// before `as_of`, ordered by account id. Order recency: full points while the
// time since the last order is within the account's usual interval (the mean
// gap between its orders; with one order, half the churn time), falling
// linearly to 0 at twice that interval.
void AppendHealth(const EngineState& state, int64_t as_of,
                  google::protobuf::RepeatedPtrField<v1::AccountHealth>* out);

// Whether the invoice is overdue at `at` (issued and due before `at`, not
// fully paid by payments before `at`); sets the amount still owed.
bool OverdueAt(const v1::Invoice& invoice, const Timeline<Payment>& payments, int64_t at,
               int64_t* owed);

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_HEALTH_H_
