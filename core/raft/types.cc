#include "core/raft/types.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/encoding.h"

namespace kvstore::raft {
namespace {

constexpr uint8_t kConfChangeEncodingVersion = 1;

std::string Ids(const std::vector<NodeId>& ids) { return absl::StrJoin(ids, ","); }

}  // namespace

bool ConfChange::EntersJoint(bool* auto_leave) const {
  // Joint consensus is needed for more than one change, or when asked for explicitly.
  if (transition == ConfChangeTransition::kAuto && changes.size() <= 1) return false;
  *auto_leave = transition != ConfChangeTransition::kJointExplicit;
  return true;
}

std::string EncodeConfState(const ConfState& cs) {
  std::string out;
  out.push_back(static_cast<char>(kConfChangeEncodingVersion));
  for (const auto* ids : {&cs.voters, &cs.voters_outgoing, &cs.learners, &cs.learners_next}) {
    PutVarint(&out, ids->size());
    for (NodeId id : *ids) PutVarint(&out, id);
  }
  out.push_back(cs.auto_leave ? 1 : 0);
  return out;
}

absl::StatusOr<ConfState> DecodeConfState(absl::string_view data) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("malformed conf state: ", what));
  };
  if (data.empty() || static_cast<uint8_t>(data[0]) != kConfChangeEncodingVersion) {
    return error("unknown version");
  }
  data.remove_prefix(1);
  ConfState cs;
  for (auto* ids : {&cs.voters, &cs.voters_outgoing, &cs.learners, &cs.learners_next}) {
    uint64_t count = 0;
    if (!GetVarint(&data, &count) || count > data.size()) return error("truncated id list");
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t id = 0;
      if (!GetVarint(&data, &id)) return error("truncated id");
      ids->push_back(id);
    }
  }
  if (data.size() != 1 || static_cast<uint8_t>(data[0]) > 1) return error("bad auto_leave flag");
  cs.auto_leave = data[0] == 1;
  return cs;
}

std::string EncodeConfChange(const ConfChange& change) {
  std::string out;
  out.push_back(static_cast<char>(kConfChangeEncodingVersion));
  out.push_back(static_cast<char>(change.transition));
  PutVarint(&out, change.changes.size());
  for (const ConfChangeSingle& single : change.changes) {
    out.push_back(static_cast<char>(single.type));
    PutVarint(&out, single.node_id);
  }
  PutVarint(&out, change.context.size());
  out.append(change.context);
  return out;
}

absl::StatusOr<ConfChange> DecodeConfChange(absl::string_view data) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed conf change (", data.size(), " bytes): ", what));
  };
  if (data.size() < 2) return error("shorter than its header");
  if (static_cast<uint8_t>(data[0]) != kConfChangeEncodingVersion) {
    return error(absl::StrCat("unknown version ", static_cast<int>(static_cast<uint8_t>(data[0]))));
  }
  const uint8_t transition = static_cast<uint8_t>(data[1]);
  if (transition > static_cast<uint8_t>(ConfChangeTransition::kJointExplicit)) {
    return error(absl::StrCat("unknown transition ", static_cast<int>(transition)));
  }
  data.remove_prefix(2);
  ConfChange change;
  change.transition = static_cast<ConfChangeTransition>(transition);
  uint64_t count = 0;
  if (!GetVarint(&data, &count)) return error("truncated change count");
  if (count > data.size()) return error(absl::StrCat("change count ", count, " exceeds data"));
  change.changes.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    if (data.empty()) return error("truncated change");
    const uint8_t type = static_cast<uint8_t>(data.front());
    data.remove_prefix(1);
    if (type > static_cast<uint8_t>(ConfChangeType::kRemoveNode)) {
      return error(absl::StrCat("unknown change type ", static_cast<int>(type)));
    }
    ConfChangeSingle single;
    single.type = static_cast<ConfChangeType>(type);
    if (!GetVarint(&data, &single.node_id)) return error("truncated node id");
    change.changes.push_back(single);
  }
  uint64_t context_size = 0;
  if (!GetVarint(&data, &context_size)) return error("truncated context size");
  if (context_size != data.size()) {
    return error(absl::StrCat("context size ", context_size, " but ", data.size(), " bytes left"));
  }
  change.context = std::string(data);
  return change;
}

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kApp:
      return "App";
    case MessageType::kAppResp:
      return "AppResp";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResp:
      return "VoteResp";
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResp:
      return "PreVoteResp";
    case MessageType::kSnap:
      return "Snap";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResp:
      return "HeartbeatResp";
    case MessageType::kProp:
      return "Prop";
    case MessageType::kTransferLeader:
      return "TransferLeader";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kReadIndexResp:
      return "ReadIndexResp";
  }
  return "Unknown";
}

std::string DescribeEntry(const Entry& entry) {
  std::string out = absl::StrCat(entry.term, "/", entry.index);
  if (entry.type == EntryType::kConfChange) {
    auto change = DecodeConfChange(entry.data.view());
    if (!change.ok()) return absl::StrCat(out, " ConfChange(malformed)");
    std::vector<std::string> parts;
    for (const ConfChangeSingle& single : change->changes) {
      const char* prefix = single.type == ConfChangeType::kAddVoter     ? "v"
                           : single.type == ConfChangeType::kAddLearner ? "l"
                                                                        : "r";
      parts.push_back(absl::StrCat(prefix, single.node_id));
    }
    const char* transition = change->transition == ConfChangeTransition::kAuto ? ""
                             : change->transition == ConfChangeTransition::kJointImplicit
                                 ? " implicit"
                                 : " explicit";
    return absl::StrCat(out, " ConfChange[", absl::StrJoin(parts, " "), "]", transition);
  }
  if (entry.data.empty()) return absl::StrCat(out, " Normal(empty)");
  return absl::StrCat(out, " Normal \"", absl::CHexEscape(entry.data.view()), "\"");
}

std::string DescribeConfState(const ConfState& cs) {
  std::string out = absl::StrCat("voters=(", Ids(cs.voters), ")");
  if (!cs.voters_outgoing.empty()) absl::StrAppend(&out, "&&(", Ids(cs.voters_outgoing), ")");
  if (!cs.learners.empty()) absl::StrAppend(&out, " learners=(", Ids(cs.learners), ")");
  if (!cs.learners_next.empty()) {
    absl::StrAppend(&out, " learners_next=(", Ids(cs.learners_next), ")");
  }
  if (cs.auto_leave) absl::StrAppend(&out, " autoleave");
  return out;
}

std::string DescribeMessage(const Message& m) {
  std::string out = absl::StrCat(m.from, "->", m.to, " ", MessageTypeName(m.type), " Term:", m.term,
                                 " Log:", m.log_term, "/", m.index);
  if (m.commit != 0) absl::StrAppend(&out, " Commit:", m.commit);
  if (m.reject) absl::StrAppend(&out, " Rejected (Hint: ", m.reject_hint, ")");
  if (!m.entries.empty()) {
    std::vector<std::string> entries;
    for (const Entry& e : m.entries) entries.push_back(DescribeEntry(e));
    absl::StrAppend(&out, " Entries:[", absl::StrJoin(entries, ", "), "]");
  }
  if (m.snapshot != nullptr) {
    absl::StrAppend(&out, " Snapshot: Index:", m.snapshot->metadata.index,
                    " Term:", m.snapshot->metadata.term, " ",
                    DescribeConfState(m.snapshot->metadata.conf_state));
  }
  if (!m.context.empty()) {
    absl::StrAppend(&out, " Context:\"", absl::CHexEscape(m.context.view()), "\"");
  }
  return out;
}

}  // namespace kvstore::raft
