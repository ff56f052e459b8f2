// Weights move both ways between facetrain and PyTorch: the PyTorch models of
// tests/python/insightface_models.py (insightface's module trees) write state dicts that
// facetrain loads and evaluates to the same embeddings, and facetrain's saved weights load into
// the PyTorch models with strict=True and give facetrain's embeddings back.
//
// The committed golden (tests/data/backbones/mbf_tiny) needs no Python; the other tests run
// Debian's python3-torch (`scripts/setup.sh --tests` installs it) and fail if it is missing.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "facetrain/backbones.h"
#include "facetrain/core/error.h"
#include "facetrain/io.h"

namespace fb = facetrain::backbones;
namespace fio = facetrain::io;
namespace fs = std::filesystem;

namespace {

const std::string kSource = FACETRAIN_SOURCE_DIR;
const std::string kScript = kSource + "/tests/python/backbone_goldens.py";

// The input every golden uses: element i = ((i * 7919) % 2001) / 1000 - 1 (see backbone_goldens.py).
torch::Tensor fixed_input() {
  auto i = torch::arange(4 * 3 * 112 * 112, torch::kInt64);
  return (((i * 7919) % 2001).to(torch::kDouble) / 1000 - 1).to(torch::kFloat).reshape({4, 3, 112, 112});
}

// Within 1e-4 of the largest magnitude of `want` (the acceptance bound of the issue).
::testing::AssertionResult close(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  if (got.sizes() != want.sizes())
    return ::testing::AssertionFailure() << what << ": shape " << got.sizes() << " vs " << want.sizes();
  double scale = want.abs().max().item<double>();
  double err = (got.to(torch::kDouble) - want.to(torch::kDouble)).abs().max().item<double>();
  if (err <= 1e-4 * std::max(scale, 1e-30)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": max |diff| " << err << " > 1e-4 * " << scale;
}

std::map<std::string, torch::Tensor> as_map(const fio::StateDict& sd) {
  std::map<std::string, torch::Tensor> m;
  for (const auto& [k, v] : sd) m[k] = v;
  return m;
}

struct Run {
  int status;
  std::string output;
};

Run run(const std::string& command) {
  Run r{-1, {}};
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) r.output.append(buf, n);
  r.status = pclose(pipe);
  return r;
}

std::string python() { return FACETRAIN_TEST_PYTHON; }

// Fails the test (never skips) when the Python with torch is missing.
::testing::AssertionResult python_with_torch() {
  auto r = run(python() + " -c 'import torch'");
  if (r.status == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << python() << " cannot import torch (" << r.output
                                       << "); run `scripts/setup.sh --tests` to install Debian's python3-torch";
}

fs::path temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("facetrain_interop_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Loads `dir`/weights.pth, checks eval and train embeddings and the buffers after the train-mode
// forward against `dir`/expected.pth.
void check_against_golden(fb::Backbone& net, const fs::path& dir) {
  fio::load_state_dict(*net, (dir / "weights.pth").string());
  auto expected = as_map(fio::read_state_dict((dir / "expected.pth").string()));
  auto x = fixed_input();
  net->eval();
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(close(net->forward(x), expected.at("eval"), "eval embeddings"));
    net->train();
    EXPECT_TRUE(close(net->forward(x), expected.at("train"), "train embeddings"));
  }
  size_t buffers = 0;
  for (const auto& b : net->named_buffers()) {
    const auto& want = expected.at("after." + b.key());
    if (b.value().is_floating_point()) {
      EXPECT_TRUE(close(b.value(), want, b.key()));
    } else {
      EXPECT_TRUE(torch::equal(b.value(), want)) << b.key();
    }
    ++buffers;
  }
  EXPECT_GT(buffers, 0u);
}

}  // namespace

TEST(BackboneInterop, CommittedPyTorchGoldenOfATinyMobileFaceNet) {
  // float16 weights written by torch.save (see backbone_goldens.py for the command).
  auto net = fb::make_backbone(YAML::Load("{type: mobilefacenet, embedding_size: 64, blocks: [1, 1, 1, 1], scale: 1}"));
  check_against_golden(net, kSource + "/tests/data/backbones/mbf_tiny");
}

class BackboneKeys : public ::testing::TestWithParam<const char*> {};

TEST_P(BackboneKeys, StateDictEqualsThePyTorchModelsKeyForKey) {
  ASSERT_TRUE(python_with_torch());
  auto r = run(python() + " " + kScript + " keys --type " + GetParam());
  ASSERT_EQ(r.status, 0) << r.output;
  auto net = fb::make_backbone(YAML::Load(std::string("{type: ") + GetParam() + "}"));
  std::ostringstream ours;
  for (const auto& [name, t] : fio::module_state_dict(*net)) {
    std::string shape;
    for (int64_t d = 0; d < t.dim(); ++d) shape += (d ? "x" : "") + std::to_string(t.size(d));
    std::string dtype = t.scalar_type() == torch::kFloat ? "float32" : t.scalar_type() == torch::kLong ? "int64" : "?";
    ours << name << " " << dtype << " " << (shape.empty() ? "scalar" : shape) << "\n";
  }
  EXPECT_EQ(ours.str(), r.output) << "names, order, dtypes and shapes must all match";
}

INSTANTIATE_TEST_SUITE_P(AllTypes, BackboneKeys,
                         ::testing::Values("iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200",
                                           "mobilefacenet", "mobilefacenet_large"),
                         [](const auto& info) { return std::string(info.param); });

class BackboneRoundTrip : public ::testing::TestWithParam<const char*> {};

// PyTorch -> facetrain -> PyTorch for the full-size models (goldens made at test time: too big to
// commit).
TEST_P(BackboneRoundTrip, PyTorchWeightsInFacetrainWeightsOut) {
  ASSERT_TRUE(python_with_torch());
  const std::string type = GetParam();
  auto dir = temp_dir(type);
  auto made = run(python() + " " + kScript + " make --type " + type + " --out " + dir.string());
  ASSERT_EQ(made.status, 0) << made.output;

  auto net = fb::make_backbone(YAML::Load("{type: " + type + "}"));
  check_against_golden(net, dir);

  // Change every weight (and the BatchNorm statistics moved in the train-mode forward above),
  // then hand facetrain's weights and embeddings to PyTorch.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.mul_(1.01);
  }
  auto x = fixed_input();
  fio::StateDict expected;
  {
    torch::NoGradGuard no_grad;
    net->eval();
    fio::save_state_dict(*net, (dir / "facetrain.pth").string());
    expected.emplace_back("eval", net->forward(x));
    net->train();
    expected.emplace_back("train", net->forward(x));
  }
  fio::write_state_dict(expected, (dir / "facetrain_expected.pth").string());
  auto checked = run(python() + " " + kScript + " check --type " + type + " --weights " +
                     (dir / "facetrain.pth").string() + " --expected " + (dir / "facetrain_expected.pth").string());
  EXPECT_EQ(checked.status, 0) << checked.output;
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Models, BackboneRoundTrip, ::testing::Values("mobilefacenet", "iresnet50"),
                         [](const auto& info) { return std::string(info.param); });

