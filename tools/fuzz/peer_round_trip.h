#ifndef KVSTORE_TOOLS_FUZZ_PEER_ROUND_TRIP_H_
#define KVSTORE_TOOLS_FUZZ_PEER_ROUND_TRIP_H_

// The peer fuzzers' shared property (peer_message, peer_stream): a Raft message that decoded
// survives ToCapnp, the wire (PeerReaderOptions) and FromCapnp unchanged.

#include "core/raft/types.h"

namespace kvstore::fuzz {

// Aborts through FUZZ_CHECK when the re-encoded message does not decode, or decodes into another
// message (DescribeMessage differs).
void CheckMessageRoundTrip(const raft::Message& decoded);

}  // namespace kvstore::fuzz

#endif  // KVSTORE_TOOLS_FUZZ_PEER_ROUND_TRIP_H_
