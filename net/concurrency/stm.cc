#include "net/concurrency/stm.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/server/server.h"

namespace kvstore::net::concurrency {

const char* IsolationName(Isolation isolation) {
  switch (isolation) {
    case Isolation::kSerializableSnapshot:
      return "serializable-snapshot";
    case Isolation::kSerializable:
      return "serializable";
    case Isolation::kRepeatableReads:
      return "repeatable-reads";
    case Isolation::kReadCommitted:
      return "read-committed";
  }
  return "unknown";
}

Stm::Stm(ClientContext context, Isolation isolation) : context_(context), isolation_(isolation) {}

bool Stm::snapshot_reads() const {
  return isolation_ == Isolation::kSerializableSnapshot || isolation_ == Isolation::kSerializable;
}

void Stm::Reset() {
  read_set_.clear();
  write_set_.clear();
  read_revision_ = 0;
  read_status_ = absl::OkStatus();
}

const Stm::Read* Stm::Fetch(const std::string& key) {
  if (!read_status_.ok()) return nullptr;
  if (auto it = read_set_.find(key); it != read_set_.end()) return &it->second;
  if (snapshot_reads()) {
    if (auto it = prefetched_.find(key); it != prefetched_.end()) {
      // Everything a failed commit read back shares that txn's revision: the attempt's snapshot.
      if (read_revision_ == 0) read_revision_ = it->second.header_revision;
      Read& read = read_set_[key] = std::move(it->second);
      prefetched_.erase(it);
      return &read;
    }
  }
  server::Request range;
  range.type = server::RequestType::kRange;
  range.range.key = key;
  if (snapshot_reads()) {
    // The first read is linearizable and fixes the snapshot; the others read that revision
    // from whichever member answers.
    if (read_revision_ != 0) {
      range.range.revision = read_revision_;
      range.range.serializable = true;
    }
  } else {
    range.range.serializable = true;
  }
  absl::StatusOr<server::Response> response = context_.Call(range);
  if (!response.ok()) {
    read_status_ = response.status();
    return nullptr;
  }
  Read read;
  if (!response->range.kvs.empty()) read.kv = std::move(response->range.kvs[0]);
  read.header_revision = response->header.revision;
  if (snapshot_reads() && read_revision_ == 0) read_revision_ = read.header_revision;
  return &(read_set_[key] = std::move(read));
}

std::string Stm::Get(const std::string& key) {
  if (auto it = write_set_.find(key); it != write_set_.end()) return it->second.value;
  const Read* read = Fetch(key);
  return read == nullptr || !read->kv.has_value() ? "" : read->kv->value;
}

mvcc::Revision Stm::Rev(const std::string& key) {
  const Read* read = Fetch(key);
  return read == nullptr || !read->kv.has_value() ? 0 : read->kv->mod_revision;
}

void Stm::Put(const std::string& key, std::string value, lease::LeaseId lease) {
  write_set_[key] = Write{std::move(value), lease, /*is_delete=*/false};
}

void Stm::Del(const std::string& key) { write_set_[key] = Write{"", lease::kNoLease, true}; }

absl::StatusOr<Stm::Commit> Stm::TryCommit() {
  server::Request request;
  request.type = server::RequestType::kTxn;
  mvcc::TxnRequest& txn = request.txn;
  if (isolation_ != Isolation::kReadCommitted) {
    // Every key read is as it was read: same mod revision, or still missing (0).
    for (const auto& [key, read] : read_set_) {
      mvcc::Compare current;
      current.key = key;
      current.target = mvcc::Compare::Target::kMod;
      current.result = mvcc::Compare::Result::kEqual;
      current.number = read.kv.has_value() ? read.kv->mod_revision : 0;
      txn.compare.push_back(std::move(current));
    }
  }
  if (isolation_ == Isolation::kSerializableSnapshot && read_revision_ != 0) {
    // No key written was modified after the snapshot.
    for (const auto& [key, write] : write_set_) {
      mvcc::Compare unmodified;
      unmodified.key = key;
      unmodified.target = mvcc::Compare::Target::kMod;
      unmodified.result = mvcc::Compare::Result::kLess;
      unmodified.number = read_revision_ + 1;
      txn.compare.push_back(std::move(unmodified));
    }
  }
  for (const auto& [key, write] : write_set_) {
    mvcc::RequestOp op;
    if (write.is_delete) {
      op.kind = mvcc::RequestOp::Kind::kDeleteRange;
      op.delete_range.key = key;
    } else {
      op.kind = mvcc::RequestOp::Kind::kPut;
      op.put.key = key;
      op.put.value = write.value;
      op.put.lease = write.lease;
    }
    txn.success.push_back(std::move(op));
  }
  std::vector<std::string> reread;
  if (snapshot_reads()) {
    // A conflict reads the read set back in the same round trip (etcd: the txn's Else).
    for (const auto& [key, read] : read_set_) {
      mvcc::RequestOp op;
      op.kind = mvcc::RequestOp::Kind::kRange;
      op.range.key = key;
      txn.failure.push_back(std::move(op));
      reread.push_back(key);
    }
  }
  absl::StatusOr<server::Response> response = context_.Call(request);
  if (!response.ok()) return response.status();
  if (response->txn.succeeded) return Commit{true, response->header.revision};
  if (response->txn.responses.size() != reread.size()) {
    return absl::InternalError(absl::StrCat("STM commit: the failure branch answered ",
                                            response->txn.responses.size(), " ops, want ",
                                            reread.size()));
  }
  prefetched_.clear();
  for (size_t i = 0; i < reread.size(); ++i) {
    Read read;
    std::vector<mvcc::KeyValue>& kvs = response->txn.responses[i].range.kvs;
    if (!kvs.empty()) read.kv = std::move(kvs[0]);
    read.header_revision = response->header.revision;
    prefetched_[reread[i]] = std::move(read);
  }
  return Commit{false, 0};
}

absl::StatusOr<StmResult> RunStm(ClientContext context,
                                 const std::function<absl::Status(Stm&)>& apply,
                                 StmOptions options) {
  if (options.max_attempts <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("STM max_attempts must be positive, got ", options.max_attempts));
  }
  Stm stm(context, options.isolation);
  for (int attempt = 1; attempt <= options.max_attempts; ++attempt) {
    stm.Reset();
    for (const std::string& key : options.prefetch) stm.Fetch(key);
    absl::Status applied = apply(stm);
    if (!stm.read_status_.ok()) {
      const ErrorCode code = CodeOf(stm.read_status_);
      // A snapshot revision compacted away, or not yet applied by the member that answered:
      // start again from a fresh snapshot.
      if (code == ErrorCode::kCompacted || code == ErrorCode::kFutureRevision) {
        stm.prefetched_.clear();
        continue;
      }
      return stm.read_status_;
    }
    if (!applied.ok()) return applied;
    absl::StatusOr<Stm::Commit> commit = stm.TryCommit();
    if (!commit.ok()) return commit.status();
    if (commit->committed) return StmResult{commit->revision, attempt};
  }
  return absl::AbortedError(
      absl::StrCat("STM gave up after ", options.max_attempts, " conflicting attempts"));
}

}  // namespace kvstore::net::concurrency
