#pragma once
// SGD and AdamW over named parameter groups, with state that is saved and restored by name.
//
// The updates are PyTorch 1.13's single-tensor implementations (torch/optim/sgd.py, adamw.py),
// step for step:
//   SGD    d = g + wd·p;  b = d (first step) or μ·b + d;  d = d + μ·b (nesterov) or b;  p -= lr·d
//   AdamW  p *= 1 - lr·wd;  m = β1·m + (1 - β1)·g;  v = β2·v + (1 - β2)·g²;
//          p -= lr / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)
// Parameters without a gradient are skipped, as in PyTorch.
//
// State names: "<parameter name>.<slot>", slots momentum_buffer (SGD), step, exp_avg and
// exp_avg_sq (AdamW), so a checkpoint does not depend on parameter order or memory addresses.
//
// Example:
//   std::vector<ParamGroup> groups = {{"backbone", backbone_params, 0.1, 5e-4}, {"head", head_params, 0.1, 5e-4}};
//   facetrain::train::Optimizer opt(options, groups);
//   opt.set_lr_factor(schedule.factor(step));
//   loss.backward();  opt.step();  opt.zero_grad();

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "facetrain/io/state_dict.h"
#include "facetrain/train/recipe.h"

namespace facetrain::train {

/// Parameters that share a learning rate and weight decay.
struct ParamGroup {
  std::string name;                                           ///< "backbone", "backbone_no_decay", "head"
  std::vector<std::pair<std::string, torch::Tensor>> params;  ///< unique names across groups
  double base_lr = 0;                                         ///< before the schedule's factor
  double weight_decay = 0;
};

class Optimizer {
 public:
  /// Throws ArgumentError for a repeated parameter name.
  Optimizer(const OptimizerOptions& options, std::vector<ParamGroup> groups);

  /// Sets every group's lr to base_lr x factor.
  void set_lr_factor(double factor);
  double lr(size_t group) const { return lrs_.at(group); }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  /// Tensors of state kept per parameter element: SGD 1 with momentum (else 0), AdamW 2.
  int64_t slots_per_parameter() const {
    if (options_.type == OptimizerType::kAdamW) return 2;
    return options_.momentum != 0 ? 1 : 0;
  }

  /// Sets every gradient to undefined (PyTorch's set_to_none).
  void zero_grad();
  /// One update of every parameter that has a gradient.
  void step();

  /// For the next step() only: parameter `name` (a tensor of rows, such as the class centres) is
  /// updated in the rows `rows` alone (int64 [n], distinct); its other rows and their slots are
  /// left exactly as they are: no weight decay, no momentum, no AdamW moment decay (Partial FC's
  /// unsampled centres). Momentum buffers are then kept for every row (zeros for rows that never
  /// stepped, which makes a row's first update the same as PyTorch's first step); AdamW counts
  /// steps per parameter, as torch.optim.SparseAdam does. With every row in `rows` the update
  /// equals the dense one bit for bit. Throws ArgumentError for an unknown name.
  void set_rows(const std::string& name, torch::Tensor rows);

  /// The state, named "<param>.<slot>" (CPU copies not needed: the tensors are the optimizer's).
  io::StateDict state_dict() const;
  /// Restores state_dict() output. Throws DataError naming `source` for an unknown parameter or
  /// slot, or a shape that differs from the parameter's. Parameters absent from `state` start
  /// fresh (they had taken no step).
  void load_state_dict(const io::StateDict& state, const std::string& source);

 private:
  struct Slots {
    torch::Tensor momentum_buffer;  // SGD
    int64_t step = 0;               // AdamW
    torch::Tensor exp_avg, exp_avg_sq;
  };
  OptimizerOptions options_;
  std::vector<ParamGroup> groups_;
  std::vector<double> lrs_;
  std::vector<std::vector<Slots>> slots_;  // [group][param]
  std::vector<std::pair<std::string, torch::Tensor>> rows_;  // set_rows for the next step

  void update(torch::Tensor p, const torch::Tensor& grad, Slots& s, double lr, double wd);
};

}  // namespace facetrain::train
