#pragma once
// Private numerics shared by the margin rules. Every function is NaN- and Inf-free for inputs
// in [-1, 1], including ±1 exactly, in values and gradients.

#include <torch/torch.h>

#include <cmath>

namespace facetrain::heads::math {

/// Below this, 1 − c² counts as 0: √ and arccos get a zero gradient instead of an infinite one.
/// No float32 value is affected (the closest float32 below 1 has 1 − c² ≈ 1.2e-7); in float64
/// only c within ~5e-13 of ±1.
constexpr double kTiny = 1e-12;

/// sin θ = √(1 − c²) for c = cos θ: exactly 0, with gradient 0, where 1 − c² < kTiny.
inline torch::Tensor sin_from_cos(const torch::Tensor& c) {
  auto one_minus = 1 - c * c;
  return torch::where(one_minus > kTiny, one_minus.clamp_min(kTiny).sqrt(), torch::zeros_like(one_minus));
}

/// arc(c, m) = c·cos m − √(1 − c²)·sin m = cos(θ + m).
inline torch::Tensor arc(const torch::Tensor& c, double m) { return c * std::cos(m) - sin_from_cos(c) * std::sin(m); }

/// A tensor with the values of `value` whose gradient with respect to `x` is `derivative`
/// (element-wise; `value` and `derivative` are treated as constants).
inline torch::Tensor with_derivative(const torch::Tensor& x, const torch::Tensor& value,
                                     const torch::Tensor& derivative) {
  return value.detach() + (x - x.detach()) * derivative.detach();
}

/// arccos(c), with gradient −1/√(1 − c²), taken as 0 where 1 − c² < kTiny.
inline torch::Tensor acos(const torch::Tensor& c) {
  auto cd = c.detach();
  auto one_minus = 1 - cd * cd;
  auto derivative = torch::where(one_minus > kTiny, -one_minus.clamp_min(kTiny).rsqrt(), torch::zeros_like(one_minus));
  return with_derivative(c, cd.acos(), derivative);
}

}  // namespace facetrain::heads::math
