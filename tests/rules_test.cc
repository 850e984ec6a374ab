// The regulations engine beyond the default playbook: loading and validation
// of rule sets, timers (time order, exactly once, across Snapshot/Restore),
// the outbox and its acknowledgement, tasks, channel policy, determinism.
#include <string>
#include <vector>

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "lib/data/embedded.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/snapshot.pb.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

// Expects `part` in `text`.
void ExpectHas(absl::string_view text, absl::string_view part) {
  EXPECT_TRUE(absl::StrContains(text, part)) << "'" << part << "' not in: " << text;
}

v1::RuleSet Playbook() {
  auto set = Engine::LoadRuleSet(data::DefaultPlaybook());
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? *set : v1::RuleSet();
}

// A one-rule set around `rule` (text of a rapport.v1.Rule).
v1::EngineConfig WithRule(const std::string& rule, const std::string& extra = "") {
  v1::EngineConfig config;
  *config.mutable_rule_set() =
      Parse<v1::RuleSet>("id: 'test' version: 3 effective_at_us: 1735689600000000 " + extra +
                         " rules { " + rule + " }");
  return config;
}

// Expects Create to reject the rule, naming each of `parts`.
void ExpectRejected(const std::string& rule, const std::vector<std::string>& parts,
                    const std::string& extra = "") {
  auto engine = Engine::Create(WithRule(rule, extra));
  ASSERT_FALSE(engine.ok()) << "accepted: " << rule;
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& p : parts) {
    ExpectHas(std::string(engine.status().message()), p);
  }
}

const char kTask[] =
    "actions { kind: ACTION_KIND_CREATE_TASK assignee: ASSIGNEE_OWNER template: 't' }";

TEST(RuleSetLoad, TextAndJsonGiveTheSameSet) {
  const v1::RuleSet text = Playbook();
  EXPECT_EQ(text.rules_size(), 11);
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(text, &json).ok());
  auto from_json = Engine::LoadRuleSet("  \n" + json);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_EQ(from_json->SerializeAsString(), text.SerializeAsString());
  // The default config carries the same playbook.
  EXPECT_EQ(Engine::DefaultConfig().rule_set().SerializeAsString(), text.SerializeAsString());
}

TEST(RuleSetLoad, ParseErrorsGiveThePosition) {
  auto bad = Engine::LoadRuleSet("id: 'x'\nrules { nope: 1 }");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  ExpectHas(std::string(bad.status().message()), "line 2");
  auto bad_json = Engine::LoadRuleSet("{\"rules\": 5}");
  ASSERT_FALSE(bad_json.ok());
  ExpectHas(std::string(bad_json.status().message()), "JSON");
}

TEST(RuleSetLoad, ValidatesAgainstTheGivenPipelines) {
  const std::string text =
      "id: 's' version: 1 rules { id: 'x' trigger { stage_entered { stage: 'custom' } } "
      "actions { kind: ACTION_KIND_NOTIFY assignee: ASSIGNEE_HEAD template: 'n' } }";
  auto with_defaults = Engine::LoadRuleSet(text);
  ASSERT_FALSE(with_defaults.ok());
  ExpectHas(std::string(with_defaults.status().message()), "unknown stage 'custom'");
  v1::PipelineSet pipelines = Parse<v1::PipelineSet>(
      "pipelines { id: 'p' stages { id: 'custom' phase: PHASE_ACQUISITION } }");
  EXPECT_TRUE(Engine::LoadRuleSet(text, &pipelines).ok());
}

