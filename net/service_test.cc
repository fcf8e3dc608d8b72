// The member's services over real Cap'n Proto connections (a socketpair, or loopback TCP where
// the code under test dials): every client method against a fake member, watches (order,
// cancel, release, a slow watcher canceled at its queue limit), snapshot streaming with its
// CRC, the receive limit, and the peer transport (batching, cluster id, unreachable peers, a
// bounded queue, snapshots in chunks, joining).

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "capnp/serialize-async.h"
#include "capnp/serialize.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"
#include "net/client_service.h"
#include "net/connection.h"
#include "net/convert.h"
#include "net/peer_service.h"
#include "net/testing/fake_member.h"
#include "net/testing/raft_frames.h"
#include "store/crc32c.h"

namespace kvstore::net {
namespace {

using testing::FakeMember;
using testing::RaftBatchFrame;
using testing::RaftBatchFrameFrom;
using testing::RunFor;
using testing::RunUntil;

std::string Pattern(size_t bytes) {
  std::string data(bytes, '\0');
  uint32_t x = 12345;
  for (char& c : data) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 24);
  }
  return data;
}

// --- Client services ----------------------------------------------------------------------------

struct WatcherLog {
  std::vector<mvcc::WatchResponse> responses;
  bool hold = false;  // deliveries do not return until Release
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> held;

  void Release() {
    hold = false;
    for (auto& fulfiller : held) fulfiller->fulfill();
    held.clear();
  }
};

class TestWatcher final : public rpc::Watcher::Server {
 public:
  explicit TestWatcher(WatcherLog& log) : log_(log) {}

  kj::Promise<void> deliver(DeliverContext context) override {
    absl::StatusOr<mvcc::WatchResponse> response = FromCapnp(context.getParams().getResponse());
    EXPECT_TRUE(response.ok()) << response.status();
    log_.responses.push_back(*response);
    if (!log_.hold) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    log_.held.push_back(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }

 private:
  WatcherLog& log_;
};

class ClientServiceTest : public ::testing::Test {
 protected:
  ~ClientServiceTest() noexcept override {}

  void Connect() {
    if (server_ == nullptr) server_ = std::make_unique<ClientServer>(member_, options_);
    auto pipe = io_.provider->newTwoWayPipe();
    server_->Accept(kj::mv(pipe.ends[0]));
    connection_ = std::make_unique<RpcConnection>(kj::mv(pipe.ends[1]), ResponseReaderOptions());
    endpoint_ = connection_->Bootstrap<rpc::Endpoint>();
  }

  template <typename Params, typename Results>
  server::Response Call(capnp::Request<Params, Results> request, const server::Request& in) {
    FillParams(in, request);
    return Send(kj::mv(request));
  }
  template <typename Params, typename Results>
  server::Response Send(capnp::Request<Params, Results> request) {
    absl::StatusOr<server::Response> out = ToResponse(request.send().wait(ws_));
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : server::Response();
  }

  rpc::Kv::Client Kv() { return endpoint_.kvRequest().send().getKv(); }
  rpc::Lease::Client Lease() { return endpoint_.leaseRequest().send().getLease(); }
  rpc::Cluster::Client Cluster() { return endpoint_.clusterRequest().send().getCluster(); }
  rpc::Maintenance::Client Maintenance() {
    return endpoint_.maintenanceRequest().send().getMaintenance();
  }

  server::Response Put(const std::string& key, const std::string& value,
                       lease::LeaseId lease = lease::kNoLease) {
    server::Request put;
    put.type = server::RequestType::kPut;
    put.put.key = key;
    put.put.value = value;
    put.put.lease = lease;
    put.put.prev_kv = true;
    return Call(Kv().putRequest(), put);
  }

