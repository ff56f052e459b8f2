#include "facetrain/dist/model_parallel.h"

#include <cmath>

#include "facetrain/core/error.h"
#include "facetrain/core/memory.h"
#include "facetrain/dist/partial_fc.h"

namespace facetrain::dist {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

// The group travels through the autograd context as an address: the caller keeps it alive for
// the backward pass (the trainer owns it for the whole run).
int64_t address_of(Group& group) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(&group)); }
Group& group_at(const AutogradContext* ctx) {
  return *reinterpret_cast<Group*>(static_cast<intptr_t>(ctx->saved_data.at("group").toInt()));
}

struct AllGatherRows : public torch::autograd::Function<AllGatherRows> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& local, Group* group) {
    ctx->saved_data["group"] = address_of(*group);
    ctx->saved_data["rows"] = local.size(0);
    return group->all_gather(local.contiguous());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    Group& group = group_at(ctx);
    const int64_t rows = ctx->saved_data.at("rows").toInt();
    torch::Tensor g = grads[0].clone(at::MemoryFormat::Contiguous);
    group.all_reduce(g, ReduceOp::kSum);
    return {g.narrow(0, group.rank() * rows, rows), torch::Tensor()};
  }
};

struct DistCrossEntropy : public torch::autograd::Function<DistCrossEntropy> {
  // targets: [B] int64 on logits' device, the column of each row's class on this rank or -1.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& targets,
                               Group* group) {
    const int64_t batch = logits.size(0);
    // Row max over every shard; exp(x - max) summed over every shard.
    torch::Tensor max = std::get<0>(logits.max(1, /*keepdim=*/true)).contiguous();
    group->all_reduce(max, ReduceOp::kMax);
    torch::Tensor p = (logits - max).exp_();
    torch::Tensor sum = p.sum(1, /*keepdim=*/true).contiguous();
    group->all_reduce(sum, ReduceOp::kSum);
    // The target logit of each row, from the shard that holds its class (0 elsewhere).
    auto mine = targets >= 0;
    auto col = torch::where(mine, targets, torch::zeros_like(targets));
    torch::Tensor target =
        torch::where(mine, logits.gather(1, col.unsqueeze(1)).squeeze(1), torch::zeros({batch}, logits.options()))
            .contiguous();
    group->all_reduce(target, ReduceOp::kSum);
    // loss_i = max_i + log(sum_i) - target_i, as log_softmax + nll_loss compute it.
    torch::Tensor loss = (max.squeeze(1) + sum.squeeze(1).log() - target).mean();
    p.div_(sum);  // the softmax of this shard's columns, kept for backward
    ctx->save_for_backward({p, col, mine});
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor p = saved[0], col = saved[1], mine = saved[2];
    const int64_t batch = p.size(0);
    torch::Tensor grad = p.clone();
    auto rows = mine.nonzero().view(-1);
    grad.index_put_({rows, col.index_select(0, rows)}, grad.index({rows, col.index_select(0, rows)}) - 1);
    grad.mul_(grads[0] / double(batch));
    return {grad, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

ClassShard class_shard(int64_t num_classes, int64_t rank, int64_t world) {
  if (world < 1 || rank < 0 || rank >= world)
    throw ArgumentError("class_shard: rank " + std::to_string(rank) + " of " + std::to_string(world));
  if (num_classes < world)
    throw ArgumentError("cannot split " + std::to_string(num_classes) + " classes over " + std::to_string(world) +
                        " ranks: every rank must hold at least one class");
  const int64_t base = num_classes / world, extra = num_classes % world;
  ClassShard s;
  s.begin = base * rank + std::min(rank, extra);
  s.end = s.begin + base + (rank < extra ? 1 : 0);
  return s;
}

torch::Tensor all_gather_rows(const torch::Tensor& local, Group& group) {
  if (group.size() == 1) return local;
  return AllGatherRows::apply(local, &group);
}

torch::Tensor cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t class_begin,
                            Group& group) {
  if (logits.dim() != 2) throw ArgumentError("dist::cross_entropy: logits must be [B, C_local]");
  if (labels.dim() != 1 || labels.size(0) != logits.size(0))
    throw ArgumentError("dist::cross_entropy: labels must be [" + std::to_string(logits.size(0)) + "]");
  if (logits.size(0) == 0) throw ArgumentError("dist::cross_entropy: an empty batch");
  auto y = labels.to(logits.device(), torch::kLong) - class_begin;
  auto mine = (y >= 0).logical_and(y < logits.size(1));
  return DistCrossEntropy::apply(logits, torch::where(mine, y, torch::full_like(y, -1)), &group);
}

torch::Tensor cross_entropy_at(const torch::Tensor& logits, const torch::Tensor& targets, Group& group) {
  if (logits.dim() != 2) throw ArgumentError("dist::cross_entropy_at: logits must be [B, C_local]");
  if (targets.dim() != 1 || targets.size(0) != logits.size(0))
    throw ArgumentError("dist::cross_entropy_at: targets must be [" + std::to_string(logits.size(0)) + "]");
  if (logits.size(0) == 0) throw ArgumentError("dist::cross_entropy_at: an empty batch");
  auto t = targets.to(logits.device(), torch::kLong);
  if ((t >= logits.size(1)).any().item<bool>())
    throw ArgumentError("dist::cross_entropy_at: a target column is beyond the " + std::to_string(logits.size(1)) +
                        " columns of the logits");
  return DistCrossEntropy::apply(logits, t, &group);
}

MemoryPlan plan_memory(const MemoryPlanInput& in) {
  MemoryPlan p;
  p.local_classes = class_shard(in.num_classes, 0, in.world_size).size();
  const int64_t values = p.local_classes * in.embedding_size;
  p.centres = values * in.bytes_per_value;
  p.gradients = p.centres;
  p.optimizer = p.centres * in.optimizer_slots;
  const int64_t sampled = in.sample_rate < 1 ? sampled_classes(p.local_classes, in.sample_rate) : p.local_classes;
  const int64_t block = in.chunk > 0 ? std::min(in.chunk, sampled) : sampled;
  p.logits = 5 * in.global_batch * block * 4;
  p.work = (in.sample_rate < 1 || in.chunk > 0 ? 3 : 2) * block * in.embedding_size * 4 +
           (in.optimizer_step ? p.centres : 0);
  return p;
}

std::string MemoryPlan::describe() const {
  return std::to_string(local_classes) + " classes per rank: centres " + format_bytes(centres) + ", gradients " +
         format_bytes(gradients) + ", optimizer " + format_bytes(optimizer) + ", logits and softmax " + format_bytes(logits) +
         ", centre copies and optimizer temporaries " + format_bytes(work) + "; " +
         format_bytes(total()) + " per rank for the head, besides the backbone";
}

namespace {
torch::Tensor reduce_shards(const torch::Tensor& local, heads::ReduceScope scope, Group& group, ReduceOp op) {
  if (scope == heads::ReduceScope::kBatchRows || group.size() == 1) return local;
  torch::Tensor out = local.clone(at::MemoryFormat::Contiguous);
  group.all_reduce(out, op);
  return out;
}
}  // namespace

torch::Tensor ShardReducer::sum(const torch::Tensor& local, heads::ReduceScope scope) const {
  return reduce_shards(local, scope, *group_, ReduceOp::kSum);
}

torch::Tensor ShardReducer::max(const torch::Tensor& local, heads::ReduceScope scope) const {
  return reduce_shards(local, scope, *group_, ReduceOp::kMax);
}

}  // namespace facetrain::dist
