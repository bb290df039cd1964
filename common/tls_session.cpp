#include "common/tls_session.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <cstring>
#include <string>

namespace torii {

namespace {

// The outgoing BIO: records are appended to the session's pending string,
// which take_output() hands over by swapping buffers. A memory BIO would
// cost one more copy of every byte sent (BIO_read out of it).
int sink_write(BIO* bio, const char* data, int len) {
  static_cast<std::string*>(BIO_get_data(bio))->append(data, static_cast<size_t>(len));
  return len;
}

long sink_ctrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int sink_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* sink_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "torii output");
    BIO_meth_set_write(m, sink_write);
    BIO_meth_set_ctrl(m, sink_ctrl);
    BIO_meth_set_create(m, sink_create);
    return m;
  }();
  return method;
}

}  // namespace

std::string openssl_reason(const char* fallback) {
  unsigned long e = 0;
  unsigned long last = 0;
  while ((e = ERR_get_error()) != 0) last = e;
  const char* reason = last != 0 ? ERR_reason_error_string(last) : nullptr;
  return reason != nullptr ? reason : fallback;
}

TlsSession::TlsSession(SSL* ssl, Role role) : ssl_(ssl) {
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(sink_method());
  BIO_set_data(out_, &pending_);
  // An empty memory BIO reads as "retry later", not end of file.
  BIO_set_mem_eof_return(in_, -1);
  SSL_set_bio(ssl_, in_, out_);  // ssl_ owns both now
  if (role == Role::kServer) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

void TlsSession::feed(std::string_view ciphertext) {
  if (!ciphertext.empty()) BIO_write(in_, ciphertext.data(), static_cast<int>(ciphertext.size()));
}

TlsSession::Result TlsSession::fail() {
  error_ = openssl_reason("TLS protocol error");
  return Result::kError;
}

TlsSession::Result TlsSession::unfinished(int rc) {
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return Result::kWantMore;
    case SSL_ERROR_ZERO_RETURN:
      return Result::kClosed;
    default:
      return fail();
  }
}

TlsSession::Result TlsSession::handshake() {
  if (established_) return Result::kOk;
  ERR_clear_error();  // SSL_get_error reads the queue: nothing stale may be on it
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    established_ = true;
    return Result::kOk;
  }
  return unfinished(rc);
}

TlsSession::Result TlsSession::read(char* buf, size_t capacity, size_t& n) {
  n = 0;
  if (!established_) {
    const Result r = handshake();
    if (r != Result::kOk) return r;
  }
  size_t got = 0;
  ERR_clear_error();
  const int rc = SSL_read_ex(ssl_, buf, capacity, &got);
  if (rc == 1) {
    n = got;
    return Result::kOk;
  }
  return unfinished(rc);
}

bool TlsSession::write(std::string_view plaintext) {
  while (!plaintext.empty()) {
    size_t written = 0;
    ERR_clear_error();
    if (SSL_write_ex(ssl_, plaintext.data(), plaintext.size(), &written) != 1) {
      fail();
      return false;
    }
    plaintext.remove_prefix(written);
  }
  return true;
}

bool TlsSession::write_all(WriteBatch& batch) {
  constexpr size_t kRecord = size_t{16} * 1024;  // the largest TLS record's plaintext
  // Workers are single-threaded: one gathering buffer serves every session.
  static thread_local char gathered[kRecord];
  size_t used = 0;
  bool ok = true;
  auto gather = [&](std::string_view bytes) {
    std::memcpy(gathered + used, bytes.data(), bytes.size());
    used += bytes.size();
  };
  auto flush = [&] {
    if (used > 0) ok = ok && write(std::string_view(gathered, used));
    used = 0;
  };
  batch.for_each_span([&](std::string_view span) {
    if (!ok) return;
    if (used + span.size() <= kRecord) {
      gather(span);
      return;
    }
    // Top up the record being gathered, then send whole records straight.
    const size_t top_up = kRecord - used;
    gather(span.substr(0, top_up));
    flush();
    span.remove_prefix(top_up);
    const size_t whole = span.size() - span.size() % kRecord;
    if (whole > 0) ok = ok && write(span.substr(0, whole));
    gather(span.substr(whole));
  });
  flush();
  return ok;
}

void TlsSession::take_output(std::string& out) {
  if (out.empty()) {
    out.swap(pending_);  // no copy: the batch takes the buffer
    pending_.clear();
    return;
  }
  out.append(pending_);
  pending_.clear();
}

size_t TlsSession::output_size() const { return pending_.size(); }

void TlsSession::close_notify() {
  if (established_) SSL_shutdown(ssl_);
}

std::string_view TlsSession::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p == nullptr ? std::string_view()
                      : std::string_view(reinterpret_cast<const char*>(p), len);
}

std::string_view TlsSession::version() const { return SSL_get_version(ssl_); }

std::string_view TlsSession::server_name() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? std::string_view(name) : std::string_view();
}

bool TlsSession::resumed() const { return SSL_session_reused(ssl_) == 1; }

std::string_view TlsSession::verify_error() const {
  const long result = SSL_get_verify_result(ssl_);
  return result == X509_V_OK ? std::string_view() : X509_verify_cert_error_string(result);
}

bool TlsSession::has_buffered_input() const {
  return SSL_pending(ssl_) > 0 || BIO_ctrl_pending(in_) > 0;
}

bool TlsSession::looks_like_http(std::string_view first_bytes) {
  for (std::string_view method :
       {"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}) {
    if (first_bytes.size() >= method.size() && first_bytes.substr(0, method.size()) == method) {
      return true;
    }
  }
  return false;
}

}  // namespace torii
