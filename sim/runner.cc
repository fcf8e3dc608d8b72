#include "sim/runner.h"

#include <algorithm>
#include <cstddef>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/errors.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "sim/history.h"
#include "sim/linearizability.h"
#include "sim/list_append_workload.h"
#include "sim/simulation.h"
#include "sim/simulation_world.h"
#include "sim/world.h"

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
  options.model_clients = o.model_clients();
  if (o.keys() > 0) options.keys = o.keys();
  if (o.client_timeout_ms() > 0) options.client_timeout_ms = o.client_timeout_ms();
  if (o.read_fraction() > 0) options.read_fraction = o.read_fraction();
  if (o.cas_fraction() > 0) options.cas_fraction = o.cas_fraction();
  if (o.delete_fraction() > 0) options.delete_fraction = o.delete_fraction();
  if (o.fsync_max_ms() > 0) options.fsync_max_ms = o.fsync_max_ms();
  if (o.snapshot_every_entries() > 0) options.snapshot_every_entries = o.snapshot_every_entries();
  options.lease_reads = o.lease_reads();
  const pb::Knobs& k = o.knobs();
  if (k.election_tick() > 0) options.election_tick = k.election_tick();
  if (k.heartbeat_tick() > 0) options.heartbeat_tick = k.heartbeat_tick();
  if (k.snapshot_catch_up_entries() > 0) {
    options.snapshot_catch_up_entries = k.snapshot_catch_up_entries();
  }
  if (k.max_inflight_msgs() > 0) options.max_inflight_msgs = k.max_inflight_msgs();
  if (k.max_size_per_msg_bytes() > 0) options.max_size_per_msg_bytes = k.max_size_per_msg_bytes();
  if (k.max_committed_size_per_ready_bytes() > 0) {
    options.max_committed_size_per_ready_bytes = k.max_committed_size_per_ready_bytes();
  }
  if (k.backend_commits_per_flush_max() > 0) {
    options.backend_commits_per_flush_max = k.backend_commits_per_flush_max();
  }
  if (k.wal_segment_bytes() > 0) options.wal_segment_bytes = k.wal_segment_bytes();
  options.pre_vote = !k.disable_pre_vote();
  options.drain_per_instant = k.drain_per_instant();
  options.check_quorum = !k.disable_check_quorum();
  if (k.watch_max_buffered_events() > 0) {
    options.watch_max_buffered_events = k.watch_max_buffered_events();
  }
  if (k.watch_catch_up_batch_events() > 0) {
    options.watch_catch_up_batch_events = k.watch_catch_up_batch_events();
  }
  if (k.quota_bytes() > 0) options.quota_bytes = k.quota_bytes();
  if (k.max_request_bytes() > 0) options.max_request_bytes = k.max_request_bytes();
  if (k.max_txn_ops() > 0) options.max_txn_ops = static_cast<size_t>(k.max_txn_ops());
  options.nospace_operator = !o.no_nospace_operator();
  return options;
}

// ---------------------------------------------------------------------------------------------
// Remembered names. A step remembers a value under a name (a node, a lease, a term, a revision)
// and later steps read it by that name. Each name holds one kind of value.

enum class NameKind { kNode, kLease, kTerm, kRevision };

absl::string_view KindName(NameKind kind) {
  switch (kind) {
    case NameKind::kNode:
      return "node";
    case NameKind::kLease:
      return "lease";
    case NameKind::kTerm:
      return "term";
    case NameKind::kRevision:
      return "revision";
  }
  return "?";
}

struct NameUse {
  NameKind kind;
  std::string name;
};

// A node reference of a step, with the field it sits in (for error messages).
struct RefField {
  absl::string_view field;
  const pb::NodeRef* ref;
};

bool NeedsTarget(pb::Request::Op op) {
  return op == pb::Request::MEMBER_PROMOTE || op == pb::Request::MEMBER_REMOVE ||
         op == pb::Request::TRANSFER_LEADER || op == pb::Request::MEMBER_REPLACE;
}

bool IsGet(pb::Request::Op op) {
  return op == pb::Request::GET || op == pb::Request::GET_SERIALIZABLE;
}

bool IsPut(pb::Request::Op op) {
  return op == pb::Request::PUT || op == pb::Request::PUT_WITH_LEASE;
}

// The value a PUT writes: `value`, or `value` repeated to value_bytes bytes.
std::string ValueOf(const pb::Request& r) {
  if (r.value_bytes() <= 0 || r.value().empty()) return r.value();
  std::string value;
  value.reserve(static_cast<size_t>(r.value_bytes()));
  while (value.size() < static_cast<size_t>(r.value_bytes())) value += r.value();
  value.resize(static_cast<size_t>(r.value_bytes()));
  return value;
}

bool UsesLease(pb::Request::Op op) {
  return op == pb::Request::PUT_WITH_LEASE || op == pb::Request::LEASE_KEEPALIVE ||
         op == pb::Request::LOCK;
}

bool NeedsNode(const pb::Expect& expect) {
  switch (expect.check_case()) {
    case pb::Expect::kTermOfNodeAtMost:
    case pb::Expect::kVotedNever:
    case pb::Expect::kTermAtMost:
    case pb::Expect::kRevisionAtLeast:
    case pb::Expect::kRefusedToStart:
    case pb::Expect::kStoppedOnStorageFailure:
      return true;
    default:
      return false;
  }
}

// Every node reference `step` resolves when it runs.
std::vector<RefField> NodeRefsOf(const pb::Step& step) {
  std::vector<RefField> refs;
  const auto group = [&refs](absl::string_view field, const pb::Group& g) {
    for (const pb::NodeRef& ref : g.nodes()) refs.push_back({field, &ref});
  };
  switch (step.action_case()) {
    case pb::Step::kWaitForLeader:
      group("wait_for_leader.among", step.wait_for_leader().among());
      break;
    case pb::Step::kPartition:
      for (const pb::Group& g : step.partition().groups()) group("partition.groups", g);
      break;
    case pb::Step::kIsolate:
      refs.push_back({"isolate", &step.isolate()});
      break;
    case pb::Step::kCrash:
      refs.push_back({"crash", &step.crash()});
      break;
    case pb::Step::kKill:
      refs.push_back({"kill", &step.kill()});
      break;
    case pb::Step::kRestart:
      refs.push_back({"restart", &step.restart()});
      break;
    case pb::Step::kPause:
      refs.push_back({"pause.node", &step.pause().node()});
      break;
    case pb::Step::kClog:
      refs.push_back({"clog.from", &step.clog().from()});
      refs.push_back({"clog.to", &step.clog().to()});
      break;
    case pb::Step::kClockStop:
      refs.push_back({"clock_stop.node", &step.clock_stop().node()});
      break;
    case pb::Step::kSlowWatcher:
      refs.push_back({"slow_watcher.node", &step.slow_watcher().node()});
      break;
    case pb::Step::kClientsTo:
      refs.push_back({"clients_to", &step.clients_to()});
      break;
    case pb::Step::kRequest:
      refs.push_back({"request.node", &step.request().node()});
      if (NeedsTarget(step.request().op()) || step.request().has_target()) {
        refs.push_back({"request.target", &step.request().target()});
      }
      break;
    case pb::Step::kExpect:
      group("expect.leader_in", step.expect().leader_in());
      group("expect.voters_are", step.expect().voters_are());
      if (NeedsNode(step.expect()) || step.expect().has_node()) {
        refs.push_back({"expect.node", &step.expect().node()});
      }
      break;
    case pb::Step::kBlock:
      refs.push_back({"block.from", &step.block().from()});
      refs.push_back({"block.to", &step.block().to()});
      break;
    case pb::Step::kLinkDelay:
      refs.push_back({"link_delay.from", &step.link_delay().from()});
      refs.push_back({"link_delay.to", &step.link_delay().to()});
      break;
    case pb::Step::kTickRate:
      refs.push_back({"tick_rate.node", &step.tick_rate().node()});
      break;
    case pb::Step::kRememberNode:
      refs.push_back({"remember_node", &step.remember_node()});
      break;
    case pb::Step::kRememberTerm:
      refs.push_back({"remember_term", &step.remember_term()});
      break;
    case pb::Step::kRememberRevision:
      refs.push_back({"remember_revision", &step.remember_revision()});
      break;
    case pb::Step::kWatch:
      refs.push_back({"watch.node", &step.watch().node()});
      break;
    case pb::Step::kDiskFault:
      if (!step.disk_fault().every_node()) {
        refs.push_back({"disk_fault.node", &step.disk_fault().node()});
      }
      break;
    default:
      break;
  }
  return refs;
}

