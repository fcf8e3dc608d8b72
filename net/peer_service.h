#ifndef KVSTORE_NET_PEER_SERVICE_H_
#define KVSTORE_NET_PEER_SERVICE_H_

// The peer transport over Cap'n Proto (peer.capnp): the receiving side (the Peer service and
// PeerServer, which listens on a peer URL) and the sending side (one PeerClient per remote
// member).
//
// Receiving. A connection to the peer URL is either Cap'n Proto RPC (the Peer service) or, when
// its first 8 bytes are kRaftStreamMagic, a Raft stream (peer.capnp's RaftBatch frames, no RPC),
// decoded by raft_stream.h's RaftStreamDecoder (framing limits, then every batch validated); a
// stream it refuses (bad framing, a frame over kMaxPeerMessageBytes, bytes ending inside a
// frame, another cluster, a malformed message) gets a RaftAck with the reason and is closed,
// that connection only. A stream that completes no frame (keep-alives count) for
// stream_idle_timeout is closed, and so is a connection that does not send its first 8 bytes
// within it; at most max_connections are served at once, and one accepted beyond them is closed
// at once. Both closes go to on_closed, for the log.
// Every accepted socket gets TCP keepalive (tcp_keepalive), as every socket a PeerClient,
// PeerForwarder or FetchCluster dials does: a peer whose host or link died (not even its kernel
// answers) fails its connections within about the stream idle bound, idle ones included (a
// forwarding link, an RPC connection waiting for a call). A paused peer's kernel still answers
// keepalive probes: the application-level bounds below are the ones that catch it.
// A RaftBatch that names its sender's peer URLs (a connection's first, from a PeerClient with
// local_peer_urls) hands them to MemberService::LearnPeerUrls before its messages are stepped;
// URLs that do not validate (raft_stream.h, ValidateSenderPeerUrl) refuse the stream.
// A RaftBatch, like a Peer.send call, is decoded (convert.h validates every message) and its
// messages Stepped in order; a batch with a malformed message is refused whole, before any is
// stepped (the stream gets a RaftAck with the refusal, then closes).
// Peer.sendSnapshot takes the kSnap message (metadata only) and returns a SnapshotSink that
// collects the data, at most max_snapshot_bytes; `done` checks the byte count and the CRC-32C,
// attaches the data and Steps the message. On a connection PeerServer serves, a transfer whose
// next chunk (or `done`) does not arrive within stream_idle_timeout is aborted: its data is
// dropped and its connection closed (on_closed has the line), so the sender reports the
// snapshot failed and Raft sends it again later. Every call carries the sender's cluster id; a
// mismatch (a member of another cluster, a misconfigured URL) is refused with an exception
// naming both ids, and nothing is stepped. The peer API has no Status: refusals are exceptions.
//
// Sending (PeerClient). Never blocks the loop and never calls back into the member from Send:
//   - lazy connection: the first Send connects (at most connect_timeout); a failed connection
//     or call is retried after a backoff that doubles from reconnect_backoff_min up to
//     reconnect_backoff_max, and resets once a call succeeds;
//   - batching: messages go over a Raft stream, one write at a time: those sent during one loop
//     turn, and any queued while the previous write was in the kernel's hands, go in one
//     RaftBatch frame (split at batch_limit_bytes). Frames are not answered one by one (a
//     Peer.send call cost a Call, a Return and a Finish, each a message and a system call or
//     more): a frame asks for an acknowledgement when none is outstanding and kPeerAckInterval
//     has passed since the last one, and an acknowledgement, or a write, that does not come
//     within send_timeout fails the connection (a peer that accepted but stopped reading);
//   - bounded queue: at most queue_limit_messages wait; a message beyond it, or sent while the
//     peer is in backoff, is dropped, and so is the queue when the connection fails. Drops are
//     reported through on_unreachable (on the next loop turn), so the runtime calls Raft's
//     ReportUnreachable and Raft probes the peer instead of streaming into the void;
//   - the sender's peer URLs: a connection's first RaftBatch carries local_id and
//     local_peer_urls (once per connection, not per batch), so the receiver can reach a sender
//     it does not know (MemberService::LearnPeerUrls);
//   - keep-alives: a connection on which nothing was written for keepalive_interval gets an
//     empty RaftBatch, so the receiver, which closes a stream silent for its idle bound, tells an
//     idle link from a dead one;
//   - snapshots: a kSnap message goes through Peer.sendSnapshot on a connection of its own, in
//     chunks of snapshot_chunk_bytes with `-> stream` flow control, so it never delays the
//     messages behind it (heartbeats keep flowing); its outcome is reported through
//     on_snapshot_status (Raft's ReportSnapshot). One snapshot at a time: another kSnap while
//     one is in flight is reported failed at once (Raft sends the next when told). A transfer
//     whose receiver answers nothing (no chunk acknowledged, no `done`) for
//     snapshot_stall_timeout is aborted (its
//     connection closed, on_error told with an absl::StatusCode::kAborted status, the snapshot
//     reported failed);
//   - TCP keepalive (tcp_keepalive) on both of its connections.
// Callbacks run on the loop, never inside Send, and never after the PeerClient is destroyed.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/raft/types.h"
#include "core/server/server.h"
#include "kj/async-io.h"
#include "kj/timer.h"
#include "net/connection.h"
#include "net/convert.h"
#include "net/member_service.h"
#include "net/peer.capnp.h"
#include "net/raft_stream.h"

