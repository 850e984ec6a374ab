#include "lib/codec/json_parser.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "lib/util/utf8.h"

namespace rapport {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// ---- Per-type tables, built once per message type. ----
//
// Descriptor::FindFieldByCamelcaseName and EnumDescriptor::FindValueByName
// hash the name through the pool's symbol tables on every call; the field's
// type, enum and sub-message were looked up again per value. A table per
// message type answers "which field is this key" with one short hash and a
// memcmp, and holds everything the parse of a value needs.

// A key's first and last eight bytes (zero-padded when shorter): with its
// length they are the whole key up to 16 bytes, and hash and compare it
// without a call to memcmp (field names are short).
struct KeyParts {
  uint64_t head = 0;
  uint64_t tail = 0;
};

inline KeyParts PartsOf(const char* p, size_t n) {
  KeyParts k;
  if (n >= 8) {
    std::memcpy(&k.head, p, 8);
    std::memcpy(&k.tail, p + n - 8, 8);
  } else if (n > 0) {
    std::memcpy(&k.head, p, n);
  }
  return k;
}

inline uint32_t KeyHash(const KeyParts& k, size_t n) {
  uint64_t h = (k.head * 0x9E3779B97F4A7C15ULL) ^ ((k.tail + n) * 0xC2B2AE3D27D4EB4FULL);
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ULL;
  return static_cast<uint32_t>(h >> 32);
}

// Name -> index, open addressing over a power-of-two table at most half full.
// The names point into descriptors, which outlive the table.
class NameIndex {
 public:
  // Adds `name` unless it is already there (the first one added wins).
  void Add(absl::string_view name, int index) { pending_.emplace_back(name, index); }

  void Build() {
    size_t size = 4;
    while (size < 2 * pending_.size()) size *= 2;
    slots_.assign(size, Slot());
    mask_ = static_cast<uint32_t>(size - 1);
    for (const auto& [name, index] : pending_) {
      if (Find(name) >= 0) continue;
      const KeyParts k = PartsOf(name.data(), name.size());
      uint32_t i = KeyHash(k, name.size()) & mask_;
      while (slots_[i].index >= 0) i = (i + 1) & mask_;
      slots_[i] = Slot{k, name.data(), static_cast<uint32_t>(name.size()), index};
    }
    pending_.clear();
    pending_.shrink_to_fit();
  }

  // The index of `key`, or -1.
  int Find(absl::string_view key) const {
    const size_t n = key.size();
    const KeyParts k = PartsOf(key.data(), n);
    uint32_t i = KeyHash(k, n) & mask_;
    while (true) {
      const Slot& s = slots_[i];
      if (s.index < 0) return -1;
      // Head and tail cover the first and last eight bytes; only keys
      // longer than 16 bytes have a middle left to compare.
      if (s.size == n && s.key.head == k.head && s.key.tail == k.tail &&
          (n <= 16 || std::memcmp(s.name + 8, key.data() + 8, n - 16) == 0)) {
        return s.index;
      }
      i = (i + 1) & mask_;
    }
  }

