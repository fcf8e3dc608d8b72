#include "sim/linearizability.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "core/raft/rand.h"
#include "sim/check.h"

namespace kvstore::sim {
namespace {

// ---------------------------------------------------------------------------------------------
// The search's view of one key's operations.

// Interned values: the search compares and stores small integers, not strings.
using ValueId = int32_t;
constexpr ValueId kNil = -1;

class ValueTable {
 public:
  ValueId Intern(absl::string_view bytes) {
    auto found = ids_.find(bytes);
    if (found != ids_.end()) return found->second;
    SIM_CHECK(values_.size() < static_cast<size_t>(std::numeric_limits<ValueId>::max()))
        << "too many distinct values: " << values_.size();
    const ValueId id = static_cast<ValueId>(values_.size());
    values_.emplace_back(bytes);
    ids_.emplace(std::string(bytes), id);
    // Both copies, plus table overhead: a deterministic estimate, not the allocator's figure.
    bytes_ += 2 * bytes.size() + kEntryOverheadBytes;
    return id;
  }
  ValueId InternValue(const Value& value) { return value.has_value() ? Intern(*value) : kNil; }
  // kNil when never interned.
  ValueId Find(absl::string_view bytes) const {
    auto found = ids_.find(bytes);
    return found == ids_.end() ? kNil : found->second;
  }
  // An absent value reads as "" (what an append appends to).
  absl::string_view Get(ValueId id) const {
    return id == kNil ? absl::string_view() : absl::string_view(values_[id]);
  }
  uint64_t bytes() const { return bytes_; }
  size_t size() const { return values_.size(); }

 private:
  static constexpr uint64_t kEntryOverheadBytes = 80;

  absl::flat_hash_map<std::string, ValueId> ids_;
  std::vector<std::string> values_;
  uint64_t bytes_ = 0;
};

struct SearchOp {
  Function function = Function::kRead;
  // Completed ok (or, a cas, refused) inside the window: must be linearized. Otherwise the
  // outcome is unknown and the search may leave it out.
  bool known = false;
  // A cas refused because the value differed: legal in any state but `value`, changes nothing.
  bool refused = false;
  ValueId value = kNil;      // write/append: argument; cas: expected; read: the value read
  ValueId new_value = kNil;  // cas: the value set
  size_t call_event = 0;     // event indexes in the full history: real-time order
  size_t return_event = 0;   // only when known
};

// A cut of one key's sub-history: the operations kept (indexes into History::operations(), in
// invocation order) and the event index at which the history is cut off. An operation invoked at
// or after the cut is left out; one completing at or after it counts as unknown-outcome.
struct Window {
  std::vector<size_t> operations;
  size_t event_limit = 0;
};

// Must the search linearize the operation inside a window cut at `event_limit`? It completed
// before the cut, with ok, or refused: a refused cas observed a value other than its expected
// one at some moment between invocation and completion.
bool Known(const Operation& operation, size_t event_limit) {
  return (operation.outcome == Outcome::kOk || operation.outcome == Outcome::kRefused) &&
         *operation.complete_event < event_limit;
}

// Does the operation take part in the search at all? Failed operations did not take effect; a
// read whose result is unknown constrains nothing, nor does a refused cas whose refusal lies
// beyond the cut (it certainly changed nothing, and what it saw is not in the window).
bool Relevant(const Operation& operation, size_t event_limit) {
  if (operation.invoke_event >= event_limit) return false;
  if (operation.outcome == Outcome::kFail) return false;
  const bool known = Known(operation, event_limit);
  if (operation.outcome == Outcome::kRefused) return known;
  return known || operation.function != Function::kRead;
}

// Whether the operation may change the state: not a read, not a refused cas.
bool IsMutation(const Operation& operation) {
  return operation.function != Function::kRead && operation.outcome != Outcome::kRefused;
}

// The values a set of operations observes: what reads returned and what cas operations expected;
// and the values refused cas operations saw the state differ from.
//
// Why it matters: let o be a mutation and S a legal sequential order of the set with o in it. The
// operations after o up to the next write or delete see the state o left, extended by any appends
// in between (appends only extend a string). If no operation of the set can have observed such a
// state, that stretch holds appends only, which are legal in any state; so S without o is legal
// too: removing o never turns a linearizable set into a non-linearizable one. Such a state
//   * after a write or cas leaving v: is v, or with appends on the key starts with v;
//   * after a delete: is nil, or with appends any value at all;
//   * after an append of x: contains x.
// A refused cas expecting v sees such a state s only if s != v: without appends on the key the
// stretch holds exactly the value the mutation left, so it observes the effect of a write or cas
// leaving w exactly when w != v (of a delete when v is not nil); with appends, or of an append,
// it may observe any.
//
// Two refinements keep a busy key's refusals from making every mutation observed:
//   * Real time: an operation in o's stretch comes after o, so it was linearized after o's
//     invocation and completed after it. An observer that completed before o was invoked is in
//     no stretch of o.
//   * A refused cas placed in o's stretch sees, once o is removed, the state before o instead.
//     Without appends on the key that state is nil or a value some other mutation of the set
//     leaves. So a refusal expecting v != nil that no mutation of the set can leave (no write of
//     v, no cas to v) stays legal wherever it lands: it observes nothing that matters.
class Observations {
 public:
  explicit Observations(bool has_appends) : has_appends_(has_appends) {}

