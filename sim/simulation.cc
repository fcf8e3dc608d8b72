#include "sim/simulation.h"

#include <algorithm>
#include <cstring>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/auth/password.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "sim/check.h"
#include "store/wal.h"

namespace kvstore::sim {

namespace {

// Errors after which the request certainly did not take effect: all but a timeout and a write
// answered NOSPACE though it applied past the quota (as etcd's quotaApplierV3 answers it).
bool DefinitelyNotApplied(const absl::Status& status) {
  switch (CodeOf(status)) {
    case ErrorCode::kTimeout:
      return false;
    case ErrorCode::kNoSpace:
      return !absl::StrContains(status.message(), server::kAppliedPastQuota);
    default:
      return true;
  }
}

// The reference model workload's operations, as traces name them.
const char* ModelOpName(server::RequestType type) {
  switch (type) {
    case server::RequestType::kPut:
      return "put";
    case server::RequestType::kTxn:
      return "txn";
    case server::RequestType::kDeleteRange:
      return "delete";
    case server::RequestType::kRange:
      return "range";
    case server::RequestType::kLeaseGrant:
      return "lease-grant";
    case server::RequestType::kLeaseRevoke:
      return "lease-revoke";
    case server::RequestType::kCompact:
      return "compact";
    default:
      return "request";
  }
}

// Runs `copy`, which copies `request` for judging its answer, with the values the request puts
// taken out when they are large: the reference model (Judge, JudgeRead, Describe) and the model
// clients read a request's type, keys, ranges, compares and lease, never the values it puts
// (kilobytes on some seeds). The request keeps its values.
template <typename Copy>
void CopyForJudging(server::Request& request, Copy copy) {
  constexpr size_t kLarge = 64;
  bool large = request.put.value.size() > kLarge;
  for (const auto* branch : {&request.txn.success, &request.txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      large = large || (op.kind == mvcc::RequestOp::Kind::kPut && op.put.value.size() > kLarge);
    }
  }
  if (!large) {
    copy();
    return;
  }
  std::string put_value = std::move(request.put.value);
  std::vector<std::string> txn_values;
  for (auto* branch : {&request.txn.success, &request.txn.failure}) {
    for (mvcc::RequestOp& op : *branch) {
      if (op.kind == mvcc::RequestOp::Kind::kPut) txn_values.push_back(std::move(op.put.value));
    }
  }
  copy();
  request.put.value = std::move(put_value);
  size_t next = 0;
  for (auto* branch : {&request.txn.success, &request.txn.failure}) {
    for (mvcc::RequestOp& op : *branch) {
      if (op.kind == mvcc::RequestOp::Kind::kPut) op.put.value = std::move(txn_values[next++]);
    }
  }
}

}  // namespace

// One member process and its machine. The process is the member library (node/member.h), the
// production driver, over the real WAL on a simulated disk (store/sim_file_system.h) that
// survives its crashes; its MVCC backend is in memory and batches commits like etcd's.
struct Simulation::Node : public node::PeerTransport,
                          public node::SyncExecutor,
                          public node::ClientSink,
                          public node::ReadyObserver {
  Node(Simulation* sim, NodeId id, uint64_t disk_seed, uint64_t commits_per_flush)
      : sim(sim), id(id), fs(disk_seed), backend(commits_per_flush) {}

  void Send(const raft::Message& message) override { sim->SendMessage(message); }
  void Start(store::Wal::SyncBatch* batch) override { sim->StartSync(*this, batch); }
  void OnResponse(const server::Response& response) override { sim->OnResponse(*this, response); }
  void OnWatchResponse(const mvcc::WatchResponse& response) override {
    sim->watch_checkers_.OnWatchResponse(watches, *server(), response);
  }
  void OnStop(const absl::Status& why) override { sim->OnMemberStop(*this, why); }
  void OnReady(const server::Ready& ready) override { sim->OnReady(*this, ready); }
  void OnRecovered(const raft::RestartState& state) override { sim->OnRecovered(*this, state); }

  Simulation* sim;
  NodeId id = raft::kNoNode;
  bool up = false;
  uint64_t incarnation = 0;
  uint64_t ticks = 0;
  bool drain_scheduled = false;  // DrainSoon's kDrain is queued
  int64_t paused_until_ms = 0;
  bool pause_buffers = false;       // the pause holds messages instead of dropping them
  std::vector<raft::Message> held;  // messages a buffering pause holds, in arrival order
  int64_t clock_stopped_until_ms = 0;
  uint64_t missed_ticks = 0;  // ticks that did not come while its clock stood still
  int64_t disk_min_ms = 0;    // a slow disk: extra latency of each WAL fsync
  int64_t disk_max_ms = 0;
  double tick_rate = 1.0;
  // Ids this process received a Raft message from: the routes kvnode's Router learns from its
  // peers' Raft streams (their first batch tells the sender's peer URL). Lost with the process.
  std::set<NodeId> learned_routes;
  // The last leader message (append, heartbeat, snapshot) this process took: whose, in which
  // term, when. The availability checker's follower lease (sim/availability.h).
  NodeId heard_leader = raft::kNoNode;
  raft::Term heard_term = 0;
  int64_t heard_ms = 0;
  store::SimFileSystem fs;  // the machine's disk: outlives the process
  mvcc::MemoryBackend backend;
  std::unique_ptr<node::Member> member;  // the process; null while down
  server::Server* server() const { return member != nullptr ? &member->server() : nullptr; }
  store::Wal::SyncBatch* sync = nullptr;  // the WAL sync in flight
  // The durable log as of the last crash, for checkers asking about a member that is down and
  // for the storage checker at its restart.
  store::Wal::LogIndex durable_when_down;
  bool crashed_once = false;
  // Down after a Kill, with the killed process's unsynced writes still in the page cache.
  bool killed = false;
  bool corruption_injected = false;           // a record was corrupted on purpose (sticky)
  RaftCheckers::NodeState* checks = nullptr;  // its state in the Raft checkers
  // Its all-keys watch and its scenario watches, as the watch checkers follow them.
  WatchCheckers::NodeWatches watches;
  // Client requests outstanding on this node: request id -> client index.
  std::map<server::RequestId, size_t> waiting;
};

struct Simulation::Client {
  size_t index = 0;
  int process = 0;
  NodeId node = raft::kNoNode;
  bool busy = false;
  uint64_t attempt = 0;
  Function function = Function::kRead;
  std::string key;
  std::string value;  // write and cas: the value set; otherwise empty
  Value old_value;    // cas: the value expected (nil: absent)
  server::RequestId request = 0;
  uint64_t writes = 0;
  bool serializable = false;
  // The reference model's workload (SimOptions::model_clients) instead of the linearizable one.
  bool model = false;
  server::Request sent;  // the request in flight, whose answer the reference model judges
  std::vector<mvcc::LeaseId> leases;  // model clients: leases granted (some may have expired)
  mvcc::Revision seen_revision = 1;   // model clients: the highest revision answered
  NodeId point_to = raft::kNoNode;    // PointClients: the node of its next request
};

struct Simulation::Event {
  enum class Kind : uint8_t {
    kTick,
    kDeliver,
    kFsync,
    kClientNext,
    kClientTimeout,
    kResume,
    kWatchRead,  // a slow watch reader reads again
    kOperator,   // the next step of the operator's NOSPACE runbook (`attempt`: its phase)
    // A peer's refusal of a message from `node` as a removed member's (rafthttp's 410 Gone).
    kRemovedNotice,
    // The member carries out its Ready once the events of this instant have run
    // (SimOptions::drain_per_instant).
    kDrain,
  };
  int64_t time_ms = 0;
  uint64_t seq = 0;
  Kind kind = Kind::kTick;
  NodeId node = raft::kNoNode;
  uint64_t incarnation = 0;
  raft::Message message;
  size_t client = 0;
  uint64_t attempt = 0;
};

bool Simulation::Later::operator()(const Queued& a, const Queued& b) const {
  if (a.time_ms != b.time_ms) return a.time_ms > b.time_ms;
  return a.seq > b.seq;
}

Simulation::EventQueue::EventQueue() : wheel_(static_cast<size_t>(kWheelMs)) {}

void Simulation::EventQueue::Push(std::unique_ptr<Event> event) {
  const int64_t time_ms = event->time_ms;
  SIM_CHECK(time_ms >= floor_ms_) << "event at " << time_ms << " before " << floor_ms_;
  if (time_ms < floor_ms_ + kWheelMs) {
    SlotOf(time_ms).events.push_back(std::move(event));
    ++wheel_count_;
    scan_from_ms_ = std::min(scan_from_ms_, time_ms);
    return;
  }
  const uint64_t seq = event->seq;
  far_.push_back(Queued{time_ms, seq, std::move(event)});
  std::push_heap(far_.begin(), far_.end(), Later());
}

int64_t Simulation::EventQueue::NextTime() {
  if (wheel_count_ == 0) return far_.front().time_ms;
  for (int64_t t = std::max(floor_ms_, scan_from_ms_);; ++t) {
    const Slot& slot = SlotOf(t);
    if (slot.head < slot.events.size()) {
      scan_from_ms_ = t;
      return t;
    }
  }
}

std::unique_ptr<Simulation::Event> Simulation::EventQueue::Pop() { return PopAt(NextTime()); }

std::unique_ptr<Simulation::Event> Simulation::EventQueue::PopAt(int64_t time_ms) {
  if (time_ms != floor_ms_) {
    floor_ms_ = time_ms;
    // The window moved: what the heap holds for it goes in first, in (time, sequence) order.
    while (!far_.empty() && far_.front().time_ms < floor_ms_ + kWheelMs) {
      std::pop_heap(far_.begin(), far_.end(), Later());
      SlotOf(far_.back().time_ms).events.push_back(std::move(far_.back().event));
      ++wheel_count_;
      scan_from_ms_ = std::min(scan_from_ms_, far_.back().time_ms);
      far_.pop_back();
    }
  }
  Slot& slot = SlotOf(time_ms);
  std::unique_ptr<Event> event = std::move(slot.events[slot.head++]);
  --wheel_count_;
  if (slot.head == slot.events.size()) {
    slot.events.clear();
    slot.head = 0;
  }
  return event;
}

void Simulation::EventQueue::Clear() {
  for (Slot& slot : wheel_) {
    slot.events.clear();
    slot.head = 0;
  }
  wheel_count_ = 0;
  far_.clear();
  scan_from_ms_ = floor_ms_;
}

Simulation::Simulation(const SimOptions& options)
    : options_(options),
      rng_(options.seed),
      raft_checkers_(&checker_view_, &model_, std::string(kWalDir), options.wal_segment_bytes),
      availability_(
          options.pre_vote && options.check_quorum, options.election_tick * options.tick_ms,
          // A transfer's deadline allows for its round trips (catch-up append,
          // TimeoutNow, votes with their fsyncs) on top of the election timeout.
          4 * options.network.max_delay_ms + 2 * options.fsync_max_ms + 2 * options.tick_ms) {
  raft_checkers_.set_rules(&server_rules_);
  std::vector<NodeId> voters;
  std::vector<server::Member> founding;
  for (int i = 1; i <= options.voters; ++i) {
    voters.push_back(static_cast<NodeId>(i));
    founding.push_back(server::Member{
        static_cast<NodeId>(i), absl::StrCat("n", i), {absl::StrCat("sim://n", i)}, false});
  }
  for (NodeId id : voters) {
    AddNode(id);
    StartNode(id, founding);
  }
  for (int i = 0; i < options.clients; ++i) {
    auto client = std::make_unique<Client>();
    client->index = clients_.size();
    client->process = i;
    client->node = static_cast<NodeId>(1 + rng_.Uniform(options.voters));
    clients_.push_back(std::move(client));
  }
  for (int i = 0; i < options.model_clients; ++i) {
    auto client = std::make_unique<Client>();
    client->index = clients_.size();
    client->process = options.clients + i;
    client->model = true;
    client->node = static_cast<NodeId>(1 + rng_.Uniform(options.voters));
    clients_.push_back(std::move(client));
  }
}

Simulation::~Simulation() = default;

void Simulation::Trace(const std::string& line) {
  trace_hash_ = Fnv1a64(line, trace_hash_);
  trace_hash_ = Fnv1a64("\n", trace_hash_);
  if (options_.record_trace) trace_.push_back(absl::StrCat("@", now_ms_, " ", line));
}

void Simulation::Violation(std::string what) {
  Trace(absl::StrCat("VIOLATION ", what));
  if (violations_.size() < kMaxViolationsKept) {
    violations_.push_back(absl::StrCat("@", now_ms_, "ms: ", what));
  } else {
    ++violations_not_kept_;
  }
}

std::unique_ptr<Simulation::Event> Simulation::NewEvent() {
  if (free_events_.empty()) return std::make_unique<Event>();
  std::unique_ptr<Event> event = std::move(free_events_.back());
  free_events_.pop_back();
  return event;
}

void Simulation::RecycleEvent(std::unique_ptr<Event> event) {
  if (free_events_.size() >= kMaxFreeEvents) return;
  // Back to a new event's state; the message keeps its entry storage for the next delivery.
  event->kind = Event::Kind::kTick;
  event->node = raft::kNoNode;
  event->incarnation = 0;
  event->client = 0;
  event->attempt = 0;
  raft::Message& m = event->message;
  m.entries.clear();
  m.snapshot.reset();
  m.context = raft::Bytes();
  free_events_.push_back(std::move(event));
}

void Simulation::Schedule(int64_t at_ms, std::unique_ptr<Event> event) {
  event->time_ms = std::max(at_ms, now_ms_);
  event->seq = next_seq_++;
  queue_.Push(std::move(event));
}

std::unique_ptr<Simulation::Node> Simulation::NewNode(NodeId id) {
  const uint64_t disk_seed = rng_.Next();
  const uint64_t commits_per_flush = 1 + rng_.Uniform(options_.backend_commits_per_flush_max);
  auto node = std::make_unique<Node>(this, id, disk_seed, commits_per_flush);
  node->checks = &raft_checkers_.Track(id);
  node->watches.id = id;
  return node;
}

void Simulation::AddNode(NodeId id) {
  std::unique_ptr<Node>& slot = nodes_[id];
  slot = NewNode(id);
  if (id < kIndexedIds) {
    if (node_index_.size() <= id) node_index_.resize(id + 1, nullptr);
    node_index_[id] = slot.get();
  } else {
    other_nodes_.emplace_back(id, slot.get());
  }
}

Simulation::Node* Simulation::FindNode(NodeId id) const {
  if (id < node_index_.size()) return node_index_[id];
  if (id < kIndexedIds) return nullptr;
  for (const auto& [other, node] : other_nodes_) {
    if (other == id) return node;
  }
  return nullptr;
}

const store::Wal::LogIndex* Simulation::CheckerView::DurableLog(NodeId id) const {
  const Node* found = sim_->FindNode(id);
  if (found == nullptr) return nullptr;  // a member that never started
  const Node& node = *found;
  return node.up ? &node.member->wal().durable() : &node.durable_when_down;
}

void Simulation::StartNode(NodeId id, std::vector<server::Member> founding) {
  Node& node = *nodes_.at(id);
  node::MemberOptions options;
  server::ServerConfig& config = options.server;
  config.id = id;
  config.election_tick = options_.election_tick;
  config.heartbeat_tick = options_.heartbeat_tick;
  config.tick_ms = options_.tick_ms;
  config.random_seed = rng_.Next();
  config.request_timeout_ticks = static_cast<int>(options_.client_timeout_ms / options_.tick_ms);
  config.snapshot_every_entries = options_.snapshot_every_entries;
  config.snapshot_catch_up_entries = options_.snapshot_catch_up_entries;
  config.max_inflight_msgs = options_.max_inflight_msgs;
  config.max_size_per_msg_bytes = options_.max_size_per_msg_bytes;
  config.max_committed_size_per_ready_bytes = options_.max_committed_size_per_ready_bytes;
  config.pre_vote = options_.pre_vote;
  config.check_quorum = options_.check_quorum;
  config.lease_reads = options_.lease_reads;
  config.watch_max_buffered_events = options_.watch_max_buffered_events;
  config.watch_catch_up_batch_events = options_.watch_catch_up_batch_events;
  config.quota_bytes = options_.quota_bytes;
  config.max_request_bytes = options_.max_request_bytes;
  config.max_txn_ops = options_.max_txn_ops;
  // bcrypt's least cost: the auth workload hashes and verifies passwords, and real cost (10)
  // would spend ~50 ms of wall time on each.
  config.password_hash_cost = auth::kMinBcryptCost;
  options.wal.segment_bytes = options_.wal_segment_bytes;
  options.wal_compact_entries = options_.snapshot_every_entries;
  // Members publish their attributes through the log, as kvnode's do.
  options.name = absl::StrCat("n", id);
  options.client_urls = {absl::StrCat("sim://n", id)};
  node::MemberIo io;
  io.transport = &node;
  io.sync = &node;
  io.sink = &node;
  io.observer = &node;
  node.sync = nullptr;
  // The process starts: its incarnation fences the events of the one before.
  ++node.incarnation;
  node.up = true;
  node.heard_leader = raft::kNoNode;  // a new process knows no leader yet
  node.learned_routes.clear();        // and no route learned from a peer's stream
  auto member = node::Member::Open(options, &node.fs, std::string(kWalDir), &node.backend, io,
                                   std::move(founding));
  if (!member.ok()) {
    node.up = false;
    if (member.status().code() == absl::StatusCode::kDataLoss) {
      // The store found corruption it cannot repair: the member refuses to serve it.
      Trace(absl::StrCat("n", id, " refuses to start: ", member.status().message()));
      refused_.insert(id);
      // Only a disk that was corrupted on purpose may hold what recovery cannot repair: torn
      // writes and crashes alone must always recover.
      if (!node.corruption_injected) {
        Violation(absl::StrCat(
            "n", id, " refuses to start on a disk nothing corrupted: ", member.status().message()));
      }
    } else if (CodeOf(member.status()) == ErrorCode::kMemberRemoved) {
      // Its data dir records its removal: it never serves again (etcd's removed member).
      Trace(absl::StrCat("n", id, " refuses to start: ", member.status().message()));
      removed_.insert(id);
    } else if (member.status().code() == absl::StatusCode::kResourceExhausted &&
               node.fs.faults().capacity_bytes > 0) {
      // A full disk: the member cannot even start; it stays down until space is freed.
      Trace(absl::StrCat("n", id, " cannot start: ", member.status().message()));
      stopped_.insert(id);
    } else {
      // The member refuses to start on what its disk holds: it stays down, loudly.
      Violation(absl::StrCat("node ", id, " cannot start: ", member.status().ToString()));
    }
    return;
  }
  refused_.erase(id);
  stopped_.erase(id);
  removed_.erase(id);  // its data did not know of its removal: a peer will tell it again
  node.member = std::move(*member);
  if (const store::WalRecovery& recovery = node.member->wal().recovery(); recovery.torn_bytes > 0) {
    Trace(absl::StrCat("n", id, " cut a torn tail of ", recovery.torn_bytes, " bytes at offset ",
                       recovery.torn_offset, " of ", recovery.torn_file));
  }
  raft_checkers_.OnStart(*node.checks, *node.server());
  // A scenario's watches died with the previous process; the new one numbers its watches anew.
  watch_checkers_.OnStart(node.watches);
  // Every node watches every key from the oldest revision it holds in history: the compact
  // revision, whose events (a delete's tombstone included) compaction keeps (etcd #18089,
  // #19179).
  mvcc::WatchRequest watch;
  watch.key = std::string(1, '\0');
  watch.range_end = std::string(1, '\0');
  watch.start_revision = std::max<mvcc::Revision>(node.server()->store().compact_revision(), 1);
  auto watch_id = node.server()->Watch(watch);
  watch_checkers_.OnAllKeysWatch(node.watches, watch_id.ok() ? *watch_id : 0, watch.start_revision);
  Trace(absl::StrCat("start n", id, " incarnation ", node.incarnation));
  ScheduleTick(node);
  Drain(node);
}

void Simulation::StartJoiner(NodeId id) {
  if (FindNode(id) != nullptr) return;
  AddNode(id);
  StartNode(id, {});
}

void Simulation::StartDueJoiners() {
  const std::set<NodeId> due = std::move(joiners_due_);
  joiners_due_.clear();
  for (NodeId id : due) {
    if (nodes_.count(id) > 0) continue;
    for (const auto& [other, node] : nodes_) {
      if (!node->up) continue;
      bool started = false;
      for (const server::Member& member : node->server()->Members()) {
        if (member.id != id) continue;
        if (!member.peer_urls.empty() && absl::StartsWith(member.peer_urls.front(), "sim://")) {
          Trace(absl::StrCat("n", id, " is named by an applied configuration: its process starts"));
          StartJoiner(id);
          started = true;
        }
        break;
      }
      if (started || nodes_.count(id) > 0) break;
    }
  }
}

std::vector<NodeId> Simulation::NodesInJointConfig() const {
  std::vector<NodeId> out;
  const NodeId leader = Leader();
  if (leader == raft::kNoNode) return out;
  const raft::ConfState conf = nodes_.at(leader)->server()->RaftConfState();
  for (const auto& [id, node] : nodes_) {
    const bool member =
        std::count(conf.voters.begin(), conf.voters.end(), id) > 0 ||
        std::count(conf.voters_outgoing.begin(), conf.voters_outgoing.end(), id) > 0 ||
        std::count(conf.learners.begin(), conf.learners.end(), id) > 0;
    if (member && node->up && !node->server()->RaftConfState().voters_outgoing.empty()) {
      out.push_back(id);
    }
  }
  return out;
}

void Simulation::ScheduleTick(Node& node) {
  auto event = NewEvent();
  event->kind = Event::Kind::kTick;
  event->node = node.id;
  event->incarnation = node.incarnation;
  const int64_t period =
      std::max<int64_t>(1, static_cast<int64_t>(options_.tick_ms / node.tick_rate));
  Schedule(now_ms_ + period, std::move(event));
}

bool Simulation::LinkBlocked(NodeId from, NodeId to) const {
  return blocked_.count({from, to}) > 0;
}

bool Simulation::Routable(NodeId from, NodeId to) const {
  // Its --initial-cluster: the founding members (a joiner's names them and itself).
  if (to <= static_cast<NodeId>(options_.voters) || to == from) return true;
  const Node* sender = FindNode(from);
  const server::Server* server = sender != nullptr ? sender->server() : nullptr;
  if (server == nullptr) return false;
  if (server->FindMember(to) != nullptr) return true;  // its applied member list
  // A route learned from the peer's own Raft stream; never to a removed member.
  return sender->learned_routes.count(to) > 0 && !server->IsMemberRemoved(to);
}

void Simulation::SendMessage(const raft::Message& message) {
  if (LinkBlocked(message.from, message.to) || FindNode(message.to) == nullptr) return;
  // kvnode's transport reaches only the ids its Router can route (node/kvnode.cc): a message to
  // any other is dropped, as the real one is.
  if (!Routable(message.from, message.to)) return;
  const NetworkOptions& net = options_.network;
  if (net.loss > 0 && static_cast<double>(rng_.Uniform(1000000)) < net.loss * 1e6) return;
  const int copies =
      net.duplicate > 0 && static_cast<double>(rng_.Uniform(1000000)) < net.duplicate * 1e6 ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    auto event = NewEvent();
    event->kind = Event::Kind::kDeliver;
    event->node = message.to;
    event->message = message;
    int64_t min_ms = net.min_delay_ms;
    int64_t max_ms = net.max_delay_ms;
    if (!link_delays_.empty()) {
      if (auto it = link_delays_.find({message.from, message.to}); it != link_delays_.end()) {
        std::tie(min_ms, max_ms) = it->second;
      }
    }
    const int64_t spread = std::max<int64_t>(0, max_ms - min_ms);
    int64_t from_ms = now_ms_;
    if (!clogged_until_.empty()) {
      // A clogged link holds the message back until the clog ends.
      if (auto it = clogged_until_.find({message.from, message.to}); it != clogged_until_.end()) {
        if (it->second > now_ms_) {
          from_ms = it->second;
        } else {
          clogged_until_.erase(it);
        }
      }
    }
    Schedule(from_ms + min_ms + static_cast<int64_t>(rng_.Uniform(spread + 1)), std::move(event));
  }
}

