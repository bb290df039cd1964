#include "upstream/upstream_connection.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "upstream/upstream_pool.hpp"

namespace torii::upstream {

namespace {
http::ParserLimits response_limits() {
  http::ParserLimits l;
  l.max_header_bytes = 64 * 1024;
  l.max_header_count = 200;
  return l;
}
metrics::Outcome outcome_of(Error e) {
  switch (e) {
    case Error::kUpstreamConnectFailed:
      return metrics::Outcome::kConnectError;
    case Error::kUpstreamConnectTimeout:
      return metrics::Outcome::kConnectTimeout;
    case Error::kUpstreamBadResponse:
      return metrics::Outcome::kBadResponse;
    case Error::kUpstreamResponseTimeout:
      return metrics::Outcome::kResponseTimeout;
    case Error::kUpstreamTlsFailed:
      return metrics::Outcome::kTlsError;
    default:
      return metrics::Outcome::kReset;
  }
}

}  // namespace

std::string_view UpstreamConnection::state_name(State s) {
  switch (s) {
    case State::kConnecting:
      return "connecting";
    case State::kIdle:
      return "idle";
    case State::kActive:
      return "active";
    case State::kClosing:
      return "closing";
  }
  return "?";
}

UpstreamConnection::UpstreamConnection(ServerPool& pool, IoContext& io)
    : pool_(pool), io_(io), parser_(http::Http1Parser::Kind::kResponse, response_limits()) {
  uv_tcp_init(io_.loop, &tcp_);
  timer_.init(io_.loop, this,
              [](void* self) { static_cast<UpstreamConnection*>(self)->on_timer(); });
  tcp_.data = this;
}

void UpstreamConnection::start_timer(uint64_t ms) { timer_.arm(ms); }

void UpstreamConnection::arm_response_timer() {
  uint64_t ms = head_delivered_ ? timeouts_.idle_ms : timeouts_.response_ms;
  if (deadline_ns_ != 0) {
    const uint64_t now = uv_hrtime();
    const uint64_t left_ms = now < deadline_ns_ ? (deadline_ns_ - now) / 1'000'000 : 0;
    ms = std::min(ms, std::max<uint64_t>(left_ms, 1));
  }
  start_timer(ms);
}

void UpstreamConnection::set_state(State s) {
  if (s == state_) return;
  metrics::StatsWriter& stats = pool_.stats();
  const metrics::ServerCells& cells = pool_.cells();
  auto gauge_of = [&](State st) -> const uint32_t* {
    if (st == State::kIdle) return &cells.idle_gauge;
    if (st == State::kActive || st == State::kConnecting) return &cells.active_gauge;
    return nullptr;
  };
  const uint32_t* from = gauge_of(state_);
  const uint32_t* to = gauge_of(s);
  if (from != to) {
    if (from != nullptr) stats.gauge_add(*from, -1);
    if (to != nullptr) stats.gauge_add(*to, 1);
  }
  state_ = s;
}

void UpstreamConnection::connect(ExchangeSink* sink) {
  sink_ = sink;
  const uint64_t route_connect_ms = sink != nullptr ? sink->timeouts().connect_ms : 0;
  // The constructor's state is kConnecting without a gauge yet: count it.
  pool_.stats().gauge_add(pool_.cells().active_gauge, 1);
  state_ = State::kConnecting;
  connect_start_ns_ = uv_hrtime();
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, &tcp_, pool_.address(), [](uv_connect_t* req, int status) {
    static_cast<UpstreamConnection*>(req->data)->on_connected(status);
  });
  if (rc != 0) {
    // Report from the loop, not from inside the caller's acquire().
    start_timer(0);
    connect_failed_sync_ = true;
    return;
  }
  start_timer(route_connect_ms != 0 ? route_connect_ms : pool_.settings().connect_timeout_ms);
  connect_limit_ms_ =
      route_connect_ms != 0 ? route_connect_ms : pool_.settings().connect_timeout_ms;
}

void UpstreamConnection::on_connected(int status) {
  if (state_ == State::kClosing) return;  // UV_ECANCELED after a timeout
  timer_.disarm();
  if (status != 0) {
    LogLine(LogLevel::kWarn, "upstream connect failed")
        .kv("upstream", pool_.authority())
        .kv("error", uv_err_name(status));
    fail(Error::kUpstreamConnectFailed);
    return;
  }
  uv_tcp_nodelay(&tcp_, 1);
  if (pool_.tls() == nullptr) {
    start_reading();
    on_transport_ready();
    return;
  }
  SSL* ssl = pool_.tls()->new_ssl(pool_.tls_name(), &pool_.tls_sessions());
  if (ssl == nullptr) {
    LogLine(LogLevel::kError, "upstream TLS").kv("error", openssl_reason());
    fail(Error::kUpstreamTlsFailed);
    return;
  }
  tls_ = std::make_unique<TlsSession>(ssl, TlsSession::Role::kClient);
  // The handshake counts against the connect timeout: what is left of it.
  const uint64_t elapsed_ms = (uv_hrtime() - connect_start_ns_) / 1'000'000;
  const uint64_t limit_ms = connect_limit_ms_;
  start_timer(elapsed_ms < limit_ms ? limit_ms - elapsed_ms : 1);
  start_reading();
  const TlsSession::Result r = tls_->handshake();  // produces the ClientHello
  send_tls_output();
  if (r == TlsSession::Result::kError) tls_failed(tls_->error());
}

