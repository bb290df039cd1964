// TLS server contexts for a listener (OpenSSL 3): the certificates and
// keys, SNI selection (exact, then one-label wildcard, else the default),
// ALPN (http/1.1), protocol and cipher policy, and session tickets whose
// keys are shared by every worker (the master makes them before it forks),
// so a session resumes on whichever worker the next connection reaches.
// Built in the master when a config is loaded (startup, -t, reload), which
// is where file, key-mismatch and cipher errors are reported with their
// JSON path.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "conf/config.hpp"
#include "upstream/upstream_tls.hpp"

namespace torii::gateway {

struct TicketKey {
  unsigned char name[16];
  unsigned char aes_key[32];
  unsigned char hmac_key[32];
};

// Session-ticket keys, newest first: the newest encrypts new tickets, every
// one still decrypts (a ticket under an older key is accepted and renewed).
class TicketKeys {
 public:
  static TicketKey generate();  // from the OpenSSL CSPRNG
  // Adds `fresh` as the newest key and keeps at most `keep` keys.
  void rotate(const TicketKey& fresh, size_t keep = 2);
  const std::vector<TicketKey>& keys() const { return keys_; }

 private:
  std::vector<TicketKey> keys_;
};

class TlsServerContext {
 public:
  // Loads and checks every certificate; throws conf::ConfigError naming
  // `config_file` and the JSON path under `json_base` (e.g. "/listeners/0/tls").
  static std::shared_ptr<TlsServerContext> create(const conf::ListenerTls& tls,
                                                  const std::string& config_file,
                                                  const std::string& json_base,
                                                  std::shared_ptr<TicketKeys> keys);
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;
  ~TlsServerContext();

  // A server-side SSL on the default context (SNI may switch it).
  SSL* new_ssl() const;
  // The context serving SNI `name` (lower case); the default for unknown names.
  SSL_CTX* select(std::string_view name) const;
  SSL_CTX* default_ctx() const { return default_; }
  // Server names and the certificate index each resolves to first (for logs and tests).
  const std::vector<std::string>& names() const { return names_; }
  // Problems that do not stop the gateway (an expired certificate...).
  const std::vector<std::string>& warnings() const { return warnings_; }
  const TicketKeys& ticket_keys() const { return *keys_; }
  uint64_t handshake_timeout_ms() const { return handshake_timeout_ms_; }
  // A scheduled rotation (from the master): `key` encrypts new tickets.
  void add_ticket_key(const TicketKey& key) { keys_->rotate(key); }

 private:
  TlsServerContext() = default;
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_ticket_key(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                           EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt);

  std::vector<SSL_CTX*> owned_;
  SSL_CTX* default_ = nullptr;
  std::unordered_map<std::string, SSL_CTX*> exact_;
  std::unordered_map<std::string, SSL_CTX*> wildcard_;  // ".example.com" -> context
  std::vector<std::string> names_;
  std::vector<std::string> warnings_;
  std::shared_ptr<TicketKeys> keys_;
  uint64_t handshake_timeout_ms_ = 10'000;
};

// The control message that hands a new ticket key to the workers, and back.
std::string ticket_key_message(const TicketKey& key);
std::optional<TicketKey> parse_ticket_key_message(const std::string& message);

using ListenerTlsContexts = std::vector<std::shared_ptr<TlsServerContext>>;

// Every TLS context a config needs, built in the master (where file and key
// errors are reported) and inherited by the workers through fork.
struct TlsContexts {
  ListenerTlsContexts listeners;            // indexed like config.listeners, null: plain
  upstream::UpstreamTlsContexts upstreams;  // indexed like config.upstreams, null: plain
};

// Throws conf::ConfigError.
TlsContexts build_tls_contexts(const conf::Config& config, const std::shared_ptr<TicketKeys>& keys);

}  // namespace torii::gateway