void Simulation::Drain(Node& node) {
  if (!node.up) return;
  node.member->Drain();
  if (node.watches.reopen_from > 0 && !node.member->stopped()) {
    // Its all-keys watch was canceled: the client watches again from where it can.
    mvcc::WatchRequest watch;
    watch.key = std::string(1, '\0');
    watch.range_end = std::string(1, '\0');
    watch.start_revision = node.watches.reopen_from;
    node.watches.reopen_from = 0;
    auto watch_id = node.server()->Watch(watch);
    if (!watch_id.ok() && CodeOf(watch_id.status()) == ErrorCode::kCompacted) {
      // Compacted further meanwhile (a restarted member caught up past another compaction, as
      // compaction under load makes likely): the client retries from there, as etcd's do.
      watch_checkers_.NoteReopenCompacted();
      watch.start_revision = node.server()->store().compact_revision() + 1;
      watch_id = node.server()->Watch(watch);
    }
    if (watch_id.ok()) {
      watch_checkers_.OnAllKeysWatch(node.watches, *watch_id, watch.start_revision);
    } else {
      Violation(absl::StrCat("n", node.id, " refused a watch from revision ", watch.start_revision,
                             " after canceling one for compaction: ", watch_id.status().message()));
    }
    node.member->Drain();
  }
  AfterMemberCall(node);
}

