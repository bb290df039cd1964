#include "gateway/tls_context.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "common/tls_session.hpp"

namespace torii::gateway {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

PkeyPtr read_private_key(const std::string& path) {
  BIO* bio = BIO_new_file(path.c_str(), "r");
  if (bio == nullptr) return nullptr;
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return PkeyPtr(k);
}

X509Ptr read_certificate(const std::string& path) {
  BIO* bio = BIO_new_file(path.c_str(), "r");
  if (bio == nullptr) return nullptr;
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return X509Ptr(x);
}

// DNS names of the subjectAltName, lower-cased.
std::vector<std::string> san_dns_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans == nullptr) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type != GEN_DNS) continue;
    const ASN1_STRING* s = gn->d.dNSName;
    names.push_back(lower(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                           static_cast<size_t>(ASN1_STRING_length(s)))));
  }
  GENERAL_NAMES_free(sans);
  return names;
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  // The client's list: length-prefixed protocol names.
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == 8 && std::memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no common protocol: go on without ALPN
}

}  // namespace

TicketKey TicketKeys::generate() {
  TicketKey k{};
  if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes_key, sizeof k.aes_key) != 1 ||
      RAND_bytes(k.hmac_key, sizeof k.hmac_key) != 1) {
    throw std::runtime_error("cannot make a session-ticket key: " + openssl_reason());
  }
  return k;
}

void TicketKeys::rotate(const TicketKey& fresh, size_t keep) {
  keys_.insert(keys_.begin(), fresh);
  if (keys_.size() > keep) keys_.resize(keep);
}

