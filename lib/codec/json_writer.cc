#include "lib/codec/json_writer.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "rapport/v1/ingest.pb.h"
#include "rapport/v1/rules.pb.h"

namespace rapport {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;

// One field as the writer expects it in the schema.
struct Expected {
  int number;
  const char* name;
  FieldDescriptor::Type type;
  bool repeated;
};

// True when `d` has exactly the fields the writer writes, with these
// numbers, names and types. A field added to the .proto later would make
// the writer drop it silently; checking once at run time makes it refuse
// (and the printer take over) instead, and json_test fails loudly.
bool Matches(const Descriptor* d, std::initializer_list<Expected> fields) {
  if (d->field_count() != static_cast<int>(fields.size()) || d->oneof_decl_count() != 0 ||
      d->extension_range_count() != 0) {
    return false;
  }
  for (const Expected& e : fields) {
    const FieldDescriptor* f = d->FindFieldByNumber(e.number);
    if (f == nullptr || f->name() != e.name || f->type() != e.type ||
        f->is_repeated() != e.repeated || f->has_presence()) {
      return false;
    }
  }
  return true;
}

// An enum's value names by number, for the numbers from 0 to the largest
// (the printer names a known value and prints an unknown one as a number).
class EnumNames {
 public:
  explicit EnumNames(const EnumDescriptor* d) {
    int max = -1;
    for (int i = 0; i < d->value_count(); ++i) max = std::max(max, d->value(i)->number());
    if (max > 4096) max = 4096;  // sparse enums: the rest by FindValueByNumber
    names_.resize(static_cast<size_t>(max + 1), nullptr);
    for (int n = 0; n <= max; ++n) {
      if (const auto* v = d->FindValueByNumber(n); v != nullptr) names_[n] = &v->name();
    }
    descriptor_ = d;
  }
  void Append(int value, std::string* out) const {
    const std::string* name = nullptr;
    if (value >= 0 && static_cast<size_t>(value) < names_.size()) {
      name = names_[static_cast<size_t>(value)];
    } else if (const auto* v = descriptor_->FindValueByNumber(value); v != nullptr) {
      name = &v->name();
    }
    if (name == nullptr) {
      absl::StrAppend(out, value);
      return;
    }
    out->push_back('"');
    out->append(*name);  // enum names are identifiers: nothing to escape
    out->push_back('"');
  }