namespace kvstore::net {

// The largest snapshot a member accepts: etcd's largest suggested backend quota (8 GiB). The
// whole snapshot is held in memory before it is stepped (raft::Snapshot carries its data).
inline constexpr uint64_t kDefaultMaxSnapshotBytes = uint64_t{8} << 30;
// A Peer.send batch stops growing past this (a single larger message still goes alone); see
// kMaxPeerMessageBytes, which must exceed it plus one message.
inline constexpr uint64_t kPeerBatchBytes = 4 << 20;
// A Raft stream's sender asks for an acknowledgement at most this often (and only with none
// outstanding): a stalled peer is still noticed within send_timeout, at a few small frames a
// second instead of an answer per batch.
inline constexpr kj::Duration kPeerAckInterval = 50 * kj::MILLISECONDS;
// etcd's peer dial timeout.
inline constexpr kj::Duration kPeerConnectTimeout = 1 * kj::SECONDS;
// A Raft stream write, or an acknowledgement asked for, unanswered this long fails its
// connection: several election timeouts.
inline constexpr kj::Duration kPeerSendTimeout = 5 * kj::SECONDS;
inline constexpr kj::Duration kPeerReconnectBackoffMin = 100 * kj::MILLISECONDS;
// etcd's peer streams redial every 100 ms (rafthttp's DialRetryFrequency). A cap beyond an
// election timeout made a healed member rejoin late: with 5 s, a leader transfer asked for right
// after a partition healed aborted before the link came back (the real-world leader_transfer
// scenario). A refused connect on a live network costs microseconds.
inline constexpr kj::Duration kPeerReconnectBackoffMax = 200 * kj::MILLISECONDS;
// A receiving Raft stream that completes no frame for this many election timeouts is closed, and
// so is a connection that has not sent its first 8 bytes by then (at least
// kMinPeerStreamIdleTimeout). 5 election timeouts of etcd's default (1 s) is etcd's own
// ConnReadTimeout (rafthttp: 5 s).
inline constexpr int64_t kPeerStreamIdleElectionTimeouts = 5;
inline constexpr kj::Duration kMinPeerStreamIdleTimeout = 1 * kj::SECONDS;
inline constexpr kj::Duration kPeerStreamIdleTimeout = 5 * kj::SECONDS;  // at etcd's defaults
inline kj::Duration PeerStreamIdleTimeout(kj::Duration election_timeout) {
  return kj::max(kMinPeerStreamIdleTimeout, kPeerStreamIdleElectionTimeouts * election_timeout);
}
// A sender with nothing to say for this long writes an empty RaftBatch (a keep-alive frame), so
// an idle link (follower to follower) is not taken for a dead one: a fifth of the receiver's
// idle bound (etcd's stream writer sends its link heartbeat every third of ConnReadTimeout).
inline constexpr kj::Duration kPeerKeepaliveInterval = kPeerStreamIdleTimeout / 5;
inline kj::Duration PeerKeepaliveInterval(kj::Duration election_timeout) {
  return PeerStreamIdleTimeout(election_timeout) / 5;
}
// A snapshot transfer whose next chunk (or `done`) is not acknowledged (sender) or does not
// arrive (receiver) within this is aborted, and Raft sends the snapshot again later: the
// stream idle bound (PeerStreamIdleTimeout), judged per chunk as a Raft stream's is per frame.
inline constexpr kj::Duration kSnapshotStallTimeout = kPeerStreamIdleTimeout;

// TCP keepalive on a peer socket, in the kernel's units (whole seconds): after `idle_seconds`
// with nothing received, a probe every `interval_seconds`; `count` unanswered probes fail the
// connection (a read or write on it then fails). The defaults are PeerTcpKeepalive of etcd's
// election timeout (1 s): a dead peer is noticed 2 + 3 x 1 = 5 s after it last spoke, the
// stream idle bound.
struct TcpKeepalive {
  int idle_seconds = 2;      // TCP_KEEPIDLE
  int interval_seconds = 1;  // TCP_KEEPINTVL
  int count = 3;             // TCP_KEEPCNT
};
// Sized so idle + count x interval is about PeerStreamIdleTimeout(election_timeout), rounded up
// to whole seconds (at least 1 + 3 x 1 = 4 s): count 3, an interval of a fifth of the bound.
TcpKeepalive PeerTcpKeepalive(kj::Duration election_timeout);
// Turns on SO_KEEPALIVE with `keepalive`'s TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT on the
// socket under `stream` (through a TLS or prefixed stream). False when there is no TCP socket
// to set them on (an in-process pipe, a unix socket): nothing is changed then.
bool EnableTcpKeepalive(kj::AsyncIoStream& stream, const TcpKeepalive& keepalive);
// Inbound peer connections served at once (Raft streams and RPC: snapshots, forwards, member
// lists); an accepted connection beyond it is closed at once. A member has about two per peer
// (its Raft stream and its forwarding link) plus a snapshot now and then: 128 is far beyond any
// real cluster's need, and bounds what a flood of connections costs.
inline constexpr size_t kMaxPeerConnections = 128;

// --- Receiving ----------------------------------------------------------------------------------

struct PeerServiceOptions {
  uint64_t max_snapshot_bytes = kDefaultMaxSnapshotBytes;
  // PeerServer: a Raft stream that completes no frame (batches and keep-alives alike) this long
  // is closed, and so is a connection that does not send its first 8 bytes within it
  // (PeerStreamIdleTimeout of the member's election timeout), and an RPC connection with a
  // snapshot transfer whose next chunk (or `done`) does not come within it. RPC connections are
  // otherwise not bounded so (a forwarding link is legitimately idle): TCP keepalive is theirs.
  kj::Duration stream_idle_timeout = kPeerStreamIdleTimeout;
  // PeerServer: on every accepted socket (PeerTcpKeepalive of the member's election timeout).
  TcpKeepalive tcp_keepalive;
  // PeerServer: inbound connections served at once (every kind); one accepted beyond it is closed
  // at once.
  size_t max_connections = kMaxPeerConnections;
  // PeerServer: a connection closed by one of the limits above, with the remote address and
  // why, for the log. Optional.
  std::function<void(const std::string& remote, const std::string& why)> on_closed;
};

// The Peer capability serving `member` (not owned; it must outlive every capability served).
rpc::Peer::Client NewPeerService(MemberService& member, const PeerServiceOptions& options = {});

// Serves Peer on a peer URL: every accepted connection reads with PeerReaderOptions; a
// connection that starts with kRaftStreamMagic is served as a Raft stream instead.
class PeerServer final : private kj::TaskSet::ErrorHandler {
 public:
  // Listens on `address` ("host:port", NetworkAddressOf's form; port 0 picks a free port).
  // Rejects with a kj exception when it cannot be resolved or bound (the port is taken).
  static kj::Promise<kj::Own<PeerServer>> Listen(kj::Network& network, kj::Timer& timer,
                                                 std::string address, MemberService& member,
                                                 const PeerServiceOptions& options = {});
  // Without a socket: connections come through Accept (a TLS listener's, in-process tests).
  // `timer` (the loop's) bounds idle streams and must outlive the server.
  PeerServer(MemberService& member, kj::Timer& timer, const PeerServiceOptions& options = {});