std::shared_ptr<TlsServerContext> TlsServerContext::create(const conf::ListenerTls& tls,
                                                           const std::string& config_file,
                                                           const std::string& json_base,
                                                           std::shared_ptr<TicketKeys> keys) {
  std::shared_ptr<TlsServerContext> self(new TlsServerContext());
  self->keys_ = std::move(keys);
  self->handshake_timeout_ms_ = static_cast<uint64_t>(tls.handshake_timeout.count());
  auto fail = [&](const std::string& path, const std::string& problem) {
    ERR_clear_error();
    throw conf::ConfigError(config_file, json_base + path, problem);
  };
  const size_t n = tls.certificates.size();
  if (n == 0) fail("/certificates", "at least one certificate is needed");

  // Each certificate's names (configured, else from its subjectAltName).
  std::vector<std::vector<std::string>> names(n);
  std::vector<int> key_types(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const conf::TlsCertificate& c = tls.certificates[i];
    const std::string at = "/certificates/" + std::to_string(i);
    X509Ptr cert = read_certificate(c.cert_path);
    if (!cert)
      fail(at + "/cert",
           "cannot read a PEM certificate from " + c.cert_path + ": " + openssl_reason());
    // Each pair on its own: in a shared context a wrong key could hide
    // behind a right one of another type.
    PkeyPtr key = read_private_key(c.key_path);
    if (!key)
      fail(at + "/key",
           "cannot read a PEM private key from " + c.key_path + ": " + openssl_reason());
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
      fail(at + "/key", "the private key in " + c.key_path + " does not match the certificate in " +
                            c.cert_path);
    }
    key_types[i] = EVP_PKEY_get_base_id(key.get());
    names[i] = c.names.empty() ? san_dns_names(cert.get()) : c.names;
    std::string where = c.cert_path;
    where.append(" (").append(json_base).append(at).append("/cert)");
    if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
      self->warnings_.push_back(where.append(" has expired"));
    } else if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
      self->warnings_.push_back(where.append(" is not valid yet"));
    }
  }

  // One SSL_CTX per set of certificates serving the same names: an ECDSA
  // and an RSA certificate of one name share a context, and OpenSSL picks
  // the one the client's signature algorithms allow.
  // A name keeps the first certificate of each key type that serves it (a
  // context holds one certificate per type: a later one would replace it).
  std::map<std::string, std::set<size_t>> by_name;
  for (size_t i = 0; i < n; ++i) {
    for (const std::string& name : names[i]) {
      std::set<size_t>& certs = by_name[name];
      const bool type_taken = std::any_of(certs.begin(), certs.end(),
                                          [&](size_t j) { return key_types[j] == key_types[i]; });
      if (!type_taken) certs.insert(i);
    }
  }
  std::map<std::set<size_t>, SSL_CTX*> contexts;
  auto context_for = [&](const std::set<size_t>& certs) -> SSL_CTX* {
    if (auto it = contexts.find(certs); it != contexts.end()) return it->second;
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) fail("", "cannot create a TLS context: " + openssl_reason());
    self->owned_.push_back(ctx);
    SSL_CTX_set_min_proto_version(ctx,
                                  tls.min_version == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    // No renegotiation at all (OpenSSL 3 refuses client-initiated ones anyway).
    uint64_t options =
        SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION;
    if (!tls.session_tickets) options |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(ctx, options);
    // Without tickets, TLS 1.3 would still send stateful ones for a
    // session cache that is off: wasted work on every handshake.
    if (!tls.session_tickets) SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);  // idle connections keep no buffers
    if (SSL_CTX_set_cipher_list(ctx, tls.ciphers.c_str()) != 1) {
      fail("/ciphers", "no usable TLS 1.2 cipher in \"" + tls.ciphers + "\": " + openssl_reason());
    }
    if (SSL_CTX_set_ciphersuites(ctx, tls.ciphersuites.c_str()) != 1) {
      fail("/ciphersuites",
           "no usable TLS 1.3 cipher suite in \"" + tls.ciphersuites + "\": " + openssl_reason());
    }
    SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384");
    // Sessions resume from tickets only: a per-worker session cache would
    // not be found by the next connection's worker.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static constexpr unsigned char kSessionContext[] = "torii";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &TlsServerContext::on_ticket_key);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
    SSL_CTX_set_tlsext_servername_callback(ctx, &TlsServerContext::on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, self.get());
    SSL_CTX_set_app_data(ctx, self.get());
    for (size_t i : certs) {
      const conf::TlsCertificate& c = tls.certificates[i];
      const std::string at = "/certificates/" + std::to_string(i);
      if (SSL_CTX_use_certificate_chain_file(ctx, c.cert_path.c_str()) != 1) {
        fail(at + "/cert",
             "cannot use the certificate chain in " + c.cert_path + ": " + openssl_reason());
      }
      if (SSL_CTX_use_PrivateKey_file(ctx, c.key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
        fail(at + "/key", "cannot use the private key in " + c.key_path + ": " + openssl_reason());
      }
      if (SSL_CTX_check_private_key(ctx) != 1) {
        fail(at + "/key", "the private key in " + c.key_path +
                              " does not match the certificate in " + c.cert_path);
      }
    }
    contexts.emplace(certs, ctx);
    return ctx;
  };

  // The default: the first certificate, with whatever serves its first name too.
  std::set<size_t> first = {0};
  if (!names[0].empty()) first = by_name[names[0].front()];
  self->default_ = context_for(first);
  for (const auto& [name, certs] : by_name) {
    SSL_CTX* ctx = context_for(certs);
    self->names_.push_back(name);
    if (name.size() > 2 && name.compare(0, 2, "*.") == 0) {
      self->wildcard_.emplace(name.substr(1), ctx);
    } else {
      self->exact_.emplace(name, ctx);
    }
  }
  // Certificates none of whose names is served elsewhere still get checked.
  for (size_t i = 0; i < n; ++i) {
    if (names[i].empty()) context_for({i});
  }
  return self;
}

namespace {

std::string to_hex(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 15]);
  }
  return out;
}

bool from_hex(std::string_view hex, unsigned char* out, size_t n) {
  if (hex.size() != 2 * n) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < n; ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}

}  // namespace

