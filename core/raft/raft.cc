#include "core/raft/raft.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/base/probe.h"
#include "core/raft/check.h"
#include "core/raft/log.h"
#include "core/raft/progress.h"
#include "core/raft/rand.h"
#include "core/raft/tracker.h"

namespace kvstore::raft {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "Follower";
    case Role::kPreCandidate:
      return "PreCandidate";
    case Role::kCandidate:
      return "Candidate";
    case Role::kLeader:
      return "Leader";
  }
  return "Unknown";
}

const char* ProgressStateName(ProgressState state) {
  switch (state) {
    case ProgressState::kProbe:
      return "Probe";
    case ProgressState::kReplicate:
      return "Replicate";
    case ProgressState::kSnapshot:
      return "Snapshot";
  }
  return "Unknown";
}

namespace {

// Marks a vote request caused by a leadership transfer: it bypasses the follower's leader lease
// (Raft thesis §3.10 / §4.2.3).
constexpr absl::string_view kCampaignTransfer = "CampaignTransfer";

// With lease reads, a heartbeat that carries no read request carries the leader's tick at its
// sending, which the follower echoes: the lease runs from that tick. Its length (prefix and 8
// bytes) differs from the server's read contexts (16 bytes).
constexpr absl::string_view kLeaseProbePrefix = "lease:";
constexpr size_t kLeaseProbeBytes = kLeaseProbePrefix.size() + 8;

std::string EncodeLeaseProbe(uint64_t tick) {
  std::string out(kLeaseProbePrefix);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((tick >> (8 * i)) & 0xff));
  return out;
}

uint64_t DecodeLeaseProbe(absl::string_view probe) {
  uint64_t tick = 0;
  for (int i = 7; i >= 0; --i) {
    tick = (tick << 8) | static_cast<uint8_t>(probe[kLeaseProbePrefix.size() + i]);
  }
  return tick;
}

enum class CampaignType { kPreElection, kElection, kTransfer };

bool IsVoteRequest(MessageType type) {
  return type == MessageType::kVote || type == MessageType::kPreVote;
}

// Responses that vouch for local state: held until that state is durable (Raft §5.1).
bool NeedsDurableState(MessageType type) {
  return type == MessageType::kAppResp || type == MessageType::kVoteResp ||
         type == MessageType::kPreVoteResp;
}

}  // namespace

// The Raft algorithm of one node (Raft paper, Figure 2; thesis chapters 3, 4, 6, 9, 10), in
// the shape of etcd-io/raft. RawNode is its thin public face.
//
// Outputs accumulate in msgs_ (sendable now) and msgs_after_persist_ (held until the state
// they vouch for is durable). GetReady hands the log suffix and hard state that changed to the
// driver as one numbered PersistRequest and attaches the held messages to it; OnPersisted
// releases them, advances the durable index and, on a leader, counts its own copy.
class RaftState {
 public:
  RaftState(const Config& config, RestartState restart);
  absl::Status Init(RestartState& restart);

  // Public operations (see RawNode).
  absl::Status Step(Message&& m);
  void Tick();
  absl::Status Campaign();
  absl::Status Propose(Entry entry);
  ConfState ApplyConfChange(const ConfChange& change);
  absl::Status TransferLeader(NodeId transferee);
  absl::Status ReadIndex(Bytes context);
  void ReportSnapshot(NodeId peer, bool succeeded);
  void ReportUnreachable(NodeId peer);
  absl::Status Compact(std::shared_ptr<const Snapshot> snapshot, Index compact_index);
  absl::Status ReplaceOutgoingSnapshots(std::shared_ptr<const Snapshot> snapshot);
  bool SendsSnapshot() const;
  bool HasReady() const;
  const Ready& GetReady();
  void Advance();
  void OnPersisted(uint64_t id);
  Status GetStatus() const;
  NodeId id() const { return id_; }
  Index last_index() const { return log_.last_index(); }
  ConfState conf_state() const { return tracker_.config.ToConfState(); }
  bool conf_state_is(const ConfState& cs) const { return tracker_.config.Matches(cs); }
  uint64_t config_epoch() const { return config_epoch_; }
  std::optional<Term> log_term(Index index) const {
    Term term = 0;
    if (!log_.TermAt(index, &term)) return std::nullopt;
    return term;
  }
  Term term() const { return term_; }
  bool is_leader() const { return role_ == Role::kLeader; }
  HardState hard_state() const { return CurrentHardState(); }
  SoftState soft_state() const { return SoftState{lead_, role_}; }
  NodeId lead_transferee() const { return lead_transferee_; }
  // Events may change the log that an outstanding Ready's spans point into: the driver must
  // Advance first. Only OnPersisted and ApplyConfChange (during apply) are allowed meanwhile.
  void CheckNoReadyOutstanding() const {
    RAFT_CHECK(!ready_outstanding_) << Describe() << ": event fed between GetReady and Advance";
  }

 private:
  struct PendingPersist {
    uint64_t id = 0;
    bool has_entries = false;
    Index last_index = 0;
    Term last_term = 0;
    std::shared_ptr<const Snapshot> snapshot;
    std::vector<Message> messages;  // released when this write is durable
  };
  struct ReadRequest {
    Index index = 0;
    NodeId from = kNoNode;
    Bytes context;
    VoteMap acks;
    uint64_t tick = 0;  // ticks_ when it was made: its heartbeats left no earlier
  };

