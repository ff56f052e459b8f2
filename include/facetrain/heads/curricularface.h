#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// Options of `curricularface`.
struct CurricularFaceOptions {
  double scale = 64;       ///< s > 0
  double margin = 0.5;     ///< m in [0, π/2]
  double momentum = 0.01;  ///< EMA rate of `t`, in [0, 1]

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// CurricularFace (Huang et al., 2020), adaptive curriculum learning loss.
///
/// 1. ctm = arc(gt, m); hard-negative mask c > ctm (no gradient).
/// 2. Buffer t ← momentum·mean(gt) + (1 − momentum)·t over the global batch (no gradient,
///    updated before use, on every forward as in the reference; t starts at 0).
/// 3. Hard negatives become c·(t + c) (slope t + 2c; t gets no gradient).
/// 4. Target: ctm if gt > cos(π − m) else gt − sin(π − m)·m. logits = s · the result.
/// Reference: official HuangYG123/CurricularFace `head/metrics.py` (momentum 0.01 there).
class CurricularFaceImpl : public NormalizedHeadImpl<CurricularFaceOptions> {
 public:
  using Options = CurricularFaceOptions;
  static constexpr const char* kType = "curricularface";
  CurricularFaceImpl(const CurricularFaceOptions& options, const HeadGeometry& geometry);

  torch::Tensor t;  ///< float [1]

 protected:
  bool needs_row_targets() const override { return true; }
  RowState prepare_rows(const torch::Tensor& norms, const torch::Tensor& target_cos) override;
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(CurricularFace);

}  // namespace facetrain::heads
