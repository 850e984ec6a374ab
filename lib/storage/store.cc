#include "lib/storage/store.h"

#include <algorithm>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/storage/crc32c.h"
#include "lib/util/parallel.h"

namespace rapport {
namespace {

constexpr absl::string_view kSnapshotMagic = "RPSNAP01";
constexpr size_t kSnapshotHeader = 28;
constexpr absl::string_view kSegmentPrefix = "journal-";
constexpr absl::string_view kSegmentSuffix = ".log";
constexpr absl::string_view kSnapshotPrefix = "snapshot-";
constexpr absl::string_view kSnapshotSuffix = ".snap";
constexpr absl::string_view kTempSuffix = ".tmp";
constexpr absl::string_view kCorruptSuffix = ".corrupt";
// Larger write buffers are released after use rather than kept for the
// engine's lifetime.
constexpr size_t kKeepBufferBytes = 16 << 20;

std::string Numbered(absl::string_view prefix, uint64_t n, absl::string_view suffix) {
  char digits[24];
  std::snprintf(digits, sizeof(digits), "%020" PRIu64, n);
  return absl::StrCat(prefix, digits, suffix);
}

// Parses "<prefix><20 digits><suffix>".
bool ParseNumbered(absl::string_view name, absl::string_view prefix, absl::string_view suffix,
                   uint64_t* n) {
  if (name.size() != prefix.size() + 20 + suffix.size() || !absl::StartsWith(name, prefix) ||
      !absl::EndsWith(name, suffix)) {
    return false;
  }
  absl::string_view digits = name.substr(prefix.size(), 20);
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(digits, n);
}

void PutLE64(std::string* s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLE(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// The CRC-32C of a string from the CRCs of its two halves, computed at once
// (as zlib's crc32_combine, with the Castagnoli polynomial): in the
// reflected representation, bit 31 - k of a word is the coefficient of x^k.
constexpr uint32_t kCrcPoly = 0x82f63b78u;

// a * b modulo the polynomial; `a` must not be zero.
uint32_t MulModPoly(uint32_t a, uint32_t b) {
  uint32_t m = uint32_t{1} << 31;
  uint32_t p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = (b & 1) ? (b >> 1) ^ kCrcPoly : b >> 1;
  }
  return p;
}

// The CRC of A + B from crc_a = CRC(A), crc_b = CRC(B) and |B|: CRC(A)
// moved past |B| zero bytes (times x^(8 |B|)), plus CRC(B).
uint32_t CombineCrc(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
  uint32_t shift = uint32_t{1} << 31;   // x^0
  uint32_t square = uint32_t{1} << 23;  // x^8, x^16, x^32, ...: x^(8 * 2^i)
  for (uint64_t n = len_b; n != 0; n >>= 1) {
    if (n & 1) shift = MulModPoly(square, shift);
    square = MulModPoly(square, square);
  }
  return MulModPoly(shift, crc_a) ^ crc_b;
}

// Extend(crc, data, n), on two threads when n is large: the snapshot's CRC
// is a pass over its ~800 MB at 10 M events before the restore can begin.
uint32_t ExtendCrc(uint32_t crc, const char* data, size_t n) {
  const size_t half = n / 2;
  uint32_t tail = 0;
  RunBoth(
      WorthParallel(n), [&] { tail = crc32c::Value(data + half, n - half); },
      [&] { crc = crc32c::Extend(crc, data, half); });
  return CombineCrc(crc, tail, n - half);
}

// Parses a segment's events records on a second thread while Open replays
// the ones before: the parse is a tenth or so of a record's replay, off the
// critical path. The helper reads the segment exactly as Open's reader does,
// so its n-th parse is of the n-th events record Open reads; it stays up to
// 1 MB of payload (64 records) ahead, two records of 10 000 events, enough
// to keep the replay fed, and parses nothing the snapshot covers.
class EventsReadAhead {
 public:
  EventsReadAhead(absl::string_view data, uint64_t snap_seq) : data_(data), snap_seq_(snap_seq) {}

  // The helper thread's body.
  void Run() {
    journal::SegmentReader reader(data_);
    journal::Record r;
    std::string why;
    while (reader.Next(&r, &why) == journal::ReadStatus::kRecord) {
      if (r.kind != journal::RecordKind::kEvents) continue;
      std::unique_ptr<journal::ParsedEvents> parsed;
      if (r.seq > snap_seq_) parsed = journal::ParseEvents(r.payload);
      std::unique_lock<std::mutex> l(mu_);
      // Waits until the replay drained half the queue: one wake-up per
      // several records, not one per record.
      if (queued_bytes_ >= kAheadBytes || queue_.size() >= kAheadRecords) {
        helper_waits_ = true;
        cv_.wait(l, [&] {
          return stop_ || (queued_bytes_ < kAheadBytes / 2 && queue_.size() < kAheadRecords / 2);
        });
        helper_waits_ = false;
      }
      if (stop_) return;
      queued_bytes_ += r.payload.size();
      queue_.push_back(Item{std::move(parsed), r.payload.size()});
      if (replay_waits_) cv_.notify_all();
    }
    std::unique_lock<std::mutex> l(mu_);
    done_ = true;
    cv_.notify_all();
  }

  // The parse of the next events record, in the order Open reads them; null
  // when the helper did not parse it (Open then parses it itself).
  std::unique_ptr<journal::ParsedEvents> Take() {
    std::unique_lock<std::mutex> l(mu_);
    replay_waits_ = true;
    cv_.wait(l, [&] { return !queue_.empty() || done_; });
    replay_waits_ = false;
    if (queue_.empty()) return nullptr;
    Item item = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= item.bytes;
    if (helper_waits_) cv_.notify_all();
    return std::move(item.parsed);
  }

  // Replay ended (possibly early, at damage): the helper stops.
  void Stop() {
    std::unique_lock<std::mutex> l(mu_);
    stop_ = true;
    cv_.notify_all();
  }

 private:
  static constexpr size_t kAheadBytes = size_t{1} << 20;
  static constexpr size_t kAheadRecords = 64;
  struct Item {
    std::unique_ptr<journal::ParsedEvents> parsed;
    size_t bytes;
  };
  const absl::string_view data_;
  const uint64_t snap_seq_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  size_t queued_bytes_ = 0;
  bool helper_waits_ = false;
  bool replay_waits_ = false;
  bool done_ = false;
  bool stop_ = false;
};

absl::Status WithContext(const absl::Status& st, absl::string_view context) {
  return absl::Status(st.code(), absl::StrCat(context, ": ", st.message()));
}

}  // namespace

std::string EncodeSnapshotFile(uint64_t seq, absl::string_view payload) {
  std::string out;
  out.reserve(kSnapshotHeader + payload.size());
  out.append(kSnapshotMagic.data(), kSnapshotMagic.size());
  PutLE64(&out, seq);
  PutLE64(&out, payload.size());
  uint32_t crc = crc32c::Value(out.data() + 8, 16);
  crc = crc32c::Extend(crc, payload.data(), payload.size());
  const uint32_t masked = crc32c::Mask(crc);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(masked >> (8 * i)));
  out.append(payload.data(), payload.size());
  return out;
}

absl::Status DecodeSnapshotFile(absl::string_view name, absl::string_view file, uint64_t* seq,
                                absl::string_view* payload) {
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("snapshot file '", name, "' is damaged: ", why));
  };
  if (file.size() < kSnapshotHeader) return bad("shorter than its header");
  if (file.substr(0, 8) != kSnapshotMagic) return bad("wrong magic");
  const uint64_t n = GetLE(file.data() + 16, 8);
  if (n != file.size() - kSnapshotHeader) {
    return bad(absl::StrCat("header says ", n, " payload bytes, the file has ",
                            file.size() - kSnapshotHeader));
  }
  uint32_t crc = crc32c::Value(file.data() + 8, 16);
  crc = ExtendCrc(crc, file.data() + kSnapshotHeader, n);
  if (crc32c::Unmask(static_cast<uint32_t>(GetLE(file.data() + 24, 4))) != crc) {
    return bad("checksum mismatch");
  }
  *seq = GetLE(file.data() + 8, 8);
  *payload = file.substr(kSnapshotHeader);
  return absl::OkStatus();
}

