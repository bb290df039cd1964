// Writes a worker's buffered log text to stderr without blocking its loop:
// the text is flushed every ~200 ms (or at once for important lines) with
// libuv's asynchronous file I/O, one write in flight at a time.
#pragma once

#include <uv.h>

#include <string>

namespace torii::gateway {

class LogWriter {
 public:
  explicit LogWriter(uv_loop_t* loop);
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Installs itself as the process's log flusher and starts the timer.
  void start();
  // Takes back the flusher and writes what is left synchronously (exit path).
  void stop();
  void close();  // closes the timer handle

 private:
  void submit(std::string&& text);
  void write_next();

  uv_loop_t* loop_;
  uv_timer_t timer_;
  uv_fs_t req_;
  bool in_flight_ = false;
  std::string writing_;  // bytes owned by the in-flight write
  std::string queued_;   // waiting for it to finish
};

}  // namespace torii::gateway
