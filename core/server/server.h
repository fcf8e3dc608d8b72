#ifndef KVSTORE_CORE_SERVER_SERVER_H_
#define KVSTORE_CORE_SERVER_SERVER_H_

// The replicated server core: everything etcd's v3 server decides, pure. It owns one Raft node,
// the MVCC store, the watchers and the leases, and turns client requests into proposals,
// applies committed entries deterministically and answers.
//
//   Submit(request)  -> a RequestId; the Response comes out of a later Ready (or the next one,
//                       for requests refused or served locally).
//   Step / Tick      -> peer messages and logical time.
//   GetReady         -> what to persist and send (Raft's), the responses, the watch responses.
//                       Committed entries are applied inside GetReady: they are already
//                       durable locally, and the backend commits them with their index.
//   Advance / OnPersisted, exactly as for raft::RawNode.
//
// Reads: linearizable ranges wait for a ReadIndex and for the applied index to reach it
// (Raft thesis §6.4); serializable ranges are served from local state at once.
// Writes: validated (sizes, ops, alarm), proposed, answered when applied. A write whose entry
// is replaced by another after a leader change answers LEADERSHIP_CHANGED; one that neither
// applies nor fails within request_timeout_ticks answers TIMEOUT (its outcome is unknown).
// Leases: grants and revocations go through the log; the leader expires leases from its ticks
// and proposes their revocation; keep-alives are served by the leader only.
// Membership: add voter / learner, promote (refused until the learner has 90% of the leader's
// log), remove, replace (one joint change: the new member in, the old one out), update a
// member's peer URLs, list; at most max_learners learners. A member leaves the list when it
// leaves the Raft configuration: one replaced stays (an outgoing voter) until the joint
// configuration is left.
// Quota (etcd 3.4's backendQuota): a write that adds data (a put, a txn with puts, a lease grant)
// is refused NOSPACE when this member's backend size plus the write's cost (QuotaCostBytes)
// reaches quota_bytes, before any other check of the request (etcd's quotaKVServer), and the
// member raises its NOSPACE alarm through the log (etcd's quotaAlarmer; not for a request whose
// token is refused). A write that passed that check but no longer fits when it applies is
// applied (every member applies the same log) yet answered NOSPACE, and the applying member
// raises its alarm then (etcd's quotaApplierV3 and applyEntryNormal), unless a NOSPACE alarm is
// active already: a NOSPACE answer does not say that nothing was written. Nothing else
// raises it: after a disarm the alarm stays clear until a write is refused again. While any
// member's NOSPACE alarm is active, writes that would add data are refused; reads, deletes and
// compaction still work; AlarmDisarm after compaction and defragmentation restores writes.
// Auth (etcd's, core/auth): users, roles and permissions change through the log and live in the
// backend. While enabled, a request's token names its user: reads are checked when served,
// writes when their entry applies (against the auth state at that point of the log; a request
// whose token was resolved at an older auth revision is refused, ErrAuthOldRevision), watches
// when created, member and maintenance operations need the root role (not the alarm requests,
// open to any caller as in etcd 3.4).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/auth/auth_store.h"
#include "core/auth/tokens.h"
#include "core/lease/lessor.h"
#include "core/mvcc/backend.h"
#include "core/mvcc/store.h"
#include "core/mvcc/watch.h"
#include "core/raft/raft.h"

