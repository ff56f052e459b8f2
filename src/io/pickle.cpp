#include "facetrain/io/pickle.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_set>

namespace facetrain::io::pickle {

namespace {

// Opcode bytes (Python's Lib/pickle.py).
enum Op : uint8_t {
  kMark = '(',
  kStop = '.',
  kBinFloat = 'G',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinString = 'T',
  kShortBinString = 'U',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kEmptyDict = '}',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kEmptyList = ']',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kProto = 0x80,
  kNewObj = 0x81,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
  kByteArray8 = 0x96,
};

// Every opcode Python knows, for messages about the ones refused.
const char* opcode_name(uint8_t code) {
  switch (code) {
    case '(':
      return "MARK";
    case '.':
      return "STOP";
    case '0':
      return "POP";
    case '1':
      return "POP_MARK";
    case '2':
      return "DUP";
    case 'F':
      return "FLOAT";
    case 'I':
      return "INT";
    case 'J':
      return "BININT";
    case 'K':
      return "BININT1";
    case 'L':
      return "LONG";
    case 'M':
      return "BININT2";
    case 'N':
      return "NONE";
    case 'P':
      return "PERSID";
    case 'Q':
      return "BINPERSID";
    case 'R':
      return "REDUCE";
    case 'S':
      return "STRING";
    case 'T':
      return "BINSTRING";
    case 'U':
      return "SHORT_BINSTRING";
    case 'V':
      return "UNICODE";
    case 'X':
      return "BINUNICODE";
    case 'a':
      return "APPEND";
    case 'b':
      return "BUILD";
    case 'c':
      return "GLOBAL";
    case 'd':
      return "DICT";
    case '}':
      return "EMPTY_DICT";
    case 'e':
      return "APPENDS";
    case 'g':
      return "GET";
    case 'h':
      return "BINGET";
    case 'i':
      return "INST";
    case 'j':
      return "LONG_BINGET";
    case 'l':
      return "LIST";
    case ']':
      return "EMPTY_LIST";
    case 'o':
      return "OBJ";
    case 'p':
      return "PUT";
    case 'q':
      return "BINPUT";
    case 'r':
      return "LONG_BINPUT";
    case 's':
      return "SETITEM";
    case 't':
      return "TUPLE";
    case ')':
      return "EMPTY_TUPLE";
    case 'u':
      return "SETITEMS";
    case 'G':
      return "BINFLOAT";
    case 'B':
      return "BINBYTES";
    case 'C':
      return "SHORT_BINBYTES";
    case 0x80:
      return "PROTO";
    case 0x81:
      return "NEWOBJ";
    case 0x82:
      return "EXT1";
    case 0x83:
      return "EXT2";
    case 0x84:
      return "EXT4";
    case 0x85:
      return "TUPLE1";
    case 0x86:
      return "TUPLE2";
    case 0x87:
      return "TUPLE3";
    case 0x88:
      return "NEWTRUE";
    case 0x89:
      return "NEWFALSE";
    case 0x8a:
      return "LONG1";
    case 0x8b:
      return "LONG4";
    case 0x8c:
      return "SHORT_BINUNICODE";
    case 0x8d:
      return "BINUNICODE8";
    case 0x8e:
      return "BINBYTES8";
    case 0x8f:
      return "EMPTY_SET";
    case 0x90:
      return "ADDITEMS";
    case 0x91:
      return "FROZENSET";
    case 0x92:
      return "NEWOBJ_EX";
    case 0x93:
      return "STACK_GLOBAL";
    case 0x94:
      return "MEMOIZE";
    case 0x95:
      return "FRAME";
    case 0x96:
      return "BYTEARRAY8";
    case 0x97:
      return "NEXT_BUFFER";
    case 0x98:
      return "READONLY_BUFFER";
    default:
      return nullptr;
  }
}

// "INST ('i', 0x69)" or "unknown opcode 0xff".
std::string describe_opcode(uint8_t code) {
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02x", code);
  const char* name = opcode_name(code);
  if (name == nullptr) return std::string("unknown opcode ") + hex;
  std::string out = std::string("opcode ") + name + " (";
  if (code >= 0x20 && code < 0x7f) out += std::string("'") + static_cast<char>(code) + "', ";
  return out + hex + ")";
}

// A printable, shortened rendering of text for messages.
std::string quote(std::string_view text, size_t limit = 40) {
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < limit; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\'' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);  // UTF-8 passes through
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  if (text.size() > limit) out += "...";
  return out + "'";
}

constexpr std::string_view kOrderedDict = "collections.OrderedDict";

}  // namespace

