// Rapport's JSON parser against protobuf's own, on generated events and on
// the corners of the canonical mapping; and the fast parser against the
// reference parser it replaced (tests/json_reference_parser.h), on every
// message type and on mutated documents.
#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "lib/codec/json_parser.h"
#include "lib/codec/json_writer.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/ingest.pb.h"
#include "rapport/v1/kpi.pb.h"
#include "rapport/v1/rules.pb.h"
#include "rapport/v1/snapshot.pb.h"
#include "tests/json_reference_parser.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

// What protobuf's reference parser makes of `json`, or nullopt if it refuses.
bool ReferenceParse(const std::string& json, google::protobuf::Message* m) {
  google::protobuf::util::JsonParseOptions o;
  return google::protobuf::util::JsonStringToMessage(json, m, o).ok();
}

TEST(JsonParser, AgreesWithProtobufOnGeneratedEvents) {
  testing::GeneratorOptions o;
  o.max_events = 5000;
  for (const v1::Event& e : testing::GenerateStream(o)) {
    for (bool original_names : {false, true}) {
      std::string json;
      google::protobuf::util::JsonPrintOptions p;
      p.preserve_proto_field_names = original_names;
      p.always_print_primitive_fields = original_names;
      ASSERT_TRUE(google::protobuf::util::MessageToJsonString(e, &json, p).ok());
      v1::Event ours;
      ASSERT_TRUE(FromJson(json, &ours).ok()) << json;
      EXPECT_EQ(ours.SerializeAsString(), e.SerializeAsString()) << json;
    }
  }
}

TEST(JsonParser, CornersOfTheMapping) {
  const char* accepted[] = {
      R"({"eventId":"a\u00e9\ud83d\ude00\n\"","occurredAtUs":"12"})",
      R"({"event_id":"b","occurred_at_us":12})",
      R"({"occurredAtUs":1.2e1})",
      R"({"orderPlaced":{"amount":{"amountMinor":"-5","currency":"RUB"}}})",
      R"({"activity":{"kind":"ACTIVITY_KIND_CALL","direction":2}})",
      R"({"teamUpserted":{"segments":["a","b"]}})",
      R"({"teamUpserted":{"segments":[]}, "eventId": null})",
      R"(  { "eventId" : "spaced" }  )",
  };
  for (const char* json : accepted) {
    v1::Event ours, ref;
    ASSERT_TRUE(ReferenceParse(json, &ref)) << json;
    absl::Status st = FromJson(json, &ours);
    ASSERT_TRUE(st.ok()) << json << ": " << st;
    EXPECT_EQ(ours.SerializeAsString(), ref.SerializeAsString()) << json;
  }
  const char* refused[] = {
      R"({"eventId":"a")",
      R"({"nope":1})",
      R"({"occurredAtUs":"1x"})",
      R"({"occurredAtUs":1.5})",
      R"({"occurredAtUs":99999999999999999999})",
      R"({"activity":{"kind":"ACTIVITY_KIND_NOPE"}})",
      R"({"activity":{}, "dealWon":{}})",
      R"({"eventId":"\ud800"})",
      R"({"eventId":"a"} trailing)",
      R"([1])",
  };
  for (const char* json : refused) {
    v1::Event ours, ref;
    EXPECT_FALSE(ReferenceParse(json, &ref)) << json;
    absl::Status st = FromJson(json, &ours);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_EQ(ours.ByteSizeLong(), 0u) << "a refused parse left content: " << json;
  }
}

TEST(JsonParser, StricterThanProtobufWhereJsonIs) {
  // protobuf 3.21 takes a scalar for a repeated field and a raw tab inside a
  // string; neither is valid JSON (RFC 8259), and Rapport refuses both.
  for (const char* json : {R"({"teamUpserted":{"segments":"a"}})", "{\"eventId\":\"a\tb\"}"}) {
    v1::Event ours;
    EXPECT_EQ(FromJson(json, &ours).code(), absl::StatusCode::kInvalidArgument) << json;
  }
}

