#pragma once
// Small file-system helpers shared by the writers that replace files atomically (checkpoints,
// RecordIO, verification .bin): write a temporary, fsync it, rename it over the target, then
// fsync the folder so the rename itself survives a crash.

#include <string>

namespace facetrain {

/// Syncs the folder holding `path` (its directory entry), best effort: an error is ignored, the
/// file itself having been synced and renamed already.
void fsync_directory(const std::string& path);

/// Replaces `path` by a file holding `bytes`, atomically: writes `<path>.tmp.<pid>`, syncs it,
/// renames it over `path` and syncs the folder. On failure the temporary is removed, an existing
/// `path` is left as it was, and facetrain::DataError "cannot write 'PATH': <what failed>: <reason>"
/// is thrown.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Writes `bytes` as a new file `path` (an existing one is unlinked first: a fresh inode, since
/// truncating in place makes ext4 flush on close), without syncing: for bulk outputs such as
/// unpacked images. A failed write leaves no file. Throws facetrain::DataError "cannot create
/// 'PATH': <reason>" or "writing 'PATH' failed: <reason>".
void write_new_file(const std::string& path, const std::string& bytes);

}  // namespace facetrain
