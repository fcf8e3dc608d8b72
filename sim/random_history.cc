#include "sim/random_history.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/raft/rand.h"
#include "sim/check.h"

namespace kvstore::sim {
namespace {

enum class Fate : uint8_t {
  kCompletes,             // takes effect, then completes (a cas that does not match fails)
  kRejected,              // completes with fail, never takes effect
  kTimesOutWithEffect,    // completes with info; takes effect before or after that
  kTimesOutWithoutEffect  // completes with info, never takes effect
};

struct Request {
  Event invocation;
  Fate fate = Fate::kCompletes;
  bool applied = false;
  bool cas_matched = false;
  Value read_value;
};

enum class Action : uint8_t { kInvoke, kTakeEffect, kComplete };

struct Scheduled {
  Action action = Action::kInvoke;
  int client = 0;
  size_t request = 0;
};

class Simulation {
 public:
  explicit Simulation(const RandomHistoryOptions& options)
      : options_(options), random_(options.seed) {}

  History Run() {
    for (int client = 0; client < options_.clients; ++client) {
      Schedule(static_cast<int64_t>(random_.Uniform(10)), Scheduled{Action::kInvoke, client, 0});
    }
    while (!agenda_.empty()) {
      const auto [when, scheduled] = *agenda_.begin();
      agenda_.erase(agenda_.begin());
      const int64_t now = when.first;
      switch (scheduled.action) {
        case Action::kInvoke:
          Invoke(now, scheduled.client);
          break;
        case Action::kTakeEffect:
          TakeEffect(&requests_[scheduled.request]);
          break;
        case Action::kComplete:
          Complete(now, requests_[scheduled.request]);
          // The client thinks a little, then issues its next request.
          Schedule(now + static_cast<int64_t>(random_.Uniform(3)),
                   Scheduled{Action::kInvoke, scheduled.client, 0});
          break;
      }
    }
    return std::move(history_);
  }

 private:
  void Schedule(int64_t when, Scheduled scheduled) {
    agenda_.emplace(std::make_pair(when, sequence_++), scheduled);
  }

  int64_t Latency() {
    return 1 + static_cast<int64_t>(random_.Uniform(options_.max_latency_ticks));
  }

  // Fixed width, so no value is a prefix of another and an append's token appears in a string
  // only where it was appended: the checker's pruning of unobserved operations can tell.
  std::string FreshValue(absl::string_view prefix) {
    return absl::StrFormat("%s%06d", prefix, next_value_++);
  }

  void Invoke(int64_t now, int client) {
    if (invoked_ == options_.operations) return;
    ++invoked_;
    Request request;
    Event& event = request.invocation;
    event.time_ticks = now;
    event.process = client;
    event.type = EventType::kInvoke;
    event.key = absl::StrFormat("k%03d", static_cast<int>(random_.Uniform(options_.keys)));
    const int roll = static_cast<int>(random_.Uniform(100));
    int threshold = options_.write_percent;
    if (roll < threshold) {
      event.function = Function::kWrite;
      event.value = FreshValue("v");
    } else if (roll < (threshold += options_.cas_percent)) {
      event.function = Function::kCas;
      // Usually expect what is there now (it may change before the cas takes effect).
      auto current = store_.find(event.key);
      if (random_.Percent(60)) {
        if (current != store_.end()) event.value = current->second;
      } else if (next_value_ > 0 && random_.Percent(80)) {
        event.value = absl::StrFormat("v%06d", random_.Uniform(next_value_));
      }
      event.new_value = FreshValue("v");
    } else if (roll < (threshold += options_.append_percent)) {
      event.function = Function::kAppend;
      event.value = FreshValue("a");
    } else if (roll < (threshold += options_.delete_percent)) {
      event.function = Function::kDelete;
    } else {
      event.function = Function::kRead;
    }
    Append(event);

    const int fate_roll = static_cast<int>(random_.Uniform(100));
    if (fate_roll < options_.info_percent) {
      request.fate = random_.Percent(50) ? Fate::kTimesOutWithEffect : Fate::kTimesOutWithoutEffect;
    } else if (fate_roll < options_.info_percent + options_.fail_percent) {
      request.fate = Fate::kRejected;
    }
    const size_t index = requests_.size();
    const int64_t effect_at = now + Latency();
    switch (request.fate) {
      case Fate::kCompletes:
        Schedule(effect_at, Scheduled{Action::kTakeEffect, client, index});
        Schedule(effect_at + Latency(), Scheduled{Action::kComplete, client, index});
        break;
      case Fate::kRejected:
      case Fate::kTimesOutWithoutEffect:
        Schedule(now + Latency(), Scheduled{Action::kComplete, client, index});
        break;
      case Fate::kTimesOutWithEffect:
        // The client's timeout is independent of when the store acts: either may come first.
        Schedule(effect_at, Scheduled{Action::kTakeEffect, client, index});
        Schedule(now + Latency(), Scheduled{Action::kComplete, client, index});
        break;
    }
    requests_.push_back(std::move(request));
  }

