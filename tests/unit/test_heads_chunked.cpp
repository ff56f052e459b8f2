// The chunked cross-entropy (MarginHeadImpl::chunked_cross_entropy) against the plain path,
// cross_entropy(head.forward(x, y), y), for every head: the loss, the gradients of the
// embeddings and of every class-row parameter, and the buffers, over three calls (the buffers
// move), for blocks of 1, 3, all and more than all classes, in float64 and float32, and with a
// Partial FC sample. (Split over ranks: test_dist.cpp, DistHeads and PartialFcHeads.)
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <string>

#include "facetrain/core/error.h"
#include "facetrain/heads.h"
#include "head_testing.h"

namespace facetrain::testing {
namespace {

using torch::Tensor;

struct Outcome {
  double loss;
  Tensor grad_x;
  std::map<std::string, Tensor> grads, buffers;
};

Outcome outcome(heads::MarginHeadImpl& head, const Tensor& x, const Tensor& loss) {
  Outcome o{loss.item<double>(), x.grad(), {}, buffers_of(head)};
  for (const auto& p : head.named_parameters()) o.grads[p.key()] = p.value().grad().clone();
  return o;
}

void expect_same(const Outcome& a, const Outcome& b, double tol, const std::string& where) {
  EXPECT_NEAR(a.loss, b.loss, tol * std::max(1.0, std::abs(b.loss))) << where;
  EXPECT_TRUE(close(a.grad_x, b.grad_x, tol, where + " d/dx"));
  ASSERT_EQ(a.grads.size(), b.grads.size()) << where;
  for (const auto& [name, g] : b.grads) EXPECT_TRUE(close(a.grads.at(name), g, tol, where + " d/d" + name));
  for (const auto& [name, v] : b.buffers) EXPECT_TRUE(close(a.buffers.at(name), v, tol, where + " buffer " + name));
}

class ChunkedHeads : public ::testing::TestWithParam<std::string> {};

TEST_P(ChunkedHeads, EqualsThePlainCrossEntropy) {
  const std::string yaml = GetParam();
  const int64_t B = 12, D = 8, C = 10;
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const double tol = dtype == torch::kDouble ? 1e-12 : 2e-5;
    auto in = make_inputs(B, D, C, 7, dtype);
    for (int64_t chunk : {1, 3, 10, 16}) {
      auto [plain, chunked] = twin_heads(yaml, D, C, 2, dtype);
      for (int call = 0; call < 3; ++call) {
        const std::string where = yaml + " " + c10::toString(dtype) + ", chunk " + std::to_string(chunk) + ", call " +
                                  std::to_string(call);
        Tensor x1 = in.x.clone().requires_grad_(true), x2 = in.x.clone().requires_grad_(true);
        plain->zero_grad();
        chunked->zero_grad();
        Tensor l1 = torch::nn::functional::cross_entropy(plain->forward(x1, in.y), in.y);
        l1.backward();
        Tensor l2 = chunked->chunked_cross_entropy(x2, in.y, chunk);
        l2.backward();
        expect_same(outcome(*chunked, x2, l2), outcome(*plain, x1, l1), tol, where);
      }
    }
  }
}

// With a Partial FC sample: the chunked loss over the sampled classes equals the plain one over
// the sampled logits; the rows left out get zero gradients either way.
TEST_P(ChunkedHeads, EqualsThePlainCrossEntropyOverAPartialFcSample) {
  const std::string yaml = GetParam();
  const int64_t B = 12, D = 8, C = 16;
  auto in = make_inputs(B, D, C, 8, torch::kDouble);
  // Every positive, and two negatives (the labels' classes are known here).
  auto classes = std::get<0>(at::_unique(torch::cat({in.y, torch::tensor({int64_t(0), C - 1}, torch::kLong)}), true));
  ASSERT_LT(classes.size(0), C);
  auto targets = torch::searchsorted(classes, in.y);
  auto [plain, chunked] = twin_heads(yaml, D, C, 3);
  for (int call = 0; call < 2; ++call) {
    Tensor x1 = in.x.clone().requires_grad_(true), x2 = in.x.clone().requires_grad_(true);
    plain->zero_grad();
    chunked->zero_grad();
    Tensor l1 = torch::nn::functional::cross_entropy(plain->forward(x1, in.y, classes), targets);
    l1.backward();
    Tensor l2 = chunked->chunked_cross_entropy(x2, in.y, 4, classes);
    l2.backward();
    expect_same(outcome(*chunked, x2, l2), outcome(*plain, x1, l1), 1e-12, yaml + " call " + std::to_string(call));
  }
}

INSTANTIATE_TEST_SUITE_P(AllHeads, ChunkedHeads, ::testing::ValuesIn(every_head_variant()),
                         [](const auto& info) { return "case" + std::to_string(info.index); });

TEST(ChunkedHeadsInput, BadChunksAndBatchesAreRefused) {
  auto head = heads::make_head(YAML::Load("{type: arcface}"), 4, 10);
  Tensor x = torch::randn({3, 4}), y = torch::tensor({1, 5, 8}, torch::kLong);
  EXPECT_THROW(head->chunked_cross_entropy(x, y, 0), ArgumentError);
  EXPECT_THROW(head->chunked_cross_entropy(torch::randn({0, 4}), torch::zeros({0}, torch::kLong), 4), ArgumentError);
  EXPECT_THROW(head->chunked_cross_entropy(x, torch::tensor({1, 5, 10}, torch::kLong), 4), ArgumentError);
  EXPECT_THROW(head->chunked_cross_entropy(x, y, 4, torch::tensor({1, 5}, torch::kLong)), ArgumentError);
  // A reducer that combines shards but not maxima cannot run it across shards.
  struct SumOnly : heads::StatisticsReducer {
    Tensor sum(const Tensor& local, heads::ReduceScope) const override { return local; }
  };
  auto shard = heads::make_head(YAML::Load("{type: arcface}"), heads::HeadGeometry(4, 10, 0, 5));
  shard->set_reducer(std::make_shared<SumOnly>());
  EXPECT_THROW(shard->chunked_cross_entropy(x, y, 4), ArgumentError);
}

}  // namespace
}  // namespace facetrain::testing
