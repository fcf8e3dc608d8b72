#ifndef KVSTORE_SIM_AUTH_CHECKER_H_
#define KVSTORE_SIM_AUTH_CHECKER_H_

// The auth checker: no client operation succeeds without a permission valid at its auth revision.
//
// The workload's admin is the only writer of the auth store after setup, and it makes one change
// at a time, so the permissions in force at every auth revision are known: each successful change
// reports (ResponseHeader::auth_revision) the revision it created, and the checker records the
// admin's model of users, roles and permissions at that revision. A change whose outcome is
// unknown (timed out, member down) leaves the revisions up to the next state the admin reads
// back unknown: operations checked at them are not judged (counted as unchecked).
//
// Every successful client operation reports the auth revision it was checked against (a write:
// at its apply; a read: when served). The checker recomputes, with its own interval arithmetic
// (not core/auth's), whether the user's roles at that revision cover everything the operation
// touches: range -> read; put -> write (and read with prev_kv); delete -> write (and read with
// prev_kv); txn -> every compare read, every operation of both branches, nested txns included.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/auth/auth_store.h"
#include "core/server/server.h"

namespace kvstore::sim {

// Users, their roles and the roles' permissions, as the admin believes them.
struct AuthModel {
  std::map<std::string, std::vector<auth::Permission>> roles;
  std::map<std::string, std::set<std::string>> user_roles;
};

class AuthChecker {
 public:
  // The state in force from `revision` on (until the next recorded or unknown revision).
  void Record(uint64_t revision, const AuthModel& model);
  // Revisions after the last recorded one are unknown until the next Record.
  void MarkUnknown();

  // A client operation by `user` that succeeded (at virtual time `at_ms`, for the report). It is
  // judged by Judge: the change that made its revision may still be in flight now.
  void Succeeded(const std::string& user, const server::Request& request,
                 const server::Response& response, int64_t at_ms);
  // Judges every operation recorded, against the states recorded by then.
  void Judge();
  // Succeeded then Judge (unit tests).
  void CheckSucceeded(const std::string& user, const server::Request& request,
                      const server::Response& response) {
    Succeeded(user, request, response, 0);
    Judge();
  }

  const std::vector<std::string>& violations() const { return violations_; }
  uint64_t checked() const { return checked_; }
  uint64_t unchecked() const { return unchecked_; }

 private:
  // Whether `model` lets `user` do `type` on [key, range_end) (etcd's range_end conventions).
  static bool Permitted(const AuthModel& model, const std::string& user, const std::string& key,
                        const std::string& range_end, auth::PermissionType type);
  // The first thing `txn` touches that `user` may not, or empty.
  static std::string TxnDenied(const AuthModel& model, const std::string& user,
                               const mvcc::TxnRequest& txn);

  struct Success {
    std::string user;
    server::Request request;
    server::Response response;
    int64_t at_ms = 0;
  };
  void JudgeOne(const Success& success);

  std::vector<Success> successes_;
  std::map<uint64_t, AuthModel> states_;
  std::set<uint64_t> unknown_from_;  // revisions from which the state is unknown
  std::vector<std::string> violations_;
  uint64_t checked_ = 0;
  uint64_t unchecked_ = 0;
};

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_AUTH_CHECKER_H_
