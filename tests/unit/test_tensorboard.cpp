// TensorBoard event files: CRC-32C against published vectors, records read back by a decoder
// written here (its own bitwise CRC, framing, varints) and by tests/python/read_tfevents.py
// (pure Python, its own CRC), corruption caught, file names, errors.
#include "facetrain/core/tensorboard.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "command_testing.h"
#include "facetrain/core/error.h"

namespace facetrain {
namespace {

namespace fs = std::filesystem;

// ---- An independent reader -------------------------------------------------------------------

// CRC-32C one bit at a time (RFC 3720, appendix B.4), independent of the library's table.
uint32_t bitwise_crc32c(const std::string& s) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : s) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t bitwise_masked(const std::string& s) {
  const uint32_t crc = bitwise_crc32c(s);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

uint64_t read_le(const std::string& s, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(s.at(pos + i))) << (8 * i);
  return v;
}

uint64_t read_varint(const std::string& s, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    const auto b = static_cast<unsigned char>(s.at(pos++));
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) return v;
  }
  throw std::runtime_error("varint longer than 10 bytes");
}

struct DecodedValue {
  std::string tag;
  uint32_t bits = 0;  // simple_value, as stored
  float value() const {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
  }
};

struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::optional<std::string> file_version;
  bool has_summary = false;
  std::vector<DecodedValue> values;
};

struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t scalar = 0;  // wire types 0, 1, 5
  std::string bytes;    // wire type 2
};

std::vector<Field> parse_message(const std::string& s) {
  std::vector<Field> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const uint64_t key = read_varint(s, pos);
    Field f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    if (f.wire == 0) {
      f.scalar = read_varint(s, pos);
    } else if (f.wire == 1 || f.wire == 5) {
      const int n = f.wire == 1 ? 8 : 4;
      f.scalar = read_le(s, pos, n);
      pos += n;
    } else if (f.wire == 2) {
      const uint64_t n = read_varint(s, pos);
      if (pos + n > s.size()) throw std::runtime_error("truncated length-delimited field");
      f.bytes = s.substr(pos, n);
      pos += n;
    } else {
      throw std::runtime_error("unexpected wire type " + std::to_string(f.wire));
    }
    out.push_back(std::move(f));
  }
  return out;
}

void expect_wire(const Field& f, uint32_t wire) {
  if (f.wire != wire) throw std::runtime_error("field " + std::to_string(f.number) + ": wrong wire type");
}

DecodedEvent decode_event(const std::string& data) {
  DecodedEvent e;
  for (const Field& f : parse_message(data)) {
    if (f.number == 1) {
      expect_wire(f, 1);
      std::memcpy(&e.wall_time, &f.scalar, sizeof(double));
    } else if (f.number == 2) {
      expect_wire(f, 0);
      e.step = static_cast<int64_t>(f.scalar);
    } else if (f.number == 3) {
      expect_wire(f, 2);
      e.file_version = f.bytes;
    } else if (f.number == 5) {
      expect_wire(f, 2);
      e.has_summary = true;
      for (const Field& v : parse_message(f.bytes)) {
        if (v.number != 1) throw std::runtime_error("unexpected Summary field");
        expect_wire(v, 2);
        DecodedValue value;
        bool has_simple_value = false;
        for (const Field& g : parse_message(v.bytes)) {
          if (g.number == 1) {
            expect_wire(g, 2);
            value.tag = g.bytes;
          } else if (g.number == 2) {
            expect_wire(g, 5);
            value.bits = static_cast<uint32_t>(g.scalar);
            has_simple_value = true;
          } else {
            throw std::runtime_error("unexpected Summary.Value field");
          }
        }
        if (!has_simple_value) throw std::runtime_error("Summary.Value without simple_value");
        e.values.push_back(value);
      }
    } else {
      throw std::runtime_error("unexpected Event field " + std::to_string(f.number));
    }
  }
  return e;
}

