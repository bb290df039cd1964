// Unit tests for gateway/prewarm_share: the control messages of shared
// pre-warming and the encoding of a stored response (JSON metadata, a
// newline, the raw bytes).
#include <doctest/doctest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/stored_response.hpp"
#include "conf/config.hpp"
#include "gateway/prewarm_share.hpp"

namespace {

using nlohmann::json;
using torii::cache::StoredResponse;
using torii::gateway::ControlHeader;
using torii::gateway::decode_shared;
using torii::gateway::encode_shared;
using torii::gateway::kOpClaim;
using torii::gateway::kOpEntry;
using torii::gateway::kOpFailed;
using torii::gateway::kOpGrant;
using torii::gateway::kOpShare;
using torii::gateway::kOpSync;
using torii::gateway::kOpSyncDone;
using torii::gateway::make_claim;
using torii::gateway::make_simple;
using torii::gateway::peek_control;
using torii::gateway::route_fingerprint;
using torii::gateway::with_op;

const std::string kHead =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/octet-stream\r\n"
    "ETag: \"v1\"\r\n"
    "Vary: Accept-Encoding, Accept-Language";
// A body that contains everything the framing could trip on.
const std::string kBody = std::string("line one\nline two\r\n\r\nnul:\0:end\n", 32) + "\r\n\r\n";

// Every field set to something other than its default.
StoredResponse sample() {
  StoredResponse r;
  r.assign(kHead, kBody);
  r.status = 203;
  r.key = "https|example.com|/v1/items?page=1";
  r.host = "example.com";
  r.target = "/v1/items?page=1";
  r.vary_names = {"accept-encoding", "accept-language"};
  r.vary_values = "gzip\nen-US";
  r.etag = "\"v1\"";
  r.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
  r.response_time_ms = 1'700'000'000'123;
  r.initial_age_ms = 4'000;
  r.lifetime_ms = 60'000;
  r.swr_ms = 5'000;
  r.sie_ms = 7'000;
  r.no_stale = true;
  r.always_revalidate = true;
  return r;
}

void check_same(const StoredResponse& a, const StoredResponse& b) {
  CHECK(a.bytes == b.bytes);
  CHECK(a.status_line_size == b.status_line_size);
  CHECK(a.head_size == b.head_size);
  CHECK(a.status == b.status);
  CHECK(a.key == b.key);
  CHECK(a.host == b.host);
  CHECK(a.target == b.target);
  CHECK(a.vary_names == b.vary_names);
  CHECK(a.vary_values == b.vary_values);
  CHECK(a.etag == b.etag);
  CHECK(a.last_modified == b.last_modified);
  CHECK(a.response_time_ms == b.response_time_ms);
  CHECK(a.initial_age_ms == b.initial_age_ms);
  CHECK(a.lifetime_ms == b.lifetime_ms);
  CHECK(a.swr_ms == b.swr_ms);
  CHECK(a.sie_ms == b.sie_ms);
  CHECK(a.no_stale == b.no_stale);
  CHECK(a.always_revalidate == b.always_revalidate);
}

// The message's JSON part and its raw rest.
std::pair<json, std::string> split(const std::string& message) {
  const size_t nl = message.find('\n');
  REQUIRE(nl != std::string::npos);
  return {json::parse(message.substr(0, nl)), message.substr(nl + 1)};
}
std::string join(const json& meta, std::string_view bytes) {
  std::string out = meta.dump();
  out.push_back('\n');
  out.append(bytes);
  return out;
}

torii::conf::Route route(std::string name, std::string upstream,
                         std::vector<std::pair<std::string, std::string>> headers) {
  torii::conf::Route r;
  r.name = std::move(name);
  r.upstream = std::move(upstream);
  r.response_headers = std::move(headers);
  return r;
}

}  // namespace

