// Unit tests for cache/policy: Cache-Control parsing, HTTP dates, what a
// shared cache stores and for how long, ages, 304s, Vary and cache keys
// (RFC 9111; RFC 9110 5.6.7, 8.8.3, 13.1, 13.2.2).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cache/policy.hpp"
#include "common/http1_parser.hpp"
#include "conf/config.hpp"
#include "tests/unit/support/heads.hpp"

namespace {

using torii::cache::CacheControl;
using torii::cache::client_wants_revalidation;
using torii::cache::decide_store;
using torii::cache::format_http_date;
using torii::cache::initial_age_ms;
using torii::cache::make_cache_key;
using torii::cache::MessageKind;
using torii::cache::not_modified;
using torii::cache::parse_cache_control;
using torii::cache::parse_http_date;
using torii::cache::store_policy;
using torii::cache::StoreDecision;
using torii::cache::StorePolicy;
using torii::cache::vary_names;
using torii::cache::vary_values;
using torii::conf::CacheKeyConfig;
using torii::conf::QueryKeyMode;
using torii::http::Http1Parser;
using torii::http::MessageHead;

constexpr int64_t kDeltaMax = int64_t{1} << 31;
constexpr int64_t kT = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
constexpr int64_t kTms = kT * 1000;

using torii::test::Parsed;

Parsed parse(Http1Parser::Kind kind, const std::string& text) {
  return torii::test::parse_head(kind, text);
}

Parsed request(const std::string& headers, const std::string& method = "GET",
               const std::string& target = "/") {
  return parse(Http1Parser::Kind::kRequest,
               method + " " + target + " HTTP/1.1\r\nHost: example.com\r\n" + headers + "\r\n");
}
Parsed response(const std::string& headers, int status = 200) {
  return parse(Http1Parser::Kind::kResponse,
               "HTTP/1.1 " + std::to_string(status) + " Whatever\r\n" + headers + "\r\n");
}

CacheControl cc_of(const std::string& headers, MessageKind kind = MessageKind::kResponse) {
  const Parsed p = request(headers);
  return parse_cache_control(p.head().headers, kind);
}
CacheControl cc_resp(const std::string& value) {
  return cc_of("Cache-Control: " + value + "\r\n", MessageKind::kResponse);
}
CacheControl cc_req(const std::string& value) {
  return cc_of("Cache-Control: " + value + "\r\n", MessageKind::kRequest);
}

StorePolicy policy() {
  StorePolicy p;
  p.default_ttl_ms = 60'000;
  p.default_swr_ms = 5'000;
  p.default_sie_ms = 7'000;
  p.cache_set_cookie = false;
  p.max_object_size = 1000;
  return p;
}

StoreDecision store(const std::string& req_headers, const std::string& resp_headers,
                    int status = 200, const StorePolicy& pol = policy(),
                    const std::string& method = "GET", int64_t response_time_ms = kTms) {
  const Parsed req = request(req_headers, method);
  const Parsed resp = response(resp_headers, status);
  return decide_store(req.head(), resp.head(), pol, response_time_ms);
}

std::string reason(const StoreDecision& d) { return std::string(d.reason); }

bool nm(const std::string& req_headers, std::string_view etag, std::string_view last_modified,
        const std::string& method = "GET") {
  const Parsed req = request(req_headers, method);
  return not_modified(req.head(), etag, last_modified);
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "[" + x + "]";
  return s;
}

std::string key(const std::string& target, const CacheKeyConfig& k = {},
                const std::string& headers = "", std::string_view host = "example.com") {
  const Parsed req = request(headers, "GET", target);
  return make_cache_key("https", host, target, k, req.head());
}

}  // namespace

