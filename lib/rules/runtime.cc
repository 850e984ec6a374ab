#include "lib/rules/runtime.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "lib/state/engine_state.h"
#include "lib/util/fingerprint.h"
#include "lib/util/prefetch.h"
#include "rapport/engine.h"

namespace rapport::rules {
namespace {

constexpr uint32_t kNone = UINT32_MAX;

// What a rule fires about.
struct Context {
  int64_t fire_at = 0;
  // The causing event's id (empty: none) and what the action id derives
  // from (the cause, or for open-tasks rules the task that tipped them).
  absl::string_view cause;
  absl::string_view cause_key;
  // Whether `cause` views the event id log's copy already.
  bool cause_stored = false;
  uint32_t account = kNone;
  uint32_t deal = kNone;
  int severity = 0;
  // Open-tasks rules: the manager holding the tasks (OWNER means them).
  absl::string_view manager;
  // Calendar triggers: "holiday:new_year:2026", "anniversary:2027".
  std::string occasion;
};

// The account, deal and severity an event concerns. The account and deal
// come resolved from validation (EventRefs): the event's account, else its
// deal's, order's or complaint's; its deal, else its order's.
struct Subject {
  uint32_t account = kNone;
  uint32_t deal = kNone;
  int severity = 0;
};

// `kind` is the subject account's kind (KindOfAccount: no row to fetch).
bool Matches(const v1::EventFilter& f, const v1::Event& e, v1::AccountKind kind, int severity) {
  if (f.account_kind() != 0 && f.account_kind() != kind) return false;
  if (e.payload_case() == v1::Event::kActivity) {
    if (f.activity_kind() != 0 && f.activity_kind() != e.activity().kind()) return false;
    if (f.direction() != 0 && f.direction() != e.activity().direction()) return false;
  }
  if (f.min_severity() != 0 && severity < f.min_severity()) return false;
  return true;
}

// Calendar arithmetic in UTC.
int64_t MicrosOf(absl::CivilSecond c) {
  return absl::ToUnixMicros(absl::FromCivil(c, absl::UTCTimeZone()));
}
int DaysIn(absl::CivilMonth m) { return static_cast<int>((absl::CivilDay(m + 1) - 1).day()); }
// The date (month, day) of `year` moved `months` back, at 00:00 UTC; a day
// past the month's end falls on its last day.
int64_t DateMinusMonths(int64_t year, int month, int day, int months) {
  absl::CivilMonth m = absl::CivilMonth(year, month) - months;
  return MicrosOf(absl::CivilDay(m.year(), m.month(), std::min(day, DaysIn(m))));
}
int64_t AddMonths(int64_t at_us, int months) {
  absl::CivilSecond c = absl::ToCivilSecond(absl::FromUnixMicros(at_us), absl::UTCTimeZone());
  absl::CivilMonth m = absl::CivilMonth(c) + months;
  const int64_t sub = at_us - MicrosOf(c);
  return MicrosOf(absl::CivilSecond(m.year(), m.month(), std::min<int>(c.day(), DaysIn(m)),
                                    c.hour(), c.minute(), c.second())) +
         sub;
}
absl::CivilDay DayOf(int64_t at_us) {
  return absl::ToCivilDay(absl::FromUnixMicros(at_us), absl::UTCTimeZone());
}

int64_t Clamp(int64_t t) { return std::min(std::max(t, kMinTimeUs), kMaxTimeUs - 1); }

// The stored action's assignee id (views stable storage).
absl::string_view AssigneeOf(const EngineState& s, const StoredAction& a) {
  if (a.assignee == StoredAction::kAssigneeIsAccount) return s.accounts.at(a.account).account_id();
  return s.actions.pool().at(a.assignee);
}

class Runner {
 public:
  explicit Runner(EngineState* s) : s_(*s), rt_(s->rules), r_(*s->rules.rules) {}

  void PushTimer(int64_t fire_at, int rule, uint32_t subject, uint32_t extra,
                 absl::string_view cause, int aux) {
    if (fire_at >= kMaxTimeUs) return;  // never comes
    Timer t;
    t.fire_at_us = fire_at;
    t.cause = cause.empty() ? nullptr : cause.data();
    t.cause_len = static_cast<uint8_t>(cause.size());
    t.seq = rt_.next_timer_seq++;
    t.subject = subject;
    t.extra = extra;
    t.rule = static_cast<uint16_t>(rule);
    t.aux = static_cast<uint8_t>(aux);
    rt_.timers.push_back(t);
    std::push_heap(rt_.timers.begin(), rt_.timers.end(), TimerAfter());
  }

  // The first occurrence of holiday `h` for `rule` in `year` or later whose
  // fire time is at or after `not_before`; false when none is left.
  void ScheduleHoliday(int rule, int h, int64_t year, int64_t not_before) {
    const v1::Trigger::Calendar& c = r_.rule(rule).trigger().calendar();
    const v1::Holiday& hd = r_.set().holidays(h);
    for (; year <= 9999; ++year) {
      const int64_t at = DateMinusMonths(year, hd.month(), hd.day(), c.lead_months()) -
                         c.lead_us() + r_.rule(rule).delay_us();
      if (at >= kMaxTimeUs) return;
      if (at >= not_before) {
        PushTimer(at, rule, static_cast<uint32_t>(h), static_cast<uint32_t>(year), {}, 0);
        return;
      }
    }
  }
  void ScheduleAnniversary(int rule, uint32_t account, int64_t year, int64_t not_before) {
    const v1::Trigger::Calendar& c = r_.rule(rule).trigger().calendar();
    const absl::CivilDay born = DayOf(s_.accounts.at(account).created_at_us());
    for (; year <= 9999; ++year) {
      const int64_t at = DateMinusMonths(year, born.month(), born.day(), c.lead_months()) -
                         c.lead_us() + r_.rule(rule).delay_us();
      if (at >= kMaxTimeUs) return;
      if (at >= not_before) {
        PushTimer(at, rule, account, static_cast<uint32_t>(year), {}, 0);
        return;
      }
    }
  }

  void ScheduleClock() {
    const int64_t eff = r_.set().effective_at_us();
    for (uint16_t rule : r_.holidays()) {
      for (int h = 0; h < r_.set().holidays_size(); ++h)
        ScheduleHoliday(rule, h, DayOf(eff).year(), eff);
    }
    for (uint16_t rule : r_.rule_set_age()) {
      const int months = r_.rule(rule).trigger().rule_set_age().older_than_months();
      PushTimer(AddMonths(eff, months) + r_.rule(rule).delay_us(), rule, 0, 0, {}, 0);
    }
  }

