#include "facetrain/core/progress.h"

#include <cmath>
#include <cstdio>

#include "facetrain/core/error.h"

namespace facetrain {

ProgressMeter::ProgressMeter(int64_t total, std::string unit)
    : total_(total), unit_(std::move(unit)), start_(Clock::now()) {
  if (total <= 0) throw ArgumentError("ProgressMeter: total must be > 0, got " + std::to_string(total));
}

double ProgressMeter::elapsed_seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

double ProgressMeter::rate(int64_t done) const {
  double t = elapsed_seconds();
  return t > 0 ? static_cast<double>(done) / t : 0.0;
}

double ProgressMeter::eta_seconds(int64_t done) const {
  double r = rate(done);
  if (done >= total_ || r <= 0) return 0.0;
  return static_cast<double>(total_ - done) / r;
}

std::string ProgressMeter::format_duration(double seconds) {
  char buf[32];
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  } else if (seconds < 3600) {
    auto s = static_cast<long>(seconds);
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    auto m = static_cast<long>(seconds / 60);
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", m / 60, m % 60);
  }
  return buf;
}

std::string ProgressMeter::line(int64_t done) const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %lld/%lld (%.1f%%) | %.1f %s/s | elapsed %s | ETA %s", unit_.c_str(),
                static_cast<long long>(done), static_cast<long long>(total_),
                100.0 * static_cast<double>(done) / static_cast<double>(total_), rate(done), unit_.c_str(),
                format_duration(elapsed_seconds()).c_str(), format_duration(eta_seconds(done)).c_str());
  return buf;
}

}  // namespace facetrain
