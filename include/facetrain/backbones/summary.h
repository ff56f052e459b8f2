#pragma once
// What `facetrain model summary` prints: parameter counts and operation counts at 112x112.

#include <cstdint>
#include <string>
#include <vector>

#include "facetrain/backbones/backbone.h"

namespace facetrain::backbones {

struct ModelSummary {
  std::string type;
  std::string description;  ///< pretty_print of the backbone
  int64_t parameters = 0;   ///< every parameter, as PyTorch's sum(p.numel() for p in parameters())
  int64_t trainable = 0;    ///< those with requires_grad
  int64_t buffers = 0;      ///< BatchNorm running statistics and counters
  /// Multiply-accumulates for one 112x112 image, counted as ptflops does (the number insightface's
  /// flops.py prints as "GFLOPs"): see OpCount.
  int64_t ptflops_macs = 0;
  int64_t conv_linear_macs = 0;  ///< convolution and linear multiply-adds alone
  /// Parameters per top-level child ("conv1", "layer1", ..., "features"), in order.
  std::vector<std::pair<std::string, int64_t>> parameters_by_child;
};

/// Counts `net`'s parameters and runs one 112x112 image through it (eval mode, no grad, on the
/// device of its parameters) to count operations. The module's train/eval mode is restored.
ModelSummary summarize(BackboneImpl& net);

/// A human-readable table of `summary`.
std::string format_summary(const ModelSummary& summary);

}  // namespace facetrain::backbones
