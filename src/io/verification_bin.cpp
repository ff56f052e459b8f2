#include "facetrain/io/verification_bin.h"
#include "facetrain/core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string_view>
#include <utility>

#include "facetrain/core/error.h"
#include "facetrain/io/pickle.h"

namespace facetrain::io {
namespace {

using pickle::Kind;
using pickle::Value;

// The globals the variants of formats.md section 3 name. The reader never imports or calls
// them: they only label inert Object nodes, decoded below.
const char* const kAllowedGlobals[] = {
    "_codecs.encode",                       // Python 3 protocol 2: bytes as latin-1 text
    "__builtin__.bytes",                    // ... and b'' as bytes()
    "builtins.bytes",                       //
    "numpy.core.multiarray._reconstruct",   // numpy arrays, any protocol (numpy 1)
    "numpy._core.multiarray._reconstruct",  // (numpy 2)
    "numpy.core.numeric._frombuffer",       // numpy arrays, protocol 5
    "numpy._core.numeric._frombuffer",      //
    "numpy.core.multiarray.scalar",         // numpy.bool_ issame flags
    "numpy._core.multiarray.scalar",        //
    "numpy.ndarray",
    "numpy.dtype",
};

// How an image's bytes were spelled, for VerificationBin::variant.
enum class Spelling { kStr, kCodecs, kBytes };

// A value of kind bytes was made by Python 2's str opcodes or by Python 3's bytes / bytearray
// ones; the opcode at the value's offset tells which. Other bytes-like values are
// `_codecs.encode(...)` or `bytes()`, Python 3's protocol-2 spellings.
Spelling spelling_of(std::string_view data, const Value& v) {
  if (!v.is(Kind::kBytes)) return Spelling::kCodecs;
  const char op = v.offset() < data.size() ? data[v.offset()] : '\0';
  return op == 'T' || op == 'U' ? Spelling::kStr : Spelling::kBytes;  // BINSTRING, SHORT_BINSTRING
}

// `text` quoted for a message: printable ASCII kept, other bytes as \xNN, at most 40 bytes.
std::string quote_text(std::string_view text) {
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < 40; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out + (text.size() > 40 ? "...'" : "'");
}

// A dtype as numpy pickles its name ('u1', 'f4', ...), with the usual name where known.
std::string dtype_label(const std::string& code) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"u1", "uint8"},   {"i1", "int8"},    {"b1", "bool"},   {"u2", "uint16"},  {"i2", "int16"},
      {"f2", "float16"}, {"u4", "uint32"},  {"i4", "int32"},  {"f4", "float32"}, {"u8", "uint64"},
      {"i8", "int64"},   {"f8", "float64"}, {"O8", "object"}, {"O4", "object"}};
  for (const auto& [name, label] : kNames) {
    if (code == name) return quote_text(code) + " (" + label + ")";
  }
  return quote_text(code);
}

// A str (Python 3) or a Python 2 str (bytes).
std::string text_of(const Value& v) {
  if (v.is(Kind::kString)) return v.as_string();
  if (v.is(Kind::kBytes)) return v.as_bytes();
  throw DataError("expected str, found " + v.describe());
}

// A bool or the integers 0 / 1.
bool truth_of(const Value& v) {
  if (v.is(Kind::kBool)) return v.as_bool();
  if (v.is(Kind::kInt) && (v.as_int() == 0 || v.as_int() == 1)) return v.as_int() == 1;
  throw DataError("expected a bool, found " + v.describe());
}

// The dtype code of a `numpy.dtype(code, align, copy)` object, e.g. "u1".
std::string dtype_of(const Value& d) {
  if (!d.is_object_of("numpy.dtype")) throw DataError("expected a numpy.dtype, found " + d.describe());
  const auto& args = d.args().as_tuple();
  if (args.empty()) throw DataError("numpy.dtype() without arguments");
  const std::string code = text_of(*args[0]);
  // The state is (version, endianness, subarray, names, fields, ...): a subarray or fields (a
  // structured dtype) would lay the bytes out otherwise than the code says.
  if (const pickle::ValuePtr& state = d.state()) {
    const auto& s = state->as_tuple();
    for (size_t i = 2; i < s.size() && i < 5; ++i) {
      if (!s[i]->is(Kind::kNone)) throw DataError("numpy dtype " + quote_text(code) + " with a subarray or fields");
    }
  }
  return code;
}

