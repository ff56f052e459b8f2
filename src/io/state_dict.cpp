#include "facetrain/io/state_dict.h"
#include "facetrain/core/files.h"

#include <caffe2/serialize/inline_container.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "facetrain/io/pickle.h"

namespace facetrain::io {

namespace {

using caffe2::serialize::PyTorchStreamReader;
using caffe2::serialize::PyTorchStreamWriter;

constexpr const char* kOrderedDict = "collections.OrderedDict";
constexpr const char* kRebuildTensor = "torch._utils._rebuild_tensor_v2";
constexpr const char* kRebuildParameter = "torch._utils._rebuild_parameter";
constexpr const char* kModulePrefix = "module.";
constexpr size_t kListed = 10;  // names listed per problem class

// The storage classes torch.save names in its persistent ids ("torch.FloatStorage"), per dtype.
struct StorageClass {
  const char* name;
  torch::ScalarType dtype;
};
constexpr StorageClass kStorageClasses[] = {
    {"FloatStorage", torch::kFloat},   {"HalfStorage", torch::kHalf}, {"BFloat16Storage", torch::kBFloat16},
    {"DoubleStorage", torch::kDouble}, {"LongStorage", torch::kLong}, {"IntStorage", torch::kInt},
    {"ShortStorage", torch::kShort},   {"CharStorage", torch::kChar}, {"ByteStorage", torch::kByte},
    {"BoolStorage", torch::kBool},
};

const StorageClass* storage_class(torch::ScalarType dtype) {
  for (const auto& c : kStorageClasses) {
    if (c.dtype == dtype) return &c;
  }
  return nullptr;
}

std::vector<std::string> allowed_globals() {
  std::vector<std::string> out = {kOrderedDict, kRebuildTensor, kRebuildParameter};
  for (const auto& c : kStorageClasses) out.push_back(std::string("torch.") + c.name);
  return out;
}

// PyTorch's names: "float32", "int64", ...
std::string dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat:
      return "float32";
    case torch::kDouble:
      return "float64";
    case torch::kHalf:
      return "float16";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kLong:
      return "int64";
    case torch::kInt:
      return "int32";
    case torch::kShort:
      return "int16";
    case torch::kChar:
      return "int8";
    case torch::kByte:
      return "uint8";
    case torch::kBool:
      return "bool";
    default:
      return c10::toString(dtype);
  }
}

std::string shape_string(torch::IntArrayRef sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(sizes[i]);
  }
  return out + "]";
}

// LibTorch's message without the backtrace and the "[enforce fail at file.cc:123] . " prefix.
std::string torch_message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  if (m.rfind("[enforce fail at", 0) == 0) {
    size_t end = m.find("] ");
    if (end != std::string::npos) m.erase(0, end + 2);
    if (m.rfind(". ", 0) == 0) m.erase(0, 2);
  }
  size_t newline = m.find('\n');
  if (newline != std::string::npos) m.resize(newline);
  return m;
}

[[noreturn]] void read_error(const std::string& path, const std::string& detail) {
  throw DataError("cannot read state dict '" + path + "': " + detail);
}

[[noreturn]] void write_error(const std::string& path, const std::string& detail) {
  throw DataError("cannot write state dict '" + path + "': " + detail);
}

// --- reading ---------------------------------------------------------------------------------

// The first bytes of a file written by torch.save(..., _use_new_zipfile_serialization=False):
// PROTO 2, then LONG1 of the magic number 0x1950a86a20f9469cfc6c.
constexpr unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                          0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

