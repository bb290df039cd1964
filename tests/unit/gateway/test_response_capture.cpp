// Unit tests for gateway/response_capture: building a StoredResponse from an
// upstream answer while it is relayed, and refreshing one after a 304
// (RFC 9111 3, 4.2.3, 4.3.4).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/policy.hpp"
#include "cache/stored_response.hpp"
#include "common/http1_parser.hpp"
#include "gateway/header_rewrite.hpp"
#include "gateway/response_capture.hpp"
#include "tests/unit/support/heads.hpp"

namespace {

using torii::cache::format_http_date;
using torii::cache::ResponsePtr;
using torii::cache::StoreDecision;
using torii::cache::StoredResponse;
using torii::cache::StorePolicy;
using torii::gateway::CaptureRequest;
using torii::gateway::ForwardContext;
using torii::gateway::refreshed_by_304;
using torii::gateway::ResponseCapture;
using torii::http::Http1Parser;
using torii::http::iequals;
using torii::http::MessageHead;

constexpr int64_t kT = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
constexpr int64_t kTms = kT * 1000;

const ForwardContext kCtx{"10.0.0.1", "http", "rid-1", "upstream.internal:9000"};

using torii::test::Parsed;

Parsed parse(Http1Parser::Kind kind, const std::string& text) {
  return torii::test::parse_head(kind, text);
}
Parsed request(const std::string& headers = "") {
  return parse(Http1Parser::Kind::kRequest,
               "GET /items?page=2 HTTP/1.1\r\nHost: Shop.Example\r\n" + headers + "\r\n");
}
Parsed response(const std::string& headers, int status = 200) {
  return parse(Http1Parser::Kind::kResponse,
               "HTTP/1.1 " + std::to_string(status) + " Whatever\r\n" + headers + "\r\n");
}

StorePolicy policy(uint64_t max_object_size = 1 << 20) {
  StorePolicy p;
  p.default_ttl_ms = 60'000;
  p.max_object_size = max_object_size;
  return p;
}

CaptureRequest capture_request(const MessageHead& req, int64_t request_time_ms = kTms) {
  return CaptureRequest{&req, "http\nshop.example\n/items\npage=2", "shop.example", "/items?page=2",
                        request_time_ms};
}

std::vector<std::string> lines(std::string_view head) { return torii::test::head_lines(head); }
std::vector<std::string> values(std::string_view head, std::string_view name) {
  return torii::test::header_values(head, name);
}
bool has(std::string_view head, std::string_view name) { return !values(head, name).empty(); }

constexpr const char* kStorable =
    "Content-Type: text/plain\r\n"
    "Content-Length: 11\r\n"
    "Connection: keep-alive, X-Hop\r\n"
    "Keep-Alive: timeout=5\r\n"
    "X-Hop: 1\r\n"
    "ETag: \"v1\"\r\n"
    "Last-Modified: Sat, 05 Nov 1994 08:49:37 GMT\r\n"
    "Vary: Accept-Language, accept-encoding\r\n"
    "Cache-Control: max-age=120, stale-while-revalidate=30\r\n"
    "X-Custom: yes\r\n";

}  // namespace

