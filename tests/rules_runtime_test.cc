// The regulations runtime's fast paths against their reference: the timer
// heap's pop against std::pop_heap, the action index set against a hash set,
// the block-stored action store, the printed action id, and many timers
// firing through the engine (time order, exactly once, across a snapshot).
#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/rules/action_store.h"
#include "lib/rules/runtime.h"
#include "lib/state/engine_state.h"
#include "lib/storage/snapshot.h"
#include "rapport/engine.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

bool SameTimer(const rules::Timer& a, const rules::Timer& b) {
  return a.fire_at_us == b.fire_at_us && a.seq == b.seq && a.subject == b.subject &&
         a.extra == b.extra && a.rule == b.rule && a.aux == b.aux && a.cause == b.cause &&
         a.cause_len == b.cause_len;
}

// PopTimer must leave exactly the array std::pop_heap + pop_back leaves (a
// snapshot writes the array as it is), and pop the earliest timer.
TEST(TimerHeap, PopTimerMatchesStdPopHeapMoveForMove) {
  for (int round = 0; round < 4; ++round) {
    std::mt19937_64 rng(round);
    rules::TimerHeap heap;
    std::vector<rules::Timer> ref;
    const int n = 1 + static_cast<int>(rng() % 5000);
    uint32_t seq = 0;
    auto push = [&] {
      rules::Timer t{};
      // Few distinct times: ties are broken by seq.
      t.fire_at_us = static_cast<int64_t>(rng() % (round == 0 ? 3 : 1000));
      t.seq = seq++;
      t.subject = static_cast<uint32_t>(rng());
      heap.push_back(t);
      std::push_heap(heap.begin(), heap.end(), rules::TimerAfter());
      ref.push_back(t);
      std::push_heap(ref.begin(), ref.end(), rules::TimerAfter());
    };
    for (int i = 0; i < n; ++i) push();
    // Pop everything, with some pushes in between, comparing every state.
    int64_t last_at = INT64_MIN;
    uint32_t last_seq = 0;
    while (!ref.empty()) {
      const rules::Timer got = rules::PopTimer(&heap);
      std::pop_heap(ref.begin(), ref.end(), rules::TimerAfter());
      const rules::Timer want = ref.back();
      ref.pop_back();
      ASSERT_TRUE(SameTimer(got, want)) << "round " << round;
      ASSERT_EQ(heap.size(), ref.size());
      ASSERT_TRUE(std::equal(heap.begin(), heap.end(), ref.begin(), SameTimer))
          << "round " << round;
      if (got.fire_at_us == last_at) {
        EXPECT_GT(got.seq, last_seq);
      }
      last_at = got.fire_at_us;
      last_seq = got.seq;
      if (rng() % 7 == 0) {
        push();
        last_at = INT64_MIN;  // a new timer may be earlier than the popped one
      }
    }
    EXPECT_TRUE(heap.empty());
  }
}

TEST(TimerHeap, SiblingsShareACacheLine) {
  rules::TimerHeap heap(1000);
  // Children 2i+1 and 2i+2 of every node start a 64-byte line together.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&heap[1]) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&heap[41]) % 64, 0u);
  heap.resize(100000);  // reallocation keeps the placement
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&heap[1]) % 64, 0u);
}

TEST(ActionIndexSet, BehavesLikeAHashSet) {
  std::mt19937_64 rng(9);
  rules::ActionIndexSet set;
  absl::flat_hash_set<uint32_t> ref;
  EXPECT_TRUE(set.empty());
  for (int i = 0; i < 20000; ++i) {
    const auto v = static_cast<uint32_t>(rng() % (i < 10000 ? 300 : 100000));
    switch (rng() % 3) {
      case 0:
      case 1:
        ASSERT_EQ(set.insert(v), ref.insert(v).second) << v;
        break;
      default:
        ASSERT_EQ(set.erase(v), ref.erase(v)) << v;
        break;
    }
    ASSERT_EQ(set.size(), ref.size());
    ASSERT_EQ(set.empty(), ref.empty());
    const auto probe = static_cast<uint32_t>(rng() % 200000);
    ASSERT_EQ(set.contains(probe), ref.contains(probe)) << probe;
  }
  EXPECT_EQ(set.erase(UINT32_MAX - 1), 0u) << "far beyond the bitmap";
  EXPECT_FALSE(set.contains(UINT32_MAX - 1));
}

rules::StoredAction Row(uint64_t i, uint32_t rule) {
  rules::StoredAction a;
  a.h1 = i * 0x9e3779b97f4a7c15ULL;
  a.h2 = ~i;
  a.rule_id = rule;
  a.fired_at_us = static_cast<int64_t>(i);
  a.state = static_cast<uint8_t>(v1::ACTION_STATE_PENDING);
  return a;
}

