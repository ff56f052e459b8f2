#include "facetrain/data/dataset.h"

#include <spdlog/spdlog.h>

#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "facetrain/config/reader.h"
#include "facetrain/core/error.h"
#include "facetrain/data/align.h"
#include "facetrain/data/image_list.h"
#include "facetrain/data/recordio.h"

namespace facetrain::data {
namespace fs = std::filesystem;

namespace {

const std::vector<std::string>& dataset_types() {
  static const std::vector<std::string> types{"recordio", "image_folder", "list", "synthetic"};
  return types;
}

/// Checks that `label` is a class index below `num_classes` (when known, > 0).
int64_t checked_label(float label, int64_t num_classes, const std::string& where) {
  if (!std::isfinite(label) || label < 0 || label != std::floor(label)) {
    throw DataError(where + ": label " + config::fmt(label) + " is not a class index (a whole number >= 0)");
  }
  auto value = static_cast<int64_t>(label);
  if (num_classes > 0 && value >= num_classes) {
    throw DataError(where + ": label " + std::to_string(value) + " is outside [0, " + std::to_string(num_classes) +
                    ") (num_classes " + std::to_string(num_classes) + ")");
  }
  return value;
}

// ---- recordio -----------------------------------------------------------------------------------

class RecordIODataset : public Dataset {
 public:
  explicit RecordIODataset(const DatasetOptions& options) : reader_(rec_path(options.path), options.index) {
    if (reader_.has_index()) {
      layout_ = detect_layout(reader_);
      keys_ = layout_.image_keys;
      num_classes_ = layout_.num_classes;
    } else {
      // No .idx: one sequential pass finds the records (each one an image, as in a flat file).
      spdlog::info("{}: no index file, scanning the records", reader_.path());
      std::string payload;
      uint64_t offset = 0;
      while (reader_.next_payload(payload, &offset)) offsets_.push_back(offset);
      layout_.kind = RecordLayout::kFlat;
      layout_.num_images = static_cast<int64_t>(offsets_.size());
    }
    if (size() == 0) throw DataError(reader_.path() + ": holds no image record");
    if (options.num_classes > 0) {
      num_classes_ = options.num_classes;
    } else if (num_classes_ <= 0) {
      num_classes_ = scan_num_classes();
    }
  }

  int64_t size() const override { return static_cast<int64_t>(reader_.has_index() ? keys_.size() : offsets_.size()); }
  int64_t num_classes() const override { return num_classes_; }

  Sample get(int64_t index) const override {
    Record record = reader_.has_index() ? reader_.read(keys_.at(static_cast<size_t>(index)))
                                        : reader_.read_at(offsets_.at(static_cast<size_t>(index)));
    Sample sample;
    sample.label = checked_label(record.header.primary_label(), num_classes_, where(index));
    if (record.image.empty()) throw DataError(where(index) + ": the record holds no image bytes");
    sample.encoded = std::move(record.image);
    return sample;
  }

  std::string where(int64_t index) const override {
    if (reader_.has_index()) return reader_.path() + " key " + std::to_string(keys_.at(static_cast<size_t>(index)));
    return reader_.path() + " record " + std::to_string(index) + " (offset " +
           std::to_string(offsets_.at(static_cast<size_t>(index))) + ")";
  }

  std::string describe() const override {
    std::string text = "recordio " + reader_.path() + ": " + layout_.describe();
    if (layout_.kind != RecordLayout::kMs1m) text += ", " + std::to_string(num_classes_) + " classes";
    return text;
  }

 private:
  static std::string rec_path(const std::string& path) {
    if (path.empty()) throw ArgumentError("data.path: the .rec file (or a folder holding train.rec) is required");
    std::error_code ec;
    if (fs::is_directory(path, ec)) return (fs::path(path) / "train.rec").string();
    return path;
  }

  // A flat file does not say how many classes it has: read every label once.
  int64_t scan_num_classes() const {
    spdlog::info("{}: reading every label to count the classes (set data.num_classes to skip this)", reader_.path());
    int64_t max_label = -1;
    RecordHeader header;
    std::string image;
    for (int64_t i = 0; i < size(); ++i) {
      std::string payload = reader_.has_index() ? reader_.read_payload(keys_[static_cast<size_t>(i)])
                                                : reader_.read_payload_at(offsets_[static_cast<size_t>(i)]);
      try {
        unpack_record(payload, header, image);
        max_label = std::max(max_label, checked_label(header.primary_label(), 0, where(i)));
      } catch (const DataError&) {
        // A bad record is reported (or skipped) when the loader reads it.
      }
    }
    if (max_label < 0) throw DataError(reader_.path() + ": no record has a valid label");
    return max_label + 1;
  }

  RecordIOReader reader_;
  RecordLayout layout_;
  std::vector<uint64_t> keys_;     // with an index: the image keys
  std::vector<uint64_t> offsets_;  // without: the record offsets
  int64_t num_classes_ = 0;
};

// ---- image folders and lists --------------------------------------------------------------------

class ImageListDataset : public Dataset {
 public:
  ImageListDataset(ImageList list, const DatasetOptions& options, std::string kind)
      : list_(std::move(list)), kind_(std::move(kind)) {
    num_classes_ = options.num_classes > 0 ? options.num_classes : list_.num_classes;
  }

