#include "facetrain/data/dataset_tools.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "facetrain/core/error.h"
#include "facetrain/core/files.h"
#include "facetrain/data/recordio.h"

namespace facetrain::data {

namespace {

namespace fs = std::filesystem;

// Work goes through windows of at most this many items (and about kWindowBytes of loaded data):
// workers load the items of a window in parallel, then the calling thread consumes them in order.
// Memory stays bounded whatever the dataset's size, and the output does not depend on the threads.
constexpr size_t kWindowItems = 4096;
constexpr uint64_t kWindowBytes = uint64_t{256} << 20;
constexpr size_t kMaxProblems = 100;

// Runs load(index, slot) for items [0, total) with `threads` threads, window by window, and
// consume(index, slot) for each in order on the calling thread. load returns the bytes it holds
// (for the window's byte budget) and must not throw (it stores its error in the slot);
// consume may throw, which stops everything.
template <class Load, class Consume>
void run_windows(size_t total, int64_t threads, const Load& load, const Consume& consume) {
  const size_t workers = static_cast<size_t>(std::max<int64_t>(1, threads));
  for (size_t start = 0; start < total;) {
    const size_t cap = std::min(kWindowItems, total - start);
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> bytes{0};
    auto work = [&] {
      for (;;) {
        if (bytes.load() >= kWindowBytes) return;
        const size_t slot = next.fetch_add(1);
        if (slot >= cap) return;
        bytes += load(start + slot, slot);
      }
    };
    if (workers == 1 || cap == 1) {
      work();
    } else {
      std::vector<std::thread> pool;
      pool.reserve(std::min(workers, cap));
      for (size_t t = 0; t < std::min(workers, cap); ++t) pool.emplace_back(work);
      for (auto& t : pool) t.join();
    }
    const size_t count = std::min(next.load(), cap);  // slots [0, count) were all loaded
    for (size_t slot = 0; slot < count; ++slot) consume(start + slot, slot);
    start += count;
  }
}

void make_directories(const std::string& dir, const std::string& what) {
  if (dir.empty()) return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw DataError(what + ": cannot create the folder '" + dir + "'" + (ec ? ": " + ec.message() : std::string()));
  }
}

std::string format_float(float v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

// The label as a class index, if it is a whole, finite, non-negative number.
std::optional<int64_t> class_of(float v) {
  if (!std::isfinite(v) || v < 0 || v != std::floor(v) || v >= 9.0e18f) return std::nullopt;
  return static_cast<int64_t>(v);
}

bool decodes(const std::string& bytes) {
  if (bytes.empty() || bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) return false;
  try {
    cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
    return !cv::imdecode(buf, cv::IMREAD_COLOR).empty();
  } catch (const cv::Exception&) {
    return false;
  }
}

// --- how a .rec is organised, for unpack and inspect -----------------------------------------

// detect_layout, except that a key 0 that is not an image record at all (a raw payload shorter
// than its IRHeader) makes the file flat instead of failing: such records are then reported per
// record.
RecordLayout layout_of(const RecordIOReader& reader, bool class_ranges) {
  if (reader.contains(0)) {
    const std::string payload = reader.read_payload(0);  // framing damage throws
    RecordHeader header;
    std::string image;
    bool parsed = true;
    try {
      unpack_record(payload, header, image);
    } catch (const DataError&) {
      parsed = false;
    }
    if (!parsed) {
      RecordLayout flat;
      flat.kind = RecordLayout::kFlat;
      flat.image_keys = reader.keys();
      flat.num_images = static_cast<int64_t>(flat.image_keys.size());
      return flat;
    }
  }
  LayoutOptions options;
  options.read_class_ranges = class_ranges;
  return detect_layout(reader, options);
}

// Is this payload the meta record of an index-less MS1M file? Returns its labels [N + 1, N + 1 + K].
std::optional<std::pair<uint64_t, uint64_t>> meta_record(const std::string& payload) {
  RecordHeader header;
  std::string image;
  try {
    unpack_record(payload, header, image);
  } catch (const DataError&) {
    return std::nullopt;
  }
  if (header.flag < 2 || !image.empty()) return std::nullopt;
  const auto first = class_of(header.labels[0]);
  const auto end = class_of(header.labels[1]);
  if (!first || !end || *first < 1 || *end < *first) return std::nullopt;
  return std::make_pair(static_cast<uint64_t>(*first), static_cast<uint64_t>(*end));
}

std::string record_name(const std::optional<uint64_t>& key, uint64_t position, uint64_t offset) {
  if (key) return "key " + std::to_string(*key);
  return "record " + std::to_string(position) + " (byte offset " + std::to_string(offset) + ")";
}

// Collects problems, keeping the first kMaxProblems.
struct Problems {
  std::vector<std::string> lines;
  int64_t total = 0;
  void add(std::string line) {
    ++total;
    if (lines.size() < kMaxProblems) lines.push_back(std::move(line));
  }
  void finish() {
    if (total > static_cast<int64_t>(lines.size())) {
      lines.push_back("... and " + std::to_string(total - static_cast<int64_t>(lines.size())) + " more");
    }
  }
};

void fill_counts(InspectReport& report, const std::unordered_map<int64_t, int64_t>& per_label) {
  std::vector<int64_t> counts;
  counts.reserve(per_label.size());
  for (const auto& [label, count] : per_label) counts.push_back(count);
  std::sort(counts.begin(), counts.end());
  report.identities = static_cast<int64_t>(counts.size());
  if (counts.empty()) return;
  const size_t n = counts.size();
  report.images_per_identity_min = counts.front();
  report.images_per_identity_max = counts.back();
  report.images_per_identity_median =
      n % 2 == 1 ? static_cast<double>(counts[n / 2]) : (static_cast<double>(counts[n / 2 - 1]) + counts[n / 2]) / 2.0;
}

// The per-record facts inspect gathers (in parallel) before consuming them in order.
struct RecordCheck {
  std::exception_ptr error;  // damage that stops the reading
  std::optional<uint64_t> key;
  uint64_t position = 0;
  uint64_t offset = 0;
  bool parsed = false;
  std::string parse_error;
  float label = 0;
  bool empty = false;
  bool decodes = true;
};

void check_payload(RecordCheck& c, std::string payload, bool decode) {
  RecordHeader header;
  std::string image;
  try {
    unpack_record(payload, header, image);
  } catch (const DataError& e) {
    c.parse_error = e.what();
    return;
  }
  c.parsed = true;
  c.label = header.primary_label();
  c.empty = image.empty();
  if (decode && !c.empty) c.decodes = decodes(image);
}

InspectReport inspect_recordio(const std::string& path, const InspectOptions& options) {
  RecordIOReader reader(path);
  InspectReport report;
  report.path = path;
  report.kind = "recordio";
  Problems problems;
  std::unordered_map<int64_t, int64_t> per_label;
  int64_t num_classes = -1;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;

  // The checks common to both modes, in record order.
  auto consume = [&](const RecordCheck& c) {
    if (c.error) std::rethrow_exception(c.error);
    ++report.images;
    const std::string name = record_name(c.key, c.position, c.offset);
    if (!c.parsed) {
      problems.add(name + ": not an image record: " + c.parse_error);
      return;
    }
    const auto cls = class_of(c.label);
    if (!cls) {
      problems.add(name + ": label " + format_float(c.label) + " is not a whole non-negative number");
    } else if (num_classes >= 0 && *cls >= num_classes) {
      problems.add(name + ": label " + std::to_string(*cls) + " is not below the number of classes (" +
                   std::to_string(num_classes) + ")");
    } else if (c.key && !ranges.empty()) {
      auto it = std::upper_bound(ranges.begin(), ranges.end(), *c.key,
                                 [](uint64_t k, const std::pair<uint64_t, uint64_t>& r) { return k < r.first; });
      if (it != ranges.begin()) {
        const auto range_class = static_cast<int64_t>(it - ranges.begin()) - 1;
        if (*c.key < std::prev(it)->second && range_class != *cls) {
          problems.add(name + ": label " + std::to_string(*cls) + " differs from its identity record: key " +
                       std::to_string(*c.key) + " lies in class " + std::to_string(range_class) + "'s range [" +
                       std::to_string(std::prev(it)->first) + ", " + std::to_string(std::prev(it)->second) + ")");
        }
      }
    }
    if (cls) ++per_label[*cls];
    if (c.empty) {
      problems.add(name + ": empty image (no bytes after the header)");
    } else if (!c.decodes) {
      problems.add(name + ": the image does not decode");
    }
  };

  if (reader.has_index()) {
    const RecordLayout layout = layout_of(reader, /*class_ranges=*/true);
    report.layout = layout.describe();
    num_classes = layout.num_classes;
    ranges = layout.class_ranges;
    const auto& keys = layout.image_keys;
    const int64_t total = static_cast<int64_t>(keys.size());
    std::vector<RecordCheck> slots(std::min(kWindowItems, keys.size()));
    run_windows(
        keys.size(), options.threads,
        [&](size_t index, size_t slot) -> uint64_t {
          RecordCheck& c = slots[slot];
          c = RecordCheck{};
          c.key = keys[index];
          c.position = index;
          try {
            c.offset = reader.offset_of(keys[index]);
            std::string payload = reader.read_payload(keys[index]);
            const uint64_t size = payload.size();
            check_payload(c, std::move(payload), options.decode);
            return size;
          } catch (...) {
            c.error = std::current_exception();
            return 0;
          }
        },
        [&](size_t index, size_t slot) {
          consume(slots[slot]);
          if (options.progress) options.progress(static_cast<int64_t>(index) + 1, total);
        });
  } else {
    // No index: every record in file order; a meta record first means an MS1M file without its
    // index: images at positions 1..N, then identity records (not checked).
    std::string payload;
    uint64_t offset = 0;
    uint64_t position = 0;
    bool meta_first = false;
    uint64_t first_identity = std::numeric_limits<uint64_t>::max();  // N + 1 after a meta record
    int64_t records = 0;
    const auto total = static_cast<int64_t>(reader.file_size());
    for (; reader.next_payload(payload, &offset); ++position) {
      if (position == 0) {
        if (const auto meta = meta_record(payload)) {
          meta_first = true;
          first_identity = meta->first;
          num_classes = static_cast<int64_t>(meta->second - meta->first);
          continue;
        }
      }
      if (position >= first_identity) break;  // the identity records
      RecordCheck c;
      c.position = position;
      c.offset = offset;
      check_payload(c, std::move(payload), options.decode);
      consume(c);
      ++records;
      if (options.progress) options.progress(static_cast<int64_t>(offset), total);
    }
    if (options.progress) options.progress(total, total);
    RecordLayout layout;
    layout.num_images = records;
    if (meta_first) {
      layout.kind = RecordLayout::kMs1m;
      layout.num_classes = num_classes;
    }
    report.layout = layout.describe() + " (no index: records read in file order)";
  }
  fill_counts(report, per_label);
  problems.finish();
  report.problems = std::move(problems.lines);
  report.problem_count = problems.total;
  return report;
}

// --- image folders ---------------------------------------------------------------------------

struct FileCheck {
  std::string read_error;
  bool empty = false;
  bool decodes = true;
};

InspectReport inspect_folder(const std::string& path, const InspectOptions& options) {
  const ImageList list = scan_image_folder(path);  // its errors name the folder
  InspectReport report;
  report.path = path;
  report.kind = "image_folder";
  report.layout = "image folder";
  Problems problems;
  std::unordered_map<int64_t, int64_t> per_label;
  const auto& entries = list.entries;
  const auto total = static_cast<int64_t>(entries.size());
  std::vector<FileCheck> slots(std::min(kWindowItems, entries.size()));
  run_windows(
      entries.size(), options.threads,
      [&](size_t index, size_t slot) -> uint64_t {
        FileCheck& c = slots[slot];
        c = FileCheck{};
        const std::string& file = entries[index].path;
        if (!options.decode) {
          std::error_code ec;
          const auto size = fs::file_size(file, ec);
          if (ec) {
            c.read_error = ec.message();
          } else {
            c.empty = size == 0;
          }
          return 0;
        }
        try {
          const std::string bytes = read_image_file(file);
          c.empty = bytes.empty();
          if (!c.empty) c.decodes = decodes(bytes);
          return 0;  // the bytes are not kept
        } catch (const DataError& e) {
          c.read_error = e.what();
          return 0;
        }
      },
      [&](size_t index, size_t slot) {
        const FileCheck& c = slots[slot];
        const std::string name = "'" + entries[index].path + "'";
        ++report.images;
        ++per_label[entries[index].label];
        if (!c.read_error.empty()) {
          problems.add(name + ": cannot read it: " + c.read_error);
        } else if (c.empty) {
          problems.add(name + ": empty file");
        } else if (!c.decodes) {
          problems.add(name + ": the image does not decode");
        }
        if (options.progress) options.progress(static_cast<int64_t>(index) + 1, total);
      });
  fill_counts(report, per_label);
  problems.finish();
  report.problems = std::move(problems.lines);
  report.problem_count = problems.total;
  return report;
}

std::string format_median(double v) {
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  }
  return buf;
}

}  // namespace

