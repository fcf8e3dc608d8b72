#include "net/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kj/compat/readiness-io.h"
#include "kj/debug.h"
#include "net/forwarding_stream.h"

namespace kvstore::net {
namespace {

kj::Exception TlsException(const std::string& message) {
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                       kj::heapString(message.data(), message.size()));
}

// OpenSSL's queued errors, oldest first, as short reasons ("certificate verify failed"); the
// queue is emptied. `reasons` (optional) gets their reason codes.
std::string TakeOpenSslErrors(std::vector<int>* reasons = nullptr) {
  std::vector<std::string> texts;
  while (const unsigned long error = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(error);
    texts.push_back(reason != nullptr ? reason : absl::StrCat("OpenSSL error ", error));
    if (reasons != nullptr) reasons->push_back(ERR_GET_REASON(error));
  }
  if (texts.empty()) return "unknown OpenSSL error";
  return absl::StrJoin(texts, "; ");
}

bool IsIpAddress(const std::string& host) {
  in6_addr scratch;
  return inet_pton(AF_INET, host.c_str(), &scratch) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &scratch) == 1;
}

// A TLS connection over another stream. OpenSSL reads and writes through a BIO whose calls go
// to kj's readiness adapters: a read that would block answers "retry" and the operation waits
// for the adapter to have bytes (or room), then runs again with the same arguments, as
// OpenSSL's non-blocking contract asks.
class TlsStream final : public ForwardingStream {
 public:
  TlsStream(kj::Own<kj::AsyncIoStream> inner, SSL* ssl)
      : ForwardingStream(kj::mv(inner)), reader_(this->inner()), writer_(this->inner()), ssl_(ssl) {
    BIO* bio = BIO_new(BioMethod());
    KJ_ASSERT(bio != nullptr, "BIO_new failed");
    BIO_set_data(bio, this);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_, bio, bio);
  }
  ~TlsStream() noexcept(false) { SSL_free(ssl_); }

  // The handshake as the server or the client; a failure says why (see tls.h).
  kj::Promise<void> Handshake(bool server) {
    return Call([this, server]() { return server ? SSL_accept(ssl_) : SSL_connect(ssl_); })
        .then(
            [](size_t done) {
              if (done == 0) {
                throw TlsException("connection closed during the TLS handshake");
              }
            },
            [this, server](kj::Exception&& e) {
              throw TlsException(DescribeHandshakeFailure(server, e));
            });
  }

  // The common name of the peer's verified certificate, or "".
  std::string PeerCommonName() {
    X509* cert = SSL_get1_peer_certificate(ssl_);
    if (cert == nullptr) return "";
    std::string name;
    if (SSL_get_verify_result(ssl_) == X509_V_OK) {
      char buffer[256];
      const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buffer,
                                              sizeof(buffer));
      if (n > 0) name.assign(buffer, static_cast<size_t>(n));
    }
    X509_free(cert);
    return name;
  }

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return ReadAtLeast(static_cast<kj::byte*>(buffer), min_bytes, max_bytes, 0);
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    return WriteAll(kj::arrayPtr(static_cast<const kj::byte*>(buffer), size));
  }

  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    // One record for the pieces of one message, rather than one per piece.
    size_t total = 0;
    for (auto piece : pieces) total += piece.size();
    auto joined = kj::heapArray<kj::byte>(total);
    size_t at = 0;
    for (auto piece : pieces) {
      if (piece.size() > 0) std::memcpy(joined.begin() + at, piece.begin(), piece.size());
      at += piece.size();
    }
    kj::ArrayPtr<const kj::byte> view = joined;
    return WriteAll(view).attach(kj::mv(joined));
  }

  void shutdownWrite() override {
    if (shutdown_ != nullptr) return;
    shutdown_ = Call([this]() {
                  // The first call sends close_notify and answers 0 (the peer's is not in yet).
                  const int result = SSL_shutdown(ssl_);
                  return result == 0 ? 1 : result;
                })
                    .ignoreResult()
                    .eagerlyEvaluate([](kj::Exception&&) {});
  }

 private:
  std::string DescribeHandshakeFailure(bool server, const kj::Exception& e) {
    std::string why = e.getDescription().cStr();
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      return absl::StrCat(server ? "client" : "server",
                          " certificate refused: ", X509_verify_cert_error_string(verify));
    }
    if (server) {
      for (int reason : handshake_reasons_) {
        if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
            reason == SSL_R_HTTPS_PROXY_REQUEST || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
            reason == SSL_R_UNKNOWN_PROTOCOL) {
          return absl::StrCat("not a TLS client (plain text on a TLS port): ", why);
        }
      }
    }
    for (int reason : handshake_reasons_) {
      if (reason == SSL_R_TLSV1_ALERT_UNKNOWN_CA || reason == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
          reason == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN ||
          reason == SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED ||
          reason == SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE) {
        return absl::StrCat("the ", server ? "client" : "server",
                            " refused this side's certificate: ", why);
      }
    }
    return absl::StrCat("TLS handshake failed: ", why);
  }

  kj::Promise<size_t> ReadAtLeast(kj::byte* buffer, size_t min_bytes, size_t max_bytes,
                                  size_t done) {
    const int want = static_cast<int>(std::min<size_t>(max_bytes, INT_MAX));
    return Call([this, buffer, want]() { return SSL_read(ssl_, buffer, want); })
        .then([this, buffer, min_bytes, max_bytes, done](size_t n) -> kj::Promise<size_t> {
          if (n == 0 || n >= min_bytes) return done + n;
          return ReadAtLeast(buffer + n, min_bytes - n, max_bytes - n, done + n);
        });
  }

  kj::Promise<void> WriteAll(kj::ArrayPtr<const kj::byte> data) {
    if (data.size() == 0) return kj::READY_NOW;
    const int chunk = static_cast<int>(std::min<size_t>(data.size(), INT_MAX));
    return Call([this, data, chunk]() { return SSL_write(ssl_, data.begin(), chunk); })
        .then([this, data](size_t n) -> kj::Promise<void> {
          if (n == 0) return TlsException("TLS connection closed during a write");
          return WriteAll(data.slice(n, data.size()));
        });
  }

  // Runs an OpenSSL I/O call until it completes: its positive result, or 0 at a clean end of
  // stream. Errors become exceptions with OpenSSL's reasons.
  template <typename Func>
  kj::Promise<size_t> Call(Func func) {
    if (ended_) return size_t{0};
    ERR_clear_error();
    const int result = func();
    if (result > 0) return static_cast<size_t>(result);
    switch (SSL_get_error(ssl_, result)) {
      case SSL_ERROR_ZERO_RETURN:
        ended_ = true;
        return size_t{0};
      case SSL_ERROR_WANT_READ:
        return reader_.whenReady().then([this, func]() { return Call(func); });
      case SSL_ERROR_WANT_WRITE:
        return writer_.whenReady().then([this, func]() { return Call(func); });
      case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {  // the transport ended (our BIO reports no errors)
          ended_ = true;
          return size_t{0};
        }
        [[fallthrough]];
      default: {
        handshake_reasons_.clear();
        std::string why = TakeOpenSslErrors(&handshake_reasons_);
        return TlsException(why);
      }
    }
  }

  static int BioRead(BIO* bio, char* out, int size) {
    BIO_clear_retry_flags(bio);
    auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
    KJ_IF_MAYBE (n, self->reader_.read(kj::arrayPtr(out, size).asBytes())) {
      return static_cast<int>(*n);  // 0: end of stream
    }
    BIO_set_retry_read(bio);
    return -1;
  }

  static int BioWrite(BIO* bio, const char* in, int size) {
    BIO_clear_retry_flags(bio);
    auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
    KJ_IF_MAYBE (n, self->writer_.write(kj::arrayPtr(in, size).asBytes())) {
      return static_cast<int>(*n);
    }
    BIO_set_retry_write(bio);
    return -1;
  }

  static long BioCtrl(BIO*, int command, long, void*) { return command == BIO_CTRL_FLUSH ? 1 : 0; }

  static const BIO_METHOD* BioMethod() {
    static const BIO_METHOD* const method = [] {
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kj stream");
      BIO_meth_set_read(m, BioRead);
      BIO_meth_set_write(m, BioWrite);
      BIO_meth_set_ctrl(m, BioCtrl);
      BIO_meth_set_create(m, [](BIO* bio) {
        BIO_set_data(bio, nullptr);
        return 1;
      });
      BIO_meth_set_destroy(m, [](BIO*) { return 1; });  // the stream owns itself
      return m;
    }();
    return method;
  }

  kj::ReadyInputStreamWrapper reader_;
  kj::ReadyOutputStreamWrapper writer_;
  SSL* ssl_;
  bool ended_ = false;
  std::vector<int> handshake_reasons_;
  kj::Maybe<kj::Promise<void>> shutdown_;  // destroyed before the adapters it uses
};

