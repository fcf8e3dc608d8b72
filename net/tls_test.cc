#include "net/tls.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"

namespace kvstore::net {
namespace {

// Certificates made once per test binary by net/testing/make_certs.sh.
const std::string& CertDir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string d = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/tls_test_certs");
    const std::string command =
        absl::StrCat("bash net/testing/make_certs.sh ", d, " alice >/dev/null 2>&1");
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    return d;
  }();
  return dir;
}

std::string Path(const std::string& name) { return absl::StrCat(CertDir(), "/", name); }

TlsFiles ServerFiles(bool client_cert_auth) {
  TlsFiles files;
  files.cert_file = Path("server.crt");
  files.key_file = Path("server.key");
  files.trusted_ca_file = Path("ca.crt");
  files.client_cert_auth = client_cert_auth;
  return files;
}

TlsFiles ClientFiles(const std::string& cert, const std::string& ca = "ca") {
  TlsFiles files;
  if (!cert.empty()) {
    files.cert_file = Path(cert + ".crt");
    files.key_file = Path(cert + ".key");
  }
  files.trusted_ca_file = Path(ca + ".crt");
  return files;
}

std::string Write(const std::string& name, const std::string& text) {
  const std::string path = Path(name);
  std::ofstream(path) << text;
  return path;
}

TEST(TlsFilesTest, RefusesBadFilesNamingThem) {
  TlsFiles missing = ServerFiles(false);
  missing.cert_file = Path("nope.crt");
  auto ctx = TlsContext::NewServer(missing);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().message(),
            absl::StrCat("cannot read certificate file \"", Path("nope.crt"),
                         "\": No such file or directory"));

  TlsFiles not_pem = ServerFiles(false);
  not_pem.cert_file = Write("garbage.crt", "not a certificate\n");
  ctx = TlsContext::NewServer(not_pem);
  ASSERT_FALSE(ctx.ok());
  EXPECT_TRUE(absl::StartsWith(
      ctx.status().message(),
      absl::StrCat("certificate file \"", not_pem.cert_file, "\" holds no PEM certificate")))
      << ctx.status();

  TlsFiles bad_key = ServerFiles(false);
  bad_key.key_file = Write("garbage.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n");
  ctx = TlsContext::NewServer(bad_key);
  ASSERT_FALSE(ctx.ok());
  EXPECT_TRUE(absl::StartsWith(
      ctx.status().message(),
      absl::StrCat("key file \"", bad_key.key_file, "\" holds no unencrypted PEM private key")))
      << ctx.status();

  TlsFiles mismatch = ServerFiles(false);
  mismatch.key_file = Path("client-alice.key");
  ctx = TlsContext::NewServer(mismatch);
  ASSERT_FALSE(ctx.ok());
  EXPECT_TRUE(absl::StrContains(ctx.status().message(), "does not match certificate file"))
      << ctx.status();

  TlsFiles empty_ca = ServerFiles(true);
  empty_ca.trusted_ca_file = Write("empty-ca.crt", "");
  ctx = TlsContext::NewServer(empty_ca);
  ASSERT_FALSE(ctx.ok());
  EXPECT_TRUE(absl::StrContains(ctx.status().message(), "holds no PEM certificate"))
      << ctx.status();

  TlsFiles no_ca = ServerFiles(true);
  no_ca.trusted_ca_file.clear();
  EXPECT_EQ(TlsContext::NewServer(no_ca).status().message(),
            "client certificate authentication needs a trusted CA file");
  TlsFiles no_key = ServerFiles(false);
  no_key.key_file.clear();
  EXPECT_FALSE(TlsContext::NewServer(no_key).ok());
  EXPECT_EQ(TlsContext::NewClient(TlsFiles{.cert_file = Path("server.crt")}).status().message(),
            "a certificate file needs its key file");
}

// One connection through a TlsListener: what each side saw.
struct Outcome {
  std::string server_error;  // on_rejected's why
  std::string common_name;   // of an accepted connection
  std::string client_error;  // Connect's failure
  std::string echoed;        // what came back through an accepted connection
};

