// One libFuzzer target; RAPPORT_FUZZ_ENTRY names the entry point
// (tests/fuzz/entry_points.h). Built only with RAPPORT_BUILD_FUZZERS (clang).
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/entry_points.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rapport::fuzz::RAPPORT_FUZZ_ENTRY(data, size);
  return 0;
}
