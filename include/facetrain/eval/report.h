#pragma once
// What the `facetrain eval | embed | export` commands do, as library calls (the CLI only parses
// arguments): load a backbone from weights, evaluate verification sets, and report the results
// as a table, JSON and ROC plots. The trainer's periodic evaluation calls evaluate_bin too.
//
// Example:
//   auto net = facetrain::eval::load_backbone({"backbone.pth", "iresnet50"});
//   auto lfw = facetrain::io::read_verification_bin("lfw.bin");
//   auto result = facetrain::eval::evaluate_bin(*net, lfw, "lfw", {});
//   std::printf("%s\n", facetrain::eval::format_table({{"lfw", result}}).c_str());

#include <string>
#include <utility>
#include <vector>

#include "facetrain/backbones/backbone.h"
#include "facetrain/eval/embed.h"
#include "facetrain/eval/ijb.h"
#include "facetrain/eval/verification.h"
#include "facetrain/io/verification_bin.h"
#include "facetrain/train/trainer.h"

namespace facetrain::eval {

/// Where a backbone's weights come from.
struct BackboneSource {
  /// A facetrain checkpoint (.ckpt), an insightface training checkpoint (its
  /// state_dict_backbone), or a PyTorch state dict (.pth; "module." prefixes are stripped).
  std::string checkpoint;
  /// A backbone type ("iresnet50", "r100", "mbf", ...) or a YAML recipe (.yaml/.yml) whose
  /// `model:` section describes it. May be empty for a facetrain checkpoint, whose stored recipe
  /// is used.
  std::string model;
  std::vector<std::string> sets;  ///< `--set model.embedding_size=256` overrides
};

/// Builds the backbone `source.model` describes and loads `source.checkpoint` into it, strictly
/// (every tensor present, no extra ones, shapes equal). Throws facetrain::ConfigError for a bad
/// model description and facetrain::DataError naming the checkpoint for weights that do not fit.
backbones::Backbone load_backbone(const BackboneSource& source);

/// The trainer's periodic evaluation (train::Evaluator): every `.bin` of eval.targets, scored by
/// evaluate_bin. The files are read when it is made, so a bad target fails before training.
class VerificationEvaluator : public train::Evaluator {
 public:
  /// Throws DataError naming a target that cannot be read.
  VerificationEvaluator(const std::vector<std::string>& targets, const EmbedOptions& options);
  /// {NAME: results_json's fields}; scalars NAME/accuracy, NAME/val, NAME/xnorm; format_table.
  train::EvalReport evaluate(backbones::BackboneImpl& net, torch::Device device) override;
  /// The same, the images of every set split across the ranks: rank r embeds its contiguous
  /// share (an equal count each, the last padded), the embeddings are gathered, and every rank
  /// scores the whole set, so the figures equal the one-process ones.
  train::EvalReport evaluate(backbones::BackboneImpl& net, torch::Device device, dist::Group& group) override;

 private:
  train::EvalReport evaluate_sets(backbones::BackboneImpl& net, torch::Device device, dist::Group* group);
  EmbedOptions options_;
  std::vector<std::pair<std::string, io::VerificationBin>> sets_;
};

/// Embeds a verification set's images and their mirrors and runs the protocol (verification.h).
/// With `group`, each rank embeds its share of the images (see VerificationEvaluator).
VerificationResult evaluate_bin(backbones::BackboneImpl& net, const io::VerificationBin& bin, const std::string& name,
                                const EmbedOptions& options, dist::Group* group = nullptr);

/// "lfw.bin" -> "lfw": the name results are reported under.
std::string set_name(const std::string& path);

using NamedResult = std::pair<std::string, VerificationResult>;

/// A table, one row per set: name, pairs, accuracy +- std, VAL +- std @ FAR, XNorm.
std::string format_table(const std::vector<NamedResult>& results);

/// `{NAME: {"accuracy", "std", "thresholds", "val", "val_std", "far", "xnorm", "pairs",
/// "fold_accuracy", "fold_val", "fold_far", "val_thresholds", "genuine", "impostor"}}`, doubles
/// written with 17 significant digits so that they read back bit for bit.
std::string results_json(const std::vector<NamedResult>& results);

/// Writes `text` to `path` atomically; DataError naming the path on failure.
void write_text_file(const std::string& path, const std::string& text);

/// Writes DIR/NAME_roc.png for each set: the ROC curve insightface's protocol traces (TPR vs FPR
/// at thresholds k * 0.01, averaged over the test folds). Creates DIR. Returns the paths.
std::vector<std::string> write_roc_plots(const std::string& dir, const std::vector<NamedResult>& results);

/// Which images `facetrain embed` embeds (exactly one source) and how it writes them.
struct EmbedSetOptions {
  std::string bin;     ///< a verification .bin: its 2N images in order
  std::string images;  ///< an image folder ROOT/<identity>/... (data::scan_image_folder order)
  std::string list;    ///< an image list (data::read_image_list; unaligned entries are aligned)
  bool flip = false;   ///< write emb + emb_flip
  bool no_normalize = false;
  bool float64 = false;
};

/// What embed_to_npy wrote.
struct EmbedWritten {
  int64_t rows = 0, dim = 0;
  std::string order_path;  ///< OUT with its extension replaced by .txt: one line per row
};

/// Embeds the images `set` names and writes them to `out` (.npy, [N, D]); the order file next to
/// it names each row's image (".bin": "NAME.bin:INDEX"; folders and lists: the image path).
/// Throws facetrain::ArgumentError unless exactly one source is given, DataError for unreadable
/// images (naming them) and for files that cannot be written.
EmbedWritten embed_to_npy(backbones::BackboneImpl& net, const EmbedSetOptions& set, const std::string& out,
                          const EmbedOptions& options);

/// Embeds every image of an IJB set (aligned with its landmarks, and its mirror) and runs
/// evaluate_ijb on emb + emb_flip.
IjbResult evaluate_ijb_model(backbones::BackboneImpl& net, const IjbSet& set, const EmbedOptions& options,
                             const IjbScoreOptions& score_options = {});

/// "TAR @ FAR 1e-06 1e-05 ... 1e-01" as a two-line table, plus the pair counts.
std::string format_ijb_table(const std::string& name, const IjbResult& result);

/// `{NAME: {"pairs", "genuine", "impostor", "tar_at_far": {"1e-06": TAR, ...}}}`.
std::string ijb_json(const std::string& name, const IjbResult& result);

}  // namespace facetrain::eval
