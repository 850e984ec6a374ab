// The rows validation resolves for an event (EventRefs) against the
// reference: looking every id up in the state just before the event is
// applied (ResolveEventRefs). Apply, the KPI facts and the regulations read
// the refs instead of hashing ids again, so they must be exact: for single
// events, for later events of an atomic batch that refer to rows the batch
// creates (whose indexes validation predicts), and after a restore (when the
// derived links are not built yet).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "lib/ingest/validate.h"
#include "lib/lifecycle/apply.h"
#include "lib/state/config.h"
#include "lib/storage/snapshot.h"
#include "rapport/testing/generator.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

std::unique_ptr<EngineState> NewState() {
  auto s = std::make_unique<EngineState>();
  EXPECT_TRUE(Configure(*WithDefaults({}), s.get()).ok());
  return s;
}

// Events of every type, in batches that create rows and refer to them in the
// same batch, with duplicates, a conflict and invalid events mixed in.
std::vector<v1::Event> EveryType(int64_t at) {
  const std::string k = std::to_string(at);
  std::vector<v1::Event> v;
  auto add = [&](const std::string& id, const std::string& payload) {
    v.push_back(Ev(id + "-" + k, at, payload));
  };
  add("t", "team_upserted { team_id: 'tx' segments: 'retail' }");
  add("m", "manager_upserted { manager_id: 'mx' team_id: 'tx' }");
  add("p", "account_upserted { account_id: 'px' kind: ACCOUNT_KIND_PARTNER owner_id: 'mx' }");
  add("c", "account_upserted { account_id: 'cx" + k +
               "' kind: ACCOUNT_KIND_CLIENT owner_id: 'mx' source_partner_id: 'px' }");
  add("c2",
      "account_upserted { account_id: 'cx" + k + "' kind: ACCOUNT_KIND_CLIENT segment: 'retail' }");
  add("bad-kind", "account_upserted { account_id: 'px' kind: ACCOUNT_KIND_CLIENT }");
  add("l", "lead_created { deal_id: 'd" + k + "' account_id: 'cx" + k + "' }");
  add("lp", "lead_created { deal_id: 'dp" + k + "' account_id: 'px' }");
  add("lx",
      "lead_created { deal_id: 'dx" + k + "' account_id: 'cx" + k + "' pipeline_id: 'partner' }");
  add("sx", "deal_stage_changed { deal_id: 'dx" + k + "' to_stage: 'agreed' }");
  add("bad-lead", "lead_created { deal_id: 'd" + k + "' account_id: 'cx" + k + "' }");
  add("s", "deal_stage_changed { deal_id: 'd" + k + "' to_stage: 'qualified' }");
  add("s2", "deal_stage_changed { deal_id: 'd" + k + "' to_stage: 'qualified' }");
  add("bad-stage", "deal_stage_changed { deal_id: 'd" + k + "' to_stage: 'nope' }");
  add("w", "deal_won { deal_id: 'd" + k + "' }");
  add("lost", "deal_lost { deal_id: 'dp" + k + "' reason: 'price' }");
  add("pa", "partner_agreed { account_id: 'px' }");
  add("o", "order_placed { order_id: 'o" + k + "' account_id: 'cx" + k + "' deal_id: 'd" + k +
               "' amount { amount_minor: 100 currency: 'EUR' } }");
  add("o2", "order_placed { order_id: 'o2" + k + "' account_id: 'cx" + k +
                "' amount { amount_minor: 5 currency: 'EUR' } }");
  add("bad-order", "order_placed { order_id: 'o3" + k + "' account_id: 'px' deal_id: 'd" + k +
                       "' amount { amount_minor: 5 currency: 'EUR' } }");
  add("od",
      "order_delayed { order_id: 'o" + k + "' new_due_at_us: " + std::to_string(at + kDay) + " }");
  add("oc", "order_completed { order_id: 'o2" + k + "' }");
  add("i", "invoice_issued { invoice_id: 'i" + k + "' account_id: 'cx" + k + "' order_id: 'o" + k +
               "' amount { amount_minor: 100 currency: 'EUR' } due_at_us: " +
               std::to_string(at + kDay) + " }");
  add("pay", "payment_received { account_id: 'cx" + k + "' invoice_id: 'i" + k +
                 "' amount { amount_minor: 60 currency: 'EUR' } }");
  add("pay2",
      "payment_received { account_id: 'cx" + k + "' amount { amount_minor: 1 currency: 'USD' } }");
  add("a", "activity { account_id: 'cx" + k +
               "' manager_id: 'mx' kind: ACTIVITY_KIND_CALL "
               "direction: DIRECTION_OUTBOUND }");
  add("f", "feedback_received { account_id: 'cx" + k + "' score: 9 order_id: 'o" + k + "' }");
  add("co", "complaint_opened { complaint_id: 'q" + k + "' account_id: 'cx" + k +
                "' severity: SEVERITY_HIGH }");
  add("cr", "complaint_resolved { complaint_id: 'q" + k + "' }");
  add("cs", "case_study_published { account_id: 'cx" + k + "' deal_id: 'd" + k + "' }");
  add("cs2", "case_study_published { account_id: 'px' }");
  add("pc", "partner_churned { account_id: 'px' }");
  add("ac", "account_churned { account_id: 'cx" + k + "' reason: 'gone' }");
  v.push_back(v[3]);                    // a duplicate of the client's creation
  v.push_back(v[6]);                    // and of the lead
  v.back().set_occurred_at_us(at + 1);  // now a conflict: rejected
  return v;
}

