// The dataset tools (data/dataset_tools.h): image folders and lists packed to RecordIO in
// insightface's MS1M layout (checked record by record with RecordIOReader, identical for any
// number of threads), the committed fixtures and packed files unpacked byte for byte, reports on
// .rec files and folders with every kind of problem listed, and bad inputs refused with their name.
#include "facetrain/data/dataset_tools.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "data_testing.h"
#include "facetrain/core/error.h"
#include "facetrain/data/image_list.h"
#include "facetrain/data/recordio.h"

namespace fd = facetrain::data;
namespace ft = facetrain::testing;
using ft::slurp;
using ft::spit;
namespace fs = std::filesystem;

namespace {

// The image records of a fixture manifest (see tests/python/make_recordio_fixtures.py).
struct ManifestImage {
  uint64_t key = 0;
  float label = 0;  // the primary label
  std::string image;
};

std::vector<ManifestImage> manifest_images(const std::string& name) {
  std::vector<ManifestImage> out;
  for (const auto& r : ft::read_manifest(name)) {
    if (r.image) out.push_back({r.key, r.header.primary_label(), r.image_bytes});
  }
  EXPECT_FALSE(out.empty()) << name;
  return out;
}

// A small image encoded by OpenCV (".jpg", ".png"), different for each seed.
std::string encoded_image(int seed, const std::string& ext, int rows = 12, int cols = 10) {
  cv::Mat img(rows, cols, CV_8UC3);
  cv::randu(img, cv::Scalar::all(0), cv::Scalar::all(255));
  img.at<cv::Vec3b>(0, 0) = cv::Vec3b(static_cast<uchar>(seed), static_cast<uchar>(seed >> 8), 7);
  std::vector<uchar> buf;
  EXPECT_TRUE(cv::imencode(ext, img, buf));
  return std::string(buf.begin(), buf.end());
}

// The files below `dir`, relative path -> bytes.
std::map<std::string, std::string> tree(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = slurp(e.path().string());
  }
  return out;
}

std::string data_error(const std::function<void()>& f) { return ft::error_message<facetrain::DataError>(f); }

#define EXPECT_HAS(haystack, needle) EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

bool has_problem(const fd::InspectReport& r, const std::string& a, const std::string& b) {
  return std::any_of(r.problems.begin(), r.problems.end(), [&](const std::string& p) {
    return p.find(a) != std::string::npos && p.find(b) != std::string::npos;
  });
}

std::string all_problems(const fd::InspectReport& r) {
  std::string out;
  for (const auto& p : r.problems) out += p + "\n";
  return out;
}

class DatasetToolsBase : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("facetrain_dataset_tools_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string path(const std::string& rel) const { return (root_ / rel).string(); }
  // Writes an image file under the root; returns its bytes.
  std::string image_file(const std::string& rel, int seed) {
    const std::string ext = fs::path(rel).extension().string();
    std::string bytes = encoded_image(seed, ext);
    spit(path(rel), bytes);
    return bytes;
  }
  // An image folder: classes "10" (2 images), "2" (3 images, one in a sub-folder, one PNG) and
  // "a" (1 image); ImageFolder orders them 10, 2, a.
  std::string make_folder(const std::string& rel = "faces") {
    image_file(rel + "/10/x.jpg", 1);
    image_file(rel + "/10/y.jpg", 2);
    image_file(rel + "/2/b.jpg", 3);
    image_file(rel + "/2/sub/c.png", 4);
    image_file(rel + "/2/a.jpg", 5);
    image_file(rel + "/a/z.jpg", 6);
    return path(rel);
  }
  fs::path root_;
};

class DatasetToolsPack : public DatasetToolsBase {};
class DatasetToolsUnpack : public DatasetToolsBase {};
class DatasetToolsInspect : public DatasetToolsBase {};
class DatasetToolsErrors : public DatasetToolsBase {};

// --- pack ------------------------------------------------------------------------------------

