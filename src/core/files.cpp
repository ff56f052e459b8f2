#include "facetrain/core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "facetrain/core/error.h"

namespace facetrain {

void fsync_directory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: the file itself is already synced and renamed
  (void)::fsync(fd);
  ::close(fd);
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw DataError("cannot write '" + path + "': cannot create '" + tmp + "': " + std::strerror(errno));
  auto fail = [&](const std::string& what) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw DataError("cannot write '" + path + "': " + what + ": " + std::strerror(error));
  };
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t wrote = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (wrote < 0) {
      if (errno == EINTR) continue;
      fail("writing '" + tmp + "' failed");
    }
    done += static_cast<size_t>(wrote);
  }
  if (::fsync(fd) != 0) fail("flushing '" + tmp + "' failed");
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("closing '" + tmp + "' failed");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming '" + tmp + "' to it failed");
  fsync_directory(path);
}

void write_new_file(const std::string& path, const std::string& bytes) {
  ::unlink(path.c_str());  // a fresh inode: truncating would make ext4 flush on close
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw DataError("cannot create '" + path + "': " + std::strerror(errno));
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      ::unlink(path.c_str());
      throw DataError("writing '" + path + "' failed: " + std::strerror(error));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(path.c_str());
    throw DataError("writing '" + path + "' failed: " + std::strerror(error));
  }
}

}  // namespace facetrain
