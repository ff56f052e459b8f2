#include "facetrain/dist/partial_fc.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>

#include "facetrain/core/error.h"

namespace facetrain::dist {

namespace {
uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

int64_t sampled_classes(int64_t local_classes, double sample_rate) {
  if (!(sample_rate > 0 && sample_rate <= 1))
    throw ArgumentError("Partial FC: sample_rate must be in (0, 1], got " + std::to_string(sample_rate));
  return std::max<int64_t>(1, static_cast<int64_t>(std::floor(sample_rate * double(local_classes))));
}

uint64_t sample_seed(uint64_t seed, int64_t step, int64_t micro_batch, const ClassShard& shard) {
  uint64_t z = splitmix64(seed);
  z = splitmix64(z ^ static_cast<uint64_t>(step));
  z = splitmix64(z ^ static_cast<uint64_t>(micro_batch));
  return splitmix64(z ^ static_cast<uint64_t>(shard.begin));
}

ClassSample sample_classes(const torch::Tensor& labels, const ClassShard& shard, double sample_rate, uint64_t seed) {
  const int64_t local = shard.size();
  const int64_t want = sampled_classes(local, sample_rate);
  if (labels.dim() != 1 || labels.is_floating_point())
    throw ArgumentError("Partial FC: labels must be a 1-D integer tensor");
  torch::NoGradGuard no_grad;
  const torch::Device device = labels.device();
  // Drawn on the CPU, whatever the device: the same classes on a GPU and on a CPU run.
  auto y = labels.to(torch::kCPU, torch::kLong) - shard.begin;
  auto mine = (y >= 0).logical_and(y < local);
  auto positive = std::get<0>(at::_unique(y.masked_select(mine), /*sorted=*/true));
  ClassSample out;
  out.positives = positive.size(0);
  if (sample_rate >= 1 || want >= local) {
    out.classes = torch::arange(local, torch::kLong);
  } else if (want <= out.positives) {
    out.classes = positive;  // more positives than the rate allows: the positives alone
  } else {
    // insightface partial_fc_v2.sample: a uniform key per class, 2 for the positives, the top-k.
    at::Generator gen = at::detail::createCPUGenerator(seed);
    auto keys = torch::empty({local}, torch::kFloat).uniform_(0, 1, gen);
    keys.index_fill_(0, positive, 2.0);
    out.classes = std::get<0>(std::get<1>(keys.topk(want, 0, /*largest=*/true, /*sorted=*/false)).sort());
  }
  out.targets = torch::full_like(y, -1);
  auto rows = mine.nonzero().view(-1);
  out.targets.index_put_({rows}, torch::searchsorted(out.classes, y.index_select(0, rows)));
  out.classes = out.classes.to(device);
  out.targets = out.targets.to(device);
  return out;
}

}  // namespace facetrain::dist
