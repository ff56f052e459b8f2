// `facetrain export`: wiring only; the work is in eval/report.h and io/state_dict.h.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "commands.h"
#include "facetrain/eval/report.h"
#include "facetrain/io/state_dict.h"

namespace facetrain::tools {

Runner add_export_command(CLI::App& app) {
  struct Args {
    eval::BackboneSource backbone;
    std::string out;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("export", "Backbone weights for PyTorch (a .pth state dict with insightface's names)");
  add_backbone_options(*cmd, args->backbone, true);
  cmd->add_option("--out", args->out, "The .pth to write (torch.load gives an OrderedDict)")->required();

  return [args, cmd] {
    if (!cmd->parsed()) return 0;
    auto net = eval::load_backbone(args->backbone);  // checks every tensor's name and shape
    io::save_state_dict(*net, args->out);
    spdlog::info("wrote the {} backbone weights ({} tensors) to {}", net->type(), io::module_state_dict(*net).size(),
                 args->out);
    return 0;
  };
}

}  // namespace facetrain::tools