TEST(JsonParser, InvalidUtf8IsRefused) {
  // Accepted, it would be journaled and then refused by protobuf's parser
  // when the journal or a snapshot is read back.
  for (const std::string& json :
       {std::string("{\"eventId\":\"a\xff\"}"), std::string("{\"eventId\":\"\xc0\xaf\"}"),
        std::string("{\"eventId\":\"\xed\xa0\x80\"}")}) {
    v1::Event e;
    EXPECT_EQ(FromJson(json, &e).code(), absl::StatusCode::kInvalidArgument);
  }
  v1::Event ok;
  EXPECT_TRUE(FromJson("{\"eventId\":\"\xd0\x9f\xe2\x82\xac\xf0\x9f\x98\x80\"}", &ok).ok());
}

TEST(JsonParser, ErrorsNameTheField) {
  v1::Event e;
  absl::Status st = FromJson(R"({"orderPlaced":{"amount":{"amountMinor":"x"}}})", &e);
  EXPECT_NE(st.message().find("order_placed.amount.amount_minor"), std::string::npos) << st;
}

TEST(JsonParser, NestingIsLimited) {
  // Snapshots nest messages; build an object deeper than the limit.
  std::string deep;
  for (int i = 0; i < kMaxJsonDepth + 1; ++i) deep += "{\"config\":";
  deep += "{}";
  for (int i = 0; i < kMaxJsonDepth + 1; ++i) deep += "}";
  v1::EngineSnapshot s;
  absl::Status st = FromJson(deep, &s);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
}

// ---- The fast parser against the reference parser. ----

// Both parsers on `json` into fresh messages of `prototype`'s type: the same
// verdict and, when accepted, the same message. Returns whether accepted.
bool ExpectSameAsReference(const std::string& json, const google::protobuf::Message& prototype) {
  std::unique_ptr<google::protobuf::Message> ours(prototype.New());
  std::unique_ptr<google::protobuf::Message> ref(prototype.New());
  const absl::Status ours_st = FromJson(json, ours.get());
  const absl::Status ref_st = ReferenceFromJson(json, ref.get());
  EXPECT_EQ(ours_st.ok(), ref_st.ok())
      << "ours: " << ours_st << "\nreference: " << ref_st << "\ninput: " << json;
  if (!ours_st.ok()) {
    EXPECT_EQ(ours_st.code(), absl::StatusCode::kInvalidArgument) << ours_st;
    EXPECT_EQ(ours->ByteSizeLong(), 0u) << "a refused parse left content: " << json;
  }
  if (ours_st.ok() && ref_st.ok()) {
    EXPECT_EQ(ours->SerializeAsString(), ref->SerializeAsString()) << json;
  }
  return ours_st.ok();
}

// Edits that reach the parser's corners: tokens of every JSON kind, numbers
// at and past each integer range, escapes and surrogates, invalid UTF-8.
const std::vector<std::string>& Tokens() {
  static const auto* tokens = new std::vector<std::string>{"\"",
                                                           "\\",
                                                           "\\u",
                                                           "\\ud83d",
                                                           "\\ude00",
                                                           "\\ud83d\\ude00",
                                                           "\\u00e9",
                                                           "\\u0000",
                                                           "\\n",
                                                           "\\/",
                                                           "\\x",
                                                           "null",
                                                           "true",
                                                           "false",
                                                           "nul",
                                                           "1e3",
                                                           "1.5",
                                                           "1.0",
                                                           "-",
                                                           "+",
                                                           "0",
                                                           "01",
                                                           "-0",
                                                           "+1",
                                                           ".5",
                                                           "5.",
                                                           "2e-1",
                                                           "1E2",
                                                           "-1",
                                                           "9223372036854775807",
                                                           "9223372036854775808",
                                                           "-9223372036854775808",
                                                           "-9223372036854775809",
                                                           "18446744073709551615",
                                                           "18446744073709551616",
                                                           "4294967295",
                                                           "4294967296",
                                                           "2147483647",
                                                           "2147483648",
                                                           "-2147483648",
                                                           "-2147483649",
                                                           "999999999999999999",
                                                           "1000000000000000000",
                                                           "\"12\"",
                                                           "\" 12\"",
                                                           "\"12 \"",
                                                           "\"-7\"",
                                                           "\"1e2\"",
                                                           " ",
                                                           "\t",
                                                           "\r\n",
                                                           "{",
                                                           "}",
                                                           "[",
                                                           "]",
                                                           ",",
                                                           ":",
                                                           "{}",
                                                           "[]",
                                                           "\xc3\xa9",
                                                           "\xff",
                                                           "\xed\xa0\x80",
                                                           "\xf0\x9f\x98\x80",
                                                           "\xc0\xaf",
                                                           "\x01",
                                                           "\"NaN\"",
                                                           "\"Infinity\"",
                                                           "\"-Infinity\"",
                                                           "NaN",
                                                           "\"eventId\"",
                                                           "\"event_id\"",
                                                           "\"occurredAtUs\":",
                                                           "\"activity\":{",
                                                           "\"ACTIVITY_KIND_CALL\"",
                                                           "\"ACCOUNT_KIND_PARTNER\"",
                                                           "\"AQID\"",
                                                           "\"AQ==\"",
                                                           "\"-_8\"",
                                                           "\"a\\u005f\"",
                                                           "\"ev\\u0065ntId\"",
                                                           "\"segments\":[\"x\",null]",
                                                           "\"dealWon\":{\"dealId\":\"d\"}",
                                                           "\"order_placed\":null"};
  return *tokens;
}

