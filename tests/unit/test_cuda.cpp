// The GPU tests. Every test here is named *_CUDA and is skipped (GTEST_SKIP) where LibTorch sees
// no CUDA device, so CI (CPU only) builds and lists them and a GPU machine runs them:
//   ctest --test-dir build -R _CUDA
// What they check on the GPU: the allocator statistics (facetrain_cuda), every head plain and
// chunked against the CPU in float64, the trainer with bf16 autocast and with fp16 loss scaling
// in channels-last (the loss falls, the scale is kept), float32 training on CUDA against the CPU,
// pinned loader batches, and `facetrain bench train` / `bench head` reporting GPU memory.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data_testing.h"
#include "facetrain/core/memory.h"
#include "facetrain/data/dataset.h"
#include "facetrain/data/loader.h"
#include "facetrain/heads.h"
#include "facetrain/train/bench.h"
#include "facetrain/train/recipe.h"
#include "facetrain/train/trainer.h"
#include "head_testing.h"

namespace facetrain::testing {
namespace {

#define FACETRAIN_REQUIRE_CUDA()                                              \
  do {                                                                        \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here"; \
  } while (0)

const torch::Device kGpu(torch::kCUDA, 0);

// The tiny recipe of test_trainer.cpp, on the GPU.
std::string tiny(const std::string& train_extra, const std::string& head = "{type: cosface, scale: 16, margin: 0.1}") {
  return "model: {type: mobilefacenet, embedding_size: 16, scale: 1, blocks: [1, 1, 1, 1]}\n"
         "head: " + head + "\n"
         "data: {type: synthetic, identities: 4, images_per_identity: 6, workers: 2}\n"
         "train: {max_steps: 30, batch_size: 4, device: cuda, seed: 1" + train_extra + "}\n"
         "optimizer: {lr: 0.05}\n"
         "log: {every_steps: 1, tensorboard: false}\n"
         "checkpoint: {every_steps: 0}\n";
}

train::Recipe recipe(const std::string& text, const std::string& out, const std::vector<std::string>& sets = {}) {
  auto doc = config::Document::from_string(text, "tiny_cuda.yaml");
  for (const auto& s : sets) doc.set(s);
  return train::read_recipe(doc, out);
}

std::vector<nlohmann::json> metrics(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

double mean_loss(const std::vector<nlohmann::json>& m, size_t from, size_t n) {
  double s = 0;
  for (size_t i = from; i < from + n; ++i) s += m.at(i)["loss"].get<double>();
  return s / double(n);
}

train::RunOptions at(const std::string& dir) {
  train::RunOptions o;
  o.output_dir = dir;
  return o;
}

TEST(CudaMemory, CountsWhatIsAllocated_CUDA) {
  FACETRAIN_REQUIRE_CUDA();
  ASSERT_TRUE(device_memory_readable()) << "a CUDA LibTorch must build facetrain_cuda (FACETRAIN_CUDA=ON)";
  const int64_t before = device_allocated_bytes(0);
  reset_device_peak(0);
  const int64_t bytes = 64 << 20;
  {
    auto t = torch::empty({bytes / 4}, torch::TensorOptions().dtype(torch::kFloat).device(kGpu));
    EXPECT_GE(device_allocated_bytes(0) - before, bytes);
  }
  EXPECT_LT(device_allocated_bytes(0) - before, bytes);  // freed to the cache, not counted
  EXPECT_GE(device_peak_bytes(0) - before, bytes);
  reset_device_peak(0);
  EXPECT_LT(device_peak_bytes(0) - before, bytes);
}

// Every head and variant on the GPU in float64, plain and chunked, against the CPU: the same
// loss, gradients and buffers (the kernels differ, so to 1e-10, not bit for bit).
class CudaHeads : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaHeads, PlainAndChunkedMatchTheCpu_CUDA) {
  FACETRAIN_REQUIRE_CUDA();
  const std::string yaml = GetParam();
  const int64_t B = 24, D = 16, C = 40;
  auto in = make_inputs(B, D, C, 5, torch::kDouble);
  for (int64_t chunk : {0, 7}) {
    auto [cpu, gpu] = twin_heads(yaml, D, C, 4);
    gpu->to(kGpu);
    for (int call = 0; call < 2; ++call) {
      const std::string where = yaml + (chunk ? ", chunk 7" : ", plain") + ", call " + std::to_string(call);
      auto x1 = in.x.clone().requires_grad_(true);
      auto x2 = in.x.to(kGpu, /*non_blocking=*/false, /*copy=*/true).requires_grad_(true);
      auto y2 = in.y.to(kGpu);
      cpu->zero_grad();
      gpu->zero_grad();
      auto l1 = chunk ? cpu->chunked_cross_entropy(x1, in.y, chunk)
                      : torch::nn::functional::cross_entropy(cpu->forward(x1, in.y), in.y);
      auto l2 = chunk ? gpu->chunked_cross_entropy(x2, y2, chunk)
                      : torch::nn::functional::cross_entropy(gpu->forward(x2, y2), y2);
      l1.backward();
      l2.backward();
      EXPECT_TRUE(l2.is_cuda()) << where;
      EXPECT_NEAR(l2.item<double>(), l1.item<double>(), 1e-10 * std::max(1.0, std::abs(l1.item<double>()))) << where;
      EXPECT_TRUE(close(x2.grad().cpu(), x1.grad(), 1e-10, where + " d/dx"));
      auto p1 = cpu->named_parameters(), p2 = gpu->named_parameters();
      for (const auto& p : p1) EXPECT_TRUE(close(p2[p.key()].grad().cpu(), p.value().grad(), 1e-10, where + " d/d" + p.key()));
      auto b1 = buffers_of(*cpu), b2 = buffers_of(*gpu);
      for (const auto& [name, v] : b1) EXPECT_TRUE(close(b2.at(name).cpu(), v, 1e-10, where + " buffer " + name));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryHead, CudaHeads, ::testing::ValuesIn(every_head_variant()),
                         [](const auto& info) { return "case" + std::to_string(info.index); });

using CudaTrainer = TempDirTest;

// bf16 autocast and fp16 with dynamic loss scaling, both channels-last: 30 steps of the tiny
// recipe, the loss falls as it does in float32 on the CPU (Trainer_.LossFallsAndOutputsAreWritten).
TEST_F(CudaTrainer, MixedPrecisionChannelsLastTrains_CUDA) {
  FACETRAIN_REQUIRE_CUDA();
  for (const std::string amp : {"bf16", "fp16"}) {
    const std::string dir = path(amp);
    train::Trainer trainer(recipe(tiny(", amp: " + amp), dir, {"model.memory_format=channels_last"}), at(dir));
    EXPECT_TRUE(trainer.device().is_cuda());
    auto result = trainer.run();
    EXPECT_EQ(result.step, 30) << amp;
    auto m = metrics(dir);
    ASSERT_EQ(m.size(), 30u) << amp;
    const double first = mean_loss(m, 0, 5), last = mean_loss(m, 25, 5);
    EXPECT_TRUE(std::isfinite(last)) << amp;
    EXPECT_LT(last, 0.7 * first) << amp << ": first " << first << " last " << last;
    if (amp == "fp16") {
      ASSERT_TRUE(m.back().contains("loss_scale"));
      const double scale = m.back()["loss_scale"].get<double>();
      EXPECT_GT(scale, 1.0);
      EXPECT_LE(scale, 65536.0 * 2);
    } else {
      EXPECT_FALSE(m.back().contains("loss_scale"));
    }
  }
}

// float32 on the GPU (cuDNN autotuning off, and its TF32 convolutions, on by default as in
// PyTorch, off) follows the CPU run step for step.
TEST_F(CudaTrainer, Float32FollowsTheCpu_CUDA) {
  FACETRAIN_REQUIRE_CUDA();
  const bool tf32 = at::globalContext().allowTF32CuDNN();
  at::globalContext().setAllowTF32CuDNN(false);
  struct Restore {
    bool tf32;
    ~Restore() { at::globalContext().setAllowTF32CuDNN(tf32); }
  } restore{tf32};
  const std::vector<std::string> sets = {"train.max_steps=6", "train.cudnn_benchmark=false"};
  const std::string a = path("cpu"), b = path("gpu");
  std::vector<std::string> on_cpu = sets;
  on_cpu.push_back("train.device=cpu");
  train::Trainer cpu(recipe(tiny(""), a, on_cpu), at(a));
  train::Trainer gpu(recipe(tiny(""), b, sets), at(b));
  ASSERT_FALSE(cpu.device().is_cuda());
  ASSERT_TRUE(gpu.device().is_cuda());
  cpu.run();
  gpu.run();
  auto ma = metrics(a), mb = metrics(b);
  ASSERT_EQ(ma.size(), 6u);
  ASSERT_EQ(mb.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    const double la = ma[i]["loss"].get<double>(), lb = mb[i]["loss"].get<double>();
    EXPECT_NEAR(lb, la, 2e-3 * std::max(1.0, std::abs(la))) << "step " << i + 1;
  }
}

// data.pin_memory: batches come in page-locked host memory when a GPU is there (the trainer
// then copies them with non_blocking = true).
TEST_F(CudaTrainer, LoaderPinsBatches_CUDA) {
  FACETRAIN_REQUIRE_CUDA();
  for (const bool pin : {true, false}) {
    auto r = recipe(tiny(""), path("pin"), {std::string("data.pin_memory=") + (pin ? "true" : "false")});
    data::Loader loader(data::make_dataset(r.data.dataset), r.data.loader);
    loader.start_epoch(0);
    auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->images.is_pinned(), pin);
    EXPECT_FALSE(b->images.is_cuda());
  }
}

// bench train and bench head on the GPU read the allocator's peak (not the host's resident set).
TEST_F(CudaTrainer, BenchReportsGpuMemory_CUDA) {
  FACETRAIN_REQUIRE_CUDA();
  train::TrainBenchOptions o;
  o.steps = 3;
  o.warmup = 1;
  auto result = train::run_train_bench(recipe(tiny(", amp: bf16"), path("bench")), o, path("bench"));
  ASSERT_EQ(result.runs.size(), 2u);
  EXPECT_NE(result.device.find("cuda"), std::string::npos) << result.device;
  for (const auto& run : result.runs) {
    EXPECT_GT(run.img_per_sec, 0) << run.input;
    EXPECT_GT(run.peak_bytes, 0) << run.input;
    EXPECT_LT(run.peak_bytes, int64_t(4) << 30) << run.input;  // a 16-dim MobileFaceNet at batch 4
  }

  // The head's logits are [rows, classes] float32 at least once: the peak holds them.
  train::HeadBenchOptions h;
  h.num_classes = 200000;
  h.world_size = 1;
  h.batch_size = 64;
  h.embedding_size = 64;
  h.device = "cuda";
  auto plain = train::run_head_bench(h);
  h.chunk = 8192;
  auto chunked = train::run_head_bench(h);
  const int64_t logits = 64 * 200000 * 4;
  EXPECT_GT(plain.peak_bytes, logits);
  EXPECT_LT(chunked.peak_bytes, plain.peak_bytes);
}

}  // namespace
}  // namespace facetrain::testing
