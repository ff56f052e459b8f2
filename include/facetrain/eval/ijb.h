#pragma once
// IJB-B / IJB-C 1:1 verification (template against template), as insightface's
// recognition/arcface_torch/eval_ijbc.py computes it (formats.md section 5), plus a writer of
// tiny IJB-layout datasets made of synthetic faces, for tests and demos.
//
// Layout under the dataset root (t = ijbb or ijbc):
//   meta/<t>_face_tid_mid.txt        "image template media"       one line per image
//   meta/<t>_name_5pts_score.txt     "image x1 y1 ... x5 y5 score" one line per image, same order
//   meta/<t>_template_pair_label.txt "template1 template2 label"  label 1: same person
//   loose_crop/<image>
//
// The protocol, per image i (features come from the embedder, not from this file):
//   f_i = (emb(img_i) + emb(flip(img_i))) * score_i            no per-image normalisation
// per template T (ascending template id), with its images grouped by media (ascending media id):
//   v_T = normalise( sum over media m of T ( mean of f_i over the images of T in m ) )
// where normalise is sklearn.preprocessing.normalize (a zero vector stays zero), and per pair:
//   score(T1, T2) = <v_T1, v_T2>
// then the ROC of the scores against the labels (roc.h) and TAR at FAR 1e-6 ... 1e-1.
//
// Example:
//   auto set = facetrain::eval::read_ijb("/data/IJB_release/IJBC", "IJBC");
//   at::Tensor f = torch::empty({int64_t(set.size()), 512}, torch::kFloat64);
//   for (size_t i = 0; i < set.size(); ++i) {
//     cv::Mat face = facetrain::eval::ijb_aligned_face(set, i);   // 112x112 BGR
//     f[i] = embed(face) + embed(flipped(face));                     // your embedder, float64
//   }
//   auto result = facetrain::eval::evaluate_ijb(set, f);
//   for (auto [far, tar] : result.tar_at_far) std::printf("TAR@FAR=%g: %.4f\n", far, tar);

#include <ATen/ATen.h>
#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "facetrain/data/align.h"
#include "facetrain/eval/roc.h"

namespace facetrain::eval {

/// One template pair of the protocol.
struct IjbPair {
  int64_t template1 = 0, template2 = 0;
  uint8_t label = 0;  ///< 1: both templates show the same person
};

/// An IJB-B or IJB-C protocol as read from its meta files. Images are in the order of the
/// landmarks file, which is the order of the rows of the features passed to the functions below.
struct IjbSet {
  std::string root;                         ///< dataset root, as given
  std::string target;                       ///< "IJBB" or "IJBC"
  std::vector<std::string> images;          ///< file names under root/loose_crop/
  std::vector<data::Landmarks5> landmarks;  ///< per image, loose-crop pixels
  std::vector<double> detector_scores;      ///< per image (the landmarks file's last column)
  std::vector<int64_t> templates, medias;   ///< per image (the tid/mid file's columns 2, 3)
  std::vector<IjbPair> pairs;               ///< in file order
  std::vector<int64_t> landmark_lines;      ///< per image, its 1-based line in the landmarks file

