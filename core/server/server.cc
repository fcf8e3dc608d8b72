#include "core/server/server.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/auth/password.h"
#include "core/auth/tokens.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "core/base/probe.h"
#include "core/raft/check.h"
#include "core/server/codec.h"
#include "core/server/requests.pb.h"
#include "google/protobuf/arena.h"

namespace kvstore::server {
namespace {

constexpr absl::string_view kMetaMemberPrefix = "member/";
constexpr absl::string_view kMetaAlarmPrefix = "alarm/";
// Ids of members that left the Raft configuration (etcd's members_removed bucket): replicated
// state, in snapshots, so every member knows them after a restart or a snapshot restore.
constexpr absl::string_view kMetaRemovedMemberPrefix = "removed_member/";
// Member-local: never sent in a snapshot nor replaced by one, or ids could repeat after a
// restart.
constexpr absl::string_view kMetaRequestEpoch = "request_epoch";
// The Raft configuration as of the consistent index, so a restart resumes with it.
constexpr absl::string_view kMetaConfState = "conf_state";
constexpr int32_t kAlarmActivate = 1;
constexpr int32_t kAlarmDeactivate = 2;
// Expired leases proposed for revocation per tick (etcd rate-limits revocations too).
constexpr size_t kMaxLeaseRevocationsPerTick = 16;
// Expired simple tokens forgotten per tick (the rest go on later ticks or when looked up).
constexpr size_t kMaxTokenExpiriesPerTick = 64;

bool IsAuthRequest(RequestType type) {
  return type >= RequestType::kAuthEnable && type <= RequestType::kRoleList;
}

// etcd's needAdminPermission (apply_auth.go): auth management needs the root role. kUserGet and
// kRoleGet also allow the caller's own user and roles; kAuthenticate needs nobody.
bool NeedsAdmin(RequestType type) {
  return IsAuthRequest(type) && type != RequestType::kAuthenticate &&
         type != RequestType::kUserGet && type != RequestType::kRoleGet;
}

// Member and maintenance operations: root only (etcd's authMaintenanceServer and
// checkMembershipOperationPermission). Not the alarm requests: etcd 3.4's Alarm checks nobody's
// rights (a valid token or none, any user).
bool IsMemberOrMaintenance(RequestType type) {
  switch (type) {
    case RequestType::kMemberAdd:
    case RequestType::kMemberPromote:
    case RequestType::kMemberRemove:
    case RequestType::kMemberReplace:
    case RequestType::kMemberUpdate:
    case RequestType::kHash:
    case RequestType::kDefragment:
    case RequestType::kMoveLeader:
      return true;
    default:
      return false;
  }
}

// SplitMix64: the seeded source of salts and token letters when the driver supplies none.
uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string Fixed64(uint64_t value) {
  std::string out;
  PutFixed64BigEndian(&out, value);
  return out;
}

std::string MemberKey(raft::NodeId id) { return absl::StrCat(kMetaMemberPrefix, Fixed64(id)); }

std::string RemovedMemberKey(raft::NodeId id) {
  return absl::StrCat(kMetaRemovedMemberPrefix, Fixed64(id));
}

std::string AlarmKey(raft::NodeId member, AlarmType type) {
  return absl::StrCat(kMetaAlarmPrefix, Fixed64(member), std::string(1, static_cast<char>(type)));
}

void ToProto(const Member& in, pb::Member* out) {
  out->set_id(in.id);
  out->set_name(in.name);
  for (const std::string& url : in.peer_urls) out->add_peer_urls(url);
  out->set_is_learner(in.is_learner);
  for (const std::string& url : in.client_urls) out->add_client_urls(url);
}

Member FromProto(const pb::Member& in) {
  Member out;
  out.id = in.id();
  out.name = in.name();
  out.peer_urls.assign(in.peer_urls().begin(), in.peer_urls().end());
  out.is_learner = in.is_learner();
  out.client_urls.assign(in.client_urls().begin(), in.client_urls().end());
  return out;
}

// The key of an applied request id: member + request id, both big-endian, built on the stack.
// The ids are part of the replicated state (in snapshots, across restarts), so every replica
// skips the same duplicates. One is written per applied request on every member; the records
// have a bucket of their own, so the few meta records every apply writes (consistent index,
// revision) are found in a small tree.
class DedupKey {
 public:
  DedupKey(raft::NodeId member, uint64_t id) {
    EncodeFixed64BigEndian(bytes_, member);
    EncodeFixed64BigEndian(bytes_ + 8, id);
  }
  absl::string_view view() const { return absl::string_view(bytes_, sizeof(bytes_)); }

 private:
  char bytes_[16];
};

bool IsMemberLocal(mvcc::Bucket bucket, absl::string_view key) {
  return bucket == mvcc::Bucket::kMeta && key == kMetaRequestEpoch;
}

bool TxnWrites(const mvcc::TxnRequest& txn) {
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      if (op.kind == mvcc::RequestOp::Kind::kPut ||
          op.kind == mvcc::RequestOp::Kind::kDeleteRange) {
        return true;
      }
      if (op.kind == mvcc::RequestOp::Kind::kTxn && op.txn != nullptr && TxnWrites(*op.txn)) {
        return true;
      }
    }
  }
  return false;
}

uint64_t PutCost(const mvcc::PutRequest& put) {
  return kQuotaKvOverheadBytes + put.key.size() + put.value.size();
}

// etcd's costTxn: the larger branch, top-level puts only.
uint64_t TxnCost(const mvcc::TxnRequest& txn) {
  uint64_t success = 0, failure = 0;
  for (const mvcc::RequestOp& op : txn.success) {
    if (op.kind == mvcc::RequestOp::Kind::kPut) success += PutCost(op.put);
  }
  for (const mvcc::RequestOp& op : txn.failure) {
    if (op.kind == mvcc::RequestOp::Kind::kPut) failure += PutCost(op.put);
  }
  return std::max(success, failure);
}

// How a quota refusal names the request (those QuotaCostBytes charges).
const char* QuotaWhat(RequestType type) {
  switch (type) {
    case RequestType::kPut:
      return "put";
    case RequestType::kTxn:
      return "txn";
    case RequestType::kLeaseGrant:
      return "lease grant";
    default:
      return "request";
  }
}

bool TxnPuts(const mvcc::TxnRequest& txn) {
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      if (op.kind == mvcc::RequestOp::Kind::kPut) return true;
      if (op.kind == mvcc::RequestOp::Kind::kTxn && op.txn != nullptr && TxnPuts(*op.txn)) {
        return true;
      }
    }
  }
  return false;
}

// Every lease a txn's puts attach (both branches: checked before the compares are known).
void TxnLeases(const mvcc::TxnRequest& txn, std::set<lease::LeaseId>* leases) {
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      if (op.kind == mvcc::RequestOp::Kind::kPut && op.put.lease != lease::kNoLease) {
        leases->insert(op.put.lease);
      }
      if (op.kind == mvcc::RequestOp::Kind::kTxn && op.txn != nullptr) {
        TxnLeases(*op.txn, leases);
      }
    }
  }
}

bool TxnSerializable(const mvcc::TxnRequest& txn) {
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      if (op.kind == mvcc::RequestOp::Kind::kRange && !op.range.serializable) return false;
      if (op.kind == mvcc::RequestOp::Kind::kTxn && op.txn != nullptr &&
          !TxnSerializable(*op.txn)) {
        return false;
      }
    }
  }
  return true;
}

absl::Status ValidateKey(const std::string& key, const char* what) {
  if (key.empty()) return Error(ErrorCode::kEmptyKey, absl::StrCat(what, ": key is empty"));
  if (key.size() > kMaxKeyBytes) {
    return Error(ErrorCode::kKeyTooLarge,
                 absl::StrCat(what, ": key of ", key.size(), " bytes exceeds the limit of ",
                              kMaxKeyBytes, " bytes"));
  }
  return absl::OkStatus();
}

// Raft's refusal of a proposal, as a client code.
absl::Status FromRaftStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      return Error(ErrorCode::kNoLeader, status.message());
    case absl::StatusCode::kAborted:
      return Error(ErrorCode::kNoLeader, status.message());
    case absl::StatusCode::kFailedPrecondition:
      return Error(ErrorCode::kConfChangePending, status.message());
    default:
      return Error(ErrorCode::kInvalidArgument, status.message());
  }
}

}  // namespace

class Server::Impl {
 public:
  Impl(const ServerConfig& config, mvcc::Backend* backend)
      : config_(config),
        backend_(backend),
        lessor_(lease::LessorConfig{config.min_lease_ttl_seconds}, backend),
        auth_(backend),
        tokens_(static_cast<uint64_t>(std::max<int64_t>(
            1, config.auth_token_ttl_seconds * 1000 / std::max<int64_t>(1, config.tick_ms)))) {}

  absl::Status Init(raft::RestartState raft_state, std::vector<Member> founding);
  raft::RawNode& raft() { return *raft_; }

  RequestId Submit(Request&& request);
  absl::StatusOr<mvcc::WatchId> Watch(const mvcc::WatchRequest& request, const std::string& token,
                                      const std::string& cert_user) {
    // The token is checked with auth off too (Identify), as etcd's isWatchPermitted does.
    auto who = Identify(token, cert_user);
    if (!who.ok()) return who.status();
    if (auth_.enabled()) {
      if (auto s = auth_.IsRangePermitted(*who, request.key, request.range_end); !s.ok()) return s;
    }
    return hub_->Watch(request);
  }
  absl::Status CancelWatch(mvcc::WatchId id) { return hub_->Cancel(id); }
  absl::Status SetWatchReading(mvcc::WatchId id, bool reading) {
    return hub_->SetReading(id, reading);
  }
  void RequestWatchProgress() { hub_->RequestProgress(); }
  void NotifyWatchProgress() { hub_->NotifyProgress(); }
  absl::Status Step(raft::Message&& message) {
    // Raft's disruptive removed server (thesis §4.2.3): a member removed while it was down or
    // cut off does not learn it, and campaigns at ever higher terms, deposing every leader
    // (with pre-vote and check-quorum off nothing else stops it). As etcd's rafthttp refuses a
    // removed member's messages (410 Gone), its messages are dropped here, and the answer
    // (kMemberRemoved) lets the host tell the sender, which then stops (node::Member).
    if (message.from != config_.id && removed_members_.count(message.from) > 0) {
      CODE_PROBE(server, removed_member_message_dropped);
      return Error(ErrorCode::kMemberRemoved,
                   absl::StrCat("member ", absl::Hex(message.from),
                                " has been permanently removed from the cluster"));
    }
    return raft_->Step(std::move(message));
  }
  void Tick();
  bool HasReady() const;
  const Ready& GetReady();
  void Advance();
  void OnPersisted(uint64_t id) { raft_->OnPersisted(id); }

  raft::Status RaftStatus() const { return raft_->GetStatus(); }
  raft::SoftState raft_soft_state() const { return raft_->GetSoftState(); }
  raft::NodeId lead_transferee() const { return raft_->LeadTransferee(); }
  raft::NodeId id() const { return config_.id; }
  bool is_leader() const { return raft_->IsLeader(); }
  const mvcc::Store& store() const { return *store_; }
  const lease::Lessor& lessor() const { return lessor_; }
  const auth::AuthStore& auth_store() const { return auth_; }
  std::vector<Member> Members() const;
  bool IsMemberRemoved(raft::NodeId id) const { return removed_members_.count(id) > 0; }
  const Member* FindMember(raft::NodeId id) const {
    auto it = members_.find(id);
    return it == members_.end() ? nullptr : &it->second;
  }
  std::vector<Alarm> Alarms() const;
  raft::Index applied_index() const { return applied_index_; }
  raft::HardState hard_state() const { return raft_->GetHardState(); }
  raft::Index last_index() const { return raft_->LastIndex(); }
  std::optional<raft::Term> LogTerm(raft::Index index) const { return raft_->LogTerm(index); }
  raft::ConfState RaftConfState() const { return raft_->GetConfState(); }
  bool RaftConfStateIs(const raft::ConfState& cs) const { return raft_->ConfStateIs(cs); }
  uint64_t RaftConfigEpoch() const { return raft_->ConfigEpoch(); }

 private:
  // A request waiting for its entry to apply or its read index. A write's answer needs only its
  // type; a linearizable read keeps the request to serve (a Request is large and costly to
  // move, and pending requests move as the map reorganises).
  struct Pending {
    RequestType type = RequestType::kRange;
    std::unique_ptr<Request> read;  // a linearizable read: the request to serve
    uint64_t deadline_tick = 0;
    raft::Index index = 0;  // the entry's index, when proposed by this member as leader
    bool has_read_index = false;
    raft::Index read_index = 0;
    // The NOSPACE alarm of a write refused for the quota (`answer`, to request `answer_id`):
    // once it applies, or its proposal fails or times out, the write is answered with the
    // refusal (etcd's quotaAlarmer answers ErrGRPCNoSpace once its Alarm call returns, whatever
    // it returned), so the alarm is listed by the time the client reads the refusal.
    std::optional<absl::Status> answer;
    RequestId answer_id = 0;

    bool is_read() const { return read != nullptr; }
  };
  // A linearizable read that can be served now: its read index is applied (Raft thesis §6.4).
  bool Servable(const Pending& pending) const {
    return pending.is_read() && pending.has_read_index && pending.read_index <= applied_index_;
  }

  int64_t now_ms() const { return static_cast<int64_t>(ticks_) * config_.tick_ms; }
  ResponseHeader Header() const;
  void Respond(RequestId id, RequestType type, absl::Status status);
  void Respond(Response response);
  RequestId NextRequestId() { return (request_epoch_ << 32) | ++request_counter_; }
  // A request's identity across the cluster: request ids are unique per member only (etcd puts
  // the member id into its request ids for the same reason). Read-index contexts must differ
  // between members, since the leader merges reads with equal contexts.
  std::string RequestTag(RequestId id) const { return Fixed64(config_.id) + Fixed64(id); }

