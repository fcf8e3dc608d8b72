// kvnode: one member of the key-value store, with etcd's flags (node/config.h).
//
//   kvnode                       one member on 127.0.0.1 (clients 2379, peers 2380), data in
//                                ./default.kvnode: etcd's embedded default
//   kvnode --name n1 --initial-cluster n1=http://127.0.0.1:2380,... --listen-client-urls ...
//
// Exit codes: 0 after a clean stop (SIGTERM or SIGINT; a leader hands leadership over first) and
// when the member stops because it was removed from the cluster (as etcd's does), 1 when the
// member cannot start (its data dir is in use, corrupt, a removed member's, or a port is taken)
// or stops on a storage failure, 2 for bad flags.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "core/base/errors.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_posix.h"
#include "kj/async-io.h"
#include "kj/async-unix.h"
#include "kj/compat/http.h"
#include "net/client_port.h"
#include "net/client_service.h"
#include "net/convert.h"
#include "net/etcd/gateway.h"
#include "net/etcd/http_guard.h"
#include "net/etcd/service.h"
#include "net/jwt.h"
#include "net/peer_service.h"
#include "net/tls.h"
#include "node/config.h"
#include "node/http_service.h"
#include "node/learned_routes.h"
#include "node/log.h"
#include "node/runtime.h"
#include "store/file_system.h"
#include "store/posix_file_system.h"

extern char** environ;

namespace kvstore::node {
namespace {

constexpr char kVersion[] = "kvnode 0.1.0 (etcd v3 API 3.4 semantics)";
// How long a removed member keeps serving its answers before it exits (etcd's stopWithDelay).
constexpr kj::Duration kRemovedStopDelay = 1 * kj::SECONDS;

// TLS contexts from the TLS flags (node/config.h), made once at start.
struct NodeTls {
  std::unique_ptr<net::TlsContext> client_server;  // https:// client URLs
  std::unique_ptr<net::TlsContext> peer_server;    // https:// peer URLs
  // Dialling https:// peers: the peer CA, and the peer certificate as the client's. Made at
  // start when TLS flags or https:// peer URLs are given (a bad file is refused there, as a bad
  // flag); otherwise only when a peer with an https:// URL is first dialled, because a client
  // context without a CA file loads the system trust store: parsing its ~140 certificates took
  // 50-150 ms of every plain-HTTP start here (perf: libcrypto, a third of the start's CPU).
  mutable std::unique_ptr<net::TlsContext> peer_client;
  net::TlsFiles peer_files;

  static absl::StatusOr<NodeTls> Create(const NodeConfig& config) {
    NodeTls tls;
    auto any_tls = [](const std::vector<Url>& urls) {
      return std::any_of(urls.begin(), urls.end(), [](const Url& url) { return url.tls(); });
    };
    if (any_tls(config.listen_client_urls)) {
      auto context = net::TlsContext::NewServer(config.client_tls);
      if (!context.ok()) return context.status();
      tls.client_server = std::move(*context);
    }
    if (any_tls(config.listen_peer_urls)) {
      auto context = net::TlsContext::NewServer(config.peer_tls);
      if (!context.ok()) return context.status();
      tls.peer_server = std::move(*context);
    }
    tls.peer_files = config.peer_tls;
    const net::TlsFiles& files = config.peer_tls;
    bool tls_peers = any_tls(config.listen_peer_urls) ||
                     any_tls(config.initial_advertise_peer_urls) || !files.cert_file.empty() ||
                     !files.key_file.empty() || !files.trusted_ca_file.empty();
    for (const auto& [name, urls] : config.initial_cluster) {
      for (const std::string& text : urls)
        tls_peers = tls_peers || absl::StartsWith(text, "https://");
    }
    if (tls_peers) {
      auto context = net::TlsContext::NewClient(config.peer_tls);
      if (!context.ok()) return context.status();
      tls.peer_client = std::move(*context);
    }
    return tls;
  }
  net::TlsContext* PeerClientFor(const Url& url) const {
    if (!url.tls()) return nullptr;
    if (peer_client == nullptr) {
      // No files to refuse here (they would have been loaded at start): only OpenSSL itself
      // can fail, and a peer with an https:// URL must never be dialled in plain text.
      auto context = net::TlsContext::NewClient(peer_files);
      KJ_REQUIRE(context.ok(), "cannot make a TLS client context for https:// peers",
                 std::string(context.status().message()));
      peer_client = std::move(*context);
    }
    return peer_client.get();
  }
};

// Sends Raft messages to the peers the member knows, one PeerClient per peer, created when a
// peer is first addressed (members added later included).
//
// Learned routes (node/learned_routes.h): a peer's Raft stream tells the sender's advertised peer
// URLs on its first batch. A member that missed the configuration change adding a member (it was
// down) knows neither its id nor its URL, and could not answer its vote requests; with the
// learned URL it can. A learned route is used only for an id that is neither in the applied
// member list nor in --initial-cluster (their entries win), never for a removed id (a removed
// member stays refused), and is forgotten once the id becomes a member or is removed.
class Router : public PeerRouter {
 public:
  // `known`: members this member may have to reach before its own log lists them (a joiner
  // answers the leader before it has applied the configuration entries that name it).
  // `election_timeout` sizes the peer links' bounds: keep-alive frames, snapshot stalls and TCP
  // keepalive (net/peer_service.h). `advertised`: this member's peer URLs
  // (--initial-advertise-peer-urls), told to every peer on its Raft stream.
  Router(kj::AsyncIoContext& io, Runtime& runtime, uint64_t cluster_id, Logger& log,
         std::vector<server::Member> known, kj::Duration election_timeout,
         std::vector<std::string> advertised)
      : io_(io),
        runtime_(runtime),
        cluster_id_(cluster_id),
        log_(log),
        keepalive_(net::PeerKeepaliveInterval(election_timeout)),
        snapshot_stall_(net::PeerStreamIdleTimeout(election_timeout)),
        tcp_keepalive_(net::PeerTcpKeepalive(election_timeout)),
        known_(std::move(known)),
        advertised_(std::move(advertised)),
        forwarder_(io.provider->getNetwork(), io.provider->getTimer(), cluster_id, tcp_keepalive_,
                   [this](raft::NodeId peer, const std::string& why) {
                     log_.Warn("closed forwarding connection",
                               {{"peer", absl::StrCat(absl::Hex(peer))}, {"error", why}});
                   }) {}