  void AddOperation(const Operation& operation, int delta) {
    // An unknown outcome (info, or never completed) may take effect at any time after.
    const bool completed_known =
        operation.outcome == Outcome::kOk || operation.outcome == Outcome::kRefused;
    const size_t completed = completed_known ? operation.complete_event.value_or(kNever) : kNever;
    if (operation.outcome == Outcome::kRefused) {
      Count(&refusals_, operation.value, completed, delta);
      return;
    }
    switch (operation.function) {
      case Function::kRead:
        if (operation.outcome == Outcome::kOk) {
          Count(&observed_, operation.read_value, completed, delta);
        }
        break;
      case Function::kCas:
        Count(&observed_, operation.value, completed, delta);
        CountMaker(operation.new_value, delta);
        break;
      case Function::kWrite:
        CountMaker(operation.value, delta);
        break;
      case Function::kDelete:
      case Function::kAppend:
        break;
    }
  }

  // Could an operation of the set have seen a state that `mutation` made?
  bool ObservesEffectOf(const Operation& mutation) const {
    SIM_CHECK(IsMutation(mutation)) << FunctionName(mutation.function);
    const size_t after = mutation.invoke_event;
    switch (mutation.function) {
      case Function::kWrite:
        return ObservesStateFrom(mutation.value, after);
      case Function::kCas:
        return ObservesStateFrom(mutation.new_value, after);
      case Function::kDelete:
        return ObservesStateFrom(std::nullopt, after);
      case Function::kAppend:
        if (AnyRefusalAfter(after, [](const Value&) { return true; })) return true;
        for (const auto& [value, completions] : observed_) {
          if (value.has_value() && absl::StrContains(*value, *mutation.value) &&
              Latest(completions) > after) {
            return true;
          }
        }
        return false;
      case Function::kRead:
        break;
    }
    return true;
  }

 private:
  static constexpr size_t kNever = std::numeric_limits<size_t>::max();
  // By value: how many observers completed at each event (kNever: not completed).
  using Completions = absl::btree_map<size_t, int>;
  using ByValue = absl::btree_map<Value, Completions>;  // nil first, then strings in order

  static size_t Latest(const Completions& completions) {
    return completions.empty() ? 0 : completions.rbegin()->first;
  }

  bool ObservesStateFrom(const Value& result, size_t after) const {
    if (AnyRefusalAfter(after, [&](const Value& expected) { return expected != result; })) {
      return true;
    }
    if (!result.has_value()) {
      if (has_appends_) {
        for (const auto& [value, completions] : observed_) {
          if (Latest(completions) > after) return true;
        }
        return false;
      }
      auto nil = observed_.find(std::nullopt);
      return nil != observed_.end() && Latest(nil->second) > after;
    }
    if (!has_appends_) {
      auto same = observed_.find(result);
      return same != observed_.end() && Latest(same->second) > after;
    }
    // With appends, any observed value starting with the result (they follow it in order).
    for (auto it = observed_.lower_bound(result);
         it != observed_.end() && it->first.has_value() && absl::StartsWith(*it->first, *result);
         ++it) {
      if (Latest(it->second) > after) return true;
    }
    return false;
  }

  // Is there a refusal completed after `after` whose expected value passes `sees` and can
  // matter (see the class comment)?
  template <typename Sees>
  bool AnyRefusalAfter(size_t after, Sees sees) const {
    for (const auto& [expected, completions] : refusals_) {
      if (Latest(completions) <= after || !sees(expected)) continue;
      if (has_appends_ || !expected.has_value()) return true;
      auto makers = makers_.find(*expected);
      if (makers != makers_.end()) return true;
    }
    return false;
  }

  static void Count(ByValue* by_value, const Value& value, size_t completed, int delta) {
    Completions& completions = (*by_value)[value];
    int& count = completions[completed];
    count += delta;
    SIM_CHECK(count >= 0) << "observation removed twice";
    if (count == 0) completions.erase(completed);
    if (completions.empty()) by_value->erase(value);
  }

  void CountMaker(const Value& value, int delta) {
    if (!value.has_value()) return;  // nil is the initial state anyway
    int& count = makers_[*value];
    count += delta;
    SIM_CHECK(count >= 0) << "mutation removed twice";
    if (count == 0) makers_.erase(*value);
  }

