// Unit tests for common/http1_parser: the sans-I/O HTTP/1.1 parser.
//
// Most inputs go through drive_all(), which feeds them whole, byte by byte and
// split in two at every offset, the way a connection does (unparsed bytes stay
// in the buffer, new bytes are appended), and checks that the three give the
// same events (with stream offsets), heads and body bytes.
#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1_parser.hpp"
#include "gateway/request_checks.hpp"

namespace {

using torii::Error;
using torii::http::BodyFraming;
using torii::http::Http1Parser;
using torii::http::MessageHead;
using torii::http::ParserLimits;
using Event = Http1Parser::Event;
using Kind = Http1Parser::Kind;

std::string escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      static const char* kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

const char* framing_name(BodyFraming f) {
  switch (f) {
    case BodyFraming::kNone:
      return "none";
    case BodyFraming::kContentLength:
      return "content-length";
    case BodyFraming::kChunked:
      return "chunked";
    case BodyFraming::kUntilClose:
      return "until-close";
  }
  return "?";
}

// An owning copy of a MessageHead.
struct HeadSnap {
  std::string method, target, reason;
  int status = 0;
  int major = 0, minor = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  bool keep_alive = false;
  bool has_te = false;
  int host_count = 0;
  int content_length_count = 0;

  explicit HeadSnap(const MessageHead& h)
      : method(h.method),
        target(h.target),
        reason(h.reason),
        status(h.status),
        major(h.version_major),
        minor(h.version_minor),
        framing(h.framing),
        content_length(h.content_length),
        keep_alive(h.keep_alive),
        has_te(h.has_transfer_encoding),
        host_count(h.host_count),
        content_length_count(h.content_length_count) {
    for (const auto& hd : h.headers) headers.emplace_back(hd.name, hd.value);
  }
  std::string value(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (torii::http::iequals(n, name)) return v;
    }
    return {};
  }
  std::string describe() const {
    std::string s = method + " " + escape(target) + " HTTP/" + std::to_string(major) + "." +
                    std::to_string(minor) + " status=" + std::to_string(status) + " reason='" +
                    escape(reason) + "' framing=" + framing_name(framing) +
                    " cl=" + std::to_string(content_length) + " ka=" + std::to_string(keep_alive) +
                    " te=" + std::to_string(has_te) + " hosts=" + std::to_string(host_count) +
                    " cls=" + std::to_string(content_length_count) + " headers=";
    for (const auto& [n, v] : headers) s += "[" + escape(n) + ": " + escape(v) + "]";
    return s;
  }
};

struct Outcome {
  // "H@<stream offset after the head>", "C@<offset after the message>",
  // "E:<error>", "F:<finish() event>"
  std::vector<std::string> events;
  std::vector<HeadSnap> heads;
  std::vector<std::string> bodies;   // raw wire body bytes of each completed message
  std::vector<std::string> decoded;  // decoded body bytes of each completed message
  Error error = Error::kNone;

  std::string seq() const {
    std::string s;
    for (const auto& e : events) s += (s.empty() ? "" : " ") + e;
    return s;
  }
  std::string describe() const {
    std::string s = "events:";
    for (const auto& e : events) s += " " + e;
    s += "\nerror: " + std::string(torii::error_name(error));
    for (size_t i = 0; i < heads.size(); ++i)
      s += "\nhead[" + std::to_string(i) + "]: " + heads[i].describe();
    for (size_t i = 0; i < bodies.size(); ++i)
      s += "\nbody[" + std::to_string(i) + "]: " + escape(bodies[i]);
    for (size_t i = 0; i < decoded.size(); ++i) {
      s += "\ndecoded[" + std::to_string(i) + "]: " + escape(decoded[i]);
    }
    return s;
  }
};

struct DriveOptions {
  Kind kind = Kind::kRequest;
  ParserLimits limits{};
  bool finish_at_eof = false;               // call finish() after the last chunk (peer closed)
  std::function<void(Http1Parser&)> setup;  // before the first byte
  std::function<void(Http1Parser&, size_t completed)> on_complete;  // after each message
};

// Drives a parser over `chunks` like a connection: appends each chunk to the
// unparsed bytes, feeds until the parser wants more, stops on an error.
Outcome drive(const std::vector<std::string_view>& chunks, const DriveOptions& opt) {
  Outcome out;
  Http1Parser p(opt.kind, opt.limits);
  if (opt.setup) opt.setup(p);
  std::string buf;
  uint64_t offset = 0;  // stream bytes consumed so far
  std::string body, decoded;
  bool in_message = false;
  auto complete = [&] {
    // The head stays readable until the next message starts.
    const bool head_kept = HeadSnap(p.head()).describe() == out.heads.back().describe();
    out.events.push_back("C@" + std::to_string(offset) + (head_kept ? "" : "(head changed)"));
    out.bodies.push_back(body);
    out.decoded.push_back(decoded);
    body.clear();
    decoded.clear();
    in_message = false;
    if (opt.on_complete) opt.on_complete(p, out.bodies.size());
  };
  for (std::string_view chunk : chunks) {
    buf.append(chunk);
    for (int guard = 0;; ++guard) {
      REQUIRE(guard < 100000);
      const Http1Parser::Result r = p.feed(buf.data(), buf.size());
      REQUIRE(r.consumed <= buf.size());
      if (!r.body.empty()) {
        // The body is the raw span of the input that was consumed.
        CHECK(r.body.data() == buf.data());
        CHECK(r.body.size() == r.consumed);
        body.append(r.body);
      }
      for (std::string_view d : p.decoded()) decoded.append(d);
      const bool more_input = r.consumed < buf.size();
      offset += r.consumed;
      buf.erase(0, r.consumed);
      switch (r.event) {
        case Event::kNeedMore:
          CHECK_FALSE(more_input);  // kNeedMore means everything was consumed
          break;
        case Event::kHeadComplete:
          CHECK(r.body.empty());
          out.events.push_back("H@" + std::to_string(offset));
          out.heads.emplace_back(p.head());
          in_message = true;
          break;
        case Event::kBody:
          CHECK(in_message);
          CHECK(r.consumed > 0);
          break;
        case Event::kMessageComplete:
          REQUIRE(in_message);
          complete();
          break;
        case Event::kError:
          CHECK(r.consumed == 0);
          out.events.push_back("E:" + std::string(torii::error_name(p.error())));
          out.error = p.error();
          CHECK(p.error() != Error::kNone);
          CHECK_FALSE(p.error_reason().empty());
          // Once failed, the parser stays failed.
          CHECK(p.feed(buf.data(), buf.size()).event == Event::kError);
          CHECK(p.finish() == Event::kError);
          return out;
      }
      if (r.event == Event::kNeedMore) break;
      if (buf.empty() && r.event != Event::kHeadComplete) break;
    }
  }
  if (opt.finish_at_eof) {
    const Event e = p.finish();
    switch (e) {
      case Event::kMessageComplete:
        REQUIRE(in_message);
        complete();
        out.events.push_back("F:complete");
        break;
      case Event::kError:
        out.events.push_back("F:error:" + std::string(torii::error_name(p.error())));
        out.error = p.error();
        break;
      case Event::kNeedMore:
        out.events.push_back("F:idle");
        break;
      default:
        FAIL("finish() returned an unexpected event");
    }
  }
  return out;
}

