// Helpers for the storage tests: scratch directories, a deterministic
// sequence of writes (batches and clock moves) and the reference states it
// goes through.
#ifndef RAPPORT_TESTS_STORAGE_STORAGE_TEST_UTIL_H_
#define RAPPORT_TESTS_STORAGE_STORAGE_TEST_UTIL_H_

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "rapport/engine.h"
#include "rapport/testing/generator.h"

namespace rapport::test {

// A fresh directory, removed (with its files) on destruction. Under
// RAPPORT_TEST_TMPDIR, else /dev/shm when there is one (fsync is free on
// tmpfs, and a process crash — what these tests model — behaves the same),
// else /tmp.
class ScratchDir {
 public:
  ScratchDir() {
    std::string root = "/tmp";
    if (const char* env = std::getenv("RAPPORT_TEST_TMPDIR")) {
      root = env;
    } else if (access("/dev/shm", W_OK) == 0) {
      root = "/dev/shm";
    }
    std::string tmpl = root + "/rapport-storage-XXXXXX";
    char* made = mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr) << "mkdtemp under " << root;
    path_ = tmpl;
  }
  ~ScratchDir() { RemoveAll(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  // A path inside; `dir()` is where engines live (created by Open).
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

  static void RemoveAll(const std::string& path) {
    if (DIR* d = opendir(path.c_str())) {
      while (struct dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        std::string p = path + "/" + name;
        struct stat st;
        if (lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
          RemoveAll(p);
        } else {
          unlink(p.c_str());
        }
      }
      closedir(d);
    }
    rmdir(path.c_str());
  }

 private:
  std::string path_;
};

inline std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

inline std::string ReadAll(const std::string& path) {
  std::string out;
  if (FILE* f = fopen(path.c_str(), "rb")) {
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    fclose(f);
  }
  return out;
}

inline void WriteAll(const std::string& path, const std::string& data) {
  FILE* f = fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(fwrite(data.data(), 1, data.size(), f), data.size());
  fclose(f);
}

inline void CopyDir(const std::string& from, const std::string& to) {
  mkdir(to.c_str(), 0755);
  for (const std::string& name : ListNames(from)) {
    if (name == "LOCK") continue;
    WriteAll(to + "/" + name, ReadAll(from + "/" + name));
  }
}

// The files of `dir` whose names start with `prefix`, as paths.
inline std::vector<std::string> FilesWithPrefix(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& name : ListNames(dir)) {
    if (name.rfind(prefix, 0) == 0) out.push_back(dir + "/" + name);
  }
  return out;
}

// A deterministic sequence of writes: op i is a batch of `batch` generated
// events, and every fifth op a clock move to the last event's time.
class Ops {
 public:
  Ops(int64_t events, size_t batch, uint64_t seed = 7) {
    testing::GeneratorOptions o;
    o.seed = seed;
    o.max_events = events;
    events_ = testing::GenerateStream(o);
    for (size_t i = 0; i < events_.size(); i += batch) {
      Op op;
      op.begin = i;
      op.end = std::min(events_.size(), i + batch);
      ops_.push_back(op);
      if (ops_.size() % 5 == 4) {
        Op adv;
        adv.advance_us = events_[op.end - 1].occurred_at_us();
        ops_.push_back(adv);
      }
    }
  }
  size_t size() const { return ops_.size(); }
  bool is_advance(size_t i) const { return ops_[i].advance_us != 0; }
  size_t events_in(size_t i) const { return ops_[i].end - ops_[i].begin; }
  const v1::Event& event(size_t op, size_t k) const { return events_[ops_[op].begin + k]; }

  // Applies op i. The status of the write.
  absl::Status Apply(Engine& engine, size_t i) const {
    const Op& op = ops_[i];
    if (op.advance_us != 0) return engine.Advance(op.advance_us).status();
    auto r = engine.IngestBatch(absl::MakeConstSpan(events_).subspan(op.begin, op.end - op.begin));
    return r.status();
  }

 private:
  struct Op {
    size_t begin = 0, end = 0;
    int64_t advance_us = 0;
  };
  std::vector<v1::Event> events_;
  std::vector<Op> ops_;
};

// Snapshot bytes of an in-memory engine after ops [0, n), for n = 0..max.
inline std::vector<std::string> ReferenceStates(const Ops& ops, size_t max,
                                                const v1::EngineConfig& config = {}) {
  std::vector<std::string> out;
  auto engine = *Engine::Create(config);
  out.push_back(*engine->Snapshot());
  for (size_t i = 0; i < max; ++i) {
    EXPECT_TRUE(ops.Apply(*engine, i).ok());
    out.push_back(*engine->Snapshot());
  }
  return out;
}

inline OpenOptions Options(SyncMode sync = SyncMode::kPerBatch) {
  OpenOptions o;
  o.sync = sync;
  o.snapshot_every_bytes = 0;
  return o;
}

}  // namespace rapport::test

#endif  // RAPPORT_TESTS_STORAGE_STORAGE_TEST_UTIL_H_
