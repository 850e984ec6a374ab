#include "rapport/json.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"
#include "lib/codec/json_parser.h"
#include "lib/codec/json_writer.h"

namespace rapport {

absl::Status FromJson(absl::string_view json, google::protobuf::Message* message) {
  message->Clear();
  absl::Status st = ParseJsonInto(json, message);
  if (!st.ok()) {
    message->Clear();
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON for ", message->GetTypeName(), ": ", st.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  std::string out;
  // Ingest results and action lists, the C ABI's and Python's per-batch
  // output, by Rapport's own writer (byte-equal, lib/codec/json_writer.h);
  // anything else, or anything the writer refuses, by the printer.
  if (AppendResultJson(message, &out)) return out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  auto st = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!st.ok()) return absl::InternalError(std::string(st.message()));
  return out;
}

absl::StatusOr<std::vector<v1::Event>> EventsFromJsonLines(absl::string_view text) {
  std::vector<v1::Event> events;
  // At most one event per line: no moves of parsed events as the vector grows.
  events.reserve(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1);
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    v1::Event& e = events.emplace_back();
    if (absl::Status st = FromJson(line, &e); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", st.message()));
    }
  }
  return events;
}

}  // namespace rapport
