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

#include "common/deadline_timer.hpp"
#include "common/http1_parser.hpp"
#include "common/io_context.hpp"
#include "common/write_batch.hpp"
#include "gateway/header_rewrite.hpp"
#include "upstream/exchange_sink.hpp"
#include "upstream/upstream_pool.hpp"

namespace torii::gateway {

class Worker;

class ClientConnection final : public upstream::ExchangeSink, public WriteCompletion {
 public:
  enum class State : uint8_t {
    kIdle,             // between requests (keep-alive), nothing buffered
    kReadingHead,      // part of a request head received
    kWaitingUpstream,  // head parsed, waiting for an upstream connection
    kProxying,         // request and/or response streaming
    kLocalReply,       // writing a reply of our own
    kClosing,
  };
  static std::string_view state_name(State s);

  explicit ClientConnection(Worker& worker);
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

  // upstream::ExchangeSink
  void on_upstream_ready(upstream::UpstreamConnection& conn) override;
  void on_upstream_error(Error error, bool retryable) override;
  void on_response_head(const http::MessageHead& head) override;
  void on_response_body(const BlockRef& block, const std::vector<std::string_view>& data) override;
  void on_response_complete() override;
  void on_response_aborted(Error error) override;
  void on_response_batch_end() override;
  void on_request_drained() override;
  // WriteCompletion
  void on_write_done(WriteBatch& batch, int status) override;

 private:
  enum class TimerPhase : uint8_t { kNone, kKeepAlive, kHeader, kBody, kQueue, kSend };

  void start();
  void start_reading();
  void stop_reading();
  void on_read(ssize_t nread);
  void on_timer();
  void set_timer(TimerPhase phase);
  void process_input();
  bool input_blocked() const;
  void on_request_head();
  void on_request_body(bool last);
  void acquire_upstream(bool fresh);
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
  WriteBatch* out_ = nullptr;  // being filled; submitted by flush()

  // The current exchange.
  upstream::UpstreamGroup* group_ = nullptr;
  upstream::UpstreamConnection* upstream_ = nullptr;
  upstream::UpstreamGroup::WaitTicket ticket_;
  std::string upstream_head_;  // kept until the response starts, for a retry
  ClientResponsePlan plan_;
  bool request_complete_ = false;
  bool response_started_ = false;
  bool retried_ = false;
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
