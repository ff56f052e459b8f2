#include "facetrain/config/reader.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>

namespace facetrain::config {

namespace {

const char* kind_name(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "an undefined value";
  }
}

bool valid_mark(const YAML::Mark& m) { return !m.is_null() && m.line >= 0; }

// Scalar conversions. Each returns an empty string on success, else what was expected.
template <class T>
std::string convert(const YAML::Node& n, T& out);

template <>
std::string convert<bool>(const YAML::Node& n, bool& out) {
  if (!n.IsScalar()) return std::string("expected true or false, got ") + kind_name(n);
  try {
    out = n.as<bool>();
    return {};
  } catch (const YAML::Exception&) {
    return "expected true or false, got '" + n.Scalar() + "'";
  }
}

template <>
std::string convert<int64_t>(const YAML::Node& n, int64_t& out) {
  if (!n.IsScalar()) return std::string("expected an integer, got ") + kind_name(n);
  try {
    out = n.as<int64_t>();
    return {};
  } catch (const YAML::Exception&) {
    return "expected an integer, got '" + n.Scalar() + "'";
  }
}

template <>
std::string convert<int>(const YAML::Node& n, int& out) {
  int64_t v = 0;
  std::string err = convert<int64_t>(n, v);
  if (!err.empty()) return err;
  if (v < INT32_MIN || v > INT32_MAX) return "integer " + n.Scalar() + " is out of range";
  out = static_cast<int>(v);
  return {};
}

template <>
std::string convert<double>(const YAML::Node& n, double& out) {
  if (!n.IsScalar()) return std::string("expected a number, got ") + kind_name(n);
  double v = 0;
  try {
    v = n.as<double>();
  } catch (const YAML::Exception&) {
    return "expected a number, got '" + n.Scalar() + "'";
  }
  if (!std::isfinite(v)) return "expected a finite number, got '" + n.Scalar() + "'";
  out = v;
  return {};
}

template <>
std::string convert<std::string>(const YAML::Node& n, std::string& out) {
  if (!n.IsScalar()) return std::string("expected a string, got ") + kind_name(n);
  out = n.Scalar();
  return {};
}

template <>
std::string convert<std::vector<std::string>>(const YAML::Node& n, std::vector<std::string>& out) {
  if (!n.IsSequence()) return std::string("expected a list of strings, got ") + kind_name(n);
  std::vector<std::string> v;
  for (const auto& item : n) {
    if (!item.IsScalar()) return std::string("expected a list of strings, found ") + kind_name(item);
    v.push_back(item.Scalar());
  }
  out = std::move(v);
  return {};
}

// A list whose every item converts to T; `what` names the items in messages ("integers").
template <class T>
std::string convert_list(const YAML::Node& n, std::vector<T>& out, const char* what) {
  if (!n.IsSequence()) return std::string("expected a list of ") + what + ", got " + kind_name(n);
  std::vector<T> v;
  for (const auto& item : n) {
    T x{};
    if (!convert<T>(item, x).empty()) {
      return std::string("expected a list of ") + what + ", found " +
             (item.IsScalar() ? "'" + item.Scalar() + "'" : std::string(kind_name(item)));
    }
    v.push_back(x);
  }
  out = std::move(v);
  return {};
}

template <>
std::string convert<std::vector<int64_t>>(const YAML::Node& n, std::vector<int64_t>& out) {
  return convert_list(n, out, "integers");
}

template <>
std::string convert<std::vector<double>>(const YAML::Node& n, std::vector<double>& out) {
  return convert_list(n, out, "numbers");
}

// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions
// of neighbours ("sclae" -> "scale") each count one edit.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Document

Document Document::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError({ConfigIssue{path, 0, 0, "", "cannot open the file"}});
  std::stringstream text;
  text << in.rdbuf();
  return from_string(text.str(), path);
}

Document Document::from_string(const std::string& text, std::string name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError({ConfigIssue{name, e.mark.line + 1, e.mark.column + 1, "", "YAML syntax error: " + e.msg}});
  }
  return Document(std::move(root), std::move(name));
}

Document Document::from_node(YAML::Node node, std::string name) { return Document(std::move(node), std::move(name)); }

