#include <cstdio>

#include "commands.h"
#include "facetrain/heads/registry.h"

namespace facetrain::tools {

Runner add_heads_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("heads", "List the margin heads, their defaults and references");
  (void)cmd;
  return [] {
    for (const auto& h : heads::head_types()) {
      std::printf("%-15s %s\n%-15s defaults: %s\n%-15s reference: %s\n", h.type.c_str(), h.summary.c_str(), "",
                  h.defaults.empty() ? "(no options)" : h.defaults.c_str(), "", h.reference.c_str());
    }
    return 0;
  };
}

}  // namespace facetrain::tools
