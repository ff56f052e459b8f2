#include "facetrain/train/bench.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "facetrain/core/error.h"
#include "facetrain/core/memory.h"
#include "facetrain/dist/partial_fc.h"
#include "facetrain/heads/registry.h"
#include "facetrain/backbones/summary.h"
#include "facetrain/data/dataset.h"
#include "facetrain/data/loader.h"
#include "facetrain/train/optimizer.h"
#include "facetrain/train/trainer.h"

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
  at_least("--chunk", chunk, 0);
  if (num_classes < world_size)
    p.push_back({"--classes", "cannot split " + std::to_string(num_classes) + " classes over " +
                                  std::to_string(world_size) + " ranks"});
  if (!(sample_rate > 0 && sample_rate <= 1)) p.push_back({"--sample-rate", "must be in (0, 1], got " + fmt(sample_rate)});
  if (device != "cpu" && device != "cuda" && device.rfind("cuda:", 0) != 0)
    p.push_back({"--device", "must be cpu, cuda or cuda:N, got '" + device + "'"});
  return p;
}

std::string HeadBenchOptions::describe() const {
  return std::to_string(num_classes) + " classes / " + std::to_string(world_size) + " ranks, batch " +
         std::to_string(batch_size) + " per rank, D " + std::to_string(embedding_size) + ", sample_rate " +
         fmt(sample_rate) + (chunk > 0 ? ", chunk " + std::to_string(chunk) : std::string()) + ", " + device + ", " +
         (!step_optimizer ? "no optimizer" : optimizer == OptimizerType::kSgd ? "sgd" : "adamw") + ", head " + head;
}

std::string HeadBenchResult::describe() const {
  char time[32];
  std::snprintf(time, sizeof time, "%.3f", seconds_per_step);
  return std::to_string(options.num_classes) + " classes / " + std::to_string(options.world_size) + " ranks (" +
         std::to_string(local_classes) + " here), " + std::to_string(rows) + " rows, D " +
         std::to_string(options.embedding_size) + ", sample_rate " + fmt(options.sample_rate) +
         (options.chunk > 0 ? ", chunk " + std::to_string(options.chunk) : std::string()) + " (" +
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
          {"chunk", options.chunk},
          {"optimizer", !options.step_optimizer                      ? "none"
                        : options.optimizer == OptimizerType::kSgd ? "sgd"
                                                                   : "adamw"},
          {"steps", options.steps},
          {"device", options.device},
          {"local_classes", local_classes},
          {"rows", rows},
          {"sampled_classes", sampled_classes},
          {"peak_bytes", peak_bytes},
          {"peak_exact", peak_exact},
          {"estimate_bytes", plan.total()},
          {"seconds_per_step", seconds_per_step}};
}

dist::MemoryPlan head_bench_plan(const HeadBenchOptions& o) {
  config::throw_if_invalid("facetrain bench head", o.problems());
  dist::MemoryPlanInput plan;
  plan.num_classes = o.num_classes;
  plan.embedding_size = o.embedding_size;
  plan.world_size = o.world_size;
  plan.global_batch = o.batch_size * o.world_size;
  plan.optimizer_slots = !o.step_optimizer ? 0 : o.optimizer == OptimizerType::kAdamW ? 2 : 1;
  plan.optimizer_step = o.step_optimizer;
  plan.sample_rate = o.sample_rate;
  plan.chunk = o.chunk;
  return dist::plan_memory(plan);
}

