#include "common/http1_parser.hpp"

#include <charconv>
#include <cstring>

namespace torii::http {

namespace {

Http1Parser* self(llhttp_t* p) { return static_cast<Http1Parser*>(p->data); }

const llhttp_settings_t& settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = [](llhttp_t* p) { return self(p)->on_message_begin(); };
    st.on_method = [](llhttp_t* p, const char* at, size_t n) { return self(p)->on_method(at, n); };
    st.on_url = [](llhttp_t* p, const char* at, size_t n) { return self(p)->on_url(at, n); };
    st.on_status = [](llhttp_t* p, const char* at, size_t n) { return self(p)->on_status(at, n); };
    st.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      return self(p)->on_header_field(at, n);
    };
    st.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      return self(p)->on_header_value(at, n);
    };
    st.on_header_value_complete = [](llhttp_t* p) { return self(p)->on_header_value_complete(); };
    st.on_headers_complete = [](llhttp_t* p) { return self(p)->on_headers_complete(); };
    st.on_body = [](llhttp_t* p, const char* at, size_t n) { return self(p)->on_body(at, n); };
    st.on_message_complete = [](llhttp_t* p) { return self(p)->on_message_complete(); };
    return st;
  }();
  return s;
}

}  // namespace

std::string_view MessageHead::get(std::string_view name) const {
  for (const Header& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

unsigned keep_alive_timeout_hint(const MessageHead& resp) {
  unsigned result = 0;
  for_each_list_token(resp.get("keep-alive"), [&](std::string_view t) {
    if (t.size() > 8 && iequals(t.substr(0, 8), "timeout=")) {
      std::from_chars(t.data() + 8, t.data() + t.size(), result);
    }
  });
  return result;
}

Http1Parser::Http1Parser(Kind kind, const ParserLimits& limits) : kind_(kind), limits_(limits) {
  llhttp_init(&parser_, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &settings());
  parser_.data = this;
}

void Http1Parser::release_storage() {
  if (storage_.capacity() > kKeptStorageBytes) std::string().swap(storage_);
  if (pending_.capacity() > kKeptHeaders) std::vector<PendingHeader>().swap(pending_);
  if (head_.headers.capacity() > kKeptHeaders) HeaderList().swap(head_.headers);
}

int Http1Parser::fail(Error e, std::string_view reason) {
  phase_ = Phase::kError;
  // Whatever is wrong with a response, the client sees a bad gateway.
  error_ = kind_ == Kind::kResponse ? Error::kUpstreamBadResponse : e;
  error_reason_ = reason;
  return -1;
}

bool Http1Parser::append_span(Span& span, const char* at, size_t len) {
  if (storage_.size() + len > limits_.max_header_bytes) return false;
  if (span.len == 0) span.off = static_cast<uint32_t>(storage_.size());
  storage_.append(at, len);
  span.len += static_cast<uint32_t>(len);
  return true;
}

int Http1Parser::on_message_begin() {
  phase_ = Phase::kHead;
  storage_.clear();
  pending_.clear();
  head_.headers.clear();
  HeaderList keep;
  keep.swap(head_.headers);
  head_ = MessageHead{};
  head_.headers.swap(keep);  // reuse the vector's capacity
  method_ = target_ = reason_ = Span{};
  header_state_ = HeaderState::kNone;
  interim_ = false;
  body_bytes_ = 0;
  head_wire_bytes_ = 0;
  return 0;
}

int Http1Parser::on_method(const char* at, size_t len) {
  if (!append_span(method_, at, len))
    return fail(Error::kHeadersTooLarge, "request head too large");
  return 0;
}

int Http1Parser::on_url(const char* at, size_t len) {
  if (target_.len + len > limits_.max_request_line) return fail(Error::kUriTooLong, "URI too long");
  if (!append_span(target_, at, len))
    return fail(Error::kHeadersTooLarge, "request head too large");
  return 0;
}

int Http1Parser::on_status(const char* at, size_t len) {
  if (!append_span(reason_, at, len))
    return fail(Error::kHeadersTooLarge, "response head too large");
  return 0;
}

int Http1Parser::on_header_field(const char* at, size_t len) {
  if (header_state_ != HeaderState::kField) {
    header_state_ = HeaderState::kField;
    field_len_ = 0;
    if (phase_ != Phase::kBody) {  // a trailer is checked, not stored
      if (pending_.size() >= limits_.max_header_count) {
        return fail(Error::kHeadersTooLarge, "too many header fields");
      }
      pending_.push_back({static_cast<uint32_t>(storage_.size()), 0, 0, 0});
    }
  }
  field_len_ += len;
  // Trailer fields must not touch the head's storage (its views are in use).
  if (phase_ == Phase::kBody) return 0;
  if (storage_.size() + len > limits_.max_header_bytes) {
    return fail(Error::kHeadersTooLarge, "head too large");
  }
  storage_.append(at, len);
  pending_.back().name_len += static_cast<uint32_t>(len);
  return 0;
}

bool Http1Parser::value_starts_after_colon(const char* at) const {
  // llhttp accepts obs-fold (a line starting with SP/HTAB that continues
  // the previous value) even in strict mode. The first byte before a value
  // that is not optional whitespace must be the colon; after a fold it is
  // the LF that llhttp skipped.
  for (const char* p = at; p > feed_begin_;) {
    --p;
    if (*p != ' ' && *p != '\t') return *p == ':';
  }
  return last_non_ows_byte_ == ':';
}

int Http1Parser::on_header_value(const char* at, size_t len) {
  if (header_state_ == HeaderState::kNone) return fail(Error::kBadRequest, "empty header name");
  // llhttp reports an empty value as a zero-length span placed after the
  // line's CRLF; it carries nothing to store or check.
  if (len == 0) return 0;
  if (header_state_ == HeaderState::kField) {
    if (!value_starts_after_colon(at)) {
      return fail(Error::kBadRequest, "obsolete line folding in header value");
    }
    header_state_ = HeaderState::kValue;
    if (phase_ != Phase::kBody) pending_.back().value_off = static_cast<uint32_t>(storage_.size());
  } else {
    // A value arrives in several spans only when the input was split right
    // there; any other gap is a line break llhttp skipped (obs-fold). RFC
    // 9112 5.2 lets a recipient reject it, and a proxy must not forward it.
    const bool contiguous = last_value_feed_ == feed_generation_ && at == last_value_end_;
    const bool split_at_buffer = last_value_ended_buffer_ && at == feed_begin_;
    if (!contiguous && !split_at_buffer) {
      return fail(Error::kBadRequest, "obsolete line folding in header value");
    }
  }
  last_value_end_ = at + len;
  last_value_feed_ = feed_generation_;
  last_value_ended_buffer_ = last_value_end_ == feed_end_;
  if (phase_ == Phase::kBody) return 0;  // trailer
  if (storage_.size() + len > limits_.max_header_bytes) {
    return fail(Error::kHeadersTooLarge, "head too large");
  }
  storage_.append(at, len);
  pending_.back().value_len += static_cast<uint32_t>(len);
  return 0;
}

int Http1Parser::on_header_value_complete() {
  if (header_state_ == HeaderState::kNone || field_len_ == 0) {
    return fail(Error::kBadRequest, "empty header name");
  }
  header_state_ = HeaderState::kNone;
  last_value_end_ = nullptr;
  last_value_ended_buffer_ = false;
  return 0;
}

void Http1Parser::finish_head() {
  auto view = [this](Span s) { return std::string_view(storage_.data() + s.off, s.len); };
  head_.method = view(method_);
  head_.target = view(target_);
  head_.reason = view(reason_);
  head_.status = kind_ == Kind::kResponse ? parser_.status_code : 0;
  head_.version_major = parser_.http_major;
  head_.version_minor = parser_.http_minor;
  head_.headers.reserve(pending_.size());
  for (const PendingHeader& p : pending_) {
    std::string_view name(storage_.data() + p.name_off, p.name_len);
    std::string_view value = trim_ows(std::string_view(storage_.data() + p.value_off, p.value_len));
    head_.headers.push_back({name, value});
    if (iequals(name, "host")) {
      ++head_.host_count;
    } else if (iequals(name, "content-length")) {
      ++head_.content_length_count;
    }
  }
  head_.has_transfer_encoding = (parser_.flags & F_TRANSFER_ENCODING) != 0;
  if ((parser_.flags & F_CHUNKED) != 0) {
    head_.framing = BodyFraming::kChunked;
  } else if ((parser_.flags & F_CONTENT_LENGTH) != 0) {
    head_.content_length = parser_.content_length;
    head_.framing = parser_.content_length > 0 ? BodyFraming::kContentLength : BodyFraming::kNone;
  } else if (kind_ == Kind::kResponse) {
    head_.framing = BodyFraming::kUntilClose;
  }
  if (kind_ == Kind::kResponse) {
    const int s = head_.status;
    if (no_body_expected_ || (s >= 100 && s < 200) || s == 204 || s == 304) {
      // The head still carries Content-Length/Transfer-Encoding as sent.
      head_.framing = BodyFraming::kNone;
    }
  }
  head_.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
}

int Http1Parser::on_headers_complete() {
  finish_head();
  if (kind_ == Kind::kRequest && !(head_.version_major == 1 && head_.version_minor <= 1)) {
    return fail(Error::kVersionNotSupported, "unsupported HTTP version");
  }
  if (kind_ == Kind::kResponse && (head_.status < 100 || head_.status > 999)) {
    return fail(Error::kUpstreamBadResponse, "invalid status code");
  }
  if (kind_ == Kind::kResponse && head_.status >= 100 && head_.status < 200 &&
      head_.status != 101) {
    interim_ = true;  // 1xx: skipped; the final response follows
    return 1;
  }
  if (head_.framing == BodyFraming::kContentLength &&
      head_.content_length > limits_.max_body_bytes) {
    return fail(Error::kBodyTooLarge, "body too large");
  }
  phase_ = Phase::kBody;
  if (!head_.has_body()) return 1;  // runs on to on_message_complete, which pauses
  return HPE_PAUSED;
}

int Http1Parser::on_body(const char* at, size_t len) {
  body_bytes_ += len;
  if (body_bytes_ > limits_.max_body_bytes) return fail(Error::kBodyTooLarge, "body too large");
  decoded_.emplace_back(at, len);
  return 0;
}

int Http1Parser::on_message_complete() {
  if (interim_) {
    phase_ = Phase::kIdle;
    return 0;
  }
  phase_ = Phase::kDone;
  return HPE_PAUSED;
}

Http1Parser::Result Http1Parser::feed(const char* data, size_t len) {
  Result r;
  decoded_.clear();
  if (phase_ == Phase::kError) {
    r.event = Event::kError;
    return r;
  }
  if (head_complete_pending_) {
    // The head and the end of a body-less message came in one pass; report
    // the second event now.
    head_complete_pending_ = false;
    r.event = Event::kMessageComplete;
    return r;
  }
  const Phase entry_phase = phase_;
  ++feed_generation_;
  feed_begin_ = data;
  feed_end_ = data + len;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  if (err == HPE_PAUSED_UPGRADE && llhttp_get_error_pos(&parser_) == data) {
    // The previous message asked to switch protocols. Had the switch
    // happened, nobody would feed us its bytes: it was declined, and the
    // connection goes on as HTTP/1.1 (RFC 9110 7.8).
    llhttp_resume_after_upgrade(&parser_);
    err = llhttp_execute(&parser_, data, len);
  }
  if (err == HPE_OK || err == HPE_PAUSED) {
    r.consumed = err == HPE_OK ? len : static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
    const bool head_bytes = entry_phase != Phase::kBody;
    const bool ok = head_bytes ? check_head_bytes(data, data + r.consumed)
                               : head_.framing != BodyFraming::kChunked ||
                                     check_chunk_framing(std::string_view(data, r.consumed));
    if (!ok) {
      r.event = Event::kError;
      r.consumed = 0;
      return r;
    }
    remember_tail(data, r.consumed);
  }
  if (err == HPE_OK) {
    if (phase_ == Phase::kBody && entry_phase == Phase::kBody && len > 0) {
      r.event = Event::kBody;
      r.body = std::string_view(data, len);
    }
    return r;
  }
  if (err == HPE_PAUSED) {
    llhttp_resume(&parser_);
    if (phase_ == Phase::kBody) {
      r.event = Event::kHeadComplete;  // paused before a body
    } else if (entry_phase == Phase::kBody) {
      r.event = Event::kMessageComplete;
      r.body = std::string_view(data, r.consumed);
    } else {
      r.event = Event::kHeadComplete;  // head and message end in one pass (no body)
      head_complete_pending_ = true;
    }
    return r;
  }
  if (phase_ != Phase::kError) {
    phase_ = Phase::kError;
    error_ = err == HPE_INVALID_VERSION && kind_ == Kind::kRequest ? Error::kVersionNotSupported
             : kind_ == Kind::kRequest                             ? Error::kBadRequest
                                                                   : Error::kUpstreamBadResponse;
    error_reason_ = llhttp_get_error_reason(&parser_);
  }
  r.event = Event::kError;
  return r;
}

bool Http1Parser::check_head_bytes(const char* begin, const char* end) {
  // llhttp (strict) still accepts a bare LF in some places of the head; a
  // proxy that rebuilds the head could hide the difference from an
  // upstream, but a peer that reads it differently is how requests get
  // smuggled, so refuse it everywhere.
  for (const char* p = begin; p < end; ++p) {
    p = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (p == nullptr) break;
    const char prev = p == begin ? last_byte_ : p[-1];
    if (prev != '\r') {
      fail(Error::kBadRequest, "bare LF in message head");
      return false;
    }
  }
  // The limit counts wire bytes (request line, headers, whitespace), not
  // only what is kept.
  head_wire_bytes_ += static_cast<uint64_t>(end - begin);
  if (head_wire_bytes_ > limits_.max_header_bytes + 4) {  // + the final CRLF CRLF
    fail(Error::kHeadersTooLarge, "head too large");
    return false;
  }
  return true;
}

bool Http1Parser::check_chunk_framing(std::string_view raw) {
  // The bytes of a chunked body that are not data are framing (sizes,
  // extensions, CRLFs, trailers): a bare LF there is refused like in a head.
  char prev = last_byte_;
  size_t next_data = 0;  // index into decoded_
  const char* p = raw.data();
  const char* end = raw.data() + raw.size();
  while (p < end) {
    if (next_data < decoded_.size() && p == decoded_[next_data].data()) {
      const size_t n = decoded_[next_data++].size();
      if (n > 0) {
        p += n;
        prev = *(p - 1);
      }
      continue;
    }
    if (*p == '\n' && prev != '\r') {
      fail(Error::kBadRequest, "bare LF in chunk framing");
      return false;
    }
    prev = *p++;
  }
  return true;
}

void Http1Parser::remember_tail(const char* data, size_t len) {
  if (len == 0) return;
  // A value continues into the next feed only if this feed's last bytes
  // were value bytes.
  if (last_value_feed_ != feed_generation_ || last_value_end_ != data + len) {
    last_value_ended_buffer_ = false;
  }
  last_byte_ = data[len - 1];
  for (size_t i = len; i > 0; --i) {
    if (data[i - 1] != ' ' && data[i - 1] != '\t') {
      last_non_ows_byte_ = data[i - 1];
      break;
    }
  }
}

Http1Parser::Event Http1Parser::finish() {
  if (phase_ == Phase::kError) return Event::kError;
  if (phase_ == Phase::kIdle || phase_ == Phase::kDone) return Event::kNeedMore;
  if (phase_ == Phase::kBody && head_.framing == BodyFraming::kUntilClose) {
    phase_ = Phase::kDone;
    return Event::kMessageComplete;
  }
  fail(kind_ == Kind::kRequest ? Error::kBadRequest : Error::kUpstreamBadResponse,
       "connection closed mid-message");
  return Event::kError;
}

}  // namespace torii::http
