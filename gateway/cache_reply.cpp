#include "gateway/cache_reply.hpp"

#include <charconv>

#include "common/http_types.hpp"

namespace torii::gateway {

namespace {

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_per_response_fields(const HitHeadContext& ctx, std::string& out) {
  out.append("Age: ");
  append_int(out, ctx.age_s < 0 ? 0 : ctx.age_s);
  out.append("\r\nCache-Status: ");
  out.append(ctx.cache_status);
  out.append("\r\nX-Request-Id: ");
  out.append(ctx.request_id);
  out.append("\r\n");
  out.append(ctx.extra_lines);
  if (ctx.close) {
    out.append("Connection: close\r\n");
  } else if (ctx.http10_keep_alive) {
    out.append("Connection: keep-alive\r\n");
  }
}

bool kept_in_304(std::string_view name, const HitHeadContext& ctx) {
  for (std::string_view n : {"cache-control", "content-location", "date", "etag", "expires",
                             "last-modified", "vary", "via"}) {
    if (http::iequals(name, n)) return true;
  }
  if (ctx.route_headers != nullptr) {
    for (const auto& header : *ctx.route_headers) {
      if (http::iequals(name, header.first)) return true;
    }
  }
  return false;
}

}  // namespace

void append_hit_start(const cache::StoredResponse& r, const HitHeadContext& ctx, std::string& out) {
  out.append(r.status_line());
  if (r.status >= 200 && r.status != 204 && r.status != 304) {
    out.append("Content-Length: ");
    append_int(out, static_cast<int64_t>(r.body().size()));
    out.append("\r\n");
  }
  append_per_response_fields(ctx, out);
}

void append_not_modified_head(const cache::StoredResponse& r, const HitHeadContext& ctx,
                              std::string& out) {
  out.append("HTTP/1.1 304 Not Modified\r\n");
  std::string_view head = r.head();
  size_t pos = r.status_line_size;
  while (pos < head.size()) {
    size_t line_end = head.find("\r\n", pos);
    if (line_end == std::string_view::npos) line_end = head.size();
    const std::string_view line = head.substr(pos, line_end - pos);
    const std::string_view name = line.substr(0, line.find(':'));
    if (kept_in_304(name, ctx)) {
      out.append(line);
      out.append("\r\n");
    }
    pos = line_end + 2;
  }
  append_per_response_fields(ctx, out);
  out.append("\r\n");
}

void append_cache_status(std::string& out, std::string_view fwd, int fwd_status, bool with_ttl,
                         int64_t ttl_s, bool stored, bool collapsed, std::string_view detail) {
  out.append("torii; ");
  if (fwd.empty()) {
    out.append("hit");
  } else {
    out.append("fwd=");
    out.append(fwd);
  }
  if (fwd_status != 0) {
    out.append("; fwd-status=");
    append_int(out, fwd_status);
  }
  if (with_ttl) {
    out.append("; ttl=");
    append_int(out, ttl_s);
  }
  if (stored) out.append("; stored");
  if (collapsed) out.append("; collapsed");
  if (!detail.empty()) {
    out.append("; detail=");
    out.append(detail);
  }
}

std::string cache_status_value(std::string_view fwd, int fwd_status, bool with_ttl, int64_t ttl_s,
                               bool stored, bool collapsed, std::string_view detail) {
  std::string v;
  append_cache_status(v, fwd, fwd_status, with_ttl, ttl_s, stored, collapsed, detail);
  return v;
}

}  // namespace torii::gateway
