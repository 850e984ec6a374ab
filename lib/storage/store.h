// A persistent engine's directory: the journal (segment files of records,
// see journal.h) and snapshots, with the rules that make them crash-safe.
//
// Layout of the directory:
//   LOCK                          flock'ed while an engine has it open
//   snapshot-<seq>.snap           the state after record <seq> (20 digits)
//   journal-<first seq>.log       a segment; records <first seq>, +1, ...
//   *.tmp                         a snapshot being written (removed on open)
//   *.corrupt                     segments set aside by point-in-time recovery
//
// A snapshot file is "RPSNAP01", the sequence number it covers (8 bytes LE),
// the payload length (8 bytes LE), a masked CRC-32C of those 16 bytes and the
// payload (4 bytes LE), then the payload (rapport.v1.EngineSnapshot bytes).
// It is written to a temp file, fsync'ed, renamed into place and the
// directory fsync'ed; only then are the segments it covers removed. A crash at
// any step leaves either the old snapshot with its journal or the new one.
//
// Thread-safety: Append* are called with the engine's writer lock held (which
// orders the records as the engine applied them). In per-batch mode a sync
// thread owned by the Store runs each record's fdatasync while the writer
// applies the write, and the writer waits for it (SyncBeforeRelease) before
// it releases the engine's lock. In group-commit mode AwaitDurable runs
// without the engine's lock, so that writers wait for one shared fdatasync
// together. Checkpoints are serialized by checkpoint_mu().
#ifndef RAPPORT_LIB_STORAGE_STORE_H_
#define RAPPORT_LIB_STORAGE_STORE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/storage/env.h"
#include "lib/storage/journal.h"
#include "rapport/engine.h"

namespace rapport {

// Snapshot file framing, exposed for the tests and the fuzzer.
std::string EncodeSnapshotFile(uint64_t seq, absl::string_view payload);
// The checksum of a large file is computed on two threads (see
// lib/util/parallel.h). Errors: DATA_LOSS naming `name` and what is wrong.
absl::Status DecodeSnapshotFile(absl::string_view name, absl::string_view file, uint64_t* seq,
                                absl::string_view* payload);

class Store {
 public:
  // How Open builds the engine; the Store knows nothing of its state.
  struct Hooks {
    // A new directory: create the engine from the options' config.
    std::function<absl::Status()> create;
    // Load a snapshot's payload into a fresh engine.
    std::function<absl::Status(absl::string_view payload)> load_snapshot;
    // Apply one journal record after the snapshot.
    std::function<absl::Status(const journal::Record& record)> replay;
    // The engine's state bytes now (for the first snapshot of a new
    // directory and after point-in-time recovery).
    std::function<absl::StatusOr<std::string>()> snapshot;
  };

  // What recovery found, for tests and tools.
  struct RecoveryInfo {
    bool created = false;
    uint64_t snapshot_seq = 0;
    uint64_t records_replayed = 0;
    uint64_t last_seq = 0;
    // A torn tail that was cut off: the file and where it was cut.
    std::string torn_file;
    uint64_t torn_offset = 0;
    // Point-in-time recovery stopped here (empty if it did not stop).
    std::string stopped_at;
  };

  // Locks `dir`, loads the newest valid snapshot through `hooks` and replays
  // the journal after it, then opens a fresh segment for appends.
  // Errors: FAILED_PRECONDITION if another engine holds the directory;
  // DATA_LOSS naming the file and offset of damage (unless point-in-time
  // recovery is on); the Env's errors for I/O.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir,
                                                     const OpenOptions& options,
                                                     const Hooks& hooks);
  ~Store();

  // Journals one write. Returns its sequence number (0 when there was nothing
  // to journal). The record is written (not yet durable) when this returns:
  // in per-batch mode its fdatasync is under way on the sync thread, and the
  // caller applies the write, then calls SyncBeforeRelease(seq) before it
  // releases the engine's lock; in group-commit mode call AwaitDurable(seq)
  // after releasing it. Errors: the Env's (RESOURCE_EXHAUSTED for ENOSPC,
  // UNAVAILABLE for EIO) with the record cut off again; FAILED_PRECONDITION
  // after an earlier failed fdatasync (the handle refuses writes until the
  // directory is reopened).
  absl::StatusOr<uint64_t> AppendEvents(absl::Span<const v1::Event* const> events);
  absl::StatusOr<uint64_t> AppendAdvance(int64_t now_us);
  // AppendAdvance and AwaitDurable at once, before the clock moves (the
  // caller keeps the engine's lock: clock moves are rare and small).
  absl::Status JournalAdvance(int64_t now_us);
  // Journals acknowledged action ids and waits until they are durable (the
  // caller keeps the engine's lock, as for Advance).
  absl::Status JournalAcknowledge(absl::Span<const std::string> action_ids);
  // Waits until record `seq` is durable (per-batch and group-commit modes;
  // kOff returns at once). Errors: the failed fdatasync's code, saying the
  // engine refuses writes (and, in per-batch mode, reads) until reopened.
  absl::Status AwaitDurable(uint64_t seq);
  // Per-batch mode: AwaitDurable(seq), called after the write was applied
  // and BEFORE the engine's writer lock is released, so that no reader ever
  // sees a write that is not durable yet. Other modes: nothing.
  absl::Status SyncBeforeRelease(uint64_t seq);

