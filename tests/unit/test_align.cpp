// Five-point alignment (data/align.h): the closed-form similarity against a known transform and
// against an independent least-squares solve, and the warp putting landmarks on the template.
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include <unistd.h>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "facetrain/core/error.h"
#include "facetrain/data/align.h"

namespace fd = facetrain::data;

namespace {

// Applies the similarity x' = s R(theta) x + t to every point.
fd::Landmarks5 transformed(const fd::Landmarks5& p, double s, double theta, double tx, double ty) {
  fd::Landmarks5 out;
  for (int i = 0; i < 5; ++i) {
    out[i].x = s * (std::cos(theta) * p[i].x - std::sin(theta) * p[i].y) + tx;
    out[i].y = s * (std::sin(theta) * p[i].x + std::cos(theta) * p[i].y) + ty;
  }
  return out;
}

}  // namespace

TEST(Align, RecoversAnExactSimilarity) {
  // Landmarks made by moving the template: the transform back must be the exact inverse.
  const double s = 2.5, theta = 0.3, tx = 40, ty = -12;
  auto lmk = transformed(fd::arcface_template(), s, theta, tx, ty);
  auto m = fd::similarity_transform(lmk);
  const double inv_s = 1 / s;
  EXPECT_NEAR(m[0], inv_s * std::cos(-theta), 1e-12);
  EXPECT_NEAR(m[3], inv_s * std::sin(-theta), 1e-12);
  EXPECT_DOUBLE_EQ(m[1], -m[3]);
  EXPECT_DOUBLE_EQ(m[4], m[0]);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(m[0] * lmk[i].x + m[1] * lmk[i].y + m[2], fd::arcface_template()[i].x, 1e-9);
    EXPECT_NEAR(m[3] * lmk[i].x + m[4] * lmk[i].y + m[5], fd::arcface_template()[i].y, 1e-9);
  }
}

TEST(Align, EqualsAnIndependentLeastSquaresSolveOnNoisyLandmarks) {
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0, 3);
  for (int trial = 0; trial < 20; ++trial) {
    auto lmk = transformed(fd::arcface_template(), 1.7, -0.4 + 0.05 * trial, 100, 30);
    for (auto& p : lmk) {
      p.x += noise(rng);
      p.y += noise(rng);
    }
    // Unknowns (a, b, tx, ty): rows [x, -y, 1, 0] -> X and [y, x, 0, 1] -> Y, solved by SVD.
    cv::Mat A(10, 4, CV_64F), y(10, 1, CV_64F), sol;
    for (int i = 0; i < 5; ++i) {
      const auto& p = lmk[i];
      const auto& d = fd::arcface_template()[i];
      double r1[4] = {p.x, -p.y, 1, 0}, r2[4] = {p.y, p.x, 0, 1};
      for (int k = 0; k < 4; ++k) {
        A.at<double>(2 * i, k) = r1[k];
        A.at<double>(2 * i + 1, k) = r2[k];
      }
      y.at<double>(2 * i) = d.x;
      y.at<double>(2 * i + 1) = d.y;
    }
    ASSERT_TRUE(cv::solve(A, y, sol, cv::DECOMP_SVD));
    auto m = fd::similarity_transform(lmk);
    EXPECT_NEAR(m[0], sol.at<double>(0), 1e-10);
    EXPECT_NEAR(m[3], sol.at<double>(1), 1e-10);
    EXPECT_NEAR(m[2], sol.at<double>(2), 1e-8);
    EXPECT_NEAR(m[5], sol.at<double>(3), 1e-8);
  }
}

TEST(Align, WarpPutsTheLandmarksOnTheTemplate) {
  // A 300x300 photo with a bright dot at each landmark of a face twice the template's size,
  // rotated by 20 degrees.
  auto lmk = transformed(fd::arcface_template(), 2.0, 20 * M_PI / 180, 120, 10);
  cv::Mat photo(300, 300, CV_8UC3, cv::Scalar::all(0));
  for (const auto& p : lmk)
    cv::circle(photo, cv::Point(int(std::lround(p.x)), int(std::lround(p.y))), 3, cv::Scalar(255, 255, 255), -1);
  cv::Mat face = fd::align_face(photo, lmk);
  ASSERT_EQ(face.rows, 112);
  ASSERT_EQ(face.cols, 112);
  ASSERT_EQ(face.type(), CV_8UC3);
  cv::Mat gray;
  cv::cvtColor(face, gray, cv::COLOR_BGR2GRAY);
  for (const auto& t : fd::arcface_template()) {
    EXPECT_GT(gray.at<uchar>(int(std::lround(t.y)), int(std::lround(t.x))), 100) << t.x << "," << t.y;
  }
  EXPECT_EQ(gray.at<uchar>(5, 5), 0) << "black border outside the photo's content";
}

TEST(Align, DegenerateLandmarksAreRefused) {
  fd::Landmarks5 same;
  for (auto& p : same) p = {10, 10};
  EXPECT_THROW(fd::similarity_transform(same), facetrain::ArgumentError);
  EXPECT_THROW(fd::align_face(cv::Mat(), fd::arcface_template()), facetrain::ArgumentError);
}

TEST(Align, FolderToolWritesAlignedCropsAndNamesBadLines) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("facetrain_align_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "in/person a");
  auto lmk = transformed(fd::arcface_template(), 1.5, 0.1, 30, 20);
  cv::Mat photo(240, 240, CV_8UC3, cv::Scalar(0, 0, 0));
  for (const auto& p : lmk)
    cv::circle(photo, cv::Point(int(std::lround(p.x)), int(std::lround(p.y))), 2, cv::Scalar(255, 255, 255), -1);
  ASSERT_TRUE(cv::imwrite((dir / "in/person a/1.png").string(), photo));
  {
    std::ofstream f(dir / "lmk.txt");
    f << "# path x1 y1 ... x5 y5\n";
    f << "person a/1.png";
    for (const auto& p : lmk) f << " " << p.x << " " << p.y;
    f << "\n";
  }
  int64_t calls = 0;
  auto summary = fd::align_folder((dir / "in").string(), (dir / "lmk.txt").string(), (dir / "out").string(),
                                  [&](int64_t done, int64_t total) { calls += (done <= total); });
  EXPECT_EQ(summary.written, 1);
  EXPECT_EQ(calls, 1);
  cv::Mat face = cv::imread((dir / "out/person a/1.png").string(), cv::IMREAD_GRAYSCALE);
  ASSERT_EQ(face.rows, 112);
  const auto& nose = fd::arcface_template()[2];
  EXPECT_GT(face.at<uchar>(int(std::lround(nose.y)), int(std::lround(nose.x))), 100);

  std::ofstream(dir / "bad.txt") << "person a/1.png 1 2 3\n";
  try {
    fd::align_folder((dir / "in").string(), (dir / "bad.txt").string(), (dir / "out").string());
    ADD_FAILURE() << "expected an error";
  } catch (const facetrain::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.txt: line 1: expected an image path and 10 numbers"), std::string::npos)
        << e.what();
  }
  std::ofstream(dir / "missing.txt") << "\nnobody.jpg 1 2 3 4 5 6 7 8 9 10\n";
  try {
    fd::align_folder((dir / "in").string(), (dir / "missing.txt").string(), (dir / "out").string());
    ADD_FAILURE() << "expected an error";
  } catch (const facetrain::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt: line 2: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nobody.jpg: missing, or not an image"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}