void Run(const TlsFiles& server_files, const TlsFiles& client_files, const std::string& host,
         bool plain_text, Outcome& outcome) {
  auto io = kj::setupAsyncIo();
  auto server = TlsContext::NewServer(server_files);
  auto client = TlsContext::NewClient(client_files);
  EXPECT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(client.ok()) << client.status();
  auto server_done = kj::newPromiseAndFulfiller<void>();
  kj::Own<kj::AsyncIoStream> accepted;
  kj::Promise<void> echo = nullptr;
  auto listener = TlsListener::Listen(
                      io.provider->getNetwork(), io.provider->getTimer(), "127.0.0.1:0", **server,
                      [&](TlsAccepted a) {
                        outcome.common_name = a.common_name;
                        accepted = kj::mv(a.stream);
                        auto buffer = kj::heapArray<char>(5);
                        auto& ref = *accepted;
                        echo = ref.read(buffer.begin(), 5)
                                   .then([&ref, b = buffer.begin()]() { return ref.write(b, 5); })
                                   .attach(kj::mv(buffer))
                                   .eagerlyEvaluate([](kj::Exception&&) {});
                        server_done.fulfiller->fulfill();
                      },
                      [&](const std::string& remote, const std::string& why) {
                        EXPECT_TRUE(absl::StartsWith(remote, "127.0.0.1:")) << remote;
                        outcome.server_error = why;
                        server_done.fulfiller->fulfill();
                      })
                      .wait(io.waitScope);
  auto address = io.provider->getNetwork()
                     .parseAddress(absl::StrCat("127.0.0.1:", listener->port()))
                     .wait(io.waitScope);
  auto raw = address->connect().wait(io.waitScope);
  if (plain_text) {
    raw->write("\0\0\0\0\2\0\0\0 capnp-ish bytes", 24).wait(io.waitScope);
    server_done.promise.wait(io.waitScope);
    return;
  }
  try {
    auto stream = (*client)->Connect(kj::mv(raw), host).wait(io.waitScope);
    stream->write("hello", 5).wait(io.waitScope);
    char buffer[5];
    const size_t n = stream->tryRead(buffer, 5, 5).wait(io.waitScope);
    outcome.echoed.assign(buffer, n);
  } catch (const kj::Exception& e) {
    outcome.client_error = e.getDescription().cStr();
  }
  server_done.promise.wait(io.waitScope);
}

Outcome Exchange(const TlsFiles& server_files, const TlsFiles& client_files,
                 const std::string& host = "127.0.0.1", bool plain_text = false) {
  Outcome outcome;
  Run(server_files, client_files, host, plain_text, outcome);
  return outcome;
}

TEST(TlsTest, HandshakeVerifiesBothSidesAndNamesTheClient) {
  Outcome o = Exchange(ServerFiles(true), ClientFiles("client-alice"));
  EXPECT_EQ(o.client_error, "");
  EXPECT_EQ(o.server_error, "");
  EXPECT_EQ(o.echoed, "hello");
  EXPECT_EQ(o.common_name, "alice");
}

TEST(TlsTest, WithoutClientCertAuthNoCertificateIsAskedAndNoNameGiven) {
  Outcome o = Exchange(ServerFiles(false), ClientFiles(""));
  EXPECT_EQ(o.client_error, "");
  EXPECT_EQ(o.echoed, "hello");
  EXPECT_EQ(o.common_name, "");
}

TEST(TlsTest, ClientRefusesAServerFromAnotherCa) {
  Outcome o = Exchange(ServerFiles(false), ClientFiles("", "other-ca"));
  EXPECT_TRUE(absl::StartsWith(o.client_error, "server certificate refused: ")) << o.client_error;
  EXPECT_TRUE(absl::StartsWith(o.server_error, "the client refused this side's certificate: "))
      << o.server_error;
}

TEST(TlsTest, ClientRefusesAServerCertificateForAnotherAddress) {
  Outcome o = Exchange(ServerFiles(false), ClientFiles(""), "127.0.0.2");
  EXPECT_EQ(o.client_error, "server certificate refused: IP address mismatch");
}

TEST(TlsTest, ServerRefusesExpiredAndUntrustedClientCertificates) {
  Outcome expired = Exchange(ServerFiles(true), ClientFiles("expired"));
  EXPECT_EQ(expired.server_error, "client certificate refused: certificate has expired");
  EXPECT_NE(expired.client_error, "");
  Outcome untrusted = Exchange(ServerFiles(true), ClientFiles("untrusted"));
  EXPECT_EQ(untrusted.server_error,
            "client certificate refused: unable to get local issuer certificate");
  Outcome none = Exchange(ServerFiles(true), ClientFiles(""));
  EXPECT_TRUE(absl::StrContains(none.server_error, "peer did not return a certificate"))
      << none.server_error;
}

TEST(TlsTest, ServerRefusesPlainText) {
  Outcome o = Exchange(ServerFiles(false), ClientFiles(""), "127.0.0.1", /*plain_text=*/true);
  EXPECT_TRUE(absl::StartsWith(o.server_error, "not a TLS client (plain text on a TLS port)"))
      << o.server_error;
}

}  // namespace
}  // namespace kvstore::net
