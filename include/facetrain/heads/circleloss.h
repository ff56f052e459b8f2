#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// Options of `circleloss`.
struct CircleLossOptions {
  double scale = 256;    ///< the paper's γ, > 0
  double margin = 0.25;  ///< m in [0, 1]

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// Circle loss, class-level form (Sun et al., 2020).
///
/// O_p = 1 + m, O_n = −m, Δ_p = 1 − m, Δ_n = m; α_p = max(O_p − c, 0), α_n = max(c − O_n, 0)
/// (both detached). Target γ·α_p·(gt − Δ_p); others γ·α_n·(c − Δ_n).
/// Reference: FaceX-Zoo `head/CircleLoss.py`.
class CircleLossImpl : public NormalizedHeadImpl<CircleLossOptions> {
 public:
  using Options = CircleLossOptions;
  static constexpr const char* kType = "circleloss";
  CircleLossImpl(const CircleLossOptions& options, const HeadGeometry& geometry);

 protected:
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(CircleLoss);

}  // namespace facetrain::heads
