#pragma once
// The `facetrain` CLI: one small file per subcommand. Each registers its options on the app and
// returns the function to run; all logic lives in the libraries.

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "facetrain/core/error.h"
#include "facetrain/eval/report.h"

namespace facetrain::tools {

using Runner = std::function<int()>;

/// `facetrain train` and `facetrain --config FILE` (cmd_train.cpp): the trainer. Registers the
/// subcommand and the same options on the top level; its runner returns -1 when neither was used.
Runner add_train_command(CLI::App& app);

/// `facetrain launch --nproc N -- ARGS` (cmd_launch.cpp): N local processes with torchrun's variables.
Runner add_launch_command(CLI::App& app);

/// `facetrain bench head` (cmd_bench.cpp): one rank's head step, peak memory and time.
Runner add_bench_command(CLI::App& app);

/// `facetrain heads`: lists the built-in heads with their defaults and references.
Runner add_heads_command(CLI::App& app);
/// `facetrain head-demo`: trains a margin head on random clusters (the main job until the
/// trainer exists).
Runner add_head_demo_command(CLI::App& app);

/// `facetrain model list|summary`: the built-in backbones; parameters and FLOPs of one.
Runner add_model_command(CLI::App& app);

/// `facetrain data align|synth|pack|unpack|inspect`: the dataset tools. The group lives in
/// cmd_data.cpp (with align); it registers the others through the functions below, whose runners
/// do nothing (return 0) unless their subcommand was the one given.
Runner add_data_command(CLI::App& app);
/// `facetrain data synth` (cmd_data_synth.cpp), registered on the `data` group.
Runner add_data_synth_command(CLI::App& data);
/// `facetrain data synth-ijb` (cmd_data_synth.cpp): a tiny IJB-layout dataset, registered on `data`.
Runner add_data_synth_ijb_command(CLI::App& data);
/// `facetrain data pack|unpack|inspect` (cmd_data_pack.cpp), registered on the `data` group.
Runner add_data_pack_commands(CLI::App& data);

/// `facetrain eval` (cmd_eval.cpp): the verification protocol on `.bin` files or on precomputed
/// embeddings; `eval ijb` (IJB-B/C 1:1).
Runner add_eval_command(CLI::App& app);
/// `facetrain eval ijb` (cmd_eval_ijb.cpp), registered on the `eval` command.
Runner add_eval_ijb_command(CLI::App& eval);
/// `facetrain embed` (cmd_embed.cpp): embeddings of images as a NumPy `.npy`.
Runner add_embed_command(CLI::App& app);
/// `facetrain export` (cmd_export.cpp): backbone weights for PyTorch.
Runner add_export_command(CLI::App& app);

/// Shared by eval, eval ijb, embed and export (cmd_eval_options.cpp): --checkpoint, --model, --set.
void add_backbone_options(CLI::App& cmd, eval::BackboneSource& source, bool required);
/// Shared by eval, eval ijb and embed: --batch-size, --threads, --device.
void add_embed_options(CLI::App& cmd, eval::EmbedOptions& options, std::string& device);
/// The usage problems of those options (reported as exit 2), cited as `command`.
std::vector<ConfigIssue> embed_option_issues(const eval::EmbedOptions& options, const std::string& command);

}  // namespace facetrain::tools