std::string Mutate(std::string s, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < edits; ++i) {
    const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 4) {
      case 0:  // insert a token
        s.insert(at, Tokens()[rng() % Tokens().size()]);
        break;
      case 1:  // replace a few bytes by a token
        s.replace(at, std::min<size_t>(1 + rng() % 4, s.size() - at),
                  Tokens()[rng() % Tokens().size()]);
        break;
      case 2:  // delete a few bytes
        s.erase(at, std::min<size_t>(1 + rng() % 3, s.size() - at));
        break;
      default:  // one random byte
        if (at < s.size()) s[at] = static_cast<char>(rng() & 0xFF);
        break;
    }
  }
  return s;
}

// Mutants of each document; each is checked, and some must still parse
// (else the mutations would only test the error paths).
void MutantsAgree(const std::vector<std::string>& documents,
                  const google::protobuf::Message& prototype, int per_document) {
  std::mt19937_64 rng(42);
  int accepted = 0;
  int refused = 0;
  for (const std::string& doc : documents) {
    for (int i = 0; i < per_document; ++i) {
      (ExpectSameAsReference(Mutate(doc, rng), prototype) ? accepted : refused)++;
      if (::testing::Test::HasFailure()) return;
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(refused, 0);
}

std::vector<std::string> EventDocuments(int n) {
  std::vector<std::string> out;
  testing::GeneratorOptions o;
  o.max_events = n;
  int i = 0;
  for (const v1::Event& e : testing::GenerateStream(o)) {
    google::protobuf::util::JsonPrintOptions p;
    p.preserve_proto_field_names = (i % 2) == 1;
    p.always_print_primitive_fields = (i % 3) == 1;
    p.add_whitespace = (i % 5) == 1;
    std::string json;
    EXPECT_TRUE(google::protobuf::util::MessageToJsonString(e, &json, p).ok());
    out.push_back(std::move(json));
    ++i;
  }
  return out;
}

TEST(FastJsonParser, EqualsReferenceOnGeneratedEvents) {
  for (const std::string& json : EventDocuments(5000)) {
    EXPECT_TRUE(ExpectSameAsReference(json, v1::Event())) << json;
  }
}

TEST(FastJsonParser, EqualsReferenceOnMutatedEvents) {
  MutantsAgree(EventDocuments(3000), v1::Event(), 40);
}

TEST(FastJsonParser, EqualsReferenceOnSnapshotsAndConfigs) {
  // A snapshot holds every other scalar type (uint32, uint64, fixed64,
  // bytes, double) and deep nesting.
  auto engine = *Engine::Create();
  testing::GeneratorOptions o;
  o.max_events = 300;
  for (const v1::Event& e : testing::GenerateStream(o)) ASSERT_TRUE(engine->Ingest(e).ok());
  v1::EngineSnapshot snapshot;
  ASSERT_TRUE(snapshot.ParseFromString(*engine->Snapshot()));
  const std::string snapshot_json = *ToJson(snapshot);
  EXPECT_TRUE(ExpectSameAsReference(snapshot_json, v1::EngineSnapshot()));
  MutantsAgree({snapshot_json}, v1::EngineSnapshot(), 300);

  const std::string config_json = *ToJson(Engine::DefaultConfig());
  google::protobuf::util::JsonPrintOptions all;
  all.always_print_primitive_fields = true;
  std::string config_camel;
  ASSERT_TRUE(
      google::protobuf::util::MessageToJsonString(Engine::DefaultConfig(), &config_camel, all)
          .ok());
  EXPECT_TRUE(ExpectSameAsReference(config_json, v1::EngineConfig()));
  EXPECT_TRUE(ExpectSameAsReference(config_camel, v1::EngineConfig()));
  MutantsAgree({config_json, config_camel}, v1::EngineConfig(), 1500);
}

TEST(FastJsonParser, WireTranscoderCornersEqualReference) {
  // FromJson transcodes the text to the wire format for the generated
  // parser (lib/codec/json_parser.cc) and leaves to the reflection parser
  // what a wire merge would not mean the same. Its corners: lengths that
  // take 2 and 3 bytes, keys given twice, oneofs, null, enum numbers,
  // repeated scalars of each wire type.
  const std::string name200(200, 'n');
  const std::string name20000(20000, 'n');
  const v1::Event event;
  const std::vector<std::pair<std::string, bool>> events = {
      {R"({"eventId":"e","accountUpserted":{"accountId":"a","name":")" + name200 + R"("}})", true},
      {R"({"eventId":"e","accountUpserted":{"accountId":"a","name":")" + name20000 + R"("}})",
       true},
      // A message given twice merges; a scalar given twice keeps the last.
      {R"({"eventId":"e","accountUpserted":{"accountId":"a"},"accountUpserted":{"name":"n"}})",
       true},
      {R"({"eventId":"e","eventId":"f","occurredAtUs":1,"occurred_at_us":"2"})", true},
      // Two members of one oneof: refused; the same member twice: merged.
      {R"({"accountUpserted":{"accountId":"a"},"dealWon":{"dealId":"d"}})", false},
      {R"({"dealWon":{"dealId":"d"},"deal_won":{}})", true},
      // null clears, after which another member may be set.
      {R"({"accountUpserted":{"accountId":"a"},"accountUpserted":null,"dealWon":{}})", true},
      {R"({"eventId":"e","eventId":null})", true},
      {R"({"dealWon":{}})", true},
      {R"({"teamUpserted":{"segments":["a","b"],"segments":["c"]}})", true},
      {R"({"teamUpserted":{"segments":["a",null]}})", false},
      // Enum numbers: defined, undefined (an open enum keeps it), negative.
      {R"({"accountUpserted":{"kind":1}})", true},
      {R"({"accountUpserted":{"kind":77}})", true},
      {R"({"accountUpserted":{"kind":-1}})", true},
      {R"({"accountUpserted":{"kind":"NOPE"}})", false},
      {R"({"occurredAtUs":-1,"accountUpserted":{"createdAtUs":"-9223372036854775808"}})", true},
      {R"({"eventId":"e"} x)", false},
  };
  for (const auto& [json, accepted] : events) {
    EXPECT_EQ(ExpectSameAsReference(json, event), accepted) << json;
  }
  // Repeated int32 (negative: ten-byte varints) and double, in a config.
  const v1::EngineConfig config;
  EXPECT_TRUE(ExpectSameAsReference(
      R"({"health":{"contactDays":[-1,2147483647,0],"contactPoints":[1.5,"NaN","-Infinity",)"
      R"(1e308,-0.0],"complaintsNone":3.25}})",
      config));
  EXPECT_FALSE(ExpectSameAsReference(R"({"health":{"contactDays":[2147483648]}})", config));
  // A whole batch document, as the Python binding sends it.
  std::string batch = R"({"events":[)";
  for (int i = 0; i < 300; ++i) {
    absl::StrAppend(&batch, i > 0 ? "," : "", R"({"eventId":"e-)", i,
                    R"(","occurredAtUs":"1735689600000000","accountUpserted":{"accountId":"a-)", i,
                    R"(","kind":"ACCOUNT_KIND_CLIENT","name":")", std::string(i, 'x'), R"("}})");
  }
  batch += "]}";
  EXPECT_TRUE(ExpectSameAsReference(batch, v1::EventBatch()));
}