  // Roles (Raft §5.2).
  void Reset(Term term);
  void BecomeFollower(Term term, NodeId lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  bool Promotable() const;
  bool HasUnappliedConfChanges() const;
  void ResetRandomizedElectionTimeout();
  void Hup(CampaignType type);
  void StartCampaign(CampaignType type);
  VoteResult Poll(NodeId from, bool granted);

  // Stepping.
  absl::Status StepInternal(Message&& m);
  void StepLeader(Message& m);
  void StepCandidate(Message& m);
  void StepFollower(Message& m);
  void HandleVoteRequest(const Message& m);
  void HandleAppend(Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  void HandleAppendResponse(const Message& m, Progress& pr);
  void HandleHeartbeatResponse(const Message& m, Progress& pr);
  void HandleTransferLeader(NodeId transferee);
  bool Restore(const std::shared_ptr<const Snapshot>& snapshot);

  // Leader replication.
  absl::Status ProposeEntries(absl::Span<Entry> entries);
  absl::Status CheckConfChangeProposal(const Entry& entry) const;
  void AppendEntry(Entry entry);
  bool MaybeCommit();
  void BcastAppend();
  void FlushBroadcast();
  bool NeedsEmptyAppend(const Progress& pr) const;
  void BcastHeartbeat();
  void SendAppend(NodeId to) { MaybeSendAppend(to, true); }
  bool MaybeSendAppend(NodeId to, bool send_if_empty);
  bool SendSnapshot(NodeId to, Progress& pr);
  void SendHeartbeat(NodeId to, const Bytes& context);
  void SendTimeoutNow(NodeId to);
  void AbortLeaderTransfer() { lead_transferee_ = kNoNode; }
  void Send(Message m);

  // Reads (Raft thesis §6.4).
  bool CommittedEntryInCurrentTerm() const;
  void HandleReadIndex(Message& m);
  void AnswerReadIndex(const Message& m);
  void RespondToReadIndex(NodeId from, Index index, Bytes context);
  void ReleasePendingReadIndexMessages();
  void AckRead(NodeId from, const Bytes& context);
  // Leader leases (ReadOnlyOption::kLeaseBased).
  bool LeaseReads() const { return config_.read_only_option == ReadOnlyOption::kLeaseBased; }
  // Whether a quorum acknowledged heartbeats sent within LeaseTicks of now, so no other leader
  // can have been elected yet (see LeaseTicks in raft.h).
  bool LeaseValid() const;
  void NoteLeaseAck(NodeId from, uint64_t sent_tick);
  // A node refuses votes while it heard from a leader within an election timeout, and, with
  // lease reads, during its first election timeout after a start (it may have promised a leader
  // its lease before a crash, and remembers nothing of it).
  bool InLease() const;

  void SwitchToConfig(TrackerConfig config, ProgressMap progress);
  // A leader that applied its own removal steps down once a quorum of the new configuration
  // reported a commit index at or beyond retire_index_.
  void MaybeFinishRetirement();
  // Records the commit index a follower's response reports; false when that made this
  // (removed) leader step down.
  bool NoteAckedCommit(Progress& pr, Index commit);
  void ReleaseMessages(std::vector<Message>& messages);
  PendingPersist& PushPendingPersist();
  // The ring position `offset` slots after the head (offset < size): no division on the hot path.
  size_t PersistSlot(size_t offset) const {
    const size_t slot = persist_head_ + offset;
    return slot >= persist_slots_.size() ? slot - persist_slots_.size() : slot;
  }
  HardState CurrentHardState() const { return HardState{term_, vote_, log_.committed()}; }
  Index CommittedEntriesLimit() const;
  std::string Describe() const;

  Config config_;
  NodeId id_;
  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;
  bool is_learner_ = false;
  RaftLog log_;
  ProgressTracker tracker_;
  // Counts the writes of tracker_.config (SwitchToConfig and RestoreConfState, the only ones).
  uint64_t config_epoch_ = 0;
  SplitMix64 rng_;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  NodeId lead_transferee_ = kNoNode;
  // Ticks since this node started (never reset): the leader's clock for its lease.
  uint64_t ticks_ = 0;
  // Per voter, the latest tick at which the leader sent a heartbeat that voter acknowledged,
  // this term.
  absl::btree_map<NodeId, uint64_t> lease_acked_tick_;
  // This term's leader sent TimeoutNow: its transferee campaigns ignoring every lease, so no
  // lease holds for the rest of the term.
  bool lease_given_away_ = false;
  // Index of the latest conf change proposed by this leader: another waits until it applies.
  Index pending_conf_index_ = 0;
  // Leader only, nonzero once it applied a configuration without it as a voter: the commit
  // index at that moment, which a quorum of the new configuration must learn before it steps
  // down (see SwitchToConfig).
  Index retire_index_ = 0;

  std::vector<ReadRequest> read_requests_;            // safe reads awaiting a heartbeat quorum
  std::vector<Message> pending_read_index_messages_;  // reads before this term's first commit
  std::vector<ReadState> read_states_;

  std::vector<Message> msgs_;
  std::vector<Message> msgs_after_persist_;

  // Durability bookkeeping.
  HardState offered_hard_state_;
  std::shared_ptr<const Snapshot> incoming_snapshot_;  // restored, not yet offered for writing
  std::shared_ptr<const Snapshot> snapshot_to_apply_;  // durable, not yet handed to apply
  std::shared_ptr<const Snapshot> latest_snapshot_;    // the application's, sent to followers
  std::vector<PendingPersist> persist_slots_;          // ring of writes awaiting OnPersisted
  size_t persist_head_ = 0;
  size_t persist_count_ = 0;
  uint64_t next_persist_id_ = 0;
  uint64_t deferred_persisted_id_ = 0;  // acknowledged while a Ready was outstanding
  bool broadcast_pending_ = false;      // appends to every follower are due (BcastAppend)

  SoftState reported_soft_state_;
  Ready ready_;
  bool ready_outstanding_ = false;
};

RaftState::RaftState(const Config& config, RestartState restart)
    : config_(config),
      id_(config.id),
      tracker_(config.max_inflight_msgs, config.max_inflight_bytes),
      rng_(config.random_seed ^ (config.id * 0xD1B54A32D192ED03ull)) {
  log_.set_node(id_);
  (void)restart;
}

absl::Status RaftState::Init(RestartState& restart) {
  Index snapshot_index = 0;
  Term snapshot_term = 0;
  ConfState conf_state;
  if (restart.snapshot != nullptr) {
    snapshot_index = restart.snapshot->metadata.index;
    snapshot_term = restart.snapshot->metadata.term;
    conf_state = restart.snapshot->metadata.conf_state;
    latest_snapshot_ = restart.snapshot;
  }
  if (restart.conf_state.has_value()) conf_state = *restart.conf_state;
  for (size_t i = 0; i < restart.entries.size(); ++i) {
    if (restart.entries[i].index != snapshot_index + 1 + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("restart entries must follow the snapshot (index ", snapshot_index,
                       ") contiguously; entry ", i, " has index ", restart.entries[i].index));
    }
    if (restart.entries[i].term < (i == 0 ? snapshot_term : restart.entries[i - 1].term)) {
      return absl::InvalidArgumentError(absl::StrCat("restart entry ", restart.entries[i].index,
                                                     " has a lower term (", restart.entries[i].term,
                                                     ") than its predecessor"));
    }
  }
  const Index last = snapshot_index + restart.entries.size();
  const HardState& hs = restart.hard_state;
  if (hs.commit > last) {
    return absl::InvalidArgumentError(absl::StrCat("hard state commit ", hs.commit,
                                                   " is beyond the last persisted index ", last,
                                                   ": entries were lost or truncated"));
  }
  if (!restart.entries.empty() && restart.entries.back().term > hs.term) {
    return absl::InvalidArgumentError(absl::StrCat("hard state term ", hs.term,
                                                   " is below the last entry's term ",
                                                   restart.entries.back().term));
  }
  Index commit = std::max(hs.commit, snapshot_index);
  if (restart.applied > commit) {
    if (restart.applied > last) {
      return absl::InvalidArgumentError(absl::StrCat("applied index ", restart.applied,
                                                     " is beyond the last persisted index ", last,
                                                     ": entries were lost or truncated"));
    }
    // A driver that writes in the background may apply a Ready's committed entries before the
    // hard state carrying their commit index is durable, and crash in between. Entries handed
    // out to apply were committed, so the commit index is raised to what was applied (the next
    // Ready writes it).
    commit = restart.applied;
  }
  log_.Restart(snapshot_index, snapshot_term, std::move(restart.entries), commit,
               std::max(restart.applied, snapshot_index));
  ++config_epoch_;
  if (auto s = RestoreConfState(tracker_, conf_state, log_.last_index()); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid configuration ", DescribeConfState(conf_state), ": ", s.message()));
  }
  term_ = hs.term;
  vote_ = hs.vote;
  offered_hard_state_ = HardState{term_, vote_, log_.committed()};
  if (hs != offered_hard_state_) offered_hard_state_ = hs;  // commit raised to the snapshot
  BecomeFollower(term_, kNoNode);
  const Progress* self = tracker_.Get(id_);
  is_learner_ = self != nullptr && self->is_learner;
  return absl::OkStatus();
}

std::string RaftState::Describe() const {
  return absl::StrCat("node ", id_, " (", RoleName(role_), ", term ", term_, ", vote ", vote_,
                      ", commit ", log_.committed(), ", applied ", log_.applied(), ", last ",
                      log_.last_index(), ", persisted ", log_.persisted(), ")");
}

// ---------------------------------------------------------------------------------------------
// Roles

void RaftState::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      config_.election_tick + static_cast<int>(rng_.Uniform(config_.election_tick));
}

void RaftState::Reset(Term term) {
  RAFT_CHECK(term >= term_) << Describe() << ": term would decrease to " << term;
  if (term != term_) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  tracker_.ResetVotes();
  for (auto& [id, pr] : tracker_.progress) {
    const bool learner = pr.is_learner;
    pr = Progress(log_.last_index() + 1, tracker_.max_inflight_msgs(),
                  tracker_.max_inflight_bytes(), learner);
    pr.recent_active = false;
    if (id == id_) pr.match = log_.persisted();
  }
  pending_conf_index_ = 0;
  retire_index_ = 0;
  read_requests_.clear();
  pending_read_index_messages_.clear();
  lease_acked_tick_.clear();
  lease_given_away_ = false;
}

void RaftState::BecomeFollower(Term term, NodeId lead) {
  Reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
}

