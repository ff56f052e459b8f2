#include "facetrain/backbones/mobilefacenet.h"

namespace facetrain::backbones {

void MobileFaceNetOptions::read(config::Section& section) {
  CommonOptions::read(section);
  section.read("blocks", blocks);
  section.read("scale", scale);
}

config::OptionProblems MobileFaceNetOptions::problems() const {
  config::OptionProblems p = CommonOptions::problems();
  bool bad_blocks = blocks.size() != 4;
  for (int64_t n : blocks) bad_blocks = bad_blocks || n < 1;
  if (bad_blocks) p.push_back({"blocks", "must be 4 counts >= 1, got " + config::fmt_list(blocks)});
  if (scale < 1) p.push_back({"scale", "must be >= 1, got " + std::to_string(scale)});
  return p;
}

std::string MobileFaceNetOptions::describe() const {
  return "blocks=" + config::fmt_list(blocks) + ", scale=" + std::to_string(scale);
}

ConvBlockImpl::ConvBlockImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups) {
  layers_ =
      register_module("layers", torch::nn::ModuleList(make_conv(in, out, kernel, stride, padding, groups), make_bn(out),
                                                      torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(out))));
}

torch::Tensor ConvBlockImpl::forward(torch::Tensor x) { return run_layers(layers_, x); }

LinearBlockImpl::LinearBlockImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
                                 int64_t groups) {
  layers_ = register_module("layers",
                            torch::nn::ModuleList(make_conv(in, out, kernel, stride, padding, groups), make_bn(out)));
}

torch::Tensor LinearBlockImpl::forward(torch::Tensor x) { return run_layers(layers_, x); }

DepthWiseImpl::DepthWiseImpl(int64_t in, int64_t out, bool residual, int64_t stride, int64_t groups)
    : residual_(residual) {
  layers_ = register_module("layers",
                            torch::nn::ModuleList(std::make_shared<ConvBlockImpl>(in, groups, 1, 1, 0),
                                                  std::make_shared<ConvBlockImpl>(groups, groups, 3, stride, 1, groups),
                                                  std::make_shared<LinearBlockImpl>(groups, out, 1, 1, 0)));
}

torch::Tensor DepthWiseImpl::forward(torch::Tensor x) {
  torch::Tensor y = run_layers(layers_, x);
  return residual_ ? x + y : y;
}

ResidualImpl::ResidualImpl(int64_t channels, int64_t count, int64_t groups) {
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < count; ++i)
    layers_->push_back(std::make_shared<DepthWiseImpl>(channels, channels, true, 1, groups));
}

torch::Tensor ResidualImpl::forward(torch::Tensor x) { return run_layers(layers_, x); }

GDCImpl::GDCImpl(int64_t embedding_size) {
  layers_ = register_module(
      "layers", torch::nn::ModuleList(std::make_shared<LinearBlockImpl>(512, 512, 7, 1, 0, 512), torch::nn::Flatten(),
                                      torch::nn::Linear(torch::nn::LinearOptions(512, embedding_size).bias(false)),
                                      torch::nn::BatchNorm1d(embedding_size)));
}

torch::Tensor GDCImpl::forward(torch::Tensor x) { return run_layers(layers_, x); }

MobileFaceNetImpl::MobileFaceNetImpl(std::string type, const MobileFaceNetOptions& options)
    : BackboneImpl(std::move(type), options), options_(options) {
  config::throw_if_invalid(this->type(), options_.problems());
  const int64_t c1 = 64 * options_.scale;
  const int64_t c2 = 128 * options_.scale;
  const auto& b = options_.blocks;
  layers_ = register_module("layers", torch::nn::ModuleList());
  layers_->push_back(std::make_shared<ConvBlockImpl>(3, c1, 3, 2, 1));
  if (b[0] == 1) {
    layers_->push_back(std::make_shared<ConvBlockImpl>(c1, c1, 3, 1, 1, 64));
  } else {
    layers_->push_back(std::make_shared<ResidualImpl>(c1, b[0], 128));
  }
  layers_->push_back(std::make_shared<DepthWiseImpl>(c1, c1, false, 2, 128));
  layers_->push_back(std::make_shared<ResidualImpl>(c1, b[1], 128));
  layers_->push_back(std::make_shared<DepthWiseImpl>(c1, c2, false, 2, 256));
  layers_->push_back(std::make_shared<ResidualImpl>(c2, b[2], 256));
  layers_->push_back(std::make_shared<DepthWiseImpl>(c2, c2, false, 2, 512));
  layers_->push_back(std::make_shared<ResidualImpl>(c2, b[3], 256));
  conv_sep_ = register_module("conv_sep", std::make_shared<ConvBlockImpl>(c2, 512, 1, 1, 0));
  features_ = register_module("features", std::make_shared<GDCImpl>(options_.embedding_size));

  // As insightface's _initialize_weights: Kaiming normal (fan_out, ReLU gain) for convolutions and
  // the Linear, BatchNorm weight 1 and bias 0.
  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2dImpl>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0, torch::kFanOut, torch::kReLU);
    } else if (auto* linear = m->as<torch::nn::LinearImpl>()) {
      torch::nn::init::kaiming_normal_(linear->weight, 0, torch::kFanOut, torch::kReLU);
    }
  }
  apply_memory_format();
}

torch::Tensor MobileFaceNetImpl::body(torch::Tensor x) { return run_layers(layers_, x); }

torch::Tensor MobileFaceNetImpl::tail(torch::Tensor x) {
  x = conv_sep_->forward(x);
  return features_->forward(x);
}

}  // namespace facetrain::backbones
