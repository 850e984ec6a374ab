// Snapshot and Restore: exact, deterministic, and a restored engine goes on
// as the original would have.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/wire_format_lite.h"
#include "gtest/gtest.h"
#include "lib/kpi/cells.h"
#include "lib/state/engine_state.h"
#include "lib/state/event_id_log.h"
#include "lib/storage/snapshot.h"
#include "lib/util/parallel.h"
#include "lib/util/prefetch.h"
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

// The snapshot as versions before timer_cause_index wrote it: each timer's
// cause as the event's id in timer_cause.
v1::EngineSnapshot WithCausesAsIds(const v1::EngineSnapshot& snap) {
  std::vector<std::string> ids;
  absl::string_view data = snap.event_id_data();
  for (uint32_t n : snap.event_id_lengths()) {
    ids.emplace_back(data.substr(0, n));
    data.remove_prefix(n);
  }
  v1::EngineSnapshot old = snap;
  old.set_format_version(1);
  v1::RulesRuntime* rules = old.mutable_rules();
  rules->clear_timer_cause_index();
  for (uint32_t ref : snap.rules().timer_cause_index()) {
    rules->add_timer_cause(ref == 0 ? std::string() : ids.at(ref - 1));
  }
  return old;
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

// Snapshots written before fact times were stored as differences hold them
// in `occurred_at_us`; they must still restore, to the same state.
TEST(Snapshot, OldFactTimeEncodingStillRestores) {
  const std::vector<v1::Event> events = Stream(20000, 3);
  auto engine = NewEngine();
  IngestAll(*engine, events);
  const std::string bytes = *engine->Snapshot();
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(bytes));
  const v1::FactColumns& facts = snap.facts();
  ASSERT_GT(facts.occurred_at_delta_us_size(), 1000);
  EXPECT_EQ(facts.occurred_at_us_size(), 0);

  // The oldest layout: absolute times, kind after kind (and causes as ids).
  v1::EngineSnapshot old = WithCausesAsIds(snap);
  v1::FactColumns* of = old.mutable_facts();
  of->clear_occurred_at_delta_us();
  int row = 0;
  for (uint64_t size : facts.kind_sizes()) {
    int64_t t = 0;
    for (uint64_t j = 0; j < size; ++j, ++row) {
      t += static_cast<int64_t>(facts.occurred_at_delta_us(row));
      of->add_occurred_at_us(t);
    }
  }
  ASSERT_EQ(row, facts.occurred_at_delta_us_size());
  const std::string old_bytes = old.SerializeAsString();
  ASSERT_NE(old_bytes, bytes);
  auto restored = Engine::Restore(old_bytes);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(*(*restored)->Snapshot() == bytes) << "the old encoding restores another state";

  // Both encodings at once, or a difference that runs out of range or
  // backwards, are refused.
  v1::EngineSnapshot both = snap;
  both.mutable_facts()->add_occurred_at_us(1);
  EXPECT_EQ(Engine::Restore(both.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::EngineSnapshot backwards = snap;
  backwards.mutable_facts()->set_occurred_at_delta_us(1, static_cast<uint64_t>(-1));
  auto r = Engine::Restore(backwards.SerializeAsString());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("fact 1 "), std::string::npos) << r.status();
  v1::EngineSnapshot far = snap;
  far.mutable_facts()->set_occurred_at_delta_us(0, static_cast<uint64_t>(kMaxTimeUs));
  EXPECT_EQ(Engine::Restore(far.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Timer causes are written as indexes in the event-id log
// (timer_cause_index); snapshots from before, with the ids in timer_cause,
// must still restore to the same state and go on the same way.
TEST(Snapshot, OldTimerCauseEncodingStillRestores) {
  const std::vector<v1::Event> events = Stream(20000, 3);
  auto engine = NewEngine();
  IngestAll(*engine, events);
  const std::string bytes = *engine->Snapshot();
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(bytes));
  const v1::RulesRuntime& rules = snap.rules();
  ASSERT_GT(rules.timer_fire_at_us_size(), 20);
  EXPECT_EQ(rules.timer_cause_size(), 0);
  ASSERT_EQ(rules.timer_cause_index_size(), rules.timer_fire_at_us_size());
  int with_cause = 0;
  for (uint32_t ref : rules.timer_cause_index()) with_cause += ref != 0;
  ASSERT_GT(with_cause, 10);
  ASSERT_LT(with_cause, rules.timer_cause_index_size()) << "want timers without a cause too";

  const v1::EngineSnapshot old = WithCausesAsIds(snap);
  const std::string old_bytes = old.SerializeAsString();
  ASSERT_NE(old_bytes, bytes);
  auto restored = Engine::Restore(old_bytes);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(*(*restored)->Snapshot() == bytes) << "the old encoding restores another state";
  // Fired, the timers' actions name their causes: the same as the original's.
  const int64_t later = events.back().occurred_at_us() + 40 * kDay;
  ASSERT_TRUE(engine->Advance(later).ok());
  ASSERT_TRUE((*restored)->Advance(later).ok());
  const std::string a = *engine->Snapshot();
  EXPECT_TRUE(*(*restored)->Snapshot() == a) << "the old encoding goes on differently";
  EXPECT_NE(a, bytes);

  // Both encodings at once are refused, naming the fields.
  v1::EngineSnapshot both = snap;
  *both.mutable_rules()->mutable_timer_cause() = old.rules().timer_cause();
  auto r = Engine::Restore(both.SerializeAsString());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("timer_cause_index and timer_cause are both set"),
            std::string::npos)
      << r.status();
  // A column of another length.
  v1::EngineSnapshot short_causes = snap;
  short_causes.mutable_rules()->mutable_timer_cause_index()->RemoveLast();
  r = Engine::Restore(short_causes.SerializeAsString());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("the timer columns differ in length"), std::string::npos)
      << r.status();

  // Indexes: the last event is the highest valid one; one past it, or far
  // out, is refused wherever it is, naming the timer and the field.
  const uint32_t ids = static_cast<uint32_t>(snap.event_id_lengths_size());
  const int timers = rules.timer_cause_index_size();
  {
    v1::EngineSnapshot last = snap;
    last.mutable_rules()->set_timer_cause_index(timers - 1, ids);
    EXPECT_TRUE(Engine::Restore(last.SerializeAsString()).ok());
  }
  for (int at : {0, 1, 8, timers / 2, timers - 1}) {
    for (uint32_t ref : {ids + 1, UINT32_MAX}) {
      v1::EngineSnapshot bad = snap;
      bad.mutable_rules()->set_timer_cause_index(at, ref);
      auto rb = Engine::Restore(bad.SerializeAsString());
      EXPECT_EQ(rb.status().code(), absl::StatusCode::kInvalidArgument) << at << " " << ref;
      EXPECT_NE(rb.status().message().find(
                    absl::StrCat("timer ", at, ": timer_cause_index ", ref, " is out of range")),
                std::string::npos)
          << rb.status();
    }
  }
}

// Restore hands the KPI cells every fact at once (CellIndex::OnFactsLoaded)
// instead of one by one: a restored engine's incremental KPIs, queried and
// kept through more events (late ones, owner changes that reach counted facts
// and move deals between groups), equal the uninterrupted engine's and the
// forced scan's.
TEST(Snapshot, RestoredKpiCellsFollowLikeTheOriginal) {
  struct ScanOff {
    ~ScanOff() { kpi::SetForceScanForTesting(false); }
  } scan_off;
  testing::GeneratorOptions o;
  o.seed = 21;
  o.max_events = 8000;
  // In order: a late first win would mark every cell stale and hide what
  // this test looks for.
  o.late_share = 0.0;
  std::vector<v1::Event> events = testing::GenerateStream(o);
  // Late owner changes, dated in the past.
  std::vector<std::string> managers;
  for (const v1::Event& e : events) {
    if (e.has_manager_upserted() && !e.manager_upserted().is_head()) {
      managers.push_back(e.manager_upserted().manager_id());
    }
  }
  ASSERT_FALSE(managers.empty());
  std::vector<v1::Event> changes;
  int upserts = 0;
  for (size_t i = 0; i < 4000; ++i) {
    if (!events[i].has_account_upserted() || upserts++ % 5 != 0) continue;
    v1::Event c = events[i];
    c.set_event_id(c.event_id() + "-owner");
    c.set_occurred_at_us(c.occurred_at_us() + 3 * kDay);
    c.mutable_account_upserted()->set_owner_id(managers[i % managers.size()]);
    changes.push_back(std::move(c));
  }
  ASSERT_GT(changes.size(), 3u);
  // Right after the restore point: the accounts' facts are all restored ones.
  events.insert(events.begin() + 4000, changes.begin(), changes.end());

  const absl::Span<const v1::Event> all(events);
  auto whole = NewEngine();
  IngestAll(*whole, all.subspan(0, 4000));
  auto restored = Engine::Restore(*whole->Snapshot());
  ASSERT_TRUE(restored.ok()) << restored.status();
  Engine& back = **restored;

  int64_t start = INT64_MAX, end = 0;
  for (const v1::Event& e : events) {
    start = std::min(start, e.occurred_at_us() / kDay * kDay);
    end = std::max(end, e.occurred_at_us() / kDay * kDay + 2 * kDay);
  }
  int compared = 0;
  for (size_t at = 4000; at <= events.size(); at += 1000) {
    for (int by = 0; by < 6; ++by) {
      v1::KpiQuery q;
      q.set_end_us(end);
      q.set_start_us(start);
      q.set_bucket(v1::BUCKET_MONTH);
      q.set_group_by(static_cast<v1::GroupBy>(by));
      auto a = whole->Kpis(q);
      auto b = back.Kpis(q);
      kpi::SetForceScanForTesting(true);
      auto scan = back.Kpis(q);
      kpi::SetForceScanForTesting(false);
      ASSERT_TRUE(a.ok() && b.ok() && scan.ok());
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*a, *b))
          << "after " << at << " events, group_by " << by;
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*b, *scan))
          << "after " << at << " events, group_by " << by;
      ++compared;
    }
    const size_t n = std::min<size_t>(1000, events.size() - at);
    if (n == 0) break;
    IngestAll(*whole, all.subspan(at, n));
    IngestAll(back, all.subspan(at, n));
  }
  EXPECT_GE(compared, 30);
  EXPECT_TRUE(*whole->Snapshot() == *back.Snapshot());
}

