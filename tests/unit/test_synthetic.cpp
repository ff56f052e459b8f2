// Synthetic faces (data/synthetic.h): determinism, the files `data synth` writes (MS1M layout,
// property, validation pairs) independent of the thread count, option checks, and the quality
// bar: raw pixels verify the validation pairs poorly while identities stay distinct.
#include "facetrain/data/synthetic.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "data_testing.h"
#include "facetrain/config/reader.h"
#include "facetrain/core/error.h"
#include "facetrain/data/recordio.h"

namespace fd = facetrain::data;
namespace fs = std::filesystem;

namespace {

using facetrain::testing::slurp;

bool same_pixels(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

cv::Mat decode(const std::string& jpeg) {
  return cv::imdecode(std::vector<uint8_t>(jpeg.begin(), jpeg.end()), cv::IMREAD_COLOR);
}

// A fresh folder under the test temp dir, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::path(::testing::TempDir()) / ("facetrain_synth_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

fd::SynthDatasetOptions small_options(const fs::path& dir) {
  fd::SynthDatasetOptions o;
  o.out_dir = dir.string();
  o.identities = 5;
  o.images_per_identity = 4;
  o.val_identities = 3;
  o.val_pairs = 6;
  o.seed = 11;
  o.threads = 1;
  return o;
}

TEST(SyntheticFaces, RenderIsAPureFunctionOfSeedIdentityVariant) {
  const fd::SyntheticFaces a(7), b(7);
  const cv::Mat img = a.render(3, 1);
  EXPECT_EQ(img.rows, 112);
  EXPECT_EQ(img.cols, 112);
  EXPECT_EQ(img.type(), CV_8UC3);
  EXPECT_TRUE(same_pixels(img, b.render(3, 1)));
  EXPECT_TRUE(same_pixels(img, a.render(3, 1)));
  EXPECT_EQ(a.render_jpeg(3, 1), b.render_jpeg(3, 1));
  EXPECT_EQ(a.identity(3).params, b.identity(3).params);

  EXPECT_FALSE(same_pixels(img, a.render(3, 2)));                      // another variant
  EXPECT_FALSE(same_pixels(img, a.render(4, 1)));                      // another identity
  EXPECT_FALSE(same_pixels(img, fd::SyntheticFaces(8).render(3, 1)));  // another seed
  EXPECT_NE(a.identity(3).params, a.identity(4).params);
  EXPECT_NE(a.identity(3).params, fd::SyntheticFaces(8).identity(3).params);
}

TEST(SyntheticFaces, IdentityParametersAreInUnitRange) {
  const fd::SyntheticFaces faces(0);
  for (uint64_t id : {uint64_t{0}, uint64_t{1}, fd::kSyntheticValidationIdBase}) {
    const auto p = faces.identity(id).params;
    ASSERT_GE(p.size(), 30u);
    for (double v : p) {
      EXPECT_GE(v, 0.0);
      EXPECT_LT(v, 1.0);
    }
  }
}

TEST(SyntheticFaces, JpegDecodesToTheRenderedFace) {
  const fd::SyntheticFaces faces(5);
  const cv::Mat img = faces.render(2, 9);
  const cv::Mat back = decode(faces.render_jpeg(2, 9));
  ASSERT_EQ(back.rows, 112);
  ASSERT_EQ(back.cols, 112);
  // JPEG at quality >= 40 stays close to the original on average.
  EXPECT_LT(cv::norm(img, back, cv::NORM_L1) / (112.0 * 112 * 3), 12.0);
}

TEST(SyntheticDataset, OutputDoesNotDependOnThreads) {
  TempDir one("threads1"), three("threads3");
  auto o1 = small_options(one.path());
  auto o3 = small_options(three.path());
  o3.threads = 3;
  const auto v1 = fd::write_synthetic_dataset(o1);
  const auto v3 = fd::write_synthetic_dataset(o3);
  for (const char* name : {"train.rec", "train.idx", "property"}) {
    EXPECT_EQ(slurp(one.path() / name), slurp(three.path() / name)) << name;
  }
  EXPECT_EQ(v1.images, v3.images);
  EXPECT_EQ(v1.issame, v3.issame);
}

TEST(SyntheticDataset, WritesInsightfaceMs1mLayout) {
  TempDir dir("layout");
  auto o = small_options(dir.path());
  std::vector<std::pair<int64_t, int64_t>> calls;
  o.progress = [&](int64_t done, int64_t total) { calls.emplace_back(done, total); };
  const auto val = fd::write_synthetic_dataset(o);

  const int64_t n = o.identities * o.images_per_identity, k = o.identities;
  fd::RecordIOReader rec((dir.path() / "train.rec").string());
  ASSERT_TRUE(rec.has_index());
  EXPECT_EQ(rec.size(), static_cast<size_t>(1 + n + k));
  EXPECT_EQ(rec.keys().front(), 0u);  // meta record written first
  const auto layout = fd::detect_layout(rec);
  EXPECT_EQ(layout.kind, fd::RecordLayout::kMs1m);
  EXPECT_EQ(layout.num_images, n);
  EXPECT_EQ(layout.num_classes, k);
  EXPECT_FALSE(layout.meta_after_images);
  ASSERT_EQ(layout.class_ranges.size(), static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) {
    EXPECT_EQ(layout.class_ranges[c].first, static_cast<uint64_t>(1 + c * o.images_per_identity));
    EXPECT_EQ(layout.class_ranges[c].second, static_cast<uint64_t>(1 + (c + 1) * o.images_per_identity));
  }
  const auto meta = rec.read(0);
  EXPECT_TRUE(meta.image.empty());
  EXPECT_EQ(meta.header.labels, (std::vector<float>{float(n + 1), float(n + 1 + k)}));
  const fd::SyntheticFaces faces(o.seed);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t key = static_cast<uint64_t>(i + 1);
    const auto r = rec.read(key);
    EXPECT_EQ(r.header.flag, 2u);
    EXPECT_EQ(r.header.id, key);
    EXPECT_EQ(r.header.labels, (std::vector<float>{float(i / o.images_per_identity), 1.0f}));
    EXPECT_EQ(r.image, faces.render_jpeg(i / o.images_per_identity, i % o.images_per_identity)) << key;
  }
  for (int64_t c = 0; c < k; ++c) {
    const auto r = rec.read(static_cast<uint64_t>(n + 1 + c));
    EXPECT_TRUE(r.image.empty());
    EXPECT_EQ(r.header.id, static_cast<uint64_t>(n + 1 + c));
  }
  EXPECT_EQ(slurp(dir.path() / "property"), "5,112,112\n");

  ASSERT_EQ(val.issame.size(), static_cast<size_t>(o.val_pairs));
  ASSERT_EQ(val.images.size(), static_cast<size_t>(2 * o.val_pairs));
  EXPECT_EQ(std::count(val.issame.begin(), val.issame.end(), true), o.val_pairs / 2);
  for (const auto& jpeg : val.images) {
    const cv::Mat img = decode(jpeg);
    EXPECT_EQ(img.rows, 112);
    EXPECT_EQ(img.cols, 112);
  }
  // Genuine pairs show two different images of one identity.
  for (size_t i = 0; i < val.issame.size(); ++i) EXPECT_NE(val.images[2 * i], val.images[2 * i + 1]);

  ASSERT_EQ(calls.size(), static_cast<size_t>(n + 2 * o.val_pairs));
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].first, static_cast<int64_t>(i + 1));
    EXPECT_EQ(calls[i].second, n + 2 * o.val_pairs);
  }
  // Nothing but the three files (no temporaries left).
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 3);
}

