#ifndef KVSTORE_NET_CONNECTION_H_
#define KVSTORE_NET_CONNECTION_H_

// Two-party Cap'n Proto connections that read with the limits of convert.h, and a listener that
// serves one bootstrap capability on each connection it accepts. capnp::TwoPartyServer and
// TwoPartyClient read with Cap'n Proto's defaults (64 MiB messages, no flow limit); these are the
// same few lines with our limits, shared by the client and peer servers and clients.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "capnp/rpc-twoparty.h"
#include "kj/async-io.h"
#include "kj/timer.h"
#include "net/tls.h"

namespace kvstore::net {

// A member stops reading a client's or peer's calls while this many bytes of its calls are
// unanswered (capnp::RpcSystem::setFlowLimit), so one connection cannot fill the member's
// memory with requests (say, puts waiting for a leader).
inline constexpr uint64_t kMaxInflightCallBytesPerConnection = uint64_t{64} << 20;
// The largest message either side of a connection sends (a reply to a client: a range, a batch
// of watch events). What a side reads is bounded by the ReaderOptions it is given, which may be
// smaller (a member's client connections read at most a request's limit).
inline constexpr uint64_t kMaxSendBytes = uint64_t{256} << 20;
// How a member refuses a Cap'n Proto message over its reader's limit (etcd's words for a request
// over --max-request-bytes): the start of the reason its callers' calls fail with.
inline constexpr char kRequestTooLargeReason[] = "etcdserver: request is too large";
// After a failed accept (out of file descriptors, say), the listener tries again this much later
// rather than giving up or spinning (Go's net/http backs off the same way).
inline constexpr kj::Duration kAcceptRetryDelay = 100 * kj::MILLISECONDS;

// etcd's URL flags ("http://127.0.0.1:2380" or "https://...", with or without a trailing '/') to
// the address kj::Network::parseAddress takes ("127.0.0.1:2380"); "host:port" and "unix:/path"
// pass through. Whether the URL asks for TLS is IsTlsUrl's.
absl::StatusOr<std::string> NetworkAddressOf(absl::string_view url);
bool IsTlsUrl(absl::string_view url);

// Connects to `address` (NetworkAddressOf's form); rejects after `timeout`, so an address that
// black-holes SYNs costs at most that. With `tls` (a client context) the TLS handshake, which
// checks the server's certificate against the address's host, is inside the same timeout.
kj::Promise<kj::Own<kj::AsyncIoStream>> ConnectWithin(kj::Network& network, kj::Timer& timer,
                                                      std::string address, kj::Duration timeout,
                                                      TlsContext* tls = nullptr);

// Accepts connections from `receiver` until the promise is dropped, handing each to `accept`;
// a failed accept (out of file descriptors, say) is tried again kAcceptRetryDelay later. The
// listeners' one accept loop (RpcListener, PeerServer). `receiver` and `timer` must outlive the
// promise.
kj::Promise<void> AcceptEach(kj::ConnectionReceiver& receiver, kj::Timer& timer,
                             std::function<void(kj::Own<kj::AsyncIoStream>)> accept);

// One two-party connection over a byte stream. Destroying it closes the connection; every
// capability obtained through it breaks (calls reject with DISCONNECTED).
class RpcConnection {
 public:
  // The connecting side: Bootstrap() is the other side's capability.
  RpcConnection(kj::Own<kj::AsyncIoStream> stream, capnp::ReaderOptions options);
  // The accepting side: serves `bootstrap`, with the per-connection flow limit above.
  RpcConnection(kj::Own<kj::AsyncIoStream> stream, capnp::ReaderOptions options,
                capnp::Capability::Client bootstrap);

  template <typename Interface>
  typename Interface::Client Bootstrap() {
    return BootstrapCapability().castAs<Interface>();
  }
  // Resolves when the connection ends (closed by the other side, or a read or write failed,
  // including a message over the reader's limits).
  kj::Promise<void> OnDisconnect() { return network_.onDisconnect(); }

 private:
  capnp::Capability::Client BootstrapCapability();

  // Reads with the connection's own limits while Cap'n Proto's send check (which compares an
  // outgoing message with the receive limit it was given) is handed kMaxResponseBytes, so a
  // member answers a range or watch larger than its request limit instead of refusing to send.
  //
  // On the accepting side a message over the limit is refused with a reason the caller can
  // read: the stream reads the message's segment table first, and for a message too large it
  // discards the body (up to kMaxSendBytes, never buffering it) and then fails the read with
  // "etcdserver: request is too large (...)", which the RPC system sends to the caller as its
  // Abort reason before closing. Without this the member closed the connection while the caller
  // was still writing, and the caller saw only "Broken pipe".
  class ReadLimitedStream final : public capnp::MessageStream {
   public:
    ReadLimitedStream(kj::AsyncIoStream& stream, capnp::ReaderOptions read_options,
                      bool explain_oversize)
        : stream_(stream),
          inner_(stream),
          read_options_(read_options),
          explain_oversize_(explain_oversize) {}
    kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
        kj::ArrayPtr<kj::AutoCloseFd> fd_space, capnp::ReaderOptions,
        kj::ArrayPtr<capnp::word> scratch) override;
    kj::Promise<void> writeMessage(
        kj::ArrayPtr<const int> fds,
        kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override {
      return inner_.writeMessage(fds, segments);
    }
    kj::Promise<void> writeMessages(
        kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override {
      return inner_.writeMessages(messages);
    }
    kj::Maybe<int> getSendBufferSize() override { return inner_.getSendBufferSize(); }
    kj::Promise<void> end() override { return inner_.end(); }

   private:
    kj::AsyncIoStream& stream_;
    capnp::AsyncIoMessageStream inner_;
    capnp::ReaderOptions read_options_;
    bool explain_oversize_;
  };

  kj::Own<kj::AsyncIoStream> stream_;
  ReadLimitedStream messages_;
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_system_;
};

// Serves `bootstrap` on every connection accepted, each read with `options`. Connections end
// when their peer leaves or the listener is destroyed.
class RpcListener final : private kj::TaskSet::ErrorHandler {
 public:
  // Connections come through Accept, or from a socket once Listen is called.
  RpcListener(capnp::Capability::Client bootstrap, capnp::ReaderOptions options);
  // A bootstrap capability of its own for each connection (per-connection state and limits).
  RpcListener(std::function<capnp::Capability::Client()> make_bootstrap,
              capnp::ReaderOptions options);
  ~RpcListener();

  // Listens on `address` ("host:port"; port 0 picks a free one, see port()); resolves once the
  // socket is bound, then accepts until the listener is destroyed. At most once.
  kj::Promise<void> Listen(kj::Network& network, kj::Timer& timer, std::string address);

  // Serves one more connection.
  void Accept(kj::Own<kj::AsyncIoStream> stream);
  // Serves one more connection with a bootstrap capability of its own.
  void Accept(kj::Own<kj::AsyncIoStream> stream, capnp::Capability::Client bootstrap);
  // The port listened on; 0 without a socket.
  uint port() const { return port_; }

 private:
  void taskFailed(kj::Exception&& exception) override;

  capnp::Capability::Client bootstrap_;
  std::function<capnp::Capability::Client()> make_bootstrap_;  // empty: bootstrap_ for all
  capnp::ReaderOptions options_;
  kj::TaskSet connections_;
  kj::Own<kj::ConnectionReceiver> receiver_;
  uint port_ = 0;
  kj::Promise<void> accepting_ = nullptr;
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_CONNECTION_H_
