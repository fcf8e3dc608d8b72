// Fuzzes the HTTP/1.1 request-head guard in front of kj-http on a client URL
// (net/etcd/http_guard.h): the input is one request head (a blank line is appended when it has
// none, so most inputs reach the header rules).
//
// Properties: no crash; a refusal is one of Go's answers (a 4xx or 5xx status line, "Connection:
// close"); an accepted head's normal form is accepted again with the same normal form and
// framing (kj reads what Go would have read).

#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "net/etcd/http_guard.h"
#include "tools/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using kvstore::net::etcd::CheckedHead;
  using kvstore::net::etcd::CheckRequestHead;
  if (size > (kvstore::net::etcd::kMaxRequestHeadBytes + 1024)) return 0;
  std::string head(reinterpret_cast<const char*>(data), size);
  if (!absl::EndsWith(head, "\n\n") && !absl::EndsWith(head, "\n\r\n")) head += "\r\n\r\n";
  const CheckedHead checked = CheckRequestHead(head);
  if (!checked.refusal.empty()) {
    FUZZ_CHECK(absl::StartsWith(checked.refusal, "HTTP/1.1 4") ||
                   absl::StartsWith(checked.refusal, "HTTP/1.1 5"),
               "a refusal that is not a 4xx or 5xx answer");
    FUZZ_CHECK(absl::StrContains(checked.refusal, "\r\nConnection: close\r\n\r\n"),
               "a refusal that keeps the connection");
    FUZZ_CHECK(checked.normal.empty(), "a refused head with a normal form");
    return 0;
  }
  FUZZ_CHECK(absl::EndsWith(checked.normal, "\r\n\r\n"), "a normal form without its blank line");
  const CheckedHead again = CheckRequestHead(checked.normal);
  FUZZ_CHECK(again.refusal.empty(), "the normal form of an accepted head is refused");
  FUZZ_CHECK(again.normal == checked.normal, "the normal form is not a fixed point");
  FUZZ_CHECK(again.body == checked.body && again.length == checked.length,
             "the normal form frames the body otherwise");
  return 0;
}
