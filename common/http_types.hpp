// HTTP/1.1 vocabulary shared by the client front and the upstream side.
// Pure code: no I/O.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace torii::http {

struct Header {
  std::string_view name;
  std::string_view value;
};
using HeaderList = std::vector<Header>;

// ASCII case-insensitive comparison (header names, tokens).
bool iequals(std::string_view a, std::string_view b);
std::string_view trim_ows(std::string_view s);

// Calls fn(token) for every element of a comma-separated list (Connection,
// Transfer-Encoding, ...), trimmed, empty elements skipped.
template <typename Fn>
void for_each_list_token(std::string_view list, Fn&& fn) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view token = trim_ows(list.substr(start, comma - start));
    if (!token.empty()) fn(token);
    start = comma + 1;
  }
}

// True for a header RFC 9110 7.6.1 calls hop-by-hop (never forwarded).
bool is_hop_by_hop(std::string_view name);

// RFC 9110 9.2.2: methods a proxy may replay after a connection failure.
bool is_idempotent_method(std::string_view method);

std::string_view reason_phrase(int status);

// RFC 9110 5.6.2 token characters.
bool is_token_char(unsigned char c);

}  // namespace torii::http
