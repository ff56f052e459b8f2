#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// Options of `normface`.
struct NormFaceOptions {
  double scale = 64;  ///< s > 0

  void read(config::Section& section);
  OptionProblems problems() const;
  std::string describe() const;
};

/// NormFace (Wang et al., 2017): logits = s·c, no margin.
///
/// Reference: SV-X-Softmax `FC(fc_type='FC')` (xiaoboCASIA/SV-X-Softmax fc_layers.py).
///
/// Example:
///   NormFaceOptions options;
///   options.scale = 30;
///   NormFace head(options, HeadGeometry(512, 1000));
class NormFaceImpl : public NormalizedHeadImpl<NormFaceOptions> {
 public:
  using Options = NormFaceOptions;
  static constexpr const char* kType = "normface";
  NormFaceImpl(const NormFaceOptions& options, const HeadGeometry& geometry);

 protected:
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
};
TORCH_MODULE(NormFace);

}  // namespace facetrain::heads
