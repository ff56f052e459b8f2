#include "facetrain/eval/roc.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "facetrain/core/error.h"
#include "facetrain/core/plot.h"

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

void write_roc_png(const std::string& path, const std::string& title, const std::vector<RocSeries>& curves,
                   bool log_x) {
  for (const auto& c : curves)
    if (c.fpr.size() != c.tpr.size())
      throw ArgumentError("write_roc_png: series '" + c.name + "' has " + std::to_string(c.fpr.size()) + " FPR and " +
                          std::to_string(c.tpr.size()) + " TPR values");
  PlotPanel panel;
  panel.title = title;
  panel.x_label = log_x ? "False Positive Rate (log scale)" : "False Positive Rate";
  panel.y_label = "True Positive Rate";
  panel.series.reserve(curves.size());
  for (const auto& c : curves) panel.series.push_back({c.name, c.fpr, c.tpr});
  panel.log_x = log_x;
  panel.x_min = log_x ? 1e-6 : 0, panel.x_max = 1;  // the IJB convention on a log axis
  panel.y_min = 0, panel.y_max = 1;
  panel.clamp_x = true;  // FPR below 1e-6, such as the origin (0, 0), on the left edge
  write_plot_png(path, {panel}, 800, 600);
}

}  // namespace facetrain::eval
