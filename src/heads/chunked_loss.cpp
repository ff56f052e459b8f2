// MarginHeadImpl::chunked_cross_entropy: the margin softmax cross-entropy over blocks of classes,
// with a running log-sum-exp forward and the blocks' logits made again in backward.
#include <limits>

#include "facetrain/core/error.h"
#include "facetrain/heads/margin_head.h"

namespace facetrain::heads {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr double kNormEps = 1e-12;  // as similarity(): x / max(‖x‖, eps)

// The targets among columns [c0, c1) of `all`, as columns of that block.
Targets block_targets(const Targets& all, int64_t c0, int64_t c1) {
  Targets t;
  auto in = (all.cols >= c0).logical_and(all.cols < c1);
  t.rows = all.rows.masked_select(in);
  t.cols = all.cols.masked_select(in) - c0;
  t.labels = torch::full_like(all.labels, -1).index_put_({t.rows}, t.cols);
  return t;
}

// Rows [c0, c1) of the computed classes of a per-class tensor: of all the shard's classes, or of
// the Partial FC sample `classes`.
torch::Tensor block_rows(const torch::Tensor& per_class, const torch::Tensor& classes, int64_t c0, int64_t c1) {
  if (!per_class.defined()) return per_class;
  return classes.defined() ? per_class.index_select(0, classes.slice(0, c0, c1)) : per_class.narrow(0, c0, c1 - c0);
}

std::vector<torch::Tensor> block_params(const torch::Tensor& p0, const torch::Tensor& p1, const torch::Tensor& classes,
                                        int64_t c0, int64_t c1) {
  std::vector<torch::Tensor> rows = {block_rows(p0, classes, c0, c1)};
  if (p1.defined()) rows.push_back(block_rows(p1, classes, c0, c1));
  return rows;
}

}  // namespace

