// One engine shared by threads: one writer, several readers, no torn reads.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/kpi/cells.h"
#include "lib/util/parallel.h"
#include "lib/util/shared_mutex.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/snapshot.pb.h"
#include "tests/storage/storage_test_util.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

// RunBoth's two ways give the same effects; the parallel way runs `a` on
// another thread, at the same time as `b` (each waits to see the other).
TEST(Parallel, RunBothRunsBothEitherWay) {
  for (const bool parallel : {false, true}) {
    std::atomic<int> arrived{0};
    std::thread::id a_thread, b_thread;
    auto meet = [&] {
      ++arrived;
      if (!parallel) return;
      while (arrived.load() < 2) std::this_thread::yield();
    };
    RunBoth(
        parallel,
        [&] {
          a_thread = std::this_thread::get_id();
          meet();
        },
        [&] {
          b_thread = std::this_thread::get_id();
          meet();
        });
    EXPECT_EQ(arrived.load(), 2);
    EXPECT_EQ(b_thread, std::this_thread::get_id());
    EXPECT_EQ(a_thread != b_thread, parallel);
  }
}

// A writer that waits holds back readers that come after it, so readers that
// overlap without pause (a busy dashboard) cannot keep ingest out for ever.
// With a reader-preferring lock the new reader would always get in.
TEST(SharedMutex, WaitingWriterHoldsBackNewReaders) {
  SharedMutex mu;
  mu.ReaderLock();
  std::atomic<bool> wrote{false};
  std::thread writer([&] {
    WriterLock lock(&mu);
    wrote.store(true);
  });
  // The writer is queued once a new reader is refused; until then it may
  // not have reached its lock call yet.
  bool held_back = false;
  for (int i = 0; i < 10000 && !held_back; ++i) {
    if (mu.TryReaderLock()) {
      mu.ReaderUnlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else {
      held_back = true;
    }
  }
  EXPECT_TRUE(held_back);
  EXPECT_FALSE(wrote.load());  // The first reader still holds the lock.
  mu.ReaderUnlock();
  writer.join();
  EXPECT_TRUE(wrote.load());
  ASSERT_TRUE(mu.TryReaderLock());  // Free again once the writer is done.
  mu.ReaderUnlock();
}

TEST(Concurrency, ReadersRunWithOneWriter) {
  testing::GeneratorOptions o;
  o.max_events = 20000;
  const auto events = testing::GenerateStream(o);
  auto engine = NewEngine();
  std::atomic<bool> done{false};
  std::atomic<int64_t> reads{0};

  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      int64_t last = 0;
      while (!done.load()) {
        // Monotonic: a reader never sees the state go back.
        const int64_t n = engine->events_accepted();
        EXPECT_GE(n, last);
        last = n;
        const auto counts = engine->AccountStatusCounts();
        int64_t total = 0;
        for (int64_t c : counts) total += c;
        EXPECT_GE(total, 0);
        if (t == 0) (void)engine->StuckDeals(kT0 + 30 * kDay);
        if (t == 1) (void)engine->DealsByStage();
        if (t == 2) {
          auto snap = engine->Snapshot();
          EXPECT_TRUE(snap.ok());
          // Snapshots taken mid-stream restore: never a torn state.
          if (reads.load() % 50 == 0) {
            EXPECT_TRUE(Engine::Restore(*snap).ok());
          }
        }
        reads.fetch_add(1);
      }
    });
  }
  for (size_t i = 0; i < events.size(); i += 500) {
    auto r = engine->IngestBatch(absl::MakeConstSpan(events).subspan(i, 500));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  done.store(true);
  for (auto& th : readers) th.join();
  EXPECT_EQ(engine->events_accepted(), 20000);
  EXPECT_GT(reads.load(), 0);
}