void RaftState::BecomePreCandidate() {
  RAFT_CHECK(role_ != Role::kLeader) << Describe() << ": leader cannot become pre-candidate";
  // Pre-vote changes neither term nor vote (Raft thesis §9.6).
  tracker_.ResetVotes();
  lead_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void RaftState::BecomeCandidate() {
  RAFT_CHECK(role_ != Role::kLeader) << Describe() << ": leader cannot become candidate";
  Reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void RaftState::BecomeLeader() {
  RAFT_CHECK(role_ == Role::kCandidate) << Describe() << ": only a candidate becomes leader";
  Reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  Progress* self = tracker_.Get(id_);
  RAFT_CHECK(self != nullptr) << Describe() << ": leader without own progress";
  self->BecomeReplicate();
  self->match = log_.persisted();
  self->next = log_.last_index() + 1;
  self->recent_active = true;
  // Conf changes in the uncommitted tail may exist; treat them as pending (etcd).
  pending_conf_index_ = log_.last_index();
  // Raft §5.4.2 / §8: an entry of the new term lets the leader commit earlier ones and learn
  // the commit index for reads.
  AppendEntry(Entry{});
}

bool RaftState::Promotable() const {
  auto it = tracker_.progress.find(id_);
  return it != tracker_.progress.end() && !it->second.is_learner && incoming_snapshot_ == nullptr &&
         snapshot_to_apply_ == nullptr && log_.offset() <= log_.applied();
}

bool RaftState::HasUnappliedConfChanges() const {
  if (log_.applied() >= log_.committed()) return false;
  for (Index i = std::max(log_.applied(), log_.offset()) + 1; i <= log_.committed(); ++i) {
    if (log_.At(i).type == EntryType::kConfChange) return true;
  }
  return false;
}

void RaftState::Hup(CampaignType type) {
  if (role_ == Role::kLeader || !Promotable()) return;
  // Raft thesis §4.1: a node must not campaign with a committed configuration it has not
  // applied; it might count the wrong voters.
  if (HasUnappliedConfChanges()) {
    CODE_PROBE(raft, campaign_waits_for_conf_apply);
    return;
  }
  if (type != CampaignType::kTransfer) {
    type = config_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection;
  }
  StartCampaign(type);
}

void RaftState::StartCampaign(CampaignType type) {
  Term vote_term;
  MessageType vote_type;
  if (type == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_type = MessageType::kPreVote;
    vote_term = term_ + 1;  // the term we would campaign in
    // Our own pre-vote needs no durable state; count it now.
    if (Poll(id_, true) == VoteResult::kWon) {
      StartCampaign(CampaignType::kElection);
      return;
    }
  } else {
    BecomeCandidate();
    vote_type = MessageType::kVote;
    vote_term = term_;
    // Our own vote counts once it is durable: a VoteResp to ourselves, released by OnPersisted.
    Message self_vote;
    self_vote.type = MessageType::kVoteResp;
    self_vote.to = id_;
    self_vote.term = term_;
    Send(std::move(self_vote));
  }
  for (NodeId voter : tracker_.config.voters.Ids()) {
    if (voter == id_) continue;
    Message m;
    m.type = vote_type;
    m.to = voter;
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    if (type == CampaignType::kTransfer) m.context = Bytes(kCampaignTransfer);
    Send(std::move(m));
  }
}

VoteResult RaftState::Poll(NodeId from, bool granted) { return tracker_.RecordVote(from, granted); }

// ---------------------------------------------------------------------------------------------
// Stepping

absl::Status RaftState::Step(Message&& m) {
  if (m.to != id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("message ", DescribeMessage(m), " is addressed to ", m.to, ", not ", id_));
  }
  if (m.from == kNoNode) {
    return absl::InvalidArgumentError(
        absl::StrCat("message ", DescribeMessage(m), " has no sender"));
  }
  if (m.term == 0 && m.type != MessageType::kProp && m.type != MessageType::kReadIndex &&
      m.type != MessageType::kTransferLeader) {
    return absl::InvalidArgumentError(absl::StrCat("message ", DescribeMessage(m),
                                                   " carries no term; only forwarded "
                                                   "proposals, reads and transfers may"));
  }
  if (m.type == MessageType::kSnap && m.snapshot == nullptr) {
    return absl::InvalidArgumentError("snapshot message without a snapshot");
  }
  return StepInternal(std::move(m));
}

absl::Status RaftState::StepInternal(Message&& m) {
  if (m.term == 0) {
    // Forwarded requests (proposals, read index, transfer) carry no term.
  } else if (m.term > term_) {
    if (IsVoteRequest(m.type)) {
      const bool force = m.context.view() == kCampaignTransfer;
      // Raft thesis §4.2.3: a node that heard from a leader within the minimum election timeout
      // ignores vote requests, so a removed or partitioned node cannot disrupt the cluster.
      if (!force && InLease()) {
        CODE_PROBE(raft, vote_ignored_in_lease);
        return absl::OkStatus();
      }
    }
    if (m.type == MessageType::kPreVote) {
      // Never change term in response to a pre-vote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote is for a future term: we raise ours only when the pre-vote wins.
    } else if (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnap) {
      BecomeFollower(m.term, m.from);
    } else {
      BecomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if ((config_.check_quorum || config_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kApp)) {
      // A stale leader cut off by a partition learns the new term from this and steps down;
      // with pre-vote the new leader may otherwise never reach it (etcd #5451 rationale).
      CODE_PROBE(raft, stale_leader_told_term);
      Message resp;
      resp.type = MessageType::kAppResp;
      resp.to = m.from;
      Send(std::move(resp));
    } else if (IsVoteRequest(m.type)) {
      // Raft Figure 2: a RequestVote's answer carries our term, "for candidate to update
      // itself". etcd answers only a stale pre-vote, and counts on the candidate hearing the
      // newer term from this node's own campaign; but a voter that missed the change adding the
      // candidate never sends it one. It then stayed ahead in term, its own votes going to
      // members that were gone, and never granted the candidate the vote it needed (fuzz seeds
      // 163230, 162233: no leader for good, though the two made a quorum of the new
      // configuration).
      if (m.type == MessageType::kVote) CODE_PROBE(raft, stale_candidate_told_term);
      Message resp;
      resp.type =
          m.type == MessageType::kPreVote ? MessageType::kPreVoteResp : MessageType::kVoteResp;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      Send(std::move(resp));
    }
    return absl::OkStatus();
  }

  if (IsVoteRequest(m.type)) {
    HandleVoteRequest(m);
    return absl::OkStatus();
  }
  switch (role_) {
    case Role::kLeader:
      StepLeader(m);
      break;
    case Role::kCandidate:
    case Role::kPreCandidate:
      StepCandidate(m);
      break;
    case Role::kFollower:
      StepFollower(m);
      break;
  }
  return absl::OkStatus();
}

void RaftState::HandleVoteRequest(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  // Raft §5.2: one vote per term, first come first served; re-granting the same candidate is
  // fine. A pre-vote for a later term is granted whenever the log check passes.
  const bool can_vote =
      vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) || (pre && m.term > term_);
  Message resp;
  resp.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  resp.to = m.from;
  // Raft §5.4.1: only a candidate whose log is at least as up to date as ours.
  if (can_vote && log_.IsUpToDate(m.index, m.log_term)) {
    resp.term = m.term;
    if (!pre) {
      RAFT_CHECK(vote_ == kNoNode || vote_ == m.from)
          << Describe() << ": second vote in term " << term_ << " for " << m.from;
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    resp.term = term_;
    resp.reject = true;
  }
  Send(std::move(resp));
}

void RaftState::StepLeader(Message& m) {
  switch (m.type) {
    case MessageType::kProp:
      // A forwarded proposal: its sender learns of a failure by timeout.
      (void)ProposeEntries(absl::MakeSpan(m.entries));
      return;
    case MessageType::kReadIndex:
      HandleReadIndex(m);
      return;
    case MessageType::kTransferLeader:
      HandleTransferLeader(m.from);
      return;
    default:
      break;
  }
  Progress* pr = tracker_.Get(m.from);
  if (pr == nullptr) return;  // a response from a node no longer in the configuration
  switch (m.type) {
    case MessageType::kAppResp:
      HandleAppendResponse(m, *pr);
      break;
    case MessageType::kHeartbeatResp:
      HandleHeartbeatResponse(m, *pr);
      break;
    default:
      break;  // stale votes and the like
  }
}

void RaftState::StepCandidate(Message& m) {
  const MessageType my_response =
      role_ == Role::kPreCandidate ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  switch (m.type) {
    case MessageType::kApp:
      BecomeFollower(m.term, m.from);  // Raft §5.2: a leader of our term exists
      HandleAppend(m);
      return;
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      return;
    case MessageType::kSnap:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      return;
    default:
      break;
  }
  if (m.type != my_response) return;  // proposals and reads are dropped: no leader
  switch (Poll(m.from, !m.reject)) {
    case VoteResult::kWon:
      if (role_ == Role::kPreCandidate) {
        StartCampaign(CampaignType::kElection);
      } else {
        BecomeLeader();
        BcastAppend();
      }
      break;
    case VoteResult::kLost:
      // A pre-candidate returns to follower in its old term; a candidate stays in the new one.
      if (role_ == Role::kPreCandidate) CODE_PROBE(raft, pre_vote_lost);
      BecomeFollower(term_, kNoNode);
      break;
    case VoteResult::kPending:
      break;
  }
}

void RaftState::StepFollower(Message& m) {
  switch (m.type) {
    case MessageType::kProp:
      if (lead_ == kNoNode || config_.disable_proposal_forwarding) return;
      m.to = lead_;
      msgs_.push_back(std::move(m));
      return;
    case MessageType::kApp:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleAppend(m);
      return;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleHeartbeat(m);
      return;
    case MessageType::kSnap:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      return;
    case MessageType::kTransferLeader:
    case MessageType::kReadIndex:
      if (lead_ == kNoNode) return;
      m.to = lead_;
      msgs_.push_back(std::move(m));  // from stays: the transferee, or the reading node
      return;
    case MessageType::kTimeoutNow:
      // Raft thesis §3.10: the leader chose us; campaign now, skipping pre-vote and leases.
      Hup(CampaignType::kTransfer);
      return;
    case MessageType::kReadIndexResp:
      read_states_.push_back(ReadState{m.index, m.context});
      return;
    default:
      return;
  }
}

void RaftState::HandleAppend(Message& m) {
  RAFT_CHECK(role_ != Role::kLeader) << Describe() << ": leader would overwrite its own log";
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    CODE_PROBE(raft, append_below_commit);
    resp.index = log_.committed();
    resp.commit = log_.committed();
    Send(std::move(resp));
    return;
  }
  Index last_new = 0;
  if (log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries, &last_new)) {
    resp.index = last_new;
    resp.commit = log_.committed();
    Send(std::move(resp));
    return;
  }
  // Raft §5.3 (fast back-off): tell the leader the last index whose term is <= the term it
  // probed with, so it skips a whole term of conflicting entries per round trip.
  const auto [hint_index, hint_term] =
      log_.FindConflictByTerm(std::min(m.index, log_.last_index()), m.log_term);
  resp.index = m.index;
  resp.commit = log_.committed();
  resp.reject = true;
  resp.reject_hint = hint_index;
  resp.log_term = hint_term;
  Send(std::move(resp));
}

void RaftState::HandleHeartbeat(const Message& m) {
  log_.CommitTo(m.commit);
  Message resp;
  resp.type = MessageType::kHeartbeatResp;
  resp.to = m.from;
  resp.commit = log_.committed();  // tells a removed leader when it may step down
  resp.context = m.context;
  Send(std::move(resp));
}

