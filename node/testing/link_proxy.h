#ifndef KVSTORE_NODE_TESTING_LINK_PROXY_H_
#define KVSTORE_NODE_TESTING_LINK_PROXY_H_

// A per-link TCP proxy for tests of real member processes: the peer traffic of every ordered pair
// of members goes through it, and the test cuts, delays or breaks each direction at run time.
//
// Shape: one listening port per destination member. A member advertises the proxy's port as its
// peer URL (--initial-advertise-peer-urls, --initial-cluster) and listens on its own port
// (--listen-peer-urls), as a member behind a NAT does; every peer dials the advertised URL, so
// every peer connection to that member arrives here. A peer URL is one text in the replicated
// member list (and the member id is derived from it), so members cannot be told to dial a
// member at different ports: the proxy instead tells the sources apart by the process that
// opened the connection (the connecting socket's inode in /proc/net/tcp, found among the fds of
// the member processes the test registered with SetProcess). A connection from a process the
// test did not register (one that already exited, a tool) belongs to the source kUnknownMember.
//
// A link is (from, to): the connections `from` opens to `to`. Raft traffic from `from` to `to`
// (messages, snapshots, and the joiner's Peer.members) travels on such connections, with their
// Cap'n Proto returns; traffic from `to` to `from` travels on `to`'s own connections, link
// (to, from). So the two directions of a member pair are faulted independently. A fault covers
// both byte streams of its link's connections.
//
// Faults (LinkFault), applied per chunk of bytes as it is forwarded, so a change takes effect at
// once on connections already open:
//   - kRefuse: new connections are reset as soon as accepted (RST, SO_LINGER 0), connections
//     already open are reset: the dialer sees "connection reset" and backs off;
//   - kBlackhole: connections are accepted and bytes in both directions are dropped silently,
//     as behind a firewall that drops packets: the dialer sees a stalled connection;
//   - delay_ms: every chunk is forwarded delay_ms after it was read, in order (a fixed one-way
//     latency added to each byte stream of the link);
//   - reset_per_chunk_probability: a lossy link. TCP cannot lose a message and keep the stream,
//     so loss is the reset of the connection carrying a chunk, with this probability per chunk:
//     what was in flight is lost and the dialer reconnects, as over a link that drops packets
//     until the connection times out.
//
// Threads: the proxy runs its own kj event loop on a thread of its own, so a test may block its
// own thread (wait for a child, hold its own event loop) while traffic keeps flowing. Every
// method is called from the test's thread and runs on the proxy's thread synchronously.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvstore::node::testing {

// The source of a connection whose process the test did not register.
inline constexpr int kUnknownMember = -1;

struct LinkFault {
  enum class Cut { kNone, kRefuse, kBlackhole };
  Cut cut = Cut::kNone;
  int64_t delay_ms = 0;
  double reset_per_chunk_probability = 0;

  static LinkFault Healthy() { return {}; }
  static LinkFault Refused() { return {Cut::kRefuse, 0, 0}; }
  static LinkFault Blackholed() { return {Cut::kBlackhole, 0, 0}; }
  static LinkFault Delayed(int64_t ms) { return {Cut::kNone, ms, 0}; }
  static LinkFault Lossy(double probability) { return {Cut::kNone, 0, probability}; }
};

// What went through one link since the proxy started.
struct LinkStats {
  uint64_t connections = 0;  // accepted and attributed to the link
  uint64_t refused = 0;      // reset at once (kRefuse)
  uint64_t resets = 0;       // open connections reset (kRefuse set later, or a lossy chunk)
  uint64_t bytes_forwarded = 0;
  uint64_t bytes_dropped = 0;  // kBlackhole
};

class LinkProxy {
 public:
  // Starts the proxy's thread. `seed` drives the lossy links' choices.
  static absl::StatusOr<std::unique_ptr<LinkProxy>> Start(uint64_t seed = 1);
  // Closes every connection and listener, then joins the thread.
  ~LinkProxy();
  LinkProxy(const LinkProxy&) = delete;
  LinkProxy& operator=(const LinkProxy&) = delete;

  // Listens on a free port of 127.0.0.1 for connections to `member` and forwards them to
  // 127.0.0.1:`target_port` (the member's own peer listener). Returns the proxy's port, the one
  // the member advertises.
  absl::StatusOr<uint16_t> AddDestination(int member, uint16_t target_port);
  // The process running `member` now (again after every restart); 0: none.
  void SetProcess(int member, pid_t pid);

  // The fault of link (from, to); kRefuse resets the link's open connections now.
  void SetFault(int from, int to, const LinkFault& fault);
  // Both directions of every link between `a` and `b`: a partition's cut between two sides.
  void Cut(const std::vector<int>& a, const std::vector<int>& b,
           const LinkFault& fault = LinkFault::Refused());
  // Every link healthy again (connections reset by a cut come back as the dialers reconnect).
  void HealAll();

  LinkStats Stats(int from, int to) const;
  // Every link with traffic, one line each ("n1->n2 conns=3 bytes=1234 ..."), for a failure
  // message.
  std::string Describe() const;

 private:
  class Impl;
  explicit LinkProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The process whose socket is connected from 127.0.0.1:`local_port` to 127.0.0.1:`remote_port`,
// among `candidates`: its index, or -1 when none holds it (Linux: /proc/net/tcp and
// /proc/<pid>/fd).
int FindSocketOwner(uint16_t local_port, uint16_t remote_port,
                    const std::vector<pid_t>& candidates);

}  // namespace kvstore::node::testing

#endif  // KVSTORE_NODE_TESTING_LINK_PROXY_H_
