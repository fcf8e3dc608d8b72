#include "net/concurrency/mutex.h"

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/server/server.h"
#include "net/concurrency/queue.h"

namespace kvstore::net::concurrency {

namespace {

mvcc::RequestOp RangeOp(mvcc::RangeRequest range) {
  mvcc::RequestOp op;
  op.kind = mvcc::RequestOp::Kind::kRange;
  op.range = std::move(range);
  return op;
}

}  // namespace

Mutex::Mutex(Session& session, std::string prefix)
    : session_(session), context_(session.context()), prefix_(std::move(prefix) + "/") {}

mvcc::Compare Mutex::IsOwner() const {
  mvcc::Compare owner;
  owner.key = key_;
  owner.target = mvcc::Compare::Target::kCreate;
  owner.result = mvcc::Compare::Result::kEqual;
  owner.number = token_;
  return owner;
}

absl::StatusOr<bool> Mutex::TryAcquire() {
  key_ = absl::StrFormat("%s%x", prefix_, static_cast<uint64_t>(session_.lease()));
  server::Request txn;
  txn.type = server::RequestType::kTxn;
  mvcc::Compare absent;
  absent.key = key_;
  absent.target = mvcc::Compare::Target::kCreate;
  absent.result = mvcc::Compare::Result::kEqual;
  absent.number = 0;
  txn.txn.compare.push_back(absent);
  mvcc::RequestOp put;
  put.kind = mvcc::RequestOp::Kind::kPut;
  put.put.key = key_;
  put.put.lease = session_.lease();
  // The queue's head, so the uncontended path costs one request.
  mvcc::RangeRequest head = FirstCreated(prefix_);
  mvcc::RangeRequest mine;
  mine.key = key_;
  txn.txn.success = {put, RangeOp(head)};
  // The key exists: this session already queued (a retried Lock); reuse it.
  txn.txn.failure = {RangeOp(mine), RangeOp(head)};
  absl::StatusOr<server::Response> response = context_.Call(txn);
  if (!response.ok()) return response.status();
  const std::vector<mvcc::ResponseOp>& ops = response->txn.responses;
  if (ops.size() != 2) {
    return absl::InternalError(absl::StrFormat("lock txn answered %d ops, want 2", ops.size()));
  }
  if (response->txn.succeeded) {
    token_ = response->header.revision;
  } else {
    if (ops[0].range.kvs.empty()) {
      return absl::InternalError("the lock key existed for the txn but its range is empty");
    }
    token_ = ops[0].range.kvs[0].create_revision;
  }
  const std::vector<mvcc::KeyValue>& first = ops[1].range.kvs;
  return first.empty() || first[0].create_revision == token_;
}

absl::Status Mutex::Lock(kj::Maybe<kj::Promise<void>> cancel) {
  if (session_.lost()) return absl::AbortedError("mutex: the session is lost");
  absl::StatusOr<bool> first = TryAcquire();
  if (!first.ok()) return first.status();
  if (*first) return absl::OkStatus();

  kj::Promise<void> stop_promise = session_.Done();
  KJ_IF_MAYBE (c, cancel) {
    stop_promise = stop_promise.exclusiveJoin(kj::mv(*c));
  }
  kj::ForkedPromise<void> stop = stop_promise.fork();
  absl::StatusOr<bool> waited = WaitDeletes(context_, prefix_, token_ - 1, stop);
  if (!waited.ok() || !*waited) {
    Unlock().IgnoreError();
    if (!waited.ok()) return waited.status();
    return session_.lost() ? absl::AbortedError("mutex: the session was lost while waiting")
                           : absl::CancelledError("mutex: Lock canceled while waiting");
  }
  // Our predecessors are gone; make sure our own key was not (an expired session).
  server::Request mine;
  mine.type = server::RequestType::kRange;
  mine.range.key = key_;
  absl::StatusOr<server::Response> response = context_.Call(mine);
  if (!response.ok()) {
    Unlock().IgnoreError();
    return response.status();
  }
  if (response->range.kvs.empty() || response->range.kvs[0].create_revision != token_) {
    return absl::AbortedError("mutex: the session expired, its lock key is gone");
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Mutex::TryLock() {
  if (session_.lost()) return absl::AbortedError("mutex: the session is lost");
  absl::StatusOr<bool> first = TryAcquire();
  if (!first.ok()) return first.status();
  if (*first) return true;
  absl::Status unlocked = Unlock();
  if (!unlocked.ok()) return unlocked;
  return false;
}

absl::Status Mutex::Unlock() {
  if (key_.empty()) return absl::FailedPreconditionError("mutex: not locked");
  server::Request del;
  del.type = server::RequestType::kDeleteRange;
  del.delete_range.key = key_;
  absl::StatusOr<server::Response> response = context_.Call(del);
  if (!response.ok()) return response.status();
  key_.clear();
  token_ = 0;
  return absl::OkStatus();
}

}  // namespace kvstore::net::concurrency
