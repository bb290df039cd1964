#include "gateway/client_connection.hpp"

#include <unistd.h>

#include <cstring>
#include <ctime>

#include "cache/policy.hpp"
#include "common/log.hpp"
#include "gateway/cache_reply.hpp"
#include "gateway/local_reply.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/router.hpp"
#include "gateway/worker.hpp"

namespace torii::gateway {

namespace {

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

uv_stream_t* as_stream(uv_tcp_t* t) { return reinterpret_cast<uv_stream_t*>(t); }

http::ParserLimits request_limits(const conf::Limits& l) {
  http::ParserLimits p;
  p.max_request_line = l.max_request_line;
  p.max_header_bytes = l.max_header_bytes;
  p.max_header_count = l.max_header_count;
  p.max_body_bytes = l.max_body_bytes;
  return p;
}

}  // namespace

std::string_view ClientConnection::state_name(State s) {
  switch (s) {
    case State::kIdle:
      return "idle";
    case State::kReadingHead:
      return "reading_head";
    case State::kWaitingUpstream:
      return "waiting_upstream";
    case State::kWaitingCache:
      return "waiting_cache";
    case State::kProxying:
      return "proxying";
    case State::kTunnel:
      return "tunnel";
    case State::kLocalReply:
      return "local_reply";
    case State::kClosing:
      return "closing";
  }
  return "?";
}

ClientConnection::ClientConnection(Worker& worker, const TlsServerContext* tls, size_t listener)
    : worker_(worker),
      io_(worker.io()),
      parser_(http::Http1Parser::Kind::kRequest, request_limits(worker.config().limits)),
      tls_ctx_(tls),
      listener_(listener) {
  uv_tcp_init(io_.loop, &tcp_);
  timer_.init(io_.loop, this, [](void* self) { static_cast<ClientConnection*>(self)->on_timer(); });
  tcp_.data = this;
}

bool ClientConnection::accept(uv_stream_t* server) {
  if (uv_accept(server, as_stream(&tcp_)) != 0) {
    close();
    return false;
  }
  start();
  return true;
}

bool ClientConnection::adopt(int fd) {
  if (uv_tcp_open(&tcp_, fd) != 0) {
    ::close(fd);
    close();
    return false;
  }
  start();
  return true;
}

void ClientConnection::start() {
  worker_.stats().add(worker_.layout().connections_accepted);
  worker_.stats().gauge_add(worker_.layout().connections_active, 1);
  counted_active_ = true;
  route_index_ = worker_.layout().route_count - 1;
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    if (peer.ss_family == AF_INET6) {
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&peer), client_ip_, sizeof client_ip_);
    } else {
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&peer), client_ip_, sizeof client_ip_);
    }
  }
  if (tls_ctx_ != nullptr) {
    tls_ = std::make_unique<TlsSession>(tls_ctx_->new_ssl());
    set_timer(TimerPhase::kHandshake);
  } else {
    set_timer(TimerPhase::kHeader);  // the first request must arrive in time
  }
  start_reading();
}

// ---- reading ---------------------------------------------------------------

void ClientConnection::start_reading() {
  if (reading_ || read_eof_ || state_ == State::kClosing) return;
  reading_ = true;
  uv_read_start(
      as_stream(&tcp_),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* self = static_cast<ClientConnection*>(h->data);
        // TLS reads ciphertext into the worker's scratch buffer (OpenSSL
        // copies it at once); plain HTTP reads straight into the request buffer.
        *buf = self->tls_ ? uv_buf_init(self->io_.tls_scratch, sizeof self->io_.tls_scratch)
                          : self->in_.prepare(self->io_.blocks);
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
        static_cast<ClientConnection*>(s->data)->on_read(nread);
      });
}

void ClientConnection::stop_reading() {
  if (!reading_) return;
  reading_ = false;
  uv_read_stop(as_stream(&tcp_));
}

void ClientConnection::on_read(ssize_t nread) {
  if (state_ == State::kClosing || nread == 0) return;
  if (nread < 0) {
    stop_reading();
    if (nread != UV_EOF) {
      close();  // reset: nobody to answer
      return;
    }
    on_peer_eof();
    return;
  }
  worker_.stats().add(worker_.layout().received_bytes, static_cast<uint64_t>(nread));
  exchange_bytes_in_ += static_cast<uint64_t>(nread);
  if (tls_) {
    // Handshake records, or records that only complete with the next read,
    // give no plaintext yet.
    if (tls_input(static_cast<size_t>(nread)) == 0) return;
  } else {
    in_.commit(static_cast<size_t>(nread));
  }
  if (state_ == State::kIdle) {
    exchange_start_ns_ = uv_hrtime();  // a request's clock starts at its first byte
    state_ = State::kReadingHead;
    set_timer(TimerPhase::kHeader);
  } else if (state_ == State::kProxying && !request_complete_) {
    set_timer(TimerPhase::kBody);  // body_read measures the gap between reads
  }
  process_input();
}

