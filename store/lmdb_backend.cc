#include "store/lmdb_backend.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/raft/check.h"

namespace kvstore::store {
namespace {

using mvcc::Bucket;
using mvcc::kBucketCount;

// LMDB database names, in mvcc::Bucket order.
constexpr const char* kBucketNames[kBucketCount] = {"key", "meta", "lease", "dedup"};
static_assert(kBucketCount == 4, "every bucket needs a database name");

// LMDB's file in the directory (the environment also keeps lock.mdb there).
constexpr absl::string_view kDataFile = "data.mdb";
// Defragment writes the compacted copy here, then renames it over kDataFile. A copy left by a
// crash before the rename is garbage, which Open removes.
constexpr absl::string_view kCompactFile = "data.mdb.compact";
// Owner only, as etcd creates its data directory and files.
constexpr mode_t kDirMode = 0700;
constexpr mode_t kFileMode = 0600;

int Index(Bucket bucket) { return static_cast<int>(bucket); }

MDB_val Val(absl::string_view bytes) {
  return MDB_val{bytes.size(), const_cast<char*>(bytes.data())};
}

absl::string_view View(const MDB_val& val) {
  return absl::string_view(static_cast<const char*>(val.mv_data), val.mv_size);
}

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The error of a failed system call on `path`, with errno's code (ENOSPC: kResourceExhausted).
absl::Status PosixError(absl::string_view operation, const std::string& path) {
  return absl::ErrnoToStatus(errno, absl::StrCat(operation, " ", path));
}

absl::Status SyncDirectory(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PosixError("open", dir);
  absl::Status status;
  if (fsync(fd) != 0) status = PosixError("fsync", dir);
  close(fd);
  return status;
}

// A read that fails is storage corruption or a broken environment; Get and Range cannot return
// an error, and answering "absent" would make the store diverge, so the process stops.
[[noreturn]] void ReadFailed(const std::string& dir, absl::string_view operation, int rc) {
  absl::FPrintF(stderr, "LMDB backend in %s: %s failed: %s\n", dir, operation, mdb_strerror(rc));
  std::abort();
}

}  // namespace

// The transaction a read runs in: the write transaction when one is open, else the read-only
// one, renewed by the outermost read and reset when it ends so that it pins no old pages.
class LmdbBackend::ReadScope {
 public:
  explicit ReadScope(const LmdbBackend& backend) : backend_(backend) {
    if (backend.write_txn_ != nullptr) {
      txn_ = backend.write_txn_;
    } else {
      RAFT_CHECK(backend.env_ != nullptr)
          << "LMDB backend in " << backend.dir_
          << ": read after a failed reopen: " << backend.status_.ToString();
      if (backend.read_depth_ == 0) {
        if (const int rc = mdb_txn_renew(backend.read_txn_); rc != MDB_SUCCESS) {
          ReadFailed(backend.dir_, "mdb_txn_renew", rc);
        }
      }
      txn_ = backend.read_txn_;
    }
    ++backend.read_depth_;
  }
  ~ReadScope() {
    if (--backend_.read_depth_ == 0 && txn_ == backend_.read_txn_) {
      mdb_txn_reset(backend_.read_txn_);
    }
  }
  ReadScope(const ReadScope&) = delete;
  ReadScope& operator=(const ReadScope&) = delete;

  MDB_txn* txn() const { return txn_; }
  bool writing() const { return txn_ == backend_.write_txn_; }

 private:
  const LmdbBackend& backend_;
  MDB_txn* txn_ = nullptr;
};

LmdbBackend::LmdbBackend(std::string dir, LmdbOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<LmdbBackend>> LmdbBackend::Open(const std::string& dir,
                                                               const LmdbOptions& options) {
  if (options.batch_interval_ms < 0 || options.batch_limit_commits < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LMDB backend in ", dir, ": batch_interval_ms ", options.batch_interval_ms,
        " must be >= 0 and batch_limit_commits ", options.batch_limit_commits, " >= 1"));
  }
  if (mkdir(dir.c_str(), kDirMode) != 0 && errno != EEXIST) return PosixError("mkdir", dir);
  const std::string compact = absl::StrCat(dir, "/", kCompactFile);
  if (unlink(compact.c_str()) != 0 && errno != ENOENT) return PosixError("unlink", compact);

