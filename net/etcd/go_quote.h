// Go's ways of quoting text, which etcd's error messages and etcdctl's output carry: strconv.Quote
// (%q of a string), encoding/json's quoteChar (a byte in a syntax error), and utf8.DecodeRune's
// idea of a valid sequence. kvctl (etcdctl's texts) and the JSON gateway (etcd's gateway's
// texts) share them.
#ifndef NET_ETCD_GO_QUOTE_H_
#define NET_ETCD_GO_QUOTE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace kvstore::net::etcd {

// Go's utf8.DecodeRune: the length of the valid UTF-8 sequence at the start of `s` (not empty),
// 0 when it is not one.
size_t GoUtf8Length(absl::string_view s);

// Go's strconv.Quote (as %q prints a string): double-quoted, Go's escapes for quotes,
// backslashes, control bytes and bytes that are not valid UTF-8; printable non-ASCII kept.
std::string GoQuote(absl::string_view s);

// Go's quoteChar (encoding/json): a byte as its syntax errors show it ('x', '\n', '\x01').
std::string GoQuoteChar(char c);

}  // namespace kvstore::net::etcd

#endif  // NET_ETCD_GO_QUOTE_H_
