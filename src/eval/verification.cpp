#include "facetrain/eval/verification.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "facetrain/core/error.h"

// Compiled with -ffp-contract=off (src/CMakeLists.txt): a fused multiply-add rounds once where
// numpy rounds twice, and the interpolated VAL threshold would then differ in the last bit.

namespace facetrain::eval {

namespace {

constexpr size_t kPairwiseBlock = 128;  // numpy's PW_BLOCKSIZE

// numpy's @TYPE@_pairwise_sum (numpy/core/src/umath/loops_utils.h.src), for a strided array.
double pairwise_sum(const double* a, size_t n, size_t stride) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i * stride];
    return res;
  }
  if (n <= kPairwiseBlock) {
    double r[8];
    for (size_t j = 0; j < 8; ++j) r[j] = a[j * stride];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (size_t j = 0; j < 8; ++j) r[j] += a[(i + j) * stride];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i * stride];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2, stride) + pairwise_sum(a + n2 * stride, n - n2, stride);
}

// np.add.reduce starts from the identity 0 and adds the pairwise sum of the whole inner loop.
double reduce_sum(const double* a, size_t n) { return 0. + pairwise_sum(a, n, 1); }

double mean_of(const std::vector<double>& v) { return reduce_sum(v.data(), v.size()) / static_cast<double>(v.size()); }

// np.std (ddof 0): mean as np.mean, squared deviations, their sum / n, sqrt.
double std_of(const std::vector<double>& v) {
  const double mean = mean_of(v);
  std::vector<double> sq(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double d = v[i] - mean;
    sq[i] = d * d;
  }
  return std::sqrt(reduce_sum(sq.data(), sq.size()) / static_cast<double>(v.size()));
}

struct Counts {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
};

// The pairs of [begin, end), split by label and sorted: the number with dist < t is a
// lower_bound, so a threshold costs two binary searches instead of a pass over the pairs. The
// counts, and so every figure derived from them, are those of the plain `dist < t` loop.
class SortedPairs {
 public:
  SortedPairs(const std::vector<double>& dist, const std::vector<bool>& same, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) (same[i] ? same_ : diff_).push_back(dist[i]);
    std::sort(same_.begin(), same_.end());
    std::sort(diff_.begin(), diff_.end());
  }
  // Predictions `dist < threshold`.
  Counts at(double threshold) const {
    Counts c;
    c.tp = below(same_, threshold);
    c.fn = static_cast<int64_t>(same_.size()) - c.tp;
    c.fp = below(diff_, threshold);
    c.tn = static_cast<int64_t>(diff_.size()) - c.fp;
    return c;
  }

 private:
  static int64_t below(const std::vector<double>& sorted, double t) {
    return std::lower_bound(sorted.begin(), sorted.end(), t) - sorted.begin();
  }
  std::vector<double> same_, diff_;
};

// The counts of the pairs in `all` but not in `part`.
Counts minus(const Counts& all, const Counts& part) {
  return {all.tp - part.tp, all.fp - part.fp, all.tn - part.tn, all.fn - part.fn};
}

double accuracy_of(const Counts& c) {
  return static_cast<double>(c.tp + c.tn) / static_cast<double>(c.tp + c.tn + c.fp + c.fn);
}

void check_folds(size_t pairs, const VerificationOptions& options) {
  if (options.folds < 2)
    throw ArgumentError("verification: folds must be at least 2, got " + std::to_string(options.folds));
  if (pairs < static_cast<size_t>(options.folds)) {
    throw ArgumentError("verification: " + std::to_string(pairs) + " pair(s) cannot be split into " +
                        std::to_string(options.folds) + " folds");
  }
  if (options.accuracy_steps < 1 || options.val_steps < 2 || !(options.accuracy_step > 0) || !(options.val_step > 0)) {
    throw ArgumentError("verification: threshold grids need at least 1 (accuracy) and 2 (VAL) positive steps");
  }
}

}  // namespace

double numpy_sum(const double* values, size_t count) { return reduce_sum(values, count); }

torch::Tensor normalize_rows(const torch::Tensor& rows) {
  if (rows.dim() != 2 || rows.scalar_type() != torch::kDouble) {
    throw ArgumentError("normalize_rows: expected a [M, D] float64 tensor, got " + std::string(rows.toString()) +
                        " of " + std::to_string(rows.dim()) + " dimension(s)");
  }
  torch::Tensor in = rows.contiguous();
  torch::Tensor out = torch::empty_like(in);
  const int64_t m = in.size(0), d = in.size(1);
  const double* src = in.data_ptr<double>();
  double* dst = out.data_ptr<double>();
  std::vector<double> sq(static_cast<size_t>(d));
  for (int64_t r = 0; r < m; ++r) {
    const double* x = src + r * d;
    for (int64_t j = 0; j < d; ++j) sq[static_cast<size_t>(j)] = x[j] * x[j];
    double norm = std::sqrt(reduce_sum(sq.data(), sq.size()));
    if (norm == 0.) norm = 1.;  // sklearn's _handle_zeros_in_scale: a zero row stays zero
    for (int64_t j = 0; j < d; ++j) dst[r * d + j] = x[j] / norm;
  }
  return out;
}

