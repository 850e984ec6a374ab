// The hand-written event serializer (lib/ingest/fingerprint.h) against
// protobuf's: the same bytes on a generated stream and on every field of
// every message reachable from v1::Event, found through the descriptors.
#include "lib/ingest/fingerprint.h"

#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "lib/ingest/validate.h"
#include "rapport/testing/generator.h"

namespace rapport::test {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Both paths, on one event: the fast bytes equal protobuf's (when the fast
// path takes the event, which `fast` says it must for events up to 3 KiB:
// every valid event but a team with many long segments), and the fingerprint
// the engine uses equals the reference.
void ExpectSame(const v1::Event& e, bool fast, const std::string& what) {
  const std::string reference = e.SerializeAsString();
  std::string bytes;
  const bool took = SerializeEventFast(e, &bytes);
  if (reference.size() <= 3 * 1024) {
    EXPECT_EQ(took, fast) << what;
  }
  if (took) {
    EXPECT_EQ(bytes, reference) << what << "\n" << e.DebugString();
  }
  EXPECT_EQ(EventFingerprint(e), ReferenceEventFingerprint(e)) << what;
  EXPECT_EQ(FingerprintEvent(e), ReferenceEventFingerprint(e)) << what;
}

TEST(FingerprintTest, FastPathMatchesTheCompiledSchema) {
  // False means a field of event.proto (or what it imports) is not in the
  // field lists of lib/ingest/fingerprint.cc: every event then takes the
  // protobuf path (correct, but slow). Add the field there.
  EXPECT_TRUE(EventFastPathEnabled());
}

TEST(FingerprintTest, GeneratedStreamIncludingLateEvents) {
  testing::GeneratorOptions o;
  o.seed = 11;
  o.max_events = 200000;
  testing::Generator g(o);
  v1::Event e;
  int64_t n = 0;
  std::string bytes;
  std::set<size_t> tails;  // sizes mod 8: every length of the hash's last word
  while (g.Next(&e)) {
    ASSERT_TRUE(SerializeEventFast(e, &bytes)) << e.DebugString();
    tails.insert(bytes.size() % 8);
    ASSERT_EQ(bytes, e.SerializeAsString()) << e.DebugString();
    ASSERT_EQ(FingerprintEvent(e), ReferenceEventFingerprint(e)) << e.DebugString();
    ++n;
  }
  EXPECT_EQ(n, 200000);
  EXPECT_EQ(tails.size(), 8u);
  EXPECT_GT(g.late(), 1000);  // ~2 % arrive late
}

TEST(FingerprintTest, KnownValueDoesNotChange) {
  // Snapshots store fingerprints: the value for given bytes is a format.
  // Computed with protobuf's serialization before the fast path existed.
  v1::Event e;
  e.set_event_id("e-1");
  e.set_occurred_at_us(1735689600000000);
  auto* p = e.mutable_payment_received();
  p->set_account_id("acc-1");
  p->mutable_amount()->set_amount_minor(12345);
  p->mutable_amount()->set_currency("RUB");
  EXPECT_EQ(FingerprintEvent(e), ReferenceEventFingerprint(e));
  EXPECT_EQ(FingerprintEvent(e), uint64_t{1915302677685555604u});
}

// ---------------------------------------------------------------------------
// Every field, through reflection: a field added to the proto later is set
// here without anyone listing it. If the fast path does not know it, the
// schema check turns the fast path off (caught by the fallback, and by
// FastPathMatchesTheCompiledSchema above); if it knows it wrongly, the bytes
// differ here.

const std::vector<int64_t>& Int64Values() {
  static const auto* v = new std::vector<int64_t>{0,
                                                  1,
                                                  -1,
                                                  127,
                                                  128,
                                                  16383,
                                                  16384,
                                                  1735689600000000,
                                                  std::numeric_limits<int64_t>::max(),
                                                  std::numeric_limits<int64_t>::min()};
  return *v;
}
const std::vector<int32_t>& Int32Values() {
  static const auto* v = new std::vector<int32_t>{0,
                                                  1,
                                                  -1,
                                                  10,
                                                  127,
                                                  128,
                                                  std::numeric_limits<int32_t>::max(),
                                                  std::numeric_limits<int32_t>::min()};
  return *v;
}
const std::vector<std::string>& StringValues() {
  static const auto* v = new std::vector<std::string>{
      "",
      "a",
      "Привет, мир",                    // non-ASCII
      std::string(127, 'x'),            // the longest one-byte length
      std::string(128, 'y'),            // the shortest two-byte length
      std::string(3000, 'z'),           // past the fast path's stack buffer
      std::string("\xff\xfe\x00z", 4),  // invalid UTF-8 and a NUL
  };
  return *v;
}
// Every value of the enum, and numbers outside it (proto3 enums are open; a
// negative one takes ten bytes on the wire).
std::vector<int> EnumValues(const EnumDescriptor* d) {
  std::vector<int> v;
  for (int i = 0; i < d->value_count(); ++i) v.push_back(d->value(i)->number());
  v.push_back(1000);
  v.push_back(-7);
  return v;
}
size_t ValueCount(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT64:
      return Int64Values().size();
    case FieldDescriptor::CPPTYPE_INT32:
      return Int32Values().size();
    case FieldDescriptor::CPPTYPE_ENUM:
      return EnumValues(f->enum_type()).size();
    case FieldDescriptor::CPPTYPE_BOOL:
      return 2;
    case FieldDescriptor::CPPTYPE_STRING:
      return StringValues().size();
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return 3;  // unset, empty, filled
    default:
      return 0;
  }
}

