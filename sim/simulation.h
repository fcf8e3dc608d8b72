#ifndef KVSTORE_SIM_SIMULATION_H_
#define KVSTORE_SIM_SIMULATION_H_

// A single-threaded discrete-event simulation of a cluster of server cores (core/server) under a
// hostile environment. One 64-bit seed fixes everything: node timeouts, message delays, losses,
// duplications, disk latencies and the client workload. Events are ordered by (virtual time,
// sequence number); only ordered containers and the seeded generator influence behaviour, so a
// run is reproducible bit for bit, and its trace hash says so.
//
// The world:
//   - nodes: the production member library (node/member.h) each, driving a server core over the
//     real WAL on a simulated disk (store/sim_file_system.h) whose writes become durable only when
//     a sync completes; a crash loses what was not synced (or tears it), and the in-memory MVCC
//     backend loses its batches not yet durable; a restart recovers the WAL (cutting a torn tail,
//     refusing corruption) and replays it past the backend's consistent index. Nodes can be
//     paused (stop-the-world) and tick at skewed rates.
//   - network: per-message delay in [min, max], loss, duplication (reordering follows from
//     delays); partitions as directed blocked links (symmetric, one-way, groups, bridges). A
//     node reaches only the ids kvnode's transport can route (Routable): its founding members,
//     its applied member list, and the ids it received a Raft message from since it started (a
//     route learned from that peer's stream), never a removed one; a message to any other id is
//     dropped, as kvnode's Router drops it.
//   - clients: processes issuing reads, writes, compare-and-sets and deletes on random keys,
//     recording a history (invoke / ok / fail / info) for the linearizability checker; on a
//     timeout or a crash the outcome is unknown (info) and the client moves to another node.
//     A member that is down refuses the connection: nothing is invoked, and the client tries
//     another member after a backoff (etcd's client fails over between endpoints).
//   - checkers run on every event: at most one leader per term, per-node invariants (term and
//     commit never decrease within an incarnation, commit <= last index, a leader voted for
//     itself, one vote per term, a leader's commit advances only onto entries of its term),
//     leader completeness (a new leader holds every applied entry), state machine safety (all
//     nodes apply the same entry at an index), exactly-once apply (also across crashes), votes and
//     acknowledgements durable before they leave, write provenance (an acknowledged write is in the
//     store at its revision), watch guarantees (every node's watcher sees consecutive revisions,
//     exactly the store's events) and KV hash agreement at equal revisions.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "core/mvcc/backend.h"
#include "core/raft/rand.h"
#include "core/raft/testing/cluster.h"
#include "core/server/server.h"
#include "node/member.h"
#include "sim/availability.h"
#include "sim/checkers.h"
#include "sim/history.h"
#include "sim/reference_model.h"
#include "store/sim_file_system.h"
#include "store/wal.h"

