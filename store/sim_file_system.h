#ifndef KVSTORE_STORE_SIM_FILE_SYSTEM_H_
#define KVSTORE_STORE_SIM_FILE_SYSTEM_H_

// A simulated disk for the deterministic simulator: no real files, no clock, no threads, and every
// random choice drawn from the seed, so a seed replays byte for byte. Only ordered containers are
// used, so nothing depends on pointer values or hash order.
//
// It enforces file_system.h's durability model strictly, so a store that forgets a sync loses
// data here instead of in production:
//   - File contents. Each file (an inode: names point at it, handles keep it alive) has durable
//     bytes, the list of its unsynced writes in order (Truncate is one of them) and the current
//     view that reads see. A successful Sync or DataSync (modelled alike: DataSync also syncs the
//     size, which reading the appended bytes needs) makes the pending writes durable.
//   - Names. Creating, renaming and removing a name (and CreateDir) are volatile until SyncDir of
//     the parent directory. A rename within one directory is atomic; across directories it is a
//     removal and a creation in two directories, each durable on its own directory's SyncDir.
//   - Crash() is a power loss. Directory operations not yet synced survive as a seeded prefix of
//     the order they happened in; a name whose parent directory did not survive is lost with it.
//     In each file, a seeded cut point splits the unsynced writes: those before it reach the disk
//     whole, those after it are lost, and the one at the cut is lost, kept whole or torn: a prefix
//     of its kSectorBytes sectors reaches the disk, the last of them possibly garbled with seeded
//     bytes. Every handle and lock from before the crash is dead: its operations fail with
//     kFailedPrecondition "stale handle after crash".
//   - A failed sync (injected EIO) poisons the file, as Linux does after a failed fsync (the
//     dirty pages are dropped: PostgreSQL's "fsyncgate"): its pending writes stay in the current
//     view only, every later Sync of it fails too, and a crash loses them all.
//
// Contents are sparse: the logical size is kept apart from the bytes written, with zeros implied
// elsewhere, so a WAL segment preallocated to 64 MiB by Truncate costs no memory.
//
// Paths are absolute ("/n1/wal/0001.wal"); repeated and trailing slashes are ignored. The root "/"
// always exists. Renaming and removing directories is not simulated (the store never does it).
//
// Lifetime: every File and FileLock must be destroyed before the SimFileSystem that made it
// (checked when it is destroyed); a handle dead after Crash() must still be destroyed first.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/raft/rand.h"
#include "store/file_system.h"

namespace kvstore::store {

// Faults and speed of one simulated disk; the simulator may change them at any time
// (SimFileSystem::set_faults). Rates are per million operations of the kind named.
struct SimDiskFaults {
  // Append, WriteAt or Truncate fails with EIO (kInternal) and changes nothing.
  uint32_t write_eio_per_million = 0;
  // File::Sync, File::DataSync or SyncDir fails with EIO (kInternal); a failed file sync poisons
  // the file, a failed SyncDir leaves its directory's operations unsynced.
  uint32_t sync_eio_per_million = 0;
  // A write that would take the sum of all files' logical sizes above this fails with ENOSPC
  // (kResourceExhausted) and writes nothing; 0 is unlimited.
  uint64_t capacity_bytes = 0;
  // Every operation costs a seeded latency in [latency_micros_min, latency_micros_max] times
  // `slowness` (a slow disk), summed for the simulator to read with TakeLatencyMicros().
  uint64_t latency_micros_min = 0;
  uint64_t latency_micros_max = 0;
  uint64_t slowness = 1;
};

class SimFileSystem : public FileSystem {
 public:
  // The unit a disk writes atomically (or garbles): a torn write keeps a prefix of its sectors.
  static constexpr uint64_t kSectorBytes = 512;
  static constexpr uint32_t kPerMillion = 1'000'000;

  explicit SimFileSystem(uint64_t seed, const SimDiskFaults& faults = {});
  ~SimFileSystem() override;
  SimFileSystem(const SimFileSystem&) = delete;
  SimFileSystem& operator=(const SimFileSystem&) = delete;

