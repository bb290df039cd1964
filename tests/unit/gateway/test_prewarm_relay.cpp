// Unit tests for gateway/prewarm_relay: the master side of shared
// pre-warming, driven with real ControlChannel pairs over socketpairs (the
// test plays the master's message dispatch and reads what each worker end
// receives).
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <uv.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cache/stored_response.hpp"
#include "gateway/control_channel.hpp"
#include "gateway/prewarm_relay.hpp"
#include "gateway/prewarm_share.hpp"

namespace {

using torii::cache::StoredResponse;
using torii::gateway::ControlChannel;
using torii::gateway::ControlHeader;
using torii::gateway::decode_shared;
using torii::gateway::encode_shared;
using torii::gateway::kOpClaim;
using torii::gateway::kOpEntry;
using torii::gateway::kOpFailed;
using torii::gateway::kOpGrant;
using torii::gateway::kOpShare;
using torii::gateway::kOpSync;
using torii::gateway::kOpSyncDone;
using torii::gateway::make_claim;
using torii::gateway::make_simple;
using torii::gateway::peek_control;
using torii::gateway::PrewarmRelay;
using torii::gateway::with_op;

// Sent by the test itself after the relay's messages: once a worker end has
// read it, it has read everything the relay sent before it.
const std::string kMark = "#mark";

using Inbox = std::vector<std::string>;

// A master with three workers: master-side channels (given to the relay)
// and worker-side channels that collect what they receive.
struct Rig {
  static constexpr size_t kWorkers = 3;

  uv_loop_t loop;
  std::array<std::unique_ptr<ControlChannel>, kWorkers> master;
  std::array<std::unique_ptr<ControlChannel>, kWorkers> worker;
  std::array<Inbox, kWorkers> inbox;
  std::array<size_t, kWorkers> marks{};
  PrewarmRelay relay;

