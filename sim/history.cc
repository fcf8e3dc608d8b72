#include "sim/history.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kvstore::sim {
namespace {

constexpr absl::string_view kNil = "nil";
constexpr absl::string_view kCasArrow = "->";
constexpr absl::string_view kWhitespace = " \t\r\n\v\f";

std::string Quote(absl::string_view token) { return absl::StrCat("`", token, "`"); }

std::string FormatValue(const Value& value) { return value.has_value() ? *value : "nil"; }

// A token is a non-empty run without whitespace, not starting with '#', not the word nil.
absl::Status CheckToken(absl::string_view what, absl::string_view token) {
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  // absl::ascii_isspace is kWhitespace's set, by table: find_first_of builds a character table
  // on every call, and every simulated event checks two or three tokens.
  if (std::any_of(token.begin(), token.end(),
                  [](char c) { return absl::ascii_isspace(static_cast<unsigned char>(c)); })) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", Quote(token), " contains whitespace"));
  }
  if (token.front() == '#') {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", Quote(token), " starts with '#' (a comment)"));
  }
  return absl::OkStatus();
}

absl::Status CheckValueToken(absl::string_view what, const Value& value) {
  if (!value.has_value()) return absl::OkStatus();
  if (*value == kNil) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is the string \"nil\", which the format reserves for absent"));
  }
  return CheckToken(what, *value);
}

// What every event's fields must satisfy to be written as one line.
absl::Status CheckFields(const Event& event) {
  if (absl::Status s = CheckToken("key", event.key); !s.ok()) return s;
  if (absl::Status s = CheckValueToken("value", event.value); !s.ok()) return s;
  if (absl::Status s = CheckValueToken("new value", event.new_value); !s.ok()) return s;
  if (event.function != Function::kCas && event.new_value.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(FunctionName(event.function), " takes no new value (only cas does)"));
  }
  return absl::OkStatus();
}

// The arguments an invocation of each function takes (see the format in history.h).
absl::Status CheckArguments(const Event& event) {
  const absl::string_view name = FunctionName(event.function);
  switch (event.function) {
    case Function::kRead:
    case Function::kDelete:
      if (event.value.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " invocation takes value nil, got ", Quote(*event.value)));
      }
      break;
    case Function::kWrite:
    case Function::kAppend:
      if (!event.value.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, " needs a value, got nil",
                         event.function == Function::kWrite ? " (use delete)" : ""));
      }
      break;
    case Function::kCas:
      if (event.value.has_value() && absl::StrContains(*event.value, kCasArrow)) {
        return absl::InvalidArgumentError(
            absl::StrCat("cas expected value ", Quote(*event.value), " contains \"->\""));
      }
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<EventType> ParseEventType(absl::string_view token) {
  if (token == "invoke") return EventType::kInvoke;
  if (token == "ok") return EventType::kOk;
  if (token == "fail") return EventType::kFail;
  if (token == "info") return EventType::kInfo;
  if (token == "refused") return EventType::kRefused;
  return absl::InvalidArgumentError(
      absl::StrCat("bad type ", Quote(token), ": want invoke, ok, fail, refused or info"));
}

absl::StatusOr<Function> ParseFunction(absl::string_view token) {
  if (token == "read" || token == "get") return Function::kRead;
  if (token == "write" || token == "put") return Function::kWrite;
  if (token == "cas") return Function::kCas;
  if (token == "append") return Function::kAppend;
  if (token == "delete") return Function::kDelete;
  return absl::InvalidArgumentError(absl::StrCat(
      "bad function ", Quote(token), ": want read (get), write (put), cas, append or delete"));
}

// A non-negative decimal integer, digits only.
absl::StatusOr<int64_t> ParseCount(absl::string_view what, absl::string_view token) {
  int64_t number = 0;
  const bool digits_only =
      !token.empty() && token.find_first_not_of("0123456789") == absl::string_view::npos;
  if (!digits_only || !absl::SimpleAtoi(token, &number)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad ", what, " ", Quote(token), ": want a non-negative integer"));
  }
  return number;
}

