// The `rapport` command: Rapport's main job from a shell.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/rapport/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: rapport <command> [options]   (rapport <command> --help for details)\n"
    "\n"
    "commands:\n"
    "  demo      generate a year of a company, run it through a persistent engine day by\n"
    "            day, print the dashboard and write DIR/dashboard.html\n"
    "  ingest    ingest JSON lines or length-delimited protobuf events into an engine\n"
    "  kpi       KPIs over a period, by bucket and group (table, JSON or CSV)\n"
    "  actions   advance the clock, list the outbox, acknowledge actions\n"
    "  grades    grades, tiers, assignment violations and drift of every manager\n"
    "  export    the engine's snapshot as protobuf or JSON\n"
    "  rules     rules check FILE: validate a rule set (text format or JSON)\n"
    "\n"
    "exit codes: 0 success; 1 failure (the message names the file, line and field);\n"
    "            2 bad usage; 3 some events were rejected (ingest --best-effort)\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace rapport::cli;
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "--help" || command == "help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (command == "demo") return Demo(args);
  if (command == "ingest") return IngestFiles(args);
  if (command == "kpi") return Kpi(args);
  if (command == "actions") return Actions(args);
  if (command == "grades") return Grades(args);
  if (command == "export") return Export(args);
  if (command == "rules") return Rules(args);
  std::fprintf(stderr, "rapport: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return kExitUsage;
}
