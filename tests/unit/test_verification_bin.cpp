// Verification .bin files (io/verification_bin.h): round trip, Python reads what we write and
// we read what Python writes at protocols 2-5, and bad files are DataErrors naming the file.
#include "facetrain/io/verification_bin.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "facetrain/core/error.h"
#include "facetrain/io/pickle.h"

namespace fio = facetrain::io;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "facetrain_vbin_" + name + "_" + std::to_string(::getpid()) + ".bin";
}

// The data both sides generate: image i has length lengths[i % 6] and bytes (7 i + k) % 256;
// pair i is genuine when i % 3 == 0. The lengths cover SHORT_BINBYTES, BINBYTES and b''.
const size_t kLengths[] = {0, 1, 255, 256, 3000, 70000};
constexpr int kPairs = 9;
const char* const kPythonData =
    "L = [0, 1, 255, 256, 3000, 70000]\n"
    "images = [bytes((7 * i + k) % 256 for k in range(L[i % 6])) for i in range(18)]\n"
    "issame = [i % 3 == 0 for i in range(9)]\n";

std::vector<std::string> expected_images() {
  std::vector<std::string> out;
  for (int i = 0; i < 2 * kPairs; ++i) {
    std::string s(kLengths[i % 6], '\0');
    for (size_t k = 0; k < s.size(); ++k) s[k] = static_cast<char>((7 * i + static_cast<int>(k)) % 256);
    out.push_back(s);
  }
  return out;
}

std::vector<bool> expected_issame() {
  std::vector<bool> out;
  for (int i = 0; i < kPairs; ++i) out.push_back(i % 3 == 0);
  return out;
}

// Runs a Python program (written to a file) with `arg`; true when it exits 0.
bool run_python(const std::string& program, const std::string& arg) {
  const std::string script = temp_path("script") + ".py";
  {
    std::ofstream out(script);
    out << program;
  }
  const std::string command = std::string(FACETRAIN_TEST_PYTHON) + " " + script + " " + arg;
  const int status = std::system(command.c_str());
  std::remove(script.c_str());
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void expect_data_error(const std::string& path, const std::string& detail) {
  try {
    fio::read_verification_bin(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const facetrain::DataError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(detail), std::string::npos) << what;
  }
}

TEST(VerificationBin, RoundTrip) {
  const std::string path = temp_path("roundtrip");
  fio::write_verification_bin(path, expected_images(), expected_issame());
  const auto bin = fio::read_verification_bin(path);
  EXPECT_EQ(bin.images, expected_images());
  EXPECT_EQ(bin.issame, expected_issame());
  EXPECT_FALSE(fs::exists(path + ".tmp." + std::to_string(::getpid())));
  std::remove(path.c_str());
}

TEST(VerificationBin, PythonReadsWhatWeWrite) {
  const std::string path = temp_path("ours");
  fio::write_verification_bin(path, expected_images(), expected_issame());
  const std::string program = std::string("import pickle, sys\n") + kPythonData +
                              "v = pickle.load(open(sys.argv[1], 'rb'))\n"
                              "ok = type(v) is tuple and len(v) == 2 and type(v[0]) is list and type(v[1]) is list\n"
                              "ok = ok and all(type(x) is bytes for x in v[0]) and all(type(x) is bool for x in v[1])\n"
                              "ok = ok and v[0] == images and v[1] == issame\n"
                              "sys.exit(0 if ok else 1)\n";
  EXPECT_TRUE(run_python(program, path));
  std::remove(path.c_str());
}

TEST(VerificationBin, ReadsWhatPythonWritesAtEveryProtocol) {
  for (int protocol = 2; protocol <= 5; ++protocol) {
    const std::string path = temp_path("py" + std::to_string(protocol));
    const std::string program =
        std::string("import pickle, sys\n") + kPythonData +
        "pickle.dump((images, issame), open(sys.argv[1], 'wb'), protocol=" + std::to_string(protocol) + ")\n";
    ASSERT_TRUE(run_python(program, path)) << protocol;
    const auto bin = fio::read_verification_bin(path);
    EXPECT_EQ(bin.images, expected_images()) << "protocol " << protocol;
    EXPECT_EQ(bin.issame, expected_issame()) << "protocol " << protocol;
    std::remove(path.c_str());
  }
}

TEST(VerificationBin, WriterRefusesBadArguments) {
  const std::string path = temp_path("badargs");
  EXPECT_THROW(fio::write_verification_bin(path, {"a", "b", "c"}, {true}), facetrain::ArgumentError);
  EXPECT_THROW(fio::write_verification_bin(path, {}, {}), facetrain::ArgumentError);
  EXPECT_FALSE(fs::exists(path));
  try {
    fio::write_verification_bin("/nonexistent-dir/x.bin", {"a", "b"}, {true});
    ADD_FAILURE() << "no error";
  } catch (const facetrain::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.bin"), std::string::npos) << e.what();
  }
}

TEST(VerificationBin, BadFilesAreDataErrorsNamingTheFile) {
  namespace pk = facetrain::io::pickle;
  const std::string path = temp_path("bad");

  expect_data_error(temp_path("missing"), "");

  fio::write_verification_bin(path, expected_images(), expected_issame());
  const std::string good = slurp(path);
  spit(path, good.substr(0, good.size() / 2));
  expect_data_error(path, "");  // truncated

  {  // 3 images for 1 pair
    pk::Writer w(3);
    w.empty_list();
    w.mark();
    for (int i = 0; i < 3; ++i) w.bytes("x");
    w.appends();
    w.empty_list();
    w.boolean(true);
    w.append();
    w.tuple(2);
    w.stop();
    spit(path, w.take());
    expect_data_error(path, "3 images for 1 pairs");
  }
  {  // not a pair
    pk::Writer w(3);
    w.empty_dict();
    w.stop();
    spit(path, w.take());
    expect_data_error(path, "expected a pickle of (images, issame)");
  }
  {  // images that are not bytes
    pk::Writer w(3);
    w.empty_list();
    w.integer(1);
    w.append();
    w.integer(2);
    w.append();
    w.empty_list();
    w.boolean(false);
    w.append();
    w.tuple(2);
    w.stop();
    spit(path, w.take());
    expect_data_error(path, "image 0");
  }
  {  // issame that are not bools
    pk::Writer w(3);
    w.empty_list();
    w.bytes("a");
    w.append();
    w.bytes("b");
    w.append();
    w.empty_list();
    w.string("yes");
    w.append();
    w.tuple(2);
    w.stop();
    spit(path, w.take());
    expect_data_error(path, "issame 0");
  }
  {  // no pairs
    pk::Writer w(3);
    w.empty_list();
    w.empty_list();
    w.tuple(2);
    w.stop();
    spit(path, w.take());
    expect_data_error(path, "no pairs");
  }
  {  // a global that is not allowed
    pk::Writer w(3);
    w.global("os", "system");
    w.stop();
    spit(path, w.take());
    expect_data_error(path, "os");
  }
  std::remove(path.c_str());
}

TEST(VerificationBin, NumpyArraysAreRefusedClearly) {
  const std::string path = temp_path("numpy");
  const std::string program =
      "import pickle, sys, numpy as np\n"
      "images = [np.zeros(8, dtype=np.uint8) for _ in range(2)]\n"
      "pickle.dump((images, [True]), open(sys.argv[1], 'wb'), protocol=2)\n";
  ASSERT_TRUE(run_python(program, path));
  expect_data_error(path, "numpy");
  std::remove(path.c_str());
}

}  // namespace
