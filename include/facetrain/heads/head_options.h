#pragma once
// Shared pieces of the heads' option structs: range checks and formatting. Each head's options
// struct has the same three members:
//   void read(config::Section&);       // its YAML keys (defaults stay where a key is absent)
//   OptionProblems problems() const;   // out-of-range values, keyed by YAML key
//   std::string describe() const;      // "scale=64, margin=0.5" (pretty_print, `facetrain heads`)

#include <string>

#include "facetrain/config/reader.h"
#include "facetrain/heads/margin_head.h"

namespace facetrain::heads::detail {

/// Shortest decimal that reads back as `v` ("64", "0.5", "0.35").
std::string fmt(double v);
/// Adds "must be > 0, got v" unless v > 0.
void check_positive(OptionProblems& problems, const char* key, double v);
/// Adds "must be in [lo, hi], got v" unless lo <= v <= hi.
void check_range(OptionProblems& problems, const char* key, double v, double lo, double hi, const char* lo_text,
                 const char* hi_text);
void check_range(OptionProblems& problems, const char* key, double v, double lo, double hi);

}  // namespace facetrain::heads::detail
