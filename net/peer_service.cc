#include "net/peer_service.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "capnp/serialize-async.h"
#include "core/base/errors.h"
#include "core/raft/check.h"
#include "net/convert.h"
#include "net/forwarding_stream.h"
#include "net/prefixed_stream.h"
#include "store/crc32c.h"

namespace kvstore::net {

TcpKeepalive PeerTcpKeepalive(kj::Duration election_timeout) {
  const kj::Duration bound = PeerStreamIdleTimeout(election_timeout);
  const int seconds = static_cast<int>((bound + kj::SECONDS - 1 * kj::NANOSECONDS) / kj::SECONDS);
  TcpKeepalive keepalive;
  keepalive.count = 3;
  keepalive.interval_seconds = std::max(1, seconds / 5);
  keepalive.idle_seconds = std::max(1, seconds - keepalive.count * keepalive.interval_seconds);
  return keepalive;
}

bool EnableTcpKeepalive(kj::AsyncIoStream& stream, const TcpKeepalive& keepalive) {
  // A stream without a socket throws (kj's "not a socket"), and so does a unix socket at the TCP
  // options: keepalive is then nobody's business.
  kj::Maybe<kj::Exception> failed = kj::runCatchingExceptions([&] {
    const int on = 1;
    stream.setsockopt(SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    stream.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, &keepalive.idle_seconds,
                      sizeof(keepalive.idle_seconds));
    stream.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &keepalive.interval_seconds,
                      sizeof(keepalive.interval_seconds));
    stream.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, &keepalive.count, sizeof(keepalive.count));
  });
  return failed == nullptr;
}

namespace {

std::string Millis(kj::Duration d) { return absl::StrCat(d / kj::MILLISECONDS, " ms"); }

// Resolves once `last_activity()` is `bound` old. Woken well past the deadline (more than a
// fifth of the bound late), it was this member's own loop that stalled (a pause, a long turn),
// and what the other side sent meanwhile may be waiting unread: it gives that a fifth of the
// bound more to be read before it judges. `last_activity` must outlive the promise.
kj::Promise<void> UntilIdle(kj::Timer& timer, kj::Duration bound,
                            std::function<kj::TimePoint()> last_activity, bool rechecked = false) {
  const kj::TimePoint deadline = last_activity() + bound;
  return timer.atTime(deadline).then(
      [&timer, bound, deadline, rechecked,
       last_activity = std::move(last_activity)]() mutable -> kj::Promise<void> {
        const kj::TimePoint now = timer.now();
        if (now - last_activity() < bound) return UntilIdle(timer, bound, std::move(last_activity));
        if (!rechecked && now - deadline > bound / 5) {
          return timer.afterDelay(bound / 5).then(
              [&timer, bound, last_activity = std::move(last_activity)]() mutable {
                return UntilIdle(timer, bound, std::move(last_activity), /*rechecked=*/true);
              });
        }
        return kj::READY_NOW;
      });
}

// What the Peer service of one connection PeerServer serves knows of it: a stalled snapshot
// transfer closes it. Shared by the service and its sinks, which may outlive the connection.
struct ServedConnection {
  ServedConnection(kj::Timer& timer, kj::Duration idle_timeout, std::string remote,
                   std::function<void(const std::string&, const std::string&)> on_closed,
                   kj::Own<kj::PromiseFulfiller<void>> close)
      : timer(timer),
        idle_timeout(idle_timeout),
        remote(std::move(remote)),
        on_closed(std::move(on_closed)),
        close(kj::mv(close)) {}

  // Closes the connection (once; not after it ended), with `why` for the log.
  void Close(const std::string& why) {
    if (!close->isWaiting()) return;
    close->fulfill();
    if (on_closed) on_closed(remote, why);
  }

  kj::Timer& timer;
  const kj::Duration idle_timeout;
  const std::string remote;
  const std::function<void(const std::string&, const std::string&)> on_closed;
  kj::Own<kj::PromiseFulfiller<void>> close;  // fulfilled: PeerServer destroys the connection
};

// A stream that notes when bytes last arrived on it: what a snapshot's receiver answers (its
// acknowledgements of the chunks). `last_read` must outlive the stream.
class ReadProgressStream final : public ForwardingStream {
 public:
  ReadProgressStream(kj::Own<kj::AsyncIoStream> inner, kj::Timer& timer, kj::TimePoint& last_read)
      : ForwardingStream(kj::mv(inner)), timer_(timer), last_read_(last_read) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return inner().tryRead(buffer, min_bytes, max_bytes).then([this](size_t n) {
      if (n > 0) last_read_ = timer_.now();
      return n;
    });
  }

 private:
  kj::Timer& timer_;
  kj::TimePoint& last_read_;
};

kj::Exception ClusterMismatch(uint64_t theirs, uint64_t ours) {
  // The sender finds the receiver's id in the text (ClusterMismatchOf).
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::str("refused: the sender belongs to another cluster: ",
                               ClusterMismatchText(ours, theirs).c_str()));
}

absl::string_view View(capnp::Data::Reader data) {
  return absl::string_view(reinterpret_cast<const char*>(data.begin()), data.size());
}

// Bytes a message costs against the batch limit: its payloads plus an estimate of the fixed
// fields and pointers.
uint64_t WireBytes(const raft::Message& m) {
  uint64_t bytes = 128 + m.context.size();
  for (const raft::Entry& e : m.entries) bytes += raft::EntrySizeBytes(e) + 16;
  return bytes;
}

