#include "gateway/master.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "gateway/config_resources.hpp"
#include "gateway/pid_file.hpp"
#include "gateway/router.hpp"
#include "gateway/version.hpp"
#include "gateway/worker.hpp"

namespace torii::gateway {

namespace {
// Rate-limit keys (client addresses, API keys) tracked at once, for the
// whole gateway: 16 bytes each, 1 MiB in all; keep live keys under ~60%.
constexpr size_t kRateLimitKeys = 65'536;
}  // namespace

namespace {
constexpr uint64_t kMinBackoffMs = 100;
constexpr uint64_t kMaxBackoffMs = 30'000;
constexpr uint64_t kHealthyRunMs = 2'000;  // a worker that lived this long was not crash-looping
constexpr uint64_t kKillGraceMs = 5'000;   // after the drain deadline
constexpr uint64_t kReloadPollMs = 20;
constexpr uint64_t kReloadReadyTimeoutMs = 30'000;
constexpr uint64_t kStaleHeartbeatMs = 2'000;
// Cells per worker slot: room for every series of a large config (and for
// new ones on reload); untouched pages of the shared mapping cost nothing.
constexpr size_t kCellsPerSlot = size_t{64} * 1024;
// Slots: a generation and the one draining behind it, at any worker count
// up to this (a reload beyond needs a restart).
constexpr size_t kMinStatsWorkers = 64;

void close_all_handles(uv_loop_t* loop) {
  uv_walk(
      loop,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
}
}  // namespace

Master::Master(conf::Config config)
    : config_path_(config.source_path), stats_registry_(kCellsPerSlot) {
  current_ = std::make_shared<Generation>();
  current_->number = ++generation_counter_;
  current_->config = std::make_shared<const conf::Config>(std::move(config));
  uv_loop_init(&loop_);
}

Master::~Master() {
  for (ListenSocketSet& s : sockets_) close_listen_sockets(s);
  uv_loop_close(&loop_);
}

// ---- binary upgrade --------------------------------------------------------

namespace {
constexpr const char* kInheritEnv = "TORII_INHERIT";
constexpr const char* kUpgradeFromEnv = "TORII_UPGRADE_FROM";
}  // namespace

void Master::set_command_line(std::string executable, std::vector<std::string> args) {
  executable_ = std::move(executable);
  args_ = std::move(args);
}

void Master::on_upgrade() {
  if (stopping_ || upgrade_child_ != 0 || upgrade_from_ != 0) {
    LogLine(LogLevel::kWarn, "binary upgrade refused: one is already in progress or stopping")
        .kv("pid", getpid());
    return;
  }
  // "L|<configured address>|fd,fd;...;A|fd": the sockets the new master takes over.
  std::string inherit;
  std::vector<int> fds;
  for (const ListenSocketSet& set : sockets_) {
    inherit.append("L|").append(set.requested.str()).append("|");
    for (size_t i = 0; i < set.fds.size(); ++i) {
      if (i > 0) inherit.push_back(',');
      inherit.append(std::to_string(set.fds[i]));
      fds.push_back(set.fds[i]);
    }
    inherit.push_back(';');
  }
  if (admin_ && admin_->fd() >= 0) {
    inherit.append("A|").append(std::to_string(admin_->fd()));
    fds.push_back(admin_->fd());
  }
  log::flush();
  const pid_t pid = fork();
  if (pid < 0) {
    LogLine(LogLevel::kError, "binary upgrade failed: fork").kv("error", std::strerror(errno));
    return;
  }
  if (pid == 0) {
    // The new master blocks nothing once it runs (main unblocks); until the
    // exec, no signal may reach the old master's handlers in this copy.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, nullptr);
    for (int fd : fds) fcntl(fd, F_SETFD, 0);  // survive the exec
    setenv(kInheritEnv, inherit.c_str(), 1);
    setenv(kUpgradeFromEnv, std::to_string(getppid()).c_str(), 1);
    std::vector<char*> argv;
    for (std::string& a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(executable_.c_str(), argv.data());
    const char msg[] = "torii: binary upgrade: exec failed\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
  }
  upgrade_child_ = pid;
  LogLine(LogLevel::kInfo, "binary upgrade started")
      .kv("new_master", pid)
      .kv("binary", executable_);
}

void Master::adopt_inherited_sockets() {
  const char* env = std::getenv(kInheritEnv);
  if (const char* from = std::getenv(kUpgradeFromEnv)) upgrade_from_ = std::atoi(from);
  if (env == nullptr) return;
  const std::string spec = env;
  unsetenv(kInheritEnv);
  unsetenv(kUpgradeFromEnv);
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t end = spec.find(';', pos);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(pos, end - pos);
    pos = end + 1;
    if (item.rfind("A|", 0) == 0) {
      inherited_admin_fd_ = std::atoi(item.c_str() + 2);
      continue;
    }
    const size_t bar = item.find('|', 2);
    if (item.rfind("L|", 0) != 0 || bar == std::string::npos) continue;
    auto address = conf::parse_host_port(item.substr(2, bar - 2));
    if (!address) continue;
    ListenSocketSet set;
    set.requested = *address;
    set.bound = *address;
    // Sets come in the old master's order: the n-th one of an address is its occurrence n.
    set.occurrence = static_cast<size_t>(
        std::count_if(sockets_.begin(), sockets_.end(), [&](const ListenSocketSet& s) {
          return s.requested.host == address->host && s.requested.port == address->port;
        }));
    std::string list = item.substr(bar + 1);
    for (size_t p = 0; p < list.size();) {
      size_t comma = list.find(',', p);
      if (comma == std::string::npos) comma = list.size();
      const int fd = std::atoi(list.c_str() + p);
      fcntl(fd, F_SETFD, FD_CLOEXEC);
      set.fds.push_back(fd);
      p = comma + 1;
    }
    if (!set.fds.empty()) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      if (getsockname(set.fds[0], reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
        set.bound.port =
            ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
      }
      LogLine(LogLevel::kInfo, "listening (inherited)")
          .kv("address", set.address())
          .kv("sockets", set.fds.size());
      sockets_.push_back(std::move(set));
    }
  }
  if (inherited_admin_fd_ >= 0) fcntl(inherited_admin_fd_, F_SETFD, FD_CLOEXEC);
}

void Master::check_upgrade_ready() {
  if (upgrade_from_ == 0 || ready_workers(*current_) < current_->config->workers) return;
  uv_timer_stop(&upgrade_timer_);
  LogLine(LogLevel::kInfo, "binary upgrade: taking over").kv("old_master", upgrade_from_);
  kill(upgrade_from_, SIGWINCH);
  upgrade_from_ = 0;
  // Inherited sockets this config does not listen on: the old master's
  // workers drain their queues; our copies go now.
  close_dropped_listeners();
}

void Master::on_handover() {
  if (stopping_) return;
  LogLine(LogLevel::kInfo, "binary upgrade: handing over to the new master, draining workers")
      .kv("new_master", upgrade_child_);
  stopping_ = true;
  upgrade_child_ = 0;
  uv_timer_stop(&reload_timer_);
  for (WorkerProcess& w : workers_) uv_timer_stop(&w.respawn_timer);
  // The new master holds the same sockets: closing our copies resets nothing.
  for (ListenSocketSet& s : sockets_) close_listen_sockets(s);
  if (admin_) admin_->close();
  signal_workers(SIGUSR2);  // drain like a reload: idle keep-alive kept to the deadline
  const uint64_t grace =
      static_cast<uint64_t>(current_->config->timeouts.drain.count()) + kKillGraceMs;
  uv_timer_start(
      &kill_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Master*>(t->data);
        self->signal_workers(SIGKILL);
      },
      grace, 0);
  if (live_workers() == 0) finish();
}

// ---- sockets ---------------------------------------------------------------

ListenSocketSet* Master::socket_set(const conf::HostPort& address, size_t occurrence) {
  for (ListenSocketSet& s : sockets_) {
    if (s.serves(address, occurrence)) return &s;
  }
  return nullptr;
}

void Master::close_dropped_listeners() {
  const auto& listeners = current_->config->listeners;
  for (auto it = sockets_.begin(); it != sockets_.end();) {
    bool kept = false;
    for (size_t k = 0; k < listeners.size() && !kept; ++k) {
      kept = it->serves(listeners[k].address, address_occurrence(listeners, k));
    }
    if (kept) {
      ++it;
      continue;
    }
    LogLine(LogLevel::kInfo, "listener closed").kv("address", it->address());
    close_listen_sockets(*it);
    it = sockets_.erase(it);
  }
}

void Master::ensure_sockets(const conf::Config& config) {
  for (size_t k = 0; k < config.listeners.size(); ++k) {
    const conf::Listener& l = config.listeners[k];
    const size_t occurrence = address_occurrence(config.listeners, k);
    if (ListenSocketSet* set = socket_set(l.address, occurrence)) {
      grow_listen_sockets(*set, l, config.workers);
    } else {
      sockets_.push_back(open_listen_sockets(l, config.workers));
      sockets_.back().occurrence = occurrence;
      LogLine(LogLevel::kInfo, "listening")
          .kv("listener", sockets_.size() - 1)
          .kv("address", sockets_.back().address())
          .kv("workers", config.workers);
    }
  }
}

// ---- metrics and admin -----------------------------------------------------

void Master::setup_metrics() {
  const conf::Config& config = *current_->config;
  current_->layout = metrics::build_layout(stats_registry_, config);
  const size_t slots = 2 * std::max<size_t>(kMinStatsWorkers, config.workers);
  stats_segment_ = std::make_unique<metrics::StatsSegment>(slots, kCellsPerSlot);
  master_metrics_ = std::make_unique<metrics::MasterMetrics>(kVersion, config.workers);
  master_metrics_->reload(true, static_cast<double>(time(nullptr)));
  collector_ = std::make_unique<metrics::SegmentCollector>(*stats_segment_, stats_registry_);
  purger_ = std::make_unique<PurgeCoordinator>(&loop_);
  prewarm_relay_ = std::make_unique<PrewarmRelay>(&loop_, [this] {
    std::vector<ControlChannel*> channels;
    for (WorkerProcess& w : workers_) {
      if (w.pid != 0 && w.channel && !w.channel->closed()) channels.push_back(w.channel.get());
    }
    return channels;
  });
  if (config.admin) {
    admin_ = std::make_unique<AdminServer>(
        &loop_, [this](const AdminRequest& request, AdminServer::Responder respond) {
          return handle_admin(request, std::move(respond));
        });
    admin_->start(config.admin->address, inherited_admin_fd_);
    LogLine(LogLevel::kInfo, "admin listening").kv("address", admin_->address());
  }
}

std::optional<AdminResponse> Master::handle_admin(const AdminRequest& req,
                                                  AdminServer::Responder respond) {
  const http::MessageHead& request = req.head;
  const std::string_view path = split_target(request.target).path;  // absolute-form too
  if (path == "/cache/purge") {
    if (request.method != "POST") {
      return AdminResponse{405, "text/plain; charset=utf-8", "method not allowed\n",
                           "Allow: POST\r\n"};
    }
    return handle_purge(req, std::move(respond));
  }
  const bool known =
      path == "/metrics" || path == "/healthz" || path == "/readyz" || path == "/upstreams";
  if (known && request.method != "GET" && request.method != "HEAD") {
    return AdminResponse{405, "text/plain; charset=utf-8", "method not allowed\n",
                         "Allow: GET, HEAD\r\n"};
  }
  if (path == "/metrics") {
    std::vector<pid_t> pids(current_->config->workers, 0);
    for (const WorkerProcess& w : workers_) {
      if (w.generation == current_ && !w.retired && w.index < pids.size()) pids[w.index] = w.pid;
    }
    master_metrics_->sample_processes(pids);
    return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                         metrics::render_metrics(*master_metrics_, *collector_)};
  }
  if (path == "/healthz") return AdminResponse{200, "text/plain; charset=utf-8", "ok\n"};
  if (path == "/upstreams") {
    return AdminResponse{200, "application/json", upstreams_status() + "\n"};
  }
  if (path == "/readyz") {
    const size_t ready = ready_workers(*current_);
    const size_t want = current_->config->workers;
    const std::string summary =
        std::to_string(ready) + " of " + std::to_string(want) + " workers ready\n";
    if (ready == want && !stopping_) {
      return AdminResponse{200, "text/plain; charset=utf-8", "ready: " + summary};
    }
    return AdminResponse{503, "text/plain; charset=utf-8", "not ready: " + summary};
  }
  return AdminResponse{404, "text/plain; charset=utf-8", "not found\n"};
}