  kj::Promise<absl::StatusOr<server::Response>> Forward(raft::NodeId leader,
                                                        server::Request request,
                                                        kj::Duration timeout) override {
    for (const server::Member& member : runtime_.Members()) {
      if (member.id != leader || member.peer_urls.empty()) continue;
      auto url = ParseUrl(member.peer_urls.front());
      if (!url.ok()) return absl::StatusOr<server::Response>(url.status());
      return forwarder_.Forward(leader, url->HostPort(), std::move(request), timeout,
                                tls_ != nullptr ? tls_->PeerClientFor(*url) : nullptr);
    }
    return absl::StatusOr<server::Response>(
        absl::UnavailableError(absl::StrCat("leader ", absl::Hex(leader), " has no peer URL")));
  }

  void Send(const raft::Message& message) override {
    ForgetStalePeers();
    net::PeerClient* peer = Find(message.to);
    if (peer == nullptr) {
      runtime_.ReportUnreachable(message.to);
      return;
    }
    peer->Send(message);
  }

  void LearnRoute(raft::NodeId peer, std::vector<std::string> peer_urls) override {
    if (peer == runtime_.server().id()) return;
    // A moved URL is redialled by ForgetStalePeers.
    if (std::optional<std::string> url = learned_.Learn(peer, peer_urls); url.has_value()) {
      log_.Info("learned peer URL from its Raft stream",
                {{"peer", absl::StrCat(absl::Hex(peer))}, {"url", *url}});
    }
  }

 private:
  // Whether `id` has an entry in the applied member list or in --initial-cluster.
  bool Listed(raft::NodeId id) {
    for (const server::Member& member : runtime_.Members()) {
      if (member.id == id) return true;
    }
    for (const server::Member& member : known_) {
      if (member.id == id) return true;
    }
    return false;
  }

  net::PeerClient* Find(raft::NodeId id) {
    if (auto it = peers_.find(id); it != peers_.end()) return it->second.get();
    std::vector<server::Member> members = runtime_.Members();
    members.insert(members.end(), known_.begin(), known_.end());
    for (const server::Member& member : members) {
      if (member.id != id || member.peer_urls.empty()) continue;
      return Dial(id, member.peer_urls.front());
    }
    // Neither listed nor removed: a route learned from the peer's own Raft stream, if any.
    if (std::optional<std::string> url = learned_.Find(id); url.has_value()) return Dial(id, *url);
    return nullptr;
  }

