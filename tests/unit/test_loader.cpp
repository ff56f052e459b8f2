// The loader (data/loader.h): normalisation, determinism whatever the threads, shuffling,
// sharding, ragged batches, resume, bad samples, augmentations, bounded prefetch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <set>
#include <thread>

#include "data_testing.h"
#include "facetrain/core/error.h"
#include "facetrain/data/loader.h"

namespace fd = facetrain::data;

namespace {

/// Image i: a PNG whose pixel (x, y) is a function of (i, x, y) (lossless, so exact checks hold);
/// label i % classes. Indices in `bad` are undecodable; `wrong_size` are 100x100.
class FakeDataset : public fd::Dataset {
 public:
  explicit FakeDataset(int64_t n, int64_t classes = 5) : n_(n), classes_(classes) {}
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return classes_; }
  fd::Sample get(int64_t index) const override {
    ++gets;
    fd::Sample s;
    s.label = index % classes_;
    if (bad.count(index)) {
      s.encoded = "not an image";
      return s;
    }
    int side = wrong_size.count(index) ? 100 : 112;
    std::vector<uint8_t> out;
    cv::imencode(".png", image(index, side), out);
    s.encoded.assign(out.begin(), out.end());
    return s;
  }
  std::string where(int64_t index) const override { return "fake " + std::to_string(index); }
  std::string describe() const override { return "fake"; }

  static cv::Mat image(int64_t index, int side = 112) {
    cv::Mat m(side, side, CV_8UC3);
    for (int y = 0; y < side; ++y) {
      for (int x = 0; x < side; ++x) {
        m.at<cv::Vec3b>(y, x) =
            cv::Vec3b(static_cast<uint8_t>((index * 7 + x) % 256), static_cast<uint8_t>((index * 13 + y) % 256),
                      static_cast<uint8_t>((index + x * y) % 256));
      }
    }
    return m;
  }

  std::set<int64_t> bad, wrong_size;
  mutable std::atomic<int64_t> gets{0};

 private:
  int64_t n_, classes_;
};

fd::LoaderOptions options(int64_t batch, int64_t workers) {
  fd::LoaderOptions o;
  o.batch_size = batch;
  o.workers = workers;
  o.seed = 11;
  return o;
}

std::vector<fd::Batch> epoch(fd::Loader& loader, int64_t e, int64_t step = 0) {
  loader.start_epoch(e, step);
  std::vector<fd::Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

void expect_same(const std::vector<fd::Batch>& a, const std::vector<fd::Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].step, b[i].step);
    EXPECT_EQ(a[i].indices, b[i].indices) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].labels, b[i].labels)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << i;
  }
}

std::string error_of(const std::function<void()>& f) { return facetrain::testing::error_message(f); }

}  // namespace

TEST(LoaderDecode, NormalisesRgbAndMirrors) {
  cv::Mat bgr = FakeDataset::image(3);
  std::vector<uint8_t> png;
  cv::imencode(".png", bgr, png);
  std::string bytes(png.begin(), png.end());
  std::vector<float> plain(3 * 112 * 112), mirrored(3 * 112 * 112);
  fd::decode_to_chw(bytes, false, plain.data(), "x");
  fd::decode_to_chw(bytes, true, mirrored.data(), "x");
  auto norm = [](int v) { return (static_cast<float>(v) / 255.0f - 0.5f) / 0.5f; };
  for (int y : {0, 17, 111}) {
    for (int x : {0, 50, 111}) {
      cv::Vec3b px = bgr.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c) {  // plane 0 is red: BGR pixel channel 2
        EXPECT_EQ(plain[static_cast<size_t>(c * 12544 + y * 112 + x)], norm(px[2 - c]));
        EXPECT_EQ(mirrored[static_cast<size_t>(c * 12544 + y * 112 + (111 - x))], norm(px[2 - c]));
      }
    }
  }
  EXPECT_EQ(norm(0), -1.0f);
  EXPECT_EQ(norm(255), 1.0f);
  EXPECT_EQ(error_of([&] { fd::decode_to_chw("garbage", false, plain.data(), "f.rec key 3"); }),
            "f.rec key 3: cannot decode the image (7 bytes)");
  EXPECT_EQ(error_of([&] { fd::decode_to_chw("", false, plain.data(), "f.rec key 4"); }), "f.rec key 4: empty image");
}