TEST_SUITE("cache/policy") {
  // ----------------------------------------------------------- Cache-Control

  TEST_CASE("cache-control: absent") {
    const CacheControl cc = cc_of("");
    CHECK_FALSE(cc.present);
    CHECK_FALSE(cc.no_store);
    CHECK_FALSE(cc.no_cache);
    CHECK_FALSE(cc.is_private);
    CHECK_FALSE(cc.is_public);
    CHECK_FALSE(cc.max_age.has_value());
    CHECK_FALSE(cc.s_maxage.has_value());
  }

  TEST_CASE("cache-control: every boolean directive") {
    CHECK(cc_resp("no-store").no_store);
    CHECK(cc_resp("no-cache").no_cache);
    CHECK(cc_resp("private").is_private);
    CHECK(cc_resp("public").is_public);
    CHECK(cc_resp("must-revalidate").must_revalidate);
    CHECK(cc_resp("proxy-revalidate").proxy_revalidate);
    CHECK(cc_req("only-if-cached").only_if_cached);
    const CacheControl cc = cc_resp("public");
    CHECK(cc.present);
    CHECK_FALSE(cc.no_store);
    CHECK_FALSE(cc.no_cache);
    CHECK_FALSE(cc.is_private);
    CHECK_FALSE(cc.must_revalidate);
    CHECK_FALSE(cc.proxy_revalidate);
    CHECK_FALSE(cc.only_if_cached);
  }

  TEST_CASE("cache-control: every delta-seconds directive") {
    const CacheControl cc = cc_resp(
        "max-age=10, s-maxage=20, stale-while-revalidate=30, stale-if-error=40, min-fresh=50, "
        "max-stale=60");
    CHECK(cc.max_age == 10);
    CHECK(cc.s_maxage == 20);
    CHECK(cc.stale_while_revalidate == 30);
    CHECK(cc.stale_if_error == 40);
    CHECK(cc.min_fresh == 50);
    CHECK(cc.max_stale == 60);
    CHECK(cc_resp("max-age=0").max_age == 0);
    CHECK(cc_resp("max-age=007").max_age == 7);
  }

  TEST_CASE("cache-control: directive names are case-insensitive") {
    const CacheControl cc = cc_resp("No-Store, MAX-AGE=10, S-MaxAge=3, Private, PUBLIC");
    CHECK(cc.no_store);
    CHECK(cc.is_private);
    CHECK(cc.is_public);
    CHECK(cc.max_age == 10);
    CHECK(cc.s_maxage == 3);
  }

  TEST_CASE("cache-control: several fields are combined; empty elements are skipped") {
    const CacheControl cc =
        cc_of("Cache-Control: , ,no-cache,,\r\nX-Other: 1\r\ncache-control: max-age=5\r\n");
    CHECK(cc.present);
    CHECK(cc.no_cache);
    CHECK(cc.max_age == 5);
    const CacheControl empty = cc_resp("");
    CHECK(empty.present);
    CHECK_FALSE(empty.max_age.has_value());
  }

  TEST_CASE("cache-control: duplicates, the first one wins") {
    CHECK(cc_resp("max-age=5, max-age=10").max_age == 5);
    CHECK(cc_of("Cache-Control: s-maxage=1\r\nCache-Control: s-maxage=2\r\n").s_maxage == 1);
    CHECK(cc_resp("stale-if-error=3, stale-if-error=4").stale_if_error == 3);
    // A malformed first occurrence still decides.
    CHECK(cc_resp("max-age=x, max-age=10").max_age == 0);
    CHECK_FALSE(cc_req("max-age=x, max-age=10").max_age.has_value());
    CHECK_FALSE(cc_resp("stale-while-revalidate=x, stale-while-revalidate=9")
                    .stale_while_revalidate.has_value());
  }

  TEST_CASE("cache-control: quoted arguments") {
    CHECK(cc_resp("max-age=\"60\"").max_age == 60);
    CHECK(cc_resp("s-maxage=\"7\"").s_maxage == 7);
    // Commas inside quoted strings do not split directives.
    {
      const CacheControl cc = cc_resp("private=\"set-cookie, no-store\", max-age=5");
      CHECK(cc.is_private);
      CHECK_FALSE(cc.no_store);
      CHECK(cc.max_age == 5);
    }
    {
      const CacheControl cc = cc_resp("no-cache=\"x-a,max-age=9\", max-age=3");
      CHECK(cc.no_cache);
      CHECK(cc.max_age == 3);
    }
    // Escaped quotes stay inside the string.
    {
      const CacheControl cc = cc_resp(R"(x-ext="a\",no-store,b", public)");
      CHECK_FALSE(cc.no_store);
      CHECK(cc.is_public);
    }
    // An unknown directive with a quoted argument is ignored.
    {
      const CacheControl cc = cc_resp("foo=\"bar, baz\", public, community=\"UCI\"");
      CHECK(cc.is_public);
      CHECK_FALSE(cc.is_private);
    }
  }

  TEST_CASE("cache-control: unterminated quoted string swallows the rest of the field") {
    const CacheControl cc = cc_resp("max-age=5, private=\"abc, no-store");
    CHECK(cc.is_private);
    CHECK(cc.max_age == 5);
    CHECK_FALSE(cc.no_store);
    CHECK(cc_resp("max-age=\"5").max_age == 0);  // malformed
    // ... but not the next field.
    const CacheControl two =
        cc_of("Cache-Control: private=\"abc, no-store\r\nCache-Control: max-age=4\r\n");
    CHECK(two.is_private);
    CHECK_FALSE(two.no_store);
    CHECK(two.max_age == 4);
  }

  TEST_CASE("cache-control: malformed max-age / s-maxage on a response count as 0") {
    for (const char* v : {"max-age=abc", "max-age", "max-age=-1", "max-age=5s", "max-age=",
                          "max-age=5 6", "max-age=1.5", "max-age=\"\"", "max-age=\" 5\""}) {
      INFO(v);
      CHECK(cc_resp(v).max_age == 0);
    }
    CHECK(cc_resp("s-maxage=x").s_maxage == 0);
    CHECK(cc_resp("s-maxage").s_maxage == 0);
    // The one-argument form reads a response.
    const Parsed p = request("Cache-Control: max-age=zz\r\n");
    CHECK(parse_cache_control(p.head().headers).max_age == 0);
  }

  TEST_CASE("cache-control: malformed delta-seconds elsewhere count as absent") {
    for (const char* v : {"max-age=abc", "max-age", "max-age=-1", "max-age="}) {
      INFO(v);
      CHECK_FALSE(cc_req(v).max_age.has_value());
    }
    CHECK_FALSE(cc_resp("stale-while-revalidate=x").stale_while_revalidate.has_value());
    CHECK_FALSE(cc_resp("stale-while-revalidate").stale_while_revalidate.has_value());
    CHECK_FALSE(cc_resp("stale-if-error=-3").stale_if_error.has_value());
    CHECK_FALSE(cc_req("min-fresh=1e3").min_fresh.has_value());
    CHECK_FALSE(cc_req("min-fresh").min_fresh.has_value());
    CHECK_FALSE(cc_req("max-stale=x").max_stale.has_value());
    CHECK_FALSE(cc_req("max-stale=").max_stale.has_value());
  }

  TEST_CASE("cache-control: max-stale without a value accepts any staleness") {
    CHECK(cc_req("max-stale").max_stale == kDeltaMax);
    CHECK(cc_req("max-stale, max-stale=5").max_stale == kDeltaMax);
    CHECK(cc_req("max-stale=5, max-stale").max_stale == 5);
  }

  TEST_CASE("cache-control: huge delta-seconds are clamped to 2^31") {
    CHECK(cc_resp("max-age=99999999999999999999999999").max_age == kDeltaMax);
    CHECK(cc_resp("max-age=2147483648").max_age == kDeltaMax);
    CHECK(cc_resp("max-age=2147483647").max_age == kDeltaMax - 1);
  }

  TEST_CASE("cache-control: other malformed forms") {
    // Whitespace around '=' is tolerated.
    CHECK(cc_resp("max-age = 10").max_age == 10);
    // Elements without a name are skipped, the rest still counts.
    {
      const CacheControl cc = cc_resp("=5, \"no-store\", public");
      CHECK(cc.is_public);
      CHECK_FALSE(cc.no_store);
    }
    // Junk after a flag keeps the flag (conservative).
    CHECK(cc_resp("no-store junk, max-age=3").no_store);
    CHECK(cc_resp("no-store junk, max-age=3").max_age == 3);
    CHECK(cc_resp("private=").is_private);
    // Not a directive name: "max-age-x", "xmax-age".
    CHECK_FALSE(cc_req("max-age-x=1, xmax-age=2").max_age.has_value());
    // Semicolons are not separators.
    CHECK(cc_resp("max-age=3;no-store").max_age == 0);
    CHECK_FALSE(cc_resp("max-age=3;no-store").no_store);
  }

  TEST_CASE("cache-control: Pragma no-cache only without Cache-Control") {
    CHECK(cc_of("Pragma: no-cache\r\n").no_cache);
    CHECK(cc_of("Pragma: No-Cache\r\n").no_cache);
    CHECK(cc_of("Pragma: foo=\"a,b\", no-cache\r\n").no_cache);
    CHECK_FALSE(cc_of("Pragma: foo\r\n").no_cache);
    CHECK_FALSE(cc_of("Pragma: x=\"no-cache\"\r\n").no_cache);
    CHECK_FALSE(cc_of("Pragma: no-cache\r\n").present);
    CHECK_FALSE(cc_of("Pragma: no-cache\r\nCache-Control: max-age=5\r\n").no_cache);
    CHECK_FALSE(cc_of("Cache-Control: \r\nPragma: no-cache\r\n").no_cache);
  }

  // ------------------------------------------------------------------ dates

  TEST_CASE("cache: http dates, the three formats for the same instant") {
    CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == kT);
    CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == kT);
    CHECK(parse_http_date("Sun Nov  6 08:49:37 1994") == kT);
    CHECK(format_http_date(kT) == "Sun, 06 Nov 1994 08:49:37 GMT");
    // Surrounding whitespace and name case are tolerated.
    CHECK(parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT\t") == kT);
    CHECK(parse_http_date("sun, 06 NOV 1994 08:49:37 gmt") == kT);
  }

  TEST_CASE("cache: http dates, formatting") {
    CHECK(format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK(format_http_date(-1) == "Wed, 31 Dec 1969 23:59:59 GMT");
    CHECK(format_http_date(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT");
    CHECK(format_http_date(2147483648) == "Tue, 19 Jan 2038 03:14:08 GMT");
    CHECK(format_http_date(4102444799) == "Thu, 31 Dec 2099 23:59:59 GMT");
    CHECK(format_http_date(253402300799) == "Fri, 31 Dec 9999 23:59:59 GMT");
    // Out of the 4-digit year range: clamped, still 29 characters.
    CHECK(format_http_date(INT64_MAX).size() == 29);
    CHECK(format_http_date(INT64_MIN).size() == 29);
  }

  TEST_CASE("cache: http dates, round trips") {
    for (int64_t t = -2'000'000'000; t < 5'000'000'000; t += 86'399 * 37 + 13) {
      const std::string s = format_http_date(t);
      INFO(t << " " << s);
      REQUIRE(s.size() == 29);
      CHECK(parse_http_date(s) == t);
    }
    for (int64_t t : {int64_t{0}, int64_t{951868799}, int64_t{951868800}, int64_t{1709164800},
                      int64_t{253402300799}, int64_t{-62135596800}}) {
      CHECK(parse_http_date(format_http_date(t)) == t);
    }
  }

  TEST_CASE("cache: http dates, RFC 850 two-digit years and asctime days") {
    CHECK(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0);
    CHECK(parse_http_date("Friday, 31-Dec-49 23:59:59 GMT") ==
          parse_http_date("Fri, 31 Dec 2049 23:59:59 GMT"));
    CHECK(parse_http_date("Sunday, 01-Jan-50 00:00:00 GMT") ==
          parse_http_date("Sun, 01 Jan 1950 00:00:00 GMT"));
    CHECK(parse_http_date("Friday, 31-Dec-99 23:59:59 GMT") ==
          parse_http_date("Fri, 31 Dec 1999 23:59:59 GMT"));
    CHECK(parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT") == 946684800);
    CHECK(parse_http_date("Wed Nov 16 08:49:37 1994") == kT + 10 * 86400);
    CHECK(parse_http_date("Sun Nov 06 08:49:37 1994") == kT);
  }

  TEST_CASE("cache: http dates, garbage is rejected") {
    for (const char* s : {
             "",
             "0",
             "-1",
             "784111777",
             "Sun, 06 Nov 1994 08:49:37",
             "Sun, 06 Nov 1994 08:49:37 UTC",
             "Sun, 06 Nov 1994 08:49:37 GMT x",
             "Sun, 6 Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 94 08:49:37 GMT",
             "Sun,06 Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 1994 8:49:37 GMT",
             "Foo, 06 Nov 1994 08:49:37 GMT",
             "Sun, 06 Xyz 1994 08:49:37 GMT",
             "Sun, 00 Nov 1994 08:49:37 GMT",
             "Sun, 31 Nov 1994 08:49:37 GMT",
             "Sun, 29 Feb 1900 08:49:37 GMT",
             "Sun, 06 Nov 1994 24:00:00 GMT",
             "Sun, 06 Nov 1994 08:60:00 GMT",
             "Sun, 06 Nov 1994 08:49:61 GMT",
             "Sun, 06 Nov 1994 08-49-37 GMT",
             "Sun, 0a Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 1994 08:49:37 GMT\r",
             "Sun, 06-Nov-94 08:49:37 GMT",
             "Sunday, 06 Nov 1994 08:49:37 GMT",
             "Sunday, 06-Nov-1994 08:49:37 GMT",
             "Sunday, 06-Nov-94 08:49:37",
             "Sun Nov 6 08:49:37 1994",
             "Sun Nov  6 08:49:37 94",
             "Sun Nov  6 08:49:37 1994 GMT",
             "Sun Nov   6 08:49:37 1994",
             "Sun, 06 Nov 1994 08:49:37 GMTGMT",
         }) {
      INFO("'" << s << "'");
      CHECK_FALSE(parse_http_date(s).has_value());
    }
    CHECK(parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT") == 951782400);
    CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:60 GMT") == kT + 23);  // leap second
  }

  // ---------------------------------------------------------------- storing

  TEST_CASE("cache: store_policy takes the route's settings") {
    torii::conf::RouteCache route;
    route.ttl = std::chrono::milliseconds(12'345);
    route.stale_while_revalidate = std::chrono::milliseconds(111);
    route.stale_if_error = std::chrono::milliseconds(222);
    route.cache_set_cookie = true;
    route.max_object_size = 777;
    const StorePolicy p = store_policy(route);
    CHECK(p.default_ttl_ms == 12'345);
    CHECK(p.default_swr_ms == 111);
    CHECK(p.default_sie_ms == 222);
    CHECK(p.cache_set_cookie);
    CHECK(p.max_object_size == 777);
  }

  TEST_CASE("cache: a plain 200 is stored with the defaults") {
    const StoreDecision d = store("", "Content-Length: 10\r\n");
    CHECK(d.storable);
    CHECK(reason(d).empty());
    CHECK(d.lifetime_ms == 60'000);
    CHECK(d.swr_ms == 5'000);
    CHECK(d.sie_ms == 7'000);
    CHECK_FALSE(d.no_stale);
    CHECK_FALSE(d.always_revalidate);
  }

  TEST_CASE("cache: only GET responses are stored") {
    for (const char* m : {"HEAD", "POST", "PUT", "DELETE", "OPTIONS"}) {
      INFO(m);
      const StoreDecision d = store("", "Cache-Control: public, max-age=60\r\n", 200, policy(), m);
      CHECK_FALSE(d.storable);
      CHECK(reason(d) == "method");
      CHECK(d.lifetime_ms == 0);
    }
    // The method rule comes first.
    CHECK(reason(store("", "Cache-Control: no-store\r\n", 500, policy(), "POST")) == "method");
  }

  TEST_CASE("cache: no-store on the request or the response") {
    CHECK(reason(store("Cache-Control: no-store\r\n", "")) == "no-store");
    CHECK(reason(store("", "Cache-Control: no-store\r\n")) == "no-store");
    CHECK(reason(store("", "Cache-Control: max-age=60, NO-STORE\r\n")) == "no-store");
    // Before private, authorization, set-cookie, status ...
    CHECK(reason(store("Authorization: x\r\n",
                       "Cache-Control: private, no-store\r\n"
                       "Set-Cookie: a=b\r\nVary: *\r\n",
                       302)) == "no-store");
    // Pragma is not no-store.
    CHECK(store("Pragma: no-cache\r\n", "").storable);
  }

  TEST_CASE("cache: private responses are not stored") {
    CHECK(reason(store("", "Cache-Control: private\r\n")) == "private");
    CHECK(reason(store("", "Cache-Control: private, max-age=60\r\n")) == "private");
    CHECK(reason(store("", "Cache-Control: private=\"set-cookie\", max-age=60\r\n")) == "private");
    CHECK(reason(store("", "Cache-Control: public, private\r\n")) == "private");
    // Private comes before authorization.
    CHECK(reason(store("Authorization: x\r\n", "Cache-Control: private\r\n")) == "private");
  }

  TEST_CASE("cache: requests with Authorization") {
    CHECK(reason(store("Authorization: Bearer t\r\n", "")) == "authorization");
    CHECK(reason(store("authorization: \r\n", "Cache-Control: max-age=60\r\n")) == "authorization");
    CHECK(reason(store("Authorization: Bearer t\r\n", "Cache-Control: no-cache\r\n")) ==
          "authorization");
    CHECK(reason(store("Authorization: Bearer t\r\n", "Cache-Control: proxy-revalidate\r\n")) ==
          "authorization");
    CHECK(store("Authorization: Bearer t\r\n", "Cache-Control: public\r\n").storable);
    CHECK(store("Authorization: Bearer t\r\n", "Cache-Control: s-maxage=10\r\n").storable);
    CHECK(store("Authorization: Bearer t\r\n", "Cache-Control: must-revalidate\r\n").storable);
    // Other rules still apply afterwards.
    CHECK(reason(store("Authorization: Bearer t\r\n",
                       "Cache-Control: public\r\nSet-Cookie: a=b\r\n")) == "set-cookie");
  }

  TEST_CASE("cache: Set-Cookie only with cache_set_cookie") {
    CHECK(reason(store("", "Set-Cookie: a=b\r\n")) == "set-cookie");
    CHECK(reason(store("", "set-cookie: a=b\r\nCache-Control: public, max-age=9\r\n")) ==
          "set-cookie");
    StorePolicy p = policy();
    p.cache_set_cookie = true;
    CHECK(store("", "Set-Cookie: a=b\r\n", 200, p).storable);
    // Set-Cookie comes before Vary: *.
    CHECK(reason(store("", "Set-Cookie: a=b\r\nVary: *\r\n")) == "set-cookie");
  }

  TEST_CASE("cache: Vary * is not stored") {
    CHECK(reason(store("", "Vary: *\r\n")) == "vary-star");
    CHECK(reason(store("", "Vary: Accept-Encoding, *\r\n")) == "vary-star");
    CHECK(reason(store("", "Vary: Accept\r\nVary: *\r\n")) == "vary-star");
    CHECK(store("", "Vary: Accept-Encoding\r\n").storable);
    // Before too-large.
    CHECK(reason(store("", "Vary: *\r\nContent-Length: 5000\r\n")) == "vary-star");
  }

  TEST_CASE("cache: bodies above max_object_size are too large") {
    CHECK(reason(store("", "Content-Length: 1001\r\n")) == "too-large");
    CHECK(reason(store("", "Content-Length: 99999999999999\r\n")) == "too-large");
    CHECK(store("", "Content-Length: 1000\r\n").storable);
    CHECK(store("", "Content-Length: 0\r\n").storable);
    // Before the status rules.
    CHECK(reason(store("", "Content-Length: 1001\r\n", 500)) == "too-large");
  }

  TEST_CASE("cache: heuristically cacheable statuses get the default TTL") {
    for (int status : {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}) {
      INFO(status);
      const StoreDecision d = store("", "", status);
      CHECK(d.storable);
      CHECK(d.lifetime_ms == 60'000);
    }
  }

  TEST_CASE("cache: other statuses only with explicit freshness") {
    for (int status : {201, 202, 205, 302, 303, 307, 400, 401, 403, 409, 429, 500, 502, 503}) {
      INFO(status);
      CHECK(reason(store("", "", status)) == "status");
      CHECK(reason(store("", "Cache-Control: public\r\n", status)) == "status");
      CHECK(reason(store("", "Cache-Control: stale-if-error=60\r\n", status)) == "status");
      CHECK(store("", "Cache-Control: max-age=5\r\n", status).lifetime_ms == 5'000);
      CHECK(store("", "Cache-Control: s-maxage=6\r\n", status).lifetime_ms == 6'000);
      CHECK(store("", "Expires: Sun, 06 Nov 1994 08:50:37 GMT\r\n", status).lifetime_ms == 60'000);
    }
  }

  TEST_CASE("cache: 1xx, 206 and 304 are never stored") {
    CHECK(reason(store("", "Cache-Control: max-age=60\r\n", 206)) == "status");
    CHECK(reason(store("", "Cache-Control: max-age=60\r\n", 304)) == "status");
    CHECK(reason(store("", "", 304)) == "status");
    // The parser skips interim responses, so build the head by hand.
    const Parsed req = request("");
    MessageHead resp;
    resp.status = 103;
    resp.headers.push_back({"Cache-Control", "max-age=60"});
    const StoreDecision d = decide_store(req.head(), resp, policy(), kTms);
    CHECK_FALSE(d.storable);
    CHECK(reason(d) == "status");
  }

  TEST_CASE("cache: lifetime, s-maxage > max-age > Expires - Date > default") {
    const std::string date = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
    const std::string expires = "Expires: Sun, 06 Nov 1994 08:51:17 GMT\r\n";  // Date + 100 s
    CHECK(store("", date + expires + "Cache-Control: max-age=10, s-maxage=20\r\n").lifetime_ms ==
          20'000);
    CHECK(store("", date + expires + "Cache-Control: s-maxage=0, max-age=10\r\n").lifetime_ms == 0);
    CHECK(store("", date + expires + "Cache-Control: max-age=10\r\n").lifetime_ms == 10'000);
    CHECK(store("", date + expires).lifetime_ms == 100'000);
    CHECK(store("", date).lifetime_ms == 60'000);
    CHECK(store("", "Cache-Control: max-age=0\r\n").lifetime_ms == 0);
    CHECK(store("", "Cache-Control: max-age=0\r\n").storable);
    // A malformed max-age on a response means stale, not the default.
    CHECK(store("", "Cache-Control: max-age=soon\r\n").lifetime_ms == 0);
    CHECK(store("", "Cache-Control: s-maxage=soon, max-age=10\r\n").lifetime_ms == 0);
    CHECK(store("", "Cache-Control: max-age=2147483648\r\n").lifetime_ms == kDeltaMax * 1000);
  }

  TEST_CASE("cache: lifetime from Expires") {
    // Date defaults to the response time.
    CHECK(store("", "Expires: Sun, 06 Nov 1994 08:50:37 GMT\r\n", 200, policy(), "GET", kTms)
              .lifetime_ms == 60'000);
    CHECK(store("", "Expires: Sun, 06 Nov 1994 08:50:37 GMT\r\n", 200, policy(), "GET", kTms + 500)
              .lifetime_ms == 59'500);
    // An invalid Date is ignored too.
    CHECK(store("", "Date: yesterday\r\nExpires: Sun, 06 Nov 1994 08:50:37 GMT\r\n").lifetime_ms ==
          60'000);
    // Date, not the response time, when present (clock skew does not matter).
    CHECK(store("",
                "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nExpires: Sun, 06 Nov 1994 08:50:37 GMT\r\n",
                200, policy(), "GET", kTms + 3'600'000)
              .lifetime_ms == 60'000);
    // Expires in the past: expired.
    CHECK(store("",
                "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nExpires: Sun, 06 Nov 1994 08:00:00 GMT\r\n")
              .lifetime_ms == 0);
    // Other date formats.
    CHECK(store("", "Expires: Sunday, 06-Nov-94 08:50:37 GMT\r\n").lifetime_ms == 60'000);
    CHECK(store("", "Expires: Sun Nov  6 08:50:37 1994\r\n").lifetime_ms == 60'000);
  }

  TEST_CASE("cache: an invalid Expires means already expired") {
    for (const char* e : {"0", "-1", "never", ""}) {
      INFO(e);
      const StoreDecision d = store("", std::string("Expires: ") + e + "\r\n");
      CHECK(d.storable);
      CHECK(d.lifetime_ms == 0);
    }
    // ... and counts as explicit freshness for other statuses.
    CHECK(store("", "Expires: 0\r\n", 302).storable);
    // max-age still wins over an invalid Expires.
    CHECK(store("", "Expires: 0\r\nCache-Control: max-age=30\r\n").lifetime_ms == 30'000);
  }

  TEST_CASE("cache: stale-while-revalidate and stale-if-error") {
    const StoreDecision from_cc =
        store("", "Cache-Control: max-age=1, stale-while-revalidate=30, stale-if-error=40\r\n");
    CHECK(from_cc.swr_ms == 30'000);
    CHECK(from_cc.sie_ms == 40'000);
    const StoreDecision swr_only = store("", "Cache-Control: stale-while-revalidate=0\r\n");
    CHECK(swr_only.swr_ms == 0);
    CHECK(swr_only.sie_ms == 7'000);
    const StoreDecision sie_only = store("", "Cache-Control: stale-if-error=2\r\n");
    CHECK(sie_only.swr_ms == 5'000);
    CHECK(sie_only.sie_ms == 2'000);
    // Malformed: the default.
    const StoreDecision bad = store("", "Cache-Control: stale-while-revalidate=x\r\n");
    CHECK(bad.swr_ms == 5'000);
  }

  TEST_CASE("cache: must-revalidate, proxy-revalidate and s-maxage forbid serving stale") {
    for (const char* cc : {"must-revalidate", "proxy-revalidate", "s-maxage=10"}) {
      INFO(cc);
      const StoreDecision d = store("", std::string("Cache-Control: ") + cc +
                                            ", stale-while-revalidate=30, stale-if-error=40\r\n");
      CHECK(d.storable);
      CHECK(d.no_stale);
      CHECK(d.swr_ms == 0);
      CHECK(d.sie_ms == 0);
      const StoreDecision dflt = store("", std::string("Cache-Control: ") + cc + "\r\n");
      CHECK(dflt.no_stale);
      CHECK(dflt.swr_ms == 0);
      CHECK(dflt.sie_ms == 0);
    }
  }

  TEST_CASE("cache: response no-cache is stored but always revalidated") {
    for (const char* h : {"Cache-Control: no-cache\r\n", "Cache-Control: no-cache=\"x-a, x-b\"\r\n",
                          "Cache-Control: max-age=60, No-Cache\r\n", "Pragma: no-cache\r\n"}) {
      INFO(h);
      const StoreDecision d = store("", h);
      CHECK(d.storable);
      CHECK(d.always_revalidate);
    }
    CHECK_FALSE(store("", "Cache-Control: max-age=60\r\nPragma: no-cache\r\n").always_revalidate);
    // A request's no-cache does not make the stored response always revalidated.
    CHECK_FALSE(store("Cache-Control: no-cache\r\n", "").always_revalidate);
  }

  // ------------------------------------------------------------------- ages

  TEST_CASE("cache: initial age") {
    // Nothing: the response delay.
    {
      const Parsed r = response("");
      CHECK(initial_age_ms(r.head(), kTms, kTms + 200) == 200);
      CHECK(initial_age_ms(r.head(), kTms, kTms) == 0);
      CHECK(initial_age_ms(r.head(), kTms + 5, kTms) == 0);  // clock went back
    }
    // Age + response delay.
    {
      const Parsed r = response("Age: 10\r\n");
      CHECK(initial_age_ms(r.head(), kTms, kTms + 200) == 10'200);
    }
    // Date in the past: apparent age.
    {
      const Parsed r = response("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
      CHECK(initial_age_ms(r.head(), kTms + 29'900, kTms + 30'000) == 30'000);
    }
    // The larger of apparent age and corrected Age.
    {
      const Parsed r = response("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nAge: 100\r\n");
      CHECK(initial_age_ms(r.head(), kTms + 29'900, kTms + 30'000) == 100'100);
      CHECK(initial_age_ms(r.head(), kTms + 200'000, kTms + 200'000) == 200'000);
    }
    // Date in the future (origin clock ahead): apparent age 0.
    {
      const Parsed r = response("Date: Sun, 06 Nov 1994 09:49:37 GMT\r\n");
      CHECK(initial_age_ms(r.head(), kTms, kTms + 50) == 50);
    }
    // Invalid Age / Date are ignored; only the first Age counts.
    {
      const Parsed r = response("Age: soon\r\nDate: now\r\n");
      CHECK(initial_age_ms(r.head(), kTms, kTms + 50) == 50);
      const Parsed neg = response("Age: -5\r\n");
      CHECK(initial_age_ms(neg.head(), kTms, kTms + 50) == 50);
      const Parsed two = response("Age: 3\r\nAge: 9\r\n");
      CHECK(initial_age_ms(two.head(), kTms, kTms) == 3'000);
      const Parsed huge = response("Age: 999999999999999999999\r\n");
      CHECK(initial_age_ms(huge.head(), kTms, kTms) == kDeltaMax * 1000);
    }
  }

  // ------------------------------------------------------------ conditionals

  TEST_CASE("cache: If-None-Match") {
    CHECK(nm("If-None-Match: \"abc\"\r\n", "\"abc\"", ""));
    CHECK_FALSE(nm("If-None-Match: \"abc\"\r\n", "\"abd\"", ""));
    // Weak comparison, either side weak.
    CHECK(nm("If-None-Match: W/\"abc\"\r\n", "\"abc\"", ""));
    CHECK(nm("If-None-Match: \"abc\"\r\n", "W/\"abc\"", ""));
    CHECK(nm("If-None-Match: W/\"abc\"\r\n", "W/\"abc\"", ""));
    CHECK_FALSE(nm("If-None-Match: w/\"abc\"\r\n", "\"abc\"", ""));
    // Lists, and several fields.
    CHECK(nm("If-None-Match: \"x\", W/\"y\" ,\"abc\"\r\n", "\"abc\"", ""));
    CHECK(nm("If-None-Match: \"x\"\r\nIf-None-Match: \"abc\"\r\n", "\"abc\"", ""));
    CHECK_FALSE(nm("If-None-Match: \"x\", \"y\"\r\n", "\"abc\"", ""));
    // Commas inside an entity-tag.
    CHECK(nm("If-None-Match: \"a,b\"\r\n", "\"a,b\"", ""));
    CHECK_FALSE(nm("If-None-Match: \"a,b\"\r\n", "\"a\"", ""));
    CHECK_FALSE(nm("If-None-Match: \"a,b\"\r\n", "\"b\"", ""));
    // "*" matches any stored response.
    CHECK(nm("If-None-Match: *\r\n", "\"abc\"", ""));
    CHECK(nm("If-None-Match: *\r\n", "", ""));
    // No stored ETag: no match.
    CHECK_FALSE(nm("If-None-Match: \"abc\"\r\n", "", "Sun, 06 Nov 1994 08:49:37 GMT"));
    // Malformed elements are skipped.
    CHECK(nm("If-None-Match: abc, \"abc\"\r\n", "\"abc\"", ""));
    CHECK_FALSE(nm("If-None-Match: abc\r\n", "abc", ""));
    CHECK_FALSE(nm("If-None-Match: \"abc\r\n", "\"abc\"", ""));
    // HEAD too; other methods never get a 304.
    CHECK(nm("If-None-Match: \"abc\"\r\n", "\"abc\"", "", "HEAD"));
    CHECK_FALSE(nm("If-None-Match: \"abc\"\r\n", "\"abc\"", "", "POST"));
  }

  TEST_CASE("cache: If-Modified-Since") {
    const char* lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    CHECK(nm("If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n", "", lm));        // equal
    CHECK(nm("If-Modified-Since: Sun, 06 Nov 1994 09:00:00 GMT\r\n", "", lm));        // later
    CHECK_FALSE(nm("If-Modified-Since: Sun, 06 Nov 1994 08:49:36 GMT\r\n", "", lm));  // earlier
    CHECK(nm("If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n", "", lm));
    CHECK(nm("If-Modified-Since: Sun Nov  6 08:49:37 1994\r\n", "", lm));
    CHECK_FALSE(nm("If-Modified-Since: yesterday\r\n", "", lm));
    CHECK_FALSE(nm("If-Modified-Since: Sun, 06 Nov 1994 09:00:00 GMT\r\n", "", ""));
    CHECK_FALSE(nm("If-Modified-Since: Sun, 06 Nov 1994 09:00:00 GMT\r\n", "", "garbage"));
    CHECK_FALSE(nm("", "\"abc\"", lm));
    CHECK(nm("If-Modified-Since: Sun, 06 Nov 1994 09:00:00 GMT\r\n", "", lm, "HEAD"));
    CHECK_FALSE(nm("If-Modified-Since: Sun, 06 Nov 1994 09:00:00 GMT\r\n", "", lm, "DELETE"));
  }

  TEST_CASE("cache: If-None-Match takes precedence over If-Modified-Since") {
    const char* lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    const std::string ims = "If-Modified-Since: Sun, 06 Nov 1994 09:00:00 GMT\r\n";
    CHECK_FALSE(nm("If-None-Match: \"other\"\r\n" + ims, "\"abc\"", lm));
    CHECK(
        nm("If-None-Match: \"abc\"\r\n"
           "If-Modified-Since: Sun, 06 Nov 1994 08:00:00 GMT\r\n",
           "\"abc\"", lm));
    // Even when there is no stored ETag.
    CHECK_FALSE(nm("If-None-Match: \"abc\"\r\n" + ims, "", lm));
  }

  // ------------------------------------------------------------------- Vary

  TEST_CASE("cache: vary_names") {
    {
      const Parsed r = response("");
      CHECK(vary_names(r.head()).empty());
    }
    {
      const Parsed r = response(
          "Vary: Accept-Encoding, accept-encoding ,User-Agent,,\r\nVARY: Accept, USER-AGENT\r\n");
      CHECK(joined(vary_names(r.head())) == "[accept-encoding][user-agent][accept]");
    }
    {
      const Parsed r = response("Vary: Accept, *\r\n");
      CHECK(joined(vary_names(r.head())) == "[accept][*]");
    }
  }

  TEST_CASE("cache: vary_values") {
    const std::vector<std::string> names = {"accept-encoding", "accept-language"};
    auto values = [&](const std::string& headers) {
      const Parsed r = request(headers);
      return vary_values(r.head(), names);
    };
    const std::string a = values("Accept-Encoding: gzip, br\r\nAccept-Language: en\r\n");
    CHECK(a == "accept-encoding:gzip,br\naccept-language:en");
    // Whitespace around commas and field splitting do not matter.
    CHECK(values("accept-encoding: gzip ,\t br\r\nAccept-Language: en\r\n") == a);
    CHECK(values("Accept-Encoding: gzip\r\nAccept-Language: en\r\nAccept-Encoding: br\r\n") == a);
    // Order of values and case do.
    CHECK(values("Accept-Encoding: br, gzip\r\nAccept-Language: en\r\n") != a);
    CHECK(values("Accept-Encoding: GZIP, br\r\nAccept-Language: en\r\n") != a);
    // Absent differs from empty.
    const std::string absent = values("Accept-Language: en\r\n");
    const std::string empty = values("Accept-Encoding:\r\nAccept-Language: en\r\n");
    CHECK(absent != empty);
    CHECK(absent == "accept-encoding\naccept-language:en");
    CHECK(empty == "accept-encoding:\naccept-language:en");
    // A value cannot pose as the next name.
    CHECK(values("Accept-Encoding: x\r\n") != values("Accept-Language: x\r\n"));
    // Whitespace inside quoted strings is kept.
    {
      const Parsed r1 = request("X-Q: \"a , b\"\r\n");
      const Parsed r2 = request("X-Q: \"a,b\"\r\n");
      CHECK(vary_values(r1.head(), {"x-q"}) == "x-q:\"a , b\"");
      CHECK(vary_values(r1.head(), {"x-q"}) != vary_values(r2.head(), {"x-q"}));
    }
    {
      const Parsed r = request("");
      CHECK(vary_values(r.head(), {}).empty());
    }
  }

  // -------------------------------------------------------------- cache keys

  TEST_CASE("cache: key, scheme, host and path") {
    CHECK(key("/a/b?x=1") == "https\nexample.com\n/a/b\nx=1");
    CHECK(key("/a", {}, "", "Example.COM:8080") == "https\nexample.com:8080\n/a\n");
    CHECK(key("/a", {}, "", "EXAMPLE.com") == key("/a"));
    // The path is kept as sent: case and escapes matter.
    CHECK(key("/A") != key("/a"));
    CHECK(key("/a%2Fb") != key("/a/b"));
    // Scheme matters.
    {
      const Parsed req = request("");
      CHECK(make_cache_key("http", "example.com", "/", {}, req.head()) !=
            make_cache_key("https", "example.com", "/", {}, req.head()));
    }
    // An empty query equals no query.
    CHECK(key("/a?") == key("/a"));
    CHECK(key("/a?x") != key("/a"));
  }

  TEST_CASE("cache: key, query kept as sent") {
    CHECK(key("/?b=1&a=2") != key("/?a=2&b=1"));
    CHECK(key("/?a=1&&b=2") == "https\nexample.com\n/\na=1&&b=2");
    CacheKeyConfig k;
    k.ignore_params = {"utm_source", "fbclid"};
    CHECK(key("/p?a=1&utm_source=x&b=2", k) == "https\nexample.com\n/p\na=1&b=2");
    CHECK(key("/p?utm_source=x", k) == key("/p"));
    CHECK(key("/p?utm_source=x&fbclid=y", k) == key("/p"));
    CHECK(key("/p?utm_source", k) == key("/p"));
    // Names are compared up to '=', exactly.
    CHECK(key("/p?utm_source_x=1", k) == "https\nexample.com\n/p\nutm_source_x=1");
    CHECK(key("/p?UTM_SOURCE=1", k) == "https\nexample.com\n/p\nUTM_SOURCE=1");
    CHECK(key("/p?b=2&utm_source=x&a=1", k) == "https\nexample.com\n/p\nb=2&a=1");
  }

  TEST_CASE("cache: key, sorted query") {
    CacheKeyConfig k;
    k.query = QueryKeyMode::kSort;
    CHECK(key("/?b=1&a=2", k) == key("/?a=2&b=1", k));
    CHECK(key("/?b=1&a=2", k) == "https\nexample.com\n/\na=2&b=1");
    // By name, then value.
    CHECK(key("/?a=2&b=0&a=1", k) == "https\nexample.com\n/\na=1&a=2&b=0");
    // Name comparison stops at '=': "a" sorts before "a-b" (though "a-b=1" < "a=2").
    CHECK(key("/?a-b=1&a=2", k) == "https\nexample.com\n/\na=2&a-b=1");
    // Empty parameters carry nothing.
    CHECK(key("/?b=1&&a=2&", k) == key("/?a=2&b=1", k));
    CHECK(key("/?&", k) == key("/", k));
    // Values still matter.
    CHECK(key("/?a=1", k) != key("/?a=2", k));
    k.ignore_params = {"utm_source"};
    CHECK(key("/?utm_source=z&b=1&a=2", k) == "https\nexample.com\n/\na=2&b=1");
    CHECK(key("/?utm_source=z", k) == key("/", k));
  }

  TEST_CASE("cache: key, dropped query") {
    CacheKeyConfig k;
    k.query = QueryKeyMode::kDrop;
    CHECK(key("/a?x=1", k) == key("/a", k));
    CHECK(key("/a?x=1", k) == "https\nexample.com\n/a\n");
    CHECK(key("/a?x=1", k) != key("/b?x=1", k));
  }

  TEST_CASE("cache: key, request headers") {
    CacheKeyConfig k;
    k.headers = {"x-tenant", "accept-language"};
    CHECK(key("/", k, "X-Tenant: acme\r\nAccept-Language: en\r\n") ==
          "https\nexample.com\n/\n\nx-tenant:acme\naccept-language:en");
    // All fields of a name, joined.
    CHECK(key("/", k, "X-Tenant: a\r\nx-tenant: b\r\n") ==
          "https\nexample.com\n/\n\nx-tenant:a,b\naccept-language");
    // Absent differs from empty, and from another header's value.
    CHECK(key("/", k, "") != key("/", k, "X-Tenant:\r\n"));
    CHECK(key("/", k, "X-Tenant: x\r\n") != key("/", k, "Accept-Language: x\r\n"));
    // Without configured headers they do not matter.
    CHECK(key("/", {}, "X-Tenant: a\r\n") == key("/"));
    // The query cannot pose as a header.
    CHECK(key("/?q", k) != key("/", k, "X-Tenant: q\r\n"));
  }

  // ------------------------------------------------------------- clients

  TEST_CASE("cache: client_wants_revalidation") {
    auto wants = [](const std::string& headers) {
      const Parsed r = request(headers);
      return client_wants_revalidation(r.head());
    };
    CHECK_FALSE(wants(""));
    CHECK(wants("Cache-Control: no-cache\r\n"));
    CHECK(wants("Cache-Control: max-age=0\r\n"));
    CHECK(wants("cache-control: Max-Age=\"0\"\r\n"));
    CHECK(wants("Pragma: no-cache\r\n"));
    CHECK(wants("Cache-Control: max-stale\r\nCache-Control: no-cache\r\n"));
    CHECK_FALSE(wants("Cache-Control: max-age=10\r\n"));
    CHECK_FALSE(wants("Cache-Control: max-age=x\r\n"));  // malformed: absent on a request
    CHECK_FALSE(wants("Cache-Control: no-store\r\n"));
    CHECK_FALSE(wants("Cache-Control: only-if-cached\r\n"));
    // Pragma is ignored when Cache-Control is present (RFC 9111 5.4).
    CHECK_FALSE(wants("Cache-Control: max-age=10\r\nPragma: no-cache\r\n"));
  }
}
