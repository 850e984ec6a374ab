// The persistent engine: round trips in every sync mode, the lock, snapshots
// and their crash safety, and injected I/O faults.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "lib/storage/env.h"
#include "lib/storage/store.h"
#include "lib/util/parallel.h"
#include "rapport/engine.h"
#include "tests/storage/storage_test_util.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

bool HasSuffix(const std::string& dir, const std::string& suffix) {
  for (const std::string& n : ListNames(dir)) {
    if (absl::EndsWith(n, suffix)) return true;
  }
  return false;
}

class EverySyncMode : public ::testing::TestWithParam<SyncMode> {};

TEST_P(EverySyncMode, ReopenGivesTheSameStateAndContinues) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(600, 25);
  const std::vector<std::string> ref = ReferenceStates(ops, ops.size());
  const size_t half = ops.size() / 2;
  {
    auto engine = Engine::Open(dir, Options(GetParam()));
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < half; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    ASSERT_EQ(*(*engine)->Snapshot(), ref[half]);
  }
  {
    auto engine = Engine::Open(dir, Options(GetParam()));
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_EQ(*(*engine)->Snapshot(), ref[half]);
    ASSERT_TRUE((*engine)->Checkpoint().ok());
    for (size_t i = half; i < ops.size(); ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
  }
  auto engine = Engine::Open(dir, Options(GetParam()));
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), ref.back());
  EXPECT_GT((*engine)->clock_us(), 0);
}

INSTANTIATE_TEST_SUITE_P(Storage, EverySyncMode,
                         ::testing::Values(SyncMode::kPerBatch, SyncMode::kGroupCommit,
                                           SyncMode::kOff));

// Acknowledgements are journaled like writes: after a reopen (no checkpoint
// in between) the acknowledged actions stay out of the outbox, the others are
// still there, and the state is the one the acknowledging engine had.
TEST_P(EverySyncMode, AcknowledgementsSurviveAReopen) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(2000, 50);
  std::vector<std::string> acked;
  std::string before_close;
  size_t left = 0;
  {
    auto engine = Engine::Open(dir, Options(GetParam()));
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < ops.size(); ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    const v1::ActionList outbox = (*engine)->Outbox();
    ASSERT_GE(outbox.actions_size(), 4) << "the stream must produce actions";
    for (int i = 0; i < outbox.actions_size(); i += 2)
      acked.push_back(outbox.actions(i).action_id());
    ASSERT_TRUE((*engine)->Acknowledge(acked).ok());
    ASSERT_TRUE((*engine)->Acknowledge(acked).ok()) << "again: a no-op, not journaled twice";
    left = static_cast<size_t>(outbox.actions_size()) - acked.size();
    before_close = *(*engine)->Snapshot();
  }
  auto engine = Engine::Open(dir, Options(GetParam()));
  ASSERT_TRUE(engine.ok()) << engine.status();
  const v1::ActionList outbox = (*engine)->Outbox();
  EXPECT_EQ(static_cast<size_t>(outbox.actions_size()), left);
  for (const v1::Action& a : outbox.actions()) {
    EXPECT_EQ(std::find(acked.begin(), acked.end(), a.action_id()), acked.end()) << a.action_id();
  }
  EXPECT_EQ(*(*engine)->Snapshot(), before_close);
  // An unknown id is refused and journals nothing: the next reopen works.
  EXPECT_EQ((*engine)->Acknowledge({acked.front(), "nope"}).code(), absl::StatusCode::kNotFound);
  engine = absl::StatusOr<std::unique_ptr<Engine>>();
  engine = Engine::Open(dir, Options(GetParam()));
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), before_close);
}

