// Unit tests of the lessor against etcd's lease semantics (server/lease/lessor.go), through the
// public API only. Time is milliseconds handed in by the test. Each test names the etcd
// behaviour it pins.

#include "core/lease/lessor.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/errors.h"
#include "core/mvcc/backend.h"
#include "gtest/gtest.h"

namespace kvstore::lease {
namespace {

constexpr int64_t kMinTtlSeconds = 5;

LessorConfig Config() {
  LessorConfig config;
  config.min_ttl_seconds = kMinTtlSeconds;
  return config;
}

// Grants and expects success.
void Grant(Lessor& lessor, LeaseId id, int64_t ttl_seconds, int64_t now_ms = 0) {
  absl::StatusOr<LeaseInfo> info = lessor.ApplyGrant(id, ttl_seconds, now_ms);
  ASSERT_TRUE(info.ok()) << info.status();
}

// etcd LeaseGrant: a TTL below the minimum is raised to it (minLeaseTTL), larger ones are kept.
TEST(LessorTest, GrantRaisesTtlToMinimum) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  absl::StatusOr<LeaseInfo> low = lessor.ApplyGrant(1, 1, 0);
  ASSERT_TRUE(low.ok()) << low.status();
  EXPECT_EQ(low->id, 1);
  EXPECT_EQ(low->granted_ttl_seconds, kMinTtlSeconds);
  EXPECT_TRUE(low->keys.empty());
  absl::StatusOr<LeaseInfo> high = lessor.ApplyGrant(2, 60, 0);
  ASSERT_TRUE(high.ok()) << high.status();
  EXPECT_EQ(high->granted_ttl_seconds, 60);
  EXPECT_TRUE(lessor.Exists(1));
  EXPECT_TRUE(lessor.Exists(2));
}

// etcd LeaseGrant validation: id 0 (NoLease), negative ids and non-positive TTLs are invalid,
// a TTL above MaxLeaseTTL is ErrLeaseTTLTooLarge, a taken id is ErrLeaseExists.
TEST(LessorTest, GrantRejectsInvalidRequests) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  EXPECT_EQ(CodeOf(lessor.ApplyGrant(kNoLease, 10, 0).status()), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(lessor.ApplyGrant(-7, 10, 0).status()), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(lessor.ApplyGrant(1, -1, 0).status()), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(lessor.ApplyGrant(1, 0, 0).status()), ErrorCode::kInvalidArgument);
  EXPECT_EQ(CodeOf(lessor.ApplyGrant(1, kMaxTtlSeconds + 1, 0).status()),
            ErrorCode::kLeaseTtlTooLarge);
  EXPECT_TRUE(lessor.Leases().empty()) << "a refused grant must leave no lease";
  ASSERT_TRUE(lessor.ApplyGrant(1, kMaxTtlSeconds, 0).ok());
  EXPECT_EQ(CodeOf(lessor.ApplyGrant(1, 10, 0).status()), ErrorCode::kLeaseExists);
  absl::StatusOr<LeaseInfo> kept = lessor.TimeToLive(1, 0);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->granted_ttl_seconds, kMaxTtlSeconds) << "a duplicate grant must not overwrite";
}

// etcd Revoke: returns the attached keys (sorted, for one deterministic delete revision) and
// removes the lease; a second revoke is ErrLeaseNotFound.
TEST(LessorTest, RevokeReturnsSortedKeysAndRemovesLease) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  Grant(lessor, 1, 10);
  Grant(lessor, 2, 10);
  for (const char* key : {"b", "a", "c"}) ASSERT_TRUE(lessor.Attach(1, key).ok());
  ASSERT_TRUE(lessor.Attach(2, "other").ok());
  absl::StatusOr<std::vector<std::string>> keys = lessor.ApplyRevoke(1);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(*keys, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_FALSE(lessor.Exists(1));
  EXPECT_EQ(lessor.Leases(), (std::vector<LeaseId>{2}));
  EXPECT_EQ(CodeOf(lessor.TimeToLive(1, 0).status()), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(CodeOf(lessor.ApplyRevoke(1).status()), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(CodeOf(lessor.ApplyRevoke(99).status()), ErrorCode::kLeaseNotFound);
}

// etcd Put with a lease: attaching to an unknown lease is ErrLeaseNotFound; Detach (key deleted
// or moved to another lease) removes it from the lease's keys.
TEST(LessorTest, AttachAndDetach) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  EXPECT_EQ(CodeOf(lessor.Attach(7, "k")), ErrorCode::kLeaseNotFound);
  Grant(lessor, 7, 10);
  ASSERT_TRUE(lessor.Attach(7, "k1").ok());
  ASSERT_TRUE(lessor.Attach(7, "k2").ok());
  ASSERT_TRUE(lessor.Attach(7, "k1").ok());  // a second put of the same key: still one entry
  lessor.Detach(7, "k2");
  lessor.Detach(7, "never-attached");
  lessor.Detach(99, "k1");  // unknown lease: nothing to do
  absl::StatusOr<LeaseInfo> info = lessor.TimeToLive(7, 0);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->keys, (std::vector<std::string>{"k1"}));
  absl::StatusOr<std::vector<std::string>> keys = lessor.ApplyRevoke(7);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(*keys, (std::vector<std::string>{"k1"}));
}

