// The engine's state to and from rapport.v1.EngineSnapshot bytes.
#ifndef RAPPORT_LIB_STORAGE_SNAPSHOT_H_
#define RAPPORT_LIB_STORAGE_SNAPSHOT_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "lib/state/engine_state.h"

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

// Fills a fresh `state` from snapshot bytes, checking that they describe a
// consistent state (unique ids, references that resolve, known pipelines and
// stages). Errors: DATA_LOSS for bytes that do not parse, INVALID_ARGUMENT for
// an inconsistent snapshot, naming the part.
absl::Status ReadSnapshot(absl::string_view bytes, EngineState* state);

}  // namespace rapport

#endif  // RAPPORT_LIB_STORAGE_SNAPSHOT_H_
