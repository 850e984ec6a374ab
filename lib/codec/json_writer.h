// A writer of canonical JSON for the ingest results and action lists that the
// C ABI and the Python binding hand back on every batch.
//
// protobuf 3.21's MessageToJsonString serializes the message to binary and
// renders that through a generic object writer: up to a quarter of the
// protobuf-bytes ingest from Python went there (issue #6). These messages are
// flat (integers, strings, enums, repeated submessages), so a direct writer
// is short. It must give byte for byte what rapport::ToJson gave through the
// printer (preserve_proto_field_names, no other option); tests/json_test.cc
// proves it on generated results and on messages set field by field through
// reflection. Whatever it does not handle (invalid UTF-8, unknown fields, a
// schema that has grown fields it does not know) it refuses, and the caller
// falls back to the printer.
#ifndef RAPPORT_LIB_CODEC_JSON_WRITER_H_
#define RAPPORT_LIB_CODEC_JSON_WRITER_H_

#include <string>

#include "google/protobuf/message.h"

namespace rapport {

// Appends the canonical JSON of `message` to `out` and returns true when
// `message` is a rapport.v1.IngestResult, ActionList, Action or Rejection
// the writer handles; otherwise returns false with `out` as it was.
bool AppendResultJson(const google::protobuf::Message& message, std::string* out);

}  // namespace rapport

#endif  // RAPPORT_LIB_CODEC_JSON_WRITER_H_
