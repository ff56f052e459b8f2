#pragma once
// A small, safe Python pickle reader (and a minimal writer) for the files face-recognition
// training meets: PyTorch's `.pth` (the `data.pkl` inside torch.save's zip) and insightface's
// verification `.bin` files (docs: ../shared/docs/formats.md, section 3).
//
// A pickle is a program for a stack machine, and Python's own reader will import and call
// whatever the program names. This reader never calls anything: it builds an inert tree of
// values. GLOBAL/STACK_GLOBAL are checked against a caller-given allow-list ("module.name")
// and refused at once otherwise; REDUCE/NEWOBJ produce an Object node {callable, args}; BUILD
// attaches a state to it; BINPERSID produces a PersistentId node wrapping the id.
//
// Opcodes read (the binary ones of protocols 2-5 that torch.save, pickle.dump and numpy emit):
//   PROTO FRAME STOP MARK  NONE NEWTRUE NEWFALSE  BININT BININT1 BININT2 LONG1 BINFLOAT
//   BINUNICODE SHORT_BINUNICODE BINUNICODE8  BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES
//   BINBYTES8 BYTEARRAY8  EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3  EMPTY_LIST APPEND APPENDS
//   EMPTY_DICT SETITEM SETITEMS  GLOBAL STACK_GLOBAL REDUCE NEWOBJ BUILD BINPERSID
//   BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET
// Everything else (the text opcodes of protocols 0/1, INST, OBJ, EXT*, PERSID, sets,
// out-of-band buffers, ...) is refused with a facetrain::DataError naming the opcode.
//
// Hardening: every length is checked against the bytes left, memo indices are checked, stack
// underflow and missing MARKs are reported, nesting is limited (`ReaderOptions::max_depth`),
// recursive structures (a container modified after it was placed inside another value) are
// refused, and dict keys are indexed by hash, so no input makes the reader crash, read out of
// bounds, recurse without bound or run in more than linear time (plus the size of dict keys).
// Every error is a facetrain::DataError naming the source and the byte offset.
//
// Example (an insightface verification file, a pickle of `(bins, issame_list)`):
//   pickle::ReaderOptions options;
//   options.allowed_globals = {"_codecs.encode", "__builtin__.bytes", "builtins.bytes"};
//   pickle::ValuePtr root = pickle::read_file("lfw.bin", options);
//   const auto& pair = root->as_tuple(2);           // throws DataError unless a 2-tuple
//   for (const auto& image : pair[0]->as_list()) std::string jpeg = pickle::bytes_of(*image);
//   for (const auto& same : pair[1]->as_list()) bool issame = same->as_bool();

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "facetrain/core/error.h"

namespace facetrain::io::pickle {

/// What a Value holds.
enum class Kind : uint8_t {
  kNone,          ///< Python None
  kBool,          ///< True / False
  kInt,           ///< an integer that fits int64 (wider ones are refused)
  kFloat,         ///< a float (double)
  kString,        ///< a str, as UTF-8 bytes
  kBytes,         ///< bytes, bytearray, or a Python 2 str (BINSTRING): raw bytes
  kList,          ///< a list
  kTuple,         ///< a tuple
  kDict,          ///< a dict (insertion order kept)
  kGlobal,        ///< a class or function named by GLOBAL/STACK_GLOBAL ("module.name"), never imported
  kObject,        ///< the inert result of REDUCE/NEWOBJ: {callable, args}, plus BUILD's state and items
  kPersistentId,  ///< the result of BINPERSID: an id the caller resolves (torch: a storage reference)
};

/// "None", "bool", "int", "float", "str", "bytes", "list", "tuple", "dict", "global", "object",
/// "persistent id".
const char* kind_name(Kind kind);

class Value;
/// Values are shared: a memo reference (BINGET) yields the same node again.
using ValuePtr = std::shared_ptr<Value>;
/// One key/value pair of a dict or of an OrderedDict object.
using Entry = std::pair<ValuePtr, ValuePtr>;

class Unpickler;  // the reader (src/io/pickle.cpp); it builds and mutates values

/// One node of the value tree a pickle describes. Nodes form a DAG (never a cycle: the reader
/// refuses recursive structures). After `read` returns, treat the tree as immutable.
///
/// The accessors check the kind and throw facetrain::DataError with a message such as
/// "expected int, found str 'abc' (created at byte 42)"; callers add the file name.
class Value {
 public:
  /// Builders, for tests and for callers that assemble values by hand.
  static ValuePtr none();
  static ValuePtr boolean(bool value);
  static ValuePtr integer(int64_t value);
  static ValuePtr real(double value);
  static ValuePtr string(std::string utf8);
  static ValuePtr bytes(std::string raw);
  static ValuePtr list(std::vector<ValuePtr> items = {});
  static ValuePtr tuple(std::vector<ValuePtr> items = {});
  static ValuePtr dict(std::vector<Entry> entries = {});
  static ValuePtr global(std::string module_dot_name);
  static ValuePtr object(ValuePtr callable, ValuePtr args);
  static ValuePtr persistent_id(ValuePtr id);

