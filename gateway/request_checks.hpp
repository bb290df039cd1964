// Checks a parsed request head must pass before it is routed (pure).
// llhttp (strict) already rejects Content-Length together with
// Transfer-Encoding, bad chunk framing, bare LF and invalid tokens; these
// are the rules a proxy adds on top (RFC 9112 3.2, 6.1, 6.3; RFC 9110 10.1.1).
#pragma once

#include <string_view>

#include "common/error.hpp"
#include "common/http1_parser.hpp"

namespace torii::gateway {

struct CheckResult {
  Error error = Error::kNone;
  std::string_view reason;
};

CheckResult check_request_head(const http::MessageHead& head);

// RFC 9112 3.2 / RFC 3986 3.2.2: uri-host [ ":" port ].
bool is_valid_host_value(std::string_view host);

// True when the request carries "Expect: 100-continue".
bool expects_continue(const http::MessageHead& head);

}  // namespace torii::gateway
