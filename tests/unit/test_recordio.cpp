// MXNet RecordIO (data/recordio.h): the committed fixtures written by an independent Python writer
// (tests/python/make_recordio_fixtures.py) are read key by key and sequentially, rewritten
// byte-identically by RecordIOWriter, their layouts detected; every kind of damage gives a
// facetrain::DataError naming the file and the record, and nothing else.
#include "facetrain/data/recordio.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "data_testing.h"
#include "facetrain/core/error.h"

namespace fd = facetrain::data;
namespace ft = facetrain::testing;
using ft::ManifestRecord;
using ft::read_manifest;
using ft::recordio_fixture;
using ft::slurp;
using ft::spit;
using ft::unhex;
namespace fs = std::filesystem;

namespace {

const std::string kMagic("\x0a\x23\xd7\xce", 4);

std::string u32(uint32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(v >> (8 * i));
  return out;
}

// A hand-made chunk: magic, lrec, data, zero padding.
std::string chunk(uint32_t cflag, const std::string& data) {
  std::string out = kMagic + u32(cflag << 29 | static_cast<uint32_t>(data.size())) + data;
  out.append((4 - data.size() % 4) % 4, '\0');
  return out;
}

void expect_header(const fd::RecordHeader& got, const fd::RecordHeader& want, const std::string& what) {
  EXPECT_EQ(got.flag, want.flag) << what;
  EXPECT_EQ(got.label, want.label) << what;
  EXPECT_EQ(got.id, want.id) << what;
  EXPECT_EQ(got.id2, want.id2) << what;
  EXPECT_EQ(got.labels, want.labels) << what;
}

std::string data_error(const std::function<void()>& f) { return ft::error_message<facetrain::DataError>(f); }
std::string argument_error(const std::function<void()>& f) { return ft::error_message<facetrain::ArgumentError>(f); }

#define EXPECT_HAS(message, piece) EXPECT_NE((message).find(piece), std::string::npos) << (message)

class RecordIOFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("facetrain_recordio_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Copies fixture NAME.rec/.idx into the temporary folder; returns the .rec path.
  std::string copy_fixture(const std::string& name, bool with_index = true) {
    fs::copy_file(recordio_fixture(name + ".rec"), path(name + ".rec"), fs::copy_options::overwrite_existing);
    if (with_index)
      fs::copy_file(recordio_fixture(name + ".idx"), path(name + ".idx"), fs::copy_options::overwrite_existing);
    return path(name + ".rec");
  }
  // Writes a .rec of hand-made bytes and, if given, an .idx; returns the .rec path.
  std::string make(const std::string& name, const std::string& rec, std::optional<std::string> idx = std::nullopt) {
    spit(path(name + ".rec"), rec);
    if (idx) spit(path(name + ".idx"), *idx);
    return path(name + ".rec");
  }
  fs::path dir_;
};

const char* const kFixtures[] = {"ms1m", "flat", "split"};

// --- payload --------------------------------------------------------------------------------

TEST(RecordIOPayload, PacksAsMxnetAndUnpacks) {
  // mxnet.recordio.pack(IRHeader(0, 3.0, 7, 1), b'ab') = struct.pack('IfQQ', 0, 3.0, 7, 1) + b'ab'
  const std::string scalar = fd::pack_record(fd::RecordHeader::scalar(3.0f, 7, 1), "ab");
  EXPECT_EQ(scalar, u32(0) + u32(0x40400000) + u32(7) + u32(0) + u32(1) + u32(0) + "ab");
  // An array label: flag = its size, label 0, the labels after the header.
  const std::string array = fd::pack_record(fd::RecordHeader::with_labels({2.0f, 1.0f}, 5), "");
  EXPECT_EQ(array, u32(2) + u32(0) + u32(5) + u32(0) + u32(0) + u32(0) + u32(0x40000000) + u32(0x3f800000));

  fd::RecordHeader h;
  std::string image;
  fd::unpack_record(array, h, image);
  expect_header(h, fd::RecordHeader::with_labels({2.0f, 1.0f}, 5), "array");
  EXPECT_EQ(image, "");
  EXPECT_EQ(h.primary_label(), 2.0f);
  fd::unpack_record(scalar, h, image);
  expect_header(h, fd::RecordHeader::scalar(3.0f, 7, 1), "scalar");
  EXPECT_EQ(image, "ab");
  EXPECT_EQ(h.primary_label(), 3.0f);
}

TEST(RecordIOPayload, RefusesInconsistentHeadersAndShortPayloads) {
  fd::RecordHeader h = fd::RecordHeader::with_labels({1.0f, 2.0f});
  h.flag = 3;
  EXPECT_HAS(argument_error([&] { fd::pack_record(h, "x"); }), "flag is 3 but header.labels holds 2");

  std::string image;
  EXPECT_HAS(data_error([&] { fd::unpack_record(std::string(23, '\0'), h, image); }),
             "23 bytes, fewer than the 24-byte IRHeader");
  // flag 3 announces 12 bytes of labels; only 8 follow.
  std::string payload = u32(3) + std::string(20, '\0') + std::string(8, '\0');
  EXPECT_HAS(data_error([&] { fd::unpack_record(payload, h, image); }),
             "announces 3 float32 labels (12 bytes) but only 8 bytes follow");
  // A huge flag must not overflow or allocate.
  payload = u32(0xffffffffu) + std::string(20, '\0');
  EXPECT_HAS(data_error([&] { fd::unpack_record(payload, h, image); }), "announces 4294967295 float32 labels");
}

TEST(RecordIOPayload, IndexPathFor) {
  EXPECT_EQ(fd::index_path_for("a/train.rec"), "a/train.idx");
  EXPECT_EQ(fd::index_path_for("train"), "train.idx");
  EXPECT_EQ(fd::index_path_for("x.rec.bak"), "x.rec.bak.idx");
}

// --- reading the fixtures -------------------------------------------------------------------

TEST(RecordIOFixtures, EveryKeyLabelAndByte) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const auto want = read_manifest(name);
    fd::RecordIOReader reader(recordio_fixture(std::string(name) + ".rec"));
    ASSERT_TRUE(reader.has_index());
    EXPECT_EQ(reader.index_path(), recordio_fixture(std::string(name) + ".idx"));
    EXPECT_EQ(reader.file_size(), slurp(recordio_fixture(std::string(name) + ".rec")).size());
    ASSERT_EQ(reader.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      const ManifestRecord& e = want[i];
      const std::string what = std::string(name) + " key " + std::to_string(e.key);
      EXPECT_EQ(reader.keys()[i], e.key) << what;  // .idx order
      EXPECT_EQ(reader.offsets()[i], e.offset) << what;
      EXPECT_TRUE(reader.contains(e.key)) << what;
      EXPECT_EQ(reader.offset_of(e.key), e.offset) << what;
      EXPECT_EQ(reader.read_payload(e.key), e.payload) << what;
      uint64_t next = 0;
      EXPECT_EQ(reader.read_payload_at(e.offset, &next), e.payload) << what;
      EXPECT_EQ(next, i + 1 < want.size() ? want[i + 1].offset : reader.file_size()) << what;
      if (!e.image) continue;
      const fd::Record r = reader.read(e.key);
      expect_header(r.header, e.header, what);
      EXPECT_EQ(r.image, e.image_bytes) << what;
      ASSERT_TRUE(r.key.has_value());
      EXPECT_EQ(*r.key, e.key);
      EXPECT_EQ(r.offset, e.offset);
      const fd::Record at = reader.read_at(e.offset);
      EXPECT_FALSE(at.key.has_value());
      EXPECT_EQ(at.image, e.image_bytes) << what;
    }
    EXPECT_FALSE(reader.contains(1000));
    EXPECT_HAS(data_error([&] { reader.read(1000); }), "key 1000 is not in it");
  }
}

