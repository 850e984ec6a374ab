// Persistent engine speed: ingest through the journal in each sync mode
// (batches of 1 000 events), and Open's recovery of a large journal.
//
//   build/release/bench/storage_bench --benchmark_counters_tabular=true
//
// Files go under $RAPPORT_BENCH_DIR, else $TMPDIR, else /tmp — on a real
// disk, since fdatasync is the point — and are removed afterwards (but see
// RAPPORT_BENCH_KEEP_DIR at BM_Recovery).
// RAPPORT_BENCH_EVENTS shrinks the streams (the CTest smoke run);
// RAPPORT_BENCH_RECOVERY_EVENTS sets the recovery journal (default 10 M).
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "lib/storage/crc32c.h"
#include "lib/storage/env.h"
#include "lib/storage/journal.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"

namespace rapport {
namespace {

constexpr size_t kBatch = 1000;

int64_t EnvCount(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoll(v) : fallback;
}

std::string BenchRoot() {
  for (const char* name : {"RAPPORT_BENCH_DIR", "TMPDIR"}) {
    if (const char* v = std::getenv(name)) return v;
  }
  return "/tmp";
}

std::string MakeDir() {
  std::string tmpl = BenchRoot() + "/rapport-bench-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

void RemoveAll(const std::string& path) {
  if (DIR* d = opendir(path.c_str())) {
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string p = path + "/" + name;
      struct stat st;
      if (lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        RemoveAll(p);
      } else {
        unlink(p.c_str());
      }
    }
    closedir(d);
  }
  rmdir(path.c_str());
}

const std::vector<v1::Event>& Stream(int64_t n) {
  n = EnvCount("RAPPORT_BENCH_EVENTS", n);
  static auto* cache = new std::map<int64_t, std::vector<v1::Event>>();
  auto it = cache->find(n);
  if (it == cache->end()) {
    testing::GeneratorOptions o;
    o.max_events = n;
    it = cache->emplace(n, testing::GenerateStream(o)).first;
  }
  return it->second;
}

OpenOptions Options(SyncMode sync) {
  OpenOptions o;
  o.sync = sync;
  o.snapshot_every_bytes = 0;
  return o;
}

// One writer thread, the generated stream in batches of 1 000.
void BM_JournalIngest(benchmark::State& state) {
  const auto& events = Stream(200000);
  const auto sync = static_cast<SyncMode>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    const std::string dir = MakeDir();
    auto engine = Engine::Open(dir + "/db", Options(sync));
    if (!engine.ok()) state.SkipWithError(std::string(engine.status().message()).c_str());
    state.ResumeTiming();
    for (size_t i = 0; engine.ok() && i < events.size(); i += kBatch) {
      auto r = (*engine)->IngestBatch(
          absl::MakeConstSpan(events).subspan(i, std::min(kBatch, events.size() - i)));
      if (!r.ok()) {
        state.SkipWithError(std::string(r.status().message()).c_str());
        break;
      }
    }
    state.PauseTiming();
    engine = absl::StatusOr<std::unique_ptr<Engine>>();
    RemoveAll(dir);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(events.size()));
  state.SetLabel(sync == SyncMode::kPerBatch ? "fdatasync per batch"
                 : sync == SyncMode::kOff    ? "sync off"
                                             : "group commit");
}
BENCHMARK(BM_JournalIngest)
    ->ArgName("sync")
    ->Arg(static_cast<int>(SyncMode::kPerBatch))
    ->Arg(static_cast<int>(SyncMode::kGroupCommit))
    ->Arg(static_cast<int>(SyncMode::kOff))
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The floor of BM_JournalIngest/sync:0 that the apply cannot lower: the same
// batches' journal records written and fdatasync'ed one by one, as the
// journal does, with no engine. In per-batch mode the fdatasync overlaps the
// apply, so a batch costs about max(this, BM_JournalIngest/sync:2) per batch;
// ms_per_sync is one write + fdatasync of a batch here.
void BM_JournalFdatasync(benchmark::State& state) {
  const auto& events = Stream(200000);
  std::vector<std::string> records;
  for (size_t i = 0; i < events.size(); i += kBatch) {
    std::vector<const v1::Event*> batch;
    for (size_t j = i; j < std::min(events.size(), i + kBatch); ++j) batch.push_back(&events[j]);
    const uint64_t seq = records.size() + 1;
    journal::AppendEventsRecord(seq, batch, &records.emplace_back());
  }
  Env* env = Env::Default();
  int64_t syncs = 0;
  double sync_seconds = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string dir = MakeDir();
    auto file = env->NewWritableFile(dir + "/journal.log", /*truncate=*/true);
    if (!file.ok()) state.SkipWithError(std::string(file.status().message()).c_str());
    state.ResumeTiming();
    for (size_t i = 0; file.ok() && i < records.size(); ++i) {
      const auto start = std::chrono::steady_clock::now();
      absl::Status st = (*file)->Append(records[i]);
      if (st.ok()) st = (*file)->Sync();
      sync_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!st.ok()) {
        state.SkipWithError(std::string(st.message()).c_str());
        break;
      }
      ++syncs;
    }
    state.PauseTiming();
    if (file.ok()) (*file)->Close().IgnoreError();
    RemoveAll(dir);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(events.size()));
  state.counters["ms_per_sync"] = syncs > 0 ? 1000 * sync_seconds / static_cast<double>(syncs) : 0;
}
BENCHMARK(BM_JournalFdatasync)->Unit(benchmark::kMillisecond)->UseRealTime();

