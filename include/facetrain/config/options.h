#pragma once
// Shared pieces of every component's options struct (heads, backbones, ...). Each options struct
// has the same three members:
//   void read(config::Section&);       // its YAML keys (defaults stay where a key is absent)
//   OptionProblems problems() const;   // out-of-range values, keyed by YAML key
//   std::string describe() const;      // "scale=64, margin=0.5" (pretty_print, listings)
// so the YAML reader can attach each problem to its line, and a constructor called from C++ can
// throw the same problems as one facetrain::ArgumentError.

#include <cstdint>
#include <string>
#include <vector>

namespace facetrain::config {

/// A problem with an option, keyed by its YAML key.
struct OptionProblem {
  std::string key;
  std::string message;
};
using OptionProblems = std::vector<OptionProblem>;

/// Throws facetrain::ArgumentError listing `problems` ("<component>: scale must be > 0, got -1").
void throw_if_invalid(const std::string& component, const OptionProblems& problems);

/// Shortest decimal that reads back as `v` ("64", "0.5", "0.35").
std::string fmt(double v);
/// "[3, 4, 14, 3]"
std::string fmt_list(const std::vector<int64_t>& values);
/// Adds "must be > 0, got v" unless v > 0.
void check_positive(OptionProblems& problems, const char* key, double v);
/// Adds "must be in [lo, hi], got v" unless lo <= v <= hi.
void check_range(OptionProblems& problems, const char* key, double v, double lo, double hi, const char* lo_text,
                 const char* hi_text);
void check_range(OptionProblems& problems, const char* key, double v, double lo, double hi);

}  // namespace facetrain::config