// A null on a field the object has not set yet (what Python sends for
// None) clears nothing, so the transcoder skips it instead of handing the
// whole text to the reflection parser; a null that could clear something
// still goes there. Both ways equal the reference.
TEST(FastJsonParser, NullThatClearsNothingStaysOnTheWire) {
  const std::vector<std::pair<std::string, bool>> events = {
      // {json, handed to the reflection parser}
      {R"({"eventId":null,"accountUpserted":{"accountId":"a","name":null}})", false},
      {R"({"dealWon":{"dealId":"d"},"accountUpserted":null})", false},
      {R"({"accountUpserted":null,"dealWon":{"dealId":"d"}})", false},
      {R"({"teamUpserted":{"segments":null,"segments":["a"]}})", false},
      {R"({"eventId":null,"eventId":"e"})", false},
      // Set, then null: clears.
      {R"({"eventId":"e","eventId":null})", true},
      {R"({"teamUpserted":{"segments":["a"],"segments":null}})", true},
      // A message given twice merges: a null in the second may clear what
      // the first set.
      {R"({"accountUpserted":{"accountId":"a"},"accountUpserted":{"accountId":null}})", true},
      {R"({"accountUpserted":{"accountId":"a"},"accountUpserted":{"name":null}})", true},
      {R"({"eventId":nul})", true},
  };
  for (const auto& [json, fallback] : events) {
    const int64_t before = JsonFallbacksForTesting();
    ExpectSameAsReference(json, v1::Event());
    EXPECT_EQ(JsonFallbacksForTesting() - before, fallback ? 1 : 0) << json;
  }
  // Each element of a repeated message field is a new message.
  const int64_t before = JsonFallbacksForTesting();
  EXPECT_TRUE(ExpectSameAsReference(
      R"({"events":[{"eventId":"a","occurredAtUs":null},{"eventId":null,"occurredAtUs":"5"}]})",
      v1::EventBatch()));
  EXPECT_EQ(JsonFallbacksForTesting(), before);
}

