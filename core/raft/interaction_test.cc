// Golden transcripts of Raft interactions (etcd-io/raft's testdata/*.txt style): every file under
// testdata/raft/ is a sequence of commands against an in-memory testing::Cluster, each followed by
// the output it must print. A reviewer reads what happened message by message; a behaviour change
// shows up as a diff. Regenerate after an intended change with
//
//   REWRITE=1 bazel run //core/raft:interaction_test
//
// and read the diff before committing it. File handling lives in //tools/testing:datadriven
// (core/ is pure: no file I/O, even in tests).
//
// Commands (node ids are positional; `[...]` is optional):
//   add-nodes voters=1,2,3 [learners=4] [joining=5,6] [pre-vote=false] [check-quorum=false]
//             [read-only=lease] [forwarding=false]     create the cluster (joining: empty nodes)
//   campaign 1 | tick 1 [n] | tick-election 1          tick-election: 2 * election_tick ticks
//   propose 1 value | read-index 1 context | transfer-leader 1 2
//   propose-conf-change 1 v4 l5 r2 [transition=auto|implicit|explicit]   (no changes: leave joint)
//   process-ready 1                                    carry out one Ready and print it
//   deliver-msgs [from=1] [to=2] [drop]                deliver (or drop) in-flight messages
//   stabilize                                          readies and deliveries until quiet
//   status 1 | raft-log 1
//   cut 1 2 | isolate 1 | heal | crash 1 | restart 1
//   compact 1 index                                    the application snapshots at `index`
//   report-unreachable 1 2 | report-snapshot 1 2 ok|fail

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "core/raft/raft.h"
#include "core/raft/testing/cluster.h"
#include "gtest/gtest.h"
#include "tools/testing/datadriven.h"

