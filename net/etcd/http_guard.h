#ifndef KVSTORE_NET_ETCD_HTTP_GUARD_H_
#define KVSTORE_NET_ETCD_HTTP_GUARD_H_

// Go's net/http rules for an HTTP/1.1 request head, in front of kj-http on a client URL and on
// the --listen-metrics-urls listener (node/http_service.h), so that a malformed request gets the
// answer etcd 3.4.23 (Go 1.19's net/http) gives it instead of whatever kj-http does: kj drops a
// space before a header's colon ("Authorization : x" becomes "Authorization: x"), accepts
// control characters in values and requests without Host, and resets the connection without an
// answer when a head is over its 128 KiB buffer.
//
// Each request head is read whole before kj sees a byte of it, checked, and handed on in a
// normal form (one "Name: value" line per header, continuation lines joined, as Go reads them);
// body bytes pass through as Content-Length or the chunked framing delimit them, so the next
// head is checked too (keep-alive, pipelining). A refused head ends the connection as Go's
// server does: kj finishes what came before it, then the answer is written
//
//   HTTP/1.1 400 Bad Request: invalid header name        (a name that is not a token: a space
//                                                          or tab before the colon, a NUL, ...)
//   HTTP/1.1 400 Bad Request: invalid header value       (a control character other than tab)
//   HTTP/1.1 400 Bad Request: missing required Host header / too many Host headers /
//                             malformed Host header
//   HTTP/1.1 400 Bad Request                              (a malformed request line, a line with
//                                                          no colon, a bad Content-Length)
//   HTTP/1.1 431 Request Header Fields Too Large          (a head over kMaxRequestHeadBytes)
//   HTTP/1.1 501 Not Implemented                          (a transfer coding other than chunked)
//   HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version
//
// each with "Content-Type: text/plain; charset=utf-8", "Connection: close" and the status line's
// text as the body, and the connection is closed; the member serves everyone else.
//
// kj-http (0.9) ignores a request's "Connection: close" and HTTP/1.0's close by default; Go
// closes the connection after the answer. The guard does: the head of a request that asks for
// the close reaches kj only after kj has answered everything before it (kj reads a next head
// only when its last answer is out), the first response head kj writes after it gets Go's
// "Connection: close" (HTTP/1.1; Go adds none for HTTP/1.0), and kj then reads the end of the
// stream, so it finishes that answer, however long (a watch stream), and ends the connection.
// An answer of unknown length (kj chunks it: the gateway's watch stream) to an HTTP/1.0 request
// goes out as Go's net/http sends it: without "Transfer-Encoding: chunked" (HTTP/1.0 has no
// chunked coding), the body unframed, and the connection's close as its end, with
// "keep-alive" too (then the requests after it are not read).
//
// Where kvnode differs from etcd on purpose: etcd's connection multiplexer (cmux) closes a
// connection whose request line is not HTTP/1.x without any answer; here a connection that
// starts with an HTTP method gets Go's net/http answer (400 or 505). Go's head limit is 1 MiB +
// 4 KiB; kj's buffer holds 128 KiB, so heads over kMaxRequestHeadBytes get 431 here. Where a
// head has both a bad header name and a bad value in different headers, Go's answer depends on
// its map order; here the first bad header in the head decides.

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "kj/async-io.h"
#include "kj/compat/http.h"
#include "kj/timer.h"

namespace kvstore::net::etcd {

// The largest request head (request line, headers, blank line) accepted: below kj-http's
// 128 KiB header buffer, which must hold the head in its normal form.
constexpr size_t kMaxRequestHeadBytes = 100 << 10;

// A request head as Go's net/http reads it.
struct CheckedHead {
  // Go's whole answer (status line, headers, body) when it refuses the head; empty when accepted.
  std::string refusal;
  // An accepted head in its normal form, ending with the blank line.
  std::string normal;
  // How the body that follows is delimited.
  enum class Body { kNone, kLength, kChunked, kOpaque } body = Body::kNone;
  uint64_t length = 0;  // kLength: the body's bytes
  // What follows the answer, by Go's shouldClose (the Connection header's tokens): kClose for
  // HTTP/1.1 with "close" (the answer says "Connection: close"); kClose10 for HTTP/1.0 without
  // "keep-alive" (no header, as Go); kKeepAlive10 for HTTP/1.0 with it (the answer says
  // "Connection: keep-alive" when it has a Content-Length). A closing request's answer is the
  // connection's last: what the client sends after that request is not read.
  enum class After { kKeepAlive, kClose, kClose10, kKeepAlive10 } after = After::kKeepAlive;
};

// Checks one request head: `head` runs from the request line to the end of the blank line that
// ends it (CRLF or bare LF line ends). kOpaque: after the head the connection is no longer
// HTTP/1.1 requests (CONNECT, Upgrade); its bytes pass unchecked.
CheckedHead CheckRequestHead(absl::string_view head);

// Serves one HTTP/1.1 connection with `server`, each request head checked first (above). The
// promise resolves when the connection is done; it never rejects. `timer` bounds how long a
// refused connection is read before it is closed (so that the client reads the answer).
kj::Promise<void> ServeCheckedHttp(kj::HttpServer& server, kj::Timer& timer,
                                   kj::Own<kj::AsyncIoStream> stream);

}  // namespace kvstore::net::etcd

#endif  // KVSTORE_NET_ETCD_HTTP_GUARD_H_
