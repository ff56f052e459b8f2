#include "facetrain/backbones/summary.h"

#include <cstdio>

#include "facetrain/backbones/layers.h"

namespace facetrain::backbones {

namespace {

std::string grouped(int64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

ModelSummary summarize(BackboneImpl& net) {
  ModelSummary s;
  s.type = net.type();
  std::ostringstream description;
  net.pretty_print(description);
  s.description = description.str();
  torch::Device device = torch::kCPU;
  for (const auto& p : net.parameters()) {
    s.parameters += p.numel();
    if (p.requires_grad()) s.trainable += p.numel();
    device = p.device();
  }
  for (const auto& b : net.buffers()) s.buffers += b.numel();
  for (const auto& child : net.named_children()) {
    int64_t n = 0;
    for (const auto& p : child.value()->parameters()) n += p.numel();
    s.parameters_by_child.emplace_back(child.key(), n);
  }

  const bool was_training = net.is_training();
  net.eval();
  OpCount count;
  {
    torch::NoGradGuard no_grad;
    OpCounter counter(count);
    net.forward(torch::zeros({1, 3, kInputSize, kInputSize}, torch::TensorOptions().device(device)));
  }
  net.train(was_training);
  s.ptflops_macs = count.ptflops_macs;
  s.conv_linear_macs = count.conv_linear;
  return s;
}

std::string format_summary(const ModelSummary& s) {
  std::string out;
  out += s.description + "\n\n";
  char line[160];
  for (const auto& [name, n] : s.parameters_by_child) {
    std::snprintf(line, sizeof line, "  %-12s %14s parameters\n", name.c_str(), grouped(n).c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "\nparameters   %14s (%.3f M; trainable %s)\n", grouped(s.parameters).c_str(),
                s.parameters / 1e6, grouped(s.trainable).c_str());
  out += line;
  std::snprintf(line, sizeof line, "buffers      %14s\n", grouped(s.buffers).c_str());
  out += line;
  std::snprintf(line, sizeof line,
                "GFLOPs       %14.3f  (multiply-accumulates per 112x112 image, counted as ptflops and "
                "insightface's flops.py do: conv, linear, BatchNorm, PReLU)\n",
                s.ptflops_macs / 1e9);
  out += line;
  std::snprintf(line, sizeof line,
                "conv+linear  %14.3f  G multiply-accumulates (convolutions and linear layers only)\n",
                s.conv_linear_macs / 1e9);
  out += line;
  return out;
}

}  // namespace facetrain::backbones
