// IJB-B/C 1:1 (eval/ijb.h): the meta-file reader and each of its errors, template pooling and pair
// scores against hand computation and against tests/python/ijb_reference.py (a numpy
// transcription of insightface's eval_ijbc.py), and the synthetic fixture writer round trip
// (alignment of the loose crops gives back the rendered faces).
#include "facetrain/eval/ijb.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "data_testing.h"
#include "facetrain/core/error.h"
#include "facetrain/data/synthetic.h"

namespace {

namespace fs = std::filesystem;
namespace fe = facetrain::eval;
using facetrain::testing::error_message;
using facetrain::testing::run_command;
using facetrain::testing::slurp;
using facetrain::testing::spit;

// A tiny hand-made protocol (no images), in the ijbc_ files:
//   image  template media score  feature
//   a.jpg   7       2     0.5    ( 2, 0,  0)
//   b.jpg   3       1     1      ( 0, 3,  0)
//   c.jpg   7       1     1      ( 0, 0,  4)
//   d.jpg   7       2     1      ( 1, 1,  0)
//   e.jpg  12       5     0.8    ( 0, 0, -5)
//   f.jpg   3       1     0.5    ( 0, 2,  2)
//   g.jpg  20       9     1      ( 0, 0,  0)
const char* kTidMid = "a.jpg 7 2\nb.jpg 3 1\nc.jpg 7 1\nd.jpg 7 2\ne.jpg 12 5\nf.jpg 3 1\ng.jpg 20 9\n";
std::string lmk_line(const std::string& name, const std::string& score) {
  return name + " 10 20 30 20 20 30 12 40 28 40 " + score + "\n";
}
std::string kLandmarks() {
  return lmk_line("a.jpg", "0.5") + lmk_line("b.jpg", "1") + lmk_line("c.jpg", "1") + lmk_line("d.jpg", "1.0") +
         lmk_line("e.jpg", "0.8") + lmk_line("f.jpg", "0.5") + lmk_line("g.jpg", "1");
}
const char* kPairs = "7 3 1\n3 12 0\n7 12 0\n7 7 1\n20 3 0\n";

at::Tensor hand_features() {
  return at::tensor({2., 0., 0., 0., 3., 0., 0., 0., 4., 1., 1., 0., 0., 0., -5., 0., 2., 2., 0., 0., 0.}, at::kDouble)
      .reshape({7, 3});
}

class Ijb : public facetrain::testing::TempDirTest {
 protected:
  std::string root() const { return dir_.string(); }
  std::string meta(const std::string& file, const std::string& t = "ijbc") const {
    return (dir_ / "meta" / (t + "_" + file)).string();
  }
  void write_meta(const std::string& tid, const std::string& lmk, const std::string& pairs,
                  const std::string& t = "ijbc") {
    spit(meta("face_tid_mid.txt", t), tid);
    spit(meta("name_5pts_score.txt", t), lmk);
    spit(meta("template_pair_label.txt", t), pairs);
  }
  // The DataError message of read_ijb on the given files.
  std::string read_error(const std::string& tid, const std::string& lmk, const std::string& pairs) {
    write_meta(tid, lmk, pairs);
    return error_message<facetrain::DataError>([&] { fe::read_ijb(root(), "IJBC"); });
  }
};

}  // namespace