  absl::StatusOr<std::unique_ptr<File>> Open(const std::string& path, OpenMode mode) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status CreateDir(const std::string& dir) override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) const override;
  bool Exists(const std::string& path) const override;
  absl::StatusOr<std::unique_ptr<FileLock>> Lock(const std::string& path) override;

  // Power loss (see the class comment): afterwards the file system holds what reached the disk,
  // and handles and locks from before are dead.
  void Crash();

  // Faults.
  const SimDiskFaults& faults() const { return faults_; }
  void set_faults(const SimDiskFaults& faults);
  // The next write (Append, WriteAt, Truncate) of a file whose path starts with `path_prefix`
  // fails with EIO. Each call arms one failure.
  void FailNextWrite(const std::string& path_prefix);
  // The next File::Sync, File::DataSync or SyncDir of a path starting with `path_prefix` fails
  // with EIO. Each call arms one failure.
  void FailNextSync(const std::string& path_prefix);
  // Disarms every failure FailNextWrite and FailNextSync armed that has not fired.
  void ClearArmedFailures();
  // Latent corruption: flips bit `bit` (0..7) of the byte at `offset` of the file at `path`, in
  // its durable bytes and in its current view (where each reaches), so every later read and
  // every crash sees it. kOutOfRange past both sizes.
  absl::Status FlipBit(const std::string& path, uint64_t offset, int bit);
  // Flips one seeded bit of the durable bytes of `path`; returns the offset of the byte.
  absl::StatusOr<uint64_t> CorruptRandomDurableByte(const std::string& path);

  // The next Crash() tears the last unsynced write of every file whose path starts with
  // `path_prefix`: the writes before it reach the disk whole, it reaches as a prefix of its
  // sectors whose last one is garbled (a scenario's deterministic torn write).
  void TearOnNextCrash(const std::string& path_prefix);

  // The latency of the operations since the last call, in microseconds; resets it to 0.
  uint64_t TakeLatencyMicros();

  // Introspection for tests and checkers.
  // Successful File::Sync, File::DataSync and SyncDir calls so far (crashes do not reset it).
  uint64_t synced_ops() const { return synced_ops_; }
  // Whether the file at `path` has writes not yet synced, or a creation, rename or removal of
  // `path` is not yet synced by SyncDir.
  bool HasUnsynced(const std::string& path) const;
  // What `path` would hold if the disk lost every unsynced operation now: the durable bytes of
  // the file its durable name points at (all of them, zeros included), or nullopt when there is
  // no durable file of that name.
  std::optional<std::string> DurableContent(const std::string& path) const;
  // Files (not directories) in the current namespace.
  size_t file_count() const;
  // Bytes of file content held in memory (durable, current and pending copies): the measure that
  // preallocation stays sparse.
  uint64_t stored_bytes() const;
  // The sum of every file's logical size: what capacity_bytes limits.
  uint64_t logical_bytes() const;

 private:
  class SimFile;
  class SimFileLock;

  // The bytes of one version of a file: the logical size and the byte ranges written, as pieces
  // that never overlap; bytes below the size outside every piece are zeros. A piece is a range
  // of a shared, immutable buffer, so the current view, the pending write and (once synced) the
  // durable bytes hold one buffer of a write between them instead of a copy each.
  class Content {
   public:
    struct Piece {
      uint64_t offset = 0;  // in the file
      std::shared_ptr<const std::string> buffer;
      uint64_t begin = 0;  // in `buffer`
      uint64_t size = 0;
      absl::string_view view() const { return absl::string_view(*buffer).substr(begin, size); }
    };
    // Writes all of `buffer` at `offset`.
    void Write(uint64_t offset, std::shared_ptr<const std::string> buffer);
    void Write(uint64_t offset, std::string bytes);
    // Up to `size` bytes at `offset`: short at the end, empty past it.
    std::string Read(uint64_t offset, uint64_t size) const;
    // Cuts or extends (with implied zeros) to `size_bytes`.
    void Resize(uint64_t size_bytes);
    // Requires offset < size_bytes().
    void FlipBit(uint64_t offset, int bit);
    uint64_t size_bytes() const { return size_bytes_; }
    uint64_t stored_bytes() const;

