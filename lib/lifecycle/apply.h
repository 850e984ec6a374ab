// The lifecycle of SPEC §3: how each validated event changes the state.
#ifndef RAPPORT_LIB_LIFECYCLE_APPLY_H_
#define RAPPORT_LIB_LIFECYCLE_APPLY_H_

#include <cstdint>

#include "lib/state/engine_state.h"
#include "lib/state/event_refs.h"
#include "rapport/v1/event.pb.h"

namespace rapport {

// Applies an event that ValidateEvent accepted as new, with the refs it
// filled. Cannot fail.
void ApplyEvent(const v1::Event& event, uint64_t fingerprint, const EventRefs& refs,
                EngineState* state);

// The same for an event whose id ValidateEvent recorded in the state's event
// id log already (BatchOverlay::record_ids).
void ApplyRecordedEvent(const v1::Event& event, const EventRefs& refs, EngineState* state);

// The same for callers that did not keep the refs (tests, benches): resolves
// them first with ResolveEventRefs.
void ApplyEvent(const v1::Event& event, uint64_t fingerprint, EngineState* state);

// The refs of a valid new event, by looking every id up in `state` just
// before the event is applied: the reference that the refs ValidateEvent
// fills (also for later events of an atomic batch) must equal.
EventRefs ResolveEventRefs(const v1::Event& event, const EngineState& state);

// Moves the clock to `now_us`: clients whose last order is older than the
// configured churn time become churned, and the regulations' timers due at or
// before `now_us` fire, interleaved with the churns in time order.
void AdvanceClock(int64_t now_us, EngineState* state);

// The attribution of an account at `at_us` (the latest entry with
// since_us <= at_us; the earliest entry for times before all of them), or
// nullptr when the account has none.
const v1::Attribution* AttributionAt(const EngineState& state, uint32_t account, int64_t at_us);

}  // namespace rapport

#endif  // RAPPORT_LIB_LIFECYCLE_APPLY_H_
