#include "sim/checkers.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/mvcc/backend.h"
#include "core/mvcc/store.h"

namespace kvstore::sim {

RaftCheckers::RaftCheckers(CheckedWorld* world, ReferenceModel* model, std::string wal_dir,
                           uint64_t wal_segment_bytes)
    : world_(world),
      model_(model),
      wal_dir_(std::move(wal_dir)),
      wal_segment_bytes_(wal_segment_bytes) {}

RaftCheckers::NodeState& RaftCheckers::Track(raft::NodeId id) {
  std::unique_ptr<NodeState>& node = nodes_[id];
  if (node == nullptr) {
    node = std::make_unique<NodeState>();
    node->id = id;
  }
  return *node;
}

const RaftCheckers::NodeState* RaftCheckers::Find(raft::NodeId id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.get();
}

void RaftCheckers::OnStart(NodeState& node, const server::Server& server) {
  node.last_hard_state = raft::HardState{};
  node.vote_term = 0;
  node.vote_in_term = raft::kNoNode;
  node.led_term = 0;
  node.conf_state = server.RaftConfState();
  node.conf_epoch = server.RaftConfigEpoch();
  node.conf_may_change = true;
  node.applied_high = server.store().consistent_index();
}

void RaftCheckers::OnReady(NodeState& node, const server::Server& server,
                           const server::Ready& ready, const store::Wal& wal) {
  const raft::Ready& rr = *ready.raft;
  // Election safety (Raft §5.2): one leader per term.
  if (rr.soft_state.has_value() && rr.soft_state->role == raft::Role::kLeader) {
    const raft::Term term = server.hard_state().term;
    auto [it, inserted] = leaders_by_term_.emplace(term, node.id);
    if (!inserted && it->second != node.id) {
      world_->Violation(
          absl::StrCat("two leaders in term ", term, ": n", it->second, " and n", node.id));
    }
    world_->Trace(absl::StrCat("n", node.id, " leads term ", term));
    CheckLeaderCompleteness(node, server);
  }
  if (rr.persist.snapshot != nullptr || rr.apply_snapshot != nullptr) node.conf_may_change = true;
  if (rr.apply_snapshot != nullptr) {
    node.applied_high = std::max(node.applied_high, rr.apply_snapshot->metadata.index);
  }
  // State machine safety: every node applies the same entry at an index.
  for (const raft::Entry& entry : rr.committed_entries) {
    if (entry.type == raft::EntryType::kConfChange) node.conf_may_change = true;
    // Exactly-once application: an entry the state machine holds already (also across a
    // crash, through the backend's consistent index) is never handed to it again.
    if (entry.index <= node.applied_high) {
      world_->Violation(absl::StrCat("n", node.id, " applies index ", entry.index,
                                     " again (applied ", "through ", node.applied_high, ")"));
    }
    node.applied_high = std::max(node.applied_high, entry.index);
    auto it = applied_entries_.find(entry.index);
    const bool inserted = it == applied_entries_.end();
    bool same = true;
    if (inserted) {
      it = applied_entries_.emplace_hint(
          it, entry.index,
          std::make_pair(entry.term, Digest(entry.data.view(), entry.term * 31 + entry.index)));
      if (entry.data.size() >= kFirstAppliedMinBytes) {
        first_applied_.emplace_back(entry.index, entry.data);
        if (first_applied_.size() > kFirstAppliedKept) first_applied_.pop_front();
      }
      // The reference model replays the committed log once, at each index's first apply.
      decoded_.Reset(entry.data.view());
      model_->Apply(entry.index, entry.type == raft::EntryType::kConfChange, &decoded_);
      if (rules_ != nullptr) rules_->OnFirstApply(entry, &decoded_);
    } else {
      // The very bytes the first node applied (entries travel in shared buffers) are equal to
      // them without a digest; other bytes are compared by digest.
      same = it->second.first == entry.term &&
             (SharesFirstApplied(entry) ||
              it->second.second == Digest(entry.data.view(), entry.term * 31 + entry.index));
    }
    if (!same) {
      world_->Violation(absl::StrCat("n", node.id, " applied a different entry at index ",
                                     entry.index, " (term ", entry.term, " vs ", it->second.first,
                                     ")"));
    }
  }
  // Raft §5.1: a vote is granted, and an append acknowledged, only once what it promises is
  // durable. Checked against what the WAL made durable on the simulated disk, so a core or a
  // driver that released the reply early is caught even if no crash hits the window.
  // An acknowledgement of term T is not early when a newer term's record (above T, at or
  // before the acknowledged index) durably replaced its entries: the member took the append in
  // term T and left that log only for a durable newer one, as if it had synced the append and
  // truncated it next; etcd's raft releases the same reply. Fuzz seed 327057: n4's 5/544 and
  // n1's conflicting 6/543 stepped in one drain, only 6/543 written, both replies released.
  const raft::HardState& durable = wal.durable_hard_state();
  const raft::Index durable_last_index = wal.durable_last_index();
  const raft::Term durable_last_term = wal.DurableTerm(durable_last_index).value_or(0);
  for (const raft::Message& m : rr.messages) {
    if (m.to == node.id || m.reject) continue;
    if (m.type == raft::MessageType::kVoteResp &&
        (durable.term < m.term || (durable.term == m.term && durable.vote != m.to))) {
      world_->Violation(absl::StrCat("n", node.id, " granted n", m.to, " its vote in term ", m.term,
                                     " before the vote was durable"));
    }
    if (m.type == raft::MessageType::kAppResp && m.index > durable_last_index &&
        durable_last_term <= m.term) {
      world_->Violation(absl::StrCat("n", node.id, " acknowledged index ", m.index, " to n", m.to,
                                     " in term ", m.term, " but its durable log ends at ",
                                     durable_last_index));
    }
  }
}

bool RaftCheckers::SharesFirstApplied(const raft::Entry& entry) const {
  if (entry.data.size() < kFirstAppliedMinBytes) return false;  // its digest is cheap
  auto it = std::lower_bound(first_applied_.begin(), first_applied_.end(), entry.index,
                             [](const std::pair<raft::Index, raft::Bytes>& kept,
                                raft::Index index) { return kept.first < index; });
  return it != first_applied_.end() && it->first == entry.index &&
         it->second.data() == entry.data.data() && it->second.size() == entry.data.size();
}

void RaftCheckers::OnRecovered(NodeState& node, const raft::RestartState& state,
                               store::FileSystem* fs, const store::Wal::LogIndex* durable_before) {
  // Recovery leaves the disk in a state that recovers to the same log: a second recovery (read
  // only) of what the first one left, e.g. after cutting a torn tail, finds the same records.
  store::WalOptions read_only;
  read_only.segment_bytes = wal_segment_bytes_;
  read_only.read_only = true;
  auto again = store::Wal::Open(fs, wal_dir_, read_only);
  if (!again.ok()) {
    world_->Violation(absl::StrCat("n", node.id, " recovered its WAL, but a second recovery of ",
                                   "what it left on disk fails: ", again.status().message()));
  } else {
    const raft::RestartState& second = (*again)->recovery().state;
    auto last = [](const raft::RestartState& st) {
      return !st.entries.empty() ? st.entries.back().index
                                 : (st.snapshot != nullptr ? st.snapshot->metadata.index : 0);
    };
    if (second.hard_state != state.hard_state || last(second) != last(state) ||
        second.entries.size() != state.entries.size()) {
      world_->Violation(
          absl::StrCat("n", node.id, " recovered last index ", last(state), " hard state term ",
                       state.hard_state.term, " commit ", state.hard_state.commit,
                       ", but what recovery left on disk recovers to last index ", last(second),
                       " term ", second.hard_state.term, " commit ", second.hard_state.commit));
    }
  }
  if (durable_before == nullptr) return;
  const store::Wal::LogIndex& durable = *durable_before;
  const raft::HardState& hs = state.hard_state;
  if (hs.term < durable.hard_state.term ||
      (hs.term == durable.hard_state.term && durable.hard_state.vote != raft::kNoNode &&
       hs.vote != durable.hard_state.vote)) {
    world_->Violation(absl::StrCat("n", node.id, " recovered term ", hs.term, " vote ", hs.vote,
                                   " but had made term ", durable.hard_state.term, " vote ",
                                   durable.hard_state.vote, " durable"));
  }
  const raft::Index snapshot_index = state.snapshot != nullptr ? state.snapshot->metadata.index : 0;
  const raft::Index first = state.entries.empty() ? snapshot_index + 1 : state.entries[0].index;
  if (snapshot_index < durable.snapshot_index && first > durable.snapshot_index + 1) {
    world_->Violation(absl::StrCat("n", node.id, " recovered a log starting after ", first - 1,
                                   " but its durable snapshot marker was at ",
                                   durable.snapshot_index));
  }
  // Every durable entry is recovered (or covered by the recovered snapshot marker), unless
  // records written after the durable point also reached the disk and replaced it: a new
  // leader's entry of a higher term at its index or before, truncating the rest (Raft §5.3).
  for (raft::Index index = std::max(durable.snapshot_index, snapshot_index) + 1;
       index <= durable.LastIndex(); ++index) {
    const raft::Term want = *durable.TermOf(index);
    const bool present = index >= first && index - first < state.entries.size();
    const raft::Term found = present ? state.entries[index - first].term : 0;
    if (found > want) break;  // replaced from here on by a later record
    if (found < want) {
      world_->Violation(
          absl::StrCat("n", node.id, " lost durable entry ", index, " (term ", want,
                       ") in its restart: the WAL recovered ",
                       present ? absl::StrCat("term ", found, " there") : "up to ",
                       present ? "" : absl::StrCat(first + state.entries.size() - 1)));
      break;
    }
  }
  // What was recovered is what was written: an entry agrees with the one applied cluster-wide
  // at its index and term (Log Matching), byte for byte.
  for (const raft::Entry& entry : state.entries) {
    auto it = applied_entries_.find(entry.index);
    if (it == applied_entries_.end() || it->second.first != entry.term) continue;
    if (it->second.second != Digest(entry.data.view(), entry.term * 31 + entry.index)) {
      world_->Violation(absl::StrCat("n", node.id, " recovered entry ", entry.index, " (term ",
                                     entry.term, ") with bytes that differ from what was applied"));
      break;
    }
  }
}

const raft::ConfState* RaftCheckers::OnStep(NodeState& node, const server::Server& server) {
  const raft::HardState hs = server.hard_state();
  const raft::Index last_index = server.last_index();
  const bool leader = server.is_leader();
  const raft::HardState& prev = node.last_hard_state;
  // Per-step invariants, in the spirit of LogCabin's: checked on every event.
  if (hs.term < prev.term) {
    world_->Violation(absl::StrCat("n", node.id, " term decreased ", prev.term, " -> ", hs.term));
  }
  if (hs.commit < prev.commit) {
    world_->Violation(
        absl::StrCat("n", node.id, " commit decreased ", prev.commit, " -> ", hs.commit));
  }
  if (hs.commit > last_index) {
    world_->Violation(
        absl::StrCat("n", node.id, " commit ", hs.commit, " beyond last index ", last_index));
  }
  if (hs.commit != prev.commit || hs.term != prev.term) {
    raft::Index& committed = committed_in_term_[hs.term];
    committed = std::max(committed, hs.commit);
  }
  // The configuration is copied only when it changed: copying it on every event cost 6% of a run.
  // It can change only where the core writes it, which moves its epoch.
  std::optional<raft::ConfState> changed_conf;
  const uint64_t conf_epoch = server.RaftConfigEpoch();
  if (conf_epoch != node.conf_epoch) {
    node.conf_epoch = conf_epoch;
    if (!server.RaftConfStateIs(node.conf_state)) changed_conf = server.RaftConfState();
  }
  const raft::ConfState& conf_state = changed_conf.has_value() ? *changed_conf : node.conf_state;
  if (leader && node.led_term == hs.term && hs.commit > prev.commit) {
    // Raft §5.4.2: a leader commits by counting replicas only entries of its own term, so every
    // advance of its commit index lands on an entry of its term (Figure 8).
    const std::optional<raft::Term> term = server.LogTerm(hs.commit);
    if (term.has_value() && *term != hs.term) {
      world_->Violation(absl::StrCat("n", node.id, " leader of term ", hs.term,
                                     " advanced commit to ", hs.commit, ", an entry of term ",
                                     *term));
    }
    CheckCommitDurable(node, conf_state, hs.commit, hs.term);
  }
  node.led_term = leader ? hs.term : 0;
  // The core follows etcd-io/raft: a configuration takes effect when its conf change entry is
  // applied (or a snapshot installed), never at proposal or append. (Raft thesis §4.1 uses it
  // from append instead, which is safe only with a rollback when the entry is truncated.)
  const raft::ConfState* changed = nullptr;
  if (changed_conf.has_value()) {
    const bool was_joint = !node.conf_state.voters_outgoing.empty();
    const bool joint = !changed_conf->voters_outgoing.empty();
    if (joint && !was_joint) ++joint_entered_;
    if (was_joint && !joint) ++joint_left_;
    if (rules_ != nullptr) rules_->OnConfChanged(node.id, node.conf_state, *changed_conf);
    if (!node.conf_may_change) {
      world_->Violation(absl::StrCat("n", node.id, " changed its configuration from ",
                                     raft::DescribeConfState(node.conf_state), " to ",
                                     raft::DescribeConfState(*changed_conf),
                                     " without applying a conf change or a snapshot"));
    }
    node.conf_state = std::move(*changed_conf);
    changed = &node.conf_state;
  }
  node.conf_may_change = false;
  if (leader && hs.vote != node.id) {
    world_->Violation(
        absl::StrCat("n", node.id, " leads term ", hs.term, " without voting for itself"));
  }
  if (hs.vote != raft::kNoNode) {
    if (node.vote_term == hs.term && node.vote_in_term != hs.vote) {
      world_->Violation(absl::StrCat("n", node.id, " voted twice in term ", hs.term, ": n",
                                     node.vote_in_term, " and n", hs.vote));
    }
    node.vote_term = hs.term;
    node.vote_in_term = hs.vote;
    if (!node.first_vote.has_value()) node.first_vote = std::make_pair(hs.term, hs.vote);
  }
  node.last_hard_state = hs;
  return changed;
}

void RaftCheckers::CheckCommitDurable(const NodeState& leader, const raft::ConfState& conf,
                                      raft::Index commit, raft::Term term) {
  // Raft §5.3/§5.4: an entry is committed once it is stored on a majority of the voters (of
  // both halves of a joint configuration); "stored" means durable, or a crash could lose it.
  // Checked against the simulated disks, which is what survives a crash.
  auto durably_holds = [&](raft::NodeId id) {
    const store::Wal::LogIndex* log = world_->DurableLog(id);
    if (log == nullptr) return false;  // a member that never started
    if (log->snapshot_index >= commit) return true;
    return log->TermOf(commit) == term;
  };
  std::string holders;
  auto majority_holds = [&](const std::vector<raft::NodeId>& voters) {
    size_t holding = 0;
    for (raft::NodeId id : voters) {
      const bool holds = durably_holds(id);
      holding += holds ? 1 : 0;
      if (holds) absl::StrAppend(&holders, holders.empty() ? "" : ",", id);
    }
    return voters.empty() || holding > voters.size() / 2;
  };
  // The commit was decided under the configuration of the last check (leader.conf_state): a
  // conf change entry it committed may have been applied since, in the same Ready (`conf`).
  auto quorum_holds = [&](const raft::ConfState& conf) {
    holders.clear();
    const bool incoming = majority_holds(conf.voters);
    return majority_holds(conf.voters_outgoing) && incoming;
  };
  if (!quorum_holds(leader.conf_state) && !quorum_holds(conf)) {
    world_->Violation(absl::StrCat("n", leader.id, " leader of term ", term, " committed index ",
                                   commit, " which no majority of ",
                                   raft::DescribeConfState(leader.conf_state), " holds durably ",
                                   "(held by: ", holders.empty() ? "none" : holders, ")"));
  }
}

void RaftCheckers::CheckLeaderCompleteness(const NodeState& node, const server::Server& server) {
  // Raft §5.4 (Leader Completeness): a leader's log holds every entry committed in an earlier
  // term, except what it compacted into its snapshot. Not what a later term committed: a
  // candidate whose vote replies were held (a paused member, a slow link) can win its term after
  // a leader of a higher term committed more, and its log need not hold that.
  const raft::Term term = server.hard_state().term;
  raft::Term committed_term = 0;
  raft::Index committed = 0;  // the highest index committed in a term before `term`
  for (auto it = committed_in_term_.begin(); it != committed_in_term_.end() && it->first < term;
       ++it) {
    if (it->second > committed) {
      committed = it->second;
      committed_term = it->first;
    }
  }
  if (committed == 0) return;
  if (server.last_index() < committed) {
    world_->Violation(absl::StrCat("n", node.id, " leads term ", term, " with last index ",
                                   server.last_index(), " but index ", committed,
                                   " was committed by term ", committed_term));
    return;
  }
  const raft::Index first = server.RaftStatus().first_index;
  for (auto it = applied_entries_.lower_bound(first);
       it != applied_entries_.end() && it->first <= committed; ++it) {
    const std::optional<raft::Term> log_term = server.LogTerm(it->first);
    if (log_term.has_value() && *log_term != it->second.first) {
      world_->Violation(absl::StrCat("n", node.id, " leads term ", term, " holding term ",
                                     *log_term, " at index ", it->first, " where an entry of term ",
                                     it->second.first, " was applied"));
      return;
    }
  }
}

// --------------------------------------------------------------------------------------------
// What clients are told

void AnswerCheckers::OnAcknowledgedWrite(raft::NodeId id, const server::Server* server,
                                         const std::string& key, const std::string& value,
                                         mvcc::Revision revision) {
  // Write provenance: an "ok" to a put (or a successful cas) is given by the member that applied
  // the client's own entry, so its store's history at the response's revision holds that key
  // with that value. A member that answered for another entry at the same log index (a waiter
  // found by position instead of by request identity) fails here.
  if (server == nullptr) return;
  auto history = server->store().History(revision, revision, key, "", false, 0);
  if (!history.ok()) return;  // compacted since: nothing left to compare
  for (const mvcc::Event& event : *history) {
    if (event.type == mvcc::Event::Type::kPut && event.kv.value == value) return;
  }
  world_->Violation(absl::StrCat("n", id, " acknowledged ", key, "=", value, " at revision ",
                                 revision, " but its store holds no such write there"));
}

void AnswerCheckers::OnSerializableRead(raft::NodeId id, const std::string& key,
                                        const std::string& value) {
  // A serializable read may be stale but never invented: it returns nil or a written value.
  if (written_values_.count(value) == 0) {
    world_->Violation(absl::StrCat("n", id, " served a serializable read of ", key,
                                   " with a value nobody wrote: ", value));
  }
}

namespace {

// What Store::Hash(revision) covers (the compact revision and every record of the key bucket
// below revision + 1), as a Digest: members' stores are only compared for equality here, and
// Store::Hash's byte-wise FNV-1a over every record of every member was 1.6% of a fuzz seed.
// nullopt where Store::Hash fails (a revision beyond the current one or below the compaction).
std::optional<uint64_t> StoreDigest(const AnswerCheckers::LiveStore& live,
                                    mvcc::Revision revision) {
  const mvcc::Store& store = live.server->store();
  if (revision > store.current_revision() || revision < store.compact_revision()) {
    return std::nullopt;
  }
  uint64_t digest = raft::SplitMix64::Mix(static_cast<uint64_t>(store.compact_revision()));
  const std::string end = mvcc::RevisionKey(mvcc::RevisionPair{revision + 1, 0}, false);
  live.backend->Range(mvcc::Bucket::kKey, "", end,
                      [&](absl::string_view key, absl::string_view value) {
                        digest = Digest(key, digest);
                        digest = Digest(value, digest ^ 0x9E3779B97F4A7C15ull);
                        return true;
                      });
  return digest;
}

}  // namespace

void AnswerCheckers::CheckHashes(const std::vector<LiveStore>& live) {
  // A digest walks the whole store; most pairs ask for the same revision (every live node has
  // caught up), so each node digests each revision once.
  std::map<std::pair<size_t, mvcc::Revision>, std::optional<uint64_t>> digests;
  auto digest = [&](size_t i, mvcc::Revision revision) -> const std::optional<uint64_t>& {
    auto it = digests.find({i, revision});
    if (it == digests.end()) {
      it = digests.emplace(std::make_pair(i, revision), StoreDigest(live[i], revision)).first;
    }
    return it->second;
  };
  for (size_t i = 0; i + 1 < live.size(); ++i) {
    for (size_t j = i + 1; j < live.size(); ++j) {
      const mvcc::Store& a = live[i].server->store();
      const mvcc::Store& b = live[j].server->store();
      const mvcc::Revision revision = std::min(a.current_revision(), b.current_revision());
      if (revision < std::max(a.compact_revision(), b.compact_revision())) continue;
      const std::optional<uint64_t>& da = digest(i, revision);
      const std::optional<uint64_t>& db = digest(j, revision);
      if (!da.has_value() || !db.has_value() || a.compact_revision() != b.compact_revision()) {
        continue;
      }
      if (*da != *db) {
        world_->Violation(absl::StrCat("n", live[i].id, " and n", live[j].id,
                                       " disagree on the store hash at revision ", revision));
      }
    }
  }
}

// --------------------------------------------------------------------------------------------
// The server's rules

void ServerRuleCheckers::OnPromoteSubmitted(raft::NodeId node, server::RequestId request,
                                            raft::NodeId learner, raft::Index leader_match) {
  ++counts_.promotions_submitted;
  promotions_[{node, request}] = {learner, leader_match};
}

namespace {

bool IsLimitCode(ErrorCode code) {
  return code == ErrorCode::kValueTooLarge || code == ErrorCode::kRequestTooLarge ||
         code == ErrorCode::kTooManyOps;
}

// Bounds of the bytes a request's entry takes: `low` counts only the keys and values it carries
// (its entry holds at least those), `high` adds room for every field's tag and length and for
// the entry's own fields (proposer, request id, time, user).
struct Bytes {
  uint64_t low = 0;
  uint64_t high = 160;
  void Add(const std::string& s) {
    low += s.size();
    high += s.size() + 12;
  }
};

void MeasureTxn(const mvcc::TxnRequest& txn, Bytes* bytes, size_t* most_ops) {
  *most_ops = std::max({*most_ops, txn.compare.size(), txn.success.size(), txn.failure.size()});
  for (const mvcc::Compare& c : txn.compare) {
    bytes->Add(c.key);
    bytes->Add(c.range_end);
    bytes->Add(c.value);
    bytes->high += 24;
  }
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      bytes->high += 32;
      switch (op.kind) {
        case mvcc::RequestOp::Kind::kRange:
          bytes->Add(op.range.key);
          bytes->Add(op.range.range_end);
          break;
        case mvcc::RequestOp::Kind::kPut:
          bytes->Add(op.put.key);
          bytes->Add(op.put.value);
          break;
        case mvcc::RequestOp::Kind::kDeleteRange:
          bytes->Add(op.delete_range.key);
          bytes->Add(op.delete_range.range_end);
          break;
        case mvcc::RequestOp::Kind::kTxn:
          if (op.txn != nullptr) MeasureTxn(*op.txn, bytes, most_ops);
          break;
      }
    }
  }
}

