// PyTorch state-dict files (io/state_dict.h): the fixtures PyTorch wrote
// (tests/python/make_io_fixtures.py), loading them into a LibTorch module with the same names,
// strict-mode errors, hand-made malformed archives, truncated and corrupted files, round trips
// C++ -> C++ and C++ -> Python (tests/python/check_state_dict.py), and atomic writes.
//
// No expected values are stored: every fixture tensor follows `pattern` (same formula as the
// Python scripts).

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "facetrain/core/error.h"
#include "facetrain/io.h"

namespace facetrain::io {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return std::string(FACETRAIN_SOURCE_DIR) + "/tests/data/io/" + name; }

// make_io_fixtures.py's pattern: floating (j % 17) * 0.25 - index, bool j % 3 == 0, integer
// j % 100 + index, with j the row-major element number.
torch::Tensor pattern(std::vector<int64_t> shape, int64_t index, torch::ScalarType dtype) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  torch::Tensor j = torch::arange(n, torch::kFloat64);
  torch::Tensor v;
  if (c10::isFloatingType(dtype)) {
    v = torch::remainder(j, 17) * 0.25 - static_cast<double>(index);
  } else if (dtype == torch::kBool) {
    v = torch::remainder(j, 3) == 0;
  } else {
    v = torch::remainder(j, 100) + static_cast<double>(index);
  }
  return v.to(dtype).reshape(shape);
}

// The Tiny module of make_io_fixtures.py, with the same names; `fc_out` and `extra` make
// mismatching variants.
struct TinyImpl : torch::nn::Module {
  explicit TinyImpl(int64_t fc_out = 2, bool extra = false) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).bias(false)));
    bn = register_module("bn", torch::nn::BatchNorm2d(4));
    fc = register_module("fc", torch::nn::Linear(4, fc_out));
    if (extra) head = register_module("head", torch::nn::Linear(2, 2));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Tiny);

const std::vector<std::string> kTinyNames = {"conv.weight",     "bn.weight",      "bn.bias",
                                             "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                                             "fc.weight",       "fc.bias"};
const std::vector<std::vector<int64_t>> kTinyShapes = {{4, 3, 3, 3}, {4}, {4}, {4}, {4}, {}, {2, 4}, {2}};

std::vector<std::string> names_of(const StateDict& state) {
  std::vector<std::string> out;
  for (const auto& entry : state) out.push_back(entry.first);
  return out;
}

// The Tiny state dict as make_io_fixtures.py wrote it, floating tensors in `dtype`.
void expect_tiny(const StateDict& state, torch::ScalarType dtype, const std::string& prefix = "") {
  ASSERT_EQ(state.size(), kTinyNames.size());
  for (size_t i = 0; i < state.size(); ++i) {
    SCOPED_TRACE(kTinyNames[i]);
    const auto& [name, tensor] = state[i];
    EXPECT_EQ(name, prefix + kTinyNames[i]);
    auto expected_dtype = kTinyNames[i] == "bn.num_batches_tracked" ? torch::kLong : dtype;
    EXPECT_EQ(tensor.scalar_type(), expected_dtype);
    EXPECT_EQ(tensor.sizes().vec(), kTinyShapes[i]);
    EXPECT_TRUE(tensor.is_contiguous());
    EXPECT_TRUE(torch::equal(tensor, pattern(kTinyShapes[i], static_cast<int64_t>(i), expected_dtype)));
  }
}

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

// The DataError message `f` throws, or "no error".
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

// A fresh directory, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "facetrain_io_XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = buffer.data();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::vector<std::string> list() const {
    std::vector<std::string> out;
    for (const auto& entry : fs::directory_iterator(path_)) out.push_back(entry.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

StateDict snapshot(const torch::nn::Module& module) {
  StateDict out;
  for (const auto& [name, tensor] : module_state_dict(module)) out.emplace_back(name, tensor.clone());
  return out;
}

void expect_unchanged(const torch::nn::Module& module, const StateDict& before) {
  StateDict now = module_state_dict(module);
  ASSERT_EQ(now.size(), before.size());
  for (size_t i = 0; i < now.size(); ++i) EXPECT_TRUE(torch::equal(now[i].second, before[i].second)) << now[i].first;
}

// --- reading the fixtures --------------------------------------------------------------------

TEST(StateDictRead, Float32Fixture) { expect_tiny(read_state_dict(fixture("tiny_float32.pth")), torch::kFloat); }

TEST(StateDictRead, Float16StaysFloat16) { expect_tiny(read_state_dict(fixture("tiny_float16.pth")), torch::kHalf); }

TEST(StateDictRead, EveryStorageType) {
  struct Spec {
    const char* name;
    std::vector<int64_t> shape;
    torch::ScalarType dtype;
  };
  const std::vector<Spec> specs = {
      {"bf16", {2, 3}, torch::kBFloat16}, {"f64", {5}, torch::kDouble},      {"i32", {2, 2}, torch::kInt},
      {"i16", {3}, torch::kShort},        {"i8", {3}, torch::kChar},         {"u8", {4}, torch::kByte},
      {"b", {5}, torch::kBool},           {"f32_scalar", {}, torch::kFloat}, {"empty", {0, 3}, torch::kFloat}};
  StateDict state = read_state_dict(fixture("dtypes.pth"));
  ASSERT_EQ(state.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].name);
    EXPECT_EQ(state[i].first, specs[i].name);
    EXPECT_EQ(state[i].second.scalar_type(), specs[i].dtype);
    EXPECT_EQ(state[i].second.sizes().vec(), specs[i].shape);
    EXPECT_TRUE(torch::equal(state[i].second, pattern(specs[i].shape, static_cast<int64_t>(i), specs[i].dtype)));
  }
}