std::string Master::upstreams_status() const {
  // Each worker keeps its own view of its servers' health; the shared
  // stats say how many of the running workers may use each server.
  const conf::Config& config = *current_->config;
  const metrics::StatsLayout& layout = current_->layout;
  nlohmann::json doc = nlohmann::json::object();
  for (size_t u = 0; u < config.upstreams.size() && u < layout.upstreams.size(); ++u) {
    nlohmann::json servers = nlohmann::json::array();
    for (size_t s = 0; s < config.upstreams[u].servers.size(); ++s) {
      const metrics::ServerCells& cells = layout.upstreams[u].servers.at(s);
      const auto up = static_cast<int64_t>(stats_segment_->sum(cells.up_gauge));
      const size_t workers = config.workers;
      servers.push_back({
          {"address", config.upstreams[u].servers[s].str()},
          {"weight", s < config.upstreams[u].weights.size() ? config.upstreams[u].weights[s] : 1},
          {"state", up <= 0 ? "down" : (static_cast<size_t>(up) >= workers ? "up" : "partial")},
          {"workers_using", up},
          {"ejections", stats_segment_->sum(cells.ejections)},
          {"health_checks",
           {{"passed", stats_segment_->sum(cells.health_checks[0])},
            {"failed", stats_segment_->sum(cells.health_checks[1])}}},
      });
    }
    doc[config.upstreams[u].name] = {
        {"servers", std::move(servers)},
        {"health_check", config.upstreams[u].health_check.has_value()},
        {"outlier_detection", config.upstreams[u].outlier_detection.has_value()}};
  }
  return nlohmann::json{{"upstreams", std::move(doc)}, {"workers", config.workers}}.dump(2);
}

