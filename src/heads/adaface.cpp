#include "facetrain/heads/adaface.h"

#include <cmath>

namespace facetrain::heads {

namespace {
constexpr double kEps = 1e-3;  // the reference's eps: cosine clamp, θ clip, std offset
}

void AdaFaceOptions::read(config::Section& s) {
  s.read("scale", scale);
  s.read("margin", margin);
  s.read("h", h);
  s.read("t_alpha", t_alpha);
}

OptionProblems AdaFaceOptions::problems() const {
  OptionProblems p;
  detail::check_positive(p, "scale", scale);
  detail::check_range(p, "margin", margin, 0, 1);
  detail::check_positive(p, "h", h);
  detail::check_range(p, "t_alpha", t_alpha, 0, 1);
  return p;
}

std::string AdaFaceOptions::describe() const {
  return "scale=" + detail::fmt(scale) + ", margin=" + detail::fmt(margin) + ", h=" + detail::fmt(h) +
         ", t_alpha=" + detail::fmt(t_alpha);
}

AdaFaceImpl::AdaFaceImpl(const AdaFaceOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {
  batch_mean = register_buffer("batch_mean", torch::full({1}, 20.0));
  batch_std = register_buffer("batch_std", torch::full({1}, 100.0));
}

RowState AdaFaceImpl::prepare_rows(const torch::Tensor& norms, const torch::Tensor&) {
  const auto& o = options_;
  torch::NoGradGuard no_grad;
  auto safe_norms = norms.detach().clamp(0.001, 100);
  auto stats = batch_moments(safe_norms);
  auto a = o.t_alpha;
  auto mean = batch_mean.to(torch::kDouble), std = batch_std.to(torch::kDouble);
  batch_mean.copy_(torch::where(stats.count > 0, stats.mean * a + mean * (1 - a), mean));
  batch_std.copy_(torch::where(stats.count > 1, stats.std * a + std * (1 - a), std));
  RowState rows;
  rows.per_row = ((safe_norms - batch_mean) / (batch_std + kEps) * o.h).clamp(-1, 1);  // the margin scaler
  return rows;
}

torch::Tensor AdaFaceImpl::apply_margin(const torch::Tensor& cos_in, const torch::Tensor&, const Targets& targets,
                                        const RowState& rows) {
  const auto& o = options_;
  auto cos = cos_in.clamp(-1 + kEps, 1 - kEps);
  // Non-targets: cos(clip(acos(c), eps, π − eps)) is c itself, since |c| <= 1 − eps keeps acos(c)
  // inside [0.0447, 3.097]; so they are s·c, without two transcendental passes over [B, C].
  auto logits = cos * o.scale;
  auto gt = gather_targets(cos, targets);
  auto ms = rows.per_row.index_select(0, targets.rows);
  auto theta = (gt.acos() - o.margin * ms).clamp(kEps, M_PI - kEps);
  auto target = theta.cos() - (o.margin + o.margin * ms);
  return put_targets(logits, targets, target * o.scale);
}

}  // namespace facetrain::heads