TEST(FastJsonParser, EqualsReferenceOnEveryNumberForm) {
  // Each integer type with each token, bare and quoted: the fast integer
  // path takes only plain decimals and must agree with absl's for those.
  // Every integer type (int32, int64, uint32, uint64 as fixed64), singular
  // and repeated, and doubles; "#" is where the number goes.
  const char* templates[] = {
      R"({"formatVersion":#})",
      R"({"eventsAccepted":#})",
      R"({"rules":{"nextTimerSeq":#}})",
      R"({"facts":{"kindSizes":[#]}})",
      R"({"eventFingerprints":[#,#]})",
      R"({"rules":{"timerSeq":[#]}})",
      R"({"config":{"health":{"redBelow":#}}})",
      R"({"config":{"health":{"contactPoints":[#]}}})",
  };
  std::vector<std::string> numbers = Tokens();
  for (const char* extra : {"00",
                            "007",
                            "-007",
                            "0.0",
                            "-0.0",
                            "1e18",
                            "1e19",
                            "1e20",
                            "-1e18",
                            "123456789012345678",
                            "1234567890123456789",
                            "12345678901234567890",
                            "-123456789012345678",
                            "-1234567890123456789",
                            "4.5e1",
                            "1e-0",
                            "1e+2",
                            "\"+5\"",
                            "\"\\u0031\"",
                            "\"0x10\"",
                            "\"\"",
                            "\"-\"",
                            "1e400",
                            "-1e400",
                            "4.9e-324",
                            "1.7976931348623157e308"}) {
    numbers.push_back(extra);
  }
  int accepted = 0;
  for (const char* t : templates) {
    for (const std::string& n : numbers) {
      for (const std::string& v : {n, absl::StrCat("\"", n, "\"")}) {
        std::string json = t;
        for (size_t at; (at = json.find('#')) != std::string::npos;) json.replace(at, 1, v);
        accepted += ExpectSameAsReference(json, v1::EngineSnapshot()) ? 1 : 0;
      }
    }
  }
  EXPECT_GT(accepted, 50);
}