// The checksum of journal records and snapshot files, on 8 MiB: the table
// implementation is the peer of the crc32 instruction's three streams.
void BM_Crc32c(benchmark::State& state) {
  std::string data(size_t{8} << 20, '\0');
  uint32_t x = 1;
  for (char& c : data) c = static_cast<char>(x = x * 1664525u + 1013904223u);
  const bool hardware = state.range(0) != 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(hardware ? crc32c::ExtendHardware(0, data.data(), data.size())
                                      : crc32c::ExtendPortable(0, data.data(), data.size()));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(data.size()));
  state.SetLabel(hardware && crc32c::HardwareAvailable() ? "crc32 instruction" : "table");
}
BENCHMARK(BM_Crc32c)->ArgName("hardware")->Arg(0)->Arg(1);

// Several writer threads on one engine, batches of 1 000 independent events
// (activities on accounts that exist): group commit lets them share syncs.
void BM_JournalIngestThreads(benchmark::State& state) {
  const auto& base = Stream(50000);
  const auto sync = static_cast<SyncMode>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  std::vector<v1::Event> templates;
  for (const v1::Event& e : base) {
    if (e.has_activity()) templates.push_back(e);
  }
  const int64_t per_thread = EnvCount("RAPPORT_BENCH_EVENTS", 200000) / threads;
  int64_t total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string dir = MakeDir();
    auto opened = Engine::Open(dir + "/db", Options(SyncMode::kOff));
    if (!opened.ok()) std::abort();
    std::unique_ptr<Engine> engine = *std::move(opened);
    for (size_t i = 0; i < base.size(); i += 10000) {
      if (!engine
               ->IngestBatch(
                   absl::MakeConstSpan(base).subspan(i, std::min<size_t>(10000, base.size() - i)))
               .ok())
        std::abort();
    }
    engine.reset();
    engine = *Engine::Open(dir + "/db", Options(sync));
    // Each thread's batches, made before the clock starts.
    std::vector<std::vector<std::vector<v1::Event>>> work(threads);
    for (int t = 0; t < threads; ++t) {
      for (int64_t i = 0; i < per_thread; i += kBatch) {
        auto& batch = work[t].emplace_back();
        for (int64_t j = i; j < std::min<int64_t>(per_thread, i + kBatch); ++j) {
          v1::Event e = templates[static_cast<size_t>(j) % templates.size()];
          e.set_event_id(absl::StrCat("bench-", t, "-", j));
          batch.push_back(std::move(e));
        }
      }
    }
    std::atomic<bool> failed{false};
    state.ResumeTiming();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (const auto& batch : work[t]) {
          if (!engine->IngestBatch(batch).ok()) failed = true;
        }
      });
    }
    for (auto& th : pool) th.join();
    state.PauseTiming();
    if (failed) state.SkipWithError("an ingest failed");
    total += per_thread * threads;
    engine.reset();
    RemoveAll(dir);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(total);
}
BENCHMARK(BM_JournalIngestThreads)
    ->ArgNames({"sync", "threads"})
    ->Args({static_cast<int>(SyncMode::kPerBatch), 4})
    ->Args({static_cast<int>(SyncMode::kGroupCommit), 4})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Open (recovery) of a directory that took the whole stream, generated in