TEST_F(DatasetToolsPack, FolderBecomesMs1mRecordIO) {
  const std::string folder = make_folder();
  const auto list = fd::scan_image_folder(folder);
  ASSERT_EQ(list.class_names, (std::vector<std::string>{"10", "2", "a"}));
  std::vector<std::pair<int64_t, int64_t>> progress;
  fd::PackOptions options;
  options.progress = [&](int64_t done, int64_t total) { progress.emplace_back(done, total); };
  const auto summary = fd::pack_images(list, path("out/train"), options);
  EXPECT_EQ(summary.images, 6);
  EXPECT_EQ(summary.identities, 3);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(int64_t{6}, int64_t{6}));
  EXPECT_EQ(slurp(path("out/property")), "3,112,112\n");

  fd::RecordIOReader reader(path("out/train.rec"));
  ASSERT_TRUE(reader.has_index());
  const auto layout = fd::detect_layout(reader);
  EXPECT_EQ(layout.kind, fd::RecordLayout::kMs1m);
  EXPECT_EQ(layout.num_images, 6);
  EXPECT_EQ(layout.num_classes, 3);
  EXPECT_FALSE(layout.meta_after_images);
  EXPECT_EQ(reader.offset_of(0), 0u);  // the meta record is stored first
  EXPECT_EQ(reader.keys(), (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  using Range = std::pair<uint64_t, uint64_t>;
  EXPECT_EQ(layout.class_ranges, (std::vector<Range>{{1, 3}, {3, 6}, {6, 7}}));
  const auto meta = reader.read(0);
  EXPECT_EQ(meta.header.labels, (std::vector<float>{7, 10}));

  // Keys 1..6 in ImageFolder order, bytes unchanged; "2/sub/c.png" comes after "2/b.jpg" (folder order).
  const std::vector<std::pair<std::string, float>> want = {{"10/x.jpg", 0}, {"10/y.jpg", 0},    {"2/a.jpg", 1},
                                                           {"2/b.jpg", 1},  {"2/sub/c.png", 1}, {"a/z.jpg", 2}};
  for (uint64_t key = 1; key <= 6; ++key) {
    const auto r = reader.read(key);
    const auto& [file, cls] = want[key - 1];
    EXPECT_EQ(r.header.flag, 2u) << key;
    EXPECT_EQ(r.header.labels, (std::vector<float>{cls, 1.0f})) << key;
    EXPECT_EQ(r.header.id, key);
    EXPECT_EQ(r.image, slurp(folder + "/" + file)) << key << " " << file;
  }
  for (uint64_t key = 7; key <= 9; ++key) EXPECT_TRUE(reader.read(key).image.empty());
}

TEST_F(DatasetToolsPack, MxnetListIsGroupedByClassStably) {
  const std::string a = image_file("imgs/a.jpg", 1), b = image_file("imgs/b.png", 2), c = image_file("imgs/c.jpg", 3),
                    d = image_file("imgs/d.jpg", 4), e = image_file("imgs/e.jpg", 5);
  spit(path("imgs/train.lst"), "0\t1\ta.jpg\n1\t0.000000\tb.png\n2\t1\tc.jpg\n3\t0\td.jpg\n4\t2\te.jpg\n");
  const auto list = fd::read_image_list(path("imgs/train.lst"));
  fd::pack_images(list, path("rec/data"));
  fd::RecordIOReader reader(path("rec/data.rec"));
  const auto layout = fd::detect_layout(reader);
  EXPECT_EQ(layout.kind, fd::RecordLayout::kMs1m);
  EXPECT_EQ(layout.num_classes, 3);
  using Range = std::pair<uint64_t, uint64_t>;
  EXPECT_EQ(layout.class_ranges, (std::vector<Range>{{1, 3}, {3, 5}, {5, 6}}));
  const std::vector<std::pair<std::string, float>> want = {{b, 0}, {d, 0}, {a, 1}, {c, 1}, {e, 2}};
  for (uint64_t key = 1; key <= 5; ++key) {
    const auto r = reader.read(key);
    EXPECT_EQ(r.header.primary_label(), want[key - 1].second) << key;
    EXPECT_EQ(r.image, want[key - 1].first) << key;
  }
  EXPECT_EQ(slurp(path("rec/property")), "3,112,112\n");
}

TEST_F(DatasetToolsPack, OutputDoesNotDependOnThreads) {
  // More images than one window holds (4096), of random sizes, some holding the RecordIO magic
  // (split records); pack does not decode, so raw bytes do.
  std::mt19937 rng(7);
  const int classes = 5, images = 4500;
  std::string lst;
  for (int i = 0; i < images; ++i) {
    std::string bytes(rng() % 300, '\0');
    for (auto& ch : bytes) ch = static_cast<char>(rng());
    if (i % 7 == 0 && bytes.size() >= 8) bytes.replace(4, 4, std::string("\x0a\x23\xd7\xce", 4));
    const std::string name = "f" + std::to_string(i) + ".jpg";
    spit(path("many/" + name), bytes);
    lst += std::to_string(i) + "\t" + std::to_string(rng() % classes) + "\t" + name + "\n";
  }
  spit(path("many/list.lst"), lst);
  const auto list = fd::read_image_list(path("many/list.lst"));
  fd::PackOptions one, three;
  one.threads = 1;
  three.threads = 3;
  fd::pack_images(list, path("t1/x"), one);
  fd::pack_images(list, path("t3/x"), three);
  EXPECT_EQ(slurp(path("t1/x.rec")), slurp(path("t3/x.rec")));
  EXPECT_EQ(slurp(path("t1/x.idx")), slurp(path("t3/x.idx")));
  fd::RecordIOReader reader(path("t3/x.rec"));
  const auto layout = fd::detect_layout(reader);
  EXPECT_EQ(layout.num_images, images);
  // Every image's bytes, in class-then-list order.
  std::vector<size_t> order(list.entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return list.entries[x].label < list.entries[y].label; });
  for (uint64_t key = 1; key <= static_cast<uint64_t>(images); key += 97) {
    const auto& entry = list.entries[order[key - 1]];
    const auto r = reader.read(key);
    EXPECT_EQ(r.image, slurp(entry.path)) << key;
    EXPECT_EQ(r.header.primary_label(), static_cast<float>(entry.label)) << key;
  }
}

