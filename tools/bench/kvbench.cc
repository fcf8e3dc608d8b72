// kvbench: a load generator with the flags, workloads and report of etcd's benchmark tool
// (tools/benchmark), so kvnode and etcd can be loaded the same way.
//
//   kvbench [--endpoints=127.0.0.1:2379] [--conns=1] [--clients=1] <workload> [flags]
//     put            [--total] [--key-size] [--val-size] [--key-space-size] [--sequential-keys]
//     range KEY [END] [--total] [--consistency=l|s]
//     txn-put        [--total] [--key-size] [--val-size] [--key-space-size] [--txn-ops]
//     watch-latency  [--put-total] [--put-rate] [--key-size] [--val-size]
//
// Concurrency: --clients requests in flight at once over --conns connections (one net::Client,
// so one connection, per conn; client i uses conn i mod conns), all on one kj event loop: a
// client issues its next request when its previous one is answered. No threads.
//
// Bounds: --total requests (put, range, txn-put) or --put-total puts (watch-latency), and
// --max-duration of wall time, after which no new request starts and the report covers what
// was answered. Every request is itself bounded by the client's per-try timeout.
//
// Report (stdout, etcd's format): total time, slowest, fastest, average, stddev, requests/s, a
// latency histogram of 10 buckets, percentiles, and the errors by message. A progress bar runs
// on stderr meanwhile (redrawn in place on a terminal, once a second otherwise).
//
// Keys, as etcd's benchmark makes them: the request number (or a random number below
// --key-space-size) as a zig-zag varint at the start of --key-size zero bytes. Values are
// --val-size random bytes, the same for every request.

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/mvcc/types.h"
#include "core/server/server.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "kj/async-io.h"
#include "kj/vector.h"
#include "net/client.h"
#include "net/etcd/rpc.grpc.pb.h"
#include "net/tls.h"
#include "tools/ctl/flags.h"

