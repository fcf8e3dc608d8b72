// tsan_grpc_cq.cc under --config=tsan: a tag started on one thread (libgrpc++ calls
// grpc_call_start_batch) and handed back by the completion queue on another
// (grpc_completion_queue_next) goes through the interposer, and what the starting thread wrote
// before the batch is read on the other thread without a report (halt_on_error=1 would end the
// test). Skipped in other builds.

#include <chrono>
#include <string>
#include <thread>

#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tools/sanitizers/interpose.h"

#ifdef KVSTORE_TSAN
extern "C" long kvstore_tsan_grpc_cq_releases();
extern "C" long kvstore_tsan_grpc_cq_acquires();
#endif

namespace {

#ifdef KVSTORE_TSAN

// What the starting thread writes before the batch; the tag is its address.
struct Tag {
  std::string written_before_start;
};

TEST(TsanGrpcCqTest, ATagStartedOnOneThreadIsReadOnTheThreadThatGetsItBack) {
  // Nothing listens on port 1: the call fails with UNAVAILABLE, through the queue all the same.
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  grpc::Status status;
  Tag tag;

  const long releases = kvstore_tsan_grpc_cq_releases();
  const long acquires = kvstore_tsan_grpc_cq_acquires();
  std::string seen;
  void* got = nullptr;
  // Started before the tag is written, so thread creation orders nothing of it.
  std::thread next([&]() {
    bool ok = false;
    if (cq.Next(&got, &ok) && got == &tag) seen = static_cast<Tag*>(got)->written_before_start;
  });
  auto call = stub.PrepareUnaryCall(&context, "/kvstore.Test/Nothing", request, &cq);
  call->StartCall();
  tag.written_before_start = std::string(64, 'w');
  call->Finish(&response, &status, &tag);
  next.join();

  EXPECT_EQ(got, &tag);
  EXPECT_EQ(seen, std::string(64, 'w'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_GE(kvstore_tsan_grpc_cq_releases() - releases, 1);  // the batch: libgrpc++ -> libgrpc
  EXPECT_GE(kvstore_tsan_grpc_cq_acquires() - acquires, 1);  // the tag back: cq.Next
  cq.Shutdown();
  void* ignored;
  bool ok;
  while (cq.Next(&ignored, &ok)) {
  }
}

#else

TEST(TsanGrpcCqTest, OnlyUnderThreadSanitizer) { GTEST_SKIP() << "built without --config=tsan"; }

#endif

}  // namespace
