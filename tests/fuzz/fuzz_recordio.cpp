// libFuzzer target: the RecordIO reader (data/recordio.h) on an arbitrary .rec file, read
// sequentially and through layout detection, plus an arbitrary .idx next to a small valid .rec.
// The input is split at its first 0xff 0xfe pair: before it the .rec, after it the .idx.
// Only a facetrain::DataError may come out; ASan and UBSan catch everything else.
// Build and run: tests/fuzz/run.sh recordio [seconds]
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "facetrain/data/recordio.h"

namespace {

std::string temp_base() {
  static const std::string base = "/tmp/facetrain_fuzz_recordio_" + std::to_string(::getpid());
  return base;
}

void write_file(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return;
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  size_t cut = input.find("\xff\xfe");
  std::string rec = input.substr(0, cut);
  std::string idx = cut == std::string::npos ? std::string() : input.substr(cut + 2);
  const std::string rec_path = temp_base() + ".rec", idx_path = temp_base() + ".idx";
  write_file(rec_path, rec);
  write_file(idx_path, idx);
  try {
    facetrain::data::RecordIOReader reader(rec_path);  // sequential, no index
    facetrain::data::Record record;
    for (int i = 0; i < 1000 && reader.next(record); ++i) {
    }
  } catch (const facetrain::DataError&) {
  }
  try {
    facetrain::data::RecordIOReader reader(rec_path, idx_path);  // the index, random access, layout
    for (uint64_t key : reader.keys()) {
      try {
        (void)reader.read(key);
      } catch (const facetrain::DataError&) {
      }
    }
    (void)facetrain::data::detect_layout(reader).describe();
  } catch (const facetrain::DataError&) {
  }
  return 0;
}