namespace kvstore::bench {
namespace {

using Clock = std::chrono::steady_clock;
using server::Request;
using server::RequestType;
using server::Response;

constexpr int kExitSuccess = 0;
constexpr int kExitError = 1;
constexpr int64_t kDefaultTotal = 10000;
constexpr int64_t kDefaultWatchPutTotal = 1000;
constexpr int64_t kDefaultWatchPutRate = 100;  // puts per second
constexpr int64_t kDefaultWatchKeyBytes = 32;
constexpr absl::Duration kDefaultMaxDuration = absl::Minutes(10);
// etcd's report: 10 histogram buckets, bars of at most 40 marks.
constexpr int kHistogramBuckets = 10;
constexpr int kHistogramBarMarks = 40;
constexpr double kPercentiles[] = {10, 25, 50, 75, 90, 95, 99, 99.9};
constexpr int kProgressBarMarks = 60;
constexpr absl::Duration kProgressIntervalTerminal = absl::Milliseconds(100);
constexpr absl::Duration kProgressIntervalLog = absl::Seconds(1);
// Values are random but the same from run to run, so runs compare.
constexpr uint64_t kValueSeed = 1;

kj::Duration ToKj(absl::Duration d) { return absl::ToInt64Nanoseconds(d) * kj::NANOSECONDS; }

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Go's binary.PutVarint (zig-zag, then base-128), at the start of `key`.
void PutVarint(int64_t value, std::string& key) {
  uint64_t u = (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
  size_t i = 0;
  while (u >= 0x80) {
    key[i++] = static_cast<char>(u | 0x80);
    u >>= 7;
  }
  key[i] = static_cast<char>(u);
}

// Latencies and errors of one run, and etcd's report of them.
class Report {
 public:
  void Add(double seconds) { latencies_.push_back(seconds); }
  void AddError(const absl::Status& status) { ++errors_[std::string(status.message())]; }
  size_t done() const { return latencies_.size() + error_count(); }
  size_t error_count() const {
    size_t n = 0;
    for (const auto& [message, count] : errors_) n += count;
    return n;
  }

  std::string Render(double total_seconds) {
    std::sort(latencies_.begin(), latencies_.end());
    std::string out = "\nSummary:\n";
    const size_t n = latencies_.size();
    double sum = 0;
    for (double l : latencies_) sum += l;
    const double average = n > 0 ? sum / n : 0;
    double squares = 0;
    for (double l : latencies_) squares += (l - average) * (l - average);
    const double stddev = n > 0 ? std::sqrt(squares / n) : 0;
    const double fastest = n > 0 ? latencies_.front() : 0;
    const double slowest = n > 0 ? latencies_.back() : 0;
    absl::StrAppendFormat(&out, "  Total:\t%4.4f secs.\n", total_seconds);
    absl::StrAppendFormat(&out, "  Slowest:\t%4.4f secs.\n", slowest);
    absl::StrAppendFormat(&out, "  Fastest:\t%4.4f secs.\n", fastest);
    absl::StrAppendFormat(&out, "  Average:\t%4.4f secs.\n", average);
    absl::StrAppendFormat(&out, "  Stddev:\t%4.4f secs.\n", stddev);
    absl::StrAppendFormat(&out, "  Requests/sec:\t%4.4f\n",
                          total_seconds > 0 ? n / total_seconds : 0);
    if (n > 0) {
      out += Histogram(fastest, slowest);
      out += "\nLatency distribution:\n";
      for (double p : kPercentiles) {
        absl::StrAppendFormat(&out, "  %g%% in %4.4f secs.\n", p, Percentile(p));
      }
    }
    if (!errors_.empty()) {
      out += "\nError distribution:\n";
      for (const auto& [message, count] : errors_) {
        absl::StrAppendFormat(&out, "  [%d]\t%s\n", count, message);
      }
    }
    return out;
  }

  // Nearest rank: the smallest latency with at least p% of the latencies at or below it.
  double Percentile(double p) const {
    if (latencies_.empty()) return 0;
    const double rank = std::ceil(p / 100 * latencies_.size());
    const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
    return latencies_[std::min(index, latencies_.size() - 1)];
  }

 private:
  std::string Histogram(double fastest, double slowest) const {
    double buckets[kHistogramBuckets + 1];
    size_t counts[kHistogramBuckets + 1] = {};
    const double width = (slowest - fastest) / kHistogramBuckets;
    for (int i = 0; i < kHistogramBuckets; ++i) buckets[i] = fastest + width * i;
    buckets[kHistogramBuckets] = slowest;
    size_t bucket = 0;
    size_t most = 0;
    for (size_t i = 0; i < latencies_.size();) {
      if (latencies_[i] <= buckets[bucket] || bucket == kHistogramBuckets) {
        most = std::max(most, ++counts[bucket]);
        ++i;
      } else {
        ++bucket;
      }
    }
    std::string out = "\nResponse time histogram:\n";
    for (int i = 0; i <= kHistogramBuckets; ++i) {
      const size_t marks = most > 0 ? counts[i] * kHistogramBarMarks / most : 0;
      std::string bar;
      for (size_t m = 0; m < marks; ++m) bar += "∎";
      absl::StrAppendFormat(&out, "  %4.4f [%d]\t|%s\n", buckets[i], counts[i], bar);
    }
    return out;
  }

  std::vector<double> latencies_;
  std::map<std::string, size_t> errors_;
};

// pb's "Bom !" bar on stderr: " 1200 / 2000 Booooooooommm      !  60.00% 1s".
class Progress {
 public:
  Progress(kj::Timer& timer, int64_t total, const Report& report)
      : timer_(timer),
        total_(total),
        report_(report),
        start_(Clock::now()),
        terminal_(isatty(STDERR_FILENO) == 1) {}

  kj::Promise<void> Run() {
    return timer_.afterDelay(ToKj(terminal_ ? kProgressIntervalTerminal : kProgressIntervalLog))
        .then([this] {
          Draw(terminal_ ? "\r" : "\n");
          return Run();
        });
  }
  void Finish() {
    Draw(terminal_ ? "\r" : "\n");
    std::fputs("\n", stderr);
  }

 private:
  void Draw(const char* lead) {
    const int64_t done = static_cast<int64_t>(report_.done());
    const double fraction = total_ > 0 ? std::min(1.0, static_cast<double>(done) / total_) : 1;
    const int full = static_cast<int>(fraction * kProgressBarMarks);
    std::string bar(full, 'o');
    if (full < kProgressBarMarks) bar += std::string(kProgressBarMarks - full, ' ');
    std::fprintf(stderr, "%s %lld / %lld B%s! %6.2f%% %ds", lead, static_cast<long long>(done),
                 static_cast<long long>(total_), bar.c_str(), fraction * 100,
                 static_cast<int>(SecondsSince(start_)));
    std::fflush(stderr);
  }

  kj::Timer& timer_;
  const int64_t total_;
  const Report& report_;
  const Clock::time_point start_;
  const bool terminal_;
};

// A gRPC target from an endpoint URL: its host:port.
std::string GrpcTarget(const std::string& endpoint) {
  absl::string_view target = endpoint;
  if (!absl::ConsumePrefix(&target, "https://")) absl::ConsumePrefix(&target, "http://");
  absl::ConsumeSuffix(&target, "/");
  return std::string(target);
}

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  if (path.empty()) return std::string();
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), file)) > 0;) text.append(buffer, n);
  std::fclose(file);
  return text;
}

