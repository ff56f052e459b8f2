#include "facetrain/data/align.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "facetrain/core/error.h"

namespace facetrain::data {

const Landmarks5& arcface_template() {
  static const Landmarks5 points = {
      {{38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366}, {41.5493, 92.3655}, {70.7299, 92.2041}}};
  return points;
}

std::array<double, 6> similarity_transform(const Landmarks5& landmarks, const Landmarks5& target) {
  Point2 ms, md;
  for (int i = 0; i < 5; ++i) {
    ms.x += landmarks[i].x / 5;
    ms.y += landmarks[i].y / 5;
    md.x += target[i].x / 5;
    md.y += target[i].y / 5;
  }
  double norm = 0, dot = 0, cross = 0;
  for (int i = 0; i < 5; ++i) {
    const double sx = landmarks[i].x - ms.x, sy = landmarks[i].y - ms.y;
    const double dx = target[i].x - md.x, dy = target[i].y - md.y;
    norm += sx * sx + sy * sy;
    dot += sx * dx + sy * dy;
    cross += sx * dy - sy * dx;
  }
  if (!(norm > 1e-12) || !std::isfinite(norm))
    throw ArgumentError("align: the five landmarks coincide (or are not finite); no similarity transform exists");
  const double a = dot / norm, b = cross / norm;
  const double tx = md.x - (a * ms.x - b * ms.y);
  const double ty = md.y - (b * ms.x + a * ms.y);
  return {a, -b, tx, b, a, ty};
}

cv::Mat align_face(const cv::Mat& image, const Landmarks5& landmarks) {
  if (image.empty()) throw ArgumentError("align: empty image");
  const auto m = similarity_transform(landmarks);
  cv::Mat matrix(2, 3, CV_64F);
  for (int i = 0; i < 6; ++i) matrix.at<double>(i / 3, i % 3) = m[i];
  cv::Mat out;
  cv::warpAffine(image, out, matrix, cv::Size(112, 112), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return out;
}

std::vector<LandmarksLine> read_landmarks_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot open the landmarks file");
  std::vector<LandmarksLine> out;
  std::string text;
  int64_t number = 0;
  while (std::getline(in, text)) {
    ++number;
    if (auto hash = text.find('#'); hash != std::string::npos) text.erase(hash);
    std::istringstream words(text);
    std::vector<std::string> fields;
    for (std::string w; words >> w;) fields.push_back(w);
    if (fields.empty()) continue;
    const std::string where = path + ": line " + std::to_string(number) + ": ";
    if (fields.size() < 11)
      throw DataError(where + "expected an image path and 10 numbers (x1 y1 ... x5 y5), got " +
                      std::to_string(fields.size()) + " field(s)");
    LandmarksLine line;
    line.line = number;
    size_t first_number = fields.size() - 10;
    for (size_t i = 0; i < first_number; ++i) line.image += (i ? " " : "") + fields[i];
    for (int k = 0; k < 10; ++k) {
      const std::string& f = fields[first_number + k];
      char* end = nullptr;
      double v = std::strtod(f.c_str(), &end);
      if (end != f.c_str() + f.size() || !std::isfinite(v))
        throw DataError(where + "expected a number, got '" + f + "'");
      (k % 2 == 0 ? line.points[k / 2].x : line.points[k / 2].y) = v;
    }
    out.push_back(std::move(line));
  }
  if (out.empty()) throw DataError(path + ": the landmarks file lists no images");
  return out;
}

AlignSummary align_folder(const std::string& images_dir, const std::string& landmarks_file, const std::string& out_dir,
                          const std::function<void(int64_t, int64_t)>& progress) {
  namespace fs = std::filesystem;
  const auto lines = read_landmarks_file(landmarks_file);
  AlignSummary summary;
  for (const auto& line : lines) {
    const fs::path source = fs::path(images_dir) / line.image;
    const std::string where = landmarks_file + ": line " + std::to_string(line.line) + ": ";
    cv::Mat image = cv::imread(source.string(), cv::IMREAD_COLOR);
    if (image.empty()) throw DataError(where + source.string() + ": missing, or not an image OpenCV can decode");
    cv::Mat face;
    try {
      face = align_face(image, line.points);
    } catch (const ArgumentError& e) {
      throw DataError(where + e.what());
    }
    const fs::path target = fs::path(out_dir) / line.image;
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    bool ok = false;
    try {
      ok = cv::imwrite(target.string(), face);
    } catch (const cv::Exception& e) {
      ok = false;
    }
    if (!ok) throw DataError(where + "cannot write " + target.string());
    ++summary.written;
    if (progress) progress(summary.written, static_cast<int64_t>(lines.size()));
  }
  return summary;
}

}  // namespace facetrain::data
