// Tests of the replicated server core through its public API, on ServerCluster. Each test names
// the etcd behaviour it pins in the comment above it.

#include <algorithm>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/server/testing/server_cluster.h"
#include "gtest/gtest.h"

namespace kvstore::server {
namespace {

using testing::DeleteRequest;
using testing::GetRequest;
using testing::PutRequest;
using testing::RangeRequest;
using testing::ServerCluster;

// ---------------------------------------------------------------------------------------------
// Request builders and helpers

Request Typed(RequestType type) {
  Request r;
  r.type = type;
  return r;
}

mvcc::RequestOp PutOp(std::string key, std::string value, lease::LeaseId lease = 0) {
  mvcc::RequestOp op;
  op.kind = mvcc::RequestOp::Kind::kPut;
  op.put.key = std::move(key);
  op.put.value = std::move(value);
  op.put.lease = lease;
  return op;
}

mvcc::RequestOp DeleteOp(std::string key, std::string range_end = "") {
  mvcc::RequestOp op;
  op.kind = mvcc::RequestOp::Kind::kDeleteRange;
  op.delete_range.key = std::move(key);
  op.delete_range.range_end = std::move(range_end);
  return op;
}

mvcc::RequestOp RangeOp(std::string key) {
  mvcc::RequestOp op;
  op.kind = mvcc::RequestOp::Kind::kRange;
  op.range.key = std::move(key);
  return op;
}

mvcc::Compare VersionEquals(std::string key, int64_t version) {
  mvcc::Compare c;
  c.target = mvcc::Compare::Target::kVersion;
  c.result = mvcc::Compare::Result::kEqual;
  c.key = std::move(key);
  c.number = version;
  return c;
}

Request Txn(std::vector<mvcc::Compare> compare, std::vector<mvcc::RequestOp> success,
            std::vector<mvcc::RequestOp> failure = {}) {
  Request r = Typed(RequestType::kTxn);
  r.txn.compare = std::move(compare);
  r.txn.success = std::move(success);
  r.txn.failure = std::move(failure);
  return r;
}

Request RangeAt(std::string key, mvcc::Revision revision, bool serializable = false) {
  Request r = GetRequest(std::move(key), serializable);
  r.range.revision = revision;
  return r;
}

Request Compact(mvcc::Revision revision) {
  Request r = Typed(RequestType::kCompact);
  r.revision = revision;
  return r;
}

Request HashAt(mvcc::Revision revision) {
  Request r = Typed(RequestType::kHash);
  r.revision = revision;
  return r;
}

Request LeaseGrant(int64_t ttl_seconds, lease::LeaseId id = lease::kNoLease) {
  Request r = Typed(RequestType::kLeaseGrant);
  r.ttl_seconds = ttl_seconds;
  r.lease_id = id;
  return r;
}

Request WithLease(RequestType type, lease::LeaseId id) {
  Request r = Typed(type);
  r.lease_id = id;
  return r;
}

Request MemberAdd(std::string name, std::string url, bool is_learner) {
  Request r = Typed(RequestType::kMemberAdd);
  r.member.name = std::move(name);
  r.member.peer_urls = {std::move(url)};
  r.member.is_learner = is_learner;
  return r;
}

Request WithMember(RequestType type, raft::NodeId id) {
  Request r = Typed(type);
  r.member.id = id;
  return r;
}

// Calls and expects success. A missing response is a failure and comes back as an error status,
// so callers can stop with ASSERT_TRUE(response.status.ok()).
Response CallOk(ServerCluster& cluster, raft::NodeId id, Request request, int max_rounds = 100) {
  std::optional<Response> response = cluster.Call(id, std::move(request), max_rounds);
  if (!response.has_value()) {
    ADD_FAILURE() << "member " << id << " gave no response";
    Response none;
    none.status = absl::DeadlineExceededError("no response");
    return none;
  }
  EXPECT_TRUE(response->status.ok()) << "member " << id << ": " << response->status;
  return *response;
}

// Expects a refusal with `code` whose message mentions every string of `mentions` (the
// offending value and the limit).
void ExpectError(const std::optional<Response>& response, ErrorCode code,
                 std::initializer_list<std::string> mentions = {}) {
  ASSERT_TRUE(response.has_value()) << "no response; wanted " << ErrorCodeName(code);
  EXPECT_EQ(CodeOf(response->status), code)
      << "wanted " << ErrorCodeName(code) << ", got " << response->status;
  for (const std::string& mention : mentions) {
    EXPECT_NE(response->status.message().find(mention), absl::string_view::npos)
        << "message \"" << response->status.message() << "\" does not mention \"" << mention
        << "\"";
  }
}

std::vector<std::string> Keys(const Response& response) {
  std::vector<std::string> keys;
  for (const mvcc::KeyValue& kv : response.range.kvs) keys.push_back(kv.key);
  return keys;
}

std::optional<std::string> LocalValue(ServerCluster& cluster, raft::NodeId id,
                                      const std::string& key) {
  mvcc::RangeRequest request;
  request.key = key;
  auto range = cluster.server(id).store().Range(request);
  if (!range.ok() || range->kvs.empty()) return std::nullopt;
  return range->kvs[0].value;
}

raft::NodeId Follower(ServerCluster& cluster, raft::NodeId leader,
                      std::set<raft::NodeId> except = {}) {
  for (raft::NodeId id : cluster.ids()) {
    if (id != leader && except.count(id) == 0) return id;
  }
  return raft::kNoNode;
}

// Ticks until a member other than `old` leads.
raft::NodeId WaitForLeaderOtherThan(ServerCluster& cluster, raft::NodeId old,
                                    int max_rounds = 300) {
  for (int i = 0; i < max_rounds; ++i) {
    for (raft::NodeId id : cluster.ids()) {
      if (id != old && !cluster.member(id).crashed && cluster.server(id).is_leader()) return id;
    }
    cluster.TickAll();
  }
  return raft::kNoNode;
}

// Ticks until each of `ids` has applied everything the leader has; false if that takes too long.
// Ticks until `member` answers `request` (submitted earlier with Submit), at most `max_rounds`.
std::optional<Response> AwaitResponse(ServerCluster& cluster, raft::NodeId member,
                                      RequestId request, int max_rounds) {
  for (int i = 0; i < max_rounds; ++i) {
    cluster.TickAll();
    auto it = cluster.member(member).responses.find(request);
    if (it != cluster.member(member).responses.end()) return it->second;
  }
  return std::nullopt;
}

bool WaitForCatchUp(ServerCluster& cluster, std::vector<raft::NodeId> ids, int max_rounds = 300) {
  for (int i = 0; i < max_rounds; ++i) {
    const raft::NodeId leader = cluster.Leader();
    if (leader != raft::kNoNode) {
      const raft::Index target = cluster.server(leader).applied_index();
      bool all = true;
      for (raft::NodeId id : ids) all = all && cluster.server(id).applied_index() == target;
      if (all) return true;
    }
    cluster.TickAll();
  }
  return false;
}

// Ticks until `id` follows a leader again (after a partition heals).
bool WaitUntilFollowing(ServerCluster& cluster, raft::NodeId id, int max_rounds = 300) {
  for (int i = 0; i < max_rounds; ++i) {
    if (cluster.server(id).RaftStatus().soft_state.leader != raft::kNoNode) return true;
    cluster.TickAll();
  }
  return false;
}

uint64_t StoreHash(ServerCluster& cluster, raft::NodeId id, mvcc::Revision revision = 0) {
  auto hash = cluster.server(id).store().Hash(revision);
  EXPECT_TRUE(hash.ok()) << "member " << id << ": " << hash.status();
  return hash.ok() ? hash->hash : 0;
}

// Member records as comparable strings (id, name, URLs, role).
std::vector<std::string> MemberStrings(const std::vector<Member>& members) {
  std::vector<std::string> out;
  for (const Member& m : members) {
    std::string urls;
    for (const std::string& url : m.peer_urls) urls += url + ",";
    out.push_back(std::to_string(m.id) + "/" + m.name + "/" + urls +
                  (m.is_learner ? "/learner" : "/voter"));
  }
  return out;
}

// Each lease with its attached keys, as one member's lessor holds them.
std::map<lease::LeaseId, std::vector<std::string>> LeaseKeys(ServerCluster& cluster,
                                                             raft::NodeId id) {
  std::map<lease::LeaseId, std::vector<std::string>> out;
  const lease::Lessor& lessor = cluster.server(id).lessor();
  for (lease::LeaseId lease_id : lessor.Leases()) {
    auto info = lessor.TimeToLive(lease_id, 0);
    out[lease_id] = info.ok() ? info->keys : std::vector<std::string>{"<missing>"};
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Request ids, responses, headers

// etcd: every request gets a unique id (idutil.Generator) and exactly one answer (wait.Wait).
TEST(ServerTest, EveryRequestGetsOneResponseUnderAUniqueId) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  const lease::LeaseId lease_id =
      CallOk(cluster, leader, LeaseGrant(60, 7)).lease.id;  // attached to below
  ASSERT_EQ(lease_id, 7);
  std::map<raft::NodeId, std::map<RequestId, RequestType>> submitted;
  for (raft::NodeId id : cluster.ids()) {
    const std::string k = "k" + std::to_string(id);
    std::vector<Request> requests = {
        PutRequest(k, "v"),
        PutRequest("", "v"),  // refused at once
        GetRequest(k),
        GetRequest(k, /*serializable=*/true),
        DeleteRequest(k + "x"),
        Txn({VersionEquals(k, 0)}, {PutOp(k + "t", "v")}, {RangeOp(k)}),
        LeaseGrant(10),
        PutRequest(k + "l", "v", lease_id),
        WithLease(RequestType::kLeaseKeepAlive, lease_id),  // NOT_LEADER on followers
        Typed(RequestType::kMemberList),
        Typed(RequestType::kAlarmList),
        HashAt(0),
    };
    for (Request& request : requests) {
      const RequestType type = request.type;
      const RequestId request_id = cluster.server(id).Submit(std::move(request));
      EXPECT_TRUE(submitted[id].emplace(request_id, type).second)
          << "member " << id << " reused request id " << request_id;
    }
  }
  cluster.TickAll(5);
  for (raft::NodeId id : cluster.ids()) {
    const testing::MemberRecord& record = cluster.member(id);
    std::map<RequestId, int> answers;
    for (RequestId answered : record.response_log) ++answers[answered];
    for (const auto& [request_id, type] : submitted[id]) {
      EXPECT_EQ(answers[request_id], 1) << "member " << id << " request " << request_id;
      auto it = record.responses.find(request_id);
      ASSERT_NE(it, record.responses.end());
      EXPECT_EQ(it->second.type, type) << "member " << id << " request " << request_id;
    }
    // The only answers are to the requests submitted here (plus the grant above).
    EXPECT_LE(answers.size(), submitted[id].size() + 1) << "member " << id;
  }
}

// etcd: only the proposing member answers an entry (request ids embed the member id).
TEST(ServerTest, RequestOnOneMemberIsNeverAnsweredByAnotherMembersEntry) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  ASSERT_TRUE(CallOk(cluster, leader, PutRequest("doomed", "x")).status.ok());
  ASSERT_TRUE(CallOk(cluster, follower, GetRequest("doomed", true)).status.ok());
  // Both members have handed out as many ids, so the next ones are numerically equal (ids are
  // per member). The leader's put is appended before the follower's forwarded delete.
  const RequestId delete_id = cluster.server(follower).Submit(DeleteRequest("doomed"));
  const RequestId put_id = cluster.server(leader).Submit(PutRequest("other", "y"));
  cluster.TickAll(3);
  const Response& deleted = cluster.member(follower).responses.at(delete_id);
  const Response& put = cluster.member(leader).responses.at(put_id);
  ASSERT_TRUE(deleted.status.ok()) << deleted.status;
  ASSERT_TRUE(put.status.ok()) << put.status;
  EXPECT_EQ(deleted.type, RequestType::kDeleteRange);
  EXPECT_EQ(deleted.delete_range.deleted, 1);
  EXPECT_EQ(put.put.revision + 1, deleted.delete_range.revision);
  EXPECT_FALSE(LocalValue(cluster, follower, "doomed").has_value());
  EXPECT_EQ(std::count(cluster.member(follower).response_log.begin(),
                       cluster.member(follower).response_log.end(), delete_id),
            1);
}

// etcd: concurrent lease grants without an id on different members get distinct ids.
TEST(ServerTest, ConcurrentServerChosenLeaseIdsOnDifferentMembersDoNotCollide) {
  ServerCluster cluster({1, 2, 3});
  ASSERT_NE(cluster.WaitForLeader(), raft::kNoNode);
  std::map<raft::NodeId, RequestId> grants;
  for (raft::NodeId id : cluster.ids()) grants[id] = cluster.server(id).Submit(LeaseGrant(30));
  cluster.TickAll(3);
  std::set<lease::LeaseId> ids;
  for (const auto& [member, request_id] : grants) {
    const Response& grant = cluster.member(member).responses.at(request_id);
    EXPECT_TRUE(grant.status.ok()) << "member " << member << ": " << grant.status;
    ids.insert(grant.lease.id);
  }
  EXPECT_EQ(ids.size(), 3u);
}

// etcd: request ids never repeat on a member across restarts (idutil seeds from the clock).
TEST(ServerTest, RequestIdsNeverRepeatAcrossRestarts) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  std::set<RequestId> seen;
  for (int life = 0; life < 3; ++life) {
    for (int i = 0; i < 3; ++i) {
      const RequestId id = cluster.server(follower).Submit(GetRequest("k", true));
      EXPECT_TRUE(seen.insert(id).second) << "life " << life << " reused id " << id;
    }
    cluster.Stabilize();
    cluster.Crash(follower);
    cluster.Restart(follower);
    cluster.Stabilize();
  }
}

// etcd: every response header carries the member id, the store revision and the Raft term.
TEST(ServerTest, ResponsesCarryHeaderRevisionAndRaftTerm) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::Term term = cluster.server(leader).RaftStatus().hard_state.term;
  ASSERT_GT(term, 0u);
  const Response put = CallOk(cluster, leader, PutRequest("a", "1"));
  EXPECT_EQ(put.header.member_id, leader);
  EXPECT_EQ(put.header.revision, put.put.revision);
  EXPECT_EQ(put.header.raft_term, term);
  for (raft::NodeId id : cluster.ids()) {
    const Response get = CallOk(cluster, id, GetRequest("a"));
    EXPECT_EQ(get.header.member_id, id);
    EXPECT_EQ(get.header.revision, put.put.revision);
    EXPECT_EQ(get.header.raft_term, term);
    // Refusals carry a header too.
    auto refused = cluster.Call(id, PutRequest("", "x"));
    ASSERT_TRUE(refused.has_value());
    EXPECT_EQ(refused->header.revision, put.put.revision);
    EXPECT_EQ(refused->header.raft_term, term);
  }
}

