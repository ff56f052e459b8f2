#include "facetrain/heads/circleloss.h"

namespace facetrain::heads {

void CircleLossOptions::read(config::Section& s) {
  s.read("scale", scale);
  s.read("margin", margin);
}

OptionProblems CircleLossOptions::problems() const {
  OptionProblems p;
  detail::check_positive(p, "scale", scale);
  detail::check_range(p, "margin", margin, 0, 1);
  return p;
}

std::string CircleLossOptions::describe() const {
  return "scale=" + detail::fmt(scale) + ", margin=" + detail::fmt(margin);
}

CircleLossImpl::CircleLossImpl(const CircleLossOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {}

torch::Tensor CircleLossImpl::apply_margin(const torch::Tensor& cos, const torch::Tensor&, const Targets& targets, const RowState&) {
  const double m = options_.margin, gamma = options_.scale;
  const double o_p = 1 + m, o_n = -m, delta_p = 1 - m, delta_n = m;
  // Others: γ·α_n·(c − Δ_n) with α_n = max(c − O_n, 0) detached.
  auto alpha_n = (cos.detach() - o_n).clamp_min(0).mul_(gamma);
  auto logits = (cos - delta_n).mul_(alpha_n);
  // Targets: γ·α_p·(gt − Δ_p) with α_p = max(O_p − gt, 0) detached.
  auto gt = gather_targets(cos, targets);
  auto alpha_p = (o_p - gt.detach()).clamp_min(0);
  return put_targets(logits, targets, alpha_p * (gt - delta_p) * gamma);
}

}  // namespace facetrain::heads
