// Unit tests for gateway/cache_purge: the admin purge request body, the
// bearer-token check, and the worker's answer to a purge message.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1_parser.hpp"
#include "gateway/cache_purge.hpp"

namespace {

using torii::gateway::check_admin_token;
using torii::gateway::handle_purge_message;
using torii::gateway::parse_purge_request;
using torii::gateway::PurgeRequest;
using torii::http::Http1Parser;
using torii::http::MessageHead;

struct Parsed {
  std::unique_ptr<Http1Parser> parser;
  const MessageHead& head() const { return parser->head(); }
};

// A POST /cache/purge head with `headers` ("Name: value\r\n" lines).
Parsed admin_request(const std::string& headers) {
  const std::string text =
      "POST /cache/purge HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n" + headers + "\r\n";
  Parsed p{std::make_unique<Http1Parser>(Http1Parser::Kind::kRequest, torii::http::ParserLimits{})};
  const auto r = p.parser->feed(text.data(), text.size());
  INFO("request: " << text << " parser error: " << std::string(p.parser->error_reason()));
  REQUIRE(r.event != Http1Parser::Event::kError);
  return p;
}

int token_check(const std::string& headers, std::string_view token) {
  const Parsed p = admin_request(headers);
  return check_admin_token(p.head(), token);
}

struct ParseResult {
  bool ok = false;
  PurgeRequest req;
  std::string error;
};

ParseResult parse(std::string_view body) {
  ParseResult r;
  r.ok = parse_purge_request(body, r.req, r.error);
  return r;
}

// Expects a parse error whose message mentions `fragment`.
void check_error(std::string_view body, std::string_view fragment) {
  const ParseResult r = parse(body);
  INFO("body: " << std::string(body) << " error: " << r.error);
  CHECK_FALSE(r.ok);
  CHECK_FALSE(r.error.empty());
  CHECK(r.error.find(fragment) != std::string::npos);
}

}  // namespace

