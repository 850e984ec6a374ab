// The C ABI's fast paths against the C++ API they stand for (issue 6).
//
// The C ABI parses JSON lines straight into an arena batch (not through
// rapport::EventsFromJsonLines) and advances into an arena list (not through
// Engine::Advance). This test compiles lib/c_api/rapport.cc in next to
// rapport_core (linking librapport.so too would register the protobuf
// descriptors twice) and requires byte-identical results, snapshots and
// errors from both paths.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/rapport.h"
#include "rapport/testing/generator.h"

namespace {

using rapport::Engine;

const uint8_t* U(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// A C engine that frees itself.
struct CEngine {
  explicit CEngine(const std::string& config = "") {
    EXPECT_EQ(rapport_engine_create(&e, U(config), config.size(), RAPPORT_FORMAT_PROTOBUF),
              RAPPORT_OK)
        << rapport_last_error_message();
  }
  ~CEngine() { rapport_engine_destroy(e); }
  std::string Snapshot() const {
    uint8_t* out = nullptr;
    size_t len = 0;
    EXPECT_EQ(rapport_engine_snapshot(&out, &len, e, RAPPORT_FORMAT_PROTOBUF), RAPPORT_OK);
    std::string s(reinterpret_cast<const char*>(out), len);
    rapport_free(out);
    return s;
  }
  rapport_engine* e = nullptr;
};

// What a C call gave: its status code, message and output bytes.
struct Outcome {
  int code = 0;
  std::string message;
  std::string bytes;
};

Outcome IngestC(rapport_engine* e, const std::string& text, int format, int mode) {
  uint8_t* out = nullptr;
  size_t len = 0;
  Outcome o;
  o.code = rapport_ingest_batch_v2(&out, &len, e, U(text), text.size(), format, mode,
                                   RAPPORT_FORMAT_PROTOBUF);
  if (o.code != RAPPORT_OK) o.message = rapport_last_error_message();
  if (out != nullptr) o.bytes.assign(reinterpret_cast<const char*>(out), len);
  rapport_free(out);
  return o;
}

// The reference: rapport::EventsFromJsonLines, then Engine::IngestBatch.
Outcome IngestCpp(Engine& engine, const std::string& text, rapport::BatchMode mode) {
  Outcome o;
  auto events = rapport::EventsFromJsonLines(text);
  if (!events.ok()) {
    o.code = static_cast<int>(events.status().code());
    o.message = std::string(events.status().message());
    return o;
  }
  rapport::IngestOptions options;
  options.mode = mode;
  auto r = engine.IngestBatch(*events, options);
  if (!r.ok()) {
    o.code = static_cast<int>(r.status().code());
    o.message = std::string(r.status().message());
    return o;
  }
  o.bytes = r->SerializeAsString();
  return o;
}

void ExpectSame(const Outcome& c, const Outcome& cpp, const std::string& what) {
  EXPECT_EQ(c.code, cpp.code) << what << ": " << c.message << " / " << cpp.message;
  EXPECT_EQ(c.message, cpp.message) << what;
  EXPECT_EQ(c.bytes, cpp.bytes) << what;
}

// The generated stream as JSON lines in batches of `per_batch`, with the
// shapes the line splitter must skip or trim: blank lines, spaces and tabs
// around a line, CRLF endings, no final newline.
std::vector<std::string> JsonLineBatches(int64_t events, size_t per_batch) {
  rapport::testing::GeneratorOptions o;
  o.max_events = events;
  std::vector<std::string> batches(1);
  size_t in_batch = 0;
  size_t i = 0;
  for (const rapport::v1::Event& e : rapport::testing::GenerateStream(o)) {
    if (in_batch == per_batch) {
      batches.emplace_back();
      in_batch = 0;
    }
    std::string& b = batches.back();
    const std::string json = *rapport::ToJson(e);
    switch (i++ % 5) {
      case 0:
        absl::StrAppend(&b, json, "\n");
        break;
      case 1:
        absl::StrAppend(&b, "\n  ", json, "\t\n");
        break;
      case 2:
        absl::StrAppend(&b, json, "\r\n");
        break;
      case 3:
        absl::StrAppend(&b, " \n\n", json, "\n \n");
        break;
      default:
        absl::StrAppend(&b, json, in_batch + 1 == per_batch ? "" : "\n");
        break;
    }
    ++in_batch;
  }
  return batches;
}

TEST(CApiJsonLines, IngestEqualsTheReferencePathByteForByte) {
  CEngine c;
  auto cpp = *Engine::Create();
  int64_t accepted = 0;
  for (const std::string& text : JsonLineBatches(20000, 997)) {
    const Outcome a = IngestC(c.e, text, RAPPORT_FORMAT_JSON_LINES, RAPPORT_BATCH_ATOMIC);
    const Outcome b = IngestCpp(*cpp, text, rapport::BatchMode::kAtomic);
    ExpectSame(a, b, "batch");
    ASSERT_EQ(a.code, RAPPORT_OK) << a.message;
    rapport::v1::IngestResult r;
    ASSERT_TRUE(r.ParseFromString(a.bytes));
    accepted += r.accepted();
  }
  EXPECT_GT(accepted, 19000);  // the stream's events, but for its duplicates
  EXPECT_EQ(c.Snapshot(), *cpp->Snapshot());
  // The same batches again: every event a duplicate, on both sides.
  for (const std::string& text : JsonLineBatches(3000, 1000)) {
    ExpectSame(IngestC(c.e, text, RAPPORT_FORMAT_JSON_LINES, RAPPORT_BATCH_BEST_EFFORT),
               IngestCpp(*cpp, text, rapport::BatchMode::kBestEffort), "again");
  }
  EXPECT_EQ(c.Snapshot(), *cpp->Snapshot());
}

TEST(CApiJsonLines, ErrorsEqualTheReferenceAndChangeNothing) {
  const std::string good =
      R"({"event_id":"t","occurred_at_us":"1735689600000000","team_upserted":{"team_id":"n"}})";
  const std::string other =
      R"({"event_id":"m","occurred_at_us":"1735689600000000","manager_upserted":{"manager_id":"m","team_id":"n"}})";
  const std::string missing =
      R"({"event_id":"x","occurred_at_us":"1735689600000000","manager_upserted":{"manager_id":"q","team_id":"nope"}})";
  const std::vector<std::string> inputs = {
      "",
      "\n\n  \n",
      good,
      good + "\n{oops}\n",
      good + "\n\n" + other + "\n" + good.substr(0, 20),
      "{\"event_id\":\"a\",\"nope\":1}",
      "{\"event_id\":\"a\",\"activity\":{\"nope\":1}}",
      good + "\n" + missing + "\n" + other,
      missing,
      "[1,2]\n",
      good + "\n" + good + "\n",
      std::string("{\"event_id\":\"\xff\"}"),
  };
  for (int mode : {RAPPORT_BATCH_ATOMIC, RAPPORT_BATCH_BEST_EFFORT}) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      CEngine c;
      auto cpp = *Engine::Create();
      const std::string what = absl::StrCat("mode ", mode, ", input ", i);
      ExpectSame(IngestC(c.e, inputs[i], RAPPORT_FORMAT_JSON_LINES, mode),
                 IngestCpp(*cpp, inputs[i],
                           mode == RAPPORT_BATCH_ATOMIC ? rapport::BatchMode::kAtomic
                                                        : rapport::BatchMode::kBestEffort),
                 what);
      EXPECT_EQ(c.Snapshot(), *cpp->Snapshot()) << what;
    }
  }
  // A parse error changes nothing on an engine that already holds events.
  CEngine c;
  ASSERT_EQ(IngestC(c.e, good, RAPPORT_FORMAT_JSON_LINES, RAPPORT_BATCH_ATOMIC).code, RAPPORT_OK);
  const std::string before = c.Snapshot();
  const Outcome bad =
      IngestC(c.e, other + "\n\n{oops}", RAPPORT_FORMAT_JSON_LINES, RAPPORT_BATCH_BEST_EFFORT);
  EXPECT_EQ(bad.code, RAPPORT_INVALID_ARGUMENT);
  EXPECT_NE(bad.message.find("line 3"), std::string::npos) << bad.message;
  EXPECT_EQ(c.Snapshot(), before);
}

