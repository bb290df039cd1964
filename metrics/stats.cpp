#include "metrics/stats.hpp"

#include <sys/mman.h>

#include <array>
#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace torii::metrics {

namespace {

constexpr std::array<uint64_t, 15> kLatencyBucketsUs = {
    250,     500,     1'000,   2'500,     5'000,     10'000,    25'000,    50'000,
    100'000, 250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000};

const std::array<FamilyInfo, static_cast<size_t>(Family::kCount)>& families() {
  static const std::array<FamilyInfo, static_cast<size_t>(Family::kCount)> kFamilies = {{
      {"torii_requests_total",
       "Requests answered, by route, method and status class.",
       SeriesKind::kCounter,
       {"route", "method", "status"}},
      {"torii_request_duration_seconds",
       "Time from a request's first byte to its response fully queued to the client.",
       SeriesKind::kHistogram,
       {"route", "method", "status"}},
      {"torii_client_received_bytes_total",
       "Bytes read from client connections.",
       SeriesKind::kCounter,
       {}},
      {"torii_client_sent_bytes_total",
       "Bytes written to client connections.",
       SeriesKind::kCounter,
       {}},
      {"torii_connections_accepted_total",
       "Client connections accepted.",
       SeriesKind::kCounter,
       {}},
      {"torii_connections_active", "Client connections open now.", SeriesKind::kGauge, {}},
      {"torii_upstream_requests_total",
       "Requests sent to upstream servers, by outcome (response, connect_error, connect_timeout, "
       "reset, bad_response, response_timeout, tls_error).",
       SeriesKind::kCounter,
       {"upstream", "server", "outcome"}},
      {"torii_upstream_connect_duration_seconds",
       "Time to establish a connection to an upstream server.",
       SeriesKind::kHistogram,
       {"upstream", "server"}},
      {"torii_upstream_response_duration_seconds",
       "Time from sending a request upstream to the end of its response.",
       SeriesKind::kHistogram,
       {"upstream", "server"}},
      {"torii_upstream_connections",
       "Pooled upstream connections, by state.",
       SeriesKind::kGauge,
       {"upstream", "server", "state"}},
      {"torii_upstream_retries_total",
       "Requests sent again after a failed try: the keep-alive race, and route retry policies.",
       SeriesKind::kCounter,
       {"upstream"}},
      {"torii_cache_requests_total",
       "Requests on caching routes, by how they were answered (hit, stale, miss, expired, "
       "revalidated, collapsed, bypass).",
       SeriesKind::kCounter,
       {"route", "result"}},
      {"torii_cache_stores_total",
       "Responses stored in the cache.",
       SeriesKind::kCounter,
       {"route"}},
      {"torii_cache_fetches_total",
       "Background cache fetches (prewarm, refresh ahead of expiry, stale-while-revalidate), "
       "by result.",
       SeriesKind::kCounter,
       {"route", "kind", "result"}},
      {"torii_cache_evictions_total",
       "Stored responses evicted to stay under the memory budget.",
       SeriesKind::kCounter,
       {}},
      {"torii_cache_purged_total",
       "Stored responses removed by purge requests.",
       SeriesKind::kCounter,
       {}},
      {"torii_cache_entries", "Stored responses, all workers.", SeriesKind::kGauge, {}},
      {"torii_cache_bytes",
       "Memory held by stored responses (payload and bookkeeping), all workers.",
       SeriesKind::kGauge,
       {}},
      {"torii_tls_handshakes_total",
       "TLS handshakes on client connections, by how they ended (full, resumed, failed, timeout, "
       "plain_http: plain HTTP sent to the TLS port).",
       SeriesKind::kCounter,
       {"listener", "version", "result"}},
      {"torii_upstream_rejected_total",
       "Requests answered 503 at once because the upstream was at a limit (max_requests: "
       "requests in flight; max_pending: requests waiting for a connection).",
       SeriesKind::kCounter,
       {"upstream", "reason"}},
      {"torii_upstream_server_up",
       "Workers that may send requests to the server now (healthy and not ejected); "
       "equal to the worker count when all is well.",
       SeriesKind::kGauge,
       {"upstream", "server"}},
      {"torii_upstream_ejections_total",
       "Times outlier detection ejected the server (consecutive 5xx or connect failures).",
       SeriesKind::kCounter,
       {"upstream", "server"}},
      {"torii_upstream_health_checks_total",
       "Active health-check probes, by result (passed, failed).",
       SeriesKind::kCounter,
       {"upstream", "server", "result"}},
      {"torii_rate_limited_total",
       "Requests refused with 429 by the route's rate limit.",
       SeriesKind::kCounter,
       {"route"}},
      {"torii_auth_rejected_total",
       "Requests refused by the route's authentication (missing or invalid credentials: 401; "
       "forbidden: 403).",
       SeriesKind::kCounter,
       {"route", "reason"}},
  }};
  return kFamilies;
}

size_t cells_for(Family f) {
  return family_info(f).kind == SeriesKind::kHistogram ? histogram_cells() : 1;
}

}  // namespace

std::span<const uint64_t> latency_buckets_us() { return kLatencyBucketsUs; }
size_t histogram_cells() { return kLatencyBucketsUs.size() + 2; }

const FamilyInfo& family_info(Family f) { return families()[static_cast<size_t>(f)]; }

size_t method_index(std::string_view m) {
  for (size_t i = 0; i + 1 < kMethodCount; ++i) {
    if (m == kMethods[i]) return i;
  }
  return kMethodCount - 1;
}

size_t status_class_index(int status) {
  if (status < 100 || status > 599) return 4;
  return static_cast<size_t>(status / 100 - 1);
}

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kResponse:
      return "response";
    case Outcome::kConnectError:
      return "connect_error";
    case Outcome::kConnectTimeout:
      return "connect_timeout";
    case Outcome::kReset:
      return "reset";
    case Outcome::kBadResponse:
      return "bad_response";
    case Outcome::kResponseTimeout:
      return "response_timeout";
    case Outcome::kTlsError:
      return "tls_error";
    case Outcome::kCount:
      break;
  }
  return "unknown";
}

