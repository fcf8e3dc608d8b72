@0xdad9a0ef350f3dca;
# The native client API (net/README.md): etcd v3's KV, Watch, Lease, Cluster and Maintenance
# services in Cap'n Proto. Errors are results, not exceptions: every reply carries a Status whose
# code is the stable name of core/base/errors.h (etcd's), so a client tells NO_LEADER from
# COMPACTED without parsing text. Exceptions mean a broken connection.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("kvstore::net::rpc");

struct Status {
  code @0 :Text;      # "OK", "NO_LEADER", "COMPACTED", ... (ErrorCodeName)
  message @1 :Text;
}

struct Header {
  memberId @0 :UInt64;
  revision @1 :Int64;
  raftTerm @2 :UInt64;
}

struct KeyValue {
  key @0 :Data;
  createRevision @1 :Int64;
  modRevision @2 :Int64;
  version @3 :Int64;
  value @4 :Data;
  lease @5 :Int64;
}

struct RangeRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  limit @2 :Int64;
  revision @3 :Int64;
  sortOrder @4 :UInt8;     # mvcc::SortOrder
  sortTarget @5 :UInt8;    # mvcc::SortTarget
  serializable @6 :Bool;
  keysOnly @7 :Bool;
  countOnly @8 :Bool;
  minModRevision @9 :Int64;
  maxModRevision @10 :Int64;
  minCreateRevision @11 :Int64;
  maxCreateRevision @12 :Int64;
}

struct RangeResponse {
  kvs @0 :List(KeyValue);
  more @1 :Bool;
  count @2 :Int64;
}

struct PutRequest {
  key @0 :Data;
  value @1 :Data;
  lease @2 :Int64;
  prevKv @3 :Bool;
  ignoreValue @4 :Bool;
  ignoreLease @5 :Bool;
}

struct PutResponse {
  prevKv @0 :KeyValue;
  hasPrevKv @1 :Bool;
}

struct DeleteRangeRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  prevKv @2 :Bool;
}

struct DeleteRangeResponse {
  deleted @0 :Int64;
  prevKvs @1 :List(KeyValue);
}

struct Compare {
  result @0 :UInt8;    # mvcc::Compare::Result
  target @1 :UInt8;    # mvcc::Compare::Target
  key @2 :Data;
  rangeEnd @3 :Data;
  number @4 :Int64;
  value @5 :Data;
}

struct RequestOp {
  union {
    range @0 :RangeRequest;
    put @1 :PutRequest;
    deleteRange @2 :DeleteRangeRequest;
    txn @3 :TxnRequest;
  }
}

struct TxnRequest {
  compare @0 :List(Compare);
  success @1 :List(RequestOp);
  failure @2 :List(RequestOp);
}

struct ResponseOp {
  union {
    range @0 :RangeResponse;
    put @1 :PutResponse;
    deleteRange @2 :DeleteRangeResponse;
    txn @3 :TxnResponse;
  }
}

struct TxnResponse {
  succeeded @0 :Bool;
  responses @1 :List(ResponseOp);
}

interface Kv {
  range @0 (request :RangeRequest, token :Text) -> (status :Status, header :Header, response :RangeResponse);
  put @1 (request :PutRequest, token :Text) -> (status :Status, header :Header, response :PutResponse);
  deleteRange @2 (request :DeleteRangeRequest, token :Text)
      -> (status :Status, header :Header, response :DeleteRangeResponse);
  txn @3 (request :TxnRequest, token :Text) -> (status :Status, header :Header, response :TxnResponse);
  compact @4 (revision :Int64, token :Text) -> (status :Status, header :Header);
}

struct Event {
  type @0 :UInt8;      # mvcc::Event::Type
  kv @1 :KeyValue;
  prevKv @2 :KeyValue;
  hasPrevKv @3 :Bool;
}

struct WatchRequest {
  key @0 :Data;
  rangeEnd @1 :Data;
  startRevision @2 :Int64;
  noPut @3 :Bool;
  noDelete @4 :Bool;
  prevKv @5 :Bool;
  progressNotify @6 :Bool;
}

struct WatchResponse {
  watchId @0 :Int64;
  headerRevision @1 :Int64;
  events @2 :List(Event);
  created @3 :Bool;
  canceled @4 :Bool;
  compactRevision @5 :Int64;
  cancelReason @6 :Text;
  progress @7 :Bool;
}

# The client's side of a watch stream: the server calls it with each response, in order, and
# waits for each call to return before the next (flow control: a slow watcher is bounded by the
# server's buffer, then canceled as etcd cancels a slow watcher).
interface Watcher {
  deliver @0 (response :WatchResponse) -> stream;
}

interface WatchHandle {
  cancel @0 () -> (status :Status);
  requestProgress @1 () -> ();
}

interface Watch {
  # `token`: the caller's, as every other method's; the watch is checked when it is created.
  watch @0 (request :WatchRequest, watcher :Watcher, token :Text) -> (status :Status, handle :WatchHandle);
}

