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
// no exception leaves the API. A failed write changes nothing, except after
// a failed journal fdatasync of a persistent engine (see SyncMode).
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
#include "rapport/v1/grading.pb.h"
#include "rapport/v1/ingest.pb.h"
#include "rapport/v1/kpi.pb.h"
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

// How a persistent engine (Engine::Open) makes a write durable before the
// write returns.
enum class SyncMode {
  // fdatasync of the journal before every write returns: an acknowledged
  // write survives a machine crash or power loss. The default. The
  // fdatasync runs on a thread of the engine's while the write is applied,
  // and the write returns (and readers see it) only once both are done.
  // If that fdatasync fails, the write fails with its error (UNAVAILABLE,
  // RESOURCE_EXHAUSTED, ...), but it may already be applied in memory, so
  // from then on the engine refuses every call until it is reopened: writes,
  // Checkpoint and every read that returns a status fail with
  // FAILED_PRECONDITION naming the fdatasync failure and saying to reopen;
  // the reads that cannot return a status (AccountsByStatus, DealsByStage,
  // StuckDeals, AccountStatusCounts, events_accepted, clock_us, config,
  // Outbox) answer empty (zero counts). No read shows the failed write.
  // Reopening gives every acknowledged write and not the failed one.
  kPerBatch,
  // Writers on several threads share one fdatasync: a write still returns
  // only once it is on disk, but the state shows it to readers a moment
  // before. If that fdatasync fails, the writers waiting on it get the error
  // and their writes stay applied in memory (not durable) and visible to
  // readers; the engine then refuses writes (reads go on) until reopened,
  // and reopening gives the durable state.
  kGroupCommit,
  // No fdatasync: a write is in the operating system's page cache when it
  // returns, which survives the process crashing (even SIGKILL) but NOT a
  // machine crash or power loss, after which recent writes may be missing
  // (never half there).
  kOff,
};

// Internal: the file-system interface (lib/storage/env.h); tests inject
// faults through it.
class Env;

struct OpenOptions {
  // How a write becomes durable, and what a failed fdatasync leaves (see
  // SyncMode: in per-batch mode the engine then refuses reads as well as
  // writes until reopened).
  SyncMode sync = SyncMode::kPerBatch;
  // The configuration of a NEW engine, used only when the directory holds
  // none yet (unset parts take the defaults). An existing directory keeps
  // the configuration it was created with, and this is ignored.
  v1::EngineConfig config;
  // Damage in the middle of the journal is an error (DATA_LOSS naming the
  // file and offset) unless this is set; then Open stops at the last good
  // record, snapshots that state, and sets the damaged journal files aside
  // (renamed to *.corrupt) — the writes after the damage are lost.
  bool point_in_time_recovery = false;
  // Snapshot policy: a write that brings the journal since the last
  // snapshot past this many bytes then takes a snapshot (Checkpoint) before
  // returning, which bounds both disk use and the time Open spends replaying.
  // 0: only explicit Checkpoint() calls.
  int64_t snapshot_every_bytes = int64_t{256} << 20;
  // The journal continues in a new file after this many bytes.
  int64_t segment_bytes = int64_t{64} << 20;
  // Internal (tests): file-system operations; nullptr is the real file
  // system. Not owned; must outlive the engine.
  Env* env = nullptr;
};

struct EngineState;
class Store;

class Engine {
 public:
  // Creates an empty engine. Unset parts of `config` take the compiled-in
  // defaults (see DefaultConfig()); an absent rule_set is the default
  // playbook, a rule set with no rules means no regulations.
  // Errors: INVALID_ARGUMENT naming the part of the config that is wrong.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const v1::EngineConfig& config = v1::EngineConfig());

  // Rebuilds an engine from the bytes of Snapshot(), exactly: its Snapshot()
  // gives the same bytes, and it continues as the original would.
  // Threads: from 4 MiB of bytes on a machine with two or more cores, the
  // call parses and loads on the caller's thread and one thread of its own
  // (joined before it returns); the result is the same either way.
  // Errors: INVALID_ARGUMENT (DATA_LOSS for unparseable bytes).
  static absl::StatusOr<std::unique_ptr<Engine>> Restore(absl::string_view snapshot_bytes);