 private:
  struct Slot {
    KeyParts key;
    const char* name = nullptr;
    uint32_t size = 0;
    int index = -1;
  };
  std::vector<std::pair<absl::string_view, int>> pending_;
  std::vector<Slot> slots_;
  uint32_t mask_ = 0;
};

struct EnumTable {
  NameIndex by_name;
  std::vector<int> numbers;  // by value index
};

struct MessageTable;

struct FieldInfo {
  const FieldDescriptor* field = nullptr;
  FieldDescriptor::CppType cpp_type = FieldDescriptor::CPPTYPE_INT32;
  // For the wire transcoder: the field's wire-format type and number, and
  // the index of its real oneof in the message (-1: none).
  FieldDescriptor::Type type = FieldDescriptor::TYPE_INT32;
  uint32_t number = 0;
  int oneof_index = -1;
  bool repeated = false;
  bool is_map = false;
  bool is_bytes = false;
  bool in_real_oneof = false;
  const MessageTable* message = nullptr;   // message fields (not maps)
  const EnumTable* enumeration = nullptr;  // enum fields
};

struct MessageTable {
  const Descriptor* descriptor = nullptr;
  std::vector<FieldInfo> fields;  // by field index
  // lowerCamelCase names first, then the original names, as the reference
  // parser looked them up.
  NameIndex by_name;
};

// Tables for every message type reachable from the ones asked for.
class Tables {
 public:
  const MessageTable* Get(const Descriptor* d) {
    auto it = messages_.find(d);
    if (it != messages_.end()) return it->second.get();
    auto owned = std::make_unique<MessageTable>();
    MessageTable* t = owned.get();
    // Registered before its fields are: recursive types refer to it.
    messages_.emplace(d, std::move(owned));
    t->descriptor = d;
    t->fields.resize(static_cast<size_t>(d->field_count()));
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      FieldInfo& fi = t->fields[static_cast<size_t>(i)];
      fi.field = f;
      fi.cpp_type = f->cpp_type();
      fi.repeated = f->is_repeated();
      fi.is_map = f->is_map();
      fi.is_bytes = f->type() == FieldDescriptor::TYPE_BYTES;
      fi.in_real_oneof = f->real_containing_oneof() != nullptr;
      fi.type = f->type();
      fi.number = static_cast<uint32_t>(f->number());
      if (fi.in_real_oneof) fi.oneof_index = f->real_containing_oneof()->index();
      if (fi.cpp_type == FieldDescriptor::CPPTYPE_MESSAGE && !fi.is_map) {
        fi.message = Get(f->message_type());
      }
      if (fi.cpp_type == FieldDescriptor::CPPTYPE_ENUM) fi.enumeration = Enum(f->enum_type());
      t->by_name.Add(f->camelcase_name(), i);
    }
    for (int i = 0; i < d->field_count(); ++i) t->by_name.Add(d->field(i)->name(), i);
    t->by_name.Build();
    return t;
  }

 private:
  const EnumTable* Enum(const EnumDescriptor* e) {
    auto it = enums_.find(e);
    if (it != enums_.end()) return it->second.get();
    auto t = std::make_unique<EnumTable>();
    for (int i = 0; i < e->value_count(); ++i) {
      t->by_name.Add(e->value(i)->name(), i);
      t->numbers.push_back(e->value(i)->number());
    }
    t->by_name.Build();
    return enums_.emplace(e, std::move(t)).first->second.get();
  }

  absl::flat_hash_map<const Descriptor*, std::unique_ptr<MessageTable>> messages_;
  absl::flat_hash_map<const EnumDescriptor*, std::unique_ptr<EnumTable>> enums_;
};

// Generated types live as long as the process, so their tables are shared
// and never freed. std::mutex rather than absl::Mutex: Debian's Abseil has
// no TSan annotations. The table last asked for is kept in an atomic (not a
// thread_local, which costs a __tls_get_addr call in a shared library):
// callers parse one type over and over.
const MessageTable* GeneratedTable(const Descriptor* d) {
  static std::atomic<const MessageTable*> last{nullptr};
  const MessageTable* t = last.load(std::memory_order_acquire);
  if (t != nullptr && t->descriptor == d) return t;
  static std::mutex* mu = new std::mutex;
  static Tables* tables = new Tables;
  std::lock_guard<std::mutex> lock(*mu);
  t = tables->Get(d);
  last.store(t, std::memory_order_release);
  return t;
}

// ---- The parser. ----

// Bytes a string's fast scan must stop at: '"', '\\', controls, non-ASCII.
inline bool HasSpecialByte(uint64_t w) {
  constexpr uint64_t k01 = 0x0101010101010101ULL;
  constexpr uint64_t k80 = 0x8080808080808080ULL;
  const uint64_t quote = w ^ (k01 * '"');
  const uint64_t backslash = w ^ (k01 * '\\');
  // Exact as a yes/no (the classic "has zero byte" and "has byte less
  // than" tests); the caller finds the byte one at a time.
  return (((quote - k01) & ~quote) | ((backslash - k01) & ~backslash) | ((w - k01 * 0x20) & ~w) |
          w) &
         k80;
}

