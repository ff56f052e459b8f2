#include "facetrain/eval/roc.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "facetrain/core/error.h"
#include "facetrain/core/files.h"

namespace facetrain::eval {

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<uint8_t>& labels) {
  if (scores.size() != labels.size())
    throw ArgumentError("roc_curve: " + std::to_string(scores.size()) + " scores but " + std::to_string(labels.size()) +
                        " labels");
  size_t positives = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] > 1)
      throw ArgumentError("roc_curve: label " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                          "; labels must be 0 (impostor) or 1 (genuine)");
    if (!std::isfinite(scores[i]))
      throw ArgumentError("roc_curve: score " + std::to_string(i) + " is not finite (" + std::to_string(scores[i]) +
                          ")");
    positives += labels[i];
  }
  if (positives == 0 || positives == scores.size())
    throw ArgumentError("roc_curve: needs both genuine (1) and impostor (0) labels; got " + std::to_string(positives) +
                        " genuine of " + std::to_string(scores.size()));

  // Descending order. sklearn reverses a stable ascending sort, so its order among equal scores
  // differs from this one, but only the last index of each run of equal scores is read below and
  // the counts up to it do not depend on the order inside the run.
  const size_t n = scores.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });

  // _binary_clf_curve: a point at the last index of each run of equal scores (np.diff != 0, so
  // -0.0 and 0.0 are one score). The counts are integers, exact in doubles up to 2^53.
  std::vector<double> fps, tps, thr;
  double tp = 0;
  for (size_t k = 0; k < n; ++k) {
    tp += labels[order[k]];
    if (k + 1 == n || scores[order[k + 1]] != scores[order[k]]) {
      tps.push_back(tp);
      fps.push_back(static_cast<double>(k + 1) - tp);  // sklearn: fps = 1 + threshold_idxs - tps
      thr.push_back(scores[order[k]]);
    }
  }

  // drop_intermediate: keep the ends and every point where either second difference is nonzero.
  RocCurve roc;
  const size_t m = fps.size();
  roc.fpr.reserve(m + 1), roc.tpr.reserve(m + 1), roc.thresholds.reserve(m + 1);
  roc.fpr.push_back(0), roc.tpr.push_back(0);
  roc.thresholds.push_back(std::numeric_limits<double>::infinity());
  for (size_t k = 0; k < m; ++k) {
    const bool keep = m <= 2 || k == 0 || k + 1 == m || (fps[k + 1] - fps[k]) - (fps[k] - fps[k - 1]) != 0 ||
                      (tps[k + 1] - tps[k]) - (tps[k] - tps[k - 1]) != 0;
    if (!keep) continue;
    roc.fpr.push_back(fps[k]), roc.tpr.push_back(tps[k]), roc.thresholds.push_back(thr[k]);
  }
  const double fp_total = roc.fpr.back(), tp_total = roc.tpr.back();
  for (auto& v : roc.fpr) v /= fp_total;
  for (auto& v : roc.tpr) v /= tp_total;
  return roc;
}

double tar_at_far(const RocCurve& roc, double far) {
  if (roc.fpr.empty() || roc.fpr.size() != roc.tpr.size())
    throw ArgumentError("tar_at_far: the ROC curve has " + std::to_string(roc.fpr.size()) + " FPR and " +
                        std::to_string(roc.tpr.size()) + " TPR values (needs the same number, at least one)");
  // Scanning upwards and taking `<=` keeps the last of equally near points: the one eval_ijbc.py
  // picks after its np.flipud, with the larger TPR.
  size_t best = 0;
  double best_distance = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < roc.fpr.size(); ++i) {
    const double d = std::abs(roc.fpr[i] - far);
    if (d <= best_distance) best = i, best_distance = d;
  }
  return roc.tpr[best];
}