TEST_F(Ijb, ReadsTheThreeMetaFiles) {
  write_meta(kTidMid, "\n" + kLandmarks() + "\n\n", kPairs);  // blank lines are skipped
  const auto set = fe::read_ijb(root(), "IJBC");
  EXPECT_EQ(set.target, "IJBC");
  ASSERT_EQ(set.size(), 7u);
  EXPECT_EQ(set.images[3], "d.jpg");
  EXPECT_EQ(set.templates, (std::vector<int64_t>{7, 3, 7, 7, 12, 3, 20}));
  EXPECT_EQ(set.medias, (std::vector<int64_t>{2, 1, 1, 2, 5, 1, 9}));
  EXPECT_EQ(set.detector_scores, (std::vector<double>{0.5, 1, 1, 1, 0.8, 0.5, 1}));
  EXPECT_EQ(set.landmarks[0][0].x, 10);
  EXPECT_EQ(set.landmarks[0][4].y, 40);
  EXPECT_EQ(set.landmarks[0][2].x, 20);
  ASSERT_EQ(set.pairs.size(), 5u);
  EXPECT_EQ(set.pairs[0].template1, 7);
  EXPECT_EQ(set.pairs[0].template2, 3);
  EXPECT_EQ(set.pairs[0].label, 1);
  EXPECT_EQ(set.pairs[1].label, 0);
  EXPECT_EQ(set.image_path(1), (dir_ / "loose_crop" / "b.jpg").string());
  EXPECT_EQ(set.landmark_lines, (std::vector<int64_t>{2, 3, 4, 5, 6, 7, 8}));

  // IJB-B: the same layout with the ijbb_ prefix.
  write_meta(kTidMid, kLandmarks(), kPairs, "ijbb");
  EXPECT_EQ(fe::read_ijb(root(), "IJBB").size(), 7u);
  EXPECT_EQ(error_message<facetrain::ArgumentError>([&] { fe::read_ijb(root(), "IJBA"); }),
            "IJB target 'IJBA' is unknown; expected IJBB or IJBC");
}

TEST_F(Ijb, ReportsEachMalformedFileWithItsLine) {
  const std::string tid = meta("face_tid_mid.txt"), lmk = meta("name_5pts_score.txt"),
                    pairs = meta("template_pair_label.txt");
  // A missing file.
  EXPECT_EQ(error_message<facetrain::DataError>([&] { fe::read_ijb(root(), "IJBC"); }),
            tid + ": cannot open (No such file or directory)");
  // Column counts.
  EXPECT_EQ(read_error("a.jpg 7 2\nb.jpg 3\n", kLandmarks(), kPairs),
            tid + ": line 2: expected 3 columns (image template media), got 2");
  EXPECT_EQ(read_error(kTidMid, "a.jpg 1 2 3 4 5 6 7 8 9 10\n", kPairs),
            lmk + ": line 1: expected 12 columns (image x1 y1 ... x5 y5 score), got 11");
  EXPECT_EQ(read_error(kTidMid, kLandmarks(), "7 3 1\n\n7 3\n"),
            pairs + ": line 3: expected 3 columns (template1 template2 label), got 2");
  // Non-numeric fields.
  EXPECT_EQ(read_error("a.jpg 7 2\nb.jpg x3 1\n", kLandmarks(), kPairs),
            tid + ": line 2: template id 'x3' (column 2) is not an integer");
  EXPECT_EQ(read_error("a.jpg 7 2.5\n", kLandmarks(), kPairs),
            tid + ": line 1: media id '2.5' (column 3) is not an integer");
  EXPECT_EQ(read_error(kTidMid, "a.jpg 10 20 30 abc 20 30 12 40 28 40 0.5\n", kPairs),
            lmk + ": line 1: landmark y 'abc' (column 5) is not a finite number");
  EXPECT_EQ(read_error(kTidMid, "a.jpg 10 20 30 20 20 30 12 40 28 40 nan\n", kPairs),
            lmk + ": line 1: detector score 'nan' (column 12) is not a finite number");
  EXPECT_EQ(read_error(kTidMid, kLandmarks(), "7 3 yes\n"),
            pairs + ": line 1: label 'yes' (column 3) is not an integer");
  EXPECT_EQ(read_error(kTidMid, kLandmarks(), "7 3 1\n7 3 2\n"), pairs + ": line 2: label 2 must be 0 or 1");
  // The two image files disagree.
  EXPECT_EQ(read_error(kTidMid, lmk_line("a.jpg", "1") + lmk_line("c.jpg", "1"), kPairs),
            lmk + ": line 2: image 'c.jpg', but line 2 of " + tid +
                " names 'b.jpg'; the two files must list the same images in the same order");
  EXPECT_EQ(read_error("a.jpg 7 2\n", lmk_line("a.jpg", "1") + lmk_line("b.jpg", "1"), kPairs),
            lmk + ": line 2: image 'b.jpg' has no line in " + tid +
                " (which lists 1 images); the two files must list the same images in the same order");
  EXPECT_EQ(read_error("a.jpg 7 2\n\nb.jpg 3 1\n", lmk_line("a.jpg", "1"), kPairs),
            tid + ": line 3: image 'b.jpg' has no line in " + lmk +
                " (which lists 1 images); the two files must list the same images in the same order");
  // Pairs.
  EXPECT_EQ(read_error(kTidMid, kLandmarks(), "7 3 1\n7 99 0\n"),
            pairs + ": line 2: template 99 has no image in " + tid);
  EXPECT_EQ(read_error(kTidMid, kLandmarks(), "\n"), pairs + ": lists no template pairs");
  EXPECT_EQ(read_error("", "", kPairs), tid + ": lists no images");
}

