#include "gateway/worker_cache.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "gateway/prewarm_share.hpp"
#include "gateway/router.hpp"
#include "gateway/worker.hpp"

namespace torii::gateway {

namespace {

constexpr uint64_t kHousekeepingMs = 1000;
constexpr uint64_t kMinRefreshMs = 1000;  // a zero lifetime must not hammer the origin
constexpr uint64_t kMaxRetryMs = 30'000;
constexpr uint64_t kSyncTimeoutMs = 2'000;  // the master answers a sync at once

bool is_exact_host(const std::string& host) { return host.find('*') == std::string::npos; }

}  // namespace

WorkerCache::WorkerCache(Worker& worker)
    : worker_(worker),
      store_(worker.config().cache.memory / std::max<uint32_t>(1, worker.config().workers)) {
  const conf::Config& config = worker.config();
  routes_.resize(config.routes.size());
  for (size_t i = 0; i < config.routes.size(); ++i) {
    const conf::Route& r = config.routes[i];
    if (!r.cache || !r.cache->enabled) continue;
    routes_[i].route = i;
    routes_[i].config = &*r.cache;
    routes_[i].policy = cache::store_policy(*r.cache);
    routes_[i].fingerprint = route_fingerprint(r);
  }
  uv_timeval64_t tv{};
  uv_gettimeofday(&tv);
  wall_offset_ms_ =
      tv.tv_sec * 1000 + tv.tv_usec / 1000 - static_cast<int64_t>(uv_now(worker.io().loop));
  rng_ ^= uv_hrtime() ^ (static_cast<uint64_t>(getpid()) << 32);
}

int64_t WorkerCache::now_ms() const {
  return static_cast<int64_t>(uv_now(worker_.io().loop)) + wall_offset_ms_;
}

void WorkerCache::count(size_t route, metrics::CacheResult result) {
  const auto& cells = worker_.layout().cache_requests;
  if (route < cells.size() && !cells[route].empty()) {
    worker_.stats().add(cells[route][static_cast<size_t>(result)]);
  }
}

void WorkerCache::count_fetch(size_t route, CacheFetch::Kind kind, bool ok) {
  const auto& cells = worker_.layout().cache_fetches;
  if (route < cells.size() && !cells[route].empty()) {
    worker_.stats().add(cells[route][static_cast<size_t>(kind) * 2 + (ok ? 0 : 1)]);
  }
}

void WorkerCache::insert(size_t route, cache::ResponsePtr r, bool pinned) {
  if (store_.insert(std::move(r), pinned)) {
    const auto& cells = worker_.layout().cache_stores;
    if (route < cells.size() && cells[route] != 0) worker_.stats().add(cells[route]);
  }
  sync_gauges();
}

void WorkerCache::sync_gauges() {
  const metrics::StatsLayout& l = worker_.layout();
  if (l.cache_bytes == 0 && l.cache_entries == 0) return;
  metrics::StatsWriter& stats = worker_.stats();
  stats.gauge_add(l.cache_bytes, static_cast<int64_t>(store_.bytes() - reported_bytes_));
  stats.gauge_add(l.cache_entries, static_cast<int64_t>(store_.entries() - reported_entries_));
  stats.add(l.cache_evictions, store_.evictions() - reported_evictions_);
  reported_bytes_ = store_.bytes();
  reported_entries_ = store_.entries();
  reported_evictions_ = store_.evictions();
}

size_t WorkerCache::purge(std::string_view host, std::string_view target, bool prefix) {
  const size_t n = store_.purge(host, target, prefix);
  if (worker_.layout().cache_purged != 0) worker_.stats().add(worker_.layout().cache_purged, n);
  sync_gauges();
  return n;
}

uint64_t WorkerCache::jitter(uint64_t range) {
  if (range == 0) return 0;
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return rng_ % range;
}

CacheFetch& WorkerCache::new_fetch(size_t route, std::string_view scheme, std::string host,
                                   std::string target, const std::string& extra,
                                   cache::ResponsePtr stale, CacheFetch::Kind kind, bool pinned,
                                   CacheFetch::Done done) {
  fetches_.emplace_back(*this, route, scheme, std::move(host), std::move(target), extra,
                        std::move(stale), kind, pinned, std::move(done));
  return fetches_.back();
}

void WorkerCache::sweep_finished() {
  // Finished fetches are freed here, never inside their own callbacks.
  fetches_.remove_if([](const CacheFetch& f) { return f.finished(); });
}

void WorkerCache::revalidate_in_background(size_t route, const cache::ResponsePtr& stale,
                                           const http::MessageHead& client) {
  if (closed_ || fills_.in_flight(stale->key)) return;
  const RouteCache* rc = this->route(route);
  if (rc == nullptr) return;
  // The variant is chosen by the Vary'd headers (and the key by the key
  // headers): send the client's values of those.
  std::string extra;
  auto copy_header = [&](std::string_view name) {
    if (http::iequals(name, "host")) return;
    for (const http::Header& h : client.headers) {
      if (http::iequals(h.name, name))
        extra.append(h.name).append(": ").append(h.value).append("\r\n");
    }
  };
  for (const std::string& n : stale->vary_names) copy_header(n);
  for (const std::string& n : rc->config->key.headers) copy_header(n);
  std::string host(request_authority(client));
  if (host.empty()) host = stale->host;
  CacheFetch& f =
      new_fetch(route, stale->key.starts_with("https\n") ? "https" : "http", std::move(host),
                stale->target, extra, stale, CacheFetch::Kind::kRevalidate, false,
                [this](CacheFetch& fetch, bool) { fills_.end(fetch.key()); });
  if (f.key().empty() || !fills_.begin(f.key())) {
    f.cancel();
    return;
  }
  f.start();
}

// ---- pre-warming -------------------------------------------------------------

void WorkerCache::start_prewarm(std::string_view scheme, const std::string& listener_host,
                                std::function<void()> ready) {
  prewarm_scheme_ = scheme;
  uv_loop_t* loop = worker_.io().loop;
  uv_timer_init(loop, &housekeeping_);
  housekeeping_.data = this;
  uv_timer_start(
      &housekeeping_,
      [](uv_timer_t* t) {
        auto* self = static_cast<WorkerCache*>(t->data);
        self->sweep_finished();
        self->sync_gauges();
      },
      kHousekeepingMs, kHousekeepingMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&housekeeping_));
  uv_timer_init(loop, &prewarm_deadline_);
  prewarm_deadline_.data = this;
  timers_started_ = true;

