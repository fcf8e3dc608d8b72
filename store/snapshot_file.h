#ifndef KVSTORE_STORE_SNAPSHOT_FILE_H_
#define KVSTORE_STORE_SNAPSHOT_FILE_H_

// A received Raft snapshot's data on disk, saved atomically before the WAL records its marker:
// written to a temporary file, fsynced, renamed into place, and the directory synced (etcd's
// snap.Snapshotter). Named by term and index (%016x-%016x.snap, as etcd names them).
//
//   file := magic "KVSNAP1\n" | body length (u64 LE) | CRC-32C of body (u32 LE) | body
//   body := index (u64 LE) | term (u64 LE) | configuration (length-prefixed) | data
//
// Loading verifies the length and the checksum before anything is used: a damaged file is an
// error naming the file and both checksums, never a partial state machine.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/raft/types.h"
#include "store/file_system.h"

namespace kvstore::store {

std::string SnapshotFileName(raft::Term term, raft::Index index);
// Writes and syncs the file, then renames it into place and syncs `dir`.
absl::Status SaveSnapshotFile(FileSystem* fs, const std::string& dir,
                              const raft::SnapshotMetadata& metadata, absl::string_view data);
absl::StatusOr<raft::Snapshot> LoadSnapshotFile(FileSystem* fs, const std::string& dir,
                                                raft::Term term, raft::Index index);

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_SNAPSHOT_FILE_H_
