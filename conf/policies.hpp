// Config types of the gateway policies on upstreams and routes: load
// balancing, passive outlier detection, active health checks, a request
// cap (circuit breaking), retries, per-route timeouts, rate limits and
// authentication. Read and validated by conf/config_policies.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace torii::conf {

using Millis = std::chrono::milliseconds;

// ---- upstreams

enum class BalancePolicy : uint8_t {
  kRoundRobin,    // smooth weighted round-robin (as nginx)
  kLeastRequest,  // power of two choices on in-flight requests per weight
  kHash,          // consistent hashing of a request key
};

enum class HashKey : uint8_t { kClientIp, kHeader, kCookie };

struct Balance {
  BalancePolicy policy = BalancePolicy::kRoundRobin;
  HashKey hash_key = HashKey::kClientIp;  // kHash only
  std::string hash_name;  // header (lower-case) or cookie name, for kHeader / kCookie
};

// Servers answering 5xx or refusing connections in a row are ejected for a
// while, the time doubling with each ejection up to `max_ejection`.
struct OutlierDetection {
  uint32_t consecutive_5xx = 5;               // 0: 5xx never ejects
  uint32_t consecutive_connect_failures = 3;  // 0: connect failures never eject
  Millis base_ejection{30'000};
  Millis max_ejection{300'000};
  uint32_t max_ejected_percent = 50;  // never eject more of the servers than this
};

// Each worker probes each server of the upstream with `GET path`.
struct HealthCheck {
  std::string path = "/healthz";
  std::string host;  // Host header of the probe; empty: the server's "host:port"
  Millis interval{5'000};
  Millis timeout{2'000};
  uint32_t healthy_threshold = 2;    // passes in a row to become healthy
  uint32_t unhealthy_threshold = 3;  // failures in a row to become unhealthy
  std::string expected_statuses = "200-399";
};

// ---- routes

// Which failures a route retries (only when it is safe: an idempotent
// method, or no byte of the request sent).
struct RetryPolicy {
  uint32_t attempts = 1;  // retries after the first try
  bool on_connect_failure = true;
  bool on_reset = true;       // the connection closed or reset before a response head
  std::vector<int> statuses;  // e.g. 502, 503, 504 (only 5xx allowed)
  Millis backoff{25};         // the first retry waits a random time up to this ...
  Millis max_backoff{250};    // ... doubling per retry, up to this
  // Retries may add at most this share of the route's requests (per worker,
  // over the last 10 s), plus `min_retries_per_second`, so an outage is not
  // amplified.
  uint32_t budget_percent = 20;
  uint32_t min_retries_per_second = 3;
};

// Per-route overrides of the upstream's timeouts, plus a whole-request one.
struct RouteTimeouts {
  std::optional<Millis> connect;
  std::optional<Millis> response_headers;  // request sent -> response head
  std::optional<Millis> idle;              // longest gap between body reads
  std::optional<Millis> request;           // the whole exchange, start to end (0: none)
};

enum class RateLimitKey : uint8_t { kClientIp, kHeader };

// A token bucket per key, shared by every worker: `requests` per `per`,
// bursts up to `burst`.
struct RateLimit {
  RateLimitKey key = RateLimitKey::kClientIp;
  std::string header;  // lower-case, for kHeader (requests without it share one bucket)
  uint32_t requests = 0;
  Millis per{1'000};
  uint32_t burst = 0;  // 0: `requests`
};

struct ApiKeyAuth {
  std::string header = "x-api-key";  // lower-case; empty when `query` is used
  std::string query;                 // query parameter name instead of a header
  std::vector<std::string> keys;     // "name:key" or "key"
  std::string file;                  // one key per line, re-read on reload
};

struct JwtAuth {
  std::string jwks_file;               // JWKS (RFC 7517), re-read on reload
  std::string secret_file;             // or an HS256 secret
  std::string issuer;                  // required `iss`, if set
  std::vector<std::string> audiences;  // one must be in `aud`, if set
  std::vector<std::string> algorithms = {"RS256", "ES256", "HS256"};
  Millis leeway{60'000};
  std::string forward_subject;  // request header that carries `sub` upstream; empty: none
};

struct RouteAuth {
  std::optional<ApiKeyAuth> api_key;
  std::optional<JwtAuth> jwt;  // either or both (both: either credential is enough)
  std::string realm = "torii";
};

}  // namespace torii::conf