// Refuses, with a useful message, what is not a torch.save zip archive, before LibTorch's
// reader (whose messages are about zip internals) sees it.
void check_file(const std::string& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) read_error(path, "cannot access it: " + ec.message());
  if (!std::filesystem::exists(status)) read_error(path, "no such file");
  if (std::filesystem::is_directory(status)) read_error(path, "it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) read_error(path, std::string("cannot open it: ") + std::strerror(errno));
  unsigned char head[sizeof(kLegacyMagic)] = {};
  in.read(reinterpret_cast<char*>(head), sizeof(head));
  size_t n = static_cast<size_t>(in.gcount());
  if (n >= 2 && head[0] == 'P' && head[1] == 'K') return;
  if (n == sizeof(kLegacyMagic) && std::equal(head, head + n, kLegacyMagic)) {
    read_error(path,
               "it is in the legacy torch.save format (PyTorch < 1.6, or _use_new_zipfile_serialization=False), "
               "which is not read; re-save it in Python with the zip format, the default since PyTorch 1.6: "
               "torch.save(torch.load('" +
                   path + "', map_location='cpu'), 'converted.pth')");
  }
  std::string hex;
  for (size_t i = 0; i < std::min<size_t>(n, 4); ++i) {
    char byte[4];
    std::snprintf(byte, sizeof(byte), " %02x", head[i]);
    hex += byte;
  }
  read_error(path, "not a PyTorch zip archive (" +
                       (n == 0 ? std::string("the file is empty") : "it starts with bytes" + hex) +
                       "; torch.save writes a zip file, which starts with 'PK')");
}

// Where one tensor of the state dict lives: torch._utils._rebuild_tensor_v2(storage,
// storage_offset, size, stride, ...) with storage = persistent_id(('storage', torch.<T>Storage,
// key, location, numel)).
struct TensorSpec {
  std::string storage_key;
  torch::ScalarType dtype = torch::kFloat;
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
};

std::vector<int64_t> int_tuple(const pickle::Value& value) {
  std::vector<int64_t> out;
  for (const auto& item : value.as_tuple()) out.push_back(item->as_int());
  return out;
}

// Throws DataError (without the path; the caller adds it) if `value` is not a tensor.
TensorSpec parse_tensor(const pickle::Value& value, bool inside_parameter = false) {
  if (value.is_object_of(kRebuildParameter) && !inside_parameter) {
    const auto& args = value.args().as_tuple();
    if (args.empty()) throw DataError("_rebuild_parameter without arguments");
    return parse_tensor(*args[0], true);
  }
  if (!value.is_object_of(kRebuildTensor)) throw DataError("it is " + value.describe() + ", not a tensor");
  const auto& args = value.args().as_tuple();
  if (args.size() < 4) {
    throw DataError("_rebuild_tensor_v2 with " + std::to_string(args.size()) +
                    " arguments (expected storage, offset, size, stride, ...)");
  }
  const auto& id = args[0]->persistent_id().as_tuple(5);
  if (id[0]->as_string() != "storage") throw DataError("persistent id of type " + id[0]->describe());
  const std::string& type = id[1]->global_name();
  TensorSpec spec;
  const StorageClass* found = nullptr;
  for (const auto& c : kStorageClasses) {
    if (type == std::string("torch.") + c.name) found = &c;
  }
  if (found == nullptr) throw DataError("unsupported storage type " + type);
  spec.dtype = found->dtype;
  spec.storage_key = id[2]->as_string();
  // id[3] is the device it was saved from ("cpu", "cuda:0"); everything loads to CPU.
  spec.storage_numel = id[4]->as_int();
  spec.offset = args[1]->as_int();
  spec.size = int_tuple(*args[2]);
  spec.stride = int_tuple(*args[3]);
  if (spec.storage_key.empty()) throw DataError("empty storage key");
  return spec;
}