  Kind kind() const { return kind_; }
  bool is(Kind kind) const { return kind_ == kind; }
  /// Byte offset of the opcode that created this node (0 for built nodes).
  size_t offset() const { return offset_; }
  /// Nesting depth: 0 for scalars and empty containers, 1 + the deepest child otherwise.
  int depth() const { return depth_; }

  bool as_bool() const;                    ///< kBool
  int64_t as_int() const;                  ///< kInt
  double as_double() const;                ///< kFloat, or kInt converted
  const std::string& as_string() const;    ///< kString (UTF-8)
  const std::string& as_bytes() const;     ///< kBytes
  const std::string& global_name() const;  ///< kGlobal: "module.name"

  /// The items of a list or tuple.
  const std::vector<ValuePtr>& items() const;
  /// The items of a list.
  const std::vector<ValuePtr>& as_list() const;
  /// The items of a tuple; with `size` given, also checks the tuple has exactly that many.
  const std::vector<ValuePtr>& as_tuple(size_t size = kAnySize) const;
  /// Item `index` of a list or tuple (bounds-checked).
  const Value& item(size_t index) const;

  /// True for a dict and for an OrderedDict object (REDUCE of collections.OrderedDict).
  bool is_mapping() const;
  /// The key/value pairs of a mapping, in insertion order (duplicates resolved as Python does:
  /// the later value replaces the earlier one in the earlier one's position).
  const std::vector<Entry>& entries() const;
  /// The value of the str key `key` of a mapping, or nullptr.
  const Value* find(std::string_view key) const;

  /// kObject: the callable (a kGlobal), its argument tuple, and BUILD's state (null if none).
  const Value& callable() const;
  const Value& args() const;
  const ValuePtr& state() const;
  /// True for an Object whose callable is the global `module_dot_name`.
  bool is_object_of(std::string_view module_dot_name) const;

  /// kPersistentId: the id BINPERSID popped.
  const Value& persistent_id() const;

  /// A short description for messages: "int 3", "str 'epoch'", "bytes (12 bytes)",
  /// "dict of 4 entries", "object torch._utils._rebuild_tensor_v2", ...
  std::string describe() const;

  static constexpr size_t kAnySize = static_cast<size_t>(-1);

 private:
  friend class Unpickler;
  explicit Value(Kind kind) : kind_(kind) {}
  [[noreturn]] void mismatch(const char* expected) const;