// What every workload shares: the connections, the bounds, the report.
struct Bench {
  kj::AsyncIoContext* io = nullptr;
  std::vector<std::unique_ptr<net::Client>> conns;
  std::vector<std::shared_ptr<grpc::Channel>> channels;  // --protocol=grpc
  // --protocol=grpc: TLS with --cacert/--cert/--key or https:// endpoints, else plain text.
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  std::vector<std::string> endpoints;
  int64_t clients = 1;
  int64_t total = 0;
  Clock::time_point deadline;
  Report report;
  int64_t issued = 0;

  bool CanIssue() const { return issued < total && Clock::now() < deadline; }
};

// One client: a request, then the next once it is answered, while the bounds allow.
kj::Promise<void> ClientLoop(Bench& bench, net::Client& conn,
                             const std::function<Request(int64_t)>& make) {
  if (!bench.CanIssue()) return kj::READY_NOW;
  const int64_t n = bench.issued++;
  const Clock::time_point start = Clock::now();
  return conn.CallAsync(make(n)).then(
      [&bench, &conn, &make, start](absl::StatusOr<Response> response) {
        if (response.ok()) {
          bench.report.Add(SecondsSince(start));
        } else {
          bench.report.AddError(response.status());
        }
        return ClientLoop(bench, conn, make);
      });
}

double RunRequestsGrpc(Bench& bench, const std::function<Request(int64_t)>& make);

double RunRequests(Bench& bench, const std::function<Request(int64_t)>& make) {
  if (!bench.channels.empty()) return RunRequestsGrpc(bench, make);
  Progress progress(bench.io->provider->getTimer(), bench.total, bench.report);
  kj::Promise<void> drawing = progress.Run();
  const Clock::time_point start = Clock::now();
  kj::Vector<kj::Promise<void>> loops;
  for (int64_t i = 0; i < bench.clients; ++i) {
    loops.add(ClientLoop(bench, *bench.conns[i % bench.conns.size()], make));
  }
  kj::joinPromises(loops.releaseAsArray()).wait(bench.io->waitScope);
  const double elapsed = SecondsSince(start);
  drawing = nullptr;
  progress.Finish();
  return elapsed;
}

// --protocol=grpc: etcd's v3 API, so one client drives etcd and kvnode alike. Every client's
// call is asynchronous on one completion queue that the calling thread drives: a client issues
// its next request when its previous one is answered. (A thread per client with a blocking stub
// cost kvbench twice the CPU per request, mostly thread switches; on a two-core machine that
// CPU is taken from the members under test.)

// etcd's form of kvbench's requests.
etcdserverpb::PutRequest EtcdPut(const Request& request) {
  etcdserverpb::PutRequest put;
  put.set_key(request.put.key);
  put.set_value(request.put.value);
  return put;
}
etcdserverpb::RangeRequest EtcdRange(const Request& request) {
  etcdserverpb::RangeRequest range;
  range.set_key(request.range.key);
  range.set_range_end(request.range.range_end);
  range.set_serializable(request.range.serializable);
  return range;
}
etcdserverpb::TxnRequest EtcdTxn(const Request& request) {
  etcdserverpb::TxnRequest txn;
  for (const mvcc::RequestOp& op : request.txn.success) {
    etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
    put->set_key(op.put.key);
    put->set_value(op.put.value);
  }
  return txn;
}

// A blocking call (watch-latency's puts).
grpc::Status CallEtcd(etcdserverpb::KV::Stub& kv, const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  switch (request.type) {
    case RequestType::kPut: {
      etcdserverpb::PutResponse response;
      return kv.Put(&context, EtcdPut(request), &response);
    }
    case RequestType::kRange: {
      etcdserverpb::RangeResponse response;
      return kv.Range(&context, EtcdRange(request), &response);
    }
    case RequestType::kTxn: {
      etcdserverpb::TxnResponse response;
      return kv.Txn(&context, EtcdTxn(request), &response);
    }
    default:
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          "kvbench: no gRPC form for this request");
  }
}

struct GrpcCall {
  etcdserverpb::KV::Stub* stub = nullptr;
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::PutResponse>> put_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::RangeResponse>> range_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::TxnResponse>> txn_reader;
  etcdserverpb::PutResponse put;
  etcdserverpb::RangeResponse range;
  etcdserverpb::TxnResponse txn;
  grpc::Status status;
  Clock::time_point begun;
};

