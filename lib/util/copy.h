// Copies of short byte runs (ids, mostly) without a call to memcpy of a
// variable length, which costs as much as the rest of a small hot function:
// two overlapping moves of a fixed width cover any length in [w, 2w] and
// read or write nothing outside the runs.
#ifndef RAPPORT_LIB_UTIL_COPY_H_
#define RAPPORT_LIB_UTIL_COPY_H_

#include <cstddef>
#include <cstring>

namespace rapport {

inline void CopyShort(void* to, const void* from, size_t n) {
  auto* out = static_cast<unsigned char*>(to);
  const auto* in = static_cast<const unsigned char*>(from);
  if (n <= 16) {
    if (n >= 8) {
      std::memcpy(out, in, 8);
      std::memcpy(out + n - 8, in + n - 8, 8);
    } else if (n >= 4) {
      std::memcpy(out, in, 4);
      std::memcpy(out + n - 4, in + n - 4, 4);
    } else if (n > 0) {
      out[0] = in[0];
      out[n / 2] = in[n / 2];
      out[n - 1] = in[n - 1];
    }
  } else if (n <= 32) {
    std::memcpy(out, in, 16);
    std::memcpy(out + n - 16, in + n - 16, 16);
  } else {
    std::memcpy(out, in, n);
  }
}

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_COPY_H_
