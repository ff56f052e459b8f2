#include "facetrain/heads/margin_head.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <sstream>

#include "facetrain/core/error.h"

namespace facetrain::heads {

namespace {
constexpr double kNormEps = 1e-12;  // F.normalize's eps: x / max(‖x‖, eps)

std::string shape_of(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}
}  // namespace

void HeadGeometry::validate() const {
  if (embedding_size <= 0)
    throw ArgumentError("head: embedding_size must be > 0, got " + std::to_string(embedding_size));
  if (num_classes <= 0) throw ArgumentError("head: num_classes must be > 0, got " + std::to_string(num_classes));
  if (class_begin < 0 || class_begin >= end() || end() > num_classes)
    throw ArgumentError("head: class range [" + std::to_string(class_begin) + ", " + std::to_string(end()) +
                        ") is not a non-empty part of [0, " + std::to_string(num_classes) + ")");
}

MarginHeadImpl::MarginHeadImpl(std::string type, const HeadGeometry& geometry)
    : type_(std::move(type)), geometry_(geometry), reducer_(std::make_shared<LocalReducer>()) {
  geometry_.validate();
  geometry_.class_end = geometry_.end();
}

void MarginHeadImpl::set_reducer(std::shared_ptr<const StatisticsReducer> reducer) {
  if (!reducer) throw ArgumentError(type_ + ": set_reducer needs a reducer, got null");
  reducer_ = std::move(reducer);
  reducer_installed_ = true;
}

torch::Tensor init_class_rows(const HeadGeometry& g, const std::function<void(torch::Tensor&, at::Generator&)>& fill) {
  const uint64_t seed = static_cast<uint64_t>(torch::randint(int64_t(1) << 62, {1}, torch::kLong).item<int64_t>());
  auto out = torch::empty({g.num_local_classes(), g.embedding_size});
  const int64_t begin = g.class_begin, end = g.end();
  for (int64_t block = begin / kClassInitBlock; block * kClassInitBlock < end; ++block) {
    const int64_t b0 = block * kClassInitBlock, b1 = std::min(b0 + kClassInitBlock, g.num_classes);
    // splitmix64 of (seed, block): independent streams per block.
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(block + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    at::Generator gen = at::detail::createCPUGenerator(z ^ (z >> 31));
    auto rows = torch::empty({b1 - b0, g.embedding_size});
    fill(rows, gen);
    const int64_t lo = std::max(b0, begin), hi = std::min(b1, end);
    out.narrow(0, lo - begin, hi - lo).copy_(rows.narrow(0, lo - b0, hi - lo));
  }
  return out;
}

void MarginHeadImpl::init_weight_normal(double std) {
  torch::NoGradGuard no_grad;
  weight = register_parameter("weight", init_class_rows(geometry_, [std](torch::Tensor& rows, at::Generator& gen) {
                                rows.normal_(0.0, std, gen);
                              }));
}

void MarginHeadImpl::init_weight_uniform(double bound) {
  torch::NoGradGuard no_grad;
  weight = register_parameter("weight", init_class_rows(geometry_, [bound](torch::Tensor& rows, at::Generator& gen) {
                                rows.uniform_(-bound, bound, gen);
                              }));
}

torch::Tensor MarginHeadImpl::forward(const torch::Tensor& embeddings, const torch::Tensor& labels) {
  return forward_over(embeddings, labels, torch::Tensor());
}

torch::Tensor MarginHeadImpl::forward(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                      const torch::Tensor& classes) {
  if (!classes.defined()) throw ArgumentError(type_ + ": the sampled classes are undefined");
  return forward_over(embeddings, labels, classes);
}

torch::Tensor MarginHeadImpl::checked_labels(const torch::Tensor& embeddings, const torch::Tensor& labels) const {
  // Every message names the argument, what was expected and what came.
  if (!embeddings.defined()) throw ArgumentError(type_ + ": embeddings are undefined");
  if (!labels.defined()) throw ArgumentError(type_ + ": labels are undefined");
  if (embeddings.dim() != 2 || embeddings.size(1) != geometry_.embedding_size)
    throw ArgumentError(type_ + ": embeddings must be [B, " + std::to_string(geometry_.embedding_size) + "], got " +
                        shape_of(embeddings));
  if (!embeddings.is_floating_point())
    throw ArgumentError(type_ + ": embeddings must be floating point, got " +
                        std::string(c10::toString(embeddings.scalar_type())));
  const int64_t batch = embeddings.size(0);
  if (labels.dim() != 1 || labels.size(0) != batch)
    throw ArgumentError(type_ + ": labels must be [" + std::to_string(batch) + "] to match the embeddings, got " +
                        shape_of(labels));
  if (labels.is_floating_point() || labels.is_complex() || labels.scalar_type() == torch::kBool)
    throw ArgumentError(type_ + ": labels must be integers, got " + std::string(c10::toString(labels.scalar_type())));
  if (embeddings.device() != weight.device())
    throw ArgumentError(type_ + ": embeddings are on " + embeddings.device().str() + " but the head is on " +
                        weight.device().str());

  torch::Tensor y = labels.to(weight.device(), torch::kLong);
  if (batch > 0) {
    auto bad = (y < 0).logical_or(y >= geometry_.num_classes);
    if (bad.any().item<bool>()) {
      int64_t i = bad.nonzero()[0][0].item<int64_t>();
      throw ArgumentError(type_ + ": labels[" + std::to_string(i) + "] = " + std::to_string(y[i].item<int64_t>()) +
                          " is outside [0, " + std::to_string(geometry_.num_classes) + ")");
    }
  }
  return y;
}

torch::Tensor MarginHeadImpl::checked_classes(const torch::Tensor& classes) const {
  if (!classes.defined()) return classes;
  if (classes.dim() != 1 || classes.size(0) == 0 || classes.is_floating_point() ||
      classes.scalar_type() == torch::kBool)
    throw ArgumentError(type_ + ": the sampled classes must be a non-empty 1-D integer tensor, got " +
                        shape_of(classes) + " " + std::string(c10::toString(classes.scalar_type())));
  return classes.to(weight.device(), torch::kLong);
}

Targets MarginHeadImpl::targets_of(const torch::Tensor& y, const torch::Tensor& classes) const {
  // Labels of this shard: local index, -1 for classes that live elsewhere.
  Targets targets;
  auto in_shard = (y >= geometry_.class_begin).logical_and(y < geometry_.class_end);
  targets.labels = torch::where(in_shard, y - geometry_.class_begin, torch::full_like(y, -1));
  targets.rows = in_shard.nonzero().view(-1);
  targets.cols = targets.labels.index_select(0, targets.rows);
  if (!classes.defined()) return targets;

  // Partial FC: the columns are the sampled classes; a target's column is its position there.
  const int64_t n = classes.size(0);
  if (classes.min().item<int64_t>() < 0 || classes.max().item<int64_t>() >= geometry_.num_local_classes())
    throw ArgumentError(type_ + ": the sampled classes must lie in [0, " +
                        std::to_string(geometry_.num_local_classes()) + ") (local indices of this shard)");
  if (n > 1 && !(classes.slice(0, 1) > classes.slice(0, 0, n - 1)).all().item<bool>())
    throw ArgumentError(type_ + ": the sampled classes must be sorted and distinct");
  auto at = torch::searchsorted(classes, targets.cols);
  auto found = at < n;
  found = found.logical_and(classes.index_select(0, at.clamp_max(n - 1)) == targets.cols);
  if (!found.all().item<bool>()) {
    const int64_t k = targets.rows[(~found).nonzero()[0][0]].item<int64_t>();
    throw ArgumentError(type_ + ": labels[" + std::to_string(k) + "] = " + std::to_string(y[k].item<int64_t>()) +
                        " belongs to this shard but is not among the sampled classes (Partial FC keeps every "
                        "positive)");
  }
  targets.cols = at;
  targets.labels = targets.labels.index_put({targets.rows}, at);
  return targets;
}

std::vector<torch::Tensor> MarginHeadImpl::rows_of(const torch::Tensor& classes) const {
  auto rows = class_parameters();
  if (classes.defined()) {
    for (auto& r : rows) r = r.index_select(0, classes);
  }
  return rows;
}

torch::Tensor MarginHeadImpl::forward_over(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                           const torch::Tensor& classes_in) {
  const torch::Tensor y = checked_labels(embeddings, labels);
  const torch::Tensor classes = checked_classes(classes_in);
  const Targets targets = targets_of(y, classes);
  const torch::Tensor x = embeddings.to(weight.scalar_type());
  const torch::Tensor norms = x.norm(2, 1);
  const torch::Tensor cos = similarity(x, norms, rows_of(classes));
  torch::Tensor target_cos;
  if (needs_row_targets()) {
    torch::NoGradGuard no_grad;
    target_cos = row_target_cosines(gather_targets(cos, targets), targets, cos.size(0));
  }
  return apply_margin(cos, norms, targets, prepare_rows(norms, target_cos));
}

torch::Tensor MarginHeadImpl::similarity(const torch::Tensor& x, const torch::Tensor& norms,
                                         const std::vector<torch::Tensor>& rows) {
  auto x_hat = x / norms.clamp_min(kNormEps).unsqueeze(1);
  auto w_hat = torch::nn::functional::normalize(rows.at(0),
                                                torch::nn::functional::NormalizeFuncOptions().p(2).dim(1).eps(kNormEps));
  return torch::mm(x_hat, w_hat.t()).clamp(-1, 1);
}

RowState MarginHeadImpl::prepare_rows(const torch::Tensor&, const torch::Tensor& target_cos) {
  RowState rows;
  rows.target_cos = target_cos;
  return rows;
}

torch::Tensor StatisticsReducer::max(const torch::Tensor&, ReduceScope) const {
  throw ArgumentError("this StatisticsReducer combines no maxima (needed by chunked_cross_entropy)");
}

torch::Tensor MarginHeadImpl::gather_targets(const torch::Tensor& m, const Targets& targets) {
  return m.index({targets.rows, targets.cols});
}

torch::Tensor MarginHeadImpl::put_targets(torch::Tensor logits, const Targets& targets, const torch::Tensor& values) {
  return logits.index_put_({targets.rows, targets.cols}, values);
}

torch::Tensor MarginHeadImpl::row_target_cosines(const torch::Tensor& gt, const Targets& targets,
                                                 int64_t batch) const {
  if (geometry_.num_local_classes() != geometry_.num_classes && !reducer_installed_) {
    throw ArgumentError(type_ + ": this head holds classes [" + std::to_string(geometry_.class_begin) + ", " +
                        std::to_string(geometry_.class_end) + ") of " + std::to_string(geometry_.num_classes) +
                        " and needs every row's target cosine; install a StatisticsReducer (set_reducer) that sums "
                        "ReduceScope::kClassShards over the shards");
  }
  torch::NoGradGuard no_grad;
  auto local = torch::zeros({batch}, gt.options());
  local.index_put_({targets.rows}, gt.detach());
  return reducer_->sum(local, ReduceScope::kClassShards);
}

MarginHeadImpl::Moments MarginHeadImpl::batch_moments(const torch::Tensor& values) const {
  torch::NoGradGuard no_grad;
  auto v = values.detach().to(torch::kDouble);
  auto sums = torch::stack({torch::full({}, static_cast<double>(v.size(0)), v.options()), v.sum(), v.square().sum()});
  sums = reducer_->sum(sums, ReduceScope::kBatchRows);
  Moments m;
  m.count = sums.slice(0, 0, 1);
  m.mean = sums.slice(0, 1, 2) / m.count;
  // Unbiased variance from the sums, in float64; clamp tiny negative round-off to 0.
  auto var = ((sums.slice(0, 2, 3) - sums.slice(0, 1, 2) * m.mean) / (m.count - 1)).clamp_min(0);
  m.std = torch::where(m.count > 1, var.sqrt(), torch::full_like(var, std::numeric_limits<double>::quiet_NaN()));
  return m;
}

namespace {
// Module::to converts every buffer, integer ones too; counters must stay integers.
template <class F>
void keeping_integer_buffers(torch::nn::Module& module, F&& convert) {
  // Keep the integer values themselves: a round trip through float16 or float32 would lose counts
  // above 2048 or 2^24.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> ints;  // the buffer, a copy of its value
  for (auto& b : module.named_buffers(/*recurse=*/false)) {
    if (!b.value().is_floating_point()) ints.emplace_back(b.value(), b.value().clone());
  }
  convert();
  for (auto& [tensor, saved] : ints) {
    if (tensor.scalar_type() != saved.scalar_type()) tensor.set_data(saved.to(tensor.device()));
  }
}
}  // namespace

void MarginHeadImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  keeping_integer_buffers(*this, [&] { Module::to(device, dtype, non_blocking); });
}
void MarginHeadImpl::to(torch::Dtype dtype, bool non_blocking) {
  keeping_integer_buffers(*this, [&] { Module::to(dtype, non_blocking); });
}
void MarginHeadImpl::to(torch::Device device, bool non_blocking) { Module::to(device, non_blocking); }

void MarginHeadImpl::pretty_print(std::ostream& stream) const {
  stream << "facetrain::heads::" << type_ << "(embedding_size=" << geometry_.embedding_size
         << ", num_classes=" << geometry_.num_classes;
  if (geometry_.num_local_classes() != geometry_.num_classes)
    stream << ", classes=[" << geometry_.class_begin << ", " << geometry_.class_end << ")";
  std::string opts = describe_options();
  if (!opts.empty()) stream << ", " << opts;
  stream << ")";
}

}  // namespace facetrain::heads
