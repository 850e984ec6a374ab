#include "lib/storage/snapshot.h"

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/parse_context.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/wire_format_lite.h"
#include "lib/kpi/fact_store.h"
#include "lib/kpi/ingest.h"
#include "lib/rules/runtime.h"
#include "lib/state/config.h"
#include "lib/util/parallel.h"
#include "lib/util/unknown_fields.h"
#include "rapport/engine.h"
#include "rapport/v1/snapshot.pb.h"

namespace rapport {
namespace {

using google::protobuf::MessageLite;
using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedOutputStream;

// 2 since timer causes are event-id log indexes (timer_cause_index): a build
// that reads only version 1 then refuses the snapshot by its version, rather
// than by the timer columns it does not find. Version 1 is still read.
constexpr int kFormatVersion = 2;
constexpr int kOldestFormatVersion = 1;

// Field numbers of rapport.v1.EngineSnapshot.
enum : int {
  kFieldFormatVersion = 1,
  kFieldConfig = 2,
  kFieldEventsAccepted = 3,
  kFieldClock = 4,
  kFieldAccounts = 10,
  kFieldManagers = 11,
  kFieldTeams = 12,
  kFieldDeals = 13,
  kFieldOrders = 14,
  kFieldInvoices = 15,
  kFieldComplaints = 16,
  kFieldAttributions = 17,
  kFieldEventFingerprints = 21,
  kFieldEventIdData = 22,
  kFieldEventIdLengths = 23,
  kFieldActions = 31,
  kFieldRules = 32,
  kFieldFacts = 40,
};

void WriteMessage(int field, const MessageLite& m, CodedOutputStream* out) {
  WireFormatLite::WriteTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
  out->WriteVarint32(static_cast<uint32_t>(m.ByteSizeLong()));
  m.SerializeWithCachedSizes(out);
}

template <typename Row>
void WriteTable(int field, const Table<Row>& table, CodedOutputStream* out) {
  for (const Row& row : table.rows()) WriteMessage(field, row, out);
}

// The fast writer works in two passes so that the output is allocated once
// at its final size (growing a 100 MB string by doubling zeroes and copies it
// again and again): the first pass computes every message's size, which
// protobuf caches in the message, and the second serializes with the cached
// sizes. The bytes are the same as the reference writer's (a test compares).

// Bytes of a length-delimited field holding `n` bytes.
size_t DelimitedBytes(int field, size_t n) {
  return CodedOutputStream::VarintSize32(static_cast<uint32_t>(field) << 3) +
         CodedOutputStream::VarintSize32(static_cast<uint32_t>(n)) + n;
}

void WriteCached(int field, const MessageLite& m, CodedOutputStream* out) {
  WireFormatLite::WriteTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
  out->WriteVarint32(static_cast<uint32_t>(m.GetCachedSize()));
  m.SerializeWithCachedSizes(out);
}

// ---- Hand serializers for the rows and the actions ----
//
// The generated _InternalSerialize of a proto3 message checks every string
// field for valid UTF-8 before writing it (VerifyUtf8String): on the 1 M-event
// state that was 190 M of the writer's 1 138 M instructions (a third of the
// thread that writes the rows), and it changes nothing in the bytes (an
// invalid string is logged, then written all the same).
// These write the same bytes with the same primitives, field by field in
// field-number order as protoc emits them, without the check. A row with
// unknown fields takes the generated path. The tests fill every field of
// these messages through reflection and compare with the generated
// serializer, so a field added to the .proto and not here fails them.
using google::protobuf::io::EpsCopyOutputStream;

inline uint8_t* PutString(int field, const std::string& v, uint8_t* p, EpsCopyOutputStream* s) {
  return v.empty() ? p : s->WriteStringMaybeAliased(static_cast<uint32_t>(field), v, p);
}

inline uint8_t* PutInt64(int field, int64_t v, uint8_t* p, EpsCopyOutputStream* s) {
  if (v == 0) return p;
  p = s->EnsureSpace(p);
  return WireFormatLite::WriteInt64ToArray(field, v, p);
}

inline uint8_t* PutInt32(int field, int32_t v, uint8_t* p, EpsCopyOutputStream* s) {
  if (v == 0) return p;
  p = s->EnsureSpace(p);
  return WireFormatLite::WriteInt32ToArray(field, v, p);
}

inline uint8_t* PutEnum(int field, int v, uint8_t* p, EpsCopyOutputStream* s) {
  if (v == 0) return p;
  p = s->EnsureSpace(p);
  return WireFormatLite::WriteEnumToArray(field, v, p);
}

// A nested message's tag and cached length, as InternalWriteMessage writes them.
inline uint8_t* PutMessageHead(int field, const MessageLite& m, uint8_t* p,
                               EpsCopyOutputStream* s) {
  p = s->EnsureSpace(p);
  p = WireFormatLite::WriteTagToArray(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, p);
  return CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(m.GetCachedSize()), p);
}

uint8_t* SerializeRow(const v1::StageVisit& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutString(1, m.stage(), p, s);
  p = PutInt64(2, m.entered_at_us(), p, s);
  p = PutInt64(3, m.left_at_us(), p, s);
  return p;
}

uint8_t* SerializeRow(const v1::Attribution& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutInt64(1, m.since_us(), p, s);
  p = PutInt64(2, m.seq(), p, s);
  p = PutString(3, m.owner_id(), p, s);
  p = PutString(4, m.team_id(), p, s);
  p = PutString(5, m.segment(), p, s);
  return p;
}

uint8_t* SerializeRow(const v1::Account& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutString(1, m.account_id(), p, s);
  p = PutEnum(2, m.kind(), p, s);
  p = PutString(3, m.name(), p, s);
  p = PutString(4, m.owner_id(), p, s);
  p = PutString(5, m.team_id(), p, s);
  p = PutString(6, m.segment(), p, s);
  p = PutEnum(7, m.tier(), p, s);
  p = PutEnum(8, m.preferred_channel(), p, s);
  p = PutString(9, m.referred_by(), p, s);
  p = PutString(10, m.source_partner_id(), p, s);
  p = PutInt64(11, m.created_at_us(), p, s);
  p = PutEnum(12, m.status(), p, s);
  p = PutInt64(13, m.status_since_us(), p, s);
  p = PutInt64(14, m.order_count(), p, s);
  p = PutInt64(15, m.last_order_at_us(), p, s);
  p = PutInt64(16, m.last_outbound_at_us(), p, s);
  p = PutInt64(17, m.open_complaints(), p, s);
  p = PutInt32(18, m.last_feedback_score(), p, s);
  p = PutInt64(19, m.last_feedback_at_us(), p, s);
  p = PutInt64(20, m.case_studies(), p, s);
  return p;
}

uint8_t* SerializeRow(const v1::Deal& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutString(1, m.deal_id(), p, s);
  p = PutString(2, m.account_id(), p, s);
  p = PutString(3, m.pipeline_id(), p, s);
  p = PutString(4, m.source_partner_id(), p, s);
  p = PutInt64(5, m.created_at_us(), p, s);
  p = PutString(6, m.stage(), p, s);
  p = PutEnum(7, m.status(), p, s);
  p = PutInt64(8, m.won_at_us(), p, s);
  p = PutInt64(9, m.lost_at_us(), p, s);
  p = PutString(10, m.lost_reason(), p, s);
  for (const v1::StageVisit& v : m.history()) {
    p = PutMessageHead(11, v, p, s);
    p = SerializeRow(v, p, s);
  }
  return p;
}

uint8_t* SerializeRow(const v1::Money& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutInt64(1, m.amount_minor(), p, s);
  p = PutString(2, m.currency(), p, s);
  return p;
}

uint8_t* SerializeRow(const v1::Order& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutString(1, m.order_id(), p, s);
  p = PutString(2, m.account_id(), p, s);
  p = PutString(3, m.deal_id(), p, s);
  if (m.has_amount()) {
    p = PutMessageHead(4, m.amount(), p, s);
    p = SerializeRow(m.amount(), p, s);
  }
  p = PutInt64(5, m.placed_at_us(), p, s);
  p = PutInt64(6, m.due_at_us(), p, s);
  p = PutEnum(7, m.status(), p, s);
  p = PutInt64(8, m.completed_at_us(), p, s);
  p = PutInt32(9, m.delays(), p, s);
  return p;
}

uint8_t* SerializeRow(const v1::Invoice& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutString(1, m.invoice_id(), p, s);
  p = PutString(2, m.account_id(), p, s);
  p = PutString(3, m.order_id(), p, s);
  if (m.has_amount()) {
    p = PutMessageHead(4, m.amount(), p, s);
    p = SerializeRow(m.amount(), p, s);
  }
  p = PutInt64(5, m.issued_at_us(), p, s);
  p = PutInt64(6, m.due_at_us(), p, s);
  p = PutInt64(7, m.paid_minor(), p, s);
  return p;
}

uint8_t* SerializeRow(const v1::Complaint& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutString(1, m.complaint_id(), p, s);
  p = PutString(2, m.account_id(), p, s);
  p = PutEnum(3, m.severity(), p, s);
  p = PutInt64(4, m.opened_at_us(), p, s);
  p = PutInt64(5, m.resolved_at_us(), p, s);
  return p;
}

// The actions are not rows of the state (they are stored compactly and
// turned into messages one at a time), but as many strings.
uint8_t* SerializeRow(const v1::Action& m, uint8_t* p, EpsCopyOutputStream* s) {
  if (MayHaveUnknownFields(m)) return m._InternalSerialize(p, s);
  p = PutString(1, m.action_id(), p, s);
  p = PutString(2, m.rule_id(), p, s);
  p = PutString(3, m.rule_set_id(), p, s);
  p = PutInt64(4, m.rule_set_version(), p, s);
  p = PutEnum(5, m.kind(), p, s);
  p = PutString(6, m.cause_event_id(), p, s);
  p = PutString(7, m.account_id(), p, s);
  p = PutString(8, m.deal_id(), p, s);
  p = PutEnum(9, m.assignee_role(), p, s);
  p = PutString(10, m.assignee_id(), p, s);
  p = PutInt64(11, m.fired_at_us(), p, s);
  p = PutInt64(12, m.due_at_us(), p, s);
  p = PutEnum(13, m.channel(), p, s);
  p = PutString(14, m.template_(), p, s);
  p = PutString(15, m.to_stage(), p, s);
  p = PutEnum(16, m.state(), p, s);
  p = PutString(17, m.occasion(), p, s);
  return p;
}

// Any other row: the generated serializer.
uint8_t* SerializeRow(const MessageLite& m, uint8_t* p, EpsCopyOutputStream* s) {
  return m._InternalSerialize(p, s);
}

// WriteCached through SerializeRow.
template <typename Row>
void WriteCachedRow(int field, const Row& m, CodedOutputStream* out) {
  WireFormatLite::WriteTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
  out->WriteVarint32(static_cast<uint32_t>(m.GetCachedSize()));
  out->SetCur(SerializeRow(m, out->Cur(), out->EpsCopy()));
}

template <typename Row>
size_t SizeTable(int field, const Table<Row>& table) {
  size_t n = 0;
  for (const Row& row : table.rows()) n += DelimitedBytes(field, row.ByteSizeLong());
  return n;
}

template <typename Row>
void WriteTableCached(int field, const Table<Row>& table, CodedOutputStream* out) {
  for (const Row& row : table.rows()) WriteCachedRow(field, row, out);
}

// rapport.v1.AccountAttribution for account `i`, written from the state's
// history without copying it into a message first: account_id (field 1;
// proto3 leaves an empty one out) then each Attribution (field 2).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline size_t AttributionBody(const EngineState& s, size_t i) {
  const std::string& id = s.accounts.at(static_cast<uint32_t>(i)).account_id();
  size_t n = id.empty() ? 0 : DelimitedBytes(1, id.size());
  for (const v1::Attribution& a : s.attributions[i]) n += DelimitedBytes(2, a.ByteSizeLong());
  return n;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void WriteAttribution(const EngineState& s, size_t i,
                                                          uint32_t body, CodedOutputStream* out) {
  WireFormatLite::WriteTag(kFieldAttributions, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
  out->WriteVarint32(body);
  const std::string& id = s.accounts.at(static_cast<uint32_t>(i)).account_id();
  if (!id.empty()) WireFormatLite::WriteString(1, id, out);
  for (const v1::Attribution& a : s.attributions[i]) WriteCachedRow(2, a, out);
}

// rapport.v1.FactColumns straight from the fact store: the bytes of the
// message kpi::WriteFactColumns builds (what the reference writer
// serializes), without building it. Packed fields are in field-number order
// and left out when empty, as protobuf does; field 3 (the old undifferenced
// times) is never written.
struct FactColumnsSizes {
  size_t strings = 0;  // the strings with their tags and lengths
  size_t kinds = 0, account = 0, subject = 0, aux = 0, value = 0, order_seq = 0, delta = 0;
  size_t body = 0;
};

size_t PackedBytes(int field, size_t payload) {
  return payload == 0 ? 0 : DelimitedBytes(field, payload);
}

FactColumnsSizes SizeFactColumns(const kpi::FactStore& st) {
  FactColumnsSizes z;
  for (size_t i = 0; i < st.strings.size(); ++i) {
    z.strings += DelimitedBytes(1, st.strings.at(static_cast<uint32_t>(i)).size());
  }
  for (int k = 0; k < kpi::kFactKinds; ++k) {
    const kpi::FactColumn& col = st.columns[k];
    z.kinds += CodedOutputStream::VarintSize64(col.size());
    const bool orders = k == static_cast<int>(kpi::FactKind::kOrderPlaced);
    uint64_t prev = 0;
    for (const auto& b : col.blocks()) {
      for (int i = 0; i < b->n; ++i) {
        const kpi::Fact f = b->at(i);
        const uint64_t t = static_cast<uint64_t>(b->t[i]);
        z.delta += CodedOutputStream::VarintSize64(t - prev);
        prev = t;
        z.account += CodedOutputStream::VarintSize32(f.account);
        z.subject += CodedOutputStream::VarintSize32(f.subject);
        z.aux += CodedOutputStream::VarintSize32(f.aux);
        z.value += CodedOutputStream::VarintSize64(static_cast<uint64_t>(f.value));
        if (orders) {
          z.order_seq += CodedOutputStream::VarintSize64(
              static_cast<uint64_t>(st.orders[f.subject].placed.seq));
        }
      }
    }
  }
  z.body = z.strings + PackedBytes(2, z.kinds) + PackedBytes(4, z.account) +
           PackedBytes(5, z.subject) + PackedBytes(6, z.aux) + PackedBytes(7, z.value) +
           PackedBytes(8, z.order_seq) + PackedBytes(9, z.delta);
  return z;
}

void WriteDelimitedHead(int field, size_t payload, CodedOutputStream* out) {
  WireFormatLite::WriteTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
  out->WriteVarint32(static_cast<uint32_t>(payload));
}

// Calls fn(t, fact) for every fact, kind after kind, in the store's order.
template <typename Fn>
void ForEachFact(const kpi::FactStore& st, Fn&& fn) {
  for (int k = 0; k < kpi::kFactKinds; ++k) st.columns[k].ForAll(fn);
}

// Calls each(emit) and writes the varint of every value it emits: what
// out->WriteVarint32/64 does per value, with the position kept in a local
// rather than in *out across millions of calls. EnsureSpace leaves room for
// one varint (the stream's slop is 16 bytes).
template <typename Each>
void WriteVarints(CodedOutputStream* out, Each&& each) {
  uint8_t* p = out->Cur();
  EpsCopyOutputStream* eps = out->EpsCopy();
  each([&](auto v) {
    static_assert(std::is_unsigned_v<decltype(v)>);
    p = eps->EnsureSpace(p);
    if constexpr (sizeof(v) == sizeof(uint32_t)) {
      p = CodedOutputStream::WriteVarint32ToArray(v, p);
    } else {
      p = CodedOutputStream::WriteVarint64ToArray(v, p);
    }
  });
  out->SetCur(p);
}

void WriteFactColumnsBody(const kpi::FactStore& st, const FactColumnsSizes& z,
                          CodedOutputStream* out) {
  for (size_t i = 0; i < st.strings.size(); ++i) {
    WireFormatLite::WriteString(1, st.strings.at(static_cast<uint32_t>(i)), out);
  }
  WriteDelimitedHead(2, z.kinds, out);
  for (int k = 0; k < kpi::kFactKinds; ++k) out->WriteVarint64(st.columns[k].size());
  if (z.account != 0) {
    WriteDelimitedHead(4, z.account, out);
    WriteVarints(out, [&](auto&& emit) {
      ForEachFact(st, [&](int64_t, const kpi::Fact& f) { emit(f.account); });
    });
    WriteDelimitedHead(5, z.subject, out);
    WriteVarints(out, [&](auto&& emit) {
      ForEachFact(st, [&](int64_t, const kpi::Fact& f) { emit(f.subject); });
    });
    WriteDelimitedHead(6, z.aux, out);
    WriteVarints(out, [&](auto&& emit) {
      ForEachFact(st, [&](int64_t, const kpi::Fact& f) { emit(f.aux); });
    });
    WriteDelimitedHead(7, z.value, out);
    WriteVarints(out, [&](auto&& emit) {
      ForEachFact(st, [&](int64_t, const kpi::Fact& f) { emit(static_cast<uint64_t>(f.value)); });
    });
  }
  if (z.order_seq != 0) {
    WriteDelimitedHead(8, z.order_seq, out);
    WriteVarints(out, [&](auto&& emit) {
      st.column(kpi::FactKind::kOrderPlaced).ForAll([&](int64_t, const kpi::Fact& f) {
        emit(static_cast<uint64_t>(st.orders[f.subject].placed.seq));
      });
    });
  }
  if (z.delta != 0) {
    WriteDelimitedHead(9, z.delta, out);
    WriteVarints(out, [&](auto&& emit) {
      for (int k = 0; k < kpi::kFactKinds; ++k) {
        uint64_t prev = 0;
        st.columns[k].ForAll([&](int64_t t, const kpi::Fact&) {
          emit(static_cast<uint64_t>(t) - prev);
          prev = static_cast<uint64_t>(t);
        });
      }
    });
  }
}

// rapport.v1.RulesRuntime's timer columns straight from the heap, as
// rules::WriteRuntime's message serializes them: fields 1 to 6 here, then
// WriteRuntimeAfterTimers's message (fields 8 to 10), then the causes
// (field 11, WriteTimerCauses).
struct TimerColumnsSizes {
  size_t fire = 0, seq = 0, rule = 0, subject = 0, extra = 0, aux = 0;
  size_t causes = 0;  // the packed timer_cause_index payload
  size_t body = 0;    // all of the above with their tags and lengths
};

TimerColumnsSizes SizeTimerColumns(const rules::TimerHeap& timers,
                                   const std::vector<uint32_t>& causes) {
  TimerColumnsSizes z;
  for (const rules::Timer& t : timers) {
    z.fire += CodedOutputStream::VarintSize64(static_cast<uint64_t>(t.fire_at_us));
    z.seq += CodedOutputStream::VarintSize32(t.seq);
    z.rule += CodedOutputStream::VarintSize32(t.rule);
    z.subject += CodedOutputStream::VarintSize32(t.subject);
    z.extra += CodedOutputStream::VarintSize32(t.extra);
    z.aux += CodedOutputStream::VarintSize32(t.aux);
  }
  for (uint32_t c : causes) z.causes += CodedOutputStream::VarintSize32(c);
  z.body = PackedBytes(1, z.fire) + PackedBytes(2, z.seq) + PackedBytes(3, z.rule) +
           PackedBytes(4, z.subject) + PackedBytes(5, z.extra) + PackedBytes(6, z.aux) +
           PackedBytes(11, z.causes);
  return z;
}

void WriteTimerCauses(const std::vector<uint32_t>& causes, const TimerColumnsSizes& z,
                      CodedOutputStream* out) {
  if (causes.empty()) return;
  WriteDelimitedHead(11, z.causes, out);
  WriteVarints(out, [&](auto&& emit) {
    for (uint32_t c : causes) emit(c);
  });
}

void WriteTimerColumns(const rules::TimerHeap& timers, const TimerColumnsSizes& z,
                       CodedOutputStream* out) {
  if (timers.empty()) return;
  WriteDelimitedHead(1, z.fire, out);
  WriteVarints(out, [&](auto&& emit) {
    for (const rules::Timer& t : timers) emit(static_cast<uint64_t>(t.fire_at_us));
  });
  WriteDelimitedHead(2, z.seq, out);
  WriteVarints(out, [&](auto&& emit) {
    for (const rules::Timer& t : timers) emit(uint32_t{t.seq});
  });
  WriteDelimitedHead(3, z.rule, out);
  WriteVarints(out, [&](auto&& emit) {
    for (const rules::Timer& t : timers) emit(uint32_t{t.rule});
  });
  WriteDelimitedHead(4, z.subject, out);
  WriteVarints(out, [&](auto&& emit) {
    for (const rules::Timer& t : timers) emit(uint32_t{t.subject});
  });
  WriteDelimitedHead(5, z.extra, out);
  WriteVarints(out, [&](auto&& emit) {
    for (const rules::Timer& t : timers) emit(uint32_t{t.extra});
  });
  WriteDelimitedHead(6, z.aux, out);
  WriteVarints(out, [&](auto&& emit) {
    for (const rules::Timer& t : timers) emit(uint32_t{t.aux});
  });
}

// Appends what it is handed to a string already reserved at its final size.
// The writer writes through this (via CopyingOutputStreamAdaptor's small
// buffer, or straight from big raw runs like the event ids) rather than
// through a StringOutputStream, which resizes the string to hand out its
// capacity: that zero-fills the whole fresh 86 MB buffer, one more pass over
// memory before the writer overwrites it.
class AppendToString : public google::protobuf::io::CopyingOutputStream {
 public:
  explicit AppendToString(std::string* out) : out_(out) {}
  bool Write(const void* buffer, int size) override {
    out_->append(static_cast<const char*>(buffer), static_cast<size_t>(size));
    return true;
  }

 private:
  std::string* out_;
};

// The adaptor's buffer: small enough to stay in the caches, large enough
// that the per-buffer overhead does not show.
constexpr int kWriteBufferBytes = 64 << 10;

// The head of the snapshot: format version, config, events_accepted, clock.
size_t HeadBytes(const EngineState& s) {
  return CodedOutputStream::VarintSize32(kFieldFormatVersion << 3) +
         CodedOutputStream::VarintSize32(kFormatVersion) +
         DelimitedBytes(kFieldConfig, s.config.ByteSizeLong()) +
         // Written even when zero, as the reference writer does.
         1 + CodedOutputStream::VarintSize64(static_cast<uint64_t>(s.events_accepted)) + 1 +
         CodedOutputStream::VarintSize64(static_cast<uint64_t>(s.clock_us));
}

void WriteHead(const EngineState& s, CodedOutputStream* out) {
  WireFormatLite::WriteInt32(kFieldFormatVersion, kFormatVersion, out);
  WriteCached(kFieldConfig, s.config, out);
  WireFormatLite::WriteInt64(kFieldEventsAccepted, s.events_accepted, out);
  WireFormatLite::WriteInt64(kFieldClock, s.clock_us, out);
}

// What follows the rows and attributions: the event-id log, the actions, the
// rules runtime and the fact columns, built or sized before the output is
// allocated. Actions are stored compactly, not as messages, so they are
// serialized here once; the rest is sized, then written from the state.
struct Tail {
  std::string actions;
  std::vector<uint32_t> timer_causes;
  TimerColumnsSizes timers;
  v1::RulesRuntime* rules = nullptr;  // on the writer's arena
  size_t rules_body = 0;
  FactColumnsSizes facts;
  size_t packed_lengths = 0;  // event_id_lengths' payload
};

// The tail is prepared in two halves of about equal cost, which the
// two-thread writer runs side by side: the actions and fact columns here,
void PrepareActionsAndFacts(const EngineState& s, google::protobuf::Arena* arena, Tail* t) {
  {
    google::protobuf::io::StringOutputStream stream(&t->actions);
    CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    v1::Action* action = google::protobuf::Arena::CreateMessage<v1::Action>(arena);
    for (uint32_t i = 0; i < s.actions.size(); ++i) {
      rules::ActionToProto(s, i, action);
      action->ByteSizeLong();  // the size WriteCachedRow writes
      WriteCachedRow(kFieldActions, *action, &out);
    }
  }
  t->facts = SizeFactColumns(s.kpi);
}

// and the rules runtime (timers and their causes) and event-id lengths here.
void PrepareRulesAndIds(const EngineState& s, google::protobuf::Arena* arena, Tail* t) {
  t->timer_causes = rules::TimerCauseIndexes(s);
  t->timers = SizeTimerColumns(s.rules.timers, t->timer_causes);
  t->rules = google::protobuf::Arena::CreateMessage<v1::RulesRuntime>(arena);
  rules::WriteRuntimeAfterTimers(s, t->rules);
  t->rules_body = t->timers.body + t->rules->ByteSizeLong();
  if (!s.event_ids.fingerprints().empty()) {
    for (uint32_t n : s.event_ids.lengths()) {
      t->packed_lengths += CodedOutputStream::VarintSize32(n);
    }
  }
}

// The tail's bytes, once both halves are prepared.
size_t TailBytes(const EngineState& s, const Tail& t) {
  size_t n = t.actions.size() + DelimitedBytes(kFieldRules, t.rules_body) +
             DelimitedBytes(kFieldFacts, t.facts.body);
  if (!s.event_ids.fingerprints().empty()) {
    n += DelimitedBytes(kFieldEventFingerprints,
                        s.event_ids.fingerprints().size() * sizeof(uint64_t)) +
         DelimitedBytes(kFieldEventIdData, s.event_ids.id_bytes()) +
         DelimitedBytes(kFieldEventIdLengths, t.packed_lengths);
  }
  return n;
}

void WriteTail(const EngineState& s, const Tail& t, CodedOutputStream* out) {
  const std::vector<uint64_t>& fps = s.event_ids.fingerprints();
  if (!fps.empty()) {
    WireFormatLite::WriteTag(kFieldEventFingerprints, WireFormatLite::WIRETYPE_LENGTH_DELIMITED,
                             out);
    out->WriteVarint32(static_cast<uint32_t>(fps.size() * sizeof(uint64_t)));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    // fixed64 is little-endian on the wire, as in memory here.
    out->WriteRaw(fps.data(), static_cast<int>(fps.size() * sizeof(uint64_t)));
#else
    for (uint64_t fp : fps) out->WriteLittleEndian64(fp);
#endif
    WireFormatLite::WriteTag(kFieldEventIdData, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
    out->WriteVarint32(static_cast<uint32_t>(s.event_ids.id_bytes()));
    s.event_ids.ForEachIdChunk([&](absl::string_view chunk) {
      out->WriteRaw(chunk.data(), static_cast<int>(chunk.size()));
    });
    WireFormatLite::WriteTag(kFieldEventIdLengths, WireFormatLite::WIRETYPE_LENGTH_DELIMITED, out);
    out->WriteVarint32(static_cast<uint32_t>(t.packed_lengths));
    WriteVarints(out, [&](auto&& emit) {
      for (uint32_t n : s.event_ids.lengths()) emit(n);
    });
  }
  out->WriteRaw(t.actions.data(), static_cast<int>(t.actions.size()));
  WriteDelimitedHead(kFieldRules, t.rules_body, out);
  WriteTimerColumns(s.rules.timers, t.timers, out);
  t.rules->SerializeWithCachedSizes(out);
  WriteTimerCauses(t.timer_causes, t.timers, out);
  WriteDelimitedHead(kFieldFacts, t.facts.body, out);
  WriteFactColumnsBody(s.kpi, t.facts, out);
}

// ---- The writer on two threads ----
//
// Once every size is known, so is every part's offset in the output: each
// thread serializes its range of the output straight into its place. The
// rows of the seven tables and then the attributions (one per account) are
// one sequence, "row r", that both passes split between the threads.

size_t RowCount(const EngineState& s) {
  return s.accounts.size() + s.managers.size() + s.teams.size() + s.deals.size() + s.orders.size() +
         s.invoices.size() + s.complaints.size() + s.accounts.size();
}

// Calls table_row(r, field, row) for the table rows and attribution(r, i)
// (i: the account's index) for the attributions among rows [begin, end).
template <typename TableRow, typename Attribution>
void ForRowsIn(const EngineState& s, size_t begin, size_t end, TableRow&& table_row,
               Attribution&& attribution) {
  size_t base = 0;
  auto table = [&](int field, const auto& t) {
    const size_t n = t.size();
    const size_t to = std::min(end, base + n);
    const auto rows = t.rows();
    for (size_t r = std::max(begin, base); r < to; ++r) table_row(r, field, rows[r - base]);
    base += n;
  };
  table(kFieldAccounts, s.accounts);
  table(kFieldManagers, s.managers);
  table(kFieldTeams, s.teams);
  table(kFieldDeals, s.deals);
  table(kFieldOrders, s.orders);
  table(kFieldInvoices, s.invoices);
  table(kFieldComplaints, s.complaints);
  const size_t to = std::min(end, base + s.accounts.size());
  for (size_t r = std::max(begin, base); r < to; ++r) attribution(r, r - base);
}

// Pass 1 over rows [begin, end): each row's bytes with its tag and length
// into row_bytes[r] (and each attribution's body into attribution_bodies);
// returns their sum. Protobuf caches each message's size in the message, for
// pass 2; the two threads size disjoint messages.
size_t SizeRows(const EngineState& s, size_t begin, size_t end, uint32_t* row_bytes,
                uint32_t* attribution_bodies) {
  size_t sum = 0;
  ForRowsIn(
      s, begin, end,
      [&](size_t r, int field, const auto& row) {
        row_bytes[r] = static_cast<uint32_t>(DelimitedBytes(field, row.ByteSizeLong()));
        sum += row_bytes[r];
      },
      [&](size_t r, size_t i) {
        const size_t body = AttributionBody(s, i);
        attribution_bodies[i] = static_cast<uint32_t>(body);
        row_bytes[r] = static_cast<uint32_t>(DelimitedBytes(kFieldAttributions, body));
        sum += row_bytes[r];
      });
  return sum;
}

void WriteRows(const EngineState& s, size_t begin, size_t end, const uint32_t* attribution_bodies,
               CodedOutputStream* out) {
  ForRowsIn(
      s, begin, end, [&](size_t, int field, const auto& row) { WriteCachedRow(field, row, out); },
      [&](size_t, size_t i) { WriteAttribution(s, i, attribution_bodies[i], out); });
}

// Runs write(out) on a stream over bytes [begin, end) of `bytes`, which the
// write must fill exactly.
template <typename Write>
void WriteRange(std::string* bytes, size_t begin, size_t end, Write&& write) {
  google::protobuf::io::ArrayOutputStream stream(bytes->data() + begin,
                                                 static_cast<int>(end - begin));
  CodedOutputStream out(&stream);
  out.SetSerializationDeterministic(true);
  write(&out);
  out.Trim();
  assert(!out.HadError() && static_cast<size_t>(out.ByteCount()) == end - begin);
}

// Maps in the pages of [p, p + n) for writing, without writing to them, if
// the system can (Linux 5.14 and later); otherwise the first write maps
// them. A fresh 80 MB output is 20 000 page faults: the string's zero-fill
// (std::string cannot be resized without it before C++23) would take them
// all on one thread, and on the 2-core VM the benchmarks run on they cost
// about 200 ms (a plain resize of 83 MB), as much as the serialization
// itself; taken here, half on each thread, they overlap. The zero-fill that
// follows is then a memset over mapped pages.
void MapForWriting(char* p, size_t n) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  // A failure (an older kernel) only leaves the faults to the first write.
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)n;
#endif
}

// Costs of writing a byte of each kind, relative to a byte of packed columns
// (16): a row is serialized field by field, its strings copied whole (no
// UTF-8 check since SerializeRow), about 6.3 instructions a byte against
// the packed columns' 10.5 (a varint per value; the rules runtime is mostly
// packed columns); raw runs (fingerprints, event ids, actions) are copied.
// Measured with callgrind on the generated stream.
constexpr size_t kRowByteCost = 10;
constexpr size_t kRawByteCost = 1;
constexpr size_t kPackedByteCost = 16;

// Pass 1's split: the first thread sizes rows [0, split) and prepares the
// actions and facts, the caller's thread sizes the other rows and prepares
// the rules runtime. In sixteenths of the cost of sizing a row, measured
// with callgrind on the generated stream: serializing an action 256 (since
// SerializeRow), sizing a fact 4, the rules runtime 11 per accepted event.
size_t SizeSplit(const EngineState& s, size_t rows) {
  const size_t first = 256 * s.actions.size() + 4 * s.kpi.facts();
  const size_t second = 16 * rows + 11 * static_cast<size_t>(s.events_accepted);
  return second <= first ? 0 : std::min(rows, (second - first) / 32);
}

// Pass 2's split: the row at which the cost of the head and the rows before
// it is closest to half of the whole.
size_t WriteSplit(const std::vector<uint32_t>& row_bytes, size_t row_total, const EngineState& s,
                  const Tail& t) {
  const size_t raw = s.event_ids.fingerprints().size() * sizeof(uint64_t) + s.event_ids.id_bytes() +
                     t.actions.size();
  const size_t packed = t.packed_lengths + t.rules_body + t.facts.body;
  const size_t whole = kRowByteCost * row_total + kRawByteCost * raw + kPackedByteCost * packed;
  size_t r = 0;
  for (size_t first = 0; r < row_bytes.size(); ++r) {
    first += kRowByteCost * row_bytes[r];
    if (2 * first > whole) break;
  }
  return r;
}

// What WorthParallel is asked before anything is sized: the bytes of the
// event-id log (known without a pass) and a low estimate of the rows' (they
// average about 100 bytes on the generated stream), so that a state is
// written on two threads from about 6 MB of snapshot up.
size_t EstimatedBytes(const EngineState& s) {
  return s.event_ids.fingerprints().size() * sizeof(uint64_t) + s.event_ids.id_bytes() +
         64 * RowCount(s);
}

// As a split: the one WriteSnapshot chooses.
constexpr size_t kAutoSplit = SIZE_MAX;

std::string WriteOnTwoThreads(const EngineState& s, bool parallel, size_t size_split,
                              size_t write_split) {
  google::protobuf::Arena arena;
  Tail tail;
  const size_t rows = RowCount(s);
  std::vector<uint32_t> row_bytes(rows);
  std::vector<uint32_t> attribution_bodies(s.accounts.size());
  size_split = size_split == kAutoSplit ? SizeSplit(s, rows) : std::min(size_split, rows);
  size_t first_rows = 0, second_rows = 0, head = 0;
  // The halves write disjoint elements of the vectors and disjoint fields of
  // `tail`; the arena is thread-safe.
  RunBoth(
      parallel,
      [&] {
        first_rows = SizeRows(s, 0, size_split, row_bytes.data(), attribution_bodies.data());
        PrepareActionsAndFacts(s, &arena, &tail);
      },
      [&] {
        second_rows = SizeRows(s, size_split, rows, row_bytes.data(), attribution_bodies.data());
        head = HeadBytes(s);
        PrepareRulesAndIds(s, &arena, &tail);
      });
  const size_t row_total = first_rows + second_rows;
  const size_t total = head + row_total + TailBytes(s, tail);
  write_split = write_split == kAutoSplit ? WriteSplit(row_bytes, row_total, s, tail)
                                          : std::min(write_split, rows);
  size_t split_at = head;
  for (size_t r = 0; r < write_split; ++r) split_at += row_bytes[r];

  std::string bytes;
  bytes.reserve(total);
  RunBoth(
      parallel, [&] { MapForWriting(bytes.data(), total / 2); },
      [&] { MapForWriting(bytes.data() + total / 2, total - total / 2); });
  bytes.resize(total);
  RunBoth(
      parallel,
      [&] {
        WriteRange(&bytes, 0, split_at, [&](CodedOutputStream* out) {
          WriteHead(s, out);
          WriteRows(s, 0, write_split, attribution_bodies.data(), out);
        });
      },
      [&] {
        WriteRange(&bytes, split_at, total, [&](CodedOutputStream* out) {
          WriteRows(s, write_split, rows, attribution_bodies.data(), out);
          WriteTail(s, tail, out);
        });
      });
  return bytes;
}

absl::Status Inconsistent(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("snapshot: ", what));
}

