#pragma once
// The base of every margin head: class centres, normalisation, input checks, the class range of
// this shard, and the statistics hook. A head implements only its margin rule on the cosine
// matrix (`apply_margin`).
//
// Notation (as in docs/heads.md): x̂ = x / max(‖x‖, 1e-12), Ŵ = rows of `weight` scaled to unit
// length, c_ij = clamp(x̂_i · Ŵ_j, -1, 1), gt_i = c_{i, y_i}.
//
// Shapes: embeddings [B, D] (any floating dtype; computed in the weight's dtype), labels [B]
// (integer, global class ids in [0, num_classes)), logits [B, C_local] where C_local is the
// number of classes this head holds (all of them unless the classes are split across ranks).
//
// Example:
//   auto head = facetrain::heads::make_head(YAML::Load("{type: arcface}"), 512, 1000);
//   torch::Tensor logits = head->forward(embeddings, labels);         // [B, 1000]
//   auto loss = torch::nn::functional::cross_entropy(logits, labels);

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "facetrain/config/options.h"

namespace facetrain::heads {

/// The size of a head and which classes it holds: [class_begin, class_end) of num_classes.
struct HeadGeometry {
  int64_t embedding_size = 0;  ///< D
  int64_t num_classes = 0;     ///< C, over all shards
  int64_t class_begin = 0;     ///< first class of this shard
  int64_t class_end = -1;      ///< one past the last class of this shard; -1 means num_classes

  HeadGeometry() = default;
  HeadGeometry(int64_t embedding_size, int64_t num_classes, int64_t class_begin = 0, int64_t class_end = -1)
      : embedding_size(embedding_size), num_classes(num_classes), class_begin(class_begin), class_end(class_end) {}

  int64_t end() const { return class_end < 0 ? num_classes : class_end; }
  int64_t num_local_classes() const { return end() - class_begin; }
  /// Throws facetrain::ArgumentError unless D > 0, C > 0 and 0 <= begin < end <= C.
  void validate() const;
};

/// How the statistics a head keeps are combined across processes.
enum class ReduceScope {
  /// Per-row partial values from the class shards that see the same rows (model parallel):
  /// each row's value is non-zero on the one shard that holds its class.
  kClassShards,
  /// Sums over disjoint parts of the global batch (data parallel).
  kBatchRows,
};

/// The one hook through which heads combine their statistics (CurricularFace `t`, AdaFace
/// norm statistics, the target cosine of rows whose class lives on another shard). A
/// distributed run installs an implementation that all-reduces (sums) over the right group, so
/// that buffers stay identical on every rank.
class StatisticsReducer {
 public:
  virtual ~StatisticsReducer() = default;
  /// Element-wise sum of `local` over every participant of `scope`. Must return a tensor of the
  /// same shape, dtype and device. The single-process reducer returns `local` itself.
  virtual torch::Tensor sum(const torch::Tensor& local, ReduceScope scope) const = 0;
  /// Element-wise maximum, likewise (the chunked cross-entropy's row maxima over class shards).
  /// The default throws ArgumentError: a reducer that combines shards must say how.
  virtual torch::Tensor max(const torch::Tensor& local, ReduceScope scope) const;
};

/// The single-process reducer: nothing to combine.
class LocalReducer : public StatisticsReducer {
 public:
  torch::Tensor sum(const torch::Tensor& local, ReduceScope) const override { return local; }
  torch::Tensor max(const torch::Tensor& local, ReduceScope) const override { return local; }
};

/// Which logits of this shard are targets: entry (rows[k], cols[k]) is row rows[k]'s class.
struct Targets {
  torch::Tensor labels;  ///< [B] int64: the column of the row's class, or -1 when it is not here
  torch::Tensor rows;    ///< [n] int64: rows whose class is among these columns
  torch::Tensor cols;    ///< [n] int64: their column
};

/// What a head derives from whole rows once per forward, before any logit. Its buffers change
/// there and only there (prepare_rows); the margin rule then reads this for every block of
/// columns, so that a forward over column blocks (chunked_cross_entropy) equals one over all.
struct RowState {
  torch::Tensor target_cos;  ///< [B] detached: every row's target cosine, all shards (needs_row_targets)
  torch::Tensor per_row;     ///< [B] a head's own per-row value (AdaFace: the margin scaler)
  torch::Tensor value;       ///< a head's own [1] value (CurricularFace: t after its update)
  double scalar = 0;         ///< a head's own number (SphereFace: λ)
};

using config::OptionProblem;
using config::OptionProblems;
using config::throw_if_invalid;

/// Base of every margin head. Parameters: `weight` [C_local, D] (row = class); `softmax` adds
/// `bias` [C_local]. Heads that keep statistics register them as buffers.
class MarginHeadImpl : public torch::nn::Module {
 public:
  /// Logits [B, C_local] for `embeddings` [B, D] and `labels` [B]. Checks its inputs (throws
  /// facetrain::ArgumentError naming the problem), normalises, computes the cosine matrix and
  /// hands it to the head's margin rule. Nothing larger than [B, C_local] is materialised.
  torch::Tensor forward(const torch::Tensor& embeddings, const torch::Tensor& labels);

