#include "facetrain/eval/report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "facetrain/backbones/registry.h"
#include "facetrain/config/reader.h"
#include "facetrain/core/error.h"
#include "facetrain/core/files.h"
#include "facetrain/core/progress.h"
#include "facetrain/data/dataset.h"
#include "facetrain/data/loader.h"
#include "facetrain/eval/roc.h"
#include "facetrain/io/npy.h"
#include "facetrain/io/state_dict.h"
#include "facetrain/train/checkpoint.h"

namespace facetrain::eval {

namespace {

bool is_recipe(const std::string& model) {
  const auto ext = std::filesystem::path(model).extension().string();
  return ext == ".yaml" || ext == ".yml";
}

// 17 significant digits: the double reads back bit for bit (JSON has no hex floats).
std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string num_list(const std::vector<double>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + num(v[i]);
  return out + "]";
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\', out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

backbones::Backbone load_backbone(const BackboneSource& source) {
  // A facetrain checkpoint says which backbone it holds: its recipe is used unless --model is given.
  std::optional<train::Checkpoint> ckpt;
  if (!source.checkpoint.empty()) ckpt = train::read_checkpoint_if(source.checkpoint);
  if (source.model.empty() && !ckpt) {
    throw ConfigError({{"--model", 0, 0, "model",
                        "the backbone type (iresnet50, mbf, ...) or a recipe is required (a facetrain checkpoint "
                        "names its own)"}});
  }
  auto doc =
      !source.model.empty()
          ? (is_recipe(source.model) ? config::Document::from_file(source.model)
                                     : config::Document::from_string("model: {type: " + source.model + "}", "--model"))
          : config::Document::from_string(ckpt->config, source.checkpoint + " (its recipe)");
  for (const auto& s : source.sets) doc.set(s);
  config::Diagnostics diag;
  config::Section root(doc, diag);
  if (!root.has("model")) root.error("model", "missing required key 'model' (the backbone)");
  auto model = root.section("model");
  auto spec = backbones::read_backbone(model);
  diag.throw_if_any();
  backbones::Backbone net = spec.build();
  io::load_state_dict(*net, ckpt ? ckpt->backbone : train::read_backbone_weights(source.checkpoint), source.checkpoint);
  net->eval();
  return net;
}

VerificationEvaluator::VerificationEvaluator(const std::vector<std::string>& targets, const EmbedOptions& options)
    : options_(options) {
  for (const auto& path : targets) sets_.emplace_back(set_name(path), io::read_verification_bin(path));
}

train::EvalReport VerificationEvaluator::evaluate(backbones::BackboneImpl& net, torch::Device device) {
  return evaluate_sets(net, device, nullptr);
}

train::EvalReport VerificationEvaluator::evaluate(backbones::BackboneImpl& net, torch::Device device,
                                                  dist::Group& group) {
  return evaluate_sets(net, device, &group);
}

train::EvalReport VerificationEvaluator::evaluate_sets(backbones::BackboneImpl& net, torch::Device device,
                                                       dist::Group* group) {
  EmbedOptions o = options_;
  o.device = device;
  std::vector<NamedResult> results;
  for (const auto& [name, bin] : sets_) {
    if (!group || group->rank() == 0) o.progress = progress_logger("eval " + name, "image", 25);
    results.emplace_back(name, evaluate_bin(net, bin, name, o, group));
  }
  train::EvalReport report;
  report.sets = nlohmann::json::parse(results_json(results));
  for (const auto& [name, r] : results) {
    report.scalars.emplace_back(name + "/accuracy", r.accuracy);
    report.scalars.emplace_back(name + "/val", r.val);
    report.scalars.emplace_back(name + "/xnorm", r.xnorm);
  }
  report.text = format_table(results);
  return report;
}

VerificationResult evaluate_bin(backbones::BackboneImpl& net, const io::VerificationBin& bin, const std::string& name,
                                const EmbedOptions& options, dist::Group* group) {
  EmbedOptions o = options;
  o.flip = true;  // the protocol fuses every image with its mirror
  if (!group || group->size() == 1) {
    Embeddings e = embed_encoded(net, bin.images, o, name);
    return verify(e.embeddings, e.flipped, bin.issame);
  }
  // Rank r embeds images [r*share, (r+1)*share); the last shares are padded with the set's last
  // image so that every rank gathers the same shape; the padding is cut off after the gather.
  const auto n = static_cast<int64_t>(bin.images.size());
  const int64_t world = group->size(), share = (n + world - 1) / world;
  const int64_t begin = std::min(n, group->rank() * share);
  Embeddings mine = embed(net, static_cast<size_t>(share),
                          bgr_source(
                              [&](size_t i, const std::string& at) {
                                const auto k = std::min<int64_t>(begin + static_cast<int64_t>(i), n - 1);
                                return data::decode_image(bin.images[static_cast<size_t>(k)], at);
                              },
                              [&](size_t i) {
                                const auto k = std::min<int64_t>(begin + static_cast<int64_t>(i), n - 1);
                                return name + " image " + std::to_string(k);
                              }),
                          o);
  auto gather = [&](const torch::Tensor& t) {
    return group->all_gather(t.to(group->device()).contiguous()).cpu().narrow(0, 0, n);
  };
  return verify(gather(mine.embeddings), gather(mine.flipped), bin.issame);
}

std::string set_name(const std::string& path) { return std::filesystem::path(path).stem().string(); }

std::string format_table(const std::vector<NamedResult>& results) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-16s %7s  %-19s  %-19s  %-9s %8s\n", "set", "pairs", "accuracy", "VAL", "@ FAR",
                "XNorm");
  out += line;
  for (const auto& [name, r] : results) {
    std::snprintf(line, sizeof line, "%-16s %7lld  %.5f +- %.5f  %.5f +- %.5f  %.5f  %8.4f\n", name.c_str(),
                  static_cast<long long>(r.pairs), r.accuracy, r.accuracy_std, r.val, r.val_std, r.far, r.xnorm);
    out += line;
  }
  return out;
}

std::string results_json(const std::vector<NamedResult>& results) {
  std::string out = "{";
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& [name, r] = results[i];
    out += (i ? ",\n " : "\n ") + json_string(name) + ": {";
    out += "\"accuracy\": " + num(r.accuracy) + ", \"std\": " + num(r.accuracy_std);
    out += ", \"thresholds\": " + num_list(r.thresholds);
    out += ", \"val\": " + num(r.val) + ", \"val_std\": " + num(r.val_std) + ", \"far\": " + num(r.far);
    out += ", \"xnorm\": " + num(r.xnorm) + ", \"pairs\": " + std::to_string(r.pairs);
    out += ", \"genuine\": " + std::to_string(r.genuine) + ", \"impostor\": " + std::to_string(r.impostor);
    out += ", \"fold_accuracy\": " + num_list(r.fold_accuracy) + ", \"fold_val\": " + num_list(r.fold_val);
    out += ", \"fold_far\": " + num_list(r.fold_far) + ", \"val_thresholds\": " + num_list(r.val_thresholds) + "}";
  }
  return out + "\n}\n";
}