  void OnEvent(const v1::Event& e, const EventRefs& refs) {
    const int type = EventTypeOf(e);
    const auto& on_event = r_.OnEvent(type);
    const auto& absence = r_.AbsenceAfter(type);
    const auto& watches = r_.WatchesOf(type);
    const bool stages =
        (!r_.stage_entered().empty() || !r_.sla().empty()) &&
        (type == v1::EVENT_TYPE_LEAD_CREATED || type == v1::EVENT_TYPE_DEAL_STAGE_CHANGED ||
         type == v1::EVENT_TYPE_DEAL_WON);
    const bool tasks = type == v1::EVENT_TYPE_TASK_COMPLETED && !rt_.open_tasks.empty();
    const bool accounts = type == v1::EVENT_TYPE_ACCOUNT_UPSERTED && !r_.anniversaries().empty();
    if (on_event.empty() && absence.empty() && watches.empty() && !stages && !tasks && !accounts) {
      return;
    }
    if (tasks) TaskCompleted(e.task_completed().task_id());
    if (accounts) {
      const int64_t eff = r_.set().effective_at_us();
      for (; rt_.accounts_seen < s_.accounts.size(); ++rt_.accounts_seen) {
        const int64_t created = s_.accounts.at(rt_.accounts_seen).created_at_us();
        for (uint16_t rule : r_.anniversaries()) {
          ScheduleAnniversary(rule, rt_.accounts_seen, DayOf(created).year() + 1,
                              std::max(eff, created));
        }
      }
    }
    if (on_event.empty() && absence.empty() && watches.empty() && !stages) return;
    Subject sub;
    sub.account = refs.account;
    sub.deal = refs.deal;
    if (e.payload_case() == v1::Event::kComplaintOpened)
      sub.severity = e.complaint_opened().severity();
    if (sub.account == kNone) return;
    const v1::AccountKind kind = KindOfAccount(s_, sub.account);
    const int64_t t = e.occurred_at_us();
    absl::string_view cause;  // the log's copy, for timers

    for (uint16_t w : watches) {
      if (Matches(r_.watches()[w].filter, e, kind, sub.severity)) Record(w, sub.account, t);
    }
    for (uint16_t rule : on_event) {
      const v1::Rule& rl = r_.rule(rule);
      const v1::EventFilter& f = rl.trigger().on_event().filter();
      if (!Matches(f, e, kind, sub.severity)) continue;
      if (f.first_for_account() && !rt_.first_seen[rule].insert(sub.account).second) continue;
      if (rl.delay_us() == 0) {
        Context ctx;
        ctx.fire_at = t;
        ctx.cause = ctx.cause_key = e.event_id();
        ctx.account = sub.account;
        ctx.deal = sub.deal;
        ctx.severity = sub.severity;
        Fire(rule, ctx);
      } else {
        if (cause.empty()) cause = StoredId(e, refs);
        PushTimer(t + rl.delay_us(), rule, sub.account, sub.deal == kNone ? 0 : sub.deal + 1, cause,
                  sub.severity);
      }
    }
    for (uint16_t rule : absence) {
      const v1::Rule& rl = r_.rule(rule);
      if (!Matches(rl.trigger().absence().after(), e, kind, sub.severity)) continue;
      if (cause.empty()) cause = StoredId(e, refs);
      PushTimer(t + rl.trigger().absence().window_us() + rl.delay_us(), rule, sub.account,
                sub.deal == kNone ? 0 : sub.deal + 1, cause, sub.severity);
    }
    if (stages && sub.deal != kNone) {
      if (rt_.deal_visits.size() < s_.deals.size()) rt_.deal_visits.resize(s_.deals.size(), 0);
      const v1::Deal& d = s_.deals.at(sub.deal);
      for (uint32_t v = rt_.deal_visits[sub.deal]; v < static_cast<uint32_t>(d.history_size());
           ++v) {
        if (cause.empty()) cause = StoredId(e, refs);
        StageEntered(sub.account, sub.deal, v, e.event_id(), cause, StageHint(e, refs));
      }
      rt_.deal_visits[sub.deal] = static_cast<uint32_t>(d.history_size());
    }
  }

  // The event id log's copy of the event's id (ApplyEvent recorded it).
  absl::string_view StoredId(const v1::Event& e, const EventRefs& refs) const {
    return refs.stored_id.empty() ? s_.event_ids.Stored(e.event_id(), refs.id_hash)
                                  : refs.stored_id;
  }

  // The index of the stage the event put its deal in, as far as known
  // without hashing: the first for a new lead, the resolved to_stage for a
  // stage change (EventRefs::stage); -1 otherwise (a won deal, say).
  // StageEntered checks it against the visit before using it.
  static int StageHint(const v1::Event& e, const EventRefs& refs) {
    if (e.payload_case() == v1::Event::kLeadCreated) return 0;
    return refs.stage;
  }

  // `hint` is a guess of the visit's stage index (StageHint), or -1.
  void StageEntered(uint32_t account, uint32_t deal, uint32_t visit, absl::string_view event_id,
                    absl::string_view cause, int hint) {
    const v1::Deal& d = s_.deals.at(deal);
    const v1::StageVisit& sv = d.history(static_cast<int>(visit));
    // The deal's pipeline from its derived link: the same pipeline as its
    // pipeline_id names (and the same id), without hashing that id.
    const PipelineInfo* pl =
        &s_.pipelines.all()[static_cast<size_t>(LinkOfDeal(s_, deal).pipeline)];
    const std::string& pipeline_id = pl->pipeline.id();
    // Stage ids are unique within a pipeline, so a hint whose id is the
    // visit's is its index: one compare instead of hashing the id.
    const int stage = hint >= 0 && hint < pl->size() && pl->stage(hint).id() == sv.stage()
                          ? hint
                          : pl->StageIndex(sv.stage());
    for (uint16_t rule : r_.stage_entered()) {
      const v1::Rule& rl = r_.rule(rule);
      const auto& st = rl.trigger().stage_entered();
      if ((!st.pipeline_id().empty() && st.pipeline_id() != pipeline_id) ||
          st.stage() != sv.stage()) {
        continue;
      }
      if (rl.delay_us() == 0) {
        Context ctx;
        ctx.fire_at = sv.entered_at_us();
        ctx.cause = ctx.cause_key = event_id;
        ctx.account = account;
        ctx.deal = deal;
        Fire(rule, ctx);
      } else {
        PushTimer(sv.entered_at_us() + rl.delay_us(), rule, account, deal + 1, cause, 0);
      }
    }
    const int64_t sla = pl->stage(stage).sla_us();
    if (sla <= 0 || d.status() == v1::DEAL_STATUS_LOST) return;
    for (uint16_t rule : r_.sla()) {
      const v1::Rule& rl = r_.rule(rule);
      const auto& st = rl.trigger().sla_exceeded();
      if (!st.pipeline_id().empty() && st.pipeline_id() != pipeline_id) continue;
      if (st.phase() != 0 && st.phase() != pl->stage(stage).phase()) continue;
      PushTimer(sv.entered_at_us() + sla + 1 + rl.delay_us(), rule, deal, visit, cause, 0);
    }
  }

