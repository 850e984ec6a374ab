// KPI queries over the fact store (SPEC §5): validating a query into a plan
// (buckets in a time zone), computing a partial result by scanning, and
// merging partials into a report.
//
// Every figure is computed as the partial of one engine; a report is the
// merge of one or more partials. So a single engine's report and the merge of
// its shards' partials go through the same arithmetic and agree exactly.
#ifndef RAPPORT_LIB_KPI_QUERY_H_
#define RAPPORT_LIB_KPI_QUERY_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "lib/state/engine_state.h"
#include "rapport/v1/kpi.pb.h"

namespace rapport::kpi {

// At most this many buckets per query (100000 days is 273 years).
inline constexpr int64_t kMaxBuckets = 100000;

struct Plan {
  // The query as given, with as_of_us filled in.
  v1::KpiQuery query;
  int64_t as_of = 0;
  // Bucket i is [bounds[i], bounds[i + 1]); the first and last are clipped to
  // the period.
  std::vector<int64_t> bounds;
  int buckets() const { return static_cast<int>(bounds.size()) - 1; }
};

// Errors: INVALID_ARGUMENT for a bad period, as_of, enum, unknown time zone,
// or more than kMaxBuckets buckets (the message names the field).
absl::StatusOr<Plan> MakePlan(const v1::KpiQuery& query);

// The plan's figures over every account of `state`, by a scan of the facts in
// the period (and of entity timelines for the figures at instants).
// Errors: OUT_OF_RANGE when a money sum overflows int64, naming the KPI and
// currency.
absl::StatusOr<v1::KpiPartial> ScanPartial(const EngineState& state, const Plan& plan);

// Merges partials of disjoint shards and computes ratios, growth, NPS and
// medians. Errors: INVALID_ARGUMENT for no partials, partials of different
// queries, or an account in two of them; OUT_OF_RANGE for a money overflow.
absl::StatusOr<v1::KpiReport> MergePartials(absl::Span<const v1::KpiPartial> partials);

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_QUERY_H_