// Every record's data, the framing and both CRCs checked; throws std::runtime_error on a problem.
std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < file.size()) {
    if (pos + 12 > file.size()) throw std::runtime_error("truncated record header");
    const std::string length_bytes = file.substr(pos, 8);
    const uint64_t length = read_le(file, pos, 8);
    if (read_le(file, pos + 8, 4) != bitwise_masked(length_bytes)) throw std::runtime_error("length CRC mismatch");
    if (pos + 12 + length + 4 > file.size()) throw std::runtime_error("truncated record data");
    std::string data = file.substr(pos + 12, length);
    if (read_le(file, pos + 12 + length, 4) != bitwise_masked(data)) throw std::runtime_error("data CRC mismatch");
    out.push_back(std::move(data));
    pos += 16 + length;
  }
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<DecodedEvent> read_events(const std::string& path) {
  std::vector<DecodedEvent> out;
  for (const std::string& data : read_records(slurp(path))) out.push_back(decode_event(data));
  return out;
}

uint32_t float_bits(double value) {
  const float f = static_cast<float>(value);
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

using testing::CommandResult;
using testing::run_command;

CommandResult run_python_reader(const std::string& file) {
  return run_command(std::string(FACETRAIN_TEST_PYTHON) + " " FACETRAIN_SOURCE_DIR "/tests/python/read_tfevents.py '" +
                     file + "'");
}

// A fresh folder per test under testing::TempDir(), removed afterwards.
class TensorBoard : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("facetrain_tensorboard_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// ---- CRC-32C ---------------------------------------------------------------------------------

TEST(TensorBoardCrc, KnownVectors) {
  // The CRC-32C check value (catalogue of parametrised CRC algorithms, "CRC-32/ISCSI") and the
  // RFC 3720 (iSCSI) appendix B.4 test vectors.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xff');
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending += static_cast<char>(i);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(TensorBoardCrc, MaskedForm) {
  // ((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xa282ead8 = 0x2507C60D + 0xA282EAD8, by hand.
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xC78AB0E5u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(masked_crc32c(zeros.data(), zeros.size()), 0x0FD7FFFAu);
  // Every TensorFlow event file whose version record is 24 bytes long starts with
  // 18 00 00 00 00 00 00 00 a3 7f 4b 22: the length and its masked CRC.
  const std::string length24("\x18\0\0\0\0\0\0\0", 8);
  EXPECT_EQ(masked_crc32c(length24.data(), length24.size()), 0x224B7FA3u);
}

TEST(TensorBoardCrc, TableAgreesWithBitwiseOnEveryLength) {
  std::string data;
  uint32_t x = 12345;
  for (int i = 0; i < 300; ++i) {
    x = x * 1103515245u + 12345u;
    data += static_cast<char>(x >> 24);
    const std::string prefix = data.substr(0, i + 1);
    ASSERT_EQ(crc32c(prefix.data(), prefix.size()), bitwise_crc32c(prefix)) << "length " << i + 1;
    ASSERT_EQ(masked_crc32c(prefix.data(), prefix.size()), bitwise_masked(prefix)) << "length " << i + 1;
  }
}

// ---- Writing and reading back ----------------------------------------------------------------

TEST_F(TensorBoard, FirstRecordIsTheVersionEvent) {
  const double before = now_seconds();
  std::string file;
  {
    EventWriter writer(path("run"));
    file = writer.path();
  }
  const double after = now_seconds();
  const auto events = read_events(file);
  ASSERT_EQ(events.size(), 1u);
  ASSERT_TRUE(events[0].file_version.has_value());
  EXPECT_EQ(*events[0].file_version, "brain.Event:2");
  EXPECT_GE(events[0].wall_time, before - 1e-3);
  EXPECT_LE(events[0].wall_time, after + 1e-3);
  EXPECT_EQ(events[0].step, 0);
  EXPECT_FALSE(events[0].has_summary);
  // "brain.Event:2" (13 bytes) + keys, lengths and a double: 24 bytes, like TensorFlow's own.
  EXPECT_EQ(slurp(file).size(), 16u + 24u);
}

TEST_F(TensorBoard, ScalarEventBytesAreTheProtobufEncoding) {
  std::string file;
  {
    EventWriter writer(path("run"));
    writer.add_scalar("a", 2.0, 3, 1.5);
    file = writer.path();
  }
  const auto records = read_records(slurp(file));
  ASSERT_EQ(records.size(), 2u);
  // Hand-encoded from the protobuf wire format: 09 <1.5 as fixed64> | 10 03 (step 3) |
  // 2a 0a (summary, 10 bytes) 0a 08 (value, 8 bytes) 0a 01 'a' (tag) 15 <2.0f as fixed32>.
  const std::string expected(
      "\x09\0\0\0\0\0\0\xf8\x3f"
      "\x10\x03"
      "\x2a\x0a\x0a\x08\x0a\x01"
      "a"
      "\x15\0\0\0\x40",
      23);
  EXPECT_EQ(records[1], expected);
}

TEST_F(TensorBoard, ReadsBackExactlyWhatWasWritten) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::string file;
  {
    EventWriter writer(path("nested/run"));
    writer.add_scalar("train/loss", 12.75, 1, 1700000000.125);
    writer.add_scalar("train/lr", 0.1, 0, 1700000001.5);                       // step 0 is left out
    writer.add_scalar("train/loss", -3.5e-7, int64_t{1} << 40, 1700000002.0);  // a long varint
    writer.add_scalar("weird", nan, -7, 1700000003.25);                        // a ten-byte varint
    writer.add_scalars({{"acc/lfw", 0.99833}, {"acc/cfp_fp", inf}, {"acc/agedb", -inf}, {"zero", 0.0}}, 42,
                       1700000004.0);
    writer.add_scalar("caf\xc3\xa9/\xce\xb1", 1e30, 43, 1700000005.0);  // UTF-8 tag
    file = writer.path();
  }  // the destructor flushes
  const auto events = read_events(file);
  ASSERT_EQ(events.size(), 7u);
  EXPECT_EQ(events[0].file_version.value_or(""), "brain.Event:2");
  for (size_t i = 1; i < events.size(); ++i) EXPECT_FALSE(events[i].file_version.has_value()) << i;

  EXPECT_EQ(events[1].wall_time, 1700000000.125);
  EXPECT_EQ(events[1].step, 1);
  ASSERT_EQ(events[1].values.size(), 1u);
  EXPECT_EQ(events[1].values[0].tag, "train/loss");
  EXPECT_EQ(events[1].values[0].value(), 12.75f);

  EXPECT_EQ(events[2].wall_time, 1700000001.5);
  EXPECT_EQ(events[2].step, 0);
  ASSERT_EQ(events[2].values.size(), 1u);
  EXPECT_EQ(events[2].values[0].tag, "train/lr");
  EXPECT_EQ(events[2].values[0].value(), 0.1f);  // stored as float: 0.100000001...
  EXPECT_NE(static_cast<double>(events[2].values[0].value()), 0.1);

  EXPECT_EQ(events[3].step, int64_t{1} << 40);
  EXPECT_EQ(events[3].values.at(0).value(), -3.5e-7f);
  EXPECT_EQ(events[3].wall_time, 1700000002.0);

  EXPECT_EQ(events[4].step, -7);
  EXPECT_EQ(events[4].values.at(0).tag, "weird");
  EXPECT_TRUE(std::isnan(events[4].values.at(0).value()));
  EXPECT_EQ(events[4].values.at(0).bits, float_bits(nan));

  EXPECT_EQ(events[5].step, 42);
  EXPECT_EQ(events[5].wall_time, 1700000004.0);
  ASSERT_EQ(events[5].values.size(), 4u);
  EXPECT_EQ(events[5].values[0].tag, "acc/lfw");
  EXPECT_EQ(events[5].values[0].value(), 0.99833f);
  EXPECT_EQ(events[5].values[1].tag, "acc/cfp_fp");
  EXPECT_EQ(events[5].values[1].value(), std::numeric_limits<float>::infinity());
  EXPECT_EQ(events[5].values[2].tag, "acc/agedb");
  EXPECT_EQ(events[5].values[2].value(), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(events[5].values[3].tag, "zero");
  EXPECT_EQ(events[5].values[3].bits, 0u);

  EXPECT_EQ(events[6].step, 43);
  ASSERT_EQ(events[6].values.size(), 1u);
  EXPECT_EQ(events[6].values[0].tag, "caf\xc3\xa9/\xce\xb1");
  EXPECT_EQ(events[6].values[0].value(), 1e30f);
}

TEST_F(TensorBoard, DefaultWallTimeIsNow) {
  EventWriter writer(path("run"));
  const double before = now_seconds();
  writer.add_scalar("x", 1.0, 5);
  writer.add_scalars({{"y", 2.0}, {"z", 3.0}}, 6);
  const double after = now_seconds();
  writer.flush();
  const auto events = read_events(writer.path());
  ASSERT_EQ(events.size(), 3u);
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_GE(events[i].wall_time, before - 1e-3) << i;
    EXPECT_LE(events[i].wall_time, after + 1e-3) << i;
    EXPECT_GT(events[i].wall_time, 1.5e9) << i;  // seconds, not milliseconds
    EXPECT_LT(events[i].wall_time, 1e10) << i;
  }
  EXPECT_EQ(events[2].values.size(), 2u);
  EXPECT_EQ(events[2].step, 6);
}

TEST_F(TensorBoard, FlushMakesRecordsVisibleWhileWriting) {
  EventWriter writer(path("run"));
  EXPECT_EQ(read_events(writer.path()).size(), 1u);  // the version event is flushed at once
  writer.add_scalar("loss", 1.0, 1, 10.0);
  writer.add_scalar("loss", 0.5, 2, 11.0);
  writer.flush();
  const auto events = read_events(writer.path());
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].step, 2);
  EXPECT_EQ(events[2].values.at(0).value(), 0.5f);
}

