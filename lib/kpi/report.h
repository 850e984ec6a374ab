// A KPI report of one engine (Engine::Kpis): its scan's partial merged, or,
// for a query the per-day cells answer alone, the report built straight from
// the cells (the incremental dashboard of issue 4).
//
// The cells answer alone a query whose bucket bounds all fall on UTC day
// boundaries, whose as_of is a UTC day boundary after every fact and
// attribution change (as_of 0 with such an end: "now"), and without
// include_health. Such a report skips the partial and the merge: it
// takes whole months' sums and time_to_win medians kept by the cells
// (CellIndex::MonthSum), so it neither copies nor sorts the won deals' days.
// Every figure equals the scan's; tests/kpi_incremental_test.cc compares the
// two byte for byte.
#ifndef RAPPORT_LIB_KPI_REPORT_H_
#define RAPPORT_LIB_KPI_REPORT_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/kpi/query.h"

namespace rapport::kpi {

// The report of `plan` over `state`. Errors: those of ScanPartial.
absl::StatusOr<v1::KpiReport> Report(const EngineState& state, const Plan& plan);

// The same into `*report`, reusing its rows, lines and strings: a host that
// keeps its report between queries of the same shape (a dashboard refreshed
// after ingest) allocates nothing once warm. On error `*report` is unchanged.
absl::Status ReportInto(const EngineState& state, const Plan& plan, v1::KpiReport* report);

// Tests only: how many reports the cells answered alone (no scan).
int64_t CellReportsForTesting();

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_REPORT_H_
