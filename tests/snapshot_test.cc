// Snapshot and Restore: exact, deterministic, and a restored engine goes on
// as the original would have.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "lib/state/engine_state.h"
#include "lib/storage/snapshot.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/snapshot.pb.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

std::vector<v1::Event> Stream(int64_t n, uint64_t seed = 7) {
  testing::GeneratorOptions o;
  o.seed = seed;
  o.max_events = n;
  return testing::GenerateStream(o);
}

void IngestAll(Engine& engine, absl::Span<const v1::Event> events) {
  for (size_t i = 0; i < events.size(); i += 5000) {
    auto r = engine.IngestBatch(events.subspan(i, std::min<size_t>(5000, events.size() - i)));
    ASSERT_TRUE(r.ok()) << r.status();
  }
}

TEST(Snapshot, RestoreThenTheRestEqualsEverything) {
  const std::vector<v1::Event> events = Stream(120000);
  ASSERT_EQ(events.size(), 120000u);
  const absl::Span<const v1::Event> all(events);

  // The same events and the same Advance calls (timers fire on Advance, so
  // where the clock moves is part of the input), without the snapshot.
  auto whole = NewEngine();
  IngestAll(*whole, all.subspan(0, 70000));
  ASSERT_TRUE(whole->Advance(events[69999].occurred_at_us() - kDay).ok());
  IngestAll(*whole, all.subspan(70000));
  ASSERT_TRUE(whole->Advance(events.back().occurred_at_us()).ok());

  auto first = NewEngine();
  IngestAll(*first, all.subspan(0, 70000));
  ASSERT_TRUE(first->Advance(events[69999].occurred_at_us() - kDay).ok());
  auto bytes = first->Snapshot();
  ASSERT_TRUE(bytes.ok());
  auto restored = Engine::Restore(*bytes);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*(*restored)->Snapshot(), *bytes) << "restore is not exact";
  IngestAll(**restored, all.subspan(70000));
  ASSERT_TRUE((*restored)->Advance(events.back().occurred_at_us()).ok());

  const std::string a = *whole->Snapshot();
  const std::string b = *(*restored)->Snapshot();
  EXPECT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "snapshot + rest differs from one uninterrupted run";
  EXPECT_EQ((*restored)->events_accepted(), whole->events_accepted());
}

TEST(Snapshot, SameInputTwiceGivesIdenticalBytes) {
  const std::vector<v1::Event> events = Stream(30000, 11);
  auto a = NewEngine();
  auto b = NewEngine();
  IngestAll(*a, events);
  IngestAll(*b, events);
  EXPECT_TRUE(*a->Snapshot() == *b->Snapshot());
  // And a different stream gives different bytes (the comparison can fail).
  auto c = NewEngine();
  IngestAll(*c, Stream(30000, 12));
  EXPECT_FALSE(*a->Snapshot() == *c->Snapshot());
}

// WriteSnapshot sizes everything first and writes some parts without
// building their messages; it must give exactly the reference writer's bytes,
// on an empty state, on a state with timers, actions and facts (after
// Advance), and on a restored state (rows parsed onto the arena).
TEST(Snapshot, FastWriterMatchesTheReferenceWriter) {
  auto check = [](const EngineState& state) {
    const std::string fast = WriteSnapshot(state);
    const std::string reference = WriteSnapshotReference(state);
    EXPECT_EQ(fast.size(), reference.size());
    EXPECT_TRUE(fast == reference) << "the fast writer's bytes differ from the reference's";
  };
  {
    EngineState empty;
    check(empty);
  }
  const std::vector<v1::Event> events = Stream(40000, 5);
  auto engine = NewEngine();
  IngestAll(*engine, events);
  ASSERT_TRUE(engine->Advance(events.back().occurred_at_us() + 40 * kDay).ok());
  const std::string bytes = *engine->Snapshot();
  EngineState restored;
  ASSERT_TRUE(ReadSnapshot(bytes, &restored).ok());
  EXPECT_GT(restored.actions.size(), 0u);
  EXPECT_GT(restored.rules.timers.size(), 0u);
  check(restored);
  EXPECT_TRUE(WriteSnapshot(restored) == bytes);
}

TEST(Snapshot, RestoredEngineKeepsIdempotency) {
  auto engine = NewEngine();
  Seed(*engine);
  auto restored = Engine::Restore(*engine->Snapshot());
  ASSERT_TRUE(restored.ok());
  auto dup = (*restored)->Ingest(Ev("seed-p1", kT0,
                                    "account_upserted { account_id: 'p1' kind: ACCOUNT_KIND_PARTNER "
                                    "owner_id: 'm1' segment: 'retail' preferred_channel: "
                                    "CHANNEL_MESSENGER }"));
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup->duplicates(), 1);
  auto conflict = (*restored)->Ingest(Ev("seed-p1", kT0, "partner_agreed { account_id: 'p1' }"));
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST(Snapshot, JsonRoundTrip) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  const std::string bytes = *engine->Snapshot();
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(bytes));
  auto json = ToJson(snap);
  ASSERT_TRUE(json.ok());
  v1::EngineSnapshot back;
  ASSERT_TRUE(FromJson(*json, &back).ok());
  auto restored = Engine::Restore(back.SerializeAsString());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(*(*restored)->Snapshot(), bytes);
}

TEST(Snapshot, GarbageAndInconsistentSnapshotsAreRefused) {
  auto garbage = Engine::Restore("\xff\xff\xff not a snapshot");
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kDataLoss);

  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(*engine->Snapshot()));

  v1::EngineSnapshot bad_stage = snap;
  bad_stage.mutable_deals(0)->set_stage("nowhere");
  auto r1 = Engine::Restore(bad_stage.SerializeAsString());
  EXPECT_EQ(r1.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r1.status().message().find("deal 'd1'"), std::string::npos);

  v1::EngineSnapshot dup = snap;
  *dup.add_accounts() = dup.accounts(0);
  EXPECT_FALSE(Engine::Restore(dup.SerializeAsString()).ok());

  v1::EngineSnapshot short_ids = snap;
  short_ids.mutable_event_id_lengths()->RemoveLast();
  EXPECT_FALSE(Engine::Restore(short_ids.SerializeAsString()).ok());

  v1::EngineSnapshot version = snap;
  version.set_format_version(99);
  EXPECT_FALSE(Engine::Restore(version.SerializeAsString()).ok());
}

}  // namespace
}  // namespace rapport::test