  // Opens a watch on `key` whose responses go to `log`; the watch id is the created response's.
  rpc::WatchHandle::Client StartWatch(const std::string& key, WatcherLog& log,
                                      bool progress_notify = false, const std::string& token = "") {
    auto call = endpoint_.watchRequest().send().getWatch().watchRequest();
    mvcc::WatchRequest request;
    request.key = key;
    ToCapnp(request, call.initRequest());
    call.setToken(token);
    call.getRequest().setProgressNotify(progress_notify);
    call.setWatcher(kj::heap<TestWatcher>(log));
    auto results = call.send().wait(ws_);
    last_watch_status_ = StatusFromCapnp(results.getStatus());
    return results.getHandle();
  }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  kj::WaitScope& ws_ = io_.waitScope;
  kj::Timer& timer_ = io_.provider->getTimer();
  FakeMember member_;
  ClientServiceOptions options_;
  std::unique_ptr<ClientServer> server_;
  std::unique_ptr<RpcConnection> connection_;
  rpc::Endpoint::Client endpoint_ = nullptr;
  absl::Status last_watch_status_;
};

TEST_F(ClientServiceTest, KvMethodsReachTheMemberAndAnswer) {
  Connect();
  server::Response put = Put("a", "1");
  EXPECT_TRUE(put.status.ok()) << put.status;
  EXPECT_EQ(put.header.member_id, 1u);
  EXPECT_EQ(put.put.revision, 2);
  EXPECT_FALSE(put.put.prev_kv.has_value());
  put = Put("a", "2");
  ASSERT_TRUE(put.put.prev_kv.has_value());
  EXPECT_EQ(put.put.prev_kv->value, "1");

  server::Request range;
  range.type = server::RequestType::kRange;
  range.range.key = "a";
  server::Response got = Call(Kv().rangeRequest(), range);
  ASSERT_EQ(got.range.kvs.size(), 1u);
  EXPECT_EQ(got.range.kvs[0].value, "2");
  EXPECT_EQ(got.range.kvs[0].version, 2);
  EXPECT_EQ(got.range.revision, 3);

  server::Request txn;
  txn.type = server::RequestType::kTxn;
  mvcc::Compare compare;
  compare.key = "a";
  compare.value = "2";
  txn.txn.compare = {compare};
  mvcc::RequestOp op;
  op.kind = mvcc::RequestOp::Kind::kPut;
  op.put.key = "b";
  op.put.value = "x";
  txn.txn.success = {op};
  got = Call(Kv().txnRequest(), txn);
  EXPECT_TRUE(got.txn.succeeded);
  ASSERT_EQ(got.txn.responses.size(), 1u);
  EXPECT_EQ(got.txn.responses[0].kind, mvcc::RequestOp::Kind::kPut);

  server::Request del;
  del.type = server::RequestType::kDeleteRange;
  del.delete_range.key = "a";
  del.delete_range.range_end = std::string(1, '\0');
  del.delete_range.prev_kv = true;
  got = Call(Kv().deleteRangeRequest(), del);
  EXPECT_EQ(got.delete_range.deleted, 2);
  EXPECT_EQ(got.delete_range.prev_kvs.size(), 2u);

  server::Request compact;
  compact.type = server::RequestType::kCompact;
  compact.revision = 3;
  got = Call(Kv().compactRequest(), compact);
  EXPECT_TRUE(got.status.ok()) << got.status;
  EXPECT_EQ(member_.calls.size(), 6u);
}

TEST_F(ClientServiceTest, AMalformedRequestIsAnsweredWithoutReachingTheMember) {
  Connect();
  auto request = Kv().rangeRequest();
  request.initRequest().setSortOrder(9);
  server::Response got = Send(kj::mv(request));
  EXPECT_EQ(CodeOf(got.status), ErrorCode::kInvalidArgument);
  EXPECT_NE(got.status.message().find("sort order 9"), std::string::npos) << got.status;
  EXPECT_TRUE(member_.calls.empty());
}

TEST_F(ClientServiceTest, LeaseMethods) {
  Connect();
  server::Request grant;
  grant.type = server::RequestType::kLeaseGrant;
  grant.lease_id = 7;
  grant.ttl_seconds = 60;
  server::Response got = Call(Lease().grantRequest(), grant);
  EXPECT_EQ(got.lease.id, 7);
  EXPECT_EQ(got.lease.granted_ttl_seconds, 60);
  Put("k", "v", 7);

  auto ttl = Lease().timeToLiveRequest();
  ttl.setId(7);
  ttl.setKeys(false);
  got = Send(kj::mv(ttl));
  EXPECT_EQ(got.lease.remaining_ttl_seconds, 60);
  EXPECT_TRUE(got.lease.keys.empty());
  ttl = Lease().timeToLiveRequest();
  ttl.setId(7);
  ttl.setKeys(true);
  got = Send(kj::mv(ttl));
  EXPECT_EQ(got.lease.keys, std::vector<std::string>{"k"});

  got = Send(Lease().leasesRequest());
  EXPECT_EQ(got.leases, std::vector<lease::LeaseId>{7});

  auto open = Lease().keepAliveRequest();
  open.setId(7);
  auto opened = open.send().wait(ws_);
  EXPECT_TRUE(StatusFromCapnp(opened.getStatus()).ok());
  rpc::KeepAlive::Client stream = opened.getStream();
  for (int i = 0; i < 2; ++i) {
    auto renewed = stream.keepAliveRequest().send().wait(ws_);
    EXPECT_TRUE(StatusFromCapnp(renewed.getStatus()).ok());
    EXPECT_EQ(renewed.getTtlSeconds(), 60);
  }

  server::Request revoke;
  revoke.type = server::RequestType::kLeaseRevoke;
  revoke.lease_id = 7;
  EXPECT_TRUE(Call(Lease().revokeRequest(), revoke).status.ok());
  auto gone = stream.keepAliveRequest().send().wait(ws_);
  EXPECT_EQ(CodeOf(StatusFromCapnp(gone.getStatus())), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(gone.getTtlSeconds(), 0);

  auto zero = Lease().keepAliveRequest();
  zero.setId(0);
  EXPECT_EQ(CodeOf(StatusFromCapnp(zero.send().wait(ws_).getStatus())),
            ErrorCode::kInvalidArgument);
}

TEST_F(ClientServiceTest, ClusterMethods) {
  Connect();
  server::Response got = Send(Cluster().memberListRequest());
  ASSERT_EQ(got.members.size(), 1u);
  EXPECT_EQ(got.members[0].id, 1u);

  server::Request add;
  add.type = server::RequestType::kMemberAdd;
  add.member.peer_urls = {"http://127.0.0.1:3380"};
  add.member.is_learner = true;
  got = Call(Cluster().memberAddRequest(), add);
  EXPECT_TRUE(got.member.is_learner);
  EXPECT_EQ(got.member.peer_urls, add.member.peer_urls);
  EXPECT_EQ(got.members.size(), 2u);
  const raft::NodeId added = got.member.id;

  server::Request promote;
  promote.type = server::RequestType::kMemberPromote;
  promote.member.id = added;
  got = Call(Cluster().memberPromoteRequest(), promote);
  EXPECT_FALSE(got.members.back().is_learner);

  server::Request remove;
  remove.type = server::RequestType::kMemberRemove;
  remove.member.id = added;
  EXPECT_EQ(Call(Cluster().memberRemoveRequest(), remove).members.size(), 1u);
  EXPECT_EQ(CodeOf(Call(Cluster().memberRemoveRequest(), remove).status),
            ErrorCode::kMemberNotFound);
}

TEST_F(ClientServiceTest, MaintenanceMethods) {
  Connect();
  auto status = ToMemberStatus(Maintenance().statusRequest().send().wait(ws_));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->version, kServerVersion);
  EXPECT_EQ(status->member.id, 1u);
  EXPECT_EQ(status->member.leader, 1u);
  EXPECT_EQ(status->member.commit_index, 10u);
  EXPECT_EQ(status->member.db_size_bytes, 4096u);

  server::Request hash;
  hash.type = server::RequestType::kHash;
  EXPECT_EQ(Call(Maintenance().hashRequest(), hash).hash.hash, 0xabc0001u);
  EXPECT_TRUE(Send(Maintenance().defragmentRequest()).status.ok());
  EXPECT_TRUE(Send(Maintenance().alarmListRequest()).alarms.empty());
  EXPECT_TRUE(Send(Maintenance().alarmDisarmRequest()).status.ok());
  server::Request move;
  move.type = server::RequestType::kMoveLeader;
  move.member.id = 1;
  EXPECT_TRUE(Call(Maintenance().moveLeaderRequest(), move).status.ok());
  move.member.id = 5;
  EXPECT_EQ(CodeOf(Call(Maintenance().moveLeaderRequest(), move).status),
            ErrorCode::kMemberNotFound);
}

TEST_F(ClientServiceTest, SnapshotStreamsInChunksEndingWithItsCrc) {
  options_.snapshot_chunk_bytes = 1 << 20;
  member_.snapshot_data = Pattern((5 << 20) / 2);
  Connect();
  auto opened = Maintenance().snapshotRequest().send().wait(ws_);
  ASSERT_TRUE(StatusFromCapnp(opened.getStatus()).ok());
  rpc::SnapshotStream::Client stream = opened.getStream();
  std::string received;
  int chunks = 0;
  while (true) {
    auto next = stream.nextRequest().send().wait(ws_);
    if (next.getDone()) {
      EXPECT_EQ(next.getCrc32c(), store::Crc32c(member_.snapshot_data));
      break;
    }
    auto chunk = next.getChunk();
    EXPECT_LE(chunk.size(), options_.snapshot_chunk_bytes);
    received.append(reinterpret_cast<const char*>(chunk.begin()), chunk.size());
    ++chunks;
  }
  EXPECT_EQ(chunks, 3);
  EXPECT_EQ(received, member_.snapshot_data);
}

TEST_F(ClientServiceTest, AnEmptySnapshotIsDoneAtOnce) {
  Connect();
  auto stream = Maintenance().snapshotRequest().send().getStream();
  auto next = stream.nextRequest().send().wait(ws_);
  EXPECT_TRUE(next.getDone());
  EXPECT_EQ(next.getCrc32c(), 0u);
}

// A watch runs as its caller: the call's token reaches the member, which checks it (the core's
// auth; node:jwt_auth_test shows a refusal end to end).
TEST_F(ClientServiceTest, AWatchCarriesItsCallersToken) {
  Connect();
  WatcherLog log;
  rpc::WatchHandle::Client handle = StartWatch("k", log, false, "alices-token");
  ASSERT_TRUE(last_watch_status_.ok()) << last_watch_status_;
  ASSERT_EQ(member_.watch_callers.size(), 1u);
  EXPECT_EQ(member_.watch_callers[0].token, "alices-token");
  EXPECT_EQ(member_.watch_callers[0].cert_user, "");
}

TEST_F(ClientServiceTest, WatchDeliversInOrderThenCancels) {
  Connect();
  WatcherLog log;
  rpc::WatchHandle::Client handle = StartWatch("k", log);
  ASSERT_TRUE(last_watch_status_.ok()) << last_watch_status_;
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return log.responses.size() == 1; }));
  EXPECT_TRUE(log.responses[0].created);
  const mvcc::WatchId id = log.responses[0].watch_id;

  for (int i = 1; i <= 3; ++i) Put("k", absl::StrCat("v", i));
  Put("other", "x");
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return log.responses.size() == 4; }));
  for (int i = 1; i <= 3; ++i) {
    ASSERT_EQ(log.responses[i].events.size(), 1u);
    EXPECT_EQ(log.responses[i].events[0].kv.value, absl::StrCat("v", i));
  }

  handle.requestProgressRequest().send().wait(ws_);
  EXPECT_EQ(member_.progress_requests, 1);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return log.responses.size() == 5; }));
  EXPECT_TRUE(log.responses[4].progress);

  auto canceled = handle.cancelRequest().send().wait(ws_);
  EXPECT_TRUE(StatusFromCapnp(canceled.getStatus()).ok());
  EXPECT_EQ(member_.canceled_watches, std::vector<mvcc::WatchId>{id});
  Put("k", "after");
  RunFor(ws_, timer_, 20 * kj::MILLISECONDS);
  EXPECT_EQ(log.responses.size(), 5u);
  auto again = handle.cancelRequest().send().wait(ws_);
  EXPECT_EQ(CodeOf(StatusFromCapnp(again.getStatus())), ErrorCode::kWatchNotFound);
}

TEST_F(ClientServiceTest, ReleasingTheHandleCancelsTheWatch) {
  Connect();
  WatcherLog log;
  {
    rpc::WatchHandle::Client handle = StartWatch("k", log);
    EXPECT_EQ(member_.open_watches(), 1u);
  }
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.open_watches() == 0; }));
  EXPECT_EQ(member_.canceled_watches.size(), 1u);
}

// The watches one connection may hold are bounded; another connection has its own allowance,
// and releasing a handle makes room.
TEST_F(ClientServiceTest, WatchesPerConnectionAreBounded) {
  options_.max_watches_per_connection = 3;
  Connect();
  WatcherLog log;
  std::vector<rpc::WatchHandle::Client> handles;
  for (int i = 0; i < 3; ++i) {
    handles.push_back(StartWatch(absl::StrCat("k", i), log));
    ASSERT_TRUE(last_watch_status_.ok()) << last_watch_status_;
  }
  (void)StartWatch("k3", log);
  EXPECT_EQ(CodeOf(last_watch_status_), ErrorCode::kTooManyRequests);
  EXPECT_NE(last_watch_status_.message().find("too many watches on this connection (limit 3)"),
            std::string::npos)
      << last_watch_status_;
  EXPECT_EQ(member_.open_watches(), 3u);

  // A second connection, the first still open.
  auto pipe = io_.provider->newTwoWayPipe();
  server_->Accept(kj::mv(pipe.ends[0]));
  RpcConnection other(kj::mv(pipe.ends[1]), ResponseReaderOptions());
  auto call = other.Bootstrap<rpc::Endpoint>().watchRequest().send().getWatch().watchRequest();
  mvcc::WatchRequest request;
  request.key = "elsewhere";
  ToCapnp(request, call.initRequest());
  call.setWatcher(kj::heap<TestWatcher>(log));
  auto results = call.send().wait(ws_);
  EXPECT_TRUE(StatusFromCapnp(results.getStatus()).ok());
  EXPECT_EQ(member_.open_watches(), 4u);

  handles.pop_back();
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.open_watches() == 3; }));
  handles.push_back(StartWatch("k3", log));
  EXPECT_TRUE(last_watch_status_.ok()) << last_watch_status_;
}

TEST_F(ClientServiceTest, AWatcherThatGoesAwayEndsItsWatch) {
  Connect();
  WatcherLog log;
  rpc::WatchHandle::Client handle = StartWatch("k", log);
  EXPECT_EQ(member_.open_watches(), 1u);
  handle = nullptr;
  endpoint_ = nullptr;
  connection_.reset();
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.open_watches() == 0; }));
}

