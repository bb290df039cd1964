#include "metrics/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <climits>
#include <cstring>
#include <ctime>

namespace torii::metrics {

namespace {

// ---- number and time formatting (append straight into out) ----

void append_uint(std::string& out, uint64_t value) {
  char text[24];
  const auto r = std::to_chars(text, text + sizeof text, value);
  out.append(text, r.ptr);
}

void append_int(std::string& out, int64_t value) {
  char text[24];
  const auto r = std::to_chars(text, text + sizeof text, value);
  out.append(text, r.ptr);
}

// Writes value as exactly `width` digits (value must fit).
char* put_digits(char* p, unsigned value, int width) {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  return p + width;
}

// thousandths as "W.FFF" (e.g. 1234 -> "1.234"): integer math, no float rounding.
void append_fixed3(std::string& out, uint64_t thousandths) {
  append_uint(out, thousandths / 1000);
  char frac[4] = {'.'};
  put_digits(frac + 1, static_cast<unsigned>(thousandths % 1000), 3);
  out.append(frac, sizeof frac);
}

char* put_year(char* p, int year) {
  if (year >= 0 && year <= 9999) return put_digits(p, static_cast<unsigned>(year), 4);
  return std::to_chars(p, p + 12, year).ptr;
}

std::tm utc_time(int64_t unix_seconds) {
  std::tm tm{};
  const auto t = static_cast<time_t>(unix_seconds);
  if (gmtime_r(&t, &tm) == nullptr) {
    const time_t epoch = 0;  // out of range for the platform: show the epoch, not garbage
    gmtime_r(&epoch, &tm);
  }
  return tm;
}

// The seconds part of a timestamp only changes once a second while a worker
// logs thousands of lines, so each format caches its last rendering.
struct SecondsText {
  int64_t second = INT64_MIN;
  char text[40];
  size_t size = 0;
};

// "2026-11-25T09:12:01"
std::string_view rfc3339_seconds(int64_t second) {
  thread_local SecondsText cache;
  if (cache.second != second) {
    const std::tm tm = utc_time(second);
    char* p = put_year(cache.text, tm.tm_year + 1900);
    *p++ = '-';
    p = put_digits(p, static_cast<unsigned>(tm.tm_mon + 1), 2);
    *p++ = '-';
    p = put_digits(p, static_cast<unsigned>(tm.tm_mday), 2);
    *p++ = 'T';
    p = put_digits(p, static_cast<unsigned>(tm.tm_hour), 2);
    *p++ = ':';
    p = put_digits(p, static_cast<unsigned>(tm.tm_min), 2);
    *p++ = ':';
    p = put_digits(p, static_cast<unsigned>(tm.tm_sec), 2);
    cache.size = static_cast<size_t>(p - cache.text);
    cache.second = second;
  }
  return {cache.text, cache.size};
}

// "25/Nov/2026:09:12:01 +0000"
std::string_view common_log_seconds(int64_t second) {
  static constexpr char kMonths[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  thread_local SecondsText cache;
  if (cache.second != second) {
    const std::tm tm = utc_time(second);
    char* p = put_digits(cache.text, static_cast<unsigned>(tm.tm_mday), 2);
    *p++ = '/';
    p = std::copy_n(kMonths + size_t{3} * static_cast<size_t>(tm.tm_mon), 3, p);
    *p++ = '/';
    p = put_year(p, tm.tm_year + 1900);
    *p++ = ':';
    p = put_digits(p, static_cast<unsigned>(tm.tm_hour), 2);
    *p++ = ':';
    p = put_digits(p, static_cast<unsigned>(tm.tm_min), 2);
    *p++ = ':';
    p = put_digits(p, static_cast<unsigned>(tm.tm_sec), 2);
    p = std::copy_n(" +0000", 6, p);
    cache.size = static_cast<size_t>(p - cache.text);
    cache.second = second;
  }
  return {cache.text, cache.size};
}

// Floor division, so times before 1970 still get a fraction in [0, 1e6).
void split_unix_us(int64_t unix_us, int64_t& second, unsigned& micros) {
  second = unix_us / 1'000'000;
  int64_t rest = unix_us % 1'000'000;
  if (rest < 0) {
    rest += 1'000'000;
    --second;
  }
  micros = static_cast<unsigned>(rest);
}

// ---- string escaping ----

// Length of the well-formed UTF-8 sequence starting at p (RFC 3629: no
// overlongs, no surrogates, nothing above U+10FFFF), or 0 if it is not one.
size_t utf8_sequence_length(const unsigned char* p, size_t available) {
  const unsigned char lead = p[0];
  size_t length;
  unsigned char second_min = 0x80, second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_min = 0xA0;  // overlong
    if (lead == 0xED) second_max = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_min = 0x90;  // overlong
    if (lead == 0xF4) second_max = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (available < length || p[1] < second_min || p[1] > second_max) return 0;
  for (size_t i = 2; i < length; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
  }
  return length;
}

// True when none of the 8 bytes at p can need escaping: printable ASCII
// other than '"', '\\' (and ' ' when `space_special`). Eight bytes per test
// (SWAR); a false "no" only sends the word through the byte loop.
bool plain_word(const unsigned char* p, bool space_special) {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kHighs = 0x8080808080808080ull;
  uint64_t x;
  std::memcpy(&x, p, sizeof x);
  auto has_byte = [&](unsigned char c) {
    const uint64_t y = x ^ (kOnes * c);
    return (y - kOnes) & ~y & kHighs;
  };
  uint64_t attention = (x & kHighs) | ((x - kOnes * 0x20) & ~x & kHighs) | has_byte('"') |
                       has_byte('\\') | has_byte(0x7F);
  if (space_special) attention |= has_byte(' ');
  return attention == 0;
}

// Copies s into out, runs of plain bytes in one append; ASCII bytes for which
// must_escape() is true and bytes that are not part of valid UTF-8 go through
// write_escape(out, byte). Valid multi-byte UTF-8 is copied as is.
// `space_special`: must_escape(' ') may be true.
template <typename MustEscape, typename WriteEscape>
void append_escaped(std::string& out, std::string_view s, MustEscape must_escape,
                    WriteEscape write_escape, bool space_special = false) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(s.data());
  size_t run_start = 0;
  size_t i = 0;
  while (i < s.size()) {
    while (i + 8 <= s.size() && plain_word(bytes + i, space_special)) i += 8;
    if (i >= s.size()) break;
    const unsigned char c = bytes[i];
    if (c < 0x80) {
      if (!must_escape(c)) {
        ++i;
        continue;
      }
    } else if (const size_t length = utf8_sequence_length(bytes + i, s.size() - i)) {
      i += length;
      continue;
    }
    out.append(s.data() + run_start, i - run_start);
    write_escape(out, c);
    run_start = ++i;
  }
  out.append(s.data() + run_start, s.size() - run_start);
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  append_escaped(
      out, s, [](unsigned char c) { return c < 0x20 || c == 0x7F || c == '"' || c == '\\'; },
      [](std::string& o, unsigned char c) {
        switch (c) {
          case '"':
            o.append("\\\"");
            return;
          case '\\':
            o.append("\\\\");
            return;
          case '\n':
            o.append("\\n");
            return;
          case '\r':
            o.append("\\r");
            return;
          case '\t':
            o.append("\\t");
            return;
          case '\b':
            o.append("\\b");
            return;
          case '\f':
            o.append("\\f");
            return;
          default: {
            // Control chars, and invalid UTF-8 bytes read as Latin-1 (U+0080..U+00FF).
            const char escape[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
            o.append(escape, sizeof escape);
          }
        }
      });
  out.push_back('"');
}

// nginx's access-log escaping: a line stays one line and a quoted field
// cannot be closed early. Unquoted fields also escape spaces so they stay
// one field.
void append_clf_field(std::string& out, std::string_view s, bool escape_space) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  if (s.empty()) {
    out.push_back('-');
    return;
  }
  append_escaped(
      out, s,
      [escape_space](unsigned char c) {
        return c < 0x20 || c == 0x7F || c == '"' || c == '\\' || (escape_space && c == ' ');
      },
      [](std::string& o, unsigned char c) {
        const char escape[4] = {'\\', 'x', kHex[c >> 4], kHex[c & 0xF]};
        o.append(escape, sizeof escape);
      },
      escape_space);
}

void format_json(const AccessRecord& r, std::string& out) {
  int64_t second;
  unsigned micros;
  split_unix_us(r.time_unix_us, second, micros);
  out.append("{\"time\":\"");
  out.append(rfc3339_seconds(second));
  char fraction[9] = {'.'};
  put_digits(fraction + 1, micros, 6);
  fraction[7] = 'Z';
  fraction[8] = '"';
  out.append(fraction, sizeof fraction);

  out.append(",\"request_id\":");
  append_json_string(out, r.request_id);
  out.append(",\"client\":");
  append_json_string(out, r.client_ip);
  out.append(",\"method\":");
  append_json_string(out, r.method);
  out.append(",\"target\":");
  append_json_string(out, r.target);
  out.append(",\"protocol\":");
  append_json_string(out, r.protocol);
  out.append(",\"host\":");
  append_json_string(out, r.host);
  out.append(",\"route\":");
  append_json_string(out, r.route);
  out.append(",\"status\":");
  append_int(out, r.status);
  out.append(",\"bytes_received\":");
  append_uint(out, r.bytes_received);
  out.append(",\"bytes_sent\":");
  append_uint(out, r.bytes_sent);
  out.append(",\"duration_ms\":");
  append_fixed3(out, r.duration_us);
  if (!r.upstream_server.empty()) {
    out.append(",\"upstream\":");
    append_json_string(out, r.upstream_server);
  }
  if (r.upstream_us >= 0) {
    out.append(",\"upstream_ms\":");
    append_fixed3(out, static_cast<uint64_t>(r.upstream_us));
  }
  if (!r.cache_status.empty()) {
    out.append(",\"cache\":");
    append_json_string(out, r.cache_status);
  }
  out.append(",\"user_agent\":");
  append_json_string(out, r.user_agent);
  if (!r.referer.empty()) {
    out.append(",\"referer\":");
    append_json_string(out, r.referer);
  }
  out.append("}\n");
}

void format_combined(const AccessRecord& r, std::string& out) {
  int64_t second;
  unsigned micros;
  split_unix_us(r.time_unix_us, second, micros);
  append_clf_field(out, r.client_ip, true);
  out.append(" - - [");
  out.append(common_log_seconds(second));
  out.append("] \"");
  if (r.method.empty() && r.target.empty() && r.protocol.empty()) {
    out.push_back('-');  // no request line (e.g. a malformed request)
  } else {
    append_clf_field(out, r.method, false);
    out.push_back(' ');
    append_clf_field(out, r.target, false);
    out.push_back(' ');
    append_clf_field(out, r.protocol, false);
  }
  out.append("\" ");
  append_int(out, r.status);
  out.push_back(' ');
  append_uint(out, r.bytes_sent);
  out.append(" \"");
  append_clf_field(out, r.referer, false);
  out.append("\" \"");
  append_clf_field(out, r.user_agent, false);
  out.append("\" rt=");
  append_fixed3(out, r.duration_us / 1000);
  out.append(" urt=");
  if (r.upstream_us >= 0) {
    append_fixed3(out, static_cast<uint64_t>(r.upstream_us) / 1000);
  } else {
    out.push_back('-');
  }
  out.append(" rid=");
  append_clf_field(out, r.request_id, true);
  out.append(" route=");
  append_clf_field(out, r.route, true);
  if (!r.cache_status.empty()) {
    out.append(" cache=");
    append_clf_field(out, r.cache_status, true);
  }
  out.push_back('\n');
}

constexpr int kOpenFlags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;
constexpr int kOpenMode = 0644;
// A stalled destination may hold this many buffers' worth of lines before
// new lines are dropped: memory stays bounded however long the stall.
constexpr size_t kMaxBacklogBuffers = 16;
// uv_buf_t lengths are unsigned int; bigger buffers go out in pieces.
constexpr size_t kMaxWriteBytes = size_t{1} << 30;
// Head room so the line that crosses buffer_bytes does not reallocate.
constexpr size_t kLineReserve = size_t{16} * 1024;

uv_buf_t make_buf(std::string& bytes, size_t offset) {
  const size_t length = std::min(bytes.size() - offset, kMaxWriteBytes);
  return uv_buf_init(bytes.data() + offset, static_cast<unsigned>(length));
}

}  // namespace

void format_access_record(const AccessRecord& r, conf::AccessLogFormat format, std::string& out) {
  if (format == conf::AccessLogFormat::kCombined) {
    format_combined(r, out);
  } else {
    format_json(r, out);
  }
}

// ---- AccessLog ----

AccessLog::AccessLog(uv_loop_t* loop, const conf::AccessLog& config)
    : loop_(loop),
      path_(config.path),
      format_(config.format),
      buffer_bytes_(std::max<uint64_t>(config.buffer_bytes, 1)),
      max_backlog_bytes_(buffer_bytes_ * kMaxBacklogBuffers),
      flush_interval_ms_(
          static_cast<uint64_t>(std::max<int64_t>(config.flush_interval.count(), 1))) {
  write_req_.data = this;
  open_req_.data = this;
  close_req_.data = this;
}

AccessLog::~AccessLog() {
  // The loop must be done with this object: no request in flight, timer closed.
  assert(!write_in_flight_ && !open_in_flight_ && !close_in_flight_);
  assert(!timer_initialized_ || closed_);
  if (fd_to_close_ >= 0) ::close(fd_to_close_);
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

int AccessLog::open() {
  if (path_ == "off" || fd_ >= 0) return 0;
  if (path_ == "stdout" || path_ == "stderr") {
    fd_ = path_ == "stdout" ? STDOUT_FILENO : STDERR_FILENO;
    owns_fd_ = false;
  } else {
    uv_fs_t req;
    const int rc = uv_fs_open(loop_, &req, path_.c_str(), kOpenFlags, kOpenMode, nullptr);
    uv_fs_req_cleanup(&req);
    if (rc < 0) {
      last_error_ = rc;
      return rc;
    }
    fd_ = rc;
    owns_fd_ = true;
  }
  pending_.reserve(buffer_bytes_ + kLineReserve);
  writing_.reserve(buffer_bytes_ + kLineReserve);

  uv_timer_init(loop_, &flush_timer_);
  flush_timer_.data = this;
  timer_initialized_ = true;
  uv_timer_start(&flush_timer_, on_flush_timer, flush_interval_ms_, flush_interval_ms_);
  uv_unref(reinterpret_cast<uv_handle_t*>(&flush_timer_));  // logging alone keeps no loop alive
  enabled_ = true;
  return 0;
}

void AccessLog::append(const AccessRecord& r) {
  if (!enabled_) return;
  if (pending_.size() >= max_backlog_bytes_) {
    ++dropped_;
    return;
  }
  format_access_record(r, format_, pending_);
  // After close() the loop may have ended: no new asynchronous writes, the
  // lines wait for flush_sync().
  if (!write_in_flight_ && !closed_ && pending_.size() >= buffer_bytes_) start_write();
}

void AccessLog::on_flush_timer(uv_timer_t* timer) {
  auto* self = static_cast<AccessLog*>(timer->data);
  if (!self->write_in_flight_ && !self->pending_.empty()) self->start_write();
}

void AccessLog::start_write() {
  assert(!write_in_flight_ && !pending_.empty());
  // Swap, not copy: both buffers keep their capacity across flushes.
  writing_.swap(pending_);
  pending_.clear();
  written_ = 0;
  writing_fd_ = fd_;
  write_in_flight_ = true;
  write_rest();
}

void AccessLog::write_rest() {
  uv_buf_t buf = make_buf(writing_, written_);
  const int rc = uv_fs_write(loop_, &write_req_, writing_fd_, &buf, 1, -1, on_write_done);
  if (rc < 0) {
    uv_fs_req_cleanup(&write_req_);
    finish_write(rc);
  }
}

void AccessLog::on_write_done(uv_fs_t* req) {
  auto* self = static_cast<AccessLog*>(req->data);
  const ssize_t result = req->result;
  uv_fs_req_cleanup(req);
  if (result < 0) {
    self->finish_write(static_cast<int>(result));
    return;
  }
  self->written_ += static_cast<size_t>(result);
  if (self->written_ < self->writing_.size()) {
    if (result == 0) {
      self->finish_write(UV_EIO);  // no progress: give up rather than spin
    } else {
      self->write_rest();  // short write: the rest goes out before anything else
    }
    return;
  }
  self->finish_write(0);
}

void AccessLog::finish_write(int error) {
  if (error < 0) {
    last_error_ = error;
    count_lost_lines(std::string_view(writing_).substr(written_));
  }
  write_in_flight_ = false;
  writing_.clear();
  written_ = 0;
  if (fd_to_close_ >= 0) {
    const uv_file fd = fd_to_close_;
    fd_to_close_ = -1;
    close_fd_async(fd);
  }
  // We run inside the loop here, so writing on is safe even after close();
  // a backlog built up during this write goes out at once.
  if (pending_.size() >= buffer_bytes_) start_write();
}

void AccessLog::count_lost_lines(std::string_view bytes) {
  dropped_ += static_cast<uint64_t>(std::count(bytes.begin(), bytes.end(), '\n'));
}

void AccessLog::reopen() {
  if (!enabled_ || !owns_fd_ || closed_) return;
  reopen_requested_ = true;
  start_requested_reopen();
}

// One open/close cycle at a time (a single open_req_/close_req_); a SIGUSR1
// arriving mid-cycle is served when the cycle ends.
void AccessLog::start_requested_reopen() {
  if (!reopen_requested_ || closed_ || open_in_flight_ || close_in_flight_ || fd_to_close_ >= 0) {
    return;
  }
  reopen_requested_ = false;
  open_in_flight_ = true;
  const int rc = uv_fs_open(loop_, &open_req_, path_.c_str(), kOpenFlags, kOpenMode, on_open_done);
  if (rc < 0) {
    uv_fs_req_cleanup(&open_req_);
    open_in_flight_ = false;
    last_error_ = rc;
  }
}

void AccessLog::on_open_done(uv_fs_t* req) {
  auto* self = static_cast<AccessLog*>(req->data);
  const ssize_t result = req->result;
  uv_fs_req_cleanup(req);
  self->open_in_flight_ = false;
  if (result < 0) {
    self->last_error_ = static_cast<int>(result);  // keep logging to the old file
  } else {
    const uv_file old_fd = self->fd_;
    self->fd_ = static_cast<uv_file>(result);
    self->last_error_ = 0;
    // The in-flight write (if any) still targets old_fd: close it afterwards.
    if (self->write_in_flight_) {
      self->fd_to_close_ = old_fd;
    } else {
      self->close_fd_async(old_fd);
    }
  }
  self->start_requested_reopen();
}

void AccessLog::close_fd_async(uv_file fd) {
  close_in_flight_ = true;
  const int rc = uv_fs_close(loop_, &close_req_, fd, on_close_done);
  if (rc < 0) {
    uv_fs_req_cleanup(&close_req_);
    close_in_flight_ = false;
    last_error_ = rc;
  }
}

void AccessLog::on_close_done(uv_fs_t* req) {
  auto* self = static_cast<AccessLog*>(req->data);
  const ssize_t result = req->result;
  uv_fs_req_cleanup(req);
  self->close_in_flight_ = false;
  if (result < 0) self->last_error_ = static_cast<int>(result);
  self->start_requested_reopen();
}

void AccessLog::flush_sync() {
  if (!enabled_ || pending_.empty()) return;
  // writing_ belongs to an in-flight write if there is one (there should not
  // be once the loop has ended); pending_ is ours either way.
  write_sync(pending_);
  pending_.clear();
}

void AccessLog::write_sync(std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    uv_buf_t buf = make_buf(bytes, done);
    uv_fs_t req;
    const int rc = uv_fs_write(loop_, &req, fd_, &buf, 1, -1, nullptr);  // no callback: synchronous
    uv_fs_req_cleanup(&req);
    if (rc <= 0) {
      last_error_ = rc < 0 ? rc : UV_EIO;
      count_lost_lines(std::string_view(bytes).substr(done));
      return;
    }
    done += static_cast<size_t>(rc);
  }
}

void AccessLog::close() {
  if (closed_) return;
  closed_ = true;
  reopen_requested_ = false;
  if (timer_initialized_) {
    uv_timer_stop(&flush_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&flush_timer_), nullptr);
  }
}

}  // namespace torii::metrics
