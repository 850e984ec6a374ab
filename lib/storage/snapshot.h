// The engine's state to and from rapport.v1.EngineSnapshot bytes.
#ifndef RAPPORT_LIB_STORAGE_SNAPSHOT_H_
#define RAPPORT_LIB_STORAGE_SNAPSHOT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/arena.h"
#include "lib/state/engine_state.h"
#include "rapport/v1/snapshot.pb.h"

namespace rapport {

// Deterministic: every table is written in insertion order and no map field
// is used, so the same state always gives the same bytes.
std::string WriteSnapshot(const EngineState& state);
// The straightforward writer (one message at a time into a growing string)
// that WriteSnapshot must match byte for byte; for the tests.
std::string WriteSnapshotReference(const EngineState& state);
// WriteSnapshot's two-thread writer (RunBoth(parallel, ...)) with its splits
// forced, for the tests: the rows of the seven tables then the attributions
// (one per account), in output order, are one sequence; the second thread
// sizes rows [0, size_split) and writes the head and rows [0, write_split),
// the caller's thread the rest. A split past the last row is the last row,
// except SIZE_MAX: the split WriteSnapshot chooses.
std::string WriteSnapshotSplitForTesting(const EngineState& state, bool parallel, size_t size_split,
                                         size_t write_split);

// The bytes WriteSnapshot writes for a table row, an attribution, a stage
// visit, an amount or an action (its body, without tag and length), for the tests that compare them
// with protobuf's serializer; any other message as protobuf serializes it.
std::string SerializeRowForTesting(const google::protobuf::Message& row);

// ReadSnapshot's hand parser of a row (Account, Deal, StageVisit,
// Attribution, AccountAttribution, Order, Invoice, Complaint, Money), for the
// tests that compare it with protobuf's parse: parses bytes[0, n) (the bytes
// past n are there, as the rest of a snapshot is, but not parsed) into `row`,
// or returns false where it leaves the bytes to protobuf's parser (any other
// message type too).
bool ParseRowForTesting(absl::string_view bytes, size_t n, google::protobuf::Message* row);
// ReadSnapshot's parse with the rows by hand, without falling back to
// protobuf's parse of the whole: false where it would.
bool ParseSnapshotByHandForTesting(absl::string_view bytes, v1::EngineSnapshot* snap);

// Fills a fresh `state` from snapshot bytes, checking that they describe a
// consistent state (unique ids, references that resolve, known pipelines and
// stages). Errors: DATA_LOSS for bytes that do not parse, INVALID_ARGUMENT for
// an inconsistent snapshot, naming the part.
absl::Status ReadSnapshot(absl::string_view bytes, EngineState* state);

// Where ReadSnapshot's two-thread parse cuts `bytes`: the top-level record
// boundary that best balances the parse work of the two halves, or 0 if the
// bytes are parsed in one piece (their top-level records are malformed, or
// that cut would put a singular field on both sides).
size_t SnapshotSplitPoint(absl::string_view bytes);

// ReadSnapshot's two-thread parse with the cut chosen by the caller (exposed for
// the tests that compare it with protobuf's parse of the whole): parses
// bytes[0, cut) into `snap` and bytes[cut, end) into a second message on
// `arena` at once, then moves the second onto the first. `snap` is on
// `arena`; `cut` is a top-level record boundary and no singular field is on
// both sides of it. False if either half does not parse.
bool ParseSnapshotInHalves(absl::string_view bytes, size_t cut, google::protobuf::Arena* arena,
                           v1::EngineSnapshot* snap);

}  // namespace rapport

#endif  // RAPPORT_LIB_STORAGE_SNAPSHOT_H_