  size_t size() const { return images.size(); }
  /// root/loose_crop/images[i]; facetrain::ArgumentError when i >= size().
  std::string image_path(size_t i) const;
};

/// root/meta/<t>_<suffix>, t = "ijbb" or "ijbc" for `target` "IJBB" or "IJBC"
/// (e.g. suffix "face_tid_mid.txt"). Throws facetrain::ArgumentError for another target.
std::string ijb_meta_path(const std::string& root, const std::string& target, const std::string& suffix);

/// Reads root/meta/<t>_face_tid_mid.txt, <t>_name_5pts_score.txt and <t>_template_pair_label.txt.
/// Fields are separated by white space (insightface splits on single spaces; any run of spaces or
/// tabs is accepted here) and blank lines are skipped. Stricter than eval_ijbc.py, which silently
/// pairs line i of the two image files and maps an unknown template to template 0, this throws
/// facetrain::DataError naming the file and the 1-based line for: a missing or unreadable file,
/// a wrong number of columns, a non-numeric (or non-integer id / non-finite) field, a label other
/// than 0 or 1, line i of the two image files naming different images (or one file having more
/// lines than the other), a pair naming a template that has no image, and an empty pair file.
/// Throws facetrain::ArgumentError for a target other than "IJBB" / "IJBC". Images are not opened.
IjbSet read_ijb(const std::string& root, const std::string& target);

/// Image `image` of the set, loaded from loose_crop/ and aligned with its 5 landmarks onto the
/// ArcFace 112x112 template (data::align_face: least-squares similarity, bilinear, black border),
/// as eval_ijbc.py's Embedding.get does before its BGR->RGB conversion. Returns BGR CV_8UC3.
/// Throws facetrain::DataError "<path>: no such image (listed on line L of <landmarks file>)" or
/// "<path>: cannot decode the image (...)", facetrain::ArgumentError when `image` is out of range.
cv::Mat ijb_aligned_face(const IjbSet& set, size_t image);

struct IjbScoreOptions {
  /// Multiply each image's feature by its detector score before pooling (eval_ijbc.py
  /// use_detector_score = True, its "D1" mode).
  bool use_detector_score = true;
};

/// Template features: ids ascending (np.unique) and one L2-normalised row per template.
struct IjbTemplates {
  std::vector<int64_t> ids;
  at::Tensor features;  ///< [T, D] float64
};

/// eval_ijbc.py's image2template_feature on `features` ([N, D], N = set.size(), one row per image
/// holding emb + emb_flip; any floating dtype, computed in float64): row i times
/// detector_scores[i] (unless disabled), then per template the mean of its rows within each media
/// (rows summed in image order, then divided by the count, as np.mean over axis 0), the media
/// means summed in ascending media order, and the sum divided by its L2 norm (a zero norm leaves
/// the zero vector). Throws facetrain::ArgumentError for a wrong shape or a non-floating dtype.
IjbTemplates ijb_template_features(const IjbSet& set, const at::Tensor& features, const IjbScoreOptions& options = {});

/// eval_ijbc.py's verification: one score per set.pairs entry, the dot product of the two template
/// features (summed with numpy's pairwise summation, as np.sum(feat1 * feat2, -1)).
/// Same errors as ijb_template_features.
std::vector<double> ijb_template_scores(const IjbSet& set, const at::Tensor& features,
                                        const IjbScoreOptions& options = {});

/// FARs at which evaluate_ijb reports the TAR (the columns of eval_ijbc.py's table).
inline constexpr std::array<double, 6> kIjbFars = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1};

struct IjbResult {
  std::vector<double> scores;                         ///< per pair, in set.pairs order
  RocCurve roc;                                       ///< roc_curve(scores, labels)
  std::vector<std::pair<double, double>> tar_at_far;  ///< (FAR, TAR) for each of kIjbFars
  int64_t pairs = 0, genuine_pairs = 0;
};

/// ijb_template_scores, then the ROC and the TAR at each of kIjbFars (tar_at_far).
/// Throws as ijb_template_scores, and facetrain::ArgumentError (from roc_curve) when the pairs
/// lack genuine or impostor labels.
IjbResult evaluate_ijb(const IjbSet& set, const at::Tensor& features, const IjbScoreOptions& options = {});

/// What write_ijb_fixture writes. For tests and demos only.
struct IjbFixtureOptions {
  int64_t identities = 6;              ///< synthetic identities (validation ids, never trained on)
  int64_t templates_per_identity = 2;  ///< each of 1-3 images spread over 1-2 media
  uint64_t seed = 0;                   ///< synthetic faces and layout are a pure function of it
  int loose_size = 150;                ///< side of the square "loose crop" images, >= 150
  int jpeg_quality = 95;
};

/// Ground truth of a fixture, per image in file order.
struct IjbFixture {
  std::vector<uint64_t> identity, variant;       ///< render(identity, variant) of data::SyntheticFaces(seed)
  std::vector<std::array<double, 6>> placement;  ///< 2x3 affine from the 112x112 face into the loose crop
};

/// Writes a tiny IJB-layout dataset under `root` for `target` ("IJBB" or "IJBC"): each image is a
/// synthetic face (data::SyntheticFaces) scaled by 1.0-1.1, rotated by up to +-10 degrees and
/// shifted inside a larger noisy loose crop (JPEG; the whole face image stays inside); its landmarks are the ArcFace
/// template points moved by the same transform, followed by a detector score in [0.6, 1). Template and media ids are
/// non-contiguous and the image lines are shuffled, so ordering bugs show. Pairs: every same-identity template pair
/// (label 1) and impostor pairs across identities (label 0). For tests and demos. Throws facetrain::DataError when a
/// file cannot be written, facetrain::ArgumentError for identities < 2, templates_per_identity < 2 or loose_size < 150.
IjbFixture write_ijb_fixture(const std::string& root, const std::string& target, const IjbFixtureOptions& options = {});

}  // namespace facetrain::eval
