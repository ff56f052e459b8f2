// Forward + backward of every head on CPU at B = 512, D = 512, C = 100 000 (the size),
// float32. Each benchmark runs head->forward(x, y), cross-entropy, backward.
//
//   build/bench/facetrain_bench_heads --benchmark_min_time=2
// FACETRAIN_BENCH_SIZE=B,D,C overrides the size (the smoke test uses a tiny one);
// FACETRAIN_SYSTEM_MALLOC=1 measures with glibc's default allocator settings.
// Results and how to compare them: docs/benchmarks.md.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <sstream>

#include "bench_main.h"

#include "facetrain/heads.h"

namespace {

struct Size {
  int64_t batch = 512, dim = 512, classes = 100000;
};

Size bench_size() {
  Size s;
  if (const char* env = std::getenv("FACETRAIN_BENCH_SIZE")) {
    char comma;
    std::istringstream in(env);
    in >> s.batch >> comma >> s.dim >> comma >> s.classes;
  }
  return s;
}

void BM_HeadForwardBackward(benchmark::State& state, const std::string& yaml) {
  const Size size = bench_size();
  torch::manual_seed(0);
  auto head = facetrain::heads::make_head(YAML::Load(yaml), size.dim, size.classes);
  auto x = torch::randn({size.batch, size.dim}).requires_grad_(true);
  auto y = torch::randint(size.classes, {size.batch}, torch::kLong);
  auto step = [&] {
    auto logits = head->forward(x, y);
    torch::nn::functional::cross_entropy(logits, y).backward();
  };
  step();  // warm-up: the first pass grows the heap (and first-touches its pages)
  for (auto _ : state) {
    auto logits = head->forward(x, y);
    auto loss = torch::nn::functional::cross_entropy(logits, y);
    loss.backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
    x.mutable_grad().zero_();
    head->weight.mutable_grad().zero_();
  }
  state.SetItemsProcessed(state.iterations() * size.batch);
  state.counters["B"] = static_cast<double>(size.batch);
  state.counters["C"] = static_cast<double>(size.classes);
}

// Baseline: the plain matrix product and cross-entropy every normalised head has to pay for.
void BM_MatmulCrossEntropy(benchmark::State& state) {
  const Size size = bench_size();
  torch::manual_seed(0);
  auto w = torch::randn({size.classes, size.dim}).requires_grad_(true);
  auto x = torch::randn({size.batch, size.dim}).requires_grad_(true);
  auto y = torch::randint(size.classes, {size.batch}, torch::kLong);
  torch::nn::functional::cross_entropy(torch::mm(x, w.t()), y).backward();  // warm-up
  for (auto _ : state) {
    auto loss = torch::nn::functional::cross_entropy(torch::mm(x, w.t()), y);
    loss.backward();
    benchmark::DoNotOptimize(x.grad().data_ptr());
    x.mutable_grad().zero_();
    w.mutable_grad().zero_();
  }
  state.SetItemsProcessed(state.iterations() * size.batch);
}

const char* kHeads[][2] = {
    {"softmax", "{type: softmax}"},
    {"normface", "{type: normface}"},
    {"cosface", "{type: cosface}"},
    {"arcface", "{type: arcface}"},
    {"arcface_straight_through", "{type: arcface, gradient: straight_through}"},
    {"combined", "{type: combined, m1: 0.9, m2: 0.4, m3: 0.15}"},
    {"sphereface", "{type: sphereface}"},
    {"mv_softmax", "{type: mv_softmax}"},
    {"curricularface", "{type: curricularface}"},
    {"adaface", "{type: adaface}"},
    {"circleloss", "{type: circleloss}"},
};

int register_all() {
  benchmark::RegisterBenchmark("baseline/matmul_cross_entropy", BM_MatmulCrossEntropy)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  for (const auto& h : kHeads) {
    benchmark::RegisterBenchmark((std::string("head/") + h[0]).c_str(), BM_HeadForwardBackward, std::string(h[1]))
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  return 0;
}
const int registered = register_all();

}  // namespace

int main(int argc, char** argv) { return facetrain::bench::run_benchmarks(argc, argv); }
