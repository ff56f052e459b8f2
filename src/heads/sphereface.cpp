#include "facetrain/heads/sphereface.h"

#include <cmath>

namespace facetrain::heads {

void SphereFaceOptions::read(config::Section& s) {
  double m = margin;
  if (s.read("margin", m)) {
    if (m != std::floor(m) || m < 1 || m > 4) {
      s.error("margin", "must be an integer 1..4, got " + detail::fmt(m));
    } else {
      margin = static_cast<int>(m);
    }
  }
  s.read("lambda_base", lambda_base);
  s.read("lambda_gamma", lambda_gamma);
  s.read("lambda_power", lambda_power);
  s.read("lambda_min", lambda_min);
}

OptionProblems SphereFaceOptions::problems() const {
  OptionProblems p;
  if (margin < 1 || margin > 4) p.push_back({"margin", "must be an integer 1..4, got " + std::to_string(margin)});
  detail::check_positive(p, "lambda_base", lambda_base);
  detail::check_range(p, "lambda_gamma", lambda_gamma, 0, INFINITY, "0", "inf");
  detail::check_range(p, "lambda_power", lambda_power, 0, INFINITY, "0", "inf");
  detail::check_range(p, "lambda_min", lambda_min, 0, INFINITY, "0", "inf");
  return p;
}

std::string SphereFaceOptions::describe() const {
  return "margin=" + std::to_string(margin) + ", lambda_base=" + detail::fmt(lambda_base) +
         ", lambda_gamma=" + detail::fmt(lambda_gamma) + ", lambda_power=" + detail::fmt(lambda_power) +
         ", lambda_min=" + detail::fmt(lambda_min);
}

SphereFaceImpl::SphereFaceImpl(const SphereFaceOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {
  iteration = register_buffer("iteration", torch::zeros({1}, torch::kLong));
}

double SphereFaceImpl::lambda() const {
  const auto& o = options_;
  double it = static_cast<double>(iteration.item<int64_t>());
  return std::max(o.lambda_min, o.lambda_base * std::pow(1 + o.lambda_gamma * it, -o.lambda_power));
}

namespace {
// cos(m·θ) as a polynomial in c = cos θ (Chebyshev polynomials of the first kind).
torch::Tensor cos_m_theta(const torch::Tensor& c, int m) {
  switch (m) {
    case 1:
      return c;
    case 2:
      return 2 * c.pow(2) - 1;
    case 3:
      return 4 * c.pow(3) - 3 * c;
    default:
      return 8 * c.pow(4) - 8 * c.pow(2) + 1;
  }
}
}  // namespace

RowState SphereFaceImpl::prepare_rows(const torch::Tensor&, const torch::Tensor&) {
  if (is_training()) {
    torch::NoGradGuard no_grad;
    iteration.add_(1);
  }
  RowState rows;
  rows.scalar = lambda();
  return rows;
}

torch::Tensor SphereFaceImpl::apply_margin(const torch::Tensor& cos, const torch::Tensor& norms,
                                           const Targets& targets, const RowState& rows) {
  const double lam = rows.scalar;
  const int m = options_.margin;

  auto gt = gather_targets(cos, targets);
  torch::Tensor k;
  {
    torch::NoGradGuard no_grad;
    k = (m * gt.detach().acos() / M_PI).floor();
  }
  auto sign = 1 - 2 * torch::remainder(k, 2);  // (−1)^k
  auto psi = sign * cos_m_theta(gt, m) - 2 * k;
  auto target = gt + (psi - gt) / (1 + lam);

  auto logits = cos * norms.unsqueeze(1);
  return put_targets(logits, targets, target * norms.index_select(0, targets.rows));
}

}  // namespace facetrain::heads