// The limit refusal a txn's validation owes, in the server's order (etcd checkTxnRequest): its
// own counts, then each operation of the success and the failure branch (a put's value, a
// nested txn). nullopt: none of the value and ops limits.
std::optional<ErrorCode> TxnRefusal(const mvcc::TxnRequest& txn, uint64_t max_bytes,
                                    size_t max_ops) {
  const size_t count = std::max({txn.compare.size(), txn.success.size(), txn.failure.size()});
  if (count > max_ops) return ErrorCode::kTooManyOps;
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      if (op.kind == mvcc::RequestOp::Kind::kPut && op.put.value.size() > max_bytes) {
        return ErrorCode::kValueTooLarge;
      }
      // A nested txn's limit is its holder's less the holder's count (etcd's checkTxnRequest).
      if (op.kind == mvcc::RequestOp::Kind::kTxn && op.txn != nullptr) {
        if (auto owed = TxnRefusal(*op.txn, max_bytes, max_ops - count)) return owed;
      }
    }
  }
  return std::nullopt;
}

// Whether an applied txn holds a put in either branch (nested ones included): etcd's capped
// applier refuses it while the NOSPACE alarm is active, whichever branch would run.
bool TxnPuts(const server::pb::TxnRequest& txn) {
  for (const auto* branch : {&txn.success(), &txn.failure()}) {
    for (const server::pb::RequestOp& op : *branch) {
      if (op.has_put()) return true;
      if (op.has_txn() && TxnPuts(op.txn())) return true;
    }
  }
  return false;
}

}  // namespace