TEST(RecordIOFixtures, Ms1mLabelsFollowInsightface) {
  fd::RecordIOReader reader(recordio_fixture("ms1m.rec"));
  const fd::Record meta = reader.read(0);
  EXPECT_EQ(meta.header.flag, 2u);
  EXPECT_EQ(meta.header.labels, (std::vector<float>{7.0f, 10.0f}));
  EXPECT_TRUE(meta.image.empty());
  const float classes[] = {0, 0, 1, 1, 1, 2};
  for (uint64_t key = 1; key <= 6; ++key) {
    const fd::Record r = reader.read(key);
    EXPECT_EQ(r.header.primary_label(), classes[key - 1]) << key;
    EXPECT_EQ(r.header.labels.at(1), 1.0f);
    EXPECT_EQ(r.header.id, key);
    if (r.image.size() >= 4) {
      EXPECT_EQ(r.image.substr(0, 2), "\xff\xd8");
    }
  }
  // The meta record is stored after the images.
  EXPECT_GT(reader.offset_of(0), reader.offset_of(6));
}

// The split fixture really contains what it claims: read the chunk headers independently.
TEST(RecordIOFixtures, SplitFixtureHasEveryKindOfChunk) {
  const std::string rec = slurp(recordio_fixture("split.rec"));
  int count[4] = {0, 0, 0, 0};
  int empty[4] = {0, 0, 0, 0};
  for (size_t pos = 0; pos + 8 <= rec.size();) {
    ASSERT_EQ(rec.substr(pos, 4), kMagic) << pos;
    uint32_t lrec;
    std::memcpy(&lrec, rec.data() + pos + 4, 4);
    const uint32_t cflag = lrec >> 29, length = lrec & ((1u << 29) - 1);
    ASSERT_LT(cflag, 4u);
    ++count[cflag];
    if (length == 0) ++empty[cflag];
    pos += 8 + (length + 3) / 4 * 4;
  }
  EXPECT_GT(count[0], 0);
  EXPECT_GE(count[1], 5);
  EXPECT_GE(count[2], 3);
  EXPECT_EQ(count[1], count[3]);
  EXPECT_GT(empty[1], 0);  // magic at offset 0
  EXPECT_GT(empty[2], 0);  // two magics in a row
  EXPECT_GT(empty[3], 0);  // magic at the end
}

