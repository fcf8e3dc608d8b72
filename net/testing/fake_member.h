#ifndef KVSTORE_NET_TESTING_FAKE_MEMBER_H_
#define KVSTORE_NET_TESTING_FAKE_MEMBER_H_

// What the RPC tests serve: a small in-memory MemberService (puts, ranges, deletes, simple txns,
// leases, members, alarms, watches fed by the puts and deletes) that behaves like the node's
// runtime where net/ can tell (a watch's "created" response arrives before Watch returns, the
// canceled notice during CancelWatch), with knobs for the failures the tests need. Plus helpers
// to run a kj loop until something happens, and a listener that never answers.

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/base/errors.h"
#include "core/lease/lessor.h"
#include "kj/async-io.h"
#include "net/member_service.h"

namespace kvstore::net::testing {

class FakeMember final : public MemberService {
 public:
  explicit FakeMember(raft::NodeId id = 1, uint64_t cluster_id = 42);

  // Knobs.
  absl::Status answer_all_with;  // when not OK, every Call answers this
  bool hold_calls = false;       // Calls never resolve (a member that lost its quorum)
  std::string snapshot_data;
  std::vector<server::Member> members;

  // What happened.
  std::vector<server::RequestType> calls;
  std::vector<raft::Message> stepped;
  // Senders whose messages Step refuses as a removed member's (kMemberRemoved).
  std::set<raft::NodeId> removed_senders;
  std::vector<mvcc::WatchId> canceled_watches;
  std::vector<WatchCaller> watch_callers;  // of every Watch call, in order
  int progress_requests = 0;

  size_t open_watches() const { return watches_.size(); }
  size_t CallsOf(server::RequestType type) const;
  // Sends `response` to watch `id`'s sink, as the runtime does after an apply.
  void DeliverTo(mvcc::WatchId id, const mvcc::WatchResponse& response);

  kj::Promise<server::Response> Call(server::Request request) override;
  absl::StatusOr<mvcc::WatchId> Watch(const mvcc::WatchRequest& request, const WatchCaller& caller,
                                      WatchSink* sink) override;
  absl::Status CancelWatch(mvcc::WatchId id) override;
  void RequestWatchProgress() override;
  MemberStatusInfo Status() override;
  kj::Promise<absl::StatusOr<std::shared_ptr<SnapshotCopy>>> TakeSnapshot() override {
    return absl::StatusOr<std::shared_ptr<SnapshotCopy>>(SnapshotCopy::FromBytes(snapshot_data));
  }
  uint64_t cluster_id() const override { return cluster_id_; }
  absl::Status Step(raft::Message message) override {
    if (removed_senders.count(message.from) > 0) {
      return Error(ErrorCode::kMemberRemoved, "removed");
    }
    stepped.push_back(std::move(message));
    return absl::OkStatus();
  }
  std::vector<server::Member> Members() override { return members; }
  void LearnPeerUrls(raft::NodeId sender, std::vector<std::string> peer_urls) override {
    learned.emplace_back(sender, std::move(peer_urls));
  }
  // Every LearnPeerUrls call, in order.
  std::vector<std::pair<raft::NodeId, std::vector<std::string>>> learned;

 private:
  struct WatchEntry {
    mvcc::WatchRequest request;
    WatchSink* sink;
  };
  server::Response Serve(const server::Request& request);
  mvcc::RangeResponse Range(const mvcc::RangeRequest& request) const;
  mvcc::PutResponse Put(const mvcc::PutRequest& request);
  mvcc::DeleteRangeResponse Delete(const mvcc::DeleteRangeRequest& request);
  mvcc::TxnResponse Txn(const mvcc::TxnRequest& request);
  void Notify(const mvcc::Event& event);

  const raft::NodeId id_;
  const uint64_t cluster_id_;
  mvcc::Revision revision_ = 1;
  std::map<std::string, mvcc::KeyValue> kvs_;
  std::map<lease::LeaseId, lease::LeaseInfo> leases_;
  std::vector<server::Alarm> alarms_;
  std::map<mvcc::WatchId, WatchEntry> watches_;
  mvcc::WatchId next_watch_id_ = 1;
  std::vector<kj::Own<kj::PromiseFulfiller<server::Response>>> held_;
};

// Runs the loop until `done` or `max` passes; returns `done()`.
bool RunUntil(kj::WaitScope& wait_scope, kj::Timer& timer, const std::function<bool()>& done,
              kj::Duration max = 10 * kj::SECONDS);
// Runs the loop for `duration`.
void RunFor(kj::WaitScope& wait_scope, kj::Timer& timer, kj::Duration duration);

// Accepts connections on 127.0.0.1 and never reads or answers: a partitioned member whose
// kernel still completes the handshake.
class SilentListener {
 public:
  SilentListener(kj::Network& network, kj::WaitScope& wait_scope);
  uint port() const { return port_; }
  std::string address() const;
  size_t accepted() const { return streams_.size(); }

 private:
  kj::Promise<void> AcceptLoop();

  kj::Own<kj::ConnectionReceiver> receiver_;
  uint port_ = 0;
  std::vector<kj::Own<kj::AsyncIoStream>> streams_;
  kj::Promise<void> accepting_ = nullptr;
};

// A loopback address with nothing listening on it (a member that is down).
std::string ClosedAddress(kj::Network& network, kj::WaitScope& wait_scope);

}  // namespace kvstore::net::testing

#endif  // KVSTORE_NET_TESTING_FAKE_MEMBER_H_