TEST(Storage, OnlyAcceptedEventsAreJournaledAndReplayAgrees) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  std::string expected;
  {
    auto engine = Engine::Open(dir, Options());
    ASSERT_TRUE(engine.ok()) << engine.status();
    Seed(**engine);
    // A duplicate, a rejected event and a good one in a best-effort batch.
    std::vector<v1::Event> batch = {
        Ev("seed-c1", kT0,
           "account_upserted { account_id: 'c1' kind: ACCOUNT_KIND_CLIENT owner_id: 'm2' "
           "segment: 'retail' tier: TIER_A }"),
        Ev("bad", kT0, "order_placed { order_id: 'o1' account_id: 'nobody' }"),
        Ev("a1", kT0 + kHour,
           "activity { account_id: 'c1' manager_id: 'm2' kind: ACTIVITY_KIND_CALL "
           "direction: DIRECTION_OUTBOUND }")};
    IngestOptions best;
    best.mode = BatchMode::kBestEffort;
    auto r = (*engine)->IngestBatch(batch, best);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->rejected_size(), 1);
    EXPECT_EQ(r->duplicates(), 1);
    // An atomic batch that fails journals nothing.
    EXPECT_FALSE((*engine)->IngestBatch(absl::MakeConstSpan(&batch[1], 1)).ok());
    expected = *(*engine)->Snapshot();
  }
  auto engine = Engine::Open(dir, Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), expected);
}

TEST(Storage, NewDirectoryTakesTheConfigAnExistingOneKeepsItsOwn) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  OpenOptions o = Options();
  o.config.set_client_churn_after_us(30 * kDay);
  {
    auto engine = Engine::Open(dir, o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    EXPECT_EQ((*engine)->config().client_churn_after_us(), 30 * kDay);
  }
  o.config.set_client_churn_after_us(99 * kDay);
  auto engine = Engine::Open(dir, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->config().client_churn_after_us(), 30 * kDay);
}

TEST(Storage, BadConfigForANewDirectoryIsRefused) {
  ScratchDir scratch;
  OpenOptions o = Options();
  o.config.set_client_churn_after_us(-5);
  auto engine = Engine::Open(scratch.Sub("db"), o);
  EXPECT_FALSE(engine.ok());
}

TEST(Storage, ASecondWriterIsLockedOutWithAClearError) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  auto first = Engine::Open(dir, Options());
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Engine::Open(dir, Options());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(second.status().message(), "LOCK")) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "another engine")) << second.status();
  first->reset();
  EXPECT_TRUE(Engine::Open(dir, Options()).ok());
}

TEST(Storage, CheckpointDropsCoveredSegmentsAndOlderSnapshots) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(1500, 20);
  const std::vector<std::string> ref = ReferenceStates(ops, ops.size());
  OpenOptions o = Options();
  o.segment_bytes = 4096;  // many segments
  {
    auto engine = Engine::Open(dir, o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < ops.size() / 2; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    EXPECT_GT(FilesWithPrefix(dir, "journal-").size(), 3u);
    ASSERT_TRUE((*engine)->Checkpoint().ok());
    EXPECT_EQ(FilesWithPrefix(dir, "journal-").size(), 1u);
    EXPECT_EQ(FilesWithPrefix(dir, "snapshot-").size(), 1u);
    for (size_t i = ops.size() / 2; i < ops.size(); ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    EXPECT_GT(FilesWithPrefix(dir, "journal-").size(), 3u);
  }
  auto engine = Engine::Open(dir, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), ref.back());
}

TEST(Storage, SnapshotPolicyBoundsTheJournal) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(2000, 50);
  const std::vector<std::string> ref = ReferenceStates(ops, ops.size());
  OpenOptions o = Options();
  o.snapshot_every_bytes = 20000;
  {
    auto engine = Engine::Open(dir, o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < ops.size(); ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
  }
  // Snapshots were taken along the way: the first one (seq 0) is gone.
  std::vector<std::string> snaps = FilesWithPrefix(dir, "snapshot-");
  ASSERT_EQ(snaps.size(), 1u);
  EXPECT_FALSE(absl::EndsWith(snaps[0], "snapshot-00000000000000000000.snap"));
  auto engine = Engine::Open(dir, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), ref.back());
}

TEST(Storage, InMemoryEngineHasNoCheckpoint) {
  auto engine = NewEngine();
  EXPECT_EQ(engine->Checkpoint().code(), absl::StatusCode::kFailedPrecondition);
}

