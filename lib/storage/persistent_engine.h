// How a persistent engine replays its journal: shared by Engine::Open and the
// journal-recovery fuzzer, so that the fuzzer exercises the real path.
#ifndef RAPPORT_LIB_STORAGE_PERSISTENT_ENGINE_H_
#define RAPPORT_LIB_STORAGE_PERSISTENT_ENGINE_H_

#include "absl/status/status.h"
#include "lib/storage/journal.h"
#include "rapport/engine.h"

namespace rapport {

// Applies one journal record to `engine` (which must not be persistent
// itself) through the public write path, so that replay does exactly what
// the original write did — validation, lifecycle, timers, outbox — and
// checks that it does: every journaled event must be accepted again.
// Errors: DATA_LOSS saying why the record does not replay.
absl::Status ReplayRecord(const journal::Record& record, Engine* engine);

}  // namespace rapport

#endif  // RAPPORT_LIB_STORAGE_PERSISTENT_ENGINE_H_