Store::Store(Env* env, std::string dir, const OpenOptions& options)
    : env_(env),
      dir_(std::move(dir)),
      sync_(options.sync),
      segment_bytes_(options.segment_bytes > 0 ? static_cast<uint64_t>(options.segment_bytes)
                                               : uint64_t{64} << 20),
      snapshot_every_bytes_(options.snapshot_every_bytes > 0
                                ? static_cast<uint64_t>(options.snapshot_every_bytes)
                                : 0) {
  // One thread for the store's lifetime rather than one per batch: a thread
  // start costs about as much as a small batch's apply.
  if (sync_ == SyncMode::kPerBatch) sync_thread_ = std::thread([this] { SyncLoop(); });
}

Store::~Store() {
  {
    std::unique_lock<std::mutex> l(mu_);
    stop_ = true;
    work_cv_.notify_one();
  }
  if (sync_thread_.joinable()) sync_thread_.join();
  std::unique_lock<std::mutex> l(mu_);
  while (syncing_) cv_.wait(l);
  if (segment_ != nullptr) segment_->Close().IgnoreError();
}

void Store::SyncLoop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    // Nothing is left to sync once a sync failed: Append refuses from then on.
    const bool work = sync_requested_ > synced_seq_ && failed_.ok();
    if (!work) {
      if (stop_) return;
      work_cv_.wait(l);
      continue;
    }
    SyncSegmentLocked(l, sync_requested_, sync_cut_);
  }
}

