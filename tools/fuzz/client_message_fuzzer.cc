// Fuzzes the decoding of client API messages (net/client.capnp through net/convert.h) on both
// sides of a connection: a member decodes requests with RequestReaderOptions(), a client library
// decodes replies (and watch events) with ResponseReaderOptions(). The first byte picks the
// message type (kDecoders below, modulo their number); the bytes after it are the message.
//
// Properties: no crash and no escaping exception (every decoder runs outside any catch).

#include <cstdint>
#include <functional>
#include <vector>

#include "net/client.capnp.h"
#include "net/convert.h"
#include "tools/fuzz/capnp_util.h"
#include "tools/fuzz/fuzz_util.h"

namespace {

using namespace kvstore;
namespace rpc = kvstore::net::rpc;

using Decoder = std::function<void(const uint8_t*, size_t)>;

// A member's side: the params of a method.
template <typename Params>
Decoder Request() {
  return [](const uint8_t* data, size_t size) {
    fuzz::CapnpInput input(data, size, net::RequestReaderOptions());
    typename Params::Reader params;
    if (input.Root<Params>(&params)) (void)net::ToRequest(params);
  };
}

// A client's side: the results of a method.
template <typename Results>
Decoder Response() {
  return [](const uint8_t* data, size_t size) {
    fuzz::CapnpInput input(data, size, net::ResponseReaderOptions());
    typename Results::Reader results;
    if (input.Root<Results>(&results)) (void)net::ToResponse(results);
  };
}

const std::vector<Decoder>& Decoders() {
  static const auto* decoders = new std::vector<Decoder>{
      Request<rpc::Kv::RangeParams>(),
      Request<rpc::Kv::PutParams>(),
      Request<rpc::Kv::DeleteRangeParams>(),
      Request<rpc::Kv::TxnParams>(),
      Request<rpc::Kv::CompactParams>(),
      Request<rpc::Lease::GrantParams>(),
      Request<rpc::Lease::RevokeParams>(),
      Request<rpc::Lease::KeepAliveParams>(),
      Request<rpc::Lease::TimeToLiveParams>(),
      Request<rpc::Lease::LeasesParams>(),
      Request<rpc::Cluster::MemberListParams>(),
      Request<rpc::Cluster::MemberAddParams>(),
      Request<rpc::Cluster::MemberRemoveParams>(),
      Request<rpc::Cluster::MemberPromoteParams>(),
      Request<rpc::Maintenance::HashParams>(),
      Request<rpc::Maintenance::DefragmentParams>(),
      Request<rpc::Maintenance::AlarmListParams>(),
      Request<rpc::Maintenance::AlarmDisarmParams>(),
      Request<rpc::Maintenance::MoveLeaderParams>(),
      // Watch.watch's request, as WatchImpl decodes it.
      [](const uint8_t* data, size_t size) {
        fuzz::CapnpInput input(data, size, net::RequestReaderOptions());
        rpc::WatchRequest::Reader request;
        if (input.Root<rpc::WatchRequest>(&request)) (void)net::FromCapnp(request);
      },
      Response<rpc::Kv::RangeResults>(),
      Response<rpc::Kv::PutResults>(),
      Response<rpc::Kv::DeleteRangeResults>(),
      Response<rpc::Kv::TxnResults>(),
      Response<rpc::Kv::CompactResults>(),
      Response<rpc::Lease::GrantResults>(),
      Response<rpc::Lease::RevokeResults>(),
      Response<rpc::Lease::TimeToLiveResults>(),
      Response<rpc::Lease::LeasesResults>(),
      Response<rpc::Cluster::MemberListResults>(),
      Response<rpc::Cluster::MemberAddResults>(),
      Response<rpc::Cluster::MemberRemoveResults>(),
      Response<rpc::Cluster::MemberPromoteResults>(),
      Response<rpc::Maintenance::HashResults>(),
      Response<rpc::Maintenance::DefragmentResults>(),
      Response<rpc::Maintenance::AlarmListResults>(),
      Response<rpc::Maintenance::AlarmDisarmResults>(),
      Response<rpc::Maintenance::MoveLeaderResults>(),
      [](const uint8_t* data, size_t size) {
        fuzz::CapnpInput input(data, size, net::ResponseReaderOptions());
        rpc::KeepAlive::KeepAliveResults::Reader results;
        if (input.Root<rpc::KeepAlive::KeepAliveResults>(&results)) {
          (void)net::ToResponse(results, /*lease_id=*/7);
        }
      },
      [](const uint8_t* data, size_t size) {
        fuzz::CapnpInput input(data, size, net::ResponseReaderOptions());
        rpc::Maintenance::StatusResults::Reader results;
        if (input.Root<rpc::Maintenance::StatusResults>(&results)) {
          (void)net::ToMemberStatus(results);
        }
      },
      // Watcher.onEvent's response, as the client library decodes it.
      [](const uint8_t* data, size_t size) {
        fuzz::CapnpInput input(data, size, net::ResponseReaderOptions());
        rpc::WatchResponse::Reader response;
        if (input.Root<rpc::WatchResponse>(&response)) (void)net::FromCapnp(response);
      },
  };
  return *decoders;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (4 << 20)) return 0;
  const std::vector<Decoder>& decoders = Decoders();
  decoders[data[0] % decoders.size()](data + 1, size - 1);
  return 0;
}