TEST(Snapshot, RestoredEngineKeepsIdempotency) {
  auto engine = NewEngine();
  Seed(*engine);
  auto restored = Engine::Restore(*engine->Snapshot());
  ASSERT_TRUE(restored.ok());
  auto dup =
      (*restored)->Ingest(Ev("seed-p1", kT0,
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

  EXPECT_EQ(snap.format_version(), 2);
  for (int v : {0, 3, 99}) {
    v1::EngineSnapshot version = snap;
    version.set_format_version(v);
    auto r = Engine::Restore(version.SerializeAsString());
    EXPECT_FALSE(r.ok()) << v;
    EXPECT_NE(r.status().message().find(absl::StrCat("format_version ", v, " is not supported")),
              std::string::npos)
        << r.status();
  }
}

}  // namespace
}  // namespace rapport::test

namespace rapport::test {
namespace {

// The snapshot writer names each timer's cause by its index in the event-id
// log, found from the cause's address by EventIdLog::Locator instead of a
// hash lookup. Over a log of several blocks (a borrowed loaded one, then
// blocks Add starts, some emptied by Truncate) and ids of every length, the
// locator must give every stored id's index, exactly IndexOf's, and -1 for an
// address that is not the start of a stored id; and StartFinder every id's
// start, exactly IdStarts'.
TEST(Snapshot, LocatorFindsEveryStoredIdByAddress) {
  auto id_of = [](size_t i) {
    // Lengths 8 to 128, so a 64-byte chunk holds from none to 8 starts.
    std::string id = absl::StrCat(i, "-");
    id.resize(1 + (i * 37) % 128, static_cast<char>('a' + i % 26));
    id[0] = static_cast<char>('A' + i % 26);
    return absl::StrCat(i, id).substr(0, std::max<size_t>(1 + (i * 37) % 128, 8));
  };
  std::string blob;
  std::vector<uint32_t> lengths;
  std::vector<uint64_t> fps;
  for (size_t i = 0; i < 5000; ++i) {
    const std::string id = id_of(i);
    blob += id;
    lengths.push_back(static_cast<uint32_t>(id.size()));
    fps.push_back(i);
  }
  EventIdLog log;
  ASSERT_TRUE(log.Load(blob, lengths, fps, 128, /*borrow=*/true).ok());
  // Past 1 MB of ids: several blocks after the loaded one.
  size_t next = 5000;
  auto add = [&](size_t count) {
    for (size_t k = 0; k < count; ++k, ++next) log.Add(id_of(next), next);
  };
  add(30000);
  log.Truncate(log.size() - 7000);  // empties the last block or more
  add(9000);
  ASSERT_GT(log.id_bytes(), size_t{2} << 20);

  const EventIdLog::Locator locator(log);
  const std::vector<const char*> starts = log.IdStarts();
  ASSERT_EQ(starts.size(), log.size());
  const EventIdLog::StartFinder finder(log);
  for (size_t i = 0; i < log.size(); ++i) {
    ASSERT_EQ(finder.Start(i), starts[i]) << i;
    const absl::string_view id(starts[i], log.lengths()[i]);
    ASSERT_EQ(log.IndexOf(id, EventIdLog::Hash(id)), static_cast<int64_t>(i));
    ASSERT_EQ(log.Stored(id).data(), starts[i]);
    ASSERT_EQ(locator.IndexOf(starts[i]), static_cast<int64_t>(i)) << i;
    // Inside an id, not at its start.
    if (id.size() > 1) {
      ASSERT_EQ(locator.IndexOf(starts[i] + 1), -1) << i;
    }
  }
  // Addresses outside the log's storage.
  const std::string elsewhere = id_of(0);
  EXPECT_EQ(locator.IndexOf(elsewhere.data()), -1);
  EXPECT_EQ(locator.IndexOf(starts.back() + log.lengths().back()), -1);
  EXPECT_EQ(locator.IndexOf(nullptr), -1);

  // An empty log locates nothing.
  EventIdLog empty;
  EXPECT_EQ(EventIdLog::Locator(empty).IndexOf(elsewhere.data()), -1);
}

// The look-ahead loop behind restore's lookups: every item is hashed once, in
// order, kAhead items before its body runs with that hash; the first failing
// body stops the loop, and no item after it is hashed beyond the look-ahead.
TEST(Prefetch, ForEachHashedAheadHashesEachItemOnceInOrderAhead) {
  for (size_t n : {0, 1, 3, 4, 5, 8, 9, 100}) {
    std::vector<size_t> hashed;
    std::vector<std::pair<size_t, size_t>> bodies;
    absl::Status st = ForEachHashedAhead<4>(
        n,
        [&](size_t j) {
          hashed.push_back(j);
          return j * 1000 + 7;
        },
        [&](size_t i, size_t h) -> absl::Status {
          // Hashed already: item i and up to 4 after it.
          EXPECT_EQ(hashed.size(), std::min(n, i + 1 + 4)) << n << " " << i;
          bodies.emplace_back(i, h);
          return absl::OkStatus();
        });
    EXPECT_TRUE(st.ok());
    ASSERT_EQ(hashed.size(), n);
    ASSERT_EQ(bodies.size(), n);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(hashed[i], i);
      EXPECT_EQ(bodies[i].first, i);
      EXPECT_EQ(bodies[i].second, i * 1000 + 7);
    }
  }
  // Item 95 is the last whose turn hashes one ahead, 96 the first whose does not.
  for (size_t fail_at : {0, 2, 3, 4, 50, 95, 96, 99}) {
    size_t hashed = 0;
    size_t ran = 0;
    absl::Status st = ForEachHashedAhead<4>(
        100, [&](size_t j) { return ++hashed, j; },
        [&](size_t i, size_t) {
          ++ran;
          return i == fail_at ? absl::InvalidArgumentError(absl::StrCat("item ", i))
                              : absl::OkStatus();
        });
    EXPECT_EQ(st, absl::InvalidArgumentError(absl::StrCat("item ", fail_at)));
    EXPECT_EQ(ran, fail_at + 1);
    EXPECT_EQ(hashed, std::min<size_t>(100, fail_at + 1 + 4));
  }
  // A body returning nothing runs for every item.
  size_t sum = 0;
  EXPECT_TRUE(ForEachHashedAhead<8>(
                  20, [](size_t j) { return j; }, [&](size_t, size_t h) { sum += h; })
                  .ok());
  EXPECT_EQ(sum, 190u);
}

// Restore hashes event ids and timer causes some places ahead of the one it
// checks (to prefetch): a repeated id or an unknown cause must still be
// found wherever it is, at the start (inside the look-ahead), in the middle
// and at the very end, with the same error as before.
TEST(Snapshot, RepeatsAndUnknownCausesAreFoundAtAnyPosition) {
  const std::vector<v1::Event> events = Stream(3000, 9);
  auto engine = NewEngine();
  IngestAll(*engine, events);
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(*engine->Snapshot()));
  ASSERT_TRUE(Engine::Restore(snap.SerializeAsString()).ok());

