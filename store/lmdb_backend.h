#ifndef KVSTORE_STORE_LMDB_BACKEND_H_
#define KVSTORE_STORE_LMDB_BACKEND_H_

// The MVCC backend on disk: etcd's bbolt backend, in LMDB. One LMDB environment per data
// directory (`dir`/data.mdb, plus LMDB's lock.mdb), one named database per mvcc::Bucket.
//
// Why batching. A durable LMDB commit costs an fsync of the data and of a meta page, a few
// milliseconds on a disk, while the server ends a backend batch (Commit) after every apply of a
// few log entries. Like etcd's batch transaction, many batches share one LMDB write transaction,
// committed when batch_limit_commits batches are pending or batch_interval_ms have passed since
// the first pending one, and on Flush. Those interval commits sync the data pages only
// (MDB_NOMETASYNC: the new meta page is written after them, so the file is always consistent,
// but a crash may undo the last commit); Flush syncs the meta page too, so what it returns from
// is durable. The loop waits for one sync per interval commit instead of two (measured on the
// benchmark machine: 2 to 7 ms for the meta page's O_DSYNC write). A batch not yet flushed is
// volatile; it is safe to lose because the Raft log still holds its entries: the MVCC store
// writes its consistent index (the last applied log index) in every batch, so after a crash the
// backend holds a prefix of the batches, its consistent index says where that prefix ends, and
// the server replays the log from there, each entry exactly once. Hence the driver's rule
// (backend.h): Flush before dropping log entries that a batch covers.
//
// Batch boundaries. A crash must keep whole batches, so an LMDB commit never includes writes
// made after the last Commit() ("outstanding" writes). Interval and limit commits happen inside
// Commit(), where nothing is outstanding. Flush() and Defragment() may be called with
// outstanding writes (rare: the server calls Commit after every apply batch); they set them
// aside: every write keeps an undo record (the key and its previous value) until Commit, so
// those calls read the outstanding keys' current values, undo the writes in reverse, commit,
// and write the values again into the next transaction. Undo records cost no extra search (the
// put that inserts a key reports whether it existed, and with which value) and no allocation in
// steady state (they live in buffers that keep their capacity across batches); a new key, the
// common case as revision keys only grow, copies just its key. (LMDB's nested transactions would
// also separate a batch, but allocate megabytes per child and still could not commit a parent while
// a child is open.)
//
// Reads see every write so far: inside the open write transaction when there is one, else in a
// read-only transaction that is reset between reads and renewed (MDB_NOTLS) rather than
// allocated. The visitor of Range must not write.
//
// Keys are 1 to mdb_env_get_maxkeysize (511) bytes. Every key the server stores is short
// (revisions: 17-18 bytes, metadata names, lease and member ids), so a longer or empty key in
// a Put is a caller bug: it fails the backend (below) with kInvalidArgument naming the size and
// the limit. Gets, Deletes and Range bounds of any length work (such keys are never present).
//
// Errors. Put and Delete return nothing, so a failed LMDB call on the write path fails the
// backend: the open transaction is aborted (it holds an unknown part of the batch), later
// writes are ignored, reads see the last durable state, and every later Commit, Flush or
// Defragment returns the first error. A failed commit is kDataLoss: the batches since the last
// durable commit are lost. The owner stops and reopens, and the log replay from the consistent
// index restores them. A full map (MDB_MAP_FULL, past kMapSizeBytes) is kResourceExhausted.
//
// Resident memory. LMDB reads pages through a read-only shared map of data.mdb; a page once
// touched (a B-tree search, the copy-on-write of a page a put modifies) stays mapped, so the
// process's resident set grows to the whole file (100,000 puts of 256 B: ~35 MB) although the
// working set is the tree's upper levels and the pages being written. The map is opened without
// readahead (MDB_NORDAHEAD), and every kReleaseMapEveryCommits commits (about a second
// at the default batch interval) the map's pages are dropped from the process's page tables
// (madvise MADV_DONTNEED): they stay in the kernel's page cache, and the next access maps a
// page again without reading the disk. No pointer into the map outlives a read (Get and Range
// copy), so this never invalidates anything.
//
// Single-threaded, like the core.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/mvcc/backend.h"

struct MDB_env;
struct MDB_txn;
struct MDB_cursor;

namespace kvstore::store {

struct LmdbOptions {
  // A pending batch becomes durable at the first Commit this long after it (etcd's
  // --backend-batch-interval). The interval is checked only in Commit: an idle driver calls
  // Flush on its own timer.
  int64_t batch_interval_ms = 100;
  // At most this many committed batches wait for one durable commit (etcd's
  // --backend-batch-limit).
  int64_t batch_limit_commits = 10'000;
  // Milliseconds of a monotonic clock; empty: std::chrono::steady_clock. Tests inject time.
  std::function<int64_t()> now_ms;
};

class LmdbBackend : public mvcc::Backend {
 public:
  // The LMDB map: the largest quota etcd suggests, so data.mdb never needs a resize. Address
  // space only; the file grows with the data.
  static constexpr uint64_t kMapSizeBytes = uint64_t{8} << 30;
  // Commits between two releases of the map's resident pages (see the file comment).
  static constexpr int64_t kReleaseMapEveryCommits = 10;

  // Opens or creates the environment in `dir` (created if missing; its parent must exist). One
  // LmdbBackend per directory: LMDB forbids opening an environment twice in a process, and the
  // node's data-directory lock keeps other processes out.
  static absl::StatusOr<std::unique_ptr<LmdbBackend>> Open(const std::string& dir,
                                                           const LmdbOptions& options);
  // Makes the committed batches durable (as Flush, errors ignored: the log replay recovers
  // them), drops outstanding writes, and closes the environment.
  ~LmdbBackend() override;
  LmdbBackend(const LmdbBackend&) = delete;
  LmdbBackend& operator=(const LmdbBackend&) = delete;