// Five entries over one storage: each comes back right, contiguous and independent.
TEST(StateDictRead, ViewsAndSharedStorage) {
  StateDict state = read_state_dict(fixture("views.pth"));
  ASSERT_EQ(names_of(state), (std::vector<std::string>{"base", "alias", "transposed", "row", "strided"}));
  torch::Tensor base = torch::arange(24, torch::kFloat).reshape({4, 6});
  EXPECT_TRUE(torch::equal(state[0].second, base));
  EXPECT_TRUE(torch::equal(state[1].second, base));
  EXPECT_TRUE(torch::equal(state[2].second, base.t()));
  EXPECT_TRUE(torch::equal(state[3].second, base[2]));
  EXPECT_TRUE(torch::equal(state[4].second, base.slice(0, 1, 3).slice(1, 0, 6, 2)));
  for (const auto& [name, tensor] : state) EXPECT_TRUE(tensor.is_contiguous()) << name;
  state[0].second.add_(100);
  EXPECT_TRUE(torch::equal(state[1].second, base)) << "entries sharing a storage in the file are copies here";
  EXPECT_TRUE(torch::equal(state[3].second, base[2]));
}

TEST(StateDictRead, CheckpointEntry) {
  const std::string path = fixture("checkpoint.pth");
  ReadOptions options;
  options.entry = "state_dict_backbone";
  expect_tiny(read_state_dict(path, options), torch::kFloat);
  options.entry = "state_dict_softmax_fc";
  StateDict fc = read_state_dict(path, options);
  ASSERT_EQ(names_of(fc), std::vector<std::string>{"weight"});
  EXPECT_TRUE(torch::equal(fc[0].second, pattern({3, 4}, 0, torch::kFloat)));

  std::string message = error_of([&] { read_state_dict(path); });
  EXPECT_TRUE(Contains(message, "cannot read state dict '" + path + "': entry 'epoch': it is int 3, not a tensor"));
  EXPECT_TRUE(
      Contains(message, "pick its state dict with the entry option: state_dict_backbone, state_dict_softmax_fc"));
  options.entry = "nope";
  message = error_of([&] { read_state_dict(path, options); });
  EXPECT_TRUE(Contains(message,
                       "it has no entry 'nope' (its top-level keys: epoch, state_dict_backbone, lr, arch, "
                       "history, state_dict_softmax_fc)"));
  options.entry = "lr";
  EXPECT_TRUE(
      Contains(error_of([&] { read_state_dict(path, options); }), "entry 'lr' is float 0.1, not a dict of tensors"));
}

