// Route selection (pure): host (exact > longest wildcard suffix > "*"),
// then the longest path prefix, then file order; optional method filter.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"

namespace torii::gateway {

// Lower-cases and strips the port and a trailing dot from a Host value.
std::string normalize_host(std::string_view host);
// The path part of a request-target (origin-form or absolute-form), without the query.
std::string_view target_path(std::string_view target);

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
