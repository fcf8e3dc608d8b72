#include "net/raft_stream.h"

#include <cstring>
#include <string>
#include <vector>

#include "capnp/serialize.h"
#include "core/raft/types.h"
#include "gtest/gtest.h"
#include "net/convert.h"
#include "net/testing/raft_frames.h"

namespace kvstore::net {
namespace {

using testing::FrameBytes;
using testing::RaftBatchFrame;
using testing::RaftBatchFrameFrom;

constexpr uint64_t kCluster = 42;

raft::Message Heartbeat(uint64_t commit) {
  raft::Message m;
  m.type = raft::MessageType::kHeartbeat;
  m.from = 1;
  m.to = 2;
  m.term = 3;
  m.commit = commit;
  return m;
}

std::string Magic() { return std::string(kRaftStreamMagic, sizeof(kRaftStreamMagic)); }

// One RaftBatch frame, as PeerClient writes it; `bad_type` overwrites the last message's type.
std::string Frame(const std::vector<raft::Message>& messages, uint64_t cluster_id = kCluster,
                  bool ack = false, int bad_type = 0) {
  return RaftBatchFrame(messages, cluster_id, ack, bad_type);
}

// A frame header (one segment) claiming `words` words.
std::string Header(uint32_t words) {
  std::string h(8, '\0');
  for (int i = 0; i < 4; ++i) h[4 + i] = static_cast<char>((words >> (8 * i)) & 0xff);
  return h;
}

std::vector<uint64_t> Commits(const DecodedRaftStream& decoded) {
  std::vector<uint64_t> commits;
  for (const RaftStreamBatch& batch : decoded.batches) {
    for (const raft::Message& m : batch.messages) commits.push_back(m.commit);
  }
  return commits;
}

bool Mentions(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

TEST(RaftStreamTest, ValidFramesDecodeAlikeAtEveryReadSize) {
  const std::string stream =
      Magic() + Frame({Heartbeat(1), Heartbeat(2)}) + Frame({Heartbeat(3)}, kCluster, true);
  for (size_t chunk = 0; chunk <= stream.size(); ++chunk) {
    DecodedRaftStream decoded = DecodeRaftStream(stream, kCluster, kMaxPeerMessageBytes, chunk);
    ASSERT_TRUE(decoded.status.ok()) << chunk << ": " << decoded.status;
    ASSERT_EQ(decoded.batches.size(), 2u) << chunk;
    EXPECT_EQ(Commits(decoded), (std::vector<uint64_t>{1, 2, 3})) << chunk;
    EXPECT_FALSE(decoded.batches[0].ack_wanted);
    EXPECT_TRUE(decoded.batches[1].ack_wanted);
    EXPECT_EQ(decoded.max_capacity, kFrameBufferInitialBytes);
  }
}

TEST(RaftStreamTest, AnEmptyStreamIsACleanEnd) {
  DecodedRaftStream decoded = DecodeRaftStream("", kCluster);
  EXPECT_TRUE(decoded.status.ok()) << decoded.status;
  EXPECT_TRUE(decoded.batches.empty());
  decoded = DecodeRaftStream(Magic(), kCluster);
  EXPECT_TRUE(decoded.status.ok()) << decoded.status;
}

TEST(RaftStreamTest, TruncatedStreamsAreRefusedAfterTheirWholeFrames) {
  const std::string first = Frame({Heartbeat(1)});
  const std::string second = Frame({Heartbeat(2), Heartbeat(3)});
  const std::string stream = Magic() + first + second;
  // Cut anywhere inside the magic or the second frame: the whole frames before the cut are
  // decoded, then the end is refused with how much of what arrived.
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    if (cut == Magic().size() || cut == Magic().size() + first.size()) continue;
    DecodedRaftStream decoded = DecodeRaftStream(stream.substr(0, cut), kCluster);
    ASSERT_FALSE(decoded.status.ok()) << cut;
    EXPECT_EQ(decoded.status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(Mentions(decoded.status, "the stream ended inside")) << decoded.status;
    EXPECT_EQ(decoded.batches.size(), cut > Magic().size() + first.size() ? 1u : 0u) << cut;
  }
  EXPECT_TRUE(Mentions(DecodeRaftStream(stream.substr(0, 3), kCluster).status,
                       "inside its magic (3 of 8 bytes)"));
  const size_t cut = stream.size() - 8;
  EXPECT_TRUE(Mentions(DecodeRaftStream(stream.substr(0, cut), kCluster).status,
                       "the stream ended inside a frame (" + std::to_string(second.size() - 8) +
                           " of its " + std::to_string(second.size()) + " bytes)"))
      << DecodeRaftStream(stream.substr(0, cut), kCluster).status;
}

TEST(RaftStreamTest, BadMagicIsRefused) {
  std::string stream = Magic() + Frame({Heartbeat(1)});
  stream[5] = 'X';
  DecodedRaftStream decoded = DecodeRaftStream(stream, kCluster);
  EXPECT_TRUE(Mentions(decoded.status, "not a Raft stream")) << decoded.status;
  EXPECT_TRUE(decoded.batches.empty());
}

TEST(RaftStreamTest, ALengthPrefixOverTheLimitIsRefusedBeforeAllocating) {
  // 2^32 - 1 words claimed (32 GiB): refused from the 8-byte header, the buffer untouched.
  DecodedRaftStream decoded = DecodeRaftStream(Magic() + Header(0xffffffff), kCluster);
  EXPECT_EQ(decoded.status.code(), absl::StatusCode::kResourceExhausted) << decoded.status;
  EXPECT_TRUE(Mentions(decoded.status, "a frame of 34359738368 bytes, over the limit of 33554432"))
      << decoded.status;
  EXPECT_EQ(decoded.max_capacity, kFrameBufferInitialBytes);

  // Exactly at a limit is accepted, one word over it refused.
  const std::string frame = Frame({Heartbeat(1)});
  EXPECT_TRUE(DecodeRaftStream(Magic() + frame, kCluster, frame.size()).status.ok());
  decoded = DecodeRaftStream(Magic() + frame, kCluster, frame.size() - 8);
  EXPECT_EQ(decoded.status.code(), absl::StatusCode::kResourceExhausted) << decoded.status;
  EXPECT_TRUE(decoded.batches.empty());

  // Too many segments: refused from the first word.
  std::string segments(8, '\0');
  segments[0] = segments[1] = '\xff';  // 65536 segments
  decoded = DecodeRaftStream(Magic() + segments, kCluster);
  EXPECT_TRUE(Mentions(decoded.status, "a frame of 65536 segments (at most 512)"))
      << decoded.status;
}

TEST(RaftStreamTest, AClaimedSizeCostsNothingUntilItsBytesArrive) {
  // 20 MiB claimed (under the 32 MiB limit), 4 KiB sent: the buffer stays at its first size.
  DecodedRaftStream decoded =
      DecodeRaftStream(Magic() + Header(20 << 17) + std::string(4096, 'x'), kCluster);
  EXPECT_TRUE(Mentions(decoded.status, "the stream ended inside a frame")) << decoded.status;
  EXPECT_EQ(decoded.max_capacity, kFrameBufferInitialBytes);
  // 1 MiB of it sent, 64 KiB at a time: the buffer grows with what came, to at most twice that.
  decoded = DecodeRaftStream(Magic() + Header(20 << 17) + std::string(1 << 20, 'x'), kCluster,
                             kMaxPeerMessageBytes, 64 << 10);
  EXPECT_LE(decoded.max_capacity, 2u << 20);
  EXPECT_GT(decoded.max_capacity, 1u << 20);
}

TEST(RaftStreamTest, ALargeFrameGrowsTheBufferWithinTheLimit) {
  raft::Message app;
  app.type = raft::MessageType::kApp;
  app.from = 1;
  app.to = 2;
  app.term = 3;
  app.log_term = 3;
  app.index = 7;
  app.entries.push_back(
      raft::Entry{3, 8, raft::EntryType::kNormal, raft::Bytes(std::string(300 << 10, 'e'))});
  const std::string frame = Frame({app});
  for (size_t chunk : {size_t{0}, size_t{1000}, size_t{64 << 10}}) {
    DecodedRaftStream decoded =
        DecodeRaftStream(Magic() + frame + Frame({Heartbeat(9)}), kCluster, 1 << 20, chunk);
    ASSERT_TRUE(decoded.status.ok()) << decoded.status;
    ASSERT_EQ(decoded.batches.size(), 2u);
    EXPECT_EQ(decoded.batches[0].messages[0].entries[0].data.size(), 300u << 10);
    EXPECT_LE(decoded.max_capacity, 1u << 20);
  }
}

TEST(RaftStreamTest, GarbageAfterAValidFrameIsRefusedAfterIt) {
  const std::string valid = Magic() + Frame({Heartbeat(1)});
  // A header claiming too many segments.
  DecodedRaftStream decoded = DecodeRaftStream(valid + std::string(8, '\xff'), kCluster);
  EXPECT_EQ(Commits(decoded), std::vector<uint64_t>{1});
  EXPECT_TRUE(Mentions(decoded.status, "segments (at most 512)")) << decoded.status;
  // A plausible header, then bytes that are no message.
  decoded = DecodeRaftStream(valid + Header(2) + std::string(16, '\x5a'), kCluster);
  EXPECT_EQ(Commits(decoded), std::vector<uint64_t>{1});
  EXPECT_EQ(decoded.status.code(), absl::StatusCode::kInvalidArgument) << decoded.status;
  EXPECT_TRUE(Mentions(decoded.status, "malformed RaftBatch frame")) << decoded.status;
  // A few bytes short of a header.
  decoded = DecodeRaftStream(valid + "abc", kCluster);
  EXPECT_EQ(Commits(decoded), std::vector<uint64_t>{1});
  EXPECT_TRUE(Mentions(decoded.status, "the stream ended inside a frame")) << decoded.status;
}

TEST(RaftStreamTest, ZeroLengthFramesAreRefused) {
  // One segment of zero words: no root pointer.
  DecodedRaftStream decoded = DecodeRaftStream(Magic() + Header(0), kCluster);
  EXPECT_EQ(decoded.status.code(), absl::StatusCode::kInvalidArgument) << decoded.status;
  EXPECT_TRUE(Mentions(decoded.status, "malformed RaftBatch frame")) << decoded.status;
  // A null root: an empty RaftBatch, whose cluster id (0) is no cluster's.
  decoded = DecodeRaftStream(Magic() + Header(1) + std::string(8, '\0'), kCluster);
  EXPECT_EQ(decoded.status.code(), absl::StatusCode::kFailedPrecondition) << decoded.status;
  EXPECT_TRUE(Mentions(decoded.status, "cluster id mismatch: local 2a, remote 0"));
  // A batch of no messages is a batch (an acknowledgement asked for with nothing to send).
  decoded = DecodeRaftStream(Magic() + Frame({}, kCluster, true), kCluster);
  ASSERT_TRUE(decoded.status.ok()) << decoded.status;
  ASSERT_EQ(decoded.batches.size(), 1u);
  EXPECT_TRUE(decoded.batches[0].messages.empty());
}

TEST(RaftStreamTest, AMessageWithAnInvalidFieldRefusesItsBatchWhole) {
  DecodedRaftStream decoded = DecodeRaftStream(
      Magic() + Frame({Heartbeat(1)}) + Frame({Heartbeat(2), Heartbeat(3)}, kCluster, false, 99),
      kCluster);
  EXPECT_EQ(Commits(decoded), std::vector<uint64_t>{1});
  EXPECT_EQ(decoded.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(decoded.status, "malformed raft message 1")) << decoded.status;
  EXPECT_TRUE(Mentions(decoded.status, "type 99")) << decoded.status;

  raft::Message snap = Heartbeat(4);
  snap.type = raft::MessageType::kSnap;
  auto snapshot = std::make_shared<raft::Snapshot>();
  snapshot->metadata.index = 10;
  snapshot->metadata.term = 3;
  snapshot->metadata.conf_state.voters = {1, 2};
  snap.snapshot = snapshot;
  decoded = DecodeRaftStream(Magic() + Frame({snap}), kCluster);
  EXPECT_TRUE(Mentions(decoded.status, "kSnap travels through sendSnapshot")) << decoded.status;
}

TEST(RaftStreamTest, AnotherClustersBatchIsRefused) {
  DecodedRaftStream decoded = DecodeRaftStream(Magic() + Frame({Heartbeat(1)}, 7), kCluster);
  EXPECT_EQ(decoded.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Mentions(decoded.status,
                       "the sender belongs to another cluster: cluster id mismatch: local 2a, "
                       "remote 7"))
      << decoded.status;
}

// A connection's first batch names its sender and the peer URLs it advertises; the others do not.
TEST(RaftStreamTest, TheFirstBatchCarriesTheSendersPeerUrls) {
  const std::vector<std::string> urls = {"http://127.0.0.1:2380", "https://n4.example:12380/"};
  DecodedRaftStream decoded = DecodeRaftStream(
      Magic() + RaftBatchFrameFrom({Heartbeat(1)}, kCluster, 4, urls) + Frame({Heartbeat(2)}),
      kCluster);
  ASSERT_TRUE(decoded.status.ok()) << decoded.status;
  ASSERT_EQ(decoded.batches.size(), 2u);
  EXPECT_EQ(decoded.batches[0].sender_id, 4u);
  EXPECT_EQ(decoded.batches[0].sender_peer_urls, urls);
  EXPECT_EQ(Commits(decoded), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(decoded.batches[1].sender_id, raft::kNoNode);
  EXPECT_TRUE(decoded.batches[1].sender_peer_urls.empty());
  // An empty (keep-alive) first batch may carry them too.
  decoded = DecodeRaftStream(Magic() + RaftBatchFrameFrom({}, kCluster, 4, {urls[0]}), kCluster);
  ASSERT_TRUE(decoded.status.ok()) << decoded.status;
  EXPECT_EQ(decoded.batches[0].sender_peer_urls, std::vector<std::string>{urls[0]});
}

// Peer URLs a receiver could not dial, or too many or too long, refuse the stream with the
// reason, before any message of their batch; none crashes the decoder.
TEST(RaftStreamTest, MalformedOrOversizedSenderPeerUrlsAreRefused) {
  struct Case {
    uint64_t sender;
    std::vector<std::string> urls;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {4, {"ftp://127.0.0.1:2380"}, "\"ftp://127.0.0.1:2380\": want http://host:port"},
      {4, {"http://127.0.0.1"}, "needs a host and a port"},
      {4, {"http://:2380"}, "needs a host and a port"},
      {4, {"http://h:2380/path"}, "no path"},
      {4, {"http://h:0"}, "no valid port"},
      {4, {"http://h:65536"}, "no valid port"},
      {4, {"http://h:23x"}, "no valid port"},
      {4, {std::string("http://h\0:1", 11)}, "a space, control or non-ASCII byte"},
      {4, {"http://h :1"}, "a space, control or non-ASCII byte"},
      {4, {"http://h\xc3\xa9:1"}, "a space, control or non-ASCII byte"},
      {4, {"http://" + std::string(300, 'h') + ":1"}, "309 bytes, over the limit of 256"},
      {4, {""}, "want http://host:port"},
      {4, std::vector<std::string>(9, "http://h:1"), "9 URLs, over the limit of 8"},
      {4, {}, "none given"},
      {0, {"http://h:1"}, "no sender id"},
  };
  for (const Case& c : cases) {
    DecodedRaftStream decoded =
        DecodeRaftStream(Magic() + Frame({Heartbeat(1)}) +
                             RaftBatchFrameFrom({Heartbeat(2)}, kCluster, c.sender, c.urls),
                         kCluster);
    EXPECT_EQ(decoded.status.code(), absl::StatusCode::kInvalidArgument) << c.reason;
    EXPECT_TRUE(Mentions(decoded.status, "the sender's peer URLs: ")) << decoded.status;
    EXPECT_TRUE(Mentions(decoded.status, c.reason)) << decoded.status;
    EXPECT_EQ(Commits(decoded), std::vector<uint64_t>{1}) << c.reason;
  }
  // A quoted URL is cut to 64 bytes in the reason: a hostile sender cannot fill the log.
  DecodedRaftStream decoded = DecodeRaftStream(
      Magic() + RaftBatchFrameFrom({}, kCluster, 4, {"http://" + std::string(1 << 20, 'h')}),
      kCluster);
  EXPECT_TRUE(Mentions(decoded.status, "over the limit of 256")) << decoded.status;
  EXPECT_LT(decoded.status.message().size(), 200u);
}

TEST(RaftStreamTest, AnErrorIsFinal) {
  RaftStreamDecoder decoder;
  decoder.Append(Magic() + Header(0xffffffff));
  auto first = decoder.Next(kCluster);
  ASSERT_FALSE(first.ok());
  const std::string frame = Frame({Heartbeat(1)});
  EXPECT_EQ(decoder.Append(frame), 0u);
  EXPECT_EQ(decoder.Space().size(), 0u);
  EXPECT_EQ(decoder.Next(kCluster).status(), first.status());
  EXPECT_EQ(decoder.End(), first.status());
}

TEST(RaftStreamTest, AFullBufferOfWholeFramesTakesNoMoreUntilTheyAreRead) {
  FrameDecoder decoder(kMaxPeerMessageBytes, PeerReaderOptions());
  const std::string frame = Frame({Heartbeat(1)});
  std::string many;
  while (many.size() < 2 * kFrameBufferInitialBytes) many += frame;
  const size_t taken = decoder.Append(many);
  EXPECT_LE(taken, kFrameBufferInitialBytes);
  EXPECT_EQ(decoder.capacity(), kFrameBufferInitialBytes);
  size_t frames = 0;
  for (;;) {
    absl::StatusOr<capnp::MessageReader*> next = decoder.Next();
    ASSERT_TRUE(next.ok()) << next.status();
    if (*next == nullptr) break;
    absl::StatusOr<RaftStreamBatch> batch = DecodeRaftBatch(**next, kCluster);
    ASSERT_TRUE(batch.ok()) << batch.status();
    ++frames;
  }
  EXPECT_EQ(frames, taken / frame.size());
  EXPECT_GT(decoder.Append(absl::string_view(many).substr(taken)), 0u);
}

TEST(RaftStreamTest, AcknowledgementsDecodeOrAreRefusedWithoutThrowing) {
  capnp::MallocMessageBuilder builder;
  auto ack = builder.initRoot<rpc::RaftAck>();
  ack.setBatches(5);
  ack.setRefusal("refused: why");
  FrameDecoder decoder(kMaxPeerMessageBytes, PeerReaderOptions());
  decoder.Append(FrameBytes(builder) + Header(0));
  absl::StatusOr<capnp::MessageReader*> frame = decoder.Next();
  ASSERT_TRUE(frame.ok() && *frame != nullptr);
  absl::StatusOr<RaftStreamAck> decoded = DecodeRaftAck(**frame);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->batches, 5u);
  EXPECT_EQ(decoded->refusal, "refused: why");
  frame = decoder.Next();
  ASSERT_TRUE(frame.ok() && *frame != nullptr);
  decoded = DecodeRaftAck(**frame);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(decoded.status(), "a malformed RaftAck frame")) << decoded.status();
  EXPECT_TRUE(decoder.End().ok());
}

}  // namespace
}  // namespace kvstore::net