TEST(StateDictRead, DdpPrefixIsKeptByReadAndStrippedByLoad) {
  expect_tiny(read_state_dict(fixture("ddp.pth")), torch::kFloat, "module.");
  Tiny model;
  LoadReport report = load_state_dict(*model, fixture("ddp.pth"));
  EXPECT_TRUE(report.missing.empty());
  EXPECT_TRUE(report.unexpected.empty());
  expect_tiny(module_state_dict(*model), torch::kFloat);

  Tiny other;
  LoadOptions keep;
  keep.strip_module_prefix = false;
  std::string message = error_of([&] { load_state_dict(*other, fixture("ddp.pth"), keep); });
  EXPECT_TRUE(Contains(message, "8 missing keys, 8 unexpected keys"));
  EXPECT_TRUE(
      Contains(message, "8 unexpected keys (in the file, not in the model): module.conv.weight, module.bn.weight"));
  EXPECT_TRUE(Contains(message, "every key in the file starts with 'module.'"));
}

TEST(StateDictRead, LegacyFormatIsRefusedWithInstructions) {
  const std::string path = fixture("legacy.pth");
  std::string message = error_of([&] { read_state_dict(path); });
  EXPECT_TRUE(Contains(message, "cannot read state dict '" + path + "': it is in the legacy torch.save format"));
  EXPECT_TRUE(Contains(message, "_use_new_zipfile_serialization=False"));
  EXPECT_TRUE(Contains(message, "torch.save(torch.load('" + path + "', map_location='cpu'), 'converted.pth')"));
}

TEST(StateDictRead, ForbiddenGlobalIsRefusedNotRun) {
  const std::string path = fixture("forbidden_global.pth");
  EXPECT_EQ(error_of([&] { read_state_dict(path); }),
            "cannot read state dict '" + path +
                "': refusing to load global 'os.system' at byte 2 of data.pkl: not on the allow-list");
}

TEST(StateDictRead, BigEndianIsRefused) {
  EXPECT_TRUE(Contains(error_of([&] { read_state_dict(fixture("big_endian.pth")); }),
                       "its byteorder record says 'big'; only little-endian files are read"));
}

TEST(StateDictRead, MissingEmptyDirectoryAndGarbage) {
  TempDir dir;
  EXPECT_EQ(error_of([&] { read_state_dict(dir.file("none.pth")); }),
            "cannot read state dict '" + dir.file("none.pth") + "': no such file");
  EXPECT_TRUE(Contains(error_of([&] { read_state_dict(dir.path()); }), "it is a directory"));
  spit(dir.file("empty.pth"), "");
  EXPECT_TRUE(Contains(error_of([&] { read_state_dict(dir.file("empty.pth")); }),
                       "not a PyTorch zip archive (the file is empty;"));
  spit(dir.file("garbage.pth"), "garbage, not a zip");
  EXPECT_TRUE(Contains(error_of([&] { read_state_dict(dir.file("garbage.pth")); }),
                       "not a PyTorch zip archive (it starts with bytes 67 61 72 62;"));
  spit(dir.file("pk.pth"), "PK\x03\x04 but nothing else");
  EXPECT_TRUE(Contains(error_of([&] { read_state_dict(dir.file("pk.pth")); }),
                       "': not a readable PyTorch zip archive, truncated or corrupt? ("));
  // A zip that is not torch.save's: no folder, no version record.
  spit(dir.file("bin.pkl.pth"), slurp(fixture("bin_protocol2.pkl")));
  EXPECT_TRUE(Contains(error_of([&] { read_state_dict(dir.file("bin.pkl.pth")); }), "not a PyTorch zip archive"));
}

TEST(StateDictRead, TruncatedFilesAreRefused) {
  const std::string data = slurp(fixture("tiny_float32.pth"));
  ASSERT_GT(data.size(), 1000u);
  TempDir dir;
  std::vector<size_t> cuts = {0, 1, 2, 4, 10, 30, 64, data.size() - 22, data.size() - 1};
  for (size_t cut = 97; cut < data.size(); cut += 97) cuts.push_back(cut);
  for (size_t cut : cuts) {
    const std::string path = dir.file("cut_" + std::to_string(cut) + ".pth");
    spit(path, data.substr(0, cut));
    std::string message = error_of([&] { read_state_dict(path); });
    EXPECT_TRUE(Contains(message, "cannot read state dict '" + path + "'")) << "cut at " << cut;
  }
}

