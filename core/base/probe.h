#ifndef KVSTORE_CORE_BASE_PROBE_H_
#define KVSTORE_CORE_BASE_PROBE_H_

// Code probes (FoundationDB's CODE_PROBE, TigerBeetle's coverage marks): a rare branch of the
// core says "this happened" with CODE_PROBE(group, name), and the simulator's fuzz campaign
// reports how often each probe was hit. A probe the campaign never hits marks a state that
// today's fault schedules do not produce, where a planted bug would go unseen: the campaign
// fails on it unless testdata/sim/expected_rare_probes.txt lists it with a reason.
//
// The list. Every probe is declared once below, with the file that holds it and what reaching
// it means, so that the full list is known to the campaign even for probes never hit (a zero is
// reported, not an absence), and so that a misspelt probe is a compile error. Each entry is
// X(group, name, file, what); the probe's name is "group.name". //core/base:probe_list_test
// checks that each entry is used exactly once, in the file it names.
//
// Cost. A hit is one relaxed load and store of a process-wide counter: a plain increment on
// every target, no lock prefix, no fence, no branch. Probes sit on rare branches by definition,
// so a hit costs nothing measurable in production, and the core never reads the counters, so
// they cannot change its behaviour (the simulator's trace hashes stay as they were). That is
// why they stay compiled in, rather than compiled out unless enabled: the counters of a real
// kvnode can be read in the same way if ever wanted, and a build option whose off state no
// test exercises would rot. Defining KVSTORE_NO_CODE_PROBES compiles them out anyway (the
// name is still checked). Concurrent hits from several threads (members in one test process)
// may lose a count: the figures are coverage, not accounting, and losing one is no data race
// (each access is atomic).
//
// This is the one piece of process-wide state in core/, deliberately: it is written, never
// read, by the core.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

