#include "tools/rapport/commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"
#include "google/protobuf/util/delimited_message_util.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/snapshot.pb.h"
#include "tools/rapport/dashboard.h"
#include "tools/rapport/flags.h"
#include "tools/rapport/report_format.h"

namespace rapport::cli {
namespace {

constexpr size_t kBatch = 10000;

int Error(const std::string& message) {
  std::fprintf(stderr, "rapport: %s\n", message.c_str());
  return kExitFailure;
}
int Error(const absl::Status& status) { return Error(std::string(status.message())); }
int Usage(const std::string& message, const char* help) {
  std::fprintf(stderr, "rapport: %s\n\n%s", message.c_str(), help);
  return kExitUsage;
}

// Parses flags; prints help (exit 0) or a usage error (exit 2) itself and
// returns nullopt with *exit set then.
std::optional<Flags> ParseOrExit(const std::vector<std::string>& args, const char* help,
                                 const std::set<std::string>& with_value,
                                 std::set<std::string> switches, int* exit,
                                 const std::set<std::string>& repeated = {}) {
  switches.insert("help");
  absl::StatusOr<Flags> f = Flags::Parse(args, with_value, switches, repeated);
  if (!f.ok()) {
    *exit = Usage(std::string(f.status().message()), help);
    return std::nullopt;
  }
  if (f->Has("help")) {
    std::fputs(help, stdout);
    *exit = kExitOk;
    return std::nullopt;
  }
  return *std::move(f);
}

absl::StatusOr<std::unique_ptr<Engine>> OpenDir(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(dir);
  if (!e.ok()) {
    return absl::Status(e.status().code(), absl::StrCat(dir, ": ", e.status().message()));
  }
  return e;
}

std::string ActionKindName(v1::ActionKind k) {
  std::string n = v1::ActionKind_Name(k);
  return absl::AsciiStrToLower(n.substr(std::strlen("ACTION_KIND_")));
}

std::string ChannelName(v1::Channel c) {
  if (c == v1::CHANNEL_UNSPECIFIED) return "";
  return absl::AsciiStrToLower(v1::Channel_Name(c).substr(std::strlen("CHANNEL_")));
}

std::string MetricName(v1::GradeMetric m) {
  return absl::AsciiStrToLower(v1::GradeMetric_Name(m).substr(std::strlen("GRADE_METRIC_")));
}

std::string UnmetText(const v1::ManagerGrade& g) {
  std::vector<std::string> parts;
  for (const auto& u : g.unmet()) {
    std::string actual = u.has_actual() ? absl::StrFormat("%.4g", u.actual()) : "n/a";
    parts.push_back(absl::StrFormat("%s: %s%s %s < %.4g", u.grade(), MetricName(u.metric()),
                                    u.currency().empty() ? "" : " " + u.currency(), actual,
                                    u.required()));
  }
  return absl::StrJoin(parts, "; ");
}

// ---------------------------------------------------------------- ingest

constexpr char kIngestHelp[] =
    "usage: rapport ingest --dir DIR [--best-effort] [--format jsonl|pb] FILE... | -\n"
    "\n"
    "Ingests events into the persistent engine in DIR (created if new): JSON lines\n"
    "(one rapport.v1.Event per line, .jsonl/.json) or length-delimited protobuf\n"
    "(.pb/.binpb); '-' reads standard input (JSON lines unless --format pb).\n"
    "Events go in batches of 10000; each batch is atomic. Without --best-effort the\n"
    "first bad event stops the run (earlier batches stay; re-running is safe: repeats\n"
    "are no-ops). With --best-effort every rejected event is printed as\n"
    "FILE:LINE: reason and the rest goes on (exit code 3 if any was rejected).\n"
    "A progress line with events/s is shown on a terminal.\n";

struct Progress {
  bool tty = isatty(2) != 0;
  absl::Time start = absl::Now();
  absl::Time last = absl::InfinitePast();
  int64_t events = 0;
  void Tick(const std::string& file, bool final = false) {
    if (!tty) return;
    const absl::Time now = absl::Now();
    if (!final && now - last < absl::Milliseconds(150)) return;
    last = now;
    const double secs = std::max(1e-9, absl::ToDoubleSeconds(now - start));
    std::fprintf(stderr, "\r%s: %lld events, %.0f events/s   %s", file.c_str(),
                 static_cast<long long>(events), static_cast<double>(events) / secs,
                 final ? "\n" : "");
  }
};

class Ingester {
 public:
  Ingester(Engine& engine, bool best_effort) : engine_(engine), best_effort_(best_effort) {}

