#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "commands.h"
#include "facetrain/core/progress.h"
#include "facetrain/data/align.h"

namespace facetrain::tools {
namespace {

Runner add_align_command(CLI::App& data) {
  struct Args {
    std::string images, landmarks, out;
  };
  auto args = std::make_shared<Args>();
  auto* align = data.add_subcommand("align", "Align faces to the ArcFace 112x112 template from 5 landmarks each");
  align->add_option("--images", args->images, "Folder of the source photos")->required();
  align
      ->add_option("--landmarks", args->landmarks,
                   "Text file: one line per photo, 'relative/path x1 y1 x2 y2 ... x5 y5' (eyes, nose, mouth corners)")
      ->required();
  align->add_option("--out", args->out, "Output folder (same relative paths, 112x112)")->required();
  return [args, align] {
    if (!align->parsed()) return 0;
    std::unique_ptr<ProgressMeter> meter;
    auto summary = data::align_folder(args->images, args->landmarks, args->out, [&](int64_t done, int64_t total) {
      if (!meter) meter = std::make_unique<ProgressMeter>(total, "image");
      if (done == total || done % 500 == 0) spdlog::info("align: {}", meter->line(done));
    });
    spdlog::info("aligned {} image(s) into {}", summary.written, args->out);
    return 0;
  };
}

}  // namespace

Runner add_data_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("data", "Datasets: synthesise, pack, unpack, inspect, align");
  cmd->require_subcommand(1, 1);
  std::vector<Runner> runners{add_data_synth_command(*cmd), add_data_synth_ijb_command(*cmd),
                              add_data_pack_commands(*cmd), add_align_command(*cmd)};
  return [runners] {
    int rc = 0;
    for (const auto& run : runners) rc = std::max(rc, run());
    return rc;
  };
}

}  // namespace facetrain::tools
