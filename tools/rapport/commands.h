// The subcommands of `rapport`. Each takes its arguments (after the command
// word), writes results to stdout and errors to stderr, and returns the exit
// code: 0 success, 1 failure (the message names the file, line and field),
// 2 bad usage, 3 some input was rejected (best-effort ingest).
#ifndef RAPPORT_TOOLS_RAPPORT_COMMANDS_H_
#define RAPPORT_TOOLS_RAPPORT_COMMANDS_H_

#include <string>
#include <vector>

namespace rapport::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRejected = 3;

int Demo(const std::vector<std::string>& args);
int IngestFiles(const std::vector<std::string>& args);
int Kpi(const std::vector<std::string>& args);
int Actions(const std::vector<std::string>& args);
int Grades(const std::vector<std::string>& args);
int Export(const std::vector<std::string>& args);
int Rules(const std::vector<std::string>& args);

}  // namespace rapport::cli

#endif  // RAPPORT_TOOLS_RAPPORT_COMMANDS_H_
