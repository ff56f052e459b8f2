#include "facetrain/core/runtime.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace facetrain {

std::string tune_cpu_allocator() {
  const char* opt_out = std::getenv("FACETRAIN_SYSTEM_MALLOC");
  if (opt_out && std::strcmp(opt_out, "1") == 0) return "allocator: system defaults (FACETRAIN_SYSTEM_MALLOC=1)";
#if defined(__GLIBC__)
  // No mmap'ed chunks (large blocks come from the heap and are reused), and never give the top
  // of the heap back to the system between steps.
  bool ok = mallopt(M_MMAP_MAX, 0) == 1;
  ok = (mallopt(M_TRIM_THRESHOLD, -1) == 1) && ok;
  return ok ? "allocator: large blocks kept for reuse (glibc mallopt)" : "allocator: mallopt failed, system defaults";
#else
  return "allocator: system defaults (not glibc)";
#endif
}

}  // namespace facetrain
