#ifndef KVSTORE_CORE_RAFT_RAFT_H_
#define KVSTORE_CORE_RAFT_RAFT_H_

// Raft as a pure, deterministic state machine: events in (Step, Tick, Propose, ...), effects out
// (Ready). No clock, thread, file or socket; time arrives as ticks and randomness as a seed.
//
// A driver is one loop:
//
//   while (node.HasReady()) {
//     const Ready& ready = node.GetReady();
//     storage.Write(ready.persist);                 // snapshot, then entries, then hard state
//     if (ready.apply_snapshot) state_machine.Restore(*ready.apply_snapshot);
//     for (const Message& m : ready.messages) transport.Send(m);
//     for (const Entry& e : ready.committed_entries) state_machine.Apply(e);  // conf changes:
//                                                                           // ApplyConfChange
//     node.Advance();
//     if (ready.persist.id != 0) node.OnPersisted(ready.persist.id);  // or later, when async
//   }
//
// The durability rule (Raft §5.1: a vote or an append acknowledgement may only leave once the
// state it vouches for is on disk) is enforced by the type, not by the driver: messages that
// depend on unpersisted state never appear in Ready::messages. They are held inside the node and
// released by OnPersisted(id) of the write that covers them. A driver that writes synchronously
// acknowledges right away; one that writes in the background (etcd's AsyncStorageWrites)
// acknowledges later, in order. Everything in Ready::messages may be sent at once, including a
// leader's appends of entries it has not yet persisted itself (Raft thesis §10.2.1): the leader
// counts its own copy toward commitment only once it is acknowledged as durable.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/raft/types.h"

namespace kvstore::raft {

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

enum class ReadOnlyOption : uint8_t {
  // ReadIndex confirms leadership with a heartbeat round to a quorum (Raft thesis §6.4).
  kSafe,
  // The leader trusts its lease: no round trip while it holds one. Requires check_quorum; relies
  // on bounded clock drift between nodes (Raft thesis §6.4.1): see LeaseTicks.
  kLeaseBased,
};

// Lease-based reads are linearizable only while no node's ticks come more than this factor
// faster than another's (tick-rate skew, clock drift). A process pause stops a node's clock for
// the pause's length and exceeds any bound: lease reads assume no pauses longer than a tick.
inline constexpr double kLeaseMaxTickRateRatio = 1.25;

// How many of its own ticks a leader's lease lasts after it sent a heartbeat that a quorum
// acknowledged. A follower that hears from the leader refuses votes (and does not campaign) for
// election_tick of its ticks, that is for more than (election_tick - 1) of its tick periods; a
// read at most LeaseTicks ticks after the heartbeat's send is less than LeaseTicks + 1 leader
// tick periods later. With periods within kLeaseMaxTickRateRatio of each other,
// (LeaseTicks + 1) * ratio <= election_tick - 1 keeps every lease read before any vote for a
// new leader. Not positive: no lease (every read takes the ReadIndex round).
inline constexpr int LeaseTicks(int election_tick) {
  return static_cast<int>(static_cast<double>(election_tick - 1) / kLeaseMaxTickRateRatio) - 1;
}

// Named limits and defaults. Each is overridable in Config.
inline constexpr uint64_t kDefaultMaxSizePerMsgBytes = 1 << 20;
inline constexpr uint64_t kDefaultMaxInflightMsgs = 256;
inline constexpr uint64_t kDefaultMaxCommittedSizePerReadyBytes = 64 << 20;

struct Config {
  NodeId id = kNoNode;
  // A follower that hears nothing from a leader for a random number of ticks in
  // [election_tick, 2 * election_tick) starts an election. Must exceed heartbeat_tick.
  int election_tick = 10;
  int heartbeat_tick = 1;
  // Seeds the node's election-timeout randomness (splitmix64). Same seed, same behaviour.
  uint64_t random_seed = 0;
  // Largest payload of one append message (at least one entry is always sent).
  uint64_t max_size_per_msg_bytes = kDefaultMaxSizePerMsgBytes;
  // Flow control per follower in the replicate state: appends in flight, and their bytes
  // (0 = no byte limit).
  uint64_t max_inflight_msgs = kDefaultMaxInflightMsgs;
  uint64_t max_inflight_bytes = 0;
  // Largest total payload of committed entries handed out by one Ready.
  uint64_t max_committed_size_per_ready_bytes = kDefaultMaxCommittedSizePerReadyBytes;
  // Pre-vote (Raft thesis §9.6): a node asks whether it could win before raising its term, so
  // a node returning from a partition does not disrupt a healthy leader.
  bool pre_vote = true;
  // A leader that has not heard from a quorum within an election timeout steps down; followers
  // that hear from a leader ignore vote requests for that long (Raft thesis §6.2, §4.2.3).
  bool check_quorum = true;
  ReadOnlyOption read_only_option = ReadOnlyOption::kSafe;
  // Followers drop proposals instead of forwarding them to the leader.
  bool disable_proposal_forwarding = false;
  // A leader removed from (or demoted in) the configuration steps down when the change applies.
  bool step_down_on_removal = true;
};

// What a node loads on start: whatever was persisted; BootstrapState() for a founding member
// of a new cluster; empty for a node joining an existing cluster (it learns the configuration
// by replaying the leader's log from index 1, or from a snapshot).
struct RestartState {
  HardState hard_state;
  // The latest persisted snapshot, if any.
  std::shared_ptr<const Snapshot> snapshot;
  // Persisted entries following the snapshot, contiguous.
  std::vector<Entry> entries;
  // Highest index already applied to the state machine (at least the snapshot's index).
  Index applied = 0;
  // The configuration as of `applied` when conf changes were applied after the snapshot.
  std::optional<ConfState> conf_state;
};

// The initial state of a founding member (etcd's RawNode.Bootstrap): the membership as
// committed conf change entries at indexes 1..n of term 1, one member each, so a node that joins
// later rebuilds the same configuration by replaying them. The driver persists the entries and
// hard state before starting the node, and applies them (ApplyConfChange) like any committed
// entry when the first Ready hands them out; re-adding a present member changes nothing.
RestartState BootstrapState(const std::vector<NodeId>& voters,
                            const std::vector<NodeId>& learners = {});

struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  friend bool operator==(const SoftState& a, const SoftState& b) {
    return a.leader == b.leader && a.role == b.role;
  }
  friend bool operator!=(const SoftState& a, const SoftState& b) { return !(a == b); }
};

