#pragma once
// The heads' option structs follow config/options.h (read / problems / describe); this adds the
// base of the heads on normalised class centres.

#include <string>

#include "facetrain/config/options.h"
#include "facetrain/config/reader.h"
#include "facetrain/heads/margin_head.h"

namespace facetrain::heads::detail {

using config::check_positive;
using config::check_range;
using config::fmt;

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
