#pragma once
// Helpers shared by the data-layer tests (RecordIO, datasets, loader, tools, synthetic faces):
// whole-file reads and writes, the committed RecordIO fixtures and their manifests, and the
// message of an expected facetrain exception. Header-only: each layer's test executable includes it.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "command_testing.h"
#include "facetrain/core/error.h"
#include "facetrain/data/recordio.h"

namespace facetrain::testing {

/// The whole file; a test failure if it cannot be opened.
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Writes `bytes` as the file `path`, creating its folder. Replaces the file with a new one:
/// rewriting it in place (O_TRUNC) would make ext4 flush it to disk on close (auto_da_alloc),
/// ~3 ms per file.
inline void spit(const std::string& path, const std::string& bytes) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::remove(path.c_str());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(out.good()) << path;
}

/// The message of the `E` that `f` throws; a test failure if it throws nothing or anything else.
template <class E = facetrain::Error>
std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected another exception type, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected an exception, nothing was thrown";
  return {};
}

/// A committed RecordIO fixture: tests/data/recordio/NAME (written by
/// tests/python/make_recordio_fixtures.py).
inline std::string recordio_fixture(const std::string& name) {
  return std::string(FACETRAIN_SOURCE_DIR) + "/tests/data/recordio/" + name;
}

/// "0aff" -> "\x0a\xff"; "-" -> "".
inline std::string unhex(const std::string& hex) {
  if (hex == "-") return {};
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

/// One line of a fixture's manifest NAME.txt (see make_recordio_fixtures.py's docstring).
struct ManifestRecord {
  uint64_t key = 0;
  uint64_t offset = 0;
  std::string payload;
  bool image = false;         ///< a packed image record (else a raw payload)
  data::RecordHeader header;  ///< image records
  std::string image_bytes;    ///< image records
};

inline std::vector<ManifestRecord> read_manifest(const std::string& name) {
  std::istringstream in(slurp(recordio_fixture(name + ".txt")));
  std::vector<ManifestRecord> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::istringstream fields(line);
    for (std::string c; std::getline(fields, c, '\t');) cols.push_back(c);
    ManifestRecord e;
    e.key = std::stoull(cols.at(0));
    e.offset = std::stoull(cols.at(1));
    e.payload = unhex(cols.at(2));
    e.image = cols.at(3) == "image";
    if (e.image) {
      e.header.flag = static_cast<uint32_t>(std::stoul(cols.at(4)));
      e.header.label = std::stof(cols.at(5));
      e.header.id = std::stoull(cols.at(6));
      e.header.id2 = std::stoull(cols.at(7));
      if (cols.at(8) != "-") {
        std::istringstream labels(cols.at(8));
        for (std::string v; std::getline(labels, v, ',');) e.header.labels.push_back(std::stof(v));
      }
      e.image_bytes = unhex(cols.at(9));
    }
    out.push_back(std::move(e));
  }
  EXPECT_FALSE(out.empty()) << name;
  return out;
}

/// A test fixture with its own empty folder, removed afterwards: dir_ is
/// $TMPDIR/facetrain_<suite>_<test>_<pid>, path(name) a file in it.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() / (std::string("facetrain_") + info->test_suite_name() + "_" +
                                                     info->name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

}  // namespace facetrain::testing
