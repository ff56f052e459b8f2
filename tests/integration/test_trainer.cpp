// Tiny end-to-end trainings on CPU (seconds each): the loss falls; a run resumed from a mid-epoch
// checkpoint ends bit-identical to the uninterrupted run; fine-tuning onto another class count;
// SIGTERM stops with a loadable checkpoint; a non-finite step is skipped, and too many in a row
// stop the run; periodic evaluation writes its records.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data_testing.h"
#include "facetrain/core/error.h"
#include "facetrain/eval/report.h"
#include "facetrain/io/state_dict.h"
#include "facetrain/train/checkpoint.h"
#include "facetrain/train/recipe.h"
#include "facetrain/train/trainer.h"

namespace facetrain::train {
namespace {

using testing::error_message;
using testing::TempDirTest;

// A MobileFaceNet cut to one unit per stage; synthetic faces drawn on the fly (6 steps an epoch).
std::string tiny(const std::string& extra = "", const std::string& head = "{type: cosface, scale: 16, margin: 0.2}") {
  return "model: {type: mobilefacenet, embedding_size: 16, scale: 1, blocks: [1, 1, 1, 1]}\n"
         "head: " +
         head +
         "\n"
         "data: {type: synthetic, identities: 4, images_per_identity: 6, workers: 2}\n"
         "train: {max_steps: 12, batch_size: 4, device: cpu, seed: 1}\n"
         "optimizer: {lr: 0.05}\n"
         "log: {every_steps: 1, tensorboard: false}\n"
         "checkpoint: {every_steps: 0}\n" +
         extra;
}

Recipe recipe(const std::string& text, const std::string& out, const std::vector<std::string>& sets = {}) {
  auto doc = config::Document::from_string(text, "tiny.yaml");
  for (const auto& s : sets) doc.set(s);
  return read_recipe(doc, out);
}

RunOptions at(const std::string& dir, const std::string& resume = "", const std::string& finetune = "") {
  RunOptions o;
  o.output_dir = dir;
  o.resume = resume;
  o.finetune = finetune;
  return o;
}

std::vector<nlohmann::json> metrics(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

void expect_same_tensors(const io::StateDict& a, const io::StateDict& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first) << what;
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << what << ": " << a[i].first;
  }
}

using Trainer_ = TempDirTest;

TEST_F(Trainer_, LossFallsAndOutputsAreWritten) {
  auto r = recipe(tiny("", "{type: cosface, scale: 16, margin: 0.1}"), path("run"),
                  {"train.max_steps=30", "log.tensorboard=true"});
  Trainer trainer(r, at(path("run")));
  EXPECT_EQ(trainer.steps_per_epoch(), 6);
  EXPECT_EQ(trainer.total_steps(), 30);
  auto result = trainer.run();
  EXPECT_EQ(result.step, 30);
  auto m = metrics(path("run"));
  ASSERT_EQ(m.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += m[size_t(i)]["loss"].get<double>() / 5;
    last += m[size_t(25 + i)]["loss"].get<double>() / 5;
  }
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
  for (const char* key : {"step", "epoch", "loss", "lr", "samples_per_sec"}) EXPECT_TRUE(m[0].contains(key)) << key;
  EXPECT_EQ(m.back()["step"], 30);
  EXPECT_EQ(m.back()["epoch"], 4);  // steps 25..30 are epoch 4 (from 0)
  EXPECT_TRUE(std::filesystem::exists(path("run/config.yaml")));
  EXPECT_TRUE(std::filesystem::exists(path("run/train.log")));
  EXPECT_TRUE(std::filesystem::exists(path("run/curves.png")));
  ASSERT_TRUE(std::filesystem::is_directory(path("run/tensorboard")));
  EXPECT_FALSE(std::filesystem::is_empty(path("run/tensorboard")));
  EXPECT_EQ(list_checkpoints(path("run/checkpoints")),
            (std::vector<std::string>{path("run/checkpoints/step_000030.ckpt")}));
  auto ckpt = read_checkpoint(result.checkpoint);
  EXPECT_EQ(ckpt.step, 30);
  EXPECT_EQ(ckpt.epoch, 4);
  EXPECT_EQ(ckpt.epoch_batch, 6);
  EXPECT_NE(ckpt.config.find("cosface"), std::string::npos);
}

struct ResumeCase {
  const char* name;
  std::string head;
  std::vector<std::string> sets;
};

class TrainerResume : public TempDirTest, public ::testing::WithParamInterface<ResumeCase> {};

// Step 8 is in the middle of epoch 1 (6 steps an epoch); the run goes to 16.
TEST_P(TrainerResume, MidEpochResumeIsBitIdentical) {
  const auto& c = GetParam();
  auto sets = c.sets;
  sets.push_back("train.max_steps=16");
  sets.push_back("checkpoint={every_steps: 8, keep_last: 0}");
  auto r = recipe(tiny("", c.head), path("a"), sets);
  auto whole = Trainer(r, at(path("a"))).run();
  ASSERT_EQ(whole.step, 16);
  ASSERT_EQ(list_checkpoints(path("a/checkpoints")).size(), 2u);
  const std::string mid = path("a/checkpoints/step_000008.ckpt");
  ASSERT_EQ(read_checkpoint(mid).epoch_batch, 2 * (r.train.grad_accum));

  auto resumed = Trainer(recipe(tiny("", c.head), path("b"), sets), at(path("b"), mid)).run();
  EXPECT_EQ(resumed.step, 16);
  EXPECT_EQ(resumed.steps_run, 8);
  auto a = read_checkpoint(path("a/checkpoints/step_000016.ckpt"));
  auto b = read_checkpoint(path("b/checkpoints/step_000016.ckpt"));
  expect_same_tensors(a.backbone, b.backbone, "backbone");
  expect_same_tensors(a.head, b.head, "head");
  expect_same_tensors(a.optimizer, b.optimizer, "optimizer");
  expect_same_tensors(a.rng, b.rng, "rng");
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.epoch_batch, b.epoch_batch);
  // The loss records after the resume point are the same numbers.
  auto ma = metrics(path("a")), mb = metrics(path("b"));
  ASSERT_EQ(mb.size(), 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(ma[8 + i]["loss"], mb[i]["loss"]) << i;
}

INSTANTIATE_TEST_SUITE_P(Train, TrainerResume,
                         ::testing::Values(ResumeCase{"sgd_arcface", "{type: arcface, scale: 16, margin: 0.2}", {}},
                                           ResumeCase{"adamw_curricularface_accum_bf16",
                                                      "{type: curricularface, scale: 16, margin: 0.2}",
                                                      {"optimizer={type: adamw, lr: 0.001, no_decay_bn_bias: true}",
                                                       "train.grad_accum=2", "train.amp=bf16", "train.batch_size=2",
                                                       "train.clip_grad_norm=1"}},
                                           ResumeCase{"adaface_cosine_warmup",
                                                      "{type: adaface, scale: 16}",
                                                      {"schedule={type: cosine, warmup: 3}"}},
                                           // 8 classes, 4 computed a step (every positive kept)
                                           ResumeCase{"partial_fc_arcface_sgd",
                                                      "{type: arcface, scale: 16, margin: 0.2, sample_rate: 0.5}",
                                                      {"data.identities=8", "data.images_per_identity=3"}},
                                           ResumeCase{"chunked_curricularface",
                                                      "{type: curricularface, scale: 16, chunk_size: 3}",
                                                      {"data.identities=8", "data.images_per_identity=3"}},
                                           ResumeCase{"partial_fc_curricularface_adamw_accum",
                                                      "{type: curricularface, scale: 16, sample_rate: 0.5}",
                                                      {"data.identities=8", "data.images_per_identity=3",
                                                       "optimizer={type: adamw, lr: 0.001}", "train.grad_accum=2",
                                                       "train.batch_size=2"}}),
                         [](const auto& info) { return std::string(info.param.name); });

// Partial FC in a run: a step of batch 4 over 16 classes at rate 0.25 computes 4 classes (the
// positives, then negatives up to 4): exactly 4 centres move, with weight decay on; the others and
// their momentum stay as they were.
TEST_F(Trainer_, PartialFcMovesOnlyTheSampledCentres) {
  auto r = recipe(tiny("", "{type: arcface, scale: 16, margin: 0.2, sample_rate: 0.25}"), path("run"),
                  {"data.identities=16", "train.max_steps=1", "optimizer.weight_decay=0.01"});
  Trainer trainer(r, at(path("run")));
  const torch::Tensor before = trainer.head().weight.detach().clone();
  auto result = trainer.run();
  ASSERT_EQ(result.step, 1);
  const torch::Tensor after = trainer.head().weight.detach();
  auto moved = (after != before).any(1);
  EXPECT_EQ(moved.sum().item<int64_t>(), 4) << moved;
  auto ckpt = read_checkpoint(result.checkpoint);
  for (const auto& [name, t] : ckpt.optimizer) {
    if (name != "head.weight.momentum_buffer") continue;
    EXPECT_TRUE(torch::equal(t.abs().sum(1) != 0, moved)) << "momentum only where the centres moved";
  }
  std::ifstream log(path("run/train.log"));
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Partial FC: sample_rate 0.25: at least 4 of the 16 classes"), std::string::npos) << text;
  EXPECT_NE(text.find("centre copies and optimizer temporaries"), std::string::npos);
}

// head.chunk_size: the chunked cross-entropy trains as the plain one (the same losses and
// weights up to float rounding), also with Partial FC. AdamW at a small constant lr, as in
// cli_dist: with SGD at lr 0.05 this tiny model is chaotic, and float rounding alone (1 against 2
// OpenMP threads) sets runs apart within a few steps.
TEST_F(Trainer_, ChunkedCrossEntropyTrainsAsThePlainOne) {
  for (const std::string extra : {"", ", sample_rate: 0.5"}) {
    const std::string head = "{type: curricularface, scale: 16, margin: 0.2" + extra;
    const std::vector<std::string> sets = {"data.identities=8", "train.max_steps=6",
                                           "optimizer={type: adamw, lr: 0.00002, weight_decay: 0}",
                                           "schedule={type: constant}"};
    const std::string a = path("plain" + std::to_string(extra.size())), b = path("chunked" + std::to_string(extra.size()));
    Trainer plain(recipe(tiny("", head + "}"), a, sets), at(a));
    Trainer chunked(recipe(tiny("", head + ", chunk_size: 3}"), b, sets), at(b));
    const torch::Tensor w0 = plain.head().weight.detach().clone();
    ASSERT_TRUE(torch::equal(w0, chunked.head().weight.detach()));
    plain.run();
    chunked.run();
    auto ma = metrics(a), mb = metrics(b);
    ASSERT_EQ(ma.size(), 6u);
    ASSERT_EQ(mb.size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
      const double la = ma[i]["loss"].get<double>(), lb = mb[i]["loss"].get<double>();
      EXPECT_NEAR(lb, la, 1e-4 * std::max(1.0, std::abs(la))) << head << " step " << i + 1;
    }
    // The centres moved, and moved alike: the runs differ by under 2 % of the largest move.
    auto wa = plain.head().weight.detach(), wb = chunked.head().weight.detach();
    const double moved = (wa - w0).abs().max().item<double>();
    EXPECT_GT(moved, 1e-5) << head;
    EXPECT_LT((wa - wb).abs().max().item<double>(), 0.02 * moved) << head;
    const double ta = plain.head().named_buffers()["t"].item<double>();
    EXPECT_NEAR(chunked.head().named_buffers()["t"].item<double>(), ta, 1e-4 * std::abs(ta)) << head;
  }
}

TEST_F(Trainer_, AutoResumeAfterTheEndTrainsNothingAndFreshRunRefusesOldCheckpoints) {
  auto r = recipe(tiny(), path("run"), {"train.max_steps=3"});
  Trainer(r, at(path("run"))).run();
  auto again = Trainer(r, at(path("run"), "auto")).run();
  EXPECT_EQ(again.steps_run, 0);
  EXPECT_EQ(again.step, 3);
  auto message = error_message<ConfigError>([&] { Trainer(r, at(path("run"))); });
  EXPECT_NE(message.find("already holds checkpoints"), std::string::npos) << message;
  EXPECT_NE(message.find("--resume auto"), std::string::npos) << message;
}

TEST_F(Trainer_, FinetuneLoadsTheBackboneOntoAnotherClassCount) {
  auto r = recipe(tiny(), path("a"), {"train.max_steps=3"});
  auto done = Trainer(r, at(path("a"))).run();
  auto source = read_checkpoint(done.checkpoint);

  auto six = recipe(tiny(), path("b"), {"data.identities=6"});
  Trainer from_ckpt(six, at(path("b"), "", done.checkpoint));
  EXPECT_EQ(from_ckpt.head().weight.size(0), 6);
  expect_same_tensors(io::module_state_dict(from_ckpt.backbone()), source.backbone, "backbone from .ckpt");

  io::write_state_dict(source.backbone, path("backbone.pth"));
  Trainer from_pth(recipe(tiny(), path("c"), {"data.identities=6"}), at(path("c"), "", path("backbone.pth")));
  expect_same_tensors(io::module_state_dict(from_pth.backbone()), source.backbone, "backbone from .pth");
  EXPECT_EQ(from_pth.run().step, 12);

  auto wrong = recipe(tiny(), path("d"), {"model.embedding_size=8"});
  auto message = error_message<DataError>([&] { Trainer(wrong, at(path("d"), "", path("backbone.pth"))); });
  EXPECT_NE(message.find("backbone.pth"), std::string::npos) << message;
  EXPECT_NE(message.find("shape"), std::string::npos) << message;
}

TEST_F(Trainer_, SigtermFinishesTheStepAndCheckpoints) {
  auto r = recipe(tiny(), path("run"));
  Trainer trainer(r, at(path("run")));
  trainer.set_step_hook([](StepContext& c) {
    if (c.step == 4) std::raise(SIGTERM);  // arrives in the middle of the fifth step
  });
  auto result = trainer.run();
  EXPECT_EQ(result.signal, SIGTERM);
  EXPECT_EQ(result.step, 5);
  ASSERT_EQ(result.checkpoint, path("run/checkpoints/step_000005.ckpt"));
  EXPECT_EQ(read_checkpoint(result.checkpoint).step, 5);
  EXPECT_EQ(std::signal(SIGTERM, SIG_DFL), SIG_DFL);  // the handler was removed again

  auto rest = Trainer(r, at(path("run"), "auto")).run();
  EXPECT_EQ(rest.signal, 0);
  EXPECT_EQ(rest.steps_run, 7);
}

TEST_F(Trainer_, NonFiniteStepIsSkippedAndTooManyStopTheRun) {
  auto r = recipe(tiny(), path("run"), {"train.max_steps=6"});
  Trainer trainer(r, at(path("run")));
  io::StateDict before_bad;
  trainer.set_step_hook([&](StepContext& c) {
    if (c.step == 2) {
      before_bad = io::module_state_dict(*c.backbone);
      for (auto& t : before_bad) t.second = t.second.clone();
      c.backbone->named_parameters()[0].value().mutable_grad().view(-1)[0] = std::nan("");
    }
    if (c.step == 3) {  // the skipped step changed no parameter (BatchNorm statistics move in forward)
      auto now = io::module_state_dict(*c.backbone);
      for (size_t i = 0; i < now.size(); ++i) {
        if (now[i].first.find("running") == std::string::npos &&
            now[i].first.find("num_batches") == std::string::npos) {
          EXPECT_TRUE(torch::equal(now[i].second, before_bad[i].second)) << now[i].first;
        }
      }
    }
  });
  auto result = trainer.run();
  EXPECT_EQ(result.step, 6);
  EXPECT_EQ(result.skipped_steps, 1);
  auto log = testing::slurp(path("run/train.log"));
  EXPECT_NE(log.find("step 3: skipped, the gradient of backbone."), std::string::npos) << log;
  for (const auto& [name, t] : io::module_state_dict(trainer.backbone())) {
    if (t.is_floating_point()) {
      EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
    }
  }

  Trainer always(recipe(tiny(), path("bad"), {"train.max_bad_steps=3"}), at(path("bad")));
  always.set_step_hook([](StepContext& c) { c.head->weight.mutable_grad().fill_(INFINITY); });
  auto message = error_message<Error>([&] { always.run(); });
  EXPECT_NE(
      message.find("stopping at step 3: 3 steps in a row were not finite (the last: the gradient of head.weight)"),
      std::string::npos)
      << message;
}

TEST_F(Trainer_, PeriodicEvaluationOnSynthesizedPairs) {
  auto text = tiny(R"(eval: {targets: ['{output}/synth/synth_val.bin'], every_steps: 2, batch_size: 8}
)");
  auto r = recipe(text, path("run"),
                  {"data={path: '{output}/synth', workers: 1, synthesize: {identities: 4, images_per_identity: 6, "
                   "val_identities: 4, val_pairs: 20}}",
                   "train.max_steps=4"});
  Trainer trainer(r, at(path("run")));
  eval::EmbedOptions embed;
  embed.batch_size = r.eval.batch_size;
  trainer.set_evaluator(std::make_shared<eval::VerificationEvaluator>(r.eval.targets, embed));
  auto result = trainer.run();
  auto m = metrics(path("run"));
  int evals = 0;
  for (const auto& line : m) {
    if (!line.contains("eval")) continue;
    ++evals;
    const auto& s = line["eval"]["synth_val"];
    EXPECT_EQ(s["pairs"], 20);
    EXPECT_GE(s["accuracy"].get<double>(), 0.0);
    EXPECT_LE(s["accuracy"].get<double>(), 1.0);
  }
  EXPECT_EQ(evals, 2);  // at step 2, and at the end
  ASSERT_TRUE(result.last_eval.sets.contains("synth_val"));
  EXPECT_TRUE(std::filesystem::exists(path("run/synth/train.rec")));
}

}  // namespace
}  // namespace facetrain::train
