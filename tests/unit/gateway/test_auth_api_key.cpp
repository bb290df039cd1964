// Unit tests for gateway/auth_api_key: the API key set (config list and key
// file text) and the query-string helpers used for keys given as a parameter.
#include <doctest/doctest.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/auth_api_key.hpp"

namespace {

using torii::gateway::ApiKeySet;
using torii::gateway::query_parameter;
using torii::gateway::remove_query_parameter;

const std::string kKeyA = "a1b2c3d4e5f6a7b8c9d0";
const std::string kKeyB = "ZZZZ-yyyy-XXXX-wwww-0001";

// The message of the std::invalid_argument `load` throws ("" if none).
template <typename Load>
std::string load_error(Load load) {
  try {
    load();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

std::string file_error(std::string_view text) {
  return load_error([&] {
    ApiKeySet set;
    set.add_file_text(text, "keys.txt");
  });
}

std::optional<std::string> name_of(const ApiKeySet& set, std::string_view presented) {
  const auto name = set.match(presented);
  if (!name) return std::nullopt;
  return std::string(*name);
}

}  // namespace

TEST_SUITE("auth api key") {
  TEST_CASE("keys from a config list match by value and are named by position") {
    ApiKeySet set;
    set.add_list({kKeyA, kKeyB});
    CHECK(set.size() == 2);
    CHECK(name_of(set, kKeyA) == "key-1");
    CHECK(name_of(set, kKeyB) == "key-2");
    CHECK_FALSE(set.match(""));
    CHECK_FALSE(set.match("a1b2c3d4e5f6a7b8c9d"));   // a prefix
    CHECK_FALSE(set.match(kKeyA + "0"));             // longer
    CHECK_FALSE(set.match("A1B2C3D4E5F6A7B8C9D0"));  // case matters
    CHECK_FALSE(set.match(" " + kKeyA));
    CHECK_FALSE(ApiKeySet{}.match(kKeyA));

    set.add("explicit-name-key-0123", "ci-bot");
    CHECK(name_of(set, "explicit-name-key-0123") == "ci-bot");
  }

  TEST_CASE("config list errors name the entry and never the key") {
    const std::string err = load_error([] {
      ApiKeySet set;
      set.add_list({kKeyA, "short-key"});
    });
    CHECK(err == "api key 1: API key is shorter than 16 characters");
    CHECK(err.find("short-key") == std::string::npos);
    CHECK(load_error([] {
            ApiKeySet set;
            set.add_list({kKeyA, kKeyB, kKeyA});
          }) == R"(api key 2: duplicate API key (same as "key-1"))");
    CHECK(load_error([] {
            ApiKeySet set;
            set.add_list({"has a space in the key"});
          }) == "api key 0: API key contains whitespace or control characters");
    CHECK(load_error([] {
            ApiKeySet set;
            set.add(kKeyA, "bad name!");
          }) == "API key name may only contain letters, digits and -._@");
    // Exactly the minimum length is fine.
    CHECK(load_error([] {
            ApiKeySet set;
            set.add(std::string(ApiKeySet::kMinKeyLength, 'k'));
          }).empty());
  }

  TEST_CASE("key files: comments, blank lines, names, CRLF") {
    ApiKeySet set;
    set.add_file_text(
        "# production keys\n"
        "\n"
        "   \t\n"
        "alice:" +
            kKeyA +
            "\n"
            "  bob \t " +
            kKeyB +
            "  \r\n"
            "# carol left\n"
            "#carol:cccccccccccccccccccc\n"
            "plain-key-without-name-1\n"
            "svc.reports@example key:with:colons-0001\n"
            "last-line-without-newline",
        "keys.txt");
    CHECK(set.size() == 5);
    CHECK(name_of(set, kKeyA) == "alice");
    CHECK(name_of(set, kKeyB) == "bob");
    CHECK(name_of(set, "plain-key-without-name-1") == "key-3");
    CHECK(name_of(set, "key:with:colons-0001") == "svc.reports@example");
    CHECK(name_of(set, "last-line-without-newline") == "key-5");
    CHECK_FALSE(set.match("cccccccccccccccccccc"));
    CHECK_FALSE(set.match("alice:" + kKeyA));
    // Config keys and file keys together.
    set.add_list({"config-key-000000001"});
    CHECK(name_of(set, "config-key-000000001") == "key-6");
    // An empty file is no keys.
    ApiKeySet empty;
    empty.add_file_text("", "keys.txt");
    empty.add_file_text("# nothing\n\n", "keys.txt");
    CHECK(empty.empty());
  }

  TEST_CASE("key file errors carry the line number") {
    CHECK(file_error("# header\n\nalice:" + kKeyA + "\nbob:tooshort\n") ==
          "keys.txt:4: API key is shorter than 16 characters");
    CHECK(file_error("tiny\n") == "keys.txt:1: API key is shorter than 16 characters");
    CHECK(file_error("\r\n\r\nalice " + kKeyA + "\r\nbob " + kKeyA + "\r\n") ==
          R"(keys.txt:4: duplicate API key (same as "alice"))");
    CHECK(file_error("alice " + kKeyA + " trailing\n") ==
          R"(keys.txt:1: expected "key", "name:key" or "name key")");
    CHECK(file_error(":" + kKeyA + "\n") == "keys.txt:1: empty API key name");
    CHECK(file_error("al/ce:" + kKeyA + "\n") ==
          "keys.txt:1: API key name may only contain letters, digits and -._@");
    CHECK(file_error("alice:\n") == "keys.txt:1: API key is shorter than 16 characters");
    CHECK(file_error(std::string(ApiKeySet::kMaxNameLength + 1, 'n') + ":" + kKeyA) ==
          "keys.txt:1: API key name is longer than 64 characters");
  }

  TEST_CASE("query_parameter and remove_query_parameter") {
    CHECK(query_parameter("api_key=abc", "api_key") == "abc");
    CHECK(query_parameter("a=1&api_key=abc&b=2", "api_key") == "abc");
    CHECK(query_parameter("a=1&api_key=first&api_key=second", "api_key") == "first");
    CHECK(query_parameter("api_key=a%2Bb%3d%3D+c", "api_key") == "a+b==+c");
    CHECK(query_parameter("api_key", "api_key") == "");
    CHECK(query_parameter("api_key=", "api_key") == "");
    CHECK_FALSE(query_parameter("xapi_key=abc&api_keyx=abc", "api_key"));
    CHECK_FALSE(query_parameter("", "api_key"));
    CHECK_FALSE(query_parameter("api_key=%zz", "api_key"));
    CHECK_FALSE(query_parameter("api_key=ab%2", "api_key"));
    CHECK_FALSE(query_parameter("api_key=ab%", "api_key"));

    CHECK(remove_query_parameter("a=1&api_key=abc&b=2", "api_key") == "a=1&b=2");
    CHECK(remove_query_parameter("api_key=abc", "api_key") == "");
    CHECK(remove_query_parameter("api_key=x&api_key=y&z", "api_key") == "z");
    CHECK(remove_query_parameter("a=1&&b=2&", "api_key") == "a=1&b=2");
    CHECK(remove_query_parameter("api_keyx=1", "api_key") == "api_keyx=1");
    CHECK(remove_query_parameter("", "api_key") == "");
  }
}
