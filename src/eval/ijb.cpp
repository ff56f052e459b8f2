#include "facetrain/eval/ijb.h"

#include <ATen/Parallel.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <unordered_map>

#include "facetrain/core/error.h"
#include "facetrain/data/synthetic.h"

namespace facetrain::eval {

namespace {

constexpr double kPi = 3.14159265358979323846;

struct Line {
  int64_t number = 0;  // 1-based
  std::vector<std::string> fields;
};

std::string at_line(const std::string& path, int64_t number) {
  return path + ": line " + std::to_string(number) + ": ";
}

// The non-blank lines of `path`, split on white space.
std::vector<Line> read_fields(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot open (" + std::strerror(errno) + ")");
  std::vector<Line> out;
  std::string text;
  int64_t number = 0;
  while (std::getline(in, text)) {
    ++number;
    std::istringstream words(text);
    Line line{number, {}};
    for (std::string w; words >> w;) line.fields.push_back(std::move(w));
    if (!line.fields.empty()) out.push_back(std::move(line));
  }
  if (in.bad()) throw DataError(path + ": read error");
  return out;
}

void expect_columns(const std::string& path, const Line& line, size_t n, const char* layout) {
  if (line.fields.size() != n)
    throw DataError(at_line(path, line.number) + "expected " + std::to_string(n) + " columns (" + layout + "), got " +
                    std::to_string(line.fields.size()));
}

int64_t parse_int(const std::string& path, const Line& line, size_t column, const char* what) {
  const std::string& f = line.fields[column];
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(f.c_str(), &end, 10);
  if (f.empty() || *end != '\0' || errno == ERANGE)
    throw DataError(at_line(path, line.number) + what + " '" + f + "' (column " + std::to_string(column + 1) +
                    ") is not an integer");
  return v;
}

double parse_double(const std::string& path, const Line& line, size_t column, const char* what) {
  const std::string& f = line.fields[column];
  char* end = nullptr;
  const double v = std::strtod(f.c_str(), &end);
  if (f.empty() || *end != '\0' || !std::isfinite(v))
    throw DataError(at_line(path, line.number) + what + " '" + f + "' (column " + std::to_string(column + 1) +
                    ") is not a finite number");
  return v;
}

std::string meta_prefix(const std::string& target) {
  if (target == "IJBB") return "ijbb";
  if (target == "IJBC") return "ijbc";
  throw ArgumentError("IJB target '" + target + "' is unknown; expected IJBB or IJBC");
}

// The features as a contiguous CPU float64 [N, D] tensor, checked against the set.
at::Tensor checked_features(const IjbSet& set, const at::Tensor& features) {
  if (!features.defined()) throw ArgumentError("IJB features: undefined tensor");
  if (features.dim() != 2 || features.size(0) != static_cast<int64_t>(set.size()) || features.size(1) < 1)
    throw ArgumentError("IJB features: expected shape [" + std::to_string(set.size()) +
                        ", D] (one row per image of the set, D >= 1), got " + std::to_string(features.dim()) +
                        "-d tensor " + [&] {
                          std::ostringstream s;
                          s << features.sizes();
                          return s.str();
                        }());
  if (!at::isFloatingType(features.scalar_type()))
    throw ArgumentError(std::string("IJB features: expected a floating dtype, got ") +
                        c10::toString(features.scalar_type()));
  return features.to(at::kCPU, at::kDouble).contiguous();
}

// numpy's pairwise summation (numpy/core/src/umath/loops_utils.h.src, pairwise_sum_DOUBLE), which
// np.sum uses along a contiguous axis: below 8 terms a plain loop, up to 128 terms 8 interleaved
// partial sums combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) then the tail, above that the two
// halves (split at a multiple of 8) summed recursively. Matching it makes the pair scores
// bit-identical to eval_ijbc.py's np.sum(feat1 * feat2, -1) for the same template features.
double pairwise_sum(const double* a, int64_t n) {
  if (n < 8) {
    double res = 0.;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

std::string IjbSet::image_path(size_t i) const {
  if (i >= images.size())
    throw ArgumentError("IJB image " + std::to_string(i) + " is out of range (the set has " +
                        std::to_string(images.size()) + " images)");
  return (std::filesystem::path(root) / "loose_crop" / images[i]).string();
}

std::string ijb_meta_path(const std::string& root, const std::string& target, const std::string& suffix) {
  return (std::filesystem::path(root) / "meta" / (meta_prefix(target) + "_" + suffix)).string();
}

IjbSet read_ijb(const std::string& root, const std::string& target) {
  IjbSet set;
  set.root = root;
  set.target = target;
  const std::string tid_path = ijb_meta_path(root, target, "face_tid_mid.txt");
  const std::string lmk_path = ijb_meta_path(root, target, "name_5pts_score.txt");
  const std::string pair_path = ijb_meta_path(root, target, "template_pair_label.txt");

  const auto tid_lines = read_fields(tid_path);
  const auto lmk_lines = read_fields(lmk_path);
  const auto pair_lines = read_fields(pair_path);
  if (tid_lines.empty()) throw DataError(tid_path + ": lists no images");
  if (pair_lines.empty()) throw DataError(pair_path + ": lists no template pairs");

  set.images.reserve(tid_lines.size());
  for (const auto& line : tid_lines) {
    expect_columns(tid_path, line, 3, "image template media");
    set.images.push_back(line.fields[0]);
    set.templates.push_back(parse_int(tid_path, line, 1, "template id"));
    set.medias.push_back(parse_int(tid_path, line, 2, "media id"));
  }

  // eval_ijbc.py reads the image list from the landmarks file and the template/media of image i
  // from line i of the tid/mid file without comparing them, so a reordered or shortened file
  // would silently give wrong templates. Refuse instead.
  set.landmarks.reserve(lmk_lines.size());
  for (size_t i = 0; i < lmk_lines.size(); ++i) {
    const auto& line = lmk_lines[i];
    expect_columns(lmk_path, line, 12, "image x1 y1 ... x5 y5 score");
    if (i >= tid_lines.size())
      throw DataError(at_line(lmk_path, line.number) + "image '" + line.fields[0] + "' has no line in " + tid_path +
                      " (which lists " + std::to_string(tid_lines.size()) +
                      " images); the two files must list the same images in the same order");
    if (line.fields[0] != set.images[i])
      throw DataError(at_line(lmk_path, line.number) + "image '" + line.fields[0] + "', but line " +
                      std::to_string(tid_lines[i].number) + " of " + tid_path + " names '" + set.images[i] +
                      "'; the two files must list the same images in the same order");
    data::Landmarks5 points;
    for (int k = 0; k < 5; ++k) {
      points[k].x = parse_double(lmk_path, line, 1 + 2 * k, "landmark x");
      points[k].y = parse_double(lmk_path, line, 2 + 2 * k, "landmark y");
    }
    set.landmarks.push_back(points);
    set.landmark_lines.push_back(line.number);
    set.detector_scores.push_back(parse_double(lmk_path, line, 11, "detector score"));
  }
  if (lmk_lines.size() < tid_lines.size()) {
    const auto& line = tid_lines[lmk_lines.size()];
    throw DataError(at_line(tid_path, line.number) + "image '" + line.fields[0] + "' has no line in " + lmk_path +
                    " (which lists " + std::to_string(lmk_lines.size()) +
                    " images); the two files must list the same images in the same order");
  }

  const std::set<int64_t> known(set.templates.begin(), set.templates.end());
  set.pairs.reserve(pair_lines.size());
  for (const auto& line : pair_lines) {
    expect_columns(pair_path, line, 3, "template1 template2 label");
    IjbPair p;
    p.template1 = parse_int(pair_path, line, 0, "template id");
    p.template2 = parse_int(pair_path, line, 1, "template id");
    const int64_t label = parse_int(pair_path, line, 2, "label");
    if (label != 0 && label != 1)
      throw DataError(at_line(pair_path, line.number) + "label " + std::to_string(label) + " must be 0 or 1");
    p.label = static_cast<uint8_t>(label);
    for (int64_t t : {p.template1, p.template2})
      if (!known.count(t))
        throw DataError(at_line(pair_path, line.number) + "template " + std::to_string(t) + " has no image in " +
                        tid_path);
    set.pairs.push_back(p);
  }
  return set;
}

cv::Mat ijb_aligned_face(const IjbSet& set, size_t image) {
  const std::string path = set.image_path(image);
  const std::string listed = " (listed on line " +
                             std::to_string(image < set.landmark_lines.size() ? set.landmark_lines[image] : 0) +
                             " of " + ijb_meta_path(set.root, set.target, "name_5pts_score.txt") + ")";
  // Checked first: OpenCV would only log a warning and return an empty image.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw DataError(path + ": no such image" + listed);
  cv::Mat img;
  try {
    img = cv::imread(path, cv::IMREAD_COLOR);
  } catch (const cv::Exception&) {  // a corrupt file: reported below like an undecodable one
    img.release();
  }
  if (img.empty()) throw DataError(path + ": cannot decode the image" + listed);
  return data::align_face(img, set.landmarks.at(image));
}

IjbTemplates ijb_template_features(const IjbSet& set, const at::Tensor& features, const IjbScoreOptions& options) {
  const at::Tensor f = checked_features(set, features);
  const int64_t n = f.size(0), d = f.size(1);
  const double* rows = f.data_ptr<double>();

  // Images grouped by (template, media), each group in image order: np.unique sorts the ids and
  // np.where returns ascending indices.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return std::make_pair(set.templates[a], set.medias[a]) < std::make_pair(set.templates[b], set.medias[b]);
  });
  std::vector<int64_t> starts;  // first position in `order` of each template
  IjbTemplates out;
  for (int64_t k = 0; k < n; ++k) {
    if (k == 0 || set.templates[order[k]] != set.templates[order[k - 1]]) {
      starts.push_back(k);
      out.ids.push_back(set.templates[order[k]]);
    }
  }
  starts.push_back(n);
  const int64_t t_count = static_cast<int64_t>(out.ids.size());
  out.features = at::zeros({t_count, d}, at::kDouble);
  double* tf = out.features.data_ptr<double>();

  at::parallel_for(0, t_count, 16, [&](int64_t begin, int64_t end) {
    std::vector<double> media(static_cast<size_t>(d));
    for (int64_t t = begin; t < end; ++t) {
      double* acc = tf + t * d;  // np.sum over the media: 0 + m0 + m1 + ..., media ascending
      for (int64_t k = starts[t]; k < starts[t + 1];) {
        // One media: np.mean over axis 0 = rows added in image order, then one division by the
        // count (a single row is taken as is, as eval_ijbc.py does for ct == 1).
        int64_t e = k;
        std::fill(media.begin(), media.end(), 0.0);
        while (e < starts[t + 1] && set.medias[order[e]] == set.medias[order[k]]) {
          const int64_t i = order[e];
          const double s = options.use_detector_score ? set.detector_scores[i] : 1.0;
          const double* row = rows + i * d;
          for (int64_t j = 0; j < d; ++j) media[j] += row[j] * s;
          ++e;
        }
        const int64_t count = e - k;
        if (count > 1)
          for (auto& v : media) v /= static_cast<double>(count);
        for (int64_t j = 0; j < d; ++j) acc[j] += media[j];
        k = e;
      }
      // sklearn.preprocessing.normalize: x / sqrt(sum x^2), a norm below 10 * eps (near zero)
      // replaced by 1 (_handle_zeros_in_scale). sklearn sums the squares with np.einsum, whose
      // accumulation order is not numpy's pairwise one; this plain loop can differ in the last bit.
      double sq = 0;
      for (int64_t j = 0; j < d; ++j) sq += acc[j] * acc[j];
      double norm = std::sqrt(sq);
      if (norm < 10 * DBL_EPSILON) norm = 1.0;
      for (int64_t j = 0; j < d; ++j) acc[j] /= norm;
    }
  });
  return out;
}

std::vector<double> ijb_template_scores(const IjbSet& set, const at::Tensor& features, const IjbScoreOptions& options) {
  const IjbTemplates templates = ijb_template_features(set, features, options);
  std::unordered_map<int64_t, int64_t> row;
  for (size_t t = 0; t < templates.ids.size(); ++t) row[templates.ids[t]] = static_cast<int64_t>(t);
  const int64_t d = templates.features.size(1);
  const double* tf = templates.features.data_ptr<double>();
  const size_t pairs = set.pairs.size();
  std::vector<int64_t> row1(pairs), row2(pairs);
  for (size_t p = 0; p < pairs; ++p) {  // read_ijb checked the ids; a hand-made set may not
    for (int64_t t : {set.pairs[p].template1, set.pairs[p].template2})
      if (!row.count(t))
        throw ArgumentError("IJB pair " + std::to_string(p) + " names template " + std::to_string(t) +
                            ", which has no image");
    row1[p] = row.at(set.pairs[p].template1);
    row2[p] = row.at(set.pairs[p].template2);
  }
  std::vector<double> scores(pairs);
  at::parallel_for(0, static_cast<int64_t>(pairs), 1024, [&](int64_t begin, int64_t end) {
    std::vector<double> product(static_cast<size_t>(d));
    for (int64_t p = begin; p < end; ++p) {
      const double* a = tf + row1[p] * d;
      const double* b = tf + row2[p] * d;
      for (int64_t j = 0; j < d; ++j) product[j] = a[j] * b[j];
      scores[p] = pairwise_sum(product.data(), d);
    }
  });
  return scores;
}

IjbResult evaluate_ijb(const IjbSet& set, const at::Tensor& features, const IjbScoreOptions& options) {
  IjbResult r;
  r.scores = ijb_template_scores(set, features, options);
  std::vector<uint8_t> labels;
  labels.reserve(set.pairs.size());
  for (const auto& p : set.pairs) {
    labels.push_back(p.label);
    r.genuine_pairs += p.label;
  }
  r.pairs = static_cast<int64_t>(set.pairs.size());
  r.roc = roc_curve(r.scores, labels);
  for (double far : kIjbFars) r.tar_at_far.emplace_back(far, tar_at_far(r.roc, far));
  return r;
}

// ---------------------------------------------------------------------------------------------
// Fixture writer (tests and demos).

namespace {

// A uniform double in [lo, hi) from the raw engine output: std::uniform_real_distribution is
// implementation-defined, mt19937_64's output is not, so the fixture is the same everywhere.
double uniform(std::mt19937_64& rng, double lo, double hi) {
  return lo + (hi - lo) * static_cast<double>(rng() >> 11) * 0x1.0p-53;
}
uint64_t below(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw DataError(path + ": cannot write (" + std::strerror(errno) + ")");
}

template <class T>
void shuffle(std::vector<T>& v, std::mt19937_64& rng) {  // Fisher-Yates; std::shuffle is unspecified
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(rng, i)]);
}

}  // namespace

