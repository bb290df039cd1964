// Unit tests for common/http_types: the small HTTP vocabulary helpers.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/http_types.hpp"

namespace {

using namespace torii::http;

std::vector<std::string> tokens(std::string_view list) {
  std::vector<std::string> out;
  for_each_list_token(list, [&](std::string_view t) { out.emplace_back(t); });
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& t : v) s += "<" + t + ">";
  return s;
}

}  // namespace

TEST_SUITE("http_types") {
  TEST_CASE("iequals") {
    struct Case {
      std::string_view a, b;
      bool equal;
    };
    const Case cases[] = {
        {"", "", true},
        {"Host", "host", true},
        {"CONTENT-LENGTH", "content-length", true},
        {"X-Foo_Bar.1", "x-fOO_bAR.1", true},
        {"host", "hosts", false},
        {"hosts", "host", false},
        {"host", "", false},
        {"a", "b", false},
        // Only ASCII letters fold: '@' (0x40) and '`' (0x60) differ by 32 too.
        {"@", "`", false},
        {"[", "{", false},
        {"\xC0", "\xE0", false},
        // Bytes after a NUL still count.
        {std::string_view("a\0b", 3), std::string_view("a\0c", 3), false},
        {std::string_view("a\0B", 3), std::string_view("A\0b", 3), true},
    };
    for (const Case& c : cases) {
      INFO("a=" << std::string(c.a) << " b=" << std::string(c.b));
      CHECK(iequals(c.a, c.b) == c.equal);
      CHECK(iequals(c.b, c.a) == c.equal);
    }
  }

  TEST_CASE("trim_ows") {
    struct Case {
      std::string_view in, out;
    };
    const Case cases[] = {
        {"", ""},
        {" ", ""},
        {" \t \t", ""},
        {"abc", "abc"},
        {"  abc", "abc"},
        {"abc\t\t", "abc"},
        {" \ta b\t c \t", "a b\t c"},
        // Only SP and HTAB are OWS.
        {"\r\nabc\r\n", "\r\nabc\r\n"},
        {"\vabc\f", "\vabc\f"},
    };
    for (const Case& c : cases) {
      INFO("in=[" << std::string(c.in) << "]");
      CHECK(trim_ows(c.in) == c.out);
    }
  }

  TEST_CASE("for_each_list_token") {
    struct Case {
      std::string_view list;
      std::vector<std::string> expected;
    };
    const Case cases[] = {
        {"", {}},
        {"close", {"close"}},
        {"keep-alive, Upgrade", {"keep-alive", "Upgrade"}},
        {"  a ,\tb\t,c  ", {"a", "b", "c"}},
        {",,a,, ,b,", {"a", "b"}},
        {" , , ", {}},
        {"gzip, chunked", {"gzip", "chunked"}},
        {"timeout=5, max=100", {"timeout=5", "max=100"}},
        {"a b, c", {"a b", "c"}},
    };
    for (const Case& c : cases) {
      INFO("list=[" << std::string(c.list) << "]");
      CHECK(join(tokens(c.list)) == join(c.expected));
    }
  }

  TEST_CASE("is_hop_by_hop") {
    for (std::string_view name :
         {"Connection", "connection", "Keep-Alive", "KEEP-ALIVE", "Proxy-Connection", "TE", "te",
          "Trailer", "Transfer-Encoding", "transfer-encoding", "Upgrade", "Proxy-Authenticate"}) {
      INFO("name=" << std::string(name));
      CHECK(is_hop_by_hop(name));
    }
    for (std::string_view name : {"Host", "Content-Length", "Content-Type", "Trailers", "Tea", "T",
                                  "Via", "X-Forwarded-For", "Connection2",
                                  "Upgrade-Insecure-Requests", "Authorization", "Keep", ""}) {
      INFO("name=" << std::string(name));
      CHECK_FALSE(is_hop_by_hop(name));
    }
  }

  TEST_CASE("is_idempotent_method") {
    for (std::string_view m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
      INFO("method=" << std::string(m));
      CHECK(is_idempotent_method(m));
    }
    // POST/PATCH/CONNECT are not; methods are case-sensitive (RFC 9110 9.1).
    for (std::string_view m : {"POST", "PATCH", "CONNECT", "get", "Get", "PROPFIND", ""}) {
      INFO("method=" << std::string(m));
      CHECK_FALSE(is_idempotent_method(m));
    }
  }

  TEST_CASE("reason_phrase") {
    struct Case {
      int status;
      std::string_view reason;
    };
    const Case cases[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {304, "Not Modified"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {417, "Expectation Failed"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {0, "Unknown"},
        {299, "Unknown"},
        {599, "Unknown"},
        {-1, "Unknown"},
    };
    for (const Case& c : cases) {
      INFO("status=" << c.status);
      CHECK(reason_phrase(c.status) == c.reason);
    }
  }

  TEST_CASE("is_token_char matches RFC 9110 tchar for every byte") {
    const std::string_view specials = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; ++c) {
      const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      const bool digit = c >= '0' && c <= '9';
      const bool special = c != 0 && specials.find(static_cast<char>(c)) != std::string_view::npos;
      INFO("byte=" << c);
      CHECK(is_token_char(static_cast<unsigned char>(c)) == (alpha || digit || special));
    }
  }

}  // TEST_SUITE
