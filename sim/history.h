#ifndef KVSTORE_SIM_HISTORY_H_
#define KVSTORE_SIM_HISTORY_H_

// An operation history: what clients asked of the store and what they were told, in real-time
// order. The simulator records one, the linearizability checker (sim/linearizability.h) judges
// it, and a failing one is saved under testdata/ as a text file a person can read and replay.
//
// File format (modelled on Jepsen's histories): one event per line,
//
//   [@<ticks>] <process> <type> <function> <key> <value>   [# comment]
//
//   @<ticks>    optional virtual time of the event; must not decrease down the file. Only an
//               annotation for readers: the ORDER OF LINES is the real-time order the checker uses
//               (an event on an earlier line happened before one on a later line).
//   <process>   non-negative integer naming a client. A process has at most one operation
//               outstanding: it invokes, then completes that operation, then may invoke again.
//   <type>      invoke | ok | fail | refused | info
//                 ok       the operation took effect (for a read: returned the value on the line)
//                 fail     the operation certainly did not take effect (a request rejected before
//                          it reached the log, a cas refused for a reason the client does not
//                          know, ...)
//                 refused  cas only: it did not take effect because the key's value was not the
//                          expected <old> (a txn whose compare failed). Besides "nothing
//                          changed" that is an observation: at some moment between invocation
//                          and completion the value differed from <old>. The checker takes it
//                          as a read that saw some value other than <old>.
//                 info     outcome unknown (timeout, crash, lost connection): it may have taken
//                          effect at any moment after its invocation, or never. An invocation
//                          that is never completed means the same.
//   <function>  read (alias get) | write (alias put) | cas | append | delete
//                 read    value: nil on the invocation; on an ok completion the value read
//                 write   value: the value written (never nil; use delete)
//                 cas     value: <old>-><new>, compare-and-set; either side may be nil (create if
//                         absent, delete if equal)
//                 append  value: a token appended to the key's string value (absent = "")
//                 delete  value: nil; the key becomes absent
//   <key>       a token
//   <value>     a token, or nil for "absent". A completion repeats its invocation's function, key
//               and value (a refused cas too: <old> is what it saw the value differ from), except
//               a read's ok completion (the value read); a fail or info completion may also
//               write nil.
//
// A token is a non-empty run of characters without whitespace that does not start with '#' and is
// not the word nil (which always means "absent"); a cas's <old> must not contain "->". A field
// starting with '#' starts a comment that runs to the end of the line; blank lines are ignored.
// Example:
//
//   # two clients race on key x; client 1's read sees client 0's write
//   @10 0 invoke write x 1
//   @11 1 invoke read  x nil
//   @12 0 ok     write x 1
//   @14 1 ok     read  x 1
//   @15 0 invoke cas   x 1->2
//   @19 0 ok     cas   x 1->2
//   @20 0 invoke cas   x 1->3
//   @22 0 refused cas  x 1->3     # x was not 1 (it was 2): nothing changed
//   @23 1 invoke append x ab
//   @24 0 invoke cas   x 2->4
//   @25 0 fail   cas   x 2->4     # rejected (no leader): nothing changed, nothing observed
//   @28 1 info   append x ab      # timed out: may or may not have happened
//
// FormatHistory writes canonical lines (no comments, aliases spelled read/write) that parse back
// to an equal History.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvstore::sim {

// The number of events a History accepts. Operations are indexed with 32 bits in the checker, and
// its memory grows with the operations per key; far beyond any simulation run we intend.
inline constexpr size_t kMaxHistoryEvents = size_t{1} << 24;

enum class EventType : uint8_t { kInvoke, kOk, kFail, kInfo, kRefused };
enum class Function : uint8_t { kRead, kWrite, kCas, kAppend, kDelete };

// The canonical spelling in the file format: "invoke", "read", ...
absl::string_view EventTypeName(EventType type);
absl::string_view FunctionName(Function function);

// A key's value; std::nullopt is "absent" (nil in the file).
using Value = std::optional<std::string>;

// One line of a history.
struct Event {
  std::optional<int64_t> time_ticks;
  int64_t process = 0;
  EventType type = EventType::kInvoke;
  Function function = Function::kRead;
  std::string key;
  // write/append: the argument; cas: the expected (old) value; read ok completion: the value
  // read; otherwise nil.
  Value value;
  // cas only: the value set when the expected value matches.
  Value new_value;

  bool operator==(const Event&) const = default;
};

enum class Outcome : uint8_t {
  kOk,       // took effect (completed with ok)
  kFail,     // certainly did not take effect
  kUnknown,  // completed with info, or still outstanding
  kRefused,  // a cas that did not take effect because the value differed from its expected one
};

// An invocation paired with its completion, if any.
struct Operation {
  int64_t process = 0;
  Function function = Function::kRead;
  std::string key;
  Value value;       // as Event::value of the invocation
  Value new_value;   // as Event::new_value (cas)
  Value read_value;  // a read with outcome kOk: the value it returned
  Outcome outcome = Outcome::kUnknown;
  size_t invoke_event = 0;               // index into History::events()
  std::optional<size_t> complete_event;  // absent while outstanding
};

// A well-formed history: every accessor's invariants (pairing, one outstanding operation per
// process, canonical arguments) hold because Append rejects any event that would break them.
class History {
 public:
  // Appends one event after checking it against the events before it. Errors are
  // InvalidArgument and say what is wrong (the parser prefixes the line number).
  absl::Status Append(Event event);

  const std::vector<Event>& events() const { return events_; }
  // One per invocation, in invocation order.
  const std::vector<Operation>& operations() const { return operations_; }

  // Histories are equal when their events are; operations are derived from them.
  bool operator==(const History& other) const { return events_ == other.events_; }

 private:
  std::vector<Event> events_;
  std::vector<Operation> operations_;
  absl::flat_hash_map<int64_t, size_t> outstanding_;  // process -> index into operations_
  std::optional<int64_t> last_time_ticks_;
};

// Parses the file format above. Errors are InvalidArgument: "line <n>: <problem>".
absl::StatusOr<History> ParseHistory(absl::string_view text);

// One canonical line, without a newline: "@12 0 ok read x 1".
std::string FormatEvent(const Event& event);
// Every event, one per line, each ending in '\n'.
std::string FormatHistory(const History& history);

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_HISTORY_H_