namespace kvstore::sim {

using raft::NodeId;

struct NetworkOptions {
  int64_t min_delay_ms = 1;
  int64_t max_delay_ms = 10;
  double loss = 0.0;       // probability a message is dropped
  double duplicate = 0.0;  // probability a message is delivered twice
};

struct SimOptions {
  uint64_t seed = 1;
  int voters = 3;
  int64_t tick_ms = 10;  // virtual ms per Raft tick (election timeout 10-20 ticks)
  int election_tick = 10;
  int heartbeat_tick = 3;
  NetworkOptions network;
  int64_t fsync_min_ms = 0;
  int64_t fsync_max_ms = 3;
  // Workload.
  int clients = 3;
  int keys = 4;
  int64_t client_timeout_ms = 600;
  int64_t client_think_max_ms = 20;
  // A client whose member refuses the connection (down or paused) waits this long plus up to as
  // much again, then tries another member (etcd's client fails over and retries after 25 ms).
  int64_t client_backoff_ms = 25;
  double read_fraction = 0.4;
  uint64_t serializable_read_percent = 20;  // of reads
  double cas_fraction = 0.2;
  double delete_fraction = 0.05;
  // Clients of the KV reference model's workload (sim/reference_model.h), beside the
  // linearizable ones: puts with prev_kv and leases, multi-key txns comparing every target,
  // deletes, ranges at past revisions, lease grants and revocations, compaction.
  int model_clients = 0;
  // A run that processes more events than this is stopped and reported (a livelock, such as a
  // message storm, must fail with a replay command rather than hang).
  uint64_t max_events = 20'000'000;
  // Keep a readable trace (one line per event) in memory, not just its hash.
  bool record_trace = false;
  // Small Raft snapshots so snapshot transfer is exercised.
  uint64_t snapshot_every_entries = 200;
  uint64_t snapshot_catch_up_entries = 50;
  // Small WAL segments, so segments roll over and compaction removes them.
  uint64_t wal_segment_bytes = 16 << 10;
  // Each member's backend makes its batches durable every 1..this many commits (seeded), as
  // etcd's batch transaction does; a crash takes the rest, which the WAL replays.
  uint64_t backend_commits_per_flush_max = 4;
  // Linearizable reads on the leader's lease (server::ServerConfig::lease_reads; off as in
  // etcd). Correct only within raft::kLeaseMaxTickRateRatio of tick-rate skew and without
  // pauses or stopped clocks: the fuzzer keeps its lease seeds inside that bound.
  bool lease_reads = false;
  // Raft flow control and apply batches (raft::Config), pre-vote and check-quorum, and the
  // watch hub's buffers (server::ServerConfig): the fuzzer draws them per seed (pb::Knobs).
  uint64_t max_inflight_msgs = raft::kDefaultMaxInflightMsgs;
  uint64_t max_size_per_msg_bytes = raft::kDefaultMaxSizePerMsgBytes;
  uint64_t max_committed_size_per_ready_bytes = server::kDefaultMaxCommittedSizePerReadyBytes;
  bool pre_vote = true;
  bool check_quorum = true;
  // Drain a member once per instant (DrainSoon), as kvnode's loop does once per turn, instead
  // of after each request and message (pb::Knobs::drain_per_instant).
  bool drain_per_instant = false;
  uint64_t watch_max_buffered_events = mvcc::kDefaultMaxBufferedEventsPerWatcher;
  uint64_t watch_catch_up_batch_events = mvcc::kDefaultCatchUpBatchEvents;
  // The server's quota and request limits (server::ServerConfig; etcd's defaults). The fuzzer
  // draws small ones on some seeds, so the NOSPACE alarm and the limits' refusals are reached.
  uint64_t quota_bytes = server::kDefaultQuotaBytes;
  uint64_t max_request_bytes = server::kDefaultMaxRequestBytes;
  size_t max_txn_ops = server::kDefaultMaxTxnOps;
  // After the first NOSPACE answer an operator runs etcd's runbook (NoteNoSpace). Off: a
  // scenario runs it in its own steps (pb::Options::no_nospace_operator).
  bool nospace_operator = true;
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& options);
  ~Simulation();

  int64_t now_ms() const { return now_ms_; }
  // Processes events until virtual time advances by `ms`.
  void RunFor(int64_t ms);
  // Runs until `done` holds (checked after every event) or `max_ms` pass; returns done().
  bool RunUntil(const std::function<bool()>& done, int64_t max_ms);

