// Unit tests for gateway/request_checks: the rules a request head must pass
// before it is routed (RFC 9112 3.2, 6.1, 6.3; RFC 9110 10.1.1).
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/http1_parser.hpp"
#include "gateway/request_checks.hpp"

namespace {

using torii::Error;
using torii::gateway::check_request_head;
using torii::gateway::expects_continue;
using torii::http::BodyFraming;
using torii::http::Http1Parser;
using torii::http::MessageHead;

// A parsed head; the parser owns the storage its views point into.
struct Parsed {
  std::unique_ptr<Http1Parser> parser;
  const MessageHead& head() const { return parser->head(); }
};

Parsed parse(std::string_view request) {
  Parsed p{std::make_unique<Http1Parser>(Http1Parser::Kind::kRequest, torii::http::ParserLimits{})};
  const auto r = p.parser->feed(request.data(), request.size());
  INFO("request: " << std::string(request)
                   << " parser error: " << std::string(p.parser->error_reason()));
  REQUIRE(r.event == Http1Parser::Event::kHeadComplete);
  return p;
}

std::string name(Error e) { return std::string(torii::error_name(e)); }

}  // namespace

TEST_SUITE("request_checks") {
  TEST_CASE("check_request_head on parsed requests") {
    struct Case {
      const char* name;
      std::string request;
      Error expected;
    };
    const Case cases[] = {
        {"plain GET", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", Error::kNone},
        {"POST with a body", "POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
         Error::kNone},
        {"chunked POST", "POST /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
         Error::kNone},
        {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", Error::kNone},
        {"absolute-form http", "GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n", Error::kNone},
        {"absolute-form https", "GET https://h/x HTTP/1.1\r\nHost: h\r\n\r\n", Error::kNone},
        {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", Error::kNone},
        {"HTTP/1.0 with Host", "GET / HTTP/1.0\r\nHost: h\r\n\r\n", Error::kNone},
        {"empty Host (RFC 9112 3.2)", "GET / HTTP/1.1\r\nHost:\r\n\r\n", Error::kNone},
        {"Host with port", "GET / HTTP/1.1\r\nHost: h.example:8080\r\n\r\n", Error::kNone},
        {"Expect: 100-continue",
         "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
         Error::kNone},
        {"Expect: 100-Continue",
         "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
         Error::kNone},

        {"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
         Error::kNotImplemented},
        {"asterisk-form with GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", Error::kBadRequest},
        {"absolute-form ftp", "GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", Error::kBadRequest},
        {"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Error::kBadRequest},
        {"duplicate Host, mixed case", "GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n",
         Error::kBadRequest},
        {"duplicate Host on HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
         Error::kBadRequest},
        {"missing Host on HTTP/1.1", "GET / HTTP/1.1\r\nX-Host: h\r\n\r\n", Error::kBadRequest},
        {"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
         Error::kBadRequest},
        {"TE gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
         Error::kBadRequest},
        {"TE identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
         Error::kBadRequest},
        {"TE xchunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
         Error::kBadRequest},
        {"chunked twice across two TE fields (fuzzer find)",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\t chunked\t,\tbbb1.1\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         Error::kBadRequest},
        {"Expect: something else", "GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n",
         Error::kBadRequest},
        {"Expect: a list",
         "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\nContent-Length: 1\r\n\r\n",
         Error::kBadRequest},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      const Parsed p = parse(c.request);
      const auto result = check_request_head(p.head());
      CHECK(name(result.error) == name(c.expected));
      // A refusal always says why.
      CHECK(result.reason.empty() == (result.error == Error::kNone));
    }
  }

  TEST_CASE("a Host header with an invalid value is refused (RFC 9112 3.2)") {
    // "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any
    // request message that contains more than one Host header field line or a
    // Host header field with an invalid field value."
    for (const char* host : {"exa mple.com", "example.com/path", "user@example.com",
                             "example.com:80x", "a.example, b.example"}) {
      INFO("Host: " << std::string(host));
      const Parsed p = parse(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n");
      CHECK(name(check_request_head(p.head()).error) == name(Error::kBadRequest));
    }
  }

  TEST_CASE("check_request_head on constructed heads") {
    // Shapes llhttp (strict) never produces: the checks must still hold.
    struct Case {
      const char* name;
      std::string_view method, target;
      int host_count, content_length_count;
      bool te;
      BodyFraming framing;
      uint8_t minor;
      Error expected;
    };
    const Case cases[] = {
        {"baseline", "GET", "/", 1, 0, false, BodyFraming::kNone, 1, Error::kNone},
        {"authority-form on GET", "GET", "example.com:80", 1, 0, false, BodyFraming::kNone, 1,
         Error::kBadRequest},
        {"relative path", "GET", "a/b", 1, 0, false, BodyFraming::kNone, 1, Error::kBadRequest},
        {"empty target", "GET", "", 1, 0, false, BodyFraming::kNone, 1, Error::kBadRequest},
        {"scheme without slashes", "GET", "http:/x", 1, 0, false, BodyFraming::kNone, 1,
         Error::kBadRequest},
        {"OPTIONS * on 1.0", "OPTIONS", "*", 0, 0, false, BodyFraming::kNone, 0, Error::kNone},
        {"duplicate Content-Length", "POST", "/", 1, 2, false, BodyFraming::kContentLength, 1,
         Error::kBadRequest},
        {"TE with Content-Length framing", "POST", "/", 1, 1, true, BodyFraming::kContentLength, 1,
         Error::kBadRequest},
        {"TE without chunked", "POST", "/", 1, 0, true, BodyFraming::kNone, 1, Error::kBadRequest},
        {"CONNECT before other checks", "CONNECT", "h:443", 0, 2, true, BodyFraming::kNone, 1,
         Error::kNotImplemented},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      MessageHead h;
      h.method = c.method;
      h.target = c.target;
      h.host_count = c.host_count;
      h.content_length_count = c.content_length_count;
      h.has_transfer_encoding = c.te;
      h.framing = c.framing;
      h.version_minor = c.minor;
      CHECK(name(check_request_head(h).error) == name(c.expected));
    }
  }

  TEST_CASE("expects_continue") {
    struct Case {
      const char* header;  // nullptr: no Expect header
      bool expected;
    };
    const Case cases[] = {
        {nullptr, false},
        {"100-continue", true},
        {"100-CONTINUE", true},
        {"  100-continue  ", true},
        {"100-continued", false},
        {"200-ok", false},
        {"", false},
    };
    for (const Case& c : cases) {
      INFO("Expect: " << std::string(c.header ? c.header : "(none)"));
      std::string req = "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n";
      if (c.header != nullptr) req += std::string("Expect:") + c.header + "\r\n";
      const Parsed p = parse(req + "\r\n");
      CHECK(expects_continue(p.head()) == c.expected);
    }
  }

}  // TEST_SUITE

TEST_CASE("an absolute-form target needs a valid authority (it becomes the upstream Host)") {
  for (const char* target : {"http://P[[[P.4%/x", "http:///x", "http://user@/x"}) {
    INFO("target: " << std::string(target));
    const Parsed p = parse(std::string("GET ") + target + " HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(name(check_request_head(p.head()).error) == name(Error::kBadRequest));
  }
  const Parsed ok = parse("GET http://a.example:8080/x HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(name(check_request_head(ok.head()).error) == name(Error::kNone));
}
