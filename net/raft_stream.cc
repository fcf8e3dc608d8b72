#include "net/raft_stream.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "kj/exception.h"

namespace kvstore::net {
namespace {

uint32_t U32(const kj::byte* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

size_t RoundUpToWord(uint64_t bytes) {
  return static_cast<size_t>((bytes + sizeof(capnp::word) - 1) &
                             ~uint64_t{sizeof(capnp::word) - 1});
}

// The sender's id and peer URLs of a batch that carries either.
absl::Status DecodeSenderPeerUrls(rpc::RaftBatch::Reader batch, RaftStreamBatch& out) {
  if (batch.getSenderId() == raft::kNoNode) return absl::InvalidArgumentError("no sender id");
  capnp::List<capnp::Text>::Reader urls = batch.getSenderPeerUrls();
  if (urls.size() == 0) return absl::InvalidArgumentError("none given");
  if (urls.size() > kMaxSenderPeerUrls) {
    return absl::InvalidArgumentError(
        absl::StrCat(urls.size(), " URLs, over the limit of ", kMaxSenderPeerUrls));
  }
  std::vector<std::string> decoded;
  for (capnp::Text::Reader url : urls) {
    absl::string_view text(url.begin(), url.size());
    if (absl::Status valid = ValidateSenderPeerUrl(text); !valid.ok()) return valid;
    decoded.emplace_back(text);
  }
  out.sender_id = batch.getSenderId();
  out.sender_peer_urls = std::move(decoded);
  return absl::OkStatus();
}

}  // namespace

std::string ClusterMismatchText(uint64_t local, uint64_t remote) {
  return absl::StrCat("cluster id mismatch: local ", absl::Hex(local), ", remote ",
                      absl::Hex(remote));
}

absl::Status ValidateSenderPeerUrl(absl::string_view url) {
  const auto refuse = [url](absl::string_view why) {
    absl::string_view shown = url.substr(0, std::min<size_t>(url.size(), 64));
    std::string quoted;
    for (char c : shown) {
      quoted +=
          (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) ? '?' : c;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("peer URL \"", quoted, url.size() > shown.size() ? "..." : "", "\": ", why));
  };
  if (url.size() > kMaxSenderPeerUrlBytes) {
    return refuse(absl::StrCat(url.size(), " bytes, over the limit of ", kMaxSenderPeerUrlBytes));
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return refuse("a space, control or non-ASCII byte");
    }
  }
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://") && !absl::ConsumePrefix(&rest, "https://")) {
    return refuse("want http://host:port or https://host:port");
  }
  absl::ConsumeSuffix(&rest, "/");
  const size_t colon = rest.rfind(':');
  if (colon == absl::string_view::npos || colon == 0 || absl::StrContains(rest, "/")) {
    return refuse("needs a host and a port and no path");
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(rest.substr(colon + 1), &port) || port == 0 || port > 65535) {
    return refuse("no valid port");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<raft::Message>> DecodeSendBatch(capnp::List<rpc::Message>::Reader list) {
  std::vector<raft::Message> messages;
  // list.size() is the sender's claim, not what it sent: Cap'n Proto charges an element of a
  // zero-size struct list one word of the traversal limit, so a 41-byte call could claim 4 million
  // messages and make this reserve 544 MB (tools/fuzz, testdata/fuzz/peer_message/). No sender
  // batches more than its queue holds.
  messages.reserve(std::min<size_t>(list.size(), kDefaultPeerQueueLimitMessages));
  for (size_t i = 0; i < list.size(); ++i) {
    absl::StatusOr<raft::Message> m = FromCapnp(list[i]);
    if (!m.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed raft message ", i, ": ", m.status().message()));
    }
    if (m->type == raft::MessageType::kSnap) {
      // Without its data a snapshot would install an empty state machine.
      return absl::InvalidArgumentError(
          absl::StrCat("raft message ", i, ": kSnap travels through sendSnapshot"));
    }
    messages.push_back(std::move(*m));
  }
  return messages;
}

// --- FrameDecoder -------------------------------------------------------------------------------

FrameDecoder::FrameDecoder(uint64_t max_frame_bytes, capnp::ReaderOptions options)
    : max_frame_bytes_(max_frame_bytes),
      options_(options),
      buffer_(kj::heapArray<capnp::word>(kFrameBufferInitialBytes / sizeof(capnp::word))) {}

kj::ArrayPtr<kj::byte> FrameDecoder::Space() {
  reader_.reset();
  begin_ += consumed_;
  consumed_ = 0;
  if (begin_ == end_) begin_ = end_ = 0;
  if (!error_.ok()) return nullptr;
  const size_t available = end_ - begin_;
  const size_t wanted = std::max<size_t>(missing(), 1);
  if (capacity() - end_ < wanted && begin_ > 0) {
    // Make room at the end: the unread bytes go to the front (begin_ stays word-aligned).
    std::memmove(bytes(), bytes() + begin_, available);
    begin_ = 0;
    end_ = available;
  }
  if (end_ == capacity() && missing() > 0) {
    // Full, and the frame needs more (a frame's size is checked against the limit before its
    // body is asked for, so the bound below always holds a whole frame): double, up to the bound.
    // Full without a need (whole frames not yet taken by Next) gives no room.
    const size_t bound = std::max(kFrameBufferInitialBytes, RoundUpToWord(max_frame_bytes_));
    const size_t grown = std::min(2 * capacity(), bound);
    if (grown > capacity()) {
      auto bigger = kj::heapArray<capnp::word>(grown / sizeof(capnp::word));
      std::memcpy(bigger.begin(), bytes(), end_);
      buffer_ = kj::mv(bigger);
    }
  }
  return kj::arrayPtr(bytes() + end_, capacity() - end_);
}

void FrameDecoder::Commit(size_t n) { end_ += std::min(n, capacity() - end_); }

size_t FrameDecoder::Append(absl::string_view in) {
  size_t taken = 0;
  while (taken < in.size()) {
    kj::ArrayPtr<kj::byte> space = Space();
    if (space.size() == 0) break;
    const size_t n = std::min(space.size(), in.size() - taken);
    std::memcpy(space.begin(), in.data() + taken, n);
    Commit(n);
    taken += n;
  }
  return taken;
}

absl::StatusOr<capnp::MessageReader*> FrameDecoder::Next() {
  if (!error_.ok()) return error_;
  reader_.reset();
  begin_ += consumed_;
  consumed_ = 0;
  if (begin_ == end_) begin_ = end_ = 0;
  const size_t available = end_ - begin_;
  const kj::byte* p = bytes() + begin_;
  need_ = 8;
  if (available < need_) return nullptr;
  const uint64_t count = uint64_t{U32(p)} + 1;
  if (count > kMaxFrameSegments) {
    error_ =
        absl::InvalidArgumentError(absl::StrCat("a frame of ", count, " segments (at most ",
                                                kMaxFrameSegments, "): not a Cap'n Proto frame"));
    return error_;
  }
  const size_t header = RoundUpToWord(4 + 4 * count);
  need_ = header;
  if (available < header) return nullptr;
  uint64_t words = 0;
  for (size_t i = 0; i < count; ++i) words += U32(p + 4 + 4 * i);
  const uint64_t total = header + words * sizeof(capnp::word);
  if (total > max_frame_bytes_) {
    // Refused from the segment table alone: nothing is allocated for the body.
    error_ = absl::ResourceExhaustedError(absl::StrCat(
        "a frame of ", total, " bytes, over the limit of ", max_frame_bytes_, " bytes"));
    return error_;
  }
  need_ = static_cast<size_t>(total);
  if (available < total) return nullptr;
  segments_.clear();
  const capnp::word* segment = reinterpret_cast<const capnp::word*>(p + header);
  for (size_t i = 0; i < count; ++i) {
    const size_t size = U32(p + 4 + 4 * i);
    segments_.add(segment, size);
    segment += size;
  }
  reader_.emplace(segments_.asPtr(), options_);
  consumed_ = need_;
  need_ = 8;
  return &*reader_;
}

absl::Status FrameDecoder::End() const {
  if (!error_.ok()) return error_;
  const size_t left = end_ - begin_ - consumed_;
  if (left == 0) return absl::OkStatus();
  if (consumed_ == 0 && need_ > left) {
    return absl::InvalidArgumentError(
        absl::StrCat("the stream ended inside a frame (", left, " of its ", need_, " bytes)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the stream ended inside a frame (", left, " bytes of it)"));
}

// --- Raft batches and acknowledgements
// ------------------------------------------------------------

absl::StatusOr<RaftStreamBatch> DecodeRaftBatch(capnp::MessageReader& frame,
                                                uint64_t local_cluster_id) {
  absl::StatusOr<RaftStreamBatch> result = absl::UnknownError("not decoded");
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                 auto batch = frame.getRoot<rpc::RaftBatch>();
                 RaftStreamBatch out;
                 out.cluster_id = batch.getClusterId();
                 if (out.cluster_id != local_cluster_id) {
                   result = absl::FailedPreconditionError(
                       absl::StrCat("the sender belongs to another cluster: ",
                                    ClusterMismatchText(local_cluster_id, out.cluster_id)));
                   return;
                 }
                 out.ack_wanted = batch.getAckWanted();
                 if (batch.hasSenderPeerUrls() || batch.getSenderId() != raft::kNoNode) {
                   absl::Status urls = DecodeSenderPeerUrls(batch, out);
                   if (!urls.ok()) {
                     result = absl::InvalidArgumentError(
                         absl::StrCat("the sender's peer URLs: ", urls.message()));
                     return;
                   }
                 }
                 absl::StatusOr<std::vector<raft::Message>> messages =
                     DecodeSendBatch(batch.getMessages());
                 if (!messages.ok()) {
                   result = messages.status();
                   return;
                 }
                 out.messages = std::move(*messages);
                 result = std::move(out);
               })) {
    return absl::InvalidArgumentError(
        absl::StrCat("a malformed RaftBatch frame: ", exception->getDescription().cStr()));
  }
  return result;
}

