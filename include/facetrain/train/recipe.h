#pragma once
// A training recipe: the YAML file `facetrain --config FILE` runs, read strictly into typed
// option structs (every key documented in docs/config.md; defaults live here, in the structs).
//
//   model:      the backbone (backbones/registry.h)
//   head:       the margin head (heads/registry.h)
//   data:       the training data and its loader (data/loader.h), plus `synthesize`
//   train:      steps, batch, seed, device, mixed precision, accumulation, clipping
//   optimizer:  SGD or AdamW, weight decay, per-head overrides
//   schedule:   warmup then poly / cosine / step / constant
//   eval:       verification targets and how often
//   checkpoint: how often, how many kept
//   log:        how often
//   dist:       collective timeout and gradient buckets (several processes)
//
// Example:
//   auto doc = facetrain::config::Document::from_file("configs/arcface_r50.yaml");
//   doc.set("train.batch_size=64");
//   auto recipe = facetrain::train::read_recipe(doc, "runs/r50");   // ConfigError lists every problem
//   recipe.train.batch_size;   // 64

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "facetrain/backbones/registry.h"
#include "facetrain/config/options.h"
#include "facetrain/config/reader.h"
#include "facetrain/data/loader.h"
#include "facetrain/data/synthetic.h"
#include "facetrain/heads/registry.h"