  // Event ids: id `to` becomes a copy of id `from`.
  const int ids = snap.event_id_lengths_size();
  ASSERT_GT(ids, 100);
  auto repeat_id = [&](int from, int to) {
    std::vector<absl::string_view> parts;
    absl::string_view data = snap.event_id_data();
    for (uint32_t n : snap.event_id_lengths()) {
      parts.push_back(data.substr(0, n));
      data.remove_prefix(n);
    }
    const std::string repeated(parts[static_cast<size_t>(from)]);
    parts[static_cast<size_t>(to)] = repeated;
    v1::EngineSnapshot bad = snap;
    std::string blob;
    for (size_t i = 0; i < parts.size(); ++i) {
      blob.append(parts[i].data(), parts[i].size());
      bad.set_event_id_lengths(static_cast<int>(i), static_cast<uint32_t>(parts[i].size()));
    }
    bad.set_event_id_data(blob);
    auto r = Engine::Restore(bad.SerializeAsString());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << from << " " << to;
    EXPECT_NE(r.status().message().find("event id '" + repeated + "' is repeated"),
              std::string::npos)
        << r.status();
  };
  repeat_id(0, 1);
  repeat_id(3, 15);
  repeat_id(2, 16);
  repeat_id(0, ids / 2);
  repeat_id(ids / 3, ids - 1);
  repeat_id(ids - 2, ids - 1);

  // Timer causes, as ids (older snapshots; restore hashes those ahead):
  // timer `at` names an event that was never accepted.
  snap = WithCausesAsIds(snap);
  ASSERT_TRUE(Engine::Restore(snap.SerializeAsString()).ok());
  const int timers = snap.rules().timer_cause_size();
  ASSERT_GT(timers, 20);
  for (int at : {0, 1, 7, 8, 9, timers / 2, timers - 2, timers - 1}) {
    v1::EngineSnapshot bad = snap;
    bad.mutable_rules()->set_timer_cause(at, "never-accepted");
    auto r = Engine::Restore(bad.SerializeAsString());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << at;
    EXPECT_NE(r.status().message().find(absl::StrCat("timer ", at,
                                                     ": cause 'never-accepted' is not an accepted "
                                                     "event")),
              std::string::npos)
        << r.status();
  }
  // A cause moved to another timer's (an accepted event) still restores.
  {
    v1::EngineSnapshot moved = snap;
    moved.mutable_rules()->set_timer_cause(timers - 1, snap.rules().timer_cause(0));
    EXPECT_TRUE(Engine::Restore(moved.SerializeAsString()).ok());
  }

  // Table rows: a repeated id, first or last.
  {
    v1::EngineSnapshot bad = snap;
    ASSERT_GT(bad.deals_size(), 2);
    bad.mutable_deals(bad.deals_size() - 1)->set_deal_id(bad.deals(0).deal_id());
    auto r = Engine::Restore(bad.SerializeAsString());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("deals: id '" + snap.deals(0).deal_id() + "' is repeated"),
              std::string::npos)
        << r.status();
  }
}

// ---- The writer on two threads (issue #2) ----

// The rows the two-thread writer splits: the seven tables' rows, then one
// attribution per account.
size_t SplitRows(const EngineState& s) {
  return 2 * s.accounts.size() + s.managers.size() + s.teams.size() + s.deals.size() +
         s.orders.size() + s.invoices.size() + s.complaints.size();
}

// The splits worth forcing: none, every table's boundary and one row either
// side, the middle, the end and past it, and the writer's own choice.
std::vector<size_t> SplitChoices(const EngineState& s) {
  std::vector<size_t> at = {0, 1};
  size_t b = 0;
  for (size_t n : {s.accounts.size(), s.managers.size(), s.teams.size(), s.deals.size(),
                   s.orders.size(), s.invoices.size(), s.complaints.size(), s.accounts.size()}) {
    b += n;
    for (size_t d : {b - std::min<size_t>(b, 1), b, b + 1}) at.push_back(d);
  }
  at.push_back(SplitRows(s) / 2);
  at.push_back(SplitRows(s) + 7);
  at.push_back(SIZE_MAX);
  return at;
}

std::unique_ptr<EngineState> Restored(absl::string_view bytes) {
  auto s = std::make_unique<EngineState>();
  absl::Status st = ReadSnapshot(bytes, s.get());
  EXPECT_TRUE(st.ok()) << st;
  return s;
}

// Every split of a small state against the reference writer: every pair of
// splits of the two passes when `every_pair`, else every write split with
// the size split at the start, at the same row and at the end. The
// one-thread way (RunBoth's fallback) and the two-thread way give the same
// bytes.
void CheckEverySplit(const EngineState& s, bool every_pair) {
  const std::string reference = WriteSnapshotReference(s);
  const size_t rows = SplitRows(s);
  for (size_t write_split = 0; write_split <= rows + 1; ++write_split) {
    std::vector<size_t> size_splits = {0, write_split, rows};
    if (every_pair) {
      size_splits.clear();
      for (size_t i = 0; i <= rows + 1; ++i) size_splits.push_back(i);
    }
    for (size_t size_split : size_splits) {
      ASSERT_TRUE(WriteSnapshotSplitForTesting(s, false, size_split, write_split) == reference)
          << "sizes split at row " << size_split << ", writes at row " << write_split << " of "
          << rows;
    }
  }
  for (size_t split : SplitChoices(s)) {
    ASSERT_TRUE(WriteSnapshotSplitForTesting(s, true, split, split) == reference)
        << "two threads, split at row " << split << " of " << rows;
  }
}

TEST(SnapshotTwoThreads, EverySplitOfSmallStatesMatchesTheReference) {
  {
    EngineState empty;
    ASSERT_EQ(SplitRows(empty), 0u);
    CheckEverySplit(empty, true);
  }
  // One event, and a few hundred (every table has rows, and the reference
  // check can fail: see SameInputTwiceGivesIdenticalBytes).
  for (int64_t n : {int64_t{1}, int64_t{400}}) {
    auto engine = NewEngine();
    IngestAll(*engine, Stream(n, 3));
    ASSERT_EQ(engine->events_accepted(), n);
    std::string one, two;
    {
      ScopedParallelMode mode(1);
      one = *engine->Snapshot();
    }
    {
      ScopedParallelMode mode(2);
      two = *engine->Snapshot();
    }
    EXPECT_TRUE(one == two) << n << " events";
    auto s = Restored(one);
    if (n > 1) {
      EXPECT_GT(s->deals.size(), 0u);
      EXPECT_GT(s->orders.size(), 0u);
    }
    CheckEverySplit(*s, n == 1);
  }
}

