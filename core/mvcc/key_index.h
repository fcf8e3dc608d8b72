#ifndef KVSTORE_CORE_MVCC_KEY_INDEX_H_
#define KVSTORE_CORE_MVCC_KEY_INDEX_H_

// The history of one key (etcd's keyIndex): a list of generations. A generation runs from a
// creation to a deletion (its tombstone, the last revision of every generation but the last).
// Example for key "foo": put@1.0, put@2.0, delete@3.0, put@4.0 gives
//   generations: {created 1.0, revs [1.0 2.0 3.0(t)]}, {created 4.0, revs [4.0]}
// Reads at a revision find the generation alive then; compaction drops revisions no read at
// or after the compaction point can see.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/mvcc/types.h"

namespace kvstore::mvcc {

// A write's position: the transaction's revision and the operation's index within it.
struct RevisionPair {
  Revision main = 0;
  int64_t sub = 0;
  friend bool operator==(const RevisionPair& a, const RevisionPair& b) {
    return a.main == b.main && a.sub == b.sub;
  }
  friend bool operator<(const RevisionPair& a, const RevisionPair& b) {
    return a.main != b.main ? a.main < b.main : a.sub < b.sub;
  }
};

class KeyIndex {
 public:
  struct Generation {
    int64_t version = 0;  // puts in this generation (including the tombstone)
    RevisionPair created;
    std::vector<RevisionPair> revs;
  };

  // Result of a read at a revision.
  struct Found {
    RevisionPair modified;
    RevisionPair created;
    int64_t version = 0;
  };

  void Put(RevisionPair rev);
  // Starts the index from the oldest surviving record of a key when rebuilding from the
  // backend: compaction may have removed the generation's earlier revisions.
  void Restore(RevisionPair created, RevisionPair modified, int64_t version);
  // Starts the index from a tombstone that is a key's only surviving record (compaction at
  // exactly its revision kept it, the generation's puts are gone): a closed generation holding
  // it, so a later compaction finds it (etcd #19179, fixed by etcd #19188's restoreTombstone).
  void RestoreTombstone(RevisionPair tombstone);
  // Ends the live generation; false if the key is not live.
  bool Tombstone(RevisionPair rev);
  // The state visible at `at` (main revision), if the key was live then.
  bool Get(Revision at, Found* found) const;
  // Whether the key is live at the newest revision.
  bool Live() const;
  // Drops what reads at >= `at` and watches from `at` cannot see; adds the revisions that must
  // stay in the backend to `keep`. Returns false when nothing is left (the index entry can go).
  bool Compact(Revision at, std::set<RevisionPair>* keep);
  const std::vector<Generation>& generations() const { return generations_; }

 private:
  const Generation* FindGeneration(Revision at) const;
  std::vector<Generation> generations_;
};

}  // namespace kvstore::mvcc

#endif  // KVSTORE_CORE_MVCC_KEY_INDEX_H_
