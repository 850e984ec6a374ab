// The body of ReferenceKpis::Report (kept apart only for length).
#ifndef RAPPORT_TESTS_KPI_REFERENCE_IMPL_H_
#define RAPPORT_TESTS_KPI_REFERENCE_IMPL_H_

namespace rapport::test {

inline std::vector<int64_t> ReferenceKpis::Bounds(const v1::KpiQuery& q) {
  std::vector<int64_t> b{q.start_us()};
  if (q.bucket() != v1::BUCKET_NONE) {
    absl::TimeZone tz = absl::UTCTimeZone();
    if (!q.time_zone().empty()) absl::LoadTimeZone(q.time_zone(), &tz);
    const absl::CivilSecond local = absl::ToCivilSecond(absl::FromUnixMicros(q.start_us()), tz);
    // Every candidate boundary from one unit before the start on.
    absl::CivilDay day = absl::CivilDay(local);
    for (int guard = 0; guard < 200000; ++guard, day += 1) {
      bool boundary = false;
      switch (q.bucket()) {
        case v1::BUCKET_DAY:
          boundary = true;
          break;
        case v1::BUCKET_WEEK:
          boundary = absl::GetWeekday(day) == absl::Weekday::monday;
          break;
        case v1::BUCKET_MONTH:
          boundary = day.day() == 1;
          break;
        case v1::BUCKET_QUARTER:
          boundary = day.day() == 1 && (day.month() - 1) % 3 == 0;
          break;
        default:
          boundary = day.day() == 1 && day.month() == 1;
          break;
      }
      if (!boundary) continue;
      const auto info = tz.At(absl::CivilSecond(day));
      const int64_t x = absl::ToUnixMicros(
          info.kind == absl::TimeZone::TimeInfo::SKIPPED ? info.trans : info.pre);
      if (x >= q.end_us()) break;
      if (x > b.back()) b.push_back(x);
    }
  }
  b.push_back(q.end_us());
  return b;
}

struct RefVals {
  std::map<std::string, int64_t> n;                                    // counters by name
  std::map<std::string, std::pair<int64_t, int64_t>> revenue, stages;  // (amount, previous)
  std::map<std::string, int64_t> recv;
  std::vector<double> ttw;
};

inline void RefRatio(v1::Ratio* r, int64_t num, int64_t den) {
  r->set_numerator(num);
  r->set_denominator(den);
  if (den != 0) r->set_value(static_cast<double>(num) / static_cast<double>(den));
}

inline v1::KpiReport ReferenceKpis::Report(const v1::KpiQuery& q0) const {
  v1::KpiQuery q = q0;
  if (q.as_of_us() == 0) q.set_as_of_us(q.end_us());
  const int64_t as_of = q.as_of_us();
  const std::vector<int64_t> bounds = Bounds(q);
  const int nb = static_cast<int>(bounds.size()) - 1;
  std::vector<std::map<std::string, RefVals>> rows(static_cast<size_t>(nb));
  if (q.group_by() == v1::GROUP_BY_NONE)
    for (auto& r : rows) r[""];
  auto in = [](int64_t t, int64_t a, int64_t b) { return t >= a && t < b; };

  for (int b = 0; b < nb; ++b) {
    const int64_t lo = bounds[b], hi = bounds[b + 1];
    auto& row = rows[static_cast<size_t>(b)];
    std::set<std::string> rcr_seen;
    std::set<std::pair<std::string, int>> stage_seen;
    for (size_t i = 0; i < ev_.size(); ++i) {
      const v1::Event& e = ev_[i];
      const int64_t t = e.occurred_at_us();
      const St me{t, static_cast<int64_t>(i)};
      // Revenue of the previous period of equal length.
      if (e.has_payment_received() && t >= std::max<int64_t>(0, lo - (hi - lo)) && t < lo) {
        row[Group(q, e.payment_received().account_id(), t)]
            .revenue[e.payment_received().amount().currency()]
            .second += e.payment_received().amount().amount_minor();
      }
      if (!in(t, lo, hi)) continue;
      if (e.has_lead_created()) {
        const Deal& d = deals_.at(e.lead_created().deal_id());
        RefVals& v = row[DealGroup(q, d, t)];
        v.n["leads"]++;
        if (MinOf(d.wins).first < as_of) v.n["leads_won"]++;
      }
      if (e.has_partner_agreed()) row[Group(q, e.partner_agreed().account_id(), t)].n["pnew"]++;
      if (e.has_partner_churned())
        row[Group(q, e.partner_churned().account_id(), t)].n["pchurned"]++;
      if (e.has_order_placed()) {
        const std::string& acc = e.order_placed().account_id();
        RefVals& v = row[Group(q, acc, t)];
        v.n["orders"]++;
        const std::vector<St> all = OrdersOf(acc);
        if (all.front() == me) {
          v.n["clients_new"]++;
          if (!accounts_.at(acc).referred_by.empty()) v.n["referred"]++;
        } else {
          v.n["repeat_orders"]++;
        }
        // The account's first order in this bucket.
        St first_here{kInf, kInf};
        for (const St& o : all)
          if (in(o.first, lo, hi)) first_here = std::min(first_here, o);
        if (first_here == me) {
          v.n["rcr_den"]++;
          int before_end = 0;
          for (const St& o : all)
            if (o.first < hi) ++before_end;
          if (before_end >= 2) v.n["rcr_num"]++;
        }
        if (t + 7 * kDay < as_of) {
          v.n["ppc_den"]++;
          bool contacted = false;
          for (const v1::Event& x : ev_) {
            if (x.has_activity() && x.activity().account_id() == acc &&
                x.activity().direction() == v1::DIRECTION_OUTBOUND && x.occurred_at_us() > t &&
                x.occurred_at_us() <= t + 7 * kDay)
              contacted = true;
          }
          if (contacted) v.n["ppc_num"]++;
        }
      }
      if (e.has_order_completed()) {
        const Order& o = orders_.at(e.order_completed().order_id());
        // Only the completion that took effect (the first to arrive).
        bool effective = true;
        for (size_t j = 0; j < i; ++j) {
          if (ev_[j].has_order_completed() &&
              ev_[j].order_completed().order_id() == e.order_completed().order_id())
            effective = false;
        }
        if (effective && t + 30 * kDay < as_of) {
          RefVals& v = row[Group(q, o.account, t)];
          v.n["fb_den"]++;
          bool covered = false;
          for (const v1::Event& x : ev_) {
            if (x.has_feedback_received() && x.feedback_received().account_id() == o.account &&
                x.occurred_at_us() > t && x.occurred_at_us() <= t + 30 * kDay)
              covered = true;
          }
          if (covered) v.n["fb_num"]++;
        }
      }
      if (e.has_payment_received()) {
        row[Group(q, e.payment_received().account_id(), t)]
            .revenue[e.payment_received().amount().currency()]
            .first += e.payment_received().amount().amount_minor();
      }
      if (e.has_activity()) {
        const auto& a = e.activity();
        RefVals& v = row[q.group_by() == v1::GROUP_BY_MANAGER ? a.manager_id()
                                                              : Group(q, a.account_id(), t)];
        const bool inbound = a.direction() == v1::DIRECTION_INBOUND;
        v.n["act" + std::to_string((a.kind() - 1) * 2 + (inbound ? 1 : 0))]++;
        if (!inbound) {
          v.n["hunter_den"]++;
          bool customer;
          if (accounts_.at(a.account_id()).kind == v1::ACCOUNT_KIND_PARTNER) {
            customer = PartnerActive(a.account_id(), t);
          } else {
            customer = false;
            for (const St& o : OrdersOf(a.account_id()))
              if (o.first < t) customer = true;
          }
          if (!customer) v.n["hunter_num"]++;
        }
      }
      if (e.has_feedback_received()) {
        RefVals& v = row[Group(q, e.feedback_received().account_id(), t)];
        v.n["nps_n"]++;
        if (e.feedback_received().score() >= 9) v.n["nps_p"]++;
        if (e.feedback_received().score() <= 6) v.n["nps_d"]++;
      }
    }
    // Deals: stage entries, wins, losses.
    for (const auto& [id, d] : deals_) {
      const v1::Pipeline& p = PipelineOf(d.pipeline);
      for (int s = 0; s < p.stages_size(); ++s) {
        St first{kInf, kInf};
        for (const auto& [st, stage] : d.entries)
          if (stage == s && in(st.first, lo, hi)) first = std::min(first, st);
        if (first.first == kInf) continue;
        bool converted = false;
        for (const auto& [st, stage] : d.entries)
          if (stage > s && st > first && st.first < as_of) converted = true;
        auto& cell =
            row[DealGroup(q, d, first.first)].stages[d.pipeline + "\x01" + std::to_string(100 + s)];
        cell.first++;
        if (converted) cell.second++;
      }
      const St won = MinOf(d.wins), lost = MinOf(d.losses);
      if (in(won.first, lo, hi)) {
        RefVals& v = row[DealGroup(q, d, won.first)];
        v.n["won"]++;
        v.ttw.push_back(static_cast<double>(won.first - d.created) / static_cast<double>(kDay));
      }
      if (in(lost.first, lo, hi)) row[DealGroup(q, d, lost.first)].n["lost"]++;
    }
  }

  // Figures at instants.
  for (const auto& [id, a] : accounts_) {
    if (a.kind == v1::ACCOUNT_KIND_PARTNER) {
      for (int b = 0; b < nb; ++b) {
        if (PartnerActive(id, bounds[b])) rows[b][Group(q, id, bounds[b])].n["pas"]++;
        if (PartnerActive(id, bounds[b + 1])) rows[b][Group(q, id, bounds[b + 1])].n["pae"]++;
      }
      continue;
    }
    // Client status over time: replay orders and churn events in order.
    std::vector<std::pair<St, bool>> tl;  // (stamp, is order)
    for (const St& o : OrdersOf(id)) tl.push_back({o, true});
    for (size_t i = 0; i < ev_.size(); ++i) {
      if (ev_[i].has_account_churned() && ev_[i].account_churned().account_id() == id) {
        tl.push_back({{ev_[i].occurred_at_us(), static_cast<int64_t>(i)}, false});
      }
    }
    std::sort(tl.begin(), tl.end());
    std::vector<std::pair<int64_t, int64_t>> spans;  // client during (from, to]
    bool client = false;
    int64_t since = 0, deadline = 0;
    for (const auto& [st, order] : tl) {
      if (client && deadline < st.first) {
        spans.push_back({since, deadline});
        client = false;
      }
      if (order) {
        if (!client) since = st.first;
        client = true;
        deadline = st.first + config_.client_churn_after_us();
      } else if (client) {
        spans.push_back({since, st.first});
        client = false;
      }
    }
    if (client) spans.push_back({since, deadline});
    for (int b = 0; b < nb; ++b) {
      for (const auto& [from, to] : spans) {
        if (from < bounds[b] && bounds[b] <= to) rows[b][Group(q, id, bounds[b])].n["churn_den"]++;
        if (in(to, bounds[b], bounds[b + 1])) rows[b][Group(q, id, to)].n["churn_num"]++;
      }
    }
  }
  for (const auto& [id, d] : deals_) {
    if (MinOf(d.losses).first < as_of) continue;
    St last{-1, -1};
    int stage = -1;
    for (const auto& [st, s] : d.entries)
      if (st.first < as_of && st > last) {
        last = st;
        stage = s;
      }
    if (stage < 0) continue;
    const v1::Pipeline& p = PipelineOf(d.pipeline);
    if (stage == p.stages_size() - 1) continue;
    const int64_t sla = p.stages(stage).sla_us();
    if (sla <= 0 || as_of - last.first <= sla) continue;
    for (int b = 0; b < nb; ++b) rows[b][DealGroup(q, d, as_of)].n["stuck"]++;
  }
  for (size_t i = 0; i < ev_.size(); ++i) {
    if (!ev_[i].has_invoice_issued()) continue;
    const auto& inv = ev_[i].invoice_issued();
    if (ev_[i].occurred_at_us() >= as_of || inv.due_at_us() >= as_of) continue;
    int64_t paid = 0;
    for (const v1::Event& x : ev_) {
      if (x.has_payment_received() && x.payment_received().invoice_id() == inv.invoice_id() &&
          x.occurred_at_us() < as_of)
        paid += x.payment_received().amount().amount_minor();
    }
    if (paid >= inv.amount().amount_minor()) continue;
    for (int b = 0; b < nb; ++b) {
      RefVals& v = rows[b][Group(q, inv.account_id(), as_of)];
      v.n["recv"]++;
      v.recv[inv.amount().currency()] += inv.amount().amount_minor() - paid;
    }
  }

  v1::KpiReport out;
  *out.mutable_query() = q;
  for (int b = 0; b < nb; ++b) {
    for (auto& [group, v] : rows[b]) {
      v1::KpiRow* r = out.add_rows();
      r->set_bucket_start_us(bounds[b]);
      r->set_bucket_end_us(bounds[b + 1]);
      r->set_group(group);
      auto n = [&](const char* k) {
        auto it = v.n.find(k);
        return it == v.n.end() ? int64_t{0} : it->second;
      };
      v1::KpiValues* x = r->mutable_values();
      x->set_partners_active_start(n("pas"));
      x->set_partners_active_end(n("pae"));
      x->set_partners_new(n("pnew"));
      x->set_partners_churned(n("pchurned"));
      RefRatio(x->mutable_partner_growth(), n("pae") - n("pas"), n("pas"));
      x->set_leads(n("leads"));
      RefRatio(x->mutable_lead_conversion(), n("leads_won"), n("leads"));
      x->set_clients_new(n("clients_new"));
      RefRatio(x->mutable_repeat_order_share(), n("repeat_orders"), n("orders"));
      RefRatio(x->mutable_repeat_customer_rate(), n("rcr_num"), n("rcr_den"));
      RefRatio(x->mutable_referral_rate(), n("referred"), n("clients_new"));
      for (const auto& [cur, amounts] : v.revenue) {
        v1::RevenueLine* l = x->add_revenue();
        l->set_currency(cur);
        l->set_amount_minor(amounts.first);
        l->set_previous_minor(amounts.second);
        if (amounts.second != 0) {
          l->set_growth(static_cast<double>(static_cast<__int128>(amounts.first) - amounts.second) /
                        static_cast<double>(amounts.second));
        }
      }
      v1::ActivityCounts* a = x->mutable_activities();
      a->set_calls_outbound(n("act0"));
      a->set_calls_inbound(n("act1"));
      a->set_emails_outbound(n("act2"));
      a->set_emails_inbound(n("act3"));
      a->set_messengers_outbound(n("act4"));
      a->set_messengers_inbound(n("act5"));
      a->set_meetings_outbound(n("act6"));
      a->set_meetings_inbound(n("act7"));
      RefRatio(x->mutable_post_purchase_contact_rate(), n("ppc_num"), n("ppc_den"));
      RefRatio(x->mutable_feedback_coverage(), n("fb_num"), n("fb_den"));
      x->set_nps_promoters(n("nps_p"));
      x->set_nps_detractors(n("nps_d"));
      x->set_nps_responses(n("nps_n"));
      if (n("nps_n") != 0)
        x->set_nps(100.0 * static_cast<double>(n("nps_p") - n("nps_d")) /
                   static_cast<double>(n("nps_n")));
      for (const auto& [key, c] : v.stages) {
        const size_t cut = key.find('\x01');
        const std::string pipeline = key.substr(0, cut);
        const int s = std::stoi(key.substr(cut + 1)) - 100;
        v1::StageConversion* sc = x->add_stage_conversion();
        sc->set_pipeline_id(pipeline);
        sc->set_stage(PipelineOf(pipeline).stages(s).id());
        sc->set_stage_index(s);
        RefRatio(sc->mutable_conversion(), c.second, c.first);
      }
      RefRatio(x->mutable_win_rate(), n("won"), n("won") + n("lost"));
      if (!v.ttw.empty()) {
        std::sort(v.ttw.begin(), v.ttw.end());
        const size_t k = v.ttw.size();
        x->set_time_to_win_days(k % 2 ? v.ttw[k / 2] : (v.ttw[k / 2 - 1] + v.ttw[k / 2]) / 2);
      }
      RefRatio(x->mutable_client_churn_rate(), n("churn_num"), n("churn_den"));
      x->set_stuck_deals(n("stuck"));
      x->set_receivables_overdue_count(n("recv"));
      for (const auto& [cur, amount] : v.recv) {
        v1::Money* m = x->add_receivables_overdue();
        m->set_currency(cur);
        m->set_amount_minor(amount);
      }
      RefRatio(x->mutable_hunter_share(), n("hunter_num"), n("hunter_den"));
    }
  }
  return out;
}

}  // namespace rapport::test

#endif  // RAPPORT_TESTS_KPI_REFERENCE_IMPL_H_
