#ifndef KVSTORE_NET_RAFT_STREAM_H_
#define KVSTORE_NET_RAFT_STREAM_H_

// The bytes of a Raft stream (peer_service.h), decoded without a network: the receiving
// PeerServer and the sending PeerClient (its acknowledgements) feed what they read into these
// decoders, and so do the unit tests and tools/fuzz:peer_stream_fuzzer.
//
//   stream := kRaftStreamMagic frame*          (sender to receiver; frames are RaftBatch)
//   acks   := frame*                           (receiver to sender; frames are RaftAck)
//   frame  := Cap'n Proto's stream framing: (segment count - 1) u32 LE, each segment's size in
//             words u32 LE, padding to a word, then the segments
//
// Every error is a status whose message says what was wrong; it is final (the decoder refuses
// everything after it) and the connection that carried the bytes is closed, nothing else.
// Allocation bound: a decoder's buffer starts at kFrameBufferInitialBytes and grows by doubling
// only when full and a frame needs more, never past the larger of that and the frame limit. A
// frame's size is known from its segment table before its body is read; a size over the limit is
// refused then, before anything is allocated for it, and a claimed size costs nothing until its
// bytes arrive (the buffer holds at most twice what was received).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "capnp/message.h"
#include "core/raft/types.h"
#include "kj/array.h"
#include "kj/vector.h"
#include "net/convert.h"
#include "net/peer.capnp.h"

namespace kvstore::net {

// Messages waiting for one peer (etcd's streamBufSize).
inline constexpr size_t kDefaultPeerQueueLimitMessages = 4096;
// The first 8 bytes of a Raft stream connection. As a Cap'n Proto frame header it would claim
// 2^32 segments, which no RPC message has, so the receiver tells the two kinds apart by them.
inline constexpr char kRaftStreamMagic[8] = {'\xff', '\xff', '\xff', '\xff', 'K', 'V', 'R', 'S'};
// A frame of more segments is refused (Cap'n Proto's own bound, serialize.c++).
inline constexpr uint64_t kMaxFrameSegments = 512;
// What a frame decoder's buffer starts with (a few small batches fit; a larger frame grows it).
inline constexpr size_t kFrameBufferInitialBytes = 64 << 10;

// A refusal for another cluster's id names both: "cluster id mismatch: local L, remote R" (hex),
// L the refusing member's (ClusterMismatchOf in peer_service.h finds it again).
std::string ClusterMismatchText(uint64_t local, uint64_t remote);

// Decodes one Peer.send batch (or a RaftBatch's messages) as the Peer service does: every message
// valid (convert.h) and none a kSnap (its data travels through sendSnapshot), or an error naming
// the first that is not.
absl::StatusOr<std::vector<raft::Message>> DecodeSendBatch(capnp::List<rpc::Message>::Reader list);

// Cap'n Proto frames from bytes, one at a time. Feed it (Append, or Space then Commit to read
// straight into its buffer) and ask for the Next frame.
class FrameDecoder {
 public:
  // `max_frame_bytes`: the largest frame accepted, segment table included; `options` bound the
  // reading of a frame's message (PeerReaderOptions for both directions of a Raft stream).
  FrameDecoder(uint64_t max_frame_bytes, capnp::ReaderOptions options);

  // Where to put bytes read: at least min(missing(), what the buffer may still grow by) bytes,
  // contiguous. Commit(n) then says how many of them were filled.
  kj::ArrayPtr<kj::byte> Space();
  void Commit(size_t n);
  // Copies in as much of `bytes` as the buffer may hold and returns how much that was: all of
  // them, unless the buffer is at its bound (then ask for the Next frame and Append the rest).
  size_t Append(absl::string_view bytes);

  // The next whole frame's message, valid until the next call of any method but missing(),
  // buffered() and capacity(); nullptr when more bytes are needed first. An error (too many
  // segments, a frame over the limit) is final.
  absl::StatusOr<capnp::MessageReader*> Next();
  // The bytes have ended: OK between two frames, an error inside one (or after an error).
  absl::Status End() const;

  // Bytes still needed before Next can say more (at least 1 when it returned nullptr).
  size_t missing() const { return need_ > buffered() ? need_ - buffered() : 0; }
  size_t buffered() const { return end_ - begin_; }
  size_t capacity() const { return buffer_.size() * sizeof(capnp::word); }

 private:
  kj::byte* bytes() { return reinterpret_cast<kj::byte*>(buffer_.begin()); }