// Every remembered name `step` reads, with the kind of value it must hold.
std::vector<NameUse> NameUsesOf(const pb::Step& step) {
  std::vector<NameUse> uses;
  for (const RefField& field : NodeRefsOf(step)) {
    if (!field.ref->name().empty()) uses.push_back({NameKind::kNode, field.ref->name()});
  }
  if (step.has_request() && !step.request().lease().empty()) {
    uses.push_back({NameKind::kLease, step.request().lease()});
  }
  if (step.has_expect() && step.expect().has_term_at_most()) {
    uses.push_back({NameKind::kTerm, step.expect().term_at_most()});
  }
  if (step.has_expect() && step.expect().has_revision_at_least()) {
    uses.push_back({NameKind::kRevision, step.expect().revision_at_least()});
  }
  return uses;
}

// The name `step` remembers a value under when it succeeds, if any.
std::optional<NameUse> NameBoundBy(const pb::Step& step) {
  switch (step.action_case()) {
    case pb::Step::kRememberNode:
      return NameUse{NameKind::kNode, step.name()};
    case pb::Step::kRememberTerm:
      return NameUse{NameKind::kTerm, step.name()};
    case pb::Step::kRememberRevision:
      return NameUse{NameKind::kRevision, step.name()};
    case pb::Step::kRequest: {
      const pb::Request& r = step.request();
      if (r.remember().empty()) return std::nullopt;
      if (r.op() == pb::Request::LEASE_GRANT) return NameUse{NameKind::kLease, r.remember()};
      return NameUse{NameKind::kNode, r.remember()};
    }
    default:
      return std::nullopt;
  }
}

// Outcomes the runner reports besides the server's error codes (see Request.expect_code).
constexpr absl::string_view kUnavailable = "UNAVAILABLE";
constexpr absl::string_view kLocked = "LOCKED";
constexpr absl::string_view kUnbound = "UNBOUND";

bool IsOutcomeName(const std::string& name) {
  return name == kUnavailable || name == kLocked || name == kUnbound ||
         name == ErrorCodeName(ErrorCode::kInvalidArgument) ||
         ErrorCodeFromName(name) != ErrorCode::kInvalidArgument;
}

// The outcome a request aims for: its expect_code, or OK when it only expects a value.
std::string Goal(const pb::Request& r) {
  if (r.expect_code().empty() && !r.expect_value().empty()) return "OK";
  return r.expect_code();
}

// Why `ref` does not name exactly one node, or empty.
std::string RefProblem(const pb::NodeRef& ref) {
  if (ref.follower() < 0) return absl::StrCat("follower must be at least 1, got ", ref.follower());
  const int named = (ref.id() != 0) + ref.leader() + (ref.follower() > 0) + !ref.name().empty();
  if (named == 0) return "names no node (set one of id, leader, follower, name)";
  if (named > 1) return "names more than one node (set one of id, leader, follower, name)";
  return "";
}

std::string RequestProblem(const pb::Request& r) {
  const std::string op = pb::Request::Op_Name(r.op());
  if (!pb::Request::Op_IsValid(r.op())) return absl::StrCat("unknown request op ", r.op());
  if (!r.lease().empty() && !UsesLease(r.op())) {
    return absl::StrCat("lease '", r.lease(), "' given to ", op, ", which takes no lease");
  }
  if (r.lease().empty() && UsesLease(r.op()) && r.op() != pb::Request::LOCK) {
    return absl::StrCat(op, " needs a lease");
  }
  if (!r.remember().empty() && r.op() != pb::Request::MEMBER_ADD_VOTER &&
      r.op() != pb::Request::MEMBER_ADD_LEARNER && r.op() != pb::Request::MEMBER_REPLACE &&
      r.op() != pb::Request::LEASE_GRANT) {
    return absl::StrCat(
        "remember '", r.remember(), "' given to ", op,
        ", which has nothing to remember (only member adds and replaces and lease grants do)");
  }
  if (r.value_bytes() < 0) {
    return absl::StrCat("value_bytes must not be negative, got ", r.value_bytes());
  }
  if (r.value_bytes() > 0 && !IsPut(r.op())) {
    return absl::StrCat("value_bytes given to ", op, ", which writes no value");
  }
  if (r.value_bytes() > 0 && r.value().empty()) {
    return "value_bytes needs a `value` to repeat";
  }
  if (r.op() == pb::Request::MEMBER_REPLACE && r.remember().empty()) {
    return "MEMBER_REPLACE needs `remember`: the new member's name";
  }
  if (!r.expect_value().empty()) {
    if (!IsGet(r.op())) return absl::StrCat("expect_value given to ", op, ", which is no GET");
    if (!r.expect_code().empty() && r.expect_code() != "OK") {
      return absl::StrCat("expect_value needs the GET to succeed, but expect_code is ",
                          r.expect_code());
    }
  }
  for (const std::string& code : r.also_accept()) {
    if (!IsOutcomeName(code)) return absl::StrCat("also_accept: unknown outcome '", code, "'");
  }
  if (!r.expect_code().empty() && !IsOutcomeName(r.expect_code())) {
    return absl::StrCat("expect_code: unknown outcome '", r.expect_code(), "'");
  }
  if (Goal(r).empty() && r.also_accept_size() > 0) {
    return "also_accept without expect_code: every outcome is accepted already";
  }
  if (Goal(r).empty() && r.retry_until_expected()) {
    return "retry_until_expected without expect_code: nothing to retry for";
  }
  return "";
}

std::string ExpectProblem(const pb::Expect& e) {
  // A boolean check set to false would read as a check yet check nothing.
  bool flag = true;
  switch (e.check_case()) {
    case pb::Expect::CHECK_NOT_SET:
      return "expect without a check";
    case pb::Expect::kNoLeader:
      flag = e.no_leader();
      break;
    case pb::Expect::kAllAcknowledgedWritesPresent:
      flag = e.all_acknowledged_writes_present();
      break;
    case pb::Expect::kHashesEqual:
      flag = e.hashes_equal();
      break;
    case pb::Expect::kVotedNever:
      flag = e.voted_never();
      break;
    case pb::Expect::kRefusedToStart:
      flag = e.refused_to_start();
      break;
    case pb::Expect::kStoppedOnStorageFailure:
      flag = e.stopped_on_storage_failure();
      break;
    case pb::Expect::kNoJointConfiguration:
      flag = e.no_joint_configuration();
      break;
    case pb::Expect::kNospaceAlarm:
      flag = e.nospace_alarm();
      break;
    case pb::Expect::kNoAlarm:
      flag = e.no_alarm();
      break;
    case pb::Expect::kJointConfigurationsAtLeast:
      if (e.joint_configurations_at_least() == 0) return "joint_configurations_at_least 0";
      break;
    case pb::Expect::kVotersAre:
      if (e.voters_are().nodes().empty()) return "voters_are names no node";
      break;
    case pb::Expect::kLeaderIn:
      if (e.leader_in().nodes().empty()) return "leader_in names no node";
      break;
    case pb::Expect::kTermAtMost:
      if (e.term_at_most().empty()) return "term_at_most names no remembered term";
      break;
    case pb::Expect::kRevisionAtLeast:
      if (e.revision_at_least().empty()) return "revision_at_least names no remembered revision";
      break;
    default:
      break;
  }
  if (!flag) return "a check set to false checks nothing: leave the expectation out";
  return "";
}

