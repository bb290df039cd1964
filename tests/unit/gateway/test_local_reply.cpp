// Unit tests for gateway/local_reply: the gateway's own responses.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "common/error.hpp"
#include "common/http1_parser.hpp"
#include "gateway/local_reply.hpp"

namespace {

using torii::Error;
using torii::gateway::build_local_reply;
using torii::http::Http1Parser;

struct Reply {
  int status = 0;
  std::string reason;
  std::string body;
  std::string content_length, request_id, retry_after, connection, server, content_type;
  int header_count = 0;
};

// Parses a complete reply; REQUIREs that it is exactly one well-formed response.
Reply parse_reply(std::string_view text, bool head_request) {
  INFO("reply:\n" << std::string(text));
  Http1Parser p(Http1Parser::Kind::kResponse, {});
  p.expect_no_body(head_request);
  Reply out;
  size_t off = 0;
  auto r = p.feed(text.data(), text.size());
  REQUIRE(r.event == Http1Parser::Event::kHeadComplete);
  off += r.consumed;
  const auto& h = p.head();
  out.status = h.status;
  out.reason = std::string(h.reason);
  out.content_length = std::string(h.get("content-length"));
  out.request_id = std::string(h.get("x-request-id"));
  out.retry_after = std::string(h.get("retry-after"));
  out.connection = std::string(h.get("connection"));
  out.server = std::string(h.get("server"));
  out.content_type = std::string(h.get("content-type"));
  out.header_count = static_cast<int>(h.headers.size());
  r = p.feed(text.data() + off, text.size() - off);
  out.body.append(r.body);
  off += r.consumed;
  REQUIRE(r.event == Http1Parser::Event::kMessageComplete);
  CHECK(off == text.size());  // nothing after the message
  return out;
}

}  // namespace

TEST_SUITE("local_reply") {
  TEST_CASE("a 404 reply, byte for byte") {
    std::string out;
    build_local_reply(Error::kNoRoute, "rid-7", false, false, false, out);
    CHECK(out ==
          "HTTP/1.1 404 Not Found\r\n"
          "Server: torii\r\n"
          "Content-Type: text/plain; charset=utf-8\r\n"
          "Content-Length: 14\r\n"
          "X-Request-Id: rid-7\r\n"
          "\r\n"
          "404 Not Found\n");
  }

  TEST_CASE("extra header lines go before Connection and the blank line") {
    std::string out;
    build_local_reply(Error::kUpstreamConnectFailed, "rid-8", false, true, false, out,
                      "Cache-Status: torii; fwd=miss; detail=x\r\n");
    CHECK(out.find("X-Request-Id: rid-8\r\nCache-Status: torii; fwd=miss; detail=x\r\n"
                   "Connection: close\r\n\r\n") != std::string::npos);
  }

  TEST_CASE("every error gives a well-formed reply") {
    for (int i = 0; i <= static_cast<int>(Error::kInternal); ++i) {
      const Error e = static_cast<Error>(i);
      const int status = e == Error::kNone ? 500 : torii::error_status(e);
      const std::string reason(torii::http::reason_phrase(status));
      const std::string body = std::to_string(status) + " " + reason + "\n";
      INFO("error: " << std::string(torii::error_name(e)));
      CHECK(reason != "Unknown");
      for (int flags = 0; flags < 16; ++flags) {
        const bool head = (flags & 1) != 0;
        const bool close = (flags & 2) != 0;
        const bool keep_alive_10 = (flags & 4) != 0;
        const std::string rid = (flags & 8) != 0 ? "req-1" : "";
        INFO("head=" << head << " close=" << close << " http10_keep_alive=" << keep_alive_10
                     << " rid=" << rid);
        std::string out = "previous bytes";
        build_local_reply(e, rid, head, close, keep_alive_10, out);
        REQUIRE(out.rfind("previous bytes", 0) == 0);  // appended
        const Reply r = parse_reply(std::string_view(out).substr(14), head);
        CHECK(r.status == status);
        CHECK(r.reason == reason);
        CHECK(r.server == "torii");
        CHECK(r.content_type == "text/plain; charset=utf-8");
        // A HEAD reply announces the length of the body it leaves out.
        CHECK(r.content_length == std::to_string(body.size()));
        CHECK(r.body == (head ? "" : body));
        CHECK(r.request_id == rid);
        CHECK(r.retry_after == (status == 503 ? "1" : ""));
        CHECK(r.connection == (close ? "close" : keep_alive_10 ? "keep-alive" : ""));
        const int expected_headers = 3 + (rid.empty() ? 0 : 1) + (status == 503 ? 1 : 0) +
                                     ((close || keep_alive_10) ? 1 : 0);
        CHECK(r.header_count == expected_headers);
      }
    }
  }

  TEST_CASE("statuses of the gateway's errors") {
    struct Case {
      Error error;
      int status;
    };
    const Case cases[] = {
        {Error::kBadRequest, 400},
        {Error::kNoRoute, 404},
        {Error::kMethodNotAllowed, 405},
        {Error::kHeaderReadTimeout, 408},
        {Error::kBodyReadTimeout, 408},
        {Error::kBodyTooLarge, 413},
        {Error::kUriTooLong, 414},
        {Error::kHeadersTooLarge, 431},
        {Error::kNotImplemented, 501},
        {Error::kVersionNotSupported, 505},
        {Error::kUpstreamConnectFailed, 502},
        {Error::kUpstreamReset, 502},
        {Error::kUpstreamBadResponse, 502},
        {Error::kUpstreamPoolFull, 503},
        {Error::kUpstreamConnectTimeout, 504},
        {Error::kUpstreamResponseTimeout, 504},
        {Error::kShuttingDown, 503},
        {Error::kInternal, 500},
        {Error::kNone, 500},
    };
    for (const Case& c : cases) {
      INFO("error: " << std::string(torii::error_name(c.error)));
      std::string out;
      build_local_reply(c.error, "", false, true, false, out);
      CHECK(out.rfind("HTTP/1.1 " + std::to_string(c.status) + " ", 0) == 0);
    }
  }

}  // TEST_SUITE
