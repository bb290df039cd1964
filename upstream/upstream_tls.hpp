// The client side of TLS to an https upstream: one SSL_CTX per upstream
// group (protocol floor, CA bundle or the system store, an optional client
// certificate, ALPN http/1.1), built in the master when a config loads so
// that a bad CA or key file is reported with its JSON path, and inherited
// by the workers through fork. Each connection gets an SSL with its SNI and
// the name its certificate must carry; a server's last session is kept by
// its pool (UpstreamTlsSessionCache) and offered again on the next
// connection, so only the first connection pays a full handshake.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "conf/config.hpp"

namespace torii::upstream {

// The newest session a server gave us (one per server per worker).
class UpstreamTlsSessionCache {
 public:
  UpstreamTlsSessionCache() = default;
  UpstreamTlsSessionCache(const UpstreamTlsSessionCache&) = delete;
  UpstreamTlsSessionCache& operator=(const UpstreamTlsSessionCache&) = delete;
  ~UpstreamTlsSessionCache();

  // Takes over the reference the new-session callback hands us.
  void store(SSL_SESSION* session);
  // Forgets the session (the server refused it, or its handshake failed).
  void clear();
  SSL_SESSION* get() const { return session_; }

 private:
  SSL_SESSION* session_ = nullptr;
};

class UpstreamTlsContext {
 public:
  // Throws conf::ConfigError naming `config_file` and `json_base` (e.g.
  // "/upstreams/api/tls") plus the key at fault.
  static std::shared_ptr<UpstreamTlsContext> create(const conf::UpstreamTls& tls,
                                                    const std::string& config_file,
                                                    const std::string& json_base);
  UpstreamTlsContext(const UpstreamTlsContext&) = delete;
  UpstreamTlsContext& operator=(const UpstreamTlsContext&) = delete;
  ~UpstreamTlsContext();

  // The name a server `host` is reached and checked as: the configured
  // server_name, else the host itself.
  std::string name_for(const std::string& host) const;
  // A client SSL for a server known as `name` (from name_for): SNI for a
  // host name (none for an IP address), and with `verify`, the name (or
  // IP address) its certificate must match. `sessions` (may be null)
  // offers the last session and receives new ones.
  SSL* new_ssl(const std::string& name, UpstreamTlsSessionCache* sessions) const;
  bool verify() const { return verify_; }

 private:
  UpstreamTlsContext() = default;
  static int on_new_session(SSL* ssl, SSL_SESSION* session);

  SSL_CTX* ctx_ = nullptr;
  std::string server_name_;
  bool verify_ = true;
  bool session_reuse_ = true;
};

// The TLS contexts of every upstream of `config` (null for plain ones),
// indexed like config.upstreams. Throws conf::ConfigError.
using UpstreamTlsContexts = std::vector<std::shared_ptr<UpstreamTlsContext>>;
UpstreamTlsContexts build_upstream_tls_contexts(const conf::Config& config);

}  // namespace torii::upstream