// Collects one snapshot's data; `done` verifies and steps it. On a connection PeerServer serves
// (`connection` not null), a next chunk or `done` that does not come within its idle bound
// aborts the transfer and closes the connection.
class SnapshotSinkImpl final : public rpc::SnapshotSink::Server {
 public:
  SnapshotSinkImpl(MemberService& member, raft::Message message, uint64_t max_bytes,
                   std::shared_ptr<ServedConnection> connection)
      : member_(member),
        message_(std::move(message)),
        max_bytes_(max_bytes),
        connection_(std::move(connection)) {
    if (connection_ == nullptr) return;
    last_chunk_at_ = connection_->timer.now();
    idle_ =
        UntilIdle(connection_->timer, connection_->idle_timeout, [this] { return last_chunk_at_; })
            .then([this] {
              finished_ = true;
              const uint64_t received = data_.size();
              data_ = std::string();
              connection_->Close(absl::StrCat(
                  "closed a peer connection whose snapshot transfer delivered no chunk for ",
                  Millis(connection_->idle_timeout), " (the idle bound) after ", received,
                  " bytes; the snapshot is dropped and the sender will send it again"));
            })
            .eagerlyEvaluate(nullptr);
  }

  kj::Promise<void> write(WriteContext context) override {
    if (finished_) return KJ_EXCEPTION(FAILED, "snapshot chunk after done");
    if (connection_ != nullptr) last_chunk_at_ = connection_->timer.now();
    const absl::string_view chunk = View(context.getParams().getChunk());
    if (data_.size() + chunk.size() > max_bytes_) {
      Finish();
      data_.clear();
      return KJ_EXCEPTION(FAILED, "refused: snapshot larger than the limit", max_bytes_);
    }
    data_.append(chunk.data(), chunk.size());
    crc_ = store::Crc32c(chunk, crc_);
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext context) override {
    if (finished_) return KJ_EXCEPTION(FAILED, "snapshot already finished or refused");
    Finish();
    auto params = context.getParams();
    if (params.getBytes() != data_.size() || params.getCrc32c() != crc_) {
      return KJ_EXCEPTION(FAILED, "refused: snapshot data corrupted in transit (bytes, crc32c)",
                          params.getBytes(), data_.size(), params.getCrc32c(), crc_);
    }
    auto snapshot = std::make_shared<raft::Snapshot>();
    snapshot->metadata = message_.snapshot->metadata;
    snapshot->data = raft::Bytes(data_);
    data_ = std::string();
    message_.snapshot = std::move(snapshot);
    (void)member_.Step(std::move(message_));  // a removed sender hears it on its Raft stream
    return kj::READY_NOW;
  }

 private:
  // The transfer is over (done, or refused): no idle bound any more.
  void Finish() {
    finished_ = true;
    idle_ = kj::READY_NOW;
  }

  MemberService& member_;
  raft::Message message_;  // kSnap, metadata only until done
  const uint64_t max_bytes_;
  const std::shared_ptr<ServedConnection> connection_;
  std::string data_;
  uint32_t crc_ = 0;  // of data_
  bool finished_ = false;
  kj::TimePoint last_chunk_at_ = kj::origin<kj::TimePoint>();
  kj::Promise<void> idle_ = kj::READY_NOW;  // the idle bound's watch, while a transfer is open
};

}  // namespace

namespace {

class PeerImpl final : public rpc::Peer::Server {
 public:
  // `connection`: the connection PeerServer serves this on (null: no idle bound on snapshots).
  PeerImpl(MemberService& member, const PeerServiceOptions& options,
           std::shared_ptr<ServedConnection> connection = nullptr)
      : member_(member), options_(options), connection_(std::move(connection)) {}

