#include "lib/rules/rule_set.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "rapport/engine.h"

namespace rapport::rules {
namespace {

// Returns the status of `expr` when it is an error.
#define RETURN(expr)           \
  do {                         \
    absl::Status _st = (expr); \
    if (!_st.ok()) return _st; \
  } while (0)

constexpr absl::string_view kPrevious = "previous";

// Collects the first text-format parse error with its position.
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (error.empty())
      error = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  std::string error;
};

// Validation of one rule: every error names the rule and the field.
class RuleChecker {
 public:
  RuleChecker(const v1::RuleSet& set, int index, const Pipelines& pipelines,
              const absl::flat_hash_set<absl::string_view>& templates)
      : set_(set), rule_(set.rules(index)), pipelines_(pipelines), templates_(templates) {}

  absl::Status Check() {
    const v1::Trigger& t = rule_.trigger();
    if (rule_.delay_us() < 0 || rule_.delay_us() > kMaxOffsetUs) {
      return Error("delay_us",
                   absl::StrCat(rule_.delay_us(), " is outside [0, ", kMaxOffsetUs, "]"));
    }
    switch (t.kind_case()) {
      case v1::Trigger::kOnEvent:
        RETURN(CheckFilter("trigger.on_event.filter", t.on_event().filter(), /*first_ok=*/true));
        break;
      case v1::Trigger::kStageEntered: {
        const auto& s = t.stage_entered();
        RETURN(CheckPipeline("trigger.stage_entered.pipeline_id", s.pipeline_id()));
        if (s.stage().empty()) return Error("trigger.stage_entered.stage", "is required");
        if (!StageExists(s.pipeline_id(), s.stage())) {
          return Error("trigger.stage_entered.stage", UnknownStage(s.pipeline_id(), s.stage()));
        }
        break;
      }
      case v1::Trigger::kSlaExceeded: {
        const auto& s = t.sla_exceeded();
        RETURN(CheckPipeline("trigger.sla_exceeded.pipeline_id", s.pipeline_id()));
        if (!v1::Phase_IsValid(s.phase()))
          return Error("trigger.sla_exceeded.phase", "unknown value");
        break;
      }
      case v1::Trigger::kCalendar: {
        const auto& c = t.calendar();
        if (c.holidays() == c.account_anniversary()) {
          return Error("trigger.calendar",
                       "exactly one of holidays and account_anniversary must be true");
        }
        if (c.holidays() && set_.holidays_size() == 0) {
          return Error("trigger.calendar.holidays", "the rule set has no holidays");
        }
        if (c.lead_months() < 0 || c.lead_months() > 120) {
          return Error("trigger.calendar.lead_months",
                       absl::StrCat(c.lead_months(), " is outside [0, 120]"));
        }
        if (c.lead_us() < 0 || c.lead_us() >= 366 * kMicrosPerDay) {
          return Error("trigger.calendar.lead_us",
                       absl::StrCat(c.lead_us(), " is outside [0, 366 days)"));
        }
        break;
      }
      case v1::Trigger::kAbsence: {
        const auto& a = t.absence();
        RETURN(CheckFilter("trigger.absence.after", a.after(), /*first_ok=*/false));
        RETURN(CheckFilter("trigger.absence.absent", a.absent(), /*first_ok=*/false));
        if (a.window_us() <= 0 || a.window_us() > kMaxOffsetUs) {
          return Error("trigger.absence.window_us",
                       absl::StrCat(a.window_us(), " is outside (0, ", kMaxOffsetUs, "]"));
        }
        break;
      }
      case v1::Trigger::kOpenTasks: {
        const auto& o = t.open_tasks();
        if (o.more_than() < 0) return Error("trigger.open_tasks.more_than", "is negative");
        for (int i = 0; i < o.templates_size(); ++i) {
          RETURN(
              CheckTemplate(absl::StrCat("trigger.open_tasks.templates[", i, "]"), o.templates(i)));
        }
        if (rule_.delay_us() != 0) return Error("delay_us", "open-tasks triggers fire at once (0)");
        break;
      }
      case v1::Trigger::kRuleSetAge: {
        const int m = t.rule_set_age().older_than_months();
        if (m < 1 || m > 1200) {
          return Error("trigger.rule_set_age.older_than_months",
                       absl::StrCat(m, " is outside [1, 1200]"));
        }
        if (rule_.conditions_size() > 0) {
          return Error("conditions", "a rule-set-age rule has no account to hold conditions about");
        }
        break;
      }
      case v1::Trigger::KIND_NOT_SET:
        return Error("trigger", "is required");
    }
    for (int i = 0; i < rule_.conditions_size(); ++i) {
      RETURN(CheckCondition(absl::StrCat("conditions[", i, "]"), rule_.conditions(i)));
    }
    if (rule_.actions_size() == 0) return Error("actions", "a rule needs at least one action");
    if (rule_.actions_size() > kMaxActionsPerRule) {
      return Error("actions", absl::StrCat("more than ", kMaxActionsPerRule, " actions"));
    }
    for (int i = 0; i < rule_.actions_size(); ++i) {
      RETURN(CheckAction(absl::StrCat("actions[", i, "]"), rule_.actions(i)));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("rule '", rule_.id(), "': ", field, ": ", what));
  }

