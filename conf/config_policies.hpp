// Readers of the policy sections (conf/policies.hpp) for config.cpp.
#pragma once

#include <string>

#include "conf/config_reader.hpp"
#include "conf/policies.hpp"

namespace torii::conf::detail {

// Upstream "balance": "round_robin" | "least_request" |
// {"hash": "client_ip" | {"header": NAME} | {"cookie": NAME}}.
Balance read_balance(const Node& node);
OutlierDetection read_outlier_detection(const Node& node);
HealthCheck read_health_check(const Node& node);
// A server: "host:port" or {"address": "host:port", "weight": N}; the weight goes to `weight`.
HostPort read_weighted_server(const Node& node, uint32_t& weight);

RetryPolicy read_retry(const Node& node);
RouteTimeouts read_route_timeouts(const Node& node);
RateLimit read_rate_limit(const Node& node);
// Key and JWKS files are checked for being readable (relative to the config file).
RouteAuth read_route_auth(const Node& node);

// "200-399", "200,204", "200-299,304": validated here, matched by the health checker.
bool parse_status_ranges(const std::string& spec, std::vector<std::pair<int, int>>& out,
                         std::string* why);

}  // namespace torii::conf::detail