void Simulation::AfterMemberCall(Node& node) {
  if (node.member->stopped()) {
    // The process exits on a storage failure (it never retries a failed fsync); what it had not
    // made durable is as good as lost, so its machine is treated as losing power too.
    Crash(node.id);
    return;
  }
  CheckNode(node);
}

void Simulation::OnReady(Node& node, const server::Ready& ready) {
  raft_checkers_.OnReady(*node.checks, *node.server(), ready, node.member->wal());
  server_rules_.OnApplied(node.id, ready, node.backend.SizeBytes(),
                          !node.server()->Alarms().empty());
}

server::RequestId Simulation::SubmitObserved(Node& node, server::Request&& request) {
  const ServerRuleCheckers::Measured measured = server_rules_.Measure(request);
  // The quota as the member sees it when it takes the request.
  ServerRuleCheckers::QuotaAtSubmit quota;
  if (ServerRuleCheckers::QuotaCost(request) > 0) {
    bool own = false;
    const std::vector<server::Alarm> alarms = node.server()->Alarms();
    for (const server::Alarm& alarm : alarms) own = own || alarm.member_id == node.id;
    quota = server_rules_.MeasureQuota(request, node.backend.SizeBytes(), !alarms.empty(), own);
  }
  if (request.type != server::RequestType::kMemberPromote || !node.server()->is_leader()) {
    const server::RequestId request_id = node.server()->Submit(std::move(request));
    server_rules_.OnSubmit(node.id, request_id, measured);
    server_rules_.OnQuotaSubmitted(node.id, request_id, quota);
    return request_id;
  }
  // The promotion's readiness rule compares the learner with the leader's own match index now.
  const raft::Status status = node.server()->RaftStatus();
  auto self = status.progress.find(node.id);
  const raft::Index leader_match = self == status.progress.end() ? 0 : self->second.match;
  const NodeId learner = request.member.id;
  const server::RequestId request_id = node.server()->Submit(std::move(request));
  server_rules_.OnSubmit(node.id, request_id, measured);
  server_rules_.OnPromoteSubmitted(node.id, request_id, learner, leader_match);
  return request_id;
}

void Simulation::OnResponse(Node& node, const server::Response& response) {
  server_rules_.OnAnswer(node.id, response);
  if (CodeOf(response.status) == ErrorCode::kNoSpace) NoteNoSpace();
  if (!proposals_in_transfer_.empty() &&
      proposals_in_transfer_.erase({node.id, response.request_id}) > 0) {
    availability_.ProposalAnsweredInTransfer(node.id,
                                             std::string(ErrorCodeName(CodeOf(response.status))),
                                             std::string(response.status.message()));
  }
  if (!moves_asked_.empty()) {
    if (auto move = moves_asked_.find({node.id, response.request_id}); move != moves_asked_.end()) {
      const ErrorCode code = CodeOf(response.status);
      if (code == ErrorCode::kNotLeader || code == ErrorCode::kMemberNotFound) {
        availability_.TransferRefused(move->second);
      }
      moves_asked_.erase(move);
    }
  }
  auto it = node.waiting.find(response.request_id);
  if (it == node.waiting.end()) return;
  const size_t client = it->second;
  node.waiting.erase(it);
  if (client == kCallSlot) {
    auto sent = call_requests_.find({node.id, response.request_id});
    JudgeByModel(node.id, sent != call_requests_.end() ? &sent->second : nullptr, response);
    if (sent != call_requests_.end()) call_requests_.erase(sent);
    call_results_[{node.id, response.request_id}] = response;
    ++call_answers_;
  } else {
    ClientComplete(*clients_[client], node.id, response);
  }
}

void Simulation::StartSync(Node& node, store::Wal::SyncBatch* batch) {
  node.sync = batch;
  auto event = NewEvent();
  event->kind = Event::Kind::kFsync;
  event->node = node.id;
  event->incarnation = node.incarnation;
  const int64_t spread = options_.fsync_max_ms - options_.fsync_min_ms;
  int64_t disk_ms = static_cast<int64_t>(node.fs.TakeLatencyMicros() / 1000);
  if (node.disk_max_ms > 0) {
    disk_ms += node.disk_min_ms +
               static_cast<int64_t>(
                   rng_.Uniform(static_cast<uint64_t>(node.disk_max_ms - node.disk_min_ms) + 1));
  }
  Schedule(now_ms_ + options_.fsync_min_ms + disk_ms +
               static_cast<int64_t>(rng_.Uniform(static_cast<uint64_t>(spread) + 1)),
           std::move(event));
}

void Simulation::Fsync(Node& node) {
  store::Wal::SyncBatch* batch = node.sync;
  if (batch == nullptr) return;
  node.sync = nullptr;
  node.member->OnSyncDone(batch->Run());
  AfterMemberCall(node);
}

void Simulation::OnMemberStop(Node& node, const absl::Status& why) {
  availability_.NodeDown(node.id);
  Trace(absl::StrCat("n", node.id, " stops: ", why.message()));
  if (CodeOf(why) == ErrorCode::kMemberRemoved) {
    removed_.insert(node.id);
    return;
  }
  stopped_.insert(node.id);
  ++members_stopped_;
}

void Simulation::OnRecovered(Node& node, const raft::RestartState& state) {
  raft_checkers_.OnRecovered(*node.checks, state, &node.fs,
                             node.crashed_once ? &node.durable_when_down : nullptr);
}

void Simulation::FailNextWalSync(NodeId id) {
  if (!up(id)) return;  // aimed at a running process
  nodes_.at(id)->fs.FailNextSync(std::string(kWalDir));
  Trace(absl::StrCat("n", id, " next WAL fsync fails (EIO)"));
}

