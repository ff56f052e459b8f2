// facetrain: the command-line entry point. Turns library exceptions into messages and exit codes:
// 0 success, 1 runtime error, 2 bad configuration or usage.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "facetrain/core/error.h"
#include "facetrain/core/runtime.h"
#include "facetrain/core/torch_compat.h"
#include "facetrain/version.h"

int main(int argc, char** argv) {
  facetrain::tune_cpu_allocator();
  CLI::App app{"facetrain: face-recognition training with margin-based losses (C++ / LibTorch)", "facetrain"};
  app.set_version_flag("--version", std::string("facetrain ") + FACETRAIN_VERSION_STRING + " (LibTorch " +
                                        facetrain::compat::torch_version() + ")");
  app.require_subcommand(0, 1);
  std::vector<std::pair<CLI::App*, facetrain::tools::Runner>> commands;
  auto add = [&](facetrain::tools::Runner (*adder)(CLI::App&)) {
    auto before = app.get_subcommands({}).size();
    auto runner = adder(app);
    commands.emplace_back(app.get_subcommands({})[before], runner);
  };
  add(&facetrain::tools::add_train_command);
  add(&facetrain::tools::add_launch_command);
  add(&facetrain::tools::add_heads_command);
  add(&facetrain::tools::add_head_demo_command);
  add(&facetrain::tools::add_model_command);
  add(&facetrain::tools::add_data_command);
  add(&facetrain::tools::add_eval_command);
  add(&facetrain::tools::add_embed_command);
  add(&facetrain::tools::add_export_command);
  add(&facetrain::tools::add_bench_command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : commands) {
      if (sub->parsed()) return run();
    }
    // `facetrain --config FILE`: the train command's runner reads the top-level options.
    if (int code = commands.front().second(); code >= 0) return code;
    std::cout << app.help();
    return 0;
  } catch (const facetrain::ConfigError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const facetrain::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << e.what() << "\n";
    return 1;
  }
}