// ---------------------------------------------------------------------------------------------
// Value

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kList:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kDict:
      return "dict";
    case Kind::kGlobal:
      return "global";
    case Kind::kObject:
      return "object";
    case Kind::kPersistentId:
      return "persistent id";
  }
  return "?";
}

ValuePtr Value::none() { return ValuePtr(new Value(Kind::kNone)); }

ValuePtr Value::boolean(bool value) {
  ValuePtr v(new Value(Kind::kBool));
  v->flag_ = value;
  return v;
}

ValuePtr Value::integer(int64_t value) {
  ValuePtr v(new Value(Kind::kInt));
  v->int_ = value;
  return v;
}

ValuePtr Value::real(double value) {
  ValuePtr v(new Value(Kind::kFloat));
  v->float_ = value;
  return v;
}

ValuePtr Value::string(std::string utf8) {
  ValuePtr v(new Value(Kind::kString));
  v->text_ = std::move(utf8);
  return v;
}

ValuePtr Value::bytes(std::string raw) {
  ValuePtr v(new Value(Kind::kBytes));
  v->text_ = std::move(raw);
  return v;
}

namespace {
int child_depth(const ValuePtr& child) { return child ? child->depth() + 1 : 0; }
}  // namespace

ValuePtr Value::list(std::vector<ValuePtr> items) {
  ValuePtr v(new Value(Kind::kList));
  for (const auto& item : items) v->depth_ = std::max(v->depth_, child_depth(item));
  v->items_ = std::move(items);
  return v;
}

ValuePtr Value::tuple(std::vector<ValuePtr> items) {
  ValuePtr v = list(std::move(items));
  v->kind_ = Kind::kTuple;
  return v;
}

ValuePtr Value::dict(std::vector<Entry> entries) {
  ValuePtr v(new Value(Kind::kDict));
  for (const auto& [key, value] : entries) {
    v->depth_ = std::max({v->depth_, child_depth(key), child_depth(value)});
  }
  v->entries_ = std::move(entries);
  return v;
}

ValuePtr Value::global(std::string module_dot_name) {
  ValuePtr v(new Value(Kind::kGlobal));
  v->text_ = std::move(module_dot_name);
  return v;
}

ValuePtr Value::object(ValuePtr callable, ValuePtr args) {
  ValuePtr v(new Value(Kind::kObject));
  v->depth_ = std::max(child_depth(callable), child_depth(args));
  v->callable_ = std::move(callable);
  v->args_ = std::move(args);
  return v;
}

ValuePtr Value::persistent_id(ValuePtr id) {
  ValuePtr v(new Value(Kind::kPersistentId));
  v->depth_ = child_depth(id);
  v->inner_ = std::move(id);
  return v;
}

void Value::mismatch(const char* expected) const {
  std::string message = std::string("expected ") + expected + ", found " + describe();
  if (offset_ > 0) message += " (created at byte " + std::to_string(offset_) + ")";
  throw DataError(message);
}

bool Value::as_bool() const {
  if (kind_ != Kind::kBool) mismatch("bool");
  return flag_;
}

int64_t Value::as_int() const {
  if (kind_ != Kind::kInt) mismatch("int");
  return int_;
}

double Value::as_double() const {
  if (kind_ == Kind::kInt) return static_cast<double>(int_);
  if (kind_ != Kind::kFloat) mismatch("float");
  return float_;
}

const std::string& Value::as_string() const {
  if (kind_ != Kind::kString) mismatch("str");
  return text_;
}

const std::string& Value::as_bytes() const {
  if (kind_ != Kind::kBytes) mismatch("bytes");
  return text_;
}

const std::string& Value::global_name() const {
  if (kind_ != Kind::kGlobal) mismatch("global");
  return text_;
}

const std::vector<ValuePtr>& Value::items() const {
  if (kind_ != Kind::kList && kind_ != Kind::kTuple) mismatch("list or tuple");
  return items_;
}

const std::vector<ValuePtr>& Value::as_list() const {
  if (kind_ != Kind::kList) mismatch("list");
  return items_;
}

