// The verification protocol (formats.md section 4): by hand on distances where every step can be
// followed, and against tests/python/verification_reference.py (insightface's verification.py
// functions, run by Debian's python3 + numpy) on random embeddings, to 1e-12.
#include "facetrain/eval/verification.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <random>

#include "data_testing.h"
#include "facetrain/core/error.h"
#include "facetrain/io/npy.h"

namespace {

namespace fs = std::filesystem;
using facetrain::eval::VerificationResult;
using facetrain::eval::verify;
using facetrain::eval::verify_distances;
using facetrain::testing::error_message;
using facetrain::testing::run_command;
using facetrain::testing::slurp;

// 20 pairs, 2 per fold; even pairs genuine at distance 0.5, odd pairs impostors at 1.5.
std::vector<double> separable(std::vector<bool>& issame) {
  std::vector<double> dist;
  issame.clear();
  for (int i = 0; i < 20; ++i) {
    issame.push_back(i % 2 == 0);
    dist.push_back(i % 2 == 0 ? 0.5 : 1.5);
  }
  return dist;
}

TEST(VerificationByHand, SeparablePairs) {
  std::vector<bool> issame;
  const auto dist = separable(issame);
  const VerificationResult r = verify_distances(dist, issame, 7.0);
  // Accuracy: every threshold in (0.5, 1.5] separates; the first on the grid is 51 * 0.01.
  ASSERT_EQ(r.thresholds.size(), 10u);
  for (double t : r.thresholds) EXPECT_EQ(t, 51 * 0.01);
  EXPECT_EQ(r.accuracy, 1.0);
  EXPECT_EQ(r.accuracy_std, 0.0);
  // VAL: the training FAR is 0 up to t = 1.5 (k = 1500) and 1 from k = 1501, so the spline gives
  // t_1500 * (1 - 1e-3) + t_1501 * 1e-3 = 1.500001 > 1.5: the impostors are accepted too.
  for (double t : r.val_thresholds)
    EXPECT_DOUBLE_EQ(t, (0 + 1500 * 0.001 * (0 + 1.0 * (1.0 - 1e-3))) + 1501 * 0.001 * (1.0 * 1e-3));
  EXPECT_EQ(r.val, 1.0);
  EXPECT_EQ(r.far, 1.0);
  EXPECT_EQ(r.val_std, 0.0);
  EXPECT_EQ(r.xnorm, 7.0);
  EXPECT_EQ(r.pairs, 20);
  EXPECT_EQ(r.genuine, 10);
  EXPECT_EQ(r.impostor, 10);
}

TEST(VerificationByHand, OneImpostorTooClose) {
  std::vector<bool> issame;
  auto dist = separable(issame);
  dist[1] = 0.3;  // an impostor in fold 0, closer than every genuine pair
  const VerificationResult r = verify_distances(dist, issame);
  // Fold 0 trains without pair 1: threshold 0.51, then gets pair 1 wrong (accuracy 1/2). The other
  // folds train with it: 17/18 for t in (0.5, 1.5], 9/18 below; threshold 0.51, accuracy 1.
  for (double t : r.thresholds) EXPECT_EQ(t, 51 * 0.01);
  EXPECT_EQ(r.fold_accuracy[0], 0.5);
  for (int f = 1; f < 10; ++f) EXPECT_EQ(r.fold_accuracy[f], 1.0);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.95);
  EXPECT_DOUBLE_EQ(r.accuracy_std, 0.15);  // sqrt((0.45^2 + 9 * 0.05^2) / 10)
  // VAL, fold 0: as in SeparablePairs (threshold 1.500001): pair 0 and pair 1 both accepted.
  EXPECT_EQ(r.fold_val[0], 1.0);
  EXPECT_EQ(r.fold_far[0], 1.0);
  // Other folds: training FAR is 0 up to k = 300, 1/9 from k = 301 to 1500: the threshold is
  // 0.3 + 0.001 * 1e-3 / (1/9) = 0.300009, below the genuine 0.5: nothing accepted.
  const double w = 1.0 / (1.0 / 9);
  const double expected = (0 + 300 * 0.001 * (0 + w * (1.0 / 9 - 1e-3))) + 301 * 0.001 * (w * (1e-3 - 0));
  for (int f = 1; f < 10; ++f) {
    EXPECT_EQ(r.val_thresholds[f], expected) << f;
    EXPECT_EQ(r.fold_val[f], 0.0);
    EXPECT_EQ(r.fold_far[f], 0.0);
  }
  EXPECT_DOUBLE_EQ(r.val, 0.1);
  EXPECT_DOUBLE_EQ(r.val_std, 0.3);  // sqrt((0.9^2 + 9 * 0.1^2) / 10)
  EXPECT_DOUBLE_EQ(r.far, 0.1);
}

