#include "upstream/upstream_pool.hpp"

#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"

namespace torii::upstream {

namespace {

// An IP address literal as a socket address; false for a host name.
bool parse_ip(const conf::HostPort& hp, sockaddr_storage& ss) {
  return uv_ip4_addr(hp.host.c_str(), hp.port, reinterpret_cast<sockaddr_in*>(&ss)) == 0 ||
         uv_ip6_addr(hp.host.c_str(), hp.port, reinterpret_cast<sockaddr_in6*>(&ss)) == 0;
}

std::string address_text(const sockaddr_storage& ss) {
  char text[64] = {};
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&ss), text, sizeof text);
  } else {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&ss), text, sizeof text);
  }
  return text;
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

ServerPool::ServerPool(IoContext& io, UpstreamGroup& group, const conf::HostPort& server,
                       const PoolSettings& settings, metrics::StatsWriter& stats,
                       const metrics::ServerCells& cells, const UpstreamTlsContext* tls,
                       std::string tls_name)
    : io_(io),
      group_(group),
      server_(server),
      authority_(server.str()),
      settings_(settings),
      stats_(stats),
      cells_(cells),
      tls_(tls),
      tls_name_(std::move(tls_name)) {
  stats_.gauge_add(cells_.up_gauge, 1);  // usable until health checks say otherwise
  resolved_ = parse_ip(server, addr_);
  by_name_ = !resolved_;
  dns_req_.data = this;
  resolve();
}

void ServerPool::resolve() {
  if (!by_name_ || resolving_) return;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = uv_getaddrinfo(
      io_.loop, &dns_req_,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        static_cast<ServerPool*>(req->data)->on_resolved(status, res);
      },
      server_.host.c_str(), nullptr, &hints);
  resolving_ = rc == 0;
  if (rc != 0) {
    LogLine(LogLevel::kWarn, "upstream name lookup failed")
        .kv("server", authority_)
        .kv("error", uv_strerror(rc));
  }
}

void ServerPool::cancel_resolve() {
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&dns_req_));
}

void ServerPool::on_resolved(int status, addrinfo* res) {
  resolving_ = false;
  if (status == UV_ECANCELED) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status != 0 || res == nullptr) {
    // The last good address stays in use: a DNS hiccup must not take a
    // working server away.
    LogLine(resolved_ ? LogLevel::kWarn : LogLevel::kError, "upstream name lookup failed")
        .kv("server", authority_)
        .kv("error", uv_strerror(status))
        .kv("keeping", resolved_ ? address_text(addr_) : std::string("nothing: unusable"));
    uv_freeaddrinfo(res);
    return;
  }
  sockaddr_storage fresh{};
  std::memcpy(&fresh, res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
  if (fresh.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&fresh)->sin_port = htons(server_.port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&fresh)->sin6_port = htons(server_.port);
  }
  const std::string now = address_text(fresh);
  if (!resolved_ || address_text(addr_) != now) {
    LogLine(LogLevel::kInfo, "upstream address").kv("server", authority_).kv("address", now);
  } else {
    LogLine(LogLevel::kDebug, "upstream name looked up")
        .kv("server", authority_)
        .kv("address", now);
  }
  addr_ = fresh;
  const bool first = !resolved_;
  resolved_ = true;
  if (first) group_.on_slot_freed(*this);  // requests may be waiting for it
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

void ServerPool::count(metrics::Outcome o) {
  stats_.add(cells_.outcome[static_cast<size_t>(o)]);
  group_.record_outcome(*this, o, 0);
}

void ServerPool::count_response(int status) {
  stats_.add(cells_.outcome[static_cast<size_t>(metrics::Outcome::kResponse)]);
  group_.record_outcome(*this, metrics::Outcome::kResponse, status);
}

