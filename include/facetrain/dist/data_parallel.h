#pragma once
// The data-parallel backbone: the same weights on every rank, gradients summed over ranks in
// buckets that start while backward is still running (as PyTorch's DistributedDataParallel), and
// synchronised BatchNorm.
//
// The gradients are summed, not averaged: every rank's loss is already the mean over the global
// batch (model_parallel.h), so the sum is the gradient of that mean.
//
// Example:
//   dist::broadcast_module(*backbone, *group);                   // rank 0's weights everywhere
//   dist::GradientSync sync(backbone_params, group, 25.0);       // 25 MB buckets
//   for (micro-batch k of n) {
//     sync.arm(k == n - 1);                                      // no_sync until the last one
//     loss.backward();
//   }
//   sync.finish();                                               // .grad now holds the sums

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <vector>

#include "facetrain/backbones/layers.h"
#include "facetrain/dist/group.h"

namespace facetrain::dist {

/// Copies rank 0's parameters and buffers of `module` into every rank's.
void broadcast_module(torch::nn::Module& module, Group& group);

/// Sums the gradients of `params` over the ranks of `group` after each armed backward.
/// Parameters are put into buckets of about `bucket_mb` megabytes in reverse order (the order
/// backward produces them); a bucket's all-reduce starts, in bucket order on every rank, as soon
/// as its last gradient has been accumulated. Parameters that got no gradient count as zeros.
/// With `wire` set (kHalf or kBFloat16), each bucket is rounded to that dtype before the sum and
/// the sum widened back (gradient compression: half the bytes on the network). Throws
/// ArgumentError for another dtype, and for kBFloat16 on Gloo (which cannot sum it).
class GradientSync {
 public:
  GradientSync(std::vector<torch::Tensor> params, std::shared_ptr<Group> group, double bucket_mb,
               std::optional<torch::Dtype> wire = std::nullopt);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  /// Whether the next backward's gradients are summed as they come (true), or only accumulated
  /// locally (false: the micro-batches before the last of an accumulated step).
  void arm(bool sync);
  /// Waits for every bucket of the armed backward (starting those backward did not complete)
  /// and writes the sums into the parameters' .grad. Does nothing when not armed.
  void finish();

  int64_t num_buckets() const;

 private:
  struct State;
  std::shared_ptr<State> s_;
};

/// BatchNormSync over a group: all_gather_rows of each rank's statistics.
class GroupBatchNormSync : public backbones::BatchNormSync {
 public:
  explicit GroupBatchNormSync(std::shared_ptr<Group> group) : group_(std::move(group)) {}
  torch::Tensor gather(const torch::Tensor& local) const override;

 private:
  std::shared_ptr<Group> group_;
};

}  // namespace facetrain::dist