TEST_F(TensorBoard, EmptyTagIsAnArgumentErrorAndWritesNothing) {
  EventWriter writer(path("run"));
  EXPECT_THROW(writer.add_scalar("", 1.0, 1), ArgumentError);
  EXPECT_THROW(writer.add_scalars({{"ok", 1.0}, {"", 2.0}}, 1), ArgumentError);
  writer.add_scalars({}, 3);  // nothing to write
  writer.flush();
  EXPECT_EQ(read_events(writer.path()).size(), 1u);
}

// ---- The Python reader -----------------------------------------------------------------------

TEST_F(TensorBoard, PythonReaderAgrees) {
  struct Written {
    std::vector<std::pair<std::string, double>> values;
    int64_t step;
    double wall_time;
  };
  const std::vector<Written> written = {
      {{{"train/loss", 23.456789}}, 0, 1712345678.901},
      {{{"train/loss", 1.0 / 3.0}, {"train/lr", 0.0125}}, 100, 1712345679.5},
      {{{"eval/lfw", std::numeric_limits<double>::quiet_NaN()}}, -1, 1712345680.25},
      {{{"eval/agedb", -std::numeric_limits<double>::infinity()}, {"t\xc3\xa9", 1e-40}}, int64_t{1} << 50, 1e9},
  };
  std::string file;
  {
    EventWriter writer(path("run"));
    for (const auto& w : written) writer.add_scalars(w.values, w.step, w.wall_time);
    file = writer.path();
  }
  const CommandResult r = run_python_reader(file);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto json = nlohmann::json::parse(r.output);
  ASSERT_EQ(json.at("records").get<int>(), 1 + static_cast<int>(written.size())) << r.output;
  const auto& events = json.at("events");
  ASSERT_EQ(events.size(), 1 + written.size());
  EXPECT_EQ(events[0].at("file_version").get<std::string>(), "brain.Event:2");
  EXPECT_TRUE(events[0].at("values").empty());
  EXPECT_EQ(events[0].at("wall_time").get<double>(), read_events(file).at(0).wall_time);
  for (size_t i = 0; i < written.size(); ++i) {
    const auto& e = events[i + 1];
    SCOPED_TRACE("event " + std::to_string(i + 1) + ": " + e.dump());
    EXPECT_FALSE(e.contains("file_version"));
    EXPECT_EQ(e.at("step").get<int64_t>(), written[i].step);
    EXPECT_EQ(e.at("wall_time").get<double>(), written[i].wall_time);  // repr round-trips exactly
    ASSERT_EQ(e.at("values").size(), written[i].values.size());
    for (size_t k = 0; k < written[i].values.size(); ++k) {
      const auto& v = e.at("values")[k];
      const auto& [tag, value] = written[i].values[k];
      EXPECT_EQ(v.at("tag").get<std::string>(), tag);
      EXPECT_EQ(v.at("simple_value_bits").get<uint32_t>(), float_bits(value));
      if (std::isnan(value)) {
        EXPECT_EQ(v.at("simple_value"), "NaN");
      } else if (std::isinf(value)) {
        EXPECT_EQ(v.at("simple_value"), value > 0 ? "Infinity" : "-Infinity");
      } else {
        EXPECT_EQ(v.at("simple_value").get<double>(), static_cast<double>(static_cast<float>(value)));
      }
    }
  }
}