HeadBenchResult run_head_bench(const HeadBenchOptions& o) {
  config::throw_if_invalid("facetrain bench head", o.problems());
  HeadBenchResult r;
  r.options = o;
  const auto shard = dist::class_shard(o.num_classes, 0, o.world_size);
  r.local_classes = shard.size();
  r.rows = o.batch_size * o.world_size;
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(o.device);
  } catch (const std::exception&) {
    throw ArgumentError("facetrain bench head: --device: cannot read '" + o.device + "'");
  }
  const bool cuda = device.is_cuda();
  if (cuda && !torch::cuda::is_available())
    throw ArgumentError("facetrain bench head: --device " + o.device + ": no CUDA device is available");
  const int gpu = cuda ? int(device.index() < 0 ? 0 : device.index()) : 0;
  if (cuda) device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu));
  const int64_t before = cuda ? device_allocated_bytes(gpu) : resident_bytes();
  if (cuda) reset_device_peak(gpu);
  r.peak_exact = cuda || reset_peak_resident();

  torch::manual_seed(static_cast<int64_t>(o.seed));
  auto head = heads::make_head(YAML::Load(o.head), heads::HeadGeometry(o.embedding_size, o.num_classes, shard.begin,
                                                                        shard.end));
  auto group = dist::Group::single();
  head->set_reducer(std::make_shared<dist::ShardReducer>(group));
  head->to(device);
  head->train();
  OptimizerOptions oo;
  oo.type = o.optimizer;
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& p : head->named_parameters()) params.emplace_back("head." + p.key(), p.value());
  Optimizer optimizer(oo, {{"head", params, 0.1, 5e-4}});

  // The gathered embeddings of the global batch and their labels (uniform over all classes, so
  // about 1 / world of them are this shard's positives).
  auto x = torch::randn({r.rows, o.embedding_size}).to(device).requires_grad_(true);
  auto y = torch::randint(o.num_classes, {r.rows}, torch::kLong).to(device);
  double timed = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    x.mutable_grad() = torch::Tensor();
    torch::Tensor loss;
    dist::ClassSample sample;
    if (o.sample_rate < 1)
      sample = dist::sample_classes(y, shard, o.sample_rate, dist::sample_seed(o.seed, step, 0, shard));
    r.sampled_classes = o.sample_rate < 1 ? sample.classes.size(0) : r.local_classes;
    if (o.chunk > 0) {
      loss = head->chunked_cross_entropy(x, y, o.chunk, sample.classes);
    } else if (o.sample_rate < 1) {
      loss = dist::cross_entropy_at(head->forward(x, y, sample.classes), sample.targets, *group);
    } else {
      loss = dist::cross_entropy(head->forward(x, y), y, shard.begin, *group);
    }
    loss.backward();
    if (o.sample_rate < 1) {
      for (const auto& [name, p] : params) optimizer.set_rows(name, sample.classes);
    }
    if (o.step_optimizer) optimizer.step();
    if (!std::isfinite(loss.item<double>())) throw Error("facetrain bench head: the loss is not finite");
    if (cuda) torch::cuda::synchronize(gpu);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (step > 0 || o.steps == 1) timed += s;
  }
  r.seconds_per_step = timed / double(o.steps > 1 ? o.steps - 1 : 1);
  r.peak_bytes = cuda ? device_peak_bytes(gpu) - before : peak_resident_bytes() - (r.peak_exact ? before : 0);

  r.plan = head_bench_plan(o);
  return r;
}

// --- the whole step -------------------------------------------------------------------------------

config::OptionProblems TrainBenchOptions::problems() const {
  config::OptionProblems p;
  if (input != "memory" && input != "loader" && input != "both")
    p.push_back({"--input", "must be memory, loader or both, got '" + input + "'"});
  if (steps < 1) p.push_back({"--steps", "must be at least 1, got " + std::to_string(steps)});
  if (warmup < 0) p.push_back({"--warmup", "must be at least 0, got " + std::to_string(warmup)});
  if (!(peak_tflops >= 0)) p.push_back({"--peak-tflops", "must be >= 0, got " + fmt(peak_tflops)});
  return p;
}

double TrainBenchResult::mfu(const TrainBenchRun& run) const {
  if (peak_tflops <= 0) return -1;
  return flops_per_image * run.img_per_sec / world_size / (peak_tflops * 1e12);  // per device
}

std::string TrainBenchResult::describe() const {
  std::string out = model + " + " + head + ", " + amp + ", batch " + std::to_string(batch_size) + " x " +
                    std::to_string(world_size) + " processes on " + device + "; " + fmt(flops_per_image / 1e9) +
                    " GFLOP per image\n";
  out += "| input | img/s | step (median) | step (p90) | TFLOP/s per device | MFU | peak memory |\n";
  out += "|---|---:|---:|---:|---:|---:|---:|\n";
  char line[256];
  for (const auto& r : runs) {
    const double tflops = flops_per_image * r.img_per_sec / world_size / 1e12;
    const double m = mfu(r);
    std::snprintf(line, sizeof line, "| %s | %.1f | %.1f ms | %.1f ms | %.3f | %s | %s |\n", r.input.c_str(),
                  r.img_per_sec, r.step_seconds * 1e3, r.step_seconds_p90 * 1e3, tflops,
                  m < 0 ? "n/a (--peak-tflops)" : (fmt(std::round(m * 1000) / 10) + " %").c_str(),
                  r.peak_bytes > 0 ? format_bytes(r.peak_bytes).c_str() : "n/a");
    out += line;
  }
  if (runs.size() == 2) {
    std::snprintf(line, sizeof line, "loader / memory: %.2fx\n", runs[1].img_per_sec / runs[0].img_per_sec);
    out += line;
  }
  return out;
}