std::vector<v1::Event> Stream() {
  testing::GeneratorOptions o;
  o.max_events = 20000;
  std::vector<v1::Event> v = testing::GenerateStream(o);
  for (int i = 0; i < 3; ++i) {
    std::vector<v1::Event> more = EveryType(kT0 + (400 + i) * kDay);
    v.insert(v.end(), more.begin(), more.end());
  }
  return v;
}

// Validates `events` in batches of `batch` (1: without an overlay) the way
// the engine does in best-effort mode with a journal (validate the batch,
// then apply what passed), checking every event's refs against the
// reference right before it is applied. Returns the number applied.
// With `record_ids`, validation records the new ids in the state's log and
// the events are applied with ApplyRecordedEvent (what the engine's batches
// do).
// An activity's manager (a hint, not compared by ==) is the stored manager's
// index when validation gives one: a manager the batch creates has kNone.
void ExpectManagerRef(const v1::Event& e, const EventRefs& refs, const EngineState& s) {
  if (e.payload_case() != v1::Event::kActivity) {
    EXPECT_EQ(refs.manager, EventRefs::kNone) << e.DebugString();
  } else if (refs.manager != EventRefs::kNone) {
    EXPECT_EQ(refs.manager, s.managers.IndexOf(e.activity().manager_id())) << e.DebugString();
  }
}

int64_t IngestChecking(const std::vector<v1::Event>& events, size_t batch, EngineState* s,
                       bool record_ids = false) {
  int64_t applied = 0;
  for (size_t start = 0; start < events.size(); start += batch) {
    const size_t n = std::min(batch, events.size() - start);
    BatchOverlay overlay;
    if (record_ids) overlay.record_ids = &s->event_ids;
    std::vector<EventRefs> refs(n);
    std::vector<Verdict> verdicts(n);
    std::vector<bool> ok(n);
    for (size_t i = 0; i < n; ++i) {
      const v1::Event& e = events[start + i];
      ok[i] = ValidateEvent(e, EventFingerprint(e), *s, batch == 1 ? nullptr : &overlay,
                            &verdicts[i], &refs[i])
                  .ok();
      if (batch == 1 && ok[i] && verdicts[i] == Verdict::kApply) {
        EXPECT_EQ(refs[i], ResolveEventRefs(e, *s)) << e.DebugString();
        ExpectManagerRef(e, refs[i], *s);
        ApplyEvent(e, EventFingerprint(e), refs[i], s);
        ++applied;
      }
    }
    if (batch == 1) continue;
    for (size_t i = 0; i < n; ++i) {
      if (!ok[i] || verdicts[i] != Verdict::kApply) continue;
      const v1::Event& e = events[start + i];
      EXPECT_EQ(refs[i], ResolveEventRefs(e, *s)) << "index " << i << ": " << e.DebugString();
      ExpectManagerRef(e, refs[i], *s);
      if (record_ids) {
        // Validation handed on the log's own copy of the id.
        EXPECT_EQ(refs[i].stored_id.data(), s->event_ids.Stored(e.event_id()).data());
        EXPECT_EQ(refs[i].stored_id, e.event_id());
        ApplyRecordedEvent(e, refs[i], s);
      } else {
        ApplyEvent(e, EventFingerprint(e), refs[i], s);
      }
      ++applied;
    }
  }
  return applied;
}