constexpr int64_t kDay = 86400000000;
constexpr int64_t kStart = 1735689600000000;  // 2025-01-01

TEST(CApiAdvance, EqualsEngineAdvanceByteForByte) {
  // 3000 accounts over 10 days, each with a timer 30 days later that
  // creates a task; the default playbook runs too.
  rapport::v1::EngineConfig config = Engine::DefaultConfig();
  rapport::v1::RuleSet extra;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      absl::StrCat("rules { id: 'follow_up' trigger { on_event { filter { type: "
                   "EVENT_TYPE_ACCOUNT_UPSERTED } } } delay_us: ",
                   30 * kDay,
                   " actions { kind: ACTION_KIND_CREATE_TASK assignee: ASSIGNEE_OWNER "
                   "due_offset_us: 86400000000 template: 'after_first_call' } }"),
      &extra));
  config.mutable_rule_set()->MergeFrom(extra);
  rapport::v1::EventBatch stream;
  rapport::v1::Event* e = stream.add_events();
  e->set_event_id("m");
  e->set_occurred_at_us(kStart);
  e->mutable_manager_upserted()->set_manager_id("m");
  for (int i = 0; i < 3000; ++i) {
    e = stream.add_events();
    e->set_event_id(absl::StrCat("a", i));
    e->set_occurred_at_us(kStart + i * (10 * kDay / 3000));
    auto* p = e->mutable_account_upserted();
    p->set_account_id(absl::StrCat("c", i));
    p->set_kind(rapport::v1::ACCOUNT_KIND_CLIENT);
    p->set_owner_id("m");
  }
  CEngine c(config.SerializeAsString());
  auto cpp = *Engine::Create(config);
  const std::string bytes = stream.SerializeAsString();
  ASSERT_EQ(IngestC(c.e, bytes, RAPPORT_FORMAT_PROTOBUF, RAPPORT_BATCH_ATOMIC).code, RAPPORT_OK);
  ASSERT_TRUE(cpp->IngestBatch(stream).ok());
  int64_t fired = 0;
  for (int day = 0; day <= 45; ++day) {
    const int64_t now = kStart + day * kDay;
    uint8_t* out = nullptr;
    size_t len = 0;
    // Even days as protobuf, odd days as JSON.
    const int format = day % 2 == 0 ? RAPPORT_FORMAT_PROTOBUF : RAPPORT_FORMAT_JSON;
    ASSERT_EQ(rapport_advance(&out, &len, c.e, now, format), RAPPORT_OK)
        << rapport_last_error_message();
    const std::string got(reinterpret_cast<const char*>(out), len);
    rapport_free(out);
    auto want = cpp->Advance(now);
    ASSERT_TRUE(want.ok());
    fired += want->actions_size();
    EXPECT_EQ(got, format == RAPPORT_FORMAT_PROTOBUF ? want->SerializeAsString()
                                                     : *rapport::ToJson(*want))
        << "day " << day;
  }
  EXPECT_GE(fired, 3000);
  // A bad time: the same error, nothing produced, nothing changed.
  const std::string before = c.Snapshot();
  uint8_t* out = nullptr;
  size_t len = 0;
  EXPECT_EQ(rapport_advance(&out, &len, c.e, -1, RAPPORT_FORMAT_PROTOBUF),
            RAPPORT_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(rapport_last_error_message()),
            std::string(cpp->Advance(-1).status().message()));
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(len, 0u);
  EXPECT_EQ(c.Snapshot(), before);
  EXPECT_EQ(c.Snapshot(), *cpp->Snapshot());
}

