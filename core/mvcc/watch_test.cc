// Unit tests of the watch hub against etcd v3 watch semantics (server/storage/mvcc
// watchable_store.go, api/v3rpc/watch.go), through the public API only. A Fixture plays the
// driver: after every write it notifies the hub of the store's events and lets lagging watchers
// catch up, as the server core does. Each test names the etcd behaviour it pins.

#include "core/mvcc/watch.h"

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/errors.h"
#include "core/mvcc/backend.h"
#include "core/mvcc/store.h"
#include "core/mvcc/types.h"
#include "gtest/gtest.h"

namespace kvstore::mvcc {

// gtest printer: failures show the key-value instead of raw bytes.
void PrintTo(const KeyValue& kv, std::ostream* os) {
  *os << "{key=\"" << kv.key << "\" create=" << kv.create_revision << " mod=" << kv.mod_revision
      << " version=" << kv.version << " value=\"" << kv.value << "\" lease=" << kv.lease << "}";
}

namespace {

// Bound on catch-up rounds in drain loops: far more than any test needs, so a hub that never
// syncs fails the test instead of hanging it.
constexpr int kMaxDrainRounds = 1000;

KeyValue Kv(std::string key, Revision create, Revision mod, int64_t version, std::string value) {
  return KeyValue{std::move(key), create, mod, version, std::move(value), kNoLease};
}

RequestOp PutOp(std::string key, std::string value) {
  RequestOp op;
  op.kind = RequestOp::Kind::kPut;
  op.put.key = std::move(key);
  op.put.value = std::move(value);
  return op;
}

WatchRequest WatchOf(std::string key, std::string range_end = "", Revision start = 0) {
  WatchRequest request;
  request.key = std::move(key);
  request.range_end = std::move(range_end);
  request.start_revision = start;
  return request;
}

// Every event of the responses, in delivery order.
std::vector<Event> EventsOf(const std::vector<WatchResponse>& responses) {
  std::vector<Event> events;
  for (const WatchResponse& response : responses) {
    events.insert(events.end(), response.events.begin(), response.events.end());
  }
  return events;
}

std::vector<Revision> RevisionsOf(const std::vector<Event>& events) {
  std::vector<Revision> revisions;
  for (const Event& event : events) revisions.push_back(event.kv.mod_revision);
  return revisions;
}

std::vector<std::string> KeysOf(const std::vector<Event>& events) {
  std::vector<std::string> keys;
  for (const Event& event : events) keys.push_back(event.kv.key);
  return keys;
}

std::vector<Revision> Consecutive(Revision first, Revision last) {
  std::vector<Revision> revisions;
  for (Revision r = first; r <= last; ++r) revisions.push_back(r);
  return revisions;
}

// A store over a MemoryBackend and a hub over the store, driven as the server core would.
class Fixture {
 public:
  explicit Fixture(size_t max_buffered_events = kDefaultMaxBufferedEventsPerWatcher,
                   size_t catch_up_events = kDefaultCatchUpBatchEvents)
      : store_(OpenStore(&backend_)),
        hub_(store_.get(), max_buffered_events),
        catch_up_events_(catch_up_events) {}

  Store& store() { return *store_; }
  WatchHub& hub() { return hub_; }

  Revision Put(const std::string& key, const std::string& value) {
    PutRequest request;
    request.key = key;
    request.value = value;
    absl::StatusOr<PutResponse> response = store_->Put(request);
    EXPECT_TRUE(response.ok()) << response.status();
    Apply();
    return response.ok() ? response->revision : 0;
  }

  Revision Delete(const std::string& key, const std::string& range_end = "") {
    DeleteRangeRequest request;
    request.key = key;
    request.range_end = range_end;
    absl::StatusOr<DeleteRangeResponse> response = store_->DeleteRange(request);
    EXPECT_TRUE(response.ok()) << response.status();
    Apply();
    return response.ok() ? response->revision : 0;
  }

  Revision Txn(std::vector<RequestOp> ops) {
    TxnRequest request;
    request.success = std::move(ops);
    absl::StatusOr<TxnResponse> response = store_->Txn(request);
    EXPECT_TRUE(response.ok()) << response.status();
    Apply();
    return response.ok() ? response->revision : 0;
  }

  // What the driver does after every applied write.
  void Apply() {
    hub_.Notify(store_->TakeEvents());
    hub_.CatchUp(catch_up_events_);
  }

  WatchId Watch(const WatchRequest& request) {
    absl::StatusOr<WatchId> id = hub_.Watch(request);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : 0;
  }

