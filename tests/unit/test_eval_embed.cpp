// Embedding extraction and the eval/embed/export library calls: the same numbers as a direct
// forward pass whatever the batch size and thread count, errors naming the image, weights loaded
// strictly, JSON that reads back bit for bit, .npy + order files.
#include "facetrain/eval/embed.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "data_testing.h"
#include "facetrain/backbones/registry.h"
#include "facetrain/data/loader.h"
#include "facetrain/data/synthetic.h"
#include "facetrain/eval/report.h"
#include "facetrain/io/npy.h"
#include "facetrain/io/state_dict.h"

namespace {

namespace fs = std::filesystem;
using facetrain::testing::error_message;
using facetrain::testing::slurp;

facetrain::backbones::Backbone small_net() {
  torch::manual_seed(0);
  auto net = facetrain::backbones::make_backbone(YAML::Load("{type: mbf, embedding_size: 64}"));
  net->eval();
  return net;
}

std::vector<std::string> faces(int n) {
  facetrain::data::SyntheticFaces synth(7);
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back(synth.render_jpeg(static_cast<uint64_t>(i / 2), static_cast<uint64_t>(i % 2)));
  return out;
}

torch::Tensor direct(facetrain::backbones::BackboneImpl& net, const std::vector<std::string>& images, bool flip) {
  torch::Tensor x = torch::empty({static_cast<int64_t>(images.size()), 3, 112, 112});
  for (size_t i = 0; i < images.size(); ++i) {
    facetrain::data::decode_to_chw(images[i], flip, x[static_cast<int64_t>(i)].data_ptr<float>(), "test");
  }
  torch::NoGradGuard guard;
  return net.forward(x).to(torch::kDouble);
}

TEST(Embed, SameAsADirectForwardWhateverTheBatchingAndThreads) {
  auto net = small_net();
  const auto images = faces(11);
  const torch::Tensor expected = direct(*net, images, false);
  const torch::Tensor expected_flip = direct(*net, images, true);
  for (auto [batch, threads] : {std::pair<int64_t, int64_t>{1, 1}, {4, 3}, {64, 2}}) {
    facetrain::eval::EmbedOptions o;
    o.batch_size = batch;
    o.threads = threads;
    int64_t last = 0, calls = 0;
    o.progress = [&](int64_t done, int64_t total) {
      EXPECT_GT(done, last);
      EXPECT_EQ(total, 11);
      last = done, ++calls;
    };
    auto e = facetrain::eval::embed_encoded(*net, images, o);
    EXPECT_EQ(e.embeddings.scalar_type(), torch::kDouble);
    EXPECT_TRUE(torch::allclose(e.embeddings, expected, 1e-5, 1e-5)) << batch;
    EXPECT_TRUE(torch::allclose(e.flipped, expected_flip, 1e-5, 1e-5)) << batch;
    EXPECT_FALSE(torch::equal(e.embeddings, e.flipped));  // the mirror really is another image
    EXPECT_EQ(last, 11);
    EXPECT_EQ(calls, (11 + batch - 1) / batch);
  }
  facetrain::eval::EmbedOptions no_flip;
  no_flip.flip = false;
  EXPECT_FALSE(facetrain::eval::embed_encoded(*net, images, no_flip).flipped.defined());
}

TEST(Embed, ErrorsNameTheImage) {
  auto net = small_net();
  auto images = faces(9);
  images[6] = "not an image";
  facetrain::eval::EmbedOptions o;
  o.batch_size = 4;
  o.threads = 2;
  const std::string message =
      error_message<facetrain::DataError>([&] { facetrain::eval::embed_encoded(*net, images, o, "lfw.bin"); });
  EXPECT_NE(message.find("lfw.bin image 6"), std::string::npos) << message;
  o.batch_size = 0;
  EXPECT_THROW(facetrain::eval::embed_encoded(*net, images, o), facetrain::ArgumentError);
  EXPECT_THROW(facetrain::eval::parse_device("gpu0"), facetrain::ConfigError);
  EXPECT_EQ(facetrain::eval::parse_device("cpu"), torch::Device(torch::kCPU));
}

TEST(Embed, FuseAndNormalize) {
  facetrain::eval::Embeddings e;
  e.embeddings = torch::tensor({{3.0, 0.0}, {0.0, 0.0}}, torch::kDouble);
  e.flipped = torch::tensor({{0.0, 4.0}, {0.0, 0.0}}, torch::kDouble);
  const torch::Tensor n = facetrain::eval::fuse_and_normalize(e);
  EXPECT_TRUE(torch::equal(n, torch::tensor({{0.6, 0.8}, {0.0, 0.0}}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(facetrain::eval::fuse_and_normalize(e, false),
                           torch::tensor({{3.0, 4.0}, {0.0, 0.0}}, torch::kDouble)));
}

class EvalFiles : public facetrain::testing::TempDirTest {};

TEST_F(EvalFiles, LoadBackboneIsStrict) {
  auto net = small_net();
  facetrain::io::save_state_dict(*net, path("mbf.pth"));
  auto loaded = facetrain::eval::load_backbone({path("mbf.pth"), "mbf", {"model.embedding_size=64"}});
  const auto images = faces(4);
  EXPECT_TRUE(torch::equal(direct(*loaded, images, false), direct(*net, images, false)));
  // The default embedding size (512) does not fit the 64-wide weights.
  const std::string message = error_message<facetrain::DataError>([&] {
    facetrain::eval::load_backbone({path("mbf.pth"), "mbf", {}});
  });
  EXPECT_NE(message.find(path("mbf.pth")), std::string::npos) << message;
  EXPECT_NE(message.find("shape"), std::string::npos) << message;
  EXPECT_THROW(facetrain::eval::load_backbone({path("mbf.pth"), "resnet9000", {}}), facetrain::ConfigError);
  EXPECT_THROW(facetrain::eval::load_backbone({path("missing.pth"), "mbf", {}}), facetrain::DataError);
}

TEST_F(EvalFiles, EvaluateBinAndItsReports) {
  auto net = small_net();
  const auto images = faces(40);
  std::vector<bool> issame;
  for (int i = 0; i < 20; ++i) issame.push_back(i % 2 == 0);
  facetrain::io::VerificationBin bin;
  bin.images = images;
  bin.issame = issame;
  facetrain::eval::EmbedOptions o;
  o.batch_size = 16;
  const auto r = facetrain::eval::evaluate_bin(*net, bin, "synth", o);
  // The same numbers as the protocol applied to a direct forward pass (to rounding).
  const auto expected = facetrain::eval::verify(direct(*net, images, false), direct(*net, images, true), issame);
  EXPECT_EQ(r.pairs, 20);
  EXPECT_EQ(r.accuracy, expected.accuracy);
  EXPECT_NEAR(r.xnorm, expected.xnorm, 1e-5);

  const auto json = nlohmann::json::parse(facetrain::eval::results_json({{"synth", r}, {"again", expected}}));
  for (const char* key : {"accuracy", "std", "thresholds", "val", "val_std", "far", "xnorm", "pairs"}) {
    EXPECT_TRUE(json["synth"].contains(key)) << key;
  }
  EXPECT_EQ(json["synth"]["xnorm"].get<double>(), r.xnorm);  // 17 digits: bit for bit
  EXPECT_EQ(json["again"]["val_std"].get<double>(), expected.val_std);
  EXPECT_EQ(json["synth"]["thresholds"].size(), 10u);
  const std::string table = facetrain::eval::format_table({{"synth", r}});
  EXPECT_NE(table.find("synth"), std::string::npos) << table;

  const auto plots = facetrain::eval::write_roc_plots(path("plots"), {{"synth", r}});
  ASSERT_EQ(plots.size(), 1u);
  EXPECT_EQ(slurp(plots[0]).substr(1, 3), "PNG");
}

TEST_F(EvalFiles, EmbedToNpyWritesRowsAndTheirOrder) {
  auto net = small_net();
  const auto images = faces(6);
  facetrain::io::write_verification_bin(path("tiny.bin"), images, {true, false, true});
  facetrain::eval::EmbedSetOptions set;
  set.bin = path("tiny.bin");
  set.flip = true;
  const auto written = facetrain::eval::embed_to_npy(*net, set, path("emb.npy"), {});
  EXPECT_EQ(written.rows, 6);
  EXPECT_EQ(written.dim, 64);
  EXPECT_EQ(written.order_path, path("emb.txt"));
  EXPECT_EQ(slurp(path("emb.txt")), "tiny.bin:0\ntiny.bin:1\ntiny.bin:2\ntiny.bin:3\ntiny.bin:4\ntiny.bin:5\n");
  const torch::Tensor rows = facetrain::io::read_npy(path("emb.npy"));
  EXPECT_EQ(rows.scalar_type(), torch::kFloat);
  const torch::Tensor expected =
      facetrain::eval::normalize_rows((direct(*net, images, false) + direct(*net, images, true)).contiguous());
  EXPECT_TRUE(torch::allclose(rows.to(torch::kDouble), expected, 1e-5, 1e-5));

  // An image folder: one row per file, named in the order file.
  for (int i = 0; i < 4; ++i) {
    facetrain::testing::spit(path("faces/id" + std::to_string(i / 2) + "/" + std::to_string(i) + ".jpg"), images[i]);
  }
  facetrain::eval::EmbedSetOptions folder;
  folder.images = path("faces");
  folder.no_normalize = true;
  folder.float64 = true;
  const auto w2 = facetrain::eval::embed_to_npy(*net, folder, path("folder.npy"), {});
  EXPECT_EQ(w2.rows, 4);
  const torch::Tensor raw = facetrain::io::read_npy(path("folder.npy"));
  EXPECT_EQ(raw.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::allclose(raw, direct(*net, {images.begin(), images.begin() + 4}, false), 1e-5, 1e-5));
  EXPECT_NE(slurp(path("folder.txt")).find("id1/3.jpg"), std::string::npos);

  facetrain::eval::EmbedSetOptions none;
  EXPECT_THROW(facetrain::eval::embed_to_npy(*net, none, path("x.npy"), {}), facetrain::ArgumentError);
}

}  // namespace
