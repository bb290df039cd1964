// Per-route rate limiting shared by every worker process.
//
// A RateLimitTable is a fixed-capacity open-addressing hash table that lives
// in a caller-provided memory region. The master maps the region
// MAP_SHARED|MAP_ANONYMOUS (SharedRateLimitMemory) and formats it before
// forking, so every worker sees the same buckets. Heap memory works too
// (unit tests).
//
// Algorithm: a token bucket, stored as GCRA ("generic cell rate algorithm",
// the token bucket written as one timestamp). Each slot holds
//   fingerprint  64-bit hash of (route, key); 0 = empty slot
//   state        the bucket's "theoretical arrival time" (TAT), in ns of
//                CLOCK_MONOTONIC: the moment the bucket would be full again.
// With interval I = window / requests (time to earn one token) and depth
// D = burst * I, a request of cost c at time `now` is admitted iff
// max(TAT, now) + c*I <= now + D, and then TAT becomes max(TAT, now) + c*I.
// Tokens available at `now` = (now + D - max(TAT, now)) / I. TAT <= now
// means the bucket is full, so a zeroed slot is a full bucket.
//
// Concurrency: lock-free, no syscalls. The whole bucket is one 64-bit word,
// updated by compare-exchange (std::atomic_ref, always lock-free on the
// targets we build for: static_assert in rate_limit.cpp); workers in
// different processes never lose an update. Denials do not write.
//
// Accuracy (what the tests check):
//   - Exact across processes: for one key, the admitted cost between the
//     first request at t0 and time t is <= burst + rate * (t - t0), with
//     I rounded up to whole ns (so never more; for rates <= 1e6/s the
//     under-admission from rounding is < 0.1%, for <= 1000/s < 1e-6).
//   - Time is taken in whole ms from the caller (uv_now() is fine: a worker
//     whose cached clock lags only sees fewer tokens, never more).
//   - Exceptions: (a) two keys with the same 64-bit fingerprint share a
//     bucket: with n live keys the chance of any such pair is about
//     n^2 / 2^65 (3e-12 for 1e4 keys); (b) a slot is reclaimed for another key only when its bucket
//     is full, which loses nothing, but a request of the old key racing with
//     the reclamation (nanoseconds) may be charged to the new key: at most one
//     request per worker per reclamation; (c) keys with no slot (both buckets
//     full of non-full buckets) are not limited (fail open, the default) or
//     all denied (deny_when_full), and counted in untracked_count().
//
// Placement: slots come in buckets of kBucketSlots (8 slots, 128 bytes).
// A key has two candidate buckets (from a seeded hash) and goes into the
// emptier one ("two choices"), so it probes at most 16 slots. Measured at
// 16384 slots over 200 seeds: 10000 and 11000 keys (61%, 67%) never left a
// key without a slot; 12000 keys (73%) left one key out in 5% of the runs.
// (Linear probing limited to 16 slots leaves ~20 of 10000 keys out.) Keep
// live keys under ~60% of the capacity.
// Memory: 16 bytes per slot + 128.
//
// Headers follow draft-ietf-httpapi-ratelimit-headers-08..10 (structured
// fields: `RateLimit-Policy: "name";q=100;w=60`, `RateLimit: "name";r=42;t=13`).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace torii::gateway {

// A route's limit: `requests` per `window_seconds` sustained, up to `burst`
// at once.
struct RateLimitPolicy {
  uint32_t requests = 0;        // quota per window; 0 denies everything
  uint32_t window_seconds = 1;  // 0 is taken as 1
  uint32_t burst = 0;           // bucket capacity; 0 means `requests`
  uint32_t cost = 1;            // tokens one request takes; > burst is always denied
  bool deny_when_full = false;  // no slot for the key: deny (fail closed) instead of allow
};

struct RateLimitDecision {
  bool allowed = true;
  bool tracked = true;          // false: the table had no slot for the key (see deny_when_full)
  uint64_t remaining = 0;       // whole tokens left (after this request, if allowed)
  uint64_t retry_after_ms = 0;  // denied: until `cost` tokens are available; 0 when allowed
  uint64_t reset_ms = 0;        // until the bucket is full again (RateLimit's t)
};

// The 64-bit key of a (route, client key) pair; never 0. `key` is the client
// address or the header value (API key), as the route says.
uint64_t rate_limit_key(uint32_t route_index, std::string_view key);

class RateLimitTable {
 public:
  static constexpr size_t kBucketSlots = 8;

  // Region size for `capacity` slots (rounded up to a power of two, at least
  // one bucket).
  static size_t bytes_for(size_t capacity);
  // Zeroes the region and writes the header. `seed` randomizes slot placement
  // (so clients cannot aim keys at one bucket); 0 picks a random one.
  // Throws std::invalid_argument when the region is too small or not 8-byte
  // aligned.
  static RateLimitTable format(std::span<std::byte> region, size_t capacity, uint64_t seed = 0);
  // A view of a region formatted earlier (by this or another process).
  // Throws std::invalid_argument when the region does not hold a table.
  static RateLimitTable attach(std::span<std::byte> region);

  RateLimitDecision try_acquire(uint64_t key_hash, const RateLimitPolicy& policy, uint64_t now_ms);

  size_t capacity() const { return slot_mask_ + 1; }
  uint64_t untracked_count() const;  // decisions made without a slot
  uint64_t reclaimed_count() const;  // slots taken over from another key
  size_t used_slots() const;         // scans the table: for tests and metrics

 private:
  struct Header;
  RateLimitTable(Header* header, uint64_t* slots, size_t slot_count);
  // The slot index for the key, claiming or reclaiming one; capacity() if none.
  size_t find_or_claim(uint64_t key_hash, uint64_t now_ns);
  std::atomic_ref<uint64_t> fingerprint(size_t slot) const;
  std::atomic_ref<uint64_t> state(size_t slot) const;

  Header* header_ = nullptr;
  uint64_t* slots_ = nullptr;  // pairs: fingerprint, state
  size_t slot_mask_ = 0;
  uint64_t seed_ = 0;
};

// A MAP_SHARED|MAP_ANONYMOUS mapping: made by the master before fork,
// inherited by every worker. Throws std::system_error when mmap fails.
class SharedRateLimitMemory {
 public:
  explicit SharedRateLimitMemory(size_t bytes);
  SharedRateLimitMemory(const SharedRateLimitMemory&) = delete;
  SharedRateLimitMemory& operator=(const SharedRateLimitMemory&) = delete;
  SharedRateLimitMemory(SharedRateLimitMemory&& other) noexcept;
  SharedRateLimitMemory& operator=(SharedRateLimitMemory&& other) noexcept;
  ~SharedRateLimitMemory();

  std::span<std::byte> bytes() const { return {static_cast<std::byte*>(base_), size_}; }

 private:
  void* base_ = nullptr;
  size_t size_ = 0;
};

// Header values (without the name). `policy_name` is written as a
// structured-field string; bytes outside printable ASCII are dropped.
// RateLimit-Policy: "name";q=<requests>;w=<window_seconds>
std::string rate_limit_policy_value(std::string_view policy_name, const RateLimitPolicy& policy);
// RateLimit: "name";r=<remaining>;t=<seconds until full, rounded up>
std::string rate_limit_value(std::string_view policy_name, const RateLimitDecision& decision);
// Retry-After: delay-seconds, rounded up (1..1000 ms -> "1").
std::string retry_after_value(uint64_t retry_after_ms);

}  // namespace torii::gateway