void Store::SyncSegmentLocked(std::unique_lock<std::mutex>& l, uint64_t target,
                              std::optional<uint64_t> cut_on_failure) {
  syncing_ = true;
  WritableFile* file = segment_.get();  // RollLocked waits for syncing_ to clear
  l.unlock();
  absl::Status st = file->Sync();
  l.lock();
  syncing_ = false;
  if (st.ok()) {
    synced_seq_ = std::max(synced_seq_, target);
  } else {
    failed_ = st;
    if (cut_on_failure.has_value()) {
      // After a failed fdatasync the kernel may have dropped the dirty pages
      // and cleared the error: nothing written since can be trusted until
      // recovery reads the file again. Cut the record so that a reopen does
      // not resurrect a write the caller is told failed (best effort). The
      // writer has applied it meanwhile, hence refuse_all_.
      refuse_all_.store(true, std::memory_order_relaxed);
      file->Truncate(*cut_on_failure).IgnoreError();
    }
  }
  cv_.notify_all();
}

absl::Status Store::Refused() const {
  std::unique_lock<std::mutex> l(mu_);
  return absl::FailedPreconditionError(absl::StrCat(
      "the journal in '", dir_, "' failed its fdatasync (", failed_.message(),
      "): the engine may hold a write that is not durable, so it refuses reads and writes; "
      "reopen the engine (Engine::Open) to continue from the durable state"));
}

