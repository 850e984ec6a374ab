// The fuzzed entry points, shared by the libFuzzer targets (clang, built
// with RAPPORT_BUILD_FUZZERS) and by the corpus replay test (any compiler,
// in CTest). Each takes arbitrary bytes, must never crash, leak or hit
// undefined behaviour, and checks the invariants it can (aborting if one
// fails, so that the fuzzer reports it).
#ifndef RAPPORT_TESTS_FUZZ_ENTRY_POINTS_H_
#define RAPPORT_TESTS_FUZZ_ENTRY_POINTS_H_

#include <cstddef>
#include <cstdint>

namespace rapport::fuzz {

using EntryPoint = void (*)(const uint8_t* data, size_t size);

// A rapport.v1.EventBatch (protobuf) ingested, atomically and best effort,
// into a small seeded engine; then the same bytes as one Event.
void EventProtobuf(const uint8_t* data, size_t size);
// JSON lines of events, and a JSON EventBatch, ingested likewise.
void EventJson(const uint8_t* data, size_t size);
// A rapport.v1.EngineConfig (first byte even: protobuf; odd: JSON after it)
// given to Engine::Create.
void ConfigLoad(const uint8_t* data, size_t size);
// A rapport.v1.KpiQuery (protobuf) run against a small seeded engine.
void KpiQuery(const uint8_t* data, size_t size);
// Engine::Restore of the bytes; a snapshot that loads must snapshot to the
// same bytes after a second restore.
void SnapshotRestore(const uint8_t* data, size_t size);
// The bytes as a journal segment (first byte odd: checksums fixed up first,
// so that the fuzzer reaches the replay), read and replayed onto an engine;
// and as a snapshot file.
void JournalRecovery(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // also the corpus directory under tests/fuzz/corpus/
  EntryPoint fn;
};
inline constexpr Target kTargets[] = {
    {"event_protobuf", &EventProtobuf},     {"event_json", &EventJson},
    {"config_load", &ConfigLoad},           {"kpi_query", &KpiQuery},
    {"snapshot_restore", &SnapshotRestore}, {"journal_recovery", &JournalRecovery},
};

}  // namespace rapport::fuzz

#endif  // RAPPORT_TESTS_FUZZ_ENTRY_POINTS_H_
