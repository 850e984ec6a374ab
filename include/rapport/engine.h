// Rapport's C++ API: the account-management engine.
//
// An Engine holds the state of one company: accounts, managers, teams, deals
// with their stage history, orders, invoices, complaints. Hosts feed it events
// (rapport/v1/event.proto) and read the lifecycle back.
//
// Thread-safety: one Engine may be shared by any number of threads. Writers
// (Ingest, IngestBatch, Advance) are serialized; readers (every const method)
// run concurrently with each other and see the state between two writes,
// never in the middle of one.
//
// Errors: every method that can fail returns absl::Status or absl::StatusOr;
// no exception leaves the API. A failed write changes nothing.
#ifndef RAPPORT_ENGINE_H_
#define RAPPORT_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "rapport/v1/config.pb.h"
#include "rapport/v1/entities.pb.h"
#include "rapport/v1/event.pb.h"
#include "rapport/v1/ingest.pb.h"
#include "rapport/v1/rules.pb.h"

namespace rapport {

// Explicit limits of the input; an event or batch beyond them is rejected
// with INVALID_ARGUMENT (RESOURCE_EXHAUSTED for the batch size).
inline constexpr size_t kMaxIdBytes = 128;
inline constexpr size_t kMaxTextBytes = 1024;
inline constexpr size_t kMaxSegmentsPerTeam = 64;
inline constexpr size_t kMaxBatchEvents = 1 << 20;
// Instants are microseconds since 1970-01-01T00:00:00Z in [kMinTimeUs,
// kMaxTimeUs): years 1970 through 9999.
inline constexpr int64_t kMinTimeUs = 0;
inline constexpr int64_t kMaxTimeUs = 253402300800000000;
inline constexpr int64_t kMicrosPerDay = 86400LL * 1000000;

enum class BatchMode {
  // All or nothing: the first bad event fails the batch, which changes
  // nothing; the error names its index.
  kAtomic,
  // Applies the good events; every rejected one is listed in the result with
  // its index and reason.
  kBestEffort,
};

struct IngestOptions {
  BatchMode mode = BatchMode::kAtomic;
};

class EngineState;

class Engine {
 public:
  // Creates an empty engine. Unset parts of `config` take the compiled-in
  // defaults (see DefaultConfig()).
  // Errors: INVALID_ARGUMENT naming the part of the config that is wrong.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const v1::EngineConfig& config = v1::EngineConfig());

  // Rebuilds an engine from the bytes of Snapshot(), exactly: its Snapshot()
  // gives the same bytes, and it continues as the original would.
  // Errors: INVALID_ARGUMENT (DATA_LOSS for unparseable bytes).
  static absl::StatusOr<std::unique_ptr<Engine>> Restore(
      absl::string_view snapshot_bytes);

  // The compiled-in defaults: the partner and client pipelines of SPEC §3.
  static const v1::EngineConfig& DefaultConfig();

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();

  // Ingests one event. A duplicate (same id, same content) is a no-op
  // reported in `duplicates`.
  // Errors: INVALID_ARGUMENT for a malformed field, NOT_FOUND for an unknown
  // reference, ALREADY_EXISTS for a conflict (same id, other content) or a new
  // entity whose id is taken, FAILED_PRECONDITION for a forbidden transition.
  // The message names the event id and the field.
  absl::StatusOr<v1::IngestResult> Ingest(const v1::Event& event);

  // Ingests events in order (see BatchMode). In atomic mode an error names the
  // index of the first bad event; in best-effort mode the status is OK and
  // rejected events are listed. At most kMaxBatchEvents events.
  absl::StatusOr<v1::IngestResult> IngestBatch(absl::Span<const v1::Event> events,
                                               IngestOptions options = {});
  // The same, over the events of a parsed rapport.v1.EventBatch.
  absl::StatusOr<v1::IngestResult> IngestBatch(const v1::EventBatch& batch,
                                               IngestOptions options = {});

  // Moves the engine's clock to `now_us` (microseconds): clients with no
  // order for the configured time churn. Returns the actions produced. A time
  // at or before the clock is a no-op.
  // Errors: INVALID_ARGUMENT for a time outside the valid range.
  absl::StatusOr<v1::ActionList> Advance(int64_t now_us);

  // Reads. Results are copies the caller owns.
  absl::StatusOr<v1::Account> GetAccount(absl::string_view account_id) const;
  absl::StatusOr<v1::Deal> GetDeal(absl::string_view deal_id) const;
  absl::StatusOr<v1::Order> GetOrder(absl::string_view order_id) const;
  absl::StatusOr<v1::Manager> GetManager(absl::string_view manager_id) const;
  absl::StatusOr<v1::Team> GetTeam(absl::string_view team_id) const;
  // Accounts with the status, in order of creation.
  std::vector<v1::Account> AccountsByStatus(v1::AccountStatus status) const;
  // Open and won deals per stage of every pipeline, in pipeline and stage
  // order (stages with no deals included); lost deals are not counted.
  std::vector<v1::StageCount> DealsByStage() const;
  // Deals neither lost nor in their pipeline's last stage whose time in the
  // current stage at `at_us` exceeds that stage's SLA, in order of creation.
  std::vector<v1::StuckDeal> StuckDeals(int64_t at_us) const;
  // Count of accounts per status, indexed by v1::AccountStatus.
  std::vector<int64_t> AccountStatusCounts() const;

  // Events accepted so far (duplicates not counted).
  int64_t events_accepted() const;
  // The latest Advance time (0 before any).
  int64_t clock_us() const;
  // The configuration in effect, defaults filled in.
  v1::EngineConfig config() const;

  // The whole state as deterministic protobuf bytes (rapport.v1.EngineSnapshot):
  // the same state always gives the same bytes.
  absl::StatusOr<std::string> Snapshot() const;

 private:
  explicit Engine(std::unique_ptr<EngineState> state);
  std::unique_ptr<EngineState> state_;
};

}  // namespace rapport

#endif  // RAPPORT_ENGINE_H_
