#pragma once
// `facetrain bench head`: what one rank's margin head costs in a training step, measured. The
// process builds the class shard that rank 0 of `world_size` ranks holds (the largest), the
// gathered embeddings of the global batch (batch_size x world_size rows) and their labels, and
// runs `steps` training steps of the head alone: (Partial FC sample), forward, the distributed
// cross-entropy (or the chunked one), backward, the optimizer. That is every tensor a rank's head step allocates; the
// collectives, which exchange [B_global]-sized vectors, are all that is left out. It reports the
// peak resident memory over the steps (above what the process held before), the estimate the
// trainer prints at its start (dist::plan_memory), and the time per step.
//
// Example:
//   facetrain::train::HeadBenchOptions o;
//   o.num_classes = 1000000; o.world_size = 8; o.sample_rate = 0.1;
//   auto r = facetrain::train::run_head_bench(o);
//   std::puts(r.describe().c_str());

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "facetrain/dist/model_parallel.h"
#include "facetrain/train/recipe.h"

namespace facetrain::train {

struct HeadBenchOptions {
  std::string head = "{type: arcface}";  ///< a YAML head mapping (heads/registry.h)
  int64_t num_classes = 1000000;         ///< C, over all ranks
  int64_t world_size = 8;                ///< ranks the classes are split over; this process is rank 0
  int64_t batch_size = 128;              ///< per rank; the head sees batch_size x world_size rows
  int64_t embedding_size = 512;          ///< D
  double sample_rate = 1.0;              ///< Partial FC (head.sample_rate)
  int64_t chunk = 0;                     ///< head.chunk_size: the chunked cross-entropy's block; 0 plain
  OptimizerType optimizer = OptimizerType::kSgd;  ///< SGD with momentum 0.9, or AdamW
  bool step_optimizer = true;  ///< false: forward and backward alone (the head and its cross-entropy)
  int64_t steps = 2;
  uint64_t seed = 0;
  std::string device = "cpu";  ///< cpu | cuda | cuda:N (then the peak is the CUDA allocator's)

  /// Problems with these values, each naming its --option.
  config::OptionProblems problems() const;
  std::string describe() const;
};

struct HeadBenchResult {
  HeadBenchOptions options;
  int64_t local_classes = 0;    ///< the shard's classes
  int64_t rows = 0;             ///< B_global
  int64_t sampled_classes = 0;  ///< classes in the last step's logits
  int64_t peak_bytes = 0;       ///< peak memory during the steps above the start: resident (CPU), allocator (CUDA)
  bool peak_exact = true;       ///< false when the kernel refused to reset VmHWM (then from process start)
  dist::MemoryPlan plan;        ///< the trainer's estimate for the same rank
  double seconds_per_step = 0;  ///< mean over the steps after the first (the first allocates state)

  /// "1000000 classes / 8 ranks (125000 here), 1024 rows, D 512, sample_rate 1: peak 2.61 GiB
  /// (estimate 2.58 GiB), 1.93 s per step"
  std::string describe() const;
  nlohmann::json to_json() const;
};

/// Runs the measurement on options.device. Throws ArgumentError for options with problems (and for
/// a CUDA device in a build or on a machine without one).
HeadBenchResult run_head_bench(const HeadBenchOptions& options);
/// The trainer's estimate (dist::plan_memory) for the rank run_head_bench measures.
dist::MemoryPlan head_bench_plan(const HeadBenchOptions& options);

// `facetrain bench train --config recipe.yaml`: the recipe's whole training step (Trainer::step:
// backbone, head, loss, backward, gradient sums, clipping, optimizer), timed on its device, fed
// two ways in one run: `memory`, one batch from the recipe's data given again and again (no
// decoding, no augmentation), and `loader`, the recipe's data loader as training reads it. Their
// ratio is how far the input pipeline holds the step back.
//
// FLOPs per image: 6 x (the backbone's convolution and linear multiply-adds at 112x112, as
// `facetrain model summary` counts them, plus D x C_rank for the head's cosine matrix): forward
// once, backward twice, 2 FLOPs a multiply-add. MFU = FLOPs per image x img/s / peak, with the
// device's dense peak for the step's precision given as --peak-tflops (none known on a CPU).

struct TrainBenchOptions {
  std::string input = "both";  ///< memory | loader | both
  int64_t steps = 20;          ///< timed steps per input
  int64_t warmup = 3;          ///< steps before timing (allocations, autotuning)
  double peak_tflops = 0;      ///< the device's peak, for MFU; 0: not reported

  config::OptionProblems problems() const;
};

struct TrainBenchRun {
  std::string input;             ///< memory | loader
  double img_per_sec = 0;        ///< images of all ranks per second
  double step_seconds = 0;       ///< median
  double step_seconds_p90 = 0;   ///< 90th percentile
  int64_t peak_bytes = 0;        ///< CPU: resident peak over the run's start; CUDA: allocator peak (max_memory_allocated)
};

struct TrainBenchResult {
  std::string device, model, head;
  std::string amp;  ///< none | bf16 | fp16 (train.amp)
  int64_t batch_size = 0, world_size = 1, local_classes = 0;
  double flops_per_image = 0;
  double peak_tflops = 0;
  std::vector<TrainBenchRun> runs;

  /// The MFU of a run, or a negative number when no peak was given.
  double mfu(const TrainBenchRun& run) const;
  /// A table, one row per input, and the loader / memory ratio when both ran.
  std::string describe() const;
  nlohmann::json to_json() const;
};

/// Builds a Trainer for `recipe` with `scratch_dir` as its output (nothing is checkpointed) and
/// times its steps. `progress(done, total)` is called after every step. Throws ConfigError /
/// ArgumentError for bad options, DataError for unreadable data.
TrainBenchResult run_train_bench(const Recipe& recipe, const TrainBenchOptions& options,
                                 const std::string& scratch_dir,
                                 const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace facetrain::train
