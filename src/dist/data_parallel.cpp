#include "facetrain/dist/data_parallel.h"

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include <mutex>

#include "facetrain/core/error.h"
#include "facetrain/dist/model_parallel.h"

namespace facetrain::dist {

void broadcast_module(torch::nn::Module& module, Group& group) {
  if (group.size() == 1) return;
  torch::NoGradGuard no_grad;
  auto send = [&](torch::Tensor t) {
    if (t.is_contiguous()) {
      torch::Tensor d = t.detach();
      group.broadcast(d, 0);
    } else {  // channels_last weights: through a contiguous copy
      torch::Tensor c = t.detach().contiguous();
      group.broadcast(c, 0);
      t.detach().copy_(c);
    }
  };
  for (const auto& p : module.named_parameters()) send(p.value());
  for (const auto& b : module.named_buffers()) send(b.value());
}

torch::Tensor GroupBatchNormSync::gather(const torch::Tensor& local) const {
  return all_gather_rows(local.contiguous(), *group_);
}

struct GradientSync::State {
  struct Bucket {
    std::vector<size_t> members;  // indices into params
    int64_t pending = 0;          // members whose gradient has not come yet
    bool launched = false;
    torch::Tensor flat;
    torch::Tensor wire;  // flat in the compressed dtype, when compressing
    std::unique_ptr<Pending> work;
  };
  std::shared_ptr<Group> group;
  std::vector<torch::Tensor> params;
  std::optional<torch::Dtype> wire;
  std::vector<size_t> bucket_of;
  std::vector<bool> ready;
  std::vector<Bucket> buckets;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;  // params hold them weakly
  std::mutex mutex;
  bool armed = false;
  size_t next_launch = 0;

  void launch(size_t k) {
    Bucket& b = buckets[k];
    std::vector<torch::Tensor> parts;
    for (size_t i : b.members) {
      const torch::Tensor& p = params[i];
      parts.push_back(p.grad().defined() ? p.grad().detach().reshape(-1) : torch::zeros({p.numel()}, p.options()));
    }
    b.flat = torch::cat(parts);
    b.wire = wire && *wire != b.flat.scalar_type() ? b.flat.to(*wire) : b.flat;
    b.work = group->all_reduce_async(b.wire);
    b.launched = true;
  }

  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) launch(next_launch++);
  }

  void reset() {
    std::fill(ready.begin(), ready.end(), false);
    for (auto& b : buckets) {
      b.pending = static_cast<int64_t>(b.members.size());
      b.launched = false;
      b.flat = torch::Tensor();
      b.wire = torch::Tensor();
      b.work.reset();
    }
    next_launch = 0;
  }
};

GradientSync::GradientSync(std::vector<torch::Tensor> params, std::shared_ptr<Group> group, double bucket_mb,
                           std::optional<torch::Dtype> wire)
    : s_(std::make_shared<State>()) {
  if (wire && *wire != torch::kHalf && *wire != torch::kBFloat16)
    throw ArgumentError("GradientSync: gradients can be compressed to float16 or bfloat16, not " +
                        std::string(c10::toString(*wire)));
  if (wire == torch::kBFloat16 && group->backend() == "gloo")
    throw ArgumentError("bfloat16 gradient compression needs NCCL: Gloo sums float16 but not bfloat16 "
                        "(use fp16 on the CPU)");
  s_->group = std::move(group);
  s_->wire = wire;
  for (auto& p : params) {
    if (p.requires_grad()) s_->params.push_back(p);
  }
  const auto& ps = s_->params;
  s_->bucket_of.assign(ps.size(), 0);
  s_->ready.assign(ps.size(), false);
  const double limit = bucket_mb * 1024 * 1024;
  double bytes = limit;                   // start a bucket at the first parameter
  for (size_t k = ps.size(); k-- > 0;) {  // reverse: the order backward produces them
    if (bytes >= limit) {
      s_->buckets.emplace_back();
      bytes = 0;
    }
    s_->buckets.back().members.push_back(k);
    s_->bucket_of[k] = s_->buckets.size() - 1;
    bytes += double(ps[k].numel() * ps[k].element_size());
  }
  s_->reset();
  if (s_->group->size() == 1) return;  // nothing to sum: no hooks

  std::weak_ptr<State> weak = s_;
  for (size_t i = 0; i < ps.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(ps[i]);
    if (!acc) throw ArgumentError("GradientSync: parameter " + std::to_string(i) + " has no gradient accumulator");
    acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [weak, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          if (auto s = weak.lock()) {
            std::lock_guard<std::mutex> lock(s->mutex);
            if (s->armed && !s->ready[i]) {
              s->ready[i] = true;
              --s->buckets[s->bucket_of[i]].pending;
              s->launch_ready();
            }
          }
          return outputs;
        }));
    s_->accumulators.push_back(std::move(acc));
  }
}

GradientSync::~GradientSync() = default;

int64_t GradientSync::num_buckets() const { return static_cast<int64_t>(s_->buckets.size()); }

void GradientSync::arm(bool sync) {
  std::lock_guard<std::mutex> lock(s_->mutex);
  s_->reset();
  s_->armed = sync && s_->group->size() > 1;
}

void GradientSync::finish() {
  std::lock_guard<std::mutex> lock(s_->mutex);
  if (!s_->armed) return;
  // Buckets backward did not complete (parameters without a gradient) start now, in order.
  for (size_t k = s_->next_launch; k < s_->buckets.size(); ++k) s_->launch(k);
  s_->next_launch = s_->buckets.size();
  torch::NoGradGuard no_grad;
  for (auto& b : s_->buckets) {
    b.work->wait();
    if (!b.wire.is_same(b.flat)) b.flat.copy_(b.wire);  // widened back
    int64_t offset = 0;
    for (size_t i : b.members) {
      torch::Tensor& p = s_->params[i];
      const int64_t n = p.numel();
      torch::Tensor sum = b.flat.narrow(0, offset, n).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
      } else {
        p.mutable_grad() = sum.clone();
      }
      offset += n;
    }
  }
  s_->armed = false;
  s_->reset();
}

}  // namespace facetrain::dist