namespace kvstore::raft {
namespace {

using datadriven::Command;

// Stabilize gives up (and the test fails) after this many rounds of readies and deliveries: a
// healthy cluster quiesces in a handful, so more means a livelock worth seeing.
constexpr int kMaxStabilizeRounds = 100;

std::string DescribeHardState(const HardState& hard_state) {
  return absl::StrCat("term=", hard_state.term, " vote=", hard_state.vote,
                      " commit=", hard_state.commit);
}

std::string DescribeSnapshot(const Snapshot& snapshot) {
  return absl::StrCat("index=", snapshot.metadata.index, " term=", snapshot.metadata.term, " ",
                      DescribeConfState(snapshot.metadata.conf_state));
}

std::string DescribeSoftState(const SoftState& soft_state) {
  return absl::StrCat("role=", RoleName(soft_state.role), " leader=", soft_state.leader);
}

absl::StatusOr<NodeId> ParseNodeId(absl::string_view word) {
  NodeId id = kNoNode;
  if (!absl::SimpleAtoi(word, &id) || id == kNoNode) {
    return absl::InvalidArgumentError(absl::StrCat("`", word, "` is not a node id"));
  }
  return id;
}

absl::StatusOr<std::vector<NodeId>> ParseNodeIds(const std::vector<std::string>& words) {
  std::vector<NodeId> ids;
  for (const std::string& word : words) {
    if (word.empty()) continue;
    absl::StatusOr<NodeId> id = ParseNodeId(word);
    if (!id.ok()) return id.status();
    ids.push_back(*id);
  }
  return ids;
}

// The value of `key=value`, `fallback` when absent.
std::string Option(const Command& command, absl::string_view key, absl::string_view fallback) {
  const datadriven::Argument* argument = command.Find(key);
  if (argument == nullptr || argument->values.empty()) return std::string(fallback);
  return argument->values.front();
}

// A usage error: the transcript itself is wrong, which fails the test whatever the expected text.
std::string UsageError(const Command& command, absl::string_view problem) {
  ADD_FAILURE() << command.file << ":" << command.line << ": `" << command.text << "`: " << problem;
  return absl::StrCat("usage error: ", problem);
}

std::string Result(const absl::Status& status) {
  return status.ok() ? "ok" : absl::StrCat("error: ", status.ToString());
}

// One transcript: the cluster it builds and the output the cluster's hooks collect.
class Transcript {
 public:
  std::string Run(const Command& command) {
    out_.clear();
    if (command.name == "add-nodes") return AddNodes(command);
    if (cluster_ == nullptr) return UsageError(command, "no cluster yet: start with add-nodes");
    if (command.name == "deliver-msgs") return DeliverMessages(command);
    if (command.name == "stabilize") return Stabilize();
    if (command.name == "heal") {
      cluster_->Heal();
      return "ok";
    }

    // Every other command names a node first; some name a second (the peer).
    const std::vector<std::string> words = command.Positional();
    if (words.empty()) return UsageError(command, "needs a node id");
    absl::StatusOr<NodeId> id = ParseNodeId(words[0]);
    if (!id.ok()) return UsageError(command, id.status().message());
    if (!Exists(*id)) return UsageError(command, absl::StrCat("no node ", *id));
    absl::StatusOr<NodeId> peer = words.size() >= 2 ? ParseNodeId(words[1]) : kNoNode;
    const bool takes_peer = command.name == "cut" || command.name == "transfer-leader" ||
                            command.name == "report-unreachable" ||
                            command.name == "report-snapshot";
    if (takes_peer && (!peer.ok() || *peer == kNoNode)) {
      return UsageError(command, "needs two node ids");
    }

    if (command.name == "cut") {
      cluster_->Cut(*id, *peer);
      return "ok";
    }
    if (command.name == "isolate") {
      cluster_->Isolate(*id);
      return "ok";
    }
    if (command.name == "restart") {
      if (!cluster_->record(*id).crashed) return absl::StrCat("node ", *id, " is running");
      cluster_->Restart(*id);
      return "ok";
    }
    if (cluster_->record(*id).crashed) return absl::StrCat("node ", *id, " is down");

    RawNode& node = cluster_->node(*id);
    if (command.name == "campaign") return Result(node.Campaign());
    if (command.name == "tick" || command.name == "tick-election") {
      int ticks = command.name == "tick" ? 1 : 2 * cluster_->config(*id).election_tick;
      if (command.name == "tick" && words.size() >= 2 && !absl::SimpleAtoi(words[1], &ticks)) {
        return UsageError(command, "usage: tick id [count]");
      }
      cluster_->Tick(*id, ticks);
      return "ok";
    }
    if (command.name == "propose" || command.name == "read-index") {
      if (words.size() != 2) return UsageError(command, "needs a node id and a value");
      const Bytes data(words[1]);
      return Result(command.name == "propose" ? node.Propose(data) : node.ReadIndex(data));
    }
    if (command.name == "propose-conf-change") return ProposeConfChange(command, node);
    if (command.name == "transfer-leader") return Result(node.TransferLeader(*peer));
    if (command.name == "report-unreachable") {
      node.ReportUnreachable(*peer);
      return "ok";
    }
    if (command.name == "report-snapshot") {
      if (words.size() != 3 || (words[2] != "ok" && words[2] != "fail")) {
        return UsageError(command, "usage: report-snapshot leader peer ok|fail");
      }
      node.ReportSnapshot(*peer, words[2] == "ok");
      return "ok";
    }
    if (command.name == "process-ready") {
      indent_.clear();
      if (!ProcessReady(*id)) return "no Ready";
      return out_;
    }
    if (command.name == "status") return DescribeStatus(node.GetStatus());
    if (command.name == "raft-log") return RaftLog(*id);
    if (command.name == "crash") {
      cluster_->Crash(*id);
      return "ok";
    }
    if (command.name == "compact") return Compact(command, *id);
    return UsageError(command, absl::StrCat("unknown command `", command.name, "`"));
  }

 private:
  bool Exists(NodeId id) const {
    for (NodeId known : cluster_->ids()) {
      if (known == id) return true;
    }
    return false;
  }