  ~PeerServer() noexcept;

  // Serves one more connection, or closes it at once when max_connections are open.
  void Accept(kj::Own<kj::AsyncIoStream> stream);
  uint port() const { return port_; }
  // Raft stream batches received and stepped (keep-alive frames not counted), over every
  // connection (for tests).
  uint64_t raft_batches() const { return raft_batches_; }
  // Connections open now (for tests).
  size_t connections() const { return connections_; }

 private:
  // Serves one connection once its first bytes tell which kind it is.
  kj::Promise<void> Serve(kj::Own<kj::AsyncIoStream> stream, std::string remote);
  // Serves Peer over an RPC connection until it ends, or until a stalled snapshot transfer on it
  // closes it.
  kj::Promise<void> ServeRpc(kj::Own<kj::AsyncIoStream> stream, std::string remote);
  void Closed(const std::string& remote, const std::string& why);
  // A connection that ends with an error is over all the same; its peer sees the break.
  void taskFailed(kj::Exception&&) override {}

  // First: a connection's stream counts itself out when destroyed, which may be as late as the
  // destruction of the members below.
  size_t connections_ = 0;
  MemberService& member_;
  kj::Timer& timer_;
  const kj::Duration idle_timeout_;
  const size_t max_connections_;
  const std::function<void(const std::string&, const std::string&)> on_closed_;
  const PeerServiceOptions options_;
  uint64_t raft_batches_ = 0;
  kj::Own<kj::ConnectionReceiver> receiver_;
  uint port_ = 0;
  kj::TaskSet streams_;
  kj::Promise<void> accepting_ = nullptr;
};

// --- Sending ------------------------------------------------------------------------------------

struct PeerClientOptions {
  raft::NodeId peer_id = raft::kNoNode;
  std::string address;  // the peer's listener, NetworkAddressOf's form
  uint64_t cluster_id = 0;
  // A client TLS context for an https:// peer URL (outliving the client); null: plain text.
  TlsContext* tls = nullptr;
  size_t queue_limit_messages = kDefaultPeerQueueLimitMessages;
  uint64_t batch_limit_bytes = kPeerBatchBytes;
  uint64_t snapshot_chunk_bytes = kSnapshotChunkBytes;
  kj::Duration connect_timeout = kPeerConnectTimeout;
  kj::Duration send_timeout = kPeerSendTimeout;
  kj::Duration reconnect_backoff_min = kPeerReconnectBackoffMin;
  kj::Duration reconnect_backoff_max = kPeerReconnectBackoffMax;
  // A snapshot chunk (or `done`) unacknowledged this long aborts the transfer
  // (PeerStreamIdleTimeout of the member's election timeout).
  kj::Duration snapshot_stall_timeout = kSnapshotStallTimeout;
  // On the Raft stream's and the snapshots' sockets (PeerTcpKeepalive of the election timeout).
  TcpKeepalive tcp_keepalive;
  // With nothing written for this long, a keep-alive frame (an empty RaftBatch) goes out
  // (PeerKeepaliveInterval of the member's election timeout: a fifth of the receiver's idle bound).
  kj::Duration keepalive_interval = kPeerKeepaliveInterval;
  // This member's id and advertised peer URLs, told to the peer on each connection's first
  // RaftBatch (peer.capnp's senderPeerUrls), so a peer that does not know this member (it missed
  // the configuration change that added it) can answer. Empty: not told.
  raft::NodeId local_id = raft::kNoNode;
  std::vector<std::string> local_peer_urls;
};

struct PeerClientCallbacks {
  // Messages to the peer were dropped (Raft's ReportUnreachable). Required.
  std::function<void(raft::NodeId peer)> on_unreachable;
  // A snapshot transfer ended (Raft's ReportSnapshot). Required.
  std::function<void(raft::NodeId peer, bool succeeded)> on_snapshot_status;
  // Why a connection or a snapshot transfer failed, for the log (a failed transfer's status is
  // kAborted, a connection's kUnavailable). Optional.
  std::function<void(raft::NodeId peer, const absl::Status& why)> on_error;
};

class PeerClient final : private kj::TaskSet::ErrorHandler {
 public:
  // `network` and `timer` (the loop's) must outlive the client.
  PeerClient(kj::Network& network, kj::Timer& timer, PeerClientOptions options,
             PeerClientCallbacks callbacks);
  ~PeerClient();