absl::StatusOr<RaftStreamAck> DecodeRaftAck(capnp::MessageReader& frame) {
  absl::StatusOr<RaftStreamAck> result = absl::UnknownError("not decoded");
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                 auto ack = frame.getRoot<rpc::RaftAck>();
                 RaftStreamAck out;
                 out.batches = ack.getBatches();
                 if (ack.hasRefusal()) {
                   capnp::Text::Reader refusal = ack.getRefusal();
                   out.refusal.assign(refusal.cStr(), refusal.size());
                 }
                 result = std::move(out);
               })) {
    return absl::InvalidArgumentError(
        absl::StrCat("a malformed RaftAck frame: ", exception->getDescription().cStr()));
  }
  return result;
}

// --- RaftStreamDecoder --------------------------------------------------------------------------

RaftStreamDecoder::RaftStreamDecoder(uint64_t max_frame_bytes)
    : frames_(max_frame_bytes, PeerReaderOptions()) {}

kj::ArrayPtr<kj::byte> RaftStreamDecoder::Space() {
  if (!error_.ok()) return nullptr;
  if (magic_read_ < sizeof(magic_)) {
    return kj::arrayPtr(reinterpret_cast<kj::byte*>(magic_) + magic_read_,
                        sizeof(magic_) - magic_read_);
  }
  return frames_.Space();
}

