#include "lib/lifecycle/apply.h"

#include <algorithm>
#include <string>

#include "absl/strings/string_view.h"
#include "lib/kpi/ingest.h"
#include "lib/rules/runtime.h"

namespace rapport {
namespace {

// Sets a string field of a row just created, unless the value is empty: on
// the arena even an empty value allocates a string (with its cleanup entry),
// and an unset proto3 string reads and serializes exactly as an empty one.
template <typename Set>
void SetIfAny(const std::string& value, Set set) {
  if (!value.empty()) set(value);
}

void SetStatus(v1::Account& a, v1::AccountStatus status, int64_t at) {
  if (a.status() == status) return;
  a.set_status(status);
  a.set_status_since_us(at);
}

// Resolves the team of an account: as given, else the owner's, else the first
// team serving its segment, else the configured default team. The view is
// into `p` or the state's rows and config, which the caller does not change
// before it copies it.
absl::string_view ResolveTeam(const v1::AccountUpserted& p, const EngineState& s) {
  if (!p.team_id().empty()) return p.team_id();
  if (!p.owner_id().empty()) {
    const v1::Manager* m = s.managers.Find(p.owner_id());
    if (m != nullptr && !m->team_id().empty()) return m->team_id();
  }
  if (!p.segment().empty()) {
    for (const v1::Team& t : s.teams.rows()) {
      for (const std::string& seg : t.segments()) {
        if (seg == p.segment()) return t.team_id();
      }
    }
  }
  if (s.teams.Find(s.config.default_team_id()) != nullptr) return s.config.default_team_id();
  return absl::string_view();
}

void AddAttribution(EngineState* s, uint32_t account, int64_t since, int64_t seq,
                    const v1::Account& a) {
  std::vector<v1::Attribution>& h = s->attributions[account];
  auto pos = std::upper_bound(h.begin(), h.end(), std::make_pair(since, seq),
                              [](const std::pair<int64_t, int64_t>& key, const v1::Attribution& x) {
                                return key < std::make_pair(x.since_us(), x.seq());
                              });
  // Filled where it lands (the end, mostly), not built aside, moved in and
  // destroyed. An empty string is left unset: this message is not on an
  // arena, where setting even an empty value allocates a string, and unset
  // reads and serializes the same as empty.
  v1::Attribution& entry = *h.emplace(pos);
  entry.set_since_us(since);
  entry.set_seq(seq);
  if (!a.owner_id().empty()) entry.set_owner_id(a.owner_id());
  if (!a.team_id().empty()) entry.set_team_id(a.team_id());
  if (!a.segment().empty()) entry.set_segment(a.segment());
}

void ApplyAccountUpserted(const v1::AccountUpserted& p, int64_t t, int64_t seq, uint32_t idx,
                          EngineState* s) {
  const bool is_new = idx == s->accounts.size();
  if (is_new) {
    s->account_kinds.push_back(static_cast<uint8_t>(p.kind()));
    v1::Account& a = s->accounts.Insert(p.account_id());
    s->attributions.emplace_back();
    a.set_account_id(p.account_id());
    a.set_kind(p.kind());
    a.set_created_at_us(p.created_at_us() != 0 ? p.created_at_us() : t);
    a.set_status(p.kind() == v1::ACCOUNT_KIND_PARTNER ? v1::ACCOUNT_STATUS_PROSPECT
                                                      : v1::ACCOUNT_STATUS_LEAD);
    a.set_status_since_us(a.created_at_us());
    a.set_last_feedback_score(-1);
  }
  const absl::string_view team = ResolveTeam(p, *s);
  v1::Account& a = s->accounts.at(idx);
  // An upsert of a known account mostly repeats what it holds: comparing is
  // cheaper than setting (a call and a copy each), and an equal value is the
  // same state.
  if (a.name() != p.name()) a.set_name(p.name());
  if (a.owner_id() != p.owner_id()) a.set_owner_id(p.owner_id());
  if (a.team_id() != team) a.set_team_id(team.data(), team.size());
  if (a.segment() != p.segment()) a.set_segment(p.segment());
  a.set_tier(p.tier());
  a.set_preferred_channel(p.preferred_channel());
  if (a.referred_by() != p.referred_by()) a.set_referred_by(p.referred_by());
  if (a.source_partner_id() != p.source_partner_id()) {
    a.set_source_partner_id(p.source_partner_id());
  }
  AddAttribution(s, idx, t, seq, a);
}

void EnterStage(v1::Deal& d, const PipelineInfo& pl, int stage, int64_t t) {
  if (d.history_size() > 0) d.mutable_history()->rbegin()->set_left_at_us(t);
  v1::StageVisit* visit = d.add_history();
  visit->set_stage(pl.stage(stage).id());
  visit->set_entered_at_us(t);
  d.set_stage(pl.stage(stage).id());
  if (pl.stage(stage).won()) {
    d.set_won_at_us(d.won_at_us() == 0 ? t : std::min(d.won_at_us(), t));
    if (d.status() != v1::DEAL_STATUS_LOST) d.set_status(v1::DEAL_STATUS_WON);
  }
  if (pl.stage(stage).lost()) {
    d.set_status(v1::DEAL_STATUS_LOST);
    d.set_lost_at_us(t);
  }
}

void ApplyOrderPlaced(const v1::OrderPlaced& p, int64_t t, const EventRefs& refs, EngineState* s) {
  s->order_links.push_back(OrderLink{refs.account, refs.deal});
  v1::Order& o = s->orders.Insert(p.order_id());
  o.set_order_id(p.order_id());
  o.set_account_id(p.account_id());
  // A new row's empty field is left unset (see SetIfAny).
  SetIfAny(p.deal_id(), [&](const std::string& v) { o.set_deal_id(v); });
  *o.mutable_amount() = p.amount();
  o.set_placed_at_us(t);
  o.set_due_at_us(p.due_at_us());
  o.set_status(v1::ORDER_STATUS_PLACED);

  const uint32_t idx = refs.account;
  v1::Account& a = s->accounts.at(idx);
  a.set_order_count(a.order_count() + 1);
  a.set_last_order_at_us(std::max(a.last_order_at_us(), t));
  if (a.kind() == v1::ACCOUNT_KIND_CLIENT) {
    SetStatus(a, a.order_count() >= 2 ? v1::ACCOUNT_STATUS_REPEAT : v1::ACCOUNT_STATUS_CLIENT, t);
    // Both terms are below kMaxTimeUs (validated), so the sum cannot overflow.
    s->churn_deadlines.emplace(a.last_order_at_us() + s->config.client_churn_after_us(), idx);
  }
}

// Catches the derived links up with rows they have not seen (after a
// restore; otherwise they are in step and this compares four sizes).
void SyncLinks(EngineState* s) {
  while (s->deal_links.size() < s->deals.size()) {
    s->deal_links.push_back(ComputeDealLink(*s, static_cast<uint32_t>(s->deal_links.size())));
  }
  while (s->order_links.size() < s->orders.size()) {
    s->order_links.push_back(ComputeOrderLink(*s, static_cast<uint32_t>(s->order_links.size())));
  }
  while (s->account_kinds.size() < s->accounts.size()) {
    s->account_kinds.push_back(static_cast<uint8_t>(
        s->accounts.at(static_cast<uint32_t>(s->account_kinds.size())).kind()));
  }
  while (s->complaint_accounts.size() < s->complaints.size()) {
    s->complaint_accounts.push_back(
        ComputeComplaintAccount(*s, static_cast<uint32_t>(s->complaint_accounts.size())));
  }
}

int32_t PipelineIndex(const EngineState& s, const PipelineInfo* p) {
  return static_cast<int32_t>(p - s.pipelines.all().data());
}

}  // namespace

EventRefs ResolveEventRefs(const v1::Event& e, const EngineState& s) {
  constexpr uint32_t kNone = EventRefs::kNone;
  EventRefs r;
  r.id_hash = EventIdLog::Hash(e.event_id());
  auto deal = [&](const std::string& id) {
    r.deal = s.deals.IndexOf(id);
    const v1::Deal& d = s.deals.at(r.deal);
    r.account = s.accounts.IndexOf(d.account_id());
    r.pipeline = PipelineIndex(s, s.pipelines.Find(d.pipeline_id()));
  };
  auto order = [&](const std::string& id) {
    r.order = s.orders.IndexOf(id);
    const v1::Order& o = s.orders.at(r.order);
    r.account = s.accounts.IndexOf(o.account_id());
    r.deal = o.deal_id().empty() ? kNone : s.deals.IndexOf(o.deal_id());
  };
  switch (e.payload_case()) {
    case v1::Event::kAccountUpserted: {
      const uint32_t idx = s.accounts.IndexOf(e.account_upserted().account_id());
      r.account = idx == kNone ? static_cast<uint32_t>(s.accounts.size()) : idx;
      break;
    }
    case v1::Event::kLeadCreated: {
      const auto& p = e.lead_created();
      r.account = s.accounts.IndexOf(p.account_id());
      r.deal = static_cast<uint32_t>(s.deals.size());
      r.pipeline = PipelineIndex(s, p.pipeline_id().empty()
                                        ? s.pipelines.DefaultFor(s.accounts.at(r.account).kind())
                                        : s.pipelines.Find(p.pipeline_id()));
      break;
    }
    case v1::Event::kDealStageChanged:
      deal(e.deal_stage_changed().deal_id());
      r.stage = s.pipelines.all()[static_cast<size_t>(r.pipeline)].StageIndex(
          e.deal_stage_changed().to_stage());
      break;
    case v1::Event::kDealWon:
      deal(e.deal_won().deal_id());
      break;
    case v1::Event::kDealLost:
      deal(e.deal_lost().deal_id());
      break;
    case v1::Event::kPartnerAgreed:
      r.account = s.accounts.IndexOf(e.partner_agreed().account_id());
      break;
    case v1::Event::kPartnerChurned:
      r.account = s.accounts.IndexOf(e.partner_churned().account_id());
      break;
    case v1::Event::kAccountChurned:
      r.account = s.accounts.IndexOf(e.account_churned().account_id());
      break;
    case v1::Event::kOrderPlaced: {
      const auto& p = e.order_placed();
      r.account = s.accounts.IndexOf(p.account_id());
      r.deal = p.deal_id().empty() ? kNone : s.deals.IndexOf(p.deal_id());
      r.order = static_cast<uint32_t>(s.orders.size());
      break;
    }
    case v1::Event::kOrderDelayed:
      order(e.order_delayed().order_id());
      break;
    case v1::Event::kOrderCompleted:
      order(e.order_completed().order_id());
      break;
    case v1::Event::kInvoiceIssued:
      r.account = s.accounts.IndexOf(e.invoice_issued().account_id());
      r.invoice = static_cast<uint32_t>(s.invoices.size());
      break;
    case v1::Event::kPaymentReceived: {
      const auto& p = e.payment_received();
      r.account = s.accounts.IndexOf(p.account_id());
      r.invoice = p.invoice_id().empty() ? kNone : s.invoices.IndexOf(p.invoice_id());
      break;
    }
    case v1::Event::kActivity:
      r.account = s.accounts.IndexOf(e.activity().account_id());
      r.manager = s.managers.IndexOf(e.activity().manager_id());
      break;
    case v1::Event::kFeedbackReceived:
      r.account = s.accounts.IndexOf(e.feedback_received().account_id());
      break;
    case v1::Event::kComplaintOpened:
      r.account = s.accounts.IndexOf(e.complaint_opened().account_id());
      r.complaint = static_cast<uint32_t>(s.complaints.size());
      break;
    case v1::Event::kComplaintResolved:
      r.complaint = s.complaints.IndexOf(e.complaint_resolved().complaint_id());
      r.account = s.accounts.IndexOf(s.complaints.at(r.complaint).account_id());
      break;
    case v1::Event::kCaseStudyPublished: {
      const auto& p = e.case_study_published();
      r.account = s.accounts.IndexOf(p.account_id());
      r.deal = p.deal_id().empty() ? kNone : s.deals.IndexOf(p.deal_id());
      break;
    }
    case v1::Event::kManagerUpserted:
    case v1::Event::kTeamUpserted:
    case v1::Event::kTaskCompleted:
    case v1::Event::PAYLOAD_NOT_SET:
      break;
  }
  return r;
}

void ApplyEvent(const v1::Event& e, uint64_t fingerprint, EngineState* s) {
  ApplyEvent(e, fingerprint, ResolveEventRefs(e, *s), s);
}

const v1::Attribution* AttributionAt(const EngineState& state, uint32_t account, int64_t at_us) {
  const std::vector<v1::Attribution>& h = state.attributions[account];
  if (h.empty()) return nullptr;
  auto it = std::upper_bound(h.begin(), h.end(), at_us,
                             [](int64_t t, const v1::Attribution& x) { return t < x.since_us(); });
  return it == h.begin() ? &h.front() : &*(it - 1);
}

void ApplyEvent(const v1::Event& e, uint64_t fingerprint, const EventRefs& refs, EngineState* s) {
  EventRefs recorded = refs;
  recorded.stored_id = s->event_ids.Add(e.event_id(), refs.id_hash, fingerprint);
  ApplyRecordedEvent(e, recorded, s);
}

void ApplyRecordedEvent(const v1::Event& e, const EventRefs& refs, EngineState* s) {
  const int64_t t = e.occurred_at_us();
  const int64_t seq = s->events_accepted++;
  SyncLinks(s);

  switch (e.payload_case()) {
    case v1::Event::kAccountUpserted:
      ApplyAccountUpserted(e.account_upserted(), t, seq, refs.account, s);
      break;
    case v1::Event::kManagerUpserted: {
      const auto& p = e.manager_upserted();
      v1::Manager* m = s->managers.Find(p.manager_id());
      const bool is_new = m == nullptr;
      if (is_new) m = &s->managers.Insert(p.manager_id());
      m->set_manager_id(p.manager_id());
      m->set_name(p.name());
      m->set_team_id(p.team_id());
      m->set_grade(p.grade());
      if (p.hired_at_us() != 0 || is_new)
        m->set_hired_at_us(p.hired_at_us() != 0 ? p.hired_at_us() : t);
      m->set_is_head(p.is_head());
      break;
    }
    case v1::Event::kTeamUpserted: {
      const auto& p = e.team_upserted();
      v1::Team* team = s->teams.Find(p.team_id());
      if (team == nullptr) team = &s->teams.Insert(p.team_id());
      team->set_team_id(p.team_id());
      team->set_name(p.name());
      team->set_lead_id(p.lead_id());
      *team->mutable_segments() = p.segments();
      break;
    }
    case v1::Event::kLeadCreated: {
      const auto& p = e.lead_created();
      const v1::Account* a = &s->accounts.at(refs.account);
      const PipelineInfo* pl = &s->pipelines.all()[static_cast<size_t>(refs.pipeline)];
      s->deal_links.push_back(DealLink{refs.account, refs.pipeline});
      v1::Deal& d = s->deals.Insert(p.deal_id());
      d.set_deal_id(p.deal_id());
      d.set_account_id(p.account_id());
      d.set_pipeline_id(pl->pipeline.id());
      SetIfAny(p.source_partner_id().empty() ? a->source_partner_id() : p.source_partner_id(),
               [&](const std::string& v) { d.set_source_partner_id(v); });
      d.set_created_at_us(t);
      d.set_status(v1::DEAL_STATUS_OPEN);
      EnterStage(d, *pl, 0, t);
      break;
    }
    case v1::Event::kDealStageChanged: {
      v1::Deal* d = &s->deals.at(refs.deal);
      const PipelineInfo* pl = &s->pipelines.all()[static_cast<size_t>(refs.pipeline)];
      // to_stage is the pipeline's stage refs.stage (validation resolved it
      // there): its id in the pipeline is in cache, the event's copy no
      // longer is.
      if (d->stage() == pl->stage(refs.stage).id()) break;  // already there: nothing moves
      EnterStage(*d, *pl, refs.stage, t);
      break;
    }
    case v1::Event::kDealWon: {
      v1::Deal* d = &s->deals.at(refs.deal);
      const PipelineInfo* pl = &s->pipelines.all()[static_cast<size_t>(refs.pipeline)];
      d->set_won_at_us(d->won_at_us() == 0 ? t : std::min(d->won_at_us(), t));
      d->set_status(v1::DEAL_STATUS_WON);
      if (pl->won_stage >= 0 && pl->StageIndex(d->stage()) < pl->won_stage) {
        EnterStage(*d, *pl, pl->won_stage, t);
      }
      break;
    }
    case v1::Event::kDealLost: {
      v1::Deal* d = &s->deals.at(refs.deal);
      d->set_status(v1::DEAL_STATUS_LOST);
      d->set_lost_at_us(t);
      // Mostly no reason on a deal that had none: nothing to set then.
      if (d->lost_reason() != e.deal_lost().reason()) d->set_lost_reason(e.deal_lost().reason());
      break;
    }
    case v1::Event::kPartnerAgreed:
      SetStatus(s->accounts.at(refs.account), v1::ACCOUNT_STATUS_ACTIVE, t);
      break;
    case v1::Event::kPartnerChurned:
      SetStatus(s->accounts.at(refs.account), v1::ACCOUNT_STATUS_CHURNED, t);
      break;
    case v1::Event::kAccountChurned:
      SetStatus(s->accounts.at(refs.account), v1::ACCOUNT_STATUS_CHURNED, t);
      break;
    case v1::Event::kOrderPlaced:
      ApplyOrderPlaced(e.order_placed(), t, refs, s);
      break;
    case v1::Event::kOrderDelayed: {
      v1::Order* o = &s->orders.at(refs.order);
      o->set_due_at_us(e.order_delayed().new_due_at_us());
      o->set_delays(o->delays() + 1);
      if (o->status() != v1::ORDER_STATUS_COMPLETED) o->set_status(v1::ORDER_STATUS_DELAYED);
      break;
    }
    case v1::Event::kOrderCompleted: {
      v1::Order* o = &s->orders.at(refs.order);
      if (o->status() != v1::ORDER_STATUS_COMPLETED) {
        o->set_status(v1::ORDER_STATUS_COMPLETED);
        o->set_completed_at_us(t);
      }
      break;
    }
    case v1::Event::kInvoiceIssued: {
      const auto& p = e.invoice_issued();
      v1::Invoice& inv = s->invoices.Insert(p.invoice_id());
      inv.set_invoice_id(p.invoice_id());
      inv.set_account_id(p.account_id());
      SetIfAny(p.order_id(), [&](const std::string& v) { inv.set_order_id(v); });
      *inv.mutable_amount() = p.amount();
      inv.set_issued_at_us(t);
      inv.set_due_at_us(p.due_at_us());
      break;
    }
    case v1::Event::kPaymentReceived: {
      const auto& p = e.payment_received();
      if (refs.invoice != EventRefs::kNone) {  // the payment names an invoice
        v1::Invoice* inv = &s->invoices.at(refs.invoice);
        int64_t paid;
        // Saturates rather than wraps: an invoice paid beyond int64 is paid.
        if (__builtin_add_overflow(inv->paid_minor(), p.amount().amount_minor(), &paid)) {
          paid = INT64_MAX;
        }
        inv->set_paid_minor(paid);
      }
      break;
    }
    case v1::Event::kActivity: {
      const auto& p = e.activity();
      if (p.direction() == v1::DIRECTION_OUTBOUND) {
        v1::Account* a = &s->accounts.at(refs.account);
        a->set_last_outbound_at_us(std::max(a->last_outbound_at_us(), t));
      }
      break;
    }
    case v1::Event::kFeedbackReceived: {
      const auto& p = e.feedback_received();
      v1::Account* a = &s->accounts.at(refs.account);
      if (a->last_feedback_score() < 0 || t >= a->last_feedback_at_us()) {
        a->set_last_feedback_score(p.score());
        a->set_last_feedback_at_us(t);
      }
      break;
    }
    case v1::Event::kComplaintOpened: {
      const auto& p = e.complaint_opened();
      s->complaint_accounts.push_back(refs.account);
      v1::Complaint& c = s->complaints.Insert(p.complaint_id());
      c.set_complaint_id(p.complaint_id());
      c.set_account_id(p.account_id());
      c.set_severity(p.severity());
      c.set_opened_at_us(t);
      v1::Account* a = &s->accounts.at(refs.account);
      a->set_open_complaints(a->open_complaints() + 1);
      break;
    }
    case v1::Event::kComplaintResolved: {
      v1::Complaint* c = &s->complaints.at(refs.complaint);
      if (c->resolved_at_us() == 0) {
        c->set_resolved_at_us(t);
        v1::Account* a = &s->accounts.at(refs.account);
        a->set_open_complaints(a->open_complaints() - 1);
      }
      break;
    }
    case v1::Event::kCaseStudyPublished: {
      v1::Account* a = &s->accounts.at(refs.account);
      a->set_case_studies(a->case_studies() + 1);
      break;
    }
    case v1::Event::kTaskCompleted: {
      rules::StoredAction* task = s->actions.Find(e.task_completed().task_id());
      task->state = static_cast<uint8_t>(v1::ACTION_STATE_DONE);
      break;
    }
    case v1::Event::PAYLOAD_NOT_SET:
      break;
  }
  // Derived structures that follow the lifecycle are updated here, after the
  // state change (the KPI fact store; the regulations).
  kpi::RecordFacts(e, seq, refs, s);
  rules::OnEvent(e, refs, s);
}

void AdvanceClock(int64_t now_us, EngineState* s) {
  if (now_us <= s->clock_us) return;
  s->clock_us = now_us;
  const int64_t churn_after = s->config.client_churn_after_us();
  // Churn deadlines and the regulations' timers interleave in time order, so
  // a timer sees every churn due at or before it and none after.
  for (;;) {
    const int64_t next_timer = rules::NextTimerAt(*s);
    const int64_t until = std::min(now_us, next_timer);
    while (!s->churn_deadlines.empty() && s->churn_deadlines.top().first <= until) {
      auto [deadline, idx] = s->churn_deadlines.top();
      s->churn_deadlines.pop();
      v1::Account& a = s->accounts.at(idx);
      const bool current = a.last_order_at_us() + churn_after == deadline;
      if (current &&
          (a.status() == v1::ACCOUNT_STATUS_CLIENT || a.status() == v1::ACCOUNT_STATUS_REPEAT)) {
        SetStatus(a, v1::ACCOUNT_STATUS_CHURNED, deadline);
      }
    }
    if (next_timer > now_us) break;
    rules::FireNextTimer(s);
  }
}

}  // namespace rapport