namespace kvstore::server {

using RequestId = uint64_t;

// Named limits (etcd's defaults).
inline constexpr uint64_t kDefaultQuotaBytes = uint64_t{2} << 30;       // 2 GiB
inline constexpr uint64_t kDefaultMaxRequestBytes = 3 * (1 << 20) / 2;  // 1.5 MiB
inline constexpr size_t kDefaultMaxTxnOps = 128;
inline constexpr size_t kDefaultMaxLearners = 1;
inline constexpr uint64_t kMaxKeyBytes = 1 << 16;  // larger keys are refused (KEY_TOO_LARGE)
// A learner may be promoted once its match index is at least this fraction of the leader's.
inline constexpr double kLearnerReadyRatio = 0.9;
// Bytes of committed entries one Ready applies at most (etcd's effective bound: its raft
// defaults MaxCommittedSizePerReady to MaxSizePerMsg, 1 MiB). Each Ready's entries are one
// backend batch, whose cost grows with it (the LMDB backend keeps an undo record per write
// until the batch commits): unbounded, a restart replaying 100,000 entries applied them all in
// one batch.
inline constexpr uint64_t kDefaultMaxCommittedSizePerReadyBytes = 1 << 20;
// Committed entries that may wait to apply before proposals are refused TOO_MANY_REQUESTS
// (etcd's maxGapBetweenApplyAndCommitIndex).
inline constexpr uint64_t kMaxAppliedLagEntries = 5000;

// Identity, limits and Raft settings of one member.
struct ServerConfig {
  raft::NodeId id = raft::kNoNode;
  int election_tick = 10;
  int heartbeat_tick = 1;
  int64_t tick_ms = 100;  // logical milliseconds per tick (lease TTLs are in seconds)
  uint64_t random_seed = 0;
  bool pre_vote = true;
  bool check_quorum = true;
  // Linearizable reads on the leader's lease instead of a heartbeat round per read
  // (raft::ReadOnlyOption::kLeaseBased; etcd's default is off, and so is ours). Correct only
  // while every member has it, check_quorum is on, tick rates stay within
  // raft::kLeaseMaxTickRateRatio of each other and no process pauses; otherwise reads may be
  // stale.
  bool lease_reads = false;
  uint64_t quota_bytes = kDefaultQuotaBytes;
  uint64_t max_request_bytes = kDefaultMaxRequestBytes;
  size_t max_txn_ops = kDefaultMaxTxnOps;
  size_t max_learners = kDefaultMaxLearners;
  int64_t min_lease_ttl_seconds = 5;
  int request_timeout_ticks = 50;
  // Entries applied between two Raft log compactions; entries kept after one for followers
  // that are slightly behind. A compaction records only (index, term, configuration): the
  // backend is the durable state machine. A follower that needs a snapshot is sent the whole
  // backend at the leader's applied index when it is sent (etcd's merged snapshot).
  uint64_t snapshot_every_entries = 10000;
  uint64_t snapshot_catch_up_entries = 5000;
  // raft::Config::max_committed_size_per_ready_bytes: at least one entry per Ready.
  uint64_t max_committed_size_per_ready_bytes = kDefaultMaxCommittedSizePerReadyBytes;
  // raft::Config's flow control: largest append payload, appends in flight per follower.
  uint64_t max_size_per_msg_bytes = raft::kDefaultMaxSizePerMsgBytes;
  uint64_t max_inflight_msgs = raft::kDefaultMaxInflightMsgs;
  // The watch hub (mvcc::WatchHub): events buffered for a watcher whose reader is not taking
  // them before it turns lagging, and events one catch-up pass replays.
  size_t watch_max_buffered_events = mvcc::kDefaultMaxBufferedEventsPerWatcher;
  size_t watch_catch_up_batch_events = mvcc::kDefaultCatchUpBatchEvents;
  // Auth: bcrypt cost of the password hashes this member makes (etcd: 10; tests use 4), and
  // the TTL of simple tokens (etcd --auth-token-ttl, 300 s), in seconds of logical time.
  int password_hash_cost = 10;
  int64_t auth_token_ttl_seconds = 300;
  // etcd's --auth-token=jwt: a stateless provider (net/jwt.h) issues and verifies tokens in
  // place of the simple tokens; null: simple tokens. Shared by copies of this config.
  std::shared_ptr<auth::TokenProvider> token_provider;
};

// A member of the cluster as membership requests list it.
struct Member {
  raft::NodeId id = raft::kNoNode;
  std::string name;
  std::vector<std::string> peer_urls;
  bool is_learner = false;
  // Published by the member itself once it runs (kMemberPublish); empty until then, and a
  // member without a name is "unstarted" to etcdctl.
  std::vector<std::string> client_urls;
};

// Alarms are replicated state: raised and cleared through the log (etcd AlarmMember).
enum class AlarmType : uint8_t { kNoSpace = 1 };

struct Alarm {
  raft::NodeId member_id = raft::kNoNode;
  AlarmType type = AlarmType::kNoSpace;
};

// What a client request asks for; each names the Request fields it reads.
enum class RequestType : uint8_t {
  kRange,
  kPut,
  kDeleteRange,
  kTxn,
  kCompact,
  kLeaseGrant,
  kLeaseRevoke,
  kLeaseKeepAlive,
  kLeaseTimeToLive,
  kLeaseLeases,
  kMemberList,
  kMemberAdd,      // member.peer_urls, member.name, member.is_learner; id chosen by the server
  kMemberPromote,  // member.id
  kMemberRemove,   // member.id
  kAlarmList,
  kAlarmDisarm,  // clears the NOSPACE alarm of alarm_member (unset: of every member)
  kHash,         // hash of the store at `revision` (0: current), served locally
  kDefragment,   // local: returns free space to the backend
  // member.id: hand leadership to this voter (leader only; etcd MoveLeader). Answered once this
  // member sees the transferee lead; LEADER_TRANSFER_TIMEOUT if it does not within
  // request_timeout_ticks; MEMBER_NOT_FOUND (etcd's bad leader transferee) for a transferee that
  // is not a voting member.
  kMoveLeader,
  // Auth (etcd's Auth service), all through the log. Admin (root role) only, except
  // kAuthenticate, and kUserGet / kRoleGet of the caller's own user / roles.
  kAuthEnable,
  kAuthDisable,
  kAuthenticate,          // auth.name, auth.password -> Response::token
  kUserAdd,               // auth.name, auth.password
  kUserDelete,            // auth.name
  kUserChangePassword,    // auth.name, auth.password
  kUserGrantRole,         // auth.name, auth.role
  kUserRevokeRole,        // auth.name, auth.role
  kUserGet,               // auth.name -> Response::user
  kUserList,              // -> Response::names
  kRoleAdd,               // auth.role
  kRoleDelete,            // auth.role
  kRoleGrantPermission,   // auth.role, auth.permission
  kRoleRevokePermission,  // auth.role, auth.permission.key / range_end
  kRoleGet,               // auth.role -> Response::role
  kRoleList,              // -> Response::names
  // member.id, member.name, member.client_urls: a member publishes its own attributes through
  // the log (the member library does it once a leader is known; not a client request).
  kMemberPublish,
  // member.id: the member to replace; member.name, member.peer_urls: the new member, which takes
  // the old one's role (voter or learner) and gets an id chosen by the server. One joint
  // configuration change (Raft thesis §4.3) with automatic leave: answered once it is left.
  kMemberReplace,
  kMemberUpdate,  // member.id, member.peer_urls (etcd MemberUpdate)
  // Raises the NOSPACE alarm of alarm_member (unset: this member) through the log, as etcd's
  // Maintenance.Alarm ACTIVATE does; answered with that alarm. Open to every caller whose token
  // is valid, as etcd 3.4's Alarm (list and disarm too): no admin check.
  kAlarmActivate,
};

// The fields of auth requests.
struct AuthRequest {
  std::string name;      // user
  std::string password;  // hashed by the proposing member; only the hash enters the log
  std::string role;
  auth::Permission permission;
  // Random bytes from the driver (at least auth::kSaltBytes) for the password's salt and the
  // token's letters. Empty: derived from the member's seed and the request id, deterministic
  // (tests, the simulator); a production node supplies them from the system's random source.
  std::string entropy;
};

// A client request. Only the fields its type names are read.
struct Request {
  RequestType type = RequestType::kRange;
  mvcc::RangeRequest range;
  mvcc::PutRequest put;
  mvcc::DeleteRangeRequest delete_range;
  mvcc::TxnRequest txn;
  mvcc::Revision revision = 0;  // kCompact, kHash
  lease::LeaseId lease_id = lease::kNoLease;
  int64_t ttl_seconds = 0;
  Member member;
  AuthRequest auth;
  // The caller's token from kAuthenticate (empty: none). While auth is enabled every request is
  // checked against the token's user (see AuthStore); a token that is unknown or expired is
  // refused (INVALID_AUTH_TOKEN).
  std::string token;
  // The user a transport authenticated by a verified client certificate (its common name), used
  // when `token` is empty, as etcd's AuthInfoFromTLS does under --client-cert-auth. Empty: none.
  std::string cert_user;
  // Refused unless the caller may do admin operations (the root role while auth is enabled;
  // etcd's IsAdminPermitted), whatever the type. A transport sets it on a local request (an
  // alarm list) to check the right to something the core does not serve, such as etcd's
  // Maintenance.Snapshot.
  bool require_admin = false;
  // kAlarmActivate, kAlarmDisarm: the member whose alarm is raised or cleared (etcd's
  // AlarmRequest.MemberID; any id, 0 included, as etcd takes it).
  std::optional<raft::NodeId> alarm_member;
};

// etcd 3.4's backendQuota.Cost: what a request is expected to add to the backend. A put costs
// kQuotaKvOverheadBytes plus its key and value; a txn the larger of its branches' top-level puts
// (nested txns count nothing, as in etcd); a lease grant kQuotaLeaseOverheadBytes; anything
// else 0. A request of cost 0 always passes the quota check.
// What the message of a NOSPACE answer holds when the write applied past the quota (etcd
// answers it NOSPACE all the same), against a refusal that wrote nothing. etcd's clients cannot
// tell them apart; a driver that must know what was written (the simulator's histories) can.
inline constexpr char kAppliedPastQuota[] = "applied past the quota";
inline constexpr uint64_t kQuotaKvOverheadBytes = 256;
inline constexpr uint64_t kQuotaLeaseOverheadBytes = 64;
uint64_t QuotaCostBytes(const Request& request);

// Where and when a response was produced (etcd ResponseHeader).
struct ResponseHeader {
  raft::NodeId member_id = raft::kNoNode;
  mvcc::Revision revision = 0;
  raft::Term raft_term = 0;
  // The auth revision when the response was produced: for a request that was checked, the auth
  // state it was checked against (a write: at its apply; a read: when served). Not in etcd's
  // header; the simulator's auth checker reads it.
  uint64_t auth_revision = 0;
};

// The answer to one Request: a status and the fields its type fills.
struct Response {
  RequestId request_id = 0;
  RequestType type = RequestType::kRange;
  absl::Status status;  // CodeOf(status) gives the stable code
  ResponseHeader header;
  mvcc::RangeResponse range;
  mvcc::PutResponse put;
  mvcc::DeleteRangeResponse delete_range;
  mvcc::TxnResponse txn;
  mvcc::CompactResponse compact;
  mvcc::HashResponse hash;
  lease::LeaseInfo lease;
  std::vector<lease::LeaseId> leases;
  Member member;
  std::vector<Member> members;
  std::vector<Alarm> alarms;
  std::string token;               // kAuthenticate
  auth::User user;                 // kUserGet (no password hash)
  auth::Role role;                 // kRoleGet
  std::vector<std::string> names;  // kUserList, kRoleList
};

// Everything the driver must do after an event: Raft's effects, client responses and watch
// events. Carry it out, then call Advance.
struct Ready {
  // Raft's effects: persist, send, snapshot. Its committed entries have already been applied.
  const raft::Ready* raft = nullptr;
  // Not OK when the backend failed to commit what this member applied (a full disk, an I/O
  // error): its state on disk is behind its state in memory. The driver must stop the member
  // without carrying out this Ready (nothing of it may be sent or answered); a restart replays
  // the log from the backend's durable consistent index.
  absl::Status storage_failure;
  std::vector<Response> responses;
  std::vector<mvcc::WatchResponse> watch_responses;
};

// The initial Raft state of a founding member: raft::BootstrapState of the members, with each
// conf-change entry carrying its member (etcd's bootstrap conf changes carry the member as
// context), so a member that joins later and replays them records the same names and URLs.
raft::RestartState BootstrapState(const std::vector<Member>& members);

// The replicated server core of one member: client requests in, proposals through Raft,
// committed entries applied to the MVCC store and lessor, responses out. Pure: the driver
// feeds ticks, peer messages and storage acknowledgements, and carries out each Ready.
class Server {
 public:
  // `backend` (not owned) holds the MVCC data; `raft_state` is what the Raft log storage holds
  // (or BootstrapState for a founding member, whose `members` must then be given).
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerConfig& config,
                                                        mvcc::Backend* backend,
                                                        raft::RestartState raft_state,
                                                        std::vector<Member> founding_members = {});
  ~Server();