  // True when the trigger carries an account (and so owners, teams, account
  // conditions).
  bool HasAccount() const { return rule_.trigger().kind_case() != v1::Trigger::kRuleSetAge; }
  // True when the trigger can carry a deal.
  bool MayHaveDeal() const {
    const v1::Trigger& t = rule_.trigger();
    switch (t.kind_case()) {
      case v1::Trigger::kStageEntered:
      case v1::Trigger::kSlaExceeded:
        return true;
      case v1::Trigger::kOnEvent:
        return DealEvent(t.on_event().filter().type());
      case v1::Trigger::kAbsence:
        return DealEvent(t.absence().after().type());
      default:
        return false;
    }
  }
  static bool DealEvent(v1::EventType type) {
    switch (type) {
      case v1::EVENT_TYPE_LEAD_CREATED:
      case v1::EVENT_TYPE_DEAL_STAGE_CHANGED:
      case v1::EVENT_TYPE_DEAL_WON:
      case v1::EVENT_TYPE_DEAL_LOST:
      case v1::EVENT_TYPE_ORDER_PLACED:
      case v1::EVENT_TYPE_ORDER_DELAYED:
      case v1::EVENT_TYPE_ORDER_COMPLETED:
      case v1::EVENT_TYPE_CASE_STUDY_PUBLISHED:
        return true;
      default:
        return false;
    }
  }

  absl::Status CheckPipeline(absl::string_view field, const std::string& id) const {
    if (!id.empty() && pipelines_.Find(id) == nullptr) {
      return Error(field, absl::StrCat("unknown pipeline '", id, "'"));
    }
    return absl::OkStatus();
  }
  bool StageExists(const std::string& pipeline, const std::string& stage) const {
    if (!pipeline.empty()) return pipelines_.Find(pipeline)->StageIndex(stage) >= 0;
    for (const PipelineInfo& p : pipelines_.all()) {
      if (p.StageIndex(stage) >= 0) return true;
    }
    return false;
  }
  static std::string UnknownStage(const std::string& pipeline, const std::string& stage) {
    return pipeline.empty()
               ? absl::StrCat("unknown stage '", stage, "' (in no pipeline)")
               : absl::StrCat("unknown stage '", stage, "' of pipeline '", pipeline, "'");
  }
  // The pipeline a deal-bearing trigger names, or "" for any.
  std::string TriggerPipeline() const {
    const v1::Trigger& t = rule_.trigger();
    if (t.has_stage_entered()) return t.stage_entered().pipeline_id();
    if (t.has_sla_exceeded()) return t.sla_exceeded().pipeline_id();
    return std::string();
  }

  absl::Status CheckTemplate(const std::string& field, const std::string& name) const {
    if (name.empty() || name.size() > kMaxIdBytes) {
      return Error(field, absl::StrCat("must be 1..", kMaxIdBytes, " bytes"));
    }
    if (!templates_.empty() && !templates_.contains(name)) {
      return Error(field,
                   absl::StrCat("unknown template '", name, "' (not in the rule set's templates)"));
    }
    return absl::OkStatus();
  }

