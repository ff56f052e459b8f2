// libFuzzer target: the allow-listed pickle reader (io/pickle.h) on arbitrary bytes. Only a
// facetrain::DataError may come out; AddressSanitizer and UBSan catch everything else.
// Build and run: tests/fuzz/run.sh pickle [seconds]
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "facetrain/io/pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  facetrain::io::pickle::ReaderOptions options;
  options.source = "fuzz";
  options.allowed_globals = {"collections.OrderedDict",
                             "torch._utils._rebuild_tensor_v2",
                             "torch.FloatStorage",
                             "_codecs.encode",
                             "numpy.core.multiarray._reconstruct",
                             "numpy.ndarray",
                             "numpy.dtype"};
  try {
    auto root = facetrain::io::pickle::read(std::string_view(reinterpret_cast<const char*>(data), size), options);
    if (root) (void)root->describe();
  } catch (const facetrain::DataError&) {
  }
  return 0;
}