  // Adds one event (from `line` of `file`); ingests a full batch.
  bool Add(v1::Event event, const std::string& file, int64_t line) {
    batch_.push_back(std::move(event));
    lines_.push_back(line);
    file_ = file;
    return batch_.size() < kBatch || Flush();
  }

  // A line that did not parse.
  bool Bad(const std::string& file, int64_t line, absl::string_view message) {
    std::fprintf(stderr, "%s:%lld: %.*s\n", file.c_str(), static_cast<long long>(line),
                 static_cast<int>(message.size()), message.data());
    ++rejected_;
    return best_effort_;
  }

  bool Flush() {
    if (batch_.empty()) return true;
    IngestOptions options;
    options.mode = best_effort_ ? BatchMode::kBestEffort : BatchMode::kAtomic;
    absl::StatusOr<v1::IngestResult> r = engine_.IngestBatch(batch_, options);
    bool ok = true;
    if (!r.ok()) {
      // The message names the index of the first bad event: name its line.
      std::string msg(r.status().message());
      int64_t line = lines_.front();
      if (size_t at = msg.find("(index "); at != std::string::npos) {
        const int64_t index = std::atoll(msg.c_str() + at + 7);
        if (index >= 0 && index < static_cast<int64_t>(lines_.size())) line = lines_[index];
      }
      std::fprintf(stderr, "%s:%lld: %s\n", file_.c_str(), static_cast<long long>(line),
                   msg.c_str());
      ++rejected_;
      ok = false;
    } else {
      accepted_ += r->accepted();
      duplicates_ += r->duplicates();
      actions_ += r->actions_size();
      for (const v1::Rejection& rej : r->rejected()) {
        std::fprintf(stderr, "%s:%lld: %s\n", file_.c_str(),
                     static_cast<long long>(lines_[rej.index()]), rej.message().c_str());
        ++rejected_;
      }
    }
    batch_.clear();
    lines_.clear();
    return ok;
  }

  int64_t accepted_ = 0, duplicates_ = 0, rejected_ = 0, actions_ = 0;

 private:
  Engine& engine_;
  bool best_effort_;
  std::vector<v1::Event> batch_;
  std::vector<int64_t> lines_;
  std::string file_;
};

bool IngestJsonLines(FILE* in, const std::string& name, Ingester& ing, Progress& progress) {
  char* buf = nullptr;
  size_t cap = 0;
  ssize_t n;
  int64_t line = 0;
  bool ok = true;
  while (ok && (n = getline(&buf, &cap, in)) >= 0) {
    ++line;
    absl::string_view text =
        absl::StripAsciiWhitespace(absl::string_view(buf, static_cast<size_t>(n)));
    if (text.empty()) continue;
    v1::Event e;
    if (absl::Status st = FromJson(text, &e); !st.ok()) {
      ok = ing.Bad(name, line, st.message());
      continue;
    }
    ok = ing.Add(std::move(e), name, line);
    ++progress.events;
    progress.Tick(name);
  }
  std::free(buf);
  return ok && ing.Flush();
}

bool IngestDelimited(int fd, const std::string& name, Ingester& ing, Progress& progress) {
  google::protobuf::io::FileInputStream stream(fd);
  int64_t record = 0;
  while (true) {
    v1::Event e;
    bool clean_eof = false;
    ++record;
    if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(&e, &stream, &clean_eof)) {
      if (clean_eof) break;
      ing.Bad(name, record, "not a length-delimited rapport.v1.Event (record number given)");
      return false;  // the stream cannot be resynchronized
    }
    if (!ing.Add(std::move(e), name, record)) return false;
    ++progress.events;
    progress.Tick(name);
  }
  return ing.Flush();
}

}  // namespace

