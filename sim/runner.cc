#include "sim/runner.h"

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/errors.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "sim/history.h"
#include "sim/linearizability.h"
#include "sim/simulation.h"

namespace kvstore::sim {
namespace {

SimOptions ToSimOptions(const pb::Options& o, uint64_t seed, bool record_trace) {
  SimOptions options;
  options.seed = seed;
  options.record_trace = record_trace;
  if (o.voters() > 0) options.voters = o.voters();
  if (o.has_network()) {
    options.network.min_delay_ms = o.network().min_delay_ms();
    options.network.max_delay_ms = std::max(o.network().max_delay_ms(), o.network().min_delay_ms());
    options.network.loss = o.network().loss();
    options.network.duplicate = o.network().duplicate();
  }
  if (o.clients() > 0) options.clients = o.clients();
  if (o.keys() > 0) options.keys = o.keys();
  if (o.client_timeout_ms() > 0) options.client_timeout_ms = o.client_timeout_ms();
  if (o.read_fraction() > 0) options.read_fraction = o.read_fraction();
  if (o.cas_fraction() > 0) options.cas_fraction = o.cas_fraction();
  if (o.delete_fraction() > 0) options.delete_fraction = o.delete_fraction();
  if (o.fsync_max_ms() > 0) options.fsync_max_ms = o.fsync_max_ms();
  if (o.snapshot_every_entries() > 0) options.snapshot_every_entries = o.snapshot_every_entries();
  return options;
}

class Runner {
 public:
  Runner(const pb::Scenario& scenario, const RunOptions& options)
      : scenario_(scenario),
        options_(options),
        sim_(ToSimOptions(scenario.options(), options.seed.value_or(scenario.options().seed()),
                          options.record_trace)) {}

  RunResult Run();

 private:
  NodeId Resolve(const pb::NodeRef& ref);
  void Fail(size_t step, const std::string& what) {
    result_.failures.push_back(absl::StrCat("step ", step, ": ", what));
  }
  void RunStep(size_t index, const pb::Step& step);
  void RunRequest(size_t index, const pb::Request& request);
  void RunExpect(size_t index, const pb::Expect& expect);
  std::vector<NodeId> ResolveGroup(const pb::Group& group) {
    std::vector<NodeId> ids;
    for (const pb::NodeRef& ref : group.nodes()) ids.push_back(Resolve(ref));
    return ids;
  }
  std::vector<NodeId> Voters();
  void CheckHistory();