// A crash after each file-system step of a checkpoint: reopening gives the
// state either from the old snapshot plus its journal or from the new one —
// the same state either way, and never a mix.
TEST(Storage, CrashAtEachStepOfACheckpointLoadsOldOrNew) {
  Ops ops(300, 10);
  const std::vector<std::string> ref = ReferenceStates(ops, ops.size());
  const size_t n = ops.size() / 2;
  bool completed = false;
  std::vector<bool> loaded_new;
  for (int64_t k = 0; k < 50 && !completed; ++k) {
    ScratchDir scratch;
    const std::string dir = scratch.Sub("db");
    FaultInjectionEnv env(Env::Default());
    OpenOptions o = Options();
    o.env = &env;
    {
      auto engine = Engine::Open(dir, o);
      ASSERT_TRUE(engine.ok()) << engine.status();
      for (size_t i = 0; i < n; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
      env.CrashAfter(k);
      absl::Status st = (*engine)->Checkpoint();
      completed = st.ok();
      if (!completed) {
        EXPECT_EQ(st.code(), absl::StatusCode::kAborted) << st;
      }
      // The "process" is dead: nothing more reaches the disk.
    }
    env.Clear();
    auto engine = Engine::Open(dir, Options());
    ASSERT_TRUE(engine.ok()) << "crash after step " << k << ": " << engine.status();
    ASSERT_EQ(*(*engine)->Snapshot(), ref[n]) << "crash after step " << k;
    EXPECT_FALSE(HasSuffix(dir, ".tmp"));
    EXPECT_EQ(FilesWithPrefix(dir, "snapshot-").size(), 1u);
    loaded_new.push_back(!absl::EndsWith(FilesWithPrefix(dir, "snapshot-")[0],
                                         "snapshot-00000000000000000000.snap"));
    ASSERT_TRUE(ops.Apply(**engine, n).ok());
  }
  EXPECT_TRUE(completed);
  // Early crashes keep the old snapshot, late ones the new.
  ASSERT_GE(loaded_new.size(), 4u);
  EXPECT_FALSE(loaded_new.front());
  EXPECT_TRUE(loaded_new.back());
}

TEST(Storage, HalfWrittenSnapshotTempFileIsIgnored) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(200, 10);
  const std::vector<std::string> ref = ReferenceStates(ops, ops.size());
  FaultInjectionEnv env(Env::Default());
  OpenOptions o = Options();
  o.env = &env;
  {
    auto engine = Engine::Open(dir, o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < ops.size(); ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    env.FailNext(FileOp::kAppend, absl::AbortedError("simulated crash mid-write"), ".tmp", 100);
    // The crash also stops the cleanup of the temp file.
    env.FailNext(FileOp::kRemove, absl::AbortedError("simulated crash"), ".tmp");
    EXPECT_EQ((*engine)->Checkpoint().code(), absl::StatusCode::kAborted);
    EXPECT_TRUE(HasSuffix(dir, ".tmp"));
  }
  auto engine = Engine::Open(dir, Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), ref.back());
  EXPECT_FALSE(HasSuffix(dir, ".tmp"));
}

