// A worker's response store: primary key -> stored variants (Vary), with
// LRU eviction under a byte budget. Single-threaded (one per worker loop),
// so lookups take no lock.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cache/stored_response.hpp"
#include "common/http1_parser.hpp"

namespace torii::cache {

class Store {
 public:
  explicit Store(uint64_t budget_bytes) : budget_(budget_bytes) {}
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  struct Found {
    ResponsePtr response;    // the variant matching the request, or null
    bool key_known = false;  // some variant of the key is stored (a miss is a vary-miss)
  };
  // Finds the variant for `req` and marks it recently used.
  Found find(const std::string& key, const http::MessageHead& req);
  // Stores `r`, replacing the variant with the same Vary values. Pinned
  // entries (pre-warmed) are evicted only when nothing else is left.
  // Returns false when `r` alone is larger than the budget.
  bool insert(ResponsePtr r, bool pinned = false);
  // Removes every variant of the key; returns how many went.
  size_t erase(const std::string& key);
  // Removes entries whose host equals `host` (empty: any host) and whose
  // target equals `target` (or, with `prefix`, starts with it).
  size_t purge(std::string_view host, std::string_view target, bool prefix);

  uint64_t bytes() const { return bytes_; }
  uint64_t budget() const { return budget_; }
  size_t entries() const { return lru_.size(); }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Entry {
    ResponsePtr response;
    size_t footprint = 0;
    bool pinned = false;
  };
  using Lru = std::list<Entry>;  // front: most recently used
  void remove(Lru::iterator it);
  void evict_for(size_t incoming);

  uint64_t budget_;
  uint64_t bytes_ = 0;
  uint64_t evictions_ = 0;
  Lru lru_;
  std::unordered_map<std::string, std::vector<Lru::iterator>> index_;
};

}  // namespace torii::cache
