// A rule set (rapport/v1/rules.proto) checked against the pipelines and
// indexed for the hot path: which rules an event type wakes, which stage
// entries start SLA timers, which facts count conditions need to remember.
//
// Validation happens once, here, so that the runtime can trust every id,
// stage and template it reads.
#ifndef RAPPORT_LIB_RULES_RULE_SET_H_
#define RAPPORT_LIB_RULES_RULE_SET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/lifecycle/pipelines.h"
#include "rapport/v1/event.pb.h"
#include "rapport/v1/rules.pb.h"

namespace rapport::rules {

// Limits of a rule set, beyond those the schema documents per field.
inline constexpr int kMaxRules = 4096;
inline constexpr int kMaxActionsPerRule = 16;
inline constexpr size_t kMaxRuleIdBytes = 64;
// Delays, due offsets and leads stay under ten years so that a fire or due
// time computed from a valid instant stays comparable (and is clamped to the
// valid range where it would leave it).
inline constexpr int64_t kMaxOffsetUs = 3653LL * 86400 * 1000000;
// The number of EventType values (EVENT_TYPE_TASK_COMPLETED + 1).
inline constexpr int kEventTypes = 22;

// What a count condition or an absence trigger needs the runtime to remember
// per account: the times of matching events, or of actions of a kind the
// engine produced for the account.
struct Watch {
  bool is_action = false;
  v1::ActionKind action_kind = v1::ACTION_KIND_UNSPECIFIED;
  v1::EventFilter filter;
};

class CompiledRules {
 public:
  // Checks `set` against `pipelines` and indexes it. An empty rule list is
  // valid whatever the other fields hold: "no regulations".
  // Errors: INVALID_ARGUMENT naming the rule id and the field ("rule 'C1':
  // actions[0].template: ...") — an unknown stage, pipeline or template, an
  // assignee that cannot exist for the trigger, a move-stage loop that would
  // never settle, or a value out of its documented range.
  static absl::StatusOr<std::unique_ptr<const CompiledRules>> Compile(const v1::RuleSet& set,
                                                                      const Pipelines& pipelines);

  const v1::RuleSet& set() const { return set_; }
  const v1::Rule& rule(int i) const { return set_.rules(i); }
  int size() const { return set_.rules_size(); }

  // Rules with an on-event trigger / an absence trigger whose `after` filter
  // has this EventType.
  const std::vector<uint16_t>& OnEvent(int type) const { return on_event_[type]; }
  const std::vector<uint16_t>& AbsenceAfter(int type) const { return absence_after_[type]; }
  const std::vector<uint16_t>& stage_entered() const { return stage_entered_; }
  const std::vector<uint16_t>& sla() const { return sla_; }
  const std::vector<uint16_t>& holidays() const { return holidays_; }
  const std::vector<uint16_t>& anniversaries() const { return anniversaries_; }
  const std::vector<uint16_t>& rule_set_age() const { return rule_set_age_; }
  const std::vector<uint16_t>& open_tasks() const { return open_tasks_; }

  const std::vector<Watch>& watches() const { return watches_; }
  // Event watches of an EventType.
  const std::vector<uint16_t>& WatchesOf(int type) const { return watches_by_type_[type]; }
  // The watch of produced actions of `kind`, or -1.
  int ActionWatch(v1::ActionKind kind) const;
  // The watch of an absence rule's `absent` filter.
  int AbsenceWatch(int rule) const { return absence_watch_[rule]; }
  // The watch a count condition reads: rule-level (action -1) or of one
  // action's conditions; -1 for conditions that are not counts.
  int CountWatch(int rule, int action, int condition) const;
  // Whether an open task with this template counts for an open-tasks rule.
  bool CountsTask(int rule, absl::string_view task_template) const;

 private:
  CompiledRules() = default;
  absl::Status Build(const Pipelines& pipelines);
  int AddWatch(const Watch& w);

  v1::RuleSet set_;
  std::vector<std::vector<uint16_t>> on_event_{kEventTypes};
  std::vector<std::vector<uint16_t>> absence_after_{kEventTypes};
  std::vector<uint16_t> stage_entered_, sla_, holidays_, anniversaries_, rule_set_age_, open_tasks_;
  std::vector<Watch> watches_;
  std::vector<std::string> watch_keys_;
  std::vector<std::vector<uint16_t>> watches_by_type_{kEventTypes};
  std::vector<int> absence_watch_;
  // [rule][action + 1][condition].
  std::vector<std::vector<std::vector<int>>> count_watch_;
  std::vector<absl::flat_hash_set<std::string>> task_templates_;
};

// The EventType of an event's payload.
inline int EventTypeOf(const v1::Event& e) {
  return e.payload_case() == v1::Event::PAYLOAD_NOT_SET
             ? 0
             : static_cast<int>(e.payload_case()) - v1::Event::kAccountUpserted + 1;
}

// Parses a rule set from protobuf text format, or from canonical JSON when
// the text starts (after white space) with '{'. Does not validate.
// Errors: INVALID_ARGUMENT with the parser's line and column.
absl::StatusOr<v1::RuleSet> ParseRuleSet(absl::string_view text);

}  // namespace rapport::rules

#endif  // RAPPORT_LIB_RULES_RULE_SET_H_
