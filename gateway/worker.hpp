// A worker process: one libuv loop, its own SO_REUSEPORT listening socket
// per listener (inherited from the master), its client connections and its
// upstream pools. Single-threaded: nothing here takes a lock.
#pragma once

#include <uv.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "common/io_context.hpp"
#include "conf/config.hpp"
#include "gateway/client_connection.hpp"
#include "gateway/config_resources.hpp"
#include "gateway/control_channel.hpp"
#include "gateway/log_writer.hpp"
#include "gateway/route_policies.hpp"
#include "gateway/router.hpp"
#include "gateway/tls_context.hpp"
#include "gateway/worker_cache.hpp"
#include "metrics/access_log.hpp"
#include "metrics/stats.hpp"
#include "upstream/upstream_pool.hpp"

namespace torii::gateway {

// What a worker gets from the master besides its config and sockets.
struct WorkerStats {
  metrics::SlotHeader* header = nullptr;  // its slot in the shared segment
  std::atomic<uint64_t>* cells = nullptr;
  metrics::StatsLayout layout;
};

class Worker {
 public:
  // Sockets this worker accepts on, each for one of config.listeners (a
  // worker takes several sockets of a listener when the worker count shrank
  // on reload: a socket is never closed while its listener stays).
  struct ListenFd {
    size_t listener;
    int fd;
    conf::HostPort bound;  // the socket's address, port 0 resolved (ListenSocketSet::bound)
  };
  // `control_fd`: this worker's end of the master's control channel (-1: none).
  Worker(const conf::Config& config, unsigned index, std::vector<ListenFd> listen_fds,
         WorkerStats stats, int control_fd = -1, ConfigResources resources = {});
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();

  // Runs the loop until the worker has drained or been stopped.
  int run();

  IoContext& io() { return io_; }
  const conf::Config& config() const { return config_; }
  const Router& router() const { return router_; }
  upstream::UpstreamGroup& group(size_t i) { return *groups_[i]; }
  metrics::StatsWriter& stats() { return stats_; }
  const metrics::StatsLayout& layout() const { return layout_; }
  metrics::AccessLog& access_log() { return access_log_; }
  WorkerCache& cache() { return *cache_; }
  // "Strict-Transport-Security: <route hsts>\r\n", or "" for a route without one.
  const std::string& hsts_line(size_t route) const { return hsts_lines_[route]; }
  // The port HTTPS redirects point to: the first TLS listener's.
  uint16_t https_port() const { return https_port_; }
  bool draining() const { return draining_; }
  // How long an idle keep-alive connection stays open once draining: a
  // shutdown closes them after a short grace; a reload keeps them until the
  // drain deadline, so a client's next request is answered (with
  // Connection: close) instead of racing our close.
  uint64_t idle_drain_grace_ms() const {
    return drain_for_reload_ ? static_cast<uint64_t>(config_.timeouts.drain.count()) : 1000;
  }
  // 32 hex digits of randomness (a fresh X-Request-Id).
  void next_request_id(char out[33]);
  // A pseudo-random number (retry jitter; not for secrets).
  uint64_t random();
  void on_connection_closed(ClientConnection& conn);

 private:
  struct Listener {
    uv_tcp_t tcp;
    Worker* worker;
    const TlsServerContext* tls;  // null: plain HTTP
    size_t index;                 // into config.listeners
  };
  void on_connection(uv_stream_t* server, int status);
  // After pre-warming: listen, report ready. False if a socket failed.
  bool start_serving();
  // "127.0.0.1:8080" of the first listening socket (Host for pre-warming wildcard routes).
  std::string first_listener_authority() const;
  // A connection owned by connections_, not yet accepted.
  ClientConnection& new_connection(const TlsServerContext* tls, size_t listener);
  void start_drain(bool for_reload);
  void maybe_finish();
  void close_all_handles();

  // Initialised first: every other member may create handles on it.
  struct Loop {
    Loop() { uv_loop_init(&loop); }
    uv_loop_t loop;
  };
  Loop loop_holder_;
  uv_loop_t& loop_ = loop_holder_.loop;
  IoContext io_;
  conf::Config config_;
  unsigned index_;
  std::vector<ListenFd> listen_fds_;
  Router router_;
  metrics::SlotHeader* slot_header_;
  metrics::StatsLayout layout_;
  metrics::StatsWriter stats_;
  std::vector<std::unique_ptr<upstream::UpstreamGroup>> groups_;
  std::unique_ptr<WorkerCache> cache_;
  ConfigResources resources_;  // the master's, inherited through fork
  std::unique_ptr<RoutePolicies> policies_;

 public:
  // The route's authenticator (null: the route has no "auth").
  const RoutePolicies& policies() const { return *policies_; }

 private:
  std::vector<std::string> hsts_lines_;  // per route
  uint16_t https_port_ = 443;
  int control_fd_;
  std::unique_ptr<ControlChannel> control_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::list<ClientConnection> connections_;
  uv_signal_t sigterm_, sigint_, sigquit_, sighup_, sigusr1_, sigusr2_;
  metrics::AccessLog access_log_;
  uv_timer_t drain_timer_;
  uv_timer_t heartbeat_timer_;
  LogWriter log_writer_;
  bool draining_ = false;
  bool drain_for_reload_ = false;
  bool finished_ = false;
  uint64_t rng_[2];
};

// Entry point in the forked child; never returns.
[[noreturn]] void run_worker_process(const conf::Config& config, unsigned index,
                                     std::vector<Worker::ListenFd> listen_fds, WorkerStats stats,
                                     int control_fd, ConfigResources resources);

}  // namespace torii::gateway
