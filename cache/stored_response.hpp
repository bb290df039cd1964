// One stored response: immutable once built, shared (refcounted) by the
// store and by every write in flight that sends it, so a hit never copies
// the body and an eviction never frees bytes a socket is still sending.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace torii::cache {

struct StoredResponse {
  // The status line, the header lines (each ending in CRLF, without the
  // per-response fields: Content-Length, Age, Cache-Status, Connection,
  // X-Request-Id), the blank line, then the body. A hit sends the status
  // line and the per-response fields as owned bytes and everything after
  // the status line as one borrowed span.
  std::string bytes;
  size_t status_line_size = 0;  // including its CRLF
  size_t head_size = 0;         // status line and header lines, without the blank line
  int status = 200;
  std::string key;     // primary key (see make_cache_key)
  std::string host;    // lower-cased request host, for purges
  std::string target;  // request target (path and query) as first requested, for purges
  std::vector<std::string> vary_names;
  std::string vary_values;
  std::string etag;           // validators, as sent by the origin
  std::string last_modified;  //
  // Freshness (RFC 9111 4.2), unix milliseconds.
  int64_t response_time_ms = 0;
  int64_t initial_age_ms = 0;
  int64_t lifetime_ms = 0;
  int64_t swr_ms = 0;
  int64_t sie_ms = 0;
  bool no_stale = false;           // must-revalidate / s-maxage
  bool always_revalidate = false;  // origin said no-cache

  // Lays out `bytes` from a head (status line and header lines) and a body.
  void assign(std::string_view head_lines, std::string_view body_bytes) {
    bytes.assign(head_lines);
    head_size = bytes.size();
    const size_t eol = bytes.find("\r\n");
    status_line_size = eol == std::string::npos ? head_size : eol + 2;
    bytes.append("\r\n");
    bytes.append(body_bytes);
  }
  std::string_view head() const { return std::string_view(bytes).substr(0, head_size); }
  std::string_view status_line() const {
    return std::string_view(bytes).substr(0, status_line_size);
  }
  std::string_view body() const { return std::string_view(bytes).substr(head_size + 2); }
  // Header lines, blank line and (optionally) the body: what follows the
  // status line on the wire.
  std::string_view after_status_line(bool with_body) const {
    const size_t end = with_body ? bytes.size() : head_size + 2;
    return std::string_view(bytes).substr(status_line_size, end - status_line_size);
  }
  int64_t age_ms(int64_t now_ms) const {
    const int64_t resident = now_ms > response_time_ms ? now_ms - response_time_ms : 0;
    return initial_age_ms + resident;
  }
  // Remaining freshness; negative once stale.
  int64_t ttl_ms(int64_t now_ms) const { return lifetime_ms - age_ms(now_ms); }
  bool fresh(int64_t now_ms) const { return !always_revalidate && ttl_ms(now_ms) > 0; }
  // May be served stale while a background refresh runs.
  bool within_swr(int64_t now_ms) const {
    return !no_stale && !always_revalidate && -ttl_ms(now_ms) < swr_ms;
  }
  // May be served stale because the origin failed.
  bool within_sie(int64_t now_ms) const { return !no_stale && -ttl_ms(now_ms) < sie_ms; }
  // Bytes this entry costs the budget (payload plus bookkeeping).
  size_t footprint() const {
    return bytes.size() + key.size() + host.size() + target.size() + vary_values.size() +
           etag.size() + last_modified.size() + sizeof(StoredResponse) + 128;
  }
};

using ResponsePtr = std::shared_ptr<const StoredResponse>;

}  // namespace torii::cache
