#include "gateway/header_rewrite.hpp"

#include <array>
#include <charconv>

#include "gateway/router.hpp"

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

// Appends every non-empty element of a repeated list header, ", "-joined
// (RFC 9110 5.3, 5.6.1: no empty elements). Returns whether it wrote any.
bool append_list(std::string& out, const MessageHead& m, std::string_view name) {
  bool wrote = false;
  for (const Header& h : m.headers) {
    if (!iequals(h.name, name)) continue;
    http::for_each_list_token(h.value, [&](std::string_view t) {
      if (wrote) out.append(", ");
      out.append(t);
      wrote = true;
    });
  }
  return wrote;
}

// "Name: <existing elements>, <own>\r\n"
void append_list_with(std::string& out, const MessageHead& m, std::string_view name,
                      std::string_view own_prefix, std::string_view own) {
  out.append(name);
  out.append(": ");
  if (append_list(out, m, name)) out.append(", ");
  out.append(own_prefix);
  out.append(own);
  out.append("\r\n");
}

std::string_view via_version(const MessageHead& m) { return m.is_http10() ? "1.0 " : "1.1 "; }

// Transfer-Encoding for a body Torii frames as chunked: the sender's own
// codings are kept (a gzip-then-chunked body stays gzip-coded), with
// "chunked" last.
void append_chunked_te(std::string& out, const MessageHead& m) {
  out.append("Transfer-Encoding: ");
  bool wrote = false;
  bool chunked_last = false;
  for (const Header& h : m.headers) {
    if (!iequals(h.name, "transfer-encoding")) continue;
    http::for_each_list_token(h.value, [&](std::string_view t) {
      if (wrote) out.append(", ");
      out.append(t);
      wrote = true;
      chunked_last = iequals(t, "chunked");
    });
  }
  if (!chunked_last) out.append(wrote ? ", chunked" : "chunked");
  out.append("\r\n");
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

bool is_upgrade_request(const MessageHead& request) {
  return request.method == "GET" && !request.is_http10() && !request.get("upgrade").empty() &&
         ConnectionTokens(request).contains("upgrade");
}

void build_switching_protocols_head(const MessageHead& response, std::string_view request_id,
                                    std::string& out) {
  const ConnectionTokens connection(response);
  out.append("HTTP/1.1 101 Switching Protocols\r\n");
  for (const Header& h : response.headers) {
    const std::string_view n = h.name;
    if (http::is_hop_by_hop(n) || connection.contains(n) || iequals(n, "content-length") ||
        iequals(n, "x-request-id")) {
      continue;
    }
    append_header(out, h.name, h.value);
  }
  append_header(out, "Upgrade", response.get("upgrade"));
  out.append("Connection: upgrade\r\n");
  if (!request_id.empty()) append_header(out, "X-Request-Id", request_id);
  out.append("\r\n");
}

void build_upstream_request_head(const MessageHead& req, const ForwardContext& ctx,
                                 std::string& out) {
  const ConnectionTokens connection(req);
  const RequestTarget target = split_target(req.target);
  out.append(ctx.method_override.empty() ? req.method : ctx.method_override);
  out.push_back(' ');
  if (!ctx.path_and_query_override.empty()) {
    out.append(ctx.path_and_query_override);
  } else {
    if (target.absolute && target.path_and_query.front() != '/') out.push_back('/');
    out.append(target.path_and_query);
  }
  out.append(" HTTP/1.1\r\n");

  // RFC 9112 3.2.2: an absolute-form target's authority replaces Host.
  const std::string_view host = target.absolute ? target.authority : req.get("host");
  append_header(out, "Host", host.empty() ? ctx.upstream_authority : host);
  for (const Header& h : req.headers) {
    const std::string_view n = h.name;
    if (http::is_hop_by_hop(n) || connection.contains(n)) continue;
    if (iequals(n, "host") || iequals(n, "content-length") || iequals(n, "expect") ||
        iequals(n, "via") || iequals(n, "x-forwarded-for") || iequals(n, "x-forwarded-proto") ||
        iequals(n, "x-forwarded-host") || iequals(n, "x-request-id") ||
        (!ctx.drop_headers[0].empty() && iequals(n, ctx.drop_headers[0])) ||
        (!ctx.drop_headers[1].empty() && iequals(n, ctx.drop_headers[1]))) {
      continue;
    }
    append_header(out, h.name, h.value);
  }
  append_list_with(out, req, "X-Forwarded-For", "", ctx.client_ip);
  append_header(out, "X-Forwarded-Proto", ctx.proto);
  if (!host.empty()) append_header(out, "X-Forwarded-Host", host);
  append_list_with(out, req, "Via", via_version(req), "torii");
  append_header(out, "X-Request-Id", ctx.request_id);
  out.append(ctx.extra_lines);
  if (ctx.upgrade) {
    append_header(out, "Upgrade", req.get("upgrade"));
    out.append("Connection: upgrade\r\n");
  }

  switch (req.framing) {
    case http::BodyFraming::kContentLength:
      out.append("Content-Length: ");
      append_uint(out, req.content_length);
      out.append("\r\n");
      break;
    case http::BodyFraming::kChunked:
      append_chunked_te(out, req);
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
      plan.mode = ClientBodyMode::kIdentity;
      break;
    case http::BodyFraming::kChunked:
    case http::BodyFraming::kUntilClose:
      // An HTTP/1.0 client cannot take chunked: its body ends with the connection.
      plan.mode = client_10 ? ClientBodyMode::kIdentity : ClientBodyMode::kChunked;
      if (client_10) plan.close_after = true;
      break;
  }

  out.append("HTTP/1.1 ");
  append_uint(out, static_cast<uint64_t>(resp.status));
  out.push_back(' ');
  out.append(resp.reason.empty() ? http::reason_phrase(resp.status) : resp.reason);
  out.append("\r\n");

  for (const Header& h : resp.headers) {
    const std::string_view n = h.name;
    if (http::is_hop_by_hop(n) || connection.contains(n)) continue;
    if (iequals(n, "via") || iequals(n, "x-request-id")) continue;
    // Content-Length stays with the bytes it describes: a body relayed as
    // is, or the representation of a HEAD/304 answer (and "0" on an empty body).
    if (iequals(n, "content-length") && plan.mode == ClientBodyMode::kChunked) continue;
    append_header(out, h.name, h.value);
  }
  // A HEAD/304 answer to an HTTP/1.1 client carries the framing a GET would have had.
  const bool representation_te = plan.mode == ClientBodyMode::kNone && resp.has_transfer_encoding &&
                                 !client_10 && (req.method == "HEAD" || resp.status == 304);
  if (plan.mode == ClientBodyMode::kChunked || representation_te) append_chunked_te(out, resp);
  if (ctx.response_headers != nullptr) {
    for (const auto& [name, value] : *ctx.response_headers) append_header(out, name, value);
  }
  append_list_with(out, resp, "Via", via_version(resp), "torii");
  append_header(out, "X-Request-Id", ctx.request_id);
  out.append(ctx.extra_lines);
  if (ctx.upgrade) {
    append_header(out, "Upgrade", req.get("upgrade"));
    out.append("Connection: upgrade\r\n");
  }
  if (plan.close_after) {
    out.append("Connection: close\r\n");
  } else if (client_10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  return plan;
}

void build_stored_response_head(const MessageHead& resp, const ForwardContext& ctx,
                                std::string_view date_if_missing, std::string& out) {
  const ConnectionTokens connection(resp);
  out.append("HTTP/1.1 ");
  append_uint(out, static_cast<uint64_t>(resp.status));
  out.push_back(' ');
  out.append(resp.reason.empty() ? http::reason_phrase(resp.status) : resp.reason);
  out.append("\r\n");
  bool has_date = false;
  for (const Header& h : resp.headers) {
    const std::string_view n = h.name;
    if (http::is_hop_by_hop(n) || connection.contains(n)) continue;
    if (iequals(n, "via") || iequals(n, "x-request-id") || iequals(n, "content-length") ||
        iequals(n, "age") || iequals(n, "cache-status")) {
      continue;
    }
    has_date = has_date || iequals(n, "date");
    append_header(out, h.name, h.value);
  }
  if (!has_date && !date_if_missing.empty()) append_header(out, "Date", date_if_missing);
  if (ctx.response_headers != nullptr) {
    for (const auto& [name, value] : *ctx.response_headers) append_header(out, name, value);
  }
  append_list_with(out, resp, "Via", via_version(resp), "torii");
}

}  // namespace torii::gateway
