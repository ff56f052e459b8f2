// Building heads from YAML: every registered type, unknown types, option errors with lines.

#include <gtest/gtest.h>

#include "facetrain/heads.h"

namespace facetrain::heads {
namespace {

TEST(HeadRegistry, EveryRegisteredTypeBuildsFromYaml) {
  auto types = head_types();
  ASSERT_EQ(types.size(), 10u);
  std::vector<std::string> names;
  for (const auto& t : types) {
    names.push_back(t.type);
    auto head = make_head(YAML::Load("{type: " + t.type + "}"), 16, 7);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->type(), t.type);
    EXPECT_EQ(head->weight.sizes(), (std::vector<int64_t>{7, 16}));
    auto logits = head->forward(torch::randn({3, 16}), torch::tensor({0, 3, 6}, torch::kLong));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 7}));
    EXPECT_FALSE(t.reference.empty());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"softmax", "normface", "cosface", "arcface", "combined", "sphereface",
                                             "mv_softmax", "curricularface", "adaface", "circleloss"}));
}

TEST(HeadRegistry, DefaultsAreTheDocumentedOnes) {
  std::map<std::string, std::string> defaults;
  for (const auto& t : head_types()) defaults[t.type] = t.defaults;
  EXPECT_EQ(defaults["normface"], "scale=64");
  EXPECT_EQ(defaults["cosface"], "scale=64, margin=0.35");
  EXPECT_EQ(defaults["arcface"], "scale=64, margin=0.5, easy_margin=false, gradient=autograd");
  EXPECT_EQ(defaults["combined"], "scale=64, m1=1, m2=0.5, m3=0");
  EXPECT_EQ(defaults["sphereface"], "margin=4, lambda_base=1000, lambda_gamma=0.12, lambda_power=1, lambda_min=5");
  EXPECT_EQ(defaults["mv_softmax"], "scale=32, margin=0.35, t=0.2, variant=am, reweight=adaptive, easy_margin=true");
  EXPECT_EQ(defaults["curricularface"], "scale=64, margin=0.5, momentum=0.01");
  EXPECT_EQ(defaults["adaface"], "scale=64, margin=0.4, h=0.333, t_alpha=0.01");
  EXPECT_EQ(defaults["circleloss"], "scale=256, margin=0.25");
}

std::string error_of(const std::string& yaml) {
  try {
    make_head(YAML::Load(yaml), 8, 4);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HeadRegistry, UnknownTypeListsTheKnownOnes) {
  EXPECT_EQ(error_of("{type: arcfce}"),
            "<yaml>:1:8: type: unknown head type 'arcfce'; known types: softmax, normface, cosface, arcface, combined, "
            "sphereface, mv_softmax, curricularface, adaface, circleloss (did you mean 'arcface'?)");
  EXPECT_EQ(error_of("{scale: 3}"), "<yaml>:1:1: type: missing required key 'type'");
}

TEST(HeadRegistry, BadOptionsAreConfigErrorsWithLines) {
  EXPECT_EQ(error_of("type: arcface\nscale: -1\nmargn: 0.5\n"),
            "2 configuration errors:\n"
            "<yaml>:2:8: scale: must be > 0, got -1\n"
            "<yaml>:3:1: margn: unknown key 'margn' (did you mean 'margin'?)");
  EXPECT_EQ(error_of("type: sphereface\nmargin: 4.5\n"), "<yaml>:2:9: margin: must be an integer 1..4, got 4.5");
  EXPECT_EQ(error_of("type: sphereface\nmargin: 5\n"), "<yaml>:2:9: margin: must be an integer 1..4, got 5");
  EXPECT_EQ(error_of("type: mv_softmax\nvariant: amm\n"),
            "<yaml>:2:10: variant: unknown value 'amm'; expected one of: am, arc (did you mean 'am'?)");
  EXPECT_EQ(
      error_of("type: mv_softmax\nreweight: adaptve\n"),
      "<yaml>:2:11: reweight: unknown value 'adaptve'; expected one of: adaptive, fixed (did you mean 'adaptive'?)");
  EXPECT_EQ(error_of("{type: arcface, gradient: straight}"),
            "<yaml>:1:27: gradient: unknown value 'straight'; expected one of: autograd, straight_through");
  EXPECT_EQ(error_of("{type: cosface, margin: 1.5}"), "<yaml>:1:25: margin: must be in [0, 1], got 1.5");
  EXPECT_EQ(error_of("{type: arcface, margin: 2}"), "<yaml>:1:25: margin: must be in [0, pi/2], got 2");
  EXPECT_EQ(error_of("{type: curricularface, momentum: 2}"), "<yaml>:1:34: momentum: must be in [0, 1], got 2");
  EXPECT_EQ(error_of("{type: adaface, t_alpha: -0.1, h: 0}"),
            "2 configuration errors:\n<yaml>:1:26: t_alpha: must be in [0, 1], got -0.1\n"
            "<yaml>:1:35: h: must be > 0, got 0");
  EXPECT_EQ(error_of("{type: softmax, scale: 3}"), "<yaml>:1:17: scale: unknown key 'scale'; known keys here: type");
  EXPECT_EQ(error_of("{type: arcface, scale: abc}"), "<yaml>:1:24: scale: expected a number, got 'abc'");
  EXPECT_EQ(error_of("arcface"),
            "2 configuration errors:\n<yaml>:1:1: expected a mapping, got a scalar\n"
            "<yaml>:1:1: type: missing required key 'type'");
}

TEST(HeadRegistry, ReadHeadInsideALargerRecipe) {
  auto doc = config::Document::from_string("model:\n  head:\n    type: cosface\n    margin: 0.4\n", "recipe.yaml");
  config::Diagnostics diag;
  config::Section root(doc, diag);
  auto model = root.section("model");
  auto section = model.section("head");
  HeadSpec spec = read_head(section);
  model.finish();
  root.finish();
  ASSERT_TRUE(diag.empty());
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec.options, "scale=64, margin=0.4");
  auto head = spec.build(HeadGeometry(8, 100, 50, 100));
  EXPECT_EQ(head->weight.size(0), 50);

  auto bad = config::Document::from_string("model:\n  head:\n    type: cosface\n    margin: -1\n", "recipe.yaml");
  config::Diagnostics d2;
  config::Section r2(bad, d2);
  auto m2 = r2.section("model");
  auto s2 = m2.section("head");
  read_head(s2);
  ASSERT_EQ(d2.issues().size(), 1u);
  EXPECT_EQ(d2.issues()[0].to_string(), "recipe.yaml:4:13: model.head.margin: must be in [0, 1], got -1");
}

}  // namespace
}  // namespace facetrain::heads