void UpstreamConnection::on_transport_ready() {
  pool_.stats().observe_us(pool_.cells().connect_histogram,
                           (uv_hrtime() - connect_start_ns_) / 1000);
  set_state(State::kActive);
  ExchangeSink* sink = sink_;
  if (sink != nullptr) sink->on_upstream_ready(*this);
}

void UpstreamConnection::tls_failed(std::string_view reason) {
  const std::string_view verify = tls_ ? tls_->verify_error() : std::string_view();
  LogLine(LogLevel::kWarn, "upstream TLS handshake failed")
      .kv("upstream", pool_.authority())
      .kv("server_name", pool_.tls_name())
      .kv("reason", verify.empty() ? reason : verify);
  pool_.tls_sessions().clear();  // never offer a session again after a failure
  fail(Error::kUpstreamTlsFailed);
}

void UpstreamConnection::start_reading() {
  reading_ = true;
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp_),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* self = static_cast<UpstreamConnection*>(h->data);
        // TLS reads ciphertext into the worker's scratch buffer (OpenSSL
        // copies it at once); plain HTTP reads straight into the response buffer.
        *buf = self->tls_ ? uv_buf_init(self->io_.tls_scratch, sizeof self->io_.tls_scratch)
                          : self->in_.prepare(self->io_.blocks);
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
        static_cast<UpstreamConnection*>(s->data)->on_read(nread);
      });
}

void UpstreamConnection::attach(ExchangeSink* sink) {
  sink_ = sink;
  set_state(State::kActive);
  timer_.disarm();
}

void UpstreamConnection::send_request_head(std::string_view head, bool head_request) {
  request_sent_ = false;
  response_started_ = false;
  head_delivered_ = false;
  parser_.expect_no_body(head_request);
  request_start_ns_ = uv_hrtime();
  const PoolSettings& pool = pool_.settings();
  timeouts_ = sink_ != nullptr ? sink_->timeouts() : ExchangeTimeouts{};
  if (timeouts_.response_ms == 0) timeouts_.response_ms = pool.response_timeout_ms;
  if (timeouts_.idle_ms == 0) timeouts_.idle_ms = pool.response_timeout_ms;
  deadline_ns_ = timeouts_.total_ms != 0 ? request_start_ns_ + timeouts_.total_ms * 1'000'000 : 0;
  WriteBatch* b = io_.batches.acquire();
  b->append_owned(head);
  if (!submit(b)) {
    fail(Error::kUpstreamReset);
    return;
  }
  arm_response_timer();
}

bool UpstreamConnection::send_body(WriteBatch* b) {
  if (state_ != State::kActive || b->empty()) {
    io_.batches.recycle(b);
    return true;
  }
  if (!submit(b)) {
    fail(Error::kUpstreamReset);
    return true;
  }
  if (uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&tcp_)) > io_.high_watermark) {
    drain_wanted_ = true;
    return false;
  }
  return true;
}

bool UpstreamConnection::submit(WriteBatch* b) {
  if (tls_) {
    // The one copy TLS costs: plaintext spans in, one ciphertext buffer out.
    const bool ok = tls_->write_all(*b);
    io_.batches.recycle(b);
    if (!ok) return false;
    b = io_.batches.acquire();
    tls_->take_output(b->owned());
  }
  return b->submit(reinterpret_cast<uv_stream_t*>(&tcp_), this) == 0;
}

void UpstreamConnection::send_tls_output() {
  if (!tls_ || tls_->output_size() == 0 || state_ == State::kClosing) return;
  WriteBatch* b = io_.batches.acquire();
  tls_->take_output(b->owned());
  if (b->submit(reinterpret_cast<uv_stream_t*>(&tcp_), this) != 0) {
    fail(state_ == State::kConnecting ? Error::kUpstreamTlsFailed : Error::kUpstreamReset);
  }
}

void UpstreamConnection::on_write_done(WriteBatch&, int status) {
  if (state_ == State::kClosing) return;
  if (status != 0) {
    // A failed write is one of the three ways a closed keep-alive
    // connection shows itself (with EOF and ECONNRESET on read).
    fail(Error::kUpstreamReset);
    return;
  }
  if (drain_wanted_ &&
      uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&tcp_)) <= io_.low_watermark) {
    drain_wanted_ = false;
    if (sink_ != nullptr) sink_->on_request_drained();
  }
}

