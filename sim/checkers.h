#ifndef KVSTORE_SIM_CHECKERS_H_
#define KVSTORE_SIM_CHECKERS_H_

// The simulator's standing checkers, apart from the driver that carries out what members do
// (LogCabin keeps its invariants in one file too). A checker observes; it never acts on the
// world: the driver (sim/simulation.cc) calls its hooks at the moments named below, and the
// checker reads what it needs through CheckedWorld and the read-only views the hooks pass. So a
// different driver (the member library of a real node, a test feeding events by hand) can drive
// the same checkers.
//
// Hooks, in the order the driver calls them for a member:
//   OnStart      a member process started (a new incarnation), its state recovered
//   OnRecovered  what its WAL recovered, before the server core starts from it
//   OnReady      the member is about to carry out a Ready (persist, send, apply)
//   OnStep       after every call into a member (tick, delivery, fsync, request, drain)
// and, as they happen: OnSubmit / OnAnswer (a request taken and answered), OnWatchResponse (a
// watch delivered).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "core/base/errors.h"
#include "core/raft/rand.h"
#include "core/raft/types.h"
#include "core/server/requests.pb.h"
#include "core/server/server.h"
#include "sim/reference_model.h"
#include "store/file_system.h"
#include "store/wal.h"

namespace kvstore::sim {

// A digest of bytes for equality checks within a run (never printed or hashed into the trace).
// Sixteen bytes per step: the two words, each offset by a constant, multiplied into 128 bits and
// folded to 64, then mixed into the state by an odd multiply (one-to-one in the fold). That is
// half the instructions of the splitmix finalizer per eight bytes it replaced (itself a quarter
// of byte-wise FNV-1a's); entries and watch values are digested on every node that applies or
// delivers them (3-4% of a fuzz seed with kilobyte values).
inline uint64_t Digest(absl::string_view bytes, uint64_t seed) {
  constexpr uint64_t kA = 0xA0761D6478BD642Full;
  constexpr uint64_t kB = 0xE7037ED1A0B428DBull;
  constexpr uint64_t kM = 0x9E3779B97F4A7C15ull;
  uint64_t h = raft::SplitMix64::Mix(seed ^ bytes.size());
  const char* p = bytes.data();
  size_t i = 0;
  for (; i + 16 <= bytes.size(); i += 16) {
    uint64_t a, b;
    std::memcpy(&a, p + i, 8);
    std::memcpy(&b, p + i + 8, 8);
    const unsigned __int128 m = static_cast<unsigned __int128>(a ^ kA) * (b ^ kB);
    h = (h ^ static_cast<uint64_t>(m) ^ static_cast<uint64_t>(m >> 64)) * kM;
  }
  if (i + 8 <= bytes.size()) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    h = raft::SplitMix64::Mix(h ^ word);
    i += 8;
  }
  uint64_t tail = 0;
  if (i < bytes.size()) std::memcpy(&tail, p + i, bytes.size() - i);
  return raft::SplitMix64::Mix(h ^ tail ^ 0xFF);
}

// What a checker may ask of the world it observes. The simulation implements it; a unit test
// implements it with a few maps.
class CheckedWorld {
 public:
  virtual ~CheckedWorld() = default;
  // Records a violation (it fails the run).
  virtual void Violation(std::string what) = 0;
  // Adds a line to the run's trace (and its hash).
  virtual void Trace(const std::string& line) = 0;
  // The log member `id` has made durable on its disk: the WAL's while it runs, as of its last
  // crash while it is down; nullptr for a member that never started.
  virtual const store::Wal::LogIndex* DurableLog(raft::NodeId id) const = 0;
};

// The Raft and storage checkers: election safety, per-node invariants (term and commit never
// decrease within an incarnation, commit <= last index, a leader voted for itself, one vote per
// term), the commit rule (§5.4.2) and commit quorum on the disks, configuration changes only on
// apply, leader completeness, state machine safety, exactly-once apply, durable before reply,
// and recovery of everything a WAL made durable. It feeds the reference model the committed log
// (each index at its first apply).
class ServerRuleCheckers;