void Simulation::FailNextWalWrite(NodeId id) {
  if (!up(id)) return;  // aimed at a running process
  nodes_.at(id)->fs.FailNextWrite(std::string(kWalDir));
  Trace(absl::StrCat("n", id, " next WAL write fails (EIO)"));
}

void Simulation::FillDisk(NodeId id) {
  Node& node = *nodes_.at(id);
  store::SimDiskFaults faults = node.fs.faults();
  faults.capacity_bytes = node.fs.logical_bytes() + kDiskFullRoomBytes;
  node.fs.set_faults(faults);
  Trace(absl::StrCat("n", id, " disk full at ", faults.capacity_bytes, " bytes"));
}

void Simulation::HealDisk(NodeId id) {
  FreeDisk(id);
  nodes_.at(id)->fs.ClearArmedFailures();
  nodes_.at(id)->disk_min_ms = 0;
  nodes_.at(id)->disk_max_ms = 0;
}

void Simulation::FreeDisk(NodeId id) {
  Node& node = *nodes_.at(id);
  store::SimDiskFaults faults = node.fs.faults();
  faults.capacity_bytes = 0;
  node.fs.set_faults(faults);
  Trace(absl::StrCat("n", id, " disk has room again"));
}

void Simulation::CheckNode(Node& node) {
  if (!node.up) return;
  const raft::ConfState* changed = raft_checkers_.OnStep(*node.checks, *node.server());
  if (changed == nullptr) return;
  // A member that an applied configuration names gets its process (as an operator starts it).
  for (const auto* ids : {&changed->voters, &changed->learners}) {
    for (NodeId id : *ids) {
      if (FindNode(id) == nullptr) joiners_due_.insert(id);
    }
  }
}

void Simulation::CheckAcknowledgedWrite(NodeId id, const std::string& key, const std::string& value,
                                        mvcc::Revision revision) {
  auto it = nodes_.find(id);
  answer_checkers_.OnAcknowledgedWrite(
      id, it == nodes_.end() || !it->second->up ? nullptr : it->second->server(), key, value,
      revision);
}

absl::Status Simulation::AddWatch(NodeId id, const mvcc::WatchRequest& request) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second->up) {
    return absl::UnavailableError(absl::StrCat("n", id, " is down"));
  }
  Node& node = *it->second;
  auto watch = node.server()->Watch(request);
  if (!watch.ok()) return watch.status();
  watch_checkers_.OnScenarioWatch(node.watches, *watch, request.start_revision);
  Trace(
      absl::StrCat("watch n", id, " from revision ", request.start_revision, " (id ", *watch, ")"));
  Drain(node);
  return absl::OkStatus();
}

void Simulation::CheckHashes() {
  std::vector<AnswerCheckers::LiveStore> live;
  for (auto& [id, node] : nodes_) {
    if (node->up) live.push_back(AnswerCheckers::LiveStore{id, node->server(), &node->backend});
  }
  answer_checkers_.CheckHashes(live);
}

// --------------------------------------------------------------------------------------------
// Events

void Simulation::HashEvent(const Event& event) {
  // Every processed event feeds the trace hash, cheaply; a recorded trace adds readable lines.
  // A word-at-a-time mix (splitmix64's finalizer): byte-wise FNV here cost 9% of a fuzz run.
  // Fields go in pairs, the second multiplied by an odd constant first (so the pair's fold is
  // one-to-one in it): half the mixes of one per field. A delivery adds its message's fields.
  auto mix = [this](uint64_t a, uint64_t b) {
    trace_hash_ = raft::SplitMix64::Mix(trace_hash_ ^ (a + 0x9E3779B97F4A7C15ull) ^
                                        (b * 0xD6E8FEB86659FD93ull));
  };
  mix(static_cast<uint64_t>(event.time_ms), static_cast<uint64_t>(event.kind));
  mix(event.node, event.client);
  if (event.kind != Event::Kind::kDeliver) return;
  const raft::Message& m = event.message;
  mix((static_cast<uint64_t>(m.type) << 56) ^ (m.from << 28) ^ m.to, m.term ^ (m.log_term << 32));
  mix(m.index ^ (m.commit << 32) ^ (m.reject ? 1ull << 63 : 0),
      m.entries.size() ^ (m.reject_hint << 16));
}

void Simulation::Process(Event& event) {
  ++events_processed_;
  HashEvent(event);
  Node* node = FindNode(event.node);
  switch (event.kind) {
    case Event::Kind::kTick:
      if (node == nullptr || !node->up || node->incarnation != event.incarnation) return;
      if (node->paused_until_ms <= now_ms_) {
        if (node->clock_stopped_until_ms > now_ms_) {
          ++node->missed_ticks;  // its clock stands still: the tick comes later, in a burst
        } else {
          if (node->missed_ticks > 0) {
            Trace(absl::StrCat("n", node->id, " clock runs again: ", node->missed_ticks,
                               " missed ticks at once"));
          }
          for (uint64_t burst = node->missed_ticks + 1; burst > 0 && node->up; --burst) {
            node->member->Tick();  // the member library's tick: the core's, and its publishing
            // Watchers ask for progress now and then (etcd clients do; #20221 hid there).
            if (++node->ticks % 16 == 0) node->server()->RequestWatchProgress();
            Drain(*node);
          }
          node->missed_ticks = 0;
        }
      }
      if (!node->up) return;
      if (availability_.enabled()) ObserveAvailability();
      ScheduleTick(*node);
      return;
    case Event::Kind::kDeliver:
      if (node == nullptr || !node->up) return;
      if (node->paused_until_ms > now_ms_) {
        // A stopped process: its kernel keeps what arrives (buffering pause), or it is lost.
        if (node->pause_buffers) node->held.push_back(std::move(event.message));
        return;
      }
      if (options_.record_trace) Trace(absl::StrCat("deliver ", DescribeMessage(event.message)));
      NoteLeaderMessage(*node, event.message);
      StepDelivered(*node, std::move(event.message));
      return;
    case Event::Kind::kFsync:
      if (node == nullptr || !node->up || node->incarnation != event.incarnation) return;
      if (node->paused_until_ms > now_ms_) {
        // A stopped process finishes its fsync when it runs again.
        auto retry = NewEvent();
        retry->kind = Event::Kind::kFsync;
        retry->node = node->id;
        retry->incarnation = node->incarnation;
        Schedule(node->paused_until_ms, std::move(retry));
        return;
      }
      Fsync(*node);
      return;
    case Event::Kind::kClientNext:
      if (workload_running_) ClientInvoke(*clients_[event.client]);
      return;
    case Event::Kind::kClientTimeout:
      ClientTimeout(*clients_[event.client], event.attempt);
      return;
    case Event::Kind::kResume:
      if (node != nullptr && node->up && node->paused_until_ms <= now_ms_) {
        std::vector<raft::Message> held;
        held.swap(node->held);
        Trace(absl::StrCat("resume n", node->id,
                           held.empty() ? "" : absl::StrCat(": ", held.size(), " held messages")));
        for (raft::Message& message : held) {
          if (!node->up) break;
          NoteLeaderMessage(*node, message);
          StepDelivered(*node, std::move(message));
        }
        if (node->up) Drain(*node);
      }
      return;
    case Event::Kind::kWatchRead:
      if (node == nullptr || !node->up || node->incarnation != event.incarnation) return;
      Trace(absl::StrCat("n", node->id, " watch reader reads again"));
      (void)node->server()->SetWatchReading(node->watches.watch_id, true);
      Drain(*node);
      return;
    case Event::Kind::kOperator:
      OperatorStep(event.attempt);
      return;
    case Event::Kind::kRemovedNotice:
      if (node == nullptr || !node->up) return;
      ++removal_notices_;
      node->member->StopRemoved(
          Error(ErrorCode::kMemberRemoved,
                absl::StrCat("a peer refused its messages: the member has been permanently removed "
                             "from the cluster")));
      AfterMemberCall(*node);
      return;
    case Event::Kind::kDrain:
      if (node == nullptr || node->incarnation != event.incarnation) return;
      node->drain_scheduled = false;
      // A paused process drains when it resumes.
      if (node->up && node->paused_until_ms <= now_ms_) Drain(*node);
      return;
  }
}

void Simulation::DrainSoon(Node& node) {
  if (!options_.drain_per_instant) return Drain(node);
  if (!node.up || node.drain_scheduled) return;
  node.drain_scheduled = true;
  auto event = NewEvent();
  event->kind = Event::Kind::kDrain;
  event->node = node.id;
  event->incarnation = node.incarnation;
  // Behind every event already queued for this instant: the queue orders by time, then by the
  // order of scheduling.
  Schedule(now_ms_, std::move(event));
}

void Simulation::StepDelivered(Node& node, raft::Message message) {
  const NodeId from = message.from;
  // The sender's stream told its peer URL before this message is stepped (net/peer_service.h).
  node.learned_routes.insert(from);
  const absl::Status stepped = node.server()->Step(std::move(message));
  if (CodeOf(stepped) == ErrorCode::kMemberRemoved && !LinkBlocked(node.id, from) &&
      FindNode(from) != nullptr) {
    // The receiver answers a removed member's message with a refusal it sees, as etcd's
    // rafthttp answers 410 Gone: it comes back over the link after the shortest delay.
    auto notice = NewEvent();
    notice->kind = Event::Kind::kRemovedNotice;
    notice->node = from;
    Schedule(now_ms_ + options_.network.min_delay_ms, std::move(notice));
  }
  DrainSoon(node);
}

void Simulation::RunFor(int64_t ms) {
  const int64_t end = now_ms_ + ms;
  RunUntil([] { return false; }, ms);
  now_ms_ = std::max(now_ms_, end);
}

bool Simulation::RunUntil(const std::function<bool()>& done, int64_t max_ms) {
  const int64_t end = now_ms_ + max_ms;
  if (done()) return true;
  int64_t next_ms = 0;
  while (!queue_.empty() && (next_ms = queue_.NextTime()) <= end) {
    if (events_processed_ >= options_.max_events) {
      if (!event_budget_exhausted_) {
        event_budget_exhausted_ = true;
        Violation(absl::StrCat("event budget of ", options_.max_events,
                               " exhausted: livelock or message storm"));
      }
      queue_.Clear();
      break;
    }
    std::unique_ptr<Event> event = queue_.PopAt(next_ms);
    now_ms_ = event->time_ms;
    Process(*event);
    RecycleEvent(std::move(event));
    if (!joiners_due_.empty()) StartDueJoiners();
    if (done()) return true;
  }
  now_ms_ = std::max(now_ms_, end);
  return done();
}

