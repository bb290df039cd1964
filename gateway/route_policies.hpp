// The checks a request passes before it is forwarded, per route: the rate
// limit (a token bucket shared by every worker) and authentication (API key
// or JWT). Sans-I/O: the caller gives the request, the client address and
// the clocks; the verdict says whether to go on, or which local reply to
// send and with which headers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/http1_parser.hpp"
#include "conf/config.hpp"
#include "gateway/rate_limit.hpp"
#include "gateway/route_auth.hpp"

namespace torii::gateway {

struct PolicyVerdict {
  Error error = Error::kNone;  // kNone: forward the request
  std::string reply_lines;     // header lines for the local reply ("Name: value\r\n"...)
  std::string_view reason;     // for the log
  // Counted when the request is refused: kRateLimited, or an auth reason index.
  bool rate_limited = false;
  size_t auth_reason = 0;  // metrics::kAuthReasons index, when error is 401/403
  // Allowed by a token: its `sub`, to forward in the route's subject header.
  std::string subject;
};

class RoutePolicies {
 public:
  // `table`: the gateway's shared rate-limit table (absent: no route limits).
  RoutePolicies(const conf::Config& config, const RouteAuthenticators& auth,
                std::optional<RateLimitTable> table);

  PolicyVerdict check(size_t route, const http::MessageHead& request, std::string_view client_ip,
                      uint64_t now_monotonic_ms, int64_t now_unix_s) const;

  // The route has a rate limit or authentication (otherwise check() has
  // nothing to do, and the request path skips it).
  bool any(size_t route) const {
    return (route < limits_.size() && limits_[route].has_value()) || auth(route) != nullptr;
  }

  const RouteAuthenticator* auth(size_t route) const {
    return route < auth_.size() ? auth_[route].get() : nullptr;
  }

 private:
  struct Limit {
    RateLimitPolicy policy;
    uint32_t route_id = 0;     // from the route's name: buckets survive reloads
    std::string header;        // key header (empty: the client address)
    std::string policy_value;  // the RateLimit-Policy header value
    std::string name;          // the policy's name in the headers
  };
  std::vector<std::optional<Limit>> limits_;  // per route
  const RouteAuthenticators& auth_;
  // A view onto the shared memory; taking a token writes there, not here.
  mutable std::optional<RateLimitTable> table_;
};

}  // namespace torii::gateway
