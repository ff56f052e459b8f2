// The strict configuration reader: types, unknown keys with hints, locations, all errors at once,
// --set overrides, files.

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "facetrain/config/reader.h"

namespace facetrain::config {
namespace {

struct Options {
  double scale = 64;
  int64_t steps = 10;
  bool flag = false;
  std::string name = "x";
  std::vector<std::string> list;
};

/// Reads a small recipe: {head: {scale, steps, flag, name, list}}; returns the messages.
std::vector<std::string> read_recipe(Document doc, Options& o) {
  Diagnostics diag;
  Section root(doc, diag);
  auto head = root.section("head");
  head.read("scale", o.scale);
  head.read("steps", o.steps);
  head.read("flag", o.flag);
  head.read("name", o.name);
  head.read("list", o.list);
  if (o.scale <= 0) head.error("scale", "must be > 0");
  head.finish();
  root.finish();
  std::vector<std::string> out;
  for (const auto& i : diag.issues()) out.push_back(i.to_string());
  return out;
}

TEST(Config, ReadsTypedValuesAndKeepsDefaults) {
  Options o;
  auto errors = read_recipe(Document::from_string("head:\n  scale: 30\n  flag: true\n  list: [a, b]\n"), o);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(o.scale, 30);
  EXPECT_TRUE(o.flag);
  EXPECT_EQ(o.steps, 10);
  EXPECT_EQ(o.name, "x");
  EXPECT_EQ(o.list, (std::vector<std::string>{"a", "b"}));
}

TEST(Config, ReportsEveryProblemWithLineColumnAndHint) {
  Options o;
  auto errors = read_recipe(Document::from_string("head:\n"
                                                  "  scale: -3\n"
                                                  "  stepz: 5\n"
                                                  "  flag: maybe\n"
                                                  "  steps: 2.5\n"
                                                  "optimiser: {}\n",
                                                  "recipe.yaml"),
                            o);
  ASSERT_EQ(errors.size(), 5u);  // in document order, whatever order they were found in
  EXPECT_EQ(errors[0], "recipe.yaml:2:10: head.scale: must be > 0");
  EXPECT_EQ(errors[1], "recipe.yaml:3:3: head.stepz: unknown key 'stepz' (did you mean 'steps'?)");
  EXPECT_EQ(errors[2], "recipe.yaml:4:9: head.flag: expected true or false, got 'maybe'");
  EXPECT_EQ(errors[3], "recipe.yaml:5:10: head.steps: expected an integer, got '2.5'");
  EXPECT_EQ(errors[4], "recipe.yaml:6:1: optimiser: unknown key 'optimiser'; known keys here: head");
  EXPECT_EQ(o.steps, 10) << "a bad value leaves the default";
}

TEST(Config, UnknownKeyWithoutCloseMatchListsKnownKeys) {
  Options o;
  auto errors = read_recipe(Document::from_string("head: {zzzzzz: 1}"), o);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0],
            "<yaml>:1:8: head.zzzzzz: unknown key 'zzzzzz'; known keys here: flag, list, name, scale, steps");
}

TEST(Config, WrongKindsDuplicatesAndMissingKeys) {
  Document doc = Document::from_string("a: [1, 2]\nb: {x: 1}\nb: 2\nc: 3\n", "f.yaml");
  Diagnostics diag;
  Section root(doc, diag);
  double a = 0;
  std::string kind;
  root.read("a", a);
  root.section("b");
  root.require("type", kind);
  root.section("c").finish();
  root.finish();
  ASSERT_EQ(diag.issues().size(), 4u);
  EXPECT_EQ(diag.issues()[0].to_string(), "f.yaml:1:1: type: missing required key 'type'");
  EXPECT_EQ(diag.issues()[1].to_string(), "f.yaml:1:4: a: expected a number, got a list");
  EXPECT_EQ(diag.issues()[2].to_string(), "f.yaml:3:1: b: duplicate key (an earlier value would be silently lost)");
  EXPECT_EQ(diag.issues()[3].to_string(), "f.yaml:4:4: c: expected a mapping, got a scalar");
  try {
    diag.throw_if_any();
    ADD_FAILURE() << "no throw";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.issues().size(), 4u);
    EXPECT_EQ(std::string(e.what()).rfind("4 configuration errors:\n", 0), 0u) << e.what();
  }
}

