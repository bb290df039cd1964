// Unit tests for gateway/tls_context and gateway/tls_session: a server
// TlsSession (memory BIOs, sans-I/O) driven against an OpenSSL client that
// has its own pair of memory BIOs, by pumping the bytes both ways. The
// certificates are made at test time (support/tls_certs.hpp).
#include <doctest/doctest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/tls_session.hpp"
#include "conf/config.hpp"
#include "gateway/tls_context.hpp"
#include "tests/unit/support/tls_certs.hpp"

namespace {

using torii::TlsSession;
using torii::gateway::TicketKeys;
using torii::gateway::TlsServerContext;
using torii::test::ClientOptions;
using torii::test::KeyType;
using torii::test::Leaf;
using torii::test::LeafOptions;
using torii::test::SslCtxPtr;
using torii::test::SslSessionPtr;
using torii::test::TestPki;
using Result = TlsSession::Result;

constexpr const char* kConfigFile = "/etc/torii/torii.json";
constexpr const char* kBase = "/listeners/0/tls";

ClientOptions opts(int max_version, std::vector<std::string> alpn = {}, std::string sigalgs = {}) {
  ClientOptions o;
  o.max_version = max_version;
  o.alpn = std::move(alpn);
  o.sigalgs = std::move(sigalgs);
  return o;
}

std::shared_ptr<TicketKeys> fresh_keys() {
  auto keys = std::make_shared<TicketKeys>();
  keys->rotate(TicketKeys::generate());
  return keys;
}

torii::conf::TlsCertificate cert_of(const Leaf& leaf, std::vector<std::string> names = {}) {
  torii::conf::TlsCertificate c;
  c.cert_path = leaf.cert_path;
  c.key_path = leaf.key_path;
  c.names = std::move(names);
  return c;
}

torii::conf::ListenerTls tls_of(std::vector<torii::conf::TlsCertificate> certs) {
  torii::conf::ListenerTls tls;
  tls.certificates = std::move(certs);
  return tls;
}

std::shared_ptr<TlsServerContext> make_ctx(const torii::conf::ListenerTls& tls,
                                           std::shared_ptr<TicketKeys> keys = fresh_keys()) {
  return TlsServerContext::create(tls, kConfigFile, kBase, std::move(keys));
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool contains(const std::string& haystack, std::string_view needle) {
  return lower(haystack).find(lower(std::string(needle))) != std::string::npos;
}

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 8)) & 0xff);
  return s;
}

// A server TlsSession and an OpenSSL client connected through memory BIOs.
class Conn {
 public:
  Conn(const TlsServerContext& ctx, SSL_CTX* client_ctx, const std::string& sni = {},
       SSL_SESSION* session = nullptr)
      : server(ctx.new_ssl()), client_(SSL_new(client_ctx)) {
    REQUIRE(client_ != nullptr);
    c_in_ = BIO_new(BIO_s_mem());
    c_out_ = BIO_new(BIO_s_mem());
    SSL_set_bio(client_, c_in_, c_out_);
    SSL_set_connect_state(client_);
    if (!sni.empty()) REQUIRE(SSL_set_tlsext_host_name(client_, sni.c_str()) == 1);
    if (session != nullptr) REQUIRE(SSL_set_session(client_, session) == 1);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { SSL_free(client_); }

  SSL* client() const { return client_; }

  // Hands ciphertext the test took from the server to the client.
  void to_client(const std::string& wire) {
    REQUIRE(BIO_write(c_in_, wire.data(), static_cast<int>(wire.size())) ==
            static_cast<int>(wire.size()));
  }

  // Moves every pending ciphertext byte both ways; returns how many moved.
  size_t transfer() {
    size_t moved = 0;
    std::string out;
    const size_t pending = server.output_size();
    server.take_output(out);
    CHECK(out.size() == pending);
    if (!out.empty()) {
      REQUIRE(BIO_write(c_in_, out.data(), static_cast<int>(out.size())) ==
              static_cast<int>(out.size()));
      moved += out.size();
    }
    char buf[16384];
    int n = 0;
    while ((n = BIO_read(c_out_, buf, sizeof buf)) > 0) {
      server.feed(std::string_view(buf, static_cast<size_t>(n)));
      moved += static_cast<size_t>(n);
    }
    return moved;
  }

  // Runs both handshakes to their end (bounded); true when both completed.
  // `stale_errors`: leave an unrelated error on the thread's OpenSSL queue
  // before each server step (another connection's leftovers).
  bool handshake(bool stale_errors = false) {
    for (int round = 0; round < 50; ++round) {
      if (!client_done_ && !client_failed_) {
        const int rc = SSL_do_handshake(client_);
        if (rc == 1) {
          client_done_ = true;
        } else {
          const int e = SSL_get_error(client_, rc);
          if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            client_failed_ = true;
            client_error_ = torii::test::openssl_error_text();
          }
        }
        ERR_clear_error();
      }
      transfer();
      if (!server_done_ && !server_failed_) {
        if (stale_errors) ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
        server_result_ = server.handshake();
        if (server_result_ == Result::kOk) server_done_ = true;
        if (server_result_ == Result::kError || server_result_ == Result::kClosed) {
          server_failed_ = true;
        }
        ERR_clear_error();
      }
      transfer();
      const bool client_over = client_done_ || client_failed_;
      const bool server_over = server_done_ || server_failed_;
      if (client_over && server_over) break;
      if (server_failed_ && !client_done_ && round > 5) break;
      if (client_failed_ && !server_done_ && round > 5) break;
    }
    INFO("client error: " << client_error_ << " server error: " << server.error());
    return client_done_ && server_done_;
  }

