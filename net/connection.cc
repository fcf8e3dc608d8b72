#include "net/connection.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "capnp/serialize-async.h"
#include "core/base/errors.h"
#include "core/raft/check.h"

namespace kvstore::net {

absl::StatusOr<std::string> NetworkAddressOf(absl::string_view url) {
  absl::string_view address = url;
  if (!absl::ConsumePrefix(&address, "https://")) absl::ConsumePrefix(&address, "http://");
  absl::ConsumeSuffix(&address, "/");
  if (address.empty() || (absl::StrContains(address, "/") && !absl::StartsWith(address, "unix:"))) {
    return Error(ErrorCode::kInvalidArgument,
                 absl::StrCat("URL ", url, ": expected http://host:port, host:port or unix:/path"));
  }
  return std::string(address);
}

bool IsTlsUrl(absl::string_view url) { return absl::StartsWith(url, "https://"); }

kj::Promise<kj::Own<kj::AsyncIoStream>> ConnectWithin(kj::Network& network, kj::Timer& timer,
                                                      std::string address, kj::Duration timeout,
                                                      TlsContext* tls) {
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect =
      network.parseAddress(kj::StringPtr(address.c_str(), address.size()))
          .then([](kj::Own<kj::NetworkAddress> parsed) {
            return parsed->connect().attach(kj::mv(parsed));
          });
  if (tls != nullptr) {
    connect = connect.then([tls, host = HostOf(address)](kj::Own<kj::AsyncIoStream> stream) {
      return tls->Connect(kj::mv(stream), host);
    });
  }
  return timer.afterDelay(timeout)
      .then([address = std::move(address), timeout]() -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
        return KJ_EXCEPTION(DISCONNECTED, "connect timed out", address.c_str(),
                            timeout / kj::MILLISECONDS);
      })
      .exclusiveJoin(kj::mv(connect));
}

namespace {

kj::Promise<void> AcceptLoop(kj::ConnectionReceiver* receiver, kj::Timer* timer,
                             std::function<void(kj::Own<kj::AsyncIoStream>)>* accept) {
  return receiver->accept().then(
      [receiver, timer, accept](kj::Own<kj::AsyncIoStream> stream) {
        (*accept)(kj::mv(stream));
        return AcceptLoop(receiver, timer, accept);
      },
      [receiver, timer, accept](kj::Exception&&) {
        return timer->afterDelay(kAcceptRetryDelay).then([receiver, timer, accept] {
          return AcceptLoop(receiver, timer, accept);
        });
      });
}

}  // namespace

kj::Promise<void> AcceptEach(kj::ConnectionReceiver& receiver, kj::Timer& timer,
                             std::function<void(kj::Own<kj::AsyncIoStream>)> accept) {
  auto owned = kj::heap<std::function<void(kj::Own<kj::AsyncIoStream>)>>(std::move(accept));
  auto* each = owned.get();
  return AcceptLoop(&receiver, &timer, each).attach(kj::mv(owned));
}

namespace {

// What the two-party network is told its receive limit is: it reads through ReadLimitedStream
// (the real limit) and only uses this to refuse sending a larger message.
capnp::ReaderOptions SendOptions(capnp::ReaderOptions read_options) {
  capnp::ReaderOptions options = read_options;
  options.traversalLimitInWords =
      std::max<uint64_t>(read_options.traversalLimitInWords, kMaxSendBytes / sizeof(capnp::word));
  return options;
}

// Replays bytes already read from a stream, then reads on from it.
class PrefixedInput final : public kj::AsyncInputStream {
 public:
  PrefixedInput(kj::Array<kj::byte> prefix, kj::AsyncInputStream& inner)
      : prefix_(kj::mv(prefix)), inner_(inner) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    const size_t n = std::min(max_bytes, prefix_.size() - offset_);
    if (n > 0) memcpy(buffer, prefix_.begin() + offset_, n);
    offset_ += n;
    if (n >= min_bytes) return n;
    return inner_.tryRead(static_cast<kj::byte*>(buffer) + n, min_bytes - n, max_bytes - n)
        .then([n](size_t more) { return n + more; });
  }

