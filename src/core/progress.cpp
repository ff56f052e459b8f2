#include "facetrain/core/progress.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include <cmath>
#include <cstdio>

#include "facetrain/core/error.h"

namespace facetrain {

ProgressMeter::ProgressMeter(int64_t total, std::string unit) : ProgressMeter(total, std::move(unit), Clock::now()) {}

ProgressMeter::ProgressMeter(int64_t total, std::string unit, Clock::time_point start)
    : total_(total), unit_(std::move(unit)), start_(start) {
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

std::function<void(int64_t, int64_t)> progress_logger(std::string prefix, std::string unit, int percent_step,
                                                      std::shared_ptr<spdlog::logger> log) {
  struct State {
    std::unique_ptr<ProgressMeter> meter;
    int64_t last = -1;
    bool ended = false;
    ProgressMeter::Clock::time_point start = ProgressMeter::Clock::now();  // the work starts now
  };
  auto state = std::make_shared<State>();
  if (!log) log = spdlog::default_logger();
  const int64_t steps = 100 / std::max(1, percent_step);
  return [state, log, prefix = std::move(prefix), unit = std::move(unit), steps](int64_t done, int64_t total) {
    if (total <= 0) return;
    if (!state->meter) state->meter = std::make_unique<ProgressMeter>(total, unit, state->start);
    const bool end = done >= total;
    if (end && state->ended) return;  // the end is logged once
    const int64_t step = done * steps / total;
    if (!end && (step == state->last || state->meter->elapsed_seconds() < 1.0)) return;
    state->last = step;
    state->ended = end;
    log->info("{}: {}", prefix, state->meter->line(done));
  };
}

}  // namespace facetrain
