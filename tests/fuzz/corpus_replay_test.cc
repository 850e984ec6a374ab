// Runs every committed fuzz corpus (tests/fuzz/corpus/<target>/) through the
// same entry points as the libFuzzer targets, with the regular compiler: a
// crash found once stays fixed, and the seeds stay valid inputs.
#include <dirent.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/entry_points.h"

namespace rapport::fuzz {
namespace {

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
    }
    closedir(d);
  }
  return out;
}

class CorpusReplay : public ::testing::TestWithParam<Target> {};

TEST_P(CorpusReplay, EveryInputRunsCleanly) {
  const std::string dir = std::string(RAPPORT_FUZZ_CORPUS_DIR) + "/" + GetParam().name;
  std::vector<std::string> files = Files(dir);
  ASSERT_GE(files.size(), 3u) << "seed corpus missing in " << dir;
  for (const std::string& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    const std::string bytes = buf.str();
    SCOPED_TRACE(path);
    GetParam().fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Fuzz, CorpusReplay, ::testing::ValuesIn(kTargets),
                         [](const ::testing::TestParamInfo<Target>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace rapport::fuzz