  absl::Status CheckFilter(const std::string& field, const v1::EventFilter& f,
                           bool first_ok) const {
    if (f.type() == v1::EVENT_TYPE_UNSPECIFIED || !v1::EventType_IsValid(f.type())) {
      return Error(absl::StrCat(field, ".type"), "is required");
    }
    if (f.type() == v1::EVENT_TYPE_MANAGER_UPSERTED || f.type() == v1::EVENT_TYPE_TEAM_UPSERTED ||
        f.type() == v1::EVENT_TYPE_TASK_COMPLETED) {
      return Error(absl::StrCat(field, ".type"),
                   absl::StrCat(v1::EventType_Name(f.type()), " concerns no account"));
    }
    const bool activity = f.type() == v1::EVENT_TYPE_ACTIVITY;
    if (!v1::ActivityKind_IsValid(f.activity_kind()) || (!activity && f.activity_kind() != 0)) {
      return Error(absl::StrCat(field, ".activity_kind"),
                   "only for a valid kind of activity events");
    }
    if (!v1::Direction_IsValid(f.direction()) || (!activity && f.direction() != 0)) {
      return Error(absl::StrCat(field, ".direction"),
                   "only for a valid direction of activity events");
    }
    if (!v1::AccountKind_IsValid(f.account_kind())) {
      return Error(absl::StrCat(field, ".account_kind"), "unknown value");
    }
    if (!v1::Severity_IsValid(f.min_severity()) ||
        (f.type() != v1::EVENT_TYPE_COMPLAINT_OPENED && f.min_severity() != 0)) {
      return Error(absl::StrCat(field, ".min_severity"), "only for complaint-opened events");
    }
    if (f.first_for_account() && !first_ok) {
      return Error(absl::StrCat(field, ".first_for_account"), "only for on-event triggers");
    }
    return absl::OkStatus();
  }

  absl::Status CheckCondition(const std::string& field, const v1::Condition& c) const {
    if (!HasAccount()) return Error(field, "the trigger has no account");
    switch (c.kind_case()) {
      case v1::Condition::kAccountKind:
        if (c.account_kind() == 0 || !v1::AccountKind_IsValid(c.account_kind())) {
          return Error(absl::StrCat(field, ".account_kind"), "must be CLIENT or PARTNER");
        }
        break;
      case v1::Condition::kStatus:
        if (c.status().any_of_size() == 0)
          return Error(absl::StrCat(field, ".status.any_of"), "is empty");
        for (int s : c.status().any_of()) {
          if (s == 0 || !v1::AccountStatus_IsValid(s)) {
            return Error(absl::StrCat(field, ".status.any_of"), absl::StrCat("unknown status ", s));
          }
        }
        break;
      case v1::Condition::kSegment:
        if (c.segment().empty() || c.segment().size() > kMaxTextBytes) {
          return Error(absl::StrCat(field, ".segment"),
                       absl::StrCat("must be 1..", kMaxTextBytes, " bytes"));
        }
        break;
      case v1::Condition::kTierAtMost:
        if (c.tier_at_most() == 0 || !v1::Tier_IsValid(c.tier_at_most())) {
          return Error(absl::StrCat(field, ".tier_at_most"), "must be TIER_A, TIER_B or TIER_C");
        }
        break;
      case v1::Condition::kStage:
        if (!MayHaveDeal()) return Error(absl::StrCat(field, ".stage"), "the trigger has no deal");
        if (!StageExists(TriggerPipeline(), c.stage())) {
          return Error(absl::StrCat(field, ".stage"), UnknownStage(TriggerPipeline(), c.stage()));
        }
        break;
      case v1::Condition::kCount: {
        const auto& n = c.count();
        const bool events = n.has_events();
        const bool actions = n.action_kind() != v1::ACTION_KIND_UNSPECIFIED;
        if (events == actions) {
          return Error(absl::StrCat(field, ".count"), "exactly one of events and action_kind");
        }
        if (events) RETURN(CheckFilter(absl::StrCat(field, ".count.events"), n.events(), false));
        if (actions && !v1::ActionKind_IsValid(n.action_kind())) {
          return Error(absl::StrCat(field, ".count.action_kind"), "unknown value");
        }
        if (n.window_us() < 0 || n.window_us() > kMaxOffsetUs) {
          return Error(absl::StrCat(field, ".count.window_us"),
                       absl::StrCat(n.window_us(), " is outside [0, ", kMaxOffsetUs, "]"));
        }
        if (n.at_least() < 0) return Error(absl::StrCat(field, ".count.at_least"), "is negative");
        if (n.has_at_most() && n.at_most() < n.at_least()) {
          return Error(absl::StrCat(field, ".count.at_most"), "is below at_least");
        }
        break;
      }
      case v1::Condition::kOpenComplaint:
        if (!c.open_complaint())
          return Error(absl::StrCat(field, ".open_complaint"), "must be true (negate for none)");
        break;
      case v1::Condition::kPreferredChannel:
        if (c.preferred_channel() != v1::CHANNEL_EMAIL &&
            c.preferred_channel() != v1::CHANNEL_MESSENGER) {
          return Error(absl::StrCat(field, ".preferred_channel"), "must be EMAIL or MESSENGER");
        }
        break;
      case v1::Condition::kPhase:
        if (!MayHaveDeal()) return Error(absl::StrCat(field, ".phase"), "the trigger has no deal");
        if (c.phase() == 0 || !v1::Phase_IsValid(c.phase())) {
          return Error(absl::StrCat(field, ".phase"), "must be ACQUISITION or POST_SALE");
        }
        break;
      case v1::Condition::kHasPreviousStage:
        if (!MayHaveDeal())
          return Error(absl::StrCat(field, ".has_previous_stage"), "the trigger has no deal");
        if (!c.has_previous_stage()) {
          return Error(absl::StrCat(field, ".has_previous_stage"),
                       "must be true (negate for the first stage)");
        }
        break;
      case v1::Condition::kCauseMinSeverity: {
        const v1::Trigger& t = rule_.trigger();
        if (!t.has_on_event() || t.on_event().filter().type() != v1::EVENT_TYPE_COMPLAINT_OPENED) {
          return Error(absl::StrCat(field, ".cause_min_severity"),
                       "only for rules triggered by complaint-opened events");
        }
        if (c.cause_min_severity() == 0 || !v1::Severity_IsValid(c.cause_min_severity())) {
          return Error(absl::StrCat(field, ".cause_min_severity"), "unknown severity");
        }
        break;
      }
      case v1::Condition::KIND_NOT_SET:
        return Error(field, "names no condition");
    }
    return absl::OkStatus();
  }

