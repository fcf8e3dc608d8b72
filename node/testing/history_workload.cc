#include "node/testing/history_workload.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "kj/debug.h"

namespace kvstore::node::testing {
namespace {

// A write answered so may have been applied (net/client.h): TIMEOUT, and a member's
// LEADERSHIP_CHANGED or STOPPED (a member that stops answers its pending proposals so, though
// it may have forwarded them to the leader already).
bool OutcomeUnknown(const absl::Status& status) {
  const ErrorCode code = CodeOf(status);
  // NOSPACE too: a write that fit the quota when taken and not when applied is applied and
  // answered NOSPACE, as etcd's quotaApplierV3 does, so a client cannot tell it from a refusal
  // (the simulator's histories take it so as well). The nospace_runbook scenario read such a
  // put's value, which a definite failure here made "not linearizable".
  return code == ErrorCode::kTimeout || code == ErrorCode::kLeadershipChanged ||
         code == ErrorCode::kStopped || code == ErrorCode::kNoSpace;
}

}  // namespace

// Process ids of the acknowledged writes recorded before Start: far from the workers' ids.
constexpr int64_t kBeforeStartProcess = 1000000;

HistoryWorkload::HistoryWorkload(net::Client& client, kj::Timer& timer, WorkloadOptions options)
    : client_(client),
      timer_(timer),
      options_(options),
      next_process_(options.clients),
      rng_(options.seed == 0 ? 1 : options.seed) {}

absl::Status HistoryWorkload::RecordAcknowledgedWrite(const std::string& key,
                                                      const std::string& value) {
  if (running_) return absl::FailedPreconditionError("the workload already runs");
  const int64_t process = kBeforeStartProcess + static_cast<int64_t>(history_.events().size());
  sim::Event invoke{std::nullopt, process,     sim::EventType::kInvoke, sim::Function::kWrite, key,
                    value,        std::nullopt};
  if (absl::Status s = history_.Append(invoke); !s.ok()) return s;
  invoke.type = sim::EventType::kOk;
  return history_.Append(invoke);
}

uint64_t HistoryWorkload::NextRandom() {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return rng_;
}

void HistoryWorkload::Start() {
  running_ = true;
  processes_.resize(options_.clients);
  for (int i = 0; i < options_.clients; ++i) {
    processes_[i].id = i;
    workers_.add(Loop(processes_[i]));
  }
}

void HistoryWorkload::Stop(kj::WaitScope& wait_scope) {
  running_ = false;
  kj::joinPromises(workers_.releaseAsArray()).wait(wait_scope);
}

kj::Promise<void> HistoryWorkload::Loop(Process& p) {
  if (!running_) return kj::READY_NOW;
  const std::string key = absl::StrCat("k", NextRandom() % options_.keys);
  const bool read = NextRandom() % 2 == 0;
  server::Request request;
  sim::Event invoke{std::nullopt,
                    p.id,
                    sim::EventType::kInvoke,
                    read ? sim::Function::kRead : sim::Function::kWrite,
                    key,
                    std::nullopt,
                    std::nullopt};
  if (read) {
    request.type = server::RequestType::kRange;
    request.range.key = key;
  } else {
    request.type = server::RequestType::kPut;
    request.put.key = key;
    request.put.value = absl::StrCat("p", p.id, "-", ++p.writes);
    invoke.value = request.put.value;
  }
  absl::Status appended = history_.Append(invoke);
  KJ_ASSERT(appended.ok(), appended.ToString());
  return client_.CallAsync(std::move(request))
      .then([this, &p, invoke](absl::StatusOr<server::Response> response) {
        sim::Event done = invoke;
        if (response.ok()) {
          done.type = sim::EventType::kOk;
          if (invoke.function == sim::Function::kRead) {
            done.value = response->range.kvs.empty() ? sim::Value()
                                                     : sim::Value(response->range.kvs[0].value);
          }
          ++ok_;
        } else if (OutcomeUnknown(response.status()) || invoke.function == sim::Function::kRead) {
          done.type = sim::EventType::kInfo;
          done.value = invoke.value;
          ++info_;
        } else {
          done.type = sim::EventType::kFail;
          ++failed_;
        }
        absl::Status appended = history_.Append(done);
        KJ_ASSERT(appended.ok(), appended.ToString());
        completions_.push_back(Completion{timer_.now(), invoke.function, done.type});
        if (done.type == sim::EventType::kInfo) p.id = next_process_++;
        if (done.type == sim::EventType::kOk) return Loop(p);
        return timer_.afterDelay(options_.backoff_ms * kj::MILLISECONDS).then([this, &p]() {
          return Loop(p);
        });
      });
}

size_t HistoryWorkload::Count(sim::Function function, sim::EventType type, kj::TimePoint from,
                              kj::TimePoint to) const {
  size_t count = 0;
  for (const Completion& c : completions_) {
    if (c.function == function && c.type == type && c.at >= from && c.at < to) ++count;
  }
  return count;
}

absl::StatusOr<sim::CheckResult> HistoryWorkload::Check() const {
  return sim::CheckLinearizability(history_);
}

std::string HistoryWorkload::Summary() const {
  return absl::StrCat(ok_, " ok, ", info_, " unknown, ", failed_, " failed operations");
}

}  // namespace kvstore::node::testing
