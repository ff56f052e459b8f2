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
  add_backbone_options(*cmd, args->backbone, true);
  cmd->add_option("--root", args->root, "Dataset root (meta/ and loose_crop/)")->required();
  cmd->add_option("--target", args->target, "IJBB or IJBC")
      ->capture_default_str()
      ->check(CLI::IsMember({"IJBB", "IJBC"}));
  add_embed_options(*cmd, args->embed, args->device);
  cmd->add_flag("--no-detector-score", args->no_detector_score, "Do not weight the features by the detector score");
  cmd->add_option("--json", args->json, "Write the results as JSON to this file");
  cmd->add_option("--plot", args->plot, "Write the ROC curve PNG into this folder");

  return [args, cmd] {
    if (!cmd->parsed()) return 0;
    if (auto issues = embed_option_issues(args->embed, "eval ijb"); !issues.empty()) throw ConfigError(issues);
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