  std::optional<std::string> Get(mvcc::Bucket bucket, absl::string_view key) const override;
  void Range(mvcc::Bucket bucket, absl::string_view start, absl::string_view end,
             Visitor visit) const override;
  void Put(mvcc::Bucket bucket, absl::string_view key, absl::string_view value) override;
  void Delete(mvcc::Bucket bucket, absl::string_view key) override;
  absl::Status Commit() override;
  absl::Status Flush() override;
  // The size of data.mdb as of the last durable commit: what etcd's quota measures. LMDB reuses
  // freed pages but never shrinks the file, except through Defragment.
  uint64_t SizeBytes() const override;
  // Flushes, writes a compacted copy (MDB_CP_COMPACT) beside data.mdb, fsyncs it, closes the
  // environment, renames the copy over data.mdb, fsyncs the directory and reopens. Outstanding
  // writes are carried over.
  absl::Status Defragment() override;
  // Writes a consistent, compacted copy of LMDB's last commit to `path`, an LMDB file of its
  // own, fsynced (etcd's snapshot save). The one method safe on another thread while the owner
  // goes on writing: the copy reads through a read transaction of its own, so a copy of a large
  // database does not hold the member's loop. Flush first, on the owner's thread, so that the
  // copy holds every committed batch. Defragment and the destructor wait for copies in progress.
  absl::Status CopyCommittedTo(const std::string& path) const;

  // What kill -9 does: the open write transaction (committed batches not yet durable, and
  // outstanding writes) is aborted, so the destructor has nothing to flush.
  void AbandonForTest();

 private:
  // The final state of one outstanding key while Flush or Defragment sets it aside.
  struct SetAside {
    mvcc::Bucket bucket;
    std::string key;
    std::optional<std::string> value;  // nullopt: deleted
  };
  // One outstanding write: the bytes of the key, then of the previous value (if it had one),
  // at `offset` in undo_bytes_.
  struct Undo {
    mvcc::Bucket bucket;
    bool had_previous;
    size_t offset;
    size_t key_size;
    size_t previous_size;
  };
  class ReadScope;

  LmdbBackend(std::string dir, LmdbOptions options);

  absl::Status OpenEnvironment();
  void CloseEnvironment();
  // The cursor of `bucket` in the write transaction, which it begins if needed; nullptr once the
  // backend has failed.
  MDB_cursor* WriteCursor(mvcc::Bucket bucket);
  void RecordUndo(mvcc::Bucket bucket, absl::string_view key,
                  std::optional<absl::string_view> previous);
  void ClearUndo();
  // Drops the write transaction: its committed batches and outstanding writes.
  void AbortWriteTransaction();
  // Takes the outstanding writes out of the write transaction (see the header comment).
  absl::StatusOr<std::vector<SetAside>> SetAsideOutstanding();
  void Reapply(const std::vector<SetAside>& writes);
  // Commits the write transaction. Its data pages are always synced before its meta page is
  // written (MDB_NOMETASYNC keeps the file consistent); `durable` also syncs the meta page, else
  // the next commit's data sync or SyncMeta does.
  absl::Status CommitTransaction(bool durable);
  // Syncs the meta page of the last commit.
  absl::Status SyncMeta();
  absl::Status UpdateSize();
  // Finds where LMDB mapped data.mdb (map_address_; null if not found: nothing is released).
  void FindMap();
  // Drops the map's pages from the process's page tables (see the file comment).
  void ReleaseMap();
  // Records the first error, aborts the write transaction, and returns the error.
  absl::Status Fail(absl::Status status);
  absl::Status LmdbError(absl::string_view operation, int rc) const;

  const std::string dir_;
  const LmdbOptions options_;
  absl::Status status_;  // the first error; sticky

  MDB_env* env_ = nullptr;
  // Held shared by CopyCommittedTo (any thread), exclusively while env_ closes or is replaced.
  mutable std::shared_mutex env_mutex_;
  unsigned int dbis_[mvcc::kBucketCount] = {};
  size_t max_key_size_ = 0;
  uint64_t size_bytes_ = 0;
  int64_t commits_since_release_ = 0;
  void* map_address_ = nullptr;  // LMDB's map of data.mdb
  size_t map_bytes_ = 0;
  bool meta_unsynced_ = false;  // the last commit's meta page may not be on disk yet

  MDB_txn* write_txn_ = nullptr;  // begun at the first write after a durable commit
  // Of write_txn_, closed with it; Range opens them too.
  mutable MDB_cursor* write_cursors_[mvcc::kBucketCount] = {};
  int64_t pending_batches_ = 0;  // committed batches in write_txn_
  int64_t first_pending_ms_ = 0;
  std::vector<Undo> undo_;  // outstanding writes, oldest first
  std::string undo_bytes_;  // their keys and previous values, back to back

  // The read-only transaction, reset while no read runs, and a cursor per bucket on it.
  mutable MDB_txn* read_txn_ = nullptr;
  mutable MDB_cursor* read_cursors_[mvcc::kBucketCount] = {};
  mutable int read_depth_ = 0;  // reads in progress (a visitor may read again, never write)
  mutable bool cursor_busy_[mvcc::kBucketCount] = {};  // a Range runs on the bucket's cursor
};

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_LMDB_BACKEND_H_
