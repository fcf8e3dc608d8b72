#include "node/testing/link_proxy.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kj/async-io.h"
#include "kj/timer.h"
#include "net/cross_thread.h"

namespace kvstore::node::testing {
namespace {

// Bytes read from one stream per call.
constexpr size_t kChunkBytes = 64 << 10;
// Bytes read but not yet forwarded in one direction (delayed); beyond it the proxy stops reading
// that stream until the writer catches up, so a delayed link slows its sender as TCP would.
constexpr size_t kQueueLimitBytes = 16 << 20;

std::string MemberName(int member) {
  return member == kUnknownMember ? "unknown" : absl::StrCat("n", member + 1);
}

// "0100007F:1F90" (/proc/net/tcp's little-endian IPv4 and port) as 127.0.0.1's port, or -1.
int LoopbackPortOf(const std::string& field) {
  const size_t colon = field.find(':');
  if (colon == std::string::npos || field.substr(0, colon) != "0100007F") return -1;
  uint32_t port = 0;
  if (!absl::SimpleHexAtoi(field.substr(colon + 1), &port) || port > 0xFFFF) return -1;
  return static_cast<int>(port);
}

// The inode of the socket from 127.0.0.1:`local_port` to 127.0.0.1:`remote_port`, or "".
std::string SocketInode(uint16_t local_port, uint16_t remote_port) {
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);  // the header
  while (std::getline(tcp, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    if (fields.size() < 10) continue;
    if (LoopbackPortOf(fields[1]) == local_port && LoopbackPortOf(fields[2]) == remote_port) {
      return fields[9];
    }
  }
  return "";
}

bool ProcessHoldsSocket(pid_t pid, const std::string& target) {
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  DIR* fds = opendir(dir.c_str());
  if (fds == nullptr) return false;
  bool found = false;
  char link[128];
  while (dirent* entry = readdir(fds)) {
    if (entry->d_name[0] == '.') continue;
    const ssize_t n = readlink(absl::StrCat(dir, "/", entry->d_name).c_str(), link, sizeof(link));
    if (n > 0 && std::string(link, static_cast<size_t>(n)) == target) {
      found = true;
      break;
    }
  }
  closedir(fds);
  return found;
}

}  // namespace

int FindSocketOwner(uint16_t local_port, uint16_t remote_port,
                    const std::vector<pid_t>& candidates) {
  const std::string inode = SocketInode(local_port, remote_port);
  if (inode.empty() || inode == "0") return -1;
  const std::string target = absl::StrCat("socket:[", inode, "]");
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i] > 0 && ProcessHoldsSocket(candidates[i], target)) return static_cast<int>(i);
  }
  return -1;
}

class LinkProxy::Impl final : public kj::TaskSet::ErrorHandler {
 public:
  explicit Impl(uint64_t seed) : rng_(seed == 0 ? 0x9E3779B97F4A7C15ull : seed) {}

  absl::Status StartThread() {
    std::promise<void> ready;
    std::future<void> started = ready.get_future();
    thread_ = std::thread([this, &ready]() { Run(ready); });
    started.wait();
    return absl::OkStatus();
  }

  void StopThread() {
    net::ExecuteSync(*executor_, [this]() { stop_->fulfill(); });
    thread_.join();
  }

  template <typename Func>
  auto OnLoop(Func&& func) {
    return net::ExecuteSync(*executor_, kj::fwd<Func>(func));
  }

  // --- On the proxy's thread ---------------------------------------------------------------

  kj::Promise<absl::StatusOr<uint16_t>> AddDestination(int member, uint16_t target_port) {
    return io_->provider->getNetwork()
        .parseAddress("127.0.0.1", 0)
        .then([this, member,
               target_port](kj::Own<kj::NetworkAddress> address) -> absl::StatusOr<uint16_t> {
          auto destination = kj::heap<Destination>();
          destination->member = member;
          destination->target_port = target_port;
          destination->listener = address->listen();
          destination->port = static_cast<uint16_t>(destination->listener->getPort());
          Destination& ref = *destination;
          destination->accepting = AcceptLoop(ref).eagerlyEvaluate(nullptr);
          const uint16_t port = ref.port;
          destinations_.push_back(kj::mv(destination));
          return port;
        });
  }

