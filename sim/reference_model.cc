#include "sim/reference_model.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/errors.h"
#include "core/lease/lessor.h"
#include "core/server/codec.h"
#include "core/server/requests.pb.h"

namespace kvstore::sim {

namespace {

using mvcc::Compare;
using mvcc::KeyValue;
using mvcc::RequestOp;
using mvcc::Revision;

// A member keeps this many request ids per proposer to skip a proposal the log holds twice
// (server.cc's kDedupWindowPerMember); an id below a full window counts as seen.
constexpr size_t kDedupWindow = 4096;
// Answers kept for requests whose response has not come (most come at once; a proposer that
// crashed never asks).
constexpr size_t kMaxAnswers = 1 << 16;

absl::Status Err(ErrorCode code, absl::string_view what) { return Error(code, what); }

std::string Show(const KeyValue& kv) {
  return absl::StrCat(kv.key, "=", kv.value, " (create ", kv.create_revision, ", mod ",
                      kv.mod_revision, ", version ", kv.version, ", lease ", kv.lease, ")");
}

std::string Show(const std::optional<KeyValue>& kv) {
  return kv.has_value() ? Show(*kv) : std::string("none");
}

std::string Show(const std::vector<KeyValue>& kvs) {
  return absl::StrCat(
      "[",
      absl::StrJoin(kvs, ", ", [](std::string* out, const KeyValue& kv) { out->append(Show(kv)); }),
      "]");
}

std::string Show(const mvcc::Event& event) {
  return absl::StrCat(event.type == mvcc::Event::Type::kPut ? "PUT " : "DELETE ", Show(event.kv));
}

bool CompareKeyValue(const Compare& c, const KeyValue& kv) {
  int result = 0;
  if (c.target == Compare::Target::kValue) {
    result = kv.value.compare(c.value);
  } else {
    int64_t field = 0;
    switch (c.target) {
      case Compare::Target::kVersion:
        field = kv.version;
        break;
      case Compare::Target::kCreate:
        field = kv.create_revision;
        break;
      case Compare::Target::kMod:
        field = kv.mod_revision;
        break;
      case Compare::Target::kLease:
        field = kv.lease;
        break;
      case Compare::Target::kValue:
        break;
    }
    result = field < c.number ? -1 : (field > c.number ? 1 : 0);
  }
  switch (c.result) {
    case Compare::Result::kEqual:
      return result == 0;
    case Compare::Result::kNotEqual:
      return result != 0;
    case Compare::Result::kGreater:
      return result > 0;
    case Compare::Result::kLess:
      return result < 0;
  }
  return false;
}

bool TxnHasWrites(const mvcc::TxnRequest& txn) {
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const RequestOp& op : *branch) {
      if (op.kind == RequestOp::Kind::kPut || op.kind == RequestOp::Kind::kDeleteRange) {
        return true;
      }
      if (op.kind == RequestOp::Kind::kTxn && op.txn != nullptr && TxnHasWrites(*op.txn)) {
        return true;
      }
    }
  }
  return false;
}

bool IsKvWrite(server::RequestType type) {
  switch (type) {
    case server::RequestType::kPut:
    case server::RequestType::kDeleteRange:
    case server::RequestType::kTxn:
    case server::RequestType::kCompact:
    case server::RequestType::kLeaseGrant:
    case server::RequestType::kLeaseRevoke:
      return true;
    default:
      return false;
  }
}

std::optional<std::string> DiffRange(const mvcc::RangeResponse& want,
                                     const mvcc::RangeResponse& got) {
  if (want.kvs != got.kvs)
    return absl::StrCat("kvs ", Show(got.kvs), ", the model's ", Show(want.kvs));
  if (want.count != got.count)
    return absl::StrCat("count ", got.count, ", the model's ", want.count);
  if (want.more != got.more) return absl::StrCat("more ", got.more, ", the model's ", want.more);
  return std::nullopt;
}

