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

inline uint64_t Fingerprint64(absl::string_view bytes) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ (bytes.size() * 0xff51afd7ed558ccdULL);
  const char* p = bytes.data();
  size_t n = bytes.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = Mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
    p += 8;
    n -= 8;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p, n);
  return Mix64(h ^ tail ^ (static_cast<uint64_t>(n) << 56));
}

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_FINGERPRINT_H_
