#pragma once
// Building heads from YAML. One explicit list of built-in heads (src/heads/builtin_heads.cpp),
// keyed by the YAML `type:` name; an unknown name lists the known ones.

#include <yaml-cpp/yaml.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "facetrain/config/reader.h"
#include "facetrain/heads/margin_head.h"

namespace facetrain::heads {

/// A head read from configuration, not built yet: the geometry comes later (from the data and
/// the backbone), and a whole recipe is read, and every error reported, before anything is built.
struct HeadSpec {
  std::string type;     ///< "arcface", ...; empty when the section had no usable type
  std::string options;  ///< the resolved options, "scale=64, margin=0.5, ..."
  std::function<std::shared_ptr<MarginHeadImpl>(const HeadGeometry&)> build;

  explicit operator bool() const { return static_cast<bool>(build); }
};

/// Reads a head mapping: required `type`, then that head's own keys (unknown keys and bad values
/// are reported to the section's Diagnostics with their line). Calls `section.finish()`.
/// Returns an empty spec when the type is missing or unknown.
HeadSpec read_head(config::Section& section);

/// Builds a head from a YAML mapping such as `{type: arcface, scale: 64, margin: 0.5}` holding all
/// `num_classes` classes. Throws facetrain::ConfigError listing every problem with its line
/// (the document is cited as "<yaml>").
std::shared_ptr<MarginHeadImpl> make_head(const YAML::Node& config, int64_t embedding_size, int64_t num_classes);
/// As above, for any geometry (a shard of the classes).
std::shared_ptr<MarginHeadImpl> make_head(const YAML::Node& config, const HeadGeometry& geometry);

/// One built-in head, for listings and documentation.
struct HeadInfo {
  std::string type;       ///< YAML `type:`
  std::string summary;    ///< one line
  std::string reference;  ///< the public code it reproduces
  std::string defaults;   ///< describe() of the default options
};
/// Every built-in head, in registration order.
std::vector<HeadInfo> head_types();
/// "softmax, normface, cosface, ..."
std::string head_type_list();

}  // namespace facetrain::heads
