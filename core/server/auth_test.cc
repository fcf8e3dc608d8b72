// Auth through the replicated server core, as golden transcripts (testdata/auth/*.txt): users,
// roles, permissions, enable/disable, tokens and every request type's check, on a three-member
// ServerCluster. Each command prints what a client would see; REWRITE=1 regenerates:
//   REWRITE=1 bazel run //core/server:auth_test
//
// Commands (as=USER sends the token of USER's last login; on=N submits on member N, default 1):
//   cluster [token-ttl-seconds=S]       a new three-member cluster, member 1 leading
//   login USER PASSWORD                 kAuthenticate; remembers the token for as=USER
//   user-add|passwd USER PASSWORD, user-delete|user-get USER, user-list
//   grant-role|revoke-role USER ROLE, role-add|role-delete|role-get ROLE, role-list
//   grant-perm ROLE read|write|readwrite KEY [END] [prefix] [from-key]
//   revoke-perm ROLE KEY [END] [prefix] [from-key]
//   auth-enable, auth-disable, auth-status (enabled and revision on every member)
//   put KEY VALUE [lease=ID] [prev-kv], get KEY [END] [serializable], del KEY [END] [prev-kv]
//   txn [cmp=K1,K2] [then=OP,...] [else=OP,...] [nested=then|else]
//       OP: put:K:V, get:K, del:K; nested wraps the `then`/`else` ops in an inner txn
//   watch KEY [END], lease-grant TTL id=ID, lease-revoke ID, lease-ttl ID (time-to-live with its
//   keys), compact REV
//   member-list, member-add NAME URL, member-remove|member-promote|move-leader ID,
//   member-update ID URL, hash, alarm-list, alarm-disarm, defragment
//   (any KV, member or maintenance request: [require-admin] sets Request::require_admin)
//   tick N, restart N (crash and restart member N)

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/auth/password.h"
#include "core/base/errors.h"
#include "core/server/testing/server_cluster.h"
#include "gtest/gtest.h"
#include "tools/testing/datadriven.h"

