// The C ABI's overhead over the C++ API on batched ingest, on the same
// generated stream, in one run.
//
//   build/release/bench/c_api_bench   # RAPPORT_BENCH_EVENTS, RAPPORT_BENCH_ROUNDS
//
// Design. One process cannot link both the shared library (the C ABI) and
// rapport_core (the C++ API): each carries the generated protobuf
// descriptors and would register them twice in libprotobuf. So this file
// builds two programs:
//  - c_api_bench_cpp links rapport_core. It generates the stream, writes it
//    (varint-delimited rapport.v1.Event bytes) to a file, and times the C++
//    API on it.
//  - c_api_bench links only librapport.so. It starts c_api_bench_cpp (found
//    next to itself) to write the stream and to time the C++ side, times the
//    C ABI on the very same bytes, then prints the overhead from the medians
//    of both (the C++ side's figures come back through a small result file).
// Both sides do the same work per batch of kBatch events: parse an
// EventBatch from protobuf bytes and ingest it into an engine that is created
// before the clock starts; the stream is ingested whole per iteration. The
// same compiled rapport_core objects sit behind both (the shared library is
// those objects plus lib/c_api), so the difference is the C ABI layer.
// Rates are per CPU second (Google Benchmark's default), not wall time: the
// work is single-threaded, and CPU time stays meaningful on a shared machine
// where wall time mostly measures the neighbours.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"

#ifdef RAPPORT_BENCH_CPP
#include "google/protobuf/arena.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/testing/generator.h"
#else
#include "rapport/rapport.h"
#endif

namespace {

constexpr size_t kBatch = 10000;

#ifdef RAPPORT_BENCH_CPP
int64_t StreamEvents() {
  const char* env = std::getenv("RAPPORT_BENCH_EVENTS");
  return env != nullptr ? std::atoll(env) : 500000;
}
#endif

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Splits a delimited stream into its events' bytes.
std::vector<std::string> SplitDelimited(const std::string& stream) {
  std::vector<std::string> events;
  size_t at = 0;
  while (at < stream.size()) {
    uint64_t len = 0;
    for (int shift = 0;; shift += 7) {
      const auto b = static_cast<uint8_t>(stream[at++]);
      len |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) break;
    }
    events.push_back(stream.substr(at, len));
    at += len;
  }
  return events;
}