void RaftStreamDecoder::Commit(size_t n) {
  if (magic_read_ < sizeof(magic_)) {
    magic_read_ += std::min(n, sizeof(magic_) - magic_read_);
    if (magic_read_ == sizeof(magic_) &&
        std::memcmp(magic_, kRaftStreamMagic, sizeof(magic_)) != 0) {
      error_ = absl::InvalidArgumentError("not a Raft stream: its first 8 bytes are not the magic");
    }
    return;
  }
  frames_.Commit(n);
}

size_t RaftStreamDecoder::Append(absl::string_view in) {
  size_t taken = 0;
  if (magic_read_ < sizeof(magic_) && error_.ok()) {
    const size_t n = std::min(in.size(), sizeof(magic_) - magic_read_);
    std::memcpy(magic_ + magic_read_, in.data(), n);
    Commit(n);
    taken = n;
  }
  if (!error_.ok() || magic_read_ < sizeof(magic_)) return taken;
  return taken + frames_.Append(in.substr(taken));
}

absl::StatusOr<std::optional<RaftStreamBatch>> RaftStreamDecoder::Next(uint64_t local_cluster_id) {
  using Result = std::optional<RaftStreamBatch>;
  if (!error_.ok()) return error_;
  if (magic_read_ < sizeof(magic_)) return Result();
  absl::StatusOr<capnp::MessageReader*> frame = frames_.Next();
  if (!frame.ok()) {
    error_ = frame.status();
    return error_;
  }
  if (*frame == nullptr) return Result();
  absl::StatusOr<RaftStreamBatch> batch = DecodeRaftBatch(**frame, local_cluster_id);
  if (!batch.ok()) {
    error_ = batch.status();
    return error_;
  }
  return Result(std::move(*batch));
}

absl::Status RaftStreamDecoder::End() const {
  if (!error_.ok()) return error_;
  if (magic_read_ == 0) return absl::OkStatus();
  if (magic_read_ < sizeof(magic_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the stream ended inside its magic (", magic_read_, " of 8 bytes)"));
  }
  return frames_.End();
}

size_t RaftStreamDecoder::missing() const {
  if (magic_read_ < sizeof(magic_)) return sizeof(magic_) - magic_read_;
  return frames_.missing();
}

DecodedRaftStream DecodeRaftStream(absl::string_view bytes, uint64_t local_cluster_id,
                                   uint64_t max_frame_bytes, size_t chunk) {
  DecodedRaftStream out;
  RaftStreamDecoder decoder(max_frame_bytes);
  if (chunk == 0) chunk = bytes.size();
  for (;;) {
    // Every whole batch first, as a receiver does after each read.
    for (;;) {
      absl::StatusOr<std::optional<RaftStreamBatch>> next = decoder.Next(local_cluster_id);
      out.max_capacity = std::max(out.max_capacity, decoder.frames().capacity());
      if (!next.ok()) {
        out.status = next.status();
        return out;
      }
      if (!next->has_value()) break;
      out.batches.push_back(std::move(**next));
    }
    if (bytes.empty()) break;
    const size_t taken = decoder.Append(bytes.substr(0, std::min(chunk, bytes.size())));
    out.max_capacity = std::max(out.max_capacity, decoder.frames().capacity());
    if (taken == 0) {
      // Only an error stops a decoder from taking bytes; Next reports it.
      out.status = decoder.End();
      if (out.status.ok()) out.status = absl::InternalError("the decoder took no bytes");
      return out;
    }
    bytes.remove_prefix(taken);
  }
  out.status = decoder.End();
  return out;
}

}  // namespace kvstore::net