  // SSL_read on the client until it wants more; returns the last
  // SSL_get_error (SSL_ERROR_WANT_READ normally) and appends the plaintext.
  int client_read(std::string& into) {
    char buf[16384];
    for (int i = 0; i < 100'000; ++i) {
      const int n = SSL_read(client_, buf, sizeof buf);
      if (n > 0) {
        into.append(buf, static_cast<size_t>(n));
        continue;
      }
      const int e = SSL_get_error(client_, n);
      ERR_clear_error();
      return e;
    }
    FAIL("client_read did not stop");
    return SSL_ERROR_SSL;
  }

  // Server read() with `capacity` until it returns something other than kOk.
  Result server_read(std::string& into, size_t capacity = 16384, size_t* max_piece = nullptr) {
    std::vector<char> buf(capacity);
    for (int i = 0; i < 1'000'000; ++i) {
      size_t n = 0;
      const Result r = server.read(buf.data(), buf.size(), n);
      if (r != Result::kOk) return r;
      REQUIRE(n <= capacity);
      if (max_piece != nullptr) *max_piece = std::max(*max_piece, n);
      into.append(buf.data(), n);
      if (n == 0) return r;  // kOk with nothing: stop rather than spin
    }
    FAIL("server_read did not stop");
    return Result::kError;
  }

  // Processes what the server sent after the handshake (TLS 1.3 tickets),
  // then returns the client's session.
  SslSessionPtr client_session() {
    std::string ignored;
    transfer();
    CHECK(client_read(ignored) == SSL_ERROR_WANT_READ);
    CHECK(ignored.empty());
    return SslSessionPtr(SSL_get1_session(client_));
  }

  bool client_done() const { return client_done_; }
  bool client_failed() const { return client_failed_; }
  bool server_failed() const { return server_failed_; }
  Result server_result() const { return server_result_; }
  const std::string& client_error() const { return client_error_; }

  // The DNS names of the certificate the client received.
  std::vector<std::string> peer_names() const {
    return torii::test::san_dns_names(SSL_get0_peer_certificate(client_));
  }
  int peer_key_type() const {
    const X509* peer = SSL_get0_peer_certificate(client_);
    if (peer == nullptr) return NID_undef;
    return EVP_PKEY_get_base_id(X509_get0_pubkey(peer));
  }

  TlsSession server;

 private:
  SSL* client_;
  BIO* c_in_ = nullptr;   // ciphertext from the server (owned by client_)
  BIO* c_out_ = nullptr;  // ciphertext to the server (owned by client_)
  bool client_done_ = false, client_failed_ = false;
  bool server_done_ = false, server_failed_ = false;
  Result server_result_ = Result::kWantMore;
  std::string client_error_;
};

// One EC certificate for "localhost" (and the PKI that signed it).
struct Simple {
  TestPki pki;
  Leaf leaf = pki.leaf({"localhost"});
  torii::conf::ListenerTls tls = tls_of({cert_of(leaf)});
};

}  // namespace