namespace kvstore::server {
namespace {

using datadriven::Command;

std::string Printable(const std::string& bytes) {
  if (bytes == std::string(1, '\0')) return "\\0";
  return bytes;
}

class Transcript {
 public:
  std::string Run(const Command& c) {
    if (c.name == "cluster") return NewCluster(c);
    if (cluster_ == nullptr) NewCluster(c);
    std::vector<std::string> words;
    for (const std::string& w : c.Positional()) {
      if (w != "prefix" && w != "from-key" && w != "serializable" && w != "prev-kv") {
        words.push_back(w);
      }
    }
    auto word = [&](size_t i) { return i < words.size() ? words[i] : std::string(); };
    Request r;
    if (const auto* as = c.Find("as"); as != nullptr && !as->values.empty()) {
      auto token = tokens_.find(as->values[0]);
      r.token = token != tokens_.end() ? token->second : "unknown-token";
    }
    raft::NodeId on = 1;
    if (const auto* n = c.Find("on"); n != nullptr && !n->values.empty()) {
      on = std::stoull(n->values[0]);
    }
    const std::string& name = c.name;
    if (name == "tick") {
      cluster_->TickAll(std::stoi(word(0)));
      return "ok";
    }
    if (name == "restart") {
      const raft::NodeId id = std::stoull(word(0));
      cluster_->Crash(id);
      cluster_->Restart(id);
      cluster_->TickAll(30);
      return absl::StrCat("leader ", cluster_->WaitForLeader());
    }
    if (name == "auth-status") {
      std::string out;
      for (raft::NodeId id : cluster_->ids()) {
        const auth::AuthStore& store = cluster_->server(id).auth_store();
        absl::StrAppend(&out, out.empty() ? "" : "\n", id, ": enabled=", store.enabled(),
                        " revision=", store.revision());
      }
      return out;
    }
    if (name == "watch") {
      mvcc::WatchRequest w;
      w.key = word(0);
      w.range_end = word(1);
      auto id = cluster_->server(on).Watch(w, r.token);
      if (!id.ok()) return absl::StrCat("error: ", id.status().message());
      return "ok (watch created)";
    }
    if (name == "login") {
      r.type = RequestType::kAuthenticate;
      r.auth.name = word(0);
      r.auth.password = word(1);
      auto response = Call(on, std::move(r));
      if (!response.ok()) return absl::StrCat("error: ", response.status().message());
      tokens_[word(0)] = response->token;
      return absl::StrCat("token ", response->token);
    }
    static const std::map<std::string, RequestType> kAuthTypes = {
        {"auth-enable", RequestType::kAuthEnable},
        {"auth-disable", RequestType::kAuthDisable},
        {"user-add", RequestType::kUserAdd},
        {"user-delete", RequestType::kUserDelete},
        {"passwd", RequestType::kUserChangePassword},
        {"grant-role", RequestType::kUserGrantRole},
        {"revoke-role", RequestType::kUserRevokeRole},
        {"user-get", RequestType::kUserGet},
        {"user-list", RequestType::kUserList},
        {"role-add", RequestType::kRoleAdd},
        {"role-delete", RequestType::kRoleDelete},
        {"grant-perm", RequestType::kRoleGrantPermission},
        {"revoke-perm", RequestType::kRoleRevokePermission},
        {"role-get", RequestType::kRoleGet},
        {"role-list", RequestType::kRoleList},
    };
    if (auto it = kAuthTypes.find(name); it != kAuthTypes.end()) {
      r.type = it->second;
      switch (r.type) {
        case RequestType::kUserAdd:
        case RequestType::kUserChangePassword:
          r.auth.name = word(0);
          r.auth.password = word(1);
          break;
        case RequestType::kUserDelete:
        case RequestType::kUserGet:
          r.auth.name = word(0);
          break;
        case RequestType::kUserGrantRole:
        case RequestType::kUserRevokeRole:
          r.auth.name = word(0);
          r.auth.role = word(1);
          break;
        case RequestType::kRoleAdd:
        case RequestType::kRoleDelete:
        case RequestType::kRoleGet:
          r.auth.role = word(0);
          break;
        case RequestType::kRoleGrantPermission: {
          r.auth.role = word(0);
          const std::string type = word(1);
          r.auth.permission.type = type == "read"    ? auth::PermissionType::kRead
                                   : type == "write" ? auth::PermissionType::kWrite
                                                     : auth::PermissionType::kReadWrite;
          SetRange(c, word(2), word(3), &r.auth.permission.key, &r.auth.permission.range_end);
          break;
        }
        case RequestType::kRoleRevokePermission:
          r.auth.role = word(0);
          SetRange(c, word(1), word(2), &r.auth.permission.key, &r.auth.permission.range_end);
          break;
        default:
          break;
      }
      auto response = Call(on, std::move(r));
      if (!response.ok()) return absl::StrCat("error: ", response.status().message());
      return PrintAuth(name, *response);
    }
    if (name == "put") {
      r.type = RequestType::kPut;
      r.put.key = word(0);
      r.put.value = word(1);
      r.put.prev_kv = c.Find("prev-kv") != nullptr;
      if (const auto* lease = c.Find("lease"); lease != nullptr) {
        r.put.lease = std::stoll(lease->values[0]);
      }
    } else if (name == "get") {
      r.type = RequestType::kRange;
      SetRange(c, word(0), word(1), &r.range.key, &r.range.range_end);
      r.range.serializable = c.Find("serializable") != nullptr;
    } else if (name == "del") {
      r.type = RequestType::kDeleteRange;
      SetRange(c, word(0), word(1), &r.delete_range.key, &r.delete_range.range_end);
      r.delete_range.prev_kv = c.Find("prev-kv") != nullptr;
    } else if (name == "txn") {
      r.type = RequestType::kTxn;
      BuildTxn(c, &r.txn);
    } else if (name == "lease-grant") {
      r.type = RequestType::kLeaseGrant;
      r.ttl_seconds = std::stoll(word(0));
      if (const auto* id = c.Find("id"); id != nullptr) r.lease_id = std::stoll(id->values[0]);
    } else if (name == "lease-revoke") {
      r.type = RequestType::kLeaseRevoke;
      r.lease_id = std::stoll(word(0));
    } else if (name == "lease-ttl") {
      r.type = RequestType::kLeaseTimeToLive;
      r.lease_id = std::stoll(word(0));
    } else if (name == "compact") {
      r.type = RequestType::kCompact;
      r.revision = std::stoll(word(0));
    } else if (name == "member-list") {
      r.type = RequestType::kMemberList;
    } else if (name == "member-add") {
      r.type = RequestType::kMemberAdd;
      r.member.name = word(0);
      r.member.peer_urls = {word(1)};
      r.member.is_learner = true;
    } else if (name == "member-remove" || name == "member-promote" || name == "move-leader") {
      r.type = name == "member-remove"    ? RequestType::kMemberRemove
               : name == "member-promote" ? RequestType::kMemberPromote
                                          : RequestType::kMoveLeader;
      r.member.id = std::stoull(word(0));
    } else if (name == "member-update") {
      r.type = RequestType::kMemberUpdate;
      r.member.id = std::stoull(word(0));
      r.member.peer_urls = {word(1)};
    } else if (name == "alarm-disarm") {
      r.type = RequestType::kAlarmDisarm;
    } else if (name == "hash") {
      r.type = RequestType::kHash;
    } else if (name == "alarm-list") {
      r.type = RequestType::kAlarmList;
    } else if (name == "defragment") {
      r.type = RequestType::kDefragment;
    } else {
      return absl::StrCat("unknown command ", name);
    }
    r.require_admin = c.Find("require-admin") != nullptr;
    auto response = Call(on, std::move(r));
    if (!response.ok()) return absl::StrCat("error: ", response.status().message());
    return PrintKv(name, *response);
  }

