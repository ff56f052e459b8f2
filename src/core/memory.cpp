#include "facetrain/core/memory.h"

#include <cstdio>
#include <fstream>
#include <string>

#if FACETRAIN_WITH_CUDA
#include "facetrain/cuda/memory.h"
#endif

namespace facetrain {

namespace {
// "VmRSS:     123456 kB" -> bytes.
int64_t status_field(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':')
      return std::stoll(line.substr(key.size() + 1)) * 1024;
  }
  return -1;
}
}  // namespace

int64_t resident_bytes() { return status_field("VmRSS"); }
int64_t peak_resident_bytes() { return status_field("VmHWM"); }

bool reset_peak_resident() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

#if FACETRAIN_WITH_CUDA
int64_t device_allocated_bytes(int index) { return cuda::allocated_bytes(index); }
int64_t device_peak_bytes(int index) { return cuda::peak_allocated_bytes(index); }
void reset_device_peak(int index) { cuda::reset_peak_allocated(index); }
bool device_memory_readable() { return true; }
#else
int64_t device_allocated_bytes(int) { return -1; }
int64_t device_peak_bytes(int) { return -1; }
void reset_device_peak(int) {}
bool device_memory_readable() { return false; }
#endif

std::string format_bytes(int64_t bytes) {
  char buf[32];
  if (bytes >= (int64_t(1) << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(int64_t(1) << 30));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1 << 20));
  }
  return buf;
}

}  // namespace facetrain