  // --- Faults ---
  // Only nodes in the same group can talk (nodes in no group talk to no one).
  void Partition(const std::vector<std::vector<NodeId>>& groups);
  void BlockLink(NodeId from, NodeId to);  // one way
  // Messages from `from` to `to` take [min_ms, max_ms] instead of the network's delay.
  void SetLinkDelay(NodeId from, NodeId to, int64_t min_ms, int64_t max_ms);
  // Removes every partition, blocked link and link delay.
  void Heal();
  void Isolate(NodeId id);
  void SetNetwork(const NetworkOptions& network) { options_.network = network; }
  // Power loss of the node's machine: a running process dies, and the disk keeps what was
  // synced and a seeded part of the rest (torn, perhaps). At a node that is down after a Kill,
  // the kernel's page cache goes now: what the killed process wrote and did not sync is lost.
  void Crash(NodeId id);
  // The process dies (SIGKILL, OOM killer) but the machine runs on: the kernel's page cache keeps
  // every write it took, synced or not, and a restart reads them. The MVCC backend loses the
  // batches not yet committed (process memory). A later Crash, before the restart, loses the
  // unsynced part; recovery must not have reported it durable in between.
  void Kill(NodeId id);
  void Restart(NodeId id);
  // Stops the node's process for `ms` (no ticks, no fsyncs, no deliveries). The messages sent to
  // it meanwhile are dropped, or with `buffer` (a SIGSTOPped process: the kernel keeps
  // receiving) held and delivered in order when it resumes.
  void Pause(NodeId id, int64_t ms, bool buffer = false);
  // FoundationDB's clogging: messages sent from `from` to `to` in the next `ms` are held back
  // and delivered after it (with the usual delay). Heal unclogs.
  void Clog(NodeId from, NodeId to, int64_t ms);
  // The node's clock stops for `ms` (its ticks do not come), then the ticks it missed arrive
  // at once.
  void StopClock(NodeId id, int64_t ms);
  // A slow disk: each WAL fsync of the node takes [min_ms, max_ms] more. HealDisk resets it.
  void SetDiskLatency(NodeId id, int64_t min_ms, int64_t max_ms);
  // The client of the node's checked all-keys watch stops reading for `ms` (the server buffers,
  // then lets the watch lag and catch up from history; server::Server::SetWatchReading).
  void SlowWatchReader(NodeId id, int64_t ms);
  // The five above do nothing for a node that does not exist (a role nobody holds now).
  // Slow-watcher outcomes seen by the standing watch checker: watches that stopped reading,
  // and those the server canceled because their revisions were compacted while they lagged.
  uint64_t slow_watch_readers() const { return slow_watch_readers_; }
  uint64_t watches_canceled_compacted() const { return watch_checkers_.canceled_compacted(); }
  // Disk faults. The next crash of `id` tears the write in flight (its last record reaches the
  // disk garbled); CorruptRecord garbles a durable record in the middle of the log (false if
  // the log is too short). Restart verifies records: a torn tail is dropped, a corrupt record
  // makes the node refuse to start (refused_to_start()).
  void TearNextCrash(NodeId id);
  // Runs until `id` has a log write with entries in flight, then crashes it tearing that write;
  // false if none came within `max_ms`.
  bool CrashMidWrite(NodeId id, int64_t max_ms);
  // The same, killing its process instead (Kill): the write stays whole in the page cache.
  bool KillMidWrite(NodeId id, int64_t max_ms);
  // With `oldest_segment`, the record is in the oldest WAL segment (false if there is one).
  bool CorruptRecord(NodeId id, bool oldest_segment = false);
  bool refused_to_start(NodeId id) const { return refused_.count(id) > 0; }
  // Storage failures: the member stops on them (node/member.h) and its node goes down until
  // restarted.
  void FailNextWalSync(NodeId id);
  void FailNextWalWrite(NodeId id);
  // Leaves a few KiB of room on the node's disk (ENOSPC beyond); FreeDisk lifts the limit.
  void FillDisk(NodeId id);
  void FreeDisk(NodeId id);
  // FreeDisk, and disarms injected errors that have not fired.
  void HealDisk(NodeId id);
  // Down because its member stopped on a storage failure (since its last start).
  bool stopped_on_storage_failure(NodeId id) const { return stopped_.count(id) > 0; }
  // Stopped because it was removed from the cluster (it applied its removal, or a peer refused
  // its messages as a removed member's), or refused to start for it: down for good, as etcd's
  // removed member (node/member.h).
  bool removed_and_stopped(NodeId id) const { return removed_.count(id) > 0; }
  uint64_t removal_notices() const { return removal_notices_; }
  void SetTickRate(NodeId id, double rate);  // 1.0 = nominal; 2.0 ticks twice as fast