void write_text_file(const std::string& path, const std::string& text) { write_file_atomic(path, text); }

std::vector<std::string> write_roc_plots(const std::string& dir, const std::vector<NamedResult>& results) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw DataError("cannot create the plot folder '" + dir + "': " + ec.message());
  std::vector<std::string> paths;
  for (const auto& [name, r] : results) {
    const std::string path = (std::filesystem::path(dir) / (name + "_roc.png")).string();
    char title[160];
    std::snprintf(title, sizeof title, "%s: accuracy %.5f, VAL %.5f @ FAR %.0e", name.c_str(), r.accuracy, r.val, 1e-3);
    write_roc_png(path, title, {{name, r.roc_fpr, r.roc_tpr}}, false);
    paths.push_back(path);
  }
  return paths;
}

EmbedWritten embed_to_npy(backbones::BackboneImpl& net, const EmbedSetOptions& set, const std::string& out,
                          const EmbedOptions& options) {
  const int sources = !set.bin.empty() + !set.images.empty() + !set.list.empty();
  if (sources != 1) throw ArgumentError("embed: give exactly one of a .bin, an image folder or an image list");
  EmbedOptions o = options;
  o.flip = set.flip;
  Embeddings e;
  std::string order;
  if (!set.bin.empty()) {
    const io::VerificationBin bin = io::read_verification_bin(set.bin);
    const std::string name = std::filesystem::path(set.bin).filename().string();
    e = embed_encoded(net, bin.images, o, name);
    for (size_t i = 0; i < bin.images.size(); ++i) order += name + ":" + std::to_string(i) + "\n";
  } else {
    data::DatasetOptions d;
    d.type = set.images.empty() ? "list" : "image_folder";
    d.path = set.images.empty() ? set.list : set.images;
    const auto dataset = data::make_dataset(d);
    const auto where = [&](size_t i) { return dataset->where(static_cast<int64_t>(i)); };
    const auto load = [&](size_t i, const std::string& at) {
      data::Sample s = dataset->get(static_cast<int64_t>(i));
      return s.encoded.empty() ? s.pixels : data::decode_image(s.encoded, at);
    };
    e = embed(net, static_cast<size_t>(dataset->size()), bgr_source(load, where), o);
    for (int64_t i = 0; i < dataset->size(); ++i) order += dataset->where(i) + "\n";
  }
  torch::Tensor rows = fuse_and_normalize(e, !set.no_normalize);
  if (!set.float64) rows = rows.to(torch::kFloat);
  EmbedWritten written;
  written.rows = rows.size(0);
  written.dim = rows.size(1);
  written.order_path = std::filesystem::path(out).replace_extension(".txt").string();
  io::write_npy(out, rows);
  write_file_atomic(written.order_path, order);
  return written;
}