std::string StepProblem(const pb::Step& step) {
  if (step.action_case() == pb::Step::ACTION_NOT_SET) return "step without an action";
  for (const RefField& field : NodeRefsOf(step)) {
    if (std::string problem = RefProblem(*field.ref); !problem.empty()) {
      return absl::StrCat(field.field, " ", problem);
    }
  }
  const bool remembers =
      step.has_remember_node() || step.has_remember_term() || step.has_remember_revision();
  if (remembers && step.name().empty()) return "remember_* needs a `name` to remember under";
  if (!remembers && !step.name().empty()) {
    return absl::StrCat("`name: \"", step.name(), "\"` is only for remember_* steps");
  }
  if (step.has_request()) return RequestProblem(step.request());
  if (step.has_expect()) return ExpectProblem(step.expect());
  if (step.has_disk_fault() && step.disk_fault().best_effort() &&
      step.disk_fault().kind() != pb::DiskFault::CORRUPT_RECORD) {
    return "disk_fault.best_effort applies only to CORRUPT_RECORD";
  }
  if (step.has_disk_fault() && step.disk_fault().every_node() &&
      (step.disk_fault().kind() != pb::DiskFault::DISK_HEALED || step.disk_fault().has_node())) {
    return "disk_fault.every_node goes with DISK_HEALED, and without a node";
  }
  if (step.has_disk_fault() && (step.disk_fault().kind() == pb::DiskFault::SLOW_DISK) !=
                                   (step.disk_fault().latency_ms() > 0)) {
    return "disk_fault.latency_ms (positive) goes with SLOW_DISK, and only with it";
  }
  for (const int64_t ms :
       {step.clog().ms(), step.clock_stop().ms(), step.slow_watcher().ms(), step.pause().ms()}) {
    if (ms < 0) return absl::StrCat("a negative duration: ", ms, " ms");
  }
  return "";
}

// The step's kind as the scenario file names it ("disk_fault TORN_WRITE_CRASH", "expect
// hashes_equal", "request PUT"), for reports of skipped steps.
std::string StepKind(const pb::Step& step) {
  const google::protobuf::FieldDescriptor* action =
      pb::Step::descriptor()->FindFieldByNumber(step.action_case());
  std::string kind = action == nullptr ? "no action" : action->name();
  if (step.has_disk_fault()) {
    absl::StrAppend(&kind, " ", pb::DiskFault::Kind_Name(step.disk_fault().kind()));
  } else if (step.has_request()) {
    absl::StrAppend(&kind, " ", pb::Request::Op_Name(step.request().op()));
  } else if (step.has_expect()) {
    const google::protobuf::FieldDescriptor* check =
        pb::Expect::descriptor()->FindFieldByNumber(step.expect().check_case());
    if (check != nullptr) absl::StrAppend(&kind, " ", check->name());
  }
  return kind;
}

// Whether `step` checks something (it can fail on what it finds): expectations, leader waits,
// and requests that expect an outcome.
bool IsCheck(const pb::Step& step) {
  return step.has_expect() || step.has_wait_for_leader() ||
         (step.has_request() && !Goal(step.request()).empty());
}

// Why the knobs describe no configuration the server accepts, or empty (0 is the default).
std::string KnobsProblem(const pb::Knobs& k) {
  const int election = k.election_tick() > 0 ? k.election_tick() : SimOptions().election_tick;
  const int heartbeat = k.heartbeat_tick() > 0 ? k.heartbeat_tick() : SimOptions().heartbeat_tick;
  if (k.election_tick() < 0 || k.heartbeat_tick() < 0) return "ticks must be positive";
  if (heartbeat >= election) {
    return absl::StrCat("heartbeat_tick ", heartbeat, " must be below election_tick ", election);
  }
  if (k.wal_segment_bytes() > 0 && k.wal_segment_bytes() < (8u << 10)) {
    return absl::StrCat("wal_segment_bytes ", k.wal_segment_bytes(), " is below 8 KiB");
  }
  // Membership and lease requests, the scenario steps' puts and the workloads' txns must fit.
  if (k.max_request_bytes() > 0 && k.max_request_bytes() < 1024) {
    return absl::StrCat("max_request_bytes ", k.max_request_bytes(), " is below 1 KiB");
  }
  if (k.max_txn_ops() > 0 && k.max_txn_ops() < 4) {
    return absl::StrCat("max_txn_ops ", k.max_txn_ops(), " is below 4");
  }
  return "";
}

class Runner {
 public:
  Runner(const pb::Scenario& scenario, const RunOptions& options, ScenarioWorld& world)
      : scenario_(scenario), options_(options), world_(world) {}

  RunResult Run();

 private:
  // The node `ref` names now: kNoNode when its role has no holder (no leader, too few
  // followers). Names are bound: RunStep checks that first.
  NodeId Resolve(const pb::NodeRef& ref);
  void Fail(size_t step, const std::string& what) {
    result_.failures.push_back(absl::StrCat("step ", step, ": ", what));
  }
  void RunStep(size_t index, const pb::Step& step);
  // Both append what happened to the step's transcript `line`.
  void RunAction(size_t index, const pb::Step& step, std::string* line);
  // `unbound`: why the request cannot be sent (UnboundName), or empty.
  void RunRequest(size_t index, const pb::Request& request, const std::string& unbound,
                  std::string* line);
  void RunExpect(size_t index, const pb::Expect& expect, std::string* line);
  // Why member `id`'s alarm list is not what expect nospace_alarm (or no_alarm) wants, or empty;
  // `listed` gets the alarms it lists.
  std::string AlarmProblem(NodeId id, bool nospace, std::string* listed);
  // Replaces every member whose restart refused a corrupt disk (pb::RepairRefused).
  void RepairRefused(size_t index, const pb::RepairRefused& repair, std::string* line);
  std::vector<NodeId> ResolveGroup(const pb::Group& group) {
    std::vector<NodeId> ids;
    for (const pb::NodeRef& ref : group.nodes()) ids.push_back(Resolve(ref));
    return ids;
  }
  std::vector<NodeId> Voters();
  void CheckHistory();
  // Scenario::expect_failure: the run must have failed that way; that failure then passes.
  void CheckExpectedFailure();
  // Where CheckHistory put its not-linearizable failure, if it found the history so.
  std::optional<size_t> not_linearizable_at_;
  // The server request `r` stands for; nullopt (and a failure) for an op the runner lacks.
  std::optional<server::Request> BuildRequest(size_t index, const pb::Request& r);
  // The lease `r` names (bound: RunStep checks), or 0 for none.
  int64_t LeaseOf(const pb::Request& r) { return r.lease().empty() ? 0 : leases_.at(r.lease()); }

  // Remembered values. A name the scenario declares (validation saw a step remember it) may
  // still be unbound when a step reads it: the step that remembers it did not succeed.
  void Bind(const NameUse& name, int64_t value);
  void Unbind(size_t index, const NameUse& name);
  std::map<std::string, int64_t>& Values(NameKind kind);
  // Why `step` cannot run as written (a name it reads is unbound), or empty.
  std::string UnboundName(const pb::Step& step);
  // For an expectation about one node: that node, or a failure when there is none.
  std::optional<NodeId> ExpectedNode(size_t index, const pb::NodeRef& ref);

  const pb::Scenario& scenario_;
  RunOptions options_;
  ScenarioWorld& world_;
  RunResult result_;
  std::map<std::string, int64_t> nodes_;             // NodeId values
  std::map<std::string, int64_t> leases_;            // lease ids
  std::map<std::string, int64_t> terms_;             // Raft terms
  std::map<std::string, int64_t> revisions_;         // store revisions
  std::map<std::string, size_t> unbound_at_;         // name -> the step whose remembering failed
  std::map<std::string, std::string> acknowledged_;  // key -> last acknowledged PUT value
  // Jepsen's list-append clients, from a list_append step on (stepped through run_ms steps).
  std::unique_ptr<ListAppendClients> list_append_;
};