void ClientConnection::redirect_to_https(const std::string& host) {
  const http::MessageHead& head = parser_.head();
  const RequestTarget target = split_target(head.target);
  std::string location = "https://";
  location.append(host);
  if (worker_.https_port() != 443)
    location.append(":").append(std::to_string(worker_.https_port()));
  location.append(target.path_and_query.empty() ? std::string_view("/") : target.path_and_query);
  // Without reading a body, the connection cannot carry another request.
  const bool close_after =
      head.has_body() || draining_ || read_eof_ || worker_.draining() || !head.keep_alive;
  build_redirect(308, location, request_id_, head.method == "HEAD", close_after,
                 head.is_http10() && head.keep_alive, out().owned());
  status_ = 308;
  record_exchange();
  flush();
  state_ = State::kLocalReply;
  plan_.close_after = close_after;
  request_complete_ = !close_after;
  finish_exchange();
}

void ClientConnection::on_peer_eof() {
  read_eof_ = true;
  if (state_ == State::kTunnel) {
    close();  // the client ended the tunnel (its protocol said goodbye in-band)
    return;
  }
  // A client may half-close after a complete request and still expect
  // the response; anything else ends here.
  const bool answer_pending = (state_ == State::kWaitingUpstream ||
                               state_ == State::kWaitingCache || state_ == State::kProxying) &&
                              request_complete_;
  if (!answer_pending && state_ != State::kLocalReply) close();
}

// ---- TLS -------------------------------------------------------------------

size_t ClientConnection::tls_input(size_t n) {
  tls_->feed(std::string_view(io_.tls_scratch, n));
  if (!tls_->established()) {
    const size_t keep = std::min(n, sizeof tls_first_bytes_ - tls_first_len_);
    std::memcpy(tls_first_bytes_ + tls_first_len_, io_.tls_scratch, keep);
    tls_first_len_ += keep;
    const TlsSession::Result r = tls_->handshake();
    send_tls_output();
    if (r == TlsSession::Result::kError) {
      if (TlsSession::looks_like_http(std::string_view(tls_first_bytes_, tls_first_len_))) {
        count_tls(metrics::TlsResult::kPlainHttp);
        reject_plain_http();
      } else {
        count_tls(metrics::TlsResult::kFailed);
        LogLine(LogLevel::kDebug, "TLS handshake failed")
            .kv("client", client_ip_)
            .kv("reason", tls_->error());
        close();
      }
      return 0;
    }
    if (r != TlsSession::Result::kOk) return 0;  // more handshake to come
    count_tls(tls_->resumed() ? metrics::TlsResult::kResumed : metrics::TlsResult::kFull);
    set_timer(TimerPhase::kHeader);  // the first request must arrive in time
  }
  return pump_tls();
}

size_t ClientConnection::pump_tls() {
  size_t total = 0;
  for (;;) {
    const uv_buf_t buf = in_.prepare(io_.blocks);
    if (buf.len == 0) break;  // the request buffer is full: decrypt later
    size_t n = 0;
    const TlsSession::Result r = tls_->read(buf.base, buf.len, n);
    if (r == TlsSession::Result::kOk) {
      in_.commit(n);
      total += n;
      continue;
    }
    if (r == TlsSession::Result::kClosed) {
      send_tls_output();
      on_peer_eof();  // close_notify: the client's side ended
      return total;
    }
    if (r == TlsSession::Result::kError) {
      LogLine(LogLevel::kDebug, "TLS error").kv("client", client_ip_).kv("reason", tls_->error());
      close();
      return 0;
    }
    break;  // kWantMore
  }
  send_tls_output();  // post-handshake messages (TLS 1.3 tickets, key updates)
  return total;
}

void ClientConnection::count_tls(metrics::TlsResult result) {
  const auto& cells = worker_.layout().tls_handshakes;
  if (listener_ >= cells.size() || cells[listener_].empty()) return;
  const bool handshaken =
      result == metrics::TlsResult::kFull || result == metrics::TlsResult::kResumed;
  const size_t version =
      metrics::tls_version_index(handshaken && tls_ ? tls_->version() : std::string_view("none"));
  worker_.stats().add(cells[listener_][version * static_cast<size_t>(metrics::TlsResult::kCount) +
                                       static_cast<size_t>(result)]);
}

void ClientConnection::send_tls_output() {
  if (!tls_ || tls_->output_size() == 0 || state_ == State::kClosing) return;
  WriteBatch* b = io_.batches.acquire();
  tls_->take_output(b->owned());
  submit(b);
}

void ClientConnection::reject_plain_http() {
  static constexpr std::string_view kBody = "The plain HTTP request was sent to an HTTPS port\n";
  tls_.reset();  // the answer goes out unencrypted
  WriteBatch* b = io_.batches.acquire();
  std::string& out = b->owned();
  out.append(
      "HTTP/1.1 400 Bad Request\r\nServer: torii\r\nContent-Type: text/plain; charset=utf-8\r\n");
  out.append("Content-Length: ").append(std::to_string(kBody.size()));
  out.append("\r\nConnection: close\r\n\r\n").append(kBody);
  status_ = 400;
  record_exchange();
  submit(b);
  close_after_flush();
}

bool ClientConnection::input_blocked() const {
  switch (state_) {
    case State::kIdle:
    case State::kReadingHead:
      return false;
    case State::kWaitingUpstream:
    case State::kWaitingCache:
      return true;  // the body waits for a connection
    case State::kProxying:
      return request_complete_ || upstream_full_;
    case State::kTunnel:
      return upstream_full_;
    case State::kLocalReply:
    case State::kClosing:
      return true;
  }
  return true;
}

