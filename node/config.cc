#include "node/config.h"

#include <algorithm>
#include <functional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace kvstore::node {
namespace {

// LMDB's map is sized for the largest quota etcd suggests.
constexpr uint64_t kMaxQuotaBackendBytes = uint64_t{8} << 30;

absl::StatusOr<std::vector<Url>> ParseUrls(const std::string& flag, const std::string& value) {
  std::vector<Url> urls;
  for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
    auto url = ParseUrl(std::string(absl::StripAsciiWhitespace(part)));
    if (!url.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", url.status().message()));
    }
    urls.push_back(*url);
  }
  if (urls.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return urls;
}

template <typename T>
absl::Status ParseNumber(const std::string& flag, const std::string& value, T min, T* out) {
  T parsed;
  if (!absl::SimpleAtoi(value, &parsed) || parsed < min) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", value, ": want an integer of at least ", min));
  }
  *out = parsed;
  return absl::OkStatus();
}

// etcd's boolean flags: given alone they mean true, and never take the next argument.
const std::set<std::string>& BoolFlags() {
  static const std::set<std::string> flags = {"client-cert-auth", "peer-client-cert-auth"};
  return flags;
}

bool AnyTls(const std::vector<Url>& urls) {
  return std::any_of(urls.begin(), urls.end(), [](const Url& url) { return url.tls(); });
}

// Loads the TLS files of one kind (client or peer) when a URL of that kind needs them, or when
// they are given, so a bad file is refused at start rather than at the first connection.
absl::Status CheckTls(const char* kind, const char* flag_prefix, const net::TlsFiles& files,
                      const std::vector<Url>& listen_urls, bool dials_tls) {
  const bool given = !files.cert_file.empty() || !files.key_file.empty() ||
                     !files.trusted_ca_file.empty() || files.client_cert_auth;
  for (const Url& url : listen_urls) {
    if (url.tls() && (files.cert_file.empty() || files.key_file.empty())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TLS key/cert (--", flag_prefix, "cert-file, --", flag_prefix,
          "key-file) must be provided for ", kind, " url ", url.text, " with HTTPS scheme"));
    }
  }
  if (AnyTls(listen_urls) || (given && !files.cert_file.empty())) {
    if (auto server = net::TlsContext::NewServer(files); !server.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(kind, " TLS: ", server.status().message()));
    }
  } else if (files.client_cert_auth && files.trusted_ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag_prefix, "client-cert-auth needs --",
                                                   flag_prefix, "trusted-ca-file"));
  }
  if (dials_tls || given) {
    if (auto client = net::TlsContext::NewClient(files); !client.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(kind, " TLS: ", client.status().message()));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> Texts(const std::vector<Url>& urls) {
  std::vector<std::string> out;
  for (const Url& url : urls) out.push_back(url.text);
  return out;
}

}  // namespace

std::string Url::HostPort() const { return absl::StrCat(host, ":", port); }

absl::StatusOr<Url> ParseUrl(const std::string& text) {
  Url url;
  url.text = text;
  const size_t colon = text.find("://");
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL \"", text, "\" has no scheme (want http://host:port)"));
  }
  url.scheme = absl::AsciiStrToLower(text.substr(0, colon));
  if (url.scheme != "http" && url.scheme != "https") {
    return absl::InvalidArgumentError(absl::StrCat("URL \"", text, "\": unknown scheme \"",
                                                   url.scheme, "\" (want http or https)"));
  }
  std::string rest = text.substr(colon + 3);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  const size_t port_colon = rest.rfind(':');
  if (port_colon == std::string::npos || rest.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL \"", text, "\" needs a host and a port (http://host:port)"));
  }
  url.host = rest.substr(0, port_colon);
  uint32_t port = 0;
  if (url.host.empty() || !absl::SimpleAtoi(rest.substr(port_colon + 1), &port) || port == 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("URL \"", text, "\" has no valid port"));
  }
  url.port = static_cast<uint16_t>(port);
  return url;
}

