#include "conf/config_policies.hpp"

#include <algorithm>

namespace torii::conf::detail {

namespace {

constexpr uint32_t kMaxWeight = 1000;
constexpr uint32_t kMaxRetries = 10;
constexpr uint32_t kMaxThreshold = 100;
constexpr Millis kMinHealthInterval{100};

// A header name (a token), lower-cased.
std::string read_header_name(const Node& node) {
  std::string name = to_lower(read_string(node));
  const bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return is_alpha(c) || is_digit(c) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
  if (!token) node.fail("invalid header name " + quote(name));
  return name;
}

uint32_t read_threshold(const Node& node) {
  return static_cast<uint32_t>(read_uint(node, 1, kMaxThreshold));
}

}  // namespace

Balance read_balance(const Node& node) {
  Balance balance;
  if (node.value().is_string()) {
    const std::string policy =
        read_choice(node, "balance policy", {"round_robin", "least_request"});
    balance.policy =
        policy == "least_request" ? BalancePolicy::kLeastRequest : BalancePolicy::kRoundRobin;
    return balance;
  }
  const ObjectReader obj(node, {"hash"});
  const Node hash = obj.required("hash");
  balance.policy = BalancePolicy::kHash;
  if (hash.value().is_string()) {
    read_choice(hash, "hash key", {"client_ip"});
    balance.hash_key = HashKey::kClientIp;
    return balance;
  }
  const ObjectReader key(hash, {"header", "cookie"});
  auto header = key.optional("header");
  auto cookie = key.optional("cookie");
  if (header.has_value() == cookie.has_value()) {
    hash.fail("expected \"client_ip\", {\"header\": NAME} or {\"cookie\": NAME} (exactly one key)");
  }
  if (header) {
    balance.hash_key = HashKey::kHeader;
    balance.hash_name = read_header_name(*header);
  } else {
    balance.hash_key = HashKey::kCookie;
    balance.hash_name = read_string(*cookie);
    if (balance.hash_name.empty()) cookie->fail("the cookie name must not be empty");
  }
  return balance;
}

OutlierDetection read_outlier_detection(const Node& node) {
  const ObjectReader obj(node, {"consecutive_5xx", "consecutive_connect_failures", "base_ejection",
                                "max_ejection", "max_ejected_percent"});
  OutlierDetection o;
  if (auto n = obj.optional("consecutive_5xx"))
    o.consecutive_5xx = static_cast<uint32_t>(read_uint(*n, 0, kMaxThreshold));
  if (auto n = obj.optional("consecutive_connect_failures"))
    o.consecutive_connect_failures = static_cast<uint32_t>(read_uint(*n, 0, kMaxThreshold));
  if (auto n = obj.optional("base_ejection")) o.base_ejection = read_duration(*n);
  if (auto n = obj.optional("max_ejection")) {
    o.max_ejection = read_duration(*n);
    if (o.max_ejection < o.base_ejection) {
      n->fail("max_ejection must not be shorter than base_ejection");
    }
  }
  if (auto n = obj.optional("max_ejected_percent"))
    o.max_ejected_percent = static_cast<uint32_t>(read_uint(*n, 0, 100));
  if (o.consecutive_5xx == 0 && o.consecutive_connect_failures == 0) {
    node.fail("consecutive_5xx and consecutive_connect_failures are both 0: nothing would eject");
  }
  return o;
}

bool parse_status_ranges(const std::string& spec, std::vector<std::pair<int, int>>& out,
                         std::string* why) {
  out.clear();
  size_t pos = 0;
  auto number = [&](int& value) {
    const size_t start = pos;
    value = 0;
    while (pos < spec.size() && is_digit(spec[pos]) && pos - start < 3) {
      value = value * 10 + (spec[pos++] - '0');
    }
    return pos - start == 3 && value >= 100 && value <= 599;
  };
  while (pos < spec.size()) {
    int low = 0;
    if (!number(low)) {
      *why = "expected a status code 100..599 at offset " + std::to_string(pos);
      return false;
    }
    int high = low;
    if (pos < spec.size() && spec[pos] == '-') {
      ++pos;
      if (!number(high) || high < low) {
        *why = "expected a status code >= " + std::to_string(low) + " after '-'";
        return false;
      }
    }
    out.emplace_back(low, high);
    if (pos == spec.size()) break;
    if (spec[pos] != ',') {
      *why = "expected ',' or '-' at offset " + std::to_string(pos);
      return false;
    }
    ++pos;
  }
  if (out.empty()) *why = "must not be empty";
  return !out.empty();
}

HealthCheck read_health_check(const Node& node) {
  const ObjectReader obj(node, {"path", "host", "interval", "timeout", "healthy_threshold",
                                "unhealthy_threshold", "expected_statuses"});
  HealthCheck h;
  if (auto n = obj.optional("path")) {
    h.path = read_string(*n);
    if (h.path.empty() || h.path.front() != '/') n->fail("the path must start with '/'");
    for (char c : h.path) {
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
        n->fail("the path may not contain spaces or control characters");
      }
    }
  }
  if (auto n = obj.optional("host")) {
    h.host = read_string(*n);
    if (!is_host_name(h.host) && !is_ip_literal(h.host)) n->fail("invalid host " + quote(h.host));
  }
  if (auto n = obj.optional("interval")) {
    h.interval = read_duration_at_least(*n, kMinHealthInterval, "100ms");
  }
  if (auto n = obj.optional("timeout")) h.timeout = read_timeout(*n);
  if (h.timeout > h.interval) {
    (obj.optional("timeout") ? *obj.optional("timeout") : node)
        .fail("the timeout must not be longer than the interval");
  }
  if (auto n = obj.optional("healthy_threshold")) h.healthy_threshold = read_threshold(*n);
  if (auto n = obj.optional("unhealthy_threshold")) h.unhealthy_threshold = read_threshold(*n);
  if (auto n = obj.optional("expected_statuses")) {
    h.expected_statuses = read_string(*n);
    std::vector<std::pair<int, int>> ranges;
    std::string why;
    if (!parse_status_ranges(h.expected_statuses, ranges, &why)) {
      n->fail("invalid status list " + quote(h.expected_statuses) + ": " + why +
              " (e.g. \"200-399\" or \"200,204\")");
    }
  }
  return h;
}

