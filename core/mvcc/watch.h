#ifndef KVSTORE_CORE_MVCC_WATCH_H_
#define KVSTORE_CORE_MVCC_WATCH_H_

// Watchers over a Store (etcd's watchableStore), pure: the driver feeds the store's events in
// after every applied write and takes the responses out to deliver.
//
// Guarantees, per watcher: events arrive in revision order, without gaps or duplicates, each
// exactly once, never from before the watch's start revision, and never splitting one
// revision's events across responses. A watcher is either
//   synced:  it has seen everything up to the current revision and receives new events as they
//            are notified; or
//   lagging: it started in the past, or its buffer filled because nobody took its responses.
//            It receives nothing live; CatchUp replays the store's history into it, a bounded
//            batch at a time, until it is synced again.
// So a slow watcher costs memory bounded by max_buffered_events and never blocks a write.
// A lagging watcher whose next revision falls below the compact revision is canceled with it.

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/statusor.h"
#include "core/mvcc/store.h"
#include "core/mvcc/types.h"

namespace kvstore::mvcc {

using WatchId = int64_t;

// Named limits.
inline constexpr size_t kDefaultMaxBufferedEventsPerWatcher = 1024;
inline constexpr size_t kDefaultCatchUpBatchEvents = 1024;

// What to watch: a key or range, from which revision, with which filters (etcd WatchCreate).
struct WatchRequest {
  std::string key;
  std::string range_end;  // as in RangeRequest: empty = one key, "\0" = from key on
  // First revision to deliver; 0 = the next revision (events after now). A revision in the
  // future waits for it; a past one replays history, from the compact revision on; one below
  // the compact revision is refused (etcd's ErrCompacted).
  Revision start_revision = 0;
  bool no_put = false;
  bool no_delete = false;
  bool prev_kv = false;
  // etcd's progress_notify: NotifyProgress sends this watcher a progress notification when it
  // received no events since the previous call.
  bool progress_notify = false;
};

// One delivery to a watcher: events of whole revisions, or a created / canceled / progress
// notice.
struct WatchResponse {
  WatchId watch_id = 0;
  Revision header_revision = 0;  // the store's revision when the response was produced
  std::vector<Event> events;
  bool created = false;
  bool canceled = false;
  // Set when canceled because the revisions it needed were compacted.
  Revision compact_revision = 0;
  std::string cancel_reason;
  // A progress notification: the watcher has seen everything up to header_revision.
  bool progress = false;
};

// Every watcher of one store: feeds them the store's events and replays history to laggards.
class WatchHub {
 public:
  explicit WatchHub(const Store* store,
                    size_t max_buffered_events = kDefaultMaxBufferedEventsPerWatcher);

  // Creates a watcher and queues its "created" response. kCompacted (the message names the
  // compact revision, also in compact_revision()) if start_revision is below the compact
  // revision.
  absl::StatusOr<WatchId> Watch(const WatchRequest& request);
  // Whether any watcher was ever created asking for prev_kv (Store::set_prev_values_in_events:
  // the store's events need the previous values only then).
  bool prev_kv_requested() const { return prev_kv_requested_; }
  // Cancels a watcher, queueing its "canceled" response; kWatchNotFound if unknown.
  absl::Status Cancel(WatchId id);
  // Events the store produced by the writes just applied (Store::TakeEvents), in order.
  void Notify(const std::vector<Event>& events);
  // The same, taking the events: the last watcher they concern gets them moved, not copied.
  void Notify(std::vector<Event>&& events);
  // The store's contents were replaced (Store::Reload after a snapshot): every watcher turns
  // lagging and replays the new history from its next revision, or is canceled if that was
  // compacted away (etcd's watchableStore.Restore).
  void Resync();
  // Replays history into lagging watchers, at most `max_events` events in all.
  void CatchUp(size_t max_events = kDefaultCatchUpBatchEvents);
  // Queues a progress notification for every synced watcher with nothing pending (etcd's
  // RequestProgress); lagging watchers get theirs once caught up, and a watcher whose start
  // revision is still in the future gets none until the store reaches the revision before it.
  void RequestProgress();
  // etcd's periodic progress report (every --experimental-watch-progress-notify-interval): a
  // progress notification to every watcher created with progress_notify that received no events
  // since the previous call and is synced (a lagging watcher gets none; etcd's neither).
  void NotifyProgress();
  // Responses to deliver, oldest first, per watcher in id order. A watcher whose reader is not
  // reading (SetReading) keeps its responses: they count against its buffer until it reads.
  std::vector<WatchResponse> TakeResponses();
  // Flow control from the watcher's client: while it does not read, its responses stay
  // buffered (at most max_buffered_events; then it lags, and catches up from history once it
  // reads again). kWatchNotFound if unknown.
  absl::Status SetReading(WatchId id, bool reading);

