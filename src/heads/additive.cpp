// The heads whose margin touches only the target logit: cosface, arcface, combined. Each is
// s·c everywhere, then s·target(gt) at the targets.
#include "facetrain/heads/arcface.h"
#include "facetrain/heads/combined.h"
#include "facetrain/heads/cosface.h"
#include "margin_math.h"

namespace facetrain::heads {

namespace {
constexpr double kPi = M_PI;
}  // namespace

// ---- cosface

void CosFaceOptions::read(config::Section& s) {
  s.read("scale", scale);
  s.read("margin", margin);
}

OptionProblems CosFaceOptions::problems() const {
  OptionProblems p;
  detail::check_positive(p, "scale", scale);
  detail::check_range(p, "margin", margin, 0, 1);
  return p;
}

std::string CosFaceOptions::describe() const {
  return "scale=" + detail::fmt(scale) + ", margin=" + detail::fmt(margin);
}

CosFaceImpl::CosFaceImpl(const CosFaceOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {}

torch::Tensor CosFaceImpl::apply_margin(const torch::Tensor& cos, const torch::Tensor&, const Targets& targets, const RowState&) {
  auto gt = gather_targets(cos, targets);
  return put_targets(cos * options_.scale, targets, (gt - options_.margin) * options_.scale);
}

// ---- arcface

void ArcFaceOptions::read(config::Section& s) {
  s.read("scale", scale);
  s.read("margin", margin);
  s.read("easy_margin", easy_margin);
  s.read_enum("gradient", gradient,
              {{"autograd", ArcFaceGradient::kAutograd}, {"straight_through", ArcFaceGradient::kStraightThrough}});
}

OptionProblems ArcFaceOptions::problems() const {
  OptionProblems p;
  detail::check_positive(p, "scale", scale);
  detail::check_range(p, "margin", margin, 0, kPi / 2, "0", "pi/2");
  if (easy_margin && gradient == ArcFaceGradient::kStraightThrough)
    p.push_back(
        {"easy_margin", "cannot be combined with gradient: straight_through (its reference has no easy margin)"});
  return p;
}

std::string ArcFaceOptions::describe() const {
  return "scale=" + detail::fmt(scale) + ", margin=" + detail::fmt(margin) +
         ", easy_margin=" + (easy_margin ? "true" : "false") +
         ", gradient=" + (gradient == ArcFaceGradient::kAutograd ? "autograd" : "straight_through");
}

ArcFaceImpl::ArcFaceImpl(const ArcFaceOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {}

torch::Tensor ArcFaceImpl::apply_margin(const torch::Tensor& cos, const torch::Tensor&, const Targets& targets, const RowState&) {
  const double m = options_.margin;
  auto gt = gather_targets(cos, targets);
  torch::Tensor target;
  if (options_.gradient == ArcFaceGradient::kStraightThrough) {
    // Forward cos(acos(gt) + m), backward identity (insightface computes it under no_grad).
    auto value = (gt.detach().acos() + m).cos();
    target = math::with_derivative(gt, value, torch::ones_like(value));
  } else if (options_.easy_margin) {
    target = torch::where(gt > 0, math::arc(gt, m), gt);
  } else {
    target = torch::where(gt > std::cos(kPi - m), math::arc(gt, m), gt - std::sin(kPi - m) * m);
  }
  return put_targets(cos * options_.scale, targets, target * options_.scale);
}

// ---- combined

void CombinedOptions::read(config::Section& s) {
  s.read("scale", scale);
  s.read("m1", m1);
  s.read("m2", m2);
  s.read("m3", m3);
}

OptionProblems CombinedOptions::problems() const {
  OptionProblems p;
  detail::check_positive(p, "scale", scale);
  detail::check_positive(p, "m1", m1);
  detail::check_range(p, "m2", m2, 0, kPi / 2, "0", "pi/2");
  detail::check_range(p, "m3", m3, 0, 1);
  return p;
}

std::string CombinedOptions::describe() const {
  return "scale=" + detail::fmt(scale) + ", m1=" + detail::fmt(m1) + ", m2=" + detail::fmt(m2) +
         ", m3=" + detail::fmt(m3);
}

CombinedImpl::CombinedImpl(const CombinedOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {}

torch::Tensor CombinedImpl::apply_margin(const torch::Tensor& cos, const torch::Tensor&, const Targets& targets, const RowState&) {
  const auto& o = options_;
  auto gt = gather_targets(cos, targets);
  auto target = (o.m1 == 1.0 && o.m2 == 0.0) ? gt - o.m3  // MXNet's shortcut: no arccos at all
                                             : (math::acos(gt) * o.m1 + o.m2).cos() - o.m3;
  return put_targets(cos * o.scale, targets, target * o.scale);
}

}  // namespace facetrain::heads
