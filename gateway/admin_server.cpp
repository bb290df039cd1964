#include "gateway/admin_server.hpp"

#include <charconv>
#include <stdexcept>

#include "common/http_types.hpp"
#include "common/log.hpp"

namespace torii::gateway {

namespace {
constexpr size_t kMaxRequestBytes = size_t{16} * 1024;
constexpr uint64_t kConnectionTimeoutMs = 10'000;

uv_stream_t* as_stream(uv_tcp_t* t) { return reinterpret_cast<uv_stream_t*>(t); }
}  // namespace

AdminServer::AdminServer(uv_loop_t* loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {}

int AdminServer::fd() const {
  if (!listening_) return -1;
  uv_os_fd_t fd = -1;
  uv_fileno(reinterpret_cast<const uv_handle_t*>(&listener_), &fd);
  return fd;
}

void AdminServer::start(const conf::HostPort& address, int inherited_fd) {
  sockaddr_storage addr{};
  if (uv_ip4_addr(address.host.c_str(), address.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(address.host.c_str(), address.port, reinterpret_cast<sockaddr_in6*>(&addr)) !=
          0) {
    throw std::runtime_error("admin address " + address.str() + " is not an IP address");
  }
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  listening_ = true;
  int rc = inherited_fd >= 0 ? uv_tcp_open(&listener_, inherited_fd)
                             : uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(as_stream(&listener_), 128, [](uv_stream_t* s, int status) {
      if (status == 0) static_cast<AdminServer*>(s->data)->on_connection();
    });
  }
  if (rc != 0) {
    throw std::runtime_error("cannot listen on admin address " + address.str() + ": " +
                             uv_strerror(rc));
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  conf::HostPort resolved = address;
  resolved.port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  address_ = resolved.str();
}

void AdminServer::on_connection() {
  connections_.emplace_back();
  Connection& c = connections_.back();
  c.self = std::prev(connections_.end());
  c.server = this;
  c.id = next_id_++;
  c.parser =
      std::make_unique<http::Http1Parser>(http::Http1Parser::Kind::kRequest, http::ParserLimits{});
  uv_tcp_init(loop_, &c.tcp);
  uv_timer_init(loop_, &c.timer);
  c.tcp.data = &c;
  c.timer.data = &c;
  if (uv_accept(as_stream(&listener_), as_stream(&c.tcp)) != 0) {
    close_connection(c);
    return;
  }
  uv_timer_start(
      &c.timer,
      [](uv_timer_t* t) {
        auto* conn = static_cast<Connection*>(t->data);
        conn->server->close_connection(*conn);
      },
      kConnectionTimeoutMs, 0);
  uv_read_start(
      as_stream(&c.tcp),
      [](uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
        auto* conn = static_cast<Connection*>(h->data);
        conn->in.resize(conn->in_used + suggested);
        *buf = uv_buf_init(conn->in.data() + conn->in_used, static_cast<unsigned>(suggested));
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        auto* conn = static_cast<Connection*>(s->data);
        conn->server->on_read(*conn, nread, buf);
      });
}

void AdminServer::on_read(Connection& c, ssize_t nread, const uv_buf_t*) {
  // The alloc callback grew `in` by a whole buffer; keep only what arrived.
  if (nread > 0) c.in_used += static_cast<size_t>(nread);
  c.in.resize(c.in_used);
  if (c.closing) return;
  if (nread < 0) {
    close_connection(c);
    return;
  }
  if (c.in.size() > kMaxRequestBytes) {
    respond(c, {431, "text/plain; charset=utf-8", "request too large\n"}, false);
    return;
  }
  using Event = http::Http1Parser::Event;
  size_t parsed = 0;
  for (;;) {
    auto r = c.parser->feed(c.in.data() + parsed, c.in.size() - parsed);
    parsed += r.consumed;
    switch (r.event) {
      case Event::kError:
        respond(c, {400, "text/plain; charset=utf-8", "bad request\n"}, false);
        return;
      case Event::kNeedMore:
        // Everything fed was taken in (head bytes are copied by the parser).
        c.in.erase(0, parsed);
        c.in_used = c.in.size();
        return;
      case Event::kHeadComplete:
        c.head_seen = true;
        if (!c.parser->head().has_body()) {
          dispatch(c);
          return;
        }
        break;
      case Event::kBody:
        for (std::string_view part : c.parser->decoded()) c.body.append(part);
        if (c.body.size() > kMaxRequestBytes) {
          respond(c, {413, "text/plain; charset=utf-8", "request body too large\n"}, false);
          return;
        }
        break;
      case Event::kMessageComplete:
        for (std::string_view part : c.parser->decoded()) c.body.append(part);
        dispatch(c);
        return;
    }
  }
}

void AdminServer::dispatch(Connection& c) {
  uv_read_stop(as_stream(&c.tcp));
  const http::MessageHead& head = c.parser->head();
  c.head_only = head.method == "HEAD";
  const uint64_t id = c.id;
  Responder later = [this, id](const AdminResponse& r) {
    for (Connection& conn : connections_) {
      if (conn.id == id && !conn.closing && !conn.answered) {
        respond(conn, r, conn.head_only);
        return;
      }
    }
  };
  std::optional<AdminResponse> now = handler_(AdminRequest{head, c.body}, std::move(later));
  if (now) respond(c, *now, c.head_only);
}

void AdminServer::respond(Connection& c, const AdminResponse& r, bool head_only) {
  uv_read_stop(as_stream(&c.tcp));
  c.answered = true;
  char len[24];
  auto lr = std::to_chars(len, len + sizeof len, r.body.size());
  char code[8];
  auto sr = std::to_chars(code, code + sizeof code, r.status);
  c.out.clear();
  c.out.append("HTTP/1.1 ").append(code, sr.ptr).append(" ").append(http::reason_phrase(r.status));
  c.out.append("\r\nServer: torii\r\nContent-Type: ").append(r.content_type);
  c.out.append("\r\nContent-Length: ").append(len, lr.ptr);
  c.out.append("\r\nCache-Control: no-store\r\nConnection: close\r\n");
  c.out.append(r.extra_headers).append("\r\n");
  if (!head_only) c.out.append(r.body);
  uv_buf_t buf = uv_buf_init(c.out.data(), static_cast<unsigned>(c.out.size()));
  c.write_req.data = &c;
  int rc = uv_write(&c.write_req, as_stream(&c.tcp), &buf, 1, [](uv_write_t* req, int status) {
    auto* conn = static_cast<Connection*>(req->data);
    if (status != 0 || conn->closing) {
      conn->server->close_connection(*conn);
      return;
    }
    conn->shutdown_req.data = conn;
    if (uv_shutdown(&conn->shutdown_req, as_stream(&conn->tcp), [](uv_shutdown_t* sreq, int) {
          auto* sc = static_cast<Connection*>(sreq->data);
          sc->server->close_connection(*sc);
        }) != 0) {
      conn->server->close_connection(*conn);
    }
  });
  if (rc != 0) close_connection(c);
}

void AdminServer::close_connection(Connection& c) {
  if (c.closing) return;
  c.closing = true;
  c.pending_closes = 2;
  auto on_close = [](uv_handle_t* h) {
    auto* conn = static_cast<Connection*>(h->data);
    if (--conn->pending_closes == 0) conn->server->connections_.erase(conn->self);
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&c.tcp), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(&c.timer), on_close);
}

void AdminServer::close() {
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
  }
  for (Connection& c : connections_) close_connection(c);
}

}  // namespace torii::gateway
