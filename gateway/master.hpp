// The master process: owns the validated config and the listening
// sockets, forks the workers, respawns those that die (with backoff when
// they keep dying), reloads the config on SIGHUP by starting a new
// generation of workers on the same sockets, and turns signals into drains
// and stops. It never touches client traffic, so it stays responsive
// whatever the workers do.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "gateway/admin_server.hpp"
#include "gateway/cache_purge.hpp"
#include "gateway/config_resources.hpp"
#include "gateway/control_channel.hpp"
#include "gateway/listen_socket.hpp"
#include "gateway/prewarm_relay.hpp"
#include "gateway/tls_context.hpp"
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
  // The command line to exec for a binary upgrade (SIGUSR2): the binary's
  // absolute path, resolved at start-up, and the arguments.
  void set_command_line(std::string executable, std::vector<std::string> args);

 private:
  // One generation of workers: the config they run and their stats layout.
  struct Generation {
    uint64_t number = 0;
    std::shared_ptr<const conf::Config> config;
    metrics::StatsLayout layout;
    ConfigResources resources;  // TLS contexts and route authenticators
  };
  // One worker process (alive, or waiting to be respawned).
  struct WorkerProcess {
    Master* master = nullptr;
    std::shared_ptr<Generation> generation;
    unsigned index = 0;     // within its generation
    size_t stats_slot = 0;  // its slot in the shared segment
    pid_t pid = 0;
    uint64_t started_ms = 0;
    uint64_t backoff_ms = 0;
    bool draining = false;  // an old generation's worker, told to drain
    bool retired = false;   // exited for good; erased once its timer closed
    uv_timer_t respawn_timer;
    std::unique_ptr<ControlChannel> channel;  // to the running process
    std::list<WorkerProcess>::iterator self;
  };

  void start_generation(const std::shared_ptr<Generation>& gen);
  void spawn(WorkerProcess& w);
  [[noreturn]] void become_worker(WorkerProcess& w, int control_fd);
  // Closes a worker's control channel (kept until its close callback ran).
  void drop_channel(WorkerProcess& w);
  void retire(WorkerProcess& w);
  void on_child_exit();
  void on_terminate(bool graceful);
  void on_reload();
  // Binary upgrade, old side: SIGUSR2 execs the new binary with the
  // listening sockets inherited; SIGWINCH (sent by the new master once its
  // workers are ready) drains this master's workers and exits.
  void on_upgrade();
  void on_handover();
  // Binary upgrade, new side: takes the sockets named in TORII_INHERIT.
  void adopt_inherited_sockets();
  void check_upgrade_ready();
  void check_new_generation();
  void abandon_new_generation(const std::string& why);
  void signal_workers(int sig);
  size_t live_workers() const;
  size_t ready_workers(const Generation& gen) const;
  size_t free_stats_slot() const;
  void finish();
  void setup_metrics();
  std::optional<AdminResponse> handle_admin(const AdminRequest& request,
                                            AdminServer::Responder respond);
  // GET /upstreams: each server's state as the workers see it (JSON).
  std::string upstreams_status() const;
  std::optional<AdminResponse> handle_purge(const AdminRequest& request,
                                            AdminServer::Responder respond);
  // Zeroes the gauges of a slot whose worker died (its connections are gone).
  void reset_slot_gauges(size_t slot);
  ListenSocketSet* socket_set(const conf::HostPort& address, size_t occurrence);
  // Opens sockets for listeners the config adds, and more sockets per
  // listener when it asks for more workers. Throws std::runtime_error.
  void ensure_sockets(const conf::Config& config);
  // Closes the master's copies of sockets whose listener the current config dropped.
  void close_dropped_listeners();

  std::string config_path_;
  std::shared_ptr<Generation> current_;
  std::shared_ptr<Generation> pending_;  // a reload's generation, not yet ready
  uint64_t generation_counter_ = 0;
  uv_loop_t loop_;
  std::vector<ListenSocketSet> sockets_;  // one set per listener address ever configured
  metrics::StatsRegistry stats_registry_;
  std::unique_ptr<metrics::StatsSegment> stats_segment_;
  std::unique_ptr<metrics::MasterMetrics> master_metrics_;
  std::unique_ptr<metrics::SegmentCollector> collector_;
  std::unique_ptr<AdminServer> admin_;
  std::list<WorkerProcess> workers_;
  std::list<std::unique_ptr<ControlChannel>> closing_channels_;
  std::unique_ptr<PurgeCoordinator> purger_;
  std::unique_ptr<PrewarmRelay> prewarm_relay_;
  // Session-ticket keys, shared by every worker through the fork: a TLS
  // session resumes on any worker. A reload adds a new key (the previous
  // one still decrypts).
  std::shared_ptr<TicketKeys> ticket_keys_;
  // Rate-limit buckets shared by every worker of every generation (mapped
  // before the first fork, so limits hold across reloads).
  std::unique_ptr<SharedRateLimitMemory> rate_limit_memory_;
  std::optional<RateLimitTable> rate_limit_table_;
  uv_timer_t ticket_timer_;  // rotates ticket_keys_ (and the workers' copies)
  void schedule_ticket_rotation();
  void rotate_ticket_key();
  uv_signal_t sigchld_, sigterm_, sigint_, sigquit_, sighup_, sigusr1_, sigusr2_, sigwinch_;
  std::string executable_;
  std::vector<std::string> args_;
  pid_t upgrade_child_ = 0;  // a new master started by SIGUSR2, until it takes over
  pid_t upgrade_from_ = 0;   // the master we replace (binary upgrade), until it retires
  int inherited_admin_fd_ = -1;
  uv_timer_t upgrade_timer_;  // polls our first generation's readiness for the handover
  uv_timer_t kill_timer_;
  uv_timer_t reload_timer_;  // polls a new generation's readiness
  uint64_t reload_started_ms_ = 0;
  bool reload_again_ = false;  // SIGHUP while a reload was in progress
  bool stopping_ = false;
  int terminate_count_ = 0;
};

}  // namespace torii::gateway