TEST(ActionStore, RowsAcrossBlocksStayPutAndFindable) {
  rules::ActionStore store;
  const uint32_t rule = store.pool().Intern("r1");
  const int n = 3 * 4096 + 17;  // several blocks
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(store.Add(Row(static_cast<uint64_t>(i), rule)), static_cast<uint32_t>(i));
  }
  const rules::StoredAction* first = &store.at(0);
  // A repeated (h1, h2, rule) is refused and changes nothing; another rule
  // with the same fingerprints is a different action.
  EXPECT_EQ(store.Add(Row(5000, rule)), rules::ActionStore::kNone);
  EXPECT_EQ(store.size(), static_cast<size_t>(n));
  const uint32_t other = store.pool().Intern("r2");
  EXPECT_EQ(store.Add(Row(5000, other)), static_cast<uint32_t>(n));
  EXPECT_EQ(&store.at(0), first) << "a row never moves";
  for (int i = 0; i < n; i += 97) {
    const auto u = static_cast<uint32_t>(i);
    EXPECT_EQ(store.at(u).fired_at_us, i);
    EXPECT_EQ(store.IndexOf(store.Id(u)), u);
    EXPECT_EQ(store.Find(store.Id(u)), &store.at(u));
  }
  EXPECT_EQ(store.IndexOf(store.Id(static_cast<uint32_t>(n))), static_cast<uint32_t>(n));
  EXPECT_EQ(store.IndexOf("r1-00000000000000000000000000000000"), rules::ActionStore::kNone);
}

TEST(ActionStore, WriteIdPrintsWhatAppendIdPrintsAndParseIdReads) {
  for (const std::string& rule : {std::string("C1"), std::string(64, 'r'), std::string(150, 'x')}) {
    const uint64_t h1 = 0x0123456789abcdefULL, h2 = 0xfedcba9876543210ULL;
    std::string appended = "prefix";
    rules::ActionStore::AppendId(rule, h1, h2, &appended);
    std::string written(rule.size() + 33, '?');
    EXPECT_EQ(rules::ActionStore::WriteId(rule, h1, h2, &written[0]), rule.size() + 33);
    EXPECT_EQ(appended, "prefix" + written);
    EXPECT_EQ(written, rule + "-0123456789abcdeffedcba9876543210");
    absl::string_view parsed_rule;
    uint64_t p1 = 0, p2 = 0;
    ASSERT_TRUE(rules::ActionStore::ParseId(written, &parsed_rule, &p1, &p2));
    EXPECT_EQ(parsed_rule, rule);
    EXPECT_EQ(p1, h1);
    EXPECT_EQ(p2, h2);
  }
}

// ActionToProto gives the same message whether it fills a fresh message or
// overwrites a used one, and prints the id ActionStore::Id prints, also for
// a rule id longer than a rule set allows (only a snapshot can carry one).
TEST(ActionToProto, FreshAndReusedMessagesAgree) {
  EngineState s;
  rules::StringPool& pool = s.actions.pool();
  std::vector<uint32_t> rows;
  for (const std::string& rule : {std::string("C1"), std::string(64, 'r'), std::string(100, 'x')}) {
    rules::StoredAction a = Row(rows.size() + 1, pool.Intern(rule));
    a.rule_set_id = pool.Intern("set");
    a.template_ = pool.Intern(rows.empty() ? "check_in" : "");
    a.assignee = pool.Intern(rows.size() == 1 ? "" : "m1");
    a.occasion = pool.Intern(rows.size() == 2 ? "holiday:new_year:2026" : "");
    a.kind = static_cast<uint8_t>(v1::ACTION_KIND_CREATE_TASK);
    rows.push_back(s.actions.Add(a));
  }
  v1::Action reused;
  for (int pass = 0; pass < 2; ++pass) {
    for (uint32_t i : rows) {
      v1::Action fresh;
      rules::ActionToProto(s, i, &fresh);
      EXPECT_EQ(fresh.action_id(), s.actions.Id(i));
      EXPECT_EQ(fresh.rule_id(), pool.at(s.actions.at(i).rule_id));
      rules::ActionToProto(s, i, &reused);
      EXPECT_EQ(reused.SerializeAsString(), fresh.SerializeAsString())
          << "row " << i << " pass " << pass;
    }
  }
}

// An engine whose one rule sets a 30-day follow-up timer on every account
// upsert, with manager 'm' known.
std::unique_ptr<Engine> NewFollowUpEngine() {
  auto engine = NewEngine(Parse<v1::EngineConfig>(absl::StrCat(
      "rule_set { id: 'many' version: 1 rules { id: 'follow' trigger { on_event { filter { type: "
      "EVENT_TYPE_ACCOUNT_UPSERTED } } } delay_us: ",
      30 * kDay,
      " actions { kind: ACTION_KIND_CREATE_TASK assignee: ASSIGNEE_OWNER template: 'follow_up' } } "
      "}")));
  MustIngest(*engine, Ev("m", kT0, "manager_upserted { manager_id: 'm' }"));
  return engine;
}

