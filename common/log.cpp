#include "common/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <ctime>

namespace torii {
namespace {

struct LogState {
  LogLevel level = LogLevel::kInfo;
  // The master writes every line at once (it is off the hot path and its
  // lines matter when things go wrong); workers batch (LogWriter).
  bool flush_each_line = true;
  std::string buffer;
  std::function<void(std::string&&)> flusher;
  // Buffered text above this size is flushed at once, whatever the interval.
  static constexpr size_t kFlushThreshold = size_t{64} * 1024;
};

LogState& state() {
  static LogState s;
  return s;
}

void write_all_to_stderr(std::string&& text) {
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to report a logging failure
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

bool needs_quoting(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20)
      return true;
  }
  return false;
}

void append_value(std::string& out, std::string_view v) {
  if (!needs_quoting(v)) {
    out.append(v);
    return;
  }
  out.push_back('"');
  for (char c : v) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out.append("\\x");
          const char* hex = "0123456789abcdef";
          out.push_back(hex[(c >> 4) & 0xf]);
          out.push_back(hex[c & 0xf]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

void append_timestamp(std::string& out) {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm_utc;
  gmtime_r(&secs, &tm_utc);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm_utc);
  out.append(buf, n);
  char frac[8];
  int fn = snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms % 1000));
  out.append(frac, static_cast<size_t>(fn));
}

}  // namespace

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

bool parse_log_level(std::string_view name, LogLevel& out) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (log_level_name(l) == name) {
      out = l;
      return true;
    }
  }
  return false;
}

LogLine::LogLine(LogLevel level, std::string_view message) : enabled_(level >= state().level) {
  if (!enabled_) return;
  // The line is built on its own and appended whole when it ends, so two
  // lines alive at once never interleave.
  std::string& b = line_;
  b.append("ts=");
  append_timestamp(b);
  b.append(" level=");
  b.append(log_level_name(level));
  b.append(" pid=");
  char pid[16];
  auto r = std::to_chars(pid, pid + sizeof pid, static_cast<long>(getpid()));
  b.append(pid, r.ptr);
  b.append(" msg=");
  b.push_back('"');
  for (char c : message) {
    if (c == '"' || c == '\\') b.push_back('\\');
    b.push_back(c);
  }
  b.push_back('"');
  if (level >= LogLevel::kWarn) flush_now_ = true;
}

LogLine::~LogLine() {
  if (!enabled_) return;
  LogState& s = state();
  line_.push_back('\n');
  s.buffer.append(line_);
  if (flush_now_ || s.flush_each_line || s.buffer.size() >= LogState::kFlushThreshold) log::flush();
}

LogLine& LogLine::kv(std::string_view key, std::string_view value) {
  if (!enabled_) return *this;
  std::string& b = line_;
  b.push_back(' ');
  b.append(key);
  b.push_back('=');
  append_value(b, value);
  return *this;
}

LogLine& LogLine::kv_int(std::string_view key, int64_t value) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  return kv(key, std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
}

LogLine& LogLine::kv_uint(std::string_view key, uint64_t value) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  return kv(key, std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
}

namespace log {
void set_level(LogLevel level) { state().level = level; }
LogLevel level() { return state().level; }
void set_flusher(std::function<void(std::string&&)> flusher) {
  // A custom flusher batches (the worker's asynchronous writer).
  state().flush_each_line = !flusher;
  state().flusher = std::move(flusher);
}
void flush() {
  LogState& s = state();
  if (s.buffer.empty()) return;
  std::string text;
  text.swap(s.buffer);
  if (s.flusher) {
    s.flusher(std::move(text));
  } else {
    write_all_to_stderr(std::move(text));
  }
}
const std::string& pending() { return state().buffer; }
void reset_after_fork() {
  state().buffer.clear();
  state().flusher = nullptr;
}
}  // namespace log

}  // namespace torii
