#ifndef KVSTORE_CORE_LEASE_LESSOR_H_
#define KVSTORE_CORE_LEASE_LESSOR_H_

// Leases (etcd's lease.Lessor), pure. A lease has a TTL and a set of attached keys; when it is
// revoked or expires, its keys are deleted in one revision.
//
// What is replicated and what is not:
//   - Grant and Revoke change replicated state: the server core proposes them through Raft and
//     every replica applies them at the same index (Apply* methods). Keys attach and detach as
//     puts and deletes are applied.
//   - Expiry is decided by the leader alone, from its own clock (ticks): Expired() lists the
//     leases it should revoke, and the server core proposes those revocations through the log,
//     so every replica deletes the same keys at the same revision. Followers never expire.
//   - Keep-alive (Renew) is served by the leader without the log, as in etcd.
//   - A new leader extends every lease to a full TTL from its own now (Promote), so a leader
//     change never expires a lease early.
// Time is a number of milliseconds handed in by the caller; there is no clock here.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "core/mvcc/backend.h"

namespace kvstore::lease {

using LeaseId = int64_t;
inline constexpr LeaseId kNoLease = 0;
// etcd's MaxLeaseTTL: 9,000,000,000 seconds.
inline constexpr int64_t kMaxTtlSeconds = 9'000'000'000;
inline constexpr int64_t kForever = INT64_MAX;

// Tunables of the lessor.
struct LessorConfig {
  // Grants below this are raised to it (etcd: about 1.5 election timeouts, so a lease survives a
  // leader election).
  int64_t min_ttl_seconds = 5;
};

// A lease as time-to-live and list report it.
struct LeaseInfo {
  LeaseId id = kNoLease;
  int64_t granted_ttl_seconds = 0;  // after raising to the minimum
  // Seconds left (leader: from its expiry; follower: the granted TTL, as it does not track time).
  int64_t remaining_ttl_seconds = 0;
  std::vector<std::string> keys;  // sorted
};

// Leases of one member: grants and revokes applied from the log, renewals and expiry decided by
// the primary (the leader) from ticks, so every replica revokes at the same log position.
class Lessor {
 public:
  // `backend` (not owned) stores lease records in Bucket::kLease; Restore() reads them back.
  Lessor(const LessorConfig& config, mvcc::Backend* backend);

  // Rebuilds the leases from the backend (keys are re-attached by the caller from the store).
  absl::Status Restore();

  // --- Replicated (applied from the log on every replica) ---
  // kLeaseExists if taken, kLeaseTtlTooLarge above kMaxTtlSeconds, kInvalidArgument for id 0 or
  // a non-positive TTL.
  absl::StatusOr<LeaseInfo> ApplyGrant(LeaseId id, int64_t ttl_seconds, int64_t now_ms);
  // Removes the lease; returns its keys for the caller to delete in one revision.
  // kLeaseNotFound if unknown.
  absl::StatusOr<std::vector<std::string>> ApplyRevoke(LeaseId id);
  // Keys follow puts and deletes: Attach on a put with a lease, Detach when a key's lease
  // changes or the key is deleted. kLeaseNotFound if the lease does not exist.
  absl::Status Attach(LeaseId id, const std::string& key);
  void Detach(LeaseId id, const std::string& key);

  // --- Leader only ---
  void Promote(int64_t now_ms, int64_t extend_ms);
  void Demote();
  bool is_primary() const { return primary_; }
  // Keep-alive: restarts the TTL; returns it. kLeaseNotFound if unknown, kNotLeader if this
  // replica is not the primary.
  absl::StatusOr<int64_t> Renew(LeaseId id, int64_t now_ms);
  // Leases whose expiry has passed, oldest expiry first, at most `limit`.
  std::vector<LeaseId> Expired(int64_t now_ms, size_t limit) const;

  // --- Reads ---
  bool Exists(LeaseId id) const { return leases_.count(id) > 0; }
  absl::StatusOr<LeaseInfo> TimeToLive(LeaseId id, int64_t now_ms) const;
  std::vector<LeaseId> Leases() const;
  // A deterministic, unused id for a grant without one (the proposer picks it before proposing).
  LeaseId NextFreeId(uint64_t salt) const;

 private:
  struct Lease {
    int64_t ttl_seconds = 0;
    int64_t expiry_ms = kForever;  // meaningful on the primary only
    std::set<std::string> keys;
  };
  LeaseInfo Info(LeaseId id, const Lease& lease, int64_t now_ms) const;
  void Persist(LeaseId id, const Lease& lease);

  LessorConfig config_;
  mvcc::Backend* backend_;
  absl::btree_map<LeaseId, Lease> leases_;
  bool primary_ = false;
  // At most the earliest expiry of any lease (lowered by every write of one, raised to the
  // earliest by each scan): Expired skips its scan of every lease on a tick before it.
  mutable int64_t min_expiry_ms_ = kForever;
};

}  // namespace kvstore::lease

#endif  // KVSTORE_CORE_LEASE_LESSOR_H_
