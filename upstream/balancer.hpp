// Load-balancing decisions for one upstream group, per worker: which server
// gets the next request. Pure logic (no I/O, no clock): the group says which
// servers may be used right now (ServerMask: healthy, not ejected, below
// their connection cap) and, for least-request, how busy each one is.
//
//   kRoundRobin      smooth weighted round-robin (nginx): weights 5,1,1 give
//                    a,a,b,a,c,a,a — the heavy server's turns are spread out.
//   kLeastRequest    power of two choices: two servers drawn at random
//                    (weighted), the one with fewer requests in flight per
//                    unit of weight wins. O(1) in the common case.
//   kConsistentHash  a hash ring (ketama-style, virtual nodes proportional to
//                    weight) looked up by a key hash (header, cookie or
//                    client address): the same key reaches the same server,
//                    and adding or removing one of N servers moves ~1/N of
//                    the keys. An unusable server's keys go to the next
//                    usable server on the ring and come back when it
//                    returns.
//
// Everything is built at construction; pick() does not allocate.
// Single-threaded (one Balancer per worker per upstream).
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

namespace torii::upstream {

// ---- hashing ----------------------------------------------------------------

// A 64-bit hash of bytes (header value, cookie value, address bytes). The
// same bytes give the same hash in every worker and every Torii instance
// (fixed seed, little-endian reads), so instances behind an L4 balancer
// send a key to the same server. Good avalanche; not DoS-resistant, which
// does not matter here: a client choosing keys only chooses its server.
uint64_t hash_key(std::string_view bytes) noexcept;

// The client's IP address (port ignored) hashed as hash_key of its bytes;
// an IPv4-mapped IPv6 address hashes as the IPv4 address, so dual-stack
// listeners agree. Other families (AF_UNIX): hash of nothing.
uint64_t hash_client_address(const sockaddr* addr) noexcept;

// The value of cookie `name` in a Cookie request header value
// ("a=1; b=2"), or nullopt. Names match exactly (case-sensitive, RFC 6265);
// the first occurrence wins. The view points into `cookie_header`.
std::optional<std::string_view> find_cookie(std::string_view cookie_header,
                                            std::string_view name) noexcept;

// ---- building blocks ----------------------------------------------------------

// Which servers may be picked now, one bit per server. Sized once (this
// allocates); set()/test()/count() do not, so a group can refill it per
// request from a member it keeps.
class ServerMask {
 public:
  explicit ServerMask(size_t size = 0, bool value = false);

  size_t size() const { return size_; }
  void set(size_t server, bool usable = true);
  bool test(size_t server) const { return ((words_[server / 64] >> (server % 64)) & 1) != 0; }
  void fill(bool value);
  size_t count() const;  // servers set
  bool any() const;

 private:
  std::vector<uint64_t> words_;
  size_t size_;
};

// xoshiro256** (Blackman & Vigna): fast, small, statistically good; not
// cryptographic. Seeded through splitmix64, so any seed (also 0) is fine.
// Give each worker a different seed so workers do not draw in lockstep.
class FastRng {
 public:
  explicit FastRng(uint64_t seed = 0);
  uint64_t next();
  // Uniform in [0, bound); bound > 0.
  uint64_t below(uint64_t bound);

 private:
  uint64_t s_[4];
};

// nginx's smooth weighted round-robin: every pick adds each usable
// server's weight to its `current`, takes the server with the largest
// `current` (the lower index on ties) and subtracts the usable total from
// it. Unusable servers are skipped and keep their `current`. O(servers).
class SmoothWeightedRoundRobin {
 public:
  explicit SmoothWeightedRoundRobin(std::span<const uint32_t> weights);
  std::optional<size_t> pick(const ServerMask& usable);

 private:
  std::vector<uint32_t> weights_;
  std::vector<int64_t> current_;
};

// Power of two choices. Two different usable servers are drawn with
// probability proportional to weight (rejection sampling against a
// prefix-sum table, with an exact scan as fallback when most of the weight
// is unusable); the one with the lower in_flight/weight wins
// (cross-multiplied, no division), the first drawn on ties. Weights
// therefore shape both the share at low load (ties) and the in-flight
// ratio under load. O(log servers) while most servers are usable.
class LeastRequest {
 public:
  LeastRequest(std::span<const uint32_t> weights, uint64_t rng_seed);
  // `in_flight[i]`: requests now in flight on server i (as the group counts
  // them); size = server count (missing entries count as 0).
  std::optional<size_t> pick(const ServerMask& usable, std::span<const uint32_t> in_flight);

