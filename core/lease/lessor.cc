#include "core/lease/lessor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "core/base/probe.h"

namespace kvstore::lease {
namespace {

std::string LeaseKey(LeaseId id) {
  std::string key;
  PutFixed64BigEndian(&key, static_cast<uint64_t>(id));
  return key;
}

std::string NotFound(LeaseId id) { return absl::StrCat("lease ", id, " not found"); }

}  // namespace

Lessor::Lessor(const LessorConfig& config, mvcc::Backend* backend)
    : config_(config), backend_(backend) {}

absl::Status Lessor::Restore() {
  leases_.clear();
  absl::Status corrupt;
  backend_->Range(mvcc::Bucket::kLease, "", "",
                  [&](absl::string_view key, absl::string_view value) {
                    uint64_t id = 0, ttl = 0;
                    if (!GetFixed64BigEndian(&key, &id) || !key.empty() ||
                        !GetVarint(&value, &ttl) || !value.empty()) {
                      corrupt = absl::DataLossError("lease: corrupt record in lease bucket");
                      return false;
                    }
                    leases_[static_cast<LeaseId>(id)].ttl_seconds = static_cast<int64_t>(ttl);
                    return true;
                  });
  return corrupt;
}

void Lessor::Persist(LeaseId id, const Lease& lease) {
  std::string value;
  PutVarint(&value, static_cast<uint64_t>(lease.ttl_seconds));
  backend_->Put(mvcc::Bucket::kLease, LeaseKey(id), value);
}

absl::StatusOr<LeaseInfo> Lessor::ApplyGrant(LeaseId id, int64_t ttl_seconds, int64_t now_ms) {
  if (id <= kNoLease) {
    return Error(ErrorCode::kInvalidArgument, absl::StrCat("lease id ", id, " is not positive"));
  }
  if (ttl_seconds <= 0) {
    return Error(ErrorCode::kInvalidArgument,
                 absl::StrCat("lease TTL ", ttl_seconds, "s is not positive"));
  }
  if (ttl_seconds > kMaxTtlSeconds) {
    return Error(
        ErrorCode::kLeaseTtlTooLarge,
        absl::StrCat("lease TTL ", ttl_seconds, "s exceeds the maximum ", kMaxTtlSeconds, "s"));
  }
  if (leases_.count(id) > 0) {
    return Error(ErrorCode::kLeaseExists, absl::StrCat("lease ", id, " already exists"));
  }
  Lease& lease = leases_[id];
  lease.ttl_seconds = std::max(ttl_seconds, config_.min_ttl_seconds);
  lease.expiry_ms = primary_ ? now_ms + lease.ttl_seconds * 1000 : kForever;
  min_expiry_ms_ = std::min(min_expiry_ms_, lease.expiry_ms);
  Persist(id, lease);
  return Info(id, lease, now_ms);
}

absl::StatusOr<std::vector<std::string>> Lessor::ApplyRevoke(LeaseId id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return Error(ErrorCode::kLeaseNotFound, NotFound(id));
  std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  leases_.erase(it);
  backend_->Delete(mvcc::Bucket::kLease, LeaseKey(id));
  return keys;
}

absl::Status Lessor::Attach(LeaseId id, const std::string& key) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return Error(ErrorCode::kLeaseNotFound, NotFound(id));
  it->second.keys.insert(key);
  return absl::OkStatus();
}

void Lessor::Detach(LeaseId id, const std::string& key) {
  auto it = leases_.find(id);
  if (it != leases_.end()) it->second.keys.erase(key);
}

void Lessor::Promote(int64_t now_ms, int64_t extend_ms) {
  primary_ = true;
  for (auto& [id, lease] : leases_) {
    lease.expiry_ms = now_ms + extend_ms + lease.ttl_seconds * 1000;
    min_expiry_ms_ = std::min(min_expiry_ms_, lease.expiry_ms);
  }
}

void Lessor::Demote() {
  primary_ = false;
  for (auto& [id, lease] : leases_) lease.expiry_ms = kForever;
}