// Throws DataError (without the path) unless the view fits its storage.
void check_view(const TensorSpec& spec) {
  if (spec.storage_numel < 0) throw DataError("storage with negative size " + std::to_string(spec.storage_numel));
  if (spec.size.size() != spec.stride.size()) {
    throw DataError("size " + shape_string(spec.size) + " and stride " + shape_string(spec.stride) +
                    " have different lengths");
  }
  if (spec.size.size() > 64) throw DataError(std::to_string(spec.size.size()) + " dimensions");
  if (spec.offset < 0) throw DataError("negative storage offset " + std::to_string(spec.offset));
  int64_t numel = 1;
  int64_t last = spec.offset;  // the last element the view touches
  for (size_t d = 0; d < spec.size.size(); ++d) {
    int64_t size = spec.size[d], stride = spec.stride[d];
    if (size < 0 || stride < 0) {
      throw DataError("negative size or stride: size " + shape_string(spec.size) + ", stride " +
                      shape_string(spec.stride));
    }
    int64_t reach;
    if (__builtin_mul_overflow(numel, size, &numel) || (size > 0 && __builtin_mul_overflow(size - 1, stride, &reach)) ||
        (size > 0 && __builtin_add_overflow(last, reach, &last))) {
      throw DataError("size " + shape_string(spec.size) + " with stride " + shape_string(spec.stride) +
                      " overflows 64 bits");
    }
  }
  if (numel == 0 ? spec.offset > spec.storage_numel : last >= spec.storage_numel) {
    throw DataError("view (offset " + std::to_string(spec.offset) + ", size " + shape_string(spec.size) + ", stride " +
                    shape_string(spec.stride) + ") reaches past the end of storage '" + spec.storage_key + "' of " +
                    std::to_string(spec.storage_numel) + " elements");
  }
}

// The storage record data/<key> as a flat tensor of `numel` elements, sharing the record's
// memory. Throws DataError (with the path) if the record is missing or has the wrong size.
torch::Tensor load_storage(PyTorchStreamReader& reader, const std::string& path, const TensorSpec& spec) {
  const std::string record = "data/" + spec.storage_key;
  const uint64_t item = c10::elementSize(spec.dtype);
  uint64_t expected;
  if (__builtin_mul_overflow(static_cast<uint64_t>(spec.storage_numel), item, &expected)) {
    read_error(path,
               "storage '" + spec.storage_key + "' of " + std::to_string(spec.storage_numel) + " elements overflows");
  }
  if (!reader.hasRecord(record)) read_error(path, "the archive has no record '" + record + "'");
  auto [data, size] = reader.getRecord(record);
  if (size != expected) {
    read_error(path, "record '" + record + "' holds " + std::to_string(size) + " bytes, but its " +
                         std::to_string(spec.storage_numel) + " " + dtype_name(spec.dtype) + " elements need " +
                         std::to_string(expected));
  }
  auto options = torch::TensorOptions().dtype(spec.dtype);
  if (spec.storage_numel == 0) return torch::empty({0}, options);
  auto holder = std::make_shared<at::DataPtr>(std::move(data));
  return torch::from_blob(
      holder->get(), {spec.storage_numel}, [holder](void*) {}, options);
}

// The mapping the state dict is in: the root, or its entry `entry`.
const pickle::Value& select_mapping(const pickle::Value& root, const std::string& path, const std::string& entry) {
  if (!root.is_mapping()) read_error(path, "expected a dict of tensors at the top level, found " + root.describe());
  if (entry.empty()) return root;
  const pickle::Value* chosen = root.find(entry);
  if (chosen == nullptr) {
    std::string keys;
    for (const auto& [key, value] : root.entries()) {
      keys += (keys.empty() ? "" : ", ") + (key->is(pickle::Kind::kString) ? key->as_string() : key->describe());
    }
    read_error(path, "it has no entry '" + entry + "' (its top-level keys: " + (keys.empty() ? "none" : keys) + ")");
  }
  if (!chosen->is_mapping()) {
    read_error(path, "entry '" + entry + "' is " + chosen->describe() + ", not a dict of tensors");
  }
  return *chosen;
}

// For a non-tensor at the top level: the entries that could be the state dict.
std::string checkpoint_hint(const pickle::Value& root) {
  std::string candidates;
  for (const auto& [key, value] : root.entries()) {
    if (key->is(pickle::Kind::kString) && value->is_mapping()) {
      candidates += (candidates.empty() ? "" : ", ") + key->as_string();
    }
  }
  if (candidates.empty()) return "";
  return " (if this is a checkpoint, pick its state dict with the entry option: " + candidates + ")";
}

