// libFuzzer target: the verification .bin reader (io/verification_bin.h: the pickle reader plus
// the interpretation of every variant, numpy arrays included) on arbitrary bytes. Only a
// facetrain::DataError may come out; AddressSanitizer and UBSan catch everything else.
// Build and run: tests/fuzz/run.sh verification_bin [seconds]
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "facetrain/core/error.h"
#include "facetrain/io/verification_bin.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto bin =
        facetrain::io::parse_verification_bin(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    (void)bin.variant.size();
  } catch (const facetrain::DataError&) {
  }
  return 0;
}