// --- pack ------------------------------------------------------------------------------------

PackSummary pack_images(const ImageList& list, const std::string& prefix, const PackOptions& options) {
  const std::string source = list.source.empty() ? std::string("the image list") : "'" + list.source + "'";
  if (list.entries.empty()) throw DataError("pack: " + source + " holds no image");
  int64_t num_classes = list.num_classes;
  for (const auto& e : list.entries) {
    if (e.label < 0) {
      throw DataError("pack: " + source + ": image '" + e.path + "' has the negative label " + std::to_string(e.label));
    }
    num_classes = std::max(num_classes, e.label + 1);
  }
  const auto k = static_cast<size_t>(num_classes);
  std::vector<uint64_t> counts(k, 0);
  for (const auto& e : list.entries) ++counts[static_cast<size_t>(e.label)];
  std::vector<std::string> missing;
  for (size_t c = 0; c < k; ++c) {
    if (counts[c] == 0) missing.push_back(std::to_string(c));
  }
  if (!missing.empty()) {
    std::string shown;
    for (size_t i = 0; i < missing.size() && i < 10; ++i) shown += (i ? ", " : "") + missing[i];
    if (missing.size() > 10) shown += ", ... (" + std::to_string(missing.size()) + " in all)";
    throw DataError("pack: " + source + ": class(es) " + shown + " of 0.." + std::to_string(num_classes - 1) +
                    " have no image; every class needs one (identity records hold non-empty ranges): "
                    "renumber the labels without gaps");
  }

  // Stable grouping by class: first[c] = position of class c's first image among 0..N-1.
  const size_t n = list.entries.size();
  std::vector<uint64_t> first(k, 0);
  for (size_t c = 1; c < k; ++c) first[c] = first[c - 1] + counts[c - 1];
  std::vector<size_t> order(n);
  {
    std::vector<uint64_t> next = first;
    for (size_t i = 0; i < n; ++i) order[next[static_cast<size_t>(list.entries[i].label)]++] = i;
  }

  const std::string folder = fs::path(prefix).parent_path().string();
  make_directories(folder, "pack '" + prefix + "'");
  RecordIOWriter writer(prefix + ".rec", prefix + ".idx");
  writer.write(0, RecordHeader::with_labels({static_cast<float>(n + 1), static_cast<float>(n + 1 + k)}, 0), {});

  std::vector<std::string> bytes(std::min(kWindowItems, n));
  std::vector<std::exception_ptr> errors(bytes.size());
  const auto total = static_cast<int64_t>(n);
  run_windows(
      n, options.threads,
      [&](size_t index, size_t slot) -> uint64_t {
        errors[slot] = nullptr;
        try {
          bytes[slot] = read_image_file(list.entries[order[index]].path);
          return bytes[slot].size();
        } catch (...) {
          bytes[slot].clear();
          errors[slot] = std::current_exception();
          return 0;
        }
      },
      [&](size_t index, size_t slot) {
        if (errors[slot]) std::rethrow_exception(errors[slot]);
        const uint64_t key = index + 1;
        const auto cls = static_cast<float>(list.entries[order[index]].label);
        writer.write(key, RecordHeader::with_labels({cls, 1.0f}, key), bytes[slot]);
        std::string().swap(bytes[slot]);
        if (options.progress) options.progress(static_cast<int64_t>(index) + 1, total);
      });

  for (size_t c = 0; c < k; ++c) {
    const uint64_t key = n + 1 + c;
    writer.write(key,
                 RecordHeader::with_labels(
                     {static_cast<float>(first[c] + 1), static_cast<float>(first[c] + 1 + counts[c])}, key),
                 {});
  }
  writer.finish();

  // insightface's `property`: "num_classes,height,width" (the images are taken to be 112x112).
  const std::string property = (folder.empty() ? std::string() : folder + "/") + "property";
  write_file_atomic(property, std::to_string(num_classes) + ",112,112\n");

  PackSummary summary;
  summary.images = static_cast<int64_t>(n);
  summary.identities = num_classes;
  return summary;
}

