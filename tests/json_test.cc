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
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/kpi.pb.h"
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

}  // namespace
}  // namespace rapport::test
