// Answers from the cache (pure): the per-response head lines of a hit, the
// head of a 304 built from a stored response, and the Cache-Status field
// (RFC 9211). The stored head and body themselves are sent as borrowed
// spans of the refcounted stored response (see ClientConnection).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cache/stored_response.hpp"

namespace torii::gateway {

struct HitHeadContext {
  std::string_view request_id;
  std::string_view cache_status;  // the value after "Cache-Status: "
  int64_t age_s = 0;
  bool close = false;              // Connection: close
  bool http10_keep_alive = false;  // Connection: keep-alive for an HTTP/1.0 client
};

// The lines after the stored head of a full answer: Content-Length (not for
// 1xx/204/304), Age, Cache-Status, X-Request-Id, Connection, and the blank line.
void append_hit_tail(const cache::StoredResponse& r, const HitHeadContext& ctx, std::string& out);

// A complete 304 head for a stored response (RFC 9110 15.4.5: the fields a
// 200 would carry among Cache-Control, Content-Location, Date, ETag,
// Expires, Last-Modified and Vary, plus the route's own and Via), ending
// with the blank line.
void append_not_modified_head(const cache::StoredResponse& r, const HitHeadContext& ctx,
                              std::string& out);

// "torii; hit; ttl=12" and friends, from its parts. `fwd` empty: a hit.
// `fwd_status` 0: none. `ttl_s`: written when `with_ttl`. `detail` empty: none.
std::string cache_status_value(std::string_view fwd, int fwd_status, bool with_ttl, int64_t ttl_s,
                               bool stored, bool collapsed, std::string_view detail);

}  // namespace torii::gateway