  // A PeerClient to `id` at `peer_url`, kept in peers_; null (logged) if the URL is unusable.
  net::PeerClient* Dial(raft::NodeId id, const std::string& peer_url) {
    auto url = ParseUrl(peer_url);
    if (!url.ok()) {
      log_.Warn("peer has an unusable URL", {{"peer", absl::StrCat(absl::Hex(id))},
                                             {"error", std::string(url.status().message())}});
      return nullptr;
    }
    net::PeerClientOptions options;
    options.peer_id = id;
    options.address = url->HostPort();
    options.cluster_id = cluster_id_;
    if (tls_ != nullptr) options.tls = tls_->PeerClientFor(*url);
    options.keepalive_interval = keepalive_;
    options.snapshot_stall_timeout = snapshot_stall_;
    options.tcp_keepalive = tcp_keepalive_;
    options.local_id = runtime_.server().id();
    options.local_peer_urls = advertised_;
    net::PeerClientCallbacks callbacks;
    callbacks.on_unreachable = [this](raft::NodeId peer) { runtime_.ReportUnreachable(peer); };
    callbacks.on_snapshot_status = [this](raft::NodeId peer, bool ok) {
      runtime_.ReportSnapshot(peer, ok);
    };
    callbacks.on_error = [this](raft::NodeId peer, const absl::Status& why) {
      if (std::optional<raft::NodeId> removed = net::MemberRemovedOf(why);
          removed.has_value() && *removed == runtime_.server().id()) {
        // etcd's rafthttp 410 Gone: this member was removed while it was down or cut off.
        runtime_.ReportRemovedByPeer(peer, std::string(why.message()));
        return;
      }
      if (std::optional<uint64_t> theirs = net::ClusterMismatchOf(why)) {
        // A peer of another cluster (a wrong --initial-cluster here or there): it refuses
        // every message, so say so loudly, and in the member's status.
        const std::string mismatch = net::ClusterMismatchText(cluster_id_, *theirs);
        log_.Warn(mismatch,
                  {{"peer", absl::StrCat(absl::Hex(peer))}, {"error", std::string(why.message())}});
        runtime_.ReportPeerRefusal(peer, mismatch);
        return;
      }
      if (absl::IsAborted(why)) {  // a snapshot transfer; Raft sends it again later
        log_.Warn("snapshot transfer aborted",
                  {{"peer", absl::StrCat(absl::Hex(peer))}, {"error", std::string(why.message())}});
        return;
      }
      log_.Debug("peer connection failed",
                 {{"peer", absl::StrCat(absl::Hex(peer))}, {"error", std::string(why.message())}});
    };
    auto client = std::make_unique<net::PeerClient>(
        io_.provider->getNetwork(), io_.provider->getTimer(), options, std::move(callbacks));
    net::PeerClient* raw = client.get();
    peers_[id] = std::move(client);
    addresses_[id] = peer_url;
    return raw;
  }

  // The membership as carried out on the transport: a peer that left the member list (removed,
  // or replaced once the joint configuration is left) loses its connection, and one whose peer
  // URL changed (member update) gets a new one at the next message. Checked once a second; the
  // connections dropped are destroyed at the next check, never inside one of their callbacks.
  void ForgetStalePeers() {
    const kj::TimePoint now = io_.provider->getTimer().now();
    if (now < next_membership_check_) return;
    next_membership_check_ = now + kj::SECONDS;
    retired_.clear();
    const std::vector<server::Member> members = runtime_.Members();
    if (members.empty()) return;  // a joiner that has applied nothing yet
    // A learned route whose id became a member (its entry wins) or was removed is forgotten.
    learned_.Prune([this](raft::NodeId id, const std::string& url) {
      log_.Info("forgot the peer URL learned from its Raft stream",
                {{"peer", absl::StrCat(absl::Hex(id))}, {"url", url}});
    });
    for (auto it = peers_.begin(); it != peers_.end();) {
      const auto member = std::find_if(members.begin(), members.end(), [&](const auto& m) {
        return m.id == it->first && !m.peer_urls.empty();
      });
      if (member != members.end() && member->peer_urls.front() == addresses_[it->first]) {
        ++it;
        continue;
      }
      // A peer reached by its learned route keeps its connection while the route holds.
      if (member == members.end()) {
        if (learned_.Find(it->first) == addresses_[it->first]) {
          ++it;
          continue;
        }
      }
      log_.Info(member == members.end() ? "peer left the cluster: connection closed"
                                        : "peer URL changed: reconnecting",
                {{"peer", absl::StrCat(absl::Hex(it->first))}, {"url", addresses_[it->first]}});
      addresses_.erase(it->first);
      retired_.push_back(std::move(it->second));
      it = peers_.erase(it);
    }
  }

  kj::AsyncIoContext& io_;
  Runtime& runtime_;
  uint64_t cluster_id_;
  Logger& log_;
  const NodeTls* tls_ = nullptr;
  // net::PeerClientOptions' keepalive_interval, snapshot_stall_timeout and tcp_keepalive.
  const kj::Duration keepalive_;
  const kj::Duration snapshot_stall_;
  const net::TcpKeepalive tcp_keepalive_;

 public:
  void set_tls(const NodeTls* tls) { tls_ = tls; }

