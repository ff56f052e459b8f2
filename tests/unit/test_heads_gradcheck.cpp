// Finite-difference gradient checks in float64 for every head, with respect to the embeddings and
// the class weights. Points on a kink (a margin branch switch, a hard-negative mask flipping, a
// clamp's edge) are skipped the way Caffe's GradientChecker does: where the one-sided slopes
// disagree, the function is not differentiable there. A test fails if too many points are skipped.

#include "head_testing.h"

namespace facetrain::testing {
namespace {

struct GradCase {
  std::string name;
  std::string yaml;
  bool weights_only = false;  ///< the embeddings also reach the logits through a detached path
};

class HeadGradCheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(HeadGradCheck, FiniteDifferencesMatchAutograd) {
  const auto& c = GetParam();
  const int64_t B = 8, D = 6, C = 7;
  auto head = heads::make_head(YAML::Load(c.yaml), D, C);
  head->to(torch::kDouble);
  auto in = make_inputs(B, D, C, 7, torch::kDouble);

  // Statistics enter the logits without gradient (by definition). Give them non-trivial values
  // and keep them fixed (momentum / t_alpha 0 in the YAML), so the finite differences measure
  // exactly what autograd differentiates.
  {
    torch::NoGradGuard no_grad;
    auto buffers = head->named_buffers();
    if (auto* t = buffers.find("t")) t->fill_(0.3);
    if (auto* m = buffers.find("batch_mean")) m->fill_(3.0);
    if (auto* s = buffers.find("batch_std")) s->fill_(4.0);
    if (auto* it = buffers.find("iteration")) it->fill_(40);
  }
  auto saved = buffers_of(*head);

  Pass analytic = run_head(*head, in);
  restore_buffers(*head, saved);

  auto f = [&](const torch::Tensor& x, const torch::Tensor& w) {
    torch::NoGradGuard no_grad;
    restore_buffers(*head, saved);
    head->weight.copy_(w);
    return (head->forward(x, in.y) * in.upstream).sum().item<double>();
  };

  const double h = 1e-6;
  int checked = 0, skipped = 0;
  auto check = [&](torch::Tensor& var, const torch::Tensor& grad, const char* what) {
    auto flat = var.view(-1);
    for (int64_t i = 0; i < flat.numel(); ++i) {
      double v = flat[i].item<double>();
      double f0 = f(in.x, in.w);
      flat[i] = v + h;
      double fp = f(in.x, in.w);
      flat[i] = v - h;
      double fm = f(in.x, in.w);
      flat[i] = v;
      double right = (fp - f0) / h, left = (f0 - fm) / h, central = (fp - fm) / (2 * h);
      if (std::abs(right - left) > 1e-3 * (1 + std::abs(central))) {
        ++skipped;  // a kink
        continue;
      }
      ++checked;
      double a = grad.view(-1)[i].item<double>();
      EXPECT_NEAR(a, central, 1e-5 * (1 + std::abs(central))) << c.name << " " << what << "[" << i << "]";
    }
  };
  if (!c.weights_only) check(in.x, analytic.grad_x, "d/d embeddings");
  check(in.w, analytic.grad_w, "d/d weight");
  EXPECT_GT(checked, 0);
  EXPECT_LE(skipped, (checked + skipped) / 10) << c.name << ": too many points on kinks to judge";
}

INSTANTIATE_TEST_SUITE_P(
    AllHeads, HeadGradCheck,
    ::testing::Values(GradCase{"softmax", "{type: softmax}"}, GradCase{"normface", "{type: normface}"},
                      GradCase{"cosface", "{type: cosface}"}, GradCase{"arcface", "{type: arcface}"},
                      GradCase{"arcface_easy", "{type: arcface, easy_margin: true}"},
                      GradCase{"combined", "{type: combined, m1: 0.9, m2: 0.4, m3: 0.15}"},
                      GradCase{"sphereface", "{type: sphereface}"},
                      GradCase{"sphereface_m2", "{type: sphereface, margin: 2}"},
                      GradCase{"mv_am", "{type: mv_softmax}"},
                      GradCase{"mv_arc_fixed", "{type: mv_softmax, variant: arc, reweight: fixed, easy_margin: false}"},
                      GradCase{"curricularface", "{type: curricularface, momentum: 0}"},

                      // AdaFace's margin scaler follows ‖x‖ without gradient (as in the reference), so
                      // the finite differences in x see a path autograd must not: check the weights at
                      // the default h, and the embeddings where the scaler is saturated at ±1.
                      GradCase{"adaface", "{type: adaface, t_alpha: 0}", true},
                      GradCase{"adaface_saturated", "{type: adaface, t_alpha: 0, h: 1000}"}),
    [](const auto& info) { return info.param.name; });

// straight_through's gradient is by definition not the derivative of its forward: d logit / d c
// is s at the target. Check that against an explicit computation of the cosine's gradient.
TEST(HeadGradCheck, StraightThroughTreatsTheMarginAsIdentity) {
  const int64_t B = 6, D = 5, C = 4;
  auto st = heads::make_head(YAML::Load("{type: arcface, gradient: straight_through}"), D, C);
  auto plain = heads::make_head(YAML::Load("{type: normface}"), D, C);
  st->to(torch::kDouble);
  plain->to(torch::kDouble);
  auto in = make_inputs(B, D, C, 3, torch::kDouble);
  Pass a = run_head(*st, in), b = run_head(*plain, in);
  EXPECT_TRUE(close(a.grad_x, b.grad_x, 1e-12, "d/d embeddings"));
  EXPECT_TRUE(close(a.grad_w, b.grad_w, 1e-12, "d/d weight"));
  EXPECT_FALSE(close(a.logits, b.logits, 1e-3, "logits")) << "the margin must still change the forward";
}

// Circle loss's weights α are detached, so its gradient is not the derivative of its forward:
// d logit / d c = γ·α_p at the target and γ·α_n elsewhere. A normface head with s = 1 has
// d logit / d c = 1, so feeding it the upstream gradient scaled by γ·α must give the same
// gradients with respect to embeddings and weights.
TEST(HeadGradCheck, CircleLossHoldsItsWeightsConstant) {
  const int64_t B = 8, D = 6, C = 7;
  const double gamma = 256, m = 0.25;
  auto circle = heads::make_head(YAML::Load("{type: circleloss}"), D, C);
  auto unit = heads::make_head(YAML::Load("{type: normface, scale: 1}"), D, C);
  circle->to(torch::kDouble);
  unit->to(torch::kDouble);
  auto in = make_inputs(B, D, C, 11, torch::kDouble);
  Pass a = run_head(*circle, in);

  auto cos = torch::mm(in.x / in.x.norm(2, 1, true), (in.w / in.w.norm(2, 1, true)).t()).clamp(-1, 1);
  auto alpha = (cos + m).clamp_min(0);  // α_n
  auto target = torch::nn::functional::one_hot(in.y, C).to(torch::kBool);
  alpha = torch::where(target, (1 + m - cos).clamp_min(0), alpha);  // α_p at the targets
  HeadInputs scaled = in;
  scaled.upstream = in.upstream * gamma * alpha;
  Pass b = run_head(*unit, scaled);
  EXPECT_TRUE(close(a.grad_x, b.grad_x, 1e-12, "d/d embeddings"));
  EXPECT_TRUE(close(a.grad_w, b.grad_w, 1e-12, "d/d weight"));
}

}  // namespace
}  // namespace facetrain::testing