  kj::Promise<void> send(SendContext context) override {
    auto params = context.getParams();
    if (params.getClusterId() != member_.cluster_id()) {
      return ClusterMismatch(params.getClusterId(), member_.cluster_id());
    }
    absl::StatusOr<std::vector<raft::Message>> messages = DecodeSendBatch(params.getMessages());
    if (!messages.ok()) {
      return KJ_EXCEPTION(FAILED, "refused", std::string(messages.status().message()).c_str());
    }
    context.releaseParams();
    for (raft::Message& m : *messages) {
      const raft::NodeId from = m.from;
      if (CodeOf(member_.Step(std::move(m))) == ErrorCode::kMemberRemoved) {
        return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                             kj::str(MemberRemovedText(from).c_str()));
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> sendSnapshot(SendSnapshotContext context) override {
    auto params = context.getParams();
    if (params.getClusterId() != member_.cluster_id()) {
      return ClusterMismatch(params.getClusterId(), member_.cluster_id());
    }
    absl::StatusOr<raft::Message> m = FromCapnp(params.getMessage());
    if (!m.ok()) {
      return KJ_EXCEPTION(FAILED, "refused: malformed snapshot message",
                          std::string(m.status().message()).c_str());
    }
    if (m->type != raft::MessageType::kSnap) {
      return KJ_EXCEPTION(FAILED, "refused: sendSnapshot needs a kSnap message",
                          raft::MessageTypeName(m->type));
    }
    context.releaseParams();
    context.getResults().setSink(kj::heap<SnapshotSinkImpl>(
        member_, std::move(*m), options_.max_snapshot_bytes, connection_));
    return kj::READY_NOW;
  }

  kj::Promise<void> members(MembersContext context) override {
    const uint64_t cluster_id = context.getParams().getClusterId();
    if (cluster_id != 0 && cluster_id != member_.cluster_id()) {
      return ClusterMismatch(cluster_id, member_.cluster_id());
    }
    const std::vector<server::Member> members = member_.Members();
    auto results = context.getResults();
    auto list = results.initMembers(members.size());
    for (size_t i = 0; i < members.size(); ++i) ToCapnp(members[i], list[i]);
    results.setClusterId(member_.cluster_id());
    return kj::READY_NOW;
  }

  kj::Promise<void> forward(ForwardContext context) override {
    auto params = context.getParams();
    if (params.getClusterId() != member_.cluster_id()) {
      return ClusterMismatch(params.getClusterId(), member_.cluster_id());
    }
    absl::StatusOr<server::Request> request = FromCapnp(params.getRequest());
    if (!request.ok()) {
      return KJ_EXCEPTION(FAILED, "refused", std::string(request.status().message()).c_str());
    }
    context.releaseParams();
    return member_.CallForwarded(std::move(*request))
        .then([context](server::Response response) mutable {
          ToCapnp(response, context.getResults().initResponse());
        });
  }

 private:
  MemberService& member_;
  const PeerServiceOptions options_;
  const std::shared_ptr<ServedConnection> connection_;
};

absl::Status Unavailable(raft::NodeId peer, const std::string& address, absl::string_view why) {
  return absl::UnavailableError(absl::StrCat("peer ", peer, " at ", address, ": ", why));
}

}  // namespace

rpc::Peer::Client NewPeerService(MemberService& member, const PeerServiceOptions& options) {
  return kj::heap<PeerImpl>(member, options);
}

// --- Raft streams -------------------------------------------------------------------------------

namespace {

// Reads what has arrived of `in` into `decoder` (a FrameDecoder or RaftStreamDecoder): at least
// what its next frame is missing, as much as its buffer takes. Resolves false when the stream
// ended (what came before the end is in the decoder: its End() says whether that was inside a
// frame). Through evalNow: a read on a connection already reset fails at once, and must reject
// rather than throw.
template <typename Decoder>
kj::Promise<bool> ReadInto(kj::AsyncInputStream& in, Decoder& decoder) {
  kj::ArrayPtr<kj::byte> space = decoder.Space();
  if (space.size() == 0) return KJ_EXCEPTION(FAILED, "a frame decoder without room");
  const size_t min_bytes = std::max<size_t>(1, std::min(decoder.missing(), space.size()));
  kj::byte* into = space.begin();
  const size_t room = space.size();
  return kj::evalNow([&in, into, min_bytes, room] { return in.tryRead(into, min_bytes, room); })
      .then([&decoder, min_bytes](size_t n) {
        decoder.Commit(n);
        return n >= min_bytes;
      });
}

// After a refusal, what the sender still sends is read and dropped until it closes, so the
// reason reaches it (a close with unread bytes would reset the connection first); at most this
// much, then the connection is closed all the same.
constexpr uint64_t kRefusedStreamDrainBytes = kMaxPeerMessageBytes;

// The receiving end of one Raft stream: steps every batch, acknowledges those that ask, and
// refuses what RaftStreamDecoder refuses (a RaftAck with the reason, then the end of its writes).
class RaftStreamReceiver {
 public:
  // `first`: the bytes already read off the stream (its magic). `on_idle` is told when the
  // stream is closed for completing no frame within `idle_timeout`.
  RaftStreamReceiver(MemberService& member, kj::Timer& timer, kj::Duration idle_timeout,
                     kj::Own<kj::AsyncIoStream> stream, uint64_t& batches,
                     kj::ArrayPtr<const kj::byte> first, std::function<void()> on_idle)
      : member_(member),
        timer_(timer),
        idle_timeout_(idle_timeout),
        stream_(kj::mv(stream)),
        batches_(batches),
        on_idle_(std::move(on_idle)),
        last_frame_at_(timer.now()) {
    decoder_.Append(absl::string_view(reinterpret_cast<const char*>(first.begin()), first.size()));
  }

  // Ends when the sender closes the stream, after a refusal, or when it falls silent.
  kj::Promise<void> Run() { return ReadLoop().exclusiveJoin(IdleWatch()); }

 private:
  // Resolves (ending Run, which closes the stream) once no frame has come for idle_timeout_;
  // what a refused stream still sends (Discard) is no frame either. Woken well past the bound
  // (more than a keep-alive interval late), it was this member's loop that stalled (a pause, a
  // long turn), and frames the sender wrote meanwhile may be waiting unread: it reads them for
  // a fifth of the bound more before it judges (UntilIdle).
  kj::Promise<void> IdleWatch() {
    return UntilIdle(timer_, idle_timeout_, [this] { return last_frame_at_; }).then([this] {
      on_idle_();
    });
  }

  kj::Promise<void> ReadLoop() {
    // Every whole batch read so far, in order; then read on.
    for (;;) {
      absl::StatusOr<std::optional<RaftStreamBatch>> next = decoder_.Next(member_.cluster_id());
      if (!next.ok()) return Refuse(absl::StrCat("refused: ", next.status().message()));
      if (!next->has_value()) break;
      RaftStreamBatch& batch = **next;
      last_frame_at_ = timer_.now();
      if (batch.sender_id != raft::kNoNode) {
        member_.LearnPeerUrls(batch.sender_id, std::move(batch.sender_peer_urls));
      }
      ++received_;
      if (!batch.messages.empty()) ++batches_;  // an empty one is a keep-alive
      for (raft::Message& m : batch.messages) {
        const raft::NodeId from = m.from;
        if (CodeOf(member_.Step(std::move(m))) == ErrorCode::kMemberRemoved) {
          return Refuse(MemberRemovedText(from));
        }
      }
      if (batch.ack_wanted) Write(received_, "");
    }
    return ReadInto(*stream_, decoder_).then([this](bool more) -> kj::Promise<void> {
      if (more) return ReadLoop();
      const absl::Status end = decoder_.End();
      if (!end.ok()) return Refuse(absl::StrCat("refused: ", end.message()));
      return kj::READY_NOW;  // the sender closed the stream between two frames
    });
  }

  void Write(uint64_t batches, const std::string& refusal) {
    auto builder = kj::heap<capnp::MallocMessageBuilder>(64);
    auto ack = builder->initRoot<rpc::RaftAck>();
    ack.setBatches(batches);
    if (!refusal.empty()) ack.setRefusal(refusal);
    writes_ = writes_
                  .then([this, builder = kj::mv(builder)]() mutable {
                    capnp::MallocMessageBuilder& frame = *builder;
                    return capnp::writeMessage(*stream_, frame).attach(kj::mv(builder));
                  })
                  .eagerlyEvaluate([](kj::Exception&&) {});  // the read side sees the break
  }

