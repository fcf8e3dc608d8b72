#ifndef KVSTORE_TOOLS_CTL_FORMAT_H_
#define KVSTORE_TOOLS_CTL_FORMAT_H_

// The text shapes etcdctl prints, reproduced byte for byte where scripts read them: its tables
// (olekukonko/tablewriter as etcdctl configures it), Go's duration and %q formats, humanized
// byte counts (dustin/go-humanize), and a JSON builder for its -w json output.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "net/etcd/go_quote.h"

namespace kvstore::ctl {

// A table as `etcdctl -w table` draws it: headers upper-cased and centred, cells right-aligned,
// '+', '-' and '|' borders.
std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// Go's time.Duration.String(): "0s", "850ns", "1.5µs", "5.336456ms", "2.5s", "1m30s", "2h0m0s".
std::string GoDuration(absl::Duration duration);

// go-humanize's Bytes(): SI units, "9 B", "20 kB", "1.2 MB".
std::string HumanizeBytes(uint64_t bytes);

// Go's %q of a string (strconv.Quote), shared with the JSON gateway's error texts.
using net::etcd::GoQuote;

// Go's %v of a []string: "[a b c]".
std::string GoStringList(const std::vector<std::string>& items);

// etcdctl --hex: every byte as \xNN.
std::string HexBytes(absl::string_view bytes);

// Builds one JSON object, in the order fields are added. Byte strings (keys and values) are
// base64, as protobuf's JSON mapping (and so etcdctl -w json) writes them.
class JsonObject {
 public:
  JsonObject& Int(absl::string_view name, int64_t value);
  JsonObject& Uint(absl::string_view name, uint64_t value);
  JsonObject& Bool(absl::string_view name, bool value);
  JsonObject& String(absl::string_view name, absl::string_view value);
  JsonObject& Bytes(absl::string_view name, absl::string_view value);  // base64
  // A value already in JSON (an object, an array, null).
  JsonObject& Raw(absl::string_view name, absl::string_view json);
  std::string Build() const { return "{" + body_ + "}"; }

 private:
  void Name(absl::string_view name);
  std::string body_;
};

// A JSON array of values already in JSON.
std::string JsonArray(const std::vector<std::string>& items);
// A JSON string literal.
std::string JsonString(absl::string_view text);

}  // namespace kvstore::ctl

#endif  // KVSTORE_TOOLS_CTL_FORMAT_H_
