#include "facetrain/heads/softmax.h"

#include "facetrain/heads/normface.h"

#include <cmath>

namespace facetrain::heads {

// ---- softmax

void SoftmaxOptions::read(config::Section&) {}

SoftmaxImpl::SoftmaxImpl(const SoftmaxOptions&, const HeadGeometry& geometry) : MarginHeadImpl(kType, geometry) {
  // face.evoLVe: weight xavier-uniform over the whole [C, D] matrix (bound √(6 / (D + C)),
  // whichever classes this shard holds), bias zero.
  init_weight_uniform(std::sqrt(6.0 / double(geometry.embedding_size + geometry.num_classes)));
  bias = register_parameter("bias", torch::zeros({geometry.num_local_classes()}));
}

torch::Tensor SoftmaxImpl::similarity(const torch::Tensor& x, const torch::Tensor&,
                                      const std::vector<torch::Tensor>& rows) {
  return torch::nn::functional::linear(x, rows.at(0), rows.at(1));
}

torch::Tensor SoftmaxImpl::apply_margin(const torch::Tensor& logits, const torch::Tensor&, const Targets&, const RowState&) {
  return logits;
}

// ---- normface

void NormFaceOptions::read(config::Section& s) { s.read("scale", scale); }

OptionProblems NormFaceOptions::problems() const {
  OptionProblems p;
  detail::check_positive(p, "scale", scale);
  return p;
}

std::string NormFaceOptions::describe() const { return "scale=" + detail::fmt(scale); }

NormFaceImpl::NormFaceImpl(const NormFaceOptions& options, const HeadGeometry& geometry)
    : NormalizedHeadImpl(kType, options, geometry) {}

torch::Tensor NormFaceImpl::apply_margin(const torch::Tensor& cos, const torch::Tensor&, const Targets&, const RowState&) {
  return cos * options_.scale;
}

}  // namespace facetrain::heads
