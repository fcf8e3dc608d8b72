#include "core/mvcc/key_index.h"

#include "core/base/probe.h"

namespace kvstore::mvcc {

void KeyIndex::Put(RevisionPair rev) {
  if (generations_.empty()) generations_.emplace_back();
  Generation& g = generations_.back();
  if (g.revs.empty()) g.created = rev;
  g.revs.push_back(rev);
  ++g.version;
}

bool KeyIndex::Tombstone(RevisionPair rev) {
  if (!Live()) return false;
  Put(rev);
  generations_.emplace_back();
  return true;
}

void KeyIndex::Restore(RevisionPair created, RevisionPair modified, int64_t version) {
  generations_.clear();
  generations_.push_back(Generation{version, created, {modified}});
}

void KeyIndex::RestoreTombstone(RevisionPair tombstone) {
  generations_.clear();
  generations_.push_back(Generation{1, RevisionPair{}, {tombstone}});
  generations_.emplace_back();
}

bool KeyIndex::Live() const { return !generations_.empty() && !generations_.back().revs.empty(); }

const KeyIndex::Generation* KeyIndex::FindGeneration(Revision at) const {
  for (size_t i = generations_.size(); i-- > 0;) {
    const Generation& g = generations_[i];
    if (g.revs.empty()) continue;
    // A closed generation whose tombstone is at or before `at` was dead then.
    if (i != generations_.size() - 1 && g.revs.back().main <= at) return nullptr;
    if (g.revs.front().main <= at) return &g;
  }
  return nullptr;
}

bool KeyIndex::Get(Revision at, Found* found) const {
  const Generation* g = FindGeneration(at);
  if (g == nullptr) return false;
  for (size_t i = g->revs.size(); i-- > 0;) {
    if (g->revs[i].main <= at) {
      found->modified = g->revs[i];
      found->created = g->created;
      found->version = g->version - static_cast<int64_t>(g->revs.size() - 1 - i);
      return true;
    }
  }
  return false;
}

bool KeyIndex::Compact(Revision at, std::set<RevisionPair>* keep) {
  // Skip whole generations that ended (tombstone) before the compaction point. A tombstone at
  // exactly `at` stays, in the index and the backend, until a later compaction: a watch from
  // the compact revision must still deliver that revision's delete (etcd #18089, fixed by
  // etcd #18274: compaction keeps a tombstone whose revision equals the compact revision).
  size_t first = 0;
  while (first + 1 < generations_.size() && !generations_[first].revs.empty() &&
         generations_[first].revs.back().main < at) {
    ++first;
  }
  Generation& g = generations_[first];
  if (!g.revs.empty()) {
    // Keep the newest revision at or before `at` (what a read at `at` sees) and all later ones.
    size_t newest_visible = g.revs.size();
    for (size_t i = g.revs.size(); i-- > 0;) {
      if (g.revs[i].main <= at) {
        newest_visible = i;
        break;
      }
    }
    if (newest_visible != g.revs.size()) {
      // The key was written again after the compaction point: a read at `at` must still see
      // the revision kept here, and a read at a later revision the later one.
      if (newest_visible + 1 < g.revs.size()) CODE_PROBE(mvcc, compact_below_later_writes);
      keep->insert(g.revs[newest_visible]);
      g.revs.erase(g.revs.begin(), g.revs.begin() + newest_visible);
    }
  }
  // Generations that ended before `at`, tombstone included, are invisible to every read the
  // store still serves and to every watch it still accepts.
  if (first > 0) CODE_PROBE(mvcc, compact_drops_generation);
  generations_.erase(generations_.begin(), generations_.begin() + first);
  return !(generations_.size() == 1 && generations_.front().revs.empty());
}

}  // namespace kvstore::mvcc
