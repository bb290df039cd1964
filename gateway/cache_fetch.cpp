#include "gateway/cache_fetch.hpp"

#include "common/log.hpp"
#include "gateway/router.hpp"
#include "gateway/worker.hpp"
#include "gateway/worker_cache.hpp"

namespace torii::gateway {

namespace {

http::ParserLimits fetch_limits() {
  http::ParserLimits l;
  l.max_request_line = 64 * 1024;
  l.max_header_bytes = 256 * 1024;
  l.max_header_count = 1000;
  return l;
}

}  // namespace

CacheFetch::CacheFetch(WorkerCache& cache, size_t route, std::string_view scheme, std::string host,
                       std::string target, const std::string& extra_lines, cache::ResponsePtr stale,
                       Kind kind, bool pinned, Done done)
    : cache_(cache),
      route_(route),
      scheme_(scheme),
      kind_(kind),
      pinned_(pinned),
      done_(std::move(done)),
      stale_(std::move(stale)),
      parsed_request_(http::Http1Parser::Kind::kRequest, fetch_limits()),
      host_(std::move(host)),
      target_(std::move(target)) {
  char request_id[33];
  cache_.worker().next_request_id(request_id);
  request_.append("GET ").append(target_).append(" HTTP/1.1\r\nHost: ").append(host_);
  request_.append("\r\nUser-Agent: torii-cache\r\nVia: 1.1 torii\r\nX-Request-Id: ");
  request_.append(request_id).append("\r\n");
  if (stale_ != nullptr) {
    if (!stale_->etag.empty())
      request_.append("If-None-Match: ").append(stale_->etag).append("\r\n");
    if (!stale_->last_modified.empty()) {
      request_.append("If-Modified-Since: ").append(stale_->last_modified).append("\r\n");
    }
  }
  request_.append(extra_lines).append("\r\n");
  // The request as the cache rules see it (Vary values, key headers).
  auto r = parsed_request_.feed(request_.data(), request_.size());
  const conf::Config& config = cache_.worker().config();
  if (r.event == http::Http1Parser::Event::kHeadComplete) {
    key_ = cache::make_cache_key(scheme, normalize_host(host_), target_,
                                 config.routes[route_].cache->key, parsed_request_.head());
  }
}

std::string CacheFetch::key_for(const conf::Config& config, size_t route, std::string_view scheme,
                                const std::string& host, const std::string& target) {
  const std::string request = "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
  http::Http1Parser parser(http::Http1Parser::Kind::kRequest, fetch_limits());
  if (parser.feed(request.data(), request.size()).event !=
      http::Http1Parser::Event::kHeadComplete) {
    return {};
  }
  return cache::make_cache_key(scheme, normalize_host(host), target,
                               config.routes[route].cache->key, parser.head());
}

void CacheFetch::start() {
  if (key_.empty()) {
    finish(false, "invalid pre-warm request");
    return;
  }
  const conf::Config& config = cache_.worker().config();
  group_ = &cache_.worker().group(config.routes[route_].upstream_index);
  auto got = retried_ ? group_->acquire_fresh(this, ticket_) : group_->acquire(this, ticket_);
  switch (got.result) {
    case upstream::UpstreamGroup::Acquire::kReady:
      on_upstream_ready(*got.conn);
      break;
    case upstream::UpstreamGroup::Acquire::kPending:
      break;
    case upstream::UpstreamGroup::Acquire::kFull:
      finish(false, "upstream pool full");
      break;
  }
}

void CacheFetch::cancel() {
  if (upstream_ != nullptr) {
    upstream_->abort();
    upstream_ = nullptr;
  }
  if (group_ != nullptr) group_->cancel_wait(ticket_);
  finished_ = true;
}

void CacheFetch::on_upstream_ready(upstream::UpstreamConnection& conn) {
  ticket_.reset();
  upstream_ = &conn;
  request_time_ms_ = cache_.now_ms();
  conn.send_request_head(request_, false);
  if (upstream_ != nullptr) conn.request_complete();
}

void CacheFetch::on_upstream_error(Error error, bool retryable) {
  ticket_.reset();
  upstream_ = nullptr;
  if (retryable && !retried_) {  // the keep-alive race: once more on a fresh connection
    retried_ = true;
    start();
    return;
  }
  finish(false, error_name(error));
}

void CacheFetch::on_response_head(const http::MessageHead& head) {
  status_ = head.status;
  const RouteCache* route = cache_.route(route_);
  const int64_t now = cache_.now_ms();
  if (stale_ != nullptr && head.status == 304) {
    refreshed_ = refreshed_by_304(*stale_, head, parsed_request_.head(), route->policy,
                                  request_time_ms_, now);
    return;
  }
  if (head.status >= 500) return;  // keep what is stored (stale-if-error)
  const conf::Config& config = cache_.worker().config();
  ForwardContext ctx{"", scheme_, "", group_->name(), &config.routes[route_].response_headers, ""};
  CaptureRequest req{&parsed_request_.head(), key_, normalize_host(host_), target_,
                     request_time_ms_};
  const cache::StoreDecision d = capture_.start(req, head, route->policy, ctx, now);
  if (!d.storable) {
    LogLine(LogLevel::kWarn, "cache fetch: response not storable")
        .kv("target", target_)
        .kv("status", head.status)
        .kv("reason", d.reason);
  }
}

void CacheFetch::on_response_body(const BlockRef&, const std::vector<std::string_view>& data) {
  capture_.add(data);
}

void CacheFetch::on_response_complete() {
  upstream_ = nullptr;
  cache::ResponsePtr r = refreshed_ != nullptr ? refreshed_ : capture_.finish();
  if (r == nullptr) {
    finish(false, status_ >= 500 ? "upstream error status" : "not storable");
    return;
  }
  cache_.insert(route_, r, pinned_);
  result_ = std::move(r);
  finish(true, "");
}

void CacheFetch::on_response_aborted(Error error) {
  upstream_ = nullptr;
  capture_.reset();
  finish(false, error_name(error));
}

void CacheFetch::finish(bool ok, std::string_view why) {
  if (finished_) return;
  finished_ = true;
  if (!ok) {
    LogLine(LogLevel::kWarn, "cache fetch failed")
        .kv("host", host_)
        .kv("target", target_)
        .kv("status", status_)
        .kv("error", why);
  }
  cache_.count_fetch(route_, kind_, ok);
  if (done_) done_(*this, ok);
}

}  // namespace torii::gateway