std::map<std::string, int64_t>& Runner::Values(NameKind kind) {
  switch (kind) {
    case NameKind::kNode:
      return nodes_;
    case NameKind::kLease:
      return leases_;
    case NameKind::kTerm:
      return terms_;
    case NameKind::kRevision:
      break;
  }
  return revisions_;
}

void Runner::Bind(const NameUse& name, int64_t value) {
  Values(name.kind)[name.name] = value;
  unbound_at_.erase(name.name);
}

void Runner::Unbind(size_t index, const NameUse& name) {
  Values(name.kind).erase(name.name);
  unbound_at_[name.name] = index;
}

std::string Runner::UnboundName(const pb::Step& step) {
  for (const NameUse& use : NameUsesOf(step)) {
    if (Values(use.kind).count(use.name) > 0) continue;
    auto failed = unbound_at_.find(use.name);
    // Validation saw an earlier step remember it; that step failed and unbound it.
    return absl::StrCat("the ", KindName(use.kind), " name '", use.name, "' is unbound: step ",
                        failed == unbound_at_.end() ? 0 : failed->second,
                        ", which remembers it, did not succeed");
  }
  return "";
}

std::optional<NodeId> Runner::ExpectedNode(size_t index, const pb::NodeRef& ref) {
  const NodeId id = Resolve(ref);
  if (id == raft::kNoNode) {
    Fail(index, "the expectation's node does not exist now (no leader, or too few followers)");
    return std::nullopt;
  }
  const std::vector<NodeId> ids = world_.node_ids();
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
    Fail(index, absl::StrCat("n", id, " is not a node of this cluster"));
    return std::nullopt;
  }
  return id;
}

std::vector<NodeId> Runner::Voters() {
  // The leader's configuration first: a member removed while it was down or cut off still runs
  // with the configuration that named it (fuzz seeds 75 and 83 picked such a process as
  // `follower: 1`, and it never learned the commits it had applied before its restart).
  if (const NodeId leader = world_.Leader(); leader != raft::kNoNode) {
    if (std::optional<raft::ConfState> conf = world_.ConfState(leader)) return conf->voters;
  }
  return world_.Voters();
}

NodeId Runner::Resolve(const pb::NodeRef& ref) {
  if (ref.id() != 0) return ref.id();
  if (ref.leader()) return world_.Leader();
  if (!ref.name().empty()) {
    auto it = nodes_.find(ref.name());
    return it == nodes_.end() ? raft::kNoNode : static_cast<NodeId>(it->second);
  }
  if (ref.follower() > 0) {
    const NodeId leader = world_.Leader();
    int seen = 0;
    for (NodeId id : Voters()) {
      if (id == leader || !world_.up(id)) continue;
      if (++seen == ref.follower()) return id;
    }
  }
  return raft::kNoNode;
}

RunResult Runner::Run() {
  for (size_t i = 0; i < static_cast<size_t>(scenario_.steps_size()); ++i) {
    RunStep(i + 1, scenario_.steps(static_cast<int>(i)));
  }
  if (list_append_ != nullptr) {
    // The transactions in flight end (or time out), the final reads run, then the history
    // is judged for strict serializability.
    list_append_->Finish();
    const elle::CheckResult check = list_append_->Check();
    for (const elle::Finding& finding : check.findings) {
      result_.failures.push_back(absl::StrCat("list-append: ", finding.description));
    }
    if (check.findings_not_kept > 0) {
      result_.failures.push_back(
          absl::StrCat("list-append: ", check.findings_not_kept, " more anomalies"));
    }
  }
  world_.StopWorkload();
  // Let outstanding requests finish so the history ends cleanly, then check the standing
  // properties.
  world_.RunFor(world_.now_ms() > 0 ? 1000 : 0);
  for (const std::string& violation : world_.TakeViolations()) {
    result_.failures.push_back(absl::StrCat("checker: ", violation));
  }
  result_.history = world_.TakeHistory();
  if (!scenario_.skip_linearizability()) CheckHistory();
  if (scenario_.has_expect_failure()) CheckExpectedFailure();
  if (result_.checks_run == 0 && result_.checks_skipped > 0) {
    result_.failures.push_back(absl::StrCat("every check was skipped (", result_.checks_skipped,
                                            " skipped, none run): the run proved nothing"));
  }
  result_.passed = result_.failures.empty();
  world_.Describe(result_);
  return std::move(result_);
}

void Runner::CheckExpectedFailure() {
  const pb::ExpectedFailure& expected = scenario_.expect_failure();
  if (!not_linearizable_at_.has_value() && !result_.skipped.empty()) {
    // A world that could not carry out some steps (a real cluster cannot skew a member's clock)
    // may not be able to make the hazard: the expectation is skipped by name, not failed, and
    // not passed either.
    result_.skipped.push_back(absl::StrCat(
        "the expected failure (expect_failure): not shown, since ", result_.skipped.size(),
        " of the scenario's steps could not be carried out; "
        "the hazard: ",
        expected.why()));
    ++result_.checks_skipped;
    return;
  }
  if (!not_linearizable_at_.has_value()) {
    result_.failures.push_back(absl::StrCat(
        "expected failure did not happen: the scenario demonstrates a hazard (", expected.why(),
        ") and must fail with a linearizability violation, but ", "the checker found none"));
    return;
  }
  // The demonstrated failure is the scenario's success; every other failure still fails it.
  const std::string found = result_.failures[*not_linearizable_at_];
  result_.failures.erase(result_.failures.begin() +
                         static_cast<std::ptrdiff_t>(*not_linearizable_at_));
  result_.transcript.push_back(
      absl::StrCat("expected failure (", expected.why(), ") happened: ", found));
}

void Runner::CheckHistory() {
  CheckOptions check;
  check.model = Model::kKv;
  check.max_search_steps = options_.linearizability_budget_steps;
  auto verdict = CheckLinearizability(result_.history, check);
  if (!result_.history.events().empty()) ++result_.checks_run;
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
      not_linearizable_at_ = result_.failures.size();
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
  std::string line = absl::StrCat("@", world_.now_ms(), "ms step ", index, ": ",
                                  step.note().empty() ? "" : step.note());
  const size_t failures_before = result_.failures.size();
  if (const std::string cannot = world_.CannotRun(step); !cannot.empty()) {
    // Never silently: the step is reported by name, and a check it was does not count as run.
    result_.skipped.push_back(absl::StrCat("step ", index, " (", StepKind(step), "): ", cannot));
    if (IsCheck(step)) ++result_.checks_skipped;
    if (const std::optional<NameUse> bound = NameBoundBy(step)) Unbind(index, *bound);
    result_.transcript.push_back(absl::StrCat(line, " [", StepKind(step), "] SKIPPED: ", cannot));
    return;
  }
  if (IsCheck(step)) ++result_.checks_run;
  const std::string unbound = UnboundName(step);
  if (step.has_request()) {
    RunRequest(index, step.request(), unbound, &line);
  } else if (!unbound.empty()) {
    Fail(index, absl::StrCat("not run: ", unbound));
    if (const std::optional<NameUse> bound = NameBoundBy(step)) Unbind(index, *bound);
  } else {
    RunAction(index, step, &line);
  }
  absl::StrAppend(&line, result_.failures.size() == failures_before ? " ok" : " FAILED");
  for (size_t i = failures_before; i < result_.failures.size(); ++i) {
    absl::StrAppend(&line, "\n    ", result_.failures[i]);
  }
  result_.transcript.push_back(std::move(line));
}

