#ifndef KVSTORE_NET_CONCURRENCY_CONTEXT_H_
#define KVSTORE_NET_CONCURRENCY_CONTEXT_H_

// Where the concurrency objects run: a net::Client and the kj event loop of the thread that
// created it. Every blocking call of this package (Session::Create, Mutex::Lock, RunStm) waits
// on `wait_scope`, so the loop keeps running meanwhile: a session's keep-alives and watches
// progress while the caller waits for a lock or a read. The three references must outlive every
// object made with the context.

#include "kj/async.h"
#include "kj/timer.h"
#include "net/client.h"

namespace kvstore::net::concurrency {

struct ClientContext {
  Client& client;
  kj::Timer& timer;
  kj::WaitScope& wait_scope;
};

}  // namespace kvstore::net::concurrency

#endif  // KVSTORE_NET_CONCURRENCY_CONTEXT_H_
