// Closed-form values on hand-built cosines, identities between heads, buffer semantics over
// several calls, numerical safety at the edges, input checks, and class shards.

#include <cmath>

#include "facetrain/core/error.h"
#include "head_testing.h"

namespace facetrain::testing {
namespace {

using heads::make_head;
using torch::Tensor;

/// D = 2: class j's centre is at angle alpha[j]; row i is at angle phi[i] with norm r[i], so
/// c_ij = cos(phi_i − alpha_j) exactly.
struct Plane {
  Tensor x, y, w;
};
Plane plane(const std::vector<double>& phi, const std::vector<double>& r, const std::vector<double>& alpha,
            const std::vector<int64_t>& y) {
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  Plane p;
  p.x = torch::empty({static_cast<int64_t>(phi.size()), 2}, opts);
  for (size_t i = 0; i < phi.size(); ++i) {
    p.x[i][0] = r[i] * std::cos(phi[i]);
    p.x[i][1] = r[i] * std::sin(phi[i]);
  }
  p.w = torch::empty({static_cast<int64_t>(alpha.size()), 2}, opts);
  for (size_t j = 0; j < alpha.size(); ++j) {
    p.w[j][0] = 0.3 * std::cos(alpha[j]);  // any length: the heads normalise
    p.w[j][1] = 0.3 * std::sin(alpha[j]);
  }
  p.y = torch::tensor(y, torch::kLong);
  return p;
}

Tensor logits_of(heads::MarginHeadImpl& head, const Plane& p) {
  head.to(torch::kDouble);
  torch::NoGradGuard no_grad;
  head.weight.copy_(p.w);
  return head.forward(p.x, p.y);
}

double at(const Tensor& t, int64_t i, int64_t j) { return t[i][j].item<double>(); }

// Row 0 at angle 0; classes at 1.0 (its target), 0.2, 2.5 rad; row 1 targets class 0 from 2.9 rad away.
Plane standard_plane() { return plane({0.0, 1.0 + 2.9}, {2.0, 5.0}, {1.0, 0.2, 2.5}, {0, 0}); }

TEST(HeadValues, CosFaceClosedForm) {
  auto head = make_head(YAML::Load("{type: cosface, scale: 30, margin: 0.35}"), 2, 3);
  auto out = logits_of(*head, standard_plane());
  EXPECT_NEAR(at(out, 0, 0), 30 * (std::cos(1.0) - 0.35), 1e-12);
  EXPECT_NEAR(at(out, 0, 1), 30 * std::cos(0.2), 1e-12);
  EXPECT_NEAR(at(out, 0, 2), 30 * std::cos(2.5), 1e-12);
}

TEST(HeadValues, ArcFaceClosedFormWithFallback) {
  const double m = 0.5;
  auto head = make_head(YAML::Load("{type: arcface, scale: 64, margin: 0.5}"), 2, 3);
  auto out = logits_of(*head, standard_plane());
  EXPECT_NEAR(at(out, 0, 0), 64 * std::cos(1.0 + m), 1e-10);                         // θ + m < π
  EXPECT_NEAR(at(out, 1, 0), 64 * (std::cos(2.9) - std::sin(M_PI - m) * m), 1e-10);  // θ + m > π
  EXPECT_NEAR(at(out, 0, 1), 64 * std::cos(0.2), 1e-10);
  // At c = 1 exactly, arc(1, m) = cos m: the √(1 − c²) term must be exactly 0 there.
  auto exact = logits_of(*head, plane({1.0}, {2.0}, {1.0, 0.2, 2.5}, {0}));
  EXPECT_NEAR(at(exact, 0, 0), 64 * std::cos(m), 1e-10);
}

TEST(HeadValues, ArcFaceEasyMarginAndStraightThrough) {
  auto easy = make_head(YAML::Load("{type: arcface, easy_margin: true}"), 2, 3);
  auto out = logits_of(*easy, standard_plane());
  EXPECT_NEAR(at(out, 0, 0), 64 * std::cos(1.5), 1e-10);
  EXPECT_NEAR(at(out, 1, 0), 64 * std::cos(2.9), 1e-10);  // gt < 0: no margin
  auto st = make_head(YAML::Load("{type: arcface, gradient: straight_through}"), 2, 3);
  out = logits_of(*st, standard_plane());
  EXPECT_NEAR(at(out, 0, 0), 64 * std::cos(1.5), 1e-10);
  EXPECT_NEAR(at(out, 1, 0), 64 * std::cos(2.9 + 0.5), 1e-10);  // no fallback
}

TEST(HeadValues, CombinedClosedForm) {
  auto head = make_head(YAML::Load("{type: combined, scale: 10, m1: 0.9, m2: 0.4, m3: 0.15}"), 2, 3);
  auto out = logits_of(*head, standard_plane());
  EXPECT_NEAR(at(out, 0, 0), 10 * (std::cos(0.9 * 1.0 + 0.4) - 0.15), 1e-10);
  EXPECT_NEAR(at(out, 0, 2), 10 * std::cos(2.5), 1e-10);
}

TEST(HeadValues, CombinedReducesToCosFaceAndArcFace) {
  auto in = make_inputs(32, 16, 10, 5);
  for (double m : {0.2, 0.35, 0.5}) {
    auto cosface = make_head(YAML::Load("{type: cosface, margin: " + std::to_string(m) + "}"), 16, 10);
    auto comb = make_head(YAML::Load("{type: combined, m1: 1, m2: 0, m3: " + std::to_string(m) + "}"), 16, 10);
    Pass a = run_head(*cosface, in), b = run_head(*comb, in);
    EXPECT_TRUE(close(b.logits, a.logits, 0, "combined(1, 0, m) vs cosface logits"));
    EXPECT_TRUE(close(b.grad_x, a.grad_x, 0, "combined(1, 0, m) vs cosface d/dx"));
    EXPECT_TRUE(close(b.grad_w, a.grad_w, 0, "combined(1, 0, m) vs cosface d/dw"));
  }
  // combined(1, m, 0) is arcface wherever arcface's fallback is off (gt > cos(π − m)).
  auto gen = make_inputs(32, 16, 10, 6);
  auto keep = torch::arange(32).remainder(4) != 2;  // drop the rows placed opposite their class
  HeadInputs in2{gen.x.index({keep}), gen.y.index({keep}), gen.w, gen.upstream.index({keep})};
  for (double m : {0.3, 0.5}) {
    auto arc = make_head(YAML::Load("{type: arcface, margin: " + std::to_string(m) + "}"), 16, 10);
    auto comb = make_head(YAML::Load("{type: combined, m1: 1, m3: 0, m2: " + std::to_string(m) + "}"), 16, 10);
    Pass a = run_head(*arc, in2), b = run_head(*comb, in2);
    EXPECT_TRUE(close(b.logits, a.logits, 1e-5, "combined(1, m, 0) vs arcface logits"));
    EXPECT_TRUE(close(b.grad_x, a.grad_x, 1e-5, "combined(1, m, 0) vs arcface d/dx"));
    EXPECT_TRUE(close(b.grad_w, a.grad_w, 1e-5, "combined(1, m, 0) vs arcface d/dw"));
  }
}

TEST(HeadValues, SphereFaceClosedFormAndIteration) {
  auto head = make_head(YAML::Load("{type: sphereface}"), 2, 3);
  auto& sphere = dynamic_cast<heads::SphereFaceImpl&>(*head);
  auto p = standard_plane();
  auto out = logits_of(*head, p);  // train mode: iteration 0 -> 1
  EXPECT_EQ(sphere.iteration.item<int64_t>(), 1);
  const double lambda = std::max(5.0, 1000.0 / (1 + 0.12 * 1));
  EXPECT_NEAR(sphere.lambda(), lambda, 1e-12);
  // θ = 1: 4θ/π = 1.27 -> k = 1, ψ = −cos 4θ − 2.
  double psi = -std::cos(4.0) - 2;
  EXPECT_NEAR(at(out, 0, 0), 2.0 * (lambda * std::cos(1.0) + psi) / (1 + lambda), 1e-10);
  EXPECT_NEAR(at(out, 0, 1), 2.0 * std::cos(0.2), 1e-10);  // others: ‖x‖·c
  EXPECT_NEAR(at(out, 1, 1), 5.0 * std::cos(3.9 - 0.2), 1e-10);

  head->eval();
  logits_of(*head, p);
  EXPECT_EQ(sphere.iteration.item<int64_t>(), 1) << "eval-mode forwards do not advance the schedule";
  head->train();
  for (int i = 0; i < 1000; ++i) logits_of(*head, p);
  EXPECT_EQ(sphere.iteration.item<int64_t>(), 1001);
  EXPECT_DOUBLE_EQ(sphere.lambda(), 1000.0 / (1 + 0.12 * 1001)) << "8.256, still above lambda_min";
  for (int i = 0; i < 1000; ++i) logits_of(*head, p);
  EXPECT_DOUBLE_EQ(sphere.lambda(), 5.0) << "1000/(1 + 0.12·2001) = 4.15 is below lambda_min";
}

TEST(HeadValues, MVSoftmaxReweightsOnlyHardNegatives) {
  // gt = cos 1 = 0.540; threshold gt − m = 0.190.
  auto p = plane({0.0}, {1.0}, {1.0, 1.3, 1.45}, {0});  // c = 0.540, 0.267 (hard), 0.121 (easy)
  auto head = make_head(YAML::Load("{type: mv_softmax, scale: 32, margin: 0.35, t: 0.2}"), 2, 3);
  auto out = logits_of(*head, p);
  EXPECT_NEAR(at(out, 0, 0), 32 * (std::cos(1.0) - 0.35), 1e-10);
  EXPECT_NEAR(at(out, 0, 1), 32 * (1.2 * std::cos(1.3) + 0.2), 1e-10);
  EXPECT_NEAR(at(out, 0, 2), 32 * std::cos(1.45), 1e-10);
  auto fixed = make_head(YAML::Load("{type: mv_softmax, reweight: fixed}"), 2, 3);
  out = logits_of(*fixed, p);
  EXPECT_NEAR(at(out, 0, 1), 32 * (std::cos(1.3) + 0.2), 1e-10);
}

TEST(HeadValues, CurricularFaceUpdatesTBeforeUse) {
  auto p = plane({0.0, 0.0}, {1.0, 3.0}, {1.0, 0.5, 2.0}, {0, 2});  // gt: cos 1, cos 2
  auto head = make_head(YAML::Load("{type: curricularface, momentum: 0.1, scale: 10}"), 2, 3);
  auto& cf = dynamic_cast<heads::CurricularFaceImpl&>(*head);
  double t = 0;
  for (int call = 0; call < 3; ++call) {
    auto out = logits_of(*head, p);
    t = 0.1 * (std::cos(1.0) + std::cos(2.0)) / 2 + 0.9 * t;
    EXPECT_NEAR(cf.t.item<double>(), t, 1e-12) << "call " << call;
    // Row 0: ctm = cos 1.5 = 0.0707; class 1 (c = cos 0.5) is a hard negative, class 2 (cos 2) is not.
    double c1 = std::cos(0.5);
    EXPECT_NEAR(at(out, 0, 1), 10 * c1 * (t + c1), 1e-10);
    EXPECT_NEAR(at(out, 0, 2), 10 * std::cos(2.0), 1e-10);
    EXPECT_NEAR(at(out, 0, 0), 10 * std::cos(1.5), 1e-10);
  }
  head->eval();  // the reference updates t on every forward, in either mode
  logits_of(*head, p);
  EXPECT_NEAR(cf.t.item<double>(), 0.1 * (std::cos(1.0) + std::cos(2.0)) / 2 + 0.9 * t, 1e-12);
}

TEST(HeadValues, AdaFaceStatisticsAndMargin) {
  auto p = plane({0.0, 0.0, 0.0}, {10.0, 20.0, 60.0}, {1.0, 0.5, 2.0}, {0, 1, 2});
  auto head = make_head(YAML::Load("{type: adaface, t_alpha: 0.5, scale: 64, margin: 0.4, h: 0.333}"), 2, 3);
  auto& ada = dynamic_cast<heads::AdaFaceImpl&>(*head);
  auto out = logits_of(*head, p);
  const double mean = 30, std = std::sqrt(((20.0 * 20) + (10.0 * 10) + (30.0 * 30)) / 2);  // unbiased
  const double bm = 0.5 * mean + 0.5 * 20, bs = 0.5 * std + 0.5 * 100;
  EXPECT_NEAR(ada.batch_mean.item<double>(), bm, 1e-10);
  EXPECT_NEAR(ada.batch_std.item<double>(), bs, 1e-10);
  for (int i = 0; i < 3; ++i) {
    double n = (i == 0 ? 10.0 : i == 1 ? 20.0 : 60.0);
    double ms = std::clamp(0.333 * (n - bm) / (bs + 1e-3), -1.0, 1.0);
    double theta = (i == 0 ? 1.0 : i == 1 ? 0.5 : 2.0);
    double expected = 64 * (std::cos(std::clamp(theta - 0.4 * ms, 1e-3, M_PI - 1e-3)) - (0.4 + 0.4 * ms));
    EXPECT_NEAR(at(out, i, i), expected, 1e-9) << "row " << i;
  }
  EXPECT_NEAR(at(out, 0, 1), 64 * std::cos(0.5), 1e-10);
  // A batch of one row: mean moves, std (undefined) stays.
  auto one = plane({0.0}, {40.0}, {1.0, 0.5, 2.0}, {0});
  out = logits_of(*head, one);
  EXPECT_NEAR(ada.batch_mean.item<double>(), 0.5 * 40 + 0.5 * bm, 1e-10);
  EXPECT_NEAR(ada.batch_std.item<double>(), bs, 1e-10);
  EXPECT_TRUE(all_finite(out));
}

TEST(HeadValues, CircleLossClosedForm) {
  auto head = make_head(YAML::Load("{type: circleloss, scale: 256, margin: 0.25}"), 2, 3);
  auto out = logits_of(*head, standard_plane());
  double gt = std::cos(1.0), c1 = std::cos(0.2), c2 = std::cos(2.5);
  EXPECT_NEAR(at(out, 0, 0), 256 * std::max(1.25 - gt, 0.0) * (gt - 0.75), 1e-9);
  EXPECT_NEAR(at(out, 0, 1), 256 * std::max(c1 + 0.25, 0.0) * (c1 - 0.25), 1e-9);
  EXPECT_NEAR(at(out, 0, 2), 0.0, 1e-12);  // c < −m: α_n = 0
  (void)c2;
}

TEST(HeadValues, SoftmaxIsAffine) {
  auto head = make_head(YAML::Load("{type: softmax}"), 2, 3);
  auto p = standard_plane();
  head->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    head->named_parameters()["bias"].copy_(torch::tensor({0.5, -1.0, 2.0}, torch::kDouble));
  }
  auto out = logits_of(*head, p);
  auto expected = torch::mm(p.x, p.w.t()) + torch::tensor({0.5, -1.0, 2.0}, torch::kDouble);
  EXPECT_TRUE(close(out, expected, 1e-14, "softmax"));
}

// ---- numerical safety

class HeadSafety : public ::testing::TestWithParam<std::string> {};

TEST_P(HeadSafety, FiniteAtTheEdges) {
  const std::string yaml = GetParam();
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    const int64_t D = 8, C = 5;
    auto head = make_head(YAML::Load(yaml), D, C);
    head->to(dtype);
    auto in = make_inputs(6, D, C, 1, dtype);
    auto w_hat = in.w / in.w.norm(2, 1, true);
    {
      torch::NoGradGuard no_grad;
      in.x[0] = w_hat[in.y[0].item<int64_t>()] * 3;      // c = +1
      in.x[1] = -w_hat[in.y[1].item<int64_t>()] * 3;     // c = −1 (θ + m > π)
      in.x[2].zero_();                                   // zero embedding
      in.x[3] = w_hat[in.y[3].item<int64_t>()] * 1e-30;  // tiny norm
      in.x[4] = w_hat[in.y[4].item<int64_t>()] * 1e6;    // huge norm
    }
    for (int call = 0; call < 2; ++call) {
      Pass out = run_head(*head, in);
      EXPECT_TRUE(all_finite(out.logits)) << yaml << " logits";
      EXPECT_TRUE(all_finite(out.grad_x)) << yaml << " d/dx";
      EXPECT_TRUE(all_finite(out.grad_w)) << yaml << " d/dw";
    }
    for (const auto& b : head->named_buffers()) EXPECT_TRUE(all_finite(b.value())) << yaml << " " << b.key();
  }
}