  // --- Workload and requests ---
  void StartWorkload();
  void StopWorkload();
  // Every workload client sends its next request to `node`, as an application whose clients
  // were given that one endpoint (etcd #20418's reads on a resumed member); a busy one once its
  // request in flight ends. Each still moves on by itself when a request fails or times out.
  void PointClients(NodeId node);
  // Submits on `node` and runs until its response (or `timeout_ms`): nullopt on timeout or
  // when the node is down.
  std::optional<server::Response> Call(NodeId node, server::Request request,
                                       int64_t timeout_ms = 2000);
  // Submits on `node` without running the simulation: several requests may be outstanding at
  // once (the auth workload's concurrent clients). 0 when the node is down. TakeResponse gives
  // the response once it has come (nullopt until then, or forever if the node went down).
  server::RequestId Submit(NodeId node, server::Request request);
  std::optional<server::Response> TakeResponse(NodeId node, server::RequestId id);
  // How many answers to Submit() or Call() have arrived so far: TakeResponse finds nothing new
  // while this is unchanged since it last found nothing, so a poller can skip the look-up.
  uint64_t call_answers() const { return call_answers_; }
  // Opens a watch on `node` that the standing checker follows (start revision, order,
  // progress notifications). kUnavailable when the node is down.
  absl::Status AddWatch(NodeId node, const mvcc::WatchRequest& request);
  // Starts a process for a member the cluster added (it joins empty); nothing if it has one.
  // Members added with a "sim://" peer URL are also started once a configuration that names
  // them applies on any node (an operator starts the process after member add or replace, also
  // when the answer was lost); other URLs ("bad://") never get a process.
  void StartJoiner(NodeId id);

  // --- Observation ---
  NodeId Leader() const;  // a live node that believes it leads (the highest term), or kNoNode
  std::vector<NodeId> node_ids() const;
  // The ids of the nodes that are up, in node_ids() order, into *out (cleared first): for
  // workloads that pick a live member on every request without allocating.
  void LiveNodeIds(std::vector<NodeId>* out) const;
  // The first vote `id` ever recorded, as (term, candidate), in any incarnation; nullopt if it
  // never voted. Known while the node is down too.
  std::optional<std::pair<raft::Term, NodeId>> FirstVote(NodeId id) const;
  bool up(NodeId id) const;
  server::Server* server(NodeId id);  // nullptr when down
  // The linearizable clients' history (serializable reads stay out of it).
  const History& history() const { return history_; }
  History TakeHistory() { return std::move(history_); }  // at the end of a run
  // The first kMaxViolationsKept violations; a broken invariant often fires on every event
  // after it, and the first ones tell the story.
  const std::vector<std::string>& violations() const { return violations_; }
  uint64_t violations_not_kept() const { return violations_not_kept_; }
  static constexpr size_t kMaxViolationsKept = 100;
  // Joint configurations (Raft thesis §4.3) entered and left, counted per node that applies them.
  uint64_t joint_configs_entered() const { return raft_checkers_.joint_entered(); }
  uint64_t joint_configs_left() const { return raft_checkers_.joint_left(); }
  // Live nodes that the leader's configuration names and that are in a joint configuration.
  std::vector<NodeId> NodesInJointConfig() const;
  uint64_t trace_hash() const { return trace_hash_; }
  // The availability checker's figures (sim/availability.h): calm windows, elections per healed
  // fault, transfers judged.
  const AvailabilityFigures& availability() const { return availability_.figures(); }
  const std::vector<std::string>& trace() const { return trace_; }
  uint64_t events_processed() const { return events_processed_; }
  // Records a violation found by a caller (scenario expectations).
  void Violation(std::string what);
  // Compares every pair of live nodes' store hashes at the highest revision both have.
  void CheckHashes();
  // The reference model of etcd's KV semantics: it replays the committed log and judges every
  // KV answer and watch event (its counts say what it judged and what it could not).
  const ReferenceModel& reference_model() const { return model_; }
  // The server-rule checkers' counts: how often each rule was judged.
  const ServerRuleCheckers::Counts& server_rule_counts() const { return server_rules_.counts(); }
  // Runs of the operator's NOSPACE runbook (compact, defragment, disarm) the run started.
  uint64_t operator_runs() const { return operator_runs_; }

