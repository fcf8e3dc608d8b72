#ifndef KVSTORE_NODE_HTTP_TESTING_H_
#define KVSTORE_NODE_HTTP_TESTING_H_

// Tests' side of kvnode's HTTP endpoints: a blocking HTTP/1.1 client on loopback with a deadline,
// a free loopback port, and a bounded run of an external command (promtool, chromium).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvstore::node::testing {

// A port on 127.0.0.1 for a test's server that nothing takes before the server binds it. Picked
// at random in [10000, 20000), below the kernel's ephemeral range: the kernel never hands such a
// port out, neither as an outgoing connection's source port nor to a bind of port 0 (a port once
// picked that way was taken between the pick and kvnode's bind: "Address already in use"); the
// repo's shell tests pick at 20000 and up. Two test processes running at once (shards, parallel
// tests) never pick the same port: the picker holds the abstract Unix socket
// "kvstore-test-port-<port>", which lives in the same network namespace as the TCP port and is
// released when its holder closes it or exits, even by kill -9. A port some other program is
// bound to fails a bind check and is skipped. `*lock` receives that socket (-1 if the kernel's
// range leaves no room below it and the kernel picked the port); close it to release the port.
absl::StatusOr<uint16_t> ReserveLoopbackPort(int* lock);

// ReserveLoopbackPort's port, reserved until the process exits; 0 if none could be found.
uint16_t FreeLoopbackPort();

struct HttpAnswer {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
};

// `method` `path` to 127.0.0.1:`port`, one request per connection; gives up after `timeout_ms`.
absl::StatusOr<HttpAnswer> HttpRequest(uint16_t port, const std::string& method,
                                       const std::string& path, int timeout_ms = 5000);
inline absl::StatusOr<HttpAnswer> HttpGet(uint16_t port, const std::string& path,
                                          int timeout_ms = 5000) {
  return HttpRequest(port, "GET", path, timeout_ms);
}

struct CommandResult {
  int exit_code = -1;  // -1: did not exit by itself (killed at the deadline)
  std::string output;  // stdout and stderr
};
// Runs `argv` (argv[0] a path) with stdin from `stdin_path` (empty: /dev/null), killed after
// `timeout_ms`.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         const std::string& stdin_path, int timeout_ms);

// A value of an exposition line "name{labels} value" whose text before the value is exactly
// `series` (e.g. `etcd_server_has_leader` or `x_bucket{le="+Inf"}`); nullopt-like error when
// the series is missing.
absl::StatusOr<double> SampleValue(const std::string& exposition, const std::string& series);

}  // namespace kvstore::node::testing

#endif  // KVSTORE_NODE_HTTP_TESTING_H_
