#include "lib/grading/figures.h"

#include <algorithm>

#include "lib/kpi/query.h"
#include "rapport/engine.h"

namespace rapport {
namespace {

absl::StatusOr<v1::KpiReport> Query(const EngineState& state, int64_t window, int64_t as_of,
                                    v1::GroupBy group_by) {
  v1::KpiQuery q;
  q.set_start_us(std::max<int64_t>(kMinTimeUs, as_of - window));
  q.set_end_us(std::max<int64_t>(as_of, q.start_us() + 1));
  q.set_as_of_us(as_of);
  q.set_group_by(group_by);
  absl::StatusOr<kpi::Plan> plan = kpi::MakePlan(q);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<v1::KpiPartial> partial = kpi::ScanPartial(state, *plan);
  if (!partial.ok()) return partial.status();
  return kpi::MergePartials(absl::MakeConstSpan(&*partial, 1));
}

std::optional<double> Value(const v1::Ratio& r) {
  return r.has_value() ? std::optional<double>(r.value()) : std::nullopt;
}

}  // namespace

absl::StatusOr<GradingInputs> ComputeGradingInputs(const EngineState& state,
                                                   const v1::GradePolicy& policy, int64_t as_of) {
  GradingInputs in;
  absl::StatusOr<v1::KpiReport> by_manager =
      Query(state, policy.window_us(), as_of, v1::GROUP_BY_MANAGER);
  if (!by_manager.ok()) return by_manager.status();
  for (const v1::KpiRow& row : by_manager->rows()) {
    if (row.group().empty()) continue;
    ManagerFigures& f = in.managers[row.group()];
    const v1::KpiValues& v = row.values();
    f.metric[v1::GRADE_METRIC_ACTIVE_PARTNERS_OWNED] = static_cast<double>(v.partners_active_end());
    f.metric[v1::GRADE_METRIC_LEAD_CONVERSION] = Value(v.lead_conversion());
    f.metric[v1::GRADE_METRIC_POST_PURCHASE_CONTACT_RATE] = Value(v.post_purchase_contact_rate());
    if (v.has_nps()) f.metric[v1::GRADE_METRIC_NPS] = v.nps();
    for (const v1::RevenueLine& r : v.revenue()) f.revenue[r.currency()] = r.amount_minor();
  }

  // Leads by source partner, credited to each partner's owner now.
  absl::StatusOr<v1::KpiReport> by_partner =
      Query(state, policy.window_us(), as_of, v1::GROUP_BY_SOURCE_PARTNER);
  if (!by_partner.ok()) return by_partner.status();
  for (const v1::Manager& m : state.managers.rows()) {
    in.managers[m.manager_id()].metric[v1::GRADE_METRIC_LEADS_FROM_OWNED_PARTNERS] = 0;
  }
  for (const v1::KpiRow& row : by_partner->rows()) {
    const v1::Account* partner = state.accounts.Find(row.group());
    if (partner == nullptr || partner->owner_id().empty()) continue;
    auto& leads =
        in.managers[partner->owner_id()].metric[v1::GRADE_METRIC_LEADS_FROM_OWNED_PARTNERS];
    leads = leads.value_or(0) + static_cast<double>(row.values().leads());
  }

  absl::StatusOr<v1::KpiReport> hunters =
      Query(state, policy.hunter_window_us(), as_of, v1::GROUP_BY_MANAGER);
  if (!hunters.ok()) return hunters.status();
  for (const v1::KpiRow& row : hunters->rows()) {
    if (row.group().empty()) continue;
    in.managers[row.group()].hunter_share = Value(row.values().hunter_share());
  }

  // Each account's payments in the window, for ABC analysis.
  const kpi::FactColumn& payments = state.kpi.column(kpi::FactKind::kPayment);
  payments.ForRange(std::max<int64_t>(kMinTimeUs, as_of - policy.window_us()), as_of,
                    [&](int64_t, const kpi::Fact& f) {
                      int64_t& sum = in.account_revenue[f.account][state.kpi.strings.at(f.aux)];
                      // Saturating: a tier only needs the order of magnitude.
                      if (__builtin_add_overflow(sum, f.value, &sum)) sum = INT64_MAX;
                    });
  return in;
}

}  // namespace rapport