  // Queues `message` for the peer (see the file comment); a kSnap message must carry its
  // snapshot data.
  void Send(raft::Message message);

  raft::NodeId peer_id() const { return options_.peer_id; }
  bool connected() const { return state_ == State::kConnected; }
  size_t queued_messages() const { return queue_.size(); }

 private:
  enum class State { kIdle, kConnecting, kConnected, kBackoff };

  void Connect();
  void ScheduleFlush();
  void Flush();
  // Runs one write on the stream within the send timeout; when it is done the next batch goes
  // out, and a failure ends the link (of that generation only).
  void Write(uint64_t generation, kj::Promise<void> write);
  // Reads the acknowledgements (and a refusal) of the connection of `generation`.
  kj::Promise<void> ReadAcks(uint64_t generation);
  // Fails the connection of `generation` unless the acknowledgement asked for as `seq` came.
  void WatchAck(uint64_t generation, uint64_t seq);
  // Writes a keep-alive frame on the connection of `generation` whenever nothing was written
  // for keepalive_interval.
  kj::Promise<void> KeepAlive(uint64_t generation);
  // The connection of `generation` failed: drop it and the queue, back off, report.
  void Fail(uint64_t generation, const absl::Status& why);
  void ReportUnreachable();
  void ReportError(const absl::Status& why);
  void StartSnapshot(raft::Message message);
  kj::Promise<void> SendSnapshot(raft::Message message);
  kj::Promise<void> WriteChunks(rpc::SnapshotSink::Client sink,
                                std::shared_ptr<const raft::Snapshot> snapshot, uint64_t offset,
                                uint32_t crc);
  void taskFailed(kj::Exception&& exception) override;

