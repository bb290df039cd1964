// The admin listener: a small non-blocking HTTP/1.1 server on the master's
// libuv loop (/metrics, /healthz, /readyz, and the admin endpoints of later
// features). It lives outside the workers, so it keeps answering when they
// are saturated, stuck or restarting.
#pragma once

#include <uv.h>

#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/http1_parser.hpp"
#include "conf/config.hpp"

namespace torii::gateway {

struct AdminResponse {
  AdminResponse(int status_code, std::string type, std::string text, std::string extra = {})
      : status(status_code),
        content_type(std::move(type)),
        body(std::move(text)),
        extra_headers(std::move(extra)) {}
  int status;
  std::string content_type;
  std::string body;
  std::string extra_headers;  // complete "Name: value\r\n" lines
};

struct AdminRequest {
  const http::MessageHead& head;
  std::string_view body;  // at most 16 KiB
};

class AdminServer {
 public:
  // Answers later; safe to call after the client went away (then it does nothing).
  using Responder = std::function<void(const AdminResponse&)>;
  // Returns the response, or nullopt when it will answer through the
  // responder (an answer that needs the workers, such as a purge).
  using Handler = std::function<std::optional<AdminResponse>(const AdminRequest&, Responder)>;

  AdminServer(uv_loop_t* loop, Handler handler);
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and listens (or listens on `inherited_fd`, a socket handed over by
  // the master being upgraded); throws std::runtime_error naming the address.
  void start(const conf::HostPort& address, int inherited_fd = -1);
  // The listening socket (to hand over on a binary upgrade), -1 if none.
  int fd() const;
  const std::string& address() const { return address_; }
  // Closes the listener and every connection.
  void close();

 private:
  struct Connection {
    AdminServer* server = nullptr;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    int pending_closes = 0;
    bool closing = false;
    std::unique_ptr<http::Http1Parser> parser;
    std::string in;
    size_t in_used = 0;  // bytes of `in` holding data (the rest is the read buffer)
    std::string body;
    bool head_seen = false;
    bool head_only = false;
    bool answered = false;
    uint64_t id = 0;
    std::string out;
    std::list<Connection>::iterator self;
  };

  void on_connection();
  void on_read(Connection& c, ssize_t nread, const uv_buf_t* buf);
  void dispatch(Connection& c);
  void respond(Connection& c, const AdminResponse& r, bool head_only);
  void close_connection(Connection& c);

  uv_loop_t* loop_;
  Handler handler_;
  uv_tcp_t listener_;
  bool listening_ = false;
  std::string address_;
  std::list<Connection> connections_;
  uint64_t next_id_ = 1;
};

}  // namespace torii::gateway