// Inputs: x [B, D] (the gathered embeddings), p0 = weight, p1 = bias (softmax only); y: int64
// labels; classes: the Partial FC sample. (Optional tensors are absent inputs: LibTorch 1.13
// refuses undefined ones.)
struct ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& p0,
                               const c10::optional<torch::Tensor>& p1_in, MarginHeadImpl* head, const torch::Tensor& y,
                               const c10::optional<torch::Tensor>& classes_in, int64_t chunk) {
    MarginHeadImpl& h = *head;
    const torch::Tensor p1 = p1_in.value_or(torch::Tensor()), classes = classes_in.value_or(torch::Tensor());
    const Targets targets = h.targets_of(y, classes);
    const int64_t batch = x.size(0);
    const int64_t n = classes.defined() ? classes.size(0) : h.geometry().num_local_classes();
    const torch::Tensor xf = x.to(p0.scalar_type());
    const torch::Tensor norms = xf.norm(2, 1);

    // Every row's target cosine, from the target rows themselves (no [B, C] matrix to gather from).
    torch::Tensor target_cos;
    if (h.needs_row_targets()) {
      auto cols = classes.defined() ? classes.index_select(0, targets.cols) : targets.cols;
      auto w = torch::nn::functional::normalize(
          p0.index_select(0, cols), torch::nn::functional::NormalizeFuncOptions().p(2).dim(1).eps(kNormEps));
      auto xr = xf.index_select(0, targets.rows) / norms.index_select(0, targets.rows).clamp_min(kNormEps).unsqueeze(1);
      target_cos = h.row_target_cosines((xr * w).sum(1).clamp(-1, 1), targets, batch);
    }
    const RowState rows = h.prepare_rows(norms, target_cos);

    // A running log-sum-exp over this shard's blocks: row maximum `m`, sum of exp(logit - m), and
    // the target logit of the rows whose class is here.
    auto m = torch::full({batch}, -std::numeric_limits<double>::infinity(), xf.options());
    auto s = torch::zeros({batch}, xf.options());
    auto target = torch::zeros({batch}, xf.options());
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
      const int64_t c1 = std::min(n, c0 + chunk);
      const Targets t = block_targets(targets, c0, c1);
      auto logits = h.apply_margin(h.similarity(xf, norms, block_params(p0, p1, classes, c0, c1)), norms, t, rows);
      auto m_new = torch::maximum(m, std::get<0>(logits.max(1)));
      s = s * (m - m_new).exp() + (logits - m_new.unsqueeze(1)).exp().sum(1);
      m = m_new;
      target.index_put_({t.rows}, MarginHeadImpl::gather_targets(logits, t));
    }
    // Across shards: the global maximum, the sums rescaled to it, the target logits.
    const StatisticsReducer& r = h.reducer();
    auto m_all = r.max(m, ReduceScope::kClassShards);
    auto s_all = r.sum(s * (m - m_all).exp(), ReduceScope::kClassShards);
    auto target_all = r.sum(target, ReduceScope::kClassShards);
    auto lse = m_all + s_all.log();

    ctx->save_for_backward({x, p0, p1, lse, classes, targets.rows, targets.cols, targets.labels, rows.target_cos,
                            rows.per_row, rows.value});
    ctx->saved_data["head"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(head));
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["scalar"] = rows.scalar;
    return (lse - target_all).mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor x = saved[0], p0 = saved[1], p1 = saved[2], lse = saved[3], classes = saved[4];
    Targets targets;
    targets.rows = saved[5];
    targets.cols = saved[6];
    targets.labels = saved[7];
    RowState rows;
    rows.target_cos = saved[8];
    rows.per_row = saved[9];
    rows.value = saved[10];
    rows.scalar = ctx->saved_data.at("scalar").toDouble();
    MarginHeadImpl& h = *reinterpret_cast<MarginHeadImpl*>(static_cast<intptr_t>(ctx->saved_data.at("head").toInt()));
    const int64_t chunk = ctx->saved_data.at("chunk").toInt();
    const int64_t batch = x.size(0);
    const int64_t n = classes.defined() ? classes.size(0) : h.geometry().num_local_classes();
    // d loss / d logit = (softmax - one-hot) / B, block by block, through the block's logits made again.
    const torch::Tensor upstream = grads[0] / double(batch);

    torch::Tensor dx = torch::zeros_like(x), dp0 = torch::zeros_like(p0);
    torch::Tensor dp1 = p1.defined() ? torch::zeros_like(p1) : torch::Tensor();
    torch::AutoGradMode enable_grad(true);
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
      const int64_t c1 = std::min(n, c0 + chunk);
      const Targets t = block_targets(targets, c0, c1);
      auto x_leaf = x.detach().requires_grad_(true);
      auto params = block_params(p0.detach(), p1.defined() ? p1.detach() : p1, classes, c0, c1);
      for (auto& p : params) p.requires_grad_(true);
      const torch::Tensor xf = x_leaf.to(p0.scalar_type());
      const torch::Tensor norms = xf.norm(2, 1);
      auto logits = h.apply_margin(h.similarity(xf, norms, params), norms, t, rows);
      torch::Tensor g;
      {
        torch::NoGradGuard no_grad;
        g = (logits.detach() - lse.unsqueeze(1)).exp_();
        g.index_put_({t.rows, t.cols}, g.index({t.rows, t.cols}) - 1);
        g.mul_(upstream);
      }
      variable_list inputs = {x_leaf};
      for (auto& p : params) inputs.push_back(p);
      auto d = torch::autograd::grad({logits}, inputs, {g}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
      torch::NoGradGuard no_grad;
      if (d[0].defined()) dx.add_(d[0]);
      auto put = [&](torch::Tensor& full, const torch::Tensor& part) {
        if (!part.defined()) return;
        if (classes.defined()) {
          full.index_add_(0, classes.slice(0, c0, c1), part);
        } else {
          full.narrow(0, c0, c1 - c0).add_(part);
        }
      };
      put(dp0, d[1]);
      if (p1.defined()) put(dp1, d[2]);
    }
    return {dx, dp0, dp1, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor MarginHeadImpl::chunked_cross_entropy(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                                    int64_t chunk, const torch::Tensor& classes) {
  if (chunk < 1) throw ArgumentError(type_ + ": chunked_cross_entropy needs chunk >= 1, got " + std::to_string(chunk));
  const torch::Tensor y = checked_labels(embeddings, labels);
  if (y.size(0) == 0) throw ArgumentError(type_ + ": chunked_cross_entropy of an empty batch");
  const torch::Tensor c = checked_classes(classes);
  const auto params = class_parameters();
  c10::optional<torch::Tensor> bias, sample;
  if (params.size() > 1) bias = params[1];
  if (c.defined()) sample = c;
  return ChunkedCrossEntropy::apply(embeddings, params.at(0), bias, this, y, sample, chunk);
}

}  // namespace facetrain::heads
