// The master <-> worker control channel: one AF_UNIX socketpair per worker
// process, carrying small framed messages (4-byte big-endian length, then a
// JSON document). Used for requests the master fans out and whose answers
// it collects, such as cache purges. One end per process, each on that
// process's libuv loop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace torii::gateway {

// Splits a byte stream into frames (pure, for tests).
class FrameDecoder {
 public:
  static constexpr uint32_t kMaxFrame = 16u << 20;  // shared pre-warmed responses are up to 8 MiB
  // Appends bytes; returns complete frames. Sets error() on an oversized frame.
  std::vector<std::string> feed(std::string_view bytes);
  bool error() const { return error_; }

 private:
  std::string buffer_;
  bool error_ = false;
};
// Length prefix + payload.
std::string encode_frame(std::string_view payload);

class ControlChannel {
 public:
  using OnMessage = std::function<void(ControlChannel& channel, const std::string& message)>;
  using OnClosed = std::function<void(ControlChannel& channel)>;

  // Takes ownership of `fd` (one end of a socketpair).
  ControlChannel(uv_loop_t* loop, int fd, OnMessage on_message, OnClosed on_closed);
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  void send(std::string_view message);
  // The channel alone does not keep the loop running.
  void unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&pipe_)); }
  // Closes the pipe; the object must stay alive until closed() is true
  // (its close callback runs on the next loop iteration).
  void close();
  bool closed() const { return closed_; }

 private:
  struct Write {
    uv_write_t req;
    std::string bytes;
  };
  void on_read(ssize_t nread, const uv_buf_t* buf);

  uv_pipe_t pipe_;
  FrameDecoder decoder_;
  OnMessage on_message_;
  OnClosed on_closed_;
  char read_buf_[64 * 1024];
  bool open_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace torii::gateway
