#ifndef KVSTORE_NET_CONCURRENCY_STM_H_
#define KVSTORE_NET_CONCURRENCY_STM_H_

// Software transactional memory over the key space (etcd's concurrency.STM).
//
// RunStm runs `apply`, which reads with Get/Rev and buffers writes with Put/Del, then commits
// the writes in one txn guarded by compares on what was read; when a compare fails another
// client changed a key this attempt read, so the state is reset and `apply` runs again. `apply`
// must therefore have no effect outside the Stm (or only idempotent ones).
//
// Isolation levels, as etcd defines them:
//   kSerializableSnapshot  reads as of one revision (the first read's); commits only if no key
//                          read changed since (mod revision ==) and no key written was
//                          modified after that revision (mod revision < first + 1): no write
//                          skew on the written keys either.
//   kSerializable          reads as of the first read's revision; commits only if no key read
//                          changed since. A failed commit reads the read set back in the same
//                          txn (its failure branch) and the next attempt starts from it.
//   kRepeatableReads       each key is read once (cached), from any member (serializable
//                          ranges); commits only if no key read changed since its read.
//   kReadCommitted         reads as kRepeatableReads; commits without compares.
//
// Reads that fail (no endpoint, a compacted or future revision) poison the attempt: Get
// returns "" and the attempt ends without a commit; compacted and future revisions are retried
// as conflicts, other failures are returned. A commit whose outcome is unknown (TIMEOUT) is
// returned as it is, never retried. Attempts are bounded by StmOptions::max_attempts.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/lease/lessor.h"
#include "core/mvcc/types.h"
#include "net/concurrency/context.h"

namespace kvstore::net::concurrency {

enum class Isolation : uint8_t {
  kSerializableSnapshot,
  kSerializable,
  kRepeatableReads,
  kReadCommitted,
};

// "serializable-snapshot", "serializable", "repeatable-reads", "read-committed".
const char* IsolationName(Isolation isolation);

// Attempts of one RunStm before it gives up (ABORTED): a key rewritten by others faster than
// an attempt can read and commit would otherwise keep it retrying forever.
inline constexpr int kDefaultMaxStmAttempts = 1000;

struct StmOptions {
  Isolation isolation = Isolation::kSerializableSnapshot;  // etcd's default
  // Keys read before `apply` runs, in the first attempt's snapshot.
  std::vector<std::string> prefetch;
  int max_attempts = kDefaultMaxStmAttempts;
};

// What a committed RunStm did.
struct StmResult {
  mvcc::Revision revision = 0;  // the commit's revision (the store's, if nothing was written)
  int attempts = 0;             // 1 + the conflicts retried
};

// The transaction `apply` sees. Reads see the attempt's own buffered writes.
class Stm {
 public:
  // The key's value; "" when it does not exist (etcd's STM.Get).
  std::string Get(const std::string& key);
  // The key's mod revision, 0 when it does not exist.
  mvcc::Revision Rev(const std::string& key);
  void Put(const std::string& key, std::string value, lease::LeaseId lease = lease::kNoLease);
  void Del(const std::string& key);
  // Not OK once a read of this attempt failed (its commit will not be tried).
  const absl::Status& status() const { return read_status_; }

 private:
  friend absl::StatusOr<StmResult> RunStm(ClientContext context,
                                          const std::function<absl::Status(Stm&)>& apply,
                                          StmOptions options);
  struct Read {
    std::optional<mvcc::KeyValue> kv;
    mvcc::Revision header_revision = 0;
  };
  struct Write {
    std::string value;
    lease::LeaseId lease = lease::kNoLease;
    bool is_delete = false;
  };
  // How a commit went: committed (revision), conflicted (retry), or failed.
  struct Commit {
    bool committed = false;
    mvcc::Revision revision = 0;
  };

  Stm(ClientContext context, Isolation isolation);
  bool snapshot_reads() const;
  void Reset();
  const Read* Fetch(const std::string& key);
  absl::StatusOr<Commit> TryCommit();

  ClientContext context_;
  const Isolation isolation_;
  // Ordered maps: the commit's compares and ops come out in key order (a readable txn, the
  // same txn for the same attempt).
  absl::btree_map<std::string, Read> read_set_;
  absl::btree_map<std::string, Write> write_set_;
  // Serializable levels: reads a failed commit returned, used by the next attempt.
  absl::btree_map<std::string, Read> prefetched_;
  // Serializable levels: the revision every read of this attempt is made at (0: none yet).
  mvcc::Revision read_revision_ = 0;
  absl::Status read_status_;
};

// Runs `apply` until its commit succeeds (see the file comment). An error from `apply` ends the
// run without a commit and is returned as it is.
absl::StatusOr<StmResult> RunStm(ClientContext context,
                                 const std::function<absl::Status(Stm&)>& apply,
                                 StmOptions options = {});

}  // namespace kvstore::net::concurrency

#endif  // KVSTORE_NET_CONCURRENCY_STM_H_