TEST(FastJsonParser, DynamicMessagesUseTheirOwnTables) {
  // The same schema in a pool of its own: descriptors that are not the
  // generated ones (and may die with their pool) get tables per call.
  google::protobuf::DescriptorPool pool;
  // Dependencies first.
  std::function<void(const google::protobuf::FileDescriptor*)> add =
      [&](const google::protobuf::FileDescriptor* f) {
        if (pool.FindFileByName(f->name()) != nullptr) return;
        for (int i = 0; i < f->dependency_count(); ++i) add(f->dependency(i));
        google::protobuf::FileDescriptorProto proto;
        f->CopyTo(&proto);
        ASSERT_NE(pool.BuildFile(proto), nullptr);
      };
  add(v1::Event::descriptor()->file());
  google::protobuf::DynamicMessageFactory factory(&pool);
  const google::protobuf::Message* prototype =
      factory.GetPrototype(pool.FindMessageTypeByName("rapport.v1.Event"));
  ASSERT_NE(prototype, nullptr);
  int i = 0;
  for (const std::string& json : EventDocuments(300)) {
    EXPECT_TRUE(ExpectSameAsReference(json, *prototype)) << json;
    std::unique_ptr<google::protobuf::Message> dynamic(prototype->New());
    ASSERT_TRUE(FromJson(json, dynamic.get()).ok());
    v1::Event generated;
    ASSERT_TRUE(FromJson(json, &generated).ok());
    EXPECT_EQ(dynamic->SerializeAsString(), generated.SerializeAsString());
    ++i;
  }
  EXPECT_EQ(i, 300);
}

TEST(FastJsonParser, EveryKeyAndEveryNearMiss) {
  // Each field name of every message type an event holds, in both spellings,
  // and each one-byte change, truncation and extension of it: the field
  // table must find exactly the names the descriptor lookups found (keys
  // over 16 bytes are compared in three parts, so change every position).
  std::vector<const google::protobuf::Descriptor*> types = {v1::Event::descriptor()};
  int accepted = 0;
  int refused = 0;
  for (size_t t = 0; t < types.size(); ++t) {
    const google::protobuf::Descriptor* d = types[t];
    std::unique_ptr<google::protobuf::Message> prototype(
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(d)->New());
    for (int i = 0; i < d->field_count(); ++i) {
      const google::protobuf::FieldDescriptor* f = d->field(i);
      if (f->message_type() != nullptr &&
          std::find(types.begin(), types.end(), f->message_type()) == types.end()) {
        types.push_back(f->message_type());
      }
      for (const std::string& name : {f->name(), f->camelcase_name()}) {
        std::vector<std::string> keys = {name, name + "x", name.substr(0, name.size() - 1)};
        for (size_t at = 0; at < name.size(); ++at) {
          for (char c : {'x', '_', 'A'}) {
            std::string near = name;
            near[at] = c;
            keys.push_back(near);
          }
        }
        for (const std::string& key : keys) {
          (ExpectSameAsReference(absl::StrCat("{\"", key, "\":null}"), *prototype) ? accepted
                                                                                   : refused)++;
        }
      }
    }
  }
  EXPECT_GT(types.size(), 10u);
  EXPECT_GT(accepted, 100);
  EXPECT_GT(refused, 1000);
}

TEST(FastJsonParser, ErrorsNameTheUnknownFieldWithItsPath) {
  v1::Event e;
  absl::Status st = FromJson(R"({"activity":{"kind":"ACTIVITY_KIND_CALL","nope":1}})", &e);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("activity.nope"), std::string::npos) << st;
  EXPECT_NE(st.message().find("rapport.v1.Activity"), std::string::npos) << st;
  st = FromJson(R"({"eventId":"a","occurredAtUs":"1x"})", &e);
  EXPECT_NE(st.message().find("'occurred_at_us'"), std::string::npos) << st;
  // The path of one field does not leak into the next one's errors.
  st = FromJson(R"({"activity":{"kind":2},"eventId":7})", &e);
  EXPECT_NE(st.message().find("'event_id'"), std::string::npos) << st;
}

// ---- The result writer against protobuf's printer. ----

// What rapport::ToJson gave before the writer: the printer, same options.
std::string PrinterJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  std::string out;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(m, &out, o).ok());
  return out;
}

// The writer handles `m` and gives the printer's bytes; ToJson gives them too.
void ExpectWriterEqualsPrinter(const google::protobuf::Message& m) {
  std::string ours = "prefix";
  ASSERT_TRUE(AppendResultJson(m, &ours)) << m.DebugString();
  const std::string printer = PrinterJson(m);
  EXPECT_EQ(ours, "prefix" + printer) << m.DebugString();
  EXPECT_EQ(*ToJson(m), printer);
}

std::string Utf8(uint32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xc0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    s += static_cast<char>(0xe0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    s += static_cast<char>(0xf0 | (c >> 18));
    s += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (c & 0x3f));
  }
  return s;
}