TEST(Config, NonFiniteNumbersAndEnums) {
  Document doc = Document::from_string("a: .nan\nb: .inf\nmode: fsat\n");
  Diagnostics diag;
  Section root(doc, diag);
  double a = 1, b = 1;
  enum class Mode { kFast, kSlow } mode = Mode::kSlow;
  root.read("a", a);
  root.read("b", b);
  root.read_enum("mode", mode, {{"fast", Mode::kFast}, {"slow", Mode::kSlow}});
  ASSERT_EQ(diag.issues().size(), 3u);
  EXPECT_EQ(diag.issues()[0].message, "expected a finite number, got '.nan'");
  EXPECT_EQ(diag.issues()[2].to_string(),
            "<yaml>:3:7: mode: unknown value 'fsat'; expected one of: fast, slow (did you mean 'fast'?)");
  // (fsat -> fast is one transposition)
  EXPECT_EQ(mode, Mode::kSlow);
}

TEST(Config, OverridesApplyAndAreCitedAsSuch) {
  Document doc = Document::from_string("head:\n  scale: 30\n", "r.yaml");
  doc.set("head.scale=16");
  doc.set("head.flag=true");
  doc.set("train.lr=0.1");
  Options o;
  Diagnostics diag;
  Section root(doc, diag);
  auto head = root.section("head");
  head.read("scale", o.scale);
  head.read("flag", o.flag);
  head.finish();
  root.section("train").finish();
  root.finish();
  EXPECT_EQ(o.scale, 16);
  EXPECT_TRUE(o.flag);
  ASSERT_EQ(diag.issues().size(), 1u);
  EXPECT_EQ(diag.issues()[0].to_string(), "--set train.lr=0.1: train.lr: unknown key 'lr'; no keys are expected here");

  Document bad = Document::from_string("head:\n  scale: 30\n", "r.yaml");
  bad.set("head.scale=abc");
  Diagnostics d2;
  Section r2(bad, d2);
  double scale = 0;
  r2.section("head").read("scale", scale);
  ASSERT_EQ(d2.issues().size(), 1u);
  EXPECT_EQ(d2.issues()[0].to_string(), "--set head.scale=abc: head.scale: expected a number, got 'abc'");
}

TEST(Config, MalformedOverridesThrow) {
  Document doc = Document::from_string("head: {scale: 30}\n");
  EXPECT_THROW(doc.set("head.scale"), ConfigError);
  EXPECT_THROW(doc.set("=3"), ConfigError);
  EXPECT_THROW(doc.set("head..scale=3"), ConfigError);
  EXPECT_THROW(doc.set("head.scale.x=3"), ConfigError);
  EXPECT_THROW(doc.set("head.scale=[1"), ConfigError);
  try {
    doc.set("head.scale.x=3");
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "--set head.scale.x=3: 'head.scale' is a scalar, not a mapping");
  }
}

TEST(Config, FilesAndSyntaxErrors) {
  try {
    Document::from_file("/nonexistent/recipe.yaml");
    ADD_FAILURE() << "no throw";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/recipe.yaml: cannot open the file");
  }
  std::string path = ::testing::TempDir() + "facetrain_bad.yaml";
  {
    std::ofstream f(path);
    f << "head:\n  scale: 30\n  margin: [0.5\n";
  }
  try {
    Document::from_file(path);
    ADD_FAILURE() << "no throw";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.issues().size(), 1u);
    EXPECT_EQ(e.issues()[0].file, path);
    EXPECT_GT(e.issues()[0].line, 0);
    EXPECT_NE(std::string(e.what()).find("YAML syntax error"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

TEST(Config, ClosestIsConservative) {
  EXPECT_EQ(Section::closest("margn", {"margin", "scale"}), "margin");
  EXPECT_EQ(Section::closest("sclae", {"margin", "scale"}), "scale");
  EXPECT_EQ(Section::closest("xyz", {"margin", "scale"}), "");
}

}  // namespace
}  // namespace facetrain::config
