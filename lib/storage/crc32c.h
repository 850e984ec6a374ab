// CRC-32C (Castagnoli), the checksum of the journal and of snapshot files.
//
// abseil 20220623 has no CRC, so we carry our own: a slicing-by-8 table
// implementation everywhere, and the SSE4.2 crc32 instruction on x86-64 CPUs
// that have it (chosen once at run time). Both give the same values; the test
// checks them against each other and against published vectors.
//
// Thread-safety: every function is pure and safe to call concurrently.
#ifndef RAPPORT_LIB_STORAGE_CRC32C_H_
#define RAPPORT_LIB_STORAGE_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace rapport::crc32c {

// The CRC-32C of data[0, n) continued from `crc` (the value of the bytes
// before). Extend(0, data, n) is the CRC of data[0, n).
uint32_t Extend(uint32_t crc, const void* data, size_t n);
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

// The two implementations, exposed so that the test can compare them.
// ExtendHardware falls back to the table when the CPU lacks SSE4.2.
uint32_t ExtendPortable(uint32_t crc, const void* data, size_t n);
uint32_t ExtendHardware(uint32_t crc, const void* data, size_t n);
bool HardwareAvailable();

// Stored CRCs are masked (as LevelDB does): the CRC of a string that itself
// contains CRCs is otherwise prone to accidental matches, and a run of zero
// bytes would have a CRC of zero.
inline constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline uint32_t Unmask(uint32_t masked) {
  const uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace rapport::crc32c

#endif  // RAPPORT_LIB_STORAGE_CRC32C_H_
