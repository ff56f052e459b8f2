#pragma once
// Building blocks shared by the backbones, and the operation counter behind `model summary`.
//
// The backbones keep their children in torch::nn::ModuleList containers (named "0", "1", ...
// exactly as PyTorch's nn.Sequential names them) and run them through `run_layer`, which also
// feeds the active OpCounter. So FLOPs are counted from the real forward pass, not from a
// second description of the network that could drift from it.

#include <torch/torch.h>

#include <cstdint>

namespace facetrain::backbones {

/// A module with a one-tensor forward, for blocks kept in a ModuleList.
class LayerImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

/// Runs one child: a facetrain LayerImpl, or a torch Conv2d, BatchNorm2d/1d, PReLU, Linear,
/// Flatten or Dropout. Throws facetrain::ArgumentError for another module type.
torch::Tensor run_layer(torch::nn::Module& module, const torch::Tensor& x);
/// Runs every child of `list` in order.
torch::Tensor run_layers(torch::nn::ModuleList& list, torch::Tensor x);

/// Counts multiply-accumulates the way ptflops' get_model_complexity_info does (what
/// insightface's flops.py prints as "GFLOPs"): convolution kernel_size * in/groups * out per
/// output position (+1 per output for a bias); Linear in_features * out (+out for a bias);
/// BatchNorm 2 per input element (affine); PReLU 1 per output element. Residual additions,
/// flatten and dropout count 0. `conv_linear` holds the convolution and linear multiply-adds
/// alone (the other common convention).
struct OpCount {
  int64_t ptflops_macs = 0;
  int64_t conv_linear = 0;
};

/// While alive, every run_layer on this thread adds to `count`.
class OpCounter {
 public:
  explicit OpCounter(OpCount& count);
  ~OpCounter();
  OpCounter(const OpCounter&) = delete;
  OpCounter& operator=(const OpCounter&) = delete;

 private:
  OpCount* previous_;
};

/// Synchronised BatchNorm (`model.sync_bn`): in training mode, every BatchNorm run through
/// run_layer normalises with the mean and biased variance of the global batch (all processes'
/// rows), and updates its running statistics with them (the unbiased variance over the global
/// count), as PyTorch's SyncBatchNorm does. Each rank's per-channel count, mean and sum of
/// squared deviations are gathered and combined exactly (Chan et al.'s pairwise update), not
/// through E[x²] - E[x]². The gathering is the dist layer's; this is the hook it implements.
class BatchNormSync {
 public:
  virtual ~BatchNormSync() = default;
  /// Every process's `local` [1, K] stacked in rank order, [W, K]; differentiable (backward:
  /// this rank's row of the gradient summed over ranks).
  virtual torch::Tensor gather(const torch::Tensor& local) const = 0;
};

/// While alive, BatchNorm layers run through run_layer on this thread in training mode
/// synchronise through `sync` (nullptr: plain BatchNorm).
class SyncBatchNormScope {
 public:
  explicit SyncBatchNormScope(const BatchNormSync* sync);
  ~SyncBatchNormScope();
  SyncBatchNormScope(const SyncBatchNormScope&) = delete;
  SyncBatchNormScope& operator=(const SyncBatchNormScope&) = delete;

 private:
  const BatchNormSync* previous_;
};

/// Conv2d(in, out, kernel, stride, padding, groups), bias=False, as insightface builds them.
torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
                            int64_t groups = 1);
/// BatchNorm2d(channels) with PyTorch's defaults (eps 1e-5, momentum 0.1).
torch::nn::BatchNorm2d make_bn(int64_t channels);

}  // namespace facetrain::backbones
