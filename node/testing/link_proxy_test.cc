// The link proxy against an echo server on the test's own event loop: forwarding, attribution of
// a connection to the process that opened it, and each fault (refuse, blackhole, delay, lossy).

#include "node/testing/link_proxy.h"

#include <unistd.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "kj/async-io.h"

namespace kvstore::node::testing {
namespace {

constexpr int kDialer = 0;
constexpr int kServer = 1;

class LinkProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto address = io_.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io_.waitScope);
    listener_ = address->listen();
    accepting_ = AcceptLoop().eagerlyEvaluate(nullptr);
    auto proxy = LinkProxy::Start(7);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = std::move(*proxy);
    auto port = proxy_->AddDestination(kServer, static_cast<uint16_t>(listener_->getPort()));
    ASSERT_TRUE(port.ok()) << port.status();
    proxy_port_ = *port;
  }

  // Echoes every connection's bytes back.
  kj::Promise<void> AcceptLoop() {
    return listener_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
      echoes_.add(Echo(*stream).attach(kj::mv(stream)));
      return AcceptLoop();
    });
  }
  kj::Promise<void> Echo(kj::AsyncIoStream& stream) {
    auto buffer = kj::heapArray<kj::byte>(4096);
    kj::byte* data = buffer.begin();
    return stream.tryRead(data, 1, buffer.size())
        .then([this, &stream, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
          if (n == 0) return kj::READY_NOW;
          return stream.write(buffer.begin(), n).attach(kj::mv(buffer)).then([this, &stream]() {
            return Echo(stream);
          });
        });
  }

  kj::Own<kj::AsyncIoStream> Dial() {
    return io_.provider->getNetwork()
        .parseAddress("127.0.0.1", proxy_port_)
        .then([](kj::Own<kj::NetworkAddress> a) { return a->connect(); })
        .wait(io_.waitScope);
  }

  // Writes `text` and reads as many bytes back within `timeout`: what came back, or "<closed>"
  // when the connection ended or failed, or "<nothing>" at the timeout.
  std::string RoundTrip(kj::AsyncIoStream& stream, const std::string& text,
                        kj::Duration timeout = 2 * kj::SECONDS) {
    auto buffer = kj::heapArray<char>(text.size());
    try {
      stream.write(text.data(), text.size()).wait(io_.waitScope);
      auto read = stream.read(buffer.begin(), text.size()).then([&]() -> std::string {
        return std::string(buffer.begin(), text.size());
      });
      return io_.provider->getTimer().timeoutAfter(timeout, kj::mv(read)).wait(io_.waitScope);
    } catch (const kj::Exception& e) {
      if (e.getType() == kj::Exception::Type::OVERLOADED) return "<nothing>";
      return "<closed>";
    }
  }

  void Pump(kj::Duration d) { io_.provider->getTimer().afterDelay(d).wait(io_.waitScope); }

  // kj's objects have throwing destructors, which a gtest fixture's members may not have.
  struct Ignore : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  };
  struct Loop {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    kj::Own<kj::ConnectionReceiver> listener;
    kj::Promise<void> accepting = nullptr;
    Ignore ignore;
    kj::TaskSet echoes{ignore};
  };
  std::unique_ptr<Loop> loop_ = std::make_unique<Loop>();
  kj::AsyncIoContext& io_ = loop_->io;
  kj::Own<kj::ConnectionReceiver>& listener_ = loop_->listener;
  kj::Promise<void>& accepting_ = loop_->accepting;
  kj::TaskSet& echoes_ = loop_->echoes;
  std::unique_ptr<LinkProxy> proxy_;
  uint16_t proxy_port_ = 0;
};

TEST_F(LinkProxyTest, ForwardsAndAttributesConnectionsToTheDialingProcess) {
  auto unknown = Dial();
  EXPECT_EQ(RoundTrip(*unknown, "hello"), "hello");
  EXPECT_EQ(proxy_->Stats(kUnknownMember, kServer).connections, 1u);

  proxy_->SetProcess(kDialer, getpid());
  auto known = Dial();
  EXPECT_EQ(RoundTrip(*known, "world!"), "world!");
  const LinkStats stats = proxy_->Stats(kDialer, kServer);
  EXPECT_EQ(stats.connections, 1u);
  EXPECT_EQ(stats.bytes_forwarded, 12u);  // both directions
  EXPECT_EQ(proxy_->Stats(kUnknownMember, kServer).connections, 1u);
}