// Starts `request` as `call` on `queue` (its tag is the call); false for a request with no gRPC
// form, which is not started.
bool StartEtcdCall(GrpcCall& call, const Request& request, grpc::CompletionQueue* queue) {
  call.context = std::make_unique<grpc::ClientContext>();
  call.context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  call.begun = Clock::now();
  switch (request.type) {
    case RequestType::kPut:
      call.put_reader = call.stub->AsyncPut(call.context.get(), EtcdPut(request), queue);
      call.put_reader->Finish(&call.put, &call.status, &call);
      return true;
    case RequestType::kRange:
      call.range_reader = call.stub->AsyncRange(call.context.get(), EtcdRange(request), queue);
      call.range_reader->Finish(&call.range, &call.status, &call);
      return true;
    case RequestType::kTxn:
      call.txn_reader = call.stub->AsyncTxn(call.context.get(), EtcdTxn(request), queue);
      call.txn_reader->Finish(&call.txn, &call.status, &call);
      return true;
    default:
      return false;
  }
}

double RunRequestsGrpc(Bench& bench, const std::function<Request(int64_t)>& make) {
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs;
  for (const auto& channel : bench.channels) stubs.push_back(etcdserverpb::KV::NewStub(channel));
  grpc::CompletionQueue queue;
  std::vector<GrpcCall> calls(static_cast<size_t>(bench.clients));
  int64_t in_flight = 0;
  // Starts the call's next request, if the bounds allow one.
  auto issue = [&](GrpcCall& call) {
    while (bench.CanIssue()) {
      if (StartEtcdCall(call, make(bench.issued++), &queue)) {
        ++in_flight;
        return;
      }
      bench.report.AddError(absl::UnimplementedError("kvbench: no gRPC form for this request"));
    }
  };
  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < calls.size(); ++i) {
    calls[i].stub = stubs[i % stubs.size()].get();
    issue(calls[i]);
  }
  void* tag = nullptr;
  bool ok = false;
  while (in_flight > 0 && queue.Next(&tag, &ok)) {
    GrpcCall& call = *static_cast<GrpcCall*>(tag);
    --in_flight;
    const double seconds = SecondsSince(call.begun);
    if (!ok) {
      bench.report.AddError(absl::UnknownError("the call's completion failed"));
    } else if (call.status.ok()) {
      bench.report.Add(seconds);
    } else {
      bench.report.AddError(absl::UnknownError(call.status.error_message()));
    }
    issue(call);
  }
  const double elapsed = SecondsSince(start);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return elapsed;
}

std::string RandomBytes(int64_t size, std::mt19937_64& random) {
  std::string bytes(size, '\0');
  for (char& b : bytes) b = static_cast<char>(random());
  return bytes;
}