// The root value of the archive's data.pkl.
pickle::ValuePtr read_root(PyTorchStreamReader& reader, const std::string& path) {
  if (reader.hasRecord("byteorder")) {
    auto [data, size] = reader.getRecord("byteorder");
    std::string order(static_cast<const char*>(data.get()), size);
    while (!order.empty() && std::isspace(static_cast<unsigned char>(order.back()))) order.pop_back();
    if (order != "little") {
      read_error(path, "its byteorder record says '" + order + "'; only little-endian files are read");
    }
  }
  if (!reader.hasRecord("data.pkl")) {
    read_error(path, reader.hasRecord("constants.pkl")
                         ? "it is a TorchScript archive (torch.jit.save); save model.state_dict() with torch.save"
                         : "the archive has no data.pkl record");
  }
  auto [pkl, pkl_size] = reader.getRecord("data.pkl");
  pickle::ReaderOptions pickle_options;
  pickle_options.source = "data.pkl";
  pickle_options.allowed_globals = allowed_globals();
  try {
    return pickle::read(std::string_view(static_cast<const char*>(pkl.get()), pkl_size), pickle_options);
  } catch (const DataError& e) {
    read_error(path, e.what());
  }
}

// The tensors of `mapping` (a dict of tensors inside the archive); `hint` is added to the message
// of an entry that is not a tensor.
StateDict read_tensors(PyTorchStreamReader& reader, const std::string& path, const pickle::Value& mapping,
                       const std::function<std::string(const pickle::Value&)>& hint) {
  std::vector<std::pair<std::string, TensorSpec>> specs;
  std::unordered_map<std::string, int> uses;                 // storage key -> entries using it
  std::unordered_map<std::string, const TensorSpec*> first;  // storage key -> first spec naming it
  specs.reserve(mapping.entries().size());
  for (const auto& [key, value] : mapping.entries()) {
    if (!key->is(pickle::Kind::kString))
      read_error(path, "a key of the state dict is " + key->describe() + ", not a str");
    const std::string& name = key->as_string();
    try {
      TensorSpec spec = parse_tensor(*value);
      check_view(spec);
      specs.emplace_back(name, std::move(spec));
    } catch (const DataError& e) {
      read_error(path, "entry '" + name + "': " + e.what() + (hint ? hint(*value) : ""));
    }
  }
  for (const auto& [name, spec] : specs) {
    auto [it, inserted] = first.emplace(spec.storage_key, &spec);
    ++uses[spec.storage_key];
    if (!inserted && (it->second->dtype != spec.dtype || it->second->storage_numel != spec.storage_numel)) {
      read_error(path,
                 "storage '" + spec.storage_key + "' is named with different types or sizes (entry '" + name + "')");
    }
  }

  std::unordered_map<std::string, torch::Tensor> storages;
  StateDict out;
  out.reserve(specs.size());
  for (const auto& [name, spec] : specs) {
    auto it = storages.find(spec.storage_key);
    if (it == storages.end()) it = storages.emplace(spec.storage_key, load_storage(reader, path, spec)).first;
    torch::Tensor view = it->second.as_strided(spec.size, spec.stride, spec.offset);
    // The record is used as is when this entry is its only, whole, contiguous user; otherwise
    // each entry gets its own contiguous copy.
    bool whole =
        uses[spec.storage_key] == 1 && spec.offset == 0 && view.numel() == spec.storage_numel && view.is_contiguous();
    out.emplace_back(name, whole ? view : view.clone(at::MemoryFormat::Contiguous));
  }
  return out;
}

StateDict read_archive_state_dict(PyTorchStreamReader& reader, const std::string& path, const ReadOptions& options) {
  const pickle::ValuePtr root = read_root(reader, path);
  const pickle::Value& mapping = select_mapping(*root, path, options.entry);
  return read_tensors(reader, path, mapping, [&](const pickle::Value& value) {
    return options.entry.empty() && !value.is_object_of(kRebuildTensor) ? checkpoint_hint(*root) : std::string();
  });
}

