#pragma once
// ROC curves as scikit-learn's `roc_curve` computes them, TAR at a given FAR as insightface's
// IJB evaluation reads it off that curve, and ROC plots as PNG images (OpenCV).
//
// Example:
//   std::vector<double> scores = {0.9, 0.8, 0.8, 0.1};
//   std::vector<uint8_t> labels = {1, 1, 0, 0};                 // 1: genuine pair, 0: impostor
//   auto roc = facetrain::eval::roc_curve(scores, labels);
//   // roc.fpr = {0, 0, 0.5, 1}, roc.tpr = {0, 0.5, 1, 1}, roc.thresholds = {inf, 0.9, 0.8, 0.1}
//   double tar = facetrain::eval::tar_at_far(roc, 1e-4);        // 0.5: the point (0, 0.5)
//   facetrain::eval::write_roc_png("roc.png", "ROC on IJB-C", {{"r50", roc.fpr, roc.tpr}}, true);

#include <cstdint>
#include <string>
#include <vector>

namespace facetrain::eval {

/// One ROC curve: the point (fpr[i], tpr[i]) is reached by accepting every pair whose
/// score >= thresholds[i]. fpr and tpr ascend (non-strictly), thresholds descend; thresholds[0]
/// is +inf (no pair accepted, the point (0, 0)).
struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;
};

/// scikit-learn's `roc_curve(labels, scores)` with its defaults (pos_label 1, no sample weights,
/// drop_intermediate=True), transcribed from sklearn/metrics/_ranking.py (`_binary_clf_curve`,
/// `roc_curve`):
///  1. sort the scores descending (ties in any order: only the last index of each run of equal
///     scores is used, so the tie order cannot change the result);
///  2. one point per distinct score s: tps(s) = #positives with score >= s, fps(s) = #negatives
///     with score >= s (exact integer counts, held in doubles);
///  3. when there are more than 2 points, drop every interior point k where the second differences
///     of fps and of tps are both zero (the point lies on the straight segment joining its
///     neighbours, so the piecewise-linear curve is unchanged);
///  4. prepend (fps, tps) = (0, 0) with threshold +inf (scikit-learn >= 1.3; older releases used
///     thresholds[0] + 1, which only changes that one threshold);
///  5. fpr = fps / fps.back(), tpr = tps / tps.back().
/// The result is bit-identical to scikit-learn's: the counts are exact and each rate is one
/// IEEE division, as numpy does it.
/// Throws facetrain::ArgumentError when the sizes differ, a label is not 0 or 1, a score is not
/// finite (scikit-learn refuses NaN and inf too), or there is no positive or no negative label
/// (scikit-learn only warns there and returns NaN rates; a TAR computed from them is meaningless).
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<uint8_t>& labels);

/// The true-accept rate at false-accept rate `far`, as insightface's eval_ijbc.py reads it: the
/// ROC point whose fpr is nearest to `far` (|fpr - far| smallest; no interpolation). On ties the
/// point with the larger TPR wins: eval_ijbc.py flips the arrays (np.flipud) and takes
/// min(zip(|fpr - far|, index)), i.e. the first of the tied points in descending order, which is
/// the last in ascending order and so has the largest tpr. (A plain np.argmin on the unflipped
/// arrays would pick the smallest tpr instead.)
/// Throws facetrain::ArgumentError when the curve is empty or fpr and tpr differ in size.
double tar_at_far(const RocCurve& roc, double far);

/// One curve of a ROC plot: its legend label and its points.
struct RocSeries {
  std::string name;
  std::vector<double> fpr, tpr;
};

/// Draws `curves` (TPR against FPR) into a 800x600 PNG at `path`, with title, axes, ticks, a
/// grid and a legend. `log_x`: FPR on a log axis from 1e-6 to 1 (the IJB convention; points with a
/// smaller FPR, such as (0, 0), are drawn on the left edge); otherwise a linear axis from 0 to 1.
/// TPR runs from 0 to 1. Written atomically: a temporary file in the same folder, fsync, rename.
/// Throws facetrain::DataError "cannot write 'PATH': ..." when it cannot be encoded or written, and
/// facetrain::ArgumentError when a series' fpr and tpr differ in size.
void write_roc_png(const std::string& path, const std::string& title, const std::vector<RocSeries>& curves, bool log_x);

}  // namespace facetrain::eval
