// Keeping the KPI fact store in step with the engine: one hook per applied
// event, and the store's part of a snapshot.
#ifndef RAPPORT_LIB_KPI_INGEST_H_
#define RAPPORT_LIB_KPI_INGEST_H_

#include <cstdint>

#include "absl/status/status.h"
#include "lib/state/engine_state.h"
#include "lib/state/event_refs.h"
#include "rapport/v1/event.pb.h"
#include "rapport/v1/snapshot.pb.h"

namespace rapport::kpi {

// Records the facts of `event`, which ApplyEvent has just applied to `state`
// with arrival sequence `seq` and the rows `refs`. Cannot fail; amortized
// O(1) for events in time order, O(block) for late ones.
void RecordFacts(const v1::Event& event, int64_t seq, const EventRefs& refs, EngineState* state);

// The store's facts as snapshot columns (deterministic).
void WriteFactColumns(const EngineState& state, v1::FactColumns* out);

// Rebuilds the store of a restored `state` (tables already filled) from
// snapshot columns, checking every index, time and code.
// Errors: INVALID_ARGUMENT naming the column and the offending entry.
absl::Status ReadFactColumns(const v1::FactColumns& in, EngineState* state);

// ReadFactColumns in its steps, for a restore on two threads; run in this
// order they are ReadFactColumns, error for error.
//
// The checks of the columns' shape, the strings, the store's entity rows
// from the tables, and if `reserve`, the timelines reserved (the part needing
// no row). ReadFactRowsOnTwoThreads reserves them itself: pass false there.
absl::Status ReadFactColumnsHead(const v1::FactColumns& in, EngineState* state, bool reserve);
// After ReadFactColumnsHead: the rows of kinds [first_kind, end_kind),
// checked and stored (not yet told to the cells); the first bad row's error.
absl::Status ReadFactRows(const v1::FactColumns& in, int first_kind, int end_kind,
                          EngineState* state);
// After ReadFactColumnsHead(reserve = false): the timelines reserved and
// every row, on two threads split by kind, then the cells; the error is the first bad row's, as
// ReadFactRows over all.
absl::Status ReadFactRowsOnTwoThreads(const v1::FactColumns& in, EngineState* state);

}  // namespace rapport::kpi

#endif  // RAPPORT_LIB_KPI_INGEST_H_
