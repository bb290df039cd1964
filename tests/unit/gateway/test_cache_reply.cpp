// Unit tests for gateway/cache_reply: the per-response tail of a cache hit,
// the 304 built from a stored response (RFC 9110 15.4.5) and the
// Cache-Status value (RFC 9211).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/stored_response.hpp"
#include "common/http1_parser.hpp"
#include "gateway/cache_reply.hpp"
#include "gateway/header_rewrite.hpp"

namespace {

using torii::cache::StoredResponse;
using torii::gateway::append_hit_start;
using torii::gateway::append_not_modified_head;
using torii::gateway::cache_status_value;
using torii::gateway::HitHeadContext;
using torii::http::Http1Parser;
using torii::http::MessageHead;

StoredResponse stored(std::string_view head, std::string_view body, int status = 200) {
  StoredResponse r;
  r.assign(head, body);
  r.status = status;
  return r;
}

// What follows the stored head on the wire: the per-response fields and
// the blank line (append_hit_start writes the status line first; the
// stored fields come after them in the borrowed span).
void append_hit_tail(const StoredResponse& r, const HitHeadContext& c, std::string& out) {
  std::string start;
  append_hit_start(r, c, start);
  REQUIRE(start.starts_with(r.status_line()));
  out += start.substr(r.status_line().size());
  out += "\r\n";
}

std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\r\n", pos);
    if (end == std::string_view::npos) end = text.size();
    out.emplace_back(text.substr(pos, end - pos));
    pos = end + 2;
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "[" + x + "]";
  return s;
}

HitHeadContext ctx(std::string_view status = "torii; hit; ttl=10", int64_t age = 5) {
  HitHeadContext c;
  c.request_id = "rid-7";
  c.cache_status = status;
  c.age_s = age;
  return c;
}

// The stored head followed by the tail parses as one response head; returns
// the parsed framing for checks.
struct ParsedHit {
  std::unique_ptr<Http1Parser> parser;
  const MessageHead& head() const { return parser->head(); }
};
ParsedHit parse_full(const std::string& head_and_tail) {
  ParsedHit p{
      std::make_unique<Http1Parser>(Http1Parser::Kind::kResponse, torii::http::ParserLimits{})};
  const auto r = p.parser->feed(head_and_tail.data(), head_and_tail.size());
  INFO("response: " << head_and_tail);
  REQUIRE(r.event == Http1Parser::Event::kHeadComplete);
  return p;
}

constexpr std::string_view kHead200 = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n";

}  // namespace