  std::vector<WatchResponse> Take() { return hub_.TakeResponses(); }

  // Takes responses and catches up until no watcher lags, as a reader that keeps up would.
  std::vector<WatchResponse> Drain() {
    std::vector<WatchResponse> all;
    for (int round = 0; round < kMaxDrainRounds; ++round) {
      std::vector<WatchResponse> taken = hub_.TakeResponses();
      all.insert(all.end(), taken.begin(), taken.end());
      if (!hub_.HasLagging() && !hub_.HasResponses()) return all;
      hub_.CatchUp(catch_up_events_);
    }
    ADD_FAILURE() << "watchers still lagging after " << kMaxDrainRounds << " catch-up rounds";
    return all;
  }

 private:
  static std::unique_ptr<Store> OpenStore(Backend* backend) {
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(backend);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  MemoryBackend backend_;
  std::unique_ptr<Store> store_;
  WatchHub hub_;
  size_t catch_up_events_;
};

// etcd: the first response of a watch is the "created" response, before any event.
TEST(WatchTest, CreatedResponseComesFirst) {
  Fixture f;
  const WatchId id = f.Watch(WatchOf("foo"));
  f.Put("foo", "1");
  std::vector<WatchResponse> responses = f.Take();
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].watch_id, id);
  EXPECT_TRUE(responses[0].created);
  EXPECT_TRUE(responses[0].events.empty());
  EXPECT_EQ(responses[0].header_revision, 1);
  EXPECT_FALSE(responses[1].created);
  EXPECT_EQ(responses[1].watch_id, id);
}

// etcd: a watch on one key sees that key's puts and deletes with the stored kv, nothing else.
TEST(WatchTest, SingleKeyEventsCarryKvAndType) {
  Fixture f;
  f.Watch(WatchOf("foo"));
  f.Put("foo", "a");   // 2
  f.Put("foo0", "x");  // 3: other key
  f.Put("foo", "b");   // 4
  f.Delete("foo");     // 5
  f.Put("foo", "c");   // 6
  std::vector<Event> events = EventsOf(f.Take());
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].type, Event::Type::kPut);
  EXPECT_EQ(events[0].kv, Kv("foo", 2, 2, 1, "a"));
  EXPECT_EQ(events[1].type, Event::Type::kPut);
  EXPECT_EQ(events[1].kv, Kv("foo", 2, 4, 2, "b"));
  // etcd: a delete event's kv holds the key and the deleting revision only.
  EXPECT_EQ(events[2].type, Event::Type::kDelete);
  EXPECT_EQ(events[2].kv, Kv("foo", 0, 5, 0, ""));
  EXPECT_EQ(events[3].type, Event::Type::kPut);
  EXPECT_EQ(events[3].kv, Kv("foo", 6, 6, 1, "c"));
}

// etcd: range_end makes the watch cover [key, range_end).
TEST(WatchTest, RangeWatchCoversHalfOpenInterval) {
  Fixture f;
  f.Watch(WatchOf("b", "d"));
  for (const char* key : {"a", "b", "bz", "c", "d", "e"}) f.Put(key, "v");
  EXPECT_EQ(KeysOf(EventsOf(f.Take())), (std::vector<std::string>{"b", "bz", "c"}));
}

// etcd (clientv3.WithPrefix): range_end = PrefixEnd(prefix) watches every key with the prefix.
TEST(WatchTest, PrefixWatchUsesPrefixEnd) {
  Fixture f;
  f.Watch(WatchOf("foo/", PrefixEnd("foo/")));
  for (const char* key : {"foo", "foo/", "foo/1", "foo0", "foo/2/x", "fop"}) f.Put(key, "v");
  EXPECT_EQ(KeysOf(EventsOf(f.Take())), (std::vector<std::string>{"foo/", "foo/1", "foo/2/x"}));
}

// etcd (clientv3.WithFromKey): range_end "\0" watches every key >= key.
TEST(WatchTest, FromKeyWatchCoversEveryLaterKey) {
  Fixture f;
  f.Watch(WatchOf("m", std::string(1, '\0')));
  for (const char* key : {"a", "l", "m", "m0", "z", "\xff"}) f.Put(key, "v");
  EXPECT_EQ(KeysOf(EventsOf(f.Take())), (std::vector<std::string>{"m", "m0", "z", "\xff"}));
}