// --- unpack ----------------------------------------------------------------------------------

UnpackSummary unpack_records(const std::string& rec_path, const std::string& out_dir, ProgressFn progress) {
  RecordIOReader reader(rec_path);
  make_directories(out_dir, "unpack '" + rec_path + "'");
  UnpackSummary summary;
  std::unordered_set<int64_t> folders;

  // Writes one image record; false if the payload is not an image record (and `strict` is off).
  auto write_record = [&](const std::string& payload, const std::string& name, uint64_t file_key, bool strict) {
    RecordHeader header;
    std::string image;
    try {
      unpack_record(payload, header, image);
    } catch (const DataError& e) {
      if (strict) throw DataError("RecordIO file '" + rec_path + "', " + name + ": " + e.what());
      ++summary.skipped;
      return;
    }
    const auto cls = class_of(header.primary_label());
    if (!cls) {
      throw DataError("RecordIO file '" + rec_path + "', " + name + ": label " + format_float(header.primary_label()) +
                      " is not a whole non-negative number (unpack writes OUT/<label>/<key>.jpg)");
    }
    const std::string dir = out_dir + "/" + std::to_string(*cls);
    if (folders.insert(*cls).second) make_directories(dir, "unpack '" + rec_path + "'");
    write_new_file(dir + "/" + std::to_string(file_key) + ".jpg", image);
    ++summary.images;
  };

  if (reader.has_index()) {
    const RecordLayout layout = layout_of(reader, /*class_ranges=*/false);
    const bool strict = layout.kind == RecordLayout::kMs1m;
    const auto total = static_cast<int64_t>(layout.image_keys.size());
    int64_t done = 0;
    for (uint64_t key : layout.image_keys) {
      write_record(reader.read_payload(key), "key " + std::to_string(key), key, strict);
      if (progress) progress(++done, total);
    }
  } else {
    std::string payload;
    uint64_t offset = 0;
    uint64_t first_identity = std::numeric_limits<uint64_t>::max();  // N + 1 after a meta record
    const auto total = static_cast<int64_t>(reader.file_size());
    for (uint64_t position = 0; reader.next_payload(payload, &offset); ++position) {
      if (position == 0) {
        if (const auto meta = meta_record(payload)) {
          first_identity = meta->first;
          continue;
        }
      }
      if (position >= first_identity) break;  // the identity records
      write_record(payload, record_name(std::nullopt, position, offset), position, /*strict=*/false);
      if (progress) progress(static_cast<int64_t>(offset), total);
    }
    if (progress) progress(total, total);
  }
  summary.identities = static_cast<int64_t>(folders.size());
  return summary;
}

