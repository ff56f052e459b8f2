// Forward (eval, no grad) and forward + backward (train) images/s of every backbone on CPU,
// float32, 112x112 input. Each benchmark runs one warm-up pass first.
//
//   build/bench/facetrain_bench_backbones --benchmark_min_time=1
// FACETRAIN_BENCH_BATCH=B sets the batch (default 8); FACETRAIN_BENCH_BACKBONES=a,b,... picks
// the types (default: mobilefacenet, iresnet18, iresnet50, iresnet100; any type of
// `facetrain model list`); FACETRAIN_BENCH_CHANNELS_LAST=1 adds channels-last variants.
// Results and how to compare them: docs/benchmarks.md.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <sstream>

#include "bench_main.h"

#include "facetrain/backbones.h"

namespace {

int64_t bench_batch() {
  const char* env = std::getenv("FACETRAIN_BENCH_BATCH");
  return env ? std::max<int64_t>(1, std::atoll(env)) : 8;
}

std::vector<std::string> bench_types() {
  std::vector<std::string> types = {"mobilefacenet", "iresnet18", "iresnet50", "iresnet100"};
  if (const char* env = std::getenv("FACETRAIN_BENCH_BACKBONES")) {
    types.clear();
    std::istringstream in(env);
    for (std::string t; std::getline(in, t, ',');) types.push_back(t);
  }
  return types;
}

void report(benchmark::State& state, int64_t batch, const facetrain::backbones::ModelSummary& s, int passes) {
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["batch"] = static_cast<double>(batch);
  // Achieved multiply-accumulates per second (x2 for FLOP/s), forward-equivalent passes: a
  // backward costs about two forwards.
  state.counters["GMAC/s"] = benchmark::Counter(
      static_cast<double>(s.conv_linear_macs) * batch * passes / 1e9 * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

void BM_Forward(benchmark::State& state, const std::string& yaml) {
  const int64_t batch = bench_batch();
  torch::manual_seed(0);
  auto net = facetrain::backbones::make_backbone(YAML::Load(yaml));
  auto summary = facetrain::backbones::summarize(*net);
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({batch, 3, 112, 112});
  net->forward(x);  // warm-up
  for (auto _ : state) {
    auto y = net->forward(x);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  report(state, batch, summary, 1);
}

void BM_ForwardBackward(benchmark::State& state, const std::string& yaml) {
  const int64_t batch = bench_batch();
  torch::manual_seed(0);
  auto net = facetrain::backbones::make_backbone(YAML::Load(yaml));
  auto summary = facetrain::backbones::summarize(*net);
  net->train();
  auto x = torch::randn({batch, 3, 112, 112});
  auto step = [&] {
    net->zero_grad();
    net->forward(x).pow(2).mean().backward();
  };
  step();  // warm-up
  for (auto _ : state) step();
  report(state, batch, summary, 3);
}

int register_all() {
  const bool channels_last = std::getenv("FACETRAIN_BENCH_CHANNELS_LAST") != nullptr;
  for (const auto& type : bench_types()) {
    std::vector<std::pair<std::string, std::string>> variants = {{type, "{type: " + type + "}"}};
    if (channels_last) variants.push_back({type + "_nhwc", "{type: " + type + ", memory_format: channels_last}"});
    for (const auto& [name, yaml] : variants) {
      benchmark::RegisterBenchmark(("forward/" + name).c_str(), BM_Forward, yaml)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
      benchmark::RegisterBenchmark(("forward_backward/" + name).c_str(), BM_ForwardBackward, yaml)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  return 0;
}
const int registered = register_all();

}  // namespace

int main(int argc, char** argv) {
  return facetrain::bench::run_benchmarks(argc, argv, {{"batch", std::to_string(bench_batch())}});
}
