// failover: a primary/standby pair (or more) by lock and lease, in the manner of etcd's
// concurrency examples.
//
//   failover --endpoints=127.0.0.1:2379 --name=A --ttl=2 [--prefix=failover/lock]
//            [--heartbeat-key=failover/heartbeat] [--heartbeat-ms=500]
//
// Each process opens a session (a lease of --ttl seconds, raised to the server's minimum, kept
// alive by the client) and waits on the mutex <prefix>/. The holder is the primary: every
// --heartbeat-ms it writes "<name> <token> <seq>" to the heartbeat key in a txn that compares
// its lock key's create revision with its token (fencing). A primary that dies stops renewing;
// when its lease expires its lock key goes, and the next standby becomes primary with a larger
// token. A primary that was only paused (a stop signal, a long stall) and comes back still
// tries its heartbeat, which the members refuse: it says so and queues again as a standby.
//
// The heartbeat is this example's only action as primary, so it is always tried and the
// members' compare decides; an action outside the store would also stop when the session
// counts itself lost (net/concurrency/session.h).
//
// One line per event on stdout (the test reads them):
//   started <name> pid <pid>
//   standby <name> lease <lease id in hex> ttl <granted seconds>
//   primary <name> token <create revision>
//   heartbeat <name> token <token> revision <revision of the write>
//   fenced <name> token <token>     (the txn's compare failed: the lock key is gone)
//   lost <name> token <token>       (the session's lease expired or could not be renewed)
//   error <what>
// SIGINT or SIGTERM: unlock, revoke the lease, exit 0.

#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "kj/async-io.h"
#include "kj/async-unix.h"
#include "net/client.h"
#include "net/concurrency/mutex.h"
#include "net/concurrency/session.h"

namespace kvstore::failover {
namespace {

using net::concurrency::ClientContext;
using net::concurrency::Mutex;
using net::concurrency::Session;

constexpr kj::Duration kRetryDelay = 500 * kj::MILLISECONDS;

struct Flags {
  std::vector<std::string> endpoints;
  std::string name;
  int64_t ttl_seconds = 2;
  std::string prefix = "failover/lock";
  std::string heartbeat_key = "failover/heartbeat";
  int64_t heartbeat_ms = 500;
};

int Usage(const std::string& why) {
  std::fprintf(stderr,
               "failover: %s\nusage: failover --endpoints=HOST:PORT[,...] --name=NAME [--ttl=2] "
               "[--prefix=failover/lock] [--heartbeat-key=failover/heartbeat] "
               "[--heartbeat-ms=500]\n",
               why.c_str());
  return 2;
}

bool ParseFlags(int argc, char** argv, Flags* flags, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t equals = arg.find('=');
    if (!absl::StartsWith(arg, "--") || equals == std::string::npos) {
      *error = absl::StrCat("expected --flag=value, got \"", arg, "\"");
      return false;
    }
    const std::string name = arg.substr(2, equals - 2), value = arg.substr(equals + 1);
    bool ok = true;
    if (name == "endpoints") {
      flags->endpoints = absl::StrSplit(value, ',', absl::SkipEmpty());
    } else if (name == "name") {
      flags->name = value;
    } else if (name == "ttl") {
      ok = absl::SimpleAtoi(value, &flags->ttl_seconds) && flags->ttl_seconds > 0;
    } else if (name == "prefix") {
      flags->prefix = value;
    } else if (name == "heartbeat-key") {
      flags->heartbeat_key = value;
    } else if (name == "heartbeat-ms") {
      ok = absl::SimpleAtoi(value, &flags->heartbeat_ms) && flags->heartbeat_ms > 0;
    } else {
      *error = absl::StrCat("unknown flag --", name);
      return false;
    }
    if (!ok) {
      *error = absl::StrCat("bad value for --", name, ": \"", value, "\"");
      return false;
    }
  }
  if (flags->endpoints.empty()) *error = "--endpoints is required";
  if (flags->name.empty()) *error = "--name is required";
  return error->empty();
}

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

class Failover {
 public:
  Failover(const Flags& flags, ClientContext context, kj::ForkedPromise<void>& stop)
      : flags_(flags), context_(context), stop_(stop) {}