void RaftState::HandleSnapshot(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  resp.index = Restore(m.snapshot) ? log_.last_index() : log_.committed();
  resp.commit = log_.committed();
  Send(std::move(resp));
}

bool RaftState::Restore(const std::shared_ptr<const Snapshot>& snapshot) {
  const SnapshotMetadata& meta = snapshot->metadata;
  if (meta.index <= log_.committed()) {
    CODE_PROBE(raft, snapshot_stale);
    return false;
  }
  RAFT_CHECK(role_ == Role::kFollower) << Describe() << ": snapshot restore outside follower";
  const ConfState& cs = meta.conf_state;
  auto has = [&](const std::vector<NodeId>& ids) {
    return std::find(ids.begin(), ids.end(), id_) != ids.end();
  };
  // A snapshot whose configuration omits us is from a cluster we are not part of.
  if (!has(cs.voters) && !has(cs.voters_outgoing) && !has(cs.learners) && !has(cs.learners_next)) {
    return false;
  }
  if (log_.MatchTerm(meta.index, meta.term)) {
    // We hold the snapshot's last entry: fast-forward commit instead of discarding the log.
    CODE_PROBE(raft, snapshot_fast_forward);
    log_.CommitTo(meta.index);
    return false;
  }
  // Our entries beyond the snapshot conflict with it (else MatchTerm held): all of them go.
  if (log_.last_index() > meta.index) CODE_PROBE(raft, snapshot_over_longer_log);
  log_.RestoreSnapshot(meta.index, meta.term);
  incoming_snapshot_ = snapshot;
  ++config_epoch_;
  auto status = RestoreConfState(tracker_, cs, log_.last_index());
  RAFT_CHECK(status.ok()) << Describe() << ": leader sent an invalid configuration "
                          << DescribeConfState(cs) << ": " << status.message();
  const Progress* self = tracker_.Get(id_);
  is_learner_ = self != nullptr && self->is_learner;
  return true;
}

void RaftState::HandleAppendResponse(const Message& m, Progress& pr) {
  pr.recent_active = true;
  if (!NoteAckedCommit(pr, m.commit)) return;  // the removed leader stepped down
  if (m.reject) {
    Index next_probe = m.reject_hint;
    if (m.log_term > 0) {
      // Skip our entries whose term is above the follower's term at the hint (etcd's
      // two-sided back-off): one round trip per term, not per entry.
      next_probe = log_.FindConflictByTerm(m.reject_hint, m.log_term).first;
      if (next_probe < m.reject_hint) CODE_PROBE(raft, reject_hint_skips_term);
    }
    if (pr.MaybeDecrTo(m.index, next_probe)) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      SendAppend(m.from);
    }
    return;
  }
  const bool was_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index)) return;
  switch (pr.state) {
    case ProgressState::kProbe:
      pr.BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (pr.match + 1 >= log_.first_index()) {
        pr.BecomeProbe();
        pr.BecomeReplicate();
      }
      break;
    case ProgressState::kReplicate:
      pr.inflights.FreeLE(m.index);
      // MaybeUpdate unpaused the flow, but the window may still be full: a heartbeat response
      // may have freed the slot this acknowledgement covers already (found by fuzz seed 835).
      pr.msg_app_flow_paused = pr.inflights.Full();
      break;
  }
  if (MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BcastAppend();
  } else if (was_paused) {
    MaybeSendAppend(m.from, NeedsEmptyAppend(pr));
  }
  // Stream what remains while the window allows.
  while (MaybeSendAppend(m.from, false)) {
  }
  if (m.from == lead_transferee_ && pr.match == log_.last_index()) {
    CODE_PROBE(raft, transfer_catches_up_first);
    SendTimeoutNow(m.from);
  }
}

void RaftState::HandleHeartbeatResponse(const Message& m, Progress& pr) {
  pr.recent_active = true;
  if (!NoteAckedCommit(pr, m.commit)) return;  // the removed leader stepped down
  pr.msg_app_flow_paused = false;
  // A full window with a live follower means acknowledgements were lost: free one slot so
  // replication resumes.
  if (pr.state == ProgressState::kReplicate && pr.inflights.Full()) {
    CODE_PROBE(raft, heartbeat_freed_inflight);
    pr.inflights.FreeFirstOne();
  }
  if (pr.match < log_.last_index()) SendAppend(m.from);
  if (m.context.empty()) return;
  if (LeaseReads() && m.context.size() == kLeaseProbeBytes &&
      m.context.view().substr(0, kLeaseProbePrefix.size()) == kLeaseProbePrefix) {
    NoteLeaseAck(m.from, DecodeLeaseProbe(m.context.view()));
    return;
  }
  AckRead(m.from, m.context);
}

void RaftState::HandleTransferLeader(NodeId transferee) {
  Progress* pr = tracker_.Get(transferee);
  if (pr == nullptr || pr->is_learner) return;
  if (lead_transferee_ != kNoNode) {
    if (lead_transferee_ == transferee) return;  // already under way
    AbortLeaderTransfer();
  }
  if (transferee == id_) return;  // already leader
  // Raft thesis §3.10: the transfer must finish within an election timeout or is aborted.
  election_elapsed_ = 0;
  lead_transferee_ = transferee;
  if (pr->match == log_.last_index()) {
    SendTimeoutNow(transferee);
  } else {
    SendAppend(transferee);  // catch up first
  }
}

// ---------------------------------------------------------------------------------------------
// Leader replication

absl::Status RaftState::CheckConfChangeProposal(const Entry& entry) const {
  auto change = DecodeConfChange(entry.data.view());
  if (!change.ok()) return change.status();
  const bool already_pending = pending_conf_index_ > log_.applied();
  const bool already_joint = tracker_.config.Joint();
  const bool wants_leave = change->changes.empty();
  if (already_pending) {
    CODE_PROBE(raft, conf_change_refused_pending);
    return absl::FailedPreconditionError(
        absl::StrCat("conf change refused: the change at index ", pending_conf_index_,
                     " is not applied yet (applied ", log_.applied(), ")"));
  }
  if (already_joint && !wants_leave) {
    return absl::FailedPreconditionError(
        "conf change refused: the joint configuration must be left first");
  }
  if (!already_joint && wants_leave) {
    return absl::FailedPreconditionError(
        "conf change refused: not in a joint configuration, nothing to leave");
  }
  // Only one change is ever pending, so it applies to exactly this configuration: validate now
  // and give the proposer a clear error instead of a silently ignored entry.
  ConfChanger changer(tracker_, log_.last_index());
  bool auto_leave = false;
  absl::Status validity;
  if (change->IsLeaveJoint()) {
    validity = changer.LeaveJoint().status();
  } else if (change->EntersJoint(&auto_leave)) {
    validity = changer.EnterJoint(auto_leave, change->changes).status();
  } else {
    validity = changer.Simple(change->changes).status();
  }
  if (!validity.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("conf change refused: ", validity.message()));
  }
  return absl::OkStatus();
}

absl::Status RaftState::ProposeEntries(absl::Span<Entry> entries) {
  if (entries.empty()) return absl::InvalidArgumentError("proposal without entries");
  if (const Progress* self = tracker_.Get(id_); self == nullptr || self->is_learner) {
    return absl::AbortedError(
        absl::StrCat("proposal dropped: this leader was ",
                     self == nullptr ? "removed from the configuration" : "demoted to a learner",
                     " and steps down once the change is known committed"));
  }
  if (lead_transferee_ != kNoNode) {
    CODE_PROBE(raft, proposal_refused_during_transfer);
    return absl::AbortedError(absl::StrCat("proposal dropped: leadership transfer to ",
                                           lead_transferee_, " in progress"));
  }
  for (const Entry& entry : entries) {
    if (entry.type != EntryType::kConfChange) continue;
    if (entries.size() > 1) {
      return absl::InvalidArgumentError("a conf change must be proposed on its own");
    }
    if (auto s = CheckConfChangeProposal(entry); !s.ok()) return s;
    pending_conf_index_ = log_.last_index() + 1;
  }
  for (Entry& entry : entries) AppendEntry(std::move(entry));
  BcastAppend();
  return absl::OkStatus();
}

void RaftState::AppendEntry(Entry entry) {
  entry.term = term_;
  entry.index = log_.last_index() + 1;
  log_.Append(std::move(entry));
  // The leader's own copy counts toward commitment once durable: see OnPersisted.
}

bool RaftState::MaybeCommit() {
  // Raft §5.4.2: counting replicas commits only entries of the current term.
  return log_.MaybeCommit(tracker_.Committed(), term_);
}

void RaftState::BcastAppend() {
  // Coalesced: many proposals or commit advances between two Readies cost one append per
  // follower, sent when the Ready is collected.
  broadcast_pending_ = true;
}

void RaftState::FlushBroadcast() {
  if (!broadcast_pending_) return;
  broadcast_pending_ = false;
  if (role_ != Role::kLeader || tracker_.progress.size() <= 1) return;  // no one to send to
  for (auto& [id, pr] : tracker_.progress) {
    if (id != id_) MaybeSendAppend(id, NeedsEmptyAppend(pr));
  }
}

