// libFuzzer target: the .idx parser of the RecordIO reader (data/recordio.h) alone. The input is
// written as the .idx of a small fixed, valid .rec (an MS1M file: meta record key 0 [4, 6], images
// 1..3, key 3 split in two chunks at the magic, identity records 4 and 5), in a private temporary
// folder; then the reader is opened, a few keys are looked up and read, the layout detected and the
// file walked sequentially (keys found through the index).
// Only a facetrain::DataError may come out; ASan and UBSan catch everything else.
// Build and run: tests/fuzz/run.sh idx [seconds]
//
// The fixed .rec's records and offsets (what a valid seed lists):
//   key 0 @ 0, key 1 @ 40, key 2 @ 88, key 3 @ 132 (last chunk @ 172), key 4 @ 184, key 5 @ 224;
//   264 bytes in all.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "facetrain/data/recordio.h"

namespace {

namespace fd = facetrain::data;

void write_file(const std::string& path, const char* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

std::string temp_dir;

void remove_temp() {
  std::remove((temp_dir + "/fixed.rec").c_str());
  std::remove((temp_dir + "/fixed.idx").c_str());
  ::rmdir(temp_dir.c_str());
}

// Creates the temporary folder and the fixed .rec once per process.
const std::string& rec_path() {
  static const std::string path = [] {
    char tmpl[] = "/tmp/facetrain_fuzz_idx_XXXXXX";
    if (!::mkdtemp(tmpl)) std::abort();
    temp_dir = tmpl;
    std::atexit(remove_temp);
    const std::string rec = temp_dir + "/fixed.rec";
    fd::RecordIOWriter w(rec);
    w.write(0, fd::RecordHeader::with_labels({4.f, 6.f}, 0), "");
    w.write(1, fd::RecordHeader::with_labels({0.f, 1.f}, 1),
            std::string("\xff\xd8"
                        "ab\xff\xd9",
                        6));
    w.write(2, fd::RecordHeader::with_labels({0.f, 1.f}, 2), "xyz");
    w.write(3, fd::RecordHeader::with_labels({1.f, 1.f}, 3),
            std::string("\x0a\x23\xd7\xce"
                        "x",
                        5));
    w.write(4, fd::RecordHeader::with_labels({1.f, 3.f}, 4), "");
    w.write(5, fd::RecordHeader::with_labels({3.f, 4.f}, 5), "");
    w.finish();
    return rec;
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& rec = rec_path();
  const std::string idx = temp_dir + "/fixed.idx";
  write_file(idx, reinterpret_cast<const char*>(data), size);
  try {
    fd::RecordIOReader reader(rec, idx);
    size_t n = 0;
    for (uint64_t key : reader.keys()) {
      if (++n > 16) break;
      try {
        if (!reader.contains(key) || reader.offset_of(key) != reader.offsets()[n - 1]) std::abort();
        (void)reader.read(key);
      } catch (const facetrain::DataError&) {
      }
    }
    for (uint64_t key = 0; key < 8; ++key) {
      try {
        if (reader.contains(key))
          (void)reader.read_payload(key);
        else
          (void)reader.offset_of(key);
      } catch (const facetrain::DataError&) {
      }
    }
    try {
      (void)fd::detect_layout(reader).describe();
    } catch (const facetrain::DataError&) {
    }
    fd::Record record;
    for (int i = 0; i < 16 && reader.next(record); ++i) {
    }
  } catch (const facetrain::DataError&) {
  }
  return 0;
}
