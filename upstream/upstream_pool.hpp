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
  ServerPool(IoContext& io, UpstreamGroup& group, const sockaddr_storage& addr,
             std::string authority, const PoolSettings& settings, metrics::StatsWriter& stats,
             const metrics::ServerCells& cells, const UpstreamTlsContext* tls = nullptr,
             std::string tls_name = {});
  ServerPool(const ServerPool&) = delete;
  ServerPool& operator=(const ServerPool&) = delete;

  UpstreamConnection* take_idle();
  bool can_open() const { return conns_.size() < settings_.max_connections; }
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
  void count(metrics::Outcome o) { stats_.add(cells_.outcome[static_cast<size_t>(o)]); }
  size_t connection_count() const { return conns_.size(); }
  size_t idle_count() const { return idle_.size(); }

  // From UpstreamConnection:
  void release(UpstreamConnection& conn, bool reusable);  // response complete
  void remove_idle(UpstreamConnection& conn);             // idle one closing
  void on_closed(UpstreamConnection& conn);               // handles closed: destroy it

 private:
  IoContext& io_;
  UpstreamGroup& group_;
  sockaddr_storage addr_;
  std::string authority_;
  PoolSettings settings_;
  metrics::StatsWriter& stats_;
  metrics::ServerCells cells_;
  const UpstreamTlsContext* tls_;
  std::string tls_name_;
  UpstreamTlsSessionCache tls_sessions_;  // outlives conns_ (declared before it)
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
  uint32_t in_flight() const { return in_flight_; }
  // kReady: `conn` is attached to the sink now. kPending: on_upstream_ready
  // or on_upstream_error follows. kFull: too many waiters (503).
  Acquired acquire(ExchangeSink* sink, WaitTicket& ticket);
  // A retry after the keep-alive race: always a new connection.
  Acquired acquire_fresh(ExchangeSink* sink, WaitTicket& ticket);
  void cancel_wait(WaitTicket& ticket);
  void close_idle();
  size_t waiting() const { return waiters_.size(); }

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
  size_t next_server_ = 0;
  std::list<ExchangeSink*> waiters_;
  uint32_t max_requests_ = 0;  // 0: no cap
  uint32_t in_flight_ = 0;
};

}  // namespace torii::upstream
