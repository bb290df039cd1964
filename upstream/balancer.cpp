#include "upstream/balancer.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <functional>

namespace torii::upstream {

namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;  // 2^64 / phi: spreads counters
constexpr uint64_t kHashSeed = 0x2D358DCCAA6C78A5ULL;

// splitmix64's finalizer: a bijection with full avalanche.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

// Little-endian on every host, so hashes agree across architectures.
uint64_t load_le(const char* p, size_t n) {
  uint64_t word = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&word, p, n);
  } else {
    for (size_t i = 0; i < n; ++i) word |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  }
  return word;
}

}  // namespace

// ---- hashing ----------------------------------------------------------------

uint64_t hash_key(std::string_view bytes) noexcept {
  // The length goes into the seed so "a" and "a\0" differ; each 8-byte word
  // is folded in through a full mix, which is plenty for keys of a few
  // dozen bytes.
  uint64_t h = kHashSeed ^ (bytes.size() * kGolden);
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left >= 8) {
    h = mix64(h ^ load_le(p, 8));
    p += 8;
    left -= 8;
  }
  if (left > 0) h = mix64(h ^ load_le(p, left));
  return mix64(h + kGolden);
}

uint64_t hash_client_address(const sockaddr* addr) noexcept {
  if (addr == nullptr) return hash_key({});
  if (addr->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(addr);
    return hash_key({reinterpret_cast<const char*>(&v4->sin_addr), sizeof v4->sin_addr});
  }
  if (addr->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(addr);
    const auto* bytes = reinterpret_cast<const char*>(&v6->sin6_addr);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) return hash_key({bytes + 12, 4});
    return hash_key({bytes, sizeof v6->sin6_addr});
  }
  return hash_key({});
}

std::optional<std::string_view> find_cookie(std::string_view cookie_header,
                                            std::string_view name) noexcept {
  constexpr std::string_view kSpace = " \t";
  while (!cookie_header.empty()) {
    const size_t end = cookie_header.find(';');
    std::string_view pair = cookie_header.substr(0, end);
    cookie_header =
        end == std::string_view::npos ? std::string_view{} : cookie_header.substr(end + 1);

    const size_t first = pair.find_first_not_of(kSpace);
    if (first == std::string_view::npos) continue;
    pair.remove_prefix(first);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view pair_name = pair.substr(0, eq);
    pair_name = pair_name.substr(0, pair_name.find_last_not_of(kSpace) + 1);
    if (pair_name != name) continue;
    std::string_view value = pair.substr(eq + 1);
    const size_t value_first = value.find_first_not_of(kSpace);
    if (value_first == std::string_view::npos) return std::string_view{};
    value.remove_prefix(value_first);
    return value.substr(0, value.find_last_not_of(kSpace) + 1);
  }
  return std::nullopt;
}

// ---- ServerMask ---------------------------------------------------------------

ServerMask::ServerMask(size_t size, bool value) : words_((size + 63) / 64), size_(size) {
  fill(value);
}

void ServerMask::set(size_t server, bool usable) {
  assert(server < size_);
  const uint64_t bit = uint64_t{1} << (server % 64);
  if (usable) {
    words_[server / 64] |= bit;
  } else {
    words_[server / 64] &= ~bit;
  }
}

void ServerMask::fill(bool value) {
  std::fill(words_.begin(), words_.end(), value ? ~uint64_t{0} : 0);
  // Bits past size() stay clear so count() and any() need no masking.
  if (value && size_ % 64 != 0) words_.back() = (uint64_t{1} << (size_ % 64)) - 1;
}

size_t ServerMask::count() const {
  size_t n = 0;
  for (const uint64_t word : words_) n += static_cast<size_t>(std::popcount(word));
  return n;
}

bool ServerMask::any() const {
  return std::any_of(words_.begin(), words_.end(), [](uint64_t word) { return word != 0; });
}

// ---- FastRng ------------------------------------------------------------------

FastRng::FastRng(uint64_t seed) {
  for (uint64_t& word : s_) {
    seed += kGolden;
    word = mix64(seed);
  }
}

uint64_t FastRng::next() {
  const uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = std::rotl(s_[3], 45);
  return result;
}

uint64_t FastRng::below(uint64_t bound) {
  // Lemire's multiply-shift instead of a 64-bit division (the bulk of a
  // pick's time); the bias is at most bound / 2^64.
  __extension__ using Wide = unsigned __int128;  // __extension__: fine under -Wpedantic
  return static_cast<uint64_t>((static_cast<Wide>(next()) * bound) >> 64);
}

