// Unit tests for gateway/router: route selection, normalize_host, target_path.
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"
#include "gateway/router.hpp"

namespace {

using torii::conf::Route;
using torii::gateway::normalize_host;
using torii::gateway::Router;
using torii::gateway::target_path;

Route route(std::string host, std::string prefix, std::vector<std::string> methods = {}) {
  Route r;
  r.match.host = std::move(host);
  r.match.path_prefix = std::move(prefix);
  r.match.methods = std::move(methods);
  r.upstream = "app";
  return r;
}

struct Query {
  const char* host;
  const char* path;
  const char* method;
  int expected;  // route index, -1 = no route
};

void check_queries(const Router& router, const std::vector<Query>& queries) {
  for (const Query& q : queries) {
    INFO("host=" << std::string(q.host) << " path=" << std::string(q.path)
                 << " method=" << std::string(q.method));
    const std::optional<size_t> got = router.match(q.host, q.path, q.method);
    const int got_index = got ? static_cast<int>(*got) : -1;
    CHECK(got_index == q.expected);
  }
}

}  // namespace

TEST_SUITE("router") {
  TEST_CASE("host exact > longest wildcard > any; then longest prefix; then file order") {
    const std::vector<Route> routes = {
        route("*", "/"),                          // 0 catch-all
        route("*", "/api/"),                      // 1
        route("*.example.com", "/"),              // 2
        route("*.api.example.com", "/"),          // 3
        route("www.example.com", "/"),            // 4
        route("www.example.com", "/static/"),     // 5
        route("*", "/api/v2/", {"GET", "HEAD"}),  // 6
        route("*.example.com", "/assets/"),       // 7
        route("*", "/"),                          // 8 same as 0: file order keeps 0
        route("127.0.0.1", "/"),                  // 9
        route("*", "/api"),                       // 10
    };
    const Router router(routes);
    check_queries(
        router,
        {
            {"other.org", "/", "GET", 0},
            {"", "/", "GET", 0},
            {"other.org", "/api/x", "GET", 1},
            {"other.org", "/api/", "GET", 1},
            {"other.org", "/api", "GET", 10},
            {"other.org", "/apiary", "GET", 10},  // documented: "/api" also matches "/apiary"
            {"other.org", "/API/x", "GET", 0},    // paths are case-sensitive
            {"other.org", "/api/v2/users", "GET", 6},
            {"other.org", "/api/v2/users", "HEAD", 6},
            {"other.org", "/api/v2/users", "POST", 1},  // method filter: falls back
            {"other.org", "/api/v2/users", "get", 1},   // methods are case-sensitive
            {"a.example.com", "/", "GET", 2},
            {"a.b.example.com", "/x", "GET", 2},
            {"a.example.com", "/api/x", "GET",
             2},  // a wildcard host beats "*" with a longer prefix
            {"a.example.com", "/assets/x.css", "GET", 7},
            {"x.api.example.com", "/", "GET", 3},
            {"x.api.example.com", "/assets/x.css", "GET", 3},  // the longer wildcard wins first
            {"api.example.com", "/", "GET", 2},  // "*.api.example.com" is for subdomains only
            {"example.com", "/", "GET", 0},      // so is "*.example.com"
            {"badexample.com", "/", "GET", 0},
            {"example.com.evil.org", "/", "GET", 0},
            {"www.example.com", "/", "GET", 4},
            {"www.example.com", "/static/app.js", "GET", 5},
            {"www.example.com", "/assets/x.css", "GET",
             4},  // exact host beats wildcard + longer prefix
            {"www.example.com", "/api/v2/x", "GET", 4},
            {"wwww.example.com", "/", "GET", 2},
            {"127.0.0.1", "/x", "GET", 9},
            {"127.0.0.2", "/x", "GET", 0},
        });
  }

  TEST_CASE("no route matches") {
    const std::vector<Route> routes = {
        route("api.example.com", "/v1/", {"GET", "POST"}),    // 0
        route("*.example.com", "/assets/", {"GET", "HEAD"}),  // 1
        route("example.com", "/assets/", {"GET", "HEAD"}),    // 2
    };
    const Router router(routes);
    check_queries(router, {
                              {"api.example.com", "/v1/users", "GET", 0},
                              {"api.example.com", "/v1/users", "POST", 0},
                              {"api.example.com", "/v1/users", "DELETE", -1},
                              {"api.example.com", "/v1", "GET", -1},
                              {"api.example.com", "/assets/a.png", "GET",
                               1},  // the exact route does not match the path
                              {"example.com", "/assets/a.png", "HEAD", 2},
                              {"example.com", "/assets/a.png", "POST", -1},
                              {"example.com", "/v1/users", "GET", -1},
                              {"other.org", "/assets/a.png", "GET", -1},
                              {"", "/", "GET", -1},
                          });
    CHECK_FALSE(Router({}).match("example.com", "/", "GET").has_value());
  }

  TEST_CASE("ties keep file order") {
    const Router router({route("*.example.com", "/a/"), route("*.example.com", "/a/"),
                         route("x.example.com", "/"), route("x.example.com", "/")});
    check_queries(router, {
                              {"y.example.com", "/a/b", "GET", 0},
                              {"x.example.com", "/a/b", "GET", 2},
                          });
  }

  TEST_CASE("normalize_host") {
    struct Case {
      std::string_view in, out;
    };
    const Case cases[] = {
        {"example.com", "example.com"},
        {"Example.COM", "example.com"},
        {"example.com:8080", "example.com"},
        {"example.com:", "example.com"},
        {"example.com.", "example.com"},
        {"Example.com.:443", "example.com"},
        {"127.0.0.1:80", "127.0.0.1"},
        {"[::1]", "[::1]"},
        {"[::1]:8080", "[::1]"},
        {"[2001:DB8::1]:80", "[2001:db8::1]"},
        {"", ""},
    };
    for (const Case& c : cases) {
      INFO("in=" << std::string(c.in));
      CHECK(normalize_host(c.in) == c.out);
    }
  }

  TEST_CASE("target_path") {
    struct Case {
      std::string_view target, path;
    };
    const Case cases[] = {
        {"/", "/"},
        {"/a/b", "/a/b"},
        {"/a/b?x=1&y=2", "/a/b"},
        {"/a#frag", "/a"},
        {"/a?b#c", "/a"},
        {"/?", "/"},
        {"*", "*"},
        {"http://example.com/p/q?x=1", "/p/q"},
        {"https://example.com:8443/p", "/p"},
        {"http://example.com", "/"},
        {"http://example.com:8080", "/"},
        {"http://user@example.com/p", "/p"},
        // RFC 3986 3.3: the path ends at the first '?' or '#'; a '/' inside the
        // query of an absolute-form target is not the start of the path.
        {"http://example.com?x=/admin", "/"},
        {"http://example.com#/admin", "/"},
    };
    for (const Case& c : cases) {
      INFO("target=" << std::string(c.target));
      CHECK(target_path(c.target) == c.path);
    }
  }

}  // TEST_SUITE
