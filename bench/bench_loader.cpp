// Images/s from a .rec to normalised [B, 3, 112, 112] batches (decode, random flip, RGB,
// (x / 255 - 0.5) / 0.5), through the training loader with 1 and 2 worker threads. Each
// iteration is one shuffled epoch of the file.
//
//   build/bench/facetrain_bench_loader --benchmark_min_time=2
// FACETRAIN_BENCH_REC=path/train.rec picks the file (default: 1000 synthetic faces written to a
// temporary folder); FACETRAIN_BENCH_BATCH=B the batch (default 128);
// FACETRAIN_BENCH_WORKERS=1,2 the worker counts. bench/compare_loader.sh runs this beside the
// Python baseline (bench/python_loader_baseline.py); results: docs/benchmarks.md.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "bench_main.h"

#include "facetrain/data/dataset.h"
#include "facetrain/data/loader.h"
#include "facetrain/data/synthetic.h"

namespace {

std::string bench_rec() {
  if (const char* env = std::getenv("FACETRAIN_BENCH_REC")) return env;
  static const std::string path = [] {
    auto dir = std::filesystem::temp_directory_path() / "facetrain_bench_loader_synth";
    if (!std::filesystem::exists(dir / "train.idx")) {
      facetrain::data::SynthDatasetOptions o;
      o.out_dir = dir.string();
      o.identities = 50;
      o.images_per_identity = 20;
      o.val_identities = 2;
      o.val_pairs = 2;
      facetrain::data::write_synthetic_dataset(o);
    }
    return (dir / "train.rec").string();
  }();
  return path;
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* env = std::getenv(name);
  return env ? std::max<int64_t>(1, std::atoll(env)) : fallback;
}

void BM_Loader(benchmark::State& state) {
  facetrain::data::DatasetOptions d;
  d.type = "recordio";
  d.path = bench_rec();
  auto dataset = facetrain::data::make_dataset(d);
  facetrain::data::LoaderOptions o;
  o.batch_size = env_int("FACETRAIN_BENCH_BATCH", 128);
  o.workers = state.range(0);
  o.prefetch = 2 * o.workers;
  o.drop_last = false;
  facetrain::data::Loader loader(dataset, o);
  int64_t images = 0, epoch = 0;
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    while (auto batch = loader.next()) {
      images += batch->valid;
      benchmark::DoNotOptimize(batch->images.data_ptr());
    }
  }
  state.SetItemsProcessed(images);
  state.counters["workers"] = static_cast<double>(o.workers);
  state.counters["images/s/worker"] =
      benchmark::Counter(static_cast<double>(images) / static_cast<double>(o.workers), benchmark::Counter::kIsRate);
  state.SetLabel(dataset->describe());
}

}  // namespace

int main(int argc, char** argv) {
  std::istringstream workers(std::getenv("FACETRAIN_BENCH_WORKERS") ? std::getenv("FACETRAIN_BENCH_WORKERS") : "1,2");
  for (std::string w; std::getline(workers, w, ',');) {
    benchmark::RegisterBenchmark("BM_Loader", BM_Loader)
        ->Arg(std::atoll(w.c_str()))
        ->ArgName("workers")
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return facetrain::bench::run_benchmarks(argc, argv);
}