TEST_F(LinkProxyTest, RefusedLinkResetsOpenConnectionsAndRefusesNewOnes) {
  proxy_->SetProcess(kDialer, getpid());
  auto open = Dial();
  EXPECT_EQ(RoundTrip(*open, "a"), "a");
  proxy_->SetFault(kDialer, kServer, LinkFault::Refused());
  EXPECT_EQ(RoundTrip(*open, "b"), "<closed>");
  // The TCP handshake completes, then the proxy resets at once: the reset may already be there
  // when the connect completes.
  try {
    auto refused = Dial();
    EXPECT_EQ(RoundTrip(*refused, "c"), "<closed>");
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED) << e.getDescription().cStr();
  }
  EXPECT_EQ(proxy_->Stats(kDialer, kServer).refused, 1u);
  EXPECT_EQ(proxy_->Stats(kDialer, kServer).resets, 1u);
  // The other direction of the pair is a link of its own, untouched.
  EXPECT_EQ(proxy_->Stats(kServer, kDialer).connections, 0u);

  proxy_->HealAll();
  auto healed = Dial();
  EXPECT_EQ(RoundTrip(*healed, "d"), "d");
}

TEST_F(LinkProxyTest, BlackholedLinkDropsBytesAndResetsTheDamagedConnectionOnHeal) {
  proxy_->SetProcess(kDialer, getpid());
  auto open = Dial();
  EXPECT_EQ(RoundTrip(*open, "a"), "a");
  proxy_->SetFault(kDialer, kServer, LinkFault::Blackholed());
  EXPECT_EQ(RoundTrip(*open, "lost", 300 * kj::MILLISECONDS), "<nothing>");
  auto fresh = Dial();  // accepted, then silent
  EXPECT_EQ(RoundTrip(*fresh, "gone", 300 * kj::MILLISECONDS), "<nothing>");
  EXPECT_EQ(proxy_->Stats(kDialer, kServer).bytes_dropped, 8u);
  proxy_->HealAll();
  // Both lost bytes: their streams have a hole, so they are reset rather than resumed.
  EXPECT_EQ(RoundTrip(*open, "x"), "<closed>");
  EXPECT_EQ(RoundTrip(*fresh, "y"), "<closed>");
  auto healed = Dial();
  EXPECT_EQ(RoundTrip(*healed, "z"), "z");
}

TEST_F(LinkProxyTest, DelayedLinkAddsItsDelayToEachDirection) {
  proxy_->SetProcess(kDialer, getpid());
  proxy_->SetFault(kDialer, kServer, LinkFault::Delayed(150));
  auto open = Dial();
  const kj::TimePoint start = io_.provider->getTimer().now();
  EXPECT_EQ(RoundTrip(*open, "slow"), "slow");
  const kj::Duration took = io_.provider->getTimer().now() - start;
  EXPECT_GE(took, 300 * kj::MILLISECONDS);
  EXPECT_LT(took, 1500 * kj::MILLISECONDS);
}

TEST_F(LinkProxyTest, LossyLinkResetsConnectionsCarryingAChunk) {
  proxy_->SetProcess(kDialer, getpid());
  proxy_->SetFault(kDialer, kServer, LinkFault::Lossy(1.0));
  auto open = Dial();
  EXPECT_EQ(RoundTrip(*open, "drop"), "<closed>");
  EXPECT_EQ(proxy_->Stats(kDialer, kServer).resets, 1u);
  proxy_->SetFault(kDialer, kServer, LinkFault::Lossy(0.0));
  auto fine = Dial();
  EXPECT_EQ(RoundTrip(*fine, "keep"), "keep");
}

}  // namespace
}  // namespace kvstore::node::testing