std::optional<AdminResponse> Master::handle_purge(const AdminRequest& req,
                                                  AdminServer::Responder respond) {
  std::string_view token;
  if (current_->config->admin) token = current_->config->admin->token;
  switch (check_admin_token(req.head, token)) {
    case 0:
      break;
    case 403:
      return AdminResponse{403, "text/plain; charset=utf-8",
                           "purging is disabled: set admin.token in the config\n"};
    default:
      return AdminResponse{401, "text/plain; charset=utf-8", "missing or wrong bearer token\n",
                           "WWW-Authenticate: Bearer realm=\"torii-admin\"\r\n"};
  }
  PurgeRequest purge;
  std::string error;
  if (!parse_purge_request(req.body, purge, error)) {
    return AdminResponse{400, "text/plain; charset=utf-8", error + "\n"};
  }
  // Every live worker holds its own cache, old generation included.
  std::vector<ControlChannel*> channels;
  for (WorkerProcess& w : workers_) {
    if (w.pid != 0 && w.channel && !w.channel->closed()) channels.push_back(w.channel.get());
  }
  LogLine(LogLevel::kInfo, "cache purge")
      .kv("host", purge.host)
      .kv("target", purge.target)
      .kv("prefix", purge.prefix)
      .kv("workers", channels.size());
  purger_->start(purge, channels, std::move(respond));
  return std::nullopt;
}

