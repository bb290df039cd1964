// Per-worker connection pools: one ServerPool per upstream server (idle
// keep-alive connections, a connection cap), grouped by UpstreamGroup
// (round-robin across servers, a bounded FIFO of requests waiting for a
// connection). Single-threaded; no locks.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/io_context.hpp"
#include "conf/config.hpp"
#include "metrics/stats.hpp"
#include "upstream/balancer.hpp"
#include "upstream/health_checker.hpp"
#include "upstream/server_health.hpp"
#include "upstream/upstream_connection.hpp"
#include "upstream/upstream_tls.hpp"

namespace torii::upstream {

class UpstreamGroup;

struct PoolSettings {
  uint64_t connect_timeout_ms = 5000;
  uint64_t response_timeout_ms = 60000;
  uint32_t max_connections = 256;
  uint32_t max_idle = 64;
  uint64_t idle_timeout_ms = 60000;
  uint32_t max_pending = 1024;
};

class ServerPool {
 public:
  // `tls` (null: plain HTTP) reaches the server as `tls_name` (SNI and the
  // name its certificate must carry).
  // A server given by IP address is usable at once; one given by name only
  // once resolve() has found an address.
  ServerPool(IoContext& io, UpstreamGroup& group, const conf::HostPort& server,
             const PoolSettings& settings, metrics::StatsWriter& stats,
             const metrics::ServerCells& cells, const UpstreamTlsContext* tls = nullptr,
             std::string tls_name = {});
  ServerPool(const ServerPool&) = delete;
  ServerPool& operator=(const ServerPool&) = delete;

  UpstreamConnection* take_idle();
  bool can_open() const { return resolved_ && conns_.size() < settings_.max_connections; }
  // Looks the server's name up on libuv's thread pool (never on the loop);
  // new connections use the answer. No-op for an IP address or while a
  // lookup is running.
  void resolve();
  void cancel_resolve();
  bool by_name() const { return by_name_; }
  // Opens a connection for `sink` (it is told when ready or failed).
  void open(ExchangeSink* sink);
  void close_idle();

  const sockaddr* address() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  const std::string& authority() const { return authority_; }
  const UpstreamTlsContext* tls() const { return tls_; }
  const std::string& tls_name() const { return tls_name_; }
  UpstreamTlsSessionCache& tls_sessions() { return tls_sessions_; }
  const PoolSettings& settings() const { return settings_; }
  metrics::StatsWriter& stats() { return stats_; }
  const metrics::ServerCells& cells() const { return cells_; }
  // An attempt's outcome: counted, and fed to outlier detection.
  void count(metrics::Outcome o);
  void count_response(int status);
  size_t index() const { return index_; }
  uv_loop_t* io_loop() const { return io_.loop; }
  void set_index(size_t index) { index_ = index; }
  // Keeps torii_upstream_server_up true for this worker.
  void set_up(bool up);
  size_t connection_count() const { return conns_.size(); }
  size_t idle_count() const { return idle_.size(); }

  // From UpstreamConnection:
  void release(UpstreamConnection& conn, bool reusable);  // response complete
  void remove_idle(UpstreamConnection& conn);             // idle one closing
  void on_closed(UpstreamConnection& conn);               // handles closed: destroy it

 private:
  IoContext& io_;
  UpstreamGroup& group_;
  sockaddr_storage addr_{};
  conf::HostPort server_;
  bool by_name_ = false;   // a host name, not an IP address
  bool resolved_ = false;  // addr_ holds an address
  bool resolving_ = false;
  uv_getaddrinfo_t dns_req_{};
  void on_resolved(int status, addrinfo* res);
  std::string authority_;
  PoolSettings settings_;
  metrics::StatsWriter& stats_;
  metrics::ServerCells cells_;
  const UpstreamTlsContext* tls_;
  std::string tls_name_;
  UpstreamTlsSessionCache tls_sessions_;  // outlives conns_ (declared before it)
  size_t index_ = 0;                      // in the group
  bool up_ = true;                        // counted in the up gauge
  std::list<UpstreamConnection> conns_;
  std::vector<UpstreamConnection*> idle_;  // most recently used last
};

class UpstreamGroup {
 public:
  // A place in the wait queue; cancel it if the client goes away.
  using WaitTicket = std::optional<std::list<ExchangeSink*>::iterator>;
  enum class Acquire : uint8_t { kReady, kPending, kFull };
  struct Acquired {
    Acquire result;
    UpstreamConnection* conn = nullptr;  // kReady only
  };

