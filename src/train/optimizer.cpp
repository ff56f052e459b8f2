#include "facetrain/train/optimizer.h"

#include <algorithm>
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

void Optimizer::set_rows(const std::string& name, torch::Tensor rows) {
  for (const auto& g : groups_) {
    for (const auto& [n, p] : g.params) {
      if (n != name) continue;
      if (p.dim() < 1) throw ArgumentError("Optimizer::set_rows: '" + name + "' has no rows");
      auto r = rows.to(p.device(), torch::kLong);
      for (auto& [set, value] : rows_) {
        if (set == name) {
          value = std::move(r);  // the latest call wins
          return;
        }
      }
      rows_.emplace_back(name, std::move(r));
      return;
    }
  }
  throw ArgumentError("Optimizer::set_rows: no parameter '" + name + "'");
}

void Optimizer::update(torch::Tensor p, const torch::Tensor& grad, Slots& s, double lr, double wd) {
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

void Optimizer::step() {
  torch::NoGradGuard no_grad;
  auto rows = std::move(rows_);
  rows_.clear();
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const double lr = lrs_[gi], wd = groups_[gi].weight_decay;
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const auto& [name, p] = groups_[gi].params[pi];
      const torch::Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      Slots& s = slots_[gi][pi];
      auto it = std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r.first == name; });
      if (it == rows.end()) {
        update(p, grad, s, lr, wd);
        continue;
      }
      // Those rows alone: gathered, updated as a whole tensor would be, written back. Momentum
      // is kept for every row (zeros never stepped: 0·μ + d = d, PyTorch's first step).
      const torch::Tensor& r = it->second;
      if (options_.type == OptimizerType::kSgd && options_.momentum != 0 && !s.momentum_buffer.defined())
        s.momentum_buffer = torch::zeros_like(p, torch::MemoryFormat::Preserve);
      if (options_.type == OptimizerType::kAdamW && !s.exp_avg.defined()) {
        s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Preserve);
        s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Preserve);
      }
      Slots sub;
      sub.step = s.step;
      auto take = [&](const torch::Tensor& full) { return full.defined() ? full.index_select(0, r) : full; };
      sub.momentum_buffer = take(s.momentum_buffer);
      sub.exp_avg = take(s.exp_avg);
      sub.exp_avg_sq = take(s.exp_avg_sq);
      torch::Tensor sub_p = p.index_select(0, r);
      update(sub_p, grad.index_select(0, r), sub, lr, wd);
      p.index_copy_(0, r, sub_p);
      auto put = [&](torch::Tensor& full, const torch::Tensor& part) {
        if (full.defined()) full.index_copy_(0, r, part);
      };
      put(s.momentum_buffer, sub.momentum_buffer);
      put(s.exp_avg, sub.exp_avg);
      put(s.exp_avg_sq, sub.exp_avg_sq);
      s.step = sub.step;
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
