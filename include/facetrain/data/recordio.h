#pragma once
// MXNet RecordIO (formats.md section 1): the `train.rec` + `train.idx` pairs that insightface
// distributes (faces_emore, ms1m-retinaface, glint360k, ...) and that im2rec writes.
//
// File format, all little-endian:
//   .rec   a sequence of chunks `uint32 magic (0xced7230a) | uint32 lrec | payload | zero pad to 4`
//          with cflag = lrec >> 29 and length = lrec & (2^29 - 1). cflag 0 is a whole record;
//          dmlc-core's writer splits a payload at every 4-aligned offset where the magic occurs,
//          drops those 4 bytes and writes the pieces as chunks with cflag 1 (first), 2 (middle),
//          3 (last); the reader re-inserts the magic between them. A record starts at a chunk
//          with cflag 0 or 1; every chunk starts at a multiple of 4.
//   .idx   text lines `key \t offset \n` in write order; offset = byte position of the record's
//          first chunk. Keys are unsigned decimals, unique, not necessarily sorted.
//   payload  IRHeader {uint32 flag; float32 label; uint64 id; uint64 id2} (24 bytes), then `flag`
//          float32 labels when flag > 0, then the encoded image (JPEG normally).
//
// insightface's MS1M layout: key 0 is a meta record (labels [N + 1, N + 1 + K], no image), keys
// 1..N are images, keys N+1..N+K are identity records (labels [first image key, end image key),
// no image). The meta record may be stored physically after the images. Files without a meta
// record ("flat": im2rec, shuffle_rec) have an image under every key. See detect_layout().
//
// Example:
//   facetrain::data::RecordIOReader rec("faces_emore/train.rec");      // + train.idx
//   auto layout = facetrain::data::detect_layout(rec);                   // kMs1m, 5822653 images
//   auto r = rec.read(layout.image_keys[0]);                             // thread-safe
//   int64_t cls = static_cast<int64_t>(r.header.primary_label());       // r.image: JPEG bytes
//
//   facetrain::data::RecordIOWriter out("copy.rec");                     // + copy.idx
//   out.write(1, facetrain::data::RecordHeader::with_labels({3.f, 1.f}, 1), jpeg_bytes);
//   out.finish();                                                         // atomic rename

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "facetrain/core/error.h"

namespace facetrain::data {

/// The RecordIO chunk magic, stored little-endian as bytes 0a 23 d7 ce.
constexpr uint32_t kRecordIOMagic = 0xced7230a;
/// Payloads (and chunks) are shorter than this: the 29 bits of lrec's length field.
constexpr uint64_t kMaxRecordPayload = uint64_t{1} << 29;
/// Size of the packed IRHeader (struct format 'IfQQ').
constexpr size_t kIRHeaderSize = 24;

/// The header of an image record (mxnet.recordio.IRHeader) plus its label array.
/// Invariant for pack_record: flag == labels.size(). MXNet's pack() writes label = 0 when the
/// label is an array, which with_labels() reproduces.
struct RecordHeader {
  uint32_t flag = 0;          ///< number of float32 labels following the header (0: scalar label)
  float label = 0.0f;         ///< the scalar label; 0 when flag > 0 in files MXNet wrote
  uint64_t id = 0;            ///< free; insightface stores the key
  uint64_t id2 = 0;           ///< free; usually 0
  std::vector<float> labels;  ///< `flag` labels, e.g. [class, 1.0] or the meta [N + 1, N + 1 + K]

  /// The class of an image record: labels[0] when there is a label array, else label
  /// (what arcface_torch's MXFaceDataset uses).
  float primary_label() const { return labels.empty() ? label : labels[0]; }