void Fill(Message* m, size_t k);

// Sets field `f` of `m` to its k-th value (cyclically). Repeated fields get
// k % 4 items.
void SetField(Message* m, const FieldDescriptor* f, size_t k) {
  const Reflection* r = m->GetReflection();
  const size_t count = ValueCount(f);
  ASSERT_GT(count, 0u) << f->full_name() << ": a field type this test does not set; add it";
  if (f->is_repeated()) {
    r->ClearField(m, f);
    for (size_t i = 0; i < k % 4; ++i) {
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_STRING:
          r->AddString(m, f, StringValues()[(k + i) % count]);
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          r->AddInt64(m, f, Int64Values()[(k + i) % count]);
          break;
        case FieldDescriptor::CPPTYPE_INT32:
          r->AddInt32(m, f, Int32Values()[(k + i) % count]);
          break;
        case FieldDescriptor::CPPTYPE_ENUM:
          r->AddEnumValue(m, f, EnumValues(f->enum_type())[(k + i) % count]);
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          r->AddBool(m, f, (k + i) % 2 == 1);
          break;
        case FieldDescriptor::CPPTYPE_MESSAGE:
          Fill(r->AddMessage(m, f), k + i);
          break;
        default:
          FAIL() << f->full_name() << ": a repeated type this test does not set; add it";
      }
    }
    return;
  }
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      r->SetString(m, f, StringValues()[k % count]);
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      r->SetInt64(m, f, Int64Values()[k % count]);
      break;
    case FieldDescriptor::CPPTYPE_INT32:
      r->SetInt32(m, f, Int32Values()[k % count]);
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      r->SetEnumValue(m, f, EnumValues(f->enum_type())[k % count]);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      r->SetBool(m, f, k % 2 == 1);
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      if (k % count == 0) {
        r->ClearField(m, f);
      } else if (k % count == 1) {
        r->MutableMessage(m, f)->Clear();  // present and empty: still written
      } else {
        Fill(r->MutableMessage(m, f), k);
      }
      break;
    default:
      FAIL() << f->full_name() << ": a type this test does not set; add it";
  }
}

// Every field of `m` not in a oneof set to its k-th value (message fields
// recursively). Oneof members are set by the callers, one at a time.
void Fill(Message* m, size_t k) {
  const Descriptor* d = m->GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->real_containing_oneof() != nullptr) continue;
    // Shift per field so that neighbours do not all take the same case.
    SetField(m, f, k + static_cast<size_t>(i));
  }
}

// Calls `f` with the path (a chain of message fields from v1::Event, oneof
// members included) to every message reachable from v1::Event.
void ForEachMessage(const Descriptor* d, std::vector<const FieldDescriptor*>* path,
                    const std::function<void(const std::vector<const FieldDescriptor*>&)>& f) {
  f(*path);
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* field = d->field(i);
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (path->size() > 4) continue;  // no recursion in event.proto; a guard if one comes
    path->push_back(field);
    ForEachMessage(field->message_type(), path, f);
    path->pop_back();
  }
}

std::string PathName(const std::vector<const FieldDescriptor*>& path) {
  std::string s = "Event";
  for (const FieldDescriptor* f : path) absl::StrAppend(&s, ".", f->name());
  return s;
}

// The message at the end of `path` in `e`, created (every message on the way
// filled with the k-th values, so fields are written around the sub-message).
Message* Reach(v1::Event* e, const std::vector<const FieldDescriptor*>& path, size_t k) {
  Message* m = e;
  Fill(m, k);
  for (const FieldDescriptor* f : path) {
    m = m->GetReflection()->MutableMessage(m, f);
    Fill(m, k);
  }
  return m;
}

TEST(FingerprintTest, EveryFieldOfEveryReachableMessage) {
  std::vector<const FieldDescriptor*> path;
  int64_t events = 0;
  std::set<const Descriptor*> messages;
  ForEachMessage(v1::Event::descriptor(), &path, [&](const std::vector<const FieldDescriptor*>& p) {
    const Descriptor* d = p.empty() ? v1::Event::descriptor() : p.back()->message_type();
    messages.insert(d);
    // Everything set at once, with several rounds of values.
    for (size_t k = 0; k < 12; ++k) {
      v1::Event e;
      Reach(&e, p, k);
      ExpectSame(e, true, absl::StrCat(PathName(p), " filled, round ", k));
      ++events;
    }
    // One field at a time, every value of it, the rest default (oneof
    // members: each one set, so every case of every oneof is written).
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      const size_t count = ValueCount(f) * (f->is_repeated() ? 4 : 1);
      ASSERT_GT(count, 0u) << f->full_name();
      for (size_t k = 0; k < count; ++k) {
        v1::Event e;
        Message* m = &e;
        for (const FieldDescriptor* step : p) m = m->GetReflection()->MutableMessage(m, step);
        SetField(m, f, k);
        ExpectSame(e, true, absl::StrCat(f->full_name(), " value ", k));
        ++events;
      }
    }
  });
  // Event, its 21 payloads, and Money.
  EXPECT_GE(messages.size(), 23u);
  EXPECT_GT(events, 800);
}

