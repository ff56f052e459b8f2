// ROC curves (eval/roc.h): scikit-learn's roc_curve checked point by point on hand-made scores
// (ties, collinear points dropped, all-equal scores) and on random scores against
// tests/python/roc_reference.py (a numpy transcription of sklearn's _binary_clf_curve and
// roc_curve); insightface's TAR@FAR reading, and the PNG plot.
#include "facetrain/eval/roc.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <random>
#include <sstream>

#include "data_testing.h"
#include "facetrain/core/error.h"

namespace {

namespace fs = std::filesystem;
namespace fe = facetrain::eval;
using facetrain::testing::error_message;
using facetrain::testing::run_command;
using facetrain::testing::slurp;
using facetrain::testing::spit;

const double kInf = std::numeric_limits<double>::infinity();

void expect_curve(const fe::RocCurve& roc, const std::vector<double>& fpr, const std::vector<double>& tpr,
                  const std::vector<double>& thresholds) {
  EXPECT_EQ(roc.fpr, fpr);
  EXPECT_EQ(roc.tpr, tpr);
  EXPECT_EQ(roc.thresholds, thresholds);
}

class RocFiles : public facetrain::testing::TempDirTest {};

}  // namespace

TEST(Roc, HandExampleWithATieAcrossLabels) {
  // Sorted: 0.9 (+), 0.8 (+), 0.8 (-), 0.1 (-). Thresholds 0.9, 0.8, 0.1 give (fps, tps) =
  // (0, 1), (1, 2), (2, 2): no interior point is collinear, so all stay.
  auto roc = fe::roc_curve({0.8, 0.1, 0.9, 0.8}, {0, 0, 1, 1});
  expect_curve(roc, {0, 0, 0.5, 1}, {0, 0.5, 1, 1}, {kInf, 0.9, 0.8, 0.1});
}

TEST(Roc, DropsInteriorCollinearPoints) {
  // Sorted 5 4 3 2 1 with labels + + + - -: (fps, tps) = (0,1) (0,2) (0,3) (1,3) (2,3).
  // Second differences: point 4 is on the segment (0,1)-(0,3), point 2 on (0,3)-(2,3): dropped.
  // The prepended (0, 0) is not part of the test, so (0, 1/3) stays although it lies on the
  // segment from (0, 0) to (0, 1).
  auto roc = fe::roc_curve({1, 2, 3, 4, 5}, {0, 0, 1, 1, 1});
  expect_curve(roc, {0, 0, 0, 1}, {0, 1.0 / 3, 1, 1}, {kInf, 5, 3, 1});
}

TEST(Roc, DropsPointsOnASlantedSegmentToo) {
  // Alternating labels: (fps, tps) = (0,1) (1,1) (1,2) (2,2) (2,3) (3,3): every interior second
  // difference is nonzero (a staircase), so nothing is dropped...
  auto stairs = fe::roc_curve({6, 5, 4, 3, 2, 1}, {1, 0, 1, 0, 1, 0});
  EXPECT_EQ(stairs.fpr.size(), 7u);
  // ...while a run with equal steps in both counts, (1,1) (2,2) (3,3) from tied pairs
  // {+,-} at each score, is one straight line: its interior point goes.
  auto diagonal = fe::roc_curve({3, 3, 2, 2, 1, 1}, {1, 0, 1, 0, 1, 0});
  expect_curve(diagonal, {0, 1.0 / 3, 1}, {0, 1.0 / 3, 1}, {kInf, 3, 1});
}

TEST(Roc, AllEqualScoresGiveOnePointPlusTheOrigin) {
  auto roc = fe::roc_curve({0.5, 0.5, 0.5}, {1, 0, 0});
  expect_curve(roc, {0, 1}, {0, 1}, {kInf, 0.5});
}

TEST(Roc, TwoPointsAreNeverDropped) {
  auto roc = fe::roc_curve({2, 1}, {1, 0});
  expect_curve(roc, {0, 0, 1}, {0, 1, 1}, {kInf, 2, 1});
}

