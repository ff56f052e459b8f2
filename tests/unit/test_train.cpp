// The trainer's parts: recipes (strict reading, errors with file and line), learning-rate
// schedules (against insightface's PolynomialLRWarmup recursion), the optimizers (bit for bit
// against PyTorch 1.13's torch.optim.SGD / AdamW, run by tests/python/optimizer_reference.py), and
// checkpoints (round trip, torch.load, refusals).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data_testing.h"
#include "facetrain/core/error.h"
#include "facetrain/io/state_dict.h"
#include "facetrain/train/checkpoint.h"
#include "facetrain/train/optimizer.h"
#include "facetrain/train/recipe.h"
#include "facetrain/train/schedule.h"

namespace facetrain::train {
namespace {

using testing::error_message;
using testing::run_command;
using testing::spit;
using testing::TempDirTest;

// --- recipes ------------------------------------------------------------------------------------

const char* kTinyRecipe = R"(model: {type: mobilefacenet, embedding_size: 16, scale: 1, blocks: [1, 1, 1, 1]}
head: {type: cosface, scale: 16, margin: 0.2}
data: {type: synthetic, identities: 4, images_per_identity: 6, workers: 1}
train: {max_steps: 4, batch_size: 4, device: cpu}
)";

Recipe recipe_from(const std::string& text, const std::string& output = "out", const std::string& name = "r.yaml") {
  return read_recipe(config::Document::from_string(text, name), output);
}

TEST(Recipe, ReadsEveryKeyAndKeepsDefaults) {
  auto r = recipe_from(std::string(kTinyRecipe) +
                       R"(optimizer: {type: adamw, lr: 0.001, betas: [0.8, 0.99], head: {lr: 0.01}}
schedule: {type: step, unit: epochs, milestones: [2, 4], gamma: 0.5}
checkpoint: {every_steps: 10, keep_last: 0}
log: {every_steps: 2, tensorboard: false}
)");
  EXPECT_EQ(r.train.max_steps, 4);
  EXPECT_EQ(r.train.batch_size, 4);
  EXPECT_EQ(r.data.loader.batch_size, 4);  // from train.batch_size
  EXPECT_EQ(r.train.epochs, 20);           // default
  EXPECT_EQ(r.optimizer.type, OptimizerType::kAdamW);
  EXPECT_EQ(r.optimizer.beta1, 0.8);
  EXPECT_EQ(r.optimizer.beta2, 0.99);
  ASSERT_TRUE(r.optimizer.head_lr.has_value());
  EXPECT_EQ(*r.optimizer.head_lr, 0.01);
  EXPECT_FALSE(r.optimizer.head_weight_decay.has_value());
  EXPECT_EQ(r.schedule.type, ScheduleType::kStep);
  EXPECT_EQ(r.schedule.milestones, (std::vector<double>{2, 4}));
  EXPECT_EQ(r.checkpoint.keep_last, 0);
  EXPECT_FALSE(r.log.tensorboard);
  EXPECT_EQ(r.model.type, "mobilefacenet");
  EXPECT_EQ(r.head.type, "cosface");
  EXPECT_NE(r.yaml.find("cosface"), std::string::npos);
}

TEST(Recipe, UnknownKeyWrongTypeAndRangeAreReportedTogetherWithLines) {
  std::string text = std::string(kTinyRecipe) + "optimizer: {lr: fast, momentun: 0.9}\nschedule: {type: linear}\n";
  auto message = error_message<ConfigError>([&] { recipe_from(text); });
  EXPECT_NE(message.find("r.yaml:5:"), std::string::npos) << message;
  EXPECT_NE(message.find("optimizer.lr"), std::string::npos) << message;
  EXPECT_NE(message.find("optimizer.momentun"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'momentum'"), std::string::npos) << message;
  EXPECT_NE(message.find("schedule.type"), std::string::npos) << message;
  EXPECT_NE(message.find("r.yaml:6:"), std::string::npos) << message;
}

TEST(Recipe, MissingOrAbsentDataPathIsAnErrorAtItsLine) {
  auto missing = error_message<ConfigError>(
      [&] { recipe_from("model: {type: mbf}\nhead: {type: arcface}\ndata: {type: recordio}\n"); });
  EXPECT_NE(missing.find("r.yaml:3:"), std::string::npos) << missing;
  EXPECT_NE(missing.find("data.path"), std::string::npos) << missing;
  auto absent = error_message<ConfigError>(
      [&] { recipe_from("model: {type: mbf}\nhead: {type: arcface}\ndata:\n  path: /no/such/faces\n"); });
  EXPECT_NE(absent.find("r.yaml:4:9: data.path: '/no/such/faces' does not exist"), std::string::npos) << absent;
}

TEST(Recipe, PartialFcRateAndGradientCompression) {
  auto doc = config::Document::from_string(kTinyRecipe, "r.yaml");
  EXPECT_EQ(read_recipe(doc, "out").sample_rate, 1.0);
  EXPECT_EQ(read_recipe(doc, "out").dist.grad_compression, GradCompression::kNone);
  doc.set("head.sample_rate=0.1");
  doc.set("dist.grad_compression=bf16");
  auto r = read_recipe(doc, "out");
  EXPECT_EQ(r.sample_rate, 0.1);
  EXPECT_EQ(r.dist.grad_compression, GradCompression::kBf16);
  EXPECT_NE(r.dist.describe().find("grad_compression=bf16"), std::string::npos);
  doc.set("head.chunk_size=4096");
  EXPECT_EQ(read_recipe(doc, "out").chunk_size, 4096);
  doc.set("head.sample_rate=1.5");
  doc.set("head.chunk_size=-1");
  doc.set("dist.grad_compression=int8");
  auto message = error_message<ConfigError>([&] { read_recipe(doc, "out"); });
  EXPECT_NE(message.find("head.sample_rate: must be in (0, 1]"), std::string::npos) << message;
  EXPECT_NE(message.find("--set head.sample_rate=1.5"), std::string::npos) << message;
  EXPECT_NE(message.find("none, fp16, bf16"), std::string::npos) << message;
  EXPECT_NE(message.find("head.chunk_size: must be >= 0"), std::string::npos) << message;
}

TEST(Recipe, CudnnBenchmarkIsOnByDefaultAndABoolean) {
  auto doc = config::Document::from_string(kTinyRecipe, "r.yaml");
  EXPECT_TRUE(read_recipe(doc, "out").train.cudnn_benchmark);
  doc.set("train.cudnn_benchmark=false");
  auto r = read_recipe(doc, "out");
  EXPECT_FALSE(r.train.cudnn_benchmark);
  EXPECT_NE(r.train.describe().find("cudnn_benchmark=false"), std::string::npos) << r.train.describe();
  doc.set("train.cudnn_benchmark=sometimes");
  auto message = error_message<ConfigError>([&] { read_recipe(doc, "out"); });
  EXPECT_NE(message.find("train.cudnn_benchmark"), std::string::npos) << message;
}

TEST(Recipe, BatchSizeBelongsToTrain) {
  auto message = error_message<ConfigError>(
      [&] { recipe_from("model: {type: mbf}\nhead: {type: arcface}\ndata: {type: synthetic, batch_size: 8}\n"); });
  EXPECT_NE(message.find("data.batch_size: a training recipe sets the batch size as train.batch_size"),
            std::string::npos)
      << message;
}

TEST(Recipe, SetOverridesAreCitedAndTyped) {
  auto doc = config::Document::from_string(kTinyRecipe, "r.yaml");
  doc.set("train.batch_size=8");
  EXPECT_EQ(read_recipe(doc, "out").train.batch_size, 8);
  doc.set("train.amp=fp8");
  auto message = error_message<ConfigError>([&] { read_recipe(doc, "out"); });
  EXPECT_NE(message.find("--set train.amp=fp8"), std::string::npos) << message;
  EXPECT_NE(message.find("none, bf16, fp16"), std::string::npos) << message;
}

TEST_F(TempDirTest, RecipeSynthesizeWritesIntoTheOutput) {
  auto r = recipe_from(R"(model: {type: mbf}
head: {type: arcface}
data:
  path: '{output}/synth'
  synthesize: {identities: 10, images_per_identity: 2, val_identities: 4, val_pairs: 20}
eval: {targets: ['{output}/synth/synth_val.bin']}
)",
                       path("run"));
  ASSERT_TRUE(r.synthesize.has_value());
  EXPECT_EQ(r.synthesize->out_dir, path("run") + "/synth");
  EXPECT_EQ(r.synthesize->identities, 10);
  EXPECT_EQ(r.synthesize->val_pairs, 20);
  EXPECT_EQ(r.data.dataset.path, path("run") + "/synth");
  EXPECT_EQ(r.eval.targets, (std::vector<std::string>{path("run") + "/synth/synth_val.bin"}));

  std::filesystem::create_directories(path("faces"));
  spit(path("faces/train.rec"), "");
  spit(path("faces/lfw.bin"), "");
  auto bare = recipe_from(
      "model: {type: mbf}\nhead: {type: arcface}\ndata: {path: " + path("faces") + "}\neval: {targets: [lfw]}\n",
      path("run"));
  EXPECT_EQ(bare.eval.targets, (std::vector<std::string>{path("faces") + "/lfw.bin"}));
  auto missing = error_message<ConfigError>([&] {
    recipe_from("model: {type: mbf}\nhead: {type: arcface}\ndata: {path: " + path("faces") +
                "}\neval: {targets: [cfp_fp]}\n");
  });
  EXPECT_NE(missing.find("eval.targets: '" + path("faces") + "/cfp_fp.bin' does not exist"), std::string::npos)
      << missing;
}

// Every recipe in configs/ reads without a problem once its dataset exists (here: an empty
// train.rec and the verification files it names, in a temporary folder).
TEST_F(TempDirTest, EveryShippedRecipeReads) {
  spit(path("train.rec"), "");
  for (const char* name : {"lfw", "cfp_fp", "agedb_30", "calfw", "cplfw"}) spit(path(std::string(name) + ".bin"), "");
  int recipes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(FACETRAIN_SOURCE_DIR "/configs")) {
    const auto file = entry.path();
    if (file.extension() != ".yaml" || file.filename() == "head_demo.yaml") continue;
    SCOPED_TRACE(file.string());
    auto doc = config::Document::from_file(file.string());
    if (file.filename() != "quickstart.yaml") doc.set("data.path=" + dir_.string());
    Recipe r;
    EXPECT_NO_THROW(r = read_recipe(doc, path("out")));
    EXPECT_TRUE(r.model && r.head);
    ++recipes;
  }
  EXPECT_GE(recipes, 12);  // quickstart, arcface_r50, one per head, mobilefacenet_arcface
}

// --- schedules ----------------------------------------------------------------------------------

// insightface's PolynomialLRWarmup (arcface_torch/lr_scheduler.py) as it runs: after warmup each
// step multiplies the previous lr by ((1 - (l - w)/(t - w)) / (1 - (l - 1 - w)/(t - w)))^power.
std::vector<double> insightface_poly(double base, int64_t warmup, int64_t total, double power) {
  std::vector<double> lrs;
  double lr = base;
  for (int64_t l = 0; l <= total; ++l) {
    if (l == 0) {
      lr = warmup > 0 ? 0.0 : base;
    } else if (l <= warmup) {
      lr = base * double(l) / double(warmup);
    } else {
      const double w = double(warmup), t = double(total);
      lr *= std::pow((1.0 - (double(l) - w) / (t - w)) / (1.0 - (double(l) - 1 - w) / (t - w)), power);
    }
    lrs.push_back(lr);
  }
  return lrs;
}

TEST(Schedule, PolyMatchesInsightfaceRecursion) {
  for (int64_t warmup : {0, 7}) {
    ScheduleOptions o;
    o.warmup = double(warmup);
    Schedule s(o, 0.1, 100, 10);
    auto reference = insightface_poly(0.1, warmup, 100, 2.0);
    for (int64_t step = 0; step < 100; ++step)
      EXPECT_NEAR(0.1 * s.factor(step), reference[size_t(step)], 1e-12) << "warmup " << warmup << " step " << step;
  }
}

TEST(Schedule, WarmupCosineStepAndEpochUnits) {
  ScheduleOptions cosine;
  cosine.type = ScheduleType::kCosine;
  cosine.unit = ScheduleUnit::kEpochs;
  cosine.warmup = 1;
  cosine.min_lr = 0.01;
  Schedule c(cosine, 0.1, 110, 10);  // warmup 10 steps, then 100 steps of cosine
  EXPECT_EQ(c.warmup_steps(), 10);
  EXPECT_DOUBLE_EQ(c.factor(0), 0.0);
  EXPECT_DOUBLE_EQ(c.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(c.factor(10), 1.0);
  EXPECT_NEAR(c.factor(60), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(c.factor(110), 0.1, 1e-12);  // min_lr / lr

  ScheduleOptions step;
  step.type = ScheduleType::kStep;
  step.unit = ScheduleUnit::kEpochs;
  step.milestones = {2, 4};
  Schedule st(step, 0.1, 100, 5);
  EXPECT_DOUBLE_EQ(st.factor(9), 1.0);
  EXPECT_DOUBLE_EQ(st.factor(10), 0.1);
  EXPECT_DOUBLE_EQ(st.factor(19), 0.1);
  EXPECT_NEAR(st.factor(20), 0.01, 1e-15);

  ScheduleOptions constant;
  constant.type = ScheduleType::kConstant;
  EXPECT_EQ(Schedule(constant, 0.1, 10, 1).factor(9), 1.0);
  EXPECT_THROW(Schedule(constant, 0.1, 0, 1), ArgumentError);
}

// --- optimizers ---------------------------------------------------------------------------------

// Two groups (different lr and weight decay), three parameters, K steps of fixed gradients.
struct OptimizerCase {
  const char* name;
  OptimizerOptions options;
};

std::vector<ParamGroup> make_groups(std::vector<torch::Tensor>& params) {
  torch::manual_seed(3);
  params = {torch::randn({4, 3}), torch::randn({5}), torch::randn({2, 2, 3})};
  for (auto& p : params) p.set_requires_grad(true);
  return {{"a", {{"p0", params[0]}, {"p1", params[1]}}, 0.1, 5e-4}, {"b", {{"p2", params[2]}}, 0.03, 0.0}};
}

std::vector<std::vector<torch::Tensor>> make_grads(int steps) {
  torch::manual_seed(4);
  std::vector<std::vector<torch::Tensor>> g;
  for (int k = 0; k < steps; ++k) g.push_back({torch::randn({4, 3}), torch::randn({5}), torch::randn({2, 2, 3})});
  return g;
}

void run_steps(Optimizer& opt, std::vector<torch::Tensor>& params, const std::vector<std::vector<torch::Tensor>>& grads,
               int from, int to) {
  for (int k = from; k < to; ++k) {
    opt.set_lr_factor(1.0 - 0.1 * k);  // a changing lr, as under a schedule
    for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads[size_t(k)][i].clone();
    opt.step();
    opt.zero_grad();
  }
}

class OptimizerVsPyTorch : public TempDirTest, public ::testing::WithParamInterface<OptimizerCase> {};

TEST_P(OptimizerVsPyTorch, BitForBit) {
  const auto& c = GetParam();
  constexpr int kSteps = 6;
  std::vector<torch::Tensor> params;
  Optimizer opt(c.options, make_groups(params));
  io::StateDict inputs;
  for (size_t i = 0; i < params.size(); ++i) inputs.emplace_back("p" + std::to_string(i), params[i].detach().clone());
  auto grads = make_grads(kSteps);
  for (int k = 0; k < kSteps; ++k)
    for (size_t i = 0; i < 3; ++i) inputs.emplace_back("g" + std::to_string(k) + "_" + std::to_string(i), grads[k][i]);
  io::write_state_dict(inputs, path("in.pth"));
  run_steps(opt, params, grads, 0, kSteps);

  const auto& o = c.options;
  std::string args = std::string(o.type == OptimizerType::kSgd ? "sgd" : "adamw") + " " + std::to_string(o.momentum) +
                     " " + (o.nesterov ? "1" : "0") + " " + std::to_string(o.beta1) + " " + std::to_string(o.beta2) +
                     " " + std::to_string(o.eps);
  auto r = run_command(std::string(FACETRAIN_TEST_PYTHON) +
                       " " FACETRAIN_SOURCE_DIR "/tests/python/optimizer_reference.py " + path("in.pth") + " " +
                       path("out.pth") + " " + std::to_string(kSteps) + " " + args);
  ASSERT_EQ(r.status, 0) << r.output;
  auto expected = io::read_state_dict(path("out.pth"));
  ASSERT_EQ(expected.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(torch::equal(params[i].detach(), expected[i].second))
        << c.name << " p" << i << " max diff " << (params[i].detach() - expected[i].second).abs().max().item<double>();
  }
}

OptimizerOptions sgd(bool nesterov) {
  OptimizerOptions o;
  o.nesterov = nesterov;
  return o;
}
OptimizerOptions adamw() {
  OptimizerOptions o;
  o.type = OptimizerType::kAdamW;
  o.beta1 = 0.8;
  o.beta2 = 0.99;
  o.eps = 1e-6;
  return o;
}

INSTANTIATE_TEST_SUITE_P(Train, OptimizerVsPyTorch,
                         ::testing::Values(OptimizerCase{"sgd", sgd(false)}, OptimizerCase{"nesterov", sgd(true)},
                                           OptimizerCase{"adamw", adamw()}),
                         [](const auto& info) { return std::string(info.param.name); });

// Partial FC's optimizer: a parameter updated in some rows only (set_rows before each step).
// Every row selected is the dense update bit for bit; a subset is, in those rows, the dense update
// of a parameter made of those rows alone, and leaves the other rows and their slots untouched.
TEST(Optimizer, SetRowsUpdatesThoseRowsAloneAndLeavesTheOthersUntouched) {
  constexpr int kSteps = 4;
  auto grads = make_grads(kSteps);
  for (const auto& options : {sgd(false), sgd(true), adamw()}) {
    const std::string what = options.type == OptimizerType::kSgd ? (options.nesterov ? "nesterov" : "sgd") : "adamw";
    std::vector<torch::Tensor> dense_p, all_p, some_p;
    Optimizer dense(options, make_groups(dense_p)), all(options, make_groups(all_p)), some(options, make_groups(some_p));
    const torch::Tensor initial = some_p[0].detach().clone();
    const torch::Tensor rows = torch::tensor({1, 3}, torch::kLong), others = torch::tensor({0, 2}, torch::kLong);
    // A parameter of rows 1 and 3 alone, in group "a" (the same lr and weight decay).
    torch::Tensor alone = initial.index_select(0, rows).clone().set_requires_grad(true);
    Optimizer single(options, {{"a", {{"p0", alone}}, 0.1, 5e-4}});
    for (int k = 0; k < kSteps; ++k) {
      for (auto* o : {&dense, &all, &some, &single}) o->set_lr_factor(1.0 - 0.1 * k);
      for (size_t i = 0; i < 3; ++i) {
        dense_p[i].mutable_grad() = grads[size_t(k)][i].clone();
        all_p[i].mutable_grad() = grads[size_t(k)][i].clone();
        some_p[i].mutable_grad() = grads[size_t(k)][i].clone();
      }
      alone.mutable_grad() = grads[size_t(k)][0].index_select(0, rows);
      all.set_rows("p0", torch::arange(4));
      some.set_rows("p0", torch::tensor({0}, torch::kLong));
      some.set_rows("p0", rows);  // the latest call wins
      for (auto* o : {&dense, &all, &some, &single}) {
        o->step();
        o->zero_grad();
      }
      for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(all_p[i], dense_p[i])) << what << " all rows, p" << i;
      EXPECT_TRUE(torch::equal(some_p[0].index_select(0, rows), alone)) << what << " step " << k;
      EXPECT_TRUE(torch::equal(some_p[0].index_select(0, others), initial.index_select(0, others))) << what;
      EXPECT_TRUE(torch::equal(some_p[1], dense_p[1])) << what << " the other parameters: dense";
    }
    // The state: all rows = dense; the subset's slots are zero outside its rows, the lone
    // parameter's inside them.
    auto d = dense.state_dict(), a = all.state_dict(), s = some.state_dict(), one = single.state_dict();
    ASSERT_EQ(a.size(), d.size());
    for (size_t i = 0; i < d.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, d[i].second)) << what << d[i].first;
    for (const auto& [name, t] : s) {
      if (name.rfind("p0.", 0) != 0) continue;
      if (name == "p0.step") {
        EXPECT_EQ(t.item<int64_t>(), kSteps) << what;
        continue;
      }
      EXPECT_EQ(t.index_select(0, others).abs().max().item<double>(), 0.0) << what << " " << name;
      bool found = false;
      for (const auto& [n1, t1] : one) {
        if (n1 != name) continue;
        found = true;
        EXPECT_TRUE(torch::equal(t.index_select(0, rows), t1)) << what << " " << name;
      }
      EXPECT_TRUE(found) << name;
    }
    EXPECT_THROW(some.set_rows("nope", rows), ArgumentError);
  }
}

// Rows that change from step to step: a row left out keeps its value and momentum.
TEST(Optimizer, SetRowsFreezesARowWhileItIsLeftOut) {
  std::vector<torch::Tensor> p;
  Optimizer opt(sgd(false), make_groups(p));
  auto grads = make_grads(2);
  for (size_t i = 0; i < 3; ++i) p[i].mutable_grad() = grads[0][i].clone();
  opt.set_rows("p0", torch::tensor({0, 1}, torch::kLong));
  opt.step();
  const torch::Tensor row0 = p[0][0].detach().clone();
  const torch::Tensor mom0 = opt.state_dict()[0].second[0].clone();
  EXPECT_EQ(opt.state_dict()[0].first, "p0.momentum_buffer");
  EXPECT_GT(mom0.abs().max().item<double>(), 0.0);
  for (size_t i = 0; i < 3; ++i) p[i].mutable_grad() = grads[1][i].clone();
  opt.set_rows("p0", torch::tensor({1, 2}, torch::kLong));
  opt.step();
  EXPECT_TRUE(torch::equal(p[0][0], row0));
  EXPECT_TRUE(torch::equal(opt.state_dict()[0].second[0], mom0));
  EXPECT_FALSE(torch::equal(opt.state_dict()[0].second[2], torch::zeros({3})));
}

TEST(Optimizer, StateRoundTripContinuesExactly) {
  for (const auto& options : {sgd(false), adamw()}) {
    auto grads = make_grads(6);
    std::vector<torch::Tensor> a, b;
    Optimizer straight(options, make_groups(a));
    run_steps(straight, a, grads, 0, 6);

    Optimizer first(options, make_groups(b));
    run_steps(first, b, grads, 0, 3);
    auto state = first.state_dict();
    std::vector<torch::Tensor> c;
    Optimizer second(options, make_groups(c));
    for (size_t i = 0; i < c.size(); ++i) {
      torch::NoGradGuard no_grad;
      c[i].copy_(b[i]);
    }
    second.load_state_dict(state, "memory");
    run_steps(second, c, grads, 3, 6);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], c[i])) << i;
  }
}

