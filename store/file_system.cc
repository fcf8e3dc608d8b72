#include "store/file_system.h"

#include "absl/strings/str_cat.h"

namespace kvstore::store {

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

absl::Status CreateDirDurably(FileSystem* fs, const std::string& dir) {
  if (absl::Status s = fs->CreateDir(dir); !s.ok()) return s;
  std::string path = dir;
  while (true) {
    if (absl::Status s = fs->SyncDir(path.empty() ? "/" : path); !s.ok()) return s;
    const size_t slash = path.find_last_of('/');
    if (path.empty() || slash == std::string::npos) return absl::OkStatus();
    path.resize(slash);
  }
}

}  // namespace kvstore::store
