#include "sim/auth_workload.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/mvcc/types.h"
#include "core/raft/rand.h"
#include "sim/auth_checker.h"
#include "sim/simulation.h"

namespace kvstore::sim {
namespace {

using server::Request;
using server::RequestType;
using server::Response;

constexpr int64_t kRequestTimeoutMs = 1500;  // an outstanding request older than this is dropped
const char* const kKeys[] = {"a/0", "a/1", "a/2", "b/0", "b/1", "c/0", "c/1"};
const char* const kPrefixes[] = {"a/", "b/", "c/"};
const char* const kRoles[] = {"r1", "r2", "r3"};
const char* const kUsers[] = {"alice", "bob"};

auth::Permission RandomPermission(raft::SplitMix64& rng) {
  auth::Permission p;
  p.type = static_cast<auth::PermissionType>(rng.Uniform(3));
  switch (rng.Uniform(4)) {
    case 0:
      p.key = kKeys[rng.Uniform(std::size(kKeys))];
      break;
    case 1:
      p.key = kPrefixes[rng.Uniform(std::size(kPrefixes))];
      p.range_end = mvcc::PrefixEnd(p.key);
      break;
    case 2:
      p.key = "a/1";
      p.range_end = "b/1";
      break;
    default:
      p.key = "b/";
      p.range_end = std::string(1, '\0');
      break;
  }
  return p;
}

// A key or a prefix range.
void RandomRange(raft::SplitMix64& rng, std::string* key, std::string* range_end) {
  if (rng.Percent(70)) {
    *key = kKeys[rng.Uniform(std::size(kKeys))];
    range_end->clear();
  } else {
    *key = kPrefixes[rng.Uniform(std::size(kPrefixes))];
    *range_end = mvcc::PrefixEnd(*key);
  }
}

mvcc::RequestOp RandomOp(raft::SplitMix64& rng, int depth) {
  mvcc::RequestOp op;
  const uint64_t kind = rng.Uniform(depth == 0 ? 4 : 3);
  if (kind == 0) {
    op.kind = mvcc::RequestOp::Kind::kRange;
    RandomRange(rng, &op.range.key, &op.range.range_end);
  } else if (kind == 1) {
    op.kind = mvcc::RequestOp::Kind::kPut;
    op.put.key = kKeys[rng.Uniform(std::size(kKeys))];
    op.put.value = absl::StrCat("v", rng.Uniform(100));
  } else if (kind == 2) {
    op.kind = mvcc::RequestOp::Kind::kDeleteRange;
    op.delete_range.key = kKeys[rng.Uniform(std::size(kKeys))];
  } else {
    op.kind = mvcc::RequestOp::Kind::kTxn;
    auto inner = std::make_shared<mvcc::TxnRequest>();
    inner->success.push_back(RandomOp(rng, depth + 1));
    inner->failure.push_back(RandomOp(rng, depth + 1));
    op.txn = std::move(inner);
  }
  return op;
}

Request RandomClientRequest(raft::SplitMix64& rng) {
  Request r;
  const uint64_t pick = rng.Uniform(10);
  if (pick < 3) {
    r.type = RequestType::kPut;
    r.put.key = kKeys[rng.Uniform(std::size(kKeys))];
    r.put.value = absl::StrCat("v", rng.Uniform(100));
  } else if (pick < 5) {
    r.type = RequestType::kRange;
    RandomRange(rng, &r.range.key, &r.range.range_end);
    r.range.serializable = rng.Percent(30);
  } else if (pick < 6) {
    r.type = RequestType::kDeleteRange;
    RandomRange(rng, &r.delete_range.key, &r.delete_range.range_end);
    r.delete_range.prev_kv = rng.Percent(50);
  } else {
    r.type = RequestType::kTxn;
    mvcc::Compare compare;
    compare.key = kKeys[rng.Uniform(std::size(kKeys))];
    compare.target = mvcc::Compare::Target::kVersion;
    compare.result = mvcc::Compare::Result::kGreater;
    compare.number = 0;
    r.txn.compare.push_back(std::move(compare));
    for (uint64_t i = 0, n = 1 + rng.Uniform(2); i < n; ++i)
      r.txn.success.push_back(RandomOp(rng, 0));
    for (uint64_t i = 0, n = 1 + rng.Uniform(2); i < n; ++i)
      r.txn.failure.push_back(RandomOp(rng, 0));
  }
  return r;
}

struct Outstanding {
  raft::NodeId node = raft::kNoNode;
  server::RequestId id = 0;
  int64_t sent_ms = 0;
  Request request;
};

class Driver {
 public:
  explicit Driver(const AuthWorkloadOptions& options)
      : options_(options), rng_(options.seed * 0x9E3779B97F4A7C15ull + 7) {
    SimOptions sim_options;
    sim_options.seed = options.seed;
    sim_options.voters = options.voters;
    sim_ = std::make_unique<Simulation>(sim_options);
  }