  const bool has_appends_;
  ByValue observed_;  // reads that returned ok, and cas operations: the value they observed
  ByValue refusals_;  // refused cas operations: the value they saw the state differ from
  absl::flat_hash_map<std::string, int> makers_;  // writes and cas (not refused) by value left
};

bool HasAppends(const History& history, const std::vector<size_t>& operations) {
  for (size_t index : operations) {
    if (history.operations()[index].function == Function::kAppend) return true;
  }
  return false;
}

// Of the relevant operations (indexes into History::operations()), drops unknown-outcome
// mutations that nothing observes (see Observations): an unknown operation may be left out
// of a linearization anyway, so whether the rest is linearizable does not change, and the search
// no longer tries it at every point. Dropping a cas removes its own observation, which may make
// another unknown operation unobserved: repeat until nothing changes.
void DropUnobservedUnknownMutations(const History& history, size_t event_limit,
                                    std::vector<size_t>* operations) {
  Observations observations(HasAppends(history, *operations));
  for (size_t index : *operations) observations.AddOperation(history.operations()[index], +1);
  std::vector<bool> dropped(operations->size(), false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i < operations->size(); ++i) {
      const Operation& operation = history.operations()[(*operations)[i]];
      if (dropped[i] || Known(operation, event_limit) || !IsMutation(operation)) continue;
      if (observations.ObservesEffectOf(operation)) continue;
      dropped[i] = true;
      changed = true;
      observations.AddOperation(operation, -1);
    }
  }
  size_t kept = 0;
  for (size_t i = 0; i < operations->size(); ++i) {
    if (!dropped[i]) (*operations)[kept++] = (*operations)[i];
  }
  operations->resize(kept);
}

std::vector<SearchOp> PrepareSearch(const History& history, const Window& window,
                                    ValueTable* values) {
  std::vector<size_t> relevant;
  relevant.reserve(window.operations.size());
  for (size_t index : window.operations) {
    if (Relevant(history.operations()[index], window.event_limit)) relevant.push_back(index);
  }
  DropUnobservedUnknownMutations(history, window.event_limit, &relevant);
  std::vector<SearchOp> ops;
  ops.reserve(relevant.size());
  for (size_t index : relevant) {
    const Operation& operation = history.operations()[index];
    SearchOp& op = ops.emplace_back();
    op.function = operation.function;
    op.known = Known(operation, window.event_limit);
    op.refused = operation.outcome == Outcome::kRefused;
    op.value = values->InternValue(op.function == Function::kRead ? operation.read_value
                                                                  : operation.value);
    op.new_value = values->InternValue(operation.new_value);
    op.call_event = operation.invoke_event;
    if (op.known) op.return_event = *operation.complete_event;
  }
  return ops;
}

// ---------------------------------------------------------------------------------------------
// The memo table of configurations reached (Lowe 2017): a linearized set and a state.
//
// A linearized set is stored compressed, as its end (one past the highest member) and the holes
// below it: operations are numbered in invocation order and the search linearizes roughly in
// that order, so the holes are the few operations still in flight plus unknown-outcome ones
// never linearized. That is a handful of numbers where the bitset has one bit per operation of
// the key, and the memo table is what bounds the size of history a key can have.
class MemoTable {
 public:
  enum class Insertion { kNew, kSeen, kFull };

  explicit MemoTable(uint64_t max_bytes)
      : max_bytes_(max_bytes), set_(0, Hash{this}, Equal{this}) {}
  MemoTable(const MemoTable&) = delete;
  MemoTable& operator=(const MemoTable&) = delete;

  // Whether (bits, state) is in the table; `hash` as for Insert.
  bool Contains(const std::vector<uint64_t>& bits, uint64_t hash, ValueId state) {
    Encode(bits, &probe_);
    probe_state_ = state;
    probe_hash_ = hash;
    return set_.contains(kProbe);
  }

  // `hash` must be a function of (bits, state) alone.
  Insertion Insert(const std::vector<uint64_t>& bits, uint64_t hash, ValueId state,
                   uint64_t other_bytes) {
    Encode(bits, &probe_);
    probe_state_ = state;
    probe_hash_ = hash;
    if (set_.contains(kProbe)) return Insertion::kSeen;
    const uint64_t entry_bytes = probe_.size() * sizeof(uint32_t) + kEntryOverheadBytes;
    if (bytes_ + other_bytes + entry_bytes > max_bytes_) return Insertion::kFull;
    SIM_CHECK(entries_.size() < kProbe) << "memo table overflow: " << entries_.size();
    const uint32_t index = static_cast<uint32_t>(entries_.size());
    entries_.push_back(Entry{arena_.size(), static_cast<uint32_t>(probe_.size()), state, hash});
    arena_.insert(arena_.end(), probe_.begin(), probe_.end());
    bytes_ += entry_bytes;
    set_.insert(index);
    return Insertion::kNew;
  }

 private:
  static constexpr uint32_t kProbe = std::numeric_limits<uint32_t>::max();
  // Offset, length, state, hash, and the hash set's slot with its control byte and spare room.
  static constexpr uint64_t kEntryOverheadBytes = 8 + 4 + 4 + 8 + 8;

  struct Entry {
    size_t offset;  // into arena_
    uint32_t length;
    ValueId state;
    uint64_t hash;
  };

  struct Hash {
    const MemoTable* table;
    size_t operator()(uint32_t index) const {
      return index == kProbe ? table->probe_hash_ : table->entries_[index].hash;
    }
  };
  struct Equal {
    const MemoTable* table;
    bool operator()(uint32_t a, uint32_t b) const {
      if (table->StateOf(a) != table->StateOf(b)) return false;
      const absl::Span<const uint32_t> left = table->CodeOf(a);
      const absl::Span<const uint32_t> right = table->CodeOf(b);
      return left == right;
    }
  };

  // [end, hole, hole, ...]: the members are exactly the numbers below end that are not holes.
  static void Encode(const std::vector<uint64_t>& bits, std::vector<uint32_t>* code) {
    code->clear();
    size_t top_word = bits.size();
    while (top_word > 0 && bits[top_word - 1] == 0) --top_word;
    if (top_word == 0) {
      code->push_back(0);
      return;
    }
    const uint64_t last = bits[top_word - 1];
    const uint32_t end = static_cast<uint32_t>((top_word - 1) * 64 + (64 - __builtin_clzll(last)));
    code->push_back(end);
    for (size_t word = 0; word < top_word; ++word) {
      uint64_t holes = ~bits[word];
      if (word == top_word - 1)
        holes &= (end % 64 == 0) ? ~uint64_t{0} : (uint64_t{1} << (end % 64)) - 1;
      while (holes != 0) {
        code->push_back(static_cast<uint32_t>(word * 64 + __builtin_ctzll(holes)));
        holes &= holes - 1;
      }
    }
  }

