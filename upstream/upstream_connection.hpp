// One TCP connection to an upstream server: connect (and for an https
// upstream, a TLS handshake under the connect timeout), send a request,
// parse the response and hand its events to the attached ExchangeSink. Owned by
// its ServerPool (kept in a std::list so it never moves); it frees itself
// through the pool once both of its handles have closed.
#pragma once

#include <uv.h>

#include <list>
#include <memory>
#include <string>
#include <string_view>

#include "common/deadline_timer.hpp"
#include "common/http1_parser.hpp"
#include "common/io_context.hpp"
#include "common/tls_session.hpp"
#include "common/write_batch.hpp"
#include "upstream/exchange_sink.hpp"

namespace torii::upstream {

class ServerPool;

class UpstreamConnection final : public WriteCompletion {
 public:
  enum class State : uint8_t { kConnecting, kIdle, kActive, kClosing };
  static std::string_view state_name(State s);

  UpstreamConnection(ServerPool& pool, IoContext& io);
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // Starts connecting for `sink` (on_upstream_ready or on_upstream_error follows).
  void connect(ExchangeSink* sink);
  // Attaches an idle connection to a sink (no callback: it is ready now).
  void attach(ExchangeSink* sink);
  // Sends the request head; response events follow.
  void send_request_head(std::string_view head, bool head_request);
  // Sends request body bytes prepared by the client side (the batch is
  // taken over). Returns false when the outbound queue is over the high
  // watermark: stop feeding until on_request_drained().
  bool send_body(WriteBatch* batch);
  // All of the request body has been queued.
  void request_complete() { request_sent_ = true; }
  // The client side gives up on the exchange (client gone, error): closes the connection.
  void abort();
  // After a 101 response head: from now on the bytes both ways are not
  // HTTP. The upstream's go to the sink raw (on_tunnel_data), the sink's go
  // out with send_body(); the connection is never pooled again.
  void start_tunnel();

  void pause_reading();
  void resume_reading();

  bool reused() const { return reused_; }
  State state() const { return state_; }
  ServerPool& pool() { return pool_; }
  std::list<UpstreamConnection>::iterator self_;  // position in the pool's list

  void on_write_done(WriteBatch& batch, int status) override;

 private:
  void on_connected(int status);
  // TCP (and TLS) is up: the exchange may start.
  void on_transport_ready();
  void start_reading();
  void on_read(ssize_t nread);
  // The peer ended the stream (EOF, or TLS close_notify).
  void on_peer_closed(bool clean);
  // TLS: ciphertext arrived in io_.tls_scratch.
  void tls_input(size_t n);
  void send_tls_output();
  // The handshake failed: logs why (the certificate check's reason first).
  void tls_failed(std::string_view reason);
  // Sends `batch` (plaintext; encrypted first on TLS). False: the write failed.
  bool submit(WriteBatch* batch);
  void on_timer();
  void process_input();
  void fail(Error e);
  void finish_response();
  // `graceful`: a TLS connection says close_notify first (not after errors).
  void close(bool graceful = true);
  void start_timer(uint64_t ms);
  // Arms the timer for the phase the response is in (head, then body gaps),
  // never past the exchange's total deadline.
  void arm_response_timer();
  // Every state change goes through here: it keeps the pool gauges true.
  void set_state(State s);
  void go_idle(uint64_t idle_ms);

  ServerPool& pool_;
  IoContext& io_;
  uv_tcp_t tcp_;
  DeadlineTimer timer_;
  uv_connect_t connect_req_;
  int pending_closes_ = 0;
  State state_ = State::kConnecting;
  ExchangeSink* sink_ = nullptr;
  http::Http1Parser parser_;
  ReadBuffer in_;
  std::unique_ptr<TlsSession> tls_;  // null: plain HTTP
  bool reused_ = false;
  bool reading_ = false;
  bool read_paused_ = false;
  bool request_sent_ = false;
  bool response_started_ = false;  // any byte of a response received
  bool head_delivered_ = false;
  bool drain_wanted_ = false;  // a sink waits for on_request_drained
  bool connect_failed_sync_ = false;
  bool tunnel_ = false;
  // Tunnel: hands the unparsed bytes of in_ to the sink.
  void deliver_tunnel_bytes();
  unsigned keep_alive_hint_s_ = 0;
  uint64_t connect_start_ns_ = 0;
  uint64_t connect_limit_ms_ = 0;  // connect + TLS handshake
  uint64_t request_start_ns_ = 0;
  ExchangeTimeouts timeouts_;  // of the current exchange (0s filled from the pool)
  uint64_t deadline_ns_ = 0;   // the exchange's total deadline (0: none)

  friend class ServerPool;
};

}  // namespace torii::upstream