TEST(Optimizer, RefusesStateOfAnotherModel) {
  std::vector<torch::Tensor> p;
  Optimizer opt(sgd(false), make_groups(p));
  auto unknown = error_message<DataError>([&] {
    opt.load_state_dict({{"q9.momentum_buffer", torch::zeros({2})}}, "ck.ckpt");
  });
  EXPECT_NE(unknown.find("ck.ckpt"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("'q9.momentum_buffer' names no parameter"), std::string::npos) << unknown;
  auto shape = error_message<DataError>([&] {
    opt.load_state_dict({{"p0.momentum_buffer", torch::zeros({3, 4})}}, "ck.ckpt");
  });
  EXPECT_NE(shape.find("shape [3, 4], the parameter [4, 3]"), std::string::npos) << shape;
  auto slot = error_message<DataError>([&] { opt.load_state_dict({{"p0.exp_avg", torch::zeros({4, 3})}}, "ck"); });
  EXPECT_NE(slot.find("not a state of the sgd optimizer"), std::string::npos) << slot;
  EXPECT_THROW(Optimizer(sgd(false), {{"a", {{"x", p[0]}, {"x", p[1]}}, 0.1, 0}}), ArgumentError);
}

// --- checkpoints --------------------------------------------------------------------------------

Checkpoint sample_checkpoint() {
  Checkpoint c;
  c.facetrain_version = "0.1.0";
  c.torch_version = "1.13.1";
  c.config = "model: {type: mbf}\n";
  c.step = 200;
  c.epoch = 3;
  c.epoch_batch = 17;
  c.steps_per_epoch = 61;
  c.backbone_type = "mobilefacenet";
  c.head_type = "arcface";
  c.num_classes = 10;
  c.embedding_size = 4;
  c.backbone = {{"features.weight", torch::arange(4, torch::kFloat)},
                {"features.num_batches_tracked", torch::tensor(7)}};
  c.head = {{"weight", torch::ones({10, 4})}};
  c.optimizer = {{"backbone.features.weight.momentum_buffer", torch::full({4}, 0.5)}};
  c.scaler = {{"scale", torch::tensor(1024.0, torch::kDouble)}};
  c.rng = {{"cpu", torch::arange(16, torch::kByte)}};
  c.run = {{"bad_steps_in_row", torch::tensor(int64_t{2})}};
  return c;
}

TEST_F(TempDirTest, CheckpointRoundTripAndTorchLoad) {
  const auto file = path(checkpoint_name(200));
  EXPECT_EQ(checkpoint_name(200), "step_000200.ckpt");
  EXPECT_EQ(checkpoint_name(12345678), "step_12345678.ckpt");
  write_checkpoint(sample_checkpoint(), file);
  EXPECT_TRUE(is_checkpoint(file));
  auto c = read_checkpoint(file);
  EXPECT_EQ(c.step, 200);
  EXPECT_EQ(c.epoch, 3);
  EXPECT_EQ(c.epoch_batch, 17);
  EXPECT_EQ(c.steps_per_epoch, 61);
  EXPECT_EQ(c.config, "model: {type: mbf}\n");
  EXPECT_EQ(c.head_type, "arcface");
  ASSERT_EQ(c.backbone.size(), 2u);
  EXPECT_TRUE(torch::equal(c.backbone[0].second, torch::arange(4, torch::kFloat)));
  EXPECT_EQ(c.backbone[1].second.item<int64_t>(), 7);
  EXPECT_TRUE(torch::equal(c.rng[0].second, torch::arange(16, torch::kByte)));
  EXPECT_EQ(c.scaler[0].second.item<double>(), 1024.0);

  // PyTorch reads it as a dict: torch.load(f)["state_dict_backbone"] is a state dict.
  auto r = run_command(std::string(FACETRAIN_TEST_PYTHON) + " -c \"import torch; d = torch.load('" + file +
                       "'); print(d['format'], d['version'], d['step'], d['epoch_batch'], "
                       "d['state_dict_backbone']['features.weight'].tolist(), d['state_dict_head']['weight'].shape)\"");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("facetrain.checkpoint 1 200 17 [0.0, 1.0, 2.0, 3.0] torch.Size([10, 4])"), std::string::npos)
      << r.output;
}

