#ifndef KVSTORE_NET_CLIENT_PORT_H_
#define KVSTORE_NET_CLIENT_PORT_H_

// One client URL, every client protocol, as etcd serves gRPC and HTTP on one port: the first
// bytes of each accepted connection decide where it goes, without consuming them.
//
//   "PRI * HTTP/2.0..."           gRPC (HTTP/2's connection preface): etcd's v3 API
//   "GET ", "POST", "PUT ", ...   HTTP/1.1: the JSON gateway, /metrics, /health, the status page
//   anything else                 Cap'n Proto (a message starts with its segment count, a small
//                                 little-endian number): the native API
//
// Bytes are looked at with recv(MSG_PEEK), so each protocol's server reads the connection from
// its first byte. A connection that sends fewer than four bytes within the sniff timeout, or
// closes first, is dropped.
//
// An https:// client URL (ClientPortTls) terminates TLS first and sniffs the decrypted stream.
// A connection whose first byte is not a TLS handshake record (a plain-text client on a TLS
// port) and a failed handshake (an untrusted or expired client certificate) are refused through
// on_rejected, which names the remote address and why; the port keeps serving everyone else.
// gRPC, which takes a socket it owns, gets one end of a socketpair; the decrypted bytes are
// relayed between it and the TLS stream on the loop.

#include <functional>
#include <string>

#include "kj/async-io.h"
#include "kj/async-unix.h"
#include "kj/timer.h"
#include "net/tls.h"

namespace kvstore::net {

struct ClientPortHandlers {
  // Cap'n Proto connections (ClientServer::Accept). Required.
  std::function<void(kj::Own<kj::AsyncIoStream>)> capnp;
  // gRPC connections: a connected socket the callee now owns (grpc::AddInsecureChannelFromFd).
  // Empty: such connections are closed.
  std::function<void(int fd)> grpc;
  // gRPC connections from an https:// port: the socket, and the common name of the client's
  // verified certificate ("" without one). Empty: `grpc` takes them.
  std::function<void(int fd, const std::string& common_name)> grpc_tls;
  // HTTP/1.1 connections. Empty: such connections are closed.
  std::function<void(kj::Own<kj::AsyncIoStream>)> http;
  // Cap'n Proto and HTTP/1.1 connections from an https:// port, with the common name of the
  // client's verified certificate ("" without one). Empty: `capnp` and `http` take them.
  std::function<void(kj::Own<kj::AsyncIoStream>, const std::string& common_name)> capnp_tls;
  std::function<void(kj::Own<kj::AsyncIoStream>, const std::string& common_name)> http_tls;
};

// TLS on a client URL (https://).
struct ClientPortTls {
  TlsContext* context = nullptr;  // a server context; null: plain text
  // For the gRPC relay's socketpair.
  kj::LowLevelAsyncIoProvider* low_level = nullptr;
  // A refused connection: its remote address and why. Optional.
  std::function<void(const std::string& remote, const std::string& why)> on_rejected;
};

// Which protocol a connection speaks, from its first bytes (at most four are needed).
enum class ClientProtocol { kUndecided, kCapnp, kGrpc, kHttp };
ClientProtocol SniffClientProtocol(const char* bytes, size_t size);

class ClientPort : private kj::TaskSet::ErrorHandler {
 public:
  // Listens on `address` ("host:port"; port 0 picks a free port). Rejects when it cannot bind.
  static kj::Promise<kj::Own<ClientPort>> Listen(kj::Network& network, kj::Timer& timer,
                                                 kj::UnixEventPort& event_port, std::string address,
                                                 ClientPortHandlers handlers,
                                                 ClientPortTls tls = {});

  ClientPort(kj::Own<kj::ConnectionReceiver> receiver, kj::Timer& timer,
             kj::UnixEventPort& event_port, ClientPortHandlers handlers, ClientPortTls tls = {});

  uint port() { return receiver_->getPort(); }

 private:
  class Sniffer;
  kj::Promise<void> Dispatch(kj::Own<kj::AsyncIoStream> stream);
  // An https:// port's connection after its handshake: sniff the decrypted stream, hand over.
  kj::Promise<void> DispatchDecrypted(TlsAccepted accepted, std::string remote);
  void Reject(const std::string& remote, const std::string& why);
  // A failed connection concerns only its client, never the listener.
  void taskFailed(kj::Exception&&) override {}

  kj::Own<kj::ConnectionReceiver> receiver_;
  kj::Timer& timer_;
  kj::UnixEventPort& event_port_;
  ClientPortHandlers handlers_;
  ClientPortTls tls_;
  kj::Own<kj::TaskSet> tasks_;
  kj::Promise<void> accepting_ = nullptr;
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_CLIENT_PORT_H_