// How many bytes Go's binary.PutVarint takes for `value`.
int64_t VarintBytes(int64_t value) {
  uint64_t u = (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
  int64_t bytes = 1;
  while (u >= 0x80) {
    u >>= 7;
    ++bytes;
  }
  return bytes;
}

absl::Status CheckKeyFlags(const ctl::FlagSet& f) {
  if (f.GetInt("key-space-size") <= 0) {
    return absl::InvalidArgumentError("--key-space-size must be positive");
  }
  // Key numbers are below the key space size; the largest must fit in a key.
  const int64_t needed = VarintBytes(f.GetInt("key-space-size") - 1);
  if (f.GetInt("key-size") < needed) {
    return absl::InvalidArgumentError(absl::StrCat("--key-size must be at least ", needed,
                                                   " to hold every key of --key-space-size"));
  }
  if (f.GetInt("val-size") < 0) return absl::InvalidArgumentError("--val-size must be >= 0");
  return absl::OkStatus();
}

int RunPut(Bench& bench, const ctl::FlagSet& f, std::mt19937_64& random) {
  const int64_t key_bytes = f.GetInt("key-size");
  const int64_t key_space = f.GetInt("key-space-size");
  const bool sequential = f.GetBool("sequential-keys");
  const std::string value = RandomBytes(f.GetInt("val-size"), random);
  std::uniform_int_distribution<int64_t> pick(0, key_space - 1);
  std::function<Request(int64_t)> make = [&](int64_t n) {
    Request request;
    request.type = RequestType::kPut;
    request.put.key.assign(key_bytes, '\0');
    PutVarint(sequential ? n % key_space : pick(random), request.put.key);
    request.put.value = value;
    return request;
  };
  const double elapsed = RunRequests(bench, make);
  std::fputs(bench.report.Render(elapsed).c_str(), stdout);
  return kExitSuccess;
}

int RunTxnPut(Bench& bench, const ctl::FlagSet& f, std::mt19937_64& random) {
  const int64_t key_bytes = f.GetInt("key-size");
  const int64_t key_space = f.GetInt("key-space-size");
  const int64_t ops = f.GetInt("txn-ops");
  // Two puts of one key in a txn are refused (DUPLICATE_KEY): the key space must hold a txn.
  if (ops <= 0 || ops > key_space) {
    std::fprintf(stderr, "Error: --txn-ops must be between 1 and --key-space-size (%lld)\n",
                 static_cast<long long>(key_space));
    return kExitError;
  }
  const std::string value = RandomBytes(f.GetInt("val-size"), random);
  std::function<Request(int64_t)> make = [&](int64_t n) {
    Request request;
    request.type = RequestType::kTxn;
    for (int64_t j = 0; j < ops; ++j) {
      mvcc::RequestOp op;
      op.kind = mvcc::RequestOp::Kind::kPut;
      op.put.key.assign(key_bytes, '\0');
      PutVarint((n * ops + j) % key_space, op.put.key);
      op.put.value = value;
      request.txn.success.push_back(std::move(op));
    }
    return request;
  };
  const double elapsed = RunRequests(bench, make);
  std::fputs(bench.report.Render(elapsed).c_str(), stdout);
  return kExitSuccess;
}

int RunRange(Bench& bench, const ctl::FlagSet& f, const std::vector<std::string>& args) {
  if (args.empty() || args.size() > 2) {
    std::fprintf(stderr, "Error: range needs a key and an optional range end\n");
    return kExitError;
  }
  const std::string& consistency = f.GetString("consistency");
  if (consistency != "l" && consistency != "s") {
    std::fprintf(stderr, "Error: --consistency must be l (linearizable) or s (serializable)\n");
    return kExitError;
  }
  Request request;
  request.type = RequestType::kRange;
  request.range.key = args[0];
  if (args.size() == 2) request.range.range_end = args[1];
  request.range.serializable = consistency == "s";
  std::function<Request(int64_t)> make = [&request](int64_t) { return request; };
  const double elapsed = RunRequests(bench, make);
  std::fputs(bench.report.Render(elapsed).c_str(), stdout);
  return kExitSuccess;
}

// watch-latency: one watcher per client on one key; puts at --put-rate from a connection of
// its own, one at a time. A latency is the time from sending a put to one watcher receiving
// its event (etcd's tool starts the clock when the put returns instead, which can miss the
// event's whole delay; this includes the put's commit, which the event cannot precede).
// watch-latency over etcd's v3 API: a Watch stream per client (a reader thread each), puts
// from a channel of their own; a latency is from sending a put to a watcher reading its event.
int RunWatchLatencyGrpc(Bench& bench, const std::string& key, const std::string& value,
                        int64_t put_total, int64_t put_rate) {
  std::mutex mu;
  std::condition_variable received;
  Clock::time_point sent;
  int64_t waiting = 0;
  struct Watcher {
    grpc::ClientContext context;
    std::unique_ptr<
        grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
        stream;
    std::thread reader;
  };
  std::vector<std::unique_ptr<etcdserverpb::Watch::Stub>> stubs;
  for (const auto& channel : bench.channels) stubs.push_back(etcdserverpb::Watch::NewStub(channel));
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int64_t i = 0; i < bench.clients; ++i) {
    auto watcher = std::make_unique<Watcher>();
    watcher->stream = stubs[i % stubs.size()]->Watch(&watcher->context);
    etcdserverpb::WatchRequest create;
    create.mutable_create_request()->set_key(key);
    etcdserverpb::WatchResponse created;
    if (!watcher->stream->Write(create) || !watcher->stream->Read(&created) || !created.created()) {
      std::fprintf(stderr, "Error: cannot create watch %lld\n", static_cast<long long>(i));
      return kExitError;
    }
    watcher->reader = std::thread([&, stream = watcher->stream.get()]() {
      etcdserverpb::WatchResponse response;
      while (stream->Read(&response)) {
        if (response.events_size() == 0) continue;
        std::lock_guard<std::mutex> lock(mu);
        if (waiting == 0) continue;
        bench.report.Add(SecondsSince(sent));
        if (--waiting == 0) received.notify_all();
      }
    });
    watchers.push_back(std::move(watcher));
  }
  auto putter = etcdserverpb::KV::NewStub(
      grpc::CreateChannel(GrpcTarget(bench.endpoints.front()), bench.credentials));
  const Clock::time_point start = Clock::now();
  const auto interval = std::chrono::nanoseconds(1'000'000'000 / put_rate);
  for (int64_t i = 0; i < put_total && Clock::now() < bench.deadline; ++i) {
    const Clock::time_point round_start = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu);
      sent = round_start;
      waiting = bench.clients;
    }
    Request put;
    put.type = RequestType::kPut;
    put.put.key = key;
    put.put.value = value;
    grpc::Status status = CallEtcd(*putter, put);
    std::unique_lock<std::mutex> lock(mu);
    if (!status.ok()) {
      bench.report.AddError(absl::UnknownError(status.error_message()));
      waiting = 0;
      continue;
    }
    // A watcher that misses an event must not stall the run.
    if (!received.wait_for(lock, std::chrono::seconds(10), [&] { return waiting == 0; })) {
      for (int64_t k = 0; k < waiting; ++k) {
        bench.report.AddError(absl::DeadlineExceededError("watch event not received in 10s"));
      }
      waiting = 0;
    }
    lock.unlock();
    const auto used = Clock::now() - round_start;
    if (used < interval) std::this_thread::sleep_for(interval - used);
  }
  const double elapsed = SecondsSince(start);
  for (auto& watcher : watchers) {
    watcher->context.TryCancel();
    watcher->reader.join();
  }
  std::fputs(bench.report.Render(elapsed).c_str(), stdout);
  return kExitSuccess;
}

