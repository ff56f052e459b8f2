#pragma once
// TensorBoard event files, scalars only, without TensorFlow or protobuf: the tensorflow.Event
// protos are encoded by hand and framed as TFRecords, which is all TensorBoard reads.
//
// A file is a sequence of records, each
//   uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// whose data is one serialized Event (tensorflow/core/util/event.proto, summary.proto):
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
// The first record of every file is the version event {wall_time, file_version: "brain.Event:2"}.
// As protobuf does for proto3, a zero step or a +0.0 wall time is left out (readers decode 0);
// simple_value, in a oneof, is always written.
//
// Example:
//   facetrain::EventWriter tb("runs/r50/tensorboard");
//   tb.add_scalar("train/loss", 12.7, step);
//   tb.add_scalars({{"train/lr", 0.1}, {"train/samples_per_s", 2400.0}}, step);
//   tb.flush();  // visible to a running `tensorboard --logdir runs`
//
// tests/python/read_tfevents.py reads such files with the standard library only (both CRCs
// checked) and prints them as JSON.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace facetrain {

/// Writes one TensorBoard event file of scalars. Use from one thread at a time; several writers
/// (even on the same folder, in the same second) each get their own file.
class EventWriter {
 public:
  /// Creates `dir` (and its parents) and a new file
  /// `dir/events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid>.<counter>` (TensorBoard's
  /// and PyTorch's naming; the counter is per process), never overwriting an existing one, and
  /// writes the version event. Throws facetrain::DataError "cannot create TensorBoard folder 'DIR':
  /// <reason>" or "cannot create TensorBoard event file 'PATH': <reason>".
  explicit EventWriter(const std::string& dir);
  /// Flushes and closes the file; errors are ignored (call flush() first to see them).
  ~EventWriter();

  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;
  EventWriter(EventWriter&&) = delete;
  EventWriter& operator=(EventWriter&&) = delete;

  /// Appends one scalar `tag` = `value` (stored as float, as TensorBoard's simple_value is) at
  /// `step`; wall_time is now (seconds since the epoch) unless given. NaN and infinities are
  /// written as they are. Throws facetrain::ArgumentError for an empty tag, DataError "writing
  /// 'PATH' failed: <reason>" when the file cannot be written.
  void add_scalar(const std::string& tag, double value, int64_t step, std::optional<double> wall_time = std::nullopt);

  /// Appends several scalars as one event (same step and wall time), in the given order. An empty
  /// list writes nothing. Throws as add_scalar, before writing anything if a tag is empty.
  void add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                   std::optional<double> wall_time = std::nullopt);

  /// Hands the buffered records to the operating system (fflush; no fsync), so that readers see
  /// them. Throws facetrain::DataError "writing 'PATH' failed: <reason>".
  void flush();

  /// The event file being written.
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);

  std::string path_;
  std::FILE* file_ = nullptr;
};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `size` bytes at `data`:
/// crc32c("123456789", 9) == 0xE3069283.
uint32_t crc32c(const void* data, size_t size);

/// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8, crc = crc32c(data, size).
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace facetrain
