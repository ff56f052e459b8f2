#include "facetrain/backbones/iresnet.h"

#include "facetrain/core/error.h"

namespace facetrain::backbones {

void IResNetOptions::read(config::Section& section) {
  CommonOptions::read(section);
  section.read("dropout", dropout);
}

config::OptionProblems IResNetOptions::problems() const {
  config::OptionProblems p = CommonOptions::problems();
  if (!(dropout >= 0 && dropout < 1)) p.push_back({"dropout", "must be in [0, 1), got " + config::fmt(dropout)});
  if (layers.size() != 4) p.push_back({"layers", "must list 4 stages, got " + config::fmt_list(layers)});
  for (int64_t n : layers) {
    if (n < 1) p.push_back({"layers", "every stage needs >= 1 block, got " + config::fmt_list(layers)});
  }
  return p;
}

std::string IResNetOptions::describe() const {
  return "layers=" + config::fmt_list(layers) + ", dropout=" + config::fmt(dropout);
}

IBasicBlockImpl::IBasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride) {
  // Registration order is the state-dict order of insightface's IBasicBlock.
  bn1_ = register_module("bn1", make_bn(inplanes));
  conv1_ = register_module("conv1", make_conv(inplanes, planes, 3, 1, 1));
  bn2_ = register_module("bn2", make_bn(planes));
  prelu_ = register_module("prelu", torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(planes)));
  conv2_ = register_module("conv2", make_conv(planes, planes, 3, stride, 1));
  bn3_ = register_module("bn3", make_bn(planes));
  if (stride != 1 || inplanes != planes) {
    downsample_ = register_module("downsample",
                                  torch::nn::ModuleList(make_conv(inplanes, planes, 1, stride, 0), make_bn(planes)));
  }
}

torch::Tensor IBasicBlockImpl::forward(torch::Tensor x) {
  torch::Tensor out = run_layer(*bn1_, x);
  out = run_layer(*conv1_, out);
  out = run_layer(*bn2_, out);
  out = run_layer(*prelu_, out);
  out = run_layer(*conv2_, out);
  out = run_layer(*bn3_, out);
  torch::Tensor identity = downsample_ ? run_layers(downsample_, x) : x;
  return out + identity;
}

IResNetImpl::IResNetImpl(std::string type, const IResNetOptions& options)
    : BackboneImpl(std::move(type), options), options_(options) {
  config::throw_if_invalid(this->type(), options_.problems());
  constexpr int64_t kStem = 64;
  conv1_ = register_module("conv1", make_conv(3, kStem, 3, 1, 1));
  bn1_ = register_module("bn1", make_bn(kStem));
  prelu_ = register_module("prelu", torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(kStem)));
  int64_t inplanes = kStem;
  const int64_t widths[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    torch::nn::ModuleList stage;
    for (int64_t b = 0; b < options_.layers[s]; ++b) {
      stage->push_back(std::make_shared<IBasicBlockImpl>(inplanes, widths[s], b == 0 ? 2 : 1));
      inplanes = widths[s];
    }
    stages_.push_back(register_module("layer" + std::to_string(s + 1), stage));
  }
  bn2_ = register_module("bn2", make_bn(512));
  constexpr int64_t kFlat = 512 * 7 * 7;
  fc_ = register_module("fc", torch::nn::Linear(kFlat, options_.embedding_size));
  features_ = register_module("features",
                              torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(options_.embedding_size).eps(1e-5)));
  features_->weight.set_requires_grad(false);  // insightface fixes the scale of the embedding BN at 1

  // insightface draws every convolution from N(0, 0.1); BatchNorm weight 1 and bias 0, FC and
  // PReLU (0.25) keep the framework defaults, which LibTorch shares.
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2dImpl>()) {
      torch::NoGradGuard no_grad;
      conv->weight.normal_(0, 0.1);
    }
  }
  apply_memory_format();
}

torch::Tensor IResNetImpl::body(torch::Tensor x) {
  x = run_layer(*conv1_, x);
  x = run_layer(*bn1_, x);
  x = run_layer(*prelu_, x);
  for (auto& stage : stages_) x = run_layers(stage, x);
  x = run_layer(*bn2_, x);
  x = torch::flatten(x, 1);
  if (options_.dropout > 0) x = torch::dropout(x, options_.dropout, is_training());
  return x;
}

torch::Tensor IResNetImpl::tail(torch::Tensor x) {
  x = run_layer(*fc_, x);
  return run_layer(*features_, x);
}

}  // namespace facetrain::backbones
