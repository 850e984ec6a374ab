// Protobuf's canonical JSON mapping for Rapport's messages, in and out.
//
// Thread-safety: all functions are safe to call concurrently.
// Errors: INVALID_ARGUMENT naming what could not be parsed.
#ifndef RAPPORT_JSON_H_
#define RAPPORT_JSON_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "rapport/v1/event.pb.h"

namespace rapport {

// Parses canonical JSON (field names in lowerCamelCase or as in the .proto)
// into `message`, which is cleared first. Unknown fields are errors.
absl::Status FromJson(absl::string_view json, google::protobuf::Message* message);

// Canonical JSON of `message`, fields with default values omitted.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// Parses JSON lines (one Event per non-blank line). The error names the
// 1-based line number.
absl::StatusOr<std::vector<v1::Event>> EventsFromJsonLines(absl::string_view text);

}  // namespace rapport

#endif  // RAPPORT_JSON_H_
