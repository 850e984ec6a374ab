// UTF-8 validity. Protobuf's string fields must hold valid UTF-8: an event
// that carried anything else would be accepted, journaled and snapshotted,
// and then refused by every parser that reads it back.
#ifndef RAPPORT_LIB_UTIL_UTF8_H_
#define RAPPORT_LIB_UTIL_UTF8_H_

#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"

namespace rapport {

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates, no
// code point above U+10FFFF).
inline bool IsValidUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // ASCII runs, eight bytes at a time: ids and most text are ASCII.
    while (end - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      if (w & 0x8080808080808080ULL) break;
      p += 8;
    }
    if (p >= end) break;
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    p += n + 1;
  }
  return true;
}

// What ingest checks of every id's bytes, eight at a time: whether any byte
// is an ASCII control character (below 0x20, or 0x7f), and whether any has
// the high bit set (only then can the bytes be invalid UTF-8, so only then
// does IsValidUtf8 need to run: ASCII is UTF-8). Ids are checked several
// times per event; a loop over bytes cost more than the hash lookups.
struct ByteScan {
  bool control = false;
  bool high = false;
};
inline ByteScan ScanBytes(absl::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  uint64_t high = 0;
  uint64_t control = 0;
  // Per word w: a byte below 0x20, or equal to 0x7f, sets the high bit of
  // some byte of (x - 0x20..) & ~x & 0x80.. with x = w (resp. w ^ 0x7f..),
  // exactly when there is such a byte among the bytes below 0x80 (the
  // standard "has a byte less than n" test); words with a high byte go to
  // `high`, which decides alone when set (see CheckId).
  auto scan = [&](uint64_t w) {
    high |= w & kHighs;
    const uint64_t del = w ^ (0x7f * kOnes);
    control |= ((w - 0x20 * kOnes) & ~w & kHighs) | ((del - kOnes) & ~del & kHighs);
  };
  // Every byte is seen by some word; bytes seen twice change nothing (the
  // results are ORs). The last (or only) partial word is loaded as
  // overlapping pieces instead of byte by byte: ids are 8..16 bytes, and a
  // byte loop for their tail cost more than the words.
  const char* p = s.data();
  const size_t n = s.size();
  if (n >= 8) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      scan(w);
    }
    if (i < n) {
      uint64_t w;
      std::memcpy(&w, p + n - 8, 8);
      scan(w);
    }
  } else if (n >= 4) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + n - 4, 4);
    scan(uint64_t{lo} | uint64_t{hi} << 32);
  } else if (n > 0) {
    // 'A' (neither control nor high) in the bytes not loaded.
    uint64_t w = 0x4141414141414100ULL | static_cast<unsigned char>(p[0]);
    if (n >= 2) {
      uint16_t last2;
      std::memcpy(&last2, p + n - 2, 2);
      w = (w & ~0x00ffff00ULL) | uint64_t{last2} << 8;
    }
    scan(w);
  }
  ByteScan out;
  out.high = high != 0;
  // With a high byte present, the borrow of the subtraction can flag a
  // neighbour wrongly: decide byte by byte then.
  if (out.high) {
    for (unsigned char c : s) out.control |= (c < 0x20) | (c == 0x7f);
  } else {
    out.control = control != 0;
  }
  return out;
}

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_UTF8_H_