void Master::reset_slot_gauges(size_t slot) {
  std::atomic<uint64_t>* cells = stats_segment_->cells(slot);
  for (const metrics::StatsRegistry::Series& s : stats_registry_.series()) {
    if (metrics::family_info(s.family).kind == metrics::SeriesKind::kGauge) {
      cells[s.cell].store(0, std::memory_order_relaxed);
    }
  }
  metrics::SlotHeader& h = stats_segment_->header(slot);
  h.ready.store(0, std::memory_order_release);
  h.pid.store(0, std::memory_order_relaxed);
}

size_t Master::free_stats_slot() const {
  std::vector<bool> used(stats_segment_->slots(), false);
  for (const WorkerProcess& w : workers_) {
    if (!w.retired) used[w.stats_slot] = true;
  }
  for (size_t i = 0; i < used.size(); ++i) {
    if (!used[i]) return i;
  }
  return used.size();
}

size_t Master::ready_workers(const Generation& gen) const {
  size_t ready = 0;
  for (const WorkerProcess& w : workers_) {
    if (w.generation.get() != &gen || w.retired || w.pid == 0) continue;
    const metrics::SlotHeader& h = stats_segment_->header(w.stats_slot);
    // A worker whose loop has not beaten for a while (stopped, stuck in a
    // long call) still owns a socket whose connections would wait.
    const uint64_t now_ms = uv_hrtime() / 1'000'000;
    const bool beating =
        now_ms - h.heartbeat_ms.load(std::memory_order_relaxed) <= kStaleHeartbeatMs;
    if (h.pid.load() == w.pid && h.ready.load(std::memory_order_acquire) != 0 && beating) ++ready;
  }
  return ready;
}

// ---- running ---------------------------------------------------------------