void Runner::RunAction(size_t index, const pb::Step& step, std::string* transcript_line) {
  std::string& line = *transcript_line;
  switch (step.action_case()) {
    case pb::Step::kRunMs:
      if (list_append_ != nullptr) {
        list_append_->RunFor(step.run_ms());
      } else {
        world_.RunFor(step.run_ms());
      }
      break;
    case pb::Step::kWaitForLeader: {
      const auto& wait = step.wait_for_leader();
      std::vector<NodeId> among = ResolveGroup(wait.among());
      const bool found = world_.RunUntil(
          [&] {
            const NodeId leader = world_.Leader();
            if (leader == raft::kNoNode) return false;
            return among.empty() || std::find(among.begin(), among.end(), leader) != among.end();
          },
          wait.within_ms() > 0 ? wait.within_ms() : 5000);
      if (!found) {
        Fail(index, absl::StrCat("no leader", among.empty() ? "" : " among the given nodes",
                                 " within ", wait.within_ms(), "ms"));
      } else {
        absl::StrAppend(&line, " [leader n", world_.Leader(), "]");
      }
      break;
    }
    case pb::Step::kPartition: {
      std::vector<std::vector<NodeId>> groups;
      for (const pb::Group& group : step.partition().groups())
        groups.push_back(ResolveGroup(group));
      world_.Partition(groups);
      break;
    }
    case pb::Step::kHeal:
      world_.Heal();
      break;
    case pb::Step::kIsolate:
      world_.Isolate(Resolve(step.isolate()));
      break;
    case pb::Step::kCrash:
      world_.Crash(Resolve(step.crash()));
      break;
    case pb::Step::kKill:
      world_.Kill(Resolve(step.kill()));
      break;
    case pb::Step::kRestart:
      world_.Restart(Resolve(step.restart()));
      break;
    case pb::Step::kPause:
      if (step.pause().buffer()) {
        world_.PauseBuffering(Resolve(step.pause().node()), step.pause().ms());
      } else {
        world_.Pause(Resolve(step.pause().node()), step.pause().ms());
      }
      break;
    case pb::Step::kClog: {
      const NodeId from = Resolve(step.clog().from());
      const NodeId to = Resolve(step.clog().to());
      world_.Clog(from, to, step.clog().ms());
      if (step.clog().both_ways()) world_.Clog(to, from, step.clog().ms());
      break;
    }
    case pb::Step::kClockStop:
      world_.StopClock(Resolve(step.clock_stop().node()), step.clock_stop().ms());
      break;
    case pb::Step::kSlowWatcher:
      world_.SlowWatchReader(Resolve(step.slow_watcher().node()), step.slow_watcher().ms());
      break;
    case pb::Step::kRepairRefused:
      RepairRefused(index, step.repair_refused(), &line);
      break;
    case pb::Step::kClientsTo: {
      auto* world = dynamic_cast<SimulationWorld*>(&world_);
      if (world == nullptr) {
        Fail(index, "clients_to points the simulation's clients: it runs only in the simulation");
        break;
      }
      const NodeId id = Resolve(step.clients_to());
      world->simulation().PointClients(id);
      absl::StrAppend(&line, " [n", id, "]");
      break;
    }
    case pb::Step::kStartWorkload:
      world_.StartWorkload();
      break;
    case pb::Step::kStopWorkload:
      world_.StopWorkload();
      break;
    case pb::Step::kExpect:
      RunExpect(index, step.expect(), &line);
      break;
    case pb::Step::kBlock:
      world_.BlockLink(Resolve(step.block().from()), Resolve(step.block().to()));
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
      world_.SetLinkDelay(from, to, delay.min_delay_ms(), delay.max_delay_ms());
      if (delay.both_ways()) {
        world_.SetLinkDelay(to, from, delay.min_delay_ms(), delay.max_delay_ms());
      }
      break;
    }
    case pb::Step::kTickRate:
      world_.SetTickRate(Resolve(step.tick_rate().node()), step.tick_rate().rate());
      break;
    case pb::Step::kNetwork:
      world_.SetNetwork(step.network());
      break;
    case pb::Step::kRememberNode: {
      const NodeId id = Resolve(step.remember_node());
      if (id == raft::kNoNode) {
        Unbind(index, *NameBoundBy(step));
        Fail(index, absl::StrCat("no node to remember as ", step.name()));
        break;
      }
      Bind(*NameBoundBy(step), static_cast<int64_t>(id));
      absl::StrAppend(&line, " [", step.name(), " = n", id, "]");
      break;
    }
    case pb::Step::kRememberTerm: {
      const NodeId id = Resolve(step.remember_term());
      const std::optional<raft::Term> known = world_.Term(id);
      if (!known.has_value()) {
        Unbind(index, *NameBoundBy(step));
        Fail(index, absl::StrCat("n", id, " is down: no term to remember as ", step.name()));
        break;
      }
      const raft::Term term = *known;
      Bind(*NameBoundBy(step), static_cast<int64_t>(term));
      absl::StrAppend(&line, " [", step.name(), " = term ", term, " of n", id, "]");
      break;
    }
    case pb::Step::kRememberRevision: {
      const NodeId id = Resolve(step.remember_revision());
      const std::optional<int64_t> known = world_.Revision(id);
      if (!known.has_value()) {
        Unbind(index, *NameBoundBy(step));
        Fail(index, absl::StrCat("n", id, " is down: no revision to remember as ", step.name()));
        break;
      }
      const mvcc::Revision revision = *known;
      Bind(*NameBoundBy(step), revision);
      absl::StrAppend(&line, " [", step.name(), " = revision ", revision, " of n", id, "]");
      break;
    }
    case pb::Step::kWatch: {
      const NodeId id = Resolve(step.watch().node());
      const std::optional<int64_t> revision = world_.Revision(id);
      if (!revision.has_value()) {
        if (step.watch().may_be_refused()) {
          absl::StrAppend(&line, " [n", id, " is down: UNAVAILABLE]");
        } else {
          Fail(index, absl::StrCat("n", id, " is down"));
        }
        break;
      }
      mvcc::WatchRequest watch;
      watch.key = step.watch().key();
      watch.range_end = step.watch().range_end();
      // From the past: never before the first revision (a start of 0 or below means "now").
      watch.start_revision = std::max<int64_t>(step.watch().start_ahead() < 0 ? 1 : 0,
                                               *revision + step.watch().start_ahead());
      absl::StrAppend(&line, " [n", id, " from revision ", watch.start_revision, "]");
      if (absl::Status status = world_.AddWatch(id, watch); !status.ok()) {
        if (step.watch().may_be_refused() && CodeOf(status) == ErrorCode::kCompacted) {
          absl::StrAppend(&line, " [COMPACTED]");
        } else {
          Fail(index, status.ToString());
        }
      }
      break;
    }
    case pb::Step::kDiskFault: {
      if (step.disk_fault().every_node()) {
        absl::StrAppend(&line, " [every node]");
        for (NodeId id : world_.node_ids()) world_.HealDisk(id);
        break;
      }
      const NodeId id = Resolve(step.disk_fault().node());
      absl::StrAppend(&line, " [n", id, "]");
      switch (step.disk_fault().kind()) {
        case pb::DiskFault::CORRUPT_RECORD:
          if (world_.CorruptRecord(id, /*oldest_segment=*/false)) break;
          if (step.disk_fault().best_effort()) {
            absl::StrAppend(&line, " (log too short: skipped)");
          } else {
            Fail(index, absl::StrCat("n", id, "'s log is too short"));
          }
          break;
        case pb::DiskFault::CORRUPT_OLD_SEGMENT:
          if (!world_.CorruptRecord(id, /*oldest_segment=*/true)) {
            Fail(index, absl::StrCat("n", id, "'s log has a single segment"));
          }
          break;
        case pb::DiskFault::TORN_WRITE_CRASH:
          if (!world_.up(id)) {
            absl::StrAppend(&line, " (down already)");
          } else if (!world_.CrashMidWrite(id, 2000)) {
            // Nothing was being written (an idle or cut-off node): a plain crash then.
            absl::StrAppend(&line, " (no write in flight: plain crash)");
            world_.Crash(id);
          }
          break;
        case pb::DiskFault::KILL_MID_WRITE:
          if (!world_.up(id)) {
            absl::StrAppend(&line, " (down already)");
          } else if (!world_.KillMidWrite(id, 2000)) {
            absl::StrAppend(&line, " (no write in flight: plain kill)");
            world_.Kill(id);
          }
          break;
        case pb::DiskFault::FSYNC_EIO:
          world_.FailNextWalSync(id);
          break;
        case pb::DiskFault::WRITE_EIO:
          world_.FailNextWalWrite(id);
          break;
        case pb::DiskFault::DISK_FULL:
          world_.FillDisk(id);
          break;
        case pb::DiskFault::DISK_SPACE_FREED:
          world_.FreeDisk(id);
          break;
        case pb::DiskFault::DISK_HEALED:
          world_.HealDisk(id);
          break;
        case pb::DiskFault::SLOW_DISK:
          world_.SetDiskLatency(id, step.disk_fault().latency_ms() / 2,
                                step.disk_fault().latency_ms());
          break;
        default:
          Fail(index, absl::StrCat("unknown disk fault ", step.disk_fault().kind()));
          break;
      }
      break;
    }
    case pb::Step::kListAppend: {
      if (list_append_ != nullptr) break;  // already running
      auto* world = dynamic_cast<SimulationWorld*>(&world_);
      if (world == nullptr) {
        Fail(index, "list-append clients run only in the simulation");
        break;
      }
      Simulation& simulation = world->simulation();
      ListAppendOptions clients;
      if (step.list_append().clients() > 0) clients.clients = step.list_append().clients();
      if (step.list_append().keys() > 0) clients.keys = step.list_append().keys();
      list_append_ = std::make_unique<ListAppendClients>(
          simulation, options_.seed.value_or(scenario_.options().seed()), clients);
      break;
    }
    case pb::Step::kRequest:
    case pb::Step::ACTION_NOT_SET:
      Fail(index, "step without an action");
      break;
  }
}