const std::vector<ValuePtr>& Value::as_tuple(size_t size) const {
  if (kind_ != Kind::kTuple || (size != kAnySize && items_.size() != size)) {
    mismatch(size == kAnySize ? "tuple" : ("tuple of " + std::to_string(size)).c_str());
  }
  return items_;
}

const Value& Value::item(size_t index) const {
  const auto& all = items();
  if (index >= all.size()) {
    throw DataError("item " + std::to_string(index) + " requested from " + describe() +
                    (offset_ > 0 ? " (created at byte " + std::to_string(offset_) + ")" : std::string()));
  }
  if (!all[index]) throw DataError("item " + std::to_string(index) + " of " + describe() + " is empty");
  return *all[index];
}

bool Value::is_mapping() const { return kind_ == Kind::kDict || is_object_of(kOrderedDict); }

const std::vector<Entry>& Value::entries() const {
  if (!is_mapping()) mismatch("dict");
  return entries_;
}

const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : entries()) {
    if (k && k->kind_ == Kind::kString && k->text_ == key) return v.get();
  }
  return nullptr;
}

const Value& Value::callable() const {
  if (kind_ != Kind::kObject) mismatch("object");
  return *callable_;
}

const Value& Value::args() const {
  if (kind_ != Kind::kObject) mismatch("object");
  return *args_;
}

const ValuePtr& Value::state() const {
  if (kind_ != Kind::kObject) mismatch("object");
  return state_;
}

bool Value::is_object_of(std::string_view module_dot_name) const {
  return kind_ == Kind::kObject && callable_ && callable_->kind_ == Kind::kGlobal &&
         callable_->text_ == module_dot_name;
}

const Value& Value::persistent_id() const {
  if (kind_ != Kind::kPersistentId) mismatch("persistent id");
  return *inner_;
}

std::string Value::describe() const {
  switch (kind_) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return flag_ ? "bool True" : "bool False";
    case Kind::kInt:
      return "int " + std::to_string(int_);
    case Kind::kFloat: {
      std::ostringstream s;
      s.precision(12);
      s << "float " << float_;
      return s.str();
    }
    case Kind::kString:
      return "str " + quote(text_);
    case Kind::kBytes:
      return "bytes (" + std::to_string(text_.size()) + " bytes)";
    case Kind::kList:
      return "list of " + std::to_string(items_.size());
    case Kind::kTuple:
      return "tuple of " + std::to_string(items_.size());
    case Kind::kDict:
      return "dict of " + std::to_string(entries_.size()) + (entries_.size() == 1 ? " entry" : " entries");
    case Kind::kGlobal:
      return "global " + text_;
    case Kind::kObject: {
      std::string out = "object " + (callable_ && callable_->kind_ == Kind::kGlobal ? callable_->text_ : "?");
      if (!entries_.empty()) out += " of " + std::to_string(entries_.size()) + " entries";
      return out;
    }
    case Kind::kPersistentId:
      return "persistent id";
  }
  return "?";
}

std::string bytes_of(const Value& value) {
  if (value.is(Kind::kBytes)) return value.as_bytes();
  if (value.is_object_of("_codecs.encode")) {
    const auto& args = value.args().as_tuple(2);
    const std::string& encoding = args[1]->as_string();
    if (encoding != "latin1" && encoding != "latin-1") {
      throw DataError("_codecs.encode with encoding " + quote(encoding) + " (only latin1 spells bytes)");
    }
    // Decode the UTF-8 text; every code point must be < 256 and becomes one byte.
    const std::string& text = args[0]->as_string();
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      unsigned char c = static_cast<unsigned char>(text[i]);
      if (c < 0x80) {
        out += static_cast<char>(c);
        i += 1;
      } else if ((c == 0xc2 || c == 0xc3) && i + 1 < text.size() &&
                 (static_cast<unsigned char>(text[i + 1]) & 0xc0) == 0x80) {
        out += static_cast<char>(((c & 0x1f) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3f));
        i += 2;
      } else {
        throw DataError("_codecs.encode text has a character above U+00FF or invalid UTF-8 at byte " +
                        std::to_string(i) + " (not a latin1 spelling of bytes)");
      }
    }
    return out;
  }
  if (value.is_object_of("__builtin__.bytes") || value.is_object_of("builtins.bytes")) {
    if (!value.args().as_tuple().empty()) {
      throw DataError("bytes() with arguments is not a spelling of bytes this reader accepts");
    }
    return std::string();
  }
  throw DataError("expected bytes, found " + value.describe() +
                  (value.offset() > 0 ? " (created at byte " + std::to_string(value.offset()) + ")" : std::string()));
}