TEST(RecordIOFixtures, SequentialModeWalksTheFile) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    auto want = read_manifest(name);
    std::sort(want.begin(), want.end(),
              [](const ManifestRecord& a, const ManifestRecord& b) { return a.offset < b.offset; });
    fd::RecordIOReader reader(recordio_fixture(std::string(name) + ".rec"));
    for (int pass = 0; pass < 2; ++pass) {
      size_t i = 0;
      std::string payload;
      uint64_t offset = 0;
      while (reader.next_payload(payload, &offset)) {
        ASSERT_LT(i, want.size());
        EXPECT_EQ(offset, want[i].offset);
        EXPECT_EQ(payload, want[i].payload);
        ++i;
      }
      EXPECT_EQ(i, want.size());
      EXPECT_FALSE(reader.next_payload(payload));
      reader.rewind();
    }
    if (std::string(name) == "split") continue;  // raw payloads are not image records
    size_t i = 0;
    fd::Record r;
    while (reader.next(r)) {
      ASSERT_LT(i, want.size());
      ASSERT_TRUE(r.key.has_value());
      EXPECT_EQ(*r.key, want[i].key);
      EXPECT_EQ(r.offset, want[i].offset);
      expect_header(r.header, want[i].header, std::to_string(want[i].key));
      EXPECT_EQ(r.image, want[i].image_bytes);
      ++i;
    }
    EXPECT_EQ(i, want.size());
  }
}

TEST_F(RecordIOFiles, WithoutIndexStreamsOnly) {
  const std::string rec = copy_fixture("flat", /*with_index=*/false);
  fd::RecordIOReader reader(rec);
  EXPECT_FALSE(reader.has_index());
  EXPECT_EQ(reader.size(), 0u);
  EXPECT_TRUE(reader.keys().empty());
  EXPECT_HAS(data_error([&] { reader.read(5); }), "there is no index");
  EXPECT_HAS(data_error([&] { fd::detect_layout(reader); }), "needs the index");
  const auto want = read_manifest("flat");
  fd::Record r;
  size_t n = 0;
  while (reader.next(r)) {
    EXPECT_FALSE(r.key.has_value());
    EXPECT_EQ(r.image, want[n].image_bytes);
    ++n;
  }
  EXPECT_EQ(n, want.size());
  // An explicit index path must exist.
  EXPECT_HAS(data_error([&] { fd::RecordIOReader(rec, path("nope.idx")); }), "nope.idx': cannot open it");
}

TEST(RecordIOFixtures, ReaderMoves) {
  fd::RecordIOReader a(recordio_fixture("flat.rec"));
  fd::RecordIOReader b(std::move(a));
  EXPECT_EQ(b.read(7).header.id2, 0x0123456789ABCDEFull);
  fd::RecordIOReader c(recordio_fixture("ms1m.rec"));
  c = std::move(b);
  EXPECT_EQ(c.read(0).header.id, 0xFFFFFFFFFFFFFFFFull);
}

TEST(RecordIOConcurrency, ParallelReadsAgree) {
  const fd::RecordIOReader reader(recordio_fixture("split.rec"));
  std::vector<std::string> want;
  for (uint64_t key : reader.keys()) want.push_back(reader.read_payload(key));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 2000; ++i) {
        const size_t j = rng() % want.size();
        if (reader.read_payload(reader.keys()[j]) != want[j]) ++bad[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, std::vector<int>(4, 0));
}

// --- writing --------------------------------------------------------------------------------

TEST_F(RecordIOFiles, WriterIsByteIdenticalToMxnet) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const std::string rec = path(std::string(name) + ".rec");
    {
      fd::RecordIOWriter writer(rec);
      for (const ManifestRecord& e : read_manifest(name)) {
        EXPECT_EQ(writer.tell(), e.offset);
        const uint64_t offset =
            e.image ? writer.write(e.key, e.header, e.image_bytes) : writer.write_payload(e.key, e.payload);
        EXPECT_EQ(offset, e.offset);
      }
      writer.finish();
    }
    EXPECT_EQ(slurp(rec), slurp(recordio_fixture(std::string(name) + ".rec")));
    EXPECT_EQ(slurp(path(std::string(name) + ".idx")), slurp(recordio_fixture(std::string(name) + ".idx")));
  }
}

