// Shared-memory statistics.
//
// The master maps one segment before forking: a header per slot plus an
// array of 64-bit cells per slot. Each worker owns one slot (its index) and
// updates its cells with plain relaxed loads and stores: one writer per
// cell, no locks, no syscalls. The master sums the slots when /metrics is
// scraped. Which cell holds which series is decided by the master's
// StatsRegistry before the fork and handed to the worker as a StatsLayout;
// cells are never reset, so a respawned worker continues its slot's
// counters and a scrape never sees a counter go down.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace torii::metrics {

enum class SeriesKind : uint8_t { kCounter, kGauge, kHistogram };

// Histogram bucket upper bounds, in microseconds (exported in seconds).
std::span<const uint64_t> latency_buckets_us();
// Cells a histogram takes: one per bucket, one for +Inf, one for the sum (µs).
size_t histogram_cells();

// Metric families kept in shared memory (master-only metrics live in the
// exporter). The order is the exposition order.
enum class Family : uint16_t {
  kRequests,              // counter   route, method, status
  kRequestDuration,       // histogram route, method, status
  kReceivedBytes,         // counter   (client bytes read)
  kSentBytes,             // counter   (client bytes written)
  kConnectionsAccepted,   // counter
  kConnectionsActive,     // gauge
  kUpstreamRequests,      // counter   upstream, server, outcome
  kUpstreamConnect,       // histogram upstream, server
  kUpstreamResponse,      // histogram upstream, server
  kUpstreamConnections,   // gauge     upstream, server, state
  kUpstreamRetries,       // counter   upstream
  kCacheRequests,         // counter   route, result
  kCacheStores,           // counter   route
  kCacheFetches,          // counter   route, kind, result (background fetches)
  kCacheEvictions,        // counter
  kCachePurged,           // counter
  kCacheEntries,          // gauge
  kCacheBytes,            // gauge
  kTlsHandshakes,         // counter   listener, version, result
  kUpstreamRejected,      // counter   upstream, reason (circuit breaking)
  kUpstreamServerUp,      // gauge     upstream, server (workers that may use it)
  kUpstreamEjections,     // counter   upstream, server (outlier detection)
  kUpstreamHealthChecks,  // counter   upstream, server, result
  kRateLimited,           // counter   route
  kAuthRejected,          // counter   route, reason
  kCount
};

struct FamilyInfo {
  const char* name;
  const char* help;
  SeriesKind kind;
  std::vector<const char*> labels;
};
const FamilyInfo& family_info(Family f);

// Values of the fixed label sets.
inline constexpr const char* kMethods[] = {"GET",    "HEAD",    "POST",  "PUT",
                                           "DELETE", "OPTIONS", "PATCH", "other"};
inline constexpr size_t kMethodCount = 8;
size_t method_index(std::string_view method);
inline constexpr const char* kStatusClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
inline constexpr size_t kStatusClassCount = 5;
size_t status_class_index(int status);  // 100..599 -> 0..4 (anything else -> 5xx)

// Upstream outcomes, one counter each.
enum class Outcome : uint8_t {
  kResponse,  // a response head arrived
  kConnectError,
  kConnectTimeout,
  kReset,  // closed or reset before a complete response
  kBadResponse,
  kResponseTimeout,
  kTlsError,  // the TLS handshake failed (certificate refused, protocol error)
  kCount
};
const char* outcome_name(Outcome o);
inline constexpr const char* kPoolStates[] = {"idle", "active"};

// How a request on a caching route was answered.
enum class CacheResult : uint8_t {
  kHit,          // fresh stored response (or a 304 from it)
  kStale,        // stale stored response (stale-while-revalidate / stale-if-error)
  kMiss,         // nothing stored: forwarded
  kExpired,      // stored but stale: fetched again in full
  kRevalidated,  // stored but stale: the origin confirmed it (304)
  kCollapsed,    // waited for another request's fetch of the key
  kBypass,       // not cacheable (method, client no-cache), forwarded
  kCount
};
const char* cache_result_name(CacheResult r);
// How a TLS connection's handshake ended.
enum class TlsResult : uint8_t { kFull, kResumed, kFailed, kTimeout, kPlainHttp, kCount };
const char* tls_result_name(TlsResult r);
// The protocol version label: the negotiated one, "none" without a handshake.
inline constexpr const char* kTlsVersions[] = {"TLSv1.2", "TLSv1.3", "none"};
inline constexpr size_t kTlsVersionCount = 3;
size_t tls_version_index(std::string_view version);  // unknown -> "none"

// Background fetch kinds (pre-warm, refresh ahead of expiry, stale-while-revalidate).
inline constexpr const char* kCacheFetchKinds[] = {"prewarm", "refresh", "revalidate"};
inline constexpr size_t kCacheFetchKindCount = 3;

// The series space: (family, label values) -> first cell. Pure; lives in
// the master. New series get new cells; existing ones keep theirs.
class StatsRegistry {
 public:
  explicit StatsRegistry(size_t capacity_cells) : capacity_(capacity_cells) {}