  void SetProcess(int member, pid_t pid) {
    if (member < 0) return;
    if (processes_.size() <= static_cast<size_t>(member)) processes_.resize(member + 1, 0);
    processes_[member] = pid;
  }

  void SetFault(int from, int to, const LinkFault& fault) {
    faults_[{from, to}] = fault;
    std::vector<uint64_t> doomed;
    for (auto& [id, connection] : connections_) {
      if (connection->from != from || connection->to != to) continue;
      // A refused link resets what is open; a link that stops dropping resets what lost bytes
      // (its byte streams have a hole, as a TCP connection that timed out).
      if (fault.cut == LinkFault::Cut::kRefuse ||
          (fault.cut != LinkFault::Cut::kBlackhole && connection->damaged)) {
        doomed.push_back(id);
      }
    }
    for (uint64_t id : doomed) Reset(id);
  }

  void HealAll() {
    std::vector<std::pair<int, int>> links;
    for (const auto& [link, fault] : faults_) links.push_back(link);
    for (const auto& [from, to] : links) SetFault(from, to, LinkFault::Healthy());
  }

  LinkStats Stats(int from, int to) {
    auto it = stats_.find({from, to});
    return it == stats_.end() ? LinkStats{} : it->second;
  }

  std::string Describe() {
    std::string text;
    for (const auto& [link, stats] : stats_) {
      absl::StrAppend(&text, MemberName(link.first), "->", MemberName(link.second),
                      " conns=", stats.connections, " refused=", stats.refused,
                      " resets=", stats.resets, " forwarded=", stats.bytes_forwarded,
                      " dropped=", stats.bytes_dropped, "\n");
    }
    return text;
  }

 private:
  struct Destination {
    int member = 0;
    uint16_t target_port = 0;
    uint16_t port = 0;
    kj::Own<kj::ConnectionReceiver> listener;
    kj::Promise<void> accepting = nullptr;
  };

  struct Chunk {
    kj::TimePoint due = kj::origin<kj::TimePoint>();
    kj::Array<kj::byte> bytes;
  };

  // One byte stream of a connection: read from `source`, queued until due, written to `sink`.
  struct Direction {
    kj::AsyncIoStream* source = nullptr;
    kj::AsyncIoStream* sink = nullptr;  // null while the member side is not connected
    std::deque<Chunk> queue;
    size_t queued_bytes = 0;
    bool writing = false;
    bool eof = false;
    bool done = false;  // eof seen and everything before it written
    kj::Own<kj::PromiseFulfiller<void>> space;
    kj::Promise<void> reader = nullptr;
    kj::Promise<void> writer = nullptr;
  };

  struct Connection {
    uint64_t id = 0;
    int from = kUnknownMember;
    int to = 0;
    bool damaged = false;  // bytes were dropped
    kj::Own<kj::AsyncIoStream> dialer;
    kj::Own<kj::AsyncIoStream> member;
    kj::Promise<void> connecting = nullptr;
    // Destroyed before the streams they read and write.
    Direction forward;   // dialer -> member
    Direction backward;  // member -> dialer
  };

  void Run(std::promise<void>& ready) {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    io_ = &io;
    executor_ = &kj::getCurrentThreadExecutor();
    auto stop = kj::newPromiseAndFulfiller<void>();
    stop_ = kj::mv(stop.fulfiller);
    tasks_ = kj::heap<kj::TaskSet>(*this);
    ready.set_value();
    stop.promise.wait(io.waitScope);
    connections_.clear();
    destinations_.clear();
    tasks_ = nullptr;
    io_ = nullptr;
  }

  void taskFailed(kj::Exception&&) override {}

  LinkFault FaultOf(int from, int to) const {
    auto it = faults_.find({from, to});
    return it == faults_.end() ? LinkFault{} : it->second;
  }

  uint64_t NextRandom() {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return rng_;
  }

  kj::Promise<void> AcceptLoop(Destination& destination) {
    return destination.listener->accept().then(
        [this, &destination](kj::Own<kj::AsyncIoStream> stream) {
          Accepted(destination, kj::mv(stream));
          return AcceptLoop(destination);
        });
  }

