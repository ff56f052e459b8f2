#include "facetrain/backbones/layers.h"

#include "facetrain/core/error.h"

namespace facetrain::backbones {

namespace {

thread_local OpCount* active_count = nullptr;

void count_conv(const torch::nn::Conv2dImpl& m, const torch::Tensor& out) {
  const auto& o = m.options;
  int64_t kernel = (*o.kernel_size())[0] * (*o.kernel_size())[1];
  int64_t per_position = kernel * (o.in_channels() / o.groups()) * o.out_channels();
  int64_t positions = out.size(0) * out.size(2) * out.size(3);
  int64_t macs = per_position * positions;
  active_count->conv_linear += macs;
  active_count->ptflops_macs += macs + (o.bias() ? o.out_channels() * positions : 0);
}

void count_linear(const torch::nn::LinearImpl& m, const torch::Tensor& in, const torch::Tensor& out) {
  int64_t macs = in.numel() * out.size(-1);
  active_count->conv_linear += macs;
  // ptflops adds the output width once for a bias, whatever the batch.
  active_count->ptflops_macs += macs + (m.options.bias() ? out.size(-1) : 0);
}

}  // namespace

OpCounter::OpCounter(OpCount& count) : previous_(active_count) { active_count = &count; }
OpCounter::~OpCounter() { active_count = previous_; }

torch::Tensor run_layer(torch::nn::Module& module, const torch::Tensor& x) {
  if (auto* m = module.as<LayerImpl>()) return m->forward(x);
  if (auto* m = module.as<torch::nn::Conv2dImpl>()) {
    auto y = m->forward(x);
    if (active_count) count_conv(*m, y);
    return y;
  }
  if (auto* m = module.as<torch::nn::BatchNorm2dImpl>()) {
    if (active_count) active_count->ptflops_macs += x.numel() * (m->options.affine() ? 2 : 1);
    return m->forward(x);
  }
  if (auto* m = module.as<torch::nn::BatchNorm1dImpl>()) {
    if (active_count) active_count->ptflops_macs += x.numel() * (m->options.affine() ? 2 : 1);
    return m->forward(x);
  }
  if (auto* m = module.as<torch::nn::PReLUImpl>()) {
    auto y = m->forward(x);
    if (active_count) active_count->ptflops_macs += y.numel();
    return y;
  }
  if (auto* m = module.as<torch::nn::LinearImpl>()) {
    auto y = m->forward(x);
    if (active_count) count_linear(*m, x, y);
    return y;
  }
  if (auto* m = module.as<torch::nn::FlattenImpl>()) return m->forward(x);
  throw ArgumentError("backbone: cannot run a child module of type " + module.name());
}

torch::Tensor run_layers(torch::nn::ModuleList& list, torch::Tensor x) {
  for (const auto& child : *list) x = run_layer(*child, x);
  return x;
}

torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).groups(groups).bias(false));
}

torch::nn::BatchNorm2d make_bn(int64_t channels) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(1e-5).momentum(0.1));
}

}  // namespace facetrain::backbones
