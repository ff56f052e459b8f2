#pragma once
// The CUDA caching allocator's statistics (torch.cuda.memory_allocated, max_memory_allocated,
// reset_peak_memory_stats). This is the facetrain_cuda target, built only against a LibTorch
// with CUDA; everything else reads these figures through core/memory.h, which answers -1 in a
// build without it.
//
// Example:
//   facetrain::cuda::reset_peak_allocated(0);
//   run_the_step();
//   const int64_t peak = facetrain::cuda::peak_allocated_bytes(0);

#include <cstdint>

namespace facetrain::cuda {

/// Bytes of tensors alive on device `index` now.
int64_t allocated_bytes(int index);
/// The most bytes of tensors alive on device `index` at once since the last reset (or start).
int64_t peak_allocated_bytes(int index);
/// Starts the peak afresh from what is allocated now.
void reset_peak_allocated(int index);

}  // namespace facetrain::cuda
