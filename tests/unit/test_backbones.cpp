// Backbones: structure (names, shapes, counts) against insightface's, options, modes, precision,
// memory format and the operation counter. Interop with PyTorch files: test_backbone_interop.cpp.
#include <gtest/gtest.h>

#include "facetrain/backbones.h"
#include "facetrain/core/error.h"
#include "facetrain/core/torch_compat.h"

namespace fb = facetrain::backbones;

namespace {

fb::Backbone make(const std::string& yaml) { return fb::make_backbone(YAML::Load(yaml)); }

std::string config_error(const std::string& yaml) {
  try {
    make(yaml);
  } catch (const facetrain::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

// A small non-trivial input (values in [-1, 1]).
torch::Tensor images(int64_t batch) {
  auto i = torch::arange(batch * 3 * 112 * 112, torch::kInt64);
  return (((i * 7919) % 2001).to(torch::kDouble) / 1000 - 1).to(torch::kFloat).reshape({batch, 3, 112, 112});
}

// Copies every parameter and buffer of `from` into `to` (same architecture).
void copy_state(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto src_p = from.named_parameters();
  for (auto& p : to.named_parameters()) p.value().copy_(src_p[p.key()]);
  auto src_b = from.named_buffers();
  for (auto& b : to.named_buffers()) b.value().copy_(src_b[b.key()]);
}

}  // namespace

// Golden parameter counts and ptflops-convention MACs at embedding 512, from the PyTorch models:
//   /usr/bin/python3 tests/python/backbone_goldens.py flops --type T
// (tests/python/insightface_models.py rebuilds insightface's modules; mbf, r18 and r50 parameter
// counts are also the ones measured with the public insightface code.)
struct CountCase {
  const char* type;
  int64_t parameters;
  int64_t macs;
};

class BackboneCounts : public ::testing::TestWithParam<CountCase> {};

TEST_P(BackboneCounts, ParametersAndFlopsMatchThePyTorchModel) {
  const auto& c = GetParam();
  auto net = make(std::string("{type: ") + c.type + "}");
  auto s = fb::summarize(*net);
  EXPECT_EQ(s.parameters, c.parameters);
  EXPECT_EQ(s.ptflops_macs, c.macs);
  EXPECT_GT(s.ptflops_macs, s.conv_linear_macs);
  EXPECT_GT(s.conv_linear_macs, 0.9 * s.ptflops_macs);
  EXPECT_TRUE(net->is_training()) << "summarize restores the mode";
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, BackboneCounts,
    ::testing::Values(CountCase{"iresnet18", 24025600, 2623378432}, CountCase{"iresnet34", 34139328, 4477456896},
                      CountCase{"iresnet50", 43590848, 6329954816}, CountCase{"iresnet100", 65156160, 12122171904},
                      CountCase{"iresnet200", 118833920, 23475921920}, CountCase{"mobilefacenet", 2059520, 448787456},
                      CountCase{"mobilefacenet_large", 6314880, 1844834304}),
    [](const auto& info) { return std::string(info.param.type); });

TEST(Backbones, NamesFollowInsightface) {
  auto r50 = make("{type: iresnet50}");
  auto params = r50->named_parameters();
  auto buffers = r50->named_buffers();
  for (const char* key : {"conv1.weight", "prelu.weight", "layer1.0.downsample.0.weight", "layer3.13.conv2.weight",
                          "layer4.2.prelu.weight", "fc.weight", "fc.bias", "features.weight", "features.bias"})
    EXPECT_TRUE(params.contains(key)) << key;
  for (const char* key : {"layer3.7.bn2.running_var", "layer1.0.downsample.1.num_batches_tracked",
                          "features.running_mean", "bn2.running_mean"})
    EXPECT_TRUE(buffers.contains(key)) << key;
  EXPECT_FALSE(params.contains("layer1.1.downsample.0.weight")) << "only the first block of a stage downsamples";
  EXPECT_FALSE(params["features.weight"].requires_grad()) << "insightface fixes the embedding BN scale";
  EXPECT_EQ(params["fc.weight"].sizes(), torch::IntArrayRef({512, 25088}));

  auto mbf = make("{type: mbf}");
  auto mp = mbf->named_parameters();
  for (const char* key : {"layers.0.layers.0.weight", "layers.1.layers.0.weight",
                          "layers.3.layers.3.layers.2.layers.1.bias", "conv_sep.layers.2.weight",
                          "features.layers.0.layers.0.weight", "features.layers.2.weight", "features.layers.3.weight"})
    EXPECT_TRUE(mp.contains(key)) << key;
  EXPECT_FALSE(mp.contains("features.layers.2.bias"));
  EXPECT_EQ(mp["layers.1.layers.0.weight"].sizes(), torch::IntArrayRef({128, 2, 3, 3})) << "groups=64 depthwise";
  EXPECT_TRUE(mbf->named_buffers().contains("features.layers.3.num_batches_tracked"));
}

TEST(Backbones, ForwardGivesEmbeddingsInEvalAndTrainMode) {
  auto net = make("{type: mobilefacenet, embedding_size: 128}");
  auto x = images(3);
  auto train_out = net->forward(x);
  EXPECT_EQ(train_out.sizes(), torch::IntArrayRef({3, 128}));
  EXPECT_EQ(train_out.scalar_type(), torch::kFloat);
  auto counter = net->named_buffers()["conv_sep.layers.1.num_batches_tracked"];
  EXPECT_EQ(counter.item<int64_t>(), 1) << "train mode updates BatchNorm statistics";
  net->eval();
  auto a = net->forward(x);
  auto b = net->forward(x);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(counter.item<int64_t>(), 1) << "eval mode leaves them alone";
  EXPECT_FALSE(torch::allclose(a, train_out)) << "eval uses running statistics, train the batch's";
  // A row's embedding does not depend on the rest of the batch in eval mode.
  EXPECT_TRUE(torch::allclose(net->forward(x.slice(0, 1, 2)), a.slice(0, 1, 2), 1e-5, 1e-5));
}

TEST(Backbones, DropoutActsOnlyInTraining) {
  auto net = make("{type: iresnet18, dropout: 0.5, embedding_size: 16}");
  auto x = images(2);
  net->eval();
  EXPECT_TRUE(torch::equal(net->forward(x), net->forward(x)));
  net->train();
  torch::manual_seed(1);
  auto a = net->forward(x);
  torch::manual_seed(2);
  auto b = net->forward(x);
  EXPECT_FALSE(torch::allclose(a, b));
}

TEST(Backbones, GradientsReachEveryTrainableParameter) {
  // Eval mode: in train mode a BatchNorm cancels any constant shift, so the bias just before
  // one (or before the final BatchNorm1d) rightly gets a zero gradient.
  auto net = make("{type: mobilefacenet, blocks: [2, 1, 1, 1], scale: 1, embedding_size: 8}");
  net->eval();
  torch::manual_seed(0);
  (net->forward(images(2)) * torch::randn({2, 8})).sum().backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
}

TEST(Backbones, BadInputIsRefusedWithItsShape) {
  auto net = make("{type: mobilefacenet, scale: 1, blocks: [1, 1, 1, 1]}");
  try {
    net->forward(torch::zeros({2, 3, 96, 96}));
    FAIL() << "expected an error";
  } catch (const facetrain::ArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("expected images [B, 3, 112, 112], got [2, 3, 96, 96]"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(net->forward(torch::zeros({2, 3, 112, 112}, torch::kInt64)), facetrain::ArgumentError);
  EXPECT_THROW(net->forward(torch::zeros({3, 112, 112})), facetrain::ArgumentError);
  EXPECT_THROW(net->forward(torch::zeros({1, 3, 112, 112})), facetrain::ArgumentError) << "one image in training";
  net->eval();
  EXPECT_EQ(net->forward(torch::zeros({1, 3, 112, 112})).sizes(), torch::IntArrayRef({1, 512}));
}

TEST(Backbones, ConfigErrorsNameTheKey) {
  EXPECT_NE(config_error("{type: iresnet50, dropuot: 0.1}").find("unknown key 'dropuot'"), std::string::npos);
  EXPECT_NE(config_error("{type: iresnet50, dropuot: 0.1}").find("did you mean 'dropout'"), std::string::npos);
  EXPECT_NE(config_error("{type: mbf, dropout: 0.1}").find("unknown key 'dropout'"), std::string::npos)
      << "dropout is an IResNet option";
  EXPECT_NE(config_error("{type: iresnet51}").find("unknown backbone type 'iresnet51'"), std::string::npos);
  EXPECT_NE(config_error("{type: iresnet51}").find("did you mean 'iresnet50'"), std::string::npos);
  EXPECT_NE(config_error("{type: mbf, blocks: [1, 2]}").find("blocks: must be 4 counts >= 1, got [1, 2]"),
            std::string::npos)
      << config_error("{type: mbf, blocks: [1, 2]}");
  EXPECT_NE(config_error("{type: mbf, blocks: [1, x, 1, 1]}").find("expected a list of integers"), std::string::npos);
  EXPECT_NE(config_error("{type: r50, dropout: 1.5, embedding_size: 0}").find("dropout: must be in [0, 1), got 1.5"),
            std::string::npos);
  EXPECT_NE(config_error("{type: r50, dropout: 1.5, embedding_size: 0}").find("embedding_size: must be > 0"),
            std::string::npos)
      << "every problem is reported at once";
  EXPECT_NE(config_error("{type: r50, memory_format: nhwc}").find("expected one of: contiguous, channels_last"),
            std::string::npos);
  EXPECT_NE(config_error("{embedding_size: 3}").find("missing required key 'type'"), std::string::npos);
}

TEST(Backbones, AliasesAndDefaults) {
  auto r50 = make("{type: r50}");
  EXPECT_EQ(r50->type(), "iresnet50");
  auto large = make("{type: mbf_large}");
  auto* impl = dynamic_cast<fb::MobileFaceNetImpl*>(large.get());
  ASSERT_NE(impl, nullptr);
  EXPECT_EQ(impl->options().blocks, (std::vector<int64_t>{2, 8, 12, 4}));
  EXPECT_EQ(impl->options().scale, 4);
  std::ostringstream s;
  s << *r50;
  EXPECT_NE(s.str().find("iresnet50(embedding_size=512, memory_format=contiguous, layers=[3, 4, 14, 3], dropout=0)"),
            std::string::npos)
      << s.str();
  EXPECT_EQ(fb::backbone_types().size(), 7u);
}

TEST(Backbones, ConstructorRefusesBadOptions) {
  fb::IResNetOptions o;
  o.layers = {2, 2, 0, 2};
  EXPECT_THROW(fb::IResNet("iresnet", o), facetrain::ArgumentError);
  fb::MobileFaceNetOptions m;
  m.scale = 0;
  EXPECT_THROW(fb::MobileFaceNet("mobilefacenet", m), facetrain::ArgumentError);
}

TEST(Backbones, ChannelsLastGivesTheSameEmbeddings) {
  auto plain = make("{type: iresnet18, embedding_size: 32}");
  auto nhwc = make("{type: iresnet18, embedding_size: 32, memory_format: channels_last}");
  EXPECT_TRUE(nhwc->named_parameters()["layer2.0.conv1.weight"].is_contiguous(torch::MemoryFormat::ChannelsLast));
  copy_state(*plain, *nhwc);
  EXPECT_TRUE(nhwc->named_parameters()["layer2.0.conv1.weight"].is_contiguous(torch::MemoryFormat::ChannelsLast))
      << "copying weights in keeps the layout";
  plain->eval();
  nhwc->eval();
  auto x = images(2);
  auto a = plain->forward(x);
  auto b = nhwc->forward(x);
  EXPECT_LE((a - b).abs().max().item<double>(), 1e-4 * a.abs().max().item<double>());
}

TEST(Backbones, MixedPrecisionRunsTheBodyInBfloat16AndTheTailInFloat32) {
  auto net = make("{type: mobilefacenet, blocks: [1, 1, 1, 1], scale: 1, embedding_size: 16}");
  net->eval();
  auto x = images(2);
  auto full = net->forward(x);
  {
    // An outer autocast region does not reach a backbone whose mixed precision is off.
    facetrain::compat::AutocastGuard outer(torch::kCPU, true, torch::kBFloat16);
    EXPECT_TRUE(torch::equal(net->forward(x), full));
    EXPECT_TRUE(facetrain::compat::AutocastGuard::is_enabled(torch::kCPU)) << "and is restored afterwards";
  }
  EXPECT_FALSE(facetrain::compat::AutocastGuard::is_enabled(torch::kCPU));
  net->set_mixed_precision(torch::kBFloat16);
  auto mixed = net->forward(x);
  EXPECT_EQ(mixed.scalar_type(), torch::kFloat);
  EXPECT_FALSE(torch::equal(mixed, full)) << "the body really ran in bfloat16";
  // bfloat16 keeps 8 bits of mantissa: embeddings agree in direction, not in the last digits.
  auto cos = torch::cosine_similarity(mixed, full, 1);
  EXPECT_GT(cos.min().item<double>(), 0.99) << cos;
  EXPECT_FALSE(facetrain::compat::AutocastGuard::is_enabled(torch::kCPU));
  EXPECT_THROW(net->set_mixed_precision(torch::kInt32), facetrain::ArgumentError);
}

TEST(Backbones, SummaryTextNamesTheConvention) {
  auto net = make("{type: mbf}");
  auto text = fb::format_summary(fb::summarize(*net));
  EXPECT_NE(text.find("2,059,520"), std::string::npos) << text;
  EXPECT_NE(text.find("0.449"), std::string::npos) << text;
  EXPECT_NE(text.find("ptflops"), std::string::npos) << text;
  EXPECT_NE(text.find("conv_sep"), std::string::npos) << text;
}
