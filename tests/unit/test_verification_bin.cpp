// Verification .bin files (io/verification_bin.h): round trip, Python reads what we write and
// we read what Python writes at protocols 2-5 (bytes and numpy arrays), every committed variant
// fixture reads back to its images, issame and variant, and bad files (truncated at any byte,
// corrupt, refused globals and dtypes) are DataErrors naming the file.
#include "facetrain/io/verification_bin.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
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

TEST(VerificationBin, NumpyArraysFromPython) {
  // Python writes the arrays itself, at every protocol (5: _frombuffer), 1-D and as cv2.imencode's (n, 1).
  const std::string path = temp_path("numpy");
  for (int protocol = 2; protocol <= 5; ++protocol) {
    for (const char* reshape : {"", ".reshape(-1, 1)"}) {
      const std::string program = std::string("import pickle, sys, numpy as np\n") + kPythonData +
                                  "arrays = [np.frombuffer(b, dtype=np.uint8).copy()" + reshape +
                                  " for b in images]\n"
                                  "pickle.dump((arrays, issame), open(sys.argv[1], 'wb'), protocol=" +
                                  std::to_string(protocol) + ")\n";
      ASSERT_TRUE(run_python(program, path)) << protocol;
      const auto bin = fio::read_verification_bin(path);
      EXPECT_EQ(bin.images, expected_images()) << "protocol " << protocol << reshape;
      EXPECT_EQ(bin.issame, expected_issame()) << "protocol " << protocol << reshape;
      EXPECT_NE(bin.variant.find("numpy uint8 arrays"), std::string::npos) << bin.variant;
    }
  }
  std::remove(path.c_str());
}

// --- the committed fixtures (tests/python/make_verification_fixtures.py) ---------------------

std::string fixture(const std::string& name) {
  return std::string(FACETRAIN_SOURCE_DIR) + "/tests/data/verification/" + name;
}

// expected.txt: the images and issame of every fixture but py2_protocol2_large.bin, and each
// fixture's variant.
struct Expected {
  std::vector<std::string> images;
  std::vector<bool> issame;
  std::vector<std::pair<std::string, std::string>> variants;  // file, variant
};

Expected read_expected() {
  Expected out;
  std::istringstream in(slurp(fixture("expected.txt")));
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::istringstream fields(line);
    for (std::string c; std::getline(fields, c, '\t');) cols.push_back(c);
    if (cols.at(0) == "image") {
      EXPECT_EQ(std::stoul(cols.at(1)), out.images.size());
      out.images.push_back(slurp(fixture("images/" + cols.at(2))));
      EXPECT_FALSE(out.images.back().empty()) << cols.at(2);
    } else if (cols.at(0) == "issame") {
      for (size_t i = 1; i < cols.size(); ++i) out.issame.push_back(cols[i] == "1");
    } else if (cols.at(0) == "variant") {
      out.variants.emplace_back(cols.at(1), cols.at(2));
    }
  }
  EXPECT_EQ(out.images.size(), 6u);
  EXPECT_EQ(out.issame.size(), 3u);
  EXPECT_GE(out.variants.size(), 10u);
  return out;
}

TEST(VerificationBin, EveryFixtureVariantReadsBack) {
  const Expected expected = read_expected();
  for (const auto& [name, variant] : expected.variants) {
    SCOPED_TRACE(name);
    const auto bin = fio::read_verification_bin(fixture(name));
    EXPECT_EQ(bin.variant, variant);
    if (name == "py2_protocol2_large.bin") {
      // cPickle's layout at scale: 300 distinct str, then memo gets (LONG_BINPUT, LONG_BINGET),
      // APPENDS batches of 1000 and a lone APPEND.
      ASSERT_EQ(bin.images.size(), 2002u);
      ASSERT_EQ(bin.issame.size(), 1001u);
      for (size_t i = 0; i < bin.images.size(); ++i) {
        char want[8];
        std::snprintf(want, sizeof want, "%03zu", i % 300);
        ASSERT_EQ(bin.images[i], want) << i;
      }
      for (size_t i = 0; i < bin.issame.size(); ++i) ASSERT_EQ(bin.issame[i], i % 3 == 0) << i;
      continue;
    }
    EXPECT_EQ(bin.images, expected.images);
    EXPECT_EQ(bin.issame, expected.issame);
  }
}