TEST(VerificationByHand, FoldSizesAndStrictThresholds) {
  // 23 pairs: folds of 3, 3, 3, 2, ...; a distance exactly on a grid value is not below it.
  std::vector<bool> issame;
  std::vector<double> dist;
  for (int i = 0; i < 23; ++i) {
    issame.push_back(i % 2 == 0);
    dist.push_back(i % 2 == 0 ? 20 * 0.01 : 0.9);
  }
  const VerificationResult r = verify_distances(dist, issame);
  for (double t : r.thresholds) EXPECT_EQ(t, 21 * 0.01);  // 0.20 < 0.20 is false
  EXPECT_EQ(r.accuracy, 1.0);
  EXPECT_EQ(r.fold_accuracy.size(), 10u);
}

TEST(VerificationByHand, SplineEdgeCases) {
  const std::vector<double> t = {0.0, 0.001, 0.002, 0.003};
  using facetrain::eval::interpolate_val_threshold;
  EXPECT_EQ(interpolate_val_threshold({0, 0, 0, 0}, t, 1e-3), 0.0);              // FAR never reaches the target
  EXPECT_DOUBLE_EQ(interpolate_val_threshold({0, 0, 0, 1e-3}, t, 1e-3), 0.003);  // last interval, clamped
  EXPECT_EQ(interpolate_val_threshold({0, 0, 1e-3, 1e-3}, t, 1e-3), 0.0);        // equal knots: both bases 0
  EXPECT_EQ(interpolate_val_threshold({0, 0.5, 1, 1}, t, 0.5), 0.001);  // x on a knot: the interval to its right
  EXPECT_DOUBLE_EQ(interpolate_val_threshold({0, 0.002, 0.004, 1}, t, 1e-3), 0.0005);
}

TEST(VerificationErrors, NameTheProblem) {
  using facetrain::ArgumentError;
  std::vector<bool> all_same(20, true);
  EXPECT_EQ(
      error_message<ArgumentError>([&] { verify_distances(std::vector<double>(20, 0.1), all_same); }),
      "verification: fold 0 (pairs 0..1) or its training part has no impostor pairs, so VAL/FAR are undefined; use "
      "more pairs or interleave genuine and impostor pairs");
  EXPECT_EQ(error_message<ArgumentError>([&] { verify_distances(std::vector<double>(5, 0.1), std::vector<bool>(5)); }),
            "verification: 5 pair(s) cannot be split into 10 folds");
  EXPECT_EQ(error_message<ArgumentError>([&] {
              verify(torch::zeros({5, 4}), {}, std::vector<bool>(3));
            }),
            "verification: 5 embedding row(s) of width 4 for 3 pair(s); expected 2 rows per pair and width > 0");
  torch::Tensor nan = torch::ones({40, 4});
  nan[3][1] = NAN;
  EXPECT_EQ(error_message<ArgumentError>([&] { verify(nan, {}, std::vector<bool>(20)); }),
            "verification: the embeddings contain NaN or infinite values");
}

TEST(VerificationNumerics, NumpySumOrder) {
  // Values whose sum depends on the order: numpy's pairwise blocks give these exact results.
  std::vector<double> v(200);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = (i % 3 == 0 ? 1e16 : 1.0) * (i % 2 ? -1 : 1) + 0.1 * static_cast<double>(i);
  const std::string dir = fs::temp_directory_path() / ("facetrain_numpy_sum_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  facetrain::io::write_npy(dir + "/v.npy", torch::from_blob(v.data(), {200}, torch::kDouble));
  std::string code =
      "import numpy as np, sys\nv = np.load(sys.argv[1])\nfor n in [1, 7, 8, 9, 16, 17, 127, 128, 129, 200]: "
      "print(np.sum(v[:n]).hex())\n";
  facetrain::testing::spit(dir + "/sum.py", code);
  auto r = run_command(std::string(FACETRAIN_TEST_PYTHON) + " " + dir + "/sum.py " + dir + "/v.npy");
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream lines(r.output);
  for (size_t n : {1, 7, 8, 9, 16, 17, 127, 128, 129, 200}) {
    std::string hex;
    lines >> hex;
    EXPECT_EQ(facetrain::eval::numpy_sum(v.data(), n), std::strtod(hex.c_str(), nullptr)) << n;
  }
  fs::remove_all(dir);
}

// Random embeddings with identity structure; some pairs exactly equal, one zero row.
struct Case {
  torch::Tensor e, flip;
  std::vector<bool> issame;
};

Case random_case(int64_t pairs, int64_t dim, uint64_t seed, double noise) {
  torch::manual_seed(static_cast<int64_t>(seed));
  Case c;
  torch::Tensor base = torch::randn({pairs, dim}, torch::kDouble);
  c.e = torch::empty({2 * pairs, dim}, torch::kDouble);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < pairs; ++i) {
    const bool same = (rng() % 2) == 0;
    c.issame.push_back(same);
    c.e[2 * i] = base[i];
    c.e[2 * i + 1] = same ? base[i] + noise * torch::randn({dim}, torch::kDouble) : torch::randn({dim}, torch::kDouble);
  }
  c.flip = c.e + 0.3 * torch::randn({2 * pairs, dim}, torch::kDouble);
  return c;
}