  const uint64_t max_frame_bytes_;
  const capnp::ReaderOptions options_;
  kj::Array<capnp::word> buffer_;
  size_t begin_ = 0;  // bytes: the unread data is [begin_, end_), begin_ a multiple of 8
  size_t end_ = 0;
  size_t consumed_ = 0;  // the frame last returned, dropped at the next call
  size_t need_ = 8;      // bytes the frame at begin_ is known to need (its header at first)
  absl::Status error_;
  kj::Vector<kj::ArrayPtr<const capnp::word>> segments_;
  std::optional<capnp::SegmentArrayMessageReader> reader_;
};

// A sender tells its peer URLs on a stream's first batch (peer.capnp's senderPeerUrls): at most
// this many, each at most this long. etcd's members advertise one or two.
inline constexpr size_t kMaxSenderPeerUrls = 8;
inline constexpr size_t kMaxSenderPeerUrlBytes = 256;

// Whether `url` is a peer URL a receiver may dial: "http://host:port" or "https://host:port"
// (a trailing '/' allowed), a port in 1..65535, no path, printable ASCII only, at most
// kMaxSenderPeerUrlBytes. The error says what is wrong (the URL quoted, cut to its bound).
absl::Status ValidateSenderPeerUrl(absl::string_view url);

// One RaftBatch frame, validated: its cluster id is the receiver's and every message decodes.
struct RaftStreamBatch {
  uint64_t cluster_id = 0;
  bool ack_wanted = false;
  std::vector<raft::Message> messages;
  // The sender and its advertised peer URLs, when the frame carries them (a connection's first
  // batch; sender_id is kNoNode otherwise). Validated: a sender id, at most kMaxSenderPeerUrls,
  // each ValidateSenderPeerUrl.
  raft::NodeId sender_id = raft::kNoNode;
  std::vector<std::string> sender_peer_urls;
};

// Validates one RaftBatch frame for a member of `local_cluster_id`: a root that reads (an empty
// or truncated frame does not), the cluster id ("the sender belongs to another cluster: cluster
// id mismatch: ..."), the sender's peer URLs if any ("the sender's peer URLs: ..."), then
// DecodeSendBatch. Never throws.
absl::StatusOr<RaftStreamBatch> DecodeRaftBatch(capnp::MessageReader& frame,
                                                uint64_t local_cluster_id);

// The receiving side of a Raft stream from its first byte: the magic, then RaftBatch frames of at
// most `max_frame_bytes` each.
class RaftStreamDecoder {
 public:
  explicit RaftStreamDecoder(uint64_t max_frame_bytes = kMaxPeerMessageBytes);

  kj::ArrayPtr<kj::byte> Space();
  void Commit(size_t n);
  size_t Append(absl::string_view bytes);

  // The next batch; nullopt when more bytes are needed first. An error (bad magic, framing,
  // another cluster, a malformed message) refuses the stream: it is final.
  absl::StatusOr<std::optional<RaftStreamBatch>> Next(uint64_t local_cluster_id);
  // The bytes have ended: OK between two frames (or before the magic's first byte), an error
  // inside the magic or a frame.
  absl::Status End() const;

  size_t missing() const;
  const FrameDecoder& frames() const { return frames_; }

 private:
  char magic_[sizeof(kRaftStreamMagic)] = {};
  size_t magic_read_ = 0;
  FrameDecoder frames_;
  absl::Status error_;
};

// A whole stream's bytes decoded at once, fed `chunk` bytes at a time (0: all at once), as a
// receiver would: the batches up to the first error, and that error (OK: the bytes ended cleanly
// between two frames). For tests and the fuzzer.
struct DecodedRaftStream {
  std::vector<RaftStreamBatch> batches;
  absl::Status status;
  size_t max_capacity = 0;  // the largest the frame buffer grew
};
DecodedRaftStream DecodeRaftStream(absl::string_view bytes, uint64_t local_cluster_id,
                                   uint64_t max_frame_bytes = kMaxPeerMessageBytes,
                                   size_t chunk = 0);

// A RaftAck frame as the sender reads it.
struct RaftStreamAck {
  uint64_t batches = 0;
  std::string refusal;  // non-empty: the receiver refused the stream and closes it
};
// Never throws: a frame that does not read is an error.
absl::StatusOr<RaftStreamAck> DecodeRaftAck(capnp::MessageReader& frame);

}  // namespace kvstore::net

#endif  // KVSTORE_NET_RAFT_STREAM_H_
