// Recovery from damaged journals: a cut at every byte of the last records is
// a clean end; a flipped bit anywhere in a record is always detected.
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/lifecycle/apply.h"
#include "lib/storage/journal.h"
#include "lib/storage/persistent_engine.h"
#include "lib/storage/snapshot.h"
#include "lib/util/parallel.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"
#include "tests/storage/storage_test_util.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

struct Built {
  std::string segment;               // path of the segment holding the records
  std::vector<uint64_t> boundaries;  // offsets of each record, then the file size
  uint64_t last_seq = 0;             // the number of the segment's last record
};

// A directory with ops [0, n) journaled in one segment (no snapshot after the
// first), closed.
Built Build(const std::string& dir, const Ops& ops, size_t n) {
  {
    auto engine = Engine::Open(dir, Options(SyncMode::kOff));
    EXPECT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < n; ++i) EXPECT_TRUE(ops.Apply(**engine, i).ok());
  }
  Built b;
  for (const std::string& path : FilesWithPrefix(dir, "journal-")) {
    std::string data = ReadAll(path);
    if (data.empty()) continue;
    b.segment = path;
    journal::SegmentReader reader(data);
    journal::Record r;
    std::string why;
    while (reader.Next(&r, &why) == journal::ReadStatus::kRecord) {
      b.boundaries.push_back(r.offset);
      b.last_seq = r.seq;
    }
    b.boundaries.push_back(data.size());
  }
  return b;
}

// The same directory with the segment's bytes replaced.
std::string Variant(const ScratchDir& scratch, const std::string& dir, const Built& b,
                    const std::string& bytes, int k) {
  std::string copy = scratch.Sub(absl::StrCat("v", k));
  ScratchDir::RemoveAll(copy);
  CopyDir(dir, copy);
  WriteAll(copy + b.segment.substr(dir.size()), bytes);
  return copy;
}

TEST(JournalRecovery, AcknowledgeRecordsRoundTripAndRejectGarbage) {
  const std::vector<std::string> ids = {"a", std::string(300, 'x'), "M1:0123"};
  std::string out;
  journal::AppendAcknowledgeRecord(7, ids, &out);
  journal::SegmentReader reader(out);
  journal::Record r;
  std::string why;
  ASSERT_EQ(reader.Next(&r, &why), journal::ReadStatus::kRecord) << why;
  EXPECT_EQ(r.kind, journal::RecordKind::kAcknowledge);
  EXPECT_EQ(r.seq, 7u);
  absl::StatusOr<std::vector<std::string>> back = journal::DecodeAcknowledge(r.payload);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, ids);
  for (const std::string& bad : {std::string(),
                                 std::string("\x0a\x05"
                                             "ab",
                                             4),
                                 std::string("\x12\x01"
                                             "a",
                                             3),
                                 std::string("\x0a\x00", 2)}) {
    absl::StatusOr<std::vector<std::string>> d = journal::DecodeAcknowledge(bad);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << absl::CEscape(bad);
  }
}

TEST(JournalRecovery, CutAtEveryByteOfTheLastRecordsIsACleanEnd) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(60, 3);
  const size_t n = 9;
  const std::vector<std::string> ref = ReferenceStates(ops, n);
  Built b = Build(dir, ops, n);
  ASSERT_EQ(b.boundaries.size(), n + 1) << "one record per op";
  const std::string full = ReadAll(b.segment);
  int cuts = 0;
  for (uint64_t cut = b.boundaries[n - 3]; cut <= full.size(); ++cut) {
    std::string copy = Variant(scratch, dir, b, full.substr(0, cut), 0);
    size_t complete = 0;
    while (complete < n && b.boundaries[complete + 1] <= cut) ++complete;
    {
      auto engine = Engine::Open(copy, Options());
      ASSERT_TRUE(engine.ok()) << "cut at " << cut << ": " << engine.status();
      ASSERT_EQ(*(*engine)->Snapshot(), ref[complete]) << "cut at " << cut;
      // The engine goes on from there, and a second recovery agrees.
      if (complete < n) {
        ASSERT_TRUE(ops.Apply(**engine, complete).ok()) << "cut at " << cut;
      }
    }
    auto again = Engine::Open(copy, Options());
    ASSERT_TRUE(again.ok()) << "reopen after cut at " << cut << ": " << again.status();
    ASSERT_EQ(*(*again)->Snapshot(), ref[std::min(complete + 1, n)]) << "cut at " << cut;
    ++cuts;
  }
  EXPECT_GT(cuts, 100);
}