  /// Partial FC: the logits [B, n] of the classes `classes` only, a sorted int64 tensor [n] of
  /// distinct local class indices (in [0, C_local)) that holds every target of this shard; column
  /// k is class `classes[k]`. The values are the columns `classes` of forward(embeddings, labels)
  /// (every head's rule is per column given the row's target), the centres outside `classes` get
  /// no gradient (zero rows), and buffers change as in forward. Throws ArgumentError when a
  /// target of this shard is not in `classes`, or `classes` is not sorted, distinct and in range.
  torch::Tensor forward(const torch::Tensor& embeddings, const torch::Tensor& labels, const torch::Tensor& classes);

  /// The mean softmax cross-entropy of the logits over the B rows, computed in blocks of `chunk`
  /// classes: a block's logits are made, folded into a running log-sum-exp and dropped, and
  /// backward makes them again, so nothing of [B, C_local] exists at once (the largest tensors
  /// are [B, chunk]). Across shards, the row maxima, sums and target logits are combined through
  /// the reducer (ReduceScope::kClassShards), so with dist::ShardReducer the result is the
  /// distributed cross-entropy. Equals cross_entropy(forward(x, y), y) (or the Partial FC forward
  /// with `classes`) up to float rounding, in value, gradients and buffers (which change once).
  /// The target cosines that CurricularFace and MV-Softmax need for every row come from the
  /// target rows directly (x̂ · ŵ_y), not from the cosine matrix.
  torch::Tensor chunked_cross_entropy(const torch::Tensor& embeddings, const torch::Tensor& labels, int64_t chunk,
                                      const torch::Tensor& classes = torch::Tensor());

  /// The registered type name ("arcface", ...).
  const std::string& type() const { return type_; }
  const HeadGeometry& geometry() const { return geometry_; }

  /// Installs the hook that combines statistics across processes (default: LocalReducer).
  void set_reducer(std::shared_ptr<const StatisticsReducer> reducer);
  const StatisticsReducer& reducer() const { return *reducer_; }

  /// Like Module::to, but integer buffers (SphereFace `iteration`) keep their integer dtype.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  /// "facetrain::heads::ArcFace(embedding_size=512, num_classes=1000, scale=64, ...)"
  void pretty_print(std::ostream& stream) const override;

  /// Class centres [C_local, D].
  torch::Tensor weight;

 protected:
  MarginHeadImpl(std::string type, const HeadGeometry& geometry);

  /// The parameters with one row per class, in a fixed order: `weight` (softmax: and `bias`).
  virtual std::vector<torch::Tensor> class_parameters() const { return {weight}; }

  /// Similarity matrix [B, n] that `apply_margin` receives, for `rows`: class_parameters()
  /// restricted to the n classes computed (all of them, a Partial FC sample, or a block).
  /// Default: the clamped cosines c = clamp(x̂ Ŵᵀ, -1, 1). `norms` [B] are ‖x‖ (with gradient).
  virtual torch::Tensor similarity(const torch::Tensor& x, const torch::Tensor& norms,
                                   const std::vector<torch::Tensor>& rows);

  /// Whether prepare_rows needs every row's target cosine (RowState::target_cos).
  virtual bool needs_row_targets() const { return false; }
  /// Once per forward: updates the head's buffers from whole rows and returns what the margin
  /// rule needs of them. `target_cos` is defined when needs_row_targets(). Default: nothing.
  virtual RowState prepare_rows(const torch::Tensor& norms, const torch::Tensor& target_cos);

