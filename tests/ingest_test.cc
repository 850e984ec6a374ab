// SPEC §2's rules of ingest: validation, idempotency, batches, late events.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "lib/ingest/validate.h"
#include "lib/state/event_id_log.h"
#include "lib/state/table.h"
#include "lib/util/utf8.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "tests/test_util.h"

namespace rapport::test {
namespace {

struct BadCase {
  const char* name;
  int64_t at;
  std::string payload;
  absl::StatusCode code;
  const char* field;
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class Validation : public ::testing::TestWithParam<BadCase> {};

TEST_P(Validation, RejectsNamingEventAndFieldAndChangesNothing) {
  const BadCase& c = GetParam();
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("l1", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }"));
  MustIngest(*engine, Ev("o1", kT0,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 5 currency: 'RUB' } }"));
  MustIngest(*engine, Ev("i1", kT0,
                         "invoice_issued { invoice_id: 'i1' account_id: 'c1' "
                         "amount { amount_minor: 5 currency: 'RUB' } due_at_us: 1 }"));
  const std::string before = *engine->Snapshot();

  auto r = engine->Ingest(Ev("bad-1", c.at, c.payload));
  ASSERT_FALSE(r.ok()) << c.name;
  EXPECT_EQ(r.status().code(), c.code) << r.status();
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find("event 'bad-1'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(absl::StrCat("field '", c.field, "'")), std::string::npos) << msg;
  EXPECT_EQ(*engine->Snapshot(), before) << "a rejected event changed the state";
}

const std::string kLong(kMaxIdBytes + 1, 'x');
const std::string kText(kMaxTextBytes + 1, 'y');
using C = absl::StatusCode;

INSTANTIATE_TEST_SUITE_P(
    Ingest, Validation,
    ::testing::Values(
        BadCase{"no_payload", kT0, "", C::kInvalidArgument, "payload"},
        BadCase{"time_before_1970", -1, "partner_agreed { account_id: 'p1' }", C::kInvalidArgument,
                "occurred_at_us"},
        BadCase{"time_after_9999", kMaxTimeUs, "partner_agreed { account_id: 'p1' }",
                C::kInvalidArgument, "occurred_at_us"},
        BadCase{"unknown_account", kT0, "partner_agreed { account_id: 'zz' }", C::kNotFound,
                "partner_agreed.account_id"},
        BadCase{"client_is_not_partner", kT0, "partner_agreed { account_id: 'c1' }",
                C::kFailedPrecondition, "partner_agreed.account_id"},
        BadCase{"unknown_deal", kT0, "deal_won { deal_id: 'zz' }", C::kNotFound,
                "deal_won.deal_id"},
        BadCase{"stage_not_in_pipeline", kT0,
                "deal_stage_changed { deal_id: 'd1' to_stage: 'training' }", C::kInvalidArgument,
                "deal_stage_changed.to_stage"},
        BadCase{"unknown_order", kT0, "order_completed { order_id: 'zz' }", C::kNotFound,
                "order_completed.order_id"},
        BadCase{"unknown_manager", kT0,
                "activity { account_id: 'c1' manager_id: 'zz' kind: ACTIVITY_KIND_CALL "
                "direction: DIRECTION_OUTBOUND }",
                C::kNotFound, "activity.manager_id"},
        BadCase{"negative_amount", kT0,
                "order_placed { order_id: 'o9' account_id: 'c1' amount { amount_minor: -1 "
                "currency: 'RUB' } }",
                C::kInvalidArgument, "order_placed.amount.amount_minor"},
        BadCase{"bad_currency", kT0,
                "payment_received { account_id: 'c1' amount { amount_minor: 1 currency: 'rub' } }",
                C::kInvalidArgument, "payment_received.amount.currency"},
        BadCase{"currency_differs_from_invoice", kT0,
                "payment_received { account_id: 'c1' invoice_id: 'i1' amount { amount_minor: 1 "
                "currency: 'USD' } }",
                C::kInvalidArgument, "payment_received.amount.currency"},
        BadCase{"score_above_10", kT0, "feedback_received { account_id: 'c1' score: 11 }",
                C::kInvalidArgument, "feedback_received.score"},
        BadCase{"score_below_0", kT0, "feedback_received { account_id: 'c1' score: -1 }",
                C::kInvalidArgument, "feedback_received.score"},
        BadCase{"oversize_id", kT0, "partner_agreed { account_id: '" + kLong + "' }",
                C::kInvalidArgument, "partner_agreed.account_id"},
        BadCase{"oversize_text", kT0, "deal_lost { deal_id: 'd1' reason: '" + kText + "' }",
                C::kInvalidArgument, "deal_lost.reason"},
        BadCase{"kind_cannot_change", kT0,
                "account_upserted { account_id: 'c1' kind: ACCOUNT_KIND_PARTNER }",
                C::kFailedPrecondition, "account_upserted.kind"},
        BadCase{"phone_is_not_written", kT0,
                "account_upserted { account_id: 'c9' kind: ACCOUNT_KIND_CLIENT "
                "preferred_channel: CHANNEL_PHONE }",
                C::kInvalidArgument, "account_upserted.preferred_channel"},
        BadCase{"deal_id_taken", kT0, "lead_created { deal_id: 'd1' account_id: 'c1' }",
                C::kAlreadyExists, "lead_created.deal_id"},
        BadCase{"order_id_taken", kT0,
                "order_placed { order_id: 'o1' account_id: 'c1' amount { amount_minor: 1 "
                "currency: 'RUB' } }",
                C::kAlreadyExists, "order_placed.order_id"},
        BadCase{"unknown_pipeline", kT0,
                "lead_created { deal_id: 'd9' account_id: 'c1' pipeline_id: 'nope' }", C::kNotFound,
                "lead_created.pipeline_id"},
        BadCase{"source_is_not_a_partner", kT0,
                "lead_created { deal_id: 'd9' account_id: 'c1' source_partner_id: 'c1' }",
                C::kFailedPrecondition, "lead_created.source_partner_id"},
        BadCase{"unknown_task", kT0, "task_completed { task_id: 'zz' }", C::kNotFound,
                "task_completed.task_id"},
        BadCase{"missing_amount", kT0, "order_placed { order_id: 'o9' account_id: 'c1' }",
                C::kInvalidArgument, "order_placed.amount"},
        BadCase{"missing_activity_kind", kT0,
                "activity { account_id: 'c1' manager_id: 'm1' direction: DIRECTION_INBOUND }",
                C::kInvalidArgument, "activity.kind"},
        BadCase{"deal_of_other_account", kT0,
                "order_placed { order_id: 'o9' account_id: 'p1' deal_id: 'd1' amount { "
                "amount_minor: 1 currency: 'RUB' } }",
                C::kInvalidArgument, "order_placed.deal_id"},
        BadCase{"unknown_complaint", kT0, "complaint_resolved { complaint_id: 'zz' }", C::kNotFound,
                "complaint_resolved.complaint_id"},
        BadCase{"invalid_utf8_text", kT0, "team_upserted { team_id: 't1' segments: '\\xff' }",
                C::kInvalidArgument, "team_upserted.segments[0]"},
        BadCase{"invalid_utf8_id", kT0, "partner_agreed { account_id: '\\xc0\\xaf' }",
                C::kInvalidArgument, "partner_agreed.account_id"},
        BadCase{"control_char_in_id", kT0, "partner_agreed { account_id: 'p\\x7fq' }",
                C::kInvalidArgument, "partner_agreed.account_id"},
        BadCase{"control_char_after_utf8_in_id", kT0,
                "partner_agreed { account_id: '\\xc3\\xa9\\x1f' }", C::kInvalidArgument,
                "partner_agreed.account_id"},
        BadCase{"id_too_long", kT0,
                "partner_agreed { account_id: '" + std::string(129, 'p') + "' }",
                C::kInvalidArgument, "partner_agreed.account_id"},
        BadCase{"bad_due_date", kT0, "order_delayed { order_id: 'o1' new_due_at_us: -3 }",
                C::kInvalidArgument, "order_delayed.new_due_at_us"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

// ScanBytes (eight bytes at a time) against its definition byte by byte:
// every byte value at every position of ids of 1..24 bytes, next to each of
// the bytes where a word-wise test can go wrong (borrows across bytes), and
// random strings.
TEST(Ingest, ByteScanEqualsTheBytewiseDefinition) {
  auto reference = [](const std::string& s) {
    ByteScan r;
    for (unsigned char c : s) {
      r.control |= c < 0x20 || c == 0x7f;
      r.high |= c >= 0x80;
    }
    return r;
  };
  auto check = [&](const std::string& s) {
    const ByteScan got = ScanBytes(s);
    const ByteScan want = reference(s);
    ASSERT_EQ(got.control, want.control) << ::testing::PrintToString(s);
    ASSERT_EQ(got.high, want.high) << ::testing::PrintToString(s);
  };
  check("");
  const unsigned char neighbours[] = {'a', 0x00, 0x1f, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0xff};
  for (size_t len = 1; len <= 24; ++len) {
    for (size_t pos = 0; pos < len; ++pos) {
      for (int b = 0; b < 256; ++b) {
        for (unsigned char nb : neighbours) {
          std::string s(len, 'x');
          s[pos] = static_cast<char>(b);
          if (pos + 1 < len) s[pos + 1] = static_cast<char>(nb);
          if (pos > 0) s[pos - 1] = static_cast<char>(nb);
          check(s);
        }
      }
    }
  }
  uint64_t x = 88172645463325252ULL;
  for (int i = 0; i < 200000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::string s(1 + x % 40, 'x');
    for (char& c : s) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      // Mostly printable ASCII, sometimes anything.
      c = static_cast<char>(x % 8 == 0 ? (x >> 8) % 256 : 0x20 + (x >> 8) % 0x5f);
    }
    check(s);
  }
}

// Validation looks ids up with a hash it computed once (IdHash): that must be
// the hash the tables file ids under, so IndexOf(id, IdHash(id)) answers as
// IndexOf(id) does, hits and misses alike.
TEST(Ingest, TableLookupWithTheIdHashEqualsThePlainLookup) {
  google::protobuf::Arena arena;
  Table<v1::Account> table(&arena);
  std::vector<std::string> ids;
  for (int i = 0; i < 2000; ++i) ids.push_back("c-" + std::to_string(i * 7919));
  for (size_t i = 0; i < ids.size(); i += 2) table.Insert(ids[i]);
  for (const std::string& id : ids) {
    ASSERT_EQ(table.IndexOf(id, IdHash(id)), table.IndexOf(id)) << id;
  }
  EXPECT_EQ(table.IndexOf(ids[0], IdHash(ids[0])), 0u);
  EXPECT_EQ(table.IndexOf(ids[1], IdHash(ids[1])), Table<v1::Account>::kNone);
}

// EventIdLog::Add copies ids of 8..16 bytes as two words and the rest with
// memcpy: every length keeps its exact bytes, back to back.
TEST(Ingest, EventIdLogKeepsIdsOfEveryLengthExactly) {
  EventIdLog log;
  std::string all;
  for (size_t len = 1; len <= 128; ++len) {
    std::string id;
    for (size_t i = 0; i < len; ++i) id.push_back(static_cast<char>('a' + (len * 31 + i) % 26));
    const absl::string_view stored = log.Add(id, len);
    ASSERT_EQ(stored, id);
    ASSERT_EQ(log.Stored(id), id);
    all += id;
  }
  std::string appended;
  log.AppendIds(&appended);
  EXPECT_EQ(appended, all);
}

// FindOrAdd (one probe) leaves the log exactly as Find then Add would: the
// same ids, bytes, fingerprints and answers, over new ids, repeats, and ids
// that do not fit the last block (1 MiB of 128-byte ids fills one exactly).
TEST(Ingest, EventIdLogFindOrAddEqualsFindThenAdd) {
  EventIdLog one_probe;
  EventIdLog reference;
  std::vector<std::string> ids;
  for (int i = 0; i < 8192 + 50; ++i) {
    std::string id = "id-" + std::to_string(i);
    id.resize(i < 8192 ? 128 : static_cast<size_t>(1 + i % 128), static_cast<char>('a' + i % 26));
    ids.push_back(id);
  }
  auto step = [&](const std::string& id, uint64_t fp) {
    absl::string_view stored;
    const uint64_t* found = one_probe.FindOrAdd(id, EventIdLog::Hash(id), fp, &stored);
    const uint64_t* expected = reference.Find(id);
    if (expected == nullptr) {
      ASSERT_EQ(found, nullptr) << id;
      ASSERT_EQ(stored, reference.Add(id, fp));
      ASSERT_EQ(one_probe.Stored(id).data(), stored.data());
    } else {
      ASSERT_NE(found, nullptr) << id;
      ASSERT_EQ(*found, *expected) << id;
    }
  };
  for (size_t i = 0; i < ids.size(); ++i) {
    step(ids[i], i);
    // Repeats, among them one arriving just as the block is full.
    if (i % 7 == 0 || i == 8191) step(ids[i / 2], 1000000 + i);
  }
  step(ids[0], 5);  // the next block has room: nothing started for it
  EXPECT_EQ(one_probe.size(), reference.size());
  EXPECT_EQ(one_probe.fingerprints(), reference.fingerprints());
  EXPECT_EQ(one_probe.lengths(), reference.lengths());
  std::string a, b;
  one_probe.AppendIds(&a);
  reference.AppendIds(&b);
  EXPECT_EQ(a, b);
  const std::vector<const char*> starts = one_probe.IdStarts();
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(absl::string_view(starts[i], one_probe.lengths()[i]), ids[i]);
    ASSERT_EQ(one_probe.IndexOf(ids[i], EventIdLog::Hash(ids[i])), static_cast<int64_t>(i));
  }
  // A refused event's id is taken back: it is new again.
  absl::string_view stored;
  ASSERT_EQ(one_probe.FindOrAdd("late", EventIdLog::Hash("late"), 9, &stored), nullptr);
  one_probe.Truncate(one_probe.size() - 1);
  EXPECT_EQ(one_probe.Find("late"), nullptr);
  EXPECT_EQ(one_probe.size(), reference.size());
}

// An event refused after its id was recorded (validation records ids as it
// goes) leaves no trace: a later event with that id is new, in the same
// batch or the next, in either mode.
TEST(Ingest, RefusedEventIdIsNewAgain) {
  auto engine = NewEngine();
  Seed(*engine);
  const v1::Event bad = Ev("x1", kT0, "partner_agreed { account_id: 'nope' }");
  const v1::Event good = Ev("x1", kT0, "partner_agreed { account_id: 'p1' }");
  IngestOptions best_effort;
  best_effort.mode = BatchMode::kBestEffort;
  auto r = engine->IngestBatch(std::vector<v1::Event>{bad, bad, good}, best_effort);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rejected_size(), 2);
  EXPECT_EQ(r->accepted(), 1);
  EXPECT_EQ(r->duplicates(), 0);

  auto atomic = NewEngine();
  Seed(*atomic);
  const int64_t before = atomic->events_accepted();
  const v1::Event bad2 = Ev("x2", kT0, "partner_agreed { account_id: 'nope' }");
  const v1::Event good2 = Ev("x2", kT0, "partner_churned { account_id: 'p1' }");
  EXPECT_FALSE(atomic->IngestBatch(std::vector<v1::Event>{good, bad2}).ok());
  EXPECT_EQ(atomic->events_accepted(), before);
  auto ok = atomic->IngestBatch(std::vector<v1::Event>{good, good2});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->accepted(), 2);
  EXPECT_EQ(ok->duplicates(), 0);
}

// Which check of an id's bytes fails decides the message.
TEST(Ingest, IdByteErrorsNameTheirCause) {
  auto engine = NewEngine();
  Seed(*engine);
  auto message = [&](const std::string& account_id) {
    v1::Event e = Ev("x", kT0, "partner_agreed {}");
    e.mutable_partner_agreed()->set_account_id(account_id);
    return std::string(engine->Ingest(e).status().message());
  };
  const std::string bytes = "must be 1..128 bytes without control characters";
  EXPECT_NE(message("p\x7f").find(bytes), std::string::npos);
  EXPECT_NE(message("\xc3\xa9\x1f").find(bytes), std::string::npos);
  EXPECT_NE(message(std::string(129, 'p')).find(bytes), std::string::npos);
  EXPECT_NE(message(std::string(129, '\xff')).find(bytes), std::string::npos);
  EXPECT_NE(message("\xc0\xaf").find("is not valid UTF-8"), std::string::npos);
  EXPECT_NE(message("p1\xed\xa0\x80").find("is not valid UTF-8"), std::string::npos);
  // Valid UTF-8 that is not ASCII passes the byte checks (the account is
  // unknown).
  EXPECT_NE(message("\xc3\xa9t\xc3\xa9").find("unknown account"), std::string::npos);
  EXPECT_TRUE(
      engine->Ingest(Ev("\xc3\xa9v\xc3\xa9nement", kT0, "partner_agreed { account_id: 'p1' }"))
          .ok());
}

TEST(Ingest, EmptyEventIdIsRejected) {
  auto engine = NewEngine();
  auto r = engine->Ingest(Ev("", kT0, "team_upserted { team_id: 't1' }"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("field 'event_id'"), std::string::npos);
}

TEST(Ingest, DuplicateIsANoOpAndOtherContentIsAConflict) {
  auto engine = NewEngine();
  Seed(*engine);
  const v1::Event e = Ev("x1", kT0, "partner_agreed { account_id: 'p1' }");
  MustIngest(*engine, e);
  const std::string before = *engine->Snapshot();
  auto again = engine->Ingest(e);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duplicates(), 1);
  EXPECT_EQ(again->accepted(), 0);
  EXPECT_EQ(*engine->Snapshot(), before);

  auto conflict = engine->Ingest(Ev("x1", kT0 + 1, "partner_agreed { account_id: 'p1' }"));
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(conflict.status().message().find("conflict"), std::string::npos);
  EXPECT_NE(conflict.status().message().find("event 'x1'"), std::string::npos);
  EXPECT_EQ(*engine->Snapshot(), before);
}

TEST(Ingest, AtomicBatchIsAllOrNothingAndNamesTheIndex) {
  auto engine = NewEngine();
  Seed(*engine);
  const std::string before = *engine->Snapshot();
  std::vector<v1::Event> batch = {
      Ev("b0", kT0, "account_upserted { account_id: 'c2' kind: ACCOUNT_KIND_CLIENT }"),
      // Refers to an account created earlier in the same batch.
      Ev("b1", kT0, "lead_created { deal_id: 'd2' account_id: 'c2' }"),
      Ev("b2", kT0, "deal_stage_changed { deal_id: 'd2' to_stage: 'qualified' }"),
      Ev("b3", kT0, "feedback_received { account_id: 'c2' score: 42 }"),
  };
  auto r = engine->IngestBatch(batch);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("event 'b3' (index 3)"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("feedback_received.score"), std::string::npos);
  EXPECT_EQ(*engine->Snapshot(), before);
  EXPECT_FALSE(engine->GetAccount("c2").ok());

  batch.pop_back();
  auto ok = engine->IngestBatch(batch);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->accepted(), 3);
  EXPECT_EQ(engine->GetDeal("d2")->stage(), "qualified");
}

// Validation records a batch's new ids as it goes; a failure at the end of a
// batch whose ids fill more than one of the id log's blocks takes them all
// back, and the batch then goes in as if it had never failed.
TEST(Ingest, FailedAtomicBatchTakesBackEveryIdItRecorded) {
  auto engine = NewEngine();
  Seed(*engine);
  const std::string before = *engine->Snapshot();
  std::vector<v1::Event> batch;
  for (int i = 0; i < 12000; ++i) {
    std::string id = "long-" + std::to_string(i) + "-";
    id.resize(100, 'x');
    batch.push_back(Ev(id, kT0,
                       "activity { account_id: 'c1' manager_id: 'm1' kind: "
                       "ACTIVITY_KIND_CALL direction: DIRECTION_OUTBOUND }"));
  }
  batch.push_back(batch[5]);  // a repeat within the batch: a duplicate
  batch.push_back(Ev("late-bad", kT0, "feedback_received { account_id: 'c1' score: 42 }"));
  auto r = engine->IngestBatch(batch);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("event 'late-bad' (index 12001)"), std::string::npos)
      << r.status();
  EXPECT_EQ(*engine->Snapshot(), before);
  EXPECT_EQ(engine->events_accepted(), 7);

