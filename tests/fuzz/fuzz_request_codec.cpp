// libFuzzer target for the request path's pure code: Http1Parser (requests),
// check_request_head, build_upstream_request_head, build_client_response_head
// and build_local_reply.
//
// Input: byte 0 picks where the input is split in two; the two chunks are fed
// the way a connection feeds its read buffer (unparsed bytes stay, new bytes
// are appended; stop on error, go on after each complete message). Every
// head that comes out is rewritten both ways and the results are checked:
// the upstream must see exactly one well-formed head with the same body
// framing, and nothing hop-by-hop.
//
// Build: cmake -DTORII_FUZZ=ON with clang (tests/CMakeLists.txt).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/http1_parser.hpp"
#include "common/http_types.hpp"
#include "gateway/header_rewrite.hpp"
#include "gateway/local_reply.hpp"
#include "gateway/request_checks.hpp"

namespace {

using torii::Error;
using torii::gateway::ClientBodyMode;
using torii::gateway::ForwardContext;
using torii::http::BodyFraming;
using torii::http::Http1Parser;
using torii::http::iequals;
using torii::http::MessageHead;
using Event = Http1Parser::Event;

[[noreturn]] void fail(const char* what, std::string_view context) {
  std::fprintf(stderr, "invariant violated: %s\n--- context (%zu bytes) ---\n%.*s\n---\n", what,
               context.size(), static_cast<int>(context.size()), context.data());
  std::abort();
}

#define FUZZ_ASSERT(cond, context)       \
  do {                                   \
    if (!(cond)) fail(#cond, (context)); \
  } while (0)

torii::http::ParserLimits small_limits() {
  torii::http::ParserLimits l;
  l.max_request_line = 256;
  l.max_header_bytes = 1024;
  l.max_header_count = 16;
  l.max_body_bytes = 4096;
  return l;
}

struct Line {
  std::string_view name, value;  // name empty for the start line
};

// Splits a head into lines at CRLF; checks it ends with exactly one empty
// line and that no line holds a stray CR or LF.
std::vector<std::string_view> head_lines(std::string_view head) {
  FUZZ_ASSERT(head.size() >= 4 && head.substr(head.size() - 4) == "\r\n\r\n", head);
  FUZZ_ASSERT(head.find("\r\n\r\n") == head.size() - 4, head);
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < head.size() - 2) {
    const size_t end = head.find("\r\n", pos);
    const std::string_view line = head.substr(pos, end - pos);
    FUZZ_ASSERT(line.find('\r') == std::string_view::npos, head);
    FUZZ_ASSERT(line.find('\n') == std::string_view::npos, head);
    FUZZ_ASSERT(line.find('\0') == std::string_view::npos, head);
    lines.push_back(line);
    pos = end + 2;
  }
  FUZZ_ASSERT(!lines.empty(), head);
  return lines;
}

std::vector<Line> header_fields(std::string_view head) {
  const auto lines = head_lines(head);
  std::vector<Line> out;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view l = lines[i];
    const size_t colon = l.find(':');
    FUZZ_ASSERT(colon != std::string_view::npos, head);
    const std::string_view name = l.substr(0, colon);
    // A field name is a non-empty token (RFC 9110 5.1).
    FUZZ_ASSERT(!name.empty(), head);
    for (char c : name)
      FUZZ_ASSERT(torii::http::is_token_char(static_cast<unsigned char>(c)), head);
    FUZZ_ASSERT(l.size() >= colon + 2 && l[colon + 1] == ' ', head);
    out.push_back({name, l.substr(colon + 2)});
  }
  return out;
}

size_t count(const std::vector<Line>& fields, std::string_view name) {
  size_t n = 0;
  for (const Line& f : fields) n += iequals(f.name, name) ? 1 : 0;
  return n;
}