class RaftCheckers {
 public:
  // The per-incarnation state of one member (the driver keeps the handle Track gives).
  struct NodeState {
    raft::NodeId id = raft::kNoNode;
    raft::HardState last_hard_state;
    raft::Term vote_term = 0;
    raft::NodeId vote_in_term = raft::kNoNode;
    // The first vote of any incarnation (a learner never votes: scenario expectations ask).
    std::optional<std::pair<raft::Term, raft::NodeId>> first_vote;
    raft::Term led_term = 0;  // the term it led at the last check; 0 when it did not lead
    // The Raft configuration at the last check, and whether a Ready since then applied a conf
    // change entry or installed a snapshot (the only ways it may change).
    raft::ConfState conf_state;
    bool conf_may_change = false;
    // The member's raft::RawNode::ConfigEpoch() at the last check: the configuration is compared
    // only when it moved (the comparison on every step cost 1.8% of a run).
    uint64_t conf_epoch = 0;
    // The highest log index handed to this node's state machine; starts at what its durable
    // backend had applied (its consistent index) when the node started.
    raft::Index applied_high = 0;
  };

  // `model` (not owned) is fed each committed index at its first apply. Recovery is checked by
  // opening the WAL again, read-only, in `wal_dir` with `wal_segment_bytes`.
  RaftCheckers(CheckedWorld* world, ReferenceModel* model, std::string wal_dir,
               uint64_t wal_segment_bytes);
  // Also feeds `rules` (not owned) what it observes: configuration changes and first applies.
  void set_rules(ServerRuleCheckers* rules) { rules_ = rules; }

  // The checker state of member `id`, created on first use; the reference stays valid.
  NodeState& Track(raft::NodeId id);
  const NodeState* Find(raft::NodeId id) const;

  // A new incarnation of the member started from its disk.
  void OnStart(NodeState& node, const server::Server& server);
  // What its WAL recovered (`fs`: its disk). `durable_before`: the log it had made durable as of
  // its last crash, nullptr if it never crashed.
  void OnRecovered(NodeState& node, const raft::RestartState& state, store::FileSystem* fs,
                   const store::Wal::LogIndex* durable_before);
  // The member is about to carry out `ready`; `wal` is its log (what is durable so far).
  void OnReady(NodeState& node, const server::Server& server, const server::Ready& ready,
               const store::Wal& wal);
  // After every call into a running member. Returns the member's configuration when it changed
  // since the last step (the driver starts the processes of members it names), else nullptr.
  const raft::ConfState* OnStep(NodeState& node, const server::Server& server);

  // Joint configurations (Raft thesis §4.3) entered and left, counted per node that applies them.
  uint64_t joint_entered() const { return joint_entered_; }
  uint64_t joint_left() const { return joint_left_; }

 private:
  void CheckLeaderCompleteness(const NodeState& node, const server::Server& server);
  void CheckCommitDurable(const NodeState& leader, const raft::ConfState& conf, raft::Index commit,
                          raft::Term term);

  CheckedWorld* world_;
  ReferenceModel* model_;
  ServerRuleCheckers* rules_ = nullptr;
  std::string wal_dir_;
  uint64_t wal_segment_bytes_;
  std::map<raft::NodeId, std::unique_ptr<NodeState>> nodes_;
  std::map<raft::Term, raft::NodeId> leaders_by_term_;
  // The highest commit index any member held while in each term. A member learns a commit only
  // from a leader of its term or an earlier one (or recovers it from its WAL), so every index up
  // to committed_in_term_[t] was committed by a leader of term t or before: Leader Completeness
  // holds it against every leader of a later term, and only against those.
  std::map<raft::Term, raft::Index> committed_in_term_;
  std::map<raft::Index, std::pair<raft::Term, uint64_t>> applied_entries_;  // index -> term, hash
  // The data of the last first-applied entries (those of kFirstAppliedMinBytes or more), by
  // increasing index: a later node applying the same buffer (entries reach followers in shared
  // Bytes) is spared digesting it. Holding the buffers keeps their addresses from being reused.
  static constexpr size_t kFirstAppliedKept = 1024;
  static constexpr size_t kFirstAppliedMinBytes = 256;  // smaller ones are digested every time
  std::deque<std::pair<raft::Index, raft::Bytes>> first_applied_;
  bool SharesFirstApplied(const raft::Entry& entry) const;
  DecodedEntry decoded_;  // the first-applied entry's request, for the model and the rules
  uint64_t joint_entered_ = 0;
  uint64_t joint_left_ = 0;
};