absl::Status Readable(const std::string& what, const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", what, " \"", path, "\": ", std::strerror(errno)));
  }
  std::fclose(file);
  return absl::OkStatus();
}

// ALPN: HTTP/1.1 when the client offers it (curl offers h2 too, but the gateway speaks
// HTTP/1.1), h2 for gRPC clients, which offer only that.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_size, const unsigned char* in,
               unsigned int in_size, void*) {
  static const unsigned char kHttp11[] = "\x08http/1.1";
  static const unsigned char kH2[] = "\x02h2";
  for (const unsigned char* preferred : {kHttp11, kH2}) {
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, out_size, preferred, preferred[0] + 1, in, in_size) ==
        OPENSSL_NPN_NEGOTIATED) {
      *out = selected;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

absl::StatusOr<SSL_CTX*> NewContext(const TlsFiles& files, bool server) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(files.cert_file.empty()
                                          ? "a key file needs its certificate file"
                                          : "a certificate file needs its key file");
  }
  if (server && (files.cert_file.empty() || files.key_file.empty())) {
    return absl::InvalidArgumentError("a TLS server needs a certificate and a key file");
  }
  if (server && files.client_cert_auth && files.trusted_ca_file.empty()) {
    return absl::InvalidArgumentError("client certificate authentication needs a trusted CA file");
  }
  for (const auto& [what, path] :
       {std::pair<const char*, const std::string&>{"certificate file", files.cert_file},
        {"key file", files.key_file},
        {"trusted CA file", files.trusted_ca_file}}) {
    if (path.empty()) continue;
    if (absl::Status s = Readable(what, path); !s.ok()) return s;
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return absl::InternalError(TakeOpenSslErrors());
  auto fail = [ctx](std::string message) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(message);
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  if (!files.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, files.cert_file.c_str()) != 1) {
      return fail(absl::StrCat("certificate file \"", files.cert_file,
                               "\" holds no PEM certificate (", TakeOpenSslErrors(), ")"));
    }
    BIO* bio = BIO_new_file(files.key_file.c_str(), "r");
    EVP_PKEY* key =
        bio != nullptr ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
    if (bio != nullptr) BIO_free(bio);
    if (key == nullptr) {
      return fail(absl::StrCat("key file \"", files.key_file,
                               "\" holds no unencrypted PEM private key (", TakeOpenSslErrors(),
                               ")"));
    }
    const int used = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
      return fail(absl::StrCat("key file \"", files.key_file,
                               "\" does not match certificate file \"", files.cert_file, "\" (",
                               TakeOpenSslErrors(), ")"));
    }
  }
  if (!files.trusted_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, files.trusted_ca_file.c_str(), nullptr) != 1) {
      return fail(absl::StrCat("trusted CA file \"", files.trusted_ca_file,
                               "\" holds no PEM certificate (", TakeOpenSslErrors(), ")"));
    }
  } else if (!server) {
    SSL_CTX_set_default_verify_paths(ctx);  // the system's trust store
  }
  if (server) {
    SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
    if (files.client_cert_auth) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.trusted_ca_file.c_str())) {
        SSL_CTX_set_client_CA_list(ctx, names);
      }
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
  } else {
    SSL_CTX_set_verify(ctx, files.insecure_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       nullptr);
  }
  ERR_clear_error();
  return ctx;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::NewServer(const TlsFiles& files) {
  absl::StatusOr<SSL_CTX*> ctx = NewContext(files, /*server=*/true);
  if (!ctx.ok()) return ctx.status();
  return std::unique_ptr<TlsContext>(new TlsContext(*ctx, true, files.client_cert_auth));
}

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::NewClient(const TlsFiles& files) {
  absl::StatusOr<SSL_CTX*> ctx = NewContext(files, /*server=*/false);
  if (!ctx.ok()) return ctx.status();
  return std::unique_ptr<TlsContext>(new TlsContext(*ctx, false, !files.insecure_skip_verify));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

kj::Promise<TlsAccepted> TlsContext::Accept(kj::Own<kj::AsyncIoStream> stream) {
  KJ_REQUIRE(server_, "Accept on a client TLS context");
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return TlsException(TakeOpenSslErrors());
  auto tls = kj::heap<TlsStream>(kj::mv(stream), ssl);
  TlsStream& handshaking = *tls;
  return handshaking.Handshake(/*server=*/true).then([tls = kj::mv(tls)]() mutable {
    TlsAccepted accepted;
    accepted.common_name = tls->PeerCommonName();
    accepted.stream = kj::mv(tls);
    return accepted;
  });
}

kj::Promise<kj::Own<kj::AsyncIoStream>> TlsContext::Connect(kj::Own<kj::AsyncIoStream> stream,
                                                            std::string host) {
  KJ_REQUIRE(!server_, "Connect on a server TLS context");
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return TlsException(TakeOpenSslErrors());
  auto tls = kj::heap<TlsStream>(kj::mv(stream), ssl);
  const bool ip = IsIpAddress(host);
  if (!ip && !host.empty()) SSL_set_tlsext_host_name(ssl, host.c_str());  // SNI: names only
  if (verify_peer_) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                       : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    if (set != 1) {
      return TlsException(absl::StrCat("cannot verify the host \"", host, "\" of a TLS server"));
    }
  }
  TlsStream& handshaking = *tls;
  return handshaking.Handshake(/*server=*/false).then([tls = kj::mv(tls)]() mutable {
    return kj::Own<kj::AsyncIoStream>(kj::mv(tls));
  });
}

