// Torii configuration: the validated, typed form of the JSON config file.
// Pure code (no libuv): loading, validation and defaults live here so that
// the master can validate a file (torii -t, SIGHUP reload) without touching
// the running workers.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "conf/policies.hpp"

namespace torii::conf {

using Millis = std::chrono::milliseconds;

// "host:port" split into parts. Host is an IPv4/IPv6 literal or a name;
// IPv6 is written "[::1]:8080".
struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string str() const;  // "127.0.0.1:8080" / "[::1]:8080"
};

struct Limits {
  uint32_t max_request_line = 8 * 1024;   // URI bytes -> 414
  uint32_t max_header_bytes = 32 * 1024;  // request line + headers -> 431
  uint32_t max_header_count = 100;        // -> 431
  uint64_t max_body_bytes = 64ull << 20;  // -> 413
  uint32_t max_connections = 10000;       // per worker; over it new connections are closed
};

struct Timeouts {
  Millis header_read{10'000};     // first byte .. end of headers -> 408
  Millis body_read{30'000};       // max gap between body bytes -> 408
  Millis keepalive_idle{60'000};  // idle client keep-alive
  Millis send{60'000};            // client not reading our response
  Millis drain{30'000};           // graceful shutdown deadline
};

// One certificate (chain) and its private key, PEM files.
struct TlsCertificate {
  std::string cert_path;  // absolute, or resolved against the config file's folder
  std::string key_path;
  // Server names (SNI) it serves: exact ("api.example.com") or one leading
  // wildcard label ("*.example.com"). Empty: the DNS names of the
  // certificate's subjectAltName.
  std::vector<std::string> names;
};

struct ListenerTls {
  // The first certificate is the default (no SNI, or an unknown name).
  // Several may serve one name (an ECDSA and an RSA one): the client gets
  // the one it supports.
  std::vector<TlsCertificate> certificates;
  std::string min_version = "TLSv1.2";  // "TLSv1.2" | "TLSv1.3"
  // TLS 1.2 cipher list (OpenSSL syntax) and TLS 1.3 cipher suites.
  std::string ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
      "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  std::string ciphersuites =
      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
  Millis handshake_timeout{10'000};
  bool session_tickets = true;
  Millis ticket_key_rotation{
      3'600'000};  // a new ticket key this often (the previous still decrypts)
};

struct Listener {
  HostPort address;
  int backlog = 511;
  std::optional<ListenerTls> tls;  // absent: plain HTTP
};

struct Admin {
  HostPort address;
  // Bearer token for the mutating admin endpoints (purge, ...); read-only
  // endpoints (/metrics, /healthz, /readyz) need none. Empty: those
  // endpoints are disabled.
  std::string token;
};

enum class AccessLogFormat : uint8_t { kJson, kCombined };

struct AccessLog {
  // "off", "stdout", "stderr" or a file path (relative to the config file's folder).
  std::string path = "off";
  AccessLogFormat format = AccessLogFormat::kJson;
  uint64_t buffer_bytes = uint64_t{64} * 1024;  // a worker flushes when this much is buffered
  Millis flush_interval{200};                   // ... or this often
  bool enabled() const { return path != "off"; }
};

struct UpstreamPoolConfig {
  uint32_t max_connections = 256;  // per worker per server
  uint32_t max_idle = 64;          // idle keep-alive connections kept per worker per server
  Millis idle_timeout{60'000};     // lowered further by an upstream's Keep-Alive: timeout=N
  uint32_t max_pending = 1024;  // requests waiting for a connection, per worker per upstream -> 503
};

// An https upstream: TLS to every server of the group, verified by default.
struct UpstreamTls {
  bool verify = true;       // the chain against `ca_path` and the name below
  std::string ca_path;      // PEM CA bundle; empty: the system's trust store
  std::string server_name;  // SNI and the name checked; empty: each server's own host
  std::string cert_path;    // a client certificate (mutual TLS), with key_path
  std::string key_path;
  std::string min_version = "TLSv1.2";  // "TLSv1.2" | "TLSv1.3"
  bool session_reuse = true;            // resume the last session on a new connection
};

struct Upstream {
  std::string name;
  std::vector<HostPort> servers;
  std::vector<uint32_t> weights;  // one per server (default 1)
  Balance balance;
  std::optional<OutlierDetection> outlier_detection;  // absent: servers are never ejected
  std::optional<HealthCheck> health_check;            // absent: no active probes
  // Requests in flight to the upstream, per worker, before new ones get a
  // fast 503 with Retry-After (circuit breaking); 0: no cap.
  uint32_t max_requests = 0;
  // Host names among the servers are looked up again this often (off the
  // event loop); an IP address never is.
  Millis resolve_interval{30'000};
  std::optional<UpstreamTls> tls;  // absent: plain HTTP
  Millis connect_timeout{5'000};   // -> 504
  Millis response_timeout{
      60'000};  // request sent .. response headers, and between body reads -> 504
  UpstreamPoolConfig pool;
};

struct RouteMatch {
  std::string host = "*";  // "*", exact "api.example.com", or "*.example.com"
  std::string path_prefix = "/";
  std::vector<std::string> methods;  // empty = any; upper-case tokens
};

// How a route's cache key is built from a request (besides scheme and host).
enum class QueryKeyMode : uint8_t {
  kKeep,  // the query string exactly as sent (default)
  kSort,  // parameters sorted by name (then value), so ?b=1&a=2 == ?a=2&b=1
  kDrop,  // the query is not part of the key
};

struct CacheKeyConfig {
  QueryKeyMode query = QueryKeyMode::kKeep;
  // Parameters removed from the key before keep/sort (e.g. "utm_source").
  std::vector<std::string> ignore_params;
  // Request headers whose values are added to the key (lower-cased names).
  std::vector<std::string> headers;
};

// What a route does with a client's "Cache-Control: no-cache" (or max-age=0).
enum class ClientNoCache : uint8_t {
  kIgnore,      // served from the cache anyway (default, like nginx and Varnish)
  kRevalidate,  // forwarded to the origin; the answer refreshes the cache
};

struct RouteCache {
  bool enabled = true;
  // Freshness lifetime when the origin gives none (no max-age, s-maxage or Expires); >= 1s.
  Millis ttl{60'000};
  // Paths with optional query ("/v1/items?page=1"), fetched with the route's host.
  // Validated: each starts with match.path_prefix, at most 8 KiB, no repeats, at most 1000.
  std::vector<std::string> prewarm;
  uint64_t max_object_size = uint64_t{1} << 20;  // bodies larger than this are not stored
  CacheKeyConfig key;
  bool cache_set_cookie = false;  // store responses that carry Set-Cookie (the header is kept)
  ClientNoCache client_no_cache = ClientNoCache::kIgnore;
  // Defaults when the origin's Cache-Control does not say (0: none).
  Millis stale_while_revalidate{0};
  Millis stale_if_error{0};
  // Pre-warmed entries are refreshed when this fraction of their lifetime has passed
  // (plus up to 5% jitter); 0.5 to 0.95.
  double refresh_at = 0.8;
};

// Gateway-wide cache settings (the "cache" object at the top level).
struct CacheGlobal {
  // Memory for cached responses, for the whole gateway; each worker gets
  // memory / workers, which must be at least 1 MiB.
  uint64_t memory = uint64_t{256} << 20;
  // How long concurrent misses for one key wait for the first one's answer.
  Millis lock_timeout{5'000};
  // How long a new worker waits for its pre-warm fetches before taking traffic.
  Millis prewarm_timeout{10'000};
};

struct Route {
  std::string name;  // metric/log label; default "<host><path_prefix>"
  RouteMatch match;
  std::optional<RouteCache> cache;  // absent: the route does not cache
  // Requests that arrive over plain HTTP get a 308 to the same URL over
  // HTTPS (the first TLS listener's port; validated: one must exist).
  bool https_redirect = false;
  // Strict-Transport-Security value sent on this route's responses over
  // TLS (never over plain HTTP, RFC 6797 7.2); empty: none.
  std::string hsts;
  // Added to every response of the route (after the upstream's own headers).
  std::vector<std::pair<std::string, std::string>> response_headers;
  std::string upstream;              // key into Config::upstreams (validated)
  size_t upstream_index = 0;         // index into Config::upstreams, filled by validation
  std::optional<RetryPolicy> retry;  // absent: only the keep-alive race is retried
  RouteTimeouts timeouts;
  std::optional<RateLimit> rate_limit;
  std::optional<RouteAuth> auth;
};

struct Config {
  std::string source_path;  // file the config came from
  uint32_t workers = 1;     // "auto" resolves to the CPU count
  std::vector<Listener> listeners;
  std::optional<Admin> admin;
  std::vector<Upstream> upstreams;  // sorted by name
  std::vector<Route> routes;        // in file order
  Limits limits;
  Timeouts timeouts;
  AccessLog access_log;
  CacheGlobal cache;
  // Shared-memory request statistics (/metrics). Off only to measure their cost.
  bool stats_enabled = true;
  // Where the master writes its pid (for `torii -s SIGNAL`); empty: none.
  std::string pid_file;
  std::string log_level = "info";  // "debug" | "info" | "warn" | "error"
};

// A config error: names the file, the JSON path (RFC 6901 pointer, e.g.
// "/upstreams/app/servers/0") and what is wrong.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, std::string json_path, std::string problem);
  const std::string& file() const { return file_; }
  const std::string& json_path() const { return json_path_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string file_, json_path_, problem_;
};

// Parses and validates; throws ConfigError. `source_name` is used in errors.
Config parse_config(const std::string& json_text, const std::string& source_name);
// Reads the file then parse_config(); unreadable file -> ConfigError with path "".
Config load_config_file(const std::string& path);

// Helpers, exposed for unit tests and other modules.
std::optional<Millis> parse_duration(const std::string& s);  // "250ms" "30s" "5m" "1h"
std::optional<uint64_t> parse_size(const std::string& s);    // "512" "16KiB" "64MiB" "1GiB" "10KB"
std::optional<HostPort> parse_host_port(
    const std::string& s);  // "127.0.0.1:80" "[::1]:80" "localhost:80"
// Closest candidate by edit distance, if close enough to be a plausible typo.
std::optional<std::string> did_you_mean(const std::string& word,
                                        const std::vector<std::string>& candidates);

}  // namespace torii::conf