TEST_SUITE("tls handshake") {
  TEST_CASE("handshake completes; ALPN http/1.1 when offered with h2") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx(opts(0, {"h2", "http/1.1"}));
    Conn c(*ctx, cctx.get(), "localhost");
    CHECK_FALSE(c.server.established());
    REQUIRE(c.handshake());
    CHECK(c.server.established());
    CHECK(c.server.alpn() == "http/1.1");
    const unsigned char* proto = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(c.client(), &proto, &len);
    CHECK(std::string_view(reinterpret_cast<const char*>(proto), len) == "http/1.1");
    CHECK(c.server.version() == "TLSv1.3");
    CHECK(c.server.server_name() == "localhost");
    CHECK_FALSE(c.server.resumed());
    CHECK(c.server.error().empty());
    CHECK(c.peer_names() == std::vector<std::string>{"localhost"});
    CHECK(SSL_get_verify_result(c.client()) == X509_V_OK);
    // Once established, handshake() keeps answering kOk.
    CHECK(c.server.handshake() == Result::kOk);
  }

  TEST_CASE("a client offering only h2 gets no ALPN, but the handshake completes") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx(opts(0, {"h2"}));
    Conn c(*ctx, cctx.get(), "localhost");
    REQUIRE(c.handshake());
    CHECK(c.server.alpn().empty());
    const unsigned char* proto = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(c.client(), &proto, &len);
    CHECK(len == 0);
  }

  TEST_CASE("no ALPN offered, no SNI sent") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx();
    Conn c(*ctx, cctx.get());
    REQUIRE(c.handshake());
    CHECK(c.server.alpn().empty());
    CHECK(c.server.server_name().empty());
    CHECK(c.peer_names() == std::vector<std::string>{"localhost"});
  }

  TEST_CASE("TLS 1.2 when the client caps at 1.2") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx(opts(TLS1_2_VERSION, {"http/1.1"}));
    Conn c(*ctx, cctx.get(), "localhost");
    REQUIRE(c.handshake());
    CHECK(c.server.version() == "TLSv1.2");
    CHECK(c.server.alpn() == "http/1.1");
    CHECK(c.server.server_name() == "localhost");
  }

  TEST_CASE("a client capped at TLS 1.1 is refused") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx(opts(TLS1_1_VERSION));
    Conn c(*ctx, cctx.get(), "localhost");
    CHECK_FALSE(c.handshake());
    CHECK(c.server_result() == Result::kError);
    CHECK_FALSE(c.server.established());
    CHECK_FALSE(c.server.error().empty());
    CHECK(c.client_failed());  // got the server's alert
    INFO("server error: " << c.server.error() << ", client error: " << c.client_error());
    CHECK(contains(c.server.error() + c.client_error(), "protocol"));
  }

  TEST_CASE("min_version TLSv1.3 refuses a TLS 1.2 client and accepts a 1.3 one") {
    Simple s;
    s.tls.min_version = "TLSv1.3";
    const auto ctx = make_ctx(s.tls);
    {
      const auto cctx = s.pki.client_ctx(opts(TLS1_2_VERSION));
      Conn c(*ctx, cctx.get(), "localhost");
      CHECK_FALSE(c.handshake());
      CHECK(c.server_result() == Result::kError);
      CHECK_FALSE(c.server.error().empty());
    }
    {
      const auto cctx = s.pki.client_ctx();
      Conn c(*ctx, cctx.get(), "localhost");
      REQUIRE(c.handshake());
      CHECK(c.server.version() == "TLSv1.3");
    }
  }

  TEST_CASE("handshake byte by byte") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx(opts(0, {"http/1.1"}));
    TlsSession server(ctx->new_ssl());
    const torii::test::SslPtr owner(SSL_new(cctx.get()));
    SSL* client = owner.get();
    REQUIRE(client != nullptr);
    BIO* c_in = BIO_new(BIO_s_mem());
    BIO* c_out = BIO_new(BIO_s_mem());
    SSL_set_bio(client, c_in, c_out);
    SSL_set_connect_state(client);
    bool client_done = false;
    Result r = Result::kWantMore;
    for (int round = 0; round < 20 && !(client_done && r == Result::kOk); ++round) {
      if (!client_done) {
        const int rc = SSL_do_handshake(client);
        client_done = rc == 1;
        if (!client_done) REQUIRE(SSL_get_error(client, rc) == SSL_ERROR_WANT_READ);
      }
      char b = 0;
      while (r != Result::kOk && BIO_read(c_out, &b, 1) == 1) {
        server.feed(std::string_view(&b, 1));
        r = server.handshake();
        REQUIRE(r != Result::kError);
      }
      if (r != Result::kOk) r = server.handshake();
      REQUIRE(r != Result::kError);
      std::string out;
      server.take_output(out);
      if (!out.empty()) BIO_write(c_in, out.data(), static_cast<int>(out.size()));
    }
    CHECK(client_done);
    CHECK(r == Result::kOk);
    CHECK(server.alpn() == "http/1.1");
  }

  TEST_CASE("a stale error on the thread's OpenSSL queue does not break a handshake") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx();
    Conn c(*ctx, cctx.get(), "localhost");
    CHECK(c.handshake(/*stale_errors=*/true));
    ERR_clear_error();
  }

  TEST_CASE("handshake_timeout_ms comes from the config") {
    Simple s;
    s.tls.handshake_timeout = torii::conf::Millis{2'500};
    CHECK(make_ctx(s.tls)->handshake_timeout_ms() == 2'500);
  }
}

TEST_SUITE("tls data") {
  TEST_CASE("application data both ways, byte exact") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    for (const int max : {0, TLS1_2_VERSION}) {
      CAPTURE(max);
      const auto cctx = s.pki.client_ctx(opts(max));
      Conn c(*ctx, cctx.get(), "localhost");
      REQUIRE(c.handshake());

      // A 100 KB request, written in pieces of assorted sizes.
      const std::string request = pattern(100 * 1024, 1);
      std::string got;
      size_t pos = 0;
      const size_t pieces[] = {1, 100, 5'000, 16'384, 16'385, 30'000};
      for (size_t i = 0; pos < request.size(); ++i) {
        const size_t n = std::min(pieces[i % 6], request.size() - pos);
        REQUIRE(SSL_write(c.client(), request.data() + pos, static_cast<int>(n)) ==
                static_cast<int>(n));
        pos += n;
        c.transfer();
        CHECK(c.server_read(got) == Result::kWantMore);
      }
      CHECK(got.size() == request.size());
      CHECK(got == request);

      // A 1 MB response.
      const std::string response = pattern(1024 * 1024, 2);
      REQUIRE(c.server.write(response));
      CHECK(c.server.output_size() > response.size());
      c.transfer();
      CHECK(c.server.output_size() == 0);
      std::string received;
      CHECK(c.client_read(received) == SSL_ERROR_WANT_READ);
      CHECK(received.size() == response.size());
      CHECK(received == response);

      // And again, with small writes.
      for (int i = 0; i < 10; ++i) REQUIRE(c.server.write("chunk" + std::to_string(i) + ";"));
      c.transfer();
      std::string small;
      CHECK(c.client_read(small) == SSL_ERROR_WANT_READ);
      CHECK(small == "chunk0;chunk1;chunk2;chunk3;chunk4;chunk5;chunk6;chunk7;chunk8;chunk9;");
    }
  }

  TEST_CASE("write_all gathers small spans into one record, large ones into full records") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx();
    Conn c(*ctx, cctx.get(), "localhost");
    REQUIRE(c.handshake());
    c.transfer();  // tickets and anything else after the handshake
    std::string drained;
    (void)c.client_read(drained);
    // The application-data records in the server's output, by plaintext size
    // (TLS 1.3 record overhead: 1 inner type byte + 16 tag bytes).
    auto record_sizes = [&](const std::string& wire) {
      std::vector<size_t> sizes;
      for (size_t at = 0; at + 5 <= wire.size();) {
        const size_t len = (static_cast<unsigned char>(wire[at + 3]) << 8) |
                           static_cast<unsigned char>(wire[at + 4]);
        if (wire[at] == 0x17) sizes.push_back(len - 17);
        at += 5 + len;
      }
      return sizes;
    };
    torii::WriteBatchPool pool;
    struct Case {
      std::vector<size_t> spans;
      std::vector<size_t> records;
    };
    const Case cases[] = {
        {{180, 1024}, {1204}},                  // a head and a 1 KiB body: one record
        {{180, 2, 1024, 2, 5}, {1213}},         // chunked framing pieces too
        {{16384}, {16384}},                     // exactly one record
        {{100, 40'000}, {16384, 16384, 7332}},  // topped up, then whole records
        {{100, 16284, 1}, {16384, 1}},          // fills one exactly
        {{70'000, 10}, {16384, 16384, 16384, 16384, 4474}},
    };
    unsigned seed = 3;
    for (const Case& k : cases) {
      CAPTURE(k.spans.size());
      torii::WriteBatch* batch = pool.acquire();
      std::string expected;
      std::vector<std::string> owned;  // static spans must outlive the batch
      for (size_t n : k.spans) owned.push_back(pattern(n, seed++));
      for (const std::string& o : owned) {
        batch->append_static(o);
        expected += o;
      }
      REQUIRE(c.server.write_all(*batch));
      pool.recycle(batch);
      std::string wire;
      c.server.take_output(wire);
      CHECK(record_sizes(wire) == k.records);
      c.to_client(wire);
      std::string got;
      CHECK(c.client_read(got) == SSL_ERROR_WANT_READ);
      CHECK(got == expected);
    }
  }

  TEST_CASE("read() with a small capacity returns the data in pieces") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx();
    Conn c(*ctx, cctx.get(), "localhost");
    REQUIRE(c.handshake());
    const std::string msg = pattern(1000, 3);
    REQUIRE(SSL_write(c.client(), msg.data(), static_cast<int>(msg.size())) == 1000);
    c.transfer();
    std::string got;
    size_t max_piece = 0;
    CHECK(c.server_read(got, 7, &max_piece) == Result::kWantMore);
    CHECK(got == msg);
    CHECK(max_piece == 7);
    // Nothing more to read.
    char buf[16];
    size_t n = 99;
    CHECK(c.server.read(buf, sizeof buf, n) == Result::kWantMore);
  }

  TEST_CASE("data sent right after the client's Finished is readable once the handshake is done") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx();
    Conn d(*ctx, cctx.get(), "localhost");
    for (int round = 0; round < 10; ++round) {
      const int rc = SSL_do_handshake(d.client());
      if (rc == 1) break;
      REQUIRE(SSL_get_error(d.client(), rc) == SSL_ERROR_WANT_READ);
      d.transfer();
      REQUIRE(d.server.handshake() != Result::kError);
      d.transfer();
    }
    REQUIRE(SSL_is_init_finished(d.client()));
    REQUIRE(SSL_write(d.client(), "GET / HTTP/1.1\r\n\r\n", 18) == 18);
    d.transfer();
    REQUIRE(d.server.handshake() == Result::kOk);
    std::string got;
    CHECK(d.server_read(got) == Result::kWantMore);
    CHECK(got == "GET / HTTP/1.1\r\n\r\n");
  }

  TEST_CASE("close_notify both ways") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    for (const int max : {0, TLS1_2_VERSION}) {
      CAPTURE(max);
      const auto cctx = s.pki.client_ctx(opts(max));
      SUBCASE("server close_notify: the client reads SSL_ERROR_ZERO_RETURN") {
        Conn c(*ctx, cctx.get(), "localhost");
        REQUIRE(c.handshake());
        REQUIRE(c.server.write("bye"));
        c.server.close_notify();
        c.transfer();
        std::string got;
        CHECK(c.client_read(got) == SSL_ERROR_ZERO_RETURN);
        CHECK(got == "bye");
      }
      SUBCASE("client close_notify: server read() returns kClosed") {
        Conn c(*ctx, cctx.get(), "localhost");
        REQUIRE(c.handshake());
        REQUIRE(SSL_write(c.client(), "last", 4) == 4);
        CHECK(SSL_shutdown(c.client()) == 0);
        c.transfer();
        std::string got;
        CHECK(c.server_read(got) == Result::kClosed);
        CHECK(got == "last");
      }
    }
  }

  TEST_CASE("garbage ciphertext is an error") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    SUBCASE("instead of a ClientHello") {
      TlsSession server(ctx->new_ssl());
      server.feed(std::string("\x01\x02\x03\x04\x05\x06\x07\x08garbage garbage garbage", 31));
      CHECK(server.handshake() == Result::kError);
      CHECK_FALSE(server.error().empty());
      CHECK_FALSE(server.established());
      CHECK_FALSE(server.write("x"));
    }
    SUBCASE("plain HTTP to the TLS port") {
      TlsSession server(ctx->new_ssl());
      server.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
      CHECK(server.handshake() == Result::kError);
      CHECK_FALSE(server.error().empty());
    }
    SUBCASE("a forged application-data record after the handshake") {
      const auto cctx = s.pki.client_ctx();
      Conn c(*ctx, cctx.get(), "localhost");
      REQUIRE(c.handshake());
      std::string record("\x17\x03\x03\x00\x40", 5);
      record += pattern(0x40, 9);
      c.server.feed(record);
      char buf[256];
      size_t n = 0;
      CHECK(c.server.read(buf, sizeof buf, n) == Result::kError);
      CHECK_FALSE(c.server.error().empty());
      CHECK_FALSE(c.server.write("x"));
      ERR_clear_error();
    }
  }

  TEST_CASE("looks_like_http") {
    CHECK(TlsSession::looks_like_http("GET / HTTP/1.1\r\n"));
    CHECK(TlsSession::looks_like_http("POST "));
    CHECK(TlsSession::looks_like_http("HEAD "));
    CHECK_FALSE(TlsSession::looks_like_http(std::string_view("\x16\x03\x01", 3)));
    CHECK_FALSE(TlsSession::looks_like_http(std::string_view("\x16\x03\x01\x02\x00\x01", 6)));
    CHECK_FALSE(TlsSession::looks_like_http(""));
    CHECK_FALSE(TlsSession::looks_like_http("G"));
  }
}