ServerRuleCheckers::Measured ServerRuleCheckers::Measure(const server::Request& request) const {
  Measured measured;
  Bytes bytes;
  size_t most_ops = 0;
  switch (request.type) {
    case server::RequestType::kPut:
      if (request.put.value.size() > limits_.max_request_bytes) {
        measured.owed = ErrorCode::kValueTooLarge;
      }
      bytes.Add(request.put.key);
      bytes.Add(request.put.value);
      break;
    case server::RequestType::kTxn:
      measured.owed = TxnRefusal(request.txn, limits_.max_request_bytes, limits_.max_txn_ops);
      MeasureTxn(request.txn, &bytes, &most_ops);
      break;
    case server::RequestType::kDeleteRange:
      bytes.Add(request.delete_range.key);
      bytes.Add(request.delete_range.range_end);
      break;
    case server::RequestType::kRange:
      // Served, not proposed (a linearizable read waits for a ReadIndex): no entry to size.
      bytes = Bytes{0, 0};
      break;
    default:
      // Membership, lease, alarm and maintenance requests: small, or refused for other reasons.
      for (const std::string& url : request.member.peer_urls) bytes.Add(url);
      break;
  }
  if (!measured.owed.has_value() && bytes.low > limits_.max_request_bytes) {
    measured.owed = ErrorCode::kRequestTooLarge;
  }
  measured.within = !measured.owed.has_value() && bytes.high <= limits_.max_request_bytes &&
                    most_ops <= limits_.max_txn_ops;
  return measured;
}