TEST_F(DatasetToolsPack, RefusesListsItCannotPack) {
  image_file("imgs/a.jpg", 1);
  spit(path("imgs/gap.lst"), "0\t0\ta.jpg\n1\t2\ta.jpg\n");
  const auto gap = fd::read_image_list(path("imgs/gap.lst"));
  auto m = data_error([&] { fd::pack_images(gap, path("out/gap")); });
  EXPECT_HAS(m, "gap.lst");
  EXPECT_HAS(m, "class(es) 1 of 0..2 have no image");
  EXPECT_FALSE(fs::exists(path("out/gap.rec")));

  spit(path("imgs/missing.lst"), "0\t0\ta.jpg\n1\t0\tnot_there.jpg\n");
  const auto missing = fd::read_image_list(path("imgs/missing.lst"));
  m = data_error([&] { fd::pack_images(missing, path("out/missing")); });
  EXPECT_HAS(m, "not_there.jpg");
  EXPECT_FALSE(fs::exists(path("out/missing.rec")));  // atomic: nothing left behind
  EXPECT_FALSE(fs::exists(path("out/missing.idx")));

  m = data_error([&] { fd::pack_images(fd::ImageList{}, path("out/empty")); });
  EXPECT_HAS(m, "no image");
}

// --- unpack ----------------------------------------------------------------------------------