 private:
  struct Node;
  struct Client;
  struct Event;
  // What the checkers (sim/checkers.h) may ask of this world.
  class CheckerView : public CheckedWorld {
   public:
    explicit CheckerView(Simulation* sim) : sim_(sim) {}
    void Violation(std::string what) override { sim_->Violation(std::move(what)); }
    void Trace(const std::string& line) override { sim_->Trace(line); }
    const store::Wal::LogIndex* DurableLog(NodeId id) const override;

   private:
    Simulation* sim_;
  };
  // A heap entry keeps the event's order key beside the pointer: the heap compares without
  // touching the events themselves.
  struct Queued {
    int64_t time_ms;
    uint64_t seq;
    std::unique_ptr<Event> event;
  };
  // Orders the event heap so the earliest (time, sequence) comes out first.
  struct Later {
    bool operator()(const Queued& a, const Queued& b) const;
  };
  // The pending events, taken out in (time, sequence) order. Events due within kWheelMs of the
  // last one taken sit in a timing wheel of one-millisecond slots, each first in, first out;
  // later ones wait in a heap and move into the wheel as time nears them. A slot's order is
  // sequence order: an event scheduled for a time is always added after every earlier-scheduled
  // event for that time (the heap's move into the wheel happens before anything else can be
  // scheduled for the new window). Scheduling and taking cost a few steps instead of a heap
  // sift over every pending timeout, tick and message.
  class EventQueue {
   public:
    EventQueue();
    bool empty() const { return wheel_count_ == 0 && far_.empty(); }
    // The earliest pending time; requires !empty().
    int64_t NextTime();
    // The event's seq must exceed every earlier push's, its time be at least the last popped.
    void Push(std::unique_ptr<Event> event);
    std::unique_ptr<Event> Pop();  // the earliest; requires !empty()
    // Pop, given the NextTime() the caller just asked for (nothing pushed since).
    std::unique_ptr<Event> PopAt(int64_t time_ms);
    void Clear();

   private:
    static constexpr int64_t kWheelMs = 1024;  // a power of two
    struct Slot {
      std::vector<std::unique_ptr<Event>> events;
      size_t head = 0;  // events before it were taken
    };
    Slot& SlotOf(int64_t time_ms) { return wheel_[static_cast<size_t>(time_ms & (kWheelMs - 1))]; }

    std::vector<Slot> wheel_;
    size_t wheel_count_ = 0;
    int64_t floor_ms_ = 0;  // the last popped time: the wheel holds [floor, floor + kWheelMs)
    // The slots in [floor_ms_, scan_from_ms_) are empty: NextTime starts there (the list-append
    // clients run the simulation a millisecond at a time, and each run looked for the next
    // event from the last one taken).
    int64_t scan_from_ms_ = 0;
    std::vector<Queued> far_;  // a binary min-heap (Later) of times past the wheel
  };

  // Events are reused: a fuzz seed processes ~140k of them, and allocating and freeing each
  // one (with its message) was 4% of a run.
  std::unique_ptr<Event> NewEvent();
  void RecycleEvent(std::unique_ptr<Event> event);
  static constexpr size_t kMaxFreeEvents = 4096;
  void Schedule(int64_t at_ms, std::unique_ptr<Event> event);
  void Process(Event& event);
  void HashEvent(const Event& event);
  void Trace(const std::string& line);

