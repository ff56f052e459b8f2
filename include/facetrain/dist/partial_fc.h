#pragma once
// Partial FC (An et al., "Partial FC: Training 10 Million Identities on a Single Machine"; insightface
// arcface_torch partial_fc_v2.py): each step, each rank computes the logits of a sample of its
// classes only, every positive (a class some row of the global batch belongs to) and random
// negatives up to floor(sample_rate x C_r) classes, so the logits, the softmax and their
// gradients shrink by the sample rate. Works with every head (MarginHeadImpl::forward with
// `classes`) and with the distributed cross-entropy (cross_entropy_at).
//
// The draw is insightface's: a uniform random key per local class, 2 for the positives, the
// top-k keys, sorted. It is keyed by (seed, step, micro-batch, first class of the shard) alone, so
// a resumed run draws what the uninterrupted one drew, with no generator state to save.
//
// The centres left out of a step get no gradient; the optimizer then leaves them and their slots
// untouched (train::Optimizer::set_rows: no momentum, no weight decay for them in that step), as
// Partial FC v1 swaps the sampled rows' momentum in and out.
//
// Example:
//   auto sample = facetrain::dist::sample_classes(all_labels, shard, 0.1, facetrain::dist::sample_seed(seed, step, k, shard));
//   auto logits = head->forward(all_embeddings, all_labels, sample.classes);   // [B_global, n]
//   auto loss = facetrain::dist::cross_entropy_at(logits, sample.targets, *group);

#include <torch/torch.h>

#include <cstdint>

#include "facetrain/dist/model_parallel.h"

namespace facetrain::dist {

/// The classes one rank computes in one micro-batch.
struct ClassSample {
  torch::Tensor classes;  ///< [n] int64, sorted, distinct local class indices (in [0, C_r))
  torch::Tensor targets;  ///< [B] int64: each row's column in `classes`, or -1 (class on another rank)
  int64_t positives = 0;  ///< how many of `classes` are the batch's own classes
};

/// How many classes a shard of `local_classes` computes at `sample_rate`: floor(rate x C_r), at
/// least 1 (insightface's num_sample); more when the batch has more distinct positive classes.
int64_t sampled_classes(int64_t local_classes, double sample_rate);

/// The per-(step, micro-batch, shard) seed of the draw.
uint64_t sample_seed(uint64_t seed, int64_t step, int64_t micro_batch, const ClassShard& shard);

/// Samples the classes of `shard` for global `labels` [B] (any integer dtype and device): every
/// positive of the shard, plus uniformly drawn negatives up to sampled_classes(). With
/// sample_rate 1 every class of the shard (0..C_r-1). The tensors are on labels' device.
/// Throws ArgumentError for a rate outside (0, 1].
ClassSample sample_classes(const torch::Tensor& labels, const ClassShard& shard, double sample_rate, uint64_t seed);

}  // namespace facetrain::dist
