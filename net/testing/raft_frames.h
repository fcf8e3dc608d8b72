#ifndef KVSTORE_NET_TESTING_RAFT_FRAMES_H_
#define KVSTORE_NET_TESTING_RAFT_FRAMES_H_

// The bytes of Raft stream frames (raft_stream.h) for tests that write them by hand: the
// decoder's unit tests and the PeerServer's.

#include <cstdint>
#include <string>
#include <vector>

#include "capnp/message.h"
#include "core/raft/types.h"

namespace kvstore::net::testing {

// A message in Cap'n Proto's stream framing (what capnp::writeMessage writes).
std::string FrameBytes(capnp::MessageBuilder& builder);

// One RaftBatch frame, as PeerClient writes it; `bad_type` (non-zero) overwrites the last
// message's type.
std::string RaftBatchFrame(const std::vector<raft::Message>& messages, uint64_t cluster_id,
                           bool ack = false, int bad_type = 0);
// One RaftBatch frame that names its sender and peer URLs (a connection's first).
std::string RaftBatchFrameFrom(const std::vector<raft::Message>& messages, uint64_t cluster_id,
                               uint64_t sender_id, const std::vector<std::string>& peer_urls);

}  // namespace kvstore::net::testing

#endif  // KVSTORE_NET_TESTING_RAFT_FRAMES_H_