TEST(Storage, DamagedSnapshotIsDataLossNamingTheFile) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  {
    auto engine = Engine::Open(dir, Options());
    ASSERT_TRUE(engine.ok());
    Seed(**engine);
    ASSERT_TRUE((*engine)->Checkpoint().ok());
  }
  const std::string snap = FilesWithPrefix(dir, "snapshot-")[0];
  std::string bytes = ReadAll(snap);
  for (size_t at :
       {size_t{3}, size_t{12}, size_t{20}, size_t{26}, bytes.size() / 2, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[at] ^= 0x10;
    WriteAll(snap, bad);
    auto engine = Engine::Open(dir, Options());
    ASSERT_FALSE(engine.ok()) << "flip at " << at;
    EXPECT_EQ(engine.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(absl::StrContains(engine.status().message(), snap)) << engine.status();
  }
  WriteAll(snap, bytes.substr(0, bytes.size() - 1));
  EXPECT_EQ(Engine::Open(dir, Options()).status().code(), absl::StatusCode::kDataLoss);
}

// A snapshot file over kMapFromBytes is mapped rather than read: damage to
// it gives the errors it gives when read (DecodeSnapshotFile's on the same
// bytes), the undamaged file loads the same state, and the mapping is gone
// once open returns.
TEST(Storage, DamagedMappedSnapshotIsDataLossAsWhenRead) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(40000, 5000);
  std::string state;
  {
    auto engine = Engine::Open(dir, Options(SyncMode::kOff));
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < ops.size(); ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    ASSERT_TRUE((*engine)->Checkpoint().ok());
    state = *(*engine)->Snapshot();
  }
  const std::string snap = FilesWithPrefix(dir, "snapshot-")[0];
  const std::string bytes = ReadAll(snap);
  ASSERT_GE(bytes.size(), kMapFromBytes) << "the test needs a snapshot that is mapped";
  {
    FileContents contents;
    ASSERT_TRUE(Env::Default()->ReadFile(snap, &contents).ok());
    ASSERT_TRUE(contents.mapped());
    // What the check at the end looks for.
    EXPECT_TRUE(absl::StrContains(ReadAll("/proc/self/maps"), snap));
  }
  std::vector<std::string> damaged;
  for (size_t at : {size_t{3}, size_t{20}, size_t{26}, bytes.size() / 2, bytes.size() - 1}) {
    damaged.push_back(bytes);
    damaged.back()[at] ^= 0x10;
  }
  damaged.push_back(bytes.substr(0, bytes.size() - 1));
  damaged.push_back(bytes.substr(0, bytes.size() - 4096));
  damaged.push_back(bytes + std::string(4096, '\0'));
  for (size_t k = 0; k < damaged.size(); ++k) {
    WriteAll(snap, damaged[k]);
    uint64_t seq = 0;
    absl::string_view payload;
    const absl::Status expected = DecodeSnapshotFile(snap, damaged[k], &seq, &payload);
    ASSERT_FALSE(expected.ok()) << k;
    auto engine = Engine::Open(dir, Options());
    ASSERT_FALSE(engine.ok()) << "damage " << k;
    EXPECT_EQ(engine.status(), expected) << "damage " << k;
  }
  WriteAll(snap, bytes);
  auto engine = Engine::Open(dir, Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), state);
  // Nothing of the file stays mapped (a later cut would raise SIGBUS on a
  // page still mapped, and the memory would be held for nothing).
  EXPECT_FALSE(absl::StrContains(ReadAll("/proc/self/maps"), snap));
}

// DecodeSnapshotFile checks a large payload's CRC on two threads, each half
// on its own, then joins the two CRCs: forced either way, it must accept
// exactly the files EncodeSnapshotFile wrote (empty, odd and even payloads,
// one over a MiB) and give the same checksum error for a flipped bit in
// either half or at the seam.
TEST(Storage, SnapshotChecksumOnTwoThreadsAgreesWithOne) {
  uint64_t x = 88172645463325252u;
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{7}, size_t{8}, size_t{9}, size_t{4099},
                   (size_t{1} << 20) + 5}) {
    std::string payload(n, '\0');
    for (char& c : payload) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x);
    }
    const std::string file = EncodeSnapshotFile(n * 3 + 1, payload);
    std::vector<std::string> flipped;
    for (size_t at :
         {size_t{8}, size_t{27}, 28 + n / 2 - 1, 28 + n / 2, 28 + n / 2 + 1, file.size() - 1}) {
      if (at >= file.size()) continue;  // an empty payload has no halves
      flipped.push_back(file);
      flipped.back()[at] ^= 0x04;
    }
    for (int mode : {1, 2}) {
      ScopedParallelMode parallel(mode);
      uint64_t seq = 0;
      absl::string_view got;
      const absl::Status st = DecodeSnapshotFile("f", file, &seq, &got);
      ASSERT_TRUE(st.ok()) << "payload of " << n << " bytes, mode " << mode << ": " << st;
      EXPECT_EQ(seq, n * 3 + 1);
      EXPECT_TRUE(got == payload);
      for (size_t k = 0; k < flipped.size(); ++k) {
        const absl::Status bad = DecodeSnapshotFile("f", flipped[k], &seq, &got);
        EXPECT_EQ(bad.code(), absl::StatusCode::kDataLoss) << n << " " << k << " " << mode;
        EXPECT_TRUE(absl::StrContains(bad.message(), "checksum mismatch")) << bad;
      }
    }
  }
}

TEST(Storage, JournalWithoutSnapshotIsDataLoss) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  {
    auto engine = Engine::Open(dir, Options());
    ASSERT_TRUE(engine.ok());
    Seed(**engine);
  }
  for (const std::string& s : FilesWithPrefix(dir, "snapshot-")) unlink(s.c_str());
  EXPECT_EQ(Engine::Open(dir, Options()).status().code(), absl::StatusCode::kDataLoss);
}

struct WriteFault {
  FileOp op;
  absl::StatusCode code;
  const char* text;
};

