#include "tools/ctl/mirror.h"

#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/errors.h"

namespace kvstore::ctl {
namespace {

using server::Request;
using server::RequestType;
using server::Response;

// Per-operation framing, roughly, in the byte estimate of a txn or a queued response.
constexpr uint64_t kOverheadBytes = 32;

kj::Duration ToKj(absl::Duration d) { return absl::ToInt64Nanoseconds(d) * kj::NANOSECONDS; }

// `status` with `what` in front of its message, its code (CodeOf) kept.
absl::Status Prefixed(absl::string_view what, const absl::Status& status) {
  absl::Status out(status.code(), absl::StrCat(what, ": ", status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

// Whether a failed request may be sent again: it was not applied, or its outcome is unknown
// and it is idempotent (every request the mirror makes is a read or a put or delete of whole
// values).
bool Retriable(const absl::Status& status) {
  switch (CodeOf(status)) {
    case ErrorCode::kTimeout:
    case ErrorCode::kNoLeader:
    case ErrorCode::kNotLeader:
    case ErrorCode::kLeadershipChanged:
    case ErrorCode::kStopped:
      return true;
    default:
      return absl::IsUnavailable(status);
  }
}

uint64_t OpBytes(const mvcc::RequestOp& op) {
  return op.kind == mvcc::RequestOp::Kind::kPut
             ? op.put.key.size() + op.put.value.size() + kOverheadBytes
             : op.delete_range.key.size() + kOverheadBytes;
}

uint64_t ResponseBytes(const mvcc::WatchResponse& response) {
  uint64_t bytes = kOverheadBytes;
  for (const mvcc::Event& event : response.events) {
    bytes += event.kv.key.size() + event.kv.value.size() + kOverheadBytes;
  }
  return bytes;
}

}  // namespace

// Watch responses waiting for the destination, oldest first.
struct Mirror::Queue {
  std::deque<mvcc::WatchResponse> responses;
  uint64_t bytes = 0;
  // A response was dropped for want of room: once the queue is drained, the watch is reopened
  // from the first revision not applied.
  bool overflowed = false;
};

Mirror::Mirror(kj::AsyncIoContext& io, net::Client& source, net::Client& destination,
               MirrorOptions options, std::function<void(int64_t)> on_progress)
    : io_(io),
      source_(source),
      destination_(destination),
      options_(std::move(options)),
      on_progress_(std::move(on_progress)) {}

absl::Status Mirror::Run(kj::Promise<void> stop) {
  kj::Promise<void> stopping = stop.then([this] {
                                     stopped_ = true;
                                     Wake();
                                   })
                                   .eagerlyEvaluate(nullptr);
  kj::Promise<void> progress = ReportProgress().eagerlyEvaluate(nullptr);
  if (absl::Status s = CopyBase(); !s.ok() || stopped_) return s;
  return FollowUpdates();
}

void Mirror::Wake() {
  if (wake_.get() != nullptr && wake_->isWaiting()) wake_->fulfill();
}

kj::Promise<void> Mirror::ReportProgress() {
  return io_.provider->getTimer().afterDelay(ToKj(options_.progress_interval)).then([this] {
    on_progress_(mirrored_);
    return ReportProgress();
  });
}

std::string Mirror::RangeStart() const {
  return options_.prefix.empty() ? std::string(1, '\0') : options_.prefix;
}

std::string Mirror::RangeEnd() const {
  return options_.prefix.empty() ? std::string(1, '\0') : mvcc::PrefixEnd(options_.prefix);
}

absl::StatusOr<std::string> Mirror::DestinationKey(const std::string& source_key) const {
  if (!absl::StartsWith(source_key, options_.prefix)) {
    return absl::InternalError(absl::StrCat("the source sent key ", source_key,
                                            " outside the mirrored prefix ", options_.prefix));
  }
  return absl::StrCat(options_.dest_prefix, source_key.substr(options_.prefix.size()));
}

absl::StatusOr<Response> Mirror::CallWithRetries(net::Client& client, Request request) {
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<Response> response = client.Call(request, io_.waitScope);
    if (response.ok() || attempt >= kRequestAttempts || stopped_ || !Retriable(response.status())) {
      return response;
    }
    io_.provider->getTimer().afterDelay(ToKj(kRetryDelay)).wait(io_.waitScope);
  }
}

absl::Status Mirror::Compacted(const absl::Status& status) const {
  if (applied_revision_ == 0) {
    return Prefixed(
        absl::StrCat("etcdserver: mvcc: required revision has been compacted: the source "
                     "compacted revision ",
                     base_revision_,
                     " while its keys were copied; the destination holds part of them: run "
                     "make-mirror again"),
        status);
  }
  return Prefixed(
      absl::StrCat("etcdserver: mvcc: required revision has been compacted: the source "
                   "compacted revision ",
                   applied_revision_ + 1,
                   " before the mirror read it; the destination reflects the source at revision ",
                   applied_revision_,
                   ": run make-mirror again to copy anew (keys deleted at the source since then "
                   "stay at the destination)"),
      status);
}

absl::Status Mirror::WriteOps(std::vector<mvcc::RequestOp> ops) {
  size_t next = 0;
  while (next < ops.size()) {
    Request txn;
    txn.type = RequestType::kTxn;
    txn.token = options_.destination_token;
    uint64_t bytes = 0;
    while (next < ops.size() && txn.txn.success.size() < kMaxTxnOps) {
      const uint64_t op_bytes = OpBytes(ops[next]);
      if (!txn.txn.success.empty() && bytes + op_bytes > kMaxTxnBytes) break;
      bytes += op_bytes;
      txn.txn.success.push_back(std::move(ops[next++]));
    }
    const int64_t count = static_cast<int64_t>(txn.txn.success.size());
    absl::StatusOr<Response> response = CallWithRetries(destination_, std::move(txn));
    if (!response.ok()) return Prefixed("destination", response.status());
    mirrored_ += count;
  }
  return absl::OkStatus();
}

absl::Status Mirror::CopyBase() {
  // The revision every page is read at (etcd's Syncer reads it with a get first).
  Request head;
  head.type = RequestType::kRange;
  head.token = options_.source_token;
  head.range.key = RangeStart();
  head.range.range_end = RangeEnd();
  head.range.count_only = true;
  absl::StatusOr<Response> current = CallWithRetries(source_, std::move(head));
  if (!current.ok()) return Prefixed("source", current.status());
  base_revision_ = current->header.revision;

  std::string key = RangeStart();
  while (!stopped_) {
    Request page;
    page.type = RequestType::kRange;
    page.token = options_.source_token;
    page.range.key = key;
    page.range.range_end = RangeEnd();
    page.range.limit = kBaseBatchKeys;
    page.range.revision = base_revision_;
    absl::StatusOr<Response> response = CallWithRetries(source_, std::move(page));
    if (!response.ok()) {
      if (CodeOf(response.status()) == ErrorCode::kCompacted) return Compacted(response.status());
      return Prefixed("source", response.status());
    }
    std::vector<mvcc::KeyValue>& kvs = response->range.kvs;
    std::vector<mvcc::RequestOp> ops;
    ops.reserve(kvs.size());
    for (mvcc::KeyValue& kv : kvs) {
      absl::StatusOr<std::string> destination_key = DestinationKey(kv.key);
      if (!destination_key.ok()) return destination_key.status();
      mvcc::RequestOp put;
      put.kind = mvcc::RequestOp::Kind::kPut;
      put.put.key = std::move(*destination_key);
      put.put.value = std::move(kv.value);
      ops.push_back(std::move(put));
    }
    if (absl::Status s = WriteOps(std::move(ops)); !s.ok()) return s;
    if (!response->range.more || kvs.empty()) {
      applied_revision_ = base_revision_;
      return absl::OkStatus();
    }
    key = kvs.back().key + std::string(1, '\0');
  }
  return absl::OkStatus();
}

absl::Status Mirror::ApplyEvents(const std::vector<mvcc::Event>& events) {
  std::vector<mvcc::RequestOp> ops;
  mvcc::Revision revision = 0;
  auto flush = [&]() -> absl::Status {
    if (ops.empty()) return absl::OkStatus();
    absl::Status s = WriteOps(std::move(ops));
    ops.clear();
    if (s.ok()) applied_revision_ = revision;
    return s;
  };
  for (const mvcc::Event& event : events) {
    if (event.kv.mod_revision <= applied_revision_) continue;  // already applied
    if (revision != 0 && event.kv.mod_revision != revision) {
      if (absl::Status s = flush(); !s.ok()) return s;
    }
    revision = event.kv.mod_revision;
    absl::StatusOr<std::string> destination_key = DestinationKey(event.kv.key);
    if (!destination_key.ok()) return destination_key.status();
    mvcc::RequestOp op;
    if (event.type == mvcc::Event::Type::kPut) {
      op.kind = mvcc::RequestOp::Kind::kPut;
      op.put.key = std::move(*destination_key);
      op.put.value = event.kv.value;
    } else {
      op.kind = mvcc::RequestOp::Kind::kDeleteRange;
      op.delete_range.key = std::move(*destination_key);
    }
    ops.push_back(std::move(op));
  }
  return flush();
}

absl::Status Mirror::FollowUpdates() {
  Queue queue;
  int reopens_without_progress = 0;
  while (!stopped_) {
    mvcc::WatchRequest request;
    request.key = RangeStart();
    request.range_end = RangeEnd();
    request.start_revision = applied_revision_ + 1;
    queue = Queue();
    auto on_response = [this, &queue](const mvcc::WatchResponse& response) {
      if (queue.overflowed) return;
      if (!response.canceled && response.events.empty()) return;  // created, progress
      const uint64_t bytes = ResponseBytes(response);
      if (!response.canceled && !queue.responses.empty() && queue.bytes + bytes > kMaxQueuedBytes) {
        queue.overflowed = true;
      } else {
        queue.bytes += bytes;
        queue.responses.push_back(response);
      }
      Wake();
    };
    absl::StatusOr<std::unique_ptr<net::Client::Watch>> watch =
        source_.WatchAsync(request, on_response, options_.source_token).wait(io_.waitScope);
    if (!watch.ok()) {
      if (CodeOf(watch.status()) == ErrorCode::kCompacted) return Compacted(watch.status());
      return Prefixed("source watch", watch.status());
    }
    bool reopen = false;
    while (!stopped_ && !reopen) {
      if (queue.responses.empty()) {
        if (queue.overflowed) {
          reopen = true;
          break;
        }
        auto woken = kj::newPromiseAndFulfiller<void>();
        wake_ = kj::mv(woken.fulfiller);
        woken.promise.wait(io_.waitScope);
        wake_ = nullptr;
        continue;
      }
      mvcc::WatchResponse response = std::move(queue.responses.front());
      queue.responses.pop_front();
      queue.bytes -= ResponseBytes(response);
      if (response.canceled) {
        if (response.compact_revision != 0) {
          return Compacted(Error(ErrorCode::kCompacted,
                                 absl::StrCat("compact revision ", response.compact_revision)));
        }
        if (++reopens_without_progress > kWatchReopens) {
          return absl::UnavailableError(
              absl::StrCat("source watch ended: ", response.cancel_reason));
        }
        reopen = true;
        // The client skips the failed endpoint; give the cluster a moment all the same.
        io_.provider->getTimer().afterDelay(ToKj(kRetryDelay)).wait(io_.waitScope);
        break;
      }
      if (absl::Status s = ApplyEvents(response.events); !s.ok()) return s;
      reopens_without_progress = 0;
    }
    if (!(*watch)->ended()) (*watch)->Cancel().wait(io_.waitScope).IgnoreError();
  }
  return absl::OkStatus();
}

}  // namespace kvstore::ctl
