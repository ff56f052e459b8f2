#pragma once
// `facetrain bench head`: what one rank's margin head costs in a training step, measured. The
// process builds the class shard that rank 0 of `world_size` ranks holds (the largest), the
// gathered embeddings of the global batch (batch_size x world_size rows) and their labels, and
// runs `steps` training steps of the head alone: (Partial FC sample), forward, the distributed
// cross-entropy, backward, the optimizer. That is every tensor a rank's head step allocates; the
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
#include <string>

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
  OptimizerType optimizer = OptimizerType::kSgd;  ///< SGD with momentum 0.9, or AdamW
  int64_t steps = 2;
  uint64_t seed = 0;

  /// Problems with these values, each naming its --option.
  config::OptionProblems problems() const;
  std::string describe() const;
};

struct HeadBenchResult {
  HeadBenchOptions options;
  int64_t local_classes = 0;    ///< the shard's classes
  int64_t rows = 0;             ///< B_global
  int64_t sampled_classes = 0;  ///< classes in the last step's logits
  int64_t peak_bytes = 0;       ///< peak resident memory during the steps, above the start
  bool peak_exact = true;       ///< false when the kernel refused to reset VmHWM (then from process start)
  dist::MemoryPlan plan;        ///< the trainer's estimate for the same rank
  double seconds_per_step = 0;  ///< mean over the steps after the first (the first allocates state)

  /// "1000000 classes / 8 ranks (125000 here), 1024 rows, D 512, sample_rate 1: peak 2.61 GiB
  /// (estimate 2.58 GiB), 1.93 s per step"
  std::string describe() const;
  nlohmann::json to_json() const;
};

/// Runs the measurement on the CPU. Throws ArgumentError for options with problems.
HeadBenchResult run_head_bench(const HeadBenchOptions& options);

}  // namespace facetrain::train
