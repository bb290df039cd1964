// Unit tests for conf/config: parsing, defaults, every validation rule (with
// its JSON path and message), the value parsers and the shipped examples.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "conf/config.hpp"

namespace {

using namespace torii::conf;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kFile = "conf/torii.json";

// The smallest useful config; error cases below are this plus a JSON Patch.
constexpr const char* kMinimal = R"({"workers": 2, "listeners": [{"address": "127.0.0.1:8080"}],
 "admin": {"address": "127.0.0.1:9100"},
 "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}},
 "routes": [{"match": {"host": "*", "path_prefix": "/"}, "upstream": "app"}]})";

// kMinimal with an RFC 6902 JSON Patch applied, as text.
std::string patched(const char* patch) {
  return json::parse(kMinimal).patch(json::parse(patch)).dump();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Parses `text` expecting a ConfigError at `path` whose problem contains `problem`.
void check_rejected(const std::string& text, const std::string& path, const std::string& problem) {
  try {
    (void)parse_config(text, kFile);
    FAIL("accepted, expected error at \"" << path << "\": " << problem);
  } catch (const ConfigError& e) {
    INFO("what(): " << std::string(e.what()));
    CHECK(e.file() == kFile);
    CHECK(e.json_path() == path);
    CHECK(contains(e.problem(), problem));
    const std::string prefix =
        path.empty() ? std::string(kFile) + ": " : std::string(kFile) + ": " + path + ": ";
    CHECK(std::string(e.what()) == prefix + e.problem());
  }
}

struct PatchCase {
  const char* name;
  const char* patch;  // applied to kMinimal
  const char* path;
  const char* problem;
};

struct TextCase {
  const char* name;
  const char* text;  // the whole file
  const char* path;
  const char* problem;
};

void run_patch_cases(const std::vector<PatchCase>& cases) {
  for (const PatchCase& c : cases) {
    INFO("case: " << std::string(c.name));
    check_rejected(patched(c.patch), c.path, c.problem);
  }
}

std::filesystem::path source_root() {
  // __FILE__ is <root>/tests/unit/conf/test_config.cpp (absolute under CMake).
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_SUITE_BEGIN("conf");
// ---------------------------------------------------------------------------
// Valid configs

TEST_CASE("minimal config parses with the right values") {
  const Config config = parse_config(kMinimal, kFile);
  CHECK(config.source_path == kFile);
  CHECK(config.workers == 2);
  REQUIRE(config.listeners.size() == 1);
  CHECK(config.listeners[0].address.host == "127.0.0.1");
  CHECK(config.listeners[0].address.port == 8080);
  CHECK(config.listeners[0].backlog == 511);
  REQUIRE(config.admin.has_value());
  CHECK(config.admin->address.str() == "127.0.0.1:9100");
  REQUIRE(config.upstreams.size() == 1);
  CHECK(config.upstreams[0].name == "app");
  REQUIRE(config.upstreams[0].servers.size() == 1);
  CHECK(config.upstreams[0].servers[0].str() == "127.0.0.1:9001");
  REQUIRE(config.routes.size() == 1);
  CHECK(config.routes[0].match.host == "*");
  CHECK(config.routes[0].match.path_prefix == "/");
  CHECK(config.routes[0].match.methods.empty());
  CHECK(config.routes[0].upstream == "app");
  CHECK(config.routes[0].upstream_index == 0);
}

TEST_CASE("omitted keys take the documented defaults") {
  const Config config = parse_config(R"({
    "listeners": [{"address": "0.0.0.0:80"}],
    "upstreams": {"app": {"servers": ["localhost:9001"]}},
    "routes": [{"upstream": "app"}]})",
                                     kFile);
  const Limits limits;
  const Timeouts timeouts;
  const UpstreamPoolConfig pool;
  CHECK(config.workers == 1);
  CHECK(config.log_level == "info");
  CHECK_FALSE(config.admin.has_value());
  CHECK(config.listeners[0].backlog == 511);
  CHECK(config.limits.max_request_line == 8 * 1024);
  CHECK(config.limits.max_header_bytes == 32 * 1024);
  CHECK(config.limits.max_header_count == 100);
  CHECK(config.limits.max_body_bytes == 64ull << 20);
  CHECK(config.limits.max_connections == 10000);
  CHECK(config.limits.max_connections == limits.max_connections);
  CHECK(config.timeouts.header_read == 10s);
  CHECK(config.timeouts.body_read == 30s);
  CHECK(config.timeouts.keepalive_idle == 60s);
  CHECK(config.timeouts.send == 60s);
  CHECK(config.timeouts.drain == 30s);
  CHECK(config.timeouts.drain == timeouts.drain);
  const Upstream& upstream = config.upstreams[0];
  CHECK(upstream.connect_timeout == 5s);
  CHECK(upstream.response_timeout == 60s);
  CHECK(upstream.pool.max_connections == 256);
  CHECK(upstream.pool.max_idle == 64);
  CHECK(upstream.pool.idle_timeout == 60s);
  CHECK(upstream.pool.max_pending == 1024);
  CHECK(upstream.pool.max_pending == pool.max_pending);
  // A route without "match" matches everything.
  CHECK(config.routes[0].match.host == "*");
  CHECK(config.routes[0].match.path_prefix == "/");
  CHECK(config.routes[0].match.methods.empty());
}

TEST_CASE("every key is read into its field") {
  const Config config = parse_config(R"({
    "workers": 4,
    "log_level": "debug",
    "listeners": [{"address": "127.0.0.1:8080", "backlog": 1024}, {"address": "[::1]:8080"}],
    "admin": {"address": "[::1]:9100"},
    "limits": {"max_request_line": "4KiB", "max_header_bytes": 16384, "max_header_count": 50,
               "max_body": "1GB", "max_connections": 500},
    "timeouts": {"header_read": "5s", "body_read": "1.5s", "keepalive_idle": "2m",
                 "send": "250ms", "drain": "1h"},
    "upstreams": {
      "web": {"servers": ["app.internal:8000", "10.0.0.2:8000"]},
      "api": {"servers": ["[::1]:9001"], "connect_timeout": "1s", "response_timeout": "2m",
              "pool": {"max_connections": 8, "max_idle": 0, "idle_timeout": "15s",
                       "max_pending": 0}}
    },
    "routes": [
      {"match": {"host": "API.Example.com", "path_prefix": "/v1/",
                 "methods": ["get", "Post", "GET"]},
       "upstream": "api"},
      {"match": {"host": "*.Example.com"}, "upstream": "web"},
      {"upstream": "web"}
    ]})",
                                     "full.json");
  CHECK(config.source_path == "full.json");
  CHECK(config.workers == 4);
  CHECK(config.log_level == "debug");
  REQUIRE(config.listeners.size() == 2);
  CHECK(config.listeners[0].backlog == 1024);
  CHECK(config.listeners[1].address.host == "::1");
  CHECK(config.listeners[1].address.str() == "[::1]:8080");
  CHECK(config.admin->address.str() == "[::1]:9100");
  CHECK(config.limits.max_request_line == 4096);
  CHECK(config.limits.max_header_bytes == 16384);
  CHECK(config.limits.max_header_count == 50);
  CHECK(config.limits.max_body_bytes == 1000000000ull);
  CHECK(config.limits.max_connections == 500);
  CHECK(config.timeouts.header_read == 5s);
  CHECK(config.timeouts.body_read == 1500ms);
  CHECK(config.timeouts.keepalive_idle == 2min);
  CHECK(config.timeouts.send == 250ms);
  CHECK(config.timeouts.drain == 1h);
  // Sorted by name, whatever the file order.
  REQUIRE(config.upstreams.size() == 2);
  CHECK(config.upstreams[0].name == "api");
  CHECK(config.upstreams[1].name == "web");
  const Upstream& api = config.upstreams[0];
  CHECK(api.servers[0].host == "::1");
  CHECK(api.connect_timeout == 1s);
  CHECK(api.response_timeout == 2min);
  CHECK(api.pool.max_connections == 8);
  CHECK(api.pool.max_idle == 0);
  CHECK(api.pool.idle_timeout == 15s);
  CHECK(api.pool.max_pending == 0);
  CHECK(config.upstreams[1].servers[0].str() == "app.internal:8000");
  REQUIRE(config.routes.size() == 3);
  CHECK(config.routes[0].match.host == "api.example.com");
  CHECK(config.routes[0].match.path_prefix == "/v1/");
  CHECK(config.routes[0].match.methods == std::vector<std::string>{"GET", "POST"});
  CHECK(config.routes[0].upstream_index == 0);
  CHECK(config.routes[1].match.host == "*.example.com");
  CHECK(config.routes[1].upstream == "web");
  CHECK(config.routes[1].upstream_index == 1);
  CHECK(config.routes[2].upstream_index == 1);
}

TEST_CASE("workers \"auto\" is the CPU count, at least 1") {
  const Config config =
      parse_config(patched(R"([{"op": "replace", "path": "/workers", "value": "auto"}])"), kFile);
  const unsigned cpus = std::thread::hardware_concurrency();
  CHECK(config.workers >= 1);
  CHECK(config.workers <= 256);
  if (cpus >= 1 && cpus <= 256) CHECK(config.workers == cpus);
}

TEST_CASE("sizes accept plain integers and zero where meaningful") {
  const Config config = parse_config(patched(R"([{"op": "add", "path": "/limits",
                   "value": {"max_body": 0, "max_request_line": "512B"}}])"),
                                     kFile);
  CHECK(config.limits.max_body_bytes == 0);
  CHECK(config.limits.max_request_line == 512);
}

TEST_CASE("port 0 (any free port) may repeat") {
  const Config config = parse_config(patched(R"([
      {"op": "replace", "path": "/listeners",
       "value": [{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0"}]},
      {"op": "replace", "path": "/admin/address", "value": "127.0.0.1:0"}])"),
                                     kFile);
  CHECK(config.listeners.size() == 2);
  CHECK(config.admin->address.port == 0);
}

TEST_CASE("comments are allowed") {
  const Config config = parse_config(R"({
    // the public port
    "listeners": [{"address": "127.0.0.1:8080"}],
    /* one backend */
    "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}},
    "routes": [{"upstream": "app"}]})",
                                     kFile);
  CHECK(config.listeners[0].address.port == 8080);
}

// ---------------------------------------------------------------------------
// Rejected configs

TEST_CASE("whole-document problems have an empty path") {
  const std::vector<TextCase> cases = {
      {"syntax error", R"({"workers": 2,,})", "", "invalid JSON at line 1, column 15"},
      {"syntax error line:column", "{\n  \"workers\": 2,\n  oops\n}", "",
       "invalid JSON at line 3, column 3"},
      {"empty file", "", "", "invalid JSON at line 1, column 1"},
      {"trailing garbage", R"({} x)", "", "invalid JSON at line 1, column 4"},
      {"number too large", R"({"workers": 1e999})", "", "invalid JSON: number overflow"},
      {"invalid UTF-8 is shown escaped", "{\"a\": \"\xff\"}", "",
       "ill-formed UTF-8 byte; last read: '\"\\xFF'"},
      {"not an object", R"([1, 2])", "", "expected a JSON object at the top level, got an array"},
      {"missing listeners",
       R"({"upstreams": {"app": {"servers": ["127.0.0.1:1"]}}, "routes": [{"upstream": "app"}]})",
       "", "missing required key \"listeners\""},
      {"missing upstreams", R"({"listeners": [{"address": "127.0.0.1:1"}], "routes": []})", "",
       "missing required key \"upstreams\""},
      {"missing routes",
       R"({"listeners": [{"address": "127.0.0.1:1"}],
           "upstreams": {"app": {"servers": ["127.0.0.1:1"]}}})",
       "", "missing required key \"routes\""},
  };
  for (const TextCase& c : cases) {
    INFO("case: " << std::string(c.name));
    check_rejected(c.text, c.path, c.problem);
  }
}

TEST_CASE("duplicate keys are rejected with their path") {
  const std::vector<TextCase> cases = {
      {"top level", R"({"workers": 1, "workers": 2})", "/workers", "duplicate key \"workers\""},
      {"nested in arrays", R"({"routes": [{}, {"match": {"host": "a", "host": "b"}}]})",
       "/routes/1/match/host", "duplicate key \"host\""},
      {"after nested arrays", R"({"a": [[1], {"b": [2]}], "c": {"d/e": 1, "d/e": 2}})", "/c/d~1e",
       "duplicate key"},
  };
  for (const TextCase& c : cases) {
    INFO("case: " << std::string(c.name));
    check_rejected(c.text, c.path, c.problem);
  }
}

