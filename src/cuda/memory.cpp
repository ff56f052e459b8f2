#include "facetrain/cuda/memory.h"

#include <c10/cuda/CUDACachingAllocator.h>

namespace facetrain::cuda {

namespace {
// StatType::AGGREGATE: the sum over the small and large pools. The enum moved namespaces between
// LibTorch versions (c10::cuda::CUDACachingAllocator, then c10::CachingDeviceAllocator), its value
// did not; `auto` keeps the stats' type out of this file for the same reason.
constexpr size_t kAggregate = 0;
}  // namespace

int64_t allocated_bytes(int index) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  return stats.allocated_bytes[kAggregate].current;
}

int64_t peak_allocated_bytes(int index) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  return stats.allocated_bytes[kAggregate].peak;
}

void reset_peak_allocated(int index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
}

}  // namespace facetrain::cuda
