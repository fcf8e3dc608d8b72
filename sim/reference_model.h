#ifndef KVSTORE_SIM_REFERENCE_MODEL_H_
#define KVSTORE_SIM_REFERENCE_MODEL_H_

// A small sequential model of etcd's MVCC key-value semantics, written from etcd's documented
// behaviour rather than from core/mvcc, that replays the cluster's committed log and judges what
// the members answer and deliver.
//
// Ground truth is the committed log: every entry is replayed once, in index order, as Raft
// committed it (the simulator feeds each index when the first member applies it; state machine
// safety, checked separately, says every member applies the same entry there). So the model
// knows every revision, also those of writes whose client timed out (an unknown outcome took
// effect exactly when its entry appears in the log, or never). From each entry it computes what
// etcd would answer: put's prev_kv, the branch a txn takes on every compare target (value,
// version, create and mod revision, lease) and its operations' results, deletes, compaction
// (ErrCompacted at or below the compact revision, ErrFutureRev beyond the current one), lease
// grants and revocations (all attached keys deleted in one revision, sorted by key), and the
// watch events of each revision. It keeps the whole history, so a range at any past revision
// has one right answer (or ErrCompacted below the compact revision).
//
// Judging: the answer to a request that went through the log is found by its proposer and
// request id (server::Server's entry carries both) and must equal the model's; a read (a range,
// a read-only txn) served at header revision H must equal the model's state at H; the events a
// watcher delivers for a revision must be the model's. Anything the model cannot judge is
// counted, never passed silently: errors that never reached the store (no leader, timeouts),
// compaction verdicts a member may legitimately give either way (see JudgeRead), and everything
// after the model went blind (it missed a log index or met a request it does not model, such as
// auth or nested txns: it says why).

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/mvcc/types.h"
#include "core/server/requests.pb.h"
#include "core/server/server.h"

namespace kvstore::sim {

// A committed entry's data, decoded at most once for the checkers that read it (the reference
// model and the server-rule checkers each parsed every entry: one protobuf decode per checker
// and entry). The first Get parses; a reused one keeps its message's storage between entries.
class DecodedEntry {
 public:
  DecodedEntry() = default;
  explicit DecodedEntry(absl::string_view data) : data_(data) {}
  DecodedEntry(const DecodedEntry&) = delete;
  DecodedEntry& operator=(const DecodedEntry&) = delete;

  // Starts over on another entry's data.
  void Reset(absl::string_view data) {
    data_ = data;
    parsed_ = false;
  }
  absl::string_view data() const { return data_; }
  // The entry's request; nullptr when the data is not a server::pb::InternalRequest.
  const server::pb::InternalRequest* Get() {
    if (!parsed_) {
      parsed_ = true;
      ok_ = request_.ParseFromArray(data_.data(), static_cast<int>(data_.size()));
    }
    return ok_ ? &request_ : nullptr;
  }

 private:
  absl::string_view data_;
  bool parsed_ = false;
  bool ok_ = false;
  server::pb::InternalRequest request_;
};

class ReferenceModel {
 public:
  struct Counts {
    uint64_t entries = 0;        // log entries replayed
    uint64_t revisions = 0;      // store revisions the model produced
    uint64_t writes_judged = 0;  // answers to logged requests compared with the model's
    uint64_t reads_judged = 0;   // ranges and read-only txns compared at their revision
    uint64_t watch_revisions_judged = 0;
    // Reads at a past revision that a member may answer either way: a compaction applied in
    // the same revision as the read's header may or may not have applied on that member yet.
    uint64_t compaction_either_way = 0;
    uint64_t not_from_store = 0;    // errors before the log or the store (no leader, timeout, ...)
    uint64_t unknown_outcomes = 0;  // requests whose answer never came (NoteUnknownOutcome)
    uint64_t unjudged = 0;  // answers and events after the model went blind, or not modelled
  };

  ReferenceModel() = default;

