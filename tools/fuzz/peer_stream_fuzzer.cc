// Fuzzes the bytes of a Raft stream between peers (net/raft_stream.h), as PeerServer and
// PeerClient read them: the magic, then length-prefixed RaftBatch frames (receiver), or RaftAck
// frames (the sender reading acknowledgements). The first byte says how to read the rest:
//   bit 0:    0 the receiving side (RaftStreamDecoder), 1 the acknowledgements (FrameDecoder and
//             DecodeRaftAck)
//   bit 1:    1 puts kRaftStreamMagic before the bytes (so mutations spend themselves on frames)
//   bit 2:    1 reads with a 4 KiB frame limit instead of kMaxPeerMessageBytes (the limit's
//             refusal within small inputs)
//   bits 3-7: k; the bytes arrive k^3 at a time (k = 0: all at once), as reads of a socket would
//
// Properties: no crash, no escaping exception; the same batches and the same final status
// whether the bytes arrive at once or in pieces; the frame buffer never grows past the larger of
// its first size and twice the bytes received, nor past the limit; a decoded Raft message
// survives ToCapnp, the wire and FromCapnp unchanged.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "core/raft/types.h"
#include "net/convert.h"
#include "net/peer.capnp.h"
#include "net/raft_stream.h"
#include "tools/fuzz/capnp_util.h"
#include "tools/fuzz/fuzz_util.h"
#include "tools/fuzz/peer_round_trip.h"

namespace {

using namespace kvstore;

constexpr uint64_t kCluster = 77;  // as make_seeds' frames
constexpr uint64_t kSmallLimit = 4 << 10;

std::string Describe(const net::DecodedRaftStream& decoded) {
  std::string out;
  for (const net::RaftStreamBatch& batch : decoded.batches) {
    out += batch.ack_wanted ? "batch(ack):" : "batch:";
    for (const raft::Message& m : batch.messages) out += " " + raft::DescribeMessage(m);
    out += "\n";
  }
  return out + decoded.status.ToString();
}

void CheckCapacity(size_t capacity, size_t received, uint64_t limit) {
  const size_t bound = std::max(net::kFrameBufferInitialBytes, 2 * received);
  FUZZ_CHECK(capacity <= bound, "the frame buffer grew to %zu bytes after %zu received", capacity,
             received);
  FUZZ_CHECK(capacity <= std::max<uint64_t>(net::kFrameBufferInitialBytes, limit + 8),
             "the frame buffer grew to %zu bytes past the %llu-byte limit", capacity,
             static_cast<unsigned long long>(limit));
}

void Receive(absl::string_view bytes, uint64_t limit, size_t chunk) {
  const net::DecodedRaftStream whole = net::DecodeRaftStream(bytes, kCluster, limit);
  CheckCapacity(whole.max_capacity, bytes.size(), limit);
  FUZZ_CHECK(whole.status.code() != absl::StatusCode::kUnknown &&
                 whole.status.code() != absl::StatusCode::kInternal,
             "an error without a cause: %s", whole.status.ToString().c_str());
  FUZZ_CHECK(whole.status.ok() || !whole.status.message().empty(), "an error without a message");
  for (const net::RaftStreamBatch& batch : whole.batches) {
    FUZZ_CHECK(batch.cluster_id == kCluster, "a batch of cluster %llu accepted",
               static_cast<unsigned long long>(batch.cluster_id));
    for (const raft::Message& m : batch.messages) fuzz::CheckMessageRoundTrip(m);
  }
  if (chunk == 0) return;
  const net::DecodedRaftStream pieces = net::DecodeRaftStream(bytes, kCluster, limit, chunk);
  CheckCapacity(pieces.max_capacity, bytes.size(), limit);
  const std::string a = Describe(whole);
  const std::string b = Describe(pieces);
  FUZZ_CHECK(a == b, "read at once:\n%s\nread %zu bytes at a time:\n%s", a.c_str(), chunk,
             b.c_str());
}

// As PeerClient::ReadAcks: every whole frame after each read, the first malformed one (or a
// refusal) ends the link.
void ReadAcks(absl::string_view bytes, uint64_t limit, size_t chunk) {
  net::FrameDecoder decoder(limit, net::PeerReaderOptions());
  if (chunk == 0) chunk = std::max<size_t>(bytes.size(), 1);
  size_t received = 0;
  for (;;) {
    for (;;) {
      absl::StatusOr<capnp::MessageReader*> frame = decoder.Next();
      CheckCapacity(decoder.capacity(), received, limit);
      if (!frame.ok()) return;
      if (*frame == nullptr) break;
      absl::StatusOr<net::RaftStreamAck> ack = net::DecodeRaftAck(**frame);
      if (!ack.ok()) {
        FUZZ_CHECK(ack.status().code() == absl::StatusCode::kInvalidArgument,
                   "a refused acknowledgement: %s", ack.status().ToString().c_str());
        return;
      }
      if (!ack->refusal.empty()) return;
    }
    if (bytes.empty()) break;
    const size_t taken = decoder.Append(bytes.substr(0, std::min(chunk, bytes.size())));
    FUZZ_CHECK(taken > 0, "the decoder took no bytes without an error");
    received += taken;
    bytes.remove_prefix(taken);
  }
  (void)decoder.End();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (1 << 20)) return 0;
  const uint8_t mode = data[0];
  std::string bytes;
  if (mode & 2) bytes.assign(net::kRaftStreamMagic, sizeof(net::kRaftStreamMagic));
  bytes.append(reinterpret_cast<const char*>(data + 1), size - 1);
  const uint64_t limit = (mode & 4) ? kSmallLimit : net::kMaxPeerMessageBytes;
  const size_t k = mode >> 3;
  const size_t chunk = k * k * k;
  if (mode & 1) {
    ReadAcks(bytes, limit, chunk);
  } else {
    Receive(bytes, limit, chunk);
  }
  return 0;
}