// ---------------------------------------------------------------------------------------------
// Reader

class Unpickler {
 public:
  Unpickler(std::string_view data, const ReaderOptions& options)
      : data_(data), options_(options), allowed_(options.allowed_globals.begin(), options.allowed_globals.end()) {}

  ValuePtr run() {
    while (pos_ < data_.size()) {
      op_start_ = pos_;
      uint8_t code = static_cast<uint8_t>(data_[pos_++]);
      op_ = code;
      if (step(code)) {
        if (stack_.size() != 1 || !marks_.empty()) {
          fail("malformed pickle", "STOP with " + std::to_string(stack_.size()) + " values on the stack and " +
                                       std::to_string(marks_.size()) + " open MARKs (expected one value)");
        }
        return stack_.back();
      }
    }
    op_start_ = data_.size();
    fail("truncated pickle", "the data ends without a STOP opcode");
  }

 private:
  // Executes one opcode; returns true at STOP.
  bool step(uint8_t code) {
    switch (code) {
      case kProto: {
        uint8_t version = u8();
        if (version < 2 || version > 5) fail("unsupported pickle", "protocol " + std::to_string(version));
        return false;
      }
      case kFrame: {
        uint64_t size = u64();
        if (size > remaining()) truncated(std::to_string(size) + " bytes");
        return false;  // frames only group opcodes for buffered reading
      }
      case kStop:
        return true;
      case kMark:
        marks_.push_back(stack_.size());
        return false;

      case kNone:
        push(make(Kind::kNone));
        return false;
      case kNewTrue:
      case kNewFalse: {
        ValuePtr v = make(Kind::kBool);
        v->flag_ = code == kNewTrue;
        push(std::move(v));
        return false;
      }
      case kBinInt:
        push_int(static_cast<int32_t>(static_cast<uint32_t>(le(4))));
        return false;
      case kBinInt1:
        push_int(u8());
        return false;
      case kBinInt2:
        push_int(static_cast<int64_t>(le(2)));
        return false;
      case kLong1: {
        uint8_t n = u8();
        if (n > 8) fail("unsupported pickle", "LONG1 integer of " + std::to_string(n) + " bytes (wider than 64 bits)");
        std::string_view b = take(n);
        uint64_t bits = 0;
        for (size_t i = 0; i < n; ++i) bits |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
        if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) bits |= ~uint64_t{0} << (8 * n);  // sign
        int64_t value;
        std::memcpy(&value, &bits, sizeof(value));
        push_int(value);
        return false;
      }
      case kBinFloat: {
        std::string_view b = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(b[i]);  // big-endian
        ValuePtr v = make(Kind::kFloat);
        std::memcpy(&v->float_, &bits, sizeof(double));
        push(std::move(v));
        return false;
      }

      case kBinUnicode:
        push_text(Kind::kString, le(4));
        return false;
      case kShortBinUnicode:
        push_text(Kind::kString, u8());
        return false;
      case kBinUnicode8:
        push_text(Kind::kString, u64());
        return false;
      case kBinString: {
        int32_t size = static_cast<int32_t>(static_cast<uint32_t>(le(4)));
        if (size < 0) fail("malformed pickle", "BINSTRING with negative length " + std::to_string(size));
        push_text(Kind::kBytes, static_cast<uint64_t>(size));
        return false;
      }
      case kShortBinString:
        push_text(Kind::kBytes, u8());
        return false;
      case kBinBytes:
        push_text(Kind::kBytes, le(4));
        return false;
      case kShortBinBytes:
        push_text(Kind::kBytes, u8());
        return false;
      case kBinBytes8:
        push_text(Kind::kBytes, u64());
        return false;
      case kByteArray8:
        push_text(Kind::kBytes, u64());
        return false;

      case kEmptyTuple:
        push(make(Kind::kTuple));
        return false;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        size_t n = static_cast<size_t>(code - kTuple1 + 1);
        if (available() < n) underflow(n);
        std::vector<ValuePtr> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
        stack_.resize(stack_.size() - n);
        push(make_sequence(Kind::kTuple, std::move(items)));
        return false;
      }
      case kTuple:
        push(make_sequence(Kind::kTuple, pop_mark()));
        return false;
      case kEmptyList:
        push(make(Kind::kList));
        return false;
      case kEmptyDict:
        push(make(Kind::kDict));
        return false;