TEST(RuleSetValidation, ErrorsNameTheRuleAndTheField) {
  ExpectRejected("id: 'r1' trigger { stage_entered { stage: 'nowhere' } } " + std::string(kTask),
                 {"rule 'r1'", "trigger.stage_entered.stage", "unknown stage 'nowhere'"});
  ExpectRejected("id: 'r2' trigger { stage_entered { pipeline_id: 'partner' stage: 'lead' } } " +
                     std::string(kTask),
                 {"rule 'r2'", "unknown stage 'lead' of pipeline 'partner'"});
  ExpectRejected(
      "id: 'r3' trigger { on_event { filter { type: EVENT_TYPE_PARTNER_AGREED } } } "
      "actions { kind: ACTION_KIND_CREATE_TASK assignee: ASSIGNEE_OWNER template: 'other' }",
      {"rule 'r3'", "actions[0].template", "unknown template 'other'"}, "templates: 'only'");
  ExpectRejected(
      "id: 'r4' trigger { on_event { filter { type: EVENT_TYPE_PARTNER_AGREED } } } "
      "actions { kind: ACTION_KIND_CREATE_TASK assignee: ASSIGNEE_ACCOUNT template: 't' }",
      {"rule 'r4'", "actions[0].assignee"});
  ExpectRejected(
      "id: 'r5' trigger { rule_set_age { older_than_months: 12 } } "
      "actions { kind: ACTION_KIND_NOTIFY assignee: ASSIGNEE_TEAM_LEAD template: 't' }",
      {"rule 'r5'", "actions[0].assignee", "only HEAD"});
  ExpectRejected(
      "id: 'r6' trigger { on_event { filter { type: EVENT_TYPE_ORDER_COMPLETED } } } "
      "actions { kind: ACTION_KIND_SEND_SURVEY template: 's' channel: CHANNEL_PHONE }",
      {"rule 'r6'", "actions[0].channel", "never sent by phone"});
  ExpectRejected("id: 'r7' " + std::string(kTask), {"rule 'r7'", "trigger", "is required"});
  ExpectRejected("id: 'r8' trigger { on_event { filter { type: EVENT_TYPE_ACTIVITY } } }",
                 {"rule 'r8'", "actions"});
  ExpectRejected(
      "id: 'r9' trigger { on_event { filter { type: EVENT_TYPE_PARTNER_AGREED } } } "
      "actions { kind: ACTION_KIND_MOVE_STAGE to_stage: 'qualified' }",
      {"rule 'r9'", "actions[0].kind", "no deal"});
  ExpectRejected(
      "id: 'r10' trigger { on_event { filter { type: EVENT_TYPE_ORDER_PLACED } } } "
      "conditions { cause_min_severity: SEVERITY_HIGH } " +
          std::string(kTask),
      {"rule 'r10'", "conditions[0].cause_min_severity"});
  ExpectRejected("id: 'r11' trigger { open_tasks { more_than: 1 } } " + std::string(kTask),
                 {"rule 'r11'", "actions[0].kind", "may not create tasks"});
  ExpectRejected(
      "id: 'r12' trigger { on_event { filter { type: EVENT_TYPE_PARTNER_AGREED } } } delay_us: "
      "-1 " +
          std::string(kTask),
      {"rule 'r12'", "delay_us"});
  ExpectRejected(
      "id: 'bad id!' trigger { rule_set_age { older_than_months: 1 } } " + std::string(kTask),
      {"rules[0].id"});
  ExpectRejected("id: 'r13' trigger { calendar { holidays: true } } " + std::string(kTask),
                 {"rule 'r13'", "trigger.calendar.holidays", "no holidays"});
  // Errors surface through Create prefixed by the config field.
  auto engine = Engine::Create(
      WithRule("id: 'r1' trigger { stage_entered { stage: 'nowhere' } } " + std::string(kTask)));
  ASSERT_FALSE(engine.ok());
  ExpectHas(std::string(engine.status().message()), "config field 'rule_set'");
}

TEST(RuleSetValidation, RepeatedRuleIdsAreRejected) {
  v1::EngineConfig config = WithRule(
      "id: 'a' trigger { rule_set_age { older_than_months: 1 } } "
      "actions { kind: ACTION_KIND_NOTIFY assignee: ASSIGNEE_HEAD template: 't' }");
  *config.mutable_rule_set()->add_rules() = config.rule_set().rules(0);
  auto engine = Engine::Create(config);
  ASSERT_FALSE(engine.ok());
  ExpectHas(std::string(engine.status().message()), "rule 'a': id: repeated");
}