TEST(SnapshotTwoThreads, LargeStateMatchesOneThreadAndTheReference) {
  const std::vector<v1::Event> events = Stream(100000, 9);
  auto engine = NewEngine();
  IngestAll(*engine, events);
  // Timers fire and actions are stored on Advance: the tail has all parts.
  ASSERT_TRUE(engine->Advance(events.back().occurred_at_us() + 40 * kDay).ok());
  std::string one, two, chosen;
  {
    ScopedParallelMode mode(1);
    one = *engine->Snapshot();
  }
  {
    ScopedParallelMode mode(2);
    two = *engine->Snapshot();
  }
  {
    ScopedParallelMode mode(0);  // WriteSnapshot's own choice.
    chosen = *engine->Snapshot();
  }
  ASSERT_GT(one.size(), kParallelMinBytes);
  EXPECT_EQ(one.size(), two.size());
  EXPECT_TRUE(one == two) << "the two-thread writer's bytes differ from the one-thread writer's";
  EXPECT_TRUE(chosen == one);

  auto s = Restored(one);
  EXPECT_GT(s->actions.size(), 0u);
  EXPECT_GT(s->rules.timers.size(), 0u);
  const std::string reference = WriteSnapshotReference(*s);
  EXPECT_TRUE(reference == one);
  const size_t rows = SplitRows(*s);
  for (size_t split : SplitChoices(*s)) {
    EXPECT_TRUE(WriteSnapshotSplitForTesting(*s, true, split, split) == reference)
        << "split at row " << split << " of " << rows;
    EXPECT_TRUE(WriteSnapshotSplitForTesting(*s, true, rows - std::min(rows, split), split) ==
                reference)
        << "sizes split at row " << rows - std::min(rows, split) << ", writes at " << split;
  }
}

}  // namespace
}  // namespace rapport::test

namespace rapport::test {
namespace {

using google::protobuf::internal::WireFormatLite;

// The end offsets of the top-level records of `bytes`, and 0, found by
// protobuf's own reader (not the walker under test).
std::vector<size_t> TopLevelBoundaries(const std::string& bytes) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  std::vector<size_t> at{0};
  while (const uint32_t tag = in.ReadTag()) {
    EXPECT_TRUE(WireFormatLite::SkipField(&in, tag));
    at.push_back(static_cast<size_t>(in.CurrentPosition()));
  }
  EXPECT_EQ(at.back(), bytes.size());
  return at;
}

// Parsing bytes[0, cut) and bytes[cut, end) at once and combining them gives
// protobuf's parse of the whole, for each cut.
void ExpectHalvesParseAsWhole(const std::string& bytes, const std::vector<size_t>& cuts) {
  v1::EngineSnapshot whole;
  ASSERT_TRUE(whole.ParseFromString(bytes));
  const std::string want = whole.SerializeAsString();
  for (const size_t cut : cuts) {
    google::protobuf::Arena arena;
    auto* snap = google::protobuf::Arena::CreateMessage<v1::EngineSnapshot>(&arena);
    ASSERT_TRUE(ParseSnapshotInHalves(bytes, cut, &arena, snap)) << "cut at " << cut;
    EXPECT_EQ(snap->SerializeAsString(), want) << "cut at " << cut << " of " << bytes.size();
  }
}

std::string SnapshotOf(int64_t events, uint64_t seed = 7) {
  auto engine = NewEngine();
  const std::vector<v1::Event> stream = Stream(events, seed);
  IngestAll(*engine, stream);
  EXPECT_TRUE(engine->Advance(stream.back().occurred_at_us()).ok());
  return *engine->Snapshot();
}

TEST(SnapshotHalves, EveryBoundaryOfASmallSnapshotParsesAsTheWhole) {
  const std::string bytes = SnapshotOf(400);
  const std::vector<size_t> cuts = TopLevelBoundaries(bytes);
  ASSERT_GT(cuts.size(), 100u);
  ExpectHalvesParseAsWhole(bytes, cuts);

  // What the writer never does but a parse accepts: an unknown field, a
  // packed field in two records, an unpacked repeated scalar, rows of one
  // table apart, in the middle and at the end.
  std::string extra;
  {
    google::protobuf::io::StringOutputStream stream(&extra);
    google::protobuf::io::CodedOutputStream out(&stream);
    WireFormatLite::WriteUInt64(99, 5, &out);
    WireFormatLite::WriteTag(21, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, &out);
    out.WriteVarint32(16);
    out.WriteLittleEndian64(1);
    out.WriteLittleEndian64(2);
    WireFormatLite::WriteUInt32(23, 7, &out);
    v1::EngineSnapshot whole;
    ASSERT_TRUE(whole.ParseFromString(bytes));
    WireFormatLite::WriteMessage(10, whole.accounts(0), &out);
    WireFormatLite::WriteString(99, "unknown", &out);
  }
  const size_t mid = cuts[cuts.size() / 2];
  const std::string odd = bytes.substr(0, mid) + extra + bytes.substr(mid) + extra;
  ExpectHalvesParseAsWhole(odd, TopLevelBoundaries(odd));
}

TEST(SnapshotHalves, RandomBoundariesOfALargeSnapshotParseAsTheWhole) {
  const std::string bytes = SnapshotOf(100000);
  const std::vector<size_t> all = TopLevelBoundaries(bytes);
  std::mt19937_64 rng(11);
  std::vector<size_t> cuts;
  for (int i = 0; i < 12; ++i) cuts.push_back(all[rng() % all.size()]);
  ExpectHalvesParseAsWhole(bytes, cuts);
}

// Everything a host can read, serialized, to compare two engines.
std::string Reads(const Engine& e) {
  std::string out = *e.Snapshot();
  for (int64_t n : e.AccountStatusCounts()) absl::StrAppend(&out, n, ",");
  for (const v1::StageCount& c : e.DealsByStage()) out += c.SerializeAsString();
  for (const v1::StuckDeal& d : e.StuckDeals(e.clock_us())) out += d.SerializeAsString();
  out += e.Outbox().SerializeAsString();
  for (int by = 0; by < 6; ++by) {
    v1::KpiQuery q;
    q.set_start_us(0);
    q.set_end_us(e.clock_us() + kDay);
    q.set_bucket(v1::BUCKET_MONTH);
    q.set_group_by(static_cast<v1::GroupBy>(by));
    auto r = e.Kpis(q);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) out += r->SerializeAsString();
  }
  auto g = e.Grades(e.clock_us());
  EXPECT_TRUE(g.ok()) << g.status();
  if (g.ok()) out += g->SerializeAsString();
  return out;
}

absl::StatusOr<std::unique_ptr<Engine>> RestoreWith(int mode, const std::string& bytes) {
  ScopedParallelMode m(mode);
  return Engine::Restore(bytes);
}