  ValueId StateOf(uint32_t index) const {
    return index == kProbe ? probe_state_ : entries_[index].state;
  }
  absl::Span<const uint32_t> CodeOf(uint32_t index) const {
    if (index == kProbe) return absl::MakeConstSpan(probe_);
    const Entry& entry = entries_[index];
    return absl::MakeConstSpan(arena_.data() + entry.offset, entry.length);
  }

  const uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  std::vector<uint32_t> arena_;  // every entry's code, back to back
  std::vector<Entry> entries_;
  // The configuration being looked up, addressed as index kProbe.
  std::vector<uint32_t> probe_;
  ValueId probe_state_ = kNil;
  uint64_t probe_hash_ = 0;
  absl::flat_hash_set<uint32_t, Hash, Equal> set_;
};

// ---------------------------------------------------------------------------------------------
// Wing & Gong's search over one key.

enum class SearchStatus { kLinearizable, kNotLinearizable, kOutOfSteps, kOutOfMemory };

// The sequential specification: applies `op` in `state`, or returns false if the model cannot
// produce the op's recorded result from that state.
bool Apply(const SearchOp& op, ValueId state, ValueTable* values, std::string* scratch,
           ValueId* next) {
  switch (op.function) {
    case Function::kRead:
      *next = state;
      return op.value == state;
    case Function::kWrite:
      *next = op.value;
      return true;
    case Function::kCas:
      if (op.refused) {  // it saw another value than the expected one, and changed nothing
        *next = state;
        return op.value != state;
      }
      *next = op.new_value;
      return op.value == state;
    case Function::kDelete:
      *next = kNil;
      return true;
    case Function::kAppend:
      scratch->assign(values->Get(state).data(), values->Get(state).size());
      scratch->append(values->Get(op.value).data(), values->Get(op.value).size());
      *next = values->Intern(absl::string_view(*scratch));
      return true;
  }
  return false;
}

class Search {
 public:
  Search(std::vector<SearchOp> ops, ValueTable* values)
      : ops_(std::move(ops)), values_(values), bits_((ops_.size() + 63) / 64, 0) {
    BuildEntries();
    // Before CountObservations sizes its tables, so that the garbage state has a slot there:
    // single to no one, on no observer's chain.
    garbage_ = values_->Intern(kGarbageBytes);
    CountObservations();
    for (const SearchOp& op : ops_) {
      has_appends_ |= op.function == Function::kAppend;
      if ((op.function == Function::kRead || op.function == Function::kCas) && op.value != kNil) {
        observed_.emplace_back(values_->Get(op.value));
      }
    }
    std::sort(observed_.begin(), observed_.end());
  }

  SearchStatus Run(uint64_t max_steps, uint64_t max_memo_bytes, uint64_t* steps) {
    *steps = 0;
    size_t known_total = 0;
    for (const SearchOp& op : ops_) known_total += op.known ? 1 : 0;
    size_t known_linearized = 0;
    if (known_total == 0) return SearchStatus::kLinearizable;

    MemoTable memo(max_memo_bytes);
    struct Linearized {
      int32_t call_entry;
      ValueId state_before;
      bool state_preserving;
    };
    std::vector<Linearized> stack;
    stack.reserve(ops_.size());
    // The unknown operations in `stack`, in the same order.
    std::vector<int32_t> unknown_stack;
    std::string scratch;
    ValueId state = kNil;
    uint64_t bits_hash = 0;
    // Undoes linearizations up to and including the most recent one that changed the state, and
    // returns the entry to try next, or 0 when there is nothing left to undo.
    //
    // Why skip the state-preserving ones: let p leave every state it is legal in unchanged (a
    // read, a refused cas, a cas whose old and new values are equal). If p is legal in
    // configuration C, C has
    // a completion iff C+p has one: a completion of C can do p first instead (p is legal now,
    // changes nothing, and taking it out of its later place changes no state after it; real
    // time allows it, as every operation that returned before p's invocation is in C). So once
    // C+p is known to fail, C fails too, and trying C's other entries is wasted work. A write
    // of the current value does not qualify: later, in another state, it would change it. Nor
    // does an unknown operation: the pruning by fewer unknown operations (below) may leave C+p
    // without a completion the search finds while C has one.
    const auto backtrack = [&]() -> int32_t {
      while (!stack.empty()) {
        const Linearized top = stack.back();
        stack.pop_back();
        const int32_t op = entries_[top.call_entry].op;
        state = top.state_before;
        FlipBit(op, &bits_hash);
        if (ops_[op].known) {
          --known_linearized;
        } else {
          unknown_stack.pop_back();
        }
        CountWaiting(ops_[op], +1);
        Unlift(top.call_entry);
        if (!top.state_preserving) return next_[top.call_entry];
      }
      return 0;
    };
    int32_t entry = next_[0];
    while (true) {
      // Every known operation is linearized before the walk can pass its return entry, and an
      // unknown operation has none, so the walk ends by returning before running off the list.
      SIM_CHECK(entry != 0) << "walked off the entry list with " << known_linearized << " of "
                            << known_total << " known operations linearized";
      if (*steps >= max_steps) return SearchStatus::kOutOfSteps;
      ++*steps;
      const Entry& current = entries_[entry];
      if (!current.is_call) {
        // A return whose call is not linearized: this configuration has no completion.
        entry = backtrack();
        if (entry == 0) return SearchStatus::kNotLinearizable;
        continue;
      }
      const SearchOp& op = ops_[current.op];
      ValueId next_state = kNil;
      if (!Step(op, state, &scratch, &next_state) || Strands(current.op, state, next_state)) {
        entry = next_[entry];
        continue;
      }
      const bool state_preserving =
          op.known && (op.function == Function::kRead ||
                       (op.function == Function::kCas && (op.refused || op.value == op.new_value)));
      FlipBit(current.op, &bits_hash);
      const uint64_t state_hash = StateHash(next_state);
      const MemoTable::Insertion insertion =
          memo.Insert(bits_, bits_hash ^ state_hash, next_state, values_->bytes());
      if (insertion == MemoTable::Insertion::kFull) return SearchStatus::kOutOfMemory;
      // Is the new configuration one explored before, or on the current path, but for one more
      // unknown operation: this one (which may leave the state as it was), or the latest
      // unknown one linearized? Then it is on no path of fewest unknown operations (see the
      // header), and stays in the table as failed. Two lookups, not one per unknown operation
      // linearized: on the histories measured the others never found one.
      const auto covered = [&](int32_t unknown) {
        FlipBit(unknown, &bits_hash);
        const bool seen = memo.Contains(bits_, bits_hash ^ state_hash, next_state);
        FlipBit(unknown, &bits_hash);
        return seen;
      };
      if (insertion == MemoTable::Insertion::kSeen ||
          (!op.known && (next_state == state || covered(current.op))) ||
          (!unknown_stack.empty() && covered(unknown_stack.back()))) {
        // Seen before and not on the current path (its set is larger than every set on the
        // path), so explored and failed; or it is one with an unknown operation more.
        FlipBit(current.op, &bits_hash);
        if (!state_preserving) {
          entry = next_[entry];
          continue;
        }
        entry = backtrack();  // the current configuration fails with it (see backtrack)
        if (entry == 0) return SearchStatus::kNotLinearizable;
        continue;
      }
      stack.push_back(Linearized{entry, state, state_preserving});
      if (!op.known) unknown_stack.push_back(current.op);
      CountWaiting(op, -1);
      state = next_state;
      Lift(entry);
      if (op.known && ++known_linearized == known_total) return SearchStatus::kLinearizable;
      entry = next_[0];
    }
  }