  kj::Network& network_;
  kj::Timer& timer_;
  const PeerClientOptions options_;
  const PeerClientCallbacks callbacks_;

  State state_ = State::kIdle;
  // Counts connections; a late event of an earlier one (a reply, a disconnect) is ignored.
  uint64_t generation_ = 0;
  kj::Own<kj::AsyncIoStream> stream_;  // the Raft stream
  kj::Own<FrameDecoder> acks_;         // what the receiver answers (raft_stream.h)
  kj::Own<kj::TaskSet> link_tasks_;    // the stream's reads and writes
  std::deque<raft::Message> queue_;
  bool writing_ = false;  // one write at a time: a batch grows while the previous one goes
  kj::TimePoint last_write_at_ = kj::origin<kj::TimePoint>();  // when the last write started
  bool keepalive_due_ = false;  // the next Flush writes a frame even with nothing queued
  bool urls_told_ = false;      // this connection's first batch carried local_peer_urls
  // Acknowledgements asked for (numbered), whether the last has yet to come, and when it was
  // asked for.
  uint64_t ack_seq_ = 0;
  bool ack_outstanding_ = false;
  kj::TimePoint ack_asked_at_ = kj::origin<kj::TimePoint>();
  bool flush_scheduled_ = false;
  bool unreachable_pending_ = false;
  kj::Duration backoff_;
  bool snapshot_in_flight_ = false;
  // When the transfer in flight last made progress (connected, or the receiver answered).
  kj::TimePoint snapshot_progress_at_ = kj::origin<kj::TimePoint>();
  kj::TaskSet tasks_;  // last: destroyed first, so no task outlives the state it uses
};

// --- Forwarding ---------------------------------------------------------------------------------

// Forwards leader-only client requests (IsForwardable in convert.h) to the leader over
// Peer.forward, on one connection per peer of its own, so a forward never waits behind a batch
// of Raft messages or a snapshot. A connection is opened on first use and kept, with TCP
// keepalive (so an idle one to a dead peer fails); a broken one is dropped and the next forward
// connects afresh. A forward that gets no answer within its timeout, on a connection that
// answered nothing else since it was sent (a paused or black-holed leader), closes that
// connection too (on_closed is told), so it holds no slot of the peer's connection cap and the
// next forward does not queue behind it. Whether and when to retry is the caller's.
class PeerForwarder final : private kj::TaskSet::ErrorHandler {
 public:
  // `network` and `timer` (the loop's) must outlive the forwarder. `on_closed` (optional): a
  // connection closed for a forward left unanswered, with the peer and why, for the log.
  PeerForwarder(kj::Network& network, kj::Timer& timer, uint64_t cluster_id,
                TcpKeepalive keepalive = {},
                std::function<void(raft::NodeId peer, const std::string& why)> on_closed = {});
  ~PeerForwarder() noexcept;

