#include "net/client_port.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kvstore::net {
namespace {

// How long a new connection may take to send its first four bytes.
constexpr kj::Duration kSniffTimeout = 10 * kj::SECONDS;

bool StartsWith(const char* bytes, size_t size, const char* prefix) {
  return size >= 4 && std::memcmp(bytes, prefix, 4) == 0;
}

}  // namespace

ClientProtocol SniffClientProtocol(const char* bytes, size_t size) {
  if (size == 0) return ClientProtocol::kUndecided;
  // Every text prefix below starts with one of these letters; anything else is binary.
  if (std::strchr("PGHDOC", bytes[0]) == nullptr || bytes[0] == '\0') {
    return ClientProtocol::kCapnp;
  }
  if (size < 4) return ClientProtocol::kUndecided;
  if (StartsWith(bytes, size, "PRI ")) return ClientProtocol::kGrpc;
  for (const char* method : {"GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC", "CONN"}) {
    if (StartsWith(bytes, size, method)) return ClientProtocol::kHttp;
  }
  return ClientProtocol::kCapnp;
}

// Waits until a connection's first bytes tell its protocol. Observes a duplicate of the socket:
// the stream's own descriptor is registered with the event port already.
class ClientPort::Sniffer {
 public:
  Sniffer(kj::UnixEventPort& event_port, int fd)
      : dup_(::dup(fd)),
        observer_(kj::heap<kj::UnixEventPort::FdObserver>(
            event_port, dup_, kj::UnixEventPort::FdObserver::OBSERVE_READ)) {}
  ~Sniffer() {
    // Out of epoll before the close: epoll keys its entry on the open socket, which the stream
    // keeps open, so an entry left behind would fire into a destroyed observer.
    observer_ = nullptr;
    if (dup_ >= 0) ::close(dup_);
  }

  kj::Promise<ClientProtocol> Sniff() {
    char bytes[4];
    const ssize_t n = ::recv(dup_, bytes, sizeof(bytes), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return ClientProtocol::kUndecided;  // closed before saying anything
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return ClientProtocol::kUndecided;
    }
    if (n > 0) {
      const ClientProtocol protocol = SniffClientProtocol(bytes, static_cast<size_t>(n));
      if (protocol != ClientProtocol::kUndecided) return protocol;
    }
    return observer_->whenBecomesReadable().then([this]() { return Sniff(); });
  }

  // Hands the duplicate over (gRPC takes a descriptor it owns).
  int Release() {
    observer_ = nullptr;  // out of the event port before another owner may close it
    const int fd = dup_;
    dup_ = -1;
    return fd;
  }

 private:
  int dup_;
  kj::Own<kj::UnixEventPort::FdObserver> observer_;
};

kj::Promise<kj::Own<ClientPort>> ClientPort::Listen(kj::Network& network, kj::Timer& timer,
                                                    kj::UnixEventPort& event_port,
                                                    std::string address,
                                                    ClientPortHandlers handlers) {
  return network.parseAddress(address).then(
      [&timer, &event_port, handlers = std::move(handlers)](kj::Own<kj::NetworkAddress> addr) {
        return kj::heap<ClientPort>(addr->listen(), timer, event_port, handlers);
      });
}

ClientPort::ClientPort(kj::Own<kj::ConnectionReceiver> receiver, kj::Timer& timer,
                       kj::UnixEventPort& event_port, ClientPortHandlers handlers)
    : receiver_(kj::mv(receiver)),
      timer_(timer),
      event_port_(event_port),
      handlers_(std::move(handlers)),
      tasks_(kj::heap<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this))) {
  accepting_ = AcceptLoop().eagerlyEvaluate(nullptr);
}

kj::Promise<void> ClientPort::AcceptLoop() {
  return receiver_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    tasks_->add(Dispatch(kj::mv(stream)));
    return AcceptLoop();
  });
}

kj::Promise<void> ClientPort::Dispatch(kj::Own<kj::AsyncIoStream> stream) {
  int fd = -1;
  KJ_IF_MAYBE (got, stream->getFd()) {
    fd = *got;
  }
  if (fd < 0) {
    // Not a socket (cannot happen for accepted connections): the native API is the default.
    handlers_.capnp(kj::mv(stream));
    return kj::READY_NOW;
  }
  auto sniffer = kj::heap<Sniffer>(event_port_, fd);
  auto decided = timer_.timeoutAfter(kSniffTimeout, sniffer->Sniff());
  return decided.then(
      [this, stream = kj::mv(stream), sniffer = kj::mv(sniffer)](ClientProtocol protocol) mutable {
        switch (protocol) {
          case ClientProtocol::kCapnp:
            handlers_.capnp(kj::mv(stream));
            break;
          case ClientProtocol::kGrpc:
            if (handlers_.grpc) handlers_.grpc(sniffer->Release());
            break;  // the kj stream closes its own descriptor; gRPC keeps the duplicate
          case ClientProtocol::kHttp:
            if (handlers_.http) handlers_.http(kj::mv(stream));
            break;
          case ClientProtocol::kUndecided:
            break;  // closed before saying anything
        }
      });
}

}  // namespace kvstore::net
