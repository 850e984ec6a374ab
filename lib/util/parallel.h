// Snapshot and restore of a large state are a few independent passes over
// hundreds of megabytes (parse or write the rows, the fact columns, the
// event-id log); on a machine with a second core they overlap. RunBoth (and
// RunBeside) is the one place the library starts such a thread, so that the
// policy (when a second thread is worth starting, what happens when none can
// be) is decided once.
#ifndef RAPPORT_LIB_UTIL_PARALLEL_H_
#define RAPPORT_LIB_UTIL_PARALLEL_H_

#include <atomic>
#include <cstddef>
#include <system_error>
#include <thread>
#include <utility>

namespace rapport {

// Below this many bytes of work a second thread costs more (tens of
// microseconds to start, caches to warm) than it saves.
inline constexpr size_t kParallelMinBytes = size_t{4} << 20;

// Tests set this to compare the two-thread result with the one-thread one;
// 0 = the default (a second thread for work of kParallelMinBytes or more),
// 1 = never, 2 = always.
inline std::atomic<int>& ParallelModeForTesting() {
  static std::atomic<int> mode{0};
  return mode;
}

// Sets ParallelModeForTesting() for a scope and puts the old mode back.
class ScopedParallelMode {
 public:
  explicit ScopedParallelMode(int mode) : old_(ParallelModeForTesting().exchange(mode)) {}
  ~ScopedParallelMode() { ParallelModeForTesting().store(old_); }
  ScopedParallelMode(const ScopedParallelMode&) = delete;
  ScopedParallelMode& operator=(const ScopedParallelMode&) = delete;

 private:
  int old_;
};

// Whether work of `bytes` bytes should be split over two threads.
inline bool WorthParallel(size_t bytes) {
  switch (ParallelModeForTesting().load(std::memory_order_relaxed)) {
    case 1:
      return false;
    case 2:
      return true;
    default:
      return bytes >= kParallelMinBytes && std::thread::hardware_concurrency() > 1;
  }
}

// Runs `helper` on a second thread beside main(true), and returns when both
// have returned; if `parallel` is false or the thread cannot be started,
// runs main(false) alone and never `helper`. For a helper that works ahead
// of main (and may wait for it): main(false) must do without it.
template <typename Helper, typename Main>
void RunBeside(bool parallel, Helper&& helper, Main&& main) {
  if (parallel) {
    std::thread t;
    try {
      t = std::thread(std::ref(helper));
    } catch (const std::system_error&) {
      parallel = false;
    }
    if (parallel) {
      main(true);
      t.join();
      return;
    }
  }
  main(false);
}

// Runs `a` on a second thread while `b` runs on the caller's, and returns
// when both have returned. If `parallel` is false, or the thread cannot be
// started (the process is out of threads), runs a then b on the caller's
// thread: the result must not depend on which way they ran. `a` and `b` must
// not touch the same memory unless it is read-only or synchronized.
template <typename A, typename B>
void RunBoth(bool parallel, A&& a, B&& b) {
  RunBeside(parallel, a, [&](bool beside) {
    if (!beside) a();
    b();
  });
}

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_PARALLEL_H_