void ServerRuleCheckers::OnSubmit(raft::NodeId node, server::RequestId id,
                                  const Measured& measured) {
  if (measured.owed.has_value()) {
    ++counts_.over_limit_submitted;
    over_limit_[{node, id}] = *measured.owed;
  } else if (measured.within) {
    ++counts_.within_limits_submitted;
    if (within_.emplace(ProposalKey{node, id}, true).second) within_order_.push_back({node, id});
    ForgetOldest(&within_, &within_order_);
  }
}

// etcd 3.4's backendQuota.Cost (server/etcdserver/quota.go): a put costs its key and value and
// 256 bytes of overhead, a txn its larger branch's top-level puts (nested txns count nothing),
// a lease grant 64 bytes, anything else nothing.
uint64_t ServerRuleCheckers::QuotaCost(const server::Request& request) {
  constexpr uint64_t kKvOverhead = 256, kLeaseOverhead = 64;
  auto branch = [&](const std::vector<mvcc::RequestOp>& ops) {
    uint64_t cost = 0;
    for (const mvcc::RequestOp& op : ops) {
      if (op.kind == mvcc::RequestOp::Kind::kPut) {
        cost += kKvOverhead + op.put.key.size() + op.put.value.size();
      }
    }
    return cost;
  };
  switch (request.type) {
    case server::RequestType::kPut:
      return kKvOverhead + request.put.key.size() + request.put.value.size();
    case server::RequestType::kTxn:
      return std::max(branch(request.txn.success), branch(request.txn.failure));
    case server::RequestType::kLeaseGrant:
      return kLeaseOverhead;
    default:
      return 0;
  }
}