TEST_F(DatasetToolsUnpack, FixturesGiveEveryImageRecord) {
  // ms1m: images are keys 1..6 (the manifest also lists the meta and identity records).
  auto ms1m = manifest_images("ms1m");
  ms1m.erase(std::remove_if(ms1m.begin(), ms1m.end(), [](const ManifestImage& m) { return m.key == 0 || m.key > 6; }),
             ms1m.end());
  // split: only three of its payloads are image records; the others are skipped.
  const auto split = manifest_images("split");
  ASSERT_EQ(split.size(), 3u);
  for (const auto& [name, want, skipped] : {std::make_tuple("ms1m", ms1m, 0), std::make_tuple("split", split, 6)}) {
    const std::string out = path(std::string(name) + "_out");
    const auto summary = fd::unpack_records(ft::recordio_fixture(std::string(name) + ".rec"), out);
    EXPECT_EQ(summary.images, static_cast<int64_t>(want.size())) << name;
    EXPECT_EQ(summary.skipped, skipped) << name;
    std::map<std::string, std::string> expected;
    std::set<std::string> labels;
    for (const auto& m : want) {
      const std::string label = std::to_string(static_cast<int64_t>(m.label));
      expected[label + "/" + std::to_string(m.key) + ".jpg"] = m.image;
      labels.insert(label);
    }
    EXPECT_EQ(tree(out), expected) << name;
    EXPECT_EQ(summary.identities, static_cast<int64_t>(labels.size())) << name;
  }
}

TEST_F(DatasetToolsUnpack, FlatFixtureStopsAtItsFractionalLabel) {
  // flat holds key 3 with label 0.5 (stored sixth): unpack names it; the records before it are out.
  const std::string out = path("flat_out");
  const auto m = data_error([&] { fd::unpack_records(ft::recordio_fixture("flat.rec"), out); });
  EXPECT_HAS(m, "flat.rec");
  EXPECT_HAS(m, "key 3");
  EXPECT_HAS(m, "label 0.5");
  std::map<std::string, std::string> expected;
  for (const auto& r : manifest_images("flat")) {
    if (r.key == 3) break;  // in .idx order
    expected[std::to_string(static_cast<int64_t>(r.label)) + "/" + std::to_string(r.key) + ".jpg"] = r.image;
  }
  EXPECT_EQ(expected.size(), 5u);
  EXPECT_EQ(tree(out), expected);

  // Without key 3 (copied record by record), everything comes out, the empty image included.
  {
    fd::RecordIOReader in(ft::recordio_fixture("flat.rec"));
    fd::RecordIOWriter copy(path("flat_ok.rec"));
    for (uint64_t key : in.keys()) {
      if (key != 3) copy.write_payload(key, in.read_payload(key));
    }
    copy.finish();
  }
  const auto summary = fd::unpack_records(path("flat_ok.rec"), path("flat_ok_out"));
  expected.clear();
  for (const auto& r : manifest_images("flat")) {
    if (r.key != 3)
      expected[std::to_string(static_cast<int64_t>(r.label)) + "/" + std::to_string(r.key) + ".jpg"] = r.image;
  }
  EXPECT_EQ(summary.images, 6);
  EXPECT_EQ(summary.identities, 5);
  EXPECT_EQ(tree(path("flat_ok_out")), expected);
  EXPECT_EQ(slurp(path("flat_ok_out/1/9.jpg")), "");
}