  void FireTimer() {
    const Timer t = PopTimer(&rt_.timers);
    const v1::Rule& rl = r_.rule(t.rule);
    Context ctx;
    ctx.fire_at = t.fire_at_us;
    ctx.cause = ctx.cause_key =
        t.cause == nullptr ? absl::string_view() : absl::string_view(t.cause, t.cause_len);
    ctx.cause_stored = true;
    ctx.severity = t.aux;
    switch (rl.trigger().kind_case()) {
      case v1::Trigger::kOnEvent:
      case v1::Trigger::kStageEntered:
        ctx.account = t.subject;
        ctx.deal = t.extra == 0 ? kNone : t.extra - 1;
        Fire(t.rule, ctx);
        break;
      case v1::Trigger::kAbsence: {
        const auto& ab = rl.trigger().absence();
        const int64_t after = t.fire_at_us - rl.delay_us() - ab.window_us();
        if (CountIn(r_.AbsenceWatch(t.rule), t.subject, after, after + ab.window_us()) > 0) break;
        ctx.account = t.subject;
        ctx.deal = t.extra == 0 ? kNone : t.extra - 1;
        Fire(t.rule, ctx);
        break;
      }
      case v1::Trigger::kSlaExceeded: {
        const v1::Deal& d = s_.deals.at(t.subject);
        // Still in the stay the timer watches, and not lost since.
        if (static_cast<uint32_t>(d.history_size()) != t.extra + 1 ||
            d.status() == v1::DEAL_STATUS_LOST)
          break;
        ctx.account = s_.accounts.IndexOf(d.account_id());
        ctx.deal = t.subject;
        Fire(t.rule, ctx);
        break;
      }
      case v1::Trigger::kCalendar:
        if (rl.trigger().calendar().holidays()) {
          const v1::Holiday& h = r_.set().holidays(static_cast<int>(t.subject));
          ctx.occasion = absl::StrCat("holiday:", h.id(), ":", t.extra);
          ctx.cause_key = ctx.occasion;
          for (uint32_t i = 0; i < s_.accounts.size(); ++i) {
            ctx.account = i;
            Fire(t.rule, ctx);
          }
          ScheduleHoliday(t.rule, static_cast<int>(t.subject), int64_t{t.extra} + 1, 0);
        } else {
          ctx.occasion = absl::StrCat("anniversary:", t.extra);
          ctx.cause_key = ctx.occasion;
          ctx.account = t.subject;
          Fire(t.rule, ctx);
          ScheduleAnniversary(t.rule, t.subject, int64_t{t.extra} + 1, 0);
        }
        break;
      case v1::Trigger::kRuleSetAge:
        ctx.cause_key = "rule_set_age";
        Fire(t.rule, ctx);
        break;
      default:
        break;
    }
  }

  // Evaluates the rule's conditions, then produces each action whose own
  // conditions hold.
  void Fire(int rule, const Context& ctx) {
    const v1::Rule& rl = r_.rule(rule);
    for (int c = 0; c < rl.conditions_size(); ++c) {
      if (!Holds(rl.conditions(c), r_.CountWatch(rule, -1, c), ctx)) return;
    }
    for (int a = 0; a < rl.actions_size(); ++a) {
      const v1::ActionSpec& spec = rl.actions(a);
      bool ok = true;
      for (int c = 0; ok && c < spec.conditions_size(); ++c) {
        ok = Holds(spec.conditions(c), r_.CountWatch(rule, a, c), ctx);
      }
      if (ok) Produce(rule, a, ctx);
    }
  }

  bool Holds(const v1::Condition& c, int watch, const Context& ctx) const {
    return HoldsPlain(c, watch, ctx) != c.negate();
  }

  bool HoldsPlain(const v1::Condition& c, int watch, const Context& ctx) const {
    if (ctx.account == kNone) return false;
    const v1::Account& a = s_.accounts.at(ctx.account);
    const v1::Deal* d = ctx.deal == kNone ? nullptr : &s_.deals.at(ctx.deal);
    switch (c.kind_case()) {
      case v1::Condition::kAccountKind:
        return a.kind() == c.account_kind();
      case v1::Condition::kStatus:
        return std::find(c.status().any_of().begin(), c.status().any_of().end(), a.status()) !=
               c.status().any_of().end();
      case v1::Condition::kSegment:
        return a.segment() == c.segment();
      case v1::Condition::kTierAtMost:
        return a.tier() != v1::TIER_UNSPECIFIED && a.tier() <= c.tier_at_most();
      case v1::Condition::kStage:
        return d != nullptr && d->stage() == c.stage();
      case v1::Condition::kCount: {
        const auto& n = c.count();
        const int64_t from = n.window_us() == 0 ? INT64_MIN : ctx.fire_at - n.window_us();
        const int64_t count = CountIn(watch, ctx.account, from, ctx.fire_at);
        return count >= n.at_least() && (!n.has_at_most() || count <= n.at_most());
      }
      case v1::Condition::kOpenComplaint:
        return a.open_complaints() > 0;
      case v1::Condition::kPreferredChannel:
        return WrittenChannel(a) == c.preferred_channel();
      case v1::Condition::kPhase: {
        if (d == nullptr) return false;
        const PipelineInfo* pl = s_.pipelines.Find(d->pipeline_id());
        return pl->stage(pl->StageIndex(d->stage())).phase() == c.phase();
      }
      case v1::Condition::kHasPreviousStage: {
        if (d == nullptr) return false;
        return s_.pipelines.Find(d->pipeline_id())->StageIndex(d->stage()) > 0;
      }
      case v1::Condition::kCauseMinSeverity:
        return ctx.severity >= c.cause_min_severity();
      case v1::Condition::KIND_NOT_SET:
        return true;
    }
    return true;
  }

