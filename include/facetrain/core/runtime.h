#pragma once
// Process-wide settings for CPU training, applied once at the start of `main`.

#include <string>

namespace facetrain {

/// Keeps freed memory in the heap for reuse. glibc serves every allocation above 32 MiB (a
/// [512, 100 000] float tensor is 205 MB) with a fresh mmap and unmaps it on free, so each
/// element-wise op on such a tensor page-faults its whole output again: measured here, a
/// NormFace forward+backward at B = 512, C = 100 000 spends most of its time in page faults
/// (docs/benchmarks.md). Must run before the first large allocation. Does nothing when the
/// environment sets FACETRAIN_SYSTEM_MALLOC=1, or off glibc. Returns what it did, for the log.
std::string tune_cpu_allocator();

}  // namespace facetrain
