// kvnode's flags: etcd's names, defaults and environment variables, and clear errors.

#include "node/config.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvstore::node {
namespace {

TEST(ConfigTest, NoFlagsIsEtcdsEmbeddedDefaultOnLoopback) {
  auto config = ParseConfig({}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "default");
  EXPECT_EQ(config->data_dir, "default.kvnode");
  ASSERT_EQ(config->listen_client_urls.size(), 1u);
  EXPECT_EQ(config->listen_client_urls[0].HostPort(), "127.0.0.1:2379");
  EXPECT_EQ(config->listen_peer_urls[0].HostPort(), "127.0.0.1:2380");
  EXPECT_EQ(config->initial_cluster.at("default"),
            std::vector<std::string>{"http://127.0.0.1:2380"});
  auto options = ToRuntimeOptions(*config);
  ASSERT_TRUE(options.ok());
  ASSERT_EQ(options->founding.size(), 1u);
  EXPECT_EQ(options->founding[0].id, options->id);
  EXPECT_NE(options->id, 0u);
}

TEST(ConfigTest, ThreeMemberClusterFromFlagsAndEnvironment) {
  const std::vector<std::string> args = {
      "--name",
      "n2",
      "--initial-advertise-peer-urls=http://127.0.0.1:12380",
      "--listen-peer-urls",
      "http://127.0.0.1:12380",
      "--listen-client-urls=http://127.0.0.1:12379",
      "--initial-cluster",
      "n1=http://127.0.0.1:11380,n2=http://127.0.0.1:12380,n3=http://127.0.0.1:13380"};
  const std::vector<std::string> env = {"ETCD_INITIAL_CLUSTER_TOKEN=tok", "ETCD_NAME=ignored",
                                        "ETCD_HEARTBEAT_INTERVAL=50", "PATH=/bin"};
  auto config = ParseConfig(args, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "n2");  // the flag wins over ETCD_NAME
  EXPECT_EQ(config->initial_cluster_token, "tok");
  EXPECT_EQ(config->heartbeat_interval_ms, 50);
  EXPECT_EQ(config->data_dir, "n2.kvnode");
  auto options = ToRuntimeOptions(*config);
  ASSERT_TRUE(options.ok());
  ASSERT_EQ(options->founding.size(), 3u);
  // Every member computes the same ids and cluster id from the same flags.
  auto other = ParseConfig(
      {"--name=n1", "--initial-advertise-peer-urls=http://127.0.0.1:11380", "--initial-cluster",
       "n1=http://127.0.0.1:11380,n2=http://127.0.0.1:12380,"
       "n3=http://127.0.0.1:13380"},
      {"ETCD_INITIAL_CLUSTER_TOKEN=tok"});
  ASSERT_TRUE(other.ok()) << other.status();
  auto other_options = ToRuntimeOptions(*other);
  ASSERT_TRUE(other_options.ok());
  EXPECT_EQ(other_options->cluster_id, options->cluster_id);
  EXPECT_NE(other_options->id, options->id);
  EXPECT_NE(options->cluster_id, 0u);
  // The cluster id covers the founding members, as etcd's does: a member given a wrong URL for
  // another member, or another token, derives another cluster id (and its peers refuse it).
  auto wrong = ParseConfig(
      {"--name=n1", "--initial-advertise-peer-urls=http://127.0.0.1:11380", "--initial-cluster",
       "n1=http://127.0.0.1:11380,n2=http://127.0.0.1:12381,"
       "n3=http://127.0.0.1:13380"},
      {"ETCD_INITIAL_CLUSTER_TOKEN=tok"});
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  auto wrong_options = ToRuntimeOptions(*wrong);
  ASSERT_TRUE(wrong_options.ok());
  EXPECT_NE(wrong_options->cluster_id, options->cluster_id);
  EXPECT_EQ(wrong_options->id, other_options->id);
  auto other_token = ParseConfig(
      {"--name=n1", "--initial-advertise-peer-urls=http://127.0.0.1:11380", "--initial-cluster",
       "n1=http://127.0.0.1:11380,n2=http://127.0.0.1:12380,"
       "n3=http://127.0.0.1:13380"},
      {"ETCD_INITIAL_CLUSTER_TOKEN=tok2"});
  ASSERT_TRUE(other_token.ok()) << other_token.status();
  EXPECT_NE(ToRuntimeOptions(*other_token)->cluster_id, options->cluster_id);
  // A joiner learns the cluster id from the cluster (kvnode): unknown here.
  auto joiner = ParseConfig(
      {"--name=n4", "--initial-advertise-peer-urls=http://127.0.0.1:14380", "--initial-cluster",
       "n1=http://127.0.0.1:11380,n4=http://127.0.0.1:14380", "--initial-cluster-state=existing"},
      {});
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  EXPECT_EQ(ToRuntimeOptions(*joiner)->cluster_id, 0u);
}

TEST(ConfigTest, BadFlagsAreClearErrors) {
  auto expect_error = [](std::vector<std::string> args, const std::string& needle) {
    auto config = ParseConfig(args, {});
    ASSERT_FALSE(config.ok()) << needle;
    EXPECT_TRUE(absl::StrContains(config.status().message(), needle)) << config.status();
  };
  expect_error({"--nope=1"}, "unknown flag --nope");
  expect_error({"--heartbeat-interval=abc"}, "--heartbeat-interval=abc");
  expect_error({"--heartbeat-interval=300"}, "at least 5 times");
  expect_error({"--listen-client-urls=127.0.0.1:2379"}, "no scheme");
  expect_error({"--listen-client-urls=https://127.0.0.1:2379"},
               "TLS key/cert (--cert-file, --key-file) must be provided for client url "
               "https://127.0.0.1:2379 with HTTPS scheme");
  expect_error({"--listen-client-urls=ftp://127.0.0.1:2379"}, "want http or https");
  expect_error({"--initial-cluster-state=maybe"}, "new");
  expect_error({"--quota-backend-bytes=9000000000"}, "8 GiB");
  expect_error({"--log-level=loud"}, "unknown log level");
  expect_error({"--name"}, "needs a value");
  expect_error({"stray"}, "unexpected argument");
}

// The per-connection stream and watcher limits: etcd's --max-concurrent-streams (kvnode's default
// is bounded, etcd's is 2^32-1) and kvnode's --max-watchers-per-connection, from flags or the
// environment, documented in --help; zero is refused.
TEST(ConfigTest, PerConnectionLimits) {
  auto defaults = ParseConfig({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->max_concurrent_streams, 1000u);
  EXPECT_EQ(defaults->max_watchers_per_connection, 100000u);
  auto given = ParseConfig({"--max-concurrent-streams=8", "--max-watchers-per-connection", "5"},
                           {"ETCD_MAX_WATCHERS_PER_CONNECTION=7"});
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->max_concurrent_streams, 8u);
  EXPECT_EQ(given->max_watchers_per_connection, 5u);  // the flag wins over the environment
  auto from_env = ParseConfig({}, {"ETCD_MAX_WATCHERS_PER_CONNECTION=7"});
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->max_watchers_per_connection, 7u);
  auto zero = ParseConfig({"--max-watchers-per-connection=0"}, {});
  ASSERT_FALSE(zero.ok());
  EXPECT_TRUE(absl::StrContains(zero.status().message(),
                                "--max-watchers-per-connection=0: want an integer of at least 1"))
      << zero.status();
  EXPECT_TRUE(absl::StrContains(Usage(), "--max-watchers-per-connection N"));
  EXPECT_TRUE(absl::StrContains(Usage(), "--max-concurrent-streams N"));
}

