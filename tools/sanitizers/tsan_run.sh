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
#   libabsl_random_internal_pool_urbg.so: Abseil's shared pool of random generators, whose
#     entries one thread allocates and others copy under Abseil's SpinLock (libabsl_base,
#     uninstrumented); gRPC's client header code draws from it (kvbench's gRPC threads in
#     node:tls_test). Only the library's own new[] and memcpy are ignored.
#   libssl.so, libcrypto.so: Debian's OpenSSL 3. kvbench's gRPC client over TLS (node:tls_test,
#     3 runs of 5 before this line): one client thread, polling the channel for everyone,
#     decrypts a response into a slice gRPC allocated (libssl's memcpy); another client thread
#     parses it (our generated PutResponse code) after its Pluck returns. gRPC hands the slice
#     between the two through libgrpc's lock-free closures, which nothing can show to TSan from
#     outside. libcrypto: OPENSSL_sk_dup (fourth pass, kvbench's TLS client; not seen again in
#     the fifth) copies lists of the SSL_CTX that gRPC's handshakes on several threads share, an
#     OpenSSL-internal copy ordered by OpenSSL's and libgrpc's uninstrumented atomics. kvbench's
#     only TLS code builds the credentials on the main thread before any client thread starts.
#     What these ignore: the copies, allocations and frees the two libraries make themselves
#     (also on buffers our code hands to SSL_read/SSL_write through kj-tls); our own accesses to
#     those buffers are still checked.
#   absl Status::UnrefNonInlined, status_internal::Payload: an absl::Status's rep (message and
#     payloads) is freed by whichever thread drops the last reference, after an acq_rel decrement
#     inside Debian's uninstrumented libabsl_status, which TSan cannot see: the free looked
#     unordered with the thread that built the rep (gRPC's threads hand statuses with payloads to
#     each other; node:watch_progress_test). Both frames are inside libabsl_status only.
# Not suppressed any more (fifth pass, tools/fuzz/README.md): race:libgrpc.so,
# race:grpc_tcp_create, race:grpc_core::ResourceQuota::Default and
# race:grpc::internal::BlockingUnaryCallImpl. Every binary now tells TSan about gRPC's locks and
# its completion queue's hand-off of a tag (tools/sanitizers/tsan_absl_mutex.cc and
# tsan_grpc_cq.cc, linked under --config=tsan only), which is what those lines stood in for.

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
called_from_lib:libabsl_random_internal_pool_urbg.so
called_from_lib:libssl.so
called_from_lib:libcrypto.so
race:absl::*synchronization_internal::
race:absl::*Status::UnrefNonInlined
race:absl::*status_internal::Payload
SUPPRESSIONS
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$suppressions"
exec "$@"
