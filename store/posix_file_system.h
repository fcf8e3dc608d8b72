#ifndef KVSTORE_STORE_POSIX_FILE_SYSTEM_H_
#define KVSTORE_STORE_POSIX_FILE_SYSTEM_H_

// FileSystem over the real POSIX calls, for the node: open/pread/pwrite/fsync/fdatasync/ftruncate
// on files (O_CLOEXEC, so a child process never inherits the WAL or the data directory lock),
// rename/unlink/mkdir/opendir on names, open(dir)+fsync for SyncDir and flock for Lock.
//
// Calls interrupted by a signal (EINTR) are retried and short writes are continued, so an error
// status always means the kernel refused the operation. Its message names the operation, the
// path and strerror with the errno name ("pwrite /data/wal/0001.wal: No space left on device
// (ENOSPC)"); the code follows file_system.h: ENOSPC kResourceExhausted, ENOENT kNotFound, EEXIST
// kAlreadyExists, EIO and anything else kInternal.
//
// A File tracks its end offset under a mutex: Append writes there with pwrite, so a Sync or
// DataSync running on another thread (the node's fsync thread) never races with where the next
// append lands. After a failed write the bytes past the end offset are unspecified and the next
// Append starts at the end offset again.
//
// Truncate extends a file with fallocate where the file system supports it, so a preallocated
// WAL segment really owns its blocks (a later append cannot fail with ENOSPC for lack of them),
// and falls back to ftruncate (a sparse extension) where it does not.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/file_system.h"

namespace kvstore::store {

class PosixFileSystem : public FileSystem {
 public:
  absl::StatusOr<std::unique_ptr<File>> Open(const std::string& path, OpenMode mode) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) const override;
  bool Exists(const std::string& path) const override;
  // flock(LOCK_EX | LOCK_NB): flock locks belong to an open file description, so a second Lock
  // of the same path in this process is refused too, and the kernel drops the lock when the
  // process dies.
  absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) override;
};

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_POSIX_FILE_SYSTEM_H_