// Hands the rows of `rows` (on the state's arena) to `table`, rejecting empty
// or repeated ids.
template <typename Row, typename IdOf>
absl::Status Fill(google::protobuf::RepeatedPtrField<Row>* rows, absl::string_view name, IdOf id_of,
                  Table<Row>* table) {
  table->Reserve(rows->size());
  for (int i = 0; i < rows->size(); ++i) {
    Row* row = rows->Mutable(i);
    const std::string& id = id_of(*row);
    if (id.empty() || id.size() > kMaxIdBytes) {
      return Inconsistent(absl::StrCat(name, ": an id is empty or over ", kMaxIdBytes, " bytes"));
    }
    if (!table->TryAdopt(id, row)) {
      return Inconsistent(absl::StrCat(name, ": id '", id, "' is repeated"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string WriteSnapshotReference(const EngineState& s) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    WireFormatLite::WriteInt32(kFieldFormatVersion, kFormatVersion, &out);
    WriteMessage(kFieldConfig, s.config, &out);
    WireFormatLite::WriteInt64(kFieldEventsAccepted, s.events_accepted, &out);
    WireFormatLite::WriteInt64(kFieldClock, s.clock_us, &out);
    WriteTable(kFieldAccounts, s.accounts, &out);
    WriteTable(kFieldManagers, s.managers, &out);
    WriteTable(kFieldTeams, s.teams, &out);
    WriteTable(kFieldDeals, s.deals, &out);
    WriteTable(kFieldOrders, s.orders, &out);
    WriteTable(kFieldInvoices, s.invoices, &out);
    WriteTable(kFieldComplaints, s.complaints, &out);
    v1::AccountAttribution attribution;
    for (size_t i = 0; i < s.accounts.size(); ++i) {
      attribution.set_account_id(s.accounts.at(static_cast<uint32_t>(i)).account_id());
      attribution.mutable_history()->Assign(s.attributions[i].begin(), s.attributions[i].end());
      WriteMessage(kFieldAttributions, attribution, &out);
    }
    const std::vector<uint64_t>& fps = s.event_ids.fingerprints();
    if (!fps.empty()) {
      WireFormatLite::WriteTag(kFieldEventFingerprints, WireFormatLite::WIRETYPE_LENGTH_DELIMITED,
                               &out);
      out.WriteVarint32(static_cast<uint32_t>(fps.size() * sizeof(uint64_t)));
      for (uint64_t fp : fps) out.WriteLittleEndian64(fp);
      std::string ids;
      s.event_ids.AppendIds(&ids);
      WireFormatLite::WriteString(kFieldEventIdData, ids, &out);
      WireFormatLite::WriteTag(kFieldEventIdLengths, WireFormatLite::WIRETYPE_LENGTH_DELIMITED,
                               &out);
      size_t packed = 0;
      for (uint32_t n : s.event_ids.lengths()) packed += CodedOutputStream::VarintSize32(n);
      out.WriteVarint32(static_cast<uint32_t>(packed));
      for (uint32_t n : s.event_ids.lengths()) out.WriteVarint32(n);
    }
    {
      // Stored compactly; written as messages, one at a time.
      v1::Action action;
      for (uint32_t i = 0; i < s.actions.size(); ++i) {
        rules::ActionToProto(s, i, &action);
        WriteMessage(kFieldActions, action, &out);
      }
    }
    {
      v1::RulesRuntime rules;
      rules::WriteRuntime(s, &rules);
      WriteMessage(kFieldRules, rules, &out);
    }
    {
      v1::FactColumns facts;
      kpi::WriteFactColumns(s, &facts);
      WriteMessage(kFieldFacts, facts, &out);
    }
  }
  return bytes;
}

std::string WriteSnapshotSplitForTesting(const EngineState& state, bool parallel, size_t size_split,
                                         size_t write_split) {
  return WriteOnTwoThreads(state, parallel, size_split, write_split);
}

std::string SerializeRowForTesting(const google::protobuf::Message& row) {
  row.ByteSizeLong();  // the cached sizes the writer uses
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    auto write = [&](const auto& m) { out.SetCur(SerializeRow(m, out.Cur(), out.EpsCopy())); };
    const google::protobuf::Descriptor* d = row.GetDescriptor();
    if (d == v1::Account::descriptor()) {
      write(static_cast<const v1::Account&>(row));
    } else if (d == v1::Deal::descriptor()) {
      write(static_cast<const v1::Deal&>(row));
    } else if (d == v1::StageVisit::descriptor()) {
      write(static_cast<const v1::StageVisit&>(row));
    } else if (d == v1::Attribution::descriptor()) {
      write(static_cast<const v1::Attribution&>(row));
    } else if (d == v1::Action::descriptor()) {
      write(static_cast<const v1::Action&>(row));
    } else if (d == v1::Order::descriptor()) {
      write(static_cast<const v1::Order&>(row));
    } else if (d == v1::Invoice::descriptor()) {
      write(static_cast<const v1::Invoice&>(row));
    } else if (d == v1::Complaint::descriptor()) {
      write(static_cast<const v1::Complaint&>(row));
    } else if (d == v1::Money::descriptor()) {
      write(static_cast<const v1::Money&>(row));
    } else {
      write(static_cast<const MessageLite&>(row));
    }
  }
  return bytes;
}

std::string WriteSnapshot(const EngineState& s) {
  if (WorthParallel(EstimatedBytes(s))) return WriteOnTwoThreads(s, true, kAutoSplit, kAutoSplit);
  // The parts the state does not hold as messages are built once, on an
  // arena that frees them all at once.
  google::protobuf::Arena arena;
  Tail tail;
  PrepareActionsAndFacts(s, &arena, &tail);
  PrepareRulesAndIds(s, &arena, &tail);

  // Pass 1: sizes (cached in the messages for pass 2).
  size_t total = HeadBytes(s);
  total += SizeTable(kFieldAccounts, s.accounts) + SizeTable(kFieldManagers, s.managers) +
           SizeTable(kFieldTeams, s.teams) + SizeTable(kFieldDeals, s.deals) +
           SizeTable(kFieldOrders, s.orders) + SizeTable(kFieldInvoices, s.invoices) +
           SizeTable(kFieldComplaints, s.complaints);
  std::vector<uint32_t> attribution_bodies(s.accounts.size());
  for (size_t i = 0; i < s.accounts.size(); ++i) {
    const size_t body = AttributionBody(s, i);
    attribution_bodies[i] = static_cast<uint32_t>(body);
    total += DelimitedBytes(kFieldAttributions, body);
  }
  total += TailBytes(s, tail);

  // Pass 2: the bytes, in field order (as the reference writer).
  std::string bytes;
  bytes.reserve(total);
  {
    AppendToString sink(&bytes);
    google::protobuf::io::CopyingOutputStreamAdaptor stream(&sink, kWriteBufferBytes);
    {
      CodedOutputStream out(&stream);
      out.SetSerializationDeterministic(true);
      // Big raw runs (fingerprints, event ids, actions) go to the sink
      // directly instead of through the buffer.
      out.EnableAliasing(true);
      WriteHead(s, &out);
      WriteTableCached(kFieldAccounts, s.accounts, &out);
      WriteTableCached(kFieldManagers, s.managers, &out);
      WriteTableCached(kFieldTeams, s.teams, &out);
      WriteTableCached(kFieldDeals, s.deals, &out);
      WriteTableCached(kFieldOrders, s.orders, &out);
      WriteTableCached(kFieldInvoices, s.invoices, &out);
      WriteTableCached(kFieldComplaints, s.complaints, &out);
      for (size_t i = 0; i < s.accounts.size(); ++i)
        WriteAttribution(s, i, attribution_bodies[i], &out);
      WriteTail(s, tail, &out);
    }  // `out` hands back what it did not use before the adaptor flushes
    stream.Flush();
  }
  return bytes;
}

namespace {

// ---- Hand parsers for the rows ----
//
// protobuf's generated parse of the row messages (accounts, deals with their
// stage visits, attributions, orders, invoices, complaints) was most of the
// restore's parse: a tag switch per field behind the parse context's limit
// checks, and a UTF-8 check of every string, ASCII or not. These read the
// bytes protobuf writes for those rows with protobuf's own primitives
// (ReadTag, ReadSize, ReadVarint32, IsStructurallyValidUTF8 for strings that
// are not ASCII; the 64-bit varints, eight bytes at a time, decode as
// VarintParse does) into the same arena messages, and give up (false) on
// anything else: an unknown field, a
// field with an unexpected wire type, a varint or string that runs past its
// record, a string that is not UTF-8. Giving up costs nothing in exactness:
// the caller then parses the whole snapshot with the generated parser, which
// keeps the unknown fields or reports the error. So a snapshot the hand path
// accepts gives the generated parse's message, and any other gives the
// generated parse's result, error included (tests and the fuzz target compare
// the two).
namespace rowparse {

namespace pbi = google::protobuf::internal;

// protobuf's primitives read up to 10 bytes from where they start (a
// varint), past the end of the record: the row parsers read records that
// kPad readable bytes follow (ParseSnapshot copies a row at the very end of
// the bytes first). The top-level walk reads a zero-padded copy near the end.
constexpr ptrdiff_t kPad = 16;

// A varint of up to 64 bits as protobuf's VarintParse reads it (the bytes'
// 7-bit groups, bits past 64 dropped; nullptr if a tenth byte has its high
// bit set), with up to eight bytes decoded at once instead of byte by byte:
// the times, most of the rows' integers, take seven or eight.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline const char* ParseVarint64(const char* p, uint64_t* out) {
  if (ABSL_PREDICT_TRUE(static_cast<unsigned char>(p[0]) < 0x80)) {
    *out = static_cast<unsigned char>(p[0]);
    return p + 1;
  }
  uint64_t w;
  std::memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint64_t stops = ~w & 0x8080808080808080ULL;
  if (ABSL_PREDICT_TRUE(stops != 0)) {
    // Through the high bit of the first byte that has it clear: the varint.
    const int bits = __builtin_ctzll(stops) + 1;
    uint64_t x = (bits == 64 ? w : w & ((uint64_t{1} << bits) - 1)) & 0x7f7f7f7f7f7f7f7fULL;
    x = ((x & 0x7f007f007f007f00ULL) >> 1) | (x & 0x007f007f007f007fULL);
    x = ((x & 0x3fff00003fff0000ULL) >> 2) | (x & 0x00003fff00003fffULL);
    x = ((x & 0x0fffffff00000000ULL) >> 4) | (x & 0x000000000fffffffULL);
    *out = x;
    return p + bits / 8;
  }
#endif
  return pbi::VarintParse(p, out);  // nine or ten bytes: negative numbers
}

// A row record [p, end), followed by at least kPad readable bytes.
struct Cursor {
  const char* p;
  const char* end;

  bool AtEnd() const { return p == end; }

  // Moves to q, what a primitive returned: false if it failed or read past
  // the record.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Advance(const char* q) {
    if (ABSL_PREDICT_FALSE(q == nullptr || q > end)) return false;
    p = q;
    return true;
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Tag(uint32_t* tag) { return Advance(pbi::ReadTag(p, tag)); }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Varint64(uint64_t* v) { return Advance(ParseVarint64(p, v)); }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Varint32(uint32_t* v) {
    const char* q = p;
    *v = pbi::ReadVarint32(&q);
    return Advance(q);
  }
  // A length-delimited payload: [*begin, *begin + *n), inside the record.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Delimited(const char** begin, size_t* n) {
    const char* q = p;
    const uint32_t size = pbi::ReadSize(&q);
    if (ABSL_PREDICT_FALSE(q == nullptr || q > end || size > static_cast<size_t>(end - q))) {
      return false;
    }
    *begin = q;
    *n = size;
    p = q + size;
    return true;
  }
  // A nested message's record.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Nested(Cursor* sub) {
    const char* b;
    size_t n;
    if (!Delimited(&b, &n)) return false;
    *sub = Cursor{b, b + n};
    return true;
  }
};

// The top-level records: a cursor over [p, end), the end of the bytes,
// reading a zero-padded copy where fewer than kPad bytes are left.
struct TopCursor {
  const char* p;
  const char* end;

  template <typename Read>
  bool Step(Read&& read) {
    const char* q;
    if (ABSL_PREDICT_TRUE(end - p >= kPad)) {
      q = read(p);
      if (q == nullptr) return false;
    } else {
      char buf[kPad] = {};
      std::memcpy(buf, p, static_cast<size_t>(end - p));
      const char* r = read(static_cast<const char*>(buf));
      if (r == nullptr) return false;
      q = p + (r - buf);
    }
    if (q > end) return false;
    p = q;
    return true;
  }
  bool Tag(uint32_t* tag) {
    return Step([&](const char* q) { return pbi::ReadTag(q, tag); });
  }
  bool Varint64(uint64_t* v) {
    return Step([&](const char* q) { return pbi::VarintParse(q, v); });
  }
  bool Delimited(const char** begin, size_t* n) {
    uint32_t size = 0;
    if (!Step([&](const char* q) {
          size = pbi::ReadSize(&q);
          return q;
        })) {
      return false;
    }
    if (size > static_cast<size_t>(end - p)) return false;
    *begin = p;
    *n = size;
    p += size;
    return true;
  }
};

// Whether [b, b + n) is UTF-8, as a proto3 string must be: ASCII, eight
// bytes at a time, is without asking protobuf.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool IsUtf8(const char* b, size_t n) {
  uint64_t high = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, b + i, 8);
    high |= w;
  }
  for (; i < n; ++i) high |= static_cast<unsigned char>(b[i]);
  return (high & 0x8080808080808080ULL) == 0 ||
         google::protobuf::internal::IsStructurallyValidUTF8(b, static_cast<int>(n));
}

