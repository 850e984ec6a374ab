// The explicit input limits, through the C ABI (the path untrusted bytes
// take): message size, batch count, string length and nesting depth each
// give a clear error and change nothing.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "rapport/rapport.h"

namespace {

class Limits : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(rapport_engine_create(&engine_, nullptr, 0, 0), RAPPORT_OK); }
  void TearDown() override { rapport_engine_destroy(engine_); }

  int Batch(const std::string& bytes, int format) {
    return rapport_ingest_batch(nullptr, nullptr, engine_,
                                reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                format, RAPPORT_BATCH_ATOMIC);
  }
  std::string Error() const { return rapport_last_error_message(); }

  rapport_engine* engine_ = nullptr;
};

TEST_F(Limits, MessageSizeOverTheLimitIsRefusedBeforeReading) {
  const uint8_t byte = 0;
  // The length alone is over the limit: the library must not read the buffer.
  EXPECT_EQ(rapport_ingest_batch(nullptr, nullptr, engine_, &byte, RAPPORT_MAX_INPUT_BYTES + 1,
                                 RAPPORT_FORMAT_PROTOBUF, RAPPORT_BATCH_ATOMIC),
            RAPPORT_RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(Error(), absl::StrCat(RAPPORT_MAX_INPUT_BYTES))) << Error();
  EXPECT_EQ(rapport_ingest_event(nullptr, nullptr, engine_, &byte, RAPPORT_MAX_INPUT_BYTES + 1,
                                 RAPPORT_FORMAT_JSON),
            RAPPORT_RESOURCE_EXHAUSTED);
  EXPECT_EQ(rapport_events_accepted(engine_), 0);
}

TEST_F(Limits, BatchCountOverTheLimitIsRefused) {
  // RAPPORT_MAX_BATCH_EVENTS + 1 minimal delimited events (id only).
  std::string stream;
  const std::string event = std::string("\x0a\x01x", 3);  // event_id: "x"
  for (size_t i = 0; i <= RAPPORT_MAX_BATCH_EVENTS; ++i) {
    stream.push_back(static_cast<char>(event.size()));
    stream += event;
  }
  EXPECT_EQ(Batch(stream, RAPPORT_FORMAT_PROTOBUF_DELIMITED), RAPPORT_RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(Error(), absl::StrCat(RAPPORT_MAX_BATCH_EVENTS))) << Error();
  EXPECT_EQ(rapport_events_accepted(engine_), 0);
}

TEST_F(Limits, StringLongerThanTheLimitIsRefusedNamingTheField) {
  const std::string json =
      absl::StrCat(R"({"events":[{"eventId":"e1","occurredAtUs":"1735689600000000",)",
                   R"("teamUpserted":{"teamId":")", std::string(129, 't'), R"("}}]})");
  EXPECT_EQ(Batch(json, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(Error(), "team")) << Error();
  EXPECT_EQ(rapport_events_accepted(engine_), 0);
  const std::string long_id(129, 'i');
  uint8_t* out = nullptr;
  size_t out_len = 0;
  EXPECT_EQ(rapport_get_account(&out, &out_len, engine_, long_id.data(), long_id.size(),
                                RAPPORT_FORMAT_JSON),
            RAPPORT_INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(Error(), "128")) << Error();
}

TEST_F(Limits, DeepJsonNestingIsAnErrorNotAStackOverflow) {
  const std::string json =
      absl::StrCat(R"({"events":[)", std::string(100000, '['), std::string(100000, ']'), "]}");
  EXPECT_EQ(Batch(json, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT);
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += R"({"a":)";
  objects += "1";
  objects += std::string(100000, '}');
  EXPECT_EQ(Batch(objects, RAPPORT_FORMAT_JSON), RAPPORT_INVALID_ARGUMENT);
  EXPECT_EQ(rapport_events_accepted(engine_), 0);
}

TEST_F(Limits, DeepProtobufNestingHitsTheRecursionLimit) {
  // Unknown field 15 as nested groups, 100 000 deep: protobuf's
  // CodedInputStream recursion limit (100) stops the parse.
  std::string bytes(100000, static_cast<char>((15 << 3) | 3));     // start group
  bytes += std::string(100000, static_cast<char>((15 << 3) | 4));  // end group
  EXPECT_EQ(Batch(bytes, RAPPORT_FORMAT_PROTOBUF), RAPPORT_INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(Error(), "rapport.v1.EventBatch")) << Error();
  // Inside an event as well (field 1 of EventBatch, one event of nested groups).
  std::string event = std::string(200, static_cast<char>((15 << 3) | 3)) +
                      std::string(200, static_cast<char>((15 << 3) | 4));
  std::string batch = "\x0a";
  batch.push_back(static_cast<char>(0x80 | (event.size() & 0x7f)));
  batch.push_back(static_cast<char>(event.size() >> 7));
  batch += event;
  EXPECT_EQ(Batch(batch, RAPPORT_FORMAT_PROTOBUF), RAPPORT_INVALID_ARGUMENT);
  EXPECT_EQ(rapport_events_accepted(engine_), 0);
}

}  // namespace