// Any single corrupted byte: a DataError or a clean read, never a crash or another exception.
TEST(StateDictRead, CorruptedBytesOnlyEverThrowDataError) {
  const std::string data = slurp(fixture("tiny_float32.pth"));
  TempDir dir;
  const std::string path = dir.file("corrupt.pth");
  int refused = 0;
  for (size_t at = 0; at < data.size(); at += 7) {
    std::string bad = data;
    bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    spit(path, bad);
    try {
      (void)read_state_dict(path);
    } catch (const DataError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 50);
}

// --- hand-made archives ----------------------------------------------------------------------

struct TensorEntry {
  std::string name = "w";
  std::string storage = "FloatStorage";
  std::string key = "0";
  int64_t numel = 6;
  int64_t offset = 0;
  std::vector<int64_t> size = {2, 3};
  std::vector<int64_t> stride = {3, 1};
  bool as_parameter = false;
};

void int_tuple(pickle::Writer& w, const std::vector<int64_t>& values) {
  w.mark();
  for (int64_t v : values) w.integer(v);
  w.tuple_from_mark();
}

// An OrderedDict of tensors as torch.save writes it, built opcode by opcode.
std::string state_pickle(const std::vector<TensorEntry>& entries) {
  pickle::Writer w;
  w.global("collections", "OrderedDict");
  w.empty_tuple();
  w.reduce();
  w.mark();
  for (const auto& e : entries) {
    w.string(e.name);
    if (e.as_parameter) w.global("torch._utils", "_rebuild_parameter");
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.mark();
    w.mark();
    w.string("storage");
    w.global("torch", e.storage);
    w.string(e.key);
    w.string("cuda:0");
    w.integer(e.numel);
    w.tuple_from_mark();
    w.binpersid();
    w.integer(e.offset);
    int_tuple(w, e.size);
    int_tuple(w, e.stride);
    w.boolean(false);
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.tuple_from_mark();
    w.reduce();
    if (e.as_parameter) {
      w.boolean(true);
      w.global("collections", "OrderedDict");
      w.empty_tuple();
      w.reduce();
      w.tuple(3);
      w.reduce();
    }
  }
  w.setitems();
  w.stop();
  return w.take();
}

std::string floats(int64_t n) {
  torch::Tensor t = torch::arange(n, torch::kFloat);
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(n) * 4);
}

void write_zip(const std::string& path, const std::string& pkl,
               const std::vector<std::pair<std::string, std::string>>& records) {
  caffe2::serialize::PyTorchStreamWriter writer(path);
  writer.writeRecord("data.pkl", pkl.data(), pkl.size());
  for (const auto& [name, data] : records) writer.writeRecord(name, data.data(), data.size());
  writer.writeEndOfFile();
}