bool is_numpy_array(const Value& v) {
  if (!v.is(Kind::kObject) || !v.callable().is(Kind::kGlobal)) return false;
  const std::string& name = v.callable().global_name();
  return name == "numpy.core.multiarray._reconstruct" || name == "numpy._core.multiarray._reconstruct" ||
         name == "numpy.core.numeric._frombuffer" || name == "numpy._core.numeric._frombuffer";
}

bool is_numpy_scalar(const Value& v) {
  return v.is_object_of("numpy.core.multiarray.scalar") || v.is_object_of("numpy._core.multiarray.scalar");
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

// A numpy array of one-byte elements, decoded without numpy.
struct NumpyArray {
  std::string bytes;        // the raw data in C order: the encoded image, or the bools
  Spelling spelling{};      // how the raw data was spelled
  std::string module;       // "numpy.core" or "numpy._core" (numpy 2)
  bool frombuffer = false;  // protocol 5's _frombuffer, else _reconstruct + BUILD
};

// Decodes `v` (is_numpy_array) of dtype `want` ("u1" or "b1", one byte per element);
// another dtype throws "a numpy array of dtype 'f4' (float32): <why>".
NumpyArray decode_array(const Value& v, std::string_view data, const std::string& want, const std::string& why) {
  NumpyArray a;
  const std::string& function = v.callable().global_name();
  a.module = function.rfind("numpy._core.", 0) == 0 ? "numpy._core" : "numpy.core";
  a.frombuffer = function.find("._frombuffer") != std::string::npos;
  const Value* shape_value = nullptr;
  const Value* dtype_value = nullptr;
  const Value* raw = nullptr;
  bool fortran = false;
  if (a.frombuffer) {  // _frombuffer(buffer, dtype, shape, order)
    const auto& args = v.args().as_tuple(4);
    if (v.state()) throw DataError("a numpy _frombuffer array with a BUILD state (numpy writes none)");
    raw = args[0].get();
    dtype_value = args[1].get();
    shape_value = args[2].get();
    const std::string order = text_of(*args[3]);
    if (order != "C" && order != "F") {
      throw DataError("numpy array order " + quote_text(order) + " (expected 'C' or 'F')");
    }
    fortran = order == "F";
  } else {  // _reconstruct(numpy.ndarray, (0,), b'b') + BUILD (version, shape, dtype, is_fortran, rawdata)
    const auto& args = v.args().as_tuple(3);
    if (!args[0]->is(Kind::kGlobal) || args[0]->global_name() != "numpy.ndarray") {
      throw DataError("numpy _reconstruct of " + args[0]->describe() + " (expected numpy.ndarray)");
    }
    const pickle::ValuePtr& state = v.state();
    if (!state) throw DataError("a numpy array without its state (no BUILD after _reconstruct)");
    const auto& s = state->as_tuple();
    if (s.size() != 4 && s.size() != 5) {
      throw DataError("a numpy array state of " + std::to_string(s.size()) +
                      " items (expected (version, shape, dtype, is_fortran, rawdata))");
    }
    const size_t o = s.size() - 4;  // numpy writes a leading version (1); very old files have none
    shape_value = s[o].get();
    dtype_value = s[o + 1].get();
    fortran = truth_of(*s[o + 2]);
    raw = s[o + 3].get();
  }
  // The dtype first: another dtype's data need not be bytes at all (object arrays hold a list).
  const std::string dtype = dtype_of(*dtype_value);
  if (dtype != want) throw DataError("a numpy array of dtype " + dtype_label(dtype) + ": " + why);
  std::vector<int64_t> shape;
  for (const auto& d : shape_value->as_tuple()) {
    shape.push_back(d->as_int());
    if (shape.back() < 0) {
      throw DataError("a numpy array shape with the negative dimension " + std::to_string(shape.back()));
    }
  }
  // Elements (one byte each), saturating: a product beyond any real length only has to differ.
  uint64_t count = 1;
  int long_dims = 0;
  for (int64_t n : shape) {
    const auto u = static_cast<uint64_t>(n);
    count = (u != 0 && count > UINT64_MAX / u) ? UINT64_MAX : count * u;
    if (n > 1) ++long_dims;
  }
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) count = 0;
  if (fortran && long_dims > 1) {
    throw DataError("a Fortran-ordered numpy array of shape " + shape_text(shape) +
                    " (only C order, or one dimension above 1, is read)");
  }
  a.bytes = pickle::bytes_of(*raw);
  a.spelling = spelling_of(data, *raw);
  if (a.bytes.size() != count) {
    throw DataError("a numpy array of shape " + shape_text(shape) + " needs " +
                    (count == UINT64_MAX ? std::string("more than 2^64") : std::to_string(count)) +
                    " bytes, but its data holds " + std::to_string(a.bytes.size()));
  }
  return a;
}