  void Print(absl::string_view line) { absl::StrAppend(&out_, indent_, line, "\n"); }

  std::string DroppedSuffix(const Message& message) {
    return cluster_->Blocked(message.from, message.to) ? " (dropped)" : "";
  }

  std::string AddNodes(const Command& command) {
    if (cluster_ != nullptr) return UsageError(command, "the cluster exists already");
    const datadriven::Argument* voters = command.Find("voters");
    if (voters == nullptr) return UsageError(command, "needs voters=...");
    absl::StatusOr<std::vector<NodeId>> voter_ids = ParseNodeIds(voters->values);
    absl::StatusOr<std::vector<NodeId>> learner_ids = ParseNodeIds(
        command.Find("learners") ? command.Find("learners")->values : std::vector<std::string>{});
    absl::StatusOr<std::vector<NodeId>> joining_ids = ParseNodeIds(
        command.Find("joining") ? command.Find("joining")->values : std::vector<std::string>{});
    for (const auto* ids : {&voter_ids, &learner_ids, &joining_ids}) {
      if (!ids->ok()) return UsageError(command, ids->status().message());
    }
    const bool pre_vote = Option(command, "pre-vote", "true") == "true";
    const bool check_quorum = Option(command, "check-quorum", "true") == "true";
    const bool lease = Option(command, "read-only", "safe") == "lease";
    const bool forwarding = Option(command, "forwarding", "true") == "true";
    cluster_ = std::make_unique<testing::Cluster>(
        *voter_ids, *learner_ids,
        [=](Config& config) {
          config.pre_vote = pre_vote;
          config.check_quorum = check_quorum;
          config.read_only_option = lease ? ReadOnlyOption::kLeaseBased : ReadOnlyOption::kSafe;
          config.disable_proposal_forwarding = !forwarding;
        },
        *joining_ids);
    cluster_->set_ready_observer([this](NodeId, const Ready& ready) { PrintReady(ready); });
    cluster_->set_delivery_observer([this](const Message& message, bool dropped) {
      Print(absl::StrCat(DescribeMessage(message), dropped ? " (dropped)" : ""));
    });
    return "ok";
  }

  // Carries out one Ready of `id` (printed by the observer), then the configuration it applied.
  bool ProcessReady(NodeId id) {
    conf_changed_ = false;
    if (!cluster_->ProcessReady(id)) return false;
    if (conf_changed_) {
      Print(absl::StrCat("config now ", DescribeConfState(cluster_->record(id).conf_state)));
    }
    return true;
  }

  void PrintReady(const Ready& ready) {
    const size_t size_before = out_.size();
    if (ready.soft_state.has_value()) Print("soft state " + DescribeSoftState(*ready.soft_state));
    if (ready.persist.snapshot != nullptr) {
      Print("persist snapshot " + DescribeSnapshot(*ready.persist.snapshot));
    }
    for (const Entry& entry : ready.persist.entries) Print("persist entry " + DescribeEntry(entry));
    if (ready.persist.hard_state.has_value()) {
      Print("persist hard state " + DescribeHardState(*ready.persist.hard_state));
    }
    if (ready.apply_snapshot != nullptr) {
      Print("restore snapshot " + DescribeSnapshot(*ready.apply_snapshot));
    }
    for (const Message& message : ready.messages) {
      Print(absl::StrCat("send ", DescribeMessage(message), DroppedSuffix(message)));
    }
    for (const Entry& entry : ready.committed_entries) {
      Print("apply " + DescribeEntry(entry));
      if (entry.type == EntryType::kConfChange) conf_changed_ = true;
    }
    for (const ReadState& read_state : ready.read_states) {
      Print(absl::StrCat("read state index=", read_state.index, " context=\"",
                         read_state.context.view(), "\""));
    }
    if (out_.size() == size_before) Print("empty Ready");
  }

