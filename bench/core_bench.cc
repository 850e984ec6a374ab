// Core engine speed: ingest of the generated stream (from parsed protobuf and
// from JSON lines), snapshot and restore.
//
//   build/release/bench/core_bench --benchmark_counters_tabular=true
#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "lib/ingest/fingerprint.h"
#include "lib/util/parallel.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/testing/generator.h"

namespace rapport {
namespace {

constexpr size_t kBatch = 10000;

// RAPPORT_BENCH_EVENTS overrides the stream size, so CI can run every
// benchmark once on a small stream (the bench_smoke test).
const std::vector<v1::Event>& Stream(int64_t n) {
  if (const char* env = std::getenv("RAPPORT_BENCH_EVENTS")) n = std::atoll(env);
  static auto* cache = new std::map<int64_t, std::vector<v1::Event>>();
  auto it = cache->find(n);
  if (it == cache->end()) {
    testing::GeneratorOptions o;
    o.max_events = n;
    it = cache->emplace(n, testing::GenerateStream(o)).first;
  }
  return it->second;
}

std::unique_ptr<Engine> Loaded(const std::vector<v1::Event>& events) {
  auto engine = *Engine::Create();
  for (size_t i = 0; i < events.size(); i += kBatch) {
    auto r = engine->IngestBatch(
        absl::MakeConstSpan(events).subspan(i, std::min(kBatch, events.size() - i)));
    if (!r.ok()) std::abort();
  }
  return engine;
}

void BM_IngestProtobuf(benchmark::State& state) {
  const auto& events = Stream(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    auto engine = *Engine::Create();
    state.ResumeTiming();
    for (size_t i = 0; i < events.size(); i += kBatch) {
      auto r = engine->IngestBatch(
          absl::MakeConstSpan(events).subspan(i, std::min(kBatch, events.size() - i)));
      if (!r.ok()) state.SkipWithError(std::string(r.status().message()).c_str());
    }
    state.PauseTiming();
    engine.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(events.size()));
}
BENCHMARK(BM_IngestProtobuf)->Arg(1000000)->Unit(benchmark::kMillisecond)->UseRealTime();

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void BM_IngestJsonLines(benchmark::State& state) {
  const auto& events = Stream(state.range(0));
  std::vector<std::string> chunks;
  for (size_t i = 0; i < events.size(); i += kBatch) {
    std::string chunk;
    for (size_t j = i; j < std::min(i + kBatch, events.size()); ++j) {
      absl::StrAppend(&chunk, *ToJson(events[j]), "\n");
    }
    chunks.push_back(std::move(chunk));
  }
  int64_t bytes = 0;
  for (const auto& c : chunks) bytes += static_cast<int64_t>(c.size());
  // The parse alone (JSON lines to messages), timed apart from the ingest
  // that follows it: the engine bounds the whole, the parser this share. In
  // CPU time of this thread: steadier than wall time on a shared machine.
  double parse_s = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto engine = *Engine::Create();
    state.ResumeTiming();
    for (const std::string& chunk : chunks) {
      const double start = ThreadCpuSeconds();
      auto parsed = EventsFromJsonLines(chunk);
      parse_s += ThreadCpuSeconds() - start;
      if (!parsed.ok()) state.SkipWithError("parse");
      auto r = engine->IngestBatch(*parsed);
      if (!r.ok()) state.SkipWithError(std::string(r.status().message()).c_str());
    }
    state.PauseTiming();
    engine.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(events.size()));
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["parse_MB_per_cpu_s"] =
      static_cast<double>(state.iterations() * bytes) / 1e6 / std::max(parse_s, 1e-9);
  state.counters["parse_ns_per_event"] =
      parse_s * 1e9 / static_cast<double>(state.iterations() * static_cast<int64_t>(events.size()));
}
BENCHMARK(BM_IngestJsonLines)->Arg(1000000)->Unit(benchmark::kMillisecond)->UseRealTime();

// Second argument: 1 = the one-thread writer, 2 = the two-thread one
// (ParallelModeForTesting), so that one run shows the ratio.
void BM_Snapshot(benchmark::State& state) {
  auto engine = Loaded(Stream(state.range(0)));
  ScopedParallelMode mode(static_cast<int>(state.range(1)));
  size_t size = 0;
  for (auto _ : state) {
    auto bytes = engine->Snapshot();
    size = bytes->size();
    benchmark::DoNotOptimize(bytes);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size));
  state.counters["snapshot_MB"] = static_cast<double>(size) / 1e6;
}
BENCHMARK(BM_Snapshot)
    ->ArgNames({"events", "threads"})
    ->Args({1000000, 1})
    ->Args({1000000, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Second argument: restore on 1 or 2 threads, forced either way.
void BM_Restore(benchmark::State& state) {
  const std::string bytes = *Loaded(Stream(state.range(0)))->Snapshot();
  ScopedParallelMode mode(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    auto engine = Engine::Restore(bytes);
    if (!engine.ok()) state.SkipWithError("restore");
    state.PauseTiming();
    engine->reset();
    state.ResumeTiming();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_Restore)
    ->ArgNames({"events", "threads"})
    ->Args({1000000, 1})
    ->Args({1000000, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The event fingerprint alone (issue 2): the hand-written serializer against
// protobuf's, over the generated stream.
template <uint64_t (*Fingerprint)(const v1::Event&)>
void FingerprintStream(benchmark::State& state) {
  const auto& events = Stream(state.range(0));
  uint64_t sum = 0;
  for (auto _ : state) {
    for (const v1::Event& e : events) sum += Fingerprint(e);
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(events.size()));
}
void BM_EventFingerprint(benchmark::State& state) { FingerprintStream<FingerprintEvent>(state); }
BENCHMARK(BM_EventFingerprint)->Arg(1000000)->Unit(benchmark::kMillisecond)->UseRealTime();
void BM_EventFingerprintProtobuf(benchmark::State& state) {
  FingerprintStream<ReferenceEventFingerprint>(state);
}
BENCHMARK(BM_EventFingerprintProtobuf)->Arg(1000000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace rapport

BENCHMARK_MAIN();
