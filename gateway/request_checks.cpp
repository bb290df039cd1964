#include "gateway/request_checks.hpp"

#include "gateway/router.hpp"

namespace torii::gateway {

using http::iequals;

namespace {

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 3986 reg-name characters: unreserved / pct-encoded / sub-delims.
bool is_reg_name(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    const bool sub_delim = c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' ||
                           c == '*' || c == '+' || c == ',' || c == ';' || c == '=';
    if (unreserved || sub_delim) continue;
    if (c == '%' && i + 2 < s.size() && is_hex(s[i + 1]) && is_hex(s[i + 2])) {
      i += 2;
      continue;
    }
    return false;
  }
  return true;
}

bool is_port(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return s.size() <= 5;
}

}  // namespace

bool is_valid_host_value(std::string_view host) {
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    for (char c : host.substr(1, close - 1)) {
      if (!is_hex(c) && c != ':' && c != '.') return false;
    }
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    if (!rest.empty()) port = rest.substr(1);
  } else {
    size_t colon = host.rfind(':');
    if (colon != std::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
    if (!is_reg_name(host)) return false;
  }
  return is_port(port);
}

bool expects_continue(const http::MessageHead& head) {
  return iequals(head.get("expect"), "100-continue");
}

CheckResult check_request_head(const http::MessageHead& head) {
  if (head.method == "CONNECT") return {Error::kNotImplemented, "CONNECT is not supported"};
  const std::string_view t = head.target;
  const bool origin_form = !t.empty() && t.front() == '/';
  const bool asterisk_form = t == "*" && head.method == "OPTIONS";
  const bool absolute_form = t.rfind("http://", 0) == 0 || t.rfind("https://", 0) == 0;
  if (!origin_form && !asterisk_form && !absolute_form) {
    return {Error::kBadRequest, "invalid request target"};
  }
  if (head.host_count > 1) return {Error::kBadRequest, "duplicate Host header"};
  if (head.host_count == 0 && !head.is_http10()) return {Error::kBadRequest, "missing Host header"};
  if (head.host_count == 1 && !is_valid_host_value(head.get("host"))) {
    return {Error::kBadRequest, "invalid Host header"};
  }
  if (absolute_form) {
    // Its authority becomes the Host sent upstream (RFC 9112 3.2.2).
    const std::string_view authority = split_target(t).authority;
    if (authority.empty() || !is_valid_host_value(authority)) {
      return {Error::kBadRequest, "invalid authority in the request target"};
    }
  }
  if (head.content_length_count > 1) return {Error::kBadRequest, "duplicate Content-Length"};
  if (head.has_transfer_encoding && head.is_http10()) {
    return {Error::kBadRequest, "Transfer-Encoding in an HTTP/1.0 request"};
  }
  if (head.has_transfer_encoding && head.framing != http::BodyFraming::kChunked) {
    return {Error::kBadRequest, "invalid Transfer-Encoding"};
  }
  if (head.has_transfer_encoding) {
    // chunked only once, and last (RFC 9112 6.1), across every
    // Transfer-Encoding field: the upstream sees them joined in one.
    size_t chunked = 0;
    bool chunked_last = false;
    for (const http::Header& h : head.headers) {
      if (!iequals(h.name, "transfer-encoding")) continue;
      http::for_each_list_token(h.value, [&](std::string_view token) {
        chunked_last = iequals(token, "chunked");
        chunked += chunked_last ? 1 : 0;
      });
    }
    if (chunked != 1 || !chunked_last) {
      return {Error::kBadRequest, "chunked must be the last transfer coding, applied once"};
    }
  }
  std::string_view expect = head.get("expect");
  if (!expect.empty() && !iequals(expect, "100-continue")) {
    return {Error::kBadRequest, "unsupported Expect"};
  }
  return {};
}

}  // namespace torii::gateway
