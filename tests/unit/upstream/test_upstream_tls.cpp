// Unit tests for upstream/upstream_tls and the client role of TlsSession: a
// client TlsSession made by an UpstreamTlsContext talks to a server
// TlsSession (a listener's context) through memory, with certificates made
// at test time. Verification (trusted CA, host name), SNI, ALPN, session
// resumption through the pool's session cache, and the config errors.
#include <doctest/doctest.h>

#include <string>

#include "common/tls_session.hpp"
#include "gateway/tls_context.hpp"
#include "tests/unit/support/tls_certs.hpp"
#include "upstream/upstream_tls.hpp"

namespace {

using torii::TlsSession;
using torii::conf::ConfigError;
using torii::conf::UpstreamTls;
using torii::gateway::TicketKeys;
using torii::gateway::TlsServerContext;
using torii::test::Leaf;
using torii::test::TestPki;
using torii::upstream::UpstreamTlsContext;
using torii::upstream::UpstreamTlsSessionCache;
using Result = TlsSession::Result;

constexpr const char* kFile = "/etc/torii/torii.json";
constexpr const char* kBase = "/upstreams/api/tls";

std::shared_ptr<TlsServerContext> server_ctx(const Leaf& leaf) {
  torii::conf::ListenerTls tls;
  torii::conf::TlsCertificate c;
  c.cert_path = leaf.cert_path;
  c.key_path = leaf.key_path;
  tls.certificates.push_back(c);
  auto keys = std::make_shared<TicketKeys>();
  keys->rotate(TicketKeys::generate());
  return TlsServerContext::create(tls, kFile, "/listeners/0/tls", keys);
}

UpstreamTls trusting(const TestPki& pki, std::string server_name = "origin.test") {
  UpstreamTls tls;
  tls.ca_path = pki.ca_path();
  tls.server_name = std::move(server_name);
  return tls;
}

// A client session (upstream side) and a server session (an origin) joined in memory.
struct Link {
  Link(const UpstreamTlsContext& client_ctx, const TlsServerContext& origin,
       UpstreamTlsSessionCache* sessions, const std::string& name)
      : client(client_ctx.new_ssl(name, sessions), TlsSession::Role::kClient),
        server(origin.new_ssl()) {}

  // Moves ciphertext both ways until neither side has any; bounded.
  void shuttle() {
    for (int i = 0; i < 50; ++i) {
      std::string a;
      std::string b;
      client.take_output(a);
      server.take_output(b);
      if (a.empty() && b.empty()) return;
      server.feed(a);
      client.feed(b);
      if (!server.established()) (void)server.handshake();
      if (!client.established()) last = client.handshake();
    }
    FAIL("the handshake did not settle");
  }

  Result connect() {
    last = client.handshake();  // the ClientHello
    shuttle();
    return client.established() ? Result::kOk : last;
  }

  // Sends `text` from the server and reads it on the client (which also
  // takes in the server's session tickets).
  std::string server_says(const std::string& text) {
    REQUIRE(server.write(text));
    shuttle();
    std::string got;
    char buf[4096];
    size_t n = 0;
    while (client.read(buf, sizeof buf, n) == Result::kOk) got.append(buf, n);
    return got;
  }

  TlsSession client;
  TlsSession server;
  Result last = Result::kWantMore;
};

}  // namespace