TEST_SUITE("cache purge") {
  TEST_CASE("an exact purge with its host normalised") {
    SUBCASE("lower case, port stripped") {
      const ParseResult r = parse(R"({"host": "API.Example.COM:8080", "path": "/items?page=1"})");
      REQUIRE(r.ok);
      CHECK(r.req.host == "api.example.com");
      CHECK(r.req.target == "/items?page=1");
      CHECK_FALSE(r.req.prefix);
    }
    SUBCASE("already normal") {
      const ParseResult r = parse(R"({"path": "/", "host": "a.example"})");
      REQUIRE(r.ok);
      CHECK(r.req.host == "a.example");
      CHECK(r.req.target == "/");
      CHECK_FALSE(r.req.prefix);
    }
    SUBCASE("trailing dot") {
      const ParseResult r = parse(R"({"host": "a.example.", "path": "/x"})");
      REQUIRE(r.ok);
      CHECK(r.req.host == "a.example");
    }
    SUBCASE("IPv6 literal keeps its brackets, loses its port") {
      const ParseResult r = parse(R"({"host": "[::1]:8080", "path": "/x"})");
      REQUIRE(r.ok);
      CHECK(r.req.host == "[::1]");
    }
    SUBCASE("non-ASCII in the target is allowed (only controls and spaces are not)") {
      const ParseResult r = parse("{\"host\": \"a\", \"path\": \"/caf\xc3\xa9\"}");
      REQUIRE(r.ok);
      CHECK(r.req.target == "/caf\xc3\xa9");
    }
  }

  TEST_CASE("a prefix purge with or without host") {
    SUBCASE("without host: every host") {
      const ParseResult r = parse(R"({"prefix": "/items/"})");
      REQUIRE(r.ok);
      CHECK(r.req.host.empty());
      CHECK(r.req.target == "/items/");
      CHECK(r.req.prefix);
    }
    SUBCASE("with host") {
      const ParseResult r = parse(R"({"prefix": "/", "host": "Shop.Example:443"})");
      REQUIRE(r.ok);
      CHECK(r.req.host == "shop.example");
      CHECK(r.req.target == "/");
      CHECK(r.req.prefix);
    }
    SUBCASE("with an empty host: every host") {
      const ParseResult r = parse(R"({"prefix": "/a", "host": ""})");
      REQUIRE(r.ok);
      CHECK(r.req.host.empty());
    }
  }

  TEST_CASE("parse errors") {
    SUBCASE("not JSON") {
      check_error("", "JSON object");
      check_error("path=/x", "JSON object");
      check_error(R"({"path": "/x")", "JSON object");
      check_error(R"({"path": "/x"} trailing)", "JSON object");
    }
    SUBCASE("not an object") {
      check_error(R"(["/x"])", "JSON object");
      check_error(R"("/x")", "JSON object");
      check_error("42", "JSON object");
      check_error("null", "JSON object");
    }
    SUBCASE("unknown key") {
      check_error(R"({"path": "/x", "host": "a", "method": "GET"})", "unknown key \"method\"");
      check_error(R"({"Path": "/x"})", "unknown key \"Path\"");
    }
    SUBCASE("a value that is not a string") {
      check_error(R"({"path": 1, "host": "a"})", "\"path\" must be a string");
      check_error(R"({"prefix": ["/a"]})", "\"prefix\" must be a string");
      check_error(R"({"prefix": "/a", "host": null})", "\"host\" must be a string");
      check_error(R"({"path": "/x", "host": true})", "\"host\" must be a string");
    }
    SUBCASE("both or neither of path and prefix") {
      check_error(R"({"path": "/x", "prefix": "/x", "host": "a"})", "exactly one");
      check_error(R"({"host": "a"})", "exactly one");
      check_error("{}", "exactly one");
    }
    SUBCASE("a bad target") {
      for (const char* body : {
               R"({"prefix": ""})",
               R"({"prefix": "items/"})",
               R"({"prefix": "*"})",
               R"({"path": "http://a/x", "host": "a"})",
               R"({"prefix": "/a b"})",
               R"({"path": "/a\tb", "host": "a"})",
               R"({"prefix": "/a\nb"})",
               R"({"prefix": "/a\u0000b"})",
               R"({"prefix": "/a\u007fb"})",
               R"({"prefix": "/a\r"})",
           }) {
        check_error(body, "must start with /");
      }
      check_error(R"({"prefix": "/)" + std::string(8192, 'a') + R"("})", "must start with /");
    }
    SUBCASE("an exact purge without host") {
      check_error(R"({"path": "/x"})", "needs \"host\"");
      check_error(R"({"path": "/x", "host": ""})", "needs \"host\"");
      check_error(R"({"path": "/x", "host": ":8080"})", "needs \"host\"");
    }
    SUBCASE("a long target within the limit is fine") {
      const ParseResult r = parse(R"({"prefix": "/)" + std::string(8191, 'a') + R"("})");
      CHECK(r.ok);
      CHECK(r.req.target.size() == 8192);
    }
  }

  TEST_CASE("admin token check") {
    SUBCASE("no token configured: 403, whatever the request says") {
      CHECK(token_check("", "") == 403);
      CHECK(token_check("Authorization: Bearer secret\r\n", "") == 403);
    }
    SUBCASE("missing header: 401") { CHECK(token_check("", "secret") == 401); }
    SUBCASE("wrong scheme: 401") {
      CHECK(token_check("Authorization: Basic c2VjcmV0\r\n", "secret") == 401);
      CHECK(token_check("Authorization: secret\r\n", "secret") == 401);
      CHECK(token_check("Authorization: Bearersecret\r\n", "secret") == 401);
      CHECK(token_check("Authorization: Token secret\r\n", "secret") == 401);
    }
    SUBCASE("scheme without token: 401") {
      CHECK(token_check("Authorization: Bearer\r\n", "secret") == 401);
      CHECK(token_check("Authorization: Bearer \r\n", "secret") == 401);
      CHECK(token_check("Authorization: Bearer    \r\n", "secret") == 401);
    }
    SUBCASE("wrong token: 401") {
      CHECK(token_check("Authorization: Bearer wrong\r\n", "secret") == 401);
      CHECK(token_check("Authorization: Bearer secre\r\n", "secret") == 401);
      CHECK(token_check("Authorization: Bearer secrets\r\n", "secret") == 401);
      CHECK(token_check("Authorization: Bearer SECRET\r\n", "secret") == 401);  // tokens are exact
      CHECK(token_check("Authorization: Bearer sec ret\r\n", "secret") == 401);
    }
    SUBCASE("right token: 0") {
      CHECK(token_check("Authorization: Bearer secret\r\n", "secret") == 0);
      CHECK(token_check("authorization: Bearer secret\r\n", "secret") == 0);
    }
    SUBCASE("the scheme is case-insensitive") {
      CHECK(token_check("Authorization: bearer secret\r\n", "secret") == 0);
      CHECK(token_check("Authorization: BEARER secret\r\n", "secret") == 0);
      CHECK(token_check("Authorization: bEaReR secret\r\n", "secret") == 0);
    }
    SUBCASE("surrounding spaces") {
      CHECK(token_check("Authorization:    Bearer secret   \r\n", "secret") == 0);
      CHECK(token_check("Authorization: Bearer    secret\r\n", "secret") == 0);
      CHECK(token_check("Authorization:\tBearer secret\t\r\n", "secret") == 0);
    }
    SUBCASE("a token with characters of token68") {
      const std::string token = "a-b.c_d~e+f/g==";
      CHECK(token_check("Authorization: Bearer " + token + "\r\n", token) == 0);
      CHECK(token_check("Authorization: Bearer a-b.c_d~e+f/g=\r\n", token) == 401);
    }
  }

  TEST_CASE("a purge message calls back and answers with the count") {
    std::vector<PurgeRequest> calls;
    auto purge = [&calls](const PurgeRequest& r) -> size_t {
      calls.push_back(r);
      return 3;
    };
    const std::string reply = handle_purge_message(
        R"({"op":"purge","id":17,"host":"a.example","target":"/items","prefix":true})", purge);
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].host == "a.example");
    CHECK(calls[0].target == "/items");
    CHECK(calls[0].prefix);
    REQUIRE_FALSE(reply.empty());
    const nlohmann::json doc = nlohmann::json::parse(reply);
    CHECK(doc.at("op") == "purged");
    CHECK(doc.at("id") == 17);
    CHECK(doc.at("count") == 3);
    CHECK(doc.size() == 3);
  }

  TEST_CASE("a purge message as the master sends it") {
    // The master serialises {"op","id","host","target","prefix"}; a large id
    // and an exact purge of every host.
    const nlohmann::json msg{{"op", "purge"},
                             {"id", uint64_t{1} << 40},
                             {"host", ""},
                             {"target", "/x?y=1"},
                             {"prefix", false}};
    PurgeRequest seen;
    seen.prefix = true;
    const std::string reply = handle_purge_message(msg.dump(), [&seen](const PurgeRequest& r) {
      seen = r;
      return size_t{0};
    });
    CHECK(seen.host.empty());
    CHECK(seen.target == "/x?y=1");
    CHECK_FALSE(seen.prefix);
    const nlohmann::json doc = nlohmann::json::parse(reply);
    CHECK(doc.at("op") == "purged");
    CHECK(doc.at("id").get<uint64_t>() == uint64_t{1} << 40);
    CHECK(doc.at("count") == 0);
  }

  TEST_CASE("missing fields of a purge message take their defaults") {
    PurgeRequest seen;
    seen.host = "x";
    seen.prefix = true;
    const std::string reply =
        handle_purge_message(R"({"op":"purge"})", [&seen](const PurgeRequest& r) {
          seen = r;
          return size_t{5};
        });
    CHECK(seen.host.empty());
    CHECK(seen.target.empty());
    CHECK_FALSE(seen.prefix);
    const nlohmann::json doc = nlohmann::json::parse(reply);
    CHECK(doc.at("id") == 0);
    CHECK(doc.at("count") == 5);
  }

  TEST_CASE("other messages get no answer and purge nothing") {
    int calls = 0;
    auto purge = [&calls](const PurgeRequest&) -> size_t {
      ++calls;
      return 1;
    };
    for (const char* m :
         {"", "not json", "{", "[]", "\"purge\"", "42", "null", "{}",
          R"({"op":"purged","id":1,"count":2})", R"({"op":"PURGE"})", R"({"id":1,"target":"/"})"}) {
      CAPTURE(m);
      CHECK(handle_purge_message(m, purge).empty());
    }
    CHECK(calls == 0);
  }

  // A field of the wrong type counts as absent: an exception here would
  // leave a libuv read callback.
  TEST_CASE("messages with fields of the wrong type do not throw") {
    int calls = 0;
    auto purge = [&calls](const PurgeRequest&) -> size_t {
      ++calls;
      return 1;
    };
    std::string reply = "unset";
    CHECK_NOTHROW(reply = handle_purge_message(R"({"op":1})", purge));
    CHECK(reply.empty());
    CHECK_NOTHROW((void)handle_purge_message(R"({"op":["purge"]})", purge));
    CHECK_NOTHROW((void)handle_purge_message(R"({"op":"purge","id":"7"})", purge));
    CHECK_NOTHROW((void)handle_purge_message(R"({"op":"purge","host":5})", purge));
    CHECK_NOTHROW((void)handle_purge_message(R"({"op":"purge","prefix":"yes"})", purge));
  }
}