// --------------------------------------------------------------------------------------------
// Faults

void Simulation::Partition(const std::vector<std::vector<NodeId>>& groups) {
  blocked_.clear();
  std::map<NodeId, size_t> group_of;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (NodeId id : groups[g]) group_of[id] = g + 1;
  }
  for (const auto& [a, na] : nodes_) {
    for (const auto& [b, nb] : nodes_) {
      if (a == b) continue;
      const size_t ga = group_of.count(a) ? group_of[a] : 0;
      const size_t gb = group_of.count(b) ? group_of[b] : 0;
      if (ga == 0 || ga != gb) blocked_.insert({a, b});
    }
  }
  std::vector<std::string> parts;
  for (const auto& group : groups) parts.push_back(absl::StrJoin(group, ","));
  Trace(absl::StrCat("partition ", absl::StrJoin(parts, " | ")));
}

void Simulation::BlockLink(NodeId from, NodeId to) {
  blocked_.insert({from, to});
  Trace(absl::StrCat("block ", from, "->", to));
}

void Simulation::SetLinkDelay(NodeId from, NodeId to, int64_t min_ms, int64_t max_ms) {
  link_delays_[{from, to}] = {min_ms, std::max(min_ms, max_ms)};
  Trace(absl::StrCat("delay ", from, "->", to, " ", min_ms, "..", max_ms, "ms"));
}

void Simulation::Heal() {
  blocked_.clear();
  link_delays_.clear();
  clogged_until_.clear();
  Trace("heal");
}

void Simulation::Isolate(NodeId id) {
  for (const auto& [other, node] : nodes_) {
    if (other == id) continue;
    blocked_.insert({id, other});
    blocked_.insert({other, id});
  }
  Trace(absl::StrCat("isolate n", id));
}

void Simulation::Crash(NodeId id) {
  Node& node = *nodes_.at(id);
  if (!node.up) {
    if (!node.killed) return;  // the disk holds only synced data already
    node.killed = false;
    node.fs.Crash();
    Trace(absl::StrCat("power loss at n", id, ", down since a kill: its unsynced writes are lost"));
    return;
  }
  GoDown(node, /*power_loss=*/true);
  Trace(absl::StrCat("crash n", id));
}

void Simulation::Kill(NodeId id) {
  Node& node = *nodes_.at(id);
  if (!node.up) return;
  const bool unsynced = WalHasUnsynced(node);
  GoDown(node, /*power_loss=*/false);
  Trace(absl::StrCat("kill n", id,
                     unsynced ? " (the page cache keeps WAL writes not yet synced)"
                              : " (every WAL write was synced)"));
}

void Simulation::GoDown(Node& node, bool power_loss) {
  const NodeId id = node.id;
  availability_.NodeDown(id);
  node.up = false;
  node.durable_when_down = node.member->wal().durable();
  node.crashed_once = true;
  node.sync = nullptr;
  node.held.clear();  // what the kernel held for the process is gone with it
  node.member.reset();
  // Power loss: the disk keeps what was synced and a seeded part of the rest (torn, perhaps).
  if (power_loss) node.fs.Crash();
  node.killed = !power_loss;
  // An injected EIO belongs to the process it was aimed at.
  node.fs.ClearArmedFailures();
  // The MVCC backend keeps its durable batches (committed ones, as LMDB's are once written).
  node.backend.Crash();
  std::map<server::RequestId, size_t> waiting;
  waiting.swap(node.waiting);
  for (const auto& [request, client] : waiting) {
    if (client == kCallSlot) continue;
    Client& c = *clients_[client];
    if (c.busy && c.request == request && c.node == id) ClientTimeout(c, c.attempt);
  }
}

void Simulation::Restart(NodeId id) {
  Node& node = *nodes_.at(id);
  if (node.up) return;
  // The WAL verifies every record: a torn tail (never acknowledged) is cut, corruption anywhere
  // else refuses the start (refused_to_start) rather than serving wrong data.
  StartNode(id, {});
}

void Simulation::TearNextCrash(NodeId id) {
  nodes_.at(id)->fs.TearOnNextCrash(std::string(kWalDir));
}

bool Simulation::WalHasUnsynced(const Node& node) {
  for (const std::string& path : node.member->wal().SegmentPaths()) {
    if (node.fs.HasUnsynced(path)) return true;
  }
  return false;
}

bool Simulation::RunUntilWriteInFlight(NodeId id, int64_t max_ms) {
  Node& node = *nodes_.at(id);
  return RunUntil([&] { return node.up && node.sync != nullptr && WalHasUnsynced(node); }, max_ms);
}

bool Simulation::CrashMidWrite(NodeId id, int64_t max_ms) {
  if (!RunUntilWriteInFlight(id, max_ms)) return false;
  TearNextCrash(id);
  Trace(absl::StrCat("n", id, " crashes with a log write in flight"));
  Crash(id);
  return true;
}

bool Simulation::KillMidWrite(NodeId id, int64_t max_ms) {
  if (!RunUntilWriteInFlight(id, max_ms)) return false;
  Kill(id);
  return true;
}

bool Simulation::CorruptRecord(NodeId id, bool oldest_segment) {
  Node& node = *nodes_.at(id);
  auto records =
      store::ScanWal(&node.fs, std::string(kWalDir), store::WalOptions{options_.wal_segment_bytes});
  if (!records.ok()) return false;
  // Latent corruption rots what the disk holds: only records already durable. ScanWal reads the
  // current view, whose tail may not be synced yet; a crash may lose that tail, and a rotten record
  // that then ends the newest segment is, to recovery, a torn tail (never acknowledged) that it
  // cuts, losing an entry the node acknowledged as durable (fuzz seed 131418, 5 nodes).
  std::vector<store::WalRecordLocation> durable;
  std::string path;
  bool all_synced = false;
  std::optional<std::string> durable_bytes;  // of `path`, when some of it is not synced
  std::unique_ptr<store::File> file;         // `path` as reads see it now
  for (const store::WalRecordLocation& record : *records) {
    if (record.path != path) {
      path = record.path;
      all_synced = !node.fs.HasUnsynced(path);
      durable_bytes.reset();
      file.reset();
      if (!all_synced) {
        durable_bytes = node.fs.DurableContent(path);  // none: its name is not durable yet
        if (durable_bytes.has_value()) {
          auto opened = node.fs.Open(path, store::OpenMode::kRead);
          if (!opened.ok()) return false;
          file = std::move(*opened);
        }
      }
    }
    if (!all_synced) {
      if (file == nullptr || durable_bytes->size() < record.offset + record.bytes) continue;
      std::string bytes;
      if (!file->ReadAt(record.offset, record.bytes, &bytes).ok()) return false;
      if (durable_bytes->compare(record.offset, record.bytes, bytes) != 0) continue;
    }
    durable.push_back(record);
  }
  const std::optional<store::CorruptionSpot> spot =
      store::PickCorruptionSpot(durable, oldest_segment);
  if (!spot.has_value()) return false;
  const store::WalRecordLocation& victim = *spot->record;
  if (!node.fs.FlipBit(victim.path, spot->offset, 3).ok()) return false;
  node.corruption_injected = true;
  Trace(absl::StrCat("n", id, " corrupt record in ", victim.path, " at offset ", victim.offset));
  return true;
}

void Simulation::Pause(NodeId id, int64_t ms, bool buffer) {
  availability_.NodeDown(id);
  if (nodes_.count(id) == 0) return;  // a role nobody holds now (no leader): nothing to pause
  Node& node = *nodes_.at(id);
  node.paused_until_ms = now_ms_ + ms;
  node.pause_buffers = buffer;
  if (!buffer) node.held.clear();
  auto event = NewEvent();
  event->kind = Event::Kind::kResume;
  event->node = id;
  Schedule(node.paused_until_ms, std::move(event));
  Trace(absl::StrCat("pause n", id, " for ", ms, "ms", buffer ? " (buffering)" : ""));
}

void Simulation::Clog(NodeId from, NodeId to, int64_t ms) {
  if (nodes_.count(from) == 0 || nodes_.count(to) == 0) return;
  int64_t& until = clogged_until_[{from, to}];
  until = std::max(until, now_ms_ + ms);
  Trace(absl::StrCat("clog ", from, "->", to, " for ", ms, "ms"));
}

void Simulation::StopClock(NodeId id, int64_t ms) {
  if (nodes_.count(id) == 0) return;
  availability_.NodeDown(id);
  Node& node = *nodes_.at(id);
  node.clock_stopped_until_ms = std::max(node.clock_stopped_until_ms, now_ms_ + ms);
  Trace(absl::StrCat("n", id, " clock stops for ", ms, "ms"));
}

void Simulation::SetDiskLatency(NodeId id, int64_t min_ms, int64_t max_ms) {
  if (nodes_.count(id) == 0) return;
  Node& node = *nodes_.at(id);
  node.disk_min_ms = std::max<int64_t>(0, min_ms);
  node.disk_max_ms = std::max(node.disk_min_ms, max_ms);
  Trace(
      absl::StrCat("n", id, " slow disk: fsync +", node.disk_min_ms, "..", node.disk_max_ms, "ms"));
}

void Simulation::SlowWatchReader(NodeId id, int64_t ms) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second->up || it->second->watches.watch_id == 0) return;
  Node& node = *it->second;
  if (!node.server()->SetWatchReading(node.watches.watch_id, false).ok()) return;
  ++slow_watch_readers_;
  Trace(absl::StrCat("n", id, " watch reader stops reading for ", ms, "ms"));
  auto event = NewEvent();
  event->kind = Event::Kind::kWatchRead;
  event->node = id;
  event->incarnation = node.incarnation;
  Schedule(now_ms_ + ms, std::move(event));
}

void Simulation::SetTickRate(NodeId id, double rate) {
  nodes_.at(id)->tick_rate = rate;
  Trace(absl::StrCat("tick rate n", id, " x", rate));
}

// --------------------------------------------------------------------------------------------
// Clients

void Simulation::StartWorkload() {
  workload_running_ = true;
  for (auto& client : clients_) {
    if (!client->busy) ClientNext(*client);
  }
}

void Simulation::StopWorkload() { workload_running_ = false; }

