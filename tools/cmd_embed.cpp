// `facetrain embed`: wiring only; the work is in eval/embed.h, eval/report.h and io/npy.h.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "commands.h"
#include "facetrain/core/error.h"
#include "facetrain/core/progress.h"
#include "facetrain/eval/report.h"

namespace facetrain::tools {

Runner add_embed_command(CLI::App& app) {
  struct Args {
    eval::BackboneSource backbone;
    eval::EmbedSetOptions set;
    std::string out, device = "auto";
    eval::EmbedOptions embed;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "embed", "Embeddings of images as a NumPy .npy file (with the image order in a .txt next to it)");
  add_backbone_options(*cmd, args->backbone, true);
  auto* source = cmd->add_option_group("images", "the images (one of)");
  source->add_option("--bin", args->set.bin, "A verification .bin: its 2N images in order");
  source->add_option("--images", args->set.images, "An image folder (ROOT/<identity>/*.jpg), aligned 112x112");
  source->add_option("--list", args->set.list, "An image list (mxnet .lst or insightface train.lst)");
  source->require_option(1);
  cmd->add_option("--out", args->out, "The .npy to write: [N, D] float32 (the order goes to OUT with .txt)")
      ->required();
  cmd->add_flag("--flip", args->set.flip, "Add the mirrored image's embedding (emb + emb_flip), as evaluation does");
  cmd->add_flag("--no-normalize", args->set.no_normalize, "Keep the raw embeddings (default: L2-normalised rows)");
  cmd->add_flag("--float64", args->set.float64, "Write float64 instead of float32");
  add_embed_options(*cmd, args->embed, args->device);

  return [args, cmd] {
    if (!cmd->parsed()) return 0;
    if (auto issues = embed_option_issues(args->embed, "embed"); !issues.empty()) throw ConfigError(issues);
    args->embed.device = eval::parse_device(args->device);
    auto net = eval::load_backbone(args->backbone);
    args->embed.progress = progress_logger("embed", "image", 5);
    const auto written = eval::embed_to_npy(*net, args->set, args->out, args->embed);
    spdlog::info("wrote {} embedding(s) of size {} to {} and their order to {}", written.rows, written.dim, args->out,
                 written.order_path);
    return 0;
  };
}

}  // namespace facetrain::tools
