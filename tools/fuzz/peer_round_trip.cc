#include "tools/fuzz/peer_round_trip.h"

#include <string>

#include "absl/status/statusor.h"
#include "capnp/serialize.h"
#include "net/convert.h"
#include "net/peer.capnp.h"
#include "tools/fuzz/capnp_util.h"
#include "tools/fuzz/fuzz_util.h"

namespace kvstore::fuzz {

void CheckMessageRoundTrip(const raft::Message& decoded) {
  auto words = Serialize<net::rpc::Message>(
      [&](net::rpc::Message::Builder out) { net::ToCapnp(decoded, out); });
  capnp::FlatArrayMessageReader reader(words.asPtr(), net::PeerReaderOptions());
  absl::StatusOr<raft::Message> again = net::FromCapnp(reader.getRoot<net::rpc::Message>());
  FUZZ_CHECK(again.ok(), "a re-encoded message does not decode: %s",
             std::string(again.status().message()).c_str());
  FUZZ_CHECK(raft::DescribeMessage(*again) == raft::DescribeMessage(decoded),
             "round trip changed %s into %s", raft::DescribeMessage(decoded).c_str(),
             raft::DescribeMessage(*again).c_str());
}

}  // namespace kvstore::fuzz
