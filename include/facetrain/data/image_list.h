#pragma once
// Image folders and image lists (formats.md section 2): the (path, label) pairs of a dataset
// kept as loose image files.
//
// Example:
//   auto list = facetrain::data::scan_image_folder("faces/");   // faces/<identity>/**/*.jpg
//   list.entries[0].path;   // "faces/0001/a.jpg"
//   list.entries[0].label;  // index of "0001" among the sorted identity folder names

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace facetrain::data {

/// Face box and five landmarks of an insightface `train.lst` line (pixels of the source image).
struct FaceAnnotation {
  std::array<float, 4> bbox{};        ///< x1, y1, x2, y2
  std::array<float, 10> landmarks{};  ///< x1..x5 then y1..y5, as the file stores them
};

struct ImageEntry {
  std::string path;                    ///< as found (folders) or resolved against the list file's folder (lists)
  int64_t label = 0;                   ///< class index, >= 0
  std::optional<FaceAnnotation> face;  ///< insightface lists with 17 columns
  bool aligned = true;                 ///< insightface lists: the first column
};

struct ImageList {
  std::string source;                    ///< the folder or list file
  std::vector<ImageEntry> entries;       ///< in dataset order
  std::vector<std::string> class_names;  ///< folders: name of class i; lists: empty
  int64_t num_classes = 0;               ///< folders: number of folders; lists: max label + 1
};

/// File name extensions an image folder takes (compared case-insensitively), as torchvision's
/// ImageFolder: jpg jpeg png ppm bmp pgm tif tiff webp.
bool has_image_extension(const std::string& file_name);

/// Scans `root` as torchvision's ImageFolder does: one class per sub-folder (symbolic links
/// followed), class i = the i-th folder name in code-point (byte) order ("10" before "2"); the
/// images of a class are every file with an image extension anywhere below its folder, ordered by
/// (folder path, file name) as `sorted(os.walk(class_dir))` then `sorted(files)` orders them.
/// Throws facetrain::DataError naming the folder when it is missing, has no class folders, or
/// when a class folder holds no image (all such classes are listed).
ImageList scan_image_folder(const std::string& root);

/// Reads an image list, detecting its dialect per file:
///  - mxnet `.lst`: `index \t label [\t label ...] \t path` (the first label is the class; labels
///    may be written as floats, "3.000000", but must be whole numbers);
///  - insightface `train.lst`: `aligned \t path \t label [\t bbox(4) \t landmarks(10)]`.
/// Relative paths are resolved against the folder of the list file. Blank lines are skipped.
/// Throws facetrain::DataError naming the file and line for a malformed line, a negative or
/// fractional label, or a column count that fits neither dialect; and for an empty list.
ImageList read_image_list(const std::string& path);

/// The bytes of an image file (any size, read whole). Throws facetrain::DataError "image file
/// 'PATH': cannot open it: <reason>" (or "not a regular file", "reading it failed: <reason>").
std::string read_image_file(const std::string& path);

}  // namespace facetrain::data
