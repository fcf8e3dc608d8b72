// ThreadSanitizer builds only (--config=tsan links it into every binary that links gRPC, through
// //tools/third_party:grpc): tells TSan about gRPC's completion-queue contract, that whatever a
// thread did before it started a batch of operations with a tag happens before another thread
// gets that tag back from a completion queue.
//
// Why: that hand-off goes through libgrpc.so's lock-free queues (uninstrumented), so TSan saw the
// gRPC C++ header code compiled into our binaries unordered across it: kvnode's loop calls
// ServerUnaryReactor::Finish, which fills the call's op set and tag (CallbackWithSuccessTag::Set)
// and starts the batch; a thread of libgrpc++'s callback completion queue then gets the tag from
// grpc_completion_queue_next and runs it (CallbackWithSuccessTag::Run, FinalizeResult, OnDone,
// the call object's deletion). tsan_absl_mutex.cc covers the paths that go through gRPC's
// mutexes; this one covers the queue.
//
// How: as tsan_absl_mutex.cc, by interposing exported C functions that libgrpc++.so calls through
// its PLT. grpc_call_start_batch and the two server request calls release the tag's address
// before forwarding; grpc_completion_queue_next and _pluck acquire the returned tag's address
// when it completes an operation. The tag is the address of the C++ object that gRPC's headers
// use for the call's ops (its CompletionQueueTag), so the edge covers what the starting thread
// wrote before the batch, and nothing written after it: a response written after Finish is
// still reported against the thread that runs the tag.
//
// Not covered: a tag that libgrpc.so completes by running the functor itself (callback
// completion queues with a background poller, which Debian's build does not use for kvnode's
// server: its callbacks come through libgrpc++'s next-polling threads), and libgrpc's internal
// ordering of its own memory (tsan_run.sh ignores libgrpc.so's own accesses).

#include <sanitizer/tsan_interface.h>

#include <atomic>

#include "grpc/grpc.h"
#include "tools/sanitizers/interpose.h"

namespace {

using kvstore::sanitizers::Real;

// For tools/sanitizers:tsan_grpc_cq_test.
std::atomic<long> g_releases{0};
std::atomic<long> g_acquires{0};

void Release(void* tag) {
  if (tag == nullptr) return;
  g_releases.fetch_add(1, std::memory_order_relaxed);
  __tsan_release(tag);
}

void Acquire(const grpc_event& event) {
  if (event.type != GRPC_OP_COMPLETE || event.tag == nullptr) return;
  g_acquires.fetch_add(1, std::memory_order_relaxed);
  __tsan_acquire(event.tag);
}

using StartBatch = grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*);
using RequestCall = grpc_call_error (*)(grpc_server*, grpc_call**, grpc_call_details*,
                                        grpc_metadata_array*, grpc_completion_queue*,
                                        grpc_completion_queue*, void*);
using RequestRegisteredCall = grpc_call_error (*)(grpc_server*, void*, grpc_call**, gpr_timespec*,
                                                  grpc_metadata_array*, grpc_byte_buffer**,
                                                  grpc_completion_queue*, grpc_completion_queue*,
                                                  void*);
using Next = grpc_event (*)(grpc_completion_queue*, gpr_timespec, void*);
using Pluck = grpc_event (*)(grpc_completion_queue*, void*, gpr_timespec, void*);

}  // namespace

extern "C" {

long kvstore_tsan_grpc_cq_releases() { return g_releases.load(std::memory_order_relaxed); }
long kvstore_tsan_grpc_cq_acquires() { return g_acquires.load(std::memory_order_relaxed); }

grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops, void* tag,
                                      void* reserved) {
  static std::atomic<StartBatch> real_slot{nullptr};
  const StartBatch real = Real(real_slot, "grpc_call_start_batch");
  Release(tag);
  return real(call, ops, nops, tag, reserved);
}

grpc_call_error grpc_server_request_call(grpc_server* server, grpc_call** call,
                                         grpc_call_details* details,
                                         grpc_metadata_array* request_metadata,
                                         grpc_completion_queue* cq_bound_to_call,
                                         grpc_completion_queue* cq_for_notification,
                                         void* tag_new) {
  static std::atomic<RequestCall> real_slot{nullptr};
  const RequestCall real = Real(real_slot, "grpc_server_request_call");
  Release(tag_new);
  return real(server, call, details, request_metadata, cq_bound_to_call, cq_for_notification,
              tag_new);
}

grpc_call_error grpc_server_request_registered_call(grpc_server* server, void* registered_method,
                                                    grpc_call** call, gpr_timespec* deadline,
                                                    grpc_metadata_array* request_metadata,
                                                    grpc_byte_buffer** optional_payload,
                                                    grpc_completion_queue* cq_bound_to_call,
                                                    grpc_completion_queue* cq_for_notification,
                                                    void* tag_new) {
  static std::atomic<RequestRegisteredCall> real_slot{nullptr};
  const RequestRegisteredCall real = Real(real_slot, "grpc_server_request_registered_call");
  Release(tag_new);
  return real(server, registered_method, call, deadline, request_metadata, optional_payload,
              cq_bound_to_call, cq_for_notification, tag_new);
}

grpc_event grpc_completion_queue_next(grpc_completion_queue* cq, gpr_timespec deadline,
                                      void* reserved) {
  static std::atomic<Next> real_slot{nullptr};
  const Next real = Real(real_slot, "grpc_completion_queue_next");
  const grpc_event event = real(cq, deadline, reserved);
  Acquire(event);
  return event;
}

grpc_event grpc_completion_queue_pluck(grpc_completion_queue* cq, void* tag, gpr_timespec deadline,
                                       void* reserved) {
  static std::atomic<Pluck> real_slot{nullptr};
  const Pluck real = Real(real_slot, "grpc_completion_queue_pluck");
  const grpc_event event = real(cq, tag, deadline, reserved);
  Acquire(event);
  return event;
}

}  // extern "C"