TEST_SUITE("prewarm share") {
  TEST_CASE("prewarm: encode_shared / decode_shared round trip") {
    const StoredResponse r = sample();
    REQUIRE(r.body() == kBody);
    const std::string msg = encode_shared(kOpShare, r, "fp-1");
    // One JSON line, then the validators and exactly the stored bytes.
    const size_t nl = msg.find('\n');
    REQUIRE(nl != std::string::npos);
    CHECK(msg.substr(nl + 1) == r.etag + r.last_modified + r.bytes);
    CHECK(json::parse(msg.substr(0, nl)).is_object());

    const auto decoded = decode_shared(msg);
    REQUIRE(decoded.has_value());
    CHECK(decoded->fingerprint == "fp-1");
    check_same(decoded->response, r);
    CHECK(decoded->response.body() == kBody);
    CHECK(decoded->response.status_line() == "HTTP/1.1 200 OK\r\n");
    CHECK(decoded->response.head() == kHead);
  }

  TEST_CASE("prewarm: round trip with defaults, an empty body and no vary") {
    StoredResponse r;
    r.assign("HTTP/1.1 204 No Content", "");
    r.status = 204;
    r.key = "k";
    const auto decoded = decode_shared(encode_shared(kOpEntry, r, ""));
    REQUIRE(decoded.has_value());
    CHECK(decoded->fingerprint.empty());
    check_same(decoded->response, r);
    CHECK(decoded->response.body().empty());
    CHECK(decoded->response.vary_names.empty());
  }

  TEST_CASE("prewarm: a fingerprint with newlines and quotes is carried") {
    torii::conf::Route rt = route("r\n1", "up\"stream", {{"X-A", "1\n2"}});
    const std::string fp = route_fingerprint(rt);
    const StoredResponse r = sample();
    const std::string msg = encode_shared(kOpShare, r, fp);
    const auto decoded = decode_shared(msg);
    REQUIRE(decoded.has_value());
    CHECK(decoded->fingerprint == fp);
    CHECK(peek_control(msg).fingerprint == fp);
    check_same(decoded->response, r);
  }

  TEST_CASE("prewarm: peek_control on an encoded response") {
    const StoredResponse r = sample();
    const ControlHeader h = peek_control(encode_shared(kOpShare, r, "fp-9"));
    CHECK(h.op == kOpShare);
    CHECK(h.key == r.key);
    CHECK(h.response_time_ms == r.response_time_ms);
    CHECK(h.fingerprint == "fp-9");
    CHECK_FALSE(h.granted);
  }

  // An entity-tag may carry obs-text (RFC 9110 8.8.3: etagc includes
  // %x80-FF), not always valid UTF-8: it must round trip byte for byte.
  TEST_CASE("prewarm: an etag with obs-text (non UTF-8 bytes) round trips") {
    StoredResponse r = sample();
    r.etag = "\"caf\xe9\xff\"";
    r.last_modified = "\x80";
    std::string msg;
    REQUIRE_NOTHROW(msg = encode_shared(kOpShare, r, "fp"));
    const auto decoded = decode_shared(msg);
    REQUIRE(decoded.has_value());
    check_same(decoded->response, r);
  }

  TEST_CASE("prewarm: decode_shared rejects what is not JSON") {
    const StoredResponse r = sample();
    CHECK_FALSE(decode_shared("").has_value());
    CHECK_FALSE(decode_shared("\n").has_value());
    CHECK_FALSE(decode_shared("garbage").has_value());
    CHECK_FALSE(decode_shared("garbage\n" + r.bytes).has_value());
    CHECK_FALSE(decode_shared("{\"op\":\n" + r.bytes).has_value());
    CHECK_FALSE(decode_shared("[1,2]\n" + r.bytes).has_value());
    CHECK_FALSE(decode_shared("\"str\"\n" + r.bytes).has_value());
    // The bytes without the metadata line.
    CHECK_FALSE(decode_shared(r.bytes).has_value());
  }

  TEST_CASE("prewarm: decode_shared rejects a missing field") {
    const std::string good = encode_shared(kOpShare, sample(), "fp");
    auto [meta, bytes] = split(good);
    REQUIRE(decode_shared(join(meta, bytes)).has_value());
    for (const char* field :
         {"key", "fingerprint", "host", "target", "status", "status_line_size", "head_size",
          "vary_names", "vary_values", "etag_size", "last_modified_size", "response_time_ms",
          "initial_age_ms", "lifetime_ms", "swr_ms", "sie_ms", "no_stale", "always_revalidate"}) {
      CAPTURE(field);
      json m = meta;
      REQUIRE(m.erase(field) == 1);
      CHECK_FALSE(decode_shared(join(m, bytes)).has_value());
    }
    // The metadata alone, without its newline and bytes.
    CHECK_FALSE(decode_shared(meta.dump()).has_value());
  }

  TEST_CASE("prewarm: decode_shared rejects a field of the wrong type") {
    const std::string good = encode_shared(kOpShare, sample(), "fp");
    auto [meta, bytes] = split(good);
    const std::vector<std::pair<const char*, json>> cases = {
        {"key", 1},
        {"fingerprint", nullptr},
        {"host", true},
        {"target", json::array()},
        {"status", "200"},
        {"status", 200.5},
        {"status_line_size", "17"},
        {"head_size", 3.0},
        {"vary_names", "accept-encoding"},
        {"vary_names", json::array({"a", 1})},
        {"vary_names", json::object()},
        {"vary_values", 0},
        {"etag_size", json::object()},
        {"etag_size", -1},
        {"last_modified_size", false},
        {"response_time_ms", "1700000000123"},
        {"initial_age_ms", 1.5},
        {"lifetime_ms", true},
        {"swr_ms", nullptr},
        {"sie_ms", "0"},
        {"no_stale", 1},
        {"always_revalidate", "true"},
    };
    for (const auto& [field, value] : cases) {
      CAPTURE(field);
      CAPTURE(value.dump());
      json m = meta;
      m[field] = value;
      CHECK_FALSE(decode_shared(join(m, bytes)).has_value());
    }
  }

  TEST_CASE("prewarm: decode_shared rejects a layout that does not describe the bytes") {
    StoredResponse r = sample();
    r.etag.clear();  // the raw part is then the stored bytes alone
    r.last_modified.clear();
    const auto parts = split(encode_shared(kOpShare, r, "fp"));
    const json& meta = parts.first;
    const std::string& bytes = parts.second;
    REQUIRE(bytes == r.bytes);
    auto with = [&](const char* field, json value, std::string_view b) {
      json m = meta;
      m[field] = std::move(value);
      return decode_shared(join(m, b));
    };
    SUBCASE("status_line_size 0") { CHECK_FALSE(with("status_line_size", 0, bytes)); }
    SUBCASE("status_line_size > head_size") {
      CHECK_FALSE(with("status_line_size", r.head_size + 1, bytes));
      // Equal is a head made of the status line alone: still a valid layout.
      StoredResponse only;
      only.assign("HTTP/1.1 200 OK", "x");
      REQUIRE(only.status_line_size == only.head_size);
      CHECK(decode_shared(encode_shared(kOpShare, only, "fp")).has_value());
    }
    SUBCASE("head_size beyond the bytes") {
      CHECK_FALSE(with("head_size", bytes.size(), bytes));
      CHECK_FALSE(with("head_size", bytes.size() - 1, bytes));
      CHECK_FALSE(with("head_size", bytes.size() + 100, bytes));
      // The bytes cut short of the blank line.
      CHECK_FALSE(with("head_size", r.head_size, bytes.substr(0, r.head_size + 1)));
      CHECK_FALSE(with("head_size", r.head_size, bytes.substr(0, r.head_size)));
      CHECK_FALSE(with("head_size", r.head_size, ""));
      // Cut right after the blank line: an empty body is fine.
      CHECK(with("head_size", r.head_size, bytes.substr(0, r.head_size + 2)));
    }
    SUBCASE("no CRLF at head_size") {
      CHECK_FALSE(with("head_size", r.head_size - 1, bytes));
      CHECK_FALSE(with("head_size", r.head_size + 1, bytes));
      std::string broken = bytes;
      broken[r.head_size] = 'X';
      CHECK_FALSE(with("head_size", r.head_size, broken));
      broken = bytes;
      broken[r.head_size + 1] = '\n';
      broken[r.head_size] = '\n';
      CHECK_FALSE(with("head_size", r.head_size, broken));
      // Another CRLF inside the head (the end of a header line) is a valid layout.
      const size_t eol = bytes.find("\r\n", r.status_line_size);
      REQUIRE(eol < r.head_size);
      CHECK(with("head_size", eol, bytes));
    }
    SUBCASE("status out of range") {
      CHECK_FALSE(with("status", 0, bytes));
      CHECK_FALSE(with("status", 99, bytes));
      CHECK_FALSE(with("status", 1000, bytes));
      CHECK_FALSE(with("status", -200, bytes));
      CHECK(with("status", 100, bytes));
      CHECK(with("status", 999, bytes));
    }
  }

  // A negative or huge head_size must not wrap the bounds check.
  TEST_CASE("prewarm: decode_shared rejects a huge or negative head_size without throwing") {
    const StoredResponse r = sample();
    auto [meta, bytes] = split(encode_shared(kOpShare, r, "fp"));
    for (const json& v : {json(-1), json(-2), json(UINT64_MAX), json(UINT64_MAX - 1)}) {
      CAPTURE(v.dump());
      json m = meta;
      m["head_size"] = v;
      std::optional<torii::gateway::SharedResponse> d;
      CHECK_NOTHROW(d = decode_shared(join(m, bytes)));
      CHECK_FALSE(d.has_value());
    }
  }

  TEST_CASE("prewarm: decode_shared rejects negative sizes") {
    const StoredResponse r = sample();
    auto [meta, bytes] = split(encode_shared(kOpShare, r, "fp"));
    json m = meta;
    m["status_line_size"] = -1;
    CHECK_FALSE(decode_shared(join(m, bytes)).has_value());
  }

  TEST_CASE("prewarm: with_op changes only the op") {
    const StoredResponse r = sample();
    const std::string share = encode_shared(kOpShare, r, "fp-2");
    const std::string entry = with_op(share, kOpEntry);
    REQUIRE_FALSE(entry.empty());
    const auto [share_meta, share_bytes] = split(share);
    const auto [entry_meta, entry_bytes] = split(entry);
    CHECK(entry_bytes == share_bytes);
    CHECK(entry_bytes == r.etag + r.last_modified + r.bytes);
    CHECK(entry_meta.at("op") == json(kOpEntry));
    json expected = share_meta;
    expected["op"] = kOpEntry;
    CHECK(entry_meta == expected);
    CHECK(peek_control(entry).op == kOpEntry);
    const auto decoded = decode_shared(entry);
    REQUIRE(decoded.has_value());
    CHECK(decoded->fingerprint == "fp-2");
    check_same(decoded->response, r);
    // And back.
    CHECK(with_op(entry, kOpShare) == share);
    // A message without bytes stays one.
    const std::string failed = with_op(make_simple(kOpFailed, "k"), kOpEntry);
    CHECK(peek_control(failed).op == kOpEntry);
    CHECK(peek_control(failed).key == "k");
    // Not JSON: empty.
    CHECK(with_op("garbage\nbytes", kOpEntry).empty());
    CHECK(with_op("", kOpEntry).empty());
  }

  TEST_CASE("prewarm: peek_control") {
    SUBCASE("all fields") {
      const ControlHeader h =
          peek_control(R"({"op":"prewarm-grant","key":"k1","granted":true,"response_time_ms":42,)"
                       R"("fingerprint":"fp"})");
      CHECK(h.op == kOpGrant);
      CHECK(h.key == "k1");
      CHECK(h.granted);
      CHECK(h.response_time_ms == 42);
      CHECK(h.fingerprint == "fp");
    }
    SUBCASE("only the first line is JSON") {
      const ControlHeader h =
          peek_control(std::string("{\"op\":\"prewarm-entry\",\"key\":\"k\"}\n\0{not json", 42));
      CHECK(h.op == kOpEntry);
      CHECK(h.key == "k");
    }
    SUBCASE("absent fields keep their defaults") {
      const ControlHeader h = peek_control(R"({"op":"purged","id":3})");
      CHECK(h.op == "purged");
      CHECK(h.key.empty());
      CHECK_FALSE(h.granted);
      CHECK(h.response_time_ms == 0);
      CHECK(h.fingerprint.empty());
    }
    SUBCASE("fields of the wrong type are ignored") {
      const ControlHeader h = peek_control(
          R"({"op":1,"key":["k"],"granted":"yes","response_time_ms":"5","fingerprint":2})");
      CHECK(h.op.empty());
      CHECK(h.key.empty());
      CHECK_FALSE(h.granted);
      CHECK(h.response_time_ms == 0);
      CHECK(h.fingerprint.empty());
    }
    SUBCASE("garbage is empty") {
      for (const std::string& m :
           {std::string(), std::string("garbage"), std::string("{"), std::string("[1]"),
            std::string("\"prewarm-sync\""), std::string("\n{\"op\":\"prewarm-sync\"}"),
            std::string("\0\1\2", 3), std::string("{\"op\":\"prewarm-sync\"")}) {
        CAPTURE(m);
        const ControlHeader h = peek_control(m);
        CHECK(h.op.empty());
        CHECK(h.key.empty());
        CHECK_FALSE(h.granted);
        CHECK(h.response_time_ms == 0);
        CHECK(h.fingerprint.empty());
      }
    }
  }

  TEST_CASE("prewarm: make_simple") {
    const ControlHeader sync = peek_control(make_simple(kOpSync));
    CHECK(sync.op == kOpSync);
    CHECK(sync.key.empty());
    CHECK(json::parse(make_simple(kOpSync)) == json{{"op", kOpSync}});
    CHECK(json::parse(make_simple(kOpSyncDone)) == json{{"op", kOpSyncDone}});
    CHECK(json::parse(make_simple(kOpFailed, "k2")) == json{{"op", kOpFailed}, {"key", "k2"}});
    // A grant always says whether it is granted.
    const json granted = json::parse(make_simple(kOpGrant, "k3", true));
    CHECK(granted == json{{"op", kOpGrant}, {"key", "k3"}, {"granted", true}});
    const json denied = json::parse(make_simple(kOpGrant, "k3", false));
    CHECK(denied == json{{"op", kOpGrant}, {"key", "k3"}, {"granted", false}});
    CHECK(peek_control(make_simple(kOpGrant, "k3", true)).granted);
    CHECK_FALSE(peek_control(make_simple(kOpGrant, "k3", false)).granted);
    CHECK(peek_control(make_simple(kOpGrant, "k3", true)).key == "k3");
    // Other ops carry no "granted".
    CHECK_FALSE(json::parse(make_simple(kOpFailed, "k", true)).contains("granted"));
    // No raw newline: the message is one line whatever the key.
    const std::string m = make_simple(kOpFailed, "a\nb");
    CHECK(m.find('\n') == std::string::npos);
    CHECK(peek_control(m).key == "a\nb");
  }

  TEST_CASE("prewarm: make_claim round-trips through peek_control") {
    const std::string m = make_claim("https|h|/p?q=1", 1'700'000'000'999, "fp\n3");
    CHECK(m.find('\n') == std::string::npos);
    const ControlHeader h = peek_control(m);
    CHECK(h.op == kOpClaim);
    CHECK(h.key == "https|h|/p?q=1");
    CHECK(h.response_time_ms == 1'700'000'000'999);
    CHECK(h.fingerprint == "fp\n3");
    CHECK_FALSE(h.granted);
    const ControlHeader none = peek_control(make_claim("k", 0, ""));
    CHECK(none.op == kOpClaim);
    CHECK(none.key == "k");
    CHECK(none.response_time_ms == 0);
    CHECK(none.fingerprint.empty());
  }

  TEST_CASE("prewarm: route_fingerprint") {
    const auto base = route("api", "app", {{"X-A", "1"}, {"X-B", "2"}});
    const std::string fp = route_fingerprint(base);
    CHECK_FALSE(fp.empty());
    CHECK(route_fingerprint(base) == fp);

    SUBCASE("differs with the name") {
      CHECK(route_fingerprint(route("api2", "app", {{"X-A", "1"}, {"X-B", "2"}})) != fp);
    }
    SUBCASE("differs with the upstream") {
      CHECK(route_fingerprint(route("api", "app2", {{"X-A", "1"}, {"X-B", "2"}})) != fp);
    }
    SUBCASE("differs with the response headers") {
      CHECK(route_fingerprint(route("api", "app", {{"X-A", "1"}, {"X-B", "3"}})) != fp);
      CHECK(route_fingerprint(route("api", "app", {{"X-A", "1"}, {"X-C", "2"}})) != fp);
      CHECK(route_fingerprint(route("api", "app", {{"X-A", "1"}})) != fp);
      CHECK(route_fingerprint(route("api", "app", {})) != fp);
      CHECK(route_fingerprint(route("api", "app", {{"X-B", "2"}, {"X-A", "1"}})) != fp);
      CHECK(route_fingerprint(route("api", "app", {{"X-A", "1"}, {"X-B", "2"}, {"X-B", "2"}})) !=
            fp);
    }
    SUBCASE("no ambiguity between fields") {
      CHECK(route_fingerprint(route("a", "bc", {})) != route_fingerprint(route("ab", "c", {})));
      CHECK(route_fingerprint(route("a", "b", {{"c", "d"}})) !=
            route_fingerprint(route("a", "b", {{"cd", ""}})));
    }
    SUBCASE("equal when only other settings differ") {
      torii::conf::Route other = base;
      other.match.host = "api.example.com";
      other.match.path_prefix = "/v2/";
      other.match.methods = {"GET"};
      other.cache = torii::conf::RouteCache{};
      other.cache->prewarm = {"/v2/a"};
      other.upstream_index = 7;
      CHECK(route_fingerprint(other) == fp);
    }
  }
}
