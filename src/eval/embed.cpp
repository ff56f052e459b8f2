#include "facetrain/eval/embed.h"

#include <exception>
#include <future>
#include <optional>
#include <thread>

#include "facetrain/core/error.h"
#include "facetrain/data/loader.h"
#include "facetrain/eval/verification.h"

namespace facetrain::eval {

namespace {

constexpr int64_t kSide = backbones::kInputSize;
constexpr int64_t kImageFloats = 3 * kSide * kSide;

// One batch of decoded images (and their mirrors), filled by worker threads.
struct Batch {
  size_t begin = 0, size = 0;
  torch::Tensor images, flipped;  // [size, 3, 112, 112] float32 (pinned when CUDA is used)
};

Batch load_batch(size_t begin, size_t size, bool flip, int64_t threads, bool pinned, const ImageSource& source) {
  Batch b;
  b.begin = begin;
  b.size = size;
  auto options = torch::TensorOptions().dtype(torch::kFloat).pinned_memory(pinned);
  b.images = torch::empty({static_cast<int64_t>(size), 3, kSide, kSide}, options);
  if (flip) b.flipped = torch::empty_like(b.images);
  float* images = b.images.data_ptr<float>();
  float* flipped = flip ? b.flipped.data_ptr<float>() : nullptr;
  const size_t workers = std::min(static_cast<size_t>(threads), size);
  std::vector<std::exception_ptr> errors(workers);
  auto work = [&](size_t w) {
    try {
      for (size_t i = w; i < size; i += workers) {
        source(begin + i, images + i * kImageFloats, flip ? flipped + i * kImageFloats : nullptr);
      }
    } catch (...) {
      errors[w] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(work, w);
  if (workers > 0) work(0);
  for (auto& t : pool) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return b;
}

torch::Tensor run(backbones::BackboneImpl& net, const torch::Tensor& images, const torch::Device& device) {
  return net.forward(images.to(device, /*non_blocking=*/true)).to(torch::kCPU, torch::kDouble);
}

}  // namespace

torch::Device default_device() { return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::kCPU; }

torch::Device parse_device(const std::string& name) {
  if (name == "auto") return default_device();
  std::optional<torch::Device> device;
  try {
    device = torch::Device(name);
  } catch (const c10::Error&) {
    throw ConfigError({{"device", 0, 0, "--device", "'" + name + "' is not a device (auto, cpu, cuda, cuda:1, ...)"}});
  }
  if (device->is_cuda() && !torch::cuda::is_available()) {
    throw ConfigError({{"device", 0, 0, "--device", "'" + name + "' was asked for, but CUDA is not available here"}});
  }
  return *device;
}

Embeddings embed(backbones::BackboneImpl& net, size_t count, const ImageSource& source, const EmbedOptions& options) {
  if (options.batch_size < 1)
    throw ArgumentError("embed: batch_size must be at least 1, got " + std::to_string(options.batch_size));
  if (options.threads < 0)
    throw ArgumentError("embed: threads must be 0 (auto) or more, got " + std::to_string(options.threads));
  const int64_t threads = options.threads > 0
                              ? options.threads
                              : std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  const bool pinned = options.device.is_cuda();
  net.eval();
  net.to(options.device);
  torch::NoGradGuard no_grad;

  const int64_t d = net.embedding_size();
  Embeddings out;
  out.embeddings = torch::empty({static_cast<int64_t>(count), d}, torch::kDouble);
  if (options.flip) out.flipped = torch::empty({static_cast<int64_t>(count), d}, torch::kDouble);
  if (count == 0) return out;

  const size_t batch = static_cast<size_t>(options.batch_size);
  auto launch = [&](size_t begin) {
    return std::async(std::launch::async, load_batch, begin, std::min(batch, count - begin), options.flip, threads,
                      pinned, std::cref(source));
  };
  std::future<Batch> next = launch(0);
  for (size_t begin = 0; begin < count; begin += batch) {
    Batch b = next.get();  // rethrows a decode error
    if (begin + batch < count) next = launch(begin + batch);
    const auto rows = torch::indexing::Slice(static_cast<int64_t>(b.begin), static_cast<int64_t>(b.begin + b.size));
    try {
      out.embeddings.index_put_({rows}, run(net, b.images, options.device));
      if (options.flip) out.flipped.index_put_({rows}, run(net, b.flipped, options.device));
    } catch (...) {
      if (next.valid()) next.wait();  // never leave a worker writing into a dead batch
      throw;
    }
    if (options.progress) options.progress(static_cast<int64_t>(b.begin + b.size), static_cast<int64_t>(count));
  }
  return out;
}

Embeddings embed_encoded(backbones::BackboneImpl& net, const std::vector<std::string>& images,
                         const EmbedOptions& options, const std::string& source) {
  return embed(net, images.size(),
               bgr_source([&](size_t index, const std::string& at) { return data::decode_image(images[index], at); },
                          [&](size_t index) { return source + " image " + std::to_string(index); }),
               options);
}

ImageSource bgr_source(std::function<cv::Mat(size_t, const std::string&)> load,
                       std::function<std::string(size_t)> where) {
  return [load = std::move(load), where = std::move(where)](size_t index, float* out, float* mirrored) {
    const std::string at = where(index);
    const cv::Mat image = load(index, at);
    data::image_to_chw(image, false, out, at);
    if (mirrored != nullptr) data::image_to_chw(image, true, mirrored, at);
  };
}

torch::Tensor fuse_and_normalize(const Embeddings& e, bool normalize) {
  torch::Tensor fused = e.flipped.defined() ? e.embeddings + e.flipped : e.embeddings.clone();
  return normalize ? normalize_rows(fused.to(torch::kDouble).contiguous()) : fused;
}

}  // namespace facetrain::eval