// The stream as rapport.v1.EventBatch bytes of kBatch events each (field 1,
// length-delimited, per event) — built without protobuf, so that the C side
// needs nothing but the C ABI.
std::vector<std::string> Batches(const std::vector<std::string>& events) {
  std::vector<std::string> batches;
  for (size_t i = 0; i < events.size(); i += kBatch) {
    std::string b;
    for (size_t j = i; j < std::min(i + kBatch, events.size()); ++j) {
      b.push_back(0x0a);
      AppendVarint(&b, events[j].size());
      b += events[j];
    }
    batches.push_back(std::move(b));
  }
  return batches;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::vector<std::string>* g_batches = nullptr;
int64_t g_events = 0;

// Collects each run's items/s (for the median) while printing as usual.
class Capture : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      auto it = r.counters.find("items_per_second");
      if (it == r.counters.end()) continue;
      if (r.run_type == Run::RT_Iteration) {
        rates[r.run_name.str()].push_back(it->second.value);
      } else if (r.aggregate_name == "median") {
        medians[r.run_name.str()] = it->second.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
  // The median over repetitions of a benchmark's events/s (0 if it did not run).
  double Rate(const std::string& name) {
    if (auto it = medians.find(name); it != medians.end()) return it->second;
    std::vector<double> v = rates[name];
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  std::map<std::string, std::vector<double>> rates;
  std::map<std::string, double> medians;
};

#ifdef RAPPORT_BENCH_CPP

void BM_CppIngestBatch(benchmark::State& state) {
  for (auto _ : state) {
    state.PauseTiming();
    auto engine = *rapport::Engine::Create();
    state.ResumeTiming();
    for (const std::string& bytes : *g_batches) {
      google::protobuf::Arena arena;
      auto* batch = google::protobuf::Arena::CreateMessage<rapport::v1::EventBatch>(&arena);
      if (!batch->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        state.SkipWithError("parse");
      }
      auto r = engine->IngestBatch(*batch);
      if (!r.ok()) state.SkipWithError(std::string(r.status().message()).c_str());
    }
    state.PauseTiming();
    engine.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * g_events);
}
BENCHMARK(BM_CppIngestBatch)->Unit(benchmark::kMillisecond);

// One untimed pass first on each side, so that neither is measured while the
// allocator still grows the heap.
void WarmUp() {
  auto engine = *rapport::Engine::Create();
  for (const std::string& bytes : *g_batches) {
    rapport::v1::EventBatch batch;
    if (!batch.ParseFromString(bytes) || !engine->IngestBatch(batch).ok()) std::abort();
  }
}

#else

rapport_engine* NewEngine() {
  rapport_engine* e = nullptr;
  if (rapport_engine_create(&e, nullptr, 0, RAPPORT_FORMAT_PROTOBUF) != RAPPORT_OK) std::abort();
  return e;
}

// arg 0: no result; 1: the IngestResult as protobuf (actions included).
void BM_CApiIngestBatch(benchmark::State& state) {
  const bool want_result = state.range(0) != 0;
  for (auto _ : state) {
    state.PauseTiming();
    rapport_engine* e = NewEngine();
    state.ResumeTiming();
    for (const std::string& bytes : *g_batches) {
      uint8_t* out = nullptr;
      size_t len = 0;
      int rc = rapport_ingest_batch(want_result ? &out : nullptr, want_result ? &len : nullptr, e,
                                    reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                    RAPPORT_FORMAT_PROTOBUF, RAPPORT_BATCH_ATOMIC);
      if (rc != RAPPORT_OK) state.SkipWithError(rapport_last_error_message());
      rapport_free(out);
    }
    state.PauseTiming();
    rapport_engine_destroy(e);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * g_events);
}
BENCHMARK(BM_CApiIngestBatch)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void WarmUp() {
  rapport_engine* e = NewEngine();
  for (const std::string& bytes : *g_batches) {
    if (rapport_ingest_batch(nullptr, nullptr, e, reinterpret_cast<const uint8_t*>(bytes.data()),
                             bytes.size(), RAPPORT_FORMAT_PROTOBUF,
                             RAPPORT_BATCH_ATOMIC) != RAPPORT_OK) {
      std::abort();
    }
  }
  rapport_engine_destroy(e);
}

// The per-call floor: a call that does nothing but cross the boundary.
void BM_CApiCallOverhead(benchmark::State& state) {
  rapport_engine* e = NewEngine();
  for (auto _ : state) benchmark::DoNotOptimize(rapport_events_accepted(e));
  rapport_engine_destroy(e);
}
BENCHMARK(BM_CApiCallOverhead);

// One event per call: what a host pays when it does not batch.
void BM_CApiIngestEventPerCall(benchmark::State& state) {
  const std::string stream = ReadFile(std::getenv("RAPPORT_BENCH_STREAM"));
  const std::vector<std::string> events = SplitDelimited(stream);
  for (auto _ : state) {
    state.PauseTiming();
    rapport_engine* e = NewEngine();
    state.ResumeTiming();
    for (const std::string& ev : events) {
      if (rapport_ingest_event(nullptr, nullptr, e, reinterpret_cast<const uint8_t*>(ev.data()),
                               ev.size(), RAPPORT_FORMAT_PROTOBUF) != RAPPORT_OK) {
        state.SkipWithError(rapport_last_error_message());
      }
    }
    state.PauseTiming();
    rapport_engine_destroy(e);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(events.size()));
}
BENCHMARK(BM_CApiIngestEventPerCall)->Unit(benchmark::kMillisecond);

int RunHelper(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::cout.flush();
  pid_t pid = fork();
  if (pid == 0) {
    execv(argv[0], argv.data());
    std::perror(argv[0]);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

#endif

}  // namespace

int main(int argc, char** argv) {
#ifdef RAPPORT_BENCH_CPP
  // c_api_bench_cpp --write-stream=PATH [--write-json=PATH]
  //                 | --read-stream=PATH --results=PATH [gbench flags]
  // (--write-json: the same stream as JSON lines, for bench/python_ingest.py.)
  std::string write_path, json_path, read_path, results_path;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--write-stream=", 0) == 0)
      write_path = a.substr(15);
    else if (a.rfind("--write-json=", 0) == 0)
      json_path = a.substr(13);
    else if (a.rfind("--read-stream=", 0) == 0)
      read_path = a.substr(14);
    else if (a.rfind("--results=", 0) == 0)
      results_path = a.substr(10);
    else
      rest.push_back(argv[i]);
  }
  if (!write_path.empty()) {
    rapport::testing::GeneratorOptions o;
    o.max_events = StreamEvents();
    std::string out, json;
    for (const rapport::v1::Event& e : rapport::testing::GenerateStream(o)) {
      std::string bytes = e.SerializeAsString();
      AppendVarint(&out, bytes.size());
      out += bytes;
      if (!json_path.empty()) json += *rapport::ToJson(e) + "\n";
    }
    std::ofstream(write_path, std::ios::binary) << out;
    if (!json_path.empty()) std::ofstream(json_path, std::ios::binary) << json;
    return 0;
  }
  if (read_path.empty()) {
    std::cerr << "c_api_bench_cpp is started by c_api_bench\n";
    return 2;
  }
#else
  std::string self = argv[0];
  const std::string dir = self.substr(0, self.find_last_of('/') + 1);
  const std::string helper = dir + "c_api_bench_cpp";
  char stream_tmpl[] = "/tmp/rapport_c_api_bench.XXXXXX";
  const int fd = mkstemp(stream_tmpl);
  if (fd < 0) return 2;
  close(fd);
  const std::string read_path = stream_tmpl;
  const std::string results_path = read_path + ".results";
  if (RunHelper({helper, "--write-stream=" + read_path}) != 0) return 2;
  setenv("RAPPORT_BENCH_STREAM", read_path.c_str(), 1);
  std::vector<char*> rest(argv, argv + argc);
#endif
  const std::vector<std::string> events = SplitDelimited(ReadFile(read_path));
  const std::vector<std::string> batches = Batches(events);
  g_batches = &batches;
  g_events = static_cast<int64_t>(events.size());

  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  WarmUp();
#ifdef RAPPORT_BENCH_CPP
  Capture capture;
  benchmark::RunSpecifiedBenchmarks(&capture);
  std::ofstream out(results_path);
  out << "BM_CppIngestBatch " << capture.Rate("BM_CppIngestBatch") << "\n";
  return 0;
#else
  // Paired rounds: each runs the C++ side (in the helper), then the C side,
  // back to back, so that both see the same neighbours on a shared machine;
  // the overhead is the median of the rounds' ratios. RAPPORT_BENCH_ROUNDS
  // sets their number (default 5). Google Benchmark flags (min time,
  // repetitions) apply to every round on both sides.
  const char* rounds_env = std::getenv("RAPPORT_BENCH_ROUNDS");
  const int rounds = rounds_env != nullptr ? std::max(1, std::atoi(rounds_env)) : 5;
  std::vector<double> overhead, overhead_result;
  std::vector<std::string> helper_args = {helper, "--read-stream=" + read_path,
                                          "--results=" + results_path};
  for (int i = 1; i < argc; ++i) helper_args.push_back(argv[i]);
  for (int round = 1; round <= rounds; ++round) {
    std::cout << "== round " << round << "/" << rounds
              << ": C++ API (c_api_bench_cpp, rapport_core), " << g_events << " events\n";
    if (RunHelper(helper_args) != 0) return 2;
    std::cout << "== round " << round << "/" << rounds
              << ": C ABI (c_api_bench, librapport.so), the same events\n";
    Capture capture;
    benchmark::RunSpecifiedBenchmarks(&capture, "BM_CApiIngestBatch");
    std::map<std::string, double> cpp;
    std::ifstream in(results_path);
    std::string name;
    double rate;
    while (in >> name >> rate) cpp[name] = rate;
    const double cpp_rate = cpp["BM_CppIngestBatch"];
    const double c_rate = capture.Rate("BM_CApiIngestBatch/0");
    const double c_rate_result = capture.Rate("BM_CApiIngestBatch/1");
    if (cpp_rate <= 0 || c_rate <= 0 || c_rate_result <= 0) continue;
    overhead.push_back(100.0 * (cpp_rate / c_rate - 1));
    overhead_result.push_back(100.0 * (cpp_rate / c_rate_result - 1));
    std::printf("round %d: C++ API %.0f, C ABI %.0f (%+.1f %%), with the result %.0f (%+.1f %%)\n",
                round, cpp_rate, c_rate, overhead.back(), c_rate_result, overhead_result.back());
  }
  std::cout << "== the other C ABI benchmarks\n";
  Capture rest_capture;
  benchmark::RunSpecifiedBenchmarks(&rest_capture, "BM_CApiCallOverhead|BM_CApiIngestEventPerCall");
  std::remove(read_path.c_str());
  std::remove(results_path.c_str());
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  std::printf(
      "\nC ABI overhead on batched ingest (events per CPU second, median of %zu paired rounds): "
      "%+.1f %% without the result, %+.1f %% with it\n",
      overhead.size(), median(overhead), median(overhead_result));
  return 0;
#endif
}
