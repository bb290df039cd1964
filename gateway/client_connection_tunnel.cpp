// ClientConnection after "101 Switching Protocols": the client and upstream
// connections become one byte pipe (WebSocket and other Upgrade protocols).
// Backpressure as for bodies: a side stops reading while the other side's
// outbound queue is over the high watermark. Either side closing ends the
// tunnel (WebSocket says goodbye in-band first); so does the idle timeout.
#include "common/log.hpp"
#include "gateway/client_connection.hpp"
#include "gateway/header_rewrite.hpp"
#include "gateway/worker.hpp"

namespace torii::gateway {

void ClientConnection::start_tunnel(const http::MessageHead& response) {
  response_started_ = true;
  status_ = 101;
  build_switching_protocols_head(response, request_id_, out().owned());
  record_exchange();  // the exchange is the handshake; the tunnel is not a request
  upstream_->start_tunnel();
  state_ = State::kTunnel;
  // nginx's proxy_read_timeout for WebSockets is the upstream's read
  // timeout; here: the route's idle timeout, else the upstream's response
  // timeout.
  const upstream::ExchangeTimeouts t = timeouts();
  tunnel_idle_ms_ = t.idle_ms != 0 ? t.idle_ms : group_->settings().response_timeout_ms;
  set_timer(TimerPhase::kTunnelIdle);
  LogLine(LogLevel::kDebug, "tunnel open")
      .kv("request_id", request_id_)
      .kv("protocol", response.get("upgrade"));
  flush();
  // Bytes the client sent right behind its request head belong to the tunnel.
  if (in_.unparsed_size() > 0) tunnel_client_bytes();
}

void ClientConnection::tunnel_client_bytes() {
  if (state_ != State::kTunnel || upstream_ == nullptr) return;
  while (in_.unparsed_size() > 0 && !upstream_full_) {
    const std::string_view bytes(in_.unparsed_data(), in_.unparsed_size());
    in_.consume(bytes.size());
    WriteBatch* b = io_.batches.acquire();
    b->append_borrowed(in_.block(), bytes);
    if (!upstream_->send_body(b)) upstream_full_ = true;
    if (upstream_ == nullptr || state_ != State::kTunnel) return;
    set_timer(TimerPhase::kTunnelIdle);
    // TLS may hold decrypted bytes the buffer had no room for.
    if (tls_ && in_.unparsed_size() == 0) pump_tls();
  }
  if (upstream_full_) {
    stop_reading();
  } else {
    in_.release_if_empty();
    start_reading();
  }
}

void ClientConnection::on_tunnel_data(const BlockRef& block, std::string_view bytes) {
  if (state_ != State::kTunnel) return;
  out().append_borrowed(block, bytes);
  set_timer(TimerPhase::kTunnelIdle);
}

void ClientConnection::on_tunnel_end() {
  upstream_ = nullptr;
  if (state_ != State::kTunnel) return;
  LogLine(LogLevel::kDebug, "tunnel closed by upstream").kv("request_id", request_id_);
  flush();
  close_after_flush();
}

}  // namespace torii::gateway