TEST(JournalRecovery, BitFlipInEveryByteOfARecordIsDetected) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(40, 2);
  const size_t n = 6;
  const std::vector<std::string> ref = ReferenceStates(ops, n);
  Built b = Build(dir, ops, n);
  ASSERT_EQ(b.boundaries.size(), n + 1);
  const std::string full = ReadAll(b.segment);
  const std::string name = b.segment.substr(dir.size() + 1);
  int flips = 0;
  // A record in the middle and the last one (which a torn tail would be).
  for (size_t rec : {n - 3, n - 1}) {
    const uint64_t begin = b.boundaries[rec];
    for (uint64_t at = begin; at < b.boundaries[rec + 1]; ++at) {
      std::string bytes = full;
      bytes[at] = static_cast<char>(bytes[at] ^ (1 << (at % 8)));
      std::string copy = Variant(scratch, dir, b, bytes, 1);
      auto engine = Engine::Open(copy, Options());
      ASSERT_FALSE(engine.ok()) << "flip at " << at << " went unnoticed";
      EXPECT_EQ(engine.status().code(), absl::StatusCode::kDataLoss);
      EXPECT_TRUE(absl::StrContains(engine.status().message(), name)) << engine.status();
      EXPECT_TRUE(absl::StrContains(engine.status().message(), absl::StrCat("offset ", begin)))
          << engine.status();
      ++flips;
      // Point-in-time recovery keeps the records before the damage (checked
      // on every 5th byte to keep the test fast).
      if (at % 5 == 0) {
        OpenOptions pit = Options();
        pit.point_in_time_recovery = true;
        auto recovered = Engine::Open(copy, pit);
        ASSERT_TRUE(recovered.ok()) << recovered.status();
        ASSERT_EQ(*(*recovered)->Snapshot(), ref[rec]) << "flip at " << at;
        bool set_aside = false;
        for (const std::string& f : ListNames(copy)) set_aside |= absl::EndsWith(f, ".corrupt");
        EXPECT_TRUE(set_aside);
        // New writes after point-in-time recovery survive a normal reopen.
        ASSERT_TRUE(ops.Apply(**recovered, rec).ok());
        recovered->reset();
        auto reopened = Engine::Open(copy, Options());
        ASSERT_TRUE(reopened.ok()) << reopened.status();
        ASSERT_EQ(*(*reopened)->Snapshot(), ref[rec + 1]);
      }
    }
  }
  EXPECT_GT(flips, 100);
}

// Open parses the next events records on a second thread while one replays
// (forced here on a small segment, hundreds of records long, so that the
// parse runs as far ahead as it may and waits): the same state as on one
// thread, the same error at damage in the middle (a flipped payload bit; a
// payload that checksums well but is not an EventBatch), and point-in-time
// recovery keeps exactly the records before it.
TEST(JournalRecovery, ReadAheadReplayAgreesWithOneThread) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(3000, 4);
  const size_t n = ops.size();
  Built b = Build(dir, ops, n);
  const size_t records = b.boundaries.size() - 1;
  ASSERT_GT(records, size_t{600});
  const std::string full = ReadAll(b.segment);
  // An events record in the middle.
  size_t rec = records / 2;
  while (static_cast<uint8_t>(full[b.boundaries[rec] + 20]) !=
         static_cast<uint8_t>(journal::RecordKind::kEvents)) {
    ++rec;
  }
  const uint64_t payload_at = b.boundaries[rec] + journal::kHeaderSize;
  std::string flipped = full;
  flipped[payload_at + 3] = static_cast<char>(flipped[payload_at + 3] ^ 0x10);
  std::string unparsable = full;
  for (uint64_t at = payload_at; at < b.boundaries[rec + 1]; ++at) unparsable[at] = '\xff';
  journal::FixChecksums(&unparsable);
  std::string whole;
  {
    auto engine = Engine::Create(v1::EngineConfig());
    ASSERT_TRUE(engine.ok());
    for (size_t i = 0; i < n; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    whole = *(*engine)->Snapshot();
  }
  // The records before the damaged one: that journal cut there.
  std::string before_damage;
  {
    auto engine =
        Engine::Open(Variant(scratch, dir, b, full.substr(0, b.boundaries[rec]), 2), Options());
    ASSERT_TRUE(engine.ok()) << engine.status();
    before_damage = *(*engine)->Snapshot();
    ASSERT_FALSE(before_damage == whole);
  }

  std::vector<std::string> errors[2];
  for (int mode : {1, 2}) {
    SCOPED_TRACE(mode);
    ScopedParallelMode parallel(mode);
    {
      auto engine = Engine::Open(Variant(scratch, dir, b, full, 0), Options());
      ASSERT_TRUE(engine.ok()) << engine.status();
      EXPECT_TRUE(*(*engine)->Snapshot() == whole);
    }
    for (const std::string* bytes : {&flipped, &unparsable}) {
      const std::string copy = Variant(scratch, dir, b, *bytes, 1);
      auto engine = Engine::Open(copy, Options());
      ASSERT_FALSE(engine.ok());
      EXPECT_EQ(engine.status().code(), absl::StatusCode::kDataLoss);
      errors[mode - 1].push_back(std::string(engine.status().message()));
      OpenOptions pit = Options();
      pit.point_in_time_recovery = true;
      auto recovered = Engine::Open(copy, pit);
      ASSERT_TRUE(recovered.ok()) << recovered.status();
      EXPECT_TRUE(*(*recovered)->Snapshot() == before_damage);
    }
  }
  EXPECT_EQ(errors[0], errors[1]);
  ASSERT_EQ(errors[1].size(), 2u);
  EXPECT_TRUE(absl::StrContains(errors[1][0], "checksum mismatch")) << errors[1][0];
  EXPECT_TRUE(absl::StrContains(errors[1][1], "do not parse")) << errors[1][1];
}

