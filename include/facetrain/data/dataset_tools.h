#pragma once
// The work behind `facetrain data pack | unpack | inspect`: image folders and lists to RecordIO,
// RecordIO back to files, and a report on any dataset (for verification `.bin` files, the
// report on the pairs and images that io::read_verification_bin returns).
//
// Example:
//   auto list = facetrain::data::scan_image_folder("faces/");
//   facetrain::data::pack_images(list, "faces_rec/train");     // train.rec, train.idx, property
//   facetrain::data::unpack_records("faces_rec/train.rec", "out/");  // out/<label>/<key>.jpg
//   auto report = facetrain::data::inspect_dataset("faces_rec/train.rec");
//   std::cout << report.to_text();   // or report.to_json().dump(2)

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "facetrain/data/image_list.h"

namespace facetrain::data {

/// Called with (done, total) units of work.
using ProgressFn = std::function<void(int64_t, int64_t)>;

struct PackOptions {
  int64_t threads = 2;  ///< threads reading the image files (the output does not depend on it)
  ProgressFn progress;
};

struct PackSummary {
  int64_t images = 0;
  int64_t identities = 0;
};

/// Writes PREFIX.rec, PREFIX.idx and PREFIX's folder/property in insightface's MS1M layout: meta
/// record key 0 stored first, labels [N + 1, N + 1 + K]; images under keys 1..N in list order
/// grouped by class (class 0 first, then 1, ...; list order inside a class), each with labels
/// [class, 1.0] and the file's bytes unchanged; identity records N+1..N+K with [first, end).
/// Every class 0..K-1 (K = max(list.num_classes, max label + 1)) needs an image: a class
/// without one throws DataError naming the list (detect_layout refuses empty identity ranges).
/// `property` holds "K,112,112" (the images are not decoded). The images are read by
/// `threads` threads in windows of a few thousand (bounded memory). Atomic (RecordIOWriter).
/// Throws DataError naming the file for an unreadable image file.
PackSummary pack_images(const ImageList& list, const std::string& prefix, const PackOptions& options = {});

struct UnpackSummary {
  int64_t images = 0;
  int64_t identities = 0;  ///< label folders written
  int64_t skipped = 0;     ///< flat files and files without .idx: records that are not image records
};

/// Writes every image record of `rec_path` (its .idx next to it, if any) as
/// OUT/<label>/<key>.jpg with the stored bytes unchanged (whatever the encoding), label =
/// the integer primary label. MS1M layout: the image keys 1..N; flat: every key of the .idx;
/// without an .idx: records in file order, key = their position (0, 1, ...); when the first is an
/// MS1M meta record, positions 1..N only. In flat and index-less files a payload that is not an
/// image record (shorter than its IRHeader and labels) is skipped and counted; in MS1M files it
/// throws. Throws DataError for a non-integer or negative label, naming the file and key (files
/// already written stay; none is left half-written). `progress`: (images done, images); without an
/// .idx: (bytes read, file size).
UnpackSummary unpack_records(const std::string& rec_path, const std::string& out_dir, ProgressFn progress = {});

/// What `facetrain data inspect` reports.
struct InspectReport {
  std::string path;
  std::string kind;    ///< "recordio" or "image_folder"
  std::string layout;  ///< recordio: RecordLayout::describe(); folders: "image folder"
  int64_t images = 0;
  int64_t identities = 0;  ///< distinct labels that have images
  int64_t images_per_identity_min = 0;
  double images_per_identity_median = 0;
  int64_t images_per_identity_max = 0;
  std::vector<std::string> problems;  ///< one line each, naming the record or file; at most 100,
                                      ///< then a last line "... and N more"
  int64_t problem_count = 0;          ///< all problems found (problems may hold fewer)

  /// The report as text, one fact per line.
  std::string to_text() const;
  /// {"path", "kind", "layout", "images", "identities", "images_per_identity": {"min", "median",
  ///  "max"}, "problem_count", "problems": [...]}
  nlohmann::json to_json() const;
};

struct InspectOptions {
  bool decode = false;  ///< also decode every image (slower) and report those that fail
  int64_t threads = 2;  ///< threads reading (and decoding) records or files; the report does not depend on it
  ProgressFn progress;  ///< (images done, images); a .rec without .idx: (bytes read, file size)
};

/// Inspects a .rec (with its .idx) or an image folder. Damage that stops the reading (a bad
/// file) throws DataError; per-record problems (a label out of range or fractional, an image
/// outside its identity record's range, an empty image, an undecodable one with decode) are
/// listed in `problems` instead. `images` counts the image records (MS1M: keys 1..N; flat: every
/// key) or files; identities and images per identity count those with a valid label. A .rec
/// without .idx is read in file order (a meta record first: MS1M, images at positions 1..N).
/// A key 0 that is not an image record at all (a raw payload) makes the file flat, not an error.
InspectReport inspect_dataset(const std::string& path, const InspectOptions& options = {});

/// What the headers of a set of encoded images say (summarize_encoded_images).
struct EncodedImageSummary {
  int64_t images = 0;
  /// "WIDTHxHEIGHT" -> images of that size, e.g. {"112x112": 12000}; "unknown" for images whose
  /// size could not be read.
  std::map<std::string, int64_t> sizes;
  /// "JPEG", "PNG", "other" (neither signature; OpenCV may still decode it), "empty" -> images.
  std::map<std::string, int64_t> encodings;
  std::vector<std::string> problems;  ///< "image N: ...", at most 100, then "... and N more"
  int64_t problem_count = 0;          ///< all problems found
};

/// Summarises encoded images without decoding them: JPEG sizes come from the SOFn segment, PNG
/// sizes from IHDR; other encodings are decoded with OpenCV to learn their size. Problems, one
/// per image: "image N: empty", "image N: a JPEG (or PNG) whose header gives no size", "image N:
/// not a JPEG or PNG, and OpenCV cannot decode it"; with `decode`, also "image N: the image does
/// not decode" for JPEG / PNG images that OpenCV fails to decode. `threads` decode in parallel
/// (the result does not depend on it). Never throws for bad image bytes.
EncodedImageSummary summarize_encoded_images(const std::vector<std::string>& images, bool decode = false,
                                             int64_t threads = 2);

/// What `facetrain data inspect FILE.bin` reports.
struct VerificationReport {
  std::string path;
  std::string variant;  ///< io::VerificationBin::variant: the pickle variant the file used
  int64_t pairs = 0;
  int64_t genuine = 0;   ///< pairs of the same person
  int64_t impostor = 0;  ///< pairs of different people
  EncodedImageSummary images;

  /// One fact per line: path, kind (verification_bin), variant, pairs, genuine, impostor,
  /// images, "image sizes:" and "encodings:" with one indented "key: count" line each (most
  /// frequent first), problems.
  std::string to_text() const;
  /// {"path", "kind": "verification_bin", "variant", "pairs", "genuine", "impostor", "images",
  ///  "image_sizes": {"112x112": n, ...}, "encodings": {"JPEG": n, ...}, "problem_count", "problems"}
  nlohmann::json to_json() const;
};

/// The report on a verification set read by io::read_verification_bin (passed as its parts,
/// the data layer being independent of the io layer): pair counts and
/// summarize_encoded_images(images, options.decode, options.threads). `path` and `variant` are
/// only reported; options.progress is not called (the work is quick). Throws ArgumentError
/// unless images.size() == 2 * issame.size().
VerificationReport inspect_verification_pairs(const std::string& path, const std::string& variant,
                                              const std::vector<std::string>& images, const std::vector<bool>& issame,
                                              const InspectOptions& options = {});

}  // namespace facetrain::data
