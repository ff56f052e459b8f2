#pragma once
// IResNet (insightface arcface_torch `backbones/iresnet.py`; Deng et al., ArcFace, CVPR 2019,
// "improved residual unit" of Han et al.). 112x112 input, stride-2 stem-free design: conv3x3 ->
// BN -> PReLU, four stages of pre-activation IBasicBlocks (BN -> conv3x3 -> BN -> PReLU ->
// conv3x3(stride) -> BN, plus a conv1x1(stride) + BN shortcut where the shape changes), then
// BN -> flatten [B, 512*7*7] -> dropout -> FC -> BatchNorm1d `features` (its weight is fixed at 1,
// requires_grad = false, as in insightface).
//
// Depths: 18 [2,2,2,2], 34 [3,4,6,3], 50 [3,4,14,3], 100 [3,13,30,3], 200 [6,26,60,6].
// Parameters at embedding 512: r18 24,025,600; r50 43,590,848 (equal to the PyTorch model's).
//
// Example:
//   IResNetOptions o;  o.layers = {3, 4, 14, 3};
//   IResNet net("iresnet50", o);
//   net->forward(torch::zeros({2, 3, 112, 112}));   // [2, 512]

#include <string>
#include <vector>

#include "facetrain/backbones/backbone.h"
#include "facetrain/backbones/layers.h"

namespace facetrain::backbones {

struct IResNetOptions : CommonOptions {
  std::vector<int64_t> layers = {3, 4, 14, 3};  ///< blocks per stage (not a YAML key: set by type)
  double dropout = 0;                           ///< before the FC, in [0, 1)

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// insightface's IBasicBlock. Children (in state-dict order): bn1, conv1, bn2, prelu, conv2, bn3,
/// and `downsample` (0: conv1x1, 1: BatchNorm2d) when the stride or width changes.
class IBasicBlockImpl : public LayerImpl {
 public:
  IBasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride);
  torch::Tensor forward(torch::Tensor x) override;

 private:
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::PReLU prelu_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::BatchNorm2d bn3_{nullptr};
  torch::nn::ModuleList downsample_{nullptr};
};

class IResNetImpl : public BackboneImpl {
 public:
  static constexpr const char* kFamily = "iresnet";
  IResNetImpl(std::string type, const IResNetOptions& options);
  const IResNetOptions& options() const { return options_; }

 protected:
  torch::Tensor body(torch::Tensor x) override;
  torch::Tensor tail(torch::Tensor x) override;
  std::string describe_options() const override { return options_.describe(); }

 private:
  IResNetOptions options_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::PReLU prelu_{nullptr};
  std::vector<torch::nn::ModuleList> stages_;  // layer1 .. layer4
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::Linear fc_{nullptr};
  torch::nn::BatchNorm1d features_{nullptr};
};
TORCH_MODULE(IResNet);

}  // namespace facetrain::backbones