// A proto3 string field: its bytes, [*b, *b + *n), if they are UTF-8.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool StringBytes(Cursor& c, const char** b, size_t* n) {
  return c.Delimited(b, n) && IsUtf8(*b, *n);
}

template <typename Enum>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool EnumValue(Cursor& c, Enum* e) {
  uint64_t v;
  if (!c.Varint64(&v)) return false;
  *e = static_cast<Enum>(v);  // as the generated parser: open enums keep any value
  return true;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool Int64(Cursor& c, int64_t* out) {
  uint64_t v;
  if (!c.Varint64(&v)) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool Int32(Cursor& c, int32_t* out) {
  uint32_t v;
  if (!c.Varint32(&v)) return false;
  *out = static_cast<int32_t>(v);
  return true;
}

// Tags (field number << 3 | wire type) of the fields read here.
constexpr uint32_t Str(int field) { return static_cast<uint32_t>(field) << 3 | 2; }
constexpr uint32_t Var(int field) { return static_cast<uint32_t>(field) << 3; }

// The cases of the parse loops below: for each tag, the field it names (any
// other tag gives up). A field repeated in the record takes its last value,
// a nested message is merged, as protobuf does.
// A string is set from a std::string built at its size and moved into the
// field: the arena string protobuf creates then takes its buffer (or its
// short bytes), where mutable_x()->assign() created an empty arena string
// first and grew it through string::_M_replace.
#define RAPPORT_ROW_STRING(n, name)              \
  case Str(n): {                                 \
    const char* b;                               \
    size_t len;                                  \
    if (!StringBytes(c, &b, &len)) return false; \
    m->set_##name(std::string(b, len));          \
    break;                                       \
  }
#define RAPPORT_ROW_INT64(n, name)   \
  case Var(n): {                     \
    int64_t v;                       \
    if (!Int64(c, &v)) return false; \
    m->set_##name(v);                \
    break;                           \
  }
#define RAPPORT_ROW_INT32(n, name)   \
  case Var(n): {                     \
    int32_t v;                       \
    if (!Int32(c, &v)) return false; \
    m->set_##name(v);                \
    break;                           \
  }
#define RAPPORT_ROW_ENUM(n, name, Enum)  \
  case Var(n): {                         \
    Enum v;                              \
    if (!EnumValue(c, &v)) return false; \
    m->set_##name(v);                    \
    break;                               \
  }
#define RAPPORT_ROW_MESSAGE(n, mutable_or_add)          \
  case Str(n): {                                        \
    Cursor sub;                                         \
    if (!c.Nested(&sub)) return false;                  \
    if (!Parse(sub, m->mutable_or_add())) return false; \
    break;                                              \
  }

bool Parse(Cursor c, v1::StageVisit* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_STRING(1, stage)
      RAPPORT_ROW_INT64(2, entered_at_us)
      RAPPORT_ROW_INT64(3, left_at_us)
      default:
        return false;
    }
  }
  return true;
}

