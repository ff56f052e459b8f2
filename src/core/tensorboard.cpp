#include "facetrain/core/tensorboard.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "facetrain/core/error.h"

namespace facetrain {
namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1u) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// Numbers files made by this process, so that writers opened in the same second differ.
std::atomic<uint64_t> file_counter{0};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// Protobuf wire format: keys are (field << 3) | wire type; integers little-endian.
constexpr uint32_t kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_key(std::string& out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

// Event fields 1 (wall_time) and 2 (step); proto3 leaves out zero values, so do we.
std::string event_header(double wall_time, int64_t step) {
  std::string out;
  uint64_t bits;
  std::memcpy(&bits, &wall_time, sizeof(bits));
  if (bits != 0) {
    put_key(out, 1, kFixed64);
    put_le(out, bits, 8);
  }
  if (step != 0) {
    put_key(out, 2, kVarint);
    put_varint(out, static_cast<uint64_t>(step));  // negative: ten bytes, two's complement
  }
  return out;
}

// Summary.Value { tag = 1; simple_value = 2 }; simple_value is in a oneof, so always present.
std::string summary_value(const std::string& tag, double value) {
  std::string out;
  put_bytes(out, 1, tag);
  const float f = static_cast<float>(value);
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  put_key(out, 2, kFixed32);
  put_le(out, bits, 4);
  return out;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

EventWriter::EventWriter(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) throw DataError("cannot create TensorBoard folder '" + dir + "': " + error.message());

  const double wall_time = now_seconds();
  char seconds[32];
  std::snprintf(seconds, sizeof(seconds), "%010lld", static_cast<long long>(wall_time));
  const std::string prefix = (std::filesystem::path(dir) / "events.out.tfevents.").string() + seconds + "." +
                             host_name() + "." + std::to_string(::getpid()) + ".";
  // "x": never truncate a file another process (a reused pid) may still be writing; take the next
  // number instead.
  for (int attempt = 0; file_ == nullptr; ++attempt) {
    path_ = prefix + std::to_string(file_counter++);
    file_ = std::fopen(path_.c_str(), "wbxe");
    if (file_ == nullptr && (errno != EEXIST || attempt == 100)) {
      throw DataError("cannot create TensorBoard event file '" + path_ + "': " + std::strerror(errno));
    }
  }

  std::string event = event_header(wall_time, 0);
  put_bytes(event, 3, "brain.Event:2");
  try {
    write_record(event);
    flush();  // an empty-looking run in TensorBoard until the first flush would surprise
  } catch (...) {
    std::fclose(file_);
    std::remove(path_.c_str());
    throw;
  }
}

EventWriter::~EventWriter() {
  if (file_ != nullptr) std::fclose(file_);  // flushes; an error here can only be ignored
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step, std::optional<double> wall_time) {
  add_scalars({{tag, value}}, step, wall_time);
}

void EventWriter::add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                              std::optional<double> wall_time) {
  for (const auto& [tag, value] : values) {
    if (tag.empty()) throw ArgumentError("EventWriter: a scalar needs a non-empty tag ('" + path_ + "')");
  }
  if (values.empty()) return;
  std::string summary;
  for (const auto& [tag, value] : values) put_bytes(summary, 1, summary_value(tag, value));
  std::string event = event_header(wall_time ? *wall_time : now_seconds(), step);
  put_bytes(event, 5, summary);
  write_record(event);
}

void EventWriter::write_record(const std::string& data) {
  std::string record;
  record.reserve(data.size() + 16);
  put_le(record, data.size(), 8);
  put_le(record, masked_crc32c(record.data(), 8), 4);
  record += data;
  put_le(record, masked_crc32c(data.data(), data.size()), 4);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) {
    throw DataError("writing '" + path_ + "' failed: " + std::strerror(errno));
  }
}

void EventWriter::flush() {
  if (std::fflush(file_) != 0) throw DataError("writing '" + path_ + "' failed: " + std::strerror(errno));
}

}  // namespace facetrain