 private:
  const EnumDescriptor* descriptor_;
  std::vector<const std::string*> names_;
};

struct Schema {
  bool ok = false;
  EnumNames kind{v1::ActionKind_descriptor()};
  EnumNames assignee{v1::Assignee_descriptor()};
  EnumNames channel{v1::Channel_descriptor()};
  EnumNames state{v1::ActionState_descriptor()};
};

const Schema& GetSchema() {
  static const Schema* const schema = [] {
    auto* s = new Schema;
    using T = FieldDescriptor;
    s->ok = Matches(v1::Rejection::descriptor(), {{1, "index", T::TYPE_INT64, false},
                                                  {2, "event_id", T::TYPE_STRING, false},
                                                  {3, "code", T::TYPE_INT32, false},
                                                  {4, "message", T::TYPE_STRING, false}}) &&
            Matches(v1::IngestResult::descriptor(), {{1, "accepted", T::TYPE_INT64, false},
                                                     {2, "duplicates", T::TYPE_INT64, false},
                                                     {3, "rejected", T::TYPE_MESSAGE, true},
                                                     {4, "actions", T::TYPE_MESSAGE, true}}) &&
            Matches(v1::ActionList::descriptor(), {{1, "actions", T::TYPE_MESSAGE, true}}) &&
            Matches(v1::Action::descriptor(), {{1, "action_id", T::TYPE_STRING, false},
                                               {2, "rule_id", T::TYPE_STRING, false},
                                               {3, "rule_set_id", T::TYPE_STRING, false},
                                               {4, "rule_set_version", T::TYPE_INT64, false},
                                               {5, "kind", T::TYPE_ENUM, false},
                                               {6, "cause_event_id", T::TYPE_STRING, false},
                                               {7, "account_id", T::TYPE_STRING, false},
                                               {8, "deal_id", T::TYPE_STRING, false},
                                               {9, "assignee_role", T::TYPE_ENUM, false},
                                               {10, "assignee_id", T::TYPE_STRING, false},
                                               {11, "fired_at_us", T::TYPE_INT64, false},
                                               {12, "due_at_us", T::TYPE_INT64, false},
                                               {13, "channel", T::TYPE_ENUM, false},
                                               {14, "template", T::TYPE_STRING, false},
                                               {15, "to_stage", T::TYPE_STRING, false},
                                               {16, "state", T::TYPE_ENUM, false},
                                               {17, "occasion", T::TYPE_STRING, false}});
    return s;
  }();
  return *schema;
}

// Bytes 0x20..0x7e that protobuf's JSON escaper copies as they are (it
// escapes '"' and '\\' as JSON requires, '<' and '>' for HTML).
constexpr bool IsPlain(unsigned char c) {
  return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>';
}
struct PlainTable {
  bool v[256];
  constexpr PlainTable() : v() {
    for (int c = 0; c < 256; ++c) v[c] = IsPlain(static_cast<unsigned char>(c));
  }
};
constexpr PlainTable kPlain;

// Code points (besides ASCII controls) that protobuf 3.21's escaper writes
// as \u escapes: C1 controls and the Unicode format characters it lists.
// json_test checks every code point against the printer.
bool EscapedCodePoint(uint32_t c) {
  if (c < 0x7f) return false;
  if (c <= 0x9f) return true;
  if (c < 0xad) return false;
  if (c == 0xad) return true;
  if (c < 0x600) return false;
  return (c <= 0x603) || c == 0x6dd || c == 0x70f || c == 0x17b4 || c == 0x17b5 ||
         (c >= 0x200b && c <= 0x200f) || (c >= 0x2028 && c <= 0x202e) ||
         (c >= 0x2060 && c <= 0x2064) || (c >= 0x206a && c <= 0x206f) || c == 0xfeff ||
         (c >= 0xfff9 && c <= 0xfffb) || (c >= 0x1d173 && c <= 0x1d17a) || c == 0xe0001 ||
         (c >= 0xe0020 && c <= 0xe007f);
}

void AppendU16Escape(uint32_t unit, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[6] = {'\\',
                 'u',
                 kHex[(unit >> 12) & 0xf],
                 kHex[(unit >> 8) & 0xf],
                 kHex[(unit >> 4) & 0xf],
                 kHex[unit & 0xf]};
  out->append(buf, sizeof buf);
}

// Length of the valid UTF-8 sequence at p[0..n) (strict: no overlong forms,
// no surrogates, nothing above U+10FFFF) and its code point; 0 if invalid.
size_t DecodeUtf8(const unsigned char* p, size_t n, uint32_t* cp) {
  const unsigned char c = p[0];
  auto cont = [&](size_t i) { return i < n && (p[i] & 0xc0) == 0x80; };
  if (c >= 0xc2 && c <= 0xdf) {
    if (!cont(1)) return 0;
    *cp = (uint32_t{c} & 0x1f) << 6 | (p[1] & 0x3f);
    return 2;
  }
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xe0 && p[1] < 0xa0) return 0;  // overlong
    if (c == 0xed && p[1] > 0x9f) return 0;  // surrogate
    *cp = (uint32_t{c} & 0x0f) << 12 | (uint32_t{p[1]} & 0x3f) << 6 | (p[2] & 0x3f);
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xf0 && p[1] < 0x90) return 0;  // overlong
    if (c == 0xf4 && p[1] > 0x8f) return 0;  // above U+10FFFF
    *cp = (uint32_t{c} & 0x07) << 18 | (uint32_t{p[1]} & 0x3f) << 12 |
          (uint32_t{p[2]} & 0x3f) << 6 | (p[3] & 0x3f);
    return 4;
  }
  return 0;
}

// Appends `s` as a quoted JSON string the way protobuf's escaper does;
// false on invalid UTF-8 (which the printer mangles in its own way).
bool AppendString(absl::string_view s, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  out->push_back('"');
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && kPlain.v[p[j]]) ++j;
    out->append(s.data() + i, j - i);
    i = j;
    if (i == n) break;
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\b':
          out->append("\\b");
          break;
        case '\t':
          out->append("\\t");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\f':
          out->append("\\f");
          break;
        case '\r':
          out->append("\\r");
          break;
        default:  // other controls, '<', '>', DEL
          AppendU16Escape(c, out);
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(p + i, n - i, &cp);
    if (len == 0) return false;
    if (!EscapedCodePoint(cp)) {
      out->append(s.data() + i, len);
    } else if (cp < 0x10000) {
      AppendU16Escape(cp, out);
    } else {
      AppendU16Escape(0xd800 + ((cp - 0x10000) >> 10), out);
      AppendU16Escape(0xdc00 + ((cp - 0x10000) & 0x3ff), out);
    }
    i += len;
  }
  out->push_back('"');
  return true;
}

// Writes one object's fields, commas between them; defaults are skipped as
// the printer skips them (proto3 fields without presence).
class Object {
 public:
  explicit Object(std::string* out) : out_(out) { out_->push_back('{'); }
  void End() { out_->push_back('}'); }

  // `key` is the quoted name and the colon, e.g. "\"accepted\":".
  void Int64(absl::string_view key, int64_t v) {
    if (v == 0) return;
    Key(key);
    out_->push_back('"');
    char buf[absl::numbers_internal::kFastToBufferSize];
    out_->append(buf, absl::numbers_internal::FastIntToBuffer(v, buf) - buf);
    out_->push_back('"');
  }
  void Int32(absl::string_view key, int32_t v) {
    if (v == 0) return;
    Key(key);
    char buf[absl::numbers_internal::kFastToBufferSize];
    out_->append(buf, absl::numbers_internal::FastIntToBuffer(v, buf) - buf);
  }
  void Enum(absl::string_view key, int v, const EnumNames& names) {
    if (v == 0) return;
    Key(key);
    names.Append(v, out_);
  }
  bool String(absl::string_view key, const std::string& v) {
    if (v.empty()) return true;
    Key(key);
    return AppendString(v, out_);
  }
  // Starts a non-empty array's value.
  void Array(absl::string_view key) {
    Key(key);
    out_->push_back('[');
  }