std::string Store::SegmentPath(uint64_t first_seq) const {
  return JoinPath(dir_, Numbered(kSegmentPrefix, first_seq, kSegmentSuffix));
}
std::string Store::SnapshotPath(uint64_t seq) const {
  return JoinPath(dir_, Numbered(kSnapshotPrefix, seq, kSnapshotSuffix));
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir,
                                                   const OpenOptions& options, const Hooks& hooks) {
  if (dir.empty()) return absl::InvalidArgumentError("open: the directory name is empty");
  Env* env = options.env != nullptr ? options.env : Env::Default();
  std::unique_ptr<Store> store(new Store(env, dir, options));
  RecoveryInfo& info = store->recovery_;
  if (absl::Status st = env->CreateDir(dir); !st.ok()) return st;
  absl::StatusOr<std::unique_ptr<FileLock>> lock = env->LockFile(JoinPath(dir, "LOCK"));
  if (!lock.ok()) return lock.status();
  store->lock_ = *std::move(lock);

  absl::StatusOr<std::vector<std::string>> names = env->ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<uint64_t> snapshots;
  std::vector<uint64_t> segments;
  for (const std::string& name : *names) {
    uint64_t n;
    if (absl::EndsWith(name, kTempSuffix)) {
      // A snapshot whose write a crash interrupted: never renamed, never used.
      if (absl::Status st = env->RemoveFile(JoinPath(dir, name)); !st.ok()) return st;
    } else if (ParseNumbered(name, kSnapshotPrefix, kSnapshotSuffix, &n)) {
      snapshots.push_back(n);
    } else if (ParseNumbered(name, kSegmentPrefix, kSegmentSuffix, &n)) {
      segments.push_back(n);
    }
  }
  std::sort(snapshots.begin(), snapshots.end());
  std::sort(segments.begin(), segments.end());

  // store->mu_ is taken only around its fields: the hooks take the engine's
  // lock, which writers take before mu_ (and no one else sees the store yet).
  if (snapshots.empty()) {
    if (!segments.empty()) {
      return absl::DataLossError(
          absl::StrCat("'", dir, "' has journal files but no snapshot: ", "the snapshot was lost"));
    }
    // A new directory: the first snapshot records the config, so that the
    // journal never has to.
    if (absl::Status st = hooks.create(); !st.ok()) return st;
    absl::StatusOr<std::string> bytes = hooks.snapshot();
    if (!bytes.ok()) return bytes.status();
    if (absl::Status st = store->WriteSnapshotFile(0, *bytes); !st.ok()) return st;
    info.created = true;
    std::unique_lock<std::mutex> l(store->mu_);
    if (absl::Status st = store->OpenSegmentLocked(1); !st.ok()) return st;
    return store;
  }

  // The newest snapshot that checks out and that the journal continues.
  absl::Status first_error;
  FileContents contents;
  uint64_t snap_seq = 0;
  bool loaded = false;
  for (auto it = snapshots.rbegin(); it != snapshots.rend() && !loaded; ++it) {
    const std::string path = store->SnapshotPath(*it);
    absl::Status st = env->ReadFile(path, &contents);
    absl::string_view payload;
    uint64_t seq = 0;
    if (st.ok()) st = DecodeSnapshotFile(path, contents.view(), &seq, &payload);
    if (st.ok() && seq != *it) {
      st = absl::DataLossError(absl::StrCat("snapshot file '", path, "' covers record ", seq,
                                            ", not the one its name says"));
    }
    if (st.ok() && !segments.empty() && segments.front() > seq + 1) {
      st = absl::DataLossError(absl::StrCat("snapshot file '", path, "' covers records to ", seq,
                                            " but the journal starts at ", segments.front()));
    }
    if (st.ok()) {
      st = hooks.load_snapshot(payload);
      if (!st.ok()) return WithContext(st, absl::StrCat("snapshot file '", path, "'"));
      snap_seq = seq;
      loaded = true;
    } else if (first_error.ok()) {
      first_error = st;
    }
  }
  if (!loaded) return first_error;
  contents.Clear();
  info.snapshot_seq = snap_seq;

  // Replay. Segments wholly before the snapshot are skipped unread.
  uint64_t last = snap_seq;
  uint64_t prev = 0;  // the last record read (0: none yet)
  size_t stop_segment = segments.size();
  uint64_t bytes_after = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i + 1 < segments.size() && segments[i + 1] <= snap_seq + 1) continue;
    const std::string path = store->SegmentPath(segments[i]);
    FileContents data;
    if (absl::Status st = env->ReadFile(path, &data); !st.ok()) return st;
    journal::SegmentReader reader(data.view());
    journal::Record r;
    std::string why;
    bool first = true;
    bool corrupt = false;
    EventsReadAhead ahead(data.view(), snap_seq);
    RunBeside(
        WorthParallel(data.size()), [&] { ahead.Run(); },
        [&](bool read_ahead) {
          for (;;) {
            journal::ReadStatus rs = reader.Next(&r, &why);
            std::unique_ptr<journal::ParsedEvents> parsed;
            r.events = nullptr;
            if (read_ahead && rs == journal::ReadStatus::kRecord &&
                r.kind == journal::RecordKind::kEvents) {
              parsed = ahead.Take();
              if (parsed != nullptr) r.events = parsed->batch;
            }
            if (rs == journal::ReadStatus::kEnd) break;
            if (rs == journal::ReadStatus::kTorn) {
              if (i + 1 == segments.size()) {
                info.torn_file = path;
                info.torn_offset = reader.offset();
                break;
              }
              why = absl::StrCat(why, ", in a segment that is not the last");
              corrupt = true;
            } else if (rs == journal::ReadStatus::kCorrupt) {
              corrupt = true;
            } else if (first && r.seq != segments[i]) {
              why = absl::StrCat("the first record is number ", r.seq, " in a file named for ",
                                 segments[i]);
              corrupt = true;
            } else if (prev != 0 && r.seq != prev + 1) {
              why = absl::StrCat("record number ", r.seq, " follows number ", prev);
              corrupt = true;
            } else if (r.seq > snap_seq) {
              if (r.seq != last + 1) {
                why = absl::StrCat("record number ", r.seq, " follows the snapshot at ", last);
                corrupt = true;
              } else if (absl::Status st = hooks.replay(r); !st.ok()) {
                why = absl::StrCat("record number ", r.seq, " does not replay: ", st.message());
                corrupt = true;
              } else {
                last = r.seq;
                ++info.records_replayed;
              }
            }
            if (corrupt) break;
            prev = r.seq;
            first = false;
          }
          if (read_ahead) ahead.Stop();
        });
    if (corrupt) {
      const uint64_t offset = reader.offset();
      if (!options.point_in_time_recovery) {
        return absl::DataLossError(
            absl::StrCat("journal file '", path, "' is damaged at offset ", offset, ": ", why,
                         ". The last good record is number ", last,
                         "; open with point-in-time recovery to continue from there"));
      }
      info.stopped_at = absl::StrCat(path, " at offset ", offset, ": ", why);
      stop_segment = i;
      break;
    }
    bytes_after += info.torn_file == path ? info.torn_offset : data.size();
  }
  info.last_seq = last;

  if (!info.torn_file.empty()) {
    // Appends go to a new segment, but the cut keeps this one from looking
    // damaged (a torn record in a segment that is not the last) next time.
    if (absl::Status st = env->TruncateFile(info.torn_file, info.torn_offset); !st.ok()) return st;
  }
  uint64_t covered = snap_seq;
  if (stop_segment < segments.size()) {
    // Point-in-time recovery: a snapshot of the good prefix first, then the
    // damaged segments are set aside; a crash in between repeats this.
    absl::StatusOr<std::string> bytes = hooks.snapshot();
    if (!bytes.ok()) return bytes.status();
    if (absl::Status st = store->WriteSnapshotFile(last, *bytes); !st.ok()) return st;
    for (size_t i = stop_segment; i < segments.size(); ++i) {
      const std::string path = store->SegmentPath(segments[i]);
      if (absl::Status st = env->RenameFile(path, absl::StrCat(path, kCorruptSuffix)); !st.ok()) {
        return st;
      }
    }
    if (absl::Status st = env->SyncDir(dir); !st.ok()) return st;
    segments.resize(stop_segment);
    covered = last;
    bytes_after = 0;
  }
  {
    std::unique_lock<std::mutex> l(store->mu_);
    store->last_seq_ = last;
    store->synced_seq_ = last;
    store->segments_ = segments;
    store->bytes_since_snapshot_ = bytes_after;
    if (absl::Status st = store->OpenSegmentLocked(last + 1); !st.ok()) return st;
  }
  // Leftovers of a checkpoint that a crash interrupted before its cleanup.
  if (absl::Status st = store->DropCovered(covered); !st.ok()) return st;
  return store;
}