bool RaftState::NeedsEmptyAppend(const Progress& pr) const {
  // A probe must go out to learn where the logs match; otherwise only a commit to tell.
  return pr.state == ProgressState::kProbe || pr.sent_commit < log_.committed();
}

void RaftState::BcastHeartbeat() {
  Bytes context;
  if (!read_requests_.empty()) {
    context = read_requests_.back().context;
  } else if (LeaseReads()) {
    context = Bytes(EncodeLeaseProbe(ticks_));  // its echo renews the lease
  }
  for (auto& [id, pr] : tracker_.progress) {
    if (id != id_) SendHeartbeat(id, context);
  }
}

bool RaftState::MaybeSendAppend(NodeId to, bool send_if_empty) {
  Progress* pr = tracker_.Get(to);
  if (pr == nullptr || pr->IsPaused()) return false;
  const Index prev_index = pr->next - 1;
  Term prev_term = 0;
  if (!log_.TermAt(prev_index, &prev_term)) return SendSnapshot(to, *pr);
  absl::Span<const Entry> entries;
  if (pr->next <= log_.last_index()) {
    entries = log_.Slice(pr->next, log_.last_index(), config_.max_size_per_msg_bytes);
  }
  if (entries.empty() && !send_if_empty) return false;
  Message m;
  m.type = MessageType::kApp;
  m.to = to;
  m.index = prev_index;
  m.log_term = prev_term;
  m.commit = log_.committed();
  uint64_t bytes = 0;
  m.entries.reserve(entries.size());
  for (const Entry& e : entries) {
    bytes += EntrySizeBytes(e);
    m.entries.push_back(e);
  }
  const Index last_sent = entries.empty() ? prev_index : entries.back().index;
  pr->sent_commit = std::max(pr->sent_commit, std::min(m.commit, last_sent));
  pr->SentEntries(entries.size(), last_sent, bytes);
  Send(std::move(m));
  return true;
}

bool RaftState::SendSnapshot(NodeId to, Progress& pr) {
  // Only to a follower that answered lately: a snapshot is expensive to send.
  if (!pr.recent_active) return false;
  if (latest_snapshot_ == nullptr || latest_snapshot_->metadata.index < log_.offset()) {
    return false;  // the application has not handed us the snapshot covering the compaction
  }
  // A snapshot whose configuration predates the peer would be refused by it: wait for one the
  // application takes after the change (the server core snapshots after conf changes).
  const ConfState& cs = latest_snapshot_->metadata.conf_state;
  auto lists = [to](const std::vector<NodeId>& ids) {
    return std::find(ids.begin(), ids.end(), to) != ids.end();
  };
  if (!lists(cs.voters) && !lists(cs.voters_outgoing) && !lists(cs.learners) &&
      !lists(cs.learners_next)) {
    return false;
  }
  pr.BecomeSnapshot(latest_snapshot_->metadata.index);
  Message m;
  m.type = MessageType::kSnap;
  m.to = to;
  m.snapshot = latest_snapshot_;
  Send(std::move(m));
  return true;
}

void RaftState::SendHeartbeat(NodeId to, const Bytes& context) {
  const Progress* pr = tracker_.Get(to);
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  // A follower may lack entries up to our commit; it may only commit what it matched.
  m.commit = std::min(pr->match, log_.committed());
  m.context = context;
  Send(std::move(m));
}

void RaftState::SendTimeoutNow(NodeId to) {
  lease_given_away_ = true;
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  Send(std::move(m));
}

void RaftState::Send(Message m) {
  m.from = id_;
  if (m.type == MessageType::kVote || m.type == MessageType::kVoteResp ||
      m.type == MessageType::kPreVote || m.type == MessageType::kPreVoteResp) {
    RAFT_CHECK(m.term != 0) << Describe() << ": vote message without term";
  } else {
    m.term = term_;
  }
  if (NeedsDurableState(m.type)) {
    msgs_after_persist_.push_back(std::move(m));
  } else {
    msgs_.push_back(std::move(m));
  }
}

// ---------------------------------------------------------------------------------------------
// Reads

bool RaftState::CommittedEntryInCurrentTerm() const {
  return log_.TermOr0(log_.committed()) == term_;
}

void RaftState::HandleReadIndex(Message& m) {
  // Raft thesis §6.4: the leader's commit index is only known to be current once an entry of
  // its own term is committed. A sole voter too: its own copy counts only once durable, so
  // after a restart its commit index lags entries of the previous term that were committed
  // (and acknowledged) before the crash, until its first entry of this term is on disk.
  // Answering from it then served a stale read (node:real_scenarios_test, single_member_crash:
  // an acknowledged write missing from a read right after the restart).
  if (!CommittedEntryInCurrentTerm()) {
    pending_read_index_messages_.push_back(std::move(m));
    return;
  }
  const auto& voters = tracker_.config.voters;
  // A sole voter that is this node needs no quorum round; a removed leader must not answer.
  if (voters.outgoing.empty() && voters.incoming.size() == 1 && voters.incoming.Contains(id_)) {
    RespondToReadIndex(m.from, log_.committed(), std::move(m.context));
    return;
  }
  AnswerReadIndex(m);
}

void RaftState::AnswerReadIndex(const Message& m) {
  if (LeaseReads() && LeaseValid()) {
    RespondToReadIndex(m.from, log_.committed(), m.context);
    return;
  }
  // Without a lease (or without lease reads), leadership is confirmed by a heartbeat round.
  for (const ReadRequest& request : read_requests_) {
    if (request.context == m.context) return;  // already waiting for a quorum
  }
  ReadRequest request;
  request.index = log_.committed();
  request.from = m.from;
  request.context = m.context;
  request.tick = ticks_;
  read_requests_.push_back(std::move(request));
  AckRead(id_, m.context);
  BcastHeartbeat();
}

void RaftState::AckRead(NodeId from, const Bytes& context) {
  size_t found = read_requests_.size();
  for (size_t i = 0; i < read_requests_.size(); ++i) {
    if (read_requests_[i].context == context) {
      found = i;
      break;
    }
  }
  if (found == read_requests_.size()) return;
  if (LeaseReads()) NoteLeaseAck(from, read_requests_[found].tick);
  read_requests_[found].acks[from] = true;
  if (tracker_.Tally(read_requests_[found].acks) != VoteResult::kWon) return;
  // Leadership is confirmed as of this heartbeat round: every earlier request is too.
  std::vector<ReadRequest> done(std::make_move_iterator(read_requests_.begin()),
                                std::make_move_iterator(read_requests_.begin() + found + 1));
  read_requests_.erase(read_requests_.begin(), read_requests_.begin() + found + 1);
  for (ReadRequest& request : done) {
    RespondToReadIndex(request.from, request.index, std::move(request.context));
  }
}

bool RaftState::LeaseValid() const {
  if (lease_given_away_) return false;
  const int lease_ticks = LeaseTicks(config_.election_tick);
  if (lease_ticks <= 0) return false;
  VoteMap acks;
  acks[id_] = true;
  for (const auto& [id, tick] : lease_acked_tick_) {
    acks[id] = ticks_ - tick <= static_cast<uint64_t>(lease_ticks);
  }
  return tracker_.Tally(acks) == VoteResult::kWon;
}

void RaftState::NoteLeaseAck(NodeId from, uint64_t sent_tick) {
  if (sent_tick > ticks_) return;  // not ours: a heartbeat of an earlier incarnation
  uint64_t& acked = lease_acked_tick_[from];
  acked = std::max(acked, sent_tick);
}

bool RaftState::InLease() const {
  if (!config_.check_quorum) return false;
  if (lead_ != kNoNode && election_elapsed_ < config_.election_tick) return true;
  return LeaseReads() && ticks_ < static_cast<uint64_t>(config_.election_tick);
}

void RaftState::RespondToReadIndex(NodeId from, Index index, Bytes context) {
  if (from == id_) {
    read_states_.push_back(ReadState{index, std::move(context)});
    return;
  }
  Message m;
  m.type = MessageType::kReadIndexResp;
  m.to = from;
  m.index = index;
  m.context = std::move(context);
  Send(std::move(m));
}

void RaftState::ReleasePendingReadIndexMessages() {
  if (pending_read_index_messages_.empty() || !CommittedEntryInCurrentTerm()) return;
  CODE_PROBE(raft, read_index_after_leader_change);
  std::vector<Message> pending = std::move(pending_read_index_messages_);
  pending_read_index_messages_.clear();
  for (const Message& m : pending) AnswerReadIndex(m);
}

// ---------------------------------------------------------------------------------------------
// Public operations

void RaftState::Tick() {
  ++ticks_;
  if (role_ != Role::kLeader) {
    ++election_elapsed_;
    if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
      election_elapsed_ = 0;
      Hup(CampaignType::kElection);
    }
    return;
  }
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_tick) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      // Raft thesis §6.2: a leader that cannot reach a quorum steps down, so clients look
      // elsewhere instead of waiting on a leader that cannot commit.
      if (!tracker_.QuorumActive()) {
        CODE_PROBE(raft, check_quorum_step_down);
        BecomeFollower(term_, kNoNode);
        return;
      }
      for (auto& [id, pr] : tracker_.progress) {
        if (id != id_) pr.recent_active = false;
      }
    }
    // A snapshot lost in transit (or its acknowledgement) would pause the peer forever: after
    // two election timeouts without an answer, probe again, which resends it if still needed.
    for (auto& [id, pr] : tracker_.progress) {
      if (pr.state == ProgressState::kSnapshot && ++pr.snapshot_timeouts >= 2) {
        CODE_PROBE(raft, snapshot_resent_after_timeout);
        pr.pending_snapshot = 0;
        pr.BecomeProbe();
      }
    }
    if (lead_transferee_ != kNoNode) CODE_PROBE(raft, transfer_aborted_by_timeout);
    AbortLeaderTransfer();  // not done within an election timeout
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    BcastHeartbeat();
  }
}

