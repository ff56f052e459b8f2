#pragma once
// Model-parallel class centres, as insightface's Partial FC splits them: rank r of W holds a
// contiguous range of the C classes, sees the embeddings and labels of the whole global batch
// (gathered from every rank, with gradients flowing back to the rank that made them), computes
// the logits of its own classes only, [B_global, C_r], and the softmax cross-entropy is computed
// across ranks with two all-reduces (row max, row sum of exponentials) plus one for the target
// logits: the [B_global, C] matrix is never assembled anywhere.
//
// Gradients: every rank's loss is the mean over the global batch, so the head's gradient on each
// rank is already complete for its classes; the embeddings' gradients are summed over the class
// shards and handed back to the rank that produced those rows; the backbone's gradients are then
// summed (not averaged) over ranks. K steps on W ranks at per-rank batch b are, up to float
// rounding, K steps on one rank at batch W*b.
//
// Example (one rank of W):
//   auto shard = facetrain::dist::class_shard(num_classes, group->rank(), group->size());
//   auto head = spec.build({512, num_classes, shard.begin, shard.end});
//   head->set_reducer(std::make_shared<facetrain::dist::ShardReducer>(group));
//   auto x = facetrain::dist::all_gather_rows(backbone->forward(images), *group);   // [B_global, D]
//   auto y = group->all_gather(labels);                                              // [B_global]
//   auto loss = facetrain::dist::cross_entropy(head->forward(x, y), y, shard.begin, *group);
//   loss.backward();

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

#include "facetrain/dist/group.h"
#include "facetrain/heads/margin_head.h"

namespace facetrain::dist {

/// The classes [begin, end) that rank `rank` of `world` holds: C / W each, the first C % W ranks
/// one more (insightface's split). Throws ArgumentError when there are fewer classes than ranks.
struct ClassShard {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
ClassShard class_shard(int64_t num_classes, int64_t rank, int64_t world);

/// The rows of every rank's `local` [b, ...] concatenated in rank order, [W*b, ...]. Backward: the
/// gradient of the whole is summed over ranks and this rank's rows are returned (each rank's
/// head contributes the part that comes from its classes). Every rank must pass the same shape.
torch::Tensor all_gather_rows(const torch::Tensor& local, Group& group);

/// Mean softmax cross-entropy over the B rows of `logits` [B, C_r], the columns of this rank's
/// classes [class_begin, class_begin + C_r), for `labels` [B] (global class ids, the same on
/// every rank). Equals torch's cross_entropy on the concatenation of every rank's logits, in value
/// (float64 accumulation of the row sums is not used: the sums are in logits' dtype, as torch's
/// are) and in gradient (softmax - one-hot) / B. Returns a 0-d tensor, the same on every rank.
torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t class_begin,
                            Group& group);

/// The same, with each row's target given as a column of this rank's `logits`: `targets` [B]
/// int64, the column of the row's class, or -1 when the class is on another rank (or, with
/// Partial FC, the column of the row's class among this rank's sampled classes). Exactly one rank
/// must hold each row's target.
torch::Tensor cross_entropy_at(const torch::Tensor& logits, const torch::Tensor& targets, Group& group);

/// What the class centres cost each rank, printed at the start of a run (`memory:`).
struct MemoryPlanInput {
  int64_t num_classes = 0;
  int64_t embedding_size = 512;
  int64_t world_size = 1;
  int64_t global_batch = 0;     ///< rows every rank's head sees per micro-batch (all ranks' batches)
  int64_t optimizer_slots = 1;  ///< tensors per parameter element (SGD momentum 1, AdamW 2)
  double sample_rate = 1.0;     ///< Partial FC: the share of centres in each step's logits
  int64_t chunk = 0;            ///< head.chunk_size: classes per block of the chunked cross-entropy; 0 off
  bool optimizer_step = true;   ///< false: forward and backward alone (no optimizer temporary)
  int64_t bytes_per_value = 4;  ///< float32 centres
};
struct MemoryPlan {
  int64_t local_classes = 0;                          ///< centres on the largest shard
  int64_t centres = 0, gradients = 0, optimizer = 0;  ///< bytes
  /// Bytes of the [B_global, C_r * sample_rate] matrices (with head.chunk_size: [B_global, chunk]
  /// blocks) alive at once at the step's peak: the
  /// cosines before and after their clamp, the logits, the softmax kept for backward and its
  /// gradient (5 of them, float32; `facetrain bench head` measured 4.3 to 4.4 live).
  int64_t logits = 0;
  /// Copies of the centres the step makes: the normalised centres kept for backward and their
  /// gradient (2 x [n, D], n the classes of a step, or of a block with chunk; 3 with Partial FC,
  /// which gathers them first), and one centres-sized optimizer temporary (SGD's g + wd·p,
  /// AdamW's denominator).
  int64_t work = 0;
  /// The estimate of the head's peak. Its parts do not all live at once: `facetrain bench head`
  /// measured the live peak at 68 to 74 % of it for the plain cross-entropy, and 99 to 104 % with
  /// head.chunk_size (docs/benchmarks.md).
  int64_t total() const { return centres + gradients + optimizer + logits + work; }
  /// "1 000 000 classes / 8 ranks = 125 000 per rank: centres 256 MiB, gradients 256 MiB, ..."
  std::string describe() const;
};
MemoryPlan plan_memory(const MemoryPlanInput& in);

/// The heads' statistics hook for model-parallel heads: every rank sees the whole global batch,
/// so kClassShards sums over all ranks (each row's value is non-zero on the rank that holds its
/// class) and kBatchRows is already global (returned as it is).
class ShardReducer : public heads::StatisticsReducer {
 public:
  explicit ShardReducer(std::shared_ptr<Group> group) : group_(std::move(group)) {}
  torch::Tensor sum(const torch::Tensor& local, heads::ReduceScope scope) const override;
  torch::Tensor max(const torch::Tensor& local, heads::ReduceScope scope) const override;

 private:
  std::shared_ptr<Group> group_;
};

}  // namespace facetrain::dist
