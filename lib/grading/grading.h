// Grades for account managers (SPEC §6): the ladder, account tiers by ABC
// analysis, assignment violations with suggested owners, and the
// hunter-to-farmer drift.
//
// The KPI figures a grade needs are computed by the KPI engine; this module
// takes them as plain inputs, so the ladder logic reads on its own and is
// tested with hand-made figures.
#ifndef RAPPORT_LIB_GRADING_GRADING_H_
#define RAPPORT_LIB_GRADING_GRADING_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/state/engine_state.h"
#include "rapport/v1/grading.pb.h"

namespace rapport {

// The figures of one manager over the policy's window at as_of.
struct ManagerFigures {
  // Indexed by v1::GradeMetric; nullopt when undefined (a zero denominator).
  // TENURE_DAYS and REVENUE are filled by Evaluate itself.
  std::optional<double> metric[v1::GradeMetric_ARRAYSIZE];
  // Revenue per currency, minor units.
  absl::btree_map<std::string, int64_t> revenue;
  // Over the hunter window; nullopt when the manager made no outbound contact.
  std::optional<double> hunter_share;
};

struct GradingInputs {
  absl::flat_hash_map<std::string, ManagerFigures> managers;
  // Trailing revenue per account index (of EngineState::accounts), per
  // currency, minor units.
  absl::flat_hash_map<uint32_t, absl::btree_map<std::string, int64_t>> account_revenue;
};

// `policy` with defaults for unset window, shares and floor.
// Errors: INVALID_ARGUMENT naming the grade and field (no grades, repeated or
// empty ids, a shares outside (0, 1], a negative limit, a requirement without
// a metric, revenue without a currency).
absl::StatusOr<v1::GradePolicy> GradePolicyWithDefaults(const v1::GradePolicy& policy);

// Evaluates every manager at `as_of_us`. Managers' accounts are the accounts
// they own now that are not churned.
v1::GradeEvaluation EvaluateGrades(const EngineState& state, const v1::GradePolicy& policy,
                                   int64_t as_of_us, const GradingInputs& inputs);

}  // namespace rapport

#endif  // RAPPORT_LIB_GRADING_GRADING_H_