INSTANTIATE_TEST_SUITE_P(AllHeads, HeadSafety,
                         ::testing::Values("{type: softmax}", "{type: normface}", "{type: cosface}", "{type: arcface}",
                                           "{type: arcface, easy_margin: true}",
                                           "{type: arcface, gradient: straight_through}", "{type: combined}",
                                           "{type: combined, m1: 0.9, m2: 0.4, m3: 0.1}", "{type: sphereface}",
                                           "{type: mv_softmax}", "{type: mv_softmax, variant: arc}",
                                           "{type: curricularface}", "{type: adaface}", "{type: circleloss}",
                                           "{type: arcface, scale: 1e4}", "{type: curricularface, scale: 1e4}"),
                         [](const auto& info) { return "case" + std::to_string(info.index); });

// ---- input checks

TEST(HeadInputsCheck, BadInputsGetClearErrors) {
  auto head = make_head(YAML::Load("{type: arcface}"), 8, 5);
  auto x = torch::randn({4, 8});
  auto y = torch::tensor({0, 1, 2, 3}, torch::kLong);
  auto expect_error = [&](const Tensor& xx, const Tensor& yy, const std::string& needle) {
    try {
      head->forward(xx, yy);
      ADD_FAILURE() << "no error; expected one mentioning: " << needle;
    } catch (const ArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(torch::randn({4, 7}), y, "embeddings must be [B, 8], got [4, 7]");
  expect_error(torch::randn({8}), y, "embeddings must be [B, 8]");
  expect_error(x, torch::tensor({0, 1, 2}, torch::kLong), "labels must be [4]");
  expect_error(x, torch::tensor({0, 1, 5, 3}, torch::kLong), "labels[2] = 5 is outside [0, 5)");
  expect_error(x, torch::tensor({0, -1, 2, 3}, torch::kLong), "labels[1] = -1 is outside [0, 5)");
  expect_error(x, torch::tensor({0.0, 1.0, 2.0, 3.0}), "labels must be integers");
  expect_error(torch::randint(5, {4, 8}, torch::kLong), y, "embeddings must be floating point");
  // int32 labels and float64 embeddings are accepted (converted).
  EXPECT_EQ(head->forward(x.to(torch::kDouble), y.to(torch::kInt)).sizes(), (std::vector<int64_t>{4, 5}));
  // An empty batch gives empty logits.
  EXPECT_EQ(head->forward(torch::randn({0, 8}), torch::zeros({0}, torch::kLong)).sizes(), (std::vector<int64_t>{0, 5}));
}

TEST(HeadInputsCheck, BadGeometryAndOptionsThrow) {
  EXPECT_THROW(make_head(YAML::Load("{type: arcface}"), 0, 5), ArgumentError);
  EXPECT_THROW(make_head(YAML::Load("{type: arcface}"), 8, 0), ArgumentError);
  EXPECT_THROW(make_head(YAML::Load("{type: arcface}"), heads::HeadGeometry(8, 10, 5, 12)), ArgumentError);
  heads::ArcFaceOptions bad;
  bad.scale = -1;
  try {
    heads::ArcFace head(bad, heads::HeadGeometry(8, 10));
    ADD_FAILURE() << "no error";
  } catch (const ArgumentError& e) {
    EXPECT_STREQ(e.what(), "arcface: scale must be > 0, got -1");
  }
}

TEST(HeadModule, NamesShapesModesAndPrinting) {
  auto soft = make_head(YAML::Load("{type: softmax}"), 8, 5);
  auto params = soft->named_parameters();
  ASSERT_TRUE(params.contains("weight") && params.contains("bias"));
  EXPECT_EQ(params["weight"].sizes(), (std::vector<int64_t>{5, 8}));
  EXPECT_EQ(params["bias"].sizes(), (std::vector<int64_t>{5}));
  EXPECT_EQ(soft->named_buffers().size(), 0u);

  auto buffers_of_type = [](const std::string& type) {
    std::vector<std::string> names;
    for (const auto& b : make_head(YAML::Load("{type: " + type + "}"), 8, 5)->named_buffers()) names.push_back(b.key());
    return names;
  };
  EXPECT_EQ(buffers_of_type("curricularface"), (std::vector<std::string>{"t"}));
  EXPECT_EQ(buffers_of_type("adaface"), (std::vector<std::string>{"batch_mean", "batch_std"}));
  EXPECT_EQ(buffers_of_type("sphereface"), (std::vector<std::string>{"iteration"}));
  EXPECT_TRUE(buffers_of_type("arcface").empty());

  auto sphere = make_head(YAML::Load("{type: sphereface}"), 8, 5);
  sphere->named_buffers()["iteration"].fill_(70001);  // beyond float16's range (65504)
  sphere->to(torch::kDouble);
  EXPECT_EQ(sphere->named_buffers()["iteration"].scalar_type(), torch::kLong) << "counters stay integers";
  EXPECT_EQ(sphere->weight.scalar_type(), torch::kDouble);
  sphere->to(torch::kHalf);  // a round trip through float16 would turn 70001 into inf
  EXPECT_EQ(sphere->named_buffers()["iteration"].scalar_type(), torch::kLong);
  EXPECT_EQ(sphere->named_buffers()["iteration"].item<int64_t>(), 70001);
  sphere->named_buffers()["iteration"].fill_((int64_t{1} << 24) + 1);
  sphere->to(torch::kFloat);  // float32 cannot hold 2^24 + 1
  EXPECT_EQ(sphere->named_buffers()["iteration"].item<int64_t>(), (int64_t{1} << 24) + 1);

  // The LibTorch holder takes any head.
  heads::MarginHead holder = make_head(YAML::Load("{type: cosface}"), 8, 5);
  EXPECT_EQ(holder->type(), "cosface");
  EXPECT_EQ(holder->forward(torch::randn({2, 8}), torch::tensor({0, 4}, torch::kLong)).sizes(),
            (std::vector<int64_t>{2, 5}));

  std::ostringstream s;
  s << *make_head(YAML::Load("{type: arcface, margin: 0.3}"), 512, 1000);
  EXPECT_EQ(s.str(),
            "facetrain::heads::arcface(embedding_size=512, num_classes=1000, scale=64, margin=0.3, "
            "easy_margin=false, gradient=autograd)");
}

// ---- class shards

/// Two shards of one head in one process: for ReduceScope::kClassShards, a shard's partial
/// per-row values are completed with the other shard's, computed here from its weights.
class TwoShardReducer : public heads::StatisticsReducer {
 public:
  TwoShardReducer(Tensor x, Tensor y, Tensor w_other, int64_t other_begin)
      : x_(std::move(x)), y_(std::move(y)), w_other_(std::move(w_other)), begin_(other_begin) {}
  Tensor sum(const Tensor& local, heads::ReduceScope scope) const override {
    if (scope == heads::ReduceScope::kBatchRows) return local;  // both shards see the whole batch
    auto x_hat = x_ / x_.norm(2, 1, true);
    auto w_hat = w_other_ / w_other_.norm(2, 1, true);
    auto cos = torch::mm(x_hat, w_hat.t()).clamp(-1, 1).to(local.scalar_type());
    auto local_y = y_ - begin_;
    auto in_other = (local_y >= 0).logical_and(local_y < w_other_.size(0));
    auto gt = cos.gather(1, local_y.clamp(0, w_other_.size(0) - 1).view({-1, 1})).view(-1);
    return local + torch::where(in_other, gt, torch::zeros_like(gt));
  }

 private:
  Tensor x_, y_, w_other_;
  int64_t begin_;
};

class HeadShards : public ::testing::TestWithParam<std::string> {};

TEST_P(HeadShards, ShardsTogetherEqualTheWholeHead) {
  const std::string yaml = GetParam();
  const int64_t B = 16, D = 8, C = 10, split = 4;
  auto in = make_inputs(B, D, C, 21, torch::kDouble);
  auto whole = make_head(YAML::Load(yaml), D, C);
  auto lo = make_head(YAML::Load(yaml), heads::HeadGeometry(D, C, 0, split));
  auto hi = make_head(YAML::Load(yaml), heads::HeadGeometry(D, C, split, C));
  for (auto* h : {&whole, &lo, &hi}) (*h)->to(torch::kDouble);
  EXPECT_EQ(lo->weight.size(0), split);
  EXPECT_EQ(hi->weight.size(0), C - split);
  auto w_lo = in.w.slice(0, 0, split), w_hi = in.w.slice(0, split, C);
  lo->set_reducer(std::make_shared<TwoShardReducer>(in.x, in.y, w_hi, split));
  hi->set_reducer(std::make_shared<TwoShardReducer>(in.x, in.y, w_lo, 0));

  for (int call = 0; call < 3; ++call) {
    Pass a = run_head(*whole, in);
    HeadInputs in_lo{in.x, in.y, w_lo, in.upstream.slice(1, 0, split)};
    HeadInputs in_hi{in.x, in.y, w_hi, in.upstream.slice(1, split, C)};
    Pass b = run_head(*lo, in_lo), c = run_head(*hi, in_hi);
    EXPECT_TRUE(close(torch::cat({b.logits, c.logits}, 1), a.logits, 1e-12, yaml + " logits"));
    EXPECT_TRUE(close(torch::cat({b.grad_w, c.grad_w}, 0), a.grad_w, 1e-12, yaml + " d/dw"));
    EXPECT_TRUE(close(b.grad_x + c.grad_x, a.grad_x, 1e-12, yaml + " d/dx"));
    for (const auto& buf : whole->named_buffers()) {
      EXPECT_TRUE(close(lo->named_buffers()[buf.key()], buf.value(), 1e-12, yaml + " buffer " + buf.key()));
      EXPECT_TRUE(close(hi->named_buffers()[buf.key()], buf.value(), 1e-12, yaml + " buffer " + buf.key()));
    }
  }
}

TEST(HeadShardsCheck, HeadsThatNeedOtherShardsTargetsRefuseToRunWithoutAReducer) {
  auto in = make_inputs(8, 6, 10, 4);
  for (const char* yaml : {"{type: mv_softmax}", "{type: curricularface}"}) {
    auto shard = make_head(YAML::Load(yaml), heads::HeadGeometry(6, 10, 0, 5));
    try {
      shard->forward(in.x, in.y);
      ADD_FAILURE() << yaml << ": no error";
    } catch (const ArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find("holds classes [0, 5) of 10"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("set_reducer"), std::string::npos) << e.what();
    }
    // A whole head needs no reducer; a shard of a target-only head needs none either.
    EXPECT_NO_THROW(make_head(YAML::Load(yaml), 6, 10)->forward(in.x, in.y));
  }
  EXPECT_NO_THROW(make_head(YAML::Load("{type: arcface}"), heads::HeadGeometry(6, 10, 0, 5))->forward(in.x, in.y));
}

INSTANTIATE_TEST_SUITE_P(AllHeads, HeadShards, ::testing::ValuesIn(every_head_variant()),
                         [](const auto& info) { return "case" + std::to_string(info.index); });

}  // namespace
}  // namespace facetrain::testing