  // Opens the persistent engine in directory `dir` (created if missing, its
  // parent must exist), or creates one there with `options.config`. Every
  // write (Ingest, IngestBatch, Advance) is appended to a journal in `dir`
  // before it is applied and returns only once the journal holds it (see
  // SyncMode); a write the journal cannot take fails and changes nothing.
  // Open loads the newest valid snapshot and replays the journal after it,
  // so the engine continues exactly where the last acknowledged write left
  // it: timers and the outbox included, nothing fires twice. A write cut
  // short by a crash (never acknowledged) is dropped cleanly.
  // The directory is locked (flock on dir/LOCK) while the engine lives.
  // Errors: FAILED_PRECONDITION if another engine (in any process) has the
  // directory open; DATA_LOSS naming the file and offset of damage in the
  // middle of the journal (see OpenOptions::point_in_time_recovery) or a
  // damaged snapshot; the file system's errors (RESOURCE_EXHAUSTED for a full
  // disk, UNAVAILABLE for I/O errors, PERMISSION_DENIED) naming the path.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const std::string& dir,
                                                      const OpenOptions& options = {});

  // Persistent engines only: writes a snapshot of the state (temp file,
  // fsync, rename, fsync of the directory) and removes the journal files and
  // snapshots it makes redundant. Writes wait only while the state is
  // captured, not while the file is written.
  // Errors: FAILED_PRECONDITION for an engine that is not persistent or
  // whose journal failed; the file system's errors naming the path (the
  // engine stays usable and its journal intact).
  absl::Status Checkpoint();

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
  // order for the configured time churn, and the regulations' timers due at
  // or before `now_us` fire, each exactly once, in time order (interleaved
  // with the churns). Returns the actions produced. A time at or before the
  // clock is a no-op.
  // Errors: INVALID_ARGUMENT for a time outside the valid range.
  absl::StatusOr<v1::ActionList> Advance(int64_t now_us);

  // Advance, writing the actions produced into `*actions` (cleared first)
  // instead of a new list. The list's storage is reused: a host that keeps
  // one list across calls allocates nothing per action once it has grown,
  // which roughly halves the cost of a fired timer. `actions` is the
  // caller's and must not be null. Errors: as Advance; then `*actions` is
  // empty and nothing changed.
  absl::Status AdvanceInto(int64_t now_us, v1::ActionList* actions);

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
  // OK, or FAILED_PRECONDITION (naming the fdatasync failure) once a
  // persistent engine refuses every call after a failed per-batch fdatasync
  // (see SyncMode): what the reads above, which return no status, then
  // answer empty for. Bindings check it to report the error instead.
  // Thread-safety: a reader (shared lock).
  absl::Status Usable() const;

  // KPIs of SPEC §5 over the period [start_us, end_us) of `query`, by bucket
  // (in the query's IANA time zone, default UTC) and group, with ratios null
  // for a zero denominator and money exact per currency. A late event counts
  // in its own period; attribution follows each event's occurred_at.
  // Thread-safety: a reader (shared lock); runs alongside other readers.
  // Errors: INVALID_ARGUMENT for start_us >= end_us or a period outside
  // [0, kMaxTimeUs], as_of_us outside it, an unknown enum, an unknown time
  // zone, or more than 100000 buckets; OUT_OF_RANGE when a money sum
  // overflows int64 (the message names the KPI and the currency).
  absl::StatusOr<v1::KpiReport> Kpis(const v1::KpiQuery& query) const;
  // The same into `*report`, reusing the rows, lines and strings it holds: a
  // host refreshing a dashboard keeps one report, and a query of the cells
  // (lib/kpi/report.h) then allocates nothing. Same errors; on error
  // `*report` is unchanged.
  absl::Status KpisInto(const v1::KpiQuery& query, v1::KpiReport* report) const;

  // Grades of every manager at `as_of_us` under the config's grade policy
  // (SPEC §6): current and eligible grade (never skipping one), each unmet
  // requirement with actual vs required, the bonus multiplier, the hunter
  // share and its drift flag; ABC tiers of every account over the policy's
  // window; and every assignment violation (an account above its owner's
  // grade, a manager over the account limit) with a suggested owner.
  // Thread-safety: a reader (shared lock).
  // Errors: INVALID_ARGUMENT for as_of_us outside [0, kMaxTimeUs);
  // OUT_OF_RANGE when a money sum overflows.
  absl::StatusOr<v1::GradeEvaluation> Grades(int64_t as_of_us) const;

  // The same query's partial result over the accounts this engine holds:
  // sums and counts before any ratio, for MergeKpiPartials. Same errors.
  absl::StatusOr<v1::KpiPartial> KpiPartial(const v1::KpiQuery& query) const;

  // Merges partials of engines holding disjoint sets of accounts (each
  // engine with the managers and teams it needs) into the report one engine
  // holding all of them would give. Thread-safe (touches no engine).
  // Errors: INVALID_ARGUMENT for an empty span, partials of different
  // queries, or an account present in two partials; OUT_OF_RANGE for a money
  // sum overflow (naming the KPI and currency).
  static absl::StatusOr<v1::KpiReport> MergeKpiPartials(absl::Span<const v1::KpiPartial> partials);

  // Regulations (SPEC §4). Ingest, IngestBatch and Advance return the actions
  // they produced (IngestResult.actions, the ActionList); every action also
  // waits in the outbox until the host acknowledges it. The engine carries
  // nothing out itself: for a MOVE_STAGE action the host moves the deal and
  // reports it as a deal-stage-changed event; a CREATE_TASK action stays an
  // open task until a task-completed event names its action_id.

  // The pending actions (produced, not yet acknowledged, tasks not yet
  // completed), in the order they were produced. A copy the caller owns.
  // Thread-safety: a reader (shared lock).
  v1::ActionList Outbox() const;

  // Marks the actions acknowledged: they leave the outbox (a task stays
  // open until completed). Acknowledging an action again is a no-op.
  // A persistent engine journals the acknowledgement (durably, as a write)
  // before it takes effect, so an acknowledged action stays out of the
  // outbox after a reopen.
  // Thread-safety: a writer. Errors: NOT_FOUND naming the first unknown id,
  // INVALID_ARGUMENT naming a repeated one; a persistent engine's journal
  // errors (as for IngestBatch); then nothing changes.
  absl::Status Acknowledge(absl::Span<const std::string> action_ids);

  // Parses a rule set (rapport.v1.RuleSet) from protobuf text format, or from
  // protobuf's canonical JSON when `text` starts (after white space) with
  // '{', and validates it against `pipelines` (nullptr: the default
  // pipelines), as Create would. Pass the result in EngineConfig.rule_set.
  // Thread-safe (touches no engine).
  // Errors: INVALID_ARGUMENT with the parser's position, or naming the rule
  // id and the field that is wrong (unknown stage or template, an assignee
  // that cannot exist, a move-stage loop that would never settle).
  static absl::StatusOr<v1::RuleSet> LoadRuleSet(absl::string_view text,
                                                 const v1::PipelineSet* pipelines = nullptr);

  // The whole state as deterministic protobuf bytes (rapport.v1.EngineSnapshot):
  // the same state always gives the same bytes. Thread-safety: a reader;
  // a large state (about 4 MiB of bytes or more, two or more cores) is
  // written on the caller's thread and one thread of its own, joined before
  // the call returns.
  absl::StatusOr<std::string> Snapshot() const;

 private:
  explicit Engine(std::unique_ptr<EngineState> state);
  std::unique_ptr<EngineState> state_;
  // Persistent engines only (Open): the journal and snapshots; null otherwise.
  std::unique_ptr<Store> store_;
  // After a journaled write, without the state lock: waits for a group
  // commit, then applies the snapshot policy (lib/storage/persistent_engine.cc).
  absl::Status FinishWrite(uint64_t seq);
};

}  // namespace rapport

#endif  // RAPPORT_ENGINE_H_