int IngestFiles(const std::vector<std::string>& args) {
  int exit = 0;
  auto flags = ParseOrExit(args, kIngestHelp, {"dir", "format"}, {"best-effort"}, &exit);
  if (!flags) return exit;
  if (!flags->Has("dir")) return Usage("--dir is required", kIngestHelp);
  if (flags->positional().empty()) return Usage("name at least one FILE (or -)", kIngestHelp);
  const std::string format = flags->Get("format");
  if (!format.empty() && format != "jsonl" && format != "pb") {
    return Usage("--format must be jsonl or pb", kIngestHelp);
  }
  auto engine = OpenDir(flags->Get("dir"));
  if (!engine.ok()) return Error(engine.status());
  Ingester ing(**engine, flags->Has("best-effort"));
  bool ok = true;
  for (const std::string& file : flags->positional()) {
    Progress progress;
    const bool pb =
        format == "pb" ||
        (format.empty() && (absl::EndsWith(file, ".pb") || absl::EndsWith(file, ".binpb")));
    const std::string name = file == "-" ? "<stdin>" : file;
    if (pb) {
      const int fd = file == "-" ? 0 : ::open(file.c_str(), O_RDONLY);
      if (fd < 0) return Error(absl::StrCat(file, ": ", std::strerror(errno)));
      ok = IngestDelimited(fd, name, ing, progress);
      if (fd != 0) ::close(fd);
    } else {
      FILE* in = file == "-" ? stdin : std::fopen(file.c_str(), "r");
      if (in == nullptr) return Error(absl::StrCat(file, ": ", std::strerror(errno)));
      ok = IngestJsonLines(in, name, ing, progress);
      if (in != stdin) std::fclose(in);
    }
    progress.Tick(name, true);
    if (!ok) break;
  }
  std::printf("accepted %lld, duplicates %lld, rejected %lld, actions %lld\n",
              static_cast<long long>(ing.accepted_), static_cast<long long>(ing.duplicates_),
              static_cast<long long>(ing.rejected_), static_cast<long long>(ing.actions_));
  if (!ok) return kExitFailure;
  return ing.rejected_ > 0 ? kExitRejected : kExitOk;
}

// ------------------------------------------------------------------- kpi

namespace {

constexpr char kKpiHelp[] =
    "usage: rapport kpi --dir DIR --from TIME --to TIME [--as-of TIME]\n"
    "                   [--bucket none|day|week|month|quarter|year]\n"
    "                   [--by none|manager|team|segment|source-partner|account-kind]\n"
    "                   [--tz ZONE] [--format table|json|csv]\n"
    "\n"
    "KPIs of SPEC §5 over [--from, --to). TIME is 2025-03-01, 2025-03-01T10:00:00Z or\n"
    "microseconds since the epoch; --tz is an IANA zone (default UTC) for buckets.\n";

absl::StatusOr<v1::KpiQuery> KpiQueryFrom(const Flags& f) {
  v1::KpiQuery q;
  auto from = f.GetTime("from", std::nullopt);
  if (!from.ok()) return from.status();
  auto to = f.GetTime("to", std::nullopt);
  if (!to.ok()) return to.status();
  auto as_of = f.GetTime("as-of", 0);
  if (!as_of.ok()) return as_of.status();
  q.set_start_us(*from);
  q.set_end_us(*to);
  q.set_as_of_us(*as_of);
  static const std::map<std::string, v1::Bucket> kBuckets = {
      {"none", v1::BUCKET_NONE},   {"day", v1::BUCKET_DAY},         {"week", v1::BUCKET_WEEK},
      {"month", v1::BUCKET_MONTH}, {"quarter", v1::BUCKET_QUARTER}, {"year", v1::BUCKET_YEAR}};
  static const std::map<std::string, v1::GroupBy> kGroups = {
      {"none", v1::GROUP_BY_NONE},
      {"manager", v1::GROUP_BY_MANAGER},
      {"team", v1::GROUP_BY_TEAM},
      {"segment", v1::GROUP_BY_SEGMENT},
      {"source-partner", v1::GROUP_BY_SOURCE_PARTNER},
      {"account-kind", v1::GROUP_BY_ACCOUNT_KIND}};
  auto b = kBuckets.find(f.Get("bucket", "none"));
  if (b == kBuckets.end())
    return absl::InvalidArgumentError("--bucket: unknown bucket '" + f.Get("bucket") + "'");
  auto g = kGroups.find(f.Get("by", "none"));
  if (g == kGroups.end())
    return absl::InvalidArgumentError("--by: unknown grouping '" + f.Get("by") + "'");
  q.set_bucket(b->second);
  q.set_group_by(g->second);
  q.set_time_zone(f.Get("tz"));
  return q;
}

}  // namespace

int Kpi(const std::vector<std::string>& args) {
  int exit = 0;
  auto flags = ParseOrExit(
      args, kKpiHelp, {"dir", "from", "to", "as-of", "bucket", "by", "tz", "format"}, {}, &exit);
  if (!flags) return exit;
  if (!flags->Has("dir")) return Usage("--dir is required", kKpiHelp);
  auto query = KpiQueryFrom(*flags);
  if (!query.ok()) return Usage(std::string(query.status().message()), kKpiHelp);
  const std::string format = flags->Get("format", "table");
  if (format != "table" && format != "json" && format != "csv") {
    return Usage("--format must be table, json or csv", kKpiHelp);
  }
  auto engine = OpenDir(flags->Get("dir"));
  if (!engine.ok()) return Error(engine.status());
  auto report = (*engine)->Kpis(*query);
  if (!report.ok()) return Error(report.status());
  if (format == "json") {
    auto json = ToJson(*report);
    if (!json.ok()) return Error(json.status());
    std::printf("%s\n", json->c_str());
  } else if (format == "csv") {
    std::fputs(ReportAsCsv(*report).c_str(), stdout);
  } else {
    std::fputs(ReportAsTable(*report).c_str(), stdout);
  }
  return kExitOk;
}