absl::Status RaftState::Campaign() {
  if (role_ == Role::kLeader) return absl::OkStatus();
  if (!Promotable()) {
    return absl::UnavailableError(
        absl::StrCat("node ", id_, " cannot campaign: not a voter in the current configuration"));
  }
  if (HasUnappliedConfChanges()) {
    return absl::UnavailableError(
        absl::StrCat("node ", id_, " cannot campaign: committed conf changes are not applied"));
  }
  Hup(CampaignType::kElection);
  return absl::OkStatus();
}

absl::Status RaftState::Propose(Entry entry) {
  if (role_ == Role::kLeader) return ProposeEntries(absl::MakeSpan(&entry, 1));
  if (lead_ == kNoNode) {
    return absl::UnavailableError(absl::StrCat("proposal dropped: no leader (node ", id_, " is ",
                                               RoleName(role_), " in term ", term_, ")"));
  }
  if (config_.disable_proposal_forwarding) {
    return absl::AbortedError(absl::StrCat("proposal dropped: node ", id_,
                                           " is a follower and forwarding is disabled (leader ",
                                           lead_, ")"));
  }
  if (entry.type == EntryType::kConfChange) {
    if (auto change = DecodeConfChange(entry.data.view()); !change.ok()) return change.status();
  }
  Message m;
  m.type = MessageType::kProp;
  m.to = lead_;
  m.from = id_;
  m.entries.push_back(std::move(entry));
  msgs_.push_back(std::move(m));
  return absl::OkStatus();
}

ConfState RaftState::ApplyConfChange(const ConfChange& change) {
  ConfChanger changer(tracker_, log_.last_index());
  bool auto_leave = false;
  absl::StatusOr<ConfChanger::Result> result = change.IsLeaveJoint() ? changer.LeaveJoint()
                                               : change.EntersJoint(&auto_leave)
                                                   ? changer.EnterJoint(auto_leave, change.changes)
                                                   : changer.Simple(change.changes);
  // Leaders validate a change against the configuration it will apply to (only one is ever
  // pending), and every replica applies the same entries to the same configuration. A change
  // that fails here means replicas' configurations diverged: stop rather than disagree.
  RAFT_CHECK(result.ok()) << Describe() << ": committed conf change cannot apply to "
                          << DescribeConfState(tracker_.config.ToConfState()) << ": "
                          << result.status().message();
  if (change.IsLeaveJoint()) {
    CODE_PROBE(raft, joint_left);
  } else if (result->config.Joint()) {
    CODE_PROBE(raft, joint_entered);
  }
  SwitchToConfig(std::move(result->config), std::move(result->progress));
  return tracker_.config.ToConfState();
}

void RaftState::SwitchToConfig(TrackerConfig config, ProgressMap progress) {
  ++config_epoch_;
  tracker_.config = std::move(config);
  tracker_.progress = std::move(progress);
  const Progress* self = tracker_.Get(id_);
  is_learner_ = self != nullptr && self->is_learner;
  if ((self == nullptr || is_learner_) && role_ == Role::kLeader) {
    // Raft thesis §4.2.2: a leader that is no longer a voter steps down once the change that
    // removed it applies; the remaining voters elect a successor. Not at once: followers learn
    // that the change committed only from the leader (a heartbeat's commit is capped by the
    // follower's match), and until they do they keep the configuration before it, whose quorum
    // may need this node's vote, which its longer log withholds from them; a new member that
    // has not learned the change is not even a voter yet. With one more member down nobody
    // could be elected again (fuzz seed 373, 3 nodes, at 57ac8e7: n3 replaced itself by a joint
    // change and stepped down before its followers knew the leave committed; then n2 died).
    // So it keeps leading, refusing proposals, until a quorum of the new configuration reports
    // a commit index at or beyond this one; check-quorum or a higher term end it earlier.
    if (config_.step_down_on_removal) {
      retire_index_ = log_.committed();
      MaybeFinishRetirement();
      if (role_ != Role::kLeader) return;
      CODE_PROBE(raft, leader_removed_waits_for_commit_news);
      for (auto& [id, pr] : tracker_.progress) {
        if (id != id_) MaybeSendAppend(id, NeedsEmptyAppend(pr));
      }
    }
    return;
  }
  if (role_ != Role::kLeader || tracker_.config.voters.incoming.empty()) return;
  // The quorum changed: the commit index may move, and new members need appends.
  if (MaybeCommit()) {
    BcastAppend();
  } else {
    for (auto& [id, pr] : tracker_.progress) {
      if (id != id_) MaybeSendAppend(id, false);
    }
  }
  if (lead_transferee_ != kNoNode && !tracker_.IsVoter(lead_transferee_)) AbortLeaderTransfer();
}

bool RaftState::NoteAckedCommit(Progress& pr, Index commit) {
  if (commit <= pr.acked_commit) return true;
  pr.acked_commit = commit;
  if (retire_index_ == 0) return true;
  MaybeFinishRetirement();
  return role_ == Role::kLeader;
}

void RaftState::MaybeFinishRetirement() {
  if (retire_index_ == 0 || role_ != Role::kLeader) return;
  VoteMap acks;
  for (const auto& [id, pr] : tracker_.progress) {
    if (id != id_) acks[id] = pr.acked_commit >= retire_index_;
  }
  if (tracker_.Tally(acks) != VoteResult::kWon) return;
  CODE_PROBE(raft, leader_removed_steps_down);
  BecomeFollower(term_, kNoNode);
}

absl::Status RaftState::TransferLeader(NodeId transferee) {
  if (transferee == kNoNode) return absl::InvalidArgumentError("transfer to node 0");
  if (role_ == Role::kLeader) {
    const Progress* pr = tracker_.Get(transferee);
    if (pr == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("transfer refused: ", transferee, " is not a member"));
    }
    if (pr->is_learner) {
      return absl::FailedPreconditionError(
          absl::StrCat("transfer refused: ", transferee, " is a learner"));
    }
    HandleTransferLeader(transferee);
    return absl::OkStatus();
  }
  if (lead_ == kNoNode) return absl::UnavailableError("transfer refused: no leader");
  Message m;
  m.type = MessageType::kTransferLeader;
  m.to = lead_;
  m.from = transferee;
  msgs_.push_back(std::move(m));
  return absl::OkStatus();
}

absl::Status RaftState::ReadIndex(Bytes context) {
  Message m;
  m.type = MessageType::kReadIndex;
  m.from = id_;
  m.context = std::move(context);
  if (role_ == Role::kLeader) {
    HandleReadIndex(m);
    return absl::OkStatus();
  }
  if (lead_ == kNoNode) {
    return absl::UnavailableError(
        absl::StrCat("read index dropped: no leader (node ", id_, " is ", RoleName(role_), ")"));
  }
  m.to = lead_;
  msgs_.push_back(std::move(m));
  return absl::OkStatus();
}

void RaftState::ReportSnapshot(NodeId peer, bool succeeded) {
  if (role_ != Role::kLeader) return;
  Progress* pr = tracker_.Get(peer);
  if (pr == nullptr || pr->state != ProgressState::kSnapshot) return;
  // On failure forget the snapshot; on success the follower has it, and probing resumes from
  // it. Either way wait for a heartbeat response before the next append.
  if (!succeeded) pr->pending_snapshot = 0;
  pr->BecomeProbe();
  pr->msg_app_flow_paused = true;
}

void RaftState::ReportUnreachable(NodeId peer) {
  if (role_ != Role::kLeader) return;
  Progress* pr = tracker_.Get(peer);
  if (pr != nullptr && pr->state == ProgressState::kReplicate) pr->BecomeProbe();
}

absl::Status RaftState::Compact(std::shared_ptr<const Snapshot> snapshot, Index compact_index) {
  if (snapshot == nullptr) return absl::InvalidArgumentError("compact without a snapshot");
  const SnapshotMetadata& meta = snapshot->metadata;
  if (meta.index > log_.applied()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot index ", meta.index, " is beyond the applied index ", log_.applied()));
  }
  if (compact_index > meta.index) {
    return absl::InvalidArgumentError(absl::StrCat("compact index ", compact_index,
                                                   " is beyond the snapshot index ", meta.index));
  }
  if (compact_index > log_.persisted()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compact index ", compact_index, " is beyond the persisted index ", log_.persisted()));
  }
  if (meta.index >= log_.offset()) {
    if (!log_.MatchTerm(meta.index, meta.term)) {
      return absl::InvalidArgumentError(absl::StrCat("snapshot term ", meta.term, " at index ",
                                                     meta.index, " does not match the log"));
    }
  }
  if (latest_snapshot_ == nullptr || latest_snapshot_->metadata.index <= meta.index) {
    latest_snapshot_ = std::move(snapshot);
  }
  if (latest_snapshot_->metadata.index < compact_index) {
    return absl::InvalidArgumentError("compaction would leave followers without a snapshot");
  }
  log_.Compact(compact_index);
  return absl::OkStatus();
}