  static v1::Channel WrittenChannel(const v1::Account& a) {
    return a.preferred_channel() == v1::CHANNEL_MESSENGER ? v1::CHANNEL_MESSENGER
                                                          : v1::CHANNEL_EMAIL;
  }

  // Times in the watch's log for the account within (from, to].
  int64_t CountIn(int watch, uint32_t account, int64_t from, int64_t to) const {
    const auto& logs = rt_.watch_logs[watch];
    if (account >= logs.size()) return 0;
    const std::vector<int64_t>& v = logs[account];
    return std::upper_bound(v.begin(), v.end(), to) - std::upper_bound(v.begin(), v.end(), from);
  }

  void Record(int watch, uint32_t account, int64_t t) {
    auto& logs = rt_.watch_logs[watch];
    if (account >= logs.size()) logs.resize(std::max<size_t>(account + 1, s_.accounts.size()));
    std::vector<int64_t>& v = logs[account];
    // Starting at four saves the reallocations through one and two (a
    // malloc, copy and free each) of a log that grows past them.
    if (v.capacity() == 0) v.reserve(4);
    if (v.empty() || v.back() <= t) {
      v.push_back(t);
    } else {
      v.insert(std::upper_bound(v.begin(), v.end(), t), t);
    }
  }

  const v1::Manager* Head() const {
    for (const v1::Manager& m : s_.managers.rows()) {
      if (m.is_head()) return &m;
    }
    return nullptr;
  }

  absl::string_view AssigneeId(v1::Assignee role, const v1::Account* a,
                               absl::string_view manager) const {
    switch (role) {
      case v1::ASSIGNEE_OWNER:
        return !manager.empty() ? manager : a != nullptr ? absl::string_view(a->owner_id()) : "";
      case v1::ASSIGNEE_TEAM_LEAD: {
        absl::string_view who = !manager.empty() ? manager
                                : a != nullptr   ? absl::string_view(a->owner_id())
                                                 : "";
        const v1::Manager* m = who.empty() ? nullptr : s_.managers.Find(who);
        absl::string_view team = m != nullptr && !m->team_id().empty()
                                     ? absl::string_view(m->team_id())
                                 : a != nullptr ? absl::string_view(a->team_id())
                                                : absl::string_view();
        const v1::Team* tm = team.empty() ? nullptr : s_.teams.Find(team);
        return tm != nullptr ? absl::string_view(tm->lead_id()) : absl::string_view();
      }
      case v1::ASSIGNEE_HEAD: {
        const v1::Manager* h = Head();
        return h != nullptr ? absl::string_view(h->manager_id()) : absl::string_view();
      }
      case v1::ASSIGNEE_ACCOUNT:
        return a != nullptr ? absl::string_view(a->account_id()) : absl::string_view();
      default:
        return absl::string_view();
    }
  }

  void Produce(int rule, int action, const Context& ctx) {
    const v1::Rule& rl = r_.rule(rule);
    const v1::ActionSpec& spec = rl.actions(action);
    const v1::Account* a = ctx.account == kNone ? nullptr : &s_.accounts.at(ctx.account);
    const v1::Deal* d = ctx.deal == kNone ? nullptr : &s_.deals.at(ctx.deal);

    absl::string_view to_stage;
    if (spec.kind() == v1::ACTION_KIND_MOVE_STAGE) {
      if (d == nullptr) return;
      const PipelineInfo* pl = s_.pipelines.Find(d->pipeline_id());
      const int cur = pl->StageIndex(d->stage());
      if (spec.to_stage() == "previous") {
        if (cur <= 0) return;  // nothing below the first stage
        to_stage = pl->stage(cur - 1).id();
      } else {
        if (pl->StageIndex(spec.to_stage()) < 0 || spec.to_stage() == d->stage()) return;
        to_stage = spec.to_stage();
      }
    }

    // The id: two independent 64-bit fingerprints of everything that tells
    // two actions apart, each part's length mixed in so that parts cannot
    // run into each other. Built without temporaries: this runs per fired
    // timer.
    const absl::string_view account_id = a != nullptr ? absl::string_view(a->account_id()) : "";
    const absl::string_view deal_id = d != nullptr ? absl::string_view(d->deal_id()) : "";
    const absl::string_view parts[] = {rl.id(), ctx.cause_key, account_id, deal_id, ctx.occasion};
    uint64_t h1 = Mix64(static_cast<uint64_t>(ctx.fire_at) ^ (static_cast<uint64_t>(action) << 56));
    uint64_t h2 = Mix64(h1 ^ 0x6a09e667f3bcc909ULL);
    for (absl::string_view part : parts) {
      const uint64_t f = Fingerprint64(part);
      h1 = Mix64(h1 ^ f) + part.size();
      h2 = Mix64(h2 + (f ^ 0xbb67ae8584caa73bULL)) ^ part.size();
    }
    ActionStore& store = s_.actions;
    StringPool& pool = store.pool();
    std::vector<uint32_t>& names = rt_.interned[rule];
    if (names.empty()) {
      names.push_back(pool.Intern(rl.id()));
      names.push_back(pool.Intern(r_.set().id()));
      for (int i = 0; i < rl.actions_size(); ++i)
        names.push_back(pool.Intern(rl.actions(i).template_()));
    }
    store.Prefetch(h1, h2, names[0]);  // overlaps the index miss with the rest
    StoredAction out;
    out.h1 = h1;
    out.h2 = h2;
    out.rule_id = names[0];
    out.rule_set_id = names[1];
    out.rule_set_version = r_.set().version();
    out.kind = static_cast<uint8_t>(spec.kind());
    if (!ctx.cause.empty()) {
      // The log's copy outlives the event being applied.
      absl::string_view stored = ctx.cause_stored ? ctx.cause : s_.event_ids.Stored(ctx.cause);
      if (stored.empty()) stored = pool.at(pool.Intern(ctx.cause));  // not logged: keep a copy
      out.cause = stored.data();
      out.cause_len = static_cast<uint8_t>(stored.size());
    }
    out.account = a != nullptr ? ctx.account : StoredAction::kNone;
    out.deal = d != nullptr ? ctx.deal : StoredAction::kNone;
    v1::Assignee role = spec.assignee();
    if (spec.kind() == v1::ACTION_KIND_SEND_MESSAGE || spec.kind() == v1::ACTION_KIND_SEND_SURVEY) {
      role = v1::ASSIGNEE_ACCOUNT;
      out.channel = static_cast<uint8_t>(
          spec.channel() != v1::CHANNEL_UNSPECIFIED ? spec.channel() : WrittenChannel(*a));
    } else if (spec.kind() == v1::ACTION_KIND_MOVE_STAGE) {
      role = v1::ASSIGNEE_OWNER;
    }
    out.assignee_role = static_cast<uint8_t>(role);
    const absl::string_view assignee = AssigneeId(role, a, ctx.manager);
    if (role == v1::ASSIGNEE_ACCOUNT && !assignee.empty()) {
      out.assignee = StoredAction::kAssigneeIsAccount;
    } else {
      // Runs of actions mostly share an assignee: compare with the last one
      // before hashing into the pool.
      if (pool.at(rt_.last_assignee) != assignee) rt_.last_assignee = pool.Intern(assignee);
      out.assignee = rt_.last_assignee;
    }
    out.fired_at_us = ctx.fire_at;
    int64_t due = Clamp(ctx.fire_at + spec.due_offset_us());
    if (spec.due_end_of_day()) due = Clamp(MicrosOf(DayOf(due) + 1) - 1);
    out.due_at_us = due;
    out.template_ = names[2 + static_cast<size_t>(action)];
    if (!to_stage.empty()) out.to_stage = pool.Intern(to_stage);
    out.state = static_cast<uint8_t>(v1::ACTION_STATE_PENDING);
    if (!ctx.occasion.empty()) out.occasion = pool.Intern(ctx.occasion);
    const uint32_t index = store.Add(out);
    if (index == ActionStore::kNone) return;  // produced already
    rt_.produced.push_back(index);
    rt_.outbox.push_back(index);

    if (a != nullptr) {
      const int w = r_.ActionWatch(spec.kind());
      if (w >= 0) Record(w, ctx.account, ctx.fire_at);
    }
    if (spec.kind() == v1::ACTION_KIND_CREATE_TASK && !assignee.empty()) {
      rt_.open_tasks.insert(index);
      CountTask(index, +1);
    }
  }

