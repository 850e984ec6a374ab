#include "lib/storage/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace rapport {
namespace {

absl::Status IoError(absl::string_view what, const std::string& path, int err) {
  std::string message = absl::StrCat(what, " '", path, "': ", std::strerror(err));
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(message);
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
  // EIO and the rest: the device failed us; nothing the caller can fix by
  // changing the request.
  return absl::UnavailableError(message);
}

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Append(absl::string_view data) override {
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return IoError("write to", path_, errno);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (::fdatasync(fd_) != 0) return IoError("fdatasync of", path_, errno);
    return absl::OkStatus();
  }

  absl::Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return IoError("ftruncate of", path_, errno);
    // O_APPEND writes go to the new end; nothing else to move.
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (fd_ < 0) return absl::OkStatus();
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return IoError("close of", path_, errno);
    return absl::OkStatus();
  }

  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  int fd_;
};

class PosixFileLock : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }

 private:
  int fd_;
};

// Maps the `size` bytes of `fd` into `contents`, all of them in memory
// already. Reading an 800 MB snapshot into a buffer cost more than the
// mapping: fresh pages to fault in and zero, then a copy out of the page
// cache (0.8 to 0.9 s against 0.01 to 0.03 s, on a loaded two-core machine;
// freeing the buffer cost another 0.1 s). The parse copies what it keeps
// onto the engine's arena anyway, so the mapping lives only as long as the
// load. MAP_POPULATE reads the whole file in now, and mincore checks that it
// did: a page that failed to read (EIO) would otherwise raise SIGBUS when
// touched, so then this returns false and the caller's read() reports the
// error as a status. (A page the kernel drops afterwards is read again on
// touch; only a failed re-read, or another process cutting the file, can
// still raise SIGBUS.)
bool Map(int fd, size_t size, FileContents* contents) {
  void* const addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  if (addr == MAP_FAILED) return false;
  const long page = ::sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> resident((size + static_cast<size_t>(page) - 1) /
                                      static_cast<size_t>(page));
  bool all = ::mincore(addr, size, resident.data()) == 0;
  for (size_t i = 0; all && i < resident.size(); ++i) all = (resident[i] & 1) != 0;
  if (!all) {
    ::munmap(addr, size);
    return false;
  }
  contents->AdoptMapping(addr, size);
  return true;
}

class PosixEnv : public Env {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path,
                                                                bool truncate) override {
    const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0);
    const int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) return IoError("cannot create", path, errno);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  absl::Status ReadFile(const std::string& path, FileContents* contents) override {
    contents->Clear();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return IoError("cannot open", path, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return IoError("cannot stat", path, err);
    }
    const size_t size = static_cast<size_t>(st.st_size);
    if (size >= kMapFromBytes && Map(fd, size, contents)) {
      ::close(fd);
      return absl::OkStatus();
    }
    char* const buf = contents->Allocate(size);
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::read(fd, buf + done, size - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        contents->Clear();
        return IoError("read of", path, err);
      }
      if (n == 0) break;  // shrank under us: what is there is what we have
      done += static_cast<size_t>(n);
    }
    // Only the bytes read are visible: the rest of the buffer was never
    // written.
    contents->set_size(done);
    ::close(fd);
    return absl::OkStatus();
  }

  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return IoError(absl::StrCat("rename to '", to, "' of"), from, errno);
    }
    return absl::OkStatus();
  }

  absl::Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return IoError("cannot remove", path, errno);
    return absl::OkStatus();
  }

  absl::Status TruncateFile(const std::string& path, uint64_t size) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return IoError("cannot open", path, errno);
    absl::Status st;
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      st = IoError("ftruncate of", path, errno);
    } else if (::fdatasync(fd) != 0) {
      st = IoError("fdatasync of", path, errno);
    }
    ::close(fd);
    return st;
  }

  absl::Status SyncDir(const std::string& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return IoError("cannot open directory", dir, errno);
    absl::Status st;
    if (::fsync(fd) != 0) st = IoError("fsync of directory", dir, errno);
    ::close(fd);
    return st;
  }

  absl::Status CreateDir(const std::string& dir) override {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return IoError("cannot create directory", dir, errno);
    }
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) return IoError("cannot stat", dir, errno);
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("'", dir, "' is not a directory"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return IoError("cannot list directory", dir, errno);
    std::vector<std::string> names;
    while (const struct dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      names.emplace_back(e->d_name);
    }
    ::closedir(d);
    return names;
  }

  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return IoError("cannot create lock file", path, errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        return absl::FailedPreconditionError(
            absl::StrCat("'", path,
                         "' is locked: another engine (in this or another process) has the "
                         "directory open for writing"));
      }
      return IoError("cannot lock", path, err);
    }
    return std::unique_ptr<FileLock>(new PosixFileLock(fd));
  }
};

