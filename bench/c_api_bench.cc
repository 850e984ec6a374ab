// The C ABI's overhead over the C++ API (issue 6: at most 5 % on batched
// ingest), measured so that the two can be compared.
//
//   build/release/bench/c_api_bench --benchmark_counters_tabular=true
//   (RAPPORT_BENCH_EVENTS: the stream, default 500000; RAPPORT_BENCH_TIMERS:
//   accounts with a pending timer for the Advance rows, default 200000;
//   5 repetitions unless --benchmark_repetitions says otherwise)
//
// Two programs come from this one source:
//  - c_api_bench_cpp links rapport_core and compiles lib/c_api/rapport.cc in,
//    so the C ABI and the C++ API run in one process, over the same compiled
//    engine. Every iteration runs each side once, in alternating order, each
//    on a fresh engine created and destroyed off the clock; the overhead is
//    the ratio of the two sides' CPU times summed over the iterations, a
//    counter whose median over the repetitions is the figure.
//  - c_api_bench links only librapport.so (one process cannot link both
//    that and rapport_core: each carries the generated protobuf descriptors
//    and would register them twice in libprotobuf). It starts
//    c_api_bench_cpp (found next to itself) to write the stream and run the
//    comparison, then times what only the shared library shows: a call
//    across its boundary, and the C ABI's rates through it.
//
// Why interleaved, in one process. The previous version compared two
// processes' medians; single rounds ranged from -29 % to +45 % and the
// median from +4 % to +24 %, although the same code sat behind both: each
// process had its own heap history (glibc trimming and growing the heap,
// page faults on fresh memory), and a neighbour's burst hit one side only.
// Alternating the sides within one process gives both the same allocator
// state, the same warm-up and the same neighbours.
//
// Rates are per CPU second of the process: the work is single-threaded,
// and CPU time stays meaningful on a shared machine where wall time mostly
// measures the neighbours.
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"

#ifdef RAPPORT_BENCH_CPP
#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/text_format.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/testing/generator.h"
#endif
#include "rapport/rapport.h"

namespace {

constexpr size_t kBatch = 10000;

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

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "c_api_bench: %s\n", what.c_str());
  std::abort();
}

const std::vector<std::string>* g_batches = nullptr;
int64_t g_events = 0;

rapport_engine* NewEngine(const std::string& config = "") {
  rapport_engine* e = nullptr;
  if (rapport_engine_create(&e, reinterpret_cast<const uint8_t*>(config.data()), config.size(),
                            RAPPORT_FORMAT_PROTOBUF) != RAPPORT_OK) {
    Die(rapport_last_error_message());
  }
  return e;
}

// Keeps the median aggregates' counters for the summary, printing as usual.
class Capture : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    // With one repetition there is no aggregate: the run itself stands in.
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      if (r.run_type == Run::RT_Aggregate ? r.aggregate_name != "median" : runs.size() > 1) {
        continue;
      }
      for (const auto& [name, counter] : r.counters) {
        medians[r.run_name.str()][name] = counter.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, std::map<std::string, double>> medians;
};

#ifdef RAPPORT_BENCH_CPP