// Feeds `input` whole, byte by byte and split at every offset; checks all
// ways agree and returns the outcome of the whole feed.
Outcome drive_all(std::string_view input, const DriveOptions& opt = {}) {
  INFO("input: " << escape(input.substr(0, 400)) << (input.size() > 400 ? "..." : ""));
  const Outcome whole = drive({input}, opt);
  const std::string expected = whole.describe();
  {
    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < input.size(); ++i) bytes.push_back(input.substr(i, 1));
    const std::string got = drive(bytes, opt).describe();
    CHECK_MESSAGE(got == expected, "byte by byte:\n" << got << "\nwhole:\n" << expected);
  }
  for (size_t i = 0; i <= input.size(); ++i) {
    const std::string got = drive({input.substr(0, i), input.substr(i)}, opt).describe();
    CHECK_MESSAGE(got == expected, "split at " << i << ":\n" << got << "\nwhole:\n" << expected);
    if (got != expected) break;  // one report per input is enough
  }
  return whole;
}

Outcome drive_response(std::string_view input, DriveOptions opt = {}) {
  opt.kind = Kind::kResponse;
  return drive_all(input, opt);
}

std::string str(size_t n) { return std::to_string(n); }

// Events of a request (or response) stream made of complete messages.
std::string complete_events(const std::vector<std::pair<size_t, size_t>>& head_and_end) {
  std::string ev;
  for (auto [head_end, msg_end] : head_and_end) {
    ev += (ev.empty() ? "H@" : " H@") + str(head_end) + " C@" + str(msg_end);
  }
  return ev;
}

}  // namespace