  std::string DeliverMessages(const Command& command) {
    indent_.clear();
    absl::StatusOr<std::vector<NodeId>> from = ParseNodeIds({Option(command, "from", "")});
    absl::StatusOr<std::vector<NodeId>> to = ParseNodeIds({Option(command, "to", "")});
    if (!from.ok() || !to.ok()) return UsageError(command, "from= and to= take node ids");
    const NodeId from_id = from->empty() ? kNoNode : from->front();
    const NodeId to_id = to->empty() ? kNoNode : to->front();
    const std::vector<std::string> words = command.Positional();
    if (!words.empty() && !(words.size() == 1 && words[0] == "drop")) {
      return UsageError(command, "usage: deliver-msgs [from=id] [to=id] [drop]");
    }
    if (words.empty()) {
      cluster_->Deliver(from_id, to_id);
    } else {
      std::vector<Message>& in_flight = cluster_->in_flight();
      std::vector<Message> kept;
      for (Message& message : in_flight) {
        if ((from_id == kNoNode || message.from == from_id) &&
            (to_id == kNoNode || message.to == to_id)) {
          Print(DescribeMessage(message) + " (dropped)");
        } else {
          kept.push_back(std::move(message));
        }
      }
      in_flight = std::move(kept);
    }
    return out_.empty() ? "no messages" : out_;
  }

  // Like Cluster::Stabilize, but printing every Ready and delivery, grouped by node.
  std::string Stabilize() {
    for (int round = 0; round < kMaxStabilizeRounds; ++round) {
      bool progress = false;
      for (NodeId id : cluster_->ids()) {
        const testing::NodeRecord& record = cluster_->record(id);
        while (!record.crashed && record.node->HasReady()) {
          indent_.clear();
          Print(absl::StrCat("> ", id, " handling Ready"));
          indent_ = "  ";
          ProcessReady(id);
          progress = true;
        }
      }
      for (NodeId id : cluster_->ids()) {
        bool addressed = false;
        for (const Message& message : cluster_->in_flight()) addressed |= message.to == id;
        if (!addressed) continue;
        indent_.clear();
        Print(absl::StrCat("> ", id, " receiving messages"));
        indent_ = "  ";
        cluster_->Deliver(kNoNode, id);
        progress = true;
      }
      if (!progress) {
        indent_.clear();
        return out_.empty() ? "nothing to do" : out_;
      }
    }
    ADD_FAILURE() << "no quiescence within " << kMaxStabilizeRounds << " rounds";
    return out_;
  }

  std::string ProposeConfChange(const Command& command, RawNode& node) {
    ConfChange change;
    const std::string transition = Option(command, "transition", "auto");
    if (transition == "implicit") {
      change.transition = ConfChangeTransition::kJointImplicit;
    } else if (transition == "explicit") {
      change.transition = ConfChangeTransition::kJointExplicit;
    } else if (transition != "auto") {
      return UsageError(command, "transition= is auto, implicit or explicit");
    }
    const std::vector<std::string> words = command.Positional();
    for (size_t i = 1; i < words.size(); ++i) {
      absl::string_view word = words[i];
      ConfChangeSingle single;
      if (absl::ConsumePrefix(&word, "v")) {
        single.type = ConfChangeType::kAddVoter;
      } else if (absl::ConsumePrefix(&word, "l")) {
        single.type = ConfChangeType::kAddLearner;
      } else if (absl::ConsumePrefix(&word, "r")) {
        single.type = ConfChangeType::kRemoveNode;
      } else {
        return UsageError(command, absl::StrCat("`", word, "`: changes are v<id>, l<id>, r<id>"));
      }
      absl::StatusOr<NodeId> id = ParseNodeId(word);
      if (!id.ok()) return UsageError(command, id.status().message());
      single.node_id = *id;
      change.changes.push_back(single);
    }
    return Result(node.ProposeConfChange(change));
  }

