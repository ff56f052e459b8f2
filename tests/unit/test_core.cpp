// Core utilities: progress lines, the allocator setting, the SVG and PNG plots.

#include <gtest/gtest.h>
#include <unistd.h>

#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "facetrain/core/error.h"
#include "facetrain/core/plot.h"
#include "facetrain/core/progress.h"
#include "facetrain/core/runtime.h"

namespace facetrain {
namespace {

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(ProgressMeter::format_duration(0.42), "0.4s");
  EXPECT_EQ(ProgressMeter::format_duration(59.94), "59.9s");
  EXPECT_EQ(ProgressMeter::format_duration(185), "3m05s");
  EXPECT_EQ(ProgressMeter::format_duration(3720), "1h02m");
  EXPECT_EQ(ProgressMeter::format_duration(-1), "0.0s");
}

TEST(Progress, LineHasCountRateAndEta) {
  ProgressMeter meter(200, "step");
  std::string line = meter.line(50);
  EXPECT_EQ(line.rfind("step 50/200 (25.0%) | ", 0), 0u) << line;
  EXPECT_NE(line.find(" step/s | elapsed "), std::string::npos) << line;
  EXPECT_NE(line.find(" | ETA "), std::string::npos) << line;
  EXPECT_EQ(meter.eta_seconds(200), 0.0);
  EXPECT_THROW(ProgressMeter(0), ArgumentError);
}

TEST(Runtime, AllocatorTuningCanBeTurnedOff) {
  setenv("FACETRAIN_SYSTEM_MALLOC", "1", 1);
  EXPECT_EQ(tune_cpu_allocator(), "allocator: system defaults (FACETRAIN_SYSTEM_MALLOC=1)");
  unsetenv("FACETRAIN_SYSTEM_MALLOC");
#if defined(__GLIBC__)
  EXPECT_EQ(tune_cpu_allocator(), "allocator: large blocks kept for reuse (glibc mallopt)");
#endif
}

TEST(Plot, WritesAnSvgWithEverySeries) {
  std::string path = ::testing::TempDir() + "facetrain_plot.svg";
  write_line_plot(path, "loss <&>", "step", "loss", {{"a", {1, 2, 3}, {3, 2, 1}}, {"b", {1, 2}, {1, 1}}});
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string svg = text.str();
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("loss &lt;&amp;&gt;"), std::string::npos);
  size_t lines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++lines;
  EXPECT_EQ(lines, 2u);
  std::remove(path.c_str());
  EXPECT_THROW(write_line_plot("/nonexistent-dir/x.svg", "t", "x", "y", {}), Error);
}

// PNG figures: decoded with OpenCV and checked by the pixels of each series' colour.
class PlotPng : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) / ("facetrain_plot_png_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Pixels within a small distance of `bgr` in columns [x0, x1).
  static int count(const cv::Mat& img, cv::Vec3b bgr, int x0, int x1) {
    int n = 0;
    for (int y = 0; y < img.rows; ++y)
      for (int x = std::max(0, x0); x < std::min(img.cols, x1); ++x) {
        const cv::Vec3b p = img.at<cv::Vec3b>(y, x);
        n += std::abs(p[0] - bgr[0]) + std::abs(p[1] - bgr[1]) + std::abs(p[2] - bgr[2]) < 30;
      }
    return n;
  }
  static int count(const cv::Mat& img, cv::Vec3b bgr) { return count(img, bgr, 0, img.cols); }

  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  const cv::Vec3b kBlue{180, 119, 31}, kOrange{14, 127, 255};  // tab10's first two colours, BGR
  std::filesystem::path dir_;
};

TEST_F(PlotPng, SizeIsPanelsTimesPanelWidthByHeight) {
  const PlotPanel panel{"loss", "step", "loss", {{"train", {0, 1, 2, 3}, {4, 3, 2.5, 2}}}};
  write_plot_png(path("one.png"), {panel});
  cv::Mat img = cv::imread(path("one.png"), cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty());
  EXPECT_EQ(img.cols, 800);
  EXPECT_EQ(img.rows, 600);
  write_plot_png(path("two.png"), {panel, panel}, 500, 350);
  img = cv::imread(path("two.png"), cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty());
  EXPECT_EQ(img.cols, 1000);
  EXPECT_EQ(img.rows, 350);
  // Only the two images are left: the temporaries were renamed.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 2);
}

TEST_F(PlotPng, DrawsEachPanelInItsOwnPlace) {
  PlotPanel curve{"accuracy", "step", "accuracy", {{"lfw", {0, 1, 2, 3}, {0.5, 0.9, 0.95, 0.97}}}};
  curve.legend = false;  // the curve alone must make the colour appear
  const PlotPanel empty{"nothing", "step", "accuracy", {}};
  for (bool curve_left : {true, false}) {
    const std::string png = path(curve_left ? "left.png" : "right.png");
    write_plot_png(png, curve_left ? std::vector<PlotPanel>{curve, empty} : std::vector<PlotPanel>{empty, curve}, 400,
                   300);
    const cv::Mat img = cv::imread(png, cv::IMREAD_COLOR);
    ASSERT_EQ(img.cols, 800);
    const int in_left = count(img, kBlue, 0, 400), in_right = count(img, kBlue, 400, 800);
    EXPECT_GT(curve_left ? in_left : in_right, 200) << png;
    EXPECT_EQ(curve_left ? in_right : in_left, 0) << png;
  }
}