// ---------------------------------------------------------------------------
// What the fast path leaves to protobuf.

v1::Event Sample() {
  v1::Event e;
  e.set_event_id("e-7");
  e.set_occurred_at_us(1735689600000001);
  auto* o = e.mutable_order_placed();
  o->set_order_id("o-1");
  o->set_account_id("a-1");
  o->mutable_amount()->set_amount_minor(500);
  o->mutable_amount()->set_currency("EUR");
  o->set_due_at_us(1735689600000002);
  return e;
}

TEST(FingerprintTest, UnknownFieldsAtEveryLevelTakeTheProtobufPath) {
  auto add_unknown = [](Message* m) {
    google::protobuf::UnknownFieldSet* u = m->GetReflection()->MutableUnknownFields(m);
    u->AddVarint(99, 5);
    u->AddLengthDelimited(100, "extra");
    u->AddFixed64(101, 7);
  };
  v1::Event top = Sample();
  add_unknown(&top);
  ExpectSame(top, false, "unknown on Event");
  v1::Event payload = Sample();
  add_unknown(payload.mutable_order_placed());
  ExpectSame(payload, false, "unknown on OrderPlaced");
  v1::Event money = Sample();
  add_unknown(money.mutable_order_placed()->mutable_amount());
  ExpectSame(money, false, "unknown on Money");
  // The same unknown fields as parsed from the wire (a newer writer's event).
  v1::Event parsed;
  ASSERT_TRUE(parsed.ParseFromString(money.SerializeAsString()));
  ExpectSame(parsed, false, "parsed with unknown fields");
  // And the fingerprint really includes them: it differs from the event's
  // without them.
  EXPECT_NE(FingerprintEvent(money), FingerprintEvent(Sample()));
  // Unknown fields added then cleared leave protobuf's metadata marked: the
  // fast path may decline such an event, but its fingerprint is still the
  // reference (that of the event without them).
  v1::Event cleared = Sample();
  add_unknown(cleared.mutable_order_placed());
  cleared.mutable_order_placed()
      ->GetReflection()
      ->MutableUnknownFields(cleared.mutable_order_placed())
      ->Clear();
  EXPECT_EQ(FingerprintEvent(cleared), ReferenceEventFingerprint(cleared));
  EXPECT_EQ(FingerprintEvent(cleared), FingerprintEvent(Sample()));
}

TEST(FingerprintTest, EventsPastTheBufferTakeTheProtobufPath) {
  for (size_t n : {4000, 4096, 5000, 100000}) {
    v1::Event e = Sample();
    e.mutable_order_placed()->mutable_amount()->set_currency(std::string(n, 'c'));
    ExpectSame(e, false, absl::StrCat("currency of ", n, " bytes"));
  }
  // A valid event that does not fit: a team with 64 segments of 1 KiB.
  v1::Event team;
  team.set_event_id("e-team");
  for (int i = 0; i < 64; ++i) {
    team.mutable_team_upserted()->add_segments(std::string(1024, static_cast<char>('a' + i % 26)));
  }
  ExpectSame(team, false, "64 segments of 1 KiB");
  // Just under: one sub-message of 3 KiB, its length in two bytes.
  v1::Event e = Sample();
  e.mutable_order_placed()->set_deal_id(std::string(3000, 'd'));
  ExpectSame(e, true, "deal_id of 3000 bytes");
}

TEST(FingerprintTest, InvalidUtf8IsWrittenAsProtobufWritesIt) {
  // Protobuf writes proto3 strings that are not UTF-8 as they are (it only
  // logs); validation rejects such ids later, but the fingerprint comes
  // first and must be the same value either way.
  v1::Event e = Sample();
  e.set_event_id(std::string("\xc3\x28\xff", 3));
  e.mutable_order_placed()->mutable_amount()->set_currency(std::string("\xe2\x82", 2));
  ExpectSame(e, true, "invalid UTF-8");
}

TEST(FingerprintTest, EmptyEventAndEmptyPayload) {
  ExpectSame(v1::Event(), true, "empty event");
  v1::Event e;
  e.mutable_deal_won();
  ExpectSame(e, true, "empty payload");
  EXPECT_NE(FingerprintEvent(e), FingerprintEvent(v1::Event()));
}

}  // namespace
}  // namespace rapport::test