// ---- Delimited streams: parsed as one EventBatch, against the per-event
// loop it replaced (kept here as the reference, with its errors). ----

// The per-event parse the C ABI ran before (one CodedInputStream, each event
// merged with a limit), then Engine::IngestBatch: the reference outcome.
Outcome IngestDelimitedReference(Engine& engine, const std::string& s, rapport::BatchMode mode) {
  Outcome o;
  auto fail = [&](int code, std::string message) {
    o.code = code;
    o.message = std::move(message);
    return o;
  };
  google::protobuf::Arena arena;
  auto* batch = google::protobuf::Arena::CreateMessage<rapport::v1::EventBatch>(&arena);
  const size_t len = s.size();
  google::protobuf::io::CodedInputStream in(U(s), static_cast<int>(len));
  for (int64_t i = 0; static_cast<size_t>(in.CurrentPosition()) < len; ++i) {
    if (static_cast<size_t>(i) >= RAPPORT_MAX_BATCH_EVENTS) {
      return fail(RAPPORT_RESOURCE_EXHAUSTED, absl::StrCat("delimited stream: more than ",
                                                           RAPPORT_MAX_BATCH_EVENTS, " events"));
    }
    uint32_t size = 0;
    if (!in.ReadVarint32(&size)) {
      return fail(RAPPORT_INVALID_ARGUMENT,
                  absl::StrCat("delimited stream: event ", i, " has a malformed length prefix"));
    }
    const size_t left = len - static_cast<size_t>(in.CurrentPosition());
    if (size > left) {
      return fail(RAPPORT_INVALID_ARGUMENT,
                  absl::StrCat("delimited stream: event ", i, " is ", size, " bytes but only ",
                               left, " remain (truncated)"));
    }
    const auto limit = in.PushLimit(static_cast<int>(size));
    rapport::v1::Event* e = batch->add_events();
    if (!e->MergeFromCodedStream(&in) || !in.ConsumedEntireMessage() || in.BytesUntilLimit() != 0) {
      return fail(RAPPORT_INVALID_ARGUMENT,
                  absl::StrCat("delimited stream: event ", i, " is not a valid rapport.v1.Event"));
    }
    in.PopLimit(limit);
  }
  rapport::IngestOptions options;
  options.mode = mode;
  auto r = engine.IngestBatch(*batch, options);
  if (!r.ok()) return fail(static_cast<int>(r.status().code()), std::string(r.status().message()));
  o.bytes = r->SerializeAsString();
  return o;
}

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// The generated stream's events, serialized.
std::vector<std::string> EventBytes(int64_t n) {
  rapport::testing::GeneratorOptions o;
  o.max_events = n;
  std::vector<std::string> out;
  for (const rapport::v1::Event& e : rapport::testing::GenerateStream(o)) {
    out.push_back(e.SerializeAsString());
  }
  return out;
}