// Several writers and KPI readers at once. The KPI cells are kept by ingest
// under the engine's writer lock only (no lock of their own per fact), so
// this is the test TSan must see: two writers race over the chunks of one
// stream (best effort, so what an order refuses the other accepts later)
// while two readers ask for the dashboard, a kept report and grades. At the
// end the cells must still answer exactly as the forced scan does.
TEST(Concurrency, SeveralWritersWithKpiReaders) {
  testing::GeneratorOptions o;
  o.max_events = 12000;
  const auto events = testing::GenerateStream(o);
  auto engine = NewEngine();
  const int64_t end = (events.back().occurred_at_us() / kDay + 40) * kDay;
  v1::KpiQuery q;
  q.set_start_us(end - 730 * kDay);
  q.set_end_us(end);
  q.set_bucket(v1::BUCKET_MONTH);
  q.set_group_by(v1::GROUP_BY_MANAGER);

  std::atomic<bool> done{false};
  std::atomic<int64_t> answered{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      v1::KpiReport kept;
      while (!done.load()) {
        if (t == 0) {
          EXPECT_TRUE(engine->Kpis(q).ok());
          EXPECT_TRUE(engine->Grades(end).ok());
        } else {
          EXPECT_TRUE(engine->KpisInto(q, &kept).ok());
        }
        answered.fetch_add(1);
      }
    });
  }
  constexpr size_t kChunk = 250;
  std::atomic<size_t> next{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&] {
      for (size_t at = next.fetch_add(kChunk); at < events.size(); at = next.fetch_add(kChunk)) {
        auto part = absl::MakeConstSpan(events).subspan(at, std::min(kChunk, events.size() - at));
        EXPECT_TRUE(engine->IngestBatch(part, {BatchMode::kBestEffort}).ok());
      }
    });
  }
  for (auto& th : writers) th.join();
  // A second pass in order takes what a raced order refused.
  ASSERT_TRUE(engine->IngestBatch(events, {BatchMode::kBestEffort}).ok());
  done.store(true);
  for (auto& th : readers) th.join();
  EXPECT_GT(answered.load(), 0);
  EXPECT_GT(engine->events_accepted(), 0);

  auto cells = engine->Kpis(q);
  kpi::SetForceScanForTesting(true);
  auto scan = engine->Kpis(q);
  kpi::SetForceScanForTesting(false);
  ASSERT_TRUE(cells.ok() && scan.ok());
  EXPECT_GT(cells->rows_size(), 0);
  EXPECT_EQ(cells->SerializeAsString(), scan->SerializeAsString());
}

// The two-thread snapshot writer under the engine's reader lock, for TSan:
// two snapshots at once (both size passes store the same cached sizes in
// the same rows: protobuf keeps them in relaxed atomics) while another
// reader queries, then snapshots while a writer ingests.
TEST(ConcurrentSnapshot, TwoThreadWriterWithReadersAndAWriter) {
  testing::GeneratorOptions o;
  o.max_events = 24000;
  const auto events = testing::GenerateStream(o);
  const auto first = absl::MakeConstSpan(events).subspan(0, 20000);
  auto engine = NewEngine();
  ASSERT_TRUE(engine->IngestBatch(first).ok());
  std::string expected;
  {
    ScopedParallelMode one(1);
    expected = *engine->Snapshot();
  }
  ScopedParallelMode two(2);

  std::atomic<bool> done{false};
  std::atomic<int64_t> snapshots{0};
  auto snapshotter = [&](bool check_bytes) {
    while (!done.load()) {
      auto snap = engine->Snapshot();
      ASSERT_TRUE(snap.ok());
      if (check_bytes) {
        EXPECT_TRUE(*snap == expected);
      } else if (snapshots.load() % 8 == 0) {
        EXPECT_TRUE(Engine::Restore(*snap).ok());  // never a torn state
      }
      snapshots.fetch_add(1);
    }
  };
  {
    std::vector<std::thread> threads;
    threads.emplace_back(snapshotter, true);
    threads.emplace_back(snapshotter, true);
    threads.emplace_back([&] {
      while (!done.load()) {
        (void)engine->DealsByStage();
        (void)engine->StuckDeals(kT0 + 30 * kDay);
      }
    });
    while (snapshots.load() < 6) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    done.store(true);
    for (auto& th : threads) th.join();
  }
  // Now with a writer: each snapshot is of some whole state between batches.
  done.store(false);
  snapshots.store(0);
  std::thread reader(snapshotter, false);
  for (size_t i = 20000; i < events.size(); i += 500) {
    auto r = engine->IngestBatch(absl::MakeConstSpan(events).subspan(i, 500));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  while (snapshots.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  done.store(true);
  reader.join();
  EXPECT_EQ(engine->events_accepted(), 24000);
}

}  // namespace
}  // namespace rapport::test