TEST(Loader, SameBatchesWhateverTheWorkers) {
  auto ds = std::make_shared<FakeDataset>(53);
  std::vector<fd::Batch> reference;
  for (int64_t workers : {1, 2, 4}) {
    auto o = options(8, workers);
    o.drop_last = false;
    o.prefetch = 2;
    fd::Loader loader(ds, o);
    auto batches = epoch(loader, 1);
    ASSERT_EQ(batches.size(), 7u);
    if (reference.empty()) {
      reference = std::move(batches);
    } else {
      expect_same(reference, batches);
    }
  }
  // Labels and images belong to the indices.
  const auto& b = reference[2];
  for (int64_t row = 0; row < 8; ++row) {
    int64_t index = b.indices[static_cast<size_t>(row)];
    EXPECT_EQ(b.labels[row].item<int64_t>(), index % 5);
    std::vector<float> want(3 * 112 * 112), want_flipped(3 * 112 * 112);
    std::vector<uint8_t> png;
    cv::imencode(".png", FakeDataset::image(index), png);
    fd::decode_to_chw(std::string(png.begin(), png.end()), false, want.data(), "");
    fd::decode_to_chw(std::string(png.begin(), png.end()), true, want_flipped.data(), "");
    auto got = b.images[row].contiguous();
    auto plain = torch::from_blob(want.data(), {3, 112, 112});
    auto flipped = torch::from_blob(want_flipped.data(), {3, 112, 112});
    EXPECT_TRUE(torch::equal(got, plain) || torch::equal(got, flipped)) << row;
  }
}

TEST(Loader, ShufflesEveryEpochAndCoversTheDataset) {
  auto ds = std::make_shared<FakeDataset>(20);
  auto o = options(20, 2);
  fd::Loader loader(ds, o);
  auto e0 = loader.epoch_indices(0), e1 = loader.epoch_indices(1);
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), 20u);
  EXPECT_EQ(std::set<int64_t>(e1.begin(), e1.end()).size(), 20u);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, fd::Loader(ds, o).epoch_indices(0));  // a function of (seed, epoch)
  o.seed = 12;
  EXPECT_NE(e0, fd::Loader(ds, o).epoch_indices(0));
  o.shuffle = false;
  auto ordered = fd::Loader(ds, o).epoch_indices(3);
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(ordered[static_cast<size_t>(i)], i);

  // Flips are drawn per sample: about half of a large epoch is mirrored.
  auto flips = options(20, 1);
  flips.shuffle = false;
  fd::Loader flip_loader(ds, flips);
  auto batches = epoch(flip_loader, 0);
  int mirrored = 0;
  for (int64_t row = 0; row < 20; ++row) {
    std::vector<float> plain(3 * 112 * 112);
    std::vector<uint8_t> png;
    cv::imencode(".png", FakeDataset::image(row), png);
    fd::decode_to_chw(std::string(png.begin(), png.end()), false, plain.data(), "");
    if (!torch::equal(batches[0].images[row], torch::from_blob(plain.data(), {3, 112, 112}))) ++mirrored;
  }
  EXPECT_GT(mirrored, 3);
  EXPECT_LT(mirrored, 17);
}

