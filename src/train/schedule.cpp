#include "facetrain/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "facetrain/core/error.h"

namespace facetrain::train {

Schedule::Schedule(const ScheduleOptions& options, double base_lr, int64_t total_steps, int64_t steps_per_epoch)
    : options_(options), floor_(std::min(1.0, options.min_lr / base_lr)), total_(total_steps) {
  if (total_steps <= 0 || steps_per_epoch <= 0 || !(base_lr > 0))
    throw ArgumentError("Schedule: total_steps, steps_per_epoch and base_lr must be > 0");
  const double per_unit = options.unit == ScheduleUnit::kEpochs ? double(steps_per_epoch) : 1.0;
  warmup_ = std::min<int64_t>(total_steps, std::llround(options.warmup * per_unit));
  for (double m : options.milestones) milestones_.push_back(std::llround(m * per_unit));
}

double Schedule::factor(int64_t step) const {
  if (step < warmup_) return double(step) / double(warmup_);
  const double progress = total_ > warmup_ ? double(std::min(step, total_) - warmup_) / double(total_ - warmup_) : 1.0;
  switch (options_.type) {
    case ScheduleType::kPoly:
      return floor_ + (1 - floor_) * std::pow(1.0 - progress, options_.power);
    case ScheduleType::kCosine:
      return floor_ + (1 - floor_) * 0.5 * (1.0 + std::cos(M_PI * progress));
    case ScheduleType::kStep: {
      auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), step) - milestones_.begin();
      return std::pow(options_.gamma, double(passed));
    }
    case ScheduleType::kConstant:
      return 1.0;
  }
  return 1.0;
}

}  // namespace facetrain::train