int Master::run() {
  signal(SIGPIPE, SIG_IGN);  // peers closing sockets must not kill anyone
  adopt_inherited_sockets();
  try {
    ticket_keys_ = std::make_shared<TicketKeys>();
    ticket_keys_->rotate(TicketKeys::generate());
    current_->resources = load_config_resources(*current_->config, ticket_keys_);
    rate_limit_memory_ =
        std::make_unique<SharedRateLimitMemory>(RateLimitTable::bytes_for(kRateLimitKeys));
    rate_limit_table_ = RateLimitTable::format(rate_limit_memory_->bytes(), kRateLimitKeys);
    current_->resources.rate_limits = rate_limit_table_;
    for (const auto& ctx : current_->resources.tls.listeners) {
      if (!ctx) continue;
      for (const std::string& w : ctx->warnings())
        LogLine(LogLevel::kWarn, "TLS certificate").kv("problem", w);
    }
  } catch (const std::exception& e) {
    LogLine(LogLevel::kError, "cannot load TLS certificates").kv("error", e.what());
    return 1;
  }
  try {
    ensure_sockets(*current_->config);
  } catch (const std::exception& e) {
    LogLine(LogLevel::kError, "cannot open listener").kv("error", e.what());
    return 1;
  }
  try {
    setup_metrics();
  } catch (const std::exception& e) {
    LogLine(LogLevel::kError, "cannot start the admin listener").kv("error", e.what());
    return 1;
  }

  auto on_signal = [](uv_signal_t* h, int signum) {
    auto* self = static_cast<Master*>(h->data);
    switch (signum) {
      case SIGCHLD:
        self->on_child_exit();
        break;
      case SIGTERM:
        self->on_terminate(true);
        break;
      case SIGUSR1:
        LogLine(LogLevel::kInfo, "reopening log files").kv("signal", "SIGUSR1");
        self->signal_workers(SIGUSR1);
        break;
      case SIGHUP:
        self->on_reload();
        break;
      case SIGUSR2:
        self->on_upgrade();
        break;
      case SIGWINCH:
        self->on_handover();
        break;
      default:
        self->on_terminate(false);
        break;  // SIGINT, SIGQUIT
    }
  };
  for (auto [sig, handle] :
       {std::pair{SIGCHLD, &sigchld_}, std::pair{SIGTERM, &sigterm_}, std::pair{SIGINT, &sigint_},
        std::pair{SIGQUIT, &sigquit_}, std::pair{SIGHUP, &sighup_}, std::pair{SIGUSR1, &sigusr1_},
        std::pair{SIGUSR2, &sigusr2_}, std::pair{SIGWINCH, &sigwinch_}}) {
    uv_signal_init(&loop_, handle);
    handle->data = this;
    uv_signal_start(handle, on_signal, sig);
  }
  uv_timer_init(&loop_, &kill_timer_);
  kill_timer_.data = this;
  uv_timer_init(&loop_, &reload_timer_);
  reload_timer_.data = this;
  uv_timer_init(&loop_, &upgrade_timer_);
  upgrade_timer_.data = this;
  uv_timer_init(&loop_, &ticket_timer_);
  ticket_timer_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&ticket_timer_));
  schedule_ticket_rotation();
  if (upgrade_from_ != 0) {
    uv_timer_start(
        &upgrade_timer_,
        [](uv_timer_t* t) { static_cast<Master*>(t->data)->check_upgrade_ready(); }, kReloadPollMs,
        kReloadPollMs);
  }

  const std::string pid_file = current_->config->pid_file;
  if (!pid_file.empty() && !write_pid_file(pid_file)) return 1;
  start_generation(current_);
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (!pid_file.empty()) remove_pid_file(pid_file);
  LogLine(LogLevel::kInfo, "master exiting").kv("pid", getpid());
  log::flush();
  return 0;
}

void Master::schedule_ticket_rotation() {
  uint64_t every_ms = 0;
  for (const conf::Listener& l : current_->config->listeners) {
    if (!l.tls || !l.tls->session_tickets) continue;
    const auto ms = static_cast<uint64_t>(l.tls->ticket_key_rotation.count());
    every_ms = every_ms == 0 ? ms : std::min(every_ms, ms);
  }
  uv_timer_stop(&ticket_timer_);
  if (every_ms == 0) return;
  uv_timer_start(
      &ticket_timer_, [](uv_timer_t* t) { static_cast<Master*>(t->data)->rotate_ticket_key(); },
      every_ms, every_ms);
}

void Master::rotate_ticket_key() {
  // The newest key encrypts from now on; the previous one still decrypts.
  // Future workers inherit it; running ones get it over their channel.
  const TicketKey key = TicketKeys::generate();
  ticket_keys_->rotate(key);
  const std::string message = ticket_key_message(key);
  size_t sent = 0;
  for (WorkerProcess& w : workers_) {
    if (w.pid == 0 || !w.channel || w.channel->closed()) continue;
    w.channel->send(message);
    ++sent;
  }
  LogLine(LogLevel::kInfo, "TLS session-ticket key rotated").kv("workers", sent);
}