std::optional<std::string> DiffDelete(const mvcc::DeleteRangeResponse& want,
                                      const mvcc::DeleteRangeResponse& got) {
  if (want.deleted != got.deleted) {
    return absl::StrCat("deleted ", got.deleted, ", the model's ", want.deleted);
  }
  if (want.prev_kvs != got.prev_kvs) {
    return absl::StrCat("prev_kvs ", Show(got.prev_kvs), ", the model's ", Show(want.prev_kvs));
  }
  return std::nullopt;
}

std::optional<std::string> DiffTxn(const mvcc::TxnResponse& want, const mvcc::TxnResponse& got) {
  if (want.succeeded != got.succeeded) {
    return absl::StrCat("took the ", got.succeeded ? "success" : "failure",
                        " branch, the model's compares say ",
                        want.succeeded ? "success" : "failure");
  }
  if (want.responses.size() != got.responses.size()) {
    return absl::StrCat(got.responses.size(), " op results, the model's ", want.responses.size());
  }
  for (size_t i = 0; i < want.responses.size(); ++i) {
    const mvcc::ResponseOp& w = want.responses[i];
    const mvcc::ResponseOp& g = got.responses[i];
    std::optional<std::string> diff;
    if (w.kind != g.kind) {
      diff = "a result of another kind";
    } else if (w.kind == RequestOp::Kind::kRange) {
      diff = DiffRange(w.range, g.range);
    } else if (w.kind == RequestOp::Kind::kPut) {
      if (w.put.prev_kv != g.put.prev_kv) {
        diff = absl::StrCat("prev_kv ", Show(g.put.prev_kv), ", the model's ", Show(w.put.prev_kv));
      }
    } else if (w.kind == RequestOp::Kind::kDeleteRange) {
      diff = DiffDelete(w.delete_range, g.delete_range);
    }
    if (diff.has_value())
      return absl::StrCat("op ", i, " of the ", want.succeeded ? "success" : "failure",
                          " branch: ", *diff);
  }
  return std::nullopt;
}

// What `got` says differently from `want` (the model's answer), or nullopt.
std::optional<std::string> DiffAnswer(const server::Response& want, const server::Response& got) {
  const ErrorCode want_code = CodeOf(want.status);
  const ErrorCode got_code = CodeOf(got.status);
  if (want_code != got_code) {
    return absl::StrCat("status ", ErrorCodeName(got_code), " (", got.status.message(),
                        "), the model's ", ErrorCodeName(want_code), " (", want.status.message(),
                        ")");
  }
  if (!want.status.ok()) return std::nullopt;
  if (want.type == server::RequestType::kTxn && want.txn.succeeded != got.txn.succeeded) {
    return DiffTxn(want.txn, got.txn);  // the wrong branch, before its revision
  }
  if (want.header.revision != got.header.revision) {
    return absl::StrCat("header revision ", got.header.revision, ", the model's ",
                        want.header.revision);
  }
  switch (want.type) {
    case server::RequestType::kPut:
      if (want.put.prev_kv != got.put.prev_kv) {
        return absl::StrCat("prev_kv ", Show(got.put.prev_kv), ", the model's ",
                            Show(want.put.prev_kv));
      }
      if (want.put.revision != got.put.revision) {
        return absl::StrCat("put revision ", got.put.revision, ", the model's ", want.put.revision);
      }
      return std::nullopt;
    case server::RequestType::kDeleteRange:
      return DiffDelete(want.delete_range, got.delete_range);
    case server::RequestType::kTxn:
      return DiffTxn(want.txn, got.txn);
    case server::RequestType::kLeaseGrant:
    case server::RequestType::kLeaseRevoke:
      if (want.lease.id != got.lease.id) {
        return absl::StrCat("lease ", got.lease.id, ", the model's ", want.lease.id);
      }
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

std::string Describe(const server::Request* request, const server::Response& response) {
  const server::RequestType type = request != nullptr ? request->type : response.type;
  std::string what;
  switch (type) {
    case server::RequestType::kPut:
      what = absl::StrCat("put ", request != nullptr ? request->put.key : "");
      break;
    case server::RequestType::kDeleteRange:
      what = absl::StrCat("delete ", request != nullptr ? request->delete_range.key : "");
      break;
    case server::RequestType::kTxn:
      what = "txn";
      break;
    case server::RequestType::kRange:
      what = absl::StrCat("range ", request != nullptr ? request->range.key : "", " at revision ",
                          request != nullptr ? request->range.revision : 0);
      break;
    case server::RequestType::kCompact:
      what = absl::StrCat("compact to ", request != nullptr ? request->revision : 0);
      break;
    case server::RequestType::kLeaseGrant:
      what = "lease grant";
      break;
    case server::RequestType::kLeaseRevoke:
      what = absl::StrCat("lease revoke ", request != nullptr ? request->lease_id : 0);
      break;
    default:
      what = "request";
      break;
  }
  return absl::StrCat(what, " (request ", response.request_id, ", member n",
                      response.header.member_id, ", revision ", response.header.revision, ")");
}

}  // namespace

void ReferenceModel::GoBlind(std::string why) {
  if (blind_reason_.empty()) blind_reason_ = std::move(why);
}

std::optional<KeyValue> ReferenceModel::Get(const std::string& key, Revision revision) const {
  const KeyValue* kv = Find(key, revision);
  if (kv == nullptr) return std::nullopt;
  return *kv;
}

const KeyValue* ReferenceModel::Find(const std::string& key, Revision revision) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return nullptr;
  const std::vector<Version>& versions = it->second;
  auto v =
      std::upper_bound(versions.begin(), versions.end(), revision,
                       [](Revision r, const Version& version) { return r < version.revision; });
  if (v == versions.begin()) return nullptr;
  --v;
  if (v->tombstone) return nullptr;
  return &v->kv;
}