// ---- SmoothWeightedRoundRobin ---------------------------------------------------

SmoothWeightedRoundRobin::SmoothWeightedRoundRobin(std::span<const uint32_t> weights)
    : weights_(weights.begin(), weights.end()), current_(weights.size(), 0) {}

std::optional<size_t> SmoothWeightedRoundRobin::pick(const ServerMask& usable) {
  assert(usable.size() == weights_.size());
  std::optional<size_t> best;
  int64_t total = 0;
  for (size_t i = 0; i < weights_.size(); ++i) {
    if (weights_[i] == 0 || !usable.test(i)) continue;
    current_[i] += weights_[i];
    total += weights_[i];
    if (!best || current_[i] > current_[*best]) best = i;
  }
  if (best) current_[*best] -= total;
  return best;
}

// ---- LeastRequest ----------------------------------------------------------------

LeastRequest::LeastRequest(std::span<const uint32_t> weights, uint64_t rng_seed)
    : weights_(weights.begin(), weights.end()),
      prefix_(weights.size()),
      equal_weights_(std::adjacent_find(weights.begin(), weights.end(), std::not_equal_to<>()) ==
                         weights.end() &&
                     (weights.empty() || weights[0] > 0)),
      rng_(rng_seed) {
  uint64_t sum = 0;
  for (size_t i = 0; i < weights_.size(); ++i) prefix_[i] = sum += weights_[i];
}

std::optional<size_t> LeastRequest::draw(const ServerMask& usable, size_t excluded) {
  // Weighted draw among usable servers other than `excluded` (kNone: no
  // exclusion). The exclusion is exact (the draw skips its weight), so a
  // heavy server is still compared with somebody. Rejection sampling for
  // usability is O(1)/O(log n) while most servers are usable; after a few
  // misses an exact scan over the usable ones takes over, so the result's
  // distribution is the same either way.
  constexpr int kTries = 4;
  const size_t n = weights_.size();
  const bool excluding = excluded < n;
  const uint64_t excluded_weight = excluding ? weights_[excluded] : 0;
  const uint64_t before_excluded = excluding ? prefix_[excluded] - excluded_weight : 0;
  const uint64_t total = n == 0 ? 0 : prefix_.back() - excluded_weight;
  if (total == 0) return std::nullopt;
  for (int attempt = 0; attempt < kTries; ++attempt) {
    size_t i;
    if (equal_weights_) {
      i = rng_.below(excluding ? n - 1 : n);
      if (excluding && i >= excluded) ++i;
    } else {
      uint64_t r = rng_.below(total);
      if (excluding && r >= before_excluded) r += excluded_weight;
      i = static_cast<size_t>(std::upper_bound(prefix_.begin(), prefix_.end(), r) -
                              prefix_.begin());
    }
    if (usable.test(i)) return i;
  }
  uint64_t usable_weight = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i != excluded && usable.test(i)) usable_weight += weights_[i];
  }
  if (usable_weight == 0) return std::nullopt;
  uint64_t r = rng_.below(usable_weight);
  for (size_t i = 0; i < n; ++i) {
    if (i == excluded || !usable.test(i)) continue;
    if (r < weights_[i]) return i;
    r -= weights_[i];
  }
  return std::nullopt;  // not reached
}

std::optional<size_t> LeastRequest::pick(const ServerMask& usable,
                                         std::span<const uint32_t> in_flight) {
  assert(usable.size() == weights_.size());
  const std::optional<size_t> first = draw(usable, kNone);
  if (!first) return std::nullopt;
  const std::optional<size_t> second = draw(usable, *first);
  if (!second) return first;  // the only usable server

  auto load = [&](size_t i) -> uint64_t { return i < in_flight.size() ? in_flight[i] : 0; };
  // load(a)/w(a) <= load(b)/w(b), without division; ties to the first.
  const size_t a = *first;
  const size_t b = *second;
  return load(a) * weights_[b] <= load(b) * weights_[a] ? a : b;
}

// ---- HashRing -------------------------------------------------------------------