  // Tells the sender why, then reads (and drops) what it still sends until it closes, so the
  // reason reaches it before the connection ends.
  kj::Promise<void> Refuse(std::string why) {
    Write(received_, why);
    kj::Promise<void> written = kj::mv(writes_);
    writes_ = kj::READY_NOW;
    return written.then([this] {
      stream_->shutdownWrite();
      return Discard();
    });
  }

  kj::Promise<void> Discard() {
    if (discarded_ >= kRefusedStreamDrainBytes) return kj::READY_NOW;
    return stream_->tryRead(scratch_, 1, sizeof(scratch_))
        .then([this](size_t n) -> kj::Promise<void> {
          if (n == 0) return kj::READY_NOW;
          discarded_ += n;
          return Discard();
        });
  }

  MemberService& member_;
  kj::Timer& timer_;
  const kj::Duration idle_timeout_;
  kj::Own<kj::AsyncIoStream> stream_;
  RaftStreamDecoder decoder_;
  uint64_t& batches_;
  const std::function<void()> on_idle_;
  kj::TimePoint last_frame_at_;
  uint64_t received_ = 0;
  uint64_t discarded_ = 0;
  kj::Promise<void> writes_ = kj::READY_NOW;
  kj::byte scratch_[4096];
};

}  // namespace

PeerServer::PeerServer(MemberService& member, kj::Timer& timer, const PeerServiceOptions& options)
    : member_(member),
      timer_(timer),
      idle_timeout_(options.stream_idle_timeout),
      max_connections_(options.max_connections),
      on_closed_(options.on_closed),
      options_(options),
      streams_(*this) {}

PeerServer::~PeerServer() noexcept {}

kj::Promise<kj::Own<PeerServer>> PeerServer::Listen(kj::Network& network, kj::Timer& timer,
                                                    std::string address, MemberService& member,
                                                    const PeerServiceOptions& options) {
  auto server = kj::heap<PeerServer>(member, timer, options);
  PeerServer& listening = *server;
  return network.parseAddress(kj::StringPtr(address.c_str(), address.size()))
      .then([&listening, &timer](kj::Own<kj::NetworkAddress> parsed) {
        listening.receiver_ = parsed->listen();
        listening.port_ = listening.receiver_->getPort();
        listening.accepting_ = AcceptEach(*listening.receiver_, timer,
                                          [&listening](kj::Own<kj::AsyncIoStream> stream) {
                                            listening.Accept(kj::mv(stream));
                                          })
                                   .eagerlyEvaluate(nullptr);
      })
      .then([server = kj::mv(server)]() mutable { return kj::mv(server); });
}

void PeerServer::Accept(kj::Own<kj::AsyncIoStream> stream) {
  std::string remote = RemoteAddressOf(*stream);
  if (connections_ >= max_connections_) {
    Closed(remote, absl::StrCat("too many peer connections: ", connections_,
                                " open (the limit); refused at once"));
    return;  // `stream` closes here
  }
  ++connections_;
  EnableTcpKeepalive(*stream, options_.tcp_keepalive);
  // Counted out when the stream goes, whichever kind of connection it turned out to be.
  stream = stream.attach(kj::defer([this] { --connections_; }));
  streams_.add(Serve(kj::mv(stream), std::move(remote)));
}

void PeerServer::Closed(const std::string& remote, const std::string& why) {
  if (on_closed_) on_closed_(remote, why);
}

kj::Promise<void> PeerServer::Serve(kj::Own<kj::AsyncIoStream> stream, std::string remote) {
  // What a read returns when the connection said nothing within the idle bound.
  static constexpr size_t kSilent = ~size_t{0};
  auto first = kj::heapArray<kj::byte>(sizeof(kRaftStreamMagic));
  kj::AsyncIoStream& reading = *stream;
  kj::byte* into = first.begin();
  // evalNow: a read that fails at once (a connection reset already) rejects instead of throwing.
  return timer_.afterDelay(idle_timeout_)
      .then([] { return kSilent; })
      .exclusiveJoin(kj::evalNow([&reading, into] { return reading.tryRead(into, 8, 8); }))
      .then([this, stream = kj::mv(stream), first = kj::mv(first),
             remote = std::move(remote)](size_t n) mutable -> kj::Promise<void> {
        if (n == kSilent) {
          Closed(remote, absl::StrCat("closed a peer connection that sent nothing for ",
                                      Millis(idle_timeout_), " (the idle bound)"));
          return kj::READY_NOW;
        }
        if (n < first.size()) return kj::READY_NOW;  // closed before a message
        if (std::memcmp(first.begin(), kRaftStreamMagic, first.size()) != 0) {
          return ServeRpc(kj::heap<PrefixedStream>(kj::mv(stream), kj::mv(first)),
                          std::move(remote));
        }
        auto receiver = kj::heap<RaftStreamReceiver>(
            member_, timer_, idle_timeout_, kj::mv(stream), raft_batches_, first.asPtr(),
            [this, remote] {
              Closed(remote, absl::StrCat("closed a Raft stream that delivered no frame (not even "
                                          "a keep-alive) for ",
                                          Millis(idle_timeout_), " (the idle bound)"));
            });
        kj::Promise<void> run = receiver->Run();
        return run.attach(kj::mv(receiver));
      });
}

kj::Promise<void> PeerServer::ServeRpc(kj::Own<kj::AsyncIoStream> stream, std::string remote) {
  auto close = kj::newPromiseAndFulfiller<void>();
  auto served = std::make_shared<ServedConnection>(timer_, idle_timeout_, std::move(remote),
                                                   on_closed_, kj::mv(close.fulfiller));
  auto connection = kj::heap<RpcConnection>(kj::mv(stream), PeerReaderOptions(),
                                            kj::heap<PeerImpl>(member_, options_, served));
  // Ends (destroying the connection, which closes its socket) when the peer leaves or a stalled
  // snapshot transfer closes it (once it ended, `close` waits for nothing: a sink that outlives
  // it closes nothing).
  kj::Promise<void> ended = connection->OnDisconnect();
  return ended.exclusiveJoin(kj::mv(close.promise)).attach(kj::mv(connection));
}

// --- PeerClient ---------------------------------------------------------------------------------

PeerClient::PeerClient(kj::Network& network, kj::Timer& timer, PeerClientOptions options,
                       PeerClientCallbacks callbacks)
    : network_(network),
      timer_(timer),
      options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      backoff_(options_.reconnect_backoff_min),
      tasks_(*this) {
  RAFT_CHECK(options_.peer_id != raft::kNoNode) << "PeerClient without a peer id";
  RAFT_CHECK(callbacks_.on_unreachable && callbacks_.on_snapshot_status)
      << "PeerClient " << options_.peer_id << " without its callbacks";
  RAFT_CHECK(options_.queue_limit_messages > 0 && options_.snapshot_chunk_bytes > 0)
      << "PeerClient " << options_.peer_id << " with an empty queue or chunk";
}

PeerClient::~PeerClient() = default;

void PeerClient::Send(raft::Message message) {
  if (message.type == raft::MessageType::kSnap) {
    StartSnapshot(std::move(message));
    return;
  }
  if (state_ == State::kBackoff || queue_.size() >= options_.queue_limit_messages) {
    ReportUnreachable();
    return;
  }
  queue_.push_back(std::move(message));
  if (state_ == State::kIdle) {
    Connect();
  } else if (state_ == State::kConnected) {
    ScheduleFlush();
  }
}

void PeerClient::Connect() {
  state_ = State::kConnecting;
  const uint64_t generation = generation_;
  tasks_.add(
      ConnectWithin(network_, timer_, options_.address, options_.connect_timeout, options_.tls)
          .then(
              [this, generation](kj::Own<kj::AsyncIoStream> stream) {
                if (generation != generation_) return;
                EnableTcpKeepalive(*stream, options_.tcp_keepalive);
                stream_ = kj::mv(stream);
                acks_ = kj::heap<FrameDecoder>(kMaxPeerMessageBytes, PeerReaderOptions());
                link_tasks_ = kj::heap<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this));
                state_ = State::kConnected;
                urls_told_ = false;
                ack_outstanding_ = false;
                ack_asked_at_ = timer_.now() - kPeerAckInterval;
                link_tasks_->add(ReadAcks(generation));
                link_tasks_->add(KeepAlive(generation));
                // The magic first; batches queue behind it.
                Write(generation, kj::evalNow([this] {
                        return stream_->write(kRaftStreamMagic, sizeof(kRaftStreamMagic));
                      }));
              },
              [this, generation](kj::Exception&& e) {
                Fail(generation,
                     Unavailable(options_.peer_id, options_.address, e.getDescription().cStr()));
              }));
}