void ClientConnection::process_input() {
  using Event = http::Http1Parser::Event;
  // Handlers below may finish an exchange and ask for more input; the loop
  // here picks that up instead of recursing (a long pipeline of local
  // replies must not grow the stack).
  if (in_process_input_) return;
  if (state_ == State::kTunnel) {
    tunnel_client_bytes();
    return;
  }
  in_process_input_ = true;
  while (!input_blocked()) {
    auto r = parser_.feed(in_.unparsed_data(), in_.unparsed_size());
    in_.consume(r.consumed);
    if (r.event == Event::kNeedMore) {
      // TLS may hold decrypted bytes the request buffer had no room for.
      if (tls_ && state_ != State::kClosing && pump_tls() > 0) continue;
      break;
    }
    switch (r.event) {
      case Event::kHeadComplete:
        on_request_head();
        break;
      case Event::kBody:
        on_request_body(false);
        break;
      case Event::kMessageComplete:
        on_request_body(true);
        break;
      case Event::kError:
        LogLine(LogLevel::kDebug, "bad request")
            .kv("client", client_ip_)
            .kv("reason", parser_.error_reason());
        local_reply(parser_.error(), true);
        in_process_input_ = false;
        return;
      case Event::kNeedMore:
        break;
    }
    if (in_.unparsed_size() == 0 && r.event != Event::kHeadComplete) {
      // The buffer is used up; TLS may still hold decrypted bytes that did
      // not fit (no read event will come for them).
      if (tls_ && state_ != State::kClosing && !input_blocked() && pump_tls() > 0) continue;
      break;
    }
  }
  in_process_input_ = false;
  if (state_ == State::kClosing) return;
  if (input_blocked() && (in_.full() || upstream_full_)) {
    stop_reading();  // backpressure: the kernel buffer fills, then the client's window
  } else if (!input_blocked()) {
    start_reading();
  }
  if (state_ == State::kIdle) in_.release_if_empty();
}

void ClientConnection::on_request_head() {
  const http::MessageHead& head = parser_.head();
  if (exchange_start_ns_ == 0) exchange_start_ns_ = uv_hrtime();
  CheckResult check = check_request_head(head);
  if (check.error != Error::kNone) {
    LogLine(LogLevel::kDebug, "bad request").kv("client", client_ip_).kv("reason", check.reason);
    local_reply(check.error, true);
    return;
  }
  std::string_view client_id = head.get("x-request-id");
  if (is_sane_request_id(client_id)) {
    std::memcpy(request_id_, client_id.data(), client_id.size());
    request_id_[client_id.size()] = '\0';
  } else {
    worker_.next_request_id(request_id_);
  }
  const std::string host = normalize_host(request_authority(head));
  auto route = worker_.router().match(host, target_path(head.target), head.method);
  if (!route) {
    // Without reading the body, the connection cannot carry another request.
    local_reply(Error::kNoRoute, head.has_body());
    return;
  }
  route_index_ = *route;
  const conf::Route& route_config = worker_.config().routes[*route];
  if (!tls_ && route_config.https_redirect) {
    redirect_to_https(host);
    return;
  }
  hsts_line_ = tls_ ? std::string_view(worker_.hsts_line(*route)) : std::string_view();
  if (!pass_route_policies(*route)) return;
  group_ = &worker_.group(route_config.upstream_index);
  if (const RouteCache* rc = worker_.cache().route(*route)) {
    if (lookup_cache(*rc, host)) return;
  }
  forward_request();
}

bool ClientConnection::pass_route_policies(size_t route) {
  if (!worker_.policies().any(route)) return true;
  const http::MessageHead& head = parser_.head();
  PolicyVerdict verdict = worker_.policies().check(route, head, client_ip_, uv_now(io_.loop),
                                                   static_cast<int64_t>(std::time(nullptr)));
  if (verdict.error == Error::kNone) {
    const RouteAuthenticator* auth = worker_.policies().auth(route);
    if (auth != nullptr && !auth->subject_header().empty() && !verdict.subject.empty()) {
      auth_lines_.assign(auth->subject_header())
          .append(": ")
          .append(verdict.subject)
          .append("\r\n");
    }
    if (auth != nullptr && !auth->api_key_query().empty()) {
      // The key is the gateway's credential: the upstream does not see it.
      const RequestTarget t = split_target(head.target);
      const size_t q = t.path_and_query.find('?');
      if (q != std::string_view::npos) {
        const std::string rest =
            remove_query_parameter(t.path_and_query.substr(q + 1), auth->api_key_query());
        forward_target_.assign(t.path_and_query.substr(0, q));
        if (!rest.empty()) forward_target_.append("?").append(rest);
      }
    }
    return true;
  }
  const metrics::StatsLayout& layout = worker_.layout();
  if (verdict.rate_limited) {
    worker_.stats().add(layout.rate_limited[route]);
  } else {
    worker_.stats().add(layout.auth_rejected[route][verdict.auth_reason]);
  }
  LogLine(LogLevel::kDebug, "request refused")
      .kv("client", client_ip_)
      .kv("route", worker_.config().routes[route].name)
      .kv("reason", verdict.reason);
  policy_lines_ = std::move(verdict.reply_lines);
  local_reply(verdict.error, head.has_body());
  return false;
}

