#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// Options of `combined`.
struct CombinedOptions {
  double scale = 64;  ///< s > 0
  double m1 = 1.0;    ///< multiplicative angular margin, > 0
  double m2 = 0.5;    ///< additive angular margin, in [0, π/2]
  double m3 = 0.0;    ///< additive cosine margin, in [0, 1]

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// Combined margin (insightface): target s·(cos(m1·θ + m2) − m3), others s·c.
///
/// Reference: insightface's MXNet combined margin (`loss_m1/m2/m3` in recognition/train.py),
/// including its shortcut: with m1 = 1 and m2 = 0 the target is s·(gt − m3) (no arccos).
/// combined(1, 0, m) is cosface exactly; combined(1, m, 0) equals arcface wherever arcface's
/// fallback is inactive (gt > cos(π − m)); beyond it the MXNet rule has no fallback.
/// The gradient of arccos is taken as 0 where 1 − gt² < 1e-12 (it is infinite at gt = ±1).
class CombinedImpl : public NormalizedHeadImpl<CombinedOptions> {
 public:
  using Options = CombinedOptions;
  static constexpr const char* kType = "combined";
  CombinedImpl(const CombinedOptions& options, const HeadGeometry& geometry);

 protected:
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(Combined);

}  // namespace facetrain::heads
