#include "gateway/rate_limit.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <random>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace torii::gateway {

namespace {

using AtomicWord = std::atomic_ref<uint64_t>;
// A lock (or a libatomic fallback) would not work across processes.
static_assert(AtomicWord::is_always_lock_free, "rate limit buckets need lock-free 64-bit atomics");
static_assert(AtomicWord::required_alignment <= alignof(uint64_t));

constexpr uint64_t kMagic = 0x746f7269726c7431;  // "torirlt1": layout version 1
constexpr uint64_t kNsPerMs = 1'000'000;
constexpr uint64_t kNsPerSecond = 1'000'000'000;
// Bound on any bucket time span, so now + depth + cost never overflows.
constexpr uint64_t kMaxSpanNs = uint64_t{1} << 62;
constexpr uint64_t kUntrackedRetryMs = 1000;  // a denied key without a slot: try again in 1 s

// Murmur3's finalizer: every input bit affects every output bit.
uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

uint64_t saturating_multiply(uint64_t a, uint64_t b, uint64_t limit) {
  if (a != 0 && b > limit / a) return limit;
  return std::min(a * b, limit);
}

uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// The policy in bucket time.
struct BucketSpans {
  uint64_t interval_ns;  // time to earn one token
  uint64_t depth_ns;     // time to fill an empty bucket
  uint64_t cost_ns;      // time one request takes from the bucket
};

BucketSpans spans_for(const RateLimitPolicy& policy) {
  const uint64_t window_ns = uint64_t{std::max<uint32_t>(policy.window_seconds, 1)} * kNsPerSecond;
  const uint64_t burst = policy.burst != 0 ? policy.burst : policy.requests;
  BucketSpans spans{};
  // Rounded up: the limiter may admit slightly less than configured, never more.
  spans.interval_ns = policy.requests == 0 ? kMaxSpanNs : ceil_div(window_ns, policy.requests);
  spans.depth_ns =
      policy.requests == 0 ? 0 : saturating_multiply(burst, spans.interval_ns, kMaxSpanNs);
  spans.cost_ns = saturating_multiply(policy.cost, spans.interval_ns, kMaxSpanNs);
  return spans;
}

}  // namespace

struct RateLimitTable::Header {
  uint64_t magic;
  uint64_t slot_count;
  uint64_t seed;
  uint64_t untracked;  // atomic counters
  uint64_t reclaimed;
  uint64_t reserved[11];  // pads the header to kHeaderBytes
};

namespace {

// Two cache lines, so that buckets (128 bytes) start on a line in a
// page-aligned region.
constexpr size_t kHeaderBytes = 128;
constexpr size_t kSlotWords = 2;  // fingerprint, state
constexpr size_t kSlotBytes = kSlotWords * sizeof(uint64_t);

size_t slot_count_for(size_t capacity) {
  size_t count = RateLimitTable::kBucketSlots;
  while (count < capacity) count <<= 1;
  return count;
}

std::span<uint64_t> words_of(std::span<std::byte> region) {
  if (reinterpret_cast<uintptr_t>(region.data()) % alignof(uint64_t) != 0) {
    throw std::invalid_argument("rate limit table: region is not 8-byte aligned");
  }
  return {reinterpret_cast<uint64_t*>(region.data()), region.size() / sizeof(uint64_t)};
}

}  // namespace

size_t RateLimitTable::bytes_for(size_t capacity) {
  static_assert(sizeof(Header) == kHeaderBytes);
  return kHeaderBytes + slot_count_for(capacity) * kSlotBytes;
}

RateLimitTable::RateLimitTable(Header* header, uint64_t* slots, size_t slot_count)
    : header_(header), slots_(slots), slot_mask_(slot_count - 1), seed_(header->seed) {}

RateLimitTable RateLimitTable::format(std::span<std::byte> region, size_t capacity, uint64_t seed) {
  const size_t slot_count = slot_count_for(capacity);
  if (region.size() < bytes_for(capacity)) {
    throw std::invalid_argument("rate limit table: region too small for the capacity");
  }
  const std::span<uint64_t> words = words_of(region);
  std::fill(words.begin(), words.begin() + bytes_for(capacity) / sizeof(uint64_t), 0);
  while (seed == 0) seed = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  auto* header = reinterpret_cast<Header*>(words.data());
  header->slot_count = slot_count;
  header->seed = seed;
  // Written last: attach() trusts the header only once the magic is there.
  AtomicWord(header->magic).store(kMagic, std::memory_order_release);
  return {header, words.data() + kHeaderBytes / sizeof(uint64_t), slot_count};
}