TEST(RuleSetValidation, MoveStageLoopThatWouldNeverSettle) {
  v1::EngineConfig config;
  *config.mutable_rule_set() = Parse<v1::RuleSet>(R"pb(
    id: 'loops'
    version: 1
    rules {
      id: 'up'
      trigger { stage_entered { pipeline_id: 'client' stage: 'qualified' } }
      actions { kind: ACTION_KIND_MOVE_STAGE to_stage: 'proposal' }
    }
    rules {
      id: 'down'
      trigger { stage_entered { pipeline_id: 'client' stage: 'proposal' } }
      actions { kind: ACTION_KIND_MOVE_STAGE to_stage: 'previous' }
    }
  )pb");
  auto engine = Engine::Create(config);
  ASSERT_FALSE(engine.ok());
  const std::string msg(engine.status().message());
  ExpectHas(msg, "loop");
  ExpectHas(msg, "stages qualified -> proposal -> qualified");
  ExpectHas(msg, "rules up, down");

  // One direction alone settles.
  config.mutable_rule_set()->mutable_rules()->RemoveLast();
  EXPECT_TRUE(Engine::Create(config).ok());
}

TEST(Rules, EmptyRuleSetMeansNoRegulations) {
  v1::EngineConfig config;
  config.mutable_rule_set();  // present, no rules
  auto engine = NewEngine(config);
  Seed(*engine);
  auto r = engine->Ingest(Ev("agreed", kT0, "partner_agreed { account_id: 'p1' }"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->actions_size(), 0);
  auto adv = engine->Advance(kT0 + 800 * kDay);
  ASSERT_TRUE(adv.ok());
  EXPECT_EQ(adv->actions_size(), 0);
  EXPECT_EQ(engine->Outbox().actions_size(), 0);
}

TEST(Rules, ActionIdsAreDeterministicAndNameableByTaskCompleted) {
  auto a = NewEngine();
  auto b = NewEngine();
  Seed(*a);
  Seed(*b);
  auto ra = a->Ingest(Ev("agreed", kT0, "partner_agreed { account_id: 'p1' }"));
  auto rb = b->Ingest(Ev("agreed", kT0, "partner_agreed { account_id: 'p1' }"));
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_EQ(ra->actions_size(), 1);
  EXPECT_EQ(ra->SerializeAsString(), rb->SerializeAsString());
  const std::string& id = ra->actions(0).action_id();
  EXPECT_TRUE(absl::StartsWith(id, "P2-")) << id;
  EXPECT_EQ(id.size(), 3u + 32u);
  // A different cause gives a different id.
  MustIngest(*b,
             Ev("p9", kT0,
                "account_upserted { account_id: 'p9' kind: ACCOUNT_KIND_PARTNER owner_id: 'm1' }"));
  auto other = b->Ingest(Ev("agreed-9", kT0, "partner_agreed { account_id: 'p9' }"));
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->actions(0).action_id(), id);
}

TEST(Rules, OutboxAcknowledgeAndTaskCompletion) {
  auto engine = NewEngine();
  Seed(*engine);
  auto r = engine->Ingest(Ev("k", kT0,
                             "complaint_opened { complaint_id: 'k' account_id: 'c1' "
                             "severity: SEVERITY_CRITICAL }"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->actions_size(), 2);
  const std::string task = r->actions(0).action_id();
  const std::string notice = r->actions(1).action_id();
  v1::ActionList outbox = engine->Outbox();
  ASSERT_EQ(outbox.actions_size(), 2);
  EXPECT_EQ(outbox.actions(0).action_id(), task);

  // Unknown or repeated ids: an error naming it, and nothing changes.
  const std::string before = *engine->Snapshot();
  absl::Status st = engine->Acknowledge({notice, "nope"});
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  ExpectHas(std::string(st.message()), "'nope'");
  st = engine->Acknowledge({notice, notice});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*engine->Snapshot(), before);
  EXPECT_EQ(engine->Outbox().actions_size(), 2);

  ASSERT_TRUE(engine->Acknowledge({notice}).ok());
  ASSERT_TRUE(engine->Acknowledge({notice}).ok()) << "acknowledging again is a no-op";
  outbox = engine->Outbox();
  ASSERT_EQ(outbox.actions_size(), 1);
  EXPECT_EQ(outbox.actions(0).action_id(), task);

  // A task leaves the outbox when acknowledged but stays open until a
  // task-completed event; a notice cannot be completed.
  ASSERT_TRUE(engine->Acknowledge({task}).ok());
  EXPECT_EQ(engine->Outbox().actions_size(), 0);
  EXPECT_FALSE(
      engine->Ingest(Ev("close-notice", kT0, "task_completed { task_id: '" + notice + "' }")).ok());
  MustIngest(*engine, Ev("close", kT0 + kHour, "task_completed { task_id: '" + task + "' }"));
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(*engine->Snapshot()));
  ASSERT_EQ(snap.actions_size(), 2);
  EXPECT_EQ(snap.actions(0).state(), v1::ACTION_STATE_DONE);
  EXPECT_EQ(snap.actions(1).state(), v1::ACTION_STATE_ACKNOWLEDGED);
}

