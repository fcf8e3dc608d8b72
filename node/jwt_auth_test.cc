// kvnode with etcd's --auth-token=jwt: etcdctl 3.4.23 --user works against it, the tokens are
// JWTs (three dot-separated parts, etcd's claims), a token one member issued is accepted by the
// others (JWT is stateless, unlike simple tokens), a tampered token is "invalid auth token" and
// one issued before an auth change "revision of auth store is old". Keys are generated here.
// Flag errors (a missing key file, bad options) stop kvnode at start with exit 2.

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "net/etcd/rpc.grpc.pb.h"
#include "node/crash_process.h"
#include "node/http_testing.h"

namespace kvstore::node {
namespace {

using crash::ChildProcess;
using crash::Clock;
using crash::SpawnOptions;

constexpr char kEtcdctl[] = "/usr/bin/etcdctl";

// An RSA key pair as PEM files in `dir`: priv.pem, pub.pem.
void WriteRsaKeys(const std::string& dir) {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  ASSERT_NE(key, nullptr);
  FILE* priv = std::fopen((dir + "/priv.pem").c_str(), "w");
  FILE* pub = std::fopen((dir + "/pub.pem").c_str(), "w");
  ASSERT_TRUE(priv != nullptr && pub != nullptr);
  EXPECT_EQ(PEM_write_PrivateKey(priv, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  EXPECT_EQ(PEM_write_PUBKEY(pub, key), 1);
  std::fclose(priv);
  std::fclose(pub);
  EVP_PKEY_free(key);
}

std::string JwtFlag(const std::string& dir) {
  return absl::StrCat("jwt,pub-key=", dir, "/pub.pem,priv-key=", dir,
                      "/priv.pem,sign-method=RS256,ttl=5m");
}

struct Member {
  std::string name;
  uint16_t client_port = 0;
  uint16_t peer_port = 0;
  std::unique_ptr<ChildProcess> process;
  std::string endpoint() const { return absl::StrCat("127.0.0.1:", client_port); }
};

class JwtClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/jwt_auth_test";
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ASSERT_NO_FATAL_FAILURE(WriteRsaKeys(dir_));
    std::vector<std::string> cluster;
    for (int i = 1; i <= 3; ++i) {
      Member m;
      m.name = absl::StrCat("n", i);
      m.client_port = testing::FreeLoopbackPort();
      m.peer_port = testing::FreeLoopbackPort();
      cluster.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
      members_.push_back(std::move(m));
    }
    for (Member& m : members_) {
      const std::string client_url = absl::StrCat("http://", m.endpoint());
      const std::string peer_url = absl::StrCat("http://127.0.0.1:", m.peer_port);
      SpawnOptions options;
      options.args = {"--name",
                      m.name,
                      "--data-dir",
                      absl::StrCat(dir_, "/", m.name),
                      "--listen-client-urls",
                      client_url,
                      "--advertise-client-urls",
                      client_url,
                      "--listen-peer-urls",
                      peer_url,
                      "--initial-advertise-peer-urls",
                      peer_url,
                      "--initial-cluster",
                      absl::StrJoin(cluster, ","),
                      "--initial-cluster-token",
                      "jwt-test",
                      "--heartbeat-interval",
                      "50",
                      "--election-timeout",
                      "500",
                      "--auth-token",
                      JwtFlag(dir_),
                      "--log-level",
                      "error"};
      auto child = ChildProcess::Spawn(crash::RunfilePath("node/kvnode"), options);
      ASSERT_TRUE(child.ok()) << child.status();
      m.process = std::move(*child);
    }
  }

  // etcdctl against one member; its output (stdout and stderr) and exit code.
  testing::CommandResult Etcdctl(const Member& m, std::vector<std::string> args) {
    std::vector<std::string> argv = {kEtcdctl, "--endpoints=" + m.endpoint(), "--dial-timeout=2s",
                                     "--command-timeout=5s"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = testing::RunCommand(argv, "", 15000);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : testing::CommandResult{};
  }

  std::unique_ptr<etcdserverpb::KV::Stub> Kv(const Member& m) {
    return etcdserverpb::KV::NewStub(
        grpc::CreateChannel(m.endpoint(), grpc::InsecureChannelCredentials()));
  }

  // A range as the user of `token`, sent as the call's "token" metadata (etcd's clients) and/or
  // its "authorization" metadata (what etcd's JSON gateway makes of an Authorization header).
  grpc::Status Range(const Member& m, const std::string& token, const std::string& key,
                     etcdserverpb::RangeResponse* response, const std::string& authorization = "") {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!token.empty()) context.AddMetadata("token", token);
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    return Kv(m)->Range(&context, request, response);
  }

  // Opens a Watch stream as the user of `token` (its "token" metadata) and asks for a watch on
  // `key`: its responses up to the one that cancels it or carries events. Once it is created,
  // a put of `key` as the user of `put_token` (if given) makes the event.
  std::vector<etcdserverpb::WatchResponse> WatchAs(const Member& m, const std::string& token,
                                                   const std::string& key,
                                                   const std::string& put_token = "") {
    auto stub = etcdserverpb::Watch::NewStub(
        grpc::CreateChannel(m.endpoint(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!token.empty()) context.AddMetadata("token", token);
    auto stream = stub->Watch(&context);
    etcdserverpb::WatchRequest request;
    request.mutable_create_request()->set_key(key);
    std::vector<etcdserverpb::WatchResponse> responses;
    EXPECT_TRUE(stream->Write(request));
    etcdserverpb::WatchResponse response;
    while (stream->Read(&response)) {  // bounded by the call's deadline
      responses.push_back(response);
      if (response.canceled() || response.events_size() > 0) break;
      if (!response.created() || put_token.empty()) continue;
      grpc::ClientContext put_context;
      put_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      put_context.AddMetadata("token", put_token);
      etcdserverpb::PutRequest put;
      put.set_key(key);
      put.set_value("watched");
      etcdserverpb::PutResponse put_response;
      grpc::Status put_status = Kv(m)->Put(&put_context, put, &put_response);
      EXPECT_TRUE(put_status.ok()) << put_status.error_message();
    }
    context.TryCancel();
    return responses;
  }

  std::string Authenticate(const Member& m, const std::string& name, const std::string& password) {
    auto auth = etcdserverpb::Auth::NewStub(
        grpc::CreateChannel(m.endpoint(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    etcdserverpb::AuthenticateRequest request;
    request.set_name(name);
    request.set_password(password);
    etcdserverpb::AuthenticateResponse response;
    grpc::Status status = auth->Authenticate(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.token();
  }

  std::string dir_;
  std::vector<Member> members_;
};

TEST_F(JwtClusterTest, EtcdctlUserWorksAndAnyMemberAcceptsAnotherMembersToken) {
  // The cluster serves (a leader is elected) before auth is turned on. The loop ends at the first
  // success; 30 s because three ASan-built members beside CI's compiles once took more than 15.
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
  testing::CommandResult put;
  do {
    put = Etcdctl(members_[0], {"put", "k", "v"});
  } while (put.exit_code != 0 && Clock::now() < deadline);
  ASSERT_EQ(put.exit_code, 0) << put.output;

  auto root = Etcdctl(members_[0], {"user", "add", "root", "--new-user-password=rootpw"});
  ASSERT_EQ(root.exit_code, 0) << root.output;
  auto enable = Etcdctl(members_[0], {"auth", "enable"});
  ASSERT_EQ(enable.exit_code, 0) << enable.output;
  // etcdctl grants root the root role and tries again (a warning line before).
  EXPECT_TRUE(absl::EndsWith(enable.output, "Authentication Enabled\n")) << enable.output;

  // etcdctl --user authenticates (a JWT comes back) and uses the token on every member.
  for (const Member& m : members_) {
    auto get = Etcdctl(m, {"--user=root:rootpw", "get", "k"});
    EXPECT_EQ(get.exit_code, 0) << m.name << ": " << get.output;
    EXPECT_EQ(get.output, "k\nv\n") << m.name;
  }
  auto put_as_root = Etcdctl(members_[1], {"--user=root:rootpw", "put", "k2", "v2"});
  EXPECT_EQ(put_as_root.output, "OK\n");
  auto wrong = Etcdctl(members_[2], {"--user=root:wrong", "get", "k"});
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.output.find("etcdserver: authentication failed, invalid user ID or password"),
            std::string::npos)
      << wrong.output;
  auto anonymous = Etcdctl(members_[2], {"get", "k"});
  EXPECT_NE(anonymous.exit_code, 0);
  EXPECT_NE(anonymous.output.find("etcdserver: user name is empty"), std::string::npos)
      << anonymous.output;

  // The token is a JWT with etcd's claims.
  const std::string token = Authenticate(members_[0], "root", "rootpw");
  const std::vector<std::string> parts = absl::StrSplit(token, '.');
  ASSERT_EQ(parts.size(), 3u) << token;
  std::string header;
  std::string claims;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[0], &header));
  ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[1], &claims));
  EXPECT_EQ(header, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
  EXPECT_NE(claims.find("\"username\":\"root\""), std::string::npos) << claims;
  EXPECT_NE(claims.find("\"revision\":"), std::string::npos) << claims;
  EXPECT_NE(claims.find("\"exp\":"), std::string::npos) << claims;

  // Issued by n1, accepted by n2 and n3: no member holds token state.
  for (const Member& m : members_) {
    etcdserverpb::RangeResponse response;
    grpc::Status status = Range(m, token, "k", &response);
    ASSERT_TRUE(status.ok()) << m.name << ": " << status.error_message();
    ASSERT_EQ(response.kvs_size(), 1);
    EXPECT_EQ(response.kvs(0).value(), "v");
  }

  // A tampered signature, or no token.
  std::string tampered = token;
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  etcdserverpb::RangeResponse ignored;
  grpc::Status refused = Range(members_[1], tampered, "k", &ignored);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(refused.error_message(), "etcdserver: invalid auth token");
  refused = Range(members_[1], "not.a.jwt", "k", &ignored);
  EXPECT_EQ(refused.error_message(), "etcdserver: invalid auth token");

  // Any auth change makes older tokens old (their revision), on every member, as in etcd.
  auto alice = Etcdctl(
      members_[0], {"--user=root:rootpw", "user", "add", "alice", "--new-user-password=alicepw"});
  ASSERT_EQ(alice.exit_code, 0) << alice.output;
  refused = Range(members_[2], token, "k", &ignored);
  EXPECT_EQ(refused.error_message(), "etcdserver: revision of auth store is old");
  const std::string fresh = Authenticate(members_[2], "root", "rootpw");
  EXPECT_TRUE(Range(members_[0], fresh, "k", &ignored).ok());

  // etcd's AuthInfoFromCtx takes "authorization" when there is no "token"; "token" wins.
  EXPECT_TRUE(Range(members_[1], "", "k", &ignored, fresh).ok());
  refused = Range(members_[1], "", "k", &ignored, tampered);
  EXPECT_EQ(refused.error_message(), "etcdserver: invalid auth token");
  EXPECT_TRUE(Range(members_[1], fresh, "k", &ignored, tampered).ok());
  refused = Range(members_[1], tampered, "k", &ignored, fresh);
  EXPECT_EQ(refused.error_message(), "etcdserver: invalid auth token");

  // A watch is checked when it is created, as its stream's user: alice holds no role, so hers
  // is created and canceled at once with etcd's reason; root's sees the next put. Without a
  // token the stream's watch is refused too.
  const std::string alice_token = Authenticate(members_[1], "alice", "alicepw");
  for (const std::string& as : {alice_token, std::string()}) {
    std::vector<etcdserverpb::WatchResponse> denied = WatchAs(members_[1], as, "k");
    ASSERT_FALSE(denied.empty());
    EXPECT_TRUE(denied.back().canceled()) << denied.back().DebugString();
    EXPECT_EQ(denied.back().events_size(), 0);
  }
  std::vector<etcdserverpb::WatchResponse> denied = WatchAs(members_[1], alice_token, "k");
  ASSERT_FALSE(denied.empty());
  // etcd 3.4.23's answer: one response, watch id -1, created and canceled, Go's error text.
  ASSERT_EQ(denied.size(), 1u);
  EXPECT_EQ(denied[0].watch_id(), -1);
  EXPECT_TRUE(denied[0].created());
  EXPECT_EQ(denied[0].cancel_reason(),
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied");
  std::vector<etcdserverpb::WatchResponse> allowed = WatchAs(members_[1], fresh, "k", fresh);
  ASSERT_EQ(allowed.size(), 2u);
  EXPECT_TRUE(allowed[0].created());
  EXPECT_FALSE(allowed[0].canceled());
  ASSERT_EQ(allowed[1].events_size(), 1) << allowed[1].DebugString();
  EXPECT_EQ(allowed[1].events(0).kv().value(), "watched");

  // A snapshot download is root only (etcd's authMaintenanceServer.Snapshot, refused with the
  // auth store's own error): over gRPC (etcdctl snapshot save) and the JSON gateway (its
  // Authorization header is the token).
  const std::string denied_file = dir_ + "/alice.db";
  auto alice_snapshot =
      Etcdctl(members_[1], {"--user=alice:alicepw", "snapshot", "save", denied_file});
  EXPECT_NE(alice_snapshot.exit_code, 0) << alice_snapshot.output;
  EXPECT_NE(alice_snapshot.output.find("auth: permission denied"), std::string::npos)
      << alice_snapshot.output;
  EXPECT_FALSE(std::filesystem::exists(denied_file));
  auto anonymous_snapshot = Etcdctl(members_[1], {"snapshot", "save", denied_file});
  EXPECT_NE(anonymous_snapshot.exit_code, 0) << anonymous_snapshot.output;
  EXPECT_NE(anonymous_snapshot.output.find("auth: user name is empty"), std::string::npos)
      << anonymous_snapshot.output;
  const std::string root_file = dir_ + "/root.db";
  auto root_snapshot = Etcdctl(members_[1], {"--user=root:rootpw", "snapshot", "save", root_file});
  EXPECT_EQ(root_snapshot.exit_code, 0) << root_snapshot.output;
  EXPECT_NE(root_snapshot.output.find("Snapshot saved at " + root_file), std::string::npos)
      << root_snapshot.output;
  EXPECT_GT(std::filesystem::exists(root_file) ? std::filesystem::file_size(root_file) : 0, 0u);
  auto gateway_snapshot = [&](const std::string& as) {
    std::vector<std::string> argv = {"/usr/bin/curl", "-sS", "--max-time", "10", "-X",
                                     "POST",          "-d",  "{}"};
    if (!as.empty()) argv.insert(argv.end(), {"-H", "Authorization: " + as});
    argv.push_back(absl::StrCat("http://", members_[2].endpoint(), "/v3/maintenance/snapshot"));
    auto result = testing::RunCommand(argv, "", 15000);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->output : std::string();
  };
  const std::string gateway_denied = gateway_snapshot(alice_token);
  EXPECT_NE(gateway_denied.find("auth: permission denied"), std::string::npos)
      << gateway_denied.substr(0, 300);
  EXPECT_EQ(gateway_denied.find("\"blob\""), std::string::npos) << gateway_denied.substr(0, 300);
  const std::string gateway_root = gateway_snapshot(fresh);
  EXPECT_NE(gateway_root.find("\"blob\""), std::string::npos) << gateway_root.substr(0, 300);
}

// etcd's checkLeaseTimeToLive (3.4.26, CVE-2023-32082): with auth on, `lease timetolive` needs
// a user and read permission on every key attached to the lease, with or without --keys, on the
// leader and on a follower (which checks before it forwards; the leader checks the forwarded
// token again). Before, anyone could list the keys of any lease.
TEST_F(JwtClusterTest, LeaseTimeToLiveNeedsReadOnEveryAttachedKey) {
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);  // as above
  testing::CommandResult put;
  do {
    put = Etcdctl(members_[0], {"put", "k", "v"});
  } while (put.exit_code != 0 && Clock::now() < deadline);
  ASSERT_EQ(put.exit_code, 0) << put.output;
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"user", "add", "root", "--new-user-password=rootpw"},
           {"user", "grant-role", "root", "root"},
           {"user", "add", "alice", "--new-user-password=alicepw"},
           {"role", "add", "reader"},
           {"role", "grant-permission", "reader", "read", "app/", "--prefix=true"},
           {"user", "grant-role", "alice", "reader"},
       }) {
    auto done = Etcdctl(members_[0], args);
    ASSERT_EQ(done.exit_code, 0) << absl::StrJoin(args, " ") << ": " << done.output;
  }
  // Lease `mixed` holds app/x and secret; lease `readable` only app/y.
  auto grant = [&]() {
    auto granted = Etcdctl(members_[0], {"lease", "grant", "600"});
    EXPECT_EQ(granted.exit_code, 0) << granted.output;
    std::vector<std::string> words = absl::StrSplit(granted.output, ' ');
    EXPECT_GE(words.size(), 2u) << granted.output;  // "lease ID granted with TTL(600s)"
    return words.size() >= 2 ? words[1] : std::string();
  };
  const std::string mixed = grant();
  const std::string readable = grant();
  ASSERT_FALSE(mixed.empty());
  ASSERT_FALSE(readable.empty());
  for (auto [key, lease] : {std::pair{"app/x", mixed}, {"secret", mixed}, {"app/y", readable}}) {
    auto attached = Etcdctl(members_[0], {"put", "--lease=" + lease, key, "v"});
    ASSERT_EQ(attached.exit_code, 0) << attached.output;
  }
  auto open = Etcdctl(members_[1], {"lease", "timetolive", mixed, "--keys"});
  ASSERT_EQ(open.exit_code, 0) << open.output;
  EXPECT_NE(open.output.find("attached keys([app/x secret])"), std::string::npos) << open.output;
  ASSERT_EQ(Etcdctl(members_[0], {"auth", "enable"}).exit_code, 0);