absl::StatusOr<NodeConfig> ParseConfig(const std::vector<std::string>& args,
                                       const std::vector<std::string>& environment) {
  NodeConfig config;
  std::map<std::string, std::string> given;  // flag -> value
  std::map<std::string, std::string> from_env;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
    }
    // etcd takes --name value, --name=value and the one-dash forms.
    std::string flag = arg.substr(arg.rfind("--", 0) == 0 ? 2 : 1);
    std::string value;
    if (const size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (BoolFlags().count(flag) > 0) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", flag, " needs a value"));
    }
    given[flag] = value;
  }
  for (const std::string& entry : environment) {
    if (entry.rfind("ETCD_", 0) != 0) continue;
    const size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    std::string flag = absl::AsciiStrToLower(entry.substr(5, eq - 5));
    std::replace(flag.begin(), flag.end(), '_', '-');
    from_env[flag] = entry.substr(eq + 1);
  }

  using Setter = std::function<absl::Status(const std::string&)>;
  auto number_flag = [](const char* name, auto* out, auto min) -> Setter {
    return [name, out, min](const std::string& v) { return ParseNumber(name, v, min, out); };
  };
  auto urls_flag = [](const char* name, std::vector<Url>* out) -> Setter {
    return [name, out](const std::string& v) -> absl::Status {
      auto urls = ParseUrls(name, v);
      if (!urls.ok()) return urls.status();
      *out = std::move(*urls);
      return absl::OkStatus();
    };
  };
  auto file_flag = [](std::string* out) -> Setter {
    return [out](const std::string& v) {
      *out = v;
      return absl::OkStatus();
    };
  };
  auto bool_flag = [](const char* name, bool* out) -> Setter {
    return [name, out](const std::string& v) -> absl::Status {
      const std::string lower = absl::AsciiStrToLower(v);
      if (lower == "true" || lower == "1") {
        *out = true;
      } else if (lower == "false" || lower == "0") {
        *out = false;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, "=", v, ": want true or false"));
      }
      return absl::OkStatus();
    };
  };
  std::string initial_cluster;
  const std::map<std::string, Setter> setters = {
      {"cert-file", file_flag(&config.client_tls.cert_file)},
      {"key-file", file_flag(&config.client_tls.key_file)},
      {"trusted-ca-file", file_flag(&config.client_tls.trusted_ca_file)},
      {"client-cert-auth", bool_flag("client-cert-auth", &config.client_tls.client_cert_auth)},
      {"peer-cert-file", file_flag(&config.peer_tls.cert_file)},
      {"peer-key-file", file_flag(&config.peer_tls.key_file)},
      {"peer-trusted-ca-file", file_flag(&config.peer_tls.trusted_ca_file)},
      {"peer-client-cert-auth",
       bool_flag("peer-client-cert-auth", &config.peer_tls.client_cert_auth)},
      {"name",
       [&](const std::string& v) -> absl::Status {
         if (v.empty()) return absl::InvalidArgumentError("--name is empty");
         config.name = v;
         return absl::OkStatus();
       }},
      {"data-dir",
       [&](const std::string& v) -> absl::Status {
         if (v.empty()) return absl::InvalidArgumentError("--data-dir is empty");
         config.data_dir = v;
         return absl::OkStatus();
       }},
      {"listen-client-urls", urls_flag("listen-client-urls", &config.listen_client_urls)},
      {"advertise-client-urls", urls_flag("advertise-client-urls", &config.advertise_client_urls)},
      {"listen-peer-urls", urls_flag("listen-peer-urls", &config.listen_peer_urls)},
      {"initial-advertise-peer-urls",
       urls_flag("initial-advertise-peer-urls", &config.initial_advertise_peer_urls)},
      {"listen-metrics-urls", urls_flag("listen-metrics-urls", &config.listen_metrics_urls)},
      {"initial-cluster",
       [&](const std::string& v) {
         initial_cluster = v;
         return absl::OkStatus();
       }},
      {"initial-cluster-state",
       [&](const std::string& v) -> absl::Status {
         if (v != "new" && v != "existing") {
           return absl::InvalidArgumentError(
               absl::StrCat("--initial-cluster-state=", v, ": want \"new\" or \"existing\""));
         }
         config.initial_cluster_state_new = v == "new";
         return absl::OkStatus();
       }},
      {"initial-cluster-token",
       [&](const std::string& v) -> absl::Status {
         if (v.empty()) return absl::InvalidArgumentError("--initial-cluster-token is empty");
         config.initial_cluster_token = v;
         return absl::OkStatus();
       }},
      {"snapshot-count", number_flag("snapshot-count", &config.snapshot_count, uint64_t{1})},
      {"heartbeat-interval",
       number_flag("heartbeat-interval", &config.heartbeat_interval_ms, int64_t{1})},
      {"election-timeout",
       number_flag("election-timeout", &config.election_timeout_ms, int64_t{1})},
      {"experimental-watch-progress-notify-interval",
       [&](const std::string& v) -> absl::Status {
         absl::Duration interval;
         if (!absl::ParseDuration(v, &interval) || interval < absl::Milliseconds(1)) {
           return absl::InvalidArgumentError(
               absl::StrCat("--experimental-watch-progress-notify-interval=", v,
                            ": want a duration of at least 1ms (\"10m0s\", \"500ms\")"));
         }
         config.watch_progress_notify_interval_ms = absl::ToInt64Milliseconds(interval);
         return absl::OkStatus();
       }},
      {"quota-backend-bytes",
       number_flag("quota-backend-bytes", &config.quota_backend_bytes, uint64_t{0})},
      {"max-request-bytes",
       number_flag("max-request-bytes", &config.max_request_bytes, uint64_t{1})},
      {"experimental-wal-segment-bytes",
       number_flag("experimental-wal-segment-bytes", &config.wal_segment_bytes,
                   kMinWalSegmentBytes)},
      {"auth-token",
       [&](const std::string& v) -> absl::Status {
         auto options = net::ParseAuthTokenOptions(v);
         if (!options.ok()) return options.status();
         config.auth_token = std::move(*options);
         return absl::OkStatus();
       }},
      {"auth-token-ttl", number_flag("auth-token-ttl", &config.auth_token_ttl_seconds, int64_t{1})},
      {"max-concurrent-streams",
       number_flag("max-concurrent-streams", &config.max_concurrent_streams, uint64_t{1})},
      {"max-watchers-per-connection",
       number_flag("max-watchers-per-connection", &config.max_watchers_per_connection,
                   uint64_t{1})},
      {"log-level",
       [&](const std::string& v) -> absl::Status {
         auto level = ParseLogLevel(v);
         if (!level.ok())
           return absl::InvalidArgumentError(
               absl::StrCat("--log-level: ", level.status().message()));
         config.log_level = *level;
         return absl::OkStatus();
       }},
  };
  for (const auto& [flag, value] : given) {
    if (setters.count(flag) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", flag, " (see --help)"));
    }
  }
  for (const auto& [flag, value] : from_env) {
    if (setters.count(flag) == 0 || given.count(flag) > 0) continue;  // the flag wins
    if (absl::Status s = setters.at(flag)(value); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("environment ETCD_", flag, ": ", s.message()));
    }
    config.from_environment.push_back(flag);
  }
  for (const auto& [flag, value] : given) {
    if (absl::Status s = setters.at(flag)(value); !s.ok()) return s;
  }

  // etcd's defaults, on 127.0.0.1.
  if (config.data_dir.empty()) config.data_dir = config.name + ".kvnode";
  if (config.listen_client_urls.empty()) {
    config.listen_client_urls = *ParseUrls("listen-client-urls", "http://127.0.0.1:2379");
  }
  if (config.advertise_client_urls.empty()) {
    config.advertise_client_urls = config.listen_client_urls;
  }
  if (config.listen_peer_urls.empty()) {
    config.listen_peer_urls = *ParseUrls("listen-peer-urls", "http://127.0.0.1:2380");
  }
  if (config.initial_advertise_peer_urls.empty()) {
    config.initial_advertise_peer_urls = config.listen_peer_urls;
  }
  if (initial_cluster.empty()) {
    initial_cluster = absl::StrCat(config.name, "=",
                                   absl::StrJoin(Texts(config.initial_advertise_peer_urls), ","));
  }
  for (absl::string_view part : absl::StrSplit(initial_cluster, ',', absl::SkipWhitespace())) {
    const size_t eq = part.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--initial-cluster: \"", part, "\" is not name=peer-url"));
    }
    auto url = ParseUrl(std::string(part.substr(eq + 1)));
    if (!url.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--initial-cluster: ", url.status().message()));
    }
    config.initial_cluster[std::string(part.substr(0, eq))].push_back(url->text);
  }
  bool dials_tls_peer = AnyTls(config.initial_advertise_peer_urls);
  for (const auto& [name, urls] : config.initial_cluster) {
    for (const std::string& text : urls)
      dials_tls_peer |= absl::StartsWithIgnoreCase(text, "https://");
  }
  if (absl::Status s = CheckTls("client", "", config.client_tls, config.listen_client_urls,
                                /*dials_tls=*/false);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckTls("peer", "peer-", config.peer_tls, config.listen_peer_urls, dials_tls_peer);
      !s.ok()) {
    return s;
  }
  if (config.election_timeout_ms < 5 * config.heartbeat_interval_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("--election-timeout[", config.election_timeout_ms,
                     "ms] should be at least 5 times --heartbeat-interval[",
                     config.heartbeat_interval_ms, "ms]"));
  }
  if (config.quota_backend_bytes > kMaxQuotaBackendBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--quota-backend-bytes=", config.quota_backend_bytes, " exceeds ",
                     kMaxQuotaBackendBytes, " (8 GiB)"));
  }
  if (config.quota_backend_bytes == 0) config.quota_backend_bytes = server::kDefaultQuotaBytes;
  // Checked only when the segment size is given: the default (64 MiB) takes any sensible
  // --max-request-bytes, and a larger one keeps working as before, one entry per segment.
  const bool segment_given =
      given.count("experimental-wal-segment-bytes") > 0 ||
      std::count(config.from_environment.begin(), config.from_environment.end(),
                 "experimental-wal-segment-bytes") > 0;
  if (segment_given &&
      config.wal_segment_bytes < config.max_request_bytes + kWalSegmentHeadroomBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--experimental-wal-segment-bytes=", config.wal_segment_bytes,
                     " cannot hold the largest request: want at least --max-request-bytes (",
                     config.max_request_bytes, ") + ", kWalSegmentHeadroomBytes, " = ",
                     config.max_request_bytes + kWalSegmentHeadroomBytes));
  }
  return config;
}

