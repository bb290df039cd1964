// Proxy header rewriting (pure): builds the head sent upstream from a
// client's request, and the head sent to the client from an upstream's
// response (RFC 9110 7.6: hop-by-hop removal, Via; de-facto X-Forwarded-*).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/http1_parser.hpp"

namespace torii::gateway {

struct ForwardContext {
  std::string_view client_ip;           // appended to X-Forwarded-For
  std::string_view proto = "http";      // X-Forwarded-Proto
  std::string_view request_id;          // X-Request-Id sent both ways
  std::string_view upstream_authority;  // Host for HTTP/1.0 requests without one
  // The route's own response headers, added after the upstream's.
  const std::vector<std::pair<std::string, std::string>>* response_headers = nullptr;
  // Extra header lines ("Name: value\r\n"...) added to the head being built
  // (Cache-Status on a response, validators on a revalidation request).
  std::string_view extra_lines = {};
  // Sent instead of the request's method (a cache turns a HEAD miss into a GET).
  std::string_view method_override = {};
  // Sent instead of the target's path and query (an API key removed from the query).
  std::string_view path_and_query_override = {};
  // The request asks to switch protocols (WebSocket...): Upgrade and
  // "Connection: upgrade" go upstream instead of being dropped as hop-by-hop.
  bool upgrade = false;
  // Request headers (lower-case names) not forwarded: a route's API-key
  // header, and the header the gateway itself sets to the verified subject.
  std::string_view drop_headers[2] = {};
};

// A GET asking to switch protocols: an Upgrade header and "upgrade" among
// the Connection tokens (RFC 9110 7.8). HTTP/1.0 cannot upgrade.
bool is_upgrade_request(const http::MessageHead& request);

// The client's "101 Switching Protocols" head from the upstream's:
// end-to-end headers kept (Sec-WebSocket-Accept...), hop-by-hop ones
// dropped, Upgrade and "Connection: upgrade" sent.
void build_switching_protocols_head(const http::MessageHead& response, std::string_view request_id,
                                    std::string& out);

// Appends the upstream request head ("GET / HTTP/1.1\r\n...\r\n") to out.
// The body keeps the client's framing (Content-Length or chunked).
void build_upstream_request_head(const http::MessageHead& req, const ForwardContext& ctx,
                                 std::string& out);

// How the response body travels to the client. Bodies are always relayed
// from the decoded bytes (see Http1Parser::decoded()).
enum class ClientBodyMode : uint8_t {
  kNone,      // HEAD, 1xx, 204, 304, or an empty body
  kIdentity,  // bytes as they are: Content-Length framed, or until close (HTTP/1.0 client)
  kChunked,   // chunk framing written by Torii (upstream chunked or close-delimited)
};

struct ClientResponsePlan {
  ClientBodyMode mode = ClientBodyMode::kNone;
  bool close_after = false;  // the client connection ends after this response
};

// Decides framing and appends the client response head to out.
// `want_close`: the gateway intends to close the client connection after
// this response (client asked, draining, or an error).
ClientResponsePlan build_client_response_head(const http::MessageHead& resp,
                                              const http::MessageHead& req,
                                              const ForwardContext& ctx, bool want_close,
                                              std::string& out);

// Appends the head a cache stores for an upstream response: the status
// line and the end-to-end headers as build_client_response_head would send
// them, without the fields that differ per response (framing,
// Content-Length, Connection, Age, X-Request-Id) and without the blank
// line. A Date is added when the upstream sent none (RFC 9110 6.6.1).
void build_stored_response_head(const http::MessageHead& resp, const ForwardContext& ctx,
                                std::string_view date_if_missing, std::string& out);

// A sane client-supplied X-Request-Id is kept: 1..128 chars of [A-Za-z0-9._:-].
bool is_sane_request_id(std::string_view id);

}  // namespace torii::gateway