// One issame entry of a list: a bool, 0 / 1, or a numpy.bool_ scalar (`scalar(dtype('b1'), b'\x01')`).
bool flag_of(const Value& flag) {
  if (is_numpy_scalar(flag)) {
    const auto& args = flag.args().as_tuple(2);
    const std::string dtype = dtype_of(*args[0]);
    if (dtype != "b1") throw DataError("a numpy scalar of dtype " + dtype_label(dtype) + " (expected a bool)");
    const std::string raw = pickle::bytes_of(*args[1]);
    if (raw.size() != 1 || static_cast<unsigned char>(raw[0]) > 1) {
      throw DataError("a numpy bool scalar whose data is not one byte 0 or 1");
    }
    return raw[0] == 1;
  }
  return truth_of(flag);
}

}  // namespace

void write_verification_bin(const std::string& path, const std::vector<std::string>& images,
                            const std::vector<bool>& issame) {
  if (issame.empty() || images.size() != 2 * issame.size()) {
    throw ArgumentError("write_verification_bin('" + path + "'): needs 2 images per pair and at least one pair, got " +
                        std::to_string(images.size()) + " image(s) for " + std::to_string(issame.size()) + " pair(s)");
  }
  pickle::Writer w(4);
  w.empty_list();
  // Python's pickler batches APPENDS by 1000 items; any batch size reads the same.
  constexpr size_t kBatch = 1000;
  for (size_t i = 0; i < images.size(); i += kBatch) {
    w.mark();
    for (size_t j = i; j < std::min(images.size(), i + kBatch); ++j) w.bytes(images[j]);
    w.appends();
  }
  w.empty_list();
  for (size_t i = 0; i < issame.size(); i += kBatch) {
    w.mark();
    for (size_t j = i; j < std::min(issame.size(), i + kBatch); ++j) w.boolean(issame[j]);
    w.appends();
  }
  w.tuple(2);
  w.stop();
  const std::string data = w.take();

  write_file_atomic(path, data);
}