TEST_SUITE("response capture") {
  TEST_CASE("a storable response is captured: head, body, validators, Vary and freshness") {
    const Parsed req = request("Accept-Language: en\r\n");
    const Parsed resp = response(kStorable);
    ResponseCapture cap;
    CHECK_FALSE(cap.active());
    const StoreDecision d =
        cap.start(capture_request(req.head(), kTms - 200), resp.head(), policy(), kCtx, kTms);
    REQUIRE(d.storable);
    CHECK(d.reason.empty());
    CHECK(d.lifetime_ms == 120'000);
    CHECK(cap.active());
    CHECK_FALSE(cap.dropped_too_large());

    cap.add({"hello", " "});
    cap.add({});
    cap.add({"", "world"});
    const ResponsePtr r = cap.finish();
    REQUIRE(r != nullptr);
    CHECK_FALSE(cap.active());
    CHECK(cap.finish() == nullptr);  // handed over once

    const std::string_view head = r->head();
    INFO("stored head:\n" << std::string(head));
    CHECK(r->body() == "hello world");
    CHECK(r->bytes.size() == r->head_size + 2 + 11);  // head, blank line, body
    CHECK(r->status_line() == "HTTP/1.1 200 Whatever\r\n");
    CHECK(lines(head)[0] == "HTTP/1.1 200 Whatever");
    CHECK(head.ends_with("\r\n"));
    CHECK_FALSE(head.ends_with("\r\n\r\n"));  // no blank line
    CHECK(head.find("hello") == std::string_view::npos);
    // Per-response and hop-by-hop fields are not stored.
    CHECK_FALSE(has(head, "Content-Length"));
    CHECK_FALSE(has(head, "Connection"));
    CHECK_FALSE(has(head, "Keep-Alive"));
    CHECK_FALSE(has(head, "X-Hop"));  // named by Connection
    CHECK_FALSE(has(head, "Transfer-Encoding"));
    CHECK_FALSE(has(head, "X-Request-Id"));
    CHECK_FALSE(has(head, "Age"));
    // End-to-end fields are, plus Via and a Date.
    CHECK(values(head, "Content-Type") == std::vector<std::string>{"text/plain"});
    CHECK(values(head, "X-Custom") == std::vector<std::string>{"yes"});
    CHECK(values(head, "ETag") == std::vector<std::string>{"\"v1\""});
    CHECK(values(head, "Via") == std::vector<std::string>{"1.1 torii"});
    CHECK(values(head, "Date") == std::vector<std::string>{format_http_date(kT)});

    CHECK(r->status == 200);
    CHECK(r->key == "http\nshop.example\n/items\npage=2");
    CHECK(r->host == "shop.example");
    CHECK(r->target == "/items?page=2");
    CHECK(r->etag == "\"v1\"");
    CHECK(r->last_modified == "Sat, 05 Nov 1994 08:49:37 GMT");
    CHECK(r->vary_names == std::vector<std::string>{"accept-language", "accept-encoding"});
    CHECK(r->vary_values == torii::cache::vary_values(req.head(), r->vary_names));
    CHECK(r->vary_values == "accept-language:en\naccept-encoding");
    CHECK(r->response_time_ms == kTms);
    CHECK(r->initial_age_ms == 200);  // the response delay (no Date, no Age)
    CHECK(r->lifetime_ms == 120'000);
    CHECK(r->swr_ms == 30'000);
    CHECK_FALSE(r->no_stale);
    CHECK_FALSE(r->always_revalidate);
    CHECK(r->fresh(kTms + 1000));
  }

  TEST_CASE("a chunked response: no Transfer-Encoding stored; the origin's Date and Via kept") {
    const Parsed req = request();
    const Parsed resp = response(
        "Transfer-Encoding: chunked\r\nDate: " + format_http_date(kT - 10) +
        "\r\nAge: 3\r\nVia: 1.0 edge\r\nCache-Control: no-cache\r\nX-Request-Id: up-1\r\n");
    ResponseCapture cap;
    const StoreDecision d =
        cap.start(capture_request(req.head()), resp.head(), policy(), kCtx, kTms);
    REQUIRE(d.storable);
    cap.add({"abc"});
    const ResponsePtr r = cap.finish();
    REQUIRE(r != nullptr);
    const std::string_view head = r->head();
    INFO("stored head:\n" << std::string(head));
    CHECK_FALSE(has(head, "Transfer-Encoding"));
    CHECK_FALSE(has(head, "Content-Length"));
    CHECK_FALSE(has(head, "Age"));
    CHECK_FALSE(has(head, "X-Request-Id"));
    CHECK(values(head, "Date") == std::vector<std::string>{format_http_date(kT - 10)});
    CHECK(values(head, "Via") == std::vector<std::string>{"1.0 edge, 1.1 torii"});
    CHECK(r->body() == "abc");
    // Age 3 s + no delay vs. apparent age 10 s: the larger wins.
    CHECK(r->initial_age_ms == 10'000);
    CHECK(r->always_revalidate);
    CHECK_FALSE(r->fresh(kTms));
    CHECK(r->etag.empty());
    CHECK(r->last_modified.empty());
    CHECK(r->vary_names.empty());
    CHECK(r->vary_values.empty());
  }

  TEST_CASE("the Age header counts in the initial age") {
    const Parsed req = request();
    const Parsed resp =
        response("Content-Length: 0\r\nAge: 30\r\nDate: " + format_http_date(kT) + "\r\n");
    ResponseCapture cap;
    REQUIRE(cap.start(capture_request(req.head(), kTms - 500), resp.head(), policy(), kCtx, kTms)
                .storable);
    const ResponsePtr r = cap.finish();
    REQUIRE(r != nullptr);
    CHECK(r->initial_age_ms == 30'500);
    CHECK(r->body().empty());
    CHECK(r->lifetime_ms == 60'000);  // the route's default TTL
    CHECK(r->ttl_ms(kTms) == 60'000 - 30'500);
  }

  TEST_CASE("a body over max_object_size drops the capture") {
    const Parsed req = request();
    const Parsed resp = response("Transfer-Encoding: chunked\r\n");  // length unknown up front
    ResponseCapture cap;
    REQUIRE(cap.start(capture_request(req.head()), resp.head(), policy(10), kCtx, kTms).storable);
    SUBCASE("exactly the limit is kept") {
      cap.add({"12345", "67890"});
      CHECK(cap.active());
      const ResponsePtr r = cap.finish();
      REQUIRE(r != nullptr);
      CHECK(r->body() == "1234567890");
    }
    SUBCASE("one byte more is dropped") {
      cap.add({"123456"});
      CHECK(cap.active());
      cap.add({"12345"});
      CHECK_FALSE(cap.active());
      CHECK(cap.dropped_too_large());
      cap.add({"x"});  // ignored once dropped
      CHECK_FALSE(cap.active());
      CHECK(cap.finish() == nullptr);
      CHECK(cap.dropped_too_large());
      // A new start forgets the drop.
      REQUIRE(cap.start(capture_request(req.head()), resp.head(), policy(10), kCtx, kTms).storable);
      CHECK(cap.active());
      CHECK_FALSE(cap.dropped_too_large());
    }
    SUBCASE("in a span of one add()") {
      cap.add({"1234", "5678", "901"});
      CHECK_FALSE(cap.active());
      CHECK(cap.dropped_too_large());
    }
    SUBCASE("reset forgets everything") {
      cap.add({"12345678901"});
      REQUIRE(cap.dropped_too_large());
      cap.reset();
      CHECK_FALSE(cap.dropped_too_large());
      CHECK_FALSE(cap.active());
    }
  }

  TEST_CASE("a Content-Length over max_object_size is refused up front") {
    const Parsed req = request();
    const Parsed resp = response("Content-Length: 11\r\n");
    ResponseCapture cap;
    const StoreDecision d =
        cap.start(capture_request(req.head()), resp.head(), policy(10), kCtx, kTms);
    CHECK_FALSE(d.storable);
    CHECK(d.reason == "too-large");
    CHECK_FALSE(cap.active());
    CHECK(cap.finish() == nullptr);
  }

  TEST_CASE("a non-storable response is not captured") {
    const Parsed req = request();
    ResponseCapture cap;
    SUBCASE("no-store") {
      const Parsed resp = response("Content-Length: 1\r\nCache-Control: no-store\r\n");
      const StoreDecision d =
          cap.start(capture_request(req.head()), resp.head(), policy(), kCtx, kTms);
      CHECK_FALSE(d.storable);
      CHECK(d.reason == "no-store");
    }
    SUBCASE("private") {
      const Parsed resp = response("Content-Length: 1\r\nCache-Control: private, max-age=60\r\n");
      const StoreDecision d =
          cap.start(capture_request(req.head()), resp.head(), policy(), kCtx, kTms);
      CHECK_FALSE(d.storable);
      CHECK(d.reason == "private");
    }
    SUBCASE("a 500 without explicit freshness") {
      const Parsed resp = response("Content-Length: 1\r\n", 500);
      const StoreDecision d =
          cap.start(capture_request(req.head()), resp.head(), policy(), kCtx, kTms);
      CHECK_FALSE(d.storable);
      CHECK(d.reason == "status");
    }
    CHECK_FALSE(cap.active());
    CHECK_FALSE(cap.dropped_too_large());
    cap.add({"x"});  // ignored
    CHECK(cap.finish() == nullptr);
  }

  TEST_CASE("a start on a non-storable response drops the capture in progress") {
    const Parsed req = request();
    const Parsed ok = response("Content-Length: 3\r\n");
    const Parsed no = response("Content-Length: 3\r\nCache-Control: no-store\r\n");
    ResponseCapture cap;
    REQUIRE(cap.start(capture_request(req.head()), ok.head(), policy(), kCtx, kTms).storable);
    cap.add({"abc"});
    CHECK_FALSE(cap.start(capture_request(req.head()), no.head(), policy(), kCtx, kTms).storable);
    CHECK_FALSE(cap.active());
    CHECK(cap.finish() == nullptr);
  }

  TEST_CASE("route response headers are stored with the head") {
    const Parsed req = request();
    const Parsed resp = response("Content-Length: 0\r\n");
    const std::vector<std::pair<std::string, std::string>> route_headers = {{"X-Route", "r1"}};
    ForwardContext ctx = kCtx;
    ctx.response_headers = &route_headers;
    ResponseCapture cap;
    REQUIRE(cap.start(capture_request(req.head()), resp.head(), policy(), ctx, kTms).storable);
    const ResponsePtr r = cap.finish();
    REQUIRE(r != nullptr);
    CHECK(values(r->head(), "X-Route") == std::vector<std::string>{"r1"});
  }
}

namespace {

// A stored response as a capture 100 s ago would have made it.
ResponsePtr old_entry(const MessageHead& req) {
  const Parsed resp = response(
      "Content-Length: 4\r\nETag: \"v1\"\r\nCache-Control: max-age=60, stale-if-error=5\r\n");
  ResponseCapture cap;
  const int64_t then = kTms - 100'000;
  REQUIRE(cap.start(capture_request(req, then - 50), resp.head(), policy(), kCtx, then).storable);
  cap.add({"body"});
  ResponsePtr r = cap.finish();
  REQUIRE(r != nullptr);
  REQUIRE(r->lifetime_ms == 60'000);
  REQUIRE(r->initial_age_ms == 50);
  REQUIRE_FALSE(r->fresh(kTms));
  return r;
}

}  // namespace

TEST_SUITE("response capture") {
  TEST_CASE("refreshed_by_304 without freshness in the 304 keeps the old lifetime") {
    const Parsed req = request();
    const ResponsePtr old = old_entry(req.head());
    const Parsed nm = response("ETag: \"v1\"\r\n", 304);
    const ResponsePtr r = refreshed_by_304(*old, nm.head(), req.head(), policy(), kTms - 30, kTms);
    REQUIRE(r != nullptr);
    CHECK(r != old);
    CHECK(r->bytes == old->bytes);  // same head and body
    CHECK(r->head_size == old->head_size);
    CHECK(r->etag == old->etag);
    CHECK(r->key == old->key);
    CHECK(r->status == 200);
    CHECK(r->response_time_ms == kTms);
    CHECK(r->initial_age_ms == 30);  // the 304's delay
    CHECK(r->lifetime_ms == 60'000);
    CHECK(r->sie_ms == 5'000);
    CHECK(r->fresh(kTms));
    CHECK(r->ttl_ms(kTms) == 60'000 - 30);
    // The old one is untouched (it may still be being sent).
    CHECK(old->response_time_ms == kTms - 100'000);
    CHECK_FALSE(old->fresh(kTms));
  }

  TEST_CASE("refreshed_by_304 takes a new max-age from the 304") {
    const Parsed req = request();
    const ResponsePtr old = old_entry(req.head());
    const Parsed nm =
        response("Cache-Control: max-age=300\r\nDate: " + format_http_date(kT) + "\r\n", 304);
    const ResponsePtr r = refreshed_by_304(*old, nm.head(), req.head(), policy(), kTms, kTms);
    REQUIRE(r != nullptr);
    CHECK(r->lifetime_ms == 300'000);
    CHECK(r->response_time_ms == kTms);
    CHECK(r->initial_age_ms == 0);
    CHECK(r->sie_ms == 0);  // the 304's Cache-Control replaces the old one
    CHECK(r->bytes == old->bytes);
    CHECK(r->ttl_ms(kTms + 1000) == 299'000);
  }

  TEST_CASE("refreshed_by_304: the 304's Date and Age make the initial age") {
    const Parsed req = request();
    const ResponsePtr old = old_entry(req.head());
    const Parsed nm = response(
        "Cache-Control: s-maxage=90\r\nAge: 7\r\nDate: " + format_http_date(kT - 2) + "\r\n", 304);
    const ResponsePtr r =
        refreshed_by_304(*old, nm.head(), req.head(), policy(), kTms - 1000, kTms);
    CHECK(r->lifetime_ms == 90'000);
    CHECK(r->no_stale);
    CHECK(r->initial_age_ms == 8'000);  // max(2 s apparent, 7 s Age + 1 s delay)
  }

  TEST_CASE("refreshed_by_304 with Expires") {
    const Parsed req = request();
    const ResponsePtr old = old_entry(req.head());
    const Parsed nm = response(
        "Date: " + format_http_date(kT) + "\r\nExpires: " + format_http_date(kT + 45) + "\r\n",
        304);
    const ResponsePtr r = refreshed_by_304(*old, nm.head(), req.head(), policy(), kTms, kTms);
    CHECK(r->lifetime_ms == 45'000);
  }

  TEST_CASE("refreshed_by_304 with a 304 that says no-store keeps the old lifetime") {
    const Parsed req = request();
    const ResponsePtr old = old_entry(req.head());
    const Parsed nm = response("Cache-Control: no-store, max-age=999\r\n", 304);
    const ResponsePtr r = refreshed_by_304(*old, nm.head(), req.head(), policy(), kTms, kTms);
    CHECK(r->lifetime_ms == 60'000);
    CHECK(r->response_time_ms == kTms);
  }
}
