// `facetrain launch --nproc N -- ARGS...`: wiring only; the launcher is dist/launch.h.
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "facetrain/dist/launch.h"

namespace facetrain::tools {

Runner add_launch_command(CLI::App& app) {
  auto o = std::make_shared<dist::LaunchOptions>();
  auto* cmd = app.add_subcommand(
      "launch",
      "Run N training processes on this machine (as torchrun --nproc-per-node N): facetrain launch --nproc 2 -- "
      "--config X.yaml");
  cmd->add_option("--nproc", o->nproc, "Processes to start (one per GPU, or a few on the CPU)")->required();
  cmd->add_option("--master-addr", o->master_addr, "Rendezvous address (default 127.0.0.1)");
  cmd->add_option("--master-port", o->master_port, "Rendezvous port (default: a free one)");
  cmd->add_option("--grace", o->grace_s, "Seconds the others get to stop after one fails, before SIGKILL (default 30)");
  cmd->add_option("args", o->args, "The facetrain arguments of every process, after --")->required();
  return [o, cmd] {
    if (!cmd->parsed()) return 0;
    return dist::launch_local(*o);
  };
}

}  // namespace facetrain::tools