TEST_SUITE("tls sni") {
  TEST_CASE("exact, one-label wildcard, else the default") {
    TestPki pki;
    const Leaf def = pki.leaf({"default.test"});
    const Leaf a = pki.leaf({"a.test"});
    const Leaf wild = pki.leaf({"*.b.test"});
    const auto ctx = make_ctx(tls_of({cert_of(def), cert_of(a), cert_of(wild)}));
    struct Case {
      std::string sni;
      std::string expected_cert;
    };
    const std::vector<Case> cases = {
        {"a.test", "a.test"},
        {"x.b.test", "*.b.test"},
        {"c.test", "default.test"},
        {"deep.x.b.test", "default.test"},
        {"b.test", "default.test"},
        {"", "default.test"},
        {"default.test", "default.test"},
        {"A.Test", "a.test"},
    };
    for (const int max : {0, TLS1_2_VERSION}) {
      const auto cctx = pki.client_ctx(opts(max));
      for (const auto& tc : cases) {
        CAPTURE(max);
        CAPTURE(tc.sni);
        Conn c(*ctx, cctx.get(), tc.sni);
        REQUIRE(c.handshake());
        CHECK(c.server.server_name() == tc.sni);  // as sent
        CHECK(c.peer_names() == std::vector<std::string>{tc.expected_cert});
      }
    }
    CHECK(ctx->select("a.test") != ctx->default_ctx());
    CHECK(ctx->select("x.b.test") != ctx->default_ctx());
    CHECK(ctx->select("x.b.test") != ctx->select("a.test"));
    CHECK(ctx->select("y.b.test") == ctx->select("x.b.test"));
    CHECK(ctx->select("c.test") == ctx->default_ctx());
    CHECK(ctx->select("deep.x.b.test") == ctx->default_ctx());
    CHECK(ctx->select("") == ctx->default_ctx());
    const auto& names = ctx->names();
    for (const char* n : {"a.test", "*.b.test", "default.test"}) {
      CAPTURE(n);
      CHECK(std::any_of(names.begin(), names.end(),
                        [&](const std::string& s) { return s.find(n) != std::string::npos; }));
    }
  }

  TEST_CASE("several SAN names; configured names override the SAN") {
    TestPki pki;
    const Leaf def = pki.leaf({"default.test"});
    const Leaf multi = pki.leaf({"one.test", "two.test", "*.three.test"});
    const Leaf over = pki.leaf({"san.test"});
    const auto ctx = make_ctx(
        tls_of({cert_of(def), cert_of(multi), cert_of(over, {"override.test", "*.ov.test"})}));
    const auto cctx = pki.client_ctx();
    struct Case {
      std::string sni;
      std::string expected_first_name;
    };
    for (const auto& tc : std::vector<Case>{{"one.test", "one.test"},
                                            {"two.test", "one.test"},
                                            {"x.three.test", "one.test"},
                                            {"override.test", "san.test"},
                                            {"q.ov.test", "san.test"},
                                            {"san.test", "default.test"}}) {
      CAPTURE(tc.sni);
      Conn c(*ctx, cctx.get(), tc.sni);
      REQUIRE(c.handshake());
      const auto got = c.peer_names();
      REQUIRE_FALSE(got.empty());
      CHECK(got[0] == tc.expected_first_name);
    }
  }

  TEST_CASE("the chain in the cert file is sent") {
    TestPki pki;
    LeafOptions opt;
    opt.dns_names = {"chain.test"};
    opt.with_chain = true;
    const Leaf leaf = pki.issue(opt);
    const auto ctx = make_ctx(tls_of({cert_of(leaf)}));
    const auto cctx = pki.client_ctx();
    Conn c(*ctx, cctx.get(), "chain.test");
    REQUIRE(c.handshake());
    const STACK_OF(X509)* chain = SSL_get_peer_cert_chain(c.client());
    REQUIRE(chain != nullptr);
    CHECK(sk_X509_num(chain) == 2);
  }

  TEST_CASE("ECDSA and RSA certificates for one name: the client gets the one it supports") {
    TestPki pki;
    const Leaf def = pki.leaf({"default.test"});
    const Leaf ec = pki.leaf({"dual.test"});
    const Leaf rsa = pki.leaf({"dual.test"}, KeyType::kRsa2048);
    for (const bool ec_first : {true, false}) {
      const auto ctx = make_ctx(ec_first ? tls_of({cert_of(def), cert_of(ec), cert_of(rsa)})
                                         : tls_of({cert_of(def), cert_of(rsa), cert_of(ec)}));
      for (const int max : {0, TLS1_2_VERSION}) {
        CAPTURE(ec_first);
        CAPTURE(max);
        {
          const auto cctx = pki.client_ctx(opts(max, {}, "ECDSA+SHA256"));
          Conn c(*ctx, cctx.get(), "dual.test");
          REQUIRE(c.handshake());
          CHECK(c.peer_key_type() == EVP_PKEY_EC);
          CHECK(c.peer_names() == std::vector<std::string>{"dual.test"});
        }
        {
          const auto cctx = pki.client_ctx(opts(max, {}, "RSA-PSS+SHA256:RSA+SHA256"));
          Conn c(*ctx, cctx.get(), "dual.test");
          REQUIRE(c.handshake());
          CHECK(c.peer_key_type() == EVP_PKEY_RSA);
          CHECK(c.peer_names() == std::vector<std::string>{"dual.test"});
        }
      }
    }
  }

  TEST_CASE("ECDSA and RSA default certificates") {
    TestPki pki;
    const Leaf ec = pki.leaf({"default.test"});
    const Leaf rsa = pki.leaf({"default.test"}, KeyType::kRsa2048);
    const auto ctx = make_ctx(tls_of({cert_of(ec), cert_of(rsa)}));
    const auto ec_client = pki.client_ctx(opts(0, {}, "ECDSA+SHA256"));
    const auto rsa_client = pki.client_ctx(opts(0, {}, "RSA-PSS+SHA256:RSA+SHA256"));
    for (const std::string sni : {"", "unknown.test", "default.test"}) {
      CAPTURE(sni);
      Conn e(*ctx, ec_client.get(), sni);
      REQUIRE(e.handshake());
      CHECK(e.peer_key_type() == EVP_PKEY_EC);
      Conn r(*ctx, rsa_client.get(), sni);
      REQUIRE(r.handshake());
      CHECK(r.peer_key_type() == EVP_PKEY_RSA);
    }
  }
}