// --------------------------------------------------------------- actions

namespace {

constexpr char kActionsHelp[] =
    "usage: rapport actions --dir DIR [--advance-to TIME] [--ack ID...] [--format table|json]\n"
    "\n"
    "Advances the engine's clock (timers fire in time order, each once), acknowledges\n"
    "the named actions, then lists the outbox: actions not yet acknowledged.\n";

void PrintActions(const v1::ActionList& list) {
  std::printf("%-34s %-12s %-6s %-14s %-12s %-16s %-10s %s\n", "action", "kind", "rule", "assignee",
              "account", "due", "channel", "template");
  for (const v1::Action& a : list.actions()) {
    std::printf("%-34s %-12s %-6s %-14s %-12s %-16s %-10s %s\n", a.action_id().c_str(),
                ActionKindName(a.kind()).c_str(), a.rule_id().c_str(), a.assignee_id().c_str(),
                a.account_id().c_str(), FormatInstant(a.due_at_us()).c_str(),
                ChannelName(a.channel()).c_str(),
                (a.template_() + (a.to_stage().empty() ? "" : " -> " + a.to_stage())).c_str());
  }
}

}  // namespace

int Actions(const std::vector<std::string>& args) {
  int exit = 0;
  auto flags = ParseOrExit(args, kActionsHelp, {"dir", "advance-to", "format"}, {}, &exit, {"ack"});
  if (!flags) return exit;
  if (!flags->Has("dir")) return Usage("--dir is required", kActionsHelp);
  auto engine = OpenDir(flags->Get("dir"));
  if (!engine.ok()) return Error(engine.status());
  if (flags->Has("advance-to")) {
    auto t = flags->GetTime("advance-to", std::nullopt);
    if (!t.ok()) return Usage(std::string(t.status().message()), kActionsHelp);
    auto fired = (*engine)->Advance(*t);
    if (!fired.ok()) return Error(fired.status());
    std::fprintf(stderr, "advanced to %s: %d actions\n", FormatInstant(*t).c_str(),
                 fired->actions_size());
  }
  const std::vector<std::string> ack = flags->All("ack");
  if (!ack.empty()) {
    if (absl::Status st = (*engine)->Acknowledge(ack); !st.ok()) return Error(st);
    std::fprintf(stderr, "acknowledged %zu actions\n", ack.size());
  }
  const v1::ActionList outbox = (*engine)->Outbox();
  if (flags->Get("format") == "json") {
    auto json = ToJson(outbox);
    if (!json.ok()) return Error(json.status());
    std::printf("%s\n", json->c_str());
  } else {
    PrintActions(outbox);
  }
  return kExitOk;
}

// ---------------------------------------------------------------- grades

namespace {

constexpr char kGradesHelp[] =
    "usage: rapport grades --dir DIR [--as-of TIME] [--format table|json]\n"
    "\n"
    "Every manager's current and eligible grade with unmet requirements, bonus\n"
    "multiplier, accounts and hunter share (flagged below the policy's floor), and every\n"
    "assignment violation with a suggested owner. --as-of defaults to the engine's clock.\n";

void PrintGrades(const v1::GradeEvaluation& g) {
  std::printf("%-10s %-8s %-8s %5s %8s %7s  %s\n", "manager", "grade", "eligible", "bonus",
              "accounts", "hunter", "unmet requirements");
  for (const auto& m : g.managers()) {
    std::printf("%-10s %-8s %-8s %5.2f %8lld %7s  %s\n", m.manager_id().c_str(),
                m.current_grade().c_str(), m.eligible_grade().c_str(), m.bonus_multiplier(),
                static_cast<long long>(m.accounts_owned()),
                m.has_hunter_share() ? absl::StrFormat("%.0f%%%s", m.hunter_share() * 100,
                                                       m.hunter_drift() ? "!" : "")
                                           .c_str()
                                     : "-",
                UnmetText(m).c_str());
  }
  std::printf("\n%d violations\n", g.violations_size());
  for (int i = 0; i < g.violations_size() && i < 20; ++i) {
    const auto& v = g.violations(i);
    if (v.kind() == v1::Violation::KIND_TIER_ABOVE_GRADE) {
      std::printf("  account %s (tier %s) is above what %s may own; suggested owner: %s\n",
                  v.account_id().c_str(), v1::Tier_Name(v.tier()).substr(5).c_str(),
                  v.manager_id().c_str(),
                  v.suggested_owner_id().empty() ? "none" : v.suggested_owner_id().c_str());
    } else {
      std::printf(
          "  %s owns more accounts than the grade allows; suggested owner for the surplus: %s\n",
          v.manager_id().c_str(),
          v.suggested_owner_id().empty() ? "none" : v.suggested_owner_id().c_str());
    }
  }
  if (g.violations_size() > 20) std::printf("  ... and %d more\n", g.violations_size() - 20);
}

}  // namespace

