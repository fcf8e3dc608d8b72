#include "node/learned_routes.h"

#include <algorithm>
#include <utility>

#include "node/config.h"

namespace kvstore::node {

std::optional<std::string> LearnedRoutes::Learn(raft::NodeId peer,
                                                const std::vector<std::string>& peer_urls) {
  if (peer == raft::kNoNode || excluded_(peer)) {
    routes_.erase(peer);
    return std::nullopt;
  }
  std::string usable;
  for (const std::string& text : peer_urls) {
    if (ParseUrl(text).ok()) {
      usable = text;
      break;
    }
  }
  if (usable.empty()) return std::nullopt;
  if (auto it = routes_.find(peer); it != routes_.end()) {
    if (it->second.url == usable) return std::nullopt;
    it->second.url = usable;  // moved
    return usable;
  }
  if (routes_.size() >= kMaxRoutes) {
    routes_.erase(
        std::min_element(routes_.begin(), routes_.end(),
                         [](const auto& a, const auto& b) { return a.second.seq < b.second.seq; }));
  }
  routes_[peer] = Route{usable, ++seq_};
  return usable;
}

std::optional<std::string> LearnedRoutes::Find(raft::NodeId peer) {
  auto it = routes_.find(peer);
  if (it == routes_.end()) return std::nullopt;
  if (excluded_(peer)) {
    routes_.erase(it);
    return std::nullopt;
  }
  return it->second.url;
}

void LearnedRoutes::Prune(const std::function<void(raft::NodeId, const std::string&)>& forgotten) {
  for (auto it = routes_.begin(); it != routes_.end();) {
    if (excluded_(it->first)) {
      forgotten(it->first, it->second.url);
      it = routes_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace kvstore::node
