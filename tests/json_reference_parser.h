// The first JSON parser of Rapport (reflection per field, a std::string per
// key), kept as the reference the fast parser in lib/codec/json_parser.cc
// must equal: on every input both accept or both refuse, and an accepted
// input gives the same message. json_test.cc and the event_json fuzz target
// compare them; this one was compared with protobuf's JsonStringToMessage.
#ifndef RAPPORT_TESTS_JSON_REFERENCE_PARSER_H_
#define RAPPORT_TESTS_JSON_REFERENCE_PARSER_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "lib/codec/json_parser.h"
#include "lib/util/utf8.h"

namespace rapport::test {
namespace reference_json {

using google::protobuf::Descriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

using google::protobuf::Descriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

class Parser {
 public:
  explicit Parser(absl::string_view text)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()) {}

  absl::Status Run(Message* m) {
    SkipWs();
    if (absl::Status st = ParseMessage(m, 0); !st.ok()) return st;
    SkipWs();
    if (p_ != end_) return Error("unexpected text after the object");
    return absl::OkStatus();
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("JSON at offset ", p_ - begin_,
                                                   field_.empty() ? "" : " (field '", field_,
                                                   field_.empty() ? "" : "')", ": ", what));
  }

  void SkipWs() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\t' || *p_ == '\r')) ++p_;
  }
  bool Consume(char c) {
    SkipWs();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(absl::string_view w) {
    if (static_cast<size_t>(end_ - p_) >= w.size() && absl::string_view(p_, w.size()) == w) {
      p_ += w.size();
      return true;
    }
    return false;
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  bool Hex4(uint32_t* out) {
    if (end_ - p_ < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = p_[i];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<uint32_t>(c - 'A' + 10);
      else
        return false;
    }
    p_ += 4;
    *out = v;
    return true;
  }

  // A JSON string; the common case without escapes is a view into the text.
  absl::Status ParseString(std::string* out) {
    SkipWs();
    if (p_ >= end_ || *p_ != '"') return Error("expected a string");
    ++p_;
    out->clear();
    const char* run = p_;
    while (true) {
      if (p_ >= end_) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        out->append(run, p_ - run);
        ++p_;
        if (!IsValidUtf8(*out)) return Error("string is not valid UTF-8");
        break;
      }
      if (c < 0x20) return Error("control character in a string");
      if (c != '\\') {
        ++p_;
        continue;
      }
      out->append(run, p_ - run);
      ++p_;
      if (p_ >= end_) return Error("unterminated escape");
      const char e = *p_++;
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return Error("bad \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (!ConsumeWord("\\u") || !Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) {
              return Error("unpaired surrogate in \\u escape");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("unpaired surrogate in \\u escape");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Error("bad escape");
      }
      run = p_;
    }
    return absl::OkStatus();
  }

  // The text of a number token, or of a string holding one.
  absl::Status NumberToken(absl::string_view* token, bool* quoted) {
    SkipWs();
    *quoted = p_ < end_ && *p_ == '"';
    if (*quoted) {
      if (absl::Status st = ParseString(&scratch_); !st.ok()) return st;
      *token = scratch_;
      return absl::OkStatus();
    }
    const char* start = p_;
    while (p_ < end_ && (absl::ascii_isdigit(*p_) || *p_ == '-' || *p_ == '+' || *p_ == '.' ||
                         *p_ == 'e' || *p_ == 'E')) {
      ++p_;
    }
    if (p_ == start) return Error("expected a number");
    *token = absl::string_view(start, p_ - start);
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status ParseInteger(T* out) {
    absl::string_view token;
    bool quoted;
    if (absl::Status st = NumberToken(&token, &quoted); !st.ok()) return st;
    if (absl::SimpleAtoi(token, out)) return absl::OkStatus();
    // 1e3 or 5.0 are integers too, when exact and in range.
    double d;
    if (absl::SimpleAtod(token, &d) && std::isfinite(d) && d == std::floor(d) &&
        d >= static_cast<double>(std::numeric_limits<T>::min()) &&
        d < static_cast<double>(std::numeric_limits<T>::max())) {
      *out = static_cast<T>(d);
      return absl::OkStatus();
    }
    return Error(absl::StrCat("'", token, "' is not an integer in range"));
  }

  absl::Status ParseDouble(double* out) {
    SkipWs();
    if (p_ < end_ && *p_ == '"') {
      if (absl::Status st = ParseString(&scratch_); !st.ok()) return st;
      if (scratch_ == "NaN")
        *out = std::numeric_limits<double>::quiet_NaN();
      else if (scratch_ == "Infinity")
        *out = std::numeric_limits<double>::infinity();
      else if (scratch_ == "-Infinity")
        *out = -std::numeric_limits<double>::infinity();
      else if (!absl::SimpleAtod(scratch_, out))
        return Error("not a number");
      return absl::OkStatus();
    }
    absl::string_view token;
    bool quoted;
    if (absl::Status st = NumberToken(&token, &quoted); !st.ok()) return st;
    if (!absl::SimpleAtod(token, out)) return Error(absl::StrCat("'", token, "' is not a number"));
    return absl::OkStatus();
  }

  // Skips `null`; true when it was there.
  bool Null() {
    SkipWs();
    return ConsumeWord("null");
  }

  absl::Status ParseValue(Message* m, const FieldDescriptor* f, bool repeated, int depth) {
    const Reflection* r = m->GetReflection();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        int32_t v = 0;
        if (absl::Status st = ParseInteger(&v); !st.ok()) return st;
        repeated ? r->AddInt32(m, f, v) : r->SetInt32(m, f, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        int64_t v = 0;
        if (absl::Status st = ParseInteger(&v); !st.ok()) return st;
        repeated ? r->AddInt64(m, f, v) : r->SetInt64(m, f, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v = 0;
        if (absl::Status st = ParseInteger(&v); !st.ok()) return st;
        repeated ? r->AddUInt32(m, f, v) : r->SetUInt32(m, f, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v = 0;
        if (absl::Status st = ParseInteger(&v); !st.ok()) return st;
        repeated ? r->AddUInt64(m, f, v) : r->SetUInt64(m, f, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        double v = 0;
        if (absl::Status st = ParseDouble(&v); !st.ok()) return st;
        if (f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
          repeated ? r->AddFloat(m, f, static_cast<float>(v))
                   : r->SetFloat(m, f, static_cast<float>(v));
        } else {
          repeated ? r->AddDouble(m, f, v) : r->SetDouble(m, f, v);
        }
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        SkipWs();
        bool v;
        if (ConsumeWord("true"))
          v = true;
        else if (ConsumeWord("false"))
          v = false;
        else
          return Error("expected true or false");
        repeated ? r->AddBool(m, f, v) : r->SetBool(m, f, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        SkipWs();
        int number = 0;
        if (p_ < end_ && *p_ == '"') {
          if (absl::Status st = ParseString(&scratch_); !st.ok()) return st;
          const EnumValueDescriptor* v = f->enum_type()->FindValueByName(scratch_);
          if (v == nullptr) {
            return Error(
                absl::StrCat("'", scratch_, "' is not a value of ", f->enum_type()->full_name()));
          }
          number = v->number();
        } else if (absl::Status st = ParseInteger(&number); !st.ok()) {
          return st;
        }
        repeated ? r->AddEnumValue(m, f, number) : r->SetEnumValue(m, f, number);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        std::string v;
        if (absl::Status st = ParseString(&v); !st.ok()) return st;
        if (f->type() == FieldDescriptor::TYPE_BYTES) {
          std::string raw;
          if (!absl::Base64Unescape(v, &raw) && !absl::WebSafeBase64Unescape(v, &raw)) {
            return Error("bytes must be base64");
          }
          v = std::move(raw);
        }
        repeated ? r->AddString(m, f, std::move(v)) : r->SetString(m, f, std::move(v));
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        Message* sub = repeated ? r->AddMessage(m, f) : r->MutableMessage(m, f);
        return ParseMessage(sub, depth + 1);
      }
    }
    return Error("unsupported field type");
  }

  absl::Status ParseMessage(Message* m, int depth) {
    if (depth >= kMaxJsonDepth) return Error(absl::StrCat("nested deeper than ", kMaxJsonDepth));
    if (!Consume('{')) return Error("expected an object");
    const Descriptor* d = m->GetDescriptor();
    const Reflection* r = m->GetReflection();
    if (Consume('}')) return absl::OkStatus();
    std::string key;
    while (true) {
      if (absl::Status st = ParseString(&key); !st.ok()) return st;
      const FieldDescriptor* f = d->FindFieldByCamelcaseName(key);
      if (f == nullptr) f = d->FindFieldByName(key);
      if (f == nullptr) {
        field_ = key;
        return Error(absl::StrCat("no such field in ", d->full_name()));
      }
      if (f->is_map()) return Error("map fields are not supported");
      if (!Consume(':')) return Error("expected ':'");
      const std::string saved = field_;
      field_ = saved.empty() ? f->name() : absl::StrCat(saved, ".", f->name());
      if (Null()) {
        r->ClearField(m, f);
      } else {
        if (const auto* oneof = f->real_containing_oneof()) {
          const FieldDescriptor* set = r->GetOneofFieldDescriptor(*m, oneof);
          if (set != nullptr && set != f) {
            return Error(absl::StrCat("fields '", set->name(), "' and '", f->name(),
                                      "' of one oneof are both set"));
          }
        }
        if (f->is_repeated()) {
          if (!Consume('[')) return Error("expected an array");
          if (!Consume(']')) {
            do {
              if (absl::Status st = ParseValue(m, f, true, depth); !st.ok()) return st;
            } while (Consume(','));
            if (!Consume(']')) return Error("expected ',' or ']'");
          }
        } else if (absl::Status st = ParseValue(m, f, false, depth); !st.ok()) {
          return st;
        }
      }
      field_ = saved;
      if (Consume(',')) continue;
      if (Consume('}')) return absl::OkStatus();
      return Error("expected ',' or '}'");
    }
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  std::string scratch_;
  // The dotted path of the field being parsed, for errors.
  std::string field_;
};

}  // namespace reference_json

// Parses `json` into `message` (cleared first; cleared again on error), as
// rapport::FromJson did before the fast parser.
inline absl::Status ReferenceFromJson(absl::string_view json, google::protobuf::Message* message) {
  message->Clear();
  absl::Status st = reference_json::Parser(json).Run(message);
  if (!st.ok()) message->Clear();
  return st;
}

}  // namespace rapport::test

#endif  // RAPPORT_TESTS_JSON_REFERENCE_PARSER_H_
