#pragma once
// The face-verification protocol of insightface's `eval/verification.py` (LFW, CFP-FP, AgeDB-30,
// ...; formats.md section 4), reproduced number for number.
//
// Given 2N embeddings (rows 2i and 2i + 1 form pair i) and N same/different labels:
//   1. XNorm = mean L2 norm of the raw embedding rows (of E and E_flip when both are given).
//   2. emb = normalize_rows(E + E_flip) (or of E alone); a zero row stays zero.
//   3. dist_i = sum_d (emb_{2i,d} - emb_{2i+1,d})^2, float64.
//   4. Accuracy: thresholds t_k = k * 0.01, k = 0..399; a pair is predicted "same" when
//      dist < t. 10 contiguous folds (fold f has n/10 + (f < n % 10) pairs, no shuffle, as
//      sklearn's KFold); per fold, the first threshold with the best accuracy on the other nine
//      folds is applied to it. Reported: mean and population std of the fold accuracies.
//   5. VAL at FAR 1e-3: thresholds k * 0.001, k = 0..3999; per fold, the FAR curve of the other
//      nine folds is inverted by the linear B-spline that SciPy <= 1.9.2's
//      `interp1d(far, thresholds, kind='slinear')` evaluates (ties included), and the threshold is
//      applied to the fold. Reported: mean and std of VAL, mean of FAR.
//
// Exactness: float64 throughout; sums in numpy's order (pairwise summation, 8 accumulators for
// 8 <= n <= 128, halves above); no fused multiply-add (this file is compiled with
// -ffp-contract=off). The row norms of steps 1 and 2 are where numpy itself is not portable
// (sklearn's normalize uses einsum, XNorm uses BLAS ddot, both SIMD- and FMA-dependent), so
// those agree with a given numpy build to the last bit or two, not always bit for bit; accuracy,
// thresholds, VAL and FAR are counts and grid values, and agree exactly.
//
// Example:
//   auto bin = facetrain::io::read_verification_bin("lfw.bin");
//   auto emb = facetrain::eval::embed_encoded(*net, bin.images, {});   // eval/embed.h
//   auto r = facetrain::eval::verify(emb.embeddings, emb.flipped, bin.issame);
//   std::printf("%.5f+-%.5f\n", r.accuracy, r.accuracy_std);

#include <torch/torch.h>

#include <string>
#include <vector>

namespace facetrain::eval {

/// Protocol constants; the defaults are insightface's and every published number uses them.
struct VerificationOptions {
  int64_t folds = 10;            ///< contiguous folds (>= 2, <= pairs)
  double far_target = 1e-3;      ///< the FAR at which VAL is reported
  int64_t accuracy_steps = 400;  ///< thresholds k * accuracy_step, k < accuracy_steps
  double accuracy_step = 0.01;
  int64_t val_steps = 4000;  ///< thresholds k * val_step, k < val_steps
  double val_step = 0.001;
};

/// Everything insightface's `test()` and `evaluate()` compute, plus the per-fold details.
struct VerificationResult {
  int64_t pairs = 0, genuine = 0, impostor = 0;
  double xnorm = 0;                      ///< mean L2 norm of the raw embedding rows
  double accuracy = 0;                   ///< mean of the fold accuracies ("Accuracy-Flip" in insightface logs)
  double accuracy_std = 0;               ///< their population standard deviation
  double val = 0, val_std = 0, far = 0;  ///< VAL (TAR) and FAR at the far_target threshold
  std::vector<double> fold_accuracy;     ///< [folds]
  std::vector<double> thresholds;        ///< [folds] the best accuracy threshold chosen per fold
  std::vector<double> fold_val, fold_far, val_thresholds;  ///< [folds]
  /// The ROC curve insightface returns (tpr, fpr at t_k = k * 0.01, averaged over the test folds).
  std::vector<double> roc_tpr, roc_fpr;
};

/// The protocol on raw embeddings and their mirrored-image embeddings, `embeddings` and
/// `flipped` [2N, D] (any floating dtype; converted to float64): XNorm over both, then
/// normalize(E + E_flip). `flipped` may be undefined: then XNorm and the normalisation use
/// `embeddings` alone (already flip-fused, as `facetrain eval --embeddings` takes them).
/// Throws facetrain::ArgumentError for shapes that disagree (rows != 2 * issame.size(), D = 0),
/// non-finite values, fewer pairs than folds, and folds that lack genuine or impostor pairs in
/// their training part (VAL/FAR would divide by zero; insightface crashes there).
VerificationResult verify(const torch::Tensor& embeddings, const torch::Tensor& flipped,
                          const std::vector<bool>& issame, const VerificationOptions& options = {});

/// Steps 4-5 alone, on squared distances of already normalised pairs (for tests by hand and for
/// other pipelines). `xnorm` is copied into the result.
VerificationResult verify_distances(const std::vector<double>& distances, const std::vector<bool>& issame,
                                    double xnorm = 0, const VerificationOptions& options = {});

/// Row-wise L2 normalisation as sklearn.preprocessing.normalize: x / sqrt(sum x^2), a zero row
/// stays zero. `rows` [M, D] float64, contiguous.
torch::Tensor normalize_rows(const torch::Tensor& rows);

/// dist_i = sum_d (emb_{2i,d} - emb_{2i+1,d})^2 in numpy's summation order. `emb` [2N, D] float64.
std::vector<double> pair_distances(const torch::Tensor& emb);

/// numpy's sum of `values` (pairwise; what np.sum / np.mean compute for a contiguous float64
/// array): exposed for tests.
double numpy_sum(const double* values, size_t count);

/// The VAL threshold for one fold: SciPy <= 1.9.2 `interp1d(far, thresholds, kind='slinear')`
/// at `target`, for non-decreasing `far` with max(far) >= target (else 0, as insightface).
double interpolate_val_threshold(const std::vector<double>& far, const std::vector<double>& thresholds, double target);

/// One-line summary: "pairs 6000 | accuracy 0.99817 +- 0.00229 | VAL 0.99567 +- 0.00340 @ FAR
/// 0.00100 | XNorm 21.51" (the figures insightface logs).
std::string format_result(const std::string& name, const VerificationResult& result);

}  // namespace facetrain::eval
