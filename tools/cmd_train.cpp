// `facetrain --config FILE` / `facetrain train --config FILE`: wiring only; the work is in
// train/trainer.h (and eval/report.h for the periodic evaluation).
#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "facetrain/config/reader.h"
#include "facetrain/dist/group.h"
#include "facetrain/eval/report.h"
#include "facetrain/train/checkpoint.h"
#include "facetrain/train/recipe.h"
#include "facetrain/train/trainer.h"

namespace facetrain::tools {

namespace {

namespace fs = std::filesystem;

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string output;
  std::string resume;
  std::string finetune;
};

void add_train_options(CLI::App& cmd, TrainArgs& args) {
  cmd.add_option("--config", args.config, "The YAML recipe (configs/*.yaml); with --resume, default: the checkpoint's");
  cmd.add_option("--set", args.sets, "Override a recipe key: --set train.batch_size=64 (repeatable)");
  cmd.add_option("--output", args.output, "Output directory (default: runs/<recipe name>)");
  cmd.add_option("--resume", args.resume, "Continue from a checkpoint, or 'auto': the newest in OUTPUT/checkpoints");
  cmd.add_option("--finetune", args.finetune,
                 "Start the backbone from a facetrain checkpoint or a .pth; head and optimizer start fresh");
}

int run_training(const TrainArgs& args) {
  std::string output = args.output;
  std::optional<config::Document> doc;
  if (!args.config.empty()) {
    doc = config::Document::from_file(args.config);
    if (output.empty()) output = (fs::path("runs") / fs::path(args.config).stem()).string();
  } else if (!args.resume.empty() && args.resume != "auto") {
    // The checkpoint's own recipe, and its run directory (OUTPUT/checkpoints/step_N.ckpt).
    auto ckpt = train::read_checkpoint(args.resume);
    doc = config::Document::from_string(ckpt.config, args.resume + " (its recipe)");
    if (output.empty()) output = fs::path(args.resume).parent_path().parent_path().string();
  } else {
    throw ConfigError({{"command line", 0, 0, "--config",
                        "a recipe is required (--config FILE), unless --resume names a checkpoint"}});
  }
  if (output.empty()) output = ".";
  for (const auto& s : args.sets) doc->set(s);
  train::Recipe recipe = train::read_recipe(*doc, output);

  train::RunOptions run;
  run.output_dir = output;
  run.resume = args.resume;
  run.finetune = args.finetune;
  run.environment = dist::read_environment();  // torchrun's, `facetrain launch`'s or SLURM's; else one process
  train::Trainer trainer(recipe, run);
  if (!recipe.eval.targets.empty()) {
    eval::EmbedOptions embed;
    embed.batch_size = recipe.eval.batch_size;
    trainer.set_evaluator(std::make_shared<eval::VerificationEvaluator>(recipe.eval.targets, embed));
  }
  auto result = trainer.run();
  if (result.signal != 0) return 128 + result.signal;  // the shell's "stopped by signal N"
  return 0;
}

}  // namespace

Runner add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto top = std::make_shared<TrainArgs>();
  auto* cmd =
      app.add_subcommand("train", "Train a backbone and a margin head from a recipe (same as facetrain --config)");
  add_train_options(*cmd, *args);
  add_train_options(app, *top);  // `facetrain --config FILE` without the subcommand
  return [args, top, cmd] {
    if (cmd->parsed()) return run_training(*args);
    if (!top->config.empty() || !top->resume.empty()) return run_training(*top);
    return -1;  // not asked for
  };
}

}  // namespace facetrain::tools
