// `facetrain eval ijb`: wiring only; the work is in eval/ijb.h and eval/report.h.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.h"
#include "facetrain/core/error.h"
#include "facetrain/core/progress.h"
#include "facetrain/eval/report.h"

namespace facetrain::tools {

Runner add_eval_ijb_command(CLI::App& eval) {
  struct Args {
    eval::BackboneSource backbone;
    std::string root, target = "IJBC", json, plot, device = "auto";
    eval::EmbedOptions embed;
    bool no_detector_score = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = eval.add_subcommand(
      "ijb", "IJB-B / IJB-C 1:1 verification (TAR at FAR 1e-6 ... 1e-1) as insightface's eval_ijbc.py");
  cmd->add_option("--checkpoint", args->backbone.checkpoint, "Backbone weights (.pth state dict)")->required();
  cmd->add_option("--model", args->backbone.model, "Backbone type (iresnet50, r100, mbf, ...) or a YAML recipe")
      ->required();
  cmd->add_option("--set", args->backbone.sets, "Override a recipe key (repeatable)");
  cmd->add_option("--root", args->root, "Dataset root (meta/ and loose_crop/)")->required();
  cmd->add_option("--target", args->target, "IJBB or IJBC")
      ->capture_default_str()
      ->check(CLI::IsMember({"IJBB", "IJBC"}));
  cmd->add_option("--batch-size", args->embed.batch_size, "Images per forward pass")->capture_default_str();
  cmd->add_option("--threads", args->embed.threads, "Decode and alignment threads (0: one per core)")
      ->capture_default_str();
  cmd->add_option("--device", args->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
  cmd->add_flag("--no-detector-score", args->no_detector_score, "Do not weight the features by the detector score");
  cmd->add_option("--json", args->json, "Write the results as JSON to this file");
  cmd->add_option("--plot", args->plot, "Write the ROC curve PNG into this folder");

  return [args, cmd] {
    if (!cmd->parsed()) return 0;
    if (args->embed.batch_size < 1) throw ConfigError({{"eval ijb", 0, 0, "--batch-size", "must be at least 1"}});
    if (args->embed.threads < 0)
      throw ConfigError({{"eval ijb", 0, 0, "--threads", "must be 0 (one per core) or more"}});
    args->embed.device = eval::parse_device(args->device);
    const eval::IjbSet set = eval::read_ijb(args->root, args->target);
    auto net = eval::load_backbone(args->backbone);
    spdlog::info("{}: {} images, {} template pairs; {} on {}", args->target, set.size(), set.pairs.size(), net->type(),
                 args->embed.device.str());
    args->embed.progress = progress_logger(args->target, "image", 5);
    eval::IjbScoreOptions score;
    score.use_detector_score = !args->no_detector_score;
    const eval::IjbResult result = eval::evaluate_ijb_model(*net, set, args->embed, score);
    std::printf("%s", eval::format_ijb_table(args->target, result).c_str());
    if (!args->json.empty()) {
      eval::write_text_file(args->json, eval::ijb_json(args->target, result));
      spdlog::info("results written to {}", args->json);
    }
    if (!args->plot.empty()) {
      std::filesystem::create_directories(args->plot);
      const std::string path = (std::filesystem::path(args->plot) / (args->target + "_roc.png")).string();
      eval::write_roc_png(path, "ROC on " + args->target, {{net->type(), result.roc.fpr, result.roc.tpr}}, true);
      spdlog::info("ROC curve written to {}", path);
    }
    return 0;
  };
}

}  // namespace facetrain::tools