int RunWatchLatency(Bench& bench, const ctl::FlagSet& f, const net::ClientOptions& options,
                    std::mt19937_64& random) {
  const int64_t put_total = f.GetInt("put-total");
  const int64_t put_rate = f.GetInt("put-rate");
  if (put_total <= 0 || put_rate <= 0) {
    std::fprintf(stderr, "Error: --put-total and --put-rate must be positive\n");
    return kExitError;
  }
  // etcd's watch-latency has its own defaults for the key and value sizes.
  const int64_t key_bytes = f.Changed("key-size") ? f.GetInt("key-size") : kDefaultWatchKeyBytes;
  const int64_t value_bytes = f.Changed("val-size") ? f.GetInt("val-size") : kDefaultWatchKeyBytes;
  if (key_bytes <= 0 || value_bytes < 0) {
    std::fprintf(stderr, "Error: --key-size must be positive and --val-size not negative\n");
    return kExitError;
  }
  const std::string key = RandomBytes(key_bytes, random);
  const std::string value = RandomBytes(value_bytes, random);
  if (!bench.channels.empty()) return RunWatchLatencyGrpc(bench, key, value, put_total, put_rate);
  kj::WaitScope& wait_scope = bench.io->waitScope;
  kj::Timer& timer = bench.io->provider->getTimer();

  // The round in progress: when its put was sent, and which watchers still wait for it.
  struct Round {
    Clock::time_point sent;
    int64_t waiting = 0;
    kj::Own<kj::PromiseFulfiller<void>> all_received;
  } round;
  std::vector<std::unique_ptr<net::Client::Watch>> watches;
  for (int64_t i = 0; i < bench.clients; ++i) {
    mvcc::WatchRequest watch;
    watch.key = key;
    absl::StatusOr<std::unique_ptr<net::Client::Watch>> opened =
        bench.conns[i % bench.conns.size()]
            ->WatchAsync(watch,
                         [&bench, &round](const mvcc::WatchResponse& response) {
                           if (response.events.empty() || round.waiting == 0) return;
                           bench.report.Add(SecondsSince(round.sent));
                           if (--round.waiting == 0) round.all_received->fulfill();
                         })
            .wait(wait_scope);
    if (!opened.ok()) {
      std::fprintf(stderr, "Error: %s\n", std::string(opened.status().message()).c_str());
      return kExitError;
    }
    watches.push_back(std::move(*opened));
  }
  absl::StatusOr<std::unique_ptr<net::Client>> putter =
      net::Client::Create(bench.io->provider->getNetwork(), timer, options);
  if (!putter.ok()) {
    std::fprintf(stderr, "Error: %s\n", std::string(putter.status().message()).c_str());
    return kExitError;
  }

  Progress progress(timer, put_total * bench.clients, bench.report);
  kj::Promise<void> drawing = progress.Run();
  const Clock::time_point start = Clock::now();
  const absl::Duration interval = absl::Seconds(1) / put_rate;
  for (int64_t i = 0; i < put_total && Clock::now() < bench.deadline; ++i) {
    const Clock::time_point round_start = Clock::now();
    auto received = kj::newPromiseAndFulfiller<void>();
    round.sent = round_start;
    round.waiting = bench.clients;
    round.all_received = kj::mv(received.fulfiller);
    Request put;
    put.type = RequestType::kPut;
    put.put.key = key;
    put.put.value = value;
    absl::StatusOr<Response> response = (*putter)->CallAsync(std::move(put)).wait(wait_scope);
    if (!response.ok()) {
      bench.report.AddError(response.status());
      round.waiting = 0;
      continue;
    }
    // A watcher that misses an event (its connection broke) must not stall the run.
    const bool complete =
        received.promise.then([] { return true; })
            .exclusiveJoin(timer.afterDelay(ToKj(absl::Seconds(10))).then([] { return false; }))
            .wait(wait_scope);
    if (!complete) {
      for (int64_t k = 0; k < round.waiting; ++k) {
        bench.report.AddError(absl::DeadlineExceededError("watch event not received in 10s"));
      }
      round.waiting = 0;
    }
    const absl::Duration used = absl::FromChrono(Clock::now() - round_start);
    if (used < interval) timer.afterDelay(ToKj(interval - used)).wait(wait_scope);
  }
  const double elapsed = SecondsSince(start);
  drawing = nullptr;
  progress.Finish();
  for (auto& watch : watches) watch->Cancel().wait(wait_scope).IgnoreError();
  watches.clear();
  std::fputs(bench.report.Render(elapsed).c_str(), stdout);
  return kExitSuccess;
}

