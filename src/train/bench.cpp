#include "facetrain/train/bench.h"

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "facetrain/core/error.h"
#include "facetrain/core/memory.h"
#include "facetrain/dist/partial_fc.h"
#include "facetrain/heads/registry.h"
#include "facetrain/train/optimizer.h"

namespace facetrain::train {

using config::fmt;

config::OptionProblems HeadBenchOptions::problems() const {
  config::OptionProblems p;
  auto at_least = [&](const char* key, int64_t v, int64_t min) {
    if (v < min) p.push_back({key, "must be at least " + std::to_string(min) + ", got " + std::to_string(v)});
  };
  at_least("--classes", num_classes, 1);
  at_least("--world", world_size, 1);
  at_least("--batch", batch_size, 1);
  at_least("--dim", embedding_size, 1);
  at_least("--steps", steps, 1);
  if (num_classes < world_size)
    p.push_back({"--classes", "cannot split " + std::to_string(num_classes) + " classes over " +
                                  std::to_string(world_size) + " ranks"});
  if (!(sample_rate > 0 && sample_rate <= 1)) p.push_back({"--sample-rate", "must be in (0, 1], got " + fmt(sample_rate)});
  return p;
}

std::string HeadBenchOptions::describe() const {
  return std::to_string(num_classes) + " classes / " + std::to_string(world_size) + " ranks, batch " +
         std::to_string(batch_size) + " per rank, D " + std::to_string(embedding_size) + ", sample_rate " +
         fmt(sample_rate) + ", " + (optimizer == OptimizerType::kSgd ? "sgd" : "adamw") + ", head " + head;
}

std::string HeadBenchResult::describe() const {
  char time[32];
  std::snprintf(time, sizeof time, "%.3f", seconds_per_step);
  return std::to_string(options.num_classes) + " classes / " + std::to_string(options.world_size) + " ranks (" +
         std::to_string(local_classes) + " here), " + std::to_string(rows) + " rows, D " +
         std::to_string(options.embedding_size) + ", sample_rate " + fmt(options.sample_rate) + " (" +
         std::to_string(sampled_classes) + " classes a step): peak " + format_bytes(peak_bytes) +
         (peak_exact ? "" : " (since the process started)") + ", estimate " + format_bytes(plan.total()) + "; " + time +
         " s per step";
}

nlohmann::json HeadBenchResult::to_json() const {
  return {{"head", options.head},
          {"num_classes", options.num_classes},
          {"world_size", options.world_size},
          {"batch_size", options.batch_size},
          {"embedding_size", options.embedding_size},
          {"sample_rate", options.sample_rate},
          {"optimizer", options.optimizer == OptimizerType::kSgd ? "sgd" : "adamw"},
          {"steps", options.steps},
          {"local_classes", local_classes},
          {"rows", rows},
          {"sampled_classes", sampled_classes},
          {"peak_bytes", peak_bytes},
          {"peak_exact", peak_exact},
          {"estimate_bytes", plan.total()},
          {"seconds_per_step", seconds_per_step}};
}

HeadBenchResult run_head_bench(const HeadBenchOptions& o) {
  config::throw_if_invalid("facetrain bench head", o.problems());
  HeadBenchResult r;
  r.options = o;
  const auto shard = dist::class_shard(o.num_classes, 0, o.world_size);
  r.local_classes = shard.size();
  r.rows = o.batch_size * o.world_size;
  const int64_t before = resident_bytes();
  r.peak_exact = reset_peak_resident();

  torch::manual_seed(static_cast<int64_t>(o.seed));
  auto head = heads::make_head(YAML::Load(o.head), heads::HeadGeometry(o.embedding_size, o.num_classes, shard.begin,
                                                                        shard.end));
  auto group = dist::Group::single();
  head->set_reducer(std::make_shared<dist::ShardReducer>(group));
  head->train();
  OptimizerOptions oo;
  oo.type = o.optimizer;
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& p : head->named_parameters()) params.emplace_back("head." + p.key(), p.value());
  Optimizer optimizer(oo, {{"head", params, 0.1, 5e-4}});

  // The gathered embeddings of the global batch and their labels (uniform over all classes, so
  // about 1 / world of them are this shard's positives).
  auto x = torch::randn({r.rows, o.embedding_size}).requires_grad_(true);
  auto y = torch::randint(o.num_classes, {r.rows}, torch::kLong);
  double timed = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    x.mutable_grad() = torch::Tensor();
    torch::Tensor loss;
    if (o.sample_rate < 1) {
      auto sample = dist::sample_classes(y, shard, o.sample_rate, dist::sample_seed(o.seed, step, 0, shard));
      r.sampled_classes = sample.classes.size(0);
      loss = dist::cross_entropy_at(head->forward(x, y, sample.classes), sample.targets, *group);
      loss.backward();
      for (const auto& [name, p] : params) optimizer.set_rows(name, sample.classes);
    } else {
      r.sampled_classes = r.local_classes;
      loss = dist::cross_entropy(head->forward(x, y), y, shard.begin, *group);
      loss.backward();
    }
    optimizer.step();
    if (!std::isfinite(loss.item<double>())) throw Error("facetrain bench head: the loss is not finite");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (step > 0 || o.steps == 1) timed += s;
  }
  r.seconds_per_step = timed / double(o.steps > 1 ? o.steps - 1 : 1);
  r.peak_bytes = peak_resident_bytes() - (r.peak_exact ? before : 0);

  dist::MemoryPlanInput plan;
  plan.num_classes = o.num_classes;
  plan.embedding_size = o.embedding_size;
  plan.world_size = o.world_size;
  plan.global_batch = r.rows;
  plan.optimizer_slots = optimizer.slots_per_parameter();
  plan.sample_rate = o.sample_rate;
  r.plan = dist::plan_memory(plan);
  return r;
}

}  // namespace facetrain::train