  AuthWorkloadResult Run() {
    if (!SetUp()) return Finish();
    const int64_t end_ms = sim_->now_ms() + options_.duration_ms;
    int64_t next_fault_ms = sim_->now_ms() + 200;
    while (sim_->now_ms() < end_ms) {
      for (size_t c = 0; c < std::size(kUsers); ++c) StepClient(c);
      StepAdmin();
      if (options_.faults && sim_->now_ms() >= next_fault_ms) {
        Fault();
        next_fault_ms = sim_->now_ms() + 100 + static_cast<int64_t>(rng_.Uniform(400));
      }
      sim_->RunFor(1);
    }
    // The admin's last change settles (or is read back), then everything heals: every member must
    // hold the admin's auth state.
    for (int64_t until = sim_->now_ms() + 2 * kRequestTimeoutMs;
         (admin_.id != 0 || resync_) && sim_->now_ms() < until;) {
      StepAdmin();
      sim_->RunFor(1);
    }
    if (admin_.id != 0) {
      checker_.MarkUnknown();
      resync_ = true;
    }
    sim_->Heal();
    for (raft::NodeId id : sim_->node_ids()) {
      if (!sim_->up(id)) sim_->Restart(id);
    }
    sim_->RunFor(2000);
    CheckReplicas();
    return Finish();
  }

 private:
  // Root, the roles and the users, through the log one by one, then auth enabled.
  bool SetUp() {
    if (!sim_->RunUntil([&] { return sim_->Leader() != raft::kNoNode; }, 5000)) {
      result_.violations.push_back("setup: no leader");
      return false;
    }
    auto admin = [&](Request r) {
      for (int attempt = 0; attempt < 20; ++attempt) {
        const raft::NodeId leader = sim_->Leader();
        if (leader == raft::kNoNode) {
          sim_->RunFor(100);
          continue;
        }
        r.token = root_token_;
        std::optional<Response> response = sim_->Call(leader, r);
        if (response.has_value() && response->status.ok()) return *response;
        if (response.has_value() && CodeOf(response->status) != ErrorCode::kNoLeader &&
            CodeOf(response->status) != ErrorCode::kLeadershipChanged &&
            CodeOf(response->status) != ErrorCode::kTimeout) {
          return *response;
        }
      }
      Response none;
      none.status = absl::DeadlineExceededError("setup request never answered");
      return none;
    };
    std::vector<Request> steps;
    auto user = [](RequestType type, std::string name, std::string role = "") {
      Request r;
      r.type = type;
      r.auth.name = std::move(name);
      r.auth.role = std::move(role);
      r.auth.password = "pw";
      return r;
    };
    steps.push_back(user(RequestType::kUserAdd, "root"));
    steps.push_back(user(RequestType::kUserGrantRole, "root", "root"));
    for (const char* role : kRoles) steps.push_back(user(RequestType::kRoleAdd, "", role));
    for (const char* name : kUsers) steps.push_back(user(RequestType::kUserAdd, name));
    steps.push_back(user(RequestType::kAuthEnable, ""));
    for (const Request& step : steps) {
      Response response = admin(step);
      if (!response.status.ok()) {
        result_.violations.push_back(absl::StrCat("setup: ", response.status.message()));
        return false;
      }
    }
    model_.user_roles["root"] = {"root"};
    for (const char* role : kRoles) model_.roles[role];
    for (const char* name : kUsers) model_.user_roles[name];
    Response login = admin(user(RequestType::kAuthenticate, "root"));
    if (!login.status.ok()) {
      result_.violations.push_back(absl::StrCat("setup: root login: ", login.status.message()));
      return false;
    }
    root_token_ = login.token;
    checker_.Record(login.header.auth_revision, model_);
    return true;
  }