uint64_t ServerRuleCheckers::QuotaCost(const server::pb::InternalRequest& internal) {
  constexpr uint64_t kKvOverhead = 256, kLeaseOverhead = 64;
  auto branch = [&](const auto& ops) {
    uint64_t cost = 0;
    for (const server::pb::RequestOp& op : ops) {
      if (op.has_put()) cost += kKvOverhead + op.put().key().size() + op.put().value().size();
    }
    return cost;
  };
  if (internal.has_put()) {
    return kKvOverhead + internal.put().key().size() + internal.put().value().size();
  }
  if (internal.has_txn()) {
    return std::max(branch(internal.txn().success()), branch(internal.txn().failure()));
  }
  if (internal.has_lease_grant()) return kLeaseOverhead;
  return 0;
}

ServerRuleCheckers::QuotaAtSubmit ServerRuleCheckers::MeasureQuota(const server::Request& request,
                                                                   uint64_t backend_bytes,
                                                                   bool alarm_listed,
                                                                   bool own_alarm_listed) const {
  QuotaAtSubmit quota;
  const uint64_t cost = QuotaCost(request);
  if (cost == 0) return quota;
  quota.full = backend_bytes + cost >= limits_.quota_bytes;
  quota.alarm_listed = alarm_listed;
  quota.own_alarm_listed = own_alarm_listed;
  return quota;
}

void ServerRuleCheckers::OnQuotaSubmitted(raft::NodeId node, server::RequestId id,
                                          const QuotaAtSubmit& quota) {
  if (!quota.full && !quota.alarm_listed) return;
  if (quota.full) {
    ++counts_.quota_full_submitted;
    // The member refuses it and proposes its alarm, unless it has it already.
    if (!quota.own_alarm_listed) ++alarm_reasons_[node];
  }
  if (quota_submits_.emplace(ProposalKey{node, id}, quota.full).second) {
    quota_submits_order_.push_back({node, id});
  }
  ForgetOldest(&quota_submits_, &quota_submits_order_);
}

void ServerRuleCheckers::OnApplied(raft::NodeId node, const server::Ready& ready,
                                   uint64_t backend_bytes, bool alarm_listed) {
  if (ready.raft == nullptr || ready.raft->committed_entries.empty()) return;
  // No entry can cost more than its bytes plus the overhead of max_txn_ops puts: most Readies
  // of most runs (etcd's 2 GiB default quota) end here.
  const uint64_t most_overhead = 256 * (limits_.max_txn_ops + 1);
  // After the Ready the member proposes its alarm only if it lists none, at most once.
  bool alarm_reason = alarm_listed;
  for (const raft::Entry& entry : ready.raft->committed_entries) {
    if (entry.type != raft::EntryType::kNormal || entry.data.empty()) continue;
    if (backend_bytes + entry.data.size() + most_overhead < limits_.quota_bytes) continue;
    server::pb::InternalRequest internal;
    if (!internal.ParseFromArray(entry.data.data(), static_cast<int>(entry.data.size()))) {
      continue;
    }
    const uint64_t cost = QuotaCost(internal);
    if (cost == 0 || backend_bytes + cost < limits_.quota_bytes) continue;
    // The backend only grew within the Ready: unless it reaches the quota with this entry's
    // cost now, it did not when the entry applied.
    if (internal.member_id() == node && internal.id() != 0 && !internal.system()) {
      const ProposalKey key{node, internal.id()};
      if (past_quota_.emplace(key, true).second) past_quota_order_.push_back(key);
      ForgetOldest(&past_quota_, &past_quota_order_);
    }
    if (!alarm_reason) {
      ++alarm_reasons_[node];
      alarm_reason = true;
    }
  }
}

