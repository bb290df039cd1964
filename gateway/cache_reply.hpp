// Answers from the cache (pure): the owned start of a hit (status line and
// per-response fields), the head of a 304 built from a stored response, and
// the Cache-Status field (RFC 9211). The stored fields and body are sent as
// one borrowed span of the refcounted stored response (see ClientConnection).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/stored_response.hpp"

namespace torii::gateway {

struct HitHeadContext {
  std::string_view request_id;
  std::string_view cache_status;  // the value after "Cache-Status: "
  int64_t age_s = 0;
  bool close = false;              // Connection: close
  bool http10_keep_alive = false;  // Connection: keep-alive for an HTTP/1.0 client
  // The route's own response headers (kept in a 304 from the cache).
  const std::vector<std::pair<std::string, std::string>>* route_headers = nullptr;
  std::string_view extra_lines = {};  // more "Name: value\r\n" lines (HSTS)
};

// The owned start of a full answer: the stored status line, then the
// per-response fields: Content-Length (not for 1xx/204/304), Age,
// Cache-Status, X-Request-Id, Connection. The stored header lines, the
// blank line and the body follow as one borrowed span
// (StoredResponse::after_status_line).
void append_hit_start(const cache::StoredResponse& r, const HitHeadContext& ctx, std::string& out);

// A complete 304 head for a stored response (RFC 9110 15.4.5: the fields a
// 200 would carry among Cache-Control, Content-Location, Date, ETag,
// Expires, Last-Modified and Vary, plus Via and the route's own headers),
// ending with the blank line.
void append_not_modified_head(const cache::StoredResponse& r, const HitHeadContext& ctx,
                              std::string& out);

// "torii; hit; ttl=12" and friends, appended to `out` from its parts. `fwd`
// empty: a hit. `fwd_status` 0: none. `ttl_s`: written when `with_ttl`.
// `detail` empty: none.
void append_cache_status(std::string& out, std::string_view fwd, int fwd_status, bool with_ttl,
                         int64_t ttl_s, bool stored, bool collapsed, std::string_view detail);
// The same, as a new string.
std::string cache_status_value(std::string_view fwd, int fwd_status, bool with_ttl, int64_t ttl_s,
                               bool stored, bool collapsed, std::string_view detail);

}  // namespace torii::gateway