      case kAppend: {
        ValuePtr item = pop();
        Value& list = modifiable_top(Kind::kList, "a list");
        adopt(list, item);
        list.items_.push_back(std::move(item));
        return false;
      }
      case kAppends: {
        std::vector<ValuePtr> items = pop_mark();
        Value& list = modifiable_top(Kind::kList, "a list");
        for (auto& item : items) {
          adopt(list, item);
          list.items_.push_back(std::move(item));
        }
        return false;
      }
      case kSetItem: {
        ValuePtr value = pop();
        ValuePtr key = pop();
        Value& dict = modifiable_mapping();
        set_item(dict, std::move(key), std::move(value));
        return false;
      }
      case kSetItems: {
        std::vector<ValuePtr> items = pop_mark();
        if (items.size() % 2 != 0) {
          fail("malformed pickle",
               "SETITEMS with an odd number (" + std::to_string(items.size()) + ") of keys and values");
        }
        Value& dict = modifiable_mapping();
        for (size_t i = 0; i < items.size(); i += 2) set_item(dict, std::move(items[i]), std::move(items[i + 1]));
        return false;
      }

      case kGlobal: {
        std::string module(line("GLOBAL module"));
        std::string name(line("GLOBAL name"));
        push_global(module + "." + name);
        return false;
      }
      case kStackGlobal: {
        ValuePtr name = pop();
        ValuePtr module = pop();
        if (!module->is(Kind::kString) || !name->is(Kind::kString)) {
          fail("malformed pickle",
               "STACK_GLOBAL needs two str, found " + module->describe() + " and " + name->describe());
        }
        push_global(module->text_ + "." + name->text_);
        return false;
      }
      case kReduce:
      case kNewObj: {
        ValuePtr args = pop();
        ValuePtr callable = pop();
        if (!callable->is(Kind::kGlobal)) {
          fail("malformed pickle",
               std::string(opcode_name(code)) + " of " + callable->describe() + " (expected a global)");
        }
        if (!args->is(Kind::kTuple)) {
          fail("malformed pickle",
               std::string(opcode_name(code)) + " with arguments " + args->describe() + " (expected a tuple)");
        }
        ValuePtr object = make(Kind::kObject);
        adopt(*object, callable);
        adopt(*object, args);
        object->callable_ = std::move(callable);
        object->args_ = std::move(args);
        push(std::move(object));
        return false;
      }
      case kBuild: {
        ValuePtr state = pop();
        Value& object = modifiable_top(Kind::kObject, "an object");
        if (object.state_) fail("malformed pickle", "BUILD on " + object.describe() + ", which already has a state");
        adopt(object, state);
        object.state_ = std::move(state);
        return false;
      }
      case kBinPersId: {
        ValuePtr id = pop();
        ValuePtr v = make(Kind::kPersistentId);
        adopt(*v, id);
        v->inner_ = std::move(id);
        push(std::move(v));
        return false;
      }

      case kBinPut:
        memo_put(u8());
        return false;
      case kLongBinPut:
        memo_put(le(4));
        return false;
      case kMemoize:
        memo_put(memo_.size());
        return false;
      case kBinGet:
        memo_get(u8());
        return false;
      case kLongBinGet:
        memo_get(le(4));
        return false;

