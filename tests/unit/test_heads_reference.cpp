// Every head against a transliteration of its public reference (tests/support/reference_heads.cpp):
// forward values, gradients with respect to embeddings and class weights, and state buffers,
// over three consecutive calls, in float32 and float64.

#include <functional>

#include "head_testing.h"
#include "reference_heads.h"

namespace facetrain::testing {
namespace {

namespace ref = reference;
using torch::Tensor;

/// What the references keep between calls.
struct RefState {
  Tensor t = torch::zeros({1});
  Tensor batch_mean = torch::full({1}, 20.0);
  Tensor batch_std = torch::full({1}, 100.0);
  int64_t iter = 0;
  Tensor bias;
};

struct Case {
  std::string name;
  std::string yaml;
  std::function<Tensor(const Tensor& x, const Tensor& w, const Tensor& y, RefState& st)> reference;
};

std::vector<Case> cases() {
  return {
      {"softmax", "{type: softmax}",
       [](auto& x, auto& w, auto& y, RefState& st) { return ref::softmax(x, w, st.bias); }},
      {"normface", "{type: normface}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::svx_fc(x, w, y, "FC", 0.35, 0.2, 64, true); }},
      {"normface_s30", "{type: normface, scale: 30}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::svx_fc(x, w, y, "FC", 0.35, 0.2, 30, true); }},
      {"cosface", "{type: cosface}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::insightface(x, w, y, "cosface", 64, 0.35); }},
      {"cosface_s30_m040", "{type: cosface, scale: 30, margin: 0.4}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::insightface(x, w, y, "cosface", 30, 0.4); }},
      {"arcface", "{type: arcface}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::insightface(x, w, y, "arcface", 64, 0.5); }},
      {"arcface_m030", "{type: arcface, scale: 32, margin: 0.3}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::insightface(x, w, y, "arcface", 32, 0.3); }},
      {"arcface_easy", "{type: arcface, easy_margin: true}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::insightface(x, w, y, "arcface_easy", 64, 0.5); }},
      {"arcface_straight_through", "{type: arcface, gradient: straight_through}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::insightface(x, w, y, "straight_through", 64, 0.5); }},
      {"combined_default", "{type: combined}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::mxnet_combined(x, w, y, 64, 1.0, 0.5, 0.0); }},
      {"combined_all", "{type: combined, m1: 0.9, m2: 0.4, m3: 0.15}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::mxnet_combined(x, w, y, 64, 0.9, 0.4, 0.15); }},
      {"combined_cosface", "{type: combined, m1: 1, m2: 0, m3: 0.35}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::mxnet_combined(x, w, y, 64, 1.0, 0.0, 0.35); }},
      {"sphereface", "{type: sphereface}",
       [](auto& x, auto& w, auto& y, RefState& st) { return ref::evolve_sphereface(x, w, y, 4, st.iter, true); }},
      {"sphereface_m2_fast",
       "{type: sphereface, margin: 2, lambda_base: 100, lambda_gamma: 1, lambda_power: 2, lambda_min: 0}",
       [](auto& x, auto& w, auto& y, RefState& st) {
         return ref::evolve_sphereface(x, w, y, 2, st.iter, true, 100, 1, 2, 0);
       }},
      {"sphereface_m3", "{type: sphereface, margin: 3}",
       [](auto& x, auto& w, auto& y, RefState& st) { return ref::evolve_sphereface(x, w, y, 3, st.iter, true); }},
      {"mv_softmax", "{type: mv_softmax}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::svx_fc(x, w, y, "MV-AM", 0.35, 0.2, 32, true); }},
      {"mv_am_hard", "{type: mv_softmax, easy_margin: false, reweight: fixed, t: 0.3}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::svx_fc(x, w, y, "MV-AM", 0.35, 0.3, 32, false, false); }},
      {"mv_arc", "{type: mv_softmax, variant: arc, margin: 0.5}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::svx_fc(x, w, y, "MV-Arc", 0.5, 0.2, 32, true); }},
      {"mv_arc_hard_fixed", "{type: mv_softmax, variant: arc, margin: 0.5, easy_margin: false, reweight: fixed}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::svx_fc(x, w, y, "MV-Arc", 0.5, 0.2, 32, false, false); }},
      {"curricularface", "{type: curricularface}",
       [](auto& x, auto& w, auto& y, RefState& st) { return ref::curricularface(x, w, y, 0.5, 64, st.t); }},
      {"curricularface_fast", "{type: curricularface, momentum: 0.5, margin: 0.4, scale: 30}",
       [](auto& x, auto& w, auto& y, RefState& st) { return ref::curricularface(x, w, y, 0.4, 30, st.t, 0.5); }},
      {"adaface", "{type: adaface}",
       [](auto& x, auto& w, auto& y, RefState& st) {
         return ref::adaface(x, w, y, 0.4, 0.333, 64, 0.01, st.batch_mean, st.batch_std);
       }},
      {"adaface_fast", "{type: adaface, t_alpha: 1, h: 0.5, margin: 0.5}",
       [](auto& x, auto& w, auto& y, RefState& st) {
         return ref::adaface(x, w, y, 0.5, 0.5, 64, 1.0, st.batch_mean, st.batch_std);
       }},
      {"circleloss", "{type: circleloss}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::circleloss(x, w, y, 0.25, 256); }},
      {"circleloss_m035", "{type: circleloss, scale: 64, margin: 0.35}",
       [](auto& x, auto& w, auto& y, RefState&) { return ref::circleloss(x, w, y, 0.35, 64); }},
  };
}

class HeadReference : public ::testing::TestWithParam<std::tuple<Case, torch::Dtype>> {};

TEST_P(HeadReference, ValuesGradientsAndBuffersOverThreeCalls) {
  const auto& [c, dtype] = GetParam();
  const int64_t B = 24, D = 16, C = 12;
  const double tol = dtype == torch::kFloat ? 2e-5 : 1e-10;

  auto head = heads::make_head(YAML::Load(c.yaml), D, C);
  head->to(dtype);
  RefState st;
  st.t = st.t.to(dtype);
  st.batch_mean = st.batch_mean.to(dtype);
  st.batch_std = st.batch_std.to(dtype);
  Tensor bias_ref;
  if (c.name == "softmax") {
    torch::NoGradGuard no_grad;
    auto b = torch::randn({C}).to(dtype);
    head->named_parameters()["bias"].copy_(b);
    bias_ref = b.clone().requires_grad_(true);
    st.bias = bias_ref;
  }

  for (int call = 0; call < 3; ++call) {
    SCOPED_TRACE(c.name + " call " + std::to_string(call));
    auto in = make_inputs(B, D, C, 100 + call, dtype);
    Pass ours = run_head(*head, in);

    auto x = in.x.clone().requires_grad_(true);
    auto w = in.w.clone().requires_grad_(true);
    if (bias_ref.defined()) bias_ref.mutable_grad() = Tensor();
    auto logits = c.reference(x, w, in.y, st);
    (logits * in.upstream).sum().backward();

    EXPECT_TRUE(close(ours.logits, logits, tol, "logits"));
    EXPECT_TRUE(close(ours.grad_x, x.grad(), tol, "d/d embeddings"));
    EXPECT_TRUE(close(ours.grad_w, w.grad(), tol, "d/d weight"));
    if (bias_ref.defined()) {
      EXPECT_TRUE(close(ours.grad_b, bias_ref.grad(), tol, "d/d bias"));
    }

    auto buffers = head->named_buffers();
    if (auto* t = buffers.find("t")) {
      EXPECT_TRUE(close(*t, st.t, tol, "buffer t"));
    }
    if (auto* m = buffers.find("batch_mean")) {
      EXPECT_TRUE(close(*m, st.batch_mean, tol, "buffer batch_mean"));
    }
    if (auto* s = buffers.find("batch_std")) {
      EXPECT_TRUE(close(*s, st.batch_std, tol, "buffer batch_std"));
    }
    if (auto* it = buffers.find("iteration")) {
      EXPECT_EQ(it->scalar_type(), torch::kLong);
      EXPECT_EQ(it->item<int64_t>(), st.iter);
    }
  }
  // The stateful heads must actually have moved their state.
  if (c.name.rfind("curricularface", 0) == 0) {
    EXPECT_NE(st.t.item<double>(), 0.0);
  }
  if (c.name.rfind("adaface", 0) == 0) {
    EXPECT_NE(st.batch_mean.item<double>(), 20.0);
  }
  if (c.name.rfind("sphereface", 0) == 0) {
    EXPECT_EQ(st.iter, 3);
  }
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<Case, torch::Dtype>>& info) {
  return std::get<0>(info.param).name + (std::get<1>(info.param) == torch::kFloat ? "_f32" : "_f64");
}

INSTANTIATE_TEST_SUITE_P(AllHeads, HeadReference,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(torch::kFloat, torch::kDouble)),
                         case_name);

// The inputs must reach the branches the comparison is meant to cover.
TEST(HeadReferenceInputs, ReachEveryBranch) {
  auto in = make_inputs(24, 16, 12, 100, torch::kDouble);
  auto cos = torch::mm(in.x / in.x.norm(2, 1, true), (in.w / in.w.norm(2, 1, true)).t());
  auto gt = cos.gather(1, in.y.view({-1, 1})).view(-1);
  EXPECT_GT((gt < std::cos(M_PI - 0.5)).sum().item<int64_t>(), 0) << "no row in ArcFace's fallback region";
  EXPECT_GT((gt > 0.8).sum().item<int64_t>(), 0) << "no row close to its class";
  EXPECT_GT((gt < 0).sum().item<int64_t>(), 0) << "no row with a negative target cosine (easy margin)";
  auto norms = in.x.norm(2, 1);
  EXPECT_LT(norms.min().item<double>(), 1.0);
  EXPECT_GT(norms.max().item<double>(), 15.0);
}

}  // namespace
}  // namespace facetrain::testing