std::optional<server::Request> Runner::BuildRequest(size_t index, const pb::Request& r) {
  server::Request request;
  const NodeId target = Resolve(r.target());
  switch (r.op()) {
    case pb::Request::PUT:
    case pb::Request::PUT_WITH_LEASE:
      request.type = server::RequestType::kPut;
      request.put.key = r.key();
      request.put.value = ValueOf(r);
      if (r.op() == pb::Request::PUT_WITH_LEASE) request.put.lease = LeaseOf(r);
      break;
    case pb::Request::GET:
    case pb::Request::GET_SERIALIZABLE:
      request.type = server::RequestType::kRange;
      request.range.key = r.key();
      request.range.serializable = r.op() == pb::Request::GET_SERIALIZABLE;
      request.range.revision = r.revision();  // < 0: relative, resolved when it is sent
      break;
    case pb::Request::DELETE:
      request.type = server::RequestType::kDeleteRange;
      request.delete_range.key = r.key();
      break;
    case pb::Request::MEMBER_ADD_VOTER:
    case pb::Request::MEMBER_ADD_LEARNER:
      request.type = server::RequestType::kMemberAdd;
      request.member.name = r.remember();
      request.member.peer_urls = {world_.PeerUrlFor(r.remember(), r.peer_url())};
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
    case pb::Request::MEMBER_REPLACE:
      request.type = server::RequestType::kMemberReplace;
      request.member.id = target;
      request.member.name = r.remember();
      request.member.peer_urls = {world_.PeerUrlFor(r.remember(), r.peer_url())};
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
    case pb::Request::DEFRAGMENT:
      request.type = server::RequestType::kDefragment;
      break;
    case pb::Request::ALARM_DISARM:
      request.type = server::RequestType::kAlarmDisarm;
      break;
    case pb::Request::LEASE_KEEPALIVE:
      request.type = server::RequestType::kLeaseKeepAlive;
      request.lease_id = LeaseOf(r);
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
      take.put.lease = LeaseOf(r);
      request.txn.success.push_back(take);
      break;
    }
    default:
      Fail(index, absl::StrCat("unknown request op ", r.op()));
      return std::nullopt;
  }
  return request;
}

void Runner::RunRequest(size_t index, const pb::Request& r, const std::string& unbound,
                        std::string* line) {
  std::optional<NameUse> remembers;
  if (!r.remember().empty()) {
    remembers = NameUse{r.op() == pb::Request::LEASE_GRANT ? NameKind::kLease : NameKind::kNode,
                        r.remember()};
  }
  const std::string goal = Goal(r);
  std::string outcome;
  std::optional<server::Response> response;
  if (!unbound.empty()) {
    outcome = std::string(kUnbound);
    absl::StrAppend(line, " [not sent: ", unbound, "]");
  } else {
    std::optional<server::Request> request = BuildRequest(index, r);
    if (!request.has_value()) return;
    const int64_t timeout = r.timeout_ms() > 0 ? r.timeout_ms() : 3000;
    const int64_t deadline = world_.now_ms() + timeout;
    for (;;) {
      const NodeId node = Resolve(r.node());
      if (node == raft::kNoNode || !world_.up(node)) {
        outcome = std::string(kUnavailable);
        response.reset();
        world_.RunFor(50);
      } else {
        // Revisions relative to the node's current one (a compaction at 0 or below, a read
        // below 0), never below the first revision.
        if (request->type == server::RequestType::kCompact && r.revision() <= 0) {
          request->revision =
              std::max<int64_t>(1, world_.Revision(node).value_or(0) + r.revision());
        } else if (request->type == server::RequestType::kRange && r.revision() < 0) {
          request->range.revision =
              std::max<int64_t>(1, world_.Revision(node).value_or(0) + r.revision());
        }
        response = world_.Call(node, *request, std::max<int64_t>(1, deadline - world_.now_ms()));
        if (!response.has_value()) {
          outcome = "TIMEOUT";
        } else {
          outcome = std::string(ErrorCodeName(CodeOf(response->status)));
          if (r.op() == pb::Request::LOCK && response->status.ok() && !response->txn.succeeded) {
            outcome = std::string(kLocked);
          }
        }
      }
      if (!r.retry_until_expected() || outcome == goal || world_.now_ms() >= deadline) break;
      world_.RunFor(50);
    }
  }
  absl::StrAppend(line, " [", outcome, "]");
  const bool accepted =
      goal.empty() || outcome == goal ||
      std::find(r.also_accept().begin(), r.also_accept().end(), outcome) != r.also_accept().end();
  if (!accepted) {
    Fail(index, absl::StrCat("expected ", goal,
                             r.also_accept().empty()
                                 ? ""
                                 : absl::StrCat(" (or ", absl::StrJoin(r.also_accept(), ", "), ")"),
                             ", got ", outcome,
                             response.has_value() && !response->status.ok()
                                 ? absl::StrCat(" (", response->status.message(), ")")
                                 : ""));
  }
  if (!response.has_value() || !response->status.ok()) {
    if (remembers.has_value()) Unbind(index, *remembers);
    // An accepted failure of a GET that expects a value: the step says it may fail.
    if (accepted && !r.expect_value().empty()) absl::StrAppend(line, " (no value to check)");
    return;
  }
  switch (r.op()) {
    case pb::Request::PUT:
      acknowledged_[r.key()] = ValueOf(r);
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
    case pb::Request::MEMBER_ADD_LEARNER:
    case pb::Request::MEMBER_REPLACE: {
      const NodeId id = response->member.id;
      if (remembers.has_value()) Bind(*remembers, static_cast<int64_t>(id));
      // A member whose URL is wrong never gets a process: the cluster waits for it in vain.
      if (r.peer_url().rfind("bad://", 0) != 0) world_.StartJoiner(id);
      break;
    }
    case pb::Request::LEASE_GRANT:
      if (remembers.has_value()) Bind(*remembers, response->lease.id);
      break;
    default:
      break;
  }
}