 private:
  std::vector<server::Member> known_;
  const std::vector<std::string> advertised_;  // this member's peer URLs, told to its peers
  LearnedRoutes learned_{
      [this](raft::NodeId id) { return Listed(id) || runtime_.server().IsMemberRemoved(id); }};
  std::map<raft::NodeId, std::unique_ptr<net::PeerClient>> peers_;
  std::map<raft::NodeId, std::string> addresses_;  // the peer URL each connection dials
  std::vector<std::unique_ptr<net::PeerClient>> retired_;
  kj::TimePoint next_membership_check_ = kj::origin<kj::TimePoint>();
  net::PeerForwarder forwarder_;
};

// gRPC connections arrive as sockets from the client URLs (net/client_port.h), so the server
// listens on no port of its own.
std::unique_ptr<grpc::Server> StartGrpcServer(net::etcd::Services& services,
                                              const NodeConfig& config) {
  grpc::ServerBuilder builder;
  services.RegisterWith(builder);
  // etcd's limit: --max-request-bytes plus the envelope (its grpcOverheadBytes).
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(config.max_request_bytes + net::kRequestEnvelopeBytes));
  builder.SetMaxSendMessageSize(std::numeric_limits<int>::max());
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(std::min<uint64_t>(config.max_concurrent_streams,
                                                                 std::numeric_limits<int>::max())));
  return builder.BuildAndStart();
}

// gRPC's handlers wait on the member's loop, which is this thread: the server is shut down from
// another thread while this one keeps the loop turning, so every handler can finish.
void StopGrpcServer(grpc::Server& server, kj::WaitScope& wait_scope) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  kj::CrossThreadPromiseFulfiller<void>* done = paf.fulfiller.get();  // destroyed here, after join
  std::thread stopper([&server, done]() {
    server.Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    done->fulfill();
  });
  paf.promise.wait(wait_scope);
  stopper.join();
}

class IgnoreFailures final : public kj::TaskSet::ErrorHandler {
 public:
  // A failed HTTP connection concerns only its client.
  void taskFailed(kj::Exception&&) override {}
};

// A hex id kept in <data-dir>/member/`name` (written atomically and durably), or 0 when the file
// does not exist.
absl::StatusOr<uint64_t> ReadStoredId(const std::string& data_dir, const std::string& name) {
  store::PosixFileSystem fs;
  const std::string path = store::JoinPath(store::JoinPath(data_dir, "member"), name);
  if (!fs.Exists(path)) return 0;
  auto file = fs.Open(path, store::OpenMode::kRead);
  if (!file.ok()) return file.status();
  std::string text;
  if (absl::Status s = (*file)->ReadAt(0, 64, &text); !s.ok()) return s;
  uint64_t id = 0;
  if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(text), &id) || id == 0) {
    return absl::DataLossError(absl::StrCat(path, " does not hold a ", name, " (a hex number)"));
  }
  return id;
}

absl::Status WriteStoredId(const std::string& data_dir, const std::string& name, uint64_t id) {
  store::PosixFileSystem fs;
  const std::string member_dir = store::JoinPath(data_dir, "member");
  if (absl::Status s = store::MakeDirDurable(&fs, member_dir); !s.ok()) return s;
  return store::WriteFileDurably(&fs, member_dir, name, absl::StrCat(absl::Hex(id), "\n"));
}

// What a data directory records of its member once it has booted: its member id
// (<data-dir>/member/id) and its cluster id (<data-dir>/member/cluster_id); nullopt before the
// first boot completed (or for a founding member's data directory written before kvnode kept
// its id, which then boots from its flags once more and keeps it).
absl::StatusOr<std::optional<std::pair<raft::NodeId, uint64_t>>> StoredIdentity(
    const std::string& data_dir) {
  auto id = ReadStoredId(data_dir, "id");
  if (!id.ok()) return id.status();
  auto cluster_id = ReadStoredId(data_dir, "cluster_id");
  if (!cluster_id.ok()) return cluster_id.status();
  if (*id == raft::kNoNode || *cluster_id == 0) {
    return std::optional<std::pair<raft::NodeId, uint64_t>>();
  }
  return std::optional<std::pair<raft::NodeId, uint64_t>>(std::make_pair(*id, *cluster_id));
}

