#include "core/mvcc/store.h"

#include <algorithm>
#include <functional>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "core/base/probe.h"

namespace kvstore::mvcc {
namespace {

constexpr absl::string_view kMetaConsistentIndex = "consistent_index";
constexpr absl::string_view kMetaCurrentRevision = "current_revision";
constexpr absl::string_view kMetaScheduledCompact = "scheduled_compact_revision";
constexpr absl::string_view kMetaFinishedCompact = "finished_compact_revision";
constexpr size_t kRevisionKeySize = 17;  // 8 + '_' + 8

using RevisionKeyBuffer = char[kRevisionKeySize + 1];

// The bytes of RevisionKey in a caller's buffer, so that lookups allocate nothing.
absl::string_view EncodeRevisionKey(RevisionPair rev, bool tombstone, RevisionKeyBuffer& buffer) {
  uint64_t main = static_cast<uint64_t>(rev.main);
  uint64_t sub = static_cast<uint64_t>(rev.sub);
  for (int i = 7; i >= 0; --i, main >>= 8, sub >>= 8) {  // big-endian
    buffer[i] = static_cast<char>(main & 0xFF);
    buffer[9 + i] = static_cast<char>(sub & 0xFF);
  }
  buffer[8] = '_';
  buffer[kRevisionKeySize] = 't';
  return absl::string_view(buffer, tombstone ? kRevisionKeySize + 1 : kRevisionKeySize);
}

std::string Fixed64(uint64_t value) {
  std::string out;
  PutFixed64BigEndian(&out, value);
  return out;
}

uint64_t ReadMeta(const Backend& backend, absl::string_view key) {
  auto value = backend.Get(Bucket::kMeta, key);
  if (!value.has_value()) return 0;
  absl::string_view in = *value;
  uint64_t result = 0;
  return GetFixed64BigEndian(&in, &result) ? result : 0;
}

bool ParseRevisionKey(absl::string_view key, RevisionPair* rev, bool* tombstone) {
  if (key.size() != kRevisionKeySize && key.size() != kRevisionKeySize + 1) return false;
  if (key[8] != '_') return false;
  uint64_t main = 0, sub = 0;
  absl::string_view in = key;
  if (!GetFixed64BigEndian(&in, &main)) return false;
  in.remove_prefix(1);
  if (!GetFixed64BigEndian(&in, &sub)) return false;
  *tombstone = in == "t";
  if (!in.empty() && !*tombstone) return false;
  rev->main = static_cast<Revision>(main);
  rev->sub = static_cast<int64_t>(sub);
  return true;
}

bool Matches(Compare::Result result, int compared) {
  switch (result) {
    case Compare::Result::kEqual:
      return compared == 0;
    case Compare::Result::kNotEqual:
      return compared != 0;
    case Compare::Result::kGreater:
      return compared > 0;
    case Compare::Result::kLess:
      return compared < 0;
  }
  return false;
}

template <typename T>
int Three(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

bool CompareKeyValue(const Compare& c, const KeyValue& kv) {
  switch (c.target) {
    case Compare::Target::kVersion:
      return Matches(c.result, Three(kv.version, c.number));
    case Compare::Target::kCreate:
      return Matches(c.result, Three(kv.create_revision, c.number));
    case Compare::Target::kMod:
      return Matches(c.result, Three(kv.mod_revision, c.number));
    case Compare::Target::kLease:
      return Matches(c.result, Three(kv.lease, c.number));
    case Compare::Target::kValue:
      return Matches(c.result, Three(kv.value, c.value));
  }
  return false;
}

// A key-bucket record decoded in place: views into the backend's bytes, valid while the visitor
// that got them runs. Decoding touches only the fields before the value, so a scan that needs
// no value (Restore) never reads or copies one.
struct RecordView {
  absl::string_view key;
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  uint64_t version = 0;
  uint64_t lease = 0;
  absl::string_view value;
};

bool DecodeRecordView(absl::string_view data, RecordView* record) {
  return GetLengthPrefixed(&data, &record->key) && GetVarint(&data, &record->create_revision) &&
         GetVarint(&data, &record->mod_revision) && GetVarint(&data, &record->version) &&
         GetVarint(&data, &record->lease) && GetLengthPrefixed(&data, &record->value) &&
         data.empty();
}

// CompareKeyValue on a record decoded in place (its fields cast as DecodeKeyValue casts them).
bool CompareRecord(const Compare& c, const RecordView& record) {
  switch (c.target) {
    case Compare::Target::kVersion:
      return Matches(c.result, Three(static_cast<int64_t>(record.version), c.number));
    case Compare::Target::kCreate:
      return Matches(c.result, Three(static_cast<Revision>(record.create_revision), c.number));
    case Compare::Target::kMod:
      return Matches(c.result, Three(static_cast<Revision>(record.mod_revision), c.number));
    case Compare::Target::kLease:
      return Matches(c.result, Three(static_cast<LeaseId>(record.lease), c.number));
    case Compare::Target::kValue:
      return Matches(c.result, Three(record.value, absl::string_view(c.value)));
  }
  return false;
}

// Key intervals written by a txn branch, to refuse writing one key twice (etcd checkIntervals).
struct Interval {
  std::string key;
  std::string range_end;
};

bool Overlap(const Interval& a, const Interval& b) {
  auto end_of = [](const Interval& i) -> std::string {
    return i.range_end.empty() ? i.key + std::string(1, '\0') : i.range_end;
  };
  const std::string a_end = end_of(a), b_end = end_of(b);
  const bool a_open = a.range_end == std::string(1, '\0');
  const bool b_open = b.range_end == std::string(1, '\0');
  const bool a_before_b_ends = b_open || a.key < b_end;
  const bool b_before_a_ends = a_open || b.key < a_end;
  return a_before_b_ends && b_before_a_ends;
}

// The keys a txn branch may write, over every way its nested txns can go.
struct WriteSet {
  std::set<std::string> puts;
  std::vector<Interval> deletes;
};

// etcd checkIntervals (run by etcd on Success and on Failure before anything else): within one
// branch no key may be put twice or put inside a deleted range. Both branches of a nested txn
// count, because which one runs depends on the data; the two branches of one txn exclude each
// other, so they may write the same key. Deleting a range twice is allowed.
absl::Status CheckIntervals(const std::vector<RequestOp>& ops, WriteSet* seen) {
  for (const RequestOp& op : ops) {
    WriteSet writes;
    switch (op.kind) {
      case RequestOp::Kind::kRange:
        continue;
      case RequestOp::Kind::kPut:
        writes.puts.insert(op.put.key);
        break;
      case RequestOp::Kind::kDeleteRange:
        writes.deletes.push_back(Interval{op.delete_range.key, op.delete_range.range_end});
        break;
      case RequestOp::Kind::kTxn: {
        if (op.txn == nullptr) return Error(ErrorCode::kInvalidArgument, "nested txn missing");
        WriteSet otherwise;
        if (auto s = CheckIntervals(op.txn->success, &writes); !s.ok()) return s;
        if (auto s = CheckIntervals(op.txn->failure, &otherwise); !s.ok()) return s;
        writes.puts.merge(otherwise.puts);
        for (Interval& d : otherwise.deletes) writes.deletes.push_back(std::move(d));
        break;
      }
    }
    for (const std::string& key : writes.puts) {
      if (seen->puts.count(key) != 0) {
        return Error(ErrorCode::kDuplicateKey,
                     absl::StrCat("key \"", key, "\" is put twice in one txn"));
      }
      for (const Interval& d : seen->deletes) {
        if (Overlap(d, Interval{key, ""})) {
          return Error(ErrorCode::kDuplicateKey,
                       absl::StrCat("key \"", key, "\" is put and deleted in one txn"));
        }
      }
    }
    for (const Interval& d : writes.deletes) {
      for (const std::string& key : seen->puts) {
        if (Overlap(d, Interval{key, ""})) {
          return Error(ErrorCode::kDuplicateKey,
                       absl::StrCat("key \"", key, "\" is put and deleted in one txn"));
        }
      }
    }
    seen->puts.merge(writes.puts);
    for (Interval& d : writes.deletes) seen->deletes.push_back(std::move(d));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTxnIntervals(const TxnRequest& txn) {
  for (const std::vector<RequestOp>* branch : {&txn.success, &txn.failure}) {
    WriteSet writes;
    if (auto s = CheckIntervals(*branch, &writes); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();  // 0xff cannot be incremented: carry to the previous byte
  }
  return std::string(1, '\0');  // all 0xff (or empty): every key from the prefix on
}

bool InRange(const std::string& key, const std::string& range_end, const std::string& candidate) {
  if (range_end.empty()) return candidate == key;
  if (range_end == std::string(1, '\0')) return candidate >= key;
  return candidate >= key && candidate < range_end;
}

std::string RevisionKey(RevisionPair rev, bool tombstone) {
  RevisionKeyBuffer buffer;
  return std::string(EncodeRevisionKey(rev, tombstone, buffer));
}

std::string EncodeKeyValue(const KeyValue& kv) {
  std::string out;
  out.reserve(kv.key.size() + kv.value.size() + 24);
  PutLengthPrefixed(&out, kv.key);
  PutVarint(&out, static_cast<uint64_t>(kv.create_revision));
  PutVarint(&out, static_cast<uint64_t>(kv.mod_revision));
  PutVarint(&out, static_cast<uint64_t>(kv.version));
  PutVarint(&out, static_cast<uint64_t>(kv.lease));
  PutLengthPrefixed(&out, kv.value);
  return out;
}

bool DecodeKeyValue(absl::string_view data, KeyValue* kv) {
  RecordView record;
  if (!DecodeRecordView(data, &record)) return false;
  kv->key = std::string(record.key);
  kv->create_revision = static_cast<Revision>(record.create_revision);
  kv->mod_revision = static_cast<Revision>(record.mod_revision);
  kv->version = static_cast<int64_t>(record.version);
  kv->lease = static_cast<LeaseId>(record.lease);
  kv->value = std::string(record.value);
  return true;
}

// One write transaction: all its writes share the revision current+1.
class Store::WriteTxn {
 public:
  explicit WriteTxn(Store& store) : store_(store), revision_(store.current_revision_ + 1) {}

  Revision revision() const { return revision_; }
  bool wrote() const { return sub_ > 0; }

  // `value` is r.value (a copy, or moved out of a request the store was handed).
  PutResponse Put(const PutRequest& r, std::string value) {
    KeyIndex& ki = store_.index_[r.key];
    KeyIndex::Found found;
    std::optional<KeyValue> prev;
    if (ki.Get(revision_, &found)) {
      // The previous value is read only if something takes it: the answer's prev_kv, an
      // ignore_value put, or the event (for a watcher asking for prev_kv).
      prev = store_.Fetch(found.modified, false,
                          r.prev_kv || r.ignore_value || store_.prev_values_in_events_);
    }
    KeyValue kv;
    kv.key = r.key;
    if (r.ignore_value && prev.has_value()) {
      kv.value = prev->value;
    } else {
      kv.value = std::move(value);
    }
    kv.lease = r.ignore_lease && prev.has_value() ? prev->lease : r.lease;
    kv.mod_revision = revision_;
    kv.create_revision = prev.has_value() ? prev->create_revision : revision_;
    kv.version = prev.has_value() ? prev->version + 1 : 1;
    const RevisionPair rev{revision_, sub_++};
    RevisionKeyBuffer key;
    store_.backend_->PutValue(Bucket::kKey, EncodeRevisionKey(rev, false, key), EncodeKeyValue(kv));
    ki.Put(rev);
    PutResponse response;
    response.revision = revision_;
    if (r.prev_kv) response.prev_kv = prev;
    store_.events_.push_back(Event{Event::Type::kPut, std::move(kv), std::move(prev)});
    return response;
  }

  DeleteRangeResponse DeleteRange(const DeleteRangeRequest& r) {
    DeleteRangeResponse response;
    response.revision = revision_;
    std::vector<std::string> keys;
    store_.VisitRange(r.key, r.range_end, [&](const std::string& key, const KeyIndex& ki) {
      KeyIndex::Found found;
      if (ki.Get(revision_, &found)) keys.push_back(key);
      return true;
    });
    for (const std::string& key : keys) {
      KeyIndex& ki = store_.index_.at(key);
      KeyIndex::Found found;
      ki.Get(revision_, &found);
      std::optional<KeyValue> prev =
          store_.Fetch(found.modified, false, r.prev_kv || store_.prev_values_in_events_);
      KeyValue tombstone;
      tombstone.key = key;
      tombstone.mod_revision = revision_;
      const RevisionPair rev{revision_, sub_++};
      RevisionKeyBuffer revision_key;
      store_.backend_->PutValue(Bucket::kKey, EncodeRevisionKey(rev, true, revision_key),
                                EncodeKeyValue(tombstone));
      ki.Tombstone(rev);
      ++response.deleted;
      if (r.prev_kv && prev.has_value()) response.prev_kvs.push_back(*prev);
      store_.events_.push_back(Event{Event::Type::kDelete, std::move(tombstone), std::move(prev)});
    }
    return response;
  }

  // Publishes the revision if anything was written.
  void End() {
    if (!wrote()) return;
    store_.current_revision_ = revision_;
    store_.backend_->Put(Bucket::kMeta, kMetaCurrentRevision, Fixed64(revision_));
  }

 private:
  Store& store_;
  Revision revision_;
  int64_t sub_ = 0;
};

absl::StatusOr<std::unique_ptr<Store>> Store::Open(Backend* backend) {
  std::unique_ptr<Store> store(new Store(backend));
  if (auto status = store->Restore(); !status.ok()) return status;
  return store;
}

absl::Status Store::Restore() {
  absl::Status corrupt;
  Revision last_main = 1;
  restored_leases_.clear();
  backend_->Range(Bucket::kKey, "", "", [&](absl::string_view key, absl::string_view value) {
    RevisionPair rev;
    bool tombstone = false;
    RecordView record;
    if (!ParseRevisionKey(key, &rev, &tombstone) || !DecodeRecordView(value, &record)) {
      corrupt = absl::DataLossError(
          absl::StrCat("mvcc: corrupt record in key bucket at key of ", key.size(), " bytes"));
      return false;
    }
    last_main = std::max(last_main, rev.main);
    auto it = index_.find(record.key);
    if (it == index_.end()) {
      it = index_.try_emplace(std::string(record.key)).first;
      if (tombstone) {
        // Compaction at exactly this delete's revision kept it for watches from the compact
        // revision (etcd #19179): index it, so it lives until a later compaction drops it.
        it->second.RestoreTombstone(rev);
      } else {
        it->second.Restore(RevisionPair{static_cast<Revision>(record.create_revision), 0}, rev,
                           static_cast<int64_t>(record.version));
      }
    } else if (tombstone) {
      it->second.Tombstone(rev);
    } else {
      it->second.Put(rev);
    }
    // Records come in revision order: the key's newest one so far decides its lease.
    if (tombstone || record.lease == static_cast<uint64_t>(kNoLease)) {
      if (auto lease = restored_leases_.find(record.key); lease != restored_leases_.end()) {
        restored_leases_.erase(lease);
      }
    } else {
      restored_leases_.insert_or_assign(it->first, static_cast<LeaseId>(record.lease));
    }
    return true;
  });
  if (!corrupt.ok()) return corrupt;
  consistent_index_ = ReadMeta(*backend_, kMetaConsistentIndex);
  compact_revision_ = static_cast<Revision>(ReadMeta(*backend_, kMetaFinishedCompact));
  // The newest revision may have been a tombstone removed by compaction: the revision must
  // still never go backwards (etcd #17780).
  current_revision_ = std::max({last_main, compact_revision_,
                                static_cast<Revision>(ReadMeta(*backend_, kMetaCurrentRevision))});
  const auto scheduled = static_cast<Revision>(ReadMeta(*backend_, kMetaScheduledCompact));
  if (scheduled > compact_revision_) {
    // A compaction was recorded but not finished: finish it.
    auto result = Compact(scheduled);
    if (!result.ok()) return result.status();
  }
  return absl::OkStatus();
}

absl::btree_map<std::string, LeaseId> Store::TakeRestoredLeases() {
  absl::btree_map<std::string, LeaseId> leases;
  leases.swap(restored_leases_);
  return leases;
}

absl::Status Store::Reload() {
  index_.clear();
  events_.clear();
  current_revision_ = 1;
  compact_revision_ = 0;
  consistent_index_ = 0;
  return Restore();
}

std::optional<KeyValue> Store::Fetch(const RevisionPair& rev, bool tombstone,
                                     bool with_value) const {
  // Ranges, puts and compares fetch a record per key: build its key on the stack and decode
  // the record where the backend holds it (a one-record Range), rather than heap-allocate the
  // key and copy the record out with Get only to copy the value again when decoding it.
  RevisionKeyBuffer buffer;
  const absl::string_view key = EncodeRevisionKey(rev, tombstone, buffer);
  std::optional<KeyValue> kv;
  backend_->Range(Bucket::kKey, key, "", [&](absl::string_view found, absl::string_view value) {
    RecordView record;
    if (found != key || !DecodeRecordView(value, &record)) return false;
    // The fields as DecodeKeyValue sets them.
    KeyValue& decoded = kv.emplace();
    decoded.key = std::string(record.key);
    decoded.create_revision = static_cast<Revision>(record.create_revision);
    decoded.mod_revision = static_cast<Revision>(record.mod_revision);
    decoded.version = static_cast<int64_t>(record.version);
    decoded.lease = static_cast<LeaseId>(record.lease);
    if (with_value) decoded.value = std::string(record.value);
    return false;
  });
  return kv;
}

template <typename Visit>
void Store::VisitRange(const std::string& key, const std::string& range_end, Visit visit) const {
  if (range_end.empty()) {
    auto it = index_.find(key);
    if (it != index_.end()) visit(it->first, it->second);
    return;
  }
  const bool to_end = range_end == std::string(1, '\0');
  for (auto it = index_.lower_bound(key); it != index_.end(); ++it) {
    if (!to_end && it->first >= range_end) break;
    if (!visit(it->first, it->second)) break;
  }
}

absl::StatusOr<RangeResponse> Store::Range(const RangeRequest& request) const {
  return RangeAt(request, current_revision_);
}

absl::StatusOr<RangeResponse> Store::RangeAt(const RangeRequest& r, Revision current) const {
  const Revision rev = r.revision <= 0 ? current : r.revision;
  if (rev > current) {
    return Error(ErrorCode::kFutureRevision,
                 absl::StrCat("revision ", rev, " is beyond the current revision ", current));
  }
  if (rev < compact_revision_) {
    CODE_PROBE(mvcc, range_compacted);
    return Error(ErrorCode::kCompacted, absl::StrCat("revision ", rev,
                                                     " is below the compacted "
                                                     "revision ",
                                                     compact_revision_));
  }
  RangeResponse response;
  response.revision = current_revision_;
  // Filters and sorting need every match; otherwise stop one past the limit to learn `more`.
  const bool fetch_all = r.sort_order != SortOrder::kNone || r.sort_target != SortTarget::kKey ||
                         r.min_mod_revision != 0 || r.max_mod_revision != 0 ||
                         r.min_create_revision != 0 || r.max_create_revision != 0;
  const size_t fetch_limit =
      fetch_all || r.limit <= 0 ? SIZE_MAX : static_cast<size_t>(r.limit) + 1;
  absl::Status lost;
  VisitRange(r.key, r.range_end, [&](const std::string& key, const KeyIndex& ki) {
    KeyIndex::Found found;
    if (!ki.Get(rev, &found)) return true;
    ++response.count;
    if (r.count_only || response.kvs.size() >= fetch_limit) return true;
    std::optional<KeyValue> kv = Fetch(found.modified, false);
    if (!kv.has_value()) {
      // The index names a revision the backend does not hold: the backend lost a write the
      // store made. etcd panics ("range cannot find rev"); answering without the key would be
      // a silently short read. The server core stops the member (kDataLoss).
      lost = absl::DataLossError(absl::StrCat("range cannot find rev (", found.modified.main, ",",
                                              found.modified.sub, ") of key \"",
                                              absl::CHexEscape(key), "\" in the backend"));
      return false;
    }
    response.kvs.push_back(std::move(*kv));
    return true;
  });
  if (!lost.ok()) return lost;
  auto drop = [&](auto predicate) {
    response.kvs.erase(std::remove_if(response.kvs.begin(), response.kvs.end(), predicate),
                       response.kvs.end());
  };
  if (r.max_mod_revision != 0)
    drop([&](const KeyValue& kv) { return kv.mod_revision > r.max_mod_revision; });
  if (r.min_mod_revision != 0)
    drop([&](const KeyValue& kv) { return kv.mod_revision < r.min_mod_revision; });
  if (r.max_create_revision != 0) {
    drop([&](const KeyValue& kv) { return kv.create_revision > r.max_create_revision; });
  }
  if (r.min_create_revision != 0) {
    drop([&](const KeyValue& kv) { return kv.create_revision < r.min_create_revision; });
  }
  SortOrder order = r.sort_order;
  // etcd: sorting by a field other than the key without an order means ascending.
  if (order == SortOrder::kNone && r.sort_target != SortTarget::kKey) order = SortOrder::kAscend;
  if (order != SortOrder::kNone) {
    auto less = [&](const KeyValue& a, const KeyValue& b) {
      switch (r.sort_target) {
        case SortTarget::kKey:
          return a.key < b.key;
        case SortTarget::kVersion:
          return a.version < b.version;
        case SortTarget::kCreate:
          return a.create_revision < b.create_revision;
        case SortTarget::kMod:
          return a.mod_revision < b.mod_revision;
        case SortTarget::kValue:
          return a.value < b.value;
      }
      return false;
    };
    // Ties keep key order both ways, as etcd's (stable for small results) sort does.
    if (order == SortOrder::kDescend) {
      std::stable_sort(response.kvs.begin(), response.kvs.end(),
                       [&](const KeyValue& a, const KeyValue& b) { return less(b, a); });
    } else {
      std::stable_sort(response.kvs.begin(), response.kvs.end(), less);
    }
  }
  if (r.limit > 0 && response.kvs.size() > static_cast<size_t>(r.limit)) {
    response.kvs.resize(static_cast<size_t>(r.limit));
    response.more = true;
  }
  if (r.keys_only) {
    for (KeyValue& kv : response.kvs) kv.value.clear();
  }
  return response;
}

absl::StatusOr<PutResponse> Store::Put(const PutRequest& request) {
  return PutImpl(request, request.value);
}

absl::StatusOr<PutResponse> Store::Put(PutRequest&& request) {
  std::string value = std::move(request.value);
  return PutImpl(request, std::move(value));
}

absl::StatusOr<PutResponse> Store::PutImpl(const PutRequest& request, std::string value) {
  if (request.ignore_value || request.ignore_lease) {
    KeyIndex::Found found;
    auto it = index_.find(request.key);
    if (it == index_.end() || !it->second.Get(current_revision_, &found)) {
      return Error(ErrorCode::kKeyNotFound, absl::StrCat("ignore_value/ignore_lease on missing "
                                                         "key \"",
                                                         request.key, "\""));
    }
  }
  WriteTxn txn(*this);
  PutResponse response = txn.Put(request, std::move(value));
  txn.End();
  return response;
}

absl::StatusOr<DeleteRangeResponse> Store::DeleteRange(const DeleteRangeRequest& request) {
  WriteTxn txn(*this);
  DeleteRangeResponse response = txn.DeleteRange(request);
  txn.End();
  response.revision = current_revision_;
  return response;
}

bool Store::Evaluate(const Compare& c) const {
  bool any = false;
  bool all = true;
  VisitRange(c.key, c.range_end, [&](const std::string&, const KeyIndex& ki) {
    KeyIndex::Found found;
    if (!ki.Get(current_revision_, &found)) return true;
    // The record is compared where the backend holds it, as Fetch finds it but without copying
    // its key and value out (a mod-revision compare on a large value copied all of it).
    RevisionKeyBuffer buffer;
    const absl::string_view key = EncodeRevisionKey(found.modified, false, buffer);
    bool present = false;
    bool holds = false;
    backend_->Range(Bucket::kKey, key, "", [&](absl::string_view k, absl::string_view value) {
      RecordView record;
      if (k == key && DecodeRecordView(value, &record)) {
        present = true;
        holds = CompareRecord(c, record);
      }
      return false;
    });
    if (!present) return true;
    any = true;
    if (!holds) {
      all = false;
      return false;
    }
    return true;
  });
  if (any) return all;
  // etcd: a missing key compares as a zero key-value (version 0, revisions 0, lease 0), but a
  // value comparison against a missing key always fails.
  if (c.target == Compare::Target::kValue) return false;
  return CompareKeyValue(c, KeyValue{});
}

namespace {

// Whether CheckIntervals surely accepts `ops`: ranges and puts of distinct keys only (most txns).
// Anything else (a delete, a nested txn, a key put twice) takes the full check.
bool PlainDistinctPuts(const std::vector<RequestOp>& ops) {
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind == RequestOp::Kind::kRange) continue;
    if (ops[i].kind != RequestOp::Kind::kPut) return false;
    for (size_t j = 0; j < i; ++j) {
      if (ops[j].kind == RequestOp::Kind::kPut && ops[j].put.key == ops[i].put.key) return false;
    }
  }
  return true;
}

}  // namespace

absl::Status Store::CheckTxn(const TxnRequest& request, bool branch_success) const {
  // Before writing anything: one key written twice, or ignore_* on a missing key, refuses the
  // whole txn, so no half-applied transaction can exist.
  for (const std::vector<RequestOp>* branch : {&request.success, &request.failure}) {
    if (PlainDistinctPuts(*branch)) continue;  // no sets to build: nothing can collide
    WriteSet writes;
    if (auto s = CheckIntervals(*branch, &writes); !s.ok()) return s;
  }
  std::function<absl::Status(const std::vector<RequestOp>&)> walk =
      [&](const std::vector<RequestOp>& ops) -> absl::Status {
    for (const RequestOp& op : ops) {
      switch (op.kind) {
        case RequestOp::Kind::kPut:
          if (op.put.ignore_value || op.put.ignore_lease) {
            KeyIndex::Found found;
            auto it = index_.find(op.put.key);
            if (it == index_.end() || !it->second.Get(current_revision_, &found)) {
              return Error(
                  ErrorCode::kKeyNotFound,
                  absl::StrCat("ignore_value/ignore_lease on missing key \"", op.put.key, "\""));
            }
          }
          break;
        case RequestOp::Kind::kDeleteRange:
          break;
        case RequestOp::Kind::kTxn: {
          // These checks depend on the data, so only the branch that will run matters; which one
          // is unknown until its compares are evaluated: evaluate now against the pre-txn
          // state, as etcd does.
          bool ok = true;
          for (const Compare& c : op.txn->compare) ok = ok && Evaluate(c);
          if (auto s = walk(ok ? op.txn->success : op.txn->failure); !s.ok()) return s;
          break;
        }
        case RequestOp::Kind::kRange:
          if (op.range.revision > current_revision_) {
            return Error(ErrorCode::kFutureRevision,
                         absl::StrCat("txn range at revision ", op.range.revision,
                                      " beyond the current revision ", current_revision_));
          }
          if (op.range.revision > 0 && op.range.revision < compact_revision_) {
            return Error(ErrorCode::kCompacted,
                         absl::StrCat("txn range at revision ", op.range.revision,
                                      " below the compacted revision ", compact_revision_));
          }
          break;
      }
    }
    return absl::OkStatus();
  };
  return walk(branch_success ? request.success : request.failure);
}

absl::StatusOr<TxnResponse> Store::RunTxn(const TxnRequest& request, WriteTxn& txn,
                                          TxnRequest* movable) {
  TxnResponse response;
  response.succeeded = true;
  for (const Compare& c : request.compare) {
    if (!Evaluate(c)) {
      response.succeeded = false;
      break;
    }
  }
  if (!response.succeeded) CODE_PROBE(mvcc, txn_failure_branch);
  const std::vector<RequestOp>& ops = response.succeeded ? request.success : request.failure;
  std::vector<RequestOp>* movable_ops =
      movable == nullptr ? nullptr : (response.succeeded ? &movable->success : &movable->failure);
  for (size_t i = 0; i < ops.size(); ++i) {
    const RequestOp& op = ops[i];
    ResponseOp out;
    out.kind = op.kind;
    switch (op.kind) {
      case RequestOp::Kind::kRange: {
        // Reads inside a txn see its earlier writes (they are at the txn's revision).
        auto range = RangeAt(op.range, txn.wrote() ? txn.revision() : current_revision_);
        if (!range.ok()) return range.status();
        out.range = std::move(*range);
        break;
      }
      case RequestOp::Kind::kPut:
        out.put = txn.Put(
            op.put, movable_ops != nullptr ? std::move((*movable_ops)[i].put.value) : op.put.value);
        break;
      case RequestOp::Kind::kDeleteRange:
        out.delete_range = txn.DeleteRange(op.delete_range);
        break;
      case RequestOp::Kind::kTxn: {
        auto nested = RunTxn(*op.txn, txn, nullptr);
        if (!nested.ok()) return nested.status();
        out.txn = std::make_shared<TxnResponse>(std::move(*nested));
        break;
      }
    }
    response.responses.push_back(std::move(out));
  }
  return response;
}

absl::StatusOr<TxnResponse> Store::Txn(const TxnRequest& request) {
  return TxnImpl(request, nullptr);
}

absl::StatusOr<TxnResponse> Store::Txn(TxnRequest&& request) { return TxnImpl(request, &request); }

absl::StatusOr<TxnResponse> Store::TxnImpl(const TxnRequest& request, TxnRequest* movable) {
  bool succeeded = true;
  for (const Compare& c : request.compare) succeeded = succeeded && Evaluate(c);
  if (auto status = CheckTxn(request, succeeded); !status.ok()) return status;
  WriteTxn txn(*this);
  auto response = RunTxn(request, txn, movable);
  // CheckTxn refused everything that can fail (ranges outside the history, duplicate writes,
  // ignore_* on missing keys) before the first write: the txn is all-or-nothing.
  txn.End();
  if (!response.ok()) return response.status();
  // Every response of a write txn reports the txn's revision; a read-only txn the current one.
  const Revision revision = current_revision_;
  std::function<void(TxnResponse&)> stamp = [&](TxnResponse& t) {
    t.revision = revision;
    for (ResponseOp& op : t.responses) {
      switch (op.kind) {
        case RequestOp::Kind::kRange:
          op.range.revision = revision;
          break;
        case RequestOp::Kind::kPut:
          op.put.revision = revision;
          break;
        case RequestOp::Kind::kDeleteRange:
          op.delete_range.revision = revision;
          break;
        case RequestOp::Kind::kTxn: {
          auto copy = std::make_shared<TxnResponse>(*op.txn);
          stamp(*copy);
          op.txn = std::move(copy);
          break;
        }
      }
    }
  };
  stamp(*response);
  return response;
}

absl::StatusOr<CompactResponse> Store::Compact(Revision revision) {
  if (revision <= compact_revision_) {
    return Error(ErrorCode::kCompacted,
                 absl::StrCat("revision ", revision, " is already compacted (compacted revision ",
                              compact_revision_, ")"));
  }
  if (revision > current_revision_) {
    return Error(ErrorCode::kFutureRevision,
                 absl::StrCat("cannot compact to revision ", revision,
                              " beyond the current revision ", current_revision_));
  }
  backend_->Put(Bucket::kMeta, kMetaScheduledCompact, Fixed64(revision));
  std::set<RevisionPair> keep;
  for (auto it = index_.begin(); it != index_.end();) {
    if (it->second.Compact(revision, &keep)) {
      ++it;
    } else {
      it = index_.erase(it);
    }
  }
  std::vector<std::string> doomed;
  const std::string end = RevisionKey(RevisionPair{revision + 1, 0}, false);
  backend_->Range(Bucket::kKey, "", end, [&](absl::string_view key, absl::string_view) {
    RevisionPair rev;
    bool tombstone = false;
    if (ParseRevisionKey(key, &rev, &tombstone) && keep.count(rev) == 0) {
      doomed.emplace_back(key);
    }
    return true;
  });
  for (const std::string& key : doomed) backend_->Delete(Bucket::kKey, key);
  compact_revision_ = revision;
  backend_->Put(Bucket::kMeta, kMetaFinishedCompact, Fixed64(revision));
  return CompactResponse{current_revision_};
}

absl::StatusOr<HashResponse> Store::Hash(Revision revision) const {
  const Revision rev = revision <= 0 ? current_revision_ : revision;
  if (rev > current_revision_) {
    return Error(
        ErrorCode::kFutureRevision,
        absl::StrCat("hash at revision ", rev, " beyond the current revision ", current_revision_));
  }
  if (rev < compact_revision_) {
    return Error(ErrorCode::kCompacted,
                 absl::StrCat("hash at revision ", rev, " below the compacted revision ",
                              compact_revision_));
  }
  HashResponse response;
  response.revision = rev;
  response.compact_revision = compact_revision_;
  uint64_t hash = Fnv1a64(Fixed64(static_cast<uint64_t>(compact_revision_)));
  const std::string end = RevisionKey(RevisionPair{rev + 1, 0}, false);
  backend_->Range(Bucket::kKey, "", end, [&](absl::string_view key, absl::string_view value) {
    hash = Fnv1a64(key, hash);
    hash = Fnv1a64(value, hash);
    return true;
  });
  response.hash = hash;
  return response;
}

absl::Status Store::Commit(uint64_t consistent_index) {
  if (consistent_index > consistent_index_) {
    consistent_index_ = consistent_index;
    backend_->Put(Bucket::kMeta, kMetaConsistentIndex, Fixed64(consistent_index));
  }
  return backend_->Commit();
}

std::vector<Event> Store::TakeEvents() {
  std::vector<Event> events;
  events.swap(events_);
  return events;
}

absl::StatusOr<std::vector<Event>> Store::History(Revision start, Revision end,
                                                  const std::string& key,
                                                  const std::string& range_end, bool with_prev_kv,
                                                  size_t limit) const {
  // The compact revision itself is still whole: compaction keeps every record written at it.
  if (start < compact_revision_) {
    return Error(ErrorCode::kCompacted,
                 absl::StrCat("history from revision ", start, " is compacted (compacted revision ",
                              compact_revision_, ")"));
  }
  std::vector<Event> events;
  if (end < start) return events;
  absl::Status corrupt;
  const std::string first = RevisionKey(RevisionPair{start, 0}, false);
  const std::string last = RevisionKey(RevisionPair{end + 1, 0}, false);
  backend_->Range(Bucket::kKey, first, last, [&](absl::string_view k, absl::string_view v) {
    RevisionPair rev;
    bool tombstone = false;
    Event event;
    if (!ParseRevisionKey(k, &rev, &tombstone) || !DecodeKeyValue(v, &event.kv)) {
      corrupt = absl::DataLossError("mvcc: corrupt record in key bucket");
      return false;
    }
    if (!InRange(key, range_end, event.kv.key)) return true;
    event.type = tombstone ? Event::Type::kDelete : Event::Type::kPut;
    if (with_prev_kv && rev.main - 1 >= compact_revision_) {
      RangeRequest previous;
      previous.key = event.kv.key;
      previous.revision = rev.main - 1;
      auto prev = RangeAt(previous, current_revision_);
      if (prev.ok() && !prev->kvs.empty()) event.prev_kv = prev->kvs.front();
    }
    events.push_back(std::move(event));
    return limit == 0 || events.size() < limit;
  });
  if (!corrupt.ok()) return corrupt;
  return events;
}

}  // namespace kvstore::mvcc