TEST_CASE("unknown keys, with a did-you-mean hint when close") {
  run_patch_cases({
      {"root", R"([{"op": "add", "path": "/listener", "value": 1}])", "/listener",
       "unknown key \"listener\" (did you mean \"listeners\"?)"},
      {"listener", R"([{"op": "add", "path": "/listeners/0/adress", "value": "127.0.0.1:1"}])",
       "/listeners/0/adress", "unknown key \"adress\" (did you mean \"address\"?)"},
      {"no close key lists the valid ones",
       R"([{"op": "add", "path": "/admin/zzzzzzzz", "value": 1}])", "/admin/zzzzzzzz",
       "unknown key \"zzzzzzzz\" (expected one of: \"address\", \"token\")"},
      {"limits", R"([{"op": "add", "path": "/limits", "value": {"max_bdy": 1}}])",
       "/limits/max_bdy", "(did you mean \"max_body\"?)"},
      {"timeouts", R"([{"op": "add", "path": "/timeouts", "value": {"keepalive_idel": "1s"}}])",
       "/timeouts/keepalive_idel", "(did you mean \"keepalive_idle\"?)"},
      {"upstream", R"([{"op": "add", "path": "/upstreams/app/server", "value": []}])",
       "/upstreams/app/server", "unknown key \"server\" (did you mean \"servers\"?)"},
      {"pool", R"([{"op": "add", "path": "/upstreams/app/pool", "value": {"max_idel": 1}}])",
       "/upstreams/app/pool/max_idel", "(did you mean \"max_idle\"?)"},
      {"route", R"([{"op": "add", "path": "/routes/0/upstrem", "value": "app"}])",
       "/routes/0/upstrem", "(did you mean \"upstream\"?)"},
      {"match", R"([{"op": "add", "path": "/routes/0/match/path", "value": "/"}])",
       "/routes/0/match/path", "unknown key \"path\""},
      {"escaped in the path", R"([{"op": "add", "path": "/admin/a~1b~0c", "value": 1}])",
       "/admin/a~1b~0c", "unknown key \"a/b~c\""},
  });
}

TEST_CASE("wrong types and missing required keys") {
  run_patch_cases({
      {"log_level type", R"([{"op": "add", "path": "/log_level", "value": 5}])", "/log_level",
       "expected a string, got the number 5"},
      {"listeners type", R"([{"op": "replace", "path": "/listeners", "value": {}}])", "/listeners",
       "expected an array, got an object"},
      {"listeners empty", R"([{"op": "replace", "path": "/listeners", "value": []}])", "/listeners",
       "must not be empty"},
      {"listener not an object",
       R"([{"op": "replace", "path": "/listeners/0", "value": "127.0.0.1:1"}])", "/listeners/0",
       "expected an object"},
      {"listener address missing", R"([{"op": "remove", "path": "/listeners/0/address"}])",
       "/listeners/0", "missing required key \"address\""},
      {"listener address type",
       R"([{"op": "replace", "path": "/listeners/0/address", "value": 8080}])",
       "/listeners/0/address", "expected a string"},
      {"backlog zero", R"([{"op": "add", "path": "/listeners/0/backlog", "value": 0}])",
       "/listeners/0/backlog", "expected an integer between 1 and 65535, got the number 0"},
      {"backlog too big", R"([{"op": "add", "path": "/listeners/0/backlog", "value": 70000}])",
       "/listeners/0/backlog", "must be at most 65535"},
      {"backlog float", R"([{"op": "add", "path": "/listeners/0/backlog", "value": 1.5}])",
       "/listeners/0/backlog", "expected an integer between 1 and 65535"},
      {"backlog string", R"([{"op": "add", "path": "/listeners/0/backlog", "value": "511"}])",
       "/listeners/0/backlog", "got the string \"511\""},
      {"admin type", R"([{"op": "replace", "path": "/admin", "value": "127.0.0.1:1"}])", "/admin",
       "expected an object"},
      {"admin address missing", R"([{"op": "replace", "path": "/admin", "value": {}}])", "/admin",
       "missing required key \"address\""},
      {"limits type", R"([{"op": "add", "path": "/limits", "value": []}])", "/limits",
       "expected an object"},
      {"upstreams type", R"([{"op": "replace", "path": "/upstreams", "value": []}])", "/upstreams",
       "expected an object"},
      {"upstreams empty", R"([{"op": "replace", "path": "/upstreams", "value": {}}])", "/upstreams",
       "at least one upstream"},
      {"upstream type",
       R"([{"op": "replace", "path": "/upstreams/app", "value": ["127.0.0.1:1"]}])",
       "/upstreams/app", "expected an object"},
      {"servers missing", R"([{"op": "remove", "path": "/upstreams/app/servers"}])",
       "/upstreams/app", "missing required key \"servers\""},
      {"servers empty", R"([{"op": "replace", "path": "/upstreams/app/servers", "value": []}])",
       "/upstreams/app/servers", "must not be empty"},
      {"server type", R"([{"op": "replace", "path": "/upstreams/app/servers/0", "value": 9001}])",
       "/upstreams/app/servers/0", "expected a string"},
      {"pool max_connections zero",
       R"([{"op": "add", "path": "/upstreams/app/pool", "value": {"max_connections": 0}}])",
       "/upstreams/app/pool/max_connections", "expected a positive integer"},
      {"pool max_pending negative",
       R"([{"op": "add", "path": "/upstreams/app/pool", "value": {"max_pending": -1}}])",
       "/upstreams/app/pool/max_pending", "expected a non-negative integer, got the number -1"},
      {"pool max_idle too big",
       R"([{"op": "add", "path": "/upstreams/app/pool", "value": {"max_idle": 4294967296}}])",
       "/upstreams/app/pool/max_idle", "must be at most 4294967295"},
      {"routes type", R"([{"op": "replace", "path": "/routes", "value": {}}])", "/routes",
       "expected an array"},
      {"routes empty", R"([{"op": "replace", "path": "/routes", "value": []}])", "/routes",
       "must not be empty"},
      {"route upstream missing", R"([{"op": "remove", "path": "/routes/0/upstream"}])", "/routes/0",
       "missing required key \"upstream\""},
      {"route upstream type", R"([{"op": "replace", "path": "/routes/0/upstream", "value": 1}])",
       "/routes/0/upstream", "expected a string"},
      {"match type", R"([{"op": "replace", "path": "/routes/0/match", "value": "/"}])",
       "/routes/0/match", "expected an object"},
      {"null value", R"([{"op": "replace", "path": "/routes/0/match/host", "value": null}])",
       "/routes/0/match/host", "expected a string, got null"},
  });
}

TEST_CASE("workers: \"auto\" or 1..256") {
  run_patch_cases({
      {"zero", R"([{"op": "replace", "path": "/workers", "value": 0}])", "/workers",
       "expected \"auto\" or an integer between 1 and 256, got the number 0"},
      {"too many", R"([{"op": "replace", "path": "/workers", "value": 257}])", "/workers",
       "between 1 and 256"},
      {"negative", R"([{"op": "replace", "path": "/workers", "value": -1}])", "/workers",
       "got the number -1"},
      {"float", R"([{"op": "replace", "path": "/workers", "value": 2.5}])", "/workers",
       "got the number 2.5"},
      {"other string", R"([{"op": "replace", "path": "/workers", "value": "max"}])", "/workers",
       "got the string \"max\""},
      {"boolean", R"([{"op": "replace", "path": "/workers", "value": true}])", "/workers",
       "got true"},
  });
}

TEST_CASE("log_level is one of debug, info, warn, error") {
  run_patch_cases({
      {"typo", R"([{"op": "add", "path": "/log_level", "value": "inf"}])", "/log_level",
       "unknown log level \"inf\" (did you mean \"info\"?)"},
      {"unrelated", R"([{"op": "add", "path": "/log_level", "value": "verbose"}])", "/log_level",
       "(expected one of: \"debug\", \"info\", \"warn\", \"error\")"},
  });
}

TEST_CASE("durations must be valid and greater than zero") {
  run_patch_cases({
      {"number", R"([{"op": "add", "path": "/timeouts", "value": {"header_read": 10}}])",
       "/timeouts/header_read", "expected a duration string such as \"30s\", got the number 10"},
      {"no unit", R"([{"op": "add", "path": "/timeouts", "value": {"body_read": "10"}}])",
       "/timeouts/body_read", "invalid duration \"10\": missing unit"},
      {"bad unit", R"([{"op": "add", "path": "/timeouts", "value": {"send": "10sec"}}])",
       "/timeouts/send", "unknown unit \"sec\""},
      {"zero", R"([{"op": "add", "path": "/timeouts", "value": {"drain": "0s"}}])",
       "/timeouts/drain", "must be greater than zero"},
      {"negative", R"([{"op": "add", "path": "/timeouts", "value": {"keepalive_idle": "-5s"}}])",
       "/timeouts/keepalive_idle", "invalid duration \"-5s\""},
      {"connect_timeout",
       R"([{"op": "add", "path": "/upstreams/app/connect_timeout", "value": "5x"}])",
       "/upstreams/app/connect_timeout", "invalid duration \"5x\""},
      {"response_timeout zero",
       R"([{"op": "add", "path": "/upstreams/app/response_timeout", "value": "0ms"}])",
       "/upstreams/app/response_timeout", "must be greater than zero"},
      {"pool idle_timeout",
       R"([{"op": "add", "path": "/upstreams/app/pool", "value": {"idle_timeout": ""}}])",
       "/upstreams/app/pool/idle_timeout", "invalid duration \"\""},
  });
}

TEST_CASE("sizes: size strings or non-negative integers, within range") {
  run_patch_cases({
      {"negative string", R"([{"op": "add", "path": "/limits", "value": {"max_body": "-1"}}])",
       "/limits/max_body", "invalid size \"-1\""},
      {"negative number", R"([{"op": "add", "path": "/limits", "value": {"max_body": -5}}])",
       "/limits/max_body", "expected a size such as \"64MiB\" or a non-negative number of bytes"},
      {"bad unit", R"([{"op": "add", "path": "/limits", "value": {"max_body": "12XB"}}])",
       "/limits/max_body", "unknown unit \"XB\""},
      {"garbage", R"([{"op": "add", "path": "/limits", "value": {"max_body": "lots"}}])",
       "/limits/max_body", "invalid size \"lots\""},
      {"overflow",
       R"([{"op": "add", "path": "/limits", "value": {"max_body": "99999999999999999999"}}])",
       "/limits/max_body", "too large"},
      {"unit overflow",
       R"([{"op": "add", "path": "/limits", "value": {"max_body": "17179869184GiB"}}])",
       "/limits/max_body", "too large"},
      {"float", R"([{"op": "add", "path": "/limits", "value": {"max_body": 1.5}}])",
       "/limits/max_body", "got the number 1.5"},
      {"too big for the field",
       R"([{"op": "add", "path": "/limits", "value": {"max_request_line": "4GiB"}}])",
       "/limits/max_request_line", "must be at most 4294967295 bytes"},
      {"zero where meaningless",
       R"([{"op": "add", "path": "/limits", "value": {"max_header_bytes": 0}}])",
       "/limits/max_header_bytes", "must be at least 1 byte"},
      {"count as string",
       R"([{"op": "add", "path": "/limits", "value": {"max_header_count": "100"}}])",
       "/limits/max_header_count", "expected a positive integer, got the string \"100\""},
      {"count zero", R"([{"op": "add", "path": "/limits", "value": {"max_connections": 0}}])",
       "/limits/max_connections", "expected a positive integer"},
  });
}

TEST_CASE("addresses") {
  run_patch_cases({
      {"listener host name",
       R"([{"op": "replace", "path": "/listeners/0/address", "value": "localhost:8080"}])",
       "/listeners/0/address", "must be an IP address, not a name (\"localhost\")"},
      {"admin host name",
       R"([{"op": "replace", "path": "/admin/address", "value": "admin.local:9100"}])",
       "/admin/address", "must be an IP address"},
      {"missing port",
       R"([{"op": "replace", "path": "/listeners/0/address", "value": "127.0.0.1"}])",
       "/listeners/0/address", "invalid address \"127.0.0.1\": missing port"},
      {"port too big",
       R"([{"op": "replace", "path": "/listeners/0/address", "value": "127.0.0.1:65536"}])",
       "/listeners/0/address", "invalid port \"65536\""},
      {"unbracketed IPv6",
       R"([{"op": "replace", "path": "/listeners/0/address", "value": "::1:8080"}])",
       "/listeners/0/address", "must be written in brackets"},
      {"bad IPv4",
       R"([{"op": "replace", "path": "/listeners/0/address", "value": "256.0.0.1:80"}])",
       "/listeners/0/address", "invalid host \"256.0.0.1\""},
      {"server bad host",
       R"([{"op": "replace", "path": "/upstreams/app/servers/0", "value": "bad host:80"}])",
       "/upstreams/app/servers/0", "invalid host \"bad host\""},
      {"server port 0",
       R"([{"op": "add", "path": "/upstreams/app/servers/-", "value": "10.0.0.1:0"}])",
       "/upstreams/app/servers/1", "port must be 1..65535"},
      {"duplicate server",
       R"([{"op": "add", "path": "/upstreams/app/servers/-", "value": "127.0.0.1:9001"}])",
       "/upstreams/app/servers/1", "duplicate server \"127.0.0.1:9001\""},
      {"duplicate listener",
       R"([{"op": "add", "path": "/listeners/-", "value": {"address": "127.0.0.1:8080"}}])",
       "/listeners/1/address", "address 127.0.0.1:8080 is already used by /listeners/0"},
      {"duplicate IPv6 listener, other spelling",
       R"([{"op": "replace", "path": "/listeners",
            "value": [{"address": "[::1]:80"}, {"address": "[0:0::1]:80"}]}])",
       "/listeners/1/address", "already used by /listeners/0"},
      {"admin on a listener address",
       R"([{"op": "replace", "path": "/admin/address", "value": "127.0.0.1:8080"}])",
       "/admin/address", "address 127.0.0.1:8080 is already used by /listeners/0"},
  });
}