std::vector<double> pair_distances(const torch::Tensor& emb) {
  if (emb.dim() != 2 || emb.scalar_type() != torch::kDouble || emb.size(0) % 2 != 0) {
    throw ArgumentError("pair_distances: expected a [2N, D] float64 tensor");
  }
  torch::Tensor in = emb.contiguous();
  const int64_t pairs = in.size(0) / 2, d = in.size(1);
  const double* e = in.data_ptr<double>();
  std::vector<double> dist(static_cast<size_t>(pairs));
  std::vector<double> sq(static_cast<size_t>(d));
  for (int64_t i = 0; i < pairs; ++i) {
    const double* a = e + (2 * i) * d;
    const double* b = a + d;
    for (int64_t j = 0; j < d; ++j) {
      const double diff = a[j] - b[j];
      sq[static_cast<size_t>(j)] = diff * diff;
    }
    dist[static_cast<size_t>(i)] = reduce_sum(sq.data(), sq.size());
  }
  return dist;
}

double interpolate_val_threshold(const std::vector<double>& far, const std::vector<double>& thresholds, double target) {
  const size_t m = far.size();
  if (m < 2 || thresholds.size() != m) throw ArgumentError("interpolate_val_threshold: need >= 2 matching points");
  double max_far = far[0];
  for (double f : far) max_far = f > max_far ? f : max_far;
  if (!(max_far >= target)) return 0.0;
  // The linear B-spline of make_interp_spline(far, thresholds, k=1): knots [x0, x0, x1, ..., xm-1,
  // xm-1], coefficients the thresholds. Its find_interval gives interval L = #(far <= target),
  // clamped to m - 1; de Boor's recursion then evaluates on knots (x[L-1], x[L]).
  size_t c = 0;
  while (c < m && far[c] <= target) ++c;
  size_t interval = c < m - 1 ? c : m - 1;
  if (interval < 1) interval = 1;
  const double xa = far[interval - 1], xb = far[interval];
  double h0 = 0.0, h1 = 0.0;
  if (xb != xa) {  // equal knots: de Boor leaves both basis values 0
    const double w = 1.0 / (xb - xa);
    h0 = 0.0 + w * (xb - target);
    h1 = w * (target - xa);
  }
  double out = 0.;
  out = out + thresholds[interval - 1] * h0;
  out = out + thresholds[interval] * h1;
  return out;
}

VerificationResult verify_distances(const std::vector<double>& dist, const std::vector<bool>& issame, double xnorm,
                                    const VerificationOptions& options) {
  const size_t n = dist.size();
  if (issame.size() != n) {
    throw ArgumentError("verification: " + std::to_string(n) + " distance(s) but " + std::to_string(issame.size()) +
                        " label(s)");
  }
  check_folds(n, options);
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(dist[i]))
      throw ArgumentError("verification: distance of pair " + std::to_string(i) + " is not finite");
  }
  VerificationResult r;
  r.pairs = static_cast<int64_t>(n);
  for (bool s : issame) (s ? r.genuine : r.impostor) += 1;
  r.xnorm = xnorm;

  // np.arange(0, 4, step): start + k * delta with delta = (start + step) - start = step.
  std::vector<double> acc_t(static_cast<size_t>(options.accuracy_steps)), val_t(static_cast<size_t>(options.val_steps));
  for (size_t k = 0; k < acc_t.size(); ++k) acc_t[k] = 0.0 + static_cast<double>(k) * options.accuracy_step;
  for (size_t k = 0; k < val_t.size(); ++k) val_t[k] = 0.0 + static_cast<double>(k) * options.val_step;

  const size_t folds = static_cast<size_t>(options.folds);
  std::vector<double> tpr_sum(acc_t.size(), 0.0), fpr_sum(acc_t.size(), 0.0);
  std::vector<double> far_train(val_t.size());
  const SortedPairs all(dist, issame, 0, n);
  size_t begin = 0;
  for (size_t f = 0; f < folds; ++f) {
    const size_t size = n / folds + (f < n % folds ? 1 : 0);
    const size_t end = begin + size;
    const SortedPairs test(dist, issame, begin, end);
    const auto train_at = [&](double t) { return minus(all.at(t), test.at(t)); };
    // Accuracy: the first best threshold on the training folds, applied to this one.
    size_t best = 0;
    double best_acc = -1;
    for (size_t k = 0; k < acc_t.size(); ++k) {
      const double acc = accuracy_of(train_at(acc_t[k]));
      if (acc > best_acc) best_acc = acc, best = k;
    }
    for (size_t k = 0; k < acc_t.size(); ++k) {
      const Counts c = test.at(acc_t[k]);
      tpr_sum[k] += c.tp + c.fn == 0 ? 0.0 : static_cast<double>(c.tp) / static_cast<double>(c.tp + c.fn);
      fpr_sum[k] += c.fp + c.tn == 0 ? 0.0 : static_cast<double>(c.fp) / static_cast<double>(c.fp + c.tn);
    }
    r.thresholds.push_back(acc_t[best]);
    r.fold_accuracy.push_back(accuracy_of(test.at(acc_t[best])));

    // VAL at the target FAR.
    const Counts train_all = train_at(-INFINITY);  // every pair "different"
    const int64_t train_same = train_all.fn, train_diff = train_all.tn;
    const Counts test_all = test.at(-INFINITY);
    if (train_same == 0 || train_diff == 0 || test_all.fn == 0 || test_all.tn == 0) {
      throw ArgumentError("verification: fold " + std::to_string(f) + " (pairs " + std::to_string(begin) + ".." +
                          std::to_string(end - 1) + ") or its training part has no " +
                          ((train_same == 0 || test_all.fn == 0) ? "genuine" : "impostor") +
                          " pairs, so VAL/FAR are undefined; use more pairs or interleave genuine and impostor pairs");
    }
    for (size_t k = 0; k < val_t.size(); ++k) {
      const Counts c = train_at(val_t[k]);
      far_train[k] = static_cast<double>(c.fp) / static_cast<double>(train_diff);
    }
    const double threshold = interpolate_val_threshold(far_train, val_t, options.far_target);
    const Counts c = test.at(threshold);
    r.val_thresholds.push_back(threshold);
    r.fold_val.push_back(static_cast<double>(c.tp) / static_cast<double>(test_all.fn));
    r.fold_far.push_back(static_cast<double>(c.fp) / static_cast<double>(test_all.tn));
    begin = end;
  }
  r.accuracy = mean_of(r.fold_accuracy);
  r.accuracy_std = std_of(r.fold_accuracy);
  r.val = mean_of(r.fold_val);
  r.val_std = std_of(r.fold_val);
  r.far = mean_of(r.fold_far);
  for (size_t k = 0; k < acc_t.size(); ++k) {
    r.roc_tpr.push_back(tpr_sum[k] / static_cast<double>(folds));
    r.roc_fpr.push_back(fpr_sum[k] / static_cast<double>(folds));
  }
  return r;
}

