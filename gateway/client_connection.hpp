// One accepted client connection: reads requests with Http1Parser, routes
// them, and relays each exchange with an upstream connection, one request
// at a time (pipelined requests wait in the read buffer, so responses go
// out strictly in order). Owned by its Worker (in a std::list, so it never
// moves); it is destroyed once both of its handles have closed.
#pragma once

#include <uv.h>

#include <list>
#include <string>
#include <string_view>

#include "cache/fill_table.hpp"
#include "cache/stored_response.hpp"
#include "common/deadline_timer.hpp"
#include "common/http1_parser.hpp"
#include "common/io_context.hpp"
#include "common/tls_session.hpp"
#include "common/write_batch.hpp"
#include "gateway/header_rewrite.hpp"
#include "gateway/response_capture.hpp"
#include "gateway/tls_context.hpp"
#include "metrics/stats.hpp"
#include "upstream/exchange_sink.hpp"
#include "upstream/upstream_pool.hpp"

namespace torii::gateway {

class Worker;
struct RouteCache;

class ClientConnection final : public upstream::ExchangeSink,
                               public WriteCompletion,
                               public cache::FillWaiter {
 public:
  enum class State : uint8_t {
    kIdle,             // between requests (keep-alive), nothing buffered
    kReadingHead,      // part of a request head received
    kWaitingUpstream,  // head parsed, waiting for an upstream connection
    kWaitingCache,     // waiting for another request's fetch of the same cache key
    kProxying,         // request and/or response streaming
    kTunnel,           // after a 101: raw bytes both ways (WebSocket...)
    kLocalReply,       // writing a reply of our own
    kClosing,
  };
  static std::string_view state_name(State s);

  // `tls`: the listener's TLS context (null: plain HTTP).
  explicit ClientConnection(Worker& worker, const TlsServerContext* tls = nullptr,
                            size_t listener = 0);
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  // Accepts from `server` and starts reading. False if accept failed (the
  // connection is closing then).
  bool accept(uv_stream_t* server);
  // Takes over an already accepted socket (draining a listen queue).
  bool adopt(int fd);
  // Graceful shutdown: finish the current exchange, answer with
  // Connection: close, close idle connections soon.
  void start_drain();
  // Closes at once (both handles); the worker destroys it afterwards.
  void close();

  State state() const { return state_; }
  std::list<ClientConnection>::iterator self_;  // position in the worker's list
  bool is_tls() const { return tls_ != nullptr; }

  // upstream::ExchangeSink
  upstream::ExchangeTimeouts timeouts() const override;
  void on_upstream_ready(upstream::UpstreamConnection& conn) override;
  void on_upstream_error(Error error, bool retryable) override;
  void on_response_head(const http::MessageHead& head) override;
  void on_response_body(const BlockRef& block, const std::vector<std::string_view>& data) override;
  void on_response_complete() override;
  void on_response_aborted(Error error) override;
  void on_response_batch_end() override;
  void on_request_drained() override;
  void on_tunnel_data(const BlockRef& block, std::string_view bytes) override;
  void on_tunnel_end() override;
  // WriteCompletion
  void on_write_done(WriteBatch& batch, int status) override;
  // cache::FillWaiter
  void on_fill_done() override;

 private:
  enum class TimerPhase : uint8_t {
    kNone,
    kKeepAlive,
    kHeader,
    kBody,
    kQueue,
    kSend,
    kCacheLock,
    kHandshake,
    kRetryBackoff,  // waiting before a retry
    kTunnelIdle,    // nothing either way through a tunnel
  };

  // The cache's part of the current exchange (routes with a cache only).
  struct CacheExchange {
    const RouteCache* route = nullptr;
    std::string key;
    std::string host;          // normalised request host
    cache::ResponsePtr stale;  // stored but stale: being revalidated; served if the origin fails
    cache::ResponsePtr refreshed;  // the origin confirmed `stale` (304)
    std::string_view fwd;          // Cache-Status "fwd" value for a forwarded request
    metrics::CacheResult result = metrics::CacheResult::kMiss;
    bool store = false;            // store what the origin answers
    bool leader = false;           // this exchange holds the key's fill (others wait for it)
    bool validators_sent = false;  // our If-None-Match / If-Modified-Since went upstream
    bool stale_on_error = false;   // the origin failed: answer with `stale` at the end
    bool head_as_get = false;      // a HEAD miss fetched as GET, so the answer can be stored
    int origin_status = 0;
    int64_t request_time_ms = 0;
    cache::FillTable::Ticket ticket;  // waiting for another request's fill
    ResponseCapture capture;
    std::string request_lines;  // extra upstream request header lines
    std::string status_line;    // "Cache-Status: ...\r\n" for a relayed response
    std::string status_value;   // Cache-Status value of an answer from the cache
  };

  void start();
  void start_reading();
  void stop_reading();
  void on_read(ssize_t nread);
  // A plain-HTTP request on a route with https_redirect: 308 to https.
  void redirect_to_https(const std::string& host);
  // The peer ended its side (TCP FIN, or TLS close_notify).
  void on_peer_eof();
  // TLS: ciphertext arrived in io_.tls_scratch; advances the handshake and
  // decrypts into in_. Returns the plaintext bytes added.
  size_t tls_input(size_t n);
  // TLS: decrypts what OpenSSL holds into in_ while it has room.
  size_t pump_tls();
  // TLS: sends the ciphertext OpenSSL produced (handshake, alerts, tickets).
  void send_tls_output();
  // Plain HTTP sent to a TLS port: a plain 400 and a close (as nginx does).
  void reject_plain_http();
  // Counts and submits a batch of wire bytes.
  void submit(WriteBatch* b);
  void on_timer();
  void set_timer(TimerPhase phase);
  void process_input();
  bool input_blocked() const;
  void on_request_head();
  // Sends the current request upstream (after the cache had nothing to say).
  void forward_request();
  // True when the cache answered (or the request now waits for a fill).
  bool lookup_cache(const RouteCache& route, const std::string& host);
  // Answers from a stored response (a 304 when the client's conditionals match).
  void serve_cached(const cache::ResponsePtr& r, std::string_view cache_status,
                    metrics::CacheResult result);
  void serve_stale_on_error();
  // Handles a response head for the cache; true when it is not relayed.
  bool cache_response_head(const http::MessageHead& head);
  void release_cache_fill();
  void on_request_body(bool last);
  void acquire_upstream(bool fresh);
  // The route's rate limit and authentication; false when a local reply was sent.
  bool pass_route_policies(size_t route);
  void local_reply(Error error, bool close_after);
  void finish_exchange();
  void reset_exchange();
  void abort_upstream();
  WriteBatch& out();
  void flush();
  void close_after_flush();
  // Counts the finished exchange (metrics, access log).
  void record_exchange();

  Worker& worker_;
  IoContext& io_;
  uv_tcp_t tcp_;
  DeadlineTimer timer_;
  uv_shutdown_t shutdown_req_;
  int pending_closes_ = 0;
  State state_ = State::kIdle;
  TimerPhase timer_phase_ = TimerPhase::kNone;
  http::Http1Parser parser_;
  ReadBuffer in_;
  const TlsServerContext* tls_ctx_;
  std::unique_ptr<TlsSession> tls_;  // null: plain HTTP
  char tls_first_bytes_[8] = {};     // to recognise plain HTTP on a TLS port
  size_t tls_first_len_ = 0;
  size_t listener_ = 0;  // index into config.listeners (TLS metrics)
  // "Strict-Transport-Security: ...\r\n" for this exchange (TLS and a route with hsts).
  std::string_view hsts_line_;
  void count_tls(metrics::TlsResult result);
  WriteBatch* out_ = nullptr;  // being filled; submitted by flush()

  // The current exchange.
  upstream::UpstreamGroup* group_ = nullptr;
  upstream::UpstreamGroup* admitted_to_ = nullptr;  // counted in its in-flight requests
  std::string policy_lines_;    // headers of a policy's local reply (429, 401...)
  std::string auth_lines_;      // "<subject header>: <sub>\r\n" sent upstream
  std::string forward_target_;  // the target without the route's API-key parameter
  void release_admission();
  upstream::UpstreamConnection* upstream_ = nullptr;
  upstream::UpstreamGroup::WaitTicket ticket_;
  std::string upstream_head_;  // kept until the response starts, for a retry
  ClientResponsePlan plan_;
  CacheExchange cache_;
  bool request_complete_ = false;
  bool response_started_ = false;
  bool retried_ = false;        // the keep-alive race was replayed
  uint32_t route_retries_ = 0;  // retries done under the route's retry policy
  const upstream::ServerPool* failed_pool_ = nullptr;  // the last attempt's server
  // The route's retry policy allows another attempt now (and spends budget).
  bool may_retry(bool connect_failure, int status);
  void retry_later();
  bool upgrade_requested_ = false;  // the request asks to switch protocols
  uint64_t tunnel_idle_ms_ = 0;     // a tunnel with no bytes either way this long closes
  // A 101 from the upstream: relay it and turn the connection into a tunnel.
  void start_tunnel(const http::MessageHead& response);
  // Tunnel: the client's bytes in in_ go to the upstream as they are.
  void tunnel_client_bytes();
  bool upstream_full_ = false;  // upstream's outbound queue over the high watermark
  bool client_full_ = false;    // our outbound queue over the high watermark

  bool reading_ = false;
  bool read_eof_ = false;  // client half-closed
  bool draining_ = false;
  bool closing_after_flush_ = false;
  bool in_process_input_ = false;
  bool counted_active_ = false;
  // Per exchange, for metrics and the access log.
  uint64_t exchange_start_ns_ = 0;
  uint64_t upstream_start_ns_ = 0;
  uint64_t upstream_ns_ = 0;
  uint64_t exchange_bytes_in_ = 0;
  uint64_t exchange_bytes_out_ = 0;
  size_t route_index_ = 0;
  int status_ = 0;
  const std::string* upstream_server_ = nullptr;  // the pool's "host:port"; pools outlive us
  bool served_one_ = false;  // a first request was completed (keep-alive timer applies)
  char request_id_[33] = {};
  char client_ip_[46] = {};
};

}  // namespace torii::gateway