  void Accepted(Destination& destination, kj::Own<kj::AsyncIoStream> stream) {
    sockaddr_storage address{};
    uint length = sizeof(address);
    int from = kUnknownMember;
    try {
      stream->getpeername(reinterpret_cast<sockaddr*>(&address), &length);
      if (address.ss_family == AF_INET) {
        const uint16_t source_port = ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
        const int owner = FindSocketOwner(source_port, destination.port, processes_);
        if (owner >= 0) from = owner;
      }
    } catch (const kj::Exception&) {
      return;  // the dialer is already gone
    }
    const int to = destination.member;
    LinkStats& stats = stats_[{from, to}];
    ++stats.connections;
    const LinkFault fault = FaultOf(from, to);
    if (fault.cut == LinkFault::Cut::kRefuse) {
      ++stats.refused;
      ResetStream(*stream);
      return;
    }
    auto connection = kj::heap<Connection>();
    Connection& c = *connection;
    c.id = ++next_connection_id_;
    c.from = from;
    c.to = to;
    c.dialer = kj::mv(stream);
    c.forward.source = c.dialer.get();
    c.backward.sink = c.dialer.get();
    connections_[c.id] = kj::mv(connection);
    const uint64_t id = c.id;
    c.forward.reader =
        Read(c, c.forward).eagerlyEvaluate([this, id](kj::Exception&&) { Close(id); });
    if (fault.cut == LinkFault::Cut::kBlackhole) {
      // Never connected: what the dialer sends is dropped, and it hears nothing back.
      c.damaged = true;
      return;
    }
    c.connecting = io_->provider->getNetwork()
                       .parseAddress("127.0.0.1", destination.target_port)
                       .then([](kj::Own<kj::NetworkAddress> address) { return address->connect(); })
                       .then(
                           [this, id](kj::Own<kj::AsyncIoStream> member) {
                             auto it = connections_.find(id);
                             if (it == connections_.end()) return;
                             Connection& c = *it->second;
                             c.member = kj::mv(member);
                             c.forward.sink = c.member.get();
                             c.backward.source = c.member.get();
                             c.backward.reader =
                                 Read(c, c.backward).eagerlyEvaluate([this, id](kj::Exception&&) {
                                   Close(id);
                                 });
                             Kick(c, c.forward);
                           },
                           [this, id](kj::Exception&&) {
                             // The member is down: the dialer sees its connection reset.
                             Reset(id, /*count=*/false);
                           })
                       .eagerlyEvaluate(nullptr);
  }

  kj::Promise<void> Read(Connection& c, Direction& d) {
    auto buffer = kj::heapArray<kj::byte>(kChunkBytes);
    kj::byte* data = buffer.begin();
    return d.source->tryRead(data, 1, kChunkBytes)
        .then([this, &c, &d, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
          if (n == 0) {
            d.eof = true;
            Kick(c, d);
            return kj::READY_NOW;
          }
          const LinkFault fault = FaultOf(c.from, c.to);
          LinkStats& stats = stats_[{c.from, c.to}];
          if (fault.cut == LinkFault::Cut::kRefuse ||
              (fault.reset_per_chunk_probability > 0 &&
               static_cast<double>(NextRandom() >> 11) * 0x1.0p-53 <
                   fault.reset_per_chunk_probability)) {
            Defer([this, id = c.id]() { Reset(id); });
            return kj::NEVER_DONE;
          }
          if (fault.cut == LinkFault::Cut::kBlackhole || c.damaged) {
            // A connection that lost bytes forwards nothing more: its stream has a hole.
            c.damaged = true;
            stats.bytes_dropped += n;
            return Read(c, d);
          }
          Chunk chunk;
          chunk.due = io_->provider->getTimer().now() + fault.delay_ms * kj::MILLISECONDS;
          chunk.bytes = kj::heapArray<kj::byte>(buffer.begin(), n);
          d.queued_bytes += n;
          d.queue.push_back(kj::mv(chunk));
          Kick(c, d);
          if (d.queued_bytes <= kQueueLimitBytes) return Read(c, d);
          auto paf = kj::newPromiseAndFulfiller<void>();
          d.space = kj::mv(paf.fulfiller);
          return paf.promise.then([this, &c, &d]() { return Read(c, d); });
        });
  }

  // Starts the writer of `d` unless it runs (or cannot run yet).
  void Kick(Connection& c, Direction& d) {
    if (d.writing || d.sink == nullptr) return;
    d.writing = true;
    const uint64_t id = c.id;
    d.writer = Write(c, d).eagerlyEvaluate([this, id](kj::Exception&&) { Close(id); });
  }

