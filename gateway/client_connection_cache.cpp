// ClientConnection's cache side: lookups, answers from stored responses,
// coalescing with other requests for the same key, and what a caching
// route does with the origin's answer (store, revalidate, stale-if-error).
#include "cache/policy.hpp"
#include "common/log.hpp"
#include "gateway/cache_reply.hpp"
#include "gateway/client_connection.hpp"
#include "gateway/worker.hpp"

namespace torii::gateway {

namespace {

bool has_conditionals(const http::MessageHead& head) {
  return !head.get("if-none-match").empty() || !head.get("if-modified-since").empty();
}

// Fills `buf` with a Cache-Status value (reusing its capacity: no allocation per hit).
const std::string& status_into(std::string& buf, std::string_view fwd, int fwd_status,
                               bool with_ttl, int64_t ttl_s, bool stored, bool collapsed,
                               std::string_view detail) {
  buf.clear();
  append_cache_status(buf, fwd, fwd_status, with_ttl, ttl_s, stored, collapsed, detail);
  return buf;
}

// Whole seconds, rounded towards minus infinity (a stale entry shows ttl=-1
// from its first stale millisecond).
int64_t floor_seconds(int64_t ms) { return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000); }

}  // namespace

bool ClientConnection::lookup_cache(const RouteCache& route, const std::string& host) {
  const http::MessageHead& head = parser_.head();
  WorkerCache& wc = worker_.cache();
  cache_.route = &route;
  if ((head.method != "GET" && head.method != "HEAD") || head.has_body()) {
    cache_.fwd = "method";
    cache_.result = metrics::CacheResult::kBypass;
    cache_.status_line = "Cache-Status: torii; fwd=method\r\n";
    return false;
  }
  cache::make_cache_key(cache_.key, tls_ ? "https" : "http", host, head.target, route.config->key,
                        head);
  cache_.host = host;
  const int64_t now = wc.now_ms();
  cache_.request_time_ms = now;
  cache_.store = true;
  if (route.config->client_no_cache == conf::ClientNoCache::kRevalidate &&
      cache::client_wants_revalidation(head)) {
    cache_.fwd = "request";
    cache_.result = metrics::CacheResult::kBypass;
    return false;
  }
  const cache::Store::Found found = wc.store().find(cache_.key, head);
  if (const cache::ResponsePtr& r = found.response) {
    const int64_t ttl_s = floor_seconds(r->ttl_ms(now));
    if (r->fresh(now)) {
      serve_cached(r, status_into(cache_.status_value, "", 0, true, ttl_s, false, false, ""),
                   metrics::CacheResult::kHit);
      return true;
    }
    if (r->within_swr(now)) {
      wc.revalidate_in_background(route_index_, r, head);
      serve_cached(r,
                   status_into(cache_.status_value, "", 0, true, ttl_s, false, false,
                               "stale-while-revalidate"),
                   metrics::CacheResult::kStale);
      return true;
    }
    // Stale: ask the origin, with our validators unless the client sent its own.
    cache_.stale = r;
    cache_.fwd = "stale";
    cache_.result = metrics::CacheResult::kExpired;
    if (!has_conditionals(head) && (!r->etag.empty() || !r->last_modified.empty())) {
      if (!r->etag.empty())
        cache_.request_lines.append("If-None-Match: ").append(r->etag).append("\r\n");
      if (!r->last_modified.empty()) {
        cache_.request_lines.append("If-Modified-Since: ").append(r->last_modified).append("\r\n");
      }
      cache_.validators_sent = true;
    }
  } else {
    cache_.fwd = found.key_known ? "vary-miss" : "miss";
    cache_.result = metrics::CacheResult::kMiss;
  }
  // A HEAD miss asks for the GET (like nginx's proxy_cache_convert_head):
  // the client gets the head, the cache gets the whole response.
  cache_.head_as_get = head.method == "HEAD";
  if (wc.fills().begin(cache_.key)) {
    cache_.leader = true;
    return false;
  }
  // Another request is fetching this key: wait for its answer.
  wc.fills().wait(cache_.key, this, cache_.ticket);
  request_complete_ = true;
  state_ = State::kWaitingCache;
  set_timer(TimerPhase::kCacheLock);
  return true;
}

