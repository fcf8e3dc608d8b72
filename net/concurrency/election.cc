#include "net/concurrency/election.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/server/server.h"
#include "net/concurrency/queue.h"

namespace kvstore::net::concurrency {

namespace {

mvcc::Compare CreatedAt(const std::string& key, mvcc::Revision revision) {
  mvcc::Compare compare;
  compare.key = key;
  compare.target = mvcc::Compare::Target::kCreate;
  compare.result = mvcc::Compare::Result::kEqual;
  compare.number = revision;
  return compare;
}

}  // namespace

Election::Election(Session& session, std::string prefix)
    : session_(&session), context_(session.context()), prefix_(std::move(prefix) + "/") {}

Election::Election(ClientContext context, std::string prefix)
    : session_(nullptr), context_(context), prefix_(std::move(prefix) + "/") {}

Election Election::Resume(Session& session, std::string prefix, std::string leader_key,
                          mvcc::Revision leader_revision) {
  Election election(session, std::move(prefix));
  election.leader_key_ = std::move(leader_key);
  election.leader_revision_ = leader_revision;
  return election;
}

mvcc::Compare Election::IsLeader() const { return CreatedAt(leader_key_, leader_revision_); }

absl::Status Election::Campaign(const std::string& value, kj::Maybe<kj::Promise<void>> cancel) {
  if (session_ == nullptr) {
    return absl::FailedPreconditionError("election: an observer has no session to campaign with");
  }
  if (session_->lost()) return absl::AbortedError("election: the session is lost");
  const std::string key =
      absl::StrFormat("%s%x", prefix_, static_cast<uint64_t>(session_->lease()));
  server::Request txn;
  txn.type = server::RequestType::kTxn;
  txn.txn.compare.push_back(CreatedAt(key, 0));
  mvcc::RequestOp put;
  put.kind = mvcc::RequestOp::Kind::kPut;
  put.put.key = key;
  put.put.value = value;
  put.put.lease = session_->lease();
  txn.txn.success.push_back(put);
  mvcc::RequestOp get;
  get.kind = mvcc::RequestOp::Kind::kRange;
  get.range.key = key;
  txn.txn.failure.push_back(get);
  absl::StatusOr<server::Response> response = context_.Call(txn);
  if (!response.ok()) return response.status();
  leader_key_ = key;
  leader_revision_ = response->header.revision;
  if (!response->txn.succeeded) {
    // This session campaigned before (a retry, another Election on it): its key stands in the
    // queue where it was; only the value may change.
    const std::vector<mvcc::ResponseOp>& ops = response->txn.responses;
    if (ops.empty() || ops[0].range.kvs.empty()) {
      leader_key_.clear();
      leader_revision_ = 0;
      return absl::InternalError("the candidate's key existed for the txn but its range is empty");
    }
    leader_revision_ = ops[0].range.kvs[0].create_revision;
    if (ops[0].range.kvs[0].value != value) {
      if (absl::Status proclaimed = Proclaim(value); !proclaimed.ok()) {
        Resign().IgnoreError();
        return proclaimed;
      }
    }
  }

  kj::Promise<void> stop_promise = session_->Done();
  KJ_IF_MAYBE (c, cancel) {
    stop_promise = stop_promise.exclusiveJoin(kj::mv(*c));
  }
  kj::ForkedPromise<void> stop = stop_promise.fork();
  absl::StatusOr<bool> first = WaitDeletes(context_, prefix_, leader_revision_ - 1, stop);
  if (!first.ok() || !*first) {
    Resign().IgnoreError();
    if (!first.ok()) return first.status();
    return session_->lost() ? absl::AbortedError("election: the session was lost while waiting")
                            : absl::CancelledError("election: Campaign canceled while waiting");
  }
  // Every earlier candidate is gone; make sure our own key was not (an expired session).
  server::Request mine;
  mine.type = server::RequestType::kRange;
  mine.range.key = leader_key_;
  absl::StatusOr<server::Response> read = context_.Call(mine);
  if (!read.ok()) {
    Resign().IgnoreError();
    return read.status();
  }
  if (read->range.kvs.empty() || read->range.kvs[0].create_revision != leader_revision_) {
    leader_key_.clear();
    leader_revision_ = 0;
    return absl::AbortedError("election: the session expired, its key is gone");
  }
  header_revision_ = read->header.revision;
  return absl::OkStatus();
}

absl::Status Election::Proclaim(const std::string& value) {
  if (session_ == nullptr || leader_key_.empty()) {
    return absl::FailedPreconditionError(kElectionNotLeader);
  }
  server::Request txn;
  txn.type = server::RequestType::kTxn;
  txn.txn.compare.push_back(IsLeader());
  mvcc::RequestOp put;
  put.kind = mvcc::RequestOp::Kind::kPut;
  put.put.key = leader_key_;
  put.put.value = value;
  put.put.lease = session_->lease();
  txn.txn.success.push_back(put);
  absl::StatusOr<server::Response> response = context_.Call(txn);
  if (!response.ok()) return response.status();
  if (!response->txn.succeeded) {
    leader_key_.clear();
    leader_revision_ = 0;
    return absl::FailedPreconditionError(kElectionNotLeader);
  }
  header_revision_ = response->header.revision;
  return absl::OkStatus();
}

absl::Status Election::Resign() {
  if (leader_key_.empty()) return absl::OkStatus();
  server::Request txn;
  txn.type = server::RequestType::kTxn;
  txn.txn.compare.push_back(IsLeader());
  mvcc::RequestOp del;
  del.kind = mvcc::RequestOp::Kind::kDeleteRange;
  del.delete_range.key = leader_key_;
  txn.txn.success.push_back(del);
  absl::StatusOr<server::Response> response = context_.Call(txn);
  leader_key_.clear();
  leader_revision_ = 0;
  if (!response.ok()) return response.status();
  header_revision_ = response->header.revision;
  return absl::OkStatus();
}

absl::StatusOr<LeaderValue> Election::Leader() {
  server::Request first;
  first.type = server::RequestType::kRange;
  first.range = FirstCreated(prefix_);
  absl::StatusOr<server::Response> response = context_.Call(first);
  if (!response.ok()) return response.status();
  if (response->range.kvs.empty()) return absl::NotFoundError(kElectionNoLeader);
  return LeaderValue{response->range.kvs[0], response->header.revision};
}

namespace {

// How one watch of Observe ended.
enum class WatchEnd { kLeaderGone, kAgain, kDone };

}  // namespace

absl::Status Election::Observe(const std::function<bool(const LeaderValue&)>& on_leader,
                               kj::Maybe<kj::Promise<void>> stop) {
  kj::ForkedPromise<void> stopped = kj::Promise<void>(kj::NEVER_DONE).fork();
  KJ_IF_MAYBE (s, stop) {
    stopped = s->fork();
  }
  // What was delivered last: a re-read after a broken watch does not deliver it again.
  std::string last_key;
  mvcc::Revision last_mod_revision = 0;
  bool done = false;
  auto deliver = [&](const LeaderValue& leader) {
    if (leader.kv.key == last_key && leader.kv.mod_revision == last_mod_revision) return;
    last_key = leader.kv.key;
    last_mod_revision = leader.kv.mod_revision;
    if (!on_leader(leader)) done = true;
  };
  // Watches from `request.start_revision` until `on_response` (called on the loop) settles it.
  auto watch_until =
      [&](mvcc::WatchRequest request,
          std::function<void(const mvcc::WatchResponse&, kj::PromiseFulfiller<WatchEnd>&)>
              on_response) -> absl::StatusOr<WatchEnd> {
    auto ended = kj::newPromiseAndFulfiller<WatchEnd>();
    kj::PromiseFulfiller<WatchEnd>* fulfiller = ended.fulfiller.get();
    absl::StatusOr<std::unique_ptr<Client::Watch>> opened =
        context_.client
            .WatchAsync(
                request,
                [fulfiller, &on_response](const mvcc::WatchResponse& response) {
                  if (!fulfiller->isWaiting()) return;
                  on_response(response, *fulfiller);
                  // A watch that ended (a broken connection, a compaction): read again.
                  if (fulfiller->isWaiting() && response.canceled) {
                    fulfiller->fulfill(WatchEnd::kAgain);
                  }
                },
                context_.token)
            .wait(context_.wait_scope);
    if (!opened.ok()) return opened.status();
    const WatchEnd end =
        ended.promise.exclusiveJoin(stopped.addBranch().then([] { return WatchEnd::kDone; }))
            .wait(context_.wait_scope);
    (*opened)->Cancel().wait(context_.wait_scope).IgnoreError();
    return end;
  };

  while (true) {
    server::Request read;
    read.type = server::RequestType::kRange;
    read.range = FirstCreated(prefix_);
    absl::StatusOr<server::Response> now = context_.Call(read);
    if (!now.ok()) return now.status();
    std::optional<LeaderValue> leader;
    if (!now->range.kvs.empty()) {
      leader = LeaderValue{now->range.kvs[0], now->header.revision};
    } else {
      // No candidate: wait for the first put under the prefix (deletes would only spin).
      mvcc::WatchRequest request;
      request.key = prefix_;
      request.range_end = mvcc::PrefixEnd(prefix_);
      request.start_revision = now->header.revision;
      absl::StatusOr<WatchEnd> end = watch_until(
          request, [&](const mvcc::WatchResponse& response, kj::PromiseFulfiller<WatchEnd>& f) {
            for (const mvcc::Event& event : response.events) {
              if (event.type != mvcc::Event::Type::kPut) continue;
              // The revision of this put, not the batch's last one.
              leader = LeaderValue{event.kv, event.kv.mod_revision};
              f.fulfill(WatchEnd::kLeaderGone);
              return;
            }
          });
      if (!end.ok()) return end.status();
      if (*end == WatchEnd::kDone) return absl::OkStatus();
      if (!leader.has_value()) continue;
    }
    deliver(*leader);
    if (done) return absl::OkStatus();
    // Every put to the leader's key (a proclamation) until it is deleted.
    mvcc::WatchRequest request;
    request.key = leader->kv.key;
    request.start_revision = leader->header_revision + 1;
    absl::StatusOr<WatchEnd> end = watch_until(
        request, [&](const mvcc::WatchResponse& response, kj::PromiseFulfiller<WatchEnd>& f) {
          for (const mvcc::Event& event : response.events) {
            if (event.type == mvcc::Event::Type::kDelete) {
              f.fulfill(WatchEnd::kLeaderGone);
              return;
            }
            deliver(LeaderValue{event.kv, response.header_revision});
            if (done) {
              f.fulfill(WatchEnd::kDone);
              return;
            }
          }
        });
    if (!end.ok()) return end.status();
    if (*end == WatchEnd::kDone) return absl::OkStatus();
  }
}

}  // namespace kvstore::net::concurrency
