#pragma once
// MobileFaceNet as insightface arcface_torch builds it (`backbones/mobilefacenet.py`, adapted
// from cavaface; Chen et al., MobileFaceNets, 2018), with its `blocks` and `scale` parameters:
// a stride-2 ConvBlock stem (64*scale), a depthwise ConvBlock (blocks[0] == 1) or a Residual
// stage, then DepthWise(stride 2) / Residual stages with blocks[1..3] units, a 1x1 ConvBlock to
// 512 (`conv_sep`), and the GDC `features`: depthwise 7x7 LinearBlock -> flatten -> Linear (no
// bias) -> BatchNorm1d. The inner widths 128/256/512 of the depthwise units are fixed, as there.
//
// Defaults (`mobilefacenet`): blocks [1, 4, 6, 2], scale 2, 2,059,520 parameters at embedding 512;
// `mobilefacenet_large`: blocks [2, 8, 12, 4], scale 4.
//
// Example:
//   MobileFaceNet net("mobilefacenet", MobileFaceNetOptions{});
//   net->forward(torch::zeros({2, 3, 112, 112}));   // [2, 512]

#include <string>
#include <vector>

#include "facetrain/backbones/backbone.h"
#include "facetrain/backbones/layers.h"

namespace facetrain::backbones {

struct MobileFaceNetOptions : CommonOptions {
  std::vector<int64_t> blocks = {1, 4, 6, 2};  ///< units per stage, each >= 1
  int64_t scale = 2;                           ///< width multiplier of the first stages (64*scale)

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// Conv -> BatchNorm2d -> PReLU, children in `layers` (0, 1, 2).
class ConvBlockImpl : public LayerImpl {
 public:
  ConvBlockImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups = 1);
  torch::Tensor forward(torch::Tensor x) override;

 private:
  torch::nn::ModuleList layers_{nullptr};
};

/// Conv -> BatchNorm2d (no activation), children in `layers` (0, 1).
class LinearBlockImpl : public LayerImpl {
 public:
  LinearBlockImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups = 1);
  torch::Tensor forward(torch::Tensor x) override;

 private:
  torch::nn::ModuleList layers_{nullptr};
};

/// 1x1 ConvBlock to `groups` channels -> depthwise ConvBlock -> 1x1 LinearBlock to `out`, plus the
/// input when `residual`.
class DepthWiseImpl : public LayerImpl {
 public:
  DepthWiseImpl(int64_t in, int64_t out, bool residual, int64_t stride, int64_t groups);
  torch::Tensor forward(torch::Tensor x) override;

 private:
  bool residual_;
  torch::nn::ModuleList layers_{nullptr};
};

/// `count` residual DepthWise units of width `channels`.
class ResidualImpl : public LayerImpl {
 public:
  ResidualImpl(int64_t channels, int64_t count, int64_t groups);
  torch::Tensor forward(torch::Tensor x) override;

 private:
  torch::nn::ModuleList layers_{nullptr};
};

/// Global depthwise convolution head: LinearBlock(512, 7x7, groups 512) -> flatten -> Linear(512, D,
/// no bias) -> BatchNorm1d(D).
class GDCImpl : public LayerImpl {
 public:
  explicit GDCImpl(int64_t embedding_size);
  torch::Tensor forward(torch::Tensor x) override;

 private:
  torch::nn::ModuleList layers_{nullptr};
};

class MobileFaceNetImpl : public BackboneImpl {
 public:
  static constexpr const char* kFamily = "mobilefacenet";
  MobileFaceNetImpl(std::string type, const MobileFaceNetOptions& options);
  const MobileFaceNetOptions& options() const { return options_; }

 protected:
  torch::Tensor body(torch::Tensor x) override;
  torch::Tensor tail(torch::Tensor x) override;
  std::string describe_options() const override { return options_.describe(); }

 private:
  MobileFaceNetOptions options_;
  torch::nn::ModuleList layers_{nullptr};
  std::shared_ptr<ConvBlockImpl> conv_sep_;
  std::shared_ptr<GDCImpl> features_;
};
TORCH_MODULE(MobileFaceNet);

}  // namespace facetrain::backbones
