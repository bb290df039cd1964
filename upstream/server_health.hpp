// Health of the servers of one upstream group, per worker: pure state
// machines, no I/O, no clock (callers pass now_ms, any monotonic
// milliseconds). Two sources, combined in ServerHealth::eligible():
//
//  * Passive outlier detection (OutlierState): real traffic's outcomes.
//    N 5xx/timeouts in a row, or M connect failures in a row, eject the
//    server for base × 2^(level − 1), capped at max, where level counts
//    recent ejections (it decays while the server stays in). An ejected
//    server returns by itself when its time is up (nothing to call).
//    HealthGroup refuses an ejection that would take out more than
//    max_ejection_percent of the group.
//
//  * Active health checks (ActiveCheckState): results of the probes the
//    group sends (HTTP GET of a path, status in StatusRanges within the
//    timeout = pass). healthy_threshold passes in a row bring an
//    unhealthy server back, unhealthy_threshold failures in a row take a
//    healthy one out.
//
// All of it is plain per-worker data (single-threaded); nothing here
// allocates after construction.
#pragma once

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "upstream/balancer.hpp"

namespace torii::upstream {

// ---- settings ----------------------------------------------------------------

struct OutlierSettings {
  // Ejection thresholds, in a row; 0 turns that trigger off.
  uint32_t consecutive_5xx = 5;  // 5xx responses and response timeouts (the client got 5xx/504)
  uint32_t consecutive_connect_failures =
      3;                               // refused, unreachable, connect/TLS timeout or failure
  uint64_t base_ejection_ms = 30'000;  // the first ejection's length
  uint64_t max_ejection_ms = 300'000;  // doubling stops here
  // At most this share of the group's servers ejected at once (rounded
  // down: with 50%, one of 2 or 3 servers, never the only server).
  uint32_t max_ejection_percent = 50;
  // Each full period spent back in service forgives one past ejection, so
  // a server that flaps keeps long ejections and one that recovered starts
  // short again. 0: never forgiven.
  uint64_t ejection_decay_ms = 300'000;
};

// Which response statuses count as a passing check: a set of ranges within
// 100-599, e.g. "200-399", "200,204", "2xx,301-302". Fixed size, no
// allocation; contains() is one bit test.
class StatusRanges {
 public:
  StatusRanges() = default;                        // empty: nothing passes
  static StatusRanges range(int first, int last);  // both inclusive, within 100-599

  // Comma-separated items, each a status ("204"), a range ("200-399") or a
  // class ("2xx"); blanks around items are ignored. On a bad spec returns
  // nullopt and sets `error` to what is wrong (the config layer adds the
  // file and JSON path), e.g. "\"2O0\" is not a status, range (200-399) or
  // class (2xx)", "status 600 is outside 100-599", "range 399-200 ends
  // before it starts", "empty item in \"200,,300\"".
  static std::optional<StatusRanges> parse(std::string_view spec, std::string& error);

  bool contains(int status) const {
    return status >= kMin && status <= kMax && codes_.test(static_cast<size_t>(status - kMin));
  }
  bool empty() const { return codes_.none(); }
  // Canonical form for logs and the admin endpoint: "200-399", "200,204".
  std::string to_string() const;

  friend bool operator==(const StatusRanges&, const StatusRanges&) = default;

 private:
  static constexpr int kMin = 100;
  static constexpr int kMax = 599;
  void add(int first, int last);

  std::bitset<kMax - kMin + 1> codes_;
};

struct ActiveCheckSettings {
  uint32_t healthy_threshold = 2;    // passes in a row: unhealthy -> healthy
  uint32_t unhealthy_threshold = 3;  // failures in a row: healthy -> unhealthy
  // Before the first result: healthy (as nginx and Envoy do by default, so
  // a restart or reload does not drop traffic until checks complete).
  // false: out until checked, and then the first pass alone brings a
  // server in (as Envoy at start-up), not healthy_threshold of them.
  // Only matters when checks run; without checks nobody records results
  // and a server keeps this state.
  bool start_healthy = true;
  StatusRanges expected_statuses = StatusRanges::range(200, 399);
};

struct HealthSettings {
  OutlierSettings outlier;
  ActiveCheckSettings active;
};

// ---- per-server state machines -------------------------------------------------

enum class FailureKind : uint8_t {
  k5xx,             // a 5xx response
  kConnectFailure,  // no connection: refused, unreachable, connect timeout, TLS handshake
  kTimeout,         // connected, but the response (or its body) timed out
};

// Passive outlier detection for one server.
//
//   event            consecutive_5xx   consecutive_connect_failures
//   success          reset             reset
//   5xx / timeout    +1                reset (a connection was made)
//   connect failure  unchanged         +1
//
// While ejected, outcomes (of requests that were already under way) are
// ignored; ejecting resets both counters, so a returning server needs a
// full threshold of new failures to go out again.
class OutlierState {
 public:
  // A response that was not a 5xx.
  void record_success(uint64_t now_ms);
  // true: a threshold is reached and the server should be ejected; the
  // caller (HealthGroup) checks the group's cap and calls eject(). If it
  // may not, the counters keep counting and the next failure asks again.
  bool record_failure(FailureKind kind, uint64_t now_ms, const OutlierSettings& settings);
  // Out for base × 2^(level − 1) capped at max, level = ejection_level()
  // + 1. Returns when the server comes back.
  uint64_t eject(uint64_t now_ms, const OutlierSettings& settings);