void Master::start_generation(const std::shared_ptr<Generation>& gen) {
  for (unsigned i = 0; i < gen->config->workers; ++i) {
    workers_.emplace_back();
    WorkerProcess& w = workers_.back();
    w.self = std::prev(workers_.end());
    w.master = this;
    w.generation = gen;
    w.index = i;
    w.stats_slot = free_stats_slot();
    uv_timer_init(&loop_, &w.respawn_timer);
    w.respawn_timer.data = &w;
    spawn(w);
  }
}

void Master::spawn(WorkerProcess& w) {
  log::flush();  // the child must not inherit half-written log text
  int channel_fds[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel_fds) != 0) {
    LogLine(LogLevel::kError, "socketpair failed").kv("error", std::strerror(errno));
  }
  pid_t pid = fork();
  if (pid < 0) {
    for (int fd : channel_fds) {
      if (fd >= 0) ::close(fd);
    }
    LogLine(LogLevel::kError, "fork failed").kv("error", std::strerror(errno));
    w.backoff_ms = w.backoff_ms == 0 ? kMinBackoffMs : std::min(w.backoff_ms * 2, kMaxBackoffMs);
    uv_timer_start(
        &w.respawn_timer,
        [](uv_timer_t* t) {
          auto* wp = static_cast<WorkerProcess*>(t->data);
          wp->master->spawn(*wp);
        },
        w.backoff_ms, 0);
    return;
  }
  if (pid == 0) {
    if (channel_fds[0] >= 0) ::close(channel_fds[0]);
    become_worker(w, channel_fds[1]);
  }
  w.pid = pid;
  drop_channel(w);
  if (channel_fds[0] >= 0) {
    ::close(channel_fds[1]);
    w.channel = std::make_unique<ControlChannel>(
        &loop_, channel_fds[0],
        [this](ControlChannel& ch, const std::string& m) {
          if (!prewarm_relay_->on_message(ch, m)) purger_->on_message(&ch, m);
        },
        [this](ControlChannel& ch) {
          purger_->on_channel_closed(&ch);
          prewarm_relay_->on_channel_closed(&ch);
        });
    w.channel->unref();
  }
  w.started_ms = uv_now(&loop_);
  LogLine(LogLevel::kInfo, "worker started")
      .kv("worker", w.index)
      .kv("pid", pid)
      .kv("generation", w.generation->number);
}

void Master::drop_channel(WorkerProcess& w) {
  // Channels whose close completed are freed; this one joins them once closed.
  closing_channels_.remove_if([](const std::unique_ptr<ControlChannel>& c) { return c->closed(); });
  if (!w.channel) return;
  w.channel->close();
  closing_channels_.push_back(std::move(w.channel));
}

void Master::become_worker(WorkerProcess& w, int control_fd) {
  // We are inside a callback of the master's loop (fork happened there).
  // Give that loop a fresh kernel state in this process and close its
  // handles, which stops its signal handlers and timers at once; the loop
  // itself is never run again here (uv_run must not re-enter).
  uv_loop_fork(&loop_);
  close_all_handles(&loop_);
  log::reset_after_fork();

  // This worker's sockets: of each listener its generation serves, every
  // socket j with j % workers == index. Everything else is closed here.
  const conf::Config& config = *w.generation->config;
  std::vector<Worker::ListenFd> mine;
  for (ListenSocketSet& set : sockets_) {
    size_t listener = config.listeners.size();
    for (size_t k = 0; k < config.listeners.size(); ++k) {
      if (set.serves(config.listeners[k].address, address_occurrence(config.listeners, k))) {
        listener = k;
      }
    }
    for (size_t j = 0; j < set.fds.size(); ++j) {
      if (listener < config.listeners.size() && j % config.workers == w.index) {
        mine.push_back({listener, set.fds[j], set.bound});
      } else {
        ::close(set.fds[j]);
      }
    }
  }
  WorkerStats stats{&stats_segment_->header(w.stats_slot),
                    config.stats_enabled ? stats_segment_->cells(w.stats_slot) : nullptr,
                    w.generation->layout};
  run_worker_process(config, w.index, std::move(mine), std::move(stats), control_fd,
                     w.generation->resources);
}