Value ParseValue(absl::string_view token) {
  if (token == kNil) return std::nullopt;
  return std::string(token);
}

absl::StatusOr<Event> ParseLine(const std::vector<absl::string_view>& fields) {
  Event event;
  size_t next = 0;
  if (!fields.empty() && fields[0].front() == '@') {
    absl::StatusOr<int64_t> ticks = ParseCount("time", fields[0].substr(1));
    if (!ticks.ok()) return ticks.status();
    event.time_ticks = *ticks;
    next = 1;
  }
  if (fields.size() - next != 5) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected 5 fields `<process> <type> <function> <key> <value>` after the "
                     "optional @<ticks>, got ",
                     fields.size() - next));
  }
  absl::StatusOr<int64_t> process = ParseCount("process", fields[next]);
  if (!process.ok()) return process.status();
  event.process = *process;
  absl::StatusOr<EventType> type = ParseEventType(fields[next + 1]);
  if (!type.ok()) return type.status();
  event.type = *type;
  absl::StatusOr<Function> function = ParseFunction(fields[next + 2]);
  if (!function.ok()) return function.status();
  event.function = *function;
  event.key = std::string(fields[next + 3]);
  const absl::string_view value = fields[next + 4];
  if (event.function == Function::kCas) {
    const size_t arrow = value.find(kCasArrow);
    if (arrow == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("cas value ", Quote(value), " is not of the form <old>-><new>"));
    }
    event.value = ParseValue(value.substr(0, arrow));
    event.new_value = ParseValue(value.substr(arrow + kCasArrow.size()));
  } else {
    event.value = ParseValue(value);
  }
  return event;
}

}  // namespace

absl::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kInvoke:
      return "invoke";
    case EventType::kOk:
      return "ok";
    case EventType::kFail:
      return "fail";
    case EventType::kInfo:
      return "info";
    case EventType::kRefused:
      return "refused";
  }
  return "?";
}

absl::string_view FunctionName(Function function) {
  switch (function) {
    case Function::kRead:
      return "read";
    case Function::kWrite:
      return "write";
    case Function::kCas:
      return "cas";
    case Function::kAppend:
      return "append";
    case Function::kDelete:
      return "delete";
  }
  return "?";
}