TEST_F(Ijb, TemplateFeaturesAndScoresMatchHandComputation) {
  write_meta(kTidMid, kLandmarks(), kPairs);
  const auto set = fe::read_ijb(root(), "IJBC");
  // With detector scores (rows times score first):
  //   template 3:  media 1 = mean((0,3,0), (0,1,1)) = (0, 2, 0.5)             |.|^2 = 4.25
  //   template 7:  media 1 = (0,0,4); media 2 = mean((1,0,0), (1,1,0)) = (1, .5, 0)
  //                sum = (1, 0.5, 4)                                             |.|^2 = 17.25
  //   template 12: (0, 0, -4) -> (0, 0, -1);  template 20: zero, stays zero.
  const auto t = fe::ijb_template_features(set, hand_features());
  EXPECT_EQ(t.ids, (std::vector<int64_t>{3, 7, 12, 20}));
  const double n3 = std::sqrt(4.25), n7 = std::sqrt(17.25);
  const auto f = t.features;
  ASSERT_EQ(f.sizes(), (c10::IntArrayRef{4, 3}));
  EXPECT_NEAR(f[0][1].item<double>(), 2 / n3, 1e-15);
  EXPECT_NEAR(f[0][2].item<double>(), 0.5 / n3, 1e-15);
  EXPECT_NEAR(f[1][0].item<double>(), 1 / n7, 1e-15);
  EXPECT_NEAR(f[1][1].item<double>(), 0.5 / n7, 1e-15);
  EXPECT_NEAR(f[1][2].item<double>(), 4 / n7, 1e-15);
  EXPECT_EQ(f[2][2].item<double>(), -1);
  EXPECT_EQ(f[3].abs().sum().item<double>(), 0);

  const auto s = fe::ijb_template_scores(set, hand_features());
  ASSERT_EQ(s.size(), 5u);
  EXPECT_NEAR(s[0], (2 * 0.5 + 0.5 * 4) / (n3 * n7), 1e-15);  // 7 vs 3
  EXPECT_NEAR(s[1], -0.5 / n3, 1e-15);                        // 3 vs 12
  EXPECT_NEAR(s[2], -4 / n7, 1e-15);                          // 7 vs 12
  EXPECT_NEAR(s[3], 1, 1e-15);                                // 7 vs 7
  EXPECT_EQ(s[4], 0);                                         // the zero template

  // Without detector scores: template 3 = mean((0,3,0), (0,2,2)) = (0, 2.5, 1); template 7 =
  // (0,0,4) + mean((2,0,0), (1,1,0)) = (1.5, 0.5, 4).
  const auto u = fe::ijb_template_scores(set, hand_features(), {/*use_detector_score=*/false});
  EXPECT_NEAR(u[0], (2.5 * 0.5 + 1 * 4) / (std::sqrt(7.25) * std::sqrt(18.5)), 1e-15);
  EXPECT_NEAR(u[1], -1 / std::sqrt(7.25), 1e-15);

  // A float32 tensor is accepted (computed in float64).
  const auto s32 = fe::ijb_template_scores(set, hand_features().to(at::kFloat));
  EXPECT_EQ(s32, s);

  // evaluate_ijb: labels 1 0 0 1 0 and scores 0.59 -0.24 -0.96 1 0 separate perfectly.
  const auto r = fe::evaluate_ijb(set, hand_features());
  EXPECT_EQ(r.pairs, 5);
  EXPECT_EQ(r.genuine_pairs, 2);
  EXPECT_EQ(r.scores, s);
  ASSERT_EQ(r.tar_at_far.size(), 6u);
  EXPECT_EQ(r.tar_at_far[0].first, 1e-6);
  for (const auto& [far, tar] : r.tar_at_far) EXPECT_EQ(tar, 1.0) << far;
}

