// How a persistent engine replays its journal: shared by Engine::Open and the
// journal-recovery fuzzer, so that the fuzzer exercises the real path.
#ifndef RAPPORT_LIB_STORAGE_PERSISTENT_ENGINE_H_
#define RAPPORT_LIB_STORAGE_PERSISTENT_ENGINE_H_

#include "absl/status/status.h"
#include "lib/state/engine_state.h"
#include "lib/storage/journal.h"
#include "rapport/engine.h"

namespace rapport {

// Applies one journal record to `engine` (which must not be persistent
// itself) through the public write path, so that replay does exactly what
// the original write did — validation, lifecycle, timers, outbox — and
// checks that it does: every journaled event must be accepted again.
// Errors: DATA_LOSS saying why the record does not replay.
absl::Status ReplayRecord(const journal::Record& record, Engine* engine);

// Fills the derived links of a restored state (EngineState::deal_links,
// order_links, complaint_accounts, account_kinds), which ApplyEvent otherwise
// catches up with at the first event it applies: a hash lookup or two per
// deal, order and complaint and a row read per account, alone on the
// critical path of a recovery's replay (~0.6 s of BM_Recovery at 10 M
// events; here ~0.2 s on each of two threads, the lookups prefetched). Engine::Open
// calls it after the snapshot loads, on two threads when `parallel`; the
// entries are the ones that catch-up appends (the same functions compute
// them, in row order).
void CatchUpDerivedLinks(EngineState* state, bool parallel);

}  // namespace rapport

#endif  // RAPPORT_LIB_STORAGE_PERSISTENT_ENGINE_H_