// --experimental-wal-segment-bytes (kvnode's, etcd has no flag): 64 MiB by default, from the flag
// or ETCD_EXPERIMENTAL_WAL_SEGMENT_BYTES (the flag wins), handed to the runtime; below 8 KiB, not
// a number, or, when given, too small for --max-request-bytes plus the headroom: refused with the
// flag named (kvnode exits 2).
TEST(ConfigTest, WalSegmentBytes) {
  auto defaults = ParseConfig({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->wal_segment_bytes, uint64_t{64} << 20);
  EXPECT_EQ(ToRuntimeOptions(*defaults)->wal_segment_bytes, uint64_t{64} << 20);
  // The default segment takes a --max-request-bytes above it: the bound is the given segment's.
  EXPECT_TRUE(ParseConfig({"--max-request-bytes=100000000"}, {}).ok());

  auto given =
      ParseConfig({"--experimental-wal-segment-bytes", "65536", "--max-request-bytes=32768"},
                  {"ETCD_EXPERIMENTAL_WAL_SEGMENT_BYTES=131072"});
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->wal_segment_bytes, 65536u);  // the flag wins over the environment
  auto runtime = ToRuntimeOptions(*given);
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  EXPECT_EQ(runtime->wal_segment_bytes, 65536u);

  auto from_env = ParseConfig(
      {}, {"ETCD_EXPERIMENTAL_WAL_SEGMENT_BYTES=16384", "ETCD_MAX_REQUEST_BYTES=12288"});
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->wal_segment_bytes, 16384u);
  EXPECT_EQ(from_env->from_environment,
            (std::vector<std::string>{"experimental-wal-segment-bytes", "max-request-bytes"}));
  // Exactly the bound: --max-request-bytes + 4096.
  EXPECT_TRUE(
      ParseConfig({"--experimental-wal-segment-bytes=16384", "--max-request-bytes=12288"}, {})
          .ok());

  auto refused = [](std::vector<std::string> args, std::vector<std::string> env,
                    const std::string& needle) {
    auto config = ParseConfig(args, env);
    ASSERT_FALSE(config.ok()) << needle;
    EXPECT_TRUE(absl::StrContains(config.status().message(), needle)) << config.status();
  };
  refused({"--experimental-wal-segment-bytes=8191", "--max-request-bytes=1"}, {},
          "--experimental-wal-segment-bytes=8191: want an integer of at least 8192");
  refused({"--experimental-wal-segment-bytes=0"}, {}, "want an integer of at least 8192");
  refused({"--experimental-wal-segment-bytes=-1"}, {}, "want an integer of at least 8192");
  refused({"--experimental-wal-segment-bytes=64KiB"}, {}, "want an integer of at least 8192");
  refused({"--experimental-wal-segment-bytes"}, {}, "needs a value");
  refused({}, {"ETCD_EXPERIMENTAL_WAL_SEGMENT_BYTES=4096"},
          "environment ETCD_experimental-wal-segment-bytes: --experimental-wal-segment-bytes=4096");
  // With the default --max-request-bytes (1.5 MiB), a 1 MiB segment cannot hold a request.
  refused({"--experimental-wal-segment-bytes=1048576"}, {},
          "--experimental-wal-segment-bytes=1048576 cannot hold the largest request: want at "
          "least --max-request-bytes (1572864) + 4096 = 1576960");
  refused({"--experimental-wal-segment-bytes=16383", "--max-request-bytes=12288"}, {},
          "want at least --max-request-bytes (12288) + 4096 = 16384");
  refused({}, {"ETCD_EXPERIMENTAL_WAL_SEGMENT_BYTES=16384"}, "cannot hold the largest request");
  EXPECT_TRUE(absl::StrContains(Usage(), "--experimental-wal-segment-bytes N"));
}

