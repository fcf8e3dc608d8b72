#include "net/client_port.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kj/async-io.h"

namespace kvstore::net {
namespace {

TEST(SniffClientProtocolTest, TellsTheProtocolsApartByTheirFirstBytes) {
  const std::string grpc_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  EXPECT_EQ(SniffClientProtocol(grpc_preface.data(), grpc_preface.size()), ClientProtocol::kGrpc);
  for (const std::string http :
       {"GET / HTTP/1.1\r\n", "POST /v3/kv/put HTTP/1.1\r\n", "PUT /x HTTP/1.1\r\n",
        "HEAD / HTTP/1.1\r\n", "DELETE /x HTTP/1.1\r\n", "OPTIONS * HTTP/1.1\r\n"}) {
    EXPECT_EQ(SniffClientProtocol(http.data(), http.size()), ClientProtocol::kHttp) << http;
  }
  // A Cap'n Proto message starts with its segment count minus one, little-endian.
  const char capnp[] = {0, 0, 0, 0, 2, 0, 0, 0};
  EXPECT_EQ(SniffClientProtocol(capnp, sizeof(capnp)), ClientProtocol::kCapnp);
  // 72 segments starts with 'G', but what follows is not "ET ".
  const char capnp_g[] = {'G', 0, 0, 0};
  EXPECT_EQ(SniffClientProtocol(capnp_g, sizeof(capnp_g)), ClientProtocol::kCapnp);
}

TEST(SniffClientProtocolTest, WaitsForFourBytesOnlyWhenTheyCouldBeText) {
  EXPECT_EQ(SniffClientProtocol("", 0), ClientProtocol::kUndecided);
  EXPECT_EQ(SniffClientProtocol("PR", 2), ClientProtocol::kUndecided);
  EXPECT_EQ(SniffClientProtocol("GE", 2), ClientProtocol::kUndecided);
  const char zero[] = {0};
  EXPECT_EQ(SniffClientProtocol(zero, 1), ClientProtocol::kCapnp);
}

// A real listener: each connection goes to the handler of the protocol it speaks, and the
// handler reads the connection from its first byte.
class ClientPortTest : public ::testing::Test {
 protected:
  ClientPortTest() : io_(kj::setupAsyncIo()) {}
  ~ClientPortTest() noexcept override = default;

  void SetUp() override {
    ClientPortHandlers handlers;
    handlers.capnp = [this](kj::Own<kj::AsyncIoStream> stream) { Keep("capnp", kj::mv(stream)); };
    handlers.http = [this](kj::Own<kj::AsyncIoStream> stream) { Keep("http", kj::mv(stream)); };
    handlers.grpc = [this](int fd) {
      seen_.push_back("grpc");
      // The descriptor is the handler's: read the preface from it directly.
      char bytes[4] = {};
      ssize_t n = ::recv(fd, bytes, sizeof(bytes), MSG_WAITALL);
      first_bytes_.push_back(n == 4 ? std::string(bytes, 4) : "short read");
      ::close(fd);
    };
    port_ = ClientPort::Listen(io_.provider->getNetwork(), io_.provider->getTimer(),
                               io_.unixEventPort, "127.0.0.1:0", handlers)
                .wait(io_.waitScope);
  }

  void Keep(const char* protocol, kj::Own<kj::AsyncIoStream> stream) {
    seen_.push_back(protocol);
    auto buffer = kj::heapArray<char>(4);
    auto read = stream->read(buffer.begin(), 4);
    reads_.add(read.then([this, buffer = kj::mv(buffer)]() mutable {
      first_bytes_.push_back(std::string(buffer.begin(), 4));
    }));
    streams_.add(kj::mv(stream));
  }

  // Connects, sends `first`, waits a moment, then sends `second`.
  void Send(const std::string& first, const std::string& second = "") {
    auto address = io_.provider->getNetwork()
                       .parseAddress(kj::str("127.0.0.1:", port_->port()))
                       .wait(io_.waitScope);
    auto connection = address->connect().wait(io_.waitScope);
    connection->write(first.data(), first.size()).wait(io_.waitScope);
    io_.provider->getTimer().afterDelay(50 * kj::MILLISECONDS).wait(io_.waitScope);
    if (!second.empty()) connection->write(second.data(), second.size()).wait(io_.waitScope);
    io_.provider->getTimer().afterDelay(50 * kj::MILLISECONDS).wait(io_.waitScope);
    clients_.add(kj::mv(connection));
  }

  kj::AsyncIoContext io_;
  kj::Own<ClientPort> port_;
  std::vector<std::string> seen_;
  std::vector<std::string> first_bytes_;
  kj::Vector<kj::Promise<void>> reads_;
  kj::Vector<kj::Own<kj::AsyncIoStream>> streams_;
  kj::Vector<kj::Own<kj::AsyncIoStream>> clients_;
};

TEST_F(ClientPortTest, EachConnectionReachesItsProtocolWithNothingConsumed) {
  Send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  Send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  Send(std::string("\0\0\0\0\1\0\0\0", 8));
  // Two bytes that could be text, then the rest: decided only once four have come.
  Send("PO", "ST /v3/kv/range HTTP/1.1\r\n");
  for (auto& read : reads_) read.wait(io_.waitScope);
  EXPECT_EQ(seen_, (std::vector<std::string>{"grpc", "http", "capnp", "http"}));
  EXPECT_EQ(first_bytes_,
            (std::vector<std::string>{"PRI ", "GET ", std::string("\0\0\0\0", 4), "POST"}));
}

TEST_F(ClientPortTest, AConnectionThatClosesSilentlyGoesNowhere) {
  auto address = io_.provider->getNetwork()
                     .parseAddress(kj::str("127.0.0.1:", port_->port()))
                     .wait(io_.waitScope);
  { auto connection = address->connect().wait(io_.waitScope); }
  io_.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).wait(io_.waitScope);
  EXPECT_TRUE(seen_.empty());
  // The listener still serves the next connection.
  Send("GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(seen_, (std::vector<std::string>{"http"}));
}

}  // namespace
}  // namespace kvstore::net