  raft::NodeId RandomLiveNode() {
    std::vector<raft::NodeId> live;
    for (raft::NodeId id : sim_->node_ids()) {
      if (sim_->up(id)) live.push_back(id);
    }
    return live.empty() ? raft::kNoNode : live[rng_.Uniform(live.size())];
  }

  // Polls an outstanding request: its response, or nullopt while waiting; gives up (unknown
  // outcome) after kRequestTimeoutMs or when its node went down.
  std::optional<std::optional<Response>> Poll(Outstanding& o) {
    std::optional<Response> response = sim_->TakeResponse(o.node, o.id);
    if (response.has_value()) return response;
    if (!sim_->up(o.node) || sim_->now_ms() - o.sent_ms > kRequestTimeoutMs) {
      return std::optional<Response>();
    }
    return std::nullopt;
  }

  bool Send(Outstanding& o, Request request) {
    o.node = RandomLiveNode();
    if (o.node == raft::kNoNode) return false;
    o.request = std::move(request);
    o.id = sim_->Submit(o.node, o.request);
    o.sent_ms = sim_->now_ms();
    return o.id != 0;
  }

  void StepClient(size_t c) {
    Outstanding& o = clients_[c];
    if (o.id != 0) {
      auto polled = Poll(o);
      if (!polled.has_value()) return;
      o.id = 0;
      if (!polled->has_value()) return;  // outcome unknown
      const Response& response = **polled;
      if (o.request.type == RequestType::kAuthenticate) {
        if (response.status.ok()) tokens_[c] = response.token;
        return;
      }
      if (response.status.ok()) {
        ++result_.client_ops_succeeded;
        checker_.Succeeded(kUsers[c], o.request, response, sim_->now_ms());
      } else {
        ++result_.client_ops_refused;
        const ErrorCode code = CodeOf(response.status);
        if (code == ErrorCode::kInvalidAuthToken || code == ErrorCode::kUserEmpty) {
          tokens_[c].clear();
        }
      }
    }
    if (rng_.Percent(50)) return;  // think
    Request request;
    if (tokens_[c].empty()) {
      request.type = RequestType::kAuthenticate;
      request.auth.name = kUsers[c];
      request.auth.password = "pw";
    } else {
      request = RandomClientRequest(rng_);
      request.token = tokens_[c];
    }
    Send(o, std::move(request));
  }

  Request RandomAdminRequest() {
    Request r;
    r.token = root_token_;
    const uint64_t pick = rng_.Uniform(4);
    if (pick == 0) {
      r.type = RequestType::kRoleGrantPermission;
      r.auth.role = kRoles[rng_.Uniform(std::size(kRoles))];
      r.auth.permission = RandomPermission(rng_);
    } else if (pick == 1) {
      r.type = RequestType::kRoleRevokePermission;
      r.auth.role = kRoles[rng_.Uniform(std::size(kRoles))];
      const std::vector<auth::Permission>& perms = model_.roles[r.auth.role];
      r.auth.permission =
          perms.empty() ? RandomPermission(rng_) : perms[rng_.Uniform(perms.size())];
    } else {
      r.type = pick == 2 ? RequestType::kUserGrantRole : RequestType::kUserRevokeRole;
      r.auth.name = kUsers[rng_.Uniform(std::size(kUsers))];
      r.auth.role = kRoles[rng_.Uniform(std::size(kRoles))];
    }
    return r;
  }