TEST_F(DatasetToolsUnpack, WithoutIndexKeysArePositions) {
  // split.rec without its .idx: records in file order 3 0 4 1 6 2 5 8 7; image records are keys
  // 6, 5 and 8, at positions 4, 6 and 7.
  fs::copy_file(ft::recordio_fixture("split.rec"), path("split.rec"));
  std::vector<std::pair<int64_t, int64_t>> progress;
  const auto summary = fd::unpack_records(path("split.rec"), path("out"),
                                          [&](int64_t done, int64_t total) { progress.emplace_back(done, total); });
  EXPECT_EQ(summary.images, 3);
  EXPECT_EQ(summary.skipped, 6);
  std::map<std::string, std::string> expected;
  const std::map<uint64_t, int> position = {{6, 4}, {5, 6}, {8, 7}};
  for (const auto& m : manifest_images("split")) {
    expected[std::to_string(static_cast<int64_t>(m.label)) + "/" + std::to_string(position.at(m.key)) + ".jpg"] =
        m.image;
  }
  EXPECT_EQ(tree(path("out")), expected);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(int64_t{332}, int64_t{332}));  // bytes without an index

  // A packed file (meta record first) without its index: positions 1..N are the image keys.
  const std::string folder = make_folder();
  fd::pack_images(fd::scan_image_folder(folder), path("packed/x"));
  fd::unpack_records(path("packed/x.rec"), path("with_idx"));
  fs::remove(path("packed/x.idx"));
  const auto no_idx = fd::unpack_records(path("packed/x.rec"), path("without_idx"));
  EXPECT_EQ(no_idx.images, 6);
  EXPECT_EQ(no_idx.skipped, 0);
  EXPECT_EQ(tree(path("without_idx")), tree(path("with_idx")));
}

TEST_F(DatasetToolsUnpack, UnpackOfPackGivesTheFolderBack) {
  const std::string folder = make_folder();
  const auto list = fd::scan_image_folder(folder);
  fd::pack_images(list, path("rec/train"));
  const auto summary = fd::unpack_records(path("rec/train.rec"), path("out"));
  EXPECT_EQ(summary.images, 6);
  EXPECT_EQ(summary.identities, 3);
  // OUT/<label>/<key>.jpg: label i is class_names[i], key k the k-th image in list order.
  std::map<std::string, std::string> expected;
  for (size_t i = 0; i < list.entries.size(); ++i) {
    expected[std::to_string(list.entries[i].label) + "/" + std::to_string(i + 1) + ".jpg"] =
        slurp(list.entries[i].path);
  }
  EXPECT_EQ(tree(path("out")), expected);
  // The class mapping: folder "10" is label 0, "2" label 1, "a" label 2.
  EXPECT_EQ(slurp(path("out/0/1.jpg")), slurp(folder + "/10/x.jpg"));
  EXPECT_EQ(slurp(path("out/1/5.jpg")), slurp(folder + "/2/sub/c.png"));
  EXPECT_EQ(slurp(path("out/2/6.jpg")), slurp(folder + "/a/z.jpg"));
}

// --- inspect ---------------------------------------------------------------------------------