TEST(Loader, RanksAreDealtTheGlobalBatchesOfOneProcess) {
  // 10 samples, 3 ranks of batch 2 (global batch 6), with augmentation: each step's batches of the
  // ranks, concatenated in rank order, are one process's batch of 6, images and all.
  auto ds = std::make_shared<FakeDataset>(10);
  for (bool drop_last : {true, false}) {
    auto one = options(6, 1);
    one.drop_last = drop_last;
    one.augment.crop = 0.5;
    fd::Loader whole(ds, one);
    auto expect = epoch(whole, 4);
    ASSERT_EQ(expect.size(), drop_last ? 1u : 2u);
    std::vector<std::vector<fd::Batch>> ranks;
    for (int64_t rank = 0; rank < 3; ++rank) {
      auto o = options(2, 2);
      o.drop_last = drop_last;
      o.augment.crop = 0.5;
      o.world_size = 3;
      o.rank = rank;
      fd::Loader loader(ds, o);
      EXPECT_EQ(loader.steps_per_epoch(), drop_last ? 1 : 2);
      EXPECT_EQ(loader.samples_per_rank(), drop_last ? 2 : 4);
      ranks.push_back(epoch(loader, 4));
      EXPECT_EQ(static_cast<int64_t>(loader.epoch_indices(4).size()), loader.samples_per_rank());
    }
    for (size_t step = 0; step < expect.size(); ++step) {
      std::vector<int64_t> indices;
      std::vector<torch::Tensor> images, labels;
      int64_t valid = 0;
      for (const auto& r : ranks) {
        const auto& batch = r.at(step);
        indices.insert(indices.end(), batch.indices.begin(), batch.indices.end());
        images.push_back(batch.images);
        labels.push_back(batch.labels);
        valid += batch.valid;
      }
      EXPECT_EQ(indices, expect[step].indices) << "step " << step;
      EXPECT_TRUE(torch::equal(torch::cat(images), expect[step].images)) << "step " << step;
      EXPECT_TRUE(torch::equal(torch::cat(labels), expect[step].labels)) << "step " << step;
      EXPECT_EQ(valid, expect[step].valid) << "step " << step;
    }
    if (!drop_last) {
      // The last global batch has 4 real samples, then the epoch's first two again: rank 0 gets
      // 2 real, rank 1 the other 2, rank 2 only padding.
      EXPECT_EQ(ranks[0][1].valid, 2);
      EXPECT_EQ(ranks[1][1].valid, 2);
      EXPECT_EQ(ranks[2][1].valid, 0);
      EXPECT_EQ(ranks[2][1].indices, (std::vector<int64_t>{expect[0].indices[0], expect[0].indices[1]}));
    }
  }

  auto o = options(4, 1);
  o.world_size = 3;
  o.rank = 1;
  EXPECT_NE(error_of([&] {
              fd::Loader(ds, o);
            }).find("the global batch (batch_size 4 x 3 ranks = 12) is larger than the 10 samples of an epoch"),
            std::string::npos);
  o.batch_size = 2;
  o.rank = 3;
  EXPECT_NE(error_of([&] { fd::Loader(ds, o); }).find("rank must be in [0, world_size = 3), got 3"), std::string::npos);
  EXPECT_NE(error_of([&] {
              fd::Loader(std::make_shared<FakeDataset>(2), options(1, 1)).start_epoch(0, 3);
            }).find("step 3 is outside [0, 2]"),
            std::string::npos);
}

TEST(Loader, ResumesMidEpochExactly) {
  auto ds = std::make_shared<FakeDataset>(40);
  auto o = options(4, 2);
  o.augment.crop = 0.5;
  o.augment.photometric = 0.5;
  fd::Loader full(ds, o);
  auto all = epoch(full, 2);
  ASSERT_EQ(all.size(), 10u);

  fd::Loader first(ds, o);
  first.start_epoch(2);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(first.next());
  auto at = first.position();
  EXPECT_EQ(at.epoch, 2);
  EXPECT_EQ(at.step, 6);

  fd::Loader resumed(ds, o);
  auto rest = epoch(resumed, at.epoch, at.step);
  expect_same(std::vector<fd::Batch>(all.begin() + 6, all.end()), rest);
  EXPECT_EQ(resumed.position().epoch, 3);  // an epoch read to its end continues with the next
  EXPECT_EQ(resumed.position().step, 0);

  // Starting another epoch in the middle of one stops the workers cleanly.
  first.start_epoch(3);
  EXPECT_EQ(first.next()->step, 0);
}

TEST(Loader, BadSamplesFailOrAreSkippedDeterministically) {
  auto ds = std::make_shared<FakeDataset>(30);
  ds->bad = {7, 17};
  ds->wrong_size = {23};
  auto o = options(5, 2);
  o.shuffle = false;
  {
    fd::Loader loader(ds, o);
    loader.start_epoch(0);
    EXPECT_EQ(loader.next()->step, 0);  // indices 0..4 are fine
    EXPECT_EQ(error_of([&] { loader.next(); }), "fake 7: cannot decode the image (12 bytes)");
  }
  {
    o.shuffle = true;
    auto sized = std::make_shared<FakeDataset>(30);
    sized->wrong_size = {23};
    fd::Loader loader(sized, o);
    auto order = loader.epoch_indices(0);
    auto at = std::find(order.begin(), order.end(), 23) - order.begin();
    loader.start_epoch(0, at / 5);
    EXPECT_EQ(error_of([&] {
                while (loader.next()) {
                }
              }),
              "fake 23: the image is 100x100, expected aligned 112x112 faces (see `facetrain data align`)");
  }
  o.on_error = fd::OnError::kSkip;
  std::vector<fd::Batch> reference;
  for (int64_t workers : {1, 3}) {
    o.workers = workers;
    fd::Loader loader(ds, o);
    auto batches = epoch(loader, 0);
    ASSERT_EQ(batches.size(), 6u);
    EXPECT_EQ(loader.skipped(), 3);
    for (const auto& b : batches) {
      EXPECT_EQ(b.images.size(0), 5);
      for (int64_t index : b.indices) EXPECT_TRUE(index != 7 && index != 17 && index != 23) << index;
      for (int64_t row = 0; row < 5; ++row) EXPECT_EQ(b.labels[row].item<int64_t>(), b.indices[row] % 5);
    }
    if (reference.empty()) {
      reference = std::move(batches);
    } else {
      expect_same(reference, batches);
    }
  }
  // A dataset with nothing usable gives up instead of looping forever.
  auto hopeless = std::make_shared<FakeDataset>(4);
  hopeless->bad = {0, 1, 2, 3};
  o.batch_size = 2;
  fd::Loader loader(hopeless, o);
  EXPECT_NE(error_of([&] { epoch(loader, 0); }).find("100 samples in a row could not be used"), std::string::npos);
}