void expect_argument_error(const fd::SynthDatasetOptions& o, const std::string& key) {
  try {
    fd::write_synthetic_dataset(o);
    ADD_FAILURE() << "no error for " << key;
  } catch (const facetrain::ArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(SyntheticDataset, InvalidOptionsAreArgumentErrorsNamingTheKey) {
  TempDir dir("bad");
  auto o = small_options(dir.path());
  auto bad = o;
  bad.identities = 1;
  expect_argument_error(bad, "identities");
  bad = o;
  bad.images_per_identity = 0;
  expect_argument_error(bad, "images_per_identity");
  bad = o;
  bad.val_identities = 1;
  expect_argument_error(bad, "val_identities");
  bad = o;
  bad.val_pairs = 7;
  expect_argument_error(bad, "val_pairs");
  bad = o;
  bad.val_pairs = 0;
  expect_argument_error(bad, "val_pairs");
  bad = o;
  bad.threads = 0;
  expect_argument_error(bad, "threads");
  bad = o;
  bad.identities = 1 << 20;
  bad.images_per_identity = 100;
  expect_argument_error(bad, "identities");
  EXPECT_FALSE(fs::exists(dir.path()));  // checked before anything is created
}

TEST(SyntheticDataset, UnwritableFolderIsADataErrorNamingIt) {
  TempDir dir("unwritable");
  fs::create_directories(dir.path());
  std::ofstream(dir.path() / "file") << "x";
  auto o = small_options(dir.path() / "file" / "sub");
  try {
    fd::write_synthetic_dataset(o);
    ADD_FAILURE() << "no error";
  } catch (const facetrain::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(o.out_dir), std::string::npos) << e.what();
  }
}

TEST(SyntheticOptions, ReadsProblemsDescribe) {
  auto doc = facetrain::config::Document::from_string("identities: 7\nimages_per_identity: 3\nseed: 9\n");
  facetrain::config::Diagnostics diag;
  facetrain::config::Section root(doc, diag);
  fd::SyntheticOptions o;
  o.read(root);
  root.finish();
  EXPECT_TRUE(diag.empty());
  EXPECT_EQ(o.identities, 7);
  EXPECT_EQ(o.images_per_identity, 3);
  EXPECT_EQ(o.seed, 9u);
  EXPECT_TRUE(o.problems().empty());
  EXPECT_EQ(o.describe(), "identities=7, images_per_identity=3, seed=9");

  o.identities = 1;
  o.images_per_identity = 0;
  const auto problems = o.problems();
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].key, "identities");
  EXPECT_EQ(problems[1].key, "images_per_identity");

  auto neg = facetrain::config::Document::from_string("seed: -1\n");
  facetrain::config::Diagnostics diag2;
  facetrain::config::Section root2(neg, diag2);
  fd::SyntheticOptions o2;
  o2.read(root2);
  ASSERT_EQ(diag2.issues().size(), 1u);
  EXPECT_EQ(diag2.issues()[0].key, "seed");
  EXPECT_EQ(o2.seed, 0u);
}

