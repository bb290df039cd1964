#include "gateway/header_rewrite.hpp"

#include <array>
#include <charconv>

namespace torii::gateway {

using http::Header;
using http::iequals;
using http::MessageHead;

namespace {

// Names listed in a message's Connection header(s): hop-by-hop as well.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const MessageHead& m) {
    for (const Header& h : m.headers) {
      if (!iequals(h.name, "connection")) continue;
      http::for_each_list_token(h.value, [this](std::string_view t) {
        if (count_ < tokens_.size()) tokens_[count_++] = t;
      });
    }
  }
  bool contains(std::string_view name) const {
    for (size_t i = 0; i < count_; ++i) {
      if (iequals(tokens_[i], name)) return true;
    }
    return false;
  }
  bool has_close() const { return contains("close"); }

 private:
  std::array<std::string_view, 16> tokens_{};
  size_t count_ = 0;
};

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Joins every value of a repeated header with ", " (RFC 9110 5.3).
void append_joined(std::string& out, const MessageHead& m, std::string_view name) {
  bool first = true;
  for (const Header& h : m.headers) {
    if (!iequals(h.name, name) || h.value.empty()) continue;
    if (!first) out.append(", ");
    out.append(h.value);
    first = false;
  }
}

bool has_header(const MessageHead& m, std::string_view name) {
  for (const Header& h : m.headers) {
    if (iequals(h.name, name)) return true;
  }
  return false;
}

std::string_view via_version(const MessageHead& m) { return m.is_http10() ? "1.0" : "1.1"; }

void append_via(std::string& out, const MessageHead& m) {
  out.append("Via: ");
  if (has_header(m, "via")) {
    append_joined(out, m, "via");
    out.append(", ");
  }
  out.append(via_version(m));
  out.append(" torii\r\n");
}

}  // namespace

bool is_sane_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    c == '-' || c == '_' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

void build_upstream_request_head(const MessageHead& req, const ForwardContext& ctx,
                                 std::string& out) {
  const ConnectionTokens connection(req);
  out.append(req.method);
  out.push_back(' ');
  std::string_view target = req.target;
  if (!target.empty() && target.front() != '/' && target != "*") {
    // absolute-form -> origin-form; the authority already is in Host
    size_t scheme_end = target.find("://");
    size_t path = target.find('/', scheme_end + 3);
    target = path == std::string_view::npos ? std::string_view("/") : target.substr(path);
  }
  out.append(target);
  out.append(" HTTP/1.1\r\n");

  bool have_host = false;
  for (const Header& h : req.headers) {
    const std::string_view n = h.name;
    if (http::is_hop_by_hop(n) || connection.contains(n)) continue;
    if (iequals(n, "content-length") || iequals(n, "expect") || iequals(n, "via") ||
        iequals(n, "x-forwarded-for") || iequals(n, "x-forwarded-proto") ||
        iequals(n, "x-forwarded-host") || iequals(n, "x-request-id")) {
      continue;
    }
    if (iequals(n, "host")) have_host = true;
    append_header(out, h.name, h.value);
  }
  if (!have_host) append_header(out, "Host", ctx.upstream_authority);

  out.append("X-Forwarded-For: ");
  if (has_header(req, "x-forwarded-for")) {
    append_joined(out, req, "x-forwarded-for");
    out.append(", ");
  }
  out.append(ctx.client_ip);
  out.append("\r\n");
  append_header(out, "X-Forwarded-Proto", ctx.proto);
  std::string_view host = req.get("host");
  if (!host.empty()) append_header(out, "X-Forwarded-Host", host);
  append_via(out, req);
  append_header(out, "X-Request-Id", ctx.request_id);

  switch (req.framing) {
    case http::BodyFraming::kContentLength:
      out.append("Content-Length: ");
      append_uint(out, req.content_length);
      out.append("\r\n");
      break;
    case http::BodyFraming::kChunked:
      out.append("Transfer-Encoding: chunked\r\n");
      break;
    case http::BodyFraming::kNone:
    case http::BodyFraming::kUntilClose:
      // Methods whose semantics expect a body get an explicit zero length.
      if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
        out.append("Content-Length: 0\r\n");
      }
      break;
  }
  out.append("\r\n");
}

ClientResponsePlan build_client_response_head(const MessageHead& resp, const MessageHead& req,
                                              const ForwardContext& ctx, bool want_close,
                                              std::string& out) {
  const ConnectionTokens connection(resp);
  ClientResponsePlan plan;
  const bool client_10 = req.is_http10();
  plan.close_after = want_close || !req.keep_alive;

  switch (resp.framing) {
    case http::BodyFraming::kNone:
      plan.mode = ClientBodyMode::kNone;
      break;
    case http::BodyFraming::kContentLength:
      plan.mode = ClientBodyMode::kPassthrough;
      break;
    case http::BodyFraming::kChunked:
      plan.mode = client_10 ? ClientBodyMode::kUntilClose : ClientBodyMode::kPassthrough;
      break;
    case http::BodyFraming::kUntilClose:
      plan.mode = client_10 ? ClientBodyMode::kUntilClose : ClientBodyMode::kChunkWrap;
      break;
  }
  if (plan.mode == ClientBodyMode::kUntilClose) plan.close_after = true;

  out.append("HTTP/1.1 ");
  append_uint(out, static_cast<uint64_t>(resp.status));
  out.push_back(' ');
  out.append(resp.reason.empty() ? http::reason_phrase(resp.status) : resp.reason);
  out.append("\r\n");

  const bool body_less_answer = req.method == "HEAD" || resp.status == 204 || resp.status == 304;
  for (const Header& h : resp.headers) {
    const std::string_view n = h.name;
    if (http::is_hop_by_hop(n) || connection.contains(n)) continue;
    if (iequals(n, "via") || iequals(n, "x-request-id")) continue;
    if (iequals(n, "content-length") && !body_less_answer &&
        plan.mode != ClientBodyMode::kPassthrough) {
      continue;
    }
    append_header(out, h.name, h.value);
  }
  // A HEAD/304 answer keeps the framing headers of the representation.
  if (body_less_answer && resp.has_transfer_encoding && !client_10) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
  if ((plan.mode == ClientBodyMode::kPassthrough && resp.framing == http::BodyFraming::kChunked) ||
      plan.mode == ClientBodyMode::kChunkWrap) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
  append_via(out, resp);
  append_header(out, "X-Request-Id", ctx.request_id);
  if (plan.close_after) {
    out.append("Connection: close\r\n");
  } else if (client_10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  return plan;
}

}  // namespace torii::gateway
