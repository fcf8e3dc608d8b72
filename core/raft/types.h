#ifndef KVSTORE_CORE_RAFT_TYPES_H_
#define KVSTORE_CORE_RAFT_TYPES_H_

// The data Raft exchanges with its driver and its peers: log entries, messages, hard state,
// snapshots and configuration changes. Plain values; encodings for the wire and the disk live in
// net/ and store/.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/raft/bytes.h"

namespace kvstore::raft {

using NodeId = uint64_t;
using Term = uint64_t;
using Index = uint64_t;

// No node: a follower that knows no leader, a vote not yet cast.
inline constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,
  kConfChange = 1,  // data holds an encoded ConfChange (EncodeConfChange)
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  Bytes data;

  friend bool operator==(const Entry& a, const Entry& b) {
    return a.term == b.term && a.index == b.index && a.type == b.type && a.data == b.data;
  }
};

// Bytes an entry costs against size limits (payload plus a fixed header estimate).
inline uint64_t EntrySizeBytes(const Entry& entry) { return entry.data.size() + 24; }

// What must be durable before a vote or an append acknowledgement leaves (Raft §5.1, Figure 2).
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;

  friend bool operator==(const HardState& a, const HardState& b) {
    return a.term == b.term && a.vote == b.vote && a.commit == b.commit;
  }
  friend bool operator!=(const HardState& a, const HardState& b) { return !(a == b); }
};

// Cluster membership. When voters_outgoing is non-empty the cluster is in a joint configuration
// (Raft thesis §4.3): decisions need a majority of voters AND of voters_outgoing.
// learners_next are voters of the outgoing config that become learners on leaving the joint
// state. All vectors are sorted and free of duplicates.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> voters_outgoing;
  std::vector<NodeId> learners;
  std::vector<NodeId> learners_next;
  bool auto_leave = false;

  friend bool operator==(const ConfState& a, const ConfState& b) {
    return a.voters == b.voters && a.voters_outgoing == b.voters_outgoing &&
           a.learners == b.learners && a.learners_next == b.learners_next &&
           a.auto_leave == b.auto_leave;
  }
};

struct SnapshotMetadata {
  Index index = 0;
  Term term = 0;
  ConfState conf_state;
};

// A state machine image at metadata.index. data is opaque to Raft.
struct Snapshot {
  SnapshotMetadata metadata;
  Bytes data;
};

enum class ConfChangeType : uint8_t {
  kAddVoter = 0,
  kAddLearner = 1,
  kRemoveNode = 2,
};

struct ConfChangeSingle {
  ConfChangeType type = ConfChangeType::kAddVoter;
  NodeId node_id = kNoNode;
};

// How a change of several voters is carried out (etcd's ConfChangeTransition).
enum class ConfChangeTransition : uint8_t {
  // One change that moves at most one voter: applied directly ("simple" change). More than one:
  // joint consensus, left automatically once applied.
  kAuto = 0,
  // Always joint consensus, left automatically by the leader.
  kJointImplicit = 1,
  // Always joint consensus, left only by an explicit empty ConfChange proposed by the application.
  kJointExplicit = 2,
};

// A membership change. An empty change (no changes, kAuto) leaves a joint configuration.
struct ConfChange {
  ConfChangeTransition transition = ConfChangeTransition::kAuto;
  std::vector<ConfChangeSingle> changes;
  std::string context;

  bool IsLeaveJoint() const { return changes.empty() && transition == ConfChangeTransition::kAuto; }
  // Whether this change enters a joint configuration; sets auto_leave accordingly.
  bool EntersJoint(bool* auto_leave) const;
};

// Encoded form of a ConfState, for applications that persist it with their applied state.
std::string EncodeConfState(const ConfState& conf_state);
absl::StatusOr<ConfState> DecodeConfState(absl::string_view data);

// Encoded form of a ConfChange as it travels in an entry of type kConfChange.
std::string EncodeConfChange(const ConfChange& change);
absl::StatusOr<ConfChange> DecodeConfChange(absl::string_view data);

enum class MessageType : uint8_t {
  kApp,             // leader -> follower: entries after (index, log_term), leader commit
  kAppResp,         // follower -> leader: accepted up to index, or reject with a hint
  kVote,            // candidate -> all: request a vote for term
  kVoteResp,        //
  kPreVote,         // pre-candidate -> all: would you vote for me at term? (no state change)
  kPreVoteResp,     //
  kSnap,            // leader -> follower: install snapshot
  kHeartbeat,       // leader -> follower: commit (bounded by the follower's match), read context
  kHeartbeatResp,   //
  kProp,            // follower -> leader: forwarded proposal (entries)
  kTransferLeader,  // follower -> leader: forwarded leadership transfer request (from = transferee)
  kTimeoutNow,      // leader -> transferee: start an election now, bypassing pre-vote and lease
  kReadIndex,       // follower -> leader: forwarded read-index request (context)
  kReadIndexResp,   // leader -> follower: read index for context
};

const char* MessageTypeName(MessageType type);

// A message between peers. Only the fields its type names are meaningful.
struct Message {
  MessageType type = MessageType::kApp;
  NodeId to = kNoNode;
  NodeId from = kNoNode;
  Term term = 0;
  Term log_term = 0;  // kApp: term of `index`; kVote/kPreVote: candidate's last log term;
                      // rejected kAppResp: term of reject_hint in the follower's log
  Index index = 0;    // kApp: index preceding entries; kVote: last index; kAppResp: match or
                      // rejected index; kReadIndexResp: the read index
  Index commit = 0;
  bool reject = false;
  Index reject_hint = 0;  // rejected kAppResp: follower's guess of the last matching index
  absl::InlinedVector<Entry, 1> entries;
  std::shared_ptr<const Snapshot> snapshot;  // kSnap
  Bytes context;  // kHeartbeat(Resp)/kReadIndex(Resp): read request; kVote: transfer marker
};

// Human-readable one-line form used by transcripts and failure messages.
std::string DescribeMessage(const Message& message);
std::string DescribeEntry(const Entry& entry);
std::string DescribeConfState(const ConfState& conf_state);

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_TYPES_H_
