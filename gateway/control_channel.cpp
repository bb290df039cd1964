#include "gateway/control_channel.hpp"

#include <unistd.h>

#include <memory>

namespace torii::gateway {

std::vector<std::string> FrameDecoder::feed(std::string_view bytes) {
  std::vector<std::string> frames;
  if (error_) return frames;
  buffer_.append(bytes);
  size_t pos = 0;
  while (buffer_.size() - pos >= 4) {
    const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + pos);
    const uint32_t len =
        (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    if (len > kMaxFrame) {
      error_ = true;
      buffer_.clear();
      return frames;
    }
    if (buffer_.size() - pos - 4 < len) break;
    frames.emplace_back(buffer_, pos + 4, len);
    pos += 4 + len;
  }
  buffer_.erase(0, pos);
  return frames;
}

std::string encode_frame(std::string_view payload) {
  const auto len = static_cast<uint32_t>(payload.size());
  std::string out;
  out.reserve(4 + payload.size());
  out.push_back(static_cast<char>(len >> 24));
  out.push_back(static_cast<char>((len >> 16) & 0xff));
  out.push_back(static_cast<char>((len >> 8) & 0xff));
  out.push_back(static_cast<char>(len & 0xff));
  out.append(payload);
  return out;
}

ControlChannel::ControlChannel(uv_loop_t* loop, int fd, OnMessage on_message, OnClosed on_closed)
    : on_message_(std::move(on_message)), on_closed_(std::move(on_closed)) {
  uv_pipe_init(loop, &pipe_, 0);
  pipe_.data = this;
  if (uv_pipe_open(&pipe_, fd) != 0) {
    ::close(fd);
    close();
    return;
  }
  open_ = true;
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&pipe_),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* self = static_cast<ControlChannel*>(h->data);
        *buf = uv_buf_init(self->read_buf_, sizeof self->read_buf_);
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        static_cast<ControlChannel*>(s->data)->on_read(nread, buf);
      });
}

void ControlChannel::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (nread == 0 || closing_) return;
  if (nread < 0) {
    close();
    return;
  }
  for (const std::string& frame :
       decoder_.feed(std::string_view(buf->base, static_cast<size_t>(nread)))) {
    if (closing_) return;
    on_message_(*this, frame);
  }
  if (decoder_.error()) close();
}

void ControlChannel::send(std::string_view message) {
  if (!open_ || closing_) return;
  auto w = std::make_unique<Write>();
  w->bytes = encode_frame(message);
  w->req.data = w.get();
  uv_buf_t b = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  const int rc =
      uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&pipe_), &b, 1, [](uv_write_t* req, int) {
        // Owned by the request until it completes.
        std::unique_ptr<Write> done(static_cast<Write*>(req->data));
      });
  if (rc == 0) {
    (void)w.release();  // freed in the write callback
  } else {
    close();
  }
}

void ControlChannel::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), [](uv_handle_t* h) {
    auto* self = static_cast<ControlChannel*>(h->data);
    self->closed_ = true;
    if (self->on_closed_) self->on_closed_(*self);
  });
}

}  // namespace torii::gateway
