#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// Options of `adaface`.
struct AdaFaceOptions {
  double scale = 64;      ///< s > 0
  double margin = 0.4;    ///< m in [0, 1]
  double h = 0.333;       ///< concentration of the margin scaler, > 0
  double t_alpha = 0.01;  ///< EMA rate of the norm statistics, in [0, 1]

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// AdaFace (Kim et al., 2022), quality-adaptive margin from the embedding norm.
///
/// n = clip(‖x‖, 0.001, 100) (detached); c clamped to [−1 + 1e-3, 1 − 1e-3].
/// Buffers (no gradient, updated before use on every forward, as in the reference; start at 20
/// and 100): batch_mean ← t_alpha·mean(n) + (1 − t_alpha)·batch_mean, batch_std likewise with the
/// unbiased std of n over the global batch (a batch of one row leaves batch_std unchanged: its
/// std is undefined, and the reference would turn every logit into NaN).
/// ms = clip(h·(n − batch_mean)/(batch_std + 1e-3), −1, 1);
/// target cos(clip(θ − m·ms, 1e-3, π − 1e-3)) − (m + m·ms); others cos(clip(θ, 1e-3, π − 1e-3)),
/// which equals c since |c| <= 1 − 1e-3. logits = s · the result.
/// Reference: official mk-minchul/AdaFace `head.py` with the released training scripts' values.
class AdaFaceImpl : public NormalizedHeadImpl<AdaFaceOptions> {
 public:
  using Options = AdaFaceOptions;
  static constexpr const char* kType = "adaface";
  AdaFaceImpl(const AdaFaceOptions& options, const HeadGeometry& geometry);

  torch::Tensor batch_mean;  ///< float [1]
  torch::Tensor batch_std;   ///< float [1]

 protected:
  RowState prepare_rows(const torch::Tensor& norms, const torch::Tensor& target_cos) override;
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(AdaFace);

}  // namespace facetrain::heads