void Simulation::PointClients(NodeId node) {
  if (nodes_.count(node) == 0) return;
  // Not the node of a request in flight: its answer would no longer be this client's.
  for (auto& client : clients_) client->point_to = node;
  Trace(absl::StrCat("clients -> n", node));
}

void Simulation::ClientAfter(Client& client, int64_t min_ms, int64_t max_ms) {
  auto event = NewEvent();
  event->kind = Event::Kind::kClientNext;
  event->client = client.index;
  const auto spread = static_cast<uint64_t>(max_ms - min_ms);
  Schedule(now_ms_ + min_ms + static_cast<int64_t>(rng_.Uniform(spread + 1)), std::move(event));
}

void Simulation::ClientNext(Client& client) {
  ClientAfter(client, 1, 1 + options_.client_think_max_ms);
}

void Simulation::ClientRetryElsewhere(Client& client) {
  client.node = static_cast<NodeId>(1 + rng_.Uniform(nodes_.size()));
  ClientAfter(client, options_.client_backoff_ms, 2 * options_.client_backoff_ms);
}

void Simulation::ClientInvoke(Client& client) {
  if (client.busy) return;
  if (client.point_to != raft::kNoNode) {
    client.node = client.point_to;
    client.point_to = raft::kNoNode;
  }
  Node* node = FindNode(client.node);
  if (node == nullptr || !node->up || node->paused_until_ms > now_ms_) {
    // Connection refused: no request reaches a server, so no operation is invoked (etcd's client
    // fails over to another endpoint); try another member after the backoff.
    ClientRetryElsewhere(client);
    return;
  }
  if (client.model) {
    ModelInvoke(client, *node);
    return;
  }
  const uint64_t roll = rng_.Uniform(1000);
  client.key = absl::StrCat("k", rng_.Uniform(static_cast<uint64_t>(options_.keys)));
  client.serializable = false;
  server::Request request;
  const double r = static_cast<double>(roll) / 1000.0;
  if (r < options_.read_fraction) {
    client.function = Function::kRead;
    client.value.clear();
    request.type = server::RequestType::kRange;
    request.range.key = client.key;
    // Some reads are serializable (served locally, possibly stale): not linearizable, so they
    // stay out of the history and are checked for phantoms instead.
    client.serializable = rng_.Uniform(100) < options_.serializable_read_percent;
    request.range.serializable = client.serializable;
  } else if (r < options_.read_fraction + options_.cas_fraction) {
    client.function = Function::kCas;
    // Compare against a value this client wrote before (or absent), set a fresh one.
    client.old_value =
        client.writes == 0
            ? Value()
            : Value(absl::StrCat("c", client.process, "-", rng_.Uniform(client.writes) + 1));
    client.value = absl::StrCat("c", client.process, "-", ++client.writes);
    request.type = server::RequestType::kTxn;
    mvcc::Compare compare;
    compare.key = client.key;
    if (!client.old_value.has_value()) {
      compare.target = mvcc::Compare::Target::kVersion;
      compare.number = 0;
    } else {
      compare.target = mvcc::Compare::Target::kValue;
      compare.value = *client.old_value;
    }
    request.txn.compare.push_back(compare);
    mvcc::RequestOp put;
    put.kind = mvcc::RequestOp::Kind::kPut;
    put.put.key = client.key;
    put.put.value = client.value;
    request.txn.success.push_back(put);
  } else if (r < options_.read_fraction + options_.cas_fraction + options_.delete_fraction) {
    client.function = Function::kDelete;
    client.value.clear();
    request.type = server::RequestType::kDeleteRange;
    request.delete_range.key = client.key;
  } else {
    client.function = Function::kWrite;
    client.value = absl::StrCat("c", client.process, "-", ++client.writes);
    request.type = server::RequestType::kPut;
    request.put.key = client.key;
    request.put.value = client.value;
  }
  if (client.function == Function::kWrite || client.function == Function::kCas) {
    answer_checkers_.NoteWritten(client.value);
  }
  if (!client.serializable) Record(client, EventType::kInvoke);
  client.busy = true;
  ++client.attempt;
  // A proposal to a leader handing over leadership must be refused (the availability checker).
  const bool in_transfer = availability_.enabled() && client.function != Function::kRead &&
                           node->server()->is_leader() &&
                           node->server()->lead_transferee() != raft::kNoNode;
  CopyForJudging(request, [&] { client.sent = request; });
  client.request = SubmitObserved(*node, std::move(request));
  if (in_transfer) proposals_in_transfer_.insert({node->id, client.request});
  if (options_.record_trace) {
    Trace(absl::StrCat("client p", client.process, " -> n", node->id, " ",
                       FunctionName(client.function), " ", client.key, " ", ValueText(client),
                       " (request ", client.request, ")"));
  }
  node->waiting[client.request] = client.index;
  auto timeout = NewEvent();
  timeout->kind = Event::Kind::kClientTimeout;
  timeout->client = client.index;
  timeout->attempt = client.attempt;
  Schedule(now_ms_ + options_.client_timeout_ms, std::move(timeout));
  DrainSoon(*node);
}

void Simulation::Record(const Client& client, EventType type, Value read) {
  sim::Event event;
  event.time_ticks = now_ms_;
  event.process = client.process;
  event.type = type;
  event.function = client.function;
  event.key = client.key;
  if (client.function == Function::kRead && type == EventType::kOk) event.value = std::move(read);
  if (client.function == Function::kWrite) event.value = client.value;
  if (client.function == Function::kCas) {
    event.value = client.old_value;
    event.new_value = client.value;
  }
  const absl::Status status = history_.Append(std::move(event));
  SIM_CHECK(status.ok()) << "the simulation recorded a malformed history event: "
                         << status.ToString();
}

std::string Simulation::ValueText(const Client& client) {
  if (client.function != Function::kCas) return client.value;
  return absl::StrCat(client.old_value.value_or("nil"), "->", client.value);
}

void Simulation::ClientComplete(Client& client, NodeId node, const server::Response& response) {
  // A late answer to an attempt the client gave up on (timed out, moved on) is not this one's.
  if (!client.busy || client.request != response.request_id || client.node != node) return;
  JudgeByModel(node, &client.sent, response);
  if (client.model) {
    ModelComplete(client, node, response);
    return;
  }
  EventType type = EventType::kOk;
  std::string read;  // a read's value ("": absent)
  const ErrorCode code = CodeOf(response.status);
  if (!response.status.ok()) {
    type = DefinitelyNotApplied(response.status) ? EventType::kFail : EventType::kInfo;
    // Look for a leader elsewhere. At once, without the backoff: clients that keep probing while
    // leadership moves are what expose stale reads (a leader serving reads locally is caught
    // 2.5 times as often as with a 25-50 ms backoff here).
    if (code == ErrorCode::kNoLeader || code == ErrorCode::kTimeout ||
        code == ErrorCode::kLeadershipChanged) {
      client.node = static_cast<NodeId>(1 + rng_.Uniform(nodes_.size()));
    }
  } else {
    switch (client.function) {
      case Function::kRead:
        if (!response.range.kvs.empty()) read = response.range.kvs.front().value;
        break;
      case Function::kWrite:
        CheckAcknowledgedWrite(node, client.key, client.value, response.header.revision);
        break;
      case Function::kCas:
        if (response.txn.succeeded) {
          CheckAcknowledgedWrite(node, client.key, client.value, response.header.revision);
        }
        // The compare failed: the value was not the expected one when the txn ran (refused, an
        // observation the checker uses; fail would say only that nothing changed).
        type = response.txn.succeeded ? EventType::kOk : EventType::kRefused;
        break;
      case Function::kDelete:
      case Function::kAppend:
        break;
    }
  }
  const bool read_ok = client.function == Function::kRead && type == EventType::kOk;
  if (client.serializable) {
    if (read_ok && !read.empty()) answer_checkers_.OnSerializableRead(node, client.key, read);
  } else {
    Record(client, type, read.empty() ? Value() : Value(read));
  }
  if (options_.record_trace) {
    Trace(absl::StrCat("client p", client.process, " <- ", EventTypeName(type), " ",
                       FunctionName(client.function), " ", client.key, " ",
                       read_ok ? read : ValueText(client), " (",
                       response.status.ok() ? "OK" : response.status.ToString(), ", revision ",
                       response.header.revision, ", member n", response.header.member_id, ")"));
  }
  client.busy = false;
  if (workload_running_) ClientNext(client);
}

void Simulation::ClientTimeout(Client& client, uint64_t attempt) {
  if (!client.busy || client.attempt != attempt) return;
  // Its effect, if it had one, is in the log the reference model replays.
  if (client.sent.type != server::RequestType::kRange) model_.NoteUnknownOutcome();
  // A read that timed out changed nothing: it failed, whatever happened to it.
  if (!client.serializable && !client.model) {
    Record(client, client.function == Function::kRead ? EventType::kFail : EventType::kInfo);
  }
  client.busy = false;
  if (auto it = nodes_.find(client.node); it != nodes_.end())
    it->second->waiting.erase(client.request);
  // A timed-out process is replaced by a fresh one, as in Jepsen: the old one may still act.
  client.process += static_cast<int>(clients_.size());
  client.node = static_cast<NodeId>(1 + rng_.Uniform(nodes_.size()));
  if (workload_running_) ClientNext(client);
}

void Simulation::JudgeByModel(NodeId node, const server::Request* request,
                              const server::Response& response) {
  if (auto diff = model_.Judge(node, request, response); diff.has_value()) {
    Violation(absl::StrCat("reference model: n", node, " answered ", *diff));
  }
}