void ReferenceModel::Apply(uint64_t index, bool conf_change, absl::string_view data) {
  DecodedEntry entry(data);
  Apply(index, conf_change, &entry);
}

void ReferenceModel::Apply(uint64_t index, bool conf_change, DecodedEntry* entry) {
  if (index < next_index_ || blind()) return;
  if (index > next_index_) {
    GoBlind(absl::StrCat("it missed log index ", next_index_, " (the next came at ", index, ")"));
    return;
  }
  ++next_index_;
  ++counts_.entries;
  if (conf_change || entry->data().empty()) return;
  // A malformed entry is skipped by every member (its proposer hears INVALID_ARGUMENT).
  const server::pb::InternalRequest* parsed = entry->Get();
  if (parsed == nullptr) return;
  const server::pb::InternalRequest& internal = *parsed;
  if (internal.id() != 0 && internal.member_id() != 0) {
    // A proposal the log holds twice (a duplicated forward) takes effect once.
    std::set<uint64_t>& seen = applied_ids_[internal.member_id()];
    if (seen.count(internal.id()) > 0) return;
    if (seen.size() >= kDedupWindow && internal.id() < *seen.begin()) return;
    seen.insert(internal.id());
    if (seen.size() > kDedupWindow) seen.erase(seen.begin());
  }
  server::Response answer = ApplyRequest(internal);
  if (blind()) return;
  answer.header.revision = revision_;
  if (internal.id() == 0 || internal.system() || !IsKvWrite(answer.type)) return;
  const std::pair<uint64_t, uint64_t> key{internal.member_id(), internal.id()};
  if (answers_.insert_or_assign(key, std::move(answer)).second) answer_order_.push_back(key);
  while (answers_.size() > kMaxAnswers) {
    answers_.erase(answer_order_.front());
    answer_order_.pop_front();
    ++answers_evicted_;
  }
}

