#include <cstdio>
#include <memory>

#include "commands.h"
#include "facetrain/backbones.h"
#include "facetrain/config/reader.h"

namespace facetrain::tools {

Runner add_model_command(CLI::App& app) {
  struct Args {
    std::string config;
    std::string type;
    std::vector<std::string> sets;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("model", "Backbones: list them, or summarise one (parameters, FLOPs)");
  cmd->require_subcommand(1, 1);
  auto* list = cmd->add_subcommand("list", "List the built-in backbones and their defaults");
  auto* summary = cmd->add_subcommand("summary", "Parameters and FLOPs at 112x112 of the recipe's `model:` backbone");
  auto* source = summary->add_option_group("source", "where the backbone comes from (one of)");
  source->add_option("--config", args->config, "YAML recipe whose `model:` section describes the backbone");
  source->add_option("--type", args->type, "A backbone type instead of a recipe (iresnet50, mbf, ...)");
  source->require_option(1);
  summary->add_option("--set", args->sets, "Override a key: --set model.embedding_size=256 (repeatable)");
  return [args, list] {
    if (list->parsed()) {
      for (const auto& b : backbones::backbone_types()) {
        std::printf("%-20s %s (insightface: %s)\n%-20s defaults: %s\n", b.type.c_str(), b.summary.c_str(),
                    b.alias.c_str(), "", b.defaults.c_str());
      }
      return 0;
    }
    auto doc = args->config.empty() ? config::Document::from_string("model: {type: " + args->type + "}", "--type")
                                    : config::Document::from_file(args->config);
    for (const auto& s : args->sets) doc.set(s);
    config::Diagnostics diag;
    config::Section root(doc, diag);
    auto model = root.section("model");
    if (!root.has("model")) root.error("model", "missing required key 'model' (the backbone)");
    auto spec = backbones::read_backbone(model);
    diag.throw_if_any();
    auto net = spec.build();
    std::printf("%s", backbones::format_summary(backbones::summarize(*net)).c_str());
    return 0;
  };
}

}  // namespace facetrain::tools
