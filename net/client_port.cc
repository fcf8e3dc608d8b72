#include "net/client_port.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "net/connection.h"
#include "net/prefixed_stream.h"

namespace kvstore::net {
namespace {

// How long a new connection may take to send its first four bytes.
constexpr kj::Duration kSniffTimeout = 10 * kj::SECONDS;

bool StartsWith(const char* bytes, size_t size, const char* prefix) {
  return size >= 4 && std::memcmp(bytes, prefix, 4) == 0;
}

// A TLS connection starts with a handshake record (content type 22).
constexpr char kTlsHandshakeRecord = 0x16;

// What Go's net/http (and so etcd) answers a plain HTTP request on a TLS port.
constexpr char kHttpToHttpsAnswer[] =
    "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

const char* ProtocolName(ClientProtocol protocol) {
  switch (protocol) {
    case ClientProtocol::kGrpc:
      return "gRPC";
    case ClientProtocol::kHttp:
      return "HTTP/1.1";
    case ClientProtocol::kCapnp:
      return "Cap'n Proto";
    case ClientProtocol::kUndecided:
      break;
  }
  return "nothing";
}

// Reads a decrypted stream's first bytes until they tell its protocol.
struct DecryptedSniff {
  kj::Own<kj::AsyncIoStream> stream;
  std::string common_name;  // of the client's verified certificate
  char bytes[4] = {};
  size_t size = 0;

  kj::Promise<ClientProtocol> Sniff() {
    return stream->tryRead(bytes + size, 1, sizeof(bytes) - size)
        .then([this](size_t n) -> kj::Promise<ClientProtocol> {
          if (n == 0) return ClientProtocol::kUndecided;  // closed before saying anything
          size += n;
          const ClientProtocol protocol = SniffClientProtocol(bytes, size);
          if (protocol != ClientProtocol::kUndecided) return protocol;
          return Sniff();
        });
  }
};

// Reads and discards until the end of the stream.
kj::Promise<void> Drain(kj::AsyncIoStream& stream) {
  auto buffer = kj::heapArray<kj::byte>(4096);
  auto& bytes = *buffer.begin();
  return stream.tryRead(&bytes, 1, buffer.size())
      .then([&stream](size_t n) -> kj::Promise<void> {
        if (n == 0) return kj::READY_NOW;
        return Drain(stream);
      })
      .attach(kj::mv(buffer));
}

// Relays bytes both ways between a TLS stream and the local end of gRPC's socketpair, until
// both directions have ended; an end in one direction is passed on as a half-close.
kj::Promise<void> Relay(kj::Own<kj::AsyncIoStream> tls, kj::Own<kj::AsyncIoStream> local) {
  kj::AsyncIoStream& a = *tls;
  kj::AsyncIoStream& b = *local;
  auto up = a.pumpTo(b).then([&b](uint64_t) { b.shutdownWrite(); },
                             [&b](kj::Exception&&) { b.shutdownWrite(); });
  auto down = b.pumpTo(a).then([&a](uint64_t) { a.shutdownWrite(); },
                               [&a](kj::Exception&&) { a.shutdownWrite(); });
  auto both = kj::heapArrayBuilder<kj::Promise<void>>(2);
  both.add(kj::mv(up));
  both.add(kj::mv(down));
  return kj::joinPromises(both.finish()).attach(kj::mv(tls), kj::mv(local));
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
      first_byte_ = bytes[0];
      const ClientProtocol protocol = SniffClientProtocol(bytes, static_cast<size_t>(n));
      if (protocol != ClientProtocol::kUndecided) return protocol;
    }
    return observer_->whenBecomesReadable().then([this]() { return Sniff(); });
  }

  // Hands the duplicate over (gRPC takes a descriptor it owns).
  char first_byte() const { return first_byte_; }

  int Release() {
    observer_ = nullptr;  // out of the event port before another owner may close it
    const int fd = dup_;
    dup_ = -1;
    return fd;
  }

 private:
  int dup_;
  kj::Own<kj::UnixEventPort::FdObserver> observer_;
  char first_byte_ = 0;
};

kj::Promise<kj::Own<ClientPort>> ClientPort::Listen(kj::Network& network, kj::Timer& timer,
                                                    kj::UnixEventPort& event_port,
                                                    std::string address,
                                                    ClientPortHandlers handlers,
                                                    ClientPortTls tls) {
  return network.parseAddress(address).then(
      [&timer, &event_port, handlers = std::move(handlers),
       tls = std::move(tls)](kj::Own<kj::NetworkAddress> addr) {
        return kj::heap<ClientPort>(addr->listen(), timer, event_port, handlers, tls);
      });
}