      default:
        fail(std::string("unsupported pickle ") + describe_opcode(code),
             "this reader takes only the binary opcodes of protocols 2-5 used by torch.save, pickle and numpy");
    }
  }

  // --- errors ------------------------------------------------------------------------------

  [[noreturn]] void fail(const std::string& head, const std::string& detail) const {
    throw DataError(head + " at byte " + std::to_string(op_start_) + " of " + options_.source + ": " + detail);
  }
  [[noreturn]] void truncated(const std::string& what) const {
    fail("truncated pickle", std::string(opcode_name(op_) ? opcode_name(op_) : "opcode") + " needs " + what +
                                 ", only " + std::to_string(remaining()) + " bytes left");
  }
  [[noreturn]] void underflow(size_t needed) const {
    fail("malformed pickle", std::string(opcode_name(op_)) + " needs " + std::to_string(needed) + " value" +
                                 (needed == 1 ? "" : "s") + " but the stack holds " + std::to_string(available()) +
                                 (marks_.empty() ? "" : " above the last MARK") + " (stack underflow)");
  }

  // --- input -------------------------------------------------------------------------------

  size_t remaining() const { return data_.size() - pos_; }
  std::string_view take(uint64_t n) {
    if (n > remaining()) truncated(std::to_string(n) + " bytes");
    std::string_view out = data_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return out;
  }
  uint8_t u8() { return static_cast<uint8_t>(take(1)[0]); }
  uint64_t le(int bytes) {
    std::string_view b = take(static_cast<uint64_t>(bytes));
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[static_cast<size_t>(i)]);
    return v;
  }
  uint64_t u64() { return le(8); }
  std::string_view line(const char* what) {
    size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) truncated(std::string("a newline-terminated ") + what);
    std::string_view out = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }

  // --- stack -------------------------------------------------------------------------------

  ValuePtr make(Kind kind) const {
    ValuePtr v(new Value(kind));
    v->offset_ = op_start_;
    return v;
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  void push_int(int64_t value) {
    ValuePtr v = make(Kind::kInt);
    v->int_ = value;
    push(std::move(v));
  }
  void push_text(Kind kind, uint64_t size) {
    std::string_view text = take(size);
    ValuePtr v = make(kind);
    v->text_.assign(text.data(), text.size());
    push(std::move(v));
  }
  void push_global(std::string name) {
    if (allowed_.count(name) == 0) {
      throw DataError("refusing to load global " + quote(name, 200) + " at byte " + std::to_string(op_start_) + " of " +
                      options_.source + ": not on the allow-list");
    }
    ValuePtr v = make(Kind::kGlobal);
    v->text_ = std::move(name);
    push(std::move(v));
  }
  // Values above the last MARK (all of them without one).
  size_t available() const { return stack_.size() - (marks_.empty() ? 0 : marks_.back()); }
  ValuePtr pop() {
    if (available() < 1) underflow(1);
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("malformed pickle", std::string(opcode_name(op_)) + " without a MARK");
    size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }
  // The container at the top of the stack (below the mark, for APPENDS/SETITEMS, since the
  // items were popped already), which must still be modifiable.
  Value& top() {
    if (available() < 1) underflow(1);
    return *stack_.back();
  }
  Value& modifiable_top(Kind kind, const char* expected) {
    Value& target = top();
    if (target.kind_ != kind) {
      fail("malformed pickle",
           std::string(opcode_name(op_)) + " on " + target.describe() + " (expected " + expected + ")");
    }
    check_modifiable(target);
    return target;
  }
  Value& modifiable_mapping() {
    Value& target = top();
    if (target.kind_ != Kind::kDict && !target.is_object_of(kOrderedDict)) {
      fail("malformed pickle",
           std::string(opcode_name(op_)) + " on " + target.describe() + " (expected a dict or an OrderedDict)");
    }
    check_modifiable(target);
    return target;
  }
  void check_modifiable(const Value& target) const {
    if (target.adopted_) {
      fail("unsupported pickle", std::string(opcode_name(op_)) + " modifies " + target.describe() +
                                     " after it was placed inside another value (recursive structures are not read)");
    }
  }
  // `child` becomes part of `parent`: parent's depth grows, and child may no longer change (so
  // no cycle can form, and depths stay exact).
  void adopt(Value& parent, const ValuePtr& child) {
    if (child.get() == &parent) {
      fail("unsupported pickle", "a value placed inside itself (recursive structures are not read)");
    }
    child->adopted_ = true;
    dict_index_.erase(child.get());  // an adopted dict never changes again
    int depth = child->depth_ + 1;
    if (depth > options_.max_depth) {
      fail("unsupported pickle", "values nested deeper than " + std::to_string(options_.max_depth) + " levels");
    }
    parent.depth_ = std::max(parent.depth_, depth);
  }
  ValuePtr make_sequence(Kind kind, std::vector<ValuePtr> items) {
    ValuePtr v = make(kind);
    for (const auto& item : items) adopt(*v, item);
    v->items_ = std::move(items);
    return v;
  }

  // --- dicts -------------------------------------------------------------------------------

  // Python's dict semantics: equal keys (by value; True == 1 == 1.0) replace the earlier value
  // in place. Keys are indexed by a canonical signature, so this stays linear.
  void set_item(Value& dict, ValuePtr key, ValuePtr value) {
    adopt(dict, key);
    adopt(dict, value);
    std::string signature;
    size_t budget = kSignatureBudget;
    key_signature(*key, signature, budget);
    auto& index = dict_index_[&dict];
    auto [it, inserted] = index.emplace(std::move(signature), dict.entries_.size());
    if (inserted) {
      dict.entries_.emplace_back(std::move(key), std::move(value));
    } else {
      dict.entries_[it->second].second = std::move(value);
    }
  }
  void key_signature(const Value& key, std::string& out, size_t& budget) const {
    auto append = [&](std::string_view part) {
      if (part.size() > budget) fail("unsupported pickle", "a dict key larger than 16 MiB");
      budget -= part.size();
      out += part;
    };
    switch (key.kind_) {
      case Kind::kNone:
        append("N");
        return;
      case Kind::kBool:
        append(key.flag_ ? "i1;" : "i0;");
        return;
      case Kind::kInt:
        append("i" + std::to_string(key.int_) + ";");
        return;
      case Kind::kFloat: {
        double v = key.float_;
        if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.2e18) {
          append("i" + std::to_string(static_cast<int64_t>(v)) + ";");
        } else if (std::isnan(v)) {
          append("nan@" + std::to_string(reinterpret_cast<uintptr_t>(&key)) + ";");  // NaN keys never compare equal
        } else {
          char hex[64];
          std::snprintf(hex, sizeof(hex), "f%a;", v);
          append(hex);
        }
        return;
      }
      case Kind::kString:
      case Kind::kBytes:
        append(key.kind_ == Kind::kString ? "s" : "b");
        append(std::to_string(key.text_.size()) + ":");
        append(key.text_);
        return;
      case Kind::kGlobal:
        append("g" + key.text_ + ";");
        return;
      case Kind::kTuple:
        append("t(");
        for (const auto& item : key.items_) key_signature(*item, out, budget);
        append(")");
        return;
      case Kind::kObject:
      case Kind::kPersistentId:  // hashed by identity, as Python does by default
        append("@" + std::to_string(reinterpret_cast<uintptr_t>(&key)) + ";");
        return;
      case Kind::kList:
      case Kind::kDict:
        fail("malformed pickle", std::string("unhashable dict key: ") + key.describe());
    }
  }

  // --- memo --------------------------------------------------------------------------------

  void memo_put(uint64_t index) {
    if (stack_.empty()) fail("malformed pickle", std::string(opcode_name(op_)) + " with an empty stack");
    memo_[index] = stack_.back();
  }
  void memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) {
      fail("malformed pickle", std::string(opcode_name(op_)) + " of memo index " + std::to_string(index) +
                                   ", which was never stored (" + std::to_string(memo_.size()) + " entries stored)");
    }
    push(it->second);
  }

  static constexpr size_t kSignatureBudget = size_t{16} << 20;

  std::string_view data_;
  const ReaderOptions& options_;
  std::unordered_set<std::string> allowed_;
  size_t pos_ = 0;
  size_t op_start_ = 0;
  uint8_t op_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  std::unordered_map<const Value*, std::unordered_map<std::string, size_t>> dict_index_;
};