TEST(Loader, AugmentationsDoWhatTheySay) {
  auto ds = std::make_shared<FakeDataset>(16);
  auto o = options(16, 2);
  o.shuffle = false;
  o.augment.flip = false;
  auto plain = epoch(*std::make_unique<fd::Loader>(ds, o), 0)[0].images;

  auto gray = o;
  gray.augment.grayscale = 1.0;
  auto g = epoch(*std::make_unique<fd::Loader>(ds, gray), 0)[0].images;
  EXPECT_TRUE(torch::equal(g.select(1, 0), g.select(1, 1)));
  EXPECT_TRUE(torch::equal(g.select(1, 1), g.select(1, 2)));

  auto crop = o;
  crop.augment.crop = 1.0;
  auto c = epoch(*std::make_unique<fd::Loader>(ds, crop), 0)[0].images;
  int cropped = 0;
  for (int64_t row = 0; row < 16; ++row) {
    // Inside the kept box the pixels are unchanged; outside they are black (-1 after normalising).
    auto kept = c[row].eq(plain[row]).all(0);
    auto black = c[row].eq(-1.0f).all(0);
    EXPECT_TRUE(kept.logical_or(black).all().item<bool>()) << row;
    auto rows = kept.any(1).nonzero(), cols = kept.any(0).nonzero();
    ASSERT_GT(rows.numel(), 0);
    int64_t h = rows.max().item<int64_t>() - rows.min().item<int64_t>() + 1;
    int64_t w = cols.max().item<int64_t>() - cols.min().item<int64_t>() + 1;
    EXPECT_GE(h * w, static_cast<int64_t>(0.2 * 112 * 112 * 0.9)) << row;  // scale >= 0.2 (rounding aside)
    if (h * w < 112 * 112) ++cropped;
  }
  EXPECT_GT(cropped, 12);

  for (auto tweak : {&fd::AugmentOptions::low_res, &fd::AugmentOptions::photometric}) {
    auto a = o;
    a.augment.*tweak = 1.0;
    auto x = epoch(*std::make_unique<fd::Loader>(ds, a), 0)[0].images;
    EXPECT_FALSE(torch::equal(x, plain));
    EXPECT_GE(x.min().item<float>(), -1.0f);
    EXPECT_LE(x.max().item<float>(), 1.0f);
    auto again = epoch(*std::make_unique<fd::Loader>(ds, a), 0)[0].images;
    EXPECT_TRUE(torch::equal(x, again));  // augmentations are deterministic too
  }
}

TEST(Loader, PrefetchIsBounded) {
  auto ds = std::make_shared<FakeDataset>(400);
  auto o = options(4, 3);
  o.prefetch = 2;
  fd::Loader loader(ds, o);
  loader.start_epoch(0);
  // Without next(), the workers stop after `prefetch` batches: wait until they are idle.
  int64_t last = -1;
  for (int i = 0; i < 200 && ds->gets.load() != last; ++i) {
    last = ds->gets.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(ds->gets.load(), 2 * 4);
  EXPECT_TRUE(loader.next());
  for (int i = 0; i < 200 && ds->gets.load() < 3 * 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(ds->gets.load(), 3 * 4);
}

TEST(LoaderOptions, DescribeAndProblems) {
  fd::LoaderOptions o;
  o.augment.crop = 0.2;
  EXPECT_EQ(o.describe(),
            "batch_size=128, workers=2, prefetch=4, shuffle=true, drop_last=true, on_error=fail, augment: flip=true, "
            "crop=0.2");
  o.batch_size = 0;
  o.augment.low_res = -1;
  auto message = error_of([&] { fd::Loader(std::make_shared<FakeDataset>(3), o); });
  EXPECT_NE(message.find("batch_size must be > 0, got 0"), std::string::npos) << message;
  EXPECT_NE(message.find("augment.low_res must be in [0, 1], got -1"), std::string::npos) << message;
}