void Master::retire(WorkerProcess& w) {
  if (w.retired) return;
  w.retired = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&w.respawn_timer), [](uv_handle_t* h) {
    auto* wp = static_cast<WorkerProcess*>(h->data);
    wp->master->workers_.erase(wp->self);
  });
}

void Master::on_child_exit() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == upgrade_child_) {
      upgrade_child_ = 0;
      LogLine(LogLevel::kError,
              "binary upgrade failed: the new master exited, this one keeps serving")
          .kv("pid", pid)
          .kv("status", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      continue;
    }
    auto it = std::find_if(workers_.begin(), workers_.end(),
                           [pid](const WorkerProcess& w) { return w.pid == pid; });
    if (it == workers_.end()) continue;
    WorkerProcess& w = *it;
    w.pid = 0;
    drop_channel(w);
    reset_slot_gauges(w.stats_slot);
    const uint64_t ran_ms = uv_now(&loop_) - w.started_ms;
    const bool expected = stopping_ || w.draining;
    {
      LogLine line(expected || (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? LogLevel::kInfo
                                                                               : LogLevel::kWarn,
                   "worker exited");
      line.kv("worker", w.index).kv("pid", pid).kv("generation", w.generation->number);
      line.kv("ran_ms", ran_ms);
      if (WIFSIGNALED(status)) {
        line.kv("signal", strsignal(WTERMSIG(status)));
      } else {
        line.kv("status", WEXITSTATUS(status));
      }
    }
    const bool wanted = w.generation == current_ || w.generation == pending_;
    if (expected || !wanted) {
      retire(w);
      continue;
    }
    master_metrics_->worker_restarted();
    // Respawn at once after a healthy run, with growing backoff when it crash-loops.
    w.backoff_ms = ran_ms >= kHealthyRunMs ? 0
                   : w.backoff_ms == 0     ? kMinBackoffMs
                                           : std::min(w.backoff_ms * 2, kMaxBackoffMs);
    LogLine(LogLevel::kInfo, "worker respawn scheduled")
        .kv("worker", w.index)
        .kv("delay_ms", w.backoff_ms);
    uv_timer_start(
        &w.respawn_timer,
        [](uv_timer_t* t) {
          auto* wp = static_cast<WorkerProcess*>(t->data);
          wp->master->spawn(*wp);
        },
        w.backoff_ms, 0);
  }
  if (stopping_ && live_workers() == 0) finish();
}

size_t Master::live_workers() const {
  return static_cast<size_t>(std::count_if(workers_.begin(), workers_.end(),
                                           [](const WorkerProcess& w) { return w.pid != 0; }));
}

void Master::signal_workers(int sig) {
  for (const WorkerProcess& w : workers_) {
    if (w.pid != 0) kill(w.pid, sig);
  }
}

// ---- reload ----------------------------------------------------------------

void Master::on_reload() {
  if (stopping_) return;
  if (pending_) {
    // One reload at a time; the latest file is read once this one settles.
    reload_again_ = true;
    LogLine(LogLevel::kInfo, "reload already in progress, will reload again after it")
        .kv("generation", pending_->number);
    return;
  }
  LogLine(LogLevel::kInfo, "reloading configuration").kv("config", config_path_);
  auto gen = std::make_shared<Generation>();
  try {
    auto config = std::make_shared<conf::Config>(conf::load_config_file(config_path_));
    size_t busy_slots = 0;
    for (const WorkerProcess& w : workers_) busy_slots += w.retired ? 0 : 1;
    if (busy_slots + config->workers > stats_segment_->slots()) {
      throw std::runtime_error(
          "workers " + std::to_string(config->workers) +
          " do not fit beside the workers still running (" + std::to_string(busy_slots) + " of " +
          std::to_string(stats_segment_->slots()) + " statistics slots busy); restart instead");
    }
    if (config->admin.has_value() != current_->config->admin.has_value() ||
        (config->admin && config->admin->address.str() != current_->config->admin->address.str())) {
      throw std::runtime_error("the admin address cannot change on reload (restart instead)");
    }
    ensure_sockets(*config);
    auto keys = std::make_shared<TicketKeys>(*ticket_keys_);
    keys->rotate(TicketKeys::generate());
    gen->resources = load_config_resources(*config, keys);
    gen->resources.rate_limits = rate_limit_table_;
    ticket_keys_ = keys;
    gen->layout = metrics::build_layout(stats_registry_, *config);
    gen->config = std::move(config);
  } catch (const std::exception& e) {
    LogLine(LogLevel::kError, "configuration reload failed, keeping the running configuration")
        .kv("error", e.what());
    master_metrics_->reload(false, 0);
    return;
  }
  gen->number = ++generation_counter_;
  pending_ = gen;
  reload_started_ms_ = uv_now(&loop_);
  start_generation(gen);
  uv_timer_start(
      &reload_timer_, [](uv_timer_t* t) { static_cast<Master*>(t->data)->check_new_generation(); },
      kReloadPollMs, kReloadPollMs);
}

