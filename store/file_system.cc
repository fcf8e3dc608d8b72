#include "store/file_system.h"

#include "absl/strings/str_cat.h"

namespace kvstore::store {

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name);
}

absl::Status WriteFileDurably(FileSystem* fs, const std::string& dir, const std::string& name,
                              absl::string_view data) {
  const std::string temp = JoinPath(dir, absl::StrCat(name, ".tmp"));
  auto out = fs->Open(temp, OpenMode::kCreateTruncate);
  if (!out.ok()) return out.status();
  if (absl::Status s = (*out)->Append(data); !s.ok()) return s;
  if (absl::Status s = (*out)->Sync(); !s.ok()) return s;
  out->reset();
  if (absl::Status s = fs->Rename(temp, JoinPath(dir, name)); !s.ok()) return s;
  return fs->SyncDir(dir);
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