TEST_F(Ijb, RefusesFeaturesOfTheWrongShape) {
  write_meta(kTidMid, kLandmarks(), kPairs);
  const auto set = fe::read_ijb(root(), "IJBC");
  using facetrain::ArgumentError;
  EXPECT_EQ(error_message<ArgumentError>([&] {
              fe::ijb_template_scores(set, at::zeros({6, 3}, at::kDouble));
            }),
            "IJB features: expected shape [7, D] (one row per image of the set, D >= 1), got 2-d tensor [6, 3]");
  EXPECT_EQ(error_message<ArgumentError>([&] { fe::ijb_template_scores(set, at::zeros({7}, at::kDouble)); }),
            "IJB features: expected shape [7, D] (one row per image of the set, D >= 1), got 1-d tensor [7]");
  EXPECT_EQ(error_message<ArgumentError>([&] {
              fe::ijb_template_scores(set, at::zeros({7, 3}, at::kLong));
            }),
            "IJB features: expected a floating dtype, got Long");
}

TEST_F(Ijb, MatchesTheInsightfaceTranscriptionOnRandomFeatures) {
  // A random protocol: 300 images in 60 templates (ids scattered), 1-4 media per template, 400
  // pairs; D = 512 so numpy's pairwise summation takes its recursive branch.
  std::mt19937_64 rng(17);
  const int n = 300, d = 512;
  std::ostringstream tid, lmk, pairs, feats;
  std::vector<int64_t> template_ids;
  for (int t = 0; t < 60; ++t) template_ids.push_back(1000 - 7 * t + static_cast<int64_t>(rng() % 5));
  for (int i = 0; i < n; ++i) {
    const int64_t t = i < 60 ? template_ids[i] : template_ids[rng() % 60];  // every template used
    const int64_t m = t * 10 + static_cast<int64_t>(rng() % 4);
    tid << i << ".jpg " << t << " " << m << "\n";
    char score[32];
    std::snprintf(score, sizeof score, "%.6f", 0.5 + 0.5 * static_cast<double>(rng() % 1000000) / 1e6);
    lmk << lmk_line(std::to_string(i) + ".jpg", score);
  }
  std::normal_distribution<double> normal;  // values only; the test does not depend on them being portable
  std::vector<double> values(static_cast<size_t>(n) * d);
  char buf[40];
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) {
      values[static_cast<size_t>(i) * d + j] = normal(rng) + (j == i % 7 ? 3 : 0);
      std::snprintf(buf, sizeof buf, "%s%.17g", j ? " " : "", values[static_cast<size_t>(i) * d + j]);
      feats << buf;
    }
    feats << "\n";
  }
  // No template paired with itself: those score 1 up to rounding, an exact tie that each
  // implementation's last bits would break differently, moving the top of the ROC.
  for (int p = 0; p < 400; ++p) {
    const size_t a = rng() % 60, b = (a + 1 + rng() % 59) % 60;
    pairs << template_ids[a] << " " << template_ids[b] << " " << (p % 3 == 0) << "\n";
  }
  write_meta(tid.str(), lmk.str(), pairs.str());
  spit((dir_ / "features.txt").string(), feats.str());
  const auto set = fe::read_ijb(root(), "IJBC");
  const at::Tensor features = at::from_blob(values.data(), {n, d}, at::kDouble).clone();

  const std::string script = std::string(FACETRAIN_SOURCE_DIR) + "/tests/python/ijb_reference.py";
  for (bool detector : {true, false}) {
    SCOPED_TRACE(detector ? "with detector scores" : "without detector scores");
    const std::string out = (dir_ / "out.txt").string();
    auto r = run_command(std::string(FACETRAIN_TEST_PYTHON) + " " + script + " " + root() + " IJBC " +
                         (dir_ / "features.txt").string() + " " + out + (detector ? "" : " --no-detector-score"));
    ASSERT_EQ(r.status, 0) << "python3 with numpy is needed (scripts/setup.sh --tests):\n" << r.output;
    std::istringstream in(slurp(out));
    std::vector<double> ref_scores, seq_scores;
    std::vector<std::pair<double, double>> ref_tars;
    for (std::string kind; in >> kind;) {
      std::string a, b;
      if (kind == "score") {
        in >> a >> b;
        ref_scores.push_back(std::strtod(a.c_str(), nullptr));
        seq_scores.push_back(std::strtod(b.c_str(), nullptr));
      } else {
        in >> a >> b;
        ref_tars.emplace_back(std::strtod(a.c_str(), nullptr), std::strtod(b.c_str(), nullptr));
      }
    }
    const auto result = fe::evaluate_ijb(set, features, {detector});
    ASSERT_EQ(ref_scores.size(), result.scores.size());
    ASSERT_EQ(seq_scores.size(), result.scores.size());
    int exact = 0;
    for (size_t p = 0; p < ref_scores.size(); ++p) {
      EXPECT_NEAR(result.scores[p], ref_scores[p], 1e-12) << "pair " << p;
      exact += result.scores[p] == ref_scores[p];
      // With the template norm summed sequentially in numpy too, every other step (the row
      // products, np.mean, np.sum over media, numpy's pairwise summation of the dot product) is
      // done in the same order, so the scores are bit-identical.
      EXPECT_EQ(result.scores[p], seq_scores[p]) << "pair " << p;
    }
    // sklearn's np.einsum norm sums in a SIMD order of its own: not bit-identical, not asserted.
    std::printf("  %d of %zu scores bit-identical to sklearn's einsum norm\n", exact, ref_scores.size());
    ASSERT_EQ(ref_tars.size(), result.tar_at_far.size());
    for (size_t k = 0; k < ref_tars.size(); ++k) {
      EXPECT_EQ(result.tar_at_far[k].first, ref_tars[k].first);
      EXPECT_EQ(result.tar_at_far[k].second, ref_tars[k].second) << "FAR " << ref_tars[k].first;
    }
  }
}

