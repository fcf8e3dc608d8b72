#ifndef KVSTORE_NODE_TESTING_HISTORY_WORKLOAD_H_
#define KVSTORE_NODE_TESTING_HISTORY_WORKLOAD_H_

// The real-process tests' clients: a few Jepsen-style processes, each with one operation (a put or
// a linearizable get of a few keys) outstanding at a time, over one net::Client with failover,
// recording a history (sim/history.h) that the simulator's linearizability checker judges. The
// workers run on the caller's kj event loop: they progress while the caller waits on it.
//
// Outcomes: ok; a put that failed with TIMEOUT (the client's "outcome unknown") or that a member
// answered LEADERSHIP_CHANGED or STOPPED (it may have been applied: net/client.h), and any
// failed get, are info (a get changes nothing, so an unknown get is left out of the model); any
// other failed put is fail (it was refused before it reached the log). After an info the process is
// replaced by a new one, as in Jepsen. Every completion is also kept with its time on the loop's
// timer, so a test can ask what completed while a fault was in place.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kj/async.h"
#include "kj/timer.h"
#include "kj/vector.h"
#include "net/client.h"
#include "sim/history.h"
#include "sim/linearizability.h"

namespace kvstore::node::testing {

struct WorkloadOptions {
  int clients = 4;
  int keys = 3;  // k0, k1, ...
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  // A client whose call did not succeed waits this long before its next one, as a real client
  // backs off: with every member down, calls fail at once, and clients without a pause spun
  // (16 million history events in a minute of a whole-cluster crash).
  int64_t backoff_ms = 20;
};

// One completed operation, for questions about when things succeeded.
struct Completion {
  kj::TimePoint at;
  sim::Function function = sim::Function::kRead;
  sim::EventType type = sim::EventType::kOk;
};

class HistoryWorkload {
 public:
  // `client` and `timer` must outlive the workload.
  HistoryWorkload(net::Client& client, kj::Timer& timer, WorkloadOptions options = {});

  // Records a write the test made before Start (acknowledged), so the model knows the value.
  absl::Status RecordAcknowledgedWrite(const std::string& key, const std::string& value);
  // Starts the workers on the caller's event loop.
  void Start();
  // Lets the operations in flight finish (each within the client's per-try timeouts).
  void Stop(kj::WaitScope& wait_scope);

  const sim::History& history() const { return history_; }
  const std::vector<Completion>& completions() const { return completions_; }
  // Completions of `function` with outcome `type` in [from, to).
  size_t Count(sim::Function function, sim::EventType type, kj::TimePoint from,
               kj::TimePoint to) const;
  uint64_t ok_operations() const { return ok_; }
  uint64_t info_operations() const { return info_; }
  uint64_t failed_operations() const { return failed_; }
  // The checker's verdict on the history so far (after Stop).
  absl::StatusOr<sim::CheckResult> Check() const;
  // "N ok, N unknown, N failed operations".
  std::string Summary() const;

 private:
  struct Process {
    int64_t id = 0;
    uint64_t writes = 0;
  };
  kj::Promise<void> Loop(Process& process);
  uint64_t NextRandom();

  net::Client& client_;
  kj::Timer& timer_;
  const WorkloadOptions options_;
  sim::History history_;
  std::vector<Completion> completions_;
  bool running_ = false;
  int64_t next_process_ = 0;
  uint64_t rng_;
  uint64_t ok_ = 0, info_ = 0, failed_ = 0;
  std::vector<Process> processes_;
  kj::Vector<kj::Promise<void>> workers_;
};

}  // namespace kvstore::node::testing

#endif  // KVSTORE_NODE_TESTING_HISTORY_WORKLOAD_H_