TEST_CASE("upstream names") {
  run_patch_cases({
      {"space",
       R"([{"op": "add", "path": "/upstreams/my app", "value": {"servers": ["127.0.0.1:1"]}}])",
       "/upstreams/my app", "invalid upstream name \"my app\""},
      {"slash is escaped in the path",
       R"([{"op": "add", "path": "/upstreams/a~1b", "value": {"servers": ["127.0.0.1:1"]}}])",
       "/upstreams/a~1b", "invalid upstream name \"a/b\""},
  });
}

TEST_CASE("routes") {
  run_patch_cases({
      {"wildcard in the middle",
       R"([{"op": "replace", "path": "/routes/0/match/host", "value": "a.*.com"}])",
       "/routes/0/match/host", "invalid host \"a.*.com\""},
      {"bare wildcard suffix",
       R"([{"op": "replace", "path": "/routes/0/match/host", "value": "*."}])",
       "/routes/0/match/host", "invalid host"},
      {"host with port",
       R"([{"op": "replace", "path": "/routes/0/match/host", "value": "example.com:80"}])",
       "/routes/0/match/host", "without a port"},
      {"path without slash",
       R"([{"op": "replace", "path": "/routes/0/match/path_prefix", "value": "api"}])",
       "/routes/0/match/path_prefix", "must start with \"/\""},
      {"path with query",
       R"([{"op": "replace", "path": "/routes/0/match/path_prefix", "value": "/a?b"}])",
       "/routes/0/match/path_prefix", "must not contain"},
      {"methods not an array",
       R"([{"op": "add", "path": "/routes/0/match/methods", "value": "GET"}])",
       "/routes/0/match/methods", "expected an array of method names"},
      {"methods empty", R"([{"op": "add", "path": "/routes/0/match/methods", "value": []}])",
       "/routes/0/match/methods", "must not be empty"},
      {"method not a token",
       R"([{"op": "add", "path": "/routes/0/match/methods", "value": ["GET", "GE T"]}])",
       "/routes/0/match/methods/1", "invalid method name \"GE T\""},
      {"method empty", R"([{"op": "add", "path": "/routes/0/match/methods", "value": [""]}])",
       "/routes/0/match/methods/0", "invalid method name \"\""},
      {"unknown upstream, close",
       R"([{"op": "add", "path": "/routes/-", "value": {"upstream": "ap"}}])", "/routes/1/upstream",
       "unknown upstream \"ap\" (did you mean \"app\"?)"},
      {"unknown upstream, not close",
       R"([{"op": "add", "path": "/routes/-", "value": {"upstream": "billing"}}])",
       "/routes/1/upstream", "unknown upstream \"billing\" (defined upstreams: \"app\")"},
  });
}

TEST_CASE("what() reads <file>: <json_path>: <problem>") {
  try {
    (void)parse_config(
        patched(R"([{"op": "replace", "path": "/routes/0/upstream", "value": "ap"}])"),
        "conf/torii.json");
    FAIL("accepted");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) ==
          "conf/torii.json: /routes/0/upstream: unknown upstream \"ap\" (did you mean \"app\"?)");
  }
  const ConfigError no_path("torii.json", "", "cannot open file");
  CHECK(std::string(no_path.what()) == "torii.json: cannot open file");
}

// ---------------------------------------------------------------------------
// Files

TEST_CASE("load_config_file") {
  namespace fs = std::filesystem;
  SUBCASE("missing file names the file") {
    const std::string path = "/nonexistent-torii-dir/torii.json";
    try {
      (void)load_config_file(path);
      FAIL("accepted");
    } catch (const ConfigError& e) {
      CHECK(e.file() == path);
      CHECK(e.json_path() == "");
      CHECK(contains(e.problem(), "cannot open"));
      CHECK(std::string(e.what()).rfind(path + ": ", 0) == 0);
    }
  }
  SUBCASE("a directory is not a config") {
    const std::string path = fs::temp_directory_path().string();
    CHECK_THROWS_AS((void)load_config_file(path), ConfigError);
  }
  SUBCASE("a real file loads and records its path") {
    const fs::path path =
        fs::temp_directory_path() / ("torii_test_config_" + std::to_string(::getpid()) + ".json");
    {
      std::ofstream out(path);
      out << kMinimal;
    }
    const Config config = load_config_file(path.string());
    fs::remove(path);
    CHECK(config.source_path == path.string());
    CHECK(config.workers == 2);
  }
}

TEST_CASE("shipped examples validate") {
  const auto dir = source_root() / "conf" / "examples";
  REQUIRE_MESSAGE(std::filesystem::is_directory(dir), dir.string());
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    INFO("example: " << entry.path().string());
    CHECK_NOTHROW((void)load_config_file(entry.path().string()));
    ++count;
  }
  CHECK(count > 0);
}

TEST_CASE("```json blocks in docs/CONFIG.md are complete, valid configs") {
  const auto doc = source_root() / "docs" / "CONFIG.md";
  const std::string text = read_text(doc);
  REQUIRE_MESSAGE(!text.empty(), doc.string());
  size_t count = 0;
  const std::string open = "```json\n";
  for (size_t start = text.find(open); start != std::string::npos; start = text.find(open, start)) {
    start += open.size();
    const size_t end = text.find("```", start);
    REQUIRE(end != std::string::npos);
    const std::string block = text.substr(start, end - start);
    INFO("block:\n" << block);
    CHECK_NOTHROW((void)parse_config(block, "CONFIG.md"));
    ++count;
    start = end + 3;
  }
  CHECK(count > 0);
}

// ---------------------------------------------------------------------------
// Helpers

TEST_CASE("parse_duration") {
  struct Row {
    const char* text;
    std::optional<Millis> expected;
  };
  const std::vector<Row> rows = {
      {"250ms", 250ms},
      {"30s", 30s},
      {"1.5s", 1500ms},
      {"5m", 5min},
      {"1h", 1h},
      {"0s", 0ms},
      {"0.25m", 15s},
      {"1.000s", 1s},
      {"007s", 7s},
      {"", std::nullopt},
      {"s", std::nullopt},
      {"10", std::nullopt},
      {"-5s", std::nullopt},
      {"+5s", std::nullopt},
      {"5 s", std::nullopt},
      {" 5s", std::nullopt},
      {"5S", std::nullopt},
      {"5sec", std::nullopt},
      {"1d", std::nullopt},
      {".5s", std::nullopt},
      {"1.s", std::nullopt},
      {"1.5.5s", std::nullopt},
      {"0.5ms", std::nullopt},
      {"1.0000000001s", std::nullopt},
      {"99999999999999999999ms", std::nullopt},
      {"9223372036854775807ms", Millis(9223372036854775807LL)},
      {"9223372036854775808ms", std::nullopt},
      {"3000000000000000h", std::nullopt},
  };
  for (const Row& row : rows) {
    INFO("input: \"" << std::string(row.text) << "\"");
    CHECK(parse_duration(row.text) == row.expected);
  }
}

TEST_CASE("parse_size") {
  struct Row {
    const char* text;
    std::optional<uint64_t> expected;
  };
  const std::vector<Row> rows = {
      {"512", 512},
      {"0", 0},
      {"512B", 512},
      {"10KB", 10000},
      {"16KiB", 16384},
      {"2MB", 2000000},
      {"64MiB", 64ull << 20},
      {"3GB", 3000000000ull},
      {"1GiB", 1ull << 30},
      {"18446744073709551615", 18446744073709551615ull},
      {"18446744073709551616", std::nullopt},
      {"17179869184GiB", std::nullopt},
      {"", std::nullopt},
      {"KiB", std::nullopt},
      {"-1", std::nullopt},
      {"1.5MiB", std::nullopt},
      {"16kib", std::nullopt},
      {"16 KiB", std::nullopt},
      {"16TiB", std::nullopt},
      {"12XB", std::nullopt},
      {"0x10", std::nullopt},
  };
  for (const Row& row : rows) {
    INFO("input: \"" << std::string(row.text) << "\"");
    CHECK(parse_size(row.text) == row.expected);
  }
}

TEST_CASE("parse_host_port") {
  struct Row {
    const char* text;
    bool valid;
    const char* host;
    uint16_t port;
  };
  const std::vector<Row> rows = {
      {"127.0.0.1:8080", true, "127.0.0.1", 8080},
      {"0.0.0.0:0", true, "0.0.0.0", 0},
      {"[::1]:8080", true, "::1", 8080},
      {"[::]:65535", true, "::", 65535},
      {"[2001:db8::1]:443", true, "2001:db8::1", 443},
      {"localhost:9001", true, "localhost", 9001},
      {"app.internal:8000", true, "app.internal", 8000},
      {"my_service-1.svc:80", true, "my_service-1.svc", 80},
      {"", false, "", 0},
      {"127.0.0.1", false, "", 0},
      {"127.0.0.1:", false, "", 0},
      {":8080", false, "", 0},
      {"127.0.0.1:65536", false, "", 0},
      {"127.0.0.1:-1", false, "", 0},
      {"127.0.0.1:80a", false, "", 0},
      {"127.0.0.1:000080", false, "", 0},
      {"::1:8080", false, "", 0},
      {"[::1]", false, "", 0},
      {"[::1]8080", false, "", 0},
      {"[::1:8080", false, "", 0},
      {"[localhost]:80", false, "", 0},
      {"[127.0.0.1]:80", false, "", 0},
      {"256.1.1.1:80", false, "", 0},
      {"1.2.3:80", false, "", 0},
      {"bad host:80", false, "", 0},
      {"-bad.example:80", false, "", 0},
      {"a..b:80", false, "", 0},
      {"*:80", false, "", 0},
  };
  for (const Row& row : rows) {
    INFO("input: \"" << std::string(row.text) << "\"");
    const auto parsed = parse_host_port(row.text);
    REQUIRE(parsed.has_value() == row.valid);
    if (parsed) {
      CHECK(parsed->host == row.host);
      CHECK(parsed->port == row.port);
      CHECK(parsed->str() == row.text);  // round-trips
    }
  }
}

TEST_CASE("HostPort::str") {
  CHECK(HostPort{"127.0.0.1", 80}.str() == "127.0.0.1:80");
  CHECK(HostPort{"::1", 8080}.str() == "[::1]:8080");
  CHECK(HostPort{"example.com", 0}.str() == "example.com:0");
}

TEST_CASE("did_you_mean") {
  const std::vector<std::string> keys = {"address", "backlog"};
  const std::vector<std::string> levels = {"debug", "info", "warn", "error"};
  struct Row {
    const char* word;
    const std::vector<std::string>* candidates;
    std::optional<std::string> expected;
  };
  const std::vector<Row> rows = {
      {"adress", &keys, "address"},    // deletion
      {"addresss", &keys, "address"},  // insertion
      {"backlgo", &keys, "backlog"},   // transposition counts as one edit
      {"Address", &keys, "address"},   // case is ignored
      {"bcaklgo", &keys, "backlog"},   // two edits
      {"inf", &levels, "info"},
      {"warning", &levels, std::nullopt},  // three edits in seven letters: too far
      {"zzzz", &keys, std::nullopt},
      {"x", &levels, std::nullopt},  // one letter is never "close"
      {"", &keys, std::nullopt},
  };
  for (const Row& row : rows) {
    INFO("word: \"" << std::string(row.word) << "\"");
    CHECK(did_you_mean(row.word, *row.candidates) == row.expected);
  }
  // Long words allow a third of their length (three edits in 13 letters).
  CHECK(did_you_mean("maxconectionz", {"max_connections"}) ==
        std::optional<std::string>("max_connections"));
  CHECK(did_you_mean("anything", {}) == std::nullopt);
}

