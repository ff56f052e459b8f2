#pragma once
// The main() of every facetrain benchmark program: tunes the allocator as the CLI does, records
// the allocator and thread count (and any `extra` context) in the report, runs Google Benchmark.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "facetrain/core/runtime.h"

namespace facetrain::bench {

inline int run_benchmarks(int argc, char** argv, const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  std::string allocator = tune_cpu_allocator();
  benchmark::AddCustomContext("allocator", allocator);
  benchmark::AddCustomContext("torch_threads", std::to_string(torch::get_num_threads()));
  for (const auto& [key, value] : extra) benchmark::AddCustomContext(key, value);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace facetrain::bench
