// A fast parser of protobuf's canonical JSON mapping into a message.
//
// protobuf 3.21's JsonStringToMessage converts JSON to binary through a
// generic object writer and parses the binary again: correct, but about
// 40 000 events/s. Ingest from JSON lines (the command-line tool, the Python
// binding) needs far more, so this parser walks the text once and sets fields
// through reflection, with a table per message type (built once, shared for
// generated types) that maps a key to its field without the descriptor pool's
// symbol lookups; strings without escapes are views of the text. It must
// equal the reference parser in tests/json_reference_parser.h on every input
// (json_test, the event_json fuzz target). It accepts what the canonical
// mapping defines for Rapport's messages: lowerCamelCase or original field
// names, 64-bit integers as numbers or strings, enums by name or number, null
// for a default value, base64 bytes. Maps and well-known types are not in Rapport's schema and are
// refused.
#ifndef RAPPORT_LIB_CODEC_JSON_PARSER_H_
#define RAPPORT_LIB_CODEC_JSON_PARSER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace rapport {

// Objects nested deeper than this are refused.
inline constexpr int kMaxJsonDepth = 64;

// Parses `json` into `message` (merged into what it holds; clear it first).
// Errors: INVALID_ARGUMENT naming the offset and the field that is wrong.
absl::Status ParseJsonInto(absl::string_view json, google::protobuf::Message* message);

// How many parses so far gave up the wire transcoder for the reflection
// parser (inputs the transcoder cannot mean the same on); for tests.
int64_t JsonFallbacksForTesting();

}  // namespace rapport

#endif  // RAPPORT_LIB_CODEC_JSON_PARSER_H_
