// The one list of built-in heads. Adding a head: write its Impl with `Options` and `kType`, then
// add one line below. No static self-registration: it silently breaks with static linking.
#include "facetrain/heads.h"

namespace facetrain::heads {

namespace {

struct Entry {
  const char* type;
  const char* summary;
  const char* reference;
  HeadSpec (*read)(config::Section&);
  std::string (*defaults)();
};

template <class Impl>
HeadSpec read_spec(config::Section& section) {
  typename Impl::Options options;
  options.read(section);
  for (const auto& p : options.problems()) section.error(p.key, p.message);
  HeadSpec spec;
  spec.type = Impl::kType;
  spec.options = options.describe();
  spec.build = [options](const HeadGeometry& geometry) -> std::shared_ptr<MarginHeadImpl> {
    return std::make_shared<Impl>(options, geometry);
  };
  return spec;
}

template <class Impl>
std::string defaults_of() {
  return typename Impl::Options().describe();
}

template <class Impl>
Entry entry(const char* summary, const char* reference) {
  return Entry{Impl::kType, summary, reference, &read_spec<Impl>, &defaults_of<Impl>};
}

const std::vector<Entry>& builtins() {
  static const std::vector<Entry> list = {
      entry<SoftmaxImpl>("plain FC with bias, no normalisation", "face.evoLVe Softmax"),
      entry<NormFaceImpl>("s*cos, no margin", "SV-X-Softmax FC('FC')"),
      entry<CosFaceImpl>("additive cosine margin s*(cos - m)",
                         "insightface CombinedMarginLoss(m3), FaceX-Zoo AM_Softmax"),
      entry<ArcFaceImpl>("additive angular margin s*cos(theta + m)", "insightface losses.py ArcFace (to Dec 2022)"),
      entry<CombinedImpl>("s*(cos(m1*theta + m2) - m3)", "insightface MXNet combined margin"),
      entry<SphereFaceImpl>("multiplicative angular margin with annealing", "SphereFace Caffe, face.evoLVe SphereFace"),
      entry<MVSoftmaxImpl>("margin + re-weighted mis-classified vectors", "SV-X-Softmax FC('MV-AM'/'MV-Arc')"),
      entry<CurricularFaceImpl>("angular margin + curriculum on hard negatives", "HuangYG123/CurricularFace"),
      entry<AdaFaceImpl>("margin adapted to image quality (embedding norm)", "mk-minchul/AdaFace head.py"),
      entry<CircleLossImpl>("class-level Circle loss", "FaceX-Zoo CircleLoss"),
  };
  return list;
}

}  // namespace

std::string head_type_list() {
  std::string out;
  for (const auto& e : builtins()) out += (out.empty() ? "" : ", ") + std::string(e.type);
  return out;
}

std::vector<HeadInfo> head_types() {
  std::vector<HeadInfo> out;
  for (const auto& e : builtins()) out.push_back({e.type, e.summary, e.reference, e.defaults()});
  return out;
}

HeadSpec read_head(config::Section& section) {
  std::string type;
  HeadSpec spec;
  if (section.require("type", type)) {
    const Entry* found = nullptr;
    std::vector<std::string> known;
    for (const auto& e : builtins()) {
      known.push_back(e.type);
      if (type == e.type) found = &e;
    }
    if (found) {
      spec = found->read(section);
    } else {
      auto hint = config::Section::closest(type, known);
      section.error("type", "unknown head type '" + type + "'; known types: " + head_type_list() +
                                (hint.empty() ? std::string() : " (did you mean '" + hint + "'?)"));
    }
  }
  if (!spec) {
    // Without a known type, the other keys cannot be judged: accept them silently.
    if (section.node().IsMap()) {
      for (auto it = section.node().begin(); it != section.node().end(); ++it) section.allow(it->first.Scalar());
    }
  }
  section.finish();
  return spec;
}

std::shared_ptr<MarginHeadImpl> make_head(const YAML::Node& config, const HeadGeometry& geometry) {
  auto doc = config::Document::from_node(config);
  config::Diagnostics diag;
  config::Section section(doc, diag);
  HeadSpec spec = read_head(section);
  diag.throw_if_any();
  return spec.build(geometry);
}

std::shared_ptr<MarginHeadImpl> make_head(const YAML::Node& config, int64_t embedding_size, int64_t num_classes) {
  return make_head(config, HeadGeometry(embedding_size, num_classes));
}

}  // namespace facetrain::heads