server::Response ReferenceModel::ApplyRequest(const server::pb::InternalRequest& internal) {
  server::Response answer;
  answer.type = server::RequestType::kMemberPublish;  // not a KV request unless set below
  const bool nospace = !nospace_alarms_.empty();
  switch (internal.request_case()) {
    case server::pb::InternalRequest::kPut: {
      answer.type = server::RequestType::kPut;
      const mvcc::PutRequest put = server::FromProto(internal.put());
      if (nospace) {
        answer.status = Err(ErrorCode::kNoSpace, "put: database space exceeded");
      } else if (put.lease != mvcc::kNoLease && leases_.count(put.lease) == 0) {
        answer.status = Err(ErrorCode::kLeaseNotFound, "lease not found");
      } else if ((put.ignore_value || put.ignore_lease) && Find(put.key, revision_) == nullptr) {
        answer.status = Err(ErrorCode::kKeyNotFound, "ignore_value/ignore_lease on a missing key");
      } else {
        const Revision at = revision_ + 1;
        answer.put = Put(put, at);
        EndRevision(at);
      }
      break;
    }
    case server::pb::InternalRequest::kDeleteRange: {
      answer.type = server::RequestType::kDeleteRange;
      const Revision at = revision_ + 1;
      answer.delete_range = Delete(server::FromProto(internal.delete_range()), at);
      EndRevision(at);
      answer.delete_range.revision = revision_;
      break;
    }
    case server::pb::InternalRequest::kTxn: {
      answer.type = server::RequestType::kTxn;
      auto txn = server::FromProto(internal.txn());
      if (!txn.ok()) {
        answer.status = txn.status();
        break;
      }
      answer.status = ApplyTxn(*txn, &answer.txn);
      break;
    }
    case server::pb::InternalRequest::kCompaction: {
      answer.type = server::RequestType::kCompact;
      const Revision target = internal.compaction().revision();
      if (target <= compact_revision_) {
        answer.status = Err(ErrorCode::kCompacted, "revision already compacted");
      } else if (target > revision_) {
        answer.status = Err(ErrorCode::kFutureRevision, "revision beyond the current one");
      } else {
        compact_revision_ = target;
        compactions_.emplace_back(revision_, target);
        answer.compact.revision = target;
      }
      break;
    }
    case server::pb::InternalRequest::kLeaseGrant: {
      answer.type = server::RequestType::kLeaseGrant;
      const mvcc::LeaseId id = internal.lease_grant().id();
      const int64_t ttl = internal.lease_grant().ttl_seconds();
      if (nospace) {
        answer.status = Err(ErrorCode::kNoSpace, "lease grant: database space exceeded");
      } else if (id <= mvcc::kNoLease || ttl <= 0) {
        answer.status = Err(ErrorCode::kInvalidArgument, "lease id or TTL not positive");
      } else if (ttl > lease::kMaxTtlSeconds) {
        answer.status = Err(ErrorCode::kLeaseTtlTooLarge, "lease TTL too large");
      } else if (leases_.count(id) > 0) {
        answer.status = Err(ErrorCode::kLeaseExists, "lease exists");
      } else {
        leases_[id];
        answer.lease.id = id;
      }
      break;
    }
    case server::pb::InternalRequest::kLeaseRevoke: {
      // Revoked by a client or expired (the leader proposes the revocation): every key attached
      // goes in one revision, in key order (etcd sorts them).
      answer.type = server::RequestType::kLeaseRevoke;
      const mvcc::LeaseId id = internal.lease_revoke().id();
      auto it = leases_.find(id);
      if (it == leases_.end()) {
        answer.status = Err(ErrorCode::kLeaseNotFound, "lease not found");
        break;
      }
      const std::set<std::string> keys = std::move(it->second);
      leases_.erase(it);
      const Revision at = revision_ + 1;
      for (const std::string& key : keys) {
        mvcc::DeleteRangeRequest del;
        del.key = key;
        Delete(del, at);
      }
      EndRevision(at);
      answer.lease.id = id;
      break;
    }
    case server::pb::InternalRequest::kAlarm: {
      if (internal.alarm().alarm() != static_cast<int32_t>(server::AlarmType::kNoSpace)) break;
      if (internal.alarm().action() == 1) {
        nospace_alarms_.insert(internal.alarm().member_id());
      } else if (internal.alarm().only_member()) {
        nospace_alarms_.erase(internal.alarm().member_id());  // etcd: that member's alarm only
      } else {
        nospace_alarms_.clear();
      }
      break;
    }
    case server::pb::InternalRequest::kAuth:
      if (static_cast<server::RequestType>(internal.auth().op()) ==
          server::RequestType::kAuthEnable) {
        GoBlind("auth was enabled (the model does not check permissions)");
      }
      break;
    default:
      break;  // member attributes and URLs: no key changes
  }
  return answer;
}