bool Mutating(FileOp op) {
  switch (op) {
    case FileOp::kCreate:
    case FileOp::kAppend:
    case FileOp::kSync:
    case FileOp::kTruncate:
    case FileOp::kRename:
    case FileOp::kRemove:
    case FileOp::kSyncDir:
      return true;
    default:
      return false;
  }
}

class FaultyWritableFile : public WritableFile {
 public:
  FaultyWritableFile(FaultInjectionEnv* env, std::unique_ptr<WritableFile> base)
      : env_(env), base_(std::move(base)) {}

  absl::Status Append(absl::string_view data) override {
    Fault f = env_->Check(FileOp::kAppend, base_->path(), data);
    if (!f.status.ok()) {
      if (f.partial_bytes > 0) {
        base_->Append(data.substr(0, std::min(f.partial_bytes, data.size()))).IgnoreError();
      }
      return f.status;
    }
    return base_->Append(data);
  }
  absl::Status Sync() override {
    Fault f = env_->Check(FileOp::kSync, base_->path(), {});
    return f.status.ok() ? base_->Sync() : f.status;
  }
  absl::Status Truncate(uint64_t size) override {
    Fault f = env_->Check(FileOp::kTruncate, base_->path(), {});
    return f.status.ok() ? base_->Truncate(size) : f.status;
  }
  absl::Status Close() override {
    Fault f = env_->Check(FileOp::kClose, base_->path(), {});
    absl::Status st = base_->Close();
    return f.status.ok() ? st : f.status;
  }
  const std::string& path() const override { return base_->path(); }

 private:
  FaultInjectionEnv* env_;
  std::unique_ptr<WritableFile> base_;
};

}  // namespace

FileContents& FileContents::operator=(FileContents&& other) noexcept {
  if (this == &other) return *this;
  Clear();
  heap_ = std::move(other.heap_);
  map_ = std::exchange(other.map_, nullptr);
  map_size_ = std::exchange(other.map_size_, 0);
  data_ = std::exchange(other.data_, nullptr);
  size_ = std::exchange(other.size_, 0);
  return *this;
}

void FileContents::Clear() {
  heap_.reset();
  if (map_ != nullptr) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
  data_ = nullptr;
  size_ = 0;
}

char* FileContents::Allocate(size_t n) {
  Clear();
  // new char[n], not make_unique<char[]>(n): the latter zero-fills.
  heap_.reset(new char[n]);
  data_ = heap_.get();
  return heap_.get();
}

void FileContents::AdoptMapping(void* addr, size_t n) {
  Clear();
  map_ = addr;
  map_size_ = n;
  data_ = static_cast<const char*>(addr);
  size_ = n;
}

