#!/usr/bin/env bash
# Runs one test under ThreadSanitizer (--config=tsan uses it as --run_under). It writes the
# suppressions below next to the test and points TSAN_OPTIONS at them, so they reach the test
# and every process it starts (kvnode children) wherever the sandbox puts it.
#
# Suppressed: only system libraries that are not built with -fsanitize=thread. They synchronise
# with their own futex-based primitives, which TSan cannot see, so their accesses look unordered.
# Nothing of this project is suppressed. One line per reason:
#   libgrpc.so, libgpr.so, absl synchronization_internal: uninstrumented, futex-synchronised.
#   libgrpc++.so: the same for gRPC's C++ layer (the pattern libgrpc.so does not match it): it
#     allocates and frees call objects (server contexts, metadata maps, call op sets) whose
#     hand-off between gRPC's threads goes through libgrpc's completion queues; only the
#     allocations and frees it makes itself are ignored, header code compiled into our binaries
#     (and every handler of ours) is still checked.
#   libabsl_status.so, libabsl_cord.so, libabsl_cord_internal.so, libabsl_strings.so: Debian's
#     shared Abseil, which --config=tsan links instead of the static archives
#     (tools/third_party/BUILD.bazel) so that these names can match. gRPC's threads build and
#     free statuses (payloads in Cords) and strings that other gRPC threads, or a test's thread
#     reading a returned grpc::Status through absl::StrAppend, later copy; the allocations,
#     frees and memcpys these libraries make are ignored, the code of ours around them is not.
#   libabsl_graphcycles_internal.so: absl::Mutex's deadlock-detection graph, which it moves under
#     its own uninstrumented spinlock (seen in the gRPC clients of flood_test and jwt_auth_test).
#   race:libgrpc.so (a frame in the module): libgrpc.so's calls into libstdc++'s string
#     templates bind to the instrumented copies our binaries export, so its copy of a string
#     another thread built is checked with libgrpc's own ordering unseen (a client stream's
#     initial metadata, node:flood_test). Our handlers are not called from libgrpc.so (libgrpc++
#     calls them, and is not matched by this name), so no stack of ours carries this frame.
#   grpc_tcp_create: libgrpc (uninstrumented) copies the endpoint name that the caller's thread
#     built into its poller thread's string through inlined libstdc++/Abseil code, which
#     called_from_lib cannot match (node:flood_test's gRPC client, etcd's Put stub).
#   grpc_core::ResourceQuota::Default: the same copy of the default quota's name, made on the
#     first channel's thread and read by gRPC's executor thread (node:flood_test).
#   grpc::internal::BlockingUnaryCallImpl: a blocking client call's method path, built by the
#     calling thread in gRPC's header code and read by libgrpc's poller thread (clients only: no
#     server handler of ours runs under it).
#   absl Status::UnrefNonInlined, status_internal::Payload: an absl::Status's rep (message and
#     payloads) is freed by whichever thread drops the last reference, after an acq_rel decrement
#     inside Debian's uninstrumented libabsl_status, which TSan cannot see: the free looked
#     unordered with the thread that built the rep (gRPC's threads hand statuses with payloads to
#     each other; node:watch_progress_test). Both frames are inside libabsl_status only.

set -euo pipefail
suppressions="${TEST_TMPDIR:-/tmp}/tsan.supp"
cat >"$suppressions" <<'SUPPRESSIONS'
called_from_lib:libgrpc.so
called_from_lib:libgpr.so
called_from_lib:libgrpc++.so
called_from_lib:libabsl_status.so
called_from_lib:libabsl_cord.so
called_from_lib:libabsl_cord_internal.so
called_from_lib:libabsl_strings.so
called_from_lib:libabsl_graphcycles_internal.so
race:absl::*synchronization_internal::
race:libgrpc.so
race:grpc_tcp_create
race:grpc_core::ResourceQuota::Default
race:grpc::internal::BlockingUnaryCallImpl
race:absl::*Status::UnrefNonInlined
race:absl::*status_internal::Payload
SUPPRESSIONS
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$suppressions"
exec "$@"
