#ifndef KVSTORE_TOOLS_CTL_TXN_SYNTAX_H_
#define KVSTORE_TOOLS_CTL_TXN_SYNTAX_H_

// The text syntax of `etcdctl txn`, so its scripts run unchanged:
//
//   <compare>*      one per line:  mod("key") > "0"    value("k") = "v"    version("k") != "2"
//   <blank line>                   create("k") < "5"   lease("k") = "694d77aa9e38260f"
//   <op>*           one per line, a put/get/del command line:  put k v --lease=1234  get k
//   <blank line>
//   <op>*           the failure branch
//   <blank line>
//
// Targets: ver|version, c|create, m|mod, val|value, lease (a lease id in hex, as etcdctl prints
// lease ids). Strings are Go-quoted: "..." with Go's escapes, or `raw`. Op lines are split as
// etcdctl's argify does: "double quoted" (Go escapes), 'single quoted' (verbatim) or bare words.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/mvcc/types.h"

namespace kvstore::ctl {

// Parses the Go string literal at the start of `text` ("..." or `...`); sets `*consumed` to its
// length in `text`.
absl::StatusOr<std::string> UnquoteGo(absl::string_view text, size_t* consumed);

// Splits an op line into arguments (etcdctl's argify).
absl::StatusOr<std::vector<std::string>> Argify(absl::string_view line);

// One compare line.
absl::StatusOr<mvcc::Compare> ParseCompare(absl::string_view line);

}  // namespace kvstore::ctl

#endif  // KVSTORE_TOOLS_CTL_TXN_SYNTAX_H_