TEST_F(RecordIOFiles, WriterRoundTripsRandomRecords) {
  std::mt19937 rng(42);
  struct Item {
    uint64_t key;
    fd::RecordHeader header;
    std::string image;
  };
  std::vector<Item> items;
  // Random keys (not sorted), payloads with the magic at random aligned and unaligned places, and
  // a few payloads larger than the sequential reader's 1 MiB buffer.
  std::vector<uint64_t> keys(400);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = i * 3 + 1;
  std::shuffle(keys.begin(), keys.end(), rng);
  size_t total = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    size_t size = i % 97 == 5 ? (1u << 20) + 3 * (i % 4) : rng() % 3000;
    std::string image(size, '\0');
    for (auto& c : image) c = static_cast<char>(rng());
    for (int m = 0; m < 3 && size >= 4; ++m) {
      image.replace(rng() % (size - 3), 4, kMagic);        // anywhere
      image.replace(4 * (rng() % (size / 4)), 4, kMagic);  // 4-aligned in the image: offset 24+ in the payload
    }
    total += size;
    fd::RecordHeader h = i % 2 ? fd::RecordHeader::scalar(static_cast<float>(i), i)
                               : fd::RecordHeader::with_labels({static_cast<float>(i % 10), 1.0f}, i, rng());
    items.push_back({keys[i], h, image});
  }
  ASSERT_GT(total, 3u << 20);
  const std::string rec = path("random.rec");
  std::vector<uint64_t> offsets;
  {
    fd::RecordIOWriter writer(rec);
    for (const Item& it : items) offsets.push_back(writer.write(it.key, it.header, it.image));
    EXPECT_EQ(writer.size(), items.size());
    writer.close();
  }
  fd::RecordIOReader reader(rec);
  ASSERT_EQ(reader.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(reader.keys()[i], items[i].key);
    const fd::Record r = reader.read(items[i].key);
    EXPECT_EQ(r.offset, offsets[i]);
    expect_header(r.header, items[i].header, std::to_string(i));
    EXPECT_EQ(r.image, items[i].image) << i;
  }
  fd::Record r;
  size_t n = 0;
  while (reader.next(r)) {
    ASSERT_LT(n, items.size());
    EXPECT_EQ(r.key.value_or(~0ull), items[n].key);
    EXPECT_EQ(r.image, items[n].image) << n;
    ++n;
  }
  EXPECT_EQ(n, items.size());
}

TEST_F(RecordIOFiles, WriterWithoutFinishLeavesNoTrace) {
  const std::string rec = path("out.rec");
  spit(rec, "old contents");
  {
    fd::RecordIOWriter writer(rec);
    writer.write(1, fd::RecordHeader::scalar(1), "img");
    bool temporaries = false;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      temporaries |= entry.path().filename().string().find(".tmp.") != std::string::npos;
    }
    EXPECT_TRUE(temporaries);
  }
  EXPECT_EQ(slurp(rec), "old contents");
  EXPECT_FALSE(fs::exists(path("out.idx")));
  std::vector<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir_)) left.push_back(entry.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"out.rec"});
}

TEST_F(RecordIOFiles, WriterContract) {
  const std::string rec = path("c.rec");
  fd::RecordIOWriter writer(rec, path("custom.idx"));
  writer.write(3, fd::RecordHeader::scalar(1), "a");
  EXPECT_HAS(argument_error([&] { writer.write(3, fd::RecordHeader::scalar(1), "b"); }), "key 3 was already written");
  fd::RecordHeader bad = fd::RecordHeader::with_labels({1, 2});
  bad.labels.pop_back();
  EXPECT_THROW(writer.write(4, bad, "b"), facetrain::ArgumentError);
  writer.finish();
  writer.finish();  // a second call does nothing
  EXPECT_HAS(argument_error([&] { writer.write(5, fd::RecordHeader::scalar(1), "c"); }), "write after finish()");
  fd::RecordIOReader reader(rec, path("custom.idx"));
  EXPECT_EQ(reader.keys(), std::vector<uint64_t>{3});

  // Without an index: the .rec only.
  {
    fd::RecordIOWriter plain(path("plain.rec"), "", /*write_index=*/false);
    plain.write_payload(0, "xyz");
    plain.finish();
  }
  EXPECT_FALSE(fs::exists(path("plain.idx")));
  EXPECT_EQ(fd::RecordIOReader(path("plain.rec")).read_payload_at(0), "xyz");

  EXPECT_HAS(data_error([&] { fd::RecordIOWriter(path("no/such/dir/x.rec")); }), "cannot create");
}

// --- layouts --------------------------------------------------------------------------------