  LmdbOptions resolved = options;
  if (!resolved.now_ms) resolved.now_ms = SteadyNowMs;
  auto backend = absl::WrapUnique(new LmdbBackend(dir, std::move(resolved)));
  if (absl::Status status = backend->OpenEnvironment(); !status.ok()) return status;
  return backend;
}

LmdbBackend::~LmdbBackend() {
  // Flush leaves outstanding writes in a new write transaction, which the close aborts.
  if (env_ != nullptr && status_.ok()) Flush().IgnoreError();
  std::unique_lock<std::shared_mutex> closing(env_mutex_);  // after copies in progress
  CloseEnvironment();
}

absl::Status LmdbBackend::OpenEnvironment() {
  int rc = mdb_env_create(&env_);
  if (rc != MDB_SUCCESS) {
    env_ = nullptr;
    return LmdbError("mdb_env_create", rc);
  }
  // Without MDB_NOSYNC, MDB_NOMETASYNC or MDB_WRITEMAP every commit fsyncs, and the file grows
  // with the data instead of being sized to the map.
  if ((rc = mdb_env_set_mapsize(env_, kMapSizeBytes)) != MDB_SUCCESS ||
      (rc = mdb_env_set_maxdbs(env_, kBucketCount)) != MDB_SUCCESS ||
      (rc = mdb_env_open(env_, dir_.c_str(), MDB_NOTLS | MDB_NORDAHEAD | MDB_NOMETASYNC,
                         kFileMode)) != MDB_SUCCESS) {
    CloseEnvironment();
    return LmdbError("mdb_env_open", rc);
  }
  max_key_size_ = static_cast<size_t>(mdb_env_get_maxkeysize(env_));

  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(env_, nullptr, 0, &txn)) != MDB_SUCCESS) {
    CloseEnvironment();
    return LmdbError("mdb_txn_begin", rc);
  }
  for (int i = 0; i < kBucketCount; ++i) {
    if ((rc = mdb_dbi_open(txn, kBucketNames[i], MDB_CREATE, &dbis_[i])) != MDB_SUCCESS) {
      mdb_txn_abort(txn);
      CloseEnvironment();
      return LmdbError(absl::StrCat("mdb_dbi_open ", kBucketNames[i]), rc);
    }
  }
  if ((rc = mdb_txn_commit(txn)) != MDB_SUCCESS) {
    CloseEnvironment();
    return LmdbError("mdb_txn_commit (databases)", rc);
  }

  if ((rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &read_txn_)) != MDB_SUCCESS) {
    read_txn_ = nullptr;
    CloseEnvironment();
    return LmdbError("mdb_txn_begin (read-only)", rc);
  }
  for (int i = 0; i < kBucketCount; ++i) {
    if ((rc = mdb_cursor_open(read_txn_, dbis_[i], &read_cursors_[i])) != MDB_SUCCESS) {
      read_cursors_[i] = nullptr;
      CloseEnvironment();
      return LmdbError("mdb_cursor_open", rc);
    }
  }
  mdb_txn_reset(read_txn_);

  // A new data.mdb is durable only once its directory entry is.
  if (absl::Status status = SyncDirectory(dir_); !status.ok()) {
    CloseEnvironment();
    return status;
  }
  if (absl::Status status = UpdateSize(); !status.ok()) {
    CloseEnvironment();
    return status;
  }
  FindMap();
  return absl::OkStatus();
}

void LmdbBackend::CloseEnvironment() {
  AbortWriteTransaction();
  for (MDB_cursor*& cursor : read_cursors_) {
    if (cursor != nullptr) mdb_cursor_close(cursor);
    cursor = nullptr;
  }
  if (read_txn_ != nullptr) mdb_txn_abort(read_txn_);
  read_txn_ = nullptr;
  if (env_ != nullptr) mdb_env_close(env_);
  env_ = nullptr;
  map_address_ = nullptr;  // unmapped by the close: another mapping may take the address
  map_bytes_ = 0;
}