  batch.pop_back();
  auto ok = engine->IngestBatch(batch);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->accepted(), 12000);
  EXPECT_EQ(ok->duplicates(), 1);
  auto reference = NewEngine();
  Seed(*reference);
  for (const v1::Event& e : batch) ASSERT_TRUE(reference->Ingest(e).ok());
  EXPECT_EQ(*engine->Snapshot(), *reference->Snapshot());
  // The ids are known now: a repeat is a duplicate, other content a conflict.
  auto again = engine->IngestBatch({batch[11999]});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duplicates(), 1);
  v1::Event other = batch[11999];
  other.set_occurred_at_us(kT0 + 1);
  EXPECT_EQ(engine->IngestBatch({other}).status().code(), absl::StatusCode::kAlreadyExists);
}

// The message names the deal's account, for a stored deal and for one the
// same batch creates.
TEST(Ingest, OrderForAnotherAccountsDealNamesThatAccount) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine,
             Ev("a2", kT0, "account_upserted { account_id: 'c2' kind: ACCOUNT_KIND_CLIENT }"));
  MustIngest(*engine, Ev("l2", kT0, "lead_created { deal_id: 'd2' account_id: 'c2' }"));
  auto stored = engine->IngestBatch(
      {Ev("o1", kT0,
          "order_placed { order_id: 'o1' account_id: 'c1' deal_id: 'd2' amount { amount_minor: 5 "
          "currency: 'EUR' } }")});
  EXPECT_EQ(stored.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(stored.status().message().find("deal 'd2' belongs to account 'c2'"), std::string::npos)
      << stored.status();
  auto created = engine->IngestBatch(
      {Ev("a3", kT0, "account_upserted { account_id: 'c3' kind: ACCOUNT_KIND_CLIENT }"),
       Ev("l3", kT0, "lead_created { deal_id: 'd3' account_id: 'c3' }"),
       Ev("o1", kT0,
          "order_placed { order_id: 'o1' account_id: 'c1' deal_id: 'd3' amount { amount_minor: 5 "
          "currency: 'EUR' } }")});
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(created.status().message().find("deal 'd3' belongs to account 'c3'"), std::string::npos)
      << created.status();
}

