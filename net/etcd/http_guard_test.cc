#include "net/etcd/http_guard.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "kj/compat/http.h"

namespace kvstore::net::etcd {
namespace {

// Go 1.19's net/http answers (etcd 3.4.23's, taken with raw requests against Debian's etcd).
std::string GoRefusal(const std::string& status_line, const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", status_line,
                      "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n",
                      body);
}
std::string GoStatusError(const std::string& text) {
  return GoRefusal("400 Bad Request: " + text, "400 Bad Request: " + text);
}
const std::string kGoPlain400 = GoRefusal("400 Bad Request", "400 Bad Request");

std::string RefusalOf(const std::string& head) { return CheckRequestHead(head).refusal; }

TEST(CheckRequestHead, SpaceOrTabBeforeColonIsAnInvalidName) {
  EXPECT_EQ(RefusalOf("POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nAuthorization : x\r\n\r\n"),
            GoStatusError("invalid header name"));
  EXPECT_EQ(RefusalOf("GET /health HTTP/1.1\r\nHost: x\r\nFoo\t: x\r\n\r\n"),
            GoStatusError("invalid header name"));
  EXPECT_EQ(RefusalOf(std::string("GET / HTTP/1.1\r\nHost: x\r\nF\0o: y\r\n\r\n", 34)),
            GoStatusError("invalid header name"));
}

TEST(CheckRequestHead, ControlCharactersInValuesAreRefused) {
  EXPECT_EQ(RefusalOf(std::string("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\0b\r\n\r\n", 35)),
            GoStatusError("invalid header value"));
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\x01z\r\n\r\n"),
            GoStatusError("invalid header value"));
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\x7fz\r\n\r\n"),
            GoStatusError("invalid header value"));
  // A tab and bytes above 0x7f (obs-text) are fine.
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\nHost: x\r\nFoo: a\tb\xc3\xa9\r\n\r\n"), "");
}

TEST(CheckRequestHead, HostRules) {
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\n\r\n"), GoStatusError("missing required Host header"));
  EXPECT_EQ(RefusalOf("GET / HTTP/1.0\r\n\r\n"), "");  // HTTP/1.0 needs none
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            GoStatusError("too many Host headers"));
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            GoStatusError("malformed Host header"));
  // A line with leading white space continues the one before: here the Host.
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\nHost: x\r\n Foo: x\r\n\r\n"),
            GoStatusError("malformed Host header"));
  // "Host : x" is not the Host header (its key is not a token), so the Host is missing.
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
            GoStatusError("missing required Host header"));
}