void PeerClient::ScheduleFlush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  // After the current turn: every message the member sends in this turn joins the batch.
  tasks_.add(kj::evalLater([this] {
    flush_scheduled_ = false;
    Flush();
  }));
}

void PeerClient::Flush() {
  if (state_ != State::kConnected || writing_ || (queue_.empty() && !keepalive_due_)) return;
  keepalive_due_ = false;
  size_t count = 0;
  uint64_t bytes = 0;
  while (count < queue_.size()) {
    const uint64_t next = WireBytes(queue_[count]);
    if (count > 0 && bytes + next > options_.batch_limit_bytes) break;
    bytes += next;
    ++count;
  }
  auto builder = kj::heap<capnp::MallocMessageBuilder>(
      std::min<uint64_t>(bytes / sizeof(capnp::word) + 64, 1 << 17));
  auto batch = builder->initRoot<rpc::RaftBatch>();
  batch.setClusterId(options_.cluster_id);
  if (!urls_told_ && options_.local_id != raft::kNoNode && !options_.local_peer_urls.empty()) {
    batch.setSenderId(options_.local_id);
    auto urls = batch.initSenderPeerUrls(options_.local_peer_urls.size());
    for (size_t i = 0; i < options_.local_peer_urls.size(); ++i) {
      const std::string& url = options_.local_peer_urls[i];
      urls.set(i, capnp::Text::Reader(url.data(), url.size()));
    }
  }
  urls_told_ = true;
  auto messages = batch.initMessages(count);
  for (size_t i = 0; i < count; ++i) {
    ToCapnp(queue_.front(), messages[i]);
    queue_.pop_front();
  }
  const uint64_t generation = generation_;
  const kj::TimePoint now = timer_.now();
  if (!ack_outstanding_ && now - ack_asked_at_ >= kPeerAckInterval) {
    batch.setAckWanted(true);
    ack_outstanding_ = true;
    ack_asked_at_ = now;
    WatchAck(generation, ++ack_seq_);
  }
  // Through evalNow, as every call on the stream here: a write to a connection already reset
  // fails at once, and must reject rather than throw out of Flush.
  capnp::MallocMessageBuilder& frame = *builder;
  Write(generation, kj::evalNow([this, &frame] {
                      return capnp::writeMessage(*stream_, frame);
                    }).attach(kj::mv(builder)));
}

void PeerClient::Write(uint64_t generation, kj::Promise<void> write) {
  writing_ = true;
  last_write_at_ = timer_.now();
  link_tasks_->add(timer_.timeoutAfter(options_.send_timeout, kj::mv(write))
                       .then(
                           [this, generation] {
                             if (generation != generation_) return;
                             writing_ = false;
                             Flush();
                           },
                           [this, generation](kj::Exception&& e) {
                             Fail(generation, Unavailable(options_.peer_id, options_.address,
                                                          e.getDescription().cStr()));
                           }));
}

