#include "core/auth/tokens.h"

#include "absl/strings/str_cat.h"

namespace kvstore::auth {

std::string SimpleTokenString(absl::string_view random_bytes, uint64_t counter) {
  static constexpr absl::string_view kLetters =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::string out;
  out.reserve(kSimpleTokenLetters + 21);
  for (size_t i = 0; i < kSimpleTokenLetters; ++i) {
    const unsigned char byte = i < random_bytes.size() ? random_bytes[i] : 0;
    out.push_back(kLetters[byte % kLetters.size()]);
  }
  absl::StrAppend(&out, ".", counter);
  return out;
}

void SimpleTokens::Assign(const std::string& token, const std::string& user, uint64_t now_tick) {
  if (auto it = tokens_.find(token); it != tokens_.end()) Erase(it);
  if (tokens_.size() >= kMaxSimpleTokens) {
    Erase(tokens_.find(by_expiry_.begin()->second));
  }
  const uint64_t expiry = now_tick + ttl_ticks_;
  tokens_[token] = Entry{user, expiry};
  by_expiry_.insert({expiry, token});
}

std::optional<std::string> SimpleTokens::Lookup(const std::string& token, uint64_t now_tick) {
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return std::nullopt;
  if (it->second.expiry_tick <= now_tick) {
    Erase(it);
    return std::nullopt;
  }
  by_expiry_.erase({it->second.expiry_tick, token});
  it->second.expiry_tick = now_tick + ttl_ticks_;
  by_expiry_.insert({it->second.expiry_tick, token});
  return it->second.user;
}

void SimpleTokens::Expire(uint64_t now_tick, size_t limit) {
  for (size_t n = 0; n < limit && !by_expiry_.empty() && by_expiry_.begin()->first <= now_tick;
       ++n) {
    Erase(tokens_.find(by_expiry_.begin()->second));
  }
}

void SimpleTokens::InvalidateUser(absl::string_view user) {
  for (auto it = tokens_.begin(); it != tokens_.end();) {
    if (it->second.user == user) {
      by_expiry_.erase({it->second.expiry_tick, it->first});
      it = tokens_.erase(it);
    } else {
      ++it;
    }
  }
}

void SimpleTokens::Clear() {
  tokens_.clear();
  by_expiry_.clear();
}

void SimpleTokens::Erase(absl::btree_map<std::string, Entry>::iterator it) {
  by_expiry_.erase({it->second.expiry_tick, it->first});
  tokens_.erase(it);
}

}  // namespace kvstore::auth
