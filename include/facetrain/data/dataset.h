#pragma once
// One interface over every kind of training data, chosen by `data.type` in a recipe:
//   recordio      MXNet .rec + .idx, any layout of formats.md section 1 (recordio.h)
//   image_folder  one sub-folder per identity (image_list.h)
//   list          an mxnet .lst or insightface train.lst (image_list.h)
//   synthetic     procedurally drawn identities, rendered on the fly (synthetic.h)
//
// Example:
//   facetrain::data::DatasetOptions o;  o.type = "recordio";  o.path = "faces_emore/train.rec";
//   auto ds = facetrain::data::make_dataset(o);
//   ds->size();  ds->num_classes();                 // 5822653, 85742
//   auto s = ds->get(17);                           // s.encoded (JPEG bytes), s.label

#include <cstdint>
#include <memory>
#include <string>

#include <opencv2/core.hpp>

#include "facetrain/config/options.h"
#include "facetrain/data/synthetic.h"

namespace facetrain::config {
class Section;
}

namespace facetrain::data {

/// One sample: encoded image bytes (JPEG, PNG, anything OpenCV decodes) or, when `encoded` is
/// empty, decoded 8-bit BGR pixels (CV_8UC3, as cv::imdecode gives them); and its class.
struct Sample {
  std::string encoded;
  cv::Mat pixels;
  int64_t label = 0;
};

/// A dataset of labelled face images. get() is thread-safe.
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Number of images.
  virtual int64_t size() const = 0;
  /// Number of identities: every label is in [0, num_classes()).
  virtual int64_t num_classes() const = 0;
  /// Sample `index` in [0, size()). Throws facetrain::DataError naming the file and record for
  /// unreadable data or a label outside [0, num_classes()).
  virtual Sample get(int64_t index) const = 0;
  /// Where sample `index` comes from, for messages: "train.rec key 17", "faces/0001/a.jpg".
  virtual std::string where(int64_t index) const = 0;
  /// One line for logs: "recordio faces_emore/train.rec: MS1M layout, 5822653 images, 85742 classes".
  virtual std::string describe() const = 0;
};

/// What to do with a sample that cannot be used (undecodable image, label out of range, ...).
enum class OnError {
  kFail,  ///< stop with the DataError naming the file and record
  kSkip,  ///< count it, log it, and use another sample in its place
};

/// The `data:` section of a recipe, dataset part.
struct DatasetOptions {
  std::string type = "recordio";  ///< recordio | image_folder | list | synthetic
  /// recordio: the .rec, or a folder holding train.rec; image_folder: the folder; list: the file.
  std::string path;
  std::string index;  ///< recordio: the .idx (default: next to the .rec)
  /// 0: from the data (the meta record, the folders, the largest label + 1 of a list or of a flat
  /// .rec, which is then read once); otherwise every label must be below it.
  int64_t num_classes = 0;
  SyntheticOptions synthetic;  ///< type synthetic (keys identities, images_per_identity, seed)

  /// YAML keys: type, path, index, num_classes, and the synthetic keys.
  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// Opens the dataset `options` describe. Throws ArgumentError for invalid options, DataError for
/// data that cannot be opened (naming the file).
std::shared_ptr<Dataset> make_dataset(const DatasetOptions& options);

}  // namespace facetrain::data