ClientPort::ClientPort(kj::Own<kj::ConnectionReceiver> receiver, kj::Timer& timer,
                       kj::UnixEventPort& event_port, ClientPortHandlers handlers,
                       ClientPortTls tls)
    : receiver_(kj::mv(receiver)),
      timer_(timer),
      event_port_(event_port),
      handlers_(std::move(handlers)),
      tls_(std::move(tls)),
      tasks_(kj::heap<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this))) {
  // The listeners' accept loop: a failed accept (out of file descriptors, say) is tried again
  // later instead of ending the port's accepting for good.
  accepting_ = AcceptEach(*receiver_, timer_, [this](kj::Own<kj::AsyncIoStream> stream) {
                 tasks_->add(Dispatch(kj::mv(stream)));
               }).eagerlyEvaluate(nullptr);
}

kj::Promise<void> ClientPort::Dispatch(kj::Own<kj::AsyncIoStream> stream) {
  int fd = -1;
  KJ_IF_MAYBE (got, stream->getFd()) {
    fd = *got;
  }
  if (fd < 0 && tls_.context != nullptr) {
    return tls_.context->Accept(kj::mv(stream)).then([this](TlsAccepted accepted) {
      return DispatchDecrypted(kj::mv(accepted), "unknown");
    });
  }
  if (fd < 0) {
    // Not a socket (cannot happen for accepted connections): the native API is the default.
    handlers_.capnp(kj::mv(stream));
    return kj::READY_NOW;
  }
  auto sniffer = kj::heap<Sniffer>(event_port_, fd);
  auto decided = timer_.timeoutAfter(kSniffTimeout, sniffer->Sniff());
  return decided.then([this, stream = kj::mv(stream), sniffer = kj::mv(sniffer)](
                          ClientProtocol protocol) mutable -> kj::Promise<void> {
    if (tls_.context != nullptr && protocol != ClientProtocol::kUndecided) {
      const std::string remote = RemoteAddressOf(*stream);
      if (sniffer->first_byte() != kTlsHandshakeRecord) {
        Reject(remote, absl::StrCat("not a TLS client (plain text on a TLS port): it speaks ",
                                    ProtocolName(protocol)));
        if (protocol != ClientProtocol::kHttp) return kj::READY_NOW;
        // Answer, half-close, and read what the client sent until it closes (a close with
        // unread bytes would reset the connection before the client reads the answer).
        sniffer = nullptr;
        auto& raw = *stream;
        return timer_
            .timeoutAfter(
                kSniffTimeout,
                raw.write(kHttpToHttpsAnswer, sizeof(kHttpToHttpsAnswer) - 1).then([&raw]() {
                  raw.shutdownWrite();
                  return Drain(raw);
                }))
            .attach(kj::mv(stream));
      }
      sniffer = nullptr;  // out of the event port before the stream reads
      return timer_.timeoutAfter(kTlsHandshakeTimeout, tls_.context->Accept(kj::mv(stream)))
          .then([this, remote](
                    TlsAccepted accepted) { return DispatchDecrypted(kj::mv(accepted), remote); },
                [this, remote](kj::Exception&& e) { Reject(remote, e.getDescription().cStr()); });
    }
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
    return kj::READY_NOW;
  });
}

kj::Promise<void> ClientPort::DispatchDecrypted(TlsAccepted accepted, std::string remote) {
  auto sniff = kj::heap<DecryptedSniff>();
  sniff->stream = kj::mv(accepted.stream);
  sniff->common_name = std::move(accepted.common_name);
  DecryptedSniff& state = *sniff;
  return timer_.timeoutAfter(kSniffTimeout, state.Sniff())
      .then([this, sniff = kj::mv(sniff),
             remote](ClientProtocol protocol) mutable -> kj::Promise<void> {
        auto stream = kj::heap<PrefixedStream>(
            kj::mv(sniff->stream),
            kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(sniff->bytes), sniff->size));
        switch (protocol) {
          case ClientProtocol::kCapnp:
            if (handlers_.capnp_tls) {
              handlers_.capnp_tls(kj::mv(stream), sniff->common_name);
            } else {
              handlers_.capnp(kj::mv(stream));
            }
            break;
          case ClientProtocol::kHttp:
            if (handlers_.http_tls) {
              handlers_.http_tls(kj::mv(stream), sniff->common_name);
            } else if (handlers_.http) {
              handlers_.http(kj::mv(stream));
            }
            break;
          case ClientProtocol::kGrpc: {
            if ((!handlers_.grpc && !handlers_.grpc_tls) || tls_.low_level == nullptr) break;
            int fds[2];
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) != 0) {
              Reject(remote, absl::StrCat("socketpair for gRPC: ", std::strerror(errno)));
              break;
            }
            auto local = tls_.low_level->wrapSocketFd(
                fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                            kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                            kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);
            // gRPC owns its end from here.
            if (handlers_.grpc_tls) {
              handlers_.grpc_tls(fds[1], sniff->common_name);
            } else {
              handlers_.grpc(fds[1]);
            }
            return Relay(kj::mv(stream), kj::mv(local));
          }
          case ClientProtocol::kUndecided:
            break;
        }
        return kj::READY_NOW;
      });
}

void ClientPort::Reject(const std::string& remote, const std::string& why) {
  if (tls_.on_rejected) tls_.on_rejected(remote, why);
}

}  // namespace kvstore::net