// ---------------------------------------------------------------------------------------------
// Key-value operations through the log

// etcd: Put, Range, DeleteRange and Txn go through Raft; each write is one revision everywhere.
TEST(ServerTest, PutRangeDeleteTxnThroughTheLogOnThreeMembers) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const std::vector<raft::NodeId> ids = cluster.ids();
  // Writes from every member (followers forward their proposals).
  mvcc::Revision revision = 1;
  for (raft::NodeId id : ids) {
    const Response put = CallOk(cluster, id, PutRequest("dir/" + std::to_string(id), "v"));
    EXPECT_EQ(put.put.revision, ++revision);
  }
  const Response again = CallOk(cluster, leader, PutRequest("dir/1", "w"));
  EXPECT_EQ(again.put.revision, ++revision);
  for (raft::NodeId id : ids) {
    const Response range = CallOk(cluster, id, RangeRequest("dir/", "dir0"));
    EXPECT_EQ(Keys(range), (std::vector<std::string>{"dir/1", "dir/2", "dir/3"}));
    ASSERT_EQ(range.range.kvs.size(), 3u);
    EXPECT_EQ(range.range.kvs[0].value, "w");
    EXPECT_EQ(range.range.kvs[0].version, 2);
    EXPECT_EQ(range.range.kvs[0].create_revision, 2);
    EXPECT_EQ(range.range.kvs[0].mod_revision, revision);
  }
  // A txn: compare succeeds, both its writes share one revision.
  const Response txn = CallOk(
      cluster, ids[1],
      Txn({VersionEquals("dir/1", 2)}, {PutOp("dir/4", "t"), DeleteOp("dir/2"), RangeOp("dir/4")},
          {PutOp("failed", "x")}));
  EXPECT_TRUE(txn.txn.succeeded);
  EXPECT_EQ(txn.txn.revision, ++revision);
  ASSERT_EQ(txn.txn.responses.size(), 3u);
  EXPECT_EQ(txn.txn.responses[1].delete_range.deleted, 1);
  ASSERT_EQ(txn.txn.responses[2].range.kvs.size(), 1u);  // sees the txn's own put
  // A failing compare runs the failure branch.
  const Response failed = CallOk(
      cluster, ids[2], Txn({VersionEquals("dir/1", 9)}, {PutOp("x", "x")}, {PutOp("failed", "y")}));
  EXPECT_FALSE(failed.txn.succeeded);
  EXPECT_EQ(failed.txn.revision, ++revision);
  // A read-only txn creates no revision.
  const Response read_only = CallOk(cluster, ids[2], Txn({}, {RangeOp("dir/4")}));
  EXPECT_EQ(read_only.txn.revision, revision);
  // DeleteRange of a prefix: one revision for all keys.
  const Response deleted = CallOk(cluster, ids[0], DeleteRequest("dir/", "dir0"));
  EXPECT_EQ(deleted.delete_range.deleted, 3);
  EXPECT_EQ(deleted.delete_range.revision, ++revision);
  ASSERT_TRUE(WaitForCatchUp(cluster, ids));
  for (raft::NodeId id : ids) {
    EXPECT_EQ(cluster.server(id).store().current_revision(), revision) << "member " << id;
    const Response range =
        CallOk(cluster, id, RangeRequest(std::string(1, '\0'), std::string(1, '\0'), true));
    EXPECT_EQ(Keys(range), (std::vector<std::string>{"failed"})) << "member " << id;
  }
}

// etcd: a follower ReadIndex read sees the latest commit; a serializable read is local, at once.
TEST(ServerTest, LinearizableReadOnFollowerSeesLatestWriteSerializableMayBeStale) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  ASSERT_TRUE(CallOk(cluster, leader, PutRequest("k", "old")).status.ok());
  // The write is appended on the leader but not yet replicated when the reads are issued.
  const RequestId put = cluster.server(leader).Submit(PutRequest("k", "new"));
  const RequestId serializable = cluster.server(follower).Submit(GetRequest("k", true));
  const RequestId linearizable = cluster.server(follower).Submit(GetRequest("k"));
  cluster.Stabilize();
  testing::MemberRecord& record = cluster.member(follower);
  ASSERT_TRUE(cluster.member(leader).responses.count(put));
  ASSERT_TRUE(record.responses.count(serializable));
  ASSERT_TRUE(record.responses.count(linearizable));
  // The serializable read was answered during Submit, before the write reached the follower.
  ASSERT_EQ(record.responses.at(serializable).range.kvs.size(), 1u);
  EXPECT_EQ(record.responses.at(serializable).range.kvs[0].value, "old");
  EXPECT_LT(std::find(record.response_log.begin(), record.response_log.end(), serializable),
            std::find(record.response_log.begin(), record.response_log.end(), linearizable));
  const Response& read = record.responses.at(linearizable);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ASSERT_EQ(read.range.kvs.size(), 1u);
  EXPECT_EQ(read.range.kvs[0].value, "new");
  EXPECT_EQ(read.header.revision, cluster.member(leader).responses.at(put).put.revision);
}

// Reads submitted between two Readies share one ReadIndex, so a burst of them costs the leader
// one heartbeat round, not one per read (etcd's linearizableReadLoop batches them too); a read
// submitted after that Ready does not wait for the round that is out: it gets its own.
TEST(ServerTest, LinearizableReadsArrivingTogetherShareOneHeartbeatRound) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_TRUE(CallOk(cluster, leader, PutRequest("k", "v")).status.ok());
  cluster.Stabilize();
  cluster.in_flight().clear();
  auto heartbeats = [&cluster] {
    int n = 0;
    for (const raft::Message& m : cluster.in_flight()) {
      if (m.type == raft::MessageType::kHeartbeat) ++n;
    }
    return n;
  };
  std::vector<RequestId> reads;
  for (int i = 0; i < 5; ++i) reads.push_back(cluster.server(leader).Submit(GetRequest("k")));
  ASSERT_TRUE(cluster.ProcessReadyOnce(leader));
  EXPECT_EQ(heartbeats(), 2) << "one heartbeat per follower for the five reads";
  const RequestId late = cluster.server(leader).Submit(GetRequest("k"));
  ASSERT_TRUE(cluster.ProcessReadyOnce(leader));
  EXPECT_EQ(heartbeats(), 4);
  cluster.Stabilize();
  reads.push_back(late);
  for (RequestId id : reads) {
    ASSERT_TRUE(cluster.member(leader).responses.count(id)) << id;
    const Response& read = cluster.member(leader).responses.at(id);
    ASSERT_TRUE(read.status.ok()) << read.status;
    ASSERT_EQ(read.range.kvs.size(), 1u);
    EXPECT_EQ(read.range.kvs[0].value, "v");
  }
}

// etcd: a partitioned member serves serializable (stale) reads but not linearizable ones.
TEST(ServerTest, IsolatedMemberServesSerializableButNotLinearizableReads) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  ASSERT_TRUE(CallOk(cluster, leader, PutRequest("k", "v1")).status.ok());
  cluster.Isolate(follower);
  ASSERT_TRUE(CallOk(cluster, leader, PutRequest("k", "v2")).status.ok());
  auto stale = cluster.Call(follower, GetRequest("k", true), /*max_rounds=*/0);
  ASSERT_TRUE(stale.has_value()) << "a serializable read must be answered without ticking";
  ASSERT_TRUE(stale->status.ok()) << stale->status;
  ASSERT_EQ(stale->range.kvs.size(), 1u);
  EXPECT_EQ(stale->range.kvs[0].value, "v1");
  auto linearizable = cluster.Call(follower, GetRequest("k"));
  ASSERT_TRUE(linearizable.has_value());
  const ErrorCode code = CodeOf(linearizable->status);
  EXPECT_TRUE(code == ErrorCode::kTimeout || code == ErrorCode::kNoLeader ||
              code == ErrorCode::kLeadershipChanged)
      << linearizable->status;
  cluster.Heal();
  ASSERT_TRUE(WaitUntilFollowing(cluster, follower));
  const Response healed = CallOk(cluster, follower, GetRequest("k"));
  ASSERT_EQ(healed.range.kvs.size(), 1u);
  EXPECT_EQ(healed.range.kvs[0].value, "v2");
}

// ---------------------------------------------------------------------------------------------
// Errors with stable codes

// etcd: EmptyKey, KeyTooLarge, ValueTooLarge, RequestTooLarge, TooManyOps, txn ops included.
TEST(ServerTest, SizeAndShapeErrorsNameTheValueAndTheLimit) {
  ServerCluster cluster({1, 2, 3}, [](ServerConfig& c) {
    c.max_request_bytes = 1024;
    c.max_txn_ops = 4;
  });
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  for (raft::NodeId id : {leader, follower}) {
    ExpectError(cluster.Call(id, PutRequest("", "v")), ErrorCode::kEmptyKey, {"empty"});
    ExpectError(cluster.Call(id, GetRequest("")), ErrorCode::kEmptyKey);
    ExpectError(cluster.Call(id, DeleteRequest("")), ErrorCode::kEmptyKey);
    ExpectError(cluster.Call(id, PutRequest(std::string(kMaxKeyBytes + 1, 'k'), "v")),
                ErrorCode::kKeyTooLarge,
                {std::to_string(kMaxKeyBytes + 1), std::to_string(kMaxKeyBytes)});
    ExpectError(cluster.Call(id, PutRequest("k", std::string(2000, 'v'))),
                ErrorCode::kValueTooLarge, {"2000", "1024"});
    // Under the value limit, but the whole request is not.
    ExpectError(cluster.Call(id, PutRequest("k", std::string(1020, 'v'))),
                ErrorCode::kRequestTooLarge, {"1024"});
    ExpectError(cluster.Call(id, Txn({}, {PutOp("a", std::string(400, 'v')),
                                          PutOp("b", std::string(400, 'v')),
                                          PutOp("c", std::string(400, 'v'))})),
                ErrorCode::kRequestTooLarge, {"1024"});
    ExpectError(cluster.Call(id, Txn({}, {PutOp("a", "1"), PutOp("b", "1"), PutOp("c", "1"),
                                          PutOp("d", "1"), PutOp("e", "1")})),
                ErrorCode::kTooManyOps, {"5", "4"});
    std::vector<mvcc::Compare> compares(5, VersionEquals("a", 0));
    ExpectError(cluster.Call(id, Txn(compares, {})), ErrorCode::kTooManyOps, {"5", "4"});
    // The operations inside a txn are checked like the requests they stand for.
    ExpectError(cluster.Call(id, Txn({}, {PutOp("", "v")})), ErrorCode::kEmptyKey);
    ExpectError(cluster.Call(id, Txn({}, {}, {DeleteOp("")})), ErrorCode::kEmptyKey);
    ExpectError(cluster.Call(id, Txn({}, {RangeOp("")})), ErrorCode::kEmptyKey);
    ExpectError(cluster.Call(id, Txn({}, {PutOp(std::string(kMaxKeyBytes + 1, 'k'), "v")})),
                ErrorCode::kKeyTooLarge, {std::to_string(kMaxKeyBytes)});
    ExpectError(cluster.Call(id, Txn({}, {PutOp("k", std::string(2000, 'v'))})),
                ErrorCode::kValueTooLarge, {"2000", "1024"});
  }
  // Nothing of the above was written.
  EXPECT_EQ(CallOk(cluster, leader, GetRequest("k")).header.revision, 1);
}