   private:
    void WritePiece(uint64_t offset, Piece piece);

    // Index of the first piece that ends after `offset`.
    size_t FirstEndingAfter(uint64_t offset) const;

    std::vector<Piece> pieces_;  // by offset; a file is mostly appended to, at the back
    uint64_t size_bytes_ = 0;
  };

  // A write not yet synced: `data` at `offset`, or a Truncate to `offset` bytes (no data).
  struct PendingWrite {
    enum class Kind : uint8_t { kWrite, kTruncate };
    Kind kind;
    uint64_t offset;
    std::shared_ptr<const std::string> data;
    uint64_t size() const { return data == nullptr ? 0 : data->size(); }
  };

  struct Inode {
    Content durable;
    Content current;  // durable with every pending write applied
    std::vector<PendingWrite> pending;
    bool poisoned = false;
    int open_handles = 0;  // live Files of this boot
  };

  struct Entry {
    enum class Kind : uint8_t { kFile, kDirectory };
    Kind kind;
    uint64_t inode_id;  // 0 for a directory
  };

  // One directory operation: names of `dir` that now point at an entry, or at nothing (removed).
  // Its changes become durable together.
  struct DirOp {
    std::string dir;
    std::vector<std::pair<std::string, std::optional<Entry>>> changes;
  };

  // The normalized form of an absolute path, or kInvalidArgument naming `operation`.
  static absl::StatusOr<std::string> Normalize(absl::string_view operation,
                                               const std::string& path);
  static std::string Parent(const std::string& path);
  bool IsDirectory(const std::string& path) const;
  // Adds one operation's seeded latency to the accumulator.
  void AddLatency() const;
  // EIO if a one-shot failure armed in `armed_prefixes` matches `path` (consuming it) or the
  // seeded rate fires.
  absl::Status InjectedEio(std::vector<std::string>* armed_prefixes, uint32_t rate_per_million,
                           absl::string_view operation, const std::string& path);
  // ENOSPC if growing the files by `growth_bytes` would pass capacity_bytes.
  absl::Status CheckCapacity(uint64_t growth_bytes, absl::string_view operation,
                             const std::string& path) const;
  // A new empty file named `path`, whose parent is a directory; returns its inode id.
  uint64_t CreateFile(const std::string& path);
  // Applies `op` to the current namespace and queues it until SyncDir of its directory.
  void RecordDirOp(DirOp op);
  static void ApplyDirOp(const DirOp& op, std::map<std::string, Entry>* names);
  static void ApplyWrite(const PendingWrite& write, Content* content);
  // Crash() for one file's pending writes.
  void CrashFile(Inode* inode);
  // Crash() for a file named in TearOnNextCrash.
  void TearFile(Inode* inode);
  // Drops the inodes that no name, pending directory operation, handle or lock reaches.
  void CollectGarbage();

  SimDiskFaults faults_;
  std::vector<std::string> armed_write_failures_;  // path prefixes, in arming order
  std::vector<std::string> armed_sync_failures_;
  std::vector<std::string> tear_on_crash_;  // path prefixes
  // One generator per concern, so that turning on latency or a fault rate leaves crash outcomes
  // (and each other) unchanged.
  raft::SplitMix64 fault_rng_;
  raft::SplitMix64 crash_rng_;
  raft::SplitMix64 corruption_rng_;
  mutable raft::SplitMix64 latency_rng_;
  mutable uint64_t latency_micros_ = 0;

  std::map<uint64_t, Inode> inodes_;
  uint64_t next_inode_id_ = 1;
  std::map<std::string, Entry> names_;  // the current namespace, by normalized path
  std::map<std::string, Entry> durable_names_;
  std::vector<DirOp> pending_dir_ops_;  // in the order they happened
  std::set<uint64_t> locked_inodes_;
  // Incremented by Crash(): a handle of an older boot is stale.
  uint64_t boot_ = 0;
  uint64_t synced_ops_ = 0;
  // Files and FileLocks not yet destroyed, stale ones included.
  int live_handles_ = 0;
};

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_SIM_FILE_SYSTEM_H_