 private:
  // Unobserved states are one state.
  //
  // Call a state garbage when no operation of the search observes it, nor any state that
  // appends can make from it: no read returned, and no cas (refused or not) expected, a value
  // equal to it (with appends on the key: starting with it). Nil is never garbage. In a garbage
  // state every read and every cas that is not refused is illegal, every refused cas legal, an
  // append leads to another garbage state (its observers would start with the state too), and
  // a write or delete does what it does anywhere. No observer chain holds a garbage state, so
  // the stranded-observer pruning treats them all alike too. So all garbage states have the same
  // futures, and the search keeps one for all of them (the memo table merges configurations that
  // differ only there). Writes of values no one read, and unknown operations that would only
  // move one such state to another, no longer multiply the configurations.
  static constexpr absl::string_view kGarbageBytes = " garbage";  // no value holds whitespace

  // Apply, with the garbage states merged.
  bool Step(const SearchOp& op, ValueId state, std::string* scratch, ValueId* next) {
    if (state == garbage_ && op.function == Function::kAppend) {
      *next = garbage_;
      return true;
    }
    if (!Apply(op, state, values_, scratch, next)) return false;
    *next = Canonical(*next);
    return true;
  }

  ValueId Canonical(ValueId value) {
    if (value == kNil || value == garbage_) return value;
    if (static_cast<size_t>(value) >= garbage_cache_.size()) {
      garbage_cache_.resize(values_->size(), kUnclassified);
    }
    int8_t& cached = garbage_cache_[value];
    if (cached == kUnclassified) {
      const absl::string_view bytes = values_->Get(value);
      auto it = std::lower_bound(observed_.begin(), observed_.end(), bytes);
      const bool observed =
          it != observed_.end() && (has_appends_ ? absl::StartsWith(*it, bytes) : *it == bytes);
      cached = observed ? kObserved : kGarbage;
    }
    return cached == kGarbage ? garbage_ : value;
  }

  // Entry 0 is the sentinel of a circular doubly linked list in real-time order.
  struct Entry {
    int32_t op = -1;
    bool is_call = false;
    int32_t match = 0;  // a call's return entry; 0 when the outcome is unknown
  };

  void BuildEntries() {
    SIM_CHECK(ops_.size() < (size_t{1} << 30)) << "too many operations: " << ops_.size();
    std::vector<std::pair<size_t, int32_t>> order;  // (event index, entry index)
    entries_.assign(1, Entry{});
    for (size_t i = 0; i < ops_.size(); ++i) {
      const int32_t call = static_cast<int32_t>(entries_.size());
      entries_.push_back(Entry{static_cast<int32_t>(i), true, 0});
      order.emplace_back(ops_[i].call_event, call);
      if (ops_[i].known) {
        SIM_CHECK(ops_[i].return_event > ops_[i].call_event) << "operation " << i;
        const int32_t ret = static_cast<int32_t>(entries_.size());
        entries_.push_back(Entry{static_cast<int32_t>(i), false, 0});
        entries_[call].match = ret;
        order.emplace_back(ops_[i].return_event, ret);
      }
    }
    std::sort(order.begin(), order.end());
    next_.assign(entries_.size(), 0);
    prev_.assign(entries_.size(), 0);
    int32_t last = 0;
    for (const auto& [event, index] : order) {
      next_[last] = index;
      prev_[index] = last;
      last = index;
    }
    next_[last] = 0;
    prev_[0] = last;
  }