// The reference path: every event resolved by lookups only.
std::string ReferenceSnapshot(const std::vector<v1::Event>& events) {
  auto s = NewState();
  for (const v1::Event& e : events) {
    Verdict v;
    if (!ValidateEvent(e, EventFingerprint(e), *s, nullptr, &v).ok() || v != Verdict::kApply)
      continue;
    ApplyEvent(e, EventFingerprint(e), s.get());
  }
  return WriteSnapshot(*s);
}

TEST(EventRefs, EqualTheLookupsForSingleEventsAndBatches) {
  const std::vector<v1::Event> events = Stream();
  const std::string reference = ReferenceSnapshot(events);
  for (const auto& [batch, record_ids] : std::vector<std::pair<size_t, bool>>{{1, false},
                                                                              {7, false},
                                                                              {500, false},
                                                                              {20000, false},
                                                                              {7, true},
                                                                              {500, true},
                                                                              {20000, true}}) {
    SCOPED_TRACE(::testing::Message() << batch << (record_ids ? " recording ids" : ""));
    auto s = NewState();
    const int64_t applied = IngestChecking(events, batch, s.get(), record_ids);
    // Every type was applied (and the bad ones were not), and the rows are
    // the reference's byte for byte.
    EXPECT_GT(applied, 20000);
    for (int i = 0; i < 3; ++i) {
      const std::string k = "-" + std::to_string(kT0 + (400 + i) * kDay);
      for (const char* id : {"t",    "m", "p",    "c",  "c2", "l",  "lp",  "lx", "sx", "s",
                             "s2",   "w", "lost", "pa", "o",  "o2", "od",  "oc", "i",  "pay",
                             "pay2", "a", "f",    "co", "cr", "cs", "cs2", "pc", "ac"}) {
        EXPECT_NE(s->event_ids.Find(id + k), nullptr) << id + k;
      }
      for (const char* id : {"bad-kind", "bad-lead", "bad-stage", "bad-order"}) {
        EXPECT_EQ(s->event_ids.Find(id + k), nullptr) << id + k;
      }
    }
    EXPECT_EQ(WriteSnapshot(*s), reference);
    // The derived kinds are the rows' kinds.
    ASSERT_EQ(s->account_kinds.size(), s->accounts.size());
    for (uint32_t i = 0; i < s->accounts.size(); ++i) {
      EXPECT_EQ(s->account_kinds[i], s->accounts.at(i).kind()) << i;
    }
  }
}

