// The engine's reader-writer lock.
//
// std::shared_mutex rather than absl::Mutex: Debian's Abseil is built without
// ThreadSanitizer's annotations, so under TSan an absl::Mutex orders nothing
// and every reader looks like a race. pthread's rwlock, under
// std::shared_mutex, is understood by every sanitizer.
#ifndef RAPPORT_LIB_UTIL_SHARED_MUTEX_H_
#define RAPPORT_LIB_UTIL_SHARED_MUTEX_H_

#include <shared_mutex>

namespace rapport {

class SharedMutex {
 public:
  void Lock() { mu_.lock(); }
  void Unlock() { mu_.unlock(); }
  void ReaderLock() { mu_.lock_shared(); }
  void ReaderUnlock() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Exclusive for the scope (or until Release()).
class WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) : mu_(mu) { mu_->Lock(); }
  ~WriterLock() { Release(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;
  void Release() {
    if (mu_ != nullptr) mu_->Unlock();
    mu_ = nullptr;
  }

 private:
  SharedMutex* mu_;
};

// Shared with other readers for the scope.
class ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) : mu_(mu) { mu_->ReaderLock(); }
  ~ReaderLock() { mu_->ReaderUnlock(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* mu_;
};

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_SHARED_MUTEX_H_