std::optional<std::string> LmdbBackend::Get(Bucket bucket, absl::string_view key) const {
  if (key.empty()) return std::nullopt;  // LMDB has no empty key, so none is stored
  ReadScope scope(*this);
  MDB_val k = Val(key);
  MDB_val v;
  const int rc = mdb_get(scope.txn(), dbis_[Index(bucket)], &k, &v);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  if (rc != MDB_SUCCESS) ReadFailed(dir_, "mdb_get", rc);
  return std::string(View(v));
}

void LmdbBackend::Range(Bucket bucket, absl::string_view start, absl::string_view end,
                        Visitor visit) const {
  ReadScope scope(*this);
  const int i = Index(bucket);
  // The bucket's own cursor, unless a Range on the same bucket is running further up the stack
  // (a visitor that reads again): then a cursor of its own.
  const bool own_cursor = cursor_busy_[i];
  MDB_cursor* cursor = nullptr;
  int rc = MDB_SUCCESS;
  if (own_cursor) {
    rc = mdb_cursor_open(scope.txn(), dbis_[i], &cursor);
  } else if (scope.writing()) {
    if (write_cursors_[i] == nullptr) {
      rc = mdb_cursor_open(scope.txn(), dbis_[i], &write_cursors_[i]);
    }
    cursor = write_cursors_[i];
  } else {
    cursor = read_cursors_[i];
    rc = mdb_cursor_renew(scope.txn(), cursor);
  }
  if (rc != MDB_SUCCESS) ReadFailed(dir_, "mdb_cursor_open", rc);
  cursor_busy_[i] = true;

  MDB_val k = Val(start);
  MDB_val v;
  rc = mdb_cursor_get(cursor, &k, &v, start.empty() ? MDB_FIRST : MDB_SET_RANGE);
  for (; rc == MDB_SUCCESS; rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    const absl::string_view key = View(k);
    if (!end.empty() && key >= end) break;
    if (!visit(key, View(v))) break;
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) ReadFailed(dir_, "mdb_cursor_get", rc);

  if (own_cursor) {
    mdb_cursor_close(cursor);
  } else {
    cursor_busy_[i] = false;
  }
}

void LmdbBackend::Put(Bucket bucket, absl::string_view key, absl::string_view value) {
  if (!status_.ok()) return;
  if (key.empty() || key.size() > max_key_size_) {
    Fail(absl::InvalidArgumentError(absl::StrCat(
             "LMDB backend in ", dir_, ": put of a ", key.size(), "-byte key in bucket ",
             kBucketNames[Index(bucket)], "; LMDB keys are 1 to ", max_key_size_, " bytes")))
        .IgnoreError();
    return;
  }
  MDB_cursor* cursor = WriteCursor(bucket);
  if (cursor == nullptr) return;
  MDB_val k = Val(key);
  MDB_val v = Val(value);
  // One search inserts a new key; for an existing one it reports the value to keep for undo.
  int rc = mdb_cursor_put(cursor, &k, &v, MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST) {
    RecordUndo(bucket, key, View(v));
    v = Val(value);
    rc = mdb_cursor_put(cursor, &k, &v, 0);  // on the cursor's page: no descent from the root
  } else if (rc == MDB_SUCCESS) {
    RecordUndo(bucket, key, std::nullopt);
  }
  if (rc != MDB_SUCCESS) Fail(LmdbError("mdb_cursor_put", rc)).IgnoreError();
}

void LmdbBackend::Delete(Bucket bucket, absl::string_view key) {
  if (!status_.ok()) return;
  if (key.empty() || key.size() > max_key_size_) return;  // never stored
  MDB_cursor* cursor = WriteCursor(bucket);
  if (cursor == nullptr) return;
  MDB_val k = Val(key);
  MDB_val v;
  int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET);
  if (rc == MDB_NOTFOUND) return;
  if (rc == MDB_SUCCESS) {
    RecordUndo(bucket, key, View(v));
    rc = mdb_cursor_del(cursor, 0);
  }
  if (rc != MDB_SUCCESS) Fail(LmdbError("mdb_cursor_del", rc)).IgnoreError();
}

