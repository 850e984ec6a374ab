// A loop of hash-table operations over a table far larger than the caches
// waits for memory at every item. ForEachHashedAhead hides that wait: the
// item kAhead places later is hashed (and its slot prefetched, by the hash
// callback) while the current one is handled, its hash waiting in a ring.
// Restore (EventIdLog::Load, the timers' causes) runs such loops over a
// million items.
#ifndef RAPPORT_LIB_UTIL_PREFETCH_H_
#define RAPPORT_LIB_UTIL_PREFETCH_H_

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/status/status.h"

#if ABSL_HAVE_ATTRIBUTE(flatten)
#define RAPPORT_FLATTEN __attribute__((flatten))
#else
#define RAPPORT_FLATTEN
#endif

namespace rapport {

// Calls body(i, hash(i)) for i = 0 .. n-1 in order and returns OK, or the
// first non-OK status a body returns (later items are then neither hashed
// nor handled). hash(i) is called exactly once for each i, in increasing
// order (so it may walk a cursor), kAhead items before body(i): it returns
// the item's hash and should prefetch what body(i) will touch. body returns
// absl::Status or void.
template <size_t kAhead, typename HashFn, typename BodyFn>
absl::Status ForEachHashedAhead(size_t n, HashFn&& hash, BodyFn&& body) {
  static_assert(kAhead > 0 && (kAhead & (kAhead - 1)) == 0, "kAhead is a power of two");
  // Called from two places, a hash callback would be left out of line (or
  // absl's string hash inside it would): flattened, everything it calls is
  // inlined into this one copy (~12 instructions an id in EventIdLog::Load).
  auto hash_inline = [&](size_t j) RAPPORT_FLATTEN { return hash(j); };
  size_t ring[kAhead];
  const size_t first = std::min(n, kAhead);
  for (size_t j = 0; j < first; ++j) ring[j] = hash_inline(j);
  // Item i + kAhead lands in the slot item i leaves (the same index mod
  // kAhead), so no second counter is kept, and the body has one call site
  // (called from two, a large body is left out of line: ReadRuntime's).
  const size_t steady = n - first;
  for (size_t i = 0; i < n; ++i) {
    size_t& slot = ring[i % kAhead];
    const size_t h = slot;
    if (ABSL_PREDICT_TRUE(i < steady)) slot = hash_inline(i + kAhead);
    if constexpr (std::is_void_v<decltype(body(i, h))>) {
      body(i, h);
    } else {
      absl::Status st = body(i, h);
      if (ABSL_PREDICT_FALSE(!st.ok())) return st;
    }
  }
  return absl::OkStatus();
}

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_PREFETCH_H_