TEST(JsonWriter, EqualsPrinterOnEveryCodePoint) {
  // Every scalar value, 64 to a string, in a string field of each message.
  // Then each one alone between letters, where the escapes are visible: an
  // escape that depended on its neighbours would differ in one of the two.
  for (uint32_t first = 0; first < 0x110000; first += 64) {
    if (first >= 0xd800 && first < 0xe000) continue;  // surrogates are not UTF-8
    std::string s;
    for (uint32_t c = first; c < first + 64; ++c) s += Utf8(c);
    v1::Rejection r;
    r.set_message(s);
    r.set_event_id("a" + s.substr(0, s.size() / 2) + "z");
    ExpectWriterEqualsPrinter(r);
    v1::Action a;
    a.set_occasion(s);
    ExpectWriterEqualsPrinter(a);
    if (::testing::Test::HasFailure()) FAIL() << "from U+" << std::hex << first;
  }
  for (uint32_t c = 0; c < 0x3000; ++c) {
    if (c >= 0xd800 && c < 0xe000) continue;
    v1::Rejection r;
    r.set_message("x" + Utf8(c) + "y");
    ExpectWriterEqualsPrinter(r);
    if (::testing::Test::HasFailure()) FAIL() << "at U+" << std::hex << c;
  }
}

TEST(JsonWriter, InvalidUtf8GoesToThePrinter) {
  const char* bad[] = {"\x80",
                       "a\xc3",
                       "\xc3\x28",
                       "\xed\xa0\x80",
                       "\xf5\x80\x80\x80",
                       "\xc0\xaf",
                       "\xf4\x90\x80\x80",
                       "\xe0\x80\x80",
                       "\xf0\x80\x80\x80",
                       "ok\xff"};
  for (const char* b : bad) {
    v1::IngestResult r;
    r.set_accepted(3);
    r.add_actions()->set_action_id(b);
    std::string out = "kept";
    EXPECT_FALSE(AppendResultJson(r, &out)) << b;
    EXPECT_EQ(out, "kept") << "a refusal must leave the output as it was";
    EXPECT_EQ(*ToJson(r), PrinterJson(r));
  }
}

TEST(JsonWriter, OtherMessagesGoToThePrinter) {
  std::string out;
  EXPECT_FALSE(AppendResultJson(v1::Event(), &out));
  // A dynamic IngestResult is not the generated class.
  google::protobuf::DynamicMessageFactory factory;
  std::unique_ptr<google::protobuf::Message> dyn(
      factory.GetPrototype(v1::IngestResult::descriptor())->New());
  EXPECT_FALSE(AppendResultJson(*dyn, &out));
  EXPECT_TRUE(out.empty());
  // Unknown fields: the printer's business.
  v1::IngestResult r;
  r.GetReflection()->MutableUnknownFields(&r)->AddVarint(99, 1);
  EXPECT_FALSE(AppendResultJson(r, &out));
  EXPECT_EQ(*ToJson(r), PrinterJson(r));
  // The empty messages are handled (this also fails when the schema grows a
  // field the writer does not know, which disables the writer).
  ExpectWriterEqualsPrinter(v1::IngestResult());
  ExpectWriterEqualsPrinter(v1::ActionList());
  ExpectWriterEqualsPrinter(v1::Action());
  ExpectWriterEqualsPrinter(v1::Rejection());
}