 private:
  std::string NewCluster(const Command& c) {
    int64_t ttl = 300;
    if (const auto* t = c.Find("token-ttl-seconds"); t != nullptr) ttl = std::stoll(t->values[0]);
    cluster_ = std::make_unique<testing::ServerCluster>(
        std::vector<raft::NodeId>{1, 2, 3}, [ttl](ServerConfig& config) {
          config.password_hash_cost = auth::kMinBcryptCost;
          config.auth_token_ttl_seconds = ttl;
        });
    tokens_.clear();
    // Member 1 leads every transcript: its elections are deterministic.
    for (int i = 0; i < 300 && !cluster_->server(1).is_leader(); ++i) {
      cluster_->TickAll();
      if (cluster_->Leader() != raft::kNoNode && cluster_->Leader() != 1) {
        Request move;
        move.type = RequestType::kMoveLeader;
        move.member.id = 1;
        cluster_->Call(cluster_->Leader(), move);
      }
    }
    return cluster_->server(1).is_leader() ? "ok" : "no leader";
  }

  absl::StatusOr<Response> Call(raft::NodeId on, Request r) {
    std::optional<Response> response = cluster_->Call(on, std::move(r));
    if (!response.has_value()) return absl::DeadlineExceededError("no response");
    if (!response->status.ok()) return response->status;
    return *response;
  }

  static void SetRange(const Command& c, const std::string& key, const std::string& end,
                       std::string* out_key, std::string* out_end) {
    *out_key = key;
    *out_end = end;
    if (c.Find("prefix") != nullptr) *out_end = mvcc::PrefixEnd(key);
    if (c.Find("from-key") != nullptr) *out_end = std::string(1, '\0');
  }

  static std::vector<mvcc::RequestOp> Ops(const Command& c, absl::string_view key) {
    std::vector<mvcc::RequestOp> ops;
    const auto* arg = c.Find(key);
    if (arg == nullptr) return ops;
    for (const std::string& text : arg->values) {
      std::vector<std::string> parts = absl::StrSplit(text, ':');
      mvcc::RequestOp op;
      if (parts[0] == "put") {
        op.kind = mvcc::RequestOp::Kind::kPut;
        op.put.key = parts.at(1);
        op.put.value = parts.size() > 2 ? parts[2] : "";
      } else if (parts[0] == "get") {
        op.kind = mvcc::RequestOp::Kind::kRange;
        op.range.key = parts.at(1);
      } else {
        op.kind = mvcc::RequestOp::Kind::kDeleteRange;
        op.delete_range.key = parts.at(1);
      }
      ops.push_back(std::move(op));
    }
    return ops;
  }

  static void BuildTxn(const Command& c, mvcc::TxnRequest* txn) {
    if (const auto* cmp = c.Find("cmp"); cmp != nullptr) {
      for (const std::string& key : cmp->values) {
        mvcc::Compare compare;
        compare.target = mvcc::Compare::Target::kVersion;
        compare.result = mvcc::Compare::Result::kGreater;
        compare.key = key;
        compare.number = 0;
        txn->compare.push_back(std::move(compare));
      }
    }
    txn->success = Ops(c, "then");
    txn->failure = Ops(c, "else");
    if (const auto* nested = c.Find("nested"); nested != nullptr) {
      auto& branch = nested->values.at(0) == "then" ? txn->success : txn->failure;
      auto inner = std::make_shared<mvcc::TxnRequest>();
      inner->success = std::move(branch);
      mvcc::RequestOp op;
      op.kind = mvcc::RequestOp::Kind::kTxn;
      op.txn = inner;
      branch = {std::move(op)};
    }
  }