// A founding member's cluster id (--initial-cluster-state=new): the one its data directory keeps
// (<data-dir>/member/cluster_id), or, at the first boot, the one --initial-cluster gives
// (ClusterIdOf), stored then. As in etcd, the flags' cluster is ignored after the first boot: a
// stored id that disagrees with them wins, with a warning. A data directory written before the
// cluster id was stored (there was no deployed user) gets the one the flags give at its next boot.
absl::StatusOr<uint64_t> FoundingClusterId(const NodeConfig& config, uint64_t from_flags,
                                           Logger& log) {
  auto stored = ReadStoredId(config.data_dir, "cluster_id");
  if (!stored.ok()) return stored.status();
  if (*stored == 0) {
    if (absl::Status s = WriteStoredId(config.data_dir, "cluster_id", from_flags); !s.ok()) {
      return s;
    }
    return from_flags;
  }
  if (*stored != from_flags) {
    log.Warn(
        "the data directory's cluster id differs from the one --initial-cluster gives; "
        "the data directory's wins (the flags' cluster is ignored after the first boot)",
        {{"stored-cluster-id", absl::StrCat(absl::Hex(*stored))},
         {"flags-cluster-id", absl::StrCat(absl::Hex(from_flags))}});
  }
  return *stored;
}

// A member joining an existing cluster (--initial-cluster-state=existing) runs under the id the
// cluster gave it when it was added (kvctl member add): found once through a member's
// Peer.members by this member's peer URLs, then kept in <data-dir>/member/id (written
// atomically) for its restarts, as etcd keeps it in its WAL metadata. The cluster id comes the
// same way (Peer.members asked with cluster id 0 answers with it), kept in
// <data-dir>/member/cluster_id, written before the member id.
absl::StatusOr<raft::NodeId> JoinedMemberId(const NodeConfig& config, uint64_t* cluster_id,
                                            kj::AsyncIoContext& io, Logger& log,
                                            std::vector<server::Member>* cluster,
                                            const NodeTls& tls) {
  store::PosixFileSystem fs;
  const std::string member_dir = store::JoinPath(config.data_dir, "member");
  // The members as --initial-cluster names them: founding members' ids follow from their URLs.
  for (const auto& [name, urls] : config.initial_cluster) {
    cluster->push_back(server::Member{MemberIdOf(urls, config.initial_cluster_token), name, urls});
  }
  auto stored_id = ReadStoredId(config.data_dir, "id");
  if (!stored_id.ok()) return stored_id.status();
  auto stored_cluster_id = ReadStoredId(config.data_dir, "cluster_id");
  if (!stored_cluster_id.ok()) return stored_cluster_id.status();
  *cluster_id = *stored_cluster_id;
  if (*stored_id != raft::kNoNode && *cluster_id != 0) return *stored_id;
  std::vector<std::string> mine;
  for (const Url& url : config.initial_advertise_peer_urls) mine.push_back(url.text);
  std::string tried;
  for (const auto& [name, urls] : config.initial_cluster) {
    if (name == config.name) continue;
    for (const std::string& text : urls) {
      auto url = ParseUrl(text);
      if (!url.ok()) continue;
      auto fetched =
          net::FetchCluster(io.provider->getNetwork(), io.provider->getTimer(), url->HostPort(),
                            *cluster_id, 2 * kj::SECONDS, tls.PeerClientFor(*url))
              .wait(io.waitScope);
      if (!fetched.ok()) {
        absl::StrAppend(&tried, " ", text, ": ", fetched.status().message(), ";");
        continue;
      }
      if (*cluster_id == 0) {
        if (fetched->cluster_id == 0) {
          absl::StrAppend(&tried, " ", text, ": answered no cluster id;");
          continue;
        }
        *cluster_id = fetched->cluster_id;
        if (absl::Status s = WriteStoredId(config.data_dir, "cluster_id", *cluster_id); !s.ok()) {
          return s;
        }
      }
      if (*stored_id != raft::kNoNode) return *stored_id;
      const std::vector<server::Member>* members = &fetched->members;
      *cluster = *members;
      for (const server::Member& member : *members) {
        for (const std::string& peer_url : member.peer_urls) {
          if (std::find(mine.begin(), mine.end(), peer_url) == mine.end()) continue;
          if (absl::Status s = store::MakeDirDurable(&fs, member_dir); !s.ok()) return s;
          if (absl::Status s = store::WriteFileDurably(&fs, member_dir, "id",
                                                       absl::StrCat(absl::Hex(member.id), "\n"));
              !s.ok()) {
            return s;
          }
          log.Info("joining an existing cluster",
                   {{"member-id", absl::StrCat(absl::Hex(member.id))},
                    {"cluster-id", absl::StrCat(absl::Hex(*cluster_id))},
                    {"asked", text}});
          return member.id;
        }
      }
      absl::StrAppend(&tried, " ", text, ": not a member with this member's peer URLs;");
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no member of the cluster lists this member's peer URLs (",
                   absl::StrJoin(mine, ","), "): add it first (kvctl member add ", config.name,
                   " --peer-urls=", absl::StrJoin(mine, ","), ");", tried));
}