TEST(Rules, TimersFireInTimeOrderExactlyOnce) {
  auto engine = NewEngine();
  Seed(*engine);
  // Timers created out of time order: C6 (60 days), C1 (14 days), C3 (7 days).
  MustIngest(*engine, Ev("o1", kT0 + 3 * kDay,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 5 currency: 'USD' } }"));
  MustIngest(*engine, Ev("o1-done", kT0 + 3 * kDay, "order_completed { order_id: 'o1' }"));
  MustIngest(*engine, Ev("o0", kT0,
                         "order_placed { order_id: 'o0' account_id: 'p1' "
                         "amount { amount_minor: 5 currency: 'USD' } }"));
  auto first = engine->Advance(kT0 + 100 * kDay);
  ASSERT_TRUE(first.ok());
  std::vector<std::string> rules;
  for (int i = 0; i < first->actions_size(); ++i) {
    rules.push_back(first->actions(i).rule_id());
    if (i > 0) {
      EXPECT_LE(first->actions(i - 1).fired_at_us(), first->actions(i).fired_at_us());
    }
  }
  // C3 (day 10) for the client order only (p1 is a partner), C1 (day 17),
  // C6 (day 63).
  EXPECT_EQ(rules, (std::vector<std::string>{"C3", "C1", "C6"}));
  auto again = engine->Advance(kT0 + 200 * kDay);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->actions_size(), 0) << "a timer fires once";
  // Every produced action waits in the outbox.
  EXPECT_EQ(engine->Outbox().actions_size(), first->actions_size());
}

TEST(Rules, AnniversariesAndFebruary29) {
  v1::EngineConfig config = WithRule(
      "id: 'anniv' trigger { calendar { account_anniversary: true lead_us: 86400000000 } } " +
      std::string(kTask));
  auto engine = NewEngine(config);
  Seed(*engine);
  // Created 2025-03-15: the day before each anniversary.
  const int64_t created = kT0 + 73 * kDay;
  MustIngest(*engine, Ev("c5", created,
                         "account_upserted { account_id: 'c5' kind: ACCOUNT_KIND_CLIENT "
                         "owner_id: 'm2' }"));
  auto r = engine->Advance(created + 365 * kDay - kDay);
  ASSERT_TRUE(r.ok());
  std::vector<v1::Action> c5;
  for (const v1::Action& a : r->actions()) {
    if (a.account_id() == "c5") c5.push_back(a);
  }
  ASSERT_EQ(c5.size(), 1u);
  EXPECT_EQ(c5[0].occasion(), "anniversary:2026");
  EXPECT_EQ(c5[0].fired_at_us(), created + 364 * kDay);
  // Seed's accounts (created 2025-01-01) had theirs on 2025-12-31.
  EXPECT_EQ(r->actions_size(), 3);
  r = engine->Advance(created + 2 * 365 * kDay);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->actions_size(), 3) << "one more anniversary each";

  // A February 29 holiday falls on February 28 in common years.
  auto feb =
      NewEngine(WithRule("id: 'leap' trigger { calendar { holidays: true } } " + std::string(kTask),
                         "holidays { id: 'leap' month: 2 day: 29 }"));
  Seed(*feb);
  MustIngest(*feb, Ev("o", kT0,
                      "order_placed { order_id: 'o' account_id: 'c1' amount { amount_minor: 1 "
                      "currency: 'USD' } }"));
  auto f = feb->Advance(kT0 + 58 * kDay);  // 2025-02-28
  ASSERT_TRUE(f.ok());
  ASSERT_GE(f->actions_size(), 1);
  EXPECT_EQ(f->actions(0).occasion(), "holiday:leap:2025");
  EXPECT_EQ(f->actions(0).fired_at_us(), kT0 + 58 * kDay);
}