bool Parse(Cursor c, v1::Attribution* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_INT64(1, since_us)
      RAPPORT_ROW_INT64(2, seq)
      RAPPORT_ROW_STRING(3, owner_id)
      RAPPORT_ROW_STRING(4, team_id)
      RAPPORT_ROW_STRING(5, segment)
      default:
        return false;
    }
  }
  return true;
}

bool Parse(Cursor c, v1::AccountAttribution* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_STRING(1, account_id)
      RAPPORT_ROW_MESSAGE(2, add_history)
      default:
        return false;
    }
  }
  return true;
}

bool Parse(Cursor c, v1::Account* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_STRING(1, account_id)
      RAPPORT_ROW_ENUM(2, kind, v1::AccountKind)
      RAPPORT_ROW_STRING(3, name)
      RAPPORT_ROW_STRING(4, owner_id)
      RAPPORT_ROW_STRING(5, team_id)
      RAPPORT_ROW_STRING(6, segment)
      RAPPORT_ROW_ENUM(7, tier, v1::Tier)
      RAPPORT_ROW_ENUM(8, preferred_channel, v1::Channel)
      RAPPORT_ROW_STRING(9, referred_by)
      RAPPORT_ROW_STRING(10, source_partner_id)
      RAPPORT_ROW_INT64(11, created_at_us)
      RAPPORT_ROW_ENUM(12, status, v1::AccountStatus)
      RAPPORT_ROW_INT64(13, status_since_us)
      RAPPORT_ROW_INT64(14, order_count)
      RAPPORT_ROW_INT64(15, last_order_at_us)
      RAPPORT_ROW_INT64(16, last_outbound_at_us)
      RAPPORT_ROW_INT64(17, open_complaints)
      RAPPORT_ROW_INT32(18, last_feedback_score)
      RAPPORT_ROW_INT64(19, last_feedback_at_us)
      RAPPORT_ROW_INT64(20, case_studies)
      default:
        return false;
    }
  }
  return true;
}

