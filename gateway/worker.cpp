#include "gateway/worker.hpp"

#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstring>

#include "common/log.hpp"
#include "gateway/cache_purge.hpp"

namespace torii::gateway {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

Worker::Worker(const conf::Config& config, unsigned index, std::vector<ListenFd> listen_fds,
               WorkerStats stats, int control_fd, ConfigResources resources)
    : io_(&loop_),
      config_(config),
      index_(index),
      listen_fds_(std::move(listen_fds)),
      router_(config_.routes),
      slot_header_(stats.header),
      layout_(std::move(stats.layout)),
      stats_(stats.cells),
      resources_(std::move(resources)),
      control_fd_(control_fd),
      access_log_(&loop_, config_.access_log),
      log_writer_(&loop_) {
  uint64_t seed[2] = {0, 0};
  if (getrandom(seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed)) {
    seed[0] = static_cast<uint64_t>(getpid()) * 0x9e3779b97f4a7c15ull ^ uv_hrtime();
    seed[1] = uv_hrtime();
  }
  rng_[0] = seed[0];
  rng_[1] = seed[1];
  for (size_t i = 0; i < config_.upstreams.size(); ++i) {
    groups_.push_back(std::make_unique<upstream::UpstreamGroup>(
        io_, config_.upstreams[i], stats_, layout_.upstreams.at(i),
        i < resources_.tls.upstreams.size() ? resources_.tls.upstreams[i] : nullptr));
  }
  cache_ = std::make_unique<WorkerCache>(*this);
  policies_ = std::make_unique<RoutePolicies>(config_, resources_.auth, resources_.rate_limits);
  for (const conf::Route& r : config_.routes) {
    hsts_lines_.push_back(r.hsts.empty() ? std::string()
                                         : "Strict-Transport-Security: " + r.hsts + "\r\n");
  }
  for (const ListenFd& lf : listen_fds_) {
    if (lf.listener >= resources_.tls.listeners.size() || !resources_.tls.listeners[lf.listener])
      continue;
    https_port_ = lf.bound.port;
    break;
  }
}

Worker::~Worker() {
  // Every handle was closed by the time run() returned.
  uv_loop_close(&loop_);
}

uint64_t Worker::random() { return splitmix64(rng_[0]); }

void Worker::next_request_id(char out[33]) {
  // Two hex digits per table lookup: this runs for every request.
  static constexpr auto kHexPairs = [] {
    std::array<char, 512> t{};
    constexpr char kHex[] = "0123456789abcdef";
    for (size_t i = 0; i < 256; ++i) {
      t[2 * i] = kHex[i >> 4];
      t[2 * i + 1] = kHex[i & 15];
    }
    return t;
  }();
  const uint64_t halves[2] = {splitmix64(rng_[0]), splitmix64(rng_[1])};
  char* p = out;
  for (uint64_t v : halves) {
    for (int i = 0; i < 8; ++i) {
      const size_t byte = (v >> (i * 8)) & 0xff;
      p[0] = kHexPairs[2 * byte];
      p[1] = kHexPairs[2 * byte + 1];
      p += 2;
    }
  }
  out[32] = '\0';
}

int Worker::run() {
  log_writer_.start();
  if (int rc = access_log_.open(); rc != 0) {
    LogLine(LogLevel::kError, "cannot open the access log")
        .kv("path", config_.access_log.path)
        .kv("error", uv_strerror(rc));
    log_writer_.stop();
    return 1;
  }
  auto on_signal = [](uv_signal_t* h, int signum) {
    auto* self = static_cast<Worker*>(h->data);
    if (signum == SIGTERM || signum == SIGUSR2) {
      self->start_drain(signum == SIGUSR2);
    } else if (signum == SIGUSR1) {
      self->access_log_.reopen();  // logrotate moved the file
    } else if (signum == SIGHUP) {
      // The master handles reloads; a worker ignores a stray SIGHUP.
    } else {
      // SIGINT / SIGQUIT: stop at once.
      LogLine(LogLevel::kInfo, "worker stopping now").kv("worker", self->index_);
      self->access_log_.flush_sync();
      self->log_writer_.stop();
      _exit(0);
    }
  };
  for (auto [sig, handle] : {std::pair{SIGTERM, &sigterm_}, std::pair{SIGINT, &sigint_},
                             std::pair{SIGQUIT, &sigquit_}, std::pair{SIGHUP, &sighup_},
                             std::pair{SIGUSR1, &sigusr1_}, std::pair{SIGUSR2, &sigusr2_}}) {
    uv_signal_init(&loop_, handle);
    handle->data = this;
    uv_signal_start(handle, on_signal, sig);
    uv_unref(reinterpret_cast<uv_handle_t*>(handle));
  }
  for (auto& g : groups_) g->start_background(&loop_, random());

  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  if (control_fd_ >= 0) {
    control_ = std::make_unique<ControlChannel>(
        &loop_, control_fd_,
        [this](ControlChannel& ch, const std::string& message) {
          if (cache_->on_control_message(message)) return;
          if (auto key = parse_ticket_key_message(message)) {
            // Every context of this generation shares one key set.
            for (const auto& ctx : resources_.tls.listeners) {
              if (!ctx) continue;
              ctx->add_ticket_key(*key);
              break;
            }
            return;
          }
          const std::string reply = handle_purge_message(message, [this](const PurgeRequest& r) {
            return cache_->purge(r.host, r.target, r.prefix);
          });
          if (!reply.empty()) ch.send(reply);
        },
        nullptr);
    control_->unref();
    control_fd_ = -1;
    cache_->set_control([this](const std::string& message) { control_->send(message); });
  }

  uv_timer_init(&loop_, &heartbeat_timer_);
  heartbeat_timer_.data = this;
  if (slot_header_ != nullptr) {
    slot_header_->heartbeat_ms.store(uv_hrtime() / 1'000'000, std::memory_order_relaxed);
    slot_header_->pid.store(getpid(), std::memory_order_relaxed);
    uv_timer_start(
        &heartbeat_timer_,
        [](uv_timer_t* t) {
          auto* self = static_cast<Worker*>(t->data);
          self->slot_header_->heartbeat_ms.store(uv_hrtime() / 1'000'000,
                                                 std::memory_order_relaxed);
        },
        250, 250);
    uv_unref(reinterpret_cast<uv_handle_t*>(&heartbeat_timer_));
  }
  // Pre-warmed cache entries are fetched before the worker takes traffic and
  // reports ready. Meanwhile connections for its socket wait in the queue
  // (on a reload, the previous generation's worker keeps accepting on the
  // same socket until this one is ready).
  const bool first_is_tls = !listen_fds_.empty() &&
                            listen_fds_.front().listener < resources_.tls.listeners.size() &&
                            resources_.tls.listeners[listen_fds_.front().listener] != nullptr;
  cache_->start_prewarm(first_is_tls ? "https" : "http", first_listener_authority(), [this] {
    if (draining_) return;
    if (!start_serving()) {
      log_writer_.stop();
      _exit(1);
    }
  });
  uv_run(&loop_, UV_RUN_DEFAULT);
  access_log_.flush_sync();
  LogLine(LogLevel::kInfo, "worker exited cleanly").kv("worker", index_);
  log_writer_.stop();
  return 0;
}

bool Worker::start_serving() {
  for (const ListenFd& lf : listen_fds_) {
    auto l = std::make_unique<Listener>();
    l->worker = this;
    l->tls = lf.listener < resources_.tls.listeners.size()
                 ? resources_.tls.listeners[lf.listener].get()
                 : nullptr;
    l->index = lf.listener;
    uv_tcp_init(&loop_, &l->tcp);
    l->tcp.data = l.get();
    int rc = uv_tcp_open(&l->tcp, lf.fd);
    if (rc == 0) {
      rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->tcp),
                     config_.listeners[lf.listener].backlog, [](uv_stream_t* server, int status) {
                       static_cast<Listener*>(server->data)->worker->on_connection(server, status);
                     });
    }
    if (rc != 0) {
      LogLine(LogLevel::kError, "cannot listen").kv("error", uv_strerror(rc));
      return false;
    }
    listeners_.push_back(std::move(l));
  }

  if (slot_header_ != nullptr) slot_header_->ready.store(1, std::memory_order_release);
  LogLine(LogLevel::kInfo, "worker ready").kv("worker", index_).kv("pid", getpid()).flush_now();
  return true;
}