VerificationBin parse_verification_bin(std::string_view data, const std::string& source) {
  pickle::ReaderOptions options;
  options.source = source;
  options.allowed_globals.assign(std::begin(kAllowedGlobals), std::end(kAllowedGlobals));
  const pickle::ValuePtr root = pickle::read(data, options);  // its errors cite the source and byte

  VerificationBin out;
  std::vector<std::string> kinds;  // the image spellings, in order of first appearance
  bool python2 = false, python3 = false;
  auto note = [&](const std::string& kind, Spelling spelling) {
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) kinds.push_back(kind);
    python2 = python2 || spelling == Spelling::kStr;
    python3 = python3 || spelling == Spelling::kCodecs;
  };
  try {
    if (!(root->is(Kind::kTuple) || root->is(Kind::kList)) || root->items().size() != 2) {
      throw DataError("expected a pickle of (images, issame), found " + root->describe());
    }
    const Value& images = *root->items()[0];
    const Value& same = *root->items()[1];
    if (!(images.is(Kind::kList) || images.is(Kind::kTuple))) {
      throw DataError("expected a list of images, found " + images.describe());
    }
    out.images.reserve(images.items().size());
    for (size_t i = 0; i < images.items().size(); ++i) {
      const Value& image = *images.items()[i];
      try {
        if (is_numpy_array(image)) {
          NumpyArray a = decode_array(image, data, "u1", "only uint8 ('u1') arrays hold encoded images");
          note((a.frombuffer ? "numpy uint8 arrays via _frombuffer, " : "numpy uint8 arrays, ") + a.module, a.spelling);
          out.images.push_back(std::move(a.bytes));
        } else {
          out.images.push_back(pickle::bytes_of(image));  // throws for anything else
          const Spelling spelling = spelling_of(data, image);
          note(spelling == Spelling::kStr      ? "str elements"
               : spelling == Spelling::kCodecs ? "_codecs.encode elements"
                                               : "bytes elements",
               spelling);
        }
      } catch (const DataError& e) {
        throw DataError("image " + std::to_string(i) + ": " + e.what());
      }
    }

    if (is_numpy_array(same)) {
      const NumpyArray a = decode_array(same, data, "b1", "issame must hold bools ('b1')");
      for (size_t i = 0; i < a.bytes.size(); ++i) {
        const auto b = static_cast<unsigned char>(a.bytes[i]);
        if (b > 1) throw DataError("issame " + std::to_string(i) + ": byte " + std::to_string(b) + " in a bool array");
        out.issame.push_back(b == 1);
      }
    } else if (same.is(Kind::kList) || same.is(Kind::kTuple)) {
      out.issame.reserve(same.items().size());
      for (size_t i = 0; i < same.items().size(); ++i) {
        try {
          out.issame.push_back(flag_of(*same.items()[i]));
        } catch (const DataError& e) {
          throw DataError("issame " + std::to_string(i) + ": " + e.what());
        }
      }
    } else {
      throw DataError("expected a list of issame flags, found " + same.describe());
    }
    if (out.issame.empty()) throw DataError("holds no pairs");
    if (out.images.size() != 2 * out.issame.size()) {
      throw DataError(std::to_string(out.images.size()) + " images for " + std::to_string(out.issame.size()) +
                      " pairs (expected 2 images per pair)");
    }
  } catch (const DataError& e) {
    throw DataError(source + ": " + e.what());
  }

  // Protocols 2-5 start with PROTO; the prefix tells Python 2's protocol 2 from Python 3's.
  const bool proto = data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x80;
  const int protocol = proto ? static_cast<unsigned char>(data[1]) : 0;
  std::string variant = protocol == 2 && python2 ? "python2 " : protocol == 2 && python3 ? "python3 " : "";
  variant += proto ? "protocol " + std::to_string(protocol) : std::string("no PROTO opcode (protocol 0 or 1)");
  for (size_t i = 0; i < kinds.size(); ++i) variant += (i ? " + " : " (") + kinds[i];
  out.variant = variant + ")";
  return out;
}

VerificationBin read_verification_bin(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open verification bin '" + path + "': " + std::strerror(errno));
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError("cannot read verification bin '" + path + "'");
  return parse_verification_bin(data, path);
}

void unpack_verification_bin(const VerificationBin& bin, const std::string& out_dir) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec || !std::filesystem::is_directory(out_dir)) {
    throw DataError("cannot create the folder '" + out_dir + "'" + (ec ? ": " + ec.message() : std::string()));
  }
  for (size_t i = 0; i < bin.images.size(); ++i) {
    write_new_file(out_dir + "/" + std::to_string(i) + ".jpg", bin.images[i]);
  }
  std::string lines;
  for (bool same : bin.issame) lines += same ? "1\n" : "0\n";
  write_new_file(out_dir + "/issame.txt", lines);
}

}  // namespace facetrain::io