nlohmann::json TrainBenchResult::to_json() const {
  nlohmann::json rs = nlohmann::json::array();
  for (const auto& r : runs) {
    nlohmann::json j = {{"input", r.input},
                        {"img_per_sec", r.img_per_sec},
                        {"step_seconds", r.step_seconds},
                        {"step_seconds_p90", r.step_seconds_p90},
                        {"peak_bytes", r.peak_bytes}};
    if (mfu(r) >= 0) j["mfu"] = mfu(r);
    rs.push_back(j);
  }
  return {{"device", device},         {"model", model},
          {"head", head},             {"amp", amp},
          {"batch_size", batch_size},
          {"world_size", world_size}, {"local_classes", local_classes},
          {"flops_per_image", flops_per_image}, {"peak_tflops", peak_tflops},
          {"runs", rs}};
}

TrainBenchResult run_train_bench(const Recipe& recipe, const TrainBenchOptions& o, const std::string& scratch_dir,
                                 const std::function<void(int64_t, int64_t)>& progress) {
  config::throw_if_invalid("facetrain bench train", o.problems());
  RunOptions run;
  run.output_dir = scratch_dir;
  run.handle_signals = false;
  Trainer trainer(recipe, run);
  TrainBenchResult out;
  out.device = trainer.device().str();
  out.model = trainer.backbone().type();
  out.head = trainer.head().type();
  out.amp = amp_name(recipe.train.amp);
  out.batch_size = recipe.train.batch_size;
  out.world_size = trainer.group().size();
  out.local_classes = trainer.head().geometry().num_local_classes();
  out.peak_tflops = o.peak_tflops;
  {
    auto summary = backbones::summarize(trainer.backbone());
    const double head_macs = double(trainer.head().geometry().embedding_size) * double(out.local_classes) *
                             (recipe.sample_rate < 1 ? recipe.sample_rate : 1.0);
    out.flops_per_image = 6.0 * (double(summary.conv_linear_macs) + head_macs * double(out.world_size));
  }
  trainer.backbone().train();

  // The recipe's data, read as training reads it (this rank's share of each global batch).
  auto dataset = data::make_dataset(recipe.data.dataset);
  data::LoaderOptions lo = recipe.data.loader;
  lo.rank = trainer.group().rank();
  lo.world_size = trainer.group().size();
  data::Loader loader(dataset, lo);
  int64_t epoch = 0;
  loader.start_epoch(epoch);
  auto from_loader = [&]() -> data::Batch {
    auto b = loader.next();
    if (!b) {
      loader.start_epoch(++epoch);
      b = loader.next();
      if (!b) throw DataError("facetrain bench train: the data loader gives no batch");
    }
    return std::move(*b);
  };
  const data::Batch fixed = from_loader();
  auto from_memory = [&]() -> data::Batch { return fixed; };

  std::vector<std::string> inputs;
  if (o.input != "loader") inputs.push_back("memory");
  if (o.input != "memory") inputs.push_back("loader");
  const int64_t total = int64_t(inputs.size()) * (o.warmup + o.steps);
  int64_t done = 0;
  const bool cuda = trainer.device().is_cuda();
  for (const auto& input : inputs) {
    const std::function<data::Batch()> next = input == "memory" ? std::function<data::Batch()>(from_memory)
                                                                : std::function<data::Batch()>(from_loader);
    TrainBenchRun r;
    r.input = input;
    const int64_t before = resident_bytes();
    const bool exact = reset_peak_resident();
    const int gpu = cuda ? int(trainer.device().index() < 0 ? 0 : trainer.device().index()) : 0;
    if (cuda) reset_device_peak(gpu);
    std::vector<double> times;
    int64_t images = 0;
    for (int64_t k = 0; k < o.warmup + o.steps; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      StepStats st = trainer.step(next);
      if (cuda) torch::cuda::synchronize();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (k >= o.warmup) {
        times.push_back(s);
        images += st.samples;
      }
      if (progress) progress(++done, total);
    }
    double sum = 0;
    for (double t : times) sum += t;
    r.img_per_sec = double(images) / sum;
    std::sort(times.begin(), times.end());
    r.step_seconds = times[times.size() / 2];
    r.step_seconds_p90 = times[std::min(times.size() - 1, size_t(double(times.size()) * 0.9))];
    // CUDA: the caching allocator's peak of live tensors (max_memory_allocated, as the PyTorch
    // baseline reports it), -1 in a build without facetrain_cuda; CPU: the resident peak.
    if (cuda) r.peak_bytes = device_peak_bytes(gpu);
    else if (exact) r.peak_bytes = peak_resident_bytes() - before;
    out.runs.push_back(r);
  }
  return out;
}

}  // namespace facetrain::train
