// One TLS connection driven through memory BIOs (sans-I/O): the caller
// feeds the ciphertext it read from the socket, takes plaintext out, puts
// plaintext in and sends the ciphertext that comes out. Nothing here ever
// blocks or touches a socket, so it runs on the worker's loop and is tested
// without one. The ciphertext copy on the way in and out is the one copy
// TLS costs. The same class serves both ends: clients of a TLS listener
// (server role) and https upstreams (client role).
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/write_batch.hpp"

namespace torii {

// The reason of the last error on the thread's OpenSSL queue ("certificate
// verify failed"...), or `fallback` when it is empty; clears the queue.
std::string openssl_reason(const char* fallback = "unknown OpenSSL error");

class TlsSession {
 public:
  enum class Result : uint8_t {
    kOk,        // progress (handshake done, bytes read)
    kWantMore,  // needs more ciphertext from the peer
    kClosed,    // the peer sent close_notify
    kError,     // protocol error: the connection must end
  };

  enum class Role : uint8_t { kServer, kClient };

  // Takes ownership of `ssl` (TlsServerContext::new_ssl(), or
  // UpstreamTlsContext::new_ssl() for the client role). A client starts
  // its handshake with the first handshake() call.
  explicit TlsSession(SSL* ssl, Role role = Role::kServer);
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;
  ~TlsSession();

  // Ciphertext read from the socket.
  void feed(std::string_view ciphertext);
  // Advances the handshake; kOk once it is complete.
  Result handshake();
  bool established() const { return established_; }
  // Decrypts into [buf, buf + capacity); `n` gets the byte count (kOk only).
  Result read(char* buf, size_t capacity, size_t& n);
  // Encrypts `plaintext` (all of it: a memory BIO never pushes back).
  // False after a fatal error.
  bool write(std::string_view plaintext);
  // Encrypts every span of `batch` in as few records as it takes: small
  // spans (a head, a short body) are gathered into one record of up to
  // 16 KiB, as nginx's ssl_buffer_size does, and whole records of a large
  // span go to OpenSSL as they are. One record per span would cost an AEAD
  // pass, a 22-byte header and tag, and a syscall's worth of bytes each.
  bool write_all(WriteBatch& batch);
  // Ciphertext waiting to be sent (handshake records, data, alerts),
  // appended to `out`.
  void take_output(std::string& out);
  size_t output_size() const;
  // Queues close_notify (a graceful close).
  void close_notify();

  std::string_view alpn() const;
  std::string_view version() const;      // "TLSv1.3"
  std::string_view server_name() const;  // SNI sent by the client, or ""
  bool resumed() const;
  // Why the peer's certificate was refused ("certificate has expired",
  // "hostname mismatch"...), or "" when it was not.
  std::string_view verify_error() const;
  // Peer bytes received but not yet returned by read(): decrypted ones and
  // records not yet processed.
  bool has_buffered_input() const;
  // The OpenSSL reason of the last error ("wrong version number", ...).
  const std::string& error() const { return error_; }

  // True when `first_bytes` start like an HTTP/1.x request: plain HTTP
  // sent to a TLS port (answered with a plain 400, as nginx does).
  static bool looks_like_http(std::string_view first_bytes);

 private:
  Result fail();
  // What an SSL call that did not succeed (return value `rc`) means.
  Result unfinished(int rc);

  SSL* ssl_;
  BIO* in_;   // ciphertext from the peer (owned by ssl_)
  BIO* out_;  // ciphertext to the peer (owned by ssl_): appends to pending_
  std::string pending_;
  bool established_ = false;
  std::string error_;
};

}  // namespace torii
