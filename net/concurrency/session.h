#ifndef KVSTORE_NET_CONCURRENCY_SESSION_H_
#define KVSTORE_NET_CONCURRENCY_SESSION_H_

// A lease kept alive by the client (etcd's concurrency.Session): everything a holder attaches
// to it (a Mutex's key, an election proposal) lives exactly as long as the holder keeps renewing.
//
// Renewals run on the context's event loop every granted TTL / kRenewalsPerTtl (etcd renews at a
// third of the TTL), whenever the owning thread waits on the loop. The session counts as lost
// (Done() resolves, lost() is true) when a renewal answers LEASE_NOT_FOUND, or when the lease
// may have expired on the cluster: no renewal succeeded within the granted TTL since the last
// successful one was *sent*. The second rule is the client's half of safety: a holder cut off
// from the cluster stops believing it holds anything before the cluster may give it away. The
// member's half is fencing (Mutex::IsOwner in a txn).
//
// The server raises a TTL below its minimum (kvnode: 5 s); granted_ttl_seconds() is what it
// granted. Close() revokes the lease, deleting its keys at once; destroying a session without
// Close() only stops the renewals, and the keys go when the lease expires.

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/lease/lessor.h"
#include "kj/async.h"
#include "net/concurrency/context.h"

namespace kvstore::net::concurrency {

inline constexpr int64_t kDefaultSessionTtlSeconds = 60;  // etcd's concurrency default
inline constexpr int kRenewalsPerTtl = 3;
// After a renewal that got no answer (every endpoint failed), the next try comes this soon.
inline constexpr kj::Duration kRenewRetryInterval = 500 * kj::MILLISECONDS;

struct SessionOptions {
  int64_t ttl_seconds = kDefaultSessionTtlSeconds;
};

class Session {
 public:
  // Grants a lease of `options.ttl_seconds` (> 0) and starts renewing it.
  static absl::StatusOr<std::unique_ptr<Session>> Create(ClientContext context,
                                                         SessionOptions options = {});
  // Stops the renewals; does not revoke (see the file comment).
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  lease::LeaseId lease() const { return lease_; }
  int64_t granted_ttl_seconds() const { return granted_ttl_seconds_; }
  ClientContext& context() { return context_; }

  // Resolves once the session is lost (or closed). Any number of branches.
  kj::Promise<void> Done() { return done_.addBranch(); }
  bool lost() const { return lost_; }

  // Stops the renewals and revokes the lease: its keys are deleted at the revocation's revision.
  absl::Status Close();

 private:
  Session(ClientContext context, lease::LeaseId lease, int64_t granted_ttl_seconds);
  kj::Promise<void> RenewAfter(kj::Duration delay);
  void MarkLost();

  ClientContext context_;
  const lease::LeaseId lease_;
  const int64_t granted_ttl_seconds_;
  std::unique_ptr<Client::KeepAlive> keep_alive_;
  // When the last successful renewal (or the grant) was sent: the lease lives at least until
  // then + the granted TTL.
  kj::TimePoint renewed_at_;
  bool lost_ = false;
  kj::Own<kj::PromiseFulfiller<void>> done_fulfiller_;
  kj::ForkedPromise<void> done_;
  kj::Promise<void> renewals_ = nullptr;
};

}  // namespace kvstore::net::concurrency

#endif  // KVSTORE_NET_CONCURRENCY_SESSION_H_