// etcd: prev_kv is filled only for watchers that set prev_kv, for puts and deletes alike.
TEST(WatchTest, PrevKvOnlyWhenAsked) {
  Fixture f;
  f.Put("k", "old");  // 2, before the watches
  const WatchId plain = f.Watch(WatchOf("k"));
  WatchRequest with_prev = WatchOf("k");
  with_prev.prev_kv = true;
  const WatchId prev = f.Watch(with_prev);
  f.Put("k", "new");  // 3
  f.Delete("k");      // 4
  std::map<WatchId, std::vector<Event>> by_watch;
  for (const WatchResponse& response : f.Take()) {
    for (const Event& event : response.events) by_watch[response.watch_id].push_back(event);
  }
  ASSERT_EQ(by_watch[plain].size(), 2u);
  EXPECT_FALSE(by_watch[plain][0].prev_kv.has_value());
  EXPECT_FALSE(by_watch[plain][1].prev_kv.has_value());
  ASSERT_EQ(by_watch[prev].size(), 2u);
  ASSERT_TRUE(by_watch[prev][0].prev_kv.has_value());
  EXPECT_EQ(*by_watch[prev][0].prev_kv, Kv("k", 2, 2, 1, "old"));
  ASSERT_TRUE(by_watch[prev][1].prev_kv.has_value());
  EXPECT_EQ(*by_watch[prev][1].prev_kv, Kv("k", 2, 3, 2, "new"));
}

// etcd: prev_kv is also filled for events replayed from history (watch from a past revision).
TEST(WatchTest, PrevKvOnReplayedEvents) {
  Fixture f;
  f.Put("k", "a");  // 2
  f.Put("k", "b");  // 3
  WatchRequest request = WatchOf("k", "", 3);
  request.prev_kv = true;
  f.Watch(request);
  f.Apply();
  std::vector<Event> events = EventsOf(f.Drain());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kv, Kv("k", 2, 3, 2, "b"));
  ASSERT_TRUE(events[0].prev_kv.has_value());
  EXPECT_EQ(*events[0].prev_kv, Kv("k", 2, 2, 1, "a"));
}

// etcd WatchCreateRequest.filters: NOPUT drops puts, NODELETE drops deletes.
TEST(WatchTest, NoPutAndNoDeleteFilters) {
  Fixture f;
  WatchRequest no_put = WatchOf("k");
  no_put.no_put = true;
  WatchRequest no_delete = WatchOf("k");
  no_delete.no_delete = true;
  const WatchId deletes_only = f.Watch(no_put);
  const WatchId puts_only = f.Watch(no_delete);
  f.Put("k", "1");  // 2
  f.Delete("k");    // 3
  f.Put("k", "2");  // 4
  std::map<WatchId, std::vector<Event>> by_watch;
  for (const WatchResponse& response : f.Take()) {
    for (const Event& event : response.events) by_watch[response.watch_id].push_back(event);
  }
  ASSERT_EQ(by_watch[deletes_only].size(), 1u);
  EXPECT_EQ(by_watch[deletes_only][0].type, Event::Type::kDelete);
  EXPECT_EQ(by_watch[deletes_only][0].kv.mod_revision, 3);
  EXPECT_EQ(RevisionsOf(by_watch[puts_only]), (std::vector<Revision>{2, 4}));
  for (const Event& event : by_watch[puts_only]) EXPECT_EQ(event.type, Event::Type::kPut);
}

// etcd watchable_store: a watch from a past revision replays history in order, then continues
// live with no gap and no duplicate, even when writes land while it is still catching up.
TEST(WatchTest, PastRevisionReplaysThenContinuesLive) {
  // Catch-up batches of 2 events with a write between each, so replay and live traffic
  // interleave.
  Fixture f(kDefaultMaxBufferedEventsPerWatcher, /*catch_up_events=*/2);
  for (int i = 0; i < 10; ++i) f.Put("k" + std::to_string(i), "v");  // 2..11
  f.Watch(WatchOf("k", PrefixEnd("k"), 3));
  std::vector<WatchResponse> responses;
  for (int i = 10; i < 20; ++i) {
    f.Put("k" + std::to_string(i), "v");  // 12..21
    if (i == 10) {
      ASSERT_TRUE(f.hub().HasLagging()) << "caught up too early to interleave";
    }
    std::vector<WatchResponse> taken = f.Take();
    responses.insert(responses.end(), taken.begin(), taken.end());
  }
  std::vector<WatchResponse> rest = f.Drain();
  responses.insert(responses.end(), rest.begin(), rest.end());
  EXPECT_FALSE(f.hub().HasLagging());
  f.Put("k-live", "v");  // 22: delivered live once synced
  std::vector<WatchResponse> live = f.Take();
  responses.insert(responses.end(), live.begin(), live.end());
  EXPECT_EQ(RevisionsOf(EventsOf(responses)), Consecutive(3, 22));
}

