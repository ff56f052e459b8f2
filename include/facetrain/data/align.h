#pragma once
// Five-point face alignment to the ArcFace 112x112 template (formats.md section 6), for users who
// start from raw photos plus landmarks (`facetrain data align`).
//
// Example:
//   Landmarks5 lmk = {{{30, 40}, {70, 41}, {50, 60}, {35, 80}, {66, 79}}};   // eyes, nose, mouth corners
//   cv::Mat face = facetrain::data::align_face(photo, lmk);                  // 112x112, same type as photo

#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace facetrain::data {

struct Point2 {
  double x = 0, y = 0;
};
/// Left eye, right eye, nose tip, left mouth corner, right mouth corner (image pixels).
using Landmarks5 = std::array<Point2, 5>;

/// insightface's ArcFace template for 112x112 crops.
const Landmarks5& arcface_template();

/// The least-squares similarity transform (rotation, uniform scale, translation; no reflection)
/// taking `landmarks` onto `target`, as the 2x3 matrix [[a, -b, tx], [b, a, ty]] (row-major:
/// a, -b, tx, b, a, ty). The closed form of formats.md section 6 (Umeyama's solution in 2-D).
/// Throws facetrain::ArgumentError when the landmarks coincide (no transform is defined).
std::array<double, 6> similarity_transform(const Landmarks5& landmarks, const Landmarks5& target = arcface_template());

/// `image` warped by the transform onto the template: 112x112, bilinear, black border.
cv::Mat align_face(const cv::Mat& image, const Landmarks5& landmarks);

/// One line of a landmarks file: an image path (relative to the images folder, may hold spaces)
/// followed by ten numbers x1 y1 x2 y2 ... x5 y5, separated by white space. '#' starts a comment.
struct LandmarksLine {
  std::string image;
  Landmarks5 points;
  int64_t line = 0;
};
/// Reads a landmarks file. Throws facetrain::DataError naming the file and line of a malformed line.
std::vector<LandmarksLine> read_landmarks_file(const std::string& path);

struct AlignSummary {
  int64_t written = 0;
};
/// Aligns every image the landmarks file lists, from `images_dir` to the same relative path under
/// `out_dir` (folders created; the encoder follows the extension). `progress(done, total)` is
/// called after each image. Throws facetrain::DataError naming the image and the landmarks line
/// when an image is missing or cannot be decoded or written.
AlignSummary align_folder(const std::string& images_dir, const std::string& landmarks_file, const std::string& out_dir,
                          const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace facetrain::data