// Parses `text` as one message head; checks it is exactly that.
void reparse(Http1Parser& p, std::string_view text) {
  const auto r = p.feed(text.data(), text.size());
  FUZZ_ASSERT(r.event == Event::kHeadComplete, text);
  FUZZ_ASSERT(r.consumed == text.size(), text);
}

// A few fixed upstream responses, parsed once.
class Responses {
 public:
  Responses() {
    for (const char* text : {
             "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
             "Keep-Alive: timeout=5\r\nVia: 1.1 origin\r\nX-Request-Id: up\r\n\r\n",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n",
             "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n",
             "HTTP/1.1 204 No Content\r\nUpgrade: h2\r\n\r\n",
             "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n",
             "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
         }) {
      for (bool no_body : {false, true}) {
        auto p = std::make_unique<Http1Parser>(Http1Parser::Kind::kResponse,
                                               torii::http::ParserLimits{});
        p->expect_no_body(no_body);
        const std::string_view t(text);
        const auto r = p->feed(t.data(), t.size());
        if (r.event != Event::kHeadComplete) std::abort();
        (no_body ? for_head_ : for_get_).push_back(std::move(p));
      }
    }
  }
  const MessageHead& pick(size_t i, bool head_request) const {
    const auto& v = head_request ? for_head_ : for_get_;
    return v[i % v.size()]->head();
  }

 private:
  std::vector<std::unique_ptr<Http1Parser>> for_get_, for_head_;
};

void check_local_reply(Error e, bool head_request, bool close) {
  std::string out;
  torii::gateway::build_local_reply(e, "fuzz-id", head_request, close, !close, out);
  Http1Parser p(Http1Parser::Kind::kResponse, {});
  p.expect_no_body(head_request);
  auto r = p.feed(out.data(), out.size());
  FUZZ_ASSERT(r.event == Event::kHeadComplete, out);
  FUZZ_ASSERT(p.head().status >= 400 && p.head().status <= 599, out);
  const size_t off = r.consumed;
  r = p.feed(out.data() + off, out.size() - off);
  FUZZ_ASSERT(r.event == Event::kMessageComplete, out);
  FUZZ_ASSERT(off + r.consumed == out.size(), out);
}

void check_upstream_head(const MessageHead& req, const ForwardContext& ctx) {
  std::string out;
  torii::gateway::build_upstream_request_head(req, ctx, out);
  const auto fields = header_fields(out);
  const auto lines = head_lines(out);
  // Request line: method SP origin-form (or "*") SP HTTP/1.1.
  const std::string_view start = lines[0];
  FUZZ_ASSERT(start.substr(0, req.method.size()) == req.method, out);
  FUZZ_ASSERT(start.size() > req.method.size() + 10, out);
  FUZZ_ASSERT(start.substr(start.size() - 9) == " HTTP/1.1", out);
  const std::string_view target =
      start.substr(req.method.size() + 1, start.size() - req.method.size() - 10);
  FUZZ_ASSERT(target == "*" || (!target.empty() && target.front() == '/'), out);
  FUZZ_ASSERT(target.find(' ') == std::string_view::npos, out);

  // Nothing hop-by-hop, no Connection header, framing stated at most once.
  for (const Line& f : fields) {
    FUZZ_ASSERT(!iequals(f.name, "connection"), out);
    FUZZ_ASSERT(!torii::http::is_hop_by_hop(f.name) || iequals(f.name, "transfer-encoding"), out);
    FUZZ_ASSERT(!iequals(f.name, "expect"), out);
  }
  FUZZ_ASSERT(count(fields, "transfer-encoding") <= 1, out);
  FUZZ_ASSERT(count(fields, "content-length") <= 1, out);
  FUZZ_ASSERT(count(fields, "transfer-encoding") + count(fields, "content-length") <= 1, out);
  FUZZ_ASSERT(count(fields, "host") == 1, out);
  FUZZ_ASSERT(count(fields, "x-forwarded-for") == 1, out);
  FUZZ_ASSERT(count(fields, "x-forwarded-proto") == 1, out);
  FUZZ_ASSERT(count(fields, "x-forwarded-host") <= 1, out);
  FUZZ_ASSERT(count(fields, "via") == 1, out);
  FUZZ_ASSERT(count(fields, "x-request-id") == 1, out);

  // The upstream reads the same head and the same body framing as we did.
  Http1Parser p(Http1Parser::Kind::kRequest, {});
  reparse(p, out);
  const MessageHead& up = p.head();
  FUZZ_ASSERT(up.method == req.method, out);
  FUZZ_ASSERT(up.target == target, out);
  FUZZ_ASSERT(up.host_count == 1, out);
  FUZZ_ASSERT(up.content_length_count <= 1, out);
  FUZZ_ASSERT(torii::gateway::check_request_head(up).error == Error::kNone, out);
  FUZZ_ASSERT(up.framing == req.framing, out);
  if (req.framing == BodyFraming::kContentLength)
    FUZZ_ASSERT(up.content_length == req.content_length, out);
  FUZZ_ASSERT(up.keep_alive, out);  // the upstream connection is reusable
}