// ---------------------------------------------------------------------------
// Response cache

TEST_CASE("cache: the issue's route snippet parses, everything else defaulted") {
  const Config config = parse_config(R"({
    "listeners": [{"address": "127.0.0.1:8080"}],
    "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}},
    "routes": [{"upstream": "app",
                "cache": {"ttl": "60s", "prewarm": ["/hello", "/v1/items?page=1"]}}]})",
                                     kFile);
  REQUIRE(config.routes[0].cache.has_value());
  const RouteCache& cache = *config.routes[0].cache;
  CHECK(cache.enabled);
  CHECK(cache.ttl == 60s);
  CHECK(cache.prewarm == std::vector<std::string>{"/hello", "/v1/items?page=1"});
  CHECK(cache.max_object_size == uint64_t{1} << 20);
  CHECK(cache.key.query == QueryKeyMode::kKeep);
  CHECK(cache.key.ignore_params.empty());
  CHECK(cache.key.headers.empty());
  CHECK_FALSE(cache.cache_set_cookie);
  CHECK(cache.client_no_cache == ClientNoCache::kIgnore);
  CHECK(cache.stale_while_revalidate == 0ms);
  CHECK(cache.stale_if_error == 0ms);
  CHECK(cache.refresh_at == doctest::Approx(0.8));
  // No top-level "cache": the gateway-wide defaults.
  CHECK(config.cache.memory == uint64_t{256} << 20);
  CHECK(config.cache.lock_timeout == 5s);
  CHECK(config.cache.prewarm_timeout == 10s);
}

TEST_CASE("cache: absent unless given; an empty object takes every default") {
  CHECK_FALSE(parse_config(kMinimal, kFile).routes[0].cache.has_value());
  const Config config =
      parse_config(patched(R"([{"op": "add", "path": "/routes/0/cache", "value": {}}])"), kFile);
  REQUIRE(config.routes[0].cache.has_value());
  const RouteCache defaults;
  const RouteCache& cache = *config.routes[0].cache;
  CHECK(cache.enabled == defaults.enabled);
  CHECK(cache.ttl == defaults.ttl);
  CHECK(cache.prewarm.empty());
  CHECK(cache.max_object_size == defaults.max_object_size);
  CHECK(cache.refresh_at == defaults.refresh_at);
}

TEST_CASE("cache: every key is read into its field") {
  const Config config = parse_config(R"({
    "workers": 4,
    "listeners": [{"address": "127.0.0.1:8080"}],
    "cache": {"memory": "1GiB", "lock_timeout": "250ms", "prewarm_timeout": "10m"},
    "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}},
    "routes": [
      {"match": {"host": "api.example.com", "path_prefix": "/v1/", "methods": ["HEAD"]},
       "upstream": "app",
       "cache": {
         "enabled": false,
         "ttl": "5m",
         "prewarm": ["/v1/", "/v1/items?page=1&sort=name"],
         "max_object_size": "1GiB",
         "key": {"query": "sort", "ignore_params": ["utm_source", "fbclid"],
                 "headers": ["Accept-Language", "x-tenant"]},
         "cache_set_cookie": true,
         "client_no_cache": "revalidate",
         "stale_while_revalidate": "30s",
         "stale_if_error": "1h",
         "refresh_at": 0.5
       }},
      {"upstream": "app", "cache": {"key": {"query": "drop"}, "ttl": "1s", "refresh_at": 0.95,
                                    "max_object_size": 1, "stale_if_error": "0s"}},
      {"match": {"path_prefix": "/k/"}, "upstream": "app", "cache": {"key": {"query": "keep"}}}
    ]})",
                                     kFile);
  CHECK(config.cache.memory == uint64_t{1} << 30);
  CHECK(config.cache.lock_timeout == 250ms);
  CHECK(config.cache.prewarm_timeout == 10min);
  REQUIRE(config.routes[0].cache.has_value());
  const RouteCache& a = *config.routes[0].cache;
  CHECK_FALSE(a.enabled);
  CHECK(a.ttl == 5min);
  CHECK(a.prewarm == std::vector<std::string>{"/v1/", "/v1/items?page=1&sort=name"});
  CHECK(a.max_object_size == uint64_t{1} << 30);
  CHECK(a.key.query == QueryKeyMode::kSort);
  CHECK(a.key.ignore_params == std::vector<std::string>{"utm_source", "fbclid"});
  CHECK(a.key.headers == std::vector<std::string>{"accept-language", "x-tenant"});
  CHECK(a.cache_set_cookie);
  CHECK(a.client_no_cache == ClientNoCache::kRevalidate);
  CHECK(a.stale_while_revalidate == 30s);
  CHECK(a.stale_if_error == 1h);
  CHECK(a.refresh_at == doctest::Approx(0.5));
  REQUIRE(config.routes[1].cache.has_value());
  const RouteCache& b = *config.routes[1].cache;
  CHECK(b.key.query == QueryKeyMode::kDrop);
  CHECK(b.ttl == 1s);
  CHECK(b.refresh_at == doctest::Approx(0.95));
  CHECK(b.max_object_size == 1);
  CHECK(b.stale_if_error == 0ms);
  CHECK(config.routes[2].cache->key.query == QueryKeyMode::kKeep);
}

TEST_CASE("cache: memory shares and the smallest budgets that work") {
  // 1MiB per worker is the floor: 2MiB for the two workers of kMinimal is enough.
  const Config config = parse_config(
      patched(R"([{"op": "add", "path": "/cache", "value": {"memory": "2MiB"}}])"), kFile);
  CHECK(config.cache.memory == uint64_t{2} << 20);
  const Config plain_bytes = parse_config(
      patched(R"([{"op": "add", "path": "/cache", "value": {"memory": 4194304}}])"), kFile);
  CHECK(plain_bytes.cache.memory == uint64_t{4} << 20);
  // An empty object keeps the defaults.
  const Config empty =
      parse_config(patched(R"([{"op": "add", "path": "/cache", "value": {}}])"), kFile);
  CHECK(empty.cache.memory == uint64_t{256} << 20);
  // Methods: GET or HEAD is enough, in any case.
  CHECK_NOTHROW((void)parse_config(patched(R"([
      {"op": "add", "path": "/routes/0/match/methods", "value": ["post", "get"]},
      {"op": "add", "path": "/routes/0/cache", "value": {}}])"),
                                   kFile));
}

TEST_CASE("cache: unknown keys get a did-you-mean") {
  run_patch_cases({
      {"route cache", R"([{"op": "add", "path": "/routes/0/cache", "value": {"tll": "60s"}}])",
       "/routes/0/cache/tll", "unknown key \"tll\" (did you mean \"ttl\"?)"},
      {"route cache, longer",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarn": []}}])",
       "/routes/0/cache/prewarn", "(did you mean \"prewarm\"?)"},
      {"route cache, not close",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"zzzzzzzz": 1}}])",
       "/routes/0/cache/zzzzzzzz", "(expected one of: \"enabled\", \"ttl\", \"prewarm\""},
      {"key", R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"header": []}}}])",
       "/routes/0/cache/key/header", "unknown key \"header\" (did you mean \"headers\"?)"},
      {"global", R"([{"op": "add", "path": "/cache", "value": {"memroy": "1GiB"}}])",
       "/cache/memroy", "unknown key \"memroy\" (did you mean \"memory\"?)"},
      {"root", R"([{"op": "add", "path": "/cahce", "value": {}}])", "/cahce",
       "(did you mean \"cache\"?)"},
  });
}

TEST_CASE("cache: the global object") {
  run_patch_cases({
      {"type", R"([{"op": "add", "path": "/cache", "value": "256MiB"}])", "/cache",
       "expected an object, got the string \"256MiB\""},
      {"memory below 1MiB", R"([{"op": "add", "path": "/cache", "value": {"memory": "512KiB"}}])",
       "/cache/memory", "must be at least 1MiB, got the string \"512KiB\""},
      {"memory zero", R"([{"op": "add", "path": "/cache", "value": {"memory": 0}}])",
       "/cache/memory", "must be at least 1MiB, got the number 0"},
      {"memory bad size", R"([{"op": "add", "path": "/cache", "value": {"memory": "1TB"}}])",
       "/cache/memory", "invalid size \"1TB\": unknown unit \"TB\""},
      {"memory type", R"([{"op": "add", "path": "/cache", "value": {"memory": true}}])",
       "/cache/memory", "expected a size such as \"64MiB\""},
      {"memory per worker",
       R"([{"op": "replace", "path": "/workers", "value": 4},
           {"op": "add", "path": "/cache", "value": {"memory": "2MiB"}}])",
       "/cache/memory",
       "the memory is split between the 4 workers, so each would get 524288 bytes (512KiB), "
       "less than the 1MiB a worker needs; raise it to at least 4194304 bytes (4MiB) or use "
       "fewer workers"},
      {"memory per worker, uneven",
       R"([{"op": "replace", "path": "/workers", "value": 3},
           {"op": "add", "path": "/cache", "value": {"memory": 3000000}}])",
       "/cache/memory", "each would get 1000000 bytes, less than the 1MiB"},
      {"lock_timeout zero", R"([{"op": "add", "path": "/cache", "value": {"lock_timeout": "0s"}}])",
       "/cache/lock_timeout", "must be greater than zero, got \"0s\""},
      {"lock_timeout too long",
       R"([{"op": "add", "path": "/cache", "value": {"lock_timeout": "11m"}}])",
       "/cache/lock_timeout", "must be at most 10m, got \"11m\""},
      {"lock_timeout number", R"([{"op": "add", "path": "/cache", "value": {"lock_timeout": 5}}])",
       "/cache/lock_timeout", "expected a duration string such as \"30s\", got the number 5"},
      {"prewarm_timeout zero",
       R"([{"op": "add", "path": "/cache", "value": {"prewarm_timeout": "0ms"}}])",
       "/cache/prewarm_timeout", "must be greater than zero"},
      {"prewarm_timeout too long",
       R"([{"op": "add", "path": "/cache", "value": {"prewarm_timeout": "1h"}}])",
       "/cache/prewarm_timeout", "must be at most 10m, got \"1h\""},
      {"prewarm_timeout bad",
       R"([{"op": "add", "path": "/cache", "value": {"prewarm_timeout": "10"}}])",
       "/cache/prewarm_timeout", "invalid duration \"10\": missing unit"},
  });
}

TEST_CASE("cache: route values") {
  run_patch_cases({
      {"type", R"([{"op": "add", "path": "/routes/0/cache", "value": true}])", "/routes/0/cache",
       "expected an object, got true"},
      {"enabled type", R"([{"op": "add", "path": "/routes/0/cache", "value": {"enabled": 1}}])",
       "/routes/0/cache/enabled", "expected true or false, got the number 1"},
      {"cache_set_cookie type",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"cache_set_cookie": "yes"}}])",
       "/routes/0/cache/cache_set_cookie", "expected true or false, got the string \"yes\""},
      {"ttl below 1s", R"([{"op": "add", "path": "/routes/0/cache", "value": {"ttl": "999ms"}}])",
       "/routes/0/cache/ttl", "must be at least 1s, got \"999ms\""},
      {"ttl zero", R"([{"op": "add", "path": "/routes/0/cache", "value": {"ttl": "0s"}}])",
       "/routes/0/cache/ttl", "must be at least 1s, got \"0s\""},
      {"ttl number", R"([{"op": "add", "path": "/routes/0/cache", "value": {"ttl": 60}}])",
       "/routes/0/cache/ttl", "expected a duration string such as \"30s\", got the number 60"},
      {"ttl bad unit", R"([{"op": "add", "path": "/routes/0/cache", "value": {"ttl": "1d"}}])",
       "/routes/0/cache/ttl", "invalid duration \"1d\": unknown unit \"d\""},
      {"max_object_size zero",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"max_object_size": 0}}])",
       "/routes/0/cache/max_object_size", "must be at least 1 byte, got the number 0"},
      {"max_object_size too big",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"max_object_size": "2GiB"}}])",
       "/routes/0/cache/max_object_size", "must be at most 1073741824 bytes, got the string"},
      {"max_object_size bad",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"max_object_size": "1.5MiB"}}])",
       "/routes/0/cache/max_object_size", "invalid size \"1.5MiB\""},
      {"client_no_cache typo",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"client_no_cache": "revalidat"}}])",
       "/routes/0/cache/client_no_cache",
       "unknown client_no_cache mode \"revalidat\" (did you mean \"revalidate\"?)"},
      {"client_no_cache unrelated",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"client_no_cache": "bypass"}}])",
       "/routes/0/cache/client_no_cache",
       "unknown client_no_cache mode \"bypass\" (expected one of: \"ignore\", \"revalidate\")"},
      {"client_no_cache type",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"client_no_cache": false}}])",
       "/routes/0/cache/client_no_cache", "expected a string, got false"},
      {"stale_while_revalidate negative",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"stale_while_revalidate": "-1s"}}])",
       "/routes/0/cache/stale_while_revalidate", "invalid duration \"-1s\""},
      {"stale_if_error number",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"stale_if_error": 0}}])",
       "/routes/0/cache/stale_if_error", "expected a duration string"},
      {"refresh_at too low",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"refresh_at": 0.49}}])",
       "/routes/0/cache/refresh_at",
       "expected a number between 0.5 and 0.95 (the fraction of a prewarmed entry's lifetime "
       "after which it is refreshed), got the number 0.49"},
      {"refresh_at too high",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"refresh_at": 0.96}}])",
       "/routes/0/cache/refresh_at", "got the number 0.96"},
      {"refresh_at one",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"refresh_at": 1}}])",
       "/routes/0/cache/refresh_at", "between 0.5 and 0.95"},
      {"refresh_at percent",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"refresh_at": 80}}])",
       "/routes/0/cache/refresh_at", "got the number 80"},
      {"refresh_at string",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"refresh_at": "0.8"}}])",
       "/routes/0/cache/refresh_at", "got the string \"0.8\""},
      {"methods without GET or HEAD",
       R"([{"op": "add", "path": "/routes/0/match/methods", "value": ["POST", "put"]},
           {"op": "add", "path": "/routes/0/cache", "value": {}}])",
       "/routes/0/cache",
       "a cached route must allow GET, but its match.methods is [\"POST\", \"PUT\"] "
       "(add \"GET\" there or remove \"cache\")"},
  });
}