TEST(BackboneInterop, WrongArchitectureNamesTheFirstMismatchingKeys) {
  auto dir = temp_dir("wrong");
  auto r18 = fb::make_backbone(YAML::Load("{type: iresnet18, embedding_size: 64}"));
  const std::string file = (dir / "r18.pth").string();
  fio::save_state_dict(*r18, file);

  auto r34 = fb::make_backbone(YAML::Load("{type: iresnet34, embedding_size: 64}"));
  auto before = r34->named_parameters()["conv1.weight"].clone();
  try {
    fio::load_state_dict(*r34, file);
    FAIL() << "expected an error";
  } catch (const facetrain::DataError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("layer1.2.bn1.weight"), std::string::npos) << "a key r34 has and r18 lacks: " << msg;
  }
  EXPECT_TRUE(torch::equal(r34->named_parameters()["conv1.weight"], before)) << "nothing loaded on error";

  auto wide = fb::make_backbone(YAML::Load("{type: iresnet18, embedding_size: 128}"));
  try {
    fio::LoadOptions lenient;
    lenient.allow_missing = lenient.allow_unexpected = true;
    fio::load_state_dict(*wide, file, lenient);
    FAIL() << "a shape mismatch is an error even when missing/unexpected keys are allowed";
  } catch (const facetrain::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("fc.weight"), std::string::npos) << e.what();
  }

  // Fine-tuning a bigger network from a smaller one's file: the allow flags let it through and
  // the report says what was left out.
  fio::LoadOptions lenient;
  lenient.allow_missing = true;
  auto report = fio::load_state_dict(*r34, file, lenient);
  EXPECT_FALSE(report.missing.empty());
  EXPECT_TRUE(report.unexpected.empty());
  EXPECT_TRUE(torch::equal(r34->named_parameters()["conv1.weight"], r18->named_parameters()["conv1.weight"]));
  fs::remove_all(dir);
}