  // Adds `delta` to the open tasks of the task's assignee for every
  // open-tasks rule that counts it; a rise above a rule's threshold fires it.
  void CountTask(uint32_t index, int delta) {
    if (r_.open_tasks().empty()) return;
    // A copy: Fire may add actions and move the store's rows.
    const StoredAction task = s_.actions.at(index);
    const StringPool& pool = s_.actions.pool();
    const absl::string_view assignee = AssigneeOf(s_, task);
    for (uint16_t rule : r_.open_tasks()) {
      if (!r_.CountsTask(rule, pool.at(task.template_))) continue;
      auto& counts = rt_.open_task_counts[rule];
      auto it = counts.find(assignee);
      if (it == counts.end()) it = counts.emplace(std::string(assignee), 0).first;
      int32_t& n = it->second;
      n += delta;
      if (delta > 0 && n == r_.rule(rule).trigger().open_tasks().more_than() + 1) {
        const std::string id = s_.actions.Id(index);
        Context ctx;
        ctx.fire_at = task.fired_at_us;
        ctx.cause = absl::string_view(task.cause == nullptr ? "" : task.cause, task.cause_len);
        ctx.cause_stored = true;
        ctx.cause_key = id;
        ctx.account = task.account;
        ctx.manager = assignee;
        Fire(rule, ctx);
      }
    }
  }

  void TaskCompleted(const std::string& task_id) {
    const uint32_t index = s_.actions.IndexOf(task_id);
    if (index == ActionStore::kNone || rt_.open_tasks.erase(index) == 0) return;
    CountTask(index, -1);
  }