// etcd: ErrGRPCDuplicateKey for a key put twice in a txn; ErrGRPCLeaseNotFound for unknown ids.
TEST(ServerTest, DuplicateKeyAndLeaseNotFound) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  ExpectError(cluster.Call(follower, Txn({}, {PutOp("dup", "1"), PutOp("dup", "2")})),
              ErrorCode::kDuplicateKey, {"dup"});
  ExpectError(cluster.Call(leader, Txn({}, {}, {PutOp("dup", "1"), PutOp("dup", "2")})),
              ErrorCode::kDuplicateKey, {"dup"});
  ExpectError(cluster.Call(follower, PutRequest("k", "v", 12345)), ErrorCode::kLeaseNotFound,
              {"12345"});
  ExpectError(cluster.Call(leader, Txn({}, {PutOp("k", "v", 777)})), ErrorCode::kLeaseNotFound,
              {"777"});
  ExpectError(cluster.Call(leader, WithLease(RequestType::kLeaseKeepAlive, 555)),
              ErrorCode::kLeaseNotFound, {"555"});
  ExpectError(cluster.Call(follower, WithLease(RequestType::kLeaseRevoke, 556)),
              ErrorCode::kLeaseNotFound, {"556"});
  ExpectError(cluster.Call(leader, WithLease(RequestType::kLeaseTimeToLive, 557)),
              ErrorCode::kLeaseNotFound, {"557"});
  EXPECT_EQ(CallOk(cluster, leader, GetRequest("dup")).header.revision, 1);
}

// etcd 3.4's v3rpc checks a txn before proposing it, in this order: its count of operations
// (a nested txn's limit is the limit less its holder's count), the compares' keys, each
// operation (a put's checkPutRequest: empty key, value provided, lease provided), then duplicate
// keys; a missing lease is found when the txn applies. A txn breaking two rules is refused for
// the first, as Debian's etcd 3.4.23 answered each case below.
TEST(ServerTest, TxnValidationFollowsEtcdsOrder) {
  ServerCluster cluster({1, 2, 3}, [](ServerConfig& c) { c.max_txn_ops = 8; });
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  auto ops = [](int n, bool distinct) {
    std::vector<mvcc::RequestOp> out;
    for (int i = 0; i < n; ++i) out.push_back(PutOp(distinct ? "n" + std::to_string(i) : "k", ""));
    return out;
  };
  mvcc::RequestOp ignore_value = PutOp("k", "v");
  ignore_value.put.ignore_value = true;
  mvcc::RequestOp ignore_lease = PutOp("k", "", 5);
  ignore_lease.put.ignore_lease = true;
  auto nested = [](std::vector<mvcc::RequestOp> success,
                   std::vector<mvcc::RequestOp> failure = {}) {
    auto txn = std::make_shared<mvcc::TxnRequest>();
    txn->success = std::move(success);
    txn->failure = std::move(failure);
    mvcc::RequestOp op;
    op.kind = mvcc::RequestOp::Kind::kTxn;
    op.txn = std::move(txn);
    return op;
  };
  std::vector<mvcc::Compare> three(3, VersionEquals("c", 0));
  mvcc::Compare no_key = VersionEquals("", 0);
  for (raft::NodeId id : {leader, follower}) {
    // Too many operations before a duplicate key.
    ExpectError(cluster.Call(id, Txn({}, ops(9, false))), ErrorCode::kTooManyOps);
    // ... and before a compare without a key.
    ExpectError(cluster.Call(id, Txn({no_key}, ops(9, true))), ErrorCode::kTooManyOps);
    // A nested txn's limit: 8 less its holder's 3 compares, so 6 operations are too many
    // (the limit alone would take them), duplicates or not.
    ExpectError(cluster.Call(id, Txn(three, {nested(ops(6, true))})), ErrorCode::kTooManyOps);
    ExpectError(cluster.Call(id, Txn(three, {nested(ops(6, false))})), ErrorCode::kTooManyOps);
    // A compare without a key before a duplicate.
    ExpectError(cluster.Call(id, Txn({no_key}, ops(2, false))), ErrorCode::kEmptyKey);
    // A put's own checks before a duplicate, wherever the put stands.
    ExpectError(cluster.Call(id, Txn({}, {PutOp("k", ""), ignore_value})),
                ErrorCode::kValueProvided);
    ExpectError(cluster.Call(id, Txn({}, {PutOp("k", ""), PutOp("k", "")}, {ignore_lease})),
                ErrorCode::kLeaseProvided);
    ExpectError(cluster.Call(id, Txn({}, {PutOp("k", ""), PutOp("k", ""), PutOp("", "")})),
                ErrorCode::kEmptyKey);
    // A duplicate key before a missing lease (found only when the txn applies).
    ExpectError(cluster.Call(id, Txn({}, {PutOp("k", "", 12345), PutOp("k", "")})),
                ErrorCode::kDuplicateKey);
    // A put alone: its checks come before the missing key that ignore_value would meet.
    Request put = PutRequest("missing", "v");
    put.put.ignore_value = true;
    ExpectError(cluster.Call(id, put), ErrorCode::kValueProvided);
    // An operation holding no request (net/etcd sends etcd's empty RequestOp as a nested txn
    // without one): KEY_NOT_FOUND where checkRequestOp meets it, after the count of operations
    // (nested too), after the compares' keys and the operations before it, before those after.
    mvcc::RequestOp empty;
    empty.kind = mvcc::RequestOp::Kind::kTxn;  // its txn stays null
    ExpectError(cluster.Call(id, Txn({}, {empty})), ErrorCode::kKeyNotFound, {"no request"});
    std::vector<mvcc::RequestOp> many = ops(8, true);
    many.insert(many.begin(), empty);
    ExpectError(cluster.Call(id, Txn({}, many)), ErrorCode::kTooManyOps);
    ExpectError(
        cluster.Call(id, Txn(three, {nested({empty, PutOp("a", ""), PutOp("b", ""), PutOp("c", ""),
                                             PutOp("d", ""), PutOp("e", "")})})),
        ErrorCode::kTooManyOps);
    ExpectError(cluster.Call(id, Txn({no_key}, {empty})), ErrorCode::kEmptyKey);
    ExpectError(cluster.Call(id, Txn({}, {PutOp("", "")}, {empty})), ErrorCode::kEmptyKey);
    ExpectError(cluster.Call(id, Txn({}, {empty}, {PutOp("", "")})), ErrorCode::kKeyNotFound);
    ExpectError(cluster.Call(id, Txn({}, {nested({RangeOp("k"), empty})})),
                ErrorCode::kKeyNotFound);
  }
  // Within the limits: 5 nested operations under 3 compares, one key in both branches of a
  // nested txn (they exclude each other).
  EXPECT_TRUE(CallOk(cluster, leader, Txn(three, {nested(ops(5, true))})).txn.succeeded);
  CallOk(cluster, leader, Txn({}, {nested({PutOp("k", "1")}, {PutOp("k", "2")})}));
  EXPECT_EQ(CallOk(cluster, leader, GetRequest("k")).range.kvs.size(), 1u);
}

// etcd panics ("range cannot find rev") when its key index names a revision its backend does
// not hold. Here the Ready carries a storage failure (kDataLoss), which the driver stops the
// member on without carrying the Ready out: the read is never answered short (count 1, no kvs).
TEST(ServerTest, ARangeWhoseRecordTheBackendLostStopsTheMember) {
  ServerCluster cluster({1});
  ASSERT_EQ(cluster.WaitForLeader(), 1u);
  CallOk(cluster, 1, PutRequest("k", "v"));
  CallOk(cluster, 1, PutRequest("other", "v"));
  // The backend loses k's record; the store's index still names it.
  mvcc::MemoryBackend& backend = cluster.member(1).backend;
  std::vector<std::string> records;
  backend.Range(mvcc::Bucket::kKey, "", "", [&](absl::string_view key, absl::string_view) {
    records.emplace_back(key);
    return true;
  });
  ASSERT_EQ(records.size(), 2u);
  backend.Delete(mvcc::Bucket::kKey, records.front());  // revision 2: k
  Server& server = cluster.server(1);
  ASSERT_FALSE(server.HasReady());
  // A read of another key is answered; k's is not.
  const RequestId fine = server.Submit(GetRequest("other", /*serializable=*/true));
  ASSERT_TRUE(server.HasReady());
  const Ready& first = server.GetReady();
  EXPECT_TRUE(first.storage_failure.ok()) << first.storage_failure;
  ASSERT_EQ(first.responses.size(), 1u);
  EXPECT_EQ(first.responses[0].request_id, fine);
  EXPECT_EQ(first.responses[0].range.kvs.size(), 1u);
  server.Advance();
  const RequestId lost = server.Submit(GetRequest("k", /*serializable=*/true));
  ASSERT_TRUE(server.HasReady());
  const Ready& ready = server.GetReady();
  EXPECT_EQ(ready.storage_failure.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(ready.storage_failure.message().find("range cannot find rev (2,0) of key \"k\""),
            absl::string_view::npos)
      << ready.storage_failure;
  // What the Ready holds for the read (never sent) is a refusal, not a short answer.
  ASSERT_EQ(ready.responses.size(), 1u);
  EXPECT_EQ(ready.responses[0].request_id, lost);
  EXPECT_FALSE(ready.responses[0].status.ok());
  EXPECT_TRUE(ready.responses[0].range.kvs.empty());
}

// etcd: ErrCompacted / ErrFutureRev for reads, compactions and hashes outside the history.
TEST(ServerTest, CompactedAndFutureRevisions) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  for (int i = 0; i < 5; ++i) CallOk(cluster, leader, PutRequest("k", std::to_string(i)));
  // Revisions 2..6 hold k=0..4.
  EXPECT_EQ(CallOk(cluster, follower, Compact(4)).compact.revision, 6);
  for (raft::NodeId id : cluster.ids()) {
    ExpectError(cluster.Call(id, RangeAt("k", 3)), ErrorCode::kCompacted, {"3", "4"});
    ExpectError(cluster.Call(id, RangeAt("k", 3, true)), ErrorCode::kCompacted, {"3", "4"});
    ExpectError(cluster.Call(id, RangeAt("k", 100)), ErrorCode::kFutureRevision, {"100", "6"});
    ExpectError(cluster.Call(id, HashAt(3)), ErrorCode::kCompacted, {"3", "4"});
    ExpectError(cluster.Call(id, HashAt(7)), ErrorCode::kFutureRevision, {"7", "6"});
    const Response at4 = CallOk(cluster, id, RangeAt("k", 4));
    ASSERT_EQ(at4.range.kvs.size(), 1u);
    EXPECT_EQ(at4.range.kvs[0].value, "2");
  }
  ExpectError(cluster.Call(leader, Compact(4)), ErrorCode::kCompacted, {"4"});
  ExpectError(cluster.Call(follower, Compact(9)), ErrorCode::kFutureRevision, {"9", "6"});
  mvcc::RequestOp old_read = RangeOp("k");
  old_read.range.revision = 2;
  ExpectError(cluster.Call(leader, Txn({}, {old_read})), ErrorCode::kCompacted, {"2", "4"});
}

