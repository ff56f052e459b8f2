// Evaluation speed: the verification protocol alone (what insightface's verification.py spends in
// numpy) and a whole `.bin` evaluation (decode + backbone on the images and their mirrors +
// protocol), as `facetrain eval --bin` runs it.
//
//   build/bench/facetrain_bench_eval --benchmark_min_time=1
// FACETRAIN_BENCH_PAIRS=N pairs for the protocol (default 6000, LFW's size);
// FACETRAIN_BENCH_BIN=path.bin the set to evaluate (default: synthetic pairs, FACETRAIN_BENCH_BIN_PAIRS
// of them, default 64); FACETRAIN_BENCH_MODEL the backbone type (default mobilefacenet, random
// weights: speed does not depend on them); FACETRAIN_BENCH_BATCH the batch (default 256).
// bench/compare_eval.sh runs the protocol beside insightface's Python (numpy); results:
// docs/benchmarks.md.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "bench_main.h"

#include "facetrain/backbones/registry.h"
#include "facetrain/data/synthetic.h"
#include "facetrain/eval/report.h"
#include "facetrain/io/verification_bin.h"

namespace {

int64_t env_int(const char* name, int64_t fallback) {
  const char* env = std::getenv(name);
  return env ? std::max<int64_t>(1, std::atoll(env)) : fallback;
}

// The protocol on [2N, 512] float64 embeddings (flip-fused): normalisation, distances, the
// accuracy and VAL threshold sweeps. Genuine pairs are noisy copies, impostors independent.
void BM_VerificationProtocol(benchmark::State& state) {
  const int64_t pairs = env_int("FACETRAIN_BENCH_PAIRS", 6000);
  torch::manual_seed(1);
  const torch::Tensor base = torch::randn({pairs, 512}, torch::kDouble);
  torch::Tensor e = torch::empty({2 * pairs, 512}, torch::kDouble);
  std::vector<bool> issame(static_cast<size_t>(pairs));
  for (int64_t i = 0; i < pairs; ++i) {
    issame[static_cast<size_t>(i)] = i % 2 == 0;
    e[2 * i] = base[i];
    e[2 * i + 1] =
        i % 2 == 0 ? base[i] + 0.8 * torch::randn({512}, torch::kDouble) : torch::randn({512}, torch::kDouble);
  }
  for (auto _ : state) benchmark::DoNotOptimize(facetrain::eval::verify(e, torch::Tensor(), issame).accuracy);
  state.counters["pairs"] = static_cast<double>(pairs);
}

facetrain::io::VerificationBin bench_bin() {
  if (const char* env = std::getenv("FACETRAIN_BENCH_BIN")) return facetrain::io::read_verification_bin(env);
  const int64_t pairs = env_int("FACETRAIN_BENCH_BIN_PAIRS", 64);
  facetrain::data::SyntheticFaces faces(5);
  facetrain::io::VerificationBin bin;
  for (int64_t i = 0; i < pairs; ++i) {
    const bool same = i % 2 == 0;
    bin.images.push_back(faces.render_jpeg(static_cast<uint64_t>(i), 0));
    bin.images.push_back(faces.render_jpeg(static_cast<uint64_t>(same ? i : i + 1), 1));
    bin.issame.push_back(same);
  }
  return bin;
}

void BM_EvaluateBin(benchmark::State& state) {
  static const facetrain::io::VerificationBin bin = bench_bin();
  const char* model = std::getenv("FACETRAIN_BENCH_MODEL");
  auto net =
      facetrain::backbones::make_backbone(YAML::Load(std::string("{type: ") + (model ? model : "mobilefacenet") + "}"));
  facetrain::eval::EmbedOptions options;
  options.batch_size = env_int("FACETRAIN_BENCH_BATCH", 256);
  options.device = facetrain::eval::default_device();
  for (auto _ : state) benchmark::DoNotOptimize(facetrain::eval::evaluate_bin(*net, bin, "bench", options).accuracy);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(bin.images.size()));
  state.counters["images"] = static_cast<double>(bin.images.size());
  state.SetLabel(net->type() + " on " + options.device.str());
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("BM_VerificationProtocol", BM_VerificationProtocol)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_EvaluateBin", BM_EvaluateBin)->UseRealTime()->Unit(benchmark::kSecond);
  return facetrain::bench::run_benchmarks(argc, argv);
}
