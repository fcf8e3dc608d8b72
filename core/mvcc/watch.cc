#include "core/mvcc/watch.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/base/probe.h"

namespace kvstore::mvcc {

WatchHub::WatchHub(const Store* store, size_t max_buffered_events)
    : store_(store), max_buffered_events_(max_buffered_events) {}

absl::StatusOr<WatchId> WatchHub::Watch(const WatchRequest& request) {
  const Revision current = store_->current_revision();
  const Revision start = request.start_revision <= 0 ? current + 1 : request.start_revision;
  // etcd refuses only a start below the compact revision: the compact revision's own events
  // (a delete's tombstone included) are still in the store (etcd #18089, #19179).
  if (start < store_->compact_revision()) {
    CODE_PROBE(mvcc, watch_compacted);
    return Error(ErrorCode::kCompacted,
                 absl::StrCat("watch from revision ", start, " refused: compacted revision ",
                              store_->compact_revision()));
  }
  const WatchId id = next_id_++;
  if (request.prev_kv) prev_kv_requested_ = true;
  Watcher& watcher = watchers_[id];
  watcher.request = request;
  watcher.next_revision = start;
  if (request.range_end.empty()) {
    key_watchers_[request.key].insert(id);
  } else {
    range_watchers_.insert(id);
  }
  if (request.progress_notify) progress_notify_.insert(id);
  // A start in the past replays history; now or later is live (a future start simply filters
  // out earlier revisions: etcd #20221).
  SetLagging(id, watcher, start <= current);
  WatchResponse created;
  created.watch_id = id;
  created.header_revision = current;
  created.created = true;
  Queue(id, watcher, std::move(created));
  return id;
}

absl::Status WatchHub::Cancel(WatchId id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) {
    return Error(ErrorCode::kWatchNotFound, absl::StrCat("no watch with id ", id));
  }
  CancelInternal(id, it->second, 0, "canceled by the client");
  return absl::OkStatus();
}

void WatchHub::CancelInternal(WatchId id, Watcher& watcher, Revision compact_revision,
                              std::string reason) {
  for (WatchResponse& response : watcher.pending) finished_.push_back(std::move(response));
  WatchResponse canceled;
  canceled.watch_id = id;
  canceled.header_revision = store_->current_revision();
  canceled.canceled = true;
  canceled.compact_revision = compact_revision;
  canceled.cancel_reason = std::move(reason);
  finished_.push_back(std::move(canceled));
  if (watcher.request.range_end.empty()) {
    auto it = key_watchers_.find(watcher.request.key);
    it->second.erase(id);
    if (it->second.empty()) key_watchers_.erase(it);
  } else {
    range_watchers_.erase(id);
  }
  if (watcher.queued) {
    with_pending_.erase(std::find(with_pending_.begin(), with_pending_.end(), id));
  }
  lagging_.erase(id);
  progress_notify_.erase(id);
  if (!watcher.reading) --not_reading_;
  watchers_.erase(id);
}

void WatchHub::SetLagging(WatchId id, Watcher& watcher, bool lagging) {
  watcher.lagging = lagging;
  if (lagging) {
    lagging_.insert(id);
  } else {
    lagging_.erase(id);
  }
}

void WatchHub::Queue(WatchId id, Watcher& watcher, WatchResponse response) {
  watcher.pending.push_back(std::move(response));
  if (!watcher.queued) {
    watcher.queued = true;
    with_pending_.push_back(id);
  }
}

void WatchHub::CatchUpNextRevision(Watcher& watcher) const {
  if (!watcher.lagging && watcher.next_revision <= notified_through_) {
    watcher.next_revision = notified_through_ + 1;
  }
}

bool WatchHub::Wants(const Watcher& watcher, const Event& event) const {
  if (event.kv.mod_revision < watcher.next_revision) return false;
  if (event.type == Event::Type::kPut && watcher.request.no_put) return false;
  if (event.type == Event::Type::kDelete && watcher.request.no_delete) return false;
  return InRange(watcher.request.key, watcher.request.range_end, event.kv.key);
}

void WatchHub::Deliver(WatchId id, Watcher& watcher, std::vector<Event> events) {
  if (events.empty()) return;
  if (!watcher.request.prev_kv) {
    for (Event& event : events) event.prev_kv.reset();
  }
  watcher.buffered_events += events.size();
  watcher.events_since_notify = true;
  WatchResponse response;
  response.watch_id = id;
  response.header_revision = store_->current_revision();
  response.events = std::move(events);
  Queue(id, watcher, std::move(response));
}