  // Where each member keeps its WAL on its simulated disk.
  static constexpr absl::string_view kWalDir = "/member/wal";
  // Room FillDisk leaves: less than a WAL segment, so the next one cannot be allocated.
  static constexpr uint64_t kDiskFullRoomBytes = 4 << 10;
  std::unique_ptr<Node> NewNode(NodeId id);
  // Starts the member process of `id` from its disk (bootstrapping with `founding` when empty).
  void StartNode(NodeId id, std::vector<server::Member> founding);
  void ScheduleTick(Node& node);
  void StartDueJoiners();
  // Carries out the member's pending Readies, then checks it.
  void Drain(Node& node);
  // Drains now, or once the events of this instant have run (a kDrain event) when the options
  // say so (SimOptions::drain_per_instant), as kvnode's loop does.
  void DrainSoon(Node& node);
  // Steps a delivered message; a refusal of it as a removed member's goes back to its sender.
  void StepDelivered(Node& node, raft::Message message);
  // After any call into a member: a member that stopped on a storage failure goes down.
  void AfterMemberCall(Node& node);
  // The member's callbacks (node/member.h), as its Node forwards them: to the checkers.
  void OnReady(Node& node, const server::Ready& ready);
  void OnRecovered(Node& node, const raft::RestartState& state);
  void OnResponse(Node& node, const server::Response& response);
  // Submits `request` on the running `node`, telling the checkers what they observe of it.
  server::RequestId SubmitObserved(Node& node, server::Request&& request);
  // A move-leader request: tells the availability checker and returns its transferee.
  std::optional<NodeId> NoteMoveLeader(const server::Request& request);
  void StartSync(Node& node, store::Wal::SyncBatch* batch);
  void OnMemberStop(Node& node, const absl::Status& why);
  // The process of `node` dies (Crash, Kill); with `power_loss` the disk loses what was not
  // synced.
  void GoDown(Node& node, bool power_loss);
  // Whether a WAL segment of the running `node` holds data not yet synced.
  static bool WalHasUnsynced(const Node& node);
  // Runs until `id` has a log write in flight (its sync started, the data not yet synced).
  bool RunUntilWriteInFlight(NodeId id, int64_t max_ms);
  void SendMessage(const raft::Message& message);
  bool LinkBlocked(NodeId from, NodeId to) const;
  // Whether `from`'s transport has a route to `to`, as kvnode's Router does: a founding member
  // (its --initial-cluster), a member of its applied list, or an id it received a Raft message
  // from (a route learned from that peer's stream) that is not removed.
  bool Routable(NodeId from, NodeId to) const;
  void Fsync(Node& node);
  // After a call into a running member: its checkers' step, and the members its changed
  // configuration names.
  void CheckNode(Node& node);
  // Feeds the availability checker what it sees now (after a tick).
  void ObserveAvailability();
  // A leader's message delivered to `node`: its follower lease (ObserveAvailability).
  void NoteLeaderMessage(Node& node, const raft::Message& message);
  // Client proposals submitted to a leader during its leader transfer: (node, request id).
  std::set<std::pair<NodeId, server::RequestId>> proposals_in_transfer_;
  // Move-leader requests awaiting their answer: (member asked, request) -> transferee.
  std::map<std::pair<NodeId, server::RequestId>, NodeId> moves_asked_;
  int64_t last_availability_ms_ = -1;  // when ObserveAvailability last looked
  void CheckAcknowledgedWrite(NodeId id, const std::string& key, const std::string& value,
                              mvcc::Revision revision);