// etcd: ErrGRPCNoLeader (no known leader), ErrGRPCNotLeader, ErrGRPCMemberNotFound.
TEST(ServerTest, NoLeaderNotLeaderMemberNotFound) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  const lease::LeaseId lease_id = CallOk(cluster, leader, LeaseGrant(60)).lease.id;
  ExpectError(cluster.Call(follower, WithLease(RequestType::kLeaseKeepAlive, lease_id)),
              ErrorCode::kNotLeader);
  // Remaining TTLs are tracked by the leader only; a follower does not make one up.
  ExpectError(cluster.Call(follower, WithLease(RequestType::kLeaseTimeToLive, lease_id)),
              ErrorCode::kNotLeader);
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMemberPromote, follower)),
              ErrorCode::kLearnerNotPromotable, {std::to_string(follower)});
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMemberRemove, 99)),
              ErrorCode::kMemberNotFound, {"99"});
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMemberPromote, 98)),
              ErrorCode::kMemberNotFound, {"98"});
  // A follower judges no promotion from its own member list, which may lag the leader's (a
  // learner it has not applied yet): it answers kNotLeader, which the node forwards, as etcd's
  // follower forwards the promotion to its leader.
  ExpectError(cluster.Call(follower, WithMember(RequestType::kMemberPromote, 98)),
              ErrorCode::kNotLeader);
  ExpectError(cluster.Call(follower, WithMember(RequestType::kMemberPromote, follower)),
              ErrorCode::kNotLeader);
  // Isolated long enough, the follower campaigns and forgets the leader.
  cluster.Isolate(follower);
  cluster.TickAll(50);
  ExpectError(cluster.Call(follower, PutRequest("k", "v")), ErrorCode::kNoLeader);
  ExpectError(cluster.Call(follower, LeaseGrant(10)), ErrorCode::kNoLeader);
  ExpectError(cluster.Call(follower, GetRequest("k")), ErrorCode::kNoLeader);
  cluster.Heal();
  ASSERT_TRUE(WaitUntilFollowing(cluster, follower));
  EXPECT_TRUE(CallOk(cluster, follower, PutRequest("k", "v")).status.ok());
}

// etcd's MoveLeader: the answer comes once the old leader sees the transferee lead, not when
// the transfer starts (so a client that then asks who leads hears the transferee), with a
// header of the new term. A move to the leader itself is answered at once.
TEST(ServerTest, MoveLeaderIsAnsweredOnceTheTransfereeLeads) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId transferee = Follower(cluster, leader);
  const raft::Term term = cluster.server(leader).hard_state().term;
  EXPECT_TRUE(CallOk(cluster, leader, WithMember(RequestType::kMoveLeader, leader)).status.ok());
  ASSERT_EQ(cluster.Leader(), leader);

  const RequestId move =
      cluster.server(leader).Submit(WithMember(RequestType::kMoveLeader, transferee));
  ASSERT_TRUE(cluster.ProcessReadyOnce(leader)) << "the transfer starts";
  EXPECT_EQ(cluster.member(leader).responses.count(move), 0u)
      << "answered when the transfer started, before " << transferee << " leads";
  EXPECT_EQ(cluster.server(leader).lead_transferee(), transferee);

  cluster.Stabilize();
  ASSERT_EQ(cluster.member(leader).responses.count(move), 1u);
  const Response& answer = cluster.member(leader).responses.at(move);
  EXPECT_TRUE(answer.status.ok()) << answer.status;
  EXPECT_EQ(cluster.server(leader).soft_state().leader, transferee);
  EXPECT_FALSE(cluster.server(leader).is_leader());
  EXPECT_GT(answer.header.raft_term, term);
  EXPECT_EQ(cluster.Leader(), transferee);
}

// etcd's ErrTimeoutLeaderTransfer: a transferee that cannot be reached never leads; Raft aborts
// the transfer after an election timeout, and the move is answered LEADER_TRANSFER_TIMEOUT at
// the request timeout (request_timeout_ticks, 50 here), once. Proposals are refused while the
// transfer is under way (Raft thesis §3.10) and accepted again once it is aborted, with the move
// still waiting.
TEST(ServerTest, MoveLeaderToAnUnreachableTransfereeTimesOut) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId transferee = Follower(cluster, leader);
  cluster.Cut(leader, transferee);
  const RequestId move =
      cluster.server(leader).Submit(WithMember(RequestType::kMoveLeader, transferee));
  cluster.Stabilize();
  ASSERT_EQ(cluster.server(leader).lead_transferee(), transferee);
  ExpectError(cluster.Call(leader, PutRequest("during", "v"), 0), ErrorCode::kNoLeader,
              {"transfer"});

  // Raft gives up after an election timeout (10 ticks); the leader takes proposals again.
  EXPECT_FALSE(AwaitResponse(cluster, leader, move, 20).has_value());
  EXPECT_EQ(cluster.server(leader).lead_transferee(), raft::kNoNode);
  EXPECT_EQ(cluster.Leader(), leader);
  CallOk(cluster, leader, PutRequest("after-abort", "v"));

  const std::optional<Response> answer = AwaitResponse(cluster, leader, move, 40);
  ExpectError(answer, ErrorCode::kLeaderTransferTimeout,
              {"etcdserver: request timed out, leader transfer took too long",
               absl::StrCat(absl::Hex(transferee)), "50 ticks"});
  cluster.TickAll(60);
  EXPECT_EQ(std::count(cluster.member(leader).response_log.begin(),
                       cluster.member(leader).response_log.end(), move),
            1);
  EXPECT_EQ(cluster.Leader(), leader);
}

// etcd's MoveLeader refusals: a transferee that is not a member, or is a learner, is
// ErrBadLeaderTransferee (MEMBER_NOT_FOUND here, with etcd's words and the id in hex); a member
// that does not lead refuses (v3rpc's ErrGRPCNotLeader). None starts a transfer.
TEST(ServerTest, MoveLeaderRefusesBadTransfereesAndNonLeaders) {
  ServerCluster cluster({1, 2, 3}, nullptr, {4});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader, {4});
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMoveLeader, 0x99)),
              ErrorCode::kMemberNotFound,
              {"etcdserver: bad leader transferee", "99", "not a member"});
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMoveLeader, 4)),
              ErrorCode::kMemberNotFound, {"etcdserver: bad leader transferee", "4", "learner"});
  ExpectError(cluster.Call(follower, WithMember(RequestType::kMoveLeader, follower)),
              ErrorCode::kNotLeader);
  EXPECT_EQ(cluster.server(leader).lead_transferee(), raft::kNoNode);
  EXPECT_EQ(cluster.Leader(), leader);
}

// etcd: ErrGRPCTimeout, answered once, for a proposal on the minority side of a partition.
TEST(ServerTest, WriteOnMinoritySideTimesOut) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  cluster.Isolate(leader);
  // Still leader: the proposal is appended locally and can never commit.
  const RequestId put = cluster.server(leader).Submit(PutRequest("lost", "v"));
  const std::optional<Response> response = AwaitResponse(cluster, leader, put, 100);
  ExpectError(response, ErrorCode::kTimeout, {"unknown"});
  const raft::NodeId new_leader = WaitForLeaderOtherThan(cluster, leader);
  ASSERT_NE(new_leader, raft::kNoNode);
  CallOk(cluster, new_leader, PutRequest("kept", "v"));
  cluster.Heal();
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  EXPECT_EQ(std::count(cluster.member(leader).response_log.begin(),
                       cluster.member(leader).response_log.end(), put),
            1);
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_FALSE(LocalValue(cluster, id, "lost").has_value()) << "member " << id;
    EXPECT_EQ(LocalValue(cluster, id, "kept"), "v") << "member " << id;
  }
}

// A write appended by a deposed leader whose log position another leader's entry takes is
// answered LEADERSHIP_CHANGED (it certainly did not apply) as soon as the replacement applies,
// not left to time out.
TEST(ServerTest, WriteReplacedByAnotherLeadersEntryIsLeadershipChanged) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  cluster.Isolate(leader);
  const RequestId put = cluster.server(leader).Submit(PutRequest("replaced", "v"));
  const raft::NodeId new_leader = WaitForLeaderOtherThan(cluster, leader);
  ASSERT_NE(new_leader, raft::kNoNode);
  CallOk(cluster, new_leader, PutRequest("kept", "v"));
  cluster.Heal();
  const std::optional<Response> response = AwaitResponse(cluster, leader, put, 30);
  ExpectError(response, ErrorCode::kLeadershipChanged, {"replaced"});
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_FALSE(LocalValue(cluster, id, "replaced").has_value()) << "member " << id;
    EXPECT_EQ(LocalValue(cluster, id, "kept"), "v") << "member " << id;
  }
}

// ---------------------------------------------------------------------------------------------
// Leases

// etcd: LeaseGrant/KeepAlive/TimeToLive/Leases/Revoke; a revoke deletes its keys in one revision.
TEST(ServerTest, LeaseLifecycleEndToEnd) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  const Response chosen = CallOk(cluster, follower, LeaseGrant(1));
  EXPECT_NE(chosen.lease.id, lease::kNoLease);
  EXPECT_EQ(chosen.lease.granted_ttl_seconds, 5);  // min_lease_ttl_seconds
  const Response mine = CallOk(cluster, leader, LeaseGrant(30, 42));
  EXPECT_EQ(mine.lease.id, 42);
  EXPECT_EQ(mine.lease.granted_ttl_seconds, 30);
  ExpectError(cluster.Call(follower, LeaseGrant(30, 42)), ErrorCode::kLeaseExists, {"42"});
  ExpectError(cluster.Call(leader, LeaseGrant(0)), ErrorCode::kInvalidArgument, {"0"});
  CallOk(cluster, follower, PutRequest("a", "1", 42));
  CallOk(cluster, leader, PutRequest("b", "2", 42));
  CallOk(cluster, leader, Txn({}, {PutOp("c", "3", 42), PutOp("d", "4", chosen.lease.id)}));
  CallOk(cluster, leader, PutRequest("free", "x"));
  // Moving a key to another lease detaches it from the first.
  CallOk(cluster, leader, PutRequest("d", "4", chosen.lease.id));

  const Response keepalive = CallOk(cluster, leader, WithLease(RequestType::kLeaseKeepAlive, 42));
  EXPECT_EQ(keepalive.lease.id, 42);
  EXPECT_EQ(keepalive.lease.remaining_ttl_seconds, 30);
  const Response ttl = CallOk(cluster, leader, WithLease(RequestType::kLeaseTimeToLive, 42));
  EXPECT_EQ(ttl.lease.granted_ttl_seconds, 30);
  EXPECT_GT(ttl.lease.remaining_ttl_seconds, 0);
  EXPECT_LE(ttl.lease.remaining_ttl_seconds, 30);
  EXPECT_EQ(ttl.lease.keys, (std::vector<std::string>{"a", "b", "c"}));
  const std::vector<lease::LeaseId> both = std::vector<lease::LeaseId>{
      std::min<lease::LeaseId>(42, chosen.lease.id), std::max<lease::LeaseId>(42, chosen.lease.id)};
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_EQ(CallOk(cluster, id, Typed(RequestType::kLeaseLeases)).leases, both);
    EXPECT_EQ(LeaseKeys(cluster, id), LeaseKeys(cluster, leader)) << "member " << id;
  }

  const mvcc::Revision before = cluster.server(leader).store().current_revision();
  const Response revoked = CallOk(cluster, follower, WithLease(RequestType::kLeaseRevoke, 42));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    const mvcc::Store& store = cluster.server(id).store();
    EXPECT_EQ(store.current_revision(), before + 1) << "member " << id;
    for (const char* key : {"a", "b", "c"}) {
      EXPECT_FALSE(LocalValue(cluster, id, key).has_value()) << "member " << id << " " << key;
      const Response old = CallOk(cluster, id, RangeAt(key, before, true));
      EXPECT_EQ(old.range.kvs.size(), 1u) << "member " << id << " " << key;
    }
    EXPECT_EQ(LocalValue(cluster, id, "d"), "4");
    EXPECT_EQ(LocalValue(cluster, id, "free"), "x");
    EXPECT_EQ(cluster.server(id).lessor().Leases(), std::vector<lease::LeaseId>{chosen.lease.id});
    EXPECT_EQ(StoreHash(cluster, id), StoreHash(cluster, leader)) << "member " << id;
  }
  EXPECT_EQ(revoked.header.revision, before + 1);
  ExpectError(cluster.Call(leader, WithLease(RequestType::kLeaseKeepAlive, 42)),
              ErrorCode::kLeaseNotFound, {"42"});
  ExpectError(cluster.Call(leader, PutRequest("a", "1", 42)), ErrorCode::kLeaseNotFound, {"42"});
}

