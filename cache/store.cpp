#include "cache/store.hpp"

#include <algorithm>

#include "cache/policy.hpp"

namespace torii::cache {

Store::Found Store::find(const std::string& key, const http::MessageHead& req) {
  Found found;
  auto slot = index_.find(key);
  if (slot == index_.end()) return found;
  found.key_known = true;
  // Variants of one key usually share their Vary names: compute the
  // request's values once per distinct name list.
  const std::vector<std::string>* names = nullptr;
  std::string values;
  for (Lru::iterator it : slot->second) {
    const StoredResponse& r = *it->response;
    if (names == nullptr || *names != r.vary_names) {
      names = &r.vary_names;
      values = vary_values(req, r.vary_names);
    }
    if (values == r.vary_values) {
      lru_.splice(lru_.begin(), lru_, it);  // iterators stay valid
      found.response = it->response;
      return found;
    }
  }
  return found;
}

bool Store::insert(ResponsePtr r, bool pinned) {
  const size_t size = r->footprint();
  if (size > budget_) return false;
  auto& variants = index_[r->key];
  for (auto v = variants.begin(); v != variants.end(); ++v) {
    if ((*v)->response->vary_values == r->vary_values &&
        (*v)->response->vary_names == r->vary_names) {
      pinned = pinned || (*v)->pinned;
      bytes_ -= (*v)->footprint;
      lru_.erase(*v);
      variants.erase(v);
      break;
    }
  }
  evict_for(size);
  // Eviction may have emptied (and erased) this key's slot.
  auto& slot = index_[r->key];
  lru_.push_front(Entry{std::move(r), size, pinned});
  slot.push_back(lru_.begin());
  bytes_ += size;
  return true;
}

void Store::evict_for(size_t incoming) {
  // Unpinned entries first, least recently used first; pinned ones only
  // when nothing else is left (the budget is a hard limit).
  for (bool take_pinned : {false, true}) {
    auto it = lru_.end();
    while (bytes_ + incoming > budget_ && it != lru_.begin()) {
      --it;
      if (it->pinned && !take_pinned) continue;
      auto victim = it;
      it = std::next(it);
      remove(victim);
      ++evictions_;
    }
  }
}

void Store::remove(Lru::iterator it) {
  auto slot = index_.find(it->response->key);
  if (slot != index_.end()) {
    auto& v = slot->second;
    v.erase(std::remove(v.begin(), v.end(), it), v.end());
    if (v.empty()) index_.erase(slot);
  }
  bytes_ -= it->footprint;
  lru_.erase(it);
}

size_t Store::erase(const std::string& key) {
  auto slot = index_.find(key);
  if (slot == index_.end()) return 0;
  const std::vector<Lru::iterator> victims = slot->second;
  for (Lru::iterator it : victims) remove(it);
  return victims.size();
}

size_t Store::purge(std::string_view host, std::string_view target, bool prefix) {
  size_t n = 0;
  for (auto it = lru_.begin(); it != lru_.end();) {
    const StoredResponse& r = *it->response;
    const bool host_ok = host.empty() || r.host == host;
    const bool target_ok = prefix ? std::string_view(r.target).starts_with(target)
                                  : std::string_view(r.target) == target;
    auto next = std::next(it);
    if (host_ok && target_ok) {
      remove(it);
      ++n;
    }
    it = next;
  }
  return n;
}

}  // namespace torii::cache
