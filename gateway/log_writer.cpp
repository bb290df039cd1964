#include "gateway/log_writer.hpp"

#include <unistd.h>

#include "common/log.hpp"

namespace torii::gateway {

namespace {
constexpr uint64_t kFlushIntervalMs = 200;
}

LogWriter::LogWriter(uv_loop_t* loop) : loop_(loop) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  req_.data = this;
}

void LogWriter::start() {
  log::set_flusher([this](std::string&& text) { submit(std::move(text)); });
  uv_timer_start(
      &timer_, [](uv_timer_t*) { log::flush(); }, kFlushIntervalMs, kFlushIntervalMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));  // does not keep the loop alive
}

void LogWriter::submit(std::string&& text) {
  queued_.append(text);
  if (!in_flight_) write_next();
}

void LogWriter::write_next() {
  if (queued_.empty()) return;
  writing_.swap(queued_);
  queued_.clear();
  in_flight_ = true;
  uv_buf_t buf = uv_buf_init(writing_.data(), static_cast<unsigned>(writing_.size()));
  int rc = uv_fs_write(loop_, &req_, STDERR_FILENO, &buf, 1, -1, [](uv_fs_t* req) {
    auto* self = static_cast<LogWriter*>(req->data);
    uv_fs_req_cleanup(req);
    self->in_flight_ = false;
    self->writing_.clear();
    self->write_next();
  });
  if (rc != 0) {
    in_flight_ = false;
    writing_.clear();
  }
}

void LogWriter::stop() {
  log::set_flusher(nullptr);
  if (!queued_.empty()) {
    std::string rest;
    rest.swap(queued_);
    log::set_flusher(nullptr);
    // Exit path: the loop is done, a synchronous write is fine now.
    ssize_t ignored = ::write(STDERR_FILENO, rest.data(), rest.size());
    (void)ignored;
  }
  log::flush();
}

void LogWriter::close() { uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr); }

}  // namespace torii::gateway