void Document::set(const std::string& assignment) {
  const std::string origin = "--set " + assignment;
  auto fail = [&](const std::string& msg) { throw ConfigError({ConfigIssue{origin, 0, 0, "", msg}}); };
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) fail("expected key.path=value");
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);

  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty()) fail("empty component in key '" + key + "'");
    parts.push_back(part);
  }
  if (key.back() == '.') fail("empty component in key '" + key + "'");

  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    fail("YAML syntax error in the value: " + e.msg);
  }

  if (!root_.IsDefined() || root_.IsNull()) root_ = YAML::Node(YAML::NodeType::Map);
  if (!root_.IsMap()) fail("the document is not a mapping");
  // Walk with fresh handles: assigning to a yaml-cpp Node that aliases another rebinds it.
  std::vector<YAML::Node> chain{root_};
  std::string walked;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    walked += (i ? "." : "") + parts[i];
    YAML::Node parent = chain.back();
    if (!parent[parts[i]].IsDefined() || parent[parts[i]].IsNull()) {
      parent[parts[i]] = YAML::Node(YAML::NodeType::Map);
    } else if (!parent[parts[i]].IsMap()) {
      fail("'" + walked + "' is " + kind_name(parent[parts[i]]) + ", not a mapping");
    }
    chain.push_back(parent[parts[i]]);
  }
  YAML::Node parent = chain.back();
  parent[parts.back()] = value;
  const YAML::Node& const_parent = parent;
  overrides_.emplace_back(const_parent[parts.back()], origin);
}

std::string Document::override_origin(const YAML::Node& node) const {
  for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it) {
    if (it->first.is(node)) return it->second;
  }
  return {};
}

std::string Document::dump() const {
  YAML::Emitter out;
  out << root_;
  return out.c_str();
}

// ---------------------------------------------------------------------------------------------
// Diagnostics

void Diagnostics::add(ConfigIssue issue) {
  // Keep the issues in document order (problems found later may sit earlier in the file); issues
  // without a line (overrides, whole-file problems) go last, in the order found.
  auto position = [](const ConfigIssue& i) {
    return std::make_pair(i.line > 0 ? i.line : INT_MAX, i.line > 0 ? i.column : INT_MAX);
  };
  auto at = std::upper_bound(issues_.begin(), issues_.end(), issue,
                             [&](const ConfigIssue& a, const ConfigIssue& b) { return position(a) < position(b); });
  issues_.insert(at, std::move(issue));
}

void Diagnostics::throw_if_any() const {
  if (!issues_.empty()) throw ConfigError(issues_);
}

// ---------------------------------------------------------------------------------------------
// Section

Section::Section(const Document& doc, Diagnostics& diag)
    : Section(&doc, &diag, doc.root(), "", doc.root().Mark(), doc.name()) {}

Section::Section(const Document* doc, Diagnostics* diag, YAML::Node node, std::string path, YAML::Mark mark,
                 std::string origin)
    : doc_(doc),
      diag_(diag),
      node_(std::move(node)),
      path_(std::move(path)),
      mark_(mark),
      origin_(std::move(origin)),
      shared_(std::make_shared<Shared>()) {
  if (!node_.IsDefined() || node_.IsNull()) return;  // empty: every key takes its default
  if (!node_.IsMap()) {
    diag_->add(issue_at(&node_, path_, std::string("expected a mapping, got ") + kind_name(node_)));
    return;
  }
  std::set<std::string> seen;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    const YAML::Node& k = it->first;
    if (!k.IsScalar()) {
      diag_->add(issue_at(&k, path_, std::string("keys must be plain names, got ") + kind_name(k)));
      continue;
    }
    if (!seen.insert(k.Scalar()).second) {
      diag_->add(issue_at(&k, this->path(k.Scalar()), "duplicate key (an earlier value would be silently lost)"));
      continue;
    }
    entries_.push_back(Entry{k.Scalar(), k, it->second});
  }
}

std::string Section::path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const YAML::Node* Section::find(std::string_view key) const {
  for (const auto& e : entries_) {
    if (e.key == key) return &e.value;
  }
  return nullptr;
}

bool Section::has(std::string_view key) const { return find(key) != nullptr; }

void Section::allow(std::string_view key) { shared_->known.emplace(key); }