// pieces to bound memory and written once with sync off, then removed at the
// end. Two shapes:
//   checkpoints:1        the store as a host leaves it with the default
//                        OpenOptions: a snapshot whenever the journal grew by
//                        snapshot_every_bytes, so open restores the newest
//                        snapshot and replays the journal after it;
//   checkpoints:0        no snapshot but the empty first one: every event is
//                        read, checked and replayed from the journal.
// items_per_second is events in the engine after open per second of open;
// journal_MiB is what open replays (segments a snapshot covers are gone).
//
// Generating 10 M events takes minutes, the open seconds: with
// RAPPORT_BENCH_KEEP_DIR set, each directory is generated once as
// $RAPPORT_BENCH_KEEP_DIR/recovery-<events>-<checkpoints> and kept, and a
// later run (of any build: the formats do not change) only opens it, which
// is what an A/B of open needs. Remove it by hand.
void BM_Recovery(benchmark::State& state) {
  const int64_t n =
      EnvCount("RAPPORT_BENCH_EVENTS", EnvCount("RAPPORT_BENCH_RECOVERY_EVENTS", 10000000));
  const bool checkpoints = state.range(0) != 0;
  const char* keep = std::getenv("RAPPORT_BENCH_KEEP_DIR");
  const std::string dir =
      keep != nullptr ? absl::StrCat(keep, "/recovery-", n, "-", state.range(0)) : MakeDir();
  const std::string db = dir + "/db";
  // Written last: a directory without it is a generation cut short.
  const std::string done = dir + "/complete";
  OpenOptions write_options = Options(SyncMode::kOff);
  if (checkpoints) write_options.snapshot_every_bytes = OpenOptions().snapshot_every_bytes;
  struct stat kept;
  const bool reuse = keep != nullptr && stat(done.c_str(), &kept) == 0;
  if (keep != nullptr && !reuse) {
    RemoveAll(dir);
    if (mkdir(keep, 0755) != 0 && errno != EEXIST) std::abort();
    if (mkdir(dir.c_str(), 0755) != 0) std::abort();
  }
  if (!reuse) {
    auto engine = *Engine::Open(db, write_options);
    testing::GeneratorOptions o;
    o.max_events = n;
    testing::Generator gen(o);
    std::vector<v1::Event> batch(10000);
    for (;;) {
      size_t k = 0;
      while (k < batch.size() && gen.Next(&batch[k])) ++k;
      if (k == 0) break;
      if (!engine->IngestBatch(absl::MakeConstSpan(batch).subspan(0, k)).ok()) std::abort();
    }
  }
  if (keep != nullptr && !reuse) {
    FILE* f = fopen(done.c_str(), "w");
    if (f == nullptr) std::abort();
    fclose(f);
  }
  int64_t journal_bytes = 0;
  int64_t snapshot_bytes = 0;
  if (DIR* d = opendir(db.c_str())) {
    while (struct dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      struct stat st;
      if (stat((db + "/" + name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        (name.rfind("snapshot-", 0) == 0 ? snapshot_bytes : journal_bytes) += st.st_size;
      }
    }
    closedir(d);
  }
  int64_t events = 0;
  for (auto _ : state) {
    // Reopened as written, so that open does not checkpoint on its own.
    auto engine = Engine::Open(db, write_options);
    if (!engine.ok()) {
      state.SkipWithError(std::string(engine.status().message()).c_str());
      break;
    }
    events += (*engine)->events_accepted();
    state.PauseTiming();
    engine = absl::StatusOr<std::unique_ptr<Engine>>();
    state.ResumeTiming();
  }
  if (keep == nullptr) RemoveAll(dir);
  state.SetItemsProcessed(events);
  state.counters["journal_MiB"] = static_cast<double>(journal_bytes) / (1 << 20);
  state.counters["snapshot_MiB"] = static_cast<double>(snapshot_bytes) / (1 << 20);
  state.SetLabel(checkpoints ? "default snapshot policy" : "journal only");
}
BENCHMARK(BM_Recovery)
    ->ArgName("checkpoints")
    ->Arg(1)
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace
}  // namespace rapport

BENCHMARK_MAIN();