void ClientConnection::on_fill_done() {
  cache_.ticket = {};  // the table let go of us
  if (state_ != State::kWaitingCache) return;
  set_timer(TimerPhase::kNone);
  WorkerCache& wc = worker_.cache();
  const int64_t now = wc.now_ms();
  const cache::Store::Found found = wc.store().find(cache_.key, parser_.head());
  if (found.response && found.response->fresh(now)) {
    serve_cached(found.response,
                 status_into(cache_.status_value, "miss", 0, false, 0, false, true, ""),
                 metrics::CacheResult::kCollapsed);
    return;
  }
  // Nothing usable was stored (not cacheable, another variant, an error):
  // ask the origin ourselves, leading the next fill if nobody else does.
  cache_.leader = wc.fills().begin(cache_.key);
  state_ = State::kWaitingUpstream;
  forward_request();
}

void ClientConnection::release_cache_fill() {
  WorkerCache& wc = worker_.cache();
  wc.fills().cancel(cache_.ticket);
  if (cache_.leader) {
    cache_.leader = false;
    wc.fills().end(cache_.key);  // wakes the requests that waited for us
  }
}

void ClientConnection::serve_cached(const cache::ResponsePtr& r, std::string_view cache_status,
                                    metrics::CacheResult result) {
  const http::MessageHead& head = parser_.head();
  const int64_t now = worker_.cache().now_ms();
  request_complete_ = true;
  cache_.result = result;
  const bool close_after = draining_ || read_eof_ || worker_.draining() || !head.keep_alive;
  HitHeadContext ctx{request_id_,
                     cache_status,
                     r->age_ms(now) / 1000,
                     close_after,
                     head.is_http10() && head.keep_alive,
                     &worker_.config().routes[route_index_].response_headers,
                     hsts_line_};
  WriteBatch& b = out();
  if (r->status == 200 && has_conditionals(head) &&
      cache::not_modified(head, r->etag, r->last_modified)) {
    append_not_modified_head(*r, ctx, b.owned());
    status_ = 304;
  } else {
    // Status line and per-response fields are written here; the stored
    // fields and body go out as one span of the shared response (no copy).
    append_hit_start(*r, ctx, b.owned());
    b.append_shared(r, r->after_status_line(head.method != "HEAD"));
    status_ = r->status;
  }
  record_exchange();
  flush();
  state_ = State::kLocalReply;
  plan_.close_after = close_after;
  finish_exchange();
}

void ClientConnection::serve_stale_on_error() {
  const cache::ResponsePtr r = cache_.stale;
  const int64_t ttl_s = floor_seconds(r->ttl_ms(worker_.cache().now_ms()));
  LogLine(LogLevel::kInfo, "origin failed, serving a stale cached response")
      .kv("request_id", request_id_)
      .kv("origin_status", cache_.origin_status);
  serve_cached(r,
               status_into(cache_.status_value, "stale", cache_.origin_status, true, ttl_s, false,
                           false, "stale-if-error"),
               metrics::CacheResult::kStale);
}

bool ClientConnection::cache_response_head(const http::MessageHead& head) {
  WorkerCache& wc = worker_.cache();
  const int64_t now = wc.now_ms();
  const http::MessageHead& req = parser_.head();
  cache_.origin_status = head.status;
  if (cache_.stale != nullptr && cache_.validators_sent && head.status == 304) {
    // The origin confirmed our copy: refresh it and answer from it at the end.
    cache_.refreshed = refreshed_by_304(*cache_.stale, head, req, cache_.route->policy,
                                        cache_.request_time_ms, now);
    wc.insert(route_index_, cache_.refreshed, false);
    return true;
  }
  if (cache_.stale != nullptr && head.status >= 500 && cache_.stale->within_sie(now)) {
    cache_.stale_on_error = true;  // the error body is read and dropped
    return true;
  }
  bool stored = false;
  std::string_view detail;
  if (cache_.store) {
    ForwardContext ctx{client_ip_,
                       tls_ ? "https" : "http",
                       request_id_,
                       group_->name(),
                       &worker_.config().routes[route_index_].response_headers,
                       ""};
    // Stored as the GET it was fetched as.
    http::MessageHead as_get;
    if (cache_.head_as_get) {
      as_get = req;
      as_get.method = "GET";
    }
    CaptureRequest capture_req{cache_.head_as_get ? &as_get : &req, cache_.key, cache_.host,
                               std::string(req.target), cache_.request_time_ms};
    const cache::StoreDecision d =
        cache_.capture.start(capture_req, head, cache_.route->policy, ctx, now);
    stored = d.storable;
    if (!stored) detail = d.reason;
  }
  const int fwd_status = cache_.fwd == "stale" ? head.status : 0;
  cache_.status_line = "Cache-Status: ";
  append_cache_status(cache_.status_line, cache_.fwd, fwd_status, false, 0, stored, false, detail);
  cache_.status_line.append("\r\n");
  return false;
}

}  // namespace torii::gateway
