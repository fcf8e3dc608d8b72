#ifndef KVSTORE_CORE_RAFT_FLAT_MAP_H_
#define KVSTORE_CORE_RAFT_FLAT_MAP_H_

// A map kept as a vector sorted by key: for the handful of peers a Raft group has, lookups and
// in-order iteration over one contiguous array beat a B-tree (the progress map is read on every
// proposal and every response). Iteration order is the key order, as with an ordered map, so
// it stays deterministic. Inserting or erasing invalidates iterators and pointers; both happen
// only on configuration changes.

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "core/raft/check.h"

namespace kvstore::raft {

template <typename Key, typename Value>
class FlatMap {
 public:
  using value_type = std::pair<Key, Value>;
  using iterator = typename std::vector<value_type>::iterator;
  using const_iterator = typename std::vector<value_type>::const_iterator;

  iterator begin() { return items_.begin(); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  void clear() { items_.clear(); }

  iterator find(const Key& key) {
    auto it = LowerBound(key);
    return it != items_.end() && it->first == key ? it : items_.end();
  }
  const_iterator find(const Key& key) const {
    auto it = const_cast<FlatMap*>(this)->LowerBound(key);
    return it != items_.end() && it->first == key ? const_iterator(it) : items_.cend();
  }
  size_t count(const Key& key) const { return find(key) != end() ? 1 : 0; }
  Value& at(const Key& key) {
    auto it = find(key);
    RAFT_CHECK(it != end()) << "FlatMap::at: no key " << key;
    return it->second;
  }
  const Value& at(const Key& key) const {
    auto it = find(key);
    RAFT_CHECK(it != end()) << "FlatMap::at: no key " << key;
    return it->second;
  }
  // Inserts (key, value) unless the key is present; returns the entry and whether it inserted.
  std::pair<iterator, bool> emplace(const Key& key, Value value) {
    auto it = LowerBound(key);
    if (it != items_.end() && it->first == key) return {it, false};
    return {items_.emplace(it, key, std::move(value)), true};
  }
  void insert_or_assign(const Key& key, Value value) {
    auto it = LowerBound(key);
    if (it != items_.end() && it->first == key) {
      it->second = std::move(value);
    } else {
      items_.emplace(it, key, std::move(value));
    }
  }
  size_t erase(const Key& key) {
    auto it = find(key);
    if (it == items_.end()) return 0;
    items_.erase(it);
    return 1;
  }

  friend bool operator==(const FlatMap& a, const FlatMap& b) { return a.items_ == b.items_; }

 private:
  iterator LowerBound(const Key& key) {
    return std::lower_bound(items_.begin(), items_.end(), key,
                            [](const value_type& item, const Key& k) { return item.first < k; });
  }

  std::vector<value_type> items_;
};

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_FLAT_MAP_H_