TEST(Roc, NegativeZeroAndZeroAreOneScore) {
  auto roc = fe::roc_curve({0.0, -0.0, 1.0}, {1, 0, 1});
  ASSERT_EQ(roc.fpr.size(), 3u);
  EXPECT_EQ(roc.fpr, (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(roc.tpr, (std::vector<double>{0, 0.5, 1}));
}

TEST(Roc, InputOrderDoesNotMatter) {
  std::mt19937_64 rng(3);
  std::vector<double> s;
  std::vector<uint8_t> l;
  for (int i = 0; i < 300; ++i) {
    s.push_back(static_cast<double>(rng() % 20) / 10);  // many ties
    l.push_back(static_cast<uint8_t>(rng() % 2));
  }
  const auto a = fe::roc_curve(s, l);
  for (size_t i = s.size(); i > 1; --i) {
    const size_t j = rng() % i;
    std::swap(s[i - 1], s[j]);
    std::swap(l[i - 1], l[j]);
  }
  const auto b = fe::roc_curve(s, l);
  expect_curve(b, a.fpr, a.tpr, a.thresholds);
}

TEST(Roc, RefusesInvalidInput) {
  using facetrain::ArgumentError;
  EXPECT_EQ(error_message<ArgumentError>([] { fe::roc_curve({1, 2}, {1}); }), "roc_curve: 2 scores but 1 labels");
  EXPECT_EQ(error_message<ArgumentError>([] {
              fe::roc_curve({1, 2}, {1, 1});
            }),
            "roc_curve: needs both genuine (1) and impostor (0) labels; got 2 genuine of 2");
  EXPECT_EQ(error_message<ArgumentError>([] {
              fe::roc_curve({1, 2}, {0, 0});
            }),
            "roc_curve: needs both genuine (1) and impostor (0) labels; got 0 genuine of 2");
  EXPECT_EQ(error_message<ArgumentError>([] { fe::roc_curve({}, {}); }),
            "roc_curve: needs both genuine (1) and impostor (0) labels; got 0 genuine of 0");
  EXPECT_EQ(error_message<ArgumentError>([] {
              fe::roc_curve({1, 2}, {0, 2});
            }),
            "roc_curve: label 1 is 2; labels must be 0 (impostor) or 1 (genuine)");
  EXPECT_NE(error_message<ArgumentError>([] {
              fe::roc_curve({1, std::nan("")}, {0, 1});
            }).find("roc_curve: score 1 is not finite"),
            std::string::npos);
}

TEST_F(RocFiles, MatchesTheScikitLearnTranscriptionOnRandomScores) {
  // tests/python/roc_reference.py transcribes sklearn's _binary_clf_curve and roc_curve in numpy.
  // Both compute integer counts and one division per rate, so they must agree exactly.
  std::mt19937_64 rng(11);
  const std::string script = std::string(FACETRAIN_SOURCE_DIR) + "/tests/python/roc_reference.py";
  for (int trial = 0; trial < 8; ++trial) {
    const size_t n = trial == 0 ? 2 : 10 + rng() % 3000;
    std::vector<double> s(n);
    std::vector<uint8_t> l(n);
    std::ostringstream in;
    for (size_t i = 0; i < n; ++i) {
      const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
      // Half of the trials quantised to few distinct values (heavy ties), labels correlated.
      s[i] = trial % 2 ? std::round(u * 25) / 25 - 0.3 : u * 2 - 1;
      l[i] = static_cast<uint8_t>((rng() % 100) < 30 + 40 * u);
      if (trial == 0) l[i] = static_cast<uint8_t>(i);
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g %d\n", s[i], l[i]);
      in << buf;
    }
    spit(path("in.txt"), in.str());
    auto r =
        run_command(std::string(FACETRAIN_TEST_PYTHON) + " " + script + " " + path("in.txt") + " " + path("out.txt"));
    ASSERT_EQ(r.status, 0) << "python3 with numpy is needed (scripts/setup.sh --tests):\n" << r.output;
    std::istringstream out(slurp(path("out.txt")));
    std::vector<double> fpr, tpr, thr;
    for (std::string f, t, h; out >> f >> t >> h;) {
      fpr.push_back(std::strtod(f.c_str(), nullptr));
      tpr.push_back(std::strtod(t.c_str(), nullptr));
      thr.push_back(std::strtod(h.c_str(), nullptr));
    }
    SCOPED_TRACE("trial " + std::to_string(trial) + ", " + std::to_string(n) + " scores");
    const auto roc = fe::roc_curve(s, l);
    ASSERT_GT(fpr.size(), 1u);
    expect_curve(roc, fpr, tpr, thr);
    for (double far : {1e-3, 1e-2, 0.1, 0.5})  // the reference's TAR reading is tested in the IJB tests
      EXPECT_GE(fe::tar_at_far(roc, far), 0.0);
  }
}

TEST(TarAtFar, TakesTheNearestPointWithoutInterpolation) {
  fe::RocCurve roc{{0, 0.25, 0.75, 1}, {0, 0.5, 0.9, 1}, {kInf, 3, 2, 1}};
  EXPECT_EQ(fe::tar_at_far(roc, 0.3), 0.5);  // |0.25 - 0.3| < |0.75 - 0.3|
  EXPECT_EQ(fe::tar_at_far(roc, 0.7), 0.9);
  EXPECT_EQ(fe::tar_at_far(roc, 1e-6), 0.0);  // nearest is (0, 0)
  EXPECT_EQ(fe::tar_at_far(roc, 5), 1.0);
}

TEST(TarAtFar, OnTiesTakesTheLargerTpr) {
  // 0.5 is exactly halfway between 0.25 and 0.75: eval_ijbc.py's flipud + min picks 0.75.
  fe::RocCurve roc{{0, 0.25, 0.75, 1}, {0, 0.5, 0.9, 1}, {kInf, 3, 2, 1}};
  EXPECT_EQ(fe::tar_at_far(roc, 0.5), 0.9);
  // A vertical run at FPR 0 (the usual IJB case at 1e-6): the top of the run.
  fe::RocCurve vertical{{0, 0, 0, 0.5, 1}, {0, 0.2, 0.6, 0.8, 1}, {kInf, 4, 3, 2, 1}};
  EXPECT_EQ(fe::tar_at_far(vertical, 1e-6), 0.6);
  // The README example: (0, 0) and (0, 0.5) equally near 1e-4.
  EXPECT_EQ(fe::tar_at_far(fe::roc_curve({0.9, 0.8, 0.8, 0.1}, {1, 1, 0, 0}), 1e-4), 0.5);
}

TEST(TarAtFar, RefusesAnEmptyCurve) {
  EXPECT_EQ(error_message<facetrain::ArgumentError>([] { fe::tar_at_far(fe::RocCurve{}, 0.1); }),
            "tar_at_far: the ROC curve has 0 FPR and 0 TPR values (needs the same number, at least one)");
}

TEST_F(RocFiles, WritesAPngWithBothCurves) {
  std::mt19937_64 rng(5);
  std::vector<double> s;
  std::vector<uint8_t> l;
  for (int i = 0; i < 2000; ++i) {
    const uint8_t label = static_cast<uint8_t>(i % 2);
    s.push_back(static_cast<double>(rng() >> 11) * 0x1.0p-53 + 0.6 * label);
    l.push_back(label);
  }
  const auto roc = fe::roc_curve(s, l);
  const fe::RocSeries perfect{"perfect", {0, 0, 1}, {0, 1, 1}};
  for (bool log_x : {true, false}) {
    const std::string png = path(log_x ? "log.png" : "linear.png");
    fe::write_roc_png(png, "ROC on IJB-C", {{"r50 (synthetic)", roc.fpr, roc.tpr}, perfect}, log_x);
    const cv::Mat img = cv::imread(png, cv::IMREAD_COLOR);
    ASSERT_FALSE(img.empty()) << png;
    EXPECT_EQ(img.cols, 800);
    EXPECT_EQ(img.rows, 600);
    // Pixels in each series' colour (tab10 blue, orange as BGR): both curves were drawn.
    auto count = [&](cv::Vec3b colour) {
      int n = 0;
      for (int y = 0; y < img.rows; ++y)
        for (int x = 0; x < img.cols; ++x) {
          const cv::Vec3b p = img.at<cv::Vec3b>(y, x);
          n += std::abs(p[0] - colour[0]) + std::abs(p[1] - colour[1]) + std::abs(p[2] - colour[2]) < 30;
        }
      return n;
    };
    EXPECT_GT(count({180, 119, 31}), 300) << png;
    EXPECT_GT(count({14, 127, 255}), 300) << png;
  }
  // Nothing but the two images: the temporaries were renamed.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 2);
}

TEST_F(RocFiles, ReportsAnUnwritablePlot) {
  const std::string png = path("missing_folder/roc.png");
  const std::string message = error_message<facetrain::DataError>([&] {
    fe::write_roc_png(png, "t", {{"a", {0, 1}, {0, 1}}}, false);
  });
  EXPECT_EQ(message.rfind("cannot write '" + png + "'", 0), 0u) << message;
  EXPECT_EQ(error_message<facetrain::ArgumentError>([&] {
              fe::write_roc_png(png, "t", {{"a", {0, 1}, {0}}}, true);
            }),
            "write_roc_png: series 'a' has 2 FPR and 1 TPR values");
}