absl::Status History::Append(Event event) {
  if (events_.size() >= kMaxHistoryEvents) {
    return absl::InvalidArgumentError(
        absl::StrCat("history is full: ", kMaxHistoryEvents, " events (kMaxHistoryEvents)"));
  }
  if (event.process < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad process ", event.process, ": want a non-negative integer"));
  }
  if (event.time_ticks.has_value()) {
    if (*event.time_ticks < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad time @", *event.time_ticks));
    }
    if (last_time_ticks_.has_value() && *event.time_ticks < *last_time_ticks_) {
      return absl::InvalidArgumentError(
          absl::StrCat("time @", *event.time_ticks, " goes back from @", *last_time_ticks_));
    }
  }
  if (absl::Status s = CheckFields(event); !s.ok()) return s;

  const auto process = [&event] { return absl::StrCat("process ", event.process); };  // errors
  auto outstanding = outstanding_.find(event.process);
  if (event.type == EventType::kInvoke) {
    if (outstanding != outstanding_.end()) {
      const Operation& pending = operations_[outstanding->second];
      return absl::InvalidArgumentError(
          absl::StrCat("two invocations outstanding on ", process(), ": it invokes ",
                       FunctionName(event.function), " ", event.key, " while its ",
                       FunctionName(pending.function), " ", pending.key, " has not completed"));
    }
    if (absl::Status s = CheckArguments(event); !s.ok()) return s;
    outstanding_.emplace(event.process, operations_.size());
    Operation& operation = operations_.emplace_back();
    operation.process = event.process;
    operation.function = event.function;
    operation.key = event.key;
    operation.value = event.value;
    operation.new_value = event.new_value;
    operation.outcome = Outcome::kUnknown;
    operation.invoke_event = events_.size();
  } else {
    if (outstanding == outstanding_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("completion without invocation: ", process(),
                                                     " has no operation outstanding"));
    }
    Operation& operation = operations_[outstanding->second];
    if (event.function != operation.function || event.key != operation.key) {
      return absl::InvalidArgumentError(
          absl::StrCat("completion ", FunctionName(event.function), " ", event.key, " of ",
                       process(), " does not match its outstanding ",
                       FunctionName(operation.function), " ", operation.key));
    }
    if (event.type == EventType::kRefused && operation.function != Function::kCas) {
      return absl::InvalidArgumentError(
          absl::StrCat("refused completion of a ", FunctionName(operation.function), " on ",
                       process(), ": only a cas is refused (use fail)"));
    }
    const bool is_read = operation.function == Function::kRead;
    const bool carries_result = is_read && event.type == EventType::kOk;
    // A fail or info completion may leave the value out (nil); otherwise it repeats it (a
    // refused cas always: its expected value is what it observed the value differ from).
    const bool may_omit = (event.type == EventType::kFail || event.type == EventType::kInfo) &&
                          !event.value.has_value() && !event.new_value.has_value();
    const bool repeats = event.value == operation.value && event.new_value == operation.new_value;
    if (!carries_result && !may_omit && !repeats) {
      const auto format = [](const Value& value, const Value& new_value, Function function) {
        return function == Function::kCas
                   ? absl::StrCat(FormatValue(value), kCasArrow, FormatValue(new_value))
                   : FormatValue(value);
      };
      return absl::InvalidArgumentError(absl::StrCat(
          "completion value ", Quote(format(event.value, event.new_value, event.function)),
          " differs from the invocation's ",
          Quote(format(operation.value, operation.new_value, operation.function)),
          " (only a read's ok completion carries a new value)"));
    }
    switch (event.type) {
      case EventType::kOk:
        operation.outcome = Outcome::kOk;
        if (is_read) operation.read_value = event.value;
        break;
      case EventType::kFail:
        operation.outcome = Outcome::kFail;
        break;
      case EventType::kInfo:
        operation.outcome = Outcome::kUnknown;
        break;
      case EventType::kRefused:
        operation.outcome = Outcome::kRefused;
        break;
      case EventType::kInvoke:
        break;
    }
    operation.complete_event = events_.size();
    outstanding_.erase(outstanding);
  }
  if (event.time_ticks.has_value()) last_time_ticks_ = event.time_ticks;
  events_.push_back(std::move(event));
  return absl::OkStatus();
}

absl::StatusOr<History> ParseHistory(absl::string_view text) {
  History history;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(kWhitespace), absl::SkipEmpty());
    for (size_t i = 0; i < fields.size(); ++i) {
      if (fields[i].front() == '#') {
        fields.resize(i);
        break;
      }
    }
    if (fields.empty()) continue;
    absl::StatusOr<Event> event = ParseLine(fields);
    absl::Status status = event.ok() ? history.Append(*std::move(event)) : event.status();
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": ", status.message()));
    }
  }
  return history;
}

std::string FormatEvent(const Event& event) {
  std::string line;
  if (event.time_ticks.has_value()) absl::StrAppend(&line, "@", *event.time_ticks, " ");
  absl::StrAppend(&line, event.process, " ", EventTypeName(event.type), " ",
                  FunctionName(event.function), " ", event.key, " ", FormatValue(event.value));
  if (event.function == Function::kCas) {
    absl::StrAppend(&line, kCasArrow, FormatValue(event.new_value));
  }
  return line;
}

std::string FormatHistory(const History& history) {
  std::string text;
  for (const Event& event : history.events()) {
    absl::StrAppend(&text, FormatEvent(event), "\n");
  }
  return text;
}

}  // namespace kvstore::sim