TEST_CASE("cache: prewarm paths") {
  run_patch_cases({
      {"not an array",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": "/hello"}}])",
       "/routes/0/cache/prewarm", "expected an array of paths such as [\"/\""},
      {"element type", R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": [1]}}])",
       "/routes/0/cache/prewarm/0", "expected a string, got the number 1"},
      {"no leading slash",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": ["/a", "hello"]}}])",
       "/routes/0/cache/prewarm/1", "prewarm path \"hello\" must start with \"/\""},
      {"empty", R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": [""]}}])",
       "/routes/0/cache/prewarm/0", "prewarm path \"\" must start with \"/\""},
      {"absolute URL",
       R"([{"op": "add", "path": "/routes/0/cache",
            "value": {"prewarm": ["http://example.com/"]}}])",
       "/routes/0/cache/prewarm/0", "must start with \"/\""},
      {"space", R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": ["/a b"]}}])",
       "/routes/0/cache/prewarm/0",
       "prewarm path \"/a b\" must not contain spaces, control characters, '#' or non-ASCII"},
      {"tab", R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": ["/a\tb"]}}])",
       "/routes/0/cache/prewarm/0", "prewarm path \"/a\\tb\" must not contain"},
      {"control",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": ["/\u0001"]}}])",
       "/routes/0/cache/prewarm/0", "must not contain spaces, control characters"},
      {"fragment",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": ["/page#top"]}}])",
       "/routes/0/cache/prewarm/0", "must not contain spaces, control characters, '#'"},
      {"non-ASCII",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"prewarm": ["/café"]}}])",
       "/routes/0/cache/prewarm/0", "(percent-encode them, as a client would)"},
      {"outside the path_prefix",
       R"([{"op": "replace", "path": "/routes/0/match/path_prefix", "value": "/v1/"},
           {"op": "add", "path": "/routes/0/cache",
            "value": {"prewarm": ["/v1/items", "/v2/items"]}}])",
       "/routes/0/cache/prewarm/1",
       "prewarm path \"/v2/items\" does not start with the route's path_prefix \"/v1/\", so this "
       "route would not serve it"},
      {"the prefix without its slash",
       R"([{"op": "replace", "path": "/routes/0/match/path_prefix", "value": "/v1/"},
           {"op": "add", "path": "/routes/0/cache", "value": {"prewarm": ["/v1?page=1"]}}])",
       "/routes/0/cache/prewarm/0", "does not start with the route's path_prefix \"/v1/\""},
      {"duplicate",
       R"([{"op": "add", "path": "/routes/0/cache",
            "value": {"prewarm": ["/a", "/b?x=1", "/a"]}}])",
       "/routes/0/cache/prewarm/2",
       "duplicate prewarm path \"/a\" (already at /routes/0/cache/prewarm/0)"},
  });
  SUBCASE("at most 8KiB each") {
    json patch = json::parse(R"([{"op": "add", "path": "/routes/0/cache", "value": {}}])");
    patch[0]["value"]["prewarm"] = json::array({"/" + std::string(8191, 'a')});
    const std::string fits = json::parse(kMinimal).patch(patch).dump();
    CHECK(parse_config(fits, kFile).routes[0].cache->prewarm[0].size() == 8192);
    patch[0]["value"]["prewarm"] = json::array({"/" + std::string(8192, 'a')});
    check_rejected(json::parse(kMinimal).patch(patch).dump(), "/routes/0/cache/prewarm/0",
                   "a prewarm path may be at most 8KiB (8192 bytes), this one is 8193 bytes");
  }
  SUBCASE("at most 1000 paths") {
    json patch = json::parse(R"([{"op": "add", "path": "/routes/0/cache", "value": {}}])");
    json paths = json::array();
    for (int i = 0; i < 1000; ++i) paths.push_back("/p" + std::to_string(i));
    patch[0]["value"]["prewarm"] = paths;
    const std::string fits = json::parse(kMinimal).patch(patch).dump();
    CHECK(parse_config(fits, kFile).routes[0].cache->prewarm.size() == 1000);
    patch[0]["value"]["prewarm"].push_back("/p1000");
    check_rejected(json::parse(kMinimal).patch(patch).dump(), "/routes/0/cache/prewarm",
                   "at most 1000 paths, got 1001");
  }
}

TEST_CASE("cache: key") {
  run_patch_cases({
      {"type", R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": "sort"}}])",
       "/routes/0/cache/key", "expected an object, got the string \"sort\""},
      {"query typo",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"query": "srot"}}}])",
       "/routes/0/cache/key/query", "unknown query mode \"srot\" (did you mean \"sort\"?)"},
      {"query unrelated",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"query": "ignore"}}}])",
       "/routes/0/cache/key/query",
       "unknown query mode \"ignore\" (expected one of: \"keep\", \"sort\", \"drop\")"},
      {"query type",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"query": true}}}])",
       "/routes/0/cache/key/query", "expected a string, got true"},
      {"ignore_params type",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"ignore_params": "a"}}}])",
       "/routes/0/cache/key/ignore_params",
       "expected an array of query parameter names, got the string \"a\""},
      {"ignore_params element type",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"ignore_params": [1]}}}])",
       "/routes/0/cache/key/ignore_params/0", "expected a string, got the number 1"},
      {"ignore_params empty name",
       R"([{"op": "add", "path": "/routes/0/cache",
            "value": {"key": {"ignore_params": ["a", ""]}}}])",
       "/routes/0/cache/key/ignore_params/1", "a parameter name must not be empty"},
      {"ignore_params with '='",
       R"([{"op": "add", "path": "/routes/0/cache",
            "value": {"key": {"ignore_params": ["utm=1"]}}}])",
       "/routes/0/cache/key/ignore_params/0",
       "invalid parameter name \"utm=1\": it may not contain '&', '=', '#', spaces or control "
       "characters"},
      {"ignore_params duplicate",
       R"([{"op": "add", "path": "/routes/0/cache",
            "value": {"key": {"ignore_params": ["a", "b", "b"]}}}])",
       "/routes/0/cache/key/ignore_params/2",
       "duplicate parameter name \"b\" (already at /routes/0/cache/key/ignore_params/1)"},
      {"headers type",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"headers": {}}}}])",
       "/routes/0/cache/key/headers", "expected an array of header names, got an object"},
      {"header not a token",
       R"([{"op": "add", "path": "/routes/0/cache",
            "value": {"key": {"headers": ["Accept Language"]}}}])",
       "/routes/0/cache/key/headers/0", "invalid header name \"Accept Language\""},
      {"header with colon",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"headers": ["x-a:"]}}}])",
       "/routes/0/cache/key/headers/0", "invalid header name \"x-a:\""},
      {"header empty",
       R"([{"op": "add", "path": "/routes/0/cache", "value": {"key": {"headers": [""]}}}])",
       "/routes/0/cache/key/headers/0", "invalid header name \"\""},
      {"host", R"([{"op": "add", "path": "/routes/0/cache",
                    "value": {"key": {"headers": ["Accept", "Host"]}}}])",
       "/routes/0/cache/key/headers/1",
       "\"host\" is always part of the cache key; remove it from \"headers\""},
      {"duplicate header, other case",
       R"([{"op": "add", "path": "/routes/0/cache",
            "value": {"key": {"headers": ["X-Tenant", "x-tenant"]}}}])",
       "/routes/0/cache/key/headers/1",
       "duplicate header \"x-tenant\" (already at /routes/0/cache/key/headers/0) (header names "
       "are case-insensitive)"},
  });
}

TEST_CASE("cache: errors name the right route") {
  run_patch_cases({
      {"second route",
       R"([{"op": "add", "path": "/routes/-",
            "value": {"match": {"path_prefix": "/b/"}, "upstream": "app",
                      "cache": {"key": {"query": "sorted"}}}}])",
       "/routes/1/cache/key/query", "unknown query mode \"sorted\" (did you mean \"sort\"?)"},
  });
}

// ---------------------------------------------------------------------------
// Listener TLS

namespace {

namespace fs = std::filesystem;

// A fresh temporary folder for a config file and the PEM files it names.
// The files are empty: the config only checks that they can be read (their
// contents are checked when the TLS contexts are built).
class TlsDir {
 public:
  TlsDir()
      : dir_(fs::temp_directory_path() /
             ("torii_test_tls_" + std::to_string(::getpid()) + "_" + std::to_string(next_id_++))) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* name : {"a.pem", "a.key", "b.pem", "b.key"}) touch(name);
  }
  ~TlsDir() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  TlsDir(const TlsDir&) = delete;
  TlsDir& operator=(const TlsDir&) = delete;

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string config_path() const { return path("torii.json"); }

  // Creates an empty file (and its folders) at `name`, relative to the folder.
  void touch(const std::string& name) const {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream out(dir_ / name);
  }

  // Writes `text` as the folder's config file and loads it.
  Config load(const std::string& text) const {
    {
      std::ofstream out(config_path(), std::ios::binary | std::ios::trunc);
      out << text;
    }
    return load_config_file(config_path());
  }

 private:
  static inline int next_id_ = 0;
  fs::path dir_;
};

// kMinimal whose listener has `tls` (JSON text) as its "tls".
std::string with_tls(const std::string& tls) {
  json config = json::parse(kMinimal);
  config["listeners"][0]["tls"] = json::parse(tls);
  return config.dump();
}

// Loads `text` from `dir`, expecting a ConfigError at `path` whose problem
// contains `problem`.
void check_load_rejected(const TlsDir& dir, const std::string& text, const std::string& path,
                         const std::string& problem) {
  try {
    (void)dir.load(text);
    FAIL("accepted, expected error at \"" << path << "\": " << problem);
  } catch (const ConfigError& e) {
    INFO("what(): " << std::string(e.what()));
    CHECK(e.file() == dir.config_path());
    CHECK(e.json_path() == path);
    CHECK(contains(e.problem(), problem));
    CHECK(std::string(e.what()) == dir.config_path() + ": " + path + ": " + e.problem());
  }
}

struct TlsCase {
  const char* name;
  const char* tls;  // the listener's "tls" value, certificate paths relative to the TlsDir
  const char* path;
  std::string problem;
};

void run_tls_cases(const std::vector<TlsCase>& cases) {
  const TlsDir dir;
  for (const TlsCase& c : cases) {
    INFO("case: " << std::string(c.name));
    check_load_rejected(dir, with_tls(c.tls), c.path, c.problem);
  }
}

}  // namespace

