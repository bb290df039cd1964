#include "gateway/router.hpp"

#include <algorithm>
#include <tuple>

namespace torii::gateway {

std::string normalize_host(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    host = host.substr(0, close == std::string_view::npos ? host.size() : close + 1);
  } else {
    size_t colon = host.rfind(':');
    if (colon != std::string_view::npos) host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::string out(host);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

RequestTarget split_target(std::string_view target) {
  RequestTarget t;
  t.path_and_query = target;  // origin-form, asterisk-form
  const bool origin_form = target.empty() || target.front() == '/' || target == "*";
  if (size_t scheme_end = target.find("://");
      !origin_form && scheme_end != std::string_view::npos) {
    t.absolute = true;
    std::string_view rest = target.substr(scheme_end + 3);
    size_t authority_end = rest.find_first_of("/?#");
    if (authority_end == std::string_view::npos) authority_end = rest.size();
    t.authority = rest.substr(0, authority_end);
    if (size_t at = t.authority.rfind('@'); at != std::string_view::npos) {
      t.authority.remove_prefix(at + 1);
    }
    rest.remove_prefix(authority_end);
    // An empty path is "/" (RFC 9112 3.2.1); a query right after the
    // authority keeps its '?' ("http://a?x" -> "/?x", handled by the caller).
    t.path_and_query = rest.empty() ? std::string_view("/") : rest;
  }
  std::string_view pq = t.path_and_query;
  size_t q = pq.find_first_of("?#");
  t.path = q == std::string_view::npos ? pq : pq.substr(0, q);
  if (t.path.empty()) t.path = "/";
  return t;
}

std::string_view target_path(std::string_view target) { return split_target(target).path; }

std::string_view request_authority(const http::MessageHead& head) {
  RequestTarget t = split_target(head.target);
  return t.absolute ? t.authority : head.get("host");
}

Router::Router(const std::vector<conf::Route>& routes) {
  entries_.reserve(routes.size());
  for (size_t i = 0; i < routes.size(); ++i) {
    const conf::RouteMatch& m = routes[i].match;
    Entry e{HostKind::kAny, {}, m.path_prefix, m.methods, i};
    if (m.host == "*") {
      e.kind = HostKind::kAny;
    } else if (m.host.rfind("*.", 0) == 0) {
      e.kind = HostKind::kWildcard;
      e.host = m.host.substr(1);  // ".example.com"
    } else {
      e.kind = HostKind::kExact;
      e.host = m.host;
    }
    entries_.push_back(std::move(e));
  }
}

std::optional<size_t> Router::match(std::string_view host, std::string_view path,
                                    std::string_view method) const {
  const Entry* best = nullptr;
  // Rank: host kind, then wildcard suffix length, then prefix length; ties keep file order.
  auto rank = [](const Entry& e) {
    return std::make_tuple(static_cast<int>(e.kind), e.host.size(), e.prefix.size());
  };
  for (const Entry& e : entries_) {
    switch (e.kind) {
      case HostKind::kAny:
        break;
      case HostKind::kExact:
        if (host != e.host) continue;
        break;
      case HostKind::kWildcard:
        // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
        if (host.size() <= e.host.size() || host.substr(host.size() - e.host.size()) != e.host)
          continue;
        break;
    }
    if (path.substr(0, e.prefix.size()) != e.prefix) continue;
    if (!e.methods.empty() &&
        std::find(e.methods.begin(), e.methods.end(), method) == e.methods.end()) {
      continue;
    }
    if (best == nullptr || rank(e) > rank(*best)) best = &e;
  }
  if (best == nullptr) return std::nullopt;
  return best->index;
}

}  // namespace torii::gateway
