// Ticket-key control messages (master -> workers) and the HTTPS redirect reply.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "gateway/local_reply.hpp"
#include "gateway/tls_context.hpp"

using torii::gateway::build_redirect;
using torii::gateway::parse_ticket_key_message;
using torii::gateway::ticket_key_message;
using torii::gateway::TicketKey;
using torii::gateway::TicketKeys;

TEST_SUITE("tls ticket keys") {
  TEST_CASE("a ticket key survives the trip to a worker byte for byte") {
    const TicketKey k = TicketKeys::generate();
    const auto back = parse_ticket_key_message(ticket_key_message(k));
    REQUIRE(back.has_value());
    CHECK(std::memcmp(back->name, k.name, sizeof k.name) == 0);
    CHECK(std::memcmp(back->aes_key, k.aes_key, sizeof k.aes_key) == 0);
    CHECK(std::memcmp(back->hmac_key, k.hmac_key, sizeof k.hmac_key) == 0);
  }

  TEST_CASE("other messages are not ticket keys") {
    const std::string good = ticket_key_message(TicketKeys::generate());
    CHECK_FALSE(parse_ticket_key_message("").has_value());
    CHECK_FALSE(parse_ticket_key_message(R"({"op":"purge"})").has_value());
    std::string bad_hex = good;
    bad_hex[40] = 'z';
    CHECK_FALSE(parse_ticket_key_message(bad_hex).has_value());
    CHECK_FALSE(parse_ticket_key_message(good.substr(0, good.size() - 3) + "\"}").has_value());
  }

  TEST_CASE("rotation keeps the newest keys first, at most `keep`") {
    TicketKeys keys;
    const TicketKey a = TicketKeys::generate();
    const TicketKey b = TicketKeys::generate();
    const TicketKey c = TicketKeys::generate();
    keys.rotate(a);
    keys.rotate(b);
    keys.rotate(c);
    REQUIRE(keys.keys().size() == 2);
    CHECK(std::memcmp(keys.keys()[0].name, c.name, sizeof c.name) == 0);
    CHECK(std::memcmp(keys.keys()[1].name, b.name, sizeof b.name) == 0);
    CHECK(std::memcmp(a.name, b.name, sizeof a.name) != 0);  // random keys differ
  }
}

TEST_SUITE("https redirect") {
  TEST_CASE("308 with Location, a short body, keep-alive kept") {
    std::string out;
    build_redirect(308, "https://a.test:8443/x?y=1", "rid-1", false, false, false, out);
    CHECK(out.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"));
    CHECK(out.find("\r\nLocation: https://a.test:8443/x?y=1\r\n") != std::string::npos);
    CHECK(out.find("X-Request-Id: rid-1\r\n") != std::string::npos);
    CHECK(out.find("Connection:") == std::string::npos);
    const std::string body = "Moved to https://a.test:8443/x?y=1\n";
    CHECK(out.ends_with("\r\n\r\n" + body));
    CHECK(out.find("Content-Length: " + std::to_string(body.size()) + "\r\n") != std::string::npos);
  }

  TEST_CASE("HEAD: no body; close when asked") {
    std::string out;
    build_redirect(308, "https://a.test/", "", true, true, false, out);
    CHECK(out.ends_with("Connection: close\r\n\r\n"));
    CHECK(out.find("X-Request-Id") == std::string::npos);
  }
}
