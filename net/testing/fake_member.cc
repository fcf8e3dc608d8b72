#include "net/testing/fake_member.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"

namespace kvstore::net::testing {

FakeMember::FakeMember(raft::NodeId id, uint64_t cluster_id) : id_(id), cluster_id_(cluster_id) {
  members.push_back(server::Member{id, absl::StrCat("m", id), {"http://127.0.0.1:2380"}, false});
}

size_t FakeMember::CallsOf(server::RequestType type) const {
  return std::count(calls.begin(), calls.end(), type);
}

kj::Promise<server::Response> FakeMember::Call(server::Request request) {
  calls.push_back(request.type);
  if (hold_calls) {
    auto paf = kj::newPromiseAndFulfiller<server::Response>();
    held_.push_back(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }
  server::Response response;
  if (!answer_all_with.ok()) {
    response.type = request.type;
    response.status = answer_all_with;
  } else {
    response = Serve(request);
  }
  response.header.member_id = id_;
  response.header.revision = revision_;
  response.header.raft_term = 1;
  return response;
}

server::Response FakeMember::Serve(const server::Request& request) {
  using server::RequestType;
  server::Response r;
  r.type = request.type;
  switch (request.type) {
    case RequestType::kRange:
      r.range = Range(request.range);
      break;
    case RequestType::kPut:
      r.put = Put(request.put);
      break;
    case RequestType::kDeleteRange:
      r.delete_range = Delete(request.delete_range);
      break;
    case RequestType::kTxn:
      r.txn = Txn(request.txn);
      break;
    case RequestType::kCompact:
      r.compact.revision = request.revision;
      break;
    case RequestType::kLeaseGrant: {
      const lease::LeaseId id = request.lease_id != 0 ? request.lease_id : 1000 + leases_.size();
      if (leases_.count(id) > 0) {
        r.status = Error(ErrorCode::kLeaseExists, absl::StrCat("lease ", id, " exists"));
        break;
      }
      leases_[id] = lease::LeaseInfo{id, request.ttl_seconds, request.ttl_seconds, {}};
      r.lease = leases_[id];
      break;
    }
    case RequestType::kLeaseRevoke:
      if (leases_.erase(request.lease_id) == 0) {
        r.status = Error(ErrorCode::kLeaseNotFound, absl::StrCat("lease ", request.lease_id));
      }
      break;
    case RequestType::kLeaseKeepAlive:
    case RequestType::kLeaseTimeToLive: {
      auto it = leases_.find(request.lease_id);
      if (it == leases_.end()) {
        r.status = Error(ErrorCode::kLeaseNotFound, absl::StrCat("lease ", request.lease_id));
        break;
      }
      r.lease = it->second;
      break;
    }
    case RequestType::kLeaseLeases:
      for (const auto& [id, info] : leases_) r.leases.push_back(id);
      break;
    case RequestType::kMemberList:
      r.members = members;
      break;
    case RequestType::kMemberAdd: {
      server::Member m = request.member;
      m.id = 100 + members.size();
      members.push_back(m);
      r.member = m;
      r.members = members;
      break;
    }
    case RequestType::kMemberRemove:
    case RequestType::kMemberPromote: {
      auto it = std::find_if(members.begin(), members.end(),
                             [&](const server::Member& m) { return m.id == request.member.id; });
      if (it == members.end()) {
        r.status = Error(ErrorCode::kMemberNotFound, absl::StrCat("member ", request.member.id));
        break;
      }
      if (request.type == RequestType::kMemberRemove) {
        members.erase(it);
      } else {
        it->is_learner = false;
      }
      r.members = members;
      break;
    }
    case RequestType::kAlarmList:
      r.alarms = alarms_;
      break;
    case RequestType::kAlarmDisarm:
      alarms_.clear();
      break;
    case RequestType::kHash:
      r.hash = {0xabc0000 + static_cast<uint64_t>(revision_), revision_, 1};
      break;
    case RequestType::kDefragment:
      break;
    case RequestType::kMoveLeader:
      if (std::none_of(members.begin(), members.end(),
                       [&](const server::Member& m) { return m.id == request.member.id; })) {
        r.status = Error(ErrorCode::kMemberNotFound, absl::StrCat("member ", request.member.id));
      }
      break;
    default:
      // The fake serves what the client tests use; anything else is refused, never answered
      // with an empty success.
      r.status = Error(ErrorCode::kInvalidArgument,
                       absl::StrCat("fake member: request type ", static_cast<int>(request.type),
                                    " is not served"));
      break;
  }
  return r;
}

mvcc::RangeResponse FakeMember::Range(const mvcc::RangeRequest& request) const {
  mvcc::RangeResponse r;
  r.revision = revision_;
  for (const auto& [key, kv] : kvs_) {
    if (!mvcc::InRange(request.key, request.range_end, key)) continue;
    ++r.count;
    if (request.limit > 0 && static_cast<int64_t>(r.kvs.size()) == request.limit) {
      r.more = true;
      continue;
    }
    if (!request.count_only) r.kvs.push_back(kv);
  }
  return r;
}

mvcc::PutResponse FakeMember::Put(const mvcc::PutRequest& request) {
  mvcc::PutResponse r;
  ++revision_;
  r.revision = revision_;
  mvcc::KeyValue& kv = kvs_[request.key];
  if (request.prev_kv && kv.version > 0) r.prev_kv = kv;
  mvcc::Event event;
  event.prev_kv = kv;
  kv.key = request.key;
  kv.value = request.value;
  kv.lease = request.lease;
  if (kv.version == 0) kv.create_revision = revision_;
  kv.mod_revision = revision_;
  ++kv.version;
  if (request.lease != lease::kNoLease && leases_.count(request.lease) > 0) {
    leases_[request.lease].keys.push_back(request.key);
  }
  event.kv = kv;
  if (event.prev_kv->version == 0) event.prev_kv.reset();
  Notify(event);
  return r;
}

mvcc::DeleteRangeResponse FakeMember::Delete(const mvcc::DeleteRangeRequest& request) {
  mvcc::DeleteRangeResponse r;
  std::vector<std::string> doomed;
  for (const auto& [key, kv] : kvs_) {
    if (mvcc::InRange(request.key, request.range_end, key)) doomed.push_back(key);
  }
  if (doomed.empty()) return r;
  ++revision_;
  r.revision = revision_;
  for (const std::string& key : doomed) {
    if (request.prev_kv) r.prev_kvs.push_back(kvs_[key]);
    mvcc::Event event;
    event.type = mvcc::Event::Type::kDelete;
    event.kv.key = key;
    event.kv.mod_revision = revision_;
    kvs_.erase(key);
    ++r.deleted;
    Notify(event);
  }
  return r;
}

mvcc::TxnResponse FakeMember::Txn(const mvcc::TxnRequest& request) {
  mvcc::TxnResponse r;
  // Only value-equality compares, enough to choose a branch.
  r.succeeded =
      std::all_of(request.compare.begin(), request.compare.end(), [this](const mvcc::Compare& c) {
        auto it = kvs_.find(c.key);
        return it != kvs_.end() && it->second.value == c.value;
      });
  for (const mvcc::RequestOp& op : r.succeeded ? request.success : request.failure) {
    mvcc::ResponseOp out;
    out.kind = op.kind;
    switch (op.kind) {
      case mvcc::RequestOp::Kind::kRange:
        out.range = Range(op.range);
        break;
      case mvcc::RequestOp::Kind::kPut:
        out.put = Put(op.put);
        break;
      case mvcc::RequestOp::Kind::kDeleteRange:
        out.delete_range = Delete(op.delete_range);
        break;
      case mvcc::RequestOp::Kind::kTxn:
        out.txn = std::make_shared<mvcc::TxnResponse>(Txn(*op.txn));
        break;
    }
    r.responses.push_back(std::move(out));
  }
  r.revision = revision_;
  return r;
}

void FakeMember::Notify(const mvcc::Event& event) {
  std::vector<std::pair<mvcc::WatchId, mvcc::WatchResponse>> out;
  for (const auto& [id, watch] : watches_) {
    if (!mvcc::InRange(watch.request.key, watch.request.range_end, event.kv.key)) continue;
    mvcc::WatchResponse response;
    response.watch_id = id;
    response.header_revision = revision_;
    response.events.push_back(event);
    if (!watch.request.prev_kv) response.events.back().prev_kv.reset();
    out.emplace_back(id, std::move(response));
  }
  for (const auto& [id, response] : out) DeliverTo(id, response);
}

void FakeMember::DeliverTo(mvcc::WatchId id, const mvcc::WatchResponse& response) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  WatchSink* sink = it->second.sink;
  if (response.canceled) watches_.erase(it);
  sink->Deliver(response);
}

absl::StatusOr<mvcc::WatchId> FakeMember::Watch(const mvcc::WatchRequest& request,
                                                const WatchCaller& caller, WatchSink* sink) {
  watch_callers.push_back(caller);
  if (!answer_all_with.ok()) return answer_all_with;
  const mvcc::WatchId id = next_watch_id_++;
  watches_[id] = WatchEntry{request, sink};
  mvcc::WatchResponse created;
  created.watch_id = id;
  created.header_revision = revision_;
  created.created = true;
  DeliverTo(id, created);
  return id;
}

absl::Status FakeMember::CancelWatch(mvcc::WatchId id) {
  if (watches_.count(id) == 0) {
    return Error(ErrorCode::kWatchNotFound, absl::StrCat("watch ", id));
  }
  canceled_watches.push_back(id);
  mvcc::WatchResponse notice;
  notice.watch_id = id;
  notice.header_revision = revision_;
  notice.canceled = true;
  DeliverTo(id, notice);
  return absl::OkStatus();
}

void FakeMember::RequestWatchProgress() {
  ++progress_requests;
  std::vector<mvcc::WatchId> ids;
  for (const auto& [id, watch] : watches_) ids.push_back(id);
  for (mvcc::WatchId id : ids) {
    mvcc::WatchResponse progress;
    progress.watch_id = id;
    progress.header_revision = revision_;
    progress.progress = true;
    DeliverTo(id, progress);
  }
}

MemberStatusInfo FakeMember::Status() {
  MemberStatusInfo info;
  info.id = id_;
  info.leader = id_;
  info.term = 1;
  info.commit_index = 10;
  info.applied_index = 9;
  info.db_size_bytes = 4096;
  return info;
}

bool RunUntil(kj::WaitScope& wait_scope, kj::Timer& timer, const std::function<bool()>& done,
              kj::Duration max) {
  const kj::TimePoint deadline = timer.now() + max;
  while (!done() && timer.now() < deadline) timer.afterDelay(1 * kj::MILLISECONDS).wait(wait_scope);
  return done();
}

void RunFor(kj::WaitScope& wait_scope, kj::Timer& timer, kj::Duration duration) {
  timer.afterDelay(duration).wait(wait_scope);
}

SilentListener::SilentListener(kj::Network& network, kj::WaitScope& wait_scope) {
  receiver_ = network.parseAddress("127.0.0.1:0").wait(wait_scope)->listen();
  port_ = receiver_->getPort();
  accepting_ = AcceptLoop().eagerlyEvaluate(nullptr);
}

std::string SilentListener::address() const { return absl::StrCat("127.0.0.1:", port_); }

kj::Promise<void> SilentListener::AcceptLoop() {
  return receiver_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    streams_.push_back(kj::mv(stream));
    return AcceptLoop();
  });
}

std::string ClosedAddress(kj::Network& network, kj::WaitScope& wait_scope) {
  auto receiver = network.parseAddress("127.0.0.1:0").wait(wait_scope)->listen();
  return absl::StrCat("127.0.0.1:", receiver->getPort());
}

}  // namespace kvstore::net::testing