// --- inspect ---------------------------------------------------------------------------------

InspectReport inspect_dataset(const std::string& path, const InspectOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return inspect_folder(path, options);
  const bool rec_name = path.size() >= 4 && path.compare(path.size() - 4, 4, ".rec") == 0;
  if (rec_name || fs::exists(path, ec)) return inspect_recordio(path, options);
  return inspect_folder(path, options);  // scan_image_folder says the folder is missing
}

std::string InspectReport::to_text() const {
  std::ostringstream out;
  out << "path: " << path << "\n"
      << "kind: " << kind << "\n"
      << "layout: " << layout << "\n"
      << "images: " << images << "\n"
      << "identities: " << identities << "\n"
      << "images per identity: min " << images_per_identity_min << ", median "
      << format_median(images_per_identity_median) << ", max " << images_per_identity_max << "\n"
      << "problems: " << problem_count << "\n";
  for (const auto& p : problems) out << "  " << p << "\n";
  return out.str();
}

nlohmann::json InspectReport::to_json() const {
  return nlohmann::json{
      {"path", path},
      {"kind", kind},
      {"layout", layout},
      {"images", images},
      {"identities", identities},
      {"images_per_identity",
       {{"min", images_per_identity_min}, {"median", images_per_identity_median}, {"max", images_per_identity_max}}},
      {"problem_count", problem_count},
      {"problems", problems}};
}

