// The heads that also re-weight hard negatives: mv_softmax and curricularface.
#include "facetrain/heads/curricularface.h"
#include "facetrain/heads/mv_softmax.h"
#include "margin_math.h"

namespace facetrain::heads {

namespace {
constexpr double kPi = M_PI;
}

// ---- mv_softmax

void MVSoftmaxOptions::read(config::Section& s) {
  s.read("scale", scale);
  s.read("margin", margin);
  s.read("t", t);
  s.read_enum("variant", variant, {{"am", MVVariant::kAM}, {"arc", MVVariant::kArc}});
  s.read_enum("reweight", reweight, {{"adaptive", MVReweight::kAdaptive}, {"fixed", MVReweight::kFixed}});
  s.read("easy_margin", easy_margin);
}

OptionProblems MVSoftmaxOptions::problems() const {
  OptionProblems p;
  detail::check_positive(p, "scale", scale);
  if (variant == MVVariant::kAM) {
    detail::check_range(p, "margin", margin, 0, 1);
  } else {
    detail::check_range(p, "margin", margin, 0, kPi / 2, "0", "pi/2");
  }
  detail::check_range(p, "t", t, 0, INFINITY, "0", "inf");
  return p;
}

std::string MVSoftmaxOptions::describe() const {
  return "scale=" + detail::fmt(scale) + ", margin=" + detail::fmt(margin) + ", t=" + detail::fmt(t) +
         ", variant=" + (variant == MVVariant::kAM ? "am" : "arc") +
         ", reweight=" + (reweight == MVReweight::kAdaptive ? "adaptive" : "fixed") +
         ", easy_margin=" + (easy_margin ? "true" : "false");
}

MVSoftmaxImpl::MVSoftmaxImpl(const MVSoftmaxOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {}

torch::Tensor MVSoftmaxImpl::apply_margin(const torch::Tensor& cos, const torch::Tensor&, const Targets& targets, const RowState& rows) {
  const auto& o = options_;
  const bool am = o.variant == MVVariant::kAM;
  auto margin_rule = [&](const torch::Tensor& gt) { return am ? gt - o.margin : math::arc(gt, o.margin); };

  // Hard negatives: entries above the target's margined cosine. The mask carries no gradient.
  torch::Tensor mask;
  {
    torch::NoGradGuard no_grad;
    mask = cos > margin_rule(rows.target_cos).unsqueeze(1);
  }
  auto hard = o.reweight == MVReweight::kAdaptive ? cos * (o.t + 1) + o.t : cos + o.t;
  auto logits = torch::where(mask, hard, cos).mul_(o.scale);

  auto gt = gather_targets(cos, targets);
  auto target = margin_rule(gt);
  if (o.easy_margin) target = torch::where(gt > 0, target, gt);
  return put_targets(logits, targets, target * o.scale);
}

// ---- curricularface

void CurricularFaceOptions::read(config::Section& s) {
  s.read("scale", scale);
  s.read("margin", margin);
  s.read("momentum", momentum);
}

OptionProblems CurricularFaceOptions::problems() const {
  OptionProblems p;
  detail::check_positive(p, "scale", scale);
  detail::check_range(p, "margin", margin, 0, kPi / 2, "0", "pi/2");
  detail::check_range(p, "momentum", momentum, 0, 1);
  return p;
}

std::string CurricularFaceOptions::describe() const {
  return "scale=" + detail::fmt(scale) + ", margin=" + detail::fmt(margin) + ", momentum=" + detail::fmt(momentum);
}

CurricularFaceImpl::CurricularFaceImpl(const CurricularFaceOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {
  t = register_buffer("t", torch::zeros({1}));
}

RowState CurricularFaceImpl::prepare_rows(const torch::Tensor&, const torch::Tensor& target_cos) {
  torch::NoGradGuard no_grad;
  // t <- momentum * mean(gt) + (1 - momentum) * t, over the global batch, before use.
  const auto& o = options_;
  auto stats = batch_moments(target_cos);
  auto updated = t.to(torch::kDouble) * (1 - o.momentum) + stats.mean * o.momentum;
  t.copy_(torch::where(stats.count > 0, updated, t.to(torch::kDouble)));
  RowState rows;
  rows.target_cos = target_cos;
  rows.value = t.detach().clone();  // the t of this forward, also when its blocks are made again
  return rows;
}

torch::Tensor CurricularFaceImpl::apply_margin(const torch::Tensor& cos, const torch::Tensor&, const Targets& targets, const RowState& rows) {
  const auto& o = options_;
  torch::Tensor mask;
  {
    torch::NoGradGuard no_grad;
    mask = cos > math::arc(rows.target_cos, o.margin).unsqueeze(1);
  }
  auto logits = torch::where(mask, cos * (cos + rows.value), cos).mul_(o.scale);

  auto gt = gather_targets(cos, targets);
  auto target =
      torch::where(gt > std::cos(kPi - o.margin), math::arc(gt, o.margin), gt - std::sin(kPi - o.margin) * o.margin);
  return put_targets(logits, targets, target * o.scale);
}

}  // namespace facetrain::heads