  // A read returns the state it is linearized in, and a cas expects it: both observe `value`.
  // A refused cas observes only that the state is not `value`: no state it waits for.
  static bool ObservesState(const SearchOp& op) {
    return op.function == Function::kRead || (op.function == Function::kCas && !op.refused);
  }
  static size_t Slot(ValueId value) { return static_cast<size_t>(value + 1); }

  // Moves that strand an observer.
  //
  // Every operation takes effect at most once. So a state that only one operation can make (or
  // only the start, for nil) holds over one stretch of any run at most: call it single. And a
  // state y whose only maker is one append of a, y = p + a, is made only in state p, its parent:
  // before y can hold, p must. Following parents from an observed value x gives its chain
  // x, p(x), p(p(x)), ... of states that must each hold, in that order, before x can.
  //
  // Now let the state be s, single, and a known operation that observes x not yet linearized,
  // with s on x's chain. Leaving s for a state t that is not the next link towards x strands it:
  // x needs s again later, and s cannot come back. Such a move has no completion, and the search
  // skips it. On one busy key this keeps two concurrent writes from being tried in both orders
  // all the way to the next return (the wrong order dies at its first step), and orders appends
  // by the values that were read: the 10,000-operation single-key history went from 15 million
  // search steps to under a million.
  void CountObservations() {
    absl::flat_hash_map<ValueId, int32_t> set_makers;     // by value set, of writes and cas
    absl::flat_hash_map<ValueId, int32_t> append_makers;  // by argument appended
    absl::flat_hash_map<ValueId, int32_t> append_op;      // by argument: one of its appends
    int32_t nil_makers = 1;                               // the initial state
    for (int32_t i = 0; i < static_cast<int32_t>(ops_.size()); ++i) {
      const SearchOp& op = ops_[i];
      switch (op.function) {
        case Function::kWrite:
          ++set_makers[op.value];
          break;
        case Function::kCas:
          if (op.refused) break;  // makes nothing
          if (op.new_value == kNil) {
            ++nil_makers;
          } else {
            ++set_makers[op.new_value];
          }
          break;
        case Function::kDelete:
          ++nil_makers;
          break;
        case Function::kAppend:
          ++append_makers[op.value];
          append_op[op.value] = i;
          break;
        case Function::kRead:
          break;
      }
    }
    struct Facts {
      bool single = false;
      ValueId parent = kNil;  // kNil: none (a parent is never nil, see below)
      int32_t append = -1;    // the append that alone makes it, if one does
    };
    absl::flat_hash_map<ValueId, Facts> facts;
    const auto analyse = [&](ValueId value) -> Facts {
      auto found = facts.find(value);
      if (found != facts.end()) return found->second;
      Facts fact;
      if (value == kNil) {
        fact.single = nil_makers == 1;
      } else {
        auto set = set_makers.find(value);
        int32_t makers = set == set_makers.end() ? 0 : set->second;
        const std::string state(values_->Get(value));
        size_t appended_length = 0;
        ValueId appended = kNil;
        for (size_t length = 0; length <= state.size(); ++length) {
          const ValueId argument =
              values_->Find(absl::string_view(state).substr(state.size() - length));
          if (argument == kNil) continue;
          auto count = append_makers.find(argument);
          if (count == append_makers.end()) continue;
          makers += count->second;
          appended_length = length;
          appended = argument;
        }
        fact.single = makers == 1;
        if (fact.single && appended != kNil) fact.append = append_op.at(appended);
        // One append and nothing else makes it. An empty parent would be "" or nil (an append
        // reads nil as ""): two states, so no single parent.
        if (fact.single && appended_length > 0 && appended_length < state.size()) {
          fact.parent = values_->Intern(state.substr(0, state.size() - appended_length));
        }
      }
      facts.emplace(value, fact);
      return fact;
    };
    // Every link of every known observer's chain, once per observer (analysing a link may intern
    // its parent, so the per-slot tables are sized only afterwards).
    std::vector<ValueId> waiting_links;
    for (const SearchOp& op : ops_) {
      if (!op.known || !ObservesState(op)) continue;
      ValueId link = op.value;  // nil has no parent, so a chain ends at nil if it starts there
      do {
        waiting_links.push_back(link);
        link = analyse(link).parent;
      } while (link != kNil);
    }
    const size_t slots = values_->size() + 1;  // every value interned so far, and nil
    pending_.assign(slots, 0);
    single_.assign(slots, false);
    parent_.assign(slots, kNil);
    for (ValueId link : waiting_links) ++pending_[Slot(link)];
    targets_.assign(ops_.size(), {});
    for (const auto& [value, fact] : facts) {
      single_[Slot(value)] = fact.single;
      parent_[Slot(value)] = fact.parent;
      if (fact.append >= 0 && pending_[Slot(value)] > 0) targets_[fact.append].push_back(value);
    }
    // Hash order must not decide anything: the order of the targets does not, but keep it fixed.
    for (std::vector<ValueId>& targets : targets_) std::sort(targets.begin(), targets.end());
  }

  // Linearizing (delta -1) or undoing (+1) a known observer: its chain waits on one fewer.
  void CountWaiting(const SearchOp& op, int32_t delta) {
    if (!op.known || !ObservesState(op)) return;
    ValueId link = op.value;
    do {
      pending_[Slot(link)] += delta;
      link = parent_[Slot(link)];
    } while (link != kNil);
  }