class WriteFaults : public ::testing::TestWithParam<WriteFault> {};

// ENOSPC or EIO on a journal write: the caller gets the error, nothing is
// applied, and the engine goes on once the fault is gone.
TEST_P(WriteFaults, ReachTheCallerAndChangeNothing) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(300, 10);
  const std::vector<std::string> ref = ReferenceStates(ops, ops.size());
  FaultInjectionEnv env(Env::Default());
  OpenOptions o = Options();
  o.env = &env;
  {
    auto engine = Engine::Open(dir, o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < 5; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    env.FailNext(GetParam().op, absl::Status(GetParam().code, GetParam().text), "journal-",
                 /*partial_bytes=*/37);
    absl::Status st = ops.Apply(**engine, 5);
    EXPECT_EQ(st.code(), GetParam().code) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), GetParam().text)) << st;
    EXPECT_EQ(*(*engine)->Snapshot(), ref[5]);
    for (size_t i = 5; i < 10; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
  }
  auto engine = Engine::Open(dir, Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), ref[10]);
}

INSTANTIATE_TEST_SUITE_P(
    Storage, WriteFaults,
    ::testing::Values(WriteFault{FileOp::kAppend, absl::StatusCode::kResourceExhausted,
                                 "No space left on device"},
                      WriteFault{FileOp::kAppend, absl::StatusCode::kUnavailable,
                                 "Input/output error"}));