TEST(Ingest, AtomicBatchSeesRepeatsWithinItself) {
  auto engine = NewEngine();
  Seed(*engine);
  const v1::Event e = Ev("r1", kT0, "partner_agreed { account_id: 'p1' }");
  auto r = engine->IngestBatch({e, e});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->accepted(), 1);
  EXPECT_EQ(r->duplicates(), 1);
  v1::Event other = e;
  other.set_occurred_at_us(kT0 + 5);
  auto c = engine->IngestBatch({Ev("r2", kT0, "partner_churned { account_id: 'p1' }"),
                                Ev("r2", kT0 + 1, "partner_churned { account_id: 'p1' }")});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(c.status().message().find("(index 1)"), std::string::npos);
  EXPECT_FALSE(engine->Ingest(other).ok());
}

TEST(Ingest, BestEffortBatchAppliesTheGoodAndListsTheBad) {
  auto engine = NewEngine();
  Seed(*engine);
  std::vector<v1::Event> batch = {
      Ev("b0", kT0, "account_upserted { account_id: 'c2' kind: ACCOUNT_KIND_CLIENT }"),
      Ev("b1", kT0, "lead_created { deal_id: 'd2' account_id: 'nope' }"),
      Ev("b2", kT0, "lead_created { deal_id: 'd2' account_id: 'c2' }"),
      Ev("b3", kT0, "feedback_received { account_id: 'c2' score: 42 }"),
      Ev("b0", kT0, "account_upserted { account_id: 'c2' kind: ACCOUNT_KIND_CLIENT }"),
  };
  IngestOptions options;
  options.mode = BatchMode::kBestEffort;
  auto r = engine->IngestBatch(batch, options);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->accepted(), 2);
  EXPECT_EQ(r->duplicates(), 1);
  ASSERT_EQ(r->rejected_size(), 2);
  EXPECT_EQ(r->rejected(0).index(), 1);
  EXPECT_EQ(r->rejected(0).event_id(), "b1");
  EXPECT_EQ(r->rejected(0).code(), static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_NE(r->rejected(0).message().find("lead_created.account_id"), std::string::npos);
  EXPECT_EQ(r->rejected(1).index(), 3);
  EXPECT_TRUE(engine->GetDeal("d2").ok());
}