void ServerRuleCheckers::ForgetOldest(std::map<ProposalKey, bool>* awaited,
                                      std::deque<ProposalKey>* order) {
  // The order may name requests answered since: they are gone from the map already.
  while (order->size() > kMaxAwaited) {
    awaited->erase(order->front());
    order->pop_front();
  }
}

void ServerRuleCheckers::OnAnswer(raft::NodeId node, const server::Response& response) {
  const ProposalKey key{node, response.request_id};
  const ErrorCode code = CodeOf(response.status);
  // Request limits.
  if (auto it = over_limit_.find(key); it != over_limit_.end()) {
    // VALUE_TOO_LARGE and TOO_MANY_OPS come from validating the request, before anything but
    // the quota (etcd's quotaKVServer checks it first: NOSPACE for a request submitted past
    // it); REQUEST_TOO_LARGE from sizing its entry when it is proposed, after the checks a
    // proposal passes first (leader, NOSPACE alarm, load, as etcd's quota interceptor precedes
    // its size check): any refusal will do, as long as it is one.
    const auto quota = quota_submits_.find(key);
    const bool submitted_past_quota = quota != quota_submits_.end() && quota->second;
    const bool refused =
        it->second == ErrorCode::kRequestTooLarge
            ? !response.status.ok() && code != ErrorCode::kTimeout
            : code == it->second || (code == ErrorCode::kNoSpace && submitted_past_quota);
    if (!refused) {
      world_->Violation(
          absl::StrCat("n", node, " answered request ", response.request_id,
                       ", over a limit (owed ", ErrorCodeName(it->second), "), with ",
                       response.status.ok() ? "OK" : std::string(ErrorCodeName(code)),
                       response.status.ok() ? "" : absl::StrCat(": ", response.status.message())));
    } else {
      ++counts_.over_limit_refused;
    }
  } else if (auto within = within_.find(key); within != within_.end()) {
    within_.erase(within);
    if (IsLimitCode(code)) {
      world_->Violation(absl::StrCat("n", node, " refused request ", response.request_id,
                                     ", well within the limits (max_request_bytes ",
                                     limits_.max_request_bytes, ", max_txn_ops ",
                                     limits_.max_txn_ops, "): ", response.status.ToString()));
    }
  } else if (IsLimitCode(code)) {
    ++counts_.limit_refusals_unjudged;  // near a limit, or a request the driver did not measure
  }
  // The raising rule: a request submitted past the quota is refused, and a NOSPACE answer has a
  // reason (an entry applied in the alarm is judged below).
  if (auto it = quota_submits_.find(key);
      it != quota_submits_.end() || code == ErrorCode::kNoSpace) {
    const bool known = it != quota_submits_.end();
    const bool full = known && it->second;
    const bool alarm_listed = known && !it->second;
    if (known) quota_submits_.erase(it);
    if (full && response.status.ok()) {
      world_->Violation(absl::StrCat("n", node, " answered OK to request ", response.request_id,
                                     ", submitted when its backend's size plus the request's "
                                     "cost reached the quota of ",
                                     limits_.quota_bytes, " bytes: it must be refused NOSPACE"));
    }
    if (code == ErrorCode::kNoSpace && data_writes_.count(key) == 0) {
      ++counts_.nospace_answers_judged;
      if (!full && !alarm_listed) {
        world_->Violation(absl::StrCat(
            "n", node, " refused request ", response.request_id,
            " NOSPACE when it was submitted, though the request fit its quota and it listed no "
            "alarm: ",
            response.status.message()));
      }
    }
  }
  // Quota.
  bool past_quota = false;
  if (auto it = past_quota_.find(key); it != past_quota_.end()) {
    past_quota = true;
    past_quota_.erase(it);
  }
  if (auto it = data_writes_.find(key); it != data_writes_.end()) {
    const bool in_alarm = it->second;
    data_writes_.erase(it);
    ++counts_.quota_answers_judged;
    const bool applied_past_quota =
        code == ErrorCode::kNoSpace &&
        absl::StrContains(response.status.message(), server::kAppliedPastQuota);
    if (in_alarm && response.status.ok()) {
      world_->Violation(absl::StrCat("n", node, " answered OK to request ", response.request_id,
                                     ", whose entry adds data and applied while the NOSPACE "
                                     "alarm was active: it must be refused"));
    } else if (!in_alarm && code == ErrorCode::kNoSpace && !applied_past_quota) {
      world_->Violation(absl::StrCat("n", node, " refused request ", response.request_id,
                                     " NOSPACE, whose entry applied while no NOSPACE alarm was "
                                     "active: ",
                                     response.status.message()));
    } else if (applied_past_quota && (in_alarm || !past_quota)) {
      world_->Violation(absl::StrCat(
          "n", node, " answered request ", response.request_id, " NOSPACE as applied past the ",
          "quota, though ",
          in_alarm ? "the NOSPACE alarm was active when it applied (it must be refused)"
                   : absl::StrCat("its backend and the write's cost stay under the quota of ",
                                  limits_.quota_bytes, " bytes"),
          ": ", response.status.message()));
    } else if (applied_past_quota) {
      ++counts_.applied_past_quota_answers;
    }
  }
  // Promotions.
  if (promotions_.empty() || response.status.ok() ||
      response.type != server::RequestType::kMemberPromote) {
    return;
  }
  // A refused promotion applies nothing. (A TIMEOUT may still apply: it stays.)
  if (code == ErrorCode::kTimeout) return;
  promotions_.erase(key);
}

