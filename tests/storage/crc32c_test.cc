#include "lib/storage/crc32c.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace rapport::crc32c {
namespace {

// Vectors from RFC 3720 (iSCSI) B.4 and the usual check value.
TEST(Crc32c, PublishedVectorsOnBothImplementations) {
  for (auto fn : {&ExtendPortable, &ExtendHardware}) {
    EXPECT_EQ(fn(0, "123456789", 9), 0xe3069283u);
    char buf[32];
    std::memset(buf, 0, sizeof(buf));
    EXPECT_EQ(fn(0, buf, sizeof(buf)), 0x8a9136aau);
    std::memset(buf, 0xff, sizeof(buf));
    EXPECT_EQ(fn(0, buf, sizeof(buf)), 0x62a8ab43u);
    for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(i);
    EXPECT_EQ(fn(0, buf, sizeof(buf)), 0x46dd794eu);
    for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(31 - i);
    EXPECT_EQ(fn(0, buf, sizeof(buf)), 0x113fdb5cu);
  }
}

TEST(Crc32c, ImplementationsAgreeAtEveryLengthAndAlignment) {
  std::mt19937 rng(1);
  std::string data(4096 + 16, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t align = 0; align < 8; ++align) {
    for (size_t n : {0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 1000, 4096}) {
      const char* p = data.data() + align;
      ASSERT_EQ(ExtendPortable(0, p, n), ExtendHardware(0, p, n)) << align << " " << n;
      // Extending in two pieces is the same as one.
      const size_t half = n / 3;
      ASSERT_EQ(Extend(Extend(0, p, half), p + half, n - half), Value(p, n));
    }
  }
}

// Long inputs take the hardware path's three-stream loops (pieces of 8192
// and 256 bytes): every length around their edges, at every alignment.
TEST(Crc32c, ImplementationsAgreeOnLongInputs) {
  std::mt19937 rng(2);
  std::string data(3 * 8192 * 2 + 3 * 256 * 2 + 64, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  std::vector<size_t> lengths;
  for (size_t edge : {3 * 256, 3 * 8192, 3 * 8192 + 3 * 256, 2 * 3 * 8192}) {
    for (size_t d = 0; d < 17; ++d) lengths.push_back(edge + d - 8);
  }
  lengths.push_back(data.size() - 8);
  for (size_t align = 0; align < 8; ++align) {
    for (size_t n : lengths) {
      const char* p = data.data() + align;
      ASSERT_EQ(ExtendPortable(0, p, n), ExtendHardware(0, p, n)) << align << " " << n;
      ASSERT_EQ(ExtendPortable(0x12345678u, p, n), ExtendHardware(0x12345678u, p, n))
          << align << " " << n;
      const size_t cut = n / 2 + align;
      ASSERT_EQ(Extend(Extend(0, p, cut), p + cut, n - cut), Value(p, n)) << align << " " << n;
    }
  }
}

TEST(Crc32c, MaskIsReversibleAndChangesTheValue) {
  for (uint32_t v : {0u, 1u, 0xe3069283u, 0xffffffffu}) {
    EXPECT_NE(Mask(v), v);
    EXPECT_NE(Mask(Mask(v)), Mask(v));
    EXPECT_EQ(Unmask(Mask(v)), v);
  }
}

}  // namespace
}  // namespace rapport::crc32c