absl::Status LmdbBackend::Commit() {
  if (!status_.ok()) return status_;
  if (write_txn_ == nullptr) return absl::OkStatus();  // nothing written since the last commit
  ClearUndo();
  const int64_t now_ms = options_.now_ms();
  if (pending_batches_++ == 0) first_pending_ms_ = now_ms;
  if (pending_batches_ >= options_.batch_limit_commits ||
      now_ms - first_pending_ms_ >= options_.batch_interval_ms) {
    return CommitTransaction(/*durable=*/false);
  }
  return absl::OkStatus();
}

absl::Status LmdbBackend::Flush() {
  if (!status_.ok()) return status_;
  if (pending_batches_ == 0) return meta_unsynced_ ? SyncMeta() : absl::OkStatus();
  if (undo_.empty()) return CommitTransaction(/*durable=*/true);
  absl::StatusOr<std::vector<SetAside>> outstanding = SetAsideOutstanding();
  if (!outstanding.ok()) return outstanding.status();
  if (absl::Status status = CommitTransaction(/*durable=*/true); !status.ok()) return status;
  Reapply(*outstanding);
  return status_;
}

uint64_t LmdbBackend::SizeBytes() const { return size_bytes_; }

absl::Status LmdbBackend::Defragment() {
  if (!status_.ok()) return status_;
  absl::StatusOr<std::vector<SetAside>> outstanding = SetAsideOutstanding();
  if (!outstanding.ok()) return outstanding.status();
  if (write_txn_ != nullptr) {
    if (absl::Status status = CommitTransaction(/*durable=*/true); !status.ok()) return status;
  }

  // The copy: until the rename, data.mdb is untouched and a failure changes nothing.
  const std::string compact = absl::StrCat(dir_, "/", kCompactFile);
  const std::string data = absl::StrCat(dir_, "/", kDataFile);
  absl::Status copied;
  const int fd = open(compact.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode);
  if (fd < 0) {
    copied = PosixError("open", compact);
  } else {
    if (const int rc = mdb_env_copyfd2(env_, fd, MDB_CP_COMPACT); rc != MDB_SUCCESS) {
      copied = LmdbError("mdb_env_copyfd2 (compact)", rc);
    } else if (fsync(fd) != 0) {
      copied = PosixError("fsync", compact);
    }
    if (close(fd) != 0 && copied.ok()) copied = PosixError("close", compact);
    if (!copied.ok()) unlink(compact.c_str());
  }
  if (!copied.ok()) {
    Reapply(*outstanding);
    return copied;
  }

  // A copy in progress (CopyCommittedTo on another thread) finishes first.
  std::unique_lock<std::shared_mutex> swapping(env_mutex_);
  CloseEnvironment();
  absl::Status swapped;
  if (rename(compact.c_str(), data.c_str()) != 0) {
    swapped = PosixError("rename to data.mdb", compact);
    unlink(compact.c_str());
  } else {
    swapped = SyncDirectory(dir_);
  }
  // Either file holds every committed batch, so a failed swap leaves a working backend.
  absl::Status reopened = OpenEnvironment();
  swapping.unlock();
  if (!reopened.ok()) return Fail(reopened);
  Reapply(*outstanding);
  if (!swapped.ok()) return swapped;
  return status_;
}

absl::Status LmdbBackend::CopyCommittedTo(const std::string& path) const {
  std::shared_lock<std::shared_mutex> copying(env_mutex_);
  if (env_ == nullptr) return absl::FailedPreconditionError("the LMDB environment is closed");
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode);
  if (fd < 0) return PosixError("open", path);
  absl::Status copied;
  // A copy reads through its own read transaction: it sees the last committed state only.
  if (const int rc = mdb_env_copyfd2(env_, fd, MDB_CP_COMPACT); rc != MDB_SUCCESS) {
    copied = LmdbError("mdb_env_copyfd2 (snapshot)", rc);
  } else if (fsync(fd) != 0) {
    copied = PosixError("fsync", path);
  }
  if (close(fd) != 0 && copied.ok()) copied = PosixError("close", path);
  if (!copied.ok()) unlink(path.c_str());
  return copied;
}

void LmdbBackend::AbandonForTest() { AbortWriteTransaction(); }