  // Responses TakeResponses would hand out now.
  bool HasResponses() const;
  // Lagging watchers that CatchUp can move (not those waiting for their reader).
  bool HasLagging() const;
  size_t watcher_count() const { return watchers_.size(); }
  Revision compact_revision() const { return store_->compact_revision(); }

 private:
  struct Watcher {
    WatchRequest request;
    // First revision not yet delivered or skipped. A synced watcher that no event of a Notify
    // concerned is not visited, so its own value may be behind: it has in effect seen
    // everything through notified_through_ (see Synced()).
    Revision next_revision = 0;
    bool lagging = false;
    bool queued = false;               // listed in with_pending_
    bool progress_requested = false;   // RequestProgress while lagging: answer once synced
    bool events_since_notify = false;  // progress_notify: events since the last NotifyProgress
    bool reading = true;               // SetReading: its client takes its responses
    size_t buffered_events = 0;
    std::deque<WatchResponse> pending;
  };

  // Appends the watcher's share of `events` (already in its range and order) as one response.
  void Deliver(WatchId id, Watcher& watcher, std::vector<Event> events);
  bool Wants(const Watcher& watcher, const Event& event) const;
  // Marks a lagging watcher synced, answering a progress request deferred while it lagged.
  void MarkSynced(WatchId id, Watcher& watcher);
  void QueueProgress(WatchId id, Watcher& watcher);
  void CancelInternal(WatchId id, Watcher& watcher, Revision compact_revision, std::string reason);
  void SetLagging(WatchId id, Watcher& watcher, bool lagging);
  void Queue(WatchId id, Watcher& watcher, WatchResponse response);
  // Brings a synced watcher's next_revision up to what it has in effect seen.
  void CatchUpNextRevision(Watcher& watcher) const;

  const Store* store_;
  size_t max_buffered_events_;
  WatchId next_id_ = 1;
  absl::btree_map<WatchId, Watcher> watchers_;
  std::vector<WatchResponse> finished_;  // responses of watchers that no longer exist
  // Indexes, so that a write costs the watchers it concerns rather than every watcher (etcd's
  // watcherGroup): single-key watchers by key; range watchers (ranges, prefixes, from-key) in a
  // list that every event is matched against; watchers with responses queued; lagging ones.
  absl::btree_map<std::string, absl::btree_set<WatchId>> key_watchers_;
  absl::btree_set<WatchId> range_watchers_;
  std::vector<WatchId> with_pending_;  // each once (Watcher::queued); sorted when taken
  size_t not_reading_ = 0;             // watchers whose reader does not read (SetReading)
  absl::btree_set<WatchId> lagging_;
  absl::btree_set<WatchId> progress_notify_;  // watchers created with progress_notify
  // Notify's work; `movable` (the same vector, or null) may be moved from for the last watcher.
  void NotifyEvents(const std::vector<Event>& events, std::vector<Event>* movable);
  bool prev_kv_requested_ = false;
  Revision notified_through_ = 0;  // the newest revision Notify delivered to synced watchers
};

}  // namespace kvstore::mvcc

#endif  // KVSTORE_CORE_MVCC_WATCH_H_