TEST(VerificationBin, WhatWeWriteIsProtocol4Bytes) {
  const std::string path = temp_path("variant");
  fio::write_verification_bin(path, expected_images(), expected_issame());
  EXPECT_EQ(fio::read_verification_bin(path).variant, "protocol 4 (bytes elements)");
  std::remove(path.c_str());
}

std::string error_of(std::string_view data, const std::string& source) {
  try {
    fio::parse_verification_bin(data, source);
  } catch (const facetrain::DataError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(VerificationBin, TruncationAtEveryByteIsADataError) {
  for (const auto& [name, variant] : read_expected().variants) {
    const std::string data = slurp(fixture(name));
    ASSERT_GT(data.size(), 100u) << name;
    for (size_t n = 0; n < data.size(); ++n) {
      const std::string what = error_of(std::string_view(data).substr(0, n), name);
      ASSERT_NE(what.find("truncated pickle"), std::string::npos) << name << " cut at " << n << ": " << what;
      ASSERT_NE(what.find(name), std::string::npos) << what;
    }
  }
}

TEST(VerificationBin, CorruptBytesGiveDataErrorsNotCrashes) {
  // Each byte of two fixtures replaced by a few values: the read succeeds (the byte was image
  // data) or throws DataError, never anything else.
  for (const char* name : {"py2_protocol2.bin", "numpy_protocol5.bin", "numpy_protocol2.bin"}) {
    const std::string good = slurp(fixture(name));
    size_t errors = 0;
    for (size_t i = 0; i < good.size(); ++i) {
      for (char value : {'\x00', '\x01', '\xff', '.', 'K'}) {
        std::string bad = good;
        if (bad[i] == value) continue;
        bad[i] = value;
        try {
          fio::parse_verification_bin(bad, name);
        } catch (const facetrain::DataError& e) {
          ++errors;
          ASSERT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
        }
      }
    }
    EXPECT_GT(errors, 100u) << name;
  }
}

TEST(VerificationBin, RefusedFixtures) {
  expect_data_error(fixture("bad_float32.bin"),
                    "image 0: a numpy array of dtype 'f4' (float32): only uint8 ('u1') arrays hold encoded images");
  expect_data_error(fixture("bad_rawdata_length.bin"),
                    "image 0: a numpy array of shape (10,) needs 10 bytes, but its data holds 3");
  // os.system pickles as posix.system; it is refused when its opcode is read, never called.
  expect_data_error(fixture("bad_global.bin"), "refusing to load global 'posix.system'");
}

namespace pk = facetrain::io::pickle;

// numpy.dtype(code, False, True) + BUILD, as numpy pickles a dtype.
void write_dtype(pk::Writer& w, const std::string& code, bool fields = false) {
  w.global("numpy", "dtype");
  w.string(code);
  w.boolean(false);
  w.boolean(true);
  w.tuple(3);
  w.reduce();
  w.mark();
  w.integer(3);
  w.string("|");
  w.none();
  if (fields) {
    w.mark();
    w.string("a");
    w.tuple_from_mark();
  } else {
    w.none();
  }
  w.none();
  w.integer(-1);
  w.integer(-1);
  w.integer(0);
  w.tuple_from_mark();
  w.build();
}

struct ArraySpec {
  std::string dtype = "u1";
  std::vector<int64_t> shape;
  std::string raw;
  bool fortran = false;
  bool build = true;
  bool fields = false;
  std::string module = "numpy.core.multiarray";
};

// numpy's _reconstruct spelling of an array (protocols 2-4).
void write_array(pk::Writer& w, const ArraySpec& a) {
  w.global(a.module, "_reconstruct");
  w.global("numpy", "ndarray");
  w.integer(0);
  w.tuple(1);
  w.bytes("b");
  w.tuple(3);
  w.reduce();
  if (!a.build) return;
  w.mark();
  w.integer(1);
  w.mark();
  for (int64_t d : a.shape) w.integer(d);
  w.tuple_from_mark();
  write_dtype(w, a.dtype, a.fields);
  w.boolean(a.fortran);
  w.bytes(a.raw);
  w.tuple_from_mark();
  w.build();
}

// (images, issame) with two images, the first an array `a`, and one pair.
std::string pickle_with_array(const ArraySpec& a) {
  pk::Writer w(3);
  w.empty_list();
  w.mark();
  write_array(w, a);
  w.bytes("second");
  w.appends();
  w.empty_list();
  w.boolean(true);
  w.append();
  w.tuple(2);
  w.stop();
  return w.take();
}

TEST(VerificationBin, NumpyArraysHandMade) {
  ArraySpec column;  // cv2.imencode's shape (n, 1); any C-order shape gives its bytes
  column.shape = {5, 1};
  column.raw = "\xff\xd8xyz";
  auto bin = fio::parse_verification_bin(pickle_with_array(column), "column.bin");
  EXPECT_EQ(bin.images.at(0), column.raw);
  EXPECT_EQ(bin.images.at(1), "second");
  EXPECT_EQ(bin.variant, "protocol 3 (numpy uint8 arrays, numpy.core + bytes elements)");

  ArraySpec numpy2 = column;
  numpy2.module = "numpy._core.multiarray";
  EXPECT_EQ(fio::parse_verification_bin(pickle_with_array(numpy2), "n2.bin").images.at(0), column.raw);

  ArraySpec fortran_1d = column;  // Fortran order with one long dimension: the same bytes
  fortran_1d.fortran = true;
  EXPECT_EQ(fio::parse_verification_bin(pickle_with_array(fortran_1d), "f.bin").images.at(0), column.raw);

  ArraySpec empty;
  empty.shape = {0};
  EXPECT_EQ(fio::parse_verification_bin(pickle_with_array(empty), "e.bin").images.at(0), "");

  auto refused = [](const ArraySpec& a, const std::string& detail) {
    const std::string what = error_of(pickle_with_array(a), "hand.bin");
    EXPECT_NE(what.find("hand.bin: image 0: " + detail), std::string::npos) << what;
  };
  ArraySpec fortran_2d = column;
  fortran_2d.shape = {2, 3};
  fortran_2d.raw = "abcdef";
  fortran_2d.fortran = true;
  refused(fortran_2d, "a Fortran-ordered numpy array of shape (2, 3)");
  ArraySpec no_state = column;
  no_state.build = false;
  refused(no_state, "a numpy array without its state (no BUILD after _reconstruct)");
  ArraySpec longer = column;
  longer.raw += "!";
  refused(longer, "a numpy array of shape (5, 1) needs 5 bytes, but its data holds 6");
  ArraySpec int8 = column;
  int8.dtype = "i1";
  refused(int8, "a numpy array of dtype 'i1' (int8): only uint8 ('u1') arrays hold encoded images");
  ArraySpec structured = column;
  structured.fields = true;
  refused(structured, "numpy dtype 'u1' with a subarray or fields");
  ArraySpec negative = column;
  negative.shape = {-5};
  refused(negative, "a numpy array shape with the negative dimension -5");
  ArraySpec huge = column;
  huge.shape = {int64_t{1} << 40, int64_t{1} << 40};
  refused(huge,
          "a numpy array of shape (1099511627776, 1099511627776) needs more than 2^64 bytes, but its data holds 5");
}

// (images, issame) with two byte images and `issame` written by `write_issame`.
std::string pickle_with_issame(const std::function<void(pk::Writer&)>& write_issame) {
  pk::Writer w(4);
  w.empty_list();
  w.mark();
  w.bytes("a");
  w.bytes("b");
  w.bytes("c");
  w.bytes("d");
  w.appends();
  write_issame(w);
  w.tuple(2);
  w.stop();
  return w.take();
}

TEST(VerificationBin, NumpyIssame) {
  ArraySpec flags;
  flags.dtype = "b1";
  flags.shape = {2};
  flags.raw = std::string("\x01\x00", 2);
  auto bin = fio::parse_verification_bin(pickle_with_issame([&](pk::Writer& w) { write_array(w, flags); }), "b.bin");
  EXPECT_EQ(bin.issame, (std::vector<bool>{true, false}));

  auto scalar = [](pk::Writer& w, const std::string& dtype, const std::string& raw) {
    w.global("numpy.core.multiarray", "scalar");
    write_dtype(w, dtype);
    w.bytes(raw);
    w.tuple(2);
    w.reduce();
  };
  bin = fio::parse_verification_bin(pickle_with_issame([&](pk::Writer& w) {
                                      w.empty_list();
                                      w.mark();
                                      scalar(w, "b1", std::string(1, '\0'));
                                      scalar(w, "b1", "\x01");
                                      w.appends();
                                    }),
                                    "s.bin");
  EXPECT_EQ(bin.issame, (std::vector<bool>{false, true}));

  ArraySpec two = flags;
  two.raw = "\x01\x02";
  EXPECT_NE(error_of(pickle_with_issame([&](pk::Writer& w) { write_array(w, two); }), "x.bin")
                .find("x.bin: issame 1: byte 2 in a bool array"),
            std::string::npos);
  ArraySpec ints = flags;
  ints.dtype = "i1";
  EXPECT_NE(error_of(pickle_with_issame([&](pk::Writer& w) { write_array(w, ints); }), "x.bin")
                .find("x.bin: a numpy array of dtype 'i1' (int8): issame must hold bools ('b1')"),
            std::string::npos);
  const std::string what = error_of(pickle_with_issame([&](pk::Writer& w) {
                                      w.empty_list();
                                      scalar(w, "f4", "abcd");
                                      w.append();
                                      scalar(w, "b1", "\x01");
                                      w.append();
                                    }),
                                    "x.bin");
  EXPECT_NE(what.find("x.bin: issame 0: a numpy scalar of dtype 'f4' (float32) (expected a bool)"), std::string::npos)
      << what;
}

TEST(VerificationBin, OtherGlobalsAreRefusedNotCalled) {
  for (const auto& [module, name] : std::vector<std::pair<std::string, std::string>>{
           {"os", "system"}, {"numpy", "load"}, {"numpy.core.multiarray", "frombuffer"}, {"builtins", "eval"}}) {
    pk::Writer w(4);
    w.empty_list();
    w.global(module, name);
    w.string("x");
    w.tuple(1);
    w.reduce();
    w.append();
    w.stop();
    const std::string what = error_of(w.take(), "g.bin");
    EXPECT_NE(what.find("refusing to load global '" + module + "." + name + "'"), std::string::npos) << what;
    EXPECT_NE(what.find("g.bin"), std::string::npos) << what;
  }
}

TEST(VerificationBin, UnpackWritesIndexedImagesAndIssame) {
  const Expected expected = read_expected();
  const auto bin = fio::read_verification_bin(fixture("numpy_protocol5.bin"));
  const std::string dir = ::testing::TempDir() + "facetrain_vbin_unpack_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fio::unpack_verification_bin(bin, dir + "/sub");
  for (size_t i = 0; i < expected.images.size(); ++i) {
    EXPECT_EQ(slurp(dir + "/sub/" + std::to_string(i) + ".jpg"), expected.images[i]) << i;
  }
  EXPECT_EQ(slurp(dir + "/sub/issame.txt"), "1\n0\n1\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/sub"), fs::directory_iterator()), 7);

  spit(dir + "/file", "x");  // a file where the folder should be
  try {
    fio::unpack_verification_bin(bin, dir + "/file");
    ADD_FAILURE() << "no error";
  } catch (const facetrain::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create the folder '" + dir + "/file'"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