 private:
  EngineState& s_;
  Runtime& rt_;
  const CompiledRules& r_;
};

}  // namespace

Timer PopTimer(TimerHeap* heap) {
  const Timer top = heap->front();
  const Timer value = heap->back();
  heap->pop_back();
  const size_t len = heap->size();
  if (len == 0) return top;
  Timer* first = heap->data();
  const TimerAfter after;
  // libstdc++'s __adjust_heap: move the hole from the top down to a leaf,
  // always into the earlier child, then sift `value` up from there.
  size_t hole = 0;
  size_t child = 0;
  while (child < (len - 1) / 2) {
    child = 2 * (child + 1);
    // The children of the next hole are among 2 * child - 1 .. 2 * child + 2:
    // two lines, fetched while this level compares.
    if (2 * child + 2 < len) {
      __builtin_prefetch(first + 2 * child - 1);
      __builtin_prefetch(first + 2 * child + 1);
    }
    if (after(first[child], first[child - 1])) --child;
    first[hole] = first[child];
    hole = child;
  }
  if ((len & 1) == 0 && child == (len - 2) / 2) {
    child = 2 * (child + 1);
    first[hole] = first[child - 1];
    hole = child - 1;
  }
  size_t parent = (hole - 1) / 2;
  while (hole > 0 && after(first[parent], value)) {
    first[hole] = first[parent];
    hole = parent;
    parent = (hole - 1) / 2;
  }
  first[hole] = value;
  return top;
}

absl::Status Install(const v1::RuleSet& set, const Pipelines& pipelines, Runtime* rt) {
  absl::StatusOr<std::unique_ptr<const CompiledRules>> compiled =
      CompiledRules::Compile(set, pipelines);
  if (!compiled.ok()) return compiled.status();
  rt->rules = *std::move(compiled);
  const CompiledRules& r = *rt->rules;
  rt->first_seen.assign(r.size(), {});
  rt->watch_logs.assign(r.watches().size(), {});
  rt->open_task_counts.assign(r.size(), {});
  rt->interned.assign(r.size(), {});
  return absl::OkStatus();
}

void ScheduleClockTimers(EngineState* s) {
  if (s->rules.rules->size() == 0) return;
  Runner(s).ScheduleClock();
}

void OnEvent(const v1::Event& e, const EventRefs& refs, EngineState* s) {
  if (s->rules.rules->size() == 0) return;
  Runner(s).OnEvent(e, refs);
}

int64_t NextTimerAt(const EngineState& s) {
  return s.rules.timers.empty() ? INT64_MAX : s.rules.timers.front().fire_at_us;
}

void FireNextTimer(EngineState* s) { Runner(s).FireTimer(); }

// Sets a string field, or clears it when empty: a message not on an arena
// allocates even for an empty value, and the returned list of a busy Advance
// holds 100 000 messages. Assigned in place: set_x(data, size) builds a
// temporary std::string and copies it again (a malloc and a free more for
// values past 15 bytes, such as the action id).
#define RAPPORT_SET_STRING(field, value)                    \
  do {                                                      \
    const absl::string_view v_ = (value);                   \
    if (v_.empty()) {                                       \
      out->clear_##field();                                 \
    } else {                                                \
      out->mutable_##field()->assign(v_.data(), v_.size()); \
    }                                                       \
  } while (false)

void ActionToProto(const EngineState& s, uint32_t i, v1::Action* out) {
  const StoredAction& a = s.actions.at(i);
  const StringPool& pool = s.actions.pool();
  // The id is printed on the stack and copied once: building it inside the
  // message's string cost a growth and a zero fill per action.
  const absl::string_view rule = pool.at(a.rule_id);
  if (rule.size() <= kMaxRuleIdBytes) {
    char id[kMaxRuleIdBytes + 33];
    out->mutable_action_id()->assign(id, ActionStore::WriteId(rule, a.h1, a.h2, id));
  } else {  // only a loaded snapshot can hold such a rule id
    std::string id;
    ActionStore::AppendId(rule, a.h1, a.h2, &id);
    out->set_action_id(std::move(id));
  }
  RAPPORT_SET_STRING(rule_id, pool.at(a.rule_id));
  RAPPORT_SET_STRING(rule_set_id, pool.at(a.rule_set_id));
  out->set_rule_set_version(a.rule_set_version);
  out->set_kind(static_cast<v1::ActionKind>(a.kind));
  RAPPORT_SET_STRING(cause_event_id, a.cause == nullptr ? absl::string_view()
                                                        : absl::string_view(a.cause, a.cause_len));
  RAPPORT_SET_STRING(account_id, a.account != StoredAction::kNone
                                     ? absl::string_view(s.accounts.at(a.account).account_id())
                                     : absl::string_view());
  RAPPORT_SET_STRING(deal_id, a.deal != StoredAction::kNone
                                  ? absl::string_view(s.deals.at(a.deal).deal_id())
                                  : absl::string_view());
  out->set_assignee_role(static_cast<v1::Assignee>(a.assignee_role));
  RAPPORT_SET_STRING(assignee_id, AssigneeOf(s, a));
  out->set_fired_at_us(a.fired_at_us);
  out->set_due_at_us(a.due_at_us);
  out->set_channel(static_cast<v1::Channel>(a.channel));
  RAPPORT_SET_STRING(template_, pool.at(a.template_));
  RAPPORT_SET_STRING(to_stage, pool.at(a.to_stage));
  out->set_state(static_cast<v1::ActionState>(a.state));
  RAPPORT_SET_STRING(occasion, pool.at(a.occasion));
}

#undef RAPPORT_SET_STRING

absl::Status LoadActions(const google::protobuf::RepeatedPtrField<v1::Action>& rows,
                         EngineState* s) {
  ActionStore& store = s->actions;
  StringPool& pool = store.pool();
  store.Reserve(static_cast<size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    const v1::Action& in = rows.Get(i);
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("actions: action '", in.action_id(), "' ", what));
    };
    StoredAction a;
    absl::string_view rule;
    if (!ActionStore::ParseId(in.action_id(), &rule, &a.h1, &a.h2) || rule != in.rule_id()) {
      return bad("has an id that is not '<rule id>-<32 hex digits>' of its rule");
    }
    a.rule_id = pool.Intern(rule);
    a.rule_set_id = pool.Intern(in.rule_set_id());
    a.rule_set_version = in.rule_set_version();
    if (!v1::ActionKind_IsValid(in.kind()) || !v1::Assignee_IsValid(in.assignee_role()) ||
        !v1::Channel_IsValid(in.channel()) || in.kind() > UINT8_MAX ||
        in.assignee_role() > UINT8_MAX || in.channel() > UINT8_MAX) {
      return bad("has an unknown kind, assignee role or channel");
    }
    a.kind = static_cast<uint8_t>(in.kind());
    a.assignee_role = static_cast<uint8_t>(in.assignee_role());
    a.channel = static_cast<uint8_t>(in.channel());
    if (!v1::ActionState_IsValid(in.state()) || in.state() == v1::ACTION_STATE_UNSPECIFIED) {
      return bad("has no valid state");
    }
    a.state = static_cast<uint8_t>(in.state());
    if (!in.cause_event_id().empty()) {
      const absl::string_view stored = s->event_ids.Stored(in.cause_event_id());
      if (stored.empty())
        return bad(
            absl::StrCat("names cause '", in.cause_event_id(), "' that is not an accepted event"));
      a.cause = stored.data();
      a.cause_len = static_cast<uint8_t>(stored.size());
    }
    if (!in.account_id().empty()) {
      a.account = s->accounts.IndexOf(in.account_id());
      if (a.account == StoredAction::kNone)
        return bad(absl::StrCat("names unknown account '", in.account_id(), "'"));
    }
    if (!in.deal_id().empty()) {
      a.deal = s->deals.IndexOf(in.deal_id());
      if (a.deal == StoredAction::kNone)
        return bad(absl::StrCat("names unknown deal '", in.deal_id(), "'"));
    }
    a.assignee = a.account != StoredAction::kNone && !in.assignee_id().empty() &&
                         in.assignee_id() == in.account_id()
                     ? StoredAction::kAssigneeIsAccount
                     : pool.Intern(in.assignee_id());
    a.fired_at_us = in.fired_at_us();
    a.due_at_us = in.due_at_us();
    a.template_ = pool.Intern(in.template_());
    a.to_stage = pool.Intern(in.to_stage());
    a.occasion = pool.Intern(in.occasion());
    if (store.Add(a) == ActionStore::kNone) return bad("is repeated");
  }
  return absl::OkStatus();
}

void TakeProduced(EngineState* s, google::protobuf::RepeatedPtrField<v1::Action>* out) {
  out->Reserve(out->size() + static_cast<int>(s->rules.produced.size()));
  for (uint32_t i : s->rules.produced) ActionToProto(*s, i, out->Add());
  s->rules.produced.clear();
}

v1::ActionList Outbox(const EngineState& s) {
  v1::ActionList out;
  for (uint32_t i : s.rules.outbox) {
    if (s.actions.at(i).state == v1::ACTION_STATE_PENDING) ActionToProto(s, i, out.add_actions());
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> PendingToAcknowledge(absl::Span<const std::string> ids,
                                                           const EngineState& s) {
  std::vector<uint32_t> pending;
  absl::flat_hash_set<uint32_t> seen;
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint32_t idx = s.actions.IndexOf(ids[i]);
    if (idx == ActionStore::kNone) {
      return absl::NotFoundError(
          absl::StrCat("acknowledge: ids[", i, "]: unknown action '", ids[i], "'"));
    }
    if (!seen.insert(idx).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("acknowledge: ids[", i, "]: '", ids[i], "' is repeated"));
    }
    if (s.actions.at(idx).state == v1::ACTION_STATE_PENDING) pending.push_back(idx);
  }
  return pending;
}

