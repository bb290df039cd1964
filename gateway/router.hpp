// Route selection (pure): host (exact > longest wildcard suffix > "*"),
// then the longest path prefix, then file order; optional method filter.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1_parser.hpp"
#include "conf/config.hpp"

namespace torii::gateway {

// Lower-cases and strips the port and a trailing dot from a Host value.
std::string normalize_host(std::string_view host);

// A request-target split into its parts (RFC 9112 3.2). For origin-form
// ("/p?q") the authority is empty; for absolute-form
// ("http://a.example:8080/p?q") it is "a.example:8080" (userinfo dropped).
struct RequestTarget {
  std::string_view authority;
  std::string_view path_and_query;  // "/" when the absolute-form has an empty path
  std::string_view path;            // path_and_query up to '?' or '#'
  bool absolute = false;
};
RequestTarget split_target(std::string_view target);
// The path part of a request-target, without the query.
std::string_view target_path(std::string_view target);
// The host a request is for: the authority of an absolute-form target,
// else the Host header (RFC 9112 3.2.2).
std::string_view request_authority(const http::MessageHead& head);

class Router {
 public:
  explicit Router(const std::vector<conf::Route>& routes);
  // Index into the route list, or nullopt when nothing matches (404).
  std::optional<size_t> match(std::string_view host, std::string_view path,
                              std::string_view method) const;

 private:
  enum class HostKind : uint8_t { kAny, kWildcard, kExact };
  struct Entry {
    HostKind kind;
    std::string host;  // exact name, or the suffix ".example.com" for wildcards
    std::string prefix;
    std::vector<std::string> methods;
    size_t index;
  };
  std::vector<Entry> entries_;
};

}  // namespace torii::gateway