TEST_F(TensorBoard, PythonReaderRejectsCorruption) {
  std::string file;
  {
    EventWriter writer(path("run"));
    writer.add_scalar("loss", 1.25, 1, 100.0);
    writer.add_scalar("loss", 0.75, 2, 101.0);
    file = writer.path();
  }
  const std::string good = slurp(file);
  ASSERT_EQ(run_python_reader(file).status, 0);    // so that the failures below are the corruption's
  const size_t second = 16 + read_le(good, 0, 8);  // offset of record 1

  struct Case {
    const char* name;
    std::string bytes;
    const char* message;
  };
  std::vector<Case> cases;
  std::string bytes = good;
  bytes[second + 12 + 3] ^= 0x01;  // one bit of record 1's data
  cases.push_back({"data bit", bytes, "data CRC mismatch"});
  bytes = good;
  bytes[second + 1] ^= 0x40;  // record 1's length
  cases.push_back({"length byte", bytes, "length CRC mismatch"});
  bytes = good;
  bytes[good.size() - 1] ^= 0xff;  // the last record's data CRC itself
  cases.push_back({"stored CRC", bytes, "data CRC mismatch"});
  cases.push_back({"truncated", good.substr(0, good.size() - 5), "truncated"});

  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string corrupt = path(std::string("corrupt_") + c.name);
    spit(corrupt, c.bytes);
    const CommandResult r = run_python_reader(corrupt);
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(corrupt), std::string::npos) << r.output;  // names the file
    EXPECT_THROW(read_records(c.bytes), std::runtime_error);           // and the C++ reader agrees
  }
  // The data flip is in record 1, at its offset.
  const CommandResult r = run_python_reader(path("corrupt_data bit"));
  EXPECT_NE(r.output.find("record 1 at offset " + std::to_string(second)), std::string::npos) << r.output;
}

