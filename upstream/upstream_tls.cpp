#include "upstream/upstream_tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/tls_session.hpp"

namespace torii::upstream {

namespace {

// Where an SSL keeps its server's session cache (for the new-session callback).
int session_cache_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

bool is_ip_address(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

}  // namespace

UpstreamTlsSessionCache::~UpstreamTlsSessionCache() { clear(); }

void UpstreamTlsSessionCache::store(SSL_SESSION* session) {
  clear();
  session_ = session;
}

void UpstreamTlsSessionCache::clear() {
  if (session_ != nullptr) SSL_SESSION_free(session_);
  session_ = nullptr;
}

std::shared_ptr<UpstreamTlsContext> UpstreamTlsContext::create(const conf::UpstreamTls& tls,
                                                               const std::string& config_file,
                                                               const std::string& json_base) {
  std::shared_ptr<UpstreamTlsContext> self(new UpstreamTlsContext());
  auto fail = [&](const std::string& path, const std::string& problem) {
    ERR_clear_error();
    throw conf::ConfigError(config_file, json_base + path, problem);
  };
  self->server_name_ = tls.server_name;
  self->verify_ = tls.verify;
  self->session_reuse_ = tls.session_reuse;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) fail("", "cannot create a TLS context: " + openssl_reason());
  self->ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx,
                                tls.min_version == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);  // idle pooled connections keep no buffers
  // We speak HTTP/1.1 only: an upstream that would pick h2 must not.
  static constexpr unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn - 1);
  if (tls.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (!tls.ca_path.empty()) {
      if (SSL_CTX_load_verify_file(ctx, tls.ca_path.c_str()) != 1) {
        fail("/ca", "cannot read a PEM CA bundle from " + tls.ca_path + ": " + openssl_reason());
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      fail("", "cannot load the system's trust store: " + openssl_reason());
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!tls.cert_path.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_path.c_str()) != 1) {
      fail("/cert",
           "cannot use the certificate chain in " + tls.cert_path + ": " + openssl_reason());
    }
    const bool key_loaded =
        SSL_CTX_use_PrivateKey_file(ctx, tls.key_path.c_str(), SSL_FILETYPE_PEM) == 1;
    if (!key_loaded && ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
      fail("/key", "cannot use the private key in " + tls.key_path + ": " + openssl_reason());
    }
    if (!key_loaded || SSL_CTX_check_private_key(ctx) != 1) {
      fail("/key", "the private key in " + tls.key_path + " does not match the certificate in " +
                       tls.cert_path);
    }
  }
  if (tls.session_reuse) {
    // Sessions live in each server's pool, not in OpenSSL's cache: the
    // callback hands every new one over (tickets included).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, &UpstreamTlsContext::on_new_session);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  return self;
}

UpstreamTlsContext::~UpstreamTlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

std::string UpstreamTlsContext::name_for(const std::string& host) const {
  return server_name_.empty() ? host : server_name_;
}

SSL* UpstreamTlsContext::new_ssl(const std::string& name, UpstreamTlsSessionCache* sessions) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  const bool ip = is_ip_address(name);
  // RFC 6066: SNI carries host names only, never an address literal.
  if (!ip) SSL_set_tlsext_host_name(ssl, name.c_str());
  if (verify_) {
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl, name.c_str());
    }
  }
  if (session_reuse_ && sessions != nullptr) {
    SSL_set_ex_data(ssl, session_cache_index(), sessions);
    if (sessions->get() != nullptr) SSL_set_session(ssl, sessions->get());
  }
  return ssl;
}

int UpstreamTlsContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* sessions =
      static_cast<UpstreamTlsSessionCache*>(SSL_get_ex_data(ssl, session_cache_index()));
  if (sessions == nullptr) return 0;  // not ours to keep: OpenSSL frees it
  sessions->store(session);
  return 1;  // we hold the reference now
}

UpstreamTlsContexts build_upstream_tls_contexts(const conf::Config& config) {
  UpstreamTlsContexts out(config.upstreams.size());
  for (size_t i = 0; i < config.upstreams.size(); ++i) {
    const conf::Upstream& u = config.upstreams[i];
    if (!u.tls) continue;
    out[i] =
        UpstreamTlsContext::create(*u.tls, config.source_path, "/upstreams/" + u.name + "/tls");
  }
  return out;
}

}  // namespace torii::upstream