// The KPI facts intern an activity's manager id by this index: a stored
// manager gives its row index, one the same batch creates kNone (the facts
// then hash the id).
TEST(EventRefs, ActivityManagerIsTheStoredRowOrNone) {
  auto s = NewState();
  BatchOverlay overlay;
  const std::vector<v1::Event> batch = {
      Ev("m1", kT0, "manager_upserted { manager_id: 'm1' }"),
      Ev("a1", kT0, "account_upserted { account_id: 'a1' kind: ACCOUNT_KIND_CLIENT }"),
      Ev("x1", kT0,
         "activity { account_id: 'a1' manager_id: 'm1' kind: ACTIVITY_KIND_CALL "
         "direction: DIRECTION_OUTBOUND }")};
  std::vector<EventRefs> refs(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    Verdict v;
    ASSERT_TRUE(
        ValidateEvent(batch[i], EventFingerprint(batch[i]), *s, &overlay, &v, &refs[i]).ok());
  }
  EXPECT_EQ(refs[2].manager, EventRefs::kNone);
  for (size_t i = 0; i < batch.size(); ++i) {
    ApplyEvent(batch[i], EventFingerprint(batch[i]), refs[i], s.get());
  }
  const v1::Event later =
      Ev("x2", kT0 + 1,
         "activity { account_id: 'a1' manager_id: 'm1' kind: ACTIVITY_KIND_CALL "
         "direction: DIRECTION_INBOUND }");
  Verdict v;
  EventRefs r;
  ASSERT_TRUE(ValidateEvent(later, EventFingerprint(later), *s, nullptr, &v, &r).ok());
  EXPECT_EQ(r.manager, 0u);
  EXPECT_EQ(ResolveEventRefs(later, *s).manager, 0u);
}

TEST(EventRefs, EqualTheLookupsAfterARestore) {
  const std::vector<v1::Event> events = Stream();
  const std::vector<v1::Event> first(events.begin(), events.begin() + 15000);
  const std::vector<v1::Event> rest(events.begin() + 15000, events.end());
  for (const auto& [batch, record_ids] :
       std::vector<std::pair<size_t, bool>>{{1, false}, {500, false}, {500, true}}) {
    SCOPED_TRACE(::testing::Message() << batch << (record_ids ? " recording ids" : ""));
    auto s = NewState();
    IngestChecking(first, batch, s.get(), record_ids);
    auto restored = std::make_unique<EngineState>();
    ASSERT_TRUE(ReadSnapshot(WriteSnapshot(*s), restored.get()).ok());
    // The derived links start empty: validation falls back to the tables
    // until the first apply catches them up.
    EXPECT_TRUE(restored->deal_links.empty());
    EXPECT_TRUE(restored->account_kinds.empty());
    IngestChecking(rest, batch, restored.get(), record_ids);
    IngestChecking(rest, batch, s.get(), record_ids);
    EXPECT_EQ(restored->deal_links.size(), restored->deals.size());
    EXPECT_EQ(restored->account_kinds.size(), restored->accounts.size());
    EXPECT_EQ(WriteSnapshot(*restored), WriteSnapshot(*s));
  }
}

// What a log holds, for comparing two logs.
struct LogContents {
  std::string ids;
  std::vector<uint64_t> fingerprints;
  std::vector<uint32_t> lengths;
  size_t id_bytes;
  std::string chunked;  // ForEachIdChunk, back to back
  bool operator==(const LogContents& o) const {
    return ids == o.ids && fingerprints == o.fingerprints && lengths == o.lengths &&
           id_bytes == o.id_bytes && chunked == o.chunked;
  }
};
LogContents ContentsOf(const EventIdLog& log) {
  LogContents c{"", log.fingerprints(), log.lengths(), log.id_bytes(), ""};
  log.AppendIds(&c.ids);
  log.ForEachIdChunk(
      [&](absl::string_view chunk) { c.chunked.append(chunk.data(), chunk.size()); });
  return c;
}
// Ids of 100 bytes, so that a few thousand fill the log's 1 MiB blocks.
std::string LongId(int i) {
  std::string id = "id-" + std::to_string(i) + "-";
  id.resize(100, 'x');
  return id;
}

