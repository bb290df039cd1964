// What a config needs besides its JSON, read from files when it loads: the
// TLS contexts (certificates, keys, CA bundles) and the route
// authenticators (API-key and JWKS files). The master builds them at start,
// for `torii -t` and on every reload (errors carry the JSON path), and the
// workers inherit them through fork.
#pragma once

#include <memory>

#include "gateway/rate_limit.hpp"
#include "gateway/route_auth.hpp"
#include "gateway/tls_context.hpp"

namespace torii::gateway {

struct ConfigResources {
  TlsContexts tls;
  RouteAuthenticators auth;  // per route, null for routes without "auth"
  // The gateway's rate-limit buckets, in memory the master shares with every
  // worker (the same table across reloads); set by the master.
  std::optional<RateLimitTable> rate_limits;
};

// Throws conf::ConfigError.
inline ConfigResources load_config_resources(const conf::Config& config,
                                             const std::shared_ptr<TicketKeys>& keys) {
  ConfigResources r;
  r.tls = build_tls_contexts(config, keys);
  r.auth = build_route_authenticators(config);
  return r;
}

}  // namespace torii::gateway
