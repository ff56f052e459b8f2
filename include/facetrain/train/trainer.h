#pragma once
// The trainer: `facetrain --config recipe.yaml` as a library call.
//
// One run writes into its output directory:
//   config.yaml            the resolved recipe
//   train.log              everything printed on the terminal
//   metrics.jsonl          one JSON object per line: training records {"step", "epoch", "loss",
//                          "lr", "samples_per_sec", ...} and evaluation records {"step", "eval":
//                          {NAME: {"accuracy", "std", ...}}}
//   tensorboard/           event files: loss, lr, throughput, accuracies
//   checkpoints/           step_000200.ckpt ... (checkpoint.h)
//   curves.png             loss and accuracy against steps, drawn at the end
//
// Example:
//   auto recipe = facetrain::train::read_recipe(doc, "runs/r50");
//   facetrain::train::Trainer trainer(recipe, {"runs/r50"});
//   trainer.set_evaluator(evaluator);   // optional: eval.targets (eval/trainer_eval.h)
//   auto result = trainer.run();        // returns at the end, or after SIGINT/SIGTERM

#include <torch/torch.h>

#include <csignal>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "facetrain/backbones/backbone.h"
#include "facetrain/data/loader.h"
#include "facetrain/dist/group.h"
#include "facetrain/heads/margin_head.h"
#include "facetrain/train/recipe.h"

namespace spdlog {
class logger;
}

namespace facetrain::train {

/// How a run starts.
struct RunOptions {
  std::string output_dir;
  /// A checkpoint to continue from, or "auto": the newest in OUTPUT/checkpoints (a fresh start
  /// when there is none). Everything is restored; the run continues exactly.
  std::string resume;
  /// Backbone weights to start from: a facetrain checkpoint or a PyTorch .pth state dict. Head,
  /// optimizer and schedule start fresh; num_classes may differ.
  std::string finetune;
  /// Install SIGINT/SIGTERM handlers for the run (finish the step, checkpoint, return).
  bool handle_signals = true;
  /// The processes training together (dist/group.h: read_environment()); one process by
  /// default. With several, each rank trains on its share of every global batch, holds its range
  /// of the class centres, and rank 0 alone writes the output directory.
  dist::Environment environment;
};

/// What periodic evaluation reports.
struct EvalReport {
  nlohmann::json sets;                                  ///< {NAME: {"accuracy", "std", ...}}
  std::vector<std::pair<std::string, double>> scalars;  ///< ("lfw/accuracy", 0.99) for TensorBoard and the plot
  std::string text;                                     ///< a table for the log
};

/// Evaluates the backbone (in eval mode, on the training device) during and after training.
class Evaluator {
 public:
  virtual ~Evaluator() = default;
  virtual EvalReport evaluate(backbones::BackboneImpl& net, torch::Device device) = 0;
  /// With several processes the trainer calls this on every rank; rank 0's report is the one
  /// logged. The default evaluates on rank 0 while the others wait; an evaluator that can split
  /// its work across the ranks overrides it (eval::VerificationEvaluator does).
  virtual EvalReport evaluate(backbones::BackboneImpl& net, torch::Device device, dist::Group& group);
};

/// Called after each micro-batch's backward, before the optimizer step: tests inject faults
/// here (a NaN gradient).
struct StepContext {
  int64_t step = 0;  ///< optimizer steps taken before this one
  backbones::BackboneImpl* backbone = nullptr;
  heads::MarginHeadImpl* head = nullptr;
};
using StepHook = std::function<void(StepContext&)>;

/// What one optimizer step did.
struct StepStats {
  double loss = 0;        ///< mean loss of its micro-batches (NaN when the step was skipped)
  int64_t samples = 0;    ///< real (not padding) images
  double grad_norm = 0;   ///< L2 norm of all gradients before clipping (unscaled)
  bool stepped = false;   ///< the parameters were updated
  bool overflow = false;  ///< fp16: skipped for a gradient overflow (the loss scale backs off)
  std::string bad;        ///< what was not finite, when skipped
};

struct TrainResult {
  int64_t step = 0;           ///< optimizer steps taken in all
  int64_t steps_run = 0;      ///< ... in this call
  int64_t skipped_steps = 0;  ///< non-finite steps skipped in this call
  int signal = 0;             ///< SIGINT or SIGTERM when a signal stopped the run, else 0
  double last_loss = 0;       ///< mean loss of the last logged window
  std::string checkpoint;     ///< the last checkpoint written
  EvalReport last_eval;       ///< the final evaluation (empty without an evaluator)
};

class Trainer {
 public:
  /// Prepares the output directory and the data (writing the synthetic dataset if the recipe
  /// asks for it), builds the model and the optimizer, and restores `run.resume` or
  /// `run.finetune`. Throws ConfigError for options that cannot work together, DataError for
  /// unreadable data or checkpoints (naming them).
  Trainer(Recipe recipe, RunOptions run);
  ~Trainer();

  void set_evaluator(std::shared_ptr<Evaluator> evaluator);
  void set_step_hook(StepHook hook);

  /// Trains to the end (or until a signal), evaluating and checkpointing as configured.
  TrainResult run();

  /// One optimizer step on train.grad_accum micro-batches from `next` (the run loop passes the
  /// loader's; benchmarks a fixed batch): lr from the schedule, forward, loss, backward, the
  /// non-finite guard, clipping, the update. Advances the step counter. Throws Error when
  /// train.max_bad_steps non-finite steps came in a row.
  StepStats step(const std::function<data::Batch()>& next);

  const Recipe& recipe() const { return recipe_; }
  backbones::BackboneImpl& backbone();
  heads::MarginHeadImpl& head();
  torch::Device device() const;
  /// The processes of this run (a one-process group when alone).
  dist::Group& group();
  /// Optimizer steps per epoch, and in the whole run.
  int64_t steps_per_epoch() const;
  int64_t total_steps() const;

 private:
  struct State;
  Recipe recipe_;
  RunOptions run_;
  std::unique_ptr<State> s_;
};

/// The newest checkpoint in OUTPUT/checkpoints, or "" when there is none (for --resume auto).
std::string latest_checkpoint(const std::string& output_dir);

}  // namespace facetrain::train