  // The linearization point: the whole operation happens atomically now.
  void TakeEffect(Request* request) {
    const Event& event = request->invocation;
    SIM_CHECK(!request->applied) << "request applied twice: " << FormatEvent(event);
    request->applied = true;
    auto current = store_.find(event.key);
    const Value before = current == store_.end() ? Value() : Value(current->second);
    switch (event.function) {
      case Function::kRead:
        request->read_value = before;
        break;
      case Function::kWrite:
        store_[event.key] = *event.value;
        break;
      case Function::kCas:
        request->cas_matched = before == event.value;
        if (!request->cas_matched) break;
        if (event.new_value.has_value()) {
          store_[event.key] = *event.new_value;
        } else if (current != store_.end()) {
          store_.erase(current);
        }
        break;
      case Function::kAppend:
        store_[event.key] = absl::StrCat(before.value_or(""), *event.value);
        break;
      case Function::kDelete:
        if (current != store_.end()) store_.erase(current);
        break;
    }
  }

  void Complete(int64_t now, const Request& request) {
    Event event = request.invocation;
    event.time_ticks = now;
    switch (request.fate) {
      case Fate::kCompletes:
        SIM_CHECK(request.applied) << "completing an unapplied request: " << FormatEvent(event);
        event.type = EventType::kOk;
        if (event.function == Function::kRead) event.value = request.read_value;
        if (event.function == Function::kCas && !request.cas_matched) {
          event.type = EventType::kRefused;
        }
        break;
      case Fate::kRejected:
        event.type = EventType::kFail;
        break;
      case Fate::kTimesOutWithEffect:
      case Fate::kTimesOutWithoutEffect:
        event.type = EventType::kInfo;
        break;
    }
    Append(event);
  }

  void Append(const Event& event) {
    const absl::Status status = history_.Append(event);
    SIM_CHECK(status.ok()) << "generated a malformed event " << FormatEvent(event) << ": "
                           << status.ToString();
  }

  const RandomHistoryOptions& options_;
  raft::SplitMix64 random_;
  // (tick, sequence) -> action: ordered, so equal ticks run in the order they were scheduled.
  absl::btree_map<std::pair<int64_t, uint64_t>, Scheduled> agenda_;
  uint64_t sequence_ = 0;
  std::vector<Request> requests_;
  absl::btree_map<std::string, std::string> store_;
  History history_;
  size_t invoked_ = 0;
  uint64_t next_value_ = 0;
};

}  // namespace

History GenerateRandomHistory(const RandomHistoryOptions& options) {
  SIM_CHECK(options.clients > 0 && options.keys > 0 && options.max_latency_ticks > 0)
      << "clients " << options.clients << ", keys " << options.keys << ", max latency "
      << options.max_latency_ticks;
  return Simulation(options).Run();
}

}  // namespace kvstore::sim