void Runner::RepairRefused(size_t index, const pb::RepairRefused& repair, std::string* line) {
  const int64_t timeout = repair.timeout_ms() > 0 ? repair.timeout_ms() : 10'000;
  for (NodeId id : world_.node_ids()) {
    if (!world_.refused_to_start(id) || world_.up(id)) continue;
    world_.RunUntil([&] { return world_.Leader() != raft::kNoNode; }, timeout);
    const NodeId leader = world_.Leader();
    if (leader == raft::kNoNode) {
      Fail(index, absl::StrCat("no leader to replace n", id, " through"));
      continue;
    }
    const std::optional<raft::ConfState> leader_conf = world_.ConfState(leader);
    if (!leader_conf.has_value()) continue;
    const raft::ConfState& conf = *leader_conf;
    const bool member = std::count(conf.voters.begin(), conf.voters.end(), id) > 0 ||
                        std::count(conf.learners.begin(), conf.learners.end(), id) > 0;
    if (!member) {
      absl::StrAppend(line, " [n", id, " is no member any more]");
      continue;
    }
    // The operator wipes its disk and adds it again as a new member in its place (a member id
    // never comes back with less than it had made durable).
    pb::Request replace;
    replace.mutable_node()->set_leader(true);
    replace.set_op(pb::Request::MEMBER_REPLACE);
    replace.mutable_target()->set_id(id);
    replace.set_remember(absl::StrCat("repaired-n", id, "-step", index));
    replace.set_expect_code("OK");
    replace.set_retry_until_expected(true);
    replace.set_timeout_ms(timeout);
    // An attempt whose answer was lost may have replaced it already.
    replace.add_also_accept("MEMBER_NOT_FOUND");
    absl::StrAppend(line, " [replace n", id);
    RunRequest(index, replace, "", line);
    absl::StrAppend(line, "]");
  }
}

std::string Runner::AlarmProblem(NodeId id, bool nospace, std::string* listed) {
  server::Request list;
  list.type = server::RequestType::kAlarmList;
  const std::optional<server::Response> response = world_.Call(id, list, 1000);
  if (!response.has_value()) return absl::StrCat("n", id, " did not answer its alarm list");
  if (!response->status.ok()) {
    return absl::StrCat("n", id, "'s alarm list: ", response->status.ToString());
  }
  const std::vector<NodeId> nodes = world_.node_ids();
  std::vector<std::string> alarms;
  std::string problem;
  for (const server::Alarm& alarm : response->alarms) {
    const bool nospace_alarm = alarm.type == server::AlarmType::kNoSpace;
    alarms.push_back(absl::StrCat(nospace_alarm ? "NOSPACE" : "alarm type ",
                                  nospace_alarm ? "" : absl::StrCat(static_cast<int>(alarm.type)),
                                  " of n", alarm.member_id));
    if (!nospace_alarm && problem.empty()) {
      problem = absl::StrCat("n", id, " lists an alarm of type ", static_cast<int>(alarm.type));
    }
    if (std::find(nodes.begin(), nodes.end(), alarm.member_id) == nodes.end() && problem.empty()) {
      problem = absl::StrCat("n", id, " lists an alarm of n", alarm.member_id,
                             ", no member of this cluster");
    }
  }
  *listed = alarms.empty() ? "none" : absl::StrJoin(alarms, ", ");
  if (!problem.empty()) return problem;
  if (nospace && alarms.empty()) return absl::StrCat("n", id, " lists no NOSPACE alarm");
  if (!nospace && !alarms.empty()) {
    return absl::StrCat("n", id, " lists alarms, expected none: ", *listed);
  }
  return "";
}

