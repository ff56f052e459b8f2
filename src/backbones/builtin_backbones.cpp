// The one list of built-in backbones. Adding one: write its Impl with an options struct, then add
// a line below. No static self-registration: it silently breaks with static linking.
#include "facetrain/backbones.h"

namespace facetrain::backbones {

namespace {

struct Entry {
  const char* type;
  const char* alias;
  const char* summary;
  BackboneSpec (*read)(const char* type, config::Section*);  // null section: the defaults
};

template <class Impl, class Options>
BackboneSpec make_spec(const char* type, Options options, config::Section* section) {
  if (section) {
    options.read(*section);
    for (const auto& p : options.problems()) section->error(p.key, p.message);
  }
  BackboneSpec spec;
  spec.type = type;
  spec.options = options.CommonOptions::describe() + ", " + options.describe();
  std::string name = type;
  spec.build = [name, options]() {
    return Backbone(std::shared_ptr<BackboneImpl>(std::make_shared<Impl>(name, options)));
  };
  return spec;
}

template <int64_t L1, int64_t L2, int64_t L3, int64_t L4>
BackboneSpec iresnet(const char* type, config::Section* section) {
  IResNetOptions options;
  options.layers = {L1, L2, L3, L4};
  return make_spec<IResNetImpl>(type, options, section);
}

template <int64_t B1, int64_t B2, int64_t B3, int64_t B4, int64_t Scale>
BackboneSpec mobilefacenet(const char* type, config::Section* section) {
  MobileFaceNetOptions options;
  options.blocks = {B1, B2, B3, B4};
  options.scale = Scale;
  return make_spec<MobileFaceNetImpl>(type, options, section);
}

const std::vector<Entry>& builtins() {
  static const std::vector<Entry> list = {
      {"iresnet18", "r18", "IResNet-18, blocks [2, 2, 2, 2]", &iresnet<2, 2, 2, 2>},
      {"iresnet34", "r34", "IResNet-34, blocks [3, 4, 6, 3]", &iresnet<3, 4, 6, 3>},
      {"iresnet50", "r50", "IResNet-50, blocks [3, 4, 14, 3]", &iresnet<3, 4, 14, 3>},
      {"iresnet100", "r100", "IResNet-100, blocks [3, 13, 30, 3]", &iresnet<3, 13, 30, 3>},
      {"iresnet200", "r200", "IResNet-200, blocks [6, 26, 60, 6]", &iresnet<6, 26, 60, 6>},
      {"mobilefacenet", "mbf", "MobileFaceNet, blocks [1, 4, 6, 2], scale 2", &mobilefacenet<1, 4, 6, 2, 2>},
      {"mobilefacenet_large", "mbf_large", "MobileFaceNet, blocks [2, 8, 12, 4], scale 4",
       &mobilefacenet<2, 8, 12, 4, 4>},
  };
  return list;
}

}  // namespace

std::string backbone_type_list() {
  std::string out;
  for (const auto& e : builtins()) out += (out.empty() ? "" : ", ") + std::string(e.type);
  return out;
}

std::vector<BackboneInfo> backbone_types() {
  std::vector<BackboneInfo> out;
  for (const auto& e : builtins()) out.push_back({e.type, e.alias, e.summary, e.read(e.type, nullptr).options});
  return out;
}

BackboneSpec read_backbone(config::Section& section) {
  std::string type;
  BackboneSpec spec;
  if (section.require("type", type)) {
    const Entry* found = nullptr;
    std::vector<std::string> known;
    for (const auto& e : builtins()) {
      known.push_back(e.type);
      known.push_back(e.alias);
      if (type == e.type || type == e.alias) found = &e;
    }
    if (found) {
      bool sync_bn = false;
      section.read("sync_bn", sync_bn);
      spec = found->read(found->type, &section);
      spec.sync_bn = sync_bn;
    } else {
      auto hint = config::Section::closest(type, known);
      section.error("type", "unknown backbone type '" + type + "'; known types: " + backbone_type_list() +
                                " (or insightface's r18 ... r200, mbf, mbf_large)" +
                                (hint.empty() ? std::string() : " (did you mean '" + hint + "'?)"));
    }
  }
  if (!spec && section.node().IsMap()) {
    // Without a known type the other keys cannot be judged: accept them silently.
    for (auto it = section.node().begin(); it != section.node().end(); ++it) section.allow(it->first.Scalar());
  }
  section.finish();
  return spec;
}

Backbone make_backbone(const YAML::Node& config) {
  auto doc = config::Document::from_node(config);
  config::Diagnostics diag;
  config::Section section(doc, diag);
  BackboneSpec spec = read_backbone(section);
  diag.throw_if_any();
  return spec.build();
}

}  // namespace facetrain::backbones
