// Active health checks for one upstream in one worker: every `interval`
// (with up to 10% jitter, so workers and servers do not probe in step) each
// server gets `GET path` on a fresh pooled connection (TLS included for an
// https upstream), and the answer - a status in expected_statuses within
// `timeout` - goes to the group's health state (healthy/unhealthy
// thresholds). A probe's connection joins the pool afterwards like any
// other.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/deadline_timer.hpp"
#include "conf/config.hpp"
#include "upstream/balancer.hpp"
#include "upstream/exchange_sink.hpp"
#include "upstream/server_health.hpp"

namespace torii::upstream {

class UpstreamGroup;

class HealthChecker {
 public:
  HealthChecker(uv_loop_t* loop, UpstreamGroup& group, const conf::HealthCheck& config,
                uint64_t seed);
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;
  ~HealthChecker();

  // Stops probing: aborts probes in flight and closes the timer (the
  // checker must live until the loop has run the close).
  void close();

 private:
  class Probe;
  void on_timer();
  void schedule();

  uint64_t interval_ms_;
  FastRng rng_;  // jitter
  DeadlineTimer timer_;
  std::vector<std::unique_ptr<Probe>> probes_;  // one per server
  bool closed_ = false;
};

}  // namespace torii::upstream