TEST_SUITE("cache reply") {
  TEST_CASE("a hit on the wire: owned start + borrowed fields and body parse as one response") {
    const StoredResponse r =
        stored("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v1\"\r\n", "hello world");
    std::string wire;
    append_hit_start(r, ctx(), wire);
    CHECK(wire.starts_with("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n"));
    wire += r.after_status_line(true);
    const ParsedHit p = parse_full(wire);
    CHECK(p.head().status == 200);
    CHECK(p.head().content_length == 11);
    CHECK(p.head().get("etag") == "\"v1\"");
    CHECK(p.head().get("content-type") == "text/plain");
    CHECK(p.head().get("age") == "5");
    CHECK(wire.ends_with("\r\n\r\nhello world"));
    // HEAD: the same head, no body.
    CHECK(r.after_status_line(false).ends_with("ETag: \"v1\"\r\n\r\n"));
  }

  TEST_CASE("hit tail of a 200: Content-Length, Age, Cache-Status, X-Request-Id, blank line") {
    const StoredResponse r = stored(kHead200, "hello world");
    std::string out = "<prefix>";
    append_hit_tail(r, ctx(), out);
    CHECK(out ==
          "<prefix>Content-Length: 11\r\nAge: 5\r\nCache-Status: torii; hit; ttl=10\r\n"
          "X-Request-Id: rid-7\r\n\r\n");
    const ParsedHit p = parse_full(std::string(r.head()) + out.substr(8));
    CHECK(p.head().status == 200);
    CHECK(p.head().framing == torii::http::BodyFraming::kContentLength);
    CHECK(p.head().content_length == 11);
  }

  TEST_CASE("hit tail of an empty 200 still says Content-Length: 0") {
    const StoredResponse r = stored(kHead200, "");
    std::string out;
    append_hit_tail(r, ctx(), out);
    CHECK(lines(out)[0] == "Content-Length: 0");
  }

  TEST_CASE("Content-Length is written for every status with a body") {
    for (int status : {200, 203, 300, 301, 308, 404, 410, 501}) {
      CAPTURE(status);
      const StoredResponse r =
          stored("HTTP/1.1 " + std::to_string(status) + " X\r\n", "abc", status);
      std::string out;
      append_hit_tail(r, ctx(), out);
      CHECK(out.starts_with("Content-Length: 3\r\n"));
    }
  }

  TEST_CASE("no Content-Length for 204, 304 and 1xx") {
    for (int status : {204, 304, 100, 103}) {
      CAPTURE(status);
      const StoredResponse r = stored("HTTP/1.1 " + std::to_string(status) + " X\r\n", "", status);
      std::string out;
      append_hit_tail(r, ctx(), out);
      CHECK(out.find("Content-Length") == std::string::npos);
      CHECK(out == "Age: 5\r\nCache-Status: torii; hit; ttl=10\r\nX-Request-Id: rid-7\r\n\r\n");
    }
  }

  TEST_CASE("Age") {
    const StoredResponse r = stored(kHead200, "x");
    std::string out;
    SUBCASE("zero") {
      append_hit_tail(r, ctx("torii; hit", 0), out);
      CHECK(lines(out)[1] == "Age: 0");
    }
    SUBCASE("large") {
      append_hit_tail(r, ctx("torii; hit", 86400LL * 365 * 10), out);
      CHECK(lines(out)[1] == "Age: 315360000");
    }
    SUBCASE("negative clamps to 0") {
      append_hit_tail(r, ctx("torii; hit", -3), out);
      CHECK(lines(out)[1] == "Age: 0");
      out.clear();
      append_hit_tail(r, ctx("torii; hit", INT64_MIN), out);
      CHECK(lines(out)[1] == "Age: 0");
    }
  }

  TEST_CASE("Connection lines") {
    const StoredResponse r = stored(kHead200, "x");
    HitHeadContext c = ctx();
    std::string out;
    SUBCASE("keep-alive HTTP/1.1: none") {
      append_hit_tail(r, c, out);
      CHECK(out.find("Connection") == std::string::npos);
    }
    SUBCASE("close") {
      c.close = true;
      append_hit_tail(r, c, out);
      CHECK(lines(out) == std::vector<std::string>{"Content-Length: 1", "Age: 5",
                                                   "Cache-Status: torii; hit; ttl=10",
                                                   "X-Request-Id: rid-7", "Connection: close", ""});
      const ParsedHit p = parse_full(std::string(r.head()) + out);
      CHECK_FALSE(p.head().keep_alive);
    }
    SUBCASE("HTTP/1.0 keep-alive") {
      c.http10_keep_alive = true;
      append_hit_tail(r, c, out);
      CHECK(lines(out)[4] == "Connection: keep-alive");
    }
    SUBCASE("close wins over HTTP/1.0 keep-alive") {
      c.close = true;
      c.http10_keep_alive = true;
      append_hit_tail(r, c, out);
      CHECK(out.find("Connection: close\r\n") != std::string::npos);
      CHECK(out.find("keep-alive") == std::string::npos);
    }
  }

  TEST_CASE("304 keeps only the listed fields of the stored head") {
    const std::string head =
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain\r\n"
        "ETag: \"a\"\r\n"
        "Cache-Control: max-age=60\r\n"
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "X-Other: 1\r\n"
        "Content-Location: /doc.en\r\n"
        "Expires: Sun, 06 Nov 1994 08:50:37 GMT\r\n"
        "Last-Modified: Sat, 05 Nov 1994 08:49:37 GMT\r\n"
        "Vary: Accept-Language\r\n"
        "Content-Encoding: gzip\r\n"
        "Set-Cookie: a=b\r\n"
        "Dated: no\r\n"
        "ETagged: no\r\n"
        "Via: 1.1 origin, 1.1 torii\r\n";
    const StoredResponse r = stored(head, "the body");
    HitHeadContext c = ctx("torii; hit; ttl=50", 10);
    std::string out = "<prefix>";
    append_not_modified_head(r, c, out);
    REQUIRE(out.starts_with("<prefix>"));
    out.erase(0, 8);
    CHECK(joined(lines(out)) ==
          joined({"HTTP/1.1 304 Not Modified", "ETag: \"a\"", "Cache-Control: max-age=60",
                  "Date: Sun, 06 Nov 1994 08:49:37 GMT", "Content-Location: /doc.en",
                  "Expires: Sun, 06 Nov 1994 08:50:37 GMT",
                  "Last-Modified: Sat, 05 Nov 1994 08:49:37 GMT", "Vary: Accept-Language",
                  "Via: 1.1 origin, 1.1 torii", "Age: 10", "Cache-Status: torii; hit; ttl=50",
                  "X-Request-Id: rid-7", ""}));
    CHECK(out.ends_with("\r\n\r\n"));
    CHECK(out.find("the body") == std::string::npos);
    CHECK(out.find("Content-Length") == std::string::npos);
    // It is one complete 304 head with no body.
    Http1Parser check(Http1Parser::Kind::kResponse, {});
    const auto res = check.feed(out.data(), out.size());
    CHECK(res.event == Http1Parser::Event::kHeadComplete);
    CHECK(check.head().status == 304);
  }

  TEST_CASE("304 field names match case-insensitively") {
    const StoredResponse r = stored(
        "HTTP/1.1 200 OK\r\netag: \"x\"\r\nCACHE-CONTROL: max-age=1\r\nx-y: z\r\nvary: a\r\n", "");
    std::string out;
    append_not_modified_head(r, ctx(), out);
    CHECK(joined(lines(out)) ==
          joined({"HTTP/1.1 304 Not Modified", "etag: \"x\"", "CACHE-CONTROL: max-age=1", "vary: a",
                  "Age: 5", "Cache-Status: torii; hit; ttl=10", "X-Request-Id: rid-7", ""}));
  }

  TEST_CASE("304 of a head with only a status line, and its Connection line") {
    const StoredResponse r = stored("HTTP/1.1 200 OK\r\n", "body");
    HitHeadContext c = ctx();
    c.close = true;
    std::string out;
    append_not_modified_head(r, c, out);
    CHECK(out ==
          "HTTP/1.1 304 Not Modified\r\nAge: 5\r\nCache-Status: torii; hit; ttl=10\r\n"
          "X-Request-Id: rid-7\r\nConnection: close\r\n\r\n");
  }

  // A route header such as Strict-Transport-Security is sent on a 304
  // relayed from the origin, so a 304 from the cache carries it too.
  TEST_CASE("304 keeps the route's own response headers") {
    Http1Parser parser(Http1Parser::Kind::kResponse, {});
    const std::string resp =
        "HTTP/1.1 200 OK\r\nETag: \"a\"\r\nContent-Length: 4\r\nDate: Sun, 06 Nov 1994 08:49:37 "
        "GMT\r\n\r\n";
    REQUIRE(parser.feed(resp.data(), resp.size()).event == Http1Parser::Event::kHeadComplete);
    const std::vector<std::pair<std::string, std::string>> route_headers = {
        {"Strict-Transport-Security", "max-age=63072000"}};
    torii::gateway::ForwardContext fctx{"10.0.0.1", "http", "rid-1", "up:80"};
    fctx.response_headers = &route_headers;
    std::string head;
    torii::gateway::build_stored_response_head(parser.head(), fctx, "", head);
    StoredResponse r;
    r.assign(head, "body");
    REQUIRE(std::string_view(r.head()).find("Strict-Transport-Security") != std::string::npos);
    std::string out;
    HitHeadContext c = ctx();
    c.route_headers = &route_headers;
    append_not_modified_head(r, c, out);
    CHECK(out.find("Via: 1.1 torii\r\n") != std::string::npos);
    CHECK(out.find("Strict-Transport-Security: max-age=63072000\r\n") != std::string::npos);
  }

  TEST_CASE("Cache-Status values") {
    SUBCASE("hit with ttl") {
      CHECK(cache_status_value("", 0, true, 12, false, false, "") == "torii; hit; ttl=12");
    }
    SUBCASE("hit, stale, with a negative ttl and a detail") {
      CHECK(cache_status_value("", 0, true, -3, false, false, "stale-while-revalidate") ==
            "torii; hit; ttl=-3; detail=stale-while-revalidate");
    }
    SUBCASE("hit without ttl") {
      CHECK(cache_status_value("", 0, false, 99, false, false, "") == "torii; hit");
    }
    SUBCASE("fwd=miss, stored") {
      CHECK(cache_status_value("miss", 200, false, 0, true, false, "") ==
            "torii; fwd=miss; fwd-status=200; stored");
      CHECK(cache_status_value("miss", 0, false, 0, true, false, "") == "torii; fwd=miss; stored");
    }
    SUBCASE("fwd=stale with fwd-status and detail") {
      CHECK(cache_status_value("stale", 304, true, 60, true, false, "revalidated") ==
            "torii; fwd=stale; fwd-status=304; ttl=60; stored; detail=revalidated");
      CHECK(cache_status_value("stale", 502, false, 0, false, false, "stale-if-error") ==
            "torii; fwd=stale; fwd-status=502; detail=stale-if-error");
    }
    SUBCASE("collapsed") {
      CHECK(cache_status_value("miss", 0, false, 0, false, true, "") ==
            "torii; fwd=miss; collapsed");
    }
    SUBCASE("uri-miss with a reason") {
      CHECK(cache_status_value("uri-miss", 200, false, 0, false, false, "no-store") ==
            "torii; fwd=uri-miss; fwd-status=200; detail=no-store");
    }
    SUBCASE("every part, in order") {
      CHECK(cache_status_value("vary-miss", 200, true, 0, true, true, "x") ==
            "torii; fwd=vary-miss; fwd-status=200; ttl=0; stored; collapsed; detail=x");
    }
  }
}