bool Parse(Cursor c, v1::Deal* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_STRING(1, deal_id)
      RAPPORT_ROW_STRING(2, account_id)
      RAPPORT_ROW_STRING(3, pipeline_id)
      RAPPORT_ROW_STRING(4, source_partner_id)
      RAPPORT_ROW_INT64(5, created_at_us)
      RAPPORT_ROW_STRING(6, stage)
      RAPPORT_ROW_ENUM(7, status, v1::DealStatus)
      RAPPORT_ROW_INT64(8, won_at_us)
      RAPPORT_ROW_INT64(9, lost_at_us)
      RAPPORT_ROW_STRING(10, lost_reason)
      RAPPORT_ROW_MESSAGE(11, add_history)
      default:
        return false;
    }
  }
  return true;
}

bool Parse(Cursor c, v1::Money* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_INT64(1, amount_minor)
      RAPPORT_ROW_STRING(2, currency)
      default:
        return false;
    }
  }
  return true;
}

bool Parse(Cursor c, v1::Order* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_STRING(1, order_id)
      RAPPORT_ROW_STRING(2, account_id)
      RAPPORT_ROW_STRING(3, deal_id)
      RAPPORT_ROW_MESSAGE(4, mutable_amount)
      RAPPORT_ROW_INT64(5, placed_at_us)
      RAPPORT_ROW_INT64(6, due_at_us)
      RAPPORT_ROW_ENUM(7, status, v1::OrderStatus)
      RAPPORT_ROW_INT64(8, completed_at_us)
      RAPPORT_ROW_INT32(9, delays)
      default:
        return false;
    }
  }
  return true;
}

