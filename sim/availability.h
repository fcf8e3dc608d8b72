#ifndef KVSTORE_SIM_AVAILABILITY_H_
#define KVSTORE_SIM_AVAILABILITY_H_

// The availability checker. Pre-vote, check-quorum and leader transfer exist for availability,
// not safety: a bug in them breaks no safety checker, only the cluster's calm. This checker
// judges calm windows, the stretches of a run in which the environment is within what Raft's
// timeouts are designed for (sim::Simulation::AvailabilityView says when: every member up and
// running at the nominal tick rate, no partition, cut, clog or slow link, messages lost rarely
// and delivered well within an election timeout).
//
//   - A stable leader is never deposed. A leader that a quorum of its voters follows in its term
//     when calm begins (a member that was cut off rejoins, a crashed one restarts), or that
//     becomes so during calm, keeps leading in that term as long as calm lasts (Raft thesis §9.6:
//     pre-vote keeps a rejoining member from raising its term; §4.2.3: check-quorum's lease keeps
//     the followers from granting it votes). The followers' leases must outlast the leader's next
//     heartbeat: a lease that lapses before it lands, the leader having been cut off in the
//     fault, lets them grant votes. A leader becomes stable during calm only while no voter
//     campaigns: a campaign begun in the fault may hold grants of members whose lease expired
//     then, and win. For the same reason a leader that got its quorum in the fault while a
//     member had a higher term, or campaigned, may be deposed by that term, or one above it,
//     but by no later one. Exceptions, which end the leader's stability:
//     a leader transfer asked for, a configuration that no longer has the leader as a voter.
//   - A leader transfer asked for in calm completes within an election timeout (thesis §3.10;
//     etcd aborts it after one): the transferee leads in a higher term by then. Proposals made
//     to the old leader meanwhile are refused at once (etcd's ErrProposalDropped; here
//     NO_LEADER, "proposal dropped"), never accepted: the simulation checks each response.
//   - Elections per healed fault: from the start of a calm window until a stable leader, the
//     terms a leader is elected in are counted. The count is reported (the campaign's summary)
//     and must stay within kMaxElectionsPerHeal.
//
// The checker applies only with pre-vote and check-quorum both on: without them a rejoining
// member may depose a leader by design (etcd's default has both off).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/raft/types.h"

namespace kvstore::sim {

struct AvailabilityFigures {
  uint64_t calm_windows = 0;          // healed faults: calm windows begun (the first one too)
  uint64_t settled = 0;               // of them, those that reached a stable leader
  uint64_t elections_after_heal = 0;  // elections before the stable leader, summed
  uint64_t most_elections_after_heal = 0;
  uint64_t transfers_checked = 0;  // transfers asked for in calm, and judged
  uint64_t proposals_refused_in_transfer = 0;
};

class AvailabilityChecker {
 public:
  // A window in which no stable leader emerges after this many elections has a problem (split
  // votes repeat with probability below 1/2 each under randomised timeouts).
  static constexpr uint64_t kMaxElectionsPerHeal = 10;

  // What the simulation sees after an event.
  struct View {
    int64_t now_ms = 0;
    bool calm = false;
    raft::NodeId leader = raft::kNoNode;  // the live leader of the highest term, if any
    raft::Term leader_term = 0;
    bool leader_is_voter = false;  // the leader's configuration has it as a voter
    // A quorum of its voters are live followers in its term, within their check-quorum lease.
    bool quorum_follows = false;
    // ... and their leases outlast the arrival of the leader's next heartbeat, which renews
    // them: a lease near its end when calm begins dates from the fault, and may lapse first.
    bool quorum_lease_outlasts_heartbeat = false;
    bool campaigning = false;     // a live voter is a pre-candidate or a candidate
    raft::Term highest_term = 0;  // among live members
    raft::NodeId leader_transferee = raft::kNoNode;  // the leader's transfer under way, if any
    // The voters of the configuration judged (the leader's, else that of the live member of the
    // highest term; the incoming half when joint).
    std::vector<raft::NodeId> voters;
  };

  // `election_timeout_ms`: election_tick ticks at the nominal rate; `slack_ms`: the longest
  // delivery of a message, for deadlines.
  AvailabilityChecker(bool enabled, int64_t election_timeout_ms, int64_t slack_ms)
      : enabled_(enabled), election_timeout_ms_(election_timeout_ms), slack_ms_(slack_ms) {}

  bool enabled() const { return enabled_; }
  void Observe(const View& view);
  // A leader transfer to `transferee` was asked for (of whichever member).
  // Its completion is judged only on a network that loses nothing: Raft sends TimeoutNow once,
  // and a calm network may still lose up to 1% of messages (fuzz seed 1309, 5 nodes, at
  // 149b7fc: the transfer's one TimeoutNow was lost).
  void TransferRequested(int64_t now_ms, raft::NodeId transferee, bool lossless = true);
  // The move-leader request for `transferee` was refused before any transfer began (the member
  // asked does not lead, or the transferee is not a voter: etcd's ErrNotLeader and
  // ErrBadLeaderTransferee), so there is no transfer to judge (fuzz seed 502831, 3 nodes: a
  // move to the member a replace had just removed). A transfer that began and then timed out is
  // still judged.
  void TransferRefused(raft::NodeId transferee);
  // Node `id` crashed, stopped, paused or had its clock stopped: if it led, its successor is no
  // disruption (the checker may not see the moment between two observations).
  void NodeDown(raft::NodeId id);
  // A proposal submitted to a leader whose transfer was under way got `code` back. A request the
  // leader refuses by validating it against its own state before proposing (a missing lease, a
  // key too large, no permission) never became a proposal, and is not judged.
  void ProposalAnsweredInTransfer(raft::NodeId node, const std::string& code,
                                  const std::string& message);

  // Violations found since the last call, in words.
  std::vector<std::string> TakeViolations();
  const AvailabilityFigures& figures() const { return figures_; }

 private:
  struct Stable {
    raft::NodeId leader = raft::kNoNode;
    raft::Term term = 0;
    // The highest term that may depose it without a disruption: above `term` only for a leader
    // remembered in a fault while a member had a higher term or campaigned (see Observe).
    raft::Term excused_term = 0;
  };
  struct Transfer {
    raft::NodeId transferee = raft::kNoNode;
    raft::Term from_term = 0;
    int64_t deadline_ms = 0;
  };
  void EndWindow();

  const bool enabled_;
  const int64_t election_timeout_ms_;
  const int64_t slack_ms_;
  bool calm_ = false;
  int64_t calm_since_ms_ = 0;         // when the current calm window began
  std::optional<Stable> stable_;      // the leader that must not be deposed
  std::optional<Transfer> transfer_;  // a transfer under judgement
  // Elections counted in this window until its stable leader (nullopt: it has one).
  std::optional<uint64_t> elections_;
  raft::Term window_term_ = 0;  // the highest term a leader was seen in, this window
  std::vector<std::string> violations_;
  AvailabilityFigures figures_;
};

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_AVAILABILITY_H_