  // Would linearizing `op` in `state`, leading to `next`, strand an observer (see above)?
  bool Strands(int32_t index, ValueId state, ValueId next) const {
    const SearchOp& op = ops_[index];
    // An append that alone makes a link of a waiting chain makes it only from its parent: used
    // anywhere else, the link can never hold.
    for (ValueId target : targets_[index]) {
      if (next != target && pending_[Slot(target)] > 0) return true;
    }
    if (next == state) return false;
    const size_t slot = Slot(state);
    // States first made during the search (by appends) are on no observer's chain.
    if (slot >= pending_.size() || !single_[slot]) return false;
    int32_t waiting = pending_[slot];
    if (op.known && ObservesState(op)) --waiting;  // a cas observes the state it leaves
    const size_t next_slot = Slot(next);
    if (next_slot < parent_.size() && parent_[next_slot] == state) waiting -= pending_[next_slot];
    return waiting > 0;
  }

  void Unlink(int32_t entry) {
    next_[prev_[entry]] = next_[entry];
    prev_[next_[entry]] = prev_[entry];
  }
  void Relink(int32_t entry) {
    next_[prev_[entry]] = entry;
    prev_[next_[entry]] = entry;
  }
  // Removes a call and its return from the walk; Unlift restores them (in reverse order).
  void Lift(int32_t call) {
    Unlink(call);
    if (entries_[call].match != 0) Unlink(entries_[call].match);
  }
  void Unlift(int32_t call) {
    if (entries_[call].match != 0) Relink(entries_[call].match);
    Relink(call);
  }

  // Zobrist hashing: the bitset's hash is the XOR of one random word per member.
  void FlipBit(int32_t op, uint64_t* hash) {
    bits_[op / 64] ^= uint64_t{1} << (op % 64);
    *hash ^= raft::SplitMix64::Mix(static_cast<uint64_t>(op) + 0x9E3779B97F4A7C15ull);
  }
  static uint64_t StateHash(ValueId state) {
    return raft::SplitMix64::Mix(static_cast<uint64_t>(static_cast<int64_t>(state)) ^
                                 0xD1B54A32D192ED03ull);
  }

  const std::vector<SearchOp> ops_;
  ValueTable* const values_;
  std::vector<uint64_t> bits_;
  std::vector<Entry> entries_;
  std::vector<int32_t> next_;
  std::vector<int32_t> prev_;
  // By Slot(value), for the values interned before the search (see CountObservations): known
  // observers not yet linearized whose chain holds the value, whether it is single, its parent.
  std::vector<int32_t> pending_;
  std::vector<bool> single_;
  std::vector<ValueId> parent_;
  // By operation: for an append, the waited-on states that it alone makes.
  std::vector<std::vector<ValueId>> targets_;
  // The state standing for every garbage state, whether the search has appends, the values
  // reads and cas operations observe (sorted), and by value what Canonical found.
  ValueId garbage_ = kNil;
  bool has_appends_ = false;
  std::vector<std::string> observed_;
  static constexpr int8_t kUnclassified = -1, kObserved = 0, kGarbage = 1;
  std::vector<int8_t> garbage_cache_;
};

SearchStatus CheckWindow(const History& history, const Window& window, uint64_t max_steps,
                         uint64_t max_memo_bytes, uint64_t* steps) {
  ValueTable values;
  Search search(PrepareSearch(history, window, &values), &values);
  return search.Run(max_steps, max_memo_bytes, steps);
}

// ---------------------------------------------------------------------------------------------
// Shrinking a violation (see the header for why each step keeps the window a real witness).

class Minimizer {
 public:
  Minimizer(const History& history, const CheckOptions& options)
      : history_(history), options_(options), steps_left_(options.max_minimize_steps) {}

  Window Minimize(const std::vector<size_t>& key_operations) {
    // 1. The shortest failing prefix of the key's events, by bisection. The whole sub-history
    // fails and the empty one passes.
    std::vector<size_t> key_events;
    for (size_t index : key_operations) {
      const Operation& operation = history_.operations()[index];
      key_events.push_back(operation.invoke_event);
      if (operation.complete_event.has_value()) key_events.push_back(*operation.complete_event);
    }
    std::sort(key_events.begin(), key_events.end());
    size_t passing = 0;
    size_t failing = key_events.size();
    while (failing - passing > 1) {
      const size_t middle = passing + (failing - passing) / 2;
      if (Fails(Window{key_operations, key_events[middle - 1] + 1})) {
        failing = middle;
      } else {
        passing = middle;
      }
    }
    Window window{{}, key_events[failing - 1] + 1};
    for (size_t index : key_operations) {
      if (Relevant(history_.operations()[index], window.event_limit)) {
        window.operations.push_back(index);
      }
    }

    // 2. Greedy removal, latest operation first, until nothing more can go.
    for (bool changed = true; changed && steps_left_ > 0;) {
      changed = false;
      for (size_t i = window.operations.size(); i-- > 0;) {
        if (IsMutation(history_.operations()[window.operations[i]])) continue;
        changed |= TryRemove(&window, i);
      }
      for (size_t i = window.operations.size(); i-- > 0;) {
        if (!Unobserved(window, i)) continue;
        changed |= TryRemove(&window, i);
      }
    }
    return window;
  }

  uint64_t steps() const { return options_.max_minimize_steps - steps_left_; }

 private:
  bool Fails(const Window& window) {
    if (steps_left_ == 0) return false;
    uint64_t steps = 0;
    const SearchStatus status =
        CheckWindow(history_, window, steps_left_, options_.max_memo_bytes, &steps);
    steps_left_ -= steps;
    return status == SearchStatus::kNotLinearizable;
  }