  // Every member: the leader serves it, the followers check and forward.
  for (const Member& m : members_) {
    for (bool keys : {true, false}) {
      std::vector<std::string> ttl = {"lease", "timetolive", mixed};
      if (keys) ttl.push_back("--keys");
      auto anonymous = Etcdctl(m, ttl);
      EXPECT_NE(anonymous.exit_code, 0) << m.name << ": " << anonymous.output;
      EXPECT_NE(anonymous.output.find("etcdserver: user name is empty"), std::string::npos)
          << m.name << ": " << anonymous.output;
      EXPECT_EQ(anonymous.output.find("secret"), std::string::npos) << anonymous.output;
      ttl.insert(ttl.begin(), "--user=alice:alicepw");
      auto alice = Etcdctl(m, ttl);
      EXPECT_NE(alice.exit_code, 0) << m.name << ": " << alice.output;
      EXPECT_NE(alice.output.find("etcdserver: permission denied"), std::string::npos)
          << m.name << ": " << alice.output;
      EXPECT_EQ(alice.output.find("secret"), std::string::npos) << alice.output;
    }
    auto alice = Etcdctl(m, {"--user=alice:alicepw", "lease", "timetolive", readable, "--keys"});
    EXPECT_EQ(alice.exit_code, 0) << m.name << ": " << alice.output;
    EXPECT_NE(alice.output.find("attached keys([app/y])"), std::string::npos)
        << m.name << ": " << alice.output;
    auto root = Etcdctl(m, {"--user=root:rootpw", "lease", "timetolive", mixed, "--keys"});
    EXPECT_EQ(root.exit_code, 0) << m.name << ": " << root.output;
    EXPECT_NE(root.output.find("attached keys([app/x secret])"), std::string::npos)
        << m.name << ": " << root.output;
  }
}

// `args` given to kvnode: it exits 2 at once, saying `why`.
void ExpectFlagError(std::vector<std::string> args, const std::string& why) {
  SpawnOptions options;
  options.args = std::move(args);
  auto child = ChildProcess::Spawn(crash::RunfilePath("node/kvnode"), options);
  ASSERT_TRUE(child.ok()) << child.status();
  auto exit = (*child)->Wait(Clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->Exited(2)) << exit->Describe();
  EXPECT_NE((*child)->stderr_text().find(why), std::string::npos) << (*child)->stderr_text();
}

TEST(JwtFlagTest, MissingKeyFilesAndBadOptionsStopKvnodeWithExitTwo) {
  const std::string dir = ::testing::TempDir() + "/jwt_flags";
  const std::string data = dir + "/data";
  std::filesystem::create_directories(dir);
  ExpectFlagError({"--data-dir", data, "--auth-token",
                   "jwt,priv-key=" + dir + "/missing.pem,sign-method=RS256"},
                  "missing.pem: cannot read: No such file or directory");
  std::ofstream(dir + "/garbage.pem") << "not a key\n";
  ExpectFlagError({"--data-dir", data, "--auth-token",
                   "jwt,priv-key=" + dir + "/garbage.pem,sign-method=RS256"},
                  "priv-key: not a PEM private key");
  ExpectFlagError({"--data-dir", data, "--auth-token", "jwt,priv-key=/x,sign-method=RS1"},
                  "invalid auth options: unknown sign-method \"RS1\"");
  ExpectFlagError({"--data-dir", data, "--auth-token", "opaque"},
                  "invalid auth options: unknown token type \"opaque\"");
}

}  // namespace
}  // namespace kvstore::node
