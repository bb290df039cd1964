// Access log: one line per completed request, buffered in memory by the
// worker and written out in chunks (every flush_interval, or when the
// buffer passes its size) through libuv's asynchronous file I/O, so a slow
// disk or pipe never blocks the worker's loop.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "conf/config.hpp"

namespace torii::metrics {

// Everything a line may show. Views must stay valid for the append() call only.
struct AccessRecord {
  int64_t time_unix_us = 0;  // when the request head was complete
  std::string_view request_id;
  std::string_view client_ip;
  std::string_view method;
  std::string_view target;    // request-target as received (path + query)
  std::string_view protocol;  // "HTTP/1.1" / "HTTP/1.0"
  std::string_view host;
  std::string_view route;  // route name, empty when none matched
  int status = 0;
  uint64_t bytes_received = 0;       // request head + body bytes read from the client
  uint64_t bytes_sent = 0;           // response bytes queued to the client
  uint64_t duration_us = 0;          // head complete -> response fully queued
  std::string_view upstream_server;  // "host:port", empty when not forwarded
  int64_t upstream_us = -1;          // upstream time, -1 when not forwarded
  std::string_view cache_status;     // caching routes: hit, miss, stale... (empty otherwise)
  std::string_view user_agent;
  std::string_view referer;
};

// Appends one line (ending in '\n') to out. Pure: unit-tested.
// JSON: {"time":"2026-11-25T09:12:01.123456Z","request_id":...,"status":200,...}
//   strings are JSON-escaped (control chars, quotes, backslash, invalid UTF-8
//   bytes as \u00XX); absent optional fields are omitted.
// combined: the Apache/nginx combined format
//   ip - - [25/Nov/2026:09:12:01 +0000] "GET /p HTTP/1.1" 200 123 "referer" "ua"
//   followed by rt=0.001 urt=0.000|- rid=ID route=NAME|- [cache=STATUS] (seconds, 3 decimals);
//   empty referer/ua/rid/client show as "-"; quotes, backslashes, control
//   chars and invalid UTF-8 bytes are written as \xHH (nginx style).
void format_access_record(const AccessRecord& r, conf::AccessLogFormat format, std::string& out);

class AccessLog {
 public:
  AccessLog(uv_loop_t* loop, const conf::AccessLog& config);
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;
  ~AccessLog();

  // Opens the destination (synchronously: called before the worker serves).
  // Returns 0 or a libuv error.
  int open();
  bool enabled() const { return enabled_; }
  // Formats the record into the buffer; flushes when the buffer is full.
  void append(const AccessRecord& r);
  // SIGUSR1: opens the path again (after logrotate moved the file) without
  // blocking; lines keep going to the old file until the new one is open.
  void reopen();
  // Writes what is buffered and waits for nothing: the final flush on exit
  // is synchronous (the loop is finished by then).
  void flush_sync();
  // Closes the timer handle (part of the worker's shutdown).
  void close();

  // Lines that were not logged: dropped while the destination fell behind
  // (more than 16 x buffer_bytes waiting) or lost to a failed write.
  uint64_t dropped() const { return dropped_; }
  // The latest open/write/close error (a libuv code), 0 when none; a
  // successful reopen() clears it.
  int last_error() const { return last_error_; }

 private:
  static void on_flush_timer(uv_timer_t* timer);
  static void on_write_done(uv_fs_t* req);
  static void on_open_done(uv_fs_t* req);
  static void on_close_done(uv_fs_t* req);
  void start_write();  // pending_ becomes writing_, written asynchronously
  void write_rest();   // (re)submits writing_[written_..]
  void finish_write(int error);
  void start_requested_reopen();
  void close_fd_async(uv_file fd);
  void write_sync(std::string& bytes);
  void count_lost_lines(std::string_view bytes);

  uv_loop_t* loop_;
  std::string path_;
  conf::AccessLogFormat format_;
  size_t buffer_bytes_;       // flush threshold
  size_t max_backlog_bytes_;  // pending_ beyond this: new lines are dropped
  uint64_t flush_interval_ms_;

  // libuv memory lives here: the object never moves and outlives the loop run.
  uv_timer_t flush_timer_{};
  uv_fs_t write_req_{};
  uv_fs_t open_req_{};
  uv_fs_t close_req_{};

  uv_file fd_ = -1;
  bool owns_fd_ = false;      // false for stdout/stderr
  std::string pending_;       // lines appended since the last write started
  std::string writing_;       // owned by the in-flight write
  size_t written_ = 0;        // bytes of writing_ already written
  uv_file writing_fd_ = -1;   // the fd the in-flight write goes to
  uv_file fd_to_close_ = -1;  // replaced by reopen(); closed after the in-flight write
  bool timer_initialized_ = false;
  bool closed_ = false;
  bool write_in_flight_ = false;
  bool open_in_flight_ = false;
  bool close_in_flight_ = false;
  bool reopen_requested_ = false;
  uint64_t dropped_ = 0;
  int last_error_ = 0;
  bool enabled_ = false;
};

}  // namespace torii::metrics
