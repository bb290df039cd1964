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

void append_common_tail(const HitHeadContext& ctx, std::string& out) {
  out.append("Age: ");
  append_int(out, ctx.age_s < 0 ? 0 : ctx.age_s);
  out.append("\r\nCache-Status: ");
  out.append(ctx.cache_status);
  out.append("\r\nX-Request-Id: ");
  out.append(ctx.request_id);
  out.append("\r\n");
  if (ctx.close) {
    out.append("Connection: close\r\n");
  } else if (ctx.http10_keep_alive) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

bool kept_in_304(std::string_view name) {
  for (std::string_view n : {"cache-control", "content-location", "date", "etag", "expires",
                             "last-modified", "vary", "via"}) {
    if (http::iequals(name, n)) return true;
  }
  return false;
}

}  // namespace

void append_hit_tail(const cache::StoredResponse& r, const HitHeadContext& ctx, std::string& out) {
  if (r.status >= 200 && r.status != 204 && r.status != 304) {
    out.append("Content-Length: ");
    append_int(out, static_cast<int64_t>(r.body().size()));
    out.append("\r\n");
  }
  append_common_tail(ctx, out);
}

void append_not_modified_head(const cache::StoredResponse& r, const HitHeadContext& ctx,
                              std::string& out) {
  out.append("HTTP/1.1 304 Not Modified\r\n");
  std::string_view head = r.head();
  size_t line_end = head.find("\r\n");  // skip the status line
  size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    line_end = head.find("\r\n", pos);
    if (line_end == std::string_view::npos) line_end = head.size();
    const std::string_view line = head.substr(pos, line_end - pos);
    const std::string_view name = line.substr(0, line.find(':'));
    if (kept_in_304(name)) {
      out.append(line);
      out.append("\r\n");
    }
    pos = line_end + 2;
  }
  append_common_tail(ctx, out);
}

std::string cache_status_value(std::string_view fwd, int fwd_status, bool with_ttl, int64_t ttl_s,
                               bool stored, bool collapsed, std::string_view detail) {
  std::string v = "torii; ";
  if (fwd.empty()) {
    v.append("hit");
  } else {
    v.append("fwd=");
    v.append(fwd);
  }
  if (fwd_status != 0) {
    v.append("; fwd-status=");
    append_int(v, fwd_status);
  }
  if (with_ttl) {
    v.append("; ttl=");
    append_int(v, ttl_s);
  }
  if (stored) v.append("; stored");
  if (collapsed) v.append("; collapsed");
  if (!detail.empty()) {
    v.append("; detail=");
    v.append(detail);
  }
  return v;
}

}  // namespace torii::gateway
