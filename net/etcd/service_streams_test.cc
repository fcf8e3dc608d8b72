// The gRPC Watch and LeaseKeepAlive streams of Services (service.h) over a FakeMember on its own
// kj loop thread, served by an in-process gRPC server on loopback: the watch ids
// (automatic, explicit, duplicates refused, reused once canceled), a client cancel answered without
// a reason, a compacted start (created, then canceled), a slow watcher canceled at the queue limit
// whose member watch ends only once its notice is written, the member watches a half-closed or
// canceled stream leaves canceled, a keep-alive stream ended by the member's refusal with its
// status, and unary calls that wait for a busy loop without holding a thread each. Bounded:
// every call and stream has a deadline.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/server_interceptor.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/cross_thread.h"
#include "net/etcd/convert.h"
#include "net/etcd/rpc.grpc.pb.h"
#include "net/etcd/service.h"
#include "net/testing/fake_member.h"
#include "net/tsan_build.h"

namespace kvstore::net::etcd {
namespace {

using testing::FakeMember;
using Clock = std::chrono::steady_clock;

constexpr size_t kQueueLimit = 4;

using WatchStream =
    grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;

// Counts the request messages the server has received (before their handlers run).
class ReceivedCounter final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new Counting(&received_);
  }
  int received() const { return received_.load(); }

 private:
  class Counting final : public grpc::experimental::Interceptor {
   public:
    explicit Counting(std::atomic<int>* received) : received_(received) {}
    void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
      if (methods->QueryInterceptionHookPoint(
              grpc::experimental::InterceptionHookPoints::POST_RECV_MESSAGE)) {
        received_->fetch_add(1);
      }
      methods->Proceed();
    }

   private:
    std::atomic<int>* received_;
  };
  std::atomic<int> received_{0};
};

// The threads of this process.
size_t ThreadCount() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/self/task")) {
    ++n;
  }
  return n;
}

class ServiceStreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef KVSTORE_TSAN
    // In this process (gRPC client and server together) gRPC runs a stream's OnDone on
    // libgrpc's executor (ServerCallbackCall::ScheduleOnDone), a hand-off that neither
    // tools/sanitizers interposer shows to TSan, so the reactor's deletion is reported against
    // the thread that finished it. The kvnode-based tests (watch_streams_test, flood_test,
    // watch_progress_test) check these streams under TSan.
    GTEST_SKIP() << "gRPC's OnDone hand-off is not visible to TSan in-process";
#endif
    std::promise<void> ready;
    loop_thread_ = std::thread([this, &ready] {
      auto io = kj::setupAsyncIo();
      member_ = std::make_unique<FakeMember>();
      ServiceOptions options;
      options.watch_queue_limit_responses = kQueueLimit;
      services_ = std::make_unique<Services>(*member_, kj::getCurrentThreadExecutor(), options);
      executor_ =
          std::make_unique<kj::Own<const kj::Executor>>(kj::getCurrentThreadExecutor().addRef());
      auto paf = net::NewPromiseAndCrossThreadFulfiller<void>();
      stop_ =
          std::make_unique<kj::Own<kj::CrossThreadPromiseFulfiller<void>>>(kj::mv(paf.fulfiller));
      ready.set_value();
      paf.promise.wait(io.waitScope);
      services_.reset();
      member_.reset();
    });
    ready.get_future().wait();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    services_->RegisterWith(builder);
    if (count_received_) {
      // Only where a test asks: kvnode's server has no interceptors.
      auto counter = std::make_unique<ReceivedCounter>();
      received_ = counter.get();
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
      creators.push_back(std::move(counter));
      builder.experimental().SetInterceptorCreators(std::move(creators));
    }
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
    // The puts go over a connection of their own: a watch stream whose client reads nothing
    // holds its connection's flow-control window.
    kv_ = etcdserverpb::KV::NewStub(Connect());
    auto channel = Connect();
    watch_ = etcdserverpb::Watch::NewStub(channel);
    lease_ = etcdserverpb::Lease::NewStub(channel);
  }

  void TearDown() override {
    // The streams end while the loop still turns (they cancel their watches on it).
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
    if (stop_ != nullptr) (*stop_)->fulfill();
    if (loop_thread_.joinable()) loop_thread_.join();
  }

  // A new connection to the server.
  std::shared_ptr<grpc::Channel> Connect() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // The client's receive window stays at 64 KiB: what the server may have in flight.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_),
                                     grpc::InsecureChannelCredentials(), args);
  }

  // Runs `f` on the member's loop thread.
  void OnLoop(const std::function<void()>& f) {
    net::ExecuteSync(**executor_, [&f]() { f(); });
  }

  // Waits (at most 5 s) until `done` holds on the loop thread.
  bool LoopUntil(const std::function<bool(FakeMember&)>& done) {
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
    for (;;) {
      bool held = false;
      OnLoop([&] { held = done(*member_); });
      if (held) return true;
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  grpc::Status Put(const std::string& key, const std::string& value) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    etcdserverpb::PutResponse response;
    return kv_->Put(&context, request, &response);
  }

  std::unique_ptr<WatchStream> OpenWatch(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return watch_->Watch(context);
  }

  static etcdserverpb::WatchRequest Create(const std::string& key, int64_t watch_id = 0) {
    etcdserverpb::WatchRequest request;
    request.mutable_create_request()->set_key(key);
    request.mutable_create_request()->set_watch_id(watch_id);
    return request;
  }
  static etcdserverpb::WatchRequest CancelRequest(int64_t watch_id) {
    etcdserverpb::WatchRequest request;
    request.mutable_cancel_request()->set_watch_id(watch_id);
    return request;
  }

  size_t OpenMemberWatches() {
    size_t open = 0;
    OnLoop([&] { open = member_->open_watches(); });
    return open;
  }

  std::thread loop_thread_;
  std::unique_ptr<FakeMember> member_;  // loop thread
  std::unique_ptr<Services> services_;  // created and destroyed on the loop thread
  // The loop's (kj::Own's destructor may throw: held by a unique_ptr in a gtest fixture).
  std::unique_ptr<kj::Own<const kj::Executor>> executor_;
  std::unique_ptr<kj::Own<kj::CrossThreadPromiseFulfiller<void>>> stop_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  bool count_received_ = false;          // set before SetUp: install received_
  ReceivedCounter* received_ = nullptr;  // owned by server_
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
};