// Thousands of timers of one rule through the engine: each fires exactly
// once, in time order, whether or not the engine went through a snapshot;
// the ids of the first and the last block of the store stay nameable.
std::vector<v1::Action> RunManyTimers(bool restore_midway) {
  auto engine = NewFollowUpEngine();
  const int n = 9000;
  std::vector<v1::Event> batch;
  for (int i = 0; i < n; ++i) {
    // Created out of time order, so that the heap does real work.
    const int64_t at = kT0 + ((i * 7919) % n) * (10 * kDay / n);
    batch.push_back(Ev(absl::StrCat("a", i), at,
                       absl::StrCat("account_upserted { account_id: 'c", i,
                                    "' kind: ACCOUNT_KIND_CLIENT owner_id: 'm' }")));
  }
  auto r = engine->IngestBatch(batch);
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<v1::Action> out;
  for (int day = 1; day <= 12; ++day) {
    if (restore_midway && day == 6) {
      auto bytes = engine->Snapshot();
      auto restored = Engine::Restore(*bytes);
      EXPECT_TRUE(restored.ok()) << restored.status();
      engine = *std::move(restored);
    }
    auto adv = engine->Advance(kT0 + 30 * kDay + day * kDay);
    EXPECT_TRUE(adv.ok());
    out.insert(out.end(), adv->actions().begin(), adv->actions().end());
  }
  EXPECT_EQ(engine->Outbox().actions_size(), n);
  EXPECT_TRUE(engine->Acknowledge({out.front().action_id(), out.back().action_id()}).ok());
  EXPECT_EQ(engine->Outbox().actions_size(), n - 2);
  MustIngest(*engine, Ev("done", kT0 + 50 * kDay,
                         "task_completed { task_id: '" + out[4100].action_id() + "' }"));
  return out;
}

TEST(Rules, ManyTimersFireOnceInTimeOrderAcrossStoreBlocksAndSnapshots) {
  const std::vector<v1::Action> whole = RunManyTimers(false);
  ASSERT_EQ(whole.size(), 9000u);
  std::set<std::string> ids;
  std::set<std::string> accounts;
  for (size_t i = 0; i < whole.size(); ++i) {
    ids.insert(whole[i].action_id());
    accounts.insert(whole[i].account_id());
    EXPECT_EQ(whole[i].assignee_id(), "m");
    EXPECT_EQ(whole[i].template_(), "follow_up");
    EXPECT_EQ(whole[i].rule_set_id(), "many");
    EXPECT_EQ(whole[i].cause_event_id(), "a" + whole[i].account_id().substr(1));
    if (i > 0) {
      ASSERT_LE(whole[i - 1].fired_at_us(), whole[i].fired_at_us()) << i;
    }
  }
  EXPECT_EQ(ids.size(), whole.size()) << "an action twice";
  EXPECT_EQ(accounts.size(), whole.size()) << "a timer fired twice or not at all";
  const std::vector<v1::Action> split = RunManyTimers(true);
  ASSERT_EQ(split.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    ASSERT_EQ(split[i].SerializeAsString(), whole[i].SerializeAsString()) << i;
  }
}

// A restore leaves the timer heap room for the timers the journal tail sets
// next (half as many again), so that replay does not copy the whole heap at
// its first timer; the heap itself is the snapshot's.
TEST(Rules, RestoredTimerHeapHasRoomForTheTail) {
  auto engine = NewFollowUpEngine();
  const size_t n = 1000;
  std::vector<v1::Event> batch;
  for (size_t i = 0; i < n; ++i) {
    batch.push_back(Ev(absl::StrCat("a", i), kT0 + static_cast<int64_t>(i),
                       absl::StrCat("account_upserted { account_id: 'c", i,
                                    "' kind: ACCOUNT_KIND_CLIENT owner_id: 'm' }")));
  }
  ASSERT_TRUE(engine->IngestBatch(batch).ok());
  auto bytes = engine->Snapshot();
  ASSERT_TRUE(bytes.ok());
  EngineState s;
  ASSERT_TRUE(ReadSnapshot(*bytes, &s).ok());
  ASSERT_EQ(s.rules.timers.size(), n);
  EXPECT_GE(s.rules.timers.capacity(), n + n / 2);
  EXPECT_EQ(WriteSnapshot(s), *bytes);
}

}  // namespace
}  // namespace rapport::test
