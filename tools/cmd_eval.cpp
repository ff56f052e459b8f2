// `facetrain eval`: wiring only; the work is in eval/report.h, eval/verification.h, eval/ijb.h.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "facetrain/core/error.h"
#include "facetrain/core/progress.h"
#include "facetrain/eval/report.h"
#include "facetrain/io/npy.h"

namespace facetrain::tools {

namespace {

struct EvalArgs {
  eval::BackboneSource backbone;
  std::vector<std::string> bins;
  std::string embeddings, issame, json, plot;
  eval::EmbedOptions embed;
  std::string device = "auto";
};

// The issame labels of `eval --embeddings`: a bool (or 0/1 integer) vector.
std::vector<bool> read_issame(const std::string& path) {
  torch::Tensor t = io::read_npy(path);
  if (t.dim() != 1) {
    throw DataError("'" + path + "': issame must be a 1-D array of N bools, it has " + std::to_string(t.dim()) +
                    " dimension(s)");
  }
  if (t.scalar_type() != torch::kBool) {
    if (t.is_floating_point() || ((t != 0) & (t != 1)).any().item<bool>()) {
      throw DataError("'" + path + "': issame must hold bools (or 0/1 integers)");
    }
    t = t.to(torch::kBool);
  }
  std::vector<bool> out(static_cast<size_t>(t.numel()));
  const bool* p = t.contiguous().data_ptr<bool>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = p[i];
  return out;
}

void report(const std::vector<eval::NamedResult>& results, const EvalArgs& args) {
  std::printf("%s", eval::format_table(results).c_str());
  if (!args.json.empty()) {
    eval::write_text_file(args.json, eval::results_json(results));
    spdlog::info("results written to {}", args.json);
  }
  if (!args.plot.empty()) {
    for (const auto& path : eval::write_roc_plots(args.plot, results)) spdlog::info("ROC curve written to {}", path);
  }
}

}  // namespace

Runner add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd =
      app.add_subcommand("eval", "Verification accuracy (LFW, CFP-FP, AgeDB-30 .bin files) as insightface scores it");
  add_backbone_options(*cmd, args->backbone, false);
  cmd->add_option("--bin", args->bins, "Verification .bin file (repeatable)");
  cmd->add_option("--embeddings", args->embeddings,
                  "Precomputed [2N, D] embeddings (.npy), flip-fused, instead of a model");
  cmd->add_option("--issame", args->issame, "With --embeddings: the [N] bool labels (.npy)");
  add_embed_options(*cmd, args->embed, args->device);
  cmd->add_option("--json", args->json, "Write the results as JSON to this file");
  cmd->add_option("--plot", args->plot, "Write a ROC curve PNG per set into this folder");
  const Runner ijb = add_eval_ijb_command(*cmd);

  return [args, cmd, ijb] {
    if (!cmd->parsed()) return 0;
    if (!cmd->get_subcommands().empty()) return ijb();
    std::vector<ConfigIssue> issues;
    auto usage = [&](const std::string& key, const std::string& message) {
      issues.push_back({"eval", 0, 0, key, message});
    };
    const bool from_model = !args->bins.empty();
    const bool from_embeddings = !args->embeddings.empty();
    if (from_model == from_embeddings)
      usage("--bin", "give either --bin files (with --checkpoint) or --embeddings with --issame");
    if (from_model && args->backbone.checkpoint.empty()) {
      usage("--checkpoint", "--bin needs --checkpoint (a facetrain .ckpt, or .pth weights with --model)");
    }
    if (from_embeddings && args->issame.empty())
      usage("--issame", "--embeddings needs --issame (the pair labels, .npy)");
    for (auto& issue : embed_option_issues(args->embed, "eval")) issues.push_back(issue);
    if (!issues.empty()) throw ConfigError(issues);

    std::vector<eval::NamedResult> results;
    if (from_embeddings) {
      const torch::Tensor e = io::read_npy(args->embeddings);
      if (e.dim() != 2 || !e.is_floating_point()) {
        throw DataError("'" + args->embeddings + "': embeddings must be a 2-D float32 or float64 array [2N, D]");
      }
      const std::vector<bool> issame = read_issame(args->issame);
      if (e.size(0) != 2 * static_cast<int64_t>(issame.size())) {
        throw DataError("'" + args->embeddings + "' has " + std::to_string(e.size(0)) + " rows but '" + args->issame +
                        "' has " + std::to_string(issame.size()) + " labels; expected 2 rows per label");
      }
      results.emplace_back(eval::set_name(args->embeddings), eval::verify(e, torch::Tensor(), issame));
    } else {
      args->embed.device = eval::parse_device(args->device);
      auto net = eval::load_backbone(args->backbone);
      spdlog::info("{} with weights {} on {}", net->type(), args->backbone.checkpoint, args->embed.device.str());
      for (const auto& path : args->bins) {
        const auto bin = io::read_verification_bin(path);
        const std::string name = eval::set_name(path);
        args->embed.progress = progress_logger(name, "image", 10);
        results.emplace_back(name, eval::evaluate_bin(*net, bin, name, args->embed));
        spdlog::info("{}", eval::format_result(name, results.back().second));
      }
    }
    report(results, *args);
    return 0;
  };
}

}  // namespace facetrain::tools
