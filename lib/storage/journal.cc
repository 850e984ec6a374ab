#include "lib/storage/journal.h"

#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "lib/storage/crc32c.h"

namespace rapport::journal {
namespace {

using google::protobuf::io::CodedOutputStream;

inline void PutLE32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
inline void PutLE64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
inline uint32_t GetLE32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint64_t GetLE64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Fills the header at out[start, start + 24) for the payload that follows it.
void FinishHeader(RecordKind kind, uint64_t seq, std::string* out, size_t start) {
  char* h = out->data() + start;
  const size_t n = out->size() - start - kHeaderSize;
  PutLE32(h + 4, crc32c::Mask(crc32c::Value(h + kHeaderSize, n)));
  PutLE32(h + 8, static_cast<uint32_t>(n));
  PutLE64(h + 12, seq);
  h[20] = static_cast<char>(kind);
  h[21] = h[22] = h[23] = 0;
  PutLE32(h, crc32c::Mask(crc32c::Value(h + 4, kHeaderSize - 4)));
}

bool AllZero(absl::string_view s) {
  for (char c : s) {
    if (c != 0) return false;
  }
  return true;
}

}  // namespace

void AppendRecord(RecordKind kind, uint64_t seq, absl::string_view payload, std::string* out) {
  const size_t start = out->size();
  out->resize(start + kHeaderSize);
  out->append(payload.data(), payload.size());
  FinishHeader(kind, seq, out, start);
}

void AppendEventsRecord(uint64_t seq, absl::Span<const v1::Event* const> events, std::string* out) {
  const size_t start = out->size();
  size_t payload = 0;
  for (const v1::Event* e : events) {
    const size_t n = e->ByteSizeLong();  // caches the sizes for the serialization below
    payload += 1 + CodedOutputStream::VarintSize32(static_cast<uint32_t>(n)) + n;
  }
  out->resize(start + kHeaderSize + payload);
  auto* p = reinterpret_cast<uint8_t*>(out->data() + start + kHeaderSize);
  for (const v1::Event* e : events) {
    // Field 1 of rapport.v1.EventBatch, length-delimited.
    *p++ = (1 << 3) | google::protobuf::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
    p = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(e->GetCachedSize()), p);
    p = e->SerializeWithCachedSizesToArray(p);
  }
  FinishHeader(RecordKind::kEvents, seq, out, start);
}

void AppendAdvanceRecord(uint64_t seq, int64_t now_us, std::string* out) {
  char payload[8];
  PutLE64(payload, static_cast<uint64_t>(now_us));
  AppendRecord(RecordKind::kAdvance, seq, absl::string_view(payload, 8), out);
}
void AppendAcknowledgeRecord(uint64_t seq, absl::Span<const std::string> action_ids,
                             std::string* out) {
  std::string payload;
  for (const std::string& id : action_ids) {
    payload.push_back(static_cast<char>(
        (1 << 3) | google::protobuf::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
    uint8_t len[5];
    const uint8_t* end =
        CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(id.size()), len);
    payload.append(reinterpret_cast<const char*>(len), static_cast<size_t>(end - len));
    payload.append(id);
  }
  AppendRecord(RecordKind::kAcknowledge, seq, payload, out);
}

void FixChecksums(std::string* data) {
  size_t off = 0;
  while (data->size() - off >= kHeaderSize) {
    char* h = data->data() + off;
    const uint32_t n = GetLE32(h + 8);
    if (n > data->size() - off - kHeaderSize) break;
    PutLE32(h + 4, crc32c::Mask(crc32c::Value(h + kHeaderSize, n)));
    PutLE32(h, crc32c::Mask(crc32c::Value(h + 4, kHeaderSize - 4)));
    off += kHeaderSize + n;
  }
}

ReadStatus SegmentReader::Next(Record* record, std::string* why) {
  const size_t left = data_.size() - offset_;
  if (left == 0) return ReadStatus::kEnd;
  const char* h = data_.data() + offset_;
  if (left < kHeaderSize) {
    *why = absl::StrCat("incomplete record header (", left, " of ", kHeaderSize, " bytes)");
    return ReadStatus::kTorn;
  }
  if (crc32c::Unmask(GetLE32(h)) != crc32c::Value(h + 4, kHeaderSize - 4)) {
    if (AllZero(data_.substr(offset_))) {
      *why = "zero-filled tail";
      return ReadStatus::kTorn;
    }
    *why = "record header checksum mismatch";
    return ReadStatus::kCorrupt;
  }
  const uint32_t n = GetLE32(h + 8);
  const auto kind = static_cast<RecordKind>(static_cast<uint8_t>(h[20]));
  if (kind != RecordKind::kEvents && kind != RecordKind::kAdvance &&
      kind != RecordKind::kAcknowledge) {
    *why = absl::StrCat("unknown record kind ", static_cast<int>(static_cast<uint8_t>(h[20])));
    return ReadStatus::kCorrupt;
  }
  if (n > kMaxPayloadBytes) {
    *why = absl::StrCat("record length ", n, " exceeds the limit of ", kMaxPayloadBytes);
    return ReadStatus::kCorrupt;
  }
  if (n > left - kHeaderSize) {
    *why = absl::StrCat("record of ", n, " bytes runs past the end of the file (",
                        left - kHeaderSize, " bytes left)");
    return ReadStatus::kTorn;
  }
  if (crc32c::Unmask(GetLE32(h + 4)) != crc32c::Value(h + kHeaderSize, n)) {
    *why = "record payload checksum mismatch";
    return ReadStatus::kCorrupt;
  }
  record->kind = kind;
  record->seq = GetLE64(h + 12);
  record->payload = absl::string_view(h + kHeaderSize, n);
  record->offset = offset_;
  offset_ += kHeaderSize + n;
  return ReadStatus::kRecord;
}

std::unique_ptr<ParsedEvents> ParseEvents(absl::string_view payload) {
  auto parsed = std::make_unique<ParsedEvents>();
  parsed->batch = google::protobuf::Arena::CreateMessage<v1::EventBatch>(&parsed->arena);
  if (payload.size() > static_cast<size_t>(INT_MAX) ||
      !parsed->batch->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    parsed->batch = nullptr;
  }
  return parsed;
}

absl::StatusOr<int64_t> DecodeAdvance(absl::string_view payload) {
  if (payload.size() != 8) {
    return absl::DataLossError(
        absl::StrCat("advance record of ", payload.size(), " bytes (expected 8)"));
  }
  return static_cast<int64_t>(GetLE64(payload.data()));
}
absl::StatusOr<std::vector<std::string>> DecodeAcknowledge(absl::string_view payload) {
  std::vector<std::string> ids;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(payload.data()),
                                            static_cast<int>(payload.size()));
  const uint32_t want =
      (1 << 3) | google::protobuf::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
  while (!in.ExpectAtEnd()) {
    uint32_t len = 0;
    std::string id;
    if (in.ReadTag() != want || !in.ReadVarint32(&len) || len == 0 ||
        !in.ReadString(&id, static_cast<int>(len))) {
      return absl::DataLossError(absl::StrCat("acknowledge record: action id ", ids.size(),
                                              " is not a length-delimited field 1"));
    }
    ids.push_back(std::move(id));
  }
  if (ids.empty()) return absl::DataLossError("an acknowledge record with no action ids");
  return ids;
}

}  // namespace rapport::journal