// clang-format off
#define KVSTORE_CODE_PROBES(X)                                                                    \
  /* Raft: the follower's log */                                                                  \
  X(raft, truncate_conflict, "core/raft/log.cc",                                                  \
    "a follower truncated a conflicting uncommitted suffix of its log")                           \
  X(raft, append_short_commit_beyond, "core/raft/log.cc",                                         \
    "an append covered less than the follower's log while the leader's commit lay beyond it")     \
  X(raft, persisted_write_replaced, "core/raft/log.cc",                                           \
    "a durable write was acknowledged after a later, shorter write replaced its entries")         \
  X(raft, append_below_commit, "core/raft/raft.cc",                                               \
    "a follower answered an append that starts below its commit index with its commit index")     \
  X(raft, reject_hint_skips_term, "core/raft/raft.cc",                                            \
    "a leader skipped a whole term of its log on a rejected append (fast back-off)")              \
  X(raft, heartbeat_freed_inflight, "core/raft/raft.cc",                                          \
    "a heartbeat response freed a slot of a full inflight window (acknowledgements lost)")        \
  /* Raft: snapshots */                                                                           \
  X(raft, snapshot_over_longer_log, "core/raft/raft.cc",                                          \
    "a snapshot was restored over a log that reached beyond the snapshot's index")                \
  X(raft, snapshot_fast_forward, "core/raft/raft.cc",                                             \
    "a follower holding a snapshot's last entry advanced its commit instead of restoring")       \
  X(raft, snapshot_stale, "core/raft/raft.cc",                                                    \
    "a snapshot at or below the follower's commit index was ignored")                             \
  X(raft, snapshot_resent_after_timeout, "core/raft/raft.cc",                                     \
    "a leader probed again a follower whose snapshot went unanswered for two election timeouts")  \
  X(raft, received_snapshot_kept_for_followers, "core/raft/raft.cc",                             \
    "a received snapshot became the one this node sends followers (before any of its own)")      \
  X(raft, persist_snapshot_superseded, "core/raft/raft.cc",                                       \
    "a snapshot's write became durable after a newer snapshot had replaced the log")              \
  /* Raft: elections and leadership */                                                            \
  X(raft, vote_ignored_in_lease, "core/raft/raft.cc",                                             \
    "a vote request of a higher term was ignored: the leader was heard from lately")              \
  X(raft, stale_leader_told_term, "core/raft/raft.cc",                                            \
    "a message of a stale leader was answered so that it learns the newer term")                  \
  X(raft, stale_candidate_told_term, "core/raft/raft.cc",                                         \
    "a vote request of a stale term was refused with the newer term, so its candidate learns it") \
  X(raft, pre_vote_lost, "core/raft/raft.cc",                                                     \
    "a pre-candidate lost its pre-vote and returned to follower without raising its term")        \
  X(raft, check_quorum_step_down, "core/raft/raft.cc",                                            \
    "a leader that heard from no quorum for an election timeout stepped down")                    \
  X(raft, campaign_waits_for_conf_apply, "core/raft/raft.cc",                                     \
    "a node did not campaign: a committed configuration change was not applied yet")              \
  X(raft, transfer_catches_up_first, "core/raft/raft.cc",                                         \
    "a leadership transfer sent TimeoutNow only after the transferee caught up")                  \
  X(raft, transfer_aborted_by_timeout, "core/raft/raft.cc",                                       \
    "a leadership transfer not done within an election timeout was aborted")                      \
  X(raft, proposal_refused_during_transfer, "core/raft/raft.cc",                                  \
    "a proposal was refused while a leadership transfer was under way")                           \
  /* Raft: reads */                                                                               \
  X(raft, read_index_after_leader_change, "core/raft/raft.cc",                                    \
    "a read index waited for a new leader's first commit in its term and was then served")        \
  /* Raft: membership */                                                                          \
  X(raft, conf_change_refused_pending, "core/raft/raft.cc",                                       \
    "a configuration change was refused: another was not applied yet")                            \
  X(raft, joint_entered, "core/raft/raft.cc",                                                     \
    "a node applied a change that entered a joint configuration")                                 \
  X(raft, joint_left, "core/raft/raft.cc",                                                        \
    "a node applied the change that left a joint configuration")                                  \
  X(raft, joint_auto_leave_proposed, "core/raft/raft.cc",                                         \
    "a leader proposed leaving a joint configuration by itself once it applied")                  \
  X(raft, leader_removed_steps_down, "core/raft/raft.cc",                                         \
    "a leader removed from the configuration stepped down once a quorum knew the change")         \
  X(raft, leader_removed_waits_for_commit_news, "core/raft/raft.cc",                              \
    "a leader applied its removal before a quorum of the new configuration knew it committed")    \
  /* MVCC */                                                                                      \
  X(mvcc, compact_below_later_writes, "core/mvcc/key_index.cc",                                   \
    "a compaction kept a key's revision at the compaction point beside its later writes")         \
  X(mvcc, compact_drops_generation, "core/mvcc/key_index.cc",                                     \
    "a compaction dropped a generation of a key that a delete had ended")                         \
  X(mvcc, range_compacted, "core/mvcc/store.cc",                                                  \
    "a range at a revision below the compaction point was refused")                               \
  X(mvcc, txn_failure_branch, "core/mvcc/store.cc",                                               \
    "a txn's compares failed and its failure branch ran")                                         \
  X(mvcc, watch_compacted, "core/mvcc/watch.cc",                                                  \
    "a watch from a revision compacted away was refused")                                         \
  X(mvcc, watch_slow_consumer, "core/mvcc/watch.cc",                                              \
    "a watcher whose buffer was full stopped receiving live events and waits to catch up")        \
  X(mvcc, watch_lagging_compacted, "core/mvcc/watch.cc",                                          \
    "a lagging watcher was canceled: compaction passed the revision it waited to replay")         \
  X(mvcc, watch_catch_up_cut, "core/mvcc/watch.cc",                                               \
    "a lagging watcher's replay was cut at a revision boundary to fit its buffer")                \
  /* Leases */                                                                                    \
  X(lease, revoke_with_keys, "core/server/server.cc",                                             \
    "a lease was revoked with keys attached, deleted in one revision")                            \
  X(lease, expiry_revoke_proposed, "core/server/server.cc",                                       \
    "a leader proposed revoking an expired lease")                                                \
  X(lease, renew_after_expiry_refused, "core/lease/lessor.cc",                                    \
    "a keep-alive of an expired lease awaiting its revocation was refused")                       \
  /* Server */                                                                                    \
  X(server, promotion_refused, "core/server/server.cc",                                           \
    "a learner's promotion was refused: its log was behind the leader's")                         \
  X(server, member_change_refused_at_apply, "core/server/server.cc",                              \
    "a committed membership change was refused at apply, where the member list is current")      \
  X(server, joint_answered_on_leave, "core/server/server.cc",                                     \
    "a member replace was answered once its joint configuration was left")                        \
  X(server, proposal_replaced, "core/server/server.cc",                                           \
    "a proposal's entry was replaced by another leader's and failed LEADERSHIP_CHANGED")          \
  X(server, read_failed_by_leader_change, "core/server/server.cc",                                \
    "a read waiting for its read index failed because the leader changed")                       \
  X(server, reads_share_read_index, "core/server/server.cc",                                      \
    "several linearizable reads were served from one ReadIndex")                                  \
  X(server, snapshot_restored, "core/server/server.cc",                                           \
    "a member replaced its state with a snapshot sent by the leader")                             \
  X(server, snapshot_outcome_unknown, "core/server/server.cc",                                    \
    "a proposal at or below a restored snapshot's index was answered: outcome unknown")           \
  X(server, removed_member_message_dropped, "core/server/server.cc",                              \
    "a Raft message from a member removed from the cluster was dropped (etcd's 410 Gone)")        \
  X(server, nospace_refusal_waits_for_alarm, "core/server/server.cc",                             \
    "a write refused for the quota is answered once its NOSPACE alarm applies (etcd's order)")    \
  X(server, own_removal_applied, "core/server/server.cc",                                         \
    "a member applied its own removal (its driver, node::Member, stops it)")                      \
  X(server, duplicate_proposal_skipped, "core/server/server.cc",                                  \
    "the same proposal applied twice (a duplicated message) was skipped the second time")          \
  X(server, nospace_alarm_raised, "core/server/server.cc",                                        \
    "a NOSPACE alarm applied: a member's backend passed quota_bytes")                             \
  X(server, nospace_alarm_disarmed, "core/server/server.cc",                                      \
    "an alarm disarm applied while a NOSPACE alarm was active: writes resume")                    \
  X(server, nospace_refused_at_apply, "core/server/server.cc",                                    \
    "a write proposed before the NOSPACE alarm applied was refused when it applied after it")     \
  X(server, put_value_too_large, "core/server/server.cc",                                         \
    "a put's value (alone or in a txn) was refused for max_request_bytes")                        \
  X(server, txn_too_many_ops, "core/server/server.cc",                                            \
    "a txn was refused for max_txn_ops (compares or operations of a branch)")
