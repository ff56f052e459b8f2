#pragma once
// The training loader: worker threads read, decode (OpenCV) and augment samples of a Dataset into
// normalised [B, 3, 112, 112] float batches, ahead of the training loop through a bounded queue.
//
// Deterministic: the sample order of an epoch is a function of (seed, epoch) and the
// augmentation of a sample a function of (seed, epoch, position); the batches that come out are
// the same whatever the number of workers, and a loader started at (epoch, step) gives exactly
// the batches an uninterrupted one gives from there (resume). With several ranks, each global
// batch (batch_size x world_size) is dealt across them in rank order: the ranks' batches of a
// step, concatenated, are the one-process batch of that size, augmentations included.
//
// Example:
//   facetrain::data::LoaderOptions o;  o.batch_size = 128;  o.workers = 4;
//   facetrain::data::Loader loader(dataset, o);
//   for (int64_t epoch = 0; epoch < 20; ++epoch) {
//     loader.start_epoch(epoch);
//     while (auto batch = loader.next()) train_step(batch->images, batch->labels);
//   }

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "facetrain/data/dataset.h"

namespace facetrain::data {

/// Augmentations: AdaFace's (random resized crop kept in place on black, low-resolution
/// degradation, colour jitter) plus grayscale, applied in that order after the flip. Each draws
/// from the sample's own random stream (seed, epoch, position).
struct AugmentOptions {
  bool flip = true;  ///< horizontal flip with probability 0.5
  double crop =
      0.0;  ///< probability of a random resized crop, scale [0.2, 1], ratio [3/4, 4/3], kept in place on black
  double photometric = 0.0;  ///< probability of colour jitter: brightness, contrast, saturation 0.5, random order
  double low_res = 0.0;      ///< probability of a down-scale to [0.2, 1] of the side and back, random interpolations
  double grayscale = 0.0;    ///< probability of converting to gray (3 equal channels)

  /// YAML keys (the `augment:` section): flip, crop, photometric, low_res, grayscale.
  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

struct LoaderOptions {
  int64_t batch_size = 128;  ///< per rank
  int64_t workers = 2;       ///< decoding threads
  int64_t prefetch = 4;      ///< batches decoded ahead (bounded queue)
  bool shuffle = true;       ///< new permutation every epoch
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
  /// The ragged last global batch of an epoch: dropped (true), or filled up (false) with the
  /// epoch's first samples again (Batch::valid counts the real ones).
  bool drop_last = true;
  bool pin_memory = true;  ///< page-locked batches when CUDA is available (ignored otherwise)
  OnError on_error = OnError::kFail;
  AugmentOptions augment;

  /// YAML keys (in `data:`): batch_size, workers, prefetch, shuffle, drop_last, pin_memory,
  /// on_error (fail | skip), augment: {...}. seed, rank and world_size come from the trainer.
  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// The `data:` section of a recipe.
struct DataConfig {
  DatasetOptions dataset;
  LoaderOptions loader;
};

/// Reads the `data:` section (dataset and loader keys), reports each problem at its key's line
/// and unknown keys (finish()); the caller throws the collected diagnostics.
DataConfig read_data_config(config::Section& data);

struct Batch {
  torch::Tensor images;          ///< [B, 3, 112, 112] float32, (x / 255 - 0.5) / 0.5, RGB
  torch::Tensor labels;          ///< [B] int64
  std::vector<int64_t> indices;  ///< dataset index of each row
  int64_t valid = 0;             ///< rows that are not padding (the first `valid`)
  int64_t epoch = 0;
  int64_t step = 0;  ///< position of this batch in the epoch, from 0
};

/// Position in the data, for checkpoints.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t step = 0;  ///< batches of `epoch` already delivered
};

/// Decodes `bytes` (anything OpenCV reads) to 112x112 and writes it, RGB, normalised and
/// optionally mirrored, into `out` (3 x 112 x 112 floats, channel-major). Throws DataError
/// naming `where` when it cannot be decoded or is not 112x112.
void decode_to_chw(const std::string& bytes, bool flip, float* out, const std::string& where);

/// Decodes `bytes` to 8-bit BGR (CV_8UC3); DataError naming `where` when it cannot.
cv::Mat decode_image(const std::string& bytes, const std::string& where);

/// As decode_to_chw, for an image already decoded: `bgr` 112x112 CV_8UC3 (e.g. an aligned face).
void image_to_chw(const cv::Mat& bgr, bool flip, float* out, const std::string& where);

class Loader {
 public:
  /// Throws ArgumentError for invalid options, or a dataset with fewer samples than world_size.
  Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  const LoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }
  /// Samples (padding included) each rank is dealt per epoch: steps_per_epoch() x batch_size.
  int64_t samples_per_rank() const;
  /// Batches per epoch, the same on every rank: size / (batch_size x world_size), rounded down
  /// with drop_last, up without.
  int64_t steps_per_epoch() const;

  /// Starts delivering `epoch` from batch `step` (0: its start). Stops the current epoch's
  /// workers first.
  void start_epoch(int64_t epoch, int64_t step = 0);
  /// The next batch of the current epoch, or nullopt at its end. Rethrows a worker's DataError
  /// (on_error fail).
  std::optional<Batch> next();
  /// Where a loader must start to continue after the batches delivered so far.
  LoaderPosition position() const;

  /// Samples skipped so far (on_error skip).
  int64_t skipped() const;

  /// The dataset indices of `epoch` for this rank, in delivery order (samples_per_rank() of them).
  std::vector<int64_t> epoch_indices(int64_t epoch) const;
  /// Where this rank's `position`-th sample of an epoch stands in the epoch's global order (the
  /// order a one-process loader with batch size batch_size x world_size delivers).
  int64_t global_position(int64_t position) const;

 private:
  struct State;
  Batch make_batch(int64_t step) const;
  /// Reads, decodes and augments sample `index` into `out` with the random stream `key`; returns
  /// its label.
  int64_t load_sample(int64_t index, uint64_t key, float* out) const;

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace facetrain::data
