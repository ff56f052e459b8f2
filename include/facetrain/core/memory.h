#pragma once
// How much memory this process holds, from Linux's /proc/self/status: the resident set now
// (VmRSS) and its high-water mark (VmHWM), which /proc/self/clear_refs resets. CPU memory
// benchmarks measure a region as peak_resident_bytes() after reset_peak_resident(), minus the
// resident set before it.
//
// Example:
//   const int64_t before = facetrain::resident_bytes();
//   facetrain::reset_peak_resident();
//   run_the_step();
//   const int64_t used = facetrain::peak_resident_bytes() - before;

#include <cstdint>
#include <string>

namespace facetrain {

/// VmRSS in bytes; -1 where /proc/self/status cannot be read.
int64_t resident_bytes();
/// VmHWM in bytes (the largest resident set since the start or the last reset); -1 if unknown.
int64_t peak_resident_bytes();
/// Sets the high-water mark to the current resident set (writes "5" to /proc/self/clear_refs).
/// Returns false where the kernel refuses, and the mark then counts from the process start.
bool reset_peak_resident();

/// LibTorch's CUDA caching allocator on device `index`: bytes of tensors alive now, and the most
/// alive at once since reset_device_peak (torch.cuda.memory_allocated, max_memory_allocated).
/// They come from the facetrain_cuda target; a build without CUDA answers -1, and its reset does
/// nothing.
int64_t device_allocated_bytes(int index);
int64_t device_peak_bytes(int index);
void reset_device_peak(int index);
/// Whether this build reads CUDA memory (was built against a LibTorch with CUDA).
bool device_memory_readable();

/// "244.1 MiB", "2.58 GiB" (GiB from 1 GiB up).
std::string format_bytes(int64_t bytes);

}  // namespace facetrain
