// The allow-listed pickle reader and the opcode writer (io/pickle.h): every opcode read, the
// layouts of insightface's .bin files and numpy arrays, every refusal with its message, and
// robustness against truncated and corrupted input.
//
// Byte strings are spelled opcode by opcode with `ops{...}` (never C string literals with \x
// escapes, which swallow following hex digits and stop at NUL). The Python-written fixtures
// come from tests/python/make_io_fixtures.py.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "facetrain/core/error.h"
#include "facetrain/io/pickle.h"

namespace facetrain::io::pickle {
namespace {

// Bytes from a list of values 0..255 and strings, concatenated.
struct ops {
  std::string bytes;
  ops(std::initializer_list<int> values) {
    for (int v : values) bytes += static_cast<char>(v);
  }
  ops& operator+=(const ops& other) {
    bytes += other.bytes;
    return *this;
  }
  operator std::string() const { return bytes; }
};
std::string operator+(const ops& a, const std::string& b) { return a.bytes + b; }
std::string operator+(const std::string& a, const ops& b) { return a + b.bytes; }
std::string operator+(const ops& a, const ops& b) { return a.bytes + b.bytes; }

std::string le(uint64_t value, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}
// BINUNICODE 'text'
std::string unicode(const std::string& text) { return "X" + le(text.size(), 4) + text; }

const ops kProto2{0x80, 2};
const ops kStop{'.'};

ValuePtr parse(const std::string& data, std::vector<std::string> globals = {}) {
  ReaderOptions options;
  options.source = "test.pkl";
  options.allowed_globals = std::move(globals);
  return read(data, options);
}

// The DataError message `parse` throws, or "no error".
std::string error_of(const std::string& data, std::vector<std::string> globals = {}) {
  try {
    parse(data, std::move(globals));
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

std::string fixture_path(const std::string& name) {
  return std::string(FACETRAIN_SOURCE_DIR) + "/tests/data/io/" + name;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(PickleRead, Scalars) {
  std::string data = kProto2 + ops{'('} + ops{'N', 0x88, 0x89} + ops{'K', 7} + ops{'M', 0x34, 0x12} + "J" +
                     le(static_cast<uint32_t>(-5), 4) + ops{0x8a, 0} + ops{0x8a, 1, 0xff} +
                     ops{0x8a, 3, 0x00, 0x00, 0x80} + ops{0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80} +
                     ops{0x8a, 2, 0xff, 0x00} + ops{'G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0} + unicode("h\xc3\xa9llo") +
                     ops{0x8c, 2} + "ab" + ops{0x8d} + le(3, 8) + "xyz" + ops{'t'} + kStop;
  ValuePtr root = parse(data);
  const auto& t = root->as_tuple(15);
  EXPECT_TRUE(t[0]->is(Kind::kNone));
  EXPECT_TRUE(t[1]->as_bool());
  EXPECT_FALSE(t[2]->as_bool());
  EXPECT_EQ(t[3]->as_int(), 7);
  EXPECT_EQ(t[4]->as_int(), 0x1234);
  EXPECT_EQ(t[5]->as_int(), -5);
  EXPECT_EQ(t[6]->as_int(), 0);  // LONG1 of zero bytes
  EXPECT_EQ(t[7]->as_int(), -1);
  EXPECT_EQ(t[8]->as_int(), -8388608);  // 0x800000 with its sign bit set
  EXPECT_EQ(t[9]->as_int(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(t[10]->as_int(), 255);  // 0xff 0x00: positive
  EXPECT_EQ(t[11]->as_double(), 1.5);
  EXPECT_EQ(t[12]->as_string(), "h\xc3\xa9llo");
  EXPECT_EQ(t[13]->as_string(), "ab");
  EXPECT_EQ(t[14]->as_string(), "xyz");
  EXPECT_EQ(t[3]->as_double(), 7.0);  // ints read as doubles too
}

TEST(PickleRead, EveryBytesSpelling) {
  std::string nul("a\0b", 3);
  std::string data = kProto2 + ops{']', '('} + "T" + le(3, 4) + nul + ops{'U', 3} + nul + "B" + le(3, 4) + nul +
                     ops{'C', 3} + nul + ops{0x8e} + le(3, 8) + nul + ops{0x96} + le(3, 8) + nul + ops{'e'} + kStop;
  ValuePtr root = parse(data);
  const auto& items = root->as_list();
  ASSERT_EQ(items.size(), 6u);
  for (const auto& item : items) {
    EXPECT_EQ(item->kind(), Kind::kBytes);
    EXPECT_EQ(item->as_bytes(), nul);
    EXPECT_EQ(bytes_of(*item), nul);
  }
}

// lfw.bin as Python 2 wrote it: SHORT_BINSTRING/BINSTRING images, BINPUT/LONG_BINPUT memo,
// a repeated image as BINGET/LONG_BINGET, MARK ... APPENDS and a lone APPEND, TUPLE2.
TEST(PickleRead, Python2VerificationBinLayout) {
  std::string jpeg1 = "\xff\xd8one";
  std::string jpeg2(300, 'x');
  std::string data = kProto2 + ops{']', 'q', 0, '('} + ops{'U', 5} + jpeg1 + ops{'q', 1} + "T" + le(300, 4) + jpeg2 +
                     "r" + le(300, 4) + ops{'h', 1} + "j" + le(300, 4) + ops{'e'} + ops{']', 'q', 2, 0x88, 'a', '('} +
                     ops{0x89, 0x88, 'e', 0x86, 'q', 3} + kStop;
  ValuePtr root = parse(data);
  const auto& pair = root->as_tuple(2);
  const auto& bins = pair[0]->as_list();
  ASSERT_EQ(bins.size(), 4u);
  EXPECT_EQ(bytes_of(*bins[0]), jpeg1);
  EXPECT_EQ(bytes_of(*bins[1]), jpeg2);
  EXPECT_EQ(bins[2], bins[0]) << "BINGET yields the memoized node itself";
  EXPECT_EQ(bins[3], bins[1]);
  const auto& issame = pair[1]->as_list();
  ASSERT_EQ(issame.size(), 3u);
  EXPECT_TRUE(issame[0]->as_bool());
  EXPECT_FALSE(issame[1]->as_bool());
  EXPECT_TRUE(issame[2]->as_bool());
}

// Python 3 at protocol 2 spells bytes as _codecs.encode(<latin-1 text>, 'latin1'), and b'' as
// bytes().
TEST(PickleRead, CodecsEncodeSpellingOfBytes) {
  std::string data = kProto2 + ops{']', '('} + "c_codecs\nencode\n" + ops{'q', 0} +
                     unicode(std::string("\xc3\xbf\x00z", 4)) + unicode("latin1") + ops{0x86, 'R'} +
                     "c__builtin__\nbytes\n" + ops{')', 'R', 'e'} + kStop;
  std::vector<std::string> allowed = {"_codecs.encode", "__builtin__.bytes"};
  ValuePtr root = parse(data, allowed);
  const auto& items = root->as_list();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_TRUE(items[0]->is_object_of("_codecs.encode"));
  EXPECT_EQ(bytes_of(*items[0]), std::string("\xff\0z", 3));
  EXPECT_EQ(bytes_of(*items[1]), "");
  EXPECT_TRUE(Contains(error_of(data), "refusing to load global '_codecs.encode' at byte 4 of test.pkl"));

  // Text that is not a latin-1 spelling of bytes.
  std::string euro =
      kProto2 + "c_codecs\nencode\n" + unicode("\xe2\x82\xac") + unicode("latin1") + ops{0x86, 'R'} + kStop;
  EXPECT_THROW(bytes_of(*parse(euro, allowed)), DataError);
  std::string utf8 = kProto2 + "c_codecs\nencode\n" + unicode("a") + unicode("utf8") + ops{0x86, 'R'} + kStop;
  EXPECT_THROW(bytes_of(*parse(utf8, allowed)), DataError);
  EXPECT_THROW(bytes_of(*Value::integer(1)), DataError);
}

// Protocols 4/5: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, NEWOBJ, BINBYTES8, BYTEARRAY8.
TEST(PickleRead, Protocol4And5Opcodes) {
  std::string body = ops{0x8c, 5} + "numpy" + ops{0x94} + ops{0x8c, 5} + "dtype" + ops{0x94, 0x93, 0x94} +
                     ops{0x8c, 2} + "u1" + ops{0x85, 0x81, 0x94} + ops{0x8e} + le(2, 8) + "hi" + ops{0x96} + le(1, 8) +
                     "!" + ops{0x87, '.'};
  std::string data = ops{0x80, 5} + ops{0x95} + le(body.size(), 8) + body;
  ValuePtr root = parse(data, {"numpy.dtype"});
  const auto& t = root->as_tuple(3);
  EXPECT_TRUE(t[0]->is_object_of("numpy.dtype"));
  EXPECT_EQ(t[0]->args().item(0).as_string(), "u1");
  EXPECT_EQ(t[1]->as_bytes(), "hi");
  EXPECT_EQ(t[2]->as_bytes(), "!");
  // MEMOIZE numbered 'numpy' 0, 'dtype' 1, the global 2: BINGET 2 would give the global back.
  std::string again = ops{0x80, 4} + ops{0x8c, 1} + "m" + ops{0x94} + ops{0x8c, 1} + "n" + ops{0x94, 0x93, 0x94} +
                      ops{'h', 2, 0x86} + kStop;
  ValuePtr again_root = parse(again, {"m.n"});
  const auto& pair = again_root->as_tuple(2);
  EXPECT_EQ(pair[0], pair[1]);
  EXPECT_EQ(pair[0]->global_name(), "m.n");
}

// The files make_io_fixtures.py writes with Python's pickle, protocols 2 to 5.
TEST(PickleRead, PythonWrittenVerificationBins) {
  std::vector<std::string> expected = {"\xff\xd8jpeg", "", std::string(), std::string(3, '\0')};
  for (int i = 0; i < 256; ++i) expected[2] += static_cast<char>(i);
  ReaderOptions options;
  options.allowed_globals = {"_codecs.encode", "__builtin__.bytes"};
  for (int protocol = 2; protocol <= 5; ++protocol) {
    SCOPED_TRACE("protocol " + std::to_string(protocol));
    ValuePtr root = read_file(fixture_path("bin_protocol" + std::to_string(protocol) + ".pkl"), options);
    const auto& pair = root->as_tuple(2);
    const auto& bins = pair[0]->as_list();
    ASSERT_EQ(bins.size(), expected.size());
    for (size_t i = 0; i < bins.size(); ++i) EXPECT_EQ(bytes_of(*bins[i]), expected[i]) << "image " << i;
    const auto& issame = pair[1]->as_list();
    ASSERT_EQ(issame.size(), 2u);
    EXPECT_TRUE(issame[0]->as_bool());
    EXPECT_FALSE(issame[1]->as_bool());
  }
}

// numpy.arange(6, dtype=uint8).reshape(2, 3): _reconstruct + BUILD at protocol 2, _frombuffer at 5.
TEST(PickleRead, PythonWrittenNumpyArrays) {
  const std::string raw("\0\1\2\3\4\5", 6);
  ReaderOptions options;
  options.allowed_globals = {"numpy.core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype", "_codecs.encode",
                             "numpy.core.numeric._frombuffer"};
  ValuePtr p2 = read_file(fixture_path("numpy_uint8_p2.pkl"), options);
  ASSERT_TRUE(p2->is_object_of("numpy.core.multiarray._reconstruct"));
  EXPECT_EQ(p2->args().item(0).global_name(), "numpy.ndarray");
  const auto& state = p2->state()->as_tuple(5);  // (version, shape, dtype, fortran, data)
  EXPECT_EQ(state[0]->as_int(), 1);
  EXPECT_EQ(state[1]->as_tuple(2)[0]->as_int(), 2);
  EXPECT_EQ(state[1]->as_tuple(2)[1]->as_int(), 3);
  EXPECT_TRUE(state[2]->is_object_of("numpy.dtype"));
  EXPECT_EQ(state[2]->args().item(0).as_string(), "u1");
  EXPECT_EQ(state[2]->state()->item(1).as_string(), "|");
  EXPECT_FALSE(state[3]->as_bool());
  EXPECT_EQ(bytes_of(*state[4]), raw);

  ValuePtr p5 = read_file(fixture_path("numpy_uint8_p5.pkl"), options);
  ASSERT_TRUE(p5->is_object_of("numpy.core.numeric._frombuffer"));
  const auto& args = p5->args().as_tuple(4);  // (buffer, dtype, shape, order)
  EXPECT_EQ(args[0]->as_bytes(), raw);
  EXPECT_TRUE(args[1]->is_object_of("numpy.dtype"));
  EXPECT_EQ(args[2]->item(1).as_int(), 3);
  EXPECT_EQ(args[3]->as_string(), "C");
}

// How torch.save pickles a state dict: OrderedDict() by REDUCE, SETITEMS into it, then BUILD
// with {'_metadata': OrderedDict(...)}.
TEST(PickleRead, OrderedDictObjectTakesItemsAndState) {
  std::string data = kProto2 + "ccollections\nOrderedDict\n" + ops{'q', 0, ')', 'R', 'q', 1, '('} + unicode("b") +
                     ops{'K', 1} + unicode("a") + ops{'K', 2} + ops{'u', '}'} + unicode("_metadata") +
                     ops{'h', 0, ')', 'R', '('} + unicode("") + ops{'}'} + unicode("version") + ops{'K', 1, 's', 'u'} +
                     ops{'s', 'b'} + kStop;
  ValuePtr root = parse(data, {"collections.OrderedDict"});
  ASSERT_TRUE(root->is_mapping());
  const auto& entries = root->entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].first->as_string(), "b");
  EXPECT_EQ(entries[1].first->as_string(), "a");
  EXPECT_EQ(root->find("a")->as_int(), 2);
  EXPECT_EQ(root->find("c"), nullptr);
  const Value* metadata = root->state()->find("_metadata");
  ASSERT_NE(metadata, nullptr);
  EXPECT_TRUE(metadata->is_mapping());
  EXPECT_EQ(metadata->find("")->find("version")->as_int(), 1);
  EXPECT_EQ(root->describe(), "object collections.OrderedDict of 2 entries");
  // An object of any other class takes no items.
  std::string other = kProto2 + "cm\nX\n" + ops{')', 'R', '('} + unicode("k") + ops{'K', 1, 'u'} + kStop;
  EXPECT_TRUE(Contains(error_of(other, {"m.X"}), "SETITEMS on object m.X (expected a dict or an OrderedDict)"));
}

// Python's dict semantics: insertion order; an equal key (1 == True == 1.0) keeps the first
// key's position and takes the later value.
TEST(PickleRead, DictOrderAndDuplicateKeys) {
  std::string data = kProto2 + ops{'}', '('} + unicode("z") + ops{'K', 1} + ops{'K', 1} + unicode("one") +
                     unicode("a") + ops{'K', 2} + unicode("z") + ops{'K', 3} + ops{0x88} + unicode("true") +
                     ops{'G', 0x3f, 0xf0, 0, 0, 0, 0, 0, 0} + unicode("float one") + ops{'u'} + kStop;
  ValuePtr root = parse(data);
  const auto& entries = root->entries();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].first->as_string(), "z");
  EXPECT_EQ(entries[0].second->as_int(), 3);
  EXPECT_EQ(entries[1].first->as_int(), 1);
  EXPECT_EQ(entries[1].second->as_string(), "float one");
  EXPECT_EQ(entries[2].first->as_string(), "a");
}

TEST(PickleRead, PersistentIdWrapsTheId) {
  std::string data = kProto2 + ops{'('} + unicode("storage") + unicode("0") + ops{'t', 'Q'} + kStop;
  ValuePtr root = parse(data);
  ASSERT_TRUE(root->is(Kind::kPersistentId));
  EXPECT_EQ(root->persistent_id().item(1).as_string(), "0");
}

struct BadPickle {
  const char* name;
  std::string data;
  std::vector<std::string> expected;  // substrings of the message
};

TEST(PickleRead, RefusesWithOpcodeOffsetAndSource) {
  const std::string os_system = kProto2 + "cos\nsystem\n" + ops{'q', 0} + unicode("true") + ops{0x85, 'R'} + kStop;
  const std::string stack_global = ops{0x80, 4, 0x8c, 8} + "builtins" + ops{0x8c, 4} + "eval" + ops{0x93} + kStop;
  const std::vector<BadPickle> cases = {
      {"GLOBAL not on the allow-list",
       os_system,
       {"refusing to load global 'os.system' at byte 2 of test.pkl: not on the allow-list"}},
      {"STACK_GLOBAL not on the allow-list",
       stack_global,
       {"refusing to load global 'builtins.eval' at byte 18 of test.pkl"}},
      {"protocol 0 INT", "I42\n.", {"unsupported pickle opcode INT ('I', 0x49) at byte 0 of test.pkl"}},
      {"INST", kProto2 + "ios\nsystem\n.", {"opcode INST ('i', 0x69) at byte 2"}},
      {"OBJ", kProto2 + ops{'(', 'o'}, {"opcode OBJ ('o', 0x6f) at byte 3"}},
      {"PERSID text form", kProto2 + "P0\n.", {"opcode PERSID ('P', 0x50) at byte 2"}},
      {"EXT1", kProto2 + ops{0x82, 1, '.'}, {"opcode EXT1 (0x82) at byte 2"}},
      {"NEXT_BUFFER", ops{0x80, 5, 0x97, '.'}, {"opcode NEXT_BUFFER (0x97)"}},
      {"EMPTY_SET", ops{0x80, 4, 0x8f, '.'}, {"opcode EMPTY_SET (0x8f)"}},
      {"POP", kProto2 + ops{'N', '0', 'N', '.'}, {"opcode POP ('0', 0x30) at byte 3"}},
      {"unknown byte", kProto2 + ops{0xff}, {"unknown opcode 0xff at byte 2 of test.pkl"}},
      {"protocol 6", ops{0x80, 6, 'N', '.'}, {"unsupported pickle at byte 0", "protocol 6"}},
      {"BINGET never stored",
       kProto2 + ops{'N', 'q', 0, 'h', 5, '.'},
       {"at byte 5", "BINGET of memo index 5, which was never stored"}},
      {"LONG_BINGET never stored", kProto2 + "j" + le(70000, 4) + ".", {"LONG_BINGET of memo index 70000"}},
      {"BINPUT with an empty stack", kProto2 + ops{'q', 0, '.'}, {"BINPUT with an empty stack"}},
      {"stack underflow",
       kProto2 + ops{'N', 0x86, '.'},
       {"TUPLE2 needs 2 values but the stack holds 1 (stack underflow)"}},
      {"pop across a MARK",
       kProto2 + ops{']', '(', 'a', '.'},
       {"APPEND needs 1 value but the stack holds 0 above the last MARK"}},
      {"TUPLE without MARK", kProto2 + ops{'N', 't', '.'}, {"at byte 3", "TUPLE without a MARK"}},
      {"APPENDS without MARK", kProto2 + ops{']', 'N', 'e', '.'}, {"APPENDS without a MARK"}},
      {"SETITEMS without MARK", kProto2 + ops{'}', 'N', 'N', 'u', '.'}, {"SETITEMS without a MARK"}},
      {"SETITEMS odd", kProto2 + ops{'}', '(', 'N', 'u', '.'}, {"SETITEMS with an odd number (1)"}},
      {"APPEND to a dict", kProto2 + ops{'}', 'N', 'a', '.'}, {"APPEND on dict of 0 entries (expected a list)"}},
      {"SETITEM on a list",
       kProto2 + ops{']', 'N', 'N', 's', '.'},
       {"SETITEM on list of 0 (expected a dict or an OrderedDict)"}},
      {"BUILD on an int", kProto2 + ops{'K', 1, 'N', 'b', '.'}, {"BUILD on int 1 (expected an object)"}},
      {"BUILD twice", kProto2 + "cm\nX\n" + ops{')', 'R', 'N', 'b', 'N', 'b', '.'}, {"which already has a state"}},
      {"REDUCE of a non-global", kProto2 + ops{'N', ')', 'R', '.'}, {"REDUCE of None (expected a global)"}},
      {"REDUCE with non-tuple args",
       kProto2 + "cm\nX\n" + ops{'N', 'R', '.'},
       {"REDUCE with arguments None (expected a tuple)"}},
      {"list inside itself", kProto2 + ops{']', 'q', 0, 'h', 0, 'a', '.'}, {"a value placed inside itself"}},
      {"modified after adoption",
       kProto2 + ops{']', 'q', 0, ']', 'h', 0, 'a', 'a', '.'},
       {"APPEND modifies list of 0 after it was placed inside another value"}},
      {"unhashable key", kProto2 + ops{'}', ']', 'N', 's', '.'}, {"unhashable dict key: list of 0"}},
      {"two values at STOP", kProto2 + ops{'N', 'N', '.'}, {"STOP with 2 values on the stack"}},
      {"nothing at STOP", kProto2 + ops{'.'}, {"STOP with 0 values"}},
      {"open MARK at STOP", kProto2 + ops{'N', '(', '.'}, {"STOP with 1 values on the stack and 1 open MARKs"}},
      {"no STOP", kProto2 + ops{'N'}, {"truncated pickle at byte 3 of test.pkl: the data ends without a STOP opcode"}},
      {"empty input", "", {"truncated pickle at byte 0", "without a STOP"}},
      {"BINUNICODE longer than the data",
       kProto2 + "X" + le(0xffffffffu, 4) + "ab",
       {"truncated pickle at byte 2 of test.pkl: BINUNICODE needs 4294967295 bytes, only 2 bytes left"}},
      {"BINBYTES8 of 2^63 bytes",
       kProto2 + ops{0x8e} + le(uint64_t{1} << 63, 8) + "ab",
       {"BINBYTES8 needs 9223372036854775808 bytes"}},
      {"BYTEARRAY8 of 2^64-1 bytes",
       ops{0x80, 5, 0x96} + le(~uint64_t{0}, 8),
       {"BYTEARRAY8 needs 18446744073709551615 bytes"}},
      {"BINSTRING negative length", kProto2 + "T" + le(0xfffffffe, 4) + "ab.", {"BINSTRING with negative length -2"}},
      {"SHORT_BINUNICODE cut", kProto2 + ops{0x8c, 9} + "abc", {"SHORT_BINUNICODE needs 9 bytes, only 3 bytes left"}},
      {"BININT cut", kProto2 + ops{'J', 1, 2}, {"BININT needs 4 bytes, only 2 bytes left"}},
      {"LONG1 of 9 bytes",
       kProto2 + ops{0x8a, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, '.'},
       {"LONG1 integer of 9 bytes (wider than 64 bits)"}},
      {"GLOBAL without newline", kProto2 + "cos\nsystem", {"GLOBAL needs a newline-terminated GLOBAL name"}},
      {"STACK_GLOBAL of non-strings",
       ops{0x80, 4, 'N', 'N', 0x93, '.'},
       {"STACK_GLOBAL needs two str, found None and None"}},
      {"FRAME longer than the data",
       ops{0x80, 4, 0x95} + le(100, 8) + "N.",
       {"FRAME needs 100 bytes, only 2 bytes left"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string message = error_of(c.data, {"m.X"});
    for (const auto& part : c.expected) EXPECT_TRUE(Contains(message, part));
  }
}

// Nesting is bounded (the tree is destroyed recursively; an unbounded depth would overflow the
// stack), whichever opcodes build it.
TEST(PickleRead, NestingIsLimited) {
  std::string tuples = kProto2 + ops{')'} + std::string(100000, static_cast<char>(0x85)) + ".";
  EXPECT_TRUE(Contains(error_of(tuples), "values nested deeper than 200 levels"));
  std::string marks = kProto2 + std::string(100000, '(') + "N" + std::string(100000, 't') + ".";
  EXPECT_TRUE(Contains(error_of(marks), "values nested deeper than 200 levels"));
  std::string lists = kProto2 + std::string(5000, ']') + std::string(4999, 'a') + ".";
  EXPECT_TRUE(Contains(error_of(lists), "values nested deeper than 200 levels"));

  std::string five = kProto2 + ops{')'} + std::string(5, static_cast<char>(0x85)) + ".";
  ReaderOptions options;
  options.max_depth = 5;
  EXPECT_EQ(read(five, options)->depth(), 5);
  options.max_depth = 4;
  EXPECT_THROW(read(five, options), DataError);
}

// Many distinct keys: the dict index keeps this linear (a quadratic scan would take minutes).
TEST(PickleRead, LargeDictStaysFast) {
  std::string data = kProto2 + ops{'}', '('};
  const int n = 200000;
  for (int i = 0; i < n; ++i) data += "J" + le(static_cast<uint32_t>(i), 4) + "N";
  data += "u.";
  EXPECT_EQ(parse(data)->entries().size(), static_cast<size_t>(n));
}

// Every proper prefix of a valid pickle is refused with a DataError (none ends in STOP).
TEST(PickleRead, EveryTruncationIsRefused) {
  for (const char* name : {"bin_protocol2.pkl", "bin_protocol5.pkl", "numpy_uint8_p2.pkl"}) {
    std::string data = slurp(fixture_path(name));
    ReaderOptions options;
    options.allowed_globals = {"_codecs.encode", "__builtin__.bytes", "numpy.core.multiarray._reconstruct",
                               "numpy.ndarray", "numpy.dtype"};
    ASSERT_NO_THROW(read(data, options)) << name;
    for (size_t cut = 0; cut < data.size(); ++cut) {
      EXPECT_THROW(read(std::string_view(data).substr(0, cut), options), DataError) << name << " cut at " << cut;
    }
  }
}

// Random corruption: every outcome is a value or a DataError; never a crash, a hang or another
// exception type (ASan/UBSan builds make this a memory-safety check too).
TEST(PickleRead, CorruptedInputOnlyEverThrowsDataError) {
  std::mt19937 rng(1234);
  ReaderOptions options;
  options.allowed_globals = {"_codecs.encode", "__builtin__.bytes", "numpy.core.multiarray._reconstruct",
                             "numpy.ndarray",  "numpy.dtype",       "collections.OrderedDict"};
  int parsed = 0, refused = 0;
  for (const char* name : {"bin_protocol2.pkl", "bin_protocol4.pkl", "numpy_uint8_p2.pkl"}) {
    const std::string original = slurp(fixture_path(name));
    for (int trial = 0; trial < 3000; ++trial) {
      std::string data = original;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) data[rng() % data.size()] = static_cast<char>(rng() & 0xff);
      try {
        ValuePtr v = read(data, options);
        ASSERT_NE(v, nullptr);
        (void)v->describe();
        ++parsed;
      } catch (const DataError&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(refused, 0);
}

TEST(PickleRead, MissingFileNamesIt) {
  try {
    read_file("/nonexistent/lfw.bin", {});
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_TRUE(Contains(e.what(), "cannot open pickle file '/nonexistent/lfw.bin'"));
  }
}

TEST(PickleValue, AccessorsReportKindMismatches) {
  try {
    Value::integer(3)->as_string();
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "expected str, found int 3");
  }
  ValuePtr parsed = parse(kProto2 + ops{'N', 'N', 'N', 0x87, '.'});
  try {
    parsed->as_tuple(2);
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "expected tuple of 2, found tuple of 3 (created at byte 5)");
  }
  EXPECT_THROW(parsed->item(3), DataError);
  EXPECT_THROW(parsed->entries(), DataError);
  EXPECT_THROW(parsed->find("x"), DataError);
  EXPECT_THROW(parsed->as_list(), DataError);
  EXPECT_THROW(parsed->callable(), DataError);
  EXPECT_THROW(parsed->persistent_id(), DataError);
  EXPECT_THROW(Value::string("x")->as_int(), DataError);
  EXPECT_THROW(Value::real(1.5)->as_int(), DataError);
  EXPECT_THROW(Value::none()->as_bool(), DataError);
  EXPECT_THROW(Value::bytes("x")->as_string(), DataError);
  EXPECT_THROW(Value::string("x")->global_name(), DataError);
  EXPECT_EQ(Value::string(std::string(50, 'a'))->describe(), "str '" + std::string(40, 'a') + "...'");
  EXPECT_EQ(Value::real(0.1)->describe(), "float 0.1");
  EXPECT_EQ(Value::tuple({Value::list({Value::none()})})->depth(), 2);
}

// --- Writer -----------------------------------------------------------------------------------

TEST(PickleWriter, IntegersUseTheShortestOpcode) {
  auto encode = [](int64_t v) {
    Writer w;
    w.integer(v);
    return w.data().substr(2);  // after PROTO 2
  };
  EXPECT_EQ(encode(0), std::string(ops{'K', 0}));
  EXPECT_EQ(encode(255), std::string(ops{'K', 0xff}));
  EXPECT_EQ(encode(256), std::string(ops{'M', 0, 1}));
  EXPECT_EQ(encode(65535), std::string(ops{'M', 0xff, 0xff}));
  EXPECT_EQ(encode(65536), std::string(ops{'J', 0, 0, 1, 0}));
  EXPECT_EQ(encode(-1), std::string(ops{'J', 0xff, 0xff, 0xff, 0xff}));
  EXPECT_EQ(encode(int64_t{1} << 31), std::string(ops{0x8a, 5, 0, 0, 0, 0x80, 0}));
  EXPECT_EQ(encode(-(int64_t{1} << 31) - 1), std::string(ops{0x8a, 5, 0xff, 0xff, 0xff, 0x7f, 0xff}));
  EXPECT_EQ(encode(int64_t{1} << 40), std::string(ops{0x8a, 6, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(encode(std::numeric_limits<int64_t>::min()), std::string(ops{0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80}));
}

// What the writer emits, the reader reads back (the Python side: StateDictInterop tests and
// PickleWriter.PythonReadsIt).
TEST(PickleWriter, RoundTripsThroughTheReader) {
  const std::vector<int64_t> ints = {0,
                                     1,
                                     255,
                                     256,
                                     65535,
                                     65536,
                                     -1,
                                     -129,
                                     std::numeric_limits<int32_t>::min(),
                                     std::numeric_limits<int32_t>::max(),
                                     int64_t{1} << 31,
                                     -(int64_t{1} << 31) - 1,
                                     int64_t{1} << 40,
                                     -(int64_t{1} << 47),
                                     std::numeric_limits<int64_t>::min(),
                                     std::numeric_limits<int64_t>::max()};
  Writer w;
  w.mark();
  w.mark();
  for (int64_t v : ints) w.integer(v);
  w.tuple_from_mark();
  w.real(-0.0);
  w.real(std::numeric_limits<double>::infinity());
  w.real(0.1);
  w.string(std::string("a\0\xc3\xa9", 4));
  w.none();
  w.boolean(true);
  w.boolean(false);
  w.empty_list();
  w.integer(1);
  w.append();
  w.mark();
  w.integer(2);
  w.integer(3);
  w.appends();
  w.empty_dict();
  w.string("k");
  w.integer(4);
  w.setitem();
  w.mark();
  w.string("l");
  w.integer(5);
  w.setitems();
  w.global("collections", "OrderedDict");
  w.empty_tuple();
  w.reduce();
  w.global("collections", "OrderedDict");  // from the memo: the callable
  w.global("collections", "OrderedDict");  // and its argument
  w.tuple(1);
  w.reduce();
  w.empty_dict();
  w.build();
  w.integer(7);
  w.put(300);  // LONG_BINPUT
  w.get(300);  // LONG_BINGET
  w.tuple(2);
  w.string("id");
  w.tuple(1);
  w.binpersid();
  for (size_t n = 0; n <= 3; ++n) {
    for (size_t i = 0; i < n; ++i) w.integer(static_cast<int64_t>(i));
    w.tuple(n);
  }
  w.tuple_from_mark();
  w.stop();
  EXPECT_THROW(w.none(), ArgumentError);
  const std::string data = w.take();
  size_t globals = 0;
  for (size_t at = data.find("collections\nOrderedDict"); at != std::string::npos;
       at = data.find("collections", at + 1)) {
    ++globals;
  }
  EXPECT_EQ(globals, 1u) << "the second global comes from the memo";

  ValuePtr root = parse(data, {"collections.OrderedDict"});
  const auto& t = root->as_tuple(18);
  const auto& read_ints = t[0]->as_tuple(ints.size());
  for (size_t i = 0; i < ints.size(); ++i) EXPECT_EQ(read_ints[i]->as_int(), ints[i]) << i;
  EXPECT_TRUE(std::signbit(t[1]->as_double()));
  EXPECT_TRUE(std::isinf(t[2]->as_double()));
  EXPECT_EQ(t[3]->as_double(), 0.1);
  EXPECT_EQ(t[4]->as_string(), std::string("a\0\xc3\xa9", 4));
  EXPECT_TRUE(t[5]->is(Kind::kNone));
  EXPECT_TRUE(t[6]->as_bool());
  EXPECT_FALSE(t[7]->as_bool());
  ASSERT_EQ(t[8]->as_list().size(), 3u);
  EXPECT_EQ(t[8]->item(2).as_int(), 3);
  EXPECT_EQ(t[9]->find("k")->as_int(), 4);
  EXPECT_EQ(t[9]->find("l")->as_int(), 5);
  EXPECT_TRUE(t[10]->is_object_of("collections.OrderedDict"));
  EXPECT_TRUE(t[11]->is_object_of("collections.OrderedDict"));
  EXPECT_EQ(t[11]->args().item(0).global_name(), "collections.OrderedDict");
  EXPECT_TRUE(t[11]->state()->is(Kind::kDict));
  EXPECT_EQ(t[12]->item(0).as_int(), 7);
  EXPECT_EQ(t[12]->as_tuple(2)[0], t[12]->as_tuple(2)[1]);
  EXPECT_EQ(t[13]->persistent_id().item(0).as_string(), "id");
  for (size_t n = 0; n <= 3; ++n) EXPECT_EQ(t[14 + n]->as_tuple().size(), n);
}

TEST(PickleWriter, RefusesMisuse) {
  Writer w;
  EXPECT_THROW(w.tuple(4), ArgumentError);
  EXPECT_THROW(w.global("os\n", "system"), ArgumentError);
  EXPECT_THROW(w.global("os", ""), ArgumentError);
  w.none();
  w.stop();
  EXPECT_THROW(w.stop(), ArgumentError);
  EXPECT_THROW(w.integer(1), ArgumentError);
}

// Python's own pickle reads the writer's output as the same values (no torch needed).
TEST(PickleWriter, PythonReadsIt) {
  Writer w;
  w.mark();
  for (int64_t v : {int64_t{0}, int64_t{255}, int64_t{256}, int64_t{65536}, int64_t{-1}, int64_t{1} << 40,
                    std::numeric_limits<int64_t>::min()}) {
    w.integer(v);
  }
  w.real(0.1);
  w.string("h\xc3\xa9");
  w.boolean(true);
  w.none();
  w.global("collections", "OrderedDict");
  w.empty_tuple();
  w.reduce();
  w.mark();
  w.string("a");
  w.integer(1);
  w.setitems();
  w.tuple_from_mark();
  w.stop();
  std::string path = ::testing::TempDir() + "facetrain_writer_" + std::to_string(::getpid()) + ".pkl";
  {
    std::ofstream out(path, std::ios::binary);
    out << w.data();
  }
  std::string expected =
      "(0, 255, 256, 65536, -1, 1 << 40, -2**63, 0.1, 'h\\u00e9', True, None, collections.OrderedDict(a=1))";
  std::string command = std::string(FACETRAIN_TEST_PYTHON) +
                        " -c \"import collections, pickle, sys; v = pickle.load(open(sys.argv[1], 'rb')); "
                        "e = " +
                        expected + "; sys.exit(0 if v == e and type(v[-1]) is collections.OrderedDict else " +
                        "print(repr(v)) or 1)\" " + path;
  int status = std::system(command.c_str());
  std::remove(path.c_str());
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command;
}

}  // namespace
}  // namespace facetrain::io::pickle