TEST_SUITE("http1_parser") {
  // ---------------------------------------------------------------------------
  // Requests
  // ---------------------------------------------------------------------------

  TEST_CASE("simple GET") {
    const std::string in =
        "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n";
    const Outcome o = drive_all(in);
    CHECK(o.seq() == complete_events({{in.size(), in.size()}}));
    REQUIRE(o.heads.size() == 1);
    const HeadSnap& h = o.heads[0];
    CHECK(h.method == "GET");
    CHECK(h.target == "/a/b?x=1&y=2");
    CHECK(h.major == 1);
    CHECK(h.minor == 1);
    CHECK(h.status == 0);
    CHECK(h.framing == BodyFraming::kNone);
    CHECK(h.keep_alive);
    CHECK_FALSE(h.has_te);
    CHECK(h.host_count == 1);
    CHECK(h.content_length_count == 0);
    REQUIRE(h.headers.size() == 2);
    CHECK(h.headers[0] == std::pair<std::string, std::string>("Host", "example.com"));
    CHECK(h.headers[1] == std::pair<std::string, std::string>("User-Agent", "t/1"));
    CHECK(o.bodies == std::vector<std::string>{""});
  }

  TEST_CASE("header values are trimmed of OWS; names keep their case; get() ignores case") {
    const std::string in =
        "GET / HTTP/1.1\r\nHost:example.com\r\nX-A: \t spaced \t \r\nX-Empty:\r\nX-Empty2:   "
        "\r\n\r\n";
    const Outcome o = drive_all(in);
    REQUIRE(o.heads.size() == 1);
    const HeadSnap& h = o.heads[0];
    REQUIRE(h.headers.size() == 4);
    CHECK(h.headers[0].second == "example.com");
    CHECK(h.headers[1] == std::pair<std::string, std::string>("X-A", "spaced"));
    CHECK(h.headers[2] == std::pair<std::string, std::string>("X-Empty", ""));
    CHECK(h.headers[3] == std::pair<std::string, std::string>("X-Empty2", ""));

    Http1Parser p(Kind::kRequest, {});
    REQUIRE(p.feed(in.data(), in.size()).event == Event::kHeadComplete);
    CHECK(p.head().get("x-a") == "spaced");
    CHECK(p.head().get("HOST") == "example.com");
    CHECK(p.head().get("x-missing").empty());
  }

  TEST_CASE("methods and targets") {
    struct Case {
      const char* request_line;
      const char* method;
      const char* target;
    };
    const Case cases[] = {
        {"GET / HTTP/1.1", "GET", "/"},
        {"HEAD /x HTTP/1.1", "HEAD", "/x"},
        {"DELETE /r/1 HTTP/1.1", "DELETE", "/r/1"},
        {"OPTIONS * HTTP/1.1", "OPTIONS", "*"},
        {"GET http://example.com/p?q#f HTTP/1.1", "GET", "http://example.com/p?q#f"},
        {"PATCH /%41%20b HTTP/1.1", "PATCH", "/%41%20b"},
    };
    for (const Case& c : cases) {
      INFO("request line: " << std::string(c.request_line));
      const std::string in = std::string(c.request_line) + "\r\nHost: h\r\n\r\n";
      const Outcome o = drive_all(in);
      REQUIRE(o.heads.size() == 1);
      CHECK(o.heads[0].method == c.method);
      CHECK(o.heads[0].target == c.target);
      CHECK(o.seq() == complete_events({{in.size(), in.size()}}));
    }
  }

  TEST_CASE("a declined upgrade: the next request on the connection is HTTP again") {
    const std::string r1 =
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    const std::string r2 = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    for (const bool together : {true, false}) {
      CAPTURE(together);
      Http1Parser p(Kind::kRequest, {});
      std::string buffer = together ? r1 + r2 : r1;
      const char* d = buffer.data();
      size_t left = buffer.size();
      auto feed = [&] {
        auto r = p.feed(d, left);
        d += r.consumed;
        left -= r.consumed;
        return r;
      };
      auto r = feed();
      CHECK(r.event == Event::kHeadComplete);
      CHECK(p.head().get("upgrade") == "websocket");
      CHECK(feed().event == Event::kMessageComplete);
      if (!together) {
        buffer = r2;
        d = buffer.data();
        left = buffer.size();
      }
      r = feed();
      REQUIRE(r.event == Event::kHeadComplete);
      CHECK(p.head().target == "/next");
      CHECK(feed().event == Event::kMessageComplete);
    }
  }

  TEST_CASE("pipelined requests: each feed stops at the end of a message") {
    const std::string r1 = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string r2_head = "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
    const std::string r2 = r2_head + "hello";
    const std::string r3_head =
        "PUT /three HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string r3_body = "3\r\nabc\r\n0\r\n\r\n";
    const std::string r4 = "GET /four HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string all = r1 + r2 + r3_head + r3_body + r4;

    SUBCASE("raw feed() results") {
      Http1Parser p(Kind::kRequest, {});
      CHECK(p.idle());
      const char* d = all.data();
      size_t left = all.size();
      auto feed = [&] {
        auto r = p.feed(d, left);
        d += r.consumed;
        left -= r.consumed;
        return r;
      };
      auto r = feed();
      CHECK(r.event == Event::kHeadComplete);
      CHECK(r.consumed == r1.size());
      CHECK(p.head().target == "/one");
      r = feed();
      CHECK(r.event == Event::kMessageComplete);
      CHECK(r.consumed == 0);
      CHECK(r.body.empty());
      CHECK(p.idle());

      r = feed();
      CHECK(r.event == Event::kHeadComplete);
      CHECK(r.consumed == r2_head.size());
      CHECK(p.head().target == "/two");
      CHECK(p.in_body());
      r = feed();
      CHECK(r.event == Event::kMessageComplete);
      CHECK(r.consumed == 5);
      CHECK(r.body == "hello");
      CHECK(p.body_bytes() == 5);
      CHECK(p.idle());

      r = feed();
      CHECK(r.event == Event::kHeadComplete);
      CHECK(r.consumed == r3_head.size());
      r = feed();
      CHECK(r.event == Event::kMessageComplete);
      CHECK(r.consumed == r3_body.size());
      CHECK(r.body == r3_body);
      CHECK(p.body_bytes() == 3);

      r = feed();
      CHECK(r.event == Event::kHeadComplete);
      CHECK(r.consumed == r4.size());
      CHECK(p.head().target == "/four");
      r = feed();
      CHECK(r.event == Event::kMessageComplete);
      CHECK(left == 0);
      r = feed();
      CHECK(r.event == Event::kNeedMore);
      CHECK(r.consumed == 0);
      CHECK(p.idle());
      CHECK(p.finish() == Event::kNeedMore);  // closing between messages is fine
    }

    SUBCASE("all feeding patterns") {
      const Outcome o = drive_all(all);
      const size_t e1 = r1.size(), h2 = e1 + r2_head.size(), e2 = e1 + r2.size(),
                   h3 = e2 + r3_head.size(), e3 = h3 + r3_body.size(), e4 = e3 + r4.size();
      CHECK(o.seq() == complete_events({{e1, e1}, {h2, e2}, {h3, e3}, {e4, e4}}));
      REQUIRE(o.heads.size() == 4);
      CHECK(o.heads[0].target == "/one");
      CHECK(o.heads[1].target == "/two");
      CHECK(o.heads[2].target == "/three");
      CHECK(o.heads[3].target == "/four");
      CHECK(o.bodies == std::vector<std::string>{"", "hello", r3_body, ""});
    }
  }

  TEST_CASE("Content-Length body") {
    const std::string head = "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    const std::string in = head + "hello world";
    const Outcome o = drive_all(in);
    CHECK(o.seq() == complete_events({{head.size(), in.size()}}));
    REQUIRE(o.heads.size() == 1);
    CHECK(o.heads[0].framing == BodyFraming::kContentLength);
    CHECK(o.heads[0].content_length == 11);
    CHECK(o.heads[0].content_length_count == 1);
    CHECK_FALSE(o.heads[0].has_te);
    CHECK(o.bodies == std::vector<std::string>{"hello world"});
  }

  TEST_CASE("Content-Length: 0 means no body") {
    const std::string in =
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    const size_t first = in.find("GET");
    const Outcome o = drive_all(in);
    CHECK(o.seq() == complete_events({{first, first}, {in.size(), in.size()}}));
    REQUIRE(o.heads.size() == 2);
    CHECK(o.heads[0].framing == BodyFraming::kNone);
    CHECK(o.heads[0].content_length_count == 1);
  }

  TEST_CASE("a body is not read past its end while the head is pending") {
    // Body bytes arriving with the head are left in the caller's buffer.
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
    const std::string in = head + "abcGET";
    Http1Parser p(Kind::kRequest, {});
    auto r = p.feed(in.data(), in.size());
    CHECK(r.event == Event::kHeadComplete);
    CHECK(r.consumed == head.size());
    r = p.feed(in.data() + head.size(), in.size() - head.size());
    CHECK(r.event == Event::kMessageComplete);
    CHECK(r.consumed == 3);
    CHECK(r.body == "abc");
  }

  TEST_CASE("chunked body: the raw bytes keep the chunk framing") {
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string body = "5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    const std::string in = head + body;
    const Outcome o = drive_all(in);
    CHECK(o.seq() == complete_events({{head.size(), in.size()}}));
    REQUIRE(o.heads.size() == 1);
    CHECK(o.heads[0].framing == BodyFraming::kChunked);
    CHECK(o.heads[0].has_te);
    CHECK(o.heads[0].content_length_count == 0);
    CHECK(o.bodies == std::vector<std::string>{body});
  }

  TEST_CASE("chunked body with an empty last chunk only") {
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string in = head + "0\r\n\r\n";
    const Outcome o = drive_all(in);
    CHECK(o.seq() == complete_events({{head.size(), in.size()}}));
    CHECK(o.bodies == std::vector<std::string>{"0\r\n\r\n"});
  }

  TEST_CASE("chunk extensions are accepted and forwarded raw") {
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string body = "5;name=value\r\nhello\r\n3;a;b=c\r\nxyz\r\n0;last\r\n\r\n";
    const std::string in = head + body;
    const Outcome o = drive_all(in);
    CHECK(o.seq() == complete_events({{head.size(), in.size()}}));
    CHECK(o.bodies == std::vector<std::string>{body});
  }

  TEST_CASE("trailers are part of the raw body and leave the head intact") {
    const std::string head =
        "POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n";
    // A long trailer section makes the parser's header storage grow.
    std::string trailers;
    for (int i = 0; i < 20; ++i)
      trailers += "X-Trailer-" + std::to_string(i) + ": " + std::string(100, 'v') + "\r\n";
    const std::string body = "4\r\nabcd\r\n0\r\nX-Sum: 42\r\n" + trailers + "\r\n";
    const std::string next = "GET /after HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string in = head + body + next;
    const Outcome o = drive_all(in);
    const size_t e1 = head.size() + body.size();
    CHECK(o.seq() == complete_events({{head.size(), e1}, {in.size(), in.size()}}));
    REQUIRE(o.heads.size() == 2);
    CHECK(o.heads[0].target == "/t");
    CHECK(o.heads[0].headers.size() == 3);
    CHECK(o.heads[1].target == "/after");
    REQUIRE(o.bodies.size() == 2);
    CHECK(o.bodies[0] == body);
  }

  TEST_CASE("HTTP/1.0 requests") {
    SUBCASE("no Host, not keep-alive") {
      const std::string in = "GET / HTTP/1.0\r\n\r\n";
      const Outcome o = drive_all(in);
      CHECK(o.seq() == complete_events({{in.size(), in.size()}}));
      REQUIRE(o.heads.size() == 1);
      CHECK(o.heads[0].major == 1);
      CHECK(o.heads[0].minor == 0);
      CHECK_FALSE(o.heads[0].keep_alive);
      CHECK(o.heads[0].host_count == 0);
    }
    SUBCASE("Connection: keep-alive") {
      const std::string r1 = "GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
      const std::string r2 =
          "POST /2 HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok";
      const std::string in = r1 + r2;
      const Outcome o = drive_all(in);
      CHECK(o.seq() == complete_events({{r1.size(), r1.size()}, {in.size() - 2, in.size()}}));
      REQUIRE(o.heads.size() == 2);
      CHECK(o.heads[0].keep_alive);
      CHECK(o.heads[1].keep_alive);
      CHECK(o.bodies == std::vector<std::string>{"", "ok"});
    }
  }

  TEST_CASE("Connection: close on HTTP/1.1") {
    const std::string in = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    const Outcome o = drive_all(in);
    REQUIRE(o.heads.size() == 1);
    CHECK_FALSE(o.heads[0].keep_alive);
  }

  TEST_CASE("duplicate Host headers are counted") {
    const std::string in = "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n";
    const Outcome o = drive_all(in);
    REQUIRE(o.heads.size() == 1);
    CHECK(o.heads[0].host_count == 2);
  }

  TEST_CASE("request versions other than HTTP/1.0 and HTTP/1.1 are refused") {
    // RFC 9112 2.3 / RFC 9110 15.6.6: a major version we do not speak gets
    // 505; anything that is not an HTTP-version at all may get 400 instead.
    struct Case {
      const char* name;
      std::string input;
      bool only_505;
    };
    const Case cases[] = {
        {"HTTP/3.0", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", true},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", true},
        {"HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", false},
        {"no version (HTTP/0.9 simple request)", "GET /\r\nHost: h\r\n\r\n", false},
        {"HTTP/1.1 followed by a space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", false},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      const Outcome o = drive_all(c.input);
      INFO("events: " << o.seq());
      if (c.only_505) {
        CHECK(o.seq() == "E:VersionNotSupported");
      } else {
        CHECK((o.seq() == "E:VersionNotSupported" || o.seq() == "E:BadRequest"));
      }
    }
  }

  // What the gateway answers to the first request of `input`: the parser's
  // error, or else the verdict of check_request_head() on the parsed head.
  Error gateway_verdict(std::string_view input) {
    Http1Parser p(Kind::kRequest, {});
    const Http1Parser::Result r = p.feed(input.data(), input.size());
    if (r.event == Event::kError) return p.error();
    REQUIRE(r.event == Event::kHeadComplete);
    return torii::gateway::check_request_head(p.head()).error;
  }

  TEST_CASE("request smuggling shapes are refused with 400") {
    struct Case {
      const char* name;
      std::string input;
    };
    const std::string pre = "POST / HTTP/1.1\r\nHost: h\r\n";
    const Case cases[] = {
        {"CL then TE", pre + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"TE then CL", pre + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
        {"duplicate CL, same value", pre + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
        {"conflicting CL", pre + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
        {"CL list", pre + "Content-Length: 5, 5\r\n\r\nhello"},
        {"CL sign", pre + "Content-Length: +5\r\n\r\nhello"},
        {"CL negative", pre + "Content-Length: -1\r\n\r\n"},
        {"CL hex", pre + "Content-Length: 0x5\r\n\r\nhello"},
        {"CL overflow", pre + "Content-Length: 99999999999999999999999\r\n\r\n"},
        {"TE gzip", pre + "Transfer-Encoding: gzip\r\n\r\nhello"},
        {"TE xchunked", pre + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
        {"TE chunked, gzip", pre + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"},
        {"TE chunked twice",
         pre + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"TE with space before colon", pre + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
        {"Host with space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n"},
        {"tab before colon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"},
        {"space in header name", "GET / HTTP/1.1\r\nHost: h\r\nX Y: 1\r\n\r\n"},
        {"@ in header name", "GET / HTTP/1.1\r\nHost: h\r\nX@Y: 1\r\n\r\n"},
        {"( in header name", "GET / HTTP/1.1\r\nHost: h\r\n(X): 1\r\n\r\n"},
        {"control char in header name", "GET / HTTP/1.1\r\nHost: h\r\nX\x01Y: 1\r\n\r\n"},
        {"empty header name", "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"},
        {"empty header name first", "GET / HTTP/1.1\r\n: v\r\nHost: h\r\n\r\n"},
        {"header line without colon", "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"},
        {"whitespace before the first header", "GET / HTTP/1.1\r\n Host: h\r\n\r\n"},
        {"bare LF line ends", "GET / HTTP/1.1\nHost: h\n\n"},
        {"bare LF after the request line", "GET / HTTP/1.1\nHost: h\r\n\r\n"},
        {"bare LF after a header", "GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\r\n"},
        {"bare LF ending the head", "GET / HTTP/1.1\r\nHost: h\r\n\n"},
        {"bare CR in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"},
        {"NUL in a value", std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 35)},
        {"lower-case method", "get / HTTP/1.1\r\nHost: h\r\n\r\n"},
        {"space in target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"},
        {"lower-case protocol", "GET / http/1.1\r\nHost: h\r\n\r\n"},
        {"control char in target", "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      // Same outcome however the bytes arrive.
      (void)drive_all(c.input);
      CHECK(torii::error_name(gateway_verdict(c.input)) == torii::error_name(Error::kBadRequest));
    }
  }

  TEST_CASE("malformed chunked bodies are an error after the head") {
    struct Case {
      const char* name;
      std::string body;
    };
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const Case cases[] = {
        {"bare LF in chunk size line", "5\nhello\r\n0\r\n\r\n"},
        {"bare LF after chunk data", "5\r\nhello\n0\r\n\r\n"},
        {"chunk data longer than its size", "3\r\nhello\r\n0\r\n\r\n"},
        {"chunk size not hex", "zz\r\nhello\r\n0\r\n\r\n"},
        {"chunk size overflow", "FFFFFFFFFFFFFFFFF\r\nhello\r\n"},
        {"chunk size with a space", "5 \r\nhello\r\n0\r\n\r\n"},
        {"chunk size with a sign", "+5\r\nhello\r\n0\r\n\r\n"},
        {"empty chunk size", "\r\nhello\r\n0\r\n\r\n"},
        {"bare LF after the last chunk size", "0\n\r\n"},
        {"bare LF ending the trailers", "0\r\n\n"},
        {"bare LF ending a trailer line", "0\r\nX-T: 1\n\r\n"},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      const Outcome o = drive_all(head + c.body);
      CHECK(o.seq() == "H@" + str(head.size()) + " E:BadRequest");
    }
  }

  TEST_CASE("obs-fold is rejected wherever it appears") {
    struct Case {
      const char* name;
      std::string input;
    };
    const Case cases[] = {
        {"fold in the first header", "GET / HTTP/1.1\r\nHost: h\r\n  .example\r\n\r\n"},
        {"fold in a middle header",
         "GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\nX-B: 3\r\n\r\n"},
        {"fold with a tab", "GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n\ttwo\r\n\r\n"},
        {"fold in the last header", "GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\r\n"},
        {"several folds", "GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n three\r\n\r\n"},
        {"fold of Transfer-Encoding",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n , "
         "identity\r\n\r\n0\r\n\r\n"},
        {"fold of Content-Length",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n 0\r\n\r\n0123456789"},
        {"fold of whitespace only",
         "GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n   \r\nX-B: 2\r\n\r\n"},
        {"fold after an empty value", "GET / HTTP/1.1\r\nHost: h\r\nX-A:\r\n two\r\n\r\n"},
        {"fold after an empty Transfer-Encoding",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
        {"fold in a trailer",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n "
         "b\r\n\r\n"},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      // drive_all() also splits right at the fold: between CRLF and the
      // whitespace, and between the whitespace and the continued value.
      const Outcome o = drive_all(c.input);
      CHECK(o.error == Error::kBadRequest);
      REQUIRE_FALSE(o.events.empty());
      CHECK(o.events.back() == "E:BadRequest");
    }
  }

  TEST_CASE("values split across feeds are not mistaken for obs-fold") {
    const std::string in =
        "GET / HTTP/1.1\r\nHost: example.com\r\nX-Long: " + std::string(300, 'x') +
        " y z\r\nX-Tab: a\tb\r\n\r\n";
    // drive_all() splits inside every value; three-way splits on top of that.
    const Outcome o = drive_all(in);
    REQUIRE(o.heads.size() == 1);
    CHECK(o.heads[0].value("x-long") == std::string(300, 'x') + " y z");
    CHECK(o.heads[0].value("x-tab") == "a\tb");
    const std::string expected = o.describe();
    const size_t v = in.find("X-Long") + 8;
    for (size_t i = v; i < v + 5; ++i) {
      for (size_t j = i; j < i + 4; ++j) {
        const std::string_view s(in);
        const Outcome three = drive({s.substr(0, i), s.substr(i, j - i), s.substr(j)}, {});
        CHECK_MESSAGE(three.describe() == expected, "splits at " << i << ", " << j);
      }
    }
  }

  // ---------------------------------------------------------------------------
  // Limits
  // ---------------------------------------------------------------------------

  TEST_CASE("request-target longer than max_request_line -> 414") {
    ParserLimits lim;
    lim.max_request_line = 32;
    DriveOptions opt;
    opt.limits = lim;
    const std::string ok_target = "/" + std::string(31, 'a');
    const std::string long_target = "/" + std::string(32, 'a');
    {
      const std::string in = "GET " + ok_target + " HTTP/1.1\r\nHost: h\r\n\r\n";
      const Outcome o = drive_all(in, opt);
      REQUIRE(o.heads.size() == 1);
      CHECK(o.heads[0].target == ok_target);
    }
    {
      const std::string in = "GET " + long_target + " HTTP/1.1\r\nHost: h\r\n\r\n";
      const Outcome o = drive_all(in, opt);
      CHECK(o.seq() == "E:UriTooLong");
    }
    {
      // Detected before the request line ends.
      const std::string in = "GET " + long_target + long_target;
      const Outcome o = drive_all(in, opt);
      CHECK(o.seq() == "E:UriTooLong");
    }
  }

  TEST_CASE("head larger than max_header_bytes -> 431") {
    ParserLimits lim;
    lim.max_header_bytes = 256;
    DriveOptions opt;
    opt.limits = lim;
    // Well under the limit.
    {
      const std::string in =
          "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(100, 'v') + "\r\n\r\n";
      const Outcome o = drive_all(in, opt);
      CHECK(o.heads.size() == 1);
    }
    // One big value.
    {
      const std::string in =
          "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'v') + "\r\n\r\n";
      const Outcome o = drive_all(in, opt);
      CHECK(o.seq() == "E:HeadersTooLarge");
    }
    // Many small headers.
    {
      std::string in = "GET / HTTP/1.1\r\nHost: h\r\n";
      for (int i = 0; i < 20; ++i) in += "X-" + std::to_string(i) + ": 0123456789\r\n";
      in += "\r\n";
      const Outcome o = drive_all(in, opt);
      CHECK(o.seq() == "E:HeadersTooLarge");
    }
    // A long header name.
    {
      const std::string in =
          "GET / HTTP/1.1\r\nHost: h\r\nX" + std::string(300, 'n') + ": 1\r\n\r\n";
      const Outcome o = drive_all(in, opt);
      CHECK(o.seq() == "E:HeadersTooLarge");
    }
    // The head is not finished yet: detected without waiting for its end.
    {
      const std::string in = "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'v');
      const Outcome o = drive_all(in, opt);
      CHECK(o.seq() == "E:HeadersTooLarge");
    }
  }

  TEST_CASE("max_header_bytes counts the bytes on the wire, whitespace included") {
    // docs/CONFIG.md: "Most bytes for the request line and all headers together".
    // A head four times the limit must not get through because most of it is
    // whitespace that the parser skips.
    ParserLimits lim;
    lim.max_header_bytes = 256;
    DriveOptions opt;
    opt.limits = lim;
    const std::string in = "GET / HTTP/1.1\r\nHost: h\r\nX:" + std::string(1024, ' ') + "v\r\n\r\n";
    const Outcome o = drive_all(in, opt);
    CHECK(o.seq() == "E:HeadersTooLarge");
  }

  TEST_CASE("more than max_header_count fields -> 431") {
    ParserLimits lim;
    lim.max_header_count = 5;
    DriveOptions opt;
    opt.limits = lim;
    auto request = [](int n) {
      std::string in = "GET / HTTP/1.1\r\nHost: h\r\n";
      for (int i = 1; i < n; ++i) in += "X-" + std::to_string(i) + ": v\r\n";
      return in + "\r\n";
    };
    {
      const Outcome o = drive_all(request(5), opt);
      REQUIRE(o.heads.size() == 1);
      CHECK(o.heads[0].headers.size() == 5);
    }
    {
      const Outcome o = drive_all(request(6), opt);
      CHECK(o.seq() == "E:HeadersTooLarge");
    }
    {
      // Empty values count too.
      const Outcome o =
          drive_all("GET / HTTP/1.1\r\nHost: h\r\nA:\r\nB:\r\nC:\r\nD:\r\nE:\r\n\r\n", opt);
      CHECK(o.seq() == "E:HeadersTooLarge");
    }
  }

  TEST_CASE("Content-Length above max_body_bytes -> 413 before any body byte") {
    ParserLimits lim;
    lim.max_body_bytes = 10;
    DriveOptions opt;
    opt.limits = lim;
    {
      const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
      const Outcome o = drive_all(head + "0123456789", opt);
      CHECK(o.seq() == complete_events({{head.size(), head.size() + 10}}));
    }
    {
      const std::string in = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
      const Outcome o = drive_all(in, opt);  // no body sent: rejected on the head
      CHECK(o.seq() == "E:BodyTooLarge");
    }
    {
      lim.max_body_bytes = 0;
      opt.limits = lim;
      const Outcome o = drive_all("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx", opt);
      CHECK(o.seq() == "E:BodyTooLarge");
    }
  }

  TEST_CASE("chunked body above max_body_bytes -> 413") {
    ParserLimits lim;
    lim.max_body_bytes = 10;
    DriveOptions opt;
    opt.limits = lim;
    const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    {
      const std::string body = "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n";
      const Outcome o = drive_all(head + body, opt);
      CHECK(o.seq() == complete_events({{head.size(), head.size() + body.size()}}));
    }
    {
      const std::string body = "5\r\n01234\r\n6\r\n56789a\r\n0\r\n\r\n";
      const Outcome o = drive_all(head + body, opt);
      CHECK(o.seq() == "H@" + str(head.size()) + " E:BodyTooLarge");
    }
    {
      // One huge chunk announced: rejected without the whole chunk.
      const Outcome o = drive_all(head + "FFFFFF\r\n0123456789ab", opt);
      CHECK(o.seq() == "H@" + str(head.size()) + " E:BodyTooLarge");
    }
  }

  TEST_CASE("EOF in the middle of a request is an error; between requests it is not") {
    DriveOptions opt;
    opt.finish_at_eof = true;
    {
      const Outcome o = drive_all("", opt);
      CHECK(o.seq() == "F:idle");
    }
    {
      const Outcome o = drive_all("GET / HTTP/1.1\r\nHo", opt);
      CHECK(o.seq() == "F:error:BadRequest");
    }
    {
      const std::string head = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
      const Outcome o = drive_all(head + "hel", opt);
      CHECK(o.seq() == "H@" + str(head.size()) + " F:error:BadRequest");
    }
    {
      const std::string in = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
      const Outcome o = drive_all(in, opt);
      CHECK(o.events ==
            std::vector<std::string>{"H@" + str(in.size()), "C@" + str(in.size()), "F:idle"});
    }
  }

  TEST_CASE("release_storage between messages keeps the parser usable") {
    Http1Parser p(Kind::kRequest, {});
    const std::string r1 =
        "GET /first HTTP/1.1\r\nHost: h\r\nX-Pad: " + std::string(500, 'p') + "\r\n\r\n";
    const std::string r2 = "GET /second HTTP/1.1\r\nHost: h\r\n\r\n";
    REQUIRE(p.feed(r1.data(), r1.size()).event == Event::kHeadComplete);
    REQUIRE(p.feed(nullptr, 0).event == Event::kMessageComplete);
    p.release_storage();
    auto r = p.feed(r2.data(), r2.size());
    REQUIRE(r.event == Event::kHeadComplete);
    CHECK(r.consumed == r2.size());
    CHECK(p.head().target == "/second");
    CHECK(p.head().headers.size() == 1);
  }

  // ---------------------------------------------------------------------------
  // Responses
  // ---------------------------------------------------------------------------

  TEST_CASE("response with Content-Length") {
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n";
    const std::string in = head + "hello";
    const Outcome o = drive_response(in);
    CHECK(o.seq() == complete_events({{head.size(), in.size()}}));
    REQUIRE(o.heads.size() == 1);
    CHECK(o.heads[0].status == 200);
    CHECK(o.heads[0].reason == "OK");
    CHECK(o.heads[0].framing == BodyFraming::kContentLength);
    CHECK(o.heads[0].content_length == 5);
    CHECK(o.heads[0].keep_alive);
    CHECK(o.heads[0].method.empty());
    CHECK(o.heads[0].target.empty());
    CHECK(o.bodies == std::vector<std::string>{"hello"});
  }

  TEST_CASE("keep-alive responses back to back") {
    const std::string r1 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const std::string r2 = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    const std::string r3 = "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n!";
    const std::string in = r1 + r2 + r3;
    const Outcome o = drive_response(in);
    const size_t e1 = r1.size(), e2 = e1 + r2.size(), e3 = in.size();
    CHECK(o.seq() == complete_events({{e1 - 2, e1}, {e2, e2}, {e3 - 1, e3}}));
    REQUIRE(o.heads.size() == 3);
    CHECK(o.heads[1].status == 404);
    CHECK(o.heads[1].reason == "Not Found");
    CHECK(o.bodies == std::vector<std::string>{"ok", "", "!"});
  }

  TEST_CASE("chunked response: raw and decoded body") {
    const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string body = "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    const std::string in = head + body;
    DriveOptions opt;
    const Outcome o = drive_response(in, opt);
    CHECK(o.seq() == complete_events({{head.size(), in.size()}}));
    REQUIRE(o.heads.size() == 1);
    CHECK(o.heads[0].framing == BodyFraming::kChunked);
    CHECK(o.heads[0].has_te);
    CHECK(o.bodies == std::vector<std::string>{body});
    CHECK(o.decoded == std::vector<std::string>{"hello world"});
  }

  TEST_CASE("close-delimited response: finish() completes it") {
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    const std::string in = head + "all of this until the close";
    DriveOptions opt;
    {
      const Outcome o = drive_response(in, opt);
      CHECK(o.seq() == "H@" + str(head.size()));
      REQUIRE(o.heads.size() == 1);
      CHECK(o.heads[0].framing == BodyFraming::kUntilClose);
      CHECK_FALSE(o.heads[0].keep_alive);
    }
    opt.finish_at_eof = true;
    {
      const Outcome o = drive_response(in, opt);
      CHECK(o.seq() == "H@" + str(head.size()) + " C@" + str(in.size()) + " F:complete");
      CHECK(o.bodies == std::vector<std::string>{"all of this until the close"});
      CHECK(o.decoded == std::vector<std::string>{"all of this until the close"});
    }
    {
      // Empty close-delimited body.
      const Outcome o = drive_response(head, opt);
      CHECK(o.seq() == "H@" + str(head.size()) + " C@" + str(head.size()) + " F:complete");
      CHECK(o.bodies == std::vector<std::string>{""});
    }
  }

  TEST_CASE("EOF inside a framed response is an upstream error") {
    DriveOptions opt;
    opt.finish_at_eof = true;
    {
      const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
      const Outcome o = drive_response(head + "short", opt);
      CHECK(o.seq() == "H@" + str(head.size()) + " F:error:UpstreamBadResponse");
    }
    {
      const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      const Outcome o = drive_response(head + "5\r\nhello\r\n", opt);
      CHECK(o.seq() == "H@" + str(head.size()) + " F:error:UpstreamBadResponse");
    }
    {
      const Outcome o = drive_response("HTTP/1.1 200 OK\r\nContent-", opt);
      CHECK(o.seq() == "F:error:UpstreamBadResponse");
    }
  }

  TEST_CASE("response to HEAD: Content-Length but no body") {
    const std::string r1 =
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/html\r\n\r\n";
    const std::string r2 = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    DriveOptions opt;
    opt.setup = [](Http1Parser& p) { p.expect_no_body(true); };
    // The second request on the connection is a GET.
    opt.on_complete = [](Http1Parser& p, size_t) { p.expect_no_body(false); };
    const std::string in = r1 + r2;
    const Outcome o = drive_response(in, opt);
    CHECK(o.seq() == complete_events({{r1.size(), r1.size()}, {in.size() - 3, in.size()}}));
    REQUIRE(o.heads.size() == 2);
    CHECK(o.heads[0].framing == BodyFraming::kNone);
    CHECK(o.heads[0].value("content-length") == "1234");
    CHECK(o.heads[0].content_length_count == 1);
    CHECK(o.heads[1].framing == BodyFraming::kContentLength);
    CHECK(o.bodies == std::vector<std::string>{"", "abc"});
  }

  TEST_CASE("response to HEAD with Transfer-Encoding: chunked has no body") {
    const std::string r1 = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string r2 = "HTTP/1.1 204 No Content\r\n\r\n";
    DriveOptions opt;
    opt.setup = [](Http1Parser& p) { p.expect_no_body(true); };
    const Outcome o = drive_response(r1 + r2, opt);
    CHECK(o.seq() == complete_events(
                         {{r1.size(), r1.size()}, {r1.size() + r2.size(), r1.size() + r2.size()}}));
    REQUIRE(o.heads.size() == 2);
    CHECK(o.heads[0].framing == BodyFraming::kNone);
    CHECK(o.heads[0].has_te);
  }

  TEST_CASE("204 and 304 responses have no body") {
    struct Case {
      std::string response;
      int status;
    };
    const Case cases[] = {
        {"HTTP/1.1 204 No Content\r\n\r\n", 204},
        {"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 204},
        {"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", 304},
        {"HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\n\r\n", 304},
    };
    const std::string next = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext";
    for (const Case& c : cases) {
      INFO("response: " << escape(c.response));
      const std::string in = c.response + next;
      const Outcome o = drive_response(in);
      const size_t e1 = c.response.size();
      CHECK(o.seq() == complete_events({{e1, e1}, {in.size() - 4, in.size()}}));
      REQUIRE(o.heads.size() == 2);
      CHECK(o.heads[0].status == c.status);
      CHECK(o.heads[0].framing == BodyFraming::kNone);
      CHECK(o.bodies == std::vector<std::string>{"", "next"});
    }
  }

  TEST_CASE("1xx interim responses are skipped") {
    const std::string final_head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
    struct Case {
      const char* name;
      std::string interim;
    };
    const Case cases[] = {
        {"100 Continue", "HTTP/1.1 100 Continue\r\n\r\n"},
        {"103 with headers", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"},
        {"two interim responses", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      const std::string in = c.interim + final_head + "ok";
      const Outcome o = drive_response(in);
      CHECK(o.seq() == complete_events({{in.size() - 2, in.size()}}));
      REQUIRE(o.heads.size() == 1);
      CHECK(o.heads[0].status == 200);
      CHECK(o.heads[0].headers.size() == 1);
      CHECK(o.heads[0].value("link").empty());
      CHECK(o.bodies == std::vector<std::string>{"ok"});
    }
  }

  TEST_CASE("malformed responses -> kUpstreamBadResponse") {
    struct Case {
      const char* name;
      std::string input;
    };
    const Case cases[] = {
        {"letters in status", "HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"},
        {"two-digit status", "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"},
        {"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"},
        {"not HTTP", "SMTP/1.1 200 OK\r\n\r\n"},
        {"garbage", "hello world\r\n\r\n"},
        {"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
        {"CL and TE",
         "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"conflicting CL", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
        {"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
        {"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"},
        {"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"},
    };
    for (const Case& c : cases) {
      INFO("case: " << std::string(c.name));
      const Outcome o = drive_response(c.input);
      CHECK(o.error == Error::kUpstreamBadResponse);
      REQUIRE_FALSE(o.events.empty());
      CHECK(o.events.back() == "E:UpstreamBadResponse");
    }
  }

  TEST_CASE("response limits map to kUpstreamBadResponse") {
    ParserLimits lim;
    lim.max_header_bytes = 128;
    lim.max_header_count = 4;
    lim.max_body_bytes = 8;
    DriveOptions opt;
    opt.limits = lim;
    {
      const Outcome o =
          drive_response("HTTP/1.1 200 OK\r\nX: " + std::string(200, 'v') + "\r\n\r\n", opt);
      CHECK(o.seq() == "E:UpstreamBadResponse");
    }
    {
      const Outcome o =
          drive_response("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", opt);
      CHECK(o.seq() == "E:UpstreamBadResponse");
    }
    {
      const Outcome o =
          drive_response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789", opt);
      CHECK(o.seq() == "E:UpstreamBadResponse");
    }
  }

  TEST_CASE("response keep-alive and versions") {
    struct Case {
      std::string response;
      bool keep_alive;
      int minor;
    };
    const Case cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, 1},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, 1},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, 0},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true, 0},
    };
    for (const Case& c : cases) {
      INFO("response: " << escape(c.response));
      const Outcome o = drive_response(c.response);
      REQUIRE(o.heads.size() == 1);
      CHECK(o.heads[0].keep_alive == c.keep_alive);
      CHECK(o.heads[0].minor == c.minor);
    }
  }

  TEST_CASE("keep_alive_timeout_hint") {
    struct Case {
      const char* header;  // nullptr: no Keep-Alive header
      unsigned expected;
    };
    const Case cases[] = {
        {nullptr, 0},
        {"timeout=5", 5},
        {"timeout=5, max=100", 5},
        {"max=100, timeout=7", 7},
        {"Timeout=9", 9},
        {"  timeout=12  ,max=3", 12},
        {"timeout=", 0},
        {"timeout=abc", 0},
        {"max=100", 0},
        {"timeouts=4", 0},
    };
    for (const Case& c : cases) {
      INFO("Keep-Alive: " << std::string(c.header ? c.header : "(none)"));
      std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n";
      if (c.header != nullptr) in += std::string("Keep-Alive: ") + c.header + "\r\n";
      in += "\r\n";
      Http1Parser p(Kind::kResponse, {});
      REQUIRE(p.feed(in.data(), in.size()).event == Event::kHeadComplete);
      CHECK(torii::http::keep_alive_timeout_hint(p.head()) == c.expected);
    }
  }

}  // TEST_SUITE