namespace {

// matplotlib's "tab10" colours, as BGR.
const cv::Scalar kColours[] = {{180, 119, 31}, {14, 127, 255},  {44, 160, 44},   {40, 39, 214},  {189, 103, 148},
                               {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};

void dashed_line(cv::Mat& img, cv::Point a, cv::Point b, const cv::Scalar& colour) {
  const double length = std::hypot(b.x - a.x, b.y - a.y);
  const int dash = 4, gap = 4;
  for (double s = 0; s < length; s += dash + gap) {
    const double e = std::min(length, s + dash);
    cv::Point p(cvRound(a.x + (b.x - a.x) * s / length), cvRound(a.y + (b.y - a.y) * s / length));
    cv::Point q(cvRound(a.x + (b.x - a.x) * e / length), cvRound(a.y + (b.y - a.y) * e / length));
    cv::line(img, p, q, colour, 1, cv::LINE_AA);
  }
}

void centred_text(cv::Mat& img, const std::string& text, cv::Point centre, double scale, int thickness = 1) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, scale, thickness, &baseline);
  cv::putText(img, text, {centre.x - size.width / 2, centre.y + size.height / 2}, cv::FONT_HERSHEY_SIMPLEX, scale,
              cv::Scalar::all(0), thickness, cv::LINE_AA);
}