// The checkers of what clients are told: write provenance (an "ok" to a put or a cas comes from
// a member whose store holds that key and value at the response's revision), serializable reads
// (never a value nobody wrote), and store hash agreement between members at equal revisions.
class AnswerCheckers {
 public:
  explicit AnswerCheckers(CheckedWorld* world) : world_(world) {}

  // A client is about to write `value` (a put, or a cas's new value).
  void NoteWritten(const std::string& value) { written_values_.insert(value); }
  // Member `id` acknowledged `key`=`value` at `revision`; `server` is its server, nullptr when
  // it is down by now.
  void OnAcknowledgedWrite(raft::NodeId id, const server::Server* server, const std::string& key,
                           const std::string& value, mvcc::Revision revision);
  // Member `id` answered a serializable read of `key` with `value` (present).
  void OnSerializableRead(raft::NodeId id, const std::string& key, const std::string& value);
  // A running member: its id, its server, and the backend its store keeps its records in.
  struct LiveStore {
    raft::NodeId id = raft::kNoNode;
    const server::Server* server = nullptr;
    const mvcc::Backend* backend = nullptr;
  };
  // Compares every pair of live members' stores at the highest revision both have (what
  // Store::Hash covers: the compact revision and every record through that revision).
  // `live`: each running member, in id order.
  void CheckHashes(const std::vector<LiveStore>& live);

 private:
  CheckedWorld* world_;
  // Every value a write or cas tried to store (membership only: never iterated).
  absl::flat_hash_set<std::string> written_values_;
};

