// Unit tests for gateway/control_channel: the length-prefixed framing
// (FrameDecoder, encode_frame) and a ControlChannel pair over a socketpair.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/control_channel.hpp"

namespace {

using torii::gateway::ControlChannel;
using torii::gateway::encode_frame;
using torii::gateway::FrameDecoder;

std::string header(uint32_t len) {
  std::string h(4, '\0');
  h[0] = static_cast<char>(len >> 24);
  h[1] = static_cast<char>((len >> 16) & 0xff);
  h[2] = static_cast<char>((len >> 8) & 0xff);
  h[3] = static_cast<char>(len & 0xff);
  return h;
}

std::string binary_payload(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return s;
}

}  // namespace

TEST_SUITE("control channel") {
  TEST_CASE("encode_frame: 4-byte big-endian length, then the payload") {
    CHECK(encode_frame("") == std::string("\0\0\0\0", 4));
    CHECK(encode_frame("abc") == std::string("\0\0\0\3abc", 7));
    const std::string big = binary_payload(0x012345);
    const std::string f = encode_frame(big);
    REQUIRE(f.size() == 4 + big.size());
    CHECK(static_cast<unsigned char>(f[0]) == 0x00);
    CHECK(static_cast<unsigned char>(f[1]) == 0x01);
    CHECK(static_cast<unsigned char>(f[2]) == 0x23);
    CHECK(static_cast<unsigned char>(f[3]) == 0x45);
    CHECK(f.substr(4) == big);
    CHECK(encode_frame(std::string(256, 'x')).substr(0, 4) == std::string("\0\0\1\0", 4));
  }

  TEST_CASE("round trip of one frame") {
    for (const std::string& payload :
         {std::string(), std::string("{\"op\":\"purge\",\"id\":1}"), std::string("\0\xff\n\r", 4),
          binary_payload(255), binary_payload(256), binary_payload(70'000)}) {
      CAPTURE(payload.size());
      FrameDecoder d;
      const auto frames = d.feed(encode_frame(payload));
      REQUIRE(frames.size() == 1);
      CHECK(frames[0] == payload);
      CHECK_FALSE(d.error());
      CHECK(d.feed("").empty());  // nothing left over
    }
  }

  TEST_CASE("a frame split at every byte boundary") {
    const std::string payload = "{\"op\":\"purged\",\"id\":42,\"count\":7}";
    const std::string wire = encode_frame(payload);
    for (size_t cut = 0; cut <= wire.size(); ++cut) {
      CAPTURE(cut);
      FrameDecoder d;
      auto first = d.feed(std::string_view(wire).substr(0, cut));
      auto second = d.feed(std::string_view(wire).substr(cut));
      if (cut == wire.size()) {
        REQUIRE(first.size() == 1);
        CHECK(first[0] == payload);
        CHECK(second.empty());
      } else {
        CHECK(first.empty());
        REQUIRE(second.size() == 1);
        CHECK(second[0] == payload);
      }
      CHECK_FALSE(d.error());
    }
  }

  TEST_CASE("three frames split at every pair of boundaries") {
    const std::vector<std::string> payloads = {"first", "", "third frame, longer"};
    std::string wire;
    for (const auto& p : payloads) wire += encode_frame(p);
    for (size_t a = 0; a <= wire.size(); ++a) {
      for (size_t b = a; b <= wire.size(); ++b) {
        CAPTURE(a);
        CAPTURE(b);
        FrameDecoder d;
        std::vector<std::string> got;
        for (auto part :
             {std::string_view(wire).substr(0, a), std::string_view(wire).substr(a, b - a),
              std::string_view(wire).substr(b)}) {
          for (auto& f : d.feed(part)) got.push_back(std::move(f));
        }
        CHECK(got == payloads);
        CHECK_FALSE(d.error());
      }
    }
  }

  TEST_CASE("byte by byte") {
    const std::vector<std::string> payloads = {"a", binary_payload(300), "", "z"};
    std::string wire;
    for (const auto& p : payloads) wire += encode_frame(p);
    FrameDecoder d;
    std::vector<std::string> got;
    for (char c : wire) {
      for (auto& f : d.feed(std::string_view(&c, 1))) got.push_back(std::move(f));
    }
    CHECK(got == payloads);
  }

  TEST_CASE("several frames in one feed, and a partial one kept for later") {
    FrameDecoder d;
    const std::string wire = encode_frame("one") + encode_frame("two") + encode_frame("") +
                             encode_frame("four") + encode_frame("fifth").substr(0, 6);
    const auto frames = d.feed(wire);
    CHECK(frames == std::vector<std::string>{"one", "two", "", "four"});
    const auto rest = d.feed(encode_frame("fifth").substr(6));
    CHECK(rest == std::vector<std::string>{"fifth"});
    CHECK_FALSE(d.error());
  }

  TEST_CASE("the largest frame is accepted") {
    FrameDecoder d;
    const std::string payload(FrameDecoder::kMaxFrame, 'm');
    const auto frames = d.feed(encode_frame(payload));
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].size() == FrameDecoder::kMaxFrame);
    CHECK_FALSE(d.error());
  }

  TEST_CASE("an oversized frame sets error()") {
    FrameDecoder d;
    SUBCASE("from its length alone, before any payload") {
      CHECK(d.feed(header(FrameDecoder::kMaxFrame + 1)).empty());
      CHECK(d.error());
    }
    SUBCASE("length 0xffffffff") {
      CHECK(d.feed(header(0xffffffffu) + "xyz").empty());
      CHECK(d.error());
    }
    SUBCASE("a length header split across feeds") {
      const std::string h = header(FrameDecoder::kMaxFrame + 1);
      CHECK(d.feed(h.substr(0, 3)).empty());
      CHECK_FALSE(d.error());
      CHECK(d.feed(h.substr(3)).empty());
      CHECK(d.error());
    }
    SUBCASE("frames before it in the same feed are still returned") {
      const auto frames = d.feed(encode_frame("ok") + header(FrameDecoder::kMaxFrame + 1));
      CHECK(frames == std::vector<std::string>{"ok"});
      CHECK(d.error());
    }
    // Once in error, the decoder stays there and returns nothing.
    CHECK(d.feed(encode_frame("later")).empty());
    CHECK(d.error());
  }

  TEST_CASE("a ControlChannel pair carries messages both ways and reports the peer's close") {
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);

    const std::string big = binary_payload(200'000);  // many 4 KiB reads
    std::vector<std::string> at_a, at_b;
    int a_closed = 0, b_closed = 0;
    ControlChannel a(
        &loop, fds[0],
        [&](ControlChannel& ch, const std::string& m) {
          at_a.push_back(m);
          if (m == "ack") ch.close();
        },
        [&](ControlChannel&) { ++a_closed; });
    ControlChannel b(
        &loop, fds[1],
        [&](ControlChannel& ch, const std::string& m) {
          at_b.push_back(m);
          if (at_b.size() == 3) ch.send("ack");
        },
        [&](ControlChannel&) { ++b_closed; });
    a.send("hello");
    a.send("");
    a.send(big);

    // A guard against hanging: gives up after 10 s.
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    guard.data = &a;
    uv_timer_start(
        &guard, [](uv_timer_t* t) { static_cast<ControlChannel*>(t->data)->close(); }, 10'000, 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&guard));

    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
    b.close();  // no-op when it already closed on EOF
    uv_run(&loop, UV_RUN_DEFAULT);

    REQUIRE(at_b.size() == 3);
    CHECK(at_b[0] == "hello");
    CHECK(at_b[1].empty());
    CHECK(at_b[2] == big);
    CHECK(at_a == std::vector<std::string>{"ack"});
    CHECK(a.closed());
    CHECK(b.closed());
    CHECK(a_closed == 1);
    CHECK(b_closed == 1);   // closed by the peer's EOF
    a.send("after close");  // ignored
    CHECK(uv_loop_close(&loop) == 0);
  }
}
