#include "gateway/master.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "common/log.hpp"
#include "gateway/version.hpp"
#include "gateway/worker.hpp"

namespace torii::gateway {

namespace {
constexpr uint64_t kMinBackoffMs = 100;
constexpr uint64_t kMaxBackoffMs = 30'000;
constexpr uint64_t kHealthyRunMs = 2'000;  // a worker that lived this long was not crash-looping
constexpr uint64_t kKillGraceMs = 5'000;   // after the drain deadline
// Cells per worker slot: room for every series of a large config (and for
// new ones on reload); untouched pages of the shared mapping cost nothing.
constexpr size_t kCellsPerSlot = 256 * 1024;
}  // namespace

Master::Master(conf::Config config) : config_(std::move(config)), stats_registry_(kCellsPerSlot) {
  uv_loop_init(&loop_);
}

void Master::setup_metrics() {
  stats_layout_ = metrics::build_layout(stats_registry_, config_);
  stats_segment_ = std::make_unique<metrics::StatsSegment>(config_.workers, kCellsPerSlot);
  master_metrics_ = std::make_unique<metrics::MasterMetrics>(kVersion, config_.workers);
  master_metrics_->reload(true, static_cast<double>(time(nullptr)));
  collector_ = std::make_unique<metrics::SegmentCollector>(*stats_segment_, stats_registry_);
  if (config_.admin) {
    admin_ = std::make_unique<AdminServer>(
        &loop_, [this](const http::MessageHead& request) { return handle_admin(request); });
    admin_->start(config_.admin->address);
    LogLine(LogLevel::kInfo, "admin listening").kv("address", admin_->address()).flush_now();
  }
}

AdminResponse Master::handle_admin(const http::MessageHead& request) {
  const std::string_view target = request.target;
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/metrics") {
    std::vector<pid_t> pids;
    for (const auto& s : slots_) pids.push_back(s->pid);
    master_metrics_->sample_processes(pids);
    return {200, "text/plain; version=0.0.4; charset=utf-8",
            metrics::render_metrics(*master_metrics_, *collector_)};
  }
  if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
  if (path == "/readyz") {
    size_t ready = 0;
    for (const auto& s : slots_) {
      const metrics::SlotHeader& h = stats_segment_->header(s->index);
      if (s->pid != 0 && h.pid.load() == s->pid && h.ready.load(std::memory_order_acquire) != 0) {
        ++ready;
      }
    }
    const std::string summary =
        std::to_string(ready) + " of " + std::to_string(slots_.size()) + " workers ready\n";
    if (ready == slots_.size() && !stopping_)
      return {200, "text/plain; charset=utf-8", "ready: " + summary};
    return {503, "text/plain; charset=utf-8", "not ready: " + summary};
  }
  return {404, "text/plain; charset=utf-8", "not found\n"};
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

Master::~Master() {
  for (ListenSocketSet& s : sockets_) close_listen_sockets(s);
  uv_loop_close(&loop_);
}

int Master::run() {
  signal(SIGPIPE, SIG_IGN);  // peers closing sockets must not kill anyone
  try {
    for (const conf::Listener& l : config_.listeners) {
      sockets_.push_back(open_listen_sockets(l, config_.workers));
    }
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
  for (size_t i = 0; i < sockets_.size(); ++i) {
    LogLine(LogLevel::kInfo, "listening")
        .kv("listener", i)
        .kv("address", sockets_[i].address)
        .kv("workers", config_.workers)
        .flush_now();
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
        LogLine(LogLevel::kWarn, "configuration reload is not supported yet")
            .kv("signal", "SIGHUP");
        break;
      default:
        self->on_terminate(false);
        break;  // SIGINT, SIGQUIT
    }
  };
  for (auto [sig, handle] : {std::pair{SIGCHLD, &sigchld_}, std::pair{SIGTERM, &sigterm_},
                             std::pair{SIGINT, &sigint_}, std::pair{SIGQUIT, &sigquit_},
                             std::pair{SIGHUP, &sighup_}, std::pair{SIGUSR1, &sigusr1_}}) {
    uv_signal_init(&loop_, handle);
    handle->data = this;
    uv_signal_start(handle, on_signal, sig);
  }
  uv_timer_init(&loop_, &kill_timer_);
  kill_timer_.data = this;

  for (unsigned i = 0; i < config_.workers; ++i) {
    auto slot = std::make_unique<WorkerSlot>();
    slot->master = this;
    slot->index = i;
    uv_timer_init(&loop_, &slot->respawn_timer);
    slot->respawn_timer.data = slot.get();
    slots_.push_back(std::move(slot));
  }
  for (auto& slot : slots_) spawn(*slot);

  uv_run(&loop_, UV_RUN_DEFAULT);
  LogLine(LogLevel::kInfo, "master exiting").kv("pid", getpid());
  log::flush();
  return 0;
}

void Master::spawn(WorkerSlot& slot) {
  log::flush();  // the child must not inherit half-written log text
  pid_t pid = fork();
  if (pid < 0) {
    LogLine(LogLevel::kError, "fork failed").kv("error", std::strerror(errno));
    slot.backoff_ms =
        slot.backoff_ms == 0 ? kMinBackoffMs : std::min(slot.backoff_ms * 2, kMaxBackoffMs);
    uv_timer_start(
        &slot.respawn_timer,
        [](uv_timer_t* t) {
          auto* s = static_cast<WorkerSlot*>(t->data);
          s->master->spawn(*s);
        },
        slot.backoff_ms, 0);
    return;
  }
  if (pid == 0) become_worker(slot);
  slot.pid = pid;
  slot.started_ms = uv_now(&loop_);
  LogLine(LogLevel::kInfo, "worker started").kv("worker", slot.index).kv("pid", pid);
}

void Master::become_worker(WorkerSlot& slot) {
  // We are inside a callback of the master's loop (fork happened there).
  // Give that loop a fresh kernel state in this process and close its
  // handles, which stops its signal handlers and timers at once; the loop
  // itself is never run again here (uv_run must not re-enter).
  uv_loop_fork(&loop_);
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  log::reset_after_fork();

  std::vector<int> mine;
  for (ListenSocketSet& set : sockets_) {
    for (size_t w = 0; w < set.fds.size(); ++w) {
      if (w == slot.index) {
        mine.push_back(set.fds[w]);
      } else {
        ::close(set.fds[w]);  // another worker's queue
      }
    }
  }
  WorkerStats stats{&stats_segment_->header(slot.index),
                    config_.stats_enabled ? stats_segment_->cells(slot.index) : nullptr,
                    stats_layout_};
  run_worker_process(config_, slot.index, std::move(mine), std::move(stats));
}

void Master::on_child_exit() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (auto& slot : slots_) {
      if (slot->pid != pid) continue;
      slot->pid = 0;
      reset_slot_gauges(slot->index);
      const uint64_t ran_ms = uv_now(&loop_) - slot->started_ms;
      LogLine line(stopping_ || (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? LogLevel::kInfo
                                                                                : LogLevel::kWarn,
                   "worker exited");
      line.kv("worker", slot->index).kv("pid", pid).kv("ran_ms", ran_ms);
      if (WIFSIGNALED(status)) {
        line.kv("signal", strsignal(WTERMSIG(status)));
      } else {
        line.kv("status", WEXITSTATUS(status));
      }
      if (stopping_) break;
      master_metrics_->worker_restarted();
      // Respawn at once after a healthy run, with growing backoff when it crash-loops.
      slot->backoff_ms = ran_ms >= kHealthyRunMs ? 0
                         : slot->backoff_ms == 0 ? kMinBackoffMs
                                                 : std::min(slot->backoff_ms * 2, kMaxBackoffMs);
      LogLine(LogLevel::kInfo, "worker respawn scheduled")
          .kv("worker", slot->index)
          .kv("delay_ms", slot->backoff_ms);
      uv_timer_start(
          &slot->respawn_timer,
          [](uv_timer_t* t) {
            auto* s = static_cast<WorkerSlot*>(t->data);
            s->master->spawn(*s);
          },
          slot->backoff_ms, 0);
      break;
    }
  }
  if (stopping_ && live_workers() == 0) finish();
}

