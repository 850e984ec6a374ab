// The engine's reader-writer lock.
//
// A pthread rwlock rather than absl::Mutex: Debian's Abseil is built without
// ThreadSanitizer's annotations, so under TSan an absl::Mutex orders nothing
// and every reader looks like a race. pthread's rwlock is understood by every
// sanitizer.
//
// Rather than std::shared_mutex (the same rwlock with default attributes):
// glibc's default prefers readers, so a host whose dashboards keep one reader
// inside at all times would never get an event in. This lock prefers writers:
// once a writer waits, new readers queue behind it. The price is that a thread
// must not take the read side twice (the second call would wait for the
// writer, which waits for the first); nothing in the engine does.
#ifndef RAPPORT_LIB_UTIL_SHARED_MUTEX_H_
#define RAPPORT_LIB_UTIL_SHARED_MUTEX_H_

#include <pthread.h>

#include <cstdlib>

namespace rapport {

class SharedMutex {
 public:
  SharedMutex() {
    pthread_rwlockattr_t attr;
    Check(pthread_rwlockattr_init(&attr));
    Check(pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP));
    Check(pthread_rwlock_init(&mu_, &attr));
    pthread_rwlockattr_destroy(&attr);
  }
  ~SharedMutex() { pthread_rwlock_destroy(&mu_); }
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() { Check(pthread_rwlock_wrlock(&mu_)); }
  void Unlock() { Check(pthread_rwlock_unlock(&mu_)); }
  void ReaderLock() { Check(pthread_rwlock_rdlock(&mu_)); }
  void ReaderUnlock() { Check(pthread_rwlock_unlock(&mu_)); }
  // False when a writer holds the lock or waits for it (writers come first).
  bool TryReaderLock() { return pthread_rwlock_tryrdlock(&mu_) == 0; }

 private:
  // These calls fail only on misuse (a lock taken twice by one thread, an
  // unlock without a lock) or past 2^30 readers: a bug, never an input, so
  // it ends the process rather than run on without mutual exclusion.
  static void Check(int rc) {
    if (rc != 0) std::abort();
  }

  pthread_rwlock_t mu_;
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
