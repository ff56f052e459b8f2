#pragma once
// insightface's verification `.bin` files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...; formats.md
// section 3): a pickle of `(bins, issame_list)` where `bins` holds 2N encoded images (JPEG
// normally), images 2i and 2i + 1 forming pair i, and `issame_list` N bools.
//
// Example:
//   auto bin = facetrain::io::read_verification_bin("faces_emore/lfw.bin");  // 12000 images, 6000 pairs
//   facetrain::io::write_verification_bin("synth_val.bin", bin.images, bin.issame);

#include <string>
#include <vector>

namespace facetrain::io {

/// A verification set: images[2i] and images[2i + 1] (encoded bytes) form pair i; issame[i] is
/// whether they show the same person.
struct VerificationBin {
  std::vector<std::string> images;
  std::vector<bool> issame;
};

/// Writes what insightface's Python 3 packers write, `pickle.dump((bins, issame_list), f,
/// protocol=pickle.HIGHEST_PROTOCOL)`: a protocol-4 pickle of a tuple of a list of bytes and a
/// list of bools (no FRAME, no memo), which Python 3.4+ and read_verification_bin read.
/// Atomic: written to `<path>.tmp.<pid>`, synced and renamed over `path`.
/// Throws facetrain::ArgumentError unless images.size() == 2 * issame.size() > 0, and
/// facetrain::DataError naming `path` when it cannot be written.
void write_verification_bin(const std::string& path, const std::vector<std::string>& images,
                            const std::vector<bool>& issame);

/// Reads a verification `.bin` written by Python 2 (BINSTRING elements), Python 3 at protocol 2
/// (`_codecs.encode(text, 'latin1')` elements, `bytes()` for b'') or protocols 3-5 (BINBYTES,
/// SHORT_BINBYTES, BINBYTES8, FRAME, MEMOIZE). The outer pair and the two lists may be tuples or
/// lists; issame entries may be bools or the integers 0 / 1.
/// Throws facetrain::DataError naming `path` for a missing, truncated or malformed file, a
/// structure other than (images, issame), an image that is not bytes, a count mismatch
/// (images != 2 * pairs), no pairs at all, and the numpy-array variant (not supported yet).
VerificationBin read_verification_bin(const std::string& path);

}  // namespace facetrain::io