void check_client_head(const MessageHead& resp, const MessageHead& req, const ForwardContext& ctx,
                       bool want_close) {
  std::string out;
  const auto plan = torii::gateway::build_client_response_head(resp, req, ctx, want_close, out);
  const auto fields = header_fields(out);
  FUZZ_ASSERT(head_lines(out)[0].substr(0, 9) == "HTTP/1.1 ", out);
  const bool head_request = req.method == "HEAD";
  Http1Parser p(Http1Parser::Kind::kResponse, {});
  p.expect_no_body(head_request);
  reparse(p, out);
  FUZZ_ASSERT(p.head().status == resp.status, out);

  FUZZ_ASSERT(count(fields, "connection") <= 1, out);
  for (const Line& f : fields) {
    if (iequals(f.name, "connection"))
      FUZZ_ASSERT(f.value == "close" || f.value == "keep-alive", out);
    if (!iequals(f.name, "connection") && !iequals(f.name, "transfer-encoding")) {
      FUZZ_ASSERT(!torii::http::is_hop_by_hop(f.name), out);
    }
  }
  FUZZ_ASSERT(count(fields, "transfer-encoding") <= 1, out);
  FUZZ_ASSERT(count(fields, "content-length") <= 1, out);
  FUZZ_ASSERT(count(fields, "via") == 1, out);
  FUZZ_ASSERT(count(fields, "x-request-id") == 1, out);
  if (plan.close_after) FUZZ_ASSERT(count(fields, "connection") == 1, out);
  if (want_close || !req.keep_alive) FUZZ_ASSERT(plan.close_after, out);
  if (plan.mode == ClientBodyMode::kIdentity && count(fields, "content-length") == 0)
    FUZZ_ASSERT(plan.close_after, out);
  if (plan.mode == ClientBodyMode::kChunked)
    FUZZ_ASSERT(count(fields, "transfer-encoding") == 1, out);
  if (req.is_http10()) FUZZ_ASSERT(count(fields, "transfer-encoding") == 0, out);
  if (head_request) FUZZ_ASSERT(plan.mode == ClientBodyMode::kNone, out);
  // A kept-alive connection needs a delimited response: the client must
  // not read until close.
  if (!plan.close_after && !head_request && resp.status >= 200 && resp.status != 204 &&
      resp.status != 304) {
    FUZZ_ASSERT(count(fields, "transfer-encoding") + count(fields, "content-length") == 1, out);
  }
}

