// The `rapport` command: the library's main job from a shell.
//
//   rapport demo [--events N] [--seed S]
//
// Exit codes: 0 success, 1 a failure the message explains, 2 bad usage.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"

namespace {

constexpr char kUsage[] =
    "usage: rapport demo [--events N] [--seed S]\n"
    "\n"
    "  demo   generate a company's event stream, ingest it, and print accounts\n"
    "         by status, deals by stage and the deals stuck past their SLA.\n"
    "         --events N   events to generate (default 200000)\n"
    "         --seed S     generator seed (default 1)\n"
    "\n"
    "Exit codes: 0 success, 1 failure (the message says why), 2 bad usage.\n";

std::string Day(int64_t us) {
  return absl::FormatTime("%Y-%m-%d", absl::FromUnixMicros(us), absl::UTCTimeZone());
}

int Demo(int argc, char** argv) {
  rapport::testing::GeneratorOptions options;
  options.max_events = 200000;
  for (int i = 0; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (std::strcmp(argv[i], "--events") == 0 && has_value &&
        absl::SimpleAtoi(argv[i + 1], &options.max_events) && options.max_events > 0) {
      ++i;
    } else if (std::strcmp(argv[i], "--seed") == 0 && has_value &&
               absl::SimpleAtoi(argv[i + 1], &options.seed)) {
      ++i;
    } else {
      std::fprintf(stderr, "rapport demo: bad argument '%s'\n%s", argv[i], kUsage);
      return 2;
    }
  }

  auto engine = rapport::Engine::Create();
  if (!engine.ok()) {
    std::fprintf(stderr, "rapport demo: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  const absl::Time start = absl::Now();
  const std::vector<rapport::v1::Event> events = rapport::testing::GenerateStream(options);
  const absl::Time generated = absl::Now();
  int64_t last = 0;
  for (size_t i = 0; i < events.size(); i += 10000) {
    const size_t n = std::min<size_t>(10000, events.size() - i);
    auto r = (*engine)->IngestBatch(absl::MakeConstSpan(events).subspan(i, n));
    if (!r.ok()) {
      std::fprintf(stderr, "rapport demo: %s\n", r.status().ToString().c_str());
      return 1;
    }
    for (size_t j = i; j < i + n; ++j) last = std::max(last, events[j].occurred_at_us());
  }
  const absl::Time ingested = absl::Now();
  if (auto st = (*engine)->Advance(last); !st.ok()) {
    std::fprintf(stderr, "rapport demo: %s\n", st.status().ToString().c_str());
    return 1;
  }
  const rapport::Engine& e = **engine;

  std::printf("Rapport demo: %zu generated events, %s .. %s\n", events.size(),
              Day(options.start_us).c_str(), Day(last).c_str());
  std::printf("  generated in %.2f s; ingested in %.2f s (%.0f events/s)\n\n",
              absl::ToDoubleSeconds(generated - start), absl::ToDoubleSeconds(ingested - generated),
              static_cast<double>(events.size()) / absl::ToDoubleSeconds(ingested - generated));

  std::printf("Accounts by status\n");
  const std::vector<int64_t> counts = e.AccountStatusCounts();
  for (int s = 1; s < static_cast<int>(counts.size()); ++s) {
    std::string name = rapport::v1::AccountStatus_Name(static_cast<rapport::v1::AccountStatus>(s));
    std::printf("  %-10s %8lld\n", absl::AsciiStrToLower(name.substr(15)).c_str(),
                static_cast<long long>(counts[s]));
  }

  std::printf("\nOpen and won deals by stage\n");
  std::string pipeline;
  for (const auto& c : e.DealsByStage()) {
    if (c.pipeline_id() != pipeline) {
      pipeline = c.pipeline_id();
      std::printf("  %s pipeline\n", pipeline.c_str());
    }
    std::printf("    %-14s %8lld\n", c.stage().c_str(), static_cast<long long>(c.deals()));
  }

  const auto stuck = e.StuckDeals(last);
  std::printf("\nDeals stuck past their stage's SLA at %s: %zu\n", Day(last).c_str(), stuck.size());
  for (size_t i = 0; i < stuck.size() && i < 10; ++i) {
    const auto& s = stuck[i];
    std::printf("  %-14s %-12s %-14s %5.1f days in stage (SLA %.0f days)\n", s.deal_id().c_str(),
                s.account_id().c_str(), s.stage().c_str(),
                static_cast<double>(s.dwell_us()) / rapport::kMicrosPerDay,
                static_cast<double>(s.sla_us()) / rapport::kMicrosPerDay);
  }
  if (stuck.size() > 10) std::printf("  ... and %zu more\n", stuck.size() - 10);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "demo") == 0) return Demo(argc - 2, argv + 2);
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "help") == 0)) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fputs(kUsage, stderr);
  return 2;
}