  absl::Status CheckAction(const std::string& field, const v1::ActionSpec& a) const {
    const v1::Trigger& t = rule_.trigger();
    if (a.due_offset_us() < 0 || a.due_offset_us() > kMaxOffsetUs) {
      return Error(absl::StrCat(field, ".due_offset_us"),
                   absl::StrCat(a.due_offset_us(), " is outside [0, ", kMaxOffsetUs, "]"));
    }
    if (!v1::Assignee_IsValid(a.assignee()))
      return Error(absl::StrCat(field, ".assignee"), "unknown value");
    if (!v1::Channel_IsValid(a.channel()))
      return Error(absl::StrCat(field, ".channel"), "unknown value");
    switch (a.kind()) {
      case v1::ACTION_KIND_CREATE_TASK:
      case v1::ACTION_KIND_NOTIFY:
        if (a.assignee() == v1::ASSIGNEE_UNSPECIFIED || a.assignee() == v1::ASSIGNEE_ACCOUNT) {
          return Error(absl::StrCat(field, ".assignee"),
                       "a task or notice goes to OWNER, TEAM_LEAD or HEAD");
        }
        if (!HasAccount() && a.assignee() != v1::ASSIGNEE_HEAD) {
          return Error(absl::StrCat(field, ".assignee"),
                       "the trigger has no account, so no owner or team lead: only HEAD");
        }
        if (a.kind() == v1::ACTION_KIND_CREATE_TASK && t.has_open_tasks()) {
          return Error(absl::StrCat(field, ".kind"), "an open-tasks rule may not create tasks");
        }
        if (a.channel() != v1::CHANNEL_UNSPECIFIED) {
          return Error(absl::StrCat(field, ".channel"), "only for messages and surveys");
        }
        break;
      case v1::ACTION_KIND_SEND_MESSAGE:
      case v1::ACTION_KIND_SEND_SURVEY:
        if (a.assignee() != v1::ASSIGNEE_UNSPECIFIED && a.assignee() != v1::ASSIGNEE_ACCOUNT) {
          return Error(absl::StrCat(field, ".assignee"), "messages and surveys go to the ACCOUNT");
        }
        if (!HasAccount() || t.has_open_tasks()) {
          return Error(absl::StrCat(field, ".kind"), "the trigger has no account to write to");
        }
        if (a.channel() == v1::CHANNEL_PHONE) {
          return Error(absl::StrCat(field, ".channel"),
                       a.kind() == v1::ACTION_KIND_SEND_SURVEY
                           ? "surveys are never sent by phone"
                           : "messages are written: EMAIL or MESSENGER");
        }
        break;
      case v1::ACTION_KIND_MOVE_STAGE: {
        if (!MayHaveDeal())
          return Error(absl::StrCat(field, ".kind"), "the trigger has no deal to move");
        if (a.assignee() != v1::ASSIGNEE_UNSPECIFIED && a.assignee() != v1::ASSIGNEE_OWNER) {
          return Error(absl::StrCat(field, ".assignee"),
                       "a move goes to the OWNER (or UNSPECIFIED)");
        }
        if (a.to_stage().empty()) return Error(absl::StrCat(field, ".to_stage"), "is required");
        if (a.to_stage() != kPrevious && !StageExists(TriggerPipeline(), a.to_stage())) {
          return Error(absl::StrCat(field, ".to_stage"),
                       UnknownStage(TriggerPipeline(), a.to_stage()));
        }
        break;
      }
      default:
        return Error(absl::StrCat(field, ".kind"), "is required");
    }
    if (a.kind() != v1::ACTION_KIND_MOVE_STAGE || !a.template_().empty()) {
      RETURN(CheckTemplate(absl::StrCat(field, ".template"), a.template_()));
    }
    if (a.kind() != v1::ACTION_KIND_MOVE_STAGE && !a.to_stage().empty()) {
      return Error(absl::StrCat(field, ".to_stage"), "only for MOVE_STAGE");
    }
    for (int i = 0; i < a.conditions_size(); ++i) {
      RETURN(CheckCondition(absl::StrCat(field, ".conditions[", i, "]"), a.conditions(i)));
    }
    return absl::OkStatus();
  }

