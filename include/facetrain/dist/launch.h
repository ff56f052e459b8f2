#pragma once
// `facetrain launch --nproc N -- ARGS...`: a single-node launcher for users without torchrun. It
// starts N copies of a program with torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), each in its own process group, forwards SIGINT
// and SIGTERM to them once (so Ctrl-C makes every rank finish its step and write one checkpoint),
// and when one of them fails, stops the others (SIGTERM, then SIGKILL after a grace period) and
// says which rank failed and how. A rank whose launcher dies gets SIGTERM.
//
// Example:
//   facetrain::dist::LaunchOptions o;
//   o.nproc = 2;
//   o.args = {"--config", "configs/quickstart.yaml"};
//   int code = facetrain::dist::launch_local(o);   // 0 when every rank succeeded

#include <cstdint>
#include <string>
#include <vector>

namespace facetrain::dist {

struct LaunchOptions {
  int64_t nproc = 1;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 0;                 ///< 0: a free port on master_addr
  std::string program = "/proc/self/exe";  ///< started as argv[0] "facetrain"
  std::vector<std::string> args;           ///< its arguments
  double grace_s = 30;                     ///< after a failure, how long the others get to stop before SIGKILL
};

/// Runs the ranks and waits for them. Returns 0 when all exited with 0; otherwise the first
/// failure's exit code (128 + N for a signal N). Throws ArgumentError for bad options, Error when a
/// process cannot be started.
int launch_local(const LaunchOptions& options);

/// A TCP port on `addr` that nothing listens on right now.
int64_t free_port(const std::string& addr = "127.0.0.1");

}  // namespace facetrain::dist