TEST_F(ClientServiceTest, AWatchTheMemberEndsIsForwardedAndNotCanceledAgain) {
  Connect();
  WatcherLog log;
  rpc::WatchHandle::Client handle = StartWatch("k", log);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return log.responses.size() == 1; }));
  mvcc::WatchResponse compacted;
  compacted.watch_id = log.responses[0].watch_id;
  compacted.canceled = true;
  compacted.compact_revision = 5;
  compacted.cancel_reason = "compacted";
  member_.DeliverTo(compacted.watch_id, compacted);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return log.responses.size() == 2; }));
  EXPECT_TRUE(log.responses[1].canceled);
  EXPECT_EQ(log.responses[1].compact_revision, 5);
  handle = nullptr;
  RunFor(ws_, timer_, 20 * kj::MILLISECONDS);
  EXPECT_TRUE(member_.canceled_watches.empty());
}

TEST_F(ClientServiceTest, ProgressNotifyWatchIsOpened) {
  Connect();
  WatcherLog log;
  StartWatch("k", log, /*progress_notify=*/true);
  EXPECT_TRUE(last_watch_status_.ok()) << last_watch_status_;
  EXPECT_EQ(member_.open_watches(), 1u);
}

// A watcher that stops taking responses: Cap'n Proto's flow control fills, then the queue, and
// the watch is canceled with a reason; what was queued still arrives, in order, without gaps.
TEST_F(ClientServiceTest, ASlowWatcherIsCanceledAtTheQueueLimit) {
  options_.watch_queue_limit_responses = 4;
  Connect();
  WatcherLog log;
  log.hold = true;
  rpc::WatchHandle::Client handle = StartWatch("k", log);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return log.responses.size() == 1; }));
  const mvcc::WatchId id = log.responses[0].watch_id;

  const std::string value(64 << 10, 'v');
  int delivered = 0;
  while (member_.open_watches() == 1 && delivered < 1000) {
    Put("k", value);
    ++delivered;
    RunFor(ws_, timer_, 1 * kj::MILLISECONDS);
  }
  EXPECT_EQ(member_.open_watches(), 0u);
  EXPECT_EQ(member_.canceled_watches, std::vector<mvcc::WatchId>{id});
  EXPECT_LT(delivered, 100) << "flow control should hold back a watcher that takes nothing";

  log.Release();
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] {
    log.Release();
    return !log.responses.empty() && log.responses.back().canceled;
  }));
  const mvcc::WatchResponse& last = log.responses.back();
  EXPECT_NE(last.cancel_reason.find("watcher too slow"), std::string::npos) << last.cancel_reason;
  EXPECT_NE(last.cancel_reason.find("limit 4"), std::string::npos) << last.cancel_reason;
  // The events that arrived are the first ones, in order.
  mvcc::Revision expected = 2;
  for (size_t i = 1; i + 1 < log.responses.size(); ++i) {
    ASSERT_EQ(log.responses[i].events.size(), 1u);
    EXPECT_EQ(log.responses[i].events[0].kv.mod_revision, expected++);
  }
  EXPECT_LT(log.responses.size(), static_cast<size_t>(delivered) + 2);
  RunFor(ws_, timer_, 20 * kj::MILLISECONDS);
  EXPECT_TRUE(log.responses.back().canceled);
}

TEST_F(ClientServiceTest, AMessageBeyondTheLimitBreaksItsConnectionNotTheServer) {
  Connect();
  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "big";
  put.put.value = std::string(server::kDefaultMaxRequestBytes + kRequestEnvelopeBytes, 'x');
  auto request = Kv().putRequest();
  FillParams(put, request);
  bool failed = false;
  std::string reason;
  request.send()
      .then([](capnp::Response<rpc::Kv::PutResults>) {},
            [&failed, &reason](kj::Exception&& e) {
              failed = true;
              reason = e.getDescription().cStr();
            })
      .wait(ws_);
  EXPECT_TRUE(failed);
  // The member reads the message through and says why it closes the connection.
  EXPECT_NE(reason.find("etcdserver: request is too large (a message of "), std::string::npos)
      << reason;
  EXPECT_TRUE(member_.calls.empty());
  // Another connection to the same server is served.
  Connect();
  EXPECT_TRUE(Put("small", "ok").status.ok());
}

// --- Peer services ------------------------------------------------------------------------------

raft::Message Heartbeat(raft::NodeId to, raft::Index commit) {
  raft::Message m;
  m.type = raft::MessageType::kHeartbeat;
  m.from = 1;
  m.to = to;
  m.term = 3;
  m.commit = commit;
  return m;
}

raft::Message Snap(raft::NodeId to, std::string data) {
  raft::Message m;
  m.type = raft::MessageType::kSnap;
  m.from = 1;
  m.to = to;
  m.term = 3;
  auto snapshot = std::make_shared<raft::Snapshot>();
  snapshot->metadata.index = 50;
  snapshot->metadata.term = 3;
  snapshot->metadata.conf_state.voters = {1, 2};
  snapshot->data = raft::Bytes(data);
  m.snapshot = snapshot;
  return m;
}

class PeerTest : public ::testing::Test {
 protected:
  PeerTest() : member_(2, 42) {}
  ~PeerTest() noexcept override {}

  // A PeerServer for member_ on loopback; returns its address.
  std::string ListenPeer(const PeerServiceOptions& options = {}) {
    peer_server_ =
        PeerServer::Listen(io_.provider->getNetwork(), timer_, "127.0.0.1:0", member_, options)
            .wait(ws_);
    return absl::StrCat("127.0.0.1:", peer_server_->port());
  }

  std::unique_ptr<PeerClient> NewClient(PeerClientOptions options) {
    if (options.peer_id == raft::kNoNode) options.peer_id = 2;
    if (options.cluster_id == 0) options.cluster_id = 42;
    PeerClientCallbacks callbacks;
    callbacks.on_unreachable = [this](raft::NodeId peer) {
      EXPECT_EQ(peer, 2u);
      ++unreachable_;
    };
    callbacks.on_snapshot_status = [this](raft::NodeId, bool succeeded) {
      snapshot_status_.push_back(succeeded);
    };
    callbacks.on_error = [this](raft::NodeId, const absl::Status& why) {
      errors_.push_back(std::string(why.message()));
    };
    return std::make_unique<PeerClient>(io_.provider->getNetwork(), timer_, std::move(options),
                                        std::move(callbacks));
  }

  bool ErrorMentions(const std::string& text) const {
    for (const std::string& e : errors_) {
      if (e.find(text) != std::string::npos) return true;
    }
    return false;
  }

  // A Peer capability over a socketpair to a PeerServer for member_.
  rpc::Peer::Client PeerOverPipe(const PeerServiceOptions& options = {}) {
    pipe_server_ = std::make_unique<PeerServer>(member_, timer_, options);
    auto pipe = io_.provider->newTwoWayPipe();
    pipe_server_->Accept(kj::mv(pipe.ends[0]));
    pipe_connection_ = std::make_unique<RpcConnection>(kj::mv(pipe.ends[1]), PeerReaderOptions());
    return pipe_connection_->Bootstrap<rpc::Peer>();
  }

  // Whether `promise` rejected, with a description containing `text`.
  bool Refused(kj::Promise<void> promise, const std::string& text) {
    std::string description;
    bool refused = false;
    promise
        .then([] {},
              [&](kj::Exception&& e) {
                refused = true;
                description = e.getDescription().cStr();
              })
        .wait(ws_);
    EXPECT_NE(description.find(text), std::string::npos) << description;
    return refused;
  }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  kj::WaitScope& ws_ = io_.waitScope;
  kj::Timer& timer_ = io_.provider->getTimer();
  FakeMember member_;
  kj::Own<PeerServer> peer_server_;
  std::unique_ptr<PeerServer> pipe_server_;
  std::unique_ptr<RpcConnection> pipe_connection_;
  int unreachable_ = 0;
  std::vector<bool> snapshot_status_;
  std::vector<std::string> errors_;
};

TEST_F(PeerTest, MessagesOfOneTurnTravelInOneBatch) {
  PeerClientOptions options;
  options.address = ListenPeer();
  auto client = NewClient(options);

  for (int i = 1; i <= 5; ++i) client->Send(Heartbeat(2, i));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 5; }));
  EXPECT_EQ(peer_server_->raft_batches(), 1u);
  EXPECT_TRUE(client->connected());
  for (int i = 1; i <= 3; ++i) client->Send(Heartbeat(2, 10 + i));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 8; }));
  EXPECT_EQ(peer_server_->raft_batches(), 2u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(member_.stepped[i].commit, i + 1);
  // Batches that ask for no acknowledgement get none, and the connection stays up past the
  // send timeout: acknowledgements are asked for now and then (kPeerAckInterval), not per batch.
  RunFor(ws_, timer_, 20 * kj::MILLISECONDS);
  for (int i = 0; i < 3; ++i) {
    client->Send(Heartbeat(2, 20 + i));
    RunFor(ws_, timer_, 30 * kj::MILLISECONDS);
  }
  EXPECT_EQ(member_.stepped.size(), 11u);
  EXPECT_TRUE(client->connected());
  EXPECT_EQ(unreachable_, 0);
  EXPECT_TRUE(errors_.empty());
}