const char* tls_result_name(TlsResult r) {
  switch (r) {
    case TlsResult::kFull:
      return "full";
    case TlsResult::kResumed:
      return "resumed";
    case TlsResult::kFailed:
      return "failed";
    case TlsResult::kTimeout:
      return "timeout";
    case TlsResult::kPlainHttp:
      return "plain_http";
    case TlsResult::kCount:
      break;
  }
  return "unknown";
}

size_t tls_version_index(std::string_view version) {
  for (size_t i = 0; i + 1 < kTlsVersionCount; ++i) {
    if (version == kTlsVersions[i]) return i;
  }
  return kTlsVersionCount - 1;
}

const char* cache_result_name(CacheResult r) {
  switch (r) {
    case CacheResult::kHit:
      return "hit";
    case CacheResult::kStale:
      return "stale";
    case CacheResult::kMiss:
      return "miss";
    case CacheResult::kExpired:
      return "expired";
    case CacheResult::kRevalidated:
      return "revalidated";
    case CacheResult::kCollapsed:
      return "collapsed";
    case CacheResult::kBypass:
      return "bypass";
    case CacheResult::kCount:
      break;
  }
  return "unknown";
}

uint32_t StatsRegistry::cell(Family family, std::vector<std::string> labels) {
  auto key = std::make_pair(family, labels);
  if (auto it = index_.find(key); it != index_.end()) return it->second;
  const size_t n = cells_for(family);
  if (used_ + n > capacity_) throw std::length_error("statistics segment is full");
  const auto first = static_cast<uint32_t>(used_);
  used_ += n;
  index_.emplace(std::move(key), first);
  series_.push_back({family, std::move(labels), first});
  return first;
}