// etcd: a watch whose start revision is below the compact revision is refused with
// ErrCompacted, and the client learns the compact revision so it can re-list (the message
// names it). The compact revision itself is still served.
TEST(WatchTest, WatchBelowCompactRevisionIsRefused) {
  Fixture f;
  for (int i = 0; i < 5; ++i) f.Put("k", std::to_string(i));  // 2..6
  ASSERT_TRUE(f.store().Compact(4).ok());
  for (Revision start : {1, 3}) {
    absl::StatusOr<WatchId> refused = f.hub().Watch(WatchOf("k", "", start));
    ASSERT_FALSE(refused.ok()) << start;
    EXPECT_EQ(CodeOf(refused.status()), ErrorCode::kCompacted);
    EXPECT_NE(refused.status().message().find("revision 4"), absl::string_view::npos)
        << refused.status().message();
  }
  EXPECT_EQ(f.hub().compact_revision(), 4);
  EXPECT_EQ(f.hub().watcher_count(), 0u);
  EXPECT_FALSE(f.hub().HasResponses());
  // From the compact revision on, everything is served.
  f.Watch(WatchOf("k", "", 4));
  f.Apply();
  EXPECT_EQ(RevisionsOf(EventsOf(f.Drain())), (std::vector<Revision>{4, 5, 6}));
}

// etcd #18089: compacting at a delete's revision, then watching from the compact revision,
// must deliver that delete before the events after it (etcd dropped the tombstone, so the
// watch began with the next put).
TEST(WatchTest, WatchFromCompactRevisionDeliversItsDelete) {
  Fixture f;
  f.Put("k", "v2");                        // 2
  f.Put("k", "v3");                        // 3
  f.Put("k", "v4");                        // 4
  const Revision deleted = f.Delete("k");  // 5
  f.Put("k", "v6");                        // 6
  f.Drain();
  ASSERT_TRUE(f.store().Compact(deleted).ok());
  f.Watch(WatchOf("k", "", deleted));
  f.Apply();
  std::vector<Event> events = EventsOf(f.Drain());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, Event::Type::kDelete);
  EXPECT_EQ(events[0].kv.key, "k");
  EXPECT_EQ(events[0].kv.mod_revision, deleted);
  EXPECT_EQ(events[1].type, Event::Type::kPut);
  EXPECT_EQ(events[1].kv, Kv("k", 6, 6, 1, "v6"));
}

// etcd #17529 with the compact revision: a lagging watcher whose next revision is exactly the
// compact revision catches up from it (etcd cancels only below it).
TEST(WatchTest, LaggingWatcherAtTheCompactRevisionCatchesUp) {
  Fixture f(/*max_buffered_events=*/2);
  const WatchId id = f.Watch(WatchOf("k"));
  ASSERT_TRUE(f.hub().SetReading(id, false).ok());
  f.Put("k", "a");  // 2
  f.Put("k", "b");  // 3: the buffer is full
  f.Put("k", "c");  // 4: the watcher lags from here
  f.Put("k", "d");  // 5
  f.Put("k", "e");  // 6
  ASSERT_TRUE(f.store().Compact(4).ok());
  ASSERT_TRUE(f.hub().SetReading(id, true).ok());
  std::vector<WatchResponse> responses = f.Drain();
  for (const WatchResponse& response : responses) EXPECT_FALSE(response.canceled);
  EXPECT_EQ(RevisionsOf(EventsOf(responses)), Consecutive(2, 6));
}

// etcd #20221: a watch on a future revision delivers nothing before that revision, then
// everything from it on.
TEST(WatchTest, FutureRevisionDeliversNothingBeforeIt) {
  Fixture f;
  f.Watch(WatchOf("k", "", 5));
  f.Put("k", "a");  // 2
  f.Put("k", "b");  // 3
  f.Put("k", "c");  // 4
  std::vector<WatchResponse> before = f.Take();
  ASSERT_EQ(before.size(), 1u);
  EXPECT_TRUE(before[0].created);
  f.Put("k", "d");  // 5
  f.Put("k", "e");  // 6
  EXPECT_EQ(RevisionsOf(EventsOf(f.Take())), (std::vector<Revision>{5, 6}));
}