// Sets every field of `m` through reflection: integers at their edges,
// enums known and unknown, strings of escapes and non-ASCII text, repeated
// fields empty or not.
void FillByReflection(google::protobuf::Message* m, std::mt19937_64& rng, int depth) {
  using google::protobuf::FieldDescriptor;
  const auto* d = m->GetDescriptor();
  const auto* refl = m->GetReflection();
  static const int64_t kInts[] = {0, 1, -1, 7, 1000000, INT64_MAX, INT64_MIN, 1735689600000000};
  static const int32_t kInt32s[] = {0, 1, -1, 3, 16, INT32_MAX, INT32_MIN};
  static const char* kStrings[] = {"",
                                   "a",
                                   "plain-id_1",
                                   "\"q\"\\",
                                   "<b>&</b>",
                                   "\n\t\r\b\f\x01\x1f\x7f",
                                   "é",
                                   "Привет",
                                   "日本語",
                                   "😀",
                                   "\xc2\x85\xc2\xad",
                                   "\xe2\x80\xa8\xef\xbb\xbf",
                                   "\xf0\x9d\x85\xb3",
                                   "'/ ~",
                                   "x\xf3\xa0\x80\x81y"};
  auto pick = [&](auto& arr) { return arr[rng() % std::size(arr)]; };
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const int n = f->is_repeated() ? static_cast<int>(rng() % 4) : 1;
    for (int k = 0; k < n; ++k) {
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT64:
          refl->SetInt64(m, f, pick(kInts));
          break;
        case FieldDescriptor::CPPTYPE_INT32:
          refl->SetInt32(m, f, pick(kInt32s));
          break;
        case FieldDescriptor::CPPTYPE_STRING: {
          std::string s = pick(kStrings);
          if (rng() % 2) s += pick(kStrings);
          refl->SetString(m, f, s);
          break;
        }
        case FieldDescriptor::CPPTYPE_ENUM: {
          const auto* e = f->enum_type();
          const int r = static_cast<int>(rng() % (e->value_count() + 3));
          const int v = r < e->value_count()
                            ? e->value(r)->number()
                            : (r == e->value_count() ? 999 : -(r - e->value_count()));
          refl->SetEnumValue(m, f, v);
          break;
        }
        case FieldDescriptor::CPPTYPE_MESSAGE:
          if (depth < 2) FillByReflection(refl->AddMessage(m, f), rng, depth + 1);
          break;
        default:
          ADD_FAILURE() << "a field type the test does not fill: " << f->full_name();
      }
    }
  }
}

TEST(JsonWriter, EqualsPrinterOnMessagesSetByReflection) {
  std::mt19937_64 rng(6);
  for (int i = 0; i < 3000; ++i) {
    v1::IngestResult r;
    FillByReflection(&r, rng, 0);
    ExpectWriterEqualsPrinter(r);
    v1::ActionList l;
    FillByReflection(&l, rng, 0);
    ExpectWriterEqualsPrinter(l);
    if (::testing::Test::HasFailure()) FAIL() << "message " << i;
  }
  // Every field alone, at each of several values: the key names and order.
  for (const google::protobuf::Message* proto :
       std::initializer_list<const google::protobuf::Message*>{
           &v1::Action::default_instance(), &v1::Rejection::default_instance()}) {
    for (int i = 0; i < proto->GetDescriptor()->field_count(); ++i) {
      for (int k = 0; k < 10; ++k) {
        std::unique_ptr<google::protobuf::Message> full(proto->New());
        FillByReflection(full.get(), rng, 0);
        std::unique_ptr<google::protobuf::Message> one(proto->New());
        const auto* f = proto->GetDescriptor()->field(i);
        one->GetReflection()->SwapFields(full.get(), one.get(), {f});
        ExpectWriterEqualsPrinter(*one);
      }
    }
  }
}

TEST(JsonWriter, EqualsPrinterOnGeneratedStreams) {
  // The default playbook over a generated stream, best effort, with some
  // events broken so that there are rejections: every batch's result and
  // the actions of a day of timers.
  testing::GeneratorOptions o;
  o.max_events = 20000;
  const std::vector<v1::Event> events = testing::GenerateStream(o);
  auto engine = *Engine::Create();
  std::mt19937_64 rng(7);
  int64_t actions = 0, rejected = 0;
  int64_t last = 0;
  for (size_t i = 0; i < events.size(); i += 500) {
    std::vector<v1::Event> batch(events.begin() + i,
                                 events.begin() + std::min(events.size(), i + 500));
    for (v1::Event& e : batch) {
      if (rng() % 50 == 0) e.clear_event_id();
      last = std::max(last, e.occurred_at_us());
    }
    IngestOptions options;
    options.mode = BatchMode::kBestEffort;
    auto r = engine->IngestBatch(batch, options);
    ASSERT_TRUE(r.ok()) << r.status();
    actions += r->actions_size();
    rejected += r->rejected_size();
    ExpectWriterEqualsPrinter(*r);
  }
  auto fired = engine->Advance(last + 400 * kDay);
  ASSERT_TRUE(fired.ok()) << fired.status();
  ExpectWriterEqualsPrinter(*fired);
  ExpectWriterEqualsPrinter(engine->Outbox());
  EXPECT_GT(actions, 100);
  EXPECT_GT(rejected, 10);
  EXPECT_GT(fired->actions_size() + engine->Outbox().actions_size(), 0);
}

}  // namespace
}  // namespace rapport::test
