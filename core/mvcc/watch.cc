#include "core/mvcc/watch.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"

namespace kvstore::mvcc {

WatchHub::WatchHub(const Store* store, size_t max_buffered_events)
    : store_(store), max_buffered_events_(max_buffered_events) {}

absl::StatusOr<WatchId> WatchHub::Watch(const WatchRequest& request) {
  const Revision current = store_->current_revision();
  const Revision start = request.start_revision <= 0 ? current + 1 : request.start_revision;
  if (start <= store_->compact_revision()) {
    return Error(ErrorCode::kCompacted,
                 absl::StrCat("watch from revision ", start, " refused: compacted revision ",
                              store_->compact_revision()));
  }
  const WatchId id = next_id_++;
  Watcher& watcher = watchers_[id];
  watcher.request = request;
  watcher.next_revision = start;
  // A start in the past replays history; now or later is live (a future start simply filters
  // out earlier revisions: etcd #20221).
  watcher.lagging = start <= current;
  WatchResponse created;
  created.watch_id = id;
  created.header_revision = current;
  created.created = true;
  watcher.pending.push_back(std::move(created));
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
  watchers_.erase(id);
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
  WatchResponse response;
  response.watch_id = id;
  response.header_revision = store_->current_revision();
  response.events = std::move(events);
  watcher.pending.push_back(std::move(response));
}

void WatchHub::Notify(const std::vector<Event>& events) {
  if (events.empty()) return;
  const Revision newest = events.back().kv.mod_revision;
  for (auto& [id, watcher] : watchers_) {
    if (watcher.lagging) continue;
    std::vector<Event> mine;
    for (const Event& event : events) {
      if (!Wants(watcher, event)) continue;
      // Copy only what this watcher receives: a prev_kv it did not ask for would be a second
      // copy of a value per watcher, only to be dropped by Deliver.
      if (watcher.request.prev_kv) {
        mine.push_back(event);
      } else {
        mine.push_back(Event{event.type, event.kv, std::nullopt});
      }
    }
    if (watcher.buffered_events + mine.size() > max_buffered_events_ && !mine.empty()) {
      // Nobody is taking this watcher's responses: stop feeding it live and let CatchUp replay
      // from its next revision later. The write itself proceeds.
      watcher.lagging = true;
      continue;
    }
    Deliver(id, watcher, std::move(mine));
    if (watcher.next_revision <= newest) watcher.next_revision = newest + 1;
  }
}

void WatchHub::Resync() {
  for (auto& [id, watcher] : watchers_) watcher.lagging = true;
}

void WatchHub::CatchUp(size_t max_events) {
  const Revision current = store_->current_revision();
  std::vector<WatchId> canceled;
  for (auto& [id, watcher] : watchers_) {
    if (!watcher.lagging || max_events == 0) continue;
    if (watcher.buffered_events >= max_buffered_events_) continue;  // wait for the reader
    if (watcher.next_revision > current) {
      MarkSynced(id, watcher);
      continue;
    }
    const size_t room = std::min(max_buffered_events_ - watcher.buffered_events, max_events);
    auto history = store_->History(watcher.next_revision, current, watcher.request.key,
                                   watcher.request.range_end, watcher.request.prev_kv, room + 1);
    if (!history.ok()) {
      canceled.push_back(id);
      continue;
    }
    Revision delivered_through = current;
    if (history->size() > room) {
      // Cut at a revision boundary so a revision is never split; a single revision larger than
      // the room is delivered whole, read again without the limit (the batch holds only part
      // of it).
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
  watcher.lagging = false;
  if (watcher.progress_requested) QueueProgress(id, watcher);
}

void WatchHub::QueueProgress(WatchId id, Watcher& watcher) {
  watcher.progress_requested = false;
  WatchResponse progress;
  progress.watch_id = id;
  progress.header_revision = store_->current_revision();
  progress.progress = true;
  watcher.pending.push_back(std::move(progress));
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

std::vector<WatchResponse> WatchHub::TakeResponses() {
  std::vector<WatchResponse> out = std::move(finished_);
  finished_.clear();
  for (auto& [id, watcher] : watchers_) {
    for (WatchResponse& response : watcher.pending) out.push_back(std::move(response));
    watcher.pending.clear();
    watcher.buffered_events = 0;
  }
  return out;
}

bool WatchHub::HasResponses() const {
  if (!finished_.empty()) return true;
  for (const auto& [id, watcher] : watchers_) {
    if (!watcher.pending.empty()) return true;
  }
  return false;
}

bool WatchHub::HasLagging() const {
  for (const auto& [id, watcher] : watchers_) {
    if (watcher.lagging) return true;
  }
  return false;
}

}  // namespace kvstore::mvcc