// etcd: the leader proposes an expired lease's revocation; replicas delete at the same revision.
TEST(ServerTest, LeaseExpiresThroughTheLogOnEveryReplica) {
  ServerCluster cluster({1, 2, 3});  // tick_ms 100: a 5 s TTL is 50 ticks
  const raft::NodeId leader = cluster.WaitForLeader();
  const lease::LeaseId id = CallOk(cluster, leader, LeaseGrant(5)).lease.id;
  CallOk(cluster, leader, PutRequest("x", "1", id));
  CallOk(cluster, Follower(cluster, leader), Txn({}, {PutOp("y", "2", id)}));
  CallOk(cluster, leader, PutRequest("z", "3"));
  for (int i = 0; i < 3; ++i) {
    cluster.TickAll(30);
    const Response renewed = CallOk(cluster, leader, WithLease(RequestType::kLeaseKeepAlive, id));
    EXPECT_EQ(renewed.lease.remaining_ttl_seconds, 5);
  }
  // 90 ticks since the grant, alive thanks to the keep-alives; now stop them.
  const mvcc::Revision before = cluster.server(leader).store().current_revision();
  cluster.TickAll(45);
  for (raft::NodeId member : cluster.ids()) {
    EXPECT_EQ(LocalValue(cluster, member, "x"), "1") << "member " << member;
  }
  cluster.TickAll(10);
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId member : cluster.ids()) {
    const mvcc::Store& store = cluster.server(member).store();
    EXPECT_EQ(store.current_revision(), before + 1) << "member " << member;
    EXPECT_FALSE(LocalValue(cluster, member, "x").has_value()) << "member " << member;
    EXPECT_FALSE(LocalValue(cluster, member, "y").has_value()) << "member " << member;
    EXPECT_EQ(LocalValue(cluster, member, "z"), "3") << "member " << member;
    EXPECT_TRUE(cluster.server(member).lessor().Leases().empty()) << "member " << member;
    EXPECT_EQ(StoreHash(cluster, member), StoreHash(cluster, leader)) << "member " << member;
  }
  ExpectError(cluster.Call(leader, WithLease(RequestType::kLeaseKeepAlive, id)),
              ErrorCode::kLeaseNotFound);
}

// etcd: a new leader extends every lease's TTL (lessor.Promote), so none expires early.
TEST(ServerTest, LeaderChangeDoesNotExpireLeasesEarly) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId old_leader = cluster.WaitForLeader();
  const lease::LeaseId id = CallOk(cluster, old_leader, LeaseGrant(5)).lease.id;
  CallOk(cluster, old_leader, PutRequest("x", "1", id));
  cluster.TickAll(30);
  cluster.Isolate(old_leader);
  const raft::NodeId new_leader = WaitForLeaderOtherThan(cluster, old_leader);
  ASSERT_NE(new_leader, raft::kNoNode);
  // The grant is more than 5 s old now, yet the new leader counts the TTL from its election.
  cluster.TickAll(50);
  auto ttl = cluster.Call(new_leader, WithLease(RequestType::kLeaseTimeToLive, id));
  ASSERT_TRUE(ttl.has_value());
  ASSERT_TRUE(ttl->status.ok()) << ttl->status;
  // Alive (its keys still there); its remaining TTL (whole seconds, truncated) is below 5 s.
  EXPECT_EQ(ttl->lease.keys, std::vector<std::string>{"x"});
  EXPECT_LT(ttl->lease.remaining_ttl_seconds, 5);
  EXPECT_EQ(LocalValue(cluster, new_leader, "x"), "1");
  // Not renewed, it does expire under the new leader.
  cluster.TickAll(20);
  EXPECT_FALSE(LocalValue(cluster, new_leader, "x").has_value());
  cluster.Heal();
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId member : cluster.ids()) {
    EXPECT_FALSE(LocalValue(cluster, member, "x").has_value()) << "member " << member;
    EXPECT_EQ(StoreHash(cluster, member), StoreHash(cluster, new_leader)) << "member " << member;
  }
}

// ---------------------------------------------------------------------------------------------
// Membership

// etcd: MemberList/Add(learner, voter)/Promote(ErrLearnerNotReady)/Remove, max learners.
TEST(ServerTest, MembershipLearnerPromoteAddRemove) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  const Response list = CallOk(cluster, follower, Typed(RequestType::kMemberList));
  EXPECT_EQ(MemberStrings(list.members),
            (std::vector<std::string>{"1/m1/mem://1,/voter", "2/m2/mem://2,/voter",
                                      "3/m3/mem://3,/voter"}));
  for (int i = 0; i < 10; ++i) CallOk(cluster, leader, PutRequest("k" + std::to_string(i), "v"));

  ExpectError(cluster.Call(leader, MemberAdd("dup", "mem://2", true)), ErrorCode::kMemberExists,
              {"mem://2"});
  const Response added = CallOk(cluster, follower, MemberAdd("m4", "mem://4", true));
  const raft::NodeId learner = added.member.id;
  ASSERT_NE(learner, raft::kNoNode);
  EXPECT_TRUE(added.member.is_learner);
  EXPECT_EQ(added.member.name, "m4");
  ExpectError(cluster.Call(leader, MemberAdd("m5", "mem://5", true)), ErrorCode::kTooManyLearners,
              {"1"});
  cluster.StartJoiner(learner);
  std::vector<raft::NodeId> everyone = cluster.ids();
  ASSERT_TRUE(WaitForCatchUp(cluster, everyone));
  EXPECT_EQ(StoreHash(cluster, learner), StoreHash(cluster, leader));
  for (raft::NodeId id : everyone) {
    EXPECT_EQ(MemberStrings(cluster.server(id).Members()),
              MemberStrings(cluster.server(leader).Members()))
        << "member " << id;
  }
  // The joiner refuses a duplicate URL like everyone else.
  ExpectError(cluster.Call(learner, MemberAdd("dup", "mem://1", false)), ErrorCode::kMemberExists,
              {"mem://1"});

  // Cut off while the cluster writes, the learner lags and may not be promoted.
  cluster.Isolate(learner);
  for (int i = 0; i < 40; ++i) CallOk(cluster, leader, PutRequest("lag" + std::to_string(i), "v"));
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMemberPromote, learner)),
              ErrorCode::kLearnerNotReady, {std::to_string(learner), "90"});
  ExpectError(cluster.Call(follower, WithMember(RequestType::kMemberPromote, learner)),
              ErrorCode::kNotLeader);
  cluster.Heal();
  ASSERT_TRUE(WaitForCatchUp(cluster, everyone));
  const Response promoted =
      CallOk(cluster, leader, WithMember(RequestType::kMemberPromote, learner));
  EXPECT_FALSE(promoted.member.is_learner);
  ASSERT_TRUE(WaitForCatchUp(cluster, everyone));
  for (raft::NodeId id : everyone) {
    bool found = false;
    for (const Member& m : cluster.server(id).Members()) {
      if (m.id == learner) {
        found = true;
        EXPECT_FALSE(m.is_learner) << "member " << id;
      }
    }
    EXPECT_TRUE(found) << "member " << id;
    const raft::ConfState cs = cluster.server(id).RaftStatus().conf_state;
    EXPECT_NE(std::find(cs.voters.begin(), cs.voters.end(), learner), cs.voters.end())
        << "member " << id;
  }
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMemberPromote, learner)),
              ErrorCode::kLearnerNotPromotable);

  // A voter joins and catches up.
  const Response voter = CallOk(cluster, leader, MemberAdd("m5", "mem://5", false));
  EXPECT_FALSE(voter.member.is_learner);
  cluster.StartJoiner(voter.member.id);
  everyone = cluster.ids();
  ASSERT_TRUE(WaitForCatchUp(cluster, everyone));
  EXPECT_EQ(StoreHash(cluster, voter.member.id), StoreHash(cluster, leader));
  EXPECT_EQ(cluster.server(voter.member.id).Members().size(), 5u);
  CallOk(cluster, voter.member.id, PutRequest("from-m5", "v"));

  // Removed, it disappears from every member's list.
  const Response removed =
      CallOk(cluster, follower, WithMember(RequestType::kMemberRemove, voter.member.id));
  EXPECT_EQ(removed.members.size(), 4u);
  cluster.Crash(voter.member.id);
  std::vector<raft::NodeId> remaining;
  for (raft::NodeId id : everyone) {
    if (id != voter.member.id) remaining.push_back(id);
  }
  ASSERT_TRUE(WaitForCatchUp(cluster, remaining));
  for (raft::NodeId id : remaining) {
    const Response members = CallOk(cluster, id, Typed(RequestType::kMemberList));
    EXPECT_EQ(members.members.size(), 4u) << "member " << id;
    for (const Member& m : members.members) EXPECT_NE(m.id, voter.member.id) << "member " << id;
    EXPECT_EQ(MemberStrings(members.members), MemberStrings(cluster.server(leader).Members()))
        << "member " << id;
  }
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMemberRemove, voter.member.id)),
              ErrorCode::kMemberNotFound, {std::to_string(voter.member.id)});
  CallOk(cluster, learner, PutRequest("after", "v"));
}

// The learner limit holds even when a member's own list is behind the log: a follower that has
// not yet applied the first learner admits a second one and forwards it, and the change is
// refused when it applies (the same way on every member), not added past the limit.
TEST(ServerTest, LearnerLimitIsCheckedAgainWhenTheChangeApplies) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId behind = Follower(cluster, leader);
  cluster.Cut(leader, behind);
  CallOk(cluster, leader, MemberAdd("first", "mem://first", true));
  EXPECT_EQ(cluster.server(behind).Members().size(), 3u) << "has not applied the first learner";
  cluster.Heal();
  const RequestId second = cluster.server(behind).Submit(MemberAdd("second", "mem://second", true));
  const std::optional<Response> response = AwaitResponse(cluster, behind, second, 50);
  ExpectError(response, ErrorCode::kTooManyLearners, {"added meanwhile"});
  ASSERT_TRUE(WaitForCatchUp(cluster, {1, 2, 3}));
  for (raft::NodeId id : cluster.ids()) {
    size_t learners = 0;
    for (const Member& m : cluster.server(id).Members()) learners += m.is_learner ? 1 : 0;
    EXPECT_EQ(learners, 1u) << "member " << id;
    EXPECT_EQ(cluster.server(id).RaftStatus().conf_state.learners.size(), 1u) << "member " << id;
  }
}

// etcd's promotion rule at its boundary: a learner holding just under 90% of the leader's log is
// refused, one holding 90% or more is promoted even though it still lags.
TEST(ServerTest, LearnerPromotionBoundaryIsNinetyPercentOfTheLeadersLog) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  for (int i = 0; i < 60; ++i) CallOk(cluster, leader, PutRequest("k" + std::to_string(i), "v"));
  const raft::NodeId learner = CallOk(cluster, leader, MemberAdd("m4", "mem://4", true)).member.id;
  cluster.StartJoiner(learner);
  std::vector<raft::NodeId> everyone = cluster.ids();
  ASSERT_TRUE(WaitForCatchUp(cluster, everyone));

  // The ratio the leader sees: the learner's match over its own.
  auto ratio = [&] {
    const raft::Status status = cluster.server(leader).RaftStatus();
    const double mine = static_cast<double>(status.progress.at(leader).match);
    return static_cast<double>(status.progress.at(learner).match) / mine;
  };
  // Cut off, the learner falls behind one write at a time: stop just under 90%.
  cluster.Isolate(learner);
  int writes = 0;
  while (ratio() >= kLearnerReadyRatio && writes < 100) {
    CallOk(cluster, leader, PutRequest("lag" + std::to_string(writes++), "v"));
  }
  ASSERT_LT(ratio(), kLearnerReadyRatio);
  ASSERT_GT(ratio(), kLearnerReadyRatio - 0.03) << "each write moves the ratio by little";
  ExpectError(cluster.Call(leader, WithMember(RequestType::kMemberPromote, learner)),
              ErrorCode::kLearnerNotReady, {std::to_string(learner), "90"});

  // Caught up again, then lagging by less than 10%: promoted while still behind.
  cluster.Heal();
  ASSERT_TRUE(WaitForCatchUp(cluster, everyone));
  cluster.Isolate(learner);
  for (int i = 0; i < 3; ++i) CallOk(cluster, leader, PutRequest("small-lag", "v"));
  ASSERT_LT(ratio(), 1.0);
  ASSERT_GE(ratio(), kLearnerReadyRatio);
  const Response promoted =
      CallOk(cluster, leader, WithMember(RequestType::kMemberPromote, learner));
  EXPECT_FALSE(promoted.member.is_learner);
}