  static std::string PrintAuth(const std::string& name, const Response& response) {
    if (name == "user-get") {
      return absl::StrCat("User: ", response.user.name,
                          "\nRoles: ", absl::StrJoin(response.user.roles, " "));
    }
    if (name == "user-list" || name == "role-list") {
      return response.names.empty() ? "(none)" : absl::StrJoin(response.names, "\n");
    }
    if (name == "role-get") {
      std::string out = absl::StrCat("Role ", response.role.name);
      for (const char* kind : {"Read", "Write"}) {
        absl::StrAppend(&out, "\nKV ", kind, ":");
        for (const auth::Permission& p : response.role.permissions) {
          const bool read = p.type != auth::PermissionType::kWrite;
          const bool write = p.type != auth::PermissionType::kRead;
          if ((kind[0] == 'R' && !read) || (kind[0] == 'W' && !write)) continue;
          absl::StrAppend(&out, "\n  [", p.key, ", ",
                          p.range_end.empty() ? "" : Printable(p.range_end), ")");
        }
      }
      return out;
    }
    return "ok";
  }

  static std::string PrintKv(const std::string& name, const Response& response) {
    if (name == "put") return absl::StrCat("ok rev=", response.put.revision);
    if (name == "del") return absl::StrCat("ok deleted=", response.delete_range.deleted);
    if (name == "get") {
      std::vector<std::string> kvs;
      for (const mvcc::KeyValue& kv : response.range.kvs) kvs.push_back(kv.key + "=" + kv.value);
      return kvs.empty() ? "(none)" : absl::StrJoin(kvs, " ");
    }
    if (name == "txn") return absl::StrCat("ok succeeded=", response.txn.succeeded);
    if (name == "lease-grant") return absl::StrCat("ok lease=", response.lease.id);
    if (name == "lease-ttl") {
      return absl::StrCat("ok lease=", response.lease.id,
                          " granted-ttl=", response.lease.granted_ttl_seconds,
                          " keys=", absl::StrJoin(response.lease.keys, ","));
    }
    if (name == "member-list") return absl::StrCat("ok members=", response.members.size());
    return "ok";
  }