absl::StatusOr<int64_t> Lessor::Renew(LeaseId id, int64_t now_ms) {
  if (!primary_) {
    return Error(ErrorCode::kNotLeader, "lease keep-alive must be served by the leader");
  }
  auto it = leases_.find(id);
  if (it == leases_.end()) return Error(ErrorCode::kLeaseNotFound, NotFound(id));
  // An expired lease awaiting its revocation through the log cannot be revived (etcd).
  if (it->second.expiry_ms <= now_ms) {
    CODE_PROBE(lease, renew_after_expiry_refused);
    return Error(ErrorCode::kLeaseNotFound, NotFound(id));
  }
  it->second.expiry_ms = now_ms + it->second.ttl_seconds * 1000;
  min_expiry_ms_ = std::min(min_expiry_ms_, it->second.expiry_ms);
  return it->second.ttl_seconds;
}

std::vector<LeaseId> Lessor::Expired(int64_t now_ms, size_t limit) const {
  if (!primary_) return {};
  // The leader asks on every tick: none has expired before the lower bound of their expiries.
  if (now_ms < min_expiry_ms_) return {};
  // Counted first, so that each vector is allocated once (expired leases awaiting their
  // revocation are found on tick after tick).
  int64_t lowest = kForever;
  size_t count = 0;
  for (const auto& [id, lease] : leases_) {
    lowest = std::min(lowest, lease.expiry_ms);
    if (lease.expiry_ms <= now_ms) ++count;
  }
  min_expiry_ms_ = lowest;
  if (count == 0) return {};
  std::vector<std::pair<int64_t, LeaseId>> expired;
  expired.reserve(count);
  for (const auto& [id, lease] : leases_) {
    if (lease.expiry_ms <= now_ms) expired.emplace_back(lease.expiry_ms, id);
  }
  std::sort(expired.begin(), expired.end());
  std::vector<LeaseId> ids;
  ids.reserve(std::min(expired.size(), limit));
  for (size_t i = 0; i < expired.size() && i < limit; ++i) ids.push_back(expired[i].second);
  return ids;
}

LeaseInfo Lessor::Info(LeaseId id, const Lease& lease, int64_t now_ms) const {
  LeaseInfo info;
  info.id = id;
  info.granted_ttl_seconds = lease.ttl_seconds;
  if (primary_ && lease.expiry_ms != kForever) {
    const int64_t left_ms = std::max<int64_t>(0, lease.expiry_ms - now_ms);
    // etcd 3.4 answers int64(l.Remaining().Seconds()): its wall clock's remaining time,
    // truncated. Time here moves in ticks, and some has always passed since the last one, so
    // the remaining time is just below left_ms: a lease of 10 s asked at once has 9 s left (as
    // etcd 3.4.23 answers `etcdctl lease timetolive` right after `lease grant 10`).
    info.remaining_ttl_seconds = left_ms > 0 ? (left_ms - 1) / 1000 : 0;
  } else {
    info.remaining_ttl_seconds = lease.ttl_seconds;
  }
  info.keys.assign(lease.keys.begin(), lease.keys.end());
  return info;
}

absl::StatusOr<LeaseInfo> Lessor::TimeToLive(LeaseId id, int64_t now_ms) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) return Error(ErrorCode::kLeaseNotFound, NotFound(id));
  return Info(id, it->second, now_ms);
}

std::vector<LeaseId> Lessor::Leases() const {
  std::vector<LeaseId> ids;
  for (const auto& [id, lease] : leases_) ids.push_back(id);
  return ids;
}

LeaseId Lessor::NextFreeId(uint64_t salt) const {
  // splitmix64 of the salt, kept positive; probe forward past taken ids.
  uint64_t z = salt + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  LeaseId id = static_cast<LeaseId>(z & 0x7FFFFFFFFFFFFFFFull);
  if (id == kNoLease) id = 1;
  while (leases_.count(id) > 0) id = id == INT64_MAX ? 1 : id + 1;
  return id;
}

}  // namespace kvstore::lease
