#include "lib/storage/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace rapport::crc32c {
namespace {

// The reflected Castagnoli polynomial.
constexpr uint32_t kPoly = 0x82f63b78u;

// kTables[k][b]: the CRC of byte b followed by k zero bytes, so that eight
// input bytes are folded with eight lookups (slicing-by-8).
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][b] = c;
  }
  for (int k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
  }
  return t;
}

constexpr Tables kTables = MakeTables();

inline uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));  // x86 and every Linux target we build for are little-endian
  return v;
}

// Shifting a CRC register over n zero bytes is linear over GF(2): a 32x32
// bit matrix, applied bytewise through four tables (as zlib's
// crc32_combine does). The hardware path needs it to join three streams.
using Matrix = std::array<uint32_t, 32>;
using ShiftTables = std::array<std::array<uint32_t, 256>, 4>;

constexpr uint32_t Times(const Matrix& m, uint32_t v) {
  uint32_t sum = 0;
  for (int i = 0; v != 0; ++i, v >>= 1) {
    if (v & 1) sum ^= m[static_cast<size_t>(i)];
  }
  return sum;
}

constexpr Matrix Square(const Matrix& m) {
  Matrix r{};
  for (size_t i = 0; i < 32; ++i) r[i] = Times(m, m[i]);
  return r;
}

// The operator for `bytes` zero bytes; `bytes` is a power of two.
constexpr ShiftTables MakeShift(size_t bytes) {
  Matrix op{};
  op[0] = kPoly;  // one zero bit
  for (size_t i = 1; i < 32; ++i) op[i] = uint32_t{1} << (i - 1);
  for (int i = 0; i < 3; ++i) op = Square(op);  // one zero byte
  for (; bytes > 1; bytes >>= 1) op = Square(op);
  ShiftTables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    for (size_t k = 0; k < 4; ++k) t[k][b] = Times(op, b << (8 * k));
  }
  return t;
}

inline uint64_t Shift(const ShiftTables& t, uint64_t crc) {
  return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^
         t[3][(crc >> 24) & 0xff];
}

// The crc32 instruction has a latency of three cycles and a throughput of
// one: one dependent chain uses a third of the unit. Three streams over
// adjacent pieces of the input run at once and are joined by shifting.
constexpr size_t kLong = 8192;
constexpr size_t kShort = 256;
constexpr ShiftTables kShiftLong = MakeShift(kLong);
constexpr ShiftTables kShiftShort = MakeShift(kShort);

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) inline void ThreeStreams(uint64_t* c, const uint8_t** p,
                                                           size_t* n, size_t piece,
                                                           const ShiftTables& shift) {
  while (*n >= 3 * piece) {
    uint64_t c1 = 0;
    uint64_t c2 = 0;
    const uint8_t* q = *p;
    for (const uint8_t* end = q + piece; q < end; q += 8) {
      *c = _mm_crc32_u64(*c, LoadLE64(q));
      c1 = _mm_crc32_u64(c1, LoadLE64(q + piece));
      c2 = _mm_crc32_u64(c2, LoadLE64(q + 2 * piece));
    }
    *c = Shift(shift, *c) ^ c1;
    *c = Shift(shift, *c) ^ c2;
    *p += 3 * piece;
    *n -= 3 * piece;
  }
}

__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = ~crc;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    --n;
  }
  ThreeStreams(&c, &p, &n, kLong, kShiftLong);
  ThreeStreams(&c, &p, &n, kShort, kShiftShort);
  while (n >= 8) {
    c = _mm_crc32_u64(c, LoadLE64(p));
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    --n;
  }
  return ~static_cast<uint32_t>(c);
}
#endif

bool DetectHardware() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("sse4.2");
#else
  return false;
#endif
}

const bool kHaveHardware = DetectHardware();

}  // namespace

uint32_t ExtendPortable(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    const uint64_t v = LoadLE64(p) ^ c;
    c = kTables[7][v & 0xff] ^ kTables[6][(v >> 8) & 0xff] ^ kTables[5][(v >> 16) & 0xff] ^
        kTables[4][(v >> 24) & 0xff] ^ kTables[3][(v >> 32) & 0xff] ^ kTables[2][(v >> 40) & 0xff] ^
        kTables[1][(v >> 48) & 0xff] ^ kTables[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = kTables[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    --n;
  }
  return ~c;
}

uint32_t ExtendHardware(uint32_t crc, const void* data, size_t n) {
#if defined(__x86_64__)
  if (kHaveHardware) return ExtendSse42(crc, static_cast<const uint8_t*>(data), n);
#endif
  return ExtendPortable(crc, data, n);
}

bool HardwareAvailable() { return kHaveHardware; }

uint32_t Extend(uint32_t crc, const void* data, size_t n) { return ExtendHardware(crc, data, n); }

}  // namespace rapport::crc32c