// A linearizable read point: once the state machine has applied `index`, a read issued with
// `context` may be served locally (Raft thesis §6.4).
struct ReadState {
  Index index = 0;
  Bytes context;
};

// One durable write. Write, in order: the snapshot (replacing the entire log: entries after its
// index are discarded too, they may conflict), the
// entries (first truncating any persisted entries at or after entries.front().index), then the
// hard state. When it is durable call OnPersisted(id); ids are acknowledged in increasing order.
struct PersistRequest {
  uint64_t id = 0;  // 0: nothing to write
  std::optional<HardState> hard_state;
  absl::Span<const Entry> entries;  // valid until the next call into the node
  std::shared_ptr<const Snapshot> snapshot;
};

// Everything the driver must do now. Between GetReady() and Advance() only OnPersisted() may be
// called; the spans stay valid until Advance().
struct Ready {
  // Leader or role changed since the last Ready.
  std::optional<SoftState> soft_state;
  PersistRequest persist;
  // A snapshot that is durable and must replace the state machine before committed_entries.
  std::shared_ptr<const Snapshot> apply_snapshot;
  // Safe to send immediately, in any order; lost or duplicated messages are tolerated.
  std::vector<Message> messages;
  // Committed and locally durable: apply in order.
  absl::Span<const Entry> committed_entries;
  std::vector<ReadState> read_states;
};

// Progress of one peer as the leader sees it (etcd's tracker.Progress).
enum class ProgressState : uint8_t {
  kProbe,      // one append in flight at a time until the match index is found
  kReplicate,  // appends streamed optimistically, bounded by the inflight limits
  kSnapshot,   // a snapshot is in flight; appends are paused until it is reported
};
const char* ProgressStateName(ProgressState state);

struct ProgressStatus {
  Index match = 0;
  Index next = 0;
  ProgressState state = ProgressState::kProbe;
  bool is_learner = false;
  bool recent_active = false;
  Index pending_snapshot = 0;
  uint64_t inflight_count = 0;
};

struct Status {
  NodeId id = kNoNode;
  HardState hard_state;
  SoftState soft_state;
  Index applied = 0;
  Index last_index = 0;
  Index first_index = 0;
  Index persisted_index = 0;
  NodeId lead_transferee = kNoNode;
  ConfState conf_state;
  absl::btree_map<NodeId, ProgressStatus> progress;  // leader only
};