void AddFlags(ctl::FlagSet& f) {
  constexpr bool kGlobal = true;
  f.AddString("endpoints", 0, "127.0.0.1:2379", "gRPC endpoints", kGlobal);
  f.AddInt("conns", 0, 1, "Total number of gRPC connections", kGlobal);
  f.AddInt("clients", 0, 1, "Total number of gRPC clients", kGlobal);
  f.AddDuration("dial-timeout", absl::Nanoseconds(net::kDefaultPerTryTimeout / kj::NANOSECONDS),
                "bound of each try of a request (connecting and answering)", kGlobal);
  f.AddString("protocol", 0, "capnp",
              "capnp (kvnode's native API) or grpc (etcd's v3 API: kvnode or etcd)", kGlobal);
  f.AddDuration("max-duration", kDefaultMaxDuration,
                "no request starts after this long; the report covers what was answered", kGlobal);
  f.AddBool("help", 'h', "help for kvbench", kGlobal);
  f.AddString("cacert", 0, "",
              "verify certificates of TLS-enabled secure servers using this CA bundle", kGlobal);
  f.AddString("cert", 0, "", "identify secure client using this TLS certificate file", kGlobal);
  f.AddString("key", 0, "", "identify secure client using this TLS key file", kGlobal);
  f.AddInt("total", 0, kDefaultTotal, "Total number of requests (put, range, txn-put)");
  f.AddInt("key-size", 0, 8, "Key size of put request");
  f.AddInt("val-size", 0, 8, "Value size of put request");
  f.AddInt("key-space-size", 0, 1, "Maximum possible keys");
  f.AddBool("sequential-keys", 0, "Use sequential keys (put)");
  f.AddString("consistency", 0, "l", "Linearizable(l) or Serializable(s) (range)");
  f.AddInt("txn-ops", 0, 1, "Number of puts per txn (txn-put)");
  f.AddInt("put-total", 0, kDefaultWatchPutTotal, "Total number of put requests (watch-latency)");
  f.AddInt("put-rate", 0, kDefaultWatchPutRate, "Number of keys to put per second (watch-latency)");
}

std::string Usage(const ctl::FlagSet& f) {
  return absl::StrCat(
      "kvbench: etcd's benchmark workloads against kvnode.\n\nUSAGE:\n"
      "\tkvbench [flags] put\n\tkvbench [flags] range KEY [END]\n\tkvbench [flags] txn-put\n"
      "\tkvbench [flags] watch-latency\n\n",
      f.Usage());
}