TEST_F(ServiceStreamsTest, WatchIdsDuplicatesCancelAndReuse) {
  grpc::ClientContext context;
  auto stream = OpenWatch(&context);
  etcdserverpb::WatchResponse response;
  // Automatic ids from 0; an explicit one; automatic ids skip it.
  ASSERT_TRUE(stream->Write(Create("a")));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.created());
  EXPECT_EQ(response.watch_id(), 0);
  ASSERT_TRUE(stream->Write(Create("b", 1)));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.created());
  EXPECT_EQ(response.watch_id(), 1);
  ASSERT_TRUE(stream->Write(Create("c")));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.created());
  EXPECT_EQ(response.watch_id(), 2);
  // A duplicate explicit id is refused as etcd refuses it.
  ASSERT_TRUE(stream->Write(Create("d", 1)));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.watch_id(), -1);
  EXPECT_TRUE(response.created());
  EXPECT_TRUE(response.canceled());
  EXPECT_EQ(response.cancel_reason(), "mvcc: duplicate watch ID provided on the WatchStream");
  EXPECT_EQ(OpenMemberWatches(), 3u);

  // Events reach the right watcher.
  ASSERT_TRUE(Put("b", "1").ok());
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.watch_id(), 1);
  ASSERT_EQ(response.events_size(), 1);
  EXPECT_EQ(response.events(0).kv().key(), "b");

  // The client's cancel is answered without a reason; the id may then be used again.
  ASSERT_TRUE(stream->Write(CancelRequest(1)));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.watch_id(), 1);
  EXPECT_TRUE(response.canceled());
  EXPECT_EQ(response.cancel_reason(), "");
  EXPECT_EQ(OpenMemberWatches(), 2u);
  ASSERT_TRUE(stream->Write(Create("e", 1)));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.created());
  EXPECT_FALSE(response.canceled()) << response.DebugString();
  EXPECT_EQ(response.watch_id(), 1);
  // An unknown id's cancel is ignored: a progress request is answered next.
  ASSERT_TRUE(stream->Write(CancelRequest(77)));
  etcdserverpb::WatchRequest progress;
  progress.mutable_progress_request();
  ASSERT_TRUE(stream->Write(progress));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.watch_id(), -1);
  EXPECT_FALSE(response.created());
  EXPECT_FALSE(response.canceled());
  EXPECT_EQ(response.events_size(), 0);

  // The half-close ends the stream with OK and every member watch of it.
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_FALSE(stream->Read(&response));
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(LoopUntil([](FakeMember& m) { return m.open_watches() == 0; }));
}

