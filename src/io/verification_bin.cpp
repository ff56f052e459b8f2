#include "facetrain/io/verification_bin.h"
#include "facetrain/core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "facetrain/core/error.h"
#include "facetrain/io/pickle.h"

namespace facetrain::io {
namespace {

[[noreturn]] void write_error(const std::string& path, const std::string& detail) {
  throw DataError("cannot write verification bin '" + path + "': " + detail);
}

bool is_numpy_object(const pickle::Value& v) {
  return v.is(pickle::Kind::kObject) && v.callable().is(pickle::Kind::kGlobal) &&
         v.callable().global_name().rfind("numpy.", 0) == 0;
}

// The numpy globals insightface's numpy-array packers name. They are allowed through the reader
// (which never calls anything) only so that such files get a clear "not supported" message.
const char* const kNumpyGlobals[] = {
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
    "numpy.ndarray",
    "numpy.dtype",
};

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

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) write_error(path, "cannot create '" + tmp + "': " + std::strerror(errno));
  auto fail = [&](const std::string& detail) {
    const int saved = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    write_error(path, detail + ": " + std::strerror(saved));
  };
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("writing '" + tmp + "' failed");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail("flushing '" + tmp + "' failed");
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("closing '" + tmp + "' failed");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming '" + tmp + "' to it failed");
  fsync_directory(path);
}

VerificationBin read_verification_bin(const std::string& path) {
  pickle::ReaderOptions options;
  options.allowed_globals = {"_codecs.encode", "__builtin__.bytes", "builtins.bytes"};
  for (const char* g : kNumpyGlobals) options.allowed_globals.emplace_back(g);
  const pickle::ValuePtr root = pickle::read_file(path, options);  // its errors cite the path

  VerificationBin out;
  try {
    if (!(root->is(pickle::Kind::kTuple) || root->is(pickle::Kind::kList)) || root->items().size() != 2) {
      throw DataError("expected a pickle of (images, issame), found " + root->describe());
    }
    const pickle::Value& images = *root->items()[0];
    const pickle::Value& same = *root->items()[1];
    if (!(images.is(pickle::Kind::kList) || images.is(pickle::Kind::kTuple))) {
      throw DataError("expected a list of images, found " + images.describe());
    }
    if (!(same.is(pickle::Kind::kList) || same.is(pickle::Kind::kTuple))) {
      throw DataError("expected a list of issame flags, found " + same.describe());
    }
    out.images.reserve(images.items().size());
    for (size_t i = 0; i < images.items().size(); ++i) {
      const pickle::Value& image = *images.items()[i];
      if (is_numpy_object(image)) {
        throw DataError("image " + std::to_string(i) + " is a numpy array (" + image.callable().global_name() +
                        "); verification bins of numpy arrays are not supported yet");
      }
      try {
        out.images.push_back(pickle::bytes_of(image));
      } catch (const DataError& e) {
        throw DataError("image " + std::to_string(i) + ": " + e.what());
      }
    }
    if (is_numpy_object(same)) throw DataError("issame is a numpy array, which is not supported yet");
    out.issame.reserve(same.items().size());
    for (size_t i = 0; i < same.items().size(); ++i) {
      const pickle::Value& flag = *same.items()[i];
      if (flag.is(pickle::Kind::kBool)) {
        out.issame.push_back(flag.as_bool());
      } else if (flag.is(pickle::Kind::kInt) && (flag.as_int() == 0 || flag.as_int() == 1)) {
        out.issame.push_back(flag.as_int() == 1);
      } else {
        throw DataError("issame " + std::to_string(i) + ": expected a bool, found " + flag.describe());
      }
    }
    if (out.issame.empty()) throw DataError("holds no pairs");
    if (out.images.size() != 2 * out.issame.size()) {
      throw DataError(std::to_string(out.images.size()) + " images for " + std::to_string(out.issame.size()) +
                      " pairs (expected 2 images per pair)");
    }
  } catch (const DataError& e) {
    throw DataError(path + ": " + e.what());
  }
  return out;
}

}  // namespace facetrain::io