absl::Status ReferenceModel::ApplyTxn(const mvcc::TxnRequest& txn, mvcc::TxnResponse* out) {
  // What the model covers: flat txns whose ranges read the current revision, unsorted, and
  // whose branches write each key once.
  for (const auto* branch : {&txn.success, &txn.failure}) {
    std::set<std::string> put_keys;
    std::vector<const mvcc::DeleteRangeRequest*> deletes;
    for (const RequestOp& op : *branch) {
      if (op.kind == RequestOp::Kind::kTxn) {
        GoBlind("a nested txn");
        return absl::OkStatus();
      }
      if (op.kind == RequestOp::Kind::kRange && (op.range.revision > 0 || !Modelled(op.range))) {
        GoBlind("a txn range at a past revision or with sorting or filters");
        return absl::OkStatus();
      }
      if (op.kind == RequestOp::Kind::kPut && !put_keys.insert(op.put.key).second) {
        GoBlind("a txn that puts one key twice");
        return absl::OkStatus();
      }
      if (op.kind == RequestOp::Kind::kDeleteRange) deletes.push_back(&op.delete_range);
    }
    for (const mvcc::DeleteRangeRequest* del : deletes) {
      for (const std::string& key : put_keys) {
        if (mvcc::InRange(del->key, del->range_end, key)) {
          GoBlind("a txn that puts and deletes one key");
          return absl::OkStatus();
        }
      }
    }
  }
  if (!nospace_alarms_.empty()) {
    for (const auto* branch : {&txn.success, &txn.failure}) {
      for (const RequestOp& op : *branch) {
        if (op.kind == RequestOp::Kind::kPut) {
          return Err(ErrorCode::kNoSpace, "txn: database space exceeded");
        }
      }
    }
  }
  // Every lease a put attaches must exist (both branches: checked before the compares).
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const RequestOp& op : *branch) {
      if (op.kind == RequestOp::Kind::kPut && op.put.lease != mvcc::kNoLease &&
          leases_.count(op.put.lease) == 0) {
        return Err(ErrorCode::kLeaseNotFound, "lease not found");
      }
    }
  }
  out->succeeded = true;
  for (const Compare& c : txn.compare) {
    if (!Holds(c, revision_)) {
      out->succeeded = false;
      break;
    }
  }
  const std::vector<RequestOp>& ops = out->succeeded ? txn.success : txn.failure;
  for (const RequestOp& op : ops) {
    if (op.kind == RequestOp::Kind::kPut && (op.put.ignore_value || op.put.ignore_lease) &&
        Find(op.put.key, revision_) == nullptr) {
      return Err(ErrorCode::kKeyNotFound, "ignore_value/ignore_lease on a missing key");
    }
  }
  const Revision at = revision_ + 1;
  for (const RequestOp& op : ops) {
    mvcc::ResponseOp result;
    result.kind = op.kind;
    switch (op.kind) {
      case RequestOp::Kind::kRange:
        // Reads inside a txn see its earlier writes.
        result.range = RangeAt(op.range, pending_events_.empty() ? revision_ : at);
        break;
      case RequestOp::Kind::kPut:
        result.put = Put(op.put, at);
        break;
      case RequestOp::Kind::kDeleteRange:
        result.delete_range = Delete(op.delete_range, at);
        break;
      case RequestOp::Kind::kTxn:
        break;
    }
    out->responses.push_back(std::move(result));
  }
  EndRevision(at);
  out->revision = revision_;
  for (mvcc::ResponseOp& result : out->responses) {
    result.range.revision = revision_;
    result.put.revision = revision_;
    result.delete_range.revision = revision_;
  }
  return absl::OkStatus();
}