void Master::check_new_generation() {
  if (!pending_) return;
  if (ready_workers(*pending_) < pending_->config->workers) {
    // Workers report ready after pre-warming their cache, which may take up
    // to its own timeout.
    const uint64_t limit = std::max<uint64_t>(
        kReloadReadyTimeoutMs,
        static_cast<uint64_t>(pending_->config->cache.prewarm_timeout.count()) + 10'000);
    if (uv_now(&loop_) - reload_started_ms_ > limit) {
      abandon_new_generation("the new workers did not become ready in time");
    }
    return;
  }
  uv_timer_stop(&reload_timer_);
  const std::shared_ptr<Generation> old = current_;
  current_ = pending_;
  schedule_ticket_rotation();  // the new config may rotate at another pace
  pending_.reset();
  // The new generation accepts on the same sockets; the old one drains
  // (accepts what is queued, finishes in flight, answers with
  // Connection: close) and exits.
  for (WorkerProcess& w : workers_) {
    if (w.generation != old || w.retired) continue;
    w.draining = true;
    if (w.pid != 0) {
      kill(w.pid, SIGUSR2);  // drain for a reload: idle connections kept to the deadline
    } else {
      uv_timer_stop(&w.respawn_timer);
      retire(w);
    }
  }
  // Sockets of listeners the new config dropped: the old workers take what
  // is queued and close theirs; the master's copies go now.
  close_dropped_listeners();
  master_metrics_->reload(true, static_cast<double>(time(nullptr)));
  LogLine(LogLevel::kInfo, "configuration reloaded")
      .kv("generation", current_->number)
      .kv("workers", current_->config->workers);
  if (reload_again_) {
    reload_again_ = false;
    on_reload();
  }
}

void Master::abandon_new_generation(const std::string& why) {
  uv_timer_stop(&reload_timer_);
  LogLine(LogLevel::kError, "configuration reload failed, keeping the running configuration")
      .kv("error", why);
  for (WorkerProcess& w : workers_) {
    if (w.generation != pending_ || w.retired) continue;
    w.draining = true;  // not respawned
    if (w.pid != 0) {
      kill(w.pid, SIGKILL);
    } else {
      uv_timer_stop(&w.respawn_timer);
      retire(w);
    }
  }
  pending_.reset();
  master_metrics_->reload(false, 0);
  reload_again_ = false;
}

// ---- stopping --------------------------------------------------------------

void Master::on_terminate(bool graceful) {
  ++terminate_count_;
  if (stopping_ && graceful && terminate_count_ < 2) return;
  const bool force = stopping_;  // a second request forces the exit
  stopping_ = true;
  uv_timer_stop(&reload_timer_);
  for (WorkerProcess& w : workers_) uv_timer_stop(&w.respawn_timer);
  const conf::Config& config = *current_->config;
  if (force || !graceful) {
    LogLine(LogLevel::kInfo, force ? "forced stop" : "stopping now").kv("pid", getpid());
    signal_workers(force ? SIGKILL : SIGINT);
  } else {
    // Nothing will accept new connections any more: let the kernel refuse
    // them once the workers have taken what is queued and closed theirs.
    for (ListenSocketSet& s : sockets_) close_listen_sockets(s);
    LogLine(LogLevel::kInfo, "graceful shutdown: draining workers")
        .kv("deadline_ms", static_cast<int64_t>(config.timeouts.drain.count()));
    signal_workers(SIGTERM);
  }
  // Whatever happens, the master does not wait forever.
  const uint64_t grace = graceful && !force
                             ? static_cast<uint64_t>(config.timeouts.drain.count()) + kKillGraceMs
                             : 1000;
  uv_timer_start(
      &kill_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Master*>(t->data);
        LogLine(LogLevel::kWarn, "workers did not stop in time: killing them")
            .kv("workers", self->live_workers());
        self->signal_workers(SIGKILL);
      },
      grace, 0);
  if (live_workers() == 0) finish();
}

void Master::finish() {
  if (admin_) admin_->close();
  close_all_handles(&loop_);
}

}  // namespace torii::gateway
