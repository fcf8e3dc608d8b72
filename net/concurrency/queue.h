#ifndef KVSTORE_NET_CONCURRENCY_QUEUE_H_
#define KVSTORE_NET_CONCURRENCY_QUEUE_H_

// The queue of keys under a prefix that Mutex and Election share (etcd's waitDelete and
// waitDeletes, clientv3/concurrency/key.go): contenders own one key each, ordered by create
// revision, and a contender is first once every key created before its own is gone. A waiter
// watches only the last key created before its own (its predecessor), so a release wakes one
// waiter, not all of them.

#include <string>

#include "absl/status/statusor.h"
#include "core/mvcc/types.h"
#include "kj/async.h"
#include "net/concurrency/context.h"

namespace kvstore::net::concurrency {

// Waits for a delete of `key` from `revision` on. True once it happened, or once the watch
// ended without one (a broken connection, a compacted revision: the caller looks again); false
// if `stop` resolved first.
absl::StatusOr<bool> WaitDelete(ClientContext& context, const std::string& key,
                                mvcc::Revision revision, kj::Promise<void> stop);

// Waits until no key under `prefix` (ending in "/") was created at or before
// `max_create_revision`; false if `stop` resolved first.
absl::StatusOr<bool> WaitDeletes(ClientContext& context, const std::string& prefix,
                                 mvcc::Revision max_create_revision, kj::ForkedPromise<void>& stop);

// The range of the first key created under `prefix` (etcd's WithFirstCreate): the lock holder,
// the election leader.
mvcc::RangeRequest FirstCreated(const std::string& prefix);

}  // namespace kvstore::net::concurrency

#endif  // KVSTORE_NET_CONCURRENCY_QUEUE_H_