bool Parse(Cursor c, v1::Invoice* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_STRING(1, invoice_id)
      RAPPORT_ROW_STRING(2, account_id)
      RAPPORT_ROW_STRING(3, order_id)
      RAPPORT_ROW_MESSAGE(4, mutable_amount)
      RAPPORT_ROW_INT64(5, issued_at_us)
      RAPPORT_ROW_INT64(6, due_at_us)
      RAPPORT_ROW_INT64(7, paid_minor)
      default:
        return false;
    }
  }
  return true;
}

bool Parse(Cursor c, v1::Complaint* m) {
  while (!c.AtEnd()) {
    uint32_t tag;
    if (!c.Tag(&tag)) return false;
    switch (tag) {
      RAPPORT_ROW_STRING(1, complaint_id)
      RAPPORT_ROW_STRING(2, account_id)
      RAPPORT_ROW_ENUM(3, severity, v1::Severity)
      RAPPORT_ROW_INT64(4, opened_at_us)
      RAPPORT_ROW_INT64(5, resolved_at_us)
      default:
        return false;
    }
  }
  return true;
}

// A packed repeated varint field's payload [b, b + n) appended to `out`, as
// the generated parser reads it (each value read as 64 bits, then cast to
// T). Counted first, eight bytes at a time (a varint ends at each byte under
// 0x80), so that `out` grows once and the values are stored through a plain
// pointer; then decoded in place where kPad bytes of the payload are left,
// and the last few from a zero-padded copy, so that nothing past the payload
// is read. False if a varint is malformed or runs past the payload.
template <typename T>
bool PackedVarints(const char* b, size_t n, google::protobuf::RepeatedField<T>* out) {
  size_t count = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, b + i, 8);
    // One in each byte that ends a varint, summed by the multiply's top byte.
    count += (((~w >> 7) & 0x0101010101010101ULL) * 0x0101010101010101ULL) >> 56;
  }
  for (; i < n; ++i) count += static_cast<unsigned char>(b[i]) < 0x80;
  if (count == 0) return n == 0;
  if (count > static_cast<size_t>(INT_MAX - out->size())) return false;
  out->Reserve(out->size() + static_cast<int>(count));
  T* dst = out->AddNAlreadyReserved(static_cast<int>(count));
  T* const dst_end = dst + count;
  auto decode = [&](const char* p, const char* end, bool padded) {
    while (padded ? p < end : end - p >= kPad) {
      const unsigned char b0 = static_cast<unsigned char>(p[0]);
      const unsigned char b1 = static_cast<unsigned char>(p[1]);
      uint64_t v;
      if (b0 < 0x80) {
        v = b0;
        ++p;
      } else if (b1 < 0x80) {
        v = (b0 & 0x7fu) | uint64_t{b1} << 7;
        p += 2;
      } else if (static_cast<unsigned char>(p[2]) < 0x80) {
        // Three bytes: the row indexes of a large store.
        v = (b0 & 0x7fu) | uint64_t{b1 & 0x7fu} << 7 |
            uint64_t{static_cast<unsigned char>(p[2])} << 14;
        p += 3;
      } else {
        p = ParseVarint64(p, &v);
        if (p == nullptr) return static_cast<const char*>(nullptr);
      }
      // Each varint ends at a byte counted above, so this holds but for a
      // varint that runs past the payload into the zero padding.
      if (dst == dst_end) return static_cast<const char*>(nullptr);
      *dst++ = static_cast<T>(v);
    }
    return p;
  };
  const char* p = decode(b, b + n, /*padded=*/false);
  if (p == nullptr) return false;
  if (p != b + n) {
    char buf[2 * kPad] = {};
    const size_t left = static_cast<size_t>(b + n - p);
    std::memcpy(buf, p, left);
    const char* q = decode(buf, buf + left, /*padded=*/true);
    if (q != buf + left) return false;
  }
  return dst == dst_end;
}

// rapport.v1.FactColumns, [p, end): the strings and packed columns as the
// writer writes them (any other encoding, such as unpacked columns, gives
// up). The record is the last of a snapshot, and most of it: it is read in
// place, reading nothing past `end`, where the rows are copied when they
// end near the end of the bytes.
bool ParseFacts(const char* p, const char* end, v1::FactColumns* m) {
  TopCursor c{p, end};
  while (c.p != end) {
    uint32_t tag;
    if (!c.Tag(&tag) || (tag & 7) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) return false;
    const char* b;
    size_t n;
    if (!c.Delimited(&b, &n)) return false;
    bool ok = true;
    switch (tag >> 3) {
      case 1:
        ok = IsUtf8(b, n);
        if (ok) m->add_strings(std::string(b, n));
        break;
      case 2:
        ok = PackedVarints(b, n, m->mutable_kind_sizes());
        break;
      case 3:
        ok = PackedVarints(b, n, m->mutable_occurred_at_us());
        break;
      case 4:
        ok = PackedVarints(b, n, m->mutable_account());
        break;
      case 5:
        ok = PackedVarints(b, n, m->mutable_subject());
        break;
      case 6:
        ok = PackedVarints(b, n, m->mutable_aux());
        break;
      case 7:
        ok = PackedVarints(b, n, m->mutable_value());
        break;
      case 8:
        ok = PackedVarints(b, n, m->mutable_order_seq());
        break;
      case 9:
        ok = PackedVarints(b, n, m->mutable_occurred_at_delta_us());
        break;
      default:
        return false;
    }
    if (!ok) return false;
  }
  return true;
}

#undef RAPPORT_ROW_STRING
#undef RAPPORT_ROW_INT64
#undef RAPPORT_ROW_INT32
#undef RAPPORT_ROW_ENUM
#undef RAPPORT_ROW_MESSAGE

// The generated parse of bytes [begin, end) merged into `snap`: parsing
// A++B is parsing A then continuing with B into the same message.
bool MergeGenerated(const char* begin, const char* end, v1::EngineSnapshot* snap) {
  if (begin == end) return true;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(begin),
                                            static_cast<int>(end - begin));
  in.SetTotalBytesLimit(INT_MAX);
  return snap->MergePartialFromCodedStream(&in) && in.ConsumedEntireMessage();
}

// The top-level records of `bytes` into `snap`: the rows by hand, each run of
// other records by the generated parser. False (with `snap` half filled) as
// soon as anything is not as the writer writes it: then only the generated
// parse of the whole decides.
bool ParseSnapshot(absl::string_view bytes, v1::EngineSnapshot* snap) {
  const char* const end = bytes.data() + bytes.size();
  TopCursor c{bytes.data(), end};
  const char* run = c.p;  // the first byte not yet parsed
  std::string padded;     // a row too close to the end, copied
  while (c.p != end) {
    const char* record = c.p;
    uint32_t tag;
    if (!c.Tag(&tag) || (tag >> 3) == 0) return false;
    const char* row = nullptr;
    size_t n = 0;
    switch (tag & 7) {
      case WireFormatLite::WIRETYPE_VARINT: {
        uint64_t ignored;
        if (!c.Varint64(&ignored)) return false;
        continue;
      }
      case WireFormatLite::WIRETYPE_FIXED64:
        if (end - c.p < 8) return false;
        c.p += 8;
        continue;
      case WireFormatLite::WIRETYPE_FIXED32:
        if (end - c.p < 4) return false;
        c.p += 4;
        continue;
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED:
        if (!c.Delimited(&row, &n)) return false;
        break;
      default:
        return false;  // groups, and wire types that do not exist
    }
    // The records before this one that are not rows, then the row.
    auto hand = [&](auto add) {
      if (!MergeGenerated(run, record, snap)) return false;
      run = c.p;
      if (end - (row + n) < kPad) {
        padded.assign(row, n);
        padded.append(kPad, '\0');
        row = padded.data();
      }
      return Parse(Cursor{row, row + n}, add());
    };
    bool ok = true;
    switch (tag >> 3) {
      case kFieldAccounts:
        ok = hand([&] { return snap->add_accounts(); });
        break;
      case kFieldDeals:
        ok = hand([&] { return snap->add_deals(); });
        break;
      case kFieldOrders:
        ok = hand([&] { return snap->add_orders(); });
        break;
      case kFieldInvoices:
        ok = hand([&] { return snap->add_invoices(); });
        break;
      case kFieldComplaints:
        ok = hand([&] { return snap->add_complaints(); });
        break;
      case kFieldAttributions:
        ok = hand([&] { return snap->add_attributions(); });
        break;
      case kFieldFacts:
        // As a singular message field given twice, merged: the columns append.
        if (!MergeGenerated(run, record, snap)) return false;
        run = c.p;
        ok = ParseFacts(row, row + n, snap->mutable_facts());
        break;
      default:
        break;  // left to the generated parser, with the records around it
    }
    if (!ok) return false;
  }
  return MergeGenerated(run, end, snap);
}

}  // namespace rowparse