TEST(StateDictRead, HandMadeArchives) {
  TempDir dir;
  const std::string path = dir.file("hand.pth");
  auto read_with = [&](const std::vector<TensorEntry>& entries,
                       const std::vector<std::pair<std::string, std::string>>& records) {
    write_zip(path, state_pickle(entries), records);
    return error_of([&] { read_state_dict(path); });
  };

  // Valid: a parameter (_rebuild_parameter around the tensor), saved from CUDA, and a view with
  // an offset; both share storage '0'.
  TensorEntry param;
  param.as_parameter = true;
  TensorEntry tail;
  tail.name = "tail";
  tail.offset = 2;
  tail.size = {4};
  tail.stride = {1};
  EXPECT_EQ(read_with({param, tail}, {{"data/0", floats(6)}}), "no error");
  StateDict state = read_state_dict(path);
  ASSERT_EQ(names_of(state), (std::vector<std::string>{"w", "tail"}));
  EXPECT_TRUE(torch::equal(state[0].second, torch::arange(6, torch::kFloat).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(state[1].second, torch::arange(2, 6, torch::kFloat)));

  EXPECT_TRUE(Contains(read_with({TensorEntry{}}, {{"data/0", floats(5)}}),
                       "record 'data/0' holds 20 bytes, but its 6 float32 elements need 24"));
  EXPECT_TRUE(Contains(read_with({TensorEntry{}}, {}), "the archive has no record 'data/0'"));
  EXPECT_TRUE(Contains(read_with({tail, TensorEntry{}}, {{"data/0", floats(6)}}), "no error"));
  tail.size = {5};
  EXPECT_TRUE(Contains(read_with({tail}, {{"data/0", floats(6)}}),
                       "entry 'tail': view (offset 2, size [5], stride [1]) reaches past the end of storage '0' of 6 "
                       "elements"));
  TensorEntry wide;
  wide.stride = {4, 1};
  EXPECT_TRUE(Contains(read_with({wide}, {{"data/0", floats(6)}}), "reaches past the end"));
  TensorEntry negative;
  negative.stride = {-3, 1};
  EXPECT_TRUE(Contains(read_with({negative}, {{"data/0", floats(6)}}), "negative size or stride"));
  TensorEntry mismatch;
  mismatch.stride = {1};
  EXPECT_TRUE(Contains(read_with({mismatch}, {{"data/0", floats(6)}}), "have different lengths"));
  TensorEntry huge;
  huge.size = {int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_TRUE(Contains(read_with({huge}, {{"data/0", floats(6)}}), "overflows 64 bits"));
  tail.size = {4};
  TensorEntry as_long = tail;
  as_long.name = "as_long";
  as_long.storage = "LongStorage";
  EXPECT_TRUE(Contains(read_with({tail, as_long}, {{"data/0", floats(6)}}),
                       "storage '0' is named with different types or sizes (entry 'as_long')"));
  TensorEntry complex;
  complex.storage = "ComplexFloatStorage";
  EXPECT_TRUE(Contains(read_with({complex}, {{"data/0", floats(12)}}),
                       "refusing to load global 'torch.ComplexFloatStorage' at byte"));

  // Not a mapping of tensors.
  auto read_pickle = [&](const std::function<void(pickle::Writer&)>& body) {
    pickle::Writer w;
    body(w);
    w.stop();
    write_zip(path, w.take(), {});
    return error_of([&] { read_state_dict(path); });
  };
  EXPECT_TRUE(Contains(read_pickle([](pickle::Writer& w) { w.empty_list(); }),
                       "expected a dict of tensors at the top level, found list of 0"));
  EXPECT_TRUE(Contains(read_pickle([](pickle::Writer& w) {
                         w.empty_dict();
                         w.integer(1);
                         w.integer(2);
                         w.setitem();
                       }),
                       "a key of the state dict is int 1, not a str"));
  EXPECT_TRUE(Contains(read_pickle([](pickle::Writer& w) {
                         w.empty_dict();
                         w.string("x");
                         w.string("y");
                         w.setitem();
                       }),
                       "entry 'x': it is str 'y', not a tensor"));
  EXPECT_EQ(read_pickle([](pickle::Writer& w) { w.empty_dict(); }), "no error");
}

// --- module_state_dict and loading ------------------------------------------------------------

TEST(ModuleStateDict, FollowsPyTorchOrder) {
  Tiny model;
  EXPECT_EQ(names_of(module_state_dict(*model)), kTinyNames);

  // Own parameters, then own buffers, then children, whatever the registration order.
  struct OrderImpl : torch::nn::Module {
    OrderImpl() {
      register_buffer("buf", torch::zeros({1}));
      register_module("child", torch::nn::Linear(2, 2));
      register_parameter("p", torch::zeros({1}));
      register_parameter("none", torch::Tensor(), /*requires_grad=*/false);
    }
  };
  OrderImpl order;
  StateDict state = module_state_dict(order);
  EXPECT_EQ(names_of(state), (std::vector<std::string>{"p", "buf", "child.weight", "child.bias"}));
  {
    torch::NoGradGuard no_grad;
    state[0].second.fill_(5);  // the module's own tensors, not copies
  }
  EXPECT_EQ(order.named_parameters(false)["p"].item<float>(), 5.0f);
}

TEST(LoadStateDict, LoadsTheFixtureIntoTheLibTorchModule) {
  Tiny model;
  LoadReport report = load_state_dict(*model, fixture("tiny_float32.pth"));
  EXPECT_TRUE(report.missing.empty());
  EXPECT_TRUE(report.unexpected.empty());
  expect_tiny(module_state_dict(*model), torch::kFloat);
}

TEST(LoadStateDict, ConvertsFloat16ToTheModelDtype) {
  Tiny model;
  load_state_dict(*model, fixture("tiny_float16.pth"));
  expect_tiny(module_state_dict(*model), torch::kFloat);
}

TEST(LoadStateDict, FromACheckpointEntry) {
  Tiny model;
  LoadOptions options;
  options.entry = "state_dict_backbone";
  load_state_dict(*model, fixture("checkpoint.pth"), options);
  expect_tiny(module_state_dict(*model), torch::kFloat);
}

TEST(LoadStateDict, StrictErrorsNameEveryProblemAndChangeNothing) {
  const std::string path = fixture("tiny_float32.pth");
  {
    Tiny model(2, /*extra=*/true);
    StateDict before = snapshot(*model);
    EXPECT_EQ(error_of([&] { load_state_dict(*model, path); }),
              "cannot load state dict '" + path +
                  "' into the model: 2 missing keys\n"
                  "  2 missing keys (in the model, not in the file): head.weight, head.bias");
    expect_unchanged(*model, before);
  }
  {
    Tiny model;
    StateDict state = read_state_dict(path);
    state.emplace_back("extra.weight", torch::zeros({1}));
    StateDict before = snapshot(*model);
    EXPECT_EQ(error_of([&] { load_state_dict(*model, state, "mem"); }),
              "cannot load state dict 'mem' into the model: 1 unexpected key\n"
              "  1 unexpected key (in the file, not in the model): extra.weight");
    expect_unchanged(*model, before);
  }
  {
    Tiny model(3);
    StateDict before = snapshot(*model);
    LoadOptions lenient;
    lenient.allow_missing = lenient.allow_unexpected = true;
    std::string expected = "cannot load state dict '" + path +
                           "' into the model: 2 shape mismatches\n"
                           "  2 shape mismatches (file shape vs model shape): fc.weight: file [2, 4], model [3, 4]; "
                           "fc.bias: file [2], model [3]";
    EXPECT_EQ(error_of([&] { load_state_dict(*model, path); }), expected);
    EXPECT_EQ(error_of([&] { load_state_dict(*model, path, lenient); }), expected) << "shapes are never lenient";
    expect_unchanged(*model, before);
  }
  {
    Tiny model;
    StateDict state = read_state_dict(path);
    state[5].second = state[5].second.to(torch::kFloat);  // bn.num_batches_tracked
    state[0].second = state[0].second.to(torch::kLong);   // conv.weight
    StateDict before = snapshot(*model);
    EXPECT_EQ(error_of([&] { load_state_dict(*model, state, "mem"); }),
              "cannot load state dict 'mem' into the model: 2 dtype mismatches\n"
              "  2 dtype mismatches (integer, bool and floating tensors do not convert into each other): "
              "conv.weight: file int64, model float32; bn.num_batches_tracked: file float32, model int64");
    expect_unchanged(*model, before);
  }
  {
    Tiny model;
    StateDict state = read_state_dict(path);
    state.push_back(state[0]);
    EXPECT_TRUE(
        Contains(error_of([&] { load_state_dict(*model, state, "mem"); }), "the key 'conv.weight' appears twice"));
  }
}

TEST(LoadStateDict, AllowFlagsReportWhatTheySkipped) {
  Tiny model(2, /*extra=*/true);
  StateDict state = read_state_dict(fixture("tiny_float32.pth"));
  state.emplace_back("extra.weight", torch::zeros({1}));
  LoadOptions options;
  options.allow_missing = true;
  EXPECT_TRUE(Contains(error_of([&] { load_state_dict(*model, state, "mem", options); }),
                       "1 unexpected key\n  1 unexpected key"));
  options.allow_unexpected = true;
  torch::Tensor head_before = model->head->weight.clone();
  LoadReport report = load_state_dict(*model, state, "mem", options);
  EXPECT_EQ(report.missing, (std::vector<std::string>{"head.weight", "head.bias"}));
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"extra.weight"});
  EXPECT_TRUE(torch::equal(model->head->weight, head_before));
  EXPECT_TRUE(torch::equal(model->fc->weight, pattern({2, 4}, 6, torch::kFloat)));
}