ConfigIssue Section::issue_at(const YAML::Node* node, std::string key_path, std::string message) const {
  ConfigIssue issue;
  issue.key = std::move(key_path);
  issue.message = std::move(message);
  std::string override_origin = node ? doc_->override_origin(*node) : std::string();
  if (!override_origin.empty()) {
    issue.file = override_origin;
    return issue;
  }
  issue.file = origin_;
  YAML::Mark m = (node && node->IsDefined()) ? node->Mark() : mark_;
  if (!valid_mark(m)) m = mark_;
  if (valid_mark(m) && origin_ == doc_->name()) {  // marks inside a --set value mean nothing to users
    issue.line = m.line + 1;
    issue.column = m.column + 1;
  }
  return issue;
}

void Section::error(std::string_view key, std::string message) {
  diag_->add(issue_at(find(key), path(key), std::move(message)));
}

void Section::error(std::string message) { diag_->add(issue_at(&node_, path_, std::move(message))); }

template <class T>
bool Section::read(std::string_view key, T& value) {
  shared_->known.emplace(key);
  const YAML::Node* n = find(key);
  if (!n) return false;
  std::string err = convert<T>(*n, value);
  if (!err.empty()) {
    diag_->add(issue_at(n, path(key), std::move(err)));
    return false;
  }
  return true;
}

template <class T>
bool Section::require(std::string_view key, T& value) {
  if (!has(key)) {
    shared_->known.emplace(key);
    diag_->add(issue_at(&node_, path(key), "missing required key '" + std::string(key) + "'"));
    return false;
  }
  return read(key, value);
}

template bool Section::read<bool>(std::string_view, bool&);
template bool Section::read<int>(std::string_view, int&);
template bool Section::read<int64_t>(std::string_view, int64_t&);
template bool Section::read<double>(std::string_view, double&);
template bool Section::read<std::string>(std::string_view, std::string&);
template bool Section::read<std::vector<std::string>>(std::string_view, std::vector<std::string>&);
template bool Section::read<std::vector<int64_t>>(std::string_view, std::vector<int64_t>&);
template bool Section::read<std::vector<double>>(std::string_view, std::vector<double>&);
template bool Section::require<bool>(std::string_view, bool&);
template bool Section::require<int>(std::string_view, int&);
template bool Section::require<int64_t>(std::string_view, int64_t&);
template bool Section::require<double>(std::string_view, double&);
template bool Section::require<std::string>(std::string_view, std::string&);
template bool Section::require<std::vector<std::string>>(std::string_view, std::vector<std::string>&);
template bool Section::require<std::vector<int64_t>>(std::string_view, std::vector<int64_t>&);
template bool Section::require<std::vector<double>>(std::string_view, std::vector<double>&);

Section Section::section(std::string_view key) {
  shared_->known.emplace(key);
  const YAML::Node* n = find(key);
  if (!n) return Section(doc_, diag_, YAML::Node(), path(key), mark_, origin_);
  std::string origin = doc_->override_origin(*n);
  YAML::Mark mark = valid_mark(n->Mark()) ? n->Mark() : mark_;
  return Section(doc_, diag_, *n, path(key), mark, origin.empty() ? origin_ : origin);
}

void Section::finish() {
  std::vector<std::string> known(shared_->known.begin(), shared_->known.end());
  for (const auto& [key, key_node, value] : entries_) {
    if (shared_->known.count(key)) continue;
    std::string msg = "unknown key '" + key + "'";
    std::string hint = closest(key, known);
    if (!hint.empty()) {
      msg += " (did you mean '" + hint + "'?)";
    } else if (!known.empty()) {
      msg += "; known keys here: " + join(known);
    } else {
      msg += "; no keys are expected here";
    }
    std::string from_override = doc_->override_origin(value);
    diag_->add(from_override.empty() ? issue_at(&key_node, path(key), msg)
                                     : ConfigIssue{from_override, 0, 0, path(key), msg});
  }
}

std::string Section::closest(const std::string& word, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& k : known) {
    size_t d = edit_distance(word, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  // Close enough to be a typo: at most a third of the word (and at least one edit) away.
  size_t limit = std::max<size_t>(1, std::max(word.size(), best.size()) / 3);
  if (best.empty() || best_d > limit) return {};
  return best;
}

std::string Section::unknown_value_message(const std::string& value, const std::vector<std::string>& allowed) {
  std::string msg = "unknown value '" + value + "'; expected one of: " + join(allowed);
  std::string hint = closest(value, allowed);
  if (!hint.empty()) msg += " (did you mean '" + hint + "'?)";
  return msg;
}

}  // namespace facetrain::config
