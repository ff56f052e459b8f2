#include "facetrain/train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <variant>

#include "facetrain/core/error.h"

namespace facetrain::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "facetrain.checkpoint";

// The step of "step_<digits>.ckpt", or -1.
int64_t step_of(const std::string& file_name) {
  const std::string prefix = "step_", suffix = ".ckpt";
  if (file_name.size() <= prefix.size() + suffix.size() || file_name.rfind(prefix, 0) != 0 ||
      file_name.compare(file_name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits = file_name.substr(prefix.size(), file_name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "step_%06lld.ckpt", static_cast<long long>(step));
  return buf;
}

void write_checkpoint(const Checkpoint& c, const std::string& path) {
  io::Archive a = {
      {"format", std::string(kFormat)},
      {"version", c.version},
      {"facetrain_version", c.facetrain_version},
      {"torch_version", c.torch_version},
      {"config", c.config},
      {"step", c.step},
      {"epoch", c.epoch},
      {"epoch_batch", c.epoch_batch},
      {"steps_per_epoch", c.steps_per_epoch},
      {"backbone_type", c.backbone_type},
      {"head_type", c.head_type},
      {"num_classes", c.num_classes},
      {"embedding_size", c.embedding_size},
      {"state_dict_backbone", c.backbone},
      {"state_dict_head", c.head},
      {"state_optimizer", c.optimizer},
      {"state_scaler", c.scaler},
      {"state_rng", c.rng},
      {"state_run", c.run},
  };
  io::write_archive(a, path);
}

namespace {

// True when `a` is a facetrain checkpoint (its "format" entry says so).
bool has_format(const io::Archive& a) {
  for (const auto& [key, value] : a) {
    if (key == "format") {
      const auto* v = std::get_if<std::string>(&value);
      return v && *v == kFormat;
    }
  }
  return false;
}

// The checkpoint in `a`, read from `path` (messages). DataError when `a` is not one.
Checkpoint checkpoint_from(const io::Archive& a, const std::string& path) {
  std::map<std::string, const io::ArchiveValue*> entries;
  for (const auto& [key, value] : a) entries[key] = &value;
  auto fail = [&](const std::string& what) -> void { throw DataError("checkpoint '" + path + "': " + what); };
  auto get = [&](const char* key) -> const io::ArchiveValue& {
    auto it = entries.find(key);
    if (it == entries.end()) fail(std::string("missing entry '") + key + "'");
    return *it->second;
  };
  auto text = [&](const char* key) -> std::string {
    const auto* v = std::get_if<std::string>(&get(key));
    if (!v) fail(std::string("entry '") + key + "' is not a string");
    return *v;
  };
  auto integer = [&](const char* key) -> int64_t {
    const auto* v = std::get_if<int64_t>(&get(key));
    if (!v) fail(std::string("entry '") + key + "' is not an integer");
    return *v;
  };
  auto tensors = [&](const char* key) -> io::StateDict {
    const auto* v = std::get_if<io::StateDict>(&get(key));
    if (!v) fail(std::string("entry '") + key + "' is not a dict of tensors");
    return *v;
  };
  if (!has_format(a)) {
    std::string hint = entries.count("state_dict_backbone") ? " (an insightface checkpoint? use --finetune)" : "";
    throw DataError("'" + path + "' is not a facetrain checkpoint" + hint);
  }
  Checkpoint c;
  c.path = path;
  c.version = integer("version");
  if (c.version > kCheckpointVersion || c.version < 1)
    fail("format version " + std::to_string(c.version) + "; this facetrain reads versions 1 to " +
         std::to_string(kCheckpointVersion) + " (written by facetrain " + text("facetrain_version") + ")");
  c.facetrain_version = text("facetrain_version");
  c.torch_version = text("torch_version");
  c.config = text("config");
  c.step = integer("step");
  c.epoch = integer("epoch");
  c.epoch_batch = integer("epoch_batch");
  c.steps_per_epoch = integer("steps_per_epoch");
  c.backbone_type = text("backbone_type");
  c.head_type = text("head_type");
  c.num_classes = integer("num_classes");
  c.embedding_size = integer("embedding_size");
  c.backbone = tensors("state_dict_backbone");
  c.head = tensors("state_dict_head");
  c.optimizer = tensors("state_optimizer");
  c.scaler = tensors("state_scaler");
  c.rng = tensors("state_rng");
  c.run = tensors("state_run");
  if (c.step < 0 || c.epoch < 0 || c.epoch_batch < 0) fail("negative step, epoch or position");
  return c;
}

}  // namespace

Checkpoint read_checkpoint(const std::string& path) {
  io::Archive a;
  try {
    a = io::read_archive(path);
  } catch (const DataError& e) {
    const std::string what = e.what();
    if (what.find("expected a dict at the top level") != std::string::npos)
      throw DataError("'" + path + "' is not a facetrain checkpoint but a plain state dict (use it with --finetune)");
    throw;
  }
  return checkpoint_from(a, path);
}

std::optional<Checkpoint> read_checkpoint_if(const std::string& path) {
  io::Archive a;
  try {
    a = io::read_archive(path);
  } catch (const DataError&) {
    return std::nullopt;  // not an archive of a dict (a plain state dict), or unreadable
  }
  if (!has_format(a)) return std::nullopt;
  return checkpoint_from(a, path);
}

bool is_checkpoint(const std::string& path) {
  try {
    return read_checkpoint_if(path).has_value();
  } catch (const Error&) {
    return false;
  }
}

io::StateDict read_backbone_weights(const std::string& path) {
  io::Archive a;
  try {
    a = io::read_archive(path);
  } catch (const DataError&) {
    return io::read_state_dict(path);  // a plain state dict, read with read_state_dict's messages
  }
  if (has_format(a)) return checkpoint_from(a, path).backbone;
  for (auto& [key, value] : a) {
    if (key == "state_dict_backbone" && std::holds_alternative<io::StateDict>(value))
      return std::get<io::StateDict>(std::move(value));  // an insightface training checkpoint
  }
  return io::read_state_dict(path);
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const int64_t step = step_of(it->path().filename().string());
    if (step >= 0) found.emplace_back(step, it->path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::vector<std::string> prune_checkpoints(const std::string& dir, int64_t keep_last) {
  std::vector<std::string> deleted;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("step_", 0) == 0 && name.find(".ckpt.tmp.") != std::string::npos) {
      std::error_code rm;
      if (fs::remove(it->path(), rm)) deleted.push_back(it->path().string());
    }
  }
  if (keep_last <= 0) return deleted;
  auto all = list_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) {
    std::error_code rm;
    if (fs::remove(all[i], rm)) deleted.push_back(all[i]);
  }
  return deleted;
}

}  // namespace facetrain::train
