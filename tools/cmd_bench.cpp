// `facetrain bench head`: wiring only; the measurement is train/bench.h.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "commands.h"
#include "facetrain/train/bench.h"

namespace facetrain::tools {

Runner add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure speed and memory");
  bench->require_subcommand(1);
  auto o = std::make_shared<train::HeadBenchOptions>();
  auto optimizer = std::make_shared<std::string>("sgd");
  auto json = std::make_shared<std::string>();
  auto* head = bench->add_subcommand(
      "head", "Peak memory and time of one rank's margin-head step (centres, logits, cross-entropy, optimizer) on the CPU");
  head->add_option("--head", o->head, "The head, a YAML mapping (default {type: arcface})");
  head->add_option("--classes", o->num_classes, "Classes over all ranks (default 1000000)");
  head->add_option("--world", o->world_size, "Ranks the classes are split over; this is rank 0 (default 8)");
  head->add_option("--batch", o->batch_size, "Images per rank; the head sees batch x world rows (default 128)");
  head->add_option("--dim", o->embedding_size, "Embedding size (default 512)");
  head->add_option("--sample-rate", o->sample_rate, "Partial FC: the share of classes in each step (default 1)");
  head->add_option("--optimizer", *optimizer, "sgd (momentum 0.9) or adamw (default sgd)")
      ->check(CLI::IsMember({"sgd", "adamw"}));
  head->add_option("--steps", o->steps, "Steps to run (default 2; the time is over all but the first)");
  head->add_option("--seed", o->seed, "Random seed (default 0)");
  head->add_option("--json", *json, "Append the result as one JSON line to this file");
  return [o, optimizer, json, head] {
    if (!head->parsed()) return 0;
    o->optimizer = *optimizer == "adamw" ? train::OptimizerType::kAdamW : train::OptimizerType::kSgd;
    std::vector<ConfigIssue> issues;
    for (const auto& p : o->problems()) issues.push_back({"bench head", 0, 0, p.key, p.message});
    if (!issues.empty()) throw ConfigError(issues);
    std::printf("bench head: %s\n", o->describe().c_str());
    std::fflush(stdout);
    auto r = train::run_head_bench(*o);
    std::printf("%s\n", r.describe().c_str());
    if (!json->empty()) {
      std::ofstream out(*json, std::ios::app);
      out << r.to_json().dump() << "\n";
      if (!out) throw DataError("cannot append to '" + *json + "'");
    }
    return 0;
  };
}

}  // namespace facetrain::tools