  // OK unless a journal fdatasync failed in per-batch mode. The failed write
  // may be applied in memory although its caller was told it failed (its
  // fdatasync ran while it was applied), so from then on the engine answers
  // every call, reads included, with this FAILED_PRECONDITION until it is
  // reopened. Call with the engine's lock held (either kind): the flag is set
  // while a writer holds it.
  absl::Status CheckUsable() const {
    if (!refuse_all_.load(std::memory_order_relaxed)) return absl::OkStatus();
    return Refused();
  }

  // A checkpoint in two steps. Begin runs under the engine's writer lock,
  // right after the caller captured the state: it starts a new segment so
  // that every earlier record is covered, and returns the last sequence
  // number. Finish runs without the engine's lock: it writes the snapshot file
  // and drops the covered segments and older snapshots.
  std::mutex* checkpoint_mu() { return &checkpoint_mu_; }
  absl::StatusOr<uint64_t> BeginCheckpoint();
  absl::Status FinishCheckpoint(uint64_t seq, absl::string_view snapshot_bytes);
  // The snapshot policy: journal bytes since the last snapshot exceed
  // OpenOptions::snapshot_every_bytes.
  bool WantsCheckpoint() const;

  const RecoveryInfo& recovery() const { return recovery_; }
  const std::string& dir() const { return dir_; }

 private:
  Store(Env* env, std::string dir, const OpenOptions& options);
  absl::StatusOr<uint64_t> Append(const std::function<void(uint64_t, std::string*)>& encode);
  // Per-batch mode: the body of sync_thread_.
  void SyncLoop();
  // One fdatasync of the open segment, for the sync thread and group
  // commit's leader alike: makes records up to `target` durable, with mu_
  // released around it (syncing_ keeps anyone from starting another or
  // rolling the segment meanwhile), then records the result and wakes the
  // waiters. A failure is sticky (failed_); with `cut_on_failure` (per-batch
  // mode, see SyncLoop) it also cuts the segment there and refuses reads.
  // `l` holds mu_.
  void SyncSegmentLocked(std::unique_lock<std::mutex>& l, uint64_t target,
                         std::optional<uint64_t> cut_on_failure) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Refused() const;
  absl::Status OpenSegmentLocked(uint64_t first_seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `l` holds mu_ (waits on it while the sync thread works).
  absl::Status RollLocked(std::unique_lock<std::mutex>& l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteSnapshotFile(uint64_t seq, absl::string_view payload);
  // Removes segments whose records are all <= seq (but not the open one) and
  // snapshots older than seq.
  absl::Status DropCovered(uint64_t seq);
  std::string SegmentPath(uint64_t first_seq) const;
  std::string SnapshotPath(uint64_t seq) const;

  Env* const env_;
  const std::string dir_;
  const SyncMode sync_;
  const uint64_t segment_bytes_;
  const uint64_t snapshot_every_bytes_;
  std::unique_ptr<FileLock> lock_;
  RecoveryInfo recovery_;

  // std::mutex rather than absl::Mutex: Debian's Abseil is built without
  // ThreadSanitizer's annotations, so under TSan an absl::Mutex orders
  // nothing, and the sync thread and the writers share these fields (see
  // lib/util/shared_mutex.h). The annotations below still say what guards
  // what.
  std::mutex checkpoint_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unique_ptr<WritableFile> segment_ ABSL_GUARDED_BY(mu_);
  uint64_t segment_first_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t segment_size_ ABSL_GUARDED_BY(mu_) = 0;
  // First sequence numbers of the segment files, ascending (the open one last).
  std::vector<uint64_t> segments_ ABSL_GUARDED_BY(mu_);
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t synced_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool syncing_ ABSL_GUARDED_BY(mu_) = false;
  // Sticky: set by a failed fdatasync (or a failed write we could not undo).
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  uint64_t bytes_since_snapshot_ ABSL_GUARDED_BY(mu_) = 0;
  std::string buffer_ ABSL_GUARDED_BY(mu_);

  // Per-batch mode: the last record handed to the sync thread, and the
  // segment's size before it (where a failed fdatasync cuts the file).
  uint64_t sync_requested_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sync_cut_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Wakes the sync thread (cv_ wakes the writers waiting on it).
  std::condition_variable work_cv_;
  // Set (once, under mu_) by a failed fdatasync in per-batch mode; read by
  // CheckUsable without mu_, under the engine's lock.
  std::atomic<bool> refuse_all_{false};
  // Last member: started when everything it touches is constructed.
  std::thread sync_thread_;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_STORAGE_STORE_H_