StatsLayout build_layout(StatsRegistry& reg, const conf::Config& config) {
  StatsLayout l;
  l.route_count = config.routes.size() + 1;
  for (size_t r = 0; r < l.route_count; ++r) {
    const std::string route = r < config.routes.size() ? config.routes[r].name : "";
    for (size_t m = 0; m < kMethodCount; ++m) {
      for (size_t s = 0; s < kStatusClassCount; ++s) {
        std::vector<std::string> labels = {route, kMethods[m], kStatusClasses[s]};
        l.requests.push_back(reg.cell(Family::kRequests, labels));
        l.durations.push_back(reg.cell(Family::kRequestDuration, std::move(labels)));
      }
    }
  }
  l.received_bytes = reg.cell(Family::kReceivedBytes, {});
  l.sent_bytes = reg.cell(Family::kSentBytes, {});
  l.connections_accepted = reg.cell(Family::kConnectionsAccepted, {});
  l.connections_active = reg.cell(Family::kConnectionsActive, {});
  for (const conf::Upstream& u : config.upstreams) {
    std::vector<ServerCells> servers;
    for (const conf::HostPort& hp : u.servers) {
      const std::string server = hp.str();
      ServerCells c{};
      for (size_t o = 0; o < static_cast<size_t>(Outcome::kCount); ++o) {
        c.outcome[o] = reg.cell(Family::kUpstreamRequests,
                                {u.name, server, outcome_name(static_cast<Outcome>(o))});
      }
      c.connect_histogram = reg.cell(Family::kUpstreamConnect, {u.name, server});
      c.response_histogram = reg.cell(Family::kUpstreamResponse, {u.name, server});
      c.idle_gauge = reg.cell(Family::kUpstreamConnections, {u.name, server, kPoolStates[0]});
      c.active_gauge = reg.cell(Family::kUpstreamConnections, {u.name, server, kPoolStates[1]});
      c.up_gauge = reg.cell(Family::kUpstreamServerUp, {u.name, server});
      c.ejections = reg.cell(Family::kUpstreamEjections, {u.name, server});
      c.health_checks[0] = reg.cell(Family::kUpstreamHealthChecks, {u.name, server, "passed"});
      c.health_checks[1] = reg.cell(Family::kUpstreamHealthChecks, {u.name, server, "failed"});
      servers.push_back(c);
    }
    UpstreamCells cells;
    cells.servers = std::move(servers);
    cells.retries = reg.cell(Family::kUpstreamRetries, {u.name});
    for (size_t r = 0; r < 2; ++r) {
      cells.rejected[r] = reg.cell(Family::kUpstreamRejected, {u.name, kRejectReasons[r]});
    }
    l.upstreams.push_back(std::move(cells));
  }
  for (const conf::Route& route : config.routes) {
    l.rate_limited.push_back(route.rate_limit ? reg.cell(Family::kRateLimited, {route.name}) : 0);
    std::array<uint32_t, 3> auth{};
    if (route.auth) {
      for (size_t r = 0; r < auth.size(); ++r) {
        auth[r] = reg.cell(Family::kAuthRejected, {route.name, kAuthReasons[r]});
      }
    }
    l.auth_rejected.push_back(auth);
  }
  bool any_cache = false;
  for (const conf::Route& route : config.routes) {
    std::vector<uint32_t> requests;
    std::vector<uint32_t> fetches;
    uint32_t stores = 0;
    if (route.cache && route.cache->enabled) {
      any_cache = true;
      for (size_t r = 0; r < static_cast<size_t>(CacheResult::kCount); ++r) {
        requests.push_back(reg.cell(Family::kCacheRequests,
                                    {route.name, cache_result_name(static_cast<CacheResult>(r))}));
      }
      stores = reg.cell(Family::kCacheStores, {route.name});
      for (const char* kind : kCacheFetchKinds) {
        fetches.push_back(reg.cell(Family::kCacheFetches, {route.name, kind, "ok"}));
        fetches.push_back(reg.cell(Family::kCacheFetches, {route.name, kind, "error"}));
      }
    }
    l.cache_requests.push_back(std::move(requests));
    l.cache_stores.push_back(stores);
    l.cache_fetches.push_back(std::move(fetches));
  }
  for (const conf::Listener& listener : config.listeners) {
    std::vector<uint32_t> cells;
    if (listener.tls) {
      for (const char* version : kTlsVersions) {
        for (size_t r = 0; r < static_cast<size_t>(TlsResult::kCount); ++r) {
          cells.push_back(reg.cell(
              Family::kTlsHandshakes,
              {listener.address.str(), version, tls_result_name(static_cast<TlsResult>(r))}));
        }
      }
    }
    l.tls_handshakes.push_back(std::move(cells));
  }
  if (any_cache) {
    l.cache_evictions = reg.cell(Family::kCacheEvictions, {});
    l.cache_purged = reg.cell(Family::kCachePurged, {});
    l.cache_entries = reg.cell(Family::kCacheEntries, {});
    l.cache_bytes = reg.cell(Family::kCacheBytes, {});
  }
  return l;
}

StatsSegment::StatsSegment(size_t slots, size_t cells_per_slot)
    : slots_(slots), cells_(cells_per_slot) {
  bytes_ = slots_ * slot_bytes();
  // Shared and anonymous: inherited by every fork, pages committed on first touch.
  base_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    throw std::system_error(errno, std::generic_category(), "mmap of the statistics segment");
  }
  for (size_t i = 0; i < slots_; ++i) new (&header(i)) SlotHeader();
}

StatsSegment::~StatsSegment() {
  if (base_ != nullptr) munmap(base_, bytes_);
}

size_t StatsSegment::slot_bytes() const {
  const size_t raw = sizeof(SlotHeader) + cells_ * sizeof(uint64_t);
  return (raw + 63) / 64 * 64;  // every slot starts on its own cache line
}

SlotHeader& StatsSegment::header(size_t slot) {
  return *reinterpret_cast<SlotHeader*>(static_cast<char*>(base_) + slot * slot_bytes());
}

std::atomic<uint64_t>* StatsSegment::cells(size_t slot) {
  return reinterpret_cast<std::atomic<uint64_t>*>(static_cast<char*>(base_) + slot * slot_bytes() +
                                                  sizeof(SlotHeader));
}

uint64_t StatsSegment::sum(uint32_t cell) const {
  uint64_t total = 0;
  auto* self = const_cast<StatsSegment*>(this);
  for (size_t s = 0; s < slots_; ++s) total += self->cells(s)[cell].load(std::memory_order_relaxed);
  return total;
}

void StatsWriter::observe_us(uint32_t histogram, uint64_t value_us) {
  if (cells_ == nullptr) return;
  const auto buckets = latency_buckets_us();
  size_t b = 0;
  while (b < buckets.size() && value_us > buckets[b]) ++b;
  add(histogram + static_cast<uint32_t>(b));                             // its bucket (or +Inf)
  add(histogram + static_cast<uint32_t>(buckets.size() + 1), value_us);  // the sum
}

}  // namespace torii::metrics