// Both paths on `stream` in fresh engines (the same events before it): the
// same code, message, result and snapshot.
void ExpectDelimitedSame(const std::string& prefix_stream, const std::string& stream, int mode,
                         const std::string& what) {
  CEngine c;
  auto cpp = *Engine::Create();
  const rapport::BatchMode m = mode == RAPPORT_BATCH_BEST_EFFORT ? rapport::BatchMode::kBestEffort
                                                                 : rapport::BatchMode::kAtomic;
  if (!prefix_stream.empty()) {
    ExpectSame(IngestC(c.e, prefix_stream, RAPPORT_FORMAT_PROTOBUF_DELIMITED, mode),
               IngestDelimitedReference(*cpp, prefix_stream, m), what + " (before)");
  }
  ExpectSame(IngestC(c.e, stream, RAPPORT_FORMAT_PROTOBUF_DELIMITED, mode),
             IngestDelimitedReference(*cpp, stream, m), what);
  EXPECT_EQ(c.Snapshot(), *cpp->Snapshot()) << what;
}

TEST(CApiDelimited, EqualsThePerEventParseOnGeneratedStreams) {
  const std::vector<std::string> events = EventBytes(6000);
  std::string all;
  for (const std::string& e : events) {
    AppendVarint(&all, e.size());
    all += e;
  }
  for (int mode : {RAPPORT_BATCH_ATOMIC, RAPPORT_BATCH_BEST_EFFORT}) {
    ExpectDelimitedSame("", all, mode, "the whole stream");
    ExpectDelimitedSame("", "", mode, "empty");
  }
}