void MarkAcknowledged(absl::Span<const uint32_t> actions, EngineState* s) {
  for (uint32_t idx : actions) {
    s->actions.at(idx).state = static_cast<uint8_t>(v1::ACTION_STATE_ACKNOWLEDGED);
  }
  // Compact once most of the outbox is no longer pending.
  std::vector<uint32_t>& outbox = s->rules.outbox;
  if (!actions.empty() && outbox.size() > 64) {
    size_t pending = 0;
    for (uint32_t i : outbox) pending += s->actions.at(i).state == v1::ACTION_STATE_PENDING;
    if (pending * 2 < outbox.size()) {
      outbox.erase(std::remove_if(outbox.begin(), outbox.end(),
                                  [&](uint32_t i) {
                                    return s->actions.at(i).state != v1::ACTION_STATE_PENDING;
                                  }),
                   outbox.end());
    }
  }
}

absl::Status Acknowledge(absl::Span<const std::string> ids, EngineState* s) {
  absl::StatusOr<std::vector<uint32_t>> pending = PendingToAcknowledge(ids, *s);
  if (!pending.ok()) return pending.status();
  MarkAcknowledged(*pending, s);
  return absl::OkStatus();
}

namespace {

// Every cause is a view the event-id log's Stored returned when the timer was
// set (and the log outlives it), so it is always found.
uint32_t TimerCauseIndex(const EventIdLog& ids, const Timer& t) {
  if (t.cause == nullptr) return 0;
  const absl::string_view cause(t.cause, t.cause_len);
  return static_cast<uint32_t>(ids.IndexOf(cause, EventIdLog::Hash(cause)) + 1);
}

}  // namespace

std::vector<uint32_t> TimerCauseIndexes(const EngineState& s) {
  const TimerHeap& timers = s.rules.timers;
  std::vector<uint32_t> out(timers.size());
  if (timers.empty()) return out;
  // A cause points into the log's own storage (what Stored returned), so its
  // address alone gives its index: no id is hashed or compared, and the
  // locator's tables are a fraction of the size of the hash index.
  const EventIdLog::Locator locator(s.event_ids);
  for (size_t i = 0; i < timers.size(); ++i) {
    const Timer& t = timers[i];
    if (t.cause != nullptr) out[i] = static_cast<uint32_t>(locator.IndexOf(t.cause) + 1);
  }
  return out;
}

void WriteRuntime(const EngineState& s, v1::RulesRuntime* out) {
  const Runtime& rt = s.rules;
  // Sized once: grown by doubling, the columns cost more in copies than in
  // the values (and on an arena the old blocks stay until it goes).
  const int n = static_cast<int>(rt.timers.size());
  out->mutable_timer_fire_at_us()->Reserve(n);
  out->mutable_timer_seq()->Reserve(n);
  out->mutable_timer_rule()->Reserve(n);
  out->mutable_timer_subject()->Reserve(n);
  out->mutable_timer_extra()->Reserve(n);
  out->mutable_timer_aux()->Reserve(n);
  out->mutable_timer_cause_index()->Reserve(n);
  for (const Timer& t : rt.timers) {
    out->add_timer_fire_at_us(t.fire_at_us);
    out->add_timer_seq(t.seq);
    out->add_timer_rule(t.rule);
    out->add_timer_subject(t.subject);
    out->add_timer_extra(t.extra);
    out->add_timer_aux(t.aux);
    out->add_timer_cause_index(TimerCauseIndex(s.event_ids, t));
  }
  WriteRuntimeAfterTimers(s, out);
}

void WriteRuntimeAfterTimers(const EngineState& s, v1::RulesRuntime* out) {
  const Runtime& rt = s.rules;
  out->set_next_timer_seq(rt.next_timer_seq);
  for (size_t r = 0; r < rt.first_seen.size(); ++r) {
    if (rt.first_seen[r].empty()) continue;
    v1::RulesRuntime::FirstSeen* f = out->add_first_seen();
    f->set_rule(static_cast<uint32_t>(r));
    std::vector<uint32_t> accounts(rt.first_seen[r].begin(), rt.first_seen[r].end());
    std::sort(accounts.begin(), accounts.end());
    f->mutable_accounts()->Assign(accounts.begin(), accounts.end());
  }
  for (size_t w = 0; w < rt.watch_logs.size(); ++w) {
    for (uint32_t account = 0; account < rt.watch_logs[w].size(); ++account) {
      const std::vector<int64_t>& times = rt.watch_logs[w][account];
      if (times.empty()) continue;
      v1::RulesRuntime::WatchLog* log = out->add_watch_logs();
      log->set_watch(static_cast<uint32_t>(w));
      log->set_account(account);
      log->mutable_times_us()->Assign(times.begin(), times.end());
    }
  }
}