TEST_F(DatasetToolsInspect, Fixtures) {
  const auto ms1m = fd::inspect_dataset(ft::recordio_fixture("ms1m.rec"));
  EXPECT_EQ(ms1m.kind, "recordio");
  EXPECT_EQ(ms1m.layout, "MS1M layout: 6 images, 3 classes (meta record stored after the images)");
  EXPECT_EQ(ms1m.images, 6);
  EXPECT_EQ(ms1m.identities, 3);
  EXPECT_EQ(ms1m.images_per_identity_min, 1);
  EXPECT_EQ(ms1m.images_per_identity_median, 2.0);
  EXPECT_EQ(ms1m.images_per_identity_max, 3);
  EXPECT_TRUE(ms1m.problems.empty()) << all_problems(ms1m);
  EXPECT_EQ(ms1m.problem_count, 0);

  // flat: labels 3 0 1 2 1 0.5 4 (key 9 has no image bytes).
  const auto flat = fd::inspect_dataset(ft::recordio_fixture("flat.rec"));
  EXPECT_EQ(flat.layout, "flat layout: 7 images");
  EXPECT_EQ(flat.images, 7);
  EXPECT_EQ(flat.identities, 5);
  EXPECT_EQ(flat.images_per_identity_min, 1);
  EXPECT_EQ(flat.images_per_identity_median, 1.0);
  EXPECT_EQ(flat.images_per_identity_max, 2);
  EXPECT_EQ(flat.problem_count, 2) << all_problems(flat);
  EXPECT_TRUE(has_problem(flat, "key 3:", "label 0.5 is not a whole non-negative number")) << all_problems(flat);
  EXPECT_TRUE(has_problem(flat, "key 9:", "empty image")) << all_problems(flat);

  // split: key 0 is a raw payload, so the file is flat; six payloads are not image records.
  const auto split = fd::inspect_dataset(ft::recordio_fixture("split.rec"));
  EXPECT_EQ(split.layout, "flat layout: 9 images");
  EXPECT_EQ(split.identities, 3);
  EXPECT_EQ(split.problem_count, 6) << all_problems(split);
  EXPECT_TRUE(has_problem(split, "key 0:", "not an image record")) << all_problems(split);

  // The text and JSON forms.
  const std::string text = flat.to_text();
  EXPECT_HAS(text, "path: " + ft::recordio_fixture("flat.rec") + "\n");
  EXPECT_HAS(text, "kind: recordio\n");
  EXPECT_HAS(text, "layout: flat layout: 7 images\n");
  EXPECT_HAS(text, "images: 7\nidentities: 5\n");
  EXPECT_HAS(text, "images per identity: min 1, median 1, max 2\n");
  EXPECT_HAS(text, "problems: 2\n  key ");
  const auto json = flat.to_json();
  for (const char* key :
       {"path", "kind", "layout", "images", "identities", "images_per_identity", "problem_count", "problems"}) {
    EXPECT_TRUE(json.contains(key)) << key;
  }
  EXPECT_EQ(json["images_per_identity"]["median"].get<double>(), 1.0);
  EXPECT_EQ(json["images_per_identity"]["min"].get<int64_t>(), 1);
  EXPECT_EQ(json["images_per_identity"]["max"].get<int64_t>(), 2);
  EXPECT_EQ(json["images"].get<int64_t>(), 7);
  EXPECT_EQ(json["problems"].size(), 2u);
  EXPECT_EQ(json["kind"], "recordio");
}

TEST_F(DatasetToolsInspect, ImageFolderAndPackedCopyAgree) {
  // Classes of 1, 2, 3 and 5 images: median 2.5 (numpy: the mean of the two middle counts).
  int seed = 0;
  for (int c = 0; c < 4; ++c) {
    const int n = c == 3 ? 5 : c + 1;
    for (int i = 0; i < n; ++i) image_file("faces/c" + std::to_string(c) + "/" + std::to_string(i) + ".jpg", ++seed);
  }
  std::vector<std::pair<int64_t, int64_t>> progress;
  fd::InspectOptions options;
  options.decode = true;
  options.progress = [&](int64_t done, int64_t total) { progress.emplace_back(done, total); };
  const auto folder = fd::inspect_dataset(path("faces"), options);
  EXPECT_EQ(folder.kind, "image_folder");
  EXPECT_EQ(folder.layout, "image folder");
  EXPECT_EQ(folder.images, 11);
  EXPECT_EQ(folder.identities, 4);
  EXPECT_EQ(folder.images_per_identity_min, 1);
  EXPECT_EQ(folder.images_per_identity_median, 2.5);
  EXPECT_EQ(folder.images_per_identity_max, 5);
  EXPECT_TRUE(folder.problems.empty()) << all_problems(folder);
  EXPECT_HAS(folder.to_text(), "images per identity: min 1, median 2.5, max 5\n");
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(int64_t{11}, int64_t{11}));

  fd::pack_images(fd::scan_image_folder(path("faces")), path("rec/faces"));
  for (int64_t threads : {1, 3}) {
    options.threads = threads;
    const auto rec = fd::inspect_dataset(path("rec/faces.rec"), options);
    EXPECT_EQ(rec.layout, "MS1M layout: 11 images, 4 classes");
    EXPECT_EQ(rec.images, 11);
    EXPECT_EQ(rec.identities, 4);
    EXPECT_EQ(rec.images_per_identity_median, 2.5);
    EXPECT_TRUE(rec.problems.empty()) << all_problems(rec);
  }
}

