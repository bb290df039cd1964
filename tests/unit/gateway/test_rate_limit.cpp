// Unit tests for gateway/rate_limit: the shared token-bucket table (single
// key, many keys, a full table, several processes on one key) and the
// RateLimit / RateLimit-Policy / Retry-After values.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "gateway/rate_limit.hpp"

namespace {

using torii::gateway::rate_limit_key;
using torii::gateway::rate_limit_policy_value;
using torii::gateway::rate_limit_value;
using torii::gateway::RateLimitDecision;
using torii::gateway::RateLimitPolicy;
using torii::gateway::RateLimitTable;
using torii::gateway::retry_after_value;
using torii::gateway::SharedRateLimitMemory;

// Heap memory for a table (8-byte aligned, as the table requires).
struct HeapRegion {
  explicit HeapRegion(size_t capacity)
      : words(RateLimitTable::bytes_for(capacity) / sizeof(uint64_t)) {}
  std::span<std::byte> bytes() { return std::as_writable_bytes(std::span(words)); }
  std::vector<uint64_t> words;
};

uint64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// 10 requests per second, bursts of 5: one token every 100 ms.
constexpr RateLimitPolicy kTenPerSecond{.requests = 10, .window_seconds = 1, .burst = 5};

}  // namespace

TEST_SUITE("rate limit") {
  TEST_CASE("a burst is admitted, then denied with the time to the next token") {
    HeapRegion region(64);
    auto table = RateLimitTable::format(region.bytes(), 64, 1);
    const uint64_t key = rate_limit_key(0, "203.0.113.7");
    for (uint64_t i = 1; i <= 5; ++i) {
      const RateLimitDecision d = table.try_acquire(key, kTenPerSecond, 1000);
      CHECK(d.allowed);
      CHECK(d.tracked);
      CHECK(d.remaining == 5 - i);
      CHECK(d.retry_after_ms == 0);
      CHECK(d.reset_ms == 100 * i);  // the time to earn back what was taken
    }
    RateLimitDecision denied = table.try_acquire(key, kTenPerSecond, 1000);
    CHECK_FALSE(denied.allowed);
    CHECK(denied.tracked);
    CHECK(denied.remaining == 0);
    CHECK(denied.retry_after_ms == 100);
    CHECK(denied.reset_ms == 500);

    // Denials take nothing: 50 ms later one token is 50 ms away.
    denied = table.try_acquire(key, kTenPerSecond, 1050);
    CHECK_FALSE(denied.allowed);
    CHECK(denied.retry_after_ms == 50);
    CHECK(denied.reset_ms == 450);

    const RateLimitDecision refilled = table.try_acquire(key, kTenPerSecond, 1100);
    CHECK(refilled.allowed);
    CHECK(refilled.remaining == 0);
    CHECK(refilled.reset_ms == 500);
    CHECK_FALSE(table.try_acquire(key, kTenPerSecond, 1100).allowed);

    // Idle far longer than a refill: the bucket holds `burst` tokens, no more.
    int admitted = 0;
    while (table.try_acquire(key, kTenPerSecond, 100'000).allowed) ++admitted;
    CHECK(admitted == 5);
  }

  TEST_CASE("a per-minute policy, burst defaulting to the quota, and request cost") {
    HeapRegion region(16);
    auto table = RateLimitTable::format(region.bytes(), 16, 1);
    const RateLimitPolicy per_minute{.requests = 60, .window_seconds = 60};
    const uint64_t key = rate_limit_key(3, "api-key-1");
    for (int i = 0; i < 60; ++i) REQUIRE(table.try_acquire(key, per_minute, 5000).allowed);
    const RateLimitDecision denied = table.try_acquire(key, per_minute, 5000);
    CHECK_FALSE(denied.allowed);
    CHECK(denied.retry_after_ms == 1000);
    CHECK(denied.reset_ms == 60'000);
    CHECK(table.try_acquire(key, per_minute, 6000).allowed);

    RateLimitPolicy costly = kTenPerSecond;
    costly.cost = 3;
    const uint64_t other = rate_limit_key(3, "api-key-2");
    const RateLimitDecision first = table.try_acquire(other, costly, 0);
    CHECK(first.allowed);
    CHECK(first.remaining == 2);
    const RateLimitDecision second = table.try_acquire(other, costly, 0);
    CHECK_FALSE(second.allowed);
    CHECK(second.remaining == 2);         // tokens there, but fewer than the cost
    CHECK(second.retry_after_ms == 100);  // one more token makes 3

    RateLimitPolicy never = kTenPerSecond;
    never.requests = 0;
    CHECK_FALSE(table.try_acquire(rate_limit_key(4, "x"), never, 0).allowed);
  }

  TEST_CASE("keys are independent, per route") {
    HeapRegion region(64);
    auto table = RateLimitTable::format(region.bytes(), 64, 1);
    const uint64_t a = rate_limit_key(1, "client");
    const uint64_t b = rate_limit_key(1, "other client");
    const uint64_t a_on_other_route = rate_limit_key(2, "client");
    while (table.try_acquire(a, kTenPerSecond, 0).allowed) {
    }
    CHECK(table.try_acquire(b, kTenPerSecond, 0).remaining == 4);
    CHECK(table.try_acquire(a_on_other_route, kTenPerSecond, 0).remaining == 4);
    CHECK_FALSE(table.try_acquire(a, kTenPerSecond, 0).allowed);
    CHECK(table.used_slots() == 3);
  }

  TEST_CASE("10000 keys in a 16384-slot table are all tracked") {
    constexpr size_t kKeys = 10'000;
    HeapRegion region(16'384);
    auto table = RateLimitTable::format(region.bytes(), 16'384, 42);
    CHECK(table.capacity() == 16'384);
    const RateLimitPolicy three{.requests = 1, .window_seconds = 60, .burst = 3};
    for (int round = 0; round < 3; ++round) {
      for (size_t i = 0; i < kKeys; ++i) {
        const RateLimitDecision d =
            table.try_acquire(rate_limit_key(7, "key-" + std::to_string(i)), three, 1000);
        REQUIRE(d.tracked);
        REQUIRE(d.allowed);
      }
    }
    for (size_t i = 0; i < kKeys; ++i) {
      REQUIRE_FALSE(
          table.try_acquire(rate_limit_key(7, "key-" + std::to_string(i)), three, 1000).allowed);
    }
    CHECK(table.used_slots() == kKeys);
    CHECK(table.untracked_count() == 0);
    CHECK(table.reclaimed_count() == 0);
  }

  TEST_CASE("a full table fails open (or closed) and reclaims full buckets") {
    HeapRegion region(8);
    auto table = RateLimitTable::format(region.bytes(), 8, 1);
    REQUIRE(table.capacity() == RateLimitTable::kBucketSlots);  // one bucket: every key's
    const RateLimitPolicy one_per_minute{.requests = 1, .window_seconds = 60};
    for (int i = 0; i < 8; ++i) {
      REQUIRE(table.try_acquire(rate_limit_key(0, std::to_string(i)), one_per_minute, 0).allowed);
    }
    const uint64_t newcomer = rate_limit_key(0, "newcomer");
    const RateLimitDecision open = table.try_acquire(newcomer, one_per_minute, 0);
    CHECK(open.allowed);
    CHECK_FALSE(open.tracked);
    RateLimitPolicy closed = one_per_minute;
    closed.deny_when_full = true;
    const RateLimitDecision shut = table.try_acquire(newcomer, closed, 0);
    CHECK_FALSE(shut.allowed);
    CHECK_FALSE(shut.tracked);
    CHECK(shut.retry_after_ms == 1000);
    CHECK(table.untracked_count() == 2);
    CHECK(table.reclaimed_count() == 0);

    // A minute later every bucket is full again: one is handed over.
    const RateLimitDecision later = table.try_acquire(newcomer, one_per_minute, 60'000);
    CHECK(later.allowed);
    CHECK(later.tracked);
    CHECK(table.reclaimed_count() == 1);
    CHECK(table.used_slots() == 8);
    CHECK_FALSE(table.try_acquire(newcomer, one_per_minute, 60'000).allowed);
  }

  TEST_CASE("format, attach and region checks") {
    CHECK(RateLimitTable::bytes_for(10'000) == 128 + 16'384 * 16);
    CHECK(RateLimitTable::bytes_for(16) == 128 + 16 * 16);
    CHECK(RateLimitTable::bytes_for(1) == 128 + 8 * 16);  // at least one bucket

    HeapRegion region(64);
    auto table = RateLimitTable::format(region.bytes(), 64, 99);
    const uint64_t key = rate_limit_key(0, "k");
    CHECK(table.try_acquire(key, kTenPerSecond, 0).remaining == 4);
    auto attached = RateLimitTable::attach(region.bytes());
    CHECK(attached.capacity() == 64);
    CHECK(attached.try_acquire(key, kTenPerSecond, 0).remaining == 3);  // same bucket

    std::vector<uint64_t> garbage(64, 0x5a5a5a5a5a5a5a5a);
    CHECK_THROWS_AS(RateLimitTable::attach(std::as_writable_bytes(std::span(garbage))),
                    std::invalid_argument);
    std::vector<uint64_t> small(8);
    CHECK_THROWS_AS(RateLimitTable::format(std::as_writable_bytes(std::span(small)), 64),
                    std::invalid_argument);
    CHECK_THROWS_AS(RateLimitTable::format(region.bytes().subspan(1, 600), 16),
                    std::invalid_argument);  // misaligned
  }

  TEST_CASE("the key hash separates routes and keys and is never 0") {
    CHECK(rate_limit_key(1, "abc") == rate_limit_key(1, "abc"));
    CHECK(rate_limit_key(1, "abc") != rate_limit_key(2, "abc"));
    CHECK(rate_limit_key(0, "") != 0);
    std::unordered_set<uint64_t> seen;
    for (uint32_t route = 0; route < 4; ++route) {
      for (int i = 0; i < 25'000; ++i) {
        const uint64_t h = rate_limit_key(route, "10.0." + std::to_string(i));
        REQUIRE(h != 0);
        seen.insert(h);
      }
    }
    CHECK(seen.size() == 100'000);
  }

  TEST_CASE("rate limits hold across processes within the documented accuracy") {
    // 1000 requests per second (one token per ms), bursts of 200; children
    // hammer one key for 500 ms with the real monotonic clock.
    constexpr RateLimitPolicy kPolicy{.requests = 1000, .window_seconds = 1, .burst = 200};
    constexpr int kChildren = 3;
    constexpr uint64_t kRunMs = 500;

    SharedRateLimitMemory table_memory(RateLimitTable::bytes_for(64));
    auto table = RateLimitTable::format(table_memory.bytes(), 64);
    struct ChildReport {
      uint64_t admitted;
      uint64_t denied;
      uint64_t first_ms;  // `now` of the child's first and last try
      uint64_t last_ms;
    };
    SharedRateLimitMemory report_memory(sizeof(ChildReport) * kChildren);
    auto* reports = reinterpret_cast<ChildReport*>(report_memory.bytes().data());
    const uint64_t key = rate_limit_key(5, "shared client");
    const uint64_t deadline = monotonic_ms() + kRunMs;

    std::vector<pid_t> children;
    for (int c = 0; c < kChildren; ++c) {
      const pid_t pid = fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        ChildReport report{0, 0, 0, 0};
        for (uint64_t now = monotonic_ms(); now < deadline; now = monotonic_ms()) {
          if (report.first_ms == 0) report.first_ms = now;
          report.last_ms = now;
          ++(table.try_acquire(key, kPolicy, now).allowed ? report.admitted : report.denied);
        }
        reports[c] = report;
        _exit(0);
      }
      children.push_back(pid);
    }

    // Bounded wait: a child still running after 5 s is killed and fails the test.
    const uint64_t give_up = monotonic_ms() + 5000;
    size_t exited_cleanly = 0;
    for (const pid_t pid : children) {
      int status = 0;
      pid_t done = 0;
      while ((done = waitpid(pid, &status, WNOHANG)) == 0 && monotonic_ms() < give_up) {
        usleep(10'000);
      }
      if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
      } else if (done == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        ++exited_cleanly;
      }
    }
    REQUIRE(exited_cleanly == children.size());

    uint64_t admitted = 0;
    uint64_t tries = 0;
    uint64_t first_ms = UINT64_MAX;
    uint64_t last_ms = 0;
    int children_admitted = 0;
    for (int c = 0; c < kChildren; ++c) {
      children_admitted += reports[c].admitted != 0 ? 1 : 0;
      admitted += reports[c].admitted;
      tries += reports[c].admitted + reports[c].denied;
      if (reports[c].first_ms != 0) first_ms = std::min(first_ms, reports[c].first_ms);
      last_ms = std::max(last_ms, reports[c].last_ms);
    }
    REQUIRE(last_ms >= first_ms);
    // Exact bound: burst + rate x elapsed (one token per ms here).
    const uint64_t bound = kPolicy.burst + (last_ms - first_ms);
    INFO("admitted " << admitted << " of " << tries << " tries, bound " << bound << ", elapsed "
                     << last_ms - first_ms << " ms");
    CHECK(tries > 10 * bound);      // the key really was contended
    CHECK(children_admitted >= 2);  // by several processes
    CHECK(admitted <= bound);
    // Hammered without pause, the bucket never sits full, so nearly every
    // token is taken: allow 1% + 2 for the ms clock and scheduling.
    CHECK(admitted + bound / 100 + 2 >= bound);
  }

  TEST_CASE("RateLimit, RateLimit-Policy and Retry-After values") {
    const RateLimitPolicy policy{.requests = 100, .window_seconds = 60};
    CHECK(rate_limit_policy_value("default", policy) == R"("default";q=100;w=60)");
    RateLimitDecision d;
    d.remaining = 42;
    d.reset_ms = 12'001;
    CHECK(rate_limit_value("default", d) == R"("default";r=42;t=13)");
    d.remaining = 0;
    d.reset_ms = 0;
    CHECK(rate_limit_value("api", d) == R"("api";r=0;t=0)");
    // sf-string: quotes and backslashes escaped, control and non-ASCII bytes dropped.
    CHECK(rate_limit_policy_value("a\"b\\c\td\xc3\xa9", policy) == R"("a\"b\\cd";q=100;w=60)");

    CHECK(retry_after_value(0) == "0");
    CHECK(retry_after_value(1) == "1");
    CHECK(retry_after_value(1000) == "1");
    CHECK(retry_after_value(1001) == "2");
    CHECK(retry_after_value(60'000) == "60");
  }
}
