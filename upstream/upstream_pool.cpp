#include "upstream/upstream_pool.hpp"

#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"

namespace torii::upstream {

namespace {

// Server addresses are resolved once, when a worker starts and before it
// takes traffic; periodic asynchronous re-resolution is a later feature.
sockaddr_storage resolve(const conf::HostPort& hp) {
  sockaddr_storage ss{};
  if (uv_ip4_addr(hp.host.c_str(), hp.port, reinterpret_cast<sockaddr_in*>(&ss)) == 0) return ss;
  if (uv_ip6_addr(hp.host.c_str(), hp.port, reinterpret_cast<sockaddr_in6*>(&ss)) == 0) return ss;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(hp.host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    throw std::runtime_error("cannot resolve upstream server " + hp.str() + ": " +
                             gai_strerror(rc));
  }
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (ss.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(hp.port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(hp.port);
  }
  return ss;
}

PoolSettings settings_from(const conf::Upstream& u) {
  PoolSettings s;
  s.connect_timeout_ms = static_cast<uint64_t>(u.connect_timeout.count());
  s.response_timeout_ms = static_cast<uint64_t>(u.response_timeout.count());
  s.max_connections = u.pool.max_connections;
  s.max_idle = u.pool.max_idle;
  s.idle_timeout_ms = static_cast<uint64_t>(u.pool.idle_timeout.count());
  s.max_pending = u.pool.max_pending;
  return s;
}

}  // namespace

ServerPool::ServerPool(IoContext& io, UpstreamGroup& group, const sockaddr_storage& addr,
                       std::string authority, const PoolSettings& settings,
                       metrics::StatsWriter& stats, const metrics::ServerCells& cells,
                       const UpstreamTlsContext* tls, std::string tls_name)
    : io_(io),
      group_(group),
      addr_(addr),
      authority_(std::move(authority)),
      settings_(settings),
      stats_(stats),
      cells_(cells),
      tls_(tls),
      tls_name_(std::move(tls_name)) {
  stats_.gauge_add(cells_.up_gauge, 1);  // usable until health checks say otherwise
}

UpstreamConnection* ServerPool::take_idle() {
  if (idle_.empty()) return nullptr;
  UpstreamConnection* c = idle_.back();  // the warmest one
  idle_.pop_back();
  return c;
}

void ServerPool::open(ExchangeSink* sink) {
  conns_.emplace_back(*this, io_);
  UpstreamConnection& c = conns_.back();
  c.self_ = std::prev(conns_.end());
  c.connect(sink);
}

void ServerPool::release(UpstreamConnection& conn, bool reusable) {
  if (!reusable) return;  // it is closing; its slot frees in on_closed()
  if (group_.hand_to_waiter(conn)) return;
  if (idle_.size() >= settings_.max_idle) {
    conn.close();
    return;
  }
  idle_.push_back(&conn);
}

void ServerPool::remove_idle(UpstreamConnection& conn) {
  auto it = std::find(idle_.begin(), idle_.end(), &conn);
  if (it != idle_.end()) idle_.erase(it);
}

void ServerPool::on_closed(UpstreamConnection& conn) {
  conns_.erase(conn.self_);
  group_.on_slot_freed(*this);
}

void ServerPool::close_idle() {
  std::vector<UpstreamConnection*> idle;
  idle.swap(idle_);
  for (UpstreamConnection* c : idle) c->close();
}

UpstreamGroup::UpstreamGroup(IoContext& io, const conf::Upstream& config,
                             metrics::StatsWriter& stats, const metrics::UpstreamCells& cells,
                             std::shared_ptr<const UpstreamTlsContext> tls)
    : name_(config.name),
      settings_(settings_from(config)),
      stats_(stats),
      cells_(cells),
      tls_(std::move(tls)),
      max_requests_(config.max_requests) {
  for (size_t i = 0; i < config.servers.size(); ++i) {
    const conf::HostPort& hp = config.servers[i];
    servers_.push_back(std::make_unique<ServerPool>(
        io, *this, resolve(hp), hp.str(), settings_, stats, cells_.servers.at(i), tls_.get(),
        tls_ ? tls_->name_for(hp.host) : std::string()));
  }
}

UpstreamGroup::Acquired UpstreamGroup::acquire(ExchangeSink* sink, WaitTicket& ticket) {
  const size_t n = servers_.size();
  // Round-robin: this request's server is the next in turn; when it is at
  // its connection cap, the next one in turn that is not.
  const size_t first = next_server_++ % n;
  for (size_t i = 0; i < n; ++i) {
    ServerPool& pool = *servers_[(first + i) % n];
    if (UpstreamConnection* c = pool.take_idle()) {
      c->attach(sink);
      return {Acquire::kReady, c};
    }
    if (pool.can_open()) {
      pool.open(sink);
      return {Acquire::kPending, nullptr};
    }
  }
  if (waiters_.size() >= settings_.max_pending) {
    stats_.add(cells_.rejected[metrics::kRejectMaxPending]);
    return {Acquire::kFull, nullptr};
  }
  ticket = waiters_.insert(waiters_.end(), sink);
  return {Acquire::kPending, nullptr};
}

UpstreamGroup::Acquired UpstreamGroup::acquire_fresh(ExchangeSink* sink, WaitTicket& ticket) {
  const size_t n = servers_.size();
  const size_t first = next_server_++ % n;
  for (size_t i = 0; i < n; ++i) {
    ServerPool& pool = *servers_[(first + i) % n];
    if (pool.can_open()) {
      pool.open(sink);
      return {Acquire::kPending, nullptr};
    }
  }
  return acquire(sink, ticket);
}

bool UpstreamGroup::admit() {
  if (max_requests_ != 0 && in_flight_ >= max_requests_) {
    stats_.add(cells_.rejected[metrics::kRejectMaxRequests]);
    return false;
  }
  ++in_flight_;
  return true;
}

void UpstreamGroup::cancel_wait(WaitTicket& ticket) {
  if (!ticket) return;
  waiters_.erase(*ticket);
  ticket.reset();
}

bool UpstreamGroup::hand_to_waiter(UpstreamConnection& conn) {
  if (waiters_.empty()) return false;
  ExchangeSink* sink = waiters_.front();
  waiters_.pop_front();
  conn.attach(sink);
  sink->on_upstream_ready(conn);
  return true;
}

void UpstreamGroup::on_slot_freed(ServerPool& pool) {
  if (waiters_.empty() || !pool.can_open()) return;
  ExchangeSink* sink = waiters_.front();
  waiters_.pop_front();
  pool.open(sink);
}

void UpstreamGroup::close_idle() {
  for (auto& s : servers_) s->close_idle();
}

}  // namespace torii::upstream