// Restore on two threads. EngineSnapshot is one message, but the writer puts
// every row in its own top-level record, and by the protobuf encoding parsing
// A++B gives the message of parsing A then merging the parse of B, as long as
// no singular field is in both A and B (a repeated field appends either way;
// a singular one, merged, would keep A's value where the parse of A++B takes
// B's explicit zero). So the bytes are cut at a top-level record boundary,
// the halves parsed at once, and B's rows moved onto A's end by pointer.

// The generated parse of the whole.
bool ParseSnapshotGenerated(absl::string_view bytes, v1::EngineSnapshot* snap) {
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(bytes.data()),
      static_cast<int>(std::min<size_t>(bytes.size(), INT_MAX)));
  in.SetTotalBytesLimit(INT_MAX);
  return bytes.size() <= static_cast<size_t>(INT_MAX) && snap->ParseFromCodedStream(&in) &&
         in.ConsumedEntireMessage();
}

// The rows by hand if the bytes are as the writer writes them, else (`snap`
// cleared first) the generated parse: the same message or the same failure.
bool ParseSnapshotBytes(absl::string_view bytes, v1::EngineSnapshot* snap) {
  if (bytes.size() <= static_cast<size_t>(INT_MAX) && rowparse::ParseSnapshot(bytes, snap)) {
    return true;
  }
  return ParseSnapshotGenerated(bytes, snap);
}

// A varint of at most 10 bytes ending before `end`, as protobuf reads one.
bool ReadVarint(const uint8_t** p, const uint8_t* end, uint64_t* v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    const uint8_t b = *(*p)++;
    x |= uint64_t{b & 0x7fu} << shift;
    if (b < 0x80) {
      *v = x;
      return true;
    }
  }
  return false;
}

// Parse cost of a top-level record, in rough instructions: a row message costs
// a little more per byte (a tag, a field, an arena string for every few bytes)
// than the packed columns (a varint every byte or two) and far more than the
// event-id blob and fingerprints (one copy). Measured with callgrind on the
// 1 M-event snapshot of BM_Restore: the generated parse's weights put ~850 M
// instructions on each side; the rows the hand parsers read (rowparse) cost
// about 0.77 of the generated parse's, and 0.92 of that since they move each
// string into its field; the fact columns read by hand (ParseFacts) 0.8 of
// their generated parse's (1 M events: 193 M -> 157 M). The weights of the
// rows and the facts were then set so that the 1 M-event halves balance. Only the balance of the
// two halves depends on them; the result does not.
uint64_t ParseWeight(uint32_t field, uint64_t len) {
  switch (field) {
    case kFieldEventFingerprints:
    case kFieldEventIdData:
      return len / 4;
    case kFieldEventIdLengths:
    case kFieldRules:
      return 9 * len;
    case kFieldFacts:
      return 6 * len;
    case kFieldAccounts:
    case kFieldDeals:
    case kFieldOrders:
    case kFieldInvoices:
    case kFieldComplaints:
    case kFieldAttributions:
      return 43 + 8 * len;
    default:
      return 64 + 12 * len;
  }
}

// Whether each field number of EngineSnapshot up to its largest is singular.
const std::vector<bool>& SingularFields() {
  static const std::vector<bool>* singular = [] {
    const google::protobuf::Descriptor* d = v1::EngineSnapshot::descriptor();
    int max = 0;
    for (int i = 0; i < d->field_count(); ++i) max = std::max(max, d->field(i)->number());
    auto* v = new std::vector<bool>(static_cast<size_t>(max) + 1, false);
    for (int i = 0; i < d->field_count(); ++i) {
      if (!d->field(i)->is_repeated()) (*v)[static_cast<size_t>(d->field(i)->number())] = true;
    }
    return v;
  }();
  return *singular;
}

// Walks the top-level records of `bytes`, calling fn(field, record end
// offset, weight) for each until it returns false; false if they are not a
// well-formed sequence of varint, fixed64, length-delimited and fixed32
// records (groups, bad tags, lengths that run past the end), which the
// one-thread parse then reports.
template <typename Fn>
bool ForEachTopLevelRecord(absl::string_view bytes, Fn&& fn) {
  const uint8_t* const begin = reinterpret_cast<const uint8_t*>(bytes.data());
  const uint8_t* const end = begin + bytes.size();
  const uint8_t* p = begin;
  while (p < end) {
    uint64_t tag;
    if (!ReadVarint(&p, end, &tag) || tag > UINT32_MAX || (tag >> 3) == 0) return false;
    const uint32_t field = static_cast<uint32_t>(tag >> 3);
    uint64_t len = 0;
    switch (tag & 7) {
      case WireFormatLite::WIRETYPE_VARINT: {
        uint64_t ignored;
        if (!ReadVarint(&p, end, &ignored)) return false;
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED64:
        len = 8;
        break;
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED:
        if (!ReadVarint(&p, end, &len)) return false;
        break;
      case WireFormatLite::WIRETYPE_FIXED32:
        len = 4;
        break;
      default:
        return false;
    }
    if (len > static_cast<uint64_t>(end - p)) return false;
    p += len;
    if (!fn(field, static_cast<size_t>(p - begin), ParseWeight(field, len))) break;
  }
  return true;
}

// Moves the elements of `from` onto the end of `to`, both on the same arena,
// by pointer.
template <typename T>
void MoveRows(google::protobuf::RepeatedPtrField<T>* from,
              google::protobuf::RepeatedPtrField<T>* to) {
  if (from->empty()) return;
  if (to->empty()) {
    to->Swap(from);
    return;
  }
  const int n = from->size();
  std::vector<T*> rows(static_cast<size_t>(n));
  from->UnsafeArenaExtractSubrange(0, n, rows.data());
  to->Reserve(to->size() + n);
  for (T* row : rows) to->UnsafeArenaAddAllocated(row);
}

// a = a merged with b, for halves cut by SnapshotSplitPoint (no singular field in
// both) on the same arena: the rows and the big columns move, MergeFrom
// copies what is left (the scalars, unknown fields, a repeated scalar field
// split over both halves, which the writer never does).
void CombineHalves(v1::EngineSnapshot* a, v1::EngineSnapshot* b) {
  MoveRows(b->mutable_accounts(), a->mutable_accounts());
  MoveRows(b->mutable_managers(), a->mutable_managers());
  MoveRows(b->mutable_teams(), a->mutable_teams());
  MoveRows(b->mutable_deals(), a->mutable_deals());
  MoveRows(b->mutable_orders(), a->mutable_orders());
  MoveRows(b->mutable_invoices(), a->mutable_invoices());
  MoveRows(b->mutable_complaints(), a->mutable_complaints());
  MoveRows(b->mutable_attributions(), a->mutable_attributions());
  MoveRows(b->mutable_actions(), a->mutable_actions());
  if (a->event_fingerprints().empty()) {
    a->mutable_event_fingerprints()->Swap(b->mutable_event_fingerprints());
  }
  if (a->event_id_lengths().empty()) {
    a->mutable_event_id_lengths()->Swap(b->mutable_event_id_lengths());
  }
  // Never in both halves: only b's can be set, and a's is then empty.
  if (!b->event_id_data().empty()) a->mutable_event_id_data()->swap(*b->mutable_event_id_data());
  if (b->has_config()) a->unsafe_arena_set_allocated_config(b->unsafe_arena_release_config());
  if (b->has_rules()) a->unsafe_arena_set_allocated_rules(b->unsafe_arena_release_rules());
  if (b->has_facts()) a->unsafe_arena_set_allocated_facts(b->unsafe_arena_release_facts());
  a->MergeFrom(*b);
}

// Parses `bytes` into `snap` on two threads if they can be cut; the result
// is the one-piece parse's.
bool ParseSnapshotOnTwoThreads(absl::string_view bytes, google::protobuf::Arena* arena,
                               v1::EngineSnapshot* snap) {
  const size_t cut = bytes.size() <= static_cast<size_t>(INT_MAX) ? SnapshotSplitPoint(bytes) : 0;
  if (cut == 0) return ParseSnapshotBytes(bytes, snap);
  return ParseSnapshotInHalves(bytes, cut, arena, snap);
}

// The rows into the tables, their references checked, the attribution
// histories; ReadSnapshot's part that the fact columns depend on.
absl::Status ReadTables(v1::EngineSnapshot& snap, EngineState* s) {
  auto st = Fill(
      snap.mutable_accounts(), "accounts",
      [](const v1::Account& r) -> const std::string& { return r.account_id(); }, &s->accounts);
  if (st.ok())
    st = Fill(
        snap.mutable_managers(), "managers",
        [](const v1::Manager& r) -> const std::string& { return r.manager_id(); }, &s->managers);
  if (st.ok())
    st = Fill(
        snap.mutable_teams(), "teams",
        [](const v1::Team& r) -> const std::string& { return r.team_id(); }, &s->teams);
  if (st.ok())
    st = Fill(
        snap.mutable_deals(), "deals",
        [](const v1::Deal& r) -> const std::string& { return r.deal_id(); }, &s->deals);
  if (st.ok())
    st = Fill(
        snap.mutable_orders(), "orders",
        [](const v1::Order& r) -> const std::string& { return r.order_id(); }, &s->orders);
  if (st.ok())
    st = Fill(
        snap.mutable_invoices(), "invoices",
        [](const v1::Invoice& r) -> const std::string& { return r.invoice_id(); }, &s->invoices);
  if (st.ok())
    st = Fill(
        snap.mutable_complaints(), "complaints",
        [](const v1::Complaint& r) -> const std::string& { return r.complaint_id(); },
        &s->complaints);
  if (!st.ok()) return st;

  // References the lifecycle dereferences without checking. Deals name one
  // of a few pipelines, mostly the previous deal's: comparing its id costs
  // less than hashing it.
  const PipelineInfo* pl = nullptr;
  for (const v1::Deal& d : s->deals.rows()) {
    if (pl == nullptr || pl->pipeline.id() != d.pipeline_id())
      pl = s->pipelines.Find(d.pipeline_id());
    if (pl == nullptr || pl->StageIndex(d.stage()) < 0 ||
        s->accounts.Find(d.account_id()) == nullptr) {
      return Inconsistent(
          absl::StrCat("deal '", d.deal_id(), "' names an unknown account, pipeline or stage"));
    }
  }
  for (const v1::Order& o : s->orders.rows()) {
    if (s->accounts.Find(o.account_id()) == nullptr) {
      return Inconsistent(absl::StrCat("order '", o.order_id(), "' names an unknown account"));
    }
  }
  for (const v1::Invoice& inv : s->invoices.rows()) {
    if (s->accounts.Find(inv.account_id()) == nullptr) {
      return Inconsistent(
          absl::StrCat("invoice '", inv.invoice_id(), "' names an unknown account"));
    }
  }
  for (const v1::Complaint& c : s->complaints.rows()) {
    if (s->accounts.Find(c.account_id()) == nullptr) {
      return Inconsistent(
          absl::StrCat("complaint '", c.complaint_id(), "' names an unknown account"));
    }
  }

  if (snap.attributions_size() != static_cast<int>(s->accounts.size())) {
    return Inconsistent("attributions do not match the accounts one to one");
  }
  for (int i = 0; i < snap.attributions_size(); ++i) {
    v1::AccountAttribution* a = snap.mutable_attributions(i);
    if (a->account_id() != s->accounts.at(static_cast<uint32_t>(i)).account_id()) {
      return Inconsistent(absl::StrCat("attributions[", i, "] is not for account '",
                                       s->accounts.at(static_cast<uint32_t>(i)).account_id(), "'"));
    }
    s->attributions.emplace_back(std::make_move_iterator(a->mutable_history()->begin()),
                                 std::make_move_iterator(a->mutable_history()->end()));
  }
  return absl::OkStatus();
}

// The event-id log, borrowing the blob from the arena where it lives as long
// as the state; needs no other part of the state, and no other part reads it
// before the actions and timers.
absl::Status ReadEventIds(const v1::EngineSnapshot& snap, EngineState* s) {
  if (snap.event_fingerprints_size() != snap.events_accepted()) {
    return Inconsistent("event_fingerprints and events_accepted disagree");
  }
  if (absl::Status st = s->event_ids.Load(snap.event_id_data(), snap.event_id_lengths(),
                                          snap.event_fingerprints(), kMaxIdBytes,
                                          /*borrow=*/true);
      !st.ok()) {
    return Inconsistent(st.message());
  }
  return absl::OkStatus();
}

}  // namespace

