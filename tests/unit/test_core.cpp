// Core utilities: progress lines, the allocator setting, the SVG plot.

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
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

}  // namespace
}  // namespace facetrain
