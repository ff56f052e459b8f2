#pragma once
// The head demo: trains a linear embedding and a margin head on random clusters, on CPU, in
// seconds. It is the main job of `scripts/demo.sh` until the full trainer exists, and an
// end-to-end check that every head learns.
//
// Example (configs/head_demo.yaml):
//   seed: 0
//   data: {classes: 30, feature_dim: 32, samples_per_class: 40, noise: 1.0}
//   model: {embedding_size: 16}
//   head: {type: arcface, scale: 64, margin: 0.5}
//   train: {steps: 300, batch_size: 64, lr: 0.05, momentum: 0.9, log_every: 30}

#include <functional>
#include <string>
#include <vector>

#include "facetrain/config/reader.h"
#include "facetrain/heads/registry.h"

namespace facetrain::train {

struct HeadDemoOptions {
  uint64_t seed = 0;
  // data: `classes` Gaussian clusters in `feature_dim` dimensions; half of each class is held out
  int64_t classes = 20;
  int64_t feature_dim = 32;
  int64_t samples_per_class = 40;
  double noise = 0.6;  ///< cluster spread relative to the distance between centres
  // model: a linear map to `embedding_size`, then the head
  int64_t embedding_size = 16;
  // train: SGD with momentum
  int64_t steps = 200;
  int64_t batch_size = 64;
  double lr = 0.05;
  double momentum = 0.9;
  int64_t log_every = 20;
  heads::HeadSpec head;  ///< from the `head` section (required)

  /// Reads sections `data`, `model`, `head`, `train` and `seed`; problems go to the Diagnostics.
  void read(config::Section& root);
};

struct HeadDemoResult {
  std::vector<double> losses;  ///< training loss at every step
  double accuracy_before = 0;  ///< held-out nearest-centre accuracy before training
  double accuracy_after = 0;   ///< ... and after
};

/// Trains as configured; `log` receives progress lines (with rate and ETA).
HeadDemoResult run_head_demo(const HeadDemoOptions& options, const std::function<void(const std::string&)>& log);

}  // namespace facetrain::train