  // Submission paths.
  absl::Status Validate(const Request& request) const;
  absl::Status ValidatePut(const mvcc::PutRequest& put) const;
  absl::Status ValidateTxn(const mvcc::TxnRequest& txn) const;
  // etcd checkTxnRequest with `limit` operations per branch (nested txns: less their holder's).
  absl::Status ValidateTxnOps(const mvcc::TxnRequest& txn, size_t limit) const;
  void Propose(RequestId id, RequestType type, pb::InternalRequest& internal);
  void ProposeMemberChange(RequestId id, RequestType type, raft::ConfChange change,
                           const Member& member);
  // A new member's id: deterministic from its identity and the request, unused.
  raft::NodeId NewMemberId(const Member& member, RequestId id) const;
  // kMemberReplace and kMemberUpdate, checked against this member's list (again at apply).
  void SubmitMemberReplace(RequestId id, const Request& request);
  absl::Status CheckMemberUpdate(raft::NodeId member_id,
                                 const std::vector<std::string>& peer_urls) const;
  void StartRead(RequestId id, Request&& request);
  // Asks Raft for one read index for every read submitted since the last (GetReady calls it).
  void IssueReads();
  void ServeRead(RequestId id, const Request& request);
  void ServeLocal(RequestId id, const Request& request);
  void FailPending(RequestId id, absl::Status status);

  // Auth. The caller's identity from its token: none for an empty token or while auth is
  // disabled; INVALID_AUTH_TOKEN for a token this member does not know (expired, or issued
  // before it restarted). The revision is the store's now (a simple token, as in etcd).
  absl::StatusOr<auth::AuthInfo> Identify(const std::string& token,
                                          const std::string& cert_user = "");
  // Random bytes for a salt or a token: the request's, or derived from the seed.
  std::string Entropy(const Request& request, RequestId id) const;
  absl::Status BuildAuthProposal(RequestId id, const Request& request, pb::AuthRequest* out);
  // May `who` do what `internal` asks, against the auth state in force now (at apply)?
  absl::Status CheckPermitted(const pb::InternalRequest& internal, const auth::AuthInfo& who) const;
  // etcd checkTxnReqsPermission, recursive: every compare's range is read; every operation of
  // both branches is checked as the request it stands for, nested txns included.
  absl::Status CheckTxn(const pb::TxnRequest& txn, const auth::AuthInfo& who) const;
  // etcd checkLeasePuts: writing to (or revoking) a lease needs write permission on its keys.
  absl::Status CheckLeaseKeys(lease::LeaseId id, const auth::AuthInfo& who) const;
  absl::Status CheckLeaseTimeToLive(lease::LeaseId id, const auth::AuthInfo& who) const;
  absl::Status ApplyAuth(const pb::AuthRequest& request, Response* response);
  // An applied Authenticate answered here: with a token provider, its token for the user at
  // the auth revision now (etcd signs a JWT when the entry applies; only the answer needs it).
  void IssueToken(Response* response);

  // Apply paths (deterministic on every replica).
  void Apply(const raft::Entry& entry);
  void ApplyConfChange(const raft::Entry& entry);
  absl::Status ValidateMemberChange(const raft::ConfChange& change,
                                    const pb::MemberChange* context) const;
  // The rules a new member must meet on the current member list: no peer URL already in use,
  // and room for one more learner (`leaving`, replaced by it, not counted). `note` is appended
  // to the message, which starts with `what`.
  absl::Status CheckNewMember(const std::vector<std::string>& peer_urls, bool is_learner,
                              absl::string_view note, raft::NodeId leaving = raft::kNoNode,
                              absl::string_view what = "member add") const;
  // No member but `except` uses any of `peer_urls` (etcd's ErrPeerURLexists).
  absl::Status CheckPeerUrlsFree(const std::vector<std::string>& peer_urls, raft::NodeId except,
                                 absl::string_view what, absl::string_view note) const;
  bool IsDuplicate(const pb::InternalRequest& internal);
  // Both may take the values a put carries out of `internal` (moved into the store).
  void ApplyInternal(raft::Index index, pb::InternalRequest& internal, Response* response);
  absl::Status ApplyWrite(pb::InternalRequest& internal, Response* response);
  void TrackLeases(const std::vector<mvcc::Event>& events);
  void RestoreSnapshot(const raft::Snapshot& snapshot);
  void StorageFailed(const absl::Status& status) {
    if (storage_failure_.ok()) {
      storage_failure_ =
          absl::Status(status.code(), absl::StrCat("backend commit failed: ", status.message()));
    }
  }
  // A store answer that found the backend without a record its index names (kDataLoss: the
  // store's "range cannot find rev", where etcd panics) stops the member as a failed commit
  // does: the Ready that carries it is not carried out, so the short answer is never sent.
  void CheckBackendIntact(const absl::Status& status) {
    if (status.code() != absl::StatusCode::kDataLoss || backend_lost_) return;
    backend_lost_ = true;
    storage_failure_ = absl::DataLossError(
        absl::StrCat("backend lost a record its index names: ", status.message()));
  }
  // Reads back what the backend holds besides the store (leases with their keys, members,
  // alarms, the dedup window). Only right after the store's Open or Reload: the keys' leases
  // come from that restore.
  absl::Status LoadLocalState();
  std::string DumpBackend() const;
  // A snapshot at the applied index (index, term, configuration), without data.
  std::shared_ptr<raft::Snapshot> SnapshotMark() const;
  void OnLeadershipChange(bool leader);
  // Answers the waiting move-leaders whose transferee is `leader`, the leader this member sees.
  void AnswerMoves(raft::NodeId leader);
  bool AlarmActive() const { return !alarms_.empty(); }
  absl::Status NoSpace(absl::string_view what) const {
    return Error(ErrorCode::kNoSpace,
                 absl::StrCat(what, " refused: NOSPACE alarm (the backend passed the quota of ",
                              config_.quota_bytes, " bytes)"));
  }
  // etcd's backendQuota.Available: whether a write of `cost` bytes fits this member's quota.
  bool QuotaAvailable(uint64_t cost) const {
    return cost == 0 || backend_->SizeBytes() + cost < config_.quota_bytes;
  }
  // etcd's quotaAlarmer: a write that does not fit is refused NOSPACE (see Submit for when the
  // refusal is answered and the alarm raised).
  absl::Status QuotaRefusal(absl::string_view what, uint64_t cost) const {
    return Error(ErrorCode::kNoSpace,
                 absl::StrCat(what, " refused: NOSPACE (the backend's ", backend_->SizeBytes(),
                              " bytes and the request's cost of ", cost,
                              " bytes reach the quota of ", config_.quota_bytes, " bytes)"));
  }
  // After a write applied: one that did not fit when it applied (it fit when its proposer took
  // it) is answered NOSPACE though it applied, as etcd's quotaApplierV3 answers it, and this
  // member raises its alarm after the Ready (etcd's applyEntryNormal), unless one is active.
  absl::Status QuotaAtApply(bool fits, absl::string_view what) {
    if (fits) return absl::OkStatus();
    if (!AlarmActive()) nospace_at_apply_ = true;
    return Error(ErrorCode::kNoSpace,
                 absl::StrCat(what, " ", kAppliedPastQuota, ": NOSPACE (the backend's ",
                              backend_->SizeBytes(), " bytes reach the quota of ",
                              config_.quota_bytes, " bytes)"));
  }
  // Proposes this member's NOSPACE alarm unless it is active, under request id `id`; false
  // when nothing was proposed. A request id of its own: a copy the network duplicated is
  // skipped when it applies, so each alarm entry stands for one refusal (the simulator's quota
  // checker counts them).
  bool ProposeNoSpaceAlarm(RequestId id) {
    if (alarms_.count({config_.id, AlarmType::kNoSpace}) > 0) return false;
    pb::InternalRequest internal;
    internal.set_system(true);
    internal.set_id(id);
    internal.set_member_id(config_.id);
    internal.mutable_alarm()->set_action(kAlarmActivate);
    internal.mutable_alarm()->set_member_id(config_.id);
    internal.mutable_alarm()->set_alarm(static_cast<int32_t>(AlarmType::kNoSpace));
    return raft_->Propose(raft::Bytes(internal.SerializeAsString())).ok();
  }

  ServerConfig config_;
  mvcc::Backend* backend_;
  std::unique_ptr<mvcc::Store> store_;
  std::unique_ptr<mvcc::WatchHub> hub_;
  lease::Lessor lessor_;
  auth::AuthStore auth_;
  auth::SimpleTokens tokens_;  // member-local, in memory (etcd's simple tokens)
  std::unique_ptr<raft::RawNode> raft_;

  absl::btree_map<raft::NodeId, Member> members_;
  // Members that left the configuration (kMetaRemovedMemberPrefix); never reused as ids.
  absl::btree_set<raft::NodeId> removed_members_;
  // A replace of this member's that entered a joint configuration: answered when it is left.
  std::optional<std::pair<RequestId, Member>> awaiting_leave_;
  std::set<std::pair<raft::NodeId, AlarmType>> alarms_;
  raft::ConfState conf_state_;

  uint64_t ticks_ = 0;
  uint64_t request_epoch_ = 0;
  uint64_t request_counter_ = 0;
  absl::btree_map<RequestId, Pending> pending_;
  // Pending reads whose read index has arrived: the only ones that can become servable, so
  // HasReady and GetReady look through pending_ only while there are some.
  size_t indexed_reads_ = 0;
  // Linearizable reads share read indexes: the reads submitted since the last Ready get one
  // ReadIndex together (IssueReads), so reads that arrive in one turn of the host's loop cost
  // the leader one heartbeat round, not one each (etcd's linearizableReadLoop batches them too).
  // A read never waits for an earlier read's round, so sharing adds no latency.
  struct ReadBatch {
    std::vector<RequestId> reads;
    uint64_t issued_tick = 0;
  };
  std::vector<RequestId> reads_waiting_;                // for the next ReadIndex
  absl::btree_map<RequestId, ReadBatch> read_batches_;  // by the tag of their ReadIndex
  absl::btree_map<raft::Index, RequestId> pending_by_index_;
  // Move-leaders waiting for their transferee to lead, by request. etcd's MoveLeader polls the
  // leader it sees until it is the transferee or the request's context ends; here the deadline
  // is the request timeout, in ticks. Raft itself gives up on a transfer after an election
  // timeout (Raft thesis §3.10), so one that times out here has been aborted, or another
  // member took over instead.
  struct PendingMove {
    raft::NodeId transferee = raft::kNoNode;
    uint64_t deadline_tick = 0;
  };
  absl::btree_map<RequestId, PendingMove> moves_;
  absl::btree_map<lease::LeaseId, uint64_t> revoking_;  // lease -> tick to retry after
  // A write applied while it did not fit this member's quota and no NOSPACE alarm was active:
  // Advance raises this member's alarm (etcd's applyEntryNormal).
  bool nospace_at_apply_ = false;
  // Request ids applied lately, per proposing member (duplicate proposals are skipped).
  static constexpr size_t kDedupWindowPerMember = 4096;
  absl::btree_map<raft::NodeId, absl::btree_set<RequestId>> applied_requests_;
  bool conf_changed_since_snapshot_ = false;
  bool was_leader_ = false;

  raft::Index applied_index_ = 0;
  raft::Term applied_term_ = 0;
  raft::Index snapshot_index_ = 0;

  std::vector<Response> responses_;
  Ready ready_;
  // The first failed backend commit: the member must stop (see Ready::storage_failure).
  absl::Status storage_failure_;
  // The backend lacks a record the store's index names (CheckBackendIntact).
  bool backend_lost_ = false;
  bool ready_outstanding_ = false;
};