MDB_cursor* LmdbBackend::WriteCursor(Bucket bucket) {
  RAFT_CHECK(read_depth_ == 0) << "LMDB backend in " << dir_ << ": a write inside a Range visitor";
  if (write_txn_ == nullptr) {
    if (const int rc = mdb_txn_begin(env_, nullptr, 0, &write_txn_); rc != MDB_SUCCESS) {
      write_txn_ = nullptr;
      Fail(LmdbError("mdb_txn_begin", rc)).IgnoreError();
      return nullptr;
    }
  }
  const int i = Index(bucket);
  if (write_cursors_[i] == nullptr) {
    if (const int rc = mdb_cursor_open(write_txn_, dbis_[i], &write_cursors_[i]);
        rc != MDB_SUCCESS) {
      write_cursors_[i] = nullptr;
      Fail(LmdbError("mdb_cursor_open", rc)).IgnoreError();
      return nullptr;
    }
  }
  return write_cursors_[i];
}

void LmdbBackend::RecordUndo(Bucket bucket, absl::string_view key,
                             std::optional<absl::string_view> previous) {
  undo_.push_back(Undo{bucket, previous.has_value(), undo_bytes_.size(), key.size(),
                       previous.has_value() ? previous->size() : 0});
  undo_bytes_.append(key.data(), key.size());
  if (previous.has_value()) undo_bytes_.append(previous->data(), previous->size());
}

void LmdbBackend::ClearUndo() {
  undo_.clear();
  undo_bytes_.clear();
}

void LmdbBackend::AbortWriteTransaction() {
  if (write_txn_ != nullptr) mdb_txn_abort(write_txn_);  // closes its cursors
  write_txn_ = nullptr;
  for (MDB_cursor*& cursor : write_cursors_) cursor = nullptr;
  pending_batches_ = 0;
  ClearUndo();
}

absl::StatusOr<std::vector<LmdbBackend::SetAside>> LmdbBackend::SetAsideOutstanding() {
  std::vector<SetAside> writes;
  if (undo_.empty()) return writes;
  RAFT_CHECK(write_txn_ != nullptr) << "LMDB backend in " << dir_ << ": undo records without a "
                                    << "write transaction";
  const absl::string_view bytes = undo_bytes_;
  writes.reserve(undo_.size());
  for (const Undo& undo : undo_) {
    const absl::string_view key = bytes.substr(undo.offset, undo.key_size);
    MDB_val k = Val(key);
    MDB_val v;
    const int rc = mdb_get(write_txn_, dbis_[Index(undo.bucket)], &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return Fail(LmdbError("mdb_get", rc));
    writes.push_back(
        SetAside{undo.bucket, std::string(key),
                 rc == MDB_SUCCESS ? std::optional<std::string>(View(v)) : std::nullopt});
  }
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
    MDB_val k = Val(bytes.substr(it->offset, it->key_size));
    const MDB_dbi dbi = dbis_[Index(it->bucket)];
    int rc;
    if (it->had_previous) {
      MDB_val v = Val(bytes.substr(it->offset + it->key_size, it->previous_size));
      rc = mdb_put(write_txn_, dbi, &k, &v, 0);
    } else {
      rc = mdb_del(write_txn_, dbi, &k, nullptr);
    }
    if (rc != MDB_SUCCESS) return Fail(LmdbError("undo of an outstanding write", rc));
  }
  ClearUndo();
  return writes;
}

void LmdbBackend::Reapply(const std::vector<SetAside>& writes) {
  for (const SetAside& write : writes) {
    if (write.value.has_value()) {
      Put(write.bucket, write.key, *write.value);
    } else {
      Delete(write.bucket, write.key);
    }
  }
}