bool ParseRowForTesting(absl::string_view bytes, size_t n, google::protobuf::Message* row) {
  // As ParseSnapshot does, a row without kPad bytes after it is copied.
  std::string padded;
  if (bytes.size() - n < static_cast<size_t>(rowparse::kPad)) {
    padded.assign(bytes.data(), n);
    padded.append(rowparse::kPad, '\0');
    bytes = padded;
  }
  const rowparse::Cursor c{bytes.data(), bytes.data() + n};
  const google::protobuf::Descriptor* d = row->GetDescriptor();
  if (d == v1::FactColumns::descriptor()) {
    return rowparse::ParseFacts(bytes.data(), bytes.data() + n, static_cast<v1::FactColumns*>(row));
  }
  auto parse = [&](auto* m) { return rowparse::Parse(c, m); };
  if (d == v1::Account::descriptor()) return parse(static_cast<v1::Account*>(row));
  if (d == v1::Deal::descriptor()) return parse(static_cast<v1::Deal*>(row));
  if (d == v1::StageVisit::descriptor()) return parse(static_cast<v1::StageVisit*>(row));
  if (d == v1::Attribution::descriptor()) return parse(static_cast<v1::Attribution*>(row));
  if (d == v1::AccountAttribution::descriptor()) {
    return parse(static_cast<v1::AccountAttribution*>(row));
  }
  if (d == v1::Order::descriptor()) return parse(static_cast<v1::Order*>(row));
  if (d == v1::Invoice::descriptor()) return parse(static_cast<v1::Invoice*>(row));
  if (d == v1::Complaint::descriptor()) return parse(static_cast<v1::Complaint*>(row));
  if (d == v1::Money::descriptor()) return parse(static_cast<v1::Money*>(row));
  return false;
}

bool ParseSnapshotByHandForTesting(absl::string_view bytes, v1::EngineSnapshot* snap) {
  return bytes.size() <= static_cast<size_t>(INT_MAX) && rowparse::ParseSnapshot(bytes, snap);
}

size_t SnapshotSplitPoint(absl::string_view bytes) {
  const std::vector<bool>& singular = SingularFields();
  constexpr size_t kNone = ~size_t{0};
  // The first and last record of each singular field (end offsets).
  std::vector<size_t> first(singular.size(), kNone), last(singular.size(), 0);
  // Every kStride-th record's end and the weight up to it: the cut is then
  // found by walking on from the last mark before it, not from the start
  // again (at 100 000 events of BM_Restore, 3.70 M instructions -> 2.95 M,
  // which both threads wait for).
  constexpr size_t kStride = 64;
  struct Mark {
    size_t at;
    uint64_t sum;
  };
  std::vector<Mark> marks;
  size_t records = 0;
  uint64_t total = 0;
  if (!ForEachTopLevelRecord(bytes, [&](uint32_t field, size_t at, uint64_t weight) {
        total += weight;
        if (++records % kStride == 0) marks.push_back(Mark{at, total});
        if (field < singular.size() && singular[field]) {
          if (first[field] == kNone) first[field] = at;
          last[field] = at;
        }
        return true;
      })) {
    return 0;
  }
  // Cut after the first record that brings the first half to half the work.
  auto after = std::partition_point(marks.begin(), marks.end(),
                                    [&](const Mark& m) { return 2 * m.sum < total; });
  const size_t from = after == marks.begin() ? 0 : std::prev(after)->at;
  uint64_t sum = after == marks.begin() ? 0 : std::prev(after)->sum;
  size_t cut = 0;
  ForEachTopLevelRecord(bytes.substr(from), [&](uint32_t, size_t at, uint64_t weight) {
    sum += weight;
    if (2 * sum >= total) cut = from + at;
    return cut == 0;
  });
  if (cut == 0 || cut >= bytes.size()) return 0;
  for (size_t f = 0; f < singular.size(); ++f) {
    if (first[f] != kNone && first[f] <= cut && last[f] > cut) return 0;
  }
  return cut;
}

bool ParseSnapshotInHalves(absl::string_view bytes, size_t cut, google::protobuf::Arena* arena,
                           v1::EngineSnapshot* snap) {
  v1::EngineSnapshot* b = google::protobuf::Arena::CreateMessage<v1::EngineSnapshot>(arena);
  bool ok_a = false, ok_b = false;
  RunBoth(
      true, [&] { ok_b = ParseSnapshotBytes(bytes.substr(cut), b); },
      [&] { ok_a = ParseSnapshotBytes(bytes.substr(0, cut), snap); });
  if (!ok_a || !ok_b) return false;
  CombineHalves(snap, b);
  return true;
}

absl::Status ReadSnapshot(absl::string_view bytes, EngineState* s) {
  // Parsed on the state's arena, where the rows stay: restoring copies
  // nothing but the indexes.
  v1::EngineSnapshot& snap = *google::protobuf::Arena::CreateMessage<v1::EngineSnapshot>(&s->arena);
  const bool parallel = WorthParallel(bytes.size());
  if (!(parallel ? ParseSnapshotOnTwoThreads(bytes, &s->arena, &snap)
                 : ParseSnapshotBytes(bytes, &snap))) {
    return absl::DataLossError("snapshot: the bytes are not a rapport.v1.EngineSnapshot");
  }
  if (snap.format_version() < kOldestFormatVersion || snap.format_version() > kFormatVersion) {
    return Inconsistent(absl::StrCat("format_version ", snap.format_version(),
                                     " is not supported (this build reads ", kOldestFormatVersion,
                                     " to ", kFormatVersion, ")"));
  }
  absl::StatusOr<v1::EngineConfig> config = WithDefaults(snap.config());
  if (!config.ok()) return config.status();
  if (absl::Status st = Configure(*config, s); !st.ok()) return st;
  if (snap.events_accepted() < 0 || snap.clock_us() < 0 || snap.clock_us() >= kMaxTimeUs) {
    return Inconsistent("events_accepted or clock_us is out of range");
  }
  s->events_accepted = snap.events_accepted();
  s->clock_us = snap.clock_us();

  // The event-id log needs only its three fields and the tables nothing of
  // it; then the fact columns (which read the tables) and the actions and
  // timers (which read the tables and the log, and write only s->actions and
  // s->rules) need nothing of each other. On a big state each pair goes on
  // at once. The error is the one the one-thread order (tables, event ids,
  // facts, actions, timers) meets first.
  if (!parallel) {
    if (absl::Status st = ReadTables(snap, s); !st.ok()) return st;
    if (absl::Status st = ReadEventIds(snap, s); !st.ok()) return st;
    if (absl::Status st = kpi::ReadFactColumns(snap.facts(), s); !st.ok()) return st;
    // After the tables and event ids: actions and timers name rows and
    // causing events.
    if (absl::Status st = rules::LoadActions(snap.actions(), s); !st.ok())
      return Inconsistent(st.message());
    if (absl::Status st = rules::ReadRuntime(snap.rules(), s); !st.ok()) return st;
  } else {
    absl::Status tables, ids, facts, actions, timers;
    RunBoth(
        true, [&] { ids = ReadEventIds(snap, s); }, [&] { tables = ReadTables(snap, s); });
    if (!tables.ok()) return tables;
    if (!ids.ok()) return ids;
    // The fact columns' head (the part of their work that is not rows) runs
    // beside the actions and timers; their reserves and rows then on both
    // threads.
    RunBoth(
        true,
        [&] {
          actions = rules::LoadActions(snap.actions(), s);
          if (actions.ok()) timers = rules::ReadRuntime(snap.rules(), s);
        },
        [&] { facts = kpi::ReadFactColumnsHead(snap.facts(), s, /*reserve=*/false); });
    if (facts.ok()) facts = kpi::ReadFactRowsOnTwoThreads(snap.facts(), s);
    if (!facts.ok()) return facts;
    if (!actions.ok()) return Inconsistent(actions.message());
    if (!timers.ok()) return timers;
  }

  const int64_t churn_after = s->config.client_churn_after_us();
  for (uint32_t i = 0; i < s->accounts.size(); ++i) {
    const v1::Account& a = s->accounts.at(i);
    if (a.status() == v1::ACCOUNT_STATUS_CLIENT || a.status() == v1::ACCOUNT_STATUS_REPEAT) {
      if (a.last_order_at_us() < 0 || a.last_order_at_us() >= kMaxTimeUs) {
        return Inconsistent(
            absl::StrCat("account '", a.account_id(), "' has an invalid last order time"));
      }
      s->churn_deadlines.emplace(a.last_order_at_us() + churn_after, i);
    }
  }
  return absl::OkStatus();
}

}  // namespace rapport
