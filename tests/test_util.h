// Builders that keep the tests short: events from text, engines with
// defaults, and status matchers.
#ifndef RAPPORT_TESTS_TEST_UTIL_H_
#define RAPPORT_TESTS_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "rapport/engine.h"

namespace rapport::test {

inline constexpr int64_t kDay = 86400LL * 1000000;
inline constexpr int64_t kHour = 3600LL * 1000000;
// 2025-01-01T00:00:00Z.
inline constexpr int64_t kT0 = 1735689600000000;

// An event from its id, time and payload in text format, e.g.
// Ev("e1", kT0, "activity { account_id: 'c1' ... }").
inline v1::Event Ev(const std::string& id, int64_t at, const std::string& payload) {
  v1::Event e;
  if (!google::protobuf::TextFormat::ParseFromString(payload, &e)) {
    ADD_FAILURE() << "bad test event text: " << payload;
  }
  e.set_event_id(id);
  e.set_occurred_at_us(at);
  return e;
}

template <typename T>
T Parse(const std::string& text) {
  T m;
  if (!google::protobuf::TextFormat::ParseFromString(text, &m))
    ADD_FAILURE() << "bad text: " << text;
  return m;
}

inline std::unique_ptr<Engine> NewEngine(const v1::EngineConfig& config = {}) {
  auto e = Engine::Create(config);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

// Ingests and expects success.
inline void MustIngest(Engine& engine, const v1::Event& e) {
  auto r = engine.Ingest(e);
  ASSERT_TRUE(r.ok()) << r.status();
}

// A small company: team t1 (segment retail) with lead m1 and manager m2, head
// m0, partner p1, client c1 (owner m2).
inline void Seed(Engine& engine, int64_t at = kT0) {
  MustIngest(engine, Ev("seed-t1", at, "team_upserted { team_id: 't1' segments: 'retail' }"));
  MustIngest(engine, Ev("seed-m0", at, "manager_upserted { manager_id: 'm0' is_head: true }"));
  MustIngest(engine, Ev("seed-m1", at, "manager_upserted { manager_id: 'm1' team_id: 't1' }"));
  MustIngest(engine, Ev("seed-m2", at, "manager_upserted { manager_id: 'm2' team_id: 't1' }"));
  MustIngest(engine, Ev("seed-t1b", at,
                        "team_upserted { team_id: 't1' lead_id: 'm1' segments: 'retail' }"));
  MustIngest(engine, Ev("seed-p1", at,
                        "account_upserted { account_id: 'p1' kind: ACCOUNT_KIND_PARTNER "
                        "owner_id: 'm1' segment: 'retail' preferred_channel: CHANNEL_MESSENGER }"));
  MustIngest(engine, Ev("seed-c1", at,
                        "account_upserted { account_id: 'c1' kind: ACCOUNT_KIND_CLIENT "
                        "owner_id: 'm2' segment: 'retail' tier: TIER_A }"));
}

}  // namespace rapport::test

#endif  // RAPPORT_TESTS_TEST_UTIL_H_