// --- quality --------------------------------------------------------------------------------

// Best-threshold verification accuracy of similarity scores (higher = more alike).
double best_threshold_accuracy(const std::vector<double>& scores, const std::vector<bool>& same) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  const double n = static_cast<double>(scores.size());
  const int64_t negatives = std::count(same.begin(), same.end(), false);
  double best = negatives / n;  // threshold above every score
  int64_t tp = 0, fp = 0;
  for (size_t i : order) {
    (same[i] ? tp : fp) += 1;
    best = std::max(best, (tp + negatives - fp) / n);
  }
  return best;
}

std::vector<double> gray64(const std::string& jpeg, bool centre) {
  cv::Mat gray, small;
  cv::cvtColor(decode(jpeg), gray, cv::COLOR_BGR2GRAY);
  cv::resize(gray, small, cv::Size(64, 64), 0, 0, cv::INTER_AREA);
  std::vector<double> v(small.begin<uint8_t>(), small.end<uint8_t>());
  if (centre) {
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    for (double& x : v) x -= mean;
  }
  return v;
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / std::sqrt(na * nb + 1e-12);
}

TEST(SyntheticQuality, RawPixelsVerifyPoorly) {
  TempDir dir("quality");
  fd::SynthDatasetOptions o;
  o.out_dir = dir.path().string();
  o.identities = 2;
  o.images_per_identity = 1;
  o.val_identities = 50;
  o.val_pairs = 300;
  o.threads = 2;
  const auto val = fd::write_synthetic_dataset(o);
  for (bool centre : {false, true}) {
    std::vector<double> scores;
    for (size_t i = 0; i < val.issame.size(); ++i) {
      scores.push_back(cosine(gray64(val.images[2 * i], centre), gray64(val.images[2 * i + 1], centre)));
    }
    const double acc = best_threshold_accuracy(scores, val.issame);
    std::printf("raw-pixel cosine (64x64 gray%s), best threshold: %.4f over %zu pairs\n",
                centre ? ", mean-centred" : "", acc, scores.size());
    EXPECT_LT(acc, 0.80);
  }
}

TEST(SyntheticQuality, IdentitiesAreDistinct) {
  // Every parameter spans a visible range over [0, 1] (a few pixels for the geometric ones,
  // e.g. 7 px of eye spacing or 13 px of hairline; tens of grey levels for the colours). A
  // distance of 0.75 is three quarters of one parameter's whole range, or 0.12 on each of 40
  // (about a pixel everywhere): either way a visible difference at 112x112. Random vectors in
  // 41 dimensions lie about 2.6 apart, so 100 identities clear it easily.
  const fd::SyntheticFaces faces(0);
  std::vector<std::vector<double>> params;
  for (uint64_t id = 0; id < 100; ++id) params.push_back(faces.identity(id).params);
  double closest = 1e9;
  for (size_t i = 0; i < params.size(); ++i) {
    for (size_t j = i + 1; j < params.size(); ++j) {
      double d = 0;
      for (size_t k = 0; k < params[i].size(); ++k) d += (params[i][k] - params[j][k]) * (params[i][k] - params[j][k]);
      closest = std::min(closest, std::sqrt(d));
    }
  }
  std::printf("closest pair of 100 identities: parameter distance %.3f\n", closest);
  EXPECT_GT(closest, 0.75);
}

}  // namespace