class RaftState;  // the algorithm; see raft.cc

// The node. Methods return a non-OK status for requests that cannot be carried out now (no
// leader, a change already pending, ...); codes are stable:
//   kUnavailable         no leader known, or the node is not a voter (cannot campaign)
//   kAborted             proposal dropped (leadership transfer in progress, node removed,
//                        forwarding disabled)
//   kFailedPrecondition  conf change refused (one pending, joint state rule), transfer refused
//   kInvalidArgument     malformed input (unknown peer, bad conf change, bad config)
// A broken internal invariant is not a status: it aborts with the node, term and indexes.
class RawNode {
 public:
  // Validates the config and restart state; returns kInvalidArgument naming the problem.
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(const Config& config,
                                                         RestartState restart);
  ~RawNode();
  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;

  // A message from a peer. Messages for another node, from unknown senders of responses, or of
  // stale terms are ignored (kInvalidArgument for a message addressed elsewhere).
  absl::Status Step(Message message);
  // One unit of logical time.
  void Tick();
  // Starts an election now (if this node is a voter).
  absl::Status Campaign();
  absl::Status Propose(Bytes data);
  absl::Status ProposeConfChange(const ConfChange& change);
  // Call while applying a committed kConfChange entry; returns the new configuration.
  ConfState ApplyConfChange(const ConfChange& change);
  // Asks the leader to hand leadership to `transferee`, a voter.
  absl::Status TransferLeader(NodeId transferee);
  // Requests a linearizable read point; answered by a ReadState carrying `context`.
  absl::Status ReadIndex(Bytes context);
  // The outcome of sending a snapshot to `peer` (leader only).
  void ReportSnapshot(NodeId peer, bool succeeded);
  // The transport could not reach `peer` (leader only): stop streaming to it.
  void ReportUnreachable(NodeId peer);
  // The application took `snapshot` (at most the applied index) and no longer needs entries up
  // to `compact_index` (at most snapshot's index): the log drops them, and lagging followers
  // receive this snapshot.
  absl::Status Compact(std::shared_ptr<const Snapshot> snapshot, Index compact_index);
  // Between GetReady and Advance: sends `snapshot` in place of the one each snapshot message of
  // this Ready carries. For an application whose state machine is durable on its own (etcd's
  // backend): it hands Compact snapshots without data, and attaches its current state only to
  // the snapshots it sends (etcd's "merged snapshot"). `snapshot` must be at least as recent as
  // the one it replaces, at most the applied index, and match the log's term at its index.
  absl::Status ReplaceOutgoingSnapshots(std::shared_ptr<const Snapshot> snapshot);
  // Whether the current Ready (between GetReady and Advance) sends a snapshot.
  bool SendsSnapshot() const;

  bool HasReady() const;
  // Collects the effects to carry out. Must be followed by Advance() before the next GetReady.
  const Ready& GetReady();
  // The driver carried out the last Ready (committed entries applied).
  void Advance();
  // Persist request `id` (and every earlier one) is durable. May be called at any time, from
  // the driver's loop or later when writes complete in the background; the held messages it
  // releases appear in the next Ready.
  void OnPersisted(uint64_t id);

  Status GetStatus() const;
  NodeId id() const;
  // Cheap accessors for drivers on hot paths (GetStatus copies the progress map).
  Index LastIndex() const;
  Term CurrentTerm() const;
  // The term of log entry `index`; nullopt when it is compacted away or not written yet.
  std::optional<Term> LogTerm(Index index) const;
  // The configuration in force (GetStatus().conf_state without copying the progress map).
  ConfState GetConfState() const;
  // GetConfState() == cs, without copying it.
  bool ConfStateIs(const ConfState& cs) const;
  // Changes whenever the configuration may have changed (counts its writes): drivers compare it
  // before ConfStateIs.
  uint64_t ConfigEpoch() const;
  bool IsLeader() const;
  HardState GetHardState() const;
  // GetStatus().soft_state and .lead_transferee without building the rest of the status:
  // drivers and checkers ask for them every tick or event.
  SoftState GetSoftState() const;
  NodeId LeadTransferee() const;

 private:
  explicit RawNode(std::unique_ptr<RaftState> state);
  std::unique_ptr<RaftState> state_;
};

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_RAFT_H_
