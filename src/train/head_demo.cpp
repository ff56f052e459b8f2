#include "facetrain/train/head_demo.h"

#include <cstdio>

#include "facetrain/core/error.h"
#include "facetrain/core/progress.h"
#include "facetrain/heads/margin_head.h"

namespace facetrain::train {

void HeadDemoOptions::read(config::Section& root) {
  int64_t seed_value = static_cast<int64_t>(seed);
  if (root.read("seed", seed_value)) {
    if (seed_value < 0)
      root.error("seed", "must be >= 0");
    else
      seed = static_cast<uint64_t>(seed_value);
  }
  auto positive = [](config::Section& s, const char* key, auto& value) {
    if (s.read(key, value) && !(value > 0)) s.error(key, "must be > 0");
  };
  auto data = root.section("data");
  positive(data, "classes", classes);
  positive(data, "feature_dim", feature_dim);
  if (data.read("samples_per_class", samples_per_class) && samples_per_class < 2)
    data.error("samples_per_class", "must be >= 2 (half of each class is held out)");
  if (data.read("noise", noise) && noise < 0) data.error("noise", "must be >= 0");
  data.finish();

  auto model = root.section("model");
  positive(model, "embedding_size", embedding_size);
  model.finish();

  auto head_section = root.section("head");
  head = heads::read_head(head_section);

  auto tr = root.section("train");
  positive(tr, "steps", steps);
  positive(tr, "batch_size", batch_size);
  positive(tr, "lr", lr);
  if (tr.read("momentum", momentum) && (momentum < 0 || momentum >= 1)) tr.error("momentum", "must be in [0, 1)");
  positive(tr, "log_every", log_every);
  tr.finish();
  root.finish();
}

namespace {

double nearest_centre_accuracy(heads::MarginHeadImpl& head, const torch::Tensor& emb, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  torch::Tensor scores;
  if (head.type() == "softmax") {
    scores = torch::nn::functional::linear(emb, head.weight, head.named_parameters()["bias"]);
  } else {
    auto e = emb / emb.norm(2, 1, true).clamp_min(1e-12);
    auto w = head.weight / head.weight.norm(2, 1, true).clamp_min(1e-12);
    scores = torch::mm(e, w.t());
  }
  return scores.argmax(1).eq(y).to(torch::kDouble).mean().item<double>();
}

}  // namespace

HeadDemoResult run_head_demo(const HeadDemoOptions& o, const std::function<void(const std::string&)>& log) {
  if (!o.head) throw ArgumentError("head demo: no head configured");
  torch::manual_seed(o.seed);

  // Data: unit-norm class centres, samples = centre + noise · N(0, I/F)·√F-normalised.
  auto centres = torch::randn({o.classes, o.feature_dim});
  centres = centres / centres.norm(2, 1, true);
  auto labels = torch::arange(o.classes).repeat_interleave(o.samples_per_class);
  auto features = centres.index_select(0, labels) +
                  o.noise * torch::randn({labels.size(0), o.feature_dim}) / std::sqrt(double(o.feature_dim));
  auto held_out = torch::arange(labels.size(0)).remainder(2).eq(1);
  auto x_train = features.index({held_out.logical_not()}), y_train = labels.index({held_out.logical_not()});
  auto x_test = features.index({held_out}), y_test = labels.index({held_out});

  torch::nn::Linear embed(torch::nn::LinearOptions(o.feature_dim, o.embedding_size).bias(false));
  auto head = o.head.build(heads::HeadGeometry(o.embedding_size, o.classes));
  std::vector<torch::Tensor> params = embed->parameters();
  for (auto& p : head->parameters()) params.push_back(p);
  torch::optim::SGD opt(params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(5e-4));

  HeadDemoResult result;
  result.accuracy_before = nearest_centre_accuracy(*head, embed(x_test), y_test);
  char line[256];
  std::snprintf(line, sizeof line,
                "head demo: %s (%s) | %lld classes, %lld-d features -> %lld-d embeddings | %lld steps",
                o.head.type.c_str(), o.head.options.c_str(), (long long)o.classes, (long long)o.feature_dim,
                (long long)o.embedding_size, (long long)o.steps);
  log(line);

  ProgressMeter meter(o.steps, "step");
  const int64_t n = x_train.size(0);
  for (int64_t step = 1; step <= o.steps; ++step) {
    auto idx = torch::randint(n, {std::min(o.batch_size, n)}, torch::kLong);
    auto logits = head->forward(embed(x_train.index_select(0, idx)), y_train.index_select(0, idx));
    auto loss = torch::nn::functional::cross_entropy(logits, y_train.index_select(0, idx));
    opt.zero_grad();
    loss.backward();
    opt.step();
    double value = loss.item<double>();
    if (!std::isfinite(value))
      throw Error("head demo: the loss became " + std::to_string(value) + " at step " + std::to_string(step));
    result.losses.push_back(value);
    if (step % o.log_every == 0 || step == o.steps) {
      std::snprintf(line, sizeof line, "loss %9.4f | %s", value, meter.line(step).c_str());
      log(line);
    }
  }
  result.accuracy_after = nearest_centre_accuracy(*head, embed(x_test), y_test);
  auto mean_of = [&](size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += result.losses[i];
    return s / double(to - from);
  };
  size_t k = std::max<size_t>(1, result.losses.size() / 10);
  std::snprintf(line, sizeof line,
                "done: loss %.4f -> %.4f (mean of first/last %zu steps) | held-out accuracy %.1f%% -> %.1f%%",
                mean_of(0, k), mean_of(result.losses.size() - k, result.losses.size()), k, 100 * result.accuracy_before,
                100 * result.accuracy_after);
  log(line);
  return result;
}

}  // namespace facetrain::train
