#include "core/mvcc/backend.h"

namespace kvstore::mvcc {

std::optional<std::string> MemoryBackend::Get(Bucket bucket, absl::string_view key) const {
  const Tree& tree = trees_[static_cast<int>(bucket)];
  auto it = tree.find(key);
  if (it == tree.end()) return std::nullopt;
  return it->second;
}

void MemoryBackend::Range(Bucket bucket, absl::string_view start, absl::string_view end,
                          Visitor visit) const {
  const Tree& tree = trees_[static_cast<int>(bucket)];
  for (auto it = tree.lower_bound(start); it != tree.end(); ++it) {
    if (!end.empty() && absl::string_view(it->first) >= end) break;
    if (!visit(it->first, it->second)) break;
  }
}

void MemoryBackend::Put(Bucket bucket, absl::string_view key, absl::string_view value) {
  // One search serves the undo record and the write; the old value moves into the record.
  Tree& tree = trees_[static_cast<int>(bucket)];
  auto it = tree.lower_bound(key);
  if (it != tree.end() && it->first == key) {
    free_bytes_ += it->second.size();
    live_bytes_ -= it->second.size();
    RecordUndo(bucket, key, std::move(it->second));
    it->second.assign(value.data(), value.size());
  } else {
    RecordUndo(bucket, key, std::nullopt);
    tree.emplace_hint(it, std::string(key), std::string(value));
    live_bytes_ += key.size();
  }
  live_bytes_ += value.size();
}

void MemoryBackend::PutValue(Bucket bucket, absl::string_view key, std::string&& value) {
  // Put, moving the value in.
  Tree& tree = trees_[static_cast<int>(bucket)];
  auto it = tree.lower_bound(key);
  const uint64_t size = value.size();
  if (it != tree.end() && it->first == key) {
    free_bytes_ += it->second.size();
    live_bytes_ -= it->second.size();
    RecordUndo(bucket, key, std::move(it->second));
    it->second = std::move(value);
  } else {
    RecordUndo(bucket, key, std::nullopt);
    tree.emplace_hint(it, std::string(key), std::move(value));
    live_bytes_ += key.size();
  }
  live_bytes_ += size;
}

void MemoryBackend::Delete(Bucket bucket, absl::string_view key) {
  Tree& tree = trees_[static_cast<int>(bucket)];
  auto it = tree.find(key);
  if (it == tree.end()) return;
  const uint64_t bytes = it->first.size() + it->second.size();
  live_bytes_ -= bytes;
  free_bytes_ += bytes;
  RecordUndo(bucket, key, std::move(it->second));
  tree.erase(it);
}

void MemoryBackend::RecordUndo(Bucket bucket, absl::string_view key,
                               std::optional<std::string> previous) {
  undo_.push_back(Undo{bucket, undo_keys_.size(), key.size(), std::move(previous)});
  undo_keys_.append(key.data(), key.size());
}

absl::Status MemoryBackend::Commit() {
  undo_committed_ = undo_.size();
  committed_live_bytes_ = live_bytes_;
  committed_free_bytes_ = free_bytes_;
  if (++commits_pending_ >= commits_per_flush_) MakeDurable();
  return absl::OkStatus();
}

absl::Status MemoryBackend::Flush() {
  if (commits_pending_ > 0) MakeDurable();
  return absl::OkStatus();
}

void MemoryBackend::MakeDurable() {
  commits_pending_ = 0;
  durable_live_bytes_ = committed_live_bytes_;
  durable_free_bytes_ = committed_free_bytes_;
  if (undo_committed_ == undo_.size()) {
    undo_.clear();
    undo_keys_.clear();
  } else {
    // Writes after the last Commit stay undoable; their keys stay where they are in undo_keys_.
    undo_.erase(undo_.begin(), undo_.begin() + static_cast<std::ptrdiff_t>(undo_committed_));
  }
  undo_committed_ = 0;
}

uint64_t MemoryBackend::SizeBytes() const { return live_bytes_ + free_bytes_; }

absl::Status MemoryBackend::Defragment() {
  free_bytes_ = 0;
  committed_free_bytes_ = 0;
  durable_free_bytes_ = 0;
  return absl::OkStatus();
}

void MemoryBackend::Crash() {
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
    Tree& tree = trees_[static_cast<int>(it->bucket)];
    const absl::string_view key =
        absl::string_view(undo_keys_).substr(it->key_offset, it->key_size);
    if (it->previous.has_value()) {
      tree.insert_or_assign(std::string(key), std::move(*it->previous));
    } else {
      tree.erase(key);
    }
  }
  undo_.clear();
  undo_keys_.clear();
  undo_committed_ = 0;
  commits_pending_ = 0;
  live_bytes_ = committed_live_bytes_ = durable_live_bytes_;
  free_bytes_ = committed_free_bytes_ = durable_free_bytes_;
}

}  // namespace kvstore::mvcc
