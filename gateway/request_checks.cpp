#include "gateway/request_checks.hpp"

namespace torii::gateway {

using http::iequals;

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
  if (head.content_length_count > 1) return {Error::kBadRequest, "duplicate Content-Length"};
  if (head.has_transfer_encoding && head.is_http10()) {
    return {Error::kBadRequest, "Transfer-Encoding in an HTTP/1.0 request"};
  }
  if (head.has_transfer_encoding && head.framing != http::BodyFraming::kChunked) {
    return {Error::kBadRequest, "invalid Transfer-Encoding"};
  }
  std::string_view expect = head.get("expect");
  if (!expect.empty() && !iequals(expect, "100-continue")) {
    return {Error::kBadRequest, "unsupported Expect"};
  }
  return {};
}

}  // namespace torii::gateway