TEST(CheckRequestHead, MalformedLinesGetAPlain400) {
  EXPECT_EQ(RefusalOf("GET\r\n\r\n"), kGoPlain400);
  EXPECT_EQ(RefusalOf("GET /\r\n\r\n"), kGoPlain400);
  EXPECT_EQ(RefusalOf("GE(T / HTTP/1.1\r\nHost: x\r\n\r\n"), kGoPlain400);
  EXPECT_EQ(RefusalOf("GET / HTTX/1.1\r\nHost: x\r\n\r\n"), kGoPlain400);
  EXPECT_EQ(RefusalOf("GET  HTTP/1.1\r\nHost: x\r\n\r\n"), kGoPlain400);
  EXPECT_EQ(RefusalOf("GET relative HTTP/1.1\r\nHost: x\r\n\r\n"), kGoPlain400);
  EXPECT_EQ(RefusalOf("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"), kGoPlain400);
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\nHost: x\r\nFoo\r\n\r\n"), kGoPlain400);  // no colon
  EXPECT_EQ(RefusalOf("GET / HTTP/1.1\r\n Host: x\r\n\r\n"), kGoPlain400);        // leading space
  EXPECT_EQ(RefusalOf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"), kGoPlain400);
  EXPECT_EQ(
      RefusalOf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
      kGoPlain400);
  EXPECT_EQ(RefusalOf("GET / HTTP/9.9\r\nHost: x\r\n\r\n"),
            GoRefusal("505 HTTP Version Not Supported: unsupported protocol version",
                      "505 HTTP Version Not Supported: unsupported protocol version"));
  EXPECT_EQ(RefusalOf("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            GoRefusal("501 Not Implemented", "Unsupported transfer encoding"));
  EXPECT_EQ(
      RefusalOf("GET / HTTP/1.1\r\nHost: x\r\nFoo: " + std::string(kMaxRequestHeadBytes, 'a') +
                "\r\n\r\n"),
      GoRefusal("431 Request Header Fields Too Large", "431 Request Header Fields Too Large"));
}

TEST(CheckRequestHead, AcceptedHeadsInTheirNormalForm) {
  CheckedHead head = CheckRequestHead(
      "POST /v3/kv/put?x=%41 HTTP/1.1\nhost: h:1\nauthorization:  tok \nx-long: a\n\tb\n: "
      "skipped\nContent-Length: 7\nContent-Length: 7\n\n");
  EXPECT_EQ(head.refusal, "");
  EXPECT_EQ(head.normal,
            "POST /v3/kv/put?x=%41 HTTP/1.1\r\nHost: h:1\r\nAuthorization: tok\r\nX-Long: a "
            "b\r\nContent-Length: 7\r\n\r\n");
  EXPECT_EQ(head.body, CheckedHead::Body::kLength);
  EXPECT_EQ(head.length, 7u);

  head = CheckRequestHead(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nTransfer-Encoding: Chunked\r\n\r\n");
  EXPECT_EQ(head.refusal, "");
  EXPECT_EQ(head.body, CheckedHead::Body::kChunked);
  EXPECT_EQ(head.normal, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
}

// A kj-http server behind the guard, over an in-process pipe: what a client reads back.
class GuardedServer : public kj::HttpService {
 public:
  GuardedServer() : io_(kj::setupAsyncIo()), server_(io_.provider->getTimer(), table_, *this) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                            Response& response) override {
    ++requests_;
    if (url == "/stream") {
      // An answer of unknown length (kj sends it chunked), written in two pieces a moment
      // apart, as the gateway's watch stream writes its events.
      kj::HttpHeaders out(table_);
      auto stream = response.send(200, "OK", out, nullptr);
      auto& s = *stream;
      return s.write("abc", 3)
          .then([this]() { return io_.provider->getTimer().afterDelay(20 * kj::MILLISECONDS); })
          .then([&s]() { return s.write("def", 3); })
          .attach(kj::mv(stream));
    }
    return body.readAllText().then([this, url, &headers, &response](kj::String text) {
      std::string echo = absl::StrCat(url.cStr(), " ", text.cStr());
      headers.forEach([&echo](kj::StringPtr name, kj::StringPtr value) {
        absl::StrAppend(&echo, " ", name.cStr(), "=", value.cStr());
      });
      auto owned = kj::heap<std::string>(std::move(echo));
      kj::HttpHeaders out(table_);
      auto stream = response.send(200, "OK", out, owned->size());
      auto written = stream->write(owned->data(), owned->size());
      return written.attach(kj::mv(owned), kj::mv(stream));
    });
  }

  // How many requests reached the service.
  int requests() const { return requests_; }

  // Sends `bytes` and reads until the server ends the connection, with the client's side left
  // open; "(still open)" when it does not within `wait`.
  std::string ExchangeLeftOpen(const std::string& bytes, kj::Duration wait = 2 * kj::SECONDS) {
    auto pipe = io_.provider->newTwoWayPipe();
    auto served = ServeCheckedHttp(server_, io_.provider->getTimer(), kj::mv(pipe.ends[0]))
                      .eagerlyEvaluate(nullptr);
    auto& client = *pipe.ends[1];
    client.write(bytes.data(), bytes.size()).wait(io_.waitScope);
    auto answer = io_.provider->getTimer()
                      .timeoutAfter(wait, client.readAllText())
                      .then([](kj::String text) { return std::string(text.cStr(), text.size()); },
                            [](kj::Exception&&) { return std::string("(still open)"); })
                      .wait(io_.waitScope);
    return answer;
  }

  // Sends `bytes`, half-closes, and reads the whole answer.
  std::string Exchange(const std::string& bytes) {
    auto pipe = io_.provider->newTwoWayPipe();
    // As in kvnode, where a TaskSet holds it: run without anyone waiting on it.
    auto served = ServeCheckedHttp(server_, io_.provider->getTimer(), kj::mv(pipe.ends[0]))
                      .eagerlyEvaluate(nullptr);
    auto& client = *pipe.ends[1];
    client.write(bytes.data(), bytes.size()).wait(io_.waitScope);
    client.shutdownWrite();
    kj::String answer = client.readAllText().wait(io_.waitScope);
    served.wait(io_.waitScope);
    return std::string(answer.cStr(), answer.size());
  }

 private:
  kj::AsyncIoContext io_;
  kj::HttpHeaderTable table_;
  kj::HttpServer server_;
  int requests_ = 0;
};

TEST(ServeCheckedHttp, SpaceBeforeColonGetsGosAnswerAfterTheRequestsBeforeIt) {
  GuardedServer server;
  const std::string answer = server.Exchange(
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      "POST /b HTTP/1.1\r\nHost: x\r\nAuthorization : secret\r\nContent-Length: 2\r\n\r\n{}");
  const std::string refusal = GoStatusError("invalid header name");
  EXPECT_EQ(answer.substr(0, 15), "HTTP/1.1 200 OK") << answer;
  EXPECT_NE(answer.find("/a hello "), std::string::npos) << answer;
  EXPECT_EQ(answer.find("secret"), std::string::npos) << answer;
  EXPECT_TRUE(answer.size() > refusal.size() &&
              answer.substr(answer.size() - refusal.size()) == refusal)
      << answer;
}

TEST(ServeCheckedHttp, ChunkedBodiesAreFollowedToTheNextHead) {
  GuardedServer server;
  const std::string answer = server.Exchange(
      "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: x\r\nFoo: a\x01z\r\n\r\n");
  const std::string refusal = GoStatusError("invalid header value");
  EXPECT_NE(answer.find("/a abcde "), std::string::npos) << answer;
  EXPECT_TRUE(answer.size() > refusal.size() &&
              answer.substr(answer.size() - refusal.size()) == refusal)
      << answer;
}

TEST(ServeCheckedHttp, ContinuationLinesAndBareLineFeedsAreRead) {
  GuardedServer server;
  const std::string answer = server.Exchange("GET /b HTTP/1.1\nHost: y\nX-Long: 1\n 2\n\n");
  EXPECT_NE(answer.find("X-Long=1 2"), std::string::npos) << answer;
}

TEST(ServeCheckedHttp, OverlongHeadGets431) {
  GuardedServer server;
  EXPECT_EQ(
      server.Exchange("GET / HTTP/1.1\r\nHost: x\r\nFoo: " +
                      std::string(kMaxRequestHeadBytes + 10, 'a') + "\r\n\r\n"),
      GoRefusal("431 Request Header Fields Too Large", "431 Request Header Fields Too Large"));
  // Just under the limit, kj's own buffer still holds it.
  const std::string answer = server.Exchange(
      "GET / HTTP/1.1\r\nHost: x\r\nFoo: " + std::string(kMaxRequestHeadBytes - 100, 'a') +
      "\r\n\r\n");
  EXPECT_EQ(answer.substr(0, 15), "HTTP/1.1 200 OK") << answer.substr(0, 200);
}

TEST(ServeCheckedHttp, AHeadCutShortGetsNoAnswer) {
  GuardedServer server;
  EXPECT_EQ(server.Exchange("GET / HTTP/1.1\r\nHost: x\r\n"), "");
  EXPECT_EQ(server.Exchange(""), "");
}

// Go's net/http (etcd 3.4.23, taken with raw requests against Debian's etcd): a request with
// "Connection: close" is answered with "Connection: close" and the connection ends after the
// answer; an HTTP/1.0 request without "keep-alive" gets an HTTP/1.0 answer without it and the
// same end; with "keep-alive" it gets "Connection: keep-alive" and the connection stays open.
TEST(CheckRequestHead, ConnectionTokensDecideWhatFollowsTheAnswer) {
  using After = CheckedHead::After;
  EXPECT_EQ(CheckRequestHead("GET / HTTP/1.1\r\nHost: x\r\n\r\n").after, After::kKeepAlive);
  EXPECT_EQ(CheckRequestHead("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").after,
            After::kClose);
  EXPECT_EQ(CheckRequestHead("GET / HTTP/1.1\r\nHost: x\r\nConnection: te, CLOSE \r\n\r\n").after,
            After::kClose);
  EXPECT_EQ(CheckRequestHead("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n").after,
            After::kKeepAlive);
  EXPECT_EQ(CheckRequestHead("GET / HTTP/1.0\r\n\r\n").after, After::kClose10);
  EXPECT_EQ(CheckRequestHead("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").after,
            After::kKeepAlive10);
  EXPECT_EQ(CheckRequestHead("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").after,
            After::kClose10);
}

TEST(ServeCheckedHttp, ConnectionCloseIsAnsweredAndTheConnectionEnds) {
  GuardedServer server;
  const std::string answer =
      server.ExchangeLeftOpen("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(answer.substr(0, answer.find("\r\n\r\n") + 4),
            "HTTP/1.1 200 OK\r\nContent-Length: 27\r\nConnection: close\r\n\r\n")
      << answer;
  EXPECT_NE(answer.find("/a  Connection=close Host=x"), std::string::npos) << answer;
}

TEST(ServeCheckedHttp, RequestsBeforeTheCloseAreAnsweredAndThoseAfterItAreNotRead) {
  GuardedServer server;
  const std::string answer = server.ExchangeLeftOpen(
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
      "POST /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nho"
      "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  const size_t second = answer.find("HTTP/1.1", 1);
  ASSERT_NE(second, std::string::npos) << answer;
  EXPECT_EQ(answer.substr(0, second).find("Connection"), std::string::npos) << answer;
  EXPECT_NE(answer.find("/a hi "), std::string::npos) << answer;
  EXPECT_NE(answer.substr(second).find("Connection: close\r\n"), std::string::npos) << answer;
  EXPECT_NE(answer.find("/b ho "), std::string::npos) << answer;
  EXPECT_EQ(answer.find("/c"), std::string::npos) << answer;
}

TEST(ServeCheckedHttp, AStreamedAnswerIsWholeBeforeTheClose) {
  GuardedServer server;
  EXPECT_EQ(server.ExchangeLeftOpen("GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
}

TEST(ServeCheckedHttp, Http10ClosesUnlessKeepAlive) {
  GuardedServer server;
  const std::string closed = server.ExchangeLeftOpen("GET /a HTTP/1.0\r\n\r\n");
  EXPECT_EQ(closed.substr(0, closed.find("\r\n\r\n") + 4),
            "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n")
      << closed;
  // Kept open: both answered, and the connection is still there.
  const std::string kept = server.ExchangeLeftOpen(
      "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
      "GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
      200 * kj::MILLISECONDS);
  EXPECT_EQ(kept, "(still open)");
}

TEST(ServeCheckedHttp, KeepAliveAnswersEveryRequestOnOneConnection) {
  GuardedServer server;
  const std::string answer = server.Exchange(
      "GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
      "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
      "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(answer.find("/a  Connection=keep-alive Host=x"), std::string::npos) << answer;
  EXPECT_NE(answer.find("HTTP/1.0 200 OK\r\nContent-Length: 25\r\nConnection: keep-alive\r\n\r\n"
                        "/b  Connection=keep-alive"),
            std::string::npos)
      << answer;
  EXPECT_NE(answer.find("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n/c  Host=x"),
            std::string::npos)
      << answer;
  EXPECT_EQ(answer.find("close"), std::string::npos) << answer;
}

// Go's net/http (etcd 3.4.23's gateway, taken with raw requests against Debian's etcd: an
// HTTP/1.0 POST /v3/watch) sends an answer of unknown length to an HTTP/1.0 request unframed:
// no Transfer-Encoding (HTTP/1.0 has no chunked coding), no Connection header, the body as
// written, and the connection's close ends it.
TEST(ServeCheckedHttp, Http10StreamedAnswerIsUnframedAndEndsTheConnection) {
  GuardedServer server;
  EXPECT_EQ(server.ExchangeLeftOpen("GET /stream HTTP/1.0\r\n\r\n"),
            "HTTP/1.0 200 OK\r\n\r\nabcdef");
  EXPECT_EQ(server.requests(), 1);
}

// With "keep-alive" too: Go cannot keep the connection for an unframed answer, so it closes it
// after the answer and does not read the requests that follow.
TEST(ServeCheckedHttp, Http10KeepAliveStreamedAnswerEndsTheConnectionAndNothingAfterIsRead) {
  GuardedServer server;
  EXPECT_EQ(server.ExchangeLeftOpen("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                    "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                    "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"),
            "HTTP/1.0 200 OK\r\nContent-Length: 25\r\nConnection: keep-alive\r\n\r\n"
            "/a  Connection=keep-alive"
            "HTTP/1.0 200 OK\r\n\r\nabcdef");
  EXPECT_EQ(server.requests(), 2);  // /c was not served
}

// The requests after an HTTP/1.0 keep-alive request whose answer has a length are served as
// before: only an unframed answer ends the connection.
TEST(ServeCheckedHttp, Http10KeepAliveFramedAnswerLetsTheNextRequestIn) {
  GuardedServer server;
  const std::string answer = server.Exchange(
      "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
      "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(answer,
            "HTTP/1.0 200 OK\r\nContent-Length: 25\r\nConnection: keep-alive\r\n\r\n"
            "/a  Connection=keep-alive"
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
  EXPECT_EQ(server.requests(), 2);
}

}  // namespace
}  // namespace kvstore::net::etcd