// A plain decimal integer: -?[0-9]{1,18}, in range for T. Anything else
// (signs, spaces, exponents, more digits) is left to the general path, so
// this only ever agrees with absl::SimpleAtoi.
template <typename T>
bool FastInteger(absl::string_view s, T* out) {
  size_t i = 0;
  bool negative = false;
  if (!s.empty() && s[0] == '-') {
    if constexpr (!std::is_signed_v<T>) return false;
    negative = true;
    i = 1;
  }
  const size_t digits = s.size() - i;
  if (digits == 0 || digits > 18) return false;
  int64_t v = 0;
  for (; i < s.size(); ++i) {
    const unsigned d = static_cast<unsigned char>(s[i]) - static_cast<unsigned>('0');
    if (d > 9) return false;
    v = v * 10 + static_cast<int64_t>(d);
  }
  if (negative) v = -v;
  if constexpr (std::is_signed_v<T>) {
    if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) return false;
  } else if (v < 0 || static_cast<uint64_t>(v) > std::numeric_limits<T>::max()) {
    return false;
  }
  *out = static_cast<T>(v);
  return true;
}

// The transcoder's output: bytes [0, size) of `buf`, which grows by
// doubling and is never shrunk while in use (a resize per value would cost
// more than writing it).
struct WireOut {
  std::string buf;
  size_t size = 0;
  // Room for `n` more bytes at buf[size].
  char* Room(size_t n) {
    if (buf.size() - size < n) buf.resize(std::max(2 * buf.size(), size + n + 256));
    return &buf[size];
  }
};

