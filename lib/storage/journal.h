// The journal's record format, modelled on LevelDB's log format
// (leveldb/doc/log_format.md) with one deliberate difference.
//
// A segment file is a sequence of records, each a 24-byte header and a
// payload:
//
//   offset size  field
//   0      4     header CRC: masked CRC-32C of bytes [4, 24) of the header
//   4      4     payload CRC: masked CRC-32C of the payload
//   8      4     payload length in bytes (little-endian)
//   12     8     sequence number (little-endian; +1 per record, across files)
//   20     1     kind (RecordKind)
//   21     3     zero
//   24     n     payload
//
// The difference: LevelDB cuts the file into 32 KiB blocks and fragments
// records across them so that a reader can skip a damaged block and resync.
// We never skip — damage in the middle is an error, or with point-in-time
// recovery the end of what we trust — so blocks would only cost fragment
// headers. What we need instead is to tell a torn tail (a write the crash cut
// short, never acknowledged) from damage, and LevelDB's single CRC cannot
// vouch for the length field: a flipped bit there could make a whole record
// look like it runs past the end of the file. Our header has its own CRC, so
// a header that checks out tells the truth about the length, and:
//   - fewer than 24 bytes left, or a good header whose payload runs past the
//     end of the file, or nothing but zero bytes left: a torn tail;
//   - any other mismatch: corruption.
//
// Thread-safety: plain functions and a reader over caller-owned bytes.
#ifndef RAPPORT_LIB_STORAGE_JOURNAL_H_
#define RAPPORT_LIB_STORAGE_JOURNAL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/arena.h"
#include "rapport/v1/event.pb.h"

namespace rapport::journal {

enum class RecordKind : uint8_t {
  // Payload: a rapport.v1.EventBatch of the events a write accepted (new
  // events only: duplicates and rejected events change nothing and are not
  // journaled), in the order they were applied.
  kEvents = 1,
  // Payload: 8 bytes, the little-endian int64 time of an Advance that moved
  // the clock; replay repeats it so that timers fire exactly as they did.
  kAdvance = 2,
  // Payload: the ids of actions an Acknowledge moved out of the outbox, in
  // the wire form of a message `{ repeated string action_ids = 1; }`; replay
  // acknowledges them again, so that an acknowledged action is not
  // delivered again after a reopen.
  kAcknowledge = 3,
};

inline constexpr size_t kHeaderSize = 24;
// A record is one write; the C ABI caps a write's input at 256 MiB, and the
// events it accepts serialize to no more than that.
inline constexpr uint32_t kMaxPayloadBytes = 1u << 30;

// Appends a framed record to `out`.
void AppendRecord(RecordKind kind, uint64_t seq, absl::string_view payload, std::string* out);

// The events payload, built in place: AppendEventsRecord frames
// `events` (as a serialized EventBatch) directly into `out`, without an
// intermediate copy of the payload.
void AppendEventsRecord(uint64_t seq, absl::Span<const v1::Event* const> events, std::string* out);
void AppendAdvanceRecord(uint64_t seq, int64_t now_us, std::string* out);
void AppendAcknowledgeRecord(uint64_t seq, absl::Span<const std::string> action_ids,
                             std::string* out);

// Rewrites both CRCs of every complete record in `data` (fuzzing and tests
// build journals by hand with it). Stops at the first header whose length
// runs past the end.
void FixChecksums(std::string* data);

struct Record {
  RecordKind kind;
  uint64_t seq;
  absl::string_view payload;
  // Offset of the record's header in the segment.
  uint64_t offset;
  // An events record's payload parsed already (Store::Open parses the next
  // records on a second thread while one replays), or null: parse it.
  const v1::EventBatch* events = nullptr;
};

// An events record's payload parsed, on an arena of its own, so that it can
// be parsed on one thread and replayed on another.
struct ParsedEvents {
  google::protobuf::Arena arena;
  v1::EventBatch* batch;  // on `arena`; null if the payload does not parse
};
std::unique_ptr<ParsedEvents> ParseEvents(absl::string_view payload);

enum class ReadStatus {
  kRecord,   // *record is the next record
  kEnd,      // clean end of the data
  kTorn,     // an incomplete last record (see above); offset() is where it starts
  kCorrupt,  // damage at offset(); the reason is in *why
};

// Reads records from one segment's bytes (borrowed; they must outlive the
// reader and its records).
class SegmentReader {
 public:
  explicit SegmentReader(absl::string_view data) : data_(data) {}
  ReadStatus Next(Record* record, std::string* why);
  // The offset just after the last record returned: where a torn tail or
  // damage begins, and the length to cut the file to.
  uint64_t offset() const { return offset_; }

 private:
  absl::string_view data_;
  uint64_t offset_ = 0;
};

// The payload of an advance record.
absl::StatusOr<int64_t> DecodeAdvance(absl::string_view payload);
// The payload of an acknowledge record. Errors: DATA_LOSS when it is not a
// list of ids.
absl::StatusOr<std::vector<std::string>> DecodeAcknowledge(absl::string_view payload);

}  // namespace rapport::journal

#endif  // RAPPORT_LIB_STORAGE_JOURNAL_H_