TEST(CApiDelimited, EqualsThePerEventParseOnOddAndBrokenStreams) {
  const std::vector<std::string> events = EventBytes(400);
  std::string head, tail;
  for (size_t i = 0; i < events.size(); ++i) {
    std::string& s = i < 300 ? head : tail;
    AppendVarint(&s, events[i].size());
    s += events[i];
  }
  std::vector<std::pair<std::string, std::string>> cases;
  // Non-canonical length prefixes (the fast path re-encodes them), an empty
  // event, unknown fields, a varint of 5 and of 6 bytes, truncations.
  {
    const std::string& e = events[300];
    std::string s;
    s.push_back(static_cast<char>(0x80 | (e.size() & 0x7f)));
    s.push_back(static_cast<char>(0x80 | (e.size() >> 7)));
    s.push_back(0);
    s += e;
    cases.push_back({"a 3-byte prefix", s + tail});
    std::string five;
    uint64_t v = e.size();
    for (int i = 0; i < 4; ++i, v >>= 7) five.push_back(static_cast<char>(0x80 | (v & 0x7f)));
    five.push_back(static_cast<char>(v));
    cases.push_back({"a 5-byte prefix", five + e + tail});
    std::string six = five;
    six.back() = static_cast<char>(six.back() | 0x80);
    six.push_back(0);
    cases.push_back({"a 6-byte prefix", six + e + tail});
    cases.push_back({"an empty event", std::string(1, '\0') + tail});
    std::string unknown = e;
    unknown += std::string("\xf8\x06\x2a", 3);  // field 111, varint 42
    std::string u;
    AppendVarint(&u, unknown.size());
    cases.push_back({"unknown fields", u + unknown + tail});
    cases.push_back({"a prefix past the end", tail + "\x7f" + "ab"});
    cases.push_back({"a prefix cut short", tail + "\xff"});
    cases.push_back({"the last event cut", tail.substr(0, tail.size() - 3)});
    std::string group = e + std::string("\x0c", 1);  // an end-group tag inside the event
    std::string g;
    AppendVarint(&g, group.size());
    cases.push_back({"an end-group tag", g + group + tail});
    cases.push_back({"an overlong prefix", std::string("\xff\xff\xff\xff\x7f", 5) + tail});
  }
  // Random damage: a byte changed, removed or inserted.
  std::mt19937_64 rng(6);
  for (int i = 0; i < 150; ++i) {
    std::string s = tail;
    const size_t at = rng() % s.size();
    switch (i % 3) {
      case 0:
        s[at] = static_cast<char>(rng());
        break;
      case 1:
        s.erase(at, 1);
        break;
      default:
        s.insert(at, 1, static_cast<char>(rng()));
        break;
    }
    cases.push_back({absl::StrCat("damage ", i, " at ", at), s});
  }
  for (const auto& [what, stream] : cases) {
    for (int mode : {RAPPORT_BATCH_ATOMIC, RAPPORT_BATCH_BEST_EFFORT}) {
      ExpectDelimitedSame(head, stream, mode, what);
    }
    if (::testing::Test::HasFailure()) FAIL() << what;
  }
}

}  // namespace