namespace facetrain::train {

/// Mixed precision of the backbone's body (the tail and the head stay float32).
enum class Amp {
  kNone,  ///< float32 throughout
  kBf16,  ///< bfloat16 autocast (CPU or CUDA)
  kFp16,  ///< float16 autocast with dynamic loss scaling (CUDA)
};
const char* amp_name(Amp amp);

/// `train:`
struct TrainOptions {
  int64_t max_steps = 0;        ///< optimizer steps to run; 0: `epochs` epochs
  int64_t epochs = 20;          ///< used when max_steps is 0
  int64_t batch_size = 128;     ///< per process
  uint64_t seed = 0;            ///< initialisation, data order and augmentation
  std::string device = "auto";  ///< cpu | cuda | cuda:N | auto (cuda when available)
  Amp amp = Amp::kNone;
  int64_t grad_accum = 1;     ///< micro-batches per optimizer step
  double clip_grad_norm = 0;  ///< max L2 norm of all gradients (backbone and head); 0: off
  int64_t max_bad_steps = 5;  ///< stop after this many non-finite steps in a row
  /// CUDA: cuDNN tries its convolution algorithms on the first step of each shape and keeps the
  /// fastest (`torch.backends.cudnn.benchmark`); results may differ in the last bits between runs.
  bool cudnn_benchmark = true;

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

enum class OptimizerType { kSgd, kAdamW };

/// `optimizer:`
struct OptimizerOptions {
  OptimizerType type = OptimizerType::kSgd;
  double lr = 0.1;        ///< base learning rate (before the schedule)
  double momentum = 0.9;  ///< SGD
  bool nesterov = false;  ///< SGD
  double weight_decay = 5e-4;
  double beta1 = 0.9, beta2 = 0.999;  ///< AdamW (`betas: [b1, b2]`)
  double eps = 1e-8;                  ///< AdamW
  /// No weight decay on BatchNorm and bias parameters: every parameter with fewer than two
  /// dimensions (BatchNorm scales and shifts, biases, PReLU slopes).
  bool no_decay_bn_bias = false;
  /// 0: lr as given; N > 0: every lr is scaled by (global batch) / N (the linear scaling rule),
  /// where the global batch is batch_size x grad_accum x processes.
  int64_t lr_reference_batch = 0;
  /// `head: {lr, weight_decay}`: the head's own values (default: the ones above).
  std::optional<double> head_lr, head_weight_decay;

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

enum class ScheduleType { kPoly, kCosine, kStep, kConstant };
enum class ScheduleUnit { kSteps, kEpochs };

/// `schedule:` the learning-rate factor at each optimizer step (schedule.h).
struct ScheduleOptions {
  ScheduleType type = ScheduleType::kPoly;
  ScheduleUnit unit = ScheduleUnit::kSteps;  ///< how warmup and milestones are counted
  double warmup = 0;                         ///< linear warmup from 0, in `unit`
  double power = 2;                          ///< poly
  double min_lr = 0;                         ///< poly and cosine end here (absolute, for optimizer.lr)
  std::vector<double> milestones;            ///< step: lr *= gamma at each, in `unit`
  double gamma = 0.1;                        ///< step

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// `eval:`
struct EvalOptions {
  /// Verification .bin files, resolved: "{output}" replaced, and a bare name ("lfw") meaning
  /// data.path/NAME.bin, as insightface's `val_targets`.
  std::vector<std::string> targets;
  int64_t every_steps = 2000;  ///< 0: only at the end
  int64_t batch_size = 256;    ///< images per forward pass

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// `checkpoint:`
struct CheckpointOptions {
  int64_t every_steps = 1000;  ///< 0: only at the end (and on SIGINT/SIGTERM)
  int64_t keep_last = 3;       ///< older periodic checkpoints are deleted; 0 keeps all

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// `log:`
struct LogOptions {
  int64_t every_steps = 50;  ///< progress line and metrics.jsonl record; 0: only at the end
  bool tensorboard = true;   ///< event files in OUTPUT/tensorboard

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

enum class GradCompression { kNone, kFp16, kBf16 };

/// `dist:` how processes train together (docs/distributed.md). The world itself (ranks, master
/// address) comes from the environment, not the recipe: the same recipe runs on any world size.
struct DistOptions {
  /// A collective that waits longer than this fails every rank with a message (a rank died or
  /// hangs), instead of waiting for ever.
  double timeout_s = 600;
  /// The backbone's gradients are summed over ranks in buckets of about this size, each started
  /// as soon as backward has produced it.
  double bucket_mb = 25;
  /// The dtype the backbone's gradient buckets travel in: none (their own, float32), fp16 or
  /// bf16 (half the bytes; each rank's gradient is rounded before the sum, as PyTorch's
  /// fp16_compress_hook / bf16_compress_hook do, then the sum is widened back). bf16 needs NCCL.
  GradCompression grad_compression = GradCompression::kNone;

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// A whole recipe, read and checked.
struct Recipe {
  std::string source;  ///< the file it came from
  std::string yaml;    ///< the resolved document (overrides applied), as saved in checkpoints
  backbones::BackboneSpec model;
  heads::HeadSpec head;
  /// `head.sample_rate` (any head): Partial FC, the share of each rank's classes in a step's
  /// logits, every positive kept (dist/partial_fc.h); 1 computes every class.
  double sample_rate = 1.0;
  /// `head.chunk_size` (any head): 0 computes the logits [B, C_rank] at once; N > 0 computes the
  /// cross-entropy over blocks of N classes (MarginHeadImpl::chunked_cross_entropy), so that no
  /// [B, C_rank] tensor is ever held.
  int64_t chunk_size = 0;
  data::DataConfig data;  ///< data.loader.batch_size and seed are set from `train`
  /// `data.synthesize`: write a synthetic dataset (data/synthetic.h) at data.path when it has no
  /// train.rec yet, with its validation pairs as data.path/synth_val.bin.
  std::optional<data::SynthDatasetOptions> synthesize;
  TrainOptions train;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  EvalOptions eval;
  CheckpointOptions checkpoint;
  LogOptions log;
  DistOptions dist;
};

/// Reads `doc` as a training recipe. "{output}" in data.path, data.index and eval.targets is
/// replaced by `output_dir`. Every problem (unknown keys with a hint, wrong types, values out of
/// range, a data path that does not exist) is collected and thrown as one ConfigError citing
/// file:line:column, or the --set override.
Recipe read_recipe(const config::Document& doc, const std::string& output_dir);

}  // namespace facetrain::train
