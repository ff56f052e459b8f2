#pragma once
// Building backbones from YAML. One explicit list of built-ins (src/backbones/builtin_backbones.cpp),
// keyed by the YAML `type:` name; insightface's short names (r50, mbf, ...) are accepted as aliases.
// An unknown name lists the known ones.

#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>
#include <vector>

#include "facetrain/backbones/backbone.h"
#include "facetrain/config/reader.h"

namespace facetrain::backbones {

/// A backbone read from configuration, not built yet.
struct BackboneSpec {
  std::string type;     ///< canonical name ("iresnet50"), empty when the section had no usable type
  std::string options;  ///< the resolved options, "embedding_size=512, ..., layers=[3, 4, 14, 3]"
  std::function<Backbone()> build;
  /// `sync_bn`: BatchNorm statistics over the global batch when several processes train
  /// (layers.h, BatchNormSync); no effect in one process.
  bool sync_bn = false;

  explicit operator bool() const { return static_cast<bool>(build); }
};

/// Reads a backbone mapping: required `type`, then that family's keys (unknown keys and bad
/// values go to the section's Diagnostics with their line). Calls `section.finish()`.
BackboneSpec read_backbone(config::Section& section);

/// Builds a backbone from a mapping such as `{type: iresnet50, embedding_size: 512}`. Throws
/// facetrain::ConfigError listing every problem (the document is cited as "<yaml>").
Backbone make_backbone(const YAML::Node& config);

/// One built-in backbone, for listings and documentation.
struct BackboneInfo {
  std::string type;      ///< YAML `type:`
  std::string alias;     ///< insightface's name (`r50`, `mbf`)
  std::string summary;   ///< one line
  std::string defaults;  ///< the resolved default options
};
std::vector<BackboneInfo> backbone_types();
/// "iresnet18, iresnet34, ..."
std::string backbone_type_list();

}  // namespace facetrain::backbones
