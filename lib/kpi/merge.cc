// Merging partials of disjoint shards, and turning sums into ratios, growth,
// NPS and medians. A single engine's report goes through here too.
#include <algorithm>
#include <map>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "lib/kpi/query.h"

namespace rapport::kpi {
namespace {

absl::Status Overflow(absl::string_view kpi, absl::string_view currency) {
  return absl::OutOfRangeError(
      absl::StrCat("KPI '", kpi, "': the sum in currency '", currency, "' overflows int64"));
}

bool Add(int64_t* into, int64_t x) { return !__builtin_add_overflow(*into, x, into); }

void AddRatio(v1::Ratio* into, const v1::Ratio& x) {
  into->set_numerator(into->numerator() + x.numerator());
  into->set_denominator(into->denominator() + x.denominator());
}

// Sums `x` into `into` (counts cannot overflow: they count events).
absl::Status AddValues(v1::KpiValues* into, const v1::KpiValues& x) {
  into->set_partners_active_start(into->partners_active_start() + x.partners_active_start());
  into->set_partners_active_end(into->partners_active_end() + x.partners_active_end());
  into->set_partners_new(into->partners_new() + x.partners_new());
  into->set_partners_churned(into->partners_churned() + x.partners_churned());
  AddRatio(into->mutable_partner_growth(), x.partner_growth());
  into->set_leads(into->leads() + x.leads());
  AddRatio(into->mutable_lead_conversion(), x.lead_conversion());
  into->set_clients_new(into->clients_new() + x.clients_new());
  AddRatio(into->mutable_repeat_order_share(), x.repeat_order_share());
  AddRatio(into->mutable_repeat_customer_rate(), x.repeat_customer_rate());
  AddRatio(into->mutable_referral_rate(), x.referral_rate());
  for (const v1::RevenueLine& r : x.revenue()) {
    v1::RevenueLine* line = nullptr;
    for (v1::RevenueLine& l : *into->mutable_revenue()) {
      if (l.currency() == r.currency()) line = &l;
    }
    if (line == nullptr) {
      line = into->add_revenue();
      line->set_currency(r.currency());
    }
    int64_t amount = line->amount_minor(), previous = line->previous_minor();
    if (!Add(&amount, r.amount_minor())) return Overflow("revenue", r.currency());
    if (!Add(&previous, r.previous_minor())) return Overflow("revenue_growth", r.currency());
    line->set_amount_minor(amount);
    line->set_previous_minor(previous);
  }
  v1::ActivityCounts* a = into->mutable_activities();
  const v1::ActivityCounts& b = x.activities();
  a->set_calls_outbound(a->calls_outbound() + b.calls_outbound());
  a->set_calls_inbound(a->calls_inbound() + b.calls_inbound());
  a->set_emails_outbound(a->emails_outbound() + b.emails_outbound());
  a->set_emails_inbound(a->emails_inbound() + b.emails_inbound());
  a->set_messengers_outbound(a->messengers_outbound() + b.messengers_outbound());
  a->set_messengers_inbound(a->messengers_inbound() + b.messengers_inbound());
  a->set_meetings_outbound(a->meetings_outbound() + b.meetings_outbound());
  a->set_meetings_inbound(a->meetings_inbound() + b.meetings_inbound());
  AddRatio(into->mutable_post_purchase_contact_rate(), x.post_purchase_contact_rate());
  AddRatio(into->mutable_feedback_coverage(), x.feedback_coverage());
  into->set_nps_promoters(into->nps_promoters() + x.nps_promoters());
  into->set_nps_detractors(into->nps_detractors() + x.nps_detractors());
  into->set_nps_responses(into->nps_responses() + x.nps_responses());
  for (const v1::StageConversion& sc : x.stage_conversion()) {
    v1::StageConversion* line = nullptr;
    for (v1::StageConversion& l : *into->mutable_stage_conversion()) {
      if (l.pipeline_id() == sc.pipeline_id() && l.stage_index() == sc.stage_index()) line = &l;
    }
    if (line == nullptr) {
      line = into->add_stage_conversion();
      line->set_pipeline_id(sc.pipeline_id());
      line->set_stage(sc.stage());
      line->set_stage_index(sc.stage_index());
    }
    AddRatio(line->mutable_conversion(), sc.conversion());
  }
  AddRatio(into->mutable_win_rate(), x.win_rate());
  AddRatio(into->mutable_client_churn_rate(), x.client_churn_rate());
  into->set_stuck_deals(into->stuck_deals() + x.stuck_deals());
  into->set_receivables_overdue_count(into->receivables_overdue_count() +
                                      x.receivables_overdue_count());
  for (const v1::Money& m : x.receivables_overdue()) {
    v1::Money* line = nullptr;
    for (v1::Money& l : *into->mutable_receivables_overdue()) {
      if (l.currency() == m.currency()) line = &l;
    }
    if (line == nullptr) {
      line = into->add_receivables_overdue();
      line->set_currency(m.currency());
    }
    int64_t amount = line->amount_minor();
    if (!Add(&amount, m.amount_minor())) return Overflow("receivables_overdue", m.currency());
    line->set_amount_minor(amount);
  }
  AddRatio(into->mutable_hunter_share(), x.hunter_share());
  return absl::OkStatus();
}

void Finish(v1::Ratio* r) {
  if (r->denominator() != 0) {
    r->set_value(static_cast<double>(r->numerator()) / static_cast<double>(r->denominator()));
  } else {
    r->clear_value();
  }
}

void Finalize(v1::KpiValues* v, std::vector<double>* ttw) {
  Finish(v->mutable_partner_growth());
  Finish(v->mutable_lead_conversion());
  Finish(v->mutable_repeat_order_share());
  Finish(v->mutable_repeat_customer_rate());
  Finish(v->mutable_referral_rate());
  std::sort(v->mutable_revenue()->begin(), v->mutable_revenue()->end(),
            [](const v1::RevenueLine& a, const v1::RevenueLine& b) {
              return a.currency() < b.currency();
            });
  for (v1::RevenueLine& r : *v->mutable_revenue()) {
    if (r.previous_minor() != 0) {
      const __int128 diff = static_cast<__int128>(r.amount_minor()) - r.previous_minor();
      r.set_growth(static_cast<double>(diff) / static_cast<double>(r.previous_minor()));
    }
  }
  Finish(v->mutable_post_purchase_contact_rate());
  Finish(v->mutable_feedback_coverage());
  if (v->nps_responses() != 0) {
    v->set_nps(100.0 * static_cast<double>(v->nps_promoters() - v->nps_detractors()) /
               static_cast<double>(v->nps_responses()));
  }
  std::sort(v->mutable_stage_conversion()->begin(), v->mutable_stage_conversion()->end(),
            [](const v1::StageConversion& a, const v1::StageConversion& b) {
              return a.pipeline_id() != b.pipeline_id() ? a.pipeline_id() < b.pipeline_id()
                                                        : a.stage_index() < b.stage_index();
            });
  for (v1::StageConversion& sc : *v->mutable_stage_conversion()) Finish(sc.mutable_conversion());
  Finish(v->mutable_win_rate());
  if (!ttw->empty()) {
    if (!std::is_sorted(ttw->begin(), ttw->end())) std::sort(ttw->begin(), ttw->end());
    const size_t n = ttw->size();
    v->set_time_to_win_days(n % 2 == 1 ? (*ttw)[n / 2] : ((*ttw)[n / 2 - 1] + (*ttw)[n / 2]) / 2);
  }
  Finish(v->mutable_client_churn_rate());
  std::sort(v->mutable_receivables_overdue()->begin(), v->mutable_receivables_overdue()->end(),
            [](const v1::Money& a, const v1::Money& b) { return a.currency() < b.currency(); });
  Finish(v->mutable_hunter_share());
}

}  // namespace

absl::StatusOr<v1::KpiReport> MergePartials(absl::Span<const v1::KpiPartial> parts) {
  if (parts.empty()) return absl::InvalidArgumentError("KPI merge: no partials");
  const std::string query = parts[0].query().SerializeAsString();
  struct Merged {
    v1::KpiValues values;
    std::vector<double> ttw;
  };
  std::map<std::tuple<int64_t, int64_t, std::string>, Merged> rows;
  v1::KpiReport report;
  *report.mutable_query() = parts[0].query();
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].query().SerializeAsString() != query) {
      return absl::InvalidArgumentError(
          absl::StrCat("KPI merge: partial ", i, " answers another query than partial 0"));
    }
    for (const v1::KpiPartial::Row& r : parts[i].rows()) {
      Merged& m = rows[{r.bucket_start_us(), r.bucket_end_us(), r.group()}];
      if (absl::Status st = AddValues(&m.values, r.values()); !st.ok()) return st;
      m.ttw.insert(m.ttw.end(), r.time_to_win_days().begin(), r.time_to_win_days().end());
    }
    for (const v1::AccountHealth& h : parts[i].health()) *report.add_health() = h;
  }
  for (auto& [key, m] : rows) {
    v1::KpiRow* row = report.add_rows();
    row->set_bucket_start_us(std::get<0>(key));
    row->set_bucket_end_us(std::get<1>(key));
    row->set_group(std::get<2>(key));
    Finalize(&m.values, &m.ttw);
    *row->mutable_values() = std::move(m.values);
  }
  auto* health = report.mutable_health();
  std::sort(health->begin(), health->end(),
            [](const v1::AccountHealth& a, const v1::AccountHealth& b) {
              return a.account_id() < b.account_id();
            });
  for (int i = 1; i < health->size(); ++i) {
    if (health->Get(i).account_id() == health->Get(i - 1).account_id()) {
      return absl::InvalidArgumentError(
          absl::StrCat("KPI merge: account '", health->Get(i).account_id(),
                       "' appears in two partials (shards must hold disjoint accounts)"));
    }
  }
  return report;
}

}  // namespace rapport::kpi
