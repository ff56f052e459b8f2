// End to end: every head, trained by the head demo on random clusters, must learn: the loss
// falls and held-out nearest-centre accuracy rises far above chance (1/30).

#include <gtest/gtest.h>

#include <numeric>

#include "facetrain/config/reader.h"
#include "facetrain/heads/registry.h"
#include "facetrain/train/head_demo.h"

namespace facetrain::train {
namespace {

class HeadDemo : public ::testing::TestWithParam<std::string> {};

TEST_P(HeadDemo, EveryHeadLearnsTheClusters) {
  auto doc = config::Document::from_file(FACETRAIN_SOURCE_DIR "/configs/head_demo.yaml");
  doc.set("head={type: " + GetParam() + "}");  // the head's own defaults
  config::Diagnostics diag;
  config::Section root(doc, diag);
  HeadDemoOptions options;
  options.read(root);
  ASSERT_TRUE(diag.empty()) << diag.issues()[0].to_string();
  std::vector<std::string> lines;
  auto result = run_head_demo(options, [&](const std::string& l) { lines.push_back(l); });

  ASSERT_EQ(result.losses.size(), static_cast<size_t>(options.steps));
  auto mean = [&](size_t a, size_t b) {
    return std::accumulate(result.losses.begin() + a, result.losses.begin() + b, 0.0) / double(b - a);
  };
  const size_t k = result.losses.size() / 10;
  EXPECT_LT(mean(result.losses.size() - k, result.losses.size()), 0.7 * mean(0, k)) << GetParam();
  EXPECT_LT(result.accuracy_before, 0.2);
  EXPECT_GT(result.accuracy_after, 0.75) << GetParam();
  // Progress lines carry the rate and the ETA.
  ASSERT_GE(lines.size(), 3u);
  EXPECT_NE(lines[1].find("step/s"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("ETA"), std::string::npos) << lines[1];
}

INSTANTIATE_TEST_SUITE_P(AllHeads, HeadDemo,
                         ::testing::Values("softmax", "normface", "cosface", "arcface", "combined", "sphereface",
                                           "mv_softmax", "curricularface", "adaface", "circleloss"));

TEST(HeadDemoConfig, ErrorsNameTheKey) {
  auto doc = config::Document::from_string("data: {classes: 0}\ntrain: {momentum: 1.5, stpes: 3}\n", "demo.yaml");
  config::Diagnostics diag;
  config::Section root(doc, diag);
  HeadDemoOptions options;
  options.read(root);
  ASSERT_EQ(diag.issues().size(), 4u);
  EXPECT_EQ(diag.issues()[0].to_string(), "demo.yaml:1:1: head.type: missing required key 'type'");
  EXPECT_EQ(diag.issues()[1].to_string(), "demo.yaml:1:17: data.classes: must be > 0");
  EXPECT_EQ(diag.issues()[2].to_string(), "demo.yaml:2:19: train.momentum: must be in [0, 1)");
  EXPECT_EQ(diag.issues()[3].to_string(), "demo.yaml:2:24: train.stpes: unknown key 'stpes' (did you mean 'steps'?)");
}

}  // namespace
}  // namespace facetrain::train