TEST_F(TempDirTest, CheckpointRefusals) {
  io::write_state_dict({{"w", torch::ones({2})}}, path("plain.pth"));
  EXPECT_FALSE(is_checkpoint(path("plain.pth")));
  auto plain = error_message<DataError>([&] { read_checkpoint(path("plain.pth")); });
  EXPECT_NE(plain.find("plain.pth' is not a facetrain checkpoint but a plain state dict (use it with --finetune)"),
            std::string::npos)
      << plain;
  EXPECT_TRUE(torch::equal(read_backbone_weights(path("plain.pth"))[0].second, torch::ones({2})));

  auto newer = sample_checkpoint();
  newer.version = kCheckpointVersion + 1;
  write_checkpoint(newer, path("new.ckpt"));
  auto version = error_message<DataError>([&] { read_checkpoint(path("new.ckpt")); });
  EXPECT_NE(version.find("format version 2; this facetrain reads versions 1 to 1"), std::string::npos) << version;

  write_checkpoint(sample_checkpoint(), path("good.ckpt"));
  auto bytes = testing::slurp(path("good.ckpt"));
  for (size_t cut : {size_t{10}, bytes.size() / 2, bytes.size() - 5}) {
    spit(path("cut.ckpt"), bytes.substr(0, cut));
    EXPECT_FALSE(is_checkpoint(path("cut.ckpt")));
    auto message = error_message<DataError>([&] { read_checkpoint(path("cut.ckpt")); });
    EXPECT_NE(message.find("cut.ckpt"), std::string::npos) << message;
  }
  auto missing = error_message<DataError>([&] { read_checkpoint(path("none.ckpt")); });
  EXPECT_NE(missing.find("none.ckpt"), std::string::npos) << missing;
}

TEST_F(TempDirTest, CheckpointListingAndPruning) {
  for (int64_t step : {300, 20, 1000, 100}) write_checkpoint(sample_checkpoint(), path(checkpoint_name(step)));
  spit(path("step_002000.ckpt.tmp.999"), "partial");  // an interrupted write
  spit(path("notes.txt"), "x");
  auto all = list_checkpoints(dir_.string());
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all.front(), path("step_000020.ckpt"));
  EXPECT_EQ(all.back(), path("step_001000.ckpt"));
  auto deleted = prune_checkpoints(dir_.string(), 2);
  EXPECT_EQ(deleted.size(), 3u);  // the temporary and the two oldest
  EXPECT_EQ(list_checkpoints(dir_.string()),
            (std::vector<std::string>{path("step_000300.ckpt"), path("step_001000.ckpt")}));
  EXPECT_TRUE(std::filesystem::exists(path("notes.txt")));
}

}  // namespace
}  // namespace facetrain::train
