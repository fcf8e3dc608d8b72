#ifndef KVSTORE_CORE_RAFT_PROGRESS_H_
#define KVSTORE_CORE_RAFT_PROGRESS_H_

// What the leader knows of one follower's log, and how it paces appends to it (etcd's
// tracker.Progress). States:
//   probe:     the match index is unknown; one append at a time, then wait for the answer
//              (or the next heartbeat response) before sending another.
//   replicate: the follower is caught up to `match`; appends stream optimistically, with `next`
//              advanced on send, bounded by Inflights.
//   snapshot:  the needed entries were compacted; a snapshot is in flight and appends wait.
// Invariant: match < next.

#include <cstdint>
#include <vector>

#include "core/raft/raft.h"
#include "core/raft/types.h"

namespace kvstore::raft {

// A bounded window of appends sent but not acknowledged: (last index, bytes) per message, in
// send order. Full at max_count messages or max_bytes bytes (0: no byte limit).
class Inflights {
 public:
  Inflights(uint64_t max_count, uint64_t max_bytes);

  void Add(Index last_index, uint64_t bytes);
  // The follower acknowledged up to `index`: frees every message ending at or below it.
  void FreeLE(Index index);
  void FreeFirstOne();
  bool Full() const;
  size_t count() const { return count_; }
  void Reset();

 private:
  struct Flight {
    Index index = 0;
    uint64_t bytes = 0;
  };
  uint64_t max_count_;
  uint64_t max_bytes_;
  std::vector<Flight> ring_;  // grows up to max_count_
  size_t start_ = 0;
  size_t count_ = 0;
  uint64_t bytes_ = 0;
};

class Progress {
 public:
  Progress(Index next, uint64_t max_inflight_msgs, uint64_t max_inflight_bytes, bool is_learner);

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);
  // An append acknowledged up to `index`; false when stale.
  bool MaybeUpdate(Index index);
  // An append of entries after `rejected` was refused; `match_hint` is the follower's guess of
  // its last matching index. False when the rejection is stale.
  bool MaybeDecrTo(Index rejected, Index match_hint);
  // An append of `count` entries ending at `last_index` (and `bytes`) was sent.
  void SentEntries(uint64_t count, Index last_index, uint64_t bytes);
  // Whether appends must wait (probe in flight, window full, or snapshot in flight).
  bool IsPaused() const;

  Index match = 0;
  Index next = 1;
  ProgressState state = ProgressState::kProbe;
  // kSnapshot: the index of the snapshot in flight.
  Index pending_snapshot = 0;
  // Heard from within the current election timeout (check-quorum).
  bool recent_active = false;
  // kProbe: an append is in flight; kReplicate: the window is full.
  bool msg_app_flow_paused = false;
  bool is_learner = false;
  // The highest commit index an append to this peer carried (bounded by its entries): an empty
  // append is worth sending only when it would tell the peer a higher commit.
  Index sent_commit = 0;
  // The highest commit index the peer reported in a response this term: a leader removed from
  // the configuration leads until a quorum of the new one knows the change committed.
  Index acked_commit = 0;
  // kSnapshot: election timeouts passed without the snapshot being acknowledged.
  int snapshot_timeouts = 0;
  Inflights inflights;

 private:
  void ResetState(ProgressState new_state);
};

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_PROGRESS_H_
