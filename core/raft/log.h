#ifndef KVSTORE_CORE_RAFT_LOG_H_
#define KVSTORE_CORE_RAFT_LOG_H_

// The Raft log of one node, kept in memory from the last compaction point on, with the indexes
// that say how far it is durable, committed and applied:
//
//   offset  <  applied  <=  committed  <=  last
//   offset  <=  persisted  <=  offered  <=  last
//
// offset is the compaction point (the latest snapshot's index; entries at or below it are
// gone, only its term is kept). `offered` entries were handed to the driver for writing;
// `persisted` ones were acknowledged durable. The driver keeps its own durable copy; this copy
// serves appends to followers and the entries to apply.

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "core/raft/types.h"

namespace kvstore::raft {

class RaftLog {
 public:
  RaftLog() = default;
  // `node` names the owner in invariant failures.
  void set_node(NodeId node) { node_ = node; }

  Index first_index() const { return offset_ + 1; }
  Index last_index() const { return offset_ + entries_.size(); }
  Index offset() const { return offset_; }
  Term last_term() const;
  // Term of entry `index`: false when compacted (below offset) or not yet written.
  bool TermAt(Index index, Term* term) const;
  // Term of entry `index`, or 0 when unknown.
  Term TermOr0(Index index) const;
  bool MatchTerm(Index index, Term term) const;
  // Raft §5.4.1: a candidate's log is at least as up to date as ours.
  bool IsUpToDate(Index last_index, Term last_term) const;

  // Appends entries received from a leader after (index, log_term); false when our log has no
  // such entry. Truncates a conflicting suffix (never a committed entry) and advances commit to
  // min(leader_commit, last new index). Sets *last_new_index.
  bool MaybeAppend(Index index, Term log_term, Index leader_commit,
                   absl::InlinedVector<Entry, 1>& entries, Index* last_new_index);
  // Appends entries (a leader's own); they must follow the log. Returns the new last index.
  Index Append(Entry entry);
  // The largest index <= `index` whose term is <= `term` (etcd's findConflictByTerm): the
  // fast back-off hint of a rejected append (Raft §5.3, "optimization").
  std::pair<Index, Term> FindConflictByTerm(Index index, Term term) const;

  Index committed() const { return committed_; }
  void CommitTo(Index index);
  // Raft §5.4.2: commits `index` only if its entry belongs to `term` (the leader's own).
  bool MaybeCommit(Index index, Term term);

  Index applied() const { return applied_; }
  void AppliedTo(Index index);

  // Entries in [lo, hi] (inclusive), cut after max_bytes but always at least one entry.
  absl::Span<const Entry> Slice(Index lo, Index hi, uint64_t max_bytes) const;
  const Entry& At(Index index) const;

  // Persistence tracking.
  Index offered() const { return offered_; }
  Index persisted() const { return persisted_; }
  // Entries not yet handed to the driver; marks them offered.
  absl::Span<const Entry> TakeUnoffered();
  bool HasUnoffered() const { return offered_ < last_index(); }
  // A write covering entries up to `index` of term `term` is durable. Ignored if those entries
  // were replaced since (the later write covers the replacement).
  void PersistedTo(Index index, Term term);

  // Drops entries up to `index` (which must be persisted and applied).
  void Compact(Index index);
  // Replaces the whole log by a snapshot's position (follower installing a snapshot).
  void RestoreSnapshot(Index index, Term term);
  // On restart: the persisted snapshot position, entries, commit and applied index.
  void Restart(Index snapshot_index, Term snapshot_term, std::vector<Entry> entries,
               Index committed, Index applied);

 private:
  void TruncateAndAppend(absl::InlinedVector<Entry, 1>& entries, size_t from);

  NodeId node_ = kNoNode;
  Index offset_ = 0;
  Term offset_term_ = 0;
  std::vector<Entry> entries_;  // entries_[i].index == offset_ + 1 + i
  Index committed_ = 0;
  Index applied_ = 0;
  Index offered_ = 0;
  Index persisted_ = 0;
};

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_LOG_H_
