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

#include "absl/status/status.h"

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
  size_t ring[kAhead];
  size_t ahead = 0;
  for (const size_t first = std::min(n, kAhead); ahead < first; ++ahead) ring[ahead] = hash(ahead);
  for (size_t i = 0; i < n; ++i) {
    // Read before the slot is reused: item i + kAhead lands where i was.
    const size_t h = ring[i % kAhead];
    if (ahead < n) {
      ring[ahead % kAhead] = hash(ahead);
      ++ahead;
    }
    if constexpr (std::is_void_v<decltype(body(i, h))>) {
      body(i, h);
    } else {
      absl::Status st = body(i, h);
      if (!st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_PREFETCH_H_