kj::Promise<void> PeerClient::ReadAcks(uint64_t generation) {
  // Every whole acknowledgement read so far; a malformed one (or a refusal) ends the link.
  for (;;) {
    absl::StatusOr<capnp::MessageReader*> frame = acks_->Next();
    if (!frame.ok()) {
      Fail(generation, Unavailable(options_.peer_id, options_.address,
                                   absl::StrCat("acknowledgements: ", frame.status().message())));
      return kj::READY_NOW;
    }
    if (*frame == nullptr) break;
    absl::StatusOr<RaftStreamAck> ack = DecodeRaftAck(**frame);
    if (!ack.ok()) {
      Fail(generation, Unavailable(options_.peer_id, options_.address, ack.status().message()));
      return kj::READY_NOW;
    }
    if (!ack->refusal.empty()) {
      Fail(generation, Unavailable(options_.peer_id, options_.address, ack->refusal));
      return kj::READY_NOW;
    }
    ack_outstanding_ = false;
    backoff_ = options_.reconnect_backoff_min;
  }
  return ReadInto(*stream_, *acks_)
      .then(
          [this, generation](bool more) -> kj::Promise<void> {
            if (generation != generation_) return kj::READY_NOW;
            if (!more) {
              const absl::Status end = acks_->End();
              Fail(generation,
                   Unavailable(options_.peer_id, options_.address,
                               end.ok() ? "connection closed"
                                        : absl::StrCat("connection closed: ", end.message())));
              return kj::READY_NOW;
            }
            return ReadAcks(generation);
          },
          [this, generation](kj::Exception&& e) {
            Fail(generation,
                 Unavailable(options_.peer_id, options_.address, e.getDescription().cStr()));
          });
}

void PeerClient::WatchAck(uint64_t generation, uint64_t seq) {
  tasks_.add(timer_.afterDelay(options_.send_timeout).then([this, generation, seq] {
    if (generation != generation_ || !ack_outstanding_ || ack_seq_ != seq) return;
    Fail(generation, Unavailable(options_.peer_id, options_.address,
                                 "no acknowledgement within the send timeout"));
  }));
}

kj::Promise<void> PeerClient::KeepAlive(uint64_t generation) {
  return timer_.atTime(last_write_at_ + options_.keepalive_interval)
      .then([this, generation]() -> kj::Promise<void> {
        if (generation != generation_) return kj::READY_NOW;
        // A write still in the kernel's hands is the send timeout's to judge.
        if (!writing_ && timer_.now() - last_write_at_ >= options_.keepalive_interval) {
          keepalive_due_ = true;
          Flush();
        }
        // Past a write that has not ended yet: look again an interval later.
        if (timer_.now() - last_write_at_ >= options_.keepalive_interval) {
          return timer_.afterDelay(options_.keepalive_interval).then([this, generation] {
            return KeepAlive(generation);
          });
        }
        return KeepAlive(generation);
      });
}

void PeerClient::Fail(uint64_t generation, const absl::Status& why) {
  if (generation != generation_) return;
  ++generation_;
  // Destroyed on the next turn, the connection's reads and writes before its stream: this may run
  // inside a continuation of theirs.
  tasks_.add(kj::evalLater(
      [link_tasks = kj::mv(link_tasks_), acks = kj::mv(acks_), stream = kj::mv(stream_)]() mutable {
        link_tasks = nullptr;
        acks = nullptr;
        stream = nullptr;
      }));
  writing_ = false;
  keepalive_due_ = false;
  ack_outstanding_ = false;
  queue_.clear();
  state_ = State::kBackoff;
  ReportUnreachable();
  ReportError(why);
  tasks_.add(timer_.afterDelay(backoff_).then([this] { state_ = State::kIdle; }));
  backoff_ = std::min(backoff_ * 2, options_.reconnect_backoff_max);
}

void PeerClient::ReportUnreachable() {
  if (unreachable_pending_) return;
  unreachable_pending_ = true;
  tasks_.add(kj::evalLater([this] {
    unreachable_pending_ = false;
    callbacks_.on_unreachable(options_.peer_id);
  }));
}

void PeerClient::ReportError(const absl::Status& why) {
  if (!callbacks_.on_error) return;
  tasks_.add(kj::evalLater([this, why] { callbacks_.on_error(options_.peer_id, why); }));
}

void PeerClient::StartSnapshot(raft::Message message) {
  if (snapshot_in_flight_ || message.snapshot == nullptr) {
    ReportError(Unavailable(options_.peer_id, options_.address,
                            snapshot_in_flight_ ? "a snapshot transfer is already in flight"
                                                : "kSnap message without its snapshot"));
    tasks_.add(kj::evalLater([this] { callbacks_.on_snapshot_status(options_.peer_id, false); }));
    return;
  }
  snapshot_in_flight_ = true;
  tasks_.add(SendSnapshot(std::move(message))
                 .then(
                     [this] {
                       snapshot_in_flight_ = false;
                       callbacks_.on_snapshot_status(options_.peer_id, true);
                     },
                     [this](kj::Exception&& e) {
                       snapshot_in_flight_ = false;
                       if (callbacks_.on_error) {
                         callbacks_.on_error(
                             options_.peer_id,
                             absl::AbortedError(absl::StrCat(
                                 "peer ", options_.peer_id, " at ", options_.address,
                                 ": snapshot transfer failed: ", e.getDescription().cStr())));
                       }
                       callbacks_.on_snapshot_status(options_.peer_id, false);
                     }));
}