  /// As mxnet.recordio.pack with a scalar label: flag 0.
  static RecordHeader scalar(float label, uint64_t id = 0, uint64_t id2 = 0);
  /// As mxnet.recordio.pack with an array label: flag = labels.size(), label 0.
  static RecordHeader with_labels(std::vector<float> labels, uint64_t id = 0, uint64_t id2 = 0);
};

/// Packs header and image into a record payload: the 24-byte IRHeader, header.flag float32
/// labels, the image bytes. Byte-identical to mxnet.recordio.pack for headers made by
/// RecordHeader::scalar / with_labels.
/// Throws facetrain::ArgumentError if header.flag != header.labels.size() or if the payload would
/// reach kMaxRecordPayload bytes.
std::string pack_record(const RecordHeader& header, std::string_view image);

/// Splits a record payload into header (with its labels) and image bytes (the rest), as
/// mxnet.recordio.unpack. Throws facetrain::DataError when the payload is shorter than the
/// IRHeader or than the flag labels it announces (the message says by how much, not where:
/// RecordIOReader adds the file, key and offset).
void unpack_record(std::string_view payload, RecordHeader& header, std::string& image);

/// One record read back.
struct Record {
  RecordHeader header;
  std::string image;            ///< the encoded image (may be empty: meta and identity records)
  std::optional<uint64_t> key;  ///< the .idx key, when known
  uint64_t offset = 0;          ///< byte position of the record's first chunk in the .rec
};

/// The .idx path that goes with a .rec path: "x/train.rec" -> "x/train.idx"; a path not ending in
/// ".rec" gets ".idx" appended.
std::string index_path_for(const std::string& rec_path);

/// Reads a .rec file and, when present, its .idx.
///
/// Random access (read, read_at, read_payload*) uses pread on one file descriptor and holds no
/// position: it is safe to call from several threads at once. The sequential mode (next, rewind)
/// walks the .rec from its start without the index, through a private buffer; it is not
/// thread-safe (use one reader per streaming thread, or random access).
///
/// Every problem with the data is a facetrain::DataError whose message names the .rec (or .idx)
/// file and the record's key and/or byte offset (or the .idx line): a missing file, a truncated
/// chunk header or payload, a bad magic, an invalid cflag, a chunk sequence that starts with a
/// middle/last chunk or never ends, an idx offset past the end of the .rec or not at a record
/// start, a malformed or duplicate idx line, a payload shorter than its IRHeader and labels.
/// Allocations are bounded by the file size; nothing reads out of bounds.
class RecordIOReader {
 public:
  /// Opens `rec_path`. `idx_path` empty: index_path_for(rec_path), used if it exists; given: it
  /// must exist. The whole .idx is parsed here (offsets are checked to lie inside the .rec and on
  /// a 4-byte boundary; that a record really starts there is checked when it is read).
  explicit RecordIOReader(std::string rec_path, std::string idx_path = {});
  ~RecordIOReader();
  RecordIOReader(RecordIOReader&& other) noexcept;
  RecordIOReader& operator=(RecordIOReader&& other) noexcept;
  RecordIOReader(const RecordIOReader&) = delete;
  RecordIOReader& operator=(const RecordIOReader&) = delete;

  const std::string& path() const { return rec_path_; }
  /// The .idx used; empty when there is none.
  const std::string& index_path() const { return idx_path_; }
  bool has_index() const { return !idx_path_.empty(); }
  /// Size of the .rec in bytes, when it was opened.
  uint64_t file_size() const { return file_size_; }

  /// Number of keys in the index (0 without one).
  size_t size() const { return keys_.size(); }
  /// Keys in .idx order (write order for MXNet's writer). Empty without an index.
  const std::vector<uint64_t>& keys() const { return keys_; }
  /// Record offsets, parallel to keys().
  const std::vector<uint64_t>& offsets() const { return offsets_; }
  bool contains(uint64_t key) const;
  /// The offset of `key`; throws facetrain::DataError if the index lacks it.
  uint64_t offset_of(uint64_t key) const;

  /// The record under `key` (thread-safe). Throws facetrain::DataError for an unknown key or bad data.
  Record read(uint64_t key) const;
  /// The record whose first chunk is at `offset` (thread-safe); key left empty.
  Record read_at(uint64_t offset) const;
  /// The raw payload (chunks joined, magic re-inserted) under `key` (thread-safe).
  std::string read_payload(uint64_t key) const;
  /// The raw payload of the record at `offset` (thread-safe); `next_offset`, if given, receives
  /// the offset just past the record (its padding included).
  std::string read_payload_at(uint64_t offset, uint64_t* next_offset = nullptr) const;

  /// Sequential mode: the next record in file order, starting at offset 0. Its key is filled in
  /// when the index lists its offset. Returns false at the end of the file. Not thread-safe.
  bool next(Record& out);
  /// As next(), the raw payload only.
  bool next_payload(std::string& payload, uint64_t* offset = nullptr);
  /// Restarts the sequential mode at offset 0.
  void rewind();

 private:
  struct SequentialState;
  void read_index();
  std::string read_payload_impl(uint64_t offset, std::optional<uint64_t> key, uint64_t* next_offset) const;
  Record make_record(std::string payload, std::optional<uint64_t> key, uint64_t offset) const;
  std::optional<uint64_t> key_at_offset(uint64_t offset) const;
  std::string where(std::optional<uint64_t> key, uint64_t offset) const;