ValuePtr read(std::string_view data, const ReaderOptions& options) {
  Unpickler unpickler(data, options);
  return unpickler.run();
}

ValuePtr read_file(const std::string& path, ReaderOptions options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open pickle file '" + path + "': " + std::strerror(errno));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError("cannot read pickle file '" + path + "'");
  options.source = path;
  return read(data, options);
}

// ---------------------------------------------------------------------------------------------
// Writer

Writer::Writer() : Writer(2) {}

Writer::Writer(int protocol) {
  if (protocol < 2 || protocol > 5) {
    throw ArgumentError("pickle::Writer: protocol must be in [2, 5], got " + std::to_string(protocol));
  }
  op(kProto);
  out_ += static_cast<char>(protocol);
}

void Writer::op(uint8_t code) {
  if (finished_) throw ArgumentError("pickle::Writer: nothing may be written after STOP");
  out_ += static_cast<char>(code);
}

void Writer::le(uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out_ += static_cast<char>((value >> (8 * i)) & 0xff);
}

void Writer::none() { op(kNone); }
void Writer::boolean(bool value) { op(value ? kNewTrue : kNewFalse); }

void Writer::integer(int64_t value) {
  if (value >= 0 && value <= 0xff) {
    op(kBinInt1);
    le(static_cast<uint64_t>(value), 1);
  } else if (value >= 0 && value <= 0xffff) {
    op(kBinInt2);
    le(static_cast<uint64_t>(value), 2);
  } else if (value >= std::numeric_limits<int32_t>::min() && value <= std::numeric_limits<int32_t>::max()) {
    op(kBinInt);
    le(static_cast<uint32_t>(static_cast<int32_t>(value)), 4);
  } else {
    // LONG1: the shortest little-endian two's complement that keeps the sign.
    uint64_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    int n = 8;
    while (n > 1) {
      uint8_t top = static_cast<uint8_t>(bits >> (8 * (n - 1)));
      uint8_t next_sign = static_cast<uint8_t>(bits >> (8 * (n - 2))) & 0x80;
      if ((top == 0x00 && next_sign == 0) || (top == 0xff && next_sign != 0)) {
        --n;
      } else {
        break;
      }
    }
    op(kLong1);
    out_ += static_cast<char>(n);
    le(bits, n);
  }
}

