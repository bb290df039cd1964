#include "gateway/prewarm_share.hpp"

#include <nlohmann/json.hpp>

namespace torii::gateway {

namespace {

using nlohmann::json;

// The JSON part of a message (up to the first newline) and the raw rest.
std::pair<std::string_view, std::string_view> split(std::string_view message) {
  const size_t nl = message.find('\n');
  if (nl == std::string_view::npos) return {message, {}};
  return {message.substr(0, nl), message.substr(nl + 1)};
}

template <typename T>
bool read(const json& doc, const char* key, T& out) {
  auto it = doc.find(key);
  if (it == doc.end()) return false;
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return false;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return false;
  } else {
    if (!it->is_number_integer()) return false;
    if (std::is_unsigned_v<T> && !it->is_number_unsigned()) return false;
  }
  out = it->get<T>();
  return true;
}

}  // namespace

std::string route_fingerprint(const conf::Route& route) {
  json headers = json::array();
  for (const auto& [name, value] : route.response_headers) headers.push_back({name, value});
  return json{{"route", route.name}, {"upstream", route.upstream}, {"headers", headers}}.dump();
}

ControlHeader peek_control(std::string_view message) {
  ControlHeader h;
  const json doc = json::parse(split(message).first, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return h;
  read(doc, "op", h.op);
  read(doc, "key", h.key);
  read(doc, "granted", h.granted);
  read(doc, "response_time_ms", h.response_time_ms);
  read(doc, "fingerprint", h.fingerprint);
  return h;
}

std::string make_simple(std::string_view op, std::string_view key, bool granted) {
  json doc{{"op", op}};
  if (!key.empty()) doc["key"] = key;
  if (op == kOpGrant) doc["granted"] = granted;
  return doc.dump();
}

std::string make_claim(std::string_view key, int64_t have_response_time_ms,
                       std::string_view fingerprint) {
  return json{{"op", kOpClaim},
              {"key", key},
              {"response_time_ms", have_response_time_ms},
              {"fingerprint", fingerprint}}
      .dump();
}

std::string encode_shared(std::string_view op, const cache::StoredResponse& r,
                          std::string_view fingerprint) {
  const json meta{{"op", op},
                  {"key", r.key},
                  {"fingerprint", fingerprint},
                  {"host", r.host},
                  {"target", r.target},
                  {"status", r.status},
                  {"status_line_size", r.status_line_size},
                  {"head_size", r.head_size},
                  {"vary_names", r.vary_names},
                  {"vary_values", r.vary_values},
                  // Validators are the origin's bytes (obs-text allowed, not
                  // always UTF-8): they travel in the raw part, sized here.
                  {"etag_size", r.etag.size()},
                  {"last_modified_size", r.last_modified.size()},
                  {"response_time_ms", r.response_time_ms},
                  {"initial_age_ms", r.initial_age_ms},
                  {"lifetime_ms", r.lifetime_ms},
                  {"swr_ms", r.swr_ms},
                  {"sie_ms", r.sie_ms},
                  {"no_stale", r.no_stale},
                  {"always_revalidate", r.always_revalidate}};
  std::string out;
  try {
    out = meta.dump();  // compact: no raw newline inside
  } catch (const json::exception&) {
    return {};  // a field that is not UTF-8 (never for pre-warm keys): not shared
  }
  out.push_back('\n');
  out.append(r.etag);
  out.append(r.last_modified);
  out.append(r.bytes);
  return out;
}

std::optional<SharedResponse> decode_shared(std::string_view message) {
  const auto [meta_text, raw] = split(message);
  const json doc = json::parse(meta_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  SharedResponse s;
  uint64_t etag_size = 0;
  uint64_t last_modified_size = 0;
  if (!read(doc, "etag_size", etag_size) || !read(doc, "last_modified_size", last_modified_size) ||
      etag_size > raw.size() || last_modified_size > raw.size() - etag_size) {
    return std::nullopt;
  }
  s.response.etag.assign(raw.substr(0, etag_size));
  s.response.last_modified.assign(raw.substr(etag_size, last_modified_size));
  const std::string_view bytes = raw.substr(etag_size + last_modified_size);
  cache::StoredResponse& r = s.response;
  uint64_t status_line_size = 0;
  uint64_t head_size = 0;
  int64_t status = 0;
  const bool ok = read(doc, "key", r.key) && read(doc, "fingerprint", s.fingerprint) &&
                  read(doc, "host", r.host) && read(doc, "target", r.target) &&
                  read(doc, "status", status) && read(doc, "status_line_size", status_line_size) &&
                  read(doc, "head_size", head_size) && read(doc, "vary_values", r.vary_values) &&
                  read(doc, "response_time_ms", r.response_time_ms) &&
                  read(doc, "initial_age_ms", r.initial_age_ms) &&
                  read(doc, "lifetime_ms", r.lifetime_ms) && read(doc, "swr_ms", r.swr_ms) &&
                  read(doc, "sie_ms", r.sie_ms) && read(doc, "no_stale", r.no_stale) &&
                  read(doc, "always_revalidate", r.always_revalidate);
  if (!ok || status < 100 || status > 999) return std::nullopt;
  // The layout must describe these bytes: status line, head, blank line, body.
  if (status_line_size == 0 || status_line_size > head_size || head_size > bytes.size() ||
      bytes.size() - head_size < 2 || bytes.substr(head_size, 2) != "\r\n") {
    return std::nullopt;
  }
  auto names = doc.find("vary_names");
  if (names == doc.end() || !names->is_array()) return std::nullopt;
  for (const json& n : *names) {
    if (!n.is_string()) return std::nullopt;
    r.vary_names.push_back(n.get<std::string>());
  }
  r.status = static_cast<int>(status);
  r.status_line_size = status_line_size;
  r.head_size = head_size;
  r.bytes.assign(bytes);
  return s;
}

std::string with_op(std::string_view message, std::string_view op) {
  const auto [meta_text, bytes] = split(message);
  json doc = json::parse(meta_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return {};
  doc["op"] = op;
  std::string out = doc.dump();
  out.push_back('\n');
  out.append(bytes);
  return out;
}

}  // namespace torii::gateway