mvcc::PutResponse ReferenceModel::Put(const mvcc::PutRequest& put, Revision at) {
  // The previous version is read in place (a copy of its value only for a prev_kv answer or an
  // ignore_value put), and used before keys_ grows.
  const KeyValue* prev = Find(put.key, at);
  mvcc::PutResponse response;
  response.revision = at;
  if (put.prev_kv && prev != nullptr) response.prev_kv = *prev;
  KeyValue kv;
  kv.key = put.key;
  kv.value = put.ignore_value && prev != nullptr ? prev->value : put.value;
  kv.lease = put.ignore_lease && prev != nullptr ? prev->lease : put.lease;
  kv.mod_revision = at;
  kv.create_revision = prev != nullptr ? prev->create_revision : at;
  kv.version = prev != nullptr ? prev->version + 1 : 1;
  if (prev != nullptr && prev->lease != mvcc::kNoLease && prev->lease != kv.lease) {
    if (auto it = leases_.find(prev->lease); it != leases_.end()) it->second.erase(put.key);
  }
  prev = nullptr;  // keys_ may move it
  if (kv.lease != mvcc::kNoLease) {
    if (auto it = leases_.find(kv.lease); it != leases_.end()) it->second.insert(put.key);
  }
  pending_events_.push_back(mvcc::Event{mvcc::Event::Type::kPut, kv, std::nullopt});
  keys_[put.key].push_back(Version{at, false, std::move(kv)});
  return response;
}

mvcc::DeleteRangeResponse ReferenceModel::Delete(const mvcc::DeleteRangeRequest& del, Revision at) {
  mvcc::DeleteRangeResponse response;
  response.revision = at;
  for (auto it = keys_.lower_bound(del.key);
       it != keys_.end() && mvcc::InRange(del.key, del.range_end, it->first); ++it) {
    std::optional<KeyValue> prev = Get(it->first, at);
    if (!prev.has_value()) continue;
    if (prev->lease != mvcc::kNoLease) {
      if (auto l = leases_.find(prev->lease); l != leases_.end()) l->second.erase(it->first);
    }
    KeyValue tombstone;
    tombstone.key = it->first;
    tombstone.mod_revision = at;
    it->second.push_back(Version{at, true, tombstone});
    ++response.deleted;
    if (del.prev_kv) response.prev_kvs.push_back(*prev);
    pending_events_.push_back(
        mvcc::Event{mvcc::Event::Type::kDelete, std::move(tombstone), std::nullopt});
    if (del.range_end.empty()) break;
  }
  return response;
}

void ReferenceModel::EndRevision(Revision at) {
  if (pending_events_.empty()) return;
  revision_ = at;
  events_.push_back(std::move(pending_events_));
  pending_events_.clear();
  ++counts_.revisions;
}

bool ReferenceModel::Holds(const mvcc::Compare& c, Revision at) const {
  bool any = false;
  for (auto it = keys_.lower_bound(c.key);
       it != keys_.end() && mvcc::InRange(c.key, c.range_end, it->first); ++it) {
    if (const KeyValue* kv = Find(it->first, at); kv != nullptr) {
      any = true;
      if (!CompareKeyValue(c, *kv)) return false;
    }
    if (c.range_end.empty()) break;
  }
  if (any) return true;
  // etcd: a missing key compares as a zero key-value, but a value compare with it always fails.
  if (c.target == Compare::Target::kValue) return false;
  return CompareKeyValue(c, KeyValue{});
}

bool ReferenceModel::Modelled(const mvcc::RangeRequest& r) {
  return (r.sort_order == mvcc::SortOrder::kNone || r.sort_order == mvcc::SortOrder::kAscend) &&
         r.sort_target == mvcc::SortTarget::kKey && r.min_mod_revision == 0 &&
         r.max_mod_revision == 0 && r.min_create_revision == 0 && r.max_create_revision == 0;
}

