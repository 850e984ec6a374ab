#include "tools/rapport/flags.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "rapport/engine.h"

namespace rapport::cli {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::set<std::string>& with_value,
                                   const std::set<std::string>& switches,
                                   const std::set<std::string>& repeated) {
  Flags f;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 3 || !absl::StartsWith(a, "--")) {
      f.positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (switches.count(name)) {
      if (value) return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      f.values_.emplace(name, "true");
    } else if (with_value.count(name) || repeated.count(name)) {
      if (!value) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
        }
        value = args[++i];
      }
      if (!repeated.count(name) && f.values_.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " is given twice"));
      }
      f.values_.emplace(name, *value);
      // A repeated flag takes every following word until the next flag.
      if (repeated.count(name)) {
        while (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "--")) {
          f.values_.emplace(name, args[++i]);
        }
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
  }
  return f;
}

std::string Flags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::vector<std::string> Flags::All(const std::string& name) const {
  std::vector<std::string> out;
  for (auto [it, end] = values_.equal_range(name); it != end; ++it) out.push_back(it->second);
  return out;
}

absl::StatusOr<int64_t> Flags::GetInt(const std::string& name, int64_t fallback) const {
  if (!Has(name)) return fallback;
  int64_t v;
  if (!absl::SimpleAtoi(Get(name), &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": '", Get(name), "' is not an integer"));
  }
  return v;
}

absl::StatusOr<int64_t> Flags::GetTime(const std::string& name,
                                       std::optional<int64_t> fallback) const {
  if (!Has(name)) {
    if (fallback) return *fallback;
    return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  }
  return ParseInstant(Get(name), "--" + name);
}

absl::StatusOr<int64_t> ParseInstant(const std::string& text, const std::string& what) {
  int64_t us;
  absl::Time t;
  std::string err;
  if (absl::SimpleAtoi(text, &us)) {
    t = absl::FromUnixMicros(us);
  } else if (!absl::ParseTime(absl::RFC3339_full, text, &t, &err) &&
             !absl::ParseTime("%Y-%m-%d", text, &t, &err) &&
             !absl::ParseTime("%Y-%m-%dT%H:%M", text, &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": '", text, "' is not a time (2025-03-01, 2025-03-01T10:00:00Z or microseconds)"));
  }
  us = absl::ToUnixMicros(t);
  if (us < kMinTimeUs || us >= kMaxTimeUs) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", text, "' is outside years 1970..9999"));
  }
  return us;
}

std::string FormatInstant(int64_t us) {
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixMicros(us), absl::UTCTimeZone());
}

std::string FormatDate(int64_t us) {
  return absl::FormatTime("%Y-%m-%d", absl::FromUnixMicros(us), absl::UTCTimeZone());
}

}  // namespace rapport::cli