// --- writing ---------------------------------------------------------------------------------

// Strides of a contiguous tensor of `sizes`, as PyTorch computes them (size-0 dims count as 1).
std::vector<int64_t> row_major_strides(torch::IntArrayRef sizes) {
  std::vector<int64_t> strides(sizes.size(), 1);
  for (size_t d = sizes.size(); d-- > 1;) strides[d - 1] = strides[d] * std::max<int64_t>(sizes[d], 1);
  return strides;
}

void int_tuple(pickle::Writer& w, const std::vector<int64_t>& values) {
  if (values.size() <= 3) {
    for (int64_t v : values) w.integer(v);
    w.tuple(values.size());
  } else {
    w.mark();
    for (int64_t v : values) w.integer(v);
    w.tuple_from_mark();
  }
}

// An OrderedDict([(name, _rebuild_tensor_v2(persistent_id(('storage', torch.<T>Storage, '<i>', 'cpu',
// numel)), 0, size, stride, False, OrderedDict())), ...]), as torch.save writes it; storages are
// numbered from `next_storage`, which is advanced past them.
void emit_state_dict(pickle::Writer& w, const StateDict& state, size_t& next_storage) {
  w.global("collections", "OrderedDict");
  w.empty_tuple();
  w.reduce();
  if (state.empty()) return;
  w.mark();
  for (const auto& [name, tensor] : state) {
    w.string(name);
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.mark();
    w.mark();
    w.string("storage");
    w.global("torch", storage_class(tensor.scalar_type())->name);
    w.string(std::to_string(next_storage++));
    w.string("cpu");
    w.integer(tensor.numel());
    w.tuple_from_mark();
    w.binpersid();
    w.integer(0);
    int_tuple(w, tensor.sizes().vec());
    int_tuple(w, row_major_strides(tensor.sizes()));
    w.boolean(false);
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.tuple_from_mark();
    w.reduce();
  }
  w.setitems();
}

// Checks what write_state_dict / write_archive document as ArgumentErrors.
void check_writable(const StateDict& state, const std::string& where) {
  std::unordered_set<std::string> names;
  for (const auto& [name, tensor] : state) {
    if (name.empty()) throw ArgumentError(where + "a tensor has an empty name");
    if (!names.insert(name).second) throw ArgumentError(where + "the name '" + name + "' appears twice");
    if (!tensor.defined()) throw ArgumentError(where + "'" + name + "' is an undefined tensor");
    if (tensor.layout() != torch::kStrided)
      throw ArgumentError(where + "'" + name + "' is not a dense (strided) tensor");
    if (storage_class(tensor.scalar_type()) == nullptr) {
      throw ArgumentError(where + "'" + name + "' has dtype " + dtype_name(tensor.scalar_type()) +
                          ", which state-dict files do not store here");
    }
  }
}

