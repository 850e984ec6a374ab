// The fingerprint of an event: Fingerprint64 of the bytes protobuf's
// serialization of the event yields. It is stored per event id and in
// snapshots, so its value is a format: it must never change.
//
// Protobuf's own serialization costs about a fifth of ingest (sizes through
// virtual calls, a UTF-8 check of every string on every serialization), so a
// hand-written serializer of v1::Event and of every message it reaches writes
// the same bytes instead. Whatever it does not cover falls back to protobuf:
// unknown fields at any level, and the whole fast path when the compiled-in
// schema differs from what it was written for (checked once, against the
// descriptors). Correctness never depends on the fast path's coverage.
#ifndef RAPPORT_LIB_INGEST_FINGERPRINT_H_
#define RAPPORT_LIB_INGEST_FINGERPRINT_H_

#include <cstdint>
#include <string>

#include "rapport/v1/event.pb.h"

namespace rapport {

// Fingerprint64 of the event's protobuf serialization; the fast path when it
// applies, protobuf otherwise. Thread-safe.
uint64_t FingerprintEvent(const v1::Event& event);

// The same value, always through protobuf's serialization: the reference the
// fast path is tested against.
uint64_t ReferenceEventFingerprint(const v1::Event& event);

// The fast serializer alone (for tests): writes into `out` the bytes protobuf
// would and returns true, or returns false (leaving `out` unspecified) when the
// event is one the fast path leaves to protobuf.
bool SerializeEventFast(const v1::Event& event, std::string* out);

// Whether the fast path matches the compiled-in schema (every field of every
// message reachable from v1::Event is one it writes, with the same number,
// type and presence). When false, every event takes the protobuf path.
bool EventFastPathEnabled();

}  // namespace rapport

#endif  // RAPPORT_LIB_INGEST_FINGERPRINT_H_
