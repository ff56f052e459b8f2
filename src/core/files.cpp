#include "facetrain/core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

namespace facetrain {

void fsync_directory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: the file itself is already synced and renamed
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace facetrain