// The server's own rules (core/server/server.h), each verified from outside at the moment it
// applies, as the commit-rule checker verifies Raft's:
//   - promotion: when a node applies a configuration that makes a learner a voter, the
//     learner's durable log (on its simulated disk) holds at least kLearnerReadyRatio of the
//     entries the leader held when it accepted the promote request (the server's readiness
//     rule judges the learner's acknowledged match index, which is never beyond its durable log;
//     the leader's own match index is read when the request is submitted);
//   - max learners: no configuration any node applies has more than max_learners learners;
//   - request limits: no entry applied holds more than max_request_bytes, nor a txn of more than
//     max_txn_ops compares or operations per branch (a nested txn: max_txn_ops less its holder's
//     largest count, as etcd's checkTxnRequest); every request the
//     driver submits is measured: one over a limit (a put's value above max_request_bytes, a txn
//     beyond max_txn_ops, a request whose bytes alone pass max_request_bytes) is answered with
//     the limit's refusal (VALUE_TOO_LARGE, TOO_MANY_OPS, in the order the server validates; a
//     request too large only as a whole is refused when proposed, REQUEST_TOO_LARGE or a refusal
//     a proposal meets before, such as NOSPACE) and never applies; one well within the limits is
//     never refused for one;
//   - quota: the checker follows the NOSPACE alarm through the applied log (raised by an alarm
//     entry, cleared by a disarm: of every member, or of the one member a disarm names). An
//     entry that adds data (a put, a txn with a put in either branch, nested ones included, a
//     lease grant) applied while the alarm is active must be refused: its proposer never
//     answers it OK. One applied while no alarm is active is never refused NOSPACE (after a
//     disarm writes resume). What such a refused entry would have written is judged by the
//     reference model, whose watch events would show it. etcd 3.4's raising rule, judged when
//     it applies: a request submitted to a member whose backend size plus the request's cost
//     (etcd's backendQuota.Cost, QuotaCost below) reaches the quota is never answered OK; a
//     NOSPACE answer needs a reason (that quota refusal, an alarm the member listed when the
//     request was submitted, or its entry applied in the alarm); and each alarm a member raises
//     itself (a system entry, one per proposal: duplicates are skipped) stands for one write it
//     refused for its quota while it listed no alarm of its own, or for one Ready of that
//     member that applied a write past its quota and after which it listed no alarm (the
//     backend never shrinks within a Ready, so a write that did not fit before it applied does
//     not fit the size after the Ready either). Reasons whose proposal was lost stay counted.
// The reference model (reference_model.h) replays the same alarms and judges every answer too.
class ServerRuleCheckers {
 public:
  struct Limits {
    size_t max_learners = server::kDefaultMaxLearners;
    uint64_t max_request_bytes = server::kDefaultMaxRequestBytes;
    size_t max_txn_ops = server::kDefaultMaxTxnOps;
    uint64_t quota_bytes = server::kDefaultQuotaBytes;
  };
  // How often each rule was judged (a rule never judged in a campaign is not tested by it).
  struct Counts {
    uint64_t promotions_submitted = 0;  // promote requests a leader took
    uint64_t promotions_judged = 0;     // promotions applied, judged against the learner's disk
    uint64_t promotions_unjudged = 0;   // applied with no promote request seen (none refused)
    uint64_t configurations_judged = 0;
    uint64_t configurations_at_learner_limit = 0;
    uint64_t entries_judged = 0;
    uint64_t txns_judged = 0;  // entries large enough to hold a txn over the ops limit, parsed
    // Request limits: requests measured over a limit, and their refusals judged (right code);
    // refusals for a limit of requests measured well within the limits (each a violation);
    // answers near a limit (or of requests not seen) that the measure cannot judge.
    uint64_t over_limit_submitted = 0;
    uint64_t over_limit_refused = 0;
    uint64_t within_limits_submitted = 0;
    uint64_t limit_refusals_unjudged = 0;
    // Quota: alarms raised and cleared in the applied log; entries adding data applied while
    // the alarm was active (must be refused) and outside it (must not be refused NOSPACE);
    // their proposers' answers judged.
    uint64_t nospace_alarms_raised = 0;
    uint64_t nospace_alarms_disarmed = 0;
    uint64_t writes_applied_in_alarm = 0;
    uint64_t writes_applied_outside_alarm = 0;
    uint64_t quota_answers_judged = 0;
    uint64_t applied_past_quota_answers = 0;  // of those, NOSPACE for a write applied past it
    // The raising rule: requests submitted past the quota (must be refused), NOSPACE answers
    // whose reason was checked, alarms raised by members themselves, judged against the
    // refusals and over-quota applies seen on that member.
    uint64_t quota_full_submitted = 0;
    uint64_t nospace_answers_judged = 0;
    uint64_t member_alarms_judged = 0;
  };
  // What Measure finds of a request: the refusal the server owes it (an over-limit request),
  // or whether it is well within every limit.
  struct Measured {
    std::optional<ErrorCode> owed;  // VALUE_TOO_LARGE, TOO_MANY_OPS or REQUEST_TOO_LARGE
    bool within = false;            // no limit may refuse it
  };

  ServerRuleCheckers(CheckedWorld* world, Limits limits) : world_(world), limits_(limits) {}

