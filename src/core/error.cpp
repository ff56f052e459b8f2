#include "facetrain/core/error.h"

namespace facetrain {

namespace {
std::string join_issues(const std::vector<ConfigIssue>& issues) {
  std::string out;
  if (issues.size() > 1) {
    out = std::to_string(issues.size()) + " configuration errors:\n";
  }
  for (size_t i = 0; i < issues.size(); ++i) {
    if (i > 0) out += '\n';
    out += issues[i].to_string();
  }
  return out;
}
}  // namespace

std::string ConfigIssue::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line);
    if (column > 0) out += ':' + std::to_string(column);
  }
  out += ": ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

ConfigError::ConfigError(std::vector<ConfigIssue> issues) : Error(join_issues(issues)), issues_(std::move(issues)) {}

}  // namespace facetrain