  const v1::RuleSet& set_;
  const v1::Rule& rule_;
  const Pipelines& pipelines_;
  const absl::flat_hash_set<absl::string_view>& templates_;
};

bool ValidRuleId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxRuleIdBytes) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

// Move-stage rules that fire on stage entry make the host move the deal,
// which enters another stage and may fire again. A cycle of such moves would
// never settle. SLA-triggered moves wait out an SLA first, but a cycle of
// them still never settles, so both count. "previous" always goes down a
// stage, so a cycle needs a named target.
absl::Status CheckMoveLoops(const v1::RuleSet& set, const Pipelines& pipelines) {
  for (const PipelineInfo& p : pipelines.all()) {
    const int n = p.size();
    // edges[from] = (to, rule index).
    std::vector<std::vector<std::pair<int, int>>> edges(n);
    for (int r = 0; r < set.rules_size(); ++r) {
      const v1::Rule& rule = set.rules(r);
      const v1::Trigger& t = rule.trigger();
      std::vector<int> from;
      if (t.has_stage_entered()) {
        const auto& s = t.stage_entered();
        if (!s.pipeline_id().empty() && s.pipeline_id() != p.pipeline.id()) continue;
        int i = p.StageIndex(s.stage());
        if (i >= 0) from.push_back(i);
      } else if (t.has_sla_exceeded()) {
        const auto& s = t.sla_exceeded();
        if (!s.pipeline_id().empty() && s.pipeline_id() != p.pipeline.id()) continue;
        for (int i = 0; i < n; ++i) {
          if (p.stage(i).sla_us() > 0 && (s.phase() == 0 || s.phase() == p.stage(i).phase())) {
            from.push_back(i);
          }
        }
      } else {
        continue;
      }
      for (const v1::ActionSpec& a : rule.actions()) {
        if (a.kind() != v1::ACTION_KIND_MOVE_STAGE) continue;
        for (int f : from) {
          int to = a.to_stage() == kPrevious ? f - 1 : p.StageIndex(a.to_stage());
          if (to >= 0 && to != f) edges[f].emplace_back(to, r);
        }
      }
    }
    // Depth-first search for a back edge.
    std::vector<int> color(n, 0), via(n, -1), parent(n, -1);
    for (int start = 0; start < n; ++start) {
      if (color[start] != 0) continue;
      std::vector<std::pair<int, size_t>> stack{{start, 0}};
      color[start] = 1;
      while (!stack.empty()) {
        auto& [u, next] = stack.back();
        if (next == edges[u].size()) {
          color[u] = 2;
          stack.pop_back();
          continue;
        }
        auto [v, r] = edges[u][next++];
        if (color[v] == 1) {
          // The cycle v -> ... -> u -> v: name its rules and stages.
          std::vector<std::string> rules{set.rules(r).id()};
          std::vector<std::string> stages{p.stage(u).id()};
          for (int w = u; w != v; w = parent[w]) {
            rules.push_back(set.rules(via[w]).id());
            stages.push_back(p.stage(parent[w]).id());
          }
          std::reverse(rules.begin(), rules.end());
          std::reverse(stages.begin(), stages.end());
          return absl::InvalidArgumentError(absl::StrCat(
              "rule '", set.rules(r).id(),
              "': actions.to_stage: move-stage loop that would never settle in pipeline '",
              p.pipeline.id(), "': stages ", absl::StrJoin(stages, " -> "), " -> ", p.stage(v).id(),
              " (rules ", absl::StrJoin(rules, ", "), ")"));
        }
        if (color[v] == 0) {
          color[v] = 1;
          parent[v] = u;
          via[v] = r;
          stack.emplace_back(v, 0);
        }
      }
    }
  }
  return absl::OkStatus();
}