int Run(int argc, char** argv) {
  // gRPC locks absl::Mutex on every call, and Debian's absl is built with its debug deadlock
  // detector on, which updates a lock graph on each Lock: ~3% of a leader's CPU under 64
  // clients (perf). kvnode's locks are few and fixed; the detector is for tests.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      std::fputs(Usage().c_str(), stdout);
      return 0;
    }
    if (arg == "--version" || arg == "-version") {
      std::printf("%s\n", kVersion);
      return 0;
    }
  }
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) environment.emplace_back(*e);
  auto config = ParseConfig(args, environment);
  if (!config.ok()) {
    std::fprintf(stderr, "kvnode: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  auto options = ToRuntimeOptions(*config);
  if (!options.ok()) {
    std::fprintf(stderr, "kvnode: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (config->auth_token.jwt) {
    // The key files are read once, here: a missing or unusable key is a bad flag.
    auto provider = net::JwtProvider::Create(config->auth_token);
    if (!provider.ok()) {
      std::fprintf(stderr, "kvnode: %s\n", std::string(provider.status().message()).c_str());
      return 2;
    }
    options->token_provider = std::move(*provider);
  }
  auto tls = NodeTls::Create(*config);
  if (!tls.ok()) {
    std::fprintf(stderr, "kvnode: %s\n", std::string(tls.status().message()).c_str());
    return 2;
  }
  Logger log(config->log_level);
  log.Info("starting", {{"version", kVersion},
                        {"name", config->name},
                        {"data-dir", config->data_dir},
                        {"wal-segment-bytes", absl::StrCat(config->wal_segment_bytes)},
                        {"from-environment", absl::StrJoin(config->from_environment, ",")}});
  kj::AsyncIoContext io = kj::setupAsyncIo();
  // Before any thread starts, so every thread inherits the blocked mask.
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  std::vector<server::Member> known;
  auto stored = StoredIdentity(config->data_dir);
  if (!stored.ok()) {
    log.Error("cannot start", {{"error", std::string(stored.status().message())}});
    std::fprintf(stderr, "kvnode: %s\n", std::string(stored.status().message()).c_str());
    return 1;
  }
  // A founding member's first boot: its id is stored once its bootstrap entries are durable.
  bool store_founding_id = false;
  if (stored->has_value()) {
    // A restart: the identity and the cluster are the data directory's, as etcd takes them from
    // its WAL; --initial-cluster, --initial-cluster-state and --initial-cluster-token no longer
    // count (the membership is the log's). Its members stay a fallback address book.
    options->id = (*stored)->first;
    options->cluster_id = (*stored)->second;
    options->founding.clear();
    for (const auto& [name, urls] : config->initial_cluster) {
      known.push_back(server::Member{MemberIdOf(urls, config->initial_cluster_token), name, urls});
    }
    log.Info("restarting as the member the data directory records",
             {{"member-id", absl::StrCat(absl::Hex(options->id))},
              {"cluster-id", absl::StrCat(absl::Hex(options->cluster_id))},
              {"initial-cluster", "ignored after the first boot, as etcd's"}});
  } else if (config->initial_cluster_state_new) {
    if (absl::Status s = VerifyBootstrap(*config); !s.ok()) {
      std::fprintf(stderr, "kvnode: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    auto cluster_id = FoundingClusterId(*config, options->cluster_id, log);
    if (!cluster_id.ok()) {
      log.Error("cannot start", {{"error", std::string(cluster_id.status().message())}});
      std::fprintf(stderr, "kvnode: %s\n", std::string(cluster_id.status().message()).c_str());
      return 1;
    }
    options->cluster_id = *cluster_id;
    store_founding_id = true;
  } else {
    if (absl::Status s = VerifyBootstrap(*config); !s.ok()) {
      std::fprintf(stderr, "kvnode: %s\n", std::string(s.message()).c_str());
      return 2;
    }
    auto id = JoinedMemberId(*config, &options->cluster_id, io, log, &known, *tls);
    if (!id.ok()) {
      log.Error("cannot join", {{"error", std::string(id.status().message())}});
      std::fprintf(stderr, "kvnode: %s\n", std::string(id.status().message()).c_str());
      return 1;
    }
    options->id = *id;
  }
  log.Info("member of cluster", {{"member-id", absl::StrCat(absl::Hex(options->id))},
                                 {"cluster-id", absl::StrCat(absl::Hex(options->cluster_id))}});
  auto runtime = Runtime::Create(*options, io, &log);
  if (!runtime.ok()) {
    log.Error("cannot start", {{"error", std::string(runtime.status().message())}});
    std::fprintf(stderr, "kvnode: %s\n", std::string(runtime.status().message()).c_str());
    return 1;
  }
  if (store_founding_id) {
    if (absl::Status s = WriteStoredId(config->data_dir, "id", options->id); !s.ok()) {
      log.Error("cannot start", {{"error", std::string(s.message())}});
      std::fprintf(stderr, "kvnode: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  std::vector<std::string> advertised;
  for (const Url& url : config->initial_advertise_peer_urls) advertised.push_back(url.text);
  Router router(io, **runtime, options->cluster_id, log, std::move(known),
                config->election_timeout_ms * kj::MILLISECONDS, std::move(advertised));
  router.set_tls(&*tls);
  (*runtime)->set_router(&router);

  std::vector<kj::Own<net::PeerServer>> peer_servers;
  // A Raft stream silent for 5 election timeouts is closed (senders keep idle links alive), and
  // so is a snapshot transfer whose next chunk does not come within them; every peer socket has
  // TCP keepalive of about that bound; the peer listener serves at most net::kMaxPeerConnections
  // connections at once.
  net::PeerServiceOptions peer_options;
  peer_options.stream_idle_timeout =
      net::PeerStreamIdleTimeout(config->election_timeout_ms * kj::MILLISECONDS);
  peer_options.tcp_keepalive =
      net::PeerTcpKeepalive(config->election_timeout_ms * kj::MILLISECONDS);
  peer_options.on_closed = [&log](const std::string& remote, const std::string& why) {
    log.Warn("closed peer connection",
             {{"listener", "peer"}, {"remote-addr", remote}, {"error", why}});
  };
  std::vector<kj::Own<net::TlsListener>> peer_tls_listeners;  // after the servers they feed
  // Client URLs serve etcd's gRPC API, HTTP (the JSON gateway, /metrics, /health, the status
  // page) and the native Cap'n Proto API on one port each (net/client_port.h).
  net::ClientServiceOptions client_options;
  client_options.max_request_bytes = config->max_request_bytes;
  client_options.max_watches_per_connection =
      static_cast<size_t>(config->max_watchers_per_connection);
  net::ClientServer capnp_server(**runtime, client_options);
  // With --client-cert-auth, a gRPC call without a token runs as its certificate's CN (etcd's).
  net::etcd::CertUsers cert_users;
  net::etcd::ServiceOptions etcd_options;
  etcd_options.cert_users = &cert_users;
  etcd_options.max_watchers_per_connection =
      static_cast<size_t>(config->max_watchers_per_connection);
  net::etcd::Services etcd_services(**runtime, kj::getCurrentThreadExecutor(), etcd_options);
  std::unique_ptr<grpc::Server> grpc_server = StartGrpcServer(etcd_services, *config);
  std::vector<kj::Own<net::ClientPort>> client_ports;
  kj::HttpHeaderTable http_headers;
  StatusHttpOptions status_options;
  status_options.name = config->name;
  kj::Own<kj::HttpService> status_service = NewStatusHttpService(
      **runtime, (*runtime)->metrics(), io.provider->getTimer(), log, status_options);
  net::etcd::Gateway gateway(**runtime, http_headers, *status_service, config->max_request_bytes);
  kj::HttpServer http_server(io.provider->getTimer(), http_headers, gateway);
  IgnoreFailures ignore_failures;
  kj::TaskSet http_connections(ignore_failures);  // after the server its connections use
  net::ClientPortHandlers client_handlers;
  client_handlers.capnp = [&](kj::Own<kj::AsyncIoStream> stream) {
    capnp_server.Accept(kj::mv(stream));
  };
  client_handlers.grpc = [&](int fd) {
    cert_users.Set(fd, "");
    grpc::AddInsecureChannelFromFd(grpc_server.get(), fd);
  };
  client_handlers.grpc_tls = [&](int fd, const std::string& common_name) {
    cert_users.Set(fd, config->client_tls.client_cert_auth ? common_name : "");
    grpc::AddInsecureChannelFromFd(grpc_server.get(), fd);
  };
  // Each request head is checked as etcd's Go net/http checks it before kj-http reads it
  // (net/etcd/http_guard.h).
  client_handlers.http = [&](kj::Own<kj::AsyncIoStream> stream) {
    http_connections.add(
        net::etcd::ServeCheckedHttp(http_server, io.provider->getTimer(), kj::mv(stream)));
  };
  // With --client-cert-auth, Cap'n Proto and JSON gateway calls without a token run as the
  // certificate's CN too (a connection of its own bootstrap, an HTTP server of its own).
  client_handlers.capnp_tls = [&](kj::Own<kj::AsyncIoStream> stream,
                                  const std::string& common_name) {
    capnp_server.Accept(kj::mv(stream),
                        config->client_tls.client_cert_auth ? common_name : std::string());
  };
  client_handlers.http_tls = [&](kj::Own<kj::AsyncIoStream> stream,
                                 const std::string& common_name) {
    if (!config->client_tls.client_cert_auth || common_name.empty()) {
      http_connections.add(
          net::etcd::ServeCheckedHttp(http_server, io.provider->getTimer(), kj::mv(stream)));
      return;
    }
    auto service = gateway.ForCertUser(common_name);
    auto server = kj::heap<kj::HttpServer>(io.provider->getTimer(), http_headers, *service);
    auto served = net::etcd::ServeCheckedHttp(*server, io.provider->getTimer(), kj::mv(stream));
    http_connections.add(served.attach(kj::mv(server), kj::mv(service)));
  };
  std::vector<kj::Own<HttpListener>> metrics_listeners;
  try {
    for (const Url& url : config->listen_peer_urls) {
      if (url.tls()) {
        auto server = kj::heap<net::PeerServer>(**runtime, io.provider->getTimer(), peer_options);
        net::PeerServer& accepting = *server;
        peer_tls_listeners.push_back(
            net::TlsListener::Listen(
                io.provider->getNetwork(), io.provider->getTimer(), url.HostPort(),
                *tls->peer_server,
                [&accepting](net::TlsAccepted accepted) {
                  accepting.Accept(kj::mv(accepted.stream));
                },
                [&log](const std::string& remote, const std::string& why) {
                  log.Warn("rejected connection",
                           {{"listener", "peer"}, {"remote-addr", remote}, {"error", why}});
                })
                .wait(io.waitScope));
        peer_servers.push_back(kj::mv(server));
        log.Info("serving peer traffic over TLS", {{"address", url.text}});
        continue;
      }
      peer_servers.push_back(net::PeerServer::Listen(io.provider->getNetwork(),
                                                     io.provider->getTimer(), url.HostPort(),
                                                     **runtime, peer_options)
                                 .wait(io.waitScope));
      log.Info("serving peer traffic", {{"address", url.text}});
    }
    for (const Url& url : config->listen_client_urls) {
      net::ClientPortTls port_tls;
      if (url.tls()) {
        port_tls.context = tls->client_server.get();
        port_tls.low_level = io.lowLevelProvider.get();
        port_tls.on_rejected = [&log](const std::string& remote, const std::string& why) {
          log.Warn("rejected connection",
                   {{"listener", "client"}, {"remote-addr", remote}, {"error", why}});
        };
      }
      client_ports.push_back(net::ClientPort::Listen(io.provider->getNetwork(),
                                                     io.provider->getTimer(), io.unixEventPort,
                                                     url.HostPort(), client_handlers, port_tls)
                                 .wait(io.waitScope));
      log.Info("ready to serve client requests (gRPC, HTTP and Cap'n Proto)",
               {{"address", url.text}});
    }
    for (const Url& url : config->listen_metrics_urls) {
      metrics_listeners.push_back(HttpListener::Listen(io.provider->getNetwork(),
                                                       io.provider->getTimer(), url.HostPort(),
                                                       *status_service)
                                      .wait(io.waitScope));
      log.Info("serving /metrics, /health and the status page", {{"address", url.text}});
    }
  } catch (const kj::Exception& e) {
    log.Error("cannot listen", {{"error", e.getDescription().cStr()}});
    std::fprintf(stderr, "kvnode: cannot listen: %s\n", e.getDescription().cStr());
    return 1;
  }

  // Runs until a signal (clean stop, exit 0), the member's removal from the cluster (exit 0, as
  // etcd's removed member stops), or a storage failure (exit 1).
  auto signal = io.unixEventPort.onSignal(SIGTERM)
                    .exclusiveJoin(io.unixEventPort.onSignal(SIGINT))
                    .then([&](siginfo_t info) {
                      log.Info("received signal", {{"signal", strsignal(info.si_signo)}});
                      return (*runtime)->Shutdown().then([]() { return 0; });
                    });
  auto stopped = (*runtime)->Stopped().then([&log, &io](absl::Status why) -> kj::Promise<int> {
    if (CodeOf(why) != ErrorCode::kMemberRemoved) return 1;
    log.Warn("the member has been permanently removed from the cluster",
             {{"error", std::string(why.message())}});
    log.Warn("the data-dir used by this member must be removed");
    // As etcd's stopWithDelay: the loop runs a moment longer, so the answers it gave just before
    // (the member remove or replace that removed it, often served here) reach their clients
    // instead of a reset connection that makes them try again elsewhere.
    return io.provider->getTimer().afterDelay(kRemovedStopDelay).then([]() { return 0; });
  });
  const int code = signal.exclusiveJoin(kj::mv(stopped)).wait(io.waitScope);
  StopGrpcServer(*grpc_server, io.waitScope);
  return code;
}

}  // namespace
}  // namespace kvstore::node

int main(int argc, char** argv) { return kvstore::node::Run(argc, argv); }
