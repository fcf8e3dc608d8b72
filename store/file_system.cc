#include "store/file_system.h"

#include <string>
#include <vector>

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

namespace {

// The directory holding `path`: "/" for a name in the root, "." for a name without a slash.
std::string ParentDir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::Status MakeDirDurable(FileSystem* fs, const std::string& dir) {
  std::string path = dir;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  // The directories to make, deepest first, up to the deepest one that exists.
  std::vector<std::string> missing;
  while (path != "/" && path != "." && !fs->Exists(path)) {
    missing.push_back(path);
    path = ParentDir(path);
  }
  // `path` exists: its entry is made durable (see the header for why one level is enough). The
  // root and the working directory are nobody's to make.
  if (path != "/" && path != ".") {
    if (absl::Status s = fs->SyncDir(ParentDir(path)); !s.ok()) return s;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (absl::Status s = fs->CreateDir(*it); !s.ok()) return s;
    if (absl::Status s = fs->SyncDir(ParentDir(*it)); !s.ok()) return s;
  }
  if (!missing.empty()) return fs->SyncDir(missing.front());
  return absl::OkStatus();
}

}  // namespace kvstore::store