// --- verification .bin images ----------------------------------------------------------------

namespace {

uint32_t be16(const std::string& b, size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) << 8 | static_cast<unsigned char>(b[at + 1]);
}

uint32_t be32(const std::string& b, size_t at) { return be16(b, at) << 16 | be16(b, at + 2); }

bool is_jpeg(const std::string& b) {
  return b.size() >= 3 && static_cast<unsigned char>(b[0]) == 0xff && static_cast<unsigned char>(b[1]) == 0xd8 &&
         static_cast<unsigned char>(b[2]) == 0xff;
}

bool is_png(const std::string& b) { return b.size() >= 8 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0; }

// Width and height from a JPEG's frame header (SOF0-SOF15 but DHT, JPG and DAC), walking the
// marker segments from SOI; false when the data ends or a scan starts first.
bool jpeg_size(const std::string& b, int64_t& width, int64_t& height) {
  size_t at = 2;
  while (at + 4 <= b.size()) {
    if (static_cast<unsigned char>(b[at]) != 0xff) return false;
    const auto marker = static_cast<unsigned char>(b[at + 1]);
    if (marker == 0xff) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {  // TEM, RSTn, SOI: no length
      at += 2;
      continue;
    }
    if (marker == 0xd9 || marker == 0xda) return false;  // EOI or SOS before a frame header
    const uint32_t length = be16(b, at + 2);
    if (length < 2) return false;
    if (marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc) {
      if (length < 7 || at + 9 > b.size()) return false;
      height = be16(b, at + 5);
      width = be16(b, at + 7);
      return width > 0 && height > 0;
    }
    at += 2 + length;
  }
  return false;
}

