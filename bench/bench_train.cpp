// Training step time: one Trainer::step (forward, margin head, cross-entropy, backward, the
// non-finite guard, gradient clipping, SGD) on a fixed random batch, as `facetrain --config` runs
// it minus the data loading (which overlaps the step on worker threads).
//
//   build/bench/facetrain_bench_train --benchmark_min_time=5
// env: FACETRAIN_BENCH_MODEL (default mobilefacenet), FACETRAIN_BENCH_HEAD (arcface),
// FACETRAIN_BENCH_BATCH (32), FACETRAIN_BENCH_CLASSES (1000), FACETRAIN_BENCH_AMP (none | bf16).
// bench/compare_train.sh runs it beside the same step in PyTorch (bench/python_train_step.py);
// results: docs/benchmarks.md.

#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <unistd.h>
#include <cstdlib>
#include <filesystem>

#include "bench_main.h"

#include "facetrain/config/reader.h"
#include "facetrain/train/recipe.h"
#include "facetrain/train/trainer.h"

namespace {

std::string env_text(const char* name, const char* fallback) {
  const char* env = std::getenv(name);
  return env ? env : fallback;
}

void BM_TrainStep(benchmark::State& state) {
  const int64_t batch = std::atoll(env_text("FACETRAIN_BENCH_BATCH", "32").c_str());
  const std::string classes = env_text("FACETRAIN_BENCH_CLASSES", "1000");
  const std::string out =
      (std::filesystem::temp_directory_path() / ("facetrain_bench_train_" + std::to_string(::getpid()))).string();
  const std::string yaml =
      "model: {type: " + env_text("FACETRAIN_BENCH_MODEL", "mobilefacenet") +
      "}\nhead: {type: " + env_text("FACETRAIN_BENCH_HEAD", "arcface") +
      "}\ndata: {type: synthetic, identities: " + classes +
      ", images_per_identity: 1, workers: 1}\ntrain: {max_steps: 1000000000, batch_size: " + std::to_string(batch) +
      ", device: cpu, clip_grad_norm: 5, amp: " + env_text("FACETRAIN_BENCH_AMP", "none") +
      "}\noptimizer: {type: sgd, lr: 0.1, momentum: 0.9, weight_decay: 5.0e-4}\n"
      "log: {tensorboard: false}\ncheckpoint: {every_steps: 0}\n";
  auto recipe = facetrain::train::read_recipe(facetrain::config::Document::from_string(yaml, "bench"), out);
  spdlog::set_level(spdlog::level::warn);  // the trainer's log would mix into the benchmark's output
  facetrain::train::RunOptions run;
  run.output_dir = out;
  run.handle_signals = false;
  {
    facetrain::train::Trainer trainer(recipe, run);
    torch::manual_seed(0);
    facetrain::data::Batch fixed;
    fixed.images = torch::rand({batch, 3, 112, 112}) * 2 - 1;
    fixed.labels = torch::randint(trainer.head().geometry().num_classes, {batch}, torch::kLong);
    fixed.valid = batch;
    auto next = [&] { return fixed; };
    trainer.step(next);  // warm-up
    for (auto _ : state) benchmark::DoNotOptimize(trainer.step(next).loss);
    state.SetItemsProcessed(state.iterations() * batch);
    state.counters["batch"] = double(batch);
  }
  std::filesystem::remove_all(out);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("BM_TrainStep", BM_TrainStep)->UseRealTime()->Unit(benchmark::kMillisecond);
  return facetrain::bench::run_benchmarks(argc, argv);
}