void WatchHub::Notify(const std::vector<Event>& events) { NotifyEvents(events, nullptr); }

void WatchHub::Notify(std::vector<Event>&& events) { NotifyEvents(events, &events); }

void WatchHub::NotifyEvents(const std::vector<Event>& events, std::vector<Event>* movable) {
  if (events.empty()) return;
  const Revision newest = events.back().kv.mod_revision;
  // The watchers these events may concern, in id order: those on the events' keys and every
  // range watcher (Wants decides). The others have nothing to receive: notified_through_ moves
  // their next revision past these events without visiting them.
  std::vector<WatchId> candidates(range_watchers_.begin(), range_watchers_.end());
  int sources = candidates.empty() ? 0 : 1;
  for (const Event& event : events) {
    auto it = key_watchers_.find(event.kv.key);
    if (it == key_watchers_.end()) continue;
    candidates.insert(candidates.end(), it->second.begin(), it->second.end());
    ++sources;
  }
  if (sources > 1) {  // each source is sorted already
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  }
  for (size_t c = 0; c < candidates.size(); ++c) {
    const WatchId id = candidates[c];
    Watcher& watcher = watchers_.at(id);
    if (watcher.lagging) continue;
    CatchUpNextRevision(watcher);
    // The last watcher may take the events themselves (each node's all-keys watch is usually
    // the only one): no copy of their values.
    const bool take = movable != nullptr && c + 1 == candidates.size();
    std::vector<Event> mine;
    for (size_t e = 0; e < events.size(); ++e) {
      const Event& event = events[e];
      if (!Wants(watcher, event)) continue;
      // Copy only what this watcher receives: a prev_kv it did not ask for would be a second
      // copy of a value per watcher, only to be dropped by Deliver.
      if (take) {
        Event& owned = (*movable)[e];
        if (watcher.request.prev_kv) {
          mine.push_back(std::move(owned));
        } else {
          mine.push_back(Event{owned.type, std::move(owned.kv), std::nullopt});
        }
      } else if (watcher.request.prev_kv) {
        mine.push_back(event);
      } else {
        mine.push_back(Event{event.type, event.kv, std::nullopt});
      }
    }
    if (watcher.buffered_events + mine.size() > max_buffered_events_ && !mine.empty()) {
      // Nobody is taking this watcher's responses: stop feeding it live and let CatchUp replay
      // from its next revision later. The write itself proceeds.
      CODE_PROBE(mvcc, watch_slow_consumer);
      SetLagging(id, watcher, true);
      continue;
    }
    Deliver(id, watcher, std::move(mine));
    if (watcher.next_revision <= newest) watcher.next_revision = newest + 1;
  }
  notified_through_ = std::max(notified_through_, newest);
}

void WatchHub::Resync() {
  for (auto& [id, watcher] : watchers_) {
    CatchUpNextRevision(watcher);
    SetLagging(id, watcher, true);
  }
}

void WatchHub::CatchUp(size_t max_events) {
  const Revision current = store_->current_revision();
  std::vector<WatchId> canceled;
  // A copy: catching up marks watchers synced, which takes them out of lagging_.
  const std::vector<WatchId> lagging(lagging_.begin(), lagging_.end());
  for (WatchId id : lagging) {
    if (max_events == 0) break;  // the budget is spent: the rest wait for the next call
    Watcher& watcher = watchers_.at(id);
    if (watcher.buffered_events >= max_buffered_events_) continue;  // wait for the reader
    if (watcher.next_revision > current) {
      MarkSynced(id, watcher);
      continue;
    }
    const size_t room = std::min(max_buffered_events_ - watcher.buffered_events, max_events);
    auto history = store_->History(watcher.next_revision, current, watcher.request.key,
                                   watcher.request.range_end, watcher.request.prev_kv, room + 1);
    if (!history.ok()) {
      // Compacted past the lagging watcher's next revision: it can never catch up.
      CODE_PROBE(mvcc, watch_lagging_compacted);
      canceled.push_back(id);
      continue;
    }
    Revision delivered_through = current;
    if (history->size() > room) {
      // Cut at a revision boundary so a revision is never split; a single revision larger than
      // the room is delivered whole, read again without the limit (the batch holds only part
      // of it).
      CODE_PROBE(mvcc, watch_catch_up_cut);
      const Revision cut = (*history)[room].kv.mod_revision;
      size_t keep = room;
      while (keep > 0 && (*history)[keep - 1].kv.mod_revision == cut) --keep;
      if (keep == 0) {
        history = store_->History(cut, cut, watcher.request.key, watcher.request.range_end,
                                  watcher.request.prev_kv, 0);
        if (!history.ok()) {
          canceled.push_back(id);
          continue;
        }
      } else {
        history->resize(keep);
      }
      delivered_through = history->back().kv.mod_revision;
    }
    std::vector<Event>& events = *history;
    std::vector<Event> mine;
    for (Event& event : events) {
      if (Wants(watcher, event)) mine.push_back(std::move(event));
    }
    max_events -= std::min(max_events, mine.size());
    Deliver(id, watcher, std::move(mine));
    watcher.next_revision = delivered_through + 1;
    if (watcher.next_revision > current) MarkSynced(id, watcher);
  }
  for (WatchId id : canceled) {
    CancelInternal(
        id, watchers_.at(id), store_->compact_revision(),
        absl::StrCat("revisions from ", watchers_.at(id).next_revision,
                     " were compacted (compacted revision ", store_->compact_revision(), ")"));
  }
}

