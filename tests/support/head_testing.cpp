#include "head_testing.h"

#include <sstream>

namespace facetrain::testing {

HeadInputs make_inputs(int64_t batch, int64_t dim, int64_t classes, uint64_t seed, torch::Dtype dtype) {
  torch::manual_seed(seed);
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  HeadInputs in;
  in.w = torch::randn({classes, dim}, opts) * (0.5 + torch::rand({classes, 1}, opts));
  in.y = torch::randint(classes, {batch}, torch::kLong);
  auto x = torch::randn({batch, dim}, opts);
  auto w_hat = in.w / in.w.norm(2, 1, true);
  for (int64_t i = 0; i < batch; ++i) {
    auto wy = w_hat[in.y[i].item<int64_t>()];
    if (i % 4 == 1) x[i] = wy * 3 + 0.4 * torch::randn({dim}, opts);
    if (i % 4 == 2) x[i] = -wy * 3 + 0.4 * torch::randn({dim}, opts);
  }
  auto norms = (torch::rand({batch, 1}, opts) * 4.5 - 1).exp();  // e^[-1, 3.5]
  in.x = (x / x.norm(2, 1, true) * norms).to(dtype);
  in.w = in.w.to(dtype);
  in.upstream = torch::randn({batch, classes}, opts).to(dtype);
  return in;
}

Pass run_head(facetrain::heads::MarginHeadImpl& head, const HeadInputs& in) {
  {
    torch::NoGradGuard no_grad;
    head.weight.copy_(in.w);
  }
  for (auto& p : head.parameters()) p.mutable_grad() = torch::Tensor();
  auto x = in.x.clone().requires_grad_(true);
  Pass out;
  out.logits = head.forward(x, in.y);
  (out.logits * in.upstream).sum().backward();
  out.logits = out.logits.detach();
  out.grad_x = x.grad();
  out.grad_w = head.weight.grad();
  for (auto& p : head.named_parameters()) {
    if (p.key() == "bias") out.grad_b = p.value().grad();
  }
  return out;
}

std::map<std::string, torch::Tensor> buffers_of(const facetrain::heads::MarginHeadImpl& head) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& b : head.named_buffers()) out[b.key()] = b.value().clone();
  return out;
}

void restore_buffers(facetrain::heads::MarginHeadImpl& head, const std::map<std::string, torch::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  for (auto& b : head.named_buffers()) b.value().copy_(saved.at(b.key()));
}

::testing::AssertionResult close(const torch::Tensor& a, const torch::Tensor& b, double rel, const std::string& what) {
  if (!a.defined() || !b.defined()) return ::testing::AssertionFailure() << what << ": undefined tensor";
  if (a.sizes() != b.sizes())
    return ::testing::AssertionFailure() << what << ": shape " << a.sizes() << " vs " << b.sizes();
  auto ad = a.detach().to(torch::kDouble), bd = b.detach().to(torch::kDouble);
  if (!all_finite(ad)) return ::testing::AssertionFailure() << what << ": non-finite values in ours";
  double scale = std::max(1.0, bd.abs().max().item<double>());
  auto diff = (ad - bd).abs();
  double worst = diff.max().item<double>();
  if (worst <= rel * scale) return ::testing::AssertionSuccess();
  auto idx = diff.argmax().item<int64_t>();
  std::ostringstream s;
  s << what << ": max |diff| " << worst << " > " << rel << " * " << scale << " at flat index " << idx << " (ours "
    << ad.flatten()[idx].item<double>() << ", reference " << bd.flatten()[idx].item<double>() << ")";
  return ::testing::AssertionFailure() << s.str();
}

bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

std::pair<std::shared_ptr<facetrain::heads::MarginHeadImpl>, std::shared_ptr<facetrain::heads::MarginHeadImpl>>
twin_heads(const std::string& yaml, int64_t dim, int64_t classes, uint64_t seed, torch::Dtype dtype) {
  std::shared_ptr<facetrain::heads::MarginHeadImpl> heads[2];
  for (auto& h : heads) {
    torch::manual_seed(seed);
    h = facetrain::heads::make_head(YAML::Load(yaml), dim, classes);
    h->to(dtype);
  }
  return {heads[0], heads[1]};
}

const std::vector<std::string>& every_head_variant() {
  static const std::vector<std::string> cases = {"{type: softmax}",
                                                 "{type: normface}",
                                                 "{type: cosface}",
                                                 "{type: arcface}",
                                                 "{type: combined, m1: 0.9, m2: 0.3, m3: 0.1}",
                                                 "{type: sphereface}",
                                                 "{type: mv_softmax}",
                                                 "{type: mv_softmax, variant: arc}",
                                                 "{type: curricularface, momentum: 0.3}",
                                                 "{type: adaface, t_alpha: 0.5}",
                                                 "{type: circleloss}"};
  return cases;
}

}  // namespace facetrain::testing