void ClientConnection::forward_request() {
  const http::MessageHead& head = parser_.head();
  if (head.has_body() && expects_continue(head)) {
    // RFC 9110 10.1.1: we answer the expectation ourselves and stream the body on.
    out().append_static(kContinue);
    flush();
  }
  std::string extra_lines;  // rare: both the cache's and the auth's lines
  std::string_view lines = cache_.request_lines;
  if (!auth_lines_.empty()) {
    extra_lines = cache_.request_lines + auth_lines_;
    lines = extra_lines;
  }
  ForwardContext ctx{
      client_ip_, tls_ ? "https" : "http",        request_id_, group_->name(), nullptr,
      lines,      cache_.head_as_get ? "GET" : ""};
  upgrade_requested_ = cache_.route == nullptr && is_upgrade_request(head);
  ctx.upgrade = upgrade_requested_;
  if (route_index_ < worker_.config().routes.size()) {
    if (const RouteAuthenticator* auth = worker_.policies().auth(route_index_)) {
      ctx.drop_headers[0] = auth->api_key_header();
      ctx.drop_headers[1] = auth->subject_header();
      ctx.path_and_query_override = forward_target_;
    }
  }
  upstream_head_.clear();
  build_upstream_request_head(head, ctx, upstream_head_);
  // A body-less request is complete with its head: a client that
  // half-closes now still gets its answer.
  request_complete_ = !head.has_body();
  response_started_ = false;
  retried_ = false;
  route_retries_ = 0;
  failed_pool_ = nullptr;
  if (!group_->admit()) {
    LogLine(LogLevel::kWarn, "upstream at max_requests").kv("upstream", group_->name());
    local_reply(Error::kUpstreamPoolFull, !request_complete_);
    return;
  }
  admitted_to_ = group_;
  state_ = State::kWaitingUpstream;
  set_timer(TimerPhase::kNone);
  acquire_upstream(false);
}

void ClientConnection::acquire_upstream(bool fresh) {
  const uint64_t key = group_->request_key(parser_.head(), client_ip_);
  auto got = fresh ? group_->acquire_fresh(this, ticket_, key, failed_pool_)
                   : group_->acquire(this, ticket_, key);
  switch (got.result) {
    case upstream::UpstreamGroup::Acquire::kReady:
      on_upstream_ready(*got.conn);
      break;
    case upstream::UpstreamGroup::Acquire::kPending:
      if (ticket_) set_timer(TimerPhase::kQueue);  // queued behind the connection cap
      break;
    case upstream::UpstreamGroup::Acquire::kFull:
      LogLine(LogLevel::kWarn, "upstream pool full").kv("upstream", group_->name());
      local_reply(Error::kUpstreamPoolFull, !request_complete_ || parser_.head().has_body());
      break;
  }
}

void ClientConnection::on_request_body(bool last) {
  if (state_ == State::kIdle || state_ == State::kReadingHead) {
    return;  // the end of a body-less request that was already answered
  }
  if (upstream_ != nullptr) {
    // Chunked bodies are re-framed by us (see Http1Parser::decoded()).
    const bool chunked = parser_.head().framing == http::BodyFraming::kChunked;
    WriteBatch* b = io_.batches.acquire();
    if (chunked) {
      append_chunk(*b, in_.block(), parser_.decoded());
      if (last) b->append_static(kLastChunk);
    } else {
      append_spans(*b, in_.block(), parser_.decoded());
    }
    if (!upstream_->send_body(b)) upstream_full_ = true;
  }
  if (last) {
    request_complete_ = true;
    if (upstream_ != nullptr) upstream_->request_complete();
    if (timer_phase_ == TimerPhase::kBody || timer_phase_ == TimerPhase::kHeader) {
      set_timer(TimerPhase::kNone);
    }
  } else {
    set_timer(TimerPhase::kBody);
  }
}

// ---- upstream events -------------------------------------------------------

upstream::ExchangeTimeouts ClientConnection::timeouts() const {
  upstream::ExchangeTimeouts t;
  if (route_index_ >= worker_.config().routes.size()) return t;
  const conf::RouteTimeouts& route = worker_.config().routes[route_index_].timeouts;
  auto ms = [](const std::optional<conf::Millis>& d) {
    return d ? static_cast<uint64_t>(d->count()) : uint64_t{0};
  };
  t.connect_ms = ms(route.connect);
  t.response_ms = ms(route.response_headers);
  t.idle_ms = ms(route.idle);
  t.total_ms = ms(route.request);
  return t;
}

void ClientConnection::on_upstream_ready(upstream::UpstreamConnection& conn) {
  ticket_.reset();
  upstream_start_ns_ = uv_hrtime();
  upstream_server_ = &conn.pool().authority();
  upstream_ = &conn;
  state_ = State::kProxying;
  const http::MessageHead& head = parser_.head();
  conn.send_request_head(upstream_head_, head.method == "HEAD" && !cache_.head_as_get);
  if (upstream_ == nullptr) return;  // the write failed and was reported
  if (request_complete_) {
    conn.request_complete();
    set_timer(TimerPhase::kNone);
  } else {
    set_timer(TimerPhase::kBody);
  }
  process_input();
}

