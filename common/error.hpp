// One error vocabulary for the request path: used for the local reply's
// status, log fields and (later) metric labels. The X-macro keeps each
// error's name, status and side in one row.
#pragma once

#include <cstdint>
#include <string_view>

namespace torii {

// name, HTTP status of the local reply, side that caused it
#define TORII_ERRORS(X)                      \
  X(kNone, 0, Internal)                      \
  X(kBadRequest, 400, Downstream)            \
  X(kUnauthorized, 401, Downstream)          \
  X(kForbidden, 403, Downstream)             \
  X(kNoRoute, 404, Downstream)               \
  X(kMethodNotAllowed, 405, Downstream)      \
  X(kHeaderReadTimeout, 408, Downstream)     \
  X(kBodyReadTimeout, 408, Downstream)       \
  X(kBodyTooLarge, 413, Downstream)          \
  X(kUriTooLong, 414, Downstream)            \
  X(kHeadersTooLarge, 431, Downstream)       \
  X(kTooManyRequests, 429, Downstream)       \
  X(kNotImplemented, 501, Downstream)        \
  X(kVersionNotSupported, 505, Downstream)   \
  X(kUpstreamConnectFailed, 502, Upstream)   \
  X(kUpstreamReset, 502, Upstream)           \
  X(kUpstreamBadResponse, 502, Upstream)     \
  X(kUpstreamTlsFailed, 502, Upstream)       \
  X(kUpstreamPoolFull, 503, Upstream)        \
  X(kUpstreamConnectTimeout, 504, Upstream)  \
  X(kUpstreamResponseTimeout, 504, Upstream) \
  X(kShuttingDown, 503, Internal)            \
  X(kInternal, 500, Internal)

enum class ErrorSide : uint8_t { Internal, Downstream, Upstream };

enum class Error : uint8_t {
#define TORII_ERROR_ENUM(name, status, side) name,
  TORII_ERRORS(TORII_ERROR_ENUM)
#undef TORII_ERROR_ENUM
};

std::string_view error_name(Error e);  // "upstream_connect_failed"
int error_status(Error e);
ErrorSide error_side(Error e);

}  // namespace torii
