#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// Options of `cosface`.
struct CosFaceOptions {
  double scale = 64;     ///< s > 0
  double margin = 0.35;  ///< m in [0, 1]

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// CosFace / AM-Softmax (Wang et al., 2018): target s·(gt − m), others s·c.
///
/// References: insightface `CombinedMarginLoss` with m3 = m; FaceX-Zoo `AM_Softmax`.
class CosFaceImpl : public NormalizedHeadImpl<CosFaceOptions> {
 public:
  using Options = CosFaceOptions;
  static constexpr const char* kType = "cosface";
  CosFaceImpl(const CosFaceOptions& options, const HeadGeometry& geometry);

 protected:
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(CosFace);

}  // namespace facetrain::heads