// --initial-cluster must name this member with its advertised peer URLs at the first boot only
// (VerifyBootstrap, as etcd's): parsing accepts any well-formed --initial-cluster, since a
// restart ignores it (node:restart_identity_test runs both with real processes).
TEST(ConfigTest, BootstrapChecksAreSeparateFromParsing) {
  auto verify_error = [](std::vector<std::string> args, const std::string& needle) {
    auto config = ParseConfig(args, {});
    ASSERT_TRUE(config.ok()) << config.status();
    absl::Status verified = VerifyBootstrap(*config);
    ASSERT_FALSE(verified.ok()) << needle;
    EXPECT_TRUE(absl::StrContains(verified.message(), needle)) << verified;
  };
  verify_error({"--name=a", "--initial-cluster=b=http://127.0.0.1:2380"}, "no member named");
  verify_error({"--initial-cluster=default=http://127.0.0.1:9999"}, "initial-advertise-peer-urls");
  auto config = ParseConfig({}, {});
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(VerifyBootstrap(*config).ok());
}

// Certificates made at test time (net/testing/make_certs.sh), once per test binary.
std::string CertDir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string d = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/config_test_certs");
    EXPECT_EQ(
        std::system(absl::StrCat("bash net/testing/make_certs.sh ", d, " >/dev/null 2>&1").c_str()),
        0);
    return d;
  }();
  return dir;
}