TEST(SnapshotHalves, RestoreOnTwoThreadsEqualsRestoreOnOne) {
  const std::string bytes = SnapshotOf(20000, 3);
  auto one = RestoreWith(1, bytes);
  auto two = RestoreWith(2, bytes);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(*(*two)->Snapshot(), bytes);
  EXPECT_EQ(Reads(**one), Reads(**two));

  // The fact store's memory, its spare room too, is the same both ways: the
  // two threads reserved each timeline as the one thread does.
  EngineState s1, s2;
  {
    ScopedParallelMode m(1);
    ASSERT_TRUE(ReadSnapshot(bytes, &s1).ok());
  }
  {
    ScopedParallelMode m(2);
    ASSERT_TRUE(ReadSnapshot(bytes, &s2).ok());
  }
  const kpi::FactStore::Memory m1 = s1.kpi.MemoryUse(), m2 = s2.kpi.MemoryUse();
  EXPECT_GT(m1.slack + m1.accounts + m1.deals + m1.invoices, 0u);
  EXPECT_EQ(m1.facts, m2.facts);
  EXPECT_EQ(m1.accounts, m2.accounts);
  EXPECT_EQ(m1.deals, m2.deals);
  EXPECT_EQ(m1.orders, m2.orders);
  EXPECT_EQ(m1.invoices, m2.invoices);
  EXPECT_EQ(m1.strings, m2.strings);
  EXPECT_EQ(m1.slack, m2.slack);
  // And timeline by timeline (a timeline grows one item at a time up to
  // four, so only a longer one shows its reserve).
  ASSERT_EQ(s1.kpi.accounts.size(), s2.kpi.accounts.size());
  ASSERT_EQ(s1.kpi.deals.size(), s2.kpi.deals.size());
  ASSERT_EQ(s1.kpi.invoice_payments.size(), s2.kpi.invoice_payments.size());
  size_t long_ones = 0;
  for (size_t i = 0; i < s1.kpi.accounts.size(); ++i) {
    const kpi::AccountData &a = s1.kpi.accounts[i], &b = s2.kpi.accounts[i];
    EXPECT_EQ(a.orders.capacity(), b.orders.capacity()) << i;
    EXPECT_EQ(a.completed.capacity(), b.completed.capacity()) << i;
    EXPECT_EQ(a.outbound.capacity(), b.outbound.capacity()) << i;
    EXPECT_EQ(a.feedback.capacity(), b.feedback.capacity()) << i;
    EXPECT_EQ(a.status.capacity(), b.status.capacity()) << i;
    long_ones += a.outbound.size() > 4;
  }
  for (size_t i = 0; i < s1.kpi.deals.size(); ++i) {
    EXPECT_EQ(s1.kpi.deals[i].visits.capacity(), s2.kpi.deals[i].visits.capacity()) << i;
  }
  for (size_t i = 0; i < s1.kpi.invoice_payments.size(); ++i) {
    EXPECT_EQ(s1.kpi.invoice_payments[i].capacity(), s2.kpi.invoice_payments[i].capacity()) << i;
  }
  EXPECT_GT(long_ones, 0u);

  // The two-thread way did cut the bytes, at a record boundary, with each
  // half a real share of them.
  const size_t cut = SnapshotSplitPoint(bytes);
  const std::vector<size_t> cuts = TopLevelBoundaries(bytes);
  EXPECT_TRUE(std::binary_search(cuts.begin(), cuts.end(), cut)) << cut;
  EXPECT_GT(cut, bytes.size() / 5);
  EXPECT_LT(cut, bytes.size() * 4 / 5);
}

// Both ways give the same status; a failed ReadSnapshot fills no part of
// the state.
void ExpectSameErrorBothWays(const std::string& bad, absl::StatusCode code, const char* what) {
  absl::Status st[2];
  for (int mode : {1, 2}) {
    ScopedParallelMode m(mode);
    EngineState s;
    st[mode - 1] = ReadSnapshot(bad, &s);
    EXPECT_EQ(st[mode - 1].code(), code) << what << " mode " << mode << ": " << st[mode - 1];
    if (code == absl::StatusCode::kDataLoss) {
      EXPECT_EQ(s.accounts.size(), 0u) << what;
      EXPECT_EQ(s.deals.size(), 0u) << what;
      EXPECT_EQ(s.events_accepted, 0) << what;
      EXPECT_EQ(s.event_ids.size(), 0u) << what;
    }
  }
  EXPECT_EQ(st[0], st[1]) << what;
}

TEST(SnapshotHalves, CorruptSnapshotsFailAlikeOnOneThreadAndTwo) {
  const std::string bytes = SnapshotOf(3000);
  const std::vector<size_t> cuts = TopLevelBoundaries(bytes);
  const absl::StatusCode loss = absl::StatusCode::kDataLoss;
  // Truncated in the first half and in the second, on and off a record end.
  for (size_t at : {bytes.size() / 5, bytes.size() / 2 + 1, bytes.size() * 4 / 5, bytes.size() - 1,
                    cuts[cuts.size() / 4] + 1, cuts[cuts.size() * 3 / 4] + 2}) {
    ExpectSameErrorBothWays(bytes.substr(0, at), loss, "truncated");
  }
  // A record whose own bytes do not parse (its first field has wire type 7)
  // while the top-level framing holds, early and late: the walk cuts the
  // bytes and one half fails.
  int corrupted = 0;
  for (size_t i : {cuts.size() / 8, cuts.size() / 3, cuts.size() * 2 / 3, cuts.size() * 7 / 8}) {
    for (; i + 1 < cuts.size(); ++i) {
      const uint8_t tag = static_cast<uint8_t>(bytes[cuts[i]]);
      const uint8_t len = static_cast<uint8_t>(bytes[cuts[i] + 1]);
      // A row (fields 10 to 17, one-byte tags) of under 128 bytes.
      if ((tag & 7) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED || (tag >> 3) < 10 ||
          (tag >> 3) > 17 || len == 0 || len >= 0x80) {
        continue;
      }
      std::string bad = bytes;
      bad[cuts[i] + 2] = static_cast<char>(0x0f);  // field 1, wire type 7
      ExpectSameErrorBothWays(bad, loss, "corrupt record");
      ++corrupted;
      break;
    }
  }
  EXPECT_EQ(corrupted, 4);
  // Framing the walk refuses: a group start, a length past the end.
  EXPECT_EQ(SnapshotSplitPoint(bytes + "\x0b"), 0u);
  ExpectSameErrorBothWays(bytes + "\x0b", loss, "group");
  ExpectSameErrorBothWays(
      bytes.substr(0, cuts[5]) + "\x52\xff\xff\xff\xff\x07" + bytes.substr(cuts[5]), loss,
      "long length");
  // A singular field twice: the parse keeps the last, an explicit zero too,
  // so no cut may put the two on different sides.
  std::string zero;
  zero += static_cast<char>(0x08);  // format_version, varint
  zero += '\0';
  EXPECT_EQ(SnapshotSplitPoint(bytes + zero), 0u);
  EXPECT_NE(SnapshotSplitPoint(bytes), 0u);
  ExpectSameErrorBothWays(bytes + zero, absl::StatusCode::kInvalidArgument, "version 0 at end");
  std::string two = zero;
  two[1] = 2;
  auto twice = RestoreWith(2, bytes + two);
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ(*(*twice)->Snapshot(), bytes);
}

// The first row of fact kind `kind` in the columns, plus half its count.
int RowOfKind(const v1::EngineSnapshot& m, int kind) {
  int row = 0;
  for (int k = 0; k < kind; ++k) row += static_cast<int>(m.facts().kind_sizes(k));
  return row + static_cast<int>(m.facts().kind_sizes(kind)) / 2;
}

