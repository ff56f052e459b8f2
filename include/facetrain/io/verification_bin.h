#pragma once
// insightface's verification `.bin` files (lfw.bin, cfp_fp.bin, cfp_ff.bin, agedb_30.bin, calfw.bin,
// cplfw.bin, vgg2_fp.bin; formats.md section 3): a pickle of `(bins, issame_list)` where `bins`
// holds 2N encoded images (JPEG normally), images 2i and 2i + 1 forming pair i, and
// `issame_list` N bools.
//
// The packers that made the published files wrote several pickle variants, all read here:
//   - Python 2, protocol 2 (lfw.bin): images as str (BINSTRING / SHORT_BINSTRING), memo
//     BINPUT / LONG_BINPUT and BINGET / LONG_BINGET, lists by MARK ... APPENDS and APPEND;
//   - Python 3, protocol 2: images as `_codecs.encode(latin-1 text, 'latin1')` (`bytes()` for b'');
//   - Python 3, protocols 3-5: images as bytes (BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8),
//     with FRAME and MEMOIZE;
//   - numpy uint8 arrays (the CFP / AgeDB packers, which kept cv2.imencode's output):
//     `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` + BUILD with
//     `(1, shape, dtype, is_fortran, rawdata)` at any protocol, or at protocol 5
//     `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`; numpy 2 names the modules
//     `numpy._core.*`. An array's raw bytes (C order) are the encoded image.
// The pickle is read by io/pickle.h's allow-listed reader: it never imports or calls anything,
// and any global but those above (`_codecs.encode`, `bytes`, the numpy functions,
// `numpy.ndarray`, `numpy.dtype`, `numpy.core.multiarray.scalar`) is refused.
//
// Example:
//   auto bin = facetrain::io::read_verification_bin("faces_emore/lfw.bin");  // 12000 images, 6000 pairs
//   spdlog::info("{}", bin.variant);        // "python2 protocol 2 (str elements)"
//   facetrain::io::write_verification_bin("synth_val.bin", bin.images, bin.issame);
//   facetrain::io::unpack_verification_bin(bin, "lfw_images");  // lfw_images/0.jpg ..., issame.txt

#include <string>
#include <string_view>
#include <vector>

namespace facetrain::io {

/// A verification set: images[2i] and images[2i + 1] (encoded bytes) form pair i; issame[i] is
/// whether they show the same person.
struct VerificationBin {
  std::vector<std::string> images;
  std::vector<bool> issame;
  /// How the file spelled it (set by the readers; informational, for `facetrain data inspect`):
  /// "[python2 |python3 ]protocol P (ELEMENTS)" where P is the PROTO opcode's protocol, the
  /// python2/python3 prefix appears for protocol 2 only (BINSTRING vs _codecs.encode spellings),
  /// and ELEMENTS is "str elements", "_codecs.encode elements", "bytes elements",
  /// "numpy uint8 arrays, numpy.core" (or numpy._core), "numpy uint8 arrays via _frombuffer,
  /// numpy.core", or several of these joined by " + " when the images mix spellings. E.g.
  /// "python2 protocol 2 (str elements)", "protocol 5 (numpy uint8 arrays via _frombuffer, numpy.core)".
  std::string variant;
};

/// Writes what insightface's Python 3 packers write, `pickle.dump((bins, issame_list), f,
/// protocol=pickle.HIGHEST_PROTOCOL)`: a protocol-4 pickle of a tuple of a list of bytes and a
/// list of bools (no FRAME, no memo), which Python 3.4+ and read_verification_bin read.
/// Atomic: written to `<path>.tmp.<pid>`, synced and renamed over `path`.
/// Throws facetrain::ArgumentError unless images.size() == 2 * issame.size() > 0, and
/// facetrain::DataError naming `path` when it cannot be written.
void write_verification_bin(const std::string& path, const std::vector<std::string>& images,
                            const std::vector<bool>& issame);

/// Reads a verification `.bin` in any of the variants above. The outer pair and the two lists
/// may be tuples or lists. Images are bytes-like values or numpy arrays of dtype uint8 ('u1'),
/// of any shape (their raw bytes; a Fortran-ordered array must have at most one dimension above
/// 1). issame is a list or tuple of bools, of the integers 0 / 1 or of numpy.bool_ scalars, or a
/// numpy bool array ('b1').
/// Throws facetrain::DataError naming `path` for: a missing or unreadable file; a truncated or
/// malformed pickle, or a refused global or opcode (with the byte offset); a structure other
/// than (images, issame); an image that is neither bytes nor a numpy array, a numpy array of
/// another dtype ("image 0: a numpy array of dtype 'f4' (float32): only uint8 ('u1') arrays
/// hold encoded images"), without its state, or whose data length disagrees with its shape; an
/// issame entry that is not a bool; a count mismatch (images != 2 * pairs); no pairs at all.
VerificationBin read_verification_bin(const std::string& path);

/// read_verification_bin on bytes in memory; errors name `source` instead of a path.
VerificationBin parse_verification_bin(std::string_view data, const std::string& source);

/// Writes `bin`'s images as `out_dir/<index>.jpg` (index 0 .. 2N-1 over all images, the stored
/// bytes unchanged, whatever their encoding: insightface's tools name them all .jpg) and
/// `out_dir/issame.txt` (N lines, "1" for a genuine pair and "0" for an impostor one), creating
/// `out_dir` if needed. Existing files of those names are replaced; a file that fails to write
/// is removed. Throws facetrain::DataError naming the folder or file that cannot be created or
/// written.
void unpack_verification_bin(const VerificationBin& bin, const std::string& out_dir);

}  // namespace facetrain::io
