#ifndef KVSTORE_NET_CONCURRENCY_MUTEX_H_
#define KVSTORE_NET_CONCURRENCY_MUTEX_H_

// A distributed lock over a key prefix (etcd's concurrency.Mutex).
//
// Each contender owns one key, <prefix>/<its session's lease id in hex>, created with the
// session's lease by a txn that succeeds only if the key does not exist (create revision 0);
// when it exists (a retried Lock of the same session) the existing key is reused. The keys of
// the prefix form a queue in create-revision order: the holder is the key with the lowest
// create revision. A waiter watches the last key created before its own (its predecessor) for
// deletion, then looks again, until no key created before its own remains (etcd's
// waitDeletes): no thundering herd, one watch per waiter.
//
// The fencing token is the holder's create revision: every key created later has a larger
// one, and a key created earlier than the holder's is gone, so the tokens of successive
// holders strictly increase. A holder guards its writes with IsOwner() in a txn: once its key is
// gone (Unlock, lease expiry) those writes fail on the members, whatever the holder believes.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/mvcc/types.h"
#include "kj/async.h"
#include "net/concurrency/session.h"

namespace kvstore::net::concurrency {

class Mutex {
 public:
  // `prefix` gets a trailing "/" as etcd's does ("lock" and "lock/" name the same lock).
  // `session` must outlive the mutex.
  Mutex(Session& session, std::string prefix);

  // Blocks (running the event loop) until this session holds the lock. Fails, removing the
  // key, when the session is lost, `cancel` (if given) resolves first, or a request fails.
  absl::Status Lock(kj::Maybe<kj::Promise<void>> cancel = nullptr);
  // One round: true if the lock is now held; false, with the key removed, if another holds it.
  absl::StatusOr<bool> TryLock();
  // Deletes the key: the next waiter holds the lock.
  absl::Status Unlock();

  const std::string& prefix() const { return prefix_; }
  // The contender's key ("" before Lock/TryLock).
  const std::string& key() const { return key_; }
  // The fencing token: the key's create revision (0 before Lock/TryLock).
  mvcc::Revision token() const { return token_; }
  // A txn compare that holds while this session's key is the one created at token():
  // put it in every txn that must be fenced.
  mvcc::Compare IsOwner() const;

 private:
  // Creates or finds the key; whether it is the first of the queue.
  absl::StatusOr<bool> TryAcquire();

  Session& session_;
  ClientContext context_;
  const std::string prefix_;
  std::string key_;
  mvcc::Revision token_ = 0;
};

}  // namespace kvstore::net::concurrency

#endif  // KVSTORE_NET_CONCURRENCY_MUTEX_H_
