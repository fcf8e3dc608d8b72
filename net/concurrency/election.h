#ifndef KVSTORE_NET_CONCURRENCY_ELECTION_H_
#define KVSTORE_NET_CONCURRENCY_ELECTION_H_

// Leader election over a key prefix (etcd's concurrency.Election).
//
// A candidate's key is <prefix>/<its session's lease id in hex>, created with the session's
// lease by a txn that succeeds only if the key does not exist (create revision 0); the value is
// the candidate's proposal. The leader is the key with the lowest create revision. Campaign
// creates the key (or, for a session that already campaigned, finds it and proclaims the new
// value), then waits until every key created before its own is gone, watching only the last of
// them (queue.h): the candidates lead in the order they campaigned. Proclaim and Resign act only
// while the key is still the one this campaign created (compare on its create revision), so a
// leader whose key is gone (its lease expired) changes nothing.
//
// Observe follows the leader as etcd's does: the first-created key's value, then every put to
// that key (proclamations) until it is deleted, then the next leader. It may skip a leader that
// came and went between two reads, but always delivers the latest one.
//
// Errors as etcd's: "election: not leader" (FAILED_PRECONDITION) for Proclaim without leading,
// "election: no leader" (NOT_FOUND) for Leader with no candidate.

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/mvcc/types.h"
#include "kj/async.h"
#include "net/concurrency/context.h"
#include "net/concurrency/session.h"

namespace kvstore::net::concurrency {

inline constexpr char kElectionNotLeader[] = "election: not leader";
inline constexpr char kElectionNoLeader[] = "election: no leader";

// A leader as Leader and Observe report it: its key-value and the revision it was read at.
struct LeaderValue {
  mvcc::KeyValue kv;
  mvcc::Revision header_revision = 0;
};

class Election {
 public:
  // A candidate: `prefix` gets a trailing "/" as etcd's does. `session` must outlive it.
  Election(Session& session, std::string prefix);
  // An observer without a session: Leader and Observe only (Campaign, Proclaim fail).
  Election(ClientContext context, std::string prefix);
  // etcd's ResumeElection: a leader known by its key and create revision (say, from another
  // process of the same session) that can Proclaim and Resign.
  static Election Resume(Session& session, std::string prefix, std::string leader_key,
                         mvcc::Revision leader_revision);

  // Blocks (running the event loop) until this session leads. Fails, withdrawing the candidacy,
  // when the session is lost, `cancel` (if given) resolves first, or a request fails.
  absl::Status Campaign(const std::string& value, kj::Maybe<kj::Promise<void>> cancel = nullptr);
  // The leader announces a new value without another election.
  absl::Status Proclaim(const std::string& value);
  // Deletes the leader's key: the next candidate leads. Nothing to do when not leading.
  absl::Status Resign();
  // The current leader's key and value.
  absl::StatusOr<LeaderValue> Leader();
  // Calls `on_leader` with the leader, then with every new leader and proclamation, until it
  // returns false or `stop` (if given) resolves (OK both ways), or a request fails. `on_leader`
  // runs on the event loop and must not block on it.
  absl::Status Observe(const std::function<bool(const LeaderValue&)>& on_leader,
                       kj::Maybe<kj::Promise<void>> stop = nullptr);

  const std::string& prefix() const { return prefix_; }
  // The campaign's key (set by Campaign, cleared by Resign and a failed Proclaim).
  const std::string& key() const { return leader_key_; }
  // The key's create revision (a fencing token, as a Mutex's), 0 without a key.
  mvcc::Revision rev() const { return leader_revision_; }
  // The revision of the last successful Campaign, Proclaim or Resign.
  mvcc::Revision header_revision() const { return header_revision_; }
  // A txn compare that holds while this campaign's key is the one it created: put it in every
  // txn that only the leader may commit.
  mvcc::Compare IsLeader() const;

 private:
  Session* session_;  // null for an observer
  ClientContext context_;
  std::string prefix_;
  std::string leader_key_;
  mvcc::Revision leader_revision_ = 0;
  mvcc::Revision header_revision_ = 0;
};

}  // namespace kvstore::net::concurrency

#endif  // KVSTORE_NET_CONCURRENCY_ELECTION_H_