std::string FilterKey(const v1::EventFilter& f) {
  return absl::StrCat("e", f.type(), ".", f.activity_kind(), ".", f.direction(), ".",
                      f.account_kind(), ".", f.min_severity());
}

}  // namespace

absl::StatusOr<std::unique_ptr<const CompiledRules>> CompiledRules::Compile(
    const v1::RuleSet& set, const Pipelines& pipelines) {
  std::unique_ptr<CompiledRules> c(new CompiledRules());
  c->set_ = set;
  if (set.rules_size() > 0) {
    if (absl::Status st = c->Build(pipelines); !st.ok()) return st;
  }
  return std::unique_ptr<const CompiledRules>(std::move(c));
}

absl::Status CompiledRules::Build(const Pipelines& pipelines) {
  const v1::RuleSet& set = set_;
  if (set.id().empty() || set.id().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule set: id: must be 1..", kMaxIdBytes, " bytes"));
  }
  if (set.version() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule set '", set.id(), "': version: must be >= 1"));
  }
  if (set.effective_at_us() < kMinTimeUs || set.effective_at_us() >= kMaxTimeUs) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule set '", set.id(), "': effective_at_us: outside years 1970..9999"));
  }
  if (set.rules_size() > kMaxRules) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule set '", set.id(), "': rules: more than ", kMaxRules));
  }
  absl::flat_hash_set<absl::string_view> holiday_ids;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  for (int i = 0; i < set.holidays_size(); ++i) {
    const v1::Holiday& h = set.holidays(i);
    const std::string where = absl::StrCat("rule set '", set.id(), "': holidays[", i, "]");
    if (!ValidRuleId(h.id()) || !holiday_ids.insert(h.id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".id: '", h.id(), "' is empty, repeated, or not 1..64 bytes of [A-Za-z0-9_.-]"));
    }
    if (h.month() < 1 || h.month() > 12 || h.day() < 1 || h.day() > kDays[h.month() - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(where, " ('", h.id(), "'): month ", h.month(),
                                                     ", day ", h.day(), " is not a date"));
    }
  }
  absl::flat_hash_set<absl::string_view> templates;
  for (const std::string& t : set.templates()) templates.insert(t);

  absl::flat_hash_set<absl::string_view> ids;
  for (int i = 0; i < set.rules_size(); ++i) {
    const v1::Rule& rule = set.rules(i);
    if (!ValidRuleId(rule.id())) {
      return absl::InvalidArgumentError(absl::StrCat("rule set '", set.id(), "': rules[", i,
                                                     "].id: '", rule.id(),
                                                     "' must be 1..64 bytes of [A-Za-z0-9_.-]"));
    }
    if (!ids.insert(rule.id()).second) {
      return absl::InvalidArgumentError(absl::StrCat("rule '", rule.id(), "': id: repeated"));
    }
    if (absl::Status st = RuleChecker(set, i, pipelines, templates).Check(); !st.ok()) return st;
  }
  if (absl::Status st = CheckMoveLoops(set, pipelines); !st.ok()) return st;

  // Indexes.
  const int n = set.rules_size();
  absence_watch_.assign(n, -1);
  count_watch_.resize(n);
  task_templates_.resize(n);
  for (int i = 0; i < n; ++i) {
    const v1::Rule& rule = set.rules(i);
    const v1::Trigger& t = rule.trigger();
    const auto idx = static_cast<uint16_t>(i);
    switch (t.kind_case()) {
      case v1::Trigger::kOnEvent:
        on_event_[t.on_event().filter().type()].push_back(idx);
        break;
      case v1::Trigger::kStageEntered:
        stage_entered_.push_back(idx);
        break;
      case v1::Trigger::kSlaExceeded:
        sla_.push_back(idx);
        break;
      case v1::Trigger::kCalendar:
        (t.calendar().holidays() ? holidays_ : anniversaries_).push_back(idx);
        break;
      case v1::Trigger::kAbsence: {
        absence_after_[t.absence().after().type()].push_back(idx);
        Watch w;
        w.filter = t.absence().absent();
        absence_watch_[i] = AddWatch(w);
        break;
      }
      case v1::Trigger::kOpenTasks:
        open_tasks_.push_back(idx);
        for (const std::string& tpl : t.open_tasks().templates()) task_templates_[i].insert(tpl);
        break;
      case v1::Trigger::kRuleSetAge:
        rule_set_age_.push_back(idx);
        break;
      case v1::Trigger::KIND_NOT_SET:
        break;
    }
    auto watch_of = [&](const v1::Condition& c) {
      if (!c.has_count()) return -1;
      Watch w;
      if (c.count().has_events()) {
        w.filter = c.count().events();
      } else {
        w.is_action = true;
        w.action_kind = c.count().action_kind();
      }
      return AddWatch(w);
    };
    count_watch_[i].resize(rule.actions_size() + 1);
    for (const v1::Condition& c : rule.conditions()) count_watch_[i][0].push_back(watch_of(c));
    for (int a = 0; a < rule.actions_size(); ++a) {
      for (const v1::Condition& c : rule.actions(a).conditions()) {
        count_watch_[i][a + 1].push_back(watch_of(c));
      }
    }
  }
  return absl::OkStatus();
}