TEST(Rules, NamedMoveStageAndStageEnteredTrigger) {
  v1::EngineConfig config;
  *config.mutable_rule_set() = Parse<v1::RuleSet>(R"pb(
    id: 'moves'
    version: 1
    rules {
      id: 'skip'
      trigger { stage_entered { pipeline_id: 'client' stage: 'prepaid' } }
      delay_us: 3600000000
      actions { kind: ACTION_KIND_MOVE_STAGE to_stage: 'in_work' }
      actions { kind: ACTION_KIND_SEND_MESSAGE template: 'welcome' channel: CHANNEL_MESSENGER }
    }
  )pb");
  auto engine = NewEngine(config);
  Seed(*engine);
  MustIngest(*engine, Ev("lead", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*engine, Ev("won", kT0 + kDay, "deal_won { deal_id: 'd1' }"));
  auto r = engine->Advance(kT0 + kDay + kHour);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->actions_size(), 2);
  EXPECT_EQ(r->actions(0).kind(), v1::ACTION_KIND_MOVE_STAGE);
  EXPECT_EQ(r->actions(0).to_stage(), "in_work");
  EXPECT_EQ(r->actions(0).deal_id(), "d1");
  EXPECT_EQ(r->actions(0).cause_event_id(), "won");
  EXPECT_EQ(r->actions(1).channel(), v1::CHANNEL_MESSENGER) << "an explicit channel wins";
  // The engine moved nothing itself.
  EXPECT_EQ(engine->GetDeal("d1")->stage(), "prepaid");
}

// Runs a generated stream with Advance every few thousand events, optionally
// through a snapshot at `cut`, and returns every action produced plus the
// final snapshot.
std::string RunStream(const std::vector<v1::Event>& events, size_t cut, bool restore) {
  auto engine = NewEngine();
  std::string out;
  for (size_t i = 0; i < events.size(); i += 2500) {
    if (restore && i == cut) {
      auto bytes = engine->Snapshot();
      auto restored = Engine::Restore(*bytes);
      EXPECT_TRUE(restored.ok()) << restored.status();
      EXPECT_EQ(*(*restored)->Snapshot(), *bytes);
      engine = *std::move(restored);
    }
    const size_t n = std::min<size_t>(2500, events.size() - i);
    auto r = engine->IngestBatch(absl::MakeConstSpan(events).subspan(i, n));
    EXPECT_TRUE(r.ok()) << r.status();
    for (const v1::Action& a : r->actions()) out += a.SerializeAsString();
    auto adv = engine->Advance(events[i + n - 1].occurred_at_us());
    EXPECT_TRUE(adv.ok());
    for (const v1::Action& a : adv->actions()) out += a.SerializeAsString();
  }
  auto adv = engine->Advance(events.back().occurred_at_us() + 400 * kDay);
  for (const v1::Action& a : adv->actions()) out += a.SerializeAsString();
  out += "|" + *engine->Snapshot();
  return out;
}

TEST(Rules, SnapshotThenTheRestGivesTheSameActionsAsOneRun) {
  testing::GeneratorOptions o;
  o.max_events = 40000;
  o.seed = 5;
  const std::vector<v1::Event> events = testing::GenerateStream(o);
  const std::string whole = RunStream(events, 0, false);
  const std::string again = RunStream(events, 0, false);
  EXPECT_TRUE(whole == again) << "same inputs, different actions";
  const std::string split = RunStream(events, 20000, true);
  EXPECT_EQ(whole.size(), split.size());
  EXPECT_TRUE(whole == split) << "snapshot + rest differs from one run";
  // The playbook did produce something of every common kind.
  auto engine = NewEngine();
  for (size_t i = 0; i < events.size(); i += 5000) {
    ASSERT_TRUE(engine
                    ->IngestBatch(absl::MakeConstSpan(events).subspan(
                        i, std::min<size_t>(5000, events.size() - i)))
                    .ok());
  }
  auto adv = engine->Advance(events.back().occurred_at_us());
  ASSERT_TRUE(adv.ok());
  std::set<std::string> rules;
  const v1::ActionList outbox = engine->Outbox();
  for (const v1::Action& a : outbox.actions()) rules.insert(a.rule_id());
  for (const char* r : {"P2", "P3", "C1", "C3", "C4", "C6", "M1"}) {
    EXPECT_TRUE(rules.count(r)) << r << " never fired on the generated stream";
  }
}