  std::string rec_path_;
  std::string idx_path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  std::vector<uint64_t> keys_;     // idx order
  std::vector<uint64_t> offsets_;  // idx order
  // Key lookup: dense_ ? lookup_[key] = position in keys_ (kAbsent if none)
  //                    : positions sorted by key (binary search).
  bool dense_ = true;
  std::vector<uint64_t> lookup_;
  std::unique_ptr<SequentialState> seq_;  // created on first next()
};

/// Writes a .rec and its .idx byte-identical to MXNet's MXIndexedRecordIO(idx, rec, 'w') with
/// write_idx(key, mxnet.recordio.pack(header, image)): same chunk splitting at the magic, zero
/// padding and "key\toffset\n" lines.
///
/// Atomic: everything goes to `<path>.tmp.<pid>` files in the same directories, which finish()
/// flushes and renames over the targets (the .rec first, then the .idx). A writer destroyed
/// without finish() removes its temporaries and leaves existing targets untouched.
/// Not thread-safe.
class RecordIOWriter {
 public:
  /// `idx_path` empty: index_path_for(rec_path). `write_index` false: no .idx (MXRecordIO).
  /// Throws facetrain::DataError if a temporary cannot be created.
  explicit RecordIOWriter(std::string rec_path, std::string idx_path = {}, bool write_index = true);
  ~RecordIOWriter();
  RecordIOWriter(const RecordIOWriter&) = delete;
  RecordIOWriter& operator=(const RecordIOWriter&) = delete;

  /// Appends pack_record(header, image) under `key`; returns its offset.
  /// Throws facetrain::ArgumentError for a duplicate key, a header whose flag != labels.size(),
  /// a payload of kMaxRecordPayload bytes or more, or a call after finish();
  /// facetrain::DataError if writing fails.
  uint64_t write(uint64_t key, const RecordHeader& header, std::string_view image);
  /// Appends a raw payload under `key` (MXIndexedRecordIO.write_idx); returns its offset.
  uint64_t write_payload(uint64_t key, std::string_view payload);
  /// Bytes written to the .rec so far: the offset the next record gets.
  uint64_t tell() const { return written_; }
  /// Number of records written.
  size_t size() const { return count_; }
  /// Flushes, syncs and renames the temporaries over the targets. Throws facetrain::DataError on
  /// failure (the temporaries are then removed). A second call does nothing.
  void finish();
  /// Same as finish().
  void close() { finish(); }

 private:
  void flush_buffers();
  void discard() noexcept;

  std::string rec_path_, idx_path_, rec_tmp_, idx_tmp_;
  int rec_fd_ = -1;
  int idx_fd_ = -1;
  bool finished_ = false;
  uint64_t written_ = 0;
  size_t count_ = 0;
  std::string buffer_;
  std::string idx_text_;
  std::unordered_set<uint64_t> seen_;  // keys written so far, to refuse duplicates
};

/// How the records of a file are organised (formats.md section 1).
struct RecordLayout {
  enum Kind {
    kMs1m,  ///< insightface: meta record at key 0, images 1..N, identity records N+1..N+K
    kFlat,  ///< every key of the index is an image, in .idx order (im2rec, shuffle_rec)
  };
  Kind kind = kFlat;
  int64_t num_images = 0;
  int64_t num_classes = -1;          ///< kMs1m: K; kFlat: -1 (unknown without reading every record)
  std::vector<uint64_t> image_keys;  ///< kMs1m: 1..N; kFlat: keys() in .idx order
  /// kMs1m: image keys [first, end) of class c, from the identity records (empty when they were
  /// not read, see LayoutOptions).
  std::vector<std::pair<uint64_t, uint64_t>> class_ranges;
  bool meta_after_images = false;  ///< kMs1m: key 0 is stored after key 1 in the .rec

  /// One line for logs: "MS1M layout: 5822653 images, 85742 classes (meta record stored after the
  /// images)" or "flat layout: 1000 images".
  std::string describe() const;
};

struct LayoutOptions {
  /// kMs1m: read the K identity records and check that their ranges partition 1..N.
  /// (K reads; on a slow file system, turning this off skips them.)
  bool read_class_ranges = true;
};

/// Detects the layout as arcface_torch does, with checks. Key 0 is the meta record when it has a
/// label array (flag > 0) and no image bytes: its labels [a, b] = [N + 1, N + 1 + K] must be whole
/// numbers with 1 <= a <= b, K >= 1 unless N = 0, keys 1..b-1 must all be in the index, and (with
/// read_class_ranges) keys a..b-1 must be identity records whose non-empty [first, end) ranges
/// cover 1..N in order, without gaps or overlaps. Otherwise (no key 0, key 0 with flag 0, or key 0 with image bytes)
/// the file is flat. Throws facetrain::DataError naming the file and key for a reader without an index, an inconsistent
/// meta record or identity record, or any unreadable record it needs. Keys are stored as float32 labels: above 2^24
/// (glint360k's 17M images) they are rounded, and so are class_ranges; the partition check still holds since
/// neighbouring ranges share the same rounded bound, and image_keys follows arcface_torch (1 .. int(label[0]) - 1).
RecordLayout detect_layout(const RecordIOReader& reader, const LayoutOptions& options = {});

}  // namespace facetrain::data
