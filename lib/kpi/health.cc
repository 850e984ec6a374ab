#include "lib/kpi/health.h"

#include <algorithm>
#include <string>

#include "rapport/engine.h"

namespace rapport::kpi {

v1::HealthModel DefaultHealthModel() {
  v1::HealthModel m;
  for (int d : {7, 14, 30, 60}) m.add_contact_days(d);
  for (double p : {30.0, 24.0, 15.0, 6.0}) m.add_contact_points(p);
  m.set_complaints_none(20);
  m.set_complaints_one(8);
  m.set_complaints_more(0);
  m.set_feedback_per_point(2);
  m.set_feedback_none(10);
  m.set_recency_max(20);
  m.set_recency_never(10);
  m.set_no_overdue(10);
  m.set_red_below(40);
  m.set_yellow_below(70);
  return m;
}

namespace {

void Factor(v1::AccountHealth* h, const char* name, double points, double max_points) {
  v1::HealthFactor* f = h->add_factors();
  f->set_name(name);
  f->set_points(points);
  f->set_max_points(max_points);
  h->set_score(h->score() + points);
}

}  // namespace

void AppendHealth(const EngineState& s, int64_t as_of,
                  google::protobuf::RepeatedPtrField<v1::AccountHealth>* out) {
  const v1::HealthModel m = s.config.has_health() ? s.config.health() : DefaultHealthModel();
  const FactStore& st = s.kpi;
  const size_t n = st.accounts.size();
  std::vector<int32_t> open(n, 0);
  for (const v1::Complaint& c : s.complaints.rows()) {
    if (c.opened_at_us() < as_of && (c.resolved_at_us() == 0 || c.resolved_at_us() >= as_of)) {
      ++open[s.accounts.IndexOf(c.account_id())];
    }
  }
  std::vector<bool> overdue(n, false);
  for (uint32_t i = 0; i < s.invoices.size(); ++i) {
    int64_t owed;
    const v1::Invoice& inv = s.invoices.at(i);
    if (OverdueAt(inv, st.invoice_payments[i], as_of, &owed))
      overdue[s.accounts.IndexOf(inv.account_id())] = true;
  }
  double contact_max = 0;
  for (double p : m.contact_points()) contact_max = std::max(contact_max, p);

  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < n; ++i) {
    if (!st.accounts[i].attr.empty() && st.accounts[i].attr.front().t() < as_of) order.push_back(i);
  }
  std::sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
    return s.accounts.at(x).account_id() < s.accounts.at(y).account_id();
  });
  for (uint32_t i : order) {
    const AccountData& a = st.accounts[i];
    v1::AccountHealth* h = out->Add();
    h->set_account_id(s.accounts.at(i).account_id());
    auto attr = std::upper_bound(a.attr.begin(), a.attr.end(), as_of,
                                 [](int64_t x, const AttrEntry& e) { return x < e.t(); });
    h->set_owner_id(st.strings.at((attr == a.attr.begin() ? a.attr.front() : *(attr - 1)).owner));

    // Last outbound contact before as_of.
    double contact = 0;
    auto o = std::lower_bound(a.outbound.begin(), a.outbound.end(), as_of);
    if (o != a.outbound.begin()) {
      const int64_t since = as_of - *(o - 1);
      for (int k = 0; k < m.contact_days_size() && k < m.contact_points_size(); ++k) {
        if (since <= m.contact_days(k) * kMicrosPerDay) {
          contact = m.contact_points(k);
          break;
        }
      }
    }
    Factor(h, "last_outbound_contact", contact, contact_max);

    const double complaints = open[i] == 0   ? m.complaints_none()
                              : open[i] == 1 ? m.complaints_one()
                                             : m.complaints_more();
    Factor(h, "open_complaints", complaints, m.complaints_none());

    auto f = std::lower_bound(a.feedback.begin(), a.feedback.end(), as_of,
                              [](const FeedbackRef& r, int64_t x) { return r.t < x; });
    Factor(h, "latest_feedback",
           f == a.feedback.begin() ? m.feedback_none() : (f - 1)->score * m.feedback_per_point(),
           10 * m.feedback_per_point());

    auto last = std::lower_bound(a.orders.begin(), a.orders.end(), as_of,
                                 [](const OrderRef& r, int64_t x) { return r.at.t < x; });
    const int64_t count = last - a.orders.begin();
    double recency = m.recency_never();
    if (count > 0) {
      const int64_t last_t = (last - 1)->at.t;
      double usual = count >= 2 ? static_cast<double>(last_t - a.orders.front().at.t) /
                                      static_cast<double>(count - 1)
                                : static_cast<double>(s.config.client_churn_after_us()) / 2;
      usual = std::max(usual, 1.0);
      const double ratio = static_cast<double>(as_of - last_t) / usual;
      recency = m.recency_max() * std::clamp(2.0 - ratio, 0.0, 1.0);
    }
    Factor(h, "order_recency", recency, m.recency_max());
    Factor(h, "no_overdue_invoices", overdue[i] ? 0.0 : m.no_overdue(), m.no_overdue());
    h->set_band(h->score() < m.red_below()      ? "red"
                : h->score() < m.yellow_below() ? "yellow"
                                                : "green");
  }
}

}  // namespace rapport::kpi
