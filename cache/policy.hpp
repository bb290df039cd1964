// HTTP caching rules for a shared cache (RFC 9111), as pure functions: what
// may be stored and for how long, how old a stored response is, when a
// client's conditional request gets a 304, and how a request maps to a
// cache key. No I/O and no clock: callers pass the time in.
//
// Times: unix milliseconds (int64) inside Torii; HTTP fields carry seconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1_parser.hpp"
#include "conf/config.hpp"

namespace torii::cache {

// Cache-Control directives of one message (all its Cache-Control fields,
// combined). Unknown directives are ignored; a malformed delta-seconds
// value makes that directive count as absent, except max-age/s-maxage on a
// response, where it counts as 0 (RFC 9111 4.2.1: treat as stale).
struct CacheControl {
  bool present = false;  // at least one Cache-Control field
  bool no_store = false;
  bool no_cache = false;  // also set by "Pragma: no-cache" when no Cache-Control field is present
  bool is_private = false;
  bool is_public = false;
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  bool only_if_cached = false;
  std::optional<int64_t> max_age;  // seconds
  std::optional<int64_t> s_maxage;
  std::optional<int64_t> stale_while_revalidate;
  std::optional<int64_t> stale_if_error;
  std::optional<int64_t> min_fresh;
  std::optional<int64_t> max_stale;
};
CacheControl parse_cache_control(const http::HeaderList& headers);
// Which kind of message the fields belong to (decides how a malformed
// max-age counts, see above). The one-argument form reads them as a response.
enum class MessageKind : uint8_t { kRequest, kResponse };
CacheControl parse_cache_control(const http::HeaderList& headers, MessageKind kind);

// IMF-fixdate, RFC 850 and asctime forms (RFC 9110 5.6.7) -> unix seconds.
std::optional<int64_t> parse_http_date(std::string_view s);
// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), always 29 characters.
std::string format_http_date(int64_t unix_s);

// The route's settings that storing needs (from conf::RouteCache).
struct StorePolicy {
  int64_t default_ttl_ms = 60'000;  // when the origin gives no explicit freshness
  int64_t default_swr_ms = 0;
  int64_t default_sie_ms = 0;
  bool cache_set_cookie = false;
  uint64_t max_object_size = uint64_t{1} << 20;
};
StorePolicy store_policy(const conf::RouteCache& route);

// The verdict on one response to one request.
struct StoreDecision {
  bool storable = false;
  // Why not (for Cache-Status "detail" and debug logs): "method", "status",
  // "no-store", "private", "set-cookie", "vary-star", "authorization",
  // "too-large"; empty when storable.
  std::string_view reason;
  int64_t lifetime_ms = 0;  // freshness lifetime (RFC 9111 4.2.1)
  int64_t swr_ms = 0;       // stale-while-revalidate window after expiry
  int64_t sie_ms = 0;       // stale-if-error window after expiry
  // must-revalidate / proxy-revalidate / s-maxage: never served stale
  // (so swr/sie are 0 then).
  bool no_stale = false;
  // Response "no-cache" (without field names): stored, but validated with
  // the origin before each use.
  bool always_revalidate = false;
};
// Rules, in order:
//  - only GET requests' responses are stored (HEAD is answered from them);
//  - request "no-store" or response "no-store" -> not stored; response
//    "private" -> not stored (shared cache);
//  - request carries Authorization -> stored only if the response says
//    public, s-maxage or must-revalidate (RFC 9111 3.5);
//  - Set-Cookie -> stored only if policy.cache_set_cookie;
//  - "Vary: *" -> not stored;
//  - Content-Length above max_object_size -> "too-large";
//  - status: 200 203 204 300 301 308 404 405 410 414 501 are stored with
//    the route's default TTL when the origin gives no freshness; any other
//    status only with explicit freshness (max-age, s-maxage or Expires)
//    and never 1xx, 206 or 304;
//  - lifetime: s-maxage, else max-age, else Expires - Date (Date defaults
//    to the response time; an invalid Expires means already expired),
//    else the default TTL;
//  - swr/sie: the response's directives, else the policy defaults.
StoreDecision decide_store(const http::MessageHead& req, const http::MessageHead& resp,
                           const StorePolicy& policy, int64_t response_time_ms);

// The age a stored response had when it was received (RFC 9111 4.2.3):
// max(apparent_age, Age header + response_delay), in milliseconds.
int64_t initial_age_ms(const http::MessageHead& resp, int64_t request_time_ms,
                       int64_t response_time_ms);

// True when a client's conditional GET/HEAD is answered with 304 from a
// stored response with these validators (RFC 9110 13.2.2): If-None-Match
// (weak comparison, "*" matches, a list matches any) decides when present;
// else If-Modified-Since against Last-Modified (no Last-Modified: false).
bool not_modified(const http::MessageHead& req, std::string_view etag,
                  std::string_view last_modified);

// Response Vary field names, lower-cased and de-duplicated, in order. "*"
// is returned as a name (decide_store refuses it anyway).
std::vector<std::string> vary_names(const http::MessageHead& resp);
// The request's values for those names, normalised (every field of a name
// joined with ",", whitespace around commas removed), one per name,
// separated by '\n'. Two requests select the same variant iff equal.
std::string vary_values(const http::MessageHead& req, const std::vector<std::string>& names);

// The primary cache key: scheme, lower-cased host (port kept), path, query
// per key.query (ignore_params removed first; kSort sorts by name then
// value, stable), then each key.headers value. Parts are separated by a
// byte that cannot appear in them ('\n'), so different requests never
// collide by concatenation.
std::string make_cache_key(std::string_view scheme, std::string_view host, std::string_view target,
                           const conf::CacheKeyConfig& key, const http::MessageHead& req);
// The same, written into `out` (cleared first; its capacity is reused).
void make_cache_key(std::string& out, std::string_view scheme, std::string_view host,
                    std::string_view target, const conf::CacheKeyConfig& key,
                    const http::MessageHead& req);

// Client "Cache-Control: no-cache", "max-age=0" or "Pragma: no-cache".
bool client_wants_revalidation(const http::MessageHead& req);

}  // namespace torii::cache