 private:
  static constexpr size_t kNone = SIZE_MAX;
  std::optional<size_t> draw(const ServerMask& usable, size_t excluded);

  std::vector<uint32_t> weights_;
  std::vector<uint64_t> prefix_;  // prefix_[i] = weights_[0..i] summed
  bool equal_weights_;
  FastRng rng_;
};

// A consistent-hash ring: each server gets weight × points_per_weight
// points at positions hashed from its id and the point number (not from
// its index), so a server's points do not depend on which other servers
// exist: adding or removing one moves only the keys whose nearest point
// changes (~1/N of them), and raising a weight only adds points.
class HashRing {
 public:
  struct Server {
    std::string_view id;  // stable identity, e.g. "10.0.0.7:8080" or the configured "host:port"
    uint32_t weight = 1;  // 0: no points (never picked)
  };
  // 160 points per unit of weight (as ketama): measured with 3-50 equal
  // servers, each gets 82%-118% of its fair share of keys (the spread
  // shrinks with the square root of the points: 640 gives about ±8%, at
  // 16 bytes per point per worker). The ring is capped at `max_points`
  // (default 2^18 = 4 MiB): above it points per weight are scaled down for
  // every server alike, so shares stay proportional, but then a change in
  // the total weight changes every server's points and moves more keys
  // than the minimum.
  static constexpr uint32_t kDefaultPointsPerWeight = 160;
  static constexpr size_t kDefaultMaxPoints = size_t{1} << 18;

  explicit HashRing(std::span<const Server> servers,
                    uint32_t points_per_weight = kDefaultPointsPerWeight,
                    size_t max_points = kDefaultMaxPoints);

  // The first point at or after the (re-mixed) key hash, walking on past
  // points of unusable servers. O(log points) plus the walk.
  std::optional<size_t> pick(uint64_t key_hash, const ServerMask& usable) const;
  size_t server_count() const { return server_count_; }
  size_t point_count() const { return points_.size(); }

 private:
  struct Point {
    uint64_t position;
    uint32_t server;
  };
  std::vector<Point> points_;  // sorted by position
  size_t server_count_;
};

// ---- the balancer ---------------------------------------------------------------

enum class BalancePolicy : uint8_t { kRoundRobin, kLeastRequest, kConsistentHash };

// "round_robin", "least_request", "consistent_hash" (config and metrics).
std::string_view policy_name(BalancePolicy policy);
std::optional<BalancePolicy> parse_policy(std::string_view name);

struct BalancerServer {
  std::string_view id;  // consistent hash: stable identity ("host:port"); not kept
  uint32_t weight = 1;  // 0: drained (never picked, by any policy)
};

struct BalancerOptions {
  uint64_t rng_seed = 0;  // least-request; vary per worker (e.g. the pid)
  uint32_t ring_points_per_weight = HashRing::kDefaultPointsPerWeight;
  size_t ring_max_points = HashRing::kDefaultMaxPoints;
};

// One of the three policies behind one call. `usable.size()` and
// `in_flight.size()` (least-request) must equal server_count().
class Balancer {
 public:
  Balancer(BalancePolicy policy, std::span<const BalancerServer> servers,
           const BalancerOptions& options = {});

  // nullopt: no usable server. `key_hash` is read by kConsistentHash only
  // (when a request has no key, pass hash_client_address or a random
  // value), `in_flight` by kLeastRequest only.
  std::optional<size_t> pick(uint64_t key_hash, const ServerMask& usable,
                             std::span<const uint32_t> in_flight = {});

  BalancePolicy policy() const { return policy_; }
  size_t server_count() const { return server_count_; }

 private:
  BalancePolicy policy_;
  size_t server_count_;
  std::variant<SmoothWeightedRoundRobin, LeastRequest, HashRing> impl_;
};

}  // namespace torii::upstream