size_t Master::live_workers() const {
  size_t n = 0;
  for (const auto& s : slots_) n += s->pid != 0 ? 1 : 0;
  return n;
}

void Master::signal_workers(int sig) {
  for (auto& s : slots_) {
    if (s->pid != 0) kill(s->pid, sig);
  }
}

void Master::on_terminate(bool graceful) {
  ++terminate_count_;
  if (stopping_ && graceful && terminate_count_ < 2) return;
  const bool force = stopping_;  // a second request forces the exit
  stopping_ = true;
  for (auto& s : slots_) uv_timer_stop(&s->respawn_timer);
  if (force || !graceful) {
    LogLine(LogLevel::kInfo, force ? "forced stop" : "stopping now").flush_now();
    signal_workers(force ? SIGKILL : SIGINT);
  } else {
    // Nothing will accept new connections any more: let the kernel refuse
    // them once the workers have taken what is queued and closed theirs.
    for (ListenSocketSet& s : sockets_) close_listen_sockets(s);
    LogLine(LogLevel::kInfo, "graceful shutdown: draining workers")
        .kv("deadline_ms", static_cast<int64_t>(config_.timeouts.drain.count()))
        .flush_now();
    signal_workers(SIGTERM);
  }
  // Whatever happens, the master does not wait forever.
  const uint64_t grace = graceful && !force
                             ? static_cast<uint64_t>(config_.timeouts.drain.count()) + kKillGraceMs
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
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
}

}  // namespace torii::gateway