TEST(ConfigTest, TlsFlagsWithEtcdsNamesAndEnvironment) {
  const std::string d = CertDir();
  const std::vector<std::string> args = {"--listen-client-urls=https://127.0.0.1:2379",
                                         "--cert-file=" + d + "/server.crt",
                                         "--key-file",
                                         d + "/server.key",
                                         "--client-cert-auth",  // a bare boolean takes no value
                                         "--trusted-ca-file=" + d + "/ca.crt",
                                         "--listen-peer-urls=https://127.0.0.1:2380",
                                         "--initial-advertise-peer-urls=https://127.0.0.1:2380"};
  const std::vector<std::string> env = {
      "ETCD_PEER_CERT_FILE=" + d + "/server.crt", "ETCD_PEER_KEY_FILE=" + d + "/server.key",
      "ETCD_PEER_TRUSTED_CA_FILE=" + d + "/ca.crt", "ETCD_PEER_CLIENT_CERT_AUTH=true"};
  auto config = ParseConfig(args, env);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->listen_client_urls[0].tls());
  EXPECT_EQ(config->client_tls.cert_file, d + "/server.crt");
  EXPECT_EQ(config->client_tls.key_file, d + "/server.key");
  EXPECT_EQ(config->client_tls.trusted_ca_file, d + "/ca.crt");
  EXPECT_TRUE(config->client_tls.client_cert_auth);
  EXPECT_EQ(config->peer_tls.cert_file, d + "/server.crt");
  EXPECT_TRUE(config->peer_tls.client_cert_auth);
  EXPECT_EQ(config->initial_cluster.at("default"),
            std::vector<std::string>{"https://127.0.0.1:2380"});
  auto off = ParseConfig({"--client-cert-auth=false"}, {});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->client_tls.client_cert_auth);
}

TEST(ConfigTest, BadTlsFlagsAreClearErrors) {
  const std::string d = CertDir();
  auto expect_error = [](std::vector<std::string> args, const std::string& needle) {
    auto config = ParseConfig(args, {});
    ASSERT_FALSE(config.ok()) << needle;
    EXPECT_TRUE(absl::StrContains(config.status().message(), needle)) << config.status();
  };
  const std::string https = "--listen-client-urls=https://127.0.0.1:2379";
  expect_error({https, "--cert-file=" + d + "/server.crt"}, "must be provided");
  expect_error({https, "--cert-file=/nonexistent/server.crt", "--key-file=" + d + "/server.key"},
               "client TLS: cannot read certificate file \"/nonexistent/server.crt\": No such "
               "file or directory");
  expect_error({https, "--cert-file=" + d + "/server.crt", "--key-file=" + d + "/ca.crt"},
               "client TLS: key file \"" + d + "/ca.crt\" holds no unencrypted PEM private key");
  expect_error({https, "--cert-file=" + d + "/server.key", "--key-file=" + d + "/server.key"},
               "holds no PEM certificate");
  expect_error({https, "--cert-file=" + d + "/server.crt", "--key-file=" + d + "/expired.key"},
               "does not match certificate file");
  expect_error({https, "--cert-file=" + d + "/server.crt", "--key-file=" + d + "/server.key",
                "--client-cert-auth"},
               "client TLS: client certificate authentication needs a trusted CA file");
  expect_error({"--client-cert-auth=maybe"}, "--client-cert-auth=maybe: want true or false");
  expect_error({"--listen-peer-urls=https://127.0.0.1:2380"},
               "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url "
               "https://127.0.0.1:2380 with HTTPS scheme");
  expect_error({"--peer-cert-file=" + d + "/server.crt"},
               "peer TLS: a certificate file needs its key file");
}

}  // namespace
}  // namespace kvstore::node
