// Unit tests for gateway/header_rewrite: the head sent upstream and the head
// sent back to the client (RFC 9110 7.6, RFC 9112 3.2, 6.1; X-Forwarded-*).
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1_parser.hpp"
#include "gateway/header_rewrite.hpp"
#include "gateway/request_checks.hpp"
#include "tests/unit/support/heads.hpp"

namespace {

using torii::Error;
using torii::gateway::build_client_response_head;
using torii::gateway::build_upstream_request_head;
using torii::gateway::ClientBodyMode;
using torii::gateway::ClientResponsePlan;
using torii::gateway::ForwardContext;
using torii::gateway::is_sane_request_id;
using torii::http::Http1Parser;
using torii::http::iequals;
using torii::http::MessageHead;

const ForwardContext kCtx{"10.0.0.1", "http", "rid-1", "upstream.internal:9000"};

using torii::test::Parsed;

Parsed parse(Http1Parser::Kind kind, std::string_view text, bool no_body = false) {
  return torii::test::parse_head(kind, text, no_body);
}
Parsed parse_request(std::string_view text) { return parse(Http1Parser::Kind::kRequest, text); }
Parsed parse_response(std::string_view text, bool no_body = false) {
  return parse(Http1Parser::Kind::kResponse, text, no_body);
}

std::vector<std::string> lines(std::string_view head) { return torii::test::head_lines(head); }
std::vector<std::string> values(std::string_view head, std::string_view name) {
  return torii::test::header_values(head, name);
}

std::string one(std::string_view head, std::string_view name) {
  const auto v = values(head, name);
  INFO("header " << std::string(name) << " in:\n" << std::string(head));
  REQUIRE(v.size() == 1);
  return v[0];
}

bool has(std::string_view head, std::string_view name) { return !values(head, name).empty(); }

// "[a][b]" for comparing lists in CHECKs (doctest prints strings, not vectors).
std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "[" + x + "]";
  return s;
}

std::string upstream_head(std::string_view request, const ForwardContext& ctx = kCtx) {
  const Parsed p = parse_request(request);
  std::string out = "<prefix>";  // the head is appended, not assigned
  build_upstream_request_head(p.head(), ctx, out);
  REQUIRE(out.rfind("<prefix>", 0) == 0);
  out.erase(0, 8);
  // What we send parses as exactly one request head.
  Http1Parser check(Http1Parser::Kind::kRequest, {});
  const auto r = check.feed(out.data(), out.size());
  INFO("upstream head:\n" << out);
  CHECK(r.event == Http1Parser::Event::kHeadComplete);
  CHECK(r.consumed == out.size());
  return out;
}

struct ClientHead {
  std::string text;
  ClientResponsePlan plan;
};

ClientHead client_head(std::string_view response, std::string_view request, bool want_close = false,
                       const ForwardContext& ctx = kCtx) {
  const Parsed req = parse_request(request);
  const bool head_request = req.head().method == "HEAD";
  const Parsed resp = parse_response(response, head_request);
  ClientHead h;
  h.text = "<prefix>";
  h.plan = build_client_response_head(resp.head(), req.head(), ctx, want_close, h.text);
  REQUIRE(h.text.rfind("<prefix>", 0) == 0);
  h.text.erase(0, 8);
  Http1Parser check(Http1Parser::Kind::kResponse, {});
  check.expect_no_body(head_request);
  const auto r = check.feed(h.text.data(), h.text.size());
  INFO("client head:\n" << h.text);
  CHECK(r.event == Http1Parser::Event::kHeadComplete);
  CHECK(r.consumed == h.text.size());
  return h;
}

const char* mode_name(ClientBodyMode m) {
  switch (m) {
    case ClientBodyMode::kNone:
      return "none";
    case ClientBodyMode::kIdentity:
      return "identity";
    case ClientBodyMode::kChunked:
      return "chunked";
  }
  return "?";
}

}  // namespace