bool ClientConnection::may_retry(bool connect_failure, int status) {
  if (route_index_ >= worker_.config().routes.size()) return false;
  const std::optional<conf::RetryPolicy>& policy = worker_.config().routes[route_index_].retry;
  if (!policy || route_retries_ >= policy->attempts || response_started_) return false;
  const http::MessageHead& head = parser_.head();
  // Safe to send again: nothing of it reached the upstream (no connection),
  // or an idempotent request without a body (RFC 9110 9.2.2).
  const bool safe =
      connect_failure || (!head.has_body() && http::is_idempotent_method(head.method));
  if (!safe) return false;
  const bool wanted = status != 0
                          ? std::find(policy->statuses.begin(), policy->statuses.end(), status) !=
                                policy->statuses.end()
                          : (connect_failure ? policy->on_connect_failure : policy->on_reset);
  if (!wanted) return false;
  if (!group_->try_spend_retry(policy->budget_percent, policy->min_retries_per_second)) {
    LogLine(LogLevel::kDebug, "retry budget spent").kv("upstream", group_->name());
    return false;
  }
  return true;
}

void ClientConnection::retry_later() {
  const conf::RetryPolicy& policy = *worker_.config().routes[route_index_].retry;
  ++route_retries_;
  group_->count_retry();
  // Full jitter: a random wait up to backoff * 2^(n-1), capped, so retries
  // from many clients do not arrive in step.
  uint64_t cap = static_cast<uint64_t>(policy.backoff.count()) << std::min(route_retries_ - 1, 16u);
  cap = std::min<uint64_t>(cap, static_cast<uint64_t>(policy.max_backoff.count()));
  const uint64_t wait = cap == 0 ? 0 : worker_.random() % (cap + 1);
  LogLine(LogLevel::kDebug, "retrying")
      .kv("request_id", request_id_)
      .kv("attempt", route_retries_ + 1)
      .kv("after_ms", wait);
  state_ = State::kWaitingUpstream;
  timer_phase_ = TimerPhase::kRetryBackoff;
  timer_.arm(wait);
}

void ClientConnection::on_upstream_error(Error error, bool retryable) {
  ticket_.reset();
  if (upstream_ != nullptr) failed_pool_ = &upstream_->pool();
  upstream_ = nullptr;
  const http::MessageHead& head = parser_.head();
  const bool connect_failure = error == Error::kUpstreamConnectFailed ||
                               error == Error::kUpstreamConnectTimeout ||
                               error == Error::kUpstreamTlsFailed;
  if (error != Error::kUpstreamPoolFull && may_retry(connect_failure, 0)) {
    LogLine(LogLevel::kInfo, "upstream error, retrying")
        .kv("upstream", group_->name())
        .kv("error", error_name(error))
        .kv("request_id", request_id_);
    retry_later();
    return;
  }
  // The keep-alive race: a pooled connection the upstream had just closed.
  // Replay once on a fresh connection when nothing of the body has been
  // forwarded and the method is idempotent (RFC 9110 9.2.2).
  if (retryable && !retried_ && !head.has_body() && http::is_idempotent_method(head.method)) {
    retried_ = true;
    group_->count_retry();
    LogLine(LogLevel::kDebug, "retrying on a fresh upstream connection")
        .kv("request_id", request_id_);
    state_ = State::kWaitingUpstream;
    acquire_upstream(true);
    return;
  }
  LogLine(LogLevel::kWarn, "upstream error")
      .kv("upstream", group_ ? group_->name() : std::string_view("?"))
      .kv("error", error_name(error))
      .kv("request_id", request_id_);
  if (cache_.stale != nullptr && cache_.stale->within_sie(worker_.cache().now_ms())) {
    serve_stale_on_error();
    return;
  }
  local_reply(error, !request_complete_);
}

void ClientConnection::on_response_head(const http::MessageHead& head) {
  if (head.status == 101) {
    if (upgrade_requested_ && !head.get("upgrade").empty()) {
      start_tunnel(head);
    } else {
      // A 101 nobody asked for cannot be relayed as HTTP.
      LogLine(LogLevel::kWarn, "unexpected 101 from upstream").kv("upstream", group_->name());
      on_response_aborted(Error::kUpstreamBadResponse);
    }
    return;
  }
  if (head.status >= 500 && upstream_ != nullptr && may_retry(false, head.status)) {
    // Not relayed: this answer is dropped with its connection.
    LogLine(LogLevel::kInfo, "upstream answered a retryable status, retrying")
        .kv("upstream", group_->name())
        .kv("status", head.status)
        .kv("request_id", request_id_);
    failed_pool_ = &upstream_->pool();
    upstream_->abort();
    upstream_ = nullptr;
    retry_later();
    return;
  }
  if (cache_.route != nullptr && cache_response_head(head)) return;
  if (!hsts_line_.empty()) cache_.status_line.append(hsts_line_);
  response_started_ = true;
  status_ = head.status;
  ForwardContext ctx{client_ip_,
                     tls_ ? "https" : "http",
                     request_id_,
                     group_->name(),
                     &worker_.config().routes[route_index_].response_headers,
                     cache_.status_line};
  const bool want_close = draining_ || read_eof_ || !request_complete_ || worker_.draining();
  plan_ = build_client_response_head(head, parser_.head(), ctx, want_close, out().owned());
  if (cache_.head_as_get) plan_.mode = ClientBodyMode::kNone;  // the body is for the cache only
}

