// A stable 64-bit fingerprint of bytes: the same bytes give the same value in
// every process and on every run (unlike absl::Hash, which is seeded), so it
// can be stored in snapshots.
#ifndef RAPPORT_LIB_UTIL_FINGERPRINT_H_
#define RAPPORT_LIB_UTIL_FINGERPRINT_H_

#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"

namespace rapport {

inline uint64_t Mix64(uint64_t x) {
  // The finalizer of SplitMix64: every input bit affects every output bit.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// The state after the whole 8-byte words of [p, p + n); the tail (n % 8
// bytes) is mixed in by the callers below, which differ only in how they
// load it.
inline uint64_t Fingerprint64Words(const char* p, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
  for (const char* end = p + (n - n % 8); p != end; p += 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = Mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
  }
  return h;
}

inline uint64_t Fingerprint64Tail(uint64_t h, uint64_t tail, size_t n) {
  return Mix64(h ^ tail ^ (static_cast<uint64_t>(n % 8) << 56));
}

inline uint64_t Fingerprint64(absl::string_view bytes) {
  const size_t n = bytes.size();
  uint64_t tail = 0;
  std::memcpy(&tail, bytes.data() + (n - n % 8), n % 8);
  return Fingerprint64Tail(Fingerprint64Words(bytes.data(), n), tail, n);
}

// Fingerprint64 of [p, p + n) for a buffer with eight zero bytes after its
// end: the last partial word is then one load instead of a call to memcpy of
// a variable length. The same value.
inline uint64_t Fingerprint64ZeroPadded(const char* p, size_t n) {
  uint64_t tail;
  std::memcpy(&tail, p + (n - n % 8), 8);
  return Fingerprint64Tail(Fingerprint64Words(p, n), tail, n);
}

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_FINGERPRINT_H_
