#include "facetrain/data/recordio.h"
#include "facetrain/core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

namespace facetrain::data {

namespace {

constexpr uint32_t kLengthMask = (uint32_t{1} << 29) - 1;
constexpr uint64_t kAbsent = std::numeric_limits<uint64_t>::max();
constexpr size_t kSequentialBuffer = size_t{1} << 20;  // 1 MiB per sequential reader
constexpr size_t kWriteBuffer = size_t{1} << 20;

const char* const kCflagNames[4] = {"whole", "first", "middle", "last"};

// Little-endian loads and stores; the file format is little-endian whatever the host.
uint32_t load_u32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t load_u64(const unsigned char* p) { return uint64_t{load_u32(p)} | uint64_t{load_u32(p + 4)} << 32; }
float load_f32(const unsigned char* p) {
  uint32_t bits = load_u32(p);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
void store_u32(std::string& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 24)};
  out.append(b, 4);
}
void store_u64(std::string& out, uint64_t v) {
  store_u32(out, static_cast<uint32_t>(v));
  store_u32(out, static_cast<uint32_t>(v >> 32));
}
void store_f32(std::string& out, float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  store_u32(out, bits);
}

const char kMagicBytes[4] = {0x0a, 0x23, static_cast<char>(0xd7), static_cast<char>(0xce)};

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Reads exactly n bytes at `offset` (any thread); false if the file ends first.
bool pread_exact(int fd, uint64_t offset, size_t n, char* dst, int& error) {
  while (n > 0) {
    ssize_t got = ::pread(fd, dst, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      error = errno;
      return false;
    }
    if (got == 0) {
      error = 0;
      return false;
    }
    dst += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

// Parses the chunks of the record starting at `offset` into `out` (the joined payload) and returns
// the offset just past the record. `fetch(offset, n, dst)` reads bytes the caller has already
// checked to lie inside the file. `fail(chunk_offset, message)` throws.
template <class Fetch, class Fail>
uint64_t parse_record(uint64_t file_size, uint64_t offset, std::string& out, const Fetch& fetch, const Fail& fail) {
  out.clear();
  if (offset % 4 != 0) fail(offset, "not a record start (records start at multiples of 4)");
  uint64_t pos = offset;
  uint64_t chunks = 0;
  for (;;) {
    if (file_size - pos < 8) {  // pos <= file_size always holds here
      if (chunks == 0 && pos == file_size) fail(pos, "no record there: the offset is the end of the file");
      if (chunks == 0) {
        fail(pos, "truncated record: " + std::to_string(file_size - pos) +
                      " bytes left in the file, fewer than an 8-byte chunk header");
      }
      fail(pos, "the split record never ends: the file ends after its " + std::to_string(chunks) +
                    (chunks == 1 ? " chunk" : " chunks") + " without a last chunk (truncated file?)");
    }
    unsigned char head[8];
    fetch(pos, 8, reinterpret_cast<char*>(head));
    const uint32_t magic = load_u32(head);
    const uint32_t lrec = load_u32(head + 4);
    if (magic != kRecordIOMagic) {
      if (chunks == 0) fail(pos, "not a record start: found " + hex32(magic) + " instead of the RecordIO magic");
      fail(pos, "bad magic " + hex32(magic) + " in chunk " + std::to_string(chunks + 1) + " of a split record");
    }
    const uint32_t cflag = lrec >> 29;
    const uint64_t length = lrec & kLengthMask;
    if (cflag > 3) fail(pos, "invalid chunk flag " + std::to_string(cflag) + " (lrec " + hex32(lrec) + ")");
    if (chunks == 0 && cflag >= 2) {
      fail(pos, std::string("not a record start: the chunk there is the ") + kCflagNames[cflag] +
                    " chunk of a split record (cflag " + std::to_string(cflag) + ")");
    }
    if (chunks > 0 && cflag <= 1) {
      fail(pos, "the split record never ends: chunk " + std::to_string(chunks + 1) + " is a " + kCflagNames[cflag] +
                    " chunk (cflag " + std::to_string(cflag) + ") where a middle or last chunk should follow");
    }
    const uint64_t padded = (length + 3) & ~uint64_t{3};
    if (padded > file_size - pos - 8) {
      fail(pos, "truncated record: the chunk announces " + std::to_string(length) + " payload bytes but only " +
                    std::to_string(file_size - pos - 8) + " bytes follow its header");
    }
    const size_t old = out.size();
    out.resize(old + length);
    if (length > 0) fetch(pos + 8, static_cast<size_t>(length), &out[old]);
    pos += 8 + padded;
    ++chunks;
    if (cflag == 0 || cflag == 3) return pos;
    out.append(kMagicBytes, 4);  // the writer dropped the magic where it split
  }
}

// Trims ASCII whitespace (Python's str.strip()).
std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

bool parse_u64(std::string_view s, uint64_t& v) {
  s = trim(s);
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

std::string quoted_line(std::string_view line) {
  constexpr size_t kShown = 60;
  std::string out = "'";
  for (size_t i = 0; i < line.size() && i < kShown; ++i) {
    char c = line[i];
    if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  if (line.size() > kShown) out += "...";
  return out + "'";
}

}  // namespace

// --- payload --------------------------------------------------------------------------------

RecordHeader RecordHeader::scalar(float label, uint64_t id, uint64_t id2) {
  RecordHeader h;
  h.label = label;
  h.id = id;
  h.id2 = id2;
  return h;
}

RecordHeader RecordHeader::with_labels(std::vector<float> labels, uint64_t id, uint64_t id2) {
  RecordHeader h;
  h.flag = static_cast<uint32_t>(labels.size());
  h.labels = std::move(labels);
  h.id = id;
  h.id2 = id2;
  return h;
}

std::string pack_record(const RecordHeader& header, std::string_view image) {
  if (header.flag != header.labels.size()) {
    throw ArgumentError("pack_record: header.flag is " + std::to_string(header.flag) + " but header.labels holds " +
                        std::to_string(header.labels.size()) + " labels (they must match)");
  }
  const uint64_t size = kIRHeaderSize + 4 * uint64_t{header.flag} + image.size();
  if (size >= kMaxRecordPayload) {
    throw ArgumentError("pack_record: a payload of " + std::to_string(size) +
                        " bytes is too large for RecordIO (the limit is 2^29 - 1)");
  }
  std::string out;
  out.reserve(static_cast<size_t>(size));
  store_u32(out, header.flag);
  store_f32(out, header.label);
  store_u64(out, header.id);
  store_u64(out, header.id2);
  for (float l : header.labels) store_f32(out, l);
  out.append(image.data(), image.size());
  return out;
}

namespace {

// Reads the IRHeader and its labels from `payload`; returns where the image starts.
size_t unpack_header(std::string_view payload, RecordHeader& header) {
  if (payload.size() < kIRHeaderSize) {
    throw DataError("the payload has " + std::to_string(payload.size()) + " bytes, fewer than the " +
                    std::to_string(kIRHeaderSize) + "-byte IRHeader");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
  header.flag = load_u32(p);
  header.label = load_f32(p + 4);
  header.id = load_u64(p + 8);
  header.id2 = load_u64(p + 16);
  const uint64_t rest = payload.size() - kIRHeaderSize;
  const uint64_t label_bytes = 4 * uint64_t{header.flag};
  if (label_bytes > rest) {
    throw DataError("the IRHeader's flag announces " + std::to_string(header.flag) + " float32 labels (" +
                    std::to_string(label_bytes) + " bytes) but only " + std::to_string(rest) +
                    " bytes follow the header");
  }
  header.labels.resize(header.flag);
  for (uint32_t i = 0; i < header.flag; ++i) header.labels[i] = load_f32(p + kIRHeaderSize + 4 * i);
  return kIRHeaderSize + static_cast<size_t>(label_bytes);
}

}  // namespace

void unpack_record(std::string_view payload, RecordHeader& header, std::string& image) {
  const size_t skip = unpack_header(payload, header);
  image.assign(payload.data() + skip, payload.size() - skip);
}

std::string index_path_for(const std::string& rec_path) {
  const std::string ext = ".rec";
  if (rec_path.size() >= ext.size() && rec_path.compare(rec_path.size() - ext.size(), ext.size(), ext) == 0) {
    return rec_path.substr(0, rec_path.size() - ext.size()) + ".idx";
  }
  return rec_path + ".idx";
}

// --- reader ---------------------------------------------------------------------------------

struct RecordIOReader::SequentialState {
  uint64_t position = 0;
  std::string buffer;
  uint64_t buffer_offset = 0;
  size_t buffer_size = 0;
  std::vector<uint64_t> by_offset;  // index positions sorted by offset (only if the .idx is not)
  bool by_offset_built = false;
};

RecordIOReader::RecordIOReader(std::string rec_path, std::string idx_path) : rec_path_(std::move(rec_path)) {
  fd_ = ::open(rec_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    throw DataError("RecordIO file '" + rec_path_ + "': cannot open it: " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw DataError("RecordIO file '" + rec_path_ + "': not a regular file");
  }
  file_size_ = static_cast<uint64_t>(st.st_size);
  const bool explicit_index = !idx_path.empty();
  if (!explicit_index) idx_path = index_path_for(rec_path_);
  std::error_code ec;
  if (explicit_index || std::filesystem::exists(idx_path, ec)) {
    idx_path_ = std::move(idx_path);
    try {
      read_index();
    } catch (...) {
      ::close(fd_);
      fd_ = -1;
      throw;
    }
  }
}

RecordIOReader::~RecordIOReader() {
  if (fd_ >= 0) ::close(fd_);
}

RecordIOReader::RecordIOReader(RecordIOReader&& other) noexcept
    : rec_path_(std::move(other.rec_path_)),
      idx_path_(std::move(other.idx_path_)),
      fd_(std::exchange(other.fd_, -1)),
      file_size_(other.file_size_),
      keys_(std::move(other.keys_)),
      offsets_(std::move(other.offsets_)),
      dense_(other.dense_),
      lookup_(std::move(other.lookup_)),
      seq_(std::move(other.seq_)) {}

RecordIOReader& RecordIOReader::operator=(RecordIOReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    rec_path_ = std::move(other.rec_path_);
    idx_path_ = std::move(other.idx_path_);
    fd_ = std::exchange(other.fd_, -1);
    file_size_ = other.file_size_;
    keys_ = std::move(other.keys_);
    offsets_ = std::move(other.offsets_);
    dense_ = other.dense_;
    lookup_ = std::move(other.lookup_);
    seq_ = std::move(other.seq_);
  }
  return *this;
}

void RecordIOReader::read_index() {
  const std::string where = "RecordIO index '" + idx_path_ + "'";
  int fd = ::open(idx_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DataError(where + ": cannot open it: " + std::strerror(errno));
  std::string text;
  {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw DataError(where + ": not a regular file");
    }
    text.resize(static_cast<size_t>(st.st_size));
    int error = 0;
    bool ok = pread_exact(fd, 0, text.size(), text.data(), error);
    ::close(fd);
    if (!ok) throw DataError(where + ": reading it failed: " + (error ? std::strerror(error) : "file shrank"));
  }

  std::vector<uint64_t> lines;  // line number of each entry, for messages
  size_t line_no = 0;
  uint64_t max_key = 0;
  for (size_t begin = 0; begin < text.size();) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    ++line_no;
    std::string_view body = trim(line);
    if (body.empty()) continue;                    // blank lines carry nothing
    auto fail = [&](const std::string& message) {  // messages are built only on failure
      throw DataError(where + " line " + std::to_string(line_no) + " " + quoted_line(line) + ": " + message);
    };
    size_t tab = body.find('\t');
    if (tab == std::string_view::npos || body.find('\t', tab + 1) != std::string_view::npos) {
      fail("expected 'key<TAB>offset'");
    }
    uint64_t key = 0, offset = 0;
    if (!parse_u64(body.substr(0, tab), key)) fail("the key is not a non-negative integer");
    if (!parse_u64(body.substr(tab + 1), offset)) fail("the offset is not a non-negative integer");
    if (offset >= file_size_) {
      fail("key " + std::to_string(key) + ": offset " + std::to_string(offset) + " is past the end of '" + rec_path_ +
           "' (" + std::to_string(file_size_) + " bytes)");
    }
    if (offset % 4 != 0) {
      fail("key " + std::to_string(key) + ": offset " + std::to_string(offset) + " is not a record start in '" +
           rec_path_ + "' (records start at multiples of 4)");
    }
    keys_.push_back(key);
    offsets_.push_back(offset);
    lines.push_back(line_no);
    max_key = std::max(max_key, key);
  }

  const uint64_t n = keys_.size();
  auto duplicate = [&](uint64_t a, uint64_t b) {
    throw DataError(where + ": key " + std::to_string(keys_[b]) + " appears twice (lines " + std::to_string(lines[a]) +
                    " and " + std::to_string(lines[b]) + ")");
  };
  dense_ = n == 0 || max_key < 2 * n + 1024;
  if (dense_) {
    lookup_.assign(n == 0 ? 0 : max_key + 1, kAbsent);
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t& slot = lookup_[keys_[i]];
      if (slot != kAbsent) duplicate(slot, i);
      slot = i;
    }
  } else {
    lookup_.resize(n);
    for (uint64_t i = 0; i < n; ++i) lookup_[i] = i;
    std::stable_sort(lookup_.begin(), lookup_.end(), [&](uint64_t a, uint64_t b) { return keys_[a] < keys_[b]; });
    for (uint64_t i = 1; i < n; ++i) {
      if (keys_[lookup_[i - 1]] == keys_[lookup_[i]]) duplicate(lookup_[i - 1], lookup_[i]);
    }
  }
}

bool RecordIOReader::contains(uint64_t key) const {
  if (dense_) return key < lookup_.size() && lookup_[key] != kAbsent;
  auto it =
      std::lower_bound(lookup_.begin(), lookup_.end(), key, [&](uint64_t pos, uint64_t k) { return keys_[pos] < k; });
  return it != lookup_.end() && keys_[*it] == key;
}

uint64_t RecordIOReader::offset_of(uint64_t key) const {
  if (!has_index()) {
    throw DataError("RecordIO file '" + rec_path_ + "': cannot look up key " + std::to_string(key) +
                    ": there is no index ('" + index_path_for(rec_path_) + "' not found)");
  }
  uint64_t pos = kAbsent;
  if (dense_) {
    if (key < lookup_.size()) pos = lookup_[key];
  } else {
    auto it =
        std::lower_bound(lookup_.begin(), lookup_.end(), key, [&](uint64_t p, uint64_t k) { return keys_[p] < k; });
    if (it != lookup_.end() && keys_[*it] == key) pos = *it;
  }
  if (pos == kAbsent) {
    throw DataError("RecordIO index '" + idx_path_ + "': key " + std::to_string(key) + " is not in it");
  }
  return offsets_[pos];
}

std::string RecordIOReader::where(std::optional<uint64_t> key, uint64_t offset) const {
  std::string out = "RecordIO file '" + rec_path_ + "', record ";
  if (key) out += "key " + std::to_string(*key) + " ";
  return out + "at byte offset " + std::to_string(offset);
}

std::string RecordIOReader::read_payload_at(uint64_t offset, uint64_t* next_offset) const {
  return read_payload_impl(offset, std::nullopt, next_offset);
}

std::string RecordIOReader::read_payload_impl(uint64_t offset, std::optional<uint64_t> key,
                                              uint64_t* next_offset) const {
  auto fail = [&](uint64_t chunk, const std::string& message) {
    std::string at = where(key, offset);
    if (chunk != offset) at += " (chunk at byte offset " + std::to_string(chunk) + ")";
    throw DataError(at + ": " + message);
  };
  if (offset > file_size_)
    fail(offset, "the offset is past the end of the file (" + std::to_string(file_size_) + " bytes)");
  auto fetch = [&](uint64_t at, size_t n, char* dst) {
    int error = 0;
    if (!pread_exact(fd_, at, n, dst, error)) {
      fail(at, std::string("reading failed: ") + (error ? std::strerror(error) : "the file shrank while open"));
    }
  };
  std::string payload;
  uint64_t end = parse_record(file_size_, offset, payload, fetch, fail);
  if (next_offset) *next_offset = end;
  return payload;
}

Record RecordIOReader::make_record(std::string payload, std::optional<uint64_t> key, uint64_t offset) const {
  Record r;
  r.key = key;
  r.offset = offset;
  size_t skip = 0;
  try {
    skip = unpack_header(payload, r.header);
  } catch (const DataError& e) {
    throw DataError(where(key, offset) + ": " + e.what());
  }
  r.image = std::move(payload);  // no second copy of the image: drop the header in place
  r.image.erase(0, skip);
  return r;
}

std::string RecordIOReader::read_payload(uint64_t key) const { return read_payload_impl(offset_of(key), key, nullptr); }

Record RecordIOReader::read(uint64_t key) const {
  const uint64_t offset = offset_of(key);
  return make_record(read_payload_impl(offset, key, nullptr), key, offset);
}

Record RecordIOReader::read_at(uint64_t offset) const {
  return make_record(read_payload_impl(offset, std::nullopt, nullptr), std::nullopt, offset);
}

std::optional<uint64_t> RecordIOReader::key_at_offset(uint64_t offset) const {
  if (offsets_.empty()) return std::nullopt;
  const auto& order = seq_->by_offset;
  if (order.empty()) {  // the .idx lists offsets in increasing order (MXNet's writer does)
    auto it = std::lower_bound(offsets_.begin(), offsets_.end(), offset);
    if (it != offsets_.end() && *it == offset) return keys_[static_cast<size_t>(it - offsets_.begin())];
    return std::nullopt;
  }
  auto it = std::lower_bound(order.begin(), order.end(), offset,
                             [&](uint64_t pos, uint64_t off) { return offsets_[pos] < off; });
  if (it != order.end() && offsets_[*it] == offset) return keys_[*it];
  return std::nullopt;
}

void RecordIOReader::rewind() {
  if (seq_) seq_->position = 0;
}

bool RecordIOReader::next_payload(std::string& payload, uint64_t* offset_out) {
  if (!seq_) {
    seq_ = std::make_unique<SequentialState>();
    if (!std::is_sorted(offsets_.begin(), offsets_.end())) {
      seq_->by_offset.resize(offsets_.size());
      for (size_t i = 0; i < offsets_.size(); ++i) seq_->by_offset[i] = i;
      std::sort(seq_->by_offset.begin(), seq_->by_offset.end(),
                [&](uint64_t a, uint64_t b) { return offsets_[a] < offsets_[b]; });
    }
  }
  SequentialState& s = *seq_;
  if (s.position >= file_size_) return false;
  const uint64_t offset = s.position;
  auto fail = [&](uint64_t chunk, const std::string& message) {
    std::string at = where(key_at_offset(offset), offset) + " (reading sequentially)";
    if (chunk != offset) at += " (chunk at byte offset " + std::to_string(chunk) + ")";
    throw DataError(at + ": " + message);
  };
  auto fetch = [&](uint64_t at, size_t n, char* dst) {
    if (at >= s.buffer_offset && at + n <= s.buffer_offset + s.buffer_size) {
      std::memcpy(dst, s.buffer.data() + (at - s.buffer_offset), n);
      return;
    }
    int error = 0;
    if (n >= kSequentialBuffer / 2) {  // large payloads go straight to their destination
      if (!pread_exact(fd_, at, n, dst, error)) {
        fail(at, std::string("reading failed: ") + (error ? std::strerror(error) : "the file shrank while open"));
      }
      return;
    }
    s.buffer.resize(kSequentialBuffer);
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kSequentialBuffer, file_size_ - at));
    if (!pread_exact(fd_, at, want, s.buffer.data(), error)) {
      s.buffer_size = 0;
      fail(at, std::string("reading failed: ") + (error ? std::strerror(error) : "the file shrank while open"));
    }
    s.buffer_offset = at;
    s.buffer_size = want;
    std::memcpy(dst, s.buffer.data(), n);
  };
  s.position = parse_record(file_size_, offset, payload, fetch, fail);
  if (offset_out) *offset_out = offset;
  return true;
}

bool RecordIOReader::next(Record& out) {
  std::string payload;
  uint64_t offset = 0;
  if (!next_payload(payload, &offset)) return false;
  out = make_record(std::move(payload), key_at_offset(offset), offset);
  return true;
}

// --- writer ---------------------------------------------------------------------------------

RecordIOWriter::RecordIOWriter(std::string rec_path, std::string idx_path, bool write_index)
    : rec_path_(std::move(rec_path)) {
  if (write_index) idx_path_ = idx_path.empty() ? index_path_for(rec_path_) : std::move(idx_path);
  const std::string suffix = ".tmp." + std::to_string(::getpid());
  rec_tmp_ = rec_path_ + suffix;
  rec_fd_ = ::open(rec_tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (rec_fd_ < 0) {
    throw DataError("RecordIO file '" + rec_path_ + "': cannot create '" + rec_tmp_ + "': " + std::strerror(errno));
  }
  if (write_index) {
    idx_tmp_ = idx_path_ + suffix;
    idx_fd_ = ::open(idx_tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (idx_fd_ < 0) {
      const int error = errno;
      discard();
      throw DataError("RecordIO index '" + idx_path_ + "': cannot create '" + idx_tmp_ + "': " + std::strerror(error));
    }
  }
  buffer_.reserve(kWriteBuffer);
}

RecordIOWriter::~RecordIOWriter() {
  if (!finished_) discard();
}

void RecordIOWriter::discard() noexcept {
  if (rec_fd_ >= 0) ::close(rec_fd_);
  if (idx_fd_ >= 0) ::close(idx_fd_);
  rec_fd_ = idx_fd_ = -1;
  if (!rec_tmp_.empty()) ::unlink(rec_tmp_.c_str());
  if (!idx_tmp_.empty()) ::unlink(idx_tmp_.c_str());
  finished_ = true;
}

namespace {
void write_all(int fd, const char* data, size_t size, const std::string& target, const std::string& tmp) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw DataError("RecordIO file '" + target + "': writing '" + tmp + "' failed: " + std::strerror(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}
}  // namespace

void RecordIOWriter::flush_buffers() {
  write_all(rec_fd_, buffer_.data(), buffer_.size(), rec_path_, rec_tmp_);
  buffer_.clear();
  if (idx_fd_ >= 0) write_all(idx_fd_, idx_text_.data(), idx_text_.size(), idx_path_, idx_tmp_);
  idx_text_.clear();
}

uint64_t RecordIOWriter::write(uint64_t key, const RecordHeader& header, std::string_view image) {
  if (finished_) throw ArgumentError("RecordIOWriter('" + rec_path_ + "'): write after finish()");
  return write_payload(key, pack_record(header, image));
}

uint64_t RecordIOWriter::write_payload(uint64_t key, std::string_view payload) {
  const std::string who = "RecordIOWriter('" + rec_path_ + "'): ";
  if (finished_) throw ArgumentError(who + "write after finish()");
  if (payload.size() >= kMaxRecordPayload) {
    throw ArgumentError(who + "key " + std::to_string(key) + ": a payload of " + std::to_string(payload.size()) +
                        " bytes is too large for RecordIO (the limit is 2^29 - 1)");
  }
  if (!seen_.insert(key).second) throw ArgumentError(who + "key " + std::to_string(key) + " was already written");

  // dmlc::RecordIOWriter::WriteRecord: split at every 4-aligned magic, dropping it.
  const uint64_t offset = written_;
  const size_t before = buffer_.size();
  const char* p = payload.data();
  const uint32_t len = static_cast<uint32_t>(payload.size());
  const uint32_t lower_align = len & ~uint32_t{3};
  const uint32_t upper_align = (len + 3) & ~uint32_t{3};
  uint32_t dptr = 0;
  for (uint32_t i = 0; i < lower_align; i += 4) {
    if (std::memcmp(p + i, kMagicBytes, 4) == 0) {
      store_u32(buffer_, kRecordIOMagic);
      store_u32(buffer_, (dptr == 0 ? 1u : 2u) << 29 | (i - dptr));
      buffer_.append(p + dptr, i - dptr);
      dptr = i + 4;
    }
  }
  store_u32(buffer_, kRecordIOMagic);
  store_u32(buffer_, (dptr != 0 ? 3u : 0u) << 29 | (len - dptr));
  buffer_.append(p + dptr, len - dptr);
  buffer_.append(upper_align - len, '\0');
  written_ += buffer_.size() - before;
  ++count_;

  if (idx_fd_ >= 0) {
    idx_text_ += std::to_string(key);
    idx_text_ += '\t';
    idx_text_ += std::to_string(offset);
    idx_text_ += '\n';
  }
  if (buffer_.size() >= kWriteBuffer || idx_text_.size() >= kWriteBuffer) flush_buffers();
  return offset;
}

void RecordIOWriter::finish() {
  if (finished_) return;
  try {
    flush_buffers();
    auto sync_close = [](int& fd, const std::string& target, const std::string& tmp) {
      if (::fsync(fd) != 0) {
        throw DataError("RecordIO file '" + target + "': flushing '" + tmp + "' failed: " + std::strerror(errno));
      }
      const int closed = ::close(fd);
      fd = -1;
      if (closed != 0) {
        throw DataError("RecordIO file '" + target + "': closing '" + tmp + "' failed: " + std::strerror(errno));
      }
    };
    sync_close(rec_fd_, rec_path_, rec_tmp_);
    if (idx_fd_ >= 0) sync_close(idx_fd_, idx_path_, idx_tmp_);
    if (::rename(rec_tmp_.c_str(), rec_path_.c_str()) != 0) {
      throw DataError("RecordIO file '" + rec_path_ + "': renaming '" + rec_tmp_ +
                      "' to it failed: " + std::strerror(errno));
    }
    rec_tmp_.clear();
    if (!idx_tmp_.empty() && ::rename(idx_tmp_.c_str(), idx_path_.c_str()) != 0) {
      throw DataError("RecordIO index '" + idx_path_ + "': renaming '" + idx_tmp_ +
                      "' to it failed: " + std::strerror(errno));
    }
    idx_tmp_.clear();
  } catch (...) {
    discard();
    throw;
  }
  finished_ = true;
  fsync_directory(rec_path_);
  if (!idx_path_.empty()) fsync_directory(idx_path_);
}

// --- layout ---------------------------------------------------------------------------------

std::string RecordLayout::describe() const {
  if (kind == kFlat) return "flat layout: " + std::to_string(num_images) + " images";
  std::string out =
      "MS1M layout: " + std::to_string(num_images) + " images, " + std::to_string(num_classes) + " classes";
  if (meta_after_images) out += " (meta record stored after the images)";
  return out;
}

namespace {

// A label that must be a whole number in [lo, hi]; `what` names it in the message.
uint64_t whole_label(float v, uint64_t lo, uint64_t hi, const std::string& at, const std::string& what) {
  if (!std::isfinite(v) || v != std::floor(v) || v < static_cast<float>(lo) || v > static_cast<float>(hi)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
    throw DataError(at + ": " + what + " is " + buf + ", not a whole number in [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "]");
  }
  return static_cast<uint64_t>(v);
}

}  // namespace

RecordLayout detect_layout(const RecordIOReader& reader, const LayoutOptions& options) {
  if (!reader.has_index()) {
    throw DataError("RecordIO file '" + reader.path() + "': detecting the layout needs the index '" +
                    index_path_for(reader.path()) + "', which was not found");
  }
  RecordLayout layout;
  std::optional<Record> meta;
  if (reader.contains(0)) meta = reader.read(0);
  if (!meta || meta->header.flag == 0 || !meta->image.empty()) {
    layout.kind = RecordLayout::kFlat;
    layout.image_keys = reader.keys();
    layout.num_images = static_cast<int64_t>(layout.image_keys.size());
    return layout;
  }

  const std::string at = "RecordIO file '" + reader.path() + "', meta record (key 0)";
  const auto& labels = meta->header.labels;
  if (labels.size() < 2) {
    throw DataError(at + ": it has " + std::to_string(labels.size()) +
                    " label(s); a meta record has two, [N + 1, N + 1 + K]");
  }
  constexpr uint64_t kMaxKey = uint64_t{1} << 40;  // bounded below by the index size
  const uint64_t first_identity = whole_label(labels[0], 1, kMaxKey, at, "label[0] (N + 1)");
  const uint64_t end_identity = whole_label(labels[1], first_identity, kMaxKey, at, "label[1] (N + 1 + K)");
  const uint64_t n = first_identity - 1;
  const uint64_t k = end_identity - first_identity;
  const uint64_t expected = 1 + n + k;
  if (expected > reader.size()) {
    throw DataError(at + ": its labels [" + std::to_string(first_identity) + ", " + std::to_string(end_identity) +
                    "] announce " + std::to_string(n) + " images and " + std::to_string(k) +
                    " identity records, but the index holds only " + std::to_string(reader.size()) + " keys");
  }
  for (uint64_t key = 1; key < end_identity; ++key) {
    if (!reader.contains(key)) {
      throw DataError(at + ": its labels [" + std::to_string(first_identity) + ", " + std::to_string(end_identity) +
                      "] announce " + (key < first_identity ? "images" : "identity records") + " under keys " +
                      (key < first_identity
                           ? "1.." + std::to_string(n)
                           : std::to_string(first_identity) + ".." + std::to_string(end_identity - 1)) +
                      ", but key " + std::to_string(key) + " is not in the index '" + reader.index_path() + "'");
    }
  }
  if (n > 0 && k == 0) {
    throw DataError(at + ": its labels [" + std::to_string(first_identity) + ", " + std::to_string(end_identity) +
                    "] announce " + std::to_string(n) + " images but no identity (class)");
  }
  layout.kind = RecordLayout::kMs1m;
  layout.num_images = static_cast<int64_t>(n);
  layout.num_classes = static_cast<int64_t>(k);
  layout.image_keys.resize(n);
  for (uint64_t i = 0; i < n; ++i) layout.image_keys[i] = i + 1;
  layout.meta_after_images = n > 0 && reader.offset_of(0) > reader.offset_of(1);

  if (options.read_class_ranges) {
    layout.class_ranges.reserve(k);
    uint64_t next_first = 1;
    for (uint64_t key = first_identity; key < end_identity; ++key) {
      const Record r = reader.read(key);
      const std::string rat = "RecordIO file '" + reader.path() + "', identity record key " + std::to_string(key) +
                              " (class " + std::to_string(key - first_identity) + ")";
      if (r.header.labels.size() < 2) {
        throw DataError(rat + ": it has " + std::to_string(r.header.labels.size()) +
                        " label(s); an identity record has two, [first image key, end image key)");
      }
      const uint64_t first = whole_label(r.header.labels[0], 1, first_identity, rat, "label[0] (first image key)");
      const uint64_t end = whole_label(r.header.labels[1], 1, first_identity, rat, "label[1] (end image key)");
      if (first != next_first || end <= first) {
        throw DataError(rat + ": its image range [" + std::to_string(first) + ", " + std::to_string(end) +
                        ") should start at " + std::to_string(next_first) +
                        " and be non-empty (the classes' ranges must partition the image keys 1.." + std::to_string(n) +
                        " in order)");
      }
      layout.class_ranges.emplace_back(first, end);
      next_first = end;
    }
    if (next_first != first_identity) {
      throw DataError(at + ": the identity records' ranges cover image keys 1.." + std::to_string(next_first - 1) +
                      ", but the images are keys 1.." + std::to_string(n));
    }
  }
  return layout;
}

}  // namespace facetrain::data