// A PeerClient tells its peer URLs on its connection's first batch only; the receiver hands
// them to its member before it steps that batch's messages. Without URLs to tell, none is sent.
TEST_F(PeerTest, TheSendersPeerUrlsGoOncePerConnection) {
  PeerClientOptions options;
  options.address = ListenPeer();
  options.local_id = 1;
  options.local_peer_urls = {"http://127.0.0.1:12380", "http://10.0.0.1:2380"};
  auto client = NewClient(options);
  client->Send(Heartbeat(2, 1));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 1; }));
  ASSERT_EQ(member_.learned.size(), 1u);
  EXPECT_EQ(member_.learned[0].first, 1u);
  EXPECT_EQ(member_.learned[0].second, options.local_peer_urls);
  for (int i = 2; i <= 4; ++i) {
    client->Send(Heartbeat(2, i));
    ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == size_t(i); }));
  }
  EXPECT_EQ(peer_server_->raft_batches(), 4u);
  EXPECT_EQ(member_.learned.size(), 1u);

  // A new connection (the old one's receiver went away) tells them again, once.
  client.reset();
  options.local_peer_urls = {"http://127.0.0.1:12381"};
  client = NewClient(options);
  client->Send(Heartbeat(2, 5));
  client->Send(Heartbeat(2, 6));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 6; }));
  ASSERT_EQ(member_.learned.size(), 2u);
  EXPECT_EQ(member_.learned[1].second, options.local_peer_urls);

  PeerClientOptions silent;
  silent.address = options.address;
  auto anonymous = NewClient(silent);
  anonymous->Send(Heartbeat(2, 7));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 7; }));
  EXPECT_EQ(member_.learned.size(), 2u);
  EXPECT_TRUE(errors_.empty());
}

// A stream whose first batch names peer URLs that do not validate (raft_stream_test has every
// case) is refused with the reason, nothing of it stepped or learned, and the member keeps
// serving other streams.
TEST_F(PeerTest, AStreamWithMalformedPeerUrlsIsRefusedWithTheReason) {
  const std::string address = ListenPeer();
  kj::Network& network = io_.provider->getNetwork();
  auto refusal_for = [&](const std::vector<std::string>& urls) {
    kj::Own<kj::AsyncIoStream> stream =
        ConnectWithin(network, timer_, address, 1 * kj::SECONDS).wait(ws_);
    const std::string bytes = std::string(kRaftStreamMagic, sizeof(kRaftStreamMagic)) +
                              RaftBatchFrameFrom({Heartbeat(2, 1)}, 42, 9, urls);
    stream->write(bytes.data(), bytes.size()).wait(ws_);
    auto reader = capnp::readMessage(*stream, PeerReaderOptions()).wait(ws_);
    return std::string(reader->getRoot<rpc::RaftAck>().getRefusal().cStr());
  };
  std::string refused = refusal_for({"http://" + std::string(4000, 'x') + ":1"});
  EXPECT_NE(refused.find("refused: the sender's peer URLs: peer URL \"http://xxx"),
            std::string::npos)
      << refused;
  EXPECT_NE(refused.find("4009 bytes, over the limit of 256"), std::string::npos) << refused;
  refused = refusal_for({"gopher://h:1"});
  EXPECT_NE(refused.find("want http://host:port"), std::string::npos) << refused;
  EXPECT_TRUE(member_.stepped.empty());
  EXPECT_TRUE(member_.learned.empty());

  PeerClientOptions options;
  options.address = address;
  options.local_id = 1;
  options.local_peer_urls = {"http://127.0.0.1:12380"};
  auto client = NewClient(options);
  client->Send(Heartbeat(2, 2));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 1; }));
  ASSERT_EQ(member_.learned.size(), 1u);
  EXPECT_EQ(member_.learned[0].first, 1u);
}

TEST_F(PeerTest, ABatchStopsAtItsByteLimit) {
  PeerClientOptions options;
  options.address = ListenPeer();
  options.batch_limit_bytes = 100 << 10;
  auto client = NewClient(options);
  for (int i = 0; i < 4; ++i) {
    raft::Message m;
    m.type = raft::MessageType::kProp;
    m.from = 1;
    m.to = 2;
    m.entries.push_back(
        raft::Entry{0, 0, raft::EntryType::kNormal, raft::Bytes(std::string(60 << 10, 'e'))});
    client->Send(m);
  }
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 4; }));
  EXPECT_EQ(peer_server_->raft_batches(), 4u);
}

// The receiving end of a Raft stream, driven by hand: the magic, then RaftBatch frames.
TEST_F(PeerTest, ARaftStreamAcknowledgesWhenAskedAndRefusesWhole) {
  const std::string address = ListenPeer();
  kj::Network& network = io_.provider->getNetwork();
  auto open = [&] {
    kj::Own<kj::AsyncIoStream> stream =
        ConnectWithin(network, timer_, address, 1 * kj::SECONDS).wait(ws_);
    stream->write(kRaftStreamMagic, sizeof(kRaftStreamMagic)).wait(ws_);
    return stream;
  };
  auto write = [&](kj::AsyncIoStream& stream, uint64_t cluster_id,
                   const std::vector<raft::Message>& messages, bool ack, int bad_type = 0) {
    const std::string frame = RaftBatchFrame(messages, cluster_id, ack, bad_type);
    stream.write(frame.data(), frame.size()).wait(ws_);
  };
  auto read_ack = [&](kj::AsyncIoStream& stream) {
    auto reader = capnp::readMessage(stream, PeerReaderOptions()).wait(ws_);
    auto ack = reader->getRoot<rpc::RaftAck>();
    return std::make_pair(ack.getBatches(), std::string(ack.getRefusal().cStr()));
  };

  kj::Own<kj::AsyncIoStream> stream = open();
  write(*stream, 42, {Heartbeat(2, 1), Heartbeat(2, 2)}, /*ack=*/false);
  write(*stream, 42, {Heartbeat(2, 3)}, /*ack=*/true);
  EXPECT_EQ(read_ack(*stream), std::make_pair(uint64_t{2}, std::string()));
  ASSERT_EQ(member_.stepped.size(), 3u);
  EXPECT_EQ(member_.stepped[2].commit, 3u);

  // A malformed message refuses its batch whole, with the reason, and ends the stream.
  write(*stream, 42, {Heartbeat(2, 4), Heartbeat(2, 5)}, /*ack=*/false, /*bad_type=*/99);
  auto refused = read_ack(*stream);
  EXPECT_NE(refused.second.find("raft message type 99"), std::string::npos) << refused.second;
  EXPECT_EQ(member_.stepped.size(), 3u);
  stream = nullptr;

  stream = open();
  write(*stream, 7, {Heartbeat(2, 6)}, /*ack=*/true);
  refused = read_ack(*stream);
  EXPECT_NE(refused.second.find("cluster id mismatch: local 2a, remote 7"), std::string::npos)
      << refused.second;
  EXPECT_EQ(ClusterMismatchOf(absl::UnavailableError(refused.second)), std::optional<uint64_t>(42));
  EXPECT_EQ(member_.stepped.size(), 3u);
  EXPECT_EQ(peer_server_->raft_batches(), 2u);
}

// Hostile Raft stream bytes (raft_stream_test has every case against the decoder alone): each
// gets a refusal naming the fault and its connection closed, and the member keeps serving other
// links.
TEST_F(PeerTest, AHostileRaftStreamIsRefusedAndClosedAlone) {
  const std::string address = ListenPeer();
  kj::Network& network = io_.provider->getNetwork();
  auto open = [&](const std::string& first) {
    kj::Own<kj::AsyncIoStream> stream =
        ConnectWithin(network, timer_, address, 1 * kj::SECONDS).wait(ws_);
    stream->write(first.data(), first.size()).wait(ws_);
    return stream;
  };
  auto frame = [&](const std::vector<raft::Message>& messages) {
    return RaftBatchFrame(messages, 42);
  };
  // The refusal, then the end of the stream.
  auto refusal = [&](kj::AsyncIoStream& stream) {
    auto reader = capnp::readMessage(stream, PeerReaderOptions()).wait(ws_);
    std::string why = reader->getRoot<rpc::RaftAck>().getRefusal().cStr();
    char byte;
    EXPECT_EQ(stream.tryRead(&byte, 1, 1).wait(ws_), 0u);
    return why;
  };
  const std::string magic(kRaftStreamMagic, sizeof(kRaftStreamMagic));
  std::string huge(8, '\0');
  for (int i = 4; i < 8; ++i) huge[i] = '\xff';  // one segment of 2^32 - 1 words

  // A length prefix over the limit, refused from its header (nothing of the 32 GiB is awaited).
  auto stream = open(magic + frame({Heartbeat(2, 1)}) + huge);
  EXPECT_NE(refusal(*stream).find("over the limit of 33554432 bytes"), std::string::npos);
  ASSERT_EQ(member_.stepped.size(), 1u);  // the valid frame before it was stepped

  // Garbage after a valid frame.
  stream = open(magic + frame({Heartbeat(2, 2)}) + std::string(8, '\x7f'));
  EXPECT_NE(refusal(*stream).find("segments (at most 512)"), std::string::npos);
  EXPECT_EQ(member_.stepped.size(), 2u);

  // A zero-length frame.
  stream = open(magic + std::string(8, '\0'));
  EXPECT_NE(refusal(*stream).find("malformed RaftBatch frame"), std::string::npos);

  // A truncated frame: the sender stops writing inside it.
  const std::string cut = frame({Heartbeat(2, 3)});
  stream = open(magic + cut.substr(0, cut.size() - 5));
  stream->shutdownWrite();
  EXPECT_NE(refusal(*stream).find("the stream ended inside a frame"), std::string::npos);
  EXPECT_EQ(member_.stepped.size(), 2u);

  // Bad magic: not a Raft stream, so Cap'n Proto RPC, which refuses it as a message of 2^32
  // segments (an Abort message) and closes.
  std::string bad = magic;
  bad[7] = 'X';
  stream = open(bad + frame({Heartbeat(2, 4)}));
  char answer[4096];
  size_t answered = 0;
  for (size_t n = 1; n > 0 && answered < sizeof(answer);) {
    n = stream->tryRead(answer + answered, 1, sizeof(answer) - answered).wait(ws_);
    answered += n;
  }
  EXPECT_LT(answered, sizeof(answer));  // it ended
  EXPECT_EQ(member_.stepped.size(), 2u);

  // The member still serves a well-behaved sender.
  PeerClientOptions options;
  options.address = address;
  auto client = NewClient(options);
  client->Send(Heartbeat(2, 5));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 3; }));
  EXPECT_EQ(member_.stepped[2].commit, 5u);
}

