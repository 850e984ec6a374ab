// The KPI figures grading needs, computed by the KPI engine over the grade
// policy's trailing windows: the same definitions as every other report, so a
// grade never disagrees with the dashboard.
#ifndef RAPPORT_LIB_GRADING_FIGURES_H_
#define RAPPORT_LIB_GRADING_FIGURES_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "lib/grading/grading.h"
#include "lib/state/engine_state.h"

namespace rapport {

// Per manager over [as_of - window, as_of): active partners owned at as_of,
// leads brought by partners the manager owns now, lead conversion, revenue,
// post-purchase contact rate and NPS; hunter share over the hunter window;
// and each account's payments over the window for ABC tiers.
// Errors: those of the KPI queries (OUT_OF_RANGE for a money overflow).
absl::StatusOr<GradingInputs> ComputeGradingInputs(const EngineState& state,
                                                   const v1::GradePolicy& policy, int64_t as_of_us);

}  // namespace rapport

#endif  // RAPPORT_LIB_GRADING_FIGURES_H_