TEST_F(ServiceStreamsTest, ACompactedStartIsCreatedThenCanceledOtherRefusalsTakeNoId) {
  grpc::ClientContext context;
  auto stream = OpenWatch(&context);
  OnLoop([&] { member_->answer_all_with = Error(ErrorCode::kCompacted, "compacted"); });
  ASSERT_TRUE(stream->Write(Create("a")));
  etcdserverpb::WatchResponse created;
  ASSERT_TRUE(stream->Read(&created));
  etcdserverpb::WatchResponse canceled;
  ASSERT_TRUE(stream->Read(&canceled));
  OnLoop([&] { member_->answer_all_with = absl::OkStatus(); });
  EXPECT_TRUE(created.created()) << created.DebugString();
  EXPECT_EQ(created.watch_id(), 0);
  EXPECT_TRUE(canceled.canceled()) << canceled.DebugString();
  EXPECT_EQ(canceled.watch_id(), 0);
  // Any other refusal is one response with watch id -1, and takes no id.
  OnLoop([&] { member_->answer_all_with = Error(ErrorCode::kPermissionDenied, "denied"); });
  ASSERT_TRUE(stream->Write(Create("b")));
  etcdserverpb::WatchResponse refused;
  ASSERT_TRUE(stream->Read(&refused));
  OnLoop([&] { member_->answer_all_with = absl::OkStatus(); });
  EXPECT_EQ(refused.watch_id(), -1);
  EXPECT_TRUE(refused.created());
  EXPECT_TRUE(refused.canceled());
  EXPECT_NE(refused.cancel_reason(), "");
  // The compacted one's id was taken: the next automatic one is 1.
  ASSERT_TRUE(stream->Write(Create("b")));
  etcdserverpb::WatchResponse next;
  ASSERT_TRUE(stream->Read(&next));
  EXPECT_TRUE(next.created());
  EXPECT_FALSE(next.canceled()) << next.DebugString();
  EXPECT_EQ(next.watch_id(), 1);
  context.TryCancel();
  (void)stream->Finish();
  EXPECT_TRUE(LoopUntil([](FakeMember& m) { return m.open_watches() == 0; }));
}

TEST_F(ServiceStreamsTest, ASlowWatcherIsCanceledAndItsMemberWatchEndsOnceTheNoticeIsWritten) {
  grpc::ClientContext context;
  auto stream = OpenWatch(&context);
  ASSERT_TRUE(stream->Write(Create("k")));
  etcdserverpb::WatchResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.created());
  // The client reads nothing: 64 KiB values fill its receive window at once, then the queue.
  const std::string value(64 << 10, 'v');
  constexpr int kPuts = 20;
  for (int i = 0; i < kPuts; ++i) ASSERT_TRUE(Put("k", value).ok());
  // The notice waits to be written behind the events: the member's watch is still open.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(OpenMemberWatches(), 1u);
  int events = 0;
  for (;;) {
    ASSERT_TRUE(stream->Read(&response));
    if (response.canceled()) break;
    ASSERT_EQ(response.events_size(), 1);
    ++events;
  }
  EXPECT_EQ(response.watch_id(), 0);
  EXPECT_NE(response.cancel_reason(), "") << response.DebugString();
  EXPECT_LT(events, kPuts);
  EXPECT_GE(events, static_cast<int>(kQueueLimit));
  EXPECT_TRUE(LoopUntil([](FakeMember& m) { return m.open_watches() == 0; }));
  OnLoop([&] { EXPECT_EQ(member_->canceled_watches.size(), 1u); });
  // The stream goes on.
  ASSERT_TRUE(stream->Write(Create("k")));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.created());
  EXPECT_FALSE(response.canceled()) << response.DebugString();
  EXPECT_EQ(response.watch_id(), 1);
  context.TryCancel();
  (void)stream->Finish();
  EXPECT_TRUE(LoopUntil([](FakeMember& m) { return m.open_watches() == 0; }));
}

TEST_F(ServiceStreamsTest, AClientCancelEndsTheStreamsMemberWatches) {
  grpc::ClientContext context;
  auto stream = OpenWatch(&context);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(stream->Write(Create(absl::StrCat("k", i))));
  etcdserverpb::WatchResponse response;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(OpenMemberWatches(), 3u);
  context.TryCancel();
  EXPECT_FALSE(stream->Finish().ok());
  EXPECT_TRUE(LoopUntil([](FakeMember& m) { return m.open_watches() == 0; }));
}

TEST_F(ServiceStreamsTest, KeepAliveRenewsUntilTheMemberRefusesThenEndsWithItsStatus) {
  etcdserverpb::LeaseGrantResponse granted;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    etcdserverpb::LeaseGrantRequest grant;
    grant.set_ttl(30);
    ASSERT_TRUE(lease_->LeaseGrant(&context, grant, &granted).ok());
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = lease_->LeaseKeepAlive(&context);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(granted.id());
  etcdserverpb::LeaseKeepAliveResponse response;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.id(), granted.id());
    EXPECT_EQ(response.ttl(), 30);
  }
  const absl::Status refusal = Error(ErrorCode::kNotLeader, "no leader");
  OnLoop([&] { member_->answer_all_with = refusal; });
  ASSERT_TRUE(stream->Write(request));
  EXPECT_FALSE(stream->Read(&response));
  grpc::Status status = stream->Finish();
  const grpc::Status expected = ToGrpcStatus(refusal);
  EXPECT_EQ(status.error_code(), expected.error_code());
  EXPECT_EQ(status.error_message(), expected.error_message());
  EXPECT_FALSE(status.ok());
}