VerificationResult verify(const torch::Tensor& embeddings, const torch::Tensor& flipped,
                          const std::vector<bool>& issame, const VerificationOptions& options) {
  if (!embeddings.defined() || embeddings.dim() != 2 || !embeddings.is_floating_point()) {
    throw ArgumentError("verification: embeddings must be a [2N, D] floating-point tensor");
  }
  const int64_t rows = embeddings.size(0), d = embeddings.size(1);
  if (rows != 2 * static_cast<int64_t>(issame.size()) || d == 0) {
    throw ArgumentError("verification: " + std::to_string(rows) + " embedding row(s) of width " + std::to_string(d) +
                        " for " + std::to_string(issame.size()) + " pair(s); expected 2 rows per pair and width > 0");
  }
  torch::Tensor e = embeddings.to(torch::kCPU, torch::kDouble).contiguous();
  torch::Tensor ef;
  if (flipped.defined()) {
    if (!flipped.sizes().equals(embeddings.sizes())) {
      throw ArgumentError("verification: flipped embeddings are " + std::to_string(flipped.size(0)) + "x" +
                          std::to_string(flipped.dim() > 1 ? flipped.size(1) : 0) + ", expected " +
                          std::to_string(rows) + "x" + std::to_string(d));
    }
    ef = flipped.to(torch::kCPU, torch::kDouble).contiguous();
  }
  if (!torch::isfinite(e).all().item<bool>() || (ef.defined() && !torch::isfinite(ef).all().item<bool>())) {
    throw ArgumentError("verification: the embeddings contain NaN or infinite values");
  }
  // XNorm: insightface sums the row norms one by one (E's rows, then E_flip's), then divides.
  double xnorm_sum = 0;
  int64_t xnorm_count = 0;
  std::vector<double> sq(static_cast<size_t>(d));
  for (const torch::Tensor* t : {&e, &ef}) {
    if (!t->defined()) continue;
    const double* p = t->data_ptr<double>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < d; ++j) sq[static_cast<size_t>(j)] = p[r * d + j] * p[r * d + j];
      xnorm_sum += std::sqrt(reduce_sum(sq.data(), sq.size()));
      ++xnorm_count;
    }
  }
  const torch::Tensor fused = ef.defined() ? e + ef : e;
  const torch::Tensor emb = normalize_rows(fused);
  return verify_distances(pair_distances(emb), issame, xnorm_sum / static_cast<double>(xnorm_count), options);
}

std::string format_result(const std::string& name, const VerificationResult& r) {
  char line[512];
  std::snprintf(line, sizeof line, "%s: pairs %lld | accuracy %.5f +- %.5f | VAL %.5f +- %.5f @ FAR %.5f | XNorm %.4f",
                name.c_str(), static_cast<long long>(r.pairs), r.accuracy, r.accuracy_std, r.val, r.val_std, r.far,
                r.xnorm);
  return line;
}

}  // namespace facetrain::eval