// Width and height from a PNG's IHDR chunk, which must come first.
bool png_size(const std::string& b, int64_t& width, int64_t& height) {
  if (b.size() < 24 || b.compare(12, 4, "IHDR") != 0) return false;
  width = be32(b, 16);
  height = be32(b, 20);
  return width > 0 && height > 0;
}

// What one image's header says, gathered in parallel.
struct ImageFacts {
  std::string encoding;
  std::string size = "unknown";
  std::string problem;
};

ImageFacts image_facts(const std::string& bytes, bool decode) {
  ImageFacts f;
  int64_t width = 0, height = 0;
  bool sized = false;
  if (bytes.empty()) {
    f.encoding = "empty";
    f.problem = "empty";
    return f;
  }
  if (is_jpeg(bytes) || is_png(bytes)) {
    f.encoding = is_jpeg(bytes) ? "JPEG" : "PNG";
    sized = f.encoding == "JPEG" ? jpeg_size(bytes, width, height) : png_size(bytes, width, height);
    if (!sized) f.problem = "a " + f.encoding + " whose header gives no size";
    if (sized && decode && !decodes(bytes)) f.problem = "the image does not decode";
  } else {
    f.encoding = "other";
    cv::Mat image;
    if (bytes.size() <= static_cast<size_t>(std::numeric_limits<int>::max())) {
      try {
        cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
        image = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
      } catch (const cv::Exception&) {
        image = cv::Mat();
      }
    }
    if (image.empty()) {
      f.problem = "not a JPEG or PNG, and OpenCV cannot decode it";
    } else {
      sized = true;
      width = image.cols;
      height = image.rows;
    }
  }
  if (sized) f.size = std::to_string(width) + "x" + std::to_string(height);
  return f;
}