  // Leader `node` took a promote request (`request`) for `learner` while its own match index
  // was `leader_match`.
  void OnPromoteSubmitted(raft::NodeId node, server::RequestId request, raft::NodeId learner,
                          raft::Index leader_match);
  // Measures `request` against the limits (before the driver submits it).
  Measured Measure(const server::Request& request) const;
  // `node` took `request` (measured by Measure) as its request `id`.
  void OnSubmit(raft::NodeId node, server::RequestId id, const Measured& measured);
  // Before `node` takes `request`: its backend's size and whether it lists any alarm. Call
  // OnQuotaSubmitted with the result and the request id once it is taken.
  struct QuotaAtSubmit {
    bool full = false;              // size + QuotaCost(request) reaches the quota (cost > 0)
    bool alarm_listed = false;      // the member lists a NOSPACE alarm
    bool own_alarm_listed = false;  // ... its own (it raises no other)
  };
  QuotaAtSubmit MeasureQuota(const server::Request& request, uint64_t backend_bytes,
                             bool alarm_listed, bool own_alarm_listed) const;
  void OnQuotaSubmitted(raft::NodeId node, server::RequestId id, const QuotaAtSubmit& quota);
  // `node` handed out a Ready (its committed entries applied by then), its backend now holds
  // `backend_bytes` and it lists an alarm or not. Its own writes that may have applied past
  // its quota (the backend now plus their cost reaches it) may be answered NOSPACE though they
  // applied (etcd's quotaApplierV3).
  void OnApplied(raft::NodeId node, const server::Ready& ready, uint64_t backend_bytes,
                 bool alarm_listed);
  // etcd 3.4's backendQuota.Cost of a request, and of an applied entry's request.
  static uint64_t QuotaCost(const server::Request& request);
  static uint64_t QuotaCost(const server::pb::InternalRequest& internal);
  // `node` answered its request `response.request_id`.
  void OnAnswer(raft::NodeId node, const server::Response& response);
  // `node`'s configuration changed from `before` to `after` (a conf change entry or a snapshot
  // applied).
  void OnConfChanged(raft::NodeId node, const raft::ConfState& before,
                     const raft::ConfState& after);
  // An entry applied for the first time anywhere.
  void OnFirstApply(const raft::Entry& entry);
  // The same, with the entry's decoding (of entry.data) shared with other checkers.
  void OnFirstApply(const raft::Entry& entry, DecodedEntry* decoded);

  const Counts& counts() const { return counts_; }
  bool nospace_alarm_active() const { return !alarms_.empty(); }

 private:
  using ProposalKey = std::pair<raft::NodeId, server::RequestId>;  // (proposer, request id)
  // Answers awaited are kept for this many requests at most (one never answered, its member
  // crashed, is forgotten in time).
  static constexpr size_t kMaxAwaited = 1 << 14;
  void CheckTxn(raft::Index index, const server::pb::TxnRequest& txn, int depth, size_t limit);
  void ForgetOldest(std::map<ProposalKey, bool>* awaited, std::deque<ProposalKey>* order);

  CheckedWorld* world_;
  Limits limits_;
  Counts counts_;
  // Promote requests not refused (yet): (leader, request id) -> (learner, leader's match).
  std::map<std::pair<raft::NodeId, server::RequestId>, std::pair<raft::NodeId, raft::Index>>
      promotions_;
  // Requests measured over a limit: the refusal owed (kept after the answer: it must never
  // apply either). Few: the workload sends one now and then.
  std::map<ProposalKey, ErrorCode> over_limit_;
  // Requests measured within the limits, until answered: true.
  std::map<ProposalKey, bool> within_;
  std::deque<ProposalKey> within_order_;
  // Members whose NOSPACE alarm is active, as the applied log says.
  std::set<raft::NodeId> alarms_;
  // Entries adding data, applied, until their proposer answers: whether the alarm was active.
  std::map<ProposalKey, bool> data_writes_;
  std::deque<ProposalKey> data_writes_order_;
  // Writes whose proposer applied them when its backend may have been past its quota (set by
  // OnApplied before the Ready's answers), until answered: a NOSPACE answer is allowed.
  std::map<ProposalKey, bool> past_quota_;
  std::deque<ProposalKey> past_quota_order_;
  // Requests submitted, until answered: true if past the quota, false if only the member's
  // alarm was listed (requests with neither are not kept).
  std::map<ProposalKey, bool> quota_submits_;
  std::deque<ProposalKey> quota_submits_order_;
  // Per member: quota refusals and over-quota Readies not yet matched by an alarm it raised.
  std::map<raft::NodeId, uint64_t> alarm_reasons_;
  // Alarm entries raised by members (proposer, request id) already applied (duplicates skip).
  std::map<ProposalKey, bool> member_alarms_seen_;
  std::deque<ProposalKey> member_alarms_order_;
};

