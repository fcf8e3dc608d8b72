#include "core/raft/progress.h"

#include <algorithm>

#include "core/raft/check.h"

namespace kvstore::raft {

Inflights::Inflights(uint64_t max_count, uint64_t max_bytes)
    : max_count_(max_count), max_bytes_(max_bytes) {}

void Inflights::Add(Index last_index, uint64_t bytes) {
  RAFT_CHECK(!Full()) << "inflights: add to a full window (count " << count_ << ", bytes " << bytes_
                      << ")";
  if (count_ == ring_.size()) {
    // Grow by re-linearizing the ring; bounded by max_count_.
    std::vector<Flight> grown;
    grown.reserve(std::min<uint64_t>(std::max<size_t>(ring_.size() * 2, 4), max_count_));
    for (size_t i = 0; i < count_; ++i) grown.push_back(ring_[(start_ + i) % ring_.size()]);
    grown.resize(grown.capacity());
    ring_ = std::move(grown);
    start_ = 0;
  }
  ring_[(start_ + count_) % ring_.size()] = Flight{last_index, bytes};
  ++count_;
  bytes_ += bytes;
}

void Inflights::FreeLE(Index index) {
  while (count_ > 0 && ring_[start_].index <= index) FreeFirstOne();
}

void Inflights::FreeFirstOne() {
  if (count_ == 0) return;
  bytes_ -= ring_[start_].bytes;
  start_ = (start_ + 1) % ring_.size();
  if (--count_ == 0) start_ = 0;
}

bool Inflights::Full() const {
  return count_ >= max_count_ || (max_bytes_ != 0 && bytes_ >= max_bytes_);
}

void Inflights::Reset() {
  start_ = 0;
  count_ = 0;
  bytes_ = 0;
}

Progress::Progress(Index next_index, uint64_t max_inflight_msgs, uint64_t max_inflight_bytes,
                   bool learner)
    : next(next_index),
      recent_active(true),
      is_learner(learner),
      inflights(max_inflight_msgs, max_inflight_bytes) {}

void Progress::ResetState(ProgressState new_state) {
  msg_app_flow_paused = false;
  snapshot_timeouts = 0;
  pending_snapshot = 0;
  state = new_state;
  inflights.Reset();
}

void Progress::BecomeProbe() {
  // Coming back from a snapshot, the follower has at least the snapshot (once it reported).
  if (state == ProgressState::kSnapshot) {
    const Index snapshot_index = pending_snapshot;
    ResetState(ProgressState::kProbe);
    next = std::max(match + 1, snapshot_index + 1);
  } else {
    ResetState(ProgressState::kProbe);
    next = match + 1;
  }
}

void Progress::BecomeReplicate() {
  ResetState(ProgressState::kReplicate);
  next = match + 1;
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  ResetState(ProgressState::kSnapshot);
  pending_snapshot = snapshot_index;
}

bool Progress::MaybeUpdate(Index index) {
  bool updated = false;
  if (match < index) {
    match = index;
    updated = true;
    msg_app_flow_paused = false;
  }
  next = std::max(next, index + 1);
  return updated;
}

bool Progress::MaybeDecrTo(Index rejected, Index match_hint) {
  if (state == ProgressState::kReplicate) {
    // Appends are pipelined: a rejection at or below match is an old one.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // In probe only the outstanding append (at next-1) may be answered; others are stale.
  if (next == 0 || next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  msg_app_flow_paused = false;
  return true;
}

void Progress::SentEntries(uint64_t count, Index last_index, uint64_t bytes) {
  switch (state) {
    case ProgressState::kReplicate:
      if (count > 0) {
        next = last_index + 1;
        inflights.Add(last_index, bytes);
      }
      msg_app_flow_paused = inflights.Full();
      break;
    case ProgressState::kProbe:
      // One probe at a time; an empty probe (after a rejection) also waits for its answer.
      msg_app_flow_paused = true;
      break;
    case ProgressState::kSnapshot:
      RAFT_CHECK(false) << "sending entries to a peer in snapshot state";
  }
  RAFT_CHECK(match < next) << "progress: match " << match << " >= next " << next;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return msg_app_flow_paused;
    case ProgressState::kReplicate:
      return msg_app_flow_paused;
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

}  // namespace kvstore::raft
