#include <spdlog/spdlog.h>

#include <memory>

#include "commands.h"
#include "facetrain/config/reader.h"
#include "facetrain/core/plot.h"
#include "facetrain/train/head_demo.h"

namespace facetrain::tools {

Runner add_head_demo_command(CLI::App& app) {
  struct Args {
    std::string config;
    std::vector<std::string> sets;
    std::string plot;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("head-demo", "Train a margin head on random clusters and show its loss falling");
  cmd->add_option("--config", args->config, "YAML recipe (see configs/head_demo.yaml)")->required();
  cmd->add_option("--set", args->sets, "Override a key: --set head.type=cosface (repeatable)");
  cmd->add_option("--plot", args->plot, "Write the loss curve to this SVG file");
  return [args] {
    auto doc = config::Document::from_file(args->config);
    for (const auto& s : args->sets) doc.set(s);
    config::Diagnostics diag;
    config::Section root(doc, diag);
    train::HeadDemoOptions options;
    options.read(root);
    diag.throw_if_any();
    spdlog::info("resolved config ({}):\n{}", args->config, doc.dump());
    auto result = train::run_head_demo(options, [](const std::string& line) { spdlog::info("{}", line); });
    if (!args->plot.empty()) {
      PlotSeries s{options.head.type, {}, result.losses};
      for (size_t i = 0; i < s.y.size(); ++i) s.x.push_back(double(i + 1));
      write_line_plot(args->plot, "head demo: " + options.head.type + " training loss", "step", "loss", {s});
      spdlog::info("loss curve written to {}", args->plot);
    }
    return 0;
  };
}

}  // namespace facetrain::tools