TEST_SUITE("upstream tls") {
  TEST_CASE("a verified handshake, SNI and ALPN, data both ways") {
    TestPki pki;
    const auto origin = server_ctx(pki.leaf({"origin.test"}));
    const auto ctx = UpstreamTlsContext::create(trusting(pki), kFile, kBase);
    CHECK(ctx->name_for("10.1.2.3") == "origin.test");
    Link link(*ctx, *origin, nullptr, ctx->name_for("10.1.2.3"));
    REQUIRE(link.connect() == Result::kOk);
    CHECK(link.server.server_name() == "origin.test");
    CHECK(link.client.alpn() == "http/1.1");
    CHECK(link.client.verify_error().empty());
    REQUIRE(link.client.write("GET / HTTP/1.1\r\n\r\n"));
    link.shuttle();
    char buf[64];
    size_t n = 0;
    REQUIRE(link.server.read(buf, sizeof buf, n) == Result::kOk);
    CHECK(std::string(buf, n) == "GET / HTTP/1.1\r\n\r\n");
    CHECK(link.server_says("HTTP/1.1 200 OK\r\n\r\n") == "HTTP/1.1 200 OK\r\n\r\n");
  }

  TEST_CASE("without server_name, the server's own host is the name") {
    TestPki pki;
    const auto ctx = UpstreamTlsContext::create(trusting(pki, ""), kFile, kBase);
    CHECK(ctx->name_for("api.internal") == "api.internal");
  }

  TEST_CASE("a certificate for another name is refused: hostname mismatch") {
    TestPki pki;
    const auto origin = server_ctx(pki.leaf({"origin.test"}));
    const auto ctx = UpstreamTlsContext::create(trusting(pki, "other.test"), kFile, kBase);
    Link link(*ctx, *origin, nullptr, "other.test");
    CHECK(link.connect() == Result::kError);
    CHECK(link.client.verify_error() == "hostname mismatch");
  }

  TEST_CASE("a certificate from an untrusted CA is refused, unless verify is off") {
    TestPki pki;
    TestPki rogue;
    const auto origin = server_ctx(rogue.leaf({"origin.test"}));
    const auto ctx = UpstreamTlsContext::create(trusting(pki), kFile, kBase);
    Link link(*ctx, *origin, nullptr, "origin.test");
    CHECK(link.connect() == Result::kError);
    CHECK(link.client.verify_error() == "unable to get local issuer certificate");

    UpstreamTls off;
    off.verify = false;
    const auto lax = UpstreamTlsContext::create(off, kFile, kBase);
    CHECK_FALSE(lax->verify());
    Link ok(*lax, *origin, nullptr, "origin.test");
    CHECK(ok.connect() == Result::kOk);
  }

  TEST_CASE("the session cache offers the last session: the next connection resumes") {
    TestPki pki;
    const auto origin = server_ctx(pki.leaf({"origin.test"}));
    const auto ctx = UpstreamTlsContext::create(trusting(pki), kFile, kBase);
    UpstreamTlsSessionCache sessions;
    {
      Link first(*ctx, *origin, &sessions, "origin.test");
      REQUIRE(first.connect() == Result::kOk);
      CHECK_FALSE(first.client.resumed());
      // TLS 1.3 tickets come after the handshake: reading takes them in.
      CHECK(first.server_says("x") == "x");
      REQUIRE(sessions.get() != nullptr);
      first.client.close_notify();  // a clean end keeps the session resumable
    }
    Link second(*ctx, *origin, &sessions, "origin.test");
    REQUIRE(second.connect() == Result::kOk);
    CHECK(second.client.resumed());
  }

  TEST_CASE("session_reuse off: no session is kept") {
    TestPki pki;
    const auto origin = server_ctx(pki.leaf({"origin.test"}));
    UpstreamTls tls = trusting(pki);
    tls.session_reuse = false;
    const auto ctx = UpstreamTlsContext::create(tls, kFile, kBase);
    UpstreamTlsSessionCache sessions;
    Link first(*ctx, *origin, &sessions, "origin.test");
    REQUIRE(first.connect() == Result::kOk);
    CHECK(first.server_says("x") == "x");
    CHECK(sessions.get() == nullptr);
  }

  TEST_CASE("config errors name the file and the JSON path") {
    TestPki pki;
    const Leaf client = pki.leaf({"torii-client"});
    const Leaf other = pki.leaf({"other"});
    auto error_of = [](const UpstreamTls& tls) -> ConfigError {
      try {
        (void)UpstreamTlsContext::create(tls, kFile, kBase);
      } catch (const ConfigError& e) {
        return e;
      }
      FAIL("accepted");
      return ConfigError("", "", "");
    };
    UpstreamTls not_pem;
    not_pem.ca_path = pki.dir().write("garbage.pem", "not a certificate\n");
    const ConfigError ca = error_of(not_pem);
    CHECK(ca.file() == kFile);
    CHECK(ca.json_path() == "/upstreams/api/tls/ca");

    UpstreamTls mismatch = trusting(pki);
    mismatch.cert_path = client.cert_path;
    mismatch.key_path = other.key_path;
    const ConfigError key = error_of(mismatch);
    CHECK(key.json_path() == "/upstreams/api/tls/key");
    CHECK(std::string(key.problem()).find("does not match") != std::string::npos);

    UpstreamTls good = trusting(pki);
    good.cert_path = client.cert_path;
    good.key_path = client.key_path;
    CHECK(UpstreamTlsContext::create(good, kFile, kBase) != nullptr);
  }
}