// {"op":"tls-ticket-key","key":"<hex of name, AES key, HMAC key>"}: only
// ever on the master's socketpairs.
std::string ticket_key_message(const TicketKey& key) {
  unsigned char raw[sizeof key.name + sizeof key.aes_key + sizeof key.hmac_key];
  std::memcpy(raw, key.name, sizeof key.name);
  std::memcpy(raw + sizeof key.name, key.aes_key, sizeof key.aes_key);
  std::memcpy(raw + sizeof key.name + sizeof key.aes_key, key.hmac_key, sizeof key.hmac_key);
  std::string out = R"({"op":"tls-ticket-key","key":")" + to_hex(raw, sizeof raw) + "\"}";
  OPENSSL_cleanse(raw, sizeof raw);
  return out;
}

std::optional<TicketKey> parse_ticket_key_message(const std::string& message) {
  constexpr std::string_view kPrefix = R"({"op":"tls-ticket-key","key":")";
  constexpr size_t kHexChars = size_t{2} * 80;
  if (message.size() != kPrefix.size() + kHexChars + 2 ||
      message.compare(0, kPrefix.size(), kPrefix) != 0 ||
      message.compare(message.size() - 2, 2, "\"}") != 0) {
    return std::nullopt;
  }
  unsigned char raw[80];
  if (!from_hex(std::string_view(message).substr(kPrefix.size(), kHexChars), raw, sizeof raw))
    return std::nullopt;
  TicketKey k{};
  std::memcpy(k.name, raw, 16);
  std::memcpy(k.aes_key, raw + 16, 32);
  std::memcpy(k.hmac_key, raw + 48, 32);
  OPENSSL_cleanse(raw, sizeof raw);
  return k;
}

TlsContexts build_tls_contexts(const conf::Config& config,
                               const std::shared_ptr<TicketKeys>& keys) {
  TlsContexts out;
  out.listeners.resize(config.listeners.size());
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    if (!config.listeners[i].tls) continue;
    out.listeners[i] = TlsServerContext::create(*config.listeners[i].tls, config.source_path,
                                                "/listeners/" + std::to_string(i) + "/tls", keys);
  }
  out.upstreams = upstream::build_upstream_tls_contexts(config);
  return out;
}

TlsServerContext::~TlsServerContext() {
  for (SSL_CTX* ctx : owned_) SSL_CTX_free(ctx);
}

SSL* TlsServerContext::new_ssl() const { return SSL_new(default_); }

SSL_CTX* TlsServerContext::select(std::string_view name) const {
  const std::string key = lower(name);
  if (auto it = exact_.find(key); it != exact_.end()) return it->second;
  // A wildcard covers exactly one label: "*.example.com" serves
  // "a.example.com", not "example.com" nor "a.b.example.com".
  const size_t dot = key.find('.');
  if (dot != std::string::npos && dot > 0) {
    if (auto it = wildcard_.find(key.substr(dot)); it != wildcard_.end()) return it->second;
  }
  return default_;
}

int TlsServerContext::on_servername(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const TlsServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_OK;  // no SNI: the default certificate
  SSL_CTX* ctx = self->select(name);
  if (ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;  // an unknown name gets the default certificate
}

int TlsServerContext::on_ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                                    EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
  const auto* self =
      static_cast<const TlsServerContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (self == nullptr || !self->keys_) return encrypt ? -1 : 0;
  const std::vector<TicketKey>& keys = self->keys_->keys();
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (encrypt != 0) {
    if (keys.empty()) return -1;
    const TicketKey& k = keys.front();
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::memcpy(key_name, k.name, sizeof k.name);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes_key, iv) != 1) return -1;
    if (EVP_MAC_init(mac, k.hmac_key, sizeof k.hmac_key, params) != 1) return -1;
    return 1;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const TicketKey& k = keys[i];
    if (std::memcmp(key_name, k.name, sizeof k.name) != 0) continue;
    if (EVP_MAC_init(mac, k.hmac_key, sizeof k.hmac_key, params) != 1) return -1;
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes_key, iv) != 1) return -1;
    // 2: valid, and issue a new ticket: always under TLS 1.3 (its tickets
    // are single-use, RFC 8446 C.4: without a fresh one the client's next
    // connection is a full handshake), and when an older key made it.
    return i == 0 && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
  }
  return 0;  // unknown key: a full handshake
}

}  // namespace torii::gateway