absl::Status VerifyBootstrap(const NodeConfig& config) {
  auto it = config.initial_cluster.find(config.name);
  if (it == config.initial_cluster.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--initial-cluster has no member named \"", config.name, "\" (--name)"));
  }
  std::set<std::string> cluster_urls(it->second.begin(), it->second.end());
  const std::vector<std::string> advertised = Texts(config.initial_advertise_peer_urls);
  if (cluster_urls != std::set<std::string>(advertised.begin(), advertised.end())) {
    return absl::InvalidArgumentError(
        absl::StrCat("--initial-cluster has ", config.name, "=", absl::StrJoin(it->second, ","),
                     " but --initial-advertise-peer-urls is ", absl::StrJoin(advertised, ",")));
  }
  return absl::OkStatus();
}

absl::StatusOr<RuntimeOptions> ToRuntimeOptions(const NodeConfig& config) {
  RuntimeOptions options;
  options.name = config.name;
  for (const Url& url : config.advertise_client_urls) options.client_urls.push_back(url.text);
  options.data_dir = config.data_dir;
  options.heartbeat_interval_ms = config.heartbeat_interval_ms;
  options.watch_progress_notify_interval_ms = config.watch_progress_notify_interval_ms;
  options.election_timeout_ms = config.election_timeout_ms;
  options.snapshot_count = config.snapshot_count;
  options.quota_backend_bytes = config.quota_backend_bytes;
  options.max_request_bytes = config.max_request_bytes;
  options.wal_segment_bytes = config.wal_segment_bytes;
  options.auth_token_ttl_seconds = config.auth_token_ttl_seconds;
  std::vector<raft::NodeId> ids;
  std::set<raft::NodeId> seen;
  for (const auto& [name, urls] : config.initial_cluster) {
    server::Member member;
    member.id = MemberIdOf(urls, config.initial_cluster_token);
    member.name = name;
    member.peer_urls = urls;
    if (!seen.insert(member.id).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--initial-cluster: two members share the peer URLs ", absl::StrJoin(urls, ",")));
    }
    ids.push_back(member.id);
    if (name == config.name) options.id = member.id;
    if (config.initial_cluster_state_new) options.founding.push_back(std::move(member));
  }
  // Derived from the founding members' ids, as etcd does; kvnode keeps it in the data directory
  // at the first boot, and the stored one wins at restarts.
  options.cluster_id = ClusterIdOf(ids);
  // A member joining an existing cluster learns its id and the cluster id from the cluster
  // (kvnode: Peer.members).
  if (!config.initial_cluster_state_new) {
    options.id = raft::kNoNode;
    options.cluster_id = 0;
  }
  return options;
}