HostPort read_weighted_server(const Node& node, uint32_t& weight) {
  weight = 1;
  if (!node.value().is_object()) return read_server_address(node);
  const ObjectReader obj(node, {"address", "weight"});
  if (auto n = obj.optional("weight")) weight = static_cast<uint32_t>(read_uint(*n, 1, kMaxWeight));
  return read_server_address(obj.required("address"));
}

RetryPolicy read_retry(const Node& node) {
  const ObjectReader obj(node, {"attempts", "on", "backoff", "max_backoff", "budget_percent",
                                "min_retries_per_second"});
  RetryPolicy r;
  if (auto n = obj.optional("attempts"))
    r.attempts = static_cast<uint32_t>(read_uint(*n, 0, kMaxRetries));
  if (auto n = obj.optional("on")) {
    r.on_connect_failure = false;
    r.on_reset = false;
    for (const Node& element : read_array(*n, /*allow_empty=*/false)) {
      const std::string what = read_string(element);
      if (what == "connect_failure") {
        r.on_connect_failure = true;
      } else if (what == "reset") {
        r.on_reset = true;
      } else if (what.size() == 3 && what[0] == '5' && all_digits(what)) {
        const int status = std::stoi(what);
        if (std::find(r.statuses.begin(), r.statuses.end(), status) == r.statuses.end()) {
          r.statuses.push_back(status);
        }
      } else {
        const std::string hint = suggestion_suffix(what, {"connect_failure", "reset"});
        element.fail("unknown retry condition " + quote(what) +
                     (hint.empty() ? " (expected \"connect_failure\", \"reset\" or a 5xx status "
                                     "such as \"503\")"
                                   : hint));
      }
    }
  }
  if (auto n = obj.optional("backoff")) r.backoff = read_duration(*n);
  if (auto n = obj.optional("max_backoff")) {
    r.max_backoff = read_duration(*n);
    if (r.max_backoff < r.backoff) n->fail("max_backoff must not be shorter than backoff");
  }
  if (auto n = obj.optional("budget_percent"))
    r.budget_percent = static_cast<uint32_t>(read_uint(*n, 0, 100));
  if (auto n = obj.optional("min_retries_per_second"))
    r.min_retries_per_second = static_cast<uint32_t>(read_uint(*n, 0, 10'000));
  return r;
}

RouteTimeouts read_route_timeouts(const Node& node) {
  const ObjectReader obj(node, {"connect", "response_headers", "idle", "request"});
  RouteTimeouts t;
  if (auto n = obj.optional("connect")) t.connect = read_timeout(*n);
  if (auto n = obj.optional("response_headers")) t.response_headers = read_timeout(*n);
  if (auto n = obj.optional("idle")) t.idle = read_timeout(*n);
  if (auto n = obj.optional("request")) t.request = read_timeout(*n);
  return t;
}

RateLimit read_rate_limit(const Node& node) {
  const ObjectReader obj(node, {"key", "requests", "per", "burst"});
  RateLimit r;
  if (auto n = obj.optional("key")) {
    if (n->value().is_string()) {
      read_choice(*n, "rate-limit key", {"client_ip"});
    } else {
      const ObjectReader key(*n, {"header"});
      r.key = RateLimitKey::kHeader;
      r.header = read_header_name(key.required("header"));
    }
  }
  r.requests = static_cast<uint32_t>(read_uint(obj.required("requests"), 1, 1'000'000'000));
  if (auto n = obj.optional("per")) {
    r.per = read_duration_at_least(*n, Millis{1'000}, "1s");
    if (r.per > Millis{24 * 3'600'000}) n->fail("per must be at most 24h");
    if (r.per.count() % 1000 != 0) n->fail("per must be whole seconds, e.g. \"1s\" or \"1m\"");
  }
  if (auto n = obj.optional("burst"))
    r.burst = static_cast<uint32_t>(read_uint(*n, 1, 1'000'000'000));
  if (r.burst == 0) r.burst = r.requests;
  return r;
}

namespace {

ApiKeyAuth read_api_key_auth(const Node& node) {
  const ObjectReader obj(node, {"header", "query", "keys", "file"});
  ApiKeyAuth a;
  auto header = obj.optional("header");
  auto query = obj.optional("query");
  if (header && query) query->fail("use either \"header\" or \"query\", not both");
  if (header) a.header = read_header_name(*header);
  if (query) {
    a.header.clear();
    a.query = read_string(*query);
    if (a.query.empty()) query->fail("the query parameter name must not be empty");
  }
  if (auto n = obj.optional("keys")) {
    for (const Node& element : read_array(*n, /*allow_empty=*/false)) {
      std::string key = read_string(element);
      const size_t colon = key.find(':');
      const std::string secret = colon == std::string::npos ? key : key.substr(colon + 1);
      if (secret.size() < 16) element.fail("an API key must be at least 16 characters");
      a.keys.push_back(std::move(key));
    }
  }
  if (auto n = obj.optional("file")) a.file = read_pem_path(*n, "API key");
  if (a.keys.empty() && a.file.empty()) node.fail("needs \"keys\" or \"file\" (or both)");
  return a;
}

JwtAuth read_jwt_auth(const Node& node) {
  const ObjectReader obj(node, {"jwks", "secret_file", "issuer", "audiences", "algorithms",
                                "leeway", "forward_subject"});
  JwtAuth j;
  auto jwks = obj.optional("jwks");
  auto secret = obj.optional("secret_file");
  if (jwks.has_value() == secret.has_value()) {
    node.fail("needs exactly one of \"jwks\" (a JWKS file) and \"secret_file\" (an HS256 secret)");
  }
  if (jwks) j.jwks_file = read_pem_path(*jwks, "JWKS");
  if (secret) {
    j.secret_file = read_pem_path(*secret, "JWT secret");
    j.algorithms = {"HS256"};
  }
  if (auto n = obj.optional("issuer")) j.issuer = read_string(*n);
  if (auto n = obj.optional("audiences")) {
    for (const Node& element : read_array(*n, /*allow_empty=*/false)) {
      j.audiences.push_back(read_string(element));
    }
  }
  if (auto n = obj.optional("algorithms")) {
    j.algorithms.clear();
    for (const Node& element : read_array(*n, /*allow_empty=*/false)) {
      j.algorithms.push_back(read_choice(element, "JWT algorithm", {"RS256", "ES256", "HS256"}));
    }
  }
  if (auto n = obj.optional("leeway")) j.leeway = read_duration(*n);
  if (auto n = obj.optional("forward_subject")) j.forward_subject = read_header_name(*n);
  return j;
}

}  // namespace

RouteAuth read_route_auth(const Node& node) {
  const ObjectReader obj(node, {"api_key", "jwt", "realm"});
  RouteAuth a;
  if (auto n = obj.optional("api_key")) a.api_key = read_api_key_auth(*n);
  if (auto n = obj.optional("jwt")) a.jwt = read_jwt_auth(*n);
  if (!a.api_key && !a.jwt) node.fail("needs \"api_key\" or \"jwt\" (or both)");
  if (auto n = obj.optional("realm")) {
    a.realm = read_string(*n);
    for (char c : a.realm) {
      if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
        n->fail("the realm may not contain quotes, backslashes or control characters");
      }
    }
  }
  return a;
}

}  // namespace torii::conf::detail
