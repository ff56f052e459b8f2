#include <spdlog/spdlog.h>

#include <memory>

#include "commands.h"
#include "facetrain/core/progress.h"
#include "facetrain/data/align.h"

namespace facetrain::tools {

Runner add_data_command(CLI::App& app) {
  struct Args {
    std::string images, landmarks, out;
  };
  auto args = std::make_shared<Args>();
  auto* cmd =
      app.add_subcommand("data", "Datasets: align raw photos (more tools follow: synth, pack, unpack, inspect)");
  cmd->require_subcommand(1, 1);
  auto* align = cmd->add_subcommand("align", "Align faces to the ArcFace 112x112 template from 5 landmarks each");
  align->add_option("--images", args->images, "Folder of the source photos")->required();
  align
      ->add_option("--landmarks", args->landmarks,
                   "Text file: one line per photo, 'relative/path x1 y1 x2 y2 ... x5 y5' (eyes, nose, mouth corners)")
      ->required();
  align->add_option("--out", args->out, "Output folder (same relative paths, 112x112)")->required();
  return [args, align] {
    if (align->parsed()) {
      std::unique_ptr<ProgressMeter> meter;
      auto summary = data::align_folder(args->images, args->landmarks, args->out, [&](int64_t done, int64_t total) {
        if (!meter) meter = std::make_unique<ProgressMeter>(total, "image");
        if (done == total || done % 500 == 0) spdlog::info("align: {}", meter->line(done));
      });
      spdlog::info("aligned {} image(s) into {}", summary.written, args->out);
    }
    return 0;
  };
}

}  // namespace facetrain::tools