// clang-format on

namespace kvstore::probe {

enum class Id : uint16_t {
#define KVSTORE_PROBE_ENUM(group, name, file, what) group##_##name,
  KVSTORE_CODE_PROBES(KVSTORE_PROBE_ENUM)
#undef KVSTORE_PROBE_ENUM
};

inline constexpr size_t kCount = 0
#define KVSTORE_PROBE_COUNT(group, name, file, what) +1
    KVSTORE_CODE_PROBES(KVSTORE_PROBE_COUNT)
#undef KVSTORE_PROBE_COUNT
    ;

struct Info {
  absl::string_view name;  // "group.name"
  absl::string_view file;  // the file that holds it
  absl::string_view what;  // what reaching it means
};

// Every probe, in declaration order (index = Id).
const std::array<Info, kCount>& All();
const Info& InfoOf(Id id);

using Counts = std::array<uint64_t, kCount>;

// The hits of each probe in this process so far.
Counts Snapshot();
// after - before, per probe: the hits between two snapshots.
Counts Since(const Counts& before);

namespace internal {
inline std::array<std::atomic<uint64_t>, kCount> hits{};
}  // namespace internal

inline void Hit(Id id) {
  std::atomic<uint64_t>& counter = internal::hits[static_cast<size_t>(id)];
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

}  // namespace kvstore::probe

#ifdef KVSTORE_NO_CODE_PROBES
#define CODE_PROBE(group, name) ((void)::kvstore::probe::Id::group##_##name)
#else
#define CODE_PROBE(group, name) ::kvstore::probe::Hit(::kvstore::probe::Id::group##_##name)
#endif

#endif  // KVSTORE_CORE_BASE_PROBE_H_