TEST(RecordIOLayout, Ms1m) {
  fd::RecordIOReader reader(recordio_fixture("ms1m.rec"));
  const fd::RecordLayout layout = fd::detect_layout(reader);
  EXPECT_EQ(layout.kind, fd::RecordLayout::kMs1m);
  EXPECT_EQ(layout.num_images, 6);
  EXPECT_EQ(layout.num_classes, 3);
  EXPECT_EQ(layout.image_keys, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  using R = std::pair<uint64_t, uint64_t>;
  EXPECT_EQ(layout.class_ranges, (std::vector<R>{{1, 3}, {3, 6}, {6, 7}}));
  EXPECT_TRUE(layout.meta_after_images);
  EXPECT_EQ(layout.describe(), "MS1M layout: 6 images, 3 classes (meta record stored after the images)");
  // Each image's class is the identity record's whose range holds it.
  for (size_t c = 0; c < layout.class_ranges.size(); ++c) {
    for (uint64_t key = layout.class_ranges[c].first; key < layout.class_ranges[c].second; ++key) {
      EXPECT_EQ(reader.read(key).header.primary_label(), static_cast<float>(c));
    }
  }
  fd::LayoutOptions quick;
  quick.read_class_ranges = false;
  EXPECT_TRUE(fd::detect_layout(reader, quick).class_ranges.empty());
}

TEST(RecordIOLayout, Flat) {
  fd::RecordIOReader reader(recordio_fixture("flat.rec"));
  const fd::RecordLayout layout = fd::detect_layout(reader);
  EXPECT_EQ(layout.kind, fd::RecordLayout::kFlat);
  EXPECT_EQ(layout.num_images, 7);
  EXPECT_EQ(layout.num_classes, -1);
  EXPECT_EQ(layout.image_keys, (std::vector<uint64_t>{5, 2, 9, 0, 7, 3, 11}));
  EXPECT_FALSE(layout.meta_after_images);
  EXPECT_EQ(layout.describe(), "flat layout: 7 images");
}

class RecordIOLayoutTest : public RecordIOFiles {
 protected:
  // Writes an MS1M-style file: `images` image records (class key % 2), then a meta record with
  // `meta` labels, then identity records with the given labels; returns the .rec path.
  std::string ms1m(int images, const std::vector<float>& meta, const std::vector<std::vector<float>>& identities,
                   bool meta_first = false, const std::string& meta_image = "",
                   const std::vector<uint64_t>& extra = {}) {
    const std::string rec = path("m.rec");
    fd::RecordIOWriter w(rec);
    auto write_meta = [&] { w.write(0, fd::RecordHeader::with_labels(meta), meta_image); };
    if (meta_first) write_meta();
    for (int k = 1; k <= images; ++k) {
      w.write(k, fd::RecordHeader::with_labels({static_cast<float>(k % 2), 1.0f}, k), "img");
    }
    if (!meta_first) write_meta();
    for (size_t c = 0; c < identities.size(); ++c) {
      w.write(images + 1 + c, fd::RecordHeader::with_labels(identities[c]), "");
    }
    for (uint64_t key : extra) w.write(key, fd::RecordHeader::scalar(0), "extra");
    w.finish();
    return rec;
  }
  std::string layout_error(const std::string& rec) {
    fd::RecordIOReader reader(rec);
    return data_error([&] { fd::detect_layout(reader); });
  }
};

TEST_F(RecordIOLayoutTest, MetaFirstAndKeyZeroImages) {
  fd::RecordIOReader first(ms1m(3, {4, 6}, {{1, 3}, {3, 4}}, /*meta_first=*/true));
  const auto layout = fd::detect_layout(first);
  EXPECT_EQ(layout.kind, fd::RecordLayout::kMs1m);
  EXPECT_FALSE(layout.meta_after_images);
  EXPECT_EQ(layout.num_classes, 2);
  // Key 0 with a label array AND image bytes is an image: the file is flat.
  fd::RecordIOReader image0(ms1m(3, {1, 1}, {}, true, "jpeg"));
  EXPECT_EQ(fd::detect_layout(image0).kind, fd::RecordLayout::kFlat);
  // No key 0 at all: flat.
  {
    fd::RecordIOWriter w(path("n.rec"));
    w.write(4, fd::RecordHeader::scalar(0), "a");
    w.finish();
  }
  fd::RecordIOReader no0(path("n.rec"));
  EXPECT_EQ(fd::detect_layout(no0).image_keys, std::vector<uint64_t>{4});
}

TEST_F(RecordIOLayoutTest, InconsistentMetaRecords) {
  std::string m = layout_error(ms1m(3, {0, 2}, {}));
  EXPECT_HAS(m, "m.rec', meta record (key 0): label[0] (N + 1) is 0, not a whole number in [1, ");
  m = layout_error(ms1m(3, {4, 3}, {}));
  EXPECT_HAS(m, "label[1] (N + 1 + K) is 3, not a whole number in [4, ");
  m = layout_error(ms1m(3, {2.5f, 4}, {}));
  EXPECT_HAS(m, "is 2.5, not a whole number");
  m = layout_error(ms1m(3, {std::nanf(""), 4}, {}));
  EXPECT_HAS(m, "is nan, not a whole number");
  m = layout_error(ms1m(3, {4}, {}));
  EXPECT_HAS(m, "meta record (key 0): it has 1 label(s)");
  m = layout_error(ms1m(3, {9, 10}, {{1, 4}}));  // 8 images announced, 3 present
  EXPECT_HAS(m, "announce 8 images and 1 identity records, but the index holds only 5 keys");
  m = layout_error(ms1m(3, {4, 6}, {{1, 4}}, false, "", {77}));  // a missing identity record
  EXPECT_HAS(m, "announce identity records under keys 4..5, but key 5 is not in the index '");
  m = layout_error(ms1m(3, {4, 4}, {}));
  EXPECT_HAS(m, "announce 3 images but no identity");
  // Identity ranges that do not partition 1..3.
  m = layout_error(ms1m(3, {4, 6}, {{1, 2}, {3, 4}}));
  EXPECT_HAS(m, "m.rec', identity record key 5 (class 1): its image range [3, 4) should start at 2");
  m = layout_error(ms1m(3, {4, 6}, {{1, 3}, {2, 4}}));
  EXPECT_HAS(m, "identity record key 5 (class 1): its image range [2, 4) should start at 3");
  m = layout_error(ms1m(3, {4, 6}, {{1, 2}, {2, 2}}));
  EXPECT_HAS(m, "range [2, 2) should start at 2 and be non-empty");
  m = layout_error(ms1m(3, {4, 6}, {{1, 2}, {2, 3}}));
  EXPECT_HAS(m,
             "meta record (key 0): the identity records' ranges cover image keys 1..2, but the images are keys 1..3");
  m = layout_error(ms1m(3, {4, 6}, {{1, 2}, {2, 9}}));
  EXPECT_HAS(m, "label[1] (end image key) is 9, not a whole number in [1, 4]");
  m = layout_error(ms1m(3, {4, 5}, {{1}}));
  EXPECT_HAS(m, "identity record key 4 (class 0): it has 1 label(s)");
}

// --- damaged files --------------------------------------------------------------------------

TEST_F(RecordIOFiles, MissingOrOddFiles) {
  EXPECT_HAS(data_error([&] { fd::RecordIOReader(path("missing.rec")); }), "missing.rec': cannot open it");
  EXPECT_HAS(data_error([&] { fd::RecordIOReader(dir_.string()); }), "not a regular file");
  // An empty file is an empty RecordIO file.
  fd::RecordIOReader empty(make("empty", "", ""));
  fd::Record r;
  EXPECT_FALSE(empty.next(r));
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(fd::detect_layout(empty).num_images, 0);
}

TEST_F(RecordIOFiles, ChunkErrors) {
  const std::string ok = chunk(0, fd::pack_record(fd::RecordHeader::scalar(1), "abcde"));
  struct Case {
    std::string rec;
    std::string message;
  } cases[] = {
      {ok + "\x0a\x23\xd7", "truncated record: 3 bytes left in the file, fewer than an 8-byte chunk header"},
      {ok + chunk(0, "abcdefgh").substr(0, 13), "truncated record: the chunk announces 8 payload bytes but only 5"},
      {ok + chunk(0, "abc").substr(0, 11), "the chunk announces 3 payload bytes but only 3 bytes follow"},
      {ok + u32(0x12345678) + u32(0), "not a record start: found 0x12345678 instead of the RecordIO magic"},
      {ok + chunk(1, "abcd"), "the split record never ends: the file ends after its 1 chunk without a last chunk"},
      {ok + chunk(1, "ab") + chunk(2, "cd"), "the file ends after its 2 chunks without a last chunk"},
      {ok + chunk(1, "ab") + chunk(0, "cd"),
       "(chunk at byte offset 52): the split record never ends: chunk 2 is a whole"},
      {ok + chunk(1, "ab") + chunk(1, "cd"), "chunk 2 is a first chunk (cflag 1) where a middle or last chunk"},
      {ok + chunk(2, "ab"), "not a record start: the chunk there is the middle chunk of a split record (cflag 2)"},
      {ok + chunk(3, "ab"), "the last chunk of a split record (cflag 3)"},
      {ok + chunk(5, "ab"), "invalid chunk flag 5 (lrec 0xa0000002)"},
      {ok + chunk(1, "ab") + u32(0xcafe) + u32(0), "(chunk at byte offset 52): bad magic 0x0000cafe in chunk 2"},
  };
  for (const Case& c : cases) {
    const std::string rec = make("bad", c.rec);
    fd::RecordIOReader reader(rec);
    EXPECT_EQ(reader.read_at(0).image, "abcde");
    const std::string random = data_error([&] { reader.read_at(40); });
    EXPECT_HAS(random, "RecordIO file '" + rec + "', record at byte offset 40");
    EXPECT_HAS(random, c.message);
    // The sequential reader says the same after the good record.
    fd::Record r;
    EXPECT_TRUE(reader.next(r));
    const std::string sequential = data_error([&] { reader.next(r); });
    EXPECT_HAS(sequential, c.message);
    EXPECT_HAS(sequential, "record at byte offset 40 (reading sequentially)");
  }
  fd::RecordIOReader reader(make("ok", ok));
  EXPECT_HAS(data_error([&] { reader.read_at(40); }), "no record there: the offset is the end of the file");
  EXPECT_HAS(data_error([&] { reader.read_at(41); }), "the offset is past the end of the file (40 bytes)");
  EXPECT_HAS(data_error([&] { reader.read_at(6); }), "not a record start (records start at multiples of 4)");
  EXPECT_HAS(data_error([&] { reader.read_at(8); }), "record at byte offset 8: not a record start: found 0x");
}

TEST_F(RecordIOFiles, PayloadErrorsNameTheRecord) {
  const std::string short_payload = chunk(0, "tiny");
  const std::string too_many_labels = chunk(0, u32(3) + std::string(20, '\0') + "12345678");
  const std::string rec = make("p", short_payload + too_many_labels, "10\t0\n11\t12\n");
  fd::RecordIOReader reader(rec);
  std::string m = data_error([&] { reader.read(10); });
  EXPECT_HAS(m, "'" + rec + "', record key 10 at byte offset 0: the payload has 4 bytes, fewer than the 24-byte");
  m = data_error([&] { reader.read(11); });
  EXPECT_HAS(m, "record key 11 at byte offset 12: the IRHeader's flag announces 3 float32 labels (12 bytes)");
  fd::Record r;
  m = data_error([&] { reader.next(r); });
  EXPECT_HAS(m, "record key 10 at byte offset 0");
  EXPECT_EQ(reader.read_payload(10), "tiny");  // the raw payload is still there
}

TEST_F(RecordIOFiles, IndexErrors) {
  const std::string good = slurp(recordio_fixture("flat.rec"));  // 328 bytes; key 2 is at 56
  struct Case {
    std::string idx;
    std::string message;
  } cases[] = {
      {"5\t0\n2\t56\n2\t88\n", "key 2 appears twice (lines 2 and 3)"},
      {"5\t0\n\n2\t400\n", "line 3 '2\\t400': key 2: offset 400 is past the end of '"},
      {"5\t0\n2\t328\n", "line 2 '2\\t328': key 2: offset 328 is past the end"},
      {"5\t0\n2\t58\n", "line 2 '2\\t58': key 2: offset 58 is not a record start"},
      {"5\t0\nabc\t56\n", "line 2 'abc\\t56': the key is not a non-negative integer"},
      {"-1\t0\n", "line 1 '-1\\t0': the key is not a non-negative integer"},
      {"5\t0x10\n", "line 1 '5\\t0x10': the offset is not a non-negative integer"},
      {"5\t\n", "line 1 '5\\t': expected 'key<TAB>offset'"},  // Python strips the line first, too
      {"5\t 7x\n", "line 1 '5\\t 7x': the offset is not a non-negative integer"},
      {"5 0\n", "line 1 '5 0': expected 'key<TAB>offset'"},
      {"5\t0\t7\n", "line 1 '5\\t0\\t7': expected 'key<TAB>offset'"},
      {"99999999999999999999\t0\n", "the key is not a non-negative integer"},
      {std::string("5\t0\n\xff\x00\n", 7), "line 2 '\\xff\\x00': expected"},
  };
  for (const Case& c : cases) {
    const std::string rec = make("i", good, c.idx);
    const std::string m = data_error([&] { fd::RecordIOReader reader(rec); });
    EXPECT_HAS(m, "RecordIO index '" + path("i.idx") + "'");
    EXPECT_HAS(m, c.message);
  }
  // Python's strip() tolerance: CRLF, spaces around fields, blank lines; sparse keys.
  const std::string rec = make("i", good, "5\t0\r\n\n  2 \t 56 \n\n1000000000000\t96\n");
  fd::RecordIOReader reader(rec);
  EXPECT_EQ(reader.keys(), (std::vector<uint64_t>{5, 2, 1000000000000}));
  EXPECT_EQ(reader.read(1000000000000).header.id, 9u);
  EXPECT_FALSE(reader.contains(1000));
  // An offset on a 4-byte boundary inside a record is caught when read.
  const std::string inside = make("j", good, "5\t8\n");
  fd::RecordIOReader in(inside);
  EXPECT_HAS(data_error([&] { in.read(5); }), "record key 5 at byte offset 8: not a record start: found 0x");
}

// Cut every fixture at every length: with or without the index, reading gives the records that
// are whole and a DataError for the others; never anything else.
TEST_F(RecordIOFiles, TruncatedAtEveryLength) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const std::string full = slurp(recordio_fixture(std::string(name) + ".rec"));
    const std::string idx = slurp(recordio_fixture(std::string(name) + ".idx"));
    auto want = read_manifest(name);
    std::vector<uint64_t> ends;  // record end offsets in file order
    for (const ManifestRecord& e : want) ends.push_back(e.offset);
    std::sort(ends.begin(), ends.end());
    ends.erase(ends.begin());
    ends.push_back(full.size());
    for (size_t len = 0; len < full.size(); ++len) {
      const std::string rec = make("t", full.substr(0, len));
      fs::remove(path("t.idx"));
      // Sequential: ends cleanly exactly at record boundaries.
      {
        fd::RecordIOReader reader(rec);
        std::string payload;
        size_t n = 0;
        bool failed = false;
        try {
          while (reader.next_payload(payload)) ++n;
        } catch (const facetrain::DataError& e) {
          failed = true;
          EXPECT_HAS(std::string(e.what()), "'" + rec + "', record");
        }
        const bool boundary = len == 0 || std::binary_search(ends.begin(), ends.end(), len);
        EXPECT_EQ(failed, !boundary) << len;
        if (boundary) {
          EXPECT_EQ(n, static_cast<size_t>(std::upper_bound(ends.begin(), ends.end(), len) - ends.begin()));
        }
      }
      // With the full index: offsets past the end are refused when opening; otherwise each key
      // reads iff its record is whole.
      spit(path("t.idx"), idx);
      bool past_end = false;
      for (const ManifestRecord& e : want) past_end |= e.offset >= len;
      if (past_end) {
        EXPECT_HAS(data_error([&] { fd::RecordIOReader reader(rec); }), "is past the end of");
        continue;
      }
      fd::RecordIOReader reader(rec);
      for (const ManifestRecord& e : want) {
        const uint64_t end = *std::upper_bound(ends.begin(), ends.end(), e.offset);
        if (end <= len) {
          EXPECT_EQ(reader.read_payload(e.key), e.payload);
        } else {
          EXPECT_HAS(data_error([&] { reader.read_payload(e.key); }), "record key " + std::to_string(e.key));
        }
      }
    }
  }
}

