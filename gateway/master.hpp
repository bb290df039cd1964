// The master process: owns the validated config and the listening
// sockets, forks the workers, respawns those that die (with backoff when
// they keep dying) and turns signals into drains and stops. It never
// touches client traffic, so it stays responsive whatever the workers do.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "conf/config.hpp"
#include "gateway/admin_server.hpp"
#include "gateway/listen_socket.hpp"
#include "metrics/exposition.hpp"
#include "metrics/stats.hpp"

namespace torii::gateway {

class Master {
 public:
  explicit Master(conf::Config config);
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;
  ~Master();

  // Opens sockets, starts workers, runs until stopped. Returns the exit code.
  int run();

 private:
  struct WorkerSlot {
    Master* master = nullptr;
    unsigned index = 0;
    pid_t pid = 0;
    uint64_t started_ms = 0;
    uint64_t backoff_ms = 0;
    uv_timer_t respawn_timer;
  };

  void spawn(WorkerSlot& slot);
  void on_child_exit();
  void on_terminate(bool graceful);
  void signal_workers(int sig);
  size_t live_workers() const;
  void finish();
  void setup_metrics();
  AdminResponse handle_admin(const http::MessageHead& request);
  // Zeroes the gauges of a slot whose worker died (its connections are gone).
  void reset_slot_gauges(size_t slot);
  [[noreturn]] void become_worker(WorkerSlot& slot);

  conf::Config config_;
  uv_loop_t loop_;
  std::vector<ListenSocketSet> sockets_;  // [listener]
  metrics::StatsRegistry stats_registry_;
  std::unique_ptr<metrics::StatsSegment> stats_segment_;
  metrics::StatsLayout stats_layout_;
  std::unique_ptr<metrics::MasterMetrics> master_metrics_;
  std::unique_ptr<metrics::SegmentCollector> collector_;
  std::unique_ptr<AdminServer> admin_;
  std::vector<std::unique_ptr<WorkerSlot>> slots_;
  uv_signal_t sigchld_, sigterm_, sigint_, sigquit_, sighup_, sigusr1_;
  uv_timer_t kill_timer_;
  bool stopping_ = false;
  int terminate_count_ = 0;
};

}  // namespace torii::gateway