// `variant` picks the upstream response and whether the gateway wants to close.
void on_head(const MessageHead& req, size_t variant, const Responses& responses) {
  // What the parser hands over is internally consistent.
  if (req.framing == BodyFraming::kContentLength) FUZZ_ASSERT(req.content_length > 0, req.target);
  if (req.framing == BodyFraming::kChunked) FUZZ_ASSERT(req.has_transfer_encoding, req.target);
  FUZZ_ASSERT(req.framing != BodyFraming::kUntilClose, req.target);
  FUZZ_ASSERT(req.target.size() <= 256, req.target);
  FUZZ_ASSERT(req.headers.size() <= 16, req.target);
  for (const auto& h : req.headers) {
    FUZZ_ASSERT(h.value.find_first_of("\r\n") == std::string_view::npos, h.value);
    FUZZ_ASSERT(h.value == torii::http::trim_ows(h.value), h.value);
  }

  const auto check = torii::gateway::check_request_head(req);
  const bool head_request = req.method == "HEAD";
  if (check.error != Error::kNone) {
    FUZZ_ASSERT(!check.reason.empty(), req.target);
    check_local_reply(check.error, head_request, true);
    return;
  }
  const std::string_view client_id = req.get("x-request-id");
  ForwardContext ctx;
  ctx.client_ip = "192.0.2.1";
  ctx.request_id = torii::gateway::is_sane_request_id(client_id) ? client_id : "fuzz-id";
  ctx.upstream_authority = "upstream.test:8080";
  check_upstream_head(req, ctx);
  check_client_head(responses.pick(variant, head_request), req, ctx, (variant / 8) % 2 != 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Responses responses;
  if (size == 0) return 0;
  // The first byte also belongs to the input, so plain requests work as seeds.
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = data[0] % (size + 1);
  const std::string_view chunks[2] = {input.substr(0, split), input.substr(split)};

  Http1Parser parser(Http1Parser::Kind::kRequest, small_limits());
  std::string buf;  // the connection's read buffer: unparsed bytes, then new ones
  size_t messages = 0;
  bool in_message = false;
  for (std::string_view chunk : chunks) {
    buf.append(chunk);
    for (int guard = 0;; ++guard) {
      FUZZ_ASSERT(guard < 100000, buf);
      const auto r = parser.feed(buf.data(), buf.size());
      FUZZ_ASSERT(r.consumed <= buf.size(), buf);
      if (!r.body.empty()) {
        FUZZ_ASSERT(r.body.data() == buf.data() && r.body.size() == r.consumed, buf);
        FUZZ_ASSERT(in_message, buf);
      }
      switch (r.event) {
        case Event::kNeedMore:
          FUZZ_ASSERT(r.consumed == buf.size(), buf);
          break;
        case Event::kHeadComplete:
          FUZZ_ASSERT(!in_message, buf);
          in_message = true;
          on_head(parser.head(), messages + size, responses);
          break;
        case Event::kBody:
          FUZZ_ASSERT(r.consumed > 0, buf);
          FUZZ_ASSERT(parser.body_bytes() <= 4096, buf);
          break;
        case Event::kMessageComplete:
          FUZZ_ASSERT(in_message, buf);
          FUZZ_ASSERT(parser.idle(), buf);
          if (parser.head().framing == BodyFraming::kContentLength) {
            FUZZ_ASSERT(parser.body_bytes() == parser.head().content_length, buf);
          }
          in_message = false;
          ++messages;
          break;
        case Event::kError:
          FUZZ_ASSERT(parser.error() != Error::kNone, buf);
          FUZZ_ASSERT(!parser.error_reason().empty(), buf);
          FUZZ_ASSERT(torii::error_status(parser.error()) >= 400, buf);
          check_local_reply(parser.error(), false, true);
          FUZZ_ASSERT(parser.finish() == Event::kError, buf);
          return 0;
      }
      buf.erase(0, r.consumed);
      if (r.event == Event::kNeedMore) break;
      if (buf.empty() && r.event != Event::kHeadComplete) break;
    }
  }
  const Event end = parser.finish();
  FUZZ_ASSERT(end == (in_message || !parser.idle() ? Event::kError : Event::kNeedMore), buf);
  return 0;
}