std::string Worker::first_listener_authority() const {
  return listen_fds_.empty() ? std::string("localhost") : listen_fds_.front().bound.str();
}

void Worker::on_connection(uv_stream_t* server, int status) {
  if (status < 0) {
    LogLine(LogLevel::kWarn, "accept failed").kv("error", uv_strerror(status));
    return;
  }
  if (draining_) return;
  const auto* listener = static_cast<Listener*>(server->data);
  ClientConnection& conn = new_connection(listener->tls, listener->index);
  if (!conn.accept(server)) return;
  if (connections_.size() > config_.limits.max_connections) {
    // Over the cap: shed this one rather than degrade every connection.
    LogLine(LogLevel::kWarn, "max_connections reached, closing new connection")
        .kv("limit", config_.limits.max_connections);
    conn.close();
  }
}

ClientConnection& Worker::new_connection(const TlsServerContext* tls, size_t listener) {
  connections_.emplace_back(*this, tls, listener);
  ClientConnection& conn = connections_.back();
  conn.self_ = std::prev(connections_.end());
  return conn;
}

void Worker::on_connection_closed(ClientConnection& conn) {
  connections_.erase(conn.self_);
  maybe_finish();
}

void Worker::start_drain(bool for_reload) {
  if (draining_) return;
  draining_ = true;
  drain_for_reload_ = for_reload;
  for (auto& g : groups_) g->stop_background();  // the next generation probes
  if (slot_header_ != nullptr) slot_header_->ready.store(0, std::memory_order_release);
  LogLine(LogLevel::kInfo, "worker draining")
      .kv("worker", index_)
      .kv("connections", connections_.size())
      .flush_now();
  // Connections already queued on our sockets were promised service: take
  // them all before closing, rather than let the close reset them.
  for (auto& l : listeners_) {
    uv_os_fd_t fd = -1;
    uv_fileno(reinterpret_cast<uv_handle_t*>(&l->tcp), &fd);
    for (;;) {
      int client = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (client < 0) break;
      new_connection(l->tls, l->index).adopt(client);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp), nullptr);
  }
  for (ClientConnection& c : connections_) c.start_drain();
  uv_timer_start(
      &drain_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Worker*>(t->data);
        LogLine(LogLevel::kWarn, "drain deadline reached, closing connections")
            .kv("connections", self->connections_.size());
        for (ClientConnection& c : self->connections_) c.close();
      },
      static_cast<uint64_t>(config_.timeouts.drain.count()), 0);
  maybe_finish();
}

void Worker::maybe_finish() {
  if (!draining_ || finished_ || !connections_.empty()) return;
  finished_ = true;
  close_all_handles();
}

void Worker::close_all_handles() {
  cache_->close();
  if (control_) control_->close();
  for (auto& g : groups_) {
    g->stop_background();
    g->close_idle();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&heartbeat_timer_), nullptr);
  access_log_.close();
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sigquit_, &sighup_, &sigusr1_, &sigusr2_}) {
    uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
  }
  log_writer_.close();
}

void run_worker_process(const conf::Config& config, unsigned index,
                        std::vector<Worker::ListenFd> listen_fds, WorkerStats stats, int control_fd,
                        ConfigResources resources) {
  // Die with the master: an orphaned worker would keep serving an old config.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int rc = 1;
  try {
    Worker worker(config, index, std::move(listen_fds), std::move(stats), control_fd,
                  std::move(resources));
    rc = worker.run();
  } catch (const std::exception& e) {
    LogLine(LogLevel::kError, "worker failed").kv("worker", index).kv("error", e.what());
    log::flush();
  }
  _exit(rc);
}

}  // namespace torii::gateway