  std::unique_ptr<testing::ServerCluster> cluster_;
  std::map<std::string, std::string> tokens_;
};

// ---------------------------------------------------------------------------------------------
// Orders of events a one-command-at-a-time transcript cannot produce.

Request AuthReq(RequestType type, std::string name = "", std::string role = "",
                std::string token = "") {
  Request r;
  r.type = type;
  r.auth.name = std::move(name);
  r.auth.role = std::move(role);
  r.auth.password = "pw";
  r.token = std::move(token);
  return r;
}

// Root and alice (role rw: readwrite on [a, b)), auth enabled; returns {root, alice} tokens.
std::pair<std::string, std::string> SetUpUsers(testing::ServerCluster& cluster, raft::NodeId on) {
  for (Request r :
       {AuthReq(RequestType::kUserAdd, "root"),
        AuthReq(RequestType::kUserGrantRole, "root", "root"),
        AuthReq(RequestType::kUserAdd, "alice"), AuthReq(RequestType::kRoleAdd, "", "rw"),
        AuthReq(RequestType::kUserGrantRole, "alice", "rw")}) {
    EXPECT_TRUE(cluster.Call(on, r)->status.ok());
  }
  Request grant = AuthReq(RequestType::kRoleGrantPermission, "", "rw");
  grant.auth.permission = {auth::PermissionType::kReadWrite, "a", "b"};
  EXPECT_TRUE(cluster.Call(on, grant)->status.ok());
  EXPECT_TRUE(cluster.Call(on, AuthReq(RequestType::kAuthEnable))->status.ok());
  const std::string root = cluster.Call(on, AuthReq(RequestType::kAuthenticate, "root"))->token;
  const std::string alice = cluster.Call(on, AuthReq(RequestType::kAuthenticate, "alice"))->token;
  EXPECT_FALSE(root.empty());
  EXPECT_FALSE(alice.empty());
  return {root, alice};
}

void FastHashes(ServerConfig& config) { config.password_hash_cost = auth::kMinBcryptCost; }

// etcd isOpPermitted: a write whose token was resolved at auth revision R is refused when it
// applies after a change made the revision R+1 (ErrAuthOldRevision), even if the change did not
// touch its permissions: it was decided against a state that no longer holds.
TEST(AuthServerTest, WriteResolvedBeforeAnAuthChangeAppliesIsRefusedAsOld) {
  testing::ServerCluster cluster({1, 2, 3}, FastHashes);
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  auto [root, alice] = SetUpUsers(cluster, leader);
  // The revoke is proposed first and applies first; the put was resolved before it applied.
  Request revoke = AuthReq(RequestType::kRoleRevokePermission, "", "rw", root);
  revoke.auth.permission = {auth::PermissionType::kReadWrite, "a", "b"};
  const RequestId revoke_id = cluster.server(leader).Submit(revoke);
  Request put = testing::PutRequest("a1", "v");
  put.token = alice;
  const RequestId put_id = cluster.server(leader).Submit(put);
  cluster.Stabilize();
  auto& responses = cluster.member(leader).responses;
  ASSERT_TRUE(responses.count(revoke_id) && responses.count(put_id));
  EXPECT_TRUE(responses[revoke_id].status.ok());
  EXPECT_EQ(responses[put_id].status.message(),
            "AUTH_OLD_REVISION: etcdserver: revision of auth store is old");
  // Retried at the new revision, it is checked against the new permissions.
  EXPECT_EQ(CodeOf(cluster.Call(leader, put)->status), ErrorCode::kPermissionDenied);
}

// The auth store is replicated state in the backend: a member that was down while it changed
// catches up by a snapshot and enforces the same permissions.
TEST(AuthServerTest, LaggingMemberGetsTheAuthStoreBySnapshot) {
  testing::ServerCluster cluster({1, 2, 3}, [](ServerConfig& config) {
    FastHashes(config);
    config.snapshot_every_entries = 5;
    config.snapshot_catch_up_entries = 1;
  });
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  raft::NodeId lagging = leader == 3 ? 2 : 3;
  cluster.Crash(lagging);
  auto [root, alice] = SetUpUsers(cluster, leader);
  for (int i = 0; i < 20; ++i) {
    Request put = testing::PutRequest("a" + std::to_string(i), "v");
    put.token = root;
    ASSERT_TRUE(cluster.Call(leader, put)->status.ok());
  }
  cluster.Restart(lagging);
  for (int i = 0;
       i < 100 && cluster.server(lagging).applied_index() < cluster.server(leader).applied_index();
       ++i) {
    cluster.TickAll();
  }
  const auth::AuthStore& store = cluster.server(lagging).auth_store();
  EXPECT_TRUE(store.enabled());
  EXPECT_EQ(store.revision(), cluster.server(leader).auth_store().revision());
  EXPECT_EQ(store.UserNames(), (std::vector<std::string>{"alice", "root"}));
  // Tokens are member-local: alice logs in again on the lagging member (assigned everywhere).
  const std::string token =
      cluster.Call(lagging, AuthReq(RequestType::kAuthenticate, "alice"))->token;
  Request get = testing::GetRequest("z", /*serializable=*/true);
  get.token = token;
  EXPECT_EQ(CodeOf(cluster.Call(lagging, get)->status), ErrorCode::kPermissionDenied);
  get.range.key = "a1";
  EXPECT_TRUE(cluster.Call(lagging, get)->status.ok());
}

class AuthTranscriptTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AuthTranscriptTest, Transcript) {
  Transcript transcript;
  datadriven::RunTranscript(GetParam(),
                            [&](const Command& command) { return transcript.Run(command); });
}

std::vector<std::string> Transcripts() { return datadriven::ListFiles("testdata/auth", ".txt"); }

TEST(AuthTranscripts, Exist) { EXPECT_FALSE(Transcripts().empty()); }

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param.substr(info.param.find_last_of('/') + 1);
  name = name.substr(0, name.find('.'));
  for (char& ch : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Auth, AuthTranscriptTest, ::testing::ValuesIn(Transcripts()), TestName);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(AuthTranscriptTest);

}  // namespace
}  // namespace kvstore::server