namespace {

// A full handshake against `ctx`; returns the client's session.
SslSessionPtr full_session(const TlsServerContext& ctx, SSL_CTX* cctx) {
  Conn c(ctx, cctx, "localhost");
  REQUIRE(c.handshake());
  CHECK_FALSE(c.server.resumed());
  CHECK(SSL_session_reused(c.client()) == 0);
  SslSessionPtr session = c.client_session();
  // A clean close: SSL_free after an unclean one marks the session not resumable.
  SSL_shutdown(c.client());
  return session;
}

// Whether `session` resumes against `ctx` (the handshake must succeed either way).
bool resumes(const TlsServerContext& ctx, SSL_CTX* cctx, SSL_SESSION* session) {
  Conn c(ctx, cctx, "localhost", session);
  REQUIRE(c.handshake());
  const bool server_says = c.server.resumed();
  CHECK(server_says == (SSL_session_reused(c.client()) == 1));
  // Data still flows.
  REQUIRE(c.server.write("ok"));
  c.transfer();
  std::string got;
  CHECK(c.client_read(got) == SSL_ERROR_WANT_READ);
  CHECK(got == "ok");
  SSL_shutdown(c.client());  // keeps `session` resumable for the next try
  return server_says;
}

}  // namespace

TEST_SUITE("tls resumption") {
  TEST_CASE("a session resumes on another worker's context with the same ticket keys") {
    Simple s;
    const auto keys = fresh_keys();
    const auto a = make_ctx(s.tls, keys);
    const auto b = make_ctx(s.tls, keys);
    for (const int max : {0, TLS1_2_VERSION}) {
      CAPTURE(max);
      const auto cctx = s.pki.client_ctx(opts(max));
      const auto session = full_session(*a, cctx.get());
      REQUIRE(session != nullptr);
      CHECK(SSL_SESSION_is_resumable(session.get()) == 1);
      CHECK(resumes(*b, cctx.get(), session.get()));
      CHECK(resumes(*a, cctx.get(), session.get()));
    }
  }

  TEST_CASE("different ticket keys: a full handshake") {
    Simple s;
    const auto a = make_ctx(s.tls, fresh_keys());
    const auto b = make_ctx(s.tls, fresh_keys());
    for (const int max : {0, TLS1_2_VERSION}) {
      CAPTURE(max);
      const auto cctx = s.pki.client_ctx(opts(max));
      const auto session = full_session(*a, cctx.get());
      REQUIRE(session != nullptr);
      CHECK_FALSE(resumes(*b, cctx.get(), session.get()));
    }
  }

  TEST_CASE("rotation: the previous key still decrypts, older ones do not") {
    Simple s;
    for (const int max : {0, TLS1_2_VERSION}) {
      CAPTURE(max);
      const auto keys = fresh_keys();
      const auto a = make_ctx(s.tls, keys);
      const auto b = make_ctx(s.tls, keys);
      const auto cctx = s.pki.client_ctx(opts(max));
      const auto session = full_session(*a, cctx.get());
      REQUIRE(session != nullptr);

      keys->rotate(TicketKeys::generate());
      CHECK(keys->keys().size() == 2);
      CHECK(resumes(*b, cctx.get(), session.get()));
      // Tickets issued now are under the new key and resume too.
      const auto newer = full_session(*b, cctx.get());
      REQUIRE(newer != nullptr);
      CHECK(resumes(*a, cctx.get(), newer.get()));

      keys->rotate(TicketKeys::generate());
      keys->rotate(TicketKeys::generate());
      CHECK(keys->keys().size() == 2);
      CHECK_FALSE(resumes(*b, cctx.get(), session.get()));
      CHECK_FALSE(resumes(*a, cctx.get(), session.get()));
    }
  }

  TEST_CASE("TicketKeys: newest first, at most `keep`") {
    TicketKeys keys;
    CHECK(keys.keys().empty());
    const auto k1 = TicketKeys::generate();
    const auto k2 = TicketKeys::generate();
    const auto k3 = TicketKeys::generate();
    CHECK(std::string_view(reinterpret_cast<const char*>(k1.name), 16) !=
          std::string_view(reinterpret_cast<const char*>(k2.name), 16));
    keys.rotate(k1);
    keys.rotate(k2);
    REQUIRE(keys.keys().size() == 2);
    CHECK(std::equal(k2.name, k2.name + 16, keys.keys()[0].name));
    CHECK(std::equal(k1.name, k1.name + 16, keys.keys()[1].name));
    keys.rotate(k3, 3);
    REQUIRE(keys.keys().size() == 3);
    CHECK(std::equal(k3.name, k3.name + 16, keys.keys()[0].name));
    keys.rotate(k1, 1);
    REQUIRE(keys.keys().size() == 1);
    CHECK(std::equal(k1.name, k1.name + 16, keys.keys()[0].name));
  }

  TEST_CASE("session_tickets false: no resumption") {
    Simple s;
    s.tls.session_tickets = false;
    const auto keys = fresh_keys();
    const auto a = make_ctx(s.tls, keys);
    const auto b = make_ctx(s.tls, keys);
    for (const int max : {0, TLS1_2_VERSION}) {
      CAPTURE(max);
      const auto cctx = s.pki.client_ctx(opts(max));
      const auto session = full_session(*a, cctx.get());
      REQUIRE(session != nullptr);
      CHECK_FALSE(resumes(*b, cctx.get(), session.get()));
      CHECK_FALSE(resumes(*a, cctx.get(), session.get()));
    }
  }
}

