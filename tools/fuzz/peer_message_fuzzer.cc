// Fuzzes the decoding of peer messages (net/peer.capnp through net/convert.h), with the peer
// connections' reader limits (PeerReaderOptions). The first byte picks what the bytes after it
// are, as a member receives them:
//   0: Peer.send's params (a batch of Raft messages, decoded by the service's DecodeSendBatch)
//   1: Peer.sendSnapshot's params (one kSnap message)
//   2: Peer.members' results (the member list a joining member reads)
//
// Properties: no crash and no escaping exception; a Raft message that decodes survives
// ToCapnp -> wire -> FromCapnp unchanged (DescribeMessage equal).

#include <cstdint>
#include <string>
#include <vector>

#include "core/raft/types.h"
#include "net/convert.h"
#include "net/peer.capnp.h"
#include "net/peer_service.h"
#include "tools/fuzz/capnp_util.h"
#include "tools/fuzz/fuzz_util.h"
#include "tools/fuzz/peer_round_trip.h"

namespace {

using namespace kvstore;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (4 << 20)) return 0;
  fuzz::CapnpInput input(data + 1, size - 1, net::PeerReaderOptions());
  switch (data[0] % 3) {
    case 0: {
      net::rpc::Peer::SendParams::Reader params;
      if (!input.Root<net::rpc::Peer::SendParams>(&params)) return 0;
      absl::StatusOr<capnp::List<net::rpc::Message>::Reader> list = absl::InternalError("unread");
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { list = params.getMessages(); })) {
        return 0;  // the service reads the list outside the decoder: the call fails
      }
      absl::StatusOr<std::vector<raft::Message>> batch = net::DecodeSendBatch(*list);
      if (batch.ok()) {
        for (const raft::Message& message : *batch) fuzz::CheckMessageRoundTrip(message);
      }
      break;
    }
    case 1: {
      net::rpc::Peer::SendSnapshotParams::Reader params;
      if (!input.Root<net::rpc::Peer::SendSnapshotParams>(&params)) return 0;
      absl::StatusOr<net::rpc::Message::Reader> message = absl::InternalError("unread");
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { message = params.getMessage(); })) {
        return 0;
      }
      absl::StatusOr<raft::Message> decoded = net::FromCapnp(*message);
      if (decoded.ok()) fuzz::CheckMessageRoundTrip(*decoded);
      break;
    }
    case 2: {
      net::rpc::Peer::MembersResults::Reader results;
      if (!input.Root<net::rpc::Peer::MembersResults>(&results)) return 0;
      absl::StatusOr<capnp::List<net::rpc::PeerMember>::Reader> list =
          absl::InternalError("unread");
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { list = results.getMembers(); })) {
        return 0;
      }
      // As PeerClient's member fetch: the first malformed member refuses the reply.
      for (auto member : *list) {
        if (!net::FromCapnp(member).ok()) break;
      }
      break;
    }
  }
  return 0;
}
