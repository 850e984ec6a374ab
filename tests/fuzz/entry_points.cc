#include "tests/fuzz/entry_points.h"

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "lib/storage/journal.h"
#include "lib/storage/persistent_engine.h"
#include "lib/storage/snapshot.h"
#include "lib/storage/store.h"
#include "rapport/engine.h"
#include "rapport/json.h"
#include "rapport/v1/kpi.pb.h"
#include "rapport/v1/snapshot.pb.h"
#include "tests/json_reference_parser.h"

namespace rapport::fuzz {
namespace {

// Protobuf's own default; inputs are capped like the C ABI caps them.
constexpr size_t kMaxInput = 1 << 20;

absl::string_view View(const uint8_t* data, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

// A small company to refer to.
std::unique_ptr<Engine> Seeded() {
  static const char* const kSeed[] = {
      "event_id: 's1' occurred_at_us: 1735689600000000 team_upserted { team_id: 't1' segments: "
      "'retail' }",
      "event_id: 's2' occurred_at_us: 1735689600000000 manager_upserted { manager_id: 'm1' "
      "team_id: 't1' }",
      "event_id: 's3' occurred_at_us: 1735689600000000 account_upserted { account_id: 'c1' kind: "
      "ACCOUNT_KIND_CLIENT owner_id: 'm1' segment: 'retail' }",
      "event_id: 's4' occurred_at_us: 1735689600000000 account_upserted { account_id: 'p1' kind: "
      "ACCOUNT_KIND_PARTNER owner_id: 'm1' segment: 'retail' }",
  };
  auto engine = *Engine::Create();
  for (const char* text : kSeed) {
    v1::Event e;
    Check(google::protobuf::TextFormat::ParseFromString(text, &e), "seed event parses");
    Check(engine->Ingest(e).ok(), "seed event is accepted");
  }
  return engine;
}

void IngestBoth(const v1::EventBatch& batch) {
  auto engine = Seeded();
  const int64_t before = engine->events_accepted();
  auto atomic = engine->IngestBatch(batch);
  if (!atomic.ok())
    Check(engine->events_accepted() == before, "a failed atomic batch changes nothing");
  IngestOptions best;
  best.mode = BatchMode::kBestEffort;
  auto other = Seeded();
  auto r = other->IngestBatch(batch, best);
  if (r.ok()) {
    Check(r->accepted() + r->duplicates() + r->rejected_size() == batch.events_size(),
          "best effort accounts for every event");
    // The state it reached survives a snapshot round trip.
    auto snap = other->Snapshot();
    Check(snap.ok(), "snapshot");
    auto restored = Engine::Restore(*snap);
    Check(restored.ok(), "a reached state restores");
    Check(*(*restored)->Snapshot() == *snap, "restore is exact");
  }
}

// The fast JSON parser agrees with the reference parser it replaced: the
// same verdict and, when accepted, the same message.
template <typename M>
void JsonAgreesWithReference(absl::string_view json) {
  M ours;
  M ref;
  const bool ours_ok = FromJson(json, &ours).ok();
  const bool ref_ok = test::ReferenceFromJson(json, &ref).ok();
  Check(ours_ok == ref_ok, "the JSON parser and the reference agree on acceptance");
  if (ours_ok) {
    Check(ours.SerializeAsString() == ref.SerializeAsString(),
          "the JSON parser and the reference build the same message");
  } else {
    Check(ours.ByteSizeLong() == 0, "a refused JSON parse leaves nothing");
  }
}

}  // namespace

void EventProtobuf(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return;
  v1::EventBatch batch;
  if (batch.ParseFromArray(data, static_cast<int>(size))) IngestBoth(batch);
  v1::Event one;
  if (one.ParseFromArray(data, static_cast<int>(size))) Seeded()->Ingest(one).IgnoreError();
}

void EventJson(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return;
  JsonAgreesWithReference<v1::Event>(View(data, size));
  JsonAgreesWithReference<v1::EventBatch>(View(data, size));
  auto lines = EventsFromJsonLines(View(data, size));
  if (lines.ok()) {
    v1::EventBatch batch;
    for (auto& e : *lines) *batch.add_events() = std::move(e);
    IngestBoth(batch);
  }
  v1::EventBatch batch;
  if (FromJson(View(data, size), &batch).ok()) IngestBoth(batch);
}

void ConfigLoad(const uint8_t* data, size_t size) {
  if (size == 0 || size > kMaxInput) return;
  v1::EngineConfig config;
  bool parsed;
  if (data[0] % 2 == 0) {
    parsed = config.ParseFromArray(data + 1, static_cast<int>(size - 1));
  } else {
    JsonAgreesWithReference<v1::EngineConfig>(View(data + 1, size - 1));
    parsed = FromJson(View(data + 1, size - 1), &config).ok();
  }
  if (!parsed) return;
  auto engine = Engine::Create(config);
  if (engine.ok()) {
    auto snap = (*engine)->Snapshot();
    Check(snap.ok() && Engine::Restore(*snap).ok(), "an accepted config restores");
  }
}

void KpiQuery(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return;
  v1::KpiQuery query;
  if (!query.ParseFromArray(data, static_cast<int>(size))) return;
  static Engine* engine = Seeded().release();
  engine->Kpis(query).IgnoreError();
}

// Where ReadSnapshot's hand parsers take bytes, protobuf's parser takes them
// and gives the same message: a snapshot, and each row kind on short inputs.
template <typename M>
void CheckHandParse(bool by_hand, const M& hand, absl::string_view bytes) {
  if (!by_hand) return;
  M generated;
  Check(generated.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())),
        "the hand parser takes only what protobuf's takes");
  Check(google::protobuf::util::MessageDifferencer::Equals(generated, hand),
        "the hand parser gives protobuf's message");
}