void UpstreamConnection::pause_reading() {
  if (read_paused_ || state_ != State::kActive) return;
  read_paused_ = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  // A slow client is timed on the client side, not charged to the upstream.
  timer_.disarm();
}

void UpstreamConnection::resume_reading() {
  if (!read_paused_ || state_ != State::kActive) return;
  read_paused_ = false;
  start_reading();
  if (!tunnel_) arm_response_timer();
}

void UpstreamConnection::on_read(ssize_t nread) {
  if (state_ == State::kClosing) return;
  if (nread == 0) return;  // EAGAIN
  if (nread < 0) {
    on_peer_closed(nread == UV_EOF);
    return;
  }
  if (tls_) {
    tls_input(static_cast<size_t>(nread));
    return;
  }
  in_.commit(static_cast<size_t>(nread));
  if (state_ != State::kActive || sink_ == nullptr) {
    close();  // bytes nobody asked for: the connection cannot be trusted
    return;
  }
  if (tunnel_) {
    deliver_tunnel_bytes();
    return;
  }
  arm_response_timer();
  process_input();
}

void UpstreamConnection::on_peer_closed(bool clean) {
  if (tunnel_) {
    ExchangeSink* sink = sink_;
    sink_ = nullptr;
    close();
    if (sink != nullptr) sink->on_tunnel_end();
    return;
  }
  if (state_ == State::kConnecting) {
    tls_failed("the server closed the connection");  // only TLS reads before it is up
    return;
  }
  if (state_ != State::kActive) {
    close();  // an idle connection closed by the upstream: forget it
    return;
  }
  if (clean && parser_.in_body() &&
      parser_.finish() == http::Http1Parser::Event::kMessageComplete) {
    finish_response();  // close-delimited body ended
    return;
  }
  fail(Error::kUpstreamReset);
}

void UpstreamConnection::tls_input(size_t n) {
  using Result = TlsSession::Result;
  tls_->feed(std::string_view(io_.tls_scratch, n));
  if (!tls_->established()) {
    const Result r = tls_->handshake();
    send_tls_output();
    if (state_ == State::kClosing || r == Result::kWantMore) return;
    if (r != Result::kOk) {
      tls_failed(tls_->error());
      return;
    }
    timer_.disarm();
    on_transport_ready();
  }
  while (state_ != State::kClosing) {
    const uv_buf_t buf = in_.prepare(io_.blocks);
    if (buf.len == 0) break;
    size_t got = 0;
    const Result r = tls_->read(buf.base, buf.len, got);
    if (r == Result::kWantMore) break;
    if (r == Result::kClosed) {
      on_peer_closed(true);  // close_notify
      return;
    }
    if (r == Result::kError) {
      LogLine(LogLevel::kWarn, "upstream TLS error")
          .kv("upstream", pool_.authority())
          .kv("reason", tls_->error());
      fail(Error::kUpstreamReset);
      return;
    }
    in_.commit(got);
    if (state_ != State::kActive || sink_ == nullptr) {
      close(/*graceful=*/false);  // bytes nobody asked for: the connection cannot be trusted
      return;
    }
    if (tunnel_) {
      deliver_tunnel_bytes();
      continue;
    }
    arm_response_timer();
    process_input();
  }
  send_tls_output();  // post-handshake messages (key updates)
}

void UpstreamConnection::process_input() {
  using Event = http::Http1Parser::Event;
  // Feeds until the parser needs more bytes; a zero-byte feed still yields
  // the end of a body-less response found together with its head.
  while (sink_ != nullptr) {
    auto r = parser_.feed(in_.unparsed_data(), in_.unparsed_size());
    in_.consume(r.consumed);
    response_started_ = true;
    switch (r.event) {
      case Event::kNeedMore:
        break;
      case Event::kHeadComplete: {
        const http::MessageHead& head = parser_.head();
        keep_alive_hint_s_ = http::keep_alive_timeout_hint(head);
        head_delivered_ = true;
        pool_.count_response(head.status);
        sink_->on_response_head(head);
        if (tunnel_) {
          deliver_tunnel_bytes();  // bytes that came right behind the 101
          return;
        }
        continue;
      }
      case Event::kBody:
        sink_->on_response_body(in_.block(), parser_.decoded());
        continue;
      case Event::kMessageComplete:
        if (!parser_.decoded().empty()) sink_->on_response_body(in_.block(), parser_.decoded());
        if (sink_ != nullptr) finish_response();
        return;
      case Event::kError:
        LogLine(LogLevel::kWarn, "bad upstream response")
            .kv("upstream", pool_.authority())
            .kv("reason", parser_.error_reason());
        fail(Error::kUpstreamBadResponse);
        return;
    }
    break;
  }
  if (sink_ != nullptr) sink_->on_response_batch_end();
  in_.release_if_empty();
}

