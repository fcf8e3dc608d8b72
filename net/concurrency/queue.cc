#include "net/concurrency/queue.h"

#include <memory>

#include "core/server/server.h"

namespace kvstore::net::concurrency {

mvcc::RangeRequest FirstCreated(const std::string& prefix) {
  mvcc::RangeRequest first;
  first.key = prefix;
  first.range_end = mvcc::PrefixEnd(prefix);
  first.sort_target = mvcc::SortTarget::kCreate;
  first.sort_order = mvcc::SortOrder::kAscend;
  first.limit = 1;
  return first;
}

absl::StatusOr<bool> WaitDelete(ClientContext& context, const std::string& key,
                                mvcc::Revision revision, kj::Promise<void> stop) {
  auto deleted = kj::newPromiseAndFulfiller<bool>();
  kj::PromiseFulfiller<bool>* fulfiller = deleted.fulfiller.get();
  mvcc::WatchRequest watch;
  watch.key = key;
  watch.start_revision = revision;
  absl::StatusOr<std::unique_ptr<Client::Watch>> opened =
      context.client
          .WatchAsync(
              watch,
              [fulfiller](const mvcc::WatchResponse& response) {
                if (!fulfiller->isWaiting()) return;
                for (const mvcc::Event& event : response.events) {
                  if (event.type == mvcc::Event::Type::kDelete) {
                    fulfiller->fulfill(true);
                    return;
                  }
                }
                // The watch ended (a broken connection, a compaction): look again.
                if (response.canceled) fulfiller->fulfill(true);
              },
              context.token)
          .wait(context.wait_scope);
  if (!opened.ok()) return opened.status();
  const bool happened =
      deleted.promise.exclusiveJoin(stop.then([] { return false; })).wait(context.wait_scope);
  (*opened)->Cancel().wait(context.wait_scope).IgnoreError();
  return happened;
}

absl::StatusOr<bool> WaitDeletes(ClientContext& context, const std::string& prefix,
                                 mvcc::Revision max_create_revision,
                                 kj::ForkedPromise<void>& stop) {
  while (true) {
    // The last key created before ours (etcd's waitDeletes: WithLastCreate, WithMaxCreateRev).
    server::Request last;
    last.type = server::RequestType::kRange;
    last.range.key = prefix;
    last.range.range_end = mvcc::PrefixEnd(prefix);
    last.range.max_create_revision = max_create_revision;
    last.range.sort_target = mvcc::SortTarget::kCreate;
    last.range.sort_order = mvcc::SortOrder::kDescend;
    last.range.limit = 1;
    absl::StatusOr<server::Response> response = context.Call(last);
    if (!response.ok()) return response.status();
    if (response->range.kvs.empty()) return true;
    absl::StatusOr<bool> deleted = WaitDelete(context, response->range.kvs[0].key,
                                              response->header.revision, stop.addBranch());
    if (!deleted.ok() || !*deleted) return deleted;
  }
}

}  // namespace kvstore::net::concurrency
