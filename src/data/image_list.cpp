#include "facetrain/data/image_list.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "facetrain/config/options.h"
#include "facetrain/core/error.h"

namespace facetrain::data {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& message) {
  throw DataError(source + ": " + message);
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t tab = line.find('\t', start);
    std::string field = line.substr(start, tab == std::string::npos ? std::string::npos : tab - start);
    // Python's str.strip() on each field, as mxnet's im2rec does.
    size_t b = field.find_first_not_of(" \r\n\v\f");
    size_t e = field.find_last_not_of(" \r\n\v\f");
    out.push_back(b == std::string::npos ? std::string() : field.substr(b, e - b + 1));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  return out;
}

bool parse_double(const std::string& text, double& out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return errno == 0 && end == text.c_str() + text.size() && std::isfinite(out);
}

bool parse_int(const std::string& text, int64_t& out) {
  if (text.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size()) return false;
  out = v;
  return true;
}

// Every directory below `dir` (itself included), following symbolic links but never entering one
// directory twice (a link cycle would make os.walk recurse forever).
void collect_dirs(const fs::path& dir, std::vector<std::string>& out, std::set<fs::path>& seen) {
  std::error_code ec;
  fs::path canonical = fs::canonical(dir, ec);
  if (ec || !seen.insert(canonical).second) return;
  out.push_back(dir.string());
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::error_code ec2;
    if (entry.is_directory(ec2)) collect_dirs(entry.path(), out, seen);
  }
}

}  // namespace

bool has_image_extension(const std::string& file_name) {
  static const char* kExtensions[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  std::string lower = file_name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* ext : kExtensions) {
    size_t n = std::char_traits<char>::length(ext);
    if (lower.size() >= n && lower.compare(lower.size() - n, n, ext) == 0) return true;
  }
  return false;
}

ImageList scan_image_folder(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(root, "not a folder (an image folder holds one sub-folder per identity)");
  ImageList list;
  list.source = root;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::error_code ec2;
    if (entry.is_directory(ec2)) list.class_names.push_back(entry.path().filename().string());
  }
  if (ec) fail(root, "cannot list the folder: " + ec.message());
  std::sort(list.class_names.begin(), list.class_names.end());  // byte order = code-point order in UTF-8
  if (list.class_names.empty()) fail(root, "no class folders (an image folder holds one sub-folder per identity)");
  list.num_classes = static_cast<int64_t>(list.class_names.size());

  std::vector<std::string> empty;
  for (size_t label = 0; label < list.class_names.size(); ++label) {
    std::vector<std::string> dirs;
    std::set<fs::path> seen;
    collect_dirs(fs::path(root) / list.class_names[label], dirs, seen);
    std::sort(dirs.begin(), dirs.end());  // sorted(os.walk(...)) orders by the folder path
    size_t before = list.entries.size();
    for (const auto& dir : dirs) {
      std::vector<std::string> files;
      for (const auto& entry : fs::directory_iterator(dir, ec)) {
        std::error_code ec2;
        if (!entry.is_directory(ec2) && has_image_extension(entry.path().filename().string()))
          files.push_back(entry.path().filename().string());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        ImageEntry entry;
        entry.path = (fs::path(dir) / f).string();
        entry.label = static_cast<int64_t>(label);
        list.entries.push_back(std::move(entry));
      }
    }
    if (list.entries.size() == before) empty.push_back(list.class_names[label]);
  }
  if (!empty.empty()) {
    std::string names;
    for (size_t i = 0; i < empty.size() && i < 10; ++i) names += (i ? ", " : "") + empty[i];
    if (empty.size() > 10) names += ", ...";
    fail(root, std::to_string(empty.size()) + " class folder(s) hold no image (" + names +
                   "); extensions taken: jpg jpeg png ppm bmp pgm tif tiff webp");
  }
  return list;
}

ImageList read_image_list(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, "cannot open the list file");
  ImageList list;
  list.source = path;
  const fs::path base = fs::path(path).parent_path();
  std::string line;
  int64_t line_number = 0;
  int64_t max_label = -1;
  while (std::getline(in, line)) {
    ++line_number;
    const std::string where = "line " + std::to_string(line_number) + ": ";
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    auto fields = split_tabs(line);
    ImageEntry entry;
    double number = 0;
    std::string file;
    double label = 0;
    if (fields.size() >= 3 && parse_double(fields[1], number)) {
      // mxnet: index \t label [\t label ...] \t path
      int64_t index = 0;
      if (!parse_int(fields[0], index)) fail(path, where + "expected an integer index first, got '" + fields[0] + "'");
      label = number;
      file = fields.back();
    } else if (fields.size() == 3 || fields.size() == 17) {
      // insightface: aligned \t path \t label [\t bbox(4) \t landmarks(10)]
      int64_t aligned = 0;
      if (!parse_int(fields[0], aligned) || (aligned != 0 && aligned != 1))
        fail(path, where + "expected 0 or 1 (aligned) first, got '" + fields[0] + "'");
      entry.aligned = aligned == 1;
      file = fields[1];
      if (!parse_double(fields[2], label)) fail(path, where + "expected a label in column 3, got '" + fields[2] + "'");
      if (fields.size() == 17) {
        FaceAnnotation face;
        for (int k = 0; k < 14; ++k) {
          double v = 0;
          if (!parse_double(fields[3 + k], v))
            fail(path,
                 where + "expected a number in column " + std::to_string(4 + k) + ", got '" + fields[3 + k] + "'");
          (k < 4 ? face.bbox[k] : face.landmarks[k - 4]) = static_cast<float>(v);
        }
        entry.face = face;
      }
    } else {
      fail(path, where +
                     "expected 'index<TAB>label<TAB>path' (mxnet .lst) or 'aligned<TAB>path<TAB>label[<TAB>4 box "
                     "values<TAB>10 landmark values]' (insightface train.lst), got " +
                     std::to_string(fields.size()) + " tab-separated field(s)");
    }
    if (file.empty()) fail(path, where + "empty image path");
    if (label < 0 || label != std::floor(label) || label > 2147483647.0)
      fail(path, where + "the label must be a whole number >= 0, got '" + config::fmt(label) + "'");
    entry.label = static_cast<int64_t>(label);
    max_label = std::max(max_label, entry.label);
    fs::path p(file);
    entry.path = p.is_absolute() || base.empty() ? p.string() : (base / p).string();
    list.entries.push_back(std::move(entry));
  }
  if (list.entries.empty()) fail(path, "the list holds no images");
  list.num_classes = max_label + 1;
  return list;
}

std::string read_image_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DataError("image file '" + path + "': cannot open it: " + std::strerror(errno));
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw DataError("image file '" + path + "': not a regular file");
  }
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  for (;;) {
    if (done == out.size()) out.resize(done + 65536);  // the file grew, or st_size was 0 (procfs)
    const ssize_t got = ::read(fd, &out[done], out.size() - done);
    if (got < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      throw DataError("image file '" + path + "': reading it failed: " + std::strerror(error));
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

}  // namespace facetrain::data