  struct Series {
    Family family;
    std::vector<std::string> labels;
    uint32_t cell;
  };
  // Throws std::length_error when the segment is full.
  uint32_t cell(Family family, std::vector<std::string> labels);
  const std::vector<Series>& series() const { return series_; }
  size_t used_cells() const { return used_; }
  size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  size_t used_ = 0;
  std::vector<Series> series_;
  std::map<std::pair<Family, std::vector<std::string>>, uint32_t> index_;
};

// Why a request was refused before reaching an upstream (a fast 503).
inline constexpr const char* kRejectReasons[] = {"max_requests", "max_pending"};
inline constexpr size_t kRejectMaxRequests = 0;
inline constexpr size_t kRejectMaxPending = 1;
// Why a request failed authentication.
inline constexpr const char* kAuthReasons[] = {"missing", "invalid", "forbidden"};

// Cells of one upstream server.
struct ServerCells {
  uint32_t outcome[static_cast<size_t>(Outcome::kCount)];
  uint32_t connect_histogram;
  uint32_t response_histogram;
  uint32_t idle_gauge;
  uint32_t active_gauge;
  uint32_t up_gauge;  // 1 while this worker may send to the server (healthy, not ejected)
  uint32_t ejections;
  uint32_t health_checks[2];  // passed, failed
};

// Cells of one upstream.
struct UpstreamCells {
  std::vector<ServerCells> servers;  // config order
  uint32_t retries = 0;
  uint32_t rejected[2] = {0, 0};  // by kRejectReasons
};

// What a worker needs to update its slot: cell numbers, resolved before fork.
struct StatsLayout {
  // requests and durations: [route (routes.size() = no route)][method][status class]
  size_t route_count = 0;  // routes + 1
  std::vector<uint32_t> requests;
  std::vector<uint32_t> durations;
  uint32_t received_bytes = 0;
  uint32_t sent_bytes = 0;
  uint32_t connections_accepted = 0;
  uint32_t connections_active = 0;
  std::vector<UpstreamCells> upstreams;                // config order
  std::vector<uint32_t> rate_limited;                  // [route]
  std::vector<std::array<uint32_t, 3>> auth_rejected;  // [route][kAuthReasons]
  // Cache series, per route (routes without a cache get none: empty vectors).
  std::vector<std::vector<uint32_t>> cache_requests;  // [route][CacheResult]
  std::vector<uint32_t> cache_stores;                 // [route]
  // [route][kind * 2 + (0 ok, 1 error)]
  std::vector<std::vector<uint32_t>> cache_fetches;
  uint32_t cache_evictions = 0;
  uint32_t cache_purged = 0;
  uint32_t cache_entries = 0;
  uint32_t cache_bytes = 0;
  // [listener][version * TlsResult::kCount + result]; empty for plain listeners.
  std::vector<std::vector<uint32_t>> tls_handshakes;

  uint32_t request_cell(size_t route, size_t method, size_t status_class) const {
    return requests[(route * kMethodCount + method) * kStatusClassCount + status_class];
  }
  uint32_t duration_cell(size_t route, size_t method, size_t status_class) const {
    return durations[(route * kMethodCount + method) * kStatusClassCount + status_class];
  }
};

// Registers every series the config can produce and returns their cells.
StatsLayout build_layout(StatsRegistry& registry, const conf::Config& config);

// The header of a slot (one cache line).
struct alignas(64) SlotHeader {
  std::atomic<int32_t> pid{0};
  std::atomic<uint32_t> ready{0};  // the worker accepts traffic
  std::atomic<uint64_t> started_unix_ms{0};
  // uv_hrtime() / 1e6 (CLOCK_MONOTONIC, the same in every process), written
  // by the worker's loop every 250 ms: a stale one means a stuck worker.
  std::atomic<uint64_t> heartbeat_ms{0};
};

// The shared segment: `slots` slots of `cells_per_slot` cells each.
class StatsSegment {
 public:
  StatsSegment(size_t slots, size_t cells_per_slot);  // mmap; throws std::system_error
  StatsSegment(const StatsSegment&) = delete;
  StatsSegment& operator=(const StatsSegment&) = delete;
  ~StatsSegment();

  size_t slots() const { return slots_; }
  size_t cells_per_slot() const { return cells_; }
  SlotHeader& header(size_t slot);
  std::atomic<uint64_t>* cells(size_t slot);
  // Sum of one cell over every slot.
  uint64_t sum(uint32_t cell) const;

 private:
  size_t slot_bytes() const;
  size_t slots_;
  size_t cells_;
  void* base_ = nullptr;
  size_t bytes_ = 0;
};

// The worker's writer for its slot. Single writer per cell: a relaxed
// load and store is enough (and is a plain mov on x86-64, no lock prefix).
class StatsWriter {
 public:
  StatsWriter() = default;
  explicit StatsWriter(std::atomic<uint64_t>* cells) : cells_(cells) {}

  void add(uint32_t cell, uint64_t n = 1) {
    if (cells_ == nullptr) return;
    auto& c = cells_[cell];
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void gauge_add(uint32_t cell, int64_t delta) { add(cell, static_cast<uint64_t>(delta)); }
  void observe_us(uint32_t histogram, uint64_t value_us);

 private:
  std::atomic<uint64_t>* cells_ = nullptr;  // null: stats off (unit tests)
};

}  // namespace torii::metrics