class Parser {
 public:
  explicit Parser(absl::string_view text)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()) {}

  absl::Status Run(const MessageTable* t, Message* m) {
    SkipWs();
    if (absl::Status st = ParseMessage(t, m, 0); !st.ok()) return st;
    SkipWs();
    if (p_ != end_) return Error("unexpected text after the object");
    return absl::OkStatus();
  }

  // The fast path: the text as the protobuf wire format of the message
  // (appended to `out`), for the generated parser to read. It takes the
  // same tokens with the same functions as Run, and gives up (false) on
  // anything whose meaning on a message differs from a wire merge: a null
  // that could clear something (see TranscodeMessage), two members of one
  // oneof (an error), a map, a group,
  // an enum number the enum does not define, and every error. The caller
  // then runs Run, which is the authority on those.
  bool Transcode(const MessageTable* t, WireOut* out) {
    SkipWs();
    if (!TranscodeMessage(t, 0, /*fresh=*/true, out)) return false;
    SkipWs();
    return p_ == end_;
  }

 private:
  // Only on the error path: the dotted path of the field being parsed.
  absl::Status Error(absl::string_view what) const {
    std::string path;
    for (int i = 0; i < path_size_; ++i) {
      if (i > 0) path.push_back('.');
      path.append(path_[i]->name());
    }
    if (has_unknown_key_) {
      if (!path.empty()) path.push_back('.');
      path.append(unknown_key_);
    }
    return absl::InvalidArgumentError(absl::StrCat("JSON at offset ", p_ - begin_,
                                                   path.empty() ? "" : " (field '", path,
                                                   path.empty() ? "" : "')", ": ", what));
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
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    p_ += 4;
    *out = v;
    return true;
  }

  // A JSON string. Without escapes (nearly always) `out` views the text
  // itself; with escapes it views scratch_, valid until the next string.
  absl::Status ParseString(absl::string_view* out) {
    SkipWs();
    if (p_ >= end_ || *p_ != '"') return Error("expected a string");
    ++p_;
    const char* start = p_;
    bool ascii = true;
    while (true) {
      while (end_ - p_ >= 8) {
        uint64_t w;
        std::memcpy(&w, p_, 8);
        if (HasSpecialByte(w)) break;
        p_ += 8;
      }
      if (p_ >= end_) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        *out = absl::string_view(start, static_cast<size_t>(p_ - start));
        ++p_;
        if (!ascii && !IsValidUtf8(*out)) return Error("string is not valid UTF-8");
        return absl::OkStatus();
      }
      if (c == '\\') break;
      if (c < 0x20) return Error("control character in a string");
      if (c >= 0x80) ascii = false;
      ++p_;
    }
    return ParseEscapedString(start, out);
  }

  // The rest of a string from its first escape at p_, decoded into scratch_.
  absl::Status ParseEscapedString(const char* start, absl::string_view* out) {
    std::string& s = scratch_;
    s.assign(start, static_cast<size_t>(p_ - start));
    const char* run = p_;
    while (true) {
      if (p_ >= end_) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        s.append(run, static_cast<size_t>(p_ - run));
        ++p_;
        if (!IsValidUtf8(s)) return Error("string is not valid UTF-8");
        break;
      }
      if (c < 0x20) return Error("control character in a string");
      if (c != '\\') {
        ++p_;
        continue;
      }
      s.append(run, static_cast<size_t>(p_ - run));
      ++p_;
      if (p_ >= end_) return Error("unterminated escape");
      const char e = *p_++;
      switch (e) {
        case '"':
          s.push_back('"');
          break;
        case '\\':
          s.push_back('\\');
          break;
        case '/':
          s.push_back('/');
          break;
        case 'b':
          s.push_back('\b');
          break;
        case 'f':
          s.push_back('\f');
          break;
        case 'n':
          s.push_back('\n');
          break;
        case 'r':
          s.push_back('\r');
          break;
        case 't':
          s.push_back('\t');
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
          AppendUtf8(cp, &s);
          break;
        }
        default:
          return Error("bad escape");
      }
      run = p_;
    }
    *out = s;
    return absl::OkStatus();
  }

  static bool IsNumberChar(char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
  }

  // The text of a number token, or of a string holding one.
  absl::Status NumberToken(absl::string_view* token) {
    SkipWs();
    if (p_ < end_ && *p_ == '"') return ParseString(token);
    const char* start = p_;
    while (p_ < end_ && IsNumberChar(*p_)) ++p_;
    if (p_ == start) return Error("expected a number");
    *token = absl::string_view(start, static_cast<size_t>(p_ - start));
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status ParseInteger(T* out) {
    absl::string_view token;
    if (absl::Status st = NumberToken(&token); !st.ok()) return st;
    if (FastInteger(token, out)) return absl::OkStatus();
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
      absl::string_view s;
      if (absl::Status st = ParseString(&s); !st.ok()) return st;
      if (s == "NaN") {
        *out = std::numeric_limits<double>::quiet_NaN();
      } else if (s == "Infinity") {
        *out = std::numeric_limits<double>::infinity();
      } else if (s == "-Infinity") {
        *out = -std::numeric_limits<double>::infinity();
      } else if (!absl::SimpleAtod(s, out)) {
        return Error("not a number");
      }
      return absl::OkStatus();
    }
    absl::string_view token;
    if (absl::Status st = NumberToken(&token); !st.ok()) return st;
    if (!absl::SimpleAtod(token, out)) return Error(absl::StrCat("'", token, "' is not a number"));
    return absl::OkStatus();
  }

  // Skips `null`; true when it was there.
  bool Null() {
    SkipWs();
    return ConsumeWord("null");
  }

  absl::Status ParseValue(Message* m, const Reflection* r, const FieldInfo& fi, bool repeated,
                          int depth) {
    const FieldDescriptor* f = fi.field;
    switch (fi.cpp_type) {
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
        if (fi.cpp_type == FieldDescriptor::CPPTYPE_FLOAT) {
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
        if (ConsumeWord("true")) {
          v = true;
        } else if (ConsumeWord("false")) {
          v = false;
        } else {
          return Error("expected true or false");
        }
        repeated ? r->AddBool(m, f, v) : r->SetBool(m, f, v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        SkipWs();
        int number = 0;
        if (p_ < end_ && *p_ == '"') {
          absl::string_view name;
          if (absl::Status st = ParseString(&name); !st.ok()) return st;
          const int index = fi.enumeration->by_name.Find(name);
          if (index < 0) {
            return Error(
                absl::StrCat("'", name, "' is not a value of ", f->enum_type()->full_name()));
          }
          number = fi.enumeration->numbers[static_cast<size_t>(index)];
        } else if (absl::Status st = ParseInteger(&number); !st.ok()) {
          return st;
        }
        repeated ? r->AddEnumValue(m, f, number) : r->SetEnumValue(m, f, number);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        absl::string_view v;
        if (absl::Status st = ParseString(&v); !st.ok()) return st;
        std::string value;
        if (fi.is_bytes) {
          if (!absl::Base64Unescape(v, &value) && !absl::WebSafeBase64Unescape(v, &value)) {
            return Error("bytes must be base64");
          }
        } else {
          value.assign(v.data(), v.size());
        }
        repeated ? r->AddString(m, f, std::move(value)) : r->SetString(m, f, std::move(value));
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        Message* sub = repeated ? r->AddMessage(m, f) : r->MutableMessage(m, f);
        return ParseMessage(fi.message, sub, depth + 1);
      }
    }
    return Error("unsupported field type");
  }

  absl::Status ParseMessage(const MessageTable* t, Message* m, int depth) {
    if (depth >= kMaxJsonDepth) return Error(absl::StrCat("nested deeper than ", kMaxJsonDepth));
    if (!Consume('{')) return Error("expected an object");
    if (Consume('}')) return absl::OkStatus();
    const Reflection* r = m->GetReflection();
    while (true) {
      absl::string_view key;
      if (absl::Status st = ParseString(&key); !st.ok()) return st;
      const int index = t->by_name.Find(key);
      if (index < 0) {
        has_unknown_key_ = true;
        unknown_key_.assign(key.data(), key.size());
        return Error(absl::StrCat("no such field in ", t->descriptor->full_name()));
      }
      const FieldInfo& fi = t->fields[static_cast<size_t>(index)];
      if (fi.is_map) return Error("map fields are not supported");
      if (!Consume(':')) return Error("expected ':'");
      // depth < kMaxJsonDepth here, so the path has room.
      path_[path_size_++] = fi.field;
      if (Null()) {
        r->ClearField(m, fi.field);
      } else {
        if (fi.in_real_oneof) {
          const FieldDescriptor* set =
              r->GetOneofFieldDescriptor(*m, fi.field->real_containing_oneof());
          if (set != nullptr && set != fi.field) {
            return Error(absl::StrCat("fields '", set->name(), "' and '", fi.field->name(),
                                      "' of one oneof are both set"));
          }
        }
        if (fi.repeated) {
          if (!Consume('[')) return Error("expected an array");
          if (!Consume(']')) {
            do {
              if (absl::Status st = ParseValue(m, r, fi, true, depth); !st.ok()) return st;
            } while (Consume(','));
            if (!Consume(']')) return Error("expected ',' or ']'");
          }
        } else if (absl::Status st = ParseValue(m, r, fi, false, depth); !st.ok()) {
          return st;
        }
      }
      --path_size_;
      if (Consume(',')) continue;
      if (Consume('}')) return absl::OkStatus();
      return Error("expected ',' or '}'");
    }
  }

  // ---- The wire transcoder (see Transcode). ----

  // Oneofs per message the transcoder tracks; a message with more goes to Run.
  static constexpr int kMaxOneofs = 8;

  static void PutVarint(WireOut* out, uint64_t v) {
    char* p = out->Room(10);
    size_t n = 0;
    while (v >= 0x80) {
      p[n++] = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    p[n++] = static_cast<char>(v);
    out->size += n;
  }
  static void PutTag(WireOut* out, uint32_t number, uint32_t wire_type) {
    PutVarint(out, (static_cast<uint64_t>(number) << 3) | wire_type);
  }
  static void PutFixed32(WireOut* out, uint32_t v) {
    char* p = out->Room(4);
    for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
    out->size += 4;
  }
  static void PutFixed64(WireOut* out, uint64_t v) {
    char* p = out->Room(8);
    for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
    out->size += 8;
  }
  static void PutBytes(WireOut* out, absl::string_view v) {
    PutVarint(out, v.size());
    if (!v.empty()) std::memcpy(out->Room(v.size()), v.data(), v.size());
    out->size += v.size();
  }

  // `fresh`: the message is new (nothing merged into it before this
  // object). Run's null clears a field, which the wire cannot say; but
  // clearing a field that holds nothing changes nothing, so a null is
  // skipped when the message is fresh and this object has not set the field
  // yet (Python sends None as null). Any other null goes to Run.
  bool TranscodeMessage(const MessageTable* t, int depth, bool fresh, WireOut* out) {
    if (depth >= kMaxJsonDepth) return false;
    if (!Consume('{')) return false;
    if (Consume('}')) return true;
    // The member set of each oneof so far (0: none): a second member is
    // Run's error to report.
    uint32_t oneof_set[kMaxOneofs] = {};
    // The fields this object has given a value (by index; null decides
    // by it, so a field past the bitmap sends a null to Run).
    constexpr int kSeenBits = 128;
    uint64_t seen[kSeenBits / 64] = {};
    while (true) {
      absl::string_view key;
      if (!ParseString(&key).ok()) return false;
      const int index = t->by_name.Find(key);
      if (index < 0) return false;
      const FieldInfo& fi = t->fields[static_cast<size_t>(index)];
      if (fi.is_map) return false;
      if (!Consume(':')) return false;
      SkipWs();
      const bool tracked = index < kSeenBits;
      const uint64_t bit = uint64_t{1} << (index % 64);
      const bool was_seen = !tracked || (seen[index / 64] & bit) != 0;
      if (p_ < end_ && *p_ == 'n') {
        if (!fresh || was_seen || !Null()) return false;
        if (Consume(',')) continue;
        return Consume('}');
      }
      if (tracked) seen[index / 64] |= bit;
      if (fi.oneof_index >= 0) {
        if (fi.oneof_index >= kMaxOneofs) return false;
        uint32_t& set = oneof_set[fi.oneof_index];
        if (set != 0 && set != fi.number) return false;
        set = fi.number;
      }
      if (fi.repeated) {
        // Repeated scalars go unpacked, one tag per value: the parser takes
        // both encodings into the same field.
        if (!Consume('[')) return false;
        if (!Consume(']')) {
          // Each element is a new message.
          do {
            if (!TranscodeValue(fi, depth, /*fresh=*/true, out)) return false;
          } while (Consume(','));
          if (!Consume(']')) return false;
        }
      } else if (!TranscodeValue(fi, depth, fresh && !was_seen, out)) {
        return false;
      }
      if (Consume(',')) continue;
      return Consume('}');
    }
  }

  // One value of field `fi`, parsed exactly as ParseValue parses it (the
  // same functions, by cpp type), written as ParseValue's setter would
  // store it: integers by their wire type, enums by number, floats after
  // the same narrowing, strings and bytes as their bytes.
  // `fresh`: for a message value, whether it merges into nothing.
  bool TranscodeValue(const FieldInfo& fi, int depth, bool fresh, WireOut* out) {
    const uint32_t n = fi.number;
    switch (fi.type) {
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_SINT32:
      case FieldDescriptor::TYPE_SFIXED32: {
        int32_t v = 0;
        if (!ParseInteger(&v).ok()) return false;
        if (fi.type == FieldDescriptor::TYPE_INT32) {
          PutTag(out, n, 0);
          PutVarint(out, static_cast<uint64_t>(static_cast<int64_t>(v)));
        } else if (fi.type == FieldDescriptor::TYPE_SINT32) {
          PutTag(out, n, 0);
          const uint32_t u = static_cast<uint32_t>(v);
          PutVarint(out, (u << 1) ^ static_cast<uint32_t>(-static_cast<int32_t>(u >> 31)));
        } else {
          PutTag(out, n, 5);
          PutFixed32(out, static_cast<uint32_t>(v));
        }
        return true;
      }
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64: {
        int64_t v = 0;
        if (!ParseInteger(&v).ok()) return false;
        if (fi.type == FieldDescriptor::TYPE_INT64) {
          PutTag(out, n, 0);
          PutVarint(out, static_cast<uint64_t>(v));
        } else if (fi.type == FieldDescriptor::TYPE_SINT64) {
          PutTag(out, n, 0);
          const uint64_t u = static_cast<uint64_t>(v);
          PutVarint(out, (u << 1) ^ static_cast<uint64_t>(-static_cast<int64_t>(u >> 63)));
        } else {
          PutTag(out, n, 1);
          PutFixed64(out, static_cast<uint64_t>(v));
        }
        return true;
      }
      case FieldDescriptor::TYPE_UINT32:
      case FieldDescriptor::TYPE_FIXED32: {
        uint32_t v = 0;
        if (!ParseInteger(&v).ok()) return false;
        if (fi.type == FieldDescriptor::TYPE_UINT32) {
          PutTag(out, n, 0);
          PutVarint(out, v);
        } else {
          PutTag(out, n, 5);
          PutFixed32(out, v);
        }
        return true;
      }
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64: {
        uint64_t v = 0;
        if (!ParseInteger(&v).ok()) return false;
        if (fi.type == FieldDescriptor::TYPE_UINT64) {
          PutTag(out, n, 0);
          PutVarint(out, v);
        } else {
          PutTag(out, n, 1);
          PutFixed64(out, v);
        }
        return true;
      }
      case FieldDescriptor::TYPE_DOUBLE: {
        double v = 0;
        if (!ParseDouble(&v).ok()) return false;
        uint64_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        PutTag(out, n, 1);
        PutFixed64(out, bits);
        return true;
      }
      case FieldDescriptor::TYPE_FLOAT: {
        double v = 0;
        if (!ParseDouble(&v).ok()) return false;
        const float f = static_cast<float>(v);
        uint32_t bits;
        std::memcpy(&bits, &f, sizeof bits);
        PutTag(out, n, 5);
        PutFixed32(out, bits);
        return true;
      }
      case FieldDescriptor::TYPE_BOOL: {
        SkipWs();
        uint64_t v;
        if (ConsumeWord("true")) {
          v = 1;
        } else if (ConsumeWord("false")) {
          v = 0;
        } else {
          return false;
        }
        PutTag(out, n, 0);
        PutVarint(out, v);
        return true;
      }
      case FieldDescriptor::TYPE_ENUM: {
        SkipWs();
        int number = 0;
        if (p_ < end_ && *p_ == '"') {
          absl::string_view name;
          if (!ParseString(&name).ok()) return false;
          const int index = fi.enumeration->by_name.Find(name);
          if (index < 0) return false;
          number = fi.enumeration->numbers[static_cast<size_t>(index)];
        } else {
          if (!ParseInteger(&number).ok()) return false;
          // A number the enum does not define: a closed enum's parser would
          // put it among the unknown fields, where the setter stores it.
          if (fi.field->enum_type()->FindValueByNumber(number) == nullptr) return false;
        }
        PutTag(out, n, 0);
        PutVarint(out, static_cast<uint64_t>(static_cast<int64_t>(number)));
        return true;
      }
      case FieldDescriptor::TYPE_STRING:
      case FieldDescriptor::TYPE_BYTES: {
        absl::string_view v;
        if (!ParseString(&v).ok()) return false;
        if (fi.is_bytes) {
          std::string& bytes = scratch_bytes_;
          if (!absl::Base64Unescape(v, &bytes) && !absl::WebSafeBase64Unescape(v, &bytes)) {
            return false;
          }
          v = bytes;
        }
        PutTag(out, n, 2);
        PutBytes(out, v);
        return true;
      }
      case FieldDescriptor::TYPE_MESSAGE: {
        PutTag(out, n, 2);
        // One byte for the length, widened after the fact when the message
        // turns out to take 128 bytes or more.
        const size_t length_at = out->size;
        out->Room(1);
        ++out->size;
        if (!TranscodeMessage(fi.message, depth + 1, fresh, out)) return false;
        const size_t length = out->size - length_at - 1;
        if (length > static_cast<size_t>(INT32_MAX)) return false;
        if (length < 0x80) {
          out->buf[length_at] = static_cast<char>(length);
          return true;
        }
        char prefix[10];
        size_t k = 0;
        for (uint64_t v = length; v >= 0x80; v >>= 7) prefix[k++] = static_cast<char>(v | 0x80);
        prefix[k] = static_cast<char>(length >> (7 * k));
        ++k;
        out->Room(k - 1);
        char* at = &out->buf[length_at];
        std::memmove(at + k, at + 1, length);
        std::memcpy(at, prefix, k);
        out->size += k - 1;
        return true;
      }
      case FieldDescriptor::TYPE_GROUP:
        return false;
    }
    return false;
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  // Strings with escapes, decoded.
  std::string scratch_;
  // The fields being parsed, outermost first (for errors): one per level of
  // nesting, and nesting stops at kMaxJsonDepth.
  const FieldDescriptor* path_[kMaxJsonDepth + 1];
  int path_size_ = 0;
  // A key that names no field, for its error.
  bool has_unknown_key_ = false;
  std::string unknown_key_;
  // Decoded base64 of a bytes value (the transcoder).
  std::string scratch_bytes_;
};

// Parses the transcoder handed to Run (JsonFallbacksForTesting).
std::atomic<int64_t> fallbacks{0};

}  // namespace

int64_t JsonFallbacksForTesting() { return fallbacks.load(std::memory_order_relaxed); }

absl::Status ParseJsonInto(absl::string_view json, Message* message) {
  const Descriptor* d = message->GetDescriptor();
  if (d->file()->pool() == DescriptorPool::generated_pool()) {
    const MessageTable* t = GeneratedTable(d);
    // The fast path, for an empty message (FromJson clears it first): the
    // text transcoded to the wire format, which the generated parser reads
    // into the message about twice as fast as reflection sets each field.
    // It equals Run on every input it takes (json_test compares both with
    // the reference parser); on anything else, and should the wire not
    // parse, Run decides, on the message as it was (empty).
    if (message->ByteSizeLong() == 0) {
      // Kept per thread: no allocation per event when a batch is parsed
      // line by line; a buffer grown past 1 MiB is let go.
      thread_local WireOut wire;
      wire.size = 0;
      const bool done = Parser(json).Transcode(t, &wire) &&
                        wire.size <= static_cast<size_t>(INT32_MAX) &&
                        message->ParseFromArray(wire.buf.data(), static_cast<int>(wire.size));
      if (wire.buf.size() > (size_t{1} << 20)) std::string().swap(wire.buf);
      if (done) return absl::OkStatus();
      fallbacks.fetch_add(1, std::memory_order_relaxed);
      message->Clear();
    }
    return Parser(json).Run(t, message);
  }
  // A dynamic pool may free its descriptors (and reuse their addresses):
  // tables for this call only.
  Tables tables;
  return Parser(json).Run(tables.Get(d), message);
}

}  // namespace rapport
