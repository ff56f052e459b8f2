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

namespace facetrain::heads {

/// Base of the heads on normalised class centres with an options struct: validates the options
/// (facetrain::ArgumentError listing every problem), draws `weight` from N(0, 0.01²) and prints the
/// options in pretty_print. Subclasses add their buffers and the margin rule.
template <class Options>
class NormalizedHeadImpl : public MarginHeadImpl {
 public:
  const Options& options() const { return options_; }

 protected:
  NormalizedHeadImpl(const char* type, const Options& options, const HeadGeometry& geometry)
      : MarginHeadImpl(type, geometry), options_(options) {
    throw_if_invalid(type, options_.problems());
    init_weight_normal();
  }
  std::string describe_options() const override { return options_.describe(); }

  Options options_;
};

}  // namespace facetrain::heads