struct LeaseInfo {
  id @0 :Int64;
  grantedTtlSeconds @1 :Int64;
  remainingTtlSeconds @2 :Int64;
  keys @3 :List(Data);
}

interface KeepAlive {
  # One renewal; the reply carries the new TTL (0: the lease is gone).
  keepAlive @0 () -> (status :Status, header :Header, ttlSeconds :Int64);
}

interface Lease {
  grant @0 (ttlSeconds :Int64, id :Int64, token :Text) -> (status :Status, header :Header, lease :LeaseInfo);
  revoke @1 (id :Int64, token :Text) -> (status :Status, header :Header);
  keepAlive @2 (id :Int64) -> (status :Status, stream :KeepAlive);
  timeToLive @3 (id :Int64, keys :Bool, token :Text) -> (status :Status, header :Header, lease :LeaseInfo);
  leases @4 (token :Text) -> (status :Status, header :Header, ids :List(Int64));
}

struct Member {
  id @0 :UInt64;
  name @1 :Text;
  peerUrls @2 :List(Text);
  clientUrls @3 :List(Text);
  isLearner @4 :Bool;
}

interface Cluster {
  memberList @0 (token :Text) -> (status :Status, header :Header, members :List(Member));
  memberAdd @1 (peerUrls :List(Text), isLearner :Bool, token :Text)
      -> (status :Status, header :Header, member :Member, members :List(Member));
  memberRemove @2 (id :UInt64, token :Text) -> (status :Status, header :Header, members :List(Member));
  memberPromote @3 (id :UInt64, token :Text) -> (status :Status, header :Header, members :List(Member));
  # Not in etcd: member `id` out and a new member with `peerUrls` in, in one joint configuration
  # change (answered once it is left); `member` is the new one, unnamed until it publishes.
  memberReplace @4 (id :UInt64, peerUrls :List(Text), token :Text)
      -> (status :Status, header :Header, member :Member, members :List(Member));
  # etcd's MemberUpdate: new peer URLs for member `id`.
  memberUpdate @5 (id :UInt64, peerUrls :List(Text), token :Text)
      -> (status :Status, header :Header, members :List(Member));
}

struct Alarm {
  memberId @0 :UInt64;
  type @1 :UInt8;      # server::AlarmType
}

struct MemberStatus {
  version @0 :Text;
  dbSizeBytes @1 :Int64;
  leader @2 :UInt64;
  raftIndex @3 :UInt64;
  raftTerm @4 :UInt64;
  raftAppliedIndex @5 :UInt64;
  isLearner @6 :Bool;
  errors @7 :List(Text);
}

interface SnapshotStream {
  # The next chunk of the backend snapshot; empty when done (then `crc32c` checks it all).
  next @0 () -> (chunk :Data, done :Bool, crc32c :UInt32);
}

interface Maintenance {
  status @0 () -> (status :Status, header :Header, member :MemberStatus);
  hash @1 (revision :Int64, token :Text)
      -> (status :Status, header :Header, hash :UInt64, compactRevision :Int64);
  defragment @2 (token :Text) -> (status :Status, header :Header);
  alarmList @3 (token :Text) -> (status :Status, header :Header, alarms :List(Alarm));
  alarmDisarm @4 (token :Text) -> (status :Status, header :Header, alarms :List(Alarm));
  snapshot @5 (token :Text) -> (status :Status, stream :SnapshotStream);
  # `token`: root only while auth is enabled, as etcd's Snapshot (an admin operation).
  moveLeader @6 (targetId :UInt64, token :Text) -> (status :Status, header :Header);
}

# Auth (etcd's Auth service). `token` (every method's last parameter above too) is what
# authenticate returned; empty: none. While auth is enabled the member checks every request
# against the token's user.
struct Permission {
  permType @0 :UInt8;    # auth::PermissionType: 0 read, 1 write, 2 readwrite
  key @1 :Data;
  rangeEnd @2 :Data;
}

struct AuthRequest {
  type @0 :UInt8;        # server::RequestType, kAuthEnable .. kRoleList
  name @1 :Text;         # user
  password @2 :Text;
  role @3 :Text;
  permission @4 :Permission;
}

struct AuthResponse {
  token @0 :Text;                     # authenticate
  roles @1 :List(Text);               # userGet: the user's roles
  permissions @2 :List(Permission);   # roleGet
  names @3 :List(Text);               # userList, roleList
  user @4 :Text;                      # userGet
  role @5 :Text;                      # roleGet
}

interface Auth {
  call @0 (request :AuthRequest, token :Text)
      -> (status :Status, header :Header, response :AuthResponse);
}

# What a client connection bootstraps: every service of the member (its client URL).
interface Endpoint {
  kv @0 () -> (kv :Kv);
  watch @1 () -> (watch :Watch);
  lease @2 () -> (lease :Lease);
  cluster @3 () -> (cluster :Cluster);
  maintenance @4 () -> (maintenance :Maintenance);
  auth @5 () -> (auth :Auth);
}
