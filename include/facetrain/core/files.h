#pragma once
// Small file-system helpers shared by the writers that replace files atomically (checkpoints,
// RecordIO, verification .bin): write a temporary, fsync it, rename it over the target, then
// fsync the folder so the rename itself survives a crash.

#include <string>

namespace facetrain {

/// Syncs the folder holding `path` (its directory entry), best effort: an error is ignored, the
/// file itself having been synced and renamed already.
void fsync_directory(const std::string& path);

}  // namespace facetrain