// A batch that fails takes back the ids validation recorded: the log is as
// if they had never been added (also across a new block, and after a Load
// that borrows), and adding them again gives the log of adding them once.
TEST(EventIdLog, TruncateUndoesAdd) {
  for (int loaded = 0; loaded < 2; ++loaded) {
    SCOPED_TRACE(loaded);
    std::string stored;  // outlives the logs that borrow it
    std::vector<uint32_t> lengths;
    std::vector<uint64_t> fps;
    EventIdLog log, reference;
    for (int i = 0; i < 9000; ++i) {
      stored += LongId(i);
      lengths.push_back(100);
      fps.push_back(static_cast<uint64_t>(i) * 7);
    }
    if (loaded == 1) {
      ASSERT_TRUE(log.Load(stored, lengths, fps, 128, /*borrow=*/true).ok());
      ASSERT_TRUE(reference.Load(stored, lengths, fps, 128, /*borrow=*/true).ok());
    } else {
      for (int i = 0; i < 9000; ++i) {
        log.Add(LongId(i), fps[static_cast<size_t>(i)]);
        reference.Add(LongId(i), fps[static_cast<size_t>(i)]);
      }
    }
    const LogContents before = ContentsOf(log);
    // 3000 more ids cross into a new block (9000 * 100 bytes fill 0.86 MiB).
    for (int i = 9000; i < 12000; ++i) log.Add(LongId(i), static_cast<uint64_t>(i));
    EXPECT_NE(log.Find(LongId(11999)), nullptr);
    log.Truncate(9000);
    EXPECT_EQ(ContentsOf(log), before);
    EXPECT_EQ(log.size(), 9000u);
    for (int i = 9000; i < 12000; ++i) {
      EXPECT_EQ(log.Find(LongId(i)), nullptr) << i;
      EXPECT_TRUE(log.Stored(LongId(i)).empty()) << i;
    }
    for (int i : {0, 4500, 8999}) {
      ASSERT_NE(log.Find(LongId(i)), nullptr) << i;
      EXPECT_EQ(*log.Find(LongId(i)), fps[static_cast<size_t>(i)]);
    }
    for (int i = 9000; i < 12000; ++i) {
      log.Add(LongId(i), static_cast<uint64_t>(i) + 1);
      reference.Add(LongId(i), static_cast<uint64_t>(i) + 1);
    }
    EXPECT_EQ(ContentsOf(log), ContentsOf(reference));
    log.Truncate(0);
    EXPECT_EQ(log.size(), 0u);
    EXPECT_EQ(log.id_bytes(), 0u);
    EXPECT_EQ(log.Find(LongId(0)), nullptr);
  }
}

// Load leaves room for the journal tail a restore replays next: adding up to
// LoadRoom(n) ids after a Load of n never moves the per-id vectors (which a
// doubling would copy whole), and the log then is the one of adding them all.
TEST(EventIdLog, LoadLeavesRoomForTheTail) {
  std::string stored;
  std::vector<uint32_t> lengths;
  std::vector<uint64_t> fps;
  EventIdLog reference;
  const int n = 5000;
  for (int i = 0; i < n; ++i) {
    stored += LongId(i);
    lengths.push_back(100);
    fps.push_back(static_cast<uint64_t>(i) * 3);
    reference.Add(LongId(i), fps.back());
  }
  EventIdLog log;
  ASSERT_TRUE(log.Load(stored, lengths, fps, 128, /*borrow=*/true).ok());
  const size_t room = EventIdLog::LoadRoom(n);
  ASSERT_GT(room, static_cast<size_t>(n));
  EXPECT_GE(log.fingerprints().capacity(), room);
  EXPECT_GE(log.lengths().capacity(), room);
  const uint64_t* fp_data = log.fingerprints().data();
  const uint32_t* len_data = log.lengths().data();
  for (size_t i = n; i < room; ++i) {
    const int id = static_cast<int>(i);
    log.Add(LongId(id), i);
    reference.Add(LongId(id), i);
  }
  EXPECT_EQ(log.fingerprints().data(), fp_data);
  EXPECT_EQ(log.lengths().data(), len_data);
  EXPECT_EQ(ContentsOf(log), ContentsOf(reference));
}

}  // namespace
}  // namespace rapport::test
