// A small command-line parser: `--name value`, `--name=value`, boolean
// `--name`, and positional arguments. Errors name the flag.
#ifndef RAPPORT_TOOLS_RAPPORT_FLAGS_H_
#define RAPPORT_TOOLS_RAPPORT_FLAGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rapport::cli {

class Flags {
 public:
  // `with_value` flags take a value; `switches` take none; anything else
  // starting with "--" is an error. A lone "-" is positional (stdin).
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& with_value,
                                     const std::set<std::string>& switches,
                                     const std::set<std::string>& repeated = {});

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // Every value of a repeated flag, in order.
  std::vector<std::string> All(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  // An instant: RFC 3339 ("2025-03-01T10:00:00Z"), a date ("2025-03-01",
  // midnight UTC), or microseconds since the epoch.
  absl::StatusOr<int64_t> GetTime(const std::string& name, std::optional<int64_t> fallback) const;

 private:
  std::multimap<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Parses an instant as Flags::GetTime does; `what` names it in errors.
absl::StatusOr<int64_t> ParseInstant(const std::string& text, const std::string& what);
// "2025-03-01 10:00" in UTC.
std::string FormatInstant(int64_t us);
std::string FormatDate(int64_t us);

}  // namespace rapport::cli

#endif  // RAPPORT_TOOLS_RAPPORT_FLAGS_H_