// Writes everything it is given to a file descriptor and remembers the first error. It always
// reports success to the zip writer: LibTorch 1.13's PyTorchStreamWriter, told of a failed
// write, throws again from its destructor and terminates the process (pytorch issue 87997).
class FileSink {
 public:
  explicit FileSink(int fd) : fd_(fd) {}
  size_t write(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    size_t left = size;
    while (error_ == 0 && left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error_ = n < 0 ? errno : EIO;
        break;
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    return size;
  }
  int error() const { return error_; }

 private:
  int fd_;
  int error_ = 0;
};

// data.pkl, byteorder, then data/<i> for the i-th tensor of `tensors`.
void write_records(PyTorchStreamWriter& writer, const std::vector<torch::Tensor>& tensors, const std::string& pkl) {
  writer.writeRecord("data.pkl", pkl.data(), pkl.size());
  writer.writeRecord("byteorder", "little", 6);
  for (size_t i = 0; i < tensors.size(); ++i) {
    torch::Tensor t = tensors[i].detach().to(torch::kCPU).contiguous();
    writer.writeRecord("data/" + std::to_string(i), t.data_ptr(), t.nbytes());
  }
  writer.writeEndOfFile();
}

// Writes the archive atomically: `<path>.tmp.<pid>`, fsync, rename, fsync of the folder.
void write_zip(const std::string& path, const std::string& pkl, const std::vector<torch::Tensor>& tensors) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) write_error(path, "cannot create '" + tmp + "': " + std::strerror(errno));
  auto discard = [&] {
    if (fd >= 0) ::close(fd);
    fd = -1;
    ::unlink(tmp.c_str());
  };
  try {
    FileSink sink(fd);
    auto writer = std::make_unique<PyTorchStreamWriter>(
        [&sink](const void* data, size_t size) { return sink.write(data, size); });
    try {
      write_records(*writer, tensors, pkl);
    } catch (...) {
      // The writer's destructor finishes the archive if we did not; make sure that cannot throw.
      if (!writer->finalized()) {
        try {
          writer->writeEndOfFile();
        } catch (...) {
        }
      }
      if (!writer->finalized()) (void)writer.release();  // leak rather than terminate in ~PyTorchStreamWriter
      throw;
    }
    if (sink.error() != 0) write_error(path, "writing '" + tmp + "' failed: " + std::strerror(sink.error()));
    if (::fsync(fd) != 0) write_error(path, "flushing '" + tmp + "' failed: " + std::strerror(errno));
    int closed = ::close(fd);
    fd = -1;
    if (closed != 0) write_error(path, "closing '" + tmp + "' failed: " + std::strerror(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      write_error(path, "renaming '" + tmp + "' to it failed: " + std::strerror(errno));
    }
  } catch (const c10::Error& e) {
    discard();
    write_error(path, torch_message(e));
  } catch (...) {
    discard();
    throw;
  }
  fsync_directory(path);
}

// Opens `path` for reading (after check_file).
std::unique_ptr<PyTorchStreamReader> open_archive(const std::string& path) {
  check_file(path);
  try {
    return std::make_unique<PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    read_error(path, "not a readable PyTorch zip archive, truncated or corrupt? (" + torch_message(e) + ")");
  }
}

// --- loading ---------------------------------------------------------------------------------

enum class DtypeClass { kFloating, kComplex, kBool, kInteger };

DtypeClass dtype_class(torch::ScalarType dtype) {
  if (c10::isFloatingType(dtype)) return DtypeClass::kFloating;
  if (c10::isComplexType(dtype)) return DtypeClass::kComplex;
  if (dtype == torch::kBool) return DtypeClass::kBool;
  return DtypeClass::kInteger;
}

// "  2 missing keys (in the model, not in the file): a, b" with the first ten names.
std::string problem_line(size_t count, const char* singular, const char* plural, const char* explanation,
                         const std::vector<std::string>& items, const char* separator) {
  std::string out =
      "\n  " + std::to_string(count) + " " + (count == 1 ? singular : plural) + " (" + explanation + "): ";
  for (size_t i = 0; i < items.size() && i < kListed; ++i) {
    if (i > 0) out += separator;
    out += items[i];
  }
  if (items.size() > kListed)
    out += std::string(separator) + "... and " + std::to_string(items.size() - kListed) + " more";
  return out;
}

void collect(const torch::nn::Module& module, const std::string& prefix, StateDict& out) {
  for (const auto& p : module.named_parameters(/*recurse=*/false)) {
    if (p.value().defined()) out.emplace_back(prefix + p.key(), p.value());
  }
  for (const auto& b : module.named_buffers(/*recurse=*/false)) {
    if (b.value().defined()) out.emplace_back(prefix + b.key(), b.value());
  }
  for (const auto& child : module.named_children()) collect(*child.value(), prefix + child.key() + ".", out);
}

}  // namespace

StateDict read_state_dict(const std::string& path, const ReadOptions& options) {
  auto reader = open_archive(path);
  try {
    return read_archive_state_dict(*reader, path, options);
  } catch (const c10::Error& e) {
    read_error(path, "corrupt archive (" + torch_message(e) + ")");
  }
}

