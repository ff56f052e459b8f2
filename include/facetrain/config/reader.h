#pragma once
// The strict configuration reader: YAML into typed option structs.
//
// Every key of a mapping is either read by the code or reported as unknown (with a did-you-mean
// hint); wrong types and out-of-range values are reported at the offending value's
// `file:line:col`; and all problems of a document are collected and raised together as one
// `facetrain::ConfigError`. Defaults live in the option structs, never here.
//
// Example:
//   auto doc = config::Document::from_file("recipe.yaml");
//   doc.set("head.scale=32");                      // --set overrides
//   config::Diagnostics diag;
//   config::Section root(doc, diag);
//   auto head = root.section("head");
//   double scale = 64;                             // the default
//   head.read("scale", scale);
//   if (scale <= 0) head.error("scale", "must be > 0");
//   head.finish();                                 // unknown keys in `head`
//   root.finish();
//   diag.throw_if_any();                           // one ConfigError listing everything
//
// yaml-cpp traps avoided here: nodes are only ever indexed through const references (the
// non-const operator[] inserts missing keys), and the mark of a missing node is never used (a
// missing key is reported at its parent mapping).

#include <yaml-cpp/yaml.h>

#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "facetrain/core/error.h"

namespace facetrain::config {

/// A parsed YAML document with the name errors should cite, and the values that came from
/// `--set` overrides (cited as "--set key=value" instead of a line).
class Document {
 public:
  /// Reads and parses `path`. Throws ConfigError naming the file (and line, for syntax errors).
  static Document from_file(const std::string& path);
  /// Parses `text`; errors cite `name`.
  static Document from_string(const std::string& text, std::string name = "<yaml>");
  /// Wraps an already-parsed node; errors cite `name`.
  static Document from_node(YAML::Node node, std::string name = "<yaml>");

  /// Applies one override "a.b.c=value"; the value is parsed as YAML ("32", "true", "{m: 1}").
  /// Missing mappings on the way are created. Throws ConfigError for a malformed assignment or
  /// a path that runs through a non-mapping.
  void set(const std::string& assignment);

  const YAML::Node& root() const { return root_; }
  const std::string& name() const { return name_; }
  /// The override ("--set a.b=v") that produced `node`, or empty if it came from the document.
  std::string override_origin(const YAML::Node& node) const;

  /// The whole document as YAML text (what a run resolved, overrides applied).
  std::string dump() const;

 private:
  Document(YAML::Node root, std::string name) : root_(std::move(root)), name_(std::move(name)) {}
  YAML::Node root_;
  std::string name_;
  std::vector<std::pair<YAML::Node, std::string>> overrides_;
};

/// Collects the problems of one read, to raise them together.
class Diagnostics {
 public:
  /// Adds a problem; issues() lists them in document order.
  void add(ConfigIssue issue);
  bool empty() const { return issues_.empty(); }
  const std::vector<ConfigIssue>& issues() const { return issues_; }
  /// Throws one ConfigError with every collected problem, if there are any.
  void throw_if_any() const;

 private:
  std::vector<ConfigIssue> issues_;
};

/// A strict view of one YAML mapping of a Document. Cheap to copy; copies share which keys
/// were read, so `finish()` on any copy sees them all.
class Section {
 public:
  /// The document's root mapping. An empty document reads as an empty mapping.
  Section(const Document& doc, Diagnostics& diag);

  /// Reads optional `key` into `value` if present. Supported: bool, int, int64_t, double,
  /// std::string, std::vector<std::string>, std::vector<int64_t>, std::vector<double>. Returns true if the key was present and valid;
  /// a value of the wrong type is reported and `value` keeps its default.
  template <class T>
  bool read(std::string_view key, T& value);

  /// As `read`, but a missing key is an error.
  template <class T>
  bool require(std::string_view key, T& value);

  /// Reads a string key restricted to `names` into the matching enum value.
  template <class E>
  bool read_enum(std::string_view key, E& value, const std::vector<std::pair<std::string, E>>& names) {
    std::string text;
    if (!read(key, text)) return false;
    for (const auto& [name, v] : names) {
      if (name == text) {
        value = v;
        return true;
      }
    }
    std::vector<std::string> allowed;
    for (const auto& n : names) allowed.push_back(n.first);
    error(key, unknown_value_message(text, allowed));
    return false;
  }

  /// The child mapping at `key`; a missing key gives an empty section (all defaults).
  Section section(std::string_view key);

  /// True if `key` is present (does not mark it read).
  bool has(std::string_view key) const;
  /// Marks `key` as known without reading it (a key another component reads).
  void allow(std::string_view key);

  /// Reports a problem with `key`: at its value if present, else at this mapping.
  void error(std::string_view key, std::string message);
  /// Reports a problem with this mapping as a whole.
  void error(std::string message);

  /// Reports every key of this mapping that was neither read nor allowed, with the closest
  /// known key as a hint. Call after all reads.
  void finish();

  /// "head.scale" for key "scale" in section "head".
  std::string path(std::string_view key) const;
  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return node_; }

  /// "unknown value 'x'; expected one of: a, b (did you mean 'a'?)"
  static std::string unknown_value_message(const std::string& value, const std::vector<std::string>& allowed);
  /// The entry of `known` closest to `word` by edit distance, or empty when none is close.
  static std::string closest(const std::string& word, const std::vector<std::string>& known);

 private:
  struct Shared {
    std::set<std::string, std::less<>> known;
    bool finished = false;
  };
  Section(const Document* doc, Diagnostics* diag, YAML::Node node, std::string path, YAML::Mark mark,
          std::string origin);
  ConfigIssue issue_at(const YAML::Node* node, std::string key_path, std::string message) const;
  const YAML::Node* find(std::string_view key) const;

  const Document* doc_;
  Diagnostics* diag_;
  YAML::Node node_;
  std::string path_;
  YAML::Mark mark_;     // where this mapping is (its parent's, if it is missing)
  std::string origin_;  // document name, or the "--set ..." this mapping came from
  std::shared_ptr<Shared> shared_;
  struct Entry {
    std::string key;
    YAML::Node key_node;  // where an unknown key is reported
    YAML::Node value;
  };
  std::vector<Entry> entries_;  // document order
};

}  // namespace facetrain::config