// ---- Files and errors ------------------------------------------------------------------------

TEST_F(TensorBoard, UncreatableFolderIsADataErrorNamingIt) {
  spit(path("plain"), "a regular file");
  const std::string dir = path("plain") + "/tensorboard";
  try {
    EventWriter writer(dir);
    FAIL() << "no exception; wrote " << writer.path();
  } catch (const DataError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'" + dir + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("cannot create TensorBoard folder"), std::string::npos) << message;
  }
  EXPECT_TRUE(fs::is_regular_file(path("plain")));
}

TEST_F(TensorBoard, WritersOnOneFolderGetTheirOwnFiles) {
  const auto before = static_cast<long long>(now_seconds());
  EventWriter first(path("run"));
  EventWriter second(path("run"));
  const auto after = static_cast<long long>(now_seconds());
  ASSERT_NE(first.path(), second.path());

  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof(host) - 1), 0);
  struct Name {
    long long seconds;
    std::string host;
    long pid;
    unsigned long long counter;
  };
  auto parse = [&](const std::string& p) {
    EXPECT_EQ(fs::path(p).parent_path(), dir_ / "run") << p;
    const std::string name = fs::path(p).filename().string();
    const std::string prefix = "events.out.tfevents.";
    EXPECT_EQ(name.rfind(prefix, 0), 0u) << name;
    const std::string rest = name.substr(prefix.size());  // seconds.host.pid.counter; host may hold dots
    EXPECT_EQ(rest.find('.'), 10u) << name;               // ten digits, as TensorFlow writes them
    const size_t last = rest.rfind('.'), pid_dot = rest.rfind('.', last - 1);
    return Name{std::stoll(rest.substr(0, 10)), rest.substr(11, pid_dot - 11), std::stol(rest.substr(pid_dot + 1)),
                std::stoull(rest.substr(last + 1))};
  };
  const Name a = parse(first.path()), b = parse(second.path());
  for (const Name& n : {a, b}) {
    EXPECT_GE(n.seconds, before);
    EXPECT_LE(n.seconds, after);
    EXPECT_EQ(n.host, host);
    EXPECT_EQ(n.pid, static_cast<long>(::getpid()));
  }
  EXPECT_EQ(b.counter, a.counter + 1);
  EXPECT_TRUE(fs::is_regular_file(first.path()));
  EXPECT_TRUE(fs::is_regular_file(second.path()));

  first.add_scalar("who", 1.0, 1, 5.0);
  second.add_scalar("who", 2.0, 1, 5.0);
  first.flush();
  second.flush();
  EXPECT_EQ(read_events(first.path()).at(1).values.at(0).value(), 1.0f);
  EXPECT_EQ(read_events(second.path()).at(1).values.at(0).value(), 2.0f);
}

}  // namespace
}  // namespace facetrain