  // Replays the committed entry at `index` (a normal entry's data is a server
  // pb::InternalRequest; conf changes and empty entries change no key). Entries come in index
  // order; a gap makes the model blind.
  void Apply(uint64_t index, bool conf_change, absl::string_view data);
  // The same, with the entry's decoding shared with other checkers.
  void Apply(uint64_t index, bool conf_change, DecodedEntry* entry);

  // Judges `response`, an answer of `member` to `request` (nullptr: unknown; then only answers
  // to logged requests can be judged). Returns what differs from the model, or nullopt.
  std::optional<std::string> Judge(uint64_t member, const server::Request* request,
                                   const server::Response& response);
  // Judges the events one watcher delivered for `revision` (all of them, in order).
  std::optional<std::string> JudgeWatch(mvcc::Revision revision,
                                        absl::Span<const mvcc::Event> events);
  // A request whose answer never came: its effect, if any, is in the log the model replays.
  void NoteUnknownOutcome() { ++counts_.unknown_outcomes; }

  const Counts& counts() const { return counts_; }
  bool blind() const { return !blind_reason_.empty(); }
  const std::string& blind_reason() const { return blind_reason_; }
  mvcc::Revision revision() const { return revision_; }
  mvcc::Revision compact_revision() const { return compact_revision_; }
  // One line for a run's transcript: what was judged and what could not be.
  std::string Summary() const;

  // The model's own reads, for tests: the key at `revision` (nullopt: absent).
  std::optional<mvcc::KeyValue> Get(const std::string& key, mvcc::Revision revision) const;
  // The same, in place: null when absent; valid until the model's next write.
  const mvcc::KeyValue* Find(const std::string& key, mvcc::Revision revision) const;

 private:
  struct Version {
    mvcc::Revision revision = 0;
    bool tombstone = false;
    mvcc::KeyValue kv;
  };

  void GoBlind(std::string why);
  // The entry's effect and etcd's answer to it.
  server::Response ApplyRequest(const server::pb::InternalRequest& internal);
  absl::Status ApplyTxn(const mvcc::TxnRequest& txn, mvcc::TxnResponse* out);
  mvcc::PutResponse Put(const mvcc::PutRequest& put, mvcc::Revision at);
  mvcc::DeleteRangeResponse Delete(const mvcc::DeleteRangeRequest& del, mvcc::Revision at);
  void EndRevision(mvcc::Revision at);  // publishes `at` if anything was written at it
  // Reads.
  bool Holds(const mvcc::Compare& compare, mvcc::Revision at) const;
  mvcc::RangeResponse RangeAt(const mvcc::RangeRequest& range, mvcc::Revision at) const;
  // False when the model does not cover the range's options (sorting, filters).
  static bool Modelled(const mvcc::RangeRequest& range);
  std::optional<std::string> JudgeRead(const server::Request& request,
                                       const server::Response& response);

  std::string blind_reason_;
  uint64_t next_index_ = 1;
  mvcc::Revision revision_ = 1;  // revision 1 is the empty store
  mvcc::Revision compact_revision_ = 0;
  std::map<std::string, std::vector<Version>> keys_;
  std::map<mvcc::LeaseId, std::set<std::string>> leases_;  // lease -> attached keys
  std::set<uint64_t> nospace_alarms_;                      // members with a NOSPACE alarm
  std::map<uint64_t, std::set<uint64_t>> applied_ids_;     // member -> request ids (dedup)
  // Events of each revision, index revision - 2.
  std::vector<std::vector<mvcc::Event>> events_;
  // Events of the revision being written.
  std::vector<mvcc::Event> pending_events_;
  // Compactions as (the revision when applied, the revision compacted to), in log order.
  std::vector<std::pair<mvcc::Revision, mvcc::Revision>> compactions_;
  // The model's answers by (proposer, request id), oldest first for eviction.
  std::map<std::pair<uint64_t, uint64_t>, server::Response> answers_;
  std::deque<std::pair<uint64_t, uint64_t>> answer_order_;
  uint64_t answers_evicted_ = 0;
  Counts counts_;
};

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_REFERENCE_MODEL_H_