  bool ejected(uint64_t now_ms) const { return now_ms < ejected_until_ms_; }
  uint64_t ejected_until_ms() const { return ejected_until_ms_; }  // 0: never ejected
  // Recent ejections after decay: the next ejection lasts base × 2^level.
  uint32_t ejection_level(uint64_t now_ms, const OutlierSettings& settings) const;
  uint64_t total_ejections() const { return total_ejections_; }
  uint32_t consecutive_5xx() const { return consecutive_5xx_; }
  uint32_t consecutive_connect_failures() const { return consecutive_connect_failures_; }

 private:
  uint32_t consecutive_5xx_ = 0;
  uint32_t consecutive_connect_failures_ = 0;
  uint32_t level_ = 0;  // as of ejected_until_ms_ (decay is applied lazily)
  uint64_t ejected_until_ms_ = 0;
  uint64_t total_ejections_ = 0;
};

// Active health check results for one server.
class ActiveCheckState {
 public:
  explicit ActiveCheckState(const ActiveCheckSettings& settings)
      : healthy_(settings.start_healthy) {}

  // One probe's result. Returns true when this result flipped healthy().
  bool record(bool passed, const ActiveCheckSettings& settings);

  bool healthy() const { return healthy_; }
  bool checked() const { return checked_; }  // any result yet
  uint32_t consecutive_passes() const { return consecutive_passes_; }
  uint32_t consecutive_failures() const { return consecutive_failures_; }

 private:
  bool healthy_;
  bool checked_ = false;
  uint32_t consecutive_passes_ = 0;
  uint32_t consecutive_failures_ = 0;
};

// What the admin endpoint and metrics show per server.
enum class HealthState : uint8_t {
  kHealthy,    // may be picked
  kUnhealthy,  // active checks failing (shown even if also ejected: it is the lasting cause)
  kEjected,    // outlier detection took it out until ejected_until_ms()
};
std::string_view health_state_name(HealthState state);  // "healthy" | "unhealthy" | "ejected"

struct ServerHealth {
  explicit ServerHealth(const ActiveCheckSettings& settings) : active(settings) {}

  bool eligible(uint64_t now_ms) const { return active.healthy() && !outlier.ejected(now_ms); }
  HealthState state(uint64_t now_ms) const;

  OutlierState outlier;
  ActiveCheckState active;
};

// ---- the group -------------------------------------------------------------------

// How a recorded failure ended (for logs and an ejections counter).
enum class FailureOutcome : uint8_t {
  kCounted,         // below the thresholds
  kEjected,         // the server is out now
  kEjectionCapped,  // a threshold was reached but max_ejection_percent is used up
  kIgnored,         // the server was already ejected
};

// The servers of one upstream group (config order, as the Balancer's).
class HealthGroup {
 public:
  HealthGroup(size_t server_count, const HealthSettings& settings);

  void record_success(size_t server, uint64_t now_ms);
  FailureOutcome record_failure(size_t server, FailureKind kind, uint64_t now_ms);
  // One active check's result: passed = response within the timeout with
  // a status in settings().active.expected_statuses. Returns true when the
  // server's active state flipped (worth a log line).
  bool record_check(size_t server, bool passed);

  bool eligible(size_t server, uint64_t now_ms) const { return servers_[server].eligible(now_ms); }
  HealthState state(size_t server, uint64_t now_ms) const { return servers_[server].state(now_ms); }
  // Sets each server's bit to eligible(now); the caller may then clear
  // the ones at their connection cap. `mask.size()` must be size().
  void fill_eligible(uint64_t now_ms, ServerMask& mask) const;
  size_t ejected_count(uint64_t now_ms) const;
  // Whether one more ejection stays within max_ejection_percent.
  bool ejection_allowed(uint64_t now_ms) const;

  size_t size() const { return servers_.size(); }
  const ServerHealth& server(size_t index) const { return servers_[index]; }
  const HealthSettings& settings() const { return settings_; }

 private:
  HealthSettings settings_;
  std::vector<ServerHealth> servers_;
};

}  // namespace torii::upstream