std::string Usage() {
  return R"(usage: kvnode [flags]

A member of a strongly consistent key-value store, with etcd's flags and ETCD_* environment
variables (a flag given on the command line wins). With no flags: one member "default" on
127.0.0.1, clients on 2379, peers on 2380, data in ./default.kvnode.

  --name NAME                          human-readable name of this member (default "default")
  --data-dir DIR                       where the member keeps its data (default NAME.kvnode)
  --listen-client-urls URLS            client listeners (default http://127.0.0.1:2379)
  --advertise-client-urls URLS         client URLs told to the cluster (default: the listeners)
  --listen-peer-urls URLS              peer listeners (default http://127.0.0.1:2380)
  --initial-advertise-peer-urls URLS   this member's peer URLs (default: the peer listeners)
  --initial-cluster NAME=URL,...       the founding members (default NAME=peer URLs)
  --listen-metrics-urls URLS           listeners for /metrics, /health and the status page /
  --cert-file, --key-file FILE         PEM certificate and key of https:// client URLs
  --trusted-ca-file FILE               CA of client certificates
  --client-cert-auth                   require a client certificate from that CA; its CN is
                                       the user of requests without a token
  --peer-cert-file, --peer-key-file    the same for https:// peer URLs (also presented as
  --peer-trusted-ca-file FILE          this member's client certificate to its peers)
  --peer-client-cert-auth
  --initial-cluster-state new|existing new: found a cluster; existing: join one (default new)
  --initial-cluster-token TOKEN        tells clusters apart (default "etcd-cluster")
  --snapshot-count N                   applied entries between log compactions (default 100000)
  --heartbeat-interval MS              a Raft tick (default 100)
  --election-timeout MS                at least 5 heartbeats (default 1000)
  --experimental-watch-progress-notify-interval DURATION
                                       progress notifications to progress_notify watchers
                                       (default 10m0s)
  --quota-backend-bytes N              NOSPACE alarm above this (default 2 GiB, at most 8 GiB)
  --max-request-bytes N                largest client request (default 1572864)
  --experimental-wal-segment-bytes N   WAL segment size (default 67108864, etcd's 64 MiB);
                                       at least 8192 and --max-request-bytes + 4096; keep it
                                       across restarts
  --auth-token simple|jwt,OPTIONS      auth tokens (default simple); jwt takes
                                       priv-key=FILE,pub-key=FILE,sign-method=RS256|RS384|
                                       RS512|PS256|...|ES256|ES384|ES512|HS256|...,ttl=5m
  --auth-token-ttl SECONDS             simple tokens' TTL (default 300)
  --max-concurrent-streams N           gRPC streams per client connection (default 1000)
  --max-watchers-per-connection N      watchers per client connection, over all its watch
                                       streams (default 100000; 10000 per gRPC stream)
  --log-level debug|info|warn|error    (default info)
  --help, --version
)";
}

}  // namespace kvstore::node