void Simulation::ModelInvoke(Client& client, Node& node) {
  // Keys m0..m4, which only these clients write. Compare constants come from the model's
  // current state (a test driver may know it), so that compares hold about as often as not.
  constexpr uint64_t kKeys = 5;
  auto key = [&] { return absl::StrCat("m", rng_.Uniform(kKeys)); };
  auto value = [&] { return absl::StrCat("v", client.process, "-", ++client.writes); };
  auto lease = [&]() -> mvcc::LeaseId {
    if (client.leases.empty() || rng_.Uniform(2) == 0) return mvcc::kNoLease;
    return client.leases[rng_.Uniform(client.leases.size())];
  };
  auto past = [&](uint64_t back) {
    return std::max<mvcc::Revision>(
        1, client.seen_revision - static_cast<mvcc::Revision>(rng_.Uniform(back + 1)));
  };
  auto put_op = [&](const std::string& k) {
    mvcc::RequestOp op;
    op.kind = mvcc::RequestOp::Kind::kPut;
    op.put.key = k;
    op.put.value = value();
    op.put.lease = lease();
    op.put.prev_kv = rng_.Uniform(2) == 0;
    return op;
  };
  auto range_op = [&](bool prefix) {
    mvcc::RequestOp op;
    op.kind = mvcc::RequestOp::Kind::kRange;
    op.range.key = prefix ? "m" : key();
    if (prefix) op.range.range_end = "n";
    return op;
  };
  server::Request request;
  // On seeds with small request limits, now and then a request at a limit: over it (a put's
  // value past max_request_bytes, a txn of more than max_txn_ops compares), which must be
  // refused with the limit's code, or just within it, which must not be.
  const bool small_limits = options_.max_request_bytes < server::kDefaultMaxRequestBytes ||
                            options_.max_txn_ops < server::kDefaultMaxTxnOps;
  const uint64_t at_limit = small_limits && rng_.Uniform(25) == 0 ? 1 + rng_.Uniform(4) : 0;
  const uint64_t roll = at_limit > 0 ? 100 : rng_.Uniform(100);
  if (at_limit == 1 || at_limit == 2) {
    request.type = server::RequestType::kPut;
    request.put.key = key();
    // Well within: room for the entry's own fields; kept small beside a small quota, which
    // the live data must stay well below once compacted.
    uint64_t bytes = options_.max_request_bytes + 1 + rng_.Uniform(64);
    if (at_limit == 2) {
      bytes =
          std::min(options_.max_request_bytes - 256 - rng_.Uniform(256), options_.quota_bytes / 32);
    }
    request.put.value = std::string(bytes, static_cast<char>('a' + rng_.Uniform(26)));
  } else if (at_limit == 3 || at_limit == 4) {
    // A txn of compares (read-only: served, not proposed, but validated all the same).
    request.type = server::RequestType::kTxn;
    const size_t compares = options_.max_txn_ops + (at_limit == 3 ? 1 + rng_.Uniform(3) : 0);
    for (size_t i = 0; i < compares; ++i) {
      mvcc::Compare c;
      c.key = key();
      c.target = mvcc::Compare::Target::kVersion;
      c.result = mvcc::Compare::Result::kGreater;
      c.number = -1;
      request.txn.compare.push_back(std::move(c));
    }
    request.txn.success.push_back(range_op(true));
  } else if (roll < 22) {
    request.type = server::RequestType::kPut;
    request.put = put_op(key()).put;
    request.put.prev_kv = true;
    // Beside a small quota, half the puts are bulky (1/20 of the quota, within the request
    // limit): the backend passes the quota every few seconds, and compaction frees it.
    if (options_.quota_bytes < server::kDefaultQuotaBytes && rng_.Uniform(2) == 0) {
      const uint64_t bytes = std::min(options_.quota_bytes / 20, options_.max_request_bytes - 512);
      request.put.value.resize(std::max<uint64_t>(bytes, request.put.value.size()), '.');
    }
  } else if (roll < 55) {
    // A txn: 1-3 compares on any target, a success branch of puts on distinct keys then a read
    // of them all, a failure branch that deletes one key and puts another.
    request.type = server::RequestType::kTxn;
    const uint64_t compares = 1 + rng_.Uniform(3);
    for (uint64_t i = 0; i < compares; ++i) {
      mvcc::Compare c;
      c.key = key();
      c.target = static_cast<mvcc::Compare::Target>(rng_.Uniform(5));
      c.result = static_cast<mvcc::Compare::Result>(rng_.Uniform(4));
      const std::optional<mvcc::KeyValue> now = model_.Get(c.key, model_.revision());
      const mvcc::KeyValue kv = now.value_or(mvcc::KeyValue{});
      const int64_t nudge = static_cast<int64_t>(rng_.Uniform(3)) - 1;  // -1, 0, 1
      switch (c.target) {
        case mvcc::Compare::Target::kVersion:
          c.number = kv.version + nudge;
          break;
        case mvcc::Compare::Target::kCreate:
          c.number = kv.create_revision + nudge;
          break;
        case mvcc::Compare::Target::kMod:
          c.number = kv.mod_revision + nudge;
          break;
        case mvcc::Compare::Target::kLease:
          c.number = rng_.Uniform(2) == 0 ? kv.lease : lease();
          break;
        case mvcc::Compare::Target::kValue:
          c.value = rng_.Uniform(3) > 0 ? kv.value : absl::StrCat("v", rng_.Uniform(9));
          break;
      }
      request.txn.compare.push_back(std::move(c));
    }
    const uint64_t first = rng_.Uniform(kKeys);
    const uint64_t second = (first + 1 + rng_.Uniform(kKeys - 1)) % kKeys;
    request.txn.success.push_back(put_op(absl::StrCat("m", first)));
    if (rng_.Uniform(2) == 0) request.txn.success.push_back(put_op(absl::StrCat("m", second)));
    request.txn.success.push_back(range_op(true));
    mvcc::RequestOp del;
    del.kind = mvcc::RequestOp::Kind::kDeleteRange;
    del.delete_range.key = absl::StrCat("m", first);
    del.delete_range.prev_kv = true;
    request.txn.failure.push_back(std::move(del));
    if (rng_.Uniform(2) == 0) request.txn.failure.push_back(put_op(absl::StrCat("m", second)));
    request.txn.failure.push_back(range_op(false));
  } else if (roll < 62) {
    request.type = server::RequestType::kDeleteRange;
    request.delete_range.key = key();
    if (rng_.Uniform(3) == 0) {
      request.delete_range.key = "m";
      request.delete_range.range_end = "n";
    }
    request.delete_range.prev_kv = rng_.Uniform(2) == 0;
  } else if (roll < 82) {
    // A range, often at a past revision (some below the compaction).
    request.type = server::RequestType::kRange;
    request.range = range_op(rng_.Uniform(2) == 0).range;
    if (rng_.Uniform(3) > 0) request.range.revision = past(40);
    if (rng_.Uniform(4) == 0) request.range.limit = 2;
    request.range.serializable = rng_.Uniform(4) == 0;
  } else if (roll < 89) {
    request.type = server::RequestType::kLeaseGrant;
    request.ttl_seconds = 1 + static_cast<int64_t>(rng_.Uniform(3));
  } else if (roll < 95) {
    request.type = server::RequestType::kLeaseRevoke;
    request.lease_id = lease();
    if (request.lease_id == mvcc::kNoLease) request.lease_id = 1 + rng_.Uniform(1 << 20);
  } else if (roll < 100) {
    request.type = server::RequestType::kCompact;
    request.revision = past(60);
  }
  client.busy = true;
  ++client.attempt;
  // A proposal: not a read (a range, or the read-only txn of compares at the ops limit).
  const bool in_transfer = availability_.enabled() && request.type != server::RequestType::kRange &&
                           at_limit < 3 && node.server()->is_leader() &&
                           node.server()->lead_transferee() != raft::kNoNode;
  CopyForJudging(request, [&] { client.sent = request; });
  client.request = SubmitObserved(node, std::move(request));
  if (in_transfer) proposals_in_transfer_.insert({node.id, client.request});
  if (options_.record_trace) {
    Trace(absl::StrCat("client p", client.process, " -> n", node.id, " model ",
                       ModelOpName(client.sent.type), " (request ", client.request, ")"));
  }
  node.waiting[client.request] = client.index;
  auto timeout = NewEvent();
  timeout->kind = Event::Kind::kClientTimeout;
  timeout->client = client.index;
  timeout->attempt = client.attempt;
  Schedule(now_ms_ + options_.client_timeout_ms, std::move(timeout));
  DrainSoon(node);
}

void Simulation::ModelComplete(Client& client, NodeId node, const server::Response& response) {
  const ErrorCode code = CodeOf(response.status);
  if (response.status.ok()) {
    client.seen_revision = std::max(client.seen_revision, response.header.revision);
    if (client.sent.type == server::RequestType::kLeaseGrant) {
      if (client.leases.size() >= 4) client.leases.erase(client.leases.begin());
      client.leases.push_back(response.lease.id);
    }
  }
  if (client.sent.type == server::RequestType::kLeaseRevoke &&
      (response.status.ok() || code == ErrorCode::kLeaseNotFound)) {
    client.leases.erase(
        std::remove(client.leases.begin(), client.leases.end(), client.sent.lease_id),
        client.leases.end());
  }
  if (code == ErrorCode::kNoLeader || code == ErrorCode::kTimeout ||
      code == ErrorCode::kLeadershipChanged) {
    client.node = static_cast<NodeId>(1 + rng_.Uniform(nodes_.size()));
  }
  if (options_.record_trace) {
    Trace(absl::StrCat("client p", client.process, " <- model ", ModelOpName(client.sent.type),
                       " (", response.status.ok() ? "OK" : response.status.ToString(),
                       ", revision ", response.header.revision, ", member n", node, ")"));
  }
  client.busy = false;
  if (workload_running_) ClientNext(client);
}

void Simulation::NoteNoSpace() {
  if (!options_.nospace_operator || operator_busy_) return;
  operator_busy_ = true;
  ++operator_runs_;
  auto event = NewEvent();
  event->kind = Event::Kind::kOperator;
  event->attempt = 1;
  Schedule(now_ms_ + 100 + static_cast<int64_t>(rng_.Uniform(200)), std::move(event));
}

void Simulation::OperatorStep(uint64_t phase) {
  auto next = [&](uint64_t next_phase, int64_t min_ms, int64_t spread_ms) {
    auto event = NewEvent();
    event->kind = Event::Kind::kOperator;
    event->attempt = next_phase;
    Schedule(now_ms_ + min_ms + static_cast<int64_t>(rng_.Uniform(spread_ms)), std::move(event));
  };
  auto reachable = [&](NodeId id) -> Node* {
    auto it = nodes_.find(id);
    if (it == nodes_.end() || !it->second->up || it->second->paused_until_ms > now_ms_) {
      return nullptr;
    }
    return it->second.get();
  };
  Node* leader = reachable(Leader());
  if (phase != 2 && leader == nullptr) {
    next(phase, 100, 100);  // etcdctl finds no leader: the operator tries again
    return;
  }
  server::Request request;
  switch (phase) {
    case 1: {  // etcdctl compact $(current revision)
      request.type = server::RequestType::kCompact;
      request.revision = leader->server()->store().current_revision();
      Trace(absl::StrCat("operator: NOSPACE, compact at revision ", request.revision, " on n",
                         leader->id));
      (void)SubmitObserved(*leader, std::move(request));
      Drain(*leader);
      next(2, 200, 200);
      return;
    }
    case 2: {  // etcdctl defrag, member by member
      for (NodeId id : node_ids()) {
        Node* node = reachable(id);
        if (node == nullptr) continue;
        request.type = server::RequestType::kDefragment;
        const uint64_t before = node->backend.SizeBytes();
        (void)SubmitObserved(*node, server::Request(request));
        Drain(*node);
        Trace(absl::StrCat("operator: defragment n", id, ": ", before, " -> ",
                           node->backend.SizeBytes(), " bytes"));
      }
      next(3, 20, 30);
      return;
    }
    default: {  // etcdctl alarm disarm
      request.type = server::RequestType::kAlarmDisarm;
      Trace(absl::StrCat("operator: disarm the NOSPACE alarm on n", leader->id));
      (void)SubmitObserved(*leader, std::move(request));
      Drain(*leader);
      operator_busy_ = false;
      return;
    }
  }
}