void Runner::RunExpect(size_t index, const pb::Expect& expect, std::string* line) {
  switch (expect.check_case()) {
    case pb::Expect::kNospaceAlarm:
    case pb::Expect::kNoAlarm: {
      const bool nospace = expect.check_case() == pb::Expect::kNospaceAlarm;
      std::vector<NodeId> asked;
      if (expect.has_node()) {
        const std::optional<NodeId> id = ExpectedNode(index, expect.node());
        if (!id.has_value()) break;
        asked.push_back(*id);
      } else {
        for (NodeId id : world_.node_ids()) {
          if (world_.up(id)) asked.push_back(id);
        }
      }
      if (asked.empty()) {
        Fail(index, "no live member to ask for its alarm list");
        break;
      }
      for (NodeId id : asked) {
        // A member that has not yet applied the entry that raised (or disarmed) the alarm
        // lists the state before it: it gets up to a second to catch up.
        std::string problem;
        std::string listed;
        world_.RunUntil(
            [&] {
              problem = AlarmProblem(id, nospace, &listed);
              return problem.empty();
            },
            1000);
        if (!problem.empty()) {
          Fail(index, problem);
        } else {
          absl::StrAppend(line, " [n", id, ": ", listed, "]");
        }
      }
      break;
    }
    case pb::Expect::kNoJointConfiguration: {
      const std::vector<NodeId> joint = world_.NodesInJointConfig();
      if (!joint.empty()) {
        Fail(index,
             absl::StrCat("n", absl::StrJoin(joint, ",n"), " still in a joint configuration"));
      }
      break;
    }
    case pb::Expect::kJointConfigurationsAtLeast: {
      const uint64_t entered = world_.joint_configs_entered();
      const uint64_t left = world_.joint_configs_left();
      if (entered < expect.joint_configurations_at_least() ||
          left < expect.joint_configurations_at_least()) {
        Fail(index,
             absl::StrCat(entered, " joint configurations entered and ", left,
                          " left; expected at least ", expect.joint_configurations_at_least()));
      }
      break;
    }
    case pb::Expect::kVotersAre: {
      std::vector<NodeId> want = ResolveGroup(expect.voters_are());
      std::sort(want.begin(), want.end());
      const NodeId leader = world_.Leader();
      if (leader == raft::kNoNode) {
        Fail(index, "no leader: its configuration cannot be read");
        break;
      }
      const std::optional<raft::ConfState> held = world_.ConfState(leader);
      if (!held.has_value()) {
        Fail(index, absl::StrCat("leader n", leader, " did not tell its configuration"));
        break;
      }
      const raft::ConfState& conf = *held;
      if (conf.voters != want || !conf.voters_outgoing.empty()) {
        Fail(index,
             absl::StrCat("leader n", leader, " has configuration ", raft::DescribeConfState(conf),
                          ", expected voters n", absl::StrJoin(want, ",n")));
      }
      break;
    }
    case pb::Expect::kNoLeader:
      if (world_.Leader() != raft::kNoNode) {
        Fail(index, absl::StrCat("expected no leader, but n", world_.Leader(), " leads"));
      }
      break;
    case pb::Expect::kLeaderIn: {
      std::vector<NodeId> among = ResolveGroup(expect.leader_in());
      const NodeId leader = world_.Leader();
      if (std::find(among.begin(), among.end(), leader) == among.end()) {
        Fail(index,
             absl::StrCat("leader n", leader, " is not among n", absl::StrJoin(among, ",n")));
      }
      break;
    }
    case pb::Expect::kAllAcknowledgedWritesPresent: {
      world_.RunUntil([&] { return world_.Leader() != raft::kNoNode; }, 5000);
      for (const auto& [key, value] : acknowledged_) {
        server::Request get;
        get.type = server::RequestType::kRange;
        get.range.key = key;
        // A read that meets a leader change (LEADERSHIP_CHANGED, NO_LEADER) or no answer says
        // nothing of the write: ask again, a few times, once a leader is known (CI seed
        // 7968950868704 met a leader change during its read). A value, or an error on every
        // attempt, is the verdict.
        std::string got;
        for (int attempt = 0; attempt < 5; ++attempt) {
          if (attempt > 0) {
            world_.RunUntil([&] { return world_.Leader() != raft::kNoNode; }, 2000);
          }
          const NodeId leader = world_.Leader();
          auto response = leader == raft::kNoNode ? std::nullopt : world_.Call(leader, get, 3000);
          got = !response.has_value()         ? "no answer"
                : !response->status.ok()      ? response->status.ToString()
                : response->range.kvs.empty() ? "nil"
                                              : response->range.kvs.front().value;
          const bool retry = !response.has_value() ||
                             response->status.code() == absl::StatusCode::kUnavailable ||
                             response->status.code() == absl::StatusCode::kDeadlineExceeded;
          if (!retry) break;
        }
        if (got != value) {
          Fail(index, absl::StrCat("acknowledged write ", key, "=", value, " reads as ", got));
        }
      }
      break;
    }
    case pb::Expect::kTermOfNodeAtMost: {
      const std::optional<NodeId> id = ExpectedNode(index, expect.node());
      if (!id.has_value()) break;
      const std::optional<raft::Term> known = world_.Term(*id);
      if (!known.has_value()) {
        Fail(index, absl::StrCat("n", *id, " is down: its term cannot be read"));
        break;
      }
      const raft::Term term = *known;
      if (term > expect.term_of_node_at_most()) {
        Fail(index, absl::StrCat("n", *id, " is at term ", term, ", expected at most ",
                                 expect.term_of_node_at_most()));
      }
      break;
    }
    case pb::Expect::kHashesEqual: {
      if (const std::string violation = world_.CheckHashes(); !violation.empty()) {
        Fail(index, violation);
      }
      break;
    }
    case pb::Expect::kVotedNever: {
      // Any vote in any term and incarnation counts, also while the node is down: the
      // simulation keeps each node's first vote.
      const std::optional<NodeId> id = ExpectedNode(index, expect.node());
      if (!id.has_value()) break;
      if (const auto vote = world_.FirstVote(*id); vote.has_value()) {
        Fail(index, absl::StrCat("n", *id, " voted for n", vote->second, " in term ", vote->first));
      }
      break;
    }
    case pb::Expect::kTermAtMost: {
      const std::optional<NodeId> id = ExpectedNode(index, expect.node());
      if (!id.has_value()) break;
      const std::optional<raft::Term> known = world_.Term(*id);
      if (!known.has_value()) {
        Fail(index, absl::StrCat("n", *id, " is down: its term cannot be read"));
        break;
      }
      const int64_t bound = terms_.at(expect.term_at_most());
      const raft::Term term = *known;
      if (static_cast<int64_t>(term) > bound) {
        Fail(index, absl::StrCat("n", *id, " is at term ", term, ", above ", expect.term_at_most(),
                                 " = ", bound));
      }
      break;
    }
    case pb::Expect::kRevisionAtLeast: {
      const std::optional<NodeId> id = ExpectedNode(index, expect.node());
      if (!id.has_value()) break;
      const std::optional<int64_t> known = world_.Revision(*id);
      if (!known.has_value()) {
        Fail(index, absl::StrCat("n", *id, " is down: its revision cannot be read"));
        break;
      }
      const int64_t bound = revisions_.at(expect.revision_at_least());
      const mvcc::Revision revision = *known;
      if (revision < bound) {
        Fail(index, absl::StrCat("n", *id, " is at revision ", revision, ", below ",
                                 expect.revision_at_least(), " = ", bound));
      }
      break;
    }
    case pb::Expect::kRefusedToStart: {
      const std::optional<NodeId> id = ExpectedNode(index, expect.node());
      if (!id.has_value()) break;
      if (!world_.refused_to_start(*id)) {
        Fail(index, absl::StrCat("n", *id, world_.up(*id) ? " started" : " is down",
                                 " but did not detect corruption"));
      }
      break;
    }
    case pb::Expect::kStoppedOnStorageFailure: {
      const std::optional<NodeId> id = ExpectedNode(index, expect.node());
      if (!id.has_value()) break;
      if (!world_.stopped_on_storage_failure(*id)) {
        Fail(index, absl::StrCat("n", *id, world_.up(*id) ? " is up" : " is down",
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

absl::Status ValidateScenario(const pb::Scenario& scenario) {
  if (scenario.options().voters() < 0 || scenario.options().voters() > 9) {
    return absl::InvalidArgumentError("voters must be in [1, 9]");
  }
  if (std::string problem = KnobsProblem(scenario.options().knobs()); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("options.knobs: ", problem));
  }
  if (scenario.options().lease_reads() && scenario.options().knobs().disable_check_quorum()) {
    return absl::InvalidArgumentError(
        "options.lease_reads needs check-quorum (knobs.disable_check_quorum is set)");
  }
  if (scenario.has_expect_failure()) {
    const pb::ExpectedFailure& expected = scenario.expect_failure();
    if (expected.kind() == pb::ExpectedFailure::NONE) {
      return absl::InvalidArgumentError("expect_failure must name its kind");
    }
    if (expected.why().empty()) {
      return absl::InvalidArgumentError("expect_failure must say why (the hazard it shows)");
    }
    if (scenario.skip_linearizability()) {
      return absl::InvalidArgumentError(
          "expect_failure NOT_LINEARIZABLE with skip_linearizability: the failure it expects "
          "could never be found");
    }
  }
  // Name -> its kind and the first step that remembers it.
  std::map<std::string, std::pair<NameKind, int>> remembered;
  for (int i = 0; i < scenario.steps_size(); ++i) {
    const pb::Step& step = scenario.steps(i);
    const auto refuse = [i](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("step ", i + 1, ": ", why));
    };
    if (std::string problem = StepProblem(step); !problem.empty()) return refuse(problem);
    for (const NameUse& use : NameUsesOf(step)) {
      auto it = remembered.find(use.name);
      if (it == remembered.end()) {
        std::vector<std::string> known;
        for (const auto& [name, kind_step] : remembered) {
          if (kind_step.first == use.kind) known.push_back(absl::StrCat("'", name, "'"));
        }
        return refuse(absl::StrCat("uses the ", KindName(use.kind), " name '", use.name,
                                   "' before any step remembers it (", KindName(use.kind),
                                   " names remembered so far: ",
                                   known.empty() ? "none" : absl::StrJoin(known, ", "), ")"));
      }
      if (it->second.first != use.kind) {
        return refuse(absl::StrCat("uses '", use.name, "' as a ", KindName(use.kind), ", but step ",
                                   it->second.second, " remembers a ", KindName(it->second.first),
                                   " under it"));
      }
    }
    if (const std::optional<NameUse> bound = NameBoundBy(step); bound.has_value()) {
      auto [it, inserted] = remembered.emplace(bound->name, std::make_pair(bound->kind, i + 1));
      if (!inserted && it->second.first != bound->kind) {
        return refuse(absl::StrCat("remembers a ", KindName(bound->kind), " under '", bound->name,
                                   "', but step ", it->second.second, " remembers a ",
                                   KindName(it->second.first), " under it"));
      }
    }
  }
  return absl::OkStatus();
}

RunResult RunScenario(const pb::Scenario& scenario, const RunOptions& options) {
  if (absl::Status valid = ValidateScenario(scenario); !valid.ok()) {
    RunResult refused;
    refused.passed = false;
    refused.failures.push_back(absl::StrCat("scenario refused: ", valid.message()));
    return refused;
  }
  SimulationWorld world(ToSimOptions(
      scenario.options(), options.seed.value_or(scenario.options().seed()), options.record_trace));
  return RunScenarioIn(world, scenario, options);
}

RunResult RunScenarioIn(ScenarioWorld& world, const pb::Scenario& scenario,
                        const RunOptions& options) {
  if (absl::Status valid = ValidateScenario(scenario); !valid.ok()) {
    RunResult refused;
    refused.passed = false;
    refused.failures.push_back(absl::StrCat("scenario refused: ", valid.message()));
    return refused;
  }
  // The core's probe counters are process-wide: this run's hits are what they gained meanwhile.
  const probe::Counts before = probe::Snapshot();
  Runner runner(scenario, options, world);
  RunResult result = runner.Run();
  result.probe_hits = probe::Since(before);
  return result;
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
  if (absl::Status valid = ValidateScenario(scenario); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", valid.message()));
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
