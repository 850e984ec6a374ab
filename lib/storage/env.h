// The file-system operations the journal and snapshots need, behind an
// interface so that tests can inject faults (a failed write, fsync or rename;
// a crash between two steps) without touching the real disk's behaviour.
//
// Env::Default() is POSIX. FaultInjectionEnv wraps another Env and consults a
// hook before every operation.
//
// Thread-safety: Env implementations are safe to call concurrently; a
// WritableFile is used by one thread at a time (the journal serializes).
// Errors: every failure is an absl::Status naming the path and the system
// error (errno text); ENOSPC maps to RESOURCE_EXHAUSTED, a missing file to
// NOT_FOUND, anything else to the code of absl::ErrnoToStatus.
#ifndef RAPPORT_LIB_STORAGE_ENV_H_
#define RAPPORT_LIB_STORAGE_ENV_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace rapport {

// The bytes of a whole file (Env::ReadFile): either a heap buffer read into,
// or (for large files, see PosixEnv::ReadFile) a read-only mapping of the
// file. Unlike a std::string, a heap buffer is not zero-filled before the
// read overwrites it: recovery reads the snapshot and every journal segment
// (about 800 MB at 10 M events), and the fill was one more pass over all of
// it for nothing.
class FileContents {
 public:
  FileContents() = default;
  FileContents(FileContents&& other) noexcept { *this = std::move(other); }
  FileContents& operator=(FileContents&& other) noexcept;
  FileContents(const FileContents&) = delete;
  FileContents& operator=(const FileContents&) = delete;
  ~FileContents() { Clear(); }

  absl::string_view view() const { return absl::string_view(data_, size_); }
  size_t size() const { return size_; }
  // Whether the bytes are a mapping of the file (for the tests).
  bool mapped() const { return map_ != nullptr; }
  // Frees the buffer or unmaps the mapping.
  void Clear();

  // For Env implementations: replaces the contents with a buffer of `n`
  // bytes of unspecified content to read into, then set_size(bytes read),
  // <= n.
  char* Allocate(size_t n);
  void set_size(size_t n) { size_ = n; }
  // For Env implementations: replaces the contents with the read-only
  // mapping of `n` bytes (n > 0) at `addr`, which Clear munmaps.
  void AdoptMapping(void* addr, size_t n);

 private:
  std::unique_ptr<char[]> heap_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// Env::Default()'s ReadFile maps files from this size up.
inline constexpr size_t kMapFromBytes = size_t{1} << 20;

// A file opened for appending.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes all of `data` at the end (looping over short writes). On failure
  // some prefix of `data` may have reached the file.
  virtual absl::Status Append(absl::string_view data) = 0;
  // fdatasync: the data (and the size) reach the disk.
  virtual absl::Status Sync() = 0;
  // Cuts the file to `size` bytes (to drop a record whose write or sync
  // failed).
  virtual absl::Status Truncate(uint64_t size) = 0;
  virtual absl::Status Close() = 0;
  virtual const std::string& path() const = 0;
};

// Held while the directory is open for writing; released on destruction.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Env {
 public:
  virtual ~Env() = default;

  // The real file system (POSIX). Never destroyed.
  static Env* Default();

  // Creates (or, with `truncate`, empties) `path` for appending.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                                        bool truncate) = 0;
  // The whole file. On failure `contents` is empty. Env::Default() maps a
  // file of kMapFromBytes or more rather than reading it (see env.cc): the
  // bytes must then not change while `contents` holds them, which the
  // directory's rules ensure (a snapshot file is never written after its
  // rename, a segment is only cut after recovery let go of it, and the LOCK
  // keeps other engines out).
  virtual absl::Status ReadFile(const std::string& path, FileContents* contents) = 0;
  virtual absl::Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // Cuts `path` to `size` bytes and syncs it.
  virtual absl::Status TruncateFile(const std::string& path, uint64_t size) = 0;
  // Makes renames, creations and removals in `dir` durable (fsync of the
  // directory).
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Creates `dir` (one level) if it does not exist.
  virtual absl::Status CreateDir(const std::string& dir) = 0;
  // Names (not paths) of the entries of `dir`, "." and ".." excluded.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // An exclusive advisory lock (flock) on `path`, created if missing.
  // FAILED_PRECONDITION if another open file description holds it.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
};

// The operations a fault hook sees.
enum class FileOp {
  kCreate,
  kAppend,
  kSync,
  kTruncate,
  kClose,
  kRead,
  kRename,
  kRemove,
  kSyncDir,
  kList,
  kLock,
};

const char* FileOpName(FileOp op);

// What the hook decides for one operation.
struct Fault {
  // Non-OK: the operation fails with this status (for kAppend, after writing
  // `partial_bytes` of the data, to model a short write before ENOSPC/EIO or
  // a crash in the middle of a write).
  absl::Status status;
  size_t partial_bytes = 0;
};

// Wraps `base` (not owned; must outlive this) and asks `hook` before every
// operation. With no hook (or an OK answer) the operation runs on `base`.
//
// Helpers model the usual experiments:
//  - FailNext(op, status): the next `op` (optionally only on paths containing
//    `path_part`) fails, once.
//  - CrashAfter(n): the first n mutating operations run, every later one
//    fails with ABORTED ("simulated crash"), as if the process had died
//    there; a later Append writes nothing.
class FaultInjectionEnv : public Env {
 public:
  using Hook = std::function<Fault(FileOp op, const std::string& path, absl::string_view data)>;

  explicit FaultInjectionEnv(Env* base) : base_(base) {}

  void SetHook(Hook hook);
  void FailNext(FileOp op, absl::Status status, std::string path_part = "",
                size_t partial_bytes = 0);
  void CrashAfter(int64_t mutating_ops);
  // Mutating operations (create, append, sync, truncate, rename, remove,
  // sync-dir) seen so far.
  int64_t mutating_ops() const;
  void Clear();

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                                bool truncate) override;
  absl::Status ReadFile(const std::string& path, FileContents* contents) override;
  absl::Status RenameFile(const std::string& from, const std::string& to) override;
  absl::Status RemoveFile(const std::string& path) override;
  absl::Status TruncateFile(const std::string& path, uint64_t size) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override;
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;

  // Consults the hook and the helpers; public for the wrapped files.
  Fault Check(FileOp op, const std::string& path, absl::string_view data);

 private:
  Env* const base_;
  mutable absl::Mutex mu_;
  Hook hook_ ABSL_GUARDED_BY(mu_);
  struct OneShot {
    FileOp op;
    absl::Status status;
    std::string path_part;
    size_t partial_bytes;
  };
  std::vector<OneShot> one_shots_ ABSL_GUARDED_BY(mu_);
  int64_t crash_after_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t mutating_ops_ ABSL_GUARDED_BY(mu_) = 0;
};

// Joins a directory and a name with one '/'.
std::string JoinPath(absl::string_view dir, absl::string_view name);

}  // namespace rapport

#endif  // RAPPORT_LIB_STORAGE_ENV_H_