  Kind kind_;
  bool flag_ = false;     // kBool
  bool adopted_ = false;  // placed inside another value (the reader then refuses to modify it)
  int depth_ = 0;
  size_t offset_ = 0;
  int64_t int_ = 0;                   // kInt
  double float_ = 0;                  // kFloat
  std::string text_;                  // kString, kBytes, kGlobal
  std::vector<ValuePtr> items_;       // kList, kTuple
  std::vector<Entry> entries_;        // kDict; kObject (SETITEM(S) on an OrderedDict object)
  ValuePtr callable_, args_, state_;  // kObject
  ValuePtr inner_;                    // kPersistentId
};

/// The raw bytes of a bytes-like value, whichever way the pickle spelled them: kBytes
/// (bytes, bytearray, Python 2 str); `_codecs.encode(text, 'latin1')` (how Python 3 writes
/// bytes at protocol 2; each code point of `text` is one byte); `bytes()` with no arguments
/// (`__builtin__.bytes` / `builtins.bytes`, Python 3's protocol-2 spelling of b'').
/// Throws DataError for anything else.
std::string bytes_of(const Value& value);

/// How to read a pickle.
struct ReaderOptions {
  /// The name errors cite (a file path, "lfw.bin", "model.pth (data.pkl)").
  std::string source = "<pickle>";
  /// Globals that may appear, as "module.name" ("collections.OrderedDict"). Any other global
  /// is refused when its GLOBAL/STACK_GLOBAL opcode is read. Empty: no globals at all.
  std::vector<std::string> allowed_globals;
  /// Deepest nesting accepted (Value::depth of the root). Real files need less than 20.
  int max_depth = 200;
};

/// Reads one pickle from `data` (bytes after its STOP are ignored, as Python does). Throws
/// facetrain::DataError naming `options.source` and the byte offset on anything it refuses.
ValuePtr read(std::string_view data, const ReaderOptions& options);

/// Reads the pickle in file `path`; errors cite `path` (options.source is ignored).
ValuePtr read_file(const std::string& path, ReaderOptions options);

/// Emits protocol-2 pickle opcodes that Python's pickle (and this reader) read back: a thin
/// opcode emitter; the caller is responsible for a well-formed program (the reader checks it).
///
/// Example, the pickle of `collections.OrderedDict([('a', 1)])`:
///   pickle::Writer w;                       // PROTO 2
///   w.global("collections", "OrderedDict");
///   w.empty_tuple();
///   w.reduce();                             // OrderedDict()
///   w.mark();
///   w.string("a");
///   w.integer(1);
///   w.setitems();
///   w.stop();
///   std::string bytes = w.take();
class Writer {
 public:
  /// Starts the pickle with PROTO 2.
  Writer();
  /// Starts the pickle with PROTO `protocol` (2..5; ArgumentError otherwise). The opcodes are
  /// the same; use 3 or more when the pickle holds bytes() (Python 2 cannot read them). No
  /// FRAME is written (framing is optional in protocols 4 and 5).
  explicit Writer(int protocol);

  void none();                         ///< NONE
  void boolean(bool value);            ///< NEWTRUE / NEWFALSE
  void integer(int64_t value);         ///< BININT1 / BININT2 / BININT / LONG1, the shortest that fits
  void real(double value);             ///< BINFLOAT
  void string(std::string_view utf8);  ///< BINUNICODE
  /// A Python 3 bytes object: SHORT_BINBYTES (< 256 bytes), BINBYTES (< 4 GiB) or BINBYTES8.
  /// Protocol 3 opcodes: Python 3 reads them whatever the PROTO says.
  void bytes(std::string_view raw);
  /// GLOBAL "module\nname\n"; a global already written is fetched from the memo (BINGET).
  void global(std::string_view module, std::string_view name);

  void mark();         ///< MARK
  void empty_tuple();  ///< EMPTY_TUPLE
  /// Pops `size` values into a tuple: EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3 (size <= 3 only;
  /// use mark() ... tuple_from_mark() for more). Throws ArgumentError for size > 3.
  void tuple(size_t size);
  void tuple_from_mark();    ///< TUPLE
  void empty_list();         ///< EMPTY_LIST
  void append();             ///< APPEND
  void appends();            ///< APPENDS
  void empty_dict();         ///< EMPTY_DICT
  void setitem();            ///< SETITEM
  void setitems();           ///< SETITEMS
  void reduce();             ///< REDUCE
  void build();              ///< BUILD
  void binpersid();          ///< BINPERSID
  void put(uint32_t index);  ///< BINPUT / LONG_BINPUT
  void get(uint32_t index);  ///< BINGET / LONG_BINGET
  /// STOP; after it, every call but data()/take() throws ArgumentError.
  void stop();

  const std::string& data() const { return out_; }
  /// The bytes written so far; the writer is left empty and finished.
  std::string take();

 private:
  void op(uint8_t code);
  void le(uint64_t value, int bytes);

  std::string out_;
  bool finished_ = false;
  uint32_t next_memo_ = 0;
  std::unordered_map<std::string, uint32_t> global_memo_;
};

}  // namespace facetrain::io::pickle