bool RaftState::SendsSnapshot() const {
  if (!ready_outstanding_) return false;
  for (const Message& m : ready_.messages) {
    if (m.type == MessageType::kSnap) return true;
  }
  return false;
}

absl::Status RaftState::ReplaceOutgoingSnapshots(std::shared_ptr<const Snapshot> snapshot) {
  if (!ready_outstanding_) {
    return absl::FailedPreconditionError("replacing outgoing snapshots outside a Ready");
  }
  if (snapshot == nullptr) return absl::InvalidArgumentError("replacing with no snapshot");
  const SnapshotMetadata& meta = snapshot->metadata;
  // What the application has applied once it carries out this Ready.
  Index applied = log_.applied();
  if (ready_.apply_snapshot != nullptr) {
    applied = std::max(applied, ready_.apply_snapshot->metadata.index);
  }
  if (!ready_.committed_entries.empty()) {
    applied = std::max(applied, ready_.committed_entries.back().index);
  }
  if (meta.index > applied) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot index ", meta.index, " is beyond the applied index ", applied));
  }
  if (!log_.MatchTerm(meta.index, meta.term)) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot term ", meta.term, " at index ",
                                                   meta.index, " does not match the log"));
  }
  for (const Message& m : ready_.messages) {
    if (m.type == MessageType::kSnap && m.snapshot->metadata.index > meta.index) {
      return absl::InvalidArgumentError(absl::StrCat("snapshot at ", meta.index,
                                                     " is older than the one sent, at ",
                                                     m.snapshot->metadata.index));
    }
  }
  for (Message& m : ready_.messages) {
    if (m.type == MessageType::kSnap) m.snapshot = snapshot;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Ready / Advance / OnPersisted

Index RaftState::CommittedEntriesLimit() const {
  return std::min(log_.committed(), log_.persisted());
}

bool RaftState::HasReady() const {
  if (ready_outstanding_) return false;
  if (SoftState{lead_, role_} != reported_soft_state_) return true;
  if (CurrentHardState() != offered_hard_state_) return true;
  if (incoming_snapshot_ != nullptr || snapshot_to_apply_ != nullptr) return true;
  if (log_.HasUnoffered()) return true;
  if (!msgs_.empty() || !msgs_after_persist_.empty() || !read_states_.empty()) return true;
  if (broadcast_pending_ && role_ == Role::kLeader) return true;
  const Index next_apply = log_.applied() + 1;
  return next_apply > log_.offset() && next_apply <= CommittedEntriesLimit();
}

RaftState::PendingPersist& RaftState::PushPendingPersist() {
  if (persist_count_ == persist_slots_.size()) {
    // Grow the ring, keeping order.
    std::vector<PendingPersist> grown;
    grown.reserve(std::max<size_t>(4, persist_slots_.size() * 2));
    for (size_t i = 0; i < persist_count_; ++i) {
      grown.push_back(std::move(persist_slots_[PersistSlot(i)]));
    }
    grown.resize(grown.capacity());
    persist_slots_ = std::move(grown);
    persist_head_ = 0;
  }
  PendingPersist& slot = persist_slots_[PersistSlot(persist_count_)];
  ++persist_count_;
  slot.id = 0;
  slot.has_entries = false;
  slot.last_index = 0;
  slot.last_term = 0;
  slot.snapshot = nullptr;
  slot.messages.clear();
  return slot;
}

const Ready& RaftState::GetReady() {
  RAFT_CHECK(!ready_outstanding_) << Describe() << ": GetReady before Advance";
  FlushBroadcast();
  ready_outstanding_ = true;
  Ready& rd = ready_;

  const SoftState soft{lead_, role_};
  if (soft != reported_soft_state_) {
    rd.soft_state = soft;
    reported_soft_state_ = soft;
  }

  // The write: snapshot, entries and hard state that changed since the last one.
  const HardState hs = CurrentHardState();
  const bool hs_changed = hs != offered_hard_state_;
  if (hs_changed) {
    RAFT_CHECK(hs.term >= offered_hard_state_.term)
        << Describe() << ": term decreased from " << offered_hard_state_.term;
    RAFT_CHECK(hs.commit >= offered_hard_state_.commit)
        << Describe() << ": commit decreased from " << offered_hard_state_.commit;
    RAFT_CHECK(hs.term != offered_hard_state_.term || offered_hard_state_.vote == kNoNode ||
               hs.vote == offered_hard_state_.vote)
        << Describe() << ": vote changed within term from " << offered_hard_state_.vote;
  }
  absl::Span<const Entry> entries = log_.TakeUnoffered();
  // A write that only moves the commit index needs no slot in the persist ring: no message
  // vouches for a commit index, so its acknowledgement releases nothing and counts nothing.
  // Term and vote changes do take a slot: votes are held until they are durable.
  const bool commit_only = hs_changed && entries.empty() && incoming_snapshot_ == nullptr &&
                           msgs_after_persist_.empty() && hs.term == offered_hard_state_.term &&
                           hs.vote == offered_hard_state_.vote;
  if (commit_only) {
    rd.persist.id = ++next_persist_id_;
    rd.persist.hard_state = hs;
    offered_hard_state_ = hs;
  } else if (hs_changed || incoming_snapshot_ != nullptr || !entries.empty()) {
    PendingPersist& pending = PushPendingPersist();
    pending.id = ++next_persist_id_;
    rd.persist.id = pending.id;
    if (hs_changed) {
      rd.persist.hard_state = hs;
      offered_hard_state_ = hs;
    }
    rd.persist.entries = entries;
    if (!entries.empty()) {
      pending.has_entries = true;
      pending.last_index = entries.back().index;
      pending.last_term = entries.back().term;
    }
    rd.persist.snapshot = incoming_snapshot_;
    pending.snapshot = std::move(incoming_snapshot_);
    incoming_snapshot_ = nullptr;
    pending.messages.swap(msgs_after_persist_);
  } else if (!msgs_after_persist_.empty()) {
    if (persist_count_ > 0) {
      // They vouch for state already offered: release with the newest outstanding write.
      PendingPersist& last = persist_slots_[PersistSlot(persist_count_ - 1)];
      for (Message& m : msgs_after_persist_) last.messages.push_back(std::move(m));
      msgs_after_persist_.clear();
    } else {
      std::vector<Message> durable;
      durable.swap(msgs_after_persist_);
      ReleaseMessages(durable);
    }
  }
  msgs_after_persist_.clear();

  rd.messages.swap(msgs_);

  Index next_apply = log_.applied() + 1;
  if (snapshot_to_apply_ != nullptr) {
    rd.apply_snapshot = std::move(snapshot_to_apply_);
    snapshot_to_apply_ = nullptr;
    next_apply = rd.apply_snapshot->metadata.index + 1;
  }
  const Index limit = CommittedEntriesLimit();
  if (next_apply > log_.offset() && next_apply <= limit) {
    rd.committed_entries =
        log_.Slice(next_apply, limit, config_.max_committed_size_per_ready_bytes);
  }
  rd.read_states.swap(read_states_);
  return rd;
}

void RaftState::Advance() {
  RAFT_CHECK(ready_outstanding_) << Describe() << ": Advance without GetReady";
  Ready& rd = ready_;
  if (rd.apply_snapshot != nullptr) log_.AppliedTo(rd.apply_snapshot->metadata.index);
  if (!rd.committed_entries.empty()) log_.AppliedTo(rd.committed_entries.back().index);
  rd.soft_state.reset();
  // Field by field rather than from a PersistRequest{} temporary, which the profile showed
  // stalling on store forwarding in this hot path.
  rd.persist.id = 0;
  rd.persist.hard_state.reset();
  rd.persist.entries = {};
  rd.persist.snapshot = nullptr;
  rd.apply_snapshot = nullptr;
  rd.messages.clear();
  rd.committed_entries = {};
  rd.read_states.clear();
  ready_outstanding_ = false;
  if (deferred_persisted_id_ != 0) {
    OnPersisted(std::exchange(deferred_persisted_id_, 0));
  }

  // Thesis §4.3: leave a joint configuration automatically once it has applied.
  if (role_ == Role::kLeader && tracker_.config.auto_leave &&
      log_.applied() >= pending_conf_index_) {
    Entry leave{0, 0, EntryType::kConfChange, Bytes(EncodeConfChange(ConfChange{}))};
    auto status = ProposeEntries(absl::MakeSpan(&leave, 1));
    if (status.ok()) CODE_PROBE(raft, joint_auto_leave_proposed);
    RAFT_CHECK(status.ok() || lead_transferee_ != kNoNode)
        << Describe() << ": cannot leave joint configuration: " << status.message();
  }
}

void RaftState::ReleaseMessages(std::vector<Message>& messages) {
  for (Message& m : messages) {
    if (m.to == id_) {
      (void)StepInternal(std::move(m));  // our own vote, now durable
    } else {
      msgs_.push_back(std::move(m));
    }
  }
  messages.clear();
}

void RaftState::OnPersisted(uint64_t id) {
  RAFT_CHECK(id <= next_persist_id_) << Describe() << ": persisted unknown write " << id;
  if (ready_outstanding_) {
    // Releasing our own vote could make us leader and append to the log the outstanding
    // Ready's spans point into: finish the acknowledgement in Advance.
    deferred_persisted_id_ = std::max(deferred_persisted_id_, id);
    return;
  }
  bool any = false;
  while (persist_count_ > 0 && persist_slots_[persist_head_].id <= id) {
    PendingPersist& pending = persist_slots_[persist_head_];
    if (pending.snapshot != nullptr) {
      const SnapshotMetadata& meta = pending.snapshot->metadata;
      // Skip it if a newer snapshot replaced the log meanwhile.
      if (log_.offset() == meta.index && log_.MatchTerm(meta.index, meta.term)) {
        log_.PersistedTo(meta.index, meta.term);
        // The log now starts after it: as leader, this node must be able to send a snapshot to a
        // follower that needs one before its application hands it a newer one (Compact), as
        // etcd's storage holds the applied snapshot. The mark carries no data (the server sends
        // its current state: ReplaceOutgoingSnapshots). Fuzz seed 162562: a member that joined
        // by snapshot led with nothing to send the two members its quorum needed, for good.
        if (latest_snapshot_ == nullptr || latest_snapshot_->metadata.index < meta.index) {
          CODE_PROBE(raft, received_snapshot_kept_for_followers);
          auto mark = std::make_shared<Snapshot>();
          mark->metadata = meta;
          latest_snapshot_ = std::move(mark);
        }
        snapshot_to_apply_ = std::move(pending.snapshot);
      } else {
        CODE_PROBE(raft, persist_snapshot_superseded);
      }
      pending.snapshot = nullptr;
    }
    if (pending.has_entries) log_.PersistedTo(pending.last_index, pending.last_term);
    persist_head_ = PersistSlot(1);
    --persist_count_;
    if (!pending.messages.empty()) {
      std::vector<Message> released;
      released.swap(pending.messages);
      ReleaseMessages(released);
      // The freed slot keeps the (now empty) vector's capacity: in steady state neither the held
      // responses nor their queue allocate.
      pending.messages.swap(released);
    }
    any = true;
  }
  if (persist_count_ == 0) persist_head_ = 0;
  if (!any || role_ != Role::kLeader) return;
  Progress* self = tracker_.Get(id_);
  if (self != nullptr && self->MaybeUpdate(log_.persisted()) && MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BcastAppend();
  }
}

Status RaftState::GetStatus() const {
  Status status;
  status.id = id_;
  status.hard_state = CurrentHardState();
  status.soft_state = SoftState{lead_, role_};
  status.applied = log_.applied();
  status.last_index = log_.last_index();
  status.first_index = log_.first_index();
  status.persisted_index = log_.persisted();
  status.lead_transferee = lead_transferee_;
  status.conf_state = tracker_.config.ToConfState();
  if (role_ == Role::kLeader) {
    for (const auto& [id, pr] : tracker_.progress) {
      ProgressStatus ps;
      ps.match = pr.match;
      ps.next = pr.next;
      ps.state = pr.state;
      ps.is_learner = pr.is_learner;
      ps.recent_active = pr.recent_active;
      ps.pending_snapshot = pr.pending_snapshot;
      ps.inflight_count = pr.inflights.count();
      status.progress.emplace(id, ps);
    }
  }
  return status;
}

// ---------------------------------------------------------------------------------------------
// RawNode

RestartState BootstrapState(const std::vector<NodeId>& voters,
                            const std::vector<NodeId>& learners) {
  RestartState state;
  std::vector<ConfChangeSingle> members;
  for (NodeId id : voters) members.push_back({ConfChangeType::kAddVoter, id});
  for (NodeId id : learners) members.push_back({ConfChangeType::kAddLearner, id});
  ConfState conf_state;
  for (const ConfChangeSingle& member : members) {
    ConfChange change;
    change.changes.push_back(member);
    const Index index = state.entries.size() + 1;
    state.entries.push_back(
        Entry{1, index, EntryType::kConfChange, Bytes(EncodeConfChange(change))});
  }
  conf_state.voters = voters;
  conf_state.learners = learners;
  std::sort(conf_state.voters.begin(), conf_state.voters.end());
  std::sort(conf_state.learners.begin(), conf_state.learners.end());
  state.hard_state = HardState{1, kNoNode, state.entries.size()};
  state.applied = 0;
  // The node starts with the resulting configuration so it can campaign at once; applying the
  // entries later re-adds the same members.
  state.conf_state = std::move(conf_state);
  return state;
}

absl::StatusOr<std::unique_ptr<RawNode>> RawNode::Create(const Config& config,
                                                         RestartState restart) {
  if (config.id == kNoNode) return absl::InvalidArgumentError("config: id must not be 0");
  if (config.heartbeat_tick <= 0) {
    return absl::InvalidArgumentError("config: heartbeat_tick must be positive");
  }
  if (config.election_tick <= config.heartbeat_tick) {
    return absl::InvalidArgumentError(absl::StrCat("config: election_tick (", config.election_tick,
                                                   ") must exceed heartbeat_tick (",
                                                   config.heartbeat_tick, ")"));
  }
  if (config.max_inflight_msgs == 0) {
    return absl::InvalidArgumentError("config: max_inflight_msgs must be at least 1");
  }
  if (config.read_only_option == ReadOnlyOption::kLeaseBased && !config.check_quorum) {
    return absl::InvalidArgumentError(
        "config: lease-based reads require check_quorum (a leader must know it still leads)");
  }
  auto state = std::make_unique<RaftState>(config, RestartState{});
  if (auto status = state->Init(restart); !status.ok()) return status;
  return std::unique_ptr<RawNode>(new RawNode(std::move(state)));
}

RawNode::RawNode(std::unique_ptr<RaftState> state) : state_(std::move(state)) {}
RawNode::~RawNode() = default;

absl::Status RawNode::Step(Message message) {
  state_->CheckNoReadyOutstanding();
  return state_->Step(std::move(message));
}
void RawNode::Tick() {
  state_->CheckNoReadyOutstanding();
  state_->Tick();
}
absl::Status RawNode::Campaign() {
  state_->CheckNoReadyOutstanding();
  return state_->Campaign();
}
absl::Status RawNode::Propose(Bytes data) {
  state_->CheckNoReadyOutstanding();
  return state_->Propose(Entry{0, 0, EntryType::kNormal, std::move(data)});
}
absl::Status RawNode::ProposeConfChange(const ConfChange& change) {
  state_->CheckNoReadyOutstanding();
  return state_->Propose(Entry{0, 0, EntryType::kConfChange, Bytes(EncodeConfChange(change))});
}
ConfState RawNode::ApplyConfChange(const ConfChange& change) {
  return state_->ApplyConfChange(change);
}
absl::Status RawNode::TransferLeader(NodeId transferee) {
  state_->CheckNoReadyOutstanding();
  return state_->TransferLeader(transferee);
}
absl::Status RawNode::ReadIndex(Bytes context) {
  state_->CheckNoReadyOutstanding();
  return state_->ReadIndex(std::move(context));
}
void RawNode::ReportSnapshot(NodeId peer, bool succeeded) {
  state_->ReportSnapshot(peer, succeeded);
}
void RawNode::ReportUnreachable(NodeId peer) { state_->ReportUnreachable(peer); }
absl::Status RawNode::Compact(std::shared_ptr<const Snapshot> snapshot, Index compact_index) {
  state_->CheckNoReadyOutstanding();
  return state_->Compact(std::move(snapshot), compact_index);
}
bool RawNode::HasReady() const { return state_->HasReady(); }
const Ready& RawNode::GetReady() { return state_->GetReady(); }
void RawNode::Advance() { state_->Advance(); }
void RawNode::OnPersisted(uint64_t id) { state_->OnPersisted(id); }
Status RawNode::GetStatus() const { return state_->GetStatus(); }
NodeId RawNode::id() const { return state_->id(); }
Index RawNode::LastIndex() const { return state_->last_index(); }
Term RawNode::CurrentTerm() const { return state_->term(); }
std::optional<Term> RawNode::LogTerm(Index index) const { return state_->log_term(index); }
ConfState RawNode::GetConfState() const { return state_->conf_state(); }
bool RawNode::ConfStateIs(const ConfState& cs) const { return state_->conf_state_is(cs); }
uint64_t RawNode::ConfigEpoch() const { return state_->config_epoch(); }
absl::Status RawNode::ReplaceOutgoingSnapshots(std::shared_ptr<const Snapshot> snapshot) {
  return state_->ReplaceOutgoingSnapshots(std::move(snapshot));
}
bool RawNode::SendsSnapshot() const { return state_->SendsSnapshot(); }
bool RawNode::IsLeader() const { return state_->is_leader(); }
HardState RawNode::GetHardState() const { return state_->hard_state(); }
SoftState RawNode::GetSoftState() const { return state_->soft_state(); }
NodeId RawNode::LeadTransferee() const { return state_->lead_transferee(); }

}  // namespace kvstore::raft
