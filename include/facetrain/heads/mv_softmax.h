#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

enum class MVVariant { kAM, kArc };           ///< YAML `variant`: am | arc
enum class MVReweight { kAdaptive, kFixed };  ///< YAML `reweight`: adaptive | fixed

/// Options of `mv_softmax`.
struct MVSoftmaxOptions {
  double scale = 32;     ///< s > 0
  double margin = 0.35;  ///< m, in [0, 1] (am) or [0, π/2] (arc)
  double t = 0.2;        ///< re-weighting of hard negatives, >= 0
  MVVariant variant = MVVariant::kAM;
  MVReweight reweight = MVReweight::kAdaptive;
  bool easy_margin = true;  ///< margin only where gt > 0

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// MV-Softmax (Wang et al., 2020), mis-classified vector guided softmax.
///
/// Target f(gt): am: gt − m; arc: arc(gt, m) (no fallback); with easy_margin, only where gt > 0.
/// Hard negatives (am: c > gt − m; arc: c > arc(gt, m); the mask carries no gradient) become
/// (t + 1)·c + t (adaptive) or c + t (fixed). logits = s · the result.
/// Rows whose class is on another shard get their gt through the reducer.
/// Reference: the authors' SV-X-Softmax `FC(fc_type='MV-AM' / 'MV-Arc')`.
class MVSoftmaxImpl : public NormalizedHeadImpl<MVSoftmaxOptions> {
 public:
  using Options = MVSoftmaxOptions;
  static constexpr const char* kType = "mv_softmax";
  MVSoftmaxImpl(const MVSoftmaxOptions& options, const HeadGeometry& geometry);

 protected:
  bool needs_row_targets() const override { return true; }
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(MVSoftmax);

}  // namespace facetrain::heads
