#include "net/snapshot_copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvstore::net {
namespace {

absl::Status FileError(const char* what, const std::string& path, int error) {
  return absl::InternalError(
      absl::StrCat("snapshot copy: ", what, " ", path, ": ", std::strerror(error)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<SnapshotCopy>> SnapshotCopy::AdoptFile(const std::string& path) {
  std::shared_ptr<SnapshotCopy> copy(new SnapshotCopy());
  copy->path_ = path;
  copy->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (copy->fd_ < 0) return FileError("open", path, errno);
  struct stat st;
  if (::fstat(copy->fd_, &st) != 0) return FileError("stat", path, errno);
  copy->size_ = static_cast<uint64_t>(st.st_size);
  return copy;
}

std::shared_ptr<SnapshotCopy> SnapshotCopy::FromBytes(std::string bytes) {
  std::shared_ptr<SnapshotCopy> copy(new SnapshotCopy());
  copy->size_ = bytes.size();
  copy->bytes_ = std::move(bytes);
  return copy;
}

SnapshotCopy::~SnapshotCopy() {
  if (fd_ >= 0) ::close(fd_);
  if (!path_.empty()) ::unlink(path_.c_str());
}

absl::Status SnapshotCopy::Read(uint64_t offset, size_t n, std::string* out) const {
  out->clear();
  if (offset >= size_) return absl::OkStatus();
  n = static_cast<size_t>(std::min<uint64_t>(n, size_ - offset));
  if (fd_ < 0) {
    out->assign(bytes_, offset, n);
    return absl::OkStatus();
  }
  out->resize(n);
  size_t done = 0;
  while (done < n) {
    const ssize_t got =
        ::pread(fd_, out->data() + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return FileError("read", path_, errno);
    if (got == 0) {
      return absl::DataLossError(absl::StrCat("snapshot copy: ", path_, " ended at ", offset + done,
                                              " of ", size_, " bytes"));
    }
    done += static_cast<size_t>(got);
  }
  return absl::OkStatus();
}

}  // namespace kvstore::net