HashRing::HashRing(std::span<const Server> servers, uint32_t points_per_weight, size_t max_points)
    : server_count_(servers.size()) {
  uint64_t total_weight = 0;
  for (const Server& s : servers) total_weight += s.weight;
  uint64_t per_weight = std::max<uint32_t>(points_per_weight, 1);
  if (total_weight > 0 && total_weight * per_weight > max_points) {
    per_weight = std::max<uint64_t>(max_points / total_weight, 1);
  }
  points_.reserve(total_weight * per_weight);
  for (size_t index = 0; index < servers.size(); ++index) {
    // A server listed twice gets points of its own for each listing.
    uint64_t occurrence = 0;
    for (size_t earlier = 0; earlier < index; ++earlier) {
      if (servers[earlier].id == servers[index].id) ++occurrence;
    }
    const uint64_t id_hash = hash_key(servers[index].id) ^ mix64(occurrence * kGolden);
    const uint64_t count = servers[index].weight * per_weight;
    for (uint64_t k = 0; k < count; ++k) {
      points_.push_back({mix64(id_hash + (k + 1) * kGolden), static_cast<uint32_t>(index)});
    }
  }
  std::sort(points_.begin(), points_.end(), [](const Point& a, const Point& b) {
    return a.position != b.position ? a.position < b.position : a.server < b.server;
  });
}

std::optional<size_t> HashRing::pick(uint64_t key_hash, const ServerMask& usable) const {
  assert(usable.size() == server_count_);
  if (points_.empty() || !usable.any()) return std::nullopt;
  // Re-mixed so that weak key hashes (a raw integer) still spread evenly.
  const uint64_t position = mix64(key_hash);
  auto it = std::lower_bound(points_.begin(), points_.end(), position,
                             [](const Point& p, uint64_t pos) { return p.position < pos; });
  size_t at = static_cast<size_t>(it - points_.begin());
  // Bounded by one turn: the usable servers may all have weight 0.
  for (size_t step = 0; step < points_.size(); ++step, ++at) {
    if (at == points_.size()) at = 0;
    if (usable.test(points_[at].server)) return points_[at].server;
  }
  return std::nullopt;
}

// ---- Balancer ----------------------------------------------------------------------

std::string_view policy_name(BalancePolicy policy) {
  switch (policy) {
    case BalancePolicy::kRoundRobin:
      return "round_robin";
    case BalancePolicy::kLeastRequest:
      return "least_request";
    case BalancePolicy::kConsistentHash:
      return "consistent_hash";
  }
  return "unknown";
}

std::optional<BalancePolicy> parse_policy(std::string_view name) {
  for (const BalancePolicy policy :
       {BalancePolicy::kRoundRobin, BalancePolicy::kLeastRequest, BalancePolicy::kConsistentHash}) {
    if (name == policy_name(policy)) return policy;
  }
  return std::nullopt;
}

namespace {

std::vector<uint32_t> weights_of(std::span<const BalancerServer> servers) {
  std::vector<uint32_t> weights;
  weights.reserve(servers.size());
  for (const BalancerServer& s : servers) weights.push_back(s.weight);
  return weights;
}

std::variant<SmoothWeightedRoundRobin, LeastRequest, HashRing> make_impl(
    BalancePolicy policy, std::span<const BalancerServer> servers, const BalancerOptions& options) {
  switch (policy) {
    case BalancePolicy::kLeastRequest:
      return LeastRequest(weights_of(servers), options.rng_seed);
    case BalancePolicy::kConsistentHash: {
      std::vector<HashRing::Server> ring_servers;
      ring_servers.reserve(servers.size());
      for (const BalancerServer& s : servers) ring_servers.push_back({s.id, s.weight});
      return HashRing(ring_servers, options.ring_points_per_weight, options.ring_max_points);
    }
    case BalancePolicy::kRoundRobin:
      break;
  }
  return SmoothWeightedRoundRobin(weights_of(servers));
}

}  // namespace

Balancer::Balancer(BalancePolicy policy, std::span<const BalancerServer> servers,
                   const BalancerOptions& options)
    : policy_(policy), server_count_(servers.size()), impl_(make_impl(policy, servers, options)) {}

std::optional<size_t> Balancer::pick(uint64_t key_hash, const ServerMask& usable,
                                     std::span<const uint32_t> in_flight) {
  if (auto* rr = std::get_if<SmoothWeightedRoundRobin>(&impl_)) return rr->pick(usable);
  if (auto* least = std::get_if<LeastRequest>(&impl_)) return least->pick(usable, in_flight);
  return std::get<HashRing>(impl_).pick(key_hash, usable);
}

}  // namespace torii::upstream
