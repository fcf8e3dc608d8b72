#ifndef KVSTORE_CORE_MVCC_BACKEND_H_
#define KVSTORE_CORE_MVCC_BACKEND_H_

// Ordered byte storage under the MVCC store, in the shape of etcd's bbolt backend: buckets of
// sorted keys, writes batched into transactions that become durable together on Commit. The
// in-memory implementation here serves the simulator and tests; store/ provides LMDB.

#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvstore::mvcc {

// The backend's separate ordered key spaces (bbolt buckets in etcd).
enum class Bucket : uint8_t {
  kKey = 0,    // revision -> key-value record
  kMeta = 1,   // store metadata: compaction progress, consistent index
  kLease = 2,  // lease id -> lease record
  kDedup = 3,  // proposing member + request id of requests applied lately (empty values)
};
inline constexpr int kBucketCount = 4;

// Ordered bytes-to-bytes storage with batched, atomic commits: what the MVCC store and the
// lessor keep their state in (etcd's bbolt backend). Single-threaded, like the core.
class Backend {
 public:
  virtual ~Backend() = default;

  // Reads see every write made so far, committed or not.
  virtual std::optional<std::string> Get(Bucket bucket, absl::string_view key) const = 0;
  // Visits keys in [start, end) in order (end empty: to the last key) until `visit` returns
  // false. A FunctionRef, not a std::function: every read of a record goes through here, and
  // wrapping each caller's lambda in a std::function cost a heap allocation for most of them.
  using Visitor = absl::FunctionRef<bool(absl::string_view key, absl::string_view value)>;
  virtual void Range(Bucket bucket, absl::string_view start, absl::string_view end,
                     Visitor visit) const = 0;

  virtual void Put(Bucket bucket, absl::string_view key, absl::string_view value) = 0;
  // Put, handing over the value: a backend that keeps values as strings takes it without a copy
  // (the store's encoded records, a copy and an allocation each otherwise).
  virtual void PutValue(Bucket bucket, absl::string_view key, std::string&& value) {
    Put(bucket, key, value);
  }
  virtual void Delete(Bucket bucket, absl::string_view key) = 0;
  // Ends a batch: every write since the last Commit becomes durable, atomically, either at once
  // or, in a batching backend (etcd's batch transaction), at the latest at the next Flush. A
  // crash keeps a prefix of the committed batches and never part of one. The MVCC store writes
  // its consistent index in every batch, so the Raft log replays what a crash took, exactly once.
  virtual absl::Status Commit() = 0;
  // Makes every committed batch durable now. The driver calls it before it drops log entries
  // that a batch covers.
  virtual absl::Status Flush() { return absl::OkStatus(); }

  // Bytes the backend occupies (what the quota measures).
  virtual uint64_t SizeBytes() const = 0;
  // Returns free space to the system; SizeBytes may shrink.
  virtual absl::Status Defragment() = 0;
};

// A Backend in memory with a durable/volatile split: writes are volatile until they are durable,
// and Crash() throws away everything that is not, as a power loss would. By default every Commit
// is durable at once; with commits_per_flush > 1 it batches like etcd's backend: a batch becomes
// durable with the commits_per_flush-th Commit or at Flush, so the simulator exercises the
// replay of the entries a crash took from the backend.
class MemoryBackend : public Backend {
 public:
  explicit MemoryBackend(uint64_t commits_per_flush = 1) : commits_per_flush_(commits_per_flush) {}
  std::optional<std::string> Get(Bucket bucket, absl::string_view key) const override;
  void Range(Bucket bucket, absl::string_view start, absl::string_view end,
             Visitor visit) const override;
  void Put(Bucket bucket, absl::string_view key, absl::string_view value) override;
  void PutValue(Bucket bucket, absl::string_view key, std::string&& value) override;
  void Delete(Bucket bucket, absl::string_view key) override;
  absl::Status Commit() override;
  absl::Status Flush() override;
  uint64_t SizeBytes() const override;
  absl::Status Defragment() override;

  // Loses every write that is not durable.
  void Crash();
  // Bytes freed by deletes since the last defragmentation still count toward SizeBytes, as in
  // a B+tree file that only grows until defragmented.
  uint64_t free_bytes() const { return free_bytes_; }

 private:
  // Bytewise key order (std::string's), deciding most comparisons on the first eight bytes as
  // one big-endian word: revision and dedup keys start with eight big-endian bytes, and a
  // lookup compares a key at every step of the tree.
  struct KeyLess {
    using is_transparent = void;
    bool operator()(absl::string_view a, absl::string_view b) const {
      if (a.size() >= 8 && b.size() >= 8) {
        uint64_t x;
        uint64_t y;
        std::memcpy(&x, a.data(), 8);
        std::memcpy(&y, b.data(), 8);
        if (x != y) return __builtin_bswap64(x) < __builtin_bswap64(y);
      }
      return a < b;
    }
  };
  // A B-tree, like the file-backed backends: a node holds many records, so a lookup touches a
  // few cache lines instead of one per level, and an insert rarely allocates a node.
  using Tree = absl::btree_map<std::string, std::string, KeyLess>;
  // Undo record of one uncommitted write: the key (a slice of undo_keys_) and the value it had
  // before (nullopt: absent).
  struct Undo {
    Bucket bucket;
    size_t key_offset;
    size_t key_size;
    std::optional<std::string> previous;
  };
  void RecordUndo(Bucket bucket, absl::string_view key, std::optional<std::string> previous);
  // Makes every committed batch durable.
  void MakeDurable();

  uint64_t commits_per_flush_;
  uint64_t commits_pending_ = 0;  // committed batches not yet durable
  Tree trees_[kBucketCount];      // current contents, durable or not
  std::vector<Undo> undo_;        // since the last durable point, oldest first
  size_t undo_committed_ = 0;     // undo_[0, undo_committed_) belongs to committed batches
  // The undo records' keys back to back: one buffer that keeps its capacity across commits,
  // instead of an allocation per write.
  std::string undo_keys_;
  uint64_t live_bytes_ = 0;
  uint64_t free_bytes_ = 0;
  uint64_t committed_live_bytes_ = 0;  // at the last Commit
  uint64_t committed_free_bytes_ = 0;
  uint64_t durable_live_bytes_ = 0;  // at the last durable point
  uint64_t durable_free_bytes_ = 0;
};

}  // namespace kvstore::mvcc

#endif  // KVSTORE_CORE_MVCC_BACKEND_H_
