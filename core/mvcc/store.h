#ifndef KVSTORE_CORE_MVCC_STORE_H_
#define KVSTORE_CORE_MVCC_STORE_H_

// The multi-version key-value store of etcd v3 (mvcc/kvstore.go), pure and deterministic.
//
// Every write transaction (a Put, a DeleteRange, or a Txn that writes) creates one new revision;
// the operations inside it are numbered by a sub-revision. The backend keeps every version
// under its revision ("key" bucket), so reads at past revisions and watch replays come straight
// from it; an in-memory index maps each key to its history (KeyIndex). Compaction forgets
// versions no read at or after the compaction revision can see.
//
// Writes go to the backend as they happen; Commit(consistent_index) makes them durable
// together with the Raft index they came from, so after a crash the server core knows which
// entries to apply again (etcd's consistent index).
//
// Errors: kCompacted / kFutureRevision for reads and compactions outside the history,
// kKeyNotFound for ignore_value / ignore_lease on a missing key, kDuplicateKey for a txn that
// writes a key twice. Size limits are checked by the server core before a request gets here.

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "core/mvcc/backend.h"
#include "core/mvcc/key_index.h"
#include "core/mvcc/types.h"

namespace kvstore::mvcc {

// etcd's checkIntervals on a txn's success branch, then its failure branch (v3rpc, before the
// txn is proposed): within one branch no key may be put twice or put inside a range it deletes
// (nested txns included, both of their branches); DUPLICATE_KEY otherwise. Data-independent:
// the server core checks it before proposing, and Store::Txn again when it applies.
absl::Status CheckTxnIntervals(const TxnRequest& txn);

// etcd v3's multi-version store over a Backend: every write is a new revision, history is kept
// until compacted, and reads can be served at any kept revision.
class Store {
 public:
  // Opens the store over `backend` (not owned), rebuilding the index from what it holds.
  static absl::StatusOr<std::unique_ptr<Store>> Open(Backend* backend);

  // Rebuilds the index from the backend after its contents were replaced wholesale (a Raft
  // snapshot was installed). Pending events are dropped.
  absl::Status Reload();

  // The lease of every live key that has one, as the last Open or Reload found them: the
  // lessor re-attaches keys from these (etcd's restoreChunk keyToLease), so a start reads no
  // value, only each record's header. Moved out: empty until the next Reload.
  absl::btree_map<std::string, LeaseId> TakeRestoredLeases();

  Revision current_revision() const { return current_revision_; }
  Revision compact_revision() const { return compact_revision_; }
  // The Raft index of the last entry whose effects were committed to the backend.
  uint64_t consistent_index() const { return consistent_index_; }
  size_t key_count() const { return index_.size(); }

  absl::StatusOr<RangeResponse> Range(const RangeRequest& request) const;
  absl::StatusOr<PutResponse> Put(const PutRequest& request);
  absl::StatusOr<DeleteRangeResponse> DeleteRange(const DeleteRangeRequest& request);
  absl::StatusOr<TxnResponse> Txn(const TxnRequest& request);
  // The same, taking the request: the values it puts move into the store instead of being
  // copied (the request's puts are left without their values; nested txns are copied).
  absl::StatusOr<PutResponse> Put(PutRequest&& request);
  absl::StatusOr<TxnResponse> Txn(TxnRequest&& request);
  absl::StatusOr<CompactResponse> Compact(Revision revision);
  absl::StatusOr<HashResponse> Hash(Revision revision) const;

  // Makes every write so far durable, recording `consistent_index`.
  absl::Status Commit(uint64_t consistent_index);

  // The events of writes since the last call, in revision order (for watchers).
  std::vector<Event> TakeEvents();
  // Whether those events carry the previous value in prev_kv (its other fields they always
  // carry). Only a watcher asking for prev_kv reads it: the server turns it off while there is
  // none (reading the previous value of every overwritten or deleted key cost 1-2% of a
  // simulated run with kilobyte values). On by default.
  void set_prev_values_in_events(bool on) { prev_values_in_events_ = on; }
  // History for watchers catching up: events with revisions in [start, end] whose key lies in
  // the range (etcd semantics for key/range_end), at most `limit` (0: all), in order. prev_kv is
  // filled when asked. kCompacted when start is below the compaction (etcd: a watch from the
  // compact revision itself is served, #18089).
  absl::StatusOr<std::vector<Event>> History(Revision start, Revision end, const std::string& key,
                                             const std::string& range_end, bool with_prev_kv,
                                             size_t limit) const;

 private:
  explicit Store(Backend* backend) : backend_(backend) {}
  absl::Status Restore();

  class WriteTxn;
  absl::StatusOr<RangeResponse> RangeAt(const RangeRequest& request, Revision current) const;
  bool Evaluate(const Compare& compare) const;
  absl::Status CheckTxn(const TxnRequest& request, bool branch_success) const;
  // `movable`: the same request, whose top-level puts' values may be moved from, or null.
  absl::StatusOr<TxnResponse> RunTxn(const TxnRequest& request, WriteTxn& txn, TxnRequest* movable);
  absl::StatusOr<PutResponse> PutImpl(const PutRequest& request, std::string value);
  absl::StatusOr<TxnResponse> TxnImpl(const TxnRequest& request, TxnRequest* movable);
  // The record at `rev`; without its value (left empty) unless `with_value`.
  std::optional<KeyValue> Fetch(const RevisionPair& rev, bool tombstone,
                                bool with_value = true) const;
  // Visits index entries of the range in key order until `visit` returns false.
  template <typename Visit>
  void VisitRange(const std::string& key, const std::string& range_end, Visit visit) const;

  Backend* backend_;
  absl::btree_map<std::string, KeyIndex> index_;
  Revision current_revision_ = 1;
  Revision compact_revision_ = 0;
  uint64_t consistent_index_ = 0;
  std::vector<Event> events_;
  bool prev_values_in_events_ = true;
  // Filled by Restore, taken by TakeRestoredLeases.
  absl::btree_map<std::string, LeaseId> restored_leases_;
};

// Backend key of a revision (etcd's revision bytes: main, '_', sub, big-endian; 't' marks a
// tombstone). Exposed for tests and tools that inspect a backend.
std::string RevisionKey(RevisionPair rev, bool tombstone);
std::string EncodeKeyValue(const KeyValue& kv);
bool DecodeKeyValue(absl::string_view data, KeyValue* kv);

}  // namespace kvstore::mvcc

#endif  // KVSTORE_CORE_MVCC_STORE_H_