// etcd #20221 (fixed by etcd #20229): no progress notification for a watch whose start revision
// is still in the future; its header revision would sit below the start, and a client resuming
// from it would receive events from before the revision it asked for.
TEST(WatchTest, FutureRevisionGetsNoProgressBeforeItsStart) {
  Fixture f;
  const WatchId future = f.Watch(WatchOf("k", "", 5));
  f.Take();
  f.Put("other", "v");  // 2
  f.hub().RequestProgress();
  EXPECT_TRUE(f.Take().empty());
  f.Put("other", "v");  // 3
  f.Put("other", "v");  // 4: the watch now waits for the very next revision
  f.hub().RequestProgress();
  std::vector<WatchResponse> progress = f.Take();
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_EQ(progress[0].watch_id, future);
  EXPECT_TRUE(progress[0].progress);
  EXPECT_EQ(progress[0].header_revision, 4);
}

// etcd: all events of one revision (one txn) arrive in one response, never split, even when the
// watcher's buffer is smaller than the revision.
TEST(WatchTest, TxnRevisionIsNeverSplitBySmallBuffer) {
  Fixture f(/*max_buffered_events=*/2);
  const WatchId id = f.Watch(WatchOf("t", PrefixEnd("t")));
  f.Take();
  const Revision rev = f.Txn({PutOp("t1", "a"), PutOp("t2", "b"), PutOp("t3", "c")});
  std::vector<WatchResponse> responses = f.Drain();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].watch_id, id);
  EXPECT_EQ(KeysOf(responses[0].events), (std::vector<std::string>{"t1", "t2", "t3"}));
  EXPECT_EQ(RevisionsOf(responses[0].events), (std::vector<Revision>{rev, rev, rev}));
}

// etcd: a revision is never split, however much larger than the buffer and the catch-up batch
// it is: replaying it must not cut it at the batch limit and skip the rest.
TEST(WatchTest, LargeTxnRevisionIsDeliveredWholeOnReplay) {
  Fixture f(/*max_buffered_events=*/2, /*catch_up_events=*/1);
  f.Put("t0", "v");  // 2
  const Revision rev = f.Txn({PutOp("t1", "a"), PutOp("t2", "b"), PutOp("t3", "c"),
                              PutOp("t4", "d"), PutOp("t5", "e")});  // 3
  f.Put("t6", "v");                                                  // 4
  f.Watch(WatchOf("t", PrefixEnd("t"), 2));
  f.Apply();
  std::vector<WatchResponse> responses = f.Drain();
  std::vector<Event> events = EventsOf(responses);
  EXPECT_EQ(KeysOf(events), (std::vector<std::string>{"t0", "t1", "t2", "t3", "t4", "t5", "t6"}));
  for (const WatchResponse& response : responses) {
    bool has_rev = false;
    for (const Event& event : response.events) has_rev |= event.kv.mod_revision == rev;
    if (has_rev) {
      EXPECT_EQ(response.events.size(), 5u);
    }
  }
}

// etcd: the same holds live: a txn larger than the buffer and the catch-up batch arrives whole.
TEST(WatchTest, LargeTxnRevisionIsDeliveredWholeLive) {
  Fixture f(/*max_buffered_events=*/2, /*catch_up_events=*/1);
  f.Watch(WatchOf("t", PrefixEnd("t")));
  f.Take();
  const Revision rev = f.Txn(
      {PutOp("t1", "a"), PutOp("t2", "b"), PutOp("t3", "c"), PutOp("t4", "d"), PutOp("t5", "e")});
  std::vector<WatchResponse> responses = f.Drain();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(KeysOf(responses[0].events), (std::vector<std::string>{"t1", "t2", "t3", "t4", "t5"}));
  EXPECT_EQ(RevisionsOf(responses[0].events), std::vector<Revision>(5, rev));
}

// etcd watchable_store (slow watchers move to unsynced): a reader that does not take responses
// never blocks writes; the watcher lags, then catches up with every event exactly once, in
// order.
TEST(WatchTest, SlowWatcherLagsThenCatchesUpExactlyOnce) {
  Fixture f(/*max_buffered_events=*/2);
  f.Watch(WatchOf("k", PrefixEnd("k")));
  for (int i = 0; i < 20; ++i) {
    EXPECT_NE(f.Put("k" + std::to_string(i % 3), std::to_string(i)), 0);  // 2..21
  }
  EXPECT_EQ(f.store().current_revision(), 21);
  EXPECT_TRUE(f.hub().HasLagging());
  std::vector<Event> events = EventsOf(f.Drain());
  EXPECT_EQ(RevisionsOf(events), Consecutive(2, 21));
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].kv.value, std::to_string(i));
  // Synced again: the next write arrives live.
  f.Put("k0", "live");
  EXPECT_EQ(RevisionsOf(EventsOf(f.Take())), (std::vector<Revision>{22}));
}