  Rig() : relay(&loop, [this] { return channels(); }) {
    REQUIRE(uv_loop_init(&loop) == 0);
    for (size_t i = 0; i < kWorkers; ++i) {
      int fds[2];
      REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
      master[i] = std::make_unique<ControlChannel>(
          &loop, fds[0], [](ControlChannel&, const std::string&) {}, nullptr);
      worker[i] = std::make_unique<ControlChannel>(
          &loop, fds[1],
          [this, i](ControlChannel&, const std::string& m) {
            if (m == kMark) {
              ++marks[i];
            } else {
              inbox[i].push_back(m);
            }
          },
          nullptr);
    }
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;
  ~Rig() {
    for (auto& c : master) c->close();
    for (auto& c : worker) c->close();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }

  std::vector<ControlChannel*> channels() {
    std::vector<ControlChannel*> out;
    for (auto& c : master) out.push_back(c.get());
    return out;
  }

  // Worker `i` sends `message` to the master.
  bool from(size_t i, const std::string& message) { return relay.on_message(*master[i], message); }

  // Runs the loop until every worker end has read all the relay sent so
  // far; returns what each received since the last call.
  std::array<Inbox, kWorkers> deliver() {
    std::array<size_t, kWorkers> want{};
    for (size_t i = 0; i < kWorkers; ++i) {
      master[i]->send(kMark);
      want[i] = marks[i] + 1;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    auto done = [&] {
      for (size_t i = 0; i < kWorkers; ++i) {
        if (marks[i] < want[i]) return false;
      }
      return true;
    };
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      uv_run(&loop, UV_RUN_NOWAIT);
    }
    REQUIRE(done());
    std::array<Inbox, kWorkers> out;
    for (size_t i = 0; i < kWorkers; ++i) out[i] = std::move(inbox[i]);
    inbox = {};
    return out;
  }
};

StoredResponse response(std::string key, int64_t response_time_ms, std::string_view body) {
  StoredResponse r;
  r.assign("HTTP/1.1 200 OK\r\nContent-Type: text/plain", body);
  r.key = std::move(key);
  r.host = "example.com";
  r.target = "/p";
  r.response_time_ms = response_time_ms;
  r.lifetime_ms = 60'000;
  return r;
}

std::string grant(std::string_view key, bool granted) {
  return make_simple(kOpGrant, key, granted);
}

bool is_grant(const std::string& m, std::string_view key, bool granted) {
  const ControlHeader h = peek_control(m);
  return h.op == kOpGrant && h.key == key && h.granted == granted;
}

}  // namespace

TEST_SUITE("prewarm relay") {
  TEST_CASE("prewarm relay: a sync with no copies answers only prewarm-sync-done") {
    Rig rig;
    CHECK(rig.relay.copies() == 0);
    CHECK(rig.from(1, make_simple(kOpSync)));
    const auto got = rig.deliver();
    REQUIRE(got[1].size() == 1);
    CHECK(peek_control(got[1][0]).op == kOpSyncDone);
    CHECK(got[0].empty());
    CHECK(got[2].empty());
  }

  TEST_CASE("prewarm relay: one lease per key") {
    Rig rig;
    CHECK(rig.from(0, make_claim("k1", 0, "fp")));
    auto got = rig.deliver();
    REQUIRE(got[0].size() == 1);
    CHECK(is_grant(got[0][0], "k1", true));
    CHECK(got[1].empty());
    CHECK(got[2].empty());

    // Another worker, while the lease is held: denied.
    CHECK(rig.from(1, make_claim("k1", 0, "fp")));
    got = rig.deliver();
    REQUIRE(got[1].size() == 1);
    CHECK(is_grant(got[1][0], "k1", false));
    CHECK(got[0].empty());
    CHECK(got[2].empty());

    // The holder claiming again: granted.
    CHECK(rig.from(0, make_claim("k1", 0, "fp")));
    got = rig.deliver();
    REQUIRE(got[0].size() == 1);
    CHECK(is_grant(got[0][0], "k1", true));

    // Another key is independent.
    CHECK(rig.from(2, make_claim("k2", 0, "fp")));
    got = rig.deliver();
    REQUIRE(got[2].size() == 1);
    CHECK(is_grant(got[2][0], "k2", true));
    CHECK(got[0].empty());
    CHECK(got[1].empty());
    CHECK(rig.relay.copies() == 0);  // claims store nothing
  }

  TEST_CASE("prewarm relay: a share is forwarded to the others, releases the lease and is kept") {
    Rig rig;
    CHECK(rig.from(0, make_claim("k1", 0, "fp")));
    CHECK(rig.from(1, make_claim("k1", 0, "fp")));
    auto got = rig.deliver();
    REQUIRE(got[0].size() == 1);
    CHECK(is_grant(got[0][0], "k1", true));
    REQUIRE(got[1].size() == 1);
    CHECK(is_grant(got[1][0], "k1", false));

    const StoredResponse r = response("k1", 1'000, std::string("body\n\0\r\n\r\nend", 14));
    const std::string share = encode_shared(kOpShare, r, "fp");
    CHECK(rig.from(0, share));
    CHECK(rig.relay.copies() == 1);
    got = rig.deliver();
    CHECK(got[0].empty());  // not back to the sender
    const std::string entry = with_op(share, kOpEntry);
    for (size_t i : {size_t{1}, size_t{2}}) {
      CAPTURE(i);
      REQUIRE(got[i].size() == 1);
      CHECK(got[i][0] == entry);
      CHECK(peek_control(got[i][0]).op == kOpEntry);
      const auto d = decode_shared(got[i][0]);
      REQUIRE(d.has_value());
      CHECK(d->fingerprint == "fp");
      CHECK(d->response.bytes == r.bytes);
      CHECK(d->response.key == "k1");
      CHECK(d->response.response_time_ms == 1'000);
    }

    // The lease is released: a claim from another worker that has the copy is granted.
    CHECK(rig.from(1, make_claim("k1", 1'000, "fp")));
    got = rig.deliver();
    REQUIRE(got[1].size() == 1);
    CHECK(is_grant(got[1][0], "k1", true));

    // A later sync (a new worker) gets the copy, then sync-done.
    CHECK(rig.from(2, make_simple(kOpSync)));
    got = rig.deliver();
    REQUIRE(got[2].size() == 2);
    CHECK(got[2][0] == entry);
    CHECK(peek_control(got[2][1]).op == kOpSyncDone);
    CHECK(got[0].empty());
    CHECK(got[1].empty());
  }

  TEST_CASE("prewarm relay: a newer share replaces the copy; copies() counts keys") {
    Rig rig;
    const std::string a1 = encode_shared(kOpShare, response("a", 1'000, "a1"), "fp");
    const std::string a2 = encode_shared(kOpShare, response("a", 2'000, "a2"), "fp");
    const std::string b1 = encode_shared(kOpShare, response("b", 1'500, "b1"), "fp");
    CHECK(rig.from(0, a1));
    CHECK(rig.relay.copies() == 1);
    CHECK(rig.from(1, b1));
    CHECK(rig.relay.copies() == 2);
    CHECK(rig.from(2, a2));
    CHECK(rig.relay.copies() == 2);
    auto got = rig.deliver();
    CHECK(got[0] == Inbox{with_op(b1, kOpEntry), with_op(a2, kOpEntry)});
    CHECK(got[1] == Inbox{with_op(a1, kOpEntry), with_op(a2, kOpEntry)});
    CHECK(got[2] == Inbox{with_op(a1, kOpEntry), with_op(b1, kOpEntry)});

    CHECK(rig.from(0, make_simple(kOpSync)));
    got = rig.deliver();
    REQUIRE(got[0].size() == 3);
    CHECK(peek_control(got[0][2]).op == kOpSyncDone);
    const Inbox copies{got[0][0], got[0][1]};
    const bool in_either_order = copies == Inbox{with_op(a2, kOpEntry), with_op(b1, kOpEntry)} ||
                                 copies == Inbox{with_op(b1, kOpEntry), with_op(a2, kOpEntry)};
    CHECK(in_either_order);
  }

  TEST_CASE("prewarm relay: a claim older than the stored copy is answered with the copy") {
    Rig rig;
    const StoredResponse r = response("k1", 5'000, "fresh");
    const std::string share = encode_shared(kOpShare, r, "fp");
    CHECK(rig.from(0, share));
    rig.deliver();

    SUBCASE("same fingerprint, older copy: the entry and granted=false") {
      for (int64_t have : {int64_t{0}, int64_t{4'999}}) {
        CAPTURE(have);
        CHECK(rig.from(1, make_claim("k1", have, "fp")));
        const auto got = rig.deliver();
        REQUIRE(got[1].size() == 2);
        CHECK(got[1][0] == with_op(share, kOpEntry));
        CHECK(is_grant(got[1][1], "k1", false));
        CHECK(got[0].empty());
        CHECK(got[2].empty());
      }
      // No lease was taken: another worker with the copy is granted.
      CHECK(rig.from(2, make_claim("k1", 5'000, "fp")));
      const auto got = rig.deliver();
      REQUIRE(got[2].size() == 1);
      CHECK(is_grant(got[2][0], "k1", true));
    }
    SUBCASE("same fingerprint, as recent a copy: granted") {
      CHECK(rig.from(1, make_claim("k1", 5'000, "fp")));
      const auto got = rig.deliver();
      REQUIRE(got[1].size() == 1);
      CHECK(is_grant(got[1][0], "k1", true));
    }
    SUBCASE("another fingerprint: the stored copy is ignored and the claim granted") {
      CHECK(rig.from(1, make_claim("k1", 0, "fp-other")));
      auto got = rig.deliver();
      REQUIRE(got[1].size() == 1);
      CHECK(is_grant(got[1][0], "k1", true));
      // And the lease holds against the others.
      CHECK(rig.from(2, make_claim("k1", 0, "fp-other")));
      got = rig.deliver();
      REQUIRE(got[2].size() == 1);
      CHECK(is_grant(got[2][0], "k1", false));
    }
  }

  TEST_CASE("prewarm relay: prewarm-failed releases the lease and is forwarded to the others") {
    Rig rig;
    CHECK(rig.from(0, make_claim("k1", 0, "fp")));
    rig.deliver();
    const std::string failed = make_simple(kOpFailed, "k1");
    CHECK(rig.from(0, failed));
    auto got = rig.deliver();
    CHECK(got[0].empty());
    CHECK(got[1] == Inbox{failed});
    CHECK(got[2] == Inbox{failed});
    CHECK(rig.relay.copies() == 0);

    CHECK(rig.from(1, make_claim("k1", 0, "fp")));
    got = rig.deliver();
    REQUIRE(got[1].size() == 1);
    CHECK(is_grant(got[1][0], "k1", true));

    // A failure reported by a worker that does not hold the lease leaves it.
    CHECK(rig.from(2, make_simple(kOpFailed, "k1")));
    got = rig.deliver();
    CHECK(got[0] == Inbox{make_simple(kOpFailed, "k1")});
    CHECK(got[1] == Inbox{make_simple(kOpFailed, "k1")});
    CHECK(got[2].empty());
    CHECK(rig.from(0, make_claim("k1", 0, "fp")));
    got = rig.deliver();
    REQUIRE(got[0].size() == 1);
    CHECK(is_grant(got[0][0], "k1", false));
  }

  TEST_CASE("prewarm relay: on_channel_closed releases the leases of that channel") {
    Rig rig;
    CHECK(rig.from(0, make_claim("k1", 0, "fp")));
    CHECK(rig.from(0, make_claim("k2", 0, "fp")));
    CHECK(rig.from(1, make_claim("k3", 0, "fp")));
    rig.deliver();

    rig.relay.on_channel_closed(rig.master[0].get());
    CHECK(rig.from(2, make_claim("k1", 0, "fp")));
    CHECK(rig.from(2, make_claim("k2", 0, "fp")));
    CHECK(rig.from(2, make_claim("k3", 0, "fp")));  // still held by worker 1
    const auto got = rig.deliver();
    CHECK(got[2] == Inbox{grant("k1", true), grant("k2", true), grant("k3", false)});
    CHECK(got[0].empty());
    CHECK(got[1].empty());
  }

  TEST_CASE("prewarm relay: other messages are not handled") {
    Rig rig;
    for (const std::string& m :
         {std::string(R"({"op":"purged","id":1,"count":0})"), std::string(R"({"op":"purge"})"),
          std::string("garbage"), std::string(), std::string(R"({"key":"k1"})"),
          std::string(R"({"op":"prewarm-bogus","key":"k1"})")}) {
      CAPTURE(m);
      CHECK_FALSE(rig.from(0, m));
    }
    const auto got = rig.deliver();
    for (const auto& in : got) CHECK(in.empty());
    CHECK(rig.relay.copies() == 0);
  }

  TEST_CASE("prewarm relay: a share without a key is not kept nor forwarded") {
    Rig rig;
    const std::string share = encode_shared(kOpShare, response("", 1'000, "x"), "fp");
    CHECK(rig.from(0, share));
    const auto got = rig.deliver();
    for (const auto& in : got) CHECK(in.empty());
    CHECK(rig.relay.copies() == 0);
  }
}