void ServerRuleCheckers::OnConfChanged(raft::NodeId node, const raft::ConfState& before,
                                       const raft::ConfState& after) {
  ++counts_.configurations_judged;
  const size_t learners = after.learners.size() + after.learners_next.size();
  if (learners > limits_.max_learners) {
    world_->Violation(absl::StrCat("n", node, " applied a configuration with ", learners,
                                   " learners, beyond the limit of ", limits_.max_learners, ": ",
                                   raft::DescribeConfState(after)));
  }
  if (learners == limits_.max_learners) ++counts_.configurations_at_learner_limit;
  for (raft::NodeId learner : before.learners) {
    if (std::find(after.voters.begin(), after.voters.end(), learner) == after.voters.end()) {
      continue;
    }
    // A promotion applies on `node`. Any of the promote requests leaders took for this learner
    // may be the one applied: the rule must hold for the least demanding of them.
    std::optional<raft::Index> leader_match;
    for (const auto& [request, promotion] : promotions_) {
      if (promotion.first != learner) continue;
      if (!leader_match.has_value() || promotion.second < *leader_match) {
        leader_match = promotion.second;
      }
    }
    if (!leader_match.has_value()) {
      ++counts_.promotions_unjudged;
      continue;
    }
    ++counts_.promotions_judged;
    const store::Wal::LogIndex* log = world_->DurableLog(learner);
    const raft::Index durable = log == nullptr ? 0 : log->LastIndex();
    if (static_cast<double>(durable) <
        static_cast<double>(*leader_match) * server::kLearnerReadyRatio) {
      world_->Violation(absl::StrCat("n", node, " applied the promotion of learner n", learner,
                                     " whose durable log ends at ", durable, ", below ",
                                     server::kLearnerReadyRatio * 100, "% of the ", *leader_match,
                                     " entries the leader held when it took the promote request"));
    }
  }
}

void ServerRuleCheckers::OnFirstApply(const raft::Entry& entry) {
  DecodedEntry decoded(entry.data.view());
  OnFirstApply(entry, &decoded);
}

void ServerRuleCheckers::OnFirstApply(const raft::Entry& entry, DecodedEntry* decoded) {
  if (entry.type != raft::EntryType::kNormal || entry.data.empty()) return;
  ++counts_.entries_judged;
  if (entry.data.size() > limits_.max_request_bytes) {
    world_->Violation(absl::StrCat("index ", entry.index, " applied a request of ",
                                   entry.data.size(), " bytes, beyond the limit of ",
                                   limits_.max_request_bytes, " bytes"));
    return;
  }
  const server::pb::InternalRequest* parsed = decoded->Get();
  if (parsed == nullptr) return;
  const server::pb::InternalRequest& internal = *parsed;
  const ProposalKey key{internal.member_id(), internal.id()};
  if (internal.id() != 0 && !over_limit_.empty()) {
    if (auto it = over_limit_.find(key); it != over_limit_.end()) {
      world_->Violation(absl::StrCat("index ", entry.index, " applied request ", internal.id(),
                                     " of n", internal.member_id(), ", over a limit (owed ",
                                     ErrorCodeName(it->second), ")"));
    }
  }
  // Each compare or operation takes at least two bytes (a tag and a length): an entry smaller
  // than that for max_txn_ops + 1 of them cannot break the ops limit.
  if (internal.has_txn() && entry.data.size() >= 2 * (limits_.max_txn_ops + 1)) {
    ++counts_.txns_judged;
    CheckTxn(entry.index, internal.txn(), 0, limits_.max_txn_ops);
  }
  // The NOSPACE alarm, in log order (every member applies the same log).
  if (internal.has_alarm()) {
    if (internal.alarm().alarm() != static_cast<int32_t>(server::AlarmType::kNoSpace)) return;
    if (internal.alarm().action() == 1) {  // activate
      // An alarm a member raises itself (a system entry) stands for one quota refusal or one
      // over-quota Ready of that member; its duplicates are skipped, as the server skips them.
      // (The server gives each a request id; one without can only be judged as it comes.)
      if (internal.system() &&
          (internal.id() == 0 || member_alarms_seen_.emplace(key, true).second)) {
        if (internal.id() != 0) member_alarms_order_.push_back(key);
        ForgetOldest(&member_alarms_seen_, &member_alarms_order_);
        ++counts_.member_alarms_judged;
        uint64_t& reasons = alarm_reasons_[internal.alarm().member_id()];
        if (reasons == 0) {
          world_->Violation(absl::StrCat(
              "index ", entry.index, " raises the NOSPACE alarm of n", internal.alarm().member_id(),
              ", which neither refused a write for its quota nor applied one past it since the "
              "alarms it raised before"));
        } else {
          --reasons;
        }
      }
      if (alarms_.empty()) {
        ++counts_.nospace_alarms_raised;
        world_->Trace(absl::StrCat("index ", entry.index, " raises the NOSPACE alarm of n",
                                   internal.alarm().member_id()));
      }
      alarms_.insert(internal.alarm().member_id());
    } else {
      const bool was_active = !alarms_.empty();
      if (internal.alarm().only_member()) {
        alarms_.erase(internal.alarm().member_id());  // etcd: that member's alarm only
      } else {
        alarms_.clear();
      }
      if (was_active && alarms_.empty()) {
        ++counts_.nospace_alarms_disarmed;
        world_->Trace(absl::StrCat("index ", entry.index, " disarms the NOSPACE alarm"));
      }
    }
    return;
  }
  const bool adds_data = internal.has_put() || internal.has_lease_grant() ||
                         (internal.has_txn() && TxnPuts(internal.txn()));
  if (!adds_data || internal.id() == 0) return;
  const bool in_alarm = !alarms_.empty();
  ++(in_alarm ? counts_.writes_applied_in_alarm : counts_.writes_applied_outside_alarm);
  // The first copy of a proposal decides (a duplicate is skipped when it applies).
  if (data_writes_.emplace(key, in_alarm).second) data_writes_order_.push_back(key);
  ForgetOldest(&data_writes_, &data_writes_order_);
}

void ServerRuleCheckers::CheckTxn(raft::Index index, const server::pb::TxnRequest& txn, int depth,
                                  size_t limit) {
  const size_t count =
      std::max({static_cast<size_t>(txn.compare_size()), static_cast<size_t>(txn.success_size()),
                static_cast<size_t>(txn.failure_size())});
  if (count > limit) {
    world_->Violation(
        absl::StrCat("index ", index, " applied a txn", depth > 0 ? " nesting one" : "", " of ",
                     txn.compare_size(), " compares, ", txn.success_size(), " success and ",
                     txn.failure_size(), " failure operations; the limit is ", limit, " each"));
    return;
  }
  // etcd's checkTxnRequest: a nested txn's limit is its holder's less the holder's count.
  for (const auto* branch : {&txn.success(), &txn.failure()}) {
    for (const server::pb::RequestOp& op : *branch) {
      if (op.has_txn()) CheckTxn(index, op.txn(), depth + 1, limit - count);
    }
  }
}

// --------------------------------------------------------------------------------------------
// Watches

void WatchCheckers::OnWatchResponse(NodeWatches& node, const server::Server& server,
                                    const mvcc::WatchResponse& response) {
  CheckAllKeys(node, server, response);
  CheckScenario(node, response);
}

