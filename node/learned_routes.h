#ifndef KVSTORE_NODE_LEARNED_ROUTES_H_
#define KVSTORE_NODE_LEARNED_ROUTES_H_

// Peer URLs learned from peers' Raft streams (kvnode's Router): a stream's first batch tells the
// sender's advertised peer URLs (net/peer.capnp, senderPeerUrls). A member that missed the
// configuration change adding a member knows neither its id nor its URL; with the learned URL it
// can answer it (its vote above all).
//
// The rules, whatever the caller: a route is kept only for an id that `excluded` does not name
// (kvnode excludes ids in the applied member list or in --initial-cluster, whose entries win, and
// removed ids, which stay refused), is checked again whenever it is used, and is forgotten once
// the id is excluded. At most kMaxRoutes are kept, the oldest learned dropped first. The URL kept
// is the first of the sender's that this member's own parser takes (node/config.h ParseUrl).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/raft/types.h"

namespace kvstore::node {

class LearnedRoutes {
 public:
  static constexpr size_t kMaxRoutes = 64;

  explicit LearnedRoutes(std::function<bool(raft::NodeId)> excluded)
      : excluded_(std::move(excluded)) {}

  // Records `peer`'s route; the URL kept, or nullopt when nothing was recorded (an excluded id,
  // no usable URL, or the same URL again).
  std::optional<std::string> Learn(raft::NodeId peer, const std::vector<std::string>& peer_urls);
  // The URL to dial `peer` at, if a route is kept and the id is still not excluded (a route
  // found excluded is forgotten).
  std::optional<std::string> Find(raft::NodeId peer);
  // Forgets every route whose id is now excluded; calls `forgotten(id, url)` for each.
  void Prune(const std::function<void(raft::NodeId, const std::string&)>& forgotten);
  size_t size() const { return routes_.size(); }

 private:
  struct Route {
    std::string url;
    uint64_t seq = 0;  // learned order: the oldest is dropped first
  };
  std::function<bool(raft::NodeId)> excluded_;
  std::map<raft::NodeId, Route> routes_;
  uint64_t seq_ = 0;
};

}  // namespace kvstore::node

#endif  // KVSTORE_NODE_LEARNED_ROUTES_H_
