#pragma once
// The `facetrain` CLI: one small file per subcommand. Each registers its options on the app and
// returns the function to run; all logic lives in the libraries.

#include <CLI/CLI.hpp>

#include <functional>

namespace facetrain::tools {

using Runner = std::function<int()>;

/// `facetrain heads`: lists the built-in heads with their defaults and references.
Runner add_heads_command(CLI::App& app);
/// `facetrain head-demo`: trains a margin head on random clusters (the main job until the
/// trainer exists).
Runner add_head_demo_command(CLI::App& app);

/// `facetrain model list|summary`: the built-in backbones; parameters and FLOPs of one.
Runner add_model_command(CLI::App& app);

/// `facetrain data align`: dataset tools (issue 4 adds synth, pack, unpack, inspect).
Runner add_data_command(CLI::App& app);

}  // namespace facetrain::tools