// The tables and the event-id log, then the fact columns and the actions
// and timers, are read at once on two threads; the error is still the one
// the one-thread order meets first.
TEST(SnapshotHalves, InconsistentSnapshotsGiveTheOneThreadError) {
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(SnapshotOf(3000)));
  const absl::StatusCode bad = absl::StatusCode::kInvalidArgument;
  auto tables = [](v1::EngineSnapshot* m) { *m->add_accounts() = m->accounts(0); };
  auto ids = [](v1::EngineSnapshot* m) { m->mutable_event_id_lengths()->RemoveLast(); };
  auto count = [](v1::EngineSnapshot* m) { m->mutable_event_fingerprints()->RemoveLast(); };
  auto facts = [](v1::EngineSnapshot* m) { m->mutable_facts()->clear_kind_sizes(); };
  auto actions = [](v1::EngineSnapshot* m) { m->mutable_actions(0)->set_action_id("bad"); };
  auto timers = [](v1::EngineSnapshot* m) { m->mutable_rules()->add_timer_seq(1); };
  // A bad row in the deal kinds (read on the calling thread) and in the
  // others (read on the second): each is checked with the other's part of
  // the rows running at once.
  auto deal_row = [](v1::EngineSnapshot* m) {
    m->mutable_facts()->set_account(RowOfKind(*m, 1), 1u << 30);
  };
  auto other_row = [](v1::EngineSnapshot* m) {
    m->mutable_facts()->set_account(RowOfKind(*m, 10), 1u << 30);
  };
  auto other_time = [](v1::EngineSnapshot* m) {
    m->mutable_facts()->set_occurred_at_delta_us(RowOfKind(*m, 9), uint64_t{1} << 62);
  };
  auto completed = [](v1::EngineSnapshot* m) {
    // An order completed twice: read only after the placed orders.
    const int row = RowOfKind(*m, 8);
    m->mutable_facts()->set_subject(row + 1, m->facts().subject(row));
    m->mutable_facts()->set_account(row + 1, m->facts().account(row));
  };
  ASSERT_GT(snap.actions_size(), 0);
  for (int k : {1, 9, 10}) ASSERT_GT(snap.facts().kind_sizes(k), 0u) << k;
  ASSERT_GT(snap.facts().kind_sizes(8), 2u);
  struct Case {
    std::vector<void (*)(v1::EngineSnapshot*)> breaks;
    const char* expect;
  };
  const Case cases[] = {
      {{tables, ids, facts}, "accounts: id"},
      {{ids, facts}, "event id lengths"},
      {{count, facts}, "event_fingerprints and events_accepted disagree"},
      {{facts, actions, timers}, "facts: kind_sizes"},
      {{tables, deal_row, other_row}, "accounts: id"},
      // The rows are broken before the kind sizes they are found by.
      {{deal_row, other_row, facts}, "facts: kind_sizes"},
      {{deal_row, other_row, actions, timers}, "(kind 1): unknown account"},
      {{other_row, deal_row}, "(kind 1): unknown account"},
      {{other_row, actions, timers}, "(kind 10): unknown account"},
      {{other_time, other_row, timers}, "(kind 9): occurred_at_us out of range"},
      {{completed, other_row}, "(kind 8): an index, code or value is out of range"},
      {{actions, timers}, "action 'bad'"},
      {{timers}, "rules: the timer columns differ"},
  };
  for (const Case& c : cases) {
    v1::EngineSnapshot m = snap;
    for (auto* b : c.breaks) b(&m);
    const std::string bytes = m.SerializeAsString();
    ExpectSameErrorBothWays(bytes, bad, c.expect);
    ScopedParallelMode two(2);
    EngineState s;
    const absl::Status st = ReadSnapshot(bytes, &s);
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << st;
  }
}

}  // namespace
}  // namespace rapport::test

// ---- The hand serializers of the biggest rows (SerializeRow) ----

namespace rapport::test {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// A value for one field: never the proto3 default when `all`, so that the
// field is written; else the default one time in three. Strings are ASCII,
// multi-byte UTF-8 or (one time in eight) invalid UTF-8, which protobuf's
// serializer logs and writes all the same.
std::string SomeString(std::mt19937_64& rng, bool all) {
  if (!all && rng() % 3 == 0) return "";
  static const char* const kPieces[] = {"a", "Z9", "_-", "\xd0\x96", "\xe2\x82\xac", " "};
  std::string s;
  const size_t n = 1 + rng() % (rng() % 8 == 0 ? 300 : 12);  // some past one varint byte
  for (size_t i = 0; i < n; ++i) s += kPieces[rng() % 6];
  if (rng() % 8 == 0) s += '\xff';
  return s;
}

int64_t SomeInt(std::mt19937_64& rng, bool all, int bits) {
  if (!all && rng() % 3 == 0) return 0;
  int64_t v = 0;
  switch (rng() % 4) {
    case 0:
      v = static_cast<int64_t>(rng() % 100);
      break;  // one byte
    case 1:
      v = -static_cast<int64_t>(rng() % 1000) - 1;
      break;  // ten bytes
    case 2:
      v = static_cast<int64_t>(rng() >> (rng() % 64));
      break;
    default:
      v = static_cast<int64_t>(rng());
      break;
  }
  if (bits == 32) v = static_cast<int32_t>(v);
  return v == 0 ? 1 : v;
}

// Sets every field of `m` (repeated ones to 1..3 elements, or none when not
// `all`) through reflection; nested messages likewise. Fails on a field type
// the rows do not have, so that a new kind of field is noticed here.
void FillEveryField(Message* m, std::mt19937_64& rng, bool all) {
  const Reflection* r = m->GetReflection();
  const google::protobuf::Descriptor* d = m->GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const int n = f->is_repeated() ? static_cast<int>(rng() % 4) + (all ? 1 : 0) : 1;
    for (int k = 0; k < n; ++k) {
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_STRING:
          f->is_repeated() ? r->AddString(m, f, SomeString(rng, all))
                           : r->SetString(m, f, SomeString(rng, all));
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          f->is_repeated() ? r->AddInt64(m, f, SomeInt(rng, all, 64))
                           : r->SetInt64(m, f, SomeInt(rng, all, 64));
          break;
        case FieldDescriptor::CPPTYPE_INT32:
          f->is_repeated() ? r->AddInt32(m, f, static_cast<int32_t>(SomeInt(rng, all, 32)))
                           : r->SetInt32(m, f, static_cast<int32_t>(SomeInt(rng, all, 32)));
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          f->is_repeated() ? r->AddUInt64(m, f, static_cast<uint64_t>(SomeInt(rng, all, 64)))
                           : r->SetUInt64(m, f, static_cast<uint64_t>(SomeInt(rng, all, 64)));
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          f->is_repeated() ? r->AddUInt32(m, f, static_cast<uint32_t>(SomeInt(rng, all, 32)))
                           : r->SetUInt32(m, f, static_cast<uint32_t>(SomeInt(rng, all, 32)));
          break;
        case FieldDescriptor::CPPTYPE_ENUM: {
          // A declared value or (proto3 enums are open) any other, negative ones too.
          const auto* e = f->enum_type();
          const int v = rng() % 2 == 0
                            ? e->value(static_cast<int>(rng() % e->value_count()))->number()
                            : static_cast<int32_t>(SomeInt(rng, true, 32));
          const int value = all && v == 0 ? 1 : v;
          f->is_repeated() ? r->AddEnumValue(m, f, value) : r->SetEnumValue(m, f, value);
          break;
        }
        case FieldDescriptor::CPPTYPE_BOOL:
          f->is_repeated() ? r->AddBool(m, f, all || rng() % 2 == 0)
                           : r->SetBool(m, f, all || rng() % 2 == 0);
          break;
        case FieldDescriptor::CPPTYPE_MESSAGE:
          FillEveryField(f->is_repeated() ? r->AddMessage(m, f) : r->MutableMessage(m, f), rng,
                         all);
          break;
        default:
          FAIL() << d->full_name() << "." << f->name() << ": a field type this test does not fill";
      }
    }
  }
}

// The messages SerializeRow writes by hand: every field set, some fields
// set, none set, unknown fields on the row or on a nested message; on the
// heap and on an arena. Their bytes are protobuf's.
template <typename Row>
void ExpectHandWriterMatchesProtobuf() {
  std::mt19937_64 rng(11);
  google::protobuf::Arena arena;
  for (int trial = 0; trial < 400; ++trial) {
    Row* row = trial % 2 == 0 ? google::protobuf::Arena::CreateMessage<Row>(&arena) : new Row;
    std::unique_ptr<Row> owned(trial % 2 == 0 ? nullptr : row);
    if (trial > 0) FillEveryField(row, rng, /*all=*/trial % 4 < 2);
    if (trial % 5 == 4) {
      row->GetReflection()->MutableUnknownFields(row)->AddVarint(1000 + trial, 7);
    }
    if (trial % 7 == 6) {
      std::vector<const FieldDescriptor*> fields;
      row->GetReflection()->ListFields(*row, &fields);
      for (const FieldDescriptor* f : fields) {
        if (f->is_repeated() && f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          Message* nested = row->GetReflection()->MutableRepeatedMessage(row, f, 0);
          nested->GetReflection()->MutableUnknownFields(nested)->AddLengthDelimited(99, "x");
        }
      }
    }
    if (trial % 4 == 0 && trial > 0) {
      // Every field is set: every one must be in the bytes.
      std::vector<const FieldDescriptor*> fields;
      row->GetReflection()->ListFields(*row, &fields);
      ASSERT_EQ(static_cast<int>(fields.size()), Row::descriptor()->field_count());
    }
    const std::string expected = row->SerializeAsString();
    ASSERT_TRUE(SerializeRowForTesting(*row) == expected)
        << Row::descriptor()->full_name() << ", trial " << trial << ": " << row->DebugString();
  }
}