  // Schedules `client`'s next request in [min_ms, max_ms] from now.
  void ClientAfter(Client& client, int64_t min_ms, int64_t max_ms);
  void ClientNext(Client& client);  // after the think time
  // Moves `client` to a random member and schedules its next request after the backoff.
  void ClientRetryElsewhere(Client& client);
  void ClientInvoke(Client& client);
  // The reference model's workload: builds and submits `client`'s next request.
  void ModelInvoke(Client& client, Node& node);
  void ModelComplete(Client& client, NodeId node, const server::Response& response);
  // Judges an answer of `node` (to `request`, when known) with the reference model.
  void JudgeByModel(NodeId node, const server::Request* request, const server::Response& response);
  void ClientComplete(Client& client, NodeId node, const server::Response& response);
  // Appends `client`'s current operation to the history: its invocation or a completion (`read`:
  // what an ok read returned).
  void Record(const Client& client, EventType type, Value read = std::nullopt);
  // The operation's value as traces show it: the value written, or <old>-><new> for a cas.
  static std::string ValueText(const Client& client);
  void ClientTimeout(Client& client, uint64_t attempt);
  // The operator's NOSPACE runbook (etcd's documented recovery), started by a NOSPACE answer:
  // compact at the leader's revision, defragment every running member once the compaction
  // had time to apply, then disarm the alarm. One run at a time; `phase` 1-3.
  void NoteNoSpace();
  void OperatorStep(uint64_t phase);
  bool operator_busy_ = false;
  uint64_t operator_runs_ = 0;

  SimOptions options_;
  raft::SplitMix64 rng_;
  int64_t now_ms_ = 0;
  uint64_t next_seq_ = 0;
  EventQueue queue_;
  std::vector<std::unique_ptr<Event>> free_events_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  // nodes_ by id, for the lookups of every event, message and polling client (the map's
  // search was 1-2% of a seed): ids below node_index_'s size (founding members, ids 1..n) by
  // position, null for an id nodes_ lacks; the others (joiners get large random ids) in a short
  // list searched in order.
  static constexpr NodeId kIndexedIds = 64;
  std::vector<Node*> node_index_;
  std::vector<std::pair<NodeId, Node*>> other_nodes_;
  void AddNode(NodeId id);
  Node* FindNode(NodeId id) const;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  std::map<std::pair<NodeId, NodeId>, std::pair<int64_t, int64_t>> link_delays_;  // min, max ms
  std::map<std::pair<NodeId, NodeId>, int64_t> clogged_until_;  // link -> end of its clog (ms)
  uint64_t slow_watch_readers_ = 0;
  std::set<NodeId> refused_;      // nodes whose restart found a corrupt record
  std::set<NodeId> stopped_;      // nodes whose member stopped on a storage failure
  std::set<NodeId> removed_;      // nodes whose member stopped (or will not start): removed
  uint64_t removal_notices_ = 0;  // peers' refusals of a removed member's messages, delivered
  std::vector<std::unique_ptr<Client>> clients_;
  // Responses to Call(), by request id (kCallSlot marks them in Node::waiting).
  static constexpr size_t kCallSlot = SIZE_MAX;
  // Request ids are unique per member only: keyed by (member, request id).
  std::map<std::pair<NodeId, server::RequestId>, server::Response> call_results_;
  uint64_t call_answers_ = 0;  // insertions into call_results_
  // Reads submitted by Call() and Submit() (ranges, txns), for the reference model to judge
  // their answers; erased when answered.
  std::map<std::pair<NodeId, server::RequestId>, server::Request> call_requests_;
  bool workload_running_ = false;

  // Checker state.
  ReferenceModel model_;  // before raft_checkers_, which feeds it
  CheckerView checker_view_{this};
  RaftCheckers raft_checkers_;
  ServerRuleCheckers server_rules_{
      &checker_view_,
      ServerRuleCheckers::Limits{server::kDefaultMaxLearners, options_.max_request_bytes,
                                 options_.max_txn_ops, options_.quota_bytes}};
  AnswerCheckers answer_checkers_{&checker_view_};
  WatchCheckers watch_checkers_{&checker_view_, &model_};
  std::vector<std::string> violations_;
  uint64_t violations_not_kept_ = 0;
  AvailabilityChecker availability_;
  History history_;

  uint64_t trace_hash_ = 0xcbf29ce484222325ull;
  std::vector<std::string> trace_;
  uint64_t events_processed_ = 0;
  bool event_budget_exhausted_ = false;
  uint64_t members_stopped_ = 0;  // on storage failures
  std::set<NodeId> joiners_due_;  // named by an applied configuration, started after the event
};

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_SIMULATION_H_
