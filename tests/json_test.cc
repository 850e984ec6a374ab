// Rapport's JSON parser against protobuf's own, on generated events and on
// the corners of the canonical mapping.
#include <string>

#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "lib/codec/json_parser.h"
#include "rapport/json.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/snapshot.pb.h"
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
  for (const std::string& json : {std::string("{\"eventId\":\"a\xff\"}"),
                                 std::string("{\"eventId\":\"\xc0\xaf\"}"),
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

}  // namespace
}  // namespace rapport::test