  bool TryRemove(Window* window, size_t i) {
    Window candidate{{}, window->event_limit};
    candidate.operations = window->operations;
    candidate.operations.erase(candidate.operations.begin() + i);
    if (!Fails(candidate)) return false;
    *window = std::move(candidate);
    return true;
  }

  // A mutation that no other operation of the window observes (see Observations): removing it
  // cannot make a linearizable window fail.
  bool Unobserved(const Window& window, size_t i) const {
    const Operation& candidate = history_.operations()[window.operations[i]];
    if (!IsMutation(candidate)) return false;
    Observations observations(HasAppends(history_, window.operations));
    for (size_t j = 0; j < window.operations.size(); ++j) {
      if (j != i) observations.AddOperation(history_.operations()[window.operations[j]], +1);
    }
    return !observations.ObservesEffectOf(candidate);
  }

  const History& history_;
  const CheckOptions& options_;
  uint64_t steps_left_;
};

History WindowHistory(const History& history, const Window& window) {
  std::vector<size_t> events;
  for (size_t index : window.operations) {
    const Operation& operation = history.operations()[index];
    if (operation.invoke_event >= window.event_limit) continue;
    events.push_back(operation.invoke_event);
    if (operation.complete_event.has_value() && *operation.complete_event < window.event_limit) {
      events.push_back(*operation.complete_event);
    }
  }
  std::sort(events.begin(), events.end());
  History sub_history;
  for (size_t event : events) {
    // A subset of a well-formed history's operations, in the original order, is well formed.
    const absl::Status status = sub_history.Append(history.events()[event]);
    SIM_CHECK(status.ok()) << "window event " << event << ": " << status.ToString();
  }
  return sub_history;
}

}  // namespace

absl::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "not linearizable";
    case Verdict::kUnknown:
      return "unknown";
  }
  return "?";
}

std::string CheckResult::Describe() const {
  std::string text =
      absl::StrCat(VerdictName(verdict), ": ", operations, " operations on ", keys,
                   keys == 1 ? " key" : " keys", ", ", search_steps, " search steps");
  switch (verdict) {
    case Verdict::kLinearizable:
      absl::StrAppend(&text, "\n");
      break;
    case Verdict::kUnknown:
      absl::StrAppend(&text, "; ", reason, " on key ", key, " (", key_operations, " operations)\n");
      break;
    case Verdict::kNotLinearizable: {
      size_t window_operations = 0;
      for (const Event& event : window.events()) {
        window_operations += event.type == EventType::kInvoke ? 1 : 0;
      }
      absl::StrAppend(&text, " (", minimize_steps, " more to shrink)\n", "key ", key, " (",
                      key_operations, " operations) has no linearization, and already these ",
                      window_operations,
                      " have none (an invocation without completion has an unknown outcome):\n");
      for (absl::string_view line :
           absl::StrSplit(FormatHistory(window), '\n', absl::SkipEmpty())) {
        absl::StrAppend(&text, "  ", line, "\n");
      }
      break;
    }
  }
  return text;
}

absl::StatusOr<CheckResult> CheckLinearizability(const History& history,
                                                 const CheckOptions& options) {
  CheckResult result;
  result.operations = history.operations().size();
  absl::btree_map<std::string, std::vector<size_t>> by_key;
  for (size_t i = 0; i < history.operations().size(); ++i) {
    by_key[history.operations()[i].key].push_back(i);
  }
  result.keys = by_key.size();

  if (options.model == Model::kRegister) {
    if (by_key.size() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("the register model holds one value but the history names ", by_key.size(),
                       " keys (first ", by_key.begin()->first, ", last ", by_key.rbegin()->first,
                       "); use the kv model"));
    }
    for (const Operation& operation : history.operations()) {
      if (operation.function == Function::kAppend || operation.function == Function::kDelete) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the register model has no ", FunctionName(operation.function), " (process ",
            operation.process, " on key ", operation.key, "); use the kv model"));
      }
    }
  }

  uint64_t steps_left = options.max_search_steps;
  for (const auto& [key, operations] : by_key) {
    uint64_t steps = 0;
    const SearchStatus status = CheckWindow(history, Window{operations, history.events().size()},
                                            steps_left, options.max_memo_bytes, &steps);
    result.search_steps += steps;
    steps_left -= steps;
    switch (status) {
      case SearchStatus::kLinearizable:
        break;
      case SearchStatus::kNotLinearizable: {
        result.verdict = Verdict::kNotLinearizable;
        result.key = key;
        result.key_operations = operations.size();
        result.reason.clear();
        if (options.minimize) {
          Minimizer minimizer(history, options);
          result.window = WindowHistory(history, minimizer.Minimize(operations));
          result.minimize_steps = minimizer.steps();
        } else {
          result.window = WindowHistory(history, Window{operations, history.events().size()});
        }
        return result;
      }
      case SearchStatus::kOutOfSteps:
      case SearchStatus::kOutOfMemory:
        // A later key may still prove a violation if memory, not steps, ran out here.
        if (result.verdict != Verdict::kUnknown) {
          result.verdict = Verdict::kUnknown;
          result.key = key;
          result.key_operations = operations.size();
          result.reason =
              status == SearchStatus::kOutOfSteps
                  ? absl::StrCat("search step budget of ", options.max_search_steps, " exhausted")
                  : absl::StrCat("memo table budget of ", options.max_memo_bytes,
                                 " bytes exhausted");
        }
        if (status == SearchStatus::kOutOfSteps) return result;
        break;
    }
  }
  return result;
}

}  // namespace kvstore::sim
