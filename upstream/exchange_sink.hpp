// The client side of one exchange, as the upstream side sees it.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/http1_parser.hpp"
#include "common/io_block.hpp"

namespace torii::upstream {

class UpstreamConnection;

// Timeouts of one exchange that override the upstream's (0: the upstream's).
struct ExchangeTimeouts {
  uint64_t connect_ms = 0;   // connect (and TLS handshake)
  uint64_t response_ms = 0;  // request sent -> response head
  uint64_t idle_ms = 0;      // longest gap between response body reads
  uint64_t total_ms = 0;     // request sent -> response complete (0: none)
};

class ExchangeSink {
 public:
  // This exchange's timeouts (a route may override the upstream's).
  virtual ExchangeTimeouts timeouts() const { return {}; }
  // A connection is ready for this exchange (after a wait in the queue or a connect).
  virtual void on_upstream_ready(UpstreamConnection& conn) = 0;
  // The exchange failed before a response head arrived. `retryable`: the
  // connection was a reused keep-alive one and the upstream sent nothing
  // (the keep-alive race); the caller decides if the request is safe to replay.
  virtual void on_upstream_error(Error error, bool retryable) = 0;
  virtual void on_response_head(const http::MessageHead& head) = 0;
  // Body bytes (chunk framing removed) as spans of `block`.
  virtual void on_response_body(const BlockRef& block,
                                const std::vector<std::string_view>& data) = 0;
  // The response ended; the connection is already back in its pool.
  virtual void on_response_complete() = 0;
  // The response broke off after its head was delivered.
  virtual void on_response_aborted(Error error) = 0;
  // End of one batch of response events (one socket read): flush writes now.
  virtual void on_response_batch_end() = 0;
  // The upstream's outbound queue fell below the low watermark: send more body.
  virtual void on_request_drained() = 0;
  // After start_tunnel(): raw bytes from the upstream (part of `block`),
  // then the tunnel's end (the upstream closed, or failed).
  virtual void on_tunnel_data(const BlockRef& /*block*/, std::string_view /*bytes*/) {}
  virtual void on_tunnel_end() {}

 protected:
  ~ExchangeSink() = default;
};

}  // namespace torii::upstream
