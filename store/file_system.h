#ifndef KVSTORE_STORE_FILE_SYSTEM_H_
#define KVSTORE_STORE_FILE_SYSTEM_H_

// What the store does to files, and nothing more: the write-ahead log, snapshot files and the
// data directory's lock go through this interface, so the same code runs on real files (the
// node, PosixFileSystem) and on a simulated disk with faults (the simulator, SimFileSystem).
//
// Durability model (POSIX's, which the simulated disk enforces strictly):
//   - bytes written to a file are volatile until File::Sync or File::DataSync returns OK;
//   - creating, renaming or removing a name is volatile until SyncDir of its directory;
//   - a failed sync leaves the file in an unknown state: the caller must not retry it as if the
//     earlier writes were durable (PostgreSQL's "fsyncgate"). The WAL stops its member.
// Errors are absl::Status values whose message names the path and the operation: an I/O error
// is kInternal ("EIO"), a full disk kResourceExhausted ("ENOSPC"), a missing file kNotFound, a
// lock held by another process kFailedPrecondition. kDataLoss is kept for the store's own
// verdict that bytes it read cannot be trusted (a checksum mismatch): corruption, not a failing
// device.
//
// Threads: a File may be synced from one thread while another appends to it (the node's fsync
// thread); everything else is used from one thread at a time.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvstore::store {

class File {
 public:
  virtual ~File() = default;

  // Writes `data` at the end of the file.
  virtual absl::Status Append(absl::string_view data) = 0;
  // Writes `data` at `offset`, extending the file if needed.
  virtual absl::Status WriteAt(uint64_t offset, absl::string_view data) = 0;
  // WriteAt of bytes the caller gives up: a file system that keeps a copy of what is written
  // (the simulator's unsynced writes) takes them instead of copying.
  virtual absl::Status WriteAtOwned(uint64_t offset, std::string data) {
    return WriteAt(offset, data);
  }
  // Reads up to `size` bytes at `offset` into `out` (resized to what was read: short at the end
  // of the file, empty past it).
  virtual absl::Status ReadAt(uint64_t offset, size_t size, std::string* out) const = 0;
  // fsync: the file's bytes and its metadata (size) are durable.
  virtual absl::Status Sync() = 0;
  // fdatasync: the file's bytes are durable; metadata only as far as reading them needs it.
  virtual absl::Status DataSync() = 0;
  // Sets the size: cuts the file, or extends it with zeros (preallocation).
  virtual absl::Status Truncate(uint64_t size) = 0;
  virtual absl::StatusOr<uint64_t> Size() const = 0;
  virtual const std::string& path() const = 0;
};

// Held while a data directory is in use; released when destroyed (or the process dies).
class FileLock {
 public:
  virtual ~FileLock() = default;
};

enum class OpenMode : uint8_t {
  kRead,            // existing file, read only
  kReadWrite,       // existing file
  kCreate,          // a new file; kAlreadyExists if the name is taken
  kCreateTruncate,  // a new or emptied file
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  virtual absl::StatusOr<std::unique_ptr<File>> Open(const std::string& path, OpenMode mode) = 0;
  // Atomically replaces `to` with `from` (rename(2)); durable after SyncDir.
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // Makes the directory's entries (creations, renames, removals) durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  virtual absl::Status Remove(const std::string& path) = 0;
  // Creates the directory and its parents (mkdir -p); OK if it exists.
  virtual absl::Status CreateDir(const std::string& dir) = 0;
  // The names (not paths) of the entries of `dir`, sorted bytewise.
  virtual absl::StatusOr<std::vector<std::string>> List(const std::string& dir) const = 0;
  virtual bool Exists(const std::string& path) const = 0;
  // An exclusive lock on `path` (created if missing), not waiting: kFailedPrecondition when
  // another holder has it.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) = 0;
};

// `dir` + "/" + `name`.
std::string JoinPath(absl::string_view dir, absl::string_view name);

// CreateDir, then SyncDir of `dir` and of every ancestor, so the directory itself survives a
// power loss (a new directory's name is only as durable as its parent's entries).
absl::Status CreateDirDurably(FileSystem* fs, const std::string& dir);

// Creates `dir` (and its missing ancestors) so that it survives a power loss, fsyncing only the
// directories whose entries this call changes, plus one for a directory an earlier, crashed call
// may have left behind. A fresh data directory costs (new directories + 2) fsyncs, an existing
// one 1, where CreateDirDurably fsyncs every ancestor up to / on every call (the node calls it
// for the same directory several times while it starts).
//
// Why that is enough. Missing directories are made top-down, and each one's entry is fsynced in
// its parent before its child is made, so this holds whenever a directory made here exists, even
// after a crash at any point: the entries of all its ancestors are durable, and only its own entry
// in its parent may not be (a crash between its mkdir and that fsync). Hence:
//   - the deepest existing ancestor-or-self E of `dir` gets its parent fsynced first: if an
//     earlier call made E and crashed before E's entry was durable, it is now (if E was never ours,
//     the fsync is merely one too many);
//   - each directory made here: mkdir, then fsync of its parent (its entry);
//   - `dir` itself, when made here: fsync (its own "." and "..", for file systems without a
//     journal, where the parent's fsync does not write the child's inode).
// Files then created in `dir` need their own fsync and one of `dir` (WriteFileDurably does both).
// `dir` may be relative ("." is the parent of a name without a slash).
absl::Status MakeDirDurable(FileSystem* fs, const std::string& dir);

// Replaces `dir`/`name` with `data` atomically and durably: a temporary file (`name` + ".tmp"),
// fsynced, renamed into place, then the directory fsynced (a rename is volatile until then).
absl::Status WriteFileDurably(FileSystem* fs, const std::string& dir, const std::string& name,
                              absl::string_view data);

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_FILE_SYSTEM_H_