 private:
  void Key(absl::string_view key) {
    if (!first_) out_->push_back(',');
    first_ = false;
    out_->append(key.data(), key.size());
  }
  std::string* out_;
  bool first_ = true;
};

// Unknown fields (from bytes parsed with a newer schema) are left to the
// printer. proto3 classes have no unknown_fields() accessor in 3.21.
bool HasUnknownFields(const google::protobuf::Message& m) {
  return !m.GetReflection()->GetUnknownFields(m).empty();
}

bool WriteRejection(const v1::Rejection& r, std::string* out) {
  if (HasUnknownFields(r)) return false;
  Object o(out);
  o.Int64("\"index\":", r.index());
  if (!o.String("\"event_id\":", r.event_id())) return false;
  o.Int32("\"code\":", r.code());
  if (!o.String("\"message\":", r.message())) return false;
  o.End();
  return true;
}

bool WriteAction(const Schema& s, const v1::Action& a, std::string* out) {
  if (HasUnknownFields(a)) return false;
  Object o(out);
  bool ok = o.String("\"action_id\":", a.action_id()) && o.String("\"rule_id\":", a.rule_id()) &&
            o.String("\"rule_set_id\":", a.rule_set_id());
  o.Int64("\"rule_set_version\":", a.rule_set_version());
  o.Enum("\"kind\":", a.kind(), s.kind);
  ok = ok && o.String("\"cause_event_id\":", a.cause_event_id()) &&
       o.String("\"account_id\":", a.account_id()) && o.String("\"deal_id\":", a.deal_id());
  o.Enum("\"assignee_role\":", a.assignee_role(), s.assignee);
  ok = ok && o.String("\"assignee_id\":", a.assignee_id());
  o.Int64("\"fired_at_us\":", a.fired_at_us());
  o.Int64("\"due_at_us\":", a.due_at_us());
  o.Enum("\"channel\":", a.channel(), s.channel);
  ok = ok && o.String("\"template\":", a.template_()) && o.String("\"to_stage\":", a.to_stage());
  o.Enum("\"state\":", a.state(), s.state);
  ok = ok && o.String("\"occasion\":", a.occasion());
  o.End();
  return ok;
}

template <typename T, typename Write>
bool WriteArray(Object& o, absl::string_view key,
                const google::protobuf::RepeatedPtrField<T>& items, std::string* out, Write write) {
  if (items.empty()) return true;
  o.Array(key);
  bool first = true;
  for (const T& item : items) {
    if (!first) out->push_back(',');
    first = false;
    if (!write(item)) return false;
  }
  out->push_back(']');
  return true;
}

bool WriteIngestResult(const Schema& s, const v1::IngestResult& r, std::string* out) {
  if (HasUnknownFields(r)) return false;
  Object o(out);
  o.Int64("\"accepted\":", r.accepted());
  o.Int64("\"duplicates\":", r.duplicates());
  if (!WriteArray(o, "\"rejected\":", r.rejected(), out,
                  [&](const v1::Rejection& x) { return WriteRejection(x, out); }) ||
      !WriteArray(o, "\"actions\":", r.actions(), out,
                  [&](const v1::Action& x) { return WriteAction(s, x, out); })) {
    return false;
  }
  o.End();
  return true;
}

bool WriteActionList(const Schema& s, const v1::ActionList& l, std::string* out) {
  if (HasUnknownFields(l)) return false;
  Object o(out);
  if (!WriteArray(o, "\"actions\":", l.actions(), out,
                  [&](const v1::Action& x) { return WriteAction(s, x, out); })) {
    return false;
  }
  o.End();
  return true;
}

}  // namespace

bool AppendResultJson(const google::protobuf::Message& message, std::string* out) {
  const Schema& s = GetSchema();
  if (!s.ok) return false;
  const size_t size = out->size();
  bool ok = false;
  // dynamic_cast, not the descriptor: a DynamicMessage of the same type is
  // not one of these classes.
  if (const auto* r = dynamic_cast<const v1::IngestResult*>(&message)) {
    ok = WriteIngestResult(s, *r, out);
  } else if (const auto* l = dynamic_cast<const v1::ActionList*>(&message)) {
    ok = WriteActionList(s, *l, out);
  } else if (const auto* a = dynamic_cast<const v1::Action*>(&message)) {
    ok = WriteAction(s, *a, out);
  } else if (const auto* j = dynamic_cast<const v1::Rejection*>(&message)) {
    ok = WriteRejection(*j, out);
  }
  if (!ok) out->resize(size);
  return ok;
}

}  // namespace rapport
