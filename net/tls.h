#ifndef KVSTORE_NET_TLS_H_
#define KVSTORE_NET_TLS_H_

// TLS for client and peer connections (https:// URLs), on OpenSSL, over any kj byte stream, with
// etcd's meaning of its flags (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth and
// the --peer-* ones; etcdctl's --cacert, --cert, --key, --insecure-skip-tls-verify):
//   - a server presents cert_file/key_file; with client_cert_auth it requires a client
//     certificate signed by trusted_ca_file, and the certificate's common name is handed on
//     (etcd takes it as the user when a call carries no token);
//   - a client verifies the server's certificate against trusted_ca_file (the system's trust
//     store without one) and the host it dialled: an IP address against the certificate's IP
//     SANs, a name against its DNS SANs, as Go's crypto/tls does; it presents cert_file/key_file
//     when given.
// TLS 1.2 at least (etcd's minimum).
//
// Why not kj-tls (kj/compat/tls.h, capnproto 0.9.2 in Debian 12): its client checks the dialled
// host only as a DNS name (X509_VERIFY_PARAM_set1_host), so https://127.0.0.1:2379 against a
// certificate with SAN IP:127.0.0.1 -- what etcd's documentation and Kubernetes issue -- is
// refused; and its handshake errors do not say which certificate failed or why. This file uses
// kj-tls's readiness adapters (kj/compat/readiness-io.h) under OpenSSL's BIO, as kj-tls does.
//
// Errors: a bad file is an absl::Status naming the file and what is wrong with it; a failed
// handshake is a kj exception whose description says why in a line fit for a log ("client
// certificate refused: certificate has expired", "not a TLS client (plain text on a TLS port)").

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kj/async-io.h"
#include "kj/timer.h"

struct ssl_ctx_st;

namespace kvstore::net {

// How long a TLS handshake may take before the connection is dropped.
inline constexpr kj::Duration kTlsHandshakeTimeout = 10 * kj::SECONDS;

struct TlsFiles {
  std::string cert_file;  // PEM certificate (chain); a server needs one
  std::string key_file;   // PEM private key of cert_file
  std::string trusted_ca_file;
  bool client_cert_auth = false;      // server: require a client certificate from trusted_ca_file
  bool insecure_skip_verify = false;  // client: accept any server certificate
};

// A connection after the server's handshake.
struct TlsAccepted {
  kj::Own<kj::AsyncIoStream> stream;
  // The common name of the client's verified certificate; empty without one.
  std::string common_name;
};

class TlsContext {
 public:
  // Loads and checks the files: unreadable, not PEM, a key that does not match its certificate,
  // a CA file without certificates each refuse with a message naming the file.
  static absl::StatusOr<std::unique_ptr<TlsContext>> NewServer(const TlsFiles& files);
  static absl::StatusOr<std::unique_ptr<TlsContext>> NewClient(const TlsFiles& files);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // The server's handshake on an accepted connection.
  kj::Promise<TlsAccepted> Accept(kj::Own<kj::AsyncIoStream> stream);
  // The client's handshake; `host` is the host dialled (an IP address or a name), checked
  // against the server's certificate and sent as SNI when it is a name.
  kj::Promise<kj::Own<kj::AsyncIoStream>> Connect(kj::Own<kj::AsyncIoStream> stream,
                                                  std::string host);

 private:
  explicit TlsContext(ssl_ctx_st* ctx, bool server, bool verify_peer)
      : ctx_(ctx), server_(server), verify_peer_(verify_peer) {}
  ssl_ctx_st* ctx_;
  bool server_;
  bool verify_peer_;
};

// "host" of "host:port" ("[::1]:2379" -> "::1").
std::string HostOf(const std::string& address);

// Accepts TLS connections on a socket: each is handshaken (within kTlsHandshakeTimeout) and
// handed to `on_accepted`; a failed handshake goes to `on_rejected` with the peer's address and
// why, and the listener carries on.
class TlsListener final : private kj::TaskSet::ErrorHandler {
 public:
  using OnAccepted = std::function<void(TlsAccepted)>;
  using OnRejected = std::function<void(const std::string& remote, const std::string& why)>;

  // Listens on `address` ("host:port"); rejects when it cannot bind.
  static kj::Promise<kj::Own<TlsListener>> Listen(kj::Network& network, kj::Timer& timer,
                                                  std::string address, TlsContext& tls,
                                                  OnAccepted on_accepted, OnRejected on_rejected);
  TlsListener(kj::Own<kj::ConnectionReceiver> receiver, kj::Timer& timer, TlsContext& tls,
              OnAccepted on_accepted, OnRejected on_rejected);
  uint port() { return receiver_->getPort(); }

 private:
  kj::Promise<void> AcceptLoop();
  void taskFailed(kj::Exception&&) override {}

  kj::Own<kj::ConnectionReceiver> receiver_;
  kj::Timer& timer_;
  TlsContext& tls_;
  OnAccepted on_accepted_;
  OnRejected on_rejected_;
  kj::Own<kj::TaskSet> tasks_;
  kj::Promise<void> accepting_ = nullptr;
};

// The remote address of a stream, "ip:port" ("unknown" when it has none).
std::string RemoteAddressOf(kj::AsyncIoStream& stream);

}  // namespace kvstore::net

#endif  // KVSTORE_NET_TLS_H_