// Whether `stream` ends (the other side closed it: end of file or a reset) within `max`.
bool EndsWithin(kj::WaitScope& ws, kj::Timer& timer, kj::AsyncIoStream& stream, kj::Duration max) {
  bool ended = false;
  kj::byte byte;
  kj::Promise<void> read =
      kj::evalNow([&] { return stream.tryRead(&byte, 1, 1); })
          .then([&](size_t n) { ended = n == 0; }, [&](kj::Exception&&) { ended = true; })
          .eagerlyEvaluate(nullptr);
  return RunUntil(
      ws, timer, [&] { return ended; }, max);
}

// A connection that says nothing, and a Raft stream that falls silent (no frame, not even a
// keep-alive), are closed once the idle bound has passed, each with a line for the log; a real
// PeerClient's link stays up across several bounds without a message to send, on its
// keep-alives.
TEST_F(PeerTest, SilentPeerConnectionsAreClosedAfterTheIdleBound) {
  std::vector<std::string> closed;
  PeerServiceOptions options;
  options.stream_idle_timeout = 300 * kj::MILLISECONDS;
  options.on_closed = [&](const std::string& remote, const std::string& why) {
    EXPECT_NE(remote.find("127.0.0.1:"), std::string::npos) << remote;
    closed.push_back(why);
  };
  const std::string address = ListenPeer(options);
  kj::Network& network = io_.provider->getNetwork();

  // Not a byte.
  const kj::TimePoint start = timer_.now();
  kj::Own<kj::AsyncIoStream> silent =
      ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_);
  ASSERT_TRUE(EndsWithin(ws_, timer_, *silent, 5 * kj::SECONDS));
  EXPECT_GE(timer_.now() - start, 300 * kj::MILLISECONDS);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_NE(closed[0].find("sent nothing for 300 ms"), std::string::npos) << closed[0];

  // The magic and a batch, then silence: the stream is closed an idle bound after the batch.
  kj::Own<kj::AsyncIoStream> stream =
      ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_);
  const std::string frames = std::string(kRaftStreamMagic, sizeof(kRaftStreamMagic)) +
                             RaftBatchFrame({Heartbeat(2, 1)}, 42);
  stream->write(frames.data(), frames.size()).wait(ws_);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 1; }));
  const kj::TimePoint stepped = timer_.now();
  ASSERT_TRUE(EndsWithin(ws_, timer_, *stream, 5 * kj::SECONDS));
  EXPECT_GE(timer_.now() - stepped, 250 * kj::MILLISECONDS);
  ASSERT_EQ(closed.size(), 2u);
  EXPECT_NE(closed[1].find("closed a Raft stream that delivered no frame (not even a keep-alive) "
                           "for 300 ms"),
            std::string::npos)
      << closed[1];
  EXPECT_EQ(peer_server_->connections(), 0u);

  // This member's own loop stalls past the bound while a frame waits unread in the socket (a
  // paused process): the frame is read and the stream kept, not taken for a silent one.
  stream = ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_);
  stream->write(frames.data(), frames.size()).wait(ws_);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 2; }));
  const std::string late = RaftBatchFrame({Heartbeat(2, 9)}, 42);
  kj::Promise<void> written = stream->write(late.data(), late.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the stall itself
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 3; }));
  written.wait(ws_);
  EXPECT_FALSE(EndsWithin(ws_, timer_, *stream, 150 * kj::MILLISECONDS));
  EXPECT_EQ(closed.size(), 2u);
  stream = nullptr;
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return peer_server_->connections() == 0; }));

  // A real sender with nothing to say keeps its link alive: no close, no reconnect.
  PeerClientOptions client_options;
  client_options.address = address;
  client_options.keepalive_interval = 60 * kj::MILLISECONDS;
  auto client = NewClient(client_options);
  client->Send(Heartbeat(2, 2));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 4; }));
  RunFor(ws_, timer_, 1200 * kj::MILLISECONDS);  // four idle bounds
  EXPECT_TRUE(client->connected());
  EXPECT_EQ(closed.size(), 2u);
  EXPECT_TRUE(errors_.empty()) << errors_.front();
  EXPECT_EQ(peer_server_->raft_batches(), 4u);  // keep-alives are not batches
  client->Send(Heartbeat(2, 3));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 5; }));
  EXPECT_EQ(unreachable_, 0);
}

// Connections past the cap are closed at once, with a line for the log, while a real peer's
// Raft stream keeps delivering; once one closes, a new connection is served again.
TEST_F(PeerTest, ConnectionsPastTheCapAreRefusedAtOnce) {
  std::vector<std::string> closed;
  PeerServiceOptions options;
  options.max_connections = 3;
  options.on_closed = [&](const std::string&, const std::string& why) { closed.push_back(why); };
  const std::string address = ListenPeer(options);
  kj::Network& network = io_.provider->getNetwork();

  PeerClientOptions client_options;
  client_options.address = address;
  auto client = NewClient(client_options);
  client->Send(Heartbeat(2, 1));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 1; }));
  ASSERT_EQ(peer_server_->connections(), 1u);

  // Two more fill the cap; four past it are each closed at once.
  std::vector<kj::Own<kj::AsyncIoStream>> held;
  for (size_t i = 0; i < 2; ++i) {
    held.push_back(ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_));
    ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return peer_server_->connections() == 2 + i; }));
  }
  for (int i = 0; i < 4; ++i) {
    kj::Own<kj::AsyncIoStream> excess =
        ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_);
    ASSERT_TRUE(EndsWithin(ws_, timer_, *excess, 2 * kj::SECONDS)) << i;
  }
  ASSERT_EQ(closed.size(), 4u);
  EXPECT_NE(closed[0].find("too many peer connections: 3 open"), std::string::npos) << closed[0];
  EXPECT_EQ(peer_server_->connections(), 3u);
  for (kj::Own<kj::AsyncIoStream>& stream : held) {
    EXPECT_FALSE(EndsWithin(ws_, timer_, *stream, 10 * kj::MILLISECONDS));
  }

  // The real peer's stream was never touched.
  for (int i = 2; i <= 5; ++i) client->Send(Heartbeat(2, i));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 5; }));
  EXPECT_TRUE(client->connected());
  EXPECT_TRUE(errors_.empty()) << errors_.front();

  // A held connection goes: its slot is free again.
  held.pop_back();
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return peer_server_->connections() == 2; }));
  held.push_back(ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return peer_server_->connections() == 3; }));
  EXPECT_FALSE(EndsWithin(ws_, timer_, *held.back(), 50 * kj::MILLISECONDS));
  EXPECT_EQ(closed.size(), 4u);
}

// A peer URL that answers a Raft stream with bytes that are no acknowledgement (a hostile or
// confused listener): the sender fails that link with the reason, never the member. Reading a
// RaftAck whose root did not decode used to throw out of PeerClient's read loop into its task
// set, whose error handler aborts the process.
TEST_F(PeerTest, MalformedAcknowledgementsFailTheLinkWithTheReason) {
  for (const std::string& answer :
       {std::string(8, '\0'), std::string("\0\0\0\0\xff\xff\xff\xff", 8),
        std::string("\0\0\0\0\2\0\0\0", 8) + std::string(16, '\x5a')}) {
    auto listener = io_.provider->getNetwork().parseAddress("127.0.0.1:0").wait(ws_)->listen();
    PeerClientOptions options;
    options.address = absl::StrCat("127.0.0.1:", listener->getPort());
    auto client = NewClient(options);
    errors_.clear();
    client->Send(Heartbeat(2, 1));
    kj::Own<kj::AsyncIoStream> accepted = listener->accept().wait(ws_);
    char magic[sizeof(kRaftStreamMagic)];
    accepted->read(magic, sizeof(magic)).wait(ws_);
    accepted->write(answer.data(), answer.size()).wait(ws_);
    ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return !errors_.empty(); }));
    EXPECT_FALSE(client->connected());
    EXPECT_TRUE(ErrorMentions("malformed RaftAck frame") || ErrorMentions("over the limit"))
        << errors_[0];
  }
}

TEST_F(PeerTest, MessagesAreSteppedInOrderWithEveryField) {
  PeerClientOptions options;
  options.address = ListenPeer();
  auto client = NewClient(options);
  raft::Message app;
  app.type = raft::MessageType::kApp;
  app.from = 1;
  app.to = 2;
  app.term = 3;
  app.log_term = 3;
  app.index = 7;
  app.commit = 6;
  app.entries.push_back(raft::Entry{3, 8, raft::EntryType::kNormal, raft::Bytes("e8")});
  client->Send(Heartbeat(2, 1));
  client->Send(app);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return member_.stepped.size() == 2; }));
  EXPECT_EQ(raft::DescribeMessage(member_.stepped[0]), raft::DescribeMessage(Heartbeat(2, 1)));
  EXPECT_EQ(raft::DescribeMessage(member_.stepped[1]), raft::DescribeMessage(app));
}