void ClientConnection::on_response_body(const BlockRef& block,
                                        const std::vector<std::string_view>& data) {
  if (!response_started_) return;  // a 304 or an error the cache answers for
  if (cache_.capture.active()) cache_.capture.add(data);
  switch (plan_.mode) {
    case ClientBodyMode::kNone:
      break;
    case ClientBodyMode::kIdentity:
      append_spans(out(), block, data);
      break;
    case ClientBodyMode::kChunked:
      append_chunk(out(), block, data);
      break;
  }
}

void ClientConnection::on_response_batch_end() {
  flush();
  if (upstream_ != nullptr && !client_full_ &&
      uv_stream_get_write_queue_size(as_stream(&tcp_)) > io_.high_watermark) {
    // A slow client must not make us buffer the upstream's whole response.
    client_full_ = true;
    upstream_->pause_reading();
    set_timer(TimerPhase::kSend);
  }
}

void ClientConnection::on_response_complete() {
  upstream_ = nullptr;
  upstream_ns_ = uv_hrtime() - upstream_start_ns_;
  if (cache_.refreshed != nullptr) {
    const cache::ResponsePtr r = cache_.refreshed;
    cache_.status_value.clear();
    append_cache_status(cache_.status_value, "stale", 304, false, 0, true, false, "");
    serve_cached(r, cache_.status_value, metrics::CacheResult::kRevalidated);
    return;
  }
  if (cache_.stale_on_error) {
    serve_stale_on_error();
    return;
  }
  if (cache_.capture.active()) {
    if (cache::ResponsePtr r = cache_.capture.finish()) {
      worker_.cache().insert(route_index_, std::move(r), false);
    }
  }
  if (plan_.mode == ClientBodyMode::kChunked) out().append_static(kLastChunk);
  record_exchange();  // before the bytes leave: a client never sees an uncounted answer
  flush();
  finish_exchange();
}

void ClientConnection::on_response_aborted(Error error) {
  upstream_ = nullptr;
  cache_.capture.reset();
  if (cache_.stale_on_error) {
    serve_stale_on_error();
    return;
  }
  LogLine(LogLevel::kWarn, "upstream response aborted")
      .kv("error", error_name(error))
      .kv("request_id", request_id_);
  // The head is out: the only honest signal left is an incomplete body.
  flush();
  upstream_ns_ = uv_hrtime() - upstream_start_ns_;
  record_exchange();
  close_after_flush();
}

void ClientConnection::on_request_drained() {
  upstream_full_ = false;
  process_input();
}

void ClientConnection::on_write_done(WriteBatch&, int status) {
  if (state_ == State::kClosing) return;
  if (status != 0) {
    close();
    return;
  }
  if (client_full_ && uv_stream_get_write_queue_size(as_stream(&tcp_)) <= io_.low_watermark) {
    client_full_ = false;
    if (timer_phase_ == TimerPhase::kSend) {
      set_timer(state_ == State::kTunnel ? TimerPhase::kTunnelIdle : TimerPhase::kNone);
    }
    if (upstream_ != nullptr) upstream_->resume_reading();
  }
}

// ---- ending an exchange ----------------------------------------------------

void ClientConnection::finish_exchange() {
  record_exchange();
  // A response that promised keep-alive keeps the connection open even when
  // draining began meanwhile: the client may already be sending its next
  // request, which gets an answer with Connection: close.
  const bool close_now = plan_.close_after || read_eof_ || !request_complete_;
  reset_exchange();
  served_one_ = true;
  if (close_now) {
    close_after_flush();
    return;
  }
  state_ = in_.unparsed_size() > 0 ? State::kReadingHead : State::kIdle;
  set_timer(state_ == State::kIdle ? TimerPhase::kKeepAlive : TimerPhase::kHeader);
  if (state_ == State::kIdle && (draining_ || worker_.draining())) {
    draining_ = true;
    timer_.arm(worker_.idle_drain_grace_ms());
  }
  if (state_ == State::kIdle) parser_.release_storage();
  process_input();  // a pipelined request may be waiting
}

void ClientConnection::release_admission() {
  if (admitted_to_ != nullptr) admitted_to_->finished();
  admitted_to_ = nullptr;
}