RateLimitTable RateLimitTable::attach(std::span<std::byte> region) {
  const std::span<uint64_t> words = words_of(region);
  if (region.size() < kHeaderBytes)
    throw std::invalid_argument("rate limit table: region too small");
  auto* header = reinterpret_cast<Header*>(words.data());
  const bool formatted = AtomicWord(header->magic).load(std::memory_order_acquire) == kMagic;
  const uint64_t slot_count = header->slot_count;  // read after the magic: see format()
  if (!formatted || slot_count < kBucketSlots || (slot_count & (slot_count - 1)) != 0 ||
      region.size() < bytes_for(slot_count)) {
    throw std::invalid_argument("rate limit table: region does not hold a formatted table");
  }
  return {header, words.data() + kHeaderBytes / sizeof(uint64_t), slot_count};
}

std::atomic_ref<uint64_t> RateLimitTable::fingerprint(size_t slot) const {
  return AtomicWord(slots_[slot * kSlotWords]);
}

std::atomic_ref<uint64_t> RateLimitTable::state(size_t slot) const {
  return AtomicWord(slots_[slot * kSlotWords + 1]);
}

size_t RateLimitTable::find_or_claim(uint64_t key_hash, uint64_t now_ns) {
  const size_t bucket_mask = capacity() / kBucketSlots - 1;
  const uint64_t spread = mix64(key_hash ^ seed_);
  size_t buckets[2] = {spread & bucket_mask, (spread >> 32) & bucket_mask};
  if (buckets[1] == buckets[0]) buckets[1] ^= 1 & bucket_mask;  // distinct when there are two
  const size_t bucket_count = buckets[1] == buckets[0] ? 1 : 2;

  // Lookup. Within a bucket, slots are claimed in order and never emptied,
  // so a present key sits before the bucket's first empty slot.
  size_t used[2] = {kBucketSlots, kBucketSlots};
  for (size_t b = 0; b < bucket_count; ++b) {
    for (size_t s = 0; s < kBucketSlots; ++s) {
      const uint64_t seen = fingerprint(buckets[b] * kBucketSlots + s).load();
      if (seen == key_hash) return buckets[b] * kBucketSlots + s;
      if (seen == 0) {
        used[b] = s;
        break;
      }
    }
  }

  // Insert into the emptier bucket (the first on a tie): two choices keep
  // the buckets balanced. Racing workers that saw the same loads pick the
  // same slot, so one wins the claim and the other finds the key there.
  const bool second_first = bucket_count == 2 && used[1] < used[0];
  for (size_t n = 0; n < bucket_count; ++n) {
    const size_t b = second_first ? 1 - n : n;
    for (size_t s = used[b]; s < kBucketSlots; ++s) {
      const size_t slot = buckets[b] * kBucketSlots + s;
      uint64_t seen = 0;
      if (fingerprint(slot).compare_exchange_strong(seen, key_hash)) return slot;
      if (seen == key_hash) return slot;
    }
  }

  // Both buckets full: take over a slot whose bucket is full (TAT <= now).
  // Nothing is lost, since a new key would start with a full bucket too.
  for (size_t b = 0; b < bucket_count; ++b) {
    for (size_t s = 0; s < kBucketSlots; ++s) {
      const size_t slot = buckets[b] * kBucketSlots + s;
      uint64_t seen = fingerprint(slot).load();
      if (seen == key_hash) return slot;
      if (state(slot).load(std::memory_order_relaxed) > now_ns) continue;
      if (fingerprint(slot).compare_exchange_strong(seen, key_hash)) {
        AtomicWord(header_->reclaimed).fetch_add(1, std::memory_order_relaxed);
        return slot;
      }
      if (seen == key_hash) return slot;  // another worker reclaimed it for this key
    }
  }
  return capacity();
}

