#pragma once
// The base of every backbone: images in, embeddings out.
//
// Input [B, 3, 112, 112] float RGB normalised as (x / 255 - 0.5) / 0.5 (the data loader does
// this); output [B, embedding_size] float32, not normalised (the margin head normalises).
//
// A backbone is a "body" (the convolutional trunk) and a "tail" (the final FC or GDC and the
// BatchNorm1d `features`). As in insightface arcface_torch, mixed precision runs the body under
// autocast and the tail in float32: `set_mixed_precision(torch::kBFloat16)` (CPU or CUDA) or
// `torch::kFloat16` (CUDA). The module tree, parameter names and buffer names equal
// insightface's, so state dicts match key for key (facetrain::io::load_state_dict).
//
// Example:
//   auto net = facetrain::backbones::make_backbone(YAML::Load("{type: iresnet50}"));
//   net->eval();
//   torch::Tensor emb = net->forward(images);   // [B, 512]

#include <torch/torch.h>

#include <string>

#include "facetrain/config/options.h"
#include "facetrain/config/reader.h"

namespace facetrain::backbones {

/// How 4-D activations and convolution weights are laid out in memory.
enum class MemoryFormat { kContiguous, kChannelsLast };

/// The options every backbone has.
struct CommonOptions {
  int64_t embedding_size = 512;                            ///< output width D
  MemoryFormat memory_format = MemoryFormat::kContiguous;  ///< `channels_last` helps cuDNN/oneDNN

  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// The side of the square input every backbone here expects.
inline constexpr int64_t kInputSize = 112;

/// Base of every backbone. The non-virtual `forward` checks the input, applies the memory
/// format and the precision policy, and calls `body` then `tail`, which subclasses implement.
class BackboneImpl : public torch::nn::Module {
 public:
  /// Embeddings [B, embedding_size] (float32) of `images` [B, 3, 112, 112] (floating point).
  /// Throws facetrain::ArgumentError for another shape or dtype.
  torch::Tensor forward(const torch::Tensor& images);

  /// Runs the body under autocast with `dtype` (kBFloat16 or kFloat16); kFloat turns it off
  /// (the default). The tail always runs in float32.
  void set_mixed_precision(torch::ScalarType dtype);
  torch::ScalarType mixed_precision() const { return body_dtype_; }

  /// "iresnet50", "mobilefacenet", ...
  const std::string& type() const { return type_; }
  int64_t embedding_size() const { return common_.embedding_size; }
  const CommonOptions& common_options() const { return common_; }

  void pretty_print(std::ostream& stream) const override;

 protected:
  BackboneImpl(std::string type, const CommonOptions& common);
  /// [B, 3, 112, 112] -> the trunk's output (may run under autocast).
  virtual torch::Tensor body(torch::Tensor x) = 0;
  /// The trunk's output, in float32 -> [B, embedding_size]; autocast is off here.
  virtual torch::Tensor tail(torch::Tensor x) = 0;
  /// The subclass's own options, for pretty_print ("layers=[3, 4, 14, 3], dropout=0").
  virtual std::string describe_options() const = 0;
  /// Converts every 4-D parameter and buffer to the configured memory format. Subclasses call it
  /// at the end of their constructor.
  void apply_memory_format();

 private:
  std::string type_;
  CommonOptions common_;
  torch::ScalarType body_dtype_ = torch::kFloat;
};

/// The LibTorch holder of any backbone: `Backbone net = make_backbone(...)`; `net->forward(x)`.
TORCH_MODULE(Backbone);

}  // namespace facetrain::backbones