void ClientConnection::reset_exchange() {
  release_admission();
  release_cache_fill();
  hsts_line_ = {};
  cache_.route = nullptr;
  cache_.key.clear();
  cache_.stale.reset();
  cache_.refreshed.reset();
  cache_.fwd = {};
  cache_.store = cache_.validators_sent = cache_.stale_on_error = cache_.head_as_get = false;
  cache_.origin_status = 0;
  cache_.capture.reset();
  cache_.request_lines.clear();
  cache_.status_line.clear();
  group_ = nullptr;
  upstream_ = nullptr;
  ticket_.reset();
  policy_lines_.clear();
  auth_lines_.clear();
  upgrade_requested_ = false;
  forward_target_.clear();
  plan_ = ClientResponsePlan{};
  request_complete_ = false;
  response_started_ = false;
  upstream_full_ = false;
  client_full_ = false;
  request_id_[0] = '\0';
  exchange_bytes_in_ = in_.unparsed_size();  // a pipelined request already read
  exchange_start_ns_ = in_.unparsed_size() > 0 ? uv_hrtime() : 0;
  exchange_bytes_out_ = 0;
  upstream_ns_ = 0;
  status_ = 0;
  upstream_server_ = nullptr;
  route_index_ = worker_.layout().route_count - 1;
}

void ClientConnection::record_exchange() {
  if (status_ == 0) return;  // nothing was answered
  const metrics::StatsLayout& layout = worker_.layout();
  const http::MessageHead& head = parser_.head();
  const size_t method = metrics::method_index(head.method);
  const size_t status_class = metrics::status_class_index(status_);
  const uint64_t duration_us =
      exchange_start_ns_ != 0 ? (uv_hrtime() - exchange_start_ns_) / 1000 : 0;
  metrics::StatsWriter& stats = worker_.stats();
  stats.add(layout.request_cell(route_index_, method, status_class));
  stats.observe_us(layout.duration_cell(route_index_, method, status_class), duration_us);
  if (cache_.route != nullptr) worker_.cache().count(route_index_, cache_.result);

  metrics::AccessLog& log = worker_.access_log();
  if (log.enabled()) {
    uv_timeval64_t now{};
    uv_gettimeofday(&now);
    metrics::AccessRecord r;
    r.time_unix_us = now.tv_sec * 1'000'000 + now.tv_usec - static_cast<int64_t>(duration_us);
    r.request_id = request_id_;
    r.client_ip = client_ip_;
    r.method = head.method;
    r.target = head.target;
    r.protocol = head.is_http10() ? "HTTP/1.0" : "HTTP/1.1";
    r.host = head.get("host");
    r.route = route_index_ < worker_.config().routes.size()
                  ? std::string_view(worker_.config().routes[route_index_].name)
                  : std::string_view();
    r.status = status_;
    r.bytes_received = exchange_bytes_in_;
    r.bytes_sent = exchange_bytes_out_ + (out_ != nullptr ? out_->bytes() : 0);
    r.duration_us = duration_us;
    if (upstream_server_ != nullptr) {
      r.upstream_server = *upstream_server_;
      r.upstream_us = static_cast<int64_t>(upstream_ns_ / 1000);
    }
    if (cache_.route != nullptr) r.cache_status = metrics::cache_result_name(cache_.result);
    r.user_agent = head.get("user-agent");
    r.referer = head.get("referer");
    log.append(r);
  }
  status_ = 0;  // counted once
}

void ClientConnection::abort_upstream() {
  if (upstream_ != nullptr) {
    upstream_->abort();
    upstream_ = nullptr;
  }
  if (group_ != nullptr) group_->cancel_wait(ticket_);
}

void ClientConnection::local_reply(Error error, bool close_after) {
  abort_upstream();
  if (response_started_) {  // too late for a reply of our own
    close();
    return;
  }
  close_after = close_after || draining_ || read_eof_ || worker_.draining();
  const http::MessageHead& head = parser_.head();
  // On a caching route the gateway's own answer says so too (RFC 9211).
  cache_.status_line.clear();
  if (cache_.route != nullptr) {
    cache_.status_line = "Cache-Status: ";
    append_cache_status(cache_.status_line, cache_.fwd.empty() ? "miss" : cache_.fwd, 0, false, 0,
                        false, false, error_name(error));
    cache_.status_line.append("\r\n");
  }
  cache_.status_line.append(hsts_line_);
  cache_.status_line.append(policy_lines_);
  build_local_reply(error, request_id_, head.method == "HEAD", close_after || !head.keep_alive,
                    head.is_http10() && head.keep_alive, out().owned(), cache_.status_line);
  status_ = error_status(error);
  record_exchange();
  flush();
  state_ = State::kLocalReply;
  plan_.close_after = close_after || !head.keep_alive;
  request_complete_ = !close_after;
  finish_exchange();
}

// ---- writing ---------------------------------------------------------------

WriteBatch& ClientConnection::out() {
  if (out_ == nullptr) out_ = io_.batches.acquire();
  return *out_;
}

void ClientConnection::flush() {
  if (out_ == nullptr) return;
  WriteBatch* b = out_;
  out_ = nullptr;
  if (b->empty() || state_ == State::kClosing) {
    io_.batches.recycle(b);
    return;
  }
  if (tls_) {
    // The one copy TLS costs: plaintext spans in, one ciphertext buffer out.
    const bool ok = tls_->write_all(*b);
    io_.batches.recycle(b);
    if (!ok) {
      close();
      return;
    }
    b = io_.batches.acquire();
    tls_->take_output(b->owned());
  }
  submit(b);
}

void ClientConnection::submit(WriteBatch* b) {
  const uint64_t n = b->bytes();
  worker_.stats().add(worker_.layout().sent_bytes, n);
  exchange_bytes_out_ += n;
  if (b->submit(as_stream(&tcp_), this) != 0) close();
}