TEST_SUITE("tls context errors") {
  template <typename F>
  torii::conf::ConfigError config_error(F && f) {
    try {
      f();
    } catch (const torii::conf::ConfigError& e) {
      return e;
    }
    FAIL("no ConfigError");
    return torii::conf::ConfigError("", "", "");
  }

  TEST_CASE("a key that does not match its certificate") {
    TestPki pki;
    const Leaf a = pki.leaf({"a.test"});
    const Leaf b = pki.leaf({"b.test"});
    torii::conf::TlsCertificate wrong = cert_of(b);
    wrong.key_path = a.key_path;
    const auto e = config_error([&] { make_ctx(tls_of({cert_of(a), wrong})); });
    CHECK(e.file() == kConfigFile);
    CHECK(e.json_path() == "/listeners/0/tls/certificates/1/key");
    INFO("problem: " << e.problem());
    CHECK(contains(e.problem(), "match"));
  }

  TEST_CASE("an RSA key for an EC certificate") {
    TestPki pki;
    const Leaf ec = pki.leaf({"a.test"});
    const Leaf rsa = pki.leaf({"a.test"}, KeyType::kRsa2048);
    torii::conf::TlsCertificate wrong = cert_of(ec);
    wrong.key_path = rsa.key_path;
    const auto e = config_error([&] { make_ctx(tls_of({wrong})); });
    CHECK(e.json_path() == "/listeners/0/tls/certificates/0/key");
  }

  TEST_CASE("a cert file that is not PEM") {
    TestPki pki;
    const Leaf a = pki.leaf({"a.test"});
    torii::conf::TlsCertificate bad = cert_of(a);
    bad.cert_path = pki.dir().write("bad.crt", "this is not a certificate\n");
    const auto e = config_error([&] { make_ctx(tls_of({bad, cert_of(a)})); });
    CHECK(e.file() == kConfigFile);
    CHECK(e.json_path() == "/listeners/0/tls/certificates/0/cert");
    INFO("problem: " << e.problem());
    CHECK_FALSE(e.problem().empty());
    CHECK((contains(e.problem(), "cert") || contains(e.problem(), "pem")));
  }

  TEST_CASE("a key file that is not PEM, missing files") {
    TestPki pki;
    const Leaf a = pki.leaf({"a.test"});
    {
      torii::conf::TlsCertificate bad = cert_of(a);
      bad.key_path = pki.dir().write("bad.key", "-----BEGIN PRIVATE KEY-----\nxx\n");
      const auto e = config_error([&] { make_ctx(tls_of({bad})); });
      CHECK(e.json_path() == "/listeners/0/tls/certificates/0/key");
      CHECK_FALSE(e.problem().empty());
    }
    {
      torii::conf::TlsCertificate bad = cert_of(a);
      bad.cert_path = (pki.dir().path() / "missing.crt").string();
      const auto e = config_error([&] { make_ctx(tls_of({cert_of(a), bad})); });
      CHECK(e.json_path() == "/listeners/0/tls/certificates/1/cert");
      INFO("problem: " << e.problem());
      CHECK_FALSE(e.problem().empty());
    }
    {
      torii::conf::TlsCertificate bad = cert_of(a);
      bad.key_path = (pki.dir().path() / "missing.key").string();
      const auto e = config_error([&] { make_ctx(tls_of({bad})); });
      CHECK(e.json_path() == "/listeners/0/tls/certificates/0/key");
    }
  }

  TEST_CASE("a bad cipher list, bad cipher suites") {
    Simple s;
    {
      auto tls = s.tls;
      tls.ciphers = "NOT-A-CIPHER:ALSO-NOT-ONE";
      const auto e = config_error([&] { make_ctx(tls); });
      CHECK(e.file() == kConfigFile);
      CHECK(e.json_path() == "/listeners/0/tls/ciphers");
      INFO("problem: " << e.problem());
      CHECK_FALSE(e.problem().empty());
    }
    {
      auto tls = s.tls;
      tls.ciphersuites = "TLS_NOT_A_SUITE";
      const auto e = config_error([&] { make_ctx(tls); });
      CHECK(e.file() == kConfigFile);
      CHECK(e.json_path() == "/listeners/0/tls/ciphersuites");
      INFO("problem: " << e.problem());
      CHECK_FALSE(e.problem().empty());
    }
    ERR_clear_error();
  }

  TEST_CASE("an expired certificate loads, with a warning") {
    TestPki pki;
    const Leaf ok = pki.leaf({"ok.test"});
    LeafOptions opt;
    opt.dns_names = {"old.test"};
    opt.not_before_s = -10 * 86400;  // expired yesterday
    opt.not_after_s = -86400;
    const Leaf old = pki.issue(opt);
    const auto ctx = make_ctx(tls_of({cert_of(ok), cert_of(old)}));
    REQUIRE(ctx != nullptr);
    INFO("warnings: " << ctx->warnings().size());
    REQUIRE_FALSE(ctx->warnings().empty());
    CHECK(std::any_of(ctx->warnings().begin(), ctx->warnings().end(),
                      [](const std::string& w) { return contains(w, "expire"); }));
    const auto fine = make_ctx(tls_of({cert_of(ok)}));
    CHECK(fine->warnings().empty());
  }

  TEST_CASE("build_tls_contexts: one per listener, null for plain ones") {
    Simple s;
    torii::conf::Config config;
    config.source_path = "/srv/torii.json";
    config.listeners.resize(3);
    config.listeners[1].tls = s.tls;
    const auto keys = fresh_keys();
    const auto contexts = torii::gateway::build_tls_contexts(config, keys).listeners;
    REQUIRE(contexts.size() == 3);
    CHECK(contexts[0] == nullptr);
    CHECK(contexts[1] != nullptr);
    CHECK(contexts[2] == nullptr);

    torii::conf::TlsCertificate bad = cert_of(s.leaf);
    bad.key_path = s.pki.leaf({"other"}).key_path;
    config.listeners[2].tls = tls_of({bad});
    const auto e = config_error([&] { torii::gateway::build_tls_contexts(config, keys); });
    CHECK(e.file() == "/srv/torii.json");
    CHECK(e.json_path() == "/listeners/2/tls/certificates/0/key");
  }
}

