// Sans-I/O HTTP/1.1 message parser on top of llhttp (strict mode), used for
// client requests (gateway/) and upstream responses (upstream/).
//
// feed() consumes bytes and stops at each event the owner must act on: the
// end of the head, body bytes (as the raw wire span, so chunked bodies are
// forwarded without re-encoding), and the end of the message. It never looks
// past the end of one message, which keeps pipelined requests in the
// caller's buffer until it is ready for them.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "common/http_types.hpp"

namespace torii::http {

struct ParserLimits {
  uint32_t max_request_line = 8 * 1024;   // request-target bytes -> 414
  uint32_t max_header_bytes = 32 * 1024;  // start line + headers -> 431
  uint32_t max_header_count = 100;        // -> 431
  uint64_t max_body_bytes = UINT64_MAX;   // -> 413
};

enum class BodyFraming : uint8_t { kNone, kContentLength, kChunked, kUntilClose };

// A parsed head. Views point into the parser's storage and stay valid until
// the parser starts the next message.
struct MessageHead {
  // requests
  std::string_view method;
  std::string_view target;
  // responses
  int status = 0;
  std::string_view reason;

  uint8_t version_major = 1;
  uint8_t version_minor = 1;
  HeaderList headers;
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;  // llhttp_should_keep_alive: version + Connection
  bool has_transfer_encoding = false;
  int host_count = 0;
  int content_length_count = 0;

  bool has_body() const { return framing != BodyFraming::kNone; }
  bool is_http10() const { return version_major == 1 && version_minor == 0; }
  // First value of a header, or empty.
  std::string_view get(std::string_view name) const;
};

// Keep-Alive: timeout=N of a response, in seconds (0 if absent).
unsigned keep_alive_timeout_hint(const MessageHead& resp);

class Http1Parser {
 public:
  enum class Kind : uint8_t { kRequest, kResponse };
  enum class Event : uint8_t {
    kNeedMore,         // everything consumed; feed more bytes
    kHeadComplete,     // head() is ready; the body (if any) follows
    kBody,             // `body` holds raw wire bytes of the body
    kMessageComplete,  // end of the message (`body` may hold its last bytes)
    kError,            // error() says what; the connection must be closed
  };
  struct Result {
    Event event = Event::kNeedMore;
    size_t consumed = 0;    // bytes of the input used
    std::string_view body;  // raw body bytes inside the input (kBody, kMessageComplete)
  };

  Http1Parser(Kind kind, const ParserLimits& limits);
  Http1Parser(const Http1Parser&) = delete;
  Http1Parser& operator=(const Http1Parser&) = delete;

  Result feed(const char* data, size_t len);
  // The peer closed: completes a body that runs until close, else an error
  // if a message was in progress. Returns kMessageComplete, kError or kNeedMore (idle).
  Event finish();

  // Responses: the next response answers a HEAD request (no body follows).
  void expect_no_body(bool v) { no_body_expected_ = v; }
  // The decoded body bytes of the last feed() (chunk framing removed),
  // as spans of its input. Bodies are re-framed from these, never relayed
  // with the peer's own chunk framing: what the next hop sees is framing
  // Torii wrote, so it cannot read a message boundary differently.
  const std::vector<std::string_view>& decoded() const { return decoded_; }

  const MessageHead& head() const { return head_; }
  Error error() const { return error_; }
  std::string_view error_reason() const { return error_reason_; }
  // True between messages (nothing of the next one seen yet).
  bool idle() const { return phase_ == Phase::kIdle || phase_ == Phase::kDone; }
  bool in_head() const { return phase_ == Phase::kHead; }
  bool in_body() const { return phase_ == Phase::kBody; }
  uint64_t body_bytes() const { return body_bytes_; }
  // Frees the head storage between requests (keeps idle keep-alive
  // connections small), except when it is small: a short head (an API
  // client's, a benchmark's) would otherwise cost three malloc/free pairs
  // per request. An idle connection keeps at most ~0.7 KB this way.
  void release_storage();
  static constexpr size_t kKeptStorageBytes = 256;
  static constexpr size_t kKeptHeaders = 8;

  // llhttp callbacks (public for the C trampoline table).
  int on_message_begin();
  int on_method(const char* at, size_t len);
  int on_url(const char* at, size_t len);
  int on_status(const char* at, size_t len);
  int on_header_field(const char* at, size_t len);
  int on_header_value(const char* at, size_t len);
  int on_header_value_complete();
  int on_headers_complete();
  int on_body(const char* at, size_t len);
  int on_message_complete();

 private:
  enum class Phase : uint8_t { kIdle, kHead, kBody, kDone, kError };
  // Offsets into storage_: views are built at the end of the head because
  // storage_ may reallocate while it grows.
  struct PendingHeader {
    uint32_t name_off, name_len, value_off, value_len;
  };
  struct Span {
    uint32_t off = 0, len = 0;
  };

  int fail(Error e, std::string_view reason);
  bool append_span(Span& span, const char* at, size_t len);
  void finish_head();
  bool value_starts_after_colon(const char* at) const;
  bool check_head_bytes(const char* begin, const char* end);
  void remember_tail(const char* data, size_t len);
  bool check_chunk_framing(std::string_view raw);

  Kind kind_;
  ParserLimits limits_;
  llhttp_t parser_;
  Phase phase_ = Phase::kIdle;
  Error error_ = Error::kNone;
  std::string_view error_reason_;
  std::string storage_;  // start-line parts, header names and values
  Span method_, target_, reason_;
  std::vector<PendingHeader> pending_;
  enum class HeaderState : uint8_t { kNone, kField, kValue };
  HeaderState header_state_ = HeaderState::kNone;
  size_t field_len_ = 0;  // bytes of the current field name
  bool head_complete_pending_ = false;
  bool interim_ = false;  // a 1xx response being skipped
  bool no_body_expected_ = false;
  std::vector<std::string_view> decoded_;
  uint64_t body_bytes_ = 0;
  MessageHead head_;
  // obs-fold detection (see on_header_value)
  uint64_t feed_generation_ = 0, last_value_feed_ = 0;
  const char* feed_begin_ = nullptr;
  const char* feed_end_ = nullptr;
  const char* last_value_end_ = nullptr;
  bool last_value_ended_buffer_ = false;
  char last_non_ows_byte_ = '\n';  // of the input before this feed
  char last_byte_ = '\n';          // of the input before this feed (bare LF check)
  uint64_t head_wire_bytes_ = 0;
};

}  // namespace torii::http
