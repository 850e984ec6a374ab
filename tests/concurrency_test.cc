// One engine shared by threads: one writer, several readers, no torn reads.
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

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

}  // namespace
}  // namespace rapport::test
