@0xb56b9ac805729b90;
# The peer transport: Raft messages between members (net/README.md). One Peer capability per
# member; a sender batches the messages of one loop turn into one RaftBatch of a Raft stream
# (below). Snapshots travel apart, in chunks with flow control (a stream), so a snapshot send
# never delays heartbeats.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("kvstore::net::rpc");

struct Entry {
  term @0 :UInt64;
  index @1 :UInt64;
  type @2 :UInt8;      # raft::EntryType
  data @3 :Data;
}

struct ConfState {
  voters @0 :List(UInt64);
  votersOutgoing @1 :List(UInt64);
  learners @2 :List(UInt64);
  learnersNext @3 :List(UInt64);
  autoLeave @4 :Bool;
}

struct SnapshotMetadata {
  index @0 :UInt64;
  term @1 :UInt64;
  confState @2 :ConfState;
}

# raft::Message without its snapshot data (kSnap carries only the metadata here; the data goes
# through Peer.sendSnapshot).
struct Message {
  type @0 :UInt8;      # raft::MessageType
  to @1 :UInt64;
  from @2 :UInt64;
  term @3 :UInt64;
  logTerm @4 :UInt64;
  index @5 :UInt64;
  commit @6 :UInt64;
  reject @7 :Bool;
  rejectHint @8 :UInt64;
  entries @9 :List(Entry);
  snapshot @10 :SnapshotMetadata;  # kSnap only
  hasSnapshot @11 :Bool;
  context @12 :Data;
}

# Receives the chunks of one snapshot, in order, then done().
interface SnapshotSink {
  write @0 (chunk :Data) -> stream;
  done @1 (crc32c :UInt32, bytes :UInt64) -> ();
}

interface Peer {
  # Messages of one sender's loop turn, in order. `clusterId` guards against a member of another
  # cluster (a misconfigured URL); a mismatch is refused. Still served, but PeerClient sends over
  # a Raft stream (RaftBatch), which costs one message per batch instead of three.
  send @0 (clusterId :UInt64, messages :List(Message)) -> ();
  # Starts a snapshot transfer: the kSnap message (metadata only), then its data through `sink`.
  sendSnapshot @1 (clusterId :UInt64, message :Message) -> (sink :SnapshotSink);
  # The cluster's members as this member knows them, and the cluster id: a member joining an
  # existing cluster (--initial-cluster-state=existing) finds the id the cluster gave it by its
  # peer URLs, and learns the cluster id. `clusterId` 0 means "unknown, answer with yours"
  # (a cluster id is never 0); another cluster's id is refused.
  members @2 (clusterId :UInt64) -> (members :List(PeerMember), clusterId :UInt64);
  # A client request that only the leader serves, forwarded by a follower that received it (etcd
  # forwards lease keep-alive and time-to-live, and member promote, to its leader). The receiver
  # serves it without forwarding it again: a member that is no longer the leader answers
  # NOT_LEADER and the sender tries the leader it learns of next.
  forward @3 (clusterId :UInt64, request :ForwardRequest) -> (response :ForwardResponse);
}

# The Raft stream: how a PeerClient sends Raft messages (net/peer_service.h). A connection to a
# peer URL that starts with the 8 bytes of kRaftStreamMagic (peer_service.h) carries no RPC: the
# sender writes RaftBatch frames (Cap'n Proto's stream framing, one message each) and the receiver
# steps them in order, answering with a RaftAck frame only to a batch that asks for one (about
# one in 50 ms) and with a refusal before it closes the connection. So a batch costs one message
# each way at most, where Peer.send costs a Call, a Return and a Finish.
struct RaftBatch {
  clusterId @0 :UInt64;
  messages @1 :List(Message);
  ackWanted @2 :Bool;
  # Set on a connection's first batch only: who sends the stream and the peer URLs it advertises
  # (--initial-advertise-peer-urls), so a receiver that does not know the sender (it missed the
  # configuration change that added it) can answer it (node/README.md, "A member answers a
  # sender it does not know"). At most kMaxSenderPeerUrls URLs of kMaxSenderPeerUrlBytes each
  # (raft_stream.h); a receiver refuses a stream whose URLs do not parse. Senders before this
  # field send neither; receivers before it ignore them.
  senderId @3 :UInt64;
  senderPeerUrls @4 :List(Text);
}

struct RaftAck {
  batches @0 :UInt64;  # batches received on this connection so far
  refusal @1 :Text;    # non-empty: why the receiver refused the stream; it closes it next
}

struct PeerMember {
  id @0 :UInt64;
  name @1 :Text;
  peerUrls @2 :List(Text);
  isLearner @3 :Bool;
  clientUrls @4 :List(Text);
}

struct ForwardRequest {
  type @0 :UInt8;       # server::RequestType: kLeaseKeepAlive, kLeaseTimeToLive or kMemberPromote
  token @1 :Text;       # the caller's auth token, checked by the leader
  leaseId @2 :Int64;    # the lease requests
  memberId @3 :UInt64;  # member promote
  certUser @4 :Text;    # the user the follower took from the caller's client certificate
                        # (--client-cert-auth), used by the leader when `token` is empty
}

struct ForwardResponse {
  code @0 :Text;        # the stable name of core/base/errors.h ("OK", "LEASE_NOT_FOUND", ...)
  message @1 :Text;
  leaseId @2 :Int64;
  grantedTtlSeconds @3 :Int64;
  remainingTtlSeconds @4 :Int64;
  keys @5 :List(Data);
  members @6 :List(PeerMember);  # member promote: the members after it
}