TEST_F(DatasetToolsInspect, FolderProblems) {
  image_file("faces/a/good.jpg", 1);
  spit(path("faces/a/bad.jpg"), "not a jpeg at all");
  spit(path("faces/b/empty.png"), "");
  const auto quick = fd::inspect_dataset(path("faces"));
  EXPECT_EQ(quick.images, 3);
  EXPECT_EQ(quick.identities, 2);
  EXPECT_EQ(quick.problem_count, 1) << all_problems(quick);  // not decoded: only the empty file
  EXPECT_TRUE(has_problem(quick, "empty.png", "empty file")) << all_problems(quick);
  fd::InspectOptions decode;
  decode.decode = true;
  const auto full = fd::inspect_dataset(path("faces"), decode);
  EXPECT_EQ(full.problem_count, 2) << all_problems(full);
  EXPECT_TRUE(has_problem(full, "bad.jpg", "does not decode")) << all_problems(full);
  EXPECT_FALSE(has_problem(full, "good.jpg", "")) << all_problems(full);
}

TEST_F(DatasetToolsInspect, RecordProblemsAreListedWithTheirKey) {
  // An MS1M file of 2 classes: keys 1..4 class 0, keys 5..8 class 1, with damage in some records.
  const std::string jpeg = encoded_image(1, ".jpg");
  {
    fd::RecordIOWriter w(path("bad.rec"));
    w.write(0, fd::RecordHeader::with_labels({9, 11}), "");
    const std::vector<std::pair<float, std::string>> images = {
        {0, jpeg},                   // 1 fine
        {-1, jpeg},                  // 2 negative label
        {0.5f, jpeg},                // 3 fractional label
        {1, jpeg},                   // 4 label 1 inside class 0's range
        {7, jpeg},                   // 5 label 7 >= 2 classes
        {1, ""},                     // 6 empty image
        {1, "garbage, not a JPEG"},  // 7 undecodable
        {1, jpeg},                   // 8 fine
    };
    for (size_t i = 0; i < images.size(); ++i) {
      const uint64_t key = i + 1;
      w.write(key, fd::RecordHeader::with_labels({images[i].first, 1.0f}, key), images[i].second);
    }
    w.write(9, fd::RecordHeader::with_labels({1, 5}), "");
    w.write(10, fd::RecordHeader::with_labels({5, 9}), "");
    w.finish();
  }
  fd::InspectOptions decode;
  decode.decode = true;
  const auto r = fd::inspect_dataset(path("bad.rec"), decode);
  EXPECT_EQ(r.layout, "MS1M layout: 8 images, 2 classes");
  EXPECT_EQ(r.images, 8);
  const std::string all = all_problems(r);
  EXPECT_EQ(r.problem_count, 6) << all;
  EXPECT_TRUE(has_problem(r, "key 2:", "label -1 is not a whole non-negative number")) << all;
  EXPECT_TRUE(has_problem(r, "key 3:", "label 0.5 is not a whole non-negative number")) << all;
  EXPECT_TRUE(has_problem(r, "key 4:", "label 1 differs from its identity record")) << all;
  EXPECT_TRUE(has_problem(r, "key 4:", "class 0's range [1, 5)")) << all;
  EXPECT_TRUE(has_problem(r, "key 5:", "label 7 is not below the number of classes (2)")) << all;
  EXPECT_TRUE(has_problem(r, "key 6:", "empty image")) << all;
  EXPECT_TRUE(has_problem(r, "key 7:", "does not decode")) << all;
  // Counted: labels 0 (keys 1), 1 (keys 4, 6, 7, 8), 7 (key 5).
  EXPECT_EQ(r.identities, 3);
  EXPECT_EQ(r.images_per_identity_max, 4);
  // Without decoding, key 7 passes.
  const auto quick = fd::inspect_dataset(path("bad.rec"));
  EXPECT_EQ(quick.problem_count, 5) << all_problems(quick);
  EXPECT_FALSE(has_problem(quick, "key 7:", "")) << all_problems(quick);
  // Without the index: records in file order, named by position; the meta record first marks MS1M.
  fs::remove(path("bad.idx"));
  const auto no_idx = fd::inspect_dataset(path("bad.rec"), decode);
  EXPECT_EQ(no_idx.layout, "MS1M layout: 8 images, 2 classes (no index: records read in file order)");
  EXPECT_EQ(no_idx.problem_count, 5) << all_problems(no_idx);  // no identity ranges to compare with
  EXPECT_TRUE(has_problem(no_idx, "record 3 (byte offset", "label 0.5")) << all_problems(no_idx);
}