TEST(Rules, RestoreRejectsBadRuntimeState) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("o1", kT0,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 5 currency: 'USD' } }"));
  MustIngest(*engine, Ev("o1-done", kT0, "order_completed { order_id: 'o1' }"));
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(*engine->Snapshot()));
  ASSERT_GE(snap.rules().timer_rule_size(), 3);
  auto expect_bad = [](v1::EngineSnapshot s, const std::string& what) {
    auto r = Engine::Restore(s.SerializeAsString());
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << what;
    ExpectHas(std::string(r.status().message()), "rules");
  };
  {
    v1::EngineSnapshot s = snap;
    s.mutable_rules()->set_timer_rule(0, 999);
    expect_bad(s, "rule index");
  }
  {
    v1::EngineSnapshot s = snap;
    // Causes are indexes in the event-id log: one past its end.
    int causes = 0;
    for (int i = 0; i < s.rules().timer_cause_index_size(); ++i) {
      if (s.rules().timer_cause_index(i) == 0) continue;
      s.mutable_rules()->set_timer_cause_index(
          i, static_cast<uint32_t>(s.event_id_lengths_size()) + 1);
      ++causes;
    }
    ASSERT_GT(causes, 0);
    expect_bad(s, "cause");
  }
  {
    v1::EngineSnapshot s = snap;
    s.mutable_rules()->mutable_timer_fire_at_us()->RemoveLast();
    expect_bad(s, "columns");
  }
  {
    v1::EngineSnapshot s = snap;
    s.mutable_rules()->set_timer_fire_at_us(
        0, kT0 + 5000 * kDay);  // the top is no longer the earliest
    expect_bad(s, "heap");
  }
  {
    v1::EngineSnapshot s = snap;
    s.mutable_rules()->set_timer_subject(0, 1u << 30);
    expect_bad(s, "subject");
  }
  {
    v1::EngineSnapshot s = snap;
    auto* log = s.mutable_rules()->add_watch_logs();
    log->set_watch(77);
    log->set_account(0);
    log->add_times_us(1);
    expect_bad(s, "watch");
  }
}

// AdvanceInto with one list kept across calls gives exactly what Advance
// gives, day by day, on a twin engine; a bad time leaves the list empty.
TEST(Rules, AdvanceIntoReusesTheListAndEqualsAdvance) {
  testing::GeneratorOptions o;
  o.max_events = 6000;
  const std::vector<v1::Event> events = testing::GenerateStream(o);
  auto a = *Engine::Create();
  auto b = *Engine::Create();
  ASSERT_TRUE(a->IngestBatch(events).ok());
  ASSERT_TRUE(b->IngestBatch(events).ok());
  int64_t end = 0;
  for (const v1::Event& e : events) end = std::max(end, e.occurred_at_us());
  v1::ActionList kept;
  int produced = 0;
  for (int64_t t = end; t < end + 60 * kMicrosPerDay; t += kMicrosPerDay) {
    absl::StatusOr<v1::ActionList> want = a->Advance(t);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(b->AdvanceInto(t, &kept).ok());
    ASSERT_EQ(kept.SerializeAsString(), want->SerializeAsString()) << t;
    produced += kept.actions_size();
  }
  EXPECT_GT(produced, 0) << "the stream must leave timers to fire";
  EXPECT_EQ(*a->Snapshot(), *b->Snapshot());
  ASSERT_TRUE(b->AdvanceInto(end, &kept).ok());
  EXPECT_EQ(kept.actions_size(), 0) << "a time before the clock: cleared, nothing fires";
  kept.add_actions()->set_action_id("stale");
  EXPECT_EQ(b->AdvanceInto(-1, &kept).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(kept.actions_size(), 0);
  EXPECT_EQ(*a->Snapshot(), *b->Snapshot());
}

}  // namespace
}  // namespace rapport::test