TEST_F(PlotPng, GivesEachSeriesItsOwnColour) {
  const PlotPanel panel{"two", "x", "y", {{"a", {0, 1}, {0, 1}}, {"b", {0, 1}, {1, 0}}}};
  write_plot_png(path("two.png"), {panel});
  const cv::Mat img = cv::imread(path("two.png"), cv::IMREAD_COLOR);
  EXPECT_GT(count(img, kBlue), 500);
  EXPECT_GT(count(img, kOrange), 500);
}

TEST_F(PlotPng, SkipsNonFinitePointsAndJoinsTheRest) {
  const double inf = std::numeric_limits<double>::infinity();
  // NaN where there is no value: the curve runs from (0, 0) to (4, 4) across the gaps.
  PlotPanel joined{"gaps", "x", "y", {{"a", {0, 1, 2, kNaN, 4}, {0, kNaN, inf, 3, 4}}}};
  joined.legend = false;
  write_plot_png(path("joined.png"), {joined});
  cv::Mat img = cv::imread(path("joined.png"), cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty());
  EXPECT_GT(count(img, kBlue), 500);  // a diagonal across the panel, not two dots

  // One finite point: a marker. No finite point: nothing, and no error.
  PlotPanel single{"one point", "x", "y", {{"a", {kNaN, 2, -inf}, {1, 3, 2}}, {"b", {kNaN}, {kNaN}}}};
  single.legend = false;
  write_plot_png(path("single.png"), {single});
  img = cv::imread(path("single.png"), cv::IMREAD_COLOR);
  ASSERT_FALSE(img.empty());
  EXPECT_GT(count(img, kBlue), 20);
  EXPECT_LT(count(img, kBlue), 120);
  EXPECT_EQ(count(img, kOrange), 0);
}

TEST_F(PlotPng, ClipsToFixedRangesAndClampsWhenAsked) {
  // y far above a fixed range: clipped at the frame, never drawn into the title strip above it.
  PlotPanel clipped{"", "x", "y", {{"a", {0, 1}, {0, 1000}}}};
  clipped.y_min = 0, clipped.y_max = 1, clipped.legend = false;
  write_plot_png(path("clipped.png"), {clipped});
  cv::Mat img = cv::imread(path("clipped.png"), cv::IMREAD_COLOR);
  EXPECT_GT(count(img, kBlue), 50);
  EXPECT_EQ(count(img(cv::Rect(0, 0, img.cols, 40)), kBlue), 0);

  // x = 0 has no place on a log axis: skipped, unless clamp_x puts it on the left edge.
  PlotPanel log{"", "fpr", "tpr", {{"a", {0, 0}, {0, 1}}}};
  log.log_x = true, log.x_min = 1e-6, log.x_max = 1, log.legend = false;
  write_plot_png(path("skipped.png"), {log});
  EXPECT_EQ(count(cv::imread(path("skipped.png"), cv::IMREAD_COLOR), kBlue), 0);
  log.clamp_x = true;
  write_plot_png(path("clamped.png"), {log});
  img = cv::imread(path("clamped.png"), cv::IMREAD_COLOR);
  EXPECT_GT(count(img, kBlue), 300);                        // a vertical line ...
  EXPECT_EQ(count(img, kBlue, img.cols / 2, img.cols), 0);  // ... on the left
}

TEST_F(PlotPng, RefusesBadCallsAndReportsUnwritablePaths) {
  auto message = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no exception)";
  };
  const std::string png = path("plot.png");
  EXPECT_THROW(write_plot_png(png, {}), ArgumentError);
  EXPECT_EQ(message([&] { write_plot_png(png, {}); }), "write_plot_png: no panels to draw");
  const PlotPanel good{"ok", "x", "y", {{"a", {0, 1}, {0, 1}}}};
  const PlotPanel bad{"loss", "x", "y", {{"a", {0, 1}, {0, 1}}, {"b", {0, 1}, {0}}}};
  EXPECT_THROW(write_plot_png(png, {good, bad}), ArgumentError);
  EXPECT_EQ(message([&] {
              write_plot_png(png, {good, bad});
            }),
            "write_plot_png: panel 1 ('loss'): series 'b' has 2 x and 1 y values");
  PlotPanel reversed = good;
  reversed.y_min = 1, reversed.y_max = 0;
  EXPECT_THROW(write_plot_png(png, {reversed}), ArgumentError);
  PlotPanel log_from_zero = good;
  log_from_zero.log_x = true, log_from_zero.x_min = 0;
  EXPECT_THROW(write_plot_png(png, {log_from_zero}), ArgumentError);
  EXPECT_THROW(write_plot_png(png, {good}, 100, 600), ArgumentError);
  EXPECT_FALSE(std::filesystem::exists(png));  // bad calls write nothing

  // A folder that cannot exist: its parent is a regular file.
  std::ofstream(path("file")) << "not a folder";
  const std::string unwritable = path("file/plot.png");
  EXPECT_THROW(write_plot_png(unwritable, {good}), DataError);
  const std::string text = message([&] { write_plot_png(unwritable, {good}); });
  EXPECT_EQ(text.rfind("cannot write '" + unwritable + "': ", 0), 0u) << text;
}

}  // namespace
}  // namespace facetrain