absl::Status LmdbBackend::CommitTransaction(bool durable) {
  RAFT_CHECK(write_txn_ != nullptr && read_depth_ == 0)
      << "LMDB backend in " << dir_ << ": commit without a write transaction, or inside a read";
  MDB_txn* const txn = std::exchange(write_txn_, nullptr);
  for (MDB_cursor*& cursor : write_cursors_) cursor = nullptr;  // closed by the commit
  pending_batches_ = 0;
  if (const int rc = mdb_txn_commit(txn); rc != MDB_SUCCESS) {
    return Fail(absl::DataLossError(
        absl::StrCat("LMDB backend in ", dir_, ": mdb_txn_commit failed: ", mdb_strerror(rc),
                     "; the batches since the last durable commit are lost")));
  }
  meta_unsynced_ = true;
  if (durable) {
    if (absl::Status synced = SyncMeta(); !synced.ok()) return synced;
  }
  absl::Status sized = UpdateSize();
  if (sized.ok() && ++commits_since_release_ >= kReleaseMapEveryCommits) ReleaseMap();
  return sized;
}

absl::Status LmdbBackend::SyncMeta() {
  if (const int rc = mdb_env_sync(env_, /*force=*/1); rc != MDB_SUCCESS) {
    return Fail(absl::DataLossError(absl::StrCat("LMDB backend in ", dir_,
                                                 ": mdb_env_sync failed: ", mdb_strerror(rc),
                                                 "; the last commit may not be durable")));
  }
  meta_unsynced_ = false;
  return absl::OkStatus();
}

void LmdbBackend::FindMap() {
  map_address_ = nullptr;
  map_bytes_ = 0;
  // LMDB does not tell where it mapped the file (MDB_envinfo::me_mapaddr is set only with
  // MDB_FIXEDMAP): the process's map of data.mdb's inode from offset 0, map-sized, is it.
  int fd = -1;
  struct stat st;
  MDB_envinfo info;
  if (mdb_env_get_fd(env_, &fd) != MDB_SUCCESS || fstat(fd, &st) != 0 ||
      mdb_env_info(env_, &info) != MDB_SUCCESS) {
    return;
  }
  FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return;
  char line[4096];
  while (std::fgets(line, sizeof(line), maps) != nullptr) {
    unsigned long long start = 0, end = 0, offset = 0, inode = 0;
    unsigned int dev_major = 0, dev_minor = 0;
    if (std::sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &start, &end, &offset, &dev_major,
                    &dev_minor, &inode) == 6 &&
        inode == static_cast<unsigned long long>(st.st_ino) && dev_major == major(st.st_dev) &&
        dev_minor == minor(st.st_dev) && offset == 0 && end - start == info.me_mapsize) {
      map_address_ = reinterpret_cast<void*>(static_cast<uintptr_t>(start));
      map_bytes_ = static_cast<size_t>(end - start);
      break;
    }
  }
  std::fclose(maps);
}

void LmdbBackend::ReleaseMap() {
  commits_since_release_ = 0;
  if (map_address_ == nullptr) return;
  // Only what the file holds is ever mapped in; the rest of the 8 GiB map is address space.
  const size_t page_bytes = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t mapped_bytes =
      (std::min<size_t>(size_bytes_ + page_bytes, map_bytes_) / page_bytes) * page_bytes;
  // Advice only: a failure leaves the pages mapped, which costs memory, never correctness.
  (void)madvise(map_address_, mapped_bytes, MADV_DONTNEED);
}

absl::Status LmdbBackend::UpdateSize() {
  int fd = -1;
  if (const int rc = mdb_env_get_fd(env_, &fd); rc != MDB_SUCCESS) {
    return Fail(LmdbError("mdb_env_get_fd", rc));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return Fail(PosixError("fstat", absl::StrCat(dir_, "/", kDataFile)));
  size_bytes_ = static_cast<uint64_t>(st.st_size);
  return absl::OkStatus();
}

absl::Status LmdbBackend::Fail(absl::Status status) {
  if (status_.ok()) status_ = std::move(status);
  AbortWriteTransaction();
  return status_;
}

absl::Status LmdbBackend::LmdbError(absl::string_view operation, int rc) const {
  const std::string message =
      absl::StrCat("LMDB backend in ", dir_, ": ", operation, " failed: ", mdb_strerror(rc));
  if (rc == MDB_MAP_FULL || rc == ENOSPC) {
    return absl::ResourceExhaustedError(
        absl::StrCat(message, " (map of ", kMapSizeBytes, " bytes)"));
  }
  return absl::InternalError(message);
}

}  // namespace kvstore::store
