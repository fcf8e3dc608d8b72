// One WatchRequest of a watch stream (a gRPC Watch stream, or a /v3/watch body of the JSON
// gateway) handed to what the stream does with each kind: the one switch both streams share.
#ifndef NET_ETCD_WATCH_REQUEST_H_
#define NET_ETCD_WATCH_REQUEST_H_

#include <cstdint>

#include "net/etcd/rpc.pb.h"

namespace kvstore::net::etcd {

// Calls `create(const WatchCreateRequest&)`, `cancel(int64_t watch_id)` or `progress()` for the
// request's kind; a request with none set is ignored, as etcd ignores it.
template <typename Create, typename Cancel, typename Progress>
void DispatchWatchRequest(const etcdserverpb::WatchRequest& request, Create&& create,
                          Cancel&& cancel, Progress&& progress) {
  switch (request.request_union_case()) {
    case etcdserverpb::WatchRequest::kCreateRequest:
      create(request.create_request());
      break;
    case etcdserverpb::WatchRequest::kCancelRequest:
      cancel(request.cancel_request().watch_id());
      break;
    case etcdserverpb::WatchRequest::kProgressRequest:
      progress();
      break;
    default:
      break;
  }
}

}  // namespace kvstore::net::etcd

#endif  // NET_ETCD_WATCH_REQUEST_H_