RateLimitDecision RateLimitTable::try_acquire(uint64_t key_hash, const RateLimitPolicy& policy,
                                              uint64_t now_ms) {
  if (key_hash == 0) key_hash = 1;  // 0 marks an empty slot
  const uint64_t now_ns = saturating_multiply(now_ms, kNsPerMs, kMaxSpanNs);
  const BucketSpans spans = spans_for(policy);

  const size_t index = find_or_claim(key_hash, now_ns);
  RateLimitDecision decision;
  if (index == capacity()) {
    AtomicWord(header_->untracked).fetch_add(1, std::memory_order_relaxed);
    decision.tracked = false;
    decision.allowed = !policy.deny_when_full;
    if (!decision.allowed) decision.retry_after_ms = kUntrackedRetryMs;
    return decision;
  }

  AtomicWord bucket = state(index);
  uint64_t seen = bucket.load(std::memory_order_relaxed);
  const uint64_t limit = now_ns + spans.depth_ns;  // latest TAT an admitted request may leave
  for (;;) {
    const uint64_t arrival = std::max(seen, now_ns);  // TAT, or now if the bucket is full
    const uint64_t after = arrival + spans.cost_ns;
    if (after > limit) {
      decision.allowed = false;
      decision.remaining = arrival < limit ? (limit - arrival) / spans.interval_ns : 0;
      decision.retry_after_ms = ceil_div(after - limit, kNsPerMs);
      decision.reset_ms = ceil_div(arrival - now_ns, kNsPerMs);
      return decision;
    }
    // Relaxed is enough: the bucket is this one word, nothing else is published with it.
    if (bucket.compare_exchange_weak(seen, after, std::memory_order_relaxed)) {
      decision.remaining = (limit - after) / spans.interval_ns;
      decision.reset_ms = ceil_div(after - now_ns, kNsPerMs);
      return decision;
    }
  }
}

uint64_t RateLimitTable::untracked_count() const {
  return AtomicWord(header_->untracked).load(std::memory_order_relaxed);
}

uint64_t RateLimitTable::reclaimed_count() const {
  return AtomicWord(header_->reclaimed).load(std::memory_order_relaxed);
}

size_t RateLimitTable::used_slots() const {
  size_t used = 0;
  for (size_t i = 0; i < capacity(); ++i) {
    if (fingerprint(i).load(std::memory_order_relaxed) != 0) ++used;
  }
  return used;
}

uint64_t rate_limit_key(uint32_t route_index, std::string_view key) {
  // FNV-1a over the route index (little-endian) and the key, then a
  // finalizer: FNV alone mixes its last bytes poorly into the high bits.
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto add_byte = [&h](uint8_t b) {
    h ^= b;
    h *= 0x100000001b3ULL;
  };
  for (int shift = 0; shift < 32; shift += 8) add_byte(static_cast<uint8_t>(route_index >> shift));
  for (const char c : key) add_byte(static_cast<uint8_t>(c));
  h = mix64(h ^ key.size());
  return h != 0 ? h : 1;
}

SharedRateLimitMemory::SharedRateLimitMemory(size_t bytes) : size_(bytes) {
  // Shared and anonymous: inherited by every fork, pages committed on first touch.
  base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    size_ = 0;
    throw std::system_error(errno, std::generic_category(), "mmap of the rate limit table");
  }
}

SharedRateLimitMemory::SharedRateLimitMemory(SharedRateLimitMemory&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SharedRateLimitMemory& SharedRateLimitMemory::operator=(SharedRateLimitMemory&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) munmap(base_, size_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SharedRateLimitMemory::~SharedRateLimitMemory() {
  if (base_ != nullptr) munmap(base_, size_);
}

namespace {

// An RFC 8941 sf-string: printable ASCII, with '"' and '\' escaped.
void append_sf_string(std::string& out, std::string_view text) {
  out.push_back('"');
  for (const char c : text) {
    if (c < 0x20 || c > 0x7e) continue;
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

void append_parameter(std::string& out, std::string_view name, uint64_t value) {
  out.push_back(';');
  out.append(name);
  out.push_back('=');
  char digits[24];
  const auto result = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, result.ptr);
}

}  // namespace

std::string rate_limit_policy_value(std::string_view policy_name, const RateLimitPolicy& policy) {
  std::string out;
  append_sf_string(out, policy_name);
  append_parameter(out, "q", policy.requests);
  append_parameter(out, "w", std::max<uint32_t>(policy.window_seconds, 1));
  return out;
}

std::string rate_limit_value(std::string_view policy_name, const RateLimitDecision& decision) {
  std::string out;
  append_sf_string(out, policy_name);
  append_parameter(out, "r", decision.remaining);
  append_parameter(out, "t", ceil_div(decision.reset_ms, 1000));
  return out;
}

std::string retry_after_value(uint64_t retry_after_ms) {
  std::string out;
  char digits[24];
  const auto result = std::to_chars(digits, digits + sizeof digits, ceil_div(retry_after_ms, 1000));
  out.append(digits, result.ptr);
  return out;
}

}  // namespace torii::gateway
