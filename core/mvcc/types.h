#ifndef KVSTORE_CORE_MVCC_TYPES_H_
#define KVSTORE_CORE_MVCC_TYPES_H_

// The values of etcd's v3 key-value API: key-values with their revisions, and the requests and
// responses of Range, Put, DeleteRange and Txn. Semantics follow etcd v3 (api/etcdserverpb).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kvstore::mvcc {

// A point in the store's history. Every write transaction increments it by one; revision 1 is
// the empty store.
using Revision = int64_t;
using LeaseId = int64_t;
inline constexpr LeaseId kNoLease = 0;

// A key as stored at one revision (etcd mvccpb.KeyValue).
struct KeyValue {
  std::string key;
  // Revision of the last creation of the key (since its last deletion).
  Revision create_revision = 0;
  // Revision of the last modification.
  Revision mod_revision = 0;
  // Modifications since creation (1 after creation); deletion resets it to 0.
  int64_t version = 0;
  std::string value;
  LeaseId lease = kNoLease;

  friend bool operator==(const KeyValue& a, const KeyValue& b) {
    return a.key == b.key && a.create_revision == b.create_revision &&
           a.mod_revision == b.mod_revision && a.version == b.version && a.value == b.value &&
           a.lease == b.lease;
  }
};

// A change, as watchers see it. For a delete, kv holds the key and the deleting revision.
struct Event {
  enum class Type : uint8_t { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;
  std::optional<KeyValue> prev_kv;  // filled only for watchers that ask for it
};

// Key ranges, as in etcd: range_end empty = the single key; range_end "\0" = every key >= key;
// otherwise [key, range_end). PrefixEnd(prefix) gives the range_end of a prefix.
std::string PrefixEnd(const std::string& prefix);
bool InRange(const std::string& key, const std::string& range_end, const std::string& candidate);

// How a range sorts its result (kNone: by key, ascending) and on which field.
enum class SortOrder : uint8_t { kNone, kAscend, kDescend };
enum class SortTarget : uint8_t { kKey, kVersion, kCreate, kMod, kValue };

// Reads the keys of a range at a revision (etcd RangeRequest).
struct RangeRequest {
  std::string key;
  std::string range_end;
  int64_t limit = 0;      // 0: no limit
  Revision revision = 0;  // <= 0: the current revision
  SortOrder sort_order = SortOrder::kNone;
  SortTarget sort_target = SortTarget::kKey;
  bool serializable = false;  // served locally without ReadIndex (server core)
  bool keys_only = false;
  bool count_only = false;
  // 0: no filter.
  Revision min_mod_revision = 0;
  Revision max_mod_revision = 0;
  Revision min_create_revision = 0;
  Revision max_create_revision = 0;
};

// The keys a range found, after filters, sorting and limit.
struct RangeResponse {
  Revision revision = 0;  // the store's revision when served (header)
  std::vector<KeyValue> kvs;
  bool more = false;  // more keys than `limit` matched
  int64_t count = 0;  // keys in the range at the read revision
};

// Writes one key at a new revision (etcd PutRequest).
struct PutRequest {
  std::string key;
  std::string value;
  LeaseId lease = kNoLease;
  bool prev_kv = false;
  bool ignore_value = false;  // keep the current value (the key must exist)
  bool ignore_lease = false;  // keep the current lease (the key must exist)
};

// The revision of a put and, when asked, the key as it was before.
struct PutResponse {
  Revision revision = 0;
  std::optional<KeyValue> prev_kv;
};

// Deletes every key of a range at one new revision (etcd DeleteRangeRequest).
struct DeleteRangeRequest {
  std::string key;
  std::string range_end;
  bool prev_kv = false;
};

// How many keys a delete removed and, when asked, their last versions.
struct DeleteRangeResponse {
  Revision revision = 0;
  int64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;
};

// One condition of a transaction: a field of every key in a range compared with a constant.
struct Compare {
  enum class Result : uint8_t { kEqual, kGreater, kLess, kNotEqual };
  enum class Target : uint8_t { kVersion, kCreate, kMod, kValue, kLease };
  Result result = Result::kEqual;
  Target target = Target::kValue;
  std::string key;
  std::string range_end;  // every key in the range must satisfy the comparison
  int64_t number = 0;     // for kVersion, kCreate, kMod, kLease
  std::string value;      // for kValue
};

struct TxnRequest;
struct TxnResponse;

// One operation of a transaction branch.
struct RequestOp {
  enum class Kind : uint8_t { kRange, kPut, kDeleteRange, kTxn };
  Kind kind = Kind::kRange;
  RangeRequest range;
  PutRequest put;
  DeleteRangeRequest delete_range;
  std::shared_ptr<const TxnRequest> txn;  // nested transaction
};

// If every compare holds, run `success`, else `failure`; all in one revision (etcd Txn).
struct TxnRequest {
  std::vector<Compare> compare;
  std::vector<RequestOp> success;
  std::vector<RequestOp> failure;
};

// The result of one RequestOp, of the same kind.
struct ResponseOp {
  RequestOp::Kind kind = RequestOp::Kind::kRange;
  RangeResponse range;
  PutResponse put;
  DeleteRangeResponse delete_range;
  std::shared_ptr<const TxnResponse> txn;
};

// Which branch ran, and the result of each of its operations in order.
struct TxnResponse {
  Revision revision = 0;
  bool succeeded = false;
  std::vector<ResponseOp> responses;
};

// The revision the store was compacted to.
struct CompactResponse {
  Revision revision = 0;
};

// A digest of the store's history up to a revision: replicas at the same revision with the
// same compaction must have equal hashes (etcd's HashKV).
struct HashResponse {
  uint64_t hash = 0;
  Revision revision = 0;          // the revision hashed
  Revision compact_revision = 0;  // the compaction it reflects
};

}  // namespace kvstore::mvcc

#endif  // KVSTORE_CORE_MVCC_TYPES_H_