void WatchCheckers::CheckAllKeys(NodeWatches& node, const server::Server& server,
                                 const mvcc::WatchResponse& response) {
  if (response.watch_id != node.watch_id) return;
  if (response.canceled) {
    // The server cancels a watch only when the revisions it still needs fell below the compact
    // revision while it lagged (a slow reader, or a restarted member replaying its log): then
    // its client opens a new one from the compact revision (etcd's clients do), and the checker
    // follows that one from there. Before its first event a watch still needs its start
    // revision: one from revision 1 is canceled by a compaction at revision 2 while it lags,
    // as etcd cancels a watcher whose minRev is below the compact revision (seed 500915 on 3
    // nodes: a member restarted with its backend at revision 1 replays a compaction at 2).
    const mvcc::Revision needed = node.requested_from != 0
                                      ? std::min(node.requested_from, node.next_revision)
                                      : node.next_revision;
    if (response.compact_revision <= needed) {
      world_->Violation(absl::StrCat("n", node.id, " canceled its all-keys watch at revision ",
                                     node.next_revision, " (compact revision ",
                                     response.compact_revision, "): ", response.cancel_reason));
    } else {
      ++canceled_compacted_;
      world_->Trace(absl::StrCat("n", node.id, " watch canceled: ", response.cancel_reason));
    }
    node.watch_id = 0;
    node.reopen_from = std::max(node.next_revision, response.compact_revision);
    return;
  }
  if (response.events.empty()) return;
  // The node's watcher covers every key, and every revision is a write: revisions must arrive
  // consecutively, each exactly as the store recorded it (no gap, no duplicate, no reorder).
  const mvcc::Revision first = response.events.front().kv.mod_revision;
  const mvcc::Revision last = response.events.back().kv.mod_revision;
  if (first != node.next_revision) {
    world_->Violation(absl::StrCat("n", node.id, " watch expected revision ", node.next_revision,
                                   " but got ", first));
  }
  mvcc::Revision previous = first;
  for (const mvcc::Event& event : response.events) {
    if (event.kv.mod_revision < previous || event.kv.mod_revision > previous + 1) {
      world_->Violation(absl::StrCat("n", node.id, " watch revisions out of order: ", previous,
                                     " then ", event.kv.mod_revision));
    }
    previous = event.kv.mod_revision;
  }
  // A revision's events are the same on every node (the hub never splits a revision). The first
  // node to deliver a revision has it checked against its store's history; every later delivery
  // must match that one's digest, which spares each node a read of its store per response.
  std::vector<std::pair<mvcc::Revision, uint64_t>> digests;  // per revision, in order
  for (const mvcc::Event& event : response.events) {
    const mvcc::KeyValue& kv = event.kv;
    if (digests.empty() || digests.back().first != kv.mod_revision) {
      digests.emplace_back(kv.mod_revision, 0);
    }
    uint64_t& d = digests.back().second;
    d = Digest(kv.key, d ^ (event.type == mvcc::Event::Type::kDelete ? 1 : 2));
    d = Digest(kv.value, d ^ static_cast<uint64_t>(kv.create_revision));
    d = raft::SplitMix64::Mix(d ^ static_cast<uint64_t>(kv.version) ^
                              (static_cast<uint64_t>(kv.lease) * 0x9E3779B97F4A7C15ull));
  }
  bool all_checked = true;
  for (const auto& [revision, digest] : digests) {
    auto it = digests_.find(revision);
    if (it == digests_.end()) {
      all_checked = false;
    } else if (it->second.first != digest) {
      world_->Violation(absl::StrCat("n", node.id, " watch events for revision ", revision,
                                     " differ from those n", it->second.second,
                                     " delivered (checked against its store)"));
    }
  }
  if (!all_checked) {
    // The reference model judges each revision's events at their first delivery (later ones
    // must match its digest).
    size_t begin = 0;
    while (begin < response.events.size()) {
      const mvcc::Revision revision = response.events[begin].kv.mod_revision;
      size_t end = begin;
      while (end < response.events.size() && response.events[end].kv.mod_revision == revision) {
        ++end;
      }
      if (digests_.count(revision) == 0) {
        const absl::Span<const mvcc::Event> events(&response.events[begin], end - begin);
        if (auto diff = model_->JudgeWatch(revision, events); diff.has_value()) {
          world_->Violation(absl::StrCat("reference model: n", node.id, " ", *diff));
        }
      }
      begin = end;
    }
    auto history =
        server.store().History(first, last, std::string(1, '\0'), std::string(1, '\0'), false, 0);
    if (history.ok()) {
      bool same = history->size() == response.events.size();
      for (size_t i = 0; same && i < history->size(); ++i) {
        same = (*history)[i].type == response.events[i].type &&
               (*history)[i].kv == response.events[i].kv;
      }
      if (!same) {
        world_->Violation(absl::StrCat("n", node.id, " watch events for revisions ", first, "..",
                                       last, " differ from the store's history"));
      } else {
        for (const auto& [revision, digest] : digests) {
          digests_.emplace(revision, std::make_pair(digest, node.id));
        }
      }
    }
  }
  node.next_revision = last + 1;
  node.requested_from = 0;
}

void WatchCheckers::CheckScenario(NodeWatches& node, const mvcc::WatchResponse& response) {
  auto it = node.scenario.find(response.watch_id);
  if (it == node.scenario.end()) return;
  auto& [start, last] = it->second;
  // etcd #20221: a watch on a future revision must not deliver anything before it, nor a
  // progress notification whose revision would let a client resume from before it.
  if (response.progress && response.header_revision + 1 < start) {
    world_->Violation(absl::StrCat("n", node.id, " watch ", response.watch_id, " from revision ",
                                   start, " got a progress notification at ",
                                   response.header_revision));
  }
  for (const mvcc::Event& event : response.events) {
    if (event.kv.mod_revision < start) {
      world_->Violation(absl::StrCat("n", node.id, " watch ", response.watch_id, " from revision ",
                                     start, " got an event at revision ", event.kv.mod_revision));
    }
    if (event.kv.mod_revision < last) {
      world_->Violation(absl::StrCat("n", node.id, " watch ", response.watch_id, " went back from ",
                                     last, " to ", event.kv.mod_revision));
    }
    last = event.kv.mod_revision;
  }
}

}  // namespace kvstore::sim