std::string tick_label(double v, bool log_x) {
  if (log_x) {
    const int e = static_cast<int>(std::lround(std::log10(v)));
    return e == 0 ? "1" : "1e" + std::to_string(e);
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

void write_roc_png(const std::string& path, const std::string& title, const std::vector<RocSeries>& curves,
                   bool log_x) {
  for (const auto& c : curves)
    if (c.fpr.size() != c.tpr.size())
      throw ArgumentError("write_roc_png: series '" + c.name + "' has " + std::to_string(c.fpr.size()) + " FPR and " +
                          std::to_string(c.tpr.size()) + " TPR values");
  const int width = 800, height = 600, left = 80, right = 30, top = 50, bottom = 70;
  cv::Mat img(height, width, CV_8UC3, cv::Scalar::all(255));
  const double x_min = log_x ? -6 : 0, x_max = log_x ? 0 : 1;  // log10(FPR) or FPR
  const int plot_w = width - left - right, plot_h = height - top - bottom;
  auto px = [&](double fpr) {
    double x = log_x ? (fpr > 0 ? std::log10(fpr) : x_min) : fpr;
    x = std::clamp(x, x_min, x_max);
    return left + (x - x_min) / (x_max - x_min) * plot_w;
  };
  auto py = [&](double tpr) { return top + plot_h - std::clamp(tpr, 0.0, 1.0) * plot_h; };
  // Sub-pixel coordinates (shift 4) keep log-scale curves smooth.
  const int shift = 4;
  auto point = [&](double x, double y) { return cv::Point(cvRound(x * (1 << shift)), cvRound(y * (1 << shift))); };

  const cv::Scalar grid(200, 200, 200), black = cv::Scalar::all(0);
  // Grid and ticks: decades (log) or tenths (linear) on x, tenths on y.
  const int x_ticks = log_x ? 6 : 10;
  for (int i = 0; i <= x_ticks; ++i) {
    const double v = log_x ? std::pow(10.0, x_min + i) : i / 10.0;
    const int x = static_cast<int>(std::lround(px(v)));
    if (i > 0 && i < x_ticks) dashed_line(img, {x, top}, {x, top + plot_h}, grid);
    cv::line(img, {x, top + plot_h}, {x, top + plot_h + 6}, black, 1);
    centred_text(img, tick_label(v, log_x), {x, top + plot_h + 18}, 0.45);
  }
  for (int i = 0; i <= 10; ++i) {
    const int y = static_cast<int>(std::lround(py(i / 10.0)));
    if (i > 0 && i < 10) dashed_line(img, {left, y}, {left + plot_w, y}, grid);
    cv::line(img, {left - 6, y}, {left, y}, black, 1);
    char buf[8];
    std::snprintf(buf, sizeof buf, "%.1f", i / 10.0);
    int baseline = 0;
    const cv::Size size = cv::getTextSize(buf, cv::FONT_HERSHEY_SIMPLEX, 0.45, 1, &baseline);
    cv::putText(img, buf, {left - 10 - size.width, y + size.height / 2}, cv::FONT_HERSHEY_SIMPLEX, 0.45, black, 1,
                cv::LINE_AA);
  }
  if (log_x) {  // minor ticks at 2..9 x 10^k
    for (int d = static_cast<int>(x_min); d < static_cast<int>(x_max); ++d)
      for (int k = 2; k <= 9; ++k) {
        const int x = static_cast<int>(std::lround(px(k * std::pow(10.0, d))));
        cv::line(img, {x, top + plot_h}, {x, top + plot_h + 3}, black, 1);
      }
  }
  cv::rectangle(img, {left, top}, {left + plot_w, top + plot_h}, black, 1);

  for (size_t k = 0; k < curves.size(); ++k) {
    const auto& c = curves[k];
    std::vector<cv::Point> pts;
    pts.reserve(c.fpr.size());
    for (size_t i = 0; i < c.fpr.size(); ++i) {
      if (!std::isfinite(c.fpr[i]) || !std::isfinite(c.tpr[i])) continue;
      cv::Point p = point(px(c.fpr[i]), py(c.tpr[i]));
      if (pts.empty() || pts.back() != p) pts.push_back(p);  // millions of IJB points collapse
    }
    if (pts.size() == 1) pts.push_back(pts[0]);
    cv::polylines(img, pts, false, kColours[k % 10], 2, cv::LINE_AA, shift);
  }

  centred_text(img, title, {width / 2, top / 2}, 0.7, 2);
  centred_text(img, log_x ? "False Positive Rate (log scale)" : "False Positive Rate",
               {left + plot_w / 2, height - bottom / 2 + 12}, 0.55);
  {  // y label, rotated: drawn horizontally on its own canvas, then turned.
    const std::string label = "True Positive Rate";
    int baseline = 0;
    const cv::Size size = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, 0.55, 1, &baseline);
    cv::Mat text(size.height + baseline + 4, size.width + 4, CV_8UC3, cv::Scalar::all(255));
    cv::putText(text, label, {2, size.height + 2}, cv::FONT_HERSHEY_SIMPLEX, 0.55, black, 1, cv::LINE_AA);
    cv::Mat turned;
    cv::rotate(text, turned, cv::ROTATE_90_COUNTERCLOCKWISE);
    const int x = 8, y = top + (plot_h - turned.rows) / 2;
    if (y >= 0 && x + turned.cols <= width && y + turned.rows <= height)
      turned.copyTo(img(cv::Rect(x, y, turned.cols, turned.rows)));
  }

  if (!curves.empty()) {  // legend, lower right as in eval_ijbc.py
    const double scale = 0.5;
    int widest = 0, baseline = 0, line_h = 0;
    for (const auto& c : curves) {
      const cv::Size size = cv::getTextSize(c.name, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline);
      widest = std::max(widest, size.width);
      line_h = std::max(line_h, size.height + baseline + 6);
    }
    const int box_w = widest + 50, box_h = static_cast<int>(curves.size()) * line_h + 10;
    const int bx = left + plot_w - box_w - 10, by = top + plot_h - box_h - 10;
    cv::rectangle(img, {bx, by}, {bx + box_w, by + box_h}, cv::Scalar::all(255), cv::FILLED);
    cv::rectangle(img, {bx, by}, {bx + box_w, by + box_h}, grid, 1);
    for (size_t k = 0; k < curves.size(); ++k) {
      const int y = by + 5 + static_cast<int>(k) * line_h + line_h / 2;
      cv::line(img, {bx + 8, y}, {bx + 36, y}, kColours[k % 10], 2, cv::LINE_AA);
      cv::putText(img, curves[k].name, {bx + 42, y + 5}, cv::FONT_HERSHEY_SIMPLEX, scale, black, 1, cv::LINE_AA);
    }
  }

  std::vector<uchar> png;
  bool encoded = false;
  try {
    encoded = cv::imencode(".png", img, png);
  } catch (const cv::Exception& e) {
    throw DataError("cannot write '" + path + "': PNG encoding failed: " + e.what());
  }
  if (!encoded) throw DataError("cannot write '" + path + "': PNG encoding failed");
  // A temporary file in the same folder, then a rename: a reader never sees half an image.
  write_file_atomic(path, std::string(png.begin(), png.end()));
}

}  // namespace facetrain::eval
