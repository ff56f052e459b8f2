// The dataset interface (data/dataset.h): every data.type gives the right images and labels, and
// bad data is a DataError naming the file and record.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>

#include "data_testing.h"
#include "facetrain/config/reader.h"
#include "facetrain/core/error.h"
#include "facetrain/data/dataset.h"
#include "facetrain/data/loader.h"
#include "facetrain/data/recordio.h"

namespace fd = facetrain::data;
namespace ft = facetrain::testing;
using ft::slurp;
using ft::spit;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return ft::recordio_fixture(name); }
std::string error_of(const std::function<void()>& f) { return ft::error_message(f); }

std::string png(int side, int value) {
  cv::Mat image(side, side, CV_8UC3, cv::Scalar(value, value + 1, value + 2));
  std::vector<uint8_t> out;
  cv::imencode(".png", image, out);
  return {out.begin(), out.end()};
}

fd::DatasetOptions recordio(const std::string& path) {
  fd::DatasetOptions o;
  o.type = "recordio";
  o.path = path;
  return o;
}

class DatasetFiles : public facetrain::testing::TempDirTest {};

}  // namespace

TEST(DatasetRecordIO, Ms1mLayoutGivesImagesAndLabelsInKeyOrder) {
  auto ds = fd::make_dataset(recordio(fixture("ms1m.rec")));
  ASSERT_EQ(ds->size(), 6);
  EXPECT_EQ(ds->num_classes(), 3);
  fd::RecordIOReader reader(fixture("ms1m.rec"));
  const std::vector<int64_t> labels{0, 0, 1, 1, 1, 2};  // make_recordio_fixtures.py: classes of 2, 3, 1
  for (int64_t i = 0; i < 6; ++i) {
    auto sample = ds->get(i);
    EXPECT_EQ(sample.label, labels[static_cast<size_t>(i)]) << i;
    EXPECT_EQ(sample.encoded, reader.read(static_cast<uint64_t>(i + 1)).image) << i;
    EXPECT_EQ(ds->where(i), fixture("ms1m.rec") + " key " + std::to_string(i + 1));
  }
  EXPECT_NE(ds->describe().find("MS1M layout: 6 images, 3 classes"), std::string::npos) << ds->describe();
}

TEST(DatasetRecordIO, FlatFileCountsClassesAndRefusesBadRecords) {
  // flat.txt: keys 5 2 9 0 7 3 11 with labels 3 0 1 2 1 0.5 4; key 9 has no image bytes.
  auto ds = fd::make_dataset(recordio(fixture("flat.rec")));
  ASSERT_EQ(ds->size(), 7);
  EXPECT_EQ(ds->num_classes(), 5);  // largest whole label + 1; the 0.5 is reported when read
  EXPECT_EQ(ds->get(0).label, 3);
  EXPECT_EQ(ds->get(6).label, 4);
  EXPECT_EQ(error_of([&] { ds->get(2); }), fixture("flat.rec") + " key 9: the record holds no image bytes");
  EXPECT_EQ(error_of([&] { ds->get(5); }),
            fixture("flat.rec") + " key 3: label 0.5 is not a class index (a whole number >= 0)");

  auto o = recordio(fixture("flat.rec"));
  o.num_classes = 4;  // key 11 has label 4
  auto capped = fd::make_dataset(o);
  EXPECT_EQ(capped->num_classes(), 4);
  EXPECT_EQ(error_of([&] { capped->get(6); }),
            fixture("flat.rec") + " key 11: label 4 is outside [0, 4) (num_classes 4)");
}

TEST_F(DatasetFiles, RecordIOWithoutIndexAndFromAFolder) {
  spit(path("noidx/data.rec"), slurp(fixture("flat.rec")));
  auto ds = fd::make_dataset(recordio(path("noidx/data.rec")));
  ASSERT_EQ(ds->size(), 7);
  EXPECT_EQ(ds->get(0).label, 3);
  EXPECT_EQ(ds->where(1), path("noidx/data.rec") + " record 1 (offset 56)");

  spit(path("folder/train.rec"), slurp(fixture("ms1m.rec")));
  spit(path("folder/train.idx"), slurp(fixture("ms1m.idx")));
  auto from_folder = fd::make_dataset(recordio(path("folder")));
  EXPECT_EQ(from_folder->size(), 6);
  EXPECT_EQ(from_folder->num_classes(), 3);

  EXPECT_NE(error_of([&] { fd::make_dataset(recordio(path("missing.rec"))); }).find("missing.rec"), std::string::npos);
  spit(path("empty/train.rec"), "");
  auto empty = error_of([&] { fd::make_dataset(recordio(path("empty"))); });
  EXPECT_NE(empty.find("holds no image record"), std::string::npos) << empty;
}

