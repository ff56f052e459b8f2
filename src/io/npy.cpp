#include "facetrain/io/npy.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "facetrain/core/error.h"
#include "facetrain/core/files.h"

namespace facetrain::io {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

struct DtypeInfo {
  char kind;  // 'f', 'i', 'u', 'b'
  int size;
  torch::ScalarType type;
};

const DtypeInfo kDtypes[] = {
    {'f', 2, torch::kHalf}, {'f', 4, torch::kFloat}, {'f', 8, torch::kDouble},
    {'i', 1, torch::kChar}, {'i', 2, torch::kShort}, {'i', 4, torch::kInt},
    {'i', 8, torch::kLong}, {'u', 1, torch::kByte},  {'b', 1, torch::kBool},
};

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw DataError("'" + path + "': not a readable .npy file: " + what);
}

// A tiny scanner for the header dict literal numpy writes (repr of a dict of str, bool, tuple).
class Header {
 public:
  Header(std::string text, std::string path) : s_(std::move(text)), path_(std::move(path)) {}

  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    skip_space();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  std::string quoted() {
    skip_space();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) fail("expected a quoted string");
    const char q = s_[i_++];
    const size_t end = s_.find(q, i_);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(i_, end - i_);
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_space();
    if (s_.compare(i_, 4, "True") == 0) return i_ += 4, true;
    if (s_.compare(i_, 5, "False") == 0) return i_ += 5, false;
    fail("expected True or False");
  }
  std::vector<int64_t> shape() {
    expect('(');
    std::vector<int64_t> dims;
    while (!eat(')')) {
      skip_space();
      size_t start = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      // numpy 1.x on some platforms wrote "3L" for longs (Python 2).
      if (i_ == start || i_ - start > 15) fail("expected a dimension (a non-negative integer)");
      dims.push_back(std::stoll(s_.substr(start, i_ - start)));
      if (i_ < s_.size() && s_[i_] == 'L') ++i_;
      if (!eat(',')) {
        expect(')');
        break;
      }
    }
    return dims;
  }
  char peek() {
    skip_space();
    return i_ < s_.size() ? s_[i_] : '\0';
  }
  bool at_end() {
    skip_space();
    return i_ == s_.size();
  }
  [[noreturn]] void fail(const std::string& what) const {
    bad(path_, "header " + what + " at character " + std::to_string(i_) + " of \"" + s_ + "\"");
  }

 private:
  std::string s_;
  std::string path_;
  size_t i_ = 0;
};

// Python's repr of a shape tuple: "()", "(3,)", "(2, 512)".
std::string h_shape_text(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

std::string descr_of(torch::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (d.type == type) {
      const char order = d.size == 1 ? '|' : '<';
      return std::string(1, order) + d.kind + std::to_string(d.size);
    }
  }
  throw ArgumentError(std::string("write_npy: dtype ") + c10::toString(type) +
                      " is not supported (float16/32/64, int8/16/32/64, uint8, bool)");
}

}  // namespace