TEST_CASE("tls: the issue's listener snippet parses, everything else defaulted") {
  const TlsDir dir;
  const Config config = dir.load(R"({
    "listeners": [
      {"address": "127.0.0.1:8443", "tls": {"certificates": [{"cert": "a.pem", "key": "a.key"}]}},
      {"address": "127.0.0.1:8080"}
    ],
    "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}},
    "routes": [{"upstream": "app"}]})");
  REQUIRE(config.listeners.size() == 2);
  CHECK(config.listeners[0].address.str() == "127.0.0.1:8443");
  REQUIRE(config.listeners[0].tls.has_value());
  CHECK_FALSE(config.listeners[1].tls.has_value());
  const ListenerTls& tls = *config.listeners[0].tls;
  REQUIRE(tls.certificates.size() == 1);
  // Relative paths are resolved against the config file's folder.
  CHECK(tls.certificates[0].cert_path == dir.path("a.pem"));
  CHECK(tls.certificates[0].key_path == dir.path("a.key"));
  CHECK(tls.certificates[0].names.empty());
  CHECK(tls.min_version == "TLSv1.2");
  CHECK(tls.ciphers ==
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  CHECK(tls.ciphersuites ==
        "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  CHECK(tls.handshake_timeout == 10s);
  CHECK(tls.session_tickets);
  CHECK(tls.ticket_key_rotation == 1h);
  // The same defaults as a default-constructed ListenerTls.
  const ListenerTls defaults;
  CHECK(tls.ciphers == defaults.ciphers);
  CHECK(tls.ciphersuites == defaults.ciphersuites);
  CHECK(tls.handshake_timeout == defaults.handshake_timeout);
  CHECK(tls.ticket_key_rotation == defaults.ticket_key_rotation);
  // Without "tls" a listener is plain HTTP.
  CHECK_FALSE(parse_config(kMinimal, kFile).listeners[0].tls.has_value());
}

TEST_CASE("tls: every key is read into its field") {
  const TlsDir dir;
  dir.touch("certs/rsa.pem");
  dir.touch("certs/rsa.key");
  const json config_json = {
      {"listeners",
       {{{"address", "0.0.0.0:443"},
         {"tls",
          {{"certificates",
            {{{"cert", "a.pem"},
              {"key", "a.key"},
              {"names", {"Example.COM", "*.Example.com", "api.example.com"}}},
             // An absolute path, and a second certificate for the same names (RSA next to ECDSA).
             {{"cert", dir.path("b.pem")},
              {"key", dir.path("b.key")},
              {"names", {"example.com", "*.example.com"}}},
             {{"cert", "certs/rsa.pem"}, {"key", "./certs/rsa.key"}}}},
           {"min_version", "TLSv1.3"},
           {"ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384:!aNULL"},
           {"ciphersuites", "TLS_AES_256_GCM_SHA384"},
           {"handshake_timeout", "5m"},
           {"session_tickets", false},
           {"ticket_key_rotation", "168h"}}}},
        {{"address", "[::]:443"},
         {"tls",
          {{"certificates", {{{"cert", "b.pem"}, {"key", "b.key"}}}},
           {"handshake_timeout", "250ms"},
           {"ticket_key_rotation", "1m"}}}}}},
      {"upstreams", {{"app", {{"servers", {"127.0.0.1:9001"}}}}}},
      {"routes", {{{"upstream", "app"}}}}};
  const Config config = dir.load(config_json.dump());
  REQUIRE(config.listeners.size() == 2);
  REQUIRE(config.listeners[0].tls.has_value());
  const ListenerTls& a = *config.listeners[0].tls;
  REQUIRE(a.certificates.size() == 3);
  CHECK(a.certificates[0].cert_path == dir.path("a.pem"));
  CHECK(a.certificates[0].key_path == dir.path("a.key"));
  CHECK(a.certificates[0].names ==
        std::vector<std::string>{"example.com", "*.example.com", "api.example.com"});
  CHECK(a.certificates[1].cert_path == dir.path("b.pem"));
  CHECK(a.certificates[1].key_path == dir.path("b.key"));
  CHECK(a.certificates[1].names == std::vector<std::string>{"example.com", "*.example.com"});
  CHECK(a.certificates[2].cert_path == dir.path("certs/rsa.pem"));
  CHECK(a.certificates[2].key_path == dir.path("./certs/rsa.key"));
  CHECK(a.certificates[2].names.empty());
  CHECK(a.min_version == "TLSv1.3");
  CHECK(a.ciphers == "ECDHE-ECDSA-AES256-GCM-SHA384:!aNULL");
  CHECK(a.ciphersuites == "TLS_AES_256_GCM_SHA384");
  CHECK(a.handshake_timeout == 5min);
  CHECK_FALSE(a.session_tickets);
  CHECK(a.ticket_key_rotation == 168h);
  REQUIRE(config.listeners[1].tls.has_value());
  const ListenerTls& b = *config.listeners[1].tls;
  REQUIRE(b.certificates.size() == 1);
  CHECK(b.certificates[0].cert_path == dir.path("b.pem"));
  CHECK(b.min_version == "TLSv1.2");
  CHECK(b.handshake_timeout == 250ms);
  CHECK(b.session_tickets);
  CHECK(b.ticket_key_rotation == 1min);
}

TEST_CASE("tls: absolute paths, and relative ones when the config name has no folder") {
  const TlsDir dir;
  const Config config =
      parse_config(with_tls(R"({"certificates": [{"cert": ")" + dir.path("a.pem") +
                            R"(", "key": ")" + dir.path("a.key") + R"("}]})"),
                   "torii.json");
  CHECK(config.listeners[0].tls->certificates[0].cert_path == dir.path("a.pem"));
  // No folder part: a relative path is kept as is (so it is relative to the
  // current directory), and the error shows it unchanged.
  try {
    (void)parse_config(
        with_tls(R"({"certificates": [{"cert": "torii-no-such-file.pem", "key": "x.key"}]})"),
        "torii.json");
    FAIL("accepted");
  } catch (const ConfigError& e) {
    CHECK(e.json_path() == "/listeners/0/tls/certificates/0/cert");
    CHECK(e.problem() ==
          "cannot read certificate file \"torii-no-such-file.pem\": No such file or directory");
  }
}

TEST_CASE("tls: certificate and key files must be readable") {
  const TlsDir dir;
  const std::string base = "/listeners/0/tls/certificates/0";
  SUBCASE("missing certificate, named by its resolved path") {
    check_load_rejected(
        dir, with_tls(R"({"certificates": [{"cert": "missing.pem", "key": "a.key"}]})"),
        base + "/cert",
        "cannot read certificate file \"" + dir.path("missing.pem") +
            "\" (\"missing.pem\" relative to the config file): No such file or directory");
  }
  SUBCASE("missing key, absolute path") {
    check_load_rejected(dir,
                        with_tls(R"({"certificates": [{"cert": "a.pem", "key": ")" +
                                 dir.path("missing.key") + R"("}]})"),
                        base + "/key",
                        "cannot read private key file \"" + dir.path("missing.key") +
                            "\": No such file or directory");
  }
  SUBCASE("the second certificate") {
    check_load_rejected(dir, with_tls(R"({"certificates": [{"cert": "a.pem", "key": "a.key"},
                                                           {"cert": "b.pem", "key": "c.key"}]})"),
                        "/listeners/0/tls/certificates/1/key", "No such file or directory");
  }
  SUBCASE("a directory") {
    dir.touch("certs/x.pem");
    check_load_rejected(dir, with_tls(R"({"certificates": [{"cert": "certs", "key": "a.key"}]})"),
                        base + "/cert", "it is a directory");
  }
  SUBCASE("unreadable key") {
    fs::permissions(dir.path("a.key"), fs::perms::none);
    // root reads it anyway; then there is nothing to check.
    if (::access(dir.path("a.key").c_str(), R_OK) == 0) {
      MESSAGE("running as root: a mode 000 file is still readable, check skipped");
    } else {
      check_load_rejected(dir, with_tls(R"({"certificates": [{"cert": "a.pem", "key": "a.key"}]})"),
                          base + "/key",
                          "cannot read private key file \"" + dir.path("a.key") +
                              "\" (\"a.key\" relative to the config file): Permission denied");
    }
    fs::permissions(dir.path("a.key"), fs::perms::owner_read | fs::perms::owner_write);
  }
}

TEST_CASE("tls: structure, paths and unknown keys") {
  std::string too_many = R"({"certificates": [)";
  for (int i = 0; i < 101; ++i) {
    too_many += std::string(i == 0 ? "" : ",") + R"({"cert": "a.pem", "key": "a.key"})";
  }
  too_many += "]}";
  const TlsDir dir;
  check_load_rejected(dir, with_tls(too_many), "/listeners/0/tls/certificates",
                      "at most 100 certificates, got 101");
  run_tls_cases({
      {"tls type", "true", "/listeners/0/tls", "expected an object, got true"},
      {"no certificates", "{}", "/listeners/0/tls", "missing required key \"certificates\""},
      {"empty certificates", R"({"certificates": []})", "/listeners/0/tls/certificates",
       "must not be empty: a TLS listener needs at least one certificate"},
      {"certificates type", R"({"certificates": {"cert": "a.pem", "key": "a.key"}})",
       "/listeners/0/tls/certificates", "expected an array of {\"cert\": ..., \"key\": ...}"},
      {"certificate type", R"({"certificates": ["a.pem"]})", "/listeners/0/tls/certificates/0",
       "expected an object, got the string \"a.pem\""},
      {"no key", R"({"certificates": [{"cert": "a.pem"}]})", "/listeners/0/tls/certificates/0",
       "missing required key \"key\""},
      {"no cert", R"({"certificates": [{"key": "a.key"}]})", "/listeners/0/tls/certificates/0",
       "missing required key \"cert\""},
      {"empty cert path", R"({"certificates": [{"cert": "", "key": "a.key"}]})",
       "/listeners/0/tls/certificates/0/cert", "the certificate path must not be empty"},
      {"key path type", R"({"certificates": [{"cert": "a.pem", "key": 1}]})",
       "/listeners/0/tls/certificates/0/key", "expected a string, got the number 1"},
      {"unknown tls key", R"({"certificates": [{"cert": "a.pem", "key": "a.key"}],
                              "min_verison": "TLSv1.3"})",
       "/listeners/0/tls/min_verison",
       "unknown key \"min_verison\" (did you mean \"min_version\"?)"},
      {"unknown tls key before the missing one", R"({"certificate": []})",
       "/listeners/0/tls/certificate", "(did you mean \"certificates\"?)"},
      {"unknown tls key, not close", R"({"certificates": [{"cert": "a.pem", "key": "a.key"}],
                                         "zzzzzzzz": 1})",
       "/listeners/0/tls/zzzzzzzz",
       "(expected one of: \"certificates\", \"min_version\", \"ciphers\", \"ciphersuites\", "
       "\"handshake_timeout\", \"session_tickets\", \"ticket_key_rotation\")"},
      {"unknown certificate key", R"({"certificates": [{"crt": "a.pem", "key": "a.key"}]})",
       "/listeners/0/tls/certificates/0/crt", "unknown key \"crt\" (did you mean \"cert\"?)"},
      {"unknown certificate key, names", R"({"certificates": [{"cert": "a.pem", "key": "a.key",
                                                                "name": ["a.example"]}]})",
       "/listeners/0/tls/certificates/0/name", "(did you mean \"names\"?)"},
      {"session_ticket", R"({"certificates": [{"cert": "a.pem", "key": "a.key"}],
                             "session_ticket": true})",
       "/listeners/0/tls/session_ticket", "(did you mean \"session_tickets\"?)"},
  });
  // The admin endpoint has no TLS.
  run_patch_cases({
      {"admin tls", R"([{"op": "add", "path": "/admin/tls", "value": {}}])", "/admin/tls",
       "unknown key \"tls\" (expected one of: \"address\", \"token\")"},
  });
}