TEST_F(DatasetFiles, ImageFolderAndList) {
  spit(path("faces/b/1.png"), png(112, 10));
  spit(path("faces/a/2.png"), png(112, 20));
  spit(path("faces/a/1.png"), png(112, 30));
  fd::DatasetOptions o;
  o.type = "image_folder";
  o.path = path("faces");
  auto ds = fd::make_dataset(o);
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->num_classes(), 2);
  EXPECT_EQ(ds->where(0), path("faces") + "/a/1.png");
  EXPECT_EQ(ds->get(0).label, 0);
  EXPECT_EQ(ds->get(2).label, 1);
  EXPECT_EQ(ds->get(2).encoded, png(112, 10));

  spit(path("list.lst"), "0\t1\tfaces/a/1.png\n1\t0\tfaces/b/1.png\n");
  o.type = "list";
  o.path = path("list.lst");
  auto list = fd::make_dataset(o);
  ASSERT_EQ(list->size(), 2);
  EXPECT_EQ(list->num_classes(), 2);
  EXPECT_EQ(list->get(0).label, 1);
  EXPECT_EQ(list->get(1).encoded, png(112, 10));

  fs::remove(path("faces/b/1.png"));
  EXPECT_EQ(error_of([&] { list->get(1); }),
            "image file '" + path("faces/b/1.png") + "': cannot open it: No such file or directory");
}

TEST_F(DatasetFiles, UnalignedListEntriesAreAlignedWithTheirLandmarks) {
  // A 200x200 photo whose landmarks are the ArcFace template shifted by (40, 30): the aligned face
  // is the 112x112 window at (40, 30).
  cv::Mat photo(200, 200, CV_8UC3);
  cv::randu(photo, 0, 255);
  std::vector<uint8_t> bytes;
  cv::imencode(".png", photo, bytes);
  spit(path("photo.png"), std::string(bytes.begin(), bytes.end()));
  const double tx[5] = {38.2946, 73.5318, 56.0252, 41.5493, 70.7299};
  const double ty[5] = {51.6963, 51.5014, 71.7366, 92.3655, 92.2041};
  std::string line = "0\tphoto.png\t0\t0\t0\t200\t200";
  for (double x : tx) line += "\t" + std::to_string(x + 40);
  for (double y : ty) line += "\t" + std::to_string(y + 30);
  spit(path("train.lst"), line + "\n");
  fd::DatasetOptions o;
  o.type = "list";
  o.path = path("train.lst");
  auto sample = fd::make_dataset(o)->get(0);
  ASSERT_TRUE(sample.encoded.empty());
  ASSERT_EQ(sample.pixels.rows, 112);
  ASSERT_EQ(sample.pixels.cols, 112);
  cv::Mat diff;
  cv::absdiff(sample.pixels, photo(cv::Rect(40, 30, 112, 112)), diff);
  EXPECT_LE(cv::norm(diff, cv::NORM_INF), 1.0);

  spit(path("bare.lst"), "0\tphoto.png\t0\n");
  o.path = path("bare.lst");
  EXPECT_EQ(error_of([&] { fd::make_dataset(o)->get(0); }),
            path("photo.png") + ": marked as not aligned, but the list gives no landmarks to align it with");
}

TEST(DatasetSynthetic, RendersIdentitiesInOrder) {
  fd::DatasetOptions o;
  o.type = "synthetic";
  o.synthetic.identities = 3;
  o.synthetic.images_per_identity = 4;
  o.synthetic.seed = 5;
  auto ds = fd::make_dataset(o);
  ASSERT_EQ(ds->size(), 12);
  EXPECT_EQ(ds->num_classes(), 3);
  fd::SyntheticFaces faces(5);
  for (int64_t i : {0, 5, 11}) {
    auto sample = ds->get(i);
    EXPECT_EQ(sample.label, i / 4);
    EXPECT_EQ(sample.encoded, faces.render_jpeg(static_cast<uint64_t>(i / 4), static_cast<uint64_t>(i % 4)));
  }
  EXPECT_EQ(ds->where(5), "synthetic image 5 (identity 1, variant 1)");
}

TEST(DatasetOptions, ProblemsAndYaml) {
  fd::DatasetOptions o;
  o.type = "recordoi";
  auto message = error_of([&] { fd::make_dataset(o); });
  EXPECT_NE(message.find("unknown value 'recordoi'"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'recordio'"), std::string::npos) << message;
  o.type = "image_folder";
  EXPECT_NE(error_of([&] { fd::make_dataset(o); }).find("path is required for data.type image_folder"),
            std::string::npos);

  auto doc = facetrain::config::Document::from_string(
      "data:\n  type: synthetic\n  identities: 7\n  batch_size: 16\n  workers: 0\n  on_error: skip\n"
      "  augment:\n    crop: 0.2\n    grayscale: 2\n  shufle: false\n",
      "recipe.yaml");
  facetrain::config::Diagnostics diag;
  facetrain::config::Section root(doc, diag);
  auto data = root.section("data");
  auto config = fd::read_data_config(data);
  EXPECT_EQ(config.dataset.type, "synthetic");
  EXPECT_EQ(config.dataset.synthetic.identities, 7);
  EXPECT_EQ(config.loader.batch_size, 16);
  EXPECT_EQ(config.loader.on_error, fd::OnError::kSkip);
  EXPECT_DOUBLE_EQ(config.loader.augment.crop, 0.2);
  std::string all;
  for (const auto& issue : diag.issues()) all += issue.to_string() + "\n";
  EXPECT_NE(all.find("recipe.yaml:5:12: data.workers: must be > 0, got 0"), std::string::npos) << all;
  EXPECT_NE(all.find("recipe.yaml:9:16: data.augment.grayscale: must be in [0, 1], got 2"), std::string::npos) << all;
  EXPECT_NE(all.find("data.shufle: unknown key 'shufle' (did you mean 'shuffle'?)"), std::string::npos) << all;
  EXPECT_EQ(diag.issues().size(), 3u) << all;
}