int CompiledRules::AddWatch(const Watch& w) {
  std::string key = w.is_action ? absl::StrCat("a", w.action_kind) : FilterKey(w.filter);
  for (size_t i = 0; i < watch_keys_.size(); ++i) {
    if (watch_keys_[i] == key) return static_cast<int>(i);
  }
  watch_keys_.push_back(std::move(key));
  watches_.push_back(w);
  watches_.back().filter.set_first_for_account(false);
  const int idx = static_cast<int>(watches_.size()) - 1;
  if (!w.is_action) watches_by_type_[w.filter.type()].push_back(static_cast<uint16_t>(idx));
  return idx;
}

int CompiledRules::ActionWatch(v1::ActionKind kind) const {
  for (size_t i = 0; i < watches_.size(); ++i) {
    if (watches_[i].is_action && watches_[i].action_kind == kind) return static_cast<int>(i);
  }
  return -1;
}

int CompiledRules::CountWatch(int rule, int action, int condition) const {
  return count_watch_[rule][action + 1][condition];
}

bool CompiledRules::CountsTask(int rule, absl::string_view task_template) const {
  const auto& t = task_templates_[rule];
  return t.empty() || t.contains(task_template);
}

absl::StatusOr<v1::RuleSet> ParseRuleSet(absl::string_view text) {
  v1::RuleSet set;
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(text);
  if (!trimmed.empty() && trimmed.front() == '{') {
    google::protobuf::util::JsonParseOptions options;
    auto st = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(text.data(), text.size()), &set, options);
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("rule set JSON: ", st.message().as_string()));
    }
    return set;
  }
  google::protobuf::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &set)) {
    return absl::InvalidArgumentError(absl::StrCat("rule set text: ", errors.error));
  }
  return set;
}

#undef RETURN

}  // namespace rapport::rules
