#include "facetrain/train/optimizer.h"

#include <cmath>
#include <map>
#include <unordered_set>

#include "facetrain/core/error.h"

namespace facetrain::train {

Optimizer::Optimizer(const OptimizerOptions& options, std::vector<ParamGroup> groups)
    : options_(options), groups_(std::move(groups)) {
  std::unordered_set<std::string> names;
  for (const auto& g : groups_) {
    for (const auto& [name, p] : g.params) {
      if (!names.insert(name).second) throw ArgumentError("Optimizer: parameter '" + name + "' appears twice");
    }
    lrs_.push_back(g.base_lr);
    slots_.emplace_back(g.params.size());
  }
}

void Optimizer::set_lr_factor(double factor) {
  for (size_t i = 0; i < groups_.size(); ++i) lrs_[i] = groups_[i].base_lr * factor;
}

void Optimizer::zero_grad() {
  for (auto& g : groups_) {
    for (auto& [name, p] : g.params) p.mutable_grad() = torch::Tensor();
  }
}

void Optimizer::step() {
  torch::NoGradGuard no_grad;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const double lr = lrs_[gi], wd = groups_[gi].weight_decay;
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      torch::Tensor p = groups_[gi].params[pi].second;
      const torch::Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      Slots& s = slots_[gi][pi];
      if (options_.type == OptimizerType::kSgd) {
        torch::Tensor d = wd != 0 ? grad.add(p, wd) : grad;
        const double mu = options_.momentum;
        if (mu != 0) {
          if (!s.momentum_buffer.defined()) {
            s.momentum_buffer = d.clone().detach();
          } else {
            s.momentum_buffer.mul_(mu).add_(d, 1.0);  // dampening 0
          }
          d = options_.nesterov ? d.add(s.momentum_buffer, mu) : s.momentum_buffer;
        }
        p.add_(d, -lr);
      } else {
        if (!s.exp_avg.defined()) {
          s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Preserve);
          s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Preserve);
        }
        s.step += 1;
        p.mul_(1 - lr * wd);
        const double b1 = options_.beta1, b2 = options_.beta2;
        s.exp_avg.mul_(b1).add_(grad, 1 - b1);
        s.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1 - b2);
        const double bias_correction1 = 1 - std::pow(b1, double(s.step));
        const double bias_correction2 = 1 - std::pow(b2, double(s.step));
        const double step_size = lr / bias_correction1;
        auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
        p.addcdiv_(s.exp_avg, denom, -step_size);
      }
    }
  }
}

io::StateDict Optimizer::state_dict() const {
  io::StateDict out;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const std::string& name = groups_[gi].params[pi].first;
      const Slots& s = slots_[gi][pi];
      if (s.momentum_buffer.defined()) out.emplace_back(name + ".momentum_buffer", s.momentum_buffer);
      if (s.exp_avg.defined()) {
        out.emplace_back(name + ".step", torch::tensor(s.step, torch::kLong));
        out.emplace_back(name + ".exp_avg", s.exp_avg);
        out.emplace_back(name + ".exp_avg_sq", s.exp_avg_sq);
      }
    }
  }
  return out;
}

void Optimizer::load_state_dict(const io::StateDict& state, const std::string& source) {
  std::map<std::string, std::pair<size_t, size_t>> where;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) where[groups_[gi].params[pi].first] = {gi, pi};
  }
  auto fail = [&](const std::string& what) {
    throw DataError("cannot restore the optimizer from '" + source + "': " + what);
  };
  std::vector<std::vector<Slots>> slots;
  for (const auto& g : groups_) slots.emplace_back(g.params.size());
  const bool sgd = options_.type == OptimizerType::kSgd;
  for (const auto& [key, tensor] : state) {
    const size_t dot = key.rfind('.');
    const std::string param = dot == std::string::npos ? key : key.substr(0, dot);
    const std::string slot = dot == std::string::npos ? "" : key.substr(dot + 1);
    auto it = where.find(param);
    if (it == where.end()) fail("'" + key + "' names no parameter of this model");
    const auto [gi, pi] = it->second;
    const torch::Tensor& p = groups_[gi].params[pi].second;
    Slots& s = slots[gi][pi];
    if (slot == "step" && !sgd) {
      if (tensor.numel() != 1) fail("'" + key + "' must hold one number");
      s.step = tensor.item<int64_t>();
      continue;
    }
    const bool known = sgd ? slot == "momentum_buffer" : (slot == "exp_avg" || slot == "exp_avg_sq");
    if (!known) fail("'" + key + "' is not a state of the " + std::string(sgd ? "sgd" : "adamw") + " optimizer");
    if (tensor.sizes() != p.sizes())
      fail("'" + key + "' has shape " + c10::str(tensor.sizes()) + ", the parameter " + c10::str(p.sizes()));
    torch::Tensor copy = torch::empty_like(p, torch::MemoryFormat::Preserve);
    copy.copy_(tensor);
    (slot == "momentum_buffer" ? s.momentum_buffer : slot == "exp_avg" ? s.exp_avg : s.exp_avg_sq) = copy;
  }
  if (!sgd) {
    for (size_t gi = 0; gi < slots.size(); ++gi) {
      for (size_t pi = 0; pi < slots[gi].size(); ++pi) {
        const Slots& s = slots[gi][pi];
        if (s.exp_avg.defined() != s.exp_avg_sq.defined() || (s.exp_avg.defined() && s.step < 1))
          fail("the adamw state of '" + groups_[gi].params[pi].first + "' is incomplete");
      }
    }
  }
  slots_ = std::move(slots);
}

}  // namespace facetrain::train
