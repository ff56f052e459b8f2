// `facetrain bench head | train`: wiring only; the measurements are train/bench.h.
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "facetrain/config/reader.h"
#include "facetrain/core/progress.h"
#include "facetrain/dist/group.h"
#include "facetrain/train/bench.h"
#include "facetrain/train/recipe.h"

namespace facetrain::tools {

namespace {

void append_json(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  std::ofstream out(path, std::ios::app);
  out << j.dump() << "\n";
  if (!out) throw DataError("cannot append to '" + path + "'");
}

struct TrainBenchArgs {
  std::string config, output, json;
  std::vector<std::string> sets;
  train::TrainBenchOptions options;
};

Runner add_bench_train(CLI::App& bench) {
  auto a = std::make_shared<TrainBenchArgs>();
  auto* cmd = bench.add_subcommand(
      "train", "Images/s, step time, MFU and memory of a recipe's training step, from in-memory batches and from "
               "its data loader");
  cmd->add_option("--config", a->config, "The YAML recipe")->required();
  cmd->add_option("--set", a->sets, "Override a recipe key (repeatable)");
  cmd->add_option("--output", a->output,
                  "The trainer's output directory ({output} in the recipe; default: a temporary one, removed)");
  cmd->add_option("--input", a->options.input, "memory, loader or both (default both)");
  cmd->add_option("--steps", a->options.steps, "Timed steps per input (default 20)");
  cmd->add_option("--warmup", a->options.warmup, "Steps before timing (default 3)");
  cmd->add_option("--peak-tflops", a->options.peak_tflops,
                  "The device's dense peak TFLOP/s at the step's precision, for MFU (e.g. 989 for an H100 SXM in bf16)");
  cmd->add_option("--json", a->json, "Append the result as one JSON line to this file");
  return [a, cmd] {
    if (!cmd->parsed()) return 0;
    std::vector<ConfigIssue> issues;
    for (const auto& p : a->options.problems()) issues.push_back({"bench train", 0, 0, p.key, p.message});
    if (!issues.empty()) throw ConfigError(issues);
    std::string output = a->output;
    bool temporary = false;
    if (output.empty()) {
      char pattern[] = "/tmp/facetrain-bench-XXXXXX";
      if (!::mkdtemp(pattern)) throw Error("cannot create a temporary directory in /tmp");
      output = pattern;
      temporary = true;
    }
    auto doc = config::Document::from_file(a->config);
    for (const auto& s : a->sets) doc.set(s);
    auto recipe = train::read_recipe(doc, output);
    const auto level = spdlog::get_level();
    spdlog::set_level(spdlog::level::warn);  // the trainer's start-up lines; the table is the output
    std::unique_ptr<ProgressMeter> meter;  // rate and ETA on stderr, every 5 steps
    train::TrainBenchResult r;
    try {
      r = train::run_train_bench(recipe, a->options, output, [&](int64_t done, int64_t total) {
        if (!meter) meter = std::make_unique<ProgressMeter>(total, "step");
        if (done == total || done % 5 == 0) std::fprintf(stderr, "bench train: %s\n", meter->line(done).c_str());
      });
    } catch (...) {
      spdlog::set_level(level);
      if (temporary) std::filesystem::remove_all(output);
      throw;
    }
    spdlog::set_level(level);
    if (temporary) std::filesystem::remove_all(output);
    if (dist::read_environment().rank == 0) {
      std::printf("%s", r.describe().c_str());
      append_json(a->json, r.to_json());
    }
    return 0;
  };
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure speed and memory");
  bench->require_subcommand(1);
  auto o = std::make_shared<train::HeadBenchOptions>();
  auto optimizer = std::make_shared<std::string>("sgd");
  auto json = std::make_shared<std::string>();
  auto* head = bench->add_subcommand(
      "head", "Peak memory and time of one rank's margin-head step (centres, logits, cross-entropy, optimizer)");
  head->add_option("--head", o->head, "The head, a YAML mapping (default {type: arcface})");
  head->add_option("--classes", o->num_classes, "Classes over all ranks (default 1000000)");
  head->add_option("--world", o->world_size, "Ranks the classes are split over; this is rank 0 (default 8)");
  head->add_option("--batch", o->batch_size, "Images per rank; the head sees batch x world rows (default 128)");
  head->add_option("--dim", o->embedding_size, "Embedding size (default 512)");
  head->add_option("--sample-rate", o->sample_rate, "Partial FC: the share of classes in each step (default 1)");
  head->add_option("--chunk", o->chunk,
                   "Chunked cross-entropy: classes per block (head.chunk_size; default 0, the plain path)");
  head->add_option("--optimizer", *optimizer,
                   "sgd (momentum 0.9), adamw, or none (forward and backward alone; default sgd)")
      ->check(CLI::IsMember({"sgd", "adamw", "none"}));
  head->add_option("--steps", o->steps, "Steps to run (default 2; the time is over all but the first)");
  head->add_option("--seed", o->seed, "Random seed (default 0)");
  head->add_option("--device", o->device,
                   "cpu, cuda or cuda:N (default cpu; on CUDA the peak is the allocator's, max_memory_allocated)");
  head->add_option("--json", *json, "Append the result as one JSON line to this file");
  auto estimate_only = std::make_shared<bool>(false);
  head->add_flag("--estimate-only", *estimate_only,
                 "Print the trainer's memory estimate for this rank without running (for sizes this machine cannot hold)");
  const Runner head_runner = [o, optimizer, json, head, estimate_only] {
    if (!head->parsed()) return 0;
    o->optimizer = *optimizer == "adamw" ? train::OptimizerType::kAdamW : train::OptimizerType::kSgd;
    o->step_optimizer = *optimizer != "none";
    std::vector<ConfigIssue> issues;
    for (const auto& p : o->problems()) issues.push_back({"bench head", 0, 0, p.key, p.message});
    if (!issues.empty()) throw ConfigError(issues);
    std::printf("bench head: %s\n", o->describe().c_str());
    std::fflush(stdout);
    if (*estimate_only) {
      std::printf("estimate: %s\n", train::head_bench_plan(*o).describe().c_str());
      return 0;
    }
    auto r = train::run_head_bench(*o);
    std::printf("%s\n", r.describe().c_str());
    append_json(*json, r.to_json());
    return 0;
  };
  const Runner train_runner = add_bench_train(*bench);
  return [head_runner, train_runner] { return head_runner() + train_runner(); };
}

}  // namespace facetrain::tools