void write_state_dict(const StateDict& state, const std::string& path) {
  check_writable(state, "write_state_dict('" + path + "'): ");
  pickle::Writer w;
  size_t next_storage = 0;
  emit_state_dict(w, state, next_storage);
  w.stop();
  std::vector<torch::Tensor> tensors;
  for (const auto& entry : state) tensors.push_back(entry.second);
  write_zip(path, w.take(), tensors);
}

void write_archive(const Archive& archive, const std::string& path) {
  const std::string where = "write_archive('" + path + "'): ";
  std::unordered_set<std::string> keys;
  for (const auto& [key, value] : archive) {
    if (!keys.insert(key).second) throw ArgumentError(where + "the key '" + key + "' appears twice");
    if (const auto* state = std::get_if<StateDict>(&value)) check_writable(*state, where + "entry '" + key + "': ");
  }
  pickle::Writer w;
  size_t next_storage = 0;
  std::vector<torch::Tensor> tensors;
  w.empty_dict();
  if (!archive.empty()) {
    w.mark();
    for (const auto& [key, value] : archive) {
      w.string(key);
      if (const auto* i = std::get_if<int64_t>(&value)) {
        w.integer(*i);
      } else if (const auto* d = std::get_if<double>(&value)) {
        w.real(*d);
      } else if (const auto* text = std::get_if<std::string>(&value)) {
        w.string(*text);
      } else {
        const auto& state = std::get<StateDict>(value);
        emit_state_dict(w, state, next_storage);
        for (const auto& entry : state) tensors.push_back(entry.second);
      }
    }
    w.setitems();
  }
  w.stop();
  write_zip(path, w.take(), tensors);
}

Archive read_archive(const std::string& path, std::vector<std::string>* skipped) {
  auto reader = open_archive(path);
  try {
    const pickle::ValuePtr root = read_root(*reader, path);
    if (!root->is_mapping() || root->is_object_of(kOrderedDict))
      read_error(path, "expected a dict at the top level (a checkpoint), found " + root->describe());
    Archive out;
    for (const auto& [key, value] : root->entries()) {
      if (!key->is(pickle::Kind::kString)) read_error(path, "a top-level key is " + key->describe() + ", not a str");
      const std::string& name = key->as_string();
      if (value->is(pickle::Kind::kInt)) {
        out.emplace_back(name, value->as_int());
      } else if (value->is(pickle::Kind::kBool)) {
        out.emplace_back(name, int64_t{value->as_bool()});
      } else if (value->is(pickle::Kind::kFloat)) {
        out.emplace_back(name, value->as_double());
      } else if (value->is(pickle::Kind::kString)) {
        out.emplace_back(name, value->as_string());
      } else if (value->is_mapping() &&
                 std::all_of(value->entries().begin(), value->entries().end(), [](const auto& e) {
                   return e.second->is_object_of(kRebuildTensor) || e.second->is_object_of(kRebuildParameter);
                 })) {
        out.emplace_back(name, read_tensors(*reader, path, *value, nullptr));
      } else if (skipped != nullptr) {
        skipped->push_back(name);
      }
    }
    return out;
  } catch (const c10::Error& e) {
    read_error(path, "corrupt archive (" + torch_message(e) + ")");
  }
}

StateDict module_state_dict(const torch::nn::Module& module) {
  StateDict out;
  collect(module, "", out);
  return out;
}

LoadReport load_state_dict(torch::nn::Module& module, const std::string& path, const LoadOptions& options) {
  ReadOptions read_options;
  read_options.entry = options.entry;
  return load_state_dict(module, read_state_dict(path, read_options), path, options);
}

LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, const std::string& source,
                           const LoadOptions& options) {
  const std::string head = "cannot load state dict '" + source + "' into the model: ";
  bool strip = options.strip_module_prefix && !state.empty() &&
               std::all_of(state.begin(), state.end(),
                           [](const auto& entry) { return entry.first.rfind(kModulePrefix, 0) == 0; });
  const size_t cut = strip ? std::strlen(kModulePrefix) : 0;
  std::unordered_map<std::string, size_t> in_file;
  for (size_t i = 0; i < state.size(); ++i) {
    if (!in_file.emplace(state[i].first.substr(cut), i).second) {
      throw DataError(head + "the key '" + state[i].first.substr(cut) + "' appears twice");
    }
  }

  StateDict model = module_state_dict(module);
  std::unordered_set<std::string> in_model;
  std::vector<std::string> missing, unexpected, shapes, dtypes;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (model tensor, file tensor)
  for (const auto& [name, target] : model) {
    in_model.insert(name);
    auto it = in_file.find(name);
    if (it == in_file.end()) {
      missing.push_back(name);
      continue;
    }
    const torch::Tensor& source_tensor = state[it->second].second;
    if (!source_tensor.defined()) {
      dtypes.push_back(name + ": undefined tensor in the file");
      continue;
    }
    if (source_tensor.sizes() != target.sizes()) {
      shapes.push_back(name + ": file " + shape_string(source_tensor.sizes()) + ", model " +
                       shape_string(target.sizes()));
      continue;
    }
    if (dtype_class(source_tensor.scalar_type()) != dtype_class(target.scalar_type())) {
      dtypes.push_back(name + ": file " + dtype_name(source_tensor.scalar_type()) + ", model " +
                       dtype_name(target.scalar_type()));
      continue;
    }
    copies.emplace_back(target, source_tensor);
  }
  for (const auto& [name, tensor] : state) {
    if (in_model.count(name.substr(cut)) == 0) unexpected.push_back(name.substr(cut));
  }

  bool report_missing = !missing.empty() && !options.allow_missing;
  bool report_unexpected = !unexpected.empty() && !options.allow_unexpected;
  if (report_missing || report_unexpected || !shapes.empty() || !dtypes.empty()) {
    std::string message = head;
    std::string summary;
    auto count = [&](size_t n, const char* singular, const char* plural) {
      if (n == 0) return;
      summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " " + (n == 1 ? singular : plural);
    };
    if (report_missing) count(missing.size(), "missing key", "missing keys");
    if (report_unexpected) count(unexpected.size(), "unexpected key", "unexpected keys");
    count(shapes.size(), "shape mismatch", "shape mismatches");
    count(dtypes.size(), "dtype mismatch", "dtype mismatches");
    message += summary;
    if (report_missing) {
      message +=
          problem_line(missing.size(), "missing key", "missing keys", "in the model, not in the file", missing, ", ");
    }
    if (report_unexpected) {
      message += problem_line(unexpected.size(), "unexpected key", "unexpected keys", "in the file, not in the model",
                              unexpected, ", ");
    }
    if (!shapes.empty()) {
      message +=
          problem_line(shapes.size(), "shape mismatch", "shape mismatches", "file shape vs model shape", shapes, "; ");
    }
    if (!dtypes.empty()) {
      message += problem_line(dtypes.size(), "dtype mismatch", "dtype mismatches",
                              "integer, bool and floating tensors do not convert into each other", dtypes, "; ");
    }
    if (!options.strip_module_prefix && !missing.empty() && !state.empty() &&
        std::all_of(state.begin(), state.end(),
                    [](const auto& entry) { return entry.first.rfind(kModulePrefix, 0) == 0; })) {
      message +=
          "\n  (every key in the file starts with 'module.', as DistributedDataParallel saves them; "
          "strip_module_prefix removes it)";
    }
    throw DataError(message);
  }

  {
    torch::NoGradGuard no_grad;
    for (auto& [target, source_tensor] : copies) target.copy_(source_tensor);
  }
  LoadReport report;
  report.missing = std::move(missing);
  report.unexpected = std::move(unexpected);
  return report;
}

void save_state_dict(const torch::nn::Module& module, const std::string& path) {
  write_state_dict(module_state_dict(module), path);
}

}  // namespace facetrain::io
