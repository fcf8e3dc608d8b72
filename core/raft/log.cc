#include "core/raft/log.h"

#include <algorithm>

#include "core/base/probe.h"
#include "core/raft/check.h"

namespace kvstore::raft {

Term RaftLog::last_term() const { return entries_.empty() ? offset_term_ : entries_.back().term; }

bool RaftLog::TermAt(Index index, Term* term) const {
  if (index == offset_) {
    *term = offset_term_;
    return true;
  }
  if (index < offset_ || index > last_index()) return false;
  *term = entries_[index - offset_ - 1].term;
  return true;
}

Term RaftLog::TermOr0(Index index) const {
  Term term = 0;
  return TermAt(index, &term) ? term : 0;
}

bool RaftLog::MatchTerm(Index index, Term term) const {
  Term actual = 0;
  return TermAt(index, &actual) && actual == term;
}

bool RaftLog::IsUpToDate(Index index, Term term) const {
  const Term ours = last_term();
  return term > ours || (term == ours && index >= last_index());
}

const Entry& RaftLog::At(Index index) const {
  RAFT_CHECK(index > offset_ && index <= last_index())
      << "node " << node_ << ": entry " << index << " outside log (" << offset_ << ", "
      << last_index() << "]";
  return entries_[index - offset_ - 1];
}

bool RaftLog::MaybeAppend(Index index, Term log_term, Index leader_commit,
                          absl::InlinedVector<Entry, 1>& entries, Index* last_new_index) {
  if (!MatchTerm(index, log_term)) return false;
  const Index last_new = index + entries.size();
  // Find the first entry that is new or conflicts; everything before it we already hold.
  size_t from = 0;
  while (from < entries.size()) {
    const Entry& e = entries[from];
    if (e.index <= offset_) {
      ++from;  // covered by our snapshot: committed, hence identical
      continue;
    }
    if (!MatchTerm(e.index, e.term)) break;
    ++from;
  }
  if (from < entries.size()) {
    const Index conflict = entries[from].index;
    RAFT_CHECK(conflict > committed_)
        << "node " << node_ << ": entry " << conflict << " (term " << entries[from].term
        << ") conflicts with committed entry, commit " << committed_;
    if (conflict <= last_index()) CODE_PROBE(raft, truncate_conflict);
    TruncateAndAppend(entries, from);
  }
  // A short (or delayed) append proves our log only up to last_new: entries beyond it may be
  // of a stale term, so the leader's commit applies no further (etcd-io/raft's lastnewi).
  if (last_new < last_index() && leader_commit > last_new) {
    CODE_PROBE(raft, append_short_commit_beyond);
  }
  CommitTo(std::min(leader_commit, last_new));
  *last_new_index = last_new;
  return true;
}

void RaftLog::TruncateAndAppend(absl::InlinedVector<Entry, 1>& entries, size_t from) {
  const Index first_new = entries[from].index;
  RAFT_CHECK(first_new > offset_ && first_new <= last_index() + 1)
      << "node " << node_ << ": append at " << first_new << " leaves a gap after " << last_index();
  entries_.resize(first_new - offset_ - 1);
  offered_ = std::min(offered_, first_new - 1);
  persisted_ = std::min(persisted_, first_new - 1);
  for (size_t i = from; i < entries.size(); ++i) entries_.push_back(std::move(entries[i]));
}

Index RaftLog::Append(Entry entry) {
  RAFT_CHECK(entry.index == last_index() + 1)
      << "node " << node_ << ": leader append at " << entry.index << " after " << last_index();
  entries_.push_back(std::move(entry));
  return last_index();
}

std::pair<Index, Term> RaftLog::FindConflictByTerm(Index index, Term term) const {
  index = std::min(index, last_index());
  for (;;) {
    Term ours = 0;
    if (!TermAt(index, &ours)) return {index, 0};
    if (ours <= term) return {index, ours};
    if (index == 0) return {0, 0};
    --index;
  }
}

void RaftLog::CommitTo(Index index) {
  if (index <= committed_) return;  // never decreases
  RAFT_CHECK(index <= last_index())
      << "node " << node_ << ": commit " << index << " beyond last index " << last_index();
  committed_ = index;
}

bool RaftLog::MaybeCommit(Index index, Term term) {
  if (index > committed_ && TermOr0(index) == term) {
    CommitTo(index);
    return true;
  }
  return false;
}

void RaftLog::AppliedTo(Index index) {
  RAFT_CHECK(index >= applied_ && index <= committed_)
      << "node " << node_ << ": applied " << index << " not in [" << applied_ << ", " << committed_
      << "]";
  applied_ = index;
}

absl::Span<const Entry> RaftLog::Slice(Index lo, Index hi, uint64_t max_bytes) const {
  if (lo > hi) return {};
  RAFT_CHECK(lo > offset_ && hi <= last_index())
      << "node " << node_ << ": slice [" << lo << ", " << hi << "] outside (" << offset_ << ", "
      << last_index() << "]";
  const Entry* first = &entries_[lo - offset_ - 1];
  size_t count = 0;
  uint64_t bytes = 0;
  const size_t limit = hi - lo + 1;
  while (count < limit) {
    bytes += EntrySizeBytes(first[count]);
    if (count > 0 && bytes > max_bytes) break;
    ++count;
  }
  return absl::Span<const Entry>(first, count);
}

absl::Span<const Entry> RaftLog::TakeUnoffered() {
  const Index from = std::max(offered_, offset_) + 1;
  absl::Span<const Entry> span;
  if (from <= last_index())
    span = absl::Span<const Entry>(&entries_[from - offset_ - 1], last_index() - from + 1);
  offered_ = last_index();
  return span;
}

void RaftLog::PersistedTo(Index index, Term term) {
  if (index <= persisted_) return;
  if (index > offered_) {
    CODE_PROBE(raft, persisted_write_replaced);
    return;  // replaced by a later, shorter write
  }
  if (!MatchTerm(index, term)) return;
  persisted_ = index;
}

void RaftLog::Compact(Index index) {
  if (index <= offset_) return;
  RAFT_CHECK(index <= applied_ && index <= persisted_)
      << "node " << node_ << ": compact to " << index << " beyond applied " << applied_
      << " or persisted " << persisted_;
  offset_term_ = At(index).term;
  entries_.erase(entries_.begin(), entries_.begin() + (index - offset_));
  offset_ = index;
}

void RaftLog::RestoreSnapshot(Index index, Term term) {
  RAFT_CHECK(index > committed_) << "node " << node_ << ": snapshot " << index
                                 << " not beyond commit " << committed_;
  entries_.clear();
  offset_ = index;
  offset_term_ = term;
  committed_ = index;
  // Entries before the snapshot are gone; the snapshot itself is durable only once the write
  // that carries it is acknowledged (see RaftState::OnPersisted).
  offered_ = index;
  persisted_ = std::min(persisted_, index);
}

void RaftLog::Restart(Index snapshot_index, Term snapshot_term, std::vector<Entry> entries,
                      Index committed, Index applied) {
  offset_ = snapshot_index;
  offset_term_ = snapshot_term;
  entries_ = std::move(entries);
  for (size_t i = 0; i < entries_.size(); ++i) {
    RAFT_CHECK(entries_[i].index == offset_ + 1 + i)
        << "node " << node_ << ": restart entries not contiguous at " << entries_[i].index;
  }
  offered_ = persisted_ = last_index();
  committed_ = std::max(committed, offset_);
  applied_ = std::max(applied, offset_);
  RAFT_CHECK(committed_ <= last_index())
      << "node " << node_ << ": restart commit " << committed_ << " beyond log " << last_index();
  RAFT_CHECK(applied_ <= committed_)
      << "node " << node_ << ": restart applied " << applied_ << " beyond commit " << committed_;
}

}  // namespace kvstore::raft