TEST_CASE("tls: server names") {
  const std::string long_label(64, 'a');
  const std::string label63(63, 'a');
  // 4 * 64 - 1 = 255 characters.
  const std::string too_long = label63 + "." + label63 + "." + label63 + "." + label63;
  const std::string long_label_names =
      R"({"certificates": [{"cert": "a.pem", "key": "a.key", "names": [")" + long_label +
      R"(.example.com"]}]})";
  const std::string too_long_names =
      R"({"certificates": [{"cert": "a.pem", "key": "a.key", "names": [")" + too_long + R"("]}]})";
  const std::string names_path = "/listeners/0/tls/certificates/0/names";
  const TlsDir dir;
  check_load_rejected(dir, with_tls(long_label_names), names_path + "/0",
                      "is longer than 63 characters");
  check_load_rejected(dir, with_tls(too_long_names), names_path + "/0",
                      "longer than 253 characters (255)");
  // The longest accepted: 253 characters, labels of 63.
  const std::string longest = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  const Config longest_config = dir.load(with_tls(
      R"({"certificates": [{"cert": "a.pem", "key": "a.key", "names": [")" + longest + R"("]}]})"));
  CHECK(longest_config.listeners[0].tls->certificates[0].names[0].size() == 253);

  const auto with_names = [](const char* names) {
    return std::string(R"({"certificates": [{"cert": "a.pem", "key": "a.key", "names": )") + names +
           "}]}";
  };
  struct NameCase {
    const char* name;
    const char* names;
    const char* index;
    const char* problem;
  };
  const std::vector<NameCase> cases = {
      {"two wildcards", R"(["*.*.example.com"])", "/0",
       "invalid server name \"*.*.example.com\": '*' is only allowed once, as the whole first "
       "label"},
      {"* alone", R"(["*"])", "/0", "invalid server name \"*\": \"*\" alone is not a server name"},
      {"wildcard not leading", R"(["api.*.example.com"])", "/0",
       "'*' is only allowed once, as the whole first label, as in \"*.example.com\""},
      {"wildcard at the end", R"(["example.*"])", "/0", "'*' is only allowed once"},
      {"partial wildcard label", R"(["*api.example.com"])", "/0", "'*' is only allowed once"},
      {"wildcard over one label", R"(["*.com"])", "/0",
       "a wildcard needs at least two labels after \"*.\""},
      {"underscore", R"(["api_v1.example.com"])", "/0",
       "invalid server name \"api_v1.example.com\": invalid character \"_\" (a name is made of "
       "letters, digits, '-' and '.')"},
      {"space", R"(["a b.example.com"])", "/0", "invalid character \" \""},
      {"port", R"(["example.com:443"])", "/0", "invalid character \":\""},
      {"non-ASCII", R"(["caf\u00e9.example"])", "/0", "\"xn--\" form"},
      {"leading dot", R"([".example.com"])", "/0",
       "empty label (a leading, trailing or double dot)"},
      {"trailing dot", R"(["example.com."])", "/0", "empty label"},
      {"double dot", R"(["a..example.com"])", "/0", "empty label"},
      {"hyphen", R"(["-a.example.com"])", "/0", "label \"-a\" starts or ends with '-'"},
      {"IP address", R"(["10.0.0.1"])", "/0", "an IP address is not a server name"},
      {"empty name", R"([""])", "/0", "a server name must not be empty"},
      {"not a string", R"([1])", "/0", "expected a string, got the number 1"},
      {"duplicate, other case", R"(["api.example.com", "x.example.com", "API.example.com"])", "/2",
       "duplicate server name \"api.example.com\" (already at "
       "/listeners/0/tls/certificates/0/names/0) (names are case-insensitive)"},
      {"duplicate wildcard", R"(["*.example.com", "*.example.com"])", "/1",
       "duplicate server name \"*.example.com\""},
      {"empty list", "[]", "", "must not be empty (leave \"names\" out to use the DNS names"},
      {"not a list", R"("example.com")", "",
       "expected an array of server names such as [\"example.com\", \"*.example.com\"]"},
  };
  for (const NameCase& c : cases) {
    INFO("case: " << std::string(c.name));
    check_load_rejected(dir, with_tls(with_names(c.names)), names_path + c.index, c.problem);
  }
  // Good names, including digits in labels and one character ones.
  const Config config =
      dir.load(with_tls(with_names(R"(["x.y", "*.a-b.c0", "123.example.com", "xn--caf-dma.fr"])")));
  CHECK(config.listeners[0].tls->certificates[0].names ==
        std::vector<std::string>{"x.y", "*.a-b.c0", "123.example.com", "xn--caf-dma.fr"});
}

TEST_CASE("tls: protocol versions, ciphers and timings") {
  const std::string ok_certificates = R"("certificates": [{"cert": "a.pem", "key": "a.key"}])";
  const auto tls = [&](const char* rest) { return "{" + ok_certificates + ", " + rest + "}"; };
  const TlsDir dir;
  struct Case {
    const char* name;
    std::string tls;
    const char* key;
    const char* problem;
  };
  const std::vector<Case> cases = {
      {"TLS 1.1", tls(R"("min_version": "TLSv1.1")"), "min_version",
       "\"TLSv1.1\" is not supported: TLS 1.0 and 1.1 (and SSL) are obsolete and insecure (RFC "
       "8996); use \"TLSv1.2\" (the default) or \"TLSv1.3\""},
      {"TLS 1.0", tls(R"("min_version": "TLSv1.0")"), "min_version",
       "\"TLSv1.0\" is not supported: TLS 1.0 and 1.1"},
      {"TLSv1", tls(R"("min_version": "TLSv1")"), "min_version", "is not supported"},
      {"tls1.1", tls(R"("min_version": "tls1.1")"), "min_version", "is not supported"},
      {"SSLv3", tls(R"("min_version": "SSLv3")"), "min_version",
       "\"SSLv3\" is not supported: TLS 1.0 and 1.1 (and SSL) are obsolete"},
      {"typo", tls(R"("min_version": "TLSv13")"), "min_version",
       "unknown TLS version \"TLSv13\" (did you mean \"TLSv1.3\"?); expected \"TLSv1.2\" or "
       "\"TLSv1.3\" (TLS 1.0 and 1.1 are not supported)"},
      {"case", tls(R"("min_version": "tlsv1.2")"), "min_version", "(did you mean \"TLSv1.2\"?)"},
      {"not close", tls(R"("min_version": "1.3")"), "min_version",
       "unknown TLS version \"1.3\"; expected \"TLSv1.2\" or \"TLSv1.3\" (TLS 1.0 and 1.1 are not "
       "supported)"},
      {"version type", tls(R"("min_version": 1.3)"), "min_version", "expected a string"},
      {"empty ciphers", tls(R"("ciphers": "")"), "ciphers",
       "ciphers must not be empty (leave it out for the default)"},
      {"spaces in ciphers", tls(R"("ciphers": "ECDHE-RSA-AES128-GCM-SHA256 ECDHE")"), "ciphers",
       "must not contain spaces, control characters or non-ASCII bytes (separate the names with "
       "':')"},
      {"control character in ciphersuites", tls(R"("ciphersuites": "TLS_AES_128_GCM_SHA256\n")"),
       "ciphersuites", "ciphersuites \"TLS_AES_128_GCM_SHA256\\n\" must not contain spaces"},
      {"empty ciphersuites", tls(R"("ciphersuites": "")"), "ciphersuites",
       "ciphersuites must not be empty"},
      {"ciphers type", tls(R"("ciphers": ["a"])"), "ciphers", "expected a string, got an array"},
      {"handshake zero", tls(R"("handshake_timeout": "0s")"), "handshake_timeout",
       "must be greater than zero"},
      {"handshake too long", tls(R"("handshake_timeout": "301s")"), "handshake_timeout",
       "must be at most 5m, got \"301s\""},
      {"handshake no unit", tls(R"("handshake_timeout": "10")"), "handshake_timeout",
       "invalid duration \"10\": missing unit"},
      {"session_tickets type", tls(R"("session_tickets": "yes")"), "session_tickets",
       "expected true or false, got the string \"yes\""},
      {"rotation too short", tls(R"("ticket_key_rotation": "9s")"), "ticket_key_rotation",
       "must be at least 10s, got \"9s\""},
      {"rotation too long", tls(R"("ticket_key_rotation": "169h")"), "ticket_key_rotation",
       "must be at most 168h (7 days), got \"169h\""},
      {"rotation in days", tls(R"("ticket_key_rotation": "7d")"), "ticket_key_rotation",
       "invalid duration \"7d\": unknown unit \"d\""},
  };
  for (const Case& c : cases) {
    INFO("case: " << std::string(c.name));
    check_load_rejected(dir, with_tls(c.tls), std::string("/listeners/0/tls/") + c.key, c.problem);
  }
}

TEST_CASE("tls: errors name the right listener") {
  const TlsDir dir;
  check_load_rejected(dir, R"({
    "listeners": [{"address": "127.0.0.1:8080"},
                  {"address": "127.0.0.1:8443",
                   "tls": {"certificates": [{"cert": "a.pem", "key": "a.key"}],
                           "min_version": "TLSv1.1"}}],
    "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}},
    "routes": [{"upstream": "app"}]})",
                      "/listeners/1/tls/min_version", "is not supported");
}

TEST_CASE("```jsonc blocks in docs/CONFIG.md load next to their certificate files") {
  // These blocks name certificate files, which cannot exist wherever the
  // ```json blocks are checked: each is loaded from a folder holding an empty
  // file for every relative cert and key path it names.
  const std::string text = read_text(source_root() / "docs" / "CONFIG.md");
  REQUIRE(!text.empty());
  size_t count = 0;
  const std::string open = "```jsonc\n";
  for (size_t start = text.find(open); start != std::string::npos; start = text.find(open, start)) {
    start += open.size();
    const size_t end = text.find("```", start);
    REQUIRE(end != std::string::npos);
    const std::string block = text.substr(start, end - start);
    INFO("block:\n" << block);
    const json document = json::parse(block, nullptr, /*allow_exceptions=*/true,
                                      /*ignore_comments=*/true);
    const TlsDir dir;
    for (const json& listener : document.at("listeners")) {
      if (!listener.contains("tls")) continue;
      for (const json& certificate : listener.at("tls").at("certificates")) {
        for (const char* key : {"cert", "key"}) {
          const std::string path = certificate.at(key).get<std::string>();
          REQUIRE_MESSAGE(path.front() != '/', "use relative paths in examples: " << path);
          dir.touch(path);
        }
      }
    }
    if (document.contains("upstreams")) {
      for (const auto& item : document.at("upstreams").items()) {
        const json& upstream = item.value();
        if (!upstream.contains("tls") || !upstream.at("tls").is_object()) continue;
        for (const char* key : {"ca", "cert", "key"}) {
          if (!upstream.at("tls").contains(key)) continue;
          const std::string path = upstream.at("tls").at(key).get<std::string>();
          REQUIRE_MESSAGE(path.front() != '/', "use relative paths in examples: " << path);
          dir.touch(path);
        }
      }
    }
    if (document.contains("routes")) {
      for (const json& route : document.at("routes")) {
        if (!route.contains("auth")) continue;
        const json& auth = route.at("auth");
        for (const auto& [section, key] : {std::pair{"api_key", "file"}, std::pair{"jwt", "jwks"},
                                           std::pair{"jwt", "secret_file"}}) {
          if (!auth.contains(section) || !auth.at(section).contains(key)) continue;
          const std::string path = auth.at(section).at(key).get<std::string>();
          REQUIRE_MESSAGE(path.front() != '/', "use relative paths in examples: " << path);
          dir.touch(path);
        }
      }
    }
    CHECK_NOTHROW((void)dir.load(block));
    ++count;
    start = end + 3;
  }
  CHECK(count > 0);
}

TEST_SUITE_END();

TEST_CASE("route https_redirect and hsts") {
  SUBCASE("hsts is read") {
    const Config c = parse_config(
        patched(
            R"([{"op": "add", "path": "/routes/0/hsts", "value": "max-age=600; includeSubDomains"}])"),
        kFile);
    CHECK(c.routes[0].hsts == "max-age=600; includeSubDomains");
    CHECK_FALSE(c.routes[0].https_redirect);
  }
  SUBCASE("hsts must start with max-age") {
    check_rejected(
        patched(R"([{"op": "add", "path": "/routes/0/hsts", "value": "includeSubDomains"}])"),
        "/routes/0/hsts", "max-age");
  }
  SUBCASE("https_redirect needs a TLS listener to go to") {
    check_rejected(patched(R"([{"op": "add", "path": "/routes/0/https_redirect", "value": true}])"),
                   "/routes/0/https_redirect", "needs a listener with \"tls\"");
  }
  SUBCASE("https_redirect must be a boolean") {
    check_rejected(
        patched(R"([{"op": "add", "path": "/routes/0/https_redirect", "value": "yes"}])"),
        "/routes/0/https_redirect", "");
  }
}