  // The admin's change applied: its model follows (as the store does, etcd's rules).
  void ApplyToModel(const Request& r) {
    switch (r.type) {
      case RequestType::kRoleGrantPermission: {
        auto& perms = model_.roles[r.auth.role];
        bool replaced = false;
        for (auth::Permission& p : perms) {
          if (p.key == r.auth.permission.key && p.range_end == r.auth.permission.range_end) {
            p.type = r.auth.permission.type;
            replaced = true;
          }
        }
        if (!replaced) perms.push_back(r.auth.permission);
        break;
      }
      case RequestType::kRoleRevokePermission: {
        auto& perms = model_.roles[r.auth.role];
        perms.erase(std::remove_if(perms.begin(), perms.end(),
                                   [&](const auth::Permission& p) {
                                     return p.key == r.auth.permission.key &&
                                            p.range_end == r.auth.permission.range_end;
                                   }),
                    perms.end());
        break;
      }
      case RequestType::kUserGrantRole:
        model_.user_roles[r.auth.name].insert(r.auth.role);
        break;
      case RequestType::kUserRevokeRole:
        model_.user_roles[r.auth.name].erase(r.auth.role);
        break;
      default:
        break;
    }
  }

  void StepAdmin() {
    if (admin_.id != 0) {
      auto polled = Poll(admin_);
      if (!polled.has_value()) return;
      admin_.id = 0;
      if (!polled->has_value()) {
        // Outcome unknown: what the store holds is read back before the next change.
        checker_.MarkUnknown();
        resync_ = true;
        return;
      }
      const Response& response = **polled;
      if (admin_.request.type == RequestType::kAuthenticate) {
        if (response.status.ok()) root_token_ = response.token;
        return;
      }
      if (response.status.ok()) {
        ApplyToModel(admin_.request);
        ++result_.admin_changes;
        checker_.Record(response.header.auth_revision, model_);
      } else if (CodeOf(response.status) == ErrorCode::kTimeout) {
        checker_.MarkUnknown();
        resync_ = true;
      } else if (CodeOf(response.status) == ErrorCode::kInvalidAuthToken) {
        root_token_.clear();  // a member that restarted forgot it: log in again
      }
      return;
    }
    if (root_token_.empty()) {
      Request login;
      login.type = RequestType::kAuthenticate;
      login.auth.name = "root";
      login.auth.password = "pw";
      Send(admin_, std::move(login));
      return;
    }
    if (resync_) {
      Resync();
      return;
    }
    if (rng_.Percent(97)) return;  // an admin change every ~30 ms
    Send(admin_, RandomAdminRequest());
  }

  // Reads every role and user back through the log (nothing else changes the store meanwhile)
  // and records that state at the revision the reads report.
  void Resync() {
    AuthModel model;
    uint64_t revision = 0;
    auto read = [&](Request r) -> std::optional<Response> {
      r.token = root_token_;
      const raft::NodeId node = sim_->Leader();
      if (node == raft::kNoNode) return std::nullopt;
      std::optional<Response> response = sim_->Call(node, r, kRequestTimeoutMs);
      if (!response.has_value() || !response->status.ok()) return std::nullopt;
      if (revision != 0 && response->header.auth_revision != revision) return std::nullopt;
      revision = response->header.auth_revision;
      return response;
    };
    for (const char* role : kRoles) {
      Request r;
      r.type = RequestType::kRoleGet;
      r.auth.role = role;
      std::optional<Response> response = read(r);
      if (!response.has_value()) return;  // try again on a later step
      model.roles[role] = response->role.permissions;
    }
    model.user_roles["root"] = {"root"};
    for (const char* name : kUsers) {
      Request r;
      r.type = RequestType::kUserGet;
      r.auth.name = name;
      std::optional<Response> response = read(r);
      if (!response.has_value()) return;
      model.user_roles[name] =
          std::set<std::string>(response->user.roles.begin(), response->user.roles.end());
    }
    model_ = std::move(model);
    checker_.Record(revision, model_);
    resync_ = false;
  }