  RequestId Submit(Request request);
  // Watches are local to the member serving them (as in etcd). While auth is enabled a watch is
  // checked when it is created, against the user of `token`, else `cert_user` (as Request's
  // fields of those names): read permission on its range.
  absl::StatusOr<mvcc::WatchId> Watch(const mvcc::WatchRequest& request,
                                      const std::string& token = "",
                                      const std::string& cert_user = "");
  absl::Status CancelWatch(mvcc::WatchId id);
  // Flow control from a watch's client (mvcc::WatchHub::SetReading): while it does not read,
  // its responses stay buffered in the hub, up to the watch buffer, after which it lags and
  // later catches up from history (or is canceled if that was compacted).
  absl::Status SetWatchReading(mvcc::WatchId id, bool reading);
  void RequestWatchProgress();
  // etcd's periodic progress report to watchers created with progress_notify
  // (mvcc::WatchHub::NotifyProgress); the driver calls it every
  // --experimental-watch-progress-notify-interval.
  void NotifyWatchProgress();

  // A message from a removed member (IsMemberRemoved) is dropped and answered kMemberRemoved,
  // which the host hands back to its sender (rafthttp's 410 Gone), so that member stops.
  absl::Status Step(raft::Message message);
  void Tick();
  // From the peer transport (leader only; see raft::RawNode): a snapshot send to `peer`
  // finished, or `peer` could not be reached.
  void ReportSnapshot(raft::NodeId peer, bool succeeded);
  void ReportUnreachable(raft::NodeId peer);

