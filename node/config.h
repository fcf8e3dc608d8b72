#ifndef KVSTORE_NODE_CONFIG_H_
#define KVSTORE_NODE_CONFIG_H_

// kvnode's configuration: etcd's flags, with etcd's names, meaning and defaults, and the matching
// ETCD_* environment variables (--initial-cluster-token <-> ETCD_INITIAL_CLUSTER_TOKEN). A flag
// given on the command line wins over its environment variable, as in etcd.
//
// With no flags at all this is etcd's embedded default: one member named "default" on 127.0.0.1,
// clients on 2379, peers on 2380, data in ./default.kvnode.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "net/jwt.h"
#include "net/tls.h"
#include "node/log.h"
#include "node/runtime.h"
#include "store/wal.h"

namespace kvstore::node {

// A URL of a listener or peer: http://host:port, or https://host:port for TLS (the cert and key
// flags of its kind are then required).
struct Url {
  std::string scheme;
  std::string host;
  uint16_t port = 0;
  std::string text;  // as given
  std::string HostPort() const;
  bool tls() const { return scheme == "https"; }
};
absl::StatusOr<Url> ParseUrl(const std::string& text);

// etcd's default is unlimited (2^32-1); a bound keeps one connection from holding a stream
// per watch or call without end, and is far above what a client library opens (etcdctl: a few;
// etcd's benchmark: one per client sharing the connection).
inline constexpr uint64_t kDefaultMaxConcurrentStreams = 1000;
// Watchers one client connection may hold open at once, over every gRPC Watch stream of the
// connection or every native watch (etcd has no such limit). Kubernetes' apiserver multiplexes
// all its watches on a few connections: the default leaves it room, and still bounds what one
// connection can make the member hold (--max-concurrent-streams times the 10,000 watchers of a
// stream, otherwise).
inline constexpr uint64_t kDefaultMaxWatchersPerConnection = 100000;
// --experimental-wal-segment-bytes (etcd has no flag: its SegmentSizeBytes is a package variable,
// 64 MiB, which is the default here too). Smaller segments roll over, and compaction drops them,
// after fewer writes: the simulator runs with 16 KiB and refuses below 8 KiB, the floor here. A
// segment given on the command line must also hold the largest request's entry with the records
// around it (its header, the snapshot marker a new segment starts with): at least
// --max-request-bytes plus kWalSegmentHeadroomBytes. (A record longer than a segment is still
// written, into a fresh segment of its own that it extends; the bound keeps that the exception.)
inline constexpr uint64_t kMinWalSegmentBytes = 8 << 10;
inline constexpr uint64_t kWalSegmentHeadroomBytes = 4 << 10;

struct NodeConfig {
  std::string name = "default";
  std::string data_dir;  // default: <name>.kvnode
  std::vector<Url> listen_client_urls;
  std::vector<Url> advertise_client_urls;
  std::vector<Url> listen_peer_urls;
  std::vector<Url> initial_advertise_peer_urls;
  // Extra listeners for /metrics, /health and the status page (etcd's --listen-metrics-urls);
  // empty: none.
  std::vector<Url> listen_metrics_urls;
  // TLS of https:// client URLs (--cert-file, --key-file, --client-cert-auth,
  // --trusted-ca-file) and peer URLs (--peer-cert-file, --peer-key-file,
  // --peer-client-cert-auth, --peer-trusted-ca-file; the peer certificate is also the client
  // certificate this member presents to https:// peers). The files are checked when parsed.
  net::TlsFiles client_tls;
  net::TlsFiles peer_tls;
  // name -> peer URLs.
  std::map<std::string, std::vector<std::string>> initial_cluster;
  bool initial_cluster_state_new = true;
  std::string initial_cluster_token = "etcd-cluster";
  uint64_t snapshot_count = 100000;
  int64_t heartbeat_interval_ms = 100;
  int64_t election_timeout_ms = 1000;
  // etcd's --experimental-watch-progress-notify-interval (a Go duration, "10m0s"): how often
  // watchers created with progress_notify get a progress notification.
  int64_t watch_progress_notify_interval_ms = 10 * 60 * 1000;
  uint64_t quota_backend_bytes = server::kDefaultQuotaBytes;
  uint64_t max_request_bytes = server::kDefaultMaxRequestBytes;
  // --experimental-wal-segment-bytes: the size each WAL segment is preallocated to.
  uint64_t wal_segment_bytes = store::kDefaultSegmentBytes;
  // --auth-token: "simple" (the default) or "jwt,pub-key=,priv-key=,sign-method=,ttl=" (key
  // files are read when the node starts); --auth-token-ttl: simple tokens' TTL.
  net::AuthTokenOptions auth_token;
  int64_t auth_token_ttl_seconds = 300;
  // gRPC streams (calls in flight, watch streams) one client connection may have open at once
  // (etcd's --max-concurrent-streams); the client queues more until one ends.
  uint64_t max_concurrent_streams = kDefaultMaxConcurrentStreams;
  // --max-watchers-per-connection: a creation past it is refused (gRPC: created and canceled
  // with a reason naming the limit; native: TOO_MANY_REQUESTS).
  uint64_t max_watchers_per_connection = kDefaultMaxWatchersPerConnection;
  LogLevel log_level = LogLevel::kInfo;

  // Flags that came from the environment, for the start-up log.
  std::vector<std::string> from_environment;
};

// Parses argv (flags as --name=value or --name value) and the environment (`environ` style,
// "KEY=VALUE"). Errors name the flag and what was wrong; kvnode prints them and exits 2.
// --help and --version are the caller's.
absl::StatusOr<NodeConfig> ParseConfig(const std::vector<std::string>& args,
                                       const std::vector<std::string>& environment);

// etcd's VerifyBootstrap: --initial-cluster names this member (--name) with the peer URLs it
// advertises (--initial-advertise-peer-urls). Checked at a member's first boot only: a restart
// takes its identity and membership from its data directory, and then --initial-cluster may
// have changed or be gone, as in etcd.
absl::Status VerifyBootstrap(const NodeConfig& config);

// The member's identity and cluster from the configuration: this member's id, the founding
// members (for --initial-cluster-state=new) and the cluster id. Meaningful at the first boot
// (after VerifyBootstrap); kvnode keeps both ids in the data directory for its restarts.
absl::StatusOr<RuntimeOptions> ToRuntimeOptions(const NodeConfig& config);

// The usage text of kvnode --help.
std::string Usage();

}  // namespace kvstore::node

#endif  // KVSTORE_NODE_CONFIG_H_