torch::Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("'" + path + "': cannot open it: " + std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError("'" + path + "': reading it failed");

  if (bytes.size() < kMagicSize + 4 || bytes.compare(0, kMagicSize, kMagic, kMagicSize) != 0) {
    bad(path, "it does not start with the magic \\x93NUMPY");
  }
  const int major = static_cast<unsigned char>(bytes[6]), minor = static_cast<unsigned char>(bytes[7]);
  if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
    bad(path, "format version " + std::to_string(major) + "." + std::to_string(minor) + " (1.0, 2.0 and 3.0 are read)");
  }
  const auto byte = [&](size_t i) { return static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])); };
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<size_t>(byte(8) | byte(9) << 8);
    header_start = 10;
  } else {
    if (bytes.size() < 12) bad(path, "truncated header length");
    header_len = static_cast<size_t>(byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24);
    header_start = 12;
  }
  if (header_len > bytes.size() - header_start) {
    bad(path, "the header claims " + std::to_string(header_len) + " bytes but the file has " +
                  std::to_string(bytes.size() - header_start) + " after the preamble (truncated?)");
  }
  Header h(bytes.substr(header_start, header_len), path);
  std::string descr;
  bool fortran = false, have_descr = false, have_order = false, have_shape = false;
  std::vector<int64_t> shape;
  h.expect('{');
  while (!h.eat('}')) {
    const std::string key = h.quoted();
    h.expect(':');
    if (key == "descr") {
      if (h.peek() == '[') bad(path, "structured dtypes are not supported (a plain numeric array is needed)");
      descr = h.quoted(), have_descr = true;
    } else if (key == "fortran_order") {
      fortran = h.boolean(), have_order = true;
    } else if (key == "shape") {
      shape = h.shape(), have_shape = true;
    } else {
      h.fail("unknown key '" + key + "'");
    }
    if (!h.eat(',')) {
      h.expect('}');
      break;
    }
  }
  if (!h.at_end()) h.fail("trailing characters");
  if (!have_descr || !have_order || !have_shape) h.fail("lacks one of 'descr', 'fortran_order', 'shape'");

  if (descr.size() < 3 || (descr[0] != '<' && descr[0] != '>' && descr[0] != '|' && descr[0] != '=')) {
    bad(path, "dtype '" + descr + "' is not supported (structured, object or string arrays cannot be read)");
  }
  const DtypeInfo* dtype = nullptr;
  for (const auto& d : kDtypes) {
    if (descr.substr(1) == std::string(1, d.kind) + std::to_string(d.size)) dtype = &d;
  }
  if (dtype == nullptr) {
    bad(path, "dtype '" + descr + "' is not supported (float16/32/64, int8/16/32/64, uint8, bool)");
  }
  const bool swap = descr[0] == '>' && dtype->size > 1;

  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d != 0 && count > (uint64_t{1} << 48) / static_cast<uint64_t>(d)) bad(path, "shape too large");
    count *= static_cast<uint64_t>(d);
  }
  const size_t data_start = header_start + header_len;
  const uint64_t need = count * static_cast<uint64_t>(dtype->size);
  if (bytes.size() - data_start != need) {
    bad(path, "shape " + h_shape_text(shape) + " of " + descr + " needs " + std::to_string(need) +
                  " data bytes, the file has " + std::to_string(bytes.size() - data_start));
  }
  std::vector<int64_t> dims = shape;
  if (fortran) std::reverse(dims.begin(), dims.end());
  torch::Tensor out = torch::empty(dims, torch::TensorOptions().dtype(dtype->type));
  auto* dst = static_cast<char*>(out.data_ptr());
  std::memcpy(dst, bytes.data() + data_start, need);
  if (swap) {
    for (uint64_t i = 0; i < count; ++i) std::reverse(dst + i * dtype->size, dst + (i + 1) * dtype->size);
  }
  if (dtype->type == torch::kBool) {
    for (uint64_t i = 0; i < count; ++i) {
      if (static_cast<unsigned char>(dst[i]) > 1)
        bad(path, "bool element " + std::to_string(i) + " is neither 0 nor 1");
    }
  }
  if (fortran && dims.size() > 1) {
    std::vector<int64_t> perm(dims.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(perm.size() - 1 - i);
    out = out.permute(perm).contiguous();
  }
  return out;
}

void write_npy(const std::string& path, const torch::Tensor& tensor) {
  if (!tensor.defined()) throw ArgumentError("write_npy: the tensor is undefined");
  const std::string descr = descr_of(tensor.scalar_type());
  torch::Tensor t = tensor.to(torch::kCPU).contiguous();
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + h_shape_text(t.sizes().vec()) + ", }";
  // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
  size_t preamble = kMagicSize + 2 + 2;
  int major = 1;
  if (header.size() + 1 + preamble > 65535) major = 2, preamble += 2;
  const size_t total = (preamble + header.size() + 1 + 63) / 64 * 64;
  header.append(total - preamble - header.size() - 1, ' ');
  header.push_back('\n');
  std::string out(kMagic, kMagicSize);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const size_t len = header.size();
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>((len >> 8) & 0xff));
  if (major == 2) {
    out.push_back(static_cast<char>((len >> 16) & 0xff));
    out.push_back(static_cast<char>((len >> 24) & 0xff));
  }
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  write_file_atomic(path, out);
}

}  // namespace facetrain::io
