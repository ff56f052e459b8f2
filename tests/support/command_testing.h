#pragma once
// Runs a shell command from a test and captures what it printed (tests that cross-check against
// Python scripts, or run the CLI). Header-only.

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace facetrain::testing {

/// A shell command's exit status (-1 if it did not exit normally) and its stdout + stderr.
struct CommandResult {
  int status = -1;
  std::string output;
};

inline CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace facetrain::testing