TEST(SnapshotRows, HandWrittenSerializersMatchProtobufs) {
  // Protobuf logs each invalid UTF-8 string it serializes.
  google::protobuf::LogSilencer quiet;
  ExpectHandWriterMatchesProtobuf<v1::Account>();
  ExpectHandWriterMatchesProtobuf<v1::Deal>();
  ExpectHandWriterMatchesProtobuf<v1::StageVisit>();
  ExpectHandWriterMatchesProtobuf<v1::Attribution>();
  ExpectHandWriterMatchesProtobuf<v1::Action>();
  ExpectHandWriterMatchesProtobuf<v1::Order>();
  ExpectHandWriterMatchesProtobuf<v1::Invoice>();
  ExpectHandWriterMatchesProtobuf<v1::Complaint>();
  ExpectHandWriterMatchesProtobuf<v1::Money>();
  // The rows written by protobuf's own serializer go through the same entry.
  ExpectHandWriterMatchesProtobuf<v1::Manager>();
  ExpectHandWriterMatchesProtobuf<v1::Team>();
}

// A restored row with a field this build does not know keeps it in the next
// snapshot, as the reference writer does.
TEST(SnapshotRows, UnknownFieldsOfRowsAreWrittenBack) {
  auto engine = NewEngine();
  IngestAll(*engine, Stream(400, 3));
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(*engine->Snapshot()));
  ASSERT_GT(snap.deals_size(), 0);
  ASSERT_GT(snap.deals(0).history_size(), 0);
  ASSERT_GT(snap.attributions_size(), 0);
  ASSERT_GT(snap.attributions(0).history_size(), 0);
  snap.mutable_accounts(0)
      ->GetReflection()
      ->MutableUnknownFields(snap.mutable_accounts(0))
      ->AddVarint(77, 1);
  v1::StageVisit* visit = snap.mutable_deals(0)->mutable_history(0);
  visit->GetReflection()->MutableUnknownFields(visit)->AddFixed64(55, 9);
  v1::Attribution* a = snap.mutable_attributions(0)->mutable_history(0);
  a->GetReflection()->MutableUnknownFields(a)->AddFixed32(66, 3);
  std::string bytes;
  ASSERT_TRUE(snap.SerializeToString(&bytes));
  auto s = Restored(bytes);
  const std::string reference = WriteSnapshotReference(*s);
  for (int mode : {1, 2}) {
    ScopedParallelMode m(mode);
    EXPECT_TRUE(WriteSnapshot(*s) == reference) << "mode " << mode;
  }
  v1::EngineSnapshot back;
  ASSERT_TRUE(back.ParseFromString(reference));
  EXPECT_EQ(back.accounts(0).GetReflection()->GetUnknownFields(back.accounts(0)).field_count(), 1);
  EXPECT_EQ(back.deals(0)
                .history(0)
                .GetReflection()
                ->GetUnknownFields(back.deals(0).history(0))
                .field_count(),
            1);
  const v1::Attribution& back_a = back.attributions(0).history(0);
  EXPECT_EQ(back_a.GetReflection()->GetUnknownFields(back_a).field_count(), 1);
}

}  // namespace
}  // namespace rapport::test

// ---- The hand parsers of the rows (ReadSnapshot) ----

namespace rapport::test {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::util::MessageDifferencer;

bool HasUnknownFields(const Message& m) {
  const google::protobuf::Reflection* r = m.GetReflection();
  if (r->GetUnknownFields(m).field_count() > 0) return true;
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        if (HasUnknownFields(r->GetRepeatedMessage(m, f, i))) return true;
      }
    } else if (HasUnknownFields(r->GetMessage(m, f))) {
      return true;
    }
  }
  return false;
}

template <typename Row>
bool IsValidAsParsed(const std::string& bytes) {
  Row row;
  return row.ParseFromString(bytes);
}

// Where the hand parser takes `bytes` (alone, and followed by bytes it must
// not read), protobuf's parse takes them too and gives the same message.
// Returns whether the hand parser took them.
template <typename Row>
bool ExpectHandParseMatches(const std::string& bytes, google::protobuf::Arena* arena) {
  Row generated;
  const bool generated_ok = generated.ParseFromString(bytes);
  bool took = false;
  const std::string buffers[] = {bytes, bytes + std::string(24, '\x80')};
  for (int i = 0; i < 2; ++i) {
    const std::string& buffer = buffers[i];
    Row* row = google::protobuf::Arena::CreateMessage<Row>(arena);
    const bool ok = ParseRowForTesting(buffer, bytes.size(), row);
    if (ok) {
      EXPECT_TRUE(generated_ok) << Row::descriptor()->full_name() << ": the hand parser took "
                                << absl::CEscape(bytes) << " which protobuf refuses";
      EXPECT_TRUE(MessageDifferencer::Equals(generated, *row))
          << Row::descriptor()->full_name() << ": " << absl::CEscape(bytes) << "\nprotobuf "
          << generated.DebugString() << "\nby hand " << row->DebugString();
    }
    if (i == 1) {
      EXPECT_EQ(ok, took) << "the bytes after the record changed the parse";
    }
    took = ok;
  }
  return took;
}

// Random rows (every field, some, none; invalid UTF-8 now and then; unknown
// fields), their bytes as protobuf writes them and mutated (a byte changed,
// inserted or cut, two rows concatenated, which protobuf merges).
template <typename Row>
void ExpectHandParserMatchesProtobuf() {
  std::mt19937_64 rng(23);
  google::protobuf::Arena arena;
  int canonical = 0, mutated_taken = 0;
  std::string previous;
  for (int trial = 0; trial < 400; ++trial) {
    Row row;
    if (trial > 0) FillEveryField(&row, rng, /*all=*/trial % 4 < 2);
    if (trial % 9 == 8) row.GetReflection()->MutableUnknownFields(&row)->AddVarint(1000, 7);
    const std::string bytes = row.SerializeAsString();
    const bool taken = ExpectHandParseMatches<Row>(bytes, &arena);
    if (!HasUnknownFields(row) && IsValidAsParsed<Row>(bytes)) {
      ++canonical;
      EXPECT_TRUE(taken) << Row::descriptor()->full_name() << ", trial " << trial
                         << ": protobuf's own bytes of a row without unknown fields";
    }
    for (int k = 0; k < 8; ++k) {
      std::string m = bytes;
      switch (k) {
        case 0:
        case 1:
          if (!m.empty()) m[rng() % m.size()] = static_cast<char>(rng());
          break;
        case 2:
          m.insert(m.begin() + static_cast<ptrdiff_t>(rng() % (m.size() + 1)),
                   static_cast<char>(rng()));
          break;
        case 3:
          m.resize(rng() % (m.size() + 1));
          break;
        case 4:
          m += previous;
          break;
        case 5:
          if (!m.empty()) m[rng() % m.size()] ^= static_cast<char>(0x80);
          break;
        default:
          for (int j = 0; j < 3 && !m.empty(); ++j) m[rng() % m.size()] = static_cast<char>(rng());
          break;
      }
      mutated_taken += ExpectHandParseMatches<Row>(m, &arena);
    }
    previous = bytes;
  }
  EXPECT_GT(canonical, 100) << Row::descriptor()->full_name();
  EXPECT_GT(mutated_taken, 0) << Row::descriptor()->full_name();
}