void expect_matches_reference(const Case& c, bool with_flip, const std::string& name) {
  const std::string dir = fs::temp_directory_path() / ("facetrain_verif_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  facetrain::io::write_npy(dir + "/e.npy", c.e);
  if (with_flip) facetrain::io::write_npy(dir + "/f.npy", c.flip);
  std::vector<uint8_t> same(c.issame.begin(), c.issame.end());
  facetrain::io::write_npy(
      dir + "/s.npy",
      torch::from_blob(same.data(), {static_cast<int64_t>(same.size())}, torch::kByte).to(torch::kBool));
  auto run = run_command(std::string(FACETRAIN_TEST_PYTHON) + " " + FACETRAIN_SOURCE_DIR +
                         "/tests/python/verification_reference.py " + dir + "/e.npy " +
                         (with_flip ? dir + "/f.npy" : "-") + " " + dir + "/s.npy " + dir + "/out.json");
  ASSERT_EQ(run.status, 0) << "python3 with numpy is needed (scripts/setup.sh --tests):\n" << run.output;
  const auto ref = nlohmann::json::parse(slurp(dir + "/out.json"));
  const VerificationResult r = verify(c.e, with_flip ? c.flip : torch::Tensor(), c.issame);
  const auto distances =
      facetrain::eval::pair_distances(facetrain::eval::normalize_rows(with_flip ? (c.e + c.flip).contiguous() : c.e));
  for (size_t i = 0; i < distances.size(); ++i)
    EXPECT_NEAR(distances[i], ref["distances"][i].get<double>(), 1e-14) << i;
  // Counts and grid values agree exactly; the rest to 1e-12 (numpy's einsum/BLAS norms may round
  // their last bit differently from ours: see verification.h).
  EXPECT_EQ(r.accuracy, ref["accuracy"].get<double>()) << name;
  EXPECT_EQ(r.accuracy_std, ref["std"].get<double>()) << name;
  EXPECT_EQ(r.val, ref["val"].get<double>()) << name;
  EXPECT_EQ(r.val_std, ref["val_std"].get<double>()) << name;
  EXPECT_EQ(r.far, ref["far"].get<double>()) << name;
  EXPECT_NEAR(r.xnorm, ref["xnorm"].get<double>(), 1e-12) << name;
  for (size_t f = 0; f < 10; ++f) {
    EXPECT_EQ(r.fold_accuracy[f], ref["fold_accuracy"][f].get<double>()) << name << " fold " << f;
    EXPECT_EQ(r.thresholds[f], ref["thresholds"][f].get<double>()) << name << " fold " << f;
    EXPECT_EQ(r.fold_val[f], ref["fold_val"][f].get<double>()) << name << " fold " << f;
    EXPECT_EQ(r.fold_far[f], ref["fold_far"][f].get<double>()) << name << " fold " << f;
    EXPECT_EQ(r.val_thresholds[f], ref["val_thresholds"][f].get<double>()) << name << " fold " << f;
  }
  for (size_t k = 0; k < r.roc_tpr.size(); ++k) {
    EXPECT_NEAR(r.roc_tpr[k], ref["roc_tpr"][k].get<double>(), 1e-12) << k;
    EXPECT_NEAR(r.roc_fpr[k], ref["roc_fpr"][k].get<double>(), 1e-12) << k;
  }
  fs::remove_all(dir);
}

TEST(VerificationReference, MatchesInsightfaceWithFlip) {
  expect_matches_reference(random_case(600, 128, 1, 0.9), true, "flip");
}

TEST(VerificationReference, MatchesInsightfaceOnFusedEmbeddings) {
  Case c = random_case(537, 64, 2, 1.2);  // an odd count: folds of 54 and 53
  c.e[10].zero_();                        // a zero row stays zero
  c.e[11].zero_();
  expect_matches_reference(c, false, "fused");
}

TEST(VerificationReference, MatchesInsightfaceWhenNearlyPerfect) {
  // FAR reaches 1e-3 only at a few training impostors: exercises the spline away from the ends.
  expect_matches_reference(random_case(3000, 32, 3, 0.4), false, "easy");
}

}  // namespace