// "key: count" lines, most frequent first (then by key).
void write_counts(std::ostringstream& out, const std::map<std::string, int64_t>& counts) {
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [key, count] : sorted) out << "  " << key << ": " << count << "\n";
}

}  // namespace

EncodedImageSummary summarize_encoded_images(const std::vector<std::string>& images, bool decode, int64_t threads) {
  std::vector<ImageFacts> facts(images.size());
  // Header parsing is cheap; threads matter for `decode` and for images of other encodings.
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < images.size();) facts[i] = image_facts(images[i], decode);
  };
  const size_t workers = std::min<size_t>(static_cast<size_t>(std::max<int64_t>(1, threads)), images.size());
  if (workers <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (size_t t = 0; t < workers; ++t) pool.emplace_back(work);
    for (auto& t : pool) t.join();
  }
  EncodedImageSummary summary;
  summary.images = static_cast<int64_t>(images.size());
  Problems problems;
  for (size_t i = 0; i < facts.size(); ++i) {
    ++summary.encodings[facts[i].encoding];
    ++summary.sizes[facts[i].size];
    if (!facts[i].problem.empty()) problems.add("image " + std::to_string(i) + ": " + facts[i].problem);
  }
  problems.finish();
  summary.problems = std::move(problems.lines);
  summary.problem_count = problems.total;
  return summary;
}

VerificationReport inspect_verification_pairs(const std::string& path, const std::string& variant,
                                              const std::vector<std::string>& images, const std::vector<bool>& issame,
                                              const InspectOptions& options) {
  if (images.size() != 2 * issame.size()) {
    throw ArgumentError("inspect_verification_pairs('" + path + "'): " + std::to_string(images.size()) +
                        " images for " + std::to_string(issame.size()) + " pairs (expected 2 per pair)");
  }
  VerificationReport report;
  report.path = path;
  report.variant = variant;
  report.pairs = static_cast<int64_t>(issame.size());
  report.genuine = std::count(issame.begin(), issame.end(), true);
  report.impostor = report.pairs - report.genuine;
  report.images = summarize_encoded_images(images, options.decode, options.threads);
  return report;
}

std::string VerificationReport::to_text() const {
  std::ostringstream out;
  out << "path: " << path << "\n"
      << "kind: verification_bin\n"
      << "variant: " << variant << "\n"
      << "pairs: " << pairs << "\n"
      << "genuine: " << genuine << "\n"
      << "impostor: " << impostor << "\n"
      << "images: " << images.images << "\n"
      << "image sizes:\n";
  write_counts(out, images.sizes);
  out << "encodings:\n";
  write_counts(out, images.encodings);
  out << "problems: " << images.problem_count << "\n";
  for (const auto& p : images.problems) out << "  " << p << "\n";
  return out.str();
}

nlohmann::json VerificationReport::to_json() const {
  return nlohmann::json{{"path", path},
                        {"kind", "verification_bin"},
                        {"variant", variant},
                        {"pairs", pairs},
                        {"genuine", genuine},
                        {"impostor", impostor},
                        {"images", images.images},
                        {"image_sizes", images.sizes},
                        {"encodings", images.encodings},
                        {"problem_count", images.problem_count},
                        {"problems", images.problems}};
}

}  // namespace facetrain::data