void ServerPool::set_up(bool up) {
  if (up == up_) return;
  up_ = up;
  stats_.gauge_add(cells_.up_gauge, up ? 1 : -1);
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

namespace {

BalancePolicy policy_of(const conf::Balance& b) {
  switch (b.policy) {
    case conf::BalancePolicy::kLeastRequest:
      return BalancePolicy::kLeastRequest;
    case conf::BalancePolicy::kHash:
      return BalancePolicy::kConsistentHash;
    case conf::BalancePolicy::kRoundRobin:
      break;
  }
  return BalancePolicy::kRoundRobin;
}

Balancer make_balancer(const conf::Upstream& config) {
  std::vector<std::string> ids;
  std::vector<BalancerServer> servers;
  ids.reserve(config.servers.size());
  for (const conf::HostPort& hp : config.servers) ids.push_back(hp.str());
  for (size_t i = 0; i < ids.size(); ++i) {
    servers.push_back({ids[i], i < config.weights.size() ? config.weights[i] : 1});
  }
  BalancerOptions options;
  options.rng_seed = uv_hrtime() ^ (static_cast<uint64_t>(getpid()) << 32);
  return Balancer(policy_of(config.balance), servers, options);  // ids are not kept
}

HealthSettings health_settings_of(const conf::Upstream& config) {
  HealthSettings h;
  if (config.outlier_detection) {
    const conf::OutlierDetection& o = *config.outlier_detection;
    h.outlier.consecutive_5xx = o.consecutive_5xx;
    h.outlier.consecutive_connect_failures = o.consecutive_connect_failures;
    h.outlier.base_ejection_ms = static_cast<uint64_t>(o.base_ejection.count());
    h.outlier.max_ejection_ms = static_cast<uint64_t>(o.max_ejection.count());
    h.outlier.max_ejection_percent = o.max_ejected_percent;
  } else {
    h.outlier.consecutive_5xx = 0;  // never ejects
    h.outlier.consecutive_connect_failures = 0;
  }
  if (config.health_check) {
    const conf::HealthCheck& c = *config.health_check;
    h.active.healthy_threshold = c.healthy_threshold;
    h.active.unhealthy_threshold = c.unhealthy_threshold;
    std::string error;
    if (auto ranges = StatusRanges::parse(c.expected_statuses, error)) {
      h.active.expected_statuses = *ranges;
    }
  }
  return h;
}

}  // namespace

UpstreamGroup::UpstreamGroup(IoContext& io, const conf::Upstream& config,
                             metrics::StatsWriter& stats, const metrics::UpstreamCells& cells,
                             std::shared_ptr<const UpstreamTlsContext> tls)
    : name_(config.name),
      settings_(settings_from(config)),
      stats_(stats),
      cells_(cells),
      tls_(std::move(tls)),
      max_requests_(config.max_requests),
      balance_(config.balance),
      balancer_(make_balancer(config)),
      health_(config.servers.size(), health_settings_of(config)),
      usable_(config.servers.size()),
      health_check_(config.health_check),
      resolve_interval_ms_(static_cast<uint64_t>(config.resolve_interval.count())),
      server_in_flight_(config.servers.size(), 0) {
  for (size_t i = 0; i < config.servers.size(); ++i) {
    const conf::HostPort& hp = config.servers[i];
    servers_.push_back(
        std::make_unique<ServerPool>(io, *this, hp, settings_, stats, cells_.servers.at(i),
                                     tls_.get(), tls_ ? tls_->name_for(hp.host) : std::string()));
    servers_.back()->set_index(i);
  }
}

uint64_t UpstreamGroup::request_key(const http::MessageHead& request,
                                    std::string_view client_ip) const {
  if (balance_.policy != conf::BalancePolicy::kHash) return 0;
  switch (balance_.hash_key) {
    case conf::HashKey::kHeader: {
      const std::string_view v = request.get(balance_.hash_name);
      if (!v.empty()) return hash_key(v);
      break;
    }
    case conf::HashKey::kCookie:
      if (auto v = find_cookie(request.get("cookie"), balance_.hash_name)) return hash_key(*v);
      break;
    case conf::HashKey::kClientIp:
      break;
  }
  // No key in the request: the client's address keeps it on one server.
  return hash_key(client_ip);
}

bool UpstreamGroup::fill_usable(uint64_t now_ms, bool need_open, const ServerPool* avoid) {
  health_.fill_eligible(now_ms, usable_);
  bool any = false;
  for (size_t i = 0; i < servers_.size(); ++i) {
    ServerPool& pool = *servers_[i];
    const bool eligible = usable_.test(i);
    pool.set_up(eligible);
    const bool room = need_open ? pool.can_open() : (pool.idle_count() > 0 || pool.can_open());
    const bool usable = eligible && room && &pool != avoid;
    usable_.set(i, usable);
    any = any || usable;
  }
  if (any) return true;
  // Nothing healthy has room: every server with room is better than none
  // (Envoy's panic mode); `avoid` only if it is the only one.
  for (int pass = 0; pass < 2 && !any; ++pass) {
    for (size_t i = 0; i < servers_.size(); ++i) {
      ServerPool& pool = *servers_[i];
      const bool room = need_open ? pool.can_open() : (pool.idle_count() > 0 || pool.can_open());
      const bool usable = room && (pass == 1 || &pool != avoid);
      usable_.set(i, usable);
      any = any || usable;
    }
  }
  return any;
}

UpstreamGroup::Acquired UpstreamGroup::take_or_open(ServerPool& pool, ExchangeSink* sink,
                                                    bool fresh) {
  if (!fresh) {
    if (UpstreamConnection* c = pool.take_idle()) {
      c->attach(sink);
      return {Acquire::kReady, c};
    }
  }
  pool.open(sink);
  return {Acquire::kPending, nullptr};
}

UpstreamGroup::Acquired UpstreamGroup::acquire(ExchangeSink* sink, WaitTicket& ticket,
                                               uint64_t key_hash) {
  if (fill_usable(uv_now(servers_.front()->io_loop()), false, nullptr)) {
    if (balancer_.policy() == BalancePolicy::kLeastRequest) {
      for (size_t i = 0; i < servers_.size(); ++i) {
        server_in_flight_[i] =
            static_cast<uint32_t>(servers_[i]->connection_count() - servers_[i]->idle_count());
      }
    }
    if (auto pick = balancer_.pick(key_hash, usable_, server_in_flight_)) {
      return take_or_open(*servers_[*pick], sink, false);
    }
  }
  if (waiters_.size() >= settings_.max_pending) {
    stats_.add(cells_.rejected[metrics::kRejectMaxPending]);
    return {Acquire::kFull, nullptr};
  }
  ticket = waiters_.insert(waiters_.end(), sink);
  return {Acquire::kPending, nullptr};
}

UpstreamGroup::Acquired UpstreamGroup::acquire_fresh(ExchangeSink* sink, WaitTicket& ticket,
                                                     uint64_t key_hash, const ServerPool* avoid) {
  if (fill_usable(uv_now(servers_.front()->io_loop()), true, avoid)) {
    if (auto pick = balancer_.pick(key_hash, usable_, server_in_flight_)) {
      return take_or_open(*servers_[*pick], sink, true);
    }
  }
  return acquire(sink, ticket, key_hash);
}

void UpstreamGroup::record_outcome(ServerPool& pool, metrics::Outcome outcome, int status) {
  const uint64_t now = uv_now(pool.io_loop());
  std::optional<FailureKind> failure;
  switch (outcome) {
    case metrics::Outcome::kResponse:
      if (status >= 500) failure = FailureKind::k5xx;
      break;
    case metrics::Outcome::kConnectError:
    case metrics::Outcome::kConnectTimeout:
    case metrics::Outcome::kTlsError:
      failure = FailureKind::kConnectFailure;
      break;
    case metrics::Outcome::kResponseTimeout:
      failure = FailureKind::kTimeout;
      break;
    case metrics::Outcome::kReset:
    case metrics::Outcome::kBadResponse:
      failure = FailureKind::k5xx;  // the client got a 502 for it
      break;
    case metrics::Outcome::kCount:
      break;
  }
  if (!failure) {
    health_.record_success(pool.index(), now);
    return;
  }
  if (health_.record_failure(pool.index(), *failure, now) == FailureOutcome::kEjected) {
    stats_.add(pool.cells().ejections);
    pool.set_up(false);
    LogLine(LogLevel::kWarn, "upstream server ejected")
        .kv("upstream", name_)
        .kv("server", pool.authority())
        .kv("for_ms", health_.server(pool.index()).outlier.ejected_until_ms() - now);
  }
}

void UpstreamGroup::start_background(uv_loop_t* loop, uint64_t seed) {
  if (health_check_ && !checker_) {
    checker_ = std::make_unique<HealthChecker>(loop, *this, *health_check_, seed);
  }
  const bool any_name =
      std::any_of(servers_.begin(), servers_.end(), [](const auto& s) { return s->by_name(); });
  if (any_name && !resolve_timer_running_) {
    resolve_timer_running_ = true;
    resolve_timer_.init(loop, this, [](void* self) {
      auto* group = static_cast<UpstreamGroup*>(self);
      for (auto& s : group->servers_) s->resolve();
      group->resolve_timer_.arm(group->resolve_interval_ms_);
    });
    resolve_timer_.arm(resolve_interval_ms_);
  }
}

void UpstreamGroup::stop_background() {
  if (checker_) checker_->close();
  for (auto& s : servers_) s->cancel_resolve();
  if (resolve_timer_running_) {
    resolve_timer_running_ = false;
    resolve_timer_.close(nullptr);
  }
}

void UpstreamGroup::record_check(size_t server, bool passed) {
  ServerPool& pool = *servers_[server];
  stats_.add(pool.cells().health_checks[passed ? 0 : 1]);
  if (health_.record_check(server, passed)) {
    LogLine(passed ? LogLevel::kInfo : LogLevel::kWarn,
            passed ? "upstream server healthy" : "upstream server unhealthy")
        .kv("upstream", name_)
        .kv("server", pool.authority());
  }
  pool.set_up(health_.eligible(server, uv_now(pool.io_loop())));
}

bool UpstreamGroup::admit() {
  if (max_requests_ != 0 && in_flight_ >= max_requests_) {
    stats_.add(cells_.rejected[metrics::kRejectMaxRequests]);
    return false;
  }
  ++in_flight_;
  const uint64_t now_s = uv_now(servers_.front()->io_loop()) / 1000;
  roll_budget(now_s);
  ++budget_requests_[now_s % kBudgetSeconds];
  return true;
}

void UpstreamGroup::roll_budget(uint64_t now_s) {
  if (budget_second_ == now_s) return;
  // Clear the seconds that passed since the last count (all of them after 10 s).
  const uint64_t gap = now_s > budget_second_ ? now_s - budget_second_ : kBudgetSeconds;
  for (uint64_t s = 1; s <= std::min<uint64_t>(gap, kBudgetSeconds); ++s) {
    budget_requests_[(budget_second_ + s) % kBudgetSeconds] = 0;
    budget_retries_[(budget_second_ + s) % kBudgetSeconds] = 0;
  }
  budget_second_ = now_s;
}

bool UpstreamGroup::try_spend_retry(uint32_t percent, uint32_t min_per_second) {
  const uint64_t now_s = uv_now(servers_.front()->io_loop()) / 1000;
  roll_budget(now_s);
  uint64_t requests = 0;
  uint64_t retries = 0;
  for (size_t i = 0; i < kBudgetSeconds; ++i) {
    requests += budget_requests_[i];
    retries += budget_retries_[i];
  }
  const uint64_t allowed = requests * percent / 100 + uint64_t{min_per_second} * kBudgetSeconds;
  if (retries >= allowed) return false;
  ++budget_retries_[now_s % kBudgetSeconds];
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
