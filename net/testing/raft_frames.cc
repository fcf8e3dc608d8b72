#include "net/testing/raft_frames.h"

#include "capnp/serialize.h"
#include "net/convert.h"
#include "net/peer.capnp.h"

namespace kvstore::net::testing {

std::string FrameBytes(capnp::MessageBuilder& builder) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  return std::string(reinterpret_cast<const char*>(words.begin()),
                     words.size() * sizeof(capnp::word));
}

std::string RaftBatchFrame(const std::vector<raft::Message>& messages, uint64_t cluster_id,
                           bool ack, int bad_type) {
  capnp::MallocMessageBuilder builder;
  auto batch = builder.initRoot<rpc::RaftBatch>();
  batch.setClusterId(cluster_id);
  batch.setAckWanted(ack);
  auto list = batch.initMessages(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) ToCapnp(messages[i], list[i]);
  if (bad_type != 0) list[messages.size() - 1].setType(bad_type);
  return FrameBytes(builder);
}

std::string RaftBatchFrameFrom(const std::vector<raft::Message>& messages, uint64_t cluster_id,
                               uint64_t sender_id, const std::vector<std::string>& peer_urls) {
  capnp::MallocMessageBuilder builder;
  auto batch = builder.initRoot<rpc::RaftBatch>();
  batch.setClusterId(cluster_id);
  batch.setSenderId(sender_id);
  auto urls = batch.initSenderPeerUrls(peer_urls.size());
  for (size_t i = 0; i < peer_urls.size(); ++i) {
    urls.set(i, capnp::Text::Reader(peer_urls[i].data(), peer_urls[i].size()));
  }
  auto list = batch.initMessages(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) ToCapnp(messages[i], list[i]);
  return FrameBytes(builder);
}

}  // namespace kvstore::net::testing
