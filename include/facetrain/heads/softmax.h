#pragma once
#include "facetrain/heads/head_options.h"

namespace facetrain::heads {

/// Options of `softmax`. It has none: logits are a plain fully connected layer.
struct SoftmaxOptions {
  void read(config::Section& section);
  OptionProblems problems() const { return {}; }
  std::string describe() const { return ""; }
};

/// Plain softmax classifier: logits = x Wᵀ + b, no normalisation, no margin.
///
/// Reference: face.evoLVe `Softmax` (F.linear with bias; weight xavier-uniform, bias zero).
/// Parameters: weight [C_local, D], bias [C_local].
///
/// Example:
///   auto head = facetrain::heads::Softmax(SoftmaxOptions{}, HeadGeometry(512, 1000));
///   auto logits = head->forward(x /*[B, 512]*/, y /*[B]*/);  // [B, 1000]
class SoftmaxImpl : public MarginHeadImpl {
 public:
  using Options = SoftmaxOptions;
  static constexpr const char* kType = "softmax";
  SoftmaxImpl(const SoftmaxOptions& options, const HeadGeometry& geometry);
  torch::Tensor bias;  ///< [C_local]

 protected:
  std::vector<torch::Tensor> class_parameters() const override { return {weight, bias}; }
  torch::Tensor similarity(const torch::Tensor& x, const torch::Tensor& norms,
                           const std::vector<torch::Tensor>& rows) override;
  torch::Tensor apply_margin(const torch::Tensor& cos, const torch::Tensor& norms, const Targets& targets,
                             const RowState& rows) override;
  std::string describe_options() const override { return ""; }
};
TORCH_MODULE(Softmax);

}  // namespace facetrain::heads