  // Resolves server names (at worker start-up, before traffic). `tls`:
  // the upstream's TLS context (null: plain HTTP).
  UpstreamGroup(IoContext& io, const conf::Upstream& config, metrics::StatsWriter& stats,
                const metrics::UpstreamCells& cells,
                std::shared_ptr<const UpstreamTlsContext> tls = nullptr);
  UpstreamGroup(const UpstreamGroup&) = delete;
  UpstreamGroup& operator=(const UpstreamGroup&) = delete;

  const std::string& name() const { return name_; }
  const PoolSettings& settings() const { return settings_; }
  void count_retry() { stats_.add(cells_.retries); }
  // Circuit breaking: a request may go to this upstream while fewer than
  // max_requests are in flight (false: counted, answer 503 at once). Every
  // admitted request calls finished() once.
  bool admit();
  void finished() { --in_flight_; }
  // Retry budget (per worker, over the last 10 s): a retry is allowed while
  // retries stay under `percent` of the requests plus `min_per_second`, so
  // retries cannot multiply the load on a failing upstream. Counts it when
  // allowed.
  bool try_spend_retry(uint32_t percent, uint32_t min_per_second);
  uint32_t in_flight() const { return in_flight_; }
  // kReady: `conn` is attached to the sink now. kPending: on_upstream_ready
  // or on_upstream_error follows. kFull: too many waiters (503).
  // `key_hash`: the request's balancing key (consistent hashing only).
  Acquired acquire(ExchangeSink* sink, WaitTicket& ticket, uint64_t key_hash = 0);
  // A retry: always a new connection, on another server than `avoid` when
  // another is usable.
  Acquired acquire_fresh(ExchangeSink* sink, WaitTicket& ticket, uint64_t key_hash = 0,
                         const ServerPool* avoid = nullptr);
  // The request's balancing key, from the upstream's "balance" setting.
  uint64_t request_key(const http::MessageHead& request, std::string_view client_ip) const;
  // Outlier detection (from ServerPool::count).
  void record_outcome(ServerPool& pool, metrics::Outcome outcome, int status);
  // Active health checks: a probe's result.
  void record_check(size_t server, bool passed);
  size_t server_count() const { return servers_.size(); }
  ServerPool& server(size_t i) { return *servers_[i]; }
  void cancel_wait(WaitTicket& ticket);
  void close_idle();
  size_t waiting() const { return waiters_.size(); }
  // Background work: active health checks (when the upstream has
  // "health_check") and looking server names up again every
  // resolve_interval. stop_background() closes its handles.
  void start_background(uv_loop_t* loop, uint64_t seed);
  void stop_background();

  // From ServerPool: an idle connection or a free slot appeared.
  bool hand_to_waiter(UpstreamConnection& idle_conn);
  void on_slot_freed(ServerPool& pool);

 private:
  std::string name_;
  PoolSettings settings_;
  metrics::StatsWriter& stats_;
  const metrics::UpstreamCells& cells_;            // the worker's layout outlives the group
  std::shared_ptr<const UpstreamTlsContext> tls_;  // before servers_: they point into it
  std::vector<std::unique_ptr<ServerPool>> servers_;
  std::list<ExchangeSink*> waiters_;
  uint32_t max_requests_ = 0;  // 0: no cap
  // Requests and retries per second over the last 10 s (ring by second).
  static constexpr size_t kBudgetSeconds = 10;
  uint32_t budget_requests_[kBudgetSeconds] = {};
  uint32_t budget_retries_[kBudgetSeconds] = {};
  uint64_t budget_second_ = 0;  // the second budget_*[second % 10] counts
  void roll_budget(uint64_t now_s);
  conf::Balance balance_;
  Balancer balancer_;
  HealthGroup health_;
  ServerMask usable_;  // scratch for acquire()
  std::optional<conf::HealthCheck> health_check_;
  std::unique_ptr<HealthChecker> checker_;  // after servers_: probes use the pools
  uint64_t resolve_interval_ms_ = 30'000;
  DeadlineTimer resolve_timer_;
  bool resolve_timer_running_ = false;
  std::vector<uint32_t> server_in_flight_;  // scratch for least_request
  // Marks the servers acquire() may use now; false when none is (then every
  // server with room is used: better than refusing all traffic).
  bool fill_usable(uint64_t now_ms, bool need_open, const ServerPool* avoid);
  Acquired take_or_open(ServerPool& pool, ExchangeSink* sink, bool fresh);
  uint32_t in_flight_ = 0;
};

}  // namespace torii::upstream