void Writer::real(double value) {
  op(kBinFloat);
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xff);
}

void Writer::string(std::string_view utf8) {
  if (utf8.size() > 0xffffffffu) throw ArgumentError("pickle::Writer: string longer than 4 GiB");
  op(kBinUnicode);
  le(utf8.size(), 4);
  out_.append(utf8.data(), utf8.size());
}

void Writer::bytes(std::string_view raw) {
  if (raw.size() < 256) {
    op(kShortBinBytes);
    le(raw.size(), 1);
  } else if (raw.size() <= 0xffffffffu) {
    op(kBinBytes);
    le(raw.size(), 4);
  } else {
    op(kBinBytes8);
    le(raw.size(), 8);
  }
  out_.append(raw.data(), raw.size());
}

void Writer::global(std::string_view module, std::string_view name) {
  auto check = [](std::string_view part) {
    if (part.empty() || part.find('\n') != std::string_view::npos) {
      throw ArgumentError("pickle::Writer: invalid global name part '" + std::string(part) + "'");
    }
  };
  check(module);
  check(name);
  std::string key = std::string(module) + "\n" + std::string(name);
  auto it = global_memo_.find(key);
  if (it != global_memo_.end()) {
    get(it->second);
    return;
  }
  op(kGlobal);
  out_ += key;
  out_ += '\n';
  uint32_t index = next_memo_;
  put(index);
  global_memo_.emplace(std::move(key), index);
}

void Writer::mark() { op(kMark); }
void Writer::empty_tuple() { op(kEmptyTuple); }

void Writer::tuple(size_t size) {
  static constexpr uint8_t kOps[] = {kEmptyTuple, kTuple1, kTuple2, kTuple3};
  if (size > 3)
    throw ArgumentError("pickle::Writer::tuple: size " + std::to_string(size) +
                        " > 3; use mark() and tuple_from_mark()");
  op(kOps[size]);
}

void Writer::tuple_from_mark() { op(kTuple); }
void Writer::empty_list() { op(kEmptyList); }
void Writer::append() { op(kAppend); }
void Writer::appends() { op(kAppends); }
void Writer::empty_dict() { op(kEmptyDict); }
void Writer::setitem() { op(kSetItem); }
void Writer::setitems() { op(kSetItems); }
void Writer::reduce() { op(kReduce); }
void Writer::build() { op(kBuild); }
void Writer::binpersid() { op(kBinPersId); }

void Writer::put(uint32_t index) {
  if (index <= 0xff) {
    op(kBinPut);
    le(index, 1);
  } else {
    op(kLongBinPut);
    le(index, 4);
  }
  next_memo_ = std::max(next_memo_, index + 1);
}

void Writer::get(uint32_t index) {
  if (index <= 0xff) {
    op(kBinGet);
    le(index, 1);
  } else {
    op(kLongBinGet);
    le(index, 4);
  }
}

void Writer::stop() {
  op(kStop);
  finished_ = true;
}

std::string Writer::take() {
  finished_ = true;
  std::string out = std::move(out_);
  out_.clear();
  return out;
}

}  // namespace facetrain::io::pickle