  // The member `peer` at `address` serves `request`; resolves with its response (its status
  // may be an error of its own, NOT_LEADER included), or with an Unavailable error naming the
  // peer when it could not be reached or did not answer within `timeout` ("no answer in
  // time"). `tls`: the client context for an https:// peer URL (nullptr: plain TCP).
  kj::Promise<absl::StatusOr<server::Response>> Forward(raft::NodeId peer, std::string address,
                                                        server::Request request,
                                                        kj::Duration timeout,
                                                        TlsContext* tls = nullptr);

 private:
  struct Link {
    std::string address;
    kj::Own<RpcConnection> connection;
    rpc::Peer::Client peer = nullptr;
    uint64_t generation = 0;  // counts connections; a late disconnect of an old one is ignored
    uint64_t answers = 0;     // calls answered on the connection (any answer, refusals too)
  };

  kj::Promise<rpc::Peer::Client> Connected(raft::NodeId peer, const std::string& address,
                                           kj::Duration timeout, TlsContext* tls);
  void Drop(raft::NodeId peer);
  void DropIf(raft::NodeId peer, uint64_t generation);
  // A forward sent as the `answers`-th call of connection `generation` went unanswered: closes
  // that connection unless it answered anything since. True when it did close it.
  bool DropIfSilent(raft::NodeId peer, uint64_t generation, uint64_t answers);
  void taskFailed(kj::Exception&& exception) override;

  kj::Network& network_;
  kj::Timer& timer_;
  const uint64_t cluster_id_;
  const TcpKeepalive keepalive_;
  const std::function<void(raft::NodeId, const std::string&)> on_closed_;
  std::map<raft::NodeId, Link> links_;
  kj::TaskSet tasks_;  // last: destroyed first, so no task outlives the state it uses
};

// For a member joining an existing cluster (--initial-cluster-state=existing): the members as
// the member at `address` knows them (Peer.members), within `timeout`. An error names the
// address and the reason (unreachable, another cluster).
kj::Promise<absl::StatusOr<std::vector<server::Member>>> FetchMembers(
    kj::Network& network, kj::Timer& timer, std::string address, uint64_t cluster_id,
    kj::Duration timeout, TlsContext* tls = nullptr);

struct FetchedCluster {
  uint64_t cluster_id = 0;  // the answering member's
  std::vector<server::Member> members;
};
// FetchMembers, with the cluster id of the member asked: `cluster_id` 0 asks without knowing it
// (a joining member learns it so).
kj::Promise<absl::StatusOr<FetchedCluster>> FetchCluster(kj::Network& network, kj::Timer& timer,
                                                         std::string address, uint64_t cluster_id,
                                                         kj::Duration timeout,
                                                         TlsContext* tls = nullptr);

// A refusal for another cluster's id names both (ClusterMismatchText, raft_stream.h).
// ClusterMismatchOf finds L in a refusal (a failed call's status, as PeerClientCallbacks::on_error
// reports it), or nullopt when it is no such refusal.
std::optional<uint64_t> ClusterMismatchOf(const absl::Status& refusal);

// A refusal of a removed member's messages (MemberService::Step answered kMemberRemoved: etcd's
// rafthttp answers such a peer 410 Gone) names the removed id: MemberRemovedText(id). The
// sender finds the id in it with MemberRemovedOf (nullopt when it is no such refusal) and, when
// the id is its own, stops (node::Member::StopRemoved).
std::string MemberRemovedText(raft::NodeId id);
std::optional<raft::NodeId> MemberRemovedOf(const absl::Status& refusal);

}  // namespace kvstore::net

#endif  // KVSTORE_NET_PEER_SERVICE_H_