void UpstreamConnection::finish_response() {
  ExchangeSink* sink = sink_;
  sink->on_response_batch_end();
  const bool reusable = sink_ != nullptr && parser_.head().keep_alive && request_sent_ &&
                        in_.unparsed_size() == 0 && !(tls_ && tls_->has_buffered_input()) &&
                        !read_paused_ && parser_.head().framing != http::BodyFraming::kUntilClose;
  sink_ = nullptr;
  if (sink == nullptr) return;
  pool_.stats().observe_us(pool_.cells().response_histogram,
                           (uv_hrtime() - request_start_ns_) / 1000);
  uint64_t idle_ms = pool_.settings().idle_timeout_ms;
  if (keep_alive_hint_s_ > 0) {
    // Stay clear of the upstream's own idle close (gunicorn: 2 s) so that a
    // pooled connection is never picked just as the upstream drops it.
    uint64_t hint_ms = keep_alive_hint_s_ * 1000ull;
    uint64_t margin = hint_ms / 2 < 1000 ? hint_ms / 2 : 1000;
    if (hint_ms - margin < idle_ms) idle_ms = hint_ms - margin;
  }
  if (reusable) {
    go_idle(idle_ms);
  } else {
    close();
  }
  pool_.release(*this, reusable);
  sink->on_response_complete();
}

void UpstreamConnection::go_idle(uint64_t idle_ms) {
  set_state(State::kIdle);
  reused_ = true;
  drain_wanted_ = false;
  in_.release_if_empty();
  start_timer(idle_ms);
}

void UpstreamConnection::on_timer() {
  if (connect_failed_sync_) {
    connect_failed_sync_ = false;
    fail(Error::kUpstreamConnectFailed);
    return;
  }
  switch (state_) {
    case State::kConnecting:
      LogLine(LogLevel::kWarn, "upstream connect timeout").kv("upstream", pool_.authority());
      fail(Error::kUpstreamConnectTimeout);
      break;
    case State::kActive:
      LogLine(LogLevel::kWarn, "upstream response timeout").kv("upstream", pool_.authority());
      fail(Error::kUpstreamResponseTimeout);
      break;
    case State::kIdle:
      close();
      break;
    case State::kClosing:
      break;
  }
}

void UpstreamConnection::fail(Error e) {
  if (tunnel_) {
    ExchangeSink* sink = sink_;
    sink_ = nullptr;
    close(/*graceful=*/false);
    if (sink != nullptr) sink->on_tunnel_end();
    return;
  }
  if (sink_ != nullptr && !head_delivered_) pool_.count(outcome_of(e));
  ExchangeSink* sink = sink_;
  sink_ = nullptr;
  const bool was_connecting = state_ == State::kConnecting;
  close(/*graceful=*/false);
  if (sink == nullptr) return;
  if (head_delivered_) {
    sink->on_response_aborted(e);
  } else {
    const bool retryable =
        !was_connecting && reused_ && !response_started_ && e == Error::kUpstreamReset;
    sink->on_upstream_error(e, retryable);
  }
}

void UpstreamConnection::start_tunnel() {
  tunnel_ = true;
  timer_.disarm();  // the client side times an idle tunnel
}

void UpstreamConnection::deliver_tunnel_bytes() {
  if (in_.unparsed_size() == 0 || sink_ == nullptr) return;
  const std::string_view bytes(in_.unparsed_data(), in_.unparsed_size());
  in_.consume(bytes.size());
  sink_->on_tunnel_data(in_.block(), bytes);
  if (sink_ != nullptr) sink_->on_response_batch_end();
}

void UpstreamConnection::abort() {
  sink_ = nullptr;
  close(/*graceful=*/false);
}

void UpstreamConnection::close(bool graceful) {
  if (state_ == State::kClosing) return;
  if (graceful && tls_ && tls_->established()) {
    // close_notify: the peer learns the end was meant, and OpenSSL keeps the
    // session resumable (it drops sessions of connections that just vanish).
    tls_->close_notify();
    WriteBatch* b = io_.batches.acquire();
    tls_->take_output(b->owned());
    b->submit(reinterpret_cast<uv_stream_t*>(&tcp_), this);  // best effort: we are closing
  }
  if (state_ == State::kIdle) pool_.remove_idle(*this);
  set_state(State::kClosing);
  sink_ = nullptr;
  pending_closes_ = 2;
  auto on_close = [](uv_handle_t* h) {
    auto* self = static_cast<UpstreamConnection*>(h->data);
    if (--self->pending_closes_ == 0) self->pool_.on_closed(*self);
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
  timer_.close(on_close);
}

}  // namespace torii::upstream
