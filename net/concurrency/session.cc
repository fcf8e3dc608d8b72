#include "net/concurrency/session.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/server/server.h"

namespace kvstore::net::concurrency {

absl::StatusOr<std::unique_ptr<Session>> Session::Create(ClientContext context,
                                                         SessionOptions options) {
  if (options.ttl_seconds <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("session TTL must be positive, got ", options.ttl_seconds, " s"));
  }
  const kj::TimePoint sent_at = context.timer.now();
  server::Request grant;
  grant.type = server::RequestType::kLeaseGrant;
  grant.ttl_seconds = options.ttl_seconds;
  absl::StatusOr<server::Response> granted = context.Call(grant);
  if (!granted.ok()) return granted.status();
  std::unique_ptr<Session> session(
      new Session(context, granted->lease.id, granted->lease.granted_ttl_seconds));
  session->renewed_at_ = sent_at;
  return session;
}

Session::Session(ClientContext context, lease::LeaseId lease, int64_t granted_ttl_seconds)
    : context_(context),
      lease_(lease),
      granted_ttl_seconds_(granted_ttl_seconds),
      keep_alive_(context.client.NewKeepAlive(lease)),
      renewed_at_(context.timer.now()),
      done_(nullptr) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  done_fulfiller_ = kj::mv(paf.fulfiller);
  done_ = paf.promise.fork();
  renewals_ =
      RenewAfter(granted_ttl_seconds_ * kj::SECONDS / kRenewalsPerTtl).eagerlyEvaluate(nullptr);
}

Session::~Session() {
  // The renewal chain captures `this`: drop it first.
  renewals_ = nullptr;
  keep_alive_.reset();
}

void Session::MarkLost() {
  if (lost_) return;
  lost_ = true;
  done_fulfiller_->fulfill();
}

kj::Promise<void> Session::RenewAfter(kj::Duration delay) {
  return context_.timer.afterDelay(delay).then([this]() -> kj::Promise<void> {
    const kj::TimePoint sent_at = context_.timer.now();
    const kj::TimePoint may_expire_at = renewed_at_ + granted_ttl_seconds_ * kj::SECONDS;
    if (sent_at >= may_expire_at) {
      MarkLost();
      return kj::READY_NOW;
    }
    // A renewal still unanswered when the lease may have expired counts as lost at that moment,
    // however long the client's own tries would take.
    kj::Promise<absl::StatusOr<int64_t>> deadline =
        context_.timer.atTime(may_expire_at).then([]() -> absl::StatusOr<int64_t> {
          return absl::DeadlineExceededError("no renewal answered within the lease's TTL");
        });
    return keep_alive_->Renew()
        .exclusiveJoin(kj::mv(deadline))
        .then([this, sent_at](absl::StatusOr<int64_t> ttl) -> kj::Promise<void> {
          if (ttl.ok() && *ttl > 0) {
            renewed_at_ = sent_at;
            return RenewAfter(*ttl * kj::SECONDS / kRenewalsPerTtl);
          }
          if ((ttl.ok() && *ttl <= 0) || CodeOf(ttl.status()) == ErrorCode::kLeaseNotFound ||
              absl::IsDeadlineExceeded(ttl.status())) {
            MarkLost();
            return kj::READY_NOW;
          }
          // No endpoint answered: the lease may still live; try again soon.
          return RenewAfter(kRenewRetryInterval);
        });
  });
}

absl::Status Session::Close() {
  renewals_ = nullptr;
  server::Request revoke;
  revoke.type = server::RequestType::kLeaseRevoke;
  revoke.lease_id = lease_;
  absl::StatusOr<server::Response> revoked = context_.Call(revoke);
  MarkLost();
  if (!revoked.ok() && CodeOf(revoked.status()) != ErrorCode::kLeaseNotFound) {
    return revoked.status();
  }
  return absl::OkStatus();
}

}  // namespace kvstore::net::concurrency