TEST_F(DatasetToolsInspect, ProblemListIsCapped) {
  {
    fd::RecordIOWriter w(path("many.rec"));
    for (uint64_t key = 0; key < 150; ++key) w.write(key, fd::RecordHeader::scalar(0.25f), "x");
    w.finish();
  }
  const auto r = fd::inspect_dataset(path("many.rec"));
  EXPECT_EQ(r.layout, "flat layout: 150 images");
  EXPECT_EQ(r.problem_count, 150);
  ASSERT_EQ(r.problems.size(), 101u);
  EXPECT_EQ(r.problems.back(), "... and 50 more");
  EXPECT_HAS(r.to_text(), "problems: 150\n");
  EXPECT_EQ(r.identities, 0);
  EXPECT_EQ(r.images_per_identity_median, 0.0);
}

// --- bad inputs ------------------------------------------------------------------------------

TEST_F(DatasetToolsErrors, NamesTheFile) {
  auto m = data_error([&] { fd::inspect_dataset(path("nope.rec")); });
  EXPECT_HAS(m, "nope.rec");
  EXPECT_HAS(m, "cannot open");
  m = data_error([&] { fd::unpack_records(path("nope.rec"), path("out")); });
  EXPECT_HAS(m, "nope.rec");
  m = data_error([&] { fd::inspect_dataset(path("no_folder")); });
  EXPECT_HAS(m, "no_folder");
  fs::create_directories(path("empty_folder"));
  m = data_error([&] { fd::inspect_dataset(path("empty_folder")); });
  EXPECT_HAS(m, "empty_folder");

  // A truncated .rec: with its .idx, the index points past the end; without, the last record is cut.
  const std::string rec = slurp(ft::recordio_fixture("ms1m.rec"));
  spit(path("cut.rec"), rec.substr(0, 270));  // inside key 6 (offset 244)
  fs::copy_file(ft::recordio_fixture("ms1m.idx"), path("cut.idx"));
  m = data_error([&] { fd::inspect_dataset(path("cut.rec")); });
  EXPECT_HAS(m, "cut.rec");
  m = data_error([&] { fd::unpack_records(path("cut.rec"), path("cut_out")); });
  EXPECT_HAS(m, "cut.rec");
  fs::remove(path("cut.idx"));
  m = data_error([&] { fd::inspect_dataset(path("cut.rec")); });
  EXPECT_HAS(m, "cut.rec");
  EXPECT_HAS(m, "truncated");
  m = data_error([&] { fd::unpack_records(path("cut.rec"), path("cut_out2")); });
  EXPECT_HAS(m, "truncated");

  // A negative label stops unpack, naming the key.
  {
    fd::RecordIOWriter w(path("neg.rec"));
    w.write(4, fd::RecordHeader::scalar(2), "ok");
    w.write(8, fd::RecordHeader::scalar(-3), "bad");
    w.finish();
  }
  m = data_error([&] { fd::unpack_records(path("neg.rec"), path("neg_out")); });
  EXPECT_HAS(m, "neg.rec");
  EXPECT_HAS(m, "key 8");
  EXPECT_HAS(m, "label -3");
  EXPECT_EQ(slurp(path("neg_out/2/4.jpg")), "ok");
  EXPECT_FALSE(fs::exists(path("neg_out/-3")));
}

}  // namespace
