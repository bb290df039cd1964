// Structured logging in logfmt ("ts=... level=info msg=\"...\" key=value").
// Lines are appended to an in-memory buffer; the process decides how the
// buffer reaches stderr (the master writes at once, a worker flushes it from
// its loop every ~200 ms through libuv's asynchronous file I/O).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>

namespace torii {

enum class LogLevel : uint8_t { kDebug, kInfo, kWarn, kError };
std::string_view log_level_name(LogLevel level);
bool parse_log_level(std::string_view name, LogLevel& out);

// One log line under construction. Usage:
//   LogLine(LogLevel::kInfo, "listening").kv("address", a).kv("worker", 3);
// The line is committed when the temporary is destroyed.
class LogLine {
 public:
  LogLine(LogLevel level, std::string_view message);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  LogLine& kv(std::string_view key, std::string_view value);
  LogLine& kv(std::string_view key, const char* value) { return kv(key, std::string_view(value)); }
  LogLine& kv(std::string_view key, const std::string& value) {
    return kv(key, std::string_view(value));
  }
  template <typename Int>
  requires std::is_integral_v<Int> LogLine& kv(std::string_view key, Int value) {
    if constexpr (std::is_signed_v<Int>) {
      return kv_int(key, static_cast<int64_t>(value));
    } else {
      return kv_uint(key, static_cast<uint64_t>(value));
    }
  }
  // Ask for the buffer to be written out now (startup/readiness lines).
  LogLine& flush_now() {
    flush_now_ = true;
    return *this;
  }

 private:
  LogLine& kv_int(std::string_view key, int64_t value);
  LogLine& kv_uint(std::string_view key, uint64_t value);
  bool enabled_;
  std::string line_;
  bool flush_now_ = false;
};

namespace log {
void set_level(LogLevel level);
LogLevel level();
// Replaces the function that writes buffered log text out. The default writes
// synchronously to stderr (fine for the master, which is off the hot path).
void set_flusher(std::function<void(std::string&&)> flusher);
// Hands the buffered text to the flusher (no-op when empty).
void flush();
// Buffered text waiting to be flushed (for tests).
const std::string& pending();
// Called after fork in a child so it does not inherit the parent's unflushed text.
void reset_after_fork();
}  // namespace log

}  // namespace torii