TEST_SUITE("header_rewrite") {
  // ---------------------------------------------------------------------------
  // Upstream request head
  // ---------------------------------------------------------------------------

  TEST_CASE("upstream head of a plain GET, byte for byte") {
    const std::string out = upstream_head(
        "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  t/1 \r\nAccept: */*\r\n\r\n");
    CHECK(out ==
          "GET /p?q=1 HTTP/1.1\r\n"
          "Host: example.com\r\n"
          "User-Agent: t/1\r\n"
          "Accept: */*\r\n"
          "X-Forwarded-For: 10.0.0.1\r\n"
          "X-Forwarded-Proto: http\r\n"
          "X-Forwarded-Host: example.com\r\n"
          "Via: 1.1 torii\r\n"
          "X-Request-Id: rid-1\r\n"
          "\r\n");
  }

  TEST_CASE("hop-by-hop headers and headers named by Connection are not forwarded") {
    const std::string out = upstream_head(
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nconnection: "
        "x-other-secret\r\n"
        "Keep-Alive: timeout=300\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\n"
        "Proxy-Connection: keep-alive\r\nX-Secret: s\r\nX-Other-Secret: o\r\nX-Kept: k\r\n\r\n");
    for (const char* n : {"Connection", "Keep-Alive", "TE", "Trailer", "Upgrade",
                          "Proxy-Connection", "X-Secret", "X-Other-Secret"}) {
      INFO("header " << std::string(n) << " in:\n" << out);
      CHECK_FALSE(has(out, n));
    }
    CHECK(one(out, "X-Kept") == "k");
    CHECK(one(out, "Host") == "h");
  }

  TEST_CASE("Connection: close from the client is not forwarded upstream") {
    const std::string out = upstream_head("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    CHECK_FALSE(has(out, "Connection"));
  }

  TEST_CASE("X-Forwarded-For is appended to") {
    struct Case {
      std::string headers;
      std::string expected;
    };
    const Case cases[] = {
        {"", "10.0.0.1"},
        {"X-Forwarded-For: 1.1.1.1\r\n", "1.1.1.1, 10.0.0.1"},
        {"X-Forwarded-For: 1.1.1.1, 3.3.3.3\r\nx-forwarded-for: 2.2.2.2\r\n",
         "1.1.1.1, 3.3.3.3, 2.2.2.2, 10.0.0.1"},
        {"X-Forwarded-For:\r\n", "10.0.0.1"},
    };
    for (const Case& c : cases) {
      INFO("client headers: " << c.headers);
      const std::string out = upstream_head("GET / HTTP/1.1\r\nHost: h\r\n" + c.headers + "\r\n");
      CHECK(one(out, "X-Forwarded-For") == c.expected);
    }
    ForwardContext v6 = kCtx;
    v6.client_ip = "2001:db8::7";
    CHECK(one(upstream_head("GET / HTTP/1.1\r\nHost: h\r\n\r\n", v6), "X-Forwarded-For") ==
          "2001:db8::7");
  }

  TEST_CASE(
      "X-Forwarded-Proto, X-Forwarded-Host and X-Request-Id are set, never taken from the client") {
    ForwardContext ctx = kCtx;
    ctx.proto = "https";
    ctx.request_id = "gw-42";
    const std::string out = upstream_head(
        "GET / HTTP/1.1\r\nHost: real.example\r\nX-Forwarded-Proto: gopher\r\nX-Forwarded-Host: "
        "evil.example\r\n"
        "X-Request-Id: client-id\r\n\r\n",
        ctx);
    CHECK(one(out, "X-Forwarded-Proto") == "https");
    CHECK(one(out, "X-Forwarded-Host") == "real.example");
    CHECK(one(out, "X-Request-Id") == "gw-42");
  }

  TEST_CASE("Via is appended to") {
    CHECK(one(upstream_head("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), "Via") == "1.1 torii");
    CHECK(
        one(upstream_head(
                "GET / HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred, 1.1 p.example\r\nVia: 1.1 q\r\n\r\n"),
            "Via") == "1.0 fred, 1.1 p.example, 1.1 q, 1.1 torii");
    CHECK(one(upstream_head("GET / HTTP/1.0\r\nHost: h\r\n\r\n"), "Via") == "1.0 torii");
    // No empty list element is generated (RFC 9110 5.6.1).
    CHECK(one(upstream_head("GET / HTTP/1.1\r\nHost: h\r\nVia:\r\n\r\n"), "Via") == "1.1 torii");
  }

  TEST_CASE("HTTP/1.0 requests go upstream as HTTP/1.1 with a Host") {
    const std::string out = upstream_head("GET /old HTTP/1.0\r\nUser-Agent: x\r\n\r\n");
    CHECK(lines(out)[0] == "GET /old HTTP/1.1");
    CHECK(one(out, "Host") == "upstream.internal:9000");
    CHECK_FALSE(has(out, "X-Forwarded-Host"));
    // A Host the client sent is kept.
    const std::string with_host = upstream_head("GET /old HTTP/1.0\r\nHost: mine.example\r\n\r\n");
    CHECK(one(with_host, "Host") == "mine.example");
  }

  TEST_CASE("body framing headers") {
    struct Case {
      const char* name;
      std::string request;
      const char* content_length;  // nullptr: no Content-Length line
      bool chunked;
    };
    const Case cases[] = {
        {"GET", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", nullptr, false},
        {"HEAD", "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", nullptr, false},
        {"POST with CL", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", "5", false},
        {"POST with CL 0", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", "0", false},
        {"POST without body", "POST / HTTP/1.1\r\nHost: h\r\n\r\n", "0", false},
        {"PUT without body", "PUT / HTTP/1.1\r\nHost: h\r\n\r\n", "0", false},
        {"PATCH without body", "PATCH / HTTP/1.1\r\nHost: h\r\n\r\n", "0", false},
        {"big CL", "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
         "18446744073709551615", false},
        {"chunked POST", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
         nullptr, true},
        {"chunked GET", "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", nullptr,
         true},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      const std::string out = upstream_head(c.request);
      if (c.content_length != nullptr) {
        CHECK(one(out, "Content-Length") == c.content_length);
      } else {
        CHECK_FALSE(has(out, "Content-Length"));
      }
      if (c.chunked) {
        CHECK(one(out, "Transfer-Encoding") == "chunked");
      } else {
        CHECK_FALSE(has(out, "Transfer-Encoding"));
      }
    }
  }

  TEST_CASE("Expect is answered by the gateway, not forwarded") {
    const std::string out = upstream_head(
        "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    CHECK_FALSE(has(out, "Expect"));
    CHECK(one(out, "Content-Length") == "3");
  }

  TEST_CASE("request-target forms") {
    struct Case {
      const char* request_line;
      const char* expected;
    };
    const Case cases[] = {
        {"GET /a/b?c=d HTTP/1.1", "GET /a/b?c=d HTTP/1.1"},
        {"OPTIONS * HTTP/1.1", "OPTIONS * HTTP/1.1"},
        {"GET http://example.com/a/b?c HTTP/1.1", "GET /a/b?c HTTP/1.1"},
        {"GET https://example.com:8443/x HTTP/1.1", "GET /x HTTP/1.1"},
        {"GET http://example.com HTTP/1.1", "GET / HTTP/1.1"},
        // RFC 9112 3.2.1: an empty path becomes "/" and the query is kept.
        {"GET http://example.com?x=1 HTTP/1.1", "GET /?x=1 HTTP/1.1"},
        {"GET http://example.com?next=/admin HTTP/1.1", "GET /?next=/admin HTTP/1.1"},
    };
    for (const Case& c : cases) {
      INFO("request line: " << std::string(c.request_line));
      const std::string out =
          upstream_head(std::string(c.request_line) + "\r\nHost: example.com\r\n\r\n");
      CHECK(lines(out)[0] == std::string(c.expected));
    }
  }

  TEST_CASE("absolute-form: the target's authority wins over Host (RFC 9112 3.2.2)") {
    // "When an origin server receives a request with an absolute-form of
    // request-target, the origin server MUST ignore the received Host header
    // field (if any) and instead use the host information of the
    // request-target." Refusing the mismatch with 400 is fine too; forwarding
    // the target's path with the other Host is not.
    const std::string request = "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n";
    const Parsed p = parse_request(request);
    if (torii::gateway::check_request_head(p.head()).error == Error::kNone) {
      const std::string out = upstream_head(request);
      CHECK(one(out, "Host") == "a.example");
    }
  }

  TEST_CASE("transfer codings other than chunked are not dropped on the way") {
    // A body that is gzip-coded then chunked is relayed raw; telling the
    // upstream it is only "chunked" changes its meaning (RFC 9112 6.1). The
    // request must be refused (400/501) or keep its codings.
    const std::string request =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    const Parsed p = parse_request(request);
    if (torii::gateway::check_request_head(p.head()).error == Error::kNone) {
      const std::string out = upstream_head(request);
      CHECK(one(out, "Transfer-Encoding") == "gzip, chunked");
    }
  }

  // ---------------------------------------------------------------------------
  // Client response head
  // ---------------------------------------------------------------------------

  const std::string kGet11 = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string kGet11Close = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  const std::string kGet10 = "GET / HTTP/1.0\r\n\r\n";
  const std::string kGet10KeepAlive = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  const std::string kHead11 = "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string kHead10KeepAlive = "HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";

  const std::string kRespCL =
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n";
  const std::string kRespChunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string kRespUntilClose = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";

  TEST_CASE("client response framing plan") {
    struct Case {
      const char* name;
      std::string response;
      std::string request;
      bool want_close;
      ClientBodyMode mode;
      bool close_after;
      const char* content_length;     // nullptr: none
      const char* transfer_encoding;  // nullptr: none
      const char* connection;         // nullptr: none
    };
    const Case cases[] = {
        {"CL to 1.1", kRespCL, kGet11, false, ClientBodyMode::kIdentity, false, "5", nullptr,
         nullptr},
        {"chunked to 1.1", kRespChunked, kGet11, false, ClientBodyMode::kChunked, false, nullptr,
         "chunked", nullptr},
        {"until-close to 1.1", kRespUntilClose, kGet11, false, ClientBodyMode::kChunked, false,
         nullptr, "chunked", nullptr},
        {"CL to 1.0 keep-alive", kRespCL, kGet10KeepAlive, false, ClientBodyMode::kIdentity, false,
         "5", nullptr, "keep-alive"},
        {"CL to 1.0", kRespCL, kGet10, false, ClientBodyMode::kIdentity, true, "5", nullptr,
         "close"},
        {"chunked to 1.0 keep-alive", kRespChunked, kGet10KeepAlive, false,
         ClientBodyMode::kIdentity, true, nullptr, nullptr, "close"},
        {"until-close to 1.0", kRespUntilClose, kGet10, false, ClientBodyMode::kIdentity, true,
         nullptr, nullptr, "close"},
        {"client asked to close", kRespCL, kGet11Close, false, ClientBodyMode::kIdentity, true, "5",
         nullptr, "close"},
        {"gateway wants to close", kRespCL, kGet11, true, ClientBodyMode::kIdentity, true, "5",
         nullptr, "close"},
        {"gateway wants to close, chunked", kRespChunked, kGet11, true, ClientBodyMode::kChunked,
         true, nullptr, "chunked", "close"},
        {"HEAD: CL kept", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", kHead11, false,
         ClientBodyMode::kNone, false, "1234", nullptr, nullptr},
        {"HEAD: chunked kept", kRespChunked, kHead11, false, ClientBodyMode::kNone, false, nullptr,
         "chunked", nullptr},
        {"HEAD from 1.0: no chunked", kRespChunked, kHead10KeepAlive, false, ClientBodyMode::kNone,
         false, nullptr, nullptr, "keep-alive"},
        {"HEAD: until-close", kRespUntilClose, kHead11, false, ClientBodyMode::kNone, false,
         nullptr, nullptr, nullptr},
        {"204", "HTTP/1.1 204 No Content\r\n\r\n", kGet11, false, ClientBodyMode::kNone, false,
         nullptr, nullptr, nullptr},
        {"304 keeps CL", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"e\"\r\n\r\n",
         kGet11, false, ClientBodyMode::kNone, false, "100", nullptr, nullptr},
        {"upstream closes: not the client's business",
         "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n", kGet11, false,
         ClientBodyMode::kIdentity, false, "5", nullptr, nullptr},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      const ClientHead h = client_head(c.response, c.request, c.want_close);
      INFO("client head:\n" << h.text);
      CHECK(std::string(mode_name(h.plan.mode)) == mode_name(c.mode));
      CHECK(h.plan.close_after == c.close_after);
      auto check_header = [&](const char* header, const char* expected) {
        INFO("header " << std::string(header));
        if (expected != nullptr) {
          CHECK(joined(values(h.text, header)) == "[" + std::string(expected) + "]");
        } else {
          CHECK(values(h.text, header).empty());
        }
      };
      check_header("Content-Length", c.content_length);
      check_header("Transfer-Encoding", c.transfer_encoding);
      check_header("Connection", c.connection);
    }
  }

  TEST_CASE("an empty body with Content-Length: 0 stays delimited on a kept-alive connection") {
    // Without Content-Length (and without chunked framing) the client reads
    // the response until the connection closes (RFC 9112 6.3 rule 8), so the
    // next response on the connection would become this one's body.
    struct Case {
      const char* name;
      std::string response, request;
      const char* connection;
    };
    const Case cases[] = {
        {"200 to 1.1", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", kGet11, nullptr},
        {"404 to 1.1", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", kGet11, nullptr},
        {"200 to 1.0 keep-alive", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", kGet10KeepAlive,
         "keep-alive"},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      const ClientHead h = client_head(c.response, c.request);
      INFO("client head:\n" << h.text);
      CHECK_FALSE(h.plan.close_after);
      CHECK(h.plan.mode != ClientBodyMode::kChunked);
      CHECK_FALSE(has(h.text, "Transfer-Encoding"));
      CHECK(joined(values(h.text, "Content-Length")) == "[0]");
      if (c.connection != nullptr) CHECK(one(h.text, "Connection") == c.connection);
    }
  }

  TEST_CASE("client response: status line, hop-by-hop removal, Via, X-Request-Id") {
    const ClientHead h = client_head(
        "HTTP/1.0 201 Fine Thanks\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: "
        "timeout=5\r\nX-Hop: 1\r\n"
        "Upgrade: h2\r\nProxy-Connection: keep-alive\r\nTrailer: X-Sum\r\nProxy-Authenticate: "
        "Basic\r\n"
        "Via: 1.1 origin\r\nX-Request-Id: upstream-id\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        "Content-Length: 2\r\n\r\n",
        kGet11);
    const auto all = lines(h.text);
    REQUIRE_FALSE(all.empty());
    CHECK(all[0] == "HTTP/1.1 201 Fine Thanks");
    for (const char* n : {"Connection", "Keep-Alive", "X-Hop", "Upgrade", "Proxy-Connection",
                          "Trailer", "Proxy-Authenticate"}) {
      INFO("header " << std::string(n));
      CHECK_FALSE(has(h.text, n));
    }
    CHECK(one(h.text, "Via") == "1.1 origin, 1.0 torii");
    CHECK(one(h.text, "X-Request-Id") == "rid-1");
    CHECK(joined(values(h.text, "Set-Cookie")) == "[a=1][b=2]");
    CHECK(one(h.text, "Content-Length") == "2");
  }

  TEST_CASE("client response: an empty reason phrase gets the standard one") {
    const Parsed req = parse_request(kGet11);
    MessageHead resp;
    resp.status = 404;
    resp.framing = torii::http::BodyFraming::kNone;
    std::string out;
    (void)build_client_response_head(resp, req.head(), kCtx, false, out);
    CHECK(lines(out)[0] == "HTTP/1.1 404 Not Found");
    CHECK(one(out, "Via") == "1.1 torii");
  }

  TEST_CASE("transfer codings of a response are not dropped on the way") {
    // gzip-then-chunked relayed raw to an HTTP/1.1 client must keep "gzip".
    const ClientHead h =
        client_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", kGet11);
    CHECK(h.plan.mode == ClientBodyMode::kChunked);
    CHECK(one(h.text, "Transfer-Encoding") == "gzip, chunked");
  }

  TEST_CASE("is_sane_request_id") {
    struct Case {
      std::string id;
      bool sane;
    };
    const Case cases[] = {
        {"abc", true},
        {"0", true},
        {"A-b_c.d:e", true},
        {"550e8400-e29b-41d4-a716-446655440000", true},
        {std::string(128, 'x'), true},
        {std::string(129, 'x'), false},
        {"", false},
        {"a b", false},
        {"a/b", false},
        {"a,b", false},
        {"a\tb", false},
        {"a\r\nX-Evil: 1", false},
        {"caf\xC3\xA9", false},
        {std::string("a\0b", 3), false},
    };
    for (const Case& c : cases) {
      INFO("id=" << c.id);
      CHECK(is_sane_request_id(c.id) == c.sane);
    }
  }

}  // TEST_SUITE