IjbResult evaluate_ijb_model(backbones::BackboneImpl& net, const IjbSet& set, const EmbedOptions& options,
                             const IjbScoreOptions& score_options) {
  EmbedOptions o = options;
  o.flip = true;
  const Embeddings e = embed(net, set.size(),
                             bgr_source([&](size_t i, const std::string&) { return ijb_aligned_face(set, i); },
                                        [&](size_t i) { return set.image_path(i); }),
                             o);
  return evaluate_ijb(set, e.embeddings + e.flipped, score_options);
}

std::string format_ijb_table(const std::string& name, const IjbResult& result) {
  std::string head = "TAR @ FAR", row = name;
  char cell[32];
  for (const auto& [far, tar] : result.tar_at_far) {
    std::snprintf(cell, sizeof cell, " %8.0e", far);
    head += cell;
  }
  if (row.size() < 9) row.resize(9, ' ');
  for (const auto& [far, tar] : result.tar_at_far) {
    std::snprintf(cell, sizeof cell, " %8.4f", tar);
    row += cell;
  }
  return head + "\n" + row + "\n" + std::to_string(result.pairs) + " pairs (" + std::to_string(result.genuine_pairs) +
         " genuine, " + std::to_string(result.pairs - result.genuine_pairs) + " impostor)\n";
}

std::string ijb_json(const std::string& name, const IjbResult& result) {
  std::string out = "{" + json_string(name) + ": {\"pairs\": " + std::to_string(result.pairs) +
                    ", \"genuine\": " + std::to_string(result.genuine_pairs) +
                    ", \"impostor\": " + std::to_string(result.pairs - result.genuine_pairs) + ", \"tar_at_far\": {";
  char key[32];
  for (size_t i = 0; i < result.tar_at_far.size(); ++i) {
    std::snprintf(key, sizeof key, "%.0e", result.tar_at_far[i].first);
    out += (i ? ", \"" : "\"") + std::string(key) + "\": " + num(result.tar_at_far[i].second);
  }
  return out + "}}}\n";
}

}  // namespace facetrain::eval
