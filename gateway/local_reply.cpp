#include "gateway/local_reply.hpp"

#include <charconv>

#include "common/http_types.hpp"

namespace torii::gateway {

void build_local_reply(Error error, std::string_view request_id, bool head_request, bool close,
                       bool http10_keep_alive, std::string& out, std::string_view extra_lines) {
  const int status = error_status(error) == 0 ? 500 : error_status(error);
  const std::string_view reason = http::reason_phrase(status);
  char status_text[8];
  auto r = std::to_chars(status_text, status_text + sizeof status_text, status);
  const std::string_view code(status_text, static_cast<size_t>(r.ptr - status_text));

  // Body: "<status> <reason>\n"
  const size_t body_len = code.size() + 1 + reason.size() + 1;
  char len_text[24];
  auto lr = std::to_chars(len_text, len_text + sizeof len_text, body_len);

  out.append("HTTP/1.1 ");
  out.append(code);
  out.push_back(' ');
  out.append(reason);
  out.append("\r\nServer: torii\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  out.append(len_text, lr.ptr);
  out.append("\r\n");
  if (!request_id.empty()) {
    out.append("X-Request-Id: ");
    out.append(request_id);
    out.append("\r\n");
  }
  if (status == 503) out.append("Retry-After: 1\r\n");
  out.append(extra_lines);
  if (close) {
    out.append("Connection: close\r\n");
  } else if (http10_keep_alive) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  if (!head_request) {
    out.append(code);
    out.push_back(' ');
    out.append(reason);
    out.push_back('\n');
  }
}

void build_redirect(int status, std::string_view location, std::string_view request_id,
                    bool head_request, bool close, bool http10_keep_alive, std::string& out) {
  const std::string body = "Moved to " + std::string(location) + "\n";
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
  out.append(http::reason_phrase(status));
  out.append("\r\nServer: torii\r\nLocation: ").append(location);
  out.append("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
  out.append(std::to_string(body.size())).append("\r\n");
  if (!request_id.empty()) out.append("X-Request-Id: ").append(request_id).append("\r\n");
  if (close) {
    out.append("Connection: close\r\n");
  } else if (http10_keep_alive) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  if (!head_request) out.append(body);
}

}  // namespace torii::gateway
