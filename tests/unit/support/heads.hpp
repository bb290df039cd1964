// Test helpers shared by the unit tests: parsing a message head from text,
// and reading the lines and header values of a serialised head.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1_parser.hpp"
#include "common/http_types.hpp"

namespace torii::test {

// A parsed head; the parser owns the storage its views point into.
struct Parsed {
  std::unique_ptr<http::Http1Parser> parser;
  const http::MessageHead& head() const { return parser->head(); }
};

// Parses `text` (a complete head); the test fails unless it is one.
// `no_body`: a response to HEAD (or a 304), whose framing fields describe no body.
inline Parsed parse_head(http::Http1Parser::Kind kind, std::string_view text,
                         bool no_body = false) {
  Parsed p{std::make_unique<http::Http1Parser>(kind, http::ParserLimits{})};
  p.parser->expect_no_body(no_body);
  const auto r = p.parser->feed(text.data(), text.size());
  INFO("message: " << std::string(text)
                   << " parser error: " << std::string(p.parser->error_reason()));
  REQUIRE(r.event == http::Http1Parser::Event::kHeadComplete);
  return p;
}

// Lines of a head, up to (without) the first empty line.
inline std::vector<std::string> head_lines(std::string_view head) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < head.size()) {
    const size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos || end == pos) break;
    out.emplace_back(head.substr(pos, end - pos));
    pos = end + 2;
  }
  return out;
}

// Values of every header line called `name` (case-insensitive), in order.
inline std::vector<std::string> header_values(std::string_view head, std::string_view name) {
  std::vector<std::string> out;
  const auto all = head_lines(head);
  for (size_t i = 1; i < all.size(); ++i) {
    const size_t colon = all[i].find(':');
    if (colon == std::string::npos) continue;
    if (http::iequals(std::string_view(all[i]).substr(0, colon), name)) {
      out.emplace_back(http::trim_ows(std::string_view(all[i]).substr(colon + 1)));
    }
  }
  return out;
}

}  // namespace torii::test