absl::Status Server::Impl::Init(raft::RestartState raft_state, std::vector<Member> founding) {
  auto store = mvcc::Store::Open(backend_);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  hub_ = std::make_unique<mvcc::WatchHub>(store_.get(), config_.watch_max_buffered_events);
  if (raft_state.snapshot != nullptr &&
      raft_state.snapshot->metadata.index > store_->consistent_index()) {
    // The member crashed after persisting an installed snapshot but before applying it to the
    // backend: apply it now, or the entries after it would land on stale state (etcd's
    // recoverSnapshotBackend).
    // It loads the local state itself (LoadLocalState): loading it again here would restore the
    // lessor a second time, after the store's restored lease attachments were taken, leaving
    // every lease without its keys (a revoke or expiry then deleted nothing on this member:
    // fuzz seed 163683, n1 one revision behind its peers from the first revoke on).
    RestoreSnapshot(*raft_state.snapshot);
    if (!storage_failure_.ok()) return storage_failure_;
  } else if (auto s = LoadLocalState(); !s.ok()) {
    return s;
  }
  if (members_.empty()) {
    for (const Member& member : founding) {
      members_[member.id] = member;
      pb::Member record;
      ToProto(member, &record);
      backend_->Put(mvcc::Bucket::kMeta, MemberKey(member.id), record.SerializeAsString());
    }
  }
  // Request ids must never repeat across restarts: a new epoch per start.
  auto epoch = backend_->Get(mvcc::Bucket::kMeta, kMetaRequestEpoch);
  uint64_t previous = 0;
  if (epoch.has_value()) {
    absl::string_view in = *epoch;
    GetFixed64BigEndian(&in, &previous);
  }
  request_epoch_ = (previous + 1) & 0xFFFFFFFF;
  backend_->Put(mvcc::Bucket::kMeta, kMetaRequestEpoch, Fixed64(request_epoch_));
  if (auto s = backend_->Commit(); !s.ok()) return s;

  // Entries up to the backend's consistent index are applied already (etcd's consistent
  // index). The backend may be ahead of the persisted commit index by what the last Ready
  // applied before its hard state was written; those entries were committed.
  const raft::Index consistent = store_->consistent_index();
  raft_state.applied = std::max(raft_state.applied, consistent);
  raft::Index last = raft_state.snapshot != nullptr ? raft_state.snapshot->metadata.index : 0;
  last += raft_state.entries.size();
  if (consistent > last) {
    return absl::DataLossError(absl::StrCat("backend consistent index ", consistent,
                                            " is beyond the last log index ", last,
                                            ": the log lost entries"));
  }
  raft_state.hard_state.commit = std::max(raft_state.hard_state.commit, consistent);
  if (!raft_state.conf_state.has_value()) {
    if (auto stored = backend_->Get(mvcc::Bucket::kMeta, kMetaConfState); stored.has_value()) {
      auto cs = raft::DecodeConfState(*stored);
      if (!cs.ok()) return absl::DataLossError(cs.status().message());
      raft_state.conf_state = std::move(*cs);
    }
  }
  applied_index_ = raft_state.applied;
  if (raft_state.snapshot != nullptr) snapshot_index_ = raft_state.snapshot->metadata.index;

  raft::Config rc;
  rc.id = config_.id;
  rc.election_tick = config_.election_tick;
  rc.heartbeat_tick = config_.heartbeat_tick;
  rc.random_seed = config_.random_seed;
  rc.pre_vote = config_.pre_vote;
  rc.check_quorum = config_.check_quorum;
  if (config_.lease_reads) rc.read_only_option = raft::ReadOnlyOption::kLeaseBased;
  rc.max_committed_size_per_ready_bytes = config_.max_committed_size_per_ready_bytes;
  rc.max_size_per_msg_bytes = config_.max_size_per_msg_bytes;
  rc.max_inflight_msgs = config_.max_inflight_msgs;
  auto node = raft::RawNode::Create(rc, std::move(raft_state));
  if (!node.ok()) return node.status();
  raft_ = std::move(*node);
  conf_state_ = raft_->GetStatus().conf_state;
  // The applied entry is in the log (or is its snapshot): its term dates the snapshots this
  // member takes and sends before it applies anything new.
  const std::optional<raft::Term> applied_term = raft_->LogTerm(applied_index_);
  if (!applied_term.has_value()) {
    return absl::DataLossError(
        absl::StrCat("applied entry ", applied_index_, " is not in the log"));
  }
  applied_term_ = *applied_term;
  return absl::OkStatus();
}

absl::Status Server::Impl::LoadLocalState() {
  if (auto s = lessor_.Restore(); !s.ok()) return s;
  if (auto s = auth_.Restore(); !s.ok()) return s;
  if (!auth_.enabled()) tokens_.Clear();
  // Re-attach keys to their leases as the store found them while it rebuilt its index (it was
  // just opened or reloaded): ranging every key would read every value, the whole database.
  for (const auto& [key, lease] : store_->TakeRestoredLeases()) (void)lessor_.Attach(lease, key);
  members_.clear();
  removed_members_.clear();
  alarms_.clear();
  absl::Status corrupt;
  const std::string removed_end = mvcc::PrefixEnd(std::string(kMetaRemovedMemberPrefix));
  backend_->Range(mvcc::Bucket::kMeta, kMetaRemovedMemberPrefix, removed_end,
                  [&](absl::string_view key, absl::string_view) {
                    key.remove_prefix(kMetaRemovedMemberPrefix.size());
                    uint64_t member = 0;
                    if (!GetFixed64BigEndian(&key, &member) || !key.empty()) {
                      corrupt = absl::DataLossError("server: corrupt removed member record");
                      return false;
                    }
                    removed_members_.insert(member);
                    return true;
                  });
  if (!corrupt.ok()) return corrupt;
  const std::string member_end = mvcc::PrefixEnd(std::string(kMetaMemberPrefix));
  backend_->Range(mvcc::Bucket::kMeta, kMetaMemberPrefix, member_end,
                  [&](absl::string_view, absl::string_view value) {
                    pb::Member record;
                    if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                      corrupt = absl::DataLossError("server: corrupt member record");
                      return false;
                    }
                    members_[record.id()] = FromProto(record);
                    return true;
                  });
  if (!corrupt.ok()) return corrupt;
  const std::string alarm_end = mvcc::PrefixEnd(std::string(kMetaAlarmPrefix));
  backend_->Range(mvcc::Bucket::kMeta, kMetaAlarmPrefix, alarm_end,
                  [&](absl::string_view key, absl::string_view) {
                    key.remove_prefix(kMetaAlarmPrefix.size());
                    uint64_t member = 0;
                    if (!GetFixed64BigEndian(&key, &member) || key.size() != 1) {
                      corrupt = absl::DataLossError("server: corrupt alarm record");
                      return false;
                    }
                    alarms_.insert({member, static_cast<AlarmType>(key[0])});
                    return true;
                  });
  if (!corrupt.ok()) return corrupt;
  applied_requests_.clear();
  backend_->Range(mvcc::Bucket::kDedup, "", "", [&](absl::string_view key, absl::string_view) {
    uint64_t member = 0, id = 0;
    if (!GetFixed64BigEndian(&key, &member) || !GetFixed64BigEndian(&key, &id) || !key.empty()) {
      corrupt = absl::DataLossError("server: corrupt dedup record");
      return false;
    }
    applied_requests_[member].insert(id);
    return true;
  });
  return corrupt;
}

ResponseHeader Server::Impl::Header() const {
  ResponseHeader header;
  header.member_id = config_.id;
  header.revision = store_->current_revision();
  header.raft_term = raft_ != nullptr ? raft_->CurrentTerm() : 0;
  header.auth_revision = auth_.revision();
  return header;
}

void Server::Impl::Respond(RequestId id, RequestType type, absl::Status status) {
  Response response;
  response.request_id = id;
  response.type = type;
  response.status = std::move(status);
  Respond(std::move(response));
}

void Server::Impl::Respond(Response response) {
  response.header = Header();
  responses_.push_back(std::move(response));
}

void Server::Impl::FailPending(RequestId id, absl::Status status) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  const RequestType type = it->second.type;
  if (it->second.index != 0) pending_by_index_.erase(it->second.index);
  if (it->second.is_read() && it->second.has_read_index) --indexed_reads_;
  if (it->second.answer.has_value()) {
    status = std::move(*it->second.answer);
    id = it->second.answer_id;
  }
  pending_.erase(it);
  Respond(id, type, std::move(status));
}

// ---------------------------------------------------------------------------------------------
// Submission