 private:
  kj::Array<kj::byte> prefix_;
  size_t offset_ = 0;
  kj::AsyncInputStream& inner_;
};

uint32_t LittleEndian32(const kj::byte* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Reads and drops `bytes` from `input`, a 64 KiB buffer at a time.
kj::Promise<void> Discard(kj::AsyncInputStream& input, uint64_t bytes) {
  if (bytes == 0) return kj::READY_NOW;
  auto buffer = kj::heapArray<kj::byte>(std::min<uint64_t>(bytes, 64 << 10));
  const size_t n = buffer.size();
  kj::Promise<void> read = input.read(buffer.begin(), n);
  return read.attach(kj::mv(buffer)).then([&input, bytes, n] { return Discard(input, bytes - n); });
}

// Cap'n Proto's own bound on a message's segment count (serialize.c++).
constexpr uint32_t kMaxSegments = 512;

}  // namespace

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> RpcConnection::ReadLimitedStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fd_space, capnp::ReaderOptions,
    kj::ArrayPtr<capnp::word> scratch) {
  if (!explain_oversize_) return inner_.tryReadMessage(fd_space, read_options_, scratch);
  using Result = kj::Maybe<capnp::MessageReaderAndFds>;
  // The segment table: a word holding the segment count - 1 and the first segment's size, then
  // the other sizes, padded to a word. Cap'n Proto reads it again from PrefixedInput.
  auto first = kj::heapArray<kj::byte>(8);
  kj::byte* first_ptr = first.begin();
  return stream_.tryRead(first_ptr, 8, 8)
      .then([this, first = kj::mv(first)](size_t n) mutable -> kj::Promise<kj::Array<kj::byte>> {
        if (n == 0) return kj::Array<kj::byte>(nullptr);
        if (n < 8) return KJ_EXCEPTION(DISCONNECTED, "premature EOF in a message's segment table");
        const uint32_t segments = LittleEndian32(first.begin()) + 1;
        if (segments == 0 || segments > kMaxSegments) return kj::mv(first);  // capnp refuses it
        auto table = kj::heapArray<kj::byte>(8 + (segments / 2) * 8);
        memcpy(table.begin(), first.begin(), 8);
        if (table.size() == 8) return kj::mv(table);
        kj::Promise<void> rest = stream_.read(table.begin() + 8, table.size() - 8);
        return rest.then([table = kj::mv(table)]() mutable { return kj::mv(table); });
      })
      .then([this, scratch](kj::Array<kj::byte> table) -> kj::Promise<Result> {
        if (table.size() == 0) return Result(nullptr);  // a clean end between messages
        const uint32_t segments = LittleEndian32(table.begin()) + 1;
        uint64_t words = 0;
        if (segments != 0 && segments <= kMaxSegments) {
          for (uint32_t i = 0; i < segments; ++i)
            words += LittleEndian32(table.begin() + 4 + 4 * i);
        }
        const uint64_t limit = read_options_.traversalLimitInWords;
        if (words <= limit) {
          auto input = kj::heap<PrefixedInput>(kj::mv(table), stream_);
          kj::Promise<kj::Maybe<kj::Own<capnp::MessageReader>>> read =
              capnp::tryReadMessage(*input, read_options_, scratch);
          return read.attach(kj::mv(input))
              .then([](kj::Maybe<kj::Own<capnp::MessageReader>> reader) -> Result {
                KJ_IF_MAYBE (r, reader) {
                  return capnp::MessageReaderAndFds{kj::mv(*r), nullptr};
                }
                return nullptr;
              });
        }
        const uint64_t bytes = words * sizeof(capnp::word);
        const std::string reason =
            absl::StrCat(kRequestTooLargeReason, " (a message of ", bytes,
                         " bytes; this member reads at most ", limit * sizeof(capnp::word), ")");
        kj::Exception refused(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                              kj::heapString(reason.data(), reason.size()));
        // Read the body through, so the caller finishes writing and then reads the reason;
        // a body larger than anything a member sends is not worth the wait.
        if (bytes > kMaxSendBytes) return kj::mv(refused);
        return Discard(stream_, bytes).then([refused = kj::mv(refused)]() mutable -> Result {
          kj::throwFatalException(kj::mv(refused));
        });
      });
}

