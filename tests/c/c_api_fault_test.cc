// The C ABI on an engine whose per-batch fdatasync failed (issue 7): every
// call that can report a status reports the failure, none answers from the
// in-memory state that holds the failed batch, and reopening gives every
// acknowledged batch.
//
// The C ABI opens engines only from a directory, so the engine is opened in
// C++ on a fault-injecting Env and handed to a C handle
// (rapport::c_api::AdoptEngine); like the equivalence test, this compiles
// lib/c_api/rapport.cc in next to rapport_core.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/c_api/adopt.h"
#include "lib/storage/env.h"
#include "rapport/engine.h"
#include "rapport/rapport.h"
#include "rapport/testing/generator.h"
#include "rapport/v1/event.pb.h"
#include "tests/storage/storage_test_util.h"

namespace rapport {
namespace {

const uint8_t* U(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// The generated stream cut into batches of `size`, each a serialized
// rapport.v1.EventBatch.
std::vector<std::string> Batches(int64_t events, int size) {
  testing::GeneratorOptions o;
  o.max_events = events;
  testing::Generator gen(o);
  std::vector<std::string> out;
  v1::EventBatch batch;
  v1::Event e;
  for (;;) {
    const bool more = gen.Next(&e);
    if (more) *batch.add_events() = e;
    if (batch.events_size() == size || (!more && batch.events_size() > 0)) {
      out.push_back(batch.SerializeAsString());
      batch.Clear();
    }
    if (!more) return out;
  }
}

int Ingest(rapport_engine* e, const std::string& batch) {
  return rapport_ingest_batch_v2(nullptr, nullptr, e, U(batch), batch.size(),
                                 RAPPORT_FORMAT_PROTOBUF, RAPPORT_BATCH_ATOMIC,
                                 RAPPORT_FORMAT_PROTOBUF);
}

std::string Snapshot(const rapport_engine* e) {
  uint8_t* out = nullptr;
  size_t len = 0;
  EXPECT_EQ(rapport_engine_snapshot(&out, &len, e, RAPPORT_FORMAT_PROTOBUF), RAPPORT_OK)
      << rapport_last_error_message();
  std::string s(reinterpret_cast<const char*>(out), len);
  rapport_free(out);
  return s;
}

TEST(CApiFailedFsync, EveryCallReportsItUntilReopened) {
  test::ScratchDir scratch;
  const std::string dir = scratch.Sub("db");
  const std::vector<std::string> batches = Batches(3000, 500);
  ASSERT_GE(batches.size(), 4u);
  FaultInjectionEnv env(Env::Default());
  OpenOptions options;
  options.sync = SyncMode::kPerBatch;
  options.env = &env;
  std::string acknowledged;  // the snapshot after the last acknowledged batch
  {
    auto opened = Engine::Open(dir, options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    rapport_engine* e = c_api::AdoptEngine(*std::move(opened));
    for (size_t i = 0; i < 2; ++i) ASSERT_EQ(Ingest(e, batches[i]), RAPPORT_OK) << i;
    acknowledged = Snapshot(e);
    ASSERT_GT(rapport_events_accepted(e), 0);

    env.FailNext(FileOp::kSync, absl::UnavailableError("fdatasync: injected"), "journal-");
    EXPECT_EQ(Ingest(e, batches[2]), RAPPORT_UNAVAILABLE);
    EXPECT_TRUE(absl::StrContains(rapport_last_error_message(), "fdatasync: injected"))
        << rapport_last_error_message();

    // Each call, by name, with valid arguments: it must fail with
    // FAILED_PRECONDITION naming the fdatasync failure, and return no buffer.
    uint8_t* out = nullptr;
    size_t len = 0;
    const std::string id = "a-1";
    const std::string query = "{\"start_us\": \"0\", \"end_us\": \"86400000000\"}";
    const std::vector<std::pair<std::string, std::function<int()>>> calls = {
        {"ingest_batch_v2", [&] { return Ingest(e, batches[3]); }},
        {"ingest_event",
         [&] {
           v1::EventBatch b;
           b.ParseFromString(batches[3]);
           const std::string one = b.events(0).SerializeAsString();
           return rapport_ingest_event(nullptr, nullptr, e, U(one), one.size(),
                                       RAPPORT_FORMAT_PROTOBUF);
         }},
        {"advance", [&] { return rapport_advance(&out, &len, e, 0, RAPPORT_FORMAT_PROTOBUF); }},
        {"acknowledge", [&] { return rapport_acknowledge(e, nullptr, nullptr, 0); }},
        {"checkpoint", [&] { return rapport_engine_checkpoint(e); }},
        {"snapshot",
         [&] { return rapport_engine_snapshot(&out, &len, e, RAPPORT_FORMAT_PROTOBUF); }},
        {"config", [&] { return rapport_engine_config(&out, &len, e, RAPPORT_FORMAT_JSON); }},
        {"outbox", [&] { return rapport_outbox(&out, &len, e, RAPPORT_FORMAT_JSON); }},
        {"get_account",
         [&] {
           return rapport_get_account(&out, &len, e, id.data(), id.size(), RAPPORT_FORMAT_JSON);
         }},
        {"get_deal",
         [&] {
           return rapport_get_deal(&out, &len, e, id.data(), id.size(), RAPPORT_FORMAT_JSON);
         }},
        {"get_order",
         [&] {
           return rapport_get_order(&out, &len, e, id.data(), id.size(), RAPPORT_FORMAT_JSON);
         }},
        {"get_manager",
         [&] {
           return rapport_get_manager(&out, &len, e, id.data(), id.size(), RAPPORT_FORMAT_JSON);
         }},
        {"get_team",
         [&] {
           return rapport_get_team(&out, &len, e, id.data(), id.size(), RAPPORT_FORMAT_JSON);
         }},
        {"accounts_by_status",
         [&] {
           return rapport_accounts_by_status(&out, &len, e, v1::ACCOUNT_STATUS_ACTIVE,
                                             RAPPORT_FORMAT_JSON_LINES);
         }},
        {"deals_by_stage",
         [&] { return rapport_deals_by_stage(&out, &len, e, RAPPORT_FORMAT_JSON_LINES); }},
        {"stuck_deals",
         [&] { return rapport_stuck_deals(&out, &len, e, 0, RAPPORT_FORMAT_JSON_LINES); }},
        {"account_status_counts",
         [&] {
           int64_t counts[16];
           size_t written = 99;
           const int rc = rapport_account_status_counts(counts, 16, &written, e);
           EXPECT_EQ(written, 0u);
           return rc;
         }},
        {"kpis",
         [&] { return rapport_kpis(&out, &len, e, U(query), query.size(), RAPPORT_FORMAT_JSON); }},
        {"kpi_partial",
         [&] {
           return rapport_kpi_partial(&out, &len, e, U(query), query.size(), RAPPORT_FORMAT_JSON);
         }},
        {"kpi_view_create",
         [&] {
           rapport_kpi_view* view = nullptr;
           const int rc =
               rapport_kpi_view_create(&view, e, U(query), query.size(), RAPPORT_FORMAT_JSON);
           EXPECT_EQ(view, nullptr);
           rapport_kpi_view_destroy(view);
           return rc;
         }},
        {"grades", [&] { return rapport_grades(&out, &len, e, 0, RAPPORT_FORMAT_JSON); }},
    };
    for (const auto& [name, call] : calls) {
      SCOPED_TRACE(name);
      for (int retry = 0; retry < 2; ++retry) {
        out = nullptr;
        len = 7;
        EXPECT_EQ(call(), RAPPORT_FAILED_PRECONDITION) << rapport_last_error_message();
        const std::string message = rapport_last_error_message();
        EXPECT_TRUE(absl::StrContains(message, "fdatasync: injected")) << message;
        EXPECT_TRUE(absl::StrContains(message, "reopen")) << message;
        EXPECT_EQ(out, nullptr);
        rapport_free(out);
      }
    }
    // The two answers without a status say nothing of the failed state.
    EXPECT_EQ(rapport_events_accepted(e), 0);
    EXPECT_EQ(rapport_clock_us(e), 0);
    rapport_engine_destroy(e);
  }

  // Reopened through the C ABI: the acknowledged batches, not the failed one,
  // and the engine takes writes again.
  rapport_engine* e = nullptr;
  ASSERT_EQ(rapport_engine_open(&e, dir.c_str(), nullptr, 0, RAPPORT_FORMAT_PROTOBUF,
                                RAPPORT_SYNC_PER_BATCH, 0),
            RAPPORT_OK)
      << rapport_last_error_message();
  EXPECT_EQ(Snapshot(e), acknowledged);
  EXPECT_EQ(Ingest(e, batches[2]), RAPPORT_OK) << rapport_last_error_message();
  rapport_engine_destroy(e);
}

}  // namespace
}  // namespace rapport
