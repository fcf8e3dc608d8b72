#include "net/connection.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
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

// What the two-party network is told its receive limit is: it reads through ReadLimitedStream
// (the real limit) and only uses this to refuse sending a larger message.
capnp::ReaderOptions SendOptions(capnp::ReaderOptions read_options) {
  capnp::ReaderOptions options = read_options;
  options.traversalLimitInWords =
      std::max<uint64_t>(read_options.traversalLimitInWords, kMaxSendBytes / sizeof(capnp::word));
  return options;
}

}  // namespace

RpcConnection::RpcConnection(kj::Own<kj::AsyncIoStream> stream, capnp::ReaderOptions options)
    : stream_(kj::mv(stream)),
      messages_(*stream_, options),
      network_(messages_, capnp::rpc::twoparty::Side::CLIENT, SendOptions(options)),
      rpc_system_(capnp::makeRpcClient(network_)) {}

RpcConnection::RpcConnection(kj::Own<kj::AsyncIoStream> stream, capnp::ReaderOptions options,
                             capnp::Capability::Client bootstrap)
    : stream_(kj::mv(stream)),
      messages_(*stream_, options),
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
  timer_ = &timer;
  return network.parseAddress(kj::StringPtr(address.c_str(), address.size()))
      .then([this](kj::Own<kj::NetworkAddress> parsed) {
        receiver_ = parsed->listen();
        port_ = receiver_->getPort();
        accepting_ = AcceptLoop().eagerlyEvaluate(nullptr);
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

kj::Promise<void> RpcListener::AcceptLoop() {
  return receiver_->accept().then(
      [this](kj::Own<kj::AsyncIoStream> stream) {
        Accept(kj::mv(stream));
        return AcceptLoop();
      },
      [this](kj::Exception&&) {
        return timer_->afterDelay(kAcceptRetryDelay).then([this] { return AcceptLoop(); });
      });
}

// A connection that ends with an error is over all the same; its peer sees the break.
void RpcListener::taskFailed(kj::Exception&&) {}

}  // namespace kvstore::net