kj::Promise<void> PeerClient::SendSnapshot(raft::Message message) {
  return ConnectWithin(network_, timer_, options_.address, options_.connect_timeout, options_.tls)
      .then([this, message = std::move(message)](kj::Own<kj::AsyncIoStream> stream) mutable {
        EnableTcpKeepalive(*stream, options_.tcp_keepalive);
        // Every answer the receiver sends (a chunk's acknowledgement, the return of `done`) is
        // progress; the chunks the flow-control window lets go at once are not.
        snapshot_progress_at_ = timer_.now();
        auto connection = kj::heap<RpcConnection>(
            kj::heap<ReadProgressStream>(kj::mv(stream), timer_, snapshot_progress_at_),
            PeerReaderOptions());
        auto request = connection->Bootstrap<rpc::Peer>().sendSnapshotRequest();
        request.setClusterId(options_.cluster_id);
        ToCapnp(message, request.initMessage());
        rpc::SnapshotSink::Client sink = request.send().getSink();
        // Aborted (the connection destroyed with the promise) once the receiver has answered
        // nothing for the stall bound: one that stopped reading or answering.
        kj::Promise<void> stalled = UntilIdle(timer_, options_.snapshot_stall_timeout, [this] {
                                      return snapshot_progress_at_;
                                    }).then([this]() -> kj::Promise<void> {
          return KJ_EXCEPTION(DISCONNECTED, kj::str("no snapshot chunk acknowledged for ",
                                                    Millis(options_.snapshot_stall_timeout).c_str(),
                                                    " (the idle bound); transfer aborted"));
        });
        return WriteChunks(kj::mv(sink), message.snapshot, 0, 0)
            .exclusiveJoin(kj::mv(stalled))
            .attach(kj::mv(connection));
      });
}

kj::Promise<void> PeerClient::WriteChunks(rpc::SnapshotSink::Client sink,
                                          std::shared_ptr<const raft::Snapshot> snapshot,
                                          uint64_t offset, uint32_t crc) {
  const absl::string_view data = snapshot->data.view();
  if (offset == data.size()) {
    auto done = sink.doneRequest();
    done.setCrc32c(crc);
    done.setBytes(data.size());
    return done.send().ignoreResult();
  }
  const absl::string_view chunk = data.substr(offset, options_.snapshot_chunk_bytes);
  auto write = sink.writeRequest();
  write.setChunk(
      capnp::Data::Reader(reinterpret_cast<const kj::byte*>(chunk.data()), chunk.size()));
  // `send` resolves when the stream's flow control lets the next chunk go, not when this one
  // is processed; errors surface at a later write or at done.
  return write.send().then(
      [this, sink = kj::mv(sink), snapshot = std::move(snapshot), offset, chunk, crc]() mutable {
        return WriteChunks(kj::mv(sink), std::move(snapshot), offset + chunk.size(),
                           store::Crc32c(chunk, crc));
      });
}

// Every task handles its own failure; nothing reaches here.
void PeerClient::taskFailed(kj::Exception&& exception) {
  RAFT_CHECK(false) << "PeerClient " << options_.peer_id
                    << " task failed: " << exception.getDescription().cStr();
}

// --- PeerForwarder ------------------------------------------------------------------------------

PeerForwarder::PeerForwarder(kj::Network& network, kj::Timer& timer, uint64_t cluster_id,
                             TcpKeepalive keepalive,
                             std::function<void(raft::NodeId, const std::string&)> on_closed)
    : network_(network),
      timer_(timer),
      cluster_id_(cluster_id),
      keepalive_(keepalive),
      on_closed_(std::move(on_closed)),
      tasks_(*this) {}

PeerForwarder::~PeerForwarder() noexcept {}

kj::Promise<absl::StatusOr<server::Response>> PeerForwarder::Forward(raft::NodeId peer,
                                                                     std::string address,
                                                                     server::Request request,
                                                                     kj::Duration timeout,
                                                                     TlsContext* tls) {
  using Result = absl::StatusOr<server::Response>;
  const server::RequestType type = request.type;
  auto failed = [peer, address](absl::string_view why) -> Result {
    return Unavailable(peer, address, absl::StrCat("forward: ", why));
  };
  // The connection the call went out on, and how many calls it had answered then.
  struct Sent {
    bool sent = false;
    uint64_t generation = 0;
    uint64_t answers = 0;
  };
  auto sent = std::make_shared<Sent>();
  // Any answer, a refusal included, shows the connection alive.
  auto answered = [this, peer, sent] {
    auto it = links_.find(peer);
    if (sent->sent && it != links_.end() && it->second.generation == sent->generation) {
      ++it->second.answers;
    }
  };
  kj::Promise<Result> call =
      Connected(peer, address, timeout, tls)
          .then([this, peer, sent, request = std::move(request)](rpc::Peer::Client client) {
            const Link& link = links_[peer];
            *sent = Sent{true, link.generation, link.answers};
            auto call = client.forwardRequest();
            call.setClusterId(cluster_id_);
            ToCapnp(request, call.initRequest());
            return call.send();
          })
          .then([type, answered](capnp::Response<rpc::Peer::ForwardResults> results) -> Result {
            answered();
            return FromCapnp(results.getResponse(), type);
          })
          .catch_([this, peer, failed, answered](kj::Exception&& e) {
            // A broken connection is dropped; the next forward connects afresh.
            if (e.getType() == kj::Exception::Type::DISCONNECTED) {
              Drop(peer);
            } else {
              answered();
            }
            return failed(e.getDescription().cStr());
          });
  return timer_.afterDelay(timeout)
      .then([this, peer, sent, failed, timeout] {
        if (sent->sent && DropIfSilent(peer, sent->generation, sent->answers)) {
          if (on_closed_) {
            on_closed_(peer, absl::StrCat("closed the forwarding connection: no answer for ",
                                          Millis(timeout), " and none to any call since"));
          }
          return failed("no answer in time; the connection was closed");
        }
        return failed("no answer in time");
      })
      .exclusiveJoin(kj::mv(call));
}