// Flip bits of every byte of every fixture (.rec and .idx): whatever happens, only DataError comes
// out, and a damaged chunk magic is always noticed.
TEST_F(RecordIOFiles, FlippedBytesOnlyGiveDataErrors) {
  size_t errors = 0, clean = 0;
  auto exercise = [&](const std::string& rec, const std::vector<ManifestRecord>& want) {
    try {
      fd::RecordIOReader reader(rec);
      for (const ManifestRecord& e : want) {
        if (!reader.contains(e.key)) continue;
        try {
          if (e.image) {
            reader.read(e.key);
          } else {
            reader.read_payload(e.key);
          }
        } catch (const facetrain::DataError&) {
          ++errors;
        }
      }
      try {
        fd::detect_layout(reader);
      } catch (const facetrain::DataError&) {
        ++errors;
      }
      std::string payload;
      try {
        while (reader.next_payload(payload)) ++clean;
      } catch (const facetrain::DataError&) {
        ++errors;
      }
    } catch (const facetrain::DataError&) {
      ++errors;
    }
  };
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    const auto want = read_manifest(name);
    const std::string full = slurp(recordio_fixture(std::string(name) + ".rec"));
    const std::string idx = slurp(recordio_fixture(std::string(name) + ".idx"));
    const std::string rec = path("f.rec");
    spit(path("f.idx"), idx);
    for (size_t i = 0; i < full.size(); ++i) {
      for (unsigned char mask : {0xffu, 0x01u, 0x80u, 0x20u}) {
        std::string damaged = full;
        damaged[i] = static_cast<char>(damaged[i] ^ mask);
        spit(rec, damaged);
        exercise(rec, want);
      }
    }
    // A damaged magic in the first chunk of a record is always an error.
    for (const ManifestRecord& e : want) {
      std::string damaged = full;
      damaged[e.offset + 2] = static_cast<char>(damaged[e.offset + 2] ^ 0x10);
      spit(rec, damaged);
      fd::RecordIOReader reader(rec);
      EXPECT_HAS(data_error([&] { reader.read_payload(e.key); }), "instead of the RecordIO magic");
    }
    spit(rec, full);
    for (size_t i = 0; i < idx.size(); ++i) {
      for (unsigned char mask : {0xffu, 0x01u, 0x04u, 0x10u}) {
        std::string damaged = idx;
        damaged[i] = static_cast<char>(damaged[i] ^ mask);
        spit(path("f.idx"), damaged);
        exercise(rec, want);
      }
    }
  }
  EXPECT_GT(errors, 1000u);
  EXPECT_GT(clean, 1000u);
}

}  // namespace
