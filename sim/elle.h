#ifndef KVSTORE_SIM_ELLE_H_
#define KVSTORE_SIM_ELLE_H_

// A checker of strict serializability for list-append transaction histories, in the manner of
// Elle (Kingsbury and Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
// Observations", VLDB 2020) and with Adya's names for what it finds.
//
// The history: transactions of micro-operations on lists, [append k v] and [r k list], each with
// its outcome (ok: committed, its reads known; fail: certainly did not happen; info: may or may
// not have happened, at any time after its invocation) and its real-time interval. Every value is
// appended to a key at most once, so a read list names the transactions that wrote it.
//
// How it judges:
//   1. Each key's version order is the longest list any committed transaction read; every other
//      read of the key must be a prefix of it (otherwise the key's order is itself an anomaly,
//      "incompatible-order", and the key gives no edges).
//   2. Dependencies between transactions (Adya): ww (T1 appended the element just before T2's),
//      wr (T2 read a list whose last element T1 appended), rw (T1 read a list that T2's append
//      extends: an anti-dependency) and, for strict serializability, real-time (T1 completed
//      before T2 was invoked; transitively reduced, so their number grows with the concurrency,
//      not with the square of the history).
//   3. A serializable history has an acyclic dependency graph. Tarjan's algorithm finds the
//      strongly connected components; in each one the checker looks for a shortest cycle of the
//      weakest class: G0 (ww only), G1c (ww and wr), G-single (exactly one rw), G2 (several rw),
//      then the same with real-time edges ("G0-realtime", ...: serializable but not strictly).
//   4. Anomalies of single reads: G1a (a read of a value a failed transaction appended), G1b (a
//      read ending in a value its writer later followed by another append to the same key, an
//      intermediate state), internal (a transaction's read disagrees with its own earlier reads
//      and appends), garbage (a value nobody appended), duplicate elements in a list.
//
// A fail transaction is never in the graph; an info transaction is, as a writer, once a read
// shows one of its appends (it happened), and its reads are unknown.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvstore::sim::elle {

enum class TxnType : uint8_t { kOk, kFail, kInfo };

struct MicroOp {
  enum class Kind : uint8_t { kAppend, kRead };
  Kind kind = Kind::kRead;
  std::string key;
  int64_t value = 0;                         // kAppend: the element appended
  std::optional<std::vector<int64_t>> read;  // kRead: the list read (unknown unless ok)
};

struct Txn {
  int64_t process = 0;
  TxnType type = TxnType::kOk;
  int64_t invoke_ms = 0;
  int64_t complete_ms = 0;  // ignored for info: it may take effect at any time after invoke_ms
  std::vector<MicroOp> ops;
};

enum class Anomaly : uint8_t {
  kG0,
  kG1c,
  kGSingle,
  kG2,
  kG0Realtime,
  kG1cRealtime,
  kGSingleRealtime,
  kG2Realtime,
  kCycle,  // a cycle the search budget left unclassified (still a violation)
  kG1a,
  kG1b,
  kInternal,
  kGarbageRead,
  kDuplicateElements,
  kIncompatibleOrder,
  kDuplicateAppend,
};
const char* AnomalyName(Anomaly anomaly);

enum class EdgeKind : uint8_t { kWw = 1, kWr = 2, kRw = 4, kRealtime = 8 };
const char* EdgeKindName(EdgeKind kind);

struct Finding {
  Anomaly anomaly = Anomaly::kCycle;
  // For cycles: the transactions (indexes into the history) in cycle order, each followed by
  // the edge to the next (the last one's edge closes the cycle); empty otherwise.
  std::vector<size_t> cycle;
  std::vector<EdgeKind> edges;
  std::string description;  // names the anomaly and lists the operations with edge kinds
};

struct CheckOptions {
  bool realtime = true;  // strict serializability; false checks serializability only
  // Breadth-first search steps the cycle classification may spend. A component it cannot
  // classify within them is still reported, as kCycle.
  uint64_t search_budget_steps = 50'000'000;
  size_t max_findings = 20;  // described in full; the rest are counted
};

struct CheckResult {
  bool valid = true;
  std::vector<Finding> findings;
  size_t findings_not_kept = 0;
  size_t transactions = 0;  // in the graph (ok, and info seen to have happened)
  size_t edges = 0;
  // One line: "valid (N transactions, E edges)" or the anomalies with their counts.
  std::string Summary() const;
};

CheckResult Check(const std::vector<Txn>& history, const CheckOptions& options = {});

// One transaction as reports print it: "p3 ok @120-135 [append x 4] [r y [1 2]]".
std::string FormatTxn(const Txn& txn);

// A history as text, one transaction a line (blank lines and # comments skipped):
//   ok 3 120 135 append x 4; r y 1 2; r z
//   info 1 140 - append x 5
//   TYPE PROCESS INVOKE_MS COMPLETE_MS(or -) then micro-ops separated by ';'. A read of an ok
//   transaction lists its elements (none: the empty list); reads of fail and info transactions
//   are unknown, whatever follows the key.
absl::StatusOr<std::vector<Txn>> ParseHistory(absl::string_view text);

// A strictly serializable history by construction, for tests and benchmarks: `processes`
// clients each run transactions of 1-4 micro-ops on `keys` keys, one after another; each takes
// effect at a seeded moment inside its interval, in that order, against a model of the lists.
// About 5% fail (no effect) and 5% end as info (taking effect or not); a process whose
// transaction ended as info is replaced by a new one, as in Jepsen.
struct RandomHistoryOptions {
  uint64_t seed = 1;
  size_t transactions = 10'000;
  int processes = 16;
  int keys = 32;
};
std::vector<Txn> RandomHistory(const RandomHistoryOptions& options);

}  // namespace kvstore::sim::elle

#endif  // KVSTORE_SIM_ELLE_H_
