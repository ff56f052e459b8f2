// NumPy .npy files: round trips through numpy itself (Debian's python3-numpy), every dtype and
// header variant numpy writes, and the files it must refuse.
#include "facetrain/io/npy.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "data_testing.h"

namespace {

namespace fs = std::filesystem;
using facetrain::testing::error_message;
using facetrain::testing::run_command;
using facetrain::testing::slurp;
using facetrain::testing::spit;

class Npy : public facetrain::testing::TempDirTest {
 protected:
  // Runs python code with numpy imported as np and D the temp folder; returns its output.
  std::string python(const std::string& code) {
    const std::string script = path("script.py");
    spit(script, "import numpy as np, sys\nD = sys.argv[1]\n" + code);
    auto r = run_command(std::string(FACETRAIN_TEST_PYTHON) + " " + script + " " + dir_.string());
    EXPECT_EQ(r.status, 0) << "python3 with numpy is needed (scripts/setup.sh --tests):\n" << r.output;
    return r.output;
  }
};

TEST_F(Npy, NumpyReadsWhatWeWrite) {
  torch::manual_seed(3);
  facetrain::io::write_npy(path("f32.npy"), torch::randn({5, 7}));
  facetrain::io::write_npy(path("f64.npy"), torch::randn({3}, torch::kDouble));
  facetrain::io::write_npy(path("b.npy"), torch::tensor({true, false, true}));
  facetrain::io::write_npy(path("i64.npy"), torch::arange(6, torch::kLong).reshape({1, 2, 3}));
  facetrain::io::write_npy(path("scalar.npy"), torch::tensor(2.5));
  facetrain::io::write_npy(path("empty.npy"), torch::zeros({0, 4}));
  // numpy checks the header itself (and its 64-byte alignment) when loading; print what it read.
  const std::string out = python(
      "for n in ['f32', 'f64', 'b', 'i64', 'scalar', 'empty']:\n"
      "    a = np.load(D + '/' + n + '.npy')\n"
      "    off = open(D + '/' + n + '.npy', 'rb').read(10)\n"
      "    hl = off[8] | off[9] << 8\n"
      "    assert (10 + hl) % 64 == 0, n\n"
      "    print(n, a.dtype.str, a.shape, repr(a.ravel()[:3].tolist()))\n"
      "print('sum', float(np.load(D + '/f32.npy').astype(np.float64).sum()))\n");
  EXPECT_NE(out.find("f32 <f4 (5, 7)"), std::string::npos) << out;
  EXPECT_NE(out.find("f64 <f8 (3,)"), std::string::npos) << out;
  EXPECT_NE(out.find("b |b1 (3,) [True, False, True]"), std::string::npos) << out;
  EXPECT_NE(out.find("i64 <i8 (1, 2, 3) [0, 1, 2]"), std::string::npos) << out;
  EXPECT_NE(out.find("scalar <f4 () [2.5]"), std::string::npos) << out;
  EXPECT_NE(out.find("empty <f4 (0, 4) []"), std::string::npos) << out;
  const double sum = facetrain::io::read_npy(path("f32.npy")).to(torch::kDouble).sum().item<double>();
  const double py_sum = std::stod(out.substr(out.find("sum ") + 4));
  EXPECT_NEAR(sum, py_sum, 1e-9);
}

TEST_F(Npy, WeReadWhatNumpyWrites) {
  python(
      "a = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7\n"
      "np.save(D + '/c.npy', a)\n"
      "np.save(D + '/fortran.npy', np.asfortranarray(a))\n"
      "np.save(D + '/big.npy', a.astype('>f4'))\n"
      "np.save(D + '/half.npy', a.astype(np.float16))\n"
      "np.save(D + '/u8.npy', np.arange(10, dtype=np.uint8))\n"
      "np.save(D + '/i32.npy', -np.arange(10, dtype=np.int32))\n"
      "np.save(D + '/bool.npy', np.array([True, False]))\n"
      "from numpy.lib import format as F\n"
      "for v in [(2, 0), (3, 0)]:\n"
      "    with open(D + '/v%d.npy' % v[0], 'wb') as f: F.write_array(f, a, version=v)\n");
  const torch::Tensor expected = torch::arange(24, torch::kDouble).reshape({2, 3, 4}) / 7;
  for (const char* name : {"c", "fortran", "v2", "v3"}) {
    torch::Tensor t = facetrain::io::read_npy(path(std::string(name) + ".npy"));
    EXPECT_EQ(t.scalar_type(), torch::kDouble) << name;
    EXPECT_TRUE(torch::equal(t, expected)) << name;
  }
  torch::Tensor big = facetrain::io::read_npy(path("big.npy"));
  EXPECT_EQ(big.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(big, expected.to(torch::kFloat)));
  EXPECT_TRUE(torch::equal(facetrain::io::read_npy(path("half.npy")), expected.to(torch::kHalf)));
  EXPECT_TRUE(torch::equal(facetrain::io::read_npy(path("u8.npy")), torch::arange(10, torch::kByte)));
  EXPECT_TRUE(torch::equal(facetrain::io::read_npy(path("i32.npy")), -torch::arange(10, torch::kInt)));
  EXPECT_TRUE(torch::equal(facetrain::io::read_npy(path("bool.npy")), torch::tensor({true, false})));
}

TEST_F(Npy, BadFilesAreDataErrorsNamingTheFile) {
  using facetrain::DataError;
  const std::string good = path("good.npy");
  facetrain::io::write_npy(good, torch::ones({2, 3}));
  const std::string bytes = slurp(good);
  auto read_bytes = [&](const std::string& name, const std::string& content) {
    spit(path(name), content);
    return error_message<DataError>([&] { facetrain::io::read_npy(path(name)); });
  };
  EXPECT_EQ(error_message<DataError>([&] { facetrain::io::read_npy(path("missing.npy")); }),
            "'" + path("missing.npy") + "': cannot open it: No such file or directory");
  EXPECT_EQ(read_bytes("magic.npy", "PK\x03\x04" + bytes.substr(4)),
            "'" + path("magic.npy") + "': not a readable .npy file: it does not start with the magic \\x93NUMPY");
  EXPECT_EQ(read_bytes("short.npy", bytes.substr(0, bytes.size() - 1)),
            "'" + path("short.npy") +
                "': not a readable .npy file: shape (2, 3) of <f4 needs 24 data bytes, the file has 23");
  EXPECT_EQ(
      read_bytes("long.npy", bytes + "x"),
      "'" + path("long.npy") + "': not a readable .npy file: shape (2, 3) of <f4 needs 24 data bytes, the file has 25");
  EXPECT_NE(read_bytes("header.npy", bytes.substr(0, 40)).find("the header claims 118 bytes"), std::string::npos);
  std::string version = bytes;
  version[6] = 4;
  EXPECT_NE(read_bytes("version.npy", version).find("format version 4.0 (1.0, 2.0 and 3.0 are read)"),
            std::string::npos);
  python(
      "np.save(D + '/object.npy', np.array([{}, 1], dtype=object), allow_pickle=True)\n"
      "np.save(D + '/complex.npy', np.zeros(2, np.complex64))\n"
      "np.save(D + '/struct.npy', np.zeros(2, dtype=[('a', '<f4')]))\n");
  for (const char* name : {"object", "complex", "struct"}) {
    const std::string message =
        error_message<DataError>([&] { facetrain::io::read_npy(path(std::string(name) + ".npy")); });
    EXPECT_NE(message.find("not supported"), std::string::npos) << message;
    EXPECT_NE(message.find(path(std::string(name) + ".npy")), std::string::npos) << message;
  }
  std::string key = bytes;
  key.replace(key.find("'shape'"), 7, "'shapf'");
  EXPECT_NE(read_bytes("key.npy", key).find("unknown key 'shapf'"), std::string::npos);
  // Every truncation is an error, never a crash.
  for (size_t n = 0; n < bytes.size(); ++n) {
    spit(path("cut.npy"), bytes.substr(0, n));
    EXPECT_THROW(facetrain::io::read_npy(path("cut.npy")), DataError) << n;
  }
}

TEST_F(Npy, WriteErrors) {
  EXPECT_THROW(facetrain::io::write_npy(path("x.npy"), torch::Tensor()), facetrain::ArgumentError);
  EXPECT_THROW(facetrain::io::write_npy(path("x.npy"), torch::zeros({2}, torch::kComplexFloat)),
               facetrain::ArgumentError);
  const std::string message = error_message<facetrain::DataError>(
      [&] { facetrain::io::write_npy(path("no/such/dir/x.npy"), torch::zeros({2})); });
  EXPECT_NE(message.find("cannot write '" + path("no/such/dir/x.npy") + "'"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(path("x.npy")));
}

}  // namespace
