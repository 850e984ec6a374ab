#include "lib/ingest/fingerprint.h"

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/message_lite.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "lib/util/copy.h"
#include "lib/util/fingerprint.h"
#include "lib/util/unknown_fields.h"

namespace rapport {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::RepeatedPtrField;

// The payloads of v1::Event: field number, accessor, oneof case. The oneof
// case of a member is its field number (protobuf's rule), asserted below, so
// this list cannot name a payload under the wrong number.
#define RAPPORT_EVENT_PAYLOADS(X)                  \
  X(10, account_upserted, kAccountUpserted)        \
  X(11, manager_upserted, kManagerUpserted)        \
  X(12, team_upserted, kTeamUpserted)              \
  X(13, lead_created, kLeadCreated)                \
  X(14, deal_stage_changed, kDealStageChanged)     \
  X(15, deal_won, kDealWon)                        \
  X(16, deal_lost, kDealLost)                      \
  X(17, partner_agreed, kPartnerAgreed)            \
  X(18, partner_churned, kPartnerChurned)          \
  X(19, account_churned, kAccountChurned)          \
  X(20, order_placed, kOrderPlaced)                \
  X(21, order_delayed, kOrderDelayed)              \
  X(22, order_completed, kOrderCompleted)          \
  X(23, invoice_issued, kInvoiceIssued)            \
  X(24, payment_received, kPaymentReceived)        \
  X(25, activity, kActivity)                       \
  X(26, feedback_received, kFeedbackReceived)      \
  X(27, complaint_opened, kComplaintOpened)        \
  X(28, complaint_resolved, kComplaintResolved)    \
  X(29, case_study_published, kCaseStudyPublished) \
  X(30, task_completed, kTaskCompleted)

#define RAPPORT_ASSERT_PAYLOAD_NUMBER(number, name, kase) \
  static_assert(v1::Event::kase == (number), #name " is not field " #number);
RAPPORT_EVENT_PAYLOADS(RAPPORT_ASSERT_PAYLOAD_NUMBER)
#undef RAPPORT_ASSERT_PAYLOAD_NUMBER

// ---------------------------------------------------------------------------
// The schema, once, as calls on a visitor. Each message lists its fields in
// field-number order (the order protobuf writes them; the schema check below
// rejects any other order). Two visitors walk these lists: the Writer, and
// the Checker that compares them with the descriptors.

template <class V, class M>
void Visit(const M& m, V& v);

template <class V>
void Fields(const v1::Money& m, V& v) {
  v.Int64(1, m.amount_minor());
  v.String(2, m.currency());
}

template <class V>
void Fields(const v1::AccountUpserted& m, V& v) {
  v.String(1, m.account_id());
  v.Enum(2, m.kind());
  v.String(3, m.name());
  v.String(4, m.owner_id());
  v.String(5, m.team_id());
  v.String(6, m.segment());
  v.Enum(7, m.tier());
  v.Enum(8, m.preferred_channel());
  v.String(9, m.referred_by());
  v.String(10, m.source_partner_id());
  v.Int64(11, m.created_at_us());
}

template <class V>
void Fields(const v1::ManagerUpserted& m, V& v) {
  v.String(1, m.manager_id());
  v.String(2, m.name());
  v.String(3, m.team_id());
  v.String(4, m.grade());
  v.Int64(5, m.hired_at_us());
  v.Bool(6, m.is_head());
}

template <class V>
void Fields(const v1::TeamUpserted& m, V& v) {
  v.String(1, m.team_id());
  v.String(2, m.name());
  v.String(3, m.lead_id());
  v.Strings(4, m.segments());
}

template <class V>
void Fields(const v1::LeadCreated& m, V& v) {
  v.String(1, m.deal_id());
  v.String(2, m.account_id());
  v.String(3, m.pipeline_id());
  v.String(4, m.source_partner_id());
}

template <class V>
void Fields(const v1::DealStageChanged& m, V& v) {
  v.String(1, m.deal_id());
  v.String(2, m.to_stage());
}

template <class V>
void Fields(const v1::DealWon& m, V& v) {
  v.String(1, m.deal_id());
}

template <class V>
void Fields(const v1::DealLost& m, V& v) {
  v.String(1, m.deal_id());
  v.String(2, m.reason());
}

template <class V>
void Fields(const v1::PartnerAgreed& m, V& v) {
  v.String(1, m.account_id());
}

template <class V>
void Fields(const v1::PartnerChurned& m, V& v) {
  v.String(1, m.account_id());
}

template <class V>
void Fields(const v1::AccountChurned& m, V& v) {
  v.String(1, m.account_id());
  v.String(2, m.reason());
}

template <class V>
void Fields(const v1::OrderPlaced& m, V& v) {
  v.String(1, m.order_id());
  v.String(2, m.account_id());
  v.String(3, m.deal_id());
  v.Message(4, m.has_amount(), m.amount());
  v.Int64(5, m.due_at_us());
}

template <class V>
void Fields(const v1::OrderDelayed& m, V& v) {
  v.String(1, m.order_id());
  v.Int64(2, m.new_due_at_us());
  v.String(3, m.reason());
}

template <class V>
void Fields(const v1::OrderCompleted& m, V& v) {
  v.String(1, m.order_id());
}

template <class V>
void Fields(const v1::InvoiceIssued& m, V& v) {
  v.String(1, m.invoice_id());
  v.String(2, m.account_id());
  v.String(3, m.order_id());
  v.Message(4, m.has_amount(), m.amount());
  v.Int64(5, m.due_at_us());
}

template <class V>
void Fields(const v1::PaymentReceived& m, V& v) {
  v.String(1, m.account_id());
  v.Message(2, m.has_amount(), m.amount());
  v.String(3, m.order_id());
  v.String(4, m.invoice_id());
}

template <class V>
void Fields(const v1::Activity& m, V& v) {
  v.String(1, m.account_id());
  v.String(2, m.manager_id());
  v.Enum(3, m.kind());
  v.Enum(4, m.direction());
}

template <class V>
void Fields(const v1::FeedbackReceived& m, V& v) {
  v.String(1, m.account_id());
  v.Int32(2, m.score());
  v.String(3, m.order_id());
}

template <class V>
void Fields(const v1::ComplaintOpened& m, V& v) {
  v.String(1, m.complaint_id());
  v.String(2, m.account_id());
  v.Enum(3, m.severity());
}

template <class V>
void Fields(const v1::ComplaintResolved& m, V& v) {
  v.String(1, m.complaint_id());
}

template <class V>
void Fields(const v1::CaseStudyPublished& m, V& v) {
  v.String(1, m.account_id());
  v.String(2, m.deal_id());
}

template <class V>
void Fields(const v1::TaskCompleted& m, V& v) {
  v.String(1, m.task_id());
}

template <class V>
void Fields(const v1::Event& m, V& v) {
  v.String(1, m.event_id());
  v.Int64(2, m.occurred_at_us());
  // No default: a payload added to the proto and not listed here is a build
  // error (-Wswitch), and the schema check would turn the fast path off.
  switch (m.payload_case()) {
#define RAPPORT_PAYLOAD_CASE(number, name, kase) \
  case v1::Event::kase:                          \
    v.OneofMessage(number, m.name());            \
    return;
    RAPPORT_EVENT_PAYLOADS(RAPPORT_PAYLOAD_CASE)
#undef RAPPORT_PAYLOAD_CASE
    case v1::Event::PAYLOAD_NOT_SET:
      return;
  }
  v.Fail();  // a case value outside the enum: leave it to protobuf
}

template <class V, class M>
void Visit(const M& m, V& v) {
  v.Begin(m);
  Fields(m, v);
}

// ---------------------------------------------------------------------------
// Encoding (https://protobuf.dev/programming-guides/encoding/).

constexpr uint32_t kVarint = 0;
constexpr uint32_t kLengthDelimited = 2;

constexpr uint64_t Tag(int number, uint32_t wire_type) {
  return (static_cast<uint64_t>(number) << 3) | wire_type;
}

// Seven bits a byte: the highest set bit decides (v | 1 counts 0 as one bit).
constexpr size_t VarintSize(uint64_t v) {
  return (static_cast<size_t>(64 - __builtin_clzll(v | 1)) + 6) / 7;
}

// int32 and enum values go on the wire sign-extended to 64 bits, so a
// negative one takes ten bytes (protobuf's rule for int32, not zigzag).
constexpr uint64_t Widen(int32_t v) { return static_cast<uint64_t>(static_cast<int64_t>(v)); }

ABSL_ATTRIBUTE_ALWAYS_INLINE inline uint8_t* WriteVarint(uint64_t v, uint8_t* p) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

// Writes a message as protobuf's serialization does (proto3: scalars and
// strings when not default, sub-messages when present, oneof members when
// set), in one pass into a fixed buffer. A sub-message's length comes before
// its bytes but is known only after them: one byte is kept for it, which is
// enough below 128 bytes; a longer sub-message is moved up to make room.
// ok() turns false on unknown fields or when the buffer is too small; the
// event then goes to protobuf.
class Writer {
 public:
  Writer(uint8_t* begin, uint8_t* limit) : p_(begin), limit_(limit) {}

  template <class M>
  void Begin(const M& m) {
    if (MayHaveUnknownFields(m)) ok_ = false;
  }
  // Inline: most fields are strings, and the call cost as much as writing
  // a short one.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void String(int n, const std::string& s) {
    if (!s.empty()) Bytes(n, s);
  }
  void Strings(int n, const RepeatedPtrField<std::string>& r) {
    for (const std::string& s : r) Bytes(n, s);
  }
  void Int64(int n, int64_t v) {
    if (v != 0) Varint(n, static_cast<uint64_t>(v));
  }
  void Int32(int n, int32_t v) {
    if (v != 0) Varint(n, Widen(v));
  }
  void Enum(int n, int v) { Int32(n, v); }
  void Bool(int n, bool v) {
    if (v) Varint(n, 1);
  }
  template <class M>
  void Message(int n, bool has, const M& m) {
    if (has) Sub(n, m);
  }
  template <class M>
  void OneofMessage(int n, const M& m) {
    Sub(n, m);
  }
  void Fail() { ok_ = false; }

  bool ok() const { return ok_; }
  uint8_t* end() const { return p_; }

 private:
  // A tag and a varint take at most ten bytes each.
  static constexpr size_t kTagAndVarint = 20;

  bool Room(size_t n) {
    if (static_cast<size_t>(limit_ - p_) >= n) return true;
    ok_ = false;
    return false;
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Varint(int n, uint64_t v) {
    if (!Room(kTagAndVarint)) return;
    p_ = WriteVarint(Tag(n, kVarint), p_);
    p_ = WriteVarint(v, p_);
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Bytes(int n, const std::string& s) {
    if (!Room(kTagAndVarint + s.size())) return;
    p_ = WriteVarint(Tag(n, kLengthDelimited), p_);
    p_ = WriteVarint(s.size(), p_);
    CopyShort(p_, s.data(), s.size());
    p_ += s.size();
  }
  template <class M>
  void Sub(int n, const M& m) {
    if (!Room(kTagAndVarint)) return;
    p_ = WriteVarint(Tag(n, kLengthDelimited), p_);
    uint8_t* const length = p_++;
    Visit(m, *this);
    if (!ok_) return;
    const size_t size = static_cast<size_t>(p_ - (length + 1));
    if (size < 0x80) {
      *length = static_cast<uint8_t>(size);
      return;
    }
    const size_t extra = VarintSize(size) - 1;
    if (!Room(extra)) return;
    std::memmove(length + 1 + extra, length + 1, size);
    WriteVarint(size, length);
    p_ += extra;
  }

  uint8_t* p_;
  uint8_t* const limit_;
  bool ok_ = true;
};

// Compares the field lists above with the compiled-in descriptors: every
// field listed exists with that number, type, cardinality and presence, in
// increasing order, and every field of every message reached is listed.
class Checker {
 public:
  using Seen = absl::flat_hash_map<const Descriptor*, absl::flat_hash_set<int>>;
  explicit Checker(Seen* seen) : seen_(seen) {}

  template <class M>
  void Begin(const M&) {
    descriptor_ = M::descriptor();
    last_ = 0;
    (*seen_)[descriptor_];  // a message with no fields is still reached
  }
  void String(int n, const std::string&) { Expect(n, FieldDescriptor::TYPE_STRING, false); }
  void Strings(int n, const RepeatedPtrField<std::string>&) {
    Expect(n, FieldDescriptor::TYPE_STRING, true);
  }
  void Int64(int n, int64_t) { Expect(n, FieldDescriptor::TYPE_INT64, false); }
  void Int32(int n, int32_t) { Expect(n, FieldDescriptor::TYPE_INT32, false); }
  void Enum(int n, int) { Expect(n, FieldDescriptor::TYPE_ENUM, false); }
  void Bool(int n, bool) { Expect(n, FieldDescriptor::TYPE_BOOL, false); }
  template <class M>
  void Message(int n, bool, const M&) {
    SubMessage<M>(n, false);
  }
  template <class M>
  void OneofMessage(int n, const M&) {
    SubMessage<M>(n, true);
  }
  void Fail() { ok_ = false; }

  bool ok() const { return ok_; }

 private:
  const FieldDescriptor* Expect(int n, FieldDescriptor::Type type, bool repeated) {
    const FieldDescriptor* f = descriptor_->FindFieldByNumber(n);
    // Presence: proto3 scalars are written when not default; a field with
    // explicit presence (`optional`, a oneof member) is written when set,
    // which only messages here handle.
    const bool presence = type == FieldDescriptor::TYPE_MESSAGE && !repeated;
    if (f == nullptr || f->type() != type || f->is_repeated() != repeated ||
        f->has_presence() != presence || n <= last_) {
      ok_ = false;
      return nullptr;
    }
    last_ = n;
    (*seen_)[descriptor_].insert(n);
    return f;
  }
  template <class M>
  void SubMessage(int n, bool in_oneof) {
    const FieldDescriptor* f = Expect(n, FieldDescriptor::TYPE_MESSAGE, false);
    if (f == nullptr || f->message_type() != M::descriptor() ||
        (f->real_containing_oneof() != nullptr) != in_oneof) {
      ok_ = false;
      return;
    }
    Checker sub(seen_);
    Visit(M::default_instance(), sub);
    if (!sub.ok()) ok_ = false;
  }

  Seen* seen_;
  const Descriptor* descriptor_ = nullptr;
  int last_ = 0;
  bool ok_ = true;
};

bool CheckSchema() {
  Checker::Seen seen;
  bool ok = true;
  // An event per payload (and one without), so that every member of the
  // oneof is visited.
  auto check = [&](const v1::Event& e) {
    Checker c(&seen);
    Visit(e, c);
    if (!c.ok()) ok = false;
  };
  check(v1::Event());
#define RAPPORT_CHECK_PAYLOAD(number, name, kase) \
  {                                               \
    v1::Event e;                                  \
    e.mutable_##name();                           \
    check(e);                                     \
  }
  RAPPORT_EVENT_PAYLOADS(RAPPORT_CHECK_PAYLOAD)
#undef RAPPORT_CHECK_PAYLOAD
  for (const auto& [descriptor, numbers] : seen) {
    if (static_cast<int>(numbers.size()) != descriptor->field_count() ||
        descriptor->extension_range_count() != 0) {
      ok = false;
    }
  }
  return ok;
}

// Every valid event but a team with many long segments (up to 64 of 1 KiB)
// fits: an AccountUpserted with every text at its limit is under 3 KiB.
// Larger events go to protobuf. Not zeroed: only the bytes written are read.
constexpr size_t kBufferBytes = 4096;

// Writes the event into `buffer` (kBufferBytes); the bytes' end, or nullptr
// when the event is left to protobuf.
uint8_t* WriteEvent(const v1::Event& event, uint8_t* buffer) {
  if (!EventFastPathEnabled()) return nullptr;
  // The last eight bytes stay free for Fingerprint64ZeroPadded.
  Writer writer(buffer, buffer + kBufferBytes - 8);
  Visit(event, writer);
  if (!writer.ok()) return nullptr;
  std::memset(writer.end(), 0, 8);
  return writer.end();
}

}  // namespace

bool EventFastPathEnabled() {
  static const bool enabled = CheckSchema();
  return enabled;
}

bool SerializeEventFast(const v1::Event& event, std::string* out) {
  uint8_t buffer[kBufferBytes];
  const uint8_t* end = WriteEvent(event, buffer);
  if (end == nullptr) return false;
  out->assign(reinterpret_cast<const char*>(buffer), static_cast<size_t>(end - buffer));
  return true;
}

uint64_t ReferenceEventFingerprint(const v1::Event& event) {
  // Serializing into a reused buffer avoids a string's growth and zeroing;
  // events are small, so the buffer rarely grows.
  thread_local std::vector<uint8_t> buffer(4096);
  const size_t size = event.ByteSizeLong();
  if (buffer.size() < size) buffer.resize(size);
  event.SerializeWithCachedSizesToArray(buffer.data());
  return Fingerprint64(absl::string_view(reinterpret_cast<const char*>(buffer.data()), size));
}

uint64_t FingerprintEvent(const v1::Event& event) {
  uint8_t buffer[kBufferBytes];
  const uint8_t* end = WriteEvent(event, buffer);
  if (end == nullptr) return ReferenceEventFingerprint(event);
  return Fingerprint64ZeroPadded(reinterpret_cast<const char*>(buffer),
                                 static_cast<size_t>(end - buffer));
}

}  // namespace rapport