  void Fault() {
    std::vector<raft::NodeId> down;
    for (raft::NodeId id : sim_->node_ids()) {
      if (!sim_->up(id)) down.push_back(id);
    }
    if (!down.empty()) {
      sim_->Restart(down[rng_.Uniform(down.size())]);
      return;
    }
    const raft::NodeId victim = RandomLiveNode();
    switch (rng_.Uniform(3)) {
      case 0:
        sim_->Crash(victim);
        break;
      case 1:
        sim_->Isolate(victim);
        break;
      default:
        sim_->Heal();
        break;
    }
  }

  void AddChecker() {
    for (const std::string& v : checker_.violations()) {
      if (reported_ < checker_.violations().size()) {
        result_.violations.push_back(absl::StrCat("auth checker: ", v));
        ++reported_;
      }
    }
  }

  void CheckReplicas() {
    uint64_t revision = 0;
    for (raft::NodeId id : sim_->node_ids()) {
      server::Server* server = sim_->server(id);
      if (server == nullptr) continue;
      const auth::AuthStore& store = server->auth_store();
      if (revision == 0) revision = store.revision();
      if (store.revision() != revision) {
        result_.violations.push_back(absl::StrCat("n", id, " holds auth revision ",
                                                  store.revision(), ", another member ", revision));
      }
      if (resync_) continue;  // the admin's model is not known exactly
      for (const auto& [role, perms] : model_.roles) {
        auto held = store.GetRole(role);
        if (!held.ok() || held->permissions.size() != perms.size()) {
          result_.violations.push_back(absl::StrCat("n", id, " role ", role, " holds ",
                                                    held.ok() ? held->permissions.size() : 0,
                                                    " permissions, the admin made ", perms.size()));
        }
      }
      for (const auto& [name, roles] : model_.user_roles) {
        auto held = store.GetUser(name);
        if (!held.ok() || std::set<std::string>(held->roles.begin(), held->roles.end()) != roles) {
          result_.violations.push_back(
              absl::StrCat("n", id, " user ", name, " holds other roles than the admin granted"));
        }
      }
    }
  }

  AuthWorkloadResult Finish() {
    checker_.Judge();
    AddChecker();
    for (const std::string& v : sim_->violations()) result_.violations.push_back(v);
    result_.checked = checker_.checked();
    result_.unchecked = checker_.unchecked();
    return result_;
  }

  AuthWorkloadOptions options_;
  raft::SplitMix64 rng_;
  std::unique_ptr<Simulation> sim_;
  AuthChecker checker_;
  AuthModel model_;
  std::string root_token_;
  std::string tokens_[std::size(kUsers)];
  Outstanding clients_[std::size(kUsers)];
  Outstanding admin_;
  bool resync_ = false;
  size_t reported_ = 0;
  AuthWorkloadResult result_;
};

}  // namespace

std::string AuthWorkloadResult::Summary() const {
  return absl::StrCat(violations.empty() ? "passed" : "FAILED", ": ", client_ops_succeeded,
                      " client operations succeeded (", checked, " checked, ", unchecked,
                      " at an unknown auth state), ", client_ops_refused, " refused, ",
                      admin_changes, " admin changes");
}

AuthWorkloadResult RunAuthWorkload(const AuthWorkloadOptions& options) {
  return Driver(options).Run();
}

}  // namespace kvstore::sim
