#pragma once
// PyTorch state dicts: read and write the files `torch.save(model.state_dict(), path)` writes
// and `torch.load(path)` reads, and load them into (or save them from) any torch::nn::Module.
//
// File format: the zip archive PyTorch writes by default since 1.6 (`<archive>/data.pkl`, a
// pickle; `<archive>/data/<key>`, one raw little-endian record per storage; `<archive>/version`;
// optionally `<archive>/byteorder`). The pickle is read by facetrain's allow-listed reader
// (io/pickle.h), which never runs code: only collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the torch.<Type>Storage classes may
// appear. The legacy pre-1.6 format is refused with instructions to re-save the file.
//
// Names follow PyTorch's state_dict(): for each module, its own parameters in registration
// order, then its own buffers, then each child recursively, joined with '.'; so a LibTorch
// module that registers the same names as a PyTorch one exchanges weights with it directly.
//
// Example:
//   auto net = facetrain::backbones::make_backbone(...);        // any torch::nn::Module
//   facetrain::io::load_state_dict(*net, "backbone.pth");       // strict: all names and shapes
//   facetrain::io::save_state_dict(*net, "out.pth");            // torch.load() reads it back
//   auto sd = facetrain::io::read_state_dict("ckpt.pth", {"state_dict_backbone"});

#include <torch/torch.h>

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "facetrain/core/error.h"

namespace facetrain::io {

/// Names and tensors, in file (or module) order.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

/// How to read a state-dict file.
struct ReadOptions {
  /// Empty: the file's top level is the state dict (an OrderedDict or dict of tensors).
  /// Otherwise the top level is a checkpoint dict and the state dict is its entry `entry`
  /// ("state_dict", "state_dict_backbone", "model", ...); the other top-level entries may be
  /// anything the reader accepts (ints, floats, strings, lists, nested dicts, tensors) and are
  /// ignored.
  std::string entry;
};

/// Reads the state dict in `path`, a torch.save zip archive. Tensors come back as independent
/// contiguous CPU tensors of the stored dtype (float16/bfloat16 stay as stored), in file order;
/// views and storages shared between entries are resolved (each entry is its own copy).
/// Throws facetrain::DataError naming `path` for: a missing or unreadable file, a legacy
/// (pre-1.6) file, a truncated or corrupt archive, a big-endian file, a pickle the reader
/// refuses (e.g. a global not on the allow-list), a non-tensor value in the state dict (naming
/// its key), a missing `entry`, a tensor whose view does not fit its storage, or a storage
/// record whose size is not numel x element size.
StateDict read_state_dict(const std::string& path, const ReadOptions& options = {});

/// Writes `state` to `path` as a zip archive that Python's torch.load() returns as an
/// OrderedDict of name -> tensor (archive folder "archive", records data.pkl, data/0...,
/// byteorder "little", version). Tensors are written contiguous, from CPU, in their own dtype
/// (float32/64, float16, bfloat16, int64/32/16/8, uint8, bool). Atomic: the archive is written
/// to `path + ".tmp.<pid>"` in the same directory, flushed to disk and renamed over `path`; on
/// any failure the temporary is removed, an existing file at `path` is left untouched, and
/// facetrain::DataError is thrown. Throws facetrain::ArgumentError (before touching any file)
/// for an empty or duplicate name, an undefined or non-strided tensor, or an unsupported dtype.
void write_state_dict(const StateDict& state, const std::string& path);

/// One value of a checkpoint archive's top-level dict: a Python int, float, str, or a state dict
/// (an OrderedDict of tensors).
using ArchiveValue = std::variant<int64_t, double, std::string, StateDict>;
/// A checkpoint: the top-level dict of a torch.save archive, in order.
using Archive = std::vector<std::pair<std::string, ArchiveValue>>;

/// Writes `archive` as the zip archive `torch.save({key: value, ...}, path)` writes: Python's
/// torch.load() returns a dict of int, float, str and OrderedDicts of tensors, so
/// `torch.load(path)["state_dict_backbone"]` loads into a PyTorch model. Atomic, and with the same
/// errors, as write_state_dict (ArgumentError also for a key that appears twice).
void write_archive(const Archive& archive, const std::string& path);

/// Reads a torch.save archive whose top level is a dict: its int, float (and bool, as int), str
/// and dict-of-tensor entries, in file order. Other entries (lists, None, nested dicts of other
/// things, as in optimizer states) are left out and their keys appended to `skipped` when given.
/// Throws facetrain::DataError naming `path` as read_state_dict does, and when the top level is
/// not a plain dict (a bare state dict is an OrderedDict: read it with read_state_dict).
Archive read_archive(const std::string& path, std::vector<std::string>* skipped = nullptr);

/// The state dict of `module`: names and tensors in PyTorch's state_dict() order (own
/// parameters, own buffers, then children recursively; undefined tensors skipped). The tensors
/// are the module's own (not copies): writing into them changes the module.
StateDict module_state_dict(const torch::nn::Module& module);

/// How to load a state dict into a module.
struct LoadOptions {
  /// Accept model tensors the file lacks (they keep their values).
  bool allow_missing = false;
  /// Accept file tensors the model lacks (they are ignored).
  bool allow_unexpected = false;
  /// As ReadOptions::entry: the checkpoint entry holding the state dict; empty for a plain one.
  std::string entry;
  /// If every key of the file starts with "module." (a DistributedDataParallel save), strip it.
  bool strip_module_prefix = true;
};

/// What a load found besides the tensors it copied (all names, not just the first ten).
struct LoadReport {
  std::vector<std::string> missing;     ///< in the model, not in the file (only with allow_missing)
  std::vector<std::string> unexpected;  ///< in the file, not in the model (only with allow_unexpected)
};

/// Loads the state dict in `path` into `module`. Strict by default: one facetrain::DataError
/// naming the file and listing, with counts and the first ten names of each, the missing keys,
/// the unexpected keys, the shape mismatches (name, file shape, model shape; errors even with
/// the allow flags) and the dtype mismatches (integer/bool vs floating). Floating tensors are
/// converted to the model tensor's dtype (float16 -> float32, ...). Copies under
/// torch::NoGradGuard with copy_, so the model's requires_grad flags, devices and memory formats
/// (e.g. channels-last) are kept. Nothing is modified if any error is found.
LoadReport load_state_dict(torch::nn::Module& module, const std::string& path, const LoadOptions& options = {});

/// As above, for a state dict already in memory; `source` names it in messages.
/// (`options.entry` is not used here.)
LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, const std::string& source,
                           const LoadOptions& options = {});

/// Saves `module`'s state dict to `path` (module_state_dict, tensors moved to CPU and made
/// contiguous, then write_state_dict). torch.load(path) in Python returns the OrderedDict that
/// the equivalent PyTorch module's load_state_dict accepts.
void save_state_dict(const torch::nn::Module& module, const std::string& path);

}  // namespace facetrain::io