TEST_F(PeerTest, AnotherClustersMemberIsRefused) {
  PeerClientOptions options;
  options.address = ListenPeer();
  options.cluster_id = 7;
  auto client = NewClient(options);
  client->Send(Heartbeat(2, 1));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return !errors_.empty(); }));
  EXPECT_TRUE(ErrorMentions("another cluster")) << errors_[0];
  EXPECT_TRUE(RunUntil(ws_, timer_, [&] { return unreachable_ > 0; }));
  EXPECT_TRUE(member_.stepped.empty());
}

// etcd's rafthttp answers a removed member 410 Gone: here the receiver refuses the Raft stream
// of a sender the member answers kMemberRemoved for, naming the sender, which finds its own id
// in the refusal (MemberRemovedOf) and stops. Nothing of the batch is stepped after it.
TEST_F(PeerTest, ARemovedMembersStreamIsRefusedNamingIt) {
  member_.removed_senders.insert(1);
  PeerClientOptions options;
  options.address = ListenPeer();
  options.cluster_id = 42;
  auto client = NewClient(options);
  client->Send(Heartbeat(2, 1));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return !errors_.empty(); }));
  EXPECT_TRUE(ErrorMentions("permanently removed from the cluster")) << errors_[0];
  EXPECT_EQ(MemberRemovedOf(absl::UnavailableError(errors_[0])), std::optional<raft::NodeId>(1));
  EXPECT_TRUE(member_.stepped.empty());
  // Another refusal, or none, names no removed member.
  EXPECT_EQ(MemberRemovedOf(absl::UnavailableError(MemberRemovedText(0xabc))),
            std::optional<raft::NodeId>(0xabc));
  EXPECT_EQ(MemberRemovedOf(absl::UnavailableError("refused: cluster id mismatch")), std::nullopt);
}

TEST_F(PeerTest, AnUnreachablePeerIsReportedAndBackedOff) {
  PeerClientOptions options;
  options.address = testing::ClosedAddress(io_.provider->getNetwork(), ws_);
  options.reconnect_backoff_min = 200 * kj::MILLISECONDS;
  auto client = NewClient(options);
  client->Send(Heartbeat(2, 1));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return unreachable_ == 1; }));
  EXPECT_FALSE(client->connected());
  EXPECT_EQ(client->queued_messages(), 0u);
  // In backoff: dropped at once, reported (once per turn), not queued.
  client->Send(Heartbeat(2, 2));
  client->Send(Heartbeat(2, 3));
  EXPECT_EQ(client->queued_messages(), 0u);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return unreachable_ == 2; }));
  RunFor(ws_, timer_, 10 * kj::MILLISECONDS);
  EXPECT_EQ(unreachable_, 2);
}

TEST_F(PeerTest, TheQueueIsBoundedAndOverflowIsReported) {
  testing::SilentListener silent(io_.provider->getNetwork(), ws_);
  PeerClientOptions options;
  options.address = silent.address();
  options.queue_limit_messages = 8;
  auto client = NewClient(options);
  for (int i = 0; i < 20; ++i) client->Send(Heartbeat(2, i));
  EXPECT_EQ(client->queued_messages(), 8u);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return unreachable_ == 1; }));
}

TEST_F(PeerTest, APeerThatStopsAnsweringFailsItsConnection) {
  testing::SilentListener silent(io_.provider->getNetwork(), ws_);
  PeerClientOptions options;
  options.address = silent.address();
  options.send_timeout = 200 * kj::MILLISECONDS;
  auto client = NewClient(options);
  client->Send(Heartbeat(2, 1));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return client->connected(); }));
  ASSERT_TRUE(RunUntil(
      ws_, timer_, [&] { return unreachable_ == 1; }, 2 * kj::SECONDS));
  EXPECT_FALSE(client->connected());
  EXPECT_TRUE(RunUntil(ws_, timer_, [&] { return !errors_.empty(); }));
}

TEST_F(PeerTest, ASnapshotStreamsInChunksWhileMessagesKeepFlowing) {
  PeerClientOptions options;
  options.address = ListenPeer();
  options.snapshot_chunk_bytes = 64 << 10;
  auto client = NewClient(options);
  const std::string data = Pattern((3 << 20) + 17);
  client->Send(Snap(2, data));
  client->Send(Heartbeat(2, 1));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return !snapshot_status_.empty(); }));
  EXPECT_EQ(snapshot_status_, std::vector<bool>{true});
  ASSERT_EQ(member_.stepped.size(), 2u);
  // The heartbeat did not wait for the snapshot's 49 chunks.
  EXPECT_EQ(member_.stepped[0].type, raft::MessageType::kHeartbeat);
  const raft::Message& snap = member_.stepped[1];
  ASSERT_EQ(snap.type, raft::MessageType::kSnap);
  ASSERT_NE(snap.snapshot, nullptr);
  EXPECT_EQ(snap.snapshot->metadata.index, 50u);
  EXPECT_TRUE(snap.snapshot->data.view() == data);
}

TEST_F(PeerTest, OneSnapshotAtATime) {
  PeerClientOptions options;
  options.address = ListenPeer();
  auto client = NewClient(options);
  client->Send(Snap(2, Pattern(1 << 20)));
  client->Send(Snap(2, Pattern(10)));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return snapshot_status_.size() == 2; }));
  EXPECT_EQ(snapshot_status_, (std::vector<bool>{false, true}));
  EXPECT_TRUE(ErrorMentions("already in flight"));
}

TEST_F(PeerTest, ASnapshotToAnUnreachablePeerFails) {
  PeerClientOptions options;
  options.address = testing::ClosedAddress(io_.provider->getNetwork(), ws_);
  auto client = NewClient(options);
  client->Send(Snap(2, "data"));
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return !snapshot_status_.empty(); }));
  EXPECT_EQ(snapshot_status_, std::vector<bool>{false});
}

TEST_F(PeerTest, TheSnapshotSinkChecksSizeAndCrc) {
  rpc::Peer::Client peer = PeerOverPipe();
  auto start = peer.sendSnapshotRequest();
  start.setClusterId(42);
  ToCapnp(Snap(2, ""), start.initMessage());
  rpc::SnapshotSink::Client sink = start.send().getSink();
  auto write = sink.writeRequest();
  write.setChunk(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("abc"), 3));
  write.send().wait(ws_);
  auto done = sink.doneRequest();
  done.setBytes(3);
  done.setCrc32c(store::Crc32c("abd"));
  EXPECT_TRUE(Refused(done.send().ignoreResult(), "corrupted in transit"));
  EXPECT_TRUE(member_.stepped.empty());

  PeerServiceOptions small;
  small.max_snapshot_bytes = 4;
  peer = PeerOverPipe(small);
  start = peer.sendSnapshotRequest();
  start.setClusterId(42);
  ToCapnp(Snap(2, ""), start.initMessage());
  sink = start.send().getSink();
  write = sink.writeRequest();
  write.setChunk(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("abcdef"), 6));
  write.send().wait(ws_);
  done = sink.doneRequest();
  done.setBytes(6);
  done.setCrc32c(store::Crc32c("abcdef"));
  EXPECT_TRUE(Refused(done.send().ignoreResult(), "larger than the limit"));
  EXPECT_TRUE(member_.stepped.empty());
}

TEST_F(PeerTest, SendRefusesMalformedMessagesAndSnapshotsWhole) {
  rpc::Peer::Client peer = PeerOverPipe();
  auto send = peer.sendRequest();
  send.setClusterId(42);
  auto messages = send.initMessages(2);
  ToCapnp(Heartbeat(2, 1), messages[0]);
  ToCapnp(Heartbeat(2, 2), messages[1]);
  messages[1].setType(99);
  EXPECT_TRUE(Refused(send.send().ignoreResult(), "raft message type 99"));

  send = peer.sendRequest();
  send.setClusterId(42);
  ToCapnp(Snap(2, "x"), send.initMessages(1)[0]);
  EXPECT_TRUE(Refused(send.send().ignoreResult(), "kSnap travels through sendSnapshot"));

  auto snapshot = peer.sendSnapshotRequest();
  snapshot.setClusterId(42);
  ToCapnp(Heartbeat(2, 1), snapshot.initMessage());
  EXPECT_TRUE(Refused(snapshot.send().ignoreResult(), "needs a kSnap message"));

  snapshot = peer.sendSnapshotRequest();
  snapshot.setClusterId(9);
  ToCapnp(Snap(2, "x"), snapshot.initMessage());
  EXPECT_TRUE(Refused(snapshot.send().ignoreResult(), "another cluster"));
  EXPECT_TRUE(member_.stepped.empty());
}

// The port of a stream's own end (`local`) or of the other one.
uint PortOf(kj::AsyncIoStream& stream, bool local) {
  struct sockaddr_in address = {};
  uint length = sizeof(address);
  if (local) {
    stream.getsockname(reinterpret_cast<struct sockaddr*>(&address), &length);
  } else {
    stream.getpeername(reinterpret_cast<struct sockaddr*>(&address), &length);
  }
  return ntohs(address.sin_port);
}

// SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT of this process's loopback socket
// from port `local` to port `remote`, found among its file descriptors (the code under test
// made it); all -1 when there is no such socket.
std::array<int, 4> KeepaliveOf(uint local, uint remote) {
  std::array<int, 4> found = {-1, -1, -1, -1};
  DIR* fds = opendir("/proc/self/fd");
  if (fds == nullptr) return found;
  while (struct dirent* entry = readdir(fds)) {
    const int fd = std::atoi(entry->d_name);
    if (fd <= 2 || fd == dirfd(fds)) continue;
    struct sockaddr_in mine = {}, theirs = {};
    socklen_t length = sizeof(mine);
    if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&mine), &length) != 0 ||
        mine.sin_family != AF_INET || ntohs(mine.sin_port) != local) {
      continue;
    }
    length = sizeof(theirs);
    if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&theirs), &length) != 0 ||
        ntohs(theirs.sin_port) != remote) {
      continue;
    }
    const std::array<std::pair<int, int>, 4> options = {{{SOL_SOCKET, SO_KEEPALIVE},
                                                         {IPPROTO_TCP, TCP_KEEPIDLE},
                                                         {IPPROTO_TCP, TCP_KEEPINTVL},
                                                         {IPPROTO_TCP, TCP_KEEPCNT}}};
    for (size_t i = 0; i < options.size(); ++i) {
      length = sizeof(found[i]);
      getsockopt(fd, options[i].first, options[i].second, &found[i], &length);
    }
    break;
  }
  closedir(fds);
  return found;
}

std::array<int, 4> KeepaliveOn(const TcpKeepalive& k) {
  return {1, k.idle_seconds, k.interval_seconds, k.count};
}

// TCP keepalive sized from the election timeout is on every peer socket: the one PeerServer
// accepts, a PeerClient's Raft stream and snapshot connections, a PeerForwarder's link.
TEST_F(PeerTest, PeerSocketsHaveTcpKeepaliveSizedFromTheElectionTimeout) {
  // idle + count x interval: about the stream idle bound, in whole seconds.
  EXPECT_EQ(KeepaliveOn(PeerTcpKeepalive(kj::SECONDS)), (std::array<int, 4>{1, 2, 1, 3}));
  EXPECT_EQ(KeepaliveOn(PeerTcpKeepalive(10 * kj::SECONDS)), (std::array<int, 4>{1, 20, 10, 3}));
  EXPECT_EQ(KeepaliveOn(PeerTcpKeepalive(100 * kj::MILLISECONDS)),
            (std::array<int, 4>{1, 1, 1, 3}));
  EXPECT_EQ(KeepaliveOn(TcpKeepalive()), KeepaliveOn(PeerTcpKeepalive(kj::SECONDS)));
  auto pipe = io_.provider->newTwoWayPipe();
  EXPECT_FALSE(EnableTcpKeepalive(*pipe.ends[0], TcpKeepalive()));  // no socket: untouched
  kj::Network& network = io_.provider->getNetwork();

  // Accepted by PeerServer; the test's own end, which nothing set, has none.
  PeerServiceOptions server_options;
  server_options.tcp_keepalive = {7, 3, 4};
  const std::string address = ListenPeer(server_options);
  kj::Own<kj::AsyncIoStream> raw = ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_);
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return peer_server_->connections() == 1; }));
  const uint raw_port = PortOf(*raw, /*local=*/true);
  EXPECT_EQ(KeepaliveOf(peer_server_->port(), raw_port), (std::array<int, 4>{1, 7, 3, 4}));
  EXPECT_EQ(KeepaliveOf(raw_port, peer_server_->port())[0], 0);

  // Dialled by a PeerClient (its Raft stream, then a snapshot) and by a PeerForwarder.
  auto listener = network.parseAddress("127.0.0.1:0").wait(ws_)->listen();
  const uint listener_port = listener->getPort();
  PeerClientOptions client_options;
  client_options.address = absl::StrCat("127.0.0.1:", listener_port);
  client_options.tcp_keepalive = {9, 2, 5};
  auto client = NewClient(client_options);
  client->Send(Heartbeat(2, 1));
  kj::Own<kj::AsyncIoStream> stream = listener->accept().wait(ws_);
  EXPECT_EQ(KeepaliveOf(PortOf(*stream, /*local=*/false), listener_port),
            (std::array<int, 4>{1, 9, 2, 5}));
  client->Send(Snap(2, "data"));
  kj::Own<kj::AsyncIoStream> snapshot = listener->accept().wait(ws_);
  EXPECT_EQ(KeepaliveOf(PortOf(*snapshot, /*local=*/false), listener_port),
            (std::array<int, 4>{1, 9, 2, 5}));
  PeerForwarder forwarder(network, timer_, 42, {8, 2, 6});
  server::Request request;
  request.type = server::RequestType::kLeaseKeepAlive;
  kj::Promise<absl::StatusOr<server::Response>> forwarded =
      forwarder.Forward(2, client_options.address, request, kj::SECONDS);
  kj::Own<kj::AsyncIoStream> link = listener->accept().wait(ws_);
  EXPECT_EQ(KeepaliveOf(PortOf(*link, /*local=*/false), listener_port),
            (std::array<int, 4>{1, 8, 2, 6}));
}

// A snapshot transfer on a connection PeerServer serves is aborted once its next chunk has not
// come for the idle bound: the data is dropped, the connection closed (its slot freed) with a
// line for the log, and nothing stepped. A transfer whose chunks keep coming, slower than the
// bound in all, is delivered.
TEST_F(PeerTest, ASnapshotTransferWhoseChunksStopIsClosedAfterTheIdleBound) {
  std::vector<std::string> closed;
  PeerServiceOptions options;
  options.stream_idle_timeout = 300 * kj::MILLISECONDS;
  options.on_closed = [&](const std::string& remote, const std::string& why) {
    EXPECT_NE(remote.find("127.0.0.1:"), std::string::npos) << remote;
    closed.push_back(why);
  };
  const std::string address = ListenPeer(options);
  kj::Network& network = io_.provider->getNetwork();
  auto open = [&](std::unique_ptr<RpcConnection>& connection) {
    connection = std::make_unique<RpcConnection>(
        ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_), PeerReaderOptions());
    auto start = connection->Bootstrap<rpc::Peer>().sendSnapshotRequest();
    start.setClusterId(42);
    ToCapnp(Snap(2, ""), start.initMessage());
    return start.send().getSink();
  };
  auto write = [&](rpc::SnapshotSink::Client& sink, const std::string& chunk) {
    auto request = sink.writeRequest();
    request.setChunk(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(chunk.data()), chunk.size()));
    return request.send();
  };

  // Six chunks 100 ms apart (two bounds in all), then done: delivered.
  std::unique_ptr<RpcConnection> steady;
  rpc::SnapshotSink::Client sink = open(steady);
  std::string data;
  for (int i = 0; i < 6; ++i) {
    const std::string chunk = Pattern(1000 + i);
    data += chunk;
    write(sink, chunk).wait(ws_);
    RunFor(ws_, timer_, 100 * kj::MILLISECONDS);
  }
  auto done = sink.doneRequest();
  done.setBytes(data.size());
  done.setCrc32c(store::Crc32c(data));
  done.send().wait(ws_);
  ASSERT_EQ(member_.stepped.size(), 1u);
  EXPECT_TRUE(member_.stepped[0].snapshot->data.view() == data);
  EXPECT_TRUE(closed.empty()) << closed.front();
  steady.reset();
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return peer_server_->connections() == 0; }));

  // One chunk, then nothing.
  std::unique_ptr<RpcConnection> stalled;
  sink = open(stalled);
  write(sink, "abc").wait(ws_);
  const kj::TimePoint written = timer_.now();
  bool disconnected = false;
  kj::Promise<void> ended =
      stalled->OnDisconnect().then([&] { disconnected = true; }).eagerlyEvaluate(nullptr);
  ASSERT_TRUE(RunUntil(
      ws_, timer_, [&] { return disconnected; }, 5 * kj::SECONDS));
  EXPECT_GE(timer_.now() - written, 250 * kj::MILLISECONDS);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_NE(closed[0].find("closed a peer connection whose snapshot transfer delivered no chunk "
                           "for 300 ms (the idle bound) after 3 bytes"),
            std::string::npos)
      << closed[0];
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return peer_server_->connections() == 0; }));
  EXPECT_EQ(member_.stepped.size(), 1u);

  // A connection without a transfer (a forwarding link) is not bounded so.
  std::unique_ptr<RpcConnection> idle = std::make_unique<RpcConnection>(
      ConnectWithin(network, timer_, address, kj::SECONDS).wait(ws_), PeerReaderOptions());
  auto members = idle->Bootstrap<rpc::Peer>().membersRequest();
  members.setClusterId(42);
  members.send().wait(ws_);
  RunFor(ws_, timer_, 900 * kj::MILLISECONDS);
  EXPECT_EQ(peer_server_->connections(), 1u);
  EXPECT_EQ(closed.size(), 1u);
}