bool PeerForwarder::DropIfSilent(raft::NodeId peer, uint64_t generation, uint64_t answers) {
  auto it = links_.find(peer);
  if (it == links_.end() || it->second.connection.get() == nullptr ||
      it->second.generation != generation || it->second.answers != answers) {
    return false;
  }
  Drop(peer);
  return true;
}

kj::Promise<rpc::Peer::Client> PeerForwarder::Connected(raft::NodeId peer,
                                                        const std::string& address,
                                                        kj::Duration timeout, TlsContext* tls) {
  Link& link = links_[peer];
  if (link.address != address) {
    Drop(peer);  // the member moved (member update)
    links_[peer].address = address;
  }
  if (links_[peer].connection.get() != nullptr) return links_[peer].peer;
  return ConnectWithin(network_, timer_, address, std::min(timeout, kPeerConnectTimeout), tls)
      .then([this, peer, address](kj::Own<kj::AsyncIoStream> stream) -> rpc::Peer::Client {
        Link& link = links_[peer];
        // Another forward may have connected meanwhile: use its connection, close this one.
        if (link.connection.get() != nullptr || link.address != address) return link.peer;
        EnableTcpKeepalive(*stream, keepalive_);
        link.connection = kj::heap<RpcConnection>(kj::mv(stream), PeerReaderOptions());
        link.peer = link.connection->Bootstrap<rpc::Peer>();
        const uint64_t generation = ++link.generation;
        tasks_.add(link.connection->OnDisconnect().then(
            [this, peer, generation] { DropIf(peer, generation); },
            [this, peer, generation](kj::Exception&&) { DropIf(peer, generation); }));
        return link.peer;
      });
}

void PeerForwarder::DropIf(raft::NodeId peer, uint64_t generation) {
  auto it = links_.find(peer);
  if (it != links_.end() && it->second.generation == generation) Drop(peer);
}

void PeerForwarder::Drop(raft::NodeId peer) {
  auto it = links_.find(peer);
  if (it == links_.end()) return;
  Link& link = it->second;
  ++link.generation;
  link.peer = nullptr;
  // Destroyed on the next turn: this may run inside a continuation of the connection's own.
  if (link.connection.get() != nullptr) {
    tasks_.add(kj::evalLater([connection = kj::mv(link.connection)] {}));
  }
}

// Every task handles its own failure; nothing reaches here.
void PeerForwarder::taskFailed(kj::Exception&& exception) {
  RAFT_CHECK(false) << "PeerForwarder task failed: " << exception.getDescription().cStr();
}

// --- FetchMembers -------------------------------------------------------------------------------

kj::Promise<absl::StatusOr<std::vector<server::Member>>> FetchMembers(
    kj::Network& network, kj::Timer& timer, std::string address, uint64_t cluster_id,
    kj::Duration timeout, TlsContext* tls) {
  return FetchCluster(network, timer, std::move(address), cluster_id, timeout, tls)
      .then([](absl::StatusOr<FetchedCluster> cluster)
                -> absl::StatusOr<std::vector<server::Member>> {
        if (!cluster.ok()) return cluster.status();
        return std::move(cluster->members);
      });
}

kj::Promise<absl::StatusOr<FetchedCluster>> FetchCluster(kj::Network& network, kj::Timer& timer,
                                                         std::string address, uint64_t cluster_id,
                                                         kj::Duration timeout, TlsContext* tls) {
  using Result = absl::StatusOr<FetchedCluster>;
  auto failed = [address](absl::string_view why) -> Result {
    return absl::UnavailableError(absl::StrCat("members from ", address, ": ", why));
  };
  kj::Promise<Result> fetch =
      ConnectWithin(network, timer, address, timeout, tls)
          .then([cluster_id](kj::Own<kj::AsyncIoStream> stream) {
            EnableTcpKeepalive(*stream, TcpKeepalive());
            auto connection = kj::heap<RpcConnection>(kj::mv(stream), PeerReaderOptions());
            auto request = connection->Bootstrap<rpc::Peer>().membersRequest();
            request.setClusterId(cluster_id);
            return request.send()
                .then([](capnp::Response<rpc::Peer::MembersResults> response) -> Result {
                  FetchedCluster cluster;
                  cluster.cluster_id = response.getClusterId();
                  for (auto m : response.getMembers()) {
                    absl::StatusOr<server::Member> member = FromCapnp(m);
                    if (!member.ok()) return member.status();
                    cluster.members.push_back(std::move(*member));
                  }
                  return cluster;
                })
                .attach(kj::mv(connection));
          })
          .catch_([failed](kj::Exception&& e) { return failed(e.getDescription().cStr()); });
  return timer.afterDelay(timeout)
      .then([failed] { return failed("timed out"); })
      .exclusiveJoin(kj::mv(fetch));
}

// --- Cluster id mismatch ------------------------------------------------------------------------

namespace {
constexpr absl::string_view kRemovedMarker = "refused: removed member ";

// The hexadecimal id that follows `marker` in a refusal's text, up to `end`; nullopt without one.
std::optional<uint64_t> HexIdAfter(const absl::Status& refusal, absl::string_view marker,
                                   char end) {
  const absl::string_view text = refusal.message();
  const size_t at = text.find(marker);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view rest = text.substr(at + marker.size());
  rest = rest.substr(0, rest.find(end));
  uint64_t id = 0;
  if (!absl::SimpleHexAtoi(rest, &id)) return std::nullopt;
  return id;
}
}  // namespace

std::string MemberRemovedText(raft::NodeId id) {
  return absl::StrCat(kRemovedMarker, absl::Hex(id),
                      ": the member has been permanently removed from the cluster");
}

std::optional<raft::NodeId> MemberRemovedOf(const absl::Status& refusal) {
  return HexIdAfter(refusal, kRemovedMarker, ':');
}

std::optional<uint64_t> ClusterMismatchOf(const absl::Status& refusal) {
  return HexIdAfter(refusal, "cluster id mismatch: local ", ',');
}

}  // namespace kvstore::net