TEST_CASE("upstream tls") {
  const TlsDir dir;
  dir.touch("ca.pem");
  dir.touch("client.pem");
  dir.touch("client.key");
  auto with_upstream_tls = [](const std::string& tls) {
    json config = json::parse(kMinimal);
    config["upstreams"]["app"]["tls"] = json::parse(tls);
    return config.dump();
  };
  SUBCASE("true: every default") {
    const Config c = dir.load(with_upstream_tls("true"));
    REQUIRE(c.upstreams[0].tls.has_value());
    const UpstreamTls& tls = *c.upstreams[0].tls;
    CHECK(tls.verify);
    CHECK(tls.ca_path.empty());
    CHECK(tls.server_name.empty());
    CHECK(tls.cert_path.empty());
    CHECK(tls.min_version == "TLSv1.2");
    CHECK(tls.session_reuse);
    CHECK_FALSE(parse_config(kMinimal, kFile).upstreams[0].tls.has_value());
  }
  SUBCASE("every key, relative paths against the config's folder, the name lower-cased") {
    const Config c = dir.load(with_upstream_tls(
        R"({"ca": "ca.pem", "server_name": "API.Internal", "cert": "client.pem",
            "key": "client.key", "min_version": "TLSv1.3", "session_reuse": false})"));
    const UpstreamTls& tls = *c.upstreams[0].tls;
    CHECK(tls.ca_path == dir.path("ca.pem"));
    CHECK(tls.server_name == "api.internal");
    CHECK(tls.cert_path == dir.path("client.pem"));
    CHECK(tls.key_path == dir.path("client.key"));
    CHECK(tls.min_version == "TLSv1.3");
    CHECK_FALSE(tls.session_reuse);
  }
  SUBCASE("an IP address as the server name") {
    CHECK(dir.load(with_upstream_tls(R"({"server_name": "10.0.0.7"})"))
              .upstreams[0]
              .tls->server_name == "10.0.0.7");
  }
  SUBCASE("rejected") {
    const struct {
      const char* tls;
      const char* path;
      const char* problem;
    } cases[] = {
        {"false", "/upstreams/app/tls", "leave \"tls\" out"},
        {R"("yes")", "/upstreams/app/tls", ""},
        {R"({"verfy": false})", "/upstreams/app/tls/verfy", "did you mean \"verify\""},
        {R"({"verify": "no"})", "/upstreams/app/tls/verify", ""},
        {R"({"ca": "missing.pem"})", "/upstreams/app/tls/ca", "cannot read CA bundle file"},
        {R"({"ca": ""})", "/upstreams/app/tls/ca", "must not be empty"},
        {R"({"server_name": "*.example.com"})", "/upstreams/app/tls/server_name", "invalid"},
        {R"({"server_name": "a b"})", "/upstreams/app/tls/server_name", "invalid"},
        {R"({"cert": "client.pem"})", "/upstreams/app/tls/cert", "needs both"},
        {R"({"key": "client.key"})", "/upstreams/app/tls/key", "needs both"},
        {R"({"min_version": "TLSv1.0"})", "/upstreams/app/tls/min_version", "obsolete"},
        {R"({"verify": false, "ca": "ca.pem"})", "/upstreams/app/tls/ca", "no effect"},
    };
    for (const auto& c : cases) {
      INFO("tls: " << c.tls);
      check_load_rejected(dir, with_upstream_tls(c.tls), c.path, c.problem);
    }
  }
}

TEST_CASE("upstream policies: weights, balance, outlier detection, health checks, max_requests") {
  SUBCASE("defaults") {
    const Config c = parse_config(kMinimal, kFile);
    const Upstream& u = c.upstreams[0];
    CHECK(u.weights == std::vector<uint32_t>{1});
    CHECK(u.balance.policy == BalancePolicy::kRoundRobin);
    CHECK_FALSE(u.outlier_detection.has_value());
    CHECK_FALSE(u.health_check.has_value());
    CHECK(u.max_requests == 0);
    CHECK(u.resolve_interval == 30s);
  }
  SUBCASE("every key") {
    const Config c = parse_config(patched(R"([
      {"op": "replace", "path": "/upstreams/app/servers",
       "value": ["127.0.0.1:9001", {"address": "127.0.0.1:9002", "weight": 5}]},
      {"op": "add", "path": "/upstreams/app/balance", "value": {"hash": {"header": "X-User"}}},
      {"op": "add", "path": "/upstreams/app/outlier_detection",
       "value": {"consecutive_5xx": 2, "consecutive_connect_failures": 0, "base_ejection": "1s",
                 "max_ejection": "8s", "max_ejected_percent": 34}},
      {"op": "add", "path": "/upstreams/app/health_check",
       "value": {"path": "/ping", "host": "app.internal", "interval": "500ms", "timeout": "200ms",
                 "healthy_threshold": 1, "unhealthy_threshold": 2,
                 "expected_statuses": "200-299,304"}},
      {"op": "add", "path": "/upstreams/app/max_requests", "value": 100},
      {"op": "add", "path": "/upstreams/app/resolve_interval", "value": "5s"}])"),
                                  kFile);
    const Upstream& u = c.upstreams[0];
    CHECK(u.weights == std::vector<uint32_t>{1, 5});
    CHECK(u.balance.policy == BalancePolicy::kHash);
    CHECK(u.balance.hash_key == HashKey::kHeader);
    CHECK(u.balance.hash_name == "x-user");
    REQUIRE(u.outlier_detection.has_value());
    CHECK(u.outlier_detection->consecutive_5xx == 2);
    CHECK(u.outlier_detection->consecutive_connect_failures == 0);
    CHECK(u.outlier_detection->base_ejection == 1s);
    CHECK(u.outlier_detection->max_ejection == 8s);
    CHECK(u.outlier_detection->max_ejected_percent == 34);
    REQUIRE(u.health_check.has_value());
    CHECK(u.health_check->path == "/ping");
    CHECK(u.health_check->host == "app.internal");
    CHECK(u.health_check->interval == 500ms);
    CHECK(u.health_check->timeout == 200ms);
    CHECK(u.health_check->healthy_threshold == 1);
    CHECK(u.health_check->unhealthy_threshold == 2);
    CHECK(u.health_check->expected_statuses == "200-299,304");
    CHECK(u.max_requests == 100);
    CHECK(u.resolve_interval == 5s);
  }
  SUBCASE("balance forms") {
    auto balance_of = [](const char* value) {
      const std::string patch =
          std::string(R"([{"op": "add", "path": "/upstreams/app/balance", "value": )") + value +
          "}]";
      return parse_config(patched(patch.c_str()), kFile).upstreams[0].balance;
    };
    CHECK(balance_of(R"("least_request")").policy == BalancePolicy::kLeastRequest);
    CHECK(balance_of(R"("round_robin")").policy == BalancePolicy::kRoundRobin);
    CHECK(balance_of(R"({"hash": "client_ip"})").hash_key == HashKey::kClientIp);
    const Balance cookie = balance_of(R"({"hash": {"cookie": "session"}})");
    CHECK(cookie.hash_key == HashKey::kCookie);
    CHECK(cookie.hash_name == "session");
  }
  SUBCASE("rejected") {
    run_patch_cases({
        {"weight 0",
         R"([{"op": "replace", "path": "/upstreams/app/servers", "value": [{"address": "127.0.0.1:1", "weight": 0}]}])",
         "/upstreams/app/servers/0/weight", ""},
        {"server object without address",
         R"([{"op": "replace", "path": "/upstreams/app/servers", "value": [{"weight": 2}]}])",
         "/upstreams/app/servers/0", "missing required key \"address\""},
        {"balance typo",
         R"([{"op": "add", "path": "/upstreams/app/balance", "value": "least_requests"}])",
         "/upstreams/app/balance", "did you mean \"least_request\""},
        {"hash both",
         R"([{"op": "add", "path": "/upstreams/app/balance", "value": {"hash": {"header": "a", "cookie": "b"}}}])",
         "/upstreams/app/balance/hash", "exactly one"},
        {"outlier nothing ejects",
         R"([{"op": "add", "path": "/upstreams/app/outlier_detection", "value": {"consecutive_5xx": 0, "consecutive_connect_failures": 0}}])",
         "/upstreams/app/outlier_detection", "nothing would eject"},
        {"outlier max < base",
         R"([{"op": "add", "path": "/upstreams/app/outlier_detection", "value": {"base_ejection": "10s", "max_ejection": "5s"}}])",
         "/upstreams/app/outlier_detection/max_ejection", "shorter"},
        {"health statuses",
         R"([{"op": "add", "path": "/upstreams/app/health_check", "value": {"expected_statuses": "200-1000"}}])",
         "/upstreams/app/health_check/expected_statuses", "invalid status list"},
        {"health timeout > interval",
         R"([{"op": "add", "path": "/upstreams/app/health_check", "value": {"interval": "1s", "timeout": "2s"}}])",
         "/upstreams/app/health_check/timeout", "longer than the interval"},
        {"health path",
         R"([{"op": "add", "path": "/upstreams/app/health_check", "value": {"path": "ping"}}])",
         "/upstreams/app/health_check/path", "start with '/'"},
    });
  }
}

TEST_CASE("route policies: retry, timeouts, rate_limit, auth") {
  const TlsDir dir;
  dir.touch("keys.txt");
  dir.touch("jwks.json");
  auto with_route = [](const std::string& key, const std::string& value) {
    json config = json::parse(kMinimal);
    config["routes"][0][key] = json::parse(value);
    return config.dump();
  };
  SUBCASE("retry") {
    const Config c = dir.load(with_route(
        "retry", R"({"attempts": 2, "on": ["connect_failure", "503", "502"], "backoff": "10ms",
                     "max_backoff": "100ms", "budget_percent": 10, "min_retries_per_second": 1})"));
    REQUIRE(c.routes[0].retry.has_value());
    const RetryPolicy& r = *c.routes[0].retry;
    CHECK(r.attempts == 2);
    CHECK(r.on_connect_failure);
    CHECK_FALSE(r.on_reset);
    CHECK(r.statuses == std::vector<int>{503, 502});
    CHECK(r.backoff == 10ms);
    CHECK(r.max_backoff == 100ms);
    CHECK(r.budget_percent == 10);
    CHECK(r.min_retries_per_second == 1);
    CHECK_FALSE(parse_config(kMinimal, kFile).routes[0].retry.has_value());
  }
  SUBCASE("timeouts, rate_limit") {
    Config c = dir.load(with_route("timeouts", R"({"connect": "1s", "request": "30s"})"));
    CHECK(c.routes[0].timeouts.connect == 1s);
    CHECK(c.routes[0].timeouts.request == 30s);
    CHECK_FALSE(c.routes[0].timeouts.idle.has_value());
    c = dir.load(with_route("rate_limit", R"({"key": {"header": "X-API-Key"}, "requests": 100,
                                              "per": "1m"})"));
    REQUIRE(c.routes[0].rate_limit.has_value());
    CHECK(c.routes[0].rate_limit->key == RateLimitKey::kHeader);
    CHECK(c.routes[0].rate_limit->header == "x-api-key");
    CHECK(c.routes[0].rate_limit->requests == 100);
    CHECK(c.routes[0].rate_limit->per == 1min);
    CHECK(c.routes[0].rate_limit->burst == 100);
  }
  SUBCASE("auth") {
    const Config c = dir.load(with_route(
        "auth",
        R"({"api_key": {"query": "key", "keys": ["ci:0123456789abcdef0123"], "file": "keys.txt"},
                    "jwt": {"jwks": "jwks.json", "issuer": "https://id.example", "audiences": ["api"],
                            "algorithms": ["ES256"], "forward_subject": "X-User"}})"));
    REQUIRE(c.routes[0].auth.has_value());
    const RouteAuth& a = *c.routes[0].auth;
    REQUIRE(a.api_key.has_value());
    CHECK(a.api_key->header.empty());
    CHECK(a.api_key->query == "key");
    CHECK(a.api_key->keys == std::vector<std::string>{"ci:0123456789abcdef0123"});
    CHECK(a.api_key->file == dir.path("keys.txt"));
    REQUIRE(a.jwt.has_value());
    CHECK(a.jwt->jwks_file == dir.path("jwks.json"));
    CHECK(a.jwt->audiences == std::vector<std::string>{"api"});
    CHECK(a.jwt->algorithms == std::vector<std::string>{"ES256"});
    CHECK(a.jwt->forward_subject == "x-user");
  }
  SUBCASE("rejected") {
    const struct {
      const char* key;
      const char* value;
      const char* path;
      const char* problem;
    } cases[] = {
        {"retry", R"({"on": ["connect_failures"]})", "/routes/0/retry/on/0", "did you mean"},
        {"retry", R"({"on": ["404"]})", "/routes/0/retry/on/0", "unknown retry condition"},
        {"retry", R"({"attempts": 11})", "/routes/0/retry/attempts", ""},
        {"rate_limit", R"({"per": "1m"})", "/routes/0/rate_limit",
         "missing required key \"requests\""},
        {"rate_limit", R"({"requests": 5, "per": "500ms"})", "/routes/0/rate_limit/per",
         "at least 1s"},
        {"auth", R"({})", "/routes/0/auth", "needs \"api_key\" or \"jwt\""},
        {"auth", R"({"api_key": {"keys": ["short"]}})", "/routes/0/auth/api_key/keys/0",
         "at least 16"},
        {"auth", R"({"api_key": {"file": "missing.txt"}})", "/routes/0/auth/api_key/file",
         "cannot read"},
        {"auth", R"({"jwt": {"issuer": "x"}})", "/routes/0/auth/jwt", "exactly one"},
        {"auth", R"({"jwt": {"jwks": "jwks.json", "algorithms": ["none"]}})",
         "/routes/0/auth/jwt/algorithms/0", "unknown JWT algorithm"},
    };
    for (const auto& k : cases) {
      INFO(k.key << ": " << std::string(k.value));
      check_load_rejected(dir, with_route(k.key, k.value), k.path, k.problem);
    }
  }
}