Env* Env::Default() {
  static Env* env = new PosixEnv();
  return env;
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

const char* FileOpName(FileOp op) {
  switch (op) {
    case FileOp::kCreate:
      return "create";
    case FileOp::kAppend:
      return "append";
    case FileOp::kSync:
      return "sync";
    case FileOp::kTruncate:
      return "truncate";
    case FileOp::kClose:
      return "close";
    case FileOp::kRead:
      return "read";
    case FileOp::kRename:
      return "rename";
    case FileOp::kRemove:
      return "remove";
    case FileOp::kSyncDir:
      return "syncdir";
    case FileOp::kList:
      return "list";
    case FileOp::kLock:
      return "lock";
  }
  return "?";
}

void FaultInjectionEnv::SetHook(Hook hook) {
  absl::MutexLock l(&mu_);
  hook_ = std::move(hook);
}

void FaultInjectionEnv::FailNext(FileOp op, absl::Status status, std::string path_part,
                                 size_t partial_bytes) {
  absl::MutexLock l(&mu_);
  one_shots_.push_back({op, std::move(status), std::move(path_part), partial_bytes});
}

void FaultInjectionEnv::CrashAfter(int64_t mutating_ops) {
  absl::MutexLock l(&mu_);
  crash_after_ = mutating_ops;
  mutating_ops_ = 0;
}

int64_t FaultInjectionEnv::mutating_ops() const {
  absl::MutexLock l(&mu_);
  return mutating_ops_;
}

void FaultInjectionEnv::Clear() {
  absl::MutexLock l(&mu_);
  hook_ = nullptr;
  one_shots_.clear();
  crash_after_ = -1;
  mutating_ops_ = 0;
}

Fault FaultInjectionEnv::Check(FileOp op, const std::string& path, absl::string_view data) {
  Hook hook;
  {
    absl::MutexLock l(&mu_);
    if (Mutating(op)) {
      ++mutating_ops_;
      if (crash_after_ >= 0 && mutating_ops_ > crash_after_) {
        return Fault{absl::AbortedError(absl::StrCat("simulated crash before ", FileOpName(op),
                                                     " of '", path, "'")),
                     0};
      }
    }
    for (auto it = one_shots_.begin(); it != one_shots_.end(); ++it) {
      if (it->op == op && absl::StrContains(path, it->path_part)) {
        Fault f{it->status, it->partial_bytes};
        one_shots_.erase(it);
        return f;
      }
    }
    hook = hook_;
  }
  if (hook) return hook(op, path, data);
  return Fault{};
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(
    const std::string& path, bool truncate) {
  if (Fault f = Check(FileOp::kCreate, path, {}); !f.status.ok()) return f.status;
  auto file = base_->NewWritableFile(path, truncate);
  if (!file.ok()) return file.status();
  return std::unique_ptr<WritableFile>(new FaultyWritableFile(this, *std::move(file)));
}

absl::Status FaultInjectionEnv::ReadFile(const std::string& path, FileContents* contents) {
  if (Fault f = Check(FileOp::kRead, path, {}); !f.status.ok()) {
    contents->Clear();
    return f.status;
  }
  return base_->ReadFile(path, contents);
}

absl::Status FaultInjectionEnv::RenameFile(const std::string& from, const std::string& to) {
  if (Fault f = Check(FileOp::kRename, from, {}); !f.status.ok()) return f.status;
  return base_->RenameFile(from, to);
}

absl::Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  if (Fault f = Check(FileOp::kRemove, path, {}); !f.status.ok()) return f.status;
  return base_->RemoveFile(path);
}

absl::Status FaultInjectionEnv::TruncateFile(const std::string& path, uint64_t size) {
  if (Fault f = Check(FileOp::kTruncate, path, {}); !f.status.ok()) return f.status;
  return base_->TruncateFile(path, size);
}

absl::Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  if (Fault f = Check(FileOp::kSyncDir, dir, {}); !f.status.ok()) return f.status;
  return base_->SyncDir(dir);
}

absl::Status FaultInjectionEnv::CreateDir(const std::string& dir) {
  if (Fault f = Check(FileOp::kCreate, dir, {}); !f.status.ok()) return f.status;
  return base_->CreateDir(dir);
}

absl::StatusOr<std::vector<std::string>> FaultInjectionEnv::ListDir(const std::string& dir) {
  if (Fault f = Check(FileOp::kList, dir, {}); !f.status.ok()) return f.status;
  return base_->ListDir(dir);
}

absl::StatusOr<std::unique_ptr<FileLock>> FaultInjectionEnv::LockFile(const std::string& path) {
  if (Fault f = Check(FileOp::kLock, path, {}); !f.status.ok()) return f.status;
  return base_->LockFile(path);
}

}  // namespace rapport
