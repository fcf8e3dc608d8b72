#ifndef KVSTORE_SIM_LIST_APPEND_WORKLOAD_H_
#define KVSTORE_SIM_LIST_APPEND_WORKLOAD_H_

// Jepsen's list-append workload on etcd transactions, checked for strict serializability by
// sim/elle.h. Each client runs transactions of 1-4 micro-ops ([append k v], [r k]) on a few keys
// whose values are lists ("1 5 9"), in two requests, as Jepsen's etcd test does:
//
//   1. read: one txn of ranges over the transaction's keys, which gives each key's list and
//      mod_revision (0: absent). A transaction without appends ends here: the read txn is
//      linearizable and atomic, so it is the whole transaction.
//   2. write: one txn whose compares require every key of the transaction to still have the
//      mod_revision read, and whose success branch puts the appended lists. The micro-ops'
//      reads are computed from the lists read in step 1 and the transaction's own earlier
//      appends.
//
// Why this is strictly serializable: the write txn applies in one revision R; its compares
// guarantee that none of its keys changed between the read (at some revision S <= R) and R, so
// its reads and appends are exactly what running it alone at R would give, and R lies within
// the transaction's real-time interval (after the read began, before the write's answer).
//
// Outcomes: ok when the write txn's compares held (or for a read-only transaction); fail when
// they did not (the failure branch is empty: certainly nothing written), when the read failed
// or timed out (nothing is ever written by it), or when the write was refused with an error that
// certainly means not applied (the simulator's rule: any error but a timeout); info when the
// write's answer never came (a timeout, a crash of its member) or it timed out: it may still
// apply.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/raft/rand.h"
#include "core/server/server.h"
#include "sim/elle.h"

namespace kvstore::sim {

class Simulation;

struct ListAppendOptions {
  int clients = 4;
  int keys = 5;                       // "la/0" ... ; few keys: many conflicts
  int64_t request_timeout_ms = 1000;  // an outstanding request older than this is given up
  uint64_t think_percent = 30;        // an idle client waits a millisecond with this probability
};

// Clients driven by the caller one millisecond at a time, beside whatever else the simulation
// runs (its own workload, a scenario's faults).
class ListAppendClients {
 public:
  ListAppendClients(Simulation& sim, uint64_t seed, const ListAppendOptions& options);
  ~ListAppendClients();

  // Polls outstanding requests and starts new transactions; call once per simulated ms.
  void Step();
  // Runs the simulation for `ms`, stepping the clients every millisecond.
  void RunFor(int64_t ms);
  // Stops starting transactions and lets the outstanding ones end (at most the request
  // timeout); then each client reads every key once (Jepsen's final reads).
  void Finish();
  // The history so far; Check() judges it.
  const std::vector<elle::Txn>& history() const { return history_; }
  elle::CheckResult Check() const;

  uint64_t ok() const { return ok_; }
  uint64_t failed() const { return failed_; }
  uint64_t indeterminate() const { return indeterminate_; }

 private:
  struct Client;
  void StepClient(Client& client);
  void Begin(Client& client, bool final_read);
  void SendRead(Client& client);
  void SendWrite(Client& client, const server::Response& read);
  void End(Client& client, elle::TxnType type);
  raft::NodeId RandomLiveNode();

  Simulation& sim_;
  ListAppendOptions options_;
  raft::SplitMix64 rng_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<int64_t> next_value_;  // per key: the next element to append (unique per key)
  std::vector<raft::NodeId> live_;   // RandomLiveNode's scratch, kept to spare allocations
  std::vector<elle::Txn> history_;
  bool finishing_ = false;
  uint64_t ok_ = 0, failed_ = 0, indeterminate_ = 0;
};

// A run of its own (as sim/auth_workload.h): list-append clients on a simulated cluster while
// members crash, restart and get isolated; then everything heals, the final reads run and the
// history is checked.
struct ListAppendWorkloadOptions {
  uint64_t seed = 1;
  int voters = 3;
  int64_t duration_ms = 4000;  // virtual time of the faulty phase
  bool faults = true;
  ListAppendOptions clients;
};

struct ListAppendWorkloadResult {
  std::vector<std::string> violations;  // empty: passed; the checker's lines start "list-append: "
  uint64_t ok = 0, failed = 0, indeterminate = 0;
  std::string checker_summary;
  std::string Summary() const;
};

ListAppendWorkloadResult RunListAppendWorkload(const ListAppendWorkloadOptions& options);

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_LIST_APPEND_WORKLOAD_H_