// A failed fdatasync (per-batch mode), of a batch (op 6) or of a clock move
// (op 9): the error reaches the caller; the handle refuses every later call,
// reads included (the batch's fdatasync ran while it was applied, so the
// state may hold it), with a FAILED_PRECONDITION that names the fdatasync
// and says to reopen; and reopening recovers exactly the acknowledged writes.
// (Until per-batch syncs overlapped the apply, reads went on after the
// failure: nothing had been applied.)
TEST(Storage, FailedFsyncRefusesEveryCallUntilReopened) {
  for (const size_t failing : {size_t{6}, size_t{9}}) {
    for (absl::StatusCode code :
         {absl::StatusCode::kUnavailable, absl::StatusCode::kResourceExhausted}) {
      SCOPED_TRACE(absl::StrCat("op ", failing, ", ", absl::StatusCodeToString(code)));
      ScratchDir scratch;
      const std::string dir = scratch.Sub("db");
      Ops ops(300, 10);
      ASSERT_EQ(ops.is_advance(failing), failing == 9);
      const std::vector<std::string> ref = ReferenceStates(ops, ops.size());
      FaultInjectionEnv env(Env::Default());
      OpenOptions o = Options();
      o.env = &env;
      {
        auto engine = Engine::Open(dir, o);
        ASSERT_TRUE(engine.ok()) << engine.status();
        for (size_t i = 0; i < failing; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
        env.FailNext(FileOp::kSync, absl::Status(code, "fdatasync: injected"), "journal-");
        absl::Status st = ops.Apply(**engine, failing);
        EXPECT_EQ(st.code(), code) << st;
        EXPECT_TRUE(absl::StrContains(st.message(), "fdatasync: injected")) << st;
        for (int retry = 0; retry < 3; ++retry) {
          EXPECT_EQ(ops.Apply(**engine, failing).code(), absl::StatusCode::kFailedPrecondition);
        }
        // An earlier batch again: its events are duplicates, which would
        // journal nothing, yet it is refused too.
        EXPECT_EQ(ops.Apply(**engine, 0).code(), absl::StatusCode::kFailedPrecondition);
        EXPECT_EQ((*engine)->Advance(kT0 + 900 * kDay).status().code(),
                  absl::StatusCode::kFailedPrecondition);
        EXPECT_EQ((*engine)->Checkpoint().code(), absl::StatusCode::kFailedPrecondition);
        absl::StatusOr<std::string> read = (*engine)->Snapshot();
        EXPECT_EQ(read.status().code(), absl::StatusCode::kFailedPrecondition) << read.status();
        EXPECT_TRUE(absl::StrContains(read.status().message(), "fdatasync: injected"))
            << read.status();
        EXPECT_TRUE(absl::StrContains(read.status().message(), "reopen")) << read.status();
      }
      auto engine = Engine::Open(dir, Options());
      ASSERT_TRUE(engine.ok()) << engine.status();
      EXPECT_EQ(*(*engine)->Snapshot(), ref[failing]);
      ASSERT_TRUE(ops.Apply(**engine, failing).ok());
      EXPECT_EQ(*(*engine)->Snapshot(), ref[failing + 1]);
    }
  }
}

// The batch whose fdatasync failed is applied in memory (the sync ran during
// the apply), but no read shows it: every read that returns a status
// refuses, every other read answers empty, and no write reveals it either
// (a duplicate of one of its events is refused, not counted as a
// duplicate). Both ingest paths: IngestBatch and Ingest of one event.
TEST(Storage, FailedPerBatchFsyncLeavesNoReadShowingTheBatch) {
  for (const bool single : {false, true}) {
    SCOPED_TRACE(single ? "Ingest" : "IngestBatch");
    ScratchDir scratch;
    FaultInjectionEnv env(Env::Default());
    OpenOptions o = Options();
    o.env = &env;
    auto opened = Engine::Open(scratch.Sub("db"), o);
    ASSERT_TRUE(opened.ok()) << opened.status();
    Engine& engine = **opened;
    Seed(engine);
    // Before the failure the same reads show the state (so that the checks
    // below could fail).
    ASSERT_GT(engine.events_accepted(), 0);
    ASSERT_GT(engine.config().ByteSizeLong(), 0u);
    ASSERT_FALSE(engine.DealsByStage().empty());
    int64_t accounts = 0;
    for (int64_t n : engine.AccountStatusCounts()) accounts += n;
    ASSERT_GT(accounts, 0);
    ASSERT_TRUE(engine.GetManager("m1").ok());
    ASSERT_EQ(engine.GetManager("m9").status().code(), absl::StatusCode::kNotFound);
    ASSERT_TRUE(engine.Usable().ok());
    const std::vector<v1::Event> batch = {
        Ev("new-m9", kT0 + kHour, "manager_upserted { manager_id: 'm9' team_id: 't1' }"),
        Ev("new-a1", kT0 + kHour,
           "activity { account_id: 'c1' manager_id: 'm2' kind: ACTIVITY_KIND_CALL "
           "direction: DIRECTION_OUTBOUND }")};
    env.FailNext(FileOp::kSync, absl::UnavailableError("fdatasync: Input/output error"),
                 "journal-");
    absl::Status failed =
        single ? engine.Ingest(batch[0]).status() : engine.IngestBatch(batch).status();
    ASSERT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;

    auto refused = [](const absl::Status& st) {
      return st.code() == absl::StatusCode::kFailedPrecondition &&
             absl::StrContains(st.message(), "fdatasync") &&
             absl::StrContains(st.message(), "reopen");
    };
    EXPECT_TRUE(refused(engine.GetManager("m9").status())) << engine.GetManager("m9").status();
    EXPECT_TRUE(refused(engine.GetManager("m1").status()));
    EXPECT_TRUE(refused(engine.GetAccount("c1").status()));
    EXPECT_TRUE(refused(engine.GetDeal("d1").status()));
    EXPECT_TRUE(refused(engine.GetOrder("o1").status()));
    EXPECT_TRUE(refused(engine.GetTeam("t1").status()));
    EXPECT_TRUE(refused(engine.Usable()));
    EXPECT_TRUE(refused(engine.Snapshot().status()));
    EXPECT_TRUE(refused(engine.Grades(kT0 + kDay).status()));
    v1::KpiQuery q;
    q.set_start_us(kT0);
    q.set_end_us(kT0 + kDay);
    EXPECT_TRUE(refused(engine.Kpis(q).status()));
    EXPECT_TRUE(refused(engine.KpiPartial(q).status()));
    v1::KpiReport report;
    EXPECT_TRUE(refused(engine.KpisInto(q, &report)));
    EXPECT_EQ(engine.events_accepted(), 0);
    EXPECT_EQ(engine.clock_us(), 0);
    EXPECT_EQ(engine.config().ByteSizeLong(), 0u);
    EXPECT_EQ(engine.Outbox().actions_size(), 0);
    EXPECT_TRUE(engine.AccountsByStatus(v1::ACCOUNT_STATUS_ACTIVE).empty());
    EXPECT_TRUE(engine.DealsByStage().empty());
    EXPECT_TRUE(engine.StuckDeals(kT0 + 900 * kDay).empty());
    for (int64_t n : engine.AccountStatusCounts()) EXPECT_EQ(n, 0);
    EXPECT_TRUE(refused(engine.Ingest(batch[0]).status()));
    EXPECT_TRUE(refused(engine.IngestBatch(batch).status()));
    EXPECT_TRUE(refused(engine.Acknowledge({})));
    EXPECT_TRUE(refused(engine.Advance(kT0).status()));  // a no-op move is refused too
  }
}

// Per-batch mode: the batch's fdatasync runs while the batch is applied, but
// the writer holds the engine's lock until it is done, so a reader never sees
// a batch that is not durable yet. The journal's fdatasync is held back by
// the Env until the reader has had time to (wrongly) read: it must still be
// waiting then, and see the batch once the fdatasync is done.
TEST(Storage, PerBatchReadersWaitForTheBatchsFdatasync) {
  ScratchDir scratch;
  FaultInjectionEnv env(Env::Default());
  OpenOptions o = Options();
  o.env = &env;
  auto opened = Engine::Open(scratch.Sub("db"), o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Engine& engine = **opened;
  Seed(engine);
  absl::Notification sync_started, release_sync;
  env.SetHook([&](FileOp op, const std::string& path, absl::string_view) {
    if (op == FileOp::kSync && absl::StrContains(path, "journal-") &&
        !sync_started.HasBeenNotified()) {
      sync_started.Notify();
      release_sync.WaitForNotification();
    }
    return Fault{};
  });
  std::thread writer([&] {
    EXPECT_TRUE(
        engine.Ingest(Ev("new-m9", kT0, "manager_upserted { manager_id: 'm9' team_id: 't1' }"))
            .ok());
  });
  sync_started.WaitForNotification();
  std::atomic<bool> read_done{false};
  absl::StatusOr<v1::Manager> seen;
  std::thread reader([&] {
    seen = engine.GetManager("m9");
    read_done.store(true);
  });
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(read_done.load()) << "a reader got in before the batch was durable";
  release_sync.Notify();
  writer.join();
  reader.join();
  EXPECT_TRUE(seen.ok()) << seen.status();
  env.Clear();
}

TEST(Storage, FailedRenameInCheckpointReachesTheCallerAndKeepsTheJournal) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  Ops ops(300, 10);
  const std::vector<std::string> ref = ReferenceStates(ops, ops.size());
  FaultInjectionEnv env(Env::Default());
  OpenOptions o = Options();
  o.env = &env;
  {
    auto engine = Engine::Open(dir, o);
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (size_t i = 0; i < 8; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
    env.FailNext(FileOp::kRename, absl::UnavailableError("rename: Input/output error"));
    absl::Status st = (*engine)->Checkpoint();
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "Input/output error")) << st;
    EXPECT_FALSE(HasSuffix(dir, ".tmp"));
    env.FailNext(FileOp::kSync, absl::ResourceExhaustedError("No space left on device"), ".tmp");
    EXPECT_EQ((*engine)->Checkpoint().code(), absl::StatusCode::kResourceExhausted);
    // The engine is still writable.
    for (size_t i = 8; i < 12; ++i) ASSERT_TRUE(ops.Apply(**engine, i).ok());
  }
  auto engine = Engine::Open(dir, Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(*(*engine)->Snapshot(), ref[12]);
}

// ReadFile reads small files into a buffer that is not zero-filled first and
// maps large ones (kMapFromBytes and up): what it hands back must be exactly
// the file's bytes (the reference: ReadAll, through stdio), for an empty
// file, a small one, one with zero bytes in it, one each side of the mapping
// threshold and one over the read size that does not end on a page; a
// failed read leaves nothing behind.
TEST(Storage, ReadFileGivesExactlyTheFilesBytes) {
  ScratchDir scratch;
  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 7));
  const std::vector<std::string> files = {"",
                                          "x",
                                          std::string("a\0b\0", 4),
                                          big,
                                          big.substr(0, kMapFromBytes - 1),
                                          big.substr(1, kMapFromBytes)};
  Env* env = Env::Default();
  FileContents contents;
  for (size_t k = 0; k < files.size(); ++k) {
    const std::string path = scratch.Sub(absl::StrCat("f", k));
    WriteAll(path, files[k]);
    ASSERT_EQ(ReadAll(path), files[k]);
    ASSERT_TRUE(env->ReadFile(path, &contents).ok());
    EXPECT_EQ(contents.size(), files[k].size()) << k;
    EXPECT_TRUE(contents.view() == files[k]) << "file " << k << " reads back different bytes";
    // Both ways are under test: the machine has the memory for 3 MiB.
    EXPECT_EQ(contents.mapped(), files[k].size() >= kMapFromBytes) << k;
  }
  // Shorter after a longer one: no tail of the previous buffer shows.
  ASSERT_TRUE(env->ReadFile(scratch.Sub("f1"), &contents).ok());
  EXPECT_EQ(contents.view(), "x");

  // A mapping moves with its contents, and is given up by Clear and by a
  // later read into the same contents.
  ASSERT_TRUE(env->ReadFile(scratch.Sub("f3"), &contents).ok());
  ASSERT_TRUE(contents.mapped());
  FileContents moved = std::move(contents);
  EXPECT_TRUE(moved.mapped());
  EXPECT_TRUE(moved.view() == big);
  EXPECT_EQ(contents.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_FALSE(contents.mapped());
  ASSERT_TRUE(env->ReadFile(scratch.Sub("f1"), &moved).ok());
  EXPECT_FALSE(moved.mapped());
  EXPECT_EQ(moved.view(), "x");
  ASSERT_TRUE(env->ReadFile(scratch.Sub("f3"), &moved).ok());
  moved.Clear();
  EXPECT_FALSE(moved.mapped());
  EXPECT_EQ(moved.size(), 0u);

  absl::Status missing = env->ReadFile(scratch.Sub("missing"), &contents);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;
  EXPECT_EQ(contents.size(), 0u);
  FaultInjectionEnv faulty(env);
  ASSERT_TRUE(faulty.ReadFile(scratch.Sub("f3"), &contents).ok());
  EXPECT_TRUE(contents.view() == big);
  faulty.FailNext(FileOp::kRead, absl::UnavailableError("injected"));
  EXPECT_EQ(faulty.ReadFile(scratch.Sub("f3"), &contents).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(contents.size(), 0u);
}

TEST(Storage, OpenReportsFileSystemErrors) {
  ScratchDir scratch;
  auto engine = Engine::Open(scratch.Sub("missing-parent/db"), Options());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kNotFound) << engine.status();
  EXPECT_TRUE(absl::StrContains(engine.status().message(), "missing-parent")) << engine.status();
  WriteAll(scratch.Sub("file"), "x");
  EXPECT_FALSE(Engine::Open(scratch.Sub("file"), Options()).ok());
  EXPECT_EQ(Engine::Open("", Options()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Storage, GroupCommitSharesSyncsAcrossThreads) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  {
    auto engine = Engine::Open(dir, Options(SyncMode::kGroupCommit));
    ASSERT_TRUE(engine.ok()) << engine.status();
    Seed(**engine);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          auto r = (*engine)->Ingest(
              Ev(absl::StrCat("a-", t, "-", i), kT0 + i,
                 "activity { account_id: 'c1' manager_id: 'm2' kind: ACTIVITY_KIND_CALL "
                 "direction: DIRECTION_OUTBOUND }"));
          if (!r.ok()) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
  }
  auto engine = Engine::Open(dir, Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->events_accepted(), 7 + kThreads * kPerThread);
}

TEST(Storage, GroupCommitSyncFailureReachesTheWriter) {
  ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  FaultInjectionEnv env(Env::Default());
  OpenOptions o = Options(SyncMode::kGroupCommit);
  o.env = &env;
  auto engine = Engine::Open(dir, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  Seed(**engine);
  env.FailNext(FileOp::kSync, absl::UnavailableError("fdatasync: Input/output error"), "journal-");
  auto r =
      (*engine)->Ingest(Ev("a1", kT0,
                           "activity { account_id: 'c1' manager_id: 'm2' kind: ACTIVITY_KIND_CALL "
                           "direction: DIRECTION_OUTBOUND }"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  auto again =
      (*engine)->Ingest(Ev("a2", kT0,
                           "activity { account_id: 'c1' manager_id: 'm2' kind: ACTIVITY_KIND_CALL "
                           "direction: DIRECTION_OUTBOUND }"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
}

}  // namespace
}  // namespace rapport::test
