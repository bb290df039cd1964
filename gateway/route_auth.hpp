// Authentication of a route's requests (sans-I/O): API keys (a header or a
// query parameter) and JWT bearer tokens. Built in the master when a config
// loads, so that unreadable or invalid key files are reported with their
// JSON path, and inherited by the workers through fork; a reload reads the
// files again.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1_parser.hpp"
#include "conf/config.hpp"
#include "gateway/auth_api_key.hpp"
#include "gateway/auth_jwt.hpp"

namespace torii::gateway {

enum class AuthOutcome : uint8_t {
  kAllowed,
  kMissing,    // no credential: 401
  kInvalid,    // a credential that does not verify (unknown key, bad or expired token): 401
  kForbidden,  // a genuine token issued for another audience: 403
};

struct AuthDecision {
  AuthOutcome outcome = AuthOutcome::kAllowed;
  std::string_view reason;    // for logs: "expired", "unknown api key", ...
  std::string challenge;      // WWW-Authenticate value(s) of a 401, one per line
  std::string subject;        // the token's `sub` (allowed by JWT only)
  std::string_view key_name;  // the API key's name (allowed by API key only)
  bool via_api_key = false;
};

class RouteAuthenticator {
 public:
  // Reads the key and JWKS files; throws conf::ConfigError naming
  // `config_file` and the JSON path under `json_base` ("/routes/2/auth").
  static std::shared_ptr<const RouteAuthenticator> create(const conf::RouteAuth& auth,
                                                          const std::string& config_file,
                                                          const std::string& json_base);

  // Either credential the route accepts is enough. `now_unix_s`: for exp/nbf.
  AuthDecision check(const http::MessageHead& request, int64_t now_unix_s) const;

  // The header carrying the API key (empty when a query parameter does),
  // not forwarded upstream: it is the gateway's credential.
  std::string_view api_key_header() const;
  // The query parameter carrying the API key (empty: none), removed from
  // the target sent upstream.
  std::string_view api_key_query() const;
  // The header that carries the verified subject upstream (empty: none);
  // a client's own header of that name is never forwarded.
  std::string_view subject_header() const;

 private:
  explicit RouteAuthenticator(const conf::RouteAuth& config) : config_(config) {}

  conf::RouteAuth config_;
  std::optional<ApiKeySet> api_keys_;
  std::optional<JwtVerifier> jwt_;
};

// One per route (null for routes without "auth"). Throws conf::ConfigError.
using RouteAuthenticators = std::vector<std::shared_ptr<const RouteAuthenticator>>;
RouteAuthenticators build_route_authenticators(const conf::Config& config);

// True when `value` may be sent as a header value (no CR, LF, NUL or other
// control characters): claims come from the token's issuer, not from us.
bool is_safe_header_value(std::string_view value);

}  // namespace torii::gateway