// The limits a user gets without configuring any (etcd's defaults).
TEST(ServerTest, DefaultLimitsAreEtcds) {
  const ServerConfig config;
  EXPECT_EQ(config.quota_bytes, uint64_t{2} << 30);        // 2 GiB
  EXPECT_EQ(config.max_request_bytes, uint64_t{1572864});  // 1.5 MiB
  EXPECT_EQ(config.max_txn_ops, 128u);
  EXPECT_EQ(config.max_learners, 1u);
}

// ---------------------------------------------------------------------------------------------
// Quota

// etcd: NOSPACE alarm past the quota refuses puts/grants until compact, defrag and disarm.
TEST(ServerTest, QuotaRaisesNoSpaceAlarmUntilCompactDefragDisarm) {
  constexpr uint64_t kQuotaBytes = 16 * 1024;
  ServerCluster cluster({1, 2, 3}, [](ServerConfig& c) { c.quota_bytes = kQuotaBytes; });
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  const lease::LeaseId lease_id = CallOk(cluster, leader, LeaseGrant(600)).lease.id;
  CallOk(cluster, leader, PutRequest("small", "s"));
  CallOk(cluster, leader, PutRequest("other", "o", lease_id));
  const std::string big(1000, 'b');
  int puts = 0;
  for (; puts < 100; ++puts) {
    auto put = cluster.Call(puts % 2 == 0 ? leader : follower, PutRequest("big", big));
    ASSERT_TRUE(put.has_value());
    if (!put->status.ok()) {
      ExpectError(put, ErrorCode::kNoSpace);
      break;
    }
  }
  ASSERT_LT(puts, 100) << "the quota never triggered";
  EXPECT_GE(puts, 10);
  for (raft::NodeId id : cluster.ids()) {
    const Response alarms = CallOk(cluster, id, Typed(RequestType::kAlarmList));
    // Every member past the quota raises its own alarm (etcd: alarms are per member).
    ASSERT_FALSE(alarms.alarms.empty()) << "member " << id;
    bool leader_alarm = false;
    for (const Alarm& alarm : alarms.alarms) {
      EXPECT_EQ(alarm.type, AlarmType::kNoSpace);
      leader_alarm = leader_alarm || alarm.member_id == leader;
    }
    EXPECT_TRUE(leader_alarm) << "member " << id;
    ExpectError(cluster.Call(id, PutRequest("k", "v")), ErrorCode::kNoSpace,
                {std::to_string(kQuotaBytes)});
    ExpectError(cluster.Call(id, Txn({}, {PutOp("k", "v")})), ErrorCode::kNoSpace,
                {std::to_string(kQuotaBytes)});
    ExpectError(cluster.Call(id, LeaseGrant(60)), ErrorCode::kNoSpace,
                {std::to_string(kQuotaBytes)});
    ExpectError(cluster.Call(id, Txn({VersionEquals("x", 1)}, {}, {PutOp("k", "v")})),
                ErrorCode::kNoSpace);
    EXPECT_EQ(CallOk(cluster, id, GetRequest("big")).range.kvs.size(), 1u);
  }
  EXPECT_EQ(CallOk(cluster, follower, DeleteRequest("small")).delete_range.deleted, 1);
  EXPECT_TRUE(CallOk(cluster, leader, Txn({}, {DeleteOp("other")})).txn.succeeded);
  CallOk(cluster, follower, WithLease(RequestType::kLeaseRevoke, lease_id));
  const mvcc::Revision current = cluster.server(leader).store().current_revision();
  CallOk(cluster, follower, Compact(current));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    CallOk(cluster, id, Typed(RequestType::kDefragment));
    EXPECT_LT(cluster.member(id).backend.SizeBytes(), kQuotaBytes / 2) << "member " << id;
  }
  // Still refused until disarmed.
  ExpectError(cluster.Call(leader, PutRequest("k", "v")), ErrorCode::kNoSpace);
  CallOk(cluster, follower, Typed(RequestType::kAlarmDisarm));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_TRUE(CallOk(cluster, id, Typed(RequestType::kAlarmList)).alarms.empty())
        << "member " << id;
    CallOk(cluster, id, PutRequest("k" + std::to_string(id), "v"));
  }
  CallOk(cluster, leader, Txn({}, {PutOp("t", "v")}));
  CallOk(cluster, follower, LeaseGrant(60));
}

// The NOSPACE alarms each member lists, as (member, type) pairs, sorted.
std::vector<std::pair<raft::NodeId, AlarmType>> AlarmPairs(ServerCluster& cluster,
                                                           raft::NodeId id) {
  std::vector<std::pair<raft::NodeId, AlarmType>> pairs;
  for (const Alarm& alarm : CallOk(cluster, id, Typed(RequestType::kAlarmList)).alarms) {
    pairs.emplace_back(alarm.member_id, alarm.type);
  }
  std::sort(pairs.begin(), pairs.end());
  return pairs;
}

// etcd 3.4 raises NOSPACE only when a write is refused for lack of quota (v3rpc's quotaAlarmer):
// a member whose backend is past the quota after a disarm lists no alarm until the next write
// that adds data, which is refused NOSPACE and raises this member's alarm again. Reads, deletes
// and txns that add nothing (cost 0) pass the quota check and raise nothing.
TEST(ServerTest, NoSpaceIsRaisedAgainOnlyByTheNextRefusedWriteAfterADisarm) {
  constexpr uint64_t kQuotaBytes = 1;  // `--quota-backend-bytes=1`: every write is refused
  ServerCluster cluster({1}, [](ServerConfig& c) { c.quota_bytes = kQuotaBytes; });
  ASSERT_EQ(cluster.WaitForLeader(), 1u);
  EXPECT_TRUE(AlarmPairs(cluster, 1).empty());
  // Cost 0: a read-only txn, a delete, a delete-only txn pass and raise nothing.
  CallOk(cluster, 1, GetRequest("k"));
  CallOk(cluster, 1, Txn({}, {RangeOp("k")}));
  CallOk(cluster, 1, DeleteRequest("k"));
  CallOk(cluster, 1, Txn({}, {DeleteOp("k")}));
  cluster.TickAll(10);
  EXPECT_TRUE(AlarmPairs(cluster, 1).empty()) << "raised without a refused write";
  // The first put is refused for the quota itself, and raises the alarm.
  ExpectError(cluster.Call(1, PutRequest("k", "v")), ErrorCode::kNoSpace, {"quota"});
  cluster.TickAll(2);
  EXPECT_EQ(AlarmPairs(cluster, 1),
            (std::vector<std::pair<raft::NodeId, AlarmType>>{{1, AlarmType::kNoSpace}}));
  // Disarmed: it stays clear however long the member runs past the quota.
  CallOk(cluster, 1, Typed(RequestType::kAlarmDisarm));
  cluster.TickAll(10);
  EXPECT_TRUE(AlarmPairs(cluster, 1).empty()) << "raised again without a refused write";
  // The next write adding data (a txn with a put, a lease grant) is refused and raises it.
  ExpectError(cluster.Call(1, Txn({}, {PutOp("k", "v")})), ErrorCode::kNoSpace, {"quota"});
  cluster.TickAll(2);
  EXPECT_EQ(AlarmPairs(cluster, 1),
            (std::vector<std::pair<raft::NodeId, AlarmType>>{{1, AlarmType::kNoSpace}}));
  CallOk(cluster, 1, Typed(RequestType::kAlarmDisarm));
  ExpectError(cluster.Call(1, LeaseGrant(100)), ErrorCode::kNoSpace, {"quota"});
  cluster.TickAll(2);
  EXPECT_EQ(AlarmPairs(cluster, 1).size(), 1u);
}

// etcd's quotaKVServer and quotaLeaseServer check the quota before the request is looked at:
// past the quota a write is refused NOSPACE whatever else is wrong with it (as Debian's etcd
// 3.4.23 answered each case below), and its alarm is raised, unless the caller's token is
// refused (etcd raises it through its Alarm call, which checks the token). A write that costs
// nothing (a read-only txn) is checked as usual.
TEST(ServerTest, TheQuotaIsCheckedBeforeTheRequest) {
  ServerCluster cluster({1}, [](ServerConfig& c) {
    c.quota_bytes = 1;
    c.max_txn_ops = 2;
  });
  ASSERT_EQ(cluster.WaitForLeader(), 1u);
  auto refused_for_quota = [&](Request request, const char* what) {
    ExpectError(cluster.Call(1, std::move(request)), ErrorCode::kNoSpace, {"quota"});
    cluster.TickAll(2);
    EXPECT_EQ(AlarmPairs(cluster, 1),
              (std::vector<std::pair<raft::NodeId, AlarmType>>{{1, AlarmType::kNoSpace}}))
        << what;
    CallOk(cluster, 1, Typed(RequestType::kAlarmDisarm));
  };
  refused_for_quota(PutRequest("", "v"), "a put without a key");
  Request ignore_value = PutRequest("k", "v");
  ignore_value.put.ignore_value = true;
  refused_for_quota(ignore_value, "a put with ignore_value and a value");
  Request unknown_lease = PutRequest("k", "v");
  unknown_lease.put.lease = 12345;
  refused_for_quota(unknown_lease, "a put with a lease that does not exist");
  refused_for_quota(PutRequest("k", std::string(kDefaultMaxRequestBytes + 1, 'v')),
                    "a put over the request limit");
  refused_for_quota(Txn({}, {PutOp("a", ""), PutOp("b", ""), PutOp("c", "")}),
                    "a txn with too many operations");
  refused_for_quota(LeaseGrant(lease::kMaxTtlSeconds + 1), "a lease grant with too long a TTL");
  // A token the member does not know: refused NOSPACE all the same, no alarm raised.
  Request bad_token = PutRequest("", "v");
  bad_token.token = "no-such-token";
  ExpectError(cluster.Call(1, bad_token), ErrorCode::kNoSpace, {"quota"});
  cluster.TickAll(5);
  EXPECT_TRUE(AlarmPairs(cluster, 1).empty());
  // Cost 0: checked as usual.
  ExpectError(cluster.Call(1, Txn({}, {RangeOp("a"), RangeOp("b"), RangeOp("c")})),
              ErrorCode::kTooManyOps);
  ExpectError(cluster.Call(1, Txn({}, {RangeOp("")})), ErrorCode::kEmptyKey);
  EXPECT_TRUE(AlarmPairs(cluster, 1).empty());
}

// etcd's quotaAlarmer raises the alarm, through its Alarm call, before it answers the write
// ErrGRPCNoSpace: a client that reads NOSPACE and lists the alarms at once finds this member's
// (etcdctl put; etcdctl alarm list). Here the refusal is answered once the alarm's entry has
// applied on the member that refused it: the leader's own, or a follower's forwarded to it.
// Without a leader the alarm cannot be proposed, and the refusal is answered at once.
TEST(ServerTest, ANoSpaceRefusalIsAnsweredOnceItsAlarmApplied) {
  ServerCluster cluster({1, 2, 3}, [](ServerConfig& c) { c.quota_bytes = 1; });
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  // Whenever the refusal is delivered, the member that refused lists its alarm.
  auto refuse = [&](raft::NodeId id) {
    const RequestId put = cluster.server(id).Submit(PutRequest("k", "v"));
    cluster.ProcessReadyOnce(id);  // the Ready of the Submit: the alarm is only proposed
    EXPECT_EQ(cluster.member(id).responses.count(put), 0u) << "answered before its alarm";
    for (int round = 0; round < 20 && cluster.member(id).responses.count(put) == 0; ++round) {
      cluster.ProcessReadyOnce(id);
      if (cluster.member(id).responses.count(put) > 0) break;
      cluster.Stabilize();
    }
    ASSERT_EQ(cluster.member(id).responses.count(put), 1u);
    EXPECT_EQ(CodeOf(cluster.member(id).responses.at(put).status), ErrorCode::kNoSpace);
    bool listed = false;
    for (const Alarm& alarm : cluster.server(id).Alarms()) listed |= alarm.member_id == id;
    EXPECT_TRUE(listed) << "member " << id << " answered NOSPACE before its alarm applied";
  };
  refuse(follower);
  refuse(leader);
  EXPECT_EQ(AlarmPairs(cluster, leader).size(), 2u);
  // Disarmed, then cut off from its peers: no leader to raise the alarm through.
  CallOk(cluster, leader, Typed(RequestType::kAlarmDisarm));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    if (id != follower) cluster.Crash(id);
  }
  cluster.TickAll(100);  // an election timeout and more: it knows no leader
  const RequestId refused = cluster.server(follower).Submit(PutRequest("k", "v"));
  bool answered = false;
  while (cluster.server(follower).HasReady()) {
    const Ready& ready = cluster.server(follower).GetReady();
    for (const Response& response : ready.responses) {
      if (response.request_id != refused) continue;
      answered = true;
      EXPECT_EQ(CodeOf(response.status), ErrorCode::kNoSpace) << response.status;
    }
    cluster.server(follower).Advance();
  }
  EXPECT_TRUE(answered) << "a refusal without a leader waited";
}