TEST(LoadStateDict, ListsTheFirstTenNamesOfEachProblem) {
  struct ManyImpl : torch::nn::Module {
    ManyImpl() {
      for (int i = 0; i < 15; ++i) register_parameter((i < 10 ? "p0" : "p") + std::to_string(i), torch::zeros({1}));
    }
  };
  ManyImpl model;
  std::string message = error_of([&] { load_state_dict(model, fixture("tiny_float32.pth")); });
  EXPECT_TRUE(Contains(message, "15 missing keys, 8 unexpected keys\n"));
  EXPECT_TRUE(Contains(message,
                       "15 missing keys (in the model, not in the file): p00, p01, p02, p03, p04, p05, p06, "
                       "p07, p08, p09, ... and 5 more\n"));
  EXPECT_FALSE(Contains(message, "p10"));
}

TEST(LoadStateDict, KeepsRequiresGradDeviceAndMemoryFormat) {
  Tiny model;
  model->conv->weight.set_data(model->conv->weight.contiguous(torch::MemoryFormat::ChannelsLast));
  model->bn->weight.set_requires_grad(false);
  const void* conv_data = model->conv->weight.data_ptr();
  load_state_dict(*model, fixture("tiny_float32.pth"));
  EXPECT_TRUE(torch::equal(model->conv->weight, pattern({4, 3, 3, 3}, 0, torch::kFloat)));
  EXPECT_TRUE(torch::equal(model->bn->weight, pattern({4}, 1, torch::kFloat)));
  EXPECT_TRUE(model->conv->weight.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_FALSE(model->conv->weight.is_contiguous());
  EXPECT_EQ(model->conv->weight.data_ptr(), conv_data) << "copied into the existing tensor";
  EXPECT_TRUE(model->conv->weight.requires_grad());
  EXPECT_FALSE(model->bn->weight.requires_grad());
  EXPECT_TRUE(model->fc->weight.requires_grad());
}

// --- writing -----------------------------------------------------------------------------------

// The entries check_state_dict.py expects (keep in sync with its EXPECTED_SPECS).
StateDict interop_state() {
  struct Spec {
    const char* name;
    torch::ScalarType dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Spec> specs = {
      {"layer.weight", torch::kFloat, {3, 4}},
      {"layer.bias", torch::kFloat, {3}},
      {"bn.num_batches_tracked", torch::kLong, {}},
      {"half.weight", torch::kHalf, {2, 2}},
      {"bf16", torch::kBFloat16, {3}},
      {"f64", torch::kDouble, {2}},
      {"mask", torch::kBool, {4}},
      {"i8", torch::kChar, {3}},
      {"u8", torch::kByte, {2}},
      {"i16", torch::kShort, {2}},
      {"i32", torch::kInt, {2}},
      {"transposed", torch::kFloat, {4, 3}},
      {"empty", torch::kFloat, {0, 5}},
      {"conv.weight", torch::kFloat, {2, 3, 2, 2}},
  };
  StateDict out;
  for (size_t i = 0; i < specs.size(); ++i) {
    const Spec& s = specs[i];
    int64_t index = static_cast<int64_t>(i);
    torch::Tensor t = std::string(s.name) == "transposed" ? pattern({3, 4}, index, s.dtype).t()  // not contiguous
                                                          : pattern(s.shape, index, s.dtype);
    out.emplace_back(s.name, t);
  }
  return out;
}

TEST(StateDictWrite, RoundTripInCpp) {
  TempDir dir;
  const std::string path = dir.file("rich.pth");
  StateDict written = interop_state();
  ASSERT_FALSE(written[11].second.is_contiguous());
  write_state_dict(written, path);
  StateDict read = read_state_dict(path);
  ASSERT_EQ(names_of(read), names_of(written));
  for (size_t i = 0; i < read.size(); ++i) {
    SCOPED_TRACE(read[i].first);
    EXPECT_EQ(read[i].second.scalar_type(), written[i].second.scalar_type());
    EXPECT_EQ(read[i].second.sizes(), written[i].second.sizes());
    EXPECT_TRUE(torch::equal(read[i].second, written[i].second));
  }
  EXPECT_EQ(dir.list(), std::vector<std::string>{"rich.pth"});

  // A module: save, then load into a fresh one.
  torch::manual_seed(7);
  Tiny source;
  source->bn->running_mean.uniform_();
  source->bn->num_batches_tracked.fill_(42);
  save_state_dict(*source, dir.file("tiny.pth"));
  Tiny target;
  load_state_dict(*target, dir.file("tiny.pth"));
  StateDict a = module_state_dict(*source), b = module_state_dict(*target);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;

  write_state_dict({}, dir.file("empty.pth"));
  EXPECT_TRUE(read_state_dict(dir.file("empty.pth")).empty());
}

struct CommandResult {
  int status;
  std::string output;
};

CommandResult run(const std::string& command) {
  CommandResult result{-1, ""};
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// C++ writes, PyTorch reads: check_state_dict.py torch.load()s the file (also with
// weights_only=True) and compares every name, dtype, shape and value.
TEST(StateDictInterop, CppSaveIsReadByPython) {
  TempDir dir;
  const std::string path = dir.file("from_cpp.pth");
  write_state_dict(interop_state(), path);
  const std::string python = FACETRAIN_TEST_PYTHON;
  CommandResult result = run(python + " " + FACETRAIN_SOURCE_DIR + "/tests/python/check_state_dict.py " + path);
  if (result.status == 3 || result.status == 127) {
    FAIL() << python << " has no torch (or does not exist); run scripts/setup.sh --tests to install Debian's "
           << "python3-torch, or configure with -DFACETRAIN_TEST_PYTHON=<a python with torch>:\n"
           << result.output;
  }
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_TRUE(Contains(result.output, "14 tensors as expected")) << result.output;
}

TEST(StateDictWrite, FailuresLeaveNoTemporaryAndKeepTheOldFile) {
  TempDir dir;
  StateDict state = {{"w", torch::ones({3})}};

  const std::string nowhere = dir.file("missing/model.pth");
  std::string message = error_of([&] { write_state_dict(state, nowhere); });
  EXPECT_TRUE(Contains(message, "cannot write state dict '" + nowhere + "': cannot create '" + nowhere + ".tmp."));
  EXPECT_TRUE(Contains(message, "No such file or directory"));

  fs::create_directory(dir.file("a_directory"));
  message = error_of([&] { write_state_dict(state, dir.file("a_directory")); });
  EXPECT_TRUE(Contains(message, "cannot write state dict '" + dir.file("a_directory") + "': renaming"));
  EXPECT_TRUE(fs::is_directory(dir.file("a_directory")));
  EXPECT_EQ(dir.list(), std::vector<std::string>{"a_directory"});

  // A write that fails half-way (the file-size limit stops it after 64 KiB) keeps the old file.
  const std::string path = dir.file("model.pth");
  spit(path, "the previous checkpoint");
  StateDict big = {{"w", torch::ones({100000})}};  // 400 KB
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 64 * 1024;
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  message = error_of([&] { write_state_dict(big, path); });
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(Contains(message, "cannot write state dict '" + path + "': writing '" + path + ".tmp."));
  EXPECT_TRUE(Contains(message, "File too large"));
  EXPECT_EQ(slurp(path), "the previous checkpoint");
  EXPECT_EQ(dir.list(), (std::vector<std::string>{"a_directory", "model.pth"}));

  // A successful write replaces it.
  write_state_dict(big, path);
  EXPECT_TRUE(torch::equal(read_state_dict(path)[0].second, big[0].second));
  EXPECT_EQ(dir.list(), (std::vector<std::string>{"a_directory", "model.pth"}));
}

TEST(StateDictWrite, RefusesBadInputBeforeTouchingAnyFile) {
  TempDir dir;
  const std::string path = dir.file("bad.pth");
  auto t = torch::zeros({2});
  EXPECT_THROW(write_state_dict({{"", t}}, path), ArgumentError);
  EXPECT_THROW(write_state_dict({{"a", t}, {"a", t}}, path), ArgumentError);
  EXPECT_THROW(write_state_dict({{"a", torch::Tensor()}}, path), ArgumentError);
  EXPECT_THROW(write_state_dict({{"a", torch::zeros({2}, torch::kComplexFloat)}}, path), ArgumentError);
  EXPECT_THROW(write_state_dict({{"a", torch::eye(2).to_sparse()}}, path), ArgumentError);
  EXPECT_TRUE(dir.list().empty());
}

}  // namespace
}  // namespace facetrain::io
