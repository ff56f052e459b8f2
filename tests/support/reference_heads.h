#pragma once
// Line-by-line LibTorch transliterations of the public reference code each head must reproduce
// (docs/heads.md). They keep the references' own formulation (one-hot products, masked in-place
// assignment, scatter_, per-element autograd) so that comparing against them checks our
// re-formulation, not a copy of it. Each function cites the file it transliterates.
//
// Conventions: `x` raw embeddings [B, D]; `w` class weights [C, D] (our layout: the references
// that store [D, C] kernels are fed w.t()); `y` labels [B] int64. Wrappers do what the reference's
// surrounding code does (insightface's Partial FC normalises and clamps before the margin;
// AdaFace's backbone hands over x/‖x‖ and ‖x‖).

#include <torch/torch.h>

namespace facetrain::testing::reference {

/// face.evoLVe `Softmax`: F.linear(x, W, b).
torch::Tensor softmax(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

/// xiaoboCASIA/SV-X-Softmax fc_layers.py `FC` (commit de3a82d), fc_type 'FC', 'MV-AM', 'MV-Arc'.
/// `adaptive` false selects the commented-out fixed re-weighting line.
torch::Tensor svx_fc(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& y, const std::string& fc_type,
                     double margin, double t, double scale, bool easy_margin, bool adaptive = true);

/// insightface arcface_torch: partial_fc.py (normalize, linear, clamp(-1, 1)) then losses.py.
/// `kind`: "arcface" (ArcFace, th/sinmm fallback, up to Dec 2022), "arcface_easy" (the same
/// class with easy_margin = True), "cosface" (CosFace / CombinedMarginLoss m3 path),
/// "straight_through" (CombinedMarginLoss with m1 = 1, m3 = 0: margin under no_grad).
torch::Tensor insightface(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& y,
                          const std::string& kind, double s, double m);

/// insightface recognition/train.py (MXNet) combined margin on fc7 = s·cos, with one_hot.
torch::Tensor mxnet_combined(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& y, double s,
                             double m1, double m2, double m3);

/// face.evoLVe head/metrics.py `SphereFace`; `iter` is its self.iter (incremented here).
/// `pi` is the constant its k uses (3.14159265 there).
torch::Tensor evolve_sphereface(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& y, int m,
                                int64_t& iter, bool increment, double base = 1000, double gamma = 0.12,
                                double power = 1, double lambda_min = 5, double pi = 3.14159265);

/// HuangYG123/CurricularFace head/metrics.py `CurricularFace`; updates `t` ([1]) in place.
/// The 0.01 of the reference is `momentum` here.
torch::Tensor curricularface(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& y, double m, double s,
                             torch::Tensor& t, double momentum = 0.01);

/// mk-minchul/AdaFace head.py `AdaFace.forward(embeddings, norms, label)` with the backbone's
/// l2_norm split; updates batch_mean / batch_std ([1]) in place.
torch::Tensor adaface(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& y, double m, double h,
                      double s, double t_alpha, torch::Tensor& batch_mean, torch::Tensor& batch_std);

/// JDAI-CV/FaceX-Zoo head/CircleLoss.py `CircleLoss`.
torch::Tensor circleloss(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& y, double margin,
                         double gamma);

}  // namespace facetrain::testing::reference