IjbFixture write_ijb_fixture(const std::string& root, const std::string& target, const IjbFixtureOptions& o) {
  (void)meta_prefix(target);  // refuses an unknown target before anything is written
  if (o.identities < 2 || o.templates_per_identity < 2 || o.loose_size < 150 || o.jpeg_quality < 1 ||
      o.jpeg_quality > 100)
    throw ArgumentError("write_ijb_fixture: needs identities >= 2 (got " + std::to_string(o.identities) +
                        "), templates_per_identity >= 2 (got " + std::to_string(o.templates_per_identity) +
                        "), loose_size >= 150 (got " + std::to_string(o.loose_size) +
                        ") and jpeg_quality in [1, 100] (got " + std::to_string(o.jpeg_quality) + ")");
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* sub : {"meta", "loose_crop"}) {
    fs::create_directories(fs::path(root) / sub, ec);
    if (ec) throw DataError((fs::path(root) / sub).string() + ": cannot create the folder (" + ec.message() + ")");
  }

  std::mt19937_64 rng(o.seed ^ 0x1eb5eedULL);
  const data::SyntheticFaces faces(o.seed);
  IjbFixture fx;
  struct ImageLine {
    std::string tid_mid, lmk;
  };
  std::vector<ImageLine> lines;
  std::vector<std::vector<int64_t>> identity_templates(static_cast<size_t>(o.identities));
  int64_t next_template = 0, next_media = 0, next_image = 0;
  const double L = o.loose_size;

  for (int64_t id = 0; id < o.identities; ++id) {
    const uint64_t identity = data::kSyntheticValidationIdBase + static_cast<uint64_t>(id);
    for (int64_t t = 0; t < o.templates_per_identity; ++t) {
      // Non-contiguous template ids; media ids decreasing as they are made, so file order, id
      // order and media order all differ.
      const int64_t template_id = 10 * (++next_template) + static_cast<int64_t>(below(rng, 7));
      identity_templates[static_cast<size_t>(id)].push_back(template_id);
      const int images = 1 + static_cast<int>(below(rng, 3));
      const int media_count = images == 1 ? 1 : 1 + static_cast<int>(below(rng, 2));
      std::vector<int64_t> media_ids;
      for (int m = 0; m < media_count; ++m) media_ids.push_back(90000 - 13 * (next_media++));
      for (int k = 0; k < images; ++k) {
        const uint64_t variant = static_cast<uint64_t>(next_image);
        const std::string name = std::to_string(++next_image) + ".jpg";
        const int64_t media = media_ids[static_cast<size_t>(k % media_count)];
        const cv::Mat face = faces.render(identity, variant);

        // face (112x112) -> loose crop: scale s, rotation theta about the face centre, shifted so
        // the whole face image stays inside the crop.
        const double s = uniform(rng, 1.0, 1.1), theta = uniform(rng, -10, 10) * kPi / 180;
        const double c = std::cos(theta), sn = std::sin(theta);
        const double margin = std::max(0.0, L / 2 - 1 - s * 56 * (std::abs(c) + std::abs(sn)));
        const double cx = L / 2 + uniform(rng, -margin, margin), cy = L / 2 + uniform(rng, -margin, margin);
        const std::array<double, 6> m = {s * c,  -s * sn, cx - s * (c * 56 - sn * 56),
                                         s * sn, s * c,   cy - s * (sn * 56 + c * 56)};
        cv::Mat canvas(o.loose_size, o.loose_size, CV_8UC3);
        cv::RNG noise(o.seed * 1000003ULL + static_cast<uint64_t>(next_image));
        const cv::Scalar base(uniform(rng, 60, 200), uniform(rng, 60, 200), uniform(rng, 60, 200));
        canvas.setTo(base);
        cv::Mat grain(canvas.size(), CV_8UC3);
        noise.fill(grain, cv::RNG::UNIFORM, cv::Scalar::all(0), cv::Scalar::all(40));
        canvas = canvas + grain - cv::Scalar::all(20);
        cv::Mat matrix(2, 3, CV_64F);
        for (int i = 0; i < 6; ++i) matrix.at<double>(i / 3, i % 3) = m[i];
        cv::warpAffine(face, canvas, matrix, canvas.size(), cv::INTER_LINEAR, cv::BORDER_TRANSPARENT);
        std::vector<uchar> jpeg;
        if (!cv::imencode(".jpg", canvas, jpeg, {cv::IMWRITE_JPEG_QUALITY, o.jpeg_quality}))
          throw DataError(name + ": JPEG encoding failed");
        const std::string image_path = (fs::path(root) / "loose_crop" / name).string();
        write_text(image_path, std::string(jpeg.begin(), jpeg.end()));

        std::ostringstream lmk;
        lmk << name;
        char buf[64];
        for (const auto& p : data::arcface_template()) {
          std::snprintf(buf, sizeof buf, " %.4f %.4f", m[0] * p.x + m[1] * p.y + m[2], m[3] * p.x + m[4] * p.y + m[5]);
          lmk << buf;
        }
        std::snprintf(buf, sizeof buf, " %.6f", uniform(rng, 0.6, 1.0));
        lmk << buf;
        lines.push_back({name + " " + std::to_string(template_id) + " " + std::to_string(media), lmk.str()});
        fx.identity.push_back(identity);
        fx.variant.push_back(variant);
        fx.placement.push_back(m);
      }
    }
  }

  // Same shuffle for both image files: they must stay line-aligned.
  std::vector<size_t> perm(lines.size());
  std::iota(perm.begin(), perm.end(), size_t{0});
  shuffle(perm, rng);
  std::string tid_text, lmk_text;
  IjbFixture shuffled;
  for (size_t i : perm) {
    tid_text += lines[i].tid_mid + "\n";
    lmk_text += lines[i].lmk + "\n";
    shuffled.identity.push_back(fx.identity[i]);
    shuffled.variant.push_back(fx.variant[i]);
    shuffled.placement.push_back(fx.placement[i]);
  }

  std::vector<std::string> pairs;
  for (const auto& ts : identity_templates)  // every genuine template pair
    for (size_t a = 0; a < ts.size(); ++a)
      for (size_t b = a + 1; b < ts.size(); ++b)
        pairs.push_back(std::to_string(ts[a]) + " " + std::to_string(ts[b]) + " 1");
  for (size_t a = 0; a < identity_templates.size(); ++a)  // one impostor pair per identity pair
    for (size_t b = a + 1; b < identity_templates.size(); ++b) {
      const auto& ta = identity_templates[a];
      const auto& tb = identity_templates[b];
      pairs.push_back(std::to_string(ta[below(rng, ta.size())]) + " " + std::to_string(tb[below(rng, tb.size())]) +
                      " 0");
    }
  shuffle(pairs, rng);
  std::string pair_text;
  for (const auto& p : pairs) pair_text += p + "\n";

  write_text(ijb_meta_path(root, target, "face_tid_mid.txt"), tid_text);
  write_text(ijb_meta_path(root, target, "name_5pts_score.txt"), lmk_text);
  write_text(ijb_meta_path(root, target, "template_pair_label.txt"), pair_text);
  return shuffled;
}

}  // namespace facetrain::eval