TEST_F(Ijb, FixtureRoundTripAlignsBackToTheRenderedFaces) {
  fe::IjbFixtureOptions o;
  o.identities = 5;
  o.templates_per_identity = 3;
  o.seed = 4;
  const auto fx = fe::write_ijb_fixture(root(), "IJBB", o);
  const auto set = fe::read_ijb(root(), "IJBB");
  ASSERT_EQ(set.size(), fx.identity.size());
  ASSERT_EQ(set.size(), fx.variant.size());
  EXPECT_GE(set.size(), 15u);

  // Templates: 15, each of one identity; ids not in file order; 1-2 media per template.
  std::map<int64_t, std::set<uint64_t>> identities_of;
  std::map<int64_t, std::set<int64_t>> media_of;
  for (size_t i = 0; i < set.size(); ++i) {
    identities_of[set.templates[i]].insert(fx.identity[i]);
    media_of[set.templates[i]].insert(set.medias[i]);
  }
  EXPECT_EQ(identities_of.size(), 15u);
  for (const auto& [t, ids] : identities_of) EXPECT_EQ(ids.size(), 1u) << "template " << t;
  for (const auto& [t, media] : media_of) EXPECT_LE(media.size(), 2u) << "template " << t;
  EXPECT_FALSE(std::is_sorted(set.templates.begin(), set.templates.end()));
  // Pairs: 3 genuine per identity (3 templates), one impostor per identity pair; labels true.
  int genuine = 0;
  for (const auto& p : set.pairs) {
    const bool same = *identities_of[p.template1].begin() == *identities_of[p.template2].begin();
    EXPECT_EQ(p.label, same ? 1 : 0);
    genuine += p.label;
  }
  EXPECT_EQ(genuine, 15);
  EXPECT_EQ(set.pairs.size(), 15u + 10u);
  for (double s : set.detector_scores) {
    EXPECT_GE(s, 0.6);
    EXPECT_LT(s, 1.0);
  }

  // Alignment with the written landmarks undoes the placement: the aligned face is the rendered
  // one up to two bilinear resamplings and JPEG at quality 95. Resampling smooths the renderer's
  // pixel noise (a raw mean difference of ~5 grey levels), so both are smoothed before comparing;
  // the same comparison against the rendered face moved by one pixel shows what a misplacement
  // would cost.
  const facetrain::data::SyntheticFaces faces(o.seed);
  const cv::Rect inner(8, 8, 96, 96);
  auto smoothed_difference = [&](const cv::Mat& a, const cv::Mat& b) {
    cv::Mat sa, sb, diff;
    cv::GaussianBlur(a, sa, {7, 7}, 1.5);
    cv::GaussianBlur(b, sb, {7, 7}, 1.5);
    cv::absdiff(sa(inner), sb(inner), diff);
    const cv::Scalar m = cv::mean(diff);
    return (m[0] + m[1] + m[2]) / 3;
  };
  double worst = 0, worst_ratio = 1e9;
  for (size_t i = 0; i < set.size(); ++i) {
    const cv::Mat aligned = fe::ijb_aligned_face(set, i);
    ASSERT_EQ(aligned.size(), cv::Size(112, 112));
    ASSERT_EQ(aligned.type(), CV_8UC3);
    const cv::Mat rendered = faces.render(fx.identity[i], fx.variant[i]);
    const double d = smoothed_difference(aligned, rendered);
    cv::Mat shifted;
    const cv::Mat one_pixel = (cv::Mat_<double>(2, 3) << 1, 0, 1, 0, 1, 0);
    cv::warpAffine(rendered, shifted, one_pixel, rendered.size());
    worst = std::max(worst, d);
    worst_ratio = std::min(worst_ratio, smoothed_difference(aligned, shifted) / d);
  }
  std::printf("  smoothed mean |aligned - rendered|: worst %.2f grey levels; moved by 1 px: >= %.1f times more\n",
              worst, worst_ratio);
  EXPECT_LT(worst, 1.5);
  EXPECT_GT(worst_ratio, 2.0);

  // Oracle features (one-hot identity): every genuine pair scores 1, every impostor 0.
  at::Tensor oracle = at::zeros({static_cast<int64_t>(set.size()), 8}, at::kDouble);
  for (size_t i = 0; i < set.size(); ++i)
    oracle[static_cast<int64_t>(i)][static_cast<int64_t>(fx.identity[i] % 8)] = 1.0;
  const auto r = fe::evaluate_ijb(set, oracle);
  for (const auto& [far, tar] : r.tar_at_far) EXPECT_EQ(tar, 1.0) << far;

  // Same seed, same files.
  const std::string before = slurp((dir_ / "meta" / "ijbb_name_5pts_score.txt").string());
  fe::write_ijb_fixture(root(), "IJBB", o);
  EXPECT_EQ(slurp((dir_ / "meta" / "ijbb_name_5pts_score.txt").string()), before);
}