  int64_t size() const override { return static_cast<int64_t>(list_.entries.size()); }
  int64_t num_classes() const override { return num_classes_; }

  Sample get(int64_t index) const override {
    const ImageEntry& entry = list_.entries.at(static_cast<size_t>(index));
    Sample sample;
    sample.label = checked_label(static_cast<float>(entry.label), num_classes_, where(index));
    if (entry.aligned) {
      sample.encoded = read_image_file(entry.path);
      return sample;
    }
    // insightface lists mark unaligned photos; align them with the list's landmarks.
    if (!entry.face) {
      throw DataError(where(index) + ": marked as not aligned, but the list gives no landmarks to align it with");
    }
    std::string bytes = read_image_file(entry.path);
    cv::Mat photo = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8UC1, bytes.data()), cv::IMREAD_COLOR);
    if (photo.empty()) throw DataError(where(index) + ": cannot decode the image");
    Landmarks5 points;
    for (size_t k = 0; k < 5; ++k) points[k] = {entry.face->landmarks[k], entry.face->landmarks[k + 5]};
    sample.pixels = align_face(photo, points);
    return sample;
  }

  std::string where(int64_t index) const override { return list_.entries.at(static_cast<size_t>(index)).path; }

  std::string describe() const override {
    return kind_ + " " + list_.source + ": " + std::to_string(size()) + " images, " + std::to_string(num_classes_) +
           " classes";
  }

 private:
  ImageList list_;
  std::string kind_;
  int64_t num_classes_ = 0;
};

// ---- synthetic ----------------------------------------------------------------------------------

/// Sample i is image i % K of identity i / K: the same images, in the same order, as the
/// train.rec `facetrain data synth` writes with the same options.
class SyntheticDataset : public Dataset {
 public:
  explicit SyntheticDataset(const SyntheticOptions& options) : options_(options), faces_(options.seed) {}

  int64_t size() const override { return options_.identities * options_.images_per_identity; }
  int64_t num_classes() const override { return options_.identities; }

  Sample get(int64_t index) const override {
    if (index < 0 || index >= size()) throw ArgumentError(where(index) + ": index out of range");
    Sample sample;
    sample.label = index / options_.images_per_identity;
    sample.encoded = faces_.render_jpeg(static_cast<uint64_t>(sample.label),
                                        static_cast<uint64_t>(index % options_.images_per_identity));
    return sample;
  }

  std::string where(int64_t index) const override {
    return "synthetic image " + std::to_string(index) + " (identity " +
           std::to_string(index / options_.images_per_identity) + ", variant " +
           std::to_string(index % options_.images_per_identity) + ")";
  }

  std::string describe() const override { return "synthetic faces: " + options_.describe(); }

 private:
  SyntheticOptions options_;
  SyntheticFaces faces_;
};

}  // namespace

void DatasetOptions::read(config::Section& section) {
  section.read("type", type);
  section.read("path", path);
  section.read("index", index);
  section.read("num_classes", num_classes);
  synthetic.read(section);
}

config::OptionProblems DatasetOptions::problems() const {
  config::OptionProblems p;
  const auto& types = dataset_types();
  if (std::find(types.begin(), types.end(), type) == types.end()) {
    p.push_back({"type", config::Section::unknown_value_message(type, types)});
  }
  if (type != "synthetic" && path.empty()) p.push_back({"path", "is required for data.type " + type});
  if (num_classes < 0)
    p.push_back({"num_classes", "must be >= 0 (0: from the data), got " + std::to_string(num_classes)});
  if (type == "synthetic") {
    for (auto& problem : synthetic.problems()) p.push_back(std::move(problem));
  }
  return p;
}

std::string DatasetOptions::describe() const {
  std::ostringstream out;
  out << "type=" << type;
  if (type == "synthetic") {
    out << ", " << synthetic.describe();
  } else {
    out << ", path=" << path;
    if (!index.empty()) out << ", index=" << index;
  }
  if (num_classes > 0) out << ", num_classes=" << num_classes;
  return out.str();
}

std::shared_ptr<Dataset> make_dataset(const DatasetOptions& options) {
  config::throw_if_invalid("data", options.problems());
  std::shared_ptr<Dataset> dataset;
  if (options.type == "recordio") {
    dataset = std::make_shared<RecordIODataset>(options);
  } else if (options.type == "image_folder") {
    dataset = std::make_shared<ImageListDataset>(scan_image_folder(options.path), options, "image folder");
  } else if (options.type == "list") {
    dataset = std::make_shared<ImageListDataset>(read_image_list(options.path), options, "image list");
  } else {
    dataset = std::make_shared<SyntheticDataset>(options.synthetic);
  }
  if (options.num_classes > 0 && options.type == "synthetic" && options.num_classes < dataset->num_classes()) {
    throw ArgumentError("data.num_classes " + std::to_string(options.num_classes) + " is below the " +
                        std::to_string(dataset->num_classes()) + " synthetic identities");
  }
  return dataset;
}

}  // namespace facetrain::data