  // Standby, primary, standby again...; returns when stopped.
  void Run() {
    while (!stopped_) {
      absl::StatusOr<std::unique_ptr<Session>> session =
          Session::Create(context_, {.ttl_seconds = flags_.ttl_seconds});
      if (!session.ok()) {
        Say(absl::StrCat("error session: ", session.status().ToString()));
        Pause(kRetryDelay);
        continue;
      }
      Say(absl::StrFormat("standby %s lease %x ttl %d", flags_.name,
                          static_cast<uint64_t>((*session)->lease()),
                          (*session)->granted_ttl_seconds()));
      Mutex mutex(**session, flags_.prefix);
      absl::Status locked = mutex.Lock(stop_.addBranch());
      if (locked.ok()) {
        Say(absl::StrCat("primary ", flags_.name, " token ", mutex.token()));
        ServeAsPrimary(**session, mutex);
      } else if (!stopped_) {
        Say(absl::StrCat("error lock: ", locked.ToString()));
        Pause(kRetryDelay);
      }
      if (stopped_) mutex.Unlock().IgnoreError();
      // Revoke rather than wait for the expiry: a key left behind would queue ahead of ours.
      (*session)->Close().IgnoreError();
    }
  }

 private:
  // Heartbeats until fenced, lost or stopped.
  void ServeAsPrimary(Session& session, Mutex& mutex) {
    for (int64_t seq = 1; !Pause(flags_.heartbeat_ms * kj::MILLISECONDS); ++seq) {
      server::Request txn;
      txn.type = server::RequestType::kTxn;
      txn.txn.compare.push_back(mutex.IsOwner());
      mvcc::RequestOp put;
      put.kind = mvcc::RequestOp::Kind::kPut;
      put.put.key = flags_.heartbeat_key;
      put.put.value = absl::StrCat(flags_.name, " ", mutex.token(), " ", seq);
      txn.txn.success.push_back(put);
      absl::StatusOr<server::Response> response = context_.client.Call(txn, context_.wait_scope);
      if (!response.ok()) {
        Say(absl::StrCat("error heartbeat: ", response.status().ToString()));
      } else if (!response->txn.succeeded) {
        Say(absl::StrCat("fenced ", flags_.name, " token ", mutex.token()));
        return;
      } else {
        Say(absl::StrCat("heartbeat ", flags_.name, " token ", mutex.token(), " revision ",
                         response->header.revision));
      }
      if (session.lost()) {
        Say(absl::StrCat("lost ", flags_.name, " token ", mutex.token()));
        return;
      }
    }
  }

  // Sleeps on the event loop (renewals and watches go on); true if stopped meanwhile.
  bool Pause(kj::Duration duration) {
    if (stopped_) return true;
    stopped_ = context_.timer.afterDelay(duration)
                   .then([] { return false; })
                   .exclusiveJoin(stop_.addBranch().then([] { return true; }))
                   .wait(context_.wait_scope);
    return stopped_;
  }

  const Flags& flags_;
  ClientContext context_;
  kj::ForkedPromise<void>& stop_;
  bool stopped_ = false;
};

int Main(int argc, char** argv) {
  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) return Usage(error);
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::AsyncIoContext io = kj::setupAsyncIo();
  net::ClientOptions options;
  options.endpoints = flags.endpoints;
  options.per_try_timeout = 2 * kj::SECONDS;
  options.endpoint_backoff_min = 200 * kj::MILLISECONDS;
  options.endpoint_backoff_max = 2 * kj::SECONDS;
  auto client = net::Client::Create(io.provider->getNetwork(), io.provider->getTimer(), options);
  if (!client.ok()) return Usage(client.status().ToString());
  kj::ForkedPromise<void> stop = io.unixEventPort.onSignal(SIGINT)
                                     .exclusiveJoin(io.unixEventPort.onSignal(SIGTERM))
                                     .ignoreResult()
                                     .fork();
  Say(absl::StrCat("started ", flags.name, " pid ", getpid()));
  Failover failover(flags, {**client, io.provider->getTimer(), io.waitScope}, stop);
  failover.Run();
  return 0;
}

}  // namespace
}  // namespace kvstore::failover

int main(int argc, char** argv) { return kvstore::failover::Main(argc, argv); }