  /// The head's margin rule on a block of columns: logits [B, n] from the cosines `cos`, the
  /// embedding norms `norms` [B] (with gradient; detach them where the reference does), the
  /// targets among these columns and the row state. Pure: no buffer changes, so a block can be
  /// computed again in backward.
  virtual torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                                     const RowState& rows) = 0;

  /// The options, for pretty_print: "scale=64, margin=0.5".
  virtual std::string describe_options() const = 0;

  // --- helpers for margin rules -----------------------------------------------------------

  /// The target entries of `m` [B, C_local], as a vector [n] aligned with targets.rows.
  static torch::Tensor gather_targets(const torch::Tensor& m, const Targets& targets);
  /// Overwrites the target entries of `logits` with `values` [n], in place; returns `logits`.
  static torch::Tensor put_targets(torch::Tensor logits, const Targets& targets, const torch::Tensor& values);

  /// The target cosine of every row [B] (detached) from this shard's target values `gt` [n]
  /// (aligned with targets.rows), also for rows whose class is on another shard (through the
  /// reducer, ReduceScope::kClassShards). Throws facetrain::ArgumentError for a head holding
  /// part of the classes when no reducer was installed: it would silently use 0.
  torch::Tensor row_target_cosines(const torch::Tensor& gt, const Targets& targets, int64_t batch) const;

  /// Mean and unbiased standard deviation of `values` [B] over the global batch (through the
  /// reducer, ReduceScope::kBatchRows), as float64 tensors of shape [1] on values' device, plus
  /// the row count. std is NaN with fewer than two rows; callers decide what that means.
  struct Moments {
    torch::Tensor count, mean, std;
  };
  Moments batch_moments(const torch::Tensor& values) const;

  /// Registers the `weight` parameter [C_local, D], drawn from N(0, std²) (insightface's
  /// Partial FC and CurricularFace initialise class centres this way). Split-independent: the
  /// rows are those of one [C, D] draw, whatever class range this shard holds (see
  /// init_class_rows), so a run starts from the same centres on any number of ranks.
  void init_weight_normal(double std = 0.01);
  /// Registers `weight` [C_local, D] drawn from U(-bound, bound), split-independent likewise.
  void init_weight_uniform(double bound);

 private:
  std::string type_;
  HeadGeometry geometry_;
  std::shared_ptr<const StatisticsReducer> reducer_;
  bool reducer_installed_ = false;  // a shard without one cannot know other shards' targets

  friend struct ChunkedCrossEntropy;  // chunked_loss.cpp: the blocks' forward and backward

  /// Checks the inputs of every forward; the labels as int64 on the weight's device.
  torch::Tensor checked_labels(const torch::Tensor& embeddings, const torch::Tensor& labels) const;
  /// `classes` (undefined, or a Partial FC sample) checked for shape and dtype, as int64 on the
  /// weight's device.
  torch::Tensor checked_classes(const torch::Tensor& classes) const;
  /// The targets among the shard's classes, or among `classes` (checked) when defined.
  Targets targets_of(const torch::Tensor& y, const torch::Tensor& classes) const;
  /// class_parameters() restricted to `classes` (all when undefined).
  std::vector<torch::Tensor> rows_of(const torch::Tensor& classes) const;
  // Both forwards: `classes` undefined means every class of the shard.
  torch::Tensor forward_over(const torch::Tensor& embeddings, const torch::Tensor& labels,
                             const torch::Tensor& classes);
};

/// Rows [class_begin, end) of a [num_classes, D] matrix filled block by block: rows
/// [k*kClassInitBlock, (k+1)*kClassInitBlock) by `fill` with a generator seeded from (seed, k).
/// Every split of the classes into shards therefore gets the same rows; `seed` is drawn from the
/// global CPU generator (one number), so torch::manual_seed still decides the initialisation.
constexpr int64_t kClassInitBlock = 1024;
torch::Tensor init_class_rows(const HeadGeometry& geometry,
                              const std::function<void(torch::Tensor&, at::Generator&)>& fill);

/// The LibTorch holder of any head: `MarginHead head = make_head(...)`; `head->forward(x, y)`.
TORCH_MODULE(MarginHead);

}  // namespace facetrain::heads