  const conf::Config& config = worker_.config();
  for (const RouteCache& rc : routes_) {
    if (rc.config == nullptr) continue;
    const std::string& match_host = config.routes[rc.route].match.host;
    for (const std::string& target : rc.config->prewarm) {
      Prewarm& p = prewarm_.emplace_back();
      p.owner = this;
      p.route = rc.route;
      p.host = is_exact_host(match_host) ? match_host : listener_host;
      p.target = target;
      p.key = CacheFetch::key_for(config, rc.route, prewarm_scheme_, p.host, p.target);
      uv_timer_init(loop, &p.timer);
      uv_unref(reinterpret_cast<uv_handle_t*>(&p.timer));
      p.timer.data = &p;
    }
  }
  ready_ = std::move(ready);
  if (prewarm_.empty()) {
    finish_prewarm_phase();
    return;
  }
  arm_prewarm_deadline(static_cast<uint64_t>(config.cache.prewarm_timeout.count()));
  if (send_control_) {
    // The master may hold fresh copies (a reload, a respawn): take those
    // first, then claim what is still missing.
    syncing_ = true;
    arm_prewarm_deadline(kSyncTimeoutMs);
    send_control_(make_simple(kOpSync));
    return;
  }
  for (Prewarm& p : prewarm_) fetch_prewarm(p);
}

void WorkerCache::arm_prewarm_deadline(uint64_t ms) {
  uv_timer_start(
      &prewarm_deadline_,
      [](uv_timer_t* t) {
        auto* self = static_cast<WorkerCache*>(t->data);
        if (self->syncing_) {
          // The master did not answer the sync: claim (or fetch) now, within
          // a new deadline.
          self->end_sync();
          return;
        }
        size_t missing = 0;
        for (const Prewarm& p : self->prewarm_) missing += p.done_once ? 0 : 1;
        LogLine(LogLevel::kWarn, "pre-warm timed out, taking traffic anyway")
            .kv("missing", missing);
        self->finish_prewarm_phase();
      },
      ms, 0);
}

void WorkerCache::end_sync() {
  if (!syncing_) return;
  syncing_ = false;
  // What is still missing gets the pre-warm timeout from now.
  if (ready_) {
    arm_prewarm_deadline(static_cast<uint64_t>(worker_.config().cache.prewarm_timeout.count()));
  }
  for (Prewarm& p : prewarm_) {
    if (!p.done_once) on_prewarm_due(p);
  }
  check_prewarm_complete();
}

WorkerCache::Prewarm* WorkerCache::find_prewarm(const std::string& key) {
  for (Prewarm& p : prewarm_) {
    if (p.key == key) return &p;
  }
  return nullptr;
}

bool WorkerCache::on_control_message(const std::string& message) {
  const ControlHeader h = peek_control(message);
  if (h.op == kOpSyncDone) {
    end_sync();
    return true;
  }
  if (h.op == kOpGrant) {
    Prewarm* p = find_prewarm(h.key);
    if (p == nullptr || closed_) return true;
    if (h.granted) {
      fetch_prewarm(*p);
    } else {
      // Another worker fetches it; its copy comes through the master. Look
      // again later in case that fetch fails.
      arm(*p, kMinRefreshMs * 5);
    }
    return true;
  }
  if (h.op == kOpFailed) {
    // Another worker could not fetch it: do not hold readiness for it (a
    // client's miss fetches it); claim it ourselves after a while.
    Prewarm* p = find_prewarm(h.key);
    if (p == nullptr || closed_ || p->done_once) return true;
    p->done_once = true;
    arm(*p, kMinRefreshMs * 5);
    check_prewarm_complete();
    return true;
  }
  if (h.op == kOpEntry) {
    std::optional<SharedResponse> shared = decode_shared(message);
    if (!shared || closed_) return true;
    Prewarm* p = find_prewarm(shared->response.key);
    // A copy made for another route configuration (before a reload) is not ours.
    if (p == nullptr || shared->fingerprint != routes_[p->route].fingerprint) return true;
    if (shared->response.response_time_ms <= p->have_response_time_ms) return true;
    take_copy(*p, std::make_shared<const cache::StoredResponse>(std::move(shared->response)), true);
    return true;
  }
  return false;
}