// A client that stops reading (SetReading false): its responses stay buffered while other
// watchers' go out, the hub reports nothing it could hand out or catch up for it once its buffer
// is full (a driver looping on HasResponses/HasLagging would spin forever), and when it reads
// again it gets every revision once, in order, from the buffer and then from history.
TEST(WatchTest, WatcherNotReadingKeepsItsBufferThenCatchesUpWhenItReads) {
  Fixture f(/*max_buffered_events=*/3, /*catch_up_events=*/2);
  const WatchId slow = f.Watch(WatchOf("k", PrefixEnd("k")));
  const WatchId fast = f.Watch(WatchOf("k", PrefixEnd("k")));
  f.Take();  // both "created"
  ASSERT_TRUE(f.hub().SetReading(slow, false).ok());
  std::vector<WatchResponse> taken;  // the fast reader takes its responses after every write
  for (int i = 0; i < 10; ++i) {
    f.Put("k" + std::to_string(i % 2), std::to_string(i));  // revisions 2..11
    for (WatchResponse& response : f.Take()) taken.push_back(std::move(response));
  }
  for (const WatchResponse& response : taken) EXPECT_EQ(response.watch_id, fast);
  EXPECT_EQ(RevisionsOf(EventsOf(taken)), Consecutive(2, 11));
  // The slow watcher holds its full buffer and lags: nothing for a driver to do for it.
  EXPECT_FALSE(f.hub().HasResponses());
  EXPECT_FALSE(f.hub().HasLagging());
  f.hub().CatchUp(2);
  EXPECT_TRUE(f.Take().empty());
  ASSERT_TRUE(f.hub().SetReading(slow, true).ok());
  EXPECT_TRUE(f.hub().HasResponses());
  std::vector<WatchResponse> caught_up = f.Drain();
  for (const WatchResponse& response : caught_up) EXPECT_EQ(response.watch_id, slow);
  EXPECT_EQ(RevisionsOf(EventsOf(caught_up)), Consecutive(2, 11));
  f.Put("k0", "live");
  EXPECT_EQ(RevisionsOf(EventsOf(f.Take())), (std::vector<Revision>{12, 12}));
  EXPECT_EQ(CodeOf(f.hub().SetReading(999, false)), ErrorCode::kWatchNotFound);
}

// etcd #17529: a lagging watcher whose next revision gets compacted is canceled with the
// compact revision; the events it missed are reported lost, never silently skipped.
TEST(WatchTest, LaggingWatcherCanceledWhenItsNextRevisionIsCompacted) {
  Fixture f(/*max_buffered_events=*/2);
  const WatchId id = f.Watch(WatchOf("k"));
  for (int i = 0; i < 6; ++i) f.Put("k", std::to_string(i));  // 2..7, nobody reads
  ASSERT_TRUE(f.hub().HasLagging());
  ASSERT_TRUE(f.store().Compact(6).ok());
  std::vector<WatchResponse> responses = f.Take();
  f.hub().CatchUp();
  std::vector<WatchResponse> after = f.Take();
  responses.insert(responses.end(), after.begin(), after.end());
  ASSERT_FALSE(responses.empty());
  const WatchResponse& last = responses.back();
  EXPECT_EQ(last.watch_id, id);
  EXPECT_TRUE(last.canceled);
  EXPECT_EQ(last.compact_revision, 6);
  EXPECT_FALSE(last.cancel_reason.empty());
  // What did arrive is a gap-free prefix that stops before the compaction.
  std::vector<Revision> delivered = RevisionsOf(EventsOf(responses));
  ASSERT_FALSE(delivered.empty());
  EXPECT_EQ(delivered, Consecutive(2, delivered.back()));
  EXPECT_LT(delivered.back(), 6);
  EXPECT_EQ(f.hub().watcher_count(), 0u);
  f.Put("k", "after");
  EXPECT_TRUE(f.Take().empty());
}

