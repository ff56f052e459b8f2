#include "facetrain/backbones/layers.h"

#include <algorithm>
#include <vector>

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

thread_local const BatchNormSync* active_sync = nullptr;

// BatchNorm over the global batch (BatchNormSync). x [N, C, ...]; statistics per channel over
// every dimension but 1, in float32 (as cuDNN and PyTorch's SyncBatchNorm keep them; float64 for
// float64 input).
template <class BatchNorm>
torch::Tensor sync_batch_norm(BatchNorm& bn, const torch::Tensor& x, const BatchNormSync& sync) {
  const int64_t channels = x.size(1);
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = channels;
  const torch::Tensor xf = x.to(x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat);
  const double n_local = double(x.numel() / channels);
  // This rank's count, mean and M2 = Σ (x - mean)², gathered: [W, 2C + 1].
  torch::Tensor mean_r = xf.mean(dims);
  torch::Tensor m2_r = (xf - mean_r.view(shape)).square().sum(dims);
  torch::Tensor local = torch::cat({mean_r, m2_r, torch::full({1}, n_local, xf.options())}).unsqueeze(0);
  torch::Tensor all = sync.gather(local);
  torch::Tensor n = all.select(1, 2 * channels).detach().unsqueeze(1);  // [W, 1]
  torch::Tensor total = n.sum();
  torch::Tensor means = all.narrow(1, 0, channels), m2s = all.narrow(1, channels, channels);
  torch::Tensor mean = (means * n).sum(0) / total;
  torch::Tensor m2 = m2s.sum(0) + ((means - mean).square() * n).sum(0);
  torch::Tensor var = m2 / total;
  const auto& o = bn.options;
  torch::Tensor y = (xf - mean.view(shape)) * torch::rsqrt(var + o.eps()).view(shape);
  if (o.affine()) y = y * bn.weight.view(shape) + bn.bias.view(shape);
  if (o.track_running_stats()) {
    torch::NoGradGuard no_grad;
    const double count = total.template item<double>();
    const double momentum = o.momentum().value_or(0.1);
    bn.running_mean.mul_(1 - momentum).add_(mean.detach().to(bn.running_mean.dtype()), momentum);
    bn.running_var.mul_(1 - momentum)
        .add_((var.detach() * (count / std::max(count - 1, 1.0))).to(bn.running_var.dtype()), momentum);
    bn.num_batches_tracked.add_(1);
  }
  return y;
}

}  // namespace

SyncBatchNormScope::SyncBatchNormScope(const BatchNormSync* sync) : previous_(active_sync) { active_sync = sync; }
SyncBatchNormScope::~SyncBatchNormScope() { active_sync = previous_; }

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
    if (active_sync && m->is_training()) return sync_batch_norm(*m, x, *active_sync);
    return m->forward(x);
  }
  if (auto* m = module.as<torch::nn::BatchNorm1dImpl>()) {
    if (active_count) active_count->ptflops_macs += x.numel() * (m->options.affine() ? 2 : 1);
    if (active_sync && m->is_training()) return sync_batch_norm(*m, x, *active_sync);
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