void WorkerCache::arm(Prewarm& p, uint64_t delay_ms) {
  if (closed_) return;
  uv_timer_start(
      &p.timer,
      [](uv_timer_t* t) {
        auto* pw = static_cast<Prewarm*>(t->data);
        pw->owner->on_prewarm_due(*pw);
      },
      delay_ms, 0);
}

void WorkerCache::on_prewarm_due(Prewarm& p) {
  if (closed_ || p.fetching) return;
  if (!send_control_) {
    fetch_prewarm(p);
    return;
  }
  send_control_(make_claim(p.key, p.have_response_time_ms, routes_[p.route].fingerprint));
}

void WorkerCache::fetch_prewarm(Prewarm& p) {
  if (closed_ || p.fetching) return;
  const CacheFetch::Kind kind =
      p.done_once ? CacheFetch::Kind::kRefresh : CacheFetch::Kind::kPrewarm;
  Prewarm* pp = &p;
  CacheFetch& f = new_fetch(p.route, prewarm_scheme_, p.host, p.target, "", nullptr, kind, true,
                            [this, pp](CacheFetch& fetch, bool ok) {
                              pp->fetching = false;
                              fills_.end(fetch.key());
                              on_prewarm_done(*pp, ok ? fetch.result() : nullptr);
                            });
  if (f.key().empty()) {
    f.start();  // reports the failure
    return;
  }
  if (!fills_.begin(f.key())) {
    // A client's miss is fetching it right now: look again shortly.
    f.cancel();
    arm(p, kMinRefreshMs);
    return;
  }
  p.fetching = true;
  f.start();
}

void WorkerCache::on_prewarm_done(Prewarm& p, const cache::ResponsePtr& stored) {
  if (closed_) return;
  if (stored != nullptr) {
    p.failures = 0;
    if (send_control_ && stored->bytes.size() <= kMaxSharedBytes) {
      send_control_(encode_shared(kOpShare, *stored, routes_[p.route].fingerprint));
    }
    take_copy(p, stored, false);
    return;
  }
  if (send_control_) send_control_(make_simple(kOpFailed, p.key));
  ++p.failures;
  arm(p, std::min<uint64_t>(kMaxRetryMs, uint64_t{500} << std::min(p.failures, 6u)));
  if (!p.done_once) {
    p.done_once = true;  // ready without it: clients fetch it on a miss
    check_prewarm_complete();
  }
}

void WorkerCache::take_copy(Prewarm& p, const cache::ResponsePtr& r, bool from_master) {
  if (r->response_time_ms > p.have_response_time_ms) {
    p.have_response_time_ms = r->response_time_ms;
    if (from_master) insert(p.route, r, true);  // our own fetch stored it already
  }
  // Refresh at refresh_at of the lifetime plus up to 5% jitter (so the
  // workers do not all claim at once), counted from the copy's age.
  const int64_t lifetime = r->lifetime_ms;
  const double at = worker_.config().routes[p.route].cache->refresh_at;
  const int64_t age = r->age_ms(now_ms());
  const int64_t due = static_cast<int64_t>(static_cast<double>(lifetime) * at) - age +
                      static_cast<int64_t>(jitter(static_cast<uint64_t>(lifetime) / 20));
  arm(p, static_cast<uint64_t>(std::max<int64_t>(due, kMinRefreshMs)));
  if (!p.done_once && r->fresh(now_ms())) {
    p.done_once = true;
    check_prewarm_complete();
  }
}

void WorkerCache::check_prewarm_complete() {
  if (syncing_) return;
  for (const Prewarm& p : prewarm_) {
    if (!p.done_once) return;
  }
  finish_prewarm_phase();
}

void WorkerCache::finish_prewarm_phase() {
  if (!ready_) return;
  uv_timer_stop(&prewarm_deadline_);
  std::function<void()> ready = std::move(ready_);
  ready_ = nullptr;
  ready();
}

void WorkerCache::close() {
  if (closed_) return;
  closed_ = true;
  for (CacheFetch& f : fetches_) {
    if (!f.finished()) f.cancel();
  }
  if (!timers_started_) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&housekeeping_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&prewarm_deadline_), nullptr);
  for (Prewarm& p : prewarm_) uv_close(reinterpret_cast<uv_handle_t*>(&p.timer), nullptr);
}

}  // namespace torii::gateway