  bool HasReady() const;
  const Ready& GetReady();
  void Advance();
  void OnPersisted(uint64_t id);

  // Introspection for tests, the simulator and status endpoints.
  raft::Status RaftStatus() const;
  raft::NodeId id() const;
  bool is_leader() const;
  const mvcc::Store& store() const;
  const lease::Lessor& lessor() const;
  const auth::AuthStore& auth_store() const;
  std::vector<Member> Members() const;
  std::vector<Alarm> Alarms() const;
  raft::Index applied_index() const;
  // Cheap views of the Raft state (RaftStatus copies the progress of every peer).
  raft::HardState hard_state() const;
  raft::Index last_index() const;
  // The term of log entry `index` (nullopt when compacted or not written).
  std::optional<raft::Term> LogTerm(raft::Index index) const;
  // The Raft configuration in force (RaftStatus().conf_state, cheaper).
  raft::ConfState RaftConfState() const;
  bool RaftConfStateIs(const raft::ConfState& cs) const;  // RaftConfState() == cs, cheaply
  // Changes whenever the Raft configuration may have changed (raft::RawNode::ConfigEpoch).
  uint64_t RaftConfigEpoch() const;
  // RaftStatus().soft_state and .lead_transferee, cheaply (drivers ask every tick).
  raft::SoftState soft_state() const;
  raft::NodeId lead_transferee() const;
  // Member `id` as Members() lists it, or nullptr, without copying every member; valid until
  // the next call that is not const.
  const Member* FindMember(raft::NodeId id) const;
  // Whether `id` left the Raft configuration (removed, or replaced and the joint configuration
  // left). Remembered durably and carried by snapshots; Step drops every message from such an
  // id (etcd's IsIDRemoved and rafthttp's 410 Gone), and it is never given to a new member.
  // IsMemberRemoved(id()): this member itself left; its driver stops it (node::Member).
  bool IsMemberRemoved(raft::NodeId id) const;

 private:
  class Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstore::server

#endif  // KVSTORE_CORE_SERVER_SERVER_H_
