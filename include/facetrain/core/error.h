#pragma once
// Typed exceptions thrown by facetrain's library code. Only `main` turns them into a message and
// an exit code; library code never aborts or asserts on input.

#include <stdexcept>
#include <string>
#include <vector>

namespace facetrain {

/// Base of every facetrain exception. `what()` is a complete, user-facing message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One problem in a configuration: where it is and what is wrong.
struct ConfigIssue {
  std::string file;     ///< file name, "<yaml>" for in-memory documents, or "--set a.b=v"
  int line = 0;         ///< 1-based; 0 when unknown
  int column = 0;       ///< 1-based; 0 when unknown
  std::string key;      ///< dotted key path, e.g. "head.scale"
  std::string message;  ///< what is wrong, with a did-you-mean hint where one exists

  /// "file:line:col: key: message"
  std::string to_string() const;
};

/// A configuration could not be read. Carries every problem found, not just the first.
class ConfigError : public Error {
 public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  const std::vector<ConfigIssue>& issues() const noexcept { return issues_; }

 private:
  std::vector<ConfigIssue> issues_;
};

/// Bad data: a file, record or sample that cannot be used. The message names it.
class DataError : public Error {
 public:
  using Error::Error;
};

/// A tensor or call contract was violated (wrong shape, dtype, label out of range, ...).
class ArgumentError : public Error {
 public:
  using Error::Error;
};

}  // namespace facetrain
