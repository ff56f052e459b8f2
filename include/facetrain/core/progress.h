#pragma once
// Progress reporting for long work: rate and ETA, in one line.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace facetrain {

/// Measures progress through `total` units of work and formats it.
///
/// Example:
///   ProgressMeter meter(1000, "step");
///   for (int64_t i = 1; i <= 1000; ++i) { work(); if (i % 100 == 0) log(meter.line(i)); }
///   // "step 100/1000 (10.0%) | 812.3 step/s | elapsed 0.1s | ETA 1.1s"
class ProgressMeter {
 public:
  using Clock = std::chrono::steady_clock;

  /// `total` > 0 units named `unit` (used in the rate, "step/s").
  explicit ProgressMeter(int64_t total, std::string unit = "step");
  /// As above, with the clock started at `start` (work that began before the total was known).
  ProgressMeter(int64_t total, std::string unit, Clock::time_point start);

  /// Units per second since construction (0 before any time has passed).
  double rate(int64_t done) const;
  /// Seconds left at the current rate (0 when done, or unknown yet).
  double eta_seconds(int64_t done) const;
  double elapsed_seconds() const;
  /// "unit done/total (pct%) | rate unit/s | elapsed Xs | ETA Ys"
  std::string line(int64_t done) const;

  /// 0.4s, 12.0s, 3m05s, 1h02m
  static std::string format_duration(double seconds);

 private:
  int64_t total_;
  std::string unit_;
  Clock::time_point start_;
};

/// A progress callback (done, total) that logs "PREFIX: unit done/total (pct%) | rate | ETA"
/// through `log` (null: spdlog's default logger) at most once per `percent_step` percent, only
/// after the first second (a quick job logs just its end), and once at the end. The clock starts
/// when the callback is made.
std::function<void(int64_t, int64_t)> progress_logger(std::string prefix, std::string unit, int percent_step = 2,
                                                      std::shared_ptr<spdlog::logger> log = nullptr);

}  // namespace facetrain
