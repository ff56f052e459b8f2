#pragma once
// The one place that knows which LibTorch we build against. facetrain builds against Debian's
// LibTorch 1.13 (CPU) and PyTorch 2.x's LibTorch (CUDA); every API difference between them is
// bridged here and nowhere else.

#include <torch/version.h>

/// True when the LibTorch we compile against is at least major.minor.
#define FT_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace facetrain::compat {

/// An autocast region for one device type, like Python's `torch.autocast(device, dtype, enabled)`:
/// sets the device's autocast flag and dtype, and restores both on exit; the outermost region
/// clears the cast cache when it ends. `enabled = false` turns autocast off inside an outer region
/// (a float32 island). LibTorch 1.13 names the calls per device (`set_enabled` for CUDA,
/// `set_cpu_enabled`); 2.4 and later take the device type.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, bool enabled, c10::ScalarType dtype = c10::kBFloat16)
      : device_(device == c10::DeviceType::CUDA ? c10::DeviceType::CUDA : c10::DeviceType::CPU),
        prev_enabled_(is_enabled(device_)),
        prev_dtype_(get_dtype(device_)) {
    set(device_, enabled, enabled ? dtype : prev_dtype_);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set(device_, prev_enabled_, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

  /// Whether autocast is on for `device` (CPU or CUDA) right now.
  static bool is_enabled(c10::DeviceType device) {
#if FT_TORCH_VERSION_AT_LEAST(2, 4)
    return at::autocast::is_autocast_enabled(device);
#else
    return device == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
  }

 private:
  static c10::ScalarType get_dtype(c10::DeviceType device) {
#if FT_TORCH_VERSION_AT_LEAST(2, 4)
    return at::autocast::get_autocast_dtype(device);
#else
    return device == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                           : at::autocast::get_autocast_cpu_dtype();
#endif
  }
  static void set(c10::DeviceType device, bool enabled, c10::ScalarType dtype) {
#if FT_TORCH_VERSION_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(device, enabled);
    at::autocast::set_autocast_dtype(device, dtype);
#else
    if (device == c10::DeviceType::CUDA) {
      at::autocast::set_enabled(enabled);
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      at::autocast::set_cpu_enabled(enabled);
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
#endif
  }

  c10::DeviceType device_;
  bool prev_enabled_;
  c10::ScalarType prev_dtype_;
};

/// "1.13.0", "2.5.1", ...
inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

}  // namespace facetrain::compat