void ClientConnection::close_after_flush() {
  if (closing_after_flush_ || state_ == State::kClosing) return;
  closing_after_flush_ = true;
  stop_reading();
  abort_upstream();
  if (tls_ && tls_->established()) {
    tls_->close_notify();  // a graceful TLS close says so
    send_tls_output();
  }
  state_ = State::kLocalReply;
  set_timer(TimerPhase::kSend);  // a client that never reads does not hold us forever
  shutdown_req_.data = this;
  int rc = uv_shutdown(&shutdown_req_, as_stream(&tcp_), [](uv_shutdown_t* req, int) {
    static_cast<ClientConnection*>(req->data)->close();
  });
  if (rc != 0) close();
}

void ClientConnection::start_drain() {
  draining_ = true;
  if (state_ == State::kIdle) {
    // An idle keep-alive connection gets a short grace period: a request
    // already on its way is answered (with Connection: close) rather than
    // racing our close.
    timer_phase_ = TimerPhase::kKeepAlive;  // expiry closes the connection
    timer_.arm(worker_.idle_drain_grace_ms());
  }
}

void ClientConnection::close() {
  if (state_ == State::kClosing) return;
  abort_upstream();
  release_admission();
  release_cache_fill();
  if (counted_active_) {
    worker_.stats().gauge_add(worker_.layout().connections_active, -1);
    counted_active_ = false;
  }
  state_ = State::kClosing;
  if (out_ != nullptr) {
    io_.batches.recycle(out_);
    out_ = nullptr;
  }
  pending_closes_ = 2;
  auto on_close = [](uv_handle_t* h) {
    auto* self = static_cast<ClientConnection*>(h->data);
    if (--self->pending_closes_ == 0) self->worker_.on_connection_closed(*self);
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
  timer_.close(on_close);
}

// ---- timeouts --------------------------------------------------------------

void ClientConnection::set_timer(TimerPhase phase) {
  if (state_ == State::kClosing) return;
  timer_phase_ = phase;
  const conf::Config& c = worker_.config();
  uint64_t ms = 0;
  switch (phase) {
    case TimerPhase::kNone:
      timer_.disarm();
      return;
    case TimerPhase::kKeepAlive:
      ms = static_cast<uint64_t>(c.timeouts.keepalive_idle.count());
      break;
    case TimerPhase::kHeader:
      ms = static_cast<uint64_t>(c.timeouts.header_read.count());
      break;
    case TimerPhase::kBody:
      ms = static_cast<uint64_t>(c.timeouts.body_read.count());
      break;
    case TimerPhase::kQueue:
      ms = group_ ? group_->settings().connect_timeout_ms : 1000;
      break;
    case TimerPhase::kSend:
      ms = static_cast<uint64_t>(c.timeouts.send.count());
      break;
    case TimerPhase::kCacheLock:
      ms = static_cast<uint64_t>(c.cache.lock_timeout.count());
      break;
    case TimerPhase::kHandshake:
      ms = tls_ctx_ != nullptr ? tls_ctx_->handshake_timeout_ms() : 10'000;
      break;
    case TimerPhase::kRetryBackoff:
      return;  // armed by retry_later()
    case TimerPhase::kTunnelIdle:
      ms = tunnel_idle_ms_ != 0 ? tunnel_idle_ms_ : 60'000;
      break;
  }
  timer_.arm(ms);
}

void ClientConnection::on_timer() {
  switch (timer_phase_) {
    case TimerPhase::kNone:
      break;
    case TimerPhase::kKeepAlive:
      close();
      break;
    case TimerPhase::kHeader:
      if (state_ == State::kIdle && !served_one_ && in_.unparsed_size() == 0 && parser_.idle()) {
        close();  // connected and never said anything
      } else {
        local_reply(Error::kHeaderReadTimeout, true);
      }
      break;
    case TimerPhase::kBody:
      local_reply(Error::kBodyReadTimeout, true);
      break;
    case TimerPhase::kQueue:
      LogLine(LogLevel::kWarn, "timed out waiting for an upstream connection")
          .kv("upstream", group_ ? group_->name() : std::string_view("?"));
      local_reply(Error::kUpstreamPoolFull, true);
      break;
    case TimerPhase::kSend:
      close();  // the client stopped reading
      break;
    case TimerPhase::kHandshake:
      LogLine(LogLevel::kDebug, "TLS handshake timed out").kv("client", client_ip_);
      count_tls(metrics::TlsResult::kTimeout);
      close();
      break;
    case TimerPhase::kRetryBackoff:
      timer_phase_ = TimerPhase::kNone;
      acquire_upstream(true);
      break;
    case TimerPhase::kTunnelIdle:
      LogLine(LogLevel::kDebug, "tunnel idle, closing").kv("client", client_ip_);
      close();
      break;
    case TimerPhase::kCacheLock:
      // The fetch we waited for takes too long: ask the origin ourselves.
      worker_.cache().fills().cancel(cache_.ticket);
      state_ = State::kWaitingUpstream;
      forward_request();
      break;
  }
}

}  // namespace torii::gateway
