#pragma once
// Embeddings of many images with a backbone, as insightface's evaluation computes them: each
// image decoded to RGB, (x / 255 - 0.5) / 0.5, the backbone in eval mode, and (with `flip`) the
// same for the horizontal mirror. Decoding runs on worker threads while the backbone runs on the
// previous batch.
//
// Example:
//   auto bin = facetrain::io::read_verification_bin("lfw.bin");
//   facetrain::eval::Embeddings e = facetrain::eval::embed_encoded(*net, bin.images, {});
//   // e.embeddings, e.flipped: [12000, 512] float64

#include <torch/torch.h>

#include <opencv2/core.hpp>

#include <functional>
#include <string>
#include <vector>

#include "facetrain/backbones/backbone.h"

namespace facetrain::eval {

struct EmbedOptions {
  int64_t batch_size = 256;  ///< images per forward pass
  int64_t threads = 0;       ///< decode threads; 0: one per hardware thread
  bool flip = true;          ///< also embed the mirrored images (Embeddings::flipped)
  /// Where the backbone runs; the default is CUDA when available, else the CPU. The backbone is
  /// moved there.
  torch::Device device = torch::kCPU;
  /// Called after each batch with (images done, total), for progress lines.
  std::function<void(int64_t, int64_t)> progress;
};

/// The device embedding should use: the first CUDA device when there is one, else the CPU.
torch::Device default_device();

/// "auto" (default_device), "cpu", "cuda", "cuda:N". Throws facetrain::ConfigError (key
/// "--device") for another name, or for CUDA when it is not available.
torch::Device parse_device(const std::string& name);

/// Raw (not normalised) embeddings, float64 on the CPU: [N, D] each; `flipped` is undefined
/// when EmbedOptions::flip is false.
struct Embeddings {
  torch::Tensor embeddings;
  torch::Tensor flipped;
};

/// Loads image `index` into `out` (3 x 112 x 112 floats, RGB, normalised) and, when `mirrored`
/// is not null, its horizontal mirror into `mirrored`. Called from several threads at once.
/// facetrain::data::image_to_chw does this for a decoded BGR image.
using ImageSource = std::function<void(size_t index, float* out, float* mirrored)>;

/// Embeds `count` images. The backbone is switched to eval mode and moved to options.device.
/// Errors from `source` (facetrain::DataError naming the image) propagate after the workers
/// stop. Throws facetrain::ArgumentError for batch_size < 1 or threads < 0.
Embeddings embed(backbones::BackboneImpl& net, size_t count, const ImageSource& source, const EmbedOptions& options);

/// Embeds encoded images (JPEG, PNG, ...; 112x112), e.g. a verification `.bin`. Errors name
/// "`source` image I".
Embeddings embed_encoded(backbones::BackboneImpl& net, const std::vector<std::string>& images,
                         const EmbedOptions& options, const std::string& source = "image list");

/// out = normalize_rows(embeddings + flipped) (flipped may be undefined), float64 [N, D]: what
/// insightface evaluates and what `facetrain embed` writes by default.
torch::Tensor fuse_and_normalize(const Embeddings& e, bool normalize = true);

/// The ImageSource of decoded BGR 112x112 images that `load(index, where(index))` returns; the
/// `where` text (computed once per image) names the image in errors.
ImageSource bgr_source(std::function<cv::Mat(size_t, const std::string&)> load,
                       std::function<std::string(size_t)> where);

}  // namespace facetrain::eval