TEST_SUITE("tls sni") {
  TEST_CASE(
      "the first certificate stays the default when a later one of the same key type "
      "shares its name") {
    TestPki pki;
    const Leaf first = pki.leaf({"default.test"});
    const Leaf second = pki.leaf({"default.test", "other.test"});
    const auto ctx = make_ctx(tls_of({cert_of(first), cert_of(second)}));
    const auto cctx = pki.client_ctx();
    for (const std::string sni : {"", "unknown.test", "default.test"}) {
      CAPTURE(sni);
      Conn c(*ctx, cctx.get(), sni);
      REQUIRE(c.handshake());
      CHECK(c.peer_names() == std::vector<std::string>{"default.test"});
    }
    Conn c(*ctx, cctx.get(), "other.test");
    REQUIRE(c.handshake());
    CHECK(c.peer_names() == std::vector<std::string>{"default.test", "other.test"});
  }
}

TEST_SUITE("tls context errors") {
  TEST_CASE("the ECDSA key given for the RSA certificate of one name") {
    TestPki pki;
    const Leaf ec = pki.leaf({"dual.test"});
    const Leaf rsa = pki.leaf({"dual.test"}, KeyType::kRsa2048);
    torii::conf::TlsCertificate wrong = cert_of(rsa);
    wrong.key_path = ec.key_path;  // the ECDSA entry copied, only "cert" changed
    bool threw = false;
    try {
      make_ctx(tls_of({cert_of(ec), wrong}));
    } catch (const torii::conf::ConfigError& e) {
      threw = true;
      CHECK(e.json_path() == "/listeners/0/tls/certificates/1/key");
    }
    CHECK(threw);
    ERR_clear_error();
  }
}

TEST_SUITE("tls data") {
  TEST_CASE("a stale error on the thread's OpenSSL queue does not break read()") {
    Simple s;
    const auto ctx = make_ctx(s.tls);
    const auto cctx = s.pki.client_ctx();
    Conn c(*ctx, cctx.get(), "localhost");
    REQUIRE(c.handshake());
    REQUIRE(SSL_write(c.client(), "abc", 3) == 3);
    c.transfer();
    ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
    std::string got;
    CHECK(c.server_read(got) == Result::kWantMore);
    CHECK(got == "abc");
    CHECK(c.server.error().empty());
    ERR_clear_error();
  }
}