absl::Status Store::OpenSegmentLocked(uint64_t first_seq) {
  // A file of this name can only hold a torn record (or nothing): any good
  // record in it would have been replayed and moved last_seq_ past it.
  absl::StatusOr<std::unique_ptr<WritableFile>> f =
      env_->NewWritableFile(SegmentPath(first_seq), /*truncate=*/true);
  if (!f.ok()) return f.status();
  if (absl::Status st = env_->SyncDir(dir_); !st.ok()) return st;
  segment_ = *std::move(f);
  segment_first_seq_ = first_seq;
  segment_size_ = 0;
  if (segments_.empty() || segments_.back() != first_seq) segments_.push_back(first_seq);
  return absl::OkStatus();
}

absl::Status Store::RollLocked(std::unique_lock<std::mutex>& l) {
  while (syncing_) cv_.wait(l);
  std::unique_ptr<WritableFile> old = std::move(segment_);
  if (sync_ != SyncMode::kOff) {
    if (absl::Status st = old->Sync(); !st.ok()) {
      failed_ = st;
      // One rule for every failed fdatasync in per-batch mode (see
      // CheckUsable), though nothing unacknowledged is applied here.
      if (sync_ == SyncMode::kPerBatch) refuse_all_.store(true, std::memory_order_relaxed);
      segment_ = std::move(old);
      return st;
    }
    synced_seq_ = last_seq_;
  }
  if (absl::Status st = old->Close(); !st.ok()) {
    failed_ = st;
    return st;
  }
  if (absl::Status st = OpenSegmentLocked(last_seq_ + 1); !st.ok()) {
    failed_ = st;
    return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Store::Append(const std::function<void(uint64_t, std::string*)>& encode) {
  std::unique_lock<std::mutex> l(mu_);
  // Per-batch writers wait for their sync before releasing the engine's lock,
  // so none is outstanding here; waiting anyway keeps a failed sync's cut
  // (sync_cut_) from ever falling before a later record.
  while (sync_ == SyncMode::kPerBatch && failed_.ok() &&
         (syncing_ || sync_requested_ > synced_seq_)) {
    cv_.wait(l);
  }
  if (!failed_.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the journal in '", dir_, "' refuses writes after an earlier failure (",
                     failed_.message(), "); reopen the engine to continue"));
  }
  if (segment_size_ >= segment_bytes_) {
    if (absl::Status st = RollLocked(l); !st.ok()) return st;
  }
  const uint64_t seq = last_seq_ + 1;
  buffer_.clear();
  encode(seq, &buffer_);
  if (buffer_.size() - journal::kHeaderSize > journal::kMaxPayloadBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a write of ", buffer_.size(), " bytes exceeds the journal's record limit"));
  }
  const size_t n = buffer_.size();
  absl::Status st = segment_->Append(buffer_);
  if (buffer_.capacity() > kKeepBufferBytes) std::string().swap(buffer_);
  if (!st.ok()) {
    // Cut off whatever part of the record reached the file, so that the next
    // record follows a good one; if even that fails, stop writing.
    if (absl::Status cut = segment_->Truncate(segment_size_); !cut.ok()) failed_ = st;
    return WithContext(st, "journal write failed; nothing was applied");
  }
  if (sync_ == SyncMode::kPerBatch) {
    // The fdatasync runs on the sync thread while the caller applies the
    // write: a batch then costs max(apply, fdatasync), not their sum.
    sync_requested_ = seq;
    sync_cut_ = segment_size_;
    work_cv_.notify_one();
  }
  last_seq_ = seq;
  segment_size_ += n;
  bytes_since_snapshot_ += n;
  return seq;
}

absl::StatusOr<uint64_t> Store::AppendEvents(absl::Span<const v1::Event* const> events) {
  if (events.empty()) return 0;
  return Append(
      [events](uint64_t seq, std::string* out) { journal::AppendEventsRecord(seq, events, out); });
}

absl::StatusOr<uint64_t> Store::AppendAdvance(int64_t now_us) {
  return Append(
      [now_us](uint64_t seq, std::string* out) { journal::AppendAdvanceRecord(seq, now_us, out); });
}

absl::Status Store::JournalAdvance(int64_t now_us) {
  absl::StatusOr<uint64_t> seq = AppendAdvance(now_us);
  if (!seq.ok()) return seq.status();
  return AwaitDurable(*seq);
}

absl::Status Store::JournalAcknowledge(absl::Span<const std::string> action_ids) {
  absl::StatusOr<uint64_t> seq = Append([action_ids](uint64_t seq, std::string* out) {
    journal::AppendAcknowledgeRecord(seq, action_ids, out);
  });
  if (!seq.ok()) return seq.status();
  return AwaitDurable(*seq);
}

absl::Status Store::SyncBeforeRelease(uint64_t seq) {
  if (sync_ != SyncMode::kPerBatch) return absl::OkStatus();
  return AwaitDurable(seq);
}

absl::Status Store::AwaitDurable(uint64_t seq) {
  if (seq == 0 || sync_ == SyncMode::kOff) return absl::OkStatus();
  std::unique_lock<std::mutex> l(mu_);
  if (sync_ == SyncMode::kPerBatch) {
    // The sync thread has the record (Append handed it over).
    while (synced_seq_ < seq && failed_.ok()) cv_.wait(l);
    if (synced_seq_ >= seq) return absl::OkStatus();
    return absl::Status(
        failed_.code(),
        absl::StrCat("journal fdatasync failed (", failed_.message(),
                     "); the write is not durable, and the engine refuses reads and writes "
                     "until reopened"));
  }
  // One writer at a time syncs everything written so far; the others wait
  // for it, and whoever still is not covered leads the next round.
  while (synced_seq_ < seq) {
    if (!failed_.ok()) {
      return absl::Status(failed_.code(),
                          absl::StrCat("journal fdatasync failed (", failed_.message(),
                                       "); the write is applied in memory but not durable, and "
                                       "the engine refuses writes until reopened"));
    }
    if (syncing_) {
      cv_.wait(l);
      continue;
    }
    // The writer applied its write before it came here, and its caller is
    // told of a failure: nothing to cut, nothing to refuse but writes.
    SyncSegmentLocked(l, last_seq_, std::nullopt);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Store::BeginCheckpoint() {
  std::unique_lock<std::mutex> l(mu_);
  if (!failed_.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint: the journal failed earlier (",
                                                      failed_.message(), "); reopen the engine"));
  }
  if (segment_first_seq_ <= last_seq_) {
    if (absl::Status st = RollLocked(l); !st.ok()) return st;
  }
  return last_seq_;
}

absl::Status Store::FinishCheckpoint(uint64_t seq, absl::string_view snapshot_bytes) {
  if (absl::Status st = WriteSnapshotFile(seq, snapshot_bytes); !st.ok()) return st;
  {
    std::unique_lock<std::mutex> l(mu_);
    // What was written after the snapshot's segment roll.
    bytes_since_snapshot_ = segment_first_seq_ == seq + 1 ? segment_size_ : bytes_since_snapshot_;
  }
  return DropCovered(seq);
}

bool Store::WantsCheckpoint() const {
  std::unique_lock<std::mutex> l(mu_);
  return snapshot_every_bytes_ > 0 && bytes_since_snapshot_ >= snapshot_every_bytes_ &&
         failed_.ok();
}

absl::Status Store::WriteSnapshotFile(uint64_t seq, absl::string_view payload) {
  const std::string path = SnapshotPath(seq);
  const std::string tmp = absl::StrCat(path, kTempSuffix);
  const std::string file = EncodeSnapshotFile(seq, payload);
  absl::Status st;
  {
    absl::StatusOr<std::unique_ptr<WritableFile>> f = env_->NewWritableFile(tmp, true);
    if (!f.ok()) return WithContext(f.status(), "snapshot");
    st = (*f)->Append(file);
    if (st.ok()) st = (*f)->Sync();
    absl::Status closed = (*f)->Close();
    if (st.ok()) st = closed;
  }
  if (st.ok()) st = env_->RenameFile(tmp, path);
  if (!st.ok()) {
    env_->RemoveFile(tmp).IgnoreError();
    return WithContext(st, "snapshot");
  }
  // The rename is durable only once the directory is.
  if (absl::Status d = env_->SyncDir(dir_); !d.ok()) return WithContext(d, "snapshot");
  return absl::OkStatus();
}

absl::Status Store::DropCovered(uint64_t seq) {
  std::vector<uint64_t> doomed;
  {
    std::unique_lock<std::mutex> l(mu_);
    // A segment is covered when the next one starts at or before seq + 1.
    std::vector<uint64_t> kept;
    for (size_t i = 0; i < segments_.size(); ++i) {
      const bool covered = i + 1 < segments_.size() && segments_[i + 1] <= seq + 1 &&
                           segments_[i] != segment_first_seq_;
      (covered ? doomed : kept).push_back(segments_[i]);
    }
    segments_ = std::move(kept);
  }
  absl::Status result;
  for (uint64_t s : doomed) {
    absl::Status st = env_->RemoveFile(SegmentPath(s));
    if (!st.ok() && result.ok()) result = st;
  }
  absl::StatusOr<std::vector<std::string>> names = env_->ListDir(dir_);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    uint64_t n;
    if (ParseNumbered(name, kSnapshotPrefix, kSnapshotSuffix, &n) && n < seq) {
      absl::Status st = env_->RemoveFile(JoinPath(dir_, name));
      if (!st.ok() && result.ok()) result = st;
    }
  }
  return result.ok() ? result : WithContext(result, "checkpoint cleanup");
}

}  // namespace rapport