// etcd lessor: only the primary (leader) expires leases; a follower never reports one expired,
// however much time passes, because revocation must go through the log.
TEST(LessorTest, FollowerNeverExpires) {
  mvcc::MemoryBackend backend;
  Lessor follower(Config(), &backend);
  Grant(follower, 1, 10, 0);
  EXPECT_FALSE(follower.is_primary());
  EXPECT_TRUE(follower.Expired(0, 10).empty());
  EXPECT_TRUE(follower.Expired(1'000'000'000, 10).empty());
}

// etcd Promote(extend): on becoming primary every lease expires at now + extend + TTL.
TEST(LessorTest, PromoteStartsExpiryAtNowPlusExtendPlusTtl) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  Grant(lessor, 1, 10, 0);
  lessor.Promote(/*now_ms=*/1000, /*extend_ms=*/2000);
  EXPECT_TRUE(lessor.is_primary());
  EXPECT_TRUE(lessor.Expired(12'999, 10).empty());
  EXPECT_EQ(lessor.Expired(13'000, 10), (std::vector<LeaseId>{1}));
}

// etcd: a lease granted on the primary expires TTL after the grant.
TEST(LessorTest, GrantOnPrimaryExpiresAfterTtl) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  lessor.Promote(0, 0);
  Grant(lessor, 1, 10, /*now_ms=*/500);
  EXPECT_TRUE(lessor.Expired(10'499, 10).empty());
  EXPECT_EQ(lessor.Expired(10'500, 10), (std::vector<LeaseId>{1}));
}

// etcd LeaseKeepAlive: Renew restarts the TTL from now and returns it.
TEST(LessorTest, RenewRestartsTtl) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  Grant(lessor, 1, 10, 0);
  lessor.Promote(0, 0);
  absl::StatusOr<int64_t> ttl = lessor.Renew(1, 5000);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, 10);
  EXPECT_TRUE(lessor.Expired(14'999, 10).empty());
  EXPECT_EQ(lessor.Expired(15'000, 10), (std::vector<LeaseId>{1}));
}

// etcd: keep-alive is served by the leader only (ErrNotPrimary -> kNotLeader).
TEST(LessorTest, RenewOnNonPrimaryIsNotLeader) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  Grant(lessor, 1, 10, 0);
  EXPECT_EQ(CodeOf(lessor.Renew(1, 0).status()), ErrorCode::kNotLeader);
  lessor.Promote(0, 0);
  lessor.Demote();
  EXPECT_EQ(CodeOf(lessor.Renew(1, 0).status()), ErrorCode::kNotLeader);
}

// etcd Renew: an unknown lease, or one already expired and awaiting its revocation, is
// ErrLeaseNotFound; keep-alive cannot revive it.
TEST(LessorTest, RenewOfExpiredOrUnknownLeaseIsNotFound) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  Grant(lessor, 1, 10, 0);
  lessor.Promote(0, 0);
  EXPECT_EQ(CodeOf(lessor.Renew(99, 0).status()), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(CodeOf(lessor.Renew(1, 10'000).status()), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(lessor.Expired(10'000, 10), (std::vector<LeaseId>{1})) << "still due for revocation";
}

// etcd Demote: a demoted lessor stops expiring leases (the new leader decides).
TEST(LessorTest, DemoteStopsExpiry) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  Grant(lessor, 1, 10, 0);
  lessor.Promote(0, 0);
  ASSERT_EQ(lessor.Expired(10'000, 10), (std::vector<LeaseId>{1}));
  lessor.Demote();
  EXPECT_FALSE(lessor.is_primary());
  EXPECT_TRUE(lessor.Expired(1'000'000'000, 10).empty());
}

// etcd findExpiredLeases: expired leases come oldest expiry first (not id order), at most
// `limit` per call (leaseRevokeRate).
TEST(LessorTest, ExpiredIsOrderedByExpiryAndLimited) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  lessor.Promote(0, 0);
  Grant(lessor, 1, 30, 0);  // expires 30s
  Grant(lessor, 2, 10, 0);  // expires 10s
  Grant(lessor, 3, 20, 0);  // expires 20s
  Grant(lessor, 4, 60, 0);  // not yet
  EXPECT_EQ(lessor.Expired(30'000, 10), (std::vector<LeaseId>{2, 3, 1}));
  EXPECT_EQ(lessor.Expired(30'000, 2), (std::vector<LeaseId>{2, 3}));
  EXPECT_TRUE(lessor.Expired(30'000, 0).empty());
  EXPECT_EQ(lessor.Expired(20'000, 10), (std::vector<LeaseId>{2, 3}));
}

// etcd Promote: a new leader extends every lease to a full TTL from its own now, so a leader
// change never expires a lease early even if the old leader's clock had it nearly due.
TEST(LessorTest, NewLeaderExtendsRemainingTtlToFullTtl) {
  mvcc::MemoryBackend old_backend;
  mvcc::MemoryBackend new_backend;
  Lessor old_leader(Config(), &old_backend);
  Lessor new_leader(Config(), &new_backend);
  old_leader.Promote(0, 0);
  Grant(old_leader, 1, 10, 0);
  Grant(new_leader, 1, 10, 0);  // the same log entry, applied on a follower
  absl::StatusOr<LeaseInfo> nearly_due = old_leader.TimeToLive(1, 9000);
  ASSERT_TRUE(nearly_due.ok());
  EXPECT_EQ(nearly_due->remaining_ttl_seconds, 0);  // just below 1 s (whole seconds, truncated)
  old_leader.Demote();
  new_leader.Promote(/*now_ms=*/9000, /*extend_ms=*/0);
  absl::StatusOr<LeaseInfo> extended = new_leader.TimeToLive(1, 9000);
  ASSERT_TRUE(extended.ok());
  EXPECT_EQ(extended->remaining_ttl_seconds, 9);  // just below the full 10 s
  EXPECT_TRUE(new_leader.Expired(18'999, 10).empty());
  EXPECT_EQ(new_leader.Expired(19'000, 10), (std::vector<LeaseId>{1}));
}

// etcd 3.4 LeaseTimeToLive: remaining TTL in whole seconds, truncated as
// int64(l.Remaining().Seconds()) is from etcd's wall clock. Time here moves in ticks and some
// has always passed since the last one, so the remaining time is just below what the ticks
// say: a lease of 10 s asked at once has 9 s left (etcd 3.4.23 answers `etcdctl lease
// timetolive` right after `lease grant 10` with remaining(9s)). With the attached keys; a
// follower reports the granted TTL.
TEST(LessorTest, TimeToLiveTruncatesAndListsKeys) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  Grant(lessor, 1, 10, 0);
  ASSERT_TRUE(lessor.Attach(1, "z").ok());
  ASSERT_TRUE(lessor.Attach(1, "a").ok());
  absl::StatusOr<LeaseInfo> follower = lessor.TimeToLive(1, 123'456);
  ASSERT_TRUE(follower.ok());
  EXPECT_EQ(follower->remaining_ttl_seconds, 10);
  lessor.Promote(0, 0);
  struct Case {
    int64_t now_ms;
    int64_t remaining_seconds;
  };
  for (const Case& c :
       {Case{0, 9}, Case{1, 9}, Case{999, 9}, Case{1000, 8}, Case{1001, 8}, Case{8999, 1},
        Case{9000, 0}, Case{9999, 0}, Case{10'000, 0}, Case{20'000, 0}}) {
    absl::StatusOr<LeaseInfo> info = lessor.TimeToLive(1, c.now_ms);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->id, 1);
    EXPECT_EQ(info->granted_ttl_seconds, 10);
    EXPECT_EQ(info->remaining_ttl_seconds, c.remaining_seconds) << "at " << c.now_ms << "ms";
    EXPECT_EQ(info->keys, (std::vector<std::string>{"a", "z"}));
  }
  EXPECT_EQ(CodeOf(lessor.TimeToLive(2, 0).status()), ErrorCode::kLeaseNotFound);
}

// etcd LeaseLeases: ids in ascending order, whatever the grant order.
TEST(LessorTest, LeasesAreSorted) {
  mvcc::MemoryBackend backend;
  Lessor lessor(Config(), &backend);
  for (LeaseId id : {30, 10, 20}) Grant(lessor, id, 10);
  EXPECT_EQ(lessor.Leases(), (std::vector<LeaseId>{10, 20, 30}));
}

// etcd lessor recovery: committed leases come back from the lease bucket with their (raised)
// TTLs; a grant or revoke that was never committed does not survive a crash.
TEST(LessorTest, RestoreBringsBackCommittedLeasesOnly) {
  mvcc::MemoryBackend backend;
  {
    Lessor lessor(Config(), &backend);
    Grant(lessor, 1, 60);
    Grant(lessor, 2, 1);  // raised to the minimum
    Grant(lessor, 3, 30);
    ASSERT_TRUE(backend.Commit().ok());
    Grant(lessor, 4, 30);                     // uncommitted grant
    ASSERT_TRUE(lessor.ApplyRevoke(3).ok());  // uncommitted revoke
  }
  {
    Lessor restored(Config(), &backend);
    ASSERT_TRUE(restored.Restore().ok());
    EXPECT_EQ(restored.Leases(), (std::vector<LeaseId>{1, 2, 4})) << "before the crash";
  }
  backend.Crash();
  Lessor restored(Config(), &backend);
  ASSERT_TRUE(restored.Restore().ok());
  EXPECT_EQ(restored.Leases(), (std::vector<LeaseId>{1, 2, 3}));
  struct Expected {
    LeaseId id;
    int64_t ttl_seconds;
  };
  for (const Expected& e : {Expected{1, 60}, Expected{2, kMinTtlSeconds}, Expected{3, 30}}) {
    absl::StatusOr<LeaseInfo> info = restored.TimeToLive(e.id, 0);
    ASSERT_TRUE(info.ok()) << "lease " << e.id;
    EXPECT_EQ(info->granted_ttl_seconds, e.ttl_seconds) << "lease " << e.id;
  }
  // Restored leases expire once the restored replica leads, a full TTL from then.
  restored.Promote(1000, 0);
  EXPECT_EQ(restored.Expired(31'000, 10), (std::vector<LeaseId>{2, 3}));
}

// etcd: a record in the lease bucket that does not decode is data loss, not a lease to guess.
TEST(LessorTest, RestoreOfCorruptRecordIsDataLoss) {
  {
    mvcc::MemoryBackend backend;
    backend.Put(mvcc::Bucket::kLease, "short", "\x0a");  // key is not an 8-byte id
    Lessor lessor(Config(), &backend);
    EXPECT_TRUE(absl::IsDataLoss(lessor.Restore()));
  }
  {
    mvcc::MemoryBackend backend;
    {
      Lessor writer(Config(), &backend);
      Grant(writer, 1, 10);
    }
    std::string id_key;
    backend.Range(mvcc::Bucket::kLease, "", "", [&](absl::string_view key, absl::string_view) {
      id_key = std::string(key);
      return false;
    });
    ASSERT_FALSE(id_key.empty());
    backend.Put(mvcc::Bucket::kLease, id_key, std::string("\x80", 1));  // truncated varint
    Lessor lessor(Config(), &backend);
    EXPECT_TRUE(absl::IsDataLoss(lessor.Restore()));
  }
}

// The proposer picks the id of an id-less grant before proposing: NextFreeId must be the same
// on every replica with the same state and salt, positive, and never an id already taken.
TEST(LessorTest, NextFreeIdIsDeterministicAndFree) {
  mvcc::MemoryBackend backend_a;
  mvcc::MemoryBackend backend_b;
  Lessor a(Config(), &backend_a);
  Lessor b(Config(), &backend_b);
  const LeaseId first = a.NextFreeId(42);
  EXPECT_GT(first, kNoLease);
  EXPECT_EQ(first, a.NextFreeId(42));
  EXPECT_EQ(first, b.NextFreeId(42));
  EXPECT_NE(first, a.NextFreeId(43));
  std::set<LeaseId> taken;
  for (int i = 0; i < 5; ++i) {
    const LeaseId id = a.NextFreeId(42);
    EXPECT_GT(id, kNoLease);
    EXPECT_EQ(taken.count(id), 0u) << "id " << id << " is taken";
    EXPECT_EQ(id, b.NextFreeId(42));
    Grant(a, id, 10);
    Grant(b, id, 10);
    taken.insert(id);
  }
  for (uint64_t salt = 0; salt < 100; ++salt) {
    const LeaseId id = a.NextFreeId(salt);
    EXPECT_GT(id, kNoLease);
    EXPECT_FALSE(a.Exists(id)) << "salt " << salt;
  }
}

}  // namespace
}  // namespace kvstore::lease