absl::Status Server::Impl::Validate(const Request& r) const {
  switch (r.type) {
    case RequestType::kRange:
      return ValidateKey(r.range.key, "range");
    case RequestType::kPut: {
      if (auto s = ValidatePut(r.put); !s.ok()) return s;
      if (r.put.lease != lease::kNoLease && !lessor_.Exists(r.put.lease)) {
        return Error(ErrorCode::kLeaseNotFound,
                     absl::StrCat("put: lease ", r.put.lease, " not found"));
      }
      return absl::OkStatus();
    }
    case RequestType::kDeleteRange:
      return ValidateKey(r.delete_range.key, "delete");
    case RequestType::kTxn:
      return ValidateTxn(r.txn);
    case RequestType::kLeaseGrant:
      if (r.ttl_seconds <= 0) {
        return Error(ErrorCode::kInvalidArgument,
                     absl::StrCat("lease grant: TTL ", r.ttl_seconds, "s is not positive"));
      }
      if (r.ttl_seconds > lease::kMaxTtlSeconds) {
        return Error(ErrorCode::kLeaseTtlTooLarge,
                     absl::StrCat("lease grant: TTL ", r.ttl_seconds, "s exceeds ",
                                  lease::kMaxTtlSeconds, "s"));
      }
      if (r.lease_id < 0) {
        return Error(ErrorCode::kInvalidArgument,
                     absl::StrCat("lease grant: id ", r.lease_id, " is negative"));
      }
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

absl::Status Server::Impl::ValidatePut(const mvcc::PutRequest& put) const {
  if (auto s = ValidateKey(put.key, "put"); !s.ok()) return s;
  if (put.value.size() > config_.max_request_bytes) {
    CODE_PROBE(server, put_value_too_large);
    return Error(ErrorCode::kValueTooLarge, absl::StrCat("put: value of ", put.value.size(),
                                                         " bytes exceeds the request limit of ",
                                                         config_.max_request_bytes, " bytes"));
  }
  // etcd's checkPutRequest.
  if (put.ignore_value && !put.value.empty()) {
    return Error(ErrorCode::kValueProvided, "put: ignore_value with a value");
  }
  if (put.ignore_lease && put.lease != lease::kNoLease) {
    return Error(ErrorCode::kLeaseProvided, "put: ignore_lease with a lease");
  }
  return absl::OkStatus();
}

// etcd's v3rpc order: checkTxnRequest (the count of compares and of each branch's operations
// first; then the compares' keys; then each operation of success, then of failure, checked like
// the request it stands for, a nested txn with the limit less the count of the txn holding it),
// then checkIntervals (a key written twice: DUPLICATE_KEY). All before the txn is proposed, so a
// txn breaking two rules is refused for the one etcd finds first.
absl::Status Server::Impl::ValidateTxn(const mvcc::TxnRequest& txn) const {
  if (auto s = ValidateTxnOps(txn, config_.max_txn_ops); !s.ok()) return s;
  return mvcc::CheckTxnIntervals(txn);
}

absl::Status Server::Impl::ValidateTxnOps(const mvcc::TxnRequest& txn, size_t limit) const {
  const size_t count = std::max({txn.compare.size(), txn.success.size(), txn.failure.size()});
  if (count > limit) {
    CODE_PROBE(server, txn_too_many_ops);
    return Error(ErrorCode::kTooManyOps,
                 absl::StrCat("txn: ", txn.compare.size(), " compares, ", txn.success.size(),
                              " success and ", txn.failure.size(),
                              " failure operations; the limit is ", limit, " each"));
  }
  for (const mvcc::Compare& compare : txn.compare) {
    if (compare.key.empty()) return Error(ErrorCode::kEmptyKey, "txn compare: key is empty");
  }
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      absl::Status status;
      switch (op.kind) {
        case mvcc::RequestOp::Kind::kRange:
          status = ValidateKey(op.range.key, "txn range");
          break;
        case mvcc::RequestOp::Kind::kPut:
          status = ValidatePut(op.put);
          break;
        case mvcc::RequestOp::Kind::kDeleteRange:
          status = ValidateKey(op.delete_range.key, "txn delete");
          break;
        case mvcc::RequestOp::Kind::kTxn:
          // An operation holding no request comes as a nested txn without one: etcd's
          // checkRequestOp answers it ErrGRPCKeyNotFound where it stands.
          status = op.txn == nullptr
                       ? Error(ErrorCode::kKeyNotFound, "txn: an operation holds no request")
                       : ValidateTxnOps(*op.txn, limit - count);
          break;
      }
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

RequestId Server::Impl::Submit(Request&& request) {
  RAFT_CHECK(!ready_outstanding_) << "server " << config_.id << ": Submit between GetReady and "
                                  << "Advance";
  const RequestId id = NextRequestId();
  // etcd's quotaKVServer and quotaLeaseServer check the quota before the request is looked at
  // (validation, auth): a write that does not fit is refused NOSPACE whatever else is wrong
  // with it. Its alarm is raised first, through etcd's Alarm call, which the caller's token
  // must pass: the refusal is answered once the alarm applied (or its proposal failed), so a
  // client that reads NOSPACE finds the alarm listed. A follower's proposal is forwarded.
  if (const uint64_t cost = QuotaCostBytes(request); !QuotaAvailable(cost)) {
    absl::Status refusal = QuotaRefusal(QuotaWhat(request.type), cost);
    const bool identified = Identify(request.token, request.cert_user).ok();
    const bool leader = raft_->IsLeader();
    const raft::Index index = raft_->LastIndex() + 1;
    const RequestId alarm_id = NextRequestId();
    if (!identified || !ProposeNoSpaceAlarm(alarm_id)) {
      Respond(id, request.type, std::move(refusal));
      return id;
    }
    CODE_PROBE(server, nospace_refusal_waits_for_alarm);
    Pending pending;  // under the alarm's id, answering the refused request's
    pending.type = request.type;
    pending.deadline_tick = ticks_ + config_.request_timeout_ticks;
    pending.answer = std::move(refusal);
    pending.answer_id = id;
    if (leader) {
      pending.index = index;
      pending_by_index_[index] = alarm_id;
    }
    pending_.emplace(alarm_id, std::move(pending));
    return id;
  }
  if (auto status = Validate(request); !status.ok()) {
    Respond(id, request.type, std::move(status));
    return id;
  }
  // A token is looked up (and a simple token's TTL renewed) only for a valid request, as etcd.
  auto who = Identify(request.token, request.cert_user);
  if (!who.ok()) {
    Respond(id, request.type, who.status());
    return id;
  }
  if (IsMemberOrMaintenance(request.type) || request.require_admin) {
    if (absl::Status refused = auth_.IsAdminPermitted(*who); !refused.ok()) {
      Respond(id, request.type, std::move(refused));
      return id;
    }
  }
  pb::InternalRequest internal;
  // Writes are checked when they apply, against the auth state then (etcd's authApplierV3).
  internal.set_auth_user(who->user);
  internal.set_auth_revision(who->revision);
  switch (request.type) {
    case RequestType::kRange:
      if (request.range.serializable) {
        ServeRead(id, request);
      } else {
        StartRead(id, std::move(request));
      }
      return id;
    case RequestType::kTxn:
      if (!TxnWrites(request.txn)) {
        if (TxnSerializable(request.txn)) {
          ServeRead(id, request);
        } else {
          StartRead(id, std::move(request));
        }
        return id;
      }
      if (AlarmActive() && TxnPuts(request.txn)) {
        Respond(id, request.type, NoSpace("txn"));
        return id;
      }
      ToProto(request.txn, internal.mutable_txn());
      break;
    case RequestType::kPut:
      if (AlarmActive()) {
        Respond(id, request.type, NoSpace("put"));
        return id;
      }
      ToProto(request.put, internal.mutable_put());
      break;
    case RequestType::kDeleteRange:
      ToProto(request.delete_range, internal.mutable_delete_range());
      break;
    case RequestType::kCompact:
      internal.mutable_compaction()->set_revision(request.revision);
      break;
    case RequestType::kLeaseGrant: {
      // etcd's applierV3Capped: a grant adds data too.
      if (AlarmActive()) {
        Respond(id, request.type, NoSpace("lease grant"));
        return id;
      }
      if (request.lease_id == lease::kNoLease) {
        request.lease_id = lessor_.NextFreeId(Fnv1a64(RequestTag(id)));
      }
      internal.mutable_lease_grant()->set_id(request.lease_id);
      internal.mutable_lease_grant()->set_ttl_seconds(request.ttl_seconds);
      break;
    }
    case RequestType::kLeaseRevoke:
      internal.mutable_lease_revoke()->set_id(request.lease_id);
      break;
    case RequestType::kAlarmDisarm:
      internal.mutable_alarm()->set_action(kAlarmDeactivate);
      internal.mutable_alarm()->set_alarm(static_cast<int32_t>(AlarmType::kNoSpace));
      if (request.alarm_member.has_value()) {
        internal.mutable_alarm()->set_member_id(*request.alarm_member);
        internal.mutable_alarm()->set_only_member(true);
      }
      break;
    case RequestType::kAlarmActivate:
      internal.mutable_alarm()->set_action(kAlarmActivate);
      internal.mutable_alarm()->set_alarm(static_cast<int32_t>(AlarmType::kNoSpace));
      internal.mutable_alarm()->set_member_id(request.alarm_member.value_or(config_.id));
      break;
    case RequestType::kMemberAdd: {
      if (request.member.peer_urls.empty()) {
        Respond(id, request.type,
                Error(ErrorCode::kInvalidArgument, "member add: no peer URLs given"));
        return id;
      }
      if (absl::Status refused =
              CheckNewMember(request.member.peer_urls, request.member.is_learner, "");
          !refused.ok()) {
        Respond(id, request.type, std::move(refused));
        return id;
      }
      Member member = request.member;
      member.id = NewMemberId(member, id);
      raft::ConfChange change;
      change.changes.push_back(
          {member.is_learner ? raft::ConfChangeType::kAddLearner : raft::ConfChangeType::kAddVoter,
           member.id});
      ProposeMemberChange(id, request.type, std::move(change), member);
      return id;
    }
    case RequestType::kMemberPromote: {
      // The leader check comes first, as in etcd: only the leader knows whether the learner is
      // ready, and a follower that has not yet applied the learner's addition must hand the
      // promotion on (the node forwards kNotLeader) rather than refuse it from its own list.
      if (!raft_->IsLeader()) {
        Respond(
            id, request.type,
            Error(ErrorCode::kNotLeader, absl::StrCat("member promote must be served by the "
                                                      "leader (",
                                                      raft_->GetStatus().soft_state.leader, ")")));
        return id;
      }
      auto it = members_.find(request.member.id);
      if (it == members_.end()) {
        Respond(id, request.type,
                Error(ErrorCode::kMemberNotFound,
                      absl::StrCat("member promote: no member ", request.member.id)));
        return id;
      }
      if (!it->second.is_learner) {
        Respond(id, request.type,
                Error(ErrorCode::kLearnerNotPromotable,
                      absl::StrCat("member promote: ", request.member.id, " is not a learner")));
        return id;
      }
      const raft::Status status = raft_->GetStatus();
      const raft::Index leader_match = status.progress.at(config_.id).match;
      auto learner = status.progress.find(request.member.id);
      const raft::Index learner_match =
          learner == status.progress.end() ? 0 : learner->second.match;
      // etcd's rule: the learner must hold at least 90% of the leader's log.
      if (static_cast<double>(learner_match) <
          static_cast<double>(leader_match) * kLearnerReadyRatio) {
        CODE_PROBE(server, promotion_refused);
        Respond(id, request.type,
                Error(ErrorCode::kLearnerNotReady,
                      absl::StrCat("member promote: learner ", request.member.id, " has ",
                                   learner_match, " of the leader's ", leader_match,
                                   " entries (needs ", kLearnerReadyRatio * 100, "%)")));
        return id;
      }
      Member member = it->second;
      member.is_learner = false;
      raft::ConfChange change;
      change.changes.push_back({raft::ConfChangeType::kAddVoter, member.id});
      ProposeMemberChange(id, request.type, std::move(change), member);
      return id;
    }
    case RequestType::kMemberPublish: {
      internal.set_system(true);  // the member's own request, not a user's
      pb::MemberAttributes* attributes = internal.mutable_member_attributes();
      attributes->set_id(request.member.id);
      attributes->set_name(request.member.name);
      for (const std::string& url : request.member.client_urls) attributes->add_client_urls(url);
      break;
    }
    case RequestType::kMemberRemove: {
      auto it = members_.find(request.member.id);
      if (it == members_.end()) {
        Respond(id, request.type,
                Error(ErrorCode::kMemberNotFound,
                      absl::StrCat("member remove: no member ", request.member.id)));
        return id;
      }
      Member member = it->second;
      raft::ConfChange change;
      change.changes.push_back({raft::ConfChangeType::kRemoveNode, member.id});
      ProposeMemberChange(id, request.type, std::move(change), member);
      return id;
    }
    case RequestType::kMemberReplace:
      SubmitMemberReplace(id, request);
      return id;
    case RequestType::kLeaseTimeToLive:
      // Checked on every member that is asked, the leader and a follower before it forwards (the
      // forward carries the caller's token and certificate user), as etcd's LeaseTimeToLive.
      if (absl::Status refused = CheckLeaseTimeToLive(request.lease_id, *who); !refused.ok()) {
        Respond(id, request.type, std::move(refused));
        return id;
      }
      ServeLocal(id, request);
      return id;
    case RequestType::kMemberUpdate: {
      if (absl::Status refused = CheckMemberUpdate(request.member.id, request.member.peer_urls);
          !refused.ok()) {
        Respond(id, request.type, std::move(refused));
        return id;
      }
      pb::MemberPeerUrls* update = internal.mutable_member_peer_urls();
      update->set_id(request.member.id);
      for (const std::string& url : request.member.peer_urls) update->add_peer_urls(url);
      break;
    }
    default:
      if (IsAuthRequest(request.type)) {
        if (absl::Status refused = BuildAuthProposal(id, request, internal.mutable_auth());
            !refused.ok()) {
          Respond(id, request.type, std::move(refused));
          return id;
        }
        break;
      }
      ServeLocal(id, request);
      return id;
  }
  Propose(id, request.type, internal);
  return id;
}

void Server::Impl::Propose(RequestId id, RequestType type, pb::InternalRequest& internal) {
  // etcd's processInternalRaftRequestOnce: a member whose apply lags its commit this far is
  // overloaded; more proposals would only lengthen the queue every later request waits behind.
  const raft::Index committed = raft_->GetHardState().commit;
  if (committed > applied_index_ + kMaxAppliedLagEntries) {
    Respond(id, type,
            Error(ErrorCode::kTooManyRequests,
                  absl::StrCat("too many requests: ", committed - applied_index_,
                               " committed entries wait to apply (limit ", kMaxAppliedLagEntries,
                               ")")));
    return;
  }
  internal.set_id(id);
  internal.set_member_id(config_.id);
  internal.set_proposed_at_ms(now_ms());
  std::string data = internal.SerializeAsString();
  if (data.size() > config_.max_request_bytes) {
    Respond(id, type,
            Error(ErrorCode::kRequestTooLarge,
                  absl::StrCat("request of ", data.size(), " bytes exceeds the limit of ",
                               config_.max_request_bytes, " bytes")));
    return;
  }
  const bool leader = raft_->IsLeader();
  const raft::Index index = raft_->LastIndex() + 1;
  absl::Status status = raft_->Propose(raft::Bytes(data));
  if (!status.ok()) {
    Respond(id, type, FromRaftStatus(status));
    return;
  }
  Pending pending;
  pending.type = type;
  pending.deadline_tick = ticks_ + config_.request_timeout_ticks;
  if (leader) {
    pending.index = index;
    pending_by_index_[index] = id;
  }
  pending_.emplace(id, std::move(pending));
}

raft::NodeId Server::Impl::NewMemberId(const Member& member, RequestId id) const {
  const uint64_t hash = Fnv1a64(
      absl::StrCat(member.name, "|", absl::StrJoin(member.peer_urls, ","), "|", RequestTag(id)));
  raft::NodeId out = hash & 0x7FFFFFFFFFFFFFFFull;
  while (out == raft::kNoNode || members_.count(out) > 0 || removed_members_.count(out) > 0) ++out;
  return out;
}

void Server::Impl::SubmitMemberReplace(RequestId id, const Request& request) {
  auto old = members_.find(request.member.id);
  if (old == members_.end()) {
    Respond(id, request.type,
            Error(ErrorCode::kMemberNotFound,
                  absl::StrCat("member replace: no member ", request.member.id)));
    return;
  }
  if (request.member.peer_urls.empty()) {
    Respond(id, request.type,
            Error(ErrorCode::kInvalidArgument, "member replace: no peer URLs given"));
    return;
  }
  Member member;
  member.name = request.member.name;
  member.peer_urls = request.member.peer_urls;
  member.is_learner = old->second.is_learner;  // the new member takes the old one's role
  if (absl::Status refused =
          CheckNewMember(member.peer_urls, member.is_learner, "", old->first, "member replace");
      !refused.ok()) {
    Respond(id, request.type, std::move(refused));
    return;
  }
  member.id = NewMemberId(member, id);
  // Always joint (even for a learner, which moves no voter), left automatically by the leader.
  raft::ConfChange change;
  change.transition = raft::ConfChangeTransition::kJointImplicit;
  change.changes.push_back(
      {member.is_learner ? raft::ConfChangeType::kAddLearner : raft::ConfChangeType::kAddVoter,
       member.id});
  change.changes.push_back({raft::ConfChangeType::kRemoveNode, old->first});
  ProposeMemberChange(id, request.type, std::move(change), member);
}

absl::Status Server::Impl::CheckMemberUpdate(raft::NodeId member_id,
                                             const std::vector<std::string>& peer_urls) const {
  if (members_.count(member_id) == 0) {
    return Error(ErrorCode::kMemberNotFound, absl::StrCat("member update: no member ", member_id));
  }
  if (peer_urls.empty()) {
    return Error(ErrorCode::kInvalidArgument, "member update: no peer URLs given");
  }
  return CheckPeerUrlsFree(peer_urls, member_id, "member update", "");
}

void Server::Impl::ProposeMemberChange(RequestId id, RequestType type, raft::ConfChange cc,
                                       const Member& member) {
  pb::MemberChange context;
  context.set_request_id(id);
  context.set_member_id(config_.id);
  ToProto(member, context.mutable_member());
  cc.context = context.SerializeAsString();
  absl::Status status = raft_->ProposeConfChange(cc);
  if (!status.ok()) {
    Respond(id, type, FromRaftStatus(status));
    return;
  }
  Pending pending;
  pending.type = type;
  pending.deadline_tick = ticks_ + config_.request_timeout_ticks;
  pending_.emplace(id, std::move(pending));
}

void Server::Impl::StartRead(RequestId id, Request&& request) {
  Pending pending;
  pending.type = request.type;
  pending.read = std::make_unique<Request>(std::move(request));
  pending.deadline_tick = ticks_ + config_.request_timeout_ticks;
  pending_.emplace(id, std::move(pending));
  reads_waiting_.push_back(id);
}

void Server::Impl::IssueReads() {
  if (reads_waiting_.empty()) return;
  std::vector<RequestId> reads;
  for (RequestId id : std::exchange(reads_waiting_, {})) {
    if (pending_.count(id) > 0) reads.push_back(id);  // gone when it timed out while waiting
  }
  if (reads.empty()) return;
  if (reads.size() > 1) CODE_PROBE(server, reads_share_read_index);
  // A lone read's ReadIndex carries its own id, as before reads shared them; a shared one a new
  // id. Either way no two outstanding contexts of this member are equal.
  const RequestId tag = reads.size() == 1 ? reads.front() : NextRequestId();
  absl::Status status = raft_->ReadIndex(raft::Bytes(RequestTag(tag)));
  if (!status.ok()) {
    for (RequestId id : reads) FailPending(id, FromRaftStatus(status));
    return;
  }
  read_batches_[tag] = ReadBatch{std::move(reads), ticks_};
}

void Server::Impl::ServeRead(RequestId id, const Request& request) {
  Response response;
  response.request_id = id;
  response.type = request.type;
  // Reads are checked when served, against this member's auth state then (etcd checks a range
  // after its read index, with the token's user at that moment).
  if (auth_.enabled()) {
    absl::Status refused;
    auto who = Identify(request.token, request.cert_user);
    if (!who.ok()) {
      refused = who.status();
    } else if (request.type == RequestType::kRange) {
      refused = auth_.IsRangePermitted(*who, request.range.key, request.range.range_end);
    } else {
      pb::TxnRequest txn;
      ToProto(request.txn, &txn);
      refused = CheckTxn(txn, *who);
    }
    if (!refused.ok()) {
      response.status = std::move(refused);
      Respond(std::move(response));
      return;
    }
  }
  if (request.type == RequestType::kRange) {
    auto range = store_->Range(request.range);
    if (range.ok()) {
      response.range = std::move(*range);
    } else {
      response.status = range.status();
    }
  } else {
    // A read-only txn changes nothing: running it on the store writes no revision.
    auto txn = store_->Txn(request.txn);
    if (txn.ok()) {
      response.txn = std::move(*txn);
    } else {
      response.status = txn.status();
    }
  }
  CheckBackendIntact(response.status);
  Respond(std::move(response));
}

void Server::Impl::ServeLocal(RequestId id, const Request& request) {
  Response response;
  response.request_id = id;
  response.type = request.type;
  switch (request.type) {
    case RequestType::kLeaseKeepAlive: {
      if (!raft_->IsLeader()) {
        // The lessor may still be primary until the next Ready tells of the step-down.
        response.status =
            Error(ErrorCode::kNotLeader, "lease keep-alive must be served by the leader");
        break;
      }
      auto ttl = lessor_.Renew(request.lease_id, now_ms());
      if (ttl.ok()) {
        response.lease.id = request.lease_id;
        response.lease.remaining_ttl_seconds = *ttl;
        response.lease.granted_ttl_seconds = *ttl;
      } else {
        response.status = ttl.status();
      }
      break;
    }
    case RequestType::kLeaseTimeToLive: {
      if (!lessor_.is_primary() || !raft_->IsLeader()) {
        response.status =
            Error(ErrorCode::kNotLeader, "lease time-to-live must be served by the leader");
        break;
      }
      auto info = lessor_.TimeToLive(request.lease_id, now_ms());
      if (info.ok()) {
        response.lease = std::move(*info);
      } else {
        response.status = info.status();
      }
      break;
    }
    case RequestType::kLeaseLeases:
      response.leases = lessor_.Leases();
      break;
    case RequestType::kMemberList:
      response.members = Members();
      break;
    case RequestType::kAlarmList:
      response.alarms = Alarms();
      break;
    case RequestType::kHash: {
      auto hash = store_->Hash(request.revision);
      if (hash.ok()) {
        response.hash = *hash;
      } else {
        response.status = hash.status();
      }
      break;
    }
    case RequestType::kDefragment:
      response.status = backend_->Defragment();
      break;
    case RequestType::kMoveLeader: {
      // etcd's EtcdServer.MoveLeader: refuse a transferee that is not a voting member
      // (ErrBadLeaderTransferee), start the transfer, then answer once this member sees the
      // transferee lead, or at the deadline (ErrTimeoutLeaderTransfer).
      const raft::NodeId transferee = request.member.id;
      const Member* member = FindMember(transferee);
      if (!raft_->IsLeader()) {
        response.status = Error(ErrorCode::kNotLeader, "move-leader must be served by the leader");
      } else if (member == nullptr || member->is_learner) {
        response.status =
            Error(ErrorCode::kMemberNotFound,
                  absl::StrCat("etcdserver: bad leader transferee: ", absl::Hex(transferee),
                               member == nullptr ? " is not a member" : " is a learner"));
      } else if (absl::Status status = raft_->TransferLeader(transferee); !status.ok()) {
        response.status =
            Error(ErrorCode::kMemberNotFound,
                  absl::StrCat("etcdserver: bad leader transferee: ", status.message()));
      } else if (raft_->GetSoftState().leader != transferee) {
        moves_.emplace(id, PendingMove{transferee, ticks_ + config_.request_timeout_ticks});
        return;
      }
      break;
    }
    default:
      response.status = Error(ErrorCode::kInvalidArgument, "unsupported request type");
      break;
  }
  Respond(std::move(response));
}

// ---------------------------------------------------------------------------------------------
// Apply

bool Server::Impl::IsDuplicate(const pb::InternalRequest& internal) {
  if (internal.id() == 0 || internal.member_id() == raft::kNoNode) return false;
  // Every replica applies the same entries, so every replica keeps the same window and decides
  // alike. Ids grow per member; one below a full window is older than any proposal still
  // pending (its proposer has answered TIMEOUT long ago), so it is treated as seen.
  absl::btree_set<RequestId>& seen = applied_requests_[internal.member_id()];
  // Below a full window: seen (it is not in the set, so asking the set first answers alike).
  if (seen.size() >= kDedupWindowPerMember && internal.id() < *seen.begin()) return true;
  if (!seen.insert(internal.id()).second) return true;  // one search to find or insert
  backend_->Put(mvcc::Bucket::kDedup, DedupKey(internal.member_id(), internal.id()).view(), "");
  if (seen.size() > kDedupWindowPerMember) {
    backend_->Delete(mvcc::Bucket::kDedup, DedupKey(internal.member_id(), *seen.begin()).view());
    seen.erase(seen.begin());
  }
  return false;
}

void Server::Impl::Apply(const raft::Entry& entry) {
  applied_index_ = entry.index;
  applied_term_ = entry.term;
  if (entry.type == raft::EntryType::kConfChange) {
    ApplyConfChange(entry);
  } else if (!entry.data.empty()) {
    // The decoded request lives in an arena on the stack: its strings and nested messages cost
    // no allocation of their own (they were 8 of the ~36 per applied put).
    alignas(16) char arena_block[2048];
    google::protobuf::ArenaOptions arena_options;
    arena_options.initial_block = arena_block;
    arena_options.initial_block_size = sizeof(arena_block);
    google::protobuf::Arena arena(arena_options);
    pb::InternalRequest& internal =
        *google::protobuf::Arena::CreateMessage<pb::InternalRequest>(&arena);
    Response response;
    if (!internal.ParseFromArray(entry.data.data(), static_cast<int>(entry.data.size()))) {
      // Deterministic on every replica: the entry is skipped everywhere.
      response.status = Error(ErrorCode::kInvalidArgument,
                              absl::StrCat("entry ", entry.index, " holds a malformed request"));
    } else if (IsDuplicate(internal)) {
      // The same proposal appended twice (a forwarded proposal the network duplicated): it
      // took effect the first time; applying it again would be a phantom write.
      CODE_PROBE(server, duplicate_proposal_skipped);
      return;
    } else {
      ApplyInternal(entry.index, internal, &response);
    }
    auto it = internal.id() != 0 && internal.member_id() == config_.id
                  ? pending_.find(internal.id())
                  : pending_.end();
    if (it != pending_.end() && it->second.answer.has_value()) {
      // A quota refusal whose alarm applied: answered with the refusal.
      FailPending(it->first, absl::OkStatus());
    } else if (it != pending_.end() && !it->second.is_read()) {
      response.request_id = it->first;
      response.type = it->second.type;
      if (it->second.index != 0) pending_by_index_.erase(it->second.index);
      pending_.erase(it);
      if (response.type == RequestType::kAuthenticate) IssueToken(&response);
      Respond(std::move(response));
    }
  }
  // A proposal this member appended at this index but whose entry was replaced by another
  // leader's: it will never apply.
  for (auto it = pending_by_index_.begin();
       it != pending_by_index_.end() && it->first <= entry.index;) {
    const RequestId id = it->second;
    it = pending_by_index_.erase(it);
    auto p = pending_.find(id);
    if (p == pending_.end()) continue;
    p->second.index = 0;
    CODE_PROBE(server, proposal_replaced);
    FailPending(id, Error(ErrorCode::kLeadershipChanged,
                          absl::StrCat("proposal at index ", entry.index,
                                       " was replaced after a leader change")));
  }
}

absl::Status Server::Impl::ValidateMemberChange(const raft::ConfChange& change,
                                                const pb::MemberChange* context) const {
  if (change.changes.empty()) return absl::OkStatus();  // leaving a joint configuration
  // A single change, or a replace: one member in (first), one out.
  const raft::ConfChangeSingle& single = change.changes.front();
  raft::NodeId leaving = raft::kNoNode;
  if (change.changes.size() == 2) {
    leaving = change.changes[1].node_id;
    if (members_.count(leaving) == 0) {
      return Error(ErrorCode::kMemberNotFound,
                   absl::StrCat("member replace: no member ", leaving, " (removed meanwhile)"));
    }
  }
  if (single.type != raft::ConfChangeType::kRemoveNode &&
      removed_members_.count(single.node_id) > 0) {
    // etcd's ErrIDRemoved: a removed id never comes back (its messages are dropped).
    return Error(ErrorCode::kMemberNotFound,
                 absl::StrCat("member add: id ", single.node_id, " was removed"));
  }
  if (single.type == raft::ConfChangeType::kRemoveNode || members_.count(single.node_id) > 0) {
    return absl::OkStatus();  // removals, promotions and re-adds change no count or URL
  }
  std::vector<std::string> peer_urls;
  if (context != nullptr && context->member().id() == single.node_id) {
    peer_urls.assign(context->member().peer_urls().begin(), context->member().peer_urls().end());
  }
  return CheckNewMember(peer_urls, single.type == raft::ConfChangeType::kAddLearner,
                        " (added meanwhile)", leaving,
                        leaving == raft::kNoNode ? "member add" : "member replace");
}

absl::Status Server::Impl::CheckPeerUrlsFree(const std::vector<std::string>& peer_urls,
                                             raft::NodeId except, absl::string_view what,
                                             absl::string_view note) const {
  for (const auto& [member_id, member] : members_) {
    if (member_id == except) continue;
    for (const std::string& url : member.peer_urls) {
      if (std::find(peer_urls.begin(), peer_urls.end(), url) != peer_urls.end()) {
        return Error(ErrorCode::kMemberExists,
                     absl::StrCat(what, ": peer URL ", url, " is member ", member_id, note));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Server::Impl::CheckNewMember(const std::vector<std::string>& peer_urls,
                                          bool is_learner, absl::string_view note,
                                          raft::NodeId leaving, absl::string_view what) const {
  // A replaced member's URLs are refused too: its process may still run while the joint
  // configuration lasts, and two members must never answer at one address.
  if (absl::Status refused = CheckPeerUrlsFree(peer_urls, raft::kNoNode, what, note);
      !refused.ok()) {
    return refused;
  }
  if (is_learner) {
    size_t learners = 0;
    for (const auto& [member_id, member] : members_) {
      learners += member.is_learner && member_id != leaving ? 1 : 0;
    }
    if (learners >= config_.max_learners) {
      return Error(ErrorCode::kTooManyLearners,
                   absl::StrCat(what, ": ", learners, " learners", note, ", the limit is ",
                                config_.max_learners));
    }
  }
  return absl::OkStatus();
}

void Server::Impl::ApplyConfChange(const raft::Entry& entry) {
  auto change = raft::DecodeConfChange(entry.data.view());
  RAFT_CHECK(change.ok()) << "server " << config_.id << ": committed conf change at " << entry.index
                          << " is malformed: " << change.status().message();
  pb::MemberChange context;
  const bool has_context =
      !change->context.empty() && context.ParseFromString(change->context) && context.has_member();
  // Checked again at apply (etcd's ValidateConfigurationChange): the proposer checked against
  // its own member list, which may be behind the log, so two members could each admit a learner
  // past the limit, or the same URL twice. Every replica decides alike here, on the applied
  // list; a refused change leaves the configuration as it is and its proposer gets the error.
  if (absl::Status refused = ValidateMemberChange(*change, has_context ? &context : nullptr);
      !refused.ok()) {
    CODE_PROBE(server, member_change_refused_at_apply);
    if (has_context && context.request_id() != 0 && context.member_id() == config_.id) {
      FailPending(context.request_id(), refused);
    }
    return;
  }
  const raft::ConfState before = conf_state_;
  conf_state_ = raft_->ApplyConfChange(*change);
  conf_changed_since_snapshot_ = true;
  backend_->Put(mvcc::Bucket::kMeta, kMetaConfState, raft::EncodeConfState(conf_state_));
  // Who left the configuration is removed for good: a removed member at once, a replaced one
  // when the joint configuration is left (until then it is an outgoing voter).
  auto in_config = [](const raft::ConfState& cs, raft::NodeId id) {
    auto in = [id](const std::vector<raft::NodeId>& ids) {
      return std::find(ids.begin(), ids.end(), id) != ids.end();
    };
    return in(cs.voters) || in(cs.voters_outgoing) || in(cs.learners) || in(cs.learners_next);
  };
  for (const std::vector<raft::NodeId>* ids :
       {&before.voters, &before.voters_outgoing, &before.learners, &before.learners_next}) {
    for (raft::NodeId id : *ids) {
      if (in_config(conf_state_, id) || !removed_members_.insert(id).second) continue;
      backend_->Put(mvcc::Bucket::kMeta, RemovedMemberKey(id), "");
      if (id == config_.id) CODE_PROBE(server, own_removal_applied);
    }
  }
  for (const raft::ConfChangeSingle& single : change->changes) {
    auto it = members_.find(single.node_id);
    switch (single.type) {
      case raft::ConfChangeType::kAddVoter:
      case raft::ConfChangeType::kAddLearner: {
        Member member = it != members_.end() ? it->second : Member{single.node_id, "", {}, false};
        if (has_context && context.member().id() == single.node_id) {
          member = FromProto(context.member());
        }
        member.is_learner = single.type == raft::ConfChangeType::kAddLearner;
        members_[single.node_id] = member;
        pb::Member record;
        ToProto(member, &record);
        backend_->Put(mvcc::Bucket::kMeta, MemberKey(member.id), record.SerializeAsString());
        break;
      }
      case raft::ConfChangeType::kRemoveNode:
        break;  // below, once it has left the configuration
    }
  }
  // A member leaves the list when it leaves the configuration: a removed one at once, a
  // replaced voter (an outgoing voter of the joint configuration) when the joint one is left.
  for (auto it = members_.begin(); it != members_.end();) {
    const raft::NodeId member_id = it->first;
    auto in = [member_id](const std::vector<raft::NodeId>& ids) {
      return std::binary_search(ids.begin(), ids.end(), member_id);
    };
    if (in(conf_state_.voters) || in(conf_state_.voters_outgoing) || in(conf_state_.learners) ||
        in(conf_state_.learners_next)) {
      ++it;
      continue;
    }
    backend_->Delete(mvcc::Bucket::kMeta, MemberKey(member_id));
    it = members_.erase(it);
  }
  if (change->IsLeaveJoint() && awaiting_leave_.has_value()) {
    auto it = pending_.find(awaiting_leave_->first);
    if (it != pending_.end()) {
      CODE_PROBE(server, joint_answered_on_leave);
      Response response;
      response.request_id = it->first;
      response.type = it->second.type;
      response.member = std::move(awaiting_leave_->second);
      response.members = Members();
      pending_.erase(it);
      Respond(std::move(response));
    }
    awaiting_leave_.reset();
  }
  if (has_context && context.request_id() != 0 && context.member_id() == config_.id) {
    auto it = pending_.find(context.request_id());
    if (it != pending_.end() && !conf_state_.voters_outgoing.empty()) {
      // Entered a joint configuration: answered once it is left (the leader leaves it next).
      awaiting_leave_.emplace(context.request_id(), FromProto(context.member()));
    } else if (it != pending_.end()) {
      Response response;
      response.request_id = it->first;
      response.type = it->second.type;
      response.member = FromProto(context.member());
      response.members = Members();
      pending_.erase(it);
      Respond(std::move(response));
    }
  }
}

absl::Status Server::Impl::ApplyWrite(pb::InternalRequest& internal, Response* response) {
  // A write proposed before the alarm applied (the proposer checked it then) meets it here.
  auto refused_at_apply = [this](absl::string_view what) {
    CODE_PROBE(server, nospace_refused_at_apply);
    return NoSpace(what);
  };
  switch (internal.request_case()) {
    case pb::InternalRequest::kPut: {
      if (AlarmActive()) return refused_at_apply("put");
      mvcc::PutRequest put = FromProto(std::move(*internal.mutable_put()));  // takes its value
      if (put.lease != lease::kNoLease && !lessor_.Exists(put.lease)) {
        return Error(ErrorCode::kLeaseNotFound, absl::StrCat("lease ", put.lease, " not found"));
      }
      const bool fits = QuotaAvailable(PutCost(put));
      auto result = store_->Put(std::move(put));  // its value moves into the store
      if (!result.ok()) return result.status();
      response->put = std::move(*result);
      return QuotaAtApply(fits, "put");
    }
    case pb::InternalRequest::kDeleteRange: {
      auto result = store_->DeleteRange(FromProto(internal.delete_range()));
      if (!result.ok()) return result.status();
      response->delete_range = std::move(*result);
      return absl::OkStatus();
    }
    case pb::InternalRequest::kTxn: {
      auto txn = FromProto(std::move(*internal.mutable_txn()));  // takes its puts' values
      if (!txn.ok()) return txn.status();
      if (AlarmActive() && TxnPuts(*txn)) {
        return refused_at_apply("txn");
      }
      std::set<lease::LeaseId> leases;
      TxnLeases(*txn, &leases);
      for (lease::LeaseId id : leases) {
        if (!lessor_.Exists(id)) {
          return Error(ErrorCode::kLeaseNotFound, absl::StrCat("lease ", id, " not found"));
        }
      }
      const bool fits = QuotaAvailable(TxnCost(*txn));
      auto result = store_->Txn(std::move(*txn));  // its puts' values move into the store
      if (!result.ok()) return result.status();
      response->txn = std::move(*result);
      return QuotaAtApply(fits, "txn");
    }
    case pb::InternalRequest::kCompaction: {
      auto result = store_->Compact(internal.compaction().revision());
      if (!result.ok()) return result.status();
      response->compact = *result;
      return absl::OkStatus();
    }
    case pb::InternalRequest::kLeaseGrant: {
      if (AlarmActive()) return refused_at_apply("lease grant");
      const bool fits = QuotaAvailable(kQuotaLeaseOverheadBytes);
      auto info = lessor_.ApplyGrant(internal.lease_grant().id(),
                                     internal.lease_grant().ttl_seconds(), now_ms());
      if (!info.ok()) return info.status();
      response->lease = std::move(*info);
      return QuotaAtApply(fits, "lease grant");
    }
    case pb::InternalRequest::kLeaseRevoke: {
      const lease::LeaseId id = internal.lease_revoke().id();
      revoking_.erase(id);
      auto keys = lessor_.ApplyRevoke(id);
      if (!keys.ok()) return keys.status();
      // All of the lease's keys go in one revision.
      mvcc::TxnRequest deletes;
      for (const std::string& key : *keys) {
        mvcc::RequestOp op;
        op.kind = mvcc::RequestOp::Kind::kDeleteRange;
        op.delete_range.key = key;
        deletes.success.push_back(std::move(op));
      }
      if (!deletes.success.empty()) {
        CODE_PROBE(lease, revoke_with_keys);
        auto result = store_->Txn(deletes);
        if (!result.ok()) return result.status();
      }
      response->lease.id = id;
      return absl::OkStatus();
    }
    case pb::InternalRequest::kAlarm: {
      const AlarmType type = static_cast<AlarmType>(internal.alarm().alarm());
      if (type != AlarmType::kNoSpace) {
        return Error(ErrorCode::kInvalidArgument,
                     absl::StrCat("unknown alarm ", internal.alarm().alarm()));
      }
      if (internal.alarm().action() == kAlarmActivate) {
        if (!AlarmActive()) CODE_PROBE(server, nospace_alarm_raised);
        alarms_.insert({internal.alarm().member_id(), type});
        backend_->Put(mvcc::Bucket::kMeta, AlarmKey(internal.alarm().member_id(), type), "");
      } else {
        if (AlarmActive()) CODE_PROBE(server, nospace_alarm_disarmed);
        const bool only_member = internal.alarm().only_member();
        for (auto it = alarms_.begin(); it != alarms_.end();) {
          if (it->second == type && (!only_member || it->first == internal.alarm().member_id())) {
            backend_->Delete(mvcc::Bucket::kMeta, AlarmKey(it->first, it->second));
            it = alarms_.erase(it);
          } else {
            ++it;
          }
        }
      }
      response->alarms = Alarms();
      return absl::OkStatus();
    }
    case pb::InternalRequest::kAuth:
      return ApplyAuth(internal.auth(), response);
    case pb::InternalRequest::kMemberAttributes: {
      const pb::MemberAttributes& attributes = internal.member_attributes();
      auto it = members_.find(attributes.id());
      if (it == members_.end()) {
        // Removed meanwhile: nothing to publish to.
        return Error(ErrorCode::kMemberNotFound,
                     absl::StrCat("member publish: no member ", attributes.id()));
      }
      it->second.name = attributes.name();
      it->second.client_urls.assign(attributes.client_urls().begin(),
                                    attributes.client_urls().end());
      pb::Member record;
      ToProto(it->second, &record);
      backend_->Put(mvcc::Bucket::kMeta, MemberKey(it->first), record.SerializeAsString());
      response->member = it->second;
      return absl::OkStatus();
    }
    case pb::InternalRequest::kMemberPeerUrls: {
      const pb::MemberPeerUrls& update = internal.member_peer_urls();
      std::vector<std::string> urls(update.peer_urls().begin(), update.peer_urls().end());
      if (absl::Status refused = CheckMemberUpdate(update.id(), urls); !refused.ok()) {
        return refused;
      }
      Member& member = members_.at(update.id());
      member.peer_urls = std::move(urls);
      pb::Member record;
      ToProto(member, &record);
      backend_->Put(mvcc::Bucket::kMeta, MemberKey(member.id), record.SerializeAsString());
      response->member = member;
      response->members = Members();
      return absl::OkStatus();
    }
    case pb::InternalRequest::REQUEST_NOT_SET:
      break;
  }
  return Error(ErrorCode::kInvalidArgument, "entry holds no request");
}

void Server::Impl::ApplyInternal(raft::Index, pb::InternalRequest& internal, Response* response) {
  if (!internal.system()) {
    absl::Status refused =
        CheckPermitted(internal, auth::AuthInfo{internal.auth_user(), internal.auth_revision()});
    if (!refused.ok()) {
      response->status = std::move(refused);
      return;
    }
  }
  // The events' previous values only for a watcher that asks for them.
  store_->set_prev_values_in_events(hub_->prev_kv_requested());
  response->status = ApplyWrite(internal, response);
  CheckBackendIntact(response->status);
  std::vector<mvcc::Event> events = store_->TakeEvents();
  TrackLeases(events);
  hub_->Notify(std::move(events));  // the last watcher takes them: no copy of their values
}

void Server::Impl::TrackLeases(const std::vector<mvcc::Event>& events) {
  for (const mvcc::Event& event : events) {
    const lease::LeaseId previous = event.prev_kv.has_value() ? event.prev_kv->lease : 0;
    if (event.type == mvcc::Event::Type::kDelete) {
      if (previous != lease::kNoLease) lessor_.Detach(previous, event.kv.key);
      continue;
    }
    if (previous != lease::kNoLease && previous != event.kv.lease) {
      lessor_.Detach(previous, event.kv.key);
    }
    if (event.kv.lease != lease::kNoLease) (void)lessor_.Attach(event.kv.lease, event.kv.key);
  }
}

// ---------------------------------------------------------------------------------------------
// Auth

absl::StatusOr<auth::AuthInfo> Server::Impl::Identify(const std::string& token,
                                                      const std::string& cert_user) {
  if (!auth_.enabled()) {
    // etcd's AuthInfoFromCtx checks a token whether or not auth is enabled: one the member does
    // not know (every simple token, since disabling auth drops them; a JWT it cannot verify) is
    // refused, not ignored.
    if (token.empty()) return auth::AuthInfo{};
    const bool known = config_.token_provider != nullptr
                           ? config_.token_provider->Info(token).has_value()
                           : tokens_.Lookup(token, ticks_).has_value();
    if (!known) return AuthError(ErrorCode::kInvalidAuthToken);
    return auth::AuthInfo{};
  }
  // A client certificate's CN names the user of a call without a token (etcd's AuthInfoFromTLS),
  // at the auth store's revision now.
  if (token.empty() && !cert_user.empty()) return auth::AuthInfo{cert_user, auth_.revision()};
  if (token.empty()) return auth::AuthInfo{};
  if (config_.token_provider != nullptr) {
    // A JWT carries its own revision: one issued before an auth change is refused as old
    // (etcd's ErrAuthOldRevision) by the checks, not here.
    std::optional<auth::AuthInfo> info = config_.token_provider->Info(token);
    if (!info.has_value()) return AuthError(ErrorCode::kInvalidAuthToken);
    return *std::move(info);
  }
  std::optional<std::string> user = tokens_.Lookup(token, ticks_);
  if (!user.has_value()) return AuthError(ErrorCode::kInvalidAuthToken);
  return auth::AuthInfo{std::move(*user), auth_.revision()};
}

void Server::Impl::IssueToken(Response* response) {
  if (config_.token_provider == nullptr || !response->status.ok()) return;
  auto token = config_.token_provider->Assign(response->user.name, auth_.revision());
  if (!token.ok()) {
    response->status = Error(ErrorCode::kInvalidArgument, token.status().message());
    return;
  }
  response->token = *std::move(token);
  response->user = auth::User{};
}

std::string Server::Impl::Entropy(const Request& request, RequestId id) const {
  if (request.auth.entropy.size() >= auth::kSaltBytes) return request.auth.entropy;
  uint64_t state = config_.random_seed ^ Fnv1a64(RequestTag(id));
  std::string out;
  while (out.size() < auth::kSaltBytes) PutFixed64BigEndian(&out, SplitMix64(&state));
  return out;
}

absl::Status Server::Impl::BuildAuthProposal(RequestId id, const Request& request,
                                             pb::AuthRequest* out) {
  const AuthRequest& in = request.auth;
  out->set_op(static_cast<int32_t>(request.type));
  out->set_name(in.name);
  out->set_role(in.role);
  out->set_perm_type(static_cast<int32_t>(in.permission.type));
  out->set_key(in.permission.key);
  out->set_range_end(in.permission.range_end);
  switch (request.type) {
    case RequestType::kUserAdd:
    case RequestType::kUserChangePassword: {
      if (in.name.empty()) return AuthError(ErrorCode::kUserEmpty);
      auto hash = auth::HashPassword(in.password, Entropy(request, id), config_.password_hash_cost);
      if (!hash.ok()) return Error(ErrorCode::kInvalidArgument, hash.status().message());
      out->set_password_hash(std::move(*hash));
      return absl::OkStatus();
    }
    case RequestType::kAuthenticate: {
      // etcd checks the password before proposing (bcrypt is slow; the log carries no
      // password), then every member assigns the proposer's token when the entry applies.
      if (!auth_.enabled()) return AuthError(ErrorCode::kAuthNotEnabled);
      if (absl::Status failed = auth_.CheckPassword(in.name, in.password); !failed.ok()) {
        return failed;
      }
      if (config_.token_provider == nullptr) {
        out->set_token(auth::SimpleTokenString(Entropy(request, id), request_counter_));
      }
      out->set_checked_revision(auth_.revision());
      return absl::OkStatus();
    }
    case RequestType::kRoleAdd:
      if (in.role.empty()) return AuthError(ErrorCode::kRoleEmpty);
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

absl::Status Server::Impl::CheckLeaseKeys(lease::LeaseId id, const auth::AuthInfo& who) const {
  if (!auth_.enabled() || id == lease::kNoLease) return absl::OkStatus();
  auto info = lessor_.TimeToLive(id, now_ms());
  if (!info.ok()) return absl::OkStatus();  // an unknown lease is refused by the apply itself
  for (const std::string& key : info->keys) {
    if (absl::Status refused = auth_.IsPutPermitted(who, key); !refused.ok()) return refused;
  }
  return absl::OkStatus();
}

// etcd's checkLeaseTimeToLive (3.4.26, CVE-2023-32082): with auth enabled a time-to-live needs a
// user (ErrUserEmpty) and, if the lease exists, read permission on every key attached to it,
// whether or not the caller asked for the keys: the answer names them. An unknown lease is
// answered LEASE_NOT_FOUND by the lessor after this passes.
absl::Status Server::Impl::CheckLeaseTimeToLive(lease::LeaseId id,
                                                const auth::AuthInfo& who) const {
  if (!auth_.enabled()) return absl::OkStatus();
  if (who.user.empty()) return AuthError(ErrorCode::kUserEmpty);
  auto info = lessor_.TimeToLive(id, now_ms());
  if (!info.ok()) return absl::OkStatus();
  for (const std::string& key : info->keys) {
    if (absl::Status refused = auth_.IsRangePermitted(who, key, ""); !refused.ok()) {
      return refused;
    }
  }
  return absl::OkStatus();
}

absl::Status Server::Impl::CheckTxn(const pb::TxnRequest& txn, const auth::AuthInfo& who) const {
  for (const pb::Compare& compare : txn.compare()) {
    if (absl::Status refused = auth_.IsRangePermitted(who, compare.key(), compare.range_end());
        !refused.ok()) {
      return refused;
    }
  }
  for (const auto* branch : {&txn.success(), &txn.failure()}) {
    for (const pb::RequestOp& op : *branch) {
      absl::Status refused;
      switch (op.request_case()) {
        case pb::RequestOp::kRange:
          refused = auth_.IsRangePermitted(who, op.range().key(), op.range().range_end());
          break;
        case pb::RequestOp::kPut:
          refused = auth_.IsPutPermitted(who, op.put().key());
          if (refused.ok() && op.put().prev_kv()) {
            refused = auth_.IsRangePermitted(who, op.put().key(), "");
          }
          if (refused.ok()) refused = CheckLeaseKeys(op.put().lease(), who);
          break;
        case pb::RequestOp::kDeleteRange:
          refused = auth_.IsDeleteRangePermitted(who, op.delete_range().key(),
                                                 op.delete_range().range_end());
          if (refused.ok() && op.delete_range().prev_kv()) {
            refused =
                auth_.IsRangePermitted(who, op.delete_range().key(), op.delete_range().range_end());
          }
          break;
        case pb::RequestOp::kTxn:
          refused = CheckTxn(op.txn(), who);
          break;
        case pb::RequestOp::REQUEST_NOT_SET:
          break;
      }
      if (!refused.ok()) return refused;
    }
  }
  return absl::OkStatus();
}

absl::Status Server::Impl::CheckPermitted(const pb::InternalRequest& internal,
                                          const auth::AuthInfo& who) const {
  if (!auth_.enabled()) return absl::OkStatus();
  switch (internal.request_case()) {
    case pb::InternalRequest::kPut: {
      const pb::PutRequest& put = internal.put();
      if (absl::Status refused = auth_.IsPutPermitted(who, put.key()); !refused.ok()) {
        return refused;
      }
      if (put.prev_kv()) {
        if (absl::Status refused = auth_.IsRangePermitted(who, put.key(), ""); !refused.ok()) {
          return refused;
        }
      }
      return CheckLeaseKeys(put.lease(), who);
    }
    case pb::InternalRequest::kDeleteRange: {
      const pb::DeleteRangeRequest& del = internal.delete_range();
      if (del.prev_kv()) {
        if (absl::Status refused = auth_.IsRangePermitted(who, del.key(), del.range_end());
            !refused.ok()) {
          return refused;
        }
      }
      return auth_.IsDeleteRangePermitted(who, del.key(), del.range_end());
    }
    case pb::InternalRequest::kTxn:
      return CheckTxn(internal.txn(), who);
    case pb::InternalRequest::kLeaseRevoke:
      return CheckLeaseKeys(internal.lease_revoke().id(), who);
    case pb::InternalRequest::kAuth: {
      const RequestType op = static_cast<RequestType>(internal.auth().op());
      if (NeedsAdmin(op)) return auth_.IsAdminPermitted(who);
      absl::Status admin = auth_.IsAdminPermitted(who);
      // etcd's authApplierV3.UserGet / RoleGet: one's own user and roles need no root.
      if (op == RequestType::kUserGet && !admin.ok() && internal.auth().name() != who.user) {
        return AuthError(ErrorCode::kPermissionDenied);
      }
      if (op == RequestType::kRoleGet && !admin.ok() &&
          !auth_.HasRole(who.user, internal.auth().role())) {
        return AuthError(ErrorCode::kPermissionDenied);
      }
      return absl::OkStatus();
    }
    default:
      // Compaction, lease grants and alarms: etcd checks none at apply (alarms are checked as
      // maintenance operations when submitted).
      return absl::OkStatus();
  }
}

absl::Status Server::Impl::ApplyAuth(const pb::AuthRequest& r, Response* response) {
  const int32_t op = r.op();
  if (op < static_cast<int32_t>(RequestType::kAuthEnable) ||
      op > static_cast<int32_t>(RequestType::kRoleList)) {
    return Error(ErrorCode::kInvalidArgument, absl::StrCat("unknown auth operation ", op));
  }
  if (r.perm_type() < 0 || r.perm_type() > static_cast<int32_t>(auth::PermissionType::kReadWrite)) {
    return Error(ErrorCode::kInvalidArgument,
                 absl::StrCat("unknown permission type ", r.perm_type()));
  }
  switch (static_cast<RequestType>(op)) {
    case RequestType::kAuthEnable:
      return auth_.Enable();
    case RequestType::kAuthDisable: {
      absl::Status status = auth_.Disable();
      if (status.ok()) tokens_.Clear();
      return status;
    }
    case RequestType::kAuthenticate: {
      if (!auth_.enabled()) return AuthError(ErrorCode::kAuthNotEnabled);
      // The password was checked at checked_revision: a change since (the password, the user)
      // makes that check stale.
      if (r.checked_revision() < auth_.revision()) return AuthError(ErrorCode::kAuthOldRevision);
      if (!auth_.GetUser(r.name()).ok()) return AuthError(ErrorCode::kAuthFailed);
      if (config_.token_provider != nullptr) {
        // Signed by the member that answers (IssueToken), at this revision.
        response->user.name = r.name();
        return absl::OkStatus();
      }
      tokens_.Assign(r.token(), r.name(), ticks_);
      response->token = r.token();
      return absl::OkStatus();
    }
    case RequestType::kUserAdd:
      return auth_.UserAdd(r.name(), r.password_hash());
    case RequestType::kUserDelete: {
      absl::Status status = auth_.UserDelete(r.name());
      if (status.ok()) tokens_.InvalidateUser(r.name());
      return status;
    }
    case RequestType::kUserChangePassword: {
      absl::Status status = auth_.UserChangePassword(r.name(), r.password_hash());
      if (status.ok()) tokens_.InvalidateUser(r.name());
      return status;
    }
    case RequestType::kUserGrantRole:
      return auth_.UserGrantRole(r.name(), r.role());
    case RequestType::kUserRevokeRole:
      return auth_.UserRevokeRole(r.name(), r.role());
    case RequestType::kUserGet: {
      auto user = auth_.GetUser(r.name());
      if (!user.ok()) return user.status();
      response->user = std::move(*user);
      return absl::OkStatus();
    }
    case RequestType::kUserList:
      response->names = auth_.UserNames();
      return absl::OkStatus();
    case RequestType::kRoleAdd:
      return auth_.RoleAdd(r.role());
    case RequestType::kRoleDelete:
      return auth_.RoleDelete(r.role());
    case RequestType::kRoleGrantPermission:
      return auth_.RoleGrantPermission(
          r.role(), auth::Permission{static_cast<auth::PermissionType>(r.perm_type()), r.key(),
                                     r.range_end()});
    case RequestType::kRoleRevokePermission:
      return auth_.RoleRevokePermission(r.role(), r.key(), r.range_end());
    case RequestType::kRoleGet: {
      auto role = auth_.GetRole(r.role());
      if (!role.ok()) return role.status();
      response->role = std::move(*role);
      return absl::OkStatus();
    }
    case RequestType::kRoleList:
      response->names = auth_.RoleNames();
      return absl::OkStatus();
    default:
      return Error(ErrorCode::kInvalidArgument, absl::StrCat("unknown auth operation ", op));
  }
}

std::string Server::Impl::DumpBackend() const {
  std::string out;
  for (int bucket = 0; bucket < mvcc::kBucketCount; ++bucket) {
    backend_->Range(static_cast<mvcc::Bucket>(bucket), "", "",
                    [&](absl::string_view key, absl::string_view value) {
                      if (IsMemberLocal(static_cast<mvcc::Bucket>(bucket), key)) return true;
                      out.push_back(static_cast<char>(bucket));
                      PutLengthPrefixed(&out, key);
                      PutLengthPrefixed(&out, value);
                      return true;
                    });
  }
  return out;
}

std::shared_ptr<raft::Snapshot> Server::Impl::SnapshotMark() const {
  auto snapshot = std::make_shared<raft::Snapshot>();
  snapshot->metadata.index = applied_index_;
  snapshot->metadata.term = applied_term_;
  snapshot->metadata.conf_state = conf_state_;
  return snapshot;
}

void Server::Impl::RestoreSnapshot(const raft::Snapshot& snapshot) {
  // Every sent snapshot carries a whole backend (GetReady), never empty: it holds the meta
  // bucket at least. An empty one would be a compaction mark that escaped, and wipe the store.
  RAFT_CHECK(!snapshot.data.empty()) << "server " << config_.id << ": snapshot at "
                                     << snapshot.metadata.index << " carries no state";
  CODE_PROBE(server, snapshot_restored);
  // Replace the backend's contents with the snapshot's, then rebuild every view of it. The
  // snapshot lists (bucket, key, value) in order, as DumpBackend walks the backend; a member
  // catching up usually holds most of it already, so only what differs is written.
  struct Item {
    mvcc::Bucket bucket;
    absl::string_view key;
    absl::string_view value;
  };
  std::vector<Item> items;
  absl::string_view in = snapshot.data.view();
  while (!in.empty()) {
    const uint8_t bucket = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    Item item;
    RAFT_CHECK(bucket < mvcc::kBucketCount && GetLengthPrefixed(&in, &item.key) &&
               GetLengthPrefixed(&in, &item.value))
        << "server " << config_.id << ": snapshot at " << snapshot.metadata.index
        << " is malformed";
    item.bucket = static_cast<mvcc::Bucket>(bucket);
    RAFT_CHECK(items.empty() || items.back().bucket < item.bucket ||
               (items.back().bucket == item.bucket && items.back().key < item.key))
        << "server " << config_.id << ": snapshot at " << snapshot.metadata.index
        << " is out of order at key " << absl::CHexEscape(item.key);
    if (!IsMemberLocal(item.bucket, item.key)) items.push_back(item);
  }
  size_t next = 0;
  for (int b = 0; b < mvcc::kBucketCount; ++b) {
    const auto bucket = static_cast<mvcc::Bucket>(b);
    // The bucket's items are [next, end).
    size_t end = next;
    while (end < items.size() && items[end].bucket == bucket) ++end;
    std::vector<std::string> deletes;
    std::vector<size_t> puts;
    backend_->Range(bucket, "", "", [&](absl::string_view key, absl::string_view value) {
      if (IsMemberLocal(bucket, key)) return true;
      for (; next < end && items[next].key < key; ++next) puts.push_back(next);
      if (next < end && items[next].key == key) {
        if (items[next].value != value) puts.push_back(next);
        ++next;
      } else {
        deletes.emplace_back(key);
      }
      return true;
    });
    for (; next < end; ++next) puts.push_back(next);
    for (const std::string& key : deletes) backend_->Delete(bucket, key);
    for (size_t i : puts) backend_->Put(bucket, items[i].key, items[i].value);
  }
  auto status = store_->Reload();
  RAFT_CHECK(status.ok()) << "server " << config_.id << ": snapshot store: " << status.message();
  // Live watchers skipped the revisions the snapshot brought: replay them (etcd
  // watchableStore.Restore).
  hub_->Resync();
  status = LoadLocalState();
  RAFT_CHECK(status.ok()) << "server " << config_.id << ": snapshot state: " << status.message();
  if (lessor_.is_primary()) lessor_.Promote(now_ms(), 0);
  applied_index_ = snapshot.metadata.index;
  applied_term_ = snapshot.metadata.term;
  snapshot_index_ = snapshot.metadata.index;
  conf_state_ = snapshot.metadata.conf_state;
  status = store_->Commit(applied_index_);
  if (!status.ok()) StorageFailed(status);
  // Proposals this member appended at or below the snapshot may or may not be in it: their
  // outcome is unknown, not "replaced".
  for (auto it = pending_by_index_.begin();
       it != pending_by_index_.end() && it->first <= snapshot.metadata.index;) {
    const RequestId id = it->second;
    it = pending_by_index_.erase(it);
    if (auto p = pending_.find(id); p != pending_.end()) p->second.index = 0;
    CODE_PROBE(server, snapshot_outcome_unknown);
    FailPending(id, Error(ErrorCode::kTimeout,
                          absl::StrCat("outcome unknown: this member caught up by a snapshot at ",
                                       snapshot.metadata.index)));
  }
}

void Server::Impl::OnLeadershipChange(bool leader) {
  if (leader) {
    // etcd: a new leader restarts every lease's TTL from now, plus an election timeout, so the
    // change of leader never expires a lease early.
    lessor_.Promote(now_ms(), static_cast<int64_t>(config_.election_tick) * config_.tick_ms);
  } else {
    lessor_.Demote();
    revoking_.clear();
  }
  // Reads waiting for a read index from the old leader will never get one.
  std::vector<RequestId> reads;
  for (const auto& [id, pending] : pending_) {
    if (pending.is_read() && !pending.has_read_index) reads.push_back(id);
  }
  for (RequestId id : reads) {
    CODE_PROBE(server, read_failed_by_leader_change);
    FailPending(id, Error(ErrorCode::kLeadershipChanged, "leader changed during a read"));
  }
  // GetReady has issued every waiting read already: only the batches out are left to drop.
  read_batches_.clear();
}

void Server::Impl::AnswerMoves(raft::NodeId leader) {
  for (auto it = moves_.begin(); it != moves_.end();) {
    if (it->second.transferee != leader) {
      ++it;
      continue;
    }
    Respond(it->first, RequestType::kMoveLeader, absl::OkStatus());
    it = moves_.erase(it);
  }
}

// ---------------------------------------------------------------------------------------------
// Ticks and the Ready cycle

void Server::Impl::Tick() {
  RAFT_CHECK(!ready_outstanding_) << "server " << config_.id << ": Tick before Advance";
  raft_->Tick();
  ++ticks_;
  std::vector<RequestId> expired;
  for (const auto& [id, pending] : pending_) {
    if (pending.deadline_tick <= ticks_) expired.push_back(id);
  }
  for (RequestId id : expired) {
    FailPending(id, Error(ErrorCode::kTimeout, "request timed out; its outcome is unknown"));
  }
  // A ReadIndex unanswered for the request timeout (lost on the way to the leader) has no reads
  // left waiting for it.
  for (auto it = read_batches_.begin(); it != read_batches_.end();) {
    if (it->second.issued_tick + config_.request_timeout_ticks < ticks_) {
      it = read_batches_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = moves_.begin(); it != moves_.end();) {
    if (it->second.deadline_tick > ticks_) {
      ++it;
      continue;
    }
    Respond(it->first, RequestType::kMoveLeader,
            Error(ErrorCode::kLeaderTransferTimeout,
                  absl::StrCat("etcdserver: request timed out, leader transfer took too long (",
                               absl::Hex(it->second.transferee), " did not lead within ",
                               config_.request_timeout_ticks, " ticks)")));
    it = moves_.erase(it);
  }
  tokens_.Expire(ticks_, kMaxTokenExpiriesPerTick);
  if (!raft_->IsLeader()) return;
  for (lease::LeaseId id : lessor_.Expired(now_ms(), kMaxLeaseRevocationsPerTick)) {
    auto it = revoking_.find(id);
    if (it != revoking_.end() && it->second > ticks_) continue;  // already proposed
    pb::InternalRequest internal;
    internal.mutable_lease_revoke()->set_id(id);
    internal.set_proposed_at_ms(now_ms());
    internal.set_system(true);
    if (raft_->Propose(raft::Bytes(internal.SerializeAsString())).ok()) {
      CODE_PROBE(lease, expiry_revoke_proposed);
      revoking_[id] = ticks_ + config_.request_timeout_ticks;
    }
  }
}

bool Server::Impl::HasReady() const {
  if (ready_outstanding_) return false;
  if (raft_->HasReady() || !responses_.empty() || hub_->HasResponses() || hub_->HasLagging()) {
    return true;
  }
  if (!reads_waiting_.empty()) return true;
  if (indexed_reads_ == 0) return false;
  for (const auto& [id, pending] : pending_) {
    if (Servable(pending)) return true;
  }
  return false;
}

const Ready& Server::Impl::GetReady() {
  RAFT_CHECK(!ready_outstanding_) << "server " << config_.id << ": GetReady before Advance";
  ready_outstanding_ = true;
  IssueReads();
  const raft::Ready& rr = raft_->GetReady();
  if (rr.soft_state.has_value()) {
    const bool leader = rr.soft_state->role == raft::Role::kLeader;
    if (leader != was_leader_ || !leader) OnLeadershipChange(leader);
    was_leader_ = leader;
    if (!moves_.empty()) AnswerMoves(rr.soft_state->leader);
  }
  if (rr.apply_snapshot != nullptr) RestoreSnapshot(*rr.apply_snapshot);
  for (const raft::Entry& entry : rr.committed_entries) {
    // A backend found to have lost a record: apply and commit nothing more (the member stops).
    if (backend_lost_) break;
    Apply(entry);
  }
  if (!rr.committed_entries.empty() && !backend_lost_) {
    auto status = store_->Commit(applied_index_);
    if (!status.ok()) StorageFailed(status);
  }
  for (const raft::ReadState& read : rr.read_states) {
    absl::string_view context = read.context.view();
    uint64_t member = 0, id = 0;
    if (!GetFixed64BigEndian(&context, &member) || !GetFixed64BigEndian(&context, &id) ||
        member != config_.id) {
      continue;
    }
    auto batch = read_batches_.find(id);
    if (batch == read_batches_.end()) continue;
    for (RequestId read_id : batch->second.reads) {
      auto it = pending_.find(read_id);
      if (it == pending_.end() || !it->second.is_read() || it->second.has_read_index) continue;
      ++indexed_reads_;
      it->second.has_read_index = true;
      it->second.read_index = read.index;
    }
    read_batches_.erase(batch);
  }
  std::vector<RequestId> ready_reads;
  for (auto it = pending_.begin(); indexed_reads_ > ready_reads.size() && it != pending_.end();
       ++it) {
    if (Servable(it->second)) ready_reads.push_back(it->first);
  }
  for (RequestId id : ready_reads) {
    Pending pending = std::move(pending_.at(id));
    pending_.erase(id);
    --indexed_reads_;
    ServeRead(id, *pending.read);
  }
  if (raft_->SendsSnapshot()) {
    // The snapshots this member hands Raft (see Advance) carry no data: the backend is the state
    // machine and is durable by itself. A follower that needs one gets the current state instead,
    // at the applied index (etcd's merged snapshot); it applies the entries that follow.
    std::shared_ptr<raft::Snapshot> merged = SnapshotMark();
    merged->data = raft::Bytes(DumpBackend());
    const absl::Status status = raft_->ReplaceOutgoingSnapshots(std::move(merged));
    RAFT_CHECK(status.ok()) << "server " << config_.id << ": snapshot at applied index "
                            << applied_index_ << ": " << status.message();
  }
  hub_->CatchUp(config_.watch_catch_up_batch_events);
  ready_.raft = &rr;
  ready_.storage_failure = storage_failure_;
  ready_.responses = std::move(responses_);
  responses_.clear();
  ready_.watch_responses = hub_->TakeResponses();
  return ready_;
}

void Server::Impl::Advance() {
  RAFT_CHECK(ready_outstanding_) << "server " << config_.id << ": Advance without GetReady";
  raft_->Advance();
  ready_outstanding_ = false;
  ready_.raft = nullptr;
  ready_.responses.clear();
  ready_.watch_responses.clear();
  // A write applied past this member's quota raises its NOSPACE alarm (etcd's
  // applyEntryNormal); proposals from followers are forwarded.
  if (nospace_at_apply_) {
    nospace_at_apply_ = false;
    if (!AlarmActive()) ProposeNoSpaceAlarm(NextRequestId());
  }
  // Snapshot and compact the Raft log every snapshot_every_entries applied entries, and after
  // every membership change so a new member is sent a snapshot that lists it. The snapshot is
  // only a mark (index, term, configuration): its data would be the whole backend, which is
  // durable already, and copying it every few thousand entries would cost more than the log it
  // frees. GetReady attaches the state to the snapshots actually sent.
  if (applied_index_ >= snapshot_index_ + config_.snapshot_every_entries ||
      (conf_changed_since_snapshot_ && applied_index_ > snapshot_index_)) {
    std::shared_ptr<raft::Snapshot> snapshot = SnapshotMark();
    const raft::Status status = raft_->GetStatus();
    raft::Index compact = applied_index_ > config_.snapshot_catch_up_entries
                              ? applied_index_ - config_.snapshot_catch_up_entries
                              : 0;
    compact = std::min(compact, status.persisted_index);
    if (raft_->Compact(snapshot, compact).ok()) {
      snapshot_index_ = applied_index_;
      conf_changed_since_snapshot_ = false;
    }
  }
}

std::vector<Member> Server::Impl::Members() const {
  std::vector<Member> out;
  for (const auto& [id, member] : members_) out.push_back(member);
  return out;
}

uint64_t QuotaCostBytes(const Request& request) {
  switch (request.type) {
    case RequestType::kPut:
      return PutCost(request.put);
    case RequestType::kTxn:
      return TxnCost(request.txn);
    case RequestType::kLeaseGrant:
      return kQuotaLeaseOverheadBytes;
    default:
      return 0;
  }
}

std::vector<Alarm> Server::Impl::Alarms() const {
  std::vector<Alarm> out;
  for (const auto& [member, type] : alarms_) out.push_back(Alarm{member, type});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Server

raft::RestartState BootstrapState(const std::vector<Member>& members) {
  std::vector<raft::NodeId> voters, learners;
  for (const Member& member : members) {
    (member.is_learner ? learners : voters).push_back(member.id);
  }
  raft::RestartState state = raft::BootstrapState(voters, learners);
  for (raft::Entry& entry : state.entries) {
    auto change = raft::DecodeConfChange(entry.data.view());
    RAFT_CHECK(change.ok() && change->changes.size() == 1)
        << "bootstrap entry " << entry.index << " is not a single conf change";
    for (const Member& member : members) {
      if (member.id != change->changes[0].node_id) continue;
      pb::MemberChange context;
      ToProto(member, context.mutable_member());
      change->context = context.SerializeAsString();
    }
    entry.data = raft::Bytes(raft::EncodeConfChange(*change));
  }
  return state;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerConfig& config,
                                                       mvcc::Backend* backend,
                                                       raft::RestartState raft_state,
                                                       std::vector<Member> founding_members) {
  if (backend == nullptr) return absl::InvalidArgumentError("server: no backend");
  if (config.tick_ms <= 0) return absl::InvalidArgumentError("server: tick_ms must be positive");
  if (config.request_timeout_ticks <= 0) {
    return absl::InvalidArgumentError("server: request_timeout_ticks must be positive");
  }
  auto impl = std::make_unique<Impl>(config, backend);
  if (auto status = impl->Init(std::move(raft_state), std::move(founding_members)); !status.ok()) {
    return status;
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

RequestId Server::Submit(Request request) { return impl_->Submit(std::move(request)); }
absl::StatusOr<mvcc::WatchId> Server::Watch(const mvcc::WatchRequest& request,
                                            const std::string& token,
                                            const std::string& cert_user) {
  return impl_->Watch(request, token, cert_user);
}
absl::Status Server::CancelWatch(mvcc::WatchId id) { return impl_->CancelWatch(id); }
absl::Status Server::SetWatchReading(mvcc::WatchId id, bool reading) {
  return impl_->SetWatchReading(id, reading);
}
void Server::RequestWatchProgress() { impl_->RequestWatchProgress(); }
void Server::NotifyWatchProgress() { impl_->NotifyWatchProgress(); }
absl::Status Server::Step(raft::Message message) { return impl_->Step(std::move(message)); }
void Server::Tick() { impl_->Tick(); }
void Server::ReportSnapshot(raft::NodeId peer, bool succeeded) {
  impl_->raft().ReportSnapshot(peer, succeeded);
}
void Server::ReportUnreachable(raft::NodeId peer) { impl_->raft().ReportUnreachable(peer); }
bool Server::HasReady() const { return impl_->HasReady(); }
const Ready& Server::GetReady() { return impl_->GetReady(); }
void Server::Advance() { impl_->Advance(); }
void Server::OnPersisted(uint64_t id) { impl_->OnPersisted(id); }
raft::Status Server::RaftStatus() const { return impl_->RaftStatus(); }
raft::NodeId Server::id() const { return impl_->id(); }
bool Server::is_leader() const { return impl_->is_leader(); }
const mvcc::Store& Server::store() const { return impl_->store(); }
const lease::Lessor& Server::lessor() const { return impl_->lessor(); }
const auth::AuthStore& Server::auth_store() const { return impl_->auth_store(); }
std::vector<Member> Server::Members() const { return impl_->Members(); }
std::vector<Alarm> Server::Alarms() const { return impl_->Alarms(); }
raft::Index Server::applied_index() const { return impl_->applied_index(); }
raft::HardState Server::hard_state() const { return impl_->hard_state(); }
raft::Index Server::last_index() const { return impl_->last_index(); }
std::optional<raft::Term> Server::LogTerm(raft::Index index) const { return impl_->LogTerm(index); }
raft::ConfState Server::RaftConfState() const { return impl_->RaftConfState(); }
bool Server::RaftConfStateIs(const raft::ConfState& cs) const { return impl_->RaftConfStateIs(cs); }
uint64_t Server::RaftConfigEpoch() const { return impl_->RaftConfigEpoch(); }
raft::SoftState Server::soft_state() const { return impl_->raft_soft_state(); }
raft::NodeId Server::lead_transferee() const { return impl_->lead_transferee(); }
const Member* Server::FindMember(raft::NodeId id) const { return impl_->FindMember(id); }
bool Server::IsMemberRemoved(raft::NodeId id) const { return impl_->IsMemberRemoved(id); }

}  // namespace kvstore::server
