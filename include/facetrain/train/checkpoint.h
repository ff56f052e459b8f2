#pragma once
// Training checkpoints: OUTPUT/checkpoints/step_000200.ckpt.
//
// A checkpoint is the zip archive `torch.save(dict)` writes, so Python reads it with torch.load
// and `torch.load(p)["state_dict_backbone"]` loads into insightface's model. Its top-level keys:
//   format "facetrain.checkpoint", version (kCheckpointVersion), facetrain_version, torch_version
//   config               the resolved recipe (YAML) the run used
//   step, epoch, epoch_batch, steps_per_epoch
//                        optimizer steps taken; the epoch and the micro-batches of it delivered
//   backbone_type, head_type, num_classes, embedding_size
//   state_dict_backbone, state_dict_head    parameters and buffers (BatchNorm statistics,
//                                           CurricularFace t, AdaFace norm statistics, ...)
//   state_optimizer      Optimizer::state_dict()
//   state_scaler         fp16 loss scale: scale, growth_tracker
//   state_rng            generator states: cpu, cuda:N
//   state_run            the NaN guard's count of bad steps in a row
// Written atomically (temporary file, fsync, rename, fsync of the folder); older checkpoints are
// pruned only after the new one is complete.
//
// Example:
//   auto ckpt = facetrain::train::read_checkpoint("runs/r50/checkpoints/step_000200.ckpt");
//   ckpt.step;  ckpt.config;  io::load_state_dict(*net, ckpt.backbone, ckpt.path);

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "facetrain/io/state_dict.h"

namespace facetrain::train {

/// The checkpoint layout this code writes; it reads this version and older ones.
constexpr int64_t kCheckpointVersion = 1;

struct Checkpoint {
  std::string path;  ///< where it was read from (messages)
  int64_t version = kCheckpointVersion;
  std::string facetrain_version, torch_version;
  std::string config;
  int64_t step = 0, epoch = 0, epoch_batch = 0, steps_per_epoch = 0;
  std::string backbone_type, head_type;
  int64_t num_classes = 0, embedding_size = 0;
  io::StateDict backbone, head, optimizer, scaler, rng, run;
};

/// "step_000200.ckpt" (at least six digits).
std::string checkpoint_name(int64_t step);

/// Writes `ckpt` to `path` atomically. DataError naming the path when it cannot.
void write_checkpoint(const Checkpoint& ckpt, const std::string& path);

/// Reads a checkpoint. DataError naming `path` when it is missing, corrupt, not a facetrain
/// checkpoint (a plain .pth: "use --finetune"), or of a newer version than this code reads.
Checkpoint read_checkpoint(const std::string& path);

/// The checkpoint at `path`, or nullopt when the file is not a facetrain checkpoint (a plain state
/// dict, another torch.save dict, or not readable as an archive). Reads the file once. Throws
/// DataError like read_checkpoint for a facetrain checkpoint that is incomplete or too new.
std::optional<Checkpoint> read_checkpoint_if(const std::string& path);

/// True if `path` is a facetrain checkpoint (a readable archive with format
/// "facetrain.checkpoint"); false for anything else, never throws.
bool is_checkpoint(const std::string& path);

/// Backbone weights from `path`: a facetrain checkpoint (its state_dict_backbone), an insightface
/// training checkpoint (a dict with state_dict_backbone), or a plain PyTorch state dict.
/// DataError naming the file when it is none of these.
io::StateDict read_backbone_weights(const std::string& path);

/// The complete checkpoints in `dir` (files named step_<digits>.ckpt), oldest first by step.
/// Temporary files of interrupted writes are not listed.
std::vector<std::string> list_checkpoints(const std::string& dir);

/// Deletes all but the newest `keep_last` checkpoints in `dir` (0 keeps all) and leftover
/// temporary files; returns the paths deleted.
std::vector<std::string> prune_checkpoints(const std::string& dir, int64_t keep_last);

}  // namespace facetrain::train
