#ifndef KVSTORE_SIM_LINEARIZABILITY_H_
#define KVSTORE_SIM_LINEARIZABILITY_H_

// A linearizability checker of the Knossos / Porcupine class for histories of sim/history.h.
//
// A history is linearizable when every operation that completed ok can be given a point in time
// between its invocation and its completion such that, taken in the order of those points, the
// operations are a legal sequential run of the model (Herlihy & Wing 1990). Operations that
// failed are dropped: they certainly did not take effect. A cas refused because the value
// differed (`refused` in the history) took no effect either, but it observed something: it gets
// a point like a read, where the value must differ from the cas's expected one, and changes
// nothing. Operations with an unknown outcome (info, or never completed) may take effect at any
// point after their invocation, or never: their completion is treated as at +infinity and the
// search may leave them out.
//
// The search is Wing & Gong's (1993): walk the history's call and return entries in real-time
// order, linearizing any call whose operation the model accepts in the current state, and
// backtracking when a return is reached whose call has not been linearized. Lowe's improvement
// ("Testing for linearizability", 2017) memoises each configuration reached, (set of linearized
// operations, model state), and never explores one twice, which turns the exponential search into
// one bounded by the number of distinct configurations. A set is stored as its end and the holes
// below it (the few operations in flight), ~40 bytes rather than a bit per operation of the key.
// Six further prunings:
//   * P-compositionality (Horn & Kroening 2015): every operation touches one key, so the history
//     is linearizable iff each key's sub-history is. Keys are checked separately, in key order.
//   * An unknown-outcome mutation whose effect no operation of the key can have observed is
//     dropped: no read returned and no cas expected the value a write or cas left (with appends
//     on the key: any value starting with it), or any value containing an append's argument,
//     and no refused cas expected a value other than the one left (with appends: none is).
//     The operations after it up to the next write then hold only appends, so removing it from
//     any linearization keeps that legal, and it never decides the verdict. An operation that
//     completed before the mutation was invoked observes none of its effects, and (without
//     appends on the key) a refused cas whose expected value no mutation of the key can leave
//     is legal wherever it lands: neither keeps a mutation in the search. On busy keys with
//     many unknown writes beside refusals, that is the difference between hundreds of steps
//     and tens of millions.
//   * A read (or a cas whose old and new values are equal) legal in a configuration C is as good
//     there as anywhere later: C has a completion iff C plus the read has one. So when the
//     search backtracks out of C plus a read, it backtracks out of C as well.
//   * No stranded observers. Each operation takes effect at most once, so a state that only one
//     operation can make (or only the start, for nil) holds over one stretch of a run at most;
//     a state that only one append makes needs the state it appends to just before. A move that
//     leaves such a state while a known operation still needs it (directly, or through the
//     states its value must be built from) has no completion and is not tried. With unique
//     values, the usual case, this settles the order of concurrent writes at their first step.
//   * Unobserved states are one state: a value that no read returned and no cas (refused or
//     not) expected, nor (with appends on the key) any value starting with it, behaves like
//     every other such value in every future (reads and cas fail there, refusals pass, appends
//     lead to another such value, writes leave it), so the search keeps one "garbage" state
//     for all of them and the memo table merges configurations that differ only there.
//   * Fewest unknown operations. If a history is linearizable, some linearization uses the
//     fewest unknown-outcome operations; call a configuration optimal when it lies on one. The
//     search may give up any configuration that is not optimal, and every pruning above keeps
//     optimal configurations (an optimal configuration plus a read legal in it is optimal), so
//     the search still finds a linearization. Not optimal: linearizing an unknown operation that
//     leaves the state as it was (a delete of an absent key, a write into the garbage state), or
//     reaching a configuration that one with the same state and one unknown operation fewer
//     already reached (explored and failed, or on the path): any completion of the one is a
//     completion of the other with that operation left out. Such a configuration stays in the
//     memo table as failed. A read's shortcut above applies to known operations only: an
//     unknown one is never on a path of fewest unknown operations.
//     On fuzz seed 2487's busiest key (1,202 operations, 180 refusals, 35 unknown mutations
//     kept) these two cut the search from 15.3 million steps to under 10,000.
//
// Cost is bounded by a budget of search steps (one step = one call or return entry visited),
// not by wall-clock time, so a verdict is reproducible on any machine: when the budget runs out
// the verdict is kUnknown. The memo table is bounded in bytes the same way.
//
// On a violation the result names the key and a small window of its sub-history that is already
// not linearizable, built only by steps that keep "window not linearizable => history not
// linearizable" true, so the window explains a real violation:
//   1. the shortest prefix of the key's events that fails (found by bisection: a prefix of a
//      linearizable history is linearizable, so failure is monotone in the prefix length; an
//      operation invoked but not completed inside the prefix counts as unknown-outcome);
//   2. then greedily, until nothing changes: drop each read or refused cas whose removal keeps
//      the window failing (neither changes the state, so removing one never makes a history
//      fail), then each
//      mutation whose effect nothing in the window can have observed (same argument as the
//      pruning above).

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sim/history.h"