// The fixture with the server counting the requests it receives.
class ServiceCountingTest : public ServiceStreamsTest {
 protected:
  void SetUp() override {
    count_received_ = true;
    ServiceStreamsTest::SetUp();
  }
};

// Cluster, Maintenance and Auth calls wait for the member's loop without holding a gRPC
// thread each: 48 MemberList, Status and Alarm calls sent while the loop is busy all reach the
// server and wait there without growing the process's threads (gRPC's synchronous server would
// hold one per call), and every one is answered once the loop turns again.
TEST_F(ServiceCountingTest, UnaryCallsWaitingForABusyLoopHoldNoThreads) {
  auto cluster = etcdserverpb::Cluster::NewStub(Connect());
  auto maintenance = etcdserverpb::Maintenance::NewStub(Connect());
  const auto deadline = [] { return std::chrono::system_clock::now() + std::chrono::seconds(20); };

  constexpr int kCalls = 48;
  struct Call {
    grpc::ClientContext context;
    etcdserverpb::MemberListResponse members;
    etcdserverpb::StatusResponse status;
    etcdserverpb::AlarmRequest alarm_request;
    etcdserverpb::AlarmResponse alarms;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable answered;
  int done = 0, ok = 0;
  auto on_done = [&](grpc::Status status) {
    std::lock_guard<std::mutex> lock(mu);
    ++done;
    if (status.ok()) ++ok;
    answered.notify_all();
  };
  const etcdserverpb::MemberListRequest list_request;
  const etcdserverpb::StatusRequest status_request;
  // Call number i: a MemberList, a Status or an alarm list, in turn, through the callback API.
  auto send = [&](int i) {
    calls.push_back(std::make_unique<Call>());
    Call& call = *calls.back();
    call.context.set_deadline(deadline());
    switch (i % 3) {
      case 0:
        cluster->async()->MemberList(&call.context, &list_request, &call.members, on_done);
        break;
      case 1:
        maintenance->async()->Status(&call.context, &status_request, &call.status, on_done);
        break;
      default:
        call.alarm_request.set_action(etcdserverpb::AlarmRequest::GET);
        maintenance->async()->Alarm(&call.context, &call.alarm_request, &call.alarms, on_done);
    }
  };
  // Waits for `n` answers in all; on a timeout, cancels what is still out and waits for it, so
  // no callback outlives the test.
  auto await = [&](int n) {
    std::unique_lock<std::mutex> lock(mu);
    if (!answered.wait_for(lock, std::chrono::seconds(20), [&] { return done >= n; })) {
      ADD_FAILURE() << done << " of " << n << " calls answered";
      lock.unlock();
      for (auto& call : calls) call->context.TryCancel();
      lock.lock();
      answered.wait(lock, [&] { return done == static_cast<int>(calls.size()); });
    }
  };

  // One of each first, through the same client API: the connections and the threads of gRPC's
  // client and server exist before counting.
  for (int i = 0; i < 3; ++i) send(i);
  await(3);
  ASSERT_EQ(ok, 3);
  const int received_before = received_->received();
  const size_t threads_before = ThreadCount();

  // The loop is held until `release` (as by a long backend commit); the guard releases it on
  // every way out of the test.
  std::promise<void> held, release;
  std::shared_future<void> released = release.get_future().share();
  std::thread holder([&] {
    OnLoop([&] {
      held.set_value();
      released.wait();
    });
  });
  struct Release {
    std::promise<void>& release;
    std::thread& holder;
    bool done = false;
    void Now() {
      if (done) return;
      done = true;
      release.set_value();
      holder.join();
    }
    ~Release() { Now(); }
  } release_guard{release, holder};
  ASSERT_EQ(held.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);

  for (int i = 3; i < 3 + kCalls; ++i) send(i);
  // Every request has reached the server (its handler runs right after), and none is answered.
  const auto arrival_deadline = Clock::now() + std::chrono::seconds(10);
  while (received_->received() < received_before + kCalls && Clock::now() < arrival_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(received_->received(), received_before + kCalls);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const size_t threads_waiting = ThreadCount();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(done, 3);
  }
  // A few threads of gRPC's may come and go; a thread per waiting call would be 48.
  EXPECT_LT(threads_waiting, threads_before + 8)
      << "threads: " << threads_before << " before, " << threads_waiting << " while waiting";

  release_guard.Now();
  await(3 + kCalls);
  EXPECT_EQ(ok, 3 + kCalls);
}

}  // namespace
}  // namespace kvstore::net::etcd