int Grades(const std::vector<std::string>& args) {
  int exit = 0;
  auto flags = ParseOrExit(args, kGradesHelp, {"dir", "as-of", "format"}, {}, &exit);
  if (!flags) return exit;
  if (!flags->Has("dir")) return Usage("--dir is required", kGradesHelp);
  auto engine = OpenDir(flags->Get("dir"));
  if (!engine.ok()) return Error(engine.status());
  const int64_t clock = (*engine)->clock_us();
  auto as_of = flags->GetTime("as-of", clock > 0 ? clock : absl::ToUnixMicros(absl::Now()));
  if (!as_of.ok()) return Usage(std::string(as_of.status().message()), kGradesHelp);
  auto eval = (*engine)->Grades(*as_of);
  if (!eval.ok()) return Error(eval.status());
  if (flags->Get("format") == "json") {
    auto json = ToJson(*eval);
    if (!json.ok()) return Error(json.status());
    std::printf("%s\n", json->c_str());
  } else {
    PrintGrades(*eval);
  }
  return kExitOk;
}

// ---------------------------------------------------------------- export

namespace {
constexpr char kExportHelp[] =
    "usage: rapport export --dir DIR [--format pb|json] [--out FILE]\n"
    "\n"
    "Writes the engine's whole state (rapport.v1.EngineSnapshot) to FILE or stdout:\n"
    "deterministic protobuf bytes (default) or protobuf's canonical JSON.\n";
}  // namespace

int Export(const std::vector<std::string>& args) {
  int exit = 0;
  auto flags = ParseOrExit(args, kExportHelp, {"dir", "format", "out"}, {}, &exit);
  if (!flags) return exit;
  if (!flags->Has("dir")) return Usage("--dir is required", kExportHelp);
  const std::string format = flags->Get("format", "pb");
  if (format != "pb" && format != "json") return Usage("--format must be pb or json", kExportHelp);
  auto engine = OpenDir(flags->Get("dir"));
  if (!engine.ok()) return Error(engine.status());
  auto bytes = (*engine)->Snapshot();
  if (!bytes.ok()) return Error(bytes.status());
  std::string out = *std::move(bytes);
  if (format == "json") {
    v1::EngineSnapshot snap;
    if (!snap.ParseFromString(out)) return Error("the snapshot does not parse");
    auto json = ToJson(snap);
    if (!json.ok()) return Error(json.status());
    out = *std::move(json) + "\n";
  }
  if (flags->Has("out")) {
    std::ofstream f(flags->Get("out"), std::ios::binary);
    f << out;
    if (!f.good()) return Error(absl::StrCat(flags->Get("out"), ": ", std::strerror(errno)));
  } else {
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  return kExitOk;
}

// ----------------------------------------------------------------- rules

namespace {
constexpr char kRulesHelp[] =
    "usage: rapport rules check FILE\n"
    "\n"
    "Validates a rule set (rapport.v1.RuleSet, text format or JSON) against the default\n"
    "pipelines: unknown stages or templates, impossible assignees, move-stage loops.\n";
}  // namespace

int Rules(const std::vector<std::string>& args) {
  int exit = 0;
  auto flags = ParseOrExit(args, kRulesHelp, {}, {}, &exit);
  if (!flags) return exit;
  if (flags->positional().size() != 2 || flags->positional()[0] != "check") {
    return Usage("expected: rules check FILE", kRulesHelp);
  }
  const std::string& file = flags->positional()[1];
  std::ifstream in(file, std::ios::binary);
  if (!in) return Error(absl::StrCat(file, ": ", std::strerror(errno)));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto rules = Engine::LoadRuleSet(text);
  if (!rules.ok()) return Error(absl::StrCat(file, ": ", rules.status().message()));
  std::printf("%s: ok: rule set '%s' version %lld, %d rules\n", file.c_str(), rules->id().c_str(),
              static_cast<long long>(rules->version()), rules->rules_size());
  return kExitOk;
}

}  // namespace rapport::cli
