#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// How ArcFace's gradient is computed (YAML `gradient`).
enum class ArcFaceGradient {
  kAutograd,        ///< "autograd": the exact derivative of the forward rule (default)
  kStraightThrough  ///< "straight_through": d logit / d c = s everywhere (insightface today)
};

/// Options of `arcface`.
struct ArcFaceOptions {
  double scale = 64;         ///< s > 0
  double margin = 0.5;       ///< m in [0, π/2] (radians)
  bool easy_margin = false;  ///< margin only where gt > 0, else the target stays gt
  ArcFaceGradient gradient = ArcFaceGradient::kAutograd;

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// ArcFace (Deng et al., 2019), additive angular margin. With arc(c, m) = c·cos m − √(1−c²)·sin m
/// = cos(θ + m):
///  - default: target s·arc(gt, m) if gt > cos(π − m) else s·(gt − sin(π − m)·m); full gradient.
///    Reference: insightface arcface_torch `losses.py` ArcFace up to Dec 2022 (th/mm fallback),
///    CurricularFace's `ArcFace`.
///  - easy_margin: target s·arc(gt, m) if gt > 0 else s·gt.
///  - gradient: straight_through: forward s·cos(acos(gt) + m) with no fallback, backward as if the
///    margin were the identity (insightface `CombinedMarginLoss` today).
/// Non-target logits are s·c. Finite for gt = ±1 (the √ term's gradient is 0 where 1 − c² < 1e-12).
class ArcFaceImpl : public NormalizedHeadImpl<ArcFaceOptions> {
 public:
  using Options = ArcFaceOptions;
  static constexpr const char* kType = "arcface";
  ArcFaceImpl(const ArcFaceOptions& options, const HeadGeometry& geometry);

 protected:
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(ArcFace);

}  // namespace facetrain::heads