  kj::Promise<void> Write(Connection& c, Direction& d) {
    if (d.queue.empty()) {
      d.writing = false;
      if (d.eof && !d.done) {
        d.done = true;
        d.sink->shutdownWrite();
        if (c.forward.done && c.backward.done) Defer([this, id = c.id]() { Close(id); });
      }
      return kj::READY_NOW;
    }
    Chunk& front = d.queue.front();
    return io_->provider->getTimer()
        .atTime(front.due)
        .then([&d]() {
          Chunk& front = d.queue.front();
          return d.sink->write(front.bytes.begin(), front.bytes.size());
        })
        .then([this, &c, &d]() {
          const size_t n = d.queue.front().bytes.size();
          d.queue.pop_front();
          d.queued_bytes -= n;
          stats_[{c.from, c.to}].bytes_forwarded += n;
          if (d.space.get() != nullptr && d.queued_bytes <= kQueueLimitBytes) {
            d.space->fulfill();
            d.space = nullptr;
          }
          return Write(c, d);
        });
  }

  static void ResetStream(kj::AsyncIoStream& stream) {
    const linger hard{1, 0};
    try {
      stream.setsockopt(SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    } catch (const kj::Exception&) {
    }
  }

  // Resets both sides of a connection (RST) and forgets it.
  void Reset(uint64_t id, bool count = true) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    Connection& c = *it->second;
    if (count) ++stats_[{c.from, c.to}].resets;
    if (c.dialer.get() != nullptr) ResetStream(*c.dialer);
    if (c.member.get() != nullptr) ResetStream(*c.member);
    Defer([this, id]() { Close(id); });
  }

  // Forgets a connection; never called from inside one of its own promises (Defer).
  void Close(uint64_t id) {
    Defer([this, id]() { connections_.erase(id); });
  }

  void Defer(std::function<void()> action) { tasks_->add(kj::evalLater(kj::mv(action))); }

  kj::AsyncIoContext* io_ = nullptr;
  const kj::Executor* executor_ = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> stop_;
  std::thread thread_;
  uint64_t rng_;
  uint64_t next_connection_id_ = 0;
  std::vector<pid_t> processes_;
  std::map<std::pair<int, int>, LinkFault> faults_;
  std::map<std::pair<int, int>, LinkStats> stats_;
  std::vector<kj::Own<Destination>> destinations_;
  std::map<uint64_t, kj::Own<Connection>> connections_;
  kj::Own<kj::TaskSet> tasks_;
};

LinkProxy::LinkProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<LinkProxy>> LinkProxy::Start(uint64_t seed) {
  auto impl = std::make_unique<Impl>(seed);
  if (absl::Status s = impl->StartThread(); !s.ok()) return s;
  return std::unique_ptr<LinkProxy>(new LinkProxy(std::move(impl)));
}

LinkProxy::~LinkProxy() { impl_->StopThread(); }

absl::StatusOr<uint16_t> LinkProxy::AddDestination(int member, uint16_t target_port) {
  try {
    return impl_->OnLoop([&]() { return impl_->AddDestination(member, target_port); });
  } catch (const kj::Exception& e) {
    return absl::UnavailableError(
        absl::StrCat("link proxy: cannot listen: ", e.getDescription().cStr()));
  }
}

void LinkProxy::SetProcess(int member, pid_t pid) {
  impl_->OnLoop([&]() { impl_->SetProcess(member, pid); });
}

void LinkProxy::SetFault(int from, int to, const LinkFault& fault) {
  impl_->OnLoop([&]() { impl_->SetFault(from, to, fault); });
}

void LinkProxy::Cut(const std::vector<int>& a, const std::vector<int>& b, const LinkFault& fault) {
  impl_->OnLoop([&]() {
    for (int x : a) {
      for (int y : b) {
        impl_->SetFault(x, y, fault);
        impl_->SetFault(y, x, fault);
      }
    }
  });
}

void LinkProxy::HealAll() {
  impl_->OnLoop([&]() { impl_->HealAll(); });
}

LinkStats LinkProxy::Stats(int from, int to) const {
  return impl_->OnLoop([&]() { return impl_->Stats(from, to); });
}

std::string LinkProxy::Describe() const {
  return impl_->OnLoop([&]() { return impl_->Describe(); });
}

}  // namespace kvstore::node::testing