// A record that frames and checksums well but does not replay (here its
// second event names a deal nobody created) is damage like any other: it
// replays whole or not at all, so point-in-time recovery keeps none of its
// events, not the first one that would fit alone.
TEST(JournalRecovery, RecordThatDoesNotReplayLeavesNoneOfItsEvents) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(40, 2);
  const size_t n = 6;
  const std::vector<std::string> ref = ReferenceStates(ops, n);
  Built b = Build(dir, ops, n);
  std::string bytes = ReadAll(b.segment);
  ASSERT_GT(b.last_seq, 0u);
  const v1::Event fits = Ev("fresh-manager", kT0, "manager_upserted { manager_id: 'fresh-m' }");
  const v1::Event does_not =
      Ev("stage-of-nothing", kT0, "deal_stage_changed { deal_id: 'no-such-deal' to_stage: 'x' }");
  const std::vector<const v1::Event*> events = {&fits, &does_not};
  journal::AppendEventsRecord(b.last_seq + 1, events, &bytes);
  WriteAll(b.segment, bytes);

  auto engine = Engine::Open(dir, Options());
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(engine.status().message(), "does not replay")) << engine.status();
  EXPECT_TRUE(absl::StrContains(engine.status().message(), "no-such-deal")) << engine.status();

  OpenOptions pit = Options();
  pit.point_in_time_recovery = true;
  auto recovered = Engine::Open(dir, pit);
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_FALSE((*recovered)->GetManager("fresh-m").ok());
  EXPECT_TRUE(*(*recovered)->Snapshot() == ref[n]) << "the state is not the last good record's";
}

// Open fills a restored state's derived links up front (CatchUpDerivedLinks,
// on one thread or two): they must be what ApplyEvent's catch-up appends at
// the first event after a plain restore.
TEST(JournalRecovery, DerivedLinksAreTheCatchUpsOwn) {
  testing::GeneratorOptions o;
  o.max_events = 6000;
  const std::vector<v1::Event> events = testing::GenerateStream(o);
  auto engine = Engine::Create(Engine::DefaultConfig());
  ASSERT_TRUE(engine.ok());
  ASSERT_TRUE((*engine)->IngestBatch(events).ok());
  auto bytes = (*engine)->Snapshot();
  ASSERT_TRUE(bytes.ok());

  // The reference: a manager upsert creates no deal, order, complaint or
  // account, so the links after it are the catch-up's alone.
  EngineState caught_up;
  ASSERT_TRUE(ReadSnapshot(*bytes, &caught_up).ok());
  v1::Event e;
  e.set_event_id("links-test-manager");
  e.set_occurred_at_us(caught_up.clock_us);
  e.mutable_manager_upserted()->set_manager_id("links-test-manager");
  ApplyEvent(e, 1, &caught_up);
  ASSERT_GT(caught_up.deal_links.size(), 0u);
  ASSERT_GT(caught_up.order_links.size(), 0u);
  ASSERT_GT(caught_up.account_kinds.size(), 0u);

  for (bool parallel : {false, true}) {
    SCOPED_TRACE(parallel);
    EngineState s;
    ASSERT_TRUE(ReadSnapshot(*bytes, &s).ok());
    CatchUpDerivedLinks(&s, parallel);
    ASSERT_EQ(s.deal_links.size(), caught_up.deal_links.size());
    for (size_t i = 0; i < s.deal_links.size(); ++i) {
      EXPECT_EQ(s.deal_links[i].account, caught_up.deal_links[i].account) << i;
      EXPECT_EQ(s.deal_links[i].pipeline, caught_up.deal_links[i].pipeline) << i;
    }
    ASSERT_EQ(s.order_links.size(), caught_up.order_links.size());
    for (size_t i = 0; i < s.order_links.size(); ++i) {
      EXPECT_EQ(s.order_links[i].account, caught_up.order_links[i].account) << i;
      EXPECT_EQ(s.order_links[i].deal, caught_up.order_links[i].deal) << i;
    }
    EXPECT_EQ(s.complaint_accounts, caught_up.complaint_accounts);
    EXPECT_EQ(s.account_kinds, caught_up.account_kinds);
    // Applying the same event now catches up nothing and gives the same state.
    ApplyEvent(e, 1, &s);
    EXPECT_EQ(WriteSnapshot(s), WriteSnapshot(caught_up));
  }
}

}  // namespace
}  // namespace rapport::test
