#include "sim/auth_checker.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace kvstore::sim {
namespace {

// [begin, end), end nullopt meaning "to the last key".
struct Span {
  std::string begin;
  std::optional<std::string> end;
};

Span SpanOf(const std::string& key, const std::string& range_end) {
  if (range_end.empty()) return {key, key + std::string(1, '\0')};
  if (range_end == std::string(1, '\0')) return {key, std::nullopt};
  return {key, range_end};
}

// Whether the union of `have` covers `want`: walk from want.begin, extending the covered prefix
// with any span that starts inside it, until nothing extends it.
bool Covered(const Span& want, std::vector<Span> have) {
  if (want.end.has_value() && *want.end <= want.begin) return true;
  std::string reached = want.begin;  // [want.begin, reached) is covered
  bool unbounded = false;
  for (bool grew = true; grew && !unbounded;) {
    grew = false;
    for (const Span& s : have) {
      if (s.begin > reached) continue;
      if (!s.end.has_value()) {
        unbounded = true;
        break;
      }
      if (*s.end > reached) {
        reached = *s.end;
        grew = true;
      }
    }
    if (want.end.has_value() && reached >= *want.end) return true;
  }
  return unbounded;
}

std::string Describe(const std::string& key, const std::string& range_end) {
  if (range_end.empty()) return absl::StrCat("key ", absl::CHexEscape(key));
  return absl::StrCat("range [", absl::CHexEscape(key), ", ", absl::CHexEscape(range_end), ")");
}

}  // namespace

void AuthChecker::Record(uint64_t revision, const AuthModel& model) {
  states_[revision] = model;
  unknown_from_.erase(revision);
}

void AuthChecker::MarkUnknown() {
  const uint64_t last = states_.empty() ? 0 : states_.rbegin()->first;
  unknown_from_.insert(last + 1);
}

bool AuthChecker::Permitted(const AuthModel& model, const std::string& user, const std::string& key,
                            const std::string& range_end, auth::PermissionType type) {
  auto roles = model.user_roles.find(user);
  if (roles == model.user_roles.end()) return false;
  if (roles->second.count(std::string(auth::kRootRole)) > 0) return true;
  std::vector<Span> have;
  for (const std::string& role : roles->second) {
    auto perms = model.roles.find(role);
    if (perms == model.roles.end()) continue;
    for (const auth::Permission& p : perms->second) {
      if (p.type == type || p.type == auth::PermissionType::kReadWrite) {
        have.push_back(SpanOf(p.key, p.range_end));
      }
    }
  }
  return Covered(SpanOf(key, range_end), std::move(have));
}

std::string AuthChecker::TxnDenied(const AuthModel& model, const std::string& user,
                                   const mvcc::TxnRequest& txn) {
  using auth::PermissionType;
  for (const mvcc::Compare& c : txn.compare) {
    if (!Permitted(model, user, c.key, c.range_end, PermissionType::kRead)) {
      return absl::StrCat("compare on ", Describe(c.key, c.range_end), " (read)");
    }
  }
  for (const auto* branch : {&txn.success, &txn.failure}) {
    const char* name = branch == &txn.success ? "success" : "failure";
    for (const mvcc::RequestOp& op : *branch) {
      switch (op.kind) {
        case mvcc::RequestOp::Kind::kRange:
          if (!Permitted(model, user, op.range.key, op.range.range_end, PermissionType::kRead)) {
            return absl::StrCat(name, " range of ", Describe(op.range.key, op.range.range_end));
          }
          break;
        case mvcc::RequestOp::Kind::kPut:
          if (!Permitted(model, user, op.put.key, "", PermissionType::kWrite)) {
            return absl::StrCat(name, " put of ", Describe(op.put.key, ""));
          }
          break;
        case mvcc::RequestOp::Kind::kDeleteRange:
          if (!Permitted(model, user, op.delete_range.key, op.delete_range.range_end,
                         PermissionType::kWrite)) {
            return absl::StrCat(name, " delete of ",
                                Describe(op.delete_range.key, op.delete_range.range_end));
          }
          break;
        case mvcc::RequestOp::Kind::kTxn:
          if (op.txn != nullptr) {
            std::string denied = TxnDenied(model, user, *op.txn);
            if (!denied.empty()) return absl::StrCat(name, " nested txn: ", denied);
          }
          break;
      }
    }
  }
  return "";
}

void AuthChecker::Succeeded(const std::string& user, const server::Request& request,
                            const server::Response& response, int64_t at_ms) {
  successes_.push_back(Success{user, request, response, at_ms});
}

void AuthChecker::Judge() {
  for (const Success& success : successes_) JudgeOne(success);
  successes_.clear();
}

void AuthChecker::JudgeOne(const Success& success) {
  const std::string& user = success.user;
  const server::Request& request = success.request;
  const server::Response& response = success.response;
  const uint64_t revision = response.header.auth_revision;
  auto state = states_.upper_bound(revision);
  // The state in force at `revision`: the last recorded at or before it, unless an unknown
  // stretch began after that record.
  if (state == states_.begin()) {
    ++unchecked_;
    return;
  }
  --state;
  auto unknown = unknown_from_.upper_bound(state->first);
  if (unknown != unknown_from_.end() && *unknown <= revision) {
    ++unchecked_;
    return;
  }
  const AuthModel& model = state->second;
  using auth::PermissionType;
  std::string denied;
  switch (request.type) {
    case server::RequestType::kRange:
      if (!Permitted(model, user, request.range.key, request.range.range_end,
                     PermissionType::kRead)) {
        denied = absl::StrCat("range of ", Describe(request.range.key, request.range.range_end));
      }
      break;
    case server::RequestType::kPut:
      if (!Permitted(model, user, request.put.key, "", PermissionType::kWrite)) {
        denied = absl::StrCat("put of ", Describe(request.put.key, ""));
      }
      break;
    case server::RequestType::kDeleteRange: {
      const mvcc::DeleteRangeRequest& d = request.delete_range;
      if (!Permitted(model, user, d.key, d.range_end, PermissionType::kWrite) ||
          (d.prev_kv && !Permitted(model, user, d.key, d.range_end, PermissionType::kRead))) {
        denied = absl::StrCat("delete of ", Describe(d.key, d.range_end));
      }
      break;
    }
    case server::RequestType::kTxn:
      denied = TxnDenied(model, user, request.txn);
      break;
    default:
      return;
  }
  ++checked_;
  if (!denied.empty()) {
    violations_.push_back(
        absl::StrCat(success.at_ms > 0 ? absl::StrCat("@", success.at_ms, "ms: ") : "", user, "'s ",
                     server::RequestType::kTxn == request.type ? "txn" : "request",
                     " succeeded at auth revision ", revision, " without permission: ", denied));
  }
}

}  // namespace kvstore::sim
