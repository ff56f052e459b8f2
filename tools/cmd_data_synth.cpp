// `facetrain data synth`: wiring only; the work is in data/synthetic.h and io/verification_bin.h.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "facetrain/core/error.h"
#include "facetrain/core/progress.h"
#include "facetrain/data/synthetic.h"
#include "facetrain/eval/ijb.h"
#include "facetrain/io/verification_bin.h"

namespace facetrain::tools {

Runner add_data_synth_command(CLI::App& data) {
  auto options = std::make_shared<data::SynthDatasetOptions>();
  options->threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
  auto* synth = data.add_subcommand(
      "synth", "Write synthetic faces: OUT/train.rec, train.idx, property (MS1M layout) and OUT/synth_val.bin");
  synth->add_option("--out", options->out_dir, "Output folder (created if missing)")->required();
  synth->add_option("--identities", options->identities, "Training identities (>= 2)")->capture_default_str();
  synth->add_option("--images-per-identity", options->images_per_identity, "Images per training identity (>= 1)")
      ->capture_default_str();
  synth->add_option("--val-identities", options->val_identities, "Unseen identities of the validation pairs (>= 2)")
      ->capture_default_str();
  synth->add_option("--val-pairs", options->val_pairs, "Validation pairs, half genuine (even, > 0)")
      ->capture_default_str();
  synth->add_option("--seed", options->seed, "Random seed: the same seed writes the same bytes")->capture_default_str();
  synth->add_option("--threads", options->threads, "Rendering threads (the output does not depend on it)");

  return [options, synth] {
    if (!synth->parsed()) return 0;
    // Bad values are usage errors (exit 2), named by their command-line option.
    std::vector<ConfigIssue> issues;
    for (const auto& p : options->problems()) {
      std::string flag = p.key == "out_dir" ? "out" : p.key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      issues.push_back({"data synth", 0, 0, "--" + flag, p.message});
    }
    if (!issues.empty()) throw ConfigError(issues);

    options->progress = progress_logger("synth", "image");
    spdlog::info("synth: {} into {}", options->describe(), options->out_dir);
    const auto val = data::write_synthetic_dataset(*options);
    const std::string bin = (std::filesystem::path(options->out_dir) / "synth_val.bin").string();
    io::write_verification_bin(bin, val.images, val.issame);
    spdlog::info(
        "wrote {} image(s) of {} identities to {}/{{train.rec, train.idx, property}} and {} pairs of {} unseen "
        "identities to {}",
        options->identities * options->images_per_identity, options->identities, options->out_dir, val.issame.size(),
        options->val_identities, bin);
    return 0;
  };
}

Runner add_data_synth_ijb_command(CLI::App& data) {
  struct Args {
    std::string out, target = "IJBC";
    eval::IjbFixtureOptions fixture;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = data.add_subcommand(
      "synth-ijb", "Write a tiny IJB-B/C layout dataset of synthetic faces (meta/, loose_crop/) to try `eval ijb`");
  cmd->add_option("--out", args->out, "Dataset root (created if missing)")->required();
  cmd->add_option("--target", args->target, "IJBB or IJBC")
      ->capture_default_str()
      ->check(CLI::IsMember({"IJBB", "IJBC"}));
  cmd->add_option("--identities", args->fixture.identities, "Identities (>= 2)")->capture_default_str();
  cmd->add_option("--templates-per-identity", args->fixture.templates_per_identity, "Templates per identity (>= 2)")
      ->capture_default_str();
  cmd->add_option("--seed", args->fixture.seed, "Random seed: the same seed writes the same files")
      ->capture_default_str();
  return [args, cmd] {
    if (!cmd->parsed()) return 0;
    const auto fixture = eval::write_ijb_fixture(args->out, args->target, args->fixture);
    spdlog::info("wrote {} images of {} identities in the {} layout to {}", fixture.identity.size(),
                 args->fixture.identities, args->target, args->out);
    return 0;
  };
}

}  // namespace facetrain::tools
