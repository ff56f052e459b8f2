#pragma once
// Shared helpers for the head tests: inputs that reach every branch, forward+backward runs, and
// tensor comparisons with readable failure messages.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "facetrain/heads.h"

namespace facetrain::testing {

/// Inputs [B, D], labels [B], class weights [C, D]. Rows cycle through four kinds so that every
/// branch is reached: generic (gt ≈ 0), near their class (gt ≈ 0.9, many hard negatives),
/// opposite their class (gt ≈ −0.9, ArcFace's fallback), and generic with a large norm. Row norms
/// spread over ~[0.4, 35] (AdaFace's margin scaler and SphereFace's ‖x‖ see a range).
struct HeadInputs {
  torch::Tensor x, y, w, upstream;  ///< upstream: dL/dlogits used for backward, [B, C]
};
HeadInputs make_inputs(int64_t batch, int64_t dim, int64_t classes, uint64_t seed, torch::Dtype dtype = torch::kFloat);

/// Result of one forward and backward of sum(logits * upstream).
struct Pass {
  torch::Tensor logits, grad_x, grad_w, grad_b;
};
/// Runs our head (its weight is set to `in.w` first).
Pass run_head(facetrain::heads::MarginHeadImpl& head, const HeadInputs& in);

/// The head's buffers by name (cloned).
std::map<std::string, torch::Tensor> buffers_of(const facetrain::heads::MarginHeadImpl& head);
void restore_buffers(facetrain::heads::MarginHeadImpl& head, const std::map<std::string, torch::Tensor>& saved);

/// max |a − b| <= rel * max(1, max |b|); on failure, says where and by how much.
::testing::AssertionResult close(const torch::Tensor& a, const torch::Tensor& b, double rel, const std::string& what);

/// One YAML mapping per head and variant, with options that reach their buffers: the cases the
/// shard and multi-rank tests run.
const std::vector<std::string>& every_head_variant();

/// Two heads made from `yaml` with the same seed (so the same centres), in `dtype`: a reference
/// and the one under test.
std::pair<std::shared_ptr<facetrain::heads::MarginHeadImpl>, std::shared_ptr<facetrain::heads::MarginHeadImpl>>
twin_heads(const std::string& yaml, int64_t dim, int64_t classes, uint64_t seed, torch::Dtype dtype = torch::kDouble);

/// True when every element is finite.
bool all_finite(const torch::Tensor& t);

}  // namespace facetrain::testing