std::string HostOf(const std::string& address) {
  std::string host = address;
  if (const size_t colon = host.rfind(':'); colon != std::string::npos) host.resize(colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

std::string RemoteAddressOf(kj::AsyncIoStream& stream) {
  sockaddr_storage address;
  uint size = sizeof(address);
  try {
    stream.getpeername(reinterpret_cast<sockaddr*>(&address), &size);
  } catch (const kj::Exception&) {
    return "unknown";
  }
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    return absl::StrCat(text, ":", ntohs(in->sin_port));
  }
  if (address.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    return absl::StrCat("[", text, "]:", ntohs(in6->sin6_port));
  }
  return "unknown";
}

kj::Promise<kj::Own<TlsListener>> TlsListener::Listen(kj::Network& network, kj::Timer& timer,
                                                      std::string address, TlsContext& tls,
                                                      OnAccepted on_accepted,
                                                      OnRejected on_rejected) {
  return network.parseAddress(kj::StringPtr(address.c_str(), address.size()))
      .then([&timer, &tls, on_accepted = std::move(on_accepted),
             on_rejected = std::move(on_rejected)](kj::Own<kj::NetworkAddress> parsed) mutable {
        return kj::heap<TlsListener>(parsed->listen(), timer, tls, std::move(on_accepted),
                                     std::move(on_rejected));
      });
}

TlsListener::TlsListener(kj::Own<kj::ConnectionReceiver> receiver, kj::Timer& timer,
                         TlsContext& tls, OnAccepted on_accepted, OnRejected on_rejected)
    : receiver_(kj::mv(receiver)),
      timer_(timer),
      tls_(tls),
      on_accepted_(std::move(on_accepted)),
      on_rejected_(std::move(on_rejected)),
      tasks_(kj::heap<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this))) {
  accepting_ = AcceptLoop().eagerlyEvaluate(nullptr);
}

kj::Promise<void> TlsListener::AcceptLoop() {
  return receiver_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    const std::string remote = RemoteAddressOf(*stream);
    tasks_->add(timer_.timeoutAfter(kTlsHandshakeTimeout, tls_.Accept(kj::mv(stream)))
                    .then([this](TlsAccepted accepted) { on_accepted_(kj::mv(accepted)); },
                          [this, remote](kj::Exception&& e) {
                            on_rejected_(remote, e.getDescription().cStr());
                          }));
    return AcceptLoop();
  });
}

}  // namespace kvstore::net
