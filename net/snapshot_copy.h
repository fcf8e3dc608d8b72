#ifndef KVSTORE_NET_SNAPSHOT_COPY_H_
#define KVSTORE_NET_SNAPSHOT_COPY_H_

// A consistent copy of a member's backend for a snapshot download (etcd's Maintenance.Snapshot):
// the file a copy wrote, removed when its last owner lets go, or bytes in memory (tests). The
// services read it a chunk at a time, so a download holds one chunk in memory, not the database.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvstore::net {

class SnapshotCopy {
 public:
  // Takes over the file at `path`: it is removed with the copy (and at once when it cannot be
  // opened).
  static absl::StatusOr<std::shared_ptr<SnapshotCopy>> AdoptFile(const std::string& path);
  static std::shared_ptr<SnapshotCopy> FromBytes(std::string bytes);
  ~SnapshotCopy();
  SnapshotCopy(const SnapshotCopy&) = delete;
  SnapshotCopy& operator=(const SnapshotCopy&) = delete;

  uint64_t size() const { return size_; }
  // The bytes [offset, offset + n) into *out (replacing its contents), fewer at the end.
  absl::Status Read(uint64_t offset, size_t n, std::string* out) const;

 private:
  SnapshotCopy() = default;

  int fd_ = -1;       // the file's, or -1 for bytes in memory
  std::string path_;  // the file's
  std::string bytes_;
  uint64_t size_ = 0;
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_SNAPSHOT_COPY_H_