// etcd's quotaApplierV3: a write that passed its proposer's quota check but no longer fits when
// it applies (another write applied first) still applies, on every member alike, yet is
// answered NOSPACE, and raises the applying member's alarm (applyEntryNormal).
TEST(ServerTest, AWriteThatNoLongerFitsWhenItAppliesIsAnsweredNoSpaceAndRaisesTheAlarm) {
  ServerCluster probe({1});
  ASSERT_EQ(probe.WaitForLeader(), 1u);
  const uint64_t empty = probe.member(1).backend.SizeBytes();
  // Each put fits alone (size + 256 + 1 + 4000 < quota), not after the other one applied.
  const uint64_t quota = empty + 6000;
  ServerCluster cluster({1}, [&](ServerConfig& c) { c.quota_bytes = quota; });
  ASSERT_EQ(cluster.WaitForLeader(), 1u);
  ASSERT_LE(cluster.member(1).backend.SizeBytes(), empty + 500);
  Server& server = cluster.server(1);
  const RequestId a = server.Submit(PutRequest("a", std::string(4000, 'a')));
  const RequestId b = server.Submit(PutRequest("b", std::string(4000, 'b')));
  cluster.TickAll(3);
  ASSERT_EQ(cluster.member(1).responses.count(a), 1u);
  ASSERT_EQ(cluster.member(1).responses.count(b), 1u);
  EXPECT_TRUE(cluster.member(1).responses[a].status.ok()) << cluster.member(1).responses[a].status;
  ExpectError(cluster.member(1).responses[b], ErrorCode::kNoSpace, {"applied past the quota"});
  EXPECT_EQ(CallOk(cluster, 1, GetRequest("b")).range.kvs.size(), 1u);
  EXPECT_EQ(AlarmPairs(cluster, 1),
            (std::vector<std::pair<raft::NodeId, AlarmType>>{{1, AlarmType::kNoSpace}}));
}

// etcd's Maintenance.Alarm: ACTIVATE raises the alarm of the member id given (any id) through
// the log; DEACTIVATE clears only the (member, alarm) pair given (alarmStore.Deactivate), so
// writes stay refused while another member's NOSPACE is active. The native disarm (no member)
// clears every member's.
TEST(ServerTest, AlarmActivateAndDisarmOneMemberAtATime) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  using Pairs = std::vector<std::pair<raft::NodeId, AlarmType>>;
  auto activate = [&](raft::NodeId on, raft::NodeId member) {
    Request request = Typed(RequestType::kAlarmActivate);
    request.alarm_member = member;
    return CallOk(cluster, on, request);
  };
  auto disarm = [&](raft::NodeId on, raft::NodeId member) {
    Request request = Typed(RequestType::kAlarmDisarm);
    request.alarm_member = member;
    return CallOk(cluster, on, request);
  };
  activate(follower, 123);
  activate(leader, 2);
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_EQ(AlarmPairs(cluster, id),
              (Pairs{{2, AlarmType::kNoSpace}, {123, AlarmType::kNoSpace}}))
        << "member " << id;
    ExpectError(cluster.Call(id, PutRequest("k", "v")), ErrorCode::kNoSpace);
  }
  // Clearing one member's alarm leaves the other's: writes stay refused.
  disarm(follower, 123);
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_EQ(AlarmPairs(cluster, id), (Pairs{{2, AlarmType::kNoSpace}})) << "member " << id;
    ExpectError(cluster.Call(id, PutRequest("k", "v")), ErrorCode::kNoSpace);
  }
  // A pair not listed: nothing changes.
  disarm(leader, 3);
  EXPECT_EQ(AlarmPairs(cluster, leader), (Pairs{{2, AlarmType::kNoSpace}}));
  disarm(leader, 2);
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_TRUE(AlarmPairs(cluster, id).empty()) << "member " << id;
    CallOk(cluster, id, PutRequest("k", "v"));
  }
  // Member id 0 is an id like any other; the disarm without a member clears them all.
  activate(leader, 0);
  activate(leader, 1);
  EXPECT_EQ(AlarmPairs(cluster, follower).size(), 2u);
  CallOk(cluster, follower, Typed(RequestType::kAlarmDisarm));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  EXPECT_TRUE(AlarmPairs(cluster, leader).empty());
  CallOk(cluster, leader, PutRequest("k", "w"));
}

// etcd's processInternalRaftRequestOnce: a proposal is refused "too many requests" while the
// applied index lags the committed index by more than 5,000 entries; reads are still served and
// proposals are accepted again once apply catches up.
TEST(ServerTest, ProposalsRefusedTooManyRequestsWhileApplyLagsCommit) {
  // One entry applied per Ready, so commit can run far ahead of apply.
  ServerCluster cluster({1}, [](ServerConfig& c) { c.max_committed_size_per_ready_bytes = 1; });
  ASSERT_EQ(cluster.WaitForLeader(), 1u);
  CallOk(cluster, 1, PutRequest("before", "v"));
  Server& server = cluster.server(1);
  constexpr uint64_t kBacklog = kMaxAppliedLagEntries + 100;
  for (uint64_t i = 0; i < kBacklog; ++i) server.Submit(PutRequest("k", std::to_string(i)));
  // The first Ready persists the backlog, which commits it (one voter); each Ready after
  // applies one entry.
  for (int i = 0; i < 4; ++i) cluster.ProcessReadyOnce(1);
  const uint64_t committed = server.hard_state().commit;
  ASSERT_GT(committed, server.applied_index() + kMaxAppliedLagEntries);

  const RequestId put = server.Submit(PutRequest("refused", "v"));
  const RequestId txn = server.Submit(Txn({}, {PutOp("refused", "v")}));
  const RequestId read = server.Submit(GetRequest("before", /*serializable=*/true));
  cluster.ProcessReadyOnce(1);
  testing::MemberRecord& record = cluster.member(1);
  for (RequestId id : {put, txn}) {
    ASSERT_EQ(record.responses.count(id), 1u);
    const absl::Status& status = record.responses.at(id).status;
    EXPECT_EQ(CodeOf(status), ErrorCode::kTooManyRequests) << status;
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(status.message().find(std::to_string(kMaxAppliedLagEntries)), std::string::npos)
        << status;
  }
  ASSERT_EQ(record.responses.count(read), 1u);
  EXPECT_TRUE(record.responses.at(read).status.ok());

  cluster.Stabilize();
  EXPECT_EQ(server.applied_index(), server.hard_state().commit);
  EXPECT_EQ(CallOk(cluster, 1, GetRequest("k")).range.kvs.at(0).value,
            std::to_string(kBacklog - 1));
  CallOk(cluster, 1, PutRequest("after", "v"));
  EXPECT_TRUE(CallOk(cluster, 1, GetRequest("refused")).range.kvs.empty());
}

// ---------------------------------------------------------------------------------------------
// Replicated determinism

// etcd (HashKV corruption check): same log, same revision and hash at every revision.
TEST(ServerTest, MixedWorkloadLeavesIdenticalReplicas) {
  ServerCluster cluster({1, 2, 3});
  ASSERT_NE(cluster.WaitForLeader(), raft::kNoNode);
  const std::vector<raft::NodeId> ids = cluster.ids();
  std::vector<lease::LeaseId> leases;
  mvcc::Revision compacted = 0;
  for (int round = 0; round < 12; ++round) {
    // Several members submit at once, so proposals from different members interleave.
    std::map<raft::NodeId, std::vector<RequestId>> submitted;
    for (size_t m = 0; m < ids.size(); ++m) {
      const raft::NodeId id = ids[m];
      const std::string k = "key" + std::to_string((round * 7 + m) % 10);
      Server& server = cluster.server(id);
      submitted[id].push_back(server.Submit(PutRequest(k, "r" + std::to_string(round))));
      switch ((round + m) % 5) {
        case 0:
          submitted[id].push_back(server.Submit(DeleteRequest("key" + std::to_string(m))));
          break;
        case 1:
          submitted[id].push_back(
              server.Submit(Txn({VersionEquals(k, 1)}, {PutOp(k + "t", "s"), DeleteOp("key9")},
                                {PutOp(k + "f", "f")})));
          break;
        case 2:
          submitted[id].push_back(server.Submit(LeaseGrant(600)));
          break;
        case 3:
          if (!leases.empty()) {
            submitted[id].push_back(server.Submit(PutRequest(k + "l", "l", leases.back())));
          }
          break;
        case 4:
          if (leases.size() > 1) {
            submitted[id].push_back(
                server.Submit(WithLease(RequestType::kLeaseRevoke, leases.front())));
            leases.erase(leases.begin());
          }
          break;
      }
    }
    cluster.TickAll(2);
    for (const auto& [id, requests] : submitted) {
      for (RequestId request_id : requests) {
        auto it = cluster.member(id).responses.find(request_id);
        ASSERT_NE(it, cluster.member(id).responses.end());
        EXPECT_TRUE(it->second.status.ok()) << it->second.status;
        if (it->second.type == RequestType::kLeaseGrant) leases.push_back(it->second.lease.id);
      }
    }
    if (round % 4 == 3) {
      compacted = cluster.server(ids[round % 3]).store().current_revision() - 3;
      CallOk(cluster, ids[round % 3], Compact(compacted));
    }
  }
  ASSERT_TRUE(WaitForCatchUp(cluster, ids));
  const mvcc::Revision current = cluster.server(ids[0]).store().current_revision();
  EXPECT_GT(current, 40);
  for (raft::NodeId id : ids) {
    EXPECT_EQ(cluster.server(id).store().current_revision(), current) << "member " << id;
    EXPECT_EQ(cluster.server(id).store().compact_revision(), compacted) << "member " << id;
    EXPECT_EQ(LeaseKeys(cluster, id), LeaseKeys(cluster, ids[0])) << "member " << id;
  }
  for (mvcc::Revision rev = compacted; rev <= current; ++rev) {
    std::set<uint64_t> hashes;
    for (raft::NodeId id : ids) {
      const Response hash = CallOk(cluster, id, HashAt(rev));
      EXPECT_EQ(hash.hash.revision, rev);
      EXPECT_EQ(hash.hash.compact_revision, compacted);
      hashes.insert(hash.hash.hash);
    }
    EXPECT_EQ(hashes.size(), 1u) << "replicas differ at revision " << rev;
  }
}

// ---------------------------------------------------------------------------------------------
// Crash and restart

// etcd: a restarted member reloads data, membership and consistent index, then catches up.
TEST(ServerTest, CrashedMemberRestartsWithItsStateAndCatchesUp) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = Follower(cluster, leader);
  const lease::LeaseId lease_id = CallOk(cluster, leader, LeaseGrant(600)).lease.id;
  for (int i = 0; i < 10; ++i) CallOk(cluster, leader, PutRequest("k" + std::to_string(i), "v"));
  CallOk(cluster, leader, PutRequest("leased", "v", lease_id));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  const raft::Index applied = cluster.server(follower).applied_index();
  const mvcc::Revision revision = cluster.server(follower).store().current_revision();
  const uint64_t hash = StoreHash(cluster, follower);
  const auto members = MemberStrings(cluster.server(follower).Members());
  const raft::ConfState conf = cluster.server(follower).RaftStatus().conf_state;

  cluster.Crash(follower);
  for (int i = 0; i < 10; ++i) CallOk(cluster, leader, PutRequest("k" + std::to_string(i), "w"));
  cluster.Restart(follower);
  EXPECT_EQ(cluster.server(follower).applied_index(), applied);
  EXPECT_EQ(cluster.server(follower).store().current_revision(), revision);
  EXPECT_EQ(StoreHash(cluster, follower), hash);
  EXPECT_EQ(MemberStrings(cluster.server(follower).Members()), members);
  EXPECT_EQ(cluster.server(follower).RaftStatus().conf_state.voters, conf.voters);
  EXPECT_EQ(LeaseKeys(cluster, follower), LeaseKeys(cluster, leader));
  EXPECT_EQ(LocalValue(cluster, follower, "k0"), "v");

  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  EXPECT_EQ(StoreHash(cluster, follower), StoreHash(cluster, leader));
  const Response read = CallOk(cluster, follower, GetRequest("k0"));
  ASSERT_EQ(read.range.kvs.size(), 1u);
  EXPECT_EQ(read.range.kvs[0].value, "w");

  // The leader crashes and comes back too; the cluster keeps serving.
  cluster.Crash(leader);
  const raft::NodeId next = WaitForLeaderOtherThan(cluster, leader);
  ASSERT_NE(next, raft::kNoNode);
  CallOk(cluster, next, PutRequest("k0", "x"));
  cluster.Restart(leader);
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_EQ(LocalValue(cluster, id, "k0"), "x") << "member " << id;
    EXPECT_EQ(StoreHash(cluster, id), StoreHash(cluster, next)) << "member " << id;
  }
}

