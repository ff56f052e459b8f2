#include "facetrain/backbones/backbone.h"

#include "facetrain/core/error.h"
#include "facetrain/core/torch_compat.h"

namespace facetrain::backbones {

namespace {

const std::vector<std::pair<std::string, MemoryFormat>>& memory_format_names() {
  static const std::vector<std::pair<std::string, MemoryFormat>> names = {
      {"contiguous", MemoryFormat::kContiguous}, {"channels_last", MemoryFormat::kChannelsLast}};
  return names;
}

std::string shape_of(const torch::Tensor& t) {
  std::string out = "[";
  for (int64_t i = 0; i < t.dim(); ++i) out += (i ? ", " : "") + std::to_string(t.size(i));
  return out + "]";
}

}  // namespace

void CommonOptions::read(config::Section& section) {
  section.read("embedding_size", embedding_size);
  section.read_enum("memory_format", memory_format, memory_format_names());
}

config::OptionProblems CommonOptions::problems() const {
  config::OptionProblems p;
  if (embedding_size <= 0) p.push_back({"embedding_size", "must be > 0, got " + std::to_string(embedding_size)});
  return p;
}

std::string CommonOptions::describe() const {
  std::string format;
  for (const auto& [name, value] : memory_format_names()) {
    if (value == memory_format) format = name;
  }
  return "embedding_size=" + std::to_string(embedding_size) + ", memory_format=" + format;
}

BackboneImpl::BackboneImpl(std::string type, const CommonOptions& common) : type_(std::move(type)), common_(common) {
  config::throw_if_invalid(type_, common_.problems());
}

void BackboneImpl::set_mixed_precision(torch::ScalarType dtype) {
  if (dtype != torch::kFloat && dtype != torch::kBFloat16 && dtype != torch::kHalf)
    throw ArgumentError(type_ + ": mixed precision must be float32 (off), bfloat16 or float16, got " +
                        std::string(c10::toString(dtype)));
  body_dtype_ = dtype;
}

torch::Tensor BackboneImpl::forward(const torch::Tensor& images) {
  if (!images.defined() || images.dim() != 4 || images.size(1) != 3 || images.size(2) != kInputSize ||
      images.size(3) != kInputSize) {
    throw ArgumentError(type_ + ": expected images [B, 3, 112, 112], got " +
                        (images.defined() ? shape_of(images) : std::string("an undefined tensor")));
  }
  if (!images.is_floating_point())
    throw ArgumentError(type_ + ": expected floating-point images, got " +
                        std::string(c10::toString(images.scalar_type())));
  if (is_training() && images.size(0) < 2) {
    throw ArgumentError(type_ + ": a batch of " + std::to_string(images.size(0)) +
                        " image(s) in training mode; BatchNorm needs at least 2 (or call eval())");
  }
  torch::Tensor x = images;
  if (common_.memory_format == MemoryFormat::kChannelsLast) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const auto device = x.device().type();
  {
    // As insightface's `with torch.cuda.amp.autocast(self.fp16)`: on for the body when asked,
    // and off (even inside an outer autocast region) when not.
    compat::AutocastGuard autocast(device, body_dtype_ != torch::kFloat, body_dtype_);
    x = body(x);
  }
  compat::AutocastGuard float32(device, false);
  return tail(x.to(torch::kFloat));
}

void BackboneImpl::apply_memory_format() {
  if (common_.memory_format != MemoryFormat::kChannelsLast) return;
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

void BackboneImpl::pretty_print(std::ostream& stream) const {
  stream << "facetrain::backbones::" << type_ << "(" << common_.describe();
  std::string own = describe_options();
  if (!own.empty()) stream << ", " << own;
  stream << ")";
}

}  // namespace facetrain::backbones
