#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// Options of `sphereface`.
struct SphereFaceOptions {
  int margin = 4;              ///< m, an integer 1..4
  double lambda_base = 1000;   ///< > 0
  double lambda_gamma = 0.12;  ///< >= 0
  double lambda_power = 1;     ///< >= 0
  double lambda_min = 5;       ///< >= 0

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// SphereFace / A-Softmax (Liu et al., 2017), multiplicative angular margin with annealing.
///
/// k = floor(m·θ/π), ψ = (−1)^k·cos(m·θ) − 2k (cos(mθ) as a Chebyshev polynomial of c);
/// λ = max(lambda_min, lambda_base·(1 + lambda_gamma·iteration)^(−lambda_power));
/// logits scale with the embedding norm (with gradient): others ‖x‖·c, target
/// ‖x‖·(gt + (ψ − gt)/(1 + λ)) = ‖x‖·(λ·gt + ψ)/(1 + λ).
///
/// Buffer `iteration` (int64 [1], starts at 0) is incremented at the start of every train-mode
/// forward; eval-mode forwards use the current λ.
/// Reference: original A-Softmax (SphereFace Caffe), face.evoLVe `SphereFace`.
class SphereFaceImpl : public NormalizedHeadImpl<SphereFaceOptions> {
 public:
  using Options = SphereFaceOptions;
  static constexpr const char* kType = "sphereface";
  SphereFaceImpl(const SphereFaceOptions& options, const HeadGeometry& geometry);
  /// λ for the current `iteration`.
  double lambda() const;

  torch::Tensor iteration;  ///< int64 [1]

 protected:
  RowState prepare_rows(const torch::Tensor& norms, const torch::Tensor& target_cos) override;
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(SphereFace);

}  // namespace facetrain::heads