mvcc::RangeResponse ReferenceModel::RangeAt(const mvcc::RangeRequest& r, Revision at) const {
  mvcc::RangeResponse response;
  response.revision = at;
  for (auto it = keys_.lower_bound(r.key);
       it != keys_.end() && mvcc::InRange(r.key, r.range_end, it->first); ++it) {
    std::optional<KeyValue> kv = Get(it->first, at);
    if (kv.has_value()) {
      ++response.count;
      if (!r.count_only && (r.limit <= 0 || static_cast<int64_t>(response.kvs.size()) < r.limit)) {
        if (r.keys_only) kv->value.clear();
        response.kvs.push_back(std::move(*kv));
      }
    }
    if (r.range_end.empty()) break;
  }
  response.more = !r.count_only && r.limit > 0 && response.count > r.limit;
  return response;
}

std::optional<std::string> ReferenceModel::JudgeRead(const server::Request& request,
                                                     const server::Response& response) {
  const Revision served = response.header.revision;
  const ErrorCode code = CodeOf(response.status);
  if (code != ErrorCode::kOk && code != ErrorCode::kCompacted &&
      code != ErrorCode::kFutureRevision) {
    ++counts_.not_from_store;
    return std::nullopt;
  }
  if (served > revision_) {
    return absl::StrCat("served at revision ", served, " beyond every revision the log made (",
                        revision_, ")");
  }
  if (request.type == server::RequestType::kTxn) {
    const mvcc::TxnRequest& txn = request.txn;
    mvcc::TxnResponse want;
    want.succeeded = true;
    for (const Compare& c : txn.compare) {
      if (!Holds(c, served)) {
        want.succeeded = false;
        break;
      }
    }
    for (const RequestOp& op : want.succeeded ? txn.success : txn.failure) {
      mvcc::ResponseOp result;
      result.kind = op.kind;
      if (op.kind != RequestOp::Kind::kRange || op.range.revision > 0 || !Modelled(op.range)) {
        ++counts_.unjudged;
        return std::nullopt;
      }
      result.range = RangeAt(op.range, served);
      want.responses.push_back(std::move(result));
    }
    if (code != ErrorCode::kOk) {
      return absl::StrCat("status ", ErrorCodeName(code), " (", response.status.message(),
                          ") for a read-only txn at the current revision");
    }
    ++counts_.reads_judged;
    return DiffTxn(want, response.txn);
  }
  const mvcc::RangeRequest& r = request.range;
  if (!Modelled(r)) {
    ++counts_.unjudged;
    return std::nullopt;
  }
  const Revision at = r.revision > 0 ? r.revision : served;
  // Compactions applied before the member reached `served` are certainly in its store; one
  // applied while the model stood at `served` (compactions make no revision) may be or not.
  Revision certain = 0;
  Revision possible = 0;
  for (const auto& [applied_at, target] : compactions_) {
    if (applied_at < served) certain = std::max(certain, target);
    if (applied_at <= served) possible = std::max(possible, target);
  }
  ErrorCode want_code = ErrorCode::kOk;
  bool either = false;
  if (at > served) {
    want_code = ErrorCode::kFutureRevision;
  } else if (at < certain) {
    want_code = ErrorCode::kCompacted;
  } else if (at < possible) {
    either = true;
  }
  ++counts_.reads_judged;
  if (either) {
    ++counts_.compaction_either_way;
    if (code == ErrorCode::kCompacted) return std::nullopt;
  }
  if (code != want_code) {
    return absl::StrCat("status ", ErrorCodeName(code), " (", response.status.message(),
                        "), the model's ", ErrorCodeName(want_code), " (compact revision ", certain,
                        possible != certain ? absl::StrCat(" or ", possible) : "", " at revision ",
                        served, ")");
  }
  if (code != ErrorCode::kOk) return std::nullopt;
  return DiffRange(RangeAt(r, at), response.range);
}