// etcd RequestProgress: synced watchers with nothing pending get a progress response at the
// current revision; watchers with undelivered events do not (they learn it from the events).
TEST(WatchTest, RequestProgressReportsCurrentRevisionToSyncedWatchers) {
  Fixture f;
  const WatchId quiet = f.Watch(WatchOf("quiet"));
  const WatchId busy = f.Watch(WatchOf("busy"));
  f.Put("other", "v");  // 2
  f.Take();
  f.Put("busy", "v");  // 3: pending for `busy`
  f.hub().RequestProgress();
  std::vector<WatchResponse> responses = f.Take();
  ASSERT_EQ(responses.size(), 2u);
  for (const WatchResponse& response : responses) {
    if (response.watch_id == quiet) {
      EXPECT_TRUE(response.progress);
      EXPECT_TRUE(response.events.empty());
      EXPECT_EQ(response.header_revision, 3);
    } else {
      EXPECT_EQ(response.watch_id, busy);
      EXPECT_FALSE(response.progress);
      EXPECT_EQ(response.events.size(), 1u);
    }
  }
  f.hub().RequestProgress();
  responses = f.Take();
  ASSERT_EQ(responses.size(), 2u);
  for (const WatchResponse& response : responses) {
    EXPECT_TRUE(response.progress);
    EXPECT_EQ(response.header_revision, 3);
  }
}

// etcd (deferred progress, #15220 / #17557): a lagging watcher gets no progress notification
// while it lags (it would claim events it has not delivered); the request is answered once it
// has caught up, after its events.
TEST(WatchTest, RequestProgressToLaggingWatcherIsAnsweredOnceSynced) {
  Fixture f;
  f.Put("k", "v");  // 2
  f.Put("k", "v");  // 3
  const WatchId id = f.Watch(WatchOf("k", "", 2));
  f.Take();
  ASSERT_TRUE(f.hub().HasLagging());
  f.hub().RequestProgress();
  EXPECT_TRUE(f.Take().empty());
  std::vector<WatchResponse> responses = f.Drain();
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(RevisionsOf(responses[0].events), (std::vector<Revision>{2, 3}));
  EXPECT_EQ(responses[1].watch_id, id);
  EXPECT_TRUE(responses[1].progress);
  EXPECT_EQ(responses[1].header_revision, 3);
  f.Put("k", "v");  // 4: answered once only
  responses = f.Take();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_FALSE(responses[0].progress);
}

// etcd's progress_notify: at each report, a watcher created with it that received no events
// since the previous report gets a progress notification at the current revision; one that
// received events skips that report; a watcher without the flag never gets one.
TEST(WatchTest, NotifyProgressReportsToQuietProgressNotifyWatchers) {
  Fixture f;
  WatchRequest notified = WatchOf("a");
  notified.progress_notify = true;
  const WatchId quiet = f.Watch(notified);
  notified.key = "b";
  const WatchId busy = f.Watch(notified);
  f.Watch(WatchOf("c"));  // no progress_notify
  f.Take();
  f.Put("b", "v");  // 2
  f.Take();
  f.hub().NotifyProgress();
  std::vector<WatchResponse> responses = f.Take();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].watch_id, quiet);
  EXPECT_TRUE(responses[0].progress);
  EXPECT_TRUE(responses[0].events.empty());
  EXPECT_EQ(responses[0].header_revision, 2);
  f.Put("c", "v");  // 3
  f.Take();
  f.hub().NotifyProgress();  // `busy` was quiet since the previous report too
  responses = f.Take();
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].watch_id, quiet);
  EXPECT_EQ(responses[1].watch_id, busy);
  for (const WatchResponse& response : responses) {
    EXPECT_TRUE(response.progress);
    EXPECT_EQ(response.header_revision, 3);
  }
  ASSERT_TRUE(f.hub().Cancel(quiet).ok());
  f.Take();
  f.hub().NotifyProgress();
  responses = f.Take();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].watch_id, busy);
}

// A lagging progress_notify watcher gets no report (it has not delivered what the revision
// claims); once synced it gets the next one.
TEST(WatchTest, NotifyProgressSkipsLaggingWatchers) {
  Fixture f;
  f.Put("k", "v");  // 2
  WatchRequest request = WatchOf("k", "", 2);
  request.progress_notify = true;
  const WatchId id = f.Watch(request);
  f.Take();
  ASSERT_TRUE(f.hub().HasLagging());
  f.hub().NotifyProgress();
  EXPECT_TRUE(f.Take().empty());
  f.Drain();  // replays revision 2: events, so the next report is skipped
  f.hub().NotifyProgress();
  EXPECT_TRUE(f.Take().empty());
  f.hub().NotifyProgress();
  std::vector<WatchResponse> responses = f.Take();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].watch_id, id);
  EXPECT_TRUE(responses[0].progress);
}