int64_t EnvOr(const char* name, int64_t fallback) {
  const char* env = std::getenv(name);
  return env != nullptr ? std::atoll(env) : fallback;
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// One side of a comparison. `begin` and `end` run off the clock around
// every iteration (create and destroy a fresh engine); `step(k)` is the
// timed work of step k (ingest batch k, advance day k).
struct Side {
  explicit Side(std::string n) : name(std::move(n)) {}
  std::string name;
  std::function<void()> begin = [] {};
  std::function<void(size_t)> step;
  std::function<void(size_t)> after_step = [](size_t) {};  // off the clock
  std::function<void()> end = [] {};
};

// Runs the sides step by step: at every step each side does that step once,
// in an order that rotates with the step, so that each side goes first as
// often as the others and a neighbour's burst on a shared machine falls on
// one step pair, not on one side's whole run. Both sides' engines are alive
// at once and grow alike, so they see the same allocator state too.
// Counters: `<name>_per_s`, items per CPU second of each side; and for each
// side after the first, `<name>_pct`, the median over the steps of its CPU
// time relative to the first side's in the same step, in per cent (a
// median, so one disturbed step does not move it), and `<name>_pct_sum`,
// the same from the summed times.
void Interleave(benchmark::State& state, size_t steps, double items_per_step,
                std::vector<Side> sides) {
  const size_t n = sides.size();
  std::vector<double> cpu(n, 0);
  std::vector<std::vector<double>> ratios(n);
  std::vector<double> t(n);
  size_t rotation = 0;
  for (auto _ : state) {
    for (Side& side : sides) side.begin();
    double total = 0;
    for (size_t k = 0; k < steps; ++k, ++rotation) {
      for (size_t j = 0; j < n; ++j) {
        const size_t s = (rotation + j) % n;
        const double start = CpuSeconds();
        sides[s].step(k);
        t[s] = CpuSeconds() - start;
        sides[s].after_step(k);
      }
      for (size_t s = 0; s < n; ++s) {
        cpu[s] += t[s];
        total += t[s];
        if (s > 0) ratios[s].push_back(t[s] / t[0]);
      }
    }
    for (Side& side : sides) side.end();
    state.SetIterationTime(total);
  }
  const double items =
      items_per_step * static_cast<double>(steps) * static_cast<double>(state.iterations());
  for (size_t s = 0; s < n; ++s) {
    state.counters[sides[s].name + "_per_s"] = items / cpu[s];
    if (s == 0) continue;
    std::vector<double>& r = ratios[s];
    std::sort(r.begin(), r.end());
    const double median =
        r.size() % 2 == 1 ? r[r.size() / 2] : (r[r.size() / 2 - 1] + r[r.size() / 2]) / 2;
    state.counters[sides[s].name + "_pct"] = 100.0 * (median - 1);
    state.counters[sides[s].name + "_pct_sum"] = 100.0 * (cpu[s] / cpu[0] - 1);
  }
}

// Batched ingest of protobuf EventBatch bytes, kBatch events per step. The
// C++ side is what a C++ host writes: parse each batch on an arena,
// IngestBatch, keep the result (an IngestResult object). arg 0: the C side
// asks for no result; 1: the C side gets the IngestResult serialized
// (actions included): the price of handing it across as bytes; 2: the same
// as JSON (rapport_ingest_batch_v2), what the Python binding asks for with
// actions=True; 3: no result, the C side given the same events as a
// delimited stream (what the Python binding sends for protobuf bytes).
const std::vector<std::string>* g_delimited = nullptr;
void BM_IngestBatch(benchmark::State& state) {
  const bool want_result = state.range(0) == 1 || state.range(0) == 2;
  const bool delimited = state.range(0) == 3;
  const int result_format = state.range(0) == 2 ? RAPPORT_FORMAT_JSON : RAPPORT_FORMAT_PROTOBUF;
  std::unique_ptr<rapport::Engine> engine;
  rapport_engine* e = nullptr;
  Side cpp{"cpp"};
  cpp.begin = [&] { engine = *rapport::Engine::Create(); };
  cpp.step = [&](size_t k) {
    const std::string& bytes = (*g_batches)[k];
    google::protobuf::Arena arena;
    auto* batch = google::protobuf::Arena::CreateMessage<rapport::v1::EventBatch>(&arena);
    if (!batch->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) Die("parse");
    auto r = engine->IngestBatch(*batch);
    if (!r.ok()) Die(std::string(r.status().message()));
    benchmark::DoNotOptimize(r);
  };
  cpp.end = [&] { engine.reset(); };
  Side c{"c"};
  c.begin = [&] { e = NewEngine(); };
  c.step = [&](size_t k) {
    const std::string& bytes = delimited ? (*g_delimited)[k] : (*g_batches)[k];
    uint8_t* out = nullptr;
    size_t len = 0;
    if (rapport_ingest_batch_v2(
            want_result ? &out : nullptr, want_result ? &len : nullptr, e,
            reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
            delimited ? RAPPORT_FORMAT_PROTOBUF_DELIMITED : RAPPORT_FORMAT_PROTOBUF,
            RAPPORT_BATCH_ATOMIC, result_format) != RAPPORT_OK) {
      Die(rapport_last_error_message());
    }
    rapport_free(out);
  };
  c.end = [&] { rapport_engine_destroy(e); };
  Interleave(state, g_batches->size(),
             static_cast<double>(g_events) / static_cast<double>(g_batches->size()), {cpp, c});
}
BENCHMARK(BM_IngestBatch)
    ->ArgName("result")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Batched ingest of JSON lines (kBatch lines per step). The C++ side:
// rapport::EventsFromJsonLines, then IngestBatch over the vector; the C
// side: rapport_ingest_batch with RAPPORT_FORMAT_JSON_LINES, no result.
std::vector<std::string>* g_json_batches = nullptr;
void BM_IngestJsonLines(benchmark::State& state) {
  std::unique_ptr<rapport::Engine> engine;
  rapport_engine* e = nullptr;
  Side cpp{"cpp"};
  cpp.begin = [&] { engine = *rapport::Engine::Create(); };
  cpp.step = [&](size_t k) {
    auto events = rapport::EventsFromJsonLines((*g_json_batches)[k]);
    if (!events.ok()) Die(std::string(events.status().message()));
    auto r = engine->IngestBatch(*events);
    if (!r.ok()) Die(std::string(r.status().message()));
    benchmark::DoNotOptimize(r);
  };
  cpp.end = [&] { engine.reset(); };
  Side c{"c"};
  c.begin = [&] { e = NewEngine(); };
  c.step = [&](size_t k) {
    const std::string& text = (*g_json_batches)[k];
    if (rapport_ingest_batch(nullptr, nullptr, e, reinterpret_cast<const uint8_t*>(text.data()),
                             text.size(), RAPPORT_FORMAT_JSON_LINES,
                             RAPPORT_BATCH_ATOMIC) != RAPPORT_OK) {
      Die(rapport_last_error_message());
    }
  };
  c.end = [&] { rapport_engine_destroy(e); };
  Interleave(state, g_json_batches->size(),
             static_cast<double>(g_events) / static_cast<double>(g_json_batches->size()), {cpp, c});
}
BENCHMARK(BM_IngestJsonLines)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// The JSON parse alone, as the C ABI runs it on what the Python binding
// sends from dicts: one rapport.v1.EventBatch document ({"events":[...]}) of
// kBatch events, parsed onto an arena. No engine: this is the parser's share
// of the C call, which bounds Python's rate from dicts.
std::vector<std::string>* g_json_docs = nullptr;
void BM_ParseJsonBatch(benchmark::State& state) {
  int64_t events = 0;
  for (auto _ : state) {
    for (const std::string& doc : *g_json_docs) {
      google::protobuf::Arena arena;
      auto* batch = google::protobuf::Arena::CreateMessage<rapport::v1::EventBatch>(&arena);
      if (absl::Status st = rapport::FromJson(doc, batch); !st.ok()) Die(std::string(st.message()));
      events += batch->events_size();
    }
  }
  state.SetItemsProcessed(events);
}
BENCHMARK(BM_ParseJsonBatch)->Unit(benchmark::kMillisecond);

// Timers fired through Advance. Accounts are created evenly over 10 days,
// each with one pending timer 30 days later that creates a task; step k
// advances each of four engines (same config, same events) to day k + 1
// of those, so a tenth of the timers fire and each produces an action:
// `cpp` Engine::Advance (a new ActionList per call), `cpp_into`
// Engine::AdvanceInto into a list kept across calls, `cpp_bytes` the same
// and then the list serialized into a kept string (a C++ host that needs
// the bytes, as every C host gets them), `c` rapport_advance with the
// actions as protobuf. The lists are checked to be the same bytes (off the
// clock).
constexpr int64_t kDay = 86400000000;
constexpr int64_t kStart = 1735689600000000;  // 2025-01-01
constexpr size_t kDays = 9;

void BM_AdvanceDay(benchmark::State& state) {
  const int64_t accounts = EnvOr("RAPPORT_BENCH_TIMERS", 200000);
  rapport::v1::EngineConfig config;
  const std::string rule = absl::StrCat(
      "id: 'bench' version: 1 rules { id: 'follow_up' "
      "trigger { on_event { filter { type: EVENT_TYPE_ACCOUNT_UPSERTED } } } delay_us: ",
      30 * kDay,
      " actions { kind: ACTION_KIND_CREATE_TASK assignee: ASSIGNEE_OWNER "
      "due_offset_us: 86400000000 template: 'follow_up' } }");
  if (!google::protobuf::TextFormat::ParseFromString(rule, config.mutable_rule_set())) Die("rule");
  rapport::v1::EventBatch stream;
  {
    rapport::v1::Event* e = stream.add_events();
    e->set_event_id("m");
    e->set_occurred_at_us(kStart);
    e->mutable_manager_upserted()->set_manager_id("m");
    for (int64_t i = 0; i < accounts; ++i) {
      e = stream.add_events();
      e->set_event_id(absl::StrCat("a", i));
      e->set_occurred_at_us(kStart + i * (10 * kDay / accounts));
      auto* p = e->mutable_account_upserted();
      p->set_account_id(absl::StrCat("c", i));
      p->set_kind(rapport::v1::ACCOUNT_KIND_CLIENT);
      p->set_owner_id("m");
    }
  }
  const std::string config_bytes = config.SerializeAsString();
  const std::string stream_bytes = stream.SerializeAsString();
  std::unique_ptr<rapport::Engine> cpp, cpp_into;
  rapport_engine* c = nullptr;
  auto day = [](size_t k) { return kStart + 30 * kDay + static_cast<int64_t>(k + 1) * kDay; };
  int64_t fired = 0;
  std::vector<std::string> cpp_bytes(kDays), into_bytes(kDays), ser_bytes(kDays), c_bytes(kDays);
  rapport::v1::ActionList kept;
  Side advance{"cpp"};
  advance.begin = [&] {
    cpp = *rapport::Engine::Create(config);
    if (!cpp->IngestBatch(stream).ok()) Die("ingest");
  };
  absl::StatusOr<rapport::v1::ActionList> list;
  advance.step = [&](size_t k) { list = cpp->Advance(day(k)); };
  advance.after_step = [&](size_t k) {
    if (!list.ok()) Die(std::string(list.status().message()));
    fired += list->actions_size();
    cpp_bytes[k] = list->SerializeAsString();
    list = rapport::v1::ActionList();
  };
  advance.end = [&] { cpp.reset(); };
  Side advance_into{"cpp_into"};
  advance_into.begin = [&] {
    cpp_into = *rapport::Engine::Create(config);
    if (!cpp_into->IngestBatch(stream).ok()) Die("ingest");
  };
  advance_into.step = [&](size_t k) {
    if (!cpp_into->AdvanceInto(day(k), &kept).ok()) Die("AdvanceInto");
  };
  advance_into.after_step = [&](size_t k) { into_bytes[k] = kept.SerializeAsString(); };
  advance_into.end = [&] { cpp_into.reset(); };
  std::unique_ptr<rapport::Engine> cpp_ser;
  rapport::v1::ActionList kept_ser;
  std::string serialized;
  Side advance_bytes{"cpp_bytes"};
  advance_bytes.begin = [&] {
    cpp_ser = *rapport::Engine::Create(config);
    if (!cpp_ser->IngestBatch(stream).ok()) Die("ingest");
  };
  advance_bytes.step = [&](size_t k) {
    if (!cpp_ser->AdvanceInto(day(k), &kept_ser).ok()) Die("AdvanceInto");
    if (!kept_ser.SerializeToString(&serialized)) Die("serialize");
  };
  advance_bytes.after_step = [&](size_t k) { ser_bytes[k] = serialized; };
  advance_bytes.end = [&] { cpp_ser.reset(); };
  Side c_advance{"c"};
  c_advance.begin = [&] {
    c = NewEngine(config_bytes);
    if (rapport_ingest_batch(
            nullptr, nullptr, c, reinterpret_cast<const uint8_t*>(stream_bytes.data()),
            stream_bytes.size(), RAPPORT_FORMAT_PROTOBUF, RAPPORT_BATCH_ATOMIC) != RAPPORT_OK) {
      Die(rapport_last_error_message());
    }
  };
  uint8_t* out = nullptr;
  size_t len = 0;
  c_advance.step = [&](size_t k) {
    if (rapport_advance(&out, &len, c, day(k), RAPPORT_FORMAT_PROTOBUF) != RAPPORT_OK) {
      Die(rapport_last_error_message());
    }
  };
  c_advance.after_step = [&](size_t k) {
    c_bytes[k].assign(reinterpret_cast<const char*>(out), len);
    rapport_free(out);
  };
  c_advance.end = [&] {
    rapport_engine_destroy(c);
    if (c_bytes != cpp_bytes || into_bytes != cpp_bytes || ser_bytes != cpp_bytes) {
      Die("the actions differ");
    }
  };
  Interleave(state, kDays, 1, {advance, advance_into, advance_bytes, c_advance});
  // Interleave counted Advance calls per CPU second; scale to timers.
  const double per_advance = static_cast<double>(fired) /
                             static_cast<double>(kDays * static_cast<size_t>(state.iterations()));
  for (const char* side : {"cpp", "cpp_into", "cpp_bytes", "c"}) {
    const std::string key = std::string(side) + "_per_s";
    state.counters[key] = state.counters[key] * per_advance;
  }
  state.counters["fired_per_advance"] = per_advance;
}
BENCHMARK(BM_AdvanceDay)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

double WallSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// --time-cpp: what a C++ host does with a delimited stream arriving in
// chunks of `batch` events: parse each chunk into an arena EventBatch,
// IngestBatch, keep the result. Prints one line per run, "events wall_s
// cpu_s", each into a fresh engine created off the clock.
int TimeCpp(const std::string& stream, size_t batch, int repeat, bool no_rules) {
  const std::vector<std::string> events = SplitDelimited(stream);
  rapport::v1::EngineConfig config;
  if (no_rules) {
    config.mutable_rule_set()->set_id("none");
    config.mutable_rule_set()->set_version(1);
  }
  for (int run = 0; run < repeat; ++run) {
    auto engine = rapport::Engine::Create(config);
    if (!engine.ok()) Die(std::string(engine.status().message()));
    int64_t accepted = 0;
    const double wall = WallSeconds();
    const double cpu = CpuSeconds();
    for (size_t i = 0; i < events.size(); i += batch) {
      google::protobuf::Arena arena;
      auto* b = google::protobuf::Arena::CreateMessage<rapport::v1::EventBatch>(&arena);
      for (size_t j = i; j < std::min(i + batch, events.size()); ++j) {
        if (!b->add_events()->ParseFromString(events[j])) Die("parse");
      }
      auto r = (*engine)->IngestBatch(*b);
      if (!r.ok()) Die(std::string(r.status().message()));
      accepted += r->accepted();
    }
    std::printf("%lld %.6f %.6f\n", static_cast<long long>(accepted), WallSeconds() - wall,
                CpuSeconds() - cpu);
    std::fflush(stdout);
  }
  return 0;
}

#else

// The shape of the shared library's own rows: each iteration ingests all
// of `items` into a fresh engine (created and destroyed off the clock), one
// `call(engine, item)` per item; a call that fails skips the benchmark with
// the library's message.
template <typename Call>
void OnFreshEngines(benchmark::State& state, const std::vector<std::string>& items, int64_t events,
                    Call call) {
  for (auto _ : state) {
    state.PauseTiming();
    rapport_engine* e = NewEngine();
    state.ResumeTiming();
    for (const std::string& item : items) {
      if (call(e, item) != RAPPORT_OK) state.SkipWithError(rapport_last_error_message());
    }
    state.PauseTiming();
    rapport_engine_destroy(e);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * events);
}

// The C ABI through the shared library, on its own: the rates a C host
// sees. arg 0: no result; 1: the IngestResult as protobuf (actions included).
void BM_CApiIngestBatch(benchmark::State& state) {
  const bool want_result = state.range(0) != 0;
  OnFreshEngines(state, *g_batches, g_events, [&](rapport_engine* e, const std::string& bytes) {
    uint8_t* out = nullptr;
    size_t len = 0;
    const int rc =
        rapport_ingest_batch(want_result ? &out : nullptr, want_result ? &len : nullptr, e,
                             reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                             RAPPORT_FORMAT_PROTOBUF, RAPPORT_BATCH_ATOMIC);
    rapport_free(out);
    return rc;
  });
}
BENCHMARK(BM_CApiIngestBatch)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// The per-call floor: a call that does nothing but cross the boundary. The
// comparison in c_api_bench_cpp calls the C ABI without crossing it; this
// bounds what the crossing adds (a few calls per batch of kBatch events).
void BM_CApiCallOverhead(benchmark::State& state) {
  rapport_engine* e = NewEngine();
  for (auto _ : state) benchmark::DoNotOptimize(rapport_events_accepted(e));
  rapport_engine_destroy(e);
}
BENCHMARK(BM_CApiCallOverhead);

// One event per call: what a host pays when it does not batch.
void BM_CApiIngestEventPerCall(benchmark::State& state) {
  const std::vector<std::string> events =
      SplitDelimited(ReadFile(std::getenv("RAPPORT_BENCH_STREAM")));
  OnFreshEngines(state, events, static_cast<int64_t>(events.size()),
                 [](rapport_engine* e, const std::string& ev) {
                   return rapport_ingest_event(nullptr, nullptr, e,
                                               reinterpret_cast<const uint8_t*>(ev.data()),
                                               ev.size(), RAPPORT_FORMAT_PROTOBUF);
                 });
}
BENCHMARK(BM_CApiIngestEventPerCall)->Unit(benchmark::kMillisecond);

// A dashboard refreshed through the C ABI: 24 months (2024 and 2025) by
// manager, as of a UTC day after every fact (so that the engine's KPI cells
// answer it alone, lib/kpi/report.h), the report as protobuf. arg 0:
// rapport_kpis(), a new report per call; 1: rapport_kpi_view_refresh(), the
// report the view keeps refilled (Engine::KpisInto). The two are checked to
// give the same bytes before timing; the first query (which builds the
// engine's KPI cells) is not timed.
void BM_CApiKpiDashboard(benchmark::State& state) {
  const bool view = state.range(0) != 0;
  std::string query;
  AppendVarint(&query, 1 << 3);  // start_us: 2024-01-01
  AppendVarint(&query, 1704067200000000);
  AppendVarint(&query, 2 << 3);  // end_us: 2026-01-01
  AppendVarint(&query, 1767225600000000);
  AppendVarint(&query, 3 << 3);  // as_of_us: 2100-01-01, a day after every fact
  AppendVarint(&query, 4102444800000000);
  AppendVarint(&query, 4 << 3);  // bucket: BUCKET_MONTH
  AppendVarint(&query, 3);
  AppendVarint(&query, 6 << 3);  // group_by: GROUP_BY_MANAGER
  AppendVarint(&query, 1);
  const auto* q = reinterpret_cast<const uint8_t*>(query.data());
  rapport_engine* e = NewEngine();
  for (const std::string& bytes : *g_batches) {
    if (rapport_ingest_batch(nullptr, nullptr, e, reinterpret_cast<const uint8_t*>(bytes.data()),
                             bytes.size(), RAPPORT_FORMAT_PROTOBUF,
                             RAPPORT_BATCH_ATOMIC) != RAPPORT_OK) {
      Die(rapport_last_error_message());
    }
  }
  rapport_kpi_view* v = nullptr;
  uint8_t* report = nullptr;
  size_t report_len = 0;
  const uint8_t* kept = nullptr;
  size_t kept_len = 0;
  if (rapport_kpi_view_create(&v, e, q, query.size(), RAPPORT_FORMAT_PROTOBUF) != RAPPORT_OK ||
      rapport_kpi_view_refresh(&kept, &kept_len, v) != RAPPORT_OK ||
      rapport_kpis(&report, &report_len, e, q, query.size(), RAPPORT_FORMAT_PROTOBUF) !=
          RAPPORT_OK) {
    Die(rapport_last_error_message());
  }
  if (kept_len != report_len || std::memcmp(kept, report, report_len) != 0) {
    Die("the view's report differs from rapport_kpis()");
  }
  rapport_free(report);
  for (auto _ : state) {
    if (view) {
      if (rapport_kpi_view_refresh(&kept, &kept_len, v) != RAPPORT_OK) {
        Die(rapport_last_error_message());
      }
      benchmark::DoNotOptimize(kept);
    } else {
      if (rapport_kpis(&report, &report_len, e, q, query.size(), RAPPORT_FORMAT_PROTOBUF) !=
          RAPPORT_OK) {
        Die(rapport_last_error_message());
      }
      rapport_free(report);
    }
  }
  state.counters["report_bytes"] = static_cast<double>(kept_len);
  rapport_kpi_view_destroy(v);
  rapport_engine_destroy(e);
}
BENCHMARK(BM_CApiKpiDashboard)->ArgName("view")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

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
  std::vector<char*> rest = {argv[0]};
#ifdef RAPPORT_BENCH_CPP
  // Five repetitions unless the command line says otherwise (a later flag
  // wins): the comparison's figures are the medians over them.
  static char kRepetitions[] = "--benchmark_repetitions=5";
  rest.push_back(kRepetitions);
  // c_api_bench_cpp --write-stream=PATH [--write-json=PATH]
  //                 | --read-stream=PATH [gbench flags]
  // (--write-json: the same stream as JSON lines, for bench/python_ingest.py.)
  //                 | --time-cpp=PATH --batch=N --repeat=R [--no-rules]
  // (--time-cpp: the C++ API's rate on a delimited stream cut into batches
  // of N events, for bench/python_ingest.py's Python/C++ ratio.)
  std::string write_path, json_path, read_path, time_path;
  size_t time_batch = kBatch;
  int time_repeat = 1;
  bool no_rules = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--time-cpp=", 0) == 0)
      time_path = a.substr(11);
    else if (a.rfind("--batch=", 0) == 0)
      time_batch = static_cast<size_t>(std::max(1LL, std::atoll(a.c_str() + 8)));
    else if (a.rfind("--repeat=", 0) == 0)
      time_repeat = std::max(1, std::atoi(a.c_str() + 9));
    else if (a == "--no-rules")
      no_rules = true;
    else if (a.rfind("--write-stream=", 0) == 0)
      write_path = a.substr(15);
    else if (a.rfind("--write-json=", 0) == 0)
      json_path = a.substr(13);
    else if (a.rfind("--read-stream=", 0) == 0)
      read_path = a.substr(14);
    else
      rest.push_back(argv[i]);
  }
  if (!write_path.empty()) {
    rapport::testing::GeneratorOptions o;
    o.max_events = EnvOr("RAPPORT_BENCH_EVENTS", 500000);
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
  if (!time_path.empty()) return TimeCpp(ReadFile(time_path), time_batch, time_repeat, no_rules);
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
  if (RunHelper({helper, "--write-stream=" + read_path}) != 0) return 2;
  setenv("RAPPORT_BENCH_STREAM", read_path.c_str(), 1);
  for (int i = 1; i < argc; ++i) rest.push_back(argv[i]);
#endif
  const std::vector<std::string> events = SplitDelimited(ReadFile(read_path));
  const std::vector<std::string> batches = Batches(events);
  g_batches = &batches;
#ifdef RAPPORT_BENCH_CPP
  // The same batches as delimited streams, for BM_IngestBatch/result:3.
  std::vector<std::string> delimited;
  for (size_t i = 0; i < events.size(); i += kBatch) {
    std::string d;
    for (size_t j = i; j < std::min(i + kBatch, events.size()); ++j) {
      AppendVarint(&d, events[j].size());
      d += events[j];
    }
    delimited.push_back(std::move(d));
  }
  g_delimited = &delimited;
#endif
  g_events = static_cast<int64_t>(events.size());
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
#ifdef RAPPORT_BENCH_CPP
  // The same batches as JSON lines, for BM_IngestJsonLines.
  std::vector<std::string> json_batches;
  for (const std::string& bytes : batches) {
    rapport::v1::EventBatch batch;
    if (!batch.ParseFromString(bytes)) Die("parse");
    std::string text;
    for (const rapport::v1::Event& e : batch.events()) text += *rapport::ToJson(e) + "\n";
    json_batches.push_back(std::move(text));
  }
  g_json_batches = &json_batches;
  // The same batches as EventBatch JSON documents, for BM_ParseJsonBatch.
  std::vector<std::string> json_docs;
  for (const std::string& bytes : batches) {
    rapport::v1::EventBatch batch;
    if (!batch.ParseFromString(bytes)) Die("parse");
    json_docs.push_back(*rapport::ToJson(batch));
  }
  g_json_docs = &json_docs;
  // One untimed pass first, so that no side is measured while the
  // allocator first grows the heap.
  {
    auto engine = *rapport::Engine::Create();
    for (const std::string& bytes : batches) {
      rapport::v1::EventBatch batch;
      if (!batch.ParseFromString(bytes) || !engine->IngestBatch(batch).ok()) Die("warm-up");
    }
  }
  Capture capture;
  benchmark::RunSpecifiedBenchmarks(&capture);
  // The median aggregate of `counter` in the run whose name starts with `run`.
  auto pct = [&](const std::string& run, const char* counter) {
    for (auto& [name, counters] : capture.medians) {
      if (name.rfind(run, 0) != 0 || counters.count(counter) == 0) continue;
      char buf[32];
      std::snprintf(buf, sizeof buf, "%+.1f %%", counters[counter]);
      return std::string(buf);
    }
    return std::string("n/a");
  };
  std::printf(
      "\nC ABI over the C++ API, CPU time: median over the repetitions of the median step "
      "(interleaved, in one process):\n"
      "  batched ingest, protobuf: %s without the result, %s with it (serialized), %s with it as "
      "JSON; %s from a delimited stream\n"
      "  batched ingest, JSON lines: %s\n"
      "  Advance, a day of timers: %s over Advance (C++ AdvanceInto with a kept list: %s; "
      "AdvanceInto then serialized: %s)\n",
      pct("BM_IngestBatch/result:0/", "c_pct").c_str(),
      pct("BM_IngestBatch/result:1/", "c_pct").c_str(),
      pct("BM_IngestBatch/result:2/", "c_pct").c_str(),
      pct("BM_IngestBatch/result:3/", "c_pct").c_str(), pct("BM_IngestJsonLines/", "c_pct").c_str(),
      pct("BM_AdvanceDay/", "c_pct").c_str(), pct("BM_AdvanceDay/", "cpp_into_pct").c_str(),
      pct("BM_AdvanceDay/", "cpp_bytes_pct").c_str());
  return 0;
#else
  // The comparison first (in the helper, which reads the same stream), then
  // the shared library's own rows.
  std::vector<std::string> helper_args = {helper, "--read-stream=" + read_path};
  for (int i = 1; i < argc; ++i) helper_args.push_back(argv[i]);
  std::cout << "== the C ABI against the C++ API, interleaved in one process "
               "(c_api_bench_cpp: rapport_core with lib/c_api compiled in), "
            << g_events << " events\n";
  if (RunHelper(helper_args) != 0) return 2;
  std::cout << "== the C ABI through librapport.so, the same events\n";
  Capture capture;
  benchmark::RunSpecifiedBenchmarks(&capture);
  std::remove(read_path.c_str());
  return 0;
#endif
}
