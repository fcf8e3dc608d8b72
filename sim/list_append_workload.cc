#include "sim/list_append_workload.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "sim/simulation.h"

namespace kvstore::sim {
namespace {

using server::Request;
using server::RequestType;
using server::Response;

constexpr int kMaxMicroOps = 4;
constexpr int64_t kBackoffMinMs = 10;

std::string KeyName(int key) { return absl::StrCat("la/", key); }

// absl::StrJoin(list, " "), written straight into one buffer (StrJoin appended an AlphaNum
// per element: the lists reach thousands of elements late in a run).
std::string EncodeList(const std::vector<int64_t>& list) {
  std::string out;
  out.reserve(list.size() * 8);
  char digits[absl::numbers_internal::kFastToBufferSize];
  for (size_t i = 0; i < list.size(); ++i) {
    if (i > 0) out.push_back(' ');
    const char* end = absl::numbers_internal::FastIntToBuffer(list[i], digits);
    out.append(digits, static_cast<size_t>(end - digits));
  }
  return out;
}

// A stored value that is not a list of integers would be a bug of the store or of this
// workload: the elements read so far, then an element no transaction appended (-1), which the
// checker reports as a garbage read.
// Every write reads its keys' lists whole (thousands of elements late in a run): words of
// plain digits, as EncodeList writes them, are parsed inline. StrSplit and SimpleAtoi per
// element were about 6% of a list-append seed's instructions; this takes 40% less time, with
// the same result for every input (anything but plain digits still goes to SimpleAtoi).
// Each word is read in one pass: its digits are accumulated while the end is looked for.
std::vector<int64_t> DecodeList(const std::string& value) {
  std::vector<int64_t> list;
  const absl::string_view rest(value);
  const size_t size = rest.size();
  size_t start = 0;
  while (start < size) {
    uint64_t accumulated = 0;  // unsigned: a long or malformed word wraps harmlessly
    bool digits = true;
    size_t end = start;
    for (; end < size && rest[end] != ' '; ++end) {
      const char c = rest[end];
      digits = digits && c >= '0' && c <= '9';
      accumulated = accumulated * 10 + static_cast<uint64_t>(c - '0');
    }
    const absl::string_view word = rest.substr(start, end - start);
    start = end + 1;
    if (word.empty()) continue;
    digits = digits && word.size() <= 18;  // at most 18 digits cannot overflow an int64_t
    int64_t element = digits ? static_cast<int64_t>(accumulated) : 0;
    if (!digits && !absl::SimpleAtoi(word, &element)) {
      list.push_back(-1);
      break;
    }
    list.push_back(element);
  }
  return list;
}

// The simulator's rule (sim/simulation.cc): every refusal but a timeout, and a write answered
// NOSPACE though it applied past the quota, means not applied.
bool DefinitelyNotApplied(const absl::Status& status) {
  const ErrorCode code = CodeOf(status);
  if (code == ErrorCode::kNoSpace) {
    return !absl::StrContains(status.message(), server::kAppliedPastQuota);
  }
  return code != ErrorCode::kTimeout;
}

}  // namespace

struct ListAppendClients::Client {
  int64_t process = 0;
  enum class Phase { kIdle, kRead, kWrite } phase = Phase::kIdle;
  raft::NodeId node = raft::kNoNode;
  server::RequestId request = 0;
  int64_t sent_ms = 0;
  elle::Txn txn;             // the transaction in flight (its reads filled in on success)
  std::vector<int> op_keys;  // the key of each micro-op
  std::vector<int> keys;     // its distinct keys, in order
  bool final_read = false;
  bool done = false;                   // made its final read
  int64_t resume_ms = 0;               // after a transaction that did not commit, a short backoff
  uint64_t answers_seen = UINT64_MAX;  // sim call_answers() at its last poll that found nothing
};

ListAppendClients::ListAppendClients(Simulation& sim, uint64_t seed,
                                     const ListAppendOptions& options)
    : sim_(sim),
      options_(options),
      rng_(seed * 0xD1B54A32D192ED03ull + 11),
      next_value_(static_cast<size_t>(options.keys), 1) {
  for (int c = 0; c < options_.clients; ++c) {
    clients_.push_back(std::make_unique<Client>());
    clients_.back()->process = c;
  }
}

ListAppendClients::~ListAppendClients() = default;

raft::NodeId ListAppendClients::RandomLiveNode() {
  sim_.LiveNodeIds(&live_);
  return live_.empty() ? raft::kNoNode : live_[rng_.Uniform(live_.size())];
}

void ListAppendClients::Step() {
  for (auto& client : clients_) StepClient(*client);
}

void ListAppendClients::RunFor(int64_t ms) {
  for (int64_t i = 0; i < ms; ++i) {
    Step();
    sim_.RunFor(1);
  }
}

void ListAppendClients::Finish() {
  finishing_ = true;
  const auto busy = [&] {
    return std::any_of(clients_.begin(), clients_.end(), [](const std::unique_ptr<Client>& c) {
      return c->phase != Client::Phase::kIdle;
    });
  };
  for (int64_t until = sim_.now_ms() + options_.request_timeout_ms + 1;
       busy() && sim_.now_ms() < until;) {
    RunFor(1);
  }
  // The final reads: every key, by every client (retried until they succeed, within a bound).
  for (auto& client : clients_) client->done = false;
  const int64_t until = sim_.now_ms() + 10 * options_.request_timeout_ms;
  while (sim_.now_ms() < until &&
         std::any_of(clients_.begin(), clients_.end(),
                     [](const std::unique_ptr<Client>& c) { return !c->done; })) {
    for (auto& client : clients_) {
      if (client->phase == Client::Phase::kIdle && !client->done) Begin(*client, true);
      StepClient(*client);
    }
    sim_.RunFor(1);
  }
}

elle::CheckResult ListAppendClients::Check() const { return elle::Check(history_); }

void ListAppendClients::StepClient(Client& client) {
  if (client.phase != Client::Phase::kIdle) {
    const auto no_answer = [&] {
      if (sim_.up(client.node) && sim_.now_ms() - client.sent_ms <= options_.request_timeout_ms) {
        return;  // still waiting
      }
      // No answer: a read changed nothing; a write may still apply.
      End(client,
          client.phase == Client::Phase::kRead ? elle::TxnType::kFail : elle::TxnType::kInfo);
    };
    // Polled every millisecond: the look-up is skipped while no answer arrived since the last miss.
    if (client.answers_seen == sim_.call_answers()) {
      no_answer();
      return;
    }
    std::optional<Response> response = sim_.TakeResponse(client.node, client.request);
    if (!response.has_value()) {
      client.answers_seen = sim_.call_answers();
      no_answer();
      return;
    }
    if (!response->status.ok()) {
      const bool not_applied =
          client.phase == Client::Phase::kRead || DefinitelyNotApplied(response->status);
      End(client, not_applied ? elle::TxnType::kFail : elle::TxnType::kInfo);
      return;
    }
    if (client.phase == Client::Phase::kRead) {
      SendWrite(client, *response);
    } else {
      End(client, response->txn.succeeded ? elle::TxnType::kOk : elle::TxnType::kFail);
    }
    return;
  }
  if (finishing_ || sim_.now_ms() < client.resume_ms || rng_.Percent(options_.think_percent)) {
    return;
  }
  Begin(client, false);
}

void ListAppendClients::Begin(Client& client, bool final_read) {
  client.txn = elle::Txn();
  client.txn.process = client.process;
  client.final_read = final_read;
  client.op_keys.clear();
  if (final_read) {
    for (int key = 0; key < options_.keys; ++key) {
      elle::MicroOp op;
      op.key = KeyName(key);
      client.txn.ops.push_back(std::move(op));
      client.op_keys.push_back(key);
    }
  } else {
    for (uint64_t i = 0, n = 1 + rng_.Uniform(kMaxMicroOps); i < n; ++i) {
      const auto key = static_cast<int>(rng_.Uniform(static_cast<uint64_t>(options_.keys)));
      elle::MicroOp op;
      op.key = KeyName(key);
      if (rng_.Percent(50)) {
        op.kind = elle::MicroOp::Kind::kAppend;
        op.value = next_value_[static_cast<size_t>(key)]++;
      }
      client.txn.ops.push_back(std::move(op));
      client.op_keys.push_back(key);
    }
  }
  client.keys = client.op_keys;
  std::sort(client.keys.begin(), client.keys.end());
  client.keys.erase(std::unique(client.keys.begin(), client.keys.end()), client.keys.end());
  client.txn.invoke_ms = sim_.now_ms();
  SendRead(client);
}

void ListAppendClients::SendRead(Client& client) {
  Request request;
  request.type = RequestType::kTxn;
  for (int key : client.keys) {
    mvcc::RequestOp op;
    op.kind = mvcc::RequestOp::Kind::kRange;
    op.range.key = KeyName(key);
    request.txn.success.push_back(std::move(op));
  }
  client.phase = Client::Phase::kRead;
  client.answers_seen = UINT64_MAX;
  client.node = RandomLiveNode();
  client.request = client.node == raft::kNoNode ? 0 : sim_.Submit(client.node, std::move(request));
  client.sent_ms = sim_.now_ms();
  if (client.request == 0) End(client, elle::TxnType::kFail);  // nobody to ask: nothing done
}

void ListAppendClients::SendWrite(Client& client, const Response& read) {
  // What the read saw, per key, and each key's mod_revision (0: absent).
  std::map<int, std::pair<std::vector<int64_t>, int64_t>> seen;
  for (size_t i = 0; i < client.keys.size(); ++i) {
    auto& [list, mod_revision] = seen[client.keys[i]];
    mod_revision = 0;
    if (i < read.txn.responses.size() && !read.txn.responses[i].range.kvs.empty()) {
      const mvcc::KeyValue& kv = read.txn.responses[i].range.kvs.front();
      list = DecodeList(kv.value);
      mod_revision = kv.mod_revision;
    }
  }
  // The micro-ops' results: the lists read, extended by this transaction's own appends.
  std::map<int, std::vector<int64_t>> lists;
  for (auto& [key, state] : seen) lists[key] = std::move(state.first);  // seen keeps the revision
  std::set<int> appended;
  for (size_t i = 0; i < client.txn.ops.size(); ++i) {
    elle::MicroOp& op = client.txn.ops[i];
    const int key = client.op_keys[i];
    if (op.kind == elle::MicroOp::Kind::kAppend) {
      lists[key].push_back(op.value);
      appended.insert(key);
    } else {
      op.read = lists[key];
    }
  }
  if (appended.empty()) {  // read-only: the read txn was the whole transaction
    End(client, elle::TxnType::kOk);
    return;
  }
  Request request;
  request.type = RequestType::kTxn;
  for (const auto& [key, state] : seen) {
    mvcc::Compare compare;
    compare.key = KeyName(key);
    compare.target = mvcc::Compare::Target::kMod;
    compare.result = mvcc::Compare::Result::kEqual;
    compare.number = state.second;
    request.txn.compare.push_back(std::move(compare));
  }
  for (int key : appended) {
    mvcc::RequestOp op;
    op.kind = mvcc::RequestOp::Kind::kPut;
    op.put.key = KeyName(key);
    op.put.value = EncodeList(lists[key]);
    request.txn.success.push_back(std::move(op));
  }
  client.phase = Client::Phase::kWrite;
  client.answers_seen = UINT64_MAX;
  client.node = RandomLiveNode();
  client.request = client.node == raft::kNoNode ? 0 : sim_.Submit(client.node, std::move(request));
  client.sent_ms = sim_.now_ms();
  if (client.request == 0) End(client, elle::TxnType::kFail);
}

void ListAppendClients::End(Client& client, elle::TxnType type) {
  client.txn.type = type;
  client.txn.complete_ms =
      type == elle::TxnType::kInfo ? std::numeric_limits<int64_t>::max() : sim_.now_ms();
  if (type != elle::TxnType::kOk) {
    for (elle::MicroOp& op : client.txn.ops) op.read.reset();
  }
  if (type != elle::TxnType::kOk) {
    // A conflict or an unavailable cluster: retrying at once mostly fails again (as etcd's
    // client, which retries after 25 ms).
    client.resume_ms =
        sim_.now_ms() + kBackoffMinMs + static_cast<int64_t>(rng_.Uniform(kBackoffMinMs));
  }
  switch (type) {
    case elle::TxnType::kOk:
      ++ok_;
      if (client.final_read) client.done = true;
      break;
    case elle::TxnType::kFail:
      ++failed_;
      break;
    case elle::TxnType::kInfo:
      ++indeterminate_;
      // As in Jepsen, a process whose operation is indeterminate is replaced by a new one.
      client.process += static_cast<int64_t>(clients_.size());
      break;
  }
  history_.push_back(std::move(client.txn));
  client.txn = elle::Txn();
  client.phase = Client::Phase::kIdle;
  client.request = 0;
}

std::string ListAppendWorkloadResult::Summary() const {
  return absl::StrCat(violations.empty() ? "passed" : "FAILED", ": ", ok, " transactions ok, ",
                      failed, " failed, ", indeterminate, " indeterminate; ", checker_summary);
}

ListAppendWorkloadResult RunListAppendWorkload(const ListAppendWorkloadOptions& options) {
  SimOptions sim_options;
  sim_options.seed = options.seed;
  sim_options.voters = options.voters;
  Simulation sim(sim_options);
  ListAppendWorkloadResult result;
  if (!sim.RunUntil([&] { return sim.Leader() != raft::kNoNode; }, 5000)) {
    result.violations.push_back("setup: no leader");
    return result;
  }
  raft::SplitMix64 rng(options.seed ^ 0x5EEDFA17ull);
  ListAppendClients clients(sim, options.seed, options.clients);
  const int64_t end_ms = sim.now_ms() + options.duration_ms;
  while (sim.now_ms() < end_ms) {
    const int64_t run_ms = 100 + static_cast<int64_t>(rng.Uniform(400));
    clients.RunFor(run_ms);
    if (!options.faults) continue;
    std::vector<raft::NodeId> down, live;
    for (raft::NodeId id : sim.node_ids()) (sim.up(id) ? live : down).push_back(id);
    if (!down.empty() && rng.Percent(60)) {
      sim.Restart(down[rng.Uniform(down.size())]);
      continue;
    }
    const raft::NodeId victim = live[rng.Uniform(live.size())];
    switch (rng.Uniform(4)) {
      case 0:
        sim.Crash(victim);
        break;
      case 1:
        sim.Isolate(victim);
        break;
      case 2: {  // a minority and a majority
        std::vector<raft::NodeId> ids = sim.node_ids();
        std::vector<std::vector<raft::NodeId>> groups(2);
        for (raft::NodeId id : ids) groups[rng.Uniform(2)].push_back(id);
        sim.Partition(groups);
        break;
      }
      default:
        sim.Heal();
        break;
    }
  }
  sim.Heal();
  for (raft::NodeId id : sim.node_ids()) {
    if (!sim.up(id)) sim.Restart(id);
  }
  sim.RunUntil([&] { return sim.Leader() != raft::kNoNode; }, 5000);
  clients.Finish();
  const elle::CheckResult check = clients.Check();
  result.ok = clients.ok();
  result.failed = clients.failed();
  result.indeterminate = clients.indeterminate();
  result.checker_summary = check.Summary();
  for (const elle::Finding& finding : check.findings) {
    result.violations.push_back(absl::StrCat("list-append: ", finding.description));
  }
  if (check.findings_not_kept > 0) {
    result.violations.push_back(
        absl::StrCat("list-append: ", check.findings_not_kept, " more anomalies"));
  }
  for (const std::string& v : sim.violations()) result.violations.push_back(v);
  return result;
}

}  // namespace kvstore::sim
