#pragma once
// Learning-rate schedules: the factor the base learning rates are multiplied by before each
// optimizer step. A pure function of the step, so a resumed run needs no scheduler state.
//
// With W warmup steps, T total steps and s the number of optimizer steps already taken:
//   warmup     s < W: s / W (linear from 0)
//   poly       (1 - (s - W) / (T - W))^power, insightface's PolynomialLRWarmup closed form
//   cosine     (1 + cos(pi (s - W) / (T - W))) / 2
//   step       gamma^(number of milestones <= s)
//   constant   1
// poly and cosine decay to min_lr instead of 0: f = r + (1 - r) * f with r = min_lr / lr.
// With unit `epochs`, warmup and milestones are multiplied by the optimizer steps per epoch.
//
// Example:
//   facetrain::train::Schedule schedule(options, /*base_lr=*/0.1, /*total=*/1000, /*per_epoch=*/100);
//   double lr = 0.1 * schedule.factor(step);

#include <cstdint>
#include <vector>

#include "facetrain/train/recipe.h"

namespace facetrain::train {

class Schedule {
 public:
  /// Throws ArgumentError unless total_steps > 0 and steps_per_epoch > 0.
  Schedule(const ScheduleOptions& options, double base_lr, int64_t total_steps, int64_t steps_per_epoch);
  /// The factor for the optimizer step that follows `step` steps already taken.
  double factor(int64_t step) const;
  int64_t warmup_steps() const { return warmup_; }

 private:
  ScheduleOptions options_;
  double floor_;
  int64_t total_, warmup_;
  std::vector<int64_t> milestones_;
};

}  // namespace facetrain::train