namespace rapport::test {
namespace {

// Restore forced onto two threads (the two halves of the snapshot parse at
// once on the state's arena), so that TSan sees them: the same engine as the
// one-thread restore.
TEST(Parallel, RestoreOnTwoThreadsEqualsOneThread) {
  testing::GeneratorOptions o;
  o.seed = 5;
  o.max_events = 20000;
  const auto events = testing::GenerateStream(o);
  auto engine = NewEngine();
  for (size_t i = 0; i < events.size(); i += 5000) {
    auto part = absl::MakeConstSpan(events).subspan(i, std::min<size_t>(5000, events.size() - i));
    ASSERT_TRUE(engine->IngestBatch(part).ok());
  }
  const std::string bytes = *engine->Snapshot();

  absl::StatusOr<std::unique_ptr<Engine>> two, one;
  {
    ScopedParallelMode mode(2);
    two = Engine::Restore(bytes);
  }
  {
    ScopedParallelMode mode(1);
    one = Engine::Restore(bytes);
  }
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*(*two)->Snapshot(), bytes);
  EXPECT_EQ(*(*one)->Snapshot(), bytes);
  EXPECT_EQ((*two)->AccountStatusCounts(), (*one)->AccountStatusCounts());
  EXPECT_EQ((*two)->Outbox().SerializeAsString(), (*one)->Outbox().SerializeAsString());
}

// A persistent engine in per-batch mode: each batch's fdatasync runs on the
// store's sync thread while the writer applies the batch, and the writer waits
// for it under the engine's lock. Two writers race over the chunks of one
// stream while a reader takes snapshots; this is the path TSan must see (the
// sync thread hands results back to whichever writer is waiting). After a
// reopen the engine holds exactly what the writers were told was accepted.
TEST(ConcurrencyPersistent, TwoWritersPerBatchSync) {
  test::ScratchDir scratch;
  testing::GeneratorOptions o;
  o.max_events = 3000;
  const auto events = testing::GenerateStream(o);
  OpenOptions options;
  options.sync = SyncMode::kPerBatch;
  options.snapshot_every_bytes = 64 << 10;  // checkpoints race the writers too
  std::string final_state;
  {
    auto opened = Engine::Open(scratch.Sub("db"), options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    Engine& engine = **opened;
    std::atomic<bool> done{false};
    std::thread reader([&] {
      while (!done.load()) EXPECT_TRUE(engine.Snapshot().ok());
    });
    constexpr size_t kChunk = 100;
    std::atomic<size_t> next{0};
    std::atomic<int64_t> accepted{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < 2; ++w) {
      writers.emplace_back([&] {
        for (size_t at = next.fetch_add(kChunk); at < events.size(); at = next.fetch_add(kChunk)) {
          auto part = absl::MakeConstSpan(events).subspan(at, std::min(kChunk, events.size() - at));
          auto r = engine.IngestBatch(part, {BatchMode::kBestEffort});
          EXPECT_TRUE(r.ok()) << r.status();
          if (r.ok()) accepted.fetch_add(r->accepted());
        }
      });
    }
    for (auto& th : writers) th.join();
    done.store(true);
    reader.join();
    EXPECT_GT(accepted.load(), 0);
    EXPECT_EQ(engine.events_accepted(), accepted.load());
    final_state = *engine.Snapshot();
  }
  auto reopened = Engine::Open(scratch.Sub("db"), options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(*(*reopened)->Snapshot(), final_state);
}

// The fact rows are read on two threads split by kind (the deal kinds on
// the caller's, the rest on the second): a bad row on either side, or on
// both, gives the one-thread error (the earlier row's), with no race on the
// way (run under TSan).
TEST(Parallel, BadFactRowsOnTwoThreadsFailAsOnOne) {
  testing::GeneratorOptions o;
  o.seed = 9;
  o.max_events = 5000;
  auto engine = NewEngine();
  ASSERT_TRUE(engine->IngestBatch(testing::GenerateStream(o)).ok());
  v1::EngineSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(*engine->Snapshot()));
  auto row_of = [&](int kind) {
    int row = 0;
    for (int k = 0; k < kind; ++k) row += static_cast<int>(snap.facts().kind_sizes(k));
    return row + static_cast<int>(snap.facts().kind_sizes(kind)) / 2;
  };
  ASSERT_GT(snap.facts().kind_sizes(1), 0u);
  ASSERT_GT(snap.facts().kind_sizes(10), 0u);
  const int deal = row_of(1), other = row_of(10);
  for (const auto& rows : std::vector<std::vector<int>>{{deal}, {other}, {deal, other}}) {
    v1::EngineSnapshot bad = snap;
    for (int row : rows) bad.mutable_facts()->set_account(row, 1u << 30);
    const std::string bytes = bad.SerializeAsString();
    absl::StatusOr<std::unique_ptr<Engine>> two, one;
    {
      ScopedParallelMode mode(2);
      two = Engine::Restore(bytes);
    }
    {
      ScopedParallelMode mode(1);
      one = Engine::Restore(bytes);
    }
    ASSERT_FALSE(one.ok());
    EXPECT_EQ(two.status(), one.status());
    EXPECT_NE(one.status().message().find(absl::StrCat("fact ", rows[0], " ")), std::string::npos)
        << one.status();
  }
}

}  // namespace
}  // namespace rapport::test
