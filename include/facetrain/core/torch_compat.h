#pragma once
// The one place that knows which LibTorch we build against. facetrain builds against Debian's
// LibTorch 1.13 (CPU) and PyTorch 2.x's LibTorch (CUDA); every API difference between them is
// bridged here and nowhere else.

#include <torch/version.h>

/// True when the LibTorch we compile against is at least major.minor.
#define FT_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

#include <string>

namespace facetrain::compat {

/// "1.13.0", "2.5.1", ...
inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

}  // namespace facetrain::compat