void WatchHub::MarkSynced(WatchId id, Watcher& watcher) {
  SetLagging(id, watcher, false);
  if (watcher.progress_requested) QueueProgress(id, watcher);
}

void WatchHub::QueueProgress(WatchId id, Watcher& watcher) {
  watcher.progress_requested = false;
  WatchResponse progress;
  progress.watch_id = id;
  progress.header_revision = store_->current_revision();
  progress.progress = true;
  Queue(id, watcher, std::move(progress));
}

void WatchHub::RequestProgress() {
  const Revision current = store_->current_revision();
  for (auto& [id, watcher] : watchers_) {
    if (watcher.lagging) {
      watcher.progress_requested = true;
      continue;
    }
    if (watcher.buffered_events > 0) continue;
    // A watch still waiting for a future start revision gets none: a client resuming from the
    // header revision would receive events from before its start (etcd #20221, fixed by #20229).
    if (watcher.next_revision > current + 1) continue;
    QueueProgress(id, watcher);
  }
}

void WatchHub::NotifyProgress() {
  const Revision current = store_->current_revision();
  for (WatchId id : progress_notify_) {
    Watcher& watcher = watchers_.at(id);
    // etcd's watch stream skips one report after sending events (they told the revision).
    const bool had_events = watcher.events_since_notify;
    watcher.events_since_notify = false;
    if (had_events || watcher.lagging || watcher.buffered_events > 0) continue;
    // As in RequestProgress: none before a future start revision.
    if (watcher.next_revision > current + 1) continue;
    QueueProgress(id, watcher);
  }
}

std::vector<WatchResponse> WatchHub::TakeResponses() {
  std::vector<WatchResponse> out = std::move(finished_);
  finished_.clear();
  // Per watcher in id order. Notify queues in id order, so this is usually sorted already.
  if (!std::is_sorted(with_pending_.begin(), with_pending_.end())) {
    std::sort(with_pending_.begin(), with_pending_.end());
  }
  std::vector<WatchId> held;  // watchers whose reader is not reading keep theirs
  for (WatchId id : with_pending_) {
    Watcher& watcher = watchers_.at(id);
    if (!watcher.reading) {
      held.push_back(id);
      continue;
    }
    for (WatchResponse& response : watcher.pending) out.push_back(std::move(response));
    watcher.pending.clear();
    watcher.buffered_events = 0;
    watcher.queued = false;
  }
  with_pending_ = std::move(held);
  return out;
}

absl::Status WatchHub::SetReading(WatchId id, bool reading) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) {
    return Error(ErrorCode::kWatchNotFound, absl::StrCat("no watch with id ", id));
  }
  if (it->second.reading != reading) {
    it->second.reading = reading;
    if (reading) {
      --not_reading_;
    } else {
      ++not_reading_;
    }
  }
  return absl::OkStatus();
}

bool WatchHub::HasResponses() const {
  if (!finished_.empty()) return true;
  if (not_reading_ == 0) return !with_pending_.empty();
  for (WatchId id : with_pending_) {
    if (watchers_.at(id).reading) return true;
  }
  return false;
}

bool WatchHub::HasLagging() const {
  if (not_reading_ == 0) return !lagging_.empty();
  for (WatchId id : lagging_) {
    const Watcher& watcher = watchers_.at(id);
    if (watcher.reading || watcher.buffered_events < max_buffered_events_) return true;
  }
  return false;
}

}  // namespace kvstore::mvcc