int Run(int argc, char** argv) {
  // gRPC locks absl::Mutex on every call; Debian's absl runs its debug deadlock detector on each
  // Lock unless told not to, which costs the client CPU the servers it measures then lack.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  ctl::FlagSet f;
  AddFlags(f);
  std::vector<std::string> args;
  if (absl::Status s = f.Parse(std::vector<std::string>(argv + 1, argv + argc), &args); !s.ok()) {
    std::fprintf(stderr, "Error: %s\n\n%s", std::string(s.message()).c_str(), Usage(f).c_str());
    return kExitError;
  }
  if (f.GetBool("help")) {
    std::fputs(Usage(f).c_str(), stdout);
    return kExitSuccess;
  }
  if (args.empty()) {
    std::fprintf(stderr, "Error: no workload given\n\n%s", Usage(f).c_str());
    return kExitError;
  }
  const std::string workload = args[0];
  args.erase(args.begin());
  if (f.GetInt("conns") <= 0 || f.GetInt("clients") <= 0) {
    std::fprintf(stderr, "Error: --conns and --clients must be positive\n");
    return kExitError;
  }
  if (f.GetInt("total") <= 0) {
    std::fprintf(stderr, "Error: --total must be positive\n");
    return kExitError;
  }
  if (workload == "put" || workload == "txn-put") {
    if (absl::Status s = CheckKeyFlags(f); !s.ok()) {
      std::fprintf(stderr, "Error: %s\n", std::string(s.message()).c_str());
      return kExitError;
    }
  }

  kj::AsyncIoContext io = kj::setupAsyncIo();
  net::ClientOptions options;
  for (absl::string_view endpoint : absl::StrSplit(f.GetString("endpoints"), ',')) {
    endpoint = absl::StripAsciiWhitespace(endpoint);
    if (!endpoint.empty()) options.endpoints.emplace_back(endpoint);
  }
  options.per_try_timeout = ToKj(f.GetDuration("dial-timeout"));
  Bench bench;
  bench.io = &io;
  bench.clients = f.GetInt("clients");
  bench.total = f.GetInt("total");
  bench.deadline = Clock::now() + absl::ToChronoNanoseconds(f.GetDuration("max-duration"));
  const std::string& protocol = f.GetString("protocol");
  if (protocol != "capnp" && protocol != "grpc") {
    std::fprintf(stderr, "Error: --protocol must be capnp or grpc\n");
    return kExitError;
  }
  if (options.endpoints.empty()) {
    std::fprintf(stderr, "Error: --endpoints names no endpoint\n");
    return kExitError;
  }
  bench.endpoints = options.endpoints;
  // etcd benchmark's TLS flags: any of them, or an https:// endpoint, means TLS.
  std::unique_ptr<net::TlsContext> tls;
  const bool https =
      std::any_of(options.endpoints.begin(), options.endpoints.end(),
                  [](const std::string& e) { return absl::StartsWith(e, "https://"); });
  if (f.Changed("cacert") || f.Changed("cert") || f.Changed("key") || https) {
    net::TlsFiles files;
    files.trusted_ca_file = f.GetString("cacert");
    files.cert_file = f.GetString("cert");
    files.key_file = f.GetString("key");
    absl::StatusOr<std::unique_ptr<net::TlsContext>> context = net::TlsContext::NewClient(files);
    if (!context.ok()) {
      std::fprintf(stderr, "Error: %s\n", std::string(context.status().message()).c_str());
      return kExitError;
    }
    tls = std::move(*context);
    options.tls = tls.get();
    grpc::SslCredentialsOptions ssl;
    for (auto [flag, path, out] : {std::tuple{"cacert", files.trusted_ca_file, &ssl.pem_root_certs},
                                   std::tuple{"cert", files.cert_file, &ssl.pem_cert_chain},
                                   std::tuple{"key", files.key_file, &ssl.pem_private_key}}) {
      absl::StatusOr<std::string> pem = ReadPem(flag, path);
      if (!pem.ok()) {
        std::fprintf(stderr, "Error: %s\n", std::string(pem.status().message()).c_str());
        return kExitError;
      }
      *out = std::move(*pem);
    }
    bench.credentials = grpc::SslCredentials(ssl);
  }
  if (protocol == "grpc") {
    for (int64_t i = 0; i < f.GetInt("conns"); ++i) {
      const std::string target = GrpcTarget(options.endpoints[i % options.endpoints.size()]);
      grpc::ChannelArguments arguments;
      arguments.SetInt("grpc.use_local_subchannel_pool", 1);  // one connection per channel
      bench.channels.push_back(grpc::CreateCustomChannel(target, bench.credentials, arguments));
    }
  }
  for (int64_t i = 0; protocol == "capnp" && i < f.GetInt("conns"); ++i) {
    absl::StatusOr<std::unique_ptr<net::Client>> client =
        net::Client::Create(io.provider->getNetwork(), io.provider->getTimer(), options);
    if (!client.ok()) {
      std::fprintf(stderr, "Error: %s\n", std::string(client.status().message()).c_str());
      return kExitError;
    }
    bench.conns.push_back(std::move(*client));
  }
  std::mt19937_64 random(kValueSeed);
  int code = kExitError;
  if (workload == "put") {
    code = RunPut(bench, f, random);
  } else if (workload == "txn-put") {
    code = RunTxnPut(bench, f, random);
  } else if (workload == "range") {
    code = RunRange(bench, f, args);
  } else if (workload == "watch-latency") {
    code = RunWatchLatency(bench, f, options, random);
  } else {
    std::fprintf(stderr, "Error: unknown workload \"%s\"\n\n%s", workload.c_str(),
                 Usage(f).c_str());
  }
  // Connections live on the event loop: they go before it does.
  bench.conns.clear();
  return code;
}

}  // namespace
}  // namespace kvstore::bench

int main(int argc, char** argv) { return kvstore::bench::Run(argc, argv); }