  const pb::Scenario& scenario_;
  RunOptions options_;
  Simulation sim_;
  RunResult result_;
  std::map<std::string, NodeId> names_;
  std::map<std::string, int64_t> leases_;
  std::map<std::string, int64_t> numbers_;           // remembered terms and revisions
  std::map<std::string, std::string> acknowledged_;  // key -> last acknowledged PUT value
};

std::vector<NodeId> Runner::Voters() {
  for (NodeId id : sim_.node_ids()) {
    if (server::Server* server = sim_.server(id)) {
      return server->RaftStatus().conf_state.voters;
    }
  }
  return {};
}

NodeId Runner::Resolve(const pb::NodeRef& ref) {
  if (ref.id() != 0) return ref.id();
  if (ref.leader()) return sim_.Leader();
  if (!ref.name().empty()) {
    auto it = names_.find(ref.name());
    return it == names_.end() ? raft::kNoNode : it->second;
  }
  if (ref.follower() > 0) {
    const NodeId leader = sim_.Leader();
    int seen = 0;
    for (NodeId id : Voters()) {
      if (id == leader || !sim_.up(id)) continue;
      if (++seen == ref.follower()) return id;
    }
  }
  return raft::kNoNode;
}

RunResult Runner::Run() {
  for (size_t i = 0; i < static_cast<size_t>(scenario_.steps_size()); ++i) {
    RunStep(i + 1, scenario_.steps(static_cast<int>(i)));
  }
  sim_.StopWorkload();
  // Let outstanding requests finish so the history ends cleanly, then check the standing
  // properties.
  sim_.RunFor(sim_.now_ms() > 0 ? 1000 : 0);
  for (const std::string& violation : sim_.violations()) {
    result_.failures.push_back(absl::StrCat("checker: ", violation));
  }
  if (sim_.violations_not_kept() > 0) {
    result_.failures.push_back(absl::StrCat("checker: ", sim_.violations_not_kept(),
                                            " more violations after the first ",
                                            Simulation::kMaxViolationsKept));
  }
  result_.history = sim_.TakeHistory();
  if (!scenario_.skip_linearizability()) CheckHistory();
  result_.passed = result_.failures.empty();
  result_.trace_hash = sim_.trace_hash();
  result_.trace = sim_.trace();
  result_.events = sim_.events_processed();
  result_.virtual_ms = sim_.now_ms();
  return std::move(result_);
}

void Runner::CheckHistory() {
  CheckOptions check;
  check.model = Model::kKv;
  check.max_search_steps = options_.linearizability_budget_steps;
  auto verdict = CheckLinearizability(result_.history, check);
  if (!verdict.ok()) {
    result_.failures.push_back(absl::StrCat("linearizability: ", verdict.status().ToString()));
    return;
  }
  result_.linearizability_search_steps = verdict->search_steps;
  std::string described = verdict->Describe();
  while (!described.empty() && described.back() == '\n') described.pop_back();
  switch (verdict->verdict) {
    case Verdict::kLinearizable:
      result_.transcript.push_back(absl::StrCat("linearizability: ", described));
      break;
    case Verdict::kNotLinearizable:
      result_.failures.push_back(absl::StrCat("linearizability: ", described));
      break;
    case Verdict::kUnknown:
      // A search that gave up proved nothing either way, and a run passes only on a proof: an
      // "unknown" counted as a pass would let any violation hide behind a slow search.
      result_.failures.push_back(absl::StrCat(
          "linearizability: the check gave up, so the history is neither proven linearizable "
          "nor refuted (",
          described,
          "); raise RunOptions::linearizability_budget_steps or make the search "
          "smarter"));
      break;
  }
}

void Runner::RunStep(size_t index, const pb::Step& step) {
  std::string line = absl::StrCat("@", sim_.now_ms(), "ms step ", index, ": ",
                                  step.note().empty() ? "" : step.note());
  const size_t failures_before = result_.failures.size();
  switch (step.action_case()) {
    case pb::Step::kRunMs:
      sim_.RunFor(step.run_ms());
      break;
    case pb::Step::kWaitForLeader: {
      const auto& wait = step.wait_for_leader();
      std::vector<NodeId> among = ResolveGroup(wait.among());
      const bool found = sim_.RunUntil(
          [&] {
            const NodeId leader = sim_.Leader();
            if (leader == raft::kNoNode) return false;
            return among.empty() || std::find(among.begin(), among.end(), leader) != among.end();
          },
          wait.within_ms() > 0 ? wait.within_ms() : 5000);
      if (!found) {
        Fail(index, absl::StrCat("no leader", among.empty() ? "" : " among the given nodes",
                                 " within ", wait.within_ms(), "ms"));
      } else {
        absl::StrAppend(&line, " [leader n", sim_.Leader(), "]");
      }
      break;
    }
    case pb::Step::kPartition: {
      std::vector<std::vector<NodeId>> groups;
      for (const pb::Group& group : step.partition().groups())
        groups.push_back(ResolveGroup(group));
      sim_.Partition(groups);
      break;
    }
    case pb::Step::kHeal:
      sim_.Heal();
      break;
    case pb::Step::kIsolate:
      sim_.Isolate(Resolve(step.isolate()));
      break;
    case pb::Step::kCrash:
      sim_.Crash(Resolve(step.crash()));
      break;
    case pb::Step::kRestart:
      sim_.Restart(Resolve(step.restart()));
      break;
    case pb::Step::kPause:
      sim_.Pause(Resolve(step.pause().node()), step.pause().ms());
      break;
    case pb::Step::kStartWorkload:
      sim_.StartWorkload();
      break;
    case pb::Step::kStopWorkload:
      sim_.StopWorkload();
      break;
    case pb::Step::kRequest:
      RunRequest(index, step.request());
      break;
    case pb::Step::kExpect:
      RunExpect(index, step.expect());
      break;
    case pb::Step::kBlock:
      sim_.BlockLink(Resolve(step.block().from()), Resolve(step.block().to()));
      break;
    case pb::Step::kLinkDelay: {
      const pb::LinkDelay& delay = step.link_delay();
      if (delay.min_delay_ms() < 0 || delay.max_delay_ms() < 0) {
        Fail(index, absl::StrCat("link_delay needs non-negative delays, got ", delay.min_delay_ms(),
                                 "..", delay.max_delay_ms(), " ms"));
        break;
      }
      const NodeId from = Resolve(delay.from());
      const NodeId to = Resolve(delay.to());
      sim_.SetLinkDelay(from, to, delay.min_delay_ms(), delay.max_delay_ms());
      if (delay.both_ways()) {
        sim_.SetLinkDelay(to, from, delay.min_delay_ms(), delay.max_delay_ms());
      }
      break;
    }
    case pb::Step::kTickRate:
      sim_.SetTickRate(Resolve(step.tick_rate().node()), step.tick_rate().rate());
      break;
    case pb::Step::kNetwork: {
      NetworkOptions network;
      network.min_delay_ms = step.network().min_delay_ms();
      network.max_delay_ms = std::max(step.network().max_delay_ms(), network.min_delay_ms);
      network.loss = step.network().loss();
      network.duplicate = step.network().duplicate();
      sim_.SetNetwork(network);
      break;
    }
    case pb::Step::kRememberNode: {
      const NodeId id = Resolve(step.remember_node());
      names_[step.name()] = id;
      absl::StrAppend(&line, " [", step.name(), " = n", id, "]");
      if (id == raft::kNoNode) Fail(index, absl::StrCat("no node to remember as ", step.name()));
      break;
    }
    case pb::Step::kRememberTerm: {
      const NodeId id = Resolve(step.remember_term());
      server::Server* server = sim_.server(id);
      numbers_[step.name()] = server == nullptr ? 0 : server->RaftStatus().hard_state.term;
      absl::StrAppend(&line, " [", step.name(), " = term ", numbers_[step.name()], " of n", id,
                      "]");
      if (server == nullptr) Fail(index, absl::StrCat("n", id, " is down"));
      break;
    }
    case pb::Step::kRememberRevision: {
      const NodeId id = Resolve(step.remember_revision());
      server::Server* server = sim_.server(id);
      numbers_[step.name()] = server == nullptr ? 0 : server->store().current_revision();
      absl::StrAppend(&line, " [", step.name(), " = revision ", numbers_[step.name()], " of n", id,
                      "]");
      if (server == nullptr) Fail(index, absl::StrCat("n", id, " is down"));
      break;
    }
    case pb::Step::kWatch: {
      const NodeId id = Resolve(step.watch().node());
      server::Server* server = sim_.server(id);
      if (server == nullptr) {
        Fail(index, absl::StrCat("n", id, " is down"));
        break;
      }
      mvcc::WatchRequest watch;
      watch.key = step.watch().key();
      watch.range_end = step.watch().range_end();
      watch.start_revision = server->store().current_revision() + step.watch().start_ahead();
      absl::StrAppend(&line, " [n", id, " from revision ", watch.start_revision, "]");
      if (absl::Status status = sim_.AddWatch(id, watch); !status.ok()) {
        Fail(index, status.ToString());
      }
      break;
    }
    case pb::Step::kDiskFault: {
      const NodeId id = Resolve(step.disk_fault().node());
      absl::StrAppend(&line, " [n", id, "]");
      switch (step.disk_fault().kind()) {
        case pb::DiskFault::CORRUPT_RECORD:
          if (sim_.CorruptRecord(id, /*oldest_segment=*/false)) break;
          if (step.disk_fault().best_effort()) {
            absl::StrAppend(&line, " (log too short: skipped)");
          } else {
            Fail(index, absl::StrCat("n", id, "'s log is too short"));
          }
          break;
        case pb::DiskFault::CORRUPT_OLD_SEGMENT:
          if (!sim_.CorruptRecord(id, /*oldest_segment=*/true)) {
            Fail(index, absl::StrCat("n", id, "'s log has a single segment"));
          }
          break;
        case pb::DiskFault::TORN_WRITE_CRASH:
          if (!sim_.up(id)) {
            absl::StrAppend(&line, " (down already)");
          } else if (!sim_.CrashMidWrite(id, 2000)) {
            // Nothing was being written (an idle or cut-off node): a plain crash then.
            absl::StrAppend(&line, " (no write in flight: plain crash)");
            sim_.Crash(id);
          }
          break;
        case pb::DiskFault::FSYNC_EIO:
          sim_.FailNextWalSync(id);
          break;
        case pb::DiskFault::WRITE_EIO:
          sim_.FailNextWalWrite(id);
          break;
        case pb::DiskFault::DISK_FULL:
          sim_.FillDisk(id);
          break;
        case pb::DiskFault::DISK_SPACE_FREED:
          sim_.FreeDisk(id);
          break;
        case pb::DiskFault::DISK_HEALED:
          sim_.HealDisk(id);
          break;
        default:
          Fail(index, absl::StrCat("unknown disk fault ", step.disk_fault().kind()));
          break;
      }
      break;
    }
    case pb::Step::ACTION_NOT_SET:
      Fail(index, "step without an action");
      break;
  }
  absl::StrAppend(&line, result_.failures.size() == failures_before ? " ok" : " FAILED");
  for (size_t i = failures_before; i < result_.failures.size(); ++i) {
    absl::StrAppend(&line, "\n    ", result_.failures[i]);
  }
  result_.transcript.push_back(std::move(line));
}

void Runner::RunRequest(size_t index, const pb::Request& r) {
  server::Request request;
  const NodeId target = Resolve(r.target());
  switch (r.op()) {
    case pb::Request::PUT:
    case pb::Request::PUT_WITH_LEASE:
      request.type = server::RequestType::kPut;
      request.put.key = r.key();
      request.put.value = r.value();
      if (r.op() == pb::Request::PUT_WITH_LEASE) request.put.lease = leases_[r.lease()];
      break;
    case pb::Request::GET:
    case pb::Request::GET_SERIALIZABLE:
      request.type = server::RequestType::kRange;
      request.range.key = r.key();
      request.range.serializable = r.op() == pb::Request::GET_SERIALIZABLE;
      break;
    case pb::Request::DELETE:
      request.type = server::RequestType::kDeleteRange;
      request.delete_range.key = r.key();
      break;
    case pb::Request::MEMBER_ADD_VOTER:
    case pb::Request::MEMBER_ADD_LEARNER:
      request.type = server::RequestType::kMemberAdd;
      request.member.name = r.remember();
      request.member.peer_urls = {r.peer_url().empty() ? absl::StrCat("sim://", r.remember())
                                                       : r.peer_url()};
      request.member.is_learner = r.op() == pb::Request::MEMBER_ADD_LEARNER;
      break;
    case pb::Request::MEMBER_PROMOTE:
      request.type = server::RequestType::kMemberPromote;
      request.member.id = target;
      break;
    case pb::Request::MEMBER_REMOVE:
      request.type = server::RequestType::kMemberRemove;
      request.member.id = target;
      break;
    case pb::Request::TRANSFER_LEADER:
      request.type = server::RequestType::kMoveLeader;
      request.member.id = target;
      break;
    case pb::Request::COMPACT:
      request.type = server::RequestType::kCompact;
      request.revision = r.revision();
      break;
    case pb::Request::LEASE_GRANT:
      request.type = server::RequestType::kLeaseGrant;
      request.ttl_seconds = r.ttl_seconds();
      break;
    case pb::Request::LEASE_KEEPALIVE:
      request.type = server::RequestType::kLeaseKeepAlive;
      request.lease_id = leases_[r.lease()];
      break;
    case pb::Request::LOCK: {
      request.type = server::RequestType::kTxn;
      mvcc::Compare free;
      free.key = r.key();
      free.target = mvcc::Compare::Target::kVersion;
      free.number = 0;
      request.txn.compare.push_back(free);
      mvcc::RequestOp take;
      take.kind = mvcc::RequestOp::Kind::kPut;
      take.put.key = r.key();
      take.put.value = r.value();
      take.put.lease = leases_[r.lease()];
      request.txn.success.push_back(take);
      break;
    }
    default:
      Fail(index, absl::StrCat("unknown request op ", r.op()));
      return;
  }
  const int64_t timeout = r.timeout_ms() > 0 ? r.timeout_ms() : 3000;
  const int64_t deadline = sim_.now_ms() + timeout;
  std::string outcome;
  std::optional<server::Response> response;
  for (;;) {
    const NodeId node = Resolve(r.node());
    if (node == raft::kNoNode || !sim_.up(node)) {
      outcome = "UNAVAILABLE";
      response.reset();
      sim_.RunFor(50);
    } else {
      if (request.type == server::RequestType::kCompact && request.revision == 0) {
        request.revision = sim_.server(node)->store().current_revision();
      }
      response = sim_.Call(node, request, std::max<int64_t>(1, deadline - sim_.now_ms()));
      if (!response.has_value()) {
        outcome = "TIMEOUT";
      } else {
        outcome = std::string(ErrorCodeName(CodeOf(response->status)));
        if (r.op() == pb::Request::LOCK && response->status.ok() && !response->txn.succeeded) {
          outcome = "LOCKED";
        }
      }
    }
    if (!r.retry_until_expected() || outcome == r.expect_code() || sim_.now_ms() >= deadline) {
      break;
    }
    sim_.RunFor(50);
  }
  if (!r.expect_code().empty() && outcome != r.expect_code() && !r.best_effort()) {
    Fail(index, absl::StrCat("expected ", r.expect_code(), ", got ", outcome,
                             response.has_value() && !response->status.ok()
                                 ? absl::StrCat(" (", response->status.message(), ")")
                                 : ""));
  }
  if (!response.has_value() || !response->status.ok()) return;
  switch (r.op()) {
    case pb::Request::PUT:
      acknowledged_[r.key()] = r.value();
      break;
    case pb::Request::PUT_WITH_LEASE:
      acknowledged_.erase(r.key());  // it lives only as long as its lease
      break;
    case pb::Request::DELETE:
      acknowledged_.erase(r.key());
      break;
    case pb::Request::GET:
    case pb::Request::GET_SERIALIZABLE: {
      const std::string got =
          response->range.kvs.empty() ? "nil" : response->range.kvs.front().value;
      if (!r.expect_value().empty() && got != r.expect_value()) {
        Fail(index, absl::StrCat("GET ", r.key(), ": expected ", r.expect_value(), ", got ", got));
      }
      break;
    }
    case pb::Request::MEMBER_ADD_VOTER:
    case pb::Request::MEMBER_ADD_LEARNER: {
      const NodeId id = response->member.id;
      if (!r.remember().empty()) names_[r.remember()] = id;
      // A member whose URL is wrong never gets a process: the cluster waits for it in vain.
      if (r.peer_url().rfind("bad://", 0) != 0) sim_.StartJoiner(id);
      break;
    }
    case pb::Request::LEASE_GRANT:
      if (!r.remember().empty()) leases_[r.remember()] = response->lease.id;
      break;
    default:
      break;
  }
}

void Runner::RunExpect(size_t index, const pb::Expect& expect) {
  switch (expect.check_case()) {
    case pb::Expect::kNoLeader:
      if (sim_.Leader() != raft::kNoNode) {
        Fail(index, absl::StrCat("expected no leader, but n", sim_.Leader(), " leads"));
      }
      break;
    case pb::Expect::kLeaderIn: {
      std::vector<NodeId> among = ResolveGroup(expect.leader_in());
      const NodeId leader = sim_.Leader();
      if (std::find(among.begin(), among.end(), leader) == among.end()) {
        Fail(index,
             absl::StrCat("leader n", leader, " is not among n", absl::StrJoin(among, ",n")));
      }
      break;
    }
    case pb::Expect::kAllAcknowledgedWritesPresent: {
      sim_.RunUntil([&] { return sim_.Leader() != raft::kNoNode; }, 5000);
      for (const auto& [key, value] : acknowledged_) {
        const NodeId leader = sim_.Leader();
        server::Request get;
        get.type = server::RequestType::kRange;
        get.range.key = key;
        auto response = leader == raft::kNoNode ? std::nullopt : sim_.Call(leader, get, 3000);
        const std::string got = !response.has_value()         ? "no answer"
                                : !response->status.ok()      ? response->status.ToString()
                                : response->range.kvs.empty() ? "nil"
                                                              : response->range.kvs.front().value;
        if (got != value) {
          Fail(index, absl::StrCat("acknowledged write ", key, "=", value, " reads as ", got));
        }
      }
      break;
    }
    case pb::Expect::kTermOfNodeAtMost: {
      const NodeId id = Resolve(expect.node());
      server::Server* server = sim_.server(id);
      const raft::Term term = server == nullptr ? 0 : server->RaftStatus().hard_state.term;
      if (term > expect.term_of_node_at_most()) {
        Fail(index, absl::StrCat("n", id, " is at term ", term, ", expected at most ",
                                 expect.term_of_node_at_most()));
      }
      break;
    }
    case pb::Expect::kHashesEqual: {
      const size_t before = sim_.violations().size();
      sim_.CheckHashes();
      if (sim_.violations().size() != before) Fail(index, sim_.violations().back());
      break;
    }
    case pb::Expect::kVotedNever: {
      const NodeId id = Resolve(expect.node());
      server::Server* server = sim_.server(id);
      if (server != nullptr && server->RaftStatus().hard_state.vote != raft::kNoNode) {
        Fail(index, absl::StrCat("n", id, " voted for n", server->RaftStatus().hard_state.vote));
      }
      break;
    }
    case pb::Expect::kTermAtMost: {
      const NodeId id = Resolve(expect.node());
      server::Server* server = sim_.server(id);
      const uint64_t term = server == nullptr ? 0 : server->RaftStatus().hard_state.term;
      if (term > numbers_[expect.term_at_most()]) {
        Fail(index, absl::StrCat("n", id, " is at term ", term, ", above ", expect.term_at_most(),
                                 " = ", numbers_[expect.term_at_most()]));
      }
      break;
    }
    case pb::Expect::kRevisionAtLeast: {
      const NodeId id = Resolve(expect.node());
      server::Server* server = sim_.server(id);
      const int64_t revision = server == nullptr ? 0 : server->store().current_revision();
      if (revision < numbers_[expect.revision_at_least()]) {
        Fail(index,
             absl::StrCat("n", id, " is at revision ", revision, ", below ",
                          expect.revision_at_least(), " = ", numbers_[expect.revision_at_least()]));
      }
      break;
    }
    case pb::Expect::kRefusedToStart: {
      const NodeId id = Resolve(expect.node());
      if (!sim_.refused_to_start(id)) {
        Fail(index, absl::StrCat("n", id, sim_.up(id) ? " started" : " is down",
                                 " but did not detect corruption"));
      }
      break;
    }
    case pb::Expect::kStoppedOnStorageFailure: {
      const NodeId id = Resolve(expect.node());
      if (!sim_.stopped_on_storage_failure(id)) {
        Fail(index, absl::StrCat("n", id, sim_.up(id) ? " is up" : " is down",
                                 " but its member did not stop on a storage failure"));
      }
      break;
    }
    case pb::Expect::CHECK_NOT_SET:
      Fail(index, "expect without a check");
      break;
  }
}

}  // namespace

RunResult RunScenario(const pb::Scenario& scenario, const RunOptions& options) {
  Runner runner(scenario, options);
  return runner.Run();
}

absl::StatusOr<pb::Scenario> ParseScenario(const std::string& text, const std::string& origin) {
  pb::Scenario scenario;
  struct Collector : google::protobuf::io::ErrorCollector {
    std::string errors;
    void AddError(int line, int column, const std::string& message) override {
      absl::StrAppend(&errors, line + 1, ":", column + 1, ": ", message, "; ");
    }
  } collector;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  if (!parser.ParseFromString(text, &scenario)) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", collector.errors));
  }
  if (scenario.options().voters() < 0 || scenario.options().voters() > 9) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": voters must be in [1, 9]"));
  }
  return scenario;
}

absl::StatusOr<pb::Scenario> LoadScenario(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read scenario file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseScenario(text.str(), path);
}

std::string FormatScenario(const pb::Scenario& scenario) {
  std::string out;
  google::protobuf::TextFormat::PrintToString(scenario, &out);
  return out;
}

}  // namespace kvstore::sim
