#pragma once
// Synthetic faces: procedurally drawn, face-like identities for tests, demos and CI, deterministic
// by seed. Each identity is a parameter vector (face shape, skin tone, eyes, brows, nose, mouth,
// hair, marks); each image of an identity applies nuisance variation (pose-like warp, scale,
// shift, lighting, blur, noise, occlusion, JPEG quality). Identities differ only by subtle
// features, so raw-pixel similarity verifies them poorly and a trained model clearly better.
//
// Example:
//   facetrain::data::SyntheticFaces faces(/*seed=*/7);
//   cv::Mat img = faces.render(/*identity=*/3, /*variant=*/0);   // 112x112 BGR, CV_8UC3
//   std::string jpg = faces.render_jpeg(3, 1);                     // encoded, nuisance quality
//
//   facetrain::data::SynthDatasetOptions o;  o.out_dir = "synth"; o.identities = 100;
//   auto val = facetrain::data::write_synthetic_dataset(o);        // synth/train.rec .idx property
//   // val.images / val.issame: the verification pairs, for io::write_verification_bin

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "facetrain/config/options.h"

namespace facetrain::config {
class Section;
}

namespace facetrain::data {

/// Identities at and above this id are validation identities: never used by a training set.
constexpr uint64_t kSyntheticValidationIdBase = uint64_t{1} << 40;

/// The parameters that make identity `id` (all in [0, 1] unless noted); documented in the .cpp.
struct SyntheticIdentity {
  std::vector<double> params;
};

/// Draws synthetic faces. Thread-safe: every method is const and keeps no state besides the seed.
class SyntheticFaces {
 public:
  explicit SyntheticFaces(uint64_t seed = 0);
  uint64_t seed() const { return seed_; }

  /// The parameter vector of `identity`: a pure function of (seed, identity).
  SyntheticIdentity identity(uint64_t identity) const;
  /// Image `variant` of `identity`: 112x112 BGR CV_8UC3, a pure function of (seed, identity,
  /// variant); every nuisance but the JPEG quality applied.
  cv::Mat render(uint64_t identity, uint64_t variant) const;
  /// render() encoded as JPEG at a quality drawn from (seed, identity, variant).
  std::string render_jpeg(uint64_t identity, uint64_t variant) const;

 private:
  uint64_t seed_;
};

/// The `synthetic` dataset of a recipe (data.type: synthetic) and of `facetrain data synth`.
struct SyntheticOptions {
  int64_t identities = 100;          ///< training identities 0..identities-1
  int64_t images_per_identity = 20;  ///< images per training identity
  uint64_t seed = 0;

  /// YAML keys (in the `data:` section): identities, images_per_identity, seed.
  void read(config::Section& section);
  config::OptionProblems problems() const;
  std::string describe() const;
};

/// What `facetrain data synth` writes.
struct SynthDatasetOptions : SyntheticOptions {
  std::string out_dir;
  int64_t val_identities = 50;  ///< validation identities (ids from kSyntheticValidationIdBase)
  int64_t val_pairs = 600;      ///< verification pairs, half genuine (even count)
  int64_t threads = 2;          ///< render/encode threads (the output does not depend on it)
  /// Called with (done, total) images as they are written (training and validation together).
  std::function<void(int64_t, int64_t)> progress;

  /// SyntheticOptions::problems() plus: out_dir given, val_identities >= 2, val_pairs even and
  /// > 0, threads in [1, 1024]. Keys are the field names ("val_pairs").
  config::OptionProblems problems() const;
};

/// Verification pairs: images[2i], images[2i + 1] form pair i (encoded), issame[i] its truth.
struct VerificationPairs {
  std::vector<std::string> images;
  std::vector<bool> issame;
};

/// Writes out_dir/train.rec, train.idx (insightface's MS1M layout, image labels [class, 1.0]) and
/// out_dir/property ("identities,112,112"), atomically; returns the validation pairs of
/// unseen identities. The bytes written do not depend on `threads`.
/// Throws ArgumentError for invalid options, DataError when a file cannot be written.
VerificationPairs write_synthetic_dataset(const SynthDatasetOptions& options);

}  // namespace facetrain::data