namespace kvstore::sim {

enum class Model : uint8_t {
  // One register: read, write and cas. Every operation must name the same key.
  kRegister,
  // A map from key to register, with append (string concatenation, absent = "") and delete.
  kKv,
};

// A search step costs ~0.1 us, so this stops a pathological key after seconds, not hours. A
// 10,000-operation, 16-client history over 100 keys needs ~10,000 steps; the same on a single key
// (16 operations always in flight on it) 100,000 to 250,000, and with four times the appends
// about a million.
inline constexpr uint64_t kDefaultMaxSearchSteps = 50'000'000;
// Minimisation runs the search O(log n + n) times on shrinking windows; same order of budget.
inline constexpr uint64_t kDefaultMaxMinimizeSteps = 50'000'000;
// The memo table of one key's search: ~40 bytes per configuration, plus interned values.
inline constexpr uint64_t kDefaultMaxMemoBytes = uint64_t{1} << 30;

struct CheckOptions {
  Model model = Model::kKv;
  // Search steps for the whole history (all keys together), excluding minimisation.
  uint64_t max_search_steps = kDefaultMaxSearchSteps;
  // Memo table bytes for one key's search; a key that exceeds it is kUnknown.
  uint64_t max_memo_bytes = kDefaultMaxMemoBytes;
  // Whether to shrink a violation to a small window (otherwise the window is the key's whole
  // sub-history), and the search steps all of the shrinking may take. When they run out the
  // window found so far (still failing) is reported.
  bool minimize = true;
  uint64_t max_minimize_steps = kDefaultMaxMinimizeSteps;
};

enum class Verdict : uint8_t { kLinearizable, kNotLinearizable, kUnknown };

// "linearizable", "not linearizable", "unknown".
absl::string_view VerdictName(Verdict verdict);

struct CheckResult {
  Verdict verdict = Verdict::kLinearizable;
  // Search steps spent proving the verdict, and then shrinking the violation.
  uint64_t search_steps = 0;
  uint64_t minimize_steps = 0;
  // Operations (all outcomes) and distinct keys in the history.
  size_t operations = 0;
  size_t keys = 0;

  // kNotLinearizable: the key whose sub-history has no linearization; kUnknown: the key whose
  // search ran out of budget. Empty when linearizable.
  std::string key;
  // Operations on `key`, all outcomes (set with `key`).
  size_t key_operations = 0;
  // kNotLinearizable: a sub-history of `key` (events in the original order) that has no
  // linearization by itself, and whose having none implies the whole history has none. An
  // invocation without a completion in it has an unknown outcome.
  History window;
  // kUnknown: which budget ran out.
  std::string reason;

  // A report for people: the verdict, counts and, on a violation, the window as history lines.
  std::string Describe() const;
};

// Checks `history` against `options.model`. Errors (InvalidArgument) only for a history the
// model cannot express: append or delete under kRegister, or more than one key under kRegister.
absl::StatusOr<CheckResult> CheckLinearizability(const History& history,
                                                 const CheckOptions& options = {});

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_LINEARIZABILITY_H_