// A sender whose chunks go unacknowledged for the stall bound (a receiver that stopped reading:
// paused, or a black-holed link) aborts the transfer and reports the snapshot failed, with the
// reason (a kAborted status, which kvnode logs as a warning).
TEST_F(PeerTest, ASnapshotTheReceiverStopsAcknowledgingIsAbortedAfterTheStallBound) {
  testing::SilentListener silent(io_.provider->getNetwork(), ws_);
  PeerClientOptions options;
  options.address = silent.address();
  options.snapshot_stall_timeout = 300 * kj::MILLISECONDS;
  PeerClientCallbacks callbacks;
  std::vector<absl::Status> errors;
  callbacks.on_unreachable = [](raft::NodeId) {};
  callbacks.on_snapshot_status = [&](raft::NodeId, bool ok) { snapshot_status_.push_back(ok); };
  callbacks.on_error = [&](raft::NodeId, const absl::Status& why) { errors.push_back(why); };
  options.peer_id = 2;
  options.cluster_id = 42;
  PeerClient client(io_.provider->getNetwork(), timer_, options, std::move(callbacks));
  const kj::TimePoint start = timer_.now();
  client.Send(Snap(2, Pattern(16 << 20)));  // more than the kernel's buffers hold
  ASSERT_TRUE(RunUntil(
      ws_, timer_, [&] { return !snapshot_status_.empty(); }, 5 * kj::SECONDS));
  EXPECT_GE(timer_.now() - start, 300 * kj::MILLISECONDS);
  EXPECT_EQ(snapshot_status_, std::vector<bool>{false});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(absl::IsAborted(errors[0])) << errors[0];
  EXPECT_NE(errors[0].message().find("no snapshot chunk acknowledged for 300 ms (the idle bound)"),
            std::string::npos)
      << errors[0];
  // The next snapshot is not refused as "already in flight".
  client.Send(Snap(2, "small"));
  ASSERT_TRUE(RunUntil(
      ws_, timer_, [&] { return snapshot_status_.size() == 2; }, 5 * kj::SECONDS));
  EXPECT_EQ(errors.size(), 2u);
  EXPECT_EQ(silent.accepted(), 2u);
}

// Copies `from` to `to`, a read of at most `buffer`'s size at a time, pausing `pause` after each
// (a slow link); ends `to`'s writes at the end of `from`.
kj::Promise<void> Pump(kj::AsyncIoStream& from, kj::AsyncIoStream& to, kj::Timer& timer,
                       kj::Duration pause, kj::ArrayPtr<kj::byte> buffer) {
  return from.tryRead(buffer.begin(), 1, buffer.size())
      .then([&from, &to, &timer, pause, buffer](size_t n) -> kj::Promise<void> {
        if (n == 0) {
          to.shutdownWrite();
          return kj::READY_NOW;
        }
        return to.write(buffer.begin(), n)
            .then([&timer, pause] { return timer.afterDelay(pause); })
            .then([&from, &to, &timer, pause, buffer] {
              return Pump(from, to, timer, pause, buffer);
            });
      });
}

// A transfer that takes longer in all than the stall bound, over a slow link whose every chunk
// is acknowledged in turn, is delivered: the bound is on acknowledgements, not on the whole
// transfer, nor on the chunks the flow-control window lets go at once (here all of them).
TEST_F(PeerTest, ASlowSnapshotWhoseChunksKeepBeingAcknowledgedIsDelivered) {
  const std::string receiver = ListenPeer();
  kj::Network& network = io_.provider->getNetwork();
  auto listener = network.parseAddress("127.0.0.1:0").wait(ws_)->listen();
  PeerClientOptions options;
  options.address = absl::StrCat("127.0.0.1:", listener->getPort());
  options.snapshot_chunk_bytes = 16 << 10;
  options.snapshot_stall_timeout = 300 * kj::MILLISECONDS;
  auto client = NewClient(options);
  const std::string data = Pattern(1 << 20);
  const kj::TimePoint start = timer_.now();
  client->Send(Snap(2, data));
  kj::Own<kj::AsyncIoStream> from = listener->accept().wait(ws_);
  kj::Own<kj::AsyncIoStream> to = ConnectWithin(network, timer_, receiver, kj::SECONDS).wait(ws_);
  // Toward the receiver 16 KiB every 20 ms (800 KB/s, 1.3 s in all); its answers at once.
  auto up = kj::heapArray<kj::byte>(16 << 10);
  auto down = kj::heapArray<kj::byte>(64 << 10);
  kj::Promise<void> link = Pump(*from, *to, timer_, 20 * kj::MILLISECONDS, up)
                               .exclusiveJoin(Pump(*to, *from, timer_, 0 * kj::SECONDS, down))
                               .eagerlyEvaluate([](kj::Exception&&) {});
  ASSERT_TRUE(RunUntil(
      ws_, timer_, [&] { return !snapshot_status_.empty(); }, 10 * kj::SECONDS));
  EXPECT_EQ(snapshot_status_, std::vector<bool>{true});
  EXPECT_TRUE(errors_.empty()) << errors_.front();
  EXPECT_GE(timer_.now() - start, 900 * kj::MILLISECONDS);
  ASSERT_EQ(member_.stepped.size(), 1u);
  EXPECT_TRUE(member_.stepped[0].snapshot->data.view() == data);
}

// A forward the leader never answers gets its timeout error, and its connection is closed, so
// the leader's slot for it is free; the next forward connects afresh. A forward unanswered on a
// connection that answered another one meanwhile (a slow request, not a silent peer) keeps it.
TEST_F(PeerTest, AForwardToAPeerThatNeverAnswersClosesItsConnection) {
  const std::string address = ListenPeer();
  std::vector<std::string> closed;
  PeerForwarder forwarder(io_.provider->getNetwork(), timer_, 42, TcpKeepalive(),
                          [&](raft::NodeId peer, const std::string& why) {
                            EXPECT_EQ(peer, 2u);
                            closed.push_back(why);
                          });
  server::Request request;
  request.type = server::RequestType::kLeaseKeepAlive;
  request.lease_id = 5;

  member_.hold_calls = true;
  const kj::TimePoint start = timer_.now();
  absl::StatusOr<server::Response> answer =
      forwarder.Forward(2, address, request, 300 * kj::MILLISECONDS).wait(ws_);
  ASSERT_FALSE(answer.ok());
  EXPECT_TRUE(absl::IsUnavailable(answer.status())) << answer.status();
  EXPECT_NE(answer.status().message().find("no answer in time; the connection was closed"),
            std::string::npos)
      << answer.status();
  EXPECT_GE(timer_.now() - start, 300 * kj::MILLISECONDS);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_NE(closed[0].find("no answer for 300 ms"), std::string::npos) << closed[0];
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return peer_server_->connections() == 0; }));

  member_.hold_calls = false;
  answer = forwarder.Forward(2, address, request, 300 * kj::MILLISECONDS).wait(ws_);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(member_.CallsOf(server::RequestType::kLeaseKeepAlive), 2u);
  EXPECT_EQ(peer_server_->connections(), 1u);

  member_.hold_calls = true;
  kj::Promise<absl::StatusOr<server::Response>> slow =
      forwarder.Forward(2, address, request, 300 * kj::MILLISECONDS);
  RunFor(ws_, timer_, 100 * kj::MILLISECONDS);
  member_.hold_calls = false;
  answer = forwarder.Forward(2, address, request, 300 * kj::MILLISECONDS).wait(ws_);
  ASSERT_TRUE(answer.ok()) << answer.status();
  answer = slow.wait(ws_);
  ASSERT_FALSE(answer.ok());
  EXPECT_NE(answer.status().message().find("no answer in time"), std::string::npos);
  EXPECT_EQ(answer.status().message().find("closed"), std::string::npos) << answer.status();
  EXPECT_EQ(closed.size(), 1u);
  RunFor(ws_, timer_, 50 * kj::MILLISECONDS);
  EXPECT_EQ(peer_server_->connections(), 1u);
  EXPECT_EQ(member_.CallsOf(server::RequestType::kLeaseKeepAlive), 4u);
}

TEST_F(PeerTest, AJoiningMemberFetchesTheMembers) {
  member_.members.push_back(server::Member{3, "m3", {"http://127.0.0.1:4380"}, true});
  const std::string address = ListenPeer();
  kj::Network& network = io_.provider->getNetwork();
  auto members = FetchMembers(network, timer_, address, 42, 1 * kj::SECONDS).wait(ws_);
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->size(), 2u);
  EXPECT_EQ((*members)[1].id, 3u);
  EXPECT_EQ((*members)[1].peer_urls, std::vector<std::string>{"http://127.0.0.1:4380"});
  EXPECT_TRUE((*members)[1].is_learner);

  auto refused = FetchMembers(network, timer_, address, 7, 1 * kj::SECONDS).wait(ws_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("another cluster"), std::string::npos)
      << refused.status();
  // Both ids named, the refusing member's first, and found again by the member refused.
  EXPECT_NE(refused.status().message().find("cluster id mismatch: local 2a, remote 7"),
            std::string::npos)
      << refused.status();
  EXPECT_EQ(ClusterMismatchOf(refused.status()), std::optional<uint64_t>(42));
  EXPECT_EQ(ClusterMismatchOf(absl::UnavailableError("connection closed")), std::nullopt);

  // A joining member asks with cluster id 0 ("unknown") and learns it.
  auto cluster = FetchCluster(network, timer_, address, 0, 1 * kj::SECONDS).wait(ws_);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_EQ(cluster->cluster_id, 42u);
  EXPECT_EQ(cluster->members.size(), 2u);
  auto down =
      FetchMembers(network, timer_, testing::ClosedAddress(network, ws_), 42, 1 * kj::SECONDS)
          .wait(ws_);
  EXPECT_FALSE(down.ok());
  testing::SilentListener silent(network, ws_);
  auto silent_members =
      FetchMembers(network, timer_, silent.address(), 42, 200 * kj::MILLISECONDS).wait(ws_);
  ASSERT_FALSE(silent_members.ok());
  EXPECT_NE(silent_members.status().message().find("timed out"), std::string::npos);
}

}  // namespace
}  // namespace kvstore::net