std::optional<std::string> ReferenceModel::Judge(uint64_t member, const server::Request* request,
                                                 const server::Response& response) {
  const server::RequestType type = request != nullptr ? request->type : response.type;
  const bool read =
      type == server::RequestType::kRange ||
      (type == server::RequestType::kTxn && request != nullptr && !TxnHasWrites(request->txn));
  if (!read && !IsKvWrite(type)) return std::nullopt;
  if (blind()) {
    ++counts_.unjudged;
    return std::nullopt;
  }
  std::optional<std::string> diff;
  if (CodeOf(response.status) == ErrorCode::kTimeout) {
    // The member gave up waiting: the request may have applied or may still apply (the log
    // says which, and the model replays it either way).
    ++counts_.unknown_outcomes;
    answers_.erase({member, response.request_id});
    return std::nullopt;
  }
  if (auto it = answers_.find({member, response.request_id}); it != answers_.end()) {
    ++counts_.writes_judged;
    // A write that applied past its member's quota is answered NOSPACE (etcd's quotaApplierV3):
    // the model applied it as the log says; whether the member was past its quota is the quota
    // checker's to judge (ServerRuleCheckers).
    const bool applied_past_quota =
        it->second.status.ok() && CodeOf(response.status) == ErrorCode::kNoSpace &&
        absl::StrContains(response.status.message(), server::kAppliedPastQuota);
    if (!applied_past_quota) diff = DiffAnswer(it->second, response);
    answers_.erase(it);
  } else if (read && request != nullptr) {
    diff = JudgeRead(*request, response);
  } else if (read || (request == nullptr && type == server::RequestType::kTxn)) {
    ++counts_.unjudged;  // a read (or a txn that may be one) whose request is unknown
  } else if (!response.status.ok() || answers_evicted_ > 0) {
    // Refused before the log (no leader, a timeout, validation), or an answer evicted.
    if (response.status.ok()) {
      ++counts_.unjudged;
    } else {
      ++counts_.not_from_store;
    }
  } else {
    diff = "acknowledged, but no entry of the committed log carries it";
  }
  if (!diff.has_value()) return std::nullopt;
  return absl::StrCat(Describe(request, response), ": ", *diff);
}

std::optional<std::string> ReferenceModel::JudgeWatch(Revision revision,
                                                      absl::Span<const mvcc::Event> events) {
  if (blind()) {
    ++counts_.unjudged;
    return std::nullopt;
  }
  if (revision < 2 || revision > revision_) {
    return absl::StrCat("watch events at revision ", revision,
                        ", which no entry of the committed log made (the model is at ", revision_,
                        ")");
  }
  ++counts_.watch_revisions_judged;
  const std::vector<mvcc::Event>& want = events_[static_cast<size_t>(revision - 2)];
  for (size_t i = 0; i < std::max(want.size(), events.size()); ++i) {
    const bool same = i < want.size() && i < events.size() && want[i].type == events[i].type &&
                      want[i].kv == events[i].kv;
    if (same) continue;
    return absl::StrCat("watch event ", i, " of revision ", revision, ": ",
                        i < events.size() ? Show(events[i]) : "none", ", the model's ",
                        i < want.size() ? Show(want[i]) : "none", " (", events.size(),
                        " events, the model's ", want.size(), ")");
  }
  return std::nullopt;
}

std::string ReferenceModel::Summary() const {
  const Counts& c = counts_;
  return absl::StrCat(
      "reference model: replayed ", c.entries, " log entries (", c.revisions,
      " revisions); judged ", c.writes_judged, " write answers, ", c.reads_judged, " reads (",
      c.compaction_either_way, " of them at a revision a member may answer either way), ",
      c.watch_revisions_judged, " watch revisions; not judged: ", c.not_from_store,
      " errors from outside the store, ", c.unknown_outcomes, " unknown outcomes (replayed from ",
      "the log), ", c.unjudged, " answers or events the model could not judge",
      blind() ? absl::StrCat(" (blind: ", blind_reason_, ")") : "");
}

}  // namespace kvstore::sim