absl::Status ReadRuntime(const v1::RulesRuntime& in, EngineState* s) {
  Runtime& rt = s->rules;
  const CompiledRules& r = *rt.rules;
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot: rules: ", what));
  };
  const int n = in.timer_fire_at_us_size();
  // Causes by index (timer_cause_index), or as ids in snapshots written
  // before it (timer_cause); never both, which would leave one unchecked.
  const bool by_index = in.timer_cause_index_size() != 0;
  if (by_index && in.timer_cause_size() != 0) {
    return bad("timer_cause_index and timer_cause are both set (a snapshot has one or the other)");
  }
  const int causes = by_index ? in.timer_cause_index_size() : in.timer_cause_size();
  if (in.timer_seq_size() != n || in.timer_rule_size() != n || in.timer_subject_size() != n ||
      in.timer_extra_size() != n || in.timer_aux_size() != n || causes != n) {
    return bad("the timer columns differ in length");
  }
  // Room for the timers the replayed journal tail sets (as EventIdLog::Load
  // leaves room for its ids): a heap filled to exactly its size doubles at
  // the first timer set, copying every pending timer (~100 MB at 3 M) into
  // fresh pages during recovery. The room is only address space until used.
  rt.timers.reserve(static_cast<size_t>(n) + static_cast<size_t>(n) / 2);
  // By index: where each id starts, built at the first cause (one pass over
  // the log's lengths instead of a hash lookup per timer).
  std::optional<EventIdLog::StartFinder> id_starts;
  const uint32_t ids = static_cast<uint32_t>(s->event_ids.size());
  // Old-format causes are looked up in the event id index, which is far
  // larger than the caches: the cause 8 timers later is hashed and prefetched
  // while this one is checked (0 for no cause, and by index, where nothing is
  // looked up).
  auto hash_cause = [&](size_t j) -> size_t {
    if (by_index) return 0;
    const std::string& cause = in.timer_cause(static_cast<int>(j));
    if (cause.empty()) return 0;
    const size_t hash = EventIdLog::Hash(cause);
    s->event_ids.Prefetch(cause, hash);
    return hash;
  };
  auto read_timer = [&](size_t timer, size_t hash) -> absl::Status {
    const int i = static_cast<int>(timer);
    Timer t;
    t.fire_at_us = in.timer_fire_at_us(i);
    t.seq = in.timer_seq(i);
    const uint32_t rule = in.timer_rule(i);
    t.subject = in.timer_subject(i);
    t.extra = in.timer_extra(i);
    // Built only for an error: a string per timer costs more than the checks.
    auto where = [i] { return absl::StrCat("timer ", i); };
    if (rule >= static_cast<uint32_t>(r.size()))
      return bad(absl::StrCat(where(), ": unknown rule index ", rule));
    t.rule = static_cast<uint16_t>(rule);
    if (t.fire_at_us < kMinTimeUs || t.fire_at_us >= kMaxTimeUs)
      return bad(absl::StrCat(where(), ": fire time out of range"));
    if (in.timer_aux(i) > v1::Severity_MAX) return bad(absl::StrCat(where(), ": aux out of range"));
    t.aux = static_cast<uint8_t>(in.timer_aux(i));
    if (by_index) {
      const uint32_t ref = in.timer_cause_index(i);
      if (ref == 0) {
        t.cause = nullptr;
        t.cause_len = 0;
      } else if (ref > ids) {
        return bad(absl::StrCat(where(), ": timer_cause_index ", ref,
                                " is out of range (the event-id log holds ", ids, " ids)"));
      } else {
        if (!id_starts.has_value()) id_starts.emplace(s->event_ids);
        t.cause = id_starts->Start(ref - 1);
        t.cause_len = static_cast<uint8_t>(s->event_ids.lengths()[ref - 1]);
      }
    } else if (const std::string& cause = in.timer_cause(i); cause.empty()) {
      t.cause = nullptr;
      t.cause_len = 0;
    } else {
      absl::string_view stored = s->event_ids.Stored(cause, hash);
      if (stored.empty())
        return bad(absl::StrCat(where(), ": cause '", cause, "' is not an accepted event"));
      t.cause = stored.data();
      t.cause_len = static_cast<uint8_t>(stored.size());
    }
    const v1::Trigger& trig = r.rule(rule).trigger();
    bool ok = true;
    switch (trig.kind_case()) {
      case v1::Trigger::kOnEvent:
      case v1::Trigger::kStageEntered:
      case v1::Trigger::kAbsence:
        ok = t.subject < s->accounts.size() && t.extra <= s->deals.size();
        break;
      case v1::Trigger::kSlaExceeded:
        ok = t.subject < s->deals.size() &&
             t.extra < static_cast<uint32_t>(s->deals.at(t.subject).history_size());
        break;
      case v1::Trigger::kCalendar:
        ok =
            (trig.calendar().holidays() ? t.subject < static_cast<uint32_t>(r.set().holidays_size())
                                        : t.subject < s->accounts.size()) &&
            t.extra >= 1970 && t.extra <= 9999;
        break;
      default:
        break;
    }
    if (!ok)
      return bad(absl::StrCat(where(), ": subject or extra out of range for rule '",
                              r.rule(rule).id(), "'"));
    rt.timers.push_back(t);
    return absl::OkStatus();
  };
  if (absl::Status st = ForEachHashedAhead<8>(static_cast<size_t>(n), hash_cause, read_timer);
      !st.ok()) {
    return st;
  }
  if (!std::is_heap(rt.timers.begin(), rt.timers.end(), TimerAfter())) {
    return bad("the timers are not in heap order");
  }
  rt.next_timer_seq = in.next_timer_seq();

  for (const auto& f : in.first_seen()) {
    if (f.rule() >= static_cast<uint32_t>(r.size()) ||
        !r.rule(static_cast<int>(f.rule())).trigger().on_event().filter().first_for_account()) {
      return bad(
          absl::StrCat("first_seen: rule index ", f.rule(), " has no first-for-account filter"));
    }
    for (uint32_t a : f.accounts()) {
      if (a >= s->accounts.size()) return bad("first_seen: account index out of range");
      rt.first_seen[f.rule()].insert(a);
    }
  }
  for (const auto& log : in.watch_logs()) {
    if (log.watch() >= r.watches().size() || log.account() >= s->accounts.size()) {
      return bad("watch_logs: watch or account index out of range");
    }
    auto& logs = rt.watch_logs[log.watch()];
    if (logs.size() < s->accounts.size()) logs.resize(s->accounts.size());
    std::vector<int64_t>& v = logs[log.account()];
    if (!v.empty()) return bad("watch_logs: a watch and account repeat");
    v.assign(log.times_us().begin(), log.times_us().end());
    if (v.empty() || !std::is_sorted(v.begin(), v.end()))
      return bad("watch_logs: times are empty or unsorted");
  }

  // Derived parts.
  rt.deal_visits.resize(s->deals.size());
  for (uint32_t i = 0; i < s->deals.size(); ++i) {
    rt.deal_visits[i] = static_cast<uint32_t>(s->deals.at(i).history_size());
  }
  rt.accounts_seen = static_cast<uint32_t>(s->accounts.size());
  for (uint32_t i = 0; i < s->actions.size(); ++i) {
    const StoredAction& a = s->actions.at(i);
    if (a.state == v1::ACTION_STATE_PENDING) rt.outbox.push_back(i);
    const absl::string_view assignee = AssigneeOf(*s, a);
    if (a.kind == v1::ACTION_KIND_CREATE_TASK && a.state != v1::ACTION_STATE_DONE &&
        !assignee.empty()) {
      rt.open_tasks.insert(i);
      for (uint16_t rule : r.open_tasks()) {
        if (r.CountsTask(rule, s->actions.pool().at(a.template_)))
          ++rt.open_task_counts[rule][std::string(assignee)];
      }
    }
  }
  return absl::OkStatus();
}

size_t TimerBytes(const Runtime& rt) { return rt.timers.capacity() * sizeof(Timer); }

}  // namespace rapport::rules