// --------------------------------------------------------------------------------------------
// Requests and observation

std::optional<NodeId> Simulation::NoteMoveLeader(const server::Request& request) {
  if (request.type != server::RequestType::kMoveLeader) return std::nullopt;
  availability_.TransferRequested(now_ms_, request.member.id, options_.network.loss <= 0);
  return request.member.id;
}

std::optional<server::Response> Simulation::Call(NodeId id, server::Request request,
                                                 int64_t timeout_ms) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second->up) return std::nullopt;
  Node& node = *it->second;
  const std::optional<NodeId> transferee = NoteMoveLeader(request);
  const bool read =
      request.type == server::RequestType::kRange || request.type == server::RequestType::kTxn;
  std::optional<server::Request> sent;
  if (read) CopyForJudging(request, [&] { sent = request; });
  const server::RequestId request_id = SubmitObserved(node, std::move(request));
  if (transferee.has_value()) moves_asked_[{id, request_id}] = *transferee;
  if (sent.has_value()) call_requests_[{id, request_id}] = std::move(*sent);
  node.waiting[request_id] = kCallSlot;
  Drain(node);
  RunUntil([&] { return call_results_.count({id, request_id}) > 0 || !node.up; }, timeout_ms);
  node.waiting.erase(request_id);
  call_requests_.erase({id, request_id});
  return TakeResponse(id, request_id);
}

server::RequestId Simulation::Submit(NodeId id, server::Request request) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || !it->second->up) return 0;
  Node& node = *it->second;
  const std::optional<NodeId> transferee = NoteMoveLeader(request);
  std::optional<server::Request> sent;
  if (request.type == server::RequestType::kRange || request.type == server::RequestType::kTxn) {
    CopyForJudging(request, [&] { sent = request; });
  }
  const server::RequestId request_id = SubmitObserved(node, std::move(request));
  if (transferee.has_value()) moves_asked_[{id, request_id}] = *transferee;
  if (sent.has_value()) call_requests_[{id, request_id}] = std::move(*sent);
  node.waiting[request_id] = kCallSlot;
  DrainSoon(node);
  return request_id;
}

std::optional<server::Response> Simulation::TakeResponse(NodeId id, server::RequestId request_id) {
  auto result = call_results_.find({id, request_id});
  if (result == call_results_.end()) return std::nullopt;
  server::Response response = std::move(result->second);
  call_results_.erase(result);
  return response;
}

void Simulation::NoteLeaderMessage(Node& node, const raft::Message& message) {
  if (message.type == raft::MessageType::kApp || message.type == raft::MessageType::kHeartbeat ||
      message.type == raft::MessageType::kSnap) {
    node.heard_leader = message.from;
    node.heard_term = message.term;
    node.heard_ms = now_ms_;
  }
}

void Simulation::ObserveAvailability() {
  // Once per tick period is enough: terms and leaders change on message deliveries, and the
  // checker compares what it sees now with what it saw last.
  static constexpr int64_t kNever = -1;
  if (last_availability_ms_ != kNever && now_ms_ < last_availability_ms_ + options_.tick_ms) {
    return;
  }
  last_availability_ms_ = now_ms_;
  AvailabilityChecker::View view;
  view.now_ms = now_ms_;
  view.leader = Leader();
  const NetworkOptions& net = options_.network;
  // Heartbeats must arrive well within an election timeout, and rarely be lost.
  bool calm = blocked_.empty() && link_delays_.empty() && clogged_until_.empty() &&
              net.loss <= 0.01 &&
              2 * (options_.heartbeat_tick * options_.tick_ms + 2 * net.max_delay_ms) <=
                  options_.election_tick * options_.tick_ms;
  // The members: the leader's configuration, else that of the live node of the highest term.
  NodeId judge = view.leader;
  raft::Term judge_term = 0;
  for (const auto& [id, node] : nodes_) {
    if (!node->up) continue;
    const raft::Term term = node->server()->hard_state().term;
    view.highest_term = std::max(view.highest_term, term);
    if (view.leader == raft::kNoNode && (judge == raft::kNoNode || term > judge_term)) {
      judge = id;
      judge_term = term;
    }
  }
  if (judge == raft::kNoNode) {  // every node is down
    view.calm = false;
    availability_.Observe(view);
    return;
  }
  const raft::ConfState conf = FindNode(judge)->server()->RaftConfState();
  if (view.leader != raft::kNoNode) {
    view.leader_term = FindNode(view.leader)->server()->hard_state().term;
  }
  const auto members = {&conf.voters, &conf.voters_outgoing, &conf.learners, &conf.learners_next};
  for (const std::vector<NodeId>* ids : members) {
    for (NodeId id : *ids) {
      const Node* node = FindNode(id);
      if (node == nullptr || !node->up || node->paused_until_ms > now_ms_ ||
          node->clock_stopped_until_ms > now_ms_ || node->tick_rate != 1.0 ||
          node->disk_max_ms > 0) {  // a slow disk is a fault: commits and transfers wait on it
        calm = false;
      }
    }
  }
  view.calm = calm;
  view.voters = conf.voters;
  if (view.leader != raft::kNoNode) {
    const auto is = [&](const std::vector<NodeId>& ids) {
      return std::find(ids.begin(), ids.end(), view.leader) != ids.end();
    };
    view.leader_transferee = FindNode(view.leader)->server()->lead_transferee();
    view.leader_is_voter =
        is(conf.voters) && (conf.voters_outgoing.empty() || is(conf.voters_outgoing));
    // A quorum of each half of its configuration follows it in its term, each within its
    // check-quorum lease: it took a message of the leader less than an election timeout ago, so
    // it grants no pre-vote (a follower out of lease grants them, and a campaign of the fault,
    // CI seed 117084090533394, wins with them). Judged in the member's own ticks, rounded so
    // that the checker never counts a member in lease that its Raft counts out.
    // With `margin_ms`, the lease must last that much longer.
    const int64_t election_ms = options_.election_tick * options_.tick_ms;
    const auto in_lease = [&](const Node& node, int64_t margin_ms) {
      const double elapsed_ms =
          static_cast<double>(now_ms_ - node.heard_ms) * std::max(1.0, node.tick_rate);
      return node.heard_leader == view.leader && node.heard_term == view.leader_term &&
             elapsed_ms + static_cast<double>(options_.tick_ms + margin_ms) <
                 static_cast<double>(election_ms);
    };
    const auto follows = [&](const std::vector<NodeId>& ids, int64_t margin_ms) {
      size_t following = 0;
      for (NodeId id : ids) {
        const Node* node = FindNode(id);
        if (node == nullptr || !node->up) continue;
        const server::Server& server = *node->server();
        if (id == view.leader) {
          ++following;
        } else if (server.hard_state().term == view.leader_term && in_lease(*node, margin_ms)) {
          const raft::SoftState soft = server.soft_state();
          if (soft.role == raft::Role::kFollower && soft.leader == view.leader) ++following;
        }
      }
      return ids.empty() || following > ids.size() / 2;
    };
    view.quorum_follows = follows(conf.voters, 0) && follows(conf.voters_outgoing, 0);
    // The leader's next heartbeat goes out within a heartbeat interval and lands within the
    // longest delay: a lease that ends sooner lapses first (fuzz seed 336482, 5 nodes).
    const int64_t heartbeat_ms = options_.heartbeat_tick * options_.tick_ms + net.max_delay_ms;
    view.quorum_lease_outlasts_heartbeat = view.quorum_follows &&
                                           follows(conf.voters, heartbeat_ms) &&
                                           follows(conf.voters_outgoing, heartbeat_ms);
  }
  // A voter campaigning (pre-candidate or candidate) may already hold the grants of members
  // whose lease the fault let expire.
  for (const std::vector<NodeId>* ids : {&conf.voters, &conf.voters_outgoing}) {
    for (NodeId id : *ids) {
      const Node* node = FindNode(id);
      if (node == nullptr || !node->up) continue;
      const raft::Role role = node->server()->soft_state().role;
      if (role == raft::Role::kPreCandidate || role == raft::Role::kCandidate) {
        view.campaigning = true;
      }
    }
  }
  availability_.Observe(view);
  for (std::string& violation : availability_.TakeViolations()) Violation(std::move(violation));
}

NodeId Simulation::Leader() const {
  NodeId leader = raft::kNoNode;
  raft::Term best = 0;
  for (const auto& [id, node] : nodes_) {
    if (!node->up || !node->server()->is_leader()) continue;
    const raft::Term term = node->server()->hard_state().term;
    if (term >= best) {
      best = term;
      leader = id;
    }
  }
  return leader;
}

std::vector<NodeId> Simulation::node_ids() const {
  std::vector<NodeId> ids;
  for (const auto& [id, node] : nodes_) ids.push_back(id);
  return ids;
}

std::optional<std::pair<raft::Term, NodeId>> Simulation::FirstVote(NodeId id) const {
  const RaftCheckers::NodeState* checks = raft_checkers_.Find(id);
  return checks == nullptr ? std::nullopt : checks->first_vote;
}

void Simulation::LiveNodeIds(std::vector<NodeId>* out) const {
  out->clear();
  for (const auto& [id, node] : nodes_) {
    if (node->up) out->push_back(id);
  }
}

bool Simulation::up(NodeId id) const {
  const Node* node = FindNode(id);
  return node != nullptr && node->up;
}

server::Server* Simulation::server(NodeId id) {
  const Node* node = FindNode(id);
  return node == nullptr || !node->up ? nullptr : node->server();
}

}  // namespace kvstore::sim