RpcConnection::RpcConnection(kj::Own<kj::AsyncIoStream> stream, capnp::ReaderOptions options)
    : stream_(kj::mv(stream)),
      messages_(*stream_, options, /*explain_oversize=*/false),
      network_(messages_, capnp::rpc::twoparty::Side::CLIENT, SendOptions(options)),
      rpc_system_(capnp::makeRpcClient(network_)) {}

RpcConnection::RpcConnection(kj::Own<kj::AsyncIoStream> stream, capnp::ReaderOptions options,
                             capnp::Capability::Client bootstrap)
    : stream_(kj::mv(stream)),
      messages_(*stream_, options, /*explain_oversize=*/true),
      network_(messages_, capnp::rpc::twoparty::Side::SERVER, SendOptions(options)),
      rpc_system_(capnp::makeRpcServer(network_, kj::mv(bootstrap))) {
  rpc_system_.setFlowLimit(kMaxInflightCallBytesPerConnection / sizeof(capnp::word));
}

capnp::Capability::Client RpcConnection::BootstrapCapability() {
  capnp::word scratch[4] = {};
  capnp::MallocMessageBuilder message(scratch);
  auto vat_id = message.getRoot<capnp::rpc::twoparty::VatId>();
  vat_id.setSide(capnp::rpc::twoparty::Side::SERVER);
  return rpc_system_.bootstrap(vat_id);
}

RpcListener::RpcListener(capnp::Capability::Client bootstrap, capnp::ReaderOptions options)
    : bootstrap_(kj::mv(bootstrap)), options_(options), connections_(*this) {}

RpcListener::RpcListener(std::function<capnp::Capability::Client()> make_bootstrap,
                         capnp::ReaderOptions options)
    : bootstrap_(nullptr),
      make_bootstrap_(std::move(make_bootstrap)),
      options_(options),
      connections_(*this) {}

kj::Promise<void> RpcListener::Listen(kj::Network& network, kj::Timer& timer, std::string address) {
  RAFT_CHECK(receiver_.get() == nullptr) << "RpcListener::Listen called twice";
  return network.parseAddress(kj::StringPtr(address.c_str(), address.size()))
      .then([this, &timer](kj::Own<kj::NetworkAddress> parsed) {
        receiver_ = parsed->listen();
        port_ = receiver_->getPort();
        accepting_ = AcceptEach(*receiver_, timer, [this](kj::Own<kj::AsyncIoStream> stream) {
                       Accept(kj::mv(stream));
                     }).eagerlyEvaluate(nullptr);
      });
}

RpcListener::~RpcListener() = default;

void RpcListener::Accept(kj::Own<kj::AsyncIoStream> stream) {
  Accept(kj::mv(stream), make_bootstrap_ ? make_bootstrap_() : bootstrap_);
}

void RpcListener::Accept(kj::Own<kj::AsyncIoStream> stream, capnp::Capability::Client bootstrap) {
  auto connection = kj::heap<RpcConnection>(kj::mv(stream), options_, kj::mv(bootstrap));
  kj::Promise<void> ended = connection->OnDisconnect();
  connections_.add(ended.attach(kj::mv(connection)));
}

// A connection that ends with an error is over all the same; its peer sees the break.
void RpcListener::taskFailed(kj::Exception&&) {}

}  // namespace kvstore::net