TEST(SnapshotRows, HandParsersMatchProtobufs) {
  // Protobuf logs each invalid UTF-8 string it parses.
  google::protobuf::LogSilencer quiet;
  ExpectHandParserMatchesProtobuf<v1::Account>();
  ExpectHandParserMatchesProtobuf<v1::Deal>();
  ExpectHandParserMatchesProtobuf<v1::StageVisit>();
  ExpectHandParserMatchesProtobuf<v1::Attribution>();
  ExpectHandParserMatchesProtobuf<v1::AccountAttribution>();
  ExpectHandParserMatchesProtobuf<v1::Order>();
  ExpectHandParserMatchesProtobuf<v1::Invoice>();
  ExpectHandParserMatchesProtobuf<v1::Complaint>();
  ExpectHandParserMatchesProtobuf<v1::Money>();
  ExpectHandParserMatchesProtobuf<v1::FactColumns>();
  // Not a row it parses: always left to protobuf.
  google::protobuf::Arena arena;
  EXPECT_FALSE(ParseRowForTesting("", 0, google::protobuf::Arena::CreateMessage<v1::Team>(&arena)));
}

// A whole snapshot: the hand parse of the writer's bytes is protobuf's parse,
// and of damaged bytes, where it takes them, too.
TEST(SnapshotRows, HandParseOfSnapshotsMatchesProtobuf) {
  google::protobuf::LogSilencer quiet;
  auto engine = NewEngine();
  IngestAll(*engine, Stream(3000, 5));
  const std::string bytes = *engine->Snapshot();
  google::protobuf::Arena arena;
  auto expect_same = [&](const std::string& b) {
    auto* hand = google::protobuf::Arena::CreateMessage<v1::EngineSnapshot>(&arena);
    if (!ParseSnapshotByHandForTesting(b, hand)) return false;
    v1::EngineSnapshot generated;
    EXPECT_TRUE(generated.ParseFromString(b));
    EXPECT_TRUE(MessageDifferencer::Equals(generated, *hand));
    return true;
  };
  ASSERT_TRUE(expect_same(bytes));
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(bytes));
  ASSERT_GT(snap.deals_size(), 0);
  ASSERT_GT(snap.orders_size(), 0);
  ASSERT_GT(snap.invoices_size(), 0);
  ASSERT_GT(snap.complaints_size(), 0);
  std::mt19937_64 rng(5);
  int taken = 0;
  for (int trial = 0; trial < 100; ++trial) {
    std::string b = bytes;
    if (trial % 3 == 0) {
      b.resize(rng() % b.size());
    } else {
      b[rng() % b.size()] = static_cast<char>(rng());
    }
    taken += expect_same(b);
  }
  EXPECT_GT(taken, 0);
  // An unknown field in a row: protobuf's parse of the whole keeps it.
  snap.mutable_deals(0)
      ->GetReflection()
      ->MutableUnknownFields(snap.mutable_deals(0))
      ->AddVarint(99, 1);
  EXPECT_FALSE(ParseSnapshotByHandForTesting(
      snap.SerializeAsString(),
      google::protobuf::Arena::CreateMessage<v1::EngineSnapshot>(&arena)));
}

// Encodings protobuf's writer never produces but its parser takes: varints
// longer than needed, negative int32 in ten bytes, a tag in two bytes where
// one would do, a varint cut by the end of the record or of the bytes.
TEST(SnapshotRows, HandParsersTakeUnusualEncodingsAsProtobufDoes) {
  google::protobuf::LogSilencer quiet;
  google::protobuf::Arena arena;
  const std::vector<std::string> accounts = {
      std::string("\x90\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12),      // -1, field 18
      std::string("\x90\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 12),      // 10th byte > 1
      std::string("\x90\x01\xff\xff\xff\xff\x7f", 7),                           // int32 in 5 bytes
      std::string("\x90\x01\xff\xff\xff\xff\xff\x01", 8),                       // ... in 6
      std::string("\x90\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 13),  // 11 bytes
      std::string("\x58\x80\x80\x80\x00", 5),                                   // overlong 0
      std::string("\x58\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11),          // created_at -1
      std::string("\x8a\x00\x01x", 4),             // account_id, tag in 2 bytes
      std::string("\x8a\x80\x00\x01x", 5),         // ... in 3
      std::string("\x0a\x81\x00x", 4),             // length in 2 bytes
      std::string("\x0a\x02x", 3),                 // string past the end
      std::string("\x58\xff\xff", 3),              // varint past the end
      std::string("\x10\xff\xff\xff\xff\x0f", 6),  // kind 2^32 - 1
      std::string("\x10\x80\x80\x80\x80\x10", 6),  // kind 2^32 (open enum, truncated)
      std::string("\x0a\x01x\x0a\x01y", 6),        // the last value wins
      std::string("\x0a\x00", 2),                  // an explicit empty string
      std::string("\x00", 1),                      // tag 0
      std::string("\x0c", 1),                      // end group
      std::string("\x0b\x0c", 2),                  // an empty group at field 1
      std::string("\x0d\x01\x02\x03\x04", 5),      // field 1 as fixed32
      std::string("\x0a\x02\xc0\x80", 4),          // overlong UTF-8
      std::string("\x0a\x03\xed\xa0\x80", 5),      // a surrogate
      std::string("\x0a\x02\xd0\x96", 4),          // valid two-byte UTF-8
  };
  int taken = 0;
  for (const std::string& b : accounts) taken += ExpectHandParseMatches<v1::Account>(b, &arena);
  EXPECT_GE(taken, 12);
  // A nested message given twice is merged.
  const std::string twice("\x22\x02\x08\x05\x22\x05\x12\x03RUB", 11);
  EXPECT_TRUE(ExpectHandParseMatches<v1::Order>(twice, &arena));
  // The fact columns: packed as the writer writes them, or left to protobuf.
  const std::vector<std::pair<std::string, bool>> facts = {
      {std::string("\x20\x05", 2), false},                         // account 5, not packed
      {std::string("\x22\x02\x05\x06\x22\x01\x07", 7), true},      // packed twice: appended
      {std::string("\x22\x02\x05\x86", 4), false},                 // a varint runs past the field
      {std::string("\x22\x06\xff\xff\xff\xff\xff\x01", 8), true},  // uint32 from 6 bytes
      {std::string("\x22\x00", 2), true},                          // an empty packed field
      {std::string("\x22\x04\xff\xff\x7f\x01", 6), true},          // three bytes, then one
      {std::string("\x22\x02\xff\xff", 4), false},                 // ... the third missing
      {"\x22\x12" +
           [] {
             std::string s;
             for (int i = 0; i < 6; ++i) s += "\xff\xff\x7f";
             return s;
           }(),
       true},                                       // three bytes each, in place
      {std::string("\x0a\x00\x0a\x01x", 5), true},  // strings
      {std::string("\x0a\x02\xc0\x80", 4), false},  // overlong UTF-8
      {std::string("\x3a\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12), true},  // value -1
      {std::string("\x4a\x15\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
                   "\x10\x11\x12\x80\x80\x01",
                   23),
       true},  // past the eight-bytes-at-a-time part
      {std::string("\x4a\x15\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
                   "\x10\x11\x12\x80\x80\x80",
                   23),
       false},                                  // ... and its last varint unfinished
      {std::string("\x52\x01\x05", 3), false},  // field 10: unknown
  };
  for (const auto& [bytes, taken] : facts) {
    EXPECT_EQ(ExpectHandParseMatches<v1::FactColumns>(bytes, &arena), taken)
        << absl::CEscape(bytes);
  }
}

}  // namespace
}  // namespace rapport::test