template <typename Row>
void CheckHandParseOfRow(absl::string_view bytes, google::protobuf::Arena* arena) {
  Row* row = google::protobuf::Arena::CreateMessage<Row>(arena);
  CheckHandParse(ParseRowForTesting(bytes, bytes.size(), row), *row, bytes);
}

void CheckHandParsers(absl::string_view bytes) {
  google::protobuf::Arena arena;
  auto* snap = google::protobuf::Arena::CreateMessage<v1::EngineSnapshot>(&arena);
  CheckHandParse(ParseSnapshotByHandForTesting(bytes, snap), *snap, bytes);
  if (bytes.size() > 4096) return;
  CheckHandParseOfRow<v1::Account>(bytes, &arena);
  CheckHandParseOfRow<v1::Deal>(bytes, &arena);
  CheckHandParseOfRow<v1::StageVisit>(bytes, &arena);
  CheckHandParseOfRow<v1::AccountAttribution>(bytes, &arena);
  CheckHandParseOfRow<v1::Attribution>(bytes, &arena);
  CheckHandParseOfRow<v1::Order>(bytes, &arena);
  CheckHandParseOfRow<v1::Invoice>(bytes, &arena);
  CheckHandParseOfRow<v1::Complaint>(bytes, &arena);
  CheckHandParseOfRow<v1::Money>(bytes, &arena);
}

void SnapshotRestore(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return;
  CheckHandParsers(View(data, size));
  auto engine = Engine::Restore(View(data, size));
  if (!engine.ok()) return;
  auto snap = (*engine)->Snapshot();
  Check(snap.ok(), "snapshot of a restored engine");
  auto again = Engine::Restore(*snap);
  Check(again.ok(), "a snapshot of a restored engine restores");
  Check(*(*again)->Snapshot() == *snap, "restore is exact");
  // The writer's hand serializers (rows with any field values, unknown
  // fields included) write what protobuf's serializer writes.
  auto state = std::make_unique<EngineState>();
  Check(ReadSnapshot(View(data, size), state.get()).ok(), "ReadSnapshot takes what Restore took");
  Check(WriteSnapshot(*state) == WriteSnapshotReference(*state),
        "the snapshot writer matches the reference writer");
}

void JournalRecovery(const uint8_t* data, size_t size) {
  if (size == 0 || size > kMaxInput) return;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 1) journal::FixChecksums(&bytes);
  auto engine = Seeded();
  journal::SegmentReader reader(bytes);
  journal::Record r;
  std::string why;
  uint64_t last = 0;
  while (reader.Next(&r, &why) == journal::ReadStatus::kRecord) {
    Check(r.offset < bytes.size() && r.payload.size() <= bytes.size(), "record within the data");
    if (ReplayRecord(r, engine.get()).ok()) last = r.seq;
  }
  Check(reader.offset() <= bytes.size(), "reader offset within the data");
  (void)last;
  uint64_t seq;
  absl::string_view payload;
  if (DecodeSnapshotFile("fuzz", bytes, &seq, &payload).ok()) {
    Engine::Restore(payload).status().IgnoreError();
  }
}

}  // namespace rapport::fuzz