TEST_F(Ijb, ReportsAMissingImage) {
  write_meta(kTidMid, kLandmarks(), kPairs);
  const auto set = fe::read_ijb(root(), "IJBC");
  EXPECT_EQ(error_message<facetrain::DataError>([&] { fe::ijb_aligned_face(set, 1); }),
            set.image_path(1) + ": no such image (listed on line 2 of " + meta("name_5pts_score.txt") + ")");
  spit(set.image_path(3), "not a JPEG");
  EXPECT_EQ(error_message<facetrain::DataError>([&] { fe::ijb_aligned_face(set, 3); }),
            set.image_path(3) + ": cannot decode the image (listed on line 4 of " + meta("name_5pts_score.txt") + ")");
  EXPECT_EQ(error_message<facetrain::ArgumentError>([&] { fe::ijb_aligned_face(set, 7); }),
            "IJB image 7 is out of range (the set has 7 images)");
}

TEST_F(Ijb, FixtureWriterRefusesBadOptions) {
  fe::IjbFixtureOptions o;
  o.identities = 1;
  EXPECT_NE(error_message<facetrain::ArgumentError>([&] {
              fe::write_ijb_fixture(root(), "IJBC", o);
            }).find("needs identities >= 2 (got 1)"),
            std::string::npos);
}