// A single-member cluster recovers each acknowledged write, at its revision, after a crash. This
// harness writes a Ready's log entries before it hands out the Ready's responses, so it cannot
// answer early: the bug class of etcd #14370 (a single member answering a write before its entry
// is durable, losing it in a crash) is pinned through the real driver by node/member_test.cc
// SingleMemberAnswersAWriteOnlyOnceItsEntryIsDurable.
TEST(ServerTest, SingleMemberRecoversAcknowledgedWritesAfterCrashes) {
  ServerCluster cluster({1});
  ASSERT_EQ(cluster.WaitForLeader(), 1u);
  for (int i = 0; i < 3; ++i) {
    const std::string value = "v" + std::to_string(i);
    const Response put = CallOk(cluster, 1, PutRequest("k", value));
    cluster.Crash(1);
    cluster.Restart(1);
    EXPECT_EQ(cluster.server(1).store().current_revision(), put.put.revision);
    EXPECT_EQ(LocalValue(cluster, 1, "k"), value);
    ASSERT_EQ(cluster.WaitForLeader(), 1u);
    const Response get = CallOk(cluster, 1, GetRequest("k"));
    ASSERT_EQ(get.range.kvs.size(), 1u);
    EXPECT_EQ(get.range.kvs[0].value, value);
    EXPECT_EQ(get.range.kvs[0].mod_revision, put.put.revision);
  }
}

// ---------------------------------------------------------------------------------------------
// Raft snapshots

// etcd: a far-behind follower catches up by a snapshot carrying KV and lease state.
TEST(ServerTest, LaggingMemberCatchesUpBySnapshotWithKeysAndLeases) {
  ServerCluster cluster({1, 2, 3}, [](ServerConfig& c) {
    c.snapshot_every_entries = 20;
    c.snapshot_catch_up_entries = 5;
  });
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId lagging = Follower(cluster, leader);
  const lease::LeaseId early = CallOk(cluster, leader, LeaseGrant(600, 100)).lease.id;
  const lease::LeaseId doomed = CallOk(cluster, leader, LeaseGrant(600, 101)).lease.id;
  CallOk(cluster, leader, PutRequest("early", "v", early));
  CallOk(cluster, leader, PutRequest("doomed", "v", doomed));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  const raft::Index cut_at = cluster.server(lagging).RaftStatus().last_index;

  cluster.Isolate(lagging);
  const lease::LeaseId late = CallOk(cluster, leader, LeaseGrant(600, 102)).lease.id;
  for (int i = 0; i < 100; ++i) {
    const std::string k = "key" + std::to_string(i % 17);
    if (i % 10 == 9) {
      CallOk(cluster, leader, DeleteRequest(k));
    } else {
      CallOk(cluster, leader, PutRequest(k, std::to_string(i), i % 3 == 0 ? late : 0));
    }
  }
  CallOk(cluster, leader, WithLease(RequestType::kLeaseRevoke, doomed));
  CallOk(cluster, leader, Compact(cluster.server(leader).store().current_revision() - 10));
  // The leader's log no longer holds what the lagging member needs: only a snapshot helps.
  ASSERT_GT(cluster.server(leader).RaftStatus().first_index, cut_at + 1);

  cluster.Heal();
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  Server& caught_up = cluster.server(lagging);
  ASSERT_NE(cluster.member(lagging).log.snapshot(), nullptr);
  EXPECT_EQ(caught_up.store().current_revision(),
            cluster.server(leader).store().current_revision());
  EXPECT_EQ(caught_up.store().compact_revision(),
            cluster.server(leader).store().compact_revision());
  EXPECT_EQ(StoreHash(cluster, lagging), StoreHash(cluster, leader));
  EXPECT_EQ(caught_up.lessor().Leases(), (std::vector<lease::LeaseId>{early, late}));
  EXPECT_EQ(LeaseKeys(cluster, lagging), LeaseKeys(cluster, leader));
  EXPECT_EQ(MemberStrings(caught_up.Members()), MemberStrings(cluster.server(leader).Members()));
  EXPECT_FALSE(LocalValue(cluster, lagging, "doomed").has_value());
  // It keeps working as a replica: new writes, reads and a revocation apply on it.
  CallOk(cluster, lagging, PutRequest("after", "v", late));
  CallOk(cluster, lagging, WithLease(RequestType::kLeaseRevoke, late));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    EXPECT_EQ(StoreHash(cluster, id), StoreHash(cluster, leader)) << "member " << id;
    EXPECT_EQ(LeaseKeys(cluster, id), LeaseKeys(cluster, leader)) << "member " << id;
  }
  // Restarted from its snapshot, it still hands out fresh request ids and keeps its data.
  std::set<RequestId> ids;
  for (int life = 0; life < 3; ++life) {
    ids.insert(cluster.server(lagging).Submit(GetRequest("after", true)));
    cluster.Stabilize();
    cluster.Crash(lagging);
    cluster.Restart(lagging);
    EXPECT_EQ(StoreHash(cluster, lagging), StoreHash(cluster, leader));
  }
  EXPECT_EQ(ids.size(), 3u);
}

// etcd: request ids stay unique on a member after a leader's snapshot replaced its backend.
TEST(ServerTest, SnapshotDoesNotResetTheMembersRequestIdEpoch) {
  ServerCluster cluster({1, 2, 3}, [](ServerConfig& c) {
    c.snapshot_every_entries = 20;
    c.snapshot_catch_up_entries = 5;
  });
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId lagging = Follower(cluster, leader);
  std::set<RequestId> seen;
  // A few restarts move the lagging member's epoch past the leader's.
  for (int life = 0; life < 3; ++life) {
    seen.insert(cluster.server(lagging).Submit(GetRequest("k", true)));
    cluster.Stabilize();
    cluster.Crash(lagging);
    cluster.Restart(lagging);
  }
  ASSERT_NE(cluster.WaitForLeader(), raft::kNoNode);
  cluster.Isolate(lagging);
  for (int i = 0; i < 60; ++i) CallOk(cluster, cluster.Leader(), PutRequest("k", "v"));
  cluster.Heal();
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  for (int life = 0; life < 3; ++life) {
    const RequestId id = cluster.server(lagging).Submit(GetRequest("k", true));
    EXPECT_TRUE(seen.insert(id).second) << "request id " << id << " repeated";
    cluster.Stabilize();
    cluster.Crash(lagging);
    cluster.Restart(lagging);
  }
}

// ---------------------------------------------------------------------------------------------
// Watches

// etcd: a watch gets writes made through any member, in revision order, each exactly once.
TEST(ServerTest, WatchOnOneMemberSeesWritesFromAnotherInOrder) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId watcher = Follower(cluster, leader);
  mvcc::WatchRequest request;
  request.key = "w/";
  request.range_end = "w0";
  auto watch_id = cluster.server(watcher).Watch(request);
  ASSERT_TRUE(watch_id.ok()) << watch_id.status();
  CallOk(cluster, leader, PutRequest("w/a", "1"));
  CallOk(cluster, leader, PutRequest("outside", "x"));
  CallOk(cluster, Follower(cluster, leader, {watcher}), PutRequest("w/b", "2"));
  CallOk(cluster, leader, Txn({}, {PutOp("w/c", "3"), DeleteOp("w/a")}));
  CallOk(cluster, leader, DeleteRequest("w/", "w0"));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  std::vector<std::string> seen;
  std::vector<mvcc::Revision> revisions;
  bool created = false;
  for (const mvcc::WatchResponse& response : cluster.member(watcher).watch_responses) {
    EXPECT_EQ(response.watch_id, *watch_id);
    created = created || response.created;
    for (const mvcc::Event& event : response.events) {
      seen.push_back((event.type == mvcc::Event::Type::kPut ? "put " : "delete ") + event.kv.key);
      revisions.push_back(event.kv.mod_revision);
    }
  }
  EXPECT_TRUE(created);
  EXPECT_EQ(seen, (std::vector<std::string>{"put w/a", "put w/b", "put w/c", "delete w/a",
                                            "delete w/b", "delete w/c"}));
  EXPECT_TRUE(std::is_sorted(revisions.begin(), revisions.end()));
  EXPECT_EQ(revisions, (std::vector<mvcc::Revision>{2, 4, 5, 5, 6, 6}));
}

// etcd: a watch asking for prev_kv gets each overwritten or deleted key's previous version,
// value included, also when it is opened after writes the member applied without such a watch
// (the store's events then leave the previous values out); one that does not ask gets none.
TEST(ServerTest, WatchWithPrevKvGetsPreviousValues) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId watcher = Follower(cluster, leader);
  CallOk(cluster, leader, PutRequest("p/a", "1"));
  CallOk(cluster, leader, PutRequest("p/a", "2"));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  mvcc::WatchRequest request;
  request.key = "p/";
  request.range_end = "p0";
  auto plain = cluster.server(watcher).Watch(request);
  ASSERT_TRUE(plain.ok()) << plain.status();
  request.prev_kv = true;
  auto with_prev = cluster.server(watcher).Watch(request);
  ASSERT_TRUE(with_prev.ok()) << with_prev.status();
  CallOk(cluster, leader, PutRequest("p/a", "3"));
  CallOk(cluster, leader, DeleteRequest("p/a", ""));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  std::vector<std::string> previous;
  size_t plain_events = 0;
  for (const mvcc::WatchResponse& response : cluster.member(watcher).watch_responses) {
    for (const mvcc::Event& event : response.events) {
      if (response.watch_id == *plain) {
        ++plain_events;
        EXPECT_FALSE(event.prev_kv.has_value());
      } else if (response.watch_id == *with_prev) {
        ASSERT_TRUE(event.prev_kv.has_value());
        previous.push_back(event.prev_kv->value);
      }
    }
  }
  EXPECT_EQ(plain_events, 2u);
  EXPECT_EQ(previous, (std::vector<std::string>{"2", "3"}));
}

// etcd (watchableStore.Restore): watchers resync after a snapshot install and miss no event.
TEST(ServerTest, WatchOnMemberCatchingUpBySnapshotMissesNoEvent) {
  ServerCluster cluster({1, 2, 3}, [](ServerConfig& c) {
    c.snapshot_every_entries = 20;
    c.snapshot_catch_up_entries = 5;
  });
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId lagging = Follower(cluster, leader);
  mvcc::WatchRequest request;
  request.key = "w";
  ASSERT_TRUE(cluster.server(lagging).Watch(request).ok());
  CallOk(cluster, leader, PutRequest("w", "0"));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  const raft::Index cut_at = cluster.server(lagging).RaftStatus().last_index;
  cluster.Isolate(lagging);
  for (int i = 1; i <= 50; ++i) CallOk(cluster, leader, PutRequest("w", std::to_string(i)));
  ASSERT_GT(cluster.server(leader).RaftStatus().first_index, cut_at + 1);
  cluster.Heal();
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  CallOk(cluster, leader, PutRequest("w", "51"));
  ASSERT_TRUE(WaitForCatchUp(cluster, cluster.ids()));
  std::vector<std::string> values;
  for (const mvcc::WatchResponse& response : cluster.member(lagging).watch_responses) {
    for (const mvcc::Event& event : response.events) values.push_back(event.kv.value);
  }
  std::vector<std::string> expected;
  for (int i = 0; i <= 51; ++i) expected.push_back(std::to_string(i));
  EXPECT_EQ(values, expected);
}

}  // namespace
}  // namespace kvstore::server