TEST(Ingest, OversizeBatchIsRefused) {
  auto engine = NewEngine();
  std::vector<v1::Event> batch(kMaxBatchEvents + 1);
  auto r = engine->IngestBatch(batch);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(engine->events_accepted(), 0);
}

TEST(Ingest, LateEventsFollowArrivalForStateAndKeepTheirTime) {
  auto engine = NewEngine();
  Seed(*engine);
  MustIngest(*engine, Ev("a2", kT0 + 2 * kDay, "partner_churned { account_id: 'p1' }"));
  // Arrives after, happened before: state follows arrival order.
  MustIngest(*engine, Ev("a1", kT0 + kDay, "partner_agreed { account_id: 'p1' }"));
  auto p1 = engine->GetAccount("p1");
  EXPECT_EQ(p1->status(), v1::ACCOUNT_STATUS_ACTIVE);
  EXPECT_EQ(p1->status_since_us(), kT0 + kDay);
  // A late order keeps its own time; the latest order time does not go back.
  MustIngest(*engine, Ev("o2", kT0 + 9 * kDay,
                         "order_placed { order_id: 'o2' account_id: 'c1' "
                         "amount { amount_minor: 1 currency: 'RUB' } }"));
  MustIngest(*engine, Ev("o1", kT0 + 3 * kDay,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 1 currency: 'RUB' } }"));
  EXPECT_EQ(engine->GetOrder("o1")->placed_at_us(), kT0 + 3 * kDay);
  EXPECT_EQ(engine->GetAccount("c1")->last_order_at_us(), kT0 + 9 * kDay);
  EXPECT_EQ(engine->GetAccount("c1")->status(), v1::ACCOUNT_STATUS_REPEAT);
}

TEST(Json, EventsRoundTripThroughCanonicalJson) {
  const v1::Event e = Ev("j1", kT0,
                         "order_placed { order_id: 'o1' account_id: 'c1' "
                         "amount { amount_minor: 5 currency: 'RUB' } }");
  auto json = ToJson(e);
  ASSERT_TRUE(json.ok());
  v1::Event back;
  ASSERT_TRUE(FromJson(*json, &back).ok());
  EXPECT_EQ(back.SerializeAsString(), e.SerializeAsString());
  // lowerCamelCase names are accepted too.
  ASSERT_TRUE(
      FromJson(R"({"eventId":"j2","occurredAtUs":"5","partnerAgreed":{"accountId":"p"}})", &back)
          .ok());
  EXPECT_EQ(back.partner_agreed().account_id(), "p");
  auto bad = FromJson(R"({"eventId":"j3","nope":1})", &back);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  auto lines = EventsFromJsonLines("{\"event_id\":\"a\"}\n\n{\"event_id\":\"b\"}\n{oops}\n");
  EXPECT_EQ(lines.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(lines.status().message().find("line 4"), std::string::npos) << lines.status();
}

}  // namespace
}  // namespace rapport::test