  std::string DescribeStatus(const Status& status) {
    std::string out =
        absl::StrCat(DescribeHardState(status.hard_state), " applied=", status.applied,
                     " last=", status.last_index, " ", DescribeSoftState(status.soft_state));
    if (status.lead_transferee != kNoNode) {
      absl::StrAppend(&out, " transferring-to=", status.lead_transferee);
    }
    absl::StrAppend(&out, "\nconfig ", DescribeConfState(status.conf_state));
    for (const auto& [peer, progress] : status.progress) {
      absl::StrAppend(&out, "\nprogress ", peer, ": ", ProgressStateName(progress.state),
                      " match=", progress.match, " next=", progress.next);
      if (progress.is_learner) absl::StrAppend(&out, " learner");
      if (progress.pending_snapshot != 0) {
        absl::StrAppend(&out, " pending-snapshot=", progress.pending_snapshot);
      }
      if (progress.inflight_count != 0) {
        absl::StrAppend(&out, " inflight=", progress.inflight_count);
      }
    }
    return out;
  }

  std::string RaftLog(NodeId id) {
    const testing::MemoryStorage& storage = cluster_->record(id).storage;
    std::vector<std::string> lines;
    if (storage.snapshot() != nullptr && storage.snapshot()->metadata.index != 0) {
      lines.push_back("snapshot " + DescribeSnapshot(*storage.snapshot()));
    }
    for (const Entry& entry : storage.entries()) lines.push_back(DescribeEntry(entry));
    return lines.empty() ? "log is empty" : absl::StrJoin(lines, "\n");
  }

  // The application snapshots its state at `index` (at most applied), persists the snapshot and
  // lets Raft drop the log up to it.
  std::string Compact(const Command& command, NodeId id) {
    const std::vector<std::string> words = command.Positional();
    Index index = 0;
    if (words.size() != 2 || !absl::SimpleAtoi(words[1], &index)) {
      return UsageError(command, "usage: compact id index");
    }
    testing::NodeRecord& record = cluster_->record(id);
    if (index > record.applied_index) {
      return UsageError(command,
                        absl::StrCat("index ", index, " is beyond applied ", record.applied_index));
    }
    // The configuration at `index` is the applied one unless a change applied after it.
    for (const Entry& entry : record.applied) {
      if (entry.index > index && entry.type == EntryType::kConfChange) {
        return UsageError(command, "a conf change applied after index; compact at applied");
      }
    }
    auto snapshot = std::make_shared<Snapshot>();
    snapshot->metadata.index = index;
    snapshot->metadata.conf_state = record.conf_state;
    snapshot->data = Bytes(absl::StrCat("state machine at ", index));
    bool found = false;
    for (const Entry& entry : record.storage.entries()) {
      if (entry.index == index) {
        snapshot->metadata.term = entry.term;
        found = true;
      }
    }
    if (!found) return UsageError(command, absl::StrCat("index ", index, " is not in storage"));
    const absl::Status status = record.node->Compact(snapshot, index);
    if (status.ok()) record.storage.Write(PersistRequest{0, std::nullopt, {}, snapshot});
    return Result(status);
  }

  std::unique_ptr<testing::Cluster> cluster_;
  std::string out_;
  std::string indent_;
  bool conf_changed_ = false;
};

class InteractionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(InteractionTest, Transcript) {
  Transcript transcript;
  datadriven::RunTranscript(GetParam(),
                            [&](const Command& command) { return transcript.Run(command); });
}

std::vector<std::string> Transcripts() { return datadriven::ListFiles("testdata/raft", ".txt"); }

TEST(InteractionTranscripts, Exist) {
  EXPECT_FALSE(Transcripts().empty())
      << "no transcripts in " << datadriven::ResolvePath("testdata/raft");
}

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param.substr(info.param.find_last_of('/') + 1);
  name = name.substr(0, name.find('.'));
  for (char& c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Raft, InteractionTest, ::testing::ValuesIn(Transcripts()), TestName);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(InteractionTest);

}  // namespace
}  // namespace kvstore::raft
