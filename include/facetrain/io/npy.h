#pragma once
// NumPy `.npy` files (format versions 1.0, 2.0 and 3.0; numpy/lib/format.py): what
// `numpy.save` writes and `numpy.load` reads. Used for exported embeddings (`facetrain embed`)
// and for embeddings evaluated from other frameworks (`facetrain eval --embeddings`).
//
// Layout: magic "\x93NUMPY", version (2 bytes), header length (2 bytes little-endian for 1.0,
// 4 bytes for 2.0/3.0), an ASCII (3.0: UTF-8) Python dict literal
// "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 512), }" padded with spaces and ending
// in '\n' so that the data starts at a multiple of 64 bytes, then the raw data.
//
// Example:
//   facetrain::io::write_npy("emb.npy", embeddings);          // [N, 512] float32
//   torch::Tensor back = facetrain::io::read_npy("emb.npy");   // the same values
//   # Python: numpy.load("emb.npy")

#include <torch/torch.h>

#include <string>

namespace facetrain::io {

/// Reads `path` into a CPU tensor of the stored dtype and shape (C order; a Fortran-order file
/// is transposed into C order). Supported dtypes: float16/32/64, int8/16/32/64, uint8, bool, in
/// little-endian or byte-order-free ('|') form; big-endian data ('>f4', ...) is byte-swapped.
/// Throws facetrain::DataError naming `path` for a missing file, a bad magic or version, a
/// header that is not a dict with exactly the keys 'descr', 'fortran_order' and 'shape', an
/// unsupported dtype (object arrays, structured dtypes, complex, strings: named in the message),
/// and a data size that disagrees with the shape (truncated or trailing bytes).
torch::Tensor read_npy(const std::string& path);

/// Writes `tensor` (any device; copied to CPU, made contiguous) to `path` as format 1.0 (2.0 if
/// the header needs it), atomically (temporary file, sync, rename). Supported dtypes: those
/// read_npy reads. Throws facetrain::ArgumentError for an undefined tensor or another dtype, and
/// facetrain::DataError naming `path` when it cannot be written.
void write_npy(const std::string& path, const torch::Tensor& tensor);

}  // namespace facetrain::io