// The watch checkers. Every member's all-keys watch (the driver opens it at each start of the
// process, from the compact revision, and again after the server canceled it) delivers
// consecutive revisions, each exactly as the member's store recorded it, as the reference model
// replays the log (judged at a revision's first delivery) and as every other member delivered
// it; the server cancels it only when the revisions it still needs were compacted while it
// lagged. A scenario's watch never goes back, never delivers an event before its start
// revision, nor a progress notification that would let a client resume before it (etcd #20221).
class WatchCheckers {
 public:
  // The watches of one member that the checker follows; the driver keeps one per member, opens
  // the watches and tells the checker (a new process starts with none).
  struct NodeWatches {
    raft::NodeId id = raft::kNoNode;
    mvcc::WatchId watch_id = 0;        // the all-keys watch; 0: none open
    mvcc::Revision next_revision = 0;  // the revision it must deliver next
    // The start revision the watch asked for, until its first event arrives (0 after it). It
    // may be below next_revision: a watch from revision 1 (the empty store) can first deliver
    // revision 2, but the server holds it at 1 until then.
    mvcc::Revision requested_from = 0;
    // Canceled for compaction: the client watches again from here (0: nothing to reopen).
    mvcc::Revision reopen_from = 0;
    // Scenario watches: id -> (start revision, last revision delivered).
    std::map<mvcc::WatchId, std::pair<mvcc::Revision, mvcc::Revision>> scenario;
  };

  // `model` (not owned) judges each revision's events at their first delivery.
  WatchCheckers(CheckedWorld* world, ReferenceModel* model) : world_(world), model_(model) {}

  // A new process of member `node.id` started: its scenario watches died with the old one.
  void OnStart(NodeWatches& node) { node.scenario.clear(); }
  // The driver opened the member's all-keys watch `id` (0: refused) from `start`. Revision 1 is
  // the empty store: its first delivery must be max(start, 2).
  void OnAllKeysWatch(NodeWatches& node, mvcc::WatchId id, mvcc::Revision start) {
    node.watch_id = id;
    node.next_revision = std::max<mvcc::Revision>(start, 2);
    node.requested_from = start;
    node.reopen_from = 0;
  }
  // A scenario opened watch `id` from `start`.
  void OnScenarioWatch(NodeWatches& node, mvcc::WatchId id, mvcc::Revision start) {
    node.scenario[id] = {start, 0};
  }
  // The driver's reopening of a canceled watch found its start compacted meanwhile too.
  void NoteReopenCompacted() { ++canceled_compacted_; }
  // The member delivered `response`; `server` is its server (its store's history is read).
  void OnWatchResponse(NodeWatches& node, const server::Server& server,
                       const mvcc::WatchResponse& response);

  // All-keys watches the server canceled because what they needed was compacted while they
  // lagged (and reopenings that met a compaction again).
  uint64_t canceled_compacted() const { return canceled_compacted_; }

 private:
  void CheckAllKeys(NodeWatches& node, const server::Server& server,
                    const mvcc::WatchResponse& response);
  void CheckScenario(NodeWatches& node, const mvcc::WatchResponse& response);

  CheckedWorld* world_;
  ReferenceModel* model_;
  // Revision -> digest of its watch events, and the node whose store confirmed them.
  std::map<mvcc::Revision, std::pair<uint64_t, raft::NodeId>> digests_;
  uint64_t canceled_compacted_ = 0;
};

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_CHECKERS_H_