// etcd WatchCancelRequest: the client gets a canceled response and no event after it; an
// unknown id is an error.
TEST(WatchTest, CancelStopsEventsAndRejectsUnknownId) {
  Fixture f;
  const WatchId id = f.Watch(WatchOf("k"));
  f.Put("k", "1");
  ASSERT_TRUE(f.hub().Cancel(id).ok());
  std::vector<WatchResponse> responses = f.Take();
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_TRUE(responses[0].created);
  EXPECT_EQ(responses[1].events.size(), 1u);
  EXPECT_TRUE(responses[2].canceled);
  EXPECT_EQ(responses[2].watch_id, id);
  EXPECT_EQ(responses[2].compact_revision, 0);
  f.Put("k", "2");
  EXPECT_TRUE(f.Take().empty());
  EXPECT_EQ(f.hub().watcher_count(), 0u);
  EXPECT_EQ(CodeOf(f.hub().Cancel(id)), ErrorCode::kWatchNotFound);
  EXPECT_EQ(CodeOf(f.hub().Cancel(12345)), ErrorCode::kWatchNotFound);
}

// etcd: watch ids are never reused within a hub, so a stale cancel cannot hit a new watch.
TEST(WatchTest, WatchIdsAreNotReused) {
  Fixture f;
  const WatchId first = f.Watch(WatchOf("k"));
  ASSERT_TRUE(f.hub().Cancel(first).ok());
  const WatchId second = f.Watch(WatchOf("k"));
  EXPECT_NE(first, second);
}

// etcd watcherGroup: many watchers on one key each receive the event exactly once.
TEST(WatchTest, ManyWatchersOnOneKeyEachGetTheEventOnce) {
  constexpr int kWatchers = 1000;
  Fixture f;
  for (int i = 0; i < kWatchers; ++i) f.Watch(WatchOf("hot"));
  f.Take();
  const Revision rev = f.Put("hot", "v");
  std::map<WatchId, int> seen;
  for (const WatchResponse& response : f.Take()) {
    for (const Event& event : response.events) {
      EXPECT_EQ(event.kv.mod_revision, rev);
      ++seen[response.watch_id];
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kWatchers));
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << "watch " << id;
}

// The hub visits only the watchers a write concerns (single-key watchers by key, range
// watchers by matching). One that many writes skipped still sees exactly its own events, also
// when it falls behind afterwards or the store is resynced (a snapshot installed): nothing
// delivered twice, nothing missed.
TEST(WatchTest, SkippedWatcherStaysExactAfterLagAndResync) {
  Fixture f(/*max_buffered_events=*/4);
  const WatchId a = f.Watch(WatchOf("a"));
  const WatchId prefix = f.Watch(WatchOf("b", PrefixEnd("b")));
  f.Take();
  for (int i = 0; i < 50; ++i) f.Put("c" + std::to_string(i), "v");  // revisions 2..51
  const Revision first_a = f.Put("a", "1");                          // 52
  std::vector<WatchResponse> taken = f.Take();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].watch_id, a);
  EXPECT_EQ(RevisionsOf(EventsOf(taken)), std::vector<Revision>{first_a});

  // Unread, "a" overflows its buffer of 4 and lags; the prefix watcher is not concerned.
  for (int i = 0; i < 6; ++i) f.Put("a", std::to_string(i));  // 53..58
  for (int i = 0; i < 20; ++i) f.Put("c", "v");               // 59..78
  EXPECT_TRUE(f.hub().HasLagging());
  std::vector<Event> events = EventsOf(f.Drain());
  EXPECT_EQ(RevisionsOf(events), Consecutive(53, 58));

  // A resync replays history from each watcher's next revision: nothing again for either.
  f.Put("c", "v");  // 79
  f.hub().Resync();
  EXPECT_TRUE(EventsOf(f.Drain()).empty());
  const Revision b = f.Put("b1", "v");
  std::vector<WatchResponse> last = f.Drain();
  ASSERT_EQ(EventsOf(last).size(), 1u);
  EXPECT_EQ(last.back().watch_id, prefix);
  EXPECT_EQ(EventsOf(last)[0].kv.mod_revision, b);
}

}  // namespace
}  // namespace kvstore::mvcc
